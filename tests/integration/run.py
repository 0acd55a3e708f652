#!/usr/bin/env python3
"""
run.py - integration tests of backstopd against a real redis-server

    python3 tests/integration/run.py --backstopd build/backstopd [--only NAME]... [-v]

Every test starts its own redis-server (unix socket, no TCP, in a private
temporary directory; a free TCP port only where a test needs TCP) and its own
backstopd (-f -c CONFIG, stderr to a log file), talks the Postfix policy
protocol to it, and stops everything it started by PID (SIGTERM, then
SIGKILL) whatever happens. Ports 6379 and 10040 are never used.

Output: one line per test ("ok NAME (0.3s)" / "FAIL NAME: reason"), then
"N passed, N failed"; the exit status is 1 when anything failed. With -v,
measurements and (on failure) the tail of the daemon's log are printed as
"# ..." lines.

Standard library only. Waits poll with generous deadlines: the tests are meant
to pass on a loaded 2-core machine.
"""
import argparse
import atexit
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# ---------------------------------------------------------------------------
# constants: the answers the spec defines

DUNNO = "action=DUNNO\n\n"
BLOCKED_TEXT = "450 4.7.1 Too many invalid recipients from your host, try again later"
BLOCKED = "action=" + BLOCKED_TEXT + "\n\n"
FALLBACK_DEFER = "action=DEFER_IF_PERMIT Recipient verification temporarily unavailable\n\n"
REPLY_RE = re.compile(rb"^action=[\x20-\x7e]{1,512}\n\n$")
PREFIX = "backstop:"
FORBIDDEN_PORTS = {6379, 10040}


# Postfix itself puts "<rcpt>: Recipient address rejected: " before a policy
# reply's text, so the action carries the short text only; the full text is
# in backstopd's log line and in WARN replies (report mode).
def user_unknown_text(rcpt):
    return "550 5.1.1 User unknown"


def ndr_deny_text(rcpt):
    return "550 5.7.1 Delivery status notifications to this domain are not accepted"


def ndr_limit_text(rcpt):
    return "550 5.7.1 Too many delivery status notifications to this domain"


def full_text(short, rcpt):
    """What the SMTP client sees (and WARN replies and log lines carry)."""
    code = short[:9]
    return "%s <%s>: Recipient address rejected: %s" % (code, rcpt, short[10:])


def action(text):
    return "action=" + text + "\n\n"


def USER_UNKNOWN(rcpt):
    return action(user_unknown_text(rcpt))


def NDR_DENY(rcpt):
    return action(ndr_deny_text(rcpt))


def NDR_LIMIT(rcpt):
    return action(ndr_limit_text(rcpt))


# ---------------------------------------------------------------------------
# global state

VERBOSE = False
BACKSTOPD = None
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
LIVE_PROCS = set()  # every Popen not yet reaped, for the atexit safety net
LIVE_LOCK = threading.Lock()


def note(msg):
    """A '# ...' line, printed with -v only (measurements, diagnostics)."""
    if VERBOSE:
        for line in str(msg).splitlines() or [""]:
            print("# " + line, flush=True)


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def expect(got, want, what):
    if got != want:
        raise TestFailure("%s: expected %r, got %r" % (what, want, got))


