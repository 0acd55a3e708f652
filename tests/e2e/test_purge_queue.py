"""
tests/e2e/test_purge_queue.py - "backstopctl purge-queue" on a real Postfix queue

    /usr/bin/python3 -m pytest tests/e2e/test_purge_queue.py --backstopctl BUILD/backstopctl

What the module fixture `pq` starts (all under one temporary directory, all
stopped whatever happens: Postfix with "postfix -c DIR stop", redis-server
by PID):

    redis-server   on WORK/redis/redis.sock (no TCP port), seeded with
                   HSET backstop:ndr * deny partner.test allow lists.test "limit 3/1h"
                   SADD backstop:domains example.com
    Postfix        tests/support/postfix.py, mynetworks = 127.0.0.0/8
                   (relays for the test client), every transport discard, and
                   smtpd_recipient_restrictions = check_client_access static:HOLD, permit
                   so that every accepted message goes straight to the hold
                   queue: nothing is delivered, the queue is stable. No
                   backstopd: purge-queue reads Redis and the queue itself.

backstopctl gets a config with [redis] server = unix:WORK/redis/redis.sock and
[policy] ndr_default = allow, so every "deny" it finds comes from Redis.

The queue holds a mix, each message submitted with smtplib (queue id from the
"250 ... queued as ID" reply):

    a  null sender, every recipient in an NDR-denied domain (by "*")
       (one per domain, and one with two denied recipients) -> purged
    b  null sender to partner.test (allow)                   -> kept
    c  null sender to a denied and an allowed domain         -> kept
    d  normal sender to the denied domains                   -> kept
    e  normal sender to local (example.com) / partner.test   -> kept
    f  null sender to example.com (a protected domain)       -> kept
    g  null sender to lists.test ("limit 3/1h", not deny)    -> kept

The tests are steps in file order on that one queue: it holds exactly that
(postqueue -c DIR -j); (1) a dry run lists exactly the a ids and changes
nothing; --queue deferred selects nothing, --queue hold the same ids; (2)
--yes deletes exactly those (postqueue and the postsuper lines in the
maillog), every other message unchanged and still on hold; (3) --yes again
finds nothing, exit 0; (4) after HSET backstop:ndr partner.test deny it
selects exactly b and c, and --yes deletes exactly them; d, e, f, g stay.
When the queue cannot be filled, the other steps are skipped.

Then, on one more Postfix each (fixture `named`, parametrized), the null
sender shown as an address: empty_address_recipient = bounces@example.com
(a real sender can use it) and = nulls@$mydomain (showq prints it expanded,
"postconf -h" does not). Each queue holds

    n  null sender to denied domains                         -> purged
    r  the real sender postqueue shows exactly as the null
       sender (and the same address in other case), to the
       denied domains                                        -> kept
    k  null sender to keep.test (allow)                      -> kept
    o  another real sender to a denied domain                -> kept

postqueue must show n and r alike (else the case proves nothing); a dry
run lists exactly n, lists r as kept and says postcat checked n and r; --yes
deletes exactly n (postqueue and the maillog) and leaves r, k, o as they
were. The code before the fix listed and deleted r with bounces@example.com,
and found no bounce at all with nulls@$mydomain.

Not root, or postfix/redis-server missing: the module is skipped, loudly.
The terminal summary has the queue ids per category and what each
backstopctl run selected and deleted.
"""
import os
import re
import subprocess
import time

import pytest

from support.postfix import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postfix]

PREFIX = "backstop:"

DATA = """\
HSET backstop:ndr * deny
HSET backstop:ndr partner.test allow
HSET backstop:ndr lists.test "limit 3/1h"
SADD backstop:domains example.com
SADD backstop:rcpt:example.com alice bob postmaster
"""

# (category, sender, recipients); "" is the null sender
MESSAGES = [
    ("a", "", ["victim@forged.test"]),
    ("a", "", ["x@other.test"]),
    ("a", "", ["someone@forged.test"]),
    ("a", "", ["y@deep.sub.other.test"]),
    ("a", "", ["victim2@forged.test", "z@other.test"]),
    ("b", "", ["postmaster@partner.test"]),
    ("c", "", ["victim3@forged.test", "ops@partner.test"]),
    ("d", "alice@example.com", ["victim@forged.test"]),
    ("d", "bob@example.com", ["x@other.test", "victim@forged.test"]),
    ("e", "carol@partner.test", ["alice@example.com"]),
    ("e", "alice@example.com", ["ops@partner.test", "bob@example.com"]),
    ("f", "", ["alice@example.com"]),
    ("g", "", ["owner@lists.test"]),
]
CATEGORIES = {
    "a": "null sender, all recipients in denied domains",
    "b": "null sender to partner.test (allow)",
    "c": "null sender to a denied and an allowed domain",
    "d": "normal sender to denied domains",
    "e": "normal sender to local/allowed domains",
    "f": "null sender to a protected (local) domain",
    "g": "null sender to a limit domain",
}

