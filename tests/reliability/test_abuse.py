"""
tests/reliability/test_abuse.py - slowloris and malformed clients must not hurt the normal ones

The soft RLIMIT_NOFILE is raised (to 8192 or the hard limit) before
backstopd starts, so it inherits it; [server] max_connections = 2000,
idle_timeout = 5s, metrics on. Two waves, each:
  - 1,000 slowloris connections sending a valid request one byte a second:
    each must be closed, without a byte of reply, 10 s (the partial-request
    limit) after its first byte (accepted: 9.5 .. 11.5 s);
  - 50 connections that send nothing: closed at idle_timeout;
  - malformed requests, 50 connections each, closed without a reply and
    counted by kind: a 3,000-byte line (error="line"), 10,000 attributes
    ("attrs"), 18 KB in 9 lines ("request"), a NUL byte ("nul"), a line
    without '=' ("syntax"), request=other (bad_request_type), a request
    without its terminating empty line (held open: a partial timeout);
  - 20 clients (on the unix listener) that send requests and never read the
    replies: once the socket is full backstopd must close them 10 s (the
    "time to take a reply") later, counted as write errors;
  - all along, 4 normal connections send requests every 20 ms: every one
    must be answered correctly (no fallback) within [redis] timeout + 50 ms.
Then the Prometheus counters must match exactly what was sent, the
connection gauge must return to 0, and memory must stay bounded: RSS growth
at the peak at most 64 KiB per abusive connection, the second wave's peak
no higher than the first's (+10 %, +2 MiB), and RSS back under the peak.
Every check is reported (reltools.Checks); the test fails with all failed ones.
"""
import resource
import select
import selectors
import socket
import threading
import time

import pytest

from reliability.reltools import asan_options
from support.policy import PolicyConn
from support.policy import request as policy_request
from support.replies import DUNNO, USER_UNKNOWN
from support.wait import poll

pytestmark = pytest.mark.slow

UNKNOWN = USER_UNKNOWN("nobody@example.com")
TIMEOUT_MS = 300
SLOWLORIS = 1000
IDLE = 50
PER_KIND = 50
PARTIAL_S = 10.0
IDLE_S = 5.0
NORMAL_CONNS = 4
NEVER_READS = 20
ASAN_EXTRA = "quarantine_size_mb=4"


def malformed_cases():
    good = policy_request()
    return {
        "line": b"request=smtpd_access_policy\nx=" + b"a" * 3000 + b"\n\n",
        "attrs": b"request=smtpd_access_policy\n" + b"a=b\n" * 10000 + b"\n",
        "request": b"request=smtpd_access_policy\n" + (b"x=" + b"b" * 1998 + b"\n") * 9 + b"\n",
        "nul": b"request=smtpd_access_policy\nsender=a\x00b@example.com\n" + good[28:],
        "syntax": b"request=smtpd_access_policy\nthis line has no equals sign\n\n",
        "bad_request_type": policy_request(request="junk_policy"),
        "no_terminator": good[:-1],  # held open: the partial timeout closes it
    }


def wait_closed(c, timeout):
    """Wait for EOF/reset on PolicyConn c: (closed, bytes received before it)."""
    deadline = time.monotonic() + timeout
    got = c.buf
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, got
        c.sock.settimeout(left)
        try:
            chunk = c.sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            return True, got
        got += chunk