def poll(fn, timeout, interval=0.05, what="condition"):
    """Call fn until it returns something truthy; return it. Fail after timeout s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last_exc = None
        except TestFailure:
            raise
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        if time.monotonic() >= deadline:
            extra = " (last error: %r)" % last_exc if last_exc else ""
            raise TestFailure("timed out after %.1fs waiting for %s%s" % (timeout, what, extra))
        time.sleep(interval)


def free_port():
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in FORBIDDEN_PORTS:
            return port


def spawn(argv, stdout, stderr):
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                         close_fds=True)
    with LIVE_LOCK:
        LIVE_PROCS.add(p)
    return p


def stop_process(p, timeout=5.0, sig=signal.SIGTERM):
    """Stop p (SIGCONT first in case it is stopped), SIGKILL after timeout.
    Returns the exit status (negative = signal)."""
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGCONT)
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    with LIVE_LOCK:
        LIVE_PROCS.discard(p)
    return p.returncode


@atexit.register
def _kill_leftovers():
    with LIVE_LOCK:
        procs = list(LIVE_PROCS)
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
            except Exception:  # noqa: BLE001
                pass


# ---------------------------------------------------------------------------
# a minimal RESP client (exact bytes: keys with odd characters survive)

class RedisReplyError(Exception):
    pass


class RedisClient:
    def __init__(self, path=None, port=None, timeout=5.0):
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def _enc(a):
        if isinstance(a, bytes):
            return a
        return str(a).encode()

    def cmd(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = self._enc(a)
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RedisReplyError(rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % line)


class RedisServer:
    def __init__(self, ctx, name="redis", tcp=False):
        self.ctx = ctx
        self.dir = ctx.mkdir(name)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.port = free_port() if tcp else 0
        self.proc = None
        self.logf = os.path.join(self.dir, "redis.log")

    @property
    def endpoint(self):
        if self.port:
            return "tcp:127.0.0.1:%d" % self.port
        return "unix:" + self.sock

    def start(self, wait=True):
        argv = [REDIS_SERVER, "--port", str(self.port), "--unixsocket", self.sock,
                "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--daemonize", "no"]
        if self.port:
            argv += ["--bind", "127.0.0.1"]
        out = open(self.logf, "ab")
        try:
            self.proc = spawn(argv, out, subprocess.STDOUT)
        finally:
            out.close()
        self.ctx.procs.append(self.proc)
        if wait:
            self.wait_ready()
        return self

    def client(self, timeout=5.0):
        return RedisClient(path=self.sock, timeout=timeout)

    def wait_ready(self, timeout=10.0):
        def ping():
            if self.proc.poll() is not None:
                raise TestFailure("redis-server exited (%s): %s" % (
                    self.proc.returncode, tail(self.logf, 5)))
            c = self.client(timeout=1.0)
            try:
                return c.cmd("PING") == "PONG"
            finally:
                c.close()
        poll(ping, timeout, what="redis PING")

    def r(self, *args):
        """One command on a fresh connection."""
        c = self.client()
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def many(self, cmds):
        c = self.client()
        try:
            return [c.cmd(*a) for a in cmds]
        finally:
            c.close()

    def keys(self):
        """Every key (SCAN), as bytes."""
        c = self.client()
        try:
            out, cursor = [], b"0"
            while True:
                cursor, batch = c.cmd("SCAN", cursor, "COUNT", "1000")
                out.extend(batch)
                if cursor == b"0":
                    return out
        finally:
            c.close()

    def stats(self):
        raw = self.r("HGETALL", PREFIX + "stats") or []
        return {raw[i].decode(): int(raw[i + 1]) for i in range(0, len(raw), 2)}

    def kill(self, sig=signal.SIGKILL):
        os.kill(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)
            with LIVE_LOCK:
                LIVE_PROCS.discard(self.proc)

    def stop(self):
        if self.proc:
            stop_process(self.proc)


def seed(redis):
    """The standard data set of most tests."""
    redis.many([
        ("SADD", PREFIX + "domains", "example.com", "example.net"),
        ("SADD", PREFIX + "rcpt:example.com", "user", "alice", "postmaster"),
        ("SADD", PREFIX + "rcpt:example.net", "*"),
    ])


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------
# policy requests

def policy_request(**kw):
    """A Postfix 3.7 RCPT request. Keyword None removes an attribute; extra
    keywords are appended; values may be str or bytes. Returns bytes."""
    attrs = [
        ("request", "smtpd_access_policy"),
        ("protocol_state", "RCPT"),
        ("protocol_name", "ESMTP"),
        ("helo_name", "mx.sender.example"),
        ("queue_id", ""),
        ("sender", "someone@sender.example"),
        ("recipient", "user@example.com"),
        ("recipient_count", "0"),
        ("client_address", "192.0.2.1"),
        ("client_name", "mx.sender.example"),
        ("reverse_client_name", "mx.sender.example"),
        ("instance", "a1b2.6425d3c4.8e2f1.0"),
        ("sasl_method", ""),
        ("sasl_username", ""),
        ("sasl_sender", ""),
        ("size", "0"),
        ("ccert_subject", ""),
        ("ccert_issuer", ""),
        ("ccert_fingerprint", ""),
        ("ccert_pubkey_fingerprint", ""),
        ("encryption_protocol", ""),
        ("encryption_cipher", ""),
        ("encryption_keysize", "0"),
        ("etrn_domain", ""),
        ("stress", ""),
        ("server_address", "127.0.0.1"),
        ("server_port", "25"),
        ("compatibility_level", "3.6"),
        ("mail_version", "3.7.11"),
    ]
    names = [a for a, _ in attrs]
    vals = dict(attrs)
    for k, v in kw.items():
        if k not in vals:
            names.append(k)
        vals[k] = v
    out = []
    for n in names:
        v = vals[n]
        if v is None:
            continue
        if isinstance(v, str):
            v = v.encode()
        out.append(n.encode() + b"=" + v + b"\n")
    return b"".join(out) + b"\n"


class Closed(Exception):
    """The server closed the connection (EOF or reset) before a full reply."""

    def __init__(self, partial=b""):
        super().__init__("connection closed by backstopd (partial reply %r)" % partial)
        self.partial = partial


class PolicyConn:
    def __init__(self, addr, timeout=10.0):
        if isinstance(addr, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(addr)
        else:
            self.sock = socket.create_connection(addr, timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.last_latency = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        """Send, tolerating a peer that already closed (EPIPE/ECONNRESET)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def read_raw_reply(self, timeout=None):
        """Bytes up to and including the first empty line; raises Closed."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\n\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure("no reply within %.1fs (got %r so far)" % (
                    timeout if timeout is not None else self.timeout, self.buf))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed(self.buf)
            self.buf += chunk
        i = self.buf.index(b"\n\n") + 2
        reply, self.buf = self.buf[:i], self.buf[i:]
        return reply

    def read_reply(self, timeout=None):
        raw = self.read_raw_reply(timeout)
        if not REPLY_RE.match(raw):
            raise TestFailure("malformed reply %r" % raw)
        return raw.decode()

    def ask(self, timeout=None, **kw):
        return self.ask_raw(policy_request(**kw), timeout)

    def ask_raw(self, data, timeout=None):
        t0 = time.monotonic()
        if not self.send(data):
            raise Closed()
        r = self.read_reply(timeout)
        self.last_latency = time.monotonic() - t0
        return r

    def expect_closed(self, timeout=5.0, what="connection"):
        """Assert the server closes without sending a single byte."""
        deadline = time.monotonic() + timeout
        got = self.buf
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure("%s: not closed within %.1fs (received %r)" % (
                    what, timeout, got))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            got += chunk
        check(got == b"", "%s: closed, but only after sending %r" % (what, got))

    def is_open(self):
        """True if the server has not closed (no EOF pending)."""
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
            return bool(data)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(self.timeout)


# ---------------------------------------------------------------------------
# backstopd

DEFAULT_CONFIG = {
    "server": {"idle_timeout": "330s", "max_connections": "1000"},
    "redis": {"prefix": PREFIX, "timeout": "300ms", "connect_timeout": "1s"},
    "policy": {"mode": "enforce", "on_redis_error": "defer", "recipient_delimiter": "+",
               "ndr_default": "deny"},
    "ratelimit": {"invalid_recipients": "20/10m", "block_time": "1h", "ipv6_prefix": "64",
                  "exempt": ["192.0.2.250/32"]},
    "log": {"level": "info"},
}


def render_config(sections):
    out = ["# written by tests/integration/run.py"]
    for sec in ("server", "redis", "policy", "ratelimit", "metrics", "log"):
        if sec not in sections:
            continue
        out.append("[%s]" % sec)
        for k, v in sections[sec].items():
            if v is None:
                continue
            for item in (v if isinstance(v, list) else [v]):
                out.append("%s = %s" % (k, item))
    return "\n".join(out) + "\n"


class Backstopd:
    def __init__(self, ctx, redis_endpoint, name="backstopd", unix_listen=False, **sections):
        self.ctx = ctx
        self.name = name
        self.dir = ctx.mkdir(name)
        self.conf_path = os.path.join(self.dir, "backstop.ini")
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.unix_path = os.path.join(self.dir, "policy.sock") if unix_listen else None
        self.port = None
        self.proc = None
        self.expected_exit = False
        self.sections = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
        self.sections["redis"]["server"] = redis_endpoint
        for sec, kv in sections.items():
            self.sections.setdefault(sec, {}).update(kv)

    @property
    def addr(self):
        return self.unix_path if self.unix_path else ("127.0.0.1", self.port)

    def write_config(self, **sections):
        for sec, kv in sections.items():
            self.sections.setdefault(sec, {}).update(kv)
        if self.unix_path:
            self.sections["server"]["listen"] = "unix:" + self.unix_path
        else:
            self.sections["server"]["listen"] = "inet:127.0.0.1:%d" % self.port
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(render_config(self.sections))
        os.replace(tmp, self.conf_path)

    def write_listen(self, listen, **sections):
        """The config with [server] listen = listen (a string or a list),
        for a reload that moves the listeners; self.addr is unchanged."""
        for sec, kv in sections.items():
            self.sections.setdefault(sec, {}).update(kv)
        secs = {k: dict(v) for k, v in self.sections.items()}
        secs["server"]["listen"] = listen
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(render_config(secs))
        os.replace(tmp, self.conf_path)

    def reload(self, timeout=5.0):
        """SIGHUP; the log after it once a reload outcome is logged."""
        off = self.log_size()
        self.signal(signal.SIGHUP)
        self.wait_log(r"configuration reloaded|keeping the running configuration", offset=off,
                      timeout=timeout)
        time.sleep(0.2)  # lines logged after the outcome (there must be none that matter)
        return self.log_since(off)

    def start(self, wait_redis=True, timeout=15.0):
        for attempt in range(3):
            self.port = free_port()
            self.write_config()
            logf = open(self.log_path, "ab")
            try:
                self.proc = spawn([BACKSTOPD, "-f", "-c", self.conf_path], subprocess.DEVNULL, logf)
            finally:
                logf.close()
            self.ctx.procs.append(self.proc)
            if self not in self.ctx.daemons:
                self.ctx.daemons.append(self)
            try:
                self.wait_listening(timeout)
                break
            except TestFailure:
                if (self.proc.poll() is not None and attempt < 2 and not self.unix_path
                        and "in use" in self.log().lower()):
                    continue  # lost a race for the port: try another one
                raise
        if wait_redis:
            self.wait_redis(timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _check_alive(self):
        if not self.alive():
            raise TestFailure("%s exited (status %s): %s" % (
                self.name, self.proc.returncode, tail(self.log_path, 8)))

    def wait_listening(self, timeout=15.0):
        def try_connect():
            self._check_alive()
            c = PolicyConn(self.addr, timeout=2.0)
            c.close()
            return True
        poll(try_connect, timeout, what="%s to accept connections" % self.name)

    def wait_redis(self, timeout=15.0):
        """Ready = the log says "redis: connected", or a probe that needs
        Redis gets a real answer (DUNNO) instead of the fallback."""
        defer = self.sections["policy"].get("on_redis_error") != "dunno"

        def ready():
            self._check_alive()
            if "redis: connected" in self.log():
                return True
            if defer:
                with self.conn() as c:
                    return c.ask(client_address="127.0.0.1", recipient="probe@probe.invalid") == DUNNO
            return False
        poll(ready, timeout, interval=0.05, what="%s to connect to Redis" % self.name)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_bytes(self):
        with open(self.log_path, "rb") as f:
            return f.read()

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, offset=0, timeout=5.0):
        rx = re.compile(pattern)

        def found():
            m = rx.search(self.log_since(offset))
            return m or None
        return poll(found, timeout, what="log line matching %r" % pattern)

    def conn(self, timeout=10.0):
        return PolicyConn(self.addr, timeout=timeout)

    def ask(self, **kw):
        with self.conn() as c:
            return c.ask(**kw)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        if self.proc:
            return stop_process(self.proc)


# ---------------------------------------------------------------------------
# the test context: temp dir + everything started, cleaned up in finally

class Ctx:
    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.procs = []
        self.daemons = []

    def mkdir(self, name):
        d = os.path.join(self.dir, name)
        n = 1
        while os.path.exists(d):
            n += 1
            d = os.path.join(self.dir, "%s%d" % (name, n))
        os.makedirs(d)
        return d

    def redis(self, tcp=False, name="redis", start=True, do_seed=True):
        r = RedisServer(self, name=name, tcp=tcp)
        if start:
            r.start()
            if do_seed:
                seed(r)
        return r

    def daemon(self, redis_server, start=True, wait_redis=True, name="backstopd", unix_listen=False,
               **sections):
        ep = redis_server if isinstance(redis_server, str) else redis_server.endpoint
        d = Backstopd(self, ep, name=name, unix_listen=unix_listen, **sections)
        if start:
            d.start(wait_redis=wait_redis)
        return d

    def cleanup(self):
        """Stop everything; return a list of problems found (crashes,
        sanitizer reports) that the test itself did not expect."""
        problems = []
        for d in self.daemons:
            if d.proc and d.proc.poll() is not None and not d.expected_exit:
                problems.append("%s died during the test (status %s)" % (d.name, d.proc.returncode))
        for p in reversed(self.procs):
            rc = stop_process(p)
            if rc is not None and rc < 0 and -rc not in (signal.SIGTERM, signal.SIGKILL):
                problems.append("pid %d (%s) ended by signal %d" % (
                    p.pid, os.path.basename(p.args[0]), -rc))
        for d in self.daemons:
            text = d.log()
            for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer", "panic:"):
                if marker in text:
                    problems.append("%s log contains %r" % (d.name, marker))
        return problems


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------------------
# the tests: basic decisions

@test
def valid_recipient(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        expect(c.ask(recipient="user@example.com"), DUNNO, "known user")
        expect(c.ask(recipient="alice@example.com"), DUNNO, "known user alice")
        expect(c.ask(recipient="postmaster@example.com", sender=""), DUNNO,
               "bounce to a known user of a protected domain (not an NDR case)")


@test
def unknown_user(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    rcpt = "nobody@example.com"
    with d.conn() as c:
        expect(c.ask(recipient=rcpt, sender="s@sender.example", client_address="192.0.2.1",
                     client_name="mx.sender.example", helo_name="helo.sender.example"),
               USER_UNKNOWN(rcpt), "unknown user")
        # a bounce to a protected domain is judged by the recipient, not the NDR policy
        expect(c.ask(recipient="ghost@example.com", sender=""), USER_UNKNOWN("ghost@example.com"),
               "bounce to unknown user of protected domain")
    want = (r"NOQUEUE: reject: RCPT from mx\.sender\.example\[192\.0\.2\.1\]: 550 5\.1\.1 "
            r"<nobody@example\.com>: Recipient address rejected: User unknown; "
            r"from=<s@sender\.example> to=<nobody@example\.com> proto=ESMTP "
            r"helo=<helo\.sender\.example> reason=unknown_user conn=\d+")
    d.wait_log(want, timeout=5)


@test
def catch_all_domain(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        for rcpt in ("anything@example.net", "x+y@example.net", "Whoever@EXAMPLE.NET"):
            expect(c.ask(recipient=rcpt), DUNNO, "catch-all %s" % rcpt)
        # catch-all added to a domain that had only explicit users
        expect(c.ask(recipient="random@example.com"), USER_UNKNOWN("random@example.com"),
               "before catch-all")
        r.r("SADD", PREFIX + "rcpt:example.com", "*")
        expect(c.ask(recipient="random@example.com"), DUNNO, "after SADD *")


@test
def unprotected_domain(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        for rcpt in ("someone@elsewhere.example", "user@sub.example.com", "x@example.org"):
            expect(c.ask(recipient=rcpt, sender="a@b.example"), DUNNO, "unprotected %s" % rcpt)


@test
def non_rcpt_state(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, policy={"ndr_default": "deny"})
    r.r("SET", PREFIX + "block:192.0.2.66", "1", "EX", "3600")
    with d.conn() as c:
        for state in ("CONNECT", "EHLO", "HELO", "MAIL", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN", "rcpt", ""):
            expect(c.ask(protocol_state=state, recipient="nobody@example.com"), DUNNO,
                   "unknown user in state %r" % state)
            expect(c.ask(protocol_state=state, sender="", recipient="x@bounce.example"), DUNNO,
                   "NDR (deny) in state %r" % state)
            expect(c.ask(protocol_state=state, client_address="192.0.2.66"), DUNNO,
                   "blocked client in state %r" % state)
        expect(c.ask(protocol_state=None, recipient="nobody@example.com"), DUNNO,
               "no protocol_state at all")
        # sanity: the same requests in RCPT state are refused
        expect(c.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"), "RCPT")


@test
def extension_stripping(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    r.r("SADD", PREFIX + "rcpt:example.com", "exact+tag")
    with d.conn() as c:
        expect(c.ask(recipient="user+anything@example.com"), DUNNO, "user+ext")
        expect(c.ask(recipient="user+@example.com"), DUNNO, "user+ (empty ext)")
        expect(c.ask(recipient="user+a+b@example.com"), DUNNO, "user+a+b")
        expect(c.ask(recipient="exact+tag@example.com"), DUNNO, "member with + literally")
        expect(c.ask(recipient="nobody+tag@example.com"), USER_UNKNOWN("nobody+tag@example.com"),
               "unknown+ext")
        expect(c.ask(recipient="user-tag@example.com"), USER_UNKNOWN("user-tag@example.com"),
               "'-' is not a delimiter with recipient_delimiter = +")


@test
def extension_other_delimiters(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, policy={"recipient_delimiter": "+-"})
    with d.conn() as c:
        expect(c.ask(recipient="user-tag@example.com"), DUNNO, "user-tag with delimiters +-")
        expect(c.ask(recipient="user+tag@example.com"), DUNNO, "user+tag with delimiters +-")
        expect(c.ask(recipient="user.tag@example.com"), USER_UNKNOWN("user.tag@example.com"),
               "user.tag")


@test
def case_folding(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        expect(c.ask(recipient="User+Tag@Example.COM"), DUNNO, "User+Tag@Example.COM")
        expect(c.ask(recipient="ALICE@EXAMPLE.COM"), DUNNO, "ALICE@EXAMPLE.COM")
        expect(c.ask(recipient="Nobody@Example.COM"), USER_UNKNOWN("Nobody@Example.COM"),
               "unknown user, mixed case (reply quotes the recipient as sent)")
        expect(c.ask(recipient="Someone@ExAmPlE.NeT"), DUNNO, "catch-all, mixed case domain")


# ---------------------------------------------------------------------------
# NDR (null sender) policy

@test
def ndr_longest_suffix(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, policy={"ndr_default": "allow"})
    ndr = PREFIX + "ndr"
    rcpt = "bounce@a.b.example.org"
    r.r("HSET", ndr, "a.b.example.org", "allow", ".b.example.org", "deny",
        ".example.org", "allow", "*", "deny")
    with d.conn() as c:
        expect(c.ask(sender="", recipient=rcpt), DUNNO, "exact entry (allow) beats .parent (deny)")
        r.r("HDEL", ndr, "a.b.example.org")
        expect(c.ask(sender="", recipient=rcpt), NDR_DENY(rcpt),
               "longest .parent (.b.example.org deny) beats shorter .example.org (allow)")
        r.r("HDEL", ndr, ".b.example.org")
        expect(c.ask(sender="", recipient=rcpt), DUNNO, ".example.org (allow) beats * (deny)")
        r.r("HDEL", ndr, ".example.org")
        expect(c.ask(sender="", recipient=rcpt), NDR_DENY(rcpt), "* (deny) beats ndr_default (allow)")
        r.r("HDEL", ndr, "*")
        expect(c.ask(sender="", recipient=rcpt), DUNNO, "ndr_default (allow)")
        # ".example.org" means subdomains only, not example.org itself
        r.r("HSET", ndr, ".example.org", "deny")
        expect(c.ask(sender="", recipient="x@example.org"), DUNNO,
               ".example.org does not match example.org itself (falls to ndr_default allow)")
        expect(c.ask(sender="", recipient="x@deep.sub.example.org"), NDR_DENY("x@deep.sub.example.org"),
               ".example.org matches deep.sub.example.org")
        # an entry only applies to bounces
        expect(c.ask(sender="a@b.example", recipient="x@deep.sub.example.org"), DUNNO,
               "normal sender ignores NDR policy")
        # case: field names are lowercase; the recipient domain is folded
        expect(c.ask(sender="", recipient="X@Deep.Sub.EXAMPLE.org"), NDR_DENY("X@Deep.Sub.EXAMPLE.org"),
               "NDR match is case-insensitive on the recipient domain")


@test
def ndr_default_deny(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, policy={"ndr_default": "deny"})
    with d.conn() as c:
        expect(c.ask(sender="", recipient="x@nowhere.example"), NDR_DENY("x@nowhere.example"),
               "ndr_default deny, empty ndr hash")
        r.r("HSET", PREFIX + "ndr", "nowhere.example", "ALLOW")
        expect(c.ask(sender="", recipient="x@nowhere.example"), DUNNO,
               "exact entry 'ALLOW' (words are case-insensitive)")


@test
def ndr_default_limit(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, policy={"ndr_default": "limit 2/1h"})
    rcpt = "x@limited.example"
    with d.conn() as c:
        got = [c.ask(sender="", recipient=rcpt) for _ in range(3)]
    expect(got, [DUNNO, DUNNO, NDR_LIMIT(rcpt)], "ndr_default limit 2/1h")


@test
def ndr_limit(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, policy={"ndr_default": "deny"})
    r.r("HSET", PREFIX + "ndr", "example.org", "limit 3/1h", "*", "allow")
    rcpt = "bounce@example.org"
    with d.conn() as a, d.conn() as b:
        got = [a.ask(sender="", recipient=rcpt), a.ask(sender="", recipient=rcpt),
               b.ask(sender="", recipient="other@EXAMPLE.org"),
               b.ask(sender="", recipient=rcpt), a.ask(sender="", recipient=rcpt)]
        expect(got, [DUNNO, DUNNO, DUNNO, NDR_LIMIT(rcpt), NDR_LIMIT(rcpt)],
               "limit 3/1h across two connections (per domain, not per recipient)")
        # other domains are not affected
        expect(a.ask(sender="", recipient="x@example.info"), DUNNO, "* allow for another domain")
        # a normal sender is not counted and not refused
        expect(a.ask(sender="a@b.example", recipient=rcpt), DUNNO, "normal sender")
    key = PREFIX + "ndrcount:example.org"
    check(r.r("EXISTS", key) == 1, "%s does not exist" % key)
    ttl = r.r("TTL", key)
    check(0 < ttl <= 3600, "%s TTL %s, want 1..3600" % (key, ttl))
    # deleting the counter resets the budget
    r.r("DEL", key)
    expect(d.ask(sender="", recipient=rcpt), DUNNO, "after DEL ndrcount")


# ---------------------------------------------------------------------------
# invalid-recipient rate limiting and blocking

def metric(port, name):
    """The value of one plain counter on the metrics endpoint, or None."""
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as resp:
        body = resp.read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


@test
def ndr_star_literals_and_utf8(ctx):
    """'ndr * deny' decides bounces to address literals and UTF-8 domains
    as to any remote domain (ndr_default allow, so '*' is what decides);
    literals can be named exactly, UTF-8 domains by their A-label."""
    r = ctx.redis()
    d = ctx.daemon(r, policy={"ndr_default": "allow"})
    ndr = PREFIX + "ndr"
    r.r("HSET", ndr, "*", "deny")
    rcpts = ("x@remote.example", "x@[192.0.2.5]", "x@[IPv6:2001:db8::1]",
             "user@b\u00fccher.example", "user@B\u00dcCHER.Example.")
    with d.conn() as c:
        for rcpt in rcpts:
            expect(c.ask(sender="", recipient=rcpt), NDR_DENY(rcpt), "'*' deny, bounce to %s" % rcpt)
        r.r("HSET", ndr, "[192.0.2.5]", "allow", "[ipv6:2001:db8::1]", "allow",
            "xn--bcher-kva.example", "allow")
        expect(c.ask(sender="", recipient="x@[192.0.2.5]"), DUNNO, "exact literal entry (allow)")
        expect(c.ask(sender="", recipient="x@[IPv6:2001:DB8:0::1]"), DUNNO,
               "exact IPv6 literal entry, another spelling")
        expect(c.ask(sender="", recipient="user@B\u00dcCHER.example"), DUNNO, "A-label entry (allow)")
        expect(c.ask(sender="", recipient="x@[192.0.2.6]"), NDR_DENY("x@[192.0.2.6]"),
               "another literal: '*'")
    d.wait_log(r"NOQUEUE: reject: RCPT from [^ ]+: 550 5\.7\.1 <x@\[192\.0\.2\.6\]>: .* "
               r"reason=ndr_deny ndr_entry=\* conn=\d+")


@test
def utf8_protected_domain(ctx):
    """Every spelling of a protected domain that Postfix routes to it is
    checked: an unknown user at the UTF-8 form is refused."""
    r = ctx.redis()
    d = ctx.daemon(r)
    r.r("SADD", PREFIX + "domains", "xn--bcher-kva.example")
    r.r("SADD", PREFIX + "rcpt:xn--bcher-kva.example", "alice")
    with d.conn() as c:
        for rcpt in ("user@b\u00fccher.example", "user@B\u00dcCHER.example.",
                     "user@bu\u0308cher.example", "user@xn--bcher-kva.example"):
            expect(c.ask(recipient=rcpt), USER_UNKNOWN(rcpt), "unknown user at %s" % rcpt)
            expect(c.ask(sender="", recipient=rcpt), USER_UNKNOWN(rcpt), "bounce to %s" % rcpt)
        for rcpt in ("alice@b\u00fccher.example", "Alice@B\u00dcCHER.EXAMPLE."):
            expect(c.ask(recipient=rcpt), DUNNO, "known user at %s" % rcpt)


@test
def ndr_unreadable_failsafe(ctx):
    """A bounce whose recipient domain cannot be read gets what '*' gives
    (deny here), is logged (rate-limited warning) and counted."""
    r = ctx.redis()
    port = free_port()
    d = ctx.daemon(r, policy={"ndr_default": "allow"},
                   metrics={"listen": "inet:127.0.0.1:%d" % port})
    r.r("HSET", PREFIX + "ndr", "*", "deny")
    latin1 = b"x@b\xfccher.example"  # not UTF-8
    with d.conn() as c:
        expect(c.ask(sender="", recipient=latin1), NDR_DENY(None), "Latin-1 domain, null sender")
        expect(metric(port, "backstop_ndr_unreadable_total"), 1, "unreadable counter, first")
        expect(c.ask(sender="", recipient="x@[192.0.2.256]"), NDR_DENY(None), "bad literal")
        expect(c.ask(sender="", recipient="x@bad..example"), NDR_DENY(None), "empty label")
        # not a bounce, or unqualified (local): not the NDR policy's business
        expect(c.ask(sender="s@sender.example", recipient=latin1), DUNNO, "normal sender")
        expect(c.ask(sender="", recipient="postmaster"), DUNNO, "unqualified postmaster")
    expect(metric(port, "backstop_ndr_unreadable_total"), 3, "unreadable counter")
    d.wait_log(r"warning: NOQUEUE: bounce to a recipient whose domain cannot be read: "
               r"<x@b\\xfccher\.example>: .*\(1 such since the last warning\)")
    d.wait_log(r"reason=ndr_deny ndr_entry=\* recipient=unreadable conn=\d+")
    check(d.log().count("whose domain cannot be read") == 1,
          "the warning is not rate-limited:\n" + tail(d.log_path))
    # '*' allow: they pass, still counted
    r.r("HSET", PREFIX + "ndr", "*", "allow")
    expect(d.ask(sender="", recipient=latin1), DUNNO, "'*' allow")
    expect(metric(port, "backstop_ndr_unreadable_total"), 4, "unreadable counter after allow")


@test
def ctl_ndr_explain_literal(ctx):
    """backstopctl ndr explain reads address literals and UTF-8 domains as
    the daemon does (backstopctl is built next to backstopd)."""
    ctl = os.path.join(os.path.dirname(BACKSTOPD), "backstopctl")
    check(os.access(ctl, os.X_OK), "no backstopctl next to %s" % BACKSTOPD)
    r = ctx.redis()
    d = ctx.daemon(r)
    r.r("HSET", PREFIX + "ndr", "*", "deny")
    p = subprocess.run([ctl, "-c", d.conf_path, "ndr", "set", "[IPv4:192.0.2.7]", "allow"],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode != 0, "ndr set took a literal with an unknown tag: %s" % p.stdout)
    p = subprocess.run([ctl, "-c", d.conf_path, "ndr", "set", "[192.0.2.7]", "allow"],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "ndr set [192.0.2.7]: %s%s" % (p.stdout, p.stderr))
    expect(r.r("HGET", PREFIX + "ndr", "[192.0.2.7]"), b"allow", "the literal entry as stored")
    cases = (("x@[192.0.2.5]", r"550 5\.7\.1 .*reason ndr_deny"),
             ("x@[192.0.2.7]", r"DUNNO \(reason ndr_allow\)"),
             ("x@[IPv6:2001:db8::1]", r"x@\[ipv6:2001:db8::1\] gets: 550 5\.7\.1"),
             ("user@b\u00fccher.example", r"user@xn--bcher-kva\.example gets: 550 5\.7\.1"))
    for rcpt, want in cases:
        p = subprocess.run([ctl, "-c", d.conf_path, "ndr", "explain", rcpt], capture_output=True,
                           text=True, timeout=30)
        check(p.returncode == 0 and re.search(want, p.stdout),
              "ndr explain %s: status %d\n%s%s" % (rcpt, p.returncode, p.stdout, p.stderr))


@test
def log_lines_queue_id_first(ctx):
    """Decision lines, DUNNO debug lines included, start with the queue id
    (or NOQUEUE) as smtpd's do; conn= comes last."""
    r = ctx.redis()
    d = ctx.daemon(r, log={"level": "debug"})
    with d.conn() as c:
        c.ask(queue_id="4XyZ1k2Lq9zB", recipient="user@example.com")
        c.ask(queue_id="4XyZ1k2Lq9zC", recipient="nobody@example.com")
        c.ask(queue_id="", recipient="someone@elsewhere.example")
    d.wait_log(r"backstopd\[\d+\]: 4XyZ1k2Lq9zB: dunno: RCPT from mx\.sender\.example"
               r"\[192\.0\.2\.1\]: from=<someone@sender\.example> to=<user@example\.com> "
               r"reason=valid conn=\d+\n")
    d.wait_log(r"backstopd\[\d+\]: 4XyZ1k2Lq9zC: reject: RCPT from .* reason=unknown_user conn=\d+\n")
    d.wait_log(r"backstopd\[\d+\]: NOQUEUE: dunno: RCPT from .* reason=unprotected conn=\d+\n")
    check(not re.search(r"\]: conn=\d+ ", d.log()), "a decision line starts with conn=:\n" + tail(d.log_path))


