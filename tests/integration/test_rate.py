"""Invalid-recipient rate limiting and blocking: the block, exemptions
(config CIDRs and the exempt SET), IPv6 /64 grouping, IPv4-mapped
clients, a limit shared by two instances."""
import signal
import threading
import time

import redis as redispy

from support.policy import Closed
from support.replies import BLOCKED, DUNNO, NDR_LIMIT, PREFIX, USER_UNKNOWN
from support.wait import poll


def rate_count(r, client):
    try:
        return r.client.zcard(PREFIX + "rate:" + client)
    except redispy.ResponseError:
        return -1


def exists(r, key):
    return r.client.exists(PREFIX + key) == 1


def ask_unknown(c, client, n, start=0):
    """n unknown recipients from client: each still gets 550."""
    for i in range(start, start + n):
        rcpt = "nobody%d@example.com" % i
        assert c.ask(client_address=client, recipient=rcpt) == USER_UNKNOWN(rcpt), \
            "invalid #%d from %s" % (i + 1, client)


def test_rate_block(redis, backstopd):
    d = backstopd(redis, ratelimit={"invalid_recipients": "3/1m", "block_time": "1h"})
    client = "192.0.2.10"
    with d.conn() as c:
        ask_unknown(c, client, 3)
        # the count is written fire-and-forget: wait for it before judging
        poll(lambda: rate_count(redis, client) >= 3, 5, what="rate:%s to reach 3" % client)
        assert not exists(redis, "block:" + client), "blocked after only 3 (limit 3)"
        # kept for the longest window: the default [harvest] client_limit's 1h
        assert 60000 < redis.client.pttl(PREFIX + "rate:" + client) <= 3600000, "kept 1h"
        assert c.ask(client_address=client, recipient="user@example.com") == DUNNO
        ask_unknown(c, client, 1, start=3)  # the 4th invalid still gets 550
        poll(lambda: exists(redis, "block:" + client), 5, what="the block key")
        assert 3500 <= redis.client.ttl(PREFIX + "block:" + client) <= 3600, "block_time 1h"
        for kw in ({"recipient": "user@example.com"}, {"recipient": "x@elsewhere.example"},
                   {"sender": "", "recipient": "x@bounce.example"}):
            assert c.ask(client_address=client, **kw) == BLOCKED, kw
        assert c.ask(client_address="192.0.2.11", recipient="user@example.com") == DUNNO, \
            "another client is not blocked"
    d.wait_log(r"blocked", timeout=5)
    d.wait_log(r"NOQUEUE: defer: RCPT from [^ ]*\[192\.0\.2\.10\]: 450 4\.7\.1 ", timeout=5)
    redis.client.delete(PREFIX + "block:" + client)
    assert d.ask(client_address=client, recipient="user@example.com") == DUNNO, "after DEL"


def test_rate_disabled(redis, backstopd):
    d = backstopd(redis, ratelimit={"invalid_recipients": "0"})
    client = "192.0.2.12"
    with d.conn() as c:
        ask_unknown(c, client, 8)
        assert c.ask(client_address=client, recipient="user@example.com") == DUNNO
    time.sleep(0.3)  # give a (wrong) fire-and-forget write time to show up
    assert not exists(redis, "block:" + client)
    assert not exists(redis, "rate:" + client)


def test_exempt_cidr(redis, backstopd):
    d = backstopd(redis, ratelimit={"invalid_recipients": "2/1m",
                                    "exempt": ["198.51.100.0/24", "2001:db8:ffff::/48"]})
    with d.conn() as c:
        for client in ("198.51.100.7", "2001:db8:ffff:1::9"):
            ask_unknown(c, client, 6)
            assert c.ask(client_address=client, recipient="user@example.com") == DUNNO, client
        # even a block key does not refuse an exempt client
        redis.client.set(PREFIX + "block:198.51.100.7", "manual", ex=600)
        assert c.ask(client_address="198.51.100.7") == DUNNO
        # the first exempt line replaced the defaults: 127.0.0.1 is countable now
        for i in range(3):
            c.ask(client_address="127.0.0.5", recipient="nobody%d@example.com" % i)
        poll(lambda: exists(redis, "block:127.0.0.5"), 5,
             what="127.0.0.5 to be blocked (defaults replaced by the exempt lines)")
    time.sleep(0.3)
    keys = [k.decode(errors="replace") for k in redis.keys()]
    counted = [k for k in keys if ("198.51.100" in k and not k.endswith("block:198.51.100.7"))
               or "2001:db8:ffff" in k]
    assert not counted, "exempt clients were counted"


def test_exempt_set(redis, backstopd):
    d = backstopd(redis, ratelimit={"invalid_recipients": "2/1m"})
    redis.client.sadd(PREFIX + "exempt", "192.0.2.77", "2001:db8:5:6::/64")
    with d.conn() as c:
        for client in ("192.0.2.77", "2001:db8:5:6::abcd"):
            ask_unknown(c, client, 6)
            assert c.ask(client_address=client, recipient="user@example.com") == DUNNO, client
        redis.client.set(PREFIX + "block:192.0.2.77", "manual", ex=600)
        assert c.ask(client_address="192.0.2.77") == DUNNO, "exempt (SET) client with a block key"
        redis.client.srem(PREFIX + "exempt", "192.0.2.77")
        assert c.ask(client_address="192.0.2.77") == BLOCKED, "after SREM exempt"
    time.sleep(0.3)
    for k in ("rate:192.0.2.77", "rate:2001:db8:5:6::/64", "block:2001:db8:5:6::/64"):
        assert not exists(redis, k), "exempt client got key %r" % k


