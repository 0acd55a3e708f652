"""backstopctl: usage, the configuration, Redis down or frozen, ACL/db/prefix."""
import json
import os
import re

def test_cli(env, redis_factory):
    r = env.ctl("--help")
    words = ["domain add", "domain del", "domain list", "domain mode", "user add", "user del", "user list",
             "import", "ndr set", "ndr del", "ndr list", "ndr explain", "block list",
             "block add", "block del", "client IP", "stats", "check", "purge-queue",
             "rbl-check", "sync", "harvest end DOMAIN", "harvest [--json]"]
    r.expect(0, out=words + ["SADD backstop:domains", "HSET backstop:ndr", "HSET backstop:mode",
                                  "SET backstop:block:CLIENT", "HGETALL backstop:stats",
                                  "HGETALL backstop:attack", "HDEL backstop:attack DOMAIN"])
    assert r.out.count("redis-cli:") == len(words), "--help: one redis-cli line per command"
    env.ctl("ndr", "explain", "--help").expect(0,
               out=["ndr explain DOMAIN", "HMGET backstop:ndr"])
    env.ctl("domain", "--help").expect(0, out=["domain add", "domain del", "--purge"])
    version = env.ctl("-V").expect(0, out="backstopctl ").out
    r = env.ctl("--version").expect(0, out="backstopctl ")
    assert re.fullmatch(r"backstopctl \d+\.\d+\.\d+\n", r.out) and r.out == version, \
        "--version: the version, as -V: %r" % r.out
    env.ctl("--help").expect(0, out=["--version", "--json"])
    env.ctl("stats", "--help").expect(0, out="--json")
    env.ctl("domain", "add", "--json", "x.org").expect(2, err="unknown option")
    env.ctl("--json", "domain", "add", "x.org").expect(2, err="unknown option or missing value: --json")
    env.ctl("frobnicate").expect(2, err="unknown command: frobnicate")
    env.ctl("domain").expect(2, err="domain: which one?")
    env.ctl("domain", "rename", "x").expect(2, err="unknown subcommand: rename")
    env.ctl("domain", "add").expect(2, err="missing operands")
    env.ctl("domain", "add", "--bogus", "x.org").expect(2, err="unknown option")
    env.ctl("domain", "add", "--purge", "x.org").expect(2, err="unknown option")
    env.ctl("user", "list", "a.org", "b.org").expect(2, err="too many operands")
    env.ctl("-t", "soon", "stats").expect(2, err="--timeout soon")
    assert env.rcli("DBSIZE") == "0", "usage errors wrote nothing"
    # --json before the command, as the OPTIONS of backstopctl(8) allow
    first = json.loads(env.ctl("--json", "ndr", "explain", "x.org").expect(0).out)
    assert first == json.loads(env.ctl("ndr", "explain", "x.org", "--json").expect(0).out)

    # the configuration: missing, broken
    env.ctl("stats", config=os.path.join(env.dir, "missing.ini")).expect(1,
               err="missing.ini")
    bad = os.path.join(env.dir, "bad.ini")
    with open(bad, "w") as f:
        f.write("[redis]\nserver = unix:%s\nbogus = 1\n" % env.sock)
    env.ctl("stats", config=bad).expect(1, err="bad.ini:3")
    # options after the command, and -c there too
    env.ctl("stats", "-c", env.ini).expect(0)

    # Redis down, and Redis frozen: errors within the timeout, never a hang
    down = env.write_config("down.ini").replace("down.ini", "down2.ini")
    with open(down, "w") as f:
        f.write("[redis]\nserver = unix:%s/nothing.sock\n" % env.dir)
    env.ctl("domain", "list", config=down).expect(1, err="cannot connect")
    frozen = redis_factory("frozen")
    frozen.freeze()
    fini = os.path.join(env.dir, "frozen.ini")
    with open(fini, "w") as f:
        f.write("[redis]\nserver = unix:%s\n" % frozen.sock)
    env.ctl("-t", "300ms", "domain", "list", config=fini).expect(1, err="no answer within 300ms")
    assert env.ctl.last.seconds < 5, "frozen redis: gave up in %.1fs" % env.ctl.last.seconds
    frozen.stop()

    # ACL user + password, db and prefix from the config
    env.rcli("ACL", "SETUSER", "ctl", "on", ">s3cret", "~*", "+@all")
    acl = env.write_config("acl.ini", redis_extra="username = ctl\npassword = s3cret\ndb = 3\n"
                                                  "prefix = other:\n")
    env.ctl("domain", "add", "acl.example", config=acl).expect(0)
    assert env.members("other:domains", db=3) == ["acl.example"], "db 3, prefix other:"
    assert env.rcli("EXISTS", "backstop:domains") == "0", "db 0 untouched"
    wrong = env.write_config("wrong.ini", redis_extra="username = ctl\npassword = nope\n")
    env.ctl("domain", "list", config=wrong).expect(1, err="AUTH")
    env.ctl("stats", config=wrong).expect(1, not_out="nope", err="redis")
