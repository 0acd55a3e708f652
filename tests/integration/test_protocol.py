"""The policy protocol on the wire: its limits (line, attributes, request
size), malformed and hostile input, pipelining, partial writes, CRLF,
half-close, floods. A bad request closes the connection without a byte
and a warning; the server goes on."""
import ipaddress
import re
import socket
import time

import pytest

from support.policy import Closed, request
from support.replies import DUNNO, PREFIX, REPLY_RE, USER_UNKNOWN
from support.wait import poll

GOOD = request()
NATTRS = GOOD.count(b"\n") - 1
UNKNOWN = USER_UNKNOWN("nobody@example.com")


def attr_line(name, total_len):
    """name=xxxx... exactly total_len bytes (without the newline)."""
    return name.encode() + b"=" + b"x" * (total_len - len(name) - 1)


def pad_request(total):
    """A valid request exactly `total` bytes long, including the final "\\n"."""
    need = total - len(GOOD)
    lines, n = [], 0
    while need > 0:
        ln = min(need, 2001)  # a padding line "xpadNN=vvvv\n", newline included
        if need - ln and need - ln < 10:
            ln -= 10
        lines.append(attr_line("xpad%02d" % n, ln - 1) + b"\n")
        need -= ln
        n += 1
    data = GOOD[:-1] + b"".join(lines) + b"\n"
    assert len(data) == total
    return data


def with_attrs(n):
    return GOOD[:-1] + b"".join(b"x%d=1\n" % i for i in range(n - NATTRS)) + b"\n"


ACCEPTED = {
    "line of exactly 2048 bytes": GOOD[:-1] + attr_line("xlong", 2048) + b"\n\n",
    "line of exactly 2048 bytes + CRLF": GOOD[:-1] + attr_line("xlong", 2048) + b"\r\n\n",
    "exactly 100 attributes": with_attrs(100),
    "request of exactly 16384 bytes": pad_request(16384),
    "unknown attributes and empty values": GOOD[:-1] + b"foo=bar\nx_y.z=\nvery_unknown==\n\n",
}
REFUSED = {
    "line without '='": GOOD[:-1] + b"this line has no equals sign\n\n",
    "first line without '='": b"garbage\n" + GOOD,
    "empty attribute name": GOOD[:-1] + b"=value\n\n",
    "line of 2049 bytes": GOOD[:-1] + attr_line("xlong", 2049) + b"\n\n",
    "line of 10000 bytes": GOOD[:-1] + attr_line("xlong", 10000) + b"\n\n",
    "line of 3000 bytes, no newline yet": attr_line("xlong", 3000),
    "101 attributes": with_attrs(101),
    "request of 16385 bytes": pad_request(16385),
    "request of 40000 bytes": pad_request(40000),
    "NUL byte in a value": GOOD.replace(b"sender=someone@sender.example",
                                        b"sender=some\x00one@sender.example"),
    "NUL byte in a name": GOOD[:-1] + b"fo\x00o=bar\n\n",
    "NUL byte alone on a line": GOOD[:-1] + b"\x00\n\n",
    "request=other": request(request="junk_policy"),
    "request=SMTPD_ACCESS_POLICY (case)": request(request="SMTPD_ACCESS_POLICY"),
    "request= empty": request(request=""),
    "no request attribute": request(request=None),
    "HTTP request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "binary junk": bytes(range(1, 256)) * 4 + b"\n\n",
}


