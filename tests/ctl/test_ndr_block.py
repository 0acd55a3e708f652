"""backstopctl ndr set/del/list/explain, block add/del/list, client, stats;
their --json documents."""
from support.ctl import fields

def test_ndr(env):
    env.ctl("ndr", "set", "*", "deny").expect(0, out="ndr * = deny (new)")
    env.ctl("ndr", "set", ".Partner.example", "ALLOW").expect(0,
               out="ndr .partner.example = allow (new)", err="subdomains of partner.example")
    env.ctl("ndr", "set", "lists.example.org", "limit", "10/60m").expect(0,
               out="ndr lists.example.org = limit 10/1h (new)")
    env.ctl("ndr", "set", "lists.example.org", "limit 5/1d").expect(0,
               out="= limit 5/1d (was limit 10/1h)")
    for bad in (["x.org", "limit", "0/1h"], ["x.org", "maybe"], ["x.org", "limit", "5/500ms"],
                ["..x", "deny"], ["x.org"]):
        env.ctl("ndr", "set", *bad).expect(2, what="ndr set %s" % bad)
    assert env.rcli("HGET", "backstop:ndr", "lists.example.org") == "limit 5/1d", "stored"
    assert env.rcli("HEXISTS", "backstop:ndr", "x.org") == "0", "bad rules not stored"
    env.rcli("HSET", "backstop:ndr", "typo.example", "alow")
    r = env.ctl("ndr", "list")
    r.expect(0, out=["typo.example            alow   <- not a rule",
                          "ndr_default ([policy])  deny"])
    lines = r.out.split("\n")
    assert [l.split()[0] for l in lines[:4]] == [
        "lists.example.org", ".partner.example", "typo.example", "*"], "ndr list order"

    env.ctl("ndr", "explain", "A.B.partner.example").expect(0,
               out=["a.b.partner.example          -", ".b.partner.example           -",
                    ".partner.example             allow          <- decides",
                    "result: allow (from .partner.example)", "gets: DUNNO (reason ndr_allow)"])
    doc = env.ctl("ndr", "explain", "--json", "A.B.partner.example").json(0)
    fields(doc, {"domain": "a.b.partner.example", "recipient": "postmaster@a.b.partner.example",
                 "ndr_default": {"action": "deny", "limit": None, "period_ms": None, "report": False},
                 "winner": ".partner.example", "winner_unusable": False,
                 "rule": {"action": "allow", "limit": None, "period_ms": None, "report": False},
                 "budget": None, "protected": False, "action": "DUNNO", "reason": "ndr_allow"},
           "ndr explain --json")
    assert [(x.get("field"), x.get("value")) for x in doc.get("candidates", [])] == [
        ("a.b.partner.example", None), (".b.partner.example", None),
        (".partner.example", "allow"), (".example", None), ("*", "deny")], \
        "ndr explain --json candidates: %r" % doc.get("candidates")
    env.ctl("ndr", "explain", "partner.example").expect(0,
               out=["*                            deny           <- decides",
                    "reason ndr_deny"], not_out=".partner.example")
    env.ctl("ndr", "explain", "typo.example").expect(0,
               out=["first set, but not a rule", "ndr_default ([policy])       deny           "
                    "<- decides", "result: deny (from ndr_default)"])
    env.ctl("ndr", "explain", "someone@lists.example.org").expect(0,
               out=["limit 5/1d", "none used yet", "reason ndr_under_limit"])
    env.rcli("SET", "backstop:ndrcount:lists.example.org", "5", "EX", "600")
    env.ctl("ndr", "explain", "lists.example.org").expect(0,
               out=["5 of 5 used in this period", "the next bounce is refused",
                    "reason ndr_limit", "Too many delivery status notifications"])
    doc = env.ctl("ndr", "explain", "--json", "lists.example.org").json(0)
    fields(doc, {"rule": {"action": "limit", "limit": 5, "period_ms": 86400000, "report": False},
                 "winner": "lists.example.org", "reason": "ndr_limit"}, "ndr explain --json, limit")
    budget = doc.get("budget") or {}
    assert budget.get("used") == 5 and budget.get("limit") == 5 and \
        0 < budget.get("ttl_ms", 0) <= 600000, "budget: %r" % budget
    assert doc.get("action", "").startswith("550 5.7.1 Too many"), "action: %r" % doc
    env.ctl("ndr", "del", "*").expect(0, out="ndr * deleted")
    env.ctl("ndr", "del", "*").expect(1, err="no such entry")
    env.ctl("ndr", "explain", "else.example").expect(0,
               out=["ndr_default ([policy])       deny           <- decides"])
    allow = env.write_config("allow.ini", extra="[policy]\nndr_default = allow\n")
    env.ctl("ndr", "explain", "else.example", config=allow).expect(0,
               out=["result: allow (from ndr_default)", "reason ndr_allow"])
    env.rcli("SADD", "backstop:domains", "prot.example")
    # no users yet: the daemon defers (directory_empty), and so does the prediction
    env.ctl("ndr", "explain", "prot.example").expect(0,
               out=["prot.example is a protected domain", "reason directory_empty"])
    env.rcli("SADD", "backstop:rcpt:prot.example", "alice")
    env.ctl("ndr", "explain", "prot.example").expect(0,
               out=["prot.example is a protected domain", "reason unknown_user"])
    env.ctl("ndr", "explain", ".example").expect(2)
    # more dots than the daemon looks at: only the shortest 14 parents count
    deep = ".".join("l%d" % i for i in range(20)) + ".example"
    env.rcli("HSET", "backstop:ndr", "." + ".".join(deep.split(".")[2:]), "allow")
    r = env.ctl("ndr", "explain", deep)
    r.expect(0)
    rows = [l for l in r.out.split("\n") if l.startswith("    ") and not l.startswith("    (")]
    assert len(rows) == 17, "16 candidates at most (domain, 14 parents, *) and ndr_default"
    assert "6 longer parent suffixes are not looked up" in r.out, "skipped parents said"
    assert "reason ndr_deny" in r.out, "a parent beyond the 14 shortest is not consulted"


