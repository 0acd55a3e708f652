"""The basic decisions: known and unknown users, catch-all, unprotected
domains, non-RCPT states, address extensions, case, UTF-8 domains,
report mode; decision log lines."""
import re

import pytest

from support.replies import (BLOCKED_TEXT, DUNNO, NDR_DENY_TEXT, NDR_LIMIT_TEXT, PREFIX,
                             USER_UNKNOWN, USER_UNKNOWN_TEXT, WARN)

DEFAULT_CASES = [
    # (id, request attributes, answer)
    ("known user", {"recipient": "user@example.com"}, DUNNO),
    ("known user alice", {"recipient": "alice@example.com"}, DUNNO),
    ("bounce to a known user of a protected domain (not an NDR case)",
     {"recipient": "postmaster@example.com", "sender": ""}, DUNNO),
    ("bounce to unknown user of protected domain (judged by the recipient)",
     {"recipient": "ghost@example.com", "sender": ""}, USER_UNKNOWN("ghost@example.com")),
    ("catch-all anything@example.net", {"recipient": "anything@example.net"}, DUNNO),
    ("catch-all x+y@example.net", {"recipient": "x+y@example.net"}, DUNNO),
    ("catch-all Whoever@EXAMPLE.NET", {"recipient": "Whoever@EXAMPLE.NET"}, DUNNO),
    ("unprotected someone@elsewhere.example",
     {"recipient": "someone@elsewhere.example", "sender": "a@b.example"}, DUNNO),
    ("unprotected user@sub.example.com",
     {"recipient": "user@sub.example.com", "sender": "a@b.example"}, DUNNO),
    ("unprotected x@example.org", {"recipient": "x@example.org", "sender": "a@b.example"}, DUNNO),
    ("user+ext", {"recipient": "user+anything@example.com"}, DUNNO),
    ("user+ (empty ext)", {"recipient": "user+@example.com"}, DUNNO),
    ("user+a+b", {"recipient": "user+a+b@example.com"}, DUNNO),
    ("unknown+ext", {"recipient": "nobody+tag@example.com"}, USER_UNKNOWN("nobody+tag@example.com")),
    ("'-' is not a delimiter with recipient_delimiter = +",
     {"recipient": "user-tag@example.com"}, USER_UNKNOWN("user-tag@example.com")),
    ("User+Tag@Example.COM", {"recipient": "User+Tag@Example.COM"}, DUNNO),
    ("ALICE@EXAMPLE.COM", {"recipient": "ALICE@EXAMPLE.COM"}, DUNNO),
    ("unknown user, mixed case (reply quotes the recipient as sent)",
     {"recipient": "Nobody@Example.COM"}, USER_UNKNOWN("Nobody@Example.COM")),
    ("catch-all, mixed case domain", {"recipient": "Someone@ExAmPlE.NeT"}, DUNNO),
]


@pytest.mark.parametrize("kw,want", [c[1:] for c in DEFAULT_CASES], ids=[c[0] for c in DEFAULT_CASES])
def test_default_config_answers(shared, kw, want):
    with shared.daemon.conn() as c:
        assert c.ask(**kw) == want


def test_unknown_user_logged_like_smtpd(redis, backstopd):
    d = backstopd(redis)
    assert d.ask(recipient="nobody@example.com", sender="s@sender.example",
                 client_address="192.0.2.1", client_name="mx.sender.example",
                 helo_name="helo.sender.example") == USER_UNKNOWN("nobody@example.com")
    d.wait_log(r"NOQUEUE: reject: RCPT from mx\.sender\.example\[192\.0\.2\.1\]: 550 5\.1\.1 "
               r"<nobody@example\.com>: Recipient address rejected: User unknown; "
               r"from=<s@sender\.example> to=<nobody@example\.com> proto=ESMTP "
               r"helo=<helo\.sender\.example> reason=unknown_user conn=\d+")


def test_log_lines_queue_id_first(redis, backstopd):
    """Decision lines, DUNNO debug lines included, start with the queue id
    (or NOQUEUE) as smtpd's do; conn= comes last."""
    d = backstopd(redis, log={"level": "debug"})
    with d.conn() as c:
        c.ask(queue_id="4XyZ1k2Lq9zB", recipient="user@example.com")
        c.ask(queue_id="4XyZ1k2Lq9zC", recipient="nobody@example.com")
        c.ask(queue_id="", recipient="someone@elsewhere.example")
    d.wait_log(r"backstopd\[\d+\]: 4XyZ1k2Lq9zB: dunno: RCPT from mx\.sender\.example"
               r"\[192\.0\.2\.1\]: from=<someone@sender\.example> to=<user@example\.com> "
               r"reason=valid conn=\d+\n")
    d.wait_log(r"backstopd\[\d+\]: 4XyZ1k2Lq9zC: reject: RCPT from .* reason=unknown_user conn=\d+\n")
    d.wait_log(r"backstopd\[\d+\]: NOQUEUE: dunno: RCPT from .* reason=unprotected conn=\d+\n")
    assert not re.search(r"\]: conn=\d+ ", d.log()), "a decision line starts with conn="


