"""The NDR (null sender) policy: longest suffix, '*', ndr_default, limits."""

from support.replies import DUNNO, NDR_DENY, NDR_LIMIT, PREFIX

NDR = PREFIX + "ndr"
RCPT = "bounce@a.b.example.org"


def test_ndr_longest_suffix(redis, backstopd):
    d = backstopd(redis, policy={"ndr_default": "allow"})
    h = redis.client
    h.hset(NDR, mapping={"a.b.example.org": "allow", ".b.example.org": "deny",
                         ".example.org": "allow", "*": "deny"})
    # each step removes the entry that decided the step before
    steps = [(None, DUNNO, "exact entry (allow) beats .parent (deny)"),
             ("a.b.example.org", NDR_DENY(RCPT), "longest .parent (.b.example.org deny) beats .example.org"),
             (".b.example.org", DUNNO, ".example.org (allow) beats * (deny)"),
             (".example.org", NDR_DENY(RCPT), "* (deny) beats ndr_default (allow)"),
             ("*", DUNNO, "ndr_default (allow)")]
    with d.conn() as c:
        for removed, want, what in steps:
            if removed:
                h.hdel(NDR, removed)
            assert c.ask(sender="", recipient=RCPT) == want, what
        h.hset(NDR, ".example.org", "deny")
        assert c.ask(sender="", recipient="x@example.org") == DUNNO, \
            ".example.org does not match example.org itself (falls to ndr_default allow)"
        assert c.ask(sender="", recipient="x@deep.sub.example.org") == \
            NDR_DENY("x@deep.sub.example.org"), ".example.org matches deep.sub.example.org"
        assert c.ask(sender="a@b.example", recipient="x@deep.sub.example.org") == DUNNO, \
            "normal sender ignores NDR policy"
        assert c.ask(sender="", recipient="X@Deep.Sub.EXAMPLE.org") == \
            NDR_DENY("X@Deep.Sub.EXAMPLE.org"), "NDR match is case-insensitive on the recipient domain"


def test_ndr_default_deny(redis, backstopd):
    d = backstopd(redis, policy={"ndr_default": "deny"})
    with d.conn() as c:
        assert c.ask(sender="", recipient="x@nowhere.example") == NDR_DENY("x@nowhere.example")
        redis.client.hset(NDR, "nowhere.example", "ALLOW")
        assert c.ask(sender="", recipient="x@nowhere.example") == DUNNO, \
            "exact entry 'ALLOW' (words are case-insensitive)"


def test_ndr_default_limit(redis, backstopd):
    d = backstopd(redis, policy={"ndr_default": "limit 2/1h"})
    rcpt = "x@limited.example"
    with d.conn() as c:
        got = [c.ask(sender="", recipient=rcpt) for _ in range(3)]
    assert got == [DUNNO, DUNNO, NDR_LIMIT(rcpt)]


def test_ndr_limit(redis, backstopd):
    d = backstopd(redis, policy={"ndr_default": "deny"})
    redis.client.hset(NDR, mapping={"example.org": "limit 3/1h", "*": "allow"})
    rcpt = "bounce@example.org"
    with d.conn() as a, d.conn() as b:
        got = [a.ask(sender="", recipient=rcpt), a.ask(sender="", recipient=rcpt),
               b.ask(sender="", recipient="other@EXAMPLE.org"),
               b.ask(sender="", recipient=rcpt), a.ask(sender="", recipient=rcpt)]
        assert got == [DUNNO, DUNNO, DUNNO, NDR_LIMIT(rcpt), NDR_LIMIT(rcpt)], \
            "limit 3/1h across two connections (per domain, not per recipient)"
        assert a.ask(sender="", recipient="x@example.info") == DUNNO, "* allow for another domain"
        assert a.ask(sender="a@b.example", recipient=rcpt) == DUNNO, "normal sender"
    key = PREFIX + "ndrcount:example.org"
    assert redis.client.exists(key) == 1
    assert 0 < redis.client.ttl(key) <= 3600
    redis.client.delete(key)  # deleting the counter resets the budget
    assert d.ask(sender="", recipient=rcpt) == DUNNO, "after DEL ndrcount"
