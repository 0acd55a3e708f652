"""
tests/e2e/conftest.py - fixtures of the end-to-end tests (real Postfix)

    e2e_work        one temporary directory per module under /tmp, 0755 (the
                    postfix user walks into the queue directories; pytest's
                    own tmp_path is 0700); removed unless a test failed
    postfix         a factory: postfix(name, settings) -> a set-up, not yet
                    started tests/support/postfix.Postfix; every instance is
                    stopped ("postfix -c DIR stop") at the end of the module.
                    Skips the module when Postfix cannot run here (not root,
                    not installed: scripts/deps installs it)
    e2e_redis       redis-server on WORK/redis/redis.sock only (no TCP port),
                    a redis-py client(); kill() and start() again on the same
                    socket and dump.rdb (a crash and its recovery)
    e2e_report      lines printed in pytest's terminal summary (the SMTP reply
                    tables, the measured figures)
"""
import os
import shlex
import shutil
import signal
import subprocess
import tempfile

import pytest
import redis

from support.postfix import Log, Postfix, postfix_missing, wait_until

_REPORT = []


@pytest.fixture(scope="module")
def e2e_work(request):
    work = tempfile.mkdtemp(prefix="bs-e2e-", dir="/tmp")
    os.chmod(work, 0o755)
    failed_before = request.session.testsfailed
    yield work
    if request.session.testsfailed > failed_before or request.config.getoption("--keep", False):
        print("e2e: work directory kept: %s" % work)
        _REPORT.append("e2e: work directory kept: %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def postfix(e2e_work):
    why = postfix_missing()
    if why:
        pytest.skip("e2e SKIPPED: " + why)
    made = []

    def make(name, settings):
        pf = Postfix(name, e2e_work, settings).setup()
        made.append(pf)
        return pf
    yield make
    for pf in made:
        pf.stop()


class Redis:
    """redis-server on WORK/redis/redis.sock only; restartable on the same
    socket and dump.rdb (a crash and its recovery)."""

    def __init__(self, work):
        self.dir = os.path.join(work, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.log = Log(os.path.join(self.dir, "redis.log"))
        self.proc = None

    def client(self):
        return redis.Redis(unix_socket_path=self.sock, decode_responses=True, socket_timeout=10)

    def start(self):
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", "0",
             "--unixsocket", self.sock, "--unixsocketperm", "700",
             "--dir", self.dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--logfile", self.log.path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        assert wait_until(self.ping, 10), "redis-server did not start:\n" + self.log.tail())

    def ping(self):
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def load(self, text):
        db = self.client()
        for line in text.splitlines():
            db.execute_command(*shlex.split(line))

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self):
        """Crash it (SIGKILL); the socket file stays, as after a real crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)



@pytest.fixture(scope="module")
def e2e_redis(e2e_work):
    """A started Redis (above) holding nothing, stopped at the end of the module."""
    if not shutil.which("redis-server"):
        pytest.skip("e2e SKIPPED: redis-server missing (scripts/deps installs it)")
    r = Redis(e2e_work)
    try:
        r.start()
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def e2e_report():
    return _REPORT


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("e2e report")
        for line in _REPORT:
            terminalreporter.write_line(line)
