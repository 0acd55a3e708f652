"""
tests/package/test_package.py - the Debian package (debian/), built, checked,
installed, run and purged

    /usr/bin/python3 -m pytest tests/package

The package is built once per session from a copy of the working tree (no
build/, no .git) in a directory under /tmp, so dpkg-buildpackage's ../*.deb
never lands beside the checkout. Skipped, and said so, when dpkg-buildpackage
is missing; the install test also needs root (CI runs scripts/test as root
on a disposable machine) and a host where no backstop package is installed.

test_versions           the .deb's version is CMakeLists.txt's project(VERSION)
                        plus the Debian revision; the built backstopd and
                        backstopctl --version print project(VERSION)
test_file_list          dpkg-deb -c lists exactly FILES (modes included),
                        conffiles is /etc/backstop/backstop.ini, Depends has
                        no Postfix and no Redis, Recommends redis-tools
test_lintian            lintian on the .deb and the .changes: no error and
                        no warning left (each one fixed or overridden with
                        its reason in debian/backstop.lintian-overrides)
test_install_run_purge  dpkg -i: the backstop user and group exist,
                        backstop.ini is root:backstop 0640, no unit is
                        enabled; backstopd started by the installed unit's own
                        ExecStartPre/ExecStart lines as user backstop, against
                        a private redis-server (the installed backstop.ini
                        edited as an admin would), rejects an unknown user;
                        dpkg --remove keeps the config and the user, dpkg
                        --purge leaves no file of the package but keeps the
                        user and group (their UID and GID are not freed for
                        another account to inherit the admin's files)
test_reinstall_without_conffile
                        the admin deletes backstop.ini: a reinstall (the
                        postinst path of an upgrade) still configures and
                        dpkg does not bring the file back; --force-confmiss
                        does, root:backstop 0640; after a purge an install
                        reuses the kept user and group

The install tests leave the backstop user and group behind, as a purge does.
"""
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import time

import pytest

from support import procs
from support.backstopd import seed
from support.policy import PolicyConn
from support.replies import USER_UNKNOWN
from support.wait import poll

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "backstop"
CONFFILE = "/etc/backstop/backstop.ini"
UNIT_DIR = "/lib/systemd/system"
UNITS = ("backstopd.service", "backstop-sync.service", "backstop-sync.timer")
EXAMPLES = ("main.cf.snippet", "main.cf.chroot-snippet", "example-data.redis")
BUILD_SECONDS_MAX = 180
# path -> mode of every regular file in the .deb
FILES = dict(
    [("/usr/sbin/backstopd", 0o755), ("/usr/bin/backstopctl", 0o755), (CONFFILE, 0o640),
     ("/usr/share/man/man5/backstop.ini.5.gz", 0o644),
     ("/usr/share/man/man8/backstopd.8.gz", 0o644),
     ("/usr/share/man/man8/backstopctl.8.gz", 0o644),
     ("/usr/share/doc/backstop/README.md.gz", 0o644),
     ("/usr/share/doc/backstop/changelog.Debian.gz", 0o644),
     ("/usr/share/doc/backstop/copyright", 0o644),
     ("/usr/share/lintian/overrides/backstop", 0o644)]
    + [(UNIT_DIR + "/" + u, 0o644) for u in UNITS]
    + [("/usr/share/doc/backstop/examples/" + e, 0o644) for e in EXAMPLES])
NOT_DEPENDED_ON = ("postfix", "redis-server", "redis-tools", "redis")


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    assert r.returncode == 0, "%s: status %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout,
                                                       r.stderr)
    return r.stdout


def cmake_version():
    text = open(os.path.join(SRC, "CMakeLists.txt")).read()
    m = re.search(r"^project\(backstop VERSION ([0-9][0-9.]*)[ )]", text, re.M)
    assert m, "no project(backstop VERSION ...) in CMakeLists.txt"
    return m.group(1)


class Built:
    """The build's results: .deb, .changes, its time."""

    def __init__(self, top):
        self.top = top
        found = {}
        for name in os.listdir(top):
            for kind in ("changes", "deb"):
                if name.startswith(PACKAGE + "_") and name.endswith("." + kind):
                    found[kind] = os.path.join(top, name)
        assert set(found) == {"changes", "deb"}, "dpkg-buildpackage left %s" % os.listdir(top)
        self.deb, self.changes = found["deb"], found["changes"]
        self.seconds = 0.0

    def field(self, name):
        return run(["dpkg-deb", "-f", self.deb, name]).strip()


