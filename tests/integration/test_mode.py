"""Per-domain mode at runtime (issue 11): the backstop:mode HASH switched
with redis-cli applies to the very next request on every backstopd of a
cluster, without a reload; NDR entries with a " report" suffix; the
would-reject counts in backstop:wouldreject, `backstopctl stats --domain`
and `backstopctl domain list`.

Runs with the local mirror on (the default) and with
BACKSTOP_TEST_MIRROR=no: the answers must be the same."""
import time

import pytest

from support.replies import (BLOCKED, DUNNO, NDR_DENY_TEXT, NDR_LIMIT_TEXT, PREFIX,
                             USER_UNKNOWN, USER_UNKNOWN_TEXT, BLOCKED_TEXT, WARN, action)
from support.metrics import metric
from support.procs import free_port
from support.wait import poll

MODE = PREFIX + "mode"
WOULDREJECT = PREFIX + "wouldreject"
NO_RATE = {"invalid_recipients": "0"}
UNKNOWN = "nobody@example.com"
BOUNCE = {"sender": "", "client_address": "192.0.2.7"}


def hget(redis, key, field):
    v = redis.client.hget(key, field)
    return v.decode() if v is not None else None


def hgetall(redis, key):
    return {k.decode(): v.decode() for k, v in redis.client.hgetall(key).items()}


def unknown_user_answer(mode):
    return {"enforce": USER_UNKNOWN(UNKNOWN), "report": WARN("reject", USER_UNKNOWN_TEXT, UNKNOWN),
            "off": DUNNO}[mode]


@pytest.fixture
def cluster(redis, backstopd):
    """Two backstopd of one cluster on one private Redis, rate limit off
    (the unknown users asked for must not block the client)."""
    return [backstopd(redis, name="d%d" % i, ratelimit=NO_RATE) for i in range(2)]


def test_domain_mode_switch_applies_to_the_next_request_on_both(redis, cluster):
    # given two daemons with open connections, answering as enforce
    conns = [d.conn() for d in cluster]
    try:
        for c in conns:
            assert c.ask(recipient=UNKNOWN) == USER_UNKNOWN(UNKNOWN)
            assert c.ask(recipient="user@example.com") == DUNNO
        for mode in ("report", "off", "enforce", "report", "enforce"):
            # when the admin switches example.com with redis-cli
            redis.client.hset(MODE, "example.com", mode)
            # then the very next request on each daemon answers the new way
            for c in conns:
                assert c.ask(recipient=UNKNOWN) == unknown_user_answer(mode), mode
                assert c.ask(recipient="user@example.com") == DUNNO
                # another protected domain keeps [policy] mode
                assert c.ask(recipient="x@example.net") == DUNNO
        # and HDEL gives [policy] mode back
        redis.client.hset(MODE, "example.com", "off")
        redis.client.hdel(MODE, "example.com")
        for c in conns:
            assert c.ask(recipient=UNKNOWN) == USER_UNKNOWN(UNKNOWN)
    finally:
        for c in conns:
            c.close()


def test_off_counts_nothing(redis, backstopd):
    # given a daemon with the rate limit on (2 invalid recipients)
    d = backstopd(redis, ratelimit={"invalid_recipients": "2/10m"})
    redis.client.hset(MODE, "example.com", "off")
    # when unknown users of an "off" domain are asked for
    for _ in range(4):
        assert d.ask(recipient=UNKNOWN) == DUNNO
    # then the client was not counted, let alone blocked
    redis.client.hdel(MODE, "example.com")
    assert d.ask(recipient=UNKNOWN) == USER_UNKNOWN(UNKNOWN)
    assert not redis.client.exists(PREFIX + "block:192.0.2.1")
    poll(lambda: hget(redis, PREFIX + "stats", "mode_off") == "4", 5,
         what="mode_off counted in the stats hash")


def test_star_entry(redis, cluster):
    # "*" is the runtime switch for every recipient without an entry of its own
    redis.client.hset(MODE, "*", "report")
    for d in cluster:
        assert d.ask(recipient=UNKNOWN) == WARN("reject", USER_UNKNOWN_TEXT, UNKNOWN)
        # a bounce to a remote domain (ndr_default deny)
        assert d.ask(recipient="x@remote.example", **BOUNCE) == \
            WARN("reject", NDR_DENY_TEXT, "x@remote.example")
    # a protected domain's own entry beats "*"; remote domains follow "*" only
    redis.client.hset(MODE, "example.com", "enforce")
    redis.client.hset(MODE, "remote.example", "enforce")
    for d in cluster:
        assert d.ask(recipient=UNKNOWN) == USER_UNKNOWN(UNKNOWN)
        assert d.ask(recipient="x@remote.example", **BOUNCE).startswith("action=WARN would reject")
    redis.client.hset(MODE, "*", "off")
    for d in cluster:
        assert d.ask(recipient="x@remote.example", **BOUNCE) == DUNNO
        assert d.ask(recipient=UNKNOWN) == USER_UNKNOWN(UNKNOWN)
    # a blocked client to a report domain: WARN would defer
    redis.client.hset(MODE, "example.com", "report")
    redis.client.set(PREFIX + "block:192.0.2.1", "manual", ex=600)
    for d in cluster:
        assert d.ask(recipient="user@example.com") == \
            WARN("defer", BLOCKED_TEXT, "user@example.com")
    redis.client.hset(MODE, "*", "enforce")
    for d in cluster:
        assert d.ask(recipient="x@remote.example", sender="a@b.example") == BLOCKED


