"""backstopd - the daemon under test, with a rendered configuration.

Backstopd(binary, directory, redis_endpoint, **sections) holds the
configuration as a dict of sections (DEFAULT_CONFIG overlaid with the
test's own values), writes it as an ini file, starts `backstopd -f -c`
with stderr to a log file, and waits until it accepts connections and has
reached Redis. The policy listener is a free loopback port (retried when
another process wins the race for it) or a unix socket in the directory.

write_listen() + reload() move the listeners by SIGHUP and return what
the reload logged; sections_with() and run_backstopd() serve tests that
write a configuration and run backstopd -t / -f on it themselves.

problems() lists what a test did not expect: the daemon died, ended by
a signal other than TERM/KILL, or its log has a sanitizer or panic report.
"""
import os
import re
import signal
import subprocess
import time

from . import procs
from .policy import PolicyConn
from .replies import DUNNO, PREFIX
from .wait import WaitTimeout, poll

DEFAULT_CONFIG = {
    "server": {"idle_timeout": "330s", "max_connections": "1000"},
    "redis": {"prefix": PREFIX, "timeout": "300ms", "connect_timeout": "1s"},
    "policy": {"mode": "enforce", "on_redis_error": "defer", "recipient_delimiter": "+",
               "ndr_default": "deny"},
    "ratelimit": {"invalid_recipients": "20/10m", "block_time": "1h", "ipv6_prefix": "64",
                  "exempt": ["192.0.2.250/32"]},
    "log": {"level": "info"},
}
# BACKSTOP_TEST_MIRROR=yes|no runs every daemon with that [redis] mirror (the
# suite must pass both ways)
if os.environ.get("BACKSTOP_TEST_MIRROR"):
    DEFAULT_CONFIG["redis"]["mirror"] = os.environ["BACKSTOP_TEST_MIRROR"]
SECTION_ORDER = ("server", "redis", "policy", "ratelimit", "metrics", "log")
LOG_ALARMS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "panic:")


def render_config(sections):
    """The ini text of {section: {key: value or [values] or None}}; None
    leaves a key out, a list repeats it."""
    out = ["# written by tests/support/backstopd.py"]
    order = list(SECTION_ORDER) + sorted(set(sections) - set(SECTION_ORDER))
    for sec in order:
        if sec not in sections:
            continue
        out.append("[%s]" % sec)
        for k, v in sections[sec].items():
            for item in ([] if v is None else v if isinstance(v, list) else [v]):
                out.append("%s = %s" % (k, item))
    return "\n".join(out) + "\n"


def seed(client, prefix=PREFIX):
    """The standard data set: example.com with three users, example.net catch-all."""
    client.sadd(prefix + "domains", "example.com", "example.net")
    client.sadd(prefix + "rcpt:example.com", "user", "alice", "postmaster")
    client.sadd(prefix + "rcpt:example.net", "*")


def sections_with(redis_endpoint, **sections):
    """DEFAULT_CONFIG (copied) with [redis] server = redis_endpoint and the
    given sections overlaid key by key."""
    secs = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
    secs["redis"]["server"] = redis_endpoint
    for sec, kv in sections.items():
        secs.setdefault(sec, {}).update(kv)
    return secs


