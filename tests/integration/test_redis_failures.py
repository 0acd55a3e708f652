"""Redis trouble: down at start, killed, frozen, keys of the wrong type,
TCP, clients that leave while their request waits. Every answer must come
within [redis] timeout (+ slack), as the fallback, and real answers must
return once Redis does. Latencies are recorded (see the summary)."""
import statistics
import threading
import time

import pytest

from support.backstopd import seed
from support.policy import request
from support.replies import DUNNO, FALLBACK_DEFER, NDR_DENY, PREFIX, USER_UNKNOWN
from support.wait import poll

P = PREFIX


@pytest.fixture
def latency(record):
    def summary(name, values):
        record("latency %s: n=%d max=%.1fms median=%.1fms" % (
            name, len(values), max(values) * 1000, statistics.median(values) * 1000))
    return summary


def real_answers_again(d, what, timeout=10):
    poll(lambda: d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com"),
         timeout, interval=0.1, what="real answers " + what)


def restart_seeded(r):
    r.restart()
    seed(r.client)


def test_redis_down_at_start(redis_factory, backstopd, latency, record):
    r = redis_factory(start=False)
    d = backstopd(r, wait_redis=False, redis={"timeout": "300ms"})
    lat = []
    with d.conn() as c:
        for i in range(20):
            assert c.ask(recipient="nobody%d@example.com" % i) == FALLBACK_DEFER
            lat.append(c.last_latency)
    for i in range(5):
        with d.conn() as c:
            assert c.ask(sender="", recipient="x@bounce.example") == FALLBACK_DEFER, "fresh conn"
            lat.append(c.last_latency)
    latency("redis_down_at_start", lat)
    assert max(lat) < 0.300 + 0.200, "fallback answer slower than timeout + 200 ms"
    t0 = time.monotonic()
    restart_seeded(r)
    real_answers_again(d, "after Redis started")
    record("real answers %.2fs after redis-server was started" % (time.monotonic() - t0))
    assert d.ask(recipient="user@example.com") == DUNNO


def test_redis_down_dunno(redis_factory, backstopd):
    r = redis_factory(start=False)
    d = backstopd(r, wait_redis=False, policy={"on_redis_error": "dunno"})
    lat = []
    with d.conn() as c:
        for i in range(10):
            assert c.ask(recipient="nobody%d@example.com" % i) == DUNNO, "on_redis_error = dunno"
            lat.append(c.last_latency)
    assert max(lat) < 0.5
    restart_seeded(r)
    real_answers_again(d, "after Redis started")


def test_redis_restart(redis, backstopd, latency, record):
    d = backstopd(redis)
    with d.conn() as c:
        assert c.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")
        redis.kill()
        # the first request after the kill may still find the old
        # connection; it must still get an answer (fallback) in time
        lat = []
        for i in range(10):
            assert c.ask(recipient="nobody@example.com") == FALLBACK_DEFER, "answer #%d" % (i + 1)
            lat.append(c.last_latency)
        latency("redis_killed", lat)
        assert max(lat) < 0.5
        time.sleep(0.5)  # let the daemon go through a few reconnect attempts
        d.assert_alive()
        restart_seeded(redis)
        t0 = time.monotonic()
        poll(lambda: c.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com"),
             10, interval=0.1, what="real answers after the Redis restart (same connection)")
        record("real answers %.2fs after the restart" % (time.monotonic() - t0))
        assert c.ask(recipient="user@example.com") == DUNNO
    assert d.ask(recipient="user@example.com") == DUNNO, "new connection after restart"
    # a second, longer outage: the reconnect backoff is capped at 2 s, so
    # after 4 s down the daemon must be back within 2 s (+ slack) of Redis
    redis.kill()
    poll(lambda: d.ask(recipient="user@example.com") == FALLBACK_DEFER, 5, what="fallback again")
    down_until = time.monotonic() + 4.0
    while time.monotonic() < down_until:
        assert d.ask(recipient="user@example.com") == FALLBACK_DEFER, "during a 4 s outage"
        time.sleep(0.25)
    restart_seeded(redis)
    t0 = time.monotonic()
    poll(lambda: d.ask(recipient="user@example.com") == DUNNO, 10, what="real answers again")
    dt = time.monotonic() - t0
    record("back %.2fs after a 4 s outage (backoff cap 2 s)" % dt)
    assert dt < 3.5, "reconnected %.1fs after Redis came back (backoff cap is 2 s)" % dt


def parallel_round(d, nconn, nreq, ask_kw, timeout=10.0):
    """nconn connections in parallel, nreq requests each; ask_kw(k, i) ->
    (request attributes, wanted answer or None). Returns (answers, latencies);
    fails with every connection's error, or a wrong answer."""
    answers, lat, errors = [], [], []
    lock = threading.Lock()

    def worker(k):
        try:
            with d.conn(timeout=timeout) as c:
                for i in range(nreq):
                    kw, want = ask_kw(k, i)
                    a = c.ask(**kw)
                    with lock:
                        answers.append(a)
                        lat.append(c.last_latency)
                    assert want is None or a == want, "conn %d request %d: %r, want %r" % (k, i, a, want)
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append("conn %d: %r" % (k, e))
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(nconn)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, "%d connection(s) failed: %s" % (len(errors), errors[:3])
    return answers, lat