def test_bad_value_is_ignored_and_warned(redis, backstopd):
    d = backstopd(redis, ratelimit=NO_RATE)
    off = d.log_size()
    redis.client.hset(MODE, "example.com", "enforced")
    redis.client.hset(MODE, "*", "report")
    # the value is skipped: "*" decides
    assert d.ask(recipient=UNKNOWN) == WARN("reject", USER_UNKNOWN_TEXT, UNKNOWN)
    assert d.ask(recipient=UNKNOWN) == WARN("reject", USER_UNKNOWN_TEXT, UNKNOWN)
    d.wait_log(r'backstop:mode field "example\.com" has the value "enforced", which is no mode '
               r'\(want enforce, report or off\): ignored, the mode is report from \*', off)
    # at most one warning a minute
    assert d.log_since(off).count("which is no mode") == 1


def test_a_value_too_long_to_be_a_mode_is_ignored_even_when_it_starts_with_one(
        redis, backstopd, backstopctl):
    d = backstopd(redis, ratelimit=NO_RATE)
    backstopctl.config = d.conf_path
    off = d.log_size()
    # given a 27-byte value whose first 15 bytes, blanks trimmed, are "off"
    redis.client.hset(MODE, "example.com", "off            until friday")
    # then it is no mode: the config's enforce refuses, and a warning says so
    assert d.ask(recipient=UNKNOWN) == USER_UNKNOWN(UNKNOWN)
    d.wait_log(r'backstop:mode field "example\.com" has the value "off(\\x20){12}\.\.\.", '
               r'which is no mode', off)
    r = backstopctl("domain", "mode", "example.com")
    r.expect(0, out=["enforce"])
    doc = backstopctl("--json", "domain", "mode", "example.com").json(0)
    assert doc["mode"] == "enforce" and doc["field"].endswith("..."), doc
    # a 15-byte one is read whole
    redis.client.hset(MODE, "example.com", "off            ")
    poll(lambda: d.ask(recipient=UNKNOWN) == DUNNO, 5, what="mode off")


def test_ndr_report_suffixes(redis, cluster, backstopctl):
    redis.client.hset(PREFIX + "ndr", "deny.example", "deny report")
    redis.client.hset(PREFIX + "ndr", "limit.example", "limit 1/1h report")
    redis.client.hset(PREFIX + "ndr", "strict.example", "deny")
    d0, d1 = cluster
    off = d0.log_size()
    # deny report: logged and counted as a refusal, the bounce passes
    assert d0.ask(recipient="a@deny.example", **BOUNCE) == \
        WARN("reject", NDR_DENY_TEXT, "a@deny.example")
    d0.wait_log(r"reject_warning: .* reason=ndr_deny ndr_entry=deny\.example", off)
    # limit report: within the (cluster-wide) budget DUNNO, then WARN
    assert d0.ask(recipient="a@limit.example", **BOUNCE) == DUNNO
    assert d1.ask(recipient="b@limit.example", **BOUNCE) == \
        WARN("reject", NDR_LIMIT_TEXT, "b@limit.example")
    # an entry without it still refuses
    assert d1.ask(recipient="a@strict.example", **BOUNCE) == action(NDR_DENY_TEXT)
    # the counts reach Redis with the stats flush, summed over the cluster
    poll(lambda: hgetall(redis, WOULDREJECT) == {"deny.example": "1", "limit.example": "1"},
         5, what="the would-reject counts in Redis")
    backstopctl.config = d0.conf_path
    backstopctl("stats", "--domain", "limit.example").expect(0, out=[
        "domain:        limit.example (not protected)", "would-reject:  1"])