def rate_key_count(r, client):
    try:
        return r.r("ZCARD", PREFIX + "rate:" + client)
    except RedisReplyError:
        return -1


@test
def rate_block(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "3/1m", "block_time": "1h"})
    client = "192.0.2.10"
    bkey = PREFIX + "block:" + client
    with d.conn() as c:
        for i in range(3):
            rcpt = "nobody%d@example.com" % i
            expect(c.ask(client_address=client, recipient=rcpt), USER_UNKNOWN(rcpt), "invalid #%d" % (i + 1))
        # the count is written fire-and-forget: wait for it before judging
        poll(lambda: rate_key_count(r, client) >= 3, 5, what="rate:%s to reach 3" % client)
        check(r.r("EXISTS", bkey) == 0, "blocked after only 3 invalid recipients (limit 3)")
        rttl = r.r("PTTL", PREFIX + "rate:" + client)
        check(0 < rttl <= 60000, "rate:%s PTTL %s, want 1..60000 (window 1m)" % (client, rttl))
        expect(c.ask(client_address=client, recipient="user@example.com"), DUNNO,
               "valid recipient before the block")
        expect(c.ask(client_address=client, recipient="nobody3@example.com"),
               USER_UNKNOWN("nobody3@example.com"), "4th invalid still gets 550")
        poll(lambda: r.r("EXISTS", bkey) == 1, 5, what="%s to appear" % bkey)
        ttl = r.r("TTL", bkey)
        check(3500 <= ttl <= 3600, "block TTL %s, want ~3600 (block_time 1h)" % ttl)
        expect(c.ask(client_address=client, recipient="user@example.com"), BLOCKED,
               "blocked client, valid recipient")
        expect(c.ask(client_address=client, recipient="x@elsewhere.example"), BLOCKED,
               "blocked client, unprotected recipient")
        expect(c.ask(client_address=client, sender="", recipient="x@bounce.example"), BLOCKED,
               "blocked client, bounce")
        expect(c.ask(client_address="192.0.2.11", recipient="user@example.com"), DUNNO,
               "another client is not blocked")
    d.wait_log(r"blocked", timeout=5)
    d.wait_log(r"NOQUEUE: defer: RCPT from [^ ]*\[192\.0\.2\.10\]: 450 4\.7\.1 ", timeout=5)
    r.r("DEL", bkey)
    expect(d.ask(client_address=client, recipient="user@example.com"), DUNNO, "after DEL block key")


@test
def rate_disabled(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "0"})
    client = "192.0.2.12"
    with d.conn() as c:
        for i in range(8):
            c.ask(client_address=client, recipient="nobody%d@example.com" % i)
        expect(c.ask(client_address=client, recipient="user@example.com"), DUNNO, "never blocked")
    time.sleep(0.3)  # give a (wrong) fire-and-forget write time to show up
    check(r.r("EXISTS", PREFIX + "block:" + client) == 0, "block key set with invalid_recipients = 0")
    check(r.r("EXISTS", PREFIX + "rate:" + client) == 0, "rate key written with invalid_recipients = 0")


