"""backstopctl purge-queue with stand-ins for postqueue and postsuper."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

def test_queue(env):
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
    env.ctl("purge-queue", "--config-dir", "/etc/pf2", "--postqueue", pq).expect(0,
               out="5 of 14")
    with open(cap + ".pq") as f:
        assert f.read().strip() == "-c /etc/pf2 -j", "postqueue args"
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