@pytest.mark.parametrize("data", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_within_limits_answered(shared, data):
    with shared.daemon.conn() as c:
        assert c.ask_raw(data) == DUNNO


@pytest.mark.parametrize("data", REFUSED.values(), ids=REFUSED.keys())
def test_malformed_closes_with_a_warning(shared, data):
    d = shared.daemon
    off = d.log_size()
    with d.conn() as c:
        c.send(data)
        c.expect_closed(5.0)
    d.wait_log(r"warning: ", offset=off, timeout=5)
    assert d.ask(recipient="nobody@example.com") == UNKNOWN, "fresh connection afterwards"
    d.assert_alive()


def test_good_request_then_junk(shared):
    d = shared.daemon
    off = d.log_size()
    with d.conn() as c:
        c.send(GOOD + b"junk without equals\n\n")
        assert c.read_reply() == DUNNO, "the good request before the junk"
        c.expect_closed(5.0)
    d.wait_log(r"warning: ", offset=off, timeout=5)
    assert d.ask(recipient="nobody@example.com") == UNKNOWN


def test_many_requests_one_connection(shared):
    with shared.daemon.conn() as c:
        for i in range(200):
            if i % 2:
                assert c.ask(recipient="user@example.com") == DUNNO, "request %d" % i
            else:
                assert c.ask(recipient="nobody@example.com", client_address="192.0.2.250") == \
                    UNKNOWN, "request %d" % i
        lines = request(recipient="nobody@example.com").split(b"\n")[:-2]
        assert c.ask_raw(b"\n".join(reversed(lines)) + b"\n\n") == UNKNOWN, "attributes reversed"
        minimal = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@b.example\n"
                   b"recipient=nobody@example.com\nclient_address=192.0.2.250\n\n")
        assert c.ask_raw(minimal) == UNKNOWN, "minimal request"


def test_pipelined(shared):
    with shared.daemon.conn() as c:
        c.send(request(recipient="nobody@example.com") + request(recipient="user@example.com"))
        assert [c.read_reply(), c.read_reply()] == [UNKNOWN, DUNNO]
        # five at once, mixed outcomes
        rcpts = ["user@example.com", "a1@example.com", "x@elsewhere.example", "a2@example.com",
                 "alice@example.com"]
        c.send(b"".join(request(recipient=x) for x in rcpts))
        assert [c.read_reply() for _ in rcpts] == [
            DUNNO, USER_UNKNOWN("a1@example.com"), DUNNO, USER_UNKNOWN("a2@example.com"), DUNNO]
        # a request and a half, then the rest
        second = request(recipient="a3@example.com")
        c.send(request(recipient="user@example.com") + second[:50])
        assert c.read_reply() == DUNNO, "first of a request and a half"
        time.sleep(0.1)
        c.send(second[50:])
        assert c.read_reply() == USER_UNKNOWN("a3@example.com"), "the completed half"


def test_byte_by_byte(shared):
    with shared.daemon.conn() as c:
        c.send_slowly(request(recipient="nobody@example.com"), chunk=1, pause=0.002, every=8)
        assert c.read_reply() == UNKNOWN, "byte-by-byte request"
        c.send_slowly(request(recipient="user@example.com"), chunk=97, pause=0.05)
        assert c.read_reply() == DUNNO, "chunked request with pauses"
        data = request(recipient="nobody2@example.com")
        c.send(data[:-1])
        time.sleep(0.3)
        assert c.is_open(), "connection closed while waiting for the empty line"
        c.send(b"\n")
        assert c.read_reply() == USER_UNKNOWN("nobody2@example.com"), "empty line sent late"


def test_crlf_request(shared):
    with shared.daemon.conn() as c:
        crlf = request(recipient="nobody@example.com").replace(b"\n", b"\r\n")
        assert c.ask_raw(crlf) == UNKNOWN, "CRLF request (the reply has no \\r)"
        assert c.ask_raw(request(recipient="user@example.com").replace(b"\n", b"\r\n")) == DUNNO
        data = request(recipient="alice@example.com", sender="").replace(b"\n", b"\r\n")
        i = data.index(b"\r\n") + 1
        c.send(data[:i])
        time.sleep(0.05)
        c.send(data[i:])
        assert c.read_reply() == DUNNO, "CRLF split between \\r and \\n"


def test_half_close(shared):
    d = shared.daemon
    with d.conn() as c:
        c.send(request(recipient="nobody@example.com") + request(recipient="user@example.com"))
        c.sock.shutdown(socket.SHUT_WR)
        assert [c.read_reply(), c.read_reply()] == [UNKNOWN, DUNNO], "answers after SHUT_WR"
        c.expect_closed(5.0, "connection after the answers")
    with d.conn() as c:
        c.send(GOOD[:100])
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_closed(5.0, "half a request, then EOF")
    assert d.ask(recipient="user@example.com") == DUNNO, "fresh connection"


