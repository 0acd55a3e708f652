"""
tests/reliability/test_soak.py - many requests while Redis is killed, restarted and frozen

    /usr/bin/python3 -m pytest tests/reliability/test_soak.py [--soak-requests N]
        [--soak-connections C] [--soak-kill-every K] [--soak-freeze F]
        [--soak-rate R] [--soak-warmup-s W] [--soak-rss-growth-mib M] [--soak-rss-ratio Q]

N requests over C connections (closed loop: one request in flight per
connection, as Postfix does; --soak-rate R paces the whole at R requests/s so
the run spans several chaos cycles; loadgen.py). Meanwhile, every K seconds,
redis-server is killed with SIGKILL and restarted at once (it reloads the
seeded data from its RDB file; writes since are lost, as in a real crash),
and half-way between two kills it is frozen with SIGSTOP for F seconds.

The run has two phases with the same chaos: a warm-up of W seconds, after
which the clients disconnect and RSS and the fd count are taken as the
baseline, and the measured run of N requests. Checked:
  - 100 % of the requests answered, each within [redis] timeout + 50 ms
    (misses counted, max latency printed);
  - every answer the right one for its request or the on_redis_error
    fallback (requests that need no Redis never get the fallback);
  - both chaos events happened during the run; backstopd never crashed,
    exits 0 on SIGTERM, and its stderr has no sanitizer report;
  - RSS after the run within Q (10 %) of RSS after the warm-up (optimised
    build); with a sanitized build (ASan's allocator and quarantine inflate
    RSS; the daemon runs with quarantine_size_mb=4 so the quarantine is full
    after the warm-up) a bounded absolute growth instead (M, 8 MiB);
  - open fds back to the baseline once the clients have disconnected, and
    backstop_connections back to 0.

Defaults are the short ctest variant (30,000 requests over 64 connections,
kill every 6 s, freeze 2 s, 800/s); scripts/soak runs the long one.
Every check is reported (reltools.Checks); the test fails with all failed ones.
"""
import os
import signal
import threading
import time

import pytest

from reliability import loadgen
from reliability.reltools import asan_options, is_sanitized
from support.policy import request as policy_request
from support.replies import BLOCKED, DUNNO, FALLBACK_DEFER, NDR_DENY, USER_UNKNOWN
from support.wait import poll

pytestmark = pytest.mark.slow

UNKNOWN = USER_UNKNOWN("nobody@example.com")
NDR_DENIED = NDR_DENY("bounce@remote.example")
TIMEOUT_MS = 300
SLACK_MS = 50
# A small ASan quarantine (default 256 MiB): it fills during the warm-up, so
# RSS after the run can be compared with RSS after the warm-up at all.
ASAN_EXTRA = "quarantine_size_mb=4"
# the short ctest variant; tests/reliability/conftest.py: --soak-NAME options
SOAK_DEFAULTS = {"requests": 30000, "connections": 64, "kill-every": 6.0, "freeze": 2.0,
                 "rate": 800.0, "warmup-s": 0.0, "rss-growth-mib": 8.0, "rss-ratio": 0.10}


def kinds():
    """The request mix: every decision path, each with its allowed replies."""
    clients = ["192.0.2.%d" % i for i in range(1, 251)]
    ok_or_fb = lambda want: {want.encode(), FALLBACK_DEFER.encode()}  # noqa: E731

    def reqs(**kw):
        return [policy_request(client_address=c, **kw) for c in clients]
    return [
        loadgen.Kind("valid", reqs(recipient="user@example.com"), ok_or_fb(DUNNO)),
        loadgen.Kind("unknown", reqs(recipient="nobody@example.com"), ok_or_fb(UNKNOWN)),
        loadgen.Kind("extension", reqs(recipient="alice+tag@example.com"), ok_or_fb(DUNNO)),
        loadgen.Kind("unprotected", reqs(recipient="someone@elsewhere.example"), ok_or_fb(DUNNO)),
        loadgen.Kind("ndr_deny", reqs(sender="", recipient="bounce@remote.example"), ok_or_fb(NDR_DENIED)),
        loadgen.Kind("ndr_limit", reqs(sender="", recipient="bounce@lists.example.org"), ok_or_fb(DUNNO)),
        loadgen.Kind("catch_all", reqs(recipient="anything@example.net"), ok_or_fb(DUNNO)),
        loadgen.Kind("blocked", [policy_request(client_address="198.51.100.7")], ok_or_fb(BLOCKED)),
        loadgen.Kind("exempt", [policy_request(client_address="127.0.0.1", recipient="x@example.com")],
                     ok_or_fb(UNKNOWN)),
        loadgen.Kind("not_rcpt", reqs(protocol_state="DATA"), {DUNNO.encode()}),
    ]