def test_block(env):
    env.ctl("block", "add", "192.0.2.1").expect(0, out="blocked 192.0.2.1 for 1h (reason: manual)")
    assert env.rcli("GET", "backstop:block:192.0.2.1") == "manual", "reason stored"
    assert 3590 <= int(env.rcli("TTL", "backstop:block:192.0.2.1")) <= 3600, "block_time TTL"
    env.ctl("block", "add", "2001:DB8:1:2::7", "--for", "2d", "--reason", "spam run").expect(0,
               out="blocked 2001:db8:1:2::/64 for 2d (reason: spam run)")
    assert 172790 <= int(env.rcli("TTL", "backstop:block:2001:db8:1:2::/64")) <= 172800, "IPv6 /64 key with --for"
    env.ctl("block", "add", "::ffff:198.51.100.7").expect(0, out="blocked 198.51.100.7")
    env.ctl("block", "add", "127.0.0.5").expect(0,
               err="127.0.0.5 is exempt ([ratelimit] exempt 127.0.0.0/8)")
    env.rcli("SADD", "backstop:exempt", "203.0.113.9")
    env.ctl("block", "add", "203.0.113.9").expect(0, err="203.0.113.9 is in backstop:exempt")
    for bad in (["1.2.3"], ["2001:db8::/48"], ["192.0.2.1/24"], ["x", "--for", "1h"],
                ["192.0.2.2", "--for", "soon"], ["192.0.2.2", "--reason", "a\nb"]):
        env.ctl("block", "add", *bad).expect(2, what="block add %s" % bad)
    assert env.rcli("EXISTS", "backstop:block:192.0.2.2") == "0", "bad block not written"
    v6 = env.write_config("v6.ini", extra="[ratelimit]\nipv6_prefix = 48\n")
    env.ctl("block", "add", "2001:db8:5:6::1", config=v6).expect(0,
               out="blocked 2001:db8:5::/48")

    r = env.ctl("block", "list")
    r.expect(0, out=["CLIENT", "TIME LEFT", "192.0.2.1          59m",
                          "2001:db8:1:2::/64  1d23h", "spam run"])
    clients = [l.split()[0] for l in r.out.split("\n")[1:] if l]
    assert clients == sorted(clients) and len(clients) == 6, "block list sorted: %r" % clients

    env.ctl("block", "del", "2001:db8:1:2::/64").expect(0, out="unblocked 2001:db8:1:2::/64")
    env.ctl("block", "del", "2001:db8:1:2::abcd").expect(1, err="was not blocked")
    assert env.rcli("EXISTS", "backstop:block:2001:db8:1:2::/64") == "0", "unblocked"

    env.ctl("client", "192.0.2.1").expect(1,
               out=["exempt:   no", 'blocked:  yes, reason "manual"', "refused"])
    env.ctl("client", "127.0.0.5").expect(0,
               out=["exempt:   yes, [ratelimit] exempt 127.0.0.0/8", "(ignored: exempt)",
                    "not refused"])
    env.ctl("client", "203.0.113.9").expect(0, out="203.0.113.9 is in backstop:exempt")
    # invalid recipients within the window, timed by Redis's clock
    sec, usec = env.rcli("TIME").split("\n")
    now = int(sec) * 1000 + int(usec) // 1000
    for i, age in enumerate((1000, 60000, 599000, 601000, 3600000)):
        env.rcli("ZADD", "backstop:rate:2001:db8:9:9::/64", str(now - age), "m%d" % i)
    env.ctl("client", "2001:db8:9:9::1").expect(0,
               out=["(counted and blocked as 2001:db8:9:9::/64)", "blocked:  no",
                    "3 invalid recipients in the last 10m"])
    doc = env.ctl("client", "--json", "2001:db8:9:9::1").json(0)
    fields(doc, {"client": "2001:db8:9:9::1", "key": "2001:db8:9:9::/64", "exempt": False,
                 "exempt_reason": None, "blocked": False, "block_reason": None,
                 "block_ttl_ms": None, "invalid_tracked": True, "invalid": 3,
                 "invalid_limit": int, "invalid_window_ms": 600000,
                 "block_time_ms": 3600000, "refused": False}, "client --json")
    doc = env.ctl("client", "192.0.2.1", "--json").json(1)
    fields(doc, {"blocked": True, "block_reason": "manual", "block_ttl_ms": int,
                 "refused": True}, "client --json, blocked")
    assert 0 < doc["block_ttl_ms"] <= 3600000, "block_ttl_ms in ms: %r" % doc
    doc = env.ctl("client", "127.0.0.5", "--json").json(0)
    fields(doc, {"exempt": True, "exempt_reason": "[ratelimit] exempt 127.0.0.0/8",
                 "blocked": True, "invalid_tracked": False, "invalid": None,
                 "refused": False}, "client --json, exempt")
    env.ctl("client", "192.0.2.0/24").expect(2)
    off = env.write_config("off.ini", extra="[ratelimit]\ninvalid_recipients = 0\n")
    env.ctl("client", "198.51.100.99", config=off).expect(0, out="not tracked")

    env.ctl("stats").expect(0, err="no statistics yet")
    env.rcli("HSET", "backstop:stats", "valid", "7", "unknown_user", "12345", "blocked", "3")
    r = env.ctl("stats")
    r.expect(0)
    assert r.out == "blocked           3\nunknown_user  12345\nvalid             7\n", "stats sorted and aligned: %r" % r.out
    doc = env.ctl("stats", "--json").json(0)
    assert doc == {"counters": {"blocked": 3, "unknown_user": 12345, "valid": 7}, "sync": {}}, \
        "stats --json (no domain synced yet: an empty sync member): %r" % doc
    env.rcli("HSET", "backstop:stats", "odd", "x1")
    doc = env.ctl("stats", "--json").json(0, "stats --json, a bad value")
    assert doc.get("counters", {}).get("odd", 0) is None, "not an integer: null: %r" % doc
