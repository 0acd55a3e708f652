#!/usr/bin/env python3
"""tests/ctl/run.py - backstopctl end to end, against a private redis-server

Starts its own redis-server on a unix socket in a temporary directory
(--port 0: no TCP port at all), and for some areas a backstopd (unix socket
and a free loopback port) or a dnsmasq (a free loopback UDP port), runs
backstopctl commands, and checks their output, their exit status and the
Redis state they leave (read back with redis-cli). Everything it starts is
stopped by PID. Python 3 standard library only.

    run.py --ctl PATH [--backstopd PATH] [--only AREA] [-v]

Areas: cli domain import ndr block check queue rbl (default: all).
Exit 0 all passed, 1 a check failed, 77 skipped (a tool is missing).
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77


class Skip(Exception):
    pass


class Env:
    """One private redis-server (and whatever else an area starts)."""

    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="backstopctl-test-")
        self.sock = os.path.join(self.dir, "r.sock")
        self.procs = []  # (name, Popen) stopped at close(), last first
        self.passed = 0
        self.failed = []
        if not shutil.which("redis-server") or not shutil.which("redis-cli"):
            raise Skip("redis-server/redis-cli not installed")
        self.redis = self.start("redis-server", [
            "redis-server", "--port", "0", "--unixsocket", self.sock,
            "--save", "", "--appendonly", "no", "--dir", self.dir])
        self.wait_for(lambda: self.rcli("PING") == "PONG", "redis-server")
        self.ini = self.write_config("b.ini")

    # -- processes
    def start(self, name, argv, **kw):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **kw)
        log.close()
        self.procs.append((name, p))
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self):
        for _, p in reversed(self.procs):
            self.stop(p)
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait_for(self, cond, what, secs=10):
        end = time.time() + secs
        while time.time() < end:
            try:
                if cond():
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError(what + " did not start")

    # -- config and tools
    def write_config(self, name, extra="", redis_extra="", server=""):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("[server]\n%s\n[redis]\nserver = unix:%s\n%s\n%s" % (
                server or "listen = unix:%s" % os.path.join(self.dir, "p.sock"),
                self.sock, redis_extra, extra))
        return path

    def rcli(self, *args, db=None):
        argv = ["redis-cli", "-s", self.sock]
        if db is not None:
            argv += ["-n", str(db)]
        r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=30)
        return r.stdout.rstrip("\n")

    def ctl(self, *args, stdin=None, config=None, timeout=120):
        argv = [self.args.ctl, "-c", config or self.ini] + list(args)
        t = time.time()
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        self.last_time = time.time() - t
        if self.args.verbose:
            print("$ backstopctl " + " ".join(args))
            print(r.stdout + r.stderr + "[rc=%d]" % r.returncode)
        return r.returncode, r.stdout, r.stderr

    # -- checks
    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed.append(what)
            print("FAIL: " + what)

    def expect(self, res, rc, out=(), err=(), not_out=(), what=""):
        """res from ctl(); rc wanted; every string of out/err must appear."""
        code, o, e = res
        label = what or (o + e)[:80].replace("\n", " | ")
        self.check(code == rc, "%s: exit %d, wanted %d\nstdout: %s\nstderr: %s" %
                   (label, code, rc, o, e))
        for s in ([out] if isinstance(out, str) else out):
            self.check(s in o, "%s: stdout lacks %r\nstdout: %s" % (label, s, o))
        for s in ([err] if isinstance(err, str) else err):
            self.check(s in e, "%s: stderr lacks %r\nstderr: %s" % (label, s, e))
        for s in ([not_out] if isinstance(not_out, str) else not_out):
            self.check(s not in o, "%s: stdout has %r\nstdout: %s" % (label, s, o))
        if "Sanitizer" in e or "runtime error" in e:
            self.check(False, "%s: sanitizer report\n%s" % (label, e))

    def members(self, key, db=None):
        return sorted(x for x in self.rcli("SMEMBERS", key, db=db).split("\n") if x)

    def free_port(self, kind=socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port


# ---------------------------------------------------------------- areas

def area_cli(env):
    r = env.ctl("--help")
    words = ["domain add", "domain del", "domain list", "user add", "user del", "user list",
             "import", "ndr set", "ndr del", "ndr list", "ndr explain", "block list",
             "block add", "block del", "client IP", "stats", "check", "purge-queue",
             "rbl-check", "sync"]
    env.expect(r, 0, out=words + ["SADD backstop:domains", "HSET backstop:ndr",
                                  "SET backstop:block:CLIENT", "HGETALL backstop:stats"])
    env.check(r[1].count("redis-cli:") == len(words), "--help: one redis-cli line per command")
    env.expect(env.ctl("ndr", "explain", "--help"), 0,
               out=["ndr explain DOMAIN", "HMGET backstop:ndr"])
    env.expect(env.ctl("domain", "--help"), 0, out=["domain add", "domain del", "--purge"])
    env.expect(env.ctl("-V"), 0, out="backstopctl ")
    env.expect(env.ctl("frobnicate"), 2, err="unknown command: frobnicate")
    env.expect(env.ctl("domain"), 2, err="domain: which one?")
    env.expect(env.ctl("domain", "rename", "x"), 2, err="unknown subcommand: rename")
    env.expect(env.ctl("domain", "add"), 2, err="missing operands")
    env.expect(env.ctl("domain", "add", "--bogus", "x.org"), 2, err="unknown option")
    env.expect(env.ctl("domain", "add", "--purge", "x.org"), 2, err="unknown option")
    env.expect(env.ctl("user", "list", "a.org", "b.org"), 2, err="too many operands")
    env.expect(env.ctl("-t", "soon", "stats"), 2, err="--timeout soon")
    env.check(env.rcli("DBSIZE") == "0", "usage errors wrote nothing")

    # the configuration: missing, broken
    env.expect(env.ctl("stats", config=os.path.join(env.dir, "missing.ini")), 1,
               err="missing.ini")
    bad = os.path.join(env.dir, "bad.ini")
    with open(bad, "w") as f:
        f.write("[redis]\nserver = unix:%s\nbogus = 1\n" % env.sock)
    env.expect(env.ctl("stats", config=bad), 1, err="bad.ini:3")
    # options after the command, and -c there too
    env.expect(env.ctl("stats", "-c", env.ini), 0)

    # Redis down, and Redis frozen: errors within the timeout, never a hang
    down = env.write_config("down.ini").replace("down.ini", "down2.ini")
    with open(down, "w") as f:
        f.write("[redis]\nserver = unix:%s/nothing.sock\n" % env.dir)
    env.expect(env.ctl("domain", "list", config=down), 1, err="cannot connect")
    frozen_sock = os.path.join(env.dir, "frozen.sock")
    frozen = env.start("redis-frozen", ["redis-server", "--port", "0", "--unixsocket",
                                        frozen_sock, "--save", "", "--appendonly", "no"])
    env.wait_for(lambda: subprocess.run(["redis-cli", "-s", frozen_sock, "PING"],
                                        capture_output=True, text=True).stdout.strip() == "PONG",
                 "frozen redis")
    os.kill(frozen.pid, signal.SIGSTOP)
    fini = os.path.join(env.dir, "frozen.ini")
    with open(fini, "w") as f:
        f.write("[redis]\nserver = unix:%s\n" % frozen_sock)
    env.expect(env.ctl("-t", "300ms", "domain", "list", config=fini), 1, err="no answer within 300ms")
    env.check(env.last_time < 5, "frozen redis: gave up in %.1fs" % env.last_time)
    env.stop(frozen)

    # ACL user + password, db and prefix from the config
    env.rcli("ACL", "SETUSER", "ctl", "on", ">s3cret", "~*", "+@all")
    acl = env.write_config("acl.ini", redis_extra="username = ctl\npassword = s3cret\ndb = 3\n"
                                                  "prefix = other:\n")
    env.expect(env.ctl("domain", "add", "acl.example", config=acl), 0)
    env.check(env.members("other:domains", db=3) == ["acl.example"], "db 3, prefix other:")
    env.check(env.rcli("EXISTS", "backstop:domains") == "0", "db 0 untouched")
    wrong = env.write_config("wrong.ini", redis_extra="username = ctl\npassword = nope\n")
    env.expect(env.ctl("domain", "list", config=wrong), 1, err="AUTH")
    env.expect(env.ctl("stats", config=wrong), 1, not_out="nope", err="redis")


def area_domain(env):
    env.expect(env.ctl("domain", "add", "Example.COM", "example.net."), 0,
               out=["example.com: protected", "example.net: protected"],
               err="example.com has no users yet")
    env.check(env.members("backstop:domains") == ["example.com", "example.net"], "domains set")
    env.expect(env.ctl("domain", "add", "example.com"), 0, out="example.com: already protected")
    env.expect(env.ctl("domain", "add", "ok.example", "bad domain", "x..y"), 2,
               err=["bad domain: not a domain name", "x..y: not a domain name"])
    env.check("ok.example" not in env.members("backstop:domains"), "a bad operand: nothing added")

    env.expect(env.ctl("user", "add", "example.com", "Alice", "bob", "o'brien"), 0,
               out=["alice@example.com: added", "bob@example.com: added",
                    "o'brien@example.com: added"])
    env.expect(env.ctl("user", "add", "carol@EXAMPLE.com", "@example.net"), 0,
               out=["carol@example.com: added", "*@example.net: added"])
    env.expect(env.ctl("user", "add", "alice@example.com"), 0, out="already present")
    env.expect(env.ctl("user", "add", "example.com", "dave@other.org"), 2,
               err="not an address at example.com")
    env.expect(env.ctl("user", "add", "example.com"), 2, err="which users?")
    env.expect(env.ctl("user", "add", "nobody"), 2)
    env.expect(env.ctl("user", "add", "example.com", "a" * 129), 2, err="too long")
    env.expect(env.ctl("user", "add", "example.com", "a\x01b"), 2)
    env.check(env.members("backstop:rcpt:example.com") == ["alice", "bob", "carol", "o'brien"],
              "rcpt:example.com")
    env.check(env.members("backstop:rcpt:example.net") == ["*"], "catch-all member")
    env.expect(env.ctl("user", "add", "example.org", "zed"), 0,
               err="example.org is not a protected domain")

    r = env.ctl("user", "list", "example.com")
    env.expect(r, 0)
    env.check(r[1] == "alice\nbob\ncarol\no'brien\n", "user list: sorted, one a line: %r" % r[1])
    env.expect(env.ctl("user", "del", "example.com", "bob", "nobody"), 1,
               out=["bob@example.com: removed", "nobody@example.com: was not there"])
    env.check("bob" not in env.members("backstop:rcpt:example.com"), "bob removed")

    r = env.ctl("domain", "list")
    env.expect(r, 0)
    env.check(r[1] == "example.com  3 users\nexample.net  catch-all (1 member)\n",
              "domain list: %r" % r[1])
    env.expect(env.ctl("domain", "list", "example.com", "nope.example"), 1,
               out="example.com  3 users", err="nope.example: not a protected domain")

    env.expect(env.ctl("domain", "del", "example.net"), 0, out="example.net: no longer protected",
               err=["backstop:rcpt:example.net (1 user(s)) is kept",
                    "redis-cli DEL backstop:rcpt:example.net"])
    env.check(env.rcli("EXISTS", "backstop:rcpt:example.net") == "1", "users kept without --purge")
    env.expect(env.ctl("domain", "del", "example.net"), 1, out="was not protected")
    env.expect(env.ctl("domain", "del", "--purge", "example.net"), 0,
               out="backstop:rcpt:example.net deleted (1 user)")
    env.check(env.rcli("EXISTS", "backstop:rcpt:example.net") == "0", "--purge deleted users")
    env.expect(env.ctl("domain", "del", "--purge", "example.net"), 1, out="no backstop:rcpt")
    env.expect(env.ctl("domain", "del", "example.com", "--purge"), 0)  # options after operands
    env.check(env.rcli("EXISTS", "backstop:rcpt:example.com") == "0", "purge after operand")
    env.expect(env.ctl("domain", "list"), 0, err="no protected domains")

    # a key of the wrong type is reported, not a crash
    env.rcli("SET", "backstop:domains", "oops")
    env.expect(env.ctl("domain", "add", "example.com"), 1, err="WRONGTYPE")
    env.rcli("DEL", "backstop:domains")


IMPORT_FILE = """# users of example.org
alice
Bob@Example.ORG    example.org/bob/
   continuation of bob's value
