#!/usr/bin/env python3
"""
install_tree.py - "cmake --install" puts every file where cmake/install.cmake
and backstopd(8) FILES say, and nothing outside DESTDIR

    install_tree.py --cmake CMAKE --build BUILD --source SRC --sysconfdir /etc
                    --unitdir lib/systemd/system --mandir share/man
                    --docdir share/doc/backstop

Installs twice into temporary DESTDIR trees (--prefix /usr and --prefix
/opt/backstop), checks the files, that the unit's ExecStart= and -c follow
the prefix and the configuration directory, that the installed backstop.ini
passes "backstopd -t", that "systemd-analyze verify" accepts the installed unit
(when systemd-analyze is there), that install_manifest.txt lists exactly what landed in
DESTDIR, and that a second installation keeps an existing backstop.ini.
Prints one line per check and "N passed, N failed"; exit 1 on failure.
"""
import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile

results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print("%s %s%s" % ("ok" if cond else "FAIL", name, "" if cond else ": " + detail), flush=True)
    return cond


def install(args, destdir, prefix):
    env = dict(os.environ, DESTDIR=destdir)
    r = subprocess.run([args.cmake, "--install", args.build, "--prefix", prefix], env=env,
                       capture_output=True, text=True)
    check("cmake --install --prefix %s (DESTDIR)" % prefix, r.returncode == 0,
          r.stdout + r.stderr)
    return r.stdout + r.stderr


def manifest_inside(args, destdir):
    """Every installed path (install_manifest.txt, recorded without DESTDIR)
    is in DESTDIR, and DESTDIR holds nothing else."""
    path = os.path.join(args.build, "install_manifest.txt")
    with open(path) as f:
        paths = sorted(l.strip() for l in f if l.strip())
    staged = sorted(os.path.join(d, n)[len(destdir):] for d, _, names in os.walk(destdir)
                    for n in names)
    check("install_manifest.txt: %d paths, all in DESTDIR and nothing else" % len(paths),
          paths and paths == staged, "manifest %s\nDESTDIR %s" % (paths, staged))


def tree(args, destdir, prefix):
    """The files and their contents for one prefix."""
    src = args.source
    P = destdir + prefix
    conf_dir = destdir + args.sysconfdir + "/backstop"
    unit_dir = (destdir + args.unitdir if os.path.isabs(args.unitdir)
                else os.path.join(P, args.unitdir))
    man = os.path.join(P, args.mandir)
    doc = os.path.join(P, args.docdir)

    daemon = os.path.join(P, "sbin", "backstopd")
    check(daemon, os.access(daemon, os.X_OK), "missing or not executable")
    ini = os.path.join(conf_dir, "backstop.ini")
    check(ini, os.path.isfile(ini) and filecmp.cmp(ini, os.path.join(src, "etc/backstop.ini"),
                                                   shallow=False), "missing or differs")
    if os.path.isfile(ini):
        check("%s: mode 0644" % ini, os.stat(ini).st_mode & 0o777 == 0o644,
              oct(os.stat(ini).st_mode & 0o777))
        r = subprocess.run([daemon, "-t", "-c", ini], capture_output=True, text=True)
        check("backstopd -t -c (installed backstop.ini)", r.returncode == 0, r.stdout + r.stderr)

    unit = os.path.join(unit_dir, "backstopd.service")
    if check(unit, os.path.isfile(unit), "missing"):
        text = open(unit).read()
        want = "ExecStart=%s/sbin/backstopd -c %s/backstop/backstop.ini" % (prefix, args.sysconfdir)
        check("%s: %s" % (os.path.basename(unit), want), re.search("^" + re.escape(want) + "$",
                                                                  text, re.M), text)
        check("%s: ExecStartPre= checks the same file" % os.path.basename(unit),
              "ExecStartPre=%s/sbin/backstopd -t -c %s/backstop/backstop.ini"
              % (prefix, args.sysconfdir) in text, text)
        if prefix == "/usr":
            check("unit installed for --prefix /usr is etc/backstopd.service unchanged",
                  text == open(os.path.join(src, "etc/backstopd.service")).read())
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

    unit = os.path.join(unit_dir, "backstop-sync.service")
    if check(unit, os.path.isfile(unit), "missing"):
        want = "ExecStart=%s/bin/backstopctl -c %s/backstop/backstop.ini sync --quiet" % (
            prefix, args.sysconfdir)
        check("backstop-sync.service: " + want, want in open(unit).read())
    timer = os.path.join(unit_dir, "backstop-sync.timer")
    check(timer, os.path.isfile(timer) and filecmp.cmp(
        timer, os.path.join(src, "etc/backstop-sync.timer"), shallow=False), "missing or differs")

    pages = [("man8", "backstopd.8"), ("man5", "backstop.ini.5")]
    if os.path.exists(os.path.join(src, "man", "backstopctl.8")):
        pages.append(("man8", "backstopctl.8"))
    for sect, page in pages:
        p = os.path.join(man, sect, page)
        check(p, os.path.isfile(p) and filecmp.cmp(p, os.path.join(src, "man", page),
                                                   shallow=False), "missing or differs")
    for name in ("main.cf.snippet", "main.cf.chroot-snippet"):
        p = os.path.join(doc, "postfix", name)
        check(p, os.path.isfile(p) and filecmp.cmp(p, os.path.join(src, "etc/postfix", name),
                                                   shallow=False), "missing or differs")
    p = os.path.join(doc, "backstop.ini")
    check(p, os.path.isfile(p), "missing")


def main():
    ap = argparse.ArgumentParser()
    for opt in ("cmake", "build", "source", "sysconfdir", "unitdir", "mandir", "docdir"):
        ap.add_argument("--" + opt, required=True)
    args = ap.parse_args()
    if not os.path.isabs(args.sysconfdir):
        args.sysconfdir = "/" + args.sysconfdir
    top = tempfile.mkdtemp(prefix="bs-install-")
    try:
        for prefix in ("/usr", "/opt/backstop"):
            destdir = os.path.join(top, prefix.strip("/").replace("/", "-"))
            install(args, destdir, prefix)
            manifest_inside(args, destdir)
            tree(args, destdir, prefix)
        # a second installation keeps the admin's configuration
        destdir = os.path.join(top, "usr")
        ini = destdir + args.sysconfdir + "/backstop/backstop.ini"
        with open(ini, "a") as f:
            f.write("# changed by the admin\n")
        out = install(args, destdir, "/usr")
        check("reinstall keeps an existing backstop.ini",
              open(ini).read().endswith("# changed by the admin\n") and "Keeping" in out, out)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