def copy_tree(dest):
    """The working tree without build output and .git (what a clean
    checkout has, plus uncommitted changes)."""
    def skip(info):
        top = info.name.split("/")[1] if "/" in info.name else ""
        return None if top in ("build", ".git") or top.startswith("obj-") else info
    archive = dest + ".tar"
    with tarfile.open(archive, "w") as t:
        t.add(SRC, arcname="src", filter=skip)
    with tarfile.open(archive) as t:
        t.extractall(os.path.dirname(dest))
    os.unlink(archive)


@pytest.fixture(scope="session")
def built():
    if not shutil.which("dpkg-buildpackage"):
        pytest.skip("package SKIPPED: dpkg-buildpackage missing (apt-get install dpkg-dev debhelper)")
    top = procs.short_tmpdir("bs-pkg-")
    src = os.path.join(top, "src")
    copy_tree(src)
    started = time.monotonic()
    r = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, capture_output=True,
                       text=True, env=dict(os.environ, DEB_BUILD_OPTIONS="nocheck"))
    assert r.returncode == 0, "dpkg-buildpackage: status %d\n%s" % (
        r.returncode, (r.stdout + r.stderr)[-6000:])
    b = Built(top)
    b.seconds = time.monotonic() - started
    yield b
    procs.remove_tree(top)


def test_versions(built, record):
    """Given the package, its version and the programs' come from project(VERSION)."""
    version = cmake_version()
    record("package build %.0f s, %s %d bytes" % (built.seconds, os.path.basename(built.deb),
                                                  os.path.getsize(built.deb)))
    assert built.seconds < BUILD_SECONDS_MAX, "package build took %.0f s" % built.seconds
    assert built.field("Version").rsplit("-", 1)[0] == version
    stage = os.path.join(built.top, "stage")
    run(["dpkg-deb", "-x", built.deb, stage])
    for prog in ("usr/sbin/backstopd", "usr/bin/backstopctl"):
        out = run([os.path.join(stage, prog), "--version"])
        assert out == "%s %s\n" % (os.path.basename(prog), version), out


def test_file_list(built):
    """Given the .deb, it holds exactly the files the issue lists, one conffile."""
    listing = run(["dpkg-deb", "-c", built.deb])
    files = {}
    for line in listing.splitlines():
        perm, owner, _, _, _, path = line.split(None, 5)
        assert owner == "root/root", line
        if perm.startswith("-"):
            files[path[1:]] = sum(1 << (8 - i) for i, c in enumerate(perm[1:]) if c != "-")
    assert files == FILES, "\n".join("%s %s (want %s)" % (p, oct(files.get(p, 0)), oct(FILES.get(
        p, 0))) for p in sorted(set(files) | set(FILES)) if files.get(p) != FILES.get(p))
    ctl = os.path.join(built.top, "control")
    run(["dpkg-deb", "-e", built.deb, ctl])
    assert open(os.path.join(ctl, "conffiles")).read().split() == [CONFFILE]
    depends = [re.split(r"[ (]", d.strip())[0] for d in re.split(r"[,|]", built.field("Depends"))]
    assert not set(depends) & set(NOT_DEPENDED_ON), depends
    assert "adduser" in depends and "libuv1" in depends, depends
    assert built.field("Recommends") == "redis-tools"


@pytest.mark.parametrize("which", ["deb", "changes"])
def test_lintian(built, which):
    """Given the .deb or .changes, lintian reports no error and no warning."""
    if not shutil.which("lintian"):
        pytest.skip("lintian SKIPPED: lintian missing (apt-get install lintian)")
    r = subprocess.run(["lintian", "--fail-on", "none", getattr(built, which)],
                       capture_output=True, text=True)
    print(r.stdout + r.stderr)
    tags = [ln for ln in r.stdout.splitlines() if ln[:2] in ("E:", "W:")]
    assert r.returncode == 0 and not tags, "\n".join(tags) or r.stderr


def unit_lines(key, unit="backstopd.service"):
    """The installed unit's KEY= command lines, split as systemd would."""
    text = open(os.path.join(UNIT_DIR, unit)).read()
    return [shlex.split(v) for v in re.findall(r"^%s=(.*)$" % key, text, re.M)]


def admin_edits(path, redis_endpoint, port):
    """What an admin changes in the installed file: where Redis is, where to listen."""
    text = open(path).read()
    text, n1 = re.subn(r"^server = .*$", "server = " + redis_endpoint, text, count=1, flags=re.M)
    text, n2 = re.subn(r"^listen = inet:.*$", "listen = inet:127.0.0.1:%d" % port, text, count=1,
                       flags=re.M)
    assert n1 == n2 == 1, "backstop.ini has no active server/listen line to edit"
    with open(path, "w") as f:
        f.write(text)