class Chaos(threading.Thread):
    """Every `every` s: SIGKILL + restart; half-way between: SIGSTOP for `freeze` s."""

    def __init__(self, redis, every, freeze):
        super().__init__(daemon=True)
        self.redis, self.every, self.freeze = redis, every, freeze
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
                self.redis.kill()
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


def settle(checks, d, what):
    """Clients gone, Redis connected: wait until backstopd says so, then sample RSS and fds."""
    poll(lambda: d.metrics().get("backstop_connections") == 0, 15, what="backstop_connections 0")
    poll(lambda: d.metrics().get("backstop_redis_up") == 1, 15, what="backstop_redis_up 1")
    time.sleep(1.5)  # stats flush, late replies, pending closes
    rss, fds = d.rss_kib(), d.fds()
    checks.measure("%s: RSS %.1f MiB, open fds %d" % (what, rss / 1024, fds), "")
    return rss, fds


def test_soak(pytestconfig, redis_factory, rel_backstopd, backstopd_bin, checks, monkeypatch):
    """Given backstopd under steady load, when its Redis is killed, restarted
    and frozen again and again, then every request gets a right answer (or
    the fallback) in time, and memory and fds stay bounded."""
    a = dict(SOAK_DEFAULTS)
    for k in SOAK_DEFAULTS:
        v = pytestconfig.getoption("soak_" + k.replace("-", "_"), None)
        a[k] = a[k] if v is None else v
    sanitized = is_sanitized(backstopd_bin)
    checks.measure("build", "sanitized (ASan/UBSan)" if sanitized else "optimised")
    checks.measure("plan", "%d requests over %d connections, rate %s, SIGKILL+restart every %gs, "
                   "SIGSTOP %gs" % (a["requests"], a["connections"], a["rate"] or "max",
                                    a["kill-every"], a["freeze"]))
    r = redis_factory("redis", tcp=True)
    r.client.sadd("backstop:domains", "example.com", "example.net")
    r.client.sadd("backstop:rcpt:example.com", "user", "alice", "postmaster")
    r.client.sadd("backstop:rcpt:example.net", "*")
    r.client.hset("backstop:ndr", mapping={"*": "deny", "lists.example.org": "limit 1000000/1h"})
    r.client.set("backstop:block:198.51.100.7", "manual")
    r.client.save()  # what each restart reloads
    monkeypatch.setenv("ASAN_OPTIONS", asan_options(ASAN_EXTRA))
    d = rel_backstopd(r, metrics=True,
                      server={"max_connections": str(max(1000, a["connections"] + 64))},
                      redis={"timeout": "%dms" % TIMEOUT_MS, "connect_timeout": "1s"},
                      ratelimit={"invalid_recipients": "100000/1m"},
                      harvest={"threshold": "100000/1m"},  # counted, never tripped
                      log={"level": "info"})
    pid = d.pid
    rss0, fds0 = settle(checks, d, "after start")

    deadline = (TIMEOUT_MS + SLACK_MS) / 1000.0
    ks = kinds()

    def progress(res):
        print("#   %.0fs: %s" % (res.elapsed, res.summary()), flush=True)

    def phase(name, **run_kw):
        chaos = Chaos(r, a["kill-every"], a["freeze"])
        g = loadgen.LoadGen(d.addr, a["connections"], ks, deadline, hang_s=5.0, progress=progress)
        chaos.start()
        try:
            res = g.run(rate=a["rate"] or None, **run_kw)
        finally:
            chaos.finish()
            g.close()
        if chaos.error:
            raise chaos.error
        checks.measure("%s" % name, res.summary())
        checks.measure("%s chaos" % name, "%d SIGKILL+restart, %d SIGSTOP" % (chaos.kills, chaos.freezes))
        return res, chaos

    warm_s = a["warmup-s"] or a["kill-every"] + 1.0
    phase("warm-up (%.0fs)" % warm_s, duration_s=warm_s)
    rss_w, fds_w = settle(checks, d, "after warm-up")

    res, chaos = phase("run", total=a["requests"])
    rss_e, fds_e = settle(checks, d, "after the run")

    # --- answers
    checks.check("100 % of requests answered", res.answered == a["requests"] and res.unanswered == 0,
                 "%d of %d answered, %d unanswered (%d hangs, %d closed by server)" % (
                     res.answered, a["requests"], res.unanswered, res.hangs, res.closed_by_server))
    checks.measure("deadline misses (> %d ms)" % (TIMEOUT_MS + SLACK_MS), res.late)
    checks.measure("max latency", "%.1f ms (kernel receive timestamp; %.1f ms as the client process saw it)" % (
        res.max_latency * 1000, res.user_max_latency * 1000))
    checks.measure("latency p50 / p99 / p99.9", "%.0f / %.0f / %.0f ms" % (
        res.percentile(.5) * 1000, res.percentile(.99) * 1000, res.percentile(.999) * 1000))
    if res.late_samples:
        ev = ", ".join("%s@%.1fs" % (w, t - res.t_start) for t, w in chaos.events)
        checks.note("late answers (latency, sent at, kind): " + "; ".join(
            "%.0fms @%.2fs %s" % (lat * 1000, ts, k) for lat, ts, k, _ in sorted(res.late_samples)[-8:]))
        checks.note("chaos timeline: " + ev)
    checks.check("each answer within timeout + %d ms" % SLACK_MS, res.late == 0,
                 "%d late, max %.1f ms" % (res.late, res.max_latency * 1000))
    checks.check("every answer is right for its request or the fallback", res.unexpected == 0,
                 "%d unexpected, e.g. %s" % (res.unexpected, res.unexpected_samples[:3]))
    nfb = sum(n for (k, rep), n in res.replies.items() if rep == FALLBACK_DEFER.encode())
    checks.measure("fallback answers", "%d of %d (%.1f %%)" % (nfb, res.answered,
                                                               100.0 * nfb / max(1, res.answered)))
    checks.check("the chaos happened during the run (>= 1 SIGKILL and >= 1 SIGSTOP)",
                 chaos.kills >= 1 and chaos.freezes >= 1,
                 "%d kills, %d freezes" % (chaos.kills, chaos.freezes))
    checks.check("real answers and fallback answers both seen", 0 < nfb < res.answered)

    # --- the process
    m = d.metrics()
    checks.measure("redis connects / disconnects / stalls / busy / late replies", "%d / %d / %d / %d / %d" % (
        m["backstop_redis_connects_total"], m["backstop_redis_disconnects_total"],
        m["backstop_redis_stalls_total"], m["backstop_redis_busy_total"], m["backstop_late_replies_total"]))
    checks.check("same backstopd process throughout (no crash)", d.alive() and d.pid == pid)
    if sanitized:
        growth = (rss_e - rss_w) / 1024.0
        checks.check("RSS bounded (sanitized build: growth <= %.0f MiB)" % a["rss-growth-mib"],
                     growth <= a["rss-growth-mib"],
                     "after warm-up %.1f MiB, after the run %.1f MiB (%+.1f MiB)" % (
                         rss_w / 1024, rss_e / 1024, growth))
    else:
        checks.check("RSS after the run within %.0f %% of RSS after warm-up" % (a["rss-ratio"] * 100),
                     rss_e <= rss_w * (1 + a["rss-ratio"]),
                     "after warm-up %.1f MiB, after the run %.1f MiB (%+.1f %%)" % (
                         rss_w / 1024, rss_e / 1024, 100.0 * (rss_e - rss_w) / rss_w))
    checks.check("open fds back to baseline after the clients disconnected",
                 fds_e == fds0 and fds_w == fds0,
                 "start %d, after warm-up %d, after the run %d" % (fds0, fds_w, fds_e))
    rc = d.terminate(15.0)
    checks.check("backstopd exits 0 on SIGTERM", rc == 0, "status %s" % rc)
    rep = d.sanitizer_reports()
    checks.check("no sanitizer report in backstopd's stderr", not rep, str(rep))
    checks.verdict()
