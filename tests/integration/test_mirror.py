"""The local mirror (issue 10, [redis] mirror = yes): answers without a
Redis round trip, kept exact by invalidations (CLIENT TRACKING BCAST), and
through a Redis outage until [redis] max_stale.

Every change an admin can make with redis-cli (each key type the mirror
holds) is checked while requests flow: once the first request is answered
the new way, every later one is too. Propagation from the write to the
first request answered the new way is measured with 2 daemons."""
import re
import threading
import time
import urllib.request

import pytest

from support.procs import free_port
from support.replies import BLOCKED, DUNNO, FALLBACK_DEFER, PREFIX, USER_UNKNOWN, action
from support.wait import poll

NDR_DENY = action("550 5.7.1 Delivery status notifications to this domain are not accepted")
MIRROR = {"mirror": "yes"}


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as resp:
        return resp.read().decode()


def metric(port, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), scrape(port), re.M)
    return float(m.group(1)) if m else None


def mirrored(redis, backstopd, port=None, **redis_cfg):
    """A daemon with the mirror on, once its mirror answers (loaded)."""
    port = port or free_port()
    d = backstopd(redis, redis=dict(MIRROR, **redis_cfg),
                  metrics={"listen": "inet:127.0.0.1:%d" % port})
    d.metrics_port = port

    def loaded():
        d.ask(recipient="user@example.com")
        return metric(port, "backstop_mirror_answers_total") > 0
    poll(loaded, 10, what="the mirror to answer")
    return d


def test_answers_come_from_the_mirror(redis, backstopd):
    # given a daemon whose mirror is loaded
    d = mirrored(redis, backstopd)
    before = metric(d.metrics_port, "backstop_mirror_answers_total")
    # when known and unknown users are asked for
    with d.conn() as c:
        assert c.ask(recipient="user@example.com") == DUNNO
        assert c.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")
        assert c.ask(recipient="x@unprotected.example") == DUNNO
        assert c.ask(recipient="anyone@example.net") == DUNNO  # catch-all
    # then the mirror answered them
    assert metric(d.metrics_port, "backstop_mirror_answers_total") >= before + 4
    assert metric(d.metrics_port, "backstop_mirror_stale_seconds") == 0