def package_files():
    return [p for p in run(["dpkg-query", "-L", PACKAGE]).splitlines()
            if p and os.path.isfile(p)]


def installed():
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout not in ("", "not-installed")


def dpkg(*args):
    return run(["dpkg"] + list(args), env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def status():
    return run(["dpkg-query", "-W", "-f=${Status}", PACKAGE])


def account():
    """The backstop user's and group's ids; KeyError when either is missing."""
    import grp
    import pwd
    user = pwd.getpwnam("backstop")
    return user.pw_uid, user.pw_gid, grp.getgrnam("backstop").gr_gid


def assert_conffile_mode():
    st = os.lstat(CONFFILE)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, account()[2], 0o640), (
        "%s is %d:%d %o" % (CONFFILE, st.st_uid, st.st_gid, st.st_mode & 0o7777))


@pytest.fixture
def installed_package(built):
    if os.geteuid() != 0:
        pytest.skip("package install SKIPPED: dpkg -i needs root")
    if installed():
        pytest.skip("package install SKIPPED: a backstop package is already installed here")
    dpkg("-i", built.deb)
    try:
        yield built
    finally:
        if installed():
            dpkg("--purge", PACKAGE)


@pytest.mark.root
def test_install_run_purge(installed_package, redis_factory, test_dir, record):
    """Given the installed package, when backstopd runs its unit's command
    line against Redis, it answers; a purge leaves nothing behind."""
    import grp
    import pwd
    files = package_files()
    user, group = pwd.getpwnam("backstop"), grp.getgrnam("backstop")
    st = os.stat(CONFFILE)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, group.gr_gid, 0o640)
    wants = [os.path.join(d, u) for d in ("/etc/systemd/system/multi-user.target.wants",
                                          "/etc/systemd/system/timers.target.wants") for u in UNITS]
    assert not [w for w in wants if os.path.lexists(w)], "a unit was enabled on install"

    redis = redis_factory("redis", tcp=True)
    seed(redis.client)
    port = procs.free_port()
    admin_edits(CONFFILE, redis.endpoint, port)
    as_backstop = ["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % group.gr_gid,
                   "--init-groups", "--"]
    (pre,), (start,) = unit_lines("ExecStartPre"), unit_lines("ExecStart")
    run(as_backstop + pre)
    log = os.path.join(test_dir.make("daemon"), "backstopd.log")
    proc = procs.spawn(as_backstop + start + ["-f"], log)
    want = USER_UNKNOWN("nobody@example.com")
    try:
        def answers():  # the first answers may be the fallback: Redis not connected yet
            assert proc.poll() is None, "backstopd exited: " + procs.tail(log, 8)
            with PolicyConn(("127.0.0.1", port), timeout=2.0) as c:
                return c.ask(recipient="nobody@example.com", client_address="127.0.0.1") == want
        poll(answers, 15.0, what="the installed backstopd to answer " + want.strip())
    finally:
        procs.stop(proc)

    dpkg("--remove", PACKAGE)
    assert os.path.isfile(CONFFILE) and pwd.getpwnam("backstop"), "remove took the config or user"
    assert not os.path.exists("/usr/sbin/backstopd")
    ids = account()
    dpkg("--purge", PACKAGE)
    left = [p for p in files + [CONFFILE, "/etc/backstop"] if os.path.lexists(p)]
    assert not left, "left after purge: %s" % left
    # kept: a freed UID/GID could go to the next system account, which would
    # then own the admin's root:backstop secrets and backstop's directories
    assert account() == ids, "purge removed or changed the backstop user or group"
    record("installed %d files; purge left none, and kept the user and group" % len(files))


@pytest.mark.root
def test_reinstall_without_conffile(installed_package, record):
    """Given the installed package whose backstop.ini the admin deleted, when
    it is installed again, it is configured (dpkg leaves the file deleted);
    --force-confmiss brings the file back root:backstop 0640, and an install
    after a purge reuses the kept user and group."""
    deb = installed_package.deb
    ids = account()
    os.unlink(CONFFILE)
    dpkg("-i", deb)  # same version: preinst upgrade, postinst configure OLD
    assert status() == "install ok installed", status()
    assert not os.path.lexists(CONFFILE), "dpkg brought back a conffile the admin deleted"

    dpkg("-i", "--force-confmiss", deb)
    assert status() == "install ok installed", status()
    assert_conffile_mode()

    dpkg("--purge", PACKAGE)
    assert account() == ids, "purge removed or changed the backstop user or group"
    dpkg("-i", deb)
    assert account() == ids, "the install after a purge made a new user or group"
    assert_conffile_mode()
    record("reinstall without backstop.ini configured; user and group kept across a purge")