@example.org       catch-all
carol@other.net
example.org        virtual domain line

dave
eve\r
x\x01y
"""


def area_import(env):
    f = os.path.join(env.dir, "users.txt")
    with open(f, "w") as fp:
        fp.write(IMPORT_FILE)
    env.rcli("SADD", "backstop:domains", "example.org")
    env.rcli("SADD", "backstop:rcpt:example.org", "old")

    # bad lines: reported with their numbers; by default nothing is written
    env.expect(env.ctl("import", "example.org", f), 1,
               err=[f + ":6: address of another domain: carol@other.net",
                    f + ":11: control character: x\\x01y", "2 bad lines: nothing imported",
                    "--skip-bad to import the 5 valid users"])
    env.check(env.members("backstop:rcpt:example.org") == ["old"], "bad lines: set unchanged")
    # --skip-bad: the rest is imported
    env.expect(env.ctl("import", "--skip-bad", "example.org", f), 0,
               out="imported 5 users into example.org (0 already present), 2 bad lines",
               err=f + ":6:")
    env.check(env.members("backstop:rcpt:example.org") ==
              ["*", "alice", "bob", "dave", "eve", "old"], "imported members")
    env.expect(env.ctl("import", "--skip-bad", "example.org", f), 0,
               out="imported 0 users into example.org (5 already present), 2 bad lines")
    # --replace from stdin, atomically, no TTL left behind, no temp key left
    env.expect(env.ctl("import", "--replace", "example.org", "-",
                       stdin="alice\nzoe@example.org\nzoe\n"), 0,
               out="replaced the users of example.org: 2 users (1 new, 5 removed, 1 kept), "
                   "0 bad lines", err="1 duplicate entries")
    env.check(env.members("backstop:rcpt:example.org") == ["alice", "zoe"], "replaced set")
    env.check(env.rcli("TTL", "backstop:rcpt:example.org") == "-1", "no TTL after RENAME")
    env.check(env.rcli("KEYS", "backstop:import:*") == "", "no temporary key left")
    env.expect(env.ctl("import", "--replace", "example.org", "-", stdin="# nothing\n"), 1,
               err="refusing to empty the set")
    env.check(env.members("backstop:rcpt:example.org") == ["alice", "zoe"], "empty --replace refused")
    env.expect(env.ctl("import", "example.org", "-", stdin="\n# only comments\n"), 0,
               out="imported 0 users into example.org (0 already present), 0 bad lines")
    env.expect(env.ctl("import", "example.org", os.path.join(env.dir, "nope.txt")), 1,
               err="nope.txt")
    env.expect(env.ctl("import", "bad..domain", f), 2)
    env.expect(env.ctl("import", "new.example", "-", stdin="u1\n"), 0,
               err="new.example is not a protected domain")

    # a wrong-typed key: refused before writing, temp key cleaned, key intact
    env.rcli("SET", "backstop:rcpt:str.example", "x")
    env.expect(env.ctl("import", "str.example", "-", stdin="a\nb\n"), 1, err="not a set")
    env.check(env.rcli("GET", "backstop:rcpt:str.example") == "x", "wrong type untouched")
    env.check(env.rcli("KEYS", "backstop:import:*") == "", "no temporary key after failure")

    # 10,000 lines, a Postfix virtual_mailbox_maps file: pipelined batches
    big = os.path.join(env.dir, "vmailbox")
    with open(big, "w") as fp:
        fp.write("# generated\n")
        for i in range(10000):
            fp.write("user%05d@big.example\tbig.example/user%05d/\n" % (i, i))
    env.rcli("CONFIG", "RESETSTAT")
    env.expect(env.ctl("import", "big.example", big), 0,
               out="imported 10000 users into big.example (0 already present), 0 bad lines")
    env.check(env.rcli("SCARD", "backstop:rcpt:big.example") == "10000", "10,000 members")
    env.check(env.rcli("SISMEMBER", "backstop:rcpt:big.example", "user09999") == "1", "last one")
    stats = env.rcli("INFO", "commandstats")
    sadd = [l for l in stats.split("\n") if l.startswith("cmdstat_sadd:")]
    env.check(sadd and "calls=100," in sadd[0], "100 SADDs of 100 members: %s" % sadd)
    env.check(env.last_time < 20, "10,000 lines in %.1fs" % env.last_time)
    # --replace with the same 10,000 plus one: exact counts
    with open(big, "a") as fp:
        fp.write("extra@big.example x\n")
    env.expect(env.ctl("import", "--replace", "big.example", big), 0,
               out="replaced the users of big.example: 10001 users (1 new, 0 removed, 10000 kept)")


def area_ndr(env):
    env.expect(env.ctl("ndr", "set", "*", "deny"), 0, out="ndr * = deny (new)")
    env.expect(env.ctl("ndr", "set", ".Partner.example", "ALLOW"), 0,
               out="ndr .partner.example = allow (new)", err="subdomains of partner.example")
    env.expect(env.ctl("ndr", "set", "lists.example.org", "limit", "10/60m"), 0,
               out="ndr lists.example.org = limit 10/1h (new)")
    env.expect(env.ctl("ndr", "set", "lists.example.org", "limit 5/1d"), 0,
               out="= limit 5/1d (was limit 10/1h)")
    for bad in (["x.org", "limit", "0/1h"], ["x.org", "maybe"], ["x.org", "limit", "5/500ms"],
                ["..x", "deny"], ["x.org"]):
        env.expect(env.ctl("ndr", "set", *bad), 2, what="ndr set %s" % bad)
    env.check(env.rcli("HGET", "backstop:ndr", "lists.example.org") == "limit 5/1d", "stored")
    env.check(env.rcli("HEXISTS", "backstop:ndr", "x.org") == "0", "bad rules not stored")
    env.rcli("HSET", "backstop:ndr", "typo.example", "alow")
    r = env.ctl("ndr", "list")
    env.expect(r, 0, out=["typo.example            alow   <- not a rule",
                          "ndr_default ([policy])  deny"])
    lines = r[1].split("\n")
    env.check([l.split()[0] for l in lines[:4]] ==
              ["lists.example.org", ".partner.example", "typo.example", "*"],
              "ndr list order: %r" % lines[:4])

    env.expect(env.ctl("ndr", "explain", "A.B.partner.example"), 0,
               out=["a.b.partner.example          -", ".b.partner.example           -",
                    ".partner.example             allow          <- decides",
                    "result: allow (from .partner.example)", "gets: DUNNO (reason ndr_allow)"])
    env.expect(env.ctl("ndr", "explain", "partner.example"), 0,
               out=["*                            deny           <- decides",
                    "reason ndr_deny"], not_out=".partner.example")
    env.expect(env.ctl("ndr", "explain", "typo.example"), 0,
               out=["first set, but not a rule", "ndr_default ([policy])       deny           "
                    "<- decides", "result: deny (from ndr_default)"])
    env.expect(env.ctl("ndr", "explain", "someone@lists.example.org"), 0,
               out=["limit 5/1d", "none used yet", "reason ndr_under_limit"])
    env.rcli("SET", "backstop:ndrcount:lists.example.org", "5", "EX", "600")
    env.expect(env.ctl("ndr", "explain", "lists.example.org"), 0,
               out=["5 of 5 used in this period", "the next bounce is refused",
                    "reason ndr_limit", "Too many delivery status notifications"])
    env.expect(env.ctl("ndr", "del", "*"), 0, out="ndr * deleted")
    env.expect(env.ctl("ndr", "del", "*"), 1, err="no such entry")
    env.expect(env.ctl("ndr", "explain", "else.example"), 0,
               out=["ndr_default ([policy])       deny           <- decides"])
    allow = env.write_config("allow.ini", extra="[policy]\nndr_default = allow\n")
    env.expect(env.ctl("ndr", "explain", "else.example", config=allow), 0,
               out=["result: allow (from ndr_default)", "reason ndr_allow"])
    env.rcli("SADD", "backstop:domains", "prot.example")
    env.expect(env.ctl("ndr", "explain", "prot.example"), 0,
               out=["prot.example is a protected domain", "reason unknown_user"])
    env.expect(env.ctl("ndr", "explain", ".example"), 2)
    # more dots than the daemon looks at: only the shortest 14 parents count
    deep = ".".join("l%d" % i for i in range(20)) + ".example"
    env.rcli("HSET", "backstop:ndr", "." + ".".join(deep.split(".")[2:]), "allow")
    r = env.ctl("ndr", "explain", deep)
    env.expect(r, 0)
    rows = [l for l in r[1].split("\n") if l.startswith("    ") and not l.startswith("    (")]
    env.check(len(rows) == 17, "16 candidates at most (domain, 14 parents, *) and "
              "ndr_default")
    env.check("6 longer parent suffixes are not looked up" in r[1], "skipped parents said")
    env.check("reason ndr_deny" in r[1], "a parent beyond the 14 shortest is not consulted")


def area_block(env):
    env.expect(env.ctl("block", "add", "192.0.2.1"), 0, out="blocked 192.0.2.1 for 1h (reason: manual)")
    env.check(env.rcli("GET", "backstop:block:192.0.2.1") == "manual", "reason stored")
    env.check(3590 <= int(env.rcli("TTL", "backstop:block:192.0.2.1")) <= 3600, "block_time TTL")
    env.expect(env.ctl("block", "add", "2001:DB8:1:2::7", "--for", "2d", "--reason", "spam run"), 0,
               out="blocked 2001:db8:1:2::/64 for 2d (reason: spam run)")
    env.check(172790 <= int(env.rcli("TTL", "backstop:block:2001:db8:1:2::/64")) <= 172800,
              "IPv6 /64 key with --for")
    env.expect(env.ctl("block", "add", "::ffff:198.51.100.7"), 0, out="blocked 198.51.100.7")
    env.expect(env.ctl("block", "add", "127.0.0.5"), 0,
               err="127.0.0.5 is exempt ([ratelimit] exempt 127.0.0.0/8)")
    env.rcli("SADD", "backstop:exempt", "203.0.113.9")
    env.expect(env.ctl("block", "add", "203.0.113.9"), 0, err="203.0.113.9 is in backstop:exempt")
    for bad in (["1.2.3"], ["2001:db8::/48"], ["192.0.2.1/24"], ["x", "--for", "1h"],
                ["192.0.2.2", "--for", "soon"], ["192.0.2.2", "--reason", "a\nb"]):
        env.expect(env.ctl("block", "add", *bad), 2, what="block add %s" % bad)
    env.check(env.rcli("EXISTS", "backstop:block:192.0.2.2") == "0", "bad block not written")
    v6 = env.write_config("v6.ini", extra="[ratelimit]\nipv6_prefix = 48\n")
    env.expect(env.ctl("block", "add", "2001:db8:5:6::1", config=v6), 0,
               out="blocked 2001:db8:5::/48")

    r = env.ctl("block", "list")
    env.expect(r, 0, out=["CLIENT", "TIME LEFT", "192.0.2.1          59m",
                          "2001:db8:1:2::/64  1d23h", "spam run"])
    clients = [l.split()[0] for l in r[1].split("\n")[1:] if l]
    env.check(clients == sorted(clients) and len(clients) == 6, "block list sorted: %r" % clients)

    env.expect(env.ctl("block", "del", "2001:db8:1:2::/64"), 0, out="unblocked 2001:db8:1:2::/64")
    env.expect(env.ctl("block", "del", "2001:db8:1:2::abcd"), 1, err="was not blocked")
    env.check(env.rcli("EXISTS", "backstop:block:2001:db8:1:2::/64") == "0", "unblocked")

    env.expect(env.ctl("client", "192.0.2.1"), 1,
               out=["exempt:   no", 'blocked:  yes, reason "manual"', "refused"])
    env.expect(env.ctl("client", "127.0.0.5"), 0,
               out=["exempt:   yes, [ratelimit] exempt 127.0.0.0/8", "(ignored: exempt)",
                    "not refused"])
    env.expect(env.ctl("client", "203.0.113.9"), 0, out="203.0.113.9 is in backstop:exempt")
    # invalid recipients within the window, timed by Redis's clock
    sec, usec = env.rcli("TIME").split("\n")
    now = int(sec) * 1000 + int(usec) // 1000
    for i, age in enumerate((1000, 60000, 599000, 601000, 3600000)):
        env.rcli("ZADD", "backstop:rate:2001:db8:9:9::/64", str(now - age), "m%d" % i)
    env.expect(env.ctl("client", "2001:db8:9:9::1"), 0,
               out=["(counted and blocked as 2001:db8:9:9::/64)", "blocked:  no",
                    "3 invalid recipients in the last 10m"])
    env.expect(env.ctl("client", "192.0.2.0/24"), 2)
    off = env.write_config("off.ini", extra="[ratelimit]\ninvalid_recipients = 0\n")
    env.expect(env.ctl("client", "198.51.100.99", config=off), 0, out="not tracked")

    env.expect(env.ctl("stats"), 0, err="no statistics yet")
    env.rcli("HSET", "backstop:stats", "valid", "7", "unknown_user", "12345", "blocked", "3")
    r = env.ctl("stats")
    env.expect(r, 0)
    env.check(r[1] == "blocked           3\nunknown_user  12345\nvalid             7\n",
              "stats sorted and aligned: %r" % r[1])


def start_backstopd(env, extra_listen):
    ini = env.write_config("d.ini", server="listen = unix:%s\nlisten = %s" % (
        os.path.join(env.dir, "p.sock"), extra_listen))
    d = env.start("backstopd", [env.args.backstopd, "-f", "-c", ini])
    env.wait_for(lambda: os.path.exists(os.path.join(env.dir, "p.sock")), "backstopd")
    return ini


def area_check(env):
    if not env.args.backstopd or not os.access(env.args.backstopd, os.X_OK):
        raise Skip("no backstopd binary given (--backstopd)")
    port = env.free_port()
    start_backstopd(env, "inet:127.0.0.1:%d" % port)
    env.rcli("SADD", "backstop:domains", "example.com")
    env.rcli("SADD", "backstop:rcpt:example.com", "alice")
    env.rcli("HSET", "backstop:ndr", "*", "deny", ".partner.example", "allow",
             "lists.example.org", "limit 2/1h")

    def check(sender, rcpt, client="192.0.2.9", *more):
        return env.ctl("check", "--sender", sender, "--recipient", rcpt, "--client", client, *more)

    explained = "explanation (re-derived by backstopctl"
    env.expect(check("a@remote.example", "nobody@example.com"), 0,
               out=["action=550 5.1.1 User unknown",
                    explained, "nobody               not in backstop:rcpt:example.com",
                    "rule:      unknown_user"],
               err="counted this unknown recipient against client 192.0.2.9")
    env.check(env.rcli("ZCARD", "backstop:rate:192.0.2.9") == "1", "the daemon counted it")
    env.expect(env.ctl("client", "192.0.2.9"), 0, out="1 invalid recipients")
    env.expect(check("a@remote.example", "Alice+tag@Example.com"), 0,
               out=["action=DUNNO", "alice                in backstop:rcpt:example.com "
                    "(without its extension)", "rule:      valid"])
    env.expect(check("", "x@denied.example"), 0,
               out=["action=550 5.7.1 Delivery status notifications", "*                            deny"
                    "           <- decides", "rule:      ndr_deny"], not_out="differs")
    env.expect(check("<>", "x@a.partner.example", "192.0.2.9", "--helo", "mx.test"), 0,
               out=["action=DUNNO", "rule:      ndr_allow"])
    for i, want in enumerate(("ndr_under_limit", "ndr_under_limit", "ndr_limit")):
        r = check("", "b%d@lists.example.org" % i)
        env.expect(r, 0, out="rule:      " + want, what="limit %d" % i)
        env.check("differs" not in r[2], "limit %d: prediction matches the daemon" % i)
    env.rcli("SET", "backstop:block:192.0.2.66", "manual", "EX", "600")
    env.expect(check("a@b.example", "alice@example.com", "192.0.2.66"), 0,
               out=["action=450 4.7.1", "blocked:   yes", "rule:      blocked"])
    env.expect(check("a@b.example", "x@example.com", "127.0.0.1", "--server",
                     "inet:127.0.0.1:%d" % port), 0,
               out=["action=550 5.1.1", "exempt:    yes, [ratelimit] exempt 127.0.0.0/8"])
    env.check(env.rcli("EXISTS", "backstop:rate:127.0.0.1") == "0", "exempt client not counted")
    # a backstop.ini that differs from the daemon's: the mismatch is reported
    rep = env.write_config("report.ini", extra="[policy]\nmode = report\n")
    env.expect(env.ctl("check", "--sender", "a@b.example", "--recipient", "zz@example.com",
                       "--client", "192.0.2.10", "--server",
                       "unix:" + os.path.join(env.dir, "p.sock"), config=rep), 0,
               out="action=550 5.1.1", err="differs from the re-derived one")
    # usage and connection errors
    env.expect(env.ctl("check", "--sender", "a@b.c", "--recipient", "x@example.com"), 2,
               err="check needs")
    env.expect(check("a@b.c", "x@example.com", "not-an-ip"), 2, err="not an IP address")
    env.expect(check("a@b.c\nrecipient=evil@x", "x@example.com"), 2, err="control characters")
    env.expect(check("a@b.c", "x@example.com", "192.0.2.9", "--server", "unix:" +
                     os.path.join(env.dir, "none.sock")), 1, err="cannot connect")
    env.expect(check("a@b.c", "x@example.com", "192.0.2.9", "--server", "bogus"), 2)
    # a server that accepts but never answers: the timeout ends it
    mute = os.path.join(env.dir, "mute.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(mute)
    s.listen(1)
    env.expect(env.ctl("-t", "500ms", "check", "--sender", "a@b.c", "--recipient", "x@example.com",
                       "--client", "192.0.2.9", "--server", "unix:" + mute), 1,
               err="no complete answer within the timeout")
    env.check(env.last_time < 5, "mute server: gave up in %.1fs" % env.last_time)
    s.close()


def area_queue(env):
    env.rcli("SADD", "backstop:domains", "example.com")
    env.rcli("HSET", "backstop:ndr", "*", "deny", ".partner.example", "allow",
             "lists.example.org", "limit 10/1h")
    fixture = os.path.join(HERE, "postqueue.json")
    cap = os.path.join(env.dir, "postsuper")
    fake = os.path.join(env.dir, "fake-postsuper")
    with open(fake, "w") as f:
        f.write('#!/bin/sh\necho "$@" > "%s.args"\ncat > "%s.ids"\nexit "${FAKE_STATUS:-0}"\n'
                % (cap, cap))
    os.chmod(fake, 0o755)
    want = ["B0001", "B0005", "B0009", "B0014"]

    def ids():
        with open(cap + ".ids") as f:
            return f.read().split()

    def args():
        with open(cap + ".args") as f:
            return f.read().strip()

    r = env.ctl("purge-queue", "--from-json", fixture, "--postsuper", fake)
    env.expect(r, 0, out=["4 of 14 queued messages are bounces to NDR-denied domains "
                          "(11 bounces in all)", "dry run: nothing deleted"])
    listed = [l.split()[0] for l in r[1].split("\n") if l.startswith("B")]
    env.check(listed == want, "dry run lists exactly %r: %r" % (want, listed))
    env.check(not os.path.exists(cap + ".ids"), "dry run: postsuper not run")
    env.expect(env.ctl("purge-queue", "--yes", "--from-json", fixture, "--postsuper", fake), 0,
               out="handed 4 queue ids to postsuper -d -")
    env.check(ids() == want, "postsuper got exactly %r: %r" % (want, ids()))
    env.check(args() == "-d -", "postsuper args: %r" % args())
    env.expect(env.ctl("purge-queue", "--yes", "--queue", "deferred", "--config-dir",
                       "/etc/postfix-out", "--from-json", fixture, "--postsuper", fake), 0,
               out="2 of 14 queued messages")
    env.check(ids() == ["B0001", "B0014"], "--queue deferred: %r" % ids())
    env.check(args() == "-c /etc/postfix-out -d - deferred", "args: %r" % args())
    # postqueue itself (a stand-in that prints the fixture and records its args)
    pq = os.path.join(env.dir, "fake-postqueue")
    with open(pq, "w") as f:
        f.write('#!/bin/sh\necho "$@" > "%s.pq"\ncat "%s"\n' % (cap, fixture))
    os.chmod(pq, 0o755)
    env.expect(env.ctl("purge-queue", "--config-dir", "/etc/pf2", "--postqueue", pq), 0,
               out="4 of 14")
    with open(cap + ".pq") as f:
        env.check(f.read().strip() == "-c /etc/pf2 -j", "postqueue args")
    # failures: postsuper fails, postqueue fails, a missing program, bad lines
    env.expect(env.ctl("purge-queue", "--yes", "--from-json", fixture, "--postsuper", "/bin/false"),
               1, err="exited with status 1")
    env.expect(env.ctl("purge-queue", "--postqueue", "/bin/false"), 1, err="nothing deleted")
    env.expect(env.ctl("purge-queue", "--postqueue", os.path.join(env.dir, "none")), 1,
               err="cannot run")
    bad = os.path.join(HERE, "postqueue-bad.json")
    r = env.ctl("purge-queue", "--yes", "--from-json", bad, "--postsuper", fake)
    env.expect(r, 1, out="1 of", err=[":2: ", ":3: ", ":5: ", "not a Postfix queue id"])
    env.check(ids() == ["G0001"], "only the good line of the bad file: %r" % ids())
    env.expect(env.ctl("purge-queue", "--queue", "nosuch", "--from-json", fixture), 2)
    env.expect(env.ctl("purge-queue", "--from-json", "-", stdin=open(fixture).read()), 0,
               out="4 of 14")
    # nothing denied: nothing to delete, postsuper not run
    os.unlink(cap + ".ids")
    env.rcli("HSET", "backstop:ndr", "*", "allow")
    env.expect(env.ctl("purge-queue", "--yes", "--from-json", fixture, "--postsuper", fake), 0,
               out="0 of 14")
    env.check(not os.path.exists(cap + ".ids"), "nothing to delete: postsuper not run")


def area_rbl(env):
    # BACKSTOP_TEST_DNSMASQ=PATH picks the binary; =none tests the skip/install path
    dnsmasq = os.environ.get("BACKSTOP_TEST_DNSMASQ") or shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)
    if dnsmasq == "none":
        dnsmasq = None
    if not dnsmasq:
        if os.geteuid() != 0:
            raise Skip("dnsmasq is not installed (apt-get install dnsmasq-base) and we are "
                       "not root: rbl-check not tested")
        print("installing dnsmasq-base (the dnsmasq binary, no system service) with apt-get")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "dnsmasq-base"],
                       stdout=subprocess.DEVNULL, check=False)
        dnsmasq = "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None
        if not dnsmasq:
            raise Skip("dnsmasq could not be installed")
    v6 = ".".join(reversed("20010db8000000000000000000000001"))  # 2001:db8::1 per nibble
    # a free UDP port can be taken between our probe and dnsmasq's bind on a
    # busy machine: try a few ports, and say what dnsmasq said if none works
    for attempt in range(3):
        port = env.free_port(socket.SOCK_DGRAM)
        dm = env.start("dnsmasq", [
            dnsmasq, "--no-daemon", "--port=%d" % port, "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
            "--pid-file="] + (["--user=nobody"] if os.geteuid() == 0 else []) + [
            "--local=/zen.example/", "--local=/bl.example/",
            "--address=/2.0.0.127.zen.example/127.0.0.2",
            "--address=/2.0.0.127.bl.example/127.0.0.4",
            "--host-record=2.0.0.127.bl.example,127.0.0.10",
            "--address=/9.9.9.9.zen.example/127.255.255.254",
            "--address=/8.8.8.8.zen.example/10.0.0.1",
            "--address=/%s.zen.example/127.0.0.3" % v6,
        ])
        ns = "127.0.0.1:%d" % port

        def probe():
            r = env.ctl("rbl-check", "127.0.0.2", "--zone", "zen.example", "--nameserver", ns,
                        "-t", "1s")
            return "listed" in r[1]
        try:
            env.wait_for(probe, "dnsmasq", secs=20)
            break
        except RuntimeError:
            env.stop(dm)
            with open(os.path.join(env.dir, "dnsmasq.log"), errors="replace") as f:
                print("dnsmasq on port %d did not answer; its log:\n%s" % (port, f.read()[-2000:]))
            if attempt == 2:
                raise

    def rbl(*a):
        return env.ctl("rbl-check", "--nameserver", ns, "-t", "2s", *a)

    r = rbl("127.0.0.2", "--zone", "zen.example", "--zone", "bl.example")
    env.expect(r, 1, out=["127.0.0.2  zen.example  listed (127.0.0.2)",
                          "127.0.0.2  bl.example   listed ("])
    env.check("127.0.0.4" in r[1] or "127.0.0.10" in r[1], "bl.example answer")
    env.expect(rbl("127.0.0.1", "--zone", "zen.example", "--zone", "bl.example"), 0,
               out=["zen.example  not listed", "bl.example   not listed"])
    env.expect(rbl("2001:db8::1", "2001:db8::2", "--zone", "zen.example"), 1,
               out=["2001:db8::1  zen.example  listed (127.0.0.3)",
                    "2001:db8::2  zen.example  not listed"])
    env.expect(rbl("9.9.9.9", "--zone", "zen.example"), 0,
               out="lookup failed (127.255.255.254: an error code of the list")
    env.expect(rbl("8.8.8.8", "--zone", "zen.example"), 0,
               out="lookup failed (10.0.0.1: not a blocklist answer)")
    env.expect(rbl("127.0.0.1", "--zone", "refused.example"), 0, out="lookup failed (")
    env.expect(rbl("127.0.0.1", "--zone", "refused.example", "--strict"), 1, out="lookup failed")
    env.expect(env.ctl("rbl-check", "127.0.0.2", "--zone", "zen.example", "--nameserver",
                       "127.0.0.1:%d" % env.free_port(socket.SOCK_DGRAM), "-t", "1s"), 0,
               out="lookup failed (")
    env.check(env.last_time < 10, "dead nameserver: gave up in %.1fs" % env.last_time)
    env.expect(env.ctl("rbl-check"), 2, err="missing operands")
    env.expect(env.ctl("rbl-check", "1.2.3.x"), 2, err="not an IP address")
    env.expect(rbl("127.0.0.2", "--zone", "bad..zone"), 2)
    env.expect(env.ctl("rbl-check", "127.0.0.2", "--nameserver", "[::1]:53"), 2)
    # rbl-check does not need the config or Redis
    env.expect(env.ctl("rbl-check", "127.0.0.1", "--zone", "zen.example", "--nameserver", ns,
                       config="/nonexistent.ini"), 0, out="not listed")
    env.expect(env.ctl("rbl-check", "--help"), 0, out="zen.spamhaus.org, bl.spamcop.net")


AREAS = {"cli": area_cli, "domain": area_domain, "import": area_import, "ndr": area_ndr,
         "block": area_block, "check": area_check, "queue": area_queue, "rbl": area_rbl}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--backstopd")
    ap.add_argument("--only", choices=sorted(AREAS))
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    total, failed, skipped = 0, 0, []
    for name in ([args.only] if args.only else list(AREAS)):
        try:
            env = Env(args)
        except Skip as e:
            print("SKIP %s: %s" % (name, e))
            skipped.append(name)
            continue
        try:
            AREAS[name](env)
        except Skip as e:
            print("SKIP %s: %s" % (name, e))
            skipped.append(name)
        finally:
            env.close()
        print("%s: %d checks passed, %d failed" % (name, env.passed, len(env.failed)))
        total += env.passed
        failed += len(env.failed)
    print("total: %d passed, %d failed%s" % (total, failed,
                                             ", skipped: " + " ".join(skipped) if skipped else ""))
    if failed:
        return 1
    return SKIP if skipped and total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
