"""The NDR (null sender) policy: longest suffix, '*', ndr_default, limits;
address literals, UTF-8 domains and recipients whose domain cannot be read."""
import re

from support.metrics import metric
from support.procs import free_port
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


def test_ndr_star_literals_and_utf8(redis, backstopd):
    """'ndr * deny' decides bounces to address literals and UTF-8 domains
    as to any remote domain (ndr_default allow, so '*' is what decides);
    literals can be named exactly, UTF-8 domains by their A-label."""
    d = backstopd(redis, policy={"ndr_default": "allow"})
    redis.client.hset(NDR, "*", "deny")
    rcpts = ("x@remote.example", "x@[192.0.2.5]", "x@[IPv6:2001:db8::1]",
             "user@b\u00fccher.example", "user@B\u00dcCHER.Example.")
    with d.conn() as c:
        for rcpt in rcpts:
            assert c.ask(sender="", recipient=rcpt) == NDR_DENY(rcpt), "'*' deny, bounce to %s" % rcpt
        redis.client.hset(NDR, mapping={"[192.0.2.5]": "allow", "[ipv6:2001:db8::1]": "allow",
                                        "xn--bcher-kva.example": "allow"})
        assert c.ask(sender="", recipient="x@[192.0.2.5]") == DUNNO, "exact literal entry (allow)"
        assert c.ask(sender="", recipient="x@[IPv6:2001:DB8:0::1]") == DUNNO, \
            "exact IPv6 literal entry, another spelling"
        assert c.ask(sender="", recipient="user@B\u00dcCHER.example") == DUNNO, "A-label entry (allow)"
        assert c.ask(sender="", recipient="x@[192.0.2.6]") == NDR_DENY("x@[192.0.2.6]"), \
            "another literal: '*'"
    d.wait_log(r"NOQUEUE: reject: RCPT from [^ ]+: 550 5\.7\.1 <x@\[192\.0\.2\.6\]>: .* "
               r"reason=ndr_deny ndr_entry=\* conn=\d+")


LATIN1 = b"x@b\xfccher.example"  # not UTF-8


def test_ndr_unreadable_failsafe(redis, backstopd):
    """A bounce whose recipient domain cannot be read gets what '*' gives
    (deny here), is logged (rate-limited warning) and counted."""
    port = free_port()
    d = backstopd(redis, policy={"ndr_default": "allow"},
                  metrics={"listen": "inet:127.0.0.1:%d" % port})
    redis.client.hset(NDR, "*", "deny")
    with d.conn() as c:
        assert c.ask(sender="", recipient=LATIN1) == NDR_DENY(None), "Latin-1 domain, null sender"
        assert metric(port, "backstop_ndr_unreadable_total") == 1, "unreadable counter, first"
        assert c.ask(sender="", recipient="x@[192.0.2.256]") == NDR_DENY(None), "bad literal"
        assert c.ask(sender="", recipient="x@bad..example") == NDR_DENY(None), "empty label"
        # not a bounce, or unqualified (local): not the NDR policy's business
        assert c.ask(sender="s@sender.example", recipient=LATIN1) == DUNNO, "normal sender"
        assert c.ask(sender="", recipient="postmaster") == DUNNO, "unqualified postmaster"
    assert metric(port, "backstop_ndr_unreadable_total") == 3, "unreadable counter"
    d.wait_log(r"warning: NOQUEUE: bounce to a recipient whose domain cannot be read: "
               r"<x@b\\xfccher\.example>: .*\(1 such since the last warning\)")
    d.wait_log(r"reason=ndr_deny ndr_entry=\* recipient=unreadable conn=\d+")
    assert d.log().count("whose domain cannot be read") == 1, "the warning is not rate-limited"
    # '*' allow: they pass, still counted
    redis.client.hset(NDR, "*", "allow")
    assert d.ask(sender="", recipient=LATIN1) == DUNNO, "'*' allow"
    assert metric(port, "backstop_ndr_unreadable_total") == 4, "unreadable counter after allow"


EXPLAIN_LITERALS = [("x@[192.0.2.5]", r"550 5\.7\.1 .*reason ndr_deny"),
                    ("x@[192.0.2.7]", r"DUNNO \(reason ndr_allow\)"),
                    ("x@[IPv6:2001:db8::1]", r"x@\[ipv6:2001:db8::1\] gets: 550 5\.7\.1"),
                    ("user@b\u00fccher.example", r"user@xn--bcher-kva\.example gets: 550 5\.7\.1")]


def test_ctl_ndr_explain_literal(redis, backstopd, backstopctl):
    """backstopctl ndr explain reads address literals and UTF-8 domains as
    the daemon does."""
    d = backstopd(redis)
    backstopctl.config = d.conf_path
    redis.client.hset(NDR, "*", "deny")
    r = backstopctl("ndr", "set", "[IPv4:192.0.2.7]", "allow")
    assert r.rc != 0, "ndr set took a literal with an unknown tag: %r" % r
    backstopctl("ndr", "set", "[192.0.2.7]", "allow").expect(0)
    assert redis.client.hget(NDR, "[192.0.2.7]") == b"allow", "the literal entry as stored"
    for rcpt, want in EXPLAIN_LITERALS:
        r = backstopctl("ndr", "explain", rcpt).expect(0)
        assert re.search(want, r.out), "ndr explain %s: %r" % (rcpt, r)
