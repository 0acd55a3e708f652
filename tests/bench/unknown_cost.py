#!/usr/bin/python3
"""tests/bench/unknown_cost.py - what one unknown recipient of a protected
domain costs Redis, per build, printed, not asserted (the assertion is
tests/integration/test_harvest.py::test_unknown_recipient_is_one_script).

For each LABEL:BACKSTOPD given: a private redis-server (unix socket) with
the standard data set, one backstopd with the rate limit and harvest
detection on (thresholds that nothing reaches: no block, no attack, so
every unknown recipient runs the same path), N unknown recipients from
N/4 clients over one policy connection, then INFO commandstats (reset
before): EVALSHA calls and Redis-measured microseconds per unknown
recipient, the inner commands, and Redis's own CPU (INFO cpu) per unknown
recipient. The sweep (one script a second: TIME, HGETALL) and the
directory refresh are in the figures too; their counts are shown.

With UNKNOWN_CALLGRIND=1 redis-server runs under callgrind, instruction
counting on only while the unknown recipients are sent and counted (the
figure a shared box cannot disturb): Redis's instructions per unknown
recipient, reading the commands included (the times are then valgrind's).

Usage: tests/bench/unknown_cost.py LABEL:PATH [LABEL:PATH...]
Environment: UNKNOWN_N (default 4000), UNKNOWN_ROUNDS (default 3: the
best round of each build is shown, the box is shared), UNKNOWN_CALLGRIND,
UNKNOWN_KEEP=1 (keep the private directory: logs, profiles).
Everything runs in a private directory and is stopped by PID at the end.
"""
import os
import re
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests"))

import support.redis_server  # noqa: E402
from support import procs  # noqa: E402
from support.backstopd import seed  # noqa: E402
from support.fixtures import backstopd_daemons, private_dir, redis_servers  # noqa: E402
from support.wait import poll  # noqa: E402

N = int(os.environ.get("UNKNOWN_N", "4000"))
ROUNDS = int(os.environ.get("UNKNOWN_ROUNDS", "3"))
CALLGRIND = os.environ.get("UNKNOWN_CALLGRIND") == "1"


def callgrind_wrapper(dirs):
    """A redis-server that runs under callgrind, counting nothing until
    told (callgrind_control -i on), its profile in its own directory."""
    path = os.path.join(dirs.make("callgrind"), "redis-server")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"  # the profile goes to redis-server's --dir
                "dir=.; prev=; for a in \"$@\"; do [ \"$prev\" = --dir ] && dir=$a; prev=$a; done\n"
                "exec valgrind --tool=callgrind --instr-atstart=no "
                "--callgrind-out-file=\"$dir/callgrind.out\" %s \"$@\"\n"
                % support.redis_server.REDIS_SERVER)
    os.chmod(path, 0o755)
    return path


def instructions(r):
    """The instructions counted in r's callgrind profile (r stopped)."""
    with open(os.path.join(r.dir, "callgrind.out")) as f:
        m = re.search(r"^totals: (\d+)", f.read(), re.M)
    return int(m.group(1))


def cpu(r):
    i = r.client.info("cpu")
    return i["used_cpu_sys"] + i["used_cpu_user"]


def one_round(make_redis, make_daemon, path, label):
    r = make_redis(label, start=False)
    r.start(wait=False)
    r.wait_ready(60 if CALLGRIND else 10)
    seed(r.client)
    d = make_daemon(r, name=label, ratelimit={"invalid_recipients": "1000/1m"},
                    harvest={"threshold": "100000/10m"})
    with d.conn() as c:
        c.ask(client_address="192.0.2.1", recipient="user@example.com")  # warm up
        time.sleep(1.2)  # the first sweep and directory refresh
        r.client.config_resetstat()
        if CALLGRIND:
            subprocess.run(["callgrind_control", "-i", "on", str(r.pid)], check=True,
                           capture_output=True)
        c0, t0 = cpu(r), time.monotonic()
        for i in range(N):
            c.ask(client_address="10.%d.%d.1" % (i // 4 // 250, i // 4 % 250),
                  recipient="nobody%d@example.com" % i)
        # the scripts run after the answers: wait for the last one
        poll(lambda: r.client.zcard("backstop:harvest:example.com") == N, 10,
             what="every unknown recipient counted")
        if CALLGRIND:
            subprocess.run(["callgrind_control", "-i", "off", str(r.pid)], check=True,
                           capture_output=True)
        elapsed, c1 = time.monotonic() - t0, cpu(r)
        stats = {k[len("cmdstat_"):]: v for k, v in r.client.info("commandstats").items()}
    assert d.terminate() == 0
    if CALLGRIND:
        procs.stop(r.proc, timeout=30)  # valgrind writes the profile as it exits
    ir = instructions(r) / N if CALLGRIND else 0
    r.stop()
    return stats, (c1 - c0) * 1e6 / N, elapsed, ir


def cost(got):
    """What "best" means: the fewest instructions, else the least EVALSHA time."""
    return got[3] if CALLGRIND else got[0].get("evalsha", {"usec": 1e18})["usec"]


def main():
    builds = [a.split(":", 1) for a in sys.argv[1:]]
    if not builds:
        sys.exit(__doc__)
    best = {}
    with private_dir(lambda: os.environ.get("UNKNOWN_KEEP") == "1") as dirs, redis_servers(dirs) as make_redis:
        if CALLGRIND:
            support.redis_server.REDIS_SERVER = callgrind_wrapper(dirs)
        for _ in range(ROUNDS):
            for label, path in builds:
                with backstopd_daemons(dirs, path, lambda: False) as make_daemon:
                    got = one_round(make_redis, make_daemon, path, label)
                if label not in best or cost(got) < cost(best[label]):
                    best[label] = got
    print("%d unknown recipients of example.com, rate limit and harvest detection on "
          "(best of %d rounds)" % (N, ROUNDS))
    for label, _ in builds:
        stats, cpu_us, elapsed, ir = best[label]
        ev = stats.get("evalsha", {"calls": 0, "usec": 0})
        inner = sum(v["usec"] for k, v in stats.items() if k not in ("evalsha", "eval", "info",
                                                                      "config|resetstat"))
        print("%-8s EVALSHA %.3f calls and %.2f us per unknown recipient (%.2f us a call, of "
              "which inner commands %.2f us a recipient); Redis CPU %.2f us per unknown "
              "recipient; %.1fs; sweeps+refresh HGETALL %d" % (
                  label, ev["calls"] / N, ev["usec"] / N, ev["usec"] / max(ev["calls"], 1),
                  inner / N, cpu_us, elapsed, stats.get("hgetall", {"calls": 0})["calls"]))
        if CALLGRIND:
            print("         Redis instructions per unknown recipient (callgrind): %.0f" % ir)
        print("         " + " ".join("%s=%.3f" % (k, v["calls"] / N) for k, v in
                                     sorted(stats.items()) if k not in ("info",)))


if __name__ == "__main__":
    main()
