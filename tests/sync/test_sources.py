"""backstopctl sync: each source type end to end (file, command, postfix)."""
import os
import shutil
import subprocess

import pytest


def file_source(sync, name, text, domain="example.com", mode="w"):
    return {"type": "file", "domain": domain, "path": sync.write(name, text, mode)}


def test_file_comments_crlf_bom(sync):
    # given a file with a BOM, CRLF line ends, comments, a map value column and a bad line
    text = (b"\xef\xbb\xbfAlice@Example.COM\r\n# staff\r\n\r\n  bob@example.com\tOK\r\n"
            b"@example.com\r\nnot-an-address\r\ncarol@other.org\r\n")
    sync.config({"hr": file_source(sync, "hr.txt", text, mode="wb")})
    # when it is synced
    r = sync.run()
    # then the canonical users are there, the catch-all is "*", and the rest is counted
    r.expect(0, out=["source hr: 5 entries, 1 not addresses, 1 of other domains",
                     "example.com: +3 -0 =0 (added: *, alice, bob): written"])
    assert sync.members("example.com") == {"*", "alice", "bob"}


def test_command_source(sync):
    sync.config({"crm": {"type": "command", "domain": "example.com",
                         "command": "printf 'a@example.com\\nb@example.com\\n'"}})
    sync.run().expect(0, out="example.com: +2 -0 =0")
    assert sync.members("example.com") == {"a", "b"}


@pytest.mark.parametrize("command,why", [
    ("echo late@example.com; sleep 30", "no result within the timeout"),
    ("echo half@example.com; exit 2", "exit status 2"),
])
def test_failing_command_writes_nothing(sync, command, why):
    # given a domain with users
    sync.r.sadd("backstop:rcpt:example.com", "old")
    sync.config({"crm": {"type": "command", "domain": "example.com", "command": command,
                         "timeout": "1s"}})
    # when its source fails
    r = sync.run()
    # then sync exits 1, says why, and the set is untouched
    r.expect(1, err=["source crm failed", why, "example.com: not written"])
    assert sync.members("example.com") == {"old"}
    assert sync.record("example.com")["outcome"] == "source-failed"


def postmap(sync, kind, name, text):
    path = sync.write(name, text)
    subprocess.run(["postmap", "%s:%s" % (kind, path)], check=True)
    return "%s:%s" % (kind, path)


def has_table_type(kind):
    return kind in subprocess.run(["postconf", "-m"], capture_output=True, text=True).stdout


@pytest.mark.skipif(not shutil.which("postmap"), reason="no postfix")
@pytest.mark.parametrize("kind", ["hash", "btree", "lmdb"])
def test_postfix_table(sync, kind):
    if not has_table_type(kind):
        pytest.skip("postmap has no %s tables here (postfix-%s not installed)" % (kind, kind))
    # given a relay_recipients table: addresses, a catch-all, a bare domain line
    table = postmap(sync, kind, "relay", "Alice@example.com OK\nbob@example.com OK\n"
                    "@example.org OK\nexample.net OK\ncarol@elsewhere.com OK\n")
    sync.config({"relay": {"type": "postfix", "domain": ["example.com", "example.org"],
                           "map": table}})
    sync.run().expect(0, out=["source relay: 4 entries", "example.com: +2 -0 =0",
                              "example.org: +1 -0 =0"])
    assert sync.members("example.com") == {"alice", "bob"}
    assert sync.members("example.org") == {"*"}


@pytest.mark.skipif(not shutil.which("postconf"), reason="no postfix")
def test_postfix_maps_parameter(sync):
    # given a private Postfix instance whose relay_recipient_maps names two tables
    t1 = postmap(sync, "hash", "r1", "a@example.com OK\n")
    t2 = sync.write("r2", "b@example.com OK\n")  # texthash: no postmap needed
    sync.write("main.cf", "relay_recipient_maps = %s, texthash:%s\n" % (t1, t2))
    sync.config({"relay": {"type": "postfix", "domain": "example.com",
                           "maps": "relay_recipient_maps", "config_directory": sync.dir}})
    sync.run().expect(0, out="example.com: +2 -0 =0")
    assert sync.members("example.com") == {"a", "b"}


def test_postfix_unlistable_table_type(sync):
    sync.config({"relay": {"type": "postfix", "domain": "example.com",
                           "map": "regexp:/etc/postfix/x"}})
    sync.run().expect(1, err="postmap -s cannot list regexp tables")
    assert sync.members("example.com") == set()


def test_union_of_two_sources(sync):
    sync.config({"hr": file_source(sync, "hr.txt", "a@example.com\nb@example.com\n"),
                 "crm": {"type": "command", "domain": "example.com",
                         "command": "echo b@example.com; echo c@example.com"}})
    sync.run().expect(0, out="example.com: +3 -0 =0")
    assert sync.members("example.com") == {"a", "b", "c"}
    assert sync.record("example.com")["source"] == "hr,crm"
    # one source named: the domain is not written (its part would take the
    # other source's users away), even with --force
    sync.run("--force", "hr").expect(1, err="[source crm] feeds it too and was not read")
    assert sync.members("example.com") == {"a", "b", "c"}
    sync.run("hr", "crm").expect(0, out="example.com: +0 -0 =3: unchanged")
    # one source empty: its users would go, refused (exit 3) until --force
    sync.config({"hr": file_source(sync, "hr.txt", ""),
                 "crm": {"type": "command", "domain": "example.com",
                         "command": "echo b@example.com; echo c@example.com"}})
    sync.run().expect(3, err="source hr gave no user of it")
    assert sync.members("example.com") == {"a", "b", "c"}
    assert sync.record("example.com")["outcome"] == "empty-refused"
    sync.run("--force").expect(0, out="example.com: +0 -1 =2")
    assert sync.members("example.com") == {"b", "c"}


def test_unknown_source_is_a_usage_error(sync):
    sync.config({"hr": file_source(sync, "hr.txt", "a@example.com\n")})
    sync.run("nosuch").expect(2, err="no [source nosuch]")
    assert sync.members("example.com") == set()


def test_a_file_source_that_is_no_regular_file_fails_at_once(sync):
    # given a FIFO (an open would wait for a writer forever) and a directory
    fifo = os.path.join(sync.dir, "users.fifo")
    os.mkfifo(fifo)
    for path in (fifo, sync.dir):
        sync.config({"dir": {"type": "file", "domain": "example.com", "path": path,
                             "timeout": "3s"}})
        # then the source fails, without waiting
        r = sync.run(timeout=20)
        r.expect(1, err="not a regular file")
        assert r.seconds < 3, r.seconds
