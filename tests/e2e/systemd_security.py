#!/usr/bin/env python3
"""
systemd_security.py - the unit's "systemd-analyze security" exposure is low

    systemd_security.py [--max 2.0] UNIT_FILE

Runs "systemd-analyze security --offline=yes UNIT_FILE" (needs systemd >= 250;
the Debian package systemd is installed when missing and running as root,
without starting anything) and fails when the overall exposure level is
above --max. Exit 77 (skipped, loudly) when systemd-analyze is missing and
this is not root. Prints the measured level, every item that counts against
the unit, and "N passed, N failed".
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

SKIP = 77


def ensure_systemd_analyze():
    if shutil.which("systemd-analyze"):
        return True
    if os.geteuid() != 0:
        print("!" * 78 + "\n!! systemd_security SKIPPED: systemd-analyze missing and not root "
              "(apt-get install systemd)\n" + "!" * 78)
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    prc = "/usr/sbin/policy-rc.d"
    made = not os.path.exists(prc)
    if made:  # installing must not start anything
        with open(prc, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(prc, 0o755)
    try:
        cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q",
               "--no-install-recommends", "systemd"]
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-q"], env=env,
                           stdout=subprocess.DEVNULL)
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
    finally:
        if made:
            os.unlink(prc)
    return bool(shutil.which("systemd-analyze"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=float, default=2.0)
    ap.add_argument("unit")
    args = ap.parse_args()
    if not ensure_systemd_analyze():
        if os.geteuid() == 0:
            print("FAIL could not install systemd-analyze\n0 passed, 1 failed")
            return 1
        print("0 passed, 0 failed, 1 skipped")
        return SKIP
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", args.unit],
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    for line in out.splitlines():
        if line.startswith("\u2717"):  # an item that counts against the unit
            print("  " + re.sub(r"\s{2,}", "  ", line.strip()))
    if not m:
        print("FAIL systemd-analyze security gave no overall level (status %d):\n%s"
              % (r.returncode, out))
        print("0 passed, 1 failed")
        return 1
    level = float(m.group(1))
    ok = level <= args.max
    print("%s %s: overall exposure level %.1f (at most %.1f)"
          % ("ok" if ok else "FAIL", os.path.basename(args.unit), level, args.max))
    print("%d passed, %d failed" % (ok, not ok))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
