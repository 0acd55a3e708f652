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
    e2e_redis       tests/support RedisServer on WORK/redis/redis.sock only (no
                    TCP port); kill() and start() again on the same socket and
                    dump.rdb play a crash and its recovery
    e2e_db          a redis-py client (str) on it, with load(TEXT) for lines in
                    redis-cli syntax
    (watchdog)      each module must end within BACKSTOP_E2E_DEADLINE s (540,
                    under ctest's TIMEOUT): SIGALRM fails the running test, so
                    the finalisers still stop every Postfix and daemon
    e2e_report      lines printed in pytest's terminal summary (the SMTP reply
                    tables, the measured figures)
"""
import os
import shlex
import shutil
import signal

import pytest
import redis

from support import procs
from support.postfix import Postfix, postfix_missing
from support.redis_server import RedisServer

_REPORT = []


@pytest.fixture(scope="module", autouse=True)
def watchdog():
    deadline = int(os.environ.get("BACKSTOP_E2E_DEADLINE", "540"))

    def fire(signum, frame):
        pytest.fail("e2e watchdog: %ds since the module started, stopping everything" % deadline,
                    pytrace=False)
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(deadline)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def e2e_work(request):
    work = procs.short_tmpdir("bs-e2e-")
    os.chmod(work, 0o755)
    failed_before = request.session.testsfailed
    yield work
    if request.session.testsfailed > failed_before or request.config.getoption("--keep", False):
        print("e2e: work directory kept: %s" % work)
        _REPORT.append("e2e: work directory kept: %s" % work)
    else:
        procs.remove_tree(work)


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


class DB(redis.Redis):
    """A redis-py client that speaks str; load() runs redis-cli syntax lines."""

    def load(self, text):
        for line in text.splitlines():
            self.execute_command(*shlex.split(line))


@pytest.fixture(scope="module")
def e2e_redis(e2e_work):
    """A started, empty RedisServer (unix socket only), stopped by PID at the end of the module."""
    if not shutil.which("redis-server"):
        pytest.skip("e2e SKIPPED: redis-server missing (scripts/deps installs it)")
    r = RedisServer(os.path.join(e2e_work, "redis"))
    try:
        yield r.start()
    finally:
        r.stop()


@pytest.fixture(scope="module")
def e2e_db(e2e_redis):
    """A DB (above) on e2e_redis's socket."""
    db = DB(unix_socket_path=e2e_redis.sock, decode_responses=True, socket_timeout=10)
    yield db
    db.close()


@pytest.fixture(scope="module")
def e2e_report():
    return _REPORT


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("e2e report")
        for line in _REPORT:
            terminalreporter.write_line(line)