def test_utf8_protected_domain(redis, backstopd):
    """Every spelling of a protected domain that Postfix routes to it is
    checked: an unknown user at the UTF-8 form is refused."""
    d = backstopd(redis)
    redis.client.sadd(PREFIX + "domains", "xn--bcher-kva.example")
    redis.client.sadd(PREFIX + "rcpt:xn--bcher-kva.example", "alice")
    with d.conn() as c:
        for rcpt in ("user@b\u00fccher.example", "user@B\u00dcCHER.example.",
                     "user@bu\u0308cher.example", "user@xn--bcher-kva.example"):
            assert c.ask(recipient=rcpt) == USER_UNKNOWN(rcpt), "unknown user at %s" % rcpt
            assert c.ask(sender="", recipient=rcpt) == USER_UNKNOWN(rcpt), "bounce to %s" % rcpt
        for rcpt in ("alice@b\u00fccher.example", "Alice@B\u00dcCHER.EXAMPLE."):
            assert c.ask(recipient=rcpt) == DUNNO, "known user at %s" % rcpt


def test_catch_all_added_to_a_domain(redis, backstopd):
    d = backstopd(redis)
    with d.conn() as c:
        assert c.ask(recipient="random@example.com") == USER_UNKNOWN("random@example.com")
        redis.client.sadd(PREFIX + "rcpt:example.com", "*")
        assert c.ask(recipient="random@example.com") == DUNNO, "after SADD *"


def test_member_with_a_literal_plus(redis, backstopd):
    redis.client.sadd(PREFIX + "rcpt:example.com", "exact+tag")
    assert backstopd(redis).ask(recipient="exact+tag@example.com") == DUNNO


NON_RCPT_STATES = ["CONNECT", "EHLO", "HELO", "MAIL", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN",
                   "rcpt", "", None]


def test_non_rcpt_state(redis, backstopd):
    d = backstopd(redis, policy={"ndr_default": "deny"})
    redis.client.set(PREFIX + "block:192.0.2.66", "1", ex=3600)
    with d.conn() as c:
        for state in NON_RCPT_STATES:
            assert c.ask(protocol_state=state, recipient="nobody@example.com") == DUNNO, state
            assert c.ask(protocol_state=state, sender="", recipient="x@bounce.example") == DUNNO, state
            assert c.ask(protocol_state=state, client_address="192.0.2.66") == DUNNO, state
        # sanity: the same requests in RCPT state are refused
        assert c.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")


@pytest.mark.parametrize("rcpt,want", [
    ("user-tag@example.com", DUNNO),
    ("user+tag@example.com", DUNNO),
    ("user.tag@example.com", USER_UNKNOWN("user.tag@example.com")),
])
def test_extension_other_delimiters(redis, backstopd, rcpt, want):
    assert backstopd(redis, policy={"recipient_delimiter": "+-"}).ask(recipient=rcpt) == want


def test_report_mode(redis, backstopd):
    d = backstopd(redis, policy={"mode": "report", "ndr_default": "deny"})
    redis.client.set(PREFIX + "block:192.0.2.99", "1", ex=600)
    with d.conn() as c:
        assert c.ask(recipient="nobody@example.com") == \
            WARN("reject", USER_UNKNOWN_TEXT, "nobody@example.com")
        assert c.ask(sender="", recipient="x@bounce.example") == \
            WARN("reject", NDR_DENY_TEXT, "x@bounce.example")
        assert c.ask(client_address="192.0.2.99") == WARN("defer", BLOCKED_TEXT, "user@example.com")
        assert c.ask(recipient="user@example.com") == DUNNO, "valid recipient"
        assert c.ask(recipient="x@elsewhere.example") == DUNNO, "unprotected"
    d.wait_log(r"reject_warning: RCPT from [^ ]*\[192\.0\.2\.1\]: .*User unknown", timeout=5)


def test_report_mode_ndr_limit(redis, backstopd):
    d = backstopd(redis, policy={"mode": "report", "ndr_default": "limit 1/1h"})
    rcpt = "x@limited.example"
    with d.conn() as c:
        assert c.ask(sender="", recipient=rcpt) == DUNNO, "first bounce"
        assert c.ask(sender="", recipient=rcpt) == WARN("reject", NDR_LIMIT_TEXT, rcpt)
