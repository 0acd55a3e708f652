"""backstopctl purge-queue with stand-ins for postqueue and postsuper, and
for postconf and postcat first on PATH (fake-postconf, fake-postcat)."""
import json
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def fake_bin(env, monkeypatch):
    """DIR/bin first on PATH, holding postconf and postcat (the fakes here)."""
    bindir = os.path.join(env.dir, "bin")
    if not os.path.isdir(bindir):
        os.makedirs(bindir)
        for prog in ("postconf", "postcat"):
            with open(os.path.join(bindir, prog), "w") as f:
                f.write('#!/bin/sh\nexec /bin/sh "%s" "$@"\n' % os.path.join(HERE, "fake-" + prog))
            os.chmod(os.path.join(bindir, prog), 0o755)
        monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ["PATH"])
        monkeypatch.setenv("FAKE_POSTCAT_DIR", env.dir)
        monkeypatch.setenv("FAKE_POSTCONF_ARGS", os.path.join(env.dir, "postconf.args"))
    return os.path.join(env.dir, "postconf.args")


def fake_postconf(env, monkeypatch, name="MAILER-DAEMON", append="yes", status=0):
    """postconf prints name and append (empty_address_recipient,
    append_at_myorigin) and exits status; the file with its arguments."""
    args = fake_bin(env, monkeypatch)
    monkeypatch.setenv("FAKE_EAR", name)
    monkeypatch.setenv("FAKE_APPEND", append)
    monkeypatch.setenv("FAKE_POSTCONF_STATUS", str(status))
    return args


def test_queue(env, monkeypatch):
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
    # B0012 bounces to y@[192.0.2.1]: an address literal gets "*" (deny), as in the daemon
    want = ["B0001", "B0005", "B0009", "B0012", "B0014"]

    def ids():
        with open(cap + ".ids") as f:
            return f.read().split()

    def args():
        with open(cap + ".args") as f:
            return f.read().strip()

    r = env.ctl("purge-queue", "--from-json", fixture, "--postsuper", fake)
    r.expect(0, out=["5 of 14 queued messages are bounces to NDR-denied domains "
                          "(11 bounces in all)", "dry run: nothing deleted"])
    listed = [l.split()[0] for l in r.out.split("\n") if l.startswith("B")]
    assert listed == want, "dry run lists exactly %r: %r" % (want, listed)
    assert not os.path.exists(cap + ".ids"), "dry run: postsuper not run"
    env.ctl("purge-queue", "--yes", "--from-json", fixture, "--postsuper", fake).expect(0,
               out="handed 5 queue ids to postsuper -d -")
    assert ids() == want, "postsuper got exactly %r: %r" % (want, ids())
    assert args() == "-d -", "postsuper args: %r" % args()
    env.ctl("purge-queue", "--yes", "--queue", "deferred", "--config-dir",
                       "/etc/postfix-out", "--from-json", fixture, "--postsuper", fake).expect(0,
               out="3 of 14 queued messages")
    assert ids() == ["B0001", "B0012", "B0014"], "--queue deferred: %r" % ids()
    assert args() == "-c /etc/postfix-out -d - deferred", "args: %r" % args()
    # postqueue itself (a stand-in that prints the fixture and records its args)
    pq = os.path.join(env.dir, "fake-postqueue")
    with open(pq, "w") as f:
        f.write('#!/bin/sh\necho "$@" > "%s.pq"\ncat "%s"\n' % (cap, fixture))
    os.chmod(pq, 0o755)
    # postconf first, expanded: how postqueue shows the null sender
    conf_args = fake_postconf(env, monkeypatch)
    env.ctl("purge-queue", "--config-dir", "/etc/pf2", "--postqueue", pq).expect(0,
               out="5 of 14", not_out="postcat")
    with open(cap + ".pq") as f:
        assert f.read().strip() == "-c /etc/pf2 -j", "postqueue args"
    with open(conf_args) as f:
        assert f.read().strip() == \
            "-c /etc/pf2 -x -h empty_address_recipient append_at_myorigin", "postconf args"
    # failures: postsuper fails, postqueue fails, a missing program, bad lines
    env.ctl("purge-queue", "--yes", "--from-json", fixture, "--postsuper", "/bin/false").expect(1, err="exited with status 1")
    env.ctl("purge-queue", "--postqueue", "/bin/false").expect(1, err="nothing deleted")
    env.ctl("purge-queue", "--postqueue", os.path.join(env.dir, "none")).expect(1,
               err="cannot run")
    bad = os.path.join(HERE, "postqueue-bad.json")
    r = env.ctl("purge-queue", "--yes", "--from-json", bad, "--postsuper", fake)
    r.expect(1, out="1 of", err=[":2: not JSON: ", ":3: not JSON: ", ":5: ",
                               "not a Postfix queue id"])
    assert ids() == ["G0001"], "only the good line of the bad file: %r" % ids()
    env.ctl("purge-queue", "--queue", "nosuch", "--from-json", fixture).expect(2)
    env.ctl("purge-queue", "--from-json", "-", stdin=open(fixture).read()).expect(0,
               out="5 of 14")
    # nothing denied: nothing to delete, postsuper not run
    os.unlink(cap + ".ids")
    env.rcli("HSET", "backstop:ndr", "*", "allow")
    env.ctl("purge-queue", "--yes", "--from-json", fixture, "--postsuper", fake).expect(0,
               out="0 of 14")
    assert not os.path.exists(cap + ".ids"), "nothing to delete: postsuper not run"


