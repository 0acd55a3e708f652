#!/usr/bin/env python3
"""
man_pages.py - the manual pages render without a warning

    man_pages.py PAGE...

For each page: "groff -man -Tutf8 -ww -z PAGE" must print nothing (every
groff warning enabled), and the rendered text must have NAME, SYNOPSIS and
DESCRIPTION sections. Exit 77 (skipped) when groff is missing. Prints
"N passed, N failed".
"""
import os
import shutil
import subprocess
import sys


def main():
    if not shutil.which("groff"):
        print("man_pages SKIPPED: groff missing (apt-get install groff-base)")
        print("0 passed, 0 failed, 1 skipped")
        return 77
    passed = failed = 0
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for page in sys.argv[1:]:
        w = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page], capture_output=True,
                           text=True, env=env)
        text = subprocess.run(["groff", "-man", "-Tutf8", page], capture_output=True, text=True,
                              env=env).stdout
        plain = "".join(c for i, c in enumerate(text) if c != "\b" and
                        (i + 1 >= len(text) or text[i + 1] != "\b"))
        missing = [s for s in ("NAME", "SYNOPSIS", "DESCRIPTION") if "\n" + s not in plain]
        if w.returncode == 0 and not (w.stdout + w.stderr).strip() and not missing:
            passed += 1
            print("ok %s" % os.path.basename(page))
        else:
            failed += 1
            print("FAIL %s: %s%s" % (os.path.basename(page), (w.stdout + w.stderr).strip(),
                                     " missing sections %s" % missing if missing else ""))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
