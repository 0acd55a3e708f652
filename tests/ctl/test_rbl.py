"""backstopctl rbl-check against a private dnsmasq (the dnsmasq fixture)."""
import socket

import pytest

from support.procs import free_port


def test_rbl(env, dnsmasq):
    v6 = ".".join(reversed("20010db8000000000000000000000001"))  # 2001:db8::1 per nibble
    dns = dnsmasq(
        "--local=/zen.example/", "--local=/bl.example/",
        "--address=/2.0.0.127.zen.example/127.0.0.2",
        "--address=/2.0.0.127.bl.example/127.0.0.4",
        "--host-record=2.0.0.127.bl.example,127.0.0.10",
        "--address=/9.9.9.9.zen.example/127.255.255.254",
        "--address=/8.8.8.8.zen.example/10.0.0.1",
        "--address=/%s.zen.example/127.0.0.3" % v6)
    ns = dns.ns

    def rbl(*a):
        return env.ctl("rbl-check", "--nameserver", ns, "-t", "2s", *a)

    r = rbl("127.0.0.2", "--zone", "zen.example", "--zone", "bl.example")
    r.expect(1, out=["127.0.0.2  zen.example  listed (127.0.0.2)",
                          "127.0.0.2  bl.example   listed ("])
    assert "127.0.0.4" in r.out or "127.0.0.10" in r.out, "bl.example answer"
    rbl("127.0.0.1", "--zone", "zen.example", "--zone", "bl.example").expect(0,
               out=["zen.example  not listed", "bl.example   not listed"])
    rbl("2001:db8::1", "2001:db8::2", "--zone", "zen.example").expect(1,
               out=["2001:db8::1  zen.example  listed (127.0.0.3)",
                    "2001:db8::2  zen.example  not listed"])
    rbl("9.9.9.9", "--zone", "zen.example").expect(0,
               out="lookup failed (127.255.255.254: an error code of the list")
    rbl("8.8.8.8", "--zone", "zen.example").expect(0,
               out="lookup failed (10.0.0.1: not a blocklist answer)")
    doc = rbl("127.0.0.2", "127.0.0.1", "--zone", "zen.example", "--zone", "refused.example",
              "--json").json(1, "rbl-check --json")
    res = [(x.get("ip"), x.get("zone"), x.get("status"), x.get("answers"))
           for x in doc.get("results", [])]
    assert res == [("127.0.0.2", "zen.example", "listed", ["127.0.0.2"]),
                   ("127.0.0.2", "refused.example", "failed", []),
                   ("127.0.0.1", "zen.example", "not_listed", []),
                   ("127.0.0.1", "refused.example", "failed", [])], \
        "rbl-check --json results: %r" % res
    assert doc.get("listed") is True and doc.get("failed") is True and \
        all(isinstance(x.get("detail"), str) for x in doc.get("results", [])), \
        "rbl-check --json: %r" % doc
    doc = rbl("127.0.0.1", "--zone", "zen.example", "--json").json(0, "rbl-check --json, clean")
    assert doc.get("listed") is False and doc.get("failed") is False, "clean: %r" % doc
    rbl("127.0.0.1", "--zone", "refused.example").expect(0, out="lookup failed (")
    rbl("127.0.0.1", "--zone", "refused.example", "--strict").expect(1, out="lookup failed")
    env.ctl("rbl-check", "127.0.0.2", "--zone", "zen.example", "--nameserver",
                       "127.0.0.1:%d" % free_port(socket.SOCK_DGRAM), "-t", "1s").expect(0,
               out="lookup failed (")
    assert env.ctl.last.seconds < 10, "dead nameserver: gave up in %.1fs" % env.ctl.last.seconds
    env.ctl("rbl-check").expect(2, err="missing operands")
    env.ctl("rbl-check", "1.2.3.x").expect(2, err="not an IP address")
    rbl("127.0.0.2", "--zone", "bad..zone").expect(2)
    env.ctl("rbl-check", "127.0.0.2", "--nameserver", "[::1]:53").expect(2)
    # rbl-check does not need the config or Redis
    env.ctl("rbl-check", "127.0.0.1", "--zone", "zen.example", "--nameserver", ns,
                       config="/nonexistent.ini").expect(0, out="not listed")
    env.ctl("rbl-check", "--help").expect(0, out="zen.spamhaus.org, bl.spamcop.net")


# A list answers with a listing and one of its error codes at once: the
# error code makes the lookup failed wherever it is among the answers, and
# a failed result lists no answers. dnsmasq sends two --address records of
# one name in a fixed order: each name below gets one order (checked).
MIXED = {"3.0.0.127": ["127.0.0.10", "127.255.255.254"],
         "4.0.0.127": ["127.255.255.254", "127.0.0.10"]}


def test_rbl_error_code_among_answers(env, dnsmasq):
    dns = dnsmasq("--local=/mix.example/",
                  *["--address=/%s.mix.example/%s" % (name, a)
                    for name, answers in MIXED.items() for a in reversed(answers)])
    orders = {name: dns.a(name + ".mix.example") for name in MIXED}
    assert sorted(map(tuple, orders.values())) == sorted(map(tuple, MIXED.values())), \
        "dnsmasq sends both orders: %r" % orders
    for name in MIXED:
        ip = ".".join(reversed(name.split(".")))
        r = env.ctl("rbl-check", ip, "--zone", "mix.example", "--nameserver", dns.ns, "-t", "2s")
        r.expect(0, out="lookup failed (127.255.255.254: an error code of the list",
                 not_out="listed (", what="answers %s" % orders[name])
        doc = env.ctl("rbl-check", ip, "--zone", "mix.example", "--nameserver", dns.ns, "-t", "2s",
                      "--json").json(0, "rbl-check --json, answers %s" % orders[name])
        res = doc.get("results", [{}])[0]
        assert (res.get("status"), res.get("answers")) == ("failed", []) and \
            doc.get("listed") is False and doc.get("failed") is True, \
            "answers %s: a failed result lists no answers: %r" % (orders[name], doc)


@pytest.mark.parametrize("ip,zone_len", [
    ("2001:db8::1", 190),   # 64 + 190 = 254 characters
    ("192.0.2.1", 244),     # 10 + 244 = 254
])
def test_rbl_name_too_long(env, ip, zone_len):
    """A query name over 253 characters (255 octets on the wire) cannot be
    sent: rbl-check says so, and asks nobody."""
    labels, left = [], zone_len
    while left > 0:  # labels of 63 (the most), then what is left
        labels.append("z" * min(63, left))
        left -= len(labels[-1]) + 1
    zone = ".".join(labels)
    assert len(zone) == zone_len, zone
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:  # a server that hears
        server.bind(("127.0.0.1", 0))
        ns = "127.0.0.1:%d" % server.getsockname()[1]
        env.ctl("rbl-check", ip, "--zone", zone, "--nameserver", ns, "-t", "1s").expect(0,
                out="lookup failed (name too long)")
        doc = env.ctl("rbl-check", ip, "--zone", zone, "--nameserver", ns, "-t", "1s",
                      "--strict", "--json").json(1, "rbl-check --json --strict, name too long")
        assert [(x.get("status"), x.get("answers"), x.get("detail"))
                for x in doc.get("results", [])] == \
            [("failed", [], "lookup failed (name too long)")], "name too long: %r" % doc
        server.setblocking(False)
        try:
            got = server.recv(4096)
        except BlockingIOError:
            got = None
        assert got is None, "a query was sent: %r" % got
