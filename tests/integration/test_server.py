"""Listeners and connections: unix socket, [server] allow, idle timeout,
the connection limit; the metrics endpoint and the stats hash."""
import os
import re
import signal
import socket
import struct
import time
import urllib.error

import pytest

from support.metrics import scrape
from support.policy import request
from support.procs import free_port
from support.replies import BLOCKED, DUNNO, PREFIX, USER_UNKNOWN
from support.wait import poll

UNKNOWN = USER_UNKNOWN("nobody@example.com")


def test_unix_listener(redis, backstopd):
    d = backstopd(redis, unix_listen=True)
    assert d.ask(recipient="nobody@example.com") == UNKNOWN
    assert d.ask(recipient="user@example.com") == DUNNO


def test_server_allow(redis, backstopd):
    d = backstopd(redis, server={"allow": ["192.0.2.0/24"]})
    with d.conn() as c:
        c.send(request())
        c.expect_closed(5.0, "connection from 127.0.0.1 not in [server] allow")
    d.wait_log(r"warning: .*not in \[server\] allow", timeout=5)
    d.write_config(server={"allow": ["192.0.2.0/24", "127.0.0.0/8"]})
    d.sighup()
    poll(lambda: d.ask(recipient="user@example.com") == DUNNO, 5, what="allowed after reload")


def test_peer_reset_before_accept_is_no_refusal(redis, backstopd):
    """A client that resets before backstopd accepts is gone, not refused:
    no "not in [server] allow" warning (it was one per reset, unlimited)."""
    d = backstopd(redis)
    os.kill(d.proc.pid, signal.SIGSTOP)  # the connections wait in the backlog
    try:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    assert d.ask(recipient="user@example.com") == DUNNO
    time.sleep(0.3)
    assert "not in [server] allow" not in d.log(), d.log()


def test_idle_timeout(redis, backstopd, record):
    d = backstopd(redis, server={"idle_timeout": "1s"})
    with d.conn() as c:
        t0 = time.monotonic()
        c.expect_closed(6.0, "connection idle from the start")
        dt = time.monotonic() - t0
        record("fresh idle connection closed after %.2fs" % dt)
        assert dt >= 0.8, "closed before idle_timeout 1s"
    with d.conn() as c:
        assert c.ask(recipient="user@example.com") == DUNNO
        t0 = time.monotonic()
        c.expect_closed(6.0, "connection idle after a request")
        dt = time.monotonic() - t0
        record("connection idle after a request closed after %.2fs" % dt)
        assert dt >= 0.8, "closed before idle_timeout after the reply"
        # the timer armed for the answer's deadline fired first and was
        # re-armed for the rest of the idle time: not a second period late
        assert dt < 2.0, "closed %.2fs after the reply (idle_timeout 1s)" % dt
    # activity keeps it open: a request every 0.4 s for 2.4 s
    with d.conn() as c:
        for i in range(6):
            assert c.ask(recipient="user@example.com") == DUNNO, "request %d" % i
            time.sleep(0.4)
        assert c.ask(recipient="user@example.com") == DUNNO, "active connection still open"


def test_connection_limit(redis, backstopd):
    """At [server] max_connections a new connection waits (is not accepted,
    not refused) and is served as soon as another closes; counted."""
    port = free_port()
    d = backstopd(redis, server={"max_connections": "3"},
                  metrics={"listen": "inet:127.0.0.1:%d" % port})
    held = [d.conn() for _ in range(3)]
    try:
        for c in held:  # all three really accepted and served
            assert c.ask(recipient="user@example.com") == DUNNO
        with d.conn() as fourth:
            assert fourth.send(request(recipient="nobody@example.com"))
            with pytest.raises(AssertionError, match="no reply within"):
                fourth.read_raw_reply(timeout=1.0)
            held.pop().close()  # one leaves: the waiting one is accepted now
            assert fourth.read_reply(timeout=5.0) == UNKNOWN, "the waiting connection"
    finally:
        for c in held:
            c.close()
    m = re.search(r"^backstop_connection_limit_waits_total (\d+)$", scrape(port)[2], re.M)
    assert m and int(m.group(1)) >= 1, "limit waits not counted"


METRICS_WANTED = ['backstop_requests_total{verdict="dunno",reason="valid"} 1',
                  'backstop_requests_total{verdict="reject",reason="unknown_user"} 1',
                  "backstop_redis_up 1",
                  "backstop_connections_accepted_total ",
                  "# TYPE backstop_request_duration_seconds histogram"]


def test_metrics_endpoint(redis, backstopd):
    """[metrics] listen: a Prometheus scrape shows decisions, latency, Redis state."""
    port = free_port()
    d = backstopd(redis, metrics={"listen": "inet:127.0.0.1:%d" % port})

    def sample(body, name):
        m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
        return int(m.group(1)) if m else None

    # the fixture's readiness probes are requests too (a fallback one when it
    # was faster than the Redis connection): count from here on
    before = scrape(port)[2]
    with d.conn() as c:
        c.ask(recipient="user@example.com")
        c.ask(recipient="nobody@example.com")
    status, ctype, body = scrape(port)
    assert status == 200
    assert ctype.startswith("text/plain")
    for want in METRICS_WANTED:
        assert want in body
    for name in ('backstop_request_duration_seconds_bucket{le="+Inf"}',
                 "backstop_request_duration_seconds_count"):
        assert sample(body, name) == sample(before, name) + 2, name
    # every sample line is "name{labels} value" or "name value"
    for line in body.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$', line), "bad sample line"
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(port, "/other")
    assert e.value.code == 404
    redis.stop()  # Redis gone: the gauge says so
    poll(lambda: "backstop_redis_up 0" in scrape(port)[2], 5, interval=0.1, what="backstop_redis_up 0")


def test_stats_counters(redis, backstopd, record):
    d = backstopd(redis, ratelimit={"invalid_recipients": "1/1m"})
    with d.conn() as c:
        c.ask(recipient="user@example.com")
        c.ask(recipient="user@example.com")
        c.ask(sender="", recipient="x@bounce.example")
        c.ask(client_address="192.0.2.50", recipient="n1@example.com")
        c.ask(client_address="192.0.2.50", recipient="n2@example.com")
        poll(lambda: redis.client.exists(PREFIX + "block:192.0.2.50"), 5, what="block key")
        assert c.ask(client_address="192.0.2.50") == BLOCKED
    want = {"valid": 2, "ndr_deny": 1, "unknown_user": 2, "blocked": 1, "clients_blocked": 1}

    def enough():
        s = redis.stats()
        return s if all(s.get(k, 0) >= v for k, v in want.items()) else None
    st = poll(enough, 3.5, interval=0.1, what="stats counters %s" % want)
    record("stats: %s" % st)
