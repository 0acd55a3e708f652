"""backstopctl sync: what is written, when, and how (atomic, guarded, recorded)."""
import subprocess
import threading
import time


def users(n, start=0):
    return "".join("user%06d@example.com\n" % i for i in range(start, start + n))


def one_file(sync, text, extra=""):
    sync.config({"dir": {"type": "file", "domain": "example.com",
                         "path": sync.write("users.txt", text)}}, extra=extra)


def test_second_run_writes_nothing(sync):
    one_file(sync, users(100))
    sync.run().expect(0, out="example.com: +100 -0 =0")
    renames, sadds = sync.calls("rename"), sync.calls("sadd")
    first = sync.record("example.com")
    time.sleep(1.1)
    # when nothing changed: no SADD, no RENAME; only the record's time moves
    sync.run().expect(0, out="example.com: +0 -0 =100: unchanged")
    assert (sync.calls("rename"), sync.calls("sadd")) == (renames, sadds)
    rec = sync.record("example.com")
    assert rec["outcome"] == "unchanged" and rec["count"] == "100"
    assert int(rec["time"]) > int(first["time"])


def test_removed_users_disappear_and_record(sync):
    one_file(sync, users(10))
    sync.run().expect(0)
    one_file(sync, users(9, start=1) + "new@example.com\n")
    sync.run().expect(0, out="example.com: +1 -1 =9 (added: new; removed: user000000): written")
    assert "user000000" not in sync.members("example.com")
    assert "new" in sync.members("example.com")
    rec = sync.record("example.com")
    assert rec == {"time": rec["time"], "source": "dir", "count": "10", "added": "1",
                   "removed": "1", "outcome": "ok"}
    assert sync.r.ttl("backstop:rcpt:example.com") == -1  # persisted
    assert sync.r.keys("backstop:tmp:*") == []


def test_shrink_guard(sync):
    one_file(sync, users(100))
    sync.run().expect(0)
    # when the source loses 21 % of the users
    one_file(sync, users(79))
    r = sync.run()
    # then nothing is written, exit 3, and the message says why and what to do
    r.expect(3, err=["would lose 21% of its 100 users", "max_shrink 20%", "--force"])
    assert len(sync.members("example.com")) == 100
    assert sync.record("example.com")["outcome"] == "shrink-refused"
    # 20 % exactly is allowed; --force lifts the guard
    sync.run("--force").expect(0, out="-21")
    assert len(sync.members("example.com")) == 79


def test_max_shrink_setting(sync):
    one_file(sync, users(100))
    sync.run().expect(0)
    one_file(sync, users(70), extra="[sync]\nmax_shrink = 30%")
    sync.run().expect(0, out="-30")
    assert len(sync.members("example.com")) == 70


def test_empty_guard(sync):
    one_file(sync, users(5))
    sync.run().expect(0)
    one_file(sync, "# nobody left\n")
    sync.run().expect(3, err="the set would become empty")
    assert len(sync.members("example.com")) == 5
    assert sync.record("example.com")["outcome"] == "empty-refused"
    sync.run("--force").expect(0, out="-5")
    assert sync.r.exists("backstop:rcpt:example.com") == 0


def test_dry_run_writes_nothing(sync):
    one_file(sync, users(10))
    sync.run("--dry-run").expect(0, out=["+10 -0 =0", "would be written", "1 to write"])
    assert sync.r.dbsize() == 0


def test_quiet(sync):
    one_file(sync, users(10))
    r = sync.run("--quiet").expect(0)
    assert r.out == "" and r.err == ""
    one_file(sync, users(1))
    r = sync.run("--quiet").expect(3, err="refused")
    assert r.out == ""


def test_add_domains(sync):
    one_file(sync, users(3))
    r = sync.run().expect(0)
    assert "is not a protected domain" in r.err
    assert sync.r.smembers("backstop:domains") == set()
    one_file(sync, users(4), extra="[sync]\nadd_domains = yes")
    sync.run().expect(0)
    assert sync.r.smembers("backstop:domains") == {"example.com"}


