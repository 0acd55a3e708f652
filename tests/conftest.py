"""tests/conftest.py - the fixtures every Python suite uses, written once.

Options (or environment): --backstopd PATH (BACKSTOPD), --backstopctl PATH
(BACKSTOPCTL); defaults build/test/<name> under the source tree. --keep
keeps each test's directory.

    test_dir        a private directory under /tmp (short: unix sockets fit)
    redis_factory   make(name, tcp=False, start=True) -> RedisServer, stopped at the end
    redis_server    one started, empty RedisServer (.client is a redis.Redis)
    backstopd       make(redis, name=, unix_listen=, start=, wait_redis=, **sections)
                    -> Backstopd; at the end stopped by PID, and the test
                    fails if it died, crashed or logged a sanitizer report
    backstopctl     Ctl runner (set .config or pass config=)
    record          record(text): a measurement, printed in the summary

Every process is stopped in the finaliser of the fixture that started it;
tests/support/procs.py SIGKILLs leftovers at exit.
"""
import os

import pytest

from support.ctl import Ctl
from support.fixtures import backstopd_daemons, private_dir, redis_servers

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser):
    parser.addoption("--backstopd", default=os.environ.get("BACKSTOPD"),
                     help="backstopd binary (env BACKSTOPD; default build/test/backstopd)")
    parser.addoption("--backstopctl", default=os.environ.get("BACKSTOPCTL"),
                     help="backstopctl binary (env BACKSTOPCTL; default build/test/backstopctl)")
    parser.addoption("--keep", action="store_true", help="keep each test's directory")


def _binary(config, name):
    path = os.path.abspath(config.getoption(name) or os.path.join(SOURCE_DIR, "build/test", name))
    if not os.access(path, os.X_OK):
        pytest.fail("%s not found or not executable: %s (--%s or env %s)" % (
            name, path, name, name.upper()), pytrace=False)
    return path


@pytest.fixture(scope="session")
def backstopd_bin(pytestconfig):
    return _binary(pytestconfig, "backstopd")


@pytest.fixture(scope="session")
def backstopctl_bin(pytestconfig):
    return _binary(pytestconfig, "backstopctl")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item: finalisers print logs on failure."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


@pytest.fixture
def test_dir(request):
    with private_dir(lambda: request.config.getoption("keep") or _failed(request)) as d:
        yield d


@pytest.fixture
def redis_factory(test_dir):
    with redis_servers(test_dir) as make:
        yield make


@pytest.fixture
def redis_server(redis_factory):
    return redis_factory()


@pytest.fixture
def backstopd(request, test_dir, backstopd_bin):
    with backstopd_daemons(test_dir, backstopd_bin, lambda: _failed(request)) as make:
        yield make


@pytest.fixture
def backstopctl(backstopctl_bin):
    return Ctl(backstopctl_bin)


@pytest.fixture
def record(request):
    """record(text): a measurement; shown in the terminal summary (and with -s at once)."""
    def rec(text):
        print("# " + text)
        request.node.user_properties.append(("measure", text))
    return rec


def pytest_terminal_summary(terminalreporter):
    lines = [(rep.nodeid, v) for reps in terminalreporter.stats.values() for rep in reps
             if hasattr(rep, "user_properties") and getattr(rep, "when", "") == "call"
             for k, v in rep.user_properties if k == "measure"]
    if lines:
        terminalreporter.section("measurements")
        for nodeid, text in lines:
            terminalreporter.write_line("%s: %s" % (nodeid.split("::")[-1], text))