@test
def exempt_cidr(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "2/1m",
                                 "exempt": ["198.51.100.0/24", "2001:db8:ffff::/48"]})
    with d.conn() as c:
        for client in ("198.51.100.7", "2001:db8:ffff:1::9"):
            for i in range(6):
                rcpt = "nobody%d@example.com" % i
                expect(c.ask(client_address=client, recipient=rcpt), USER_UNKNOWN(rcpt),
                       "exempt %s still gets 550 for unknown users" % client)
            expect(c.ask(client_address=client, recipient="user@example.com"), DUNNO,
                   "exempt %s never blocked" % client)
        # even a block key does not refuse an exempt client
        r.r("SET", PREFIX + "block:198.51.100.7", "manual", "EX", "600")
        expect(c.ask(client_address="198.51.100.7"), DUNNO, "exempt client with a block key")
        # the first exempt line replaced the defaults: 127.0.0.1 is countable now
        for i in range(3):
            c.ask(client_address="127.0.0.5", recipient="nobody%d@example.com" % i)
        poll(lambda: r.r("EXISTS", PREFIX + "block:127.0.0.5") == 1, 5,
             what="127.0.0.5 to be blocked (defaults replaced by the exempt lines)")
    time.sleep(0.3)
    keys = [k.decode(errors="replace") for k in r.keys()]
    bad = [k for k in keys if ("198.51.100" in k and not k.endswith("block:198.51.100.7"))
           or "2001:db8:ffff" in k]
    check(not bad, "exempt clients were counted: %s" % bad)


@test
def exempt_set(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "2/1m"})
    r.r("SADD", PREFIX + "exempt", "192.0.2.77", "2001:db8:5:6::/64")
    with d.conn() as c:
        for client in ("192.0.2.77", "2001:db8:5:6::abcd"):
            for i in range(6):
                rcpt = "nobody%d@example.com" % i
                expect(c.ask(client_address=client, recipient=rcpt), USER_UNKNOWN(rcpt),
                       "exempt (SET) %s: 550" % client)
            expect(c.ask(client_address=client, recipient="user@example.com"), DUNNO,
                   "exempt (SET) %s not blocked" % client)
        r.r("SET", PREFIX + "block:192.0.2.77", "manual", "EX", "600")
        expect(c.ask(client_address="192.0.2.77"), DUNNO, "exempt (SET) client with a block key")
        # removing it from the set makes the block key effective
        r.r("SREM", PREFIX + "exempt", "192.0.2.77")
        expect(c.ask(client_address="192.0.2.77"), BLOCKED, "after SREM exempt")
    time.sleep(0.3)
    for k in (b"rate:192.0.2.77", b"rate:2001:db8:5:6::/64", b"block:2001:db8:5:6::/64"):
        check(r.r("EXISTS", PREFIX.encode() + k) == 0, "exempt client got key %r" % k)


@test
def ipv6_block(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "3/1m", "ipv6_prefix": "64"})
    bkey = PREFIX + "block:2001:db8:1:2::/64"
    with d.conn() as c:
        addrs = ["2001:db8:1:2::5", "2001:db8:1:2::6", "2001:0db8:0001:0002:0000:0000:0000:0007",
                 "2001:DB8:1:2:AAAA::1"]
        for i, a in enumerate(addrs):
            rcpt = "nobody%d@example.com" % i
            expect(c.ask(client_address=a, recipient=rcpt), USER_UNKNOWN(rcpt),
                   "invalid #%d from %s" % (i + 1, a))
            if i == 2:
                poll(lambda: rate_key_count(r, "2001:db8:1:2::/64") == 3, 5,
                     what="rate:2001:db8:1:2::/64 to count 3 (all addresses of the /64 together)")
        poll(lambda: r.r("EXISTS", bkey) == 1, 5, what="%s to appear" % bkey)
        expect(c.ask(client_address="2001:db8:1:2:ffff:ffff:ffff:ffff"), BLOCKED,
               "another address of the same /64")
        expect(c.ask(client_address="2001:db8:1:3::5"), DUNNO, "the next /64 is not blocked")
        expect(c.ask(client_address="192.0.2.5"), DUNNO, "an IPv4 client is not blocked")
    keys = [k.decode(errors="replace") for k in r.keys()]
    stray = [k for k in keys if "2001:db8:1:2:" in k and not k.endswith("::/64")]
    check(not stray, "per-address keys for an IPv6 /64 client: %s" % stray)


@test
def ipv4_mapped_client(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "1/1m"})
    with d.conn() as c:
        c.ask(client_address="192.0.2.40", recipient="nobody1@example.com")
        c.ask(client_address="::ffff:192.0.2.40", recipient="nobody2@example.com")
        poll(lambda: r.r("EXISTS", PREFIX + "block:192.0.2.40") == 1, 5,
             what="block:192.0.2.40 (IPv4-mapped IPv6 counted as IPv4)")
        expect(c.ask(client_address="::ffff:192.0.2.40"), BLOCKED, "mapped address blocked")


@test
def report_mode(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, policy={"mode": "report", "ndr_default": "deny"})
    r.r("SET", PREFIX + "block:192.0.2.99", "1", "EX", "600")
    with d.conn() as c:
        expect(c.ask(recipient="nobody@example.com"),
               action("WARN would reject: " + full_text(user_unknown_text("nobody@example.com"), "nobody@example.com")), "unknown user")
        expect(c.ask(sender="", recipient="x@bounce.example"),
               action("WARN would reject: " + full_text(ndr_deny_text("x@bounce.example"), "x@bounce.example")), "NDR deny")
        expect(c.ask(client_address="192.0.2.99"),
               action("WARN would defer: " + full_text(BLOCKED_TEXT, "user@example.com")),
               "blocked client")
        expect(c.ask(recipient="user@example.com"), DUNNO, "valid recipient")
        expect(c.ask(recipient="x@elsewhere.example"), DUNNO, "unprotected")
    d.wait_log(r"reject_warning: RCPT from [^ ]*\[192\.0\.2\.1\]: .*User unknown", timeout=5)


@test
def report_mode_ndr_limit(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, policy={"mode": "report", "ndr_default": "limit 1/1h"})
    rcpt = "x@limited.example"
    with d.conn() as c:
        expect(c.ask(sender="", recipient=rcpt), DUNNO, "first bounce")
        expect(c.ask(sender="", recipient=rcpt), action("WARN would reject: " + full_text(ndr_limit_text(rcpt), rcpt)),
               "second bounce over the limit")


# ---------------------------------------------------------------------------
# Redis failures

LATENCY = {}


def latency_summary(name, values):
    values = sorted(values)
    LATENCY[name] = (len(values), max(values), statistics.median(values))
    note("latency %s: n=%d max=%.1fms median=%.1fms" % (
        name, len(values), max(values) * 1000, statistics.median(values) * 1000))


@test
def redis_down_at_start(ctx):
    r = ctx.redis(start=False)
    d = ctx.daemon(r, wait_redis=False, redis={"timeout": "300ms"})
    limit = 0.300 + 0.200
    lat = []
    with d.conn() as c:
        for i in range(20):
            expect(c.ask(recipient="nobody%d@example.com" % i), FALLBACK_DEFER, "answer with Redis down")
            lat.append(c.last_latency)
    for i in range(5):
        with d.conn() as c:
            expect(c.ask(sender="", recipient="x@bounce.example"), FALLBACK_DEFER, "fresh conn, Redis down")
            lat.append(c.last_latency)
    latency_summary("redis_down_at_start", lat)
    check(max(lat) < limit, "fallback answer took %.0f ms (limit %.0f ms)" % (max(lat) * 1000, limit * 1000))
    t0 = time.monotonic()
    r.start()
    seed(r)
    poll(lambda: d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com"), 10,
         interval=0.1, what="real answers after Redis started")
    note("redis_down_at_start: real answers %.2fs after redis-server was started" % (time.monotonic() - t0))
    expect(d.ask(recipient="user@example.com"), DUNNO, "valid recipient after Redis came up")


@test
def redis_down_dunno(ctx):
    r = ctx.redis(start=False)
    d = ctx.daemon(r, wait_redis=False, policy={"on_redis_error": "dunno"})
    lat = []
    with d.conn() as c:
        for i in range(10):
            expect(c.ask(recipient="nobody%d@example.com" % i), DUNNO, "on_redis_error = dunno")
            lat.append(c.last_latency)
    check(max(lat) < 0.5, "fallback took %.0f ms" % (max(lat) * 1000))
    r.start()
    seed(r)
    poll(lambda: d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com"), 10,
         interval=0.1, what="real answers after Redis started")


