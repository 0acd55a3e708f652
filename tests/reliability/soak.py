#!/usr/bin/env python3
"""
soak.py - many requests while Redis is killed, restarted and frozen

    python3 tests/reliability/soak.py --backstopd BUILD/backstopd
        [--requests N] [--connections C] [--kill-every K] [--freeze F]
        [--rate R] [--warmup-s W] [-v] [--keep]

N requests over C connections (closed loop: one request in flight per
connection, as Postfix does; --rate R paces the whole at R requests/s so the
run spans several chaos cycles). Meanwhile, every K seconds, redis-server is
killed with SIGKILL and restarted at once (it reloads the seeded data from
its RDB file; writes since are lost, as in a real crash), and half-way
between two kills it is frozen with SIGSTOP for F seconds.

The run has two phases with the same chaos: a warm-up of W seconds, after
which the clients disconnect and RSS and the fd count are taken as the
baseline, and the measured run of N requests. Checked:
  - 100 % of the requests answered, each within [redis] timeout + 50 ms
    (misses counted, max latency printed);
  - every answer the right one for its request or the on_redis_error
    fallback (requests that need no Redis never get the fallback);
  - both chaos events happened during the run; backstopd never crashed,
    exits 0 on SIGTERM, and its stderr has no sanitizer report;
  - RSS after the run within 10 % of RSS after the warm-up (optimised
    build); with a sanitized build (ASan's allocator and quarantine inflate
    RSS; the daemon runs with quarantine_size_mb=4 so the quarantine is full
    after the warm-up) a bounded absolute growth instead (--rss-growth-mib,
    default 8);
  - open fds back to the baseline once the clients have disconnected, and
    backstop_connections back to 0.

Defaults are the short ctest variant (30,000 requests over 64 connections,
kill every 6 s, freeze 2 s); scripts/soak runs the long one.
"""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen  # noqa: E402
import rel  # noqa: E402
from rel import (BLOCKED, DUNNO, FALLBACK_DEFER, NDR_DENY, USER_UNKNOWN,  # noqa: E402
                 policy_request, poll)

TIMEOUT_MS = 300
SLACK_MS = 50
# A small ASan quarantine (default 256 MiB): it fills during the warm-up, so
# RSS after the run can be compared with RSS after the warm-up at all.
ASAN_EXTRA = "quarantine_size_mb=4"


def kinds():
    """The request mix: every decision path, each with its allowed replies."""
    clients = ["192.0.2.%d" % i for i in range(1, 251)]
    ok_or_fb = lambda want: {want, FALLBACK_DEFER}  # noqa: E731

    def reqs(**kw):
        return [policy_request(client_address=c, **kw) for c in clients]
    return [
        loadgen.Kind("valid", reqs(recipient="user@example.com"), ok_or_fb(DUNNO)),
        loadgen.Kind("unknown", reqs(recipient="nobody@example.com"), ok_or_fb(USER_UNKNOWN)),
        loadgen.Kind("extension", reqs(recipient="alice+tag@example.com"), ok_or_fb(DUNNO)),
        loadgen.Kind("unprotected", reqs(recipient="someone@elsewhere.example"), ok_or_fb(DUNNO)),
        loadgen.Kind("ndr_deny", reqs(sender="", recipient="bounce@remote.example"), ok_or_fb(NDR_DENY)),
        loadgen.Kind("ndr_limit", reqs(sender="", recipient="bounce@lists.example.org"), ok_or_fb(DUNNO)),
        loadgen.Kind("catch_all", reqs(recipient="anything@example.net"), ok_or_fb(DUNNO)),
        loadgen.Kind("blocked", [policy_request(client_address="198.51.100.7")], ok_or_fb(BLOCKED)),
        loadgen.Kind("exempt", [policy_request(client_address="127.0.0.1", recipient="x@example.com")],
                     ok_or_fb(USER_UNKNOWN)),
        loadgen.Kind("not_rcpt", reqs(protocol_state="DATA"), {DUNNO}),
    ]