def test_wrong_type_key_is_not_overwritten(sync):
    sync.r.set("backstop:rcpt:example.com", "oops")
    one_file(sync, users(3))
    sync.run().expect(1, err="is a string, not a set")
    assert sync.r.get("backstop:rcpt:example.com") == "oops"
    assert sync.record("example.com")["outcome"] == "write-failed"
    assert sync.r.hget("backstop:sync", "example.com:ok") is None


def test_atomic_swap(sync, record):
    # given 20,000 users, and a new list that replaces half of them
    one_file(sync, users(20000))
    sync.run().expect(0)
    one_file(sync, users(20000, start=10000))
    seen, polls, stop = set(), [0], threading.Event()
    key = "backstop:rcpt:example.com"

    def reader():
        while not stop.is_set():
            # one MULTI: the size, a user only the old set has, one only the new set has
            p = sync.r.pipeline(transaction=True)
            size, old, new = p.scard(key).sismember(key, "user000000").sismember(
                key, "user029999").execute()
            seen.add((size, bool(old), bool(new)))
            polls[0] += 1
    t = threading.Thread(target=reader)
    t.start()
    r = sync.run("--force")
    stop.set()
    t.join()
    r.expect(0, out="+10000 -10000 =10000")
    # never a size other than 20,000, never both halves or neither
    assert seen <= {(20000, True, False), (20000, False, True)}, seen
    assert (20000, False, True) in seen
    record("%d polls during the sync saw only the old or the new set" % polls[0])


def test_50000_from_a_file(sync, record):
    one_file(sync, users(50000))
    t0 = time.monotonic()
    r = sync.run().expect(0, out="+50000 -0 =0")
    first = time.monotonic() - t0
    t0 = time.monotonic()
    sync.run().expect(0, out="unchanged")
    again = time.monotonic() - t0
    assert sync.r.scard("backstop:rcpt:example.com") == 50000
    record("50,000 addresses from a file: first sync %.2fs, unchanged re-run %.2fs "
           "(sanitizer build)" % (first, again))
    assert r.seconds < 60


def test_record_shown_by_domain_list_and_stats(sync):
    one_file(sync, users(3), extra="[sync]\nadd_domains = yes")
    sync.run().expect(0)
    line = "example.com  ok, 3 users, from dir, "
    sync.ctl.run("domain", "list", config=sync.ini).expect(0, out=["example.com", line])
    sync.ctl.run("stats", config=sync.ini).expect(0, out=line)
    # and with redis-cli (the documented format)
    out = subprocess.run(
        ["redis-cli", "-s", sync.server.sock, "HGET", "backstop:sync", "example.com"],
        capture_output=True, text=True).stdout
    assert out.startswith("time=") and out.rstrip().endswith(
        ";source=dir;count=3;added=3;removed=0;outcome=ok"), out


def ok_time(sync, domain="example.com"):
    return sync.r.hget("backstop:sync", domain + ":ok")


def test_daemon_field_follows_successful_syncs_only(sync):
    # given a first sync: <domain>:ok (what max_directory_age reads) is its time
    one_file(sync, users(100))
    sync.run().expect(0)
    first = ok_time(sync)
    assert first is not None and first == sync.record("example.com")["time"]
    assert abs(int(first) - int(sync.r.time()[0])) < 60
    # an unchanged run is a successful sync too: the field moves with the record
    time.sleep(1.1)
    sync.run().expect(0, out="unchanged")
    second = ok_time(sync)
    assert int(second) > int(first) and second == sync.record("example.com")["time"]
    # a refused shrink, an empty set and a failed source leave it alone
    time.sleep(1.1)
    one_file(sync, users(50))
    sync.run().expect(3)
    assert sync.record("example.com")["outcome"] == "shrink-refused"
    assert int(sync.record("example.com")["time"]) > int(second)
    one_file(sync, "")
    sync.run().expect(3)
    sync.config({"dir": {"type": "file", "domain": "example.com", "path": "/nonexistent"}})
    sync.run().expect(1)
    assert sync.record("example.com")["outcome"] == "source-failed"
    assert ok_time(sync) == second
    # the record list shows records, not the daemon's fields, and the last success's age
    sync.r.sadd("backstop:domains", "example.com")
    out = sync.ctl.run("domain", "list", config=sync.ini).expect(0).out
    assert ":ok" not in out
    assert "example.com  source-failed, 100 users, from dir, " in out
    assert "; last successful sync " in out and "never" not in out