def test_ipv6_block(redis, backstopd):
    d = backstopd(redis, ratelimit={"invalid_recipients": "3/1m", "ipv6_prefix": "64"})
    net = "2001:db8:1:2::/64"
    addrs = ["2001:db8:1:2::5", "2001:db8:1:2::6", "2001:0db8:0001:0002:0000:0000:0000:0007",
             "2001:DB8:1:2:AAAA::1"]
    with d.conn() as c:
        for i, a in enumerate(addrs):
            ask_unknown(c, a, 1, start=i)
            if i == 2:
                poll(lambda: rate_count(redis, net) == 3, 5,
                     what="rate:%s to count 3 (all addresses of the /64 together)" % net)
        poll(lambda: exists(redis, "block:" + net), 5, what="block:" + net)
        assert c.ask(client_address="2001:db8:1:2:ffff:ffff:ffff:ffff") == BLOCKED, "same /64"
        assert c.ask(client_address="2001:db8:1:3::5") == DUNNO, "the next /64"
        assert c.ask(client_address="192.0.2.5") == DUNNO, "an IPv4 client"
    keys = [k.decode(errors="replace") for k in redis.keys()]
    assert not [k for k in keys if "2001:db8:1:2:" in k and not k.endswith("::/64")], \
        "per-address keys for an IPv6 /64 client"


def test_ipv4_mapped_client(redis, backstopd):
    d = backstopd(redis, ratelimit={"invalid_recipients": "1/1m"})
    with d.conn() as c:
        c.ask(client_address="192.0.2.40", recipient="nobody1@example.com")
        c.ask(client_address="::ffff:192.0.2.40", recipient="nobody2@example.com")
        poll(lambda: exists(redis, "block:192.0.2.40"), 5,
             what="block:192.0.2.40 (IPv4-mapped IPv6 counted as IPv4)")
        assert c.ask(client_address="::ffff:192.0.2.40") == BLOCKED


def test_two_instances(redis, backstopd):
    a = backstopd(redis, name="A", ratelimit={"invalid_recipients": "3/1m"})
    b = backstopd(redis, name="B", ratelimit={"invalid_recipients": "3/1m"})
    client = "198.51.100.20"
    # invalid recipients split over both instances count together
    with a.conn() as ca, b.conn() as cb:
        ask_unknown(ca, client, 1, start=1)
        ask_unknown(cb, client, 1, start=2)
        ask_unknown(ca, client, 1, start=3)
        poll(lambda: rate_count(redis, client) >= 3, 5, what="rate count 3")
        assert cb.ask(client_address=client, recipient="user@example.com") == DUNNO, "not yet"
        ask_unknown(ca, client, 1, start=4)
        poll(lambda: exists(redis, "block:" + client), 5, what="block key")
        assert cb.ask(client_address=client, recipient="user@example.com") == BLOCKED, \
            "blocked through A, refused by B"
        assert ca.ask(client_address=client, recipient="user@example.com") == BLOCKED
    # the NDR budget is shared too
    redis.client.hset(PREFIX + "ndr", "shared.example", "limit 2/1h")
    got = [x.ask(sender="", recipient="x@shared.example") for x in (a, b, b)]
    assert got == [DUNNO, DUNNO, NDR_LIMIT("x@shared.example")]


def test_every_unknown_recipient_answered_is_counted_across_a_stop(redis, backstopd):
    """Given 4 connections sending unknown recipients from 40 clients as fast
    as they are answered, when backstopd is stopped in the middle, then every
    recipient it answered 550 is in a rate:<client> ZSET (the batches in
    flight and filling at the stop included) and in the domain's harvest
    count, and the stats hash counts as many: nothing is counted twice or
    lost."""
    d = backstopd(redis, ratelimit={"invalid_recipients": "100000/10m"},
                  harvest={"threshold": "100000/10m"})  # counting, never tripped
    answered = [0] * 4
    errors = []

    def send(k):
        try:
            with d.conn() as c:
                i = 0
                while True:
                    rcpt = "stop%d-%d@example.com" % (k, i)
                    got = c.ask(client_address="192.0.2.%d" % (100 + (i * 4 + k) % 40),
                                recipient=rcpt)
                    if got != USER_UNKNOWN(rcpt):
                        errors.append((rcpt, got))
                        return
                    answered[k] += 1
                    i += 1
        except (Closed, OSError):
            return  # the stop closed the connection

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    poll(lambda: sum(answered) >= 400 or errors, 10, what="400 answers")
    d.expected_exit = True
    d.signal(signal.SIGTERM)
    for t in threads:
        t.join(10)
    assert d.wait_exit(5) == 0
    assert not errors, errors
    counted = sum(redis.client.zcard(k) for k in redis.client.scan_iter(PREFIX + "rate:*"))
    assert counted == sum(answered), (counted, answered)
    assert redis.client.zcard(PREFIX + "harvest:example.com") == sum(answered)
    assert int(redis.client.hget(PREFIX + "stats", "unknown_user")) == sum(answered)
