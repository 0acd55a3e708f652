"""
tests/e2e/test_install.py - the install kit: "cmake --install" trees, the
systemd unit's exposure, the manual pages

    /usr/bin/python3 -m pytest tests/e2e/test_install.py

test_install_tree[PREFIX]   "cmake --install BUILD --prefix PREFIX" into a
        temporary DESTDIR (/usr and /opt/backstop) puts every file where
        cmake/install.cmake and backstopd(8) FILES say: the unit's ExecStart=
        and -c follow the prefix and the configuration directory, the
        installed backstop.ini passes "backstopd -t", "systemd-analyze
        verify" accepts the installed unit (when systemd-analyze is there),
        and install_manifest.txt lists exactly what landed in DESTDIR
test_reinstall_keeps_config  a second installation keeps an existing backstop.ini
test_systemd_security   "systemd-analyze security --offline=yes" rates
        etc/backstopd.service at most 2.0 (skipped without systemd-analyze)
test_man_page[PAGE]     "groff -man -Tutf8 -ww -z" prints nothing for the
        page and it has NAME, SYNOPSIS and DESCRIPTION (skipped without groff)

The build and install layout come from the environment (ctest sets them;
the defaults are cmake's): CMAKE, BACKSTOP_BUILD_DIR (build/test),
BACKSTOP_SYSCONFDIR (/etc), BACKSTOP_UNITDIR (lib/systemd/system),
BACKSTOP_MANDIR (share/man), BACKSTOP_DOCDIR (share/doc/backstop).
The install tests fail on every wrong file at once, not just the first.
"""
import filecmp
import os
import re
import shutil
import subprocess

import pytest

from support import procs

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CMAKE = os.environ.get("CMAKE") or shutil.which("cmake") or "cmake"
BUILD = os.path.abspath(os.environ.get("BACKSTOP_BUILD_DIR") or os.path.join(SRC, "build/test"))
SYSCONFDIR = "/" + (os.environ.get("BACKSTOP_SYSCONFDIR") or "/etc").lstrip("/")
UNITDIR = os.environ.get("BACKSTOP_UNITDIR") or "lib/systemd/system"
MANDIR = os.environ.get("BACKSTOP_MANDIR") or "share/man"
DOCDIR = os.environ.get("BACKSTOP_DOCDIR") or "share/doc/backstop"
MAX_EXPOSURE = 2.0
MAN_PAGES = ("backstopd.8", "backstop.ini.5")


class Checks:
    """Every check of an install tree, printed; the failures together."""

    def __init__(self):
        self.failed = []

    def __call__(self, name, cond, detail=""):
        print("%s %s%s" % ("ok" if cond else "FAIL", name, "" if cond else ": " + detail))
        if not cond:
            self.failed.append("%s: %s" % (name, detail))
        return cond

    def verdict(self):
        assert not self.failed, "\n".join(self.failed)


def install(destdir, prefix):
    """cmake --install into DESTDIR; its output."""
    r = subprocess.run([CMAKE, "--install", BUILD, "--prefix", prefix],
                       env=dict(os.environ, DESTDIR=destdir), capture_output=True, text=True)
    assert r.returncode == 0, "cmake --install --prefix %s (DESTDIR): %s" % (prefix, r.stdout + r.stderr)
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def install_root():
    if not os.path.isfile(os.path.join(BUILD, "cmake_install.cmake")):
        pytest.fail("no configured build in %s (BACKSTOP_BUILD_DIR)" % BUILD, pytrace=False)
    top = procs.short_tmpdir("bs-install-")
    yield top
    procs.remove_tree(top)


def manifest_inside(check, destdir):
    """Every installed path (install_manifest.txt, recorded without DESTDIR)
    is in DESTDIR, and DESTDIR holds nothing else."""
    with open(os.path.join(BUILD, "install_manifest.txt")) as f:
        paths = sorted(ln.strip() for ln in f if ln.strip())
    staged = sorted(os.path.join(d, n)[len(destdir):] for d, _, names in os.walk(destdir)
                    for n in names)
    check("install_manifest.txt: %d paths, all in DESTDIR and nothing else" % len(paths),
          paths and paths == staged, "manifest %s\nDESTDIR %s" % (paths, staged))


def same_file(path, original):
    return os.path.isfile(path) and filecmp.cmp(path, original, shallow=False)


def check_unit(check, destdir, prefix, unit, daemon):
    text = open(unit).read()
    want = "ExecStart=%s/sbin/backstopd -c %s/backstop/backstop.ini" % (prefix, SYSCONFDIR)
    check("%s: %s" % (os.path.basename(unit), want),
          re.search("^" + re.escape(want) + "$", text, re.M), text)
    check("%s: ExecStartPre= checks the same file" % os.path.basename(unit),
          "ExecStartPre=%s/sbin/backstopd -t -c %s/backstop/backstop.ini" % (prefix, SYSCONFDIR)
          in text, text)
    if prefix == "/usr":
        check("unit installed for --prefix /usr is etc/backstopd.service unchanged",
              text == open(os.path.join(SRC, "etc/backstopd.service")).read())
    if shutil.which("systemd-analyze"):
        # the host's units and /bin/kill, the staged daemon
        probe = os.path.join(os.path.dirname(destdir), "backstopd.service")
        with open(probe, "w") as f:
            f.write(text.replace(prefix + "/sbin/backstopd", daemon))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", probe],
                           capture_output=True, text=True)
        check("systemd-analyze verify (installed unit)",
              r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr)
        os.unlink(probe)