def test_pipelined_flood(shared):
    """A request followed by ~20 kB more in one write closes the connection;
    nothing overflows; the server goes on."""
    d = shared.daemon
    off = d.log_size()
    payload = GOOD + (b"x=" + b"y" * 60 + b"\n") * 330
    with socket.create_connection(d.addr, timeout=5) as s:
        s.sendall(payload)
        got = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    assert b"action=" not in got, "answers to a flood"
    poll(lambda: re.search("pipelined behind a request|malformed policy request", d.log_since(off)),
         5, what="a warning about the flood")
    assert d.ask(recipient="user@example.com") == DUNNO, "fresh connection after the flood"


# ---------------------------------------------------------------------------
# injection: hostile values in every attribute; keys stay in the schema, the
# log stays one escaped line per event

SCHEMA_RE = re.compile(rb"^backstop:(domains|ndr|exempt|stats|attack|rcpt:.+|block:.+|rate:.+|ndrcount:.+|harvest:.+|known:.+|grey:.+)$", re.S)
NASTY = [
    "a b@example.com", "a b@exa mple.com", " user@example.com", "user@example.com ",
    "<user@example.com>", "user@example.com\r", "us\rer@example.com", "x\x01\x02\x1b[31m@example.com",
    "x\x7f@example.com", "{}@example.com", "x@{}", "{x}@{y}.example", "*@example.com", "x@*", "*",
    "*@*", "@", "", "@example.com", "user@", "user@@example.com", "a@b@example.com",
    "x@example.com.", "x@.example.com", "x@example..com", "x@-example.com", "x@[192.0.2.1]",
    "x@[IPv6:2001:db8::1]", "jürgen@exämple.com", "用户@例子.测试", "x@xn--exmple-cua.com",
    '"john doe"@example.com', '"a@b"@example.com', '"x\\"y"@example.com', '"user"@example.com',
    "x%y@example.com", "x!y@example.com", "user+{tag}@example.com", "user+*@example.com",
    "a" * 129 + "@example.com", "x@" + "a" * 64 + ".example", "x@" + ".".join(["a" * 60] * 5),
    "x@" + "a." * 40 + "example", "u" * 2000, "u" * 1000 + "@" + "d" * 900,
    "x" * 10000 + "@example.com", "user@example.com" + "\xff" * 10, "%s%s%n@example.com",
    "user@example.com\tx", "\\x41@example.com", "x@example.com:6379", "x@ex\u202eample.com",
    b"user@example.com\xff\xfe", b"\xc0\xafx@example.com", "$(id)@example.com", "x@0x7f.0.0.1",
]
CLIENTS = ["192.0.2.1", "192.0.2.1 ", " 192.0.2.1", "192.0.2.1\r", "::ffff:192.0.2.9",
           "2001:db8::1%eth0", "2001:db8::1/64", "999.1.1.1", "1.2.3", "unknown", "", "*", "{x}",
           "192.0.2.1 x", "2001:db8::g", "::", "0.0.0.0", "255.255.255.255", "1.2.3.4:25",
           "[2001:db8::1]", "x" * 3000, "fe80::1%25lo", "2001:db8:" + "1:" * 20 + ":1", "0x7f.1",
           "01.02.03.04", "1.2.3.04", "192.0.2.1\x00"]
SENDERS = ["", "a b@c", "<>", "x" * 5000, "MAILER-DAEMON", "\x1b[0m", "é@é"]
NAMES = ["a b", "x" * 3000, "{}", "*", "\x01", "ünïcödé", ""]


