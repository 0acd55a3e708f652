"""backstopctl domain/user and import: the sets they write, bad operands, big imports."""
import os
import shutil
import subprocess

import pytest

def test_domain(env):
    env.ctl("domain", "add", "Example.COM", "example.net.").expect(0,
               out=["example.com: protected", "example.net: protected"],
               err="example.com has no users yet")
    assert env.members("backstop:domains") == ["example.com", "example.net"], "domains set"
    env.ctl("domain", "add", "example.com").expect(0, out="example.com: already protected")
    env.ctl("domain", "add", "ok.example", "bad domain", "x..y").expect(2,
               err=["bad domain: not a domain name", "x..y: not a domain name"])
    assert "ok.example" not in env.members("backstop:domains"), "a bad operand: nothing added"

    env.ctl("user", "add", "example.com", "Alice", "bob", "o'brien").expect(0,
               out=["alice@example.com: added", "bob@example.com: added",
                    "o'brien@example.com: added"])
    env.ctl("user", "add", "carol@EXAMPLE.com", "@example.net").expect(0,
               out=["carol@example.com: added", "*@example.net: added"])
    env.ctl("user", "add", "alice@example.com").expect(0, out="already present")
    env.ctl("user", "add", "example.com", "dave@other.org").expect(2,
               err="not an address at example.com")
    env.ctl("user", "add", "example.com").expect(2, err="which users?")
    env.ctl("user", "add", "nobody").expect(2)
    env.ctl("user", "add", "example.com", "a" * 129).expect(2, err="too long")
    env.ctl("user", "add", "example.com", "a\x01b").expect(2)
    assert env.members("backstop:rcpt:example.com") == ["alice", "bob", "carol", "o'brien"], "rcpt:example.com"
    assert env.members("backstop:rcpt:example.net") == ["*"], "catch-all member"
    env.ctl("user", "add", "example.org", "zed").expect(0,
               err="example.org is not a protected domain")

    r = env.ctl("user", "list", "example.com")
    r.expect(0)
    assert r.out == "alice\nbob\ncarol\no'brien\n", "user list: sorted, one a line: %r" % r.out
    env.ctl("user", "del", "example.com", "bob", "nobody").expect(1,
               out=["bob@example.com: removed", "nobody@example.com: was not there"])
    assert "bob" not in env.members("backstop:rcpt:example.com"), "bob removed"

    r = env.ctl("domain", "list")
    r.expect(0)
    assert r.out == ("example.com  3 users; mode enforce (config), 0 would-reject\n"
                     "example.net  catch-all (1 member); mode enforce (config), 0 would-reject\n"), \
        "domain list: %r" % r.out
    env.ctl("domain", "list", "example.com", "nope.example").expect(1,
               out="example.com  3 users", err="nope.example: not a protected domain")
    mode = {"mode": "enforce", "mode_source": "config", "would_reject": 0}
    doc = env.ctl("domain", "list", "--json").json(0)
    assert doc.get("domains") == [
        dict({"domain": "example.com", "users": 3, "catch_all": False}, **mode),
        dict({"domain": "example.net", "users": 1, "catch_all": True}, **mode)] \
        and doc.get("missing") == [], "domain list --json: %r" % doc
    doc = env.ctl("domain", "list", "--json", "example.net", "nope.example").json(
        1, "domain list --json with a missing domain")
    assert doc.get("domains") == [dict({"domain": "example.net", "users": 1, "catch_all": True},
                                       **mode)] \
        and doc.get("missing") == ["nope.example"], "missing listed: %r" % doc

    env.ctl("domain", "del", "example.net").expect(0, out="example.net: no longer protected",
               err=["backstop:rcpt:example.net (1 user(s)) is kept",
                    "redis-cli DEL backstop:rcpt:example.net"])
    assert env.rcli("EXISTS", "backstop:rcpt:example.net") == "1", "users kept without --purge"
    env.ctl("domain", "del", "example.net").expect(1, out="was not protected")
    env.ctl("domain", "del", "--purge", "example.net").expect(0,
               out="backstop:rcpt:example.net deleted (1 user)")
    assert env.rcli("EXISTS", "backstop:rcpt:example.net") == "0", "--purge deleted users"
    env.ctl("domain", "del", "--purge", "example.net").expect(1, out="no backstop:rcpt")
    env.ctl("domain", "del", "example.com", "--purge").expect(0)  # options after operands
    assert env.rcli("EXISTS", "backstop:rcpt:example.com") == "0", "purge after operand"
    env.ctl("domain", "list").expect(0, err="no protected domains")

    # a key of the wrong type is reported, not a crash
    env.rcli("SET", "backstop:domains", "oops")
    env.ctl("domain", "add", "example.com").expect(1, err="WRONGTYPE")
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


