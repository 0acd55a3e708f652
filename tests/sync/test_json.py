"""backstopctl sync --json, and the sync records in stats --json and domain list --json."""
import json


def users(n, start=0):
    return "".join("user%06d@example.com\n" % i for i in range(start, start + n))


def two_domains(sync, com, org, extra="[sync]\nadd_domains = yes"):
    sync.config({
        "a": {"type": "file", "domain": "example.com", "path": sync.write("a.txt", com)},
        "b": {"type": "file", "domain": ["example.com", "example.org"],
              "path": sync.write("b.txt", org)},
    }, extra=extra)


def run_json(sync, *args, rc=0):
    r = sync.run("--json", *args).expect(rc)
    lines = r.out.splitlines()
    assert len(lines) == 1, r  # one object, one line: no text on stdout
    return json.loads(lines[0])


def test_sync_json_domains_sources_summary(sync):
    two_domains(sync, users(7), "boss@example.com\nx@example.org\nbad line\n")
    doc = run_json(sync)
    assert [s["source"] for s in doc["sources"]] == ["a", "b"]
    b = doc["sources"][1]
    assert (b["ok"], b["entries"], b["bad"], b["foreign"], b["error"]) == (True, 3, 1, 0, None)
    com, org = doc["domains"]
    assert com == {"domain": "example.com", "outcome": "ok", "added": 8, "removed": 0,
                   "unchanged": 0, "count": 8, "sources": ["a", "b"],
                   "first_added": ["boss", "user000000", "user000001", "user000002",
                                   "user000003"],
                   "first_removed": [], "error": None}
    assert (org["domain"], org["outcome"], org["count"]) == ("example.org", "ok", 1)
    s = doc["summary"]
    assert (s["dry_run"], s["domains"], s["written"], s["unchanged"], s["refused"], s["failed"],
            s["exit"]) == (False, 2, 2, 0, 0, 0, 0)
    assert s["seconds"] >= 0


def test_sync_json_refusal_failure_and_dry_run(sync):
    two_domains(sync, users(10), "x@example.org\n")
    run_json(sync)
    # a shrink of example.com, and a source that fails (example.com and example.org)
    two_domains(sync, users(5), "x@example.org\n")
    doc = run_json(sync, "--dry-run", rc=3)
    com = doc["domains"][0]
    assert (com["outcome"], com["removed"], com["unchanged"], com["count"]) == (
        "shrink-refused", 5, 5, 10)
    assert com["first_removed"] == ["user000005", "user000006", "user000007", "user000008",
                                    "user000009"]
    assert doc["summary"]["dry_run"] is True and doc["summary"]["exit"] == 3
    sync.config({"a": {"type": "file", "domain": "example.com", "path": "/nonexistent"}})
    doc = run_json(sync, rc=1)
    assert doc["sources"][0]["ok"] is False and "/nonexistent" in doc["sources"][0]["error"]
    com = doc["domains"][0]
    assert com["outcome"] == "source-failed" and "a: " in com["error"]
    assert doc["summary"]["failed"] == 1


def test_stats_and_domain_list_json_carry_the_records(sync):
    two_domains(sync, users(3), "x@example.org\n")
    now = int(sync.r.time()[0])
    run_json(sync)
    two_domains(sync, "", "x@example.org\n")
    run_json(sync, rc=3)  # example.com: empty-refused, its last_ok stays
    for args in (("stats", "--json"), ("domain", "list", "--json")):
        doc = json.loads(sync.ctl.run(*args, config=sync.ini).expect(0).out)
        rec = doc["sync"]
        assert set(rec) == {"example.com", "example.org"}, doc  # no "<domain>:ok" entries
        com = rec["example.com"]
        assert set(com) == {"time", "last_ok", "source", "count", "added", "removed", "outcome"}
        assert (com["outcome"], com["count"], com["added"], com["source"]) == (
            "empty-refused", 3, 0, "a,b")
        assert now <= com["last_ok"] <= com["time"] < now + 60
        assert rec["example.org"]["outcome"] == "unchanged"
    # only the domains asked for
    doc = json.loads(sync.ctl.run("domain", "list", "example.org", "--json",
                                  config=sync.ini).expect(0).out)
    assert list(doc["sync"]) == ["example.org"]