def test_redis_frozen(redis, backstopd, latency, record):
    d = backstopd(redis, redis={"timeout": "300ms"})
    assert d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")
    redis.freeze()
    try:
        answers, lat = parallel_round(
            d, 5, 10, lambda k, i: ({"recipient": "nobody%d-%d@example.com" % (k, i)}, FALLBACK_DEFER))
        latency("redis_frozen", lat)
        assert max(lat) < 0.300 + 0.150, "an answer with Redis frozen took over 450 ms"
        d.assert_alive()
    finally:
        redis.thaw()
    t0 = time.monotonic()
    real_answers_again(d, "after SIGCONT")
    record("real answers %.2fs after SIGCONT" % (time.monotonic() - t0))
    _, lat = parallel_round(d, 5, 4, lambda k, i: ({"recipient": "user@example.com"}, DUNNO))
    latency("after_recovery", lat)
    st = poll(lambda: (lambda s: s if s.get("redis_timeout", 0) + s.get("redis_down", 0) >= 1
                       else None)(redis.stats()), 5, what="stats redis_timeout/redis_down counters")
    record("stats after freeze: %s" % st)


def _restore_domains(c):
    c.delete(P + "domains")
    c.sadd(P + "domains", "example.com", "example.net")


def _restore_users(c):
    c.delete(P + "rcpt:example.com")
    c.sadd(P + "rcpt:example.com", "user", "alice")


WRONG_TYPES = [
    # (id, break it, request, restore)
    ("domains", lambda c: (c.delete(P + "domains"), c.set(P + "domains", "x")),
     {"recipient": "user@example.com"}, _restore_domains),
    ("rcpt", lambda c: (c.delete(P + "rcpt:example.com"), c.set(P + "rcpt:example.com", "x")),
     {"recipient": "user@example.com"}, _restore_users),
    ("ndr", lambda c: c.set(P + "ndr", "x"), {"sender": "", "recipient": "x@bounce.example"},
     lambda c: c.delete(P + "ndr")),
    ("block", lambda c: c.hset(P + "block:192.0.2.31", "a", "b"), {"client_address": "192.0.2.31"},
     lambda c: c.delete(P + "block:192.0.2.31")),
    # the exempt SET is read only for a blocked client
    ("exempt", lambda c: (c.set(P + "exempt", "x"), c.set(P + "block:192.0.2.32", "manual")),
     {"client_address": "192.0.2.32"}, lambda c: c.delete(P + "exempt", P + "block:192.0.2.32")),
    ("ndrcount", lambda c: (c.hset(P + "ndr", "limited.example", "limit 5/1h"),
                            c.hset(P + "ndrcount:limited.example", "a", "b")),
     {"sender": "", "recipient": "x@limited.example"},
     lambda c: c.delete(P + "ndrcount:limited.example", P + "ndr")),
]


def test_redis_wrong_type(redis, backstopd):
    d = backstopd(redis, ratelimit={"invalid_recipients": "2/1m"})
    h = redis.client
    with d.conn() as c:
        for what, breaks, req, restore in WRONG_TYPES:
            breaks(h)
            assert c.ask(**req) == FALLBACK_DEFER, "wrong type: %s" % what
            assert c.last_latency < 0.5, "fallback took %.0f ms" % (c.last_latency * 1000)
            restore(h)
            d.assert_alive()
        # a rate key of the wrong type: the answer does not depend on it
        h.set(P + "rate:192.0.2.33", "x")
        for i in range(4):
            rcpt = "nobody%d@example.com" % i
            assert c.ask(client_address="192.0.2.33", recipient=rcpt) == USER_UNKNOWN(rcpt)
        # the stats hash of the wrong type: decisions go on
        h.set(P + "stats", "x")
        for _ in range(3):
            assert c.ask(recipient="user@example.com") == DUNNO, "valid with a broken stats key"
        time.sleep(1.5)  # let a stats flush hit the broken key
        assert c.ask(recipient="user@example.com") == DUNNO, "after the stats flush error"
        h.delete(P + "stats")
    assert d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com"), "restored"
    d.assert_alive()


def test_redis_tcp(redis_factory, backstopd):
    r = redis_factory(tcp=True)
    seed(r.client)
    d = backstopd(r)
    assert d.ask(recipient="user@example.com") == DUNNO
    assert d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")
    r.kill()
    poll(lambda: d.ask(recipient="user@example.com") == FALLBACK_DEFER, 5, what="fallback, tcp down")
    restart_seeded(r)
    poll(lambda: d.ask(recipient="user@example.com") == DUNNO, 10, interval=0.1, what="tcp recovered")


def test_client_gone_in_flight(redis, backstopd):
    d = backstopd(redis, redis={"timeout": "500ms"})
    assert d.ask(recipient="user@example.com") == DUNNO
    redis.freeze()
    try:
        for i in range(20):
            c = d.conn()
            c.send(request(recipient="nobody%d@example.com" % i))
            if i % 2:
                time.sleep(0.01)
            c.reset()  # RST while the request waits for Redis
        time.sleep(0.7)  # past [redis] timeout: the late answers meet closed connections
        d.assert_alive()
    finally:
        redis.thaw()
    real_answers_again(d, "after SIGCONT")
    # and with a live Redis: clients that vanish right after sending
    for i in range(50):
        c = d.conn()
        c.send(request(recipient="n%d@example.com" % i, client_address="192.0.2.250"))
        c.close()
    assert d.ask(recipient="user@example.com") == DUNNO, "still answering"


def test_concurrency(redis, backstopd, latency):
    d = backstopd(redis, ratelimit={"invalid_recipients": "0"},
                  harvest={"threshold": "0"})
    cases = [({"recipient": "user@example.com"}, DUNNO),
             ({"recipient": "nobody@example.com"}, USER_UNKNOWN("nobody@example.com")),
             ({"recipient": "x@example.net"}, DUNNO),
             ({"sender": "", "recipient": "x@bounce.example"}, NDR_DENY("x@bounce.example")),
             ({"recipient": "x@elsewhere.example"}, DUNNO)]
    _, lat = parallel_round(d, 60, 20, lambda k, i: cases[(k + i) % len(cases)], timeout=20)
    latency("concurrency_60x20", lat)