def test_import(env):
    f = os.path.join(env.dir, "users.txt")
    with open(f, "w") as fp:
        fp.write(IMPORT_FILE)
    env.rcli("SADD", "backstop:domains", "example.org")
    env.rcli("SADD", "backstop:rcpt:example.org", "old")

    # bad lines: reported with their numbers; by default nothing is written
    env.ctl("import", "example.org", f).expect(1,
               err=[f + ":6: address of another domain: carol@other.net",
                    f + ":11: control character: x\\x01y", "2 bad lines: nothing imported",
                    "--skip-bad to import the 5 valid users"])
    assert env.members("backstop:rcpt:example.org") == ["old"], "bad lines: set unchanged"
    # --skip-bad: the rest is imported
    env.ctl("import", "--skip-bad", "example.org", f).expect(0,
               out="imported 5 users into example.org (0 already present), 2 bad lines",
               err=f + ":6:")
    assert env.members("backstop:rcpt:example.org") == ["*", "alice", "bob", "dave", "eve", "old"]
    env.ctl("import", "--skip-bad", "example.org", f).expect(0,
               out="imported 0 users into example.org (5 already present), 2 bad lines")
    # --replace from stdin, atomically, no TTL left behind, no temp key left
    env.ctl("import", "--replace", "example.org", "-",
                       stdin="alice\nzoe@example.org\nzoe\n").expect(0,
               out="replaced the users of example.org: 2 users (1 new, 5 removed, 1 kept), "
                   "0 bad lines", err="1 duplicate entries")
    assert env.members("backstop:rcpt:example.org") == ["alice", "zoe"], "replaced set"
    assert env.rcli("TTL", "backstop:rcpt:example.org") == "-1", "no TTL after RENAME"
    assert env.rcli("KEYS", "backstop:import:*") == "", "no temporary key left"
    env.ctl("import", "--replace", "example.org", "-", stdin="# nothing\n").expect(1,
               err="refusing to empty the set")
    assert env.members("backstop:rcpt:example.org") == ["alice", "zoe"], "empty --replace refused"
    env.ctl("import", "example.org", "-", stdin="\n# only comments\n").expect(0,
               out="imported 0 users into example.org (0 already present), 0 bad lines")
    env.ctl("import", "example.org", os.path.join(env.dir, "nope.txt")).expect(1,
               err="nope.txt")
    env.ctl("import", "bad..domain", f).expect(2)
    env.ctl("import", "new.example", "-", stdin="u1\n").expect(0,
               err="new.example is not a protected domain")

    # a Windows export (UTF-8 BOM, CRLF): alice is alice; bytes no local
    # part has are bad lines, with their numbers
    win = os.path.join(env.dir, "ad-export.txt")
    with open(win, "wb") as fp:
        fp.write(b"\xef\xbb\xbfalice\r\nbob@bom.example\r\n")
    env.ctl("import", "bom.example", win).expect(0,
               out="imported 2 users into bom.example (0 already present), 0 bad lines")
    assert env.members("backstop:rcpt:bom.example") == ["alice", "bob"], "BOM and CR not stored"
    with open(win, "wb") as fp:
        fp.write(b"alice\r\nren\xe9\r\n\xef\xbb\xbfzed\r\nd\x7fel\r\n\"q\"@bom.example\r\n")
    env.ctl("import", "bom.example", win).expect(1,
               err=[win + ":2: not UTF-8: ren\\xe9", win + ":3: byte order mark",
                    win + ":4: control character", win + ":5: quoted local part",
                    "4 bad lines: nothing imported"])

    # a wrong-typed key: refused before writing, temp key cleaned, key intact
    env.rcli("SET", "backstop:rcpt:str.example", "x")
    env.ctl("import", "str.example", "-", stdin="a\nb\n").expect(1, err="not a set")
    assert env.rcli("GET", "backstop:rcpt:str.example") == "x", "wrong type untouched"
    assert env.rcli("KEYS", "backstop:import:*") == "", "no temporary key after failure"

    # 10,000 lines, a Postfix virtual_mailbox_maps file: pipelined batches
    big = os.path.join(env.dir, "vmailbox")
    with open(big, "w") as fp:
        fp.write("# generated\n")
        for i in range(10000):
            fp.write("user%05d@big.example\tbig.example/user%05d/\n" % (i, i))
    env.rcli("CONFIG", "RESETSTAT")
    env.ctl("import", "big.example", big).expect(0,
               out="imported 10000 users into big.example (0 already present), 0 bad lines")
    assert env.rcli("SCARD", "backstop:rcpt:big.example") == "10000", "10,000 members"
    assert env.rcli("SISMEMBER", "backstop:rcpt:big.example", "user09999") == "1", "last one"
    sadd = env.client().info("commandstats").get("cmdstat_sadd", {})
    assert sadd.get("calls") == 100, "100 SADDs of 100 members: %s" % sadd
    assert env.ctl.last.seconds < 20, "10,000 lines in %.1fs" % env.ctl.last.seconds
    # --replace with the same 10,000 plus one: exact counts
    with open(big, "a") as fp:
        fp.write("extra@big.example x\n")
    env.ctl("import", "--replace", "big.example", big).expect(0,
               out="replaced the users of big.example: 10001 users (1 new, 0 removed, 10000 kept)")