def hostile_requests():
    for v in NASTY:
        for sender in ("", "s@sender.example"):
            yield {"recipient": v, "sender": sender}
        yield {"recipient": "nobody@example.com", "sender": v}
        yield {"recipient": "user@example.com", "client_name": v, "helo_name": v,
               "reverse_client_name": v}
        yield {"recipient": v, "sender": "", "client_address": "198.51.100.3", "queue_id": v[:50]}
        yield {"recipient": v, "protocol_state": v, "protocol_name": v}
    for cl in CLIENTS:
        yield {"client_address": cl, "recipient": "nobody@example.com"}
        yield {"client_address": cl, "recipient": "x@ndr.example", "sender": ""}
        yield {"client_address": cl, "recipient": "user@example.com"}
    for s in SENDERS:
        for n in NAMES:
            yield {"sender": s, "client_name": n, "helo_name": n, "recipient": "n@example.com"}
    # attribute names that are odd but legal
    yield {"recipient": "n@example.com", "x y": "1", "{}": "2", "*": "3", "ü": "4"}


NDRCOUNT_DOMAIN_RE = re.compile(rb"^([a-z0-9_.-]+|\[(ipv6:[0-9a-f:.]+|[0-9.]+)\]|\*)$")


def schema_problems(keys):
    bad = []
    for k in keys:
        if not SCHEMA_RE.match(k):
            bad.append("outside the schema: %r" % k)
            continue
        if any(ch in k for ch in b" \r\n\x00\t") or any(b < 0x20 or b == 0x7f for b in k):
            bad.append("blank/control byte in key: %r" % k)
            continue
        for pfx in (b"backstop:rate:", b"backstop:block:"):
            if k.startswith(pfx):
                client = k[len(pfx):].decode(errors="replace")
                try:
                    (ipaddress.ip_network if "/" in client else ipaddress.ip_address)(client)
                except ValueError:
                    bad.append("client part is not an address: %r" % k)
        # a canonical domain, an address literal as addr.c prints it, or
        # "*": the budget shared by recipients whose domain is unreadable
        if k.startswith(b"backstop:ndrcount:") and not NDRCOUNT_DOMAIN_RE.match(k[18:]):
            bad.append("ndrcount domain not normalised: %r" % k)
    return bad


def test_injection(redis, backstopd, record):
    d = backstopd(redis, ratelimit={"invalid_recipients": "1000/1m"},
                  policy={"ndr_default": "limit 100000/1h"})
    redis.client.hset(PREFIX + "ndr", "*", "limit 100000/1h")
    nreq = nclosed = 0
    replies = []
    c = d.conn()
    try:
        for kw in hostile_requests():
            nreq += 1
            try:
                if not c.send(request(**kw)):
                    raise Closed()
                raw = c.read_raw_reply(timeout=10)
            except Closed as e:  # refusing a hostile request is allowed; half an answer is not
                assert e.partial == b"", "closed after a partial reply %r for %r" % (e.partial, kw)
                nclosed += 1
                c.close()
                c = d.conn()
                continue
            assert REPLY_RE.match(raw), "bad reply %r for %r" % (
                raw, {k: v[:80] for k, v in kw.items()})
            replies.append(raw)
        # a literal "*" local part is not the catch-all
        c.close()
        c = d.conn()
        assert c.ask(recipient="*@example.com") == USER_UNKNOWN("*@example.com")
        assert c.ask(recipient="*+x@example.com") == USER_UNKNOWN("*+x@example.com")
    finally:
        c.close()
    record("injection: %d requests, %d answered, %d closed" % (nreq, len(replies), nclosed))
    assert len(replies) > nreq // 2, "only %d of %d requests were answered" % (len(replies), nreq)
    assert d.ask(recipient="nobody@example.com") == UNKNOWN, "still sane afterwards"
    time.sleep(1.5)  # let fire-and-forget writes and a stats flush land
    problems = schema_problems(redis.keys())
    assert not problems, "; ".join(problems[:8])
    log = d.log_bytes()
    ctrl = sorted({b for b in log if (b < 0x20 and b not in (0x0a, 0x09)) or b == 0x7f})
    assert not ctrl, "daemon log contains raw control bytes %s" % [hex(b) for b in ctrl]
    d.assert_alive()