@test
def redis_restart(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        expect(c.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"), "before kill")
        r.kill(signal.SIGKILL)
        t0 = time.monotonic()
        lat = []
        # the first request after the kill may still find the old connection;
        # it must still get an answer (fallback) in time
        for i in range(10):
            got = c.ask(recipient="nobody@example.com")
            lat.append(c.last_latency)
            expect(got, FALLBACK_DEFER, "answer #%d with Redis killed" % (i + 1))
        latency_summary("redis_killed", lat)
        check(max(lat) < 0.5, "fallback with Redis killed took %.0f ms" % (max(lat) * 1000))
        time.sleep(0.5)  # let the daemon go through a few reconnect attempts
        check(d.alive(), "backstopd exited after Redis was killed")
        r.start()
        seed(r)
        t0 = time.monotonic()
        poll(lambda: c.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com"), 10,
             interval=0.1, what="real answers after the Redis restart (same connection)")
        note("redis_restart: real answers %.2fs after the restart" % (time.monotonic() - t0))
        expect(c.ask(recipient="user@example.com"), DUNNO, "valid after restart")
    expect(d.ask(recipient="user@example.com"), DUNNO, "new connection after restart")
    # a second, longer outage: the reconnect backoff is capped at 2 s, so
    # after 4 s down the daemon must be back within 2 s (+ slack) of Redis
    r.kill(signal.SIGKILL)
    poll(lambda: d.ask(recipient="user@example.com") == FALLBACK_DEFER, 5, what="fallback again")
    down_until = time.monotonic() + 4.0
    while time.monotonic() < down_until:
        expect(d.ask(recipient="user@example.com"), FALLBACK_DEFER, "answer during a 4 s outage")
        time.sleep(0.25)
    r.start()
    seed(r)
    t0 = time.monotonic()
    poll(lambda: d.ask(recipient="user@example.com") == DUNNO, 10, interval=0.05,
         what="real answers after the second restart")
    dt = time.monotonic() - t0
    note("redis_restart: back %.2fs after a 4 s outage (backoff cap 2 s)" % dt)
    check(dt < 3.5, "reconnected %.1fs after Redis came back (backoff cap is 2 s)" % dt)


def frozen_round(d, nconn, nreq, rcpt_fn):
    """nconn connections in parallel, nreq requests each; returns (answers, latencies)."""
    answers, lat, errors = [], [], []
    lock = threading.Lock()

    def worker(k):
        try:
            with d.conn() as c:
                for i in range(nreq):
                    a = c.ask(recipient=rcpt_fn(k, i))
                    with lock:
                        answers.append(a)
                        lat.append(c.last_latency)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append("conn %d: %r" % (k, e))
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(nconn)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    if errors:
        raise TestFailure("; ".join(errors))
    return answers, lat


@test
def redis_frozen(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, redis={"timeout": "300ms"})
    expect(d.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"), "before SIGSTOP")
    r.kill(signal.SIGSTOP)
    try:
        answers, lat = frozen_round(d, 5, 10, lambda k, i: "nobody%d-%d@example.com" % (k, i))
        latency_summary("redis_frozen", lat)
        bad = [a for a in answers if a != FALLBACK_DEFER]
        check(not bad, "answers with Redis frozen were not the fallback: %r" % bad[:3])
        check(max(lat) < 0.300 + 0.150, "an answer with Redis frozen took %.0f ms (limit 450 ms)" % (
            max(lat) * 1000))
        check(d.alive(), "backstopd died with Redis frozen")
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    t0 = time.monotonic()
    poll(lambda: d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com"), 10,
         interval=0.1, what="real answers after SIGCONT")
    note("redis_frozen: real answers %.2fs after SIGCONT" % (time.monotonic() - t0))
    answers, lat = frozen_round(d, 5, 4, lambda k, i: "user@example.com")
    check(all(a == DUNNO for a in answers), "after recovery: %r" % answers[:3])
    latency_summary("after_recovery", lat)
    st = poll(lambda: (lambda s: s if s.get("redis_timeout", 0) + s.get("redis_down", 0) >= 1 else None)(
        r.stats()), 5, what="stats redis_timeout/redis_down counters")
    note("stats after freeze: %s" % st)


@test
def redis_wrong_type(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "2/1m"})
    P = PREFIX
    cases = [
        # (setup commands, request, restore commands)
        ([("DEL", P + "domains"), ("SET", P + "domains", "x")], {"recipient": "user@example.com"},
         [("DEL", P + "domains"), ("SADD", P + "domains", "example.com", "example.net")]),
        ([("DEL", P + "rcpt:example.com"), ("SET", P + "rcpt:example.com", "x")],
         {"recipient": "user@example.com"},
         [("DEL", P + "rcpt:example.com"), ("SADD", P + "rcpt:example.com", "user", "alice")]),
        ([("SET", P + "ndr", "x")], {"sender": "", "recipient": "x@bounce.example"},
         [("DEL", P + "ndr")]),
        ([("HSET", P + "block:192.0.2.31", "a", "b")], {"client_address": "192.0.2.31"},
         [("DEL", P + "block:192.0.2.31")]),
        # the exempt SET is read only for a blocked client
        ([("SET", P + "exempt", "x"), ("SET", P + "block:192.0.2.32", "manual")],
         {"client_address": "192.0.2.32"},
         [("DEL", P + "exempt"), ("DEL", P + "block:192.0.2.32")]),
        ([("HSET", P + "ndr", "limited.example", "limit 5/1h"),
          ("HSET", P + "ndrcount:limited.example", "a", "b")],
         {"sender": "", "recipient": "x@limited.example"},
         [("DEL", P + "ndrcount:limited.example"), ("DEL", P + "ndr")]),
    ]
    with d.conn() as c:
        for setup, req, restore in cases:
            r.many(setup)
            got = c.ask(**req)
            expect(got, FALLBACK_DEFER, "wrong type after %s" % (setup[-1],))
            check(c.last_latency < 0.5, "fallback took %.0f ms" % (c.last_latency * 1000))
            r.many(restore)
            check(d.alive(), "backstopd died after %s" % (setup[-1],))
        # a rate key of the wrong type: the answer does not depend on it
        r.r("SET", P + "rate:192.0.2.33", "x")
        for i in range(4):
            expect(c.ask(client_address="192.0.2.33", recipient="nobody%d@example.com" % i),
                   USER_UNKNOWN("nobody%d@example.com" % i), "unknown user with a broken rate key")
        # the stats hash of the wrong type: decisions go on
        r.r("SET", P + "stats", "x")
        for _ in range(3):
            expect(c.ask(recipient="user@example.com"), DUNNO, "valid with a broken stats key")
        time.sleep(1.5)  # let a stats flush hit the broken key
        expect(c.ask(recipient="user@example.com"), DUNNO, "after the stats flush error")
        r.r("DEL", P + "stats")
    expect(d.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"), "everything restored")
    check(d.alive(), "backstopd died")


@test
def redis_tcp(ctx):
    r = ctx.redis(tcp=True)
    d = ctx.daemon(r)
    expect(d.ask(recipient="user@example.com"), DUNNO, "valid over tcp redis")
    expect(d.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"), "unknown over tcp redis")
    r.kill(signal.SIGKILL)
    poll(lambda: d.ask(recipient="user@example.com") == FALLBACK_DEFER, 5, what="fallback with tcp redis down")
    r.start()
    seed(r)
    poll(lambda: d.ask(recipient="user@example.com") == DUNNO, 10, interval=0.1, what="tcp redis recovered")


# ---------------------------------------------------------------------------
# protocol handling

def attr_line(name, total_len):
    """name=xxxx... exactly total_len bytes (without the newline)."""
    return name.encode() + b"=" + b"x" * (total_len - len(name) - 1)


def pad_request(total):
    """A valid request exactly `total` bytes long, including the final "\\n"."""
    base = policy_request()
    # each padding line: "xpadNN=vvvv\n" up to 2000 bytes
    need = total - len(base)
    lines = []
    n = 0
    while need > 0:
        ln = min(need, 2001)  # incl. newline
        name = "xpad%02d" % n
        if ln < len(name) + 2:
            raise ValueError("cannot pad %d bytes" % need)
        if need - ln and need - ln < 10:
            ln -= 10
        lines.append(attr_line(name, ln - 1) + b"\n")
        need -= ln
        n += 1
    data = base[:-1] + b"".join(lines) + b"\n"
    assert len(data) == total, (len(data), total)
    return data


@test
def malformed_requests(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    good = policy_request()
    nattrs = good.count(b"\n") - 1
    many_ok = good[:-1] + b"".join(b"x%d=1\n" % i for i in range(100 - nattrs)) + b"\n"
    many_bad = good[:-1] + b"".join(b"x%d=1\n" % i for i in range(101 - nattrs)) + b"\n"
    ok_cases = [
        ("line of exactly 2048 bytes", good[:-1] + attr_line("xlong", 2048) + b"\n\n"),
        ("line of exactly 2048 bytes + CRLF", good[:-1] + attr_line("xlong", 2048) + b"\r\n\n"),
        ("exactly 100 attributes", many_ok),
        ("request of exactly 16384 bytes", pad_request(16384)),
        ("unknown attributes and empty values", good[:-1] + b"foo=bar\nx_y.z=\nvery_unknown==\n\n"),
    ]
    bad_cases = [
        ("line without '='", good[:-1] + b"this line has no equals sign\n\n"),
        ("first line without '='", b"garbage\n" + good),
        ("empty attribute name", good[:-1] + b"=value\n\n"),
        ("line of 2049 bytes", good[:-1] + attr_line("xlong", 2049) + b"\n\n"),
        ("line of 10000 bytes", good[:-1] + attr_line("xlong", 10000) + b"\n\n"),
        ("line of 3000 bytes, no newline yet", attr_line("xlong", 3000)),
        ("101 attributes", many_bad),
        ("request of 16385 bytes", pad_request(16385)),
        ("request of 40000 bytes", pad_request(40000)),
        ("NUL byte in a value", good.replace(b"sender=someone@sender.example",
                                             b"sender=some\x00one@sender.example")),
        ("NUL byte in a name", good[:-1] + b"fo\x00o=bar\n\n"),
        ("NUL byte alone on a line", good[:-1] + b"\x00\n\n"),
        ("request=other", policy_request(request="junk_policy")),
        ("request=SMTPD_ACCESS_POLICY (case)", policy_request(request="SMTPD_ACCESS_POLICY")),
        ("request= empty", policy_request(request="")),
        ("no request attribute", policy_request(request=None)),
        ("HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("binary junk", bytes(range(1, 256)) * 4 + b"\n\n"),
        ("a good request, then junk", good + b"junk without equals\n\n"),
    ]
    for what, data in ok_cases:
        with d.conn() as c:
            got = c.ask_raw(data)
            expect(got, DUNNO, what)
    for what, data in bad_cases:
        off = d.log_size()
        with d.conn() as c:
            if what == "a good request, then junk":
                c.send(data)
                expect(c.read_reply(), DUNNO, "the good request before the junk")
            else:
                c.send(data)
            c.expect_closed(5.0, what)
        d.wait_log(r"warning: ", offset=off, timeout=5)
        expect(d.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"),
               "fresh connection after: %s" % what)
    check(d.alive(), "backstopd died")


@test
def many_requests_one_connection(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        for i in range(200):
            if i % 2:
                expect(c.ask(recipient="user@example.com"), DUNNO, "request %d" % i)
            else:
                expect(c.ask(recipient="nobody@example.com", client_address="192.0.2.250"),
                       USER_UNKNOWN("nobody@example.com"), "request %d" % i)
        # attributes in another order
        lines = policy_request(recipient="nobody@example.com").split(b"\n")[:-2]
        data = b"\n".join(reversed(lines)) + b"\n\n"
        expect(c.ask_raw(data), USER_UNKNOWN("nobody@example.com"), "attributes reversed")
        # a minimal request
        data = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@b.example\n"
                b"recipient=nobody@example.com\nclient_address=192.0.2.250\n\n")
        expect(c.ask_raw(data), USER_UNKNOWN("nobody@example.com"), "minimal request")


@test
def pipelined(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        c.send(policy_request(recipient="nobody@example.com") + policy_request(recipient="user@example.com"))
        expect(c.read_reply(), USER_UNKNOWN("nobody@example.com"), "first pipelined answer")
        expect(c.read_reply(), DUNNO, "second pipelined answer")
        # five at once, mixed outcomes, then one more normally
        rcpts = ["user@example.com", "a1@example.com", "x@elsewhere.example", "a2@example.com",
                 "alice@example.com"]
        c.send(b"".join(policy_request(recipient=x) for x in rcpts))
        want = [DUNNO, USER_UNKNOWN("a1@example.com"), DUNNO, USER_UNKNOWN("a2@example.com"), DUNNO]
        expect([c.read_reply() for _ in rcpts], want, "five pipelined answers in order")
        # a request and a half, then the rest
        second = policy_request(recipient="a3@example.com")
        c.send(policy_request(recipient="user@example.com") + second[:50])
        expect(c.read_reply(), DUNNO, "first of a request and a half")
        time.sleep(0.1)
        c.send(second[50:])
        expect(c.read_reply(), USER_UNKNOWN("a3@example.com"), "the completed half")


@test
def byte_by_byte(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        data = policy_request(recipient="nobody@example.com")
        for i, b in enumerate(data):
            c.send(bytes([b]))
            if i % 8 == 0:
                time.sleep(0.002)
        expect(c.read_reply(), USER_UNKNOWN("nobody@example.com"), "byte-by-byte request")
        # in chunks with longer pauses
        data = policy_request(recipient="user@example.com")
        for i in range(0, len(data), 97):
            c.send(data[i:i + 97])
            time.sleep(0.05)
        expect(c.read_reply(), DUNNO, "chunked request with pauses")
        # the empty line alone after a pause
        data = policy_request(recipient="nobody2@example.com")
        c.send(data[:-1])
        time.sleep(0.3)
        check(c.is_open(), "connection closed while waiting for the empty line")
        c.send(b"\n")
        expect(c.read_reply(), USER_UNKNOWN("nobody2@example.com"), "empty line sent late")


@test
def crlf_request(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        data = policy_request(recipient="nobody@example.com").replace(b"\n", b"\r\n")
        expect(c.ask_raw(data), USER_UNKNOWN("nobody@example.com"), "CRLF request (reply must have no \\r)")
        data = policy_request(recipient="user@example.com").replace(b"\n", b"\r\n")
        expect(c.ask_raw(data), DUNNO, "CRLF valid request")
        # mixed line ends, CRLF split between writes
        data = policy_request(recipient="alice@example.com", sender="").replace(b"\n", b"\r\n")
        i = data.index(b"\r\n") + 1
        c.send(data[:i])
        time.sleep(0.05)
        c.send(data[i:])
        expect(c.read_reply(), DUNNO, "CRLF split between \\r and \\n")


@test
def unix_listener(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, unix_listen=True)
    expect(d.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"), "over a unix socket")
    expect(d.ask(recipient="user@example.com"), DUNNO, "valid over a unix socket")


@test
def half_close(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        c.send(policy_request(recipient="nobody@example.com") + policy_request(recipient="user@example.com"))
        c.sock.shutdown(socket.SHUT_WR)
        expect(c.read_reply(), USER_UNKNOWN("nobody@example.com"), "first answer after SHUT_WR")
        expect(c.read_reply(), DUNNO, "second answer after SHUT_WR")
        c.expect_closed(5.0, "connection after the answers")
    with d.conn() as c:
        c.send(policy_request()[:100])
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_closed(5.0, "half a request, then EOF")
    expect(d.ask(recipient="user@example.com"), DUNNO, "fresh connection")


@test
def server_allow(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, server={"allow": ["192.0.2.0/24"]})
    with d.conn() as c:
        c.send(policy_request())
        c.expect_closed(5.0, "connection from 127.0.0.1 not in [server] allow")
    d.wait_log(r"warning: .*not in \[server\] allow", timeout=5)
    d.write_config(server={"allow": ["192.0.2.0/24", "127.0.0.0/8"]})
    d.signal(signal.SIGHUP)
    poll(lambda: d.ask(recipient="user@example.com") == DUNNO, 5, what="allowed after reload")


@test
def client_gone_in_flight(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, redis={"timeout": "500ms"})
    expect(d.ask(recipient="user@example.com"), DUNNO, "before")
    r.kill(signal.SIGSTOP)
    try:
        for i in range(20):
            c = d.conn()
            c.send(policy_request(recipient="nobody%d@example.com" % i))
            if i % 2:
                time.sleep(0.01)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()  # RST while the request waits for Redis
        time.sleep(0.7)  # past [redis] timeout: the late answers meet closed connections
        check(d.alive(), "backstopd died when clients left during a Redis stall")
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    poll(lambda: d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com"), 10,
         interval=0.1, what="real answers after SIGCONT")
    # and with a live Redis: clients that vanish right after sending
    for i in range(50):
        c = d.conn()
        c.send(policy_request(recipient="n%d@example.com" % i, client_address="192.0.2.250"))
        c.close()
    expect(d.ask(recipient="user@example.com"), DUNNO, "still answering")


@test
def concurrency(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "0"})
    errors, lat = [], []
    lock = threading.Lock()
    cases = [({"recipient": "user@example.com"}, DUNNO),
             ({"recipient": "nobody@example.com"}, USER_UNKNOWN("nobody@example.com")),
             ({"recipient": "x@example.net"}, DUNNO),
             ({"sender": "", "recipient": "x@bounce.example"}, NDR_DENY("x@bounce.example")),
             ({"recipient": "x@elsewhere.example"}, DUNNO)]

    def worker(k):
        try:
            with d.conn(timeout=20) as c:
                for i in range(20):
                    kw, want = cases[(k + i) % len(cases)]
                    got = c.ask(**kw)
                    with lock:
                        lat.append(c.last_latency)
                    if got != want:
                        raise TestFailure("conn %d request %d: %r, want %r" % (k, i, got, want))
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(str(e))
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(60)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    check(not errors, "%d connection(s) failed: %s" % (len(errors), errors[:3]))
    latency_summary("concurrency_60x20", lat)


@test
def sighup_redis_change(ctx):
    r1 = ctx.redis(name="redis1")
    r2 = ctx.redis(name="redis2")
    r2.r("SADD", PREFIX + "rcpt:example.com", "onlyin2")
    d = ctx.daemon(r1)
    with d.conn() as c:
        expect(c.ask(recipient="onlyin2@example.com"), USER_UNKNOWN("onlyin2@example.com"), "on redis1")
        d.write_config(redis={"server": r2.endpoint})
        d.signal(signal.SIGHUP)
        poll(lambda: c.ask(recipient="onlyin2@example.com") == DUNNO, 10, interval=0.1,
             what="answers from redis2 after SIGHUP")
        # the prefix changes on reload too
        r2.many([("SADD", "other:domains", "example.com"), ("SADD", "other:rcpt:example.com", "onlyprefix")])
        d.write_config(redis={"prefix": "other:"})
        d.signal(signal.SIGHUP)
        poll(lambda: c.ask(recipient="onlyprefix@example.com") == DUNNO, 10, interval=0.1,
             what="answers under the new prefix")


# ---------------------------------------------------------------------------
# signals, timeouts, instances

@test
def sighup_reload(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, policy={"mode": "enforce", "ndr_default": "deny"})
    with d.conn() as c:
        expect(c.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"), "enforce")
        d.write_config(policy={"mode": "report"})
        d.signal(signal.SIGHUP)
        want = action("WARN would reject: " + full_text(ndr_deny_text("x@bounce.example"), "x@bounce.example"))
        poll(lambda: c.ask(sender="", recipient="x@bounce.example") == want, 5,
             what="report mode on the live connection after SIGHUP")
        expect(c.ask(recipient="nobody@example.com"),
               action("WARN would reject: " + full_text(user_unknown_text("nobody@example.com"), "nobody@example.com")),
               "report mode, same connection")
        # a broken config is logged and the running one kept
        off = d.log_size()
        with open(d.conf_path, "a") as f:
            f.write("[policy]\nno_such_key = 1\n")
        d.signal(signal.SIGHUP)
        d.wait_log(re.escape(d.conf_path) + r":\d+", offset=off, timeout=5)
        check(d.alive(), "backstopd exited on a bad config reload")
        expect(c.ask(recipient="nobody@example.com"),
               action("WARN would reject: " + full_text(user_unknown_text("nobody@example.com"), "nobody@example.com")),
               "old config (report) kept after a bad reload, same connection")
        expect(d.ask(recipient="nobody@example.com"),
               action("WARN would reject: " + full_text(user_unknown_text("nobody@example.com"), "nobody@example.com")),
               "old config kept, new connection")
        # a good config again: back to enforce
        d.write_config(policy={"mode": "enforce"})
        d.signal(signal.SIGHUP)
        poll(lambda: c.ask(sender="", recipient="x@bounce.example") == NDR_DENY("x@bounce.example"), 5,
             what="enforce again after a good reload")
    expect(d.ask(recipient="user@example.com"), DUNNO, "new connection after reloads")


@test
def sighup_bad_duration(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    off = d.log_size()
    with open(d.conf_path, "w") as f:
        f.write("[server]\nlisten = inet:127.0.0.1:%d\nidle_timeout = 5 fortnights\n" % d.port)
    with d.conn() as c:
        d.signal(signal.SIGHUP)
        d.wait_log(re.escape(d.conf_path) + r":3", offset=off, timeout=5)
        expect(c.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"),
               "still answering after a bad reload")
    os.remove(d.conf_path)
    off = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_log(r"(?i)reload", offset=off, timeout=5)
    expect(d.ask(recipient="user@example.com"), DUNNO, "still answering after reload of a missing file")


@test
def sigterm_exit(ctx):
    r = ctx.redis()
    d = ctx.daemon(r)
    idle = d.conn()
    try:
        expect(idle.ask(recipient="user@example.com"), DUNNO, "before SIGTERM")
        t0 = time.monotonic()
        d.expected_exit = True
        d.signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(5)
        except subprocess.TimeoutExpired:
            raise TestFailure("backstopd still running 5 s after SIGTERM (idle connection open)")
        dt = time.monotonic() - t0
        note("sigterm_exit: exited %.2fs after SIGTERM" % dt)
        expect(rc, 0, "exit status after SIGTERM")
        check(dt < 3.0, "exit took %.1fs after SIGTERM (want < 3 s)" % dt)
        idle.expect_closed(2.0, "idle connection at shutdown")
    finally:
        idle.close()


@test
def sigterm_in_flight(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, redis={"timeout": "1s"})
    with d.conn() as c:
        expect(c.ask(recipient="user@example.com"), DUNNO, "before")
        r.kill(signal.SIGSTOP)
        try:
            c.send(policy_request(recipient="nobody@example.com"))
            time.sleep(0.3)  # no poll possible: let the daemon read the request
            t0 = time.monotonic()
            d.expected_exit = True
            d.signal(signal.SIGTERM)
            got = c.read_reply(timeout=5)
            expect(got, FALLBACK_DEFER, "the in-flight request is answered at shutdown")
            try:
                rc = d.proc.wait(5)
            except subprocess.TimeoutExpired:
                raise TestFailure("backstopd still running 5 s after SIGTERM")
            dt = time.monotonic() - t0
            note("sigterm_in_flight: exited %.2fs after SIGTERM (redis timeout 1s)" % dt)
            expect(rc, 0, "exit status")
            check(dt < 3.5, "exit took %.1fs" % dt)
            c.expect_closed(2.0, "connection after the in-flight answer")
        finally:
            os.kill(r.proc.pid, signal.SIGCONT)


def sigterm_with_frozen_redis(ctx, ask_first):
    r = ctx.redis()
    d = ctx.daemon(r)
    with d.conn() as c:
        expect(c.ask(recipient="user@example.com"), DUNNO, "before")
        r.kill(signal.SIGSTOP)
        try:
            if ask_first:
                # answered by the timeout; its Redis query is still pending
                expect(c.ask(recipient="nobody@example.com"), FALLBACK_DEFER, "answer with Redis frozen")
            t0 = time.monotonic()
            d.expected_exit = True
            d.signal(signal.SIGTERM)
            try:
                rc = d.proc.wait(5)
            except subprocess.TimeoutExpired:
                raise TestFailure("backstopd still running 5 s after SIGTERM (Redis frozen)")
            dt = time.monotonic() - t0
            note("%s: exited %.2fs after SIGTERM" % (ctx.dir.rsplit("/", 1)[-1], dt))
            expect(rc, 0, "exit status after SIGTERM with Redis frozen")
            check(dt < 3.0, "exit took %.1fs" % dt)
        finally:
            os.kill(r.proc.pid, signal.SIGCONT)


@test
def sigterm_redis_frozen_idle(ctx):
    sigterm_with_frozen_redis(ctx, ask_first=False)


@test
def sigterm_after_timeout(ctx):
    sigterm_with_frozen_redis(ctx, ask_first=True)


@test
def idle_timeout(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, server={"idle_timeout": "1s"})
    with d.conn() as c:
        t0 = time.monotonic()
        c.expect_closed(6.0, "connection idle from the start")
        dt = time.monotonic() - t0
        note("idle_timeout: fresh idle connection closed after %.2fs" % dt)
        check(dt >= 0.8, "closed after %.2fs, before idle_timeout 1s" % dt)
    with d.conn() as c:
        expect(c.ask(recipient="user@example.com"), DUNNO, "one request")
        t0 = time.monotonic()
        c.expect_closed(6.0, "connection idle after a request")
        dt = time.monotonic() - t0
        check(dt >= 0.8, "closed %.2fs after the reply" % dt)
    # activity keeps it open: a request every 0.4 s for 2.4 s
    with d.conn() as c:
        for i in range(6):
            expect(c.ask(recipient="user@example.com"), DUNNO, "active connection, request %d" % i)
            time.sleep(0.4)
        expect(c.ask(recipient="user@example.com"), DUNNO, "active connection still open")


@test
def two_instances(ctx):
    r = ctx.redis()
    a = ctx.daemon(r, name="A", ratelimit={"invalid_recipients": "3/1m"})
    b = ctx.daemon(r, name="B", ratelimit={"invalid_recipients": "3/1m"})
    client = "198.51.100.20"
    # invalid recipients split over both instances count together
    with a.conn() as ca, b.conn() as cb:
        expect(ca.ask(client_address=client, recipient="n1@example.com"), USER_UNKNOWN("n1@example.com"), "A #1")
        expect(cb.ask(client_address=client, recipient="n2@example.com"), USER_UNKNOWN("n2@example.com"), "B #2")
        expect(ca.ask(client_address=client, recipient="n3@example.com"), USER_UNKNOWN("n3@example.com"), "A #3")
        poll(lambda: rate_key_count(r, client) >= 3, 5, what="rate count 3")
        expect(cb.ask(client_address=client, recipient="user@example.com"), DUNNO, "not yet blocked")
        expect(ca.ask(client_address=client, recipient="n4@example.com"), USER_UNKNOWN("n4@example.com"), "A #4")
        poll(lambda: r.r("EXISTS", PREFIX + "block:" + client) == 1, 5, what="block key")
        expect(cb.ask(client_address=client, recipient="user@example.com"), BLOCKED,
               "blocked through A, refused by B")
        expect(ca.ask(client_address=client, recipient="user@example.com"), BLOCKED, "refused by A too")
    # NDR budget shared too
    r.r("HSET", PREFIX + "ndr", "shared.example", "limit 2/1h")
    got = [a.ask(sender="", recipient="x@shared.example"), b.ask(sender="", recipient="x@shared.example"),
           b.ask(sender="", recipient="x@shared.example")]
    expect(got, [DUNNO, DUNNO, NDR_LIMIT("x@shared.example")], "NDR limit shared by two instances")


@test
def config_check(ctx):
    dir_ = ctx.mkdir("conf")
    good = os.path.join(dir_, "good.ini")
    with open(good, "w") as f:
        f.write(render_config({**DEFAULT_CONFIG,
                               "server": {"listen": "inet:127.0.0.1:%d" % free_port()},
                               "redis": {"server": "unix:/nonexistent/redis.sock", "prefix": PREFIX}}))
    p = subprocess.run([BACKSTOPD, "-t", "-c", good], capture_output=True, timeout=10)
    expect(p.returncode, 0, "-t on a good config (stderr %r)" % p.stderr)
    cases = [
        ("unknown key", "[server]\nmax_connections = 10\n[policy]\nno_such_key = 1\n", 4),
        ("bad duration", "# comment\n[server]\n\nidle_timeout = 5 fortnights\n", 4),
        ("bad duration unit", "[redis]\ntimeout = 300us\n", 2),
        ("bad rate", "[ratelimit]\ninvalid_recipients = lots\n", 2),
        ("unknown section", "[nonsense]\nx = 1\n", 1),
        ("bad mode", "[policy]\nmode = maybe\n", 2),
        ("bad cidr", "[ratelimit]\nexempt = 300.1.1.1/8\n", 2),
    ]
    for what, text, line in cases:
        path = os.path.join(dir_, "bad-%s.ini" % what.replace(" ", "-"))
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([BACKSTOPD, "-t", "-c", path], capture_output=True, timeout=10)
        err = p.stderr.decode(errors="replace")
        expect(p.returncode, 1, "-t on a config with %s (stderr %r)" % (what, err))
        check(re.search(r"(^|\n)%s:%d: " % (re.escape(path), line), err),
              "%s: stderr lacks '%s:%d: ...': %r" % (what, path, line, err))
    p = subprocess.run([BACKSTOPD, "-t", "-c", os.path.join(dir_, "missing.ini")], capture_output=True,
                       timeout=10)
    expect(p.returncode, 1, "-t on a missing file")
    p = subprocess.run([BACKSTOPD, "-V"], capture_output=True, timeout=10)
    expect(p.returncode, 0, "-V exit status")
    out = p.stdout.decode(errors="replace")
    check(re.search(r"backstopd \d+\.\d+", out), "-V printed %r" % out)


# ---------------------------------------------------------------------------
# listeners and the config check (issue 14)

def write_conf(ctx, name, sections):
    path = os.path.join(ctx.mkdir("conf"), name)
    with open(path, "w") as f:
        f.write(render_config(sections))
    return path


def conf_with(redis_endpoint, **sections):
    secs = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
    secs["redis"]["server"] = redis_endpoint
    for sec, kv in sections.items():
        secs.setdefault(sec, {}).update(kv)
    return secs


def run_backstopd(args, timeout=10):
    """backstopd with args to its end: (exit status, stdout, stderr)."""
    p = subprocess.run([BACKSTOPD] + args, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def line_of(path, start):
    """The number of the first line of file path that starts with start."""
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if text.startswith(start):
                return n
    raise TestFailure("no line %r in %s" % (start, path))


def expect_refused(path, key, text, args=("-t",)):
    """backstopd ARGS -c path exits 1 with "path:LINE: ...text" on stderr,
    LINE that of the first "key =" line."""
    line = line_of(path, key + " =")
    rc, out, err = run_backstopd(list(args) + ["-c", path])
    expect(rc, 1, "backstopd %s on %s (stderr %r)" % (" ".join(args), path, err))
    check(re.search(r"(^|\n)(.*fatal: )?%s:%d: .*%s" % (re.escape(path), line, re.escape(text)), err),
          "stderr lacks '%s:%d: ...%s': %r" % (path, line, text, err))
    return err


def can_connect(addr):
    try:
        PolicyConn(addr, timeout=2.0).close()
        return True
    except OSError:
        return False


@test
def listen_regular_file_kept(ctx):
    """item 1: a listen path that is an ordinary file is refused, never removed."""
    r = ctx.redis()
    precious = os.path.join(ctx.mkdir("x"), "precious.txt")
    with open(precious, "w") as f:
        f.write("keep me\n")
    path = write_conf(ctx, "file.ini", conf_with(r.endpoint, server={"listen": "unix:" + precious}))
    expect_refused(path, "listen", "not a socket")
    expect_refused(path, "listen", "not a socket", args=("-f",))
    check(os.path.isfile(precious), "start-up removed %s" % precious)
    d = ctx.daemon(r)
    d.write_listen(["inet:127.0.0.1:%d" % d.port, "unix:" + precious])
    log = d.reload()
    check(os.path.isfile(precious), "SIGHUP removed %s" % precious)
    check("configuration reloaded" not in log, "a refused reload logged as done: %r" % log)
    check("keeping the running configuration" in log, "reload failure not said: %r" % log)
    expect(d.ask(recipient="user@example.com"), DUNNO, "still answering after the refused reload")


@test
def unix_socket_not_stolen(ctx):
    """item 2: a second instance leaves a live socket alone; a stale one is
    replaced; at exit an instance removes only the socket it made."""
    r = ctx.redis()
    a = ctx.daemon(r, name="A", unix_listen=True)
    rc, _, err = run_backstopd(["-f", "-c", a.conf_path])
    expect(rc, 1, "a second instance on A's socket (stderr %r)" % err)
    check("in use by another process" in err, "the refusal does not say why: %r" % err)
    check(os.path.exists(a.unix_path), "the second instance removed A's socket")
    expect(a.ask(recipient="user@example.com"), DUNNO, "A still reachable after the second instance")
    # A's socket file replaced behind its back: A's exit must leave the new one
    os.unlink(a.unix_path)
    c = Backstopd(ctx, r.endpoint, name="C", unix_listen=True)
    c.unix_path = a.unix_path
    c.start()
    a.expected_exit = True
    expect(a.stop(), 0, "A's exit status")
    check(os.path.exists(a.unix_path), "A removed C's socket at exit")
    expect(c.ask(recipient="user@example.com"), DUNNO, "C reachable after A exited")
    # C killed: its socket is stale (nobody answers) and the next start replaces it
    c.expected_exit = True
    c.proc.kill()
    c.proc.wait(5)
    check(os.path.exists(c.unix_path), "SIGKILL left no stale socket to test with")
    e = Backstopd(ctx, r.endpoint, name="E", unix_listen=True)
    e.unix_path = a.unix_path
    e.start()
    expect(e.ask(recipient="user@example.com"), DUNNO, "a stale socket is replaced at start")
    check("removed stale socket" in e.log(), "the stale socket removal is not logged")


@test
def listen_host_name_refused(ctx):
    """item 3: inet:localhost is refused by -t, at start and on SIGHUP, with
    FILE:LINE; no abort."""
    r = ctx.redis()
    port = free_port()
    path = write_conf(ctx, "host.ini", conf_with(r.endpoint, server={"listen": "inet:localhost:%d" % port}))
    err = expect_refused(path, "listen", "inet:127.0.0.1:%d" % port)
    check("inet:[::1]:%d" % port in err, "no IPv6 suggestion: %r" % err)
    rc, _, err = run_backstopd(["-f", "-c", path])
    expect(rc, 1, "start with a listen host name (stderr %r)" % err)
    d = ctx.daemon(r)
    d.write_listen("inet:localhost:%d" % d.port)
    log = d.reload()
    check(d.alive(), "backstopd died on a SIGHUP with a listen host name")
    check(re.search(re.escape(d.conf_path) + r":\d+: \[server\] listen: .*host name", log),
          "the reload refusal lacks FILE:LINE: %r" % log)
    expect(d.ask(recipient="user@example.com"), DUNNO, "still answering")


@test
def reload_listener_all_or_nothing(ctx):
    """item 4: a reload whose new listener cannot open keeps every old one
    and the old config, and says so; a good move opens before it closes."""
    r = ctx.redis()
    d = ctx.daemon(r, policy={"mode": "enforce"})
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        busy_port, free = busy.getsockname()[1], free_port()
        d.write_listen(["inet:127.0.0.1:%d" % free, "inet:127.0.0.1:%d" % busy_port],
                       policy={"mode": "report"})
        log = d.reload()
        check("keeping the running configuration" in log and "address already in use" in log,
              "the failed reload is not reported: %r" % log)
        check("no longer listening" not in log, "an old listener was closed: %r" % log)
        check("configuration reloaded" not in log, "a failed reload logged as done: %r" % log)
        expect(d.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"),
               "old listener, old config (enforce) after the failed reload")
        check(not can_connect(("127.0.0.1", free)), "the listener opened by the failed reload stayed open")
    finally:
        busy.close()
    d.write_listen("inet:127.0.0.1:%d" % free, policy={"mode": "enforce"})
    log = d.reload()
    check(log.index("listening on inet:127.0.0.1:%d" % free) < log.index("no longer listening"),
          "the old listener closed before the new one opened: %r" % log)
    with PolicyConn(("127.0.0.1", free)) as c:
        expect(c.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"), "new port")
    check(not can_connect(d.addr), "the old port still accepts")


@test
def host_settings_checked(ctx):
    """item 5: user, group and socket_group are checked by -t with
    FILE:LINE; a reload applies socket_mode and says user takes effect at
    restart."""
    r = ctx.redis()
    for key, name in (("user", "nosuchuser-bs14"), ("group", "nosuchgroup-bs14"),
                      ("socket_group", "nosuchgroup-bs14")):
        path = write_conf(ctx, key + ".ini", conf_with(r.endpoint, server={"max_connections": "50", key: name}))
        expect_refused(path, key, "[server] %s: \"%s\": no such" % (key, name))
    d = ctx.daemon(r, unix_listen=True, server={"socket_mode": "0660"})
    expect(os.stat(d.unix_path).st_mode & 0o777, 0o660, "socket mode at start")
    me = pwd.getpwuid(os.getuid()).pw_name
    d.write_config(server={"socket_mode": "0600", "user": me})
    log = d.reload()
    check("configuration reloaded" in log, "reload failed: %r" % log)
    expect(os.stat(d.unix_path).st_mode & 0o777, 0o600, "socket mode after the reload")
    check("[server] user takes effect at restart" in log, "user change not reported: %r" % log)


@test
def start_failure_on_stderr(ctx):
    """item 6: without -f a start-up failure still reaches stderr."""
    r = ctx.redis()
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        path = write_conf(ctx, "busy.ini", conf_with(r.endpoint, server={"listen": "inet:127.0.0.1:%d" % port}))
        rc, _, err = run_backstopd(["-c", path])
    finally:
        busy.close()
    expect(rc, 1, "start on a busy port")
    check(re.search(r"fatal: cannot (bind|listen on) inet:127\.0\.0\.1:%d: address already in use" % port,
                    err), "no fatal line on stderr without -f: %r" % err)


@test
def listen_missing_dir_errno(ctx):
    """item 7: a unix listener in a missing directory says ENOENT, not EACCES."""
    r = ctx.redis()
    missing = os.path.join(ctx.dir, "nonexistent", "dir")
    path = write_conf(ctx, "nodir.ini", conf_with(r.endpoint, server={"listen": "unix:%s/s.sock" % missing}))
    for args in (("-t",), ("-f",)):
        err = expect_refused(path, "listen", "%s: No such file or directory" % missing, args=args)
        check("ermission denied" not in err, "EACCES reported for ENOENT: %r" % err)


@test
def config_dump_no_secrets(ctx):
    """item 8: backstopd -t -v prints no password."""
    path = write_conf(ctx, "secret.ini", conf_with(
        "unix:/nonexistent/redis.sock", server={"listen": "inet:127.0.0.1:%d" % free_port()},
        redis={"password": "hunter2-redis", "sentinel": "192.0.2.10:26379", "master_name": "mm",
               "sentinel_password": "hunter2-sentinel"}))
    rc, out, err = run_backstopd(["-t", "-v", "-c", path])
    expect(rc, 0, "-t -v (stderr %r)" % err)
    check("hunter2" not in out + err, "a secret printed by -t -v: %r" % out)
    check("# password = (set, not shown)" in out and "# sentinel_password = (set, not shown)" in out,
          "the dump does not say the secrets are set: %r" % out)


@test
def stats_counters(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "1/1m"})
    with d.conn() as c:
        c.ask(recipient="user@example.com")
        c.ask(recipient="user@example.com")
        c.ask(sender="", recipient="x@bounce.example")
        c.ask(client_address="192.0.2.50", recipient="n1@example.com")
        c.ask(client_address="192.0.2.50", recipient="n2@example.com")
        poll(lambda: r.r("EXISTS", PREFIX + "block:192.0.2.50"), 5, what="block key")
        expect(c.ask(client_address="192.0.2.50"), BLOCKED, "blocked")
    want = {"valid": 2, "ndr_deny": 1, "unknown_user": 2, "blocked": 1, "clients_blocked": 1}

    def enough():
        s = r.stats()
        return s if all(s.get(k, 0) >= v for k, v in want.items()) else None
    try:
        st = poll(enough, 3.5, interval=0.1, what="stats counters")
    except TestFailure:
        raise TestFailure("stats hash after 3.5 s: %s, want at least %s" % (r.stats(), want))
    note("stats: %s" % st)


@test
def connection_limit(ctx):
    """At [server] max_connections a new connection waits (is not accepted,
    not refused) and is served as soon as another closes; counted."""
    r = ctx.redis()
    port = free_port()
    d = ctx.daemon(r, server={"max_connections": "3"},
                   metrics={"listen": "inet:127.0.0.1:%d" % port})
    held = [d.conn() for _ in range(3)]
    try:
        for c in held:  # all three really accepted and served
            expect(c.ask(recipient="user@example.com"), DUNNO, "one of the first three")
        with d.conn() as fourth:
            check(fourth.send(policy_request(recipient="nobody@example.com")), "send on the 4th")
            try:
                got = fourth.read_raw_reply(timeout=1.0)
                raise TestFailure("4th connection answered over the limit: %r" % got)
            except TestFailure as e:
                if "answered over the limit" in str(e):
                    raise
            held.pop().close()  # one leaves: the waiting one is accepted now
            expect(fourth.read_reply(timeout=5.0), USER_UNKNOWN("nobody@example.com"),
                   "the waiting connection, once one closed")
    finally:
        for c in held:
            c.close()
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as resp:
        body = resp.read().decode()
    m = re.search(r"^backstop_connection_limit_waits_total (\d+)$", body, re.M)
    check(m and int(m.group(1)) >= 1, "limit waits not counted: %r" % (m and m.group(0)))


@test
def pipelined_flood(ctx):
    """A request followed by ~20 kB more in one write (more than one request may
    be) closes the connection; nothing overflows; the server goes on."""
    r = ctx.redis()
    d = ctx.daemon(r)
    req = policy_request()
    junk = b"x=" + b"y" * 60 + b"\n"
    payload = req + junk * 330  # ~20 kB behind a complete request
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        s.sendall(payload)
        s.settimeout(5)
        got = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    check(b"action=" not in got, "answers to a flood: %r" % got[:200])
    poll(lambda: "pipelined behind a request" in d.log() or "malformed policy request" in d.log(),
         5, what="a warning about the flood")
    with d.conn() as c:
        expect(c.ask(recipient="user@example.com"), DUNNO, "fresh connection after the flood")


@test
def metrics_endpoint(ctx):
    """[metrics] listen: a Prometheus scrape shows decisions, latency, Redis state."""
    import urllib.request
    import urllib.error
    r = ctx.redis()
    port = free_port()
    d = ctx.daemon(r, metrics={"listen": "inet:127.0.0.1:%d" % port})
    with d.conn() as c:
        c.ask(recipient="user@example.com")
        c.ask(recipient="nobody@example.com")
    url = "http://127.0.0.1:%d/metrics" % port
    with urllib.request.urlopen(url, timeout=5) as resp:
        check(resp.status == 200, "status %s" % resp.status)
        ctype = resp.headers.get("Content-Type", "")
        body = resp.read().decode()
    check(ctype.startswith("text/plain"), "content type %r" % ctype)
    for want in ('backstop_requests_total{verdict="dunno",reason="valid"} 1',
                 'backstop_requests_total{verdict="reject",reason="unknown_user"} 1',
                 'backstop_request_duration_seconds_bucket{le="+Inf"} 2',
                 "backstop_request_duration_seconds_count 2",
                 "backstop_redis_up 1",
                 "backstop_connections_accepted_total ",
                 "# TYPE backstop_request_duration_seconds histogram"):
        check(want in body, "metrics lack %r:\n%s" % (want, body[:2000]))
    # every sample line is "name{labels} value" or "name value"
    for line in body.splitlines():
        if line and not line.startswith("#"):
            check(re.match(r'^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$', line), "bad sample line %r" % line)
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/other" % port, timeout=5)
        raise TestFailure("/other did not answer 404")
    except urllib.error.HTTPError as e:
        check(e.code == 404, "/other: %s" % e.code)
    # Redis gone: the gauge says so
    r.stop()
    def down():
        with urllib.request.urlopen(url, timeout=5) as resp:
            return "backstop_redis_up 0" in resp.read().decode()
    poll(down, 5, interval=0.1, what="backstop_redis_up 0")


# ---------------------------------------------------------------------------
# injection / hostile input

SCHEMA_RE = re.compile(rb"^backstop:(domains|ndr|exempt|stats|rcpt:.+|block:.+|rate:.+|ndrcount:.+)$", re.S)


def schema_problems(keys):
    bad = []
    for k in keys:
        if not SCHEMA_RE.match(k):
            bad.append("outside the schema: %r" % k)
            continue
        if any(ch in k for ch in b" \r\n\x00\t") or any(b < 0x20 or b == 0x7f for b in k):
            bad.append("blank/control byte in key: %r" % k)
            continue
        for pfx in (b"backstop:rate:", b"backstop:block:"):
            if k.startswith(pfx):
                client = k[len(pfx):].decode(errors="replace")
                try:
                    if "/" in client:
                        ipaddress.ip_network(client, strict=True)
                    else:
                        ipaddress.ip_address(client)
                except ValueError:
                    bad.append("client part is not an address: %r" % k)
        if k.startswith(b"backstop:ndrcount:"):
            dom = k[len(b"backstop:ndrcount:"):]
            # a canonical domain, an address literal as addr.c prints it, or
            # "*": the budget shared by recipients whose domain is unreadable
            if not re.match(rb"^([a-z0-9_.-]+|\[(ipv6:[0-9a-f:.]+|[0-9.]+)\]|\*)$", dom):
                bad.append("ndrcount domain not normalised: %r" % k)
    return bad


@test
def injection(ctx):
    r = ctx.redis()
    d = ctx.daemon(r, ratelimit={"invalid_recipients": "1000/1m"}, policy={"ndr_default": "limit 100000/1h"})
    r.r("HSET", PREFIX + "ndr", "*", "limit 100000/1h")
    nasty = [
        "a b@example.com", "a b@exa mple.com", " user@example.com", "user@example.com ",
        "<user@example.com>", "user@example.com\r", "us\rer@example.com", "x\x01\x02\x1b[31m@example.com",
        "x\x7f@example.com", "{}@example.com", "x@{}", "{x}@{y}.example", "*@example.com", "x@*", "*",
        "*@*", "@", "", "@example.com", "user@", "user@@example.com", "a@b@example.com",
        "x@example.com.", "x@.example.com", "x@example..com", "x@-example.com", "x@[192.0.2.1]",
        "x@[IPv6:2001:db8::1]", "jürgen@exämple.com", "用户@例子.测试", "x@xn--exmple-cua.com",
        '"john doe"@example.com', '"a@b"@example.com', '"x\\"y"@example.com', '"user"@example.com',
        "x%y@example.com", "x!y@example.com", "user+{tag}@example.com", "user+*@example.com",
        "a" * 129 + "@example.com", "x@" + "a" * 64 + ".example", "x@" + ".".join(["a" * 60] * 5),
        "x@" + "a." * 40 + "example", "u" * 2000, "u" * 1000 + "@" + "d" * 900,
        "x" * 10000 + "@example.com", "user@example.com" + "\xff" * 10, "%s%s%n@example.com",
        "user@example.com\tx", "\\x41@example.com", "x@example.com:6379", "x@ex\u202eample.com",
        b"user@example.com\xff\xfe", b"\xc0\xafx@example.com", "$(id)@example.com", "x@0x7f.0.0.1",
    ]
    clients = ["192.0.2.1", "192.0.2.1 ", " 192.0.2.1", "192.0.2.1\r", "::ffff:192.0.2.9",
               "2001:db8::1%eth0", "2001:db8::1/64", "999.1.1.1", "1.2.3", "unknown", "", "*", "{x}",
               "192.0.2.1 x", "2001:db8::g", "::", "0.0.0.0", "255.255.255.255", "1.2.3.4:25",
               "[2001:db8::1]", "x" * 3000, "fe80::1%25lo", "2001:db8:" + "1:" * 20 + ":1", "0x7f.1",
               "01.02.03.04", "1.2.3.04", "192.0.2.1\x00"]
    senders = ["", "a b@c", "<>", "x" * 5000, "MAILER-DAEMON", "\x1b[0m", "é@é"]
    names = ["a b", "x" * 3000, "{}", "*", "\x01", "ünïcödé", ""]

    nreq = nclosed = 0
    replies = []
    c = d.conn()
    try:
        def one(**kw):
            nonlocal c, nreq, nclosed
            data = policy_request(**kw)
            nreq += 1
            if not c.send(data):
                nclosed += 1
                c.close()
                c = d.conn()
                return
            try:
                raw = c.read_raw_reply(timeout=10)
            except Closed as e:
                check(e.partial == b"", "connection closed after partial reply %r for %r" % (e.partial, kw))
                nclosed += 1
                c.close()
                c = d.conn()
                return
            check(REPLY_RE.match(raw), "bad reply %r for %r" % (raw, {k: v[:80] for k, v in kw.items()}))
            replies.append(raw)

        for v in nasty:
            for sender in ("", "s@sender.example"):
                one(recipient=v, sender=sender)
            one(recipient="nobody@example.com", sender=v)
            one(recipient="user@example.com", client_name=v, helo_name=v, reverse_client_name=v)
            one(recipient=v, sender="", client_address="198.51.100.3", queue_id=v[:50])
            one(recipient=v, protocol_state=v, protocol_name=v)
        for cl in clients:
            one(client_address=cl, recipient="nobody@example.com")
            one(client_address=cl, recipient="x@ndr.example", sender="")
            one(client_address=cl, recipient="user@example.com")
        for s in senders:
            for n in names:
                one(sender=s, client_name=n, helo_name=n, recipient="n@example.com")
        # a literal "*" local part is not the catch-all
        c.close()
        c = d.conn()
        expect(c.ask(recipient="*@example.com"), USER_UNKNOWN("*@example.com"), "*@example.com")
        expect(c.ask(recipient="*+x@example.com"), USER_UNKNOWN("*+x@example.com"), "*+x@example.com")
        # attribute names that are odd but legal
        one(**{"recipient": "n@example.com", "x y": "1", "{}": "2", "*": "3", "ü": "4"})
    finally:
        c.close()
    note("injection: %d requests, %d answered, %d closed" % (nreq, len(replies), nclosed))
    check(len(replies) > nreq // 2, "only %d of %d requests were answered" % (len(replies), nreq))
    expect(d.ask(recipient="nobody@example.com"), USER_UNKNOWN("nobody@example.com"), "still sane afterwards")
    time.sleep(1.5)  # let fire-and-forget writes and a stats flush land
    keys = r.keys()
    problems = schema_problems(keys)
    check(not problems, "; ".join(problems[:8]))
    # the log: escaped, one line per event, no raw control characters
    log = d.log_bytes()
    ctrl = sorted({b for b in log if (b < 0x20 and b not in (0x0a, 0x09)) or b == 0x7f})
    check(not ctrl, "daemon log contains raw control bytes %s" % [hex(b) for b in ctrl])
    check(d.alive(), "backstopd died")


# ---------------------------------------------------------------------------
# runner

def test_line(exc):
    """file:line of the innermost frame of run.py in exc's traceback."""
    where = "?"
    for fr in traceback.extract_tb(exc.__traceback__):
        if fr.filename == __file__ and fr.name not in ("ask", "ask_raw", "read_reply",
                                                          "read_raw_reply"):
            where = "line %d: %s" % (fr.lineno, fr.line)
    return where


def run_one(fn, root):
    name = fn.__name__
    ctx = Ctx(root, name)
    t0 = time.monotonic()
    err = None
    try:
        fn(ctx)
    except TestFailure as e:
        err = str(e)
    except Closed as e:
        err = "%s, at %s" % (e, test_line(e))
    except Exception as e:  # noqa: BLE001
        err = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()) if VERBOSE else \
            "%s: %s" % (type(e).__name__, e)
    finally:
        try:
            problems = ctx.cleanup()
        except Exception as e:  # noqa: BLE001
            problems = ["cleanup failed: %r" % e]
    if problems:
        err = "; ".join(([err] if err else []) + problems)
    dt = time.monotonic() - t0
    if err:
        err1 = err.replace("\n", " | ") if not VERBOSE else err
        print("FAIL %s: %s" % (name, err1), flush=True)
        for dmn in ctx.daemons:
            note("--- %s log (last 25 lines) ---\n%s" % (dmn.name, tail(dmn.log_path, 25)))
        return False
    print("ok %s (%.1fs)" % (name, dt), flush=True)
    return True


def main():
    global VERBOSE, BACKSTOPD
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backstopd", required=True, help="path to the backstopd binary")
    ap.add_argument("--only", action="append", default=[], help="run only this test (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--list", action="store_true", help="list the tests and exit")
    args = ap.parse_args()
    VERBOSE = args.verbose
    BACKSTOPD = os.path.abspath(args.backstopd)
    if args.list:
        for fn in TESTS:
            print(fn.__name__)
        return 0
    if not os.access(BACKSTOPD, os.X_OK):
        print("backstopd not found or not executable: %s" % BACKSTOPD, file=sys.stderr)
        return 2
    if not os.access(REDIS_SERVER, os.X_OK):
        print("redis-server not found", file=sys.stderr)
        return 2
    tests = TESTS
    if args.only:
        names = {fn.__name__ for fn in TESTS}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            print("unknown test(s): %s (see --list)" % ", ".join(unknown), file=sys.stderr)
            return 2
        tests = [fn for fn in TESTS if fn.__name__ in args.only]

    # SIGTERM to the runner (e.g. ctest timeout): unwind so finally blocks stop our children
    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)

    # short root: unix socket paths must stay under 108 bytes
    root = tempfile.mkdtemp(prefix="bsit-", dir="/tmp")
    passed = failed = 0
    t0 = time.monotonic()
    try:
        for fn in tests:
            if run_one(fn, root):
                passed += 1
            else:
                failed += 1
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        failed += 1
    finally:
        _kill_leftovers()
        if args.keep or (failed and VERBOSE):
            note("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    for k, (n, mx, med) in LATENCY.items():
        note("latency summary %s: n=%d max=%.1f ms median=%.1f ms" % (k, n, mx * 1000, med * 1000))
    note("total %.1fs" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