class Chaos(threading.Thread):
    """Every `every` s: SIGKILL + restart; half-way between: SIGSTOP for `freeze` s."""

    def __init__(self, suite, redis, every, freeze):
        super().__init__(daemon=True)
        self.suite, self.redis, self.every, self.freeze = suite, redis, every, freeze
        self.stop_ev = threading.Event()
        self.events = []  # (t, what)
        self.kills = self.freezes = 0
        self.error = None
        self.frozen = False

    def _at(self, t):
        """Sleep until monotonic time t; False if told to stop first."""
        return not self.stop_ev.wait(max(0.0, t - time.monotonic()))

    def run(self):
        try:
            t0 = time.monotonic()
            n = 0
            while True:
                start = t0 + n * self.every
                if not self._at(start + (self.every - self.freeze) / 2):
                    break
                os.kill(self.redis.proc.pid, signal.SIGSTOP)
                self.frozen = True
                self.freezes += 1
                self.events.append((time.monotonic(), "SIGSTOP"))
                self._at(time.monotonic() + self.freeze)  # thaw even when told to stop
                os.kill(self.redis.proc.pid, signal.SIGCONT)
                self.frozen = False
                self.events.append((time.monotonic(), "SIGCONT"))
                if not self._at(start + self.every):
                    break
                self.redis.kill(signal.SIGKILL)
                self.kills += 1
                self.events.append((time.monotonic(), "SIGKILL"))
                self.redis.start()
                self.events.append((time.monotonic(), "restarted"))
                n += 1
        except Exception as e:  # noqa: BLE001
            self.error = e
        finally:
            if self.frozen:
                os.kill(self.redis.proc.pid, signal.SIGCONT)

    def finish(self):
        self.stop_ev.set()
        self.join(30)


def settle(suite, d, what):
    """Clients gone, Redis connected: wait until backstopd says so, then sample RSS and fds."""
    poll(lambda: d.metrics().get("backstop_connections") == 0, 15, what="backstop_connections 0")
    poll(lambda: d.metrics().get("backstop_redis_up") == 1, 15, what="backstop_redis_up 1")
    time.sleep(1.5)  # stats flush, late replies, pending closes
    rss, fds = d.rss_kib(), d.fds()
    suite.measure("%s: RSS %.1f MiB, open fds %d" % (what, rss / 1024, fds), "")
    return rss, fds