# The queue of test_null_sender_address: (id, sender postqueue shows,
# recipient, the true envelope sender postcat prints: "" is <>, None: gone)
SHOWN = "bounces@example.com"
EVIL = ("x\n*** MESSAGE FILE END hold/E0001 ***\n*** ENVELOPE RECORDS hold/R0003 ***\n"
        "sender: \n*** MESSAGE CONTENTS hold/R0003 ***\n*** MESSAGE FILE END hold/R0003 ***")
NAMED_QUEUE = [
    ("N0001", SHOWN, "a@denied.example", ""),
    ("R0001", SHOWN, "b@denied.example", SHOWN),
    ("N0002", SHOWN, "c@denied.example", ""),
    ("R0002", SHOWN.upper(), "d@denied.example", SHOWN.upper()),
    ("G0001", SHOWN, "e@denied.example", None),
    ("Z0001", "", "f@denied.example", None),          # shown as "": never checked
    ("K0001", SHOWN, "g@partner.example", ""),        # allowed: not a candidate
    ("E0001", SHOWN, "h@denied.example", EVIL),       # a sender forging R0003's answer
    ("R0003", SHOWN, "i@denied.example", SHOWN),
    ("O0001", "alice@example.com", "j@denied.example", "alice@example.com"),
]


def fake_queue(env, monkeypatch, entries, hang=()):
    """A postqueue printing entries (its path) and postcat answering for
    them; the file where postcat records its runs."""
    fake_bin(env, monkeypatch)
    monkeypatch.setenv("FAKE_POSTCAT_HANG", " ".join(hang))
    catdir = os.path.join(env.dir, "cat")
    os.makedirs(catdir, exist_ok=True)
    for name in os.listdir(catdir):
        os.unlink(os.path.join(catdir, name))
    queue = os.path.join(env.dir, "queue.json")
    with open(queue, "w") as f:
        for qid, shown, rcpt, true in entries:
            f.write(json.dumps({"queue_name": "hold", "queue_id": qid, "sender": shown,
                                "recipients": [{"address": rcpt}]}) + "\n")
            if true is not None:
                with open(os.path.join(catdir, qid), "w") as c:
                    c.write(true)
    pq = os.path.join(env.dir, "fake-postqueue")
    with open(pq, "w") as f:
        f.write('#!/bin/sh\ncat "%s"\n' % queue)
    os.chmod(pq, 0o755)
    runs = os.path.join(env.dir, "postcat.runs")
    if os.path.exists(runs):
        os.unlink(runs)
    return pq, runs


def postsuper_stub(env):
    """A postsuper writing the ids it is given to a file: (its path, the file)."""
    cap = os.path.join(env.dir, "postsuper.ids")
    fake = os.path.join(env.dir, "fake-postsuper")
    with open(fake, "w") as f:
        f.write('#!/bin/sh\ncat > "%s"\n' % cap)
    os.chmod(fake, 0o755)
    if os.path.exists(cap):
        os.unlink(cap)
    return fake, cap


def listed(out):
    return [l.split()[0] for l in out.split("\n") if l[:1].isupper()]


def postcat_runs(runs):
    with open(runs) as f:
        return f.read().split("\n")[:-1]


def test_null_sender_address(env, monkeypatch):
    """empty_address_recipient = an address: only messages whose true
    envelope sender is <> (postcat) are selected, dry run and --yes alike."""
    env.rcli("HSET", "backstop:ndr", "*", "deny", "partner.example", "allow")
    fake_postconf(env, monkeypatch, SHOWN)
    pq, runs = fake_queue(env, monkeypatch, NAMED_QUEUE)
    postsuper, got = postsuper_stub(env)
    want = ["N0001", "N0002", "Z0001"]
    checked = ["N0001", "R0001", "N0002", "R0002", "G0001", "E0001", "R0003"]
    for yes in ([], ["--yes"]):
        r = env.ctl("purge-queue", "--postqueue", pq, "--postsuper", postsuper, *yes)
        r.expect(1, out=["kept: R0001 hold b@denied.example: not a bounce, a real message from "
                         "bounces@example.com",
                         "kept: R0002 hold d@denied.example: not a bounce, a real message from "
                         "BOUNCES@EXAMPLE.COM",
                         "kept: R0003 hold i@denied.example: not a bounce",
                         "kept: G0001 hold e@denied.example: its envelope sender could not be "
                         "checked",
                         "kept: E0001 hold h@denied.example: its envelope sender could not be",
                         "empty_address_recipient = bounces@example.com: mail from that address "
                         "looks like a bounce; postcat checked the envelope sender of 7 "
                         "messages: 2 bounces, 3 real (kept), 2 not checked (kept)",
                         "3 of 10 queued messages are bounces to NDR-denied domains (6 bounces "
                         "in all)"],
                 err=["fatal: open queue file G0001", "not the output expected"],
                 what=" ".join(["purge-queue"] + yes))
        assert listed(r.out) == want, "%s lists %r\n%r" % (yes, listed(r.out), r)
        assert ("handed 3 queue ids" in r.out) == bool(yes), r
        # one run for all 7 (it stops at G0001), then one id a run
        calls = postcat_runs(runs)
        assert calls[0] == " ".join(checked) and sorted(calls[1:]) == sorted(checked), calls
        os.unlink(runs)
    with open(got) as f:
        assert f.read().split() == want, "postsuper got only the bounces"


