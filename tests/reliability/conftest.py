"""
tests/reliability/conftest.py - fixtures of the reliability tests

    checks          reltools.Checks: check()/measure()/note() as the test
                    goes, verdict() at its end
    rel_backstopd   make(redis, name=, unix_listen=, inet=, metrics=, start=,
                    wait_redis=, **sections) -> reltools.RelBackstopd; at the
                    end stopped by PID, and the test fails if one died,
                    crashed or logged a sanitizer report
    sentinel_group  tests/support/sentinel.py: master + replica + 3 sentinels
                    on free loopback ports, in sync and ready; stopped by PID

Options of test_soak.py (scripts/soak passes the long soak's):
--soak-requests, --soak-connections, --soak-kill-every, --soak-freeze,
--soak-rate (0 = as fast as possible), --soak-warmup-s (0 = one chaos cycle
+ 1 s), --soak-rss-growth-mib (sanitized build), --soak-rss-ratio
(optimised build); the defaults are the short ctest variant.

They run alone and take tens of seconds each: marked slow (and sentinel).
"""
import pytest

from reliability.reltools import Checks, RelBackstopd
from support import procs
from support.sentinel import sentinel_group as _sentinel_group


SOAK_OPTIONS = (("requests", int), ("connections", int), ("kill-every", float), ("freeze", float),
                ("rate", float), ("warmup-s", float), ("rss-growth-mib", float), ("rss-ratio", float))


def pytest_addoption(parser):
    group = parser.getgroup("soak", "tests/reliability/test_soak.py (defaults: the short variant)")
    for name, kind in SOAK_OPTIONS:
        group.addoption("--soak-" + name, type=kind, dest="soak_" + name.replace("-", "_"))


@pytest.fixture
def checks(record):
    return Checks(record)


@pytest.fixture
def rel_backstopd(request, test_dir, backstopd_bin):
    daemons = []

    def make(store, /, name="backstopd", start=True, wait_redis=True, **kw):
        ep = store if isinstance(store, str) else store.endpoint
        d = RelBackstopd(backstopd_bin, test_dir.make(name), ep, name=name, **kw)
        daemons.append(d)
        return d.start(wait_redis=wait_redis) if start else d
    yield make
    problems = []
    failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
    for d in reversed(daemons):
        problems += d.problems()
        if problems or failed:
            print("--- %s log (last 25 lines) ---\n%s" % (d.name, procs.tail(d.log_path, 25)))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def sentinel_group(redis_factory, test_dir):
    with _sentinel_group(redis_factory, test_dir) as g:
        yield g
