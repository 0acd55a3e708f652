"""Fixtures of the integration suite (on top of tests/conftest.py).

    redis        a private redis-server holding the standard data set (seed())
    shared       (module scope) one seeded redis-server + one default
                 backstopd, for tables of read-only cases: a case must not
                 change Redis or the daemon's configuration. Its rate limit is
                 off (invalid_recipients = 0): the cases' unknown recipients
                 would otherwise add up to a block of 192.0.2.1
    syslog       make(name) -> SyslogReceiver: a datagram socket NAME.sock in
                 the test's directory, for [log] socket; closed at the end
"""
import os

import pytest

from support.fixtures import backstopd_daemons, private_dir, redis_servers
from support.backstopd import seed
from support.syslog import SyslogReceiver


@pytest.fixture
def redis(redis_server):
    seed(redis_server.client)
    return redis_server


@pytest.fixture
def syslog(test_dir):
    receivers = []

    def make(name="syslog"):
        r = SyslogReceiver(os.path.join(test_dir.root, name + ".sock"))
        receivers.append(r)
        return r
    yield make
    for r in receivers:
        r.close()


class Shared:
    def __init__(self, redis, daemon):
        self.redis = redis
        self.daemon = daemon


@pytest.fixture(scope="module")
def shared(request, backstopd_bin):
    def failed():
        return request.session.testsfailed > 0
    with private_dir(lambda: request.config.getoption("keep") or failed()) as dirs, \
            redis_servers(dirs) as make_redis, \
            backstopd_daemons(dirs, backstopd_bin, failed) as make_daemon:
        r = make_redis()
        seed(r.client)
        yield Shared(r, make_daemon(r, ratelimit={"invalid_recipients": "0"},
                                    harvest={"threshold": "0"}))
