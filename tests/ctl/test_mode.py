"""backstopctl domain mode, stats --domain, ndr set ... report: the mode
HASH and the would-reject counts as backstopctl writes and shows them."""
from support.ctl import fields


def seed(env):
    env.ctl("domain", "add", "example.com", "example.net").expect(0)
    env.ctl("user", "add", "example.com", "alice", "bob").expect(0)


def test_domain_mode_set_show_default(env):
    seed(env)
    # the default: [policy] mode, no entry
    env.ctl("domain", "mode", "example.com").expect(0, out=[
        "example.com: enforce (from [policy] mode)", "would-reject: 0"])
    # set, in any case, stored canonical; the domain in its canonical form
    env.ctl("domain", "mode", "Example.COM.", "REPORT").expect(0, out=[
        "example.com: report (from backstop:mode field example.com)"])
    assert env.rcli("HGET", "backstop:mode", "example.com") == "report"
    # "*" covers every other recipient; a domain's own entry wins
    env.ctl("domain", "mode", "*", "off").expect(0, out="*: off (from backstop:mode field *)")
    assert env.rcli("HGET", "backstop:mode", "*") == "off"
    env.ctl("domain", "mode", "example.com").expect(0, out="example.com: report (from "
                                                       "backstop:mode field example.com)")
    env.ctl("domain", "mode", "example.net").expect(0, out="example.net: off (from "
                                                       "backstop:mode field *)")
    # default: HDEL, then the next in line
    env.ctl("domain", "mode", "example.com", "default").expect(0, out=[
        "example.com: off (from backstop:mode field *)"])
    assert env.rcli("HEXISTS", "backstop:mode", "example.com") == "0"
    env.ctl("domain", "mode", "example.com", "default").expect(1, out="had no mode of its own")
    env.ctl("domain", "mode", "*", "default").expect(0, out="*: enforce (from [policy] mode)")
    assert env.rcli("EXISTS", "backstop:mode") == "0"


def test_domain_mode_usage_and_notes(env):
    seed(env)
    env.ctl("domain", "mode", "example.com", "enforced").expect(2, err="enforced: not a mode")
    env.ctl("domain", "mode", "bad domain", "off").expect(2, err="not a domain name")
    env.ctl("domain", "mode", "example.com", "off", "x").expect(2, err="too many operands")
    env.ctl("domain", "mode", "example.com", "off", "--json").expect(2, err="--json")
    assert env.rcli("EXISTS", "backstop:mode") == "0", "usage errors wrote nothing"
    # a value set by hand that is no mode: shown, ignored as the daemon does
    env.rcli("HSET", "backstop:mode", "example.com", "enforced")
    env.rcli("HSET", "backstop:mode", "*", "report")
    env.ctl("domain", "mode", "example.com").expect(0, out=[
        "example.com: report (from backstop:mode field *)"],
        err='field example.com holds "enforced", which is no mode')
    # a domain that is not protected: its own field is not used
    env.ctl("domain", "mode", "remote.example", "off").expect(0, out=[
        "remote.example: report (from backstop:mode field *); not a protected domain"],
        err="not a protected domain: its own field applies once it is")


def test_domain_mode_json_and_stats_domain(env):
    seed(env)
    env.ctl("domain", "mode", "example.com", "report").expect(0)
    env.rcli("HSET", "backstop:wouldreject", "example.com", "7")
    doc = env.ctl("domain", "mode", "example.com", "--json").json(0)
    assert doc == {"domain": "example.com", "protected": True, "mode": "report",
                   "mode_source": "own", "field": "report", "star": None, "config": "enforce",
                   "would_reject": 7}, doc
    doc = env.ctl("domain", "mode", "*", "--json").json(0)
    fields(doc, {"domain": "*", "protected": False, "mode": "enforce", "mode_source": "config",
                 "field": None, "star": None})
    # stats --domain: mode and its source, would-reject count, users, last sync
    env.ctl("stats", "--domain", "EXAMPLE.com").expect(0, out=[
        "domain:        example.com (protected)",
        "mode:          report (from backstop:mode field example.com)",
        "would-reject:  7", "users:         2"])
    doc = env.ctl("stats", "--domain", "example.com", "--json").json(0)
    fields(doc, {"domain": "example.com", "protected": True, "mode": "report",
                 "mode_source": "own", "would_reject": 7, "users": 2, "catch_all": False,
                 "sync": {}})
    # a remote domain's would-rejects (NDR entries with report) show too
    env.rcli("HSET", "backstop:wouldreject", "remote.example", "2")
    doc = env.ctl("stats", "--domain", "remote.example", "--json").json(0)
    fields(doc, {"protected": False, "mode": "enforce", "mode_source": "config",
                 "would_reject": 2, "users": 0})
    env.ctl("stats", "--domain", "no domain").expect(2, err="not a domain name")
    # domain list shows each domain's mode and count
    env.ctl("domain", "list").expect(0, out=[
        "example.com  2 users; mode report (own), 7 would-reject",
        "example.net  0 users (every recipient is refused); mode enforce (config), "
        "0 would-reject"])
    doc = env.ctl("domain", "list", "--json", "example.com").json(0)
    assert doc["domains"] == [{"domain": "example.com", "users": 2, "catch_all": False,
                               "mode": "report", "mode_source": "own",
                               "would_reject": 7}], doc


def test_ndr_set_report(env):
    env.ctl("ndr", "set", "lists.example.org", "limit", "10/1h", "report").expect(0, out=[
        "ndr lists.example.org = limit 10/1h report (new)"])
    assert env.rcli("HGET", "backstop:ndr", "lists.example.org") == "limit 10/1h report"
    env.ctl("ndr", "set", "deny.example", "DENY REPORT").expect(0, out="= deny report")
    env.ctl("ndr", "set", "deny.example", "deny", "reports").expect(2, err="optionally followed "
                                                                        "by report")
    env.ctl("ndr", "list").expect(0, out=["limit 10/1h report", "deny report"])
    env.ctl("ndr", "explain", "x@lists.example.org").expect(0, out=[
        "result: limit 10/1h report (from lists.example.org)"], not_out="unusable")
    env.ctl("ndr", "explain", "x@deny.example").expect(0, out=[
        "result: deny report (from deny.example)", "WARN would reject: 550 5.7.1"])
    doc = env.ctl("ndr", "explain", "x@deny.example", "--json").json(0)
    fields(doc, {"rule": {"action": "deny", "limit": None, "period_ms": None, "report": True},
                 "winner": "deny.example"})


def test_purge_queue_keeps_bounces_that_would_pass(env):
    """A deny the daemon only reports (an entry's " report", or "*" in report
    or off mode) lets such bounces through: purge-queue must not delete them."""
    import os
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "postqueue.json")
    env.rcli("SADD", "backstop:domains", "example.com")
    env.rcli("HSET", "backstop:ndr", "*", "deny", ".partner.example", "allow",
             "lists.example.org", "limit 10/1h", "denied.example", "deny report")
    r = env.ctl("purge-queue", "--from-json", fixture)
    r.expect(0, out="dry run: nothing deleted")
    listed = [l.split()[0] for l in r.out.split("\n") if l.startswith("B")]
    # B0012 (an address literal: "*" deny) is still refused; denied.example is not
    assert listed == ["B0012"], listed
    env.rcli("HSET", "backstop:ndr", "denied.example", "deny")
    for mode in ("report", "off"):
        env.rcli("HSET", "backstop:mode", "*", mode)
        r = env.ctl("purge-queue", "--from-json", fixture)
        r.expect(0, out="0 of 14")