# Bytes no local part Postfix hands the policy server has: user add|del
# refuse an operand holding one (exit 2, nothing written) with the reason
# import gives for a key holding it. A quoted local part above all: Postfix
# passes "john doe"@q.test as john doe@q.test, so a member stored with its
# quotes would never match and the user would be refused (550 5.1.1).
BAD_USERS = [
    ('"john doe"@q.test', "quoted local part (write it unquoted, as Postfix passes it)"),
    ('"q"@q.test', "quoted local part"),
    ("x\\y@q.test", "quoted local part"),
    ("caf\udce9@q.test", "not UTF-8"),  # a Latin-1 byte (0xe9) on the command line
    ("a\u0085b@q.test", "control character"),  # C1, NEL
    ("a\x7fb@q.test", "control character"),
    ("a\ufeffb@q.test", "byte order mark"),
]


@pytest.mark.parametrize("user,why", BAD_USERS,
                         ids=["quoted", "quoted-q", "backslash", "latin1", "c1", "del", "bom"])
def test_user_refuses_what_import_refuses(env, user, why):
    local = user.rsplit("@", 1)[0]
    env.rcli("SADD", "backstop:domains", "q.test")
    env.ctl("user", "add", user).expect(2, err=why)
    env.ctl("user", "add", "q.test", local).expect(2, err=why)
    env.ctl("user", "add", "q.test", "ok", local).expect(2, err=why)
    env.ctl("user", "del", user).expect(2, err=why)
    env.ctl("user", "del", "q.test", local).expect(2, err=why)
    assert env.rcli("EXISTS", "backstop:rcpt:q.test") == "0", "a bad operand: nothing written"
    f = os.path.join(env.dir, "users.txt")
    with open(f, "wb") as fp:
        fp.write(user.encode("utf-8", "surrogateescape") + b"\n")
    env.ctl("import", "q.test", f).expect(1, err=f + ":1: " + why)


def test_user_unquoted(env):
    """A local part with a blank is written as Postfix passes it."""
    env.rcli("SADD", "backstop:domains", "q.test")
    env.ctl("user", "add", "John Doe@q.test").expect(0, out="john doe@q.test: added")
    env.ctl("user", "add", "q.test", "mary ann").expect(0, out="mary ann@q.test: added")
    assert env.members("backstop:rcpt:q.test") == ["john doe", "mary ann"]
    env.ctl("user", "del", "john doe@q.test").expect(0, out="john doe@q.test: removed")


def postmap_keys(path):
    """The keys Postfix reads from a table file (postmap -s), or None without postmap."""
    postmap = shutil.which("postmap") or (
        "/usr/sbin/postmap" if os.path.exists("/usr/sbin/postmap") else None)
    if not postmap:
        return None
    p = subprocess.run([postmap, "-s", "texthash:" + path], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, "postmap -s: %s" % p.stderr
    return sorted(line.split("\t", 1)[0] for line in p.stdout.splitlines())


# Postfix table files: a line that starts with a blank continues the logical
# line before it, value or not, across blank and comment lines (readllines()).
CONTINUED = [
    ("alice@vm.test\n    vm.test/alice/\nbob@vm.test vm.test/bob/\n", ["alice", "bob"], 1),
    ("alice@vm.test\n\n# a comment\n  vm.test/alice/\n\tbob@vm.test vm.test/bob/\n"
     "carol@vm.test vm.test/carol/\n", ["alice", "carol"], 2),
    ("alice@vm.test\n  bob@vm.test\n", ["alice"], 1),
]


@pytest.mark.parametrize("text,users,continued", CONTINUED,
                         ids=["value-on-next-line", "across-blank-and-comment", "list"])
def test_import_continuation_lines(env, text, users, continued):
    """given a table file with indented lines, when it is imported, then the
    users are the entries Postfix sees (postmap -s, when installed)."""
    f = os.path.join(env.dir, "vmailbox")
    with open(f, "w") as fp:
        fp.write(text)
    env.rcli("SADD", "backstop:domains", "vm.test")
    env.ctl("import", "vm.test", f).expect(0,
               out="imported %d users into vm.test (0 already present), 0 bad lines" % len(users),
               err="%d indented line%s continued the entry before" % (
                   continued, "" if continued == 1 else "s"))
    assert env.members("backstop:rcpt:vm.test") == users, "the users"
    keys = postmap_keys(f)
    if keys is not None:
        assert [k.split("@")[0] for k in keys] == users, "postmap -s sees %r" % keys


def test_import_indented_first_line(env):
    """Before the first entry, an indented line continues nothing: Postfix
    ignores it (with a warning); import reports it as a bad line."""
    env.ctl("import", "vm.test", "-", stdin="  zed@vm.test x\nalice@vm.test x\n").expect(1,
               err=["(stdin):1: starts with a blank but continues no entry",
                    "1 bad lines: nothing imported"])
    env.ctl("import", "--skip-bad", "vm.test", "-",
            stdin="  zed@vm.test x\n\tyves@vm.test\nalice@vm.test x\n").expect(0,
               out="imported 1 users into vm.test (0 already present), 2 bad lines")
    assert env.members("backstop:rcpt:vm.test") == ["alice"]
