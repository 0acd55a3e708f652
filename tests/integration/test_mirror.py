"""The local mirror (issue 10, [redis] mirror = yes): answers without a
Redis round trip, kept exact by invalidations (CLIENT TRACKING BCAST), and
through a Redis outage until [redis] max_stale.

Every change an admin can make with redis-cli (each key type the mirror
holds) is checked while requests flow: once the first request is answered
the new way, every later one is too. Propagation from the write to the
first request answered the new way is measured with 2 daemons."""
import re
import signal
import threading
import time
import urllib.request

import pytest
import redis as redis_py

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


def mirrored(redis, backstopd, redis_cfg=None, **sections):
    """A daemon with the mirror on, once its mirror answers (loaded)."""
    port = free_port()
    d = backstopd(redis, redis=dict(MIRROR, **(redis_cfg or {})),
                  metrics={"listen": "inet:127.0.0.1:%d" % port}, **sections)
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


class Flow:
    """Requests flowing on one connection in a thread while a test changes
    Redis: every (time, answer) is kept."""

    def __init__(self, daemon, **req):
        self.daemon, self.req = daemon, req
        self.answers = []
        self.stopping = False
        self.thread = threading.Thread(target=self.run)

    def run(self):
        with self.daemon.conn() as c:
            while not self.stopping:
                self.answers.append((time.monotonic(), c.ask(**self.req)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join(10)

    def after(self, t):
        return [a for ts, a in self.answers if ts > t]


BOUNCE = {"sender": "", "recipient": "postmaster@bounce.example", "client_address": "192.0.2.7"}

# (what is changed, Redis commands, the request, its answer before, after)
CHANGES = [
    ("rcpt SREM", [("SREM", "rcpt:example.com", "alice")], {"recipient": "alice@example.com"},
     DUNNO, USER_UNKNOWN("alice@example.com")),
    ("rcpt SADD", [("SADD", "rcpt:example.com", "carol")], {"recipient": "carol@example.com"},
     USER_UNKNOWN("carol@example.com"), DUNNO),
    ("domains SREM", [("SREM", "domains", "example.com")], {"recipient": "carol@example.com"},
     USER_UNKNOWN("carol@example.com"), DUNNO),
    ("domains SADD with a new rcpt set",
     [("SADD", "rcpt:new.example", "bob"), ("SADD", "domains", "new.example")],
     {"recipient": "carol@new.example"}, DUNNO, USER_UNKNOWN("carol@new.example")),
    ("ndr HSET", [("HSET", "ndr", "bounce.example", "allow")], BOUNCE, NDR_DENY, DUNNO),
    ("block SET EX", [("SET", "block:192.0.2.1", "manual", "ex", "60")],
     {"recipient": "user@example.com"}, DUNNO, BLOCKED),
    ("block DEL", [("DEL", "block:192.0.2.9")],
     {"recipient": "user@example.com", "client_address": "192.0.2.9"}, BLOCKED, DUNNO),
    ("exempt SADD", [("SADD", "exempt", "192.0.2.9")],
     {"recipient": "user@example.com", "client_address": "192.0.2.9"}, BLOCKED, DUNNO),
    ("rcpt replaced by a hash (type change)",
     [("DEL", "rcpt:example.com"), ("HSET", "rcpt:example.com", "user", "1")],
     {"recipient": "user@example.com"}, DUNNO, FALLBACK_DEFER),
    ("FLUSHDB", [("FLUSHDB",)], {"recipient": "nobody@example.com"},
     USER_UNKNOWN("nobody@example.com"), DUNNO),
]


def apply(client, cmds):
    """Each (COMMAND, key, args...) as redis-cli would send it."""
    for name, *args in cmds:
        args = [PREFIX + args[0]] + list(args[1:]) if args else []
        client.execute_command(name, *args)


@pytest.mark.parametrize("what,cmds,req,before,after", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_change_is_obeyed_while_requests_flow(redis, backstopd, what, cmds, req, before, after):
    # given a loaded mirror (and a blocked client for the block cases)
    redis.client.set(PREFIX + "block:192.0.2.9", "manual", ex=600)
    d = mirrored(redis, backstopd, ratelimit={"invalid_recipients": "0"},
                 harvest={"threshold": "0"})
    assert d.ask(**req) == before
    with Flow(d, **req) as flow:
        time.sleep(0.05)
        # when the admin changes Redis while requests flow
        t0 = time.monotonic()
        apply(redis.client, cmds)
        poll(lambda: after in flow.after(t0), 5, what="the new answer")
        t1 = next(ts for ts, a in flow.answers if ts > t0 and a == after)
        time.sleep(0.1)
    # then from the first new answer on, every answer is the new one
    later = [a for ts, a in flow.answers if ts >= t1]
    assert len(later) > 10
    assert set(later) == {after}
    # the 50 ms propagation target is a benchmark figure (test_propagation
    # and tests/bench/mirror_bench.py print p50/p99); here only "soon": a
    # loaded 2-core box has stalled this for 60+ ms
    assert t1 - t0 < 1.0, "%s took %.1f ms" % (what, (t1 - t0) * 1000)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def test_propagation_to_two_daemons(redis, backstopd, record):
    # given two daemons of one cluster, mirrors loaded
    daemons = [mirrored(redis, backstopd, name="d%d" % i, ratelimit={"invalid_recipients": "0"},
                        harvest={"threshold": "0"})
               for i in range(2)]
    conns = [d.conn() for d in daemons]
    req = {"recipient": "alice@example.com"}
    samples = []
    try:
        for i in range(40):
            # when alice is removed (then added back) with one write
            removing = i % 2 == 0
            want = USER_UNKNOWN("alice@example.com") if removing else DUNNO
            t0 = time.monotonic()
            (redis.client.srem if removing else redis.client.sadd)(
                PREFIX + "rcpt:example.com", "alice")
            # then each daemon answers the new way soon after
            for c in conns:
                while c.ask(**req) != want:
                    assert time.monotonic() - t0 < 1.0, "not obeyed within 1 s"
                samples.append((time.monotonic() - t0) * 1000)
    finally:
        for c in conns:
            c.close()
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    record("mirror propagation, 2 daemons, %d samples: p50 %.2f ms, p99 %.2f ms, max %.2f ms"
           % (len(samples), p50, p99, max(samples)))
    # every change was obeyed within 1 s (above); the 50 ms target is judged
    # from the recorded figures and tests/bench/mirror_bench.py, not asserted
    # on a shared, loaded box


def test_unknown_recipients_while_redis_is_down_are_not_refused(redis, backstopd):
    # given a loaded mirror that answers through an outage, rate tracking and
    # harvest counting on
    d = mirrored(redis, backstopd, redis_cfg={"max_stale": "30s"},
                 ratelimit={"invalid_recipients": "3/1m"})
    # when Redis dies
    redis.kill()
    with d.conn() as c:
        poll(lambda: metric(d.metrics_port, "backstop_mirror_stale_seconds") > 0, 5,
             what="the mirror to notice")
        # then known users pass from the stale mirror, and recipients it
        # lacks get the fallback, never a 550 (they may have been added since)
        assert c.ask(client_address="192.0.2.60", recipient="user@example.com") == DUNNO
        for i in range(5):
            rcpt = "gone%d@example.com" % i
            assert c.ask(client_address="192.0.2.60", recipient=rcpt) == FALLBACK_DEFER
    # and nothing was refused, so nothing is counted or lost
    assert metric(d.metrics_port, "backstop_unknown_counts_dropped_total") == 0
    assert metric(d.metrics_port, "backstop_clients_blocked_total") == 0


def rate_count(redis, client):
    return redis.client.zcard(PREFIX + "rate:" + client)


def counts_in_flight_at_stop(redis, backstopd, frozen_for):
    """A daemon stopped while one count batch awaits Redis (frozen) and
    another fills behind it: client .71 counted before, .72 in flight, .73
    filling. Redis thaws frozen_for s after the SIGTERM. The daemon's exit
    status, its seconds from SIGTERM to exit (to the thaw if later: 20-ms
    steps), and its log from the stop."""
    d = mirrored(redis, backstopd, redis_cfg={"max_stale": "30s"},
                 ratelimit={"invalid_recipients": "100/1m"}, harvest={"threshold": "0"})
    with d.conn() as c:
        assert c.ask(client_address="192.0.2.71", recipient="a@example.com") == \
            USER_UNKNOWN("a@example.com")
        poll(lambda: rate_count(redis, "192.0.2.71") == 1, 5, what="the first count")
        time.sleep(0.05)  # past the batches' 5-ms gap: the next one goes at once
        redis.freeze()
        try:
            assert c.ask(client_address="192.0.2.72", recipient="b@example.com") == \
                USER_UNKNOWN("b@example.com")
            assert c.ask(client_address="192.0.2.73", recipient="c@example.com") == \
                USER_UNKNOWN("c@example.com")
            off = d.log_size()
            t0 = time.monotonic()
            d.expected_exit = True
            d.signal(signal.SIGTERM)
            took = None
            while time.monotonic() - t0 < frozen_for:
                if took is None and d.proc.poll() is not None:
                    took = time.monotonic() - t0
                time.sleep(0.02)
        finally:
            redis.thaw()
    rc = d.wait_exit(5)
    return rc, took if took is not None else time.monotonic() - t0, d.log()[off:]


def test_counts_in_flight_at_stop_are_written(redis, backstopd):
    # given a batch of counts in flight (Redis frozen) and one filling behind
    # it, when backstopd stops and Redis answers within the linger (500 ms)
    rc, took, log = counts_in_flight_at_stop(redis, backstopd, 0.2)
    # then both batches are written before it exits
    assert rc == 0
    assert rate_count(redis, "192.0.2.72") == 1, "the batch in flight"
    assert rate_count(redis, "192.0.2.73") == 1, "the batch filling behind it"
    assert "not counted" not in log, log


def test_counts_at_stop_wait_no_longer_than_the_linger(redis, backstopd):
    # given the same, when Redis stays frozen past the linger
    rc, took, log = counts_in_flight_at_stop(redis, backstopd, 1.5)
    # then backstopd gives up on the batch filling after 500 ms, says so,
    # and exits while Redis is still frozen (its graceful close waits at
    # most 500 ms more)
    assert rc == 0
    assert 0.45 < took < 1.4, took
    # only the batch filling (.73) is lost: the one in flight (.72) had
    # sent its commands, which Redis runs when it thaws
    assert re.search(r"warning: redis: stopping: 1 unknown recipients not counted", log), log
    assert rate_count(redis, "192.0.2.73") == 0
    assert rate_count(redis, "192.0.2.72") == 1


def test_redis_killed_answers_from_the_mirror_until_max_stale(redis, backstopd):
    # given a loaded mirror with max_stale 2s (no rate tracking or harvest
    # counting: counted, the unknown-user probes sent before the link drops
    # would block the client by chance when their scripts run)
    d = mirrored(redis, backstopd, redis_cfg={"max_stale": "2s"},
                 ratelimit={"invalid_recipients": "0"}, harvest={"threshold": "0"})
    off = d.log_size()
    # when Redis dies
    redis.kill()
    t0 = time.monotonic()
    # then the mirror answers, stale, until max_stale...
    with d.conn() as c:
        poll(lambda: metric(d.metrics_port, "backstop_mirror_stale_seconds") > 0, 2,
             what="the mirror to notice")
        assert c.ask(recipient="user@example.com") == DUNNO
        assert metric(d.metrics_port, "backstop_mirror_stale_answers_total") >= 1
        # but stale data never says a user does not exist: no 550, the fallback
        assert c.ask(recipient="nobody@example.com") == FALLBACK_DEFER
        while c.ask(recipient="user@example.com") == DUNNO:
            assert time.monotonic() - t0 < 5, "still answering from the mirror after 5 s"
            time.sleep(0.05)
        stale_for = time.monotonic() - t0
        # ...then the on_redis_error fallback, as without a mirror
        assert c.ask(recipient="user@example.com") == FALLBACK_DEFER
    assert 1.5 < stale_for < 3.0, stale_for
    log = d.log_since(off)
    assert log.count("invalidations lost") == 1  # logged once
    assert log.count("longer than [redis] max_stale") == 1
    # when Redis is back (empty: a new master lacking the old data)
    redis.start()
    redis.client.sadd(PREFIX + "domains", "example.com")
    redis.client.sadd(PREFIX + "rcpt:example.com", "nobody")
    # then the mirror is re-validated: the old data does not come back
    poll(lambda: d.ask(recipient="user@example.com") == USER_UNKNOWN("user@example.com"), 10,
         what="answers from the new data")
    poll(lambda: metric(d.metrics_port, "backstop_mirror_stale_seconds") == 0, 5,
         what="the mirror exact again")
    assert d.ask(recipient="nobody@example.com") == DUNNO


def test_the_mirror_goes_stale_when_the_link_is_lost_not_at_the_next_request(redis, backstopd):
    # given a loaded mirror and no request after it
    d = mirrored(redis, backstopd, redis_cfg={"max_stale": "1m"})
    off = d.log_size()
    # when Redis dies while nobody asks (nor scrapes the metrics)
    redis.kill()
    t0 = time.monotonic()
    # then the loss is logged by itself, within a tick or two...
    poll(lambda: "invalidations lost" in d.log_since(off), 2, what="the loss logged")
    noticed = time.monotonic() - t0
    time.sleep(1.5)
    # ...and max_stale counts from the loss, not from the first request after it
    stale = metric(d.metrics_port, "backstop_mirror_stale_seconds")
    assert stale >= 1.4, (stale, noticed)
    assert d.ask(recipient="user@example.com") == DUNNO


def test_redis_frozen_answers_from_the_mirror_until_max_stale(redis, backstopd):
    # given a loaded mirror with max_stale 2s (no rate tracking: the ~60
    # unknown-user probes below would otherwise queue rate scripts that Redis
    # runs on thaw, and a block would then answer the last probe)
    d = mirrored(redis, backstopd, redis_cfg={"max_stale": "2s"},
                 ratelimit={"invalid_recipients": "0"}, harvest={"threshold": "0"})
    # when Redis freezes (SIGSTOP)
    redis.freeze()
    t0 = time.monotonic()
    try:
        # then the mirror answers until the freeze is noticed plus max_stale...
        with d.conn() as c:
            while c.ask(recipient="user@example.com") == DUNNO:
                assert time.monotonic() - t0 < 8, "still answering from the mirror after 8 s"
                # (an unknown user is never a 550 from stale data: Redis is
                # asked, and the fallback given while it cannot answer)
                assert c.ask(recipient="nobody@example.com") in (
                    USER_UNKNOWN("nobody@example.com"), FALLBACK_DEFER)
                if metric(d.metrics_port, "backstop_mirror_stale_seconds") > 0:  # noticed
                    assert c.ask(recipient="nobody@example.com") == FALLBACK_DEFER
                time.sleep(0.05)
            answered_for = time.monotonic() - t0
            # ...then the fallback
            assert c.ask(recipient="user@example.com") == FALLBACK_DEFER
    finally:
        redis.thaw()
    assert 2.0 < answered_for < 5.0, answered_for
    # and once Redis answers again, exact again
    poll(lambda: metric(d.metrics_port, "backstop_mirror_stale_seconds") == 0, 10,
         what="the mirror exact again")
    assert d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")


def test_without_the_acl_for_tracking_it_asks_redis(redis, backstopd):
    # given an ACL user that may not SUBSCRIBE (an ACL from before the mirror)
    redis.client.execute_command("ACL", "SETUSER", "bs", "on", ">pw", "~*", "&*", "+@all",
                                 "-subscribe")
    d = backstopd(redis, redis=dict(MIRROR, username="bs", password="pw"))
    # then it says why, once, and answers right from Redis
    d.wait_log(r"subscription to __redis__:invalidate was refused \(ACL", timeout=10)
    time.sleep(1)
    with d.conn() as c:
        assert c.ask(recipient="user@example.com") == DUNNO
        assert c.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")
    log = d.log()
    assert "mirror: tracking on" not in log
    assert log.count("was refused") == 1
    assert log.count("NOPERM") <= 1, "a reconnect loop"


def test_a_subscription_refused_later_never_makes_a_550_from_stale_data(redis, backstopd):
    # given a loaded mirror, as an ACL user that may subscribe
    redis.client.execute_command("ACL", "SETUSER", "bs", "on", ">pw", "~*", "&*", "+@all")
    d = mirrored(redis, backstopd, redis_cfg={"username": "bs", "password": "pw",
                                              "max_stale": "5m"})
    # when the ACL loses the channel (Redis drops the subscriber; the data
    # connection stays) and a user is added right then
    off = d.log_size()
    redis.client.execute_command("ACL", "SETUSER", "bs", "resetchannels")
    redis.client.sadd(PREFIX + "rcpt:example.com", "dave")
    d.wait_log(r"invalidations lost|subscription", offset=off, timeout=10)
    # then the new user is never refused from the stale mirror: Redis answers
    with d.conn() as c:
        for _ in range(20):
            assert c.ask(recipient="dave@example.com") == DUNNO
            time.sleep(0.02)
        assert c.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")
        # and a user removed now is refused at once (Redis answers, not the
        # stale mirror that still holds it)
        redis.client.srem(PREFIX + "rcpt:example.com", "user")
        assert c.ask(recipient="user@example.com") == USER_UNKNOWN("user@example.com")


def test_an_expired_block_ends_and_leaves_the_mirror(redis, backstopd):
    # given a loaded mirror
    d = mirrored(redis, backstopd)
    keys = metric(d.metrics_port, "backstop_mirror_keys")
    # when a block with a TTL is set, then it applies, and ends with its TTL
    redis.client.set(PREFIX + "block:192.0.2.1", "manual", px=700)
    poll(lambda: d.ask(recipient="user@example.com") == BLOCKED, 2, what="the block")
    poll(lambda: d.ask(recipient="user@example.com") == DUNNO, 3, what="the block to expire")
    # and its expiry in Redis (an invalidation) removes it from the mirror
    poll(lambda: metric(d.metrics_port, "backstop_mirror_keys") == keys, 5,
         what="the expired block gone from the mirror")


def test_a_lost_invalidation_connection_is_followed_by_a_reread(redis, backstopd):
    # given a loaded mirror
    d = mirrored(redis, backstopd, ratelimit={"invalid_recipients": "0"},
                 harvest={"threshold": "0"})
    off = d.log_size()
    # when its invalidation connection is killed and a change is made
    # before it is back (the invalidation is lost)
    redis.client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    redis.client.srem(PREFIX + "rcpt:example.com", "alice")
    # then the mirror re-reads on reconnect and obeys the change
    poll(lambda: d.ask(recipient="alice@example.com") == USER_UNKNOWN("alice@example.com"), 3,
         what="the change made while invalidations were lost")
    poll(lambda: metric(d.metrics_port, "backstop_mirror_stale_seconds") == 0, 3,
         what="the mirror exact again")
    # and keeps obeying it once every key is read again (from the mirror)
    time.sleep(0.3)
    before = metric(d.metrics_port, "backstop_mirror_answers_total")
    with d.conn() as c:
        assert {c.ask(recipient="alice@example.com") for _ in range(20)} == {
            USER_UNKNOWN("alice@example.com")}
    assert metric(d.metrics_port, "backstop_mirror_answers_total") >= before + 20
    log = d.log_since(off)
    assert log.count("invalidations lost") == 1
    assert log.count("tracking on, (re)loading") == 1


def test_a_new_prefix_on_reload_is_mirrored_afresh(redis, backstopd):
    # given a loaded mirror, and other data under another prefix
    d = mirrored(redis, backstopd)
    redis.client.sadd("other:domains", "example.com")
    redis.client.sadd("other:rcpt:example.com", "carol", "dave")
    assert d.ask(recipient="carol@example.com") == USER_UNKNOWN("carol@example.com")
    # when [redis] prefix changes with a reload
    off = d.log_size()
    d.write_config(redis={"prefix": "other:"})
    d.sighup()
    d.wait_log("prefix changed: reloading", off)
    # then the answers follow the new keys, and their changes
    poll(lambda: d.ask(recipient="user@example.com") == USER_UNKNOWN("user@example.com"), 3,
         what="answers from the new prefix")
    assert d.ask(recipient="carol@example.com") == DUNNO
    d.wait_log("tracking on", off)
    redis.client.srem("other:rcpt:example.com", "carol")
    poll(lambda: d.ask(recipient="carol@example.com") == USER_UNKNOWN("carol@example.com"), 2,
         what="a change under the new prefix")


def test_a_new_server_on_reload_moves_both_connections(redis_factory, backstopd):
    # given a loaded mirror of redis1, and redis2 with other data
    r1, r2 = redis_factory("redis1"), redis_factory("redis2")
    for r in (r1, r2):
        r.client.sadd(PREFIX + "domains", "example.com")
        r.client.sadd(PREFIX + "rcpt:example.com", "user", "other")
    d = mirrored(r1, backstopd)
    off = d.log_size()
    # when [redis] server changes with a reload
    d.write_config(redis={"server": r2.endpoint})
    d.sighup()
    d.wait_log("tracking on", off, timeout=10)
    # then changes on redis2 reach the mirror (its invalidations, not redis1's)
    r2.client.srem(PREFIX + "rcpt:example.com", "user")
    poll(lambda: d.ask(recipient="user@example.com") == USER_UNKNOWN("user@example.com"), 2,
         what="a change on the new server")
    time.sleep(0.3)
    before = metric(d.metrics_port, "backstop_mirror_answers_total")
    assert d.ask(recipient="user@example.com") == USER_UNKNOWN("user@example.com")
    assert metric(d.metrics_port, "backstop_mirror_answers_total") > before
    assert "CLIENT TRACKING refused" not in d.log()


def test_swapdb_then_client_kill_pubsub_reads_afresh(redis, backstopd):
    # given a loaded mirror, and other data in database 1
    d = mirrored(redis, backstopd)
    db1 = redis_py.Redis(unix_socket_path=redis.sock, db=1, socket_timeout=5)
    db1.sadd(PREFIX + "domains", "example.com")
    db1.sadd(PREFIX + "rcpt:example.com", "carol")
    # when the databases are swapped (no invalidation) and the README's
    # remedy is applied
    redis.client.swapdb(0, 1)
    redis.client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    # then the new data is obeyed
    poll(lambda: d.ask(recipient="carol@example.com") == DUNNO, 10, what="carol from db 0")
    poll(lambda: d.ask(recipient="user@example.com") == USER_UNKNOWN("user@example.com"), 10,
         what="user gone with the swap")
    db1.close()
