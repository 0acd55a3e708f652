"""
reltools - what the reliability tests need beyond tests/support

    RelBackstopd        tests/support's Backstopd with an inet and a unix
                        listener at once (inet=, unix_listen=), a Prometheus
                        listener on a free port (metrics=True: metrics(),
                        metrics_text()), the start-up probe over the unix
                        socket (probe_unix), rss_kib(), fds(); ready when
                        its log says "redis: connected" (no probe request)
    Checks              soft assertions: one "ok"/"FAIL"/"XFAIL" line per
                        check and the figures measured; verdict() fails the
                        test with every failed check at once
    proc_status, rss_kib, fd_count, tcp_peers_of     /proc of a process
    parse_metrics, is_sanitized, asan_options

A check that fails because of a reported, unfixed backstopd bug
(known_bug=...) prints XFAIL and makes the test xfail instead of fail,
unless BACKSTOP_REL_STRICT=1. Measurements go through the `record` fixture
of tests/conftest.py: printed at once and again in the terminal summary.
"""
import os
import socket

import pytest

from support import procs
from support.backstopd import Backstopd
from support.wait import poll

SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "UndefinedBehaviorSanitizer")


# ---------------------------------------------------------------------------
# /proc

def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def rss_kib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(t[8:-1])
    return out


def tcp_peers_of(pid):
    """(local_port, remote_port, state) of every TCP socket that pid holds."""
    inodes = socket_inodes(pid)
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[9] in inodes:
                        lport = int(fields[1].rsplit(":", 1)[1], 16)
                        rport = int(fields[2].rsplit(":", 1)[1], 16)
                        out.append((lport, rport, fields[3]))
        except OSError:
            pass
    return out


def connected_ports(pid):
    """Remote ports of pid's ESTABLISHED TCP connections."""
    return [rp for _, rp, st in tcp_peers_of(pid) if st == "01"]


# ---------------------------------------------------------------------------
# backstopd

def parse_metrics(text):
    """Prometheus text -> {'name{labels}': float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def is_sanitized(binary):
    try:
        with open(binary, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def asan_options(extra):
    """ASAN_OPTIONS for a sanitized daemon: the caller's (scripts/test exports
    them) or our defaults, plus extra."""
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    return asan + ":" + extra if asan else extra


class RelBackstopd(Backstopd):
    def __init__(self, binary, directory, redis_endpoint, name="backstopd", unix_listen=False,
                 inet=True, metrics=False, **sections):
        super().__init__(binary, directory, redis_endpoint, name=name, unix_listen=unix_listen,
                         **sections)
        self.inet = inet
        self.metrics_port = procs.free_port() if metrics else None
        self.probe_unix = False  # addr (and the start-up probe) is the unix socket

    @property
    def addr(self):
        return self.unix_path if (self.probe_unix or not self.inet) else ("127.0.0.1", self.port)

    def wait_redis(self, timeout=15.0):
        """Ready when the log says "redis: connected" (no probe request: these
        tests check counters, and a probe's fallback answer would count)."""
        poll(lambda: self.assert_alive() or "redis: connected" in self.log(), timeout,
             what="%s to connect to Redis" % self.name)

    def listeners(self):
        listen = ["inet:127.0.0.1:%d" % self.port] if self.inet else []
        if self.unix_path:
            listen.append("unix:" + self.unix_path)
        if self.metrics_port:
            self.sections.setdefault("metrics", {})["listen"] = "inet:127.0.0.1:%d" % self.metrics_port
        return listen

    def metrics_text(self, timeout=5.0, source="127.0.0.1"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.bind((source, 0))
            s.connect(("127.0.0.1", self.metrics_port))
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200"), "metrics: unexpected answer %r" % data[:200]
        return body.decode()

    def metrics(self, **kw):
        return parse_metrics(self.metrics_text(**kw))

    def rss_kib(self):
        return rss_kib(self.proc.pid)

    def fds(self):
        return fd_count(self.proc.pid)

    def sanitizer_reports(self):
        text = self.log()
        return [m for m in SANITIZER_MARKERS if m in text]


# ---------------------------------------------------------------------------
# soft assertions

class Checks:
    def __init__(self, record):
        self.record = record
        self.passed = 0
        self.failures = []
        self.xfails = []

    def note(self, msg):
        for line in str(msg).splitlines() or [""]:
            print("# " + line, flush=True)

    def measure(self, what, value):
        self.record("%s: %s" % (what, value) if value != "" else what)

    def check(self, what, cond, detail="", known_bug=None):
        """One assertion. known_bug names a reported, unfixed backstopd bug:
        its failure prints XFAIL and makes the test xfail, unless the
        environment has BACKSTOP_REL_STRICT=1 (then it fails like any other)."""
        if cond:
            self.passed += 1
            print("ok %s%s" % (what, (" (%s)" % detail) if detail else ""), flush=True)
            if known_bug:
                self.note("known bug %r no longer reproduced: drop its known_bug marker" % known_bug)
        elif known_bug and os.environ.get("BACKSTOP_REL_STRICT") != "1":
            self.xfails.append("%s [known backstopd bug: %s]" % (what, known_bug))
            print("XFAIL %s%s [known backstopd bug: %s; BACKSTOP_REL_STRICT=1 makes it fail]" % (
                what, (": %s" % detail) if detail else "", known_bug), flush=True)
        else:
            self.failures.append("%s%s" % (what, (": %s" % detail) if detail else ""))
            print("FAIL %s%s" % (what, (": %s" % detail) if detail else ""), flush=True)
        return bool(cond)

    def skip(self, what, why):
        print("skip %s: %s" % (what, why), flush=True)

    def verdict(self):
        """End of the test: fail with every failed check, or xfail on known bugs."""
        if self.failures:
            pytest.fail("%d of %d checks failed:\n  %s" % (
                len(self.failures), self.passed + len(self.failures) + len(self.xfails),
                "\n  ".join(self.failures)), pytrace=False)
        if self.xfails:
            pytest.xfail("; ".join(self.xfails))