# every accepted message goes on hold: the queue is stable
MAIN_CF = """\
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.com
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_client_access static:HOLD, permit
"""


def check(cond, msg):
    if not cond:
        pytest.fail(msg, pytrace=False)


class Ctl:
    def __init__(self, binary, work, redis_sock, etc):
        self.binary = binary
        self.etc = etc
        self.conf = os.path.join(work, "backstopctl.ini")
        with open(self.conf, "w") as f:
            f.write("# written by tests/e2e/test_purge_queue.py\n[redis]\nserver = unix:%s\n"
                    "[policy]\nndr_default = allow\n" % redis_sock)
        self.runs = []

    def purge(self, *args):
        cmd = [self.binary, "-c", self.conf, "purge-queue", "--config-dir", self.etc] + list(args)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                           stdin=subprocess.DEVNULL)
        print("# $ %s\n-> %d\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
        listed = re.findall(r"^([0-9A-Za-z]+) +(?:incoming|active|deferred|hold|maildrop) +\S",
                            r.stdout, re.M)
        self.runs.append((" ".join(["purge-queue"] + list(args)), r.returncode, listed))
        return r, listed


class PurgeQueue:
    """The Postfix instance, Redis, backstopctl and what the steps found."""

    def __init__(self, mta, db, ctl):
        self.mta, self.db, self.ctl = mta, db, ctl

    def report(self):
        if not hasattr(self, "ids"):
            return []
        out = ["Queue ids per category (all on hold):"]
        for c, desc in CATEGORIES.items():
            out.append("  %s %-48s %s" % (c, desc, " ".join(
                "%s<%s>->%s" % (q, self.by_id[q][1], ",".join(self.by_id[q][2]))
                for q in self.ids[c])))
        out.append("backstopctl runs (exit status: listed ids):")
        for what, rc, listed in self.ctl.runs:
            out.append("  %-48s %d: %s" % (what, rc, " ".join(sorted(listed)) or "-"))
        for label, attr in (("selected by the first dry run", "dry_listed"),
                            ("deleted by the first --yes", "deleted1"),
                            ("in the queue after it", "left1"),
                            ("selected once partner.test is deny", "dry_listed2"),
                            ("deleted by --yes then", "deleted2"),
                            ("in the queue at the end", "left2")):
            if hasattr(self, attr):
                ids = sorted(getattr(self, attr))
                out.append("  %-36s %2d  %s" % (label, len(ids), " ".join(
                    "%s(%s)" % (q, self.by_id[q][0]) for q in ids) or "-"))
        return out


@pytest.fixture(scope="module")
def pq(backstopctl_bin, e2e_work, postfix, e2e_redis, e2e_db, e2e_report):
    e2e_db.load(DATA)
    mta = postfix("pq", MAIN_CF).start()
    p = PurgeQueue(mta, e2e_db, Ctl(backstopctl_bin, e2e_work, e2e_redis.sock, mta.etc))
    print("e2e: Postfix -c %s on 127.0.0.1:%d (everything on hold), Redis %s, work dir %s"
          % (mta.etc, mta.port, e2e_redis.sock, e2e_work))
    yield p
    e2e_report.extend(p.report())


@pytest.fixture(autouse=True)
def queue_filled(request):
    """Nothing after the first step means anything with an unfilled queue."""
    if "pq" not in request.fixturenames:
        return
    if request.node.name != "test_queue_holds_the_submitted_mix_on_hold" and \
            not hasattr(request.getfixturevalue("pq"), "initial"):
        pytest.skip("the queue was not filled")


def summary_counts(out):
    m = re.search(r"^(\d+) of (\d+) queued messages are bounces to NDR-denied domains "
                  r"\((\d+) bounces in all\)$", out, re.M)
    return tuple(int(x) for x in m.groups()) if m else None


# ---------------------------------------------------------------------------

class Env:
    pass


E = Env()
RESULTS = []  # (ok, name, detail)


def ids_of(pq, *cats):
    return sorted(i for c in cats for i in pq.ids[c])


def expect_run(pq, r, listed, want, total, bounces, what):
    """exit 0, no sanitizer report, exactly `want` listed, the summary line right."""
    check(r.returncode == 0, "%s: exit %d\n%s%s" % (what, r.returncode, r.stdout, r.stderr))
    check(not re.search(r"Sanitizer|runtime error", r.stderr), "%s: %s" % (what, r.stderr))
    got = summary_counts(r.stdout)
    check(not (got and got[2] == 0 and bounces > 0),
          "%s: backstopctl sees no bounce at all among the %d queued messages (want %d): "
          "postqueue -j shows the null sender as \"sender\": \"%s\" "
          "($empty_address_recipient), not \"\"\n%s"
          % (what, got[1] if got else total, bounces, getattr(pq, "null_shown", "MAILER-DAEMON"),
             r.stdout))
    check(sorted(listed) == sorted(want), "%s listed %s, want %s\n%s"
          % (what, sorted(listed), sorted(want), r.stdout))
    got = summary_counts(r.stdout)
    check(got == (len(want), total, bounces), "%s: summary %s, want %s\n%s"
          % (what, got, (len(want), total, bounces), r.stdout))


def expect_queue(pq, want_ids, what, keep=None):
    """The queue holds exactly want_ids, each as first seen (all on hold);
    keep: the E attribute to record the queue ids in (for the summary)."""
    snap = pq.mta.queue_snapshot()
    if keep:
        setattr(pq, keep, sorted(snap))
    check(sorted(snap) == sorted(want_ids), "%s: queue ids %s, want %s"
          % (what, sorted(snap), sorted(want_ids)))
    for qid in want_ids:
        check(snap[qid] == pq.initial[qid], "%s: %s changed: %s, was %s"
              % (what, qid, snap[qid], pq.initial[qid]))
        check(snap[qid][0] == "hold", "%s: %s is in queue %s" % (what, qid, snap[qid][0]))
    return snap


def postsuper_removed(pq, since):
    """Queue ids postsuper logged as removed after maillog position `since`."""
    return sorted(re.findall(r"postsuper\[\d+\]: ([0-9A-Za-z]+): removed", pq.mta.log.text(since)))


def test_queue_holds_the_submitted_mix_on_hold(pq):
    pq.ids = {c: [] for c in CATEGORIES}
    pq.by_id = {}
    for n, (cat, sender, rcpts) in enumerate(MESSAGES):
        qid = pq.mta.submit(sender, rcpts, n)
        pq.ids[cat].append(qid)
        pq.by_id[qid] = (cat, sender, tuple(sorted(rcpts)))
    pq.all = sorted(pq.by_id)
    pq.remaining1 = ids_of(pq, "b", "c", "d", "e", "f", "g")
    pq.remaining2 = ids_of(pq, "d", "e", "f", "g")
    check(len(pq.all) == len(MESSAGES), "duplicate queue ids: %s" % pq.ids)

    def complete():
        snap = pq.mta.queue_snapshot()
        return snap if sorted(snap) == pq.all else None
    snap = wait_until(complete, 20, 0.2)
    check(snap, "the queue does not hold the %d submitted messages: %s"
          % (len(pq.all), sorted(pq.mta.queue_snapshot())))
    # showq prints the null sender as $empty_address_recipient (MAILER-DAEMON)
    pq.null_shown = pq.mta.postconf("empty_address_recipient")
    for qid, (cat, sender, rcpts) in pq.by_id.items():
        check(snap[qid][0] == "hold", "%s (%s) is in queue %s, not hold" % (qid, cat, snap[qid][0]))
        check(snap[qid][1] == (sender or pq.null_shown) and snap[qid][2] == rcpts,
              "%s (%s): postqueue shows <%s> -> %s, submitted <%s> -> %s"
              % (qid, cat, snap[qid][1], snap[qid][2], sender, rcpts))
    pq.initial = snap
    # stable: nothing delivered or moved a moment later
    time.sleep(1.0)
    check(pq.mta.queue_snapshot() == snap, "the queue changed on its own")
    pq.nbounces = sum(1 for _, s, _ in MESSAGES if s == "")


def test_dry_run_lists_exactly_a_deletes_nothing(pq):
    r, listed = pq.ctl.purge()
    pq.dry_listed = listed
    expect_run(pq, r, listed, ids_of(pq, "a"), len(pq.all), pq.nbounces, "dry run")
    check("dry run: nothing deleted" in r.stdout, "no 'dry run: nothing deleted' line:\n"
          + r.stdout)
    expect_queue(pq, pq.all, "after the dry run")


def test_queue_deferred_selects_nothing_hold_the_same(pq):
    r, listed = pq.ctl.purge("--queue", "deferred")
    expect_run(pq, r, listed, [], len(pq.all), 0, "--queue deferred")
    r, listed = pq.ctl.purge("--queue", "hold")
    expect_run(pq, r, listed, ids_of(pq, "a"), len(pq.all), pq.nbounces, "--queue hold")
    expect_queue(pq, pq.all, "after the --queue dry runs")


def test_yes_deletes_exactly_a_rest_unchanged_on_hold(pq):
    mark = pq.mta.log.size()
    r, listed = pq.ctl.purge("--yes")
    pq.deleted1 = listed
    expect_run(pq, r, listed, ids_of(pq, "a"), len(pq.all), pq.nbounces, "--yes")
    check("handed %d queue ids to postsuper -d -" % len(pq.ids["a"]) in r.stdout,
          "no 'handed N queue ids' line:\n" + r.stdout)
    expect_queue(pq, pq.remaining1, "after --yes", "left1")
    got = wait_until(lambda: postsuper_removed(pq, mark) == ids_of(pq, "a") and
                         postsuper_removed(pq, mark), 5)
    check(got, "maillog: postsuper removed %s, want %s" % (postsuper_removed(pq, mark), ids_of(pq, "a")))


def test_yes_again_finds_nothing(pq):
    mark = pq.mta.log.size()
    r, listed = pq.ctl.purge("--yes")
    expect_run(pq, r, listed, [], len(pq.remaining1), pq.nbounces - len(pq.ids["a"]), "--yes again")
    check("handed" not in r.stdout, "postsuper was run:\n" + r.stdout)
    expect_queue(pq, pq.remaining1, "after --yes again")
    time.sleep(0.5)
    check(postsuper_removed(pq, mark) == [], "maillog: postsuper removed %s" % postsuper_removed(pq, mark))


def test_partner_denied_selects_and_deletes_exactly_b_c(pq):
    check(pq.db.hset(PREFIX + "ndr", "partner.test", "deny") == 0,
          "HSET partner.test deny: not an update")
    total, bounces = len(pq.remaining1), pq.nbounces - len(pq.ids["a"])
    r, listed = pq.ctl.purge()
    pq.dry_listed2 = listed
    expect_run(pq, r, listed, ids_of(pq, "b", "c"), total, bounces, "dry run, partner.test deny")
    expect_queue(pq, pq.remaining1, "after the dry run, partner.test deny")
    mark = pq.mta.log.size()
    r, listed = pq.ctl.purge("--yes")
    pq.deleted2 = listed
    expect_run(pq, r, listed, ids_of(pq, "b", "c"), total, bounces, "--yes, partner.test deny")
    expect_queue(pq, pq.remaining2, "after --yes, partner.test deny", "left2")
    got = wait_until(lambda: postsuper_removed(pq, mark) == ids_of(pq, "b", "c"), 5)
    check(got, "maillog: postsuper removed %s, want %s"
          % (postsuper_removed(pq, mark), ids_of(pq, "b", "c")))


def test_no_warnings_in_the_maillog(pq):
    bad = [ln for ln in pq.mta.log.text().splitlines()
           if re.search(r"\b(warning|fatal|panic|error):", ln)]
    check(not bad, "maillog: %s" % "\n".join(bad[:5]))




# ---------------------------------------------------------------------------
# The null sender shown as an address (empty_address_recipient)

# (empty_address_recipient in main.cf, what showq prints for <>)
NULL_NAMES = [("bounces@example.com", "bounces@example.com"),
              ("nulls@$mydomain", "nulls@e2e.test")]

NAMED_DATA = "HSET backstop:ndr * deny\nHSET backstop:ndr keep.test allow\n"


def named_messages(shown):
    """(category, sender, recipients); "" is the null sender, shown as `shown`."""
    return [
        ("n", "", ["victim@forged.test"]),
        ("n", "", ["x@other.test", "victim2@forged.test"]),
        ("r", shown, ["customer@forged.test"]),
        ("r", shown.upper(), ["client@other.test"]),
        ("k", "", ["owner@keep.test"]),
        ("o", "alice@example.com", ["victim@forged.test"]),
    ]


class Named:
    """One Postfix with empty_address_recipient set, its queue and runs."""

    def __init__(self, setting, shown, mta, ctl):
        self.setting, self.shown, self.mta, self.ctl = setting, shown, mta, ctl
        self.null_shown = shown  # for expect_run's message
        self.messages = named_messages(shown)

    def ids_of(self, *cats):
        return sorted(i for c in cats for i in self.ids[c])

    def report(self):
        out = ["empty_address_recipient = %s (shown as %s):" % (self.setting, self.shown)]
        for c in "nrko":
            out.append("  %s %s" % (c, " ".join("%s<%s>" % (q, self.by_id[q][1])
                                                 for q in getattr(self, "ids", {}).get(c, []))))
        for what, rc, listed in self.ctl.runs:
            out.append("  %-48s %d: %s" % (what, rc, " ".join(sorted(listed)) or "-"))
        return out


@pytest.fixture(scope="module", params=NULL_NAMES, ids=["full-address", "expanded-mydomain"])
def named(request, backstopctl_bin, e2e_work, postfix, e2e_redis, e2e_db, e2e_report):
    setting, shown = request.param
    e2e_db.load(NAMED_DATA)
    name = "ear%d" % NULL_NAMES.index(request.param)
    mta = postfix(name, MAIN_CF + "empty_address_recipient = %s\n" % setting).start()
    nm = Named(setting, shown, mta, Ctl(backstopctl_bin, e2e_work, e2e_redis.sock, mta.etc))
    print("e2e: Postfix -c %s, empty_address_recipient = %s" % (mta.etc, setting))
    yield nm
    e2e_report.extend(nm.report())
    mta.stop()


def named_filled(named):
    if not hasattr(named, "initial"):
        pytest.skip("the queue was not filled")


def check_named_queue(named, want_ids, what):
    snap = named.mta.queue_snapshot()
    check(sorted(snap) == sorted(want_ids), "%s: queue ids %s, want %s"
          % (what, sorted(snap), sorted(want_ids)))
    for qid in want_ids:
        check(snap[qid] == named.initial[qid], "%s: %s changed: %s, was %s"
              % (what, qid, snap[qid], named.initial[qid]))


def test_named_real_sender_looks_like_the_null_sender(named):
    named.ids = {c: [] for c in "nrko"}
    named.by_id = {}
    for n, (cat, sender, rcpts) in enumerate(named.messages):
        qid = named.mta.submit(sender, rcpts, n)
        named.ids[cat].append(qid)
        named.by_id[qid] = (cat, sender, tuple(sorted(rcpts)))
    want = sorted(named.by_id)
    snap = wait_until(lambda: (lambda s: s if sorted(s) == want else None)(
        named.mta.queue_snapshot()), 20, 0.2)
    check(snap, "the queue does not hold the %d submitted messages" % len(want))
    for qid, (cat, sender, rcpts) in named.by_id.items():
        shown = named.shown if cat in "nk" else sender
        check(snap[qid][0] == "hold" and snap[qid][1] == shown,
              "%s (%s): postqueue shows <%s> in %s, want <%s> in hold"
              % (qid, cat, snap[qid][1], snap[qid][0], shown))
    named.initial = snap


def test_named_dry_run_lists_only_the_bounces(named):
    named_filled(named)
    r, listed = named.ctl.purge()
    expect_run(named, r, listed, named.ids_of("n"), len(named.by_id), 3, "dry run")
    for qid in named.ids["r"]:
        check(re.search(r"^kept: %s hold .*: not a bounce" % qid, r.stdout, re.M),
              "%s (a real sender) is not listed as kept:\n%s" % (qid, r.stdout))
    check("empty_address_recipient = %s: mail from that address looks like a bounce; postcat "
          "checked the envelope sender of 4 messages: 2 bounces, 2 real (kept), 0 not checked "
          "(kept)" % named.shown in r.stdout, "no postcat line:\n" + r.stdout)
    check_named_queue(named, sorted(named.by_id), "after the dry run")


def test_named_yes_deletes_only_the_bounces(named):
    named_filled(named)
    mark = named.mta.log.size()
    r, listed = named.ctl.purge("--yes")
    expect_run(named, r, listed, named.ids_of("n"), len(named.by_id), 3, "--yes")
    check("handed 2 queue ids to postsuper -d -" in r.stdout, "no 'handed 2' line:\n" + r.stdout)
    check_named_queue(named, named.ids_of("r", "k", "o"), "after --yes")
    removed = wait_until(lambda: postsuper_removed(named, mark) == named.ids_of("n"), 5)
    check(removed, "maillog: postsuper removed %s, want %s"
          % (postsuper_removed(named, mark), named.ids_of("n")))
    bad = [ln for ln in named.mta.log.text().splitlines()
           if re.search(r"\b(warning|fatal|panic|error):", ln)]
    check(not bad, "maillog: %s" % "\n".join(bad[:5]))