def main():
    def extra(ap):
        ap.add_argument("--requests", type=int, default=30000)
        ap.add_argument("--connections", type=int, default=64)
        ap.add_argument("--kill-every", type=float, default=6.0)
        ap.add_argument("--freeze", type=float, default=2.0)
        ap.add_argument("--rate", type=float, default=800.0,
                        help="requests/s overall (0 = as fast as possible)")
        ap.add_argument("--warmup-s", type=float, default=0.0,
                        help="warm-up seconds (default: one chaos cycle + 1 s)")
        ap.add_argument("--rss-growth-mib", type=float, default=8.0,
                        help="allowed RSS growth with a sanitized build")
        ap.add_argument("--rss-ratio", type=float, default=0.10,
                        help="allowed relative RSS growth with an optimised build")
    suite = rel.Suite("soak", extra_args=extra)
    a = suite.args
    sanitized = rel.is_sanitized(suite.binary)
    with suite:
        suite.measure("build", "sanitized (ASan/UBSan)" if sanitized else "optimised")
        suite.measure("plan", "%d requests over %d connections, rate %s, SIGKILL+restart every %gs, "
                      "SIGSTOP %gs" % (a.requests, a.connections, a.rate or "max", a.kill_every, a.freeze))
        r = suite.redis("redis", args=["--dbfilename", "dump.rdb"])
        r.many([
            ("SADD", "backstop:domains", "example.com", "example.net"),
            ("SADD", "backstop:rcpt:example.com", "user", "alice", "postmaster"),
            ("SADD", "backstop:rcpt:example.net", "*"),
            ("HSET", "backstop:ndr", "*", "deny", "lists.example.org", "limit 1000000/1h"),
            ("SET", "backstop:block:198.51.100.7", "manual"),
            ("SAVE",),
        ])
        d = suite.backstopd({
            "server": {"max_connections": str(max(1000, a.connections + 64))},
            "redis": {"server": r.endpoint, "timeout": "%dms" % TIMEOUT_MS, "connect_timeout": "1s"},
            "ratelimit": {"invalid_recipients": "100000/1m"},
            "log": {"level": "info"},
        }, metrics=True, env=rel.asan_env(ASAN_EXTRA))
        d.start()
        pid = d.proc.pid
        rss0, fds0 = settle(suite, d, "after start")

        deadline = (TIMEOUT_MS + SLACK_MS) / 1000.0
        ks = kinds()

        def progress(res):
            suite.debug("  %.0fs: %s" % (res.elapsed, res.summary()))

        def phase(name, **run_kw):
            chaos = Chaos(suite, r, a.kill_every, a.freeze)
            g = loadgen.LoadGen(d.addr, a.connections, ks, deadline, hang_s=5.0, progress=progress)
            chaos.start()
            try:
                res = g.run(rate=a.rate or None, **run_kw)
            finally:
                chaos.finish()
                g.close()
            if chaos.error:
                raise chaos.error
            suite.measure("%s" % name, res.summary())
            suite.measure("%s chaos" % name, "%d SIGKILL+restart, %d SIGSTOP" % (chaos.kills, chaos.freezes))
            return res, chaos

        warm_s = a.warmup_s or a.kill_every + 1.0
        wres, _ = phase("warm-up (%.0fs)" % warm_s, duration_s=warm_s)
        rss_w, fds_w = settle(suite, d, "after warm-up")

        res, chaos = phase("run", total=a.requests)
        rss_e, fds_e = settle(suite, d, "after the run")

        # --- answers
        suite.check("100 % of requests answered", res.answered == a.requests and res.unanswered == 0,
                    "%d of %d answered, %d unanswered (%d hangs, %d closed by server)" % (
                        res.answered, a.requests, res.unanswered, res.hangs, res.closed_by_server))
        suite.measure("deadline misses (> %d ms)" % (TIMEOUT_MS + SLACK_MS), res.late)
        suite.measure("max latency", "%.1f ms (kernel receive timestamp; %.1f ms as the client process saw it)" % (
            res.max_latency * 1000, res.user_max_latency * 1000))
        suite.measure("latency p50 / p99 / p99.9", "%.0f / %.0f / %.0f ms" % (
            res.percentile(.5) * 1000, res.percentile(.99) * 1000, res.percentile(.999) * 1000))
        if res.late_samples:
            ev = ", ".join("%s@%.1fs" % (w, t - res.t_start) for t, w in chaos.events)
            suite.note("late answers (latency, sent at, kind): " + "; ".join(
                "%.0fms @%.2fs %s" % (lat * 1000, ts, k) for lat, ts, k, _ in sorted(res.late_samples)[-8:]))
            suite.note("chaos timeline: " + ev)
        suite.check("each answer within timeout + %d ms" % SLACK_MS, res.late == 0,
                    "%d late, max %.1f ms" % (res.late, res.max_latency * 1000))
        suite.check("every answer is right for its request or the fallback", res.unexpected == 0,
                    "%d unexpected, e.g. %s" % (res.unexpected, res.unexpected_samples[:3]))
        nfb = sum(n for (k, rep), n in res.replies.items() if rep == FALLBACK_DEFER)
        suite.measure("fallback answers", "%d of %d (%.1f %%)" % (nfb, res.answered,
                                                                  100.0 * nfb / max(1, res.answered)))
        suite.check("the chaos happened during the run (>= 1 SIGKILL and >= 1 SIGSTOP)",
                    chaos.kills >= 1 and chaos.freezes >= 1,
                    "%d kills, %d freezes" % (chaos.kills, chaos.freezes))
        suite.check("real answers and fallback answers both seen", 0 < nfb < res.answered)

        # --- the process
        m = d.metrics()
        suite.measure("redis connects / disconnects / stalls / busy / late replies", "%d / %d / %d / %d / %d" % (
            m["backstop_redis_connects_total"], m["backstop_redis_disconnects_total"],
            m["backstop_redis_stalls_total"], m["backstop_redis_busy_total"], m["backstop_late_replies_total"]))
        suite.check("same backstopd process throughout (no crash)", d.alive() and d.proc.pid == pid)
        if sanitized:
            growth = (rss_e - rss_w) / 1024.0
            suite.check("RSS bounded (sanitized build: growth <= %.0f MiB)" % a.rss_growth_mib,
                        growth <= a.rss_growth_mib,
                        "after warm-up %.1f MiB, after the run %.1f MiB (%+.1f MiB)" % (
                            rss_w / 1024, rss_e / 1024, growth))
        else:
            suite.check("RSS after the run within %.0f %% of RSS after warm-up" % (a.rss_ratio * 100),
                        rss_e <= rss_w * (1 + a.rss_ratio),
                        "after warm-up %.1f MiB, after the run %.1f MiB (%+.1f %%)" % (
                            rss_w / 1024, rss_e / 1024, 100.0 * (rss_e - rss_w) / rss_w))
        suite.check("open fds back to baseline after the clients disconnected",
                    fds_e == fds0 and fds_w == fds0,
                    "start %d, after warm-up %d, after the run %d" % (fds0, fds_w, fds_e))
        rc = d.stop()
        suite.check("backstopd exits 0 on SIGTERM", rc == 0, "status %s" % rc)
        rep = d.sanitizer_reports()
        suite.check("no sanitizer report in backstopd's stderr", not rep, str(rep))
    sys.exit(suite.finish())


if __name__ == "__main__":
    main()