@pytest.mark.parametrize("prefix", ["/usr", "/opt/backstop"])
def test_install_tree(install_root, prefix):
    """Given a DESTDIR, when installed with PREFIX, every file is where the docs say."""
    destdir = os.path.join(install_root, prefix.strip("/").replace("/", "-"))
    install(destdir, prefix)
    check = Checks()
    manifest_inside(check, destdir)
    P = destdir + prefix
    conf_dir = destdir + SYSCONFDIR + "/backstop"
    unit_dir = destdir + UNITDIR if os.path.isabs(UNITDIR) else os.path.join(P, UNITDIR)
    man, doc = os.path.join(P, MANDIR), os.path.join(P, DOCDIR)

    daemon = os.path.join(P, "sbin", "backstopd")
    check(daemon, os.access(daemon, os.X_OK), "missing or not executable")
    ini = os.path.join(conf_dir, "backstop.ini")
    check(ini, same_file(ini, os.path.join(SRC, "etc/backstop.ini")), "missing or differs")
    if os.path.isfile(ini):
        check("%s: mode 0644" % ini, os.stat(ini).st_mode & 0o777 == 0o644,
              oct(os.stat(ini).st_mode & 0o777))
        r = subprocess.run([daemon, "-t", "-c", ini], capture_output=True, text=True)
        check("backstopd -t -c (installed backstop.ini)", r.returncode == 0, r.stdout + r.stderr)
    unit = os.path.join(unit_dir, "backstopd.service")
    if check(unit, os.path.isfile(unit), "missing"):
        check_unit(check, destdir, prefix, unit, daemon)
    unit = os.path.join(unit_dir, "backstop-sync.service")
    if check(unit, os.path.isfile(unit), "missing"):
        want = "ExecStart=%s/bin/backstopctl -c %s/backstop/backstop.ini sync --quiet" % (
            prefix, SYSCONFDIR)
        check("backstop-sync.service: " + want, want in open(unit).read())
    timer = os.path.join(unit_dir, "backstop-sync.timer")
    check(timer, same_file(timer, os.path.join(SRC, "etc/backstop-sync.timer")),
          "missing or differs")

    pages = [("man8", "backstopd.8"), ("man5", "backstop.ini.5")]
    if os.path.exists(os.path.join(SRC, "man", "backstopctl.8")):
        pages.append(("man8", "backstopctl.8"))
    for sect, page in pages:
        p = os.path.join(man, sect, page)
        check(p, same_file(p, os.path.join(SRC, "man", page)), "missing or differs")
    for name in ("main.cf.snippet", "main.cf.chroot-snippet"):
        p = os.path.join(doc, "postfix", name)
        check(p, same_file(p, os.path.join(SRC, "etc/postfix", name)), "missing or differs")
    p = os.path.join(doc, "backstop.ini")
    check(p, os.path.isfile(p), "missing")
    check.verdict()


def test_reinstall_keeps_config(install_root):
    """Given an installed tree whose backstop.ini the admin changed, a second
    installation keeps it (and says so)."""
    destdir = os.path.join(install_root, "reinstall")
    install(destdir, "/usr")
    ini = destdir + SYSCONFDIR + "/backstop/backstop.ini"
    with open(ini, "a") as f:
        f.write("# changed by the admin\n")
    out = install(destdir, "/usr")
    assert open(ini).read().endswith("# changed by the admin\n"), "backstop.ini overwritten"
    assert "Keeping" in out, out


def test_systemd_security():
    """The unit's overall exposure level is low."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd_security SKIPPED: systemd-analyze missing (apt-get install systemd)")
    unit = os.path.join(SRC, "etc/backstopd.service")
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit],
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    for line in out.splitlines():
        if line.startswith("\u2717"):  # an item that counts against the unit
            print("  " + re.sub(r"\s{2,}", "  ", line.strip()))
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert m, "systemd-analyze security gave no overall level (status %d):\n%s" % (r.returncode, out)
    level = float(m.group(1))
    print("# %s: overall exposure level %.1f (at most %.1f)" % (os.path.basename(unit), level,
                                                                 MAX_EXPOSURE))
    assert level <= MAX_EXPOSURE, "overall exposure level %.1f (at most %.1f)" % (level, MAX_EXPOSURE)


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page(page):
    """groff renders the page without a warning, with its main sections."""
    if not shutil.which("groff"):
        pytest.skip("man_pages SKIPPED: groff missing (apt-get install groff-base)")
    path = os.path.join(SRC, "man", page)
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    w = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True,
                       text=True, env=env)
    text = subprocess.run(["groff", "-man", "-Tutf8", path], capture_output=True, text=True,
                          env=env).stdout
    plain = "".join(c for i, c in enumerate(text) if c != "\b" and
                    (i + 1 >= len(text) or text[i + 1] != "\b"))
    assert w.returncode == 0 and not (w.stdout + w.stderr).strip(), (w.stdout + w.stderr).strip()
    missing = [s for s in ("NAME", "SYNOPSIS", "DESCRIPTION") if "\n" + s not in plain]
    assert not missing, "missing sections %s" % missing