class Normal(threading.Thread):
    """NORMAL_CONNS connections, a request every 20 ms each, all checked."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.stop = threading.Event()
        self.n = 0
        self.bad = []
        self.lat = []

    def run(self):
        conns = [self.d.conn(timeout=5.0) for _ in range(NORMAL_CONNS)]
        i = 0
        try:
            while not self.stop.is_set():
                for c in conns:
                    i += 1
                    valid = i % 2 == 0
                    rcpt = "user@example.com" if valid else "nobody@example.com"
                    try:
                        r = c.ask(client_address="192.0.2.%d" % (1 + i % 200), recipient=rcpt)
                    except Exception as e:  # noqa: BLE001
                        self.bad.append(repr(e))
                        return
                    self.n += 1
                    self.lat.append(c.last_latency)
                    if r != (DUNNO if valid else UNKNOWN):
                        self.bad.append(r)
                self.stop.wait(0.02)
        finally:
            for c in conns:
                c.close()


class Malformed(threading.Thread):
    """PER_KIND connections of every malformed kind; each must be closed
    without a byte of reply."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.results = {}  # kind -> list of (closed, bytes received, seconds to close)
        self.error = None

    def one(self, kind, data, hold):
        c = PolicyConn(self.d.addr, timeout=5.0)
        try:
            t0 = time.monotonic()
            c.send(data)
            closed, got = wait_closed(c, timeout=PARTIAL_S + 3 if hold else 5.0)
            return closed, got, time.monotonic() - t0
        finally:
            c.close()

    def never_reads(self):
        """Requests on the unix socket, replies never read: returns (closed,
        b"", seconds from our send blocking to the close)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.d.unix_path)
            s.setblocking(False)
            req = b"request=smtpd_access_policy\nprotocol_state=DATA\n\n"
            end = time.monotonic() + 5
            while time.monotonic() < end:
                try:
                    s.send(req)
                except BlockingIOError:
                    break
                except (BrokenPipeError, ConnectionResetError):
                    return True, b"", 0.0  # closed by backstopd while we still sent
                time.sleep(0.001)  # one request per read: not a pipelining flood
            t_block = time.monotonic()
            p = select.poll()
            p.register(s, select.POLLHUP | select.POLLRDHUP)
            ev = p.poll((PARTIAL_S + 4) * 1000)
            return bool(ev), b"", time.monotonic() - t_block
        finally:
            s.close()

    def run(self):
        try:
            cases = malformed_cases()
            held = []
            for kind, data in cases.items():
                if kind == "no_terminator":
                    continue
                self.results[kind] = [self.one(kind, data, False) for _ in range(PER_KIND)]
            # the held ones in parallel: each thread holds one open connection
            out = {"no_terminator": [], "never_reads": []}
            lock = threading.Lock()

            def hold():
                r = self.one("no_terminator", cases["no_terminator"], True)
                with lock:
                    out["no_terminator"].append(r)

            def never_reads():
                r = self.never_reads()
                with lock:
                    out["never_reads"].append(r)
            held = [threading.Thread(target=hold, daemon=True) for _ in range(PER_KIND)] + \
                [threading.Thread(target=never_reads, daemon=True) for _ in range(NEVER_READS)]
            for t in held:
                t.start()
            for t in held:
                t.join(PARTIAL_S + 15)
            self.results.update(out)
        except Exception as e:  # noqa: BLE001
            self.error = e


def slowloris_wave(d, rss_samples):
    """SLOWLORIS byte-a-second connections and IDLE silent ones; returns
    (close delays since first byte, bytes received, idle close delays, not closed)."""
    data = policy_request(client_address="192.0.2.99")
    sel = selectors.DefaultSelector()
    conns = {}
    for i in range(SLOWLORIS + IDLE):
        s = socket.create_connection(d.addr, timeout=5.0)
        s.setblocking(False)
        slow = i < SLOWLORIS
        st = {"slow": slow, "pos": 0, "first": None, "opened": time.monotonic(), "closed": None,
              "got": b""}
        if slow:
            s.send(data[:1])
            st["pos"] = 1
            st["first"] = time.monotonic()
        conns[s] = st
        sel.register(s, selectors.EVENT_READ, st)
    opened = time.monotonic()
    next_tick = opened + 1.0
    end = opened + PARTIAL_S + 4.0
    while time.monotonic() < end and any(st["closed"] is None for st in conns.values()):
        now = time.monotonic()
        if now >= next_tick:
            next_tick += 1.0
            for s, st in conns.items():
                if st["slow"] and st["closed"] is None and st["pos"] < len(data) - 2:
                    try:
                        s.send(data[st["pos"]:st["pos"] + 1])
                        st["pos"] += 1
                    except OSError:
                        pass  # closed: the read side reports it
            rss_samples.append(d.rss_kib())
        for key, _ in sel.select(timeout=min(0.05, max(0.0, next_tick - time.monotonic()))):
            s, st = key.fileobj, key.data
            try:
                chunk = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                st["got"] += chunk
                continue
            st["closed"] = time.monotonic()
            sel.unregister(s)
    slow_delays, idle_delays, got, open_left = [], [], 0, 0
    for s, st in conns.items():
        if st["closed"] is None:
            open_left += 1
        elif st["slow"]:
            slow_delays.append(st["closed"] - st["first"])
        else:
            idle_delays.append(st["closed"] - st["opened"])
        got += len(st["got"])
        s.close()
    sel.close()
    return slow_delays, got, idle_delays, open_left


def test_abuse(redis_factory, rel_backstopd, checks, monkeypatch):
    """Given normal clients at work, when two waves of slowloris, silent,
    malformed and never-reading clients hit backstopd, then each abusive one
    is closed as its limit says, the normal ones are served in time, the
    counters match and memory stays bounded."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    checks.measure("RLIMIT_NOFILE soft (inherited by backstopd)", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2 * (SLOWLORIS + IDLE) + 200:
        pytest.skip("the hard RLIMIT_NOFILE (%d) is too low for %d connections" % (
            hard, SLOWLORIS + IDLE))

    r = redis_factory("redis", tcp=True)
    r.client.sadd("backstop:domains", "example.com")
    r.client.sadd("backstop:rcpt:example.com", "user", "alice")
    monkeypatch.setenv("ASAN_OPTIONS", asan_options(ASAN_EXTRA))
    d = rel_backstopd(r, metrics=True, unix_listen=True,
                      server={"max_connections": "2000", "idle_timeout": "%ds" % IDLE_S},
                      redis={"timeout": "%dms" % TIMEOUT_MS},
                      ratelimit={"invalid_recipients": "100000/1m"},
                      harvest={"threshold": "100000/1m"},  # counted, never tripped
                      log={"level": "info"})
    checks.measure("backstopd Max open files", [ln for ln in open("/proc/%d/limits" % d.pid)
                                                if ln.startswith("Max open files")][0].split()[3])
    # warm up the allocator a little, then take the baseline
    with d.conn() as c:
        for _ in range(200):
            c.ask(recipient="user@example.com")
    time.sleep(0.5)
    rss_base = d.rss_kib()
    checks.measure("RSS baseline", "%.1f MiB" % (rss_base / 1024))

    normal = Normal(d)
    normal.start()
    peaks = []
    totals = {k: 0 for k in list(malformed_cases()) + ["never_reads"]}
    for wave in (1, 2):
        mal = Malformed(d)
        mal.start()
        samples = []
        slow, got, idle, open_left = slowloris_wave(d, samples)
        mal.join(PARTIAL_S + 20)
        if mal.error:
            raise mal.error
        peak = max(samples) if samples else d.rss_kib()
        peaks.append(peak)
        checks.measure("wave %d: RSS peak" % wave, "%.1f MiB (%+.1f MiB over the baseline, %.1f KiB per "
                       "abusive connection)" % (peak / 1024, (peak - rss_base) / 1024,
                                                 (peak - rss_base) / (SLOWLORIS + IDLE + 7 * PER_KIND + NEVER_READS)))
        checks.measure("wave %d: slowloris closed after their first byte" % wave,
                       "min %.2fs, max %.2fs" % (min(slow), max(slow)) if slow else "none")
        checks.check("wave %d: all %d slowloris connections closed 9.5..11.5 s after their first byte" % (
             wave, SLOWLORIS), len(slow) == SLOWLORIS and all(9.5 <= t <= 11.5 for t in slow),
             "%d closed, %d still open, outside: %s" % (len(slow), open_left,
                                                        sorted(t for t in slow if not 9.5 <= t <= 11.5)[:5]))
        checks.check("wave %d: %d silent connections closed at idle_timeout (%.0fs)" % (wave, IDLE, IDLE_S),
                     len(idle) == IDLE and all(IDLE_S - 0.5 <= t <= IDLE_S + 1.5 for t in idle),
                     "%d closed, range %.2f..%.2fs" % (len(idle), min(idle, default=0), max(idle, default=0)))
        checks.check("wave %d: no byte of reply to a slowloris or silent connection" % wave, got == 0,
                     "%d bytes" % got)
        for kind, res in sorted(mal.results.items()):
            totals[kind] += len(res)
            bad = [x for x in res if not x[0] or x[1]]
            slowest = max((x[2] for x in res), default=0)
            fastest = min((x[2] for x in res), default=0)
            if kind == "never_reads":
                # backstopd keeps reading while it answers: a client that never
                # reads its replies has pipelined more than a request's worth by
                # the time its socket fills, and is closed for that at once (or
                # by the 10 s write deadline, should its requests stay small)
                ok = len(res) == NEVER_READS and not bad and slowest <= PARTIAL_S + 2
                checks.check("wave %d: never_reads x%d closed within 12 s of their socket filling" % (
                     wave, len(res)), ok, "closed after %.2f..%.2fs" % (fastest, slowest))
                continue
            limit = PARTIAL_S + 1.5 if kind == "no_terminator" else 1.0
            checks.check("wave %d: %s x%d closed without a reply" % (wave, kind, len(res)),
                         len(res) == PER_KIND and not bad and slowest <= limit,
                         "slowest close %.2fs (limit %.1fs)%s" % (
                             slowest, limit, ", bad: %s" % bad[:2] if bad else ""))
    normal.stop.set()
    normal.join(10)

    # --- the normal clients
    lat = sorted(normal.lat)
    checks.measure("normal requests answered", normal.n)
    checks.measure("normal latency max / p99 / median", "%.1f / %.1f / %.1f ms" % (
         lat[-1] * 1000, lat[int(len(lat) * .99)] * 1000, lat[len(lat) // 2] * 1000) if lat else "-")
    checks.check("normal clients: every request answered correctly, no fallback", normal.n > 0 and not normal.bad,
                 "%d answered; problems: %s" % (normal.n, normal.bad[:3]))
    checks.check("normal clients: each answer within timeout + 50 ms",
                 lat and lat[-1] <= (TIMEOUT_MS + 50) / 1000, "max %.1f ms" % (lat[-1] * 1000 if lat else -1))

    # --- the counters
    poll(lambda: d.metrics().get("backstop_connections") == 0, 10, what="backstop_connections 0")
    m = d.metrics()
    want = {
        'backstop_protocol_errors_total{error="line"}': totals["line"],
        'backstop_protocol_errors_total{error="attrs"}': totals["attrs"],
        'backstop_protocol_errors_total{error="request"}': totals["request"],
        'backstop_protocol_errors_total{error="syntax"}': totals["syntax"],
        'backstop_protocol_errors_total{error="nul"}': totals["nul"],
        "backstop_bad_request_type_total": totals["bad_request_type"],
        "backstop_partial_timeouts_total": 2 * SLOWLORIS + totals["no_terminator"],
        "backstop_idle_timeouts_total": 2 * IDLE,
        "backstop_write_errors_total + backstop_pipelined_closed_total": totals["never_reads"],
        "backstop_connections": 0,
        "backstop_fallback_answers_total": 0,
        "backstop_redis_errors_total": 0,
    }
    for k, v in want.items():
        got = sum((m.get(part) or 0) for part in k.split(" + ")) if " + " in k else m.get(k)
        checks.check("metric %s == %d" % (k, v), got == v, "got %s" % got)
    acc, clo = m.get("backstop_connections_accepted_total"), m.get("backstop_connections_closed_total")
    checks.check("every accepted connection closed", acc == clo and acc >= 2 * (SLOWLORIS + IDLE),
                 "accepted %s, closed %s" % (acc, clo))
    log = d.log()
    checks.check("each malformed request logged", log.count("malformed policy request") ==
                 sum(totals[k] for k in ("line", "attrs", "request", "syntax", "nul")),
                 "%d lines" % log.count("malformed policy request"))

    # --- memory
    time.sleep(1.0)
    rss_end = d.rss_kib()
    checks.measure("RSS after the abuse", "%.1f MiB" % (rss_end / 1024))
    per_conn = (peaks[0] - rss_base) / float(SLOWLORIS + IDLE + 7 * PER_KIND + NEVER_READS)
    checks.check("RSS growth at the peak <= 64 KiB per abusive connection", per_conn <= 64,
                 "%.1f KiB" % per_conn)
    checks.check("second wave's RSS peak no higher than the first's (+10 %, +2 MiB)",
                 peaks[1] <= peaks[0] * 1.10 + 2048,
                 "%.1f MiB then %.1f MiB" % (peaks[0] / 1024, peaks[1] / 1024))
    checks.check("RSS after the abuse not above the peak", rss_end <= max(peaks) + 1024,
                 "%.1f MiB" % (rss_end / 1024))
    rc = d.terminate(15.0)
    checks.check("backstopd exits 0 on SIGTERM", rc == 0, "status %s" % rc)
    checks.check("no sanitizer report", not d.sanitizer_reports(), str(d.sanitizer_reports()))
    checks.verdict()
