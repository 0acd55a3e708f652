"""backstopctl harvest [--json], harvest end, and the harvest facts of check's explanation.

The keys are written with redis-py the way backstopd writes them (README key table):
  attack            HASH  <domain> -> "since=UNIX;until=UNIX;unknown=N"
  harvest:<domain>  ZSET  "<network> <sec>.<usec>" scored by Redis time in ms, PEXPIRE window
  known:<domain>    ZSET  <network> scored by Unix ms of its last delivery to a valid user
  grey:<domain>:<network>:<local>  STRING  Unix ms of the first sight, PX retry_window

check's harvest verdict is decide.c's HARVEST step fed with the check's result computed from these
keys (nothing written); test_check_matches_the_daemon compares it with a live backstopd.
"""
import os
import re
import time

import pytest

from support.ctl import fields


def redis_now(env):
    sec, usec = env.client().time()
    return sec * 1000 + usec // 1000


def trip(env, domain, since_ago_s=600, left_s=3000, unknown=240, now_ms=None):
    now = (now_ms or redis_now(env)) // 1000
    env.client().hset("backstop:attack", domain,
                      "since=%d;until=%d;unknown=%d" % (now - since_ago_s, now + left_s, unknown))


def probe(env, domain, network, age_ms, seq, window_ms=600000):
    """One unknown recipient counted for domain, as backstopd's script adds it."""
    t = redis_now(env) - age_ms
    key = "backstop:harvest:" + domain
    env.client().zadd(key, {"%s %d.%06d" % (network, t // 1000, seq): t})
    env.client().pexpire(key, window_ms)


def test_harvest_list(env):
    env.ctl("harvest").expect(0, out="no domain is under attack")
    doc = env.ctl("harvest", "--json").json(0, "harvest --json, none")
    fields(doc, {"attacks": [], "now": int, "threshold": {"limit": 200, "window_ms": 600000}},
           "none")

    # example.com: 4 + 3 + 1 (x5 networks) unknown recipients in the window, 2 older ones
    seq = 0
    for net, n in [("198.51.100.0/24", 4), ("203.0.113.0/24", 3), ("192.0.2.0/24", 1),
                   ("2001:db8:1:2::/64", 1), ("192.0.2.128/25", 1), ("10.9.8.0/24", 1),
                   ("100.64.1.0/24", 1)]:
        for _ in range(n):
            seq += 1
            probe(env, "example.com", net, 1000 + seq, seq)
    probe(env, "example.com", "198.18.0.0/24", 700000, 99)  # older than the 10m window
    probe(env, "example.com", "198.18.0.0/24", 800000, 98)
    trip(env, "example.com", since_ago_s=720, left_s=3000, unknown=201)
    env.client().hset("backstop:attack", "garbled.example", "since=yesterday")
    env.client().hset("backstop:attack", "wrongtype.example", "since=1;until=2;unknown=3")
    env.client().set("backstop:harvest:wrongtype.example", "not a zset")

    r = env.ctl("harvest")
    r.expect(0, out=[
        "example.com  under attack since ", " ago), until ", " left)",
        "unknown recipients: 12 in the last 10m (1.2 a minute; threshold 200/10m), 201 at the last trip",
        "top client networks: 198.51.100.0/24 (4), 203.0.113.0/24 (3), ",
        "garbled.example  unreadable value in attack: \"since=yesterday\" (not since=UNIX;"
        "until=UNIX;unknown=N; backstopd keeps it under attack: no readable until)",
        "wrongtype.example  under attack since 1970-01-01 00:00:01 UTC",
        "(past: no longer in force)",
        "unknown recipients: unreadable (WRONGTYPE"], not_out=["198.18.0.0/24", "no domain"])
    # the times by the clock of Redis, which may have passed a second since trip()
    assert re.search(r"example\.com  under attack since \S+ \S+ UTC \(12m(1s)? ago\), until \S+ "
                     r"\S+ UTC \((50m|49m59s) left\)", r.out), r
    top = r.out.split("example.com  under attack")[1].split("top client networks:")[1].split("\n")[0]
    assert top.count("(1)") == 3, "top 5: the 2 biggest and 3 of the single ones: %r" % top
    assert r.out.index("example.com") < r.out.index("garbled.example") < \
        r.out.index("wrongtype.example"), "sorted by domain"

    doc = env.ctl("harvest", "--json").json(0, "harvest --json")
    rows = {a["domain"]: a for a in doc["attacks"]}
    assert list(rows) == ["example.com", "garbled.example", "wrongtype.example"], doc
    ex = rows["example.com"]
    since, until = [int(kv.split("=")[1]) for kv in
                    env.client().hget("backstop:attack", "example.com").split(";")[:2]]
    fields(ex, {"readable": True, "in_force": True, "unknown": 12, "unknown_at_trip": 201,
                "since": since, "until": until, "sampled": 12}, "example.com")
    assert until - since == 3720 and ex["left_s"] == until - doc["now"], ex
    assert 2990 <= ex["left_s"] <= 3000, ex
    assert abs(ex["rate_per_minute"] - 1.2) < 1e-9, ex
    assert ex["top_networks"][:2] == [{"network": "198.51.100.0/24", "count": 4},
                                      {"network": "203.0.113.0/24", "count": 3}], ex
    assert len(ex["top_networks"]) == 5, ex
    fields(rows["garbled.example"], {"readable": False, "value": "since=yesterday",
                                     "since": None, "until": None, "in_force": True,
                                     "unknown": 0}, "garbled")
    fields(rows["wrongtype.example"], {"readable": True, "in_force": False, "unknown": None,
                                       "rate_per_minute": None}, "wrongtype")

    assert ex["unknown_at_least"] is False, ex
    # a count past the threshold is a lower bound (backstopd keeps the newest threshold + 1)
    low = env.write_config("low.ini", extra="[harvest]\nthreshold = 5/10m\n")
    env.ctl("harvest", config=low).expect(0, out=[
        "unknown recipients: at least 12 in the last 10m (at least 1.2 a minute; threshold 5/10m; "
        "past it only the newest threshold + 1 are kept)"])
    low_rows = {a["domain"]: a for a in env.ctl("harvest", "--json", config=low).json(0)["attacks"]}
    fields(low_rows["example.com"], {"unknown": 12, "unknown_at_least": True}, "capped")
    # another window in the config: the count follows it
    ini = env.write_config("t.ini", extra="[harvest]\nthreshold = 5/1s\n")
    env.ctl("harvest", config=ini).expect(0, out=[
        "unknown recipients: 0 in the last 1s (0.0 a minute; threshold 5/1s)"])
    off = env.write_config("off.ini", extra="[harvest]\nthreshold = 0\n")
    env.ctl("harvest", config=off).expect(0, out="unknown recipients: 14 recorded ([harvest] "
                                                 "threshold = 0")
    fields(env.ctl("harvest", "--json", config=off).json(0), {"threshold": None}, "off")

    env.client().set("backstop:attack", "oops")
    env.ctl("harvest").expect(1, err="WRONGTYPE")


def test_harvest_end(env):
    trip(env, "example.com")
    trip(env, "xn--bcher-kva.example")
    for i in range(3):
        probe(env, "example.com", "198.51.100.0/24", 1000, i)
        probe(env, "xn--bcher-kva.example", "198.51.100.0/24", 1000, i)
    env.ctl("harvest", "end", "Example.COM.").expect(0, out=[
        "example.com: attack ended", "backstop:harvest:example.com deleted"])
    assert env.rcli("HEXISTS", "backstop:attack", "example.com") == "0", "field removed"
    assert env.rcli("EXISTS", "backstop:harvest:example.com") == "0", "window forgotten"
    assert env.rcli("ZCARD", "backstop:harvest:xn--bcher-kva.example") == "3", "others kept"
    env.ctl("harvest").expect(0, out="xn--bcher-kva.example  under attack",
                              not_out="example.com  under")

    env.ctl("harvest", "end", "example.com").expect(1, out=[
        "example.com: was not under attack", "backstop:harvest:example.com was already empty"])
    env.ctl("harvest", "end", "bücher.example").expect(0, out="xn--bcher-kva.example: attack ended")
    env.ctl("harvest").expect(0, out="no domain is under attack")
    env.ctl("harvest", "end", "bad domain").expect(2, err="not a domain name")
    env.ctl("harvest", "end").expect(2, err="missing operands")
    env.ctl("harvest", "end", "a.example", "b.example").expect(2, err="too many operands")
    env.ctl("harvest", "nope").expect(2, err="too many operands")
    r = env.ctl("harvest", "end", "--help")
    r.expect(0, out=["harvest end DOMAIN", "HDEL backstop:attack DOMAIN",
                     "DEL backstop:harvest:DOMAIN"])
    env.ctl("--help").expect(0, out=["harvest [--json]", "harvest end DOMAIN",
                                     "HGETALL backstop:attack"])


def check(env, rcpt, client="198.51.100.7", config=None, json=False):
    """check without a daemon: exit 1 (no answer), the explanation is still printed."""
    args = ["check", "--sender", "a@remote.example", "--recipient", rcpt, "--client", client,
            "--server", "unix:" + os.path.join(env.dir, "none.sock")]
    r = env.ctl(*args + (["--json"] if json else []), config=config)
    if json:
        return r.json(1, "check --json")["explanation"]
    return r.expect(1, err="cannot connect")


GREYLIST = "450 4.7.1"


@pytest.fixture
def protected(env):
    env.rcli("SADD", "backstop:domains", "example.com")
    env.rcli("SADD", "backstop:rcpt:example.com", "alice")
    return env


def test_explain_not_under_attack(protected):
    env = protected
    check(env, "alice@example.com").expect(1, out=[
        "attack:    example.com is not under attack",
        "known:     198.51.100.0/24 has not delivered to a valid user here (known_client_age 30d)",
        "harvest:   not under attack: the normal rules", "rule:      valid", "answer:    DUNNO"])
    h = check(env, "nobody@example.com", json=True)
    fields(h, {"rule": "unknown_user", "action": "550 5.1.1 User unknown"}, "explanation")
    fields(h["harvest"], {"verdict": "normal", "under_attack": False, "network": "198.51.100.0/24",
                          "known": False, "rule": None}, "harvest")
    # a bounce to a valid user: the NDR candidates are still shown, then the harvest facts
    r = env.ctl("check", "--sender", "", "--recipient", "alice@example.com", "--client",
                "198.51.100.7", "--server", "unix:" + os.path.join(env.dir, "none.sock"))
    r.expect(1, out=["ndr policy for example.com:", "harvest:   not under attack"])
    assert r.out.index("ndr policy for") < r.out.index("attack:    "), r
    # a recipient of a domain that is not protected: no harvest facts at all
    r = check(env, "x@remote.example")
    assert "harvest:" not in r.out and "attack:" not in r.out, r
    assert check(env, "x@remote.example", json=True)["harvest"] is None
    # an attack that is over (until in the past) is not in force
    now = redis_now(env) // 1000
    env.client().hset("backstop:attack", "example.com", "since=%d;until=%d;unknown=9" %
                      (now - 7200, now - 60))
    check(env, "alice@example.com").expect(1, out=["(past: no longer in force)",
                                                   "rule:      valid"])


@pytest.mark.parametrize("rcpt,normal_rule", [("alice@example.com", "valid"),
                                              ("nobody@example.com", "unknown_user")])
def test_explain_greylist(protected, rcpt, normal_rule):
    """A new client: the same 450 for a valid and an unknown user; the retry passes."""
    env = protected
    trip(env, "example.com")
    r = check(env, rcpt)
    r.expect(1, out=["attack:    under attack until ", "greylist:  198.51.100.0/24 and this "
                     "recipient not seen yet", "harvest:   DEFER: first sight",
                     "rule:      harvest_greylist", "without it: " + normal_rule,
                     "answer:    " + GREYLIST])
    answer = r.out.split("answer:    ")[1].split("\n")[0]
    h = check(env, rcpt, json=True)
    fields(h, {"rule": "harvest_greylist", "action": answer}, "first sight")
    fields(h["harvest"], {"verdict": "defer", "rule": "harvest_greylist", "under_attack": True,
                          "grey_first_ms": None}, "first sight")

    # the daemon saw (network, recipient) 2 minutes ago: too early (retry_after 5m)
    local = rcpt.split("@")[0]
    gkey = "backstop:grey:example.com:198.51.100.0/24:" + local
    now = redis_now(env)
    env.client().set(gkey, now - 120000, px=4 * 3600 * 1000)
    check(env, rcpt, client="198.51.100.99").expect(1, out=[
        "greylist:  first sight 2m", "passes after ", "harvest:   DEFER: retried before "
        "retry_after", "rule:      harvest_greylist"])
    # 6 minutes ago: the retry gets the normal answer
    env.client().set(gkey, now - 360000, px=4 * 3600 * 1000)
    check(env, rcpt).expect(1, out=["a retry passes now", "harvest:   PASS",
                                    "rule:      " + normal_rule], not_out="harvest_greylist")
    h = check(env, rcpt, json=True)
    fields(h, {"rule": normal_rule}, "retry")
    fields(h["harvest"], {"verdict": "pass", "grey_first_ms": now - 360000,
                          "grey_passes_at_ms": now - 60000}, "retry")
    # another network of the same sender farm is new again
    check(env, rcpt, client="198.51.101.7").expect(1, out="rule:      harvest_greylist")


def test_explain_known_and_exempt(protected):
    env = protected
    trip(env, "example.com")
    now = redis_now(env)
    env.client().zadd("backstop:known:example.com", {"198.51.100.0/24": now - 86400000})
    check(env, "nobody@example.com").expect(1, out=[
        "known:     198.51.100.0/24 delivered to a valid user 1d", "harvest:   KNOWN",
        "rule:      unknown_user"], not_out="harvest_greylist")
    fields(check(env, "nobody@example.com", json=True)["harvest"],
           {"verdict": "known", "known": True, "known_at_ms": now - 86400000}, "known")
    # older than known_client_age: new again
    short = env.write_config("short.ini", extra="[harvest]\nknown_client_age = 1h\n")
    check(env, "nobody@example.com", config=short).expect(1, out=[
        ": too long ago", "rule:      harvest_greylist"])
    # a blocked new client: rule 1 answers first
    env.client().set("backstop:block:198.51.102.9", "manual", ex=600)
    r = check(env, "alice@example.com", client="198.51.102.9")
    r.expect(1, out=["harvest:   DEFER: first sight", "but the client is blocked",
                     "rule:      blocked", "answer:    450 4.7.1 Too many invalid recipients"])
    fields(check(env, "alice@example.com", client="198.51.102.9", json=True),
           {"rule": "blocked"}, "blocked")
    # an exempt client keeps the normal rules: [ratelimit] exempt, or the exempt SET
    check(env, "nobody@example.com", client="127.0.0.1").expect(1, out=[
        "harvest:   an exempt client", "rule:      unknown_user"])
    env.client().sadd("backstop:exempt", "198.51.103.4")
    check(env, "nobody@example.com", client="198.51.103.4").expect(1, out=[
        "harvest:   an exempt client", "rule:      unknown_user"])
    check(env, "nobody@example.com", client="198.51.103.5").expect(1, out=[
        "rule:      harvest_greylist"])


def test_explain_config(protected):
    env = protected
    trip(env, "example.com")
    defer = env.write_config("defer.ini", extra="[harvest]\nnew_clients = defer\n")
    r = check(env, "alice@example.com", config=defer)
    r.expect(1, out=["harvest:   DEFER: new_clients = defer", "rule:      harvest_defer",
                     "answer:    450 4.7.1 "])
    normal = env.write_config("normal.ini", extra="[harvest]\nnew_clients = normal\n")
    check(env, "alice@example.com", config=normal).expect(1, out=[
        "new_clients = normal", "rule:      valid"])
    off = env.write_config("off.ini", extra="[harvest]\nthreshold = 0\n")
    check(env, "alice@example.com", config=off).expect(1, out=[
        "harvest:   off ([harvest] threshold = 0)", "rule:      valid"], not_out="attack:")
    report = env.write_config("report.ini", extra="[policy]\nmode = report\n")
    check(env, "alice@example.com", config=report).expect(1, out=[
        "rule:      harvest_greylist", "answer:    WARN would defer: 450 4.7.1 "
        "<alice@example.com>: Recipient address rejected: "])
    # a value backstopd did not write: shown; without a readable until the daemon's sweep
    # keeps the domain under attack, with one it reads that until
    env.client().hset("backstop:attack", "example.com", "under attack!")
    check(env, "alice@example.com").expect(1, out=[
        "attack:    unreadable value \"under attack!\" in attack: backstopd keeps the domain "
        "under attack", "rule:      harvest_greylist"])
    now = redis_now(env) // 1000
    env.client().hset("backstop:attack", "example.com", "by hand until=%d" % (now + 600))
    check(env, "alice@example.com").expect(1, out=["but its until is not past",
                                                   "rule:      harvest_greylist"])
    env.client().hset("backstop:attack", "example.com", "by hand until=%d" % (now - 600))
    check(env, "alice@example.com").expect(1, out=["(past: no longer in force)",
                                                   "rule:      valid"])
    # a key of another type: a failed lookup, the daemon's fallback
    env.client().hdel("backstop:attack", "example.com")
    env.client().delete("backstop:attack")
    env.client().set("backstop:attack", "x")
    check(env, "alice@example.com").expect(1, out="a lookup failed")


def test_check_matches_the_daemon(protected, backstopd_bin):
    """The harvest verdict against a live backstopd's answers."""
    env = protected
    ini = env.write_config("d.ini", extra="[harvest]\nretry_after = 2s\n")
    env.start("backstopd", [backstopd_bin, "-f", "-c", ini])
    env.wait_for(lambda: os.path.exists(os.path.join(env.dir, "p.sock")), "backstopd")
    nets = iter(range(1, 200))

    def ask(rcpt, client):
        doc = env.ctl("check", "--sender", "a@remote.example", "--recipient", rcpt, "--client",
                      client, "--json", config=ini).json(0, "check --json")
        assert doc["explanation"] is not None, doc
        return doc

    # a partner delivers before the attack: the daemon records its network as known
    assert ask("alice@example.com", "192.0.2.10")["action"] == "DUNNO"
    env.wait_for(lambda: env.client().zscore("backstop:known:example.com", "192.0.2.0/24"),
                 "known:example.com records the partner's network")
    trip(env, "example.com")
    # the daemon reads attack once a second: new clients get its 450 soon
    env.wait_for(lambda: ask("alice@example.com", "198.51.%d.1" % next(nets))["action"]
                 .startswith("450"), "backstopd answers 450 to a new client")
    cases = [("alice@example.com", "198.18.1.1", "harvest_greylist"),   # first sight
             ("nobody@example.com", "198.18.1.1", "harvest_greylist"),  # first sight
             ("alice@example.com", "198.18.1.2", "harvest_greylist"),   # too early
             ("nobody@example.com", "192.0.2.11", "unknown_user"),      # a known network
             ("nobody@example.com", "127.0.0.1", "unknown_user")]       # exempt
    for rcpt, client, rule in cases:
        doc = ask(rcpt, client)
        assert doc["explanation"]["rule"] == rule and doc["explanation"]["matches"] is True, \
            "%s from %s: %r" % (rcpt, client, doc)
    time.sleep(2.2)  # retry_after
    # (unknown first: a valid recipient's DUNNO makes the network known)
    for rcpt, rule in (("nobody@example.com", "unknown_user"), ("alice@example.com", "valid")):
        doc = ask(rcpt, "198.18.1.3")
        assert doc["explanation"]["rule"] == rule and doc["explanation"]["matches"] is True \
            and doc["explanation"]["harvest"]["verdict"] == "pass", "retry %s: %r" % (rcpt, doc)
    # the mode hash per domain, read by the daemon with each request: decide.c's answer to the
    # same check, on both sides
    env.client().hset("backstop:mode", "example.com", "report")
    doc = ask("alice@example.com", "198.18.2.1")
    assert doc["action"].startswith("WARN would defer: 450 4.7.1") and \
        doc["explanation"]["rule"] == "harvest_greylist" and \
        doc["explanation"]["matches"] is True, "report: %r" % doc
    env.client().hset("backstop:mode", "example.com", "off")
    doc = ask("nobody@example.com", "198.18.3.1")
    assert doc["action"] == "DUNNO" and doc["explanation"]["rule"] == "mode_off" and \
        doc["explanation"]["matches"] is True and \
        doc["explanation"]["harvest"]["checked"] is False, "off: %r" % doc
    assert not env.client().exists("backstop:grey:example.com:198.18.3.0/24:nobody"), \
        "mode off: the daemon did not check either"


def grey_key(rcpt, network="198.51.100.0/24"):
    local, domain = rcpt.split("@")
    return "backstop:grey:%s:%s:%s" % (domain, network, local)


def test_explain_each_result_from_decide(protected):
    """Each result of the harvest check, computed from the keys as backstopd's script does, goes
    through decide.c's HARVEST step: the reply, the reason and the directory follow from it;
    nothing is written."""
    env = protected
    trip(env, "example.com")
    known_before = env.client().zrange("backstop:known:example.com", 0, -1)

    # DEFER, first sight: decide.c's 450 and reason; the greylisting record is not made here;
    # the directory is read, as the daemon does, before an unknown recipient is counted
    r = check(env, "nobody@example.com")
    r.expect(1, out=["harvest:   DEFER: first sight now: the daemon would record it "
                     "(harvest_greylist)",
                     "directory: backstop:rcpt:example.com has",
                     "rule:      harvest_greylist (3: harvest detection: a new client of a domain "
                     "under attack, the same answer for every recipient; counts an invalid "
                     "recipient for the client; without it: unknown_user)",
                     "answer:    450 4.7.1 Recipient verification delayed, try again later"])
    h = check(env, "nobody@example.com", json=True)
    fields(h, {"rule": "harvest_greylist", "counts_invalid": True, "would_reject": False,
               "action": "450 4.7.1 Recipient verification delayed, try again later"}, "defer")
    fields(h["harvest"], {"verdict": "defer", "checked": True, "rule": "harvest_greylist"},
           "defer")
    assert not env.client().exists(grey_key("nobody@example.com")), "check writes nothing"
    assert env.client().zrange("backstop:known:example.com", 0, -1) == known_before

    # a grey: value that is no number: the daemon's script takes it as a first sight
    env.client().set(grey_key("alice@example.com"), "garbage", px=600000)
    check(env, "alice@example.com").expect(1, out=["not seen yet", "DEFER: first sight now"])
    # Lua's tonumber reads spaces around a number: 10 minutes ago passes
    env.client().set(grey_key("alice@example.com"), " %d " % (redis_now(env) - 600000),
                     px=600000)
    check(env, "alice@example.com").expect(1, out=["harvest:   PASS", "rule:      valid",
                                                   "answer:    DUNNO"])

    # PASS for an unknown recipient: decide.c then asks for the directory, as the daemon
    # does, and its doubt decides (no sync record with max_directory_age set)
    env.client().set(grey_key("nobody@example.com"), redis_now(env) - 600000, px=600000)
    stale = env.write_config("stale.ini", extra="[policy]\nmax_directory_age = 1h\n")
    check(env, "nobody@example.com", config=stale).expect(1, out=[
        "harvest:   PASS", "directory: backstop:rcpt:example.com has 1 member",
        "synced:    never successfully", "rule:      directory_stale"])
    h = check(env, "nobody@example.com", json=True)
    fields(h, {"rule": "unknown_user", "action": "550 5.1.1 User unknown"}, "pass")
    fields(h["harvest"], {"verdict": "pass", "checked": True, "rule": None}, "pass")

    # KNOWN: the exempt SET (the script's first test), then known:<domain>
    env.client().sadd("backstop:exempt", "198.51.104.77")
    h = check(env, "nobody@example.com", client="198.51.104.77", json=True)
    fields(h, {"rule": "unknown_user", "counts_invalid": True}, "exempt set")
    fields(h["harvest"], {"verdict": "exempt", "checked": True}, "exempt set")
    check(env, "nobody@example.com", client="198.51.104.77").expect(1, out=[
        "harvest:   an exempt client: the normal rules (in the exempt SET: the check answers "
        "KNOWN)"])
    env.client().zadd("backstop:known:example.com", {"203.0.113.0/24": redis_now(env) - 1000})
    h = check(env, "nobody@example.com", client="203.0.113.5", json=True)
    fields(h, {"rule": "unknown_user"}, "known")
    fields(h["harvest"], {"verdict": "known", "checked": True, "known": True}, "known")

    # new_clients = defer: DEFER for every new client, even after retry_after; KNOWN still
    # keeps the normal rules
    defer = env.write_config("defer.ini", extra="[harvest]\nnew_clients = defer\n")
    r = check(env, "alice@example.com", config=defer)
    r.expect(1, out=["harvest:   DEFER: new_clients = defer", "rule:      harvest_defer",
                     "without it: valid)", "answer:    450 4.7.1 Recipient verification "
                     "delayed"], not_out="a retry passes now\n  harvest:   PASS")
    fields(check(env, "alice@example.com", config=defer, json=True)["harvest"],
           {"verdict": "defer", "rule": "harvest_defer", "checked": True}, "defer mode")
    h = check(env, "nobody@example.com", client="203.0.113.5", config=defer, json=True)
    fields(h, {"rule": "unknown_user"}, "defer mode, known")
    fields(h["harvest"], {"verdict": "known"}, "defer mode, known")
    # new_clients = normal: decide.c asks for no check
    normal = env.write_config("normal.ini", extra="[harvest]\nnew_clients = normal\n")
    fields(check(env, "alice@example.com", config=normal, json=True)["harvest"],
           {"verdict": "normal", "checked": False, "under_attack": True}, "normal")


def test_explain_modes_from_decide(protected):
    """report and off, from [policy] mode or the mode hash per domain: decide.c's answer to the
    harvest result."""
    env = protected
    trip(env, "example.com")
    warn = ("WARN would defer: 450 4.7.1 <alice@example.com>: Recipient address rejected: "
            "Recipient verification delayed, try again later")

    env.client().hset("backstop:mode", "example.com", "report")
    r = check(env, "alice@example.com")
    r.expect(1, out=["mode:      report (from backstop:mode field example.com)",
                     "rule:      harvest_greylist", "report:    report mode: only logged",
                     "answer:    " + warn])
    h = check(env, "alice@example.com", json=True)
    fields(h, {"rule": "harvest_greylist", "action": warn, "would_reject": True,
               "mode": "report", "mode_source": "own"}, "domain report")
    # the domain's field before "*"; [policy] mode = report, the domain's enforce wins
    env.client().hset("backstop:mode", "example.com", "enforce")
    report = env.write_config("report.ini", extra="[policy]\nmode = report\n")
    fields(check(env, "alice@example.com", config=report, json=True),
           {"rule": "harvest_greylist", "would_reject": False,
            "action": "450 4.7.1 Recipient verification delayed, try again later"},
           "domain enforce over report")
    env.client().hdel("backstop:mode", "example.com")
    env.client().hset("backstop:mode", "*", "report")
    fields(check(env, "alice@example.com", json=True),
           {"rule": "harvest_greylist", "action": warn, "mode_source": "*"}, "* report")
    # off for the domain: decide.c answers before any check; its result is still shown
    env.client().hset("backstop:mode", "example.com", "off")
    r = check(env, "alice@example.com")
    r.expect(1, out=["rule:      mode_off", "answer:    DUNNO",
                     "harvest:   DEFER: first sight now: the daemon would record it "
                     "(harvest_greylist); but the mode is off for this recipient: the daemon "
                     "does not check"], not_out="report:")
    h = check(env, "alice@example.com", json=True)
    fields(h, {"rule": "mode_off", "action": "DUNNO"}, "domain off")
    fields(h["harvest"], {"verdict": "defer", "checked": False, "rule": None}, "domain off")
    # a blocked client: rule 1, no check either
    env.client().hdel("backstop:mode", "example.com")
    env.client().set("backstop:block:198.51.100.7", "manual", ex=600)
    fields(check(env, "alice@example.com", json=True)["harvest"],
           {"verdict": "defer", "checked": False, "rule": None}, "blocked")