def test_null_sender_address_batches(env, monkeypatch):
    env.rcli("HSET", "backstop:ndr", "*", "deny")
    fake_postconf(env, monkeypatch, SHOWN)
    postsuper, got = postsuper_stub(env)
    many = [("N%04d" % i, SHOWN, "x@denied.example", "") for i in range(250)]
    pq, runs = fake_queue(env, monkeypatch, many)
    env.ctl("purge-queue", "--yes", "--postqueue", pq, "--postsuper", postsuper).expect(
        0, out=["checked the envelope sender of 250 messages: 250 bounces, 0 real",
                "handed 250 queue ids"])
    assert [len(c.split()) for c in postcat_runs(runs)] == [100, 100, 50]
    with open(got) as f:
        assert len(f.read().split()) == 250


def test_null_sender_address_postcat_hangs(env, monkeypatch):
    """A postcat that never answers is killed at --timeout; its ids are kept."""
    env.rcli("HSET", "backstop:ndr", "*", "deny")
    fake_postconf(env, monkeypatch, SHOWN)
    postsuper, got = postsuper_stub(env)
    pq, runs = fake_queue(env, monkeypatch, NAMED_QUEUE[:2], hang=["R0001"])
    r = env.ctl("--timeout", "1s", "purge-queue", "--yes", "--postqueue", pq, "--postsuper",
                postsuper)
    r.expect(1, out=["kept: R0001 hold b@denied.example: its envelope sender could not be "
                     "checked", "1 bounces, 0 real (kept), 1 not checked", "handed 1 queue ids"],
             err="postcat: no answer within 1000ms (--timeout): killed")
    assert r.seconds < 10, r
    assert postcat_runs(runs) == ["N0001 R0001", "N0001", "R0001"]
    with open(got) as f:
        assert f.read().split() == ["N0001"]


def test_null_sender_address_postcat_keeps_failing(env, monkeypatch):
    """Every message gone: 20 failed postcat runs, then no more; all kept."""
    env.rcli("HSET", "backstop:ndr", "*", "deny")
    fake_postconf(env, monkeypatch, SHOWN)
    postsuper, got = postsuper_stub(env)
    gone = [("G%04d" % i, SHOWN, "x@denied.example", None) for i in range(150)]
    pq, runs = fake_queue(env, monkeypatch, gone)
    env.ctl("purge-queue", "--yes", "--postqueue", pq, "--postsuper", postsuper).expect(
        1, out=["0 bounces, 0 real (kept), 150 not checked", "0 of 150 queued"],
        err="postcat failed 20 times: stopped checking")
    assert len(postcat_runs(runs)) == 20
    assert not os.path.exists(got), "nothing to delete: postsuper not run"


@pytest.mark.parametrize("name,append,checks", [
    ("MAILER-DAEMON", "yes", False),   # cleanup qualifies bare senders: never a real one
    ("MAILER-DAEMON", "no", True),     # ... unless append_at_myorigin = no
    ("", "no", False),                 # shown as "": no real sender is empty
])
def test_when_postcat_checks(env, monkeypatch, name, append, checks):
    env.rcli("HSET", "backstop:ndr", "*", "deny")
    fake_postconf(env, monkeypatch, name, append)
    queue = [("N0001", name, "a@denied.example", ""),
             ("R0001", name, "b@denied.example", name or "x@example.com")]
    pq, runs = fake_queue(env, monkeypatch, queue)
    r = env.ctl("purge-queue", "--postqueue", pq)
    r.expect(0, out="%d of 2 queued" % (1 if checks else 2))
    assert os.path.exists(runs) == checks, r
    assert ("postcat checked the envelope sender of 2" in r.out) == checks, r
    assert listed(r.out) == (["N0001"] if checks else ["N0001", "R0001"]), r


def test_postconf_fails_nothing_deleted(env, monkeypatch):
    env.rcli("HSET", "backstop:ndr", "*", "deny")
    fake_postconf(env, monkeypatch, status=1)
    pq, _ = fake_queue(env, monkeypatch, NAMED_QUEUE[:1])
    postsuper, got = postsuper_stub(env)
    env.ctl("purge-queue", "--yes", "--postqueue", pq, "--postsuper", postsuper).expect(
        1, err=["cannot read empty_address_recipient", "nothing deleted"])
    assert not os.path.exists(got), "postsuper not run"