def test_never_synced_successfully_says_never(sync):
    sync.config({"dir": {"type": "file", "domain": "example.com", "path": "/nonexistent"}})
    sync.run().expect(1)
    assert ok_time(sync) is None
    sync.ctl.run("stats", config=sync.ini).expect(
        0, out="example.com  source-failed, 0 users, from dir, ", not_out=":ok")
    assert "; last successful sync never" in sync.ctl.last.out


def test_refused_write_is_recorded_and_keeps_the_daemon_field(sync):
    # given a domain synced once, and a Redis user that may not RENAME
    one_file(sync, users(10))
    sync.run().expect(0)
    before = ok_time(sync)
    sync.r.execute_command("ACL", "SETUSER", "norename", "on", ">pw", "~*", "&*", "+@all",
                           "-rename")
    one_file(sync, users(11))
    with open(sync.ini) as f:
        text = f.read()
    sync.write("backstop.ini", text.replace("[redis]\n", "[redis]\nusername = norename\n"
                                            "password = pw\n", 1))
    time.sleep(1.1)
    # when the write fails inside the transaction
    r = sync.run()
    # then nothing changed but the record, which says so; the daemon's field stays
    r.expect(1, err="example.com: not written")
    assert len(sync.members("example.com")) == 10
    assert sync.record("example.com")["outcome"] == "write-failed"
    assert ok_time(sync) == before
    assert sync.r.keys("backstop:tmp:*") == []


def test_shrink_guard_counts_removed_users_not_the_net_change(sync):
    # given 100 users; when the source now lists 100 other people
    one_file(sync, users(100))
    sync.run().expect(0)
    one_file(sync, users(100, start=1000))
    # then it would lose all 100: refused (the net change is 0)
    sync.run().expect(3, err="would lose 100% of its 100 users")
    assert sync.members("example.com") == {"user%06d" % i for i in range(100)}
    assert sync.record("example.com")["outcome"] == "shrink-refused"


def test_a_set_evicted_while_it_fills_is_not_swapped_in(sync):
    # given a domain of 100 users, and a Redis whose memory limit evicts keys
    # with a TTL (the set being built has one) long before 60,000 users fit
    one_file(sync, users(100))
    sync.run().expect(0)
    used = sync.r.info("memory")["used_memory"]
    sync.r.config_set("maxmemory-policy", "volatile-lru")
    sync.r.config_set("maxmemory", used + 1024 * 1024)
    try:
        one_file(sync, users(60000))
        r = sync.run()
    finally:
        sync.r.config_set("maxmemory", 0)
        sync.r.config_set("maxmemory-policy", "noeviction")
    # then the domain is not written: the part that was built is not swapped in
    r.expect(1, err="example.com: not written")
    assert sync.r.info("stats")["evicted_keys"] > 0, "the test evicted nothing"
    assert len(sync.members("example.com")) == 100


def test_a_write_lost_to_another_writer_leaves_its_record(sync):
    # given a synced domain, and a sync of 200,000 users under way
    one_file(sync, users(100))
    sync.run().expect(0)
    one_file(sync, users(200000))
    stop = threading.Event()

    def other_writer():
        # when another writer changes the set while the new one is built,
        # and records its own sync
        while not stop.is_set():
            if sync.r.keys("backstop:tmp:sync:*"):
                p = sync.r.pipeline(transaction=True)
                p.sadd("backstop:rcpt:example.com", "hired")
                p.hset("backstop:sync", "example.com", "winner")
                p.hset("backstop:sync", "example.com:ok", "4000000000")
                p.execute()
                return
            time.sleep(0.001)
    t = threading.Thread(target=other_writer)
    t.start()
    r = sync.run()
    stop.set()
    t.join()
    # then this sync fails, and the other writer's set, record and time stay
    r.expect(1, err="changed while it was read")
    assert "hired" in sync.members("example.com") and len(sync.members("example.com")) == 101
    assert sync.r.hget("backstop:sync", "example.com") == "winner"
    assert sync.r.hget("backstop:sync", "example.com:ok") == "4000000000"
    assert sync.r.keys("backstop:tmp:*") == []