def run_backstopd(binary, args, timeout=10):
    """backstopd with args to its end: (exit status, stdout, stderr) as text."""
    p = subprocess.run([binary] + list(args), capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class Backstopd:
    def __init__(self, binary, directory, redis_endpoint, name="backstopd", unix_listen=False,
                 **sections):
        self.binary = binary
        self.name = name
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.conf_path = os.path.join(directory, "backstop.ini")
        self.log_path = os.path.join(directory, "stderr.log")
        self.unix_path = os.path.join(directory, "policy.sock") if unix_listen else None
        self.port = None
        self.proc = None
        self.expected_exit = False
        self.sections = sections_with(redis_endpoint, **sections)

    @property
    def addr(self):
        return self.unix_path if self.unix_path else ("127.0.0.1", self.port)

    @property
    def pid(self):
        return self.proc.pid

    def update(self, **sections):
        for sec, kv in sections.items():
            self.sections.setdefault(sec, {}).update(kv)

    def listeners(self):
        """[server] listen: the unix socket if asked for, else the inet port."""
        return "unix:" + self.unix_path if self.unix_path else "inet:127.0.0.1:%d" % self.port

    def write_config(self, **sections):
        """Overlay sections, then (re)write the file atomically."""
        self.update(**sections)
        self.sections["server"]["listen"] = self.listeners()
        self._write(self.sections)

    def write_listen(self, listen, **sections):
        """The config with [server] listen = listen (a string or a list),
        for a reload that moves the listeners; self.addr is unchanged."""
        self.update(**sections)
        secs = {k: dict(v) for k, v in self.sections.items()}
        secs["server"]["listen"] = listen
        self._write(secs)

    def _write(self, sections):
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(render_config(sections))
        os.replace(tmp, self.conf_path)

    def reload(self, timeout=5.0):
        """SIGHUP; the log after it once a reload outcome is logged (and
        0.2 s more: lines logged after the outcome are part of it)."""
        off = self.log_size()
        self.sighup()
        self.wait_log(r"configuration reloaded|keeping the running configuration", offset=off,
                      timeout=timeout)
        time.sleep(0.2)
        return self.log_since(off)

    def start(self, wait_redis=True, timeout=15.0):
        for attempt in range(3):
            self.port = procs.free_port()
            self.write_config()
            self.proc = procs.spawn([self.binary, "-f", "-c", self.conf_path], self.log_path)
            try:
                self.wait_listening(timeout)
                break
            except AssertionError:
                lost_port_race = (not self.alive() and not self.unix_path
                                  and "in use" in self.log().lower())
                if not (lost_port_race and attempt < 2):
                    raise
        if wait_redis:
            self.wait_redis(timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        assert self.alive(), "%s exited (status %s): %s" % (
            self.name, self.proc.returncode, procs.tail(self.log_path, 8))

    def wait_listening(self, timeout=15.0):
        def try_connect():
            self.assert_alive()
            PolicyConn(self.addr, timeout=2.0).close()
            return True
        poll(try_connect, timeout, what="%s to accept connections" % self.name)

    def wait_redis(self, timeout=15.0):
        """Ready = the log says "redis: connected", or a probe that needs
        Redis gets a real answer (DUNNO) instead of the fallback."""
        probe = self.sections["policy"].get("on_redis_error") != "dunno"

        def ready():
            self.assert_alive()
            if "redis: connected" in self.log():
                return True
            return probe and self.ask(client_address="127.0.0.1",
                                      recipient="probe@probe.invalid") == DUNNO
        poll(ready, timeout, what="%s to connect to Redis" % self.name)

    # -- the log
    def log_bytes(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def log(self):
        return self.log_bytes().decode(errors="replace")

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        return self.log_bytes()[offset:].decode(errors="replace")

    def wait_log(self, pattern, offset=0, timeout=5.0):
        """The first match of pattern in the log after offset, polled."""
        rx = re.compile(pattern)
        return poll(lambda: rx.search(self.log_since(offset)), timeout,
                    what="log line matching %r" % pattern)

    # -- talking to it
    def conn(self, timeout=10.0):
        return PolicyConn(self.addr, timeout=timeout)

    def ask(self, **kw):
        """One request on a fresh connection."""
        with self.conn() as c:
            return c.ask(**kw)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def sighup(self):
        self.signal(signal.SIGHUP)

    def terminate(self, timeout=5.0):
        """SIGTERM as an expected exit; the exit status (fails after timeout s)."""
        self.expected_exit = True
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout=5.0):
        """The exit status once it has exited; fails after timeout s."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s still running %.0f s after SIGTERM" % (self.name, timeout))
        procs.forget(self.proc)
        return rc

    def stop(self):
        if self.proc:
            return procs.stop(self.proc)
        return None

    def problems(self):
        """Stop it; what went wrong that the test did not expect."""
        out = []
        if self.proc and self.proc.poll() is not None and not self.expected_exit:
            out.append("%s died during the test (status %s)" % (self.name, self.proc.returncode))
        rc = self.stop()
        if rc is not None and rc < 0 and -rc not in (signal.SIGTERM, signal.SIGKILL):
            out.append("%s ended by signal %d" % (self.name, -rc))
        text = self.log()
        out += ["%s log contains %r" % (self.name, m) for m in LOG_ALARMS if m in text]
        return out


__all__ = ["Backstopd", "DEFAULT_CONFIG", "render_config", "run_backstopd", "sections_with", "seed",
           "WaitTimeout"]