def test_would_reject_counts_in_redis_and_backstopctl(redis, cluster, backstopctl):
    # given example.com in report mode on a cluster of two
    backstopctl.config = cluster[0].conf_path
    backstopctl("domain", "mode", "example.com", "report").expect(0, out=[
        "example.com: report (from backstop:mode field example.com)"])
    # when both daemons answer unknown users of it (and known ones)
    for i, d in enumerate(cluster):
        for j in range(3 + i):
            assert d.ask(recipient="u%d@example.com" % j) == \
                WARN("reject", USER_UNKNOWN_TEXT, "u%d@example.com" % j)
        assert d.ask(recipient="user@example.com") == DUNNO
    # then the cluster-wide count appears after the flush: 3 + 4
    poll(lambda: hget(redis, WOULDREJECT, "example.com") == "7", 5,
         what="wouldreject example.com = 7")
    # and backstopctl shows it
    backstopctl("stats", "--domain", "example.com").expect(0, out=[
        "mode:          report (from backstop:mode field example.com)", "would-reject:  7",
        "users:         3"])
    doc = backstopctl("stats", "--domain", "example.com", "--json").json(0)
    assert (doc["mode"], doc["mode_source"], doc["would_reject"]) == ("report", "own", 7), doc
    backstopctl("domain", "list").expect(0, out=[
        "example.com  3 users; mode report (own), 7 would-reject",
        "example.net  catch-all (1 member); mode enforce (config), 0 would-reject"])
    doc = backstopctl("domain", "list", "--json").json(0)
    assert doc["domains"][0] == {"domain": "example.com", "users": 3, "catch_all": False,
                                 "mode": "report", "mode_source": "own", "would_reject": 7}, doc
    # back to enforce: refused, nothing more counted
    backstopctl("domain", "mode", "example.com", "enforce").expect(0)
    for d in cluster:
        assert d.ask(recipient=UNKNOWN) == USER_UNKNOWN(UNKNOWN)
    poll(lambda: hget(redis, PREFIX + "stats", "unknown_user") == "9", 5,
         what="the stats flush")
    assert hget(redis, WOULDREJECT, "example.com") == "7"


def test_check_predicts_the_mode(redis, backstopd, backstopctl):
    d = backstopd(redis, ratelimit=NO_RATE)
    backstopctl.config = d.conf_path
    redis.client.hset(MODE, "example.com", "report")
    r = backstopctl("check", "--sender", "a@b.example", "--recipient", UNKNOWN,
                    "--client", "192.0.2.1")
    r.expect(0, out=["mode:      report (from backstop:mode field example.com)",
                     "only logged and counted in backstop:wouldreject",
                     "WARN would reject: 550 5.1.1"])
    doc = backstopctl("check", "--sender", "a@b.example", "--recipient", UNKNOWN,
                      "--client", "192.0.2.1", "--json").json(0)
    assert (doc["explanation"]["mode"], doc["explanation"]["mode_source"],
            doc["explanation"]["would_reject"], doc["explanation"]["matches"]) == \
        ("report", "own", True, True), doc
    redis.client.hset(MODE, "example.com", "off")
    backstopctl("check", "--sender", "a@b.example", "--recipient", UNKNOWN,
                "--client", "192.0.2.1").expect(0, out=["rule:      mode_off", "answer:    DUNNO"])


def test_would_reject_table_overflow_is_counted(redis, backstopd):
    """More recipient domains with would-rejects within one stats flush than
    the pending table holds (BS_WOULDREJECT_PENDING_MAX, 64): the rest are
    dropped, counted and warned about; nothing is lost unaccounted."""
    port = free_port()
    d = backstopd(redis, ratelimit=NO_RATE, metrics={"listen": "inet:127.0.0.1:%d" % port})
    redis.client.hset(MODE, "*", "report")  # bounces to remote domains: ndr_default deny, reported
    n = 400
    t0 = time.monotonic()
    with d.conn() as c:
        for i in range(n):
            assert c.ask(recipient="x@r%d.example" % i, **BOUNCE).startswith(
                "action=WARN would reject")
    elapsed = time.monotonic() - t0
    poll(lambda: metric(port, "backstop_would_reject_total") == n, 5, what="all counted")

    def in_redis():
        return sum(int(v) for v in hgetall(redis, WOULDREJECT).values())
    dropped = metric(port, "backstop_would_reject_dropped_total")
    poll(lambda: in_redis() + dropped == n, 5, what="the flushed counts")
    assert all(v == "1" for v in hgetall(redis, WOULDREJECT).values())
    if elapsed < 6:  # at most 7 flushes of 64 domains: some had to be dropped
        assert dropped > 0, (dropped, elapsed)
        d.wait_log(r"would-reject counts of more than 64 domains within one flush: \d+ counts "
                   r"not added to backstop:wouldreject")
        assert d.log().count("would-reject counts of more than") == 1  # once a minute
