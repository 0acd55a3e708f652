"""backstopctl check against a running backstopd: the answer and its explanation."""
import json
import os
import socket

from support.ctl import fields
from support.procs import free_port

def start_backstopd(env, extra_listen):
    ini = env.write_config("d.ini", server="listen = unix:%s\nlisten = %s" % (
        os.path.join(env.dir, "p.sock"), extra_listen))
    env.start("backstopd", [env.backstopd, "-f", "-c", ini])
    env.wait_for(lambda: os.path.exists(os.path.join(env.dir, "p.sock")), "backstopd")
    return ini


def test_check(env, backstopd_bin):
    env.backstopd = backstopd_bin
    port = free_port()
    start_backstopd(env, "inet:127.0.0.1:%d" % port)
    env.rcli("SADD", "backstop:domains", "example.com")
    env.rcli("SADD", "backstop:rcpt:example.com", "alice")
    env.rcli("HSET", "backstop:ndr", "*", "deny", ".partner.example", "allow",
             "lists.example.org", "limit 2/1h")

    def check(sender, rcpt, client="192.0.2.9", *more):
        return env.ctl("check", "--sender", sender, "--recipient", rcpt, "--client", client, *more)

    explained = "explanation (re-derived by backstopctl"
    check("a@remote.example", "nobody@example.com").expect(0,
               out=["action=550 5.1.1 User unknown",
                    explained, "nobody               not in backstop:rcpt:example.com",
                    "rule:      unknown_user"],
               err="counted this unknown recipient against client 192.0.2.9")
    assert env.rcli("ZCARD", "backstop:rate:192.0.2.9") == "1", "the daemon counted it"
    env.ctl("client", "192.0.2.9").expect(0, out="1 invalid recipients")
    check("a@remote.example", "Alice+tag@Example.com").expect(0,
               out=["action=DUNNO", "alice                in backstop:rcpt:example.com "
                    "(without its extension)", "rule:      valid"])
    check("", "x@denied.example").expect(0,
               out=["action=550 5.7.1 Delivery status notifications", "*                            deny"
                    "           <- decides", "rule:      ndr_deny"], not_out="differs")
    check("<>", "x@a.partner.example", "192.0.2.9", "--helo", "mx.test").expect(0,
               out=["action=DUNNO", "rule:      ndr_allow"])
    for i, want in enumerate(("ndr_under_limit", "ndr_under_limit", "ndr_limit")):
        r = check("", "b%d@lists.example.org" % i)
        r.expect(0, out="rule:      " + want, what="limit %d" % i)
        assert "differs" not in r.err, "limit %d: prediction matches the daemon" % i
    env.rcli("SET", "backstop:block:192.0.2.66", "manual", "EX", "600")
    check("a@b.example", "alice@example.com", "192.0.2.66").expect(0,
               out=["action=450 4.7.1", "blocked:   yes", "rule:      blocked"])
    check("a@b.example", "x@example.com", "127.0.0.1", "--server",
                     "inet:127.0.0.1:%d" % port).expect(0,
               out=["action=550 5.1.1", "exempt:    yes, [ratelimit] exempt 127.0.0.0/8"])
    assert env.rcli("EXISTS", "backstop:rate:127.0.0.1") == "0", "exempt client not counted"
    # a backstop.ini that differs from the daemon's: the mismatch is reported
    rep = env.write_config("report.ini", extra="[policy]\nmode = report\n")
    env.ctl("check", "--sender", "a@b.example", "--recipient", "zz@example.com",
                       "--client", "192.0.2.10", "--server",
                       "unix:" + os.path.join(env.dir, "p.sock"), config=rep).expect(0,
               out="action=550 5.1.1", err="differs from the re-derived one")
    # usage and connection errors
    env.ctl("check", "--sender", "a@b.c", "--recipient", "x@example.com").expect(2,
               err="check needs")
    check("a@b.c", "x@example.com", "not-an-ip").expect(2, err="not an IP address")
    check("a@b.c\nrecipient=evil@x", "x@example.com").expect(2, err="control characters")
    check("a@b.c", "x@example.com", "192.0.2.9", "--server", "unix:" +
                     os.path.join(env.dir, "none.sock")).expect(1, err="cannot connect")
    check("a@b.c", "x@example.com", "192.0.2.9", "--server", "bogus").expect(2)
    # a server that accepts but never answers: the timeout ends it
    mute = os.path.join(env.dir, "mute.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(mute)
    s.listen(1)
    env.ctl("-t", "500ms", "check", "--sender", "a@b.c", "--recipient", "x@example.com",
                       "--client", "192.0.2.9", "--server", "unix:" + mute).expect(1,
               err="no complete answer within the timeout")
    assert env.ctl.last.seconds < 5, "mute server: gave up in %.1fs" % env.ctl.last.seconds
    s.close()

    # --json: the answer and the re-derived explanation, machine-checked
    psock = "unix:" + os.path.join(env.dir, "p.sock")
    doc = check("a@remote.example", "nobody2@example.com", "192.0.2.77", "--json").json(0)
    fields(doc, {"server": psock, "answered": True, "action": "550 5.1.1 User unknown",
                 "error": None, "redis": {"ok": True, "error": None},
                 "request": {"sender": "a@remote.example", "recipient": "nobody2@example.com",
                             "client": "192.0.2.77", "helo": None}}, "check --json")
    fields(doc.get("explanation") or {},
           {"rule": "unknown_user", "action": "550 5.1.1 User unknown", "matches": True,
            "blocked": False, "exempt": False, "protected_domain": True,
            "null_sender": False, "counts_invalid": True}, "check --json explanation")
    doc = check("", "x@a.partner.example", "192.0.2.9", "--helo", "h\u00e9.test", "--json").json(
        0, "check --json, a bounce with a HELO")
    fields(doc, {"action": "DUNNO", "request": {"sender": "", "recipient": "x@a.partner.example",
                                                 "client": "192.0.2.9", "helo": "h\u00e9.test"}},
           "check --json, a bounce with a HELO")
    fields(doc.get("explanation") or {}, {"rule": "ndr_allow", "null_sender": True,
                                          "matches": True}, "check --json, ndr_allow")
    doc = check("", "x@denied.example", "192.0.2.9", "--json", "--server",
                "unix:" + os.path.join(env.dir, "none.sock")).json(1, "check --json, no daemon")
    fields(doc, {"answered": False, "action": None, "redis": {"ok": True, "error": None}},
           "check --json, no daemon")
    assert "cannot connect" in (doc.get("error") or ""), "why no answer: %r" % doc
    assert (doc.get("explanation") or {}).get("matches", 0) is None, \
        "no answer: matches is null: %r" % doc

    # Redis down: the daemon is asked all the same, and both are reported
    env.server.stop()
    check("a@b.example", "alice@example.com").expect(0,
        out=["action=", "explanation: none: backstopctl could not read Redis", "on_redis_error"],
        err="redis: cannot connect")
    doc = check("a@b.example", "alice@example.com", "192.0.2.9", "--json").json(
        0, "check --json, Redis down")
    fields(doc, {"answered": True, "action": str, "error": None, "explanation": None},
           "check --json, Redis down")
    redis = doc.get("redis") or {}
    assert redis.get("ok") is False and "cannot connect" in (redis.get("error") or ""), \
        "check --json, Redis down: %r" % redis

def test_check_directory_doubt_matches_the_daemon(env, backstopd_bin):
    """An unknown user of a protected domain whose directory is in doubt: the
    daemon defers (second lookup: SCARD rcpt:, HGET sync <domain>:ok), and
    check's re-derived answer says the same, not 550."""
    sock = os.path.join(env.dir, "p.sock")
    ini = env.write_config("dir.ini", server="listen = unix:" + sock,
                           extra="[policy]\nmax_directory_age = 1h\n")
    env.start("backstopd", [backstopd_bin, "-f", "-c", ini])
    env.wait_for(lambda: os.path.exists(sock), "backstopd")
    env.rcli("SADD", "backstop:domains", "empty.example", "stale.example", "fresh.example")
    env.rcli("SADD", "backstop:rcpt:stale.example", "alice")
    env.rcli("SADD", "backstop:rcpt:fresh.example", "alice")
    now = int(env.client().time()[0])
    env.rcli("HSET", "backstop:sync", "stale.example:ok", str(now - 7200),
             "fresh.example:ok", str(now - 60), "empty.example:ok", str(now))

    def check(rcpt):
        r = env.ctl("check", "--sender", "a@remote.example", "--recipient", rcpt, "--client",
                    "192.0.2.9", "--server", "unix:" + sock, config=ini)
        assert "differs" not in r.err, r
        return r

    check("nobody@empty.example").expect(0, out=[
        "action=DEFER_IF_PERMIT 4.7.1", "directory: backstop:rcpt:empty.example has 0 members",
        "rule:      directory_empty"])
    check("nobody@stale.example").expect(0, out=[
        "action=450 4.7.1 Recipient directory is out of date",
        "synced:    last successful sync 2h", "rule:      directory_stale"])
    check("nobody@fresh.example").expect(0, out=[
        "action=550 5.1.1", "has 1 member", "rule:      unknown_user"])
    # the JSON explanation agrees too
    r = env.ctl("check", "--sender", "a@remote.example", "--recipient", "x@empty.example",
                "--client", "192.0.2.9", "--server", "unix:" + sock, "--json", config=ini)
    doc = json.loads(r.expect(0).out)
    assert doc["action"].startswith("DEFER_IF_PERMIT") and doc["explanation"]["matches"] is True
    assert doc["explanation"]["rule"] == "directory_empty"
    # the blocked-and-exempt-by-SET client: the exempt follow-up is read too
    env.rcli("SET", "backstop:block:192.0.2.77", "manual", "EX", "600")
    env.rcli("SADD", "backstop:exempt", "192.0.2.77")
    r = env.ctl("check", "--sender", "a@remote.example", "--recipient", "alice@fresh.example",
                "--client", "192.0.2.77", "--server", "unix:" + sock, config=ini)
    r.expect(0, out=["action=DUNNO", "exempt:    yes, 192.0.2.77 is in backstop:exempt"])
    assert "differs" not in r.err, r
