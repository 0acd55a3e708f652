#!/usr/bin/env python3
"""
purge_queue.py - end-to-end test of "backstopctl purge-queue" on a real Postfix queue

    python3 tests/e2e/purge_queue.py --backstopctl BUILD/backstopctl [--keep] [-v]

What it starts (all under one temporary directory, all stopped whatever
happens: Postfix with "postfix -c DIR stop", redis-server by PID; a watchdog
stops everything before ctest's TIMEOUT):

    redis-server   on WORK/redis/redis.sock (no TCP port), seeded with
                   HSET backstop:ndr * deny partner.test allow lists.test "limit 3/1h"
                   SADD backstop:domains example.com
    Postfix        own config dir, queue dir, data dir and maillog (postlogd),
                   smtpd on a free 127.0.0.1 port, nothing chrooted,
                   mynetworks = 127.0.0.0/8 (relays for the test client),
                   every transport discard, and
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

Steps: the queue holds exactly that (postqueue -c DIR -j); (1) a dry run lists
exactly the a ids and changes nothing; --queue deferred selects nothing,
--queue hold the same ids; (2) --yes deletes exactly those (postqueue and
the postsuper lines in the maillog), every other message unchanged and still
on hold; (3) --yes again finds nothing, exit 0; (4) after
HSET backstop:ndr partner.test deny it selects exactly b and c, and --yes
deletes exactly them; d, e, f, g stay.

Packages: postfix, redis-server and redis-tools are installed when missing and
running as root (postfix preseeded "No configuration", no daemon started:
run.py's apt_install). Not root: a loud SKIPPED message and exit 77.

Output: one line per check ("ok ..." / "FAIL ..."), the queue ids per
category, what was selected and deleted, then "N passed, N failed". Exit 1 on
any failure. Standard library only.
"""
import argparse
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as e2e  # noqa: E402  (the e2e_postfix harness: Redis, Log, apt_install, ...)

SKIP = 77
DEADLINE_S = 540          # ctest TIMEOUT is 600 s
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

MASTER_CF = """\
# written by tests/e2e/purge_queue.py: a minimal master.cf, nothing chrooted
127.0.0.1:{port} inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
# written by tests/e2e/purge_queue.py: a throw-away Postfix that keeps
# every message on hold and delivers nothing
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-pq
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
myhostname = mta-pq.e2e.test
mydomain = e2e.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.com
default_transport = discard
local_transport = discard
virtual_transport = discard
relay_transport = discard
alias_maps =
alias_database =
local_recipient_maps =
smtpd_reject_unlisted_recipient = no
smtpd_peername_lookup = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_client_access static:HOLD, permit
"""

verbose = False


def say(msg):
    print(msg, flush=True)


def debug(msg):
    if verbose:
        print("# " + msg, flush=True)


Failure = e2e.Failure
check = e2e.check


def skip(reason):
    bar = "!" * 78
    say("%s\n!! e2e_purge_queue SKIPPED: %s\n%s" % (bar, reason, bar))
    say("0 passed, 0 failed, 1 skipped")
    sys.exit(SKIP)


PACKAGES = [("/usr/sbin/postfix", "postfix"), ("/usr/sbin/postqueue", "postfix"),
            ("/usr/sbin/postsuper", "postfix"), ("redis-server", "redis-server"),
            ("redis-cli", "redis-tools")]


def missing_packages():
    return sorted({pkg for prog, pkg in PACKAGES
                   if not (os.access(prog, os.X_OK) if prog.startswith("/")
                           else shutil.which(prog))})


def prerequisites():
    missing = missing_packages()
    if os.geteuid() != 0:
        skip("not root (Postfix must be started as root)%s" %
             ("; missing packages: " + " ".join(missing) if missing else ""))
    if missing:
        e2e.apt_install(missing)
        still = missing_packages()
        if still:
            raise SystemExit("e2e: could not install: %s" % " ".join(still))


class Postfix:
    """One throw-away instance that holds every message it accepts."""

    def __init__(self, work):
        self.dir = os.path.join(work, "mta")
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.port = e2e.free_port()
        self.log = e2e.Log(os.path.join(self.dir, "maillog"))
        self.started = False

    def setup(self):
        data = os.path.join(self.dir, "data")
        for d in (self.etc, self.queue, data):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.dir, 0o755)
        shutil.chown(data, "postfix")
        os.chmod(data, 0o700)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=self.dir))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        r = self.postfix("check")
        check(r.returncode == 0 and "warning" not in r.stdout + r.stderr,
              "postfix -c %s check: %s" % (self.etc, r.stdout + r.stderr))

    def postfix(self, *args):
        return subprocess.run(["postfix", "-c", self.etc] + list(args), capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    def start(self):
        r = self.postfix("start")
        self.started = True
        if r.returncode != 0:
            raise SystemExit("postfix -c %s start: %s\n%s" % (self.etc, r.stdout + r.stderr,
                                                             self.log.tail()))

        def listening():
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    return s.recv(200).startswith(b"220")
            except OSError:
                return False
        if not e2e.wait_until(listening, 20, 0.2):
            raise SystemExit("Postfix does not answer on port %d:\n%s" % (self.port,
                                                                       self.log.tail()))

    def stop(self):
        if not self.started:
            return
        self.started = False
        r = self.postfix("stop")
        if r.returncode != 0:  # fall back to the master's PID
            try:
                with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                    os.kill(int(f.read().split()[0]), signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                pass

    def submit(self, sender, rcpts, n):
        """One message over SMTP; its queue id."""
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="e2e-client.test", timeout=30)
        try:
            s.ehlo()
            code, msg = s.mail(sender)
            check(code == 250, "MAIL FROM:<%s>: %d %s" % (sender, code, msg))
            for r in rcpts:
                code, msg = s.rcpt(r)
                check(code == 250, "RCPT TO:<%s>: %d %s" % (r, code, msg))
            body = ("From: %s\r\nTo: %s\r\nSubject: backstop purge-queue e2e %d\r\n\r\n"
                    "message %d\r\n" % (sender or "MAILER-DAEMON@remote.test", ", ".join(rcpts),
                                        n, n))
            code, msg = s.data(body.encode())
            msg = msg.decode("utf-8", "replace")
            check(code == 250, "DATA: %d %s" % (code, msg))
            m = re.search(r"queued as ([0-9A-Za-z]+)", msg)
            check(m, "no queue id in the DATA reply: %s" % msg)
            return m.group(1)
        finally:
            try:
                s.quit()
            except Exception:
                s.close()

    def postconf(self, name):
        r = subprocess.run(["postconf", "-c", self.etc, "-h", name], capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0 and not r.stderr, "postconf -h %s: %s" % (name, r.stderr))
        return r.stdout.strip()

    def queue_snapshot(self):
        """{queue_id: (queue_name, sender, recipients, arrival_time, message_size)}"""
        # the instance's own postqueue (not whatever PATH finds)
        if not hasattr(self, "postqueue"):
            self.postqueue = os.path.join(self.postconf("command_directory"), "postqueue")
        r = subprocess.run([self.postqueue, "-c", self.etc, "-j"], capture_output=True, text=True,
                           timeout=60)
        check(r.returncode == 0, "postqueue -c %s -j: %d %s" % (self.etc, r.returncode, r.stderr))
        snap = {}
        for line in r.stdout.splitlines():
            if not line.strip():
                continue
            m = json.loads(line)
            snap[m["queue_id"]] = (m["queue_name"], m["sender"],
                                   tuple(sorted(x["address"] for x in m["recipients"])),
                                   m.get("arrival_time"), m.get("message_size"))
        return snap


class Ctl:
    def __init__(self, binary, work, redis_sock, etc):
        self.binary = binary
        self.etc = etc
        self.conf = os.path.join(work, "backstopctl.ini")
        with open(self.conf, "w") as f:
            f.write("# written by tests/e2e/purge_queue.py\n[redis]\nserver = unix:%s\n"
                    "[policy]\nndr_default = allow\n" % redis_sock)
        self.runs = []

    def purge(self, *args):
        cmd = [self.binary, "-c", self.conf, "purge-queue", "--config-dir", self.etc] + list(args)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                           stdin=subprocess.DEVNULL)
        debug("$ %s\n-> %d\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
        listed = re.findall(r"^([0-9A-Za-z]+) +(?:incoming|active|deferred|hold|maildrop) +\S",
                            r.stdout, re.M)
        self.runs.append((" ".join(["purge-queue"] + list(args)), r.returncode, listed))
        return r, listed


def summary_counts(out):
    m = re.search(r"^(\d+) of (\d+) queued messages are bounces to NDR-denied domains "
                  r"\((\d+) bounces in all\)$", out, re.M)
    return tuple(int(x) for x in m.groups()) if m else None


# ---------------------------------------------------------------------------

class Env:
    pass


E = Env()
RESULTS = []  # (ok, name, detail)


def step(name, fn):
    t = time.monotonic()
    try:
        fn()
        RESULTS.append((True, name, ""))
        say("ok %s (%.1fs)" % (name, time.monotonic() - t))
    except Failure as e:
        RESULTS.append((False, name, str(e)))
        say("FAIL %s: %s" % (name, e))
    except (smtplib.SMTPException, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        RESULTS.append((False, name, "%s: %s" % (type(e).__name__, e)))
        say("FAIL %s: %s: %s" % (name, type(e).__name__, e))
        if verbose:
            traceback.print_exc()
    except Exception as e:  # a bug in this script: still a failure, go on
        RESULTS.append((False, name, "%s: %s" % (type(e).__name__, e)))
        say("FAIL %s: %s: %s" % (name, type(e).__name__, e))
        traceback.print_exc()


def ids_of(*cats):
    return sorted(i for c in cats for i in E.ids[c])


def expect_run(r, listed, want, total, bounces, what):
    """exit 0, no sanitizer report, exactly `want` listed, the summary line right."""
    check(r.returncode == 0, "%s: exit %d\n%s%s" % (what, r.returncode, r.stdout, r.stderr))
    check(not re.search(r"Sanitizer|runtime error", r.stderr), "%s: %s" % (what, r.stderr))
    got = summary_counts(r.stdout)
    check(not (got and got[2] == 0 and bounces > 0),
          "%s: backstopctl sees no bounce at all among the %d queued messages (want %d): "
          "postqueue -j shows the null sender as \"sender\": \"%s\" "
          "($empty_address_recipient), not \"\"\n%s"
          % (what, got[1] if got else total, bounces, getattr(E, "null_shown", "MAILER-DAEMON"),
             r.stdout))
    check(sorted(listed) == sorted(want), "%s listed %s, want %s\n%s"
          % (what, sorted(listed), sorted(want), r.stdout))
    got = summary_counts(r.stdout)
    check(got == (len(want), total, bounces), "%s: summary %s, want %s\n%s"
          % (what, got, (len(want), total, bounces), r.stdout))


def expect_queue(want_ids, what, keep=None):
    """The queue holds exactly want_ids, each as first seen (all on hold);
    keep: the E attribute to record the queue ids in (for the summary)."""
    snap = E.mta.queue_snapshot()
    if keep:
        setattr(E, keep, sorted(snap))
    check(sorted(snap) == sorted(want_ids), "%s: queue ids %s, want %s"
          % (what, sorted(snap), sorted(want_ids)))
    for qid in want_ids:
        check(snap[qid] == E.initial[qid], "%s: %s changed: %s, was %s"
              % (what, qid, snap[qid], E.initial[qid]))
        check(snap[qid][0] == "hold", "%s: %s is in queue %s" % (what, qid, snap[qid][0]))
    return snap


def postsuper_removed(since):
    """Queue ids postsuper logged as removed after maillog position `since`."""
    return sorted(re.findall(r"postsuper\[\d+\]: ([0-9A-Za-z]+): removed", E.mta.log.text(since)))


def fill_queue():
    E.ids = {c: [] for c in CATEGORIES}
    E.by_id = {}
    for n, (cat, sender, rcpts) in enumerate(MESSAGES):
        qid = E.mta.submit(sender, rcpts, n)
        E.ids[cat].append(qid)
        E.by_id[qid] = (cat, sender, tuple(sorted(rcpts)))
    E.all = sorted(E.by_id)
    E.remaining1 = ids_of("b", "c", "d", "e", "f", "g")
    E.remaining2 = ids_of("d", "e", "f", "g")
    check(len(E.all) == len(MESSAGES), "duplicate queue ids: %s" % E.ids)

    def complete():
        snap = E.mta.queue_snapshot()
        return snap if sorted(snap) == E.all else None
    snap = e2e.wait_until(complete, 20, 0.2)
    check(snap, "the queue does not hold the %d submitted messages: %s"
          % (len(E.all), sorted(E.mta.queue_snapshot())))
    # showq prints the null sender as $empty_address_recipient (MAILER-DAEMON)
    E.null_shown = E.mta.postconf("empty_address_recipient")
    for qid, (cat, sender, rcpts) in E.by_id.items():
        check(snap[qid][0] == "hold", "%s (%s) is in queue %s, not hold" % (qid, cat, snap[qid][0]))
        check(snap[qid][1] == (sender or E.null_shown) and snap[qid][2] == rcpts,
              "%s (%s): postqueue shows <%s> -> %s, submitted <%s> -> %s"
              % (qid, cat, snap[qid][1], snap[qid][2], sender, rcpts))
    E.initial = snap
    # stable: nothing delivered or moved a moment later
    time.sleep(1.0)
    check(E.mta.queue_snapshot() == snap, "the queue changed on its own")
    E.nbounces = sum(1 for _, s, _ in MESSAGES if s == "")


def dry_run():
    r, listed = E.ctl.purge()
    E.dry_listed = listed
    expect_run(r, listed, ids_of("a"), len(E.all), E.nbounces, "dry run")
    check("dry run: nothing deleted" in r.stdout, "no 'dry run: nothing deleted' line:\n"
          + r.stdout)
    expect_queue(E.all, "after the dry run")


def dry_run_queues():
    r, listed = E.ctl.purge("--queue", "deferred")
    expect_run(r, listed, [], len(E.all), 0, "--queue deferred")
    r, listed = E.ctl.purge("--queue", "hold")
    expect_run(r, listed, ids_of("a"), len(E.all), E.nbounces, "--queue hold")
    expect_queue(E.all, "after the --queue dry runs")


def purge_yes():
    mark = E.mta.log.size()
    r, listed = E.ctl.purge("--yes")
    E.deleted1 = listed
    expect_run(r, listed, ids_of("a"), len(E.all), E.nbounces, "--yes")
    check("handed %d queue ids to postsuper -d -" % len(E.ids["a"]) in r.stdout,
          "no 'handed N queue ids' line:\n" + r.stdout)
    expect_queue(E.remaining1, "after --yes", "left1")
    got = e2e.wait_until(lambda: postsuper_removed(mark) == ids_of("a") and
                         postsuper_removed(mark), 5)
    check(got, "maillog: postsuper removed %s, want %s" % (postsuper_removed(mark), ids_of("a")))


def purge_yes_again():
    mark = E.mta.log.size()
    r, listed = E.ctl.purge("--yes")
    expect_run(r, listed, [], len(E.remaining1), E.nbounces - len(E.ids["a"]), "--yes again")
    check("handed" not in r.stdout, "postsuper was run:\n" + r.stdout)
    expect_queue(E.remaining1, "after --yes again")
    time.sleep(0.5)
    check(postsuper_removed(mark) == [], "maillog: postsuper removed %s" % postsuper_removed(mark))


def partner_denied():
    check(E.redis.cli("HSET", PREFIX + "ndr", "partner.test", "deny") == "0",
          "HSET partner.test deny: not an update")
    total, bounces = len(E.remaining1), E.nbounces - len(E.ids["a"])
    r, listed = E.ctl.purge()
    E.dry_listed2 = listed
    expect_run(r, listed, ids_of("b", "c"), total, bounces, "dry run, partner.test deny")
    expect_queue(E.remaining1, "after the dry run, partner.test deny")
    mark = E.mta.log.size()
    r, listed = E.ctl.purge("--yes")
    E.deleted2 = listed
    expect_run(r, listed, ids_of("b", "c"), total, bounces, "--yes, partner.test deny")
    expect_queue(E.remaining2, "after --yes, partner.test deny", "left2")
    got = e2e.wait_until(lambda: postsuper_removed(mark) == ids_of("b", "c"), 5)
    check(got, "maillog: postsuper removed %s, want %s"
          % (postsuper_removed(mark), ids_of("b", "c")))


def no_unexpected_warnings():
    bad = [l for l in E.mta.log.text().splitlines()
           if re.search(r"\b(warning|fatal|panic|error):", l)]
    check(not bad, "maillog: %s" % "\n".join(bad[:5]))


def print_summary():
    if not hasattr(E, "ids"):
        return
    say("\nQueue ids per category (all on hold):")
    for c, desc in CATEGORIES.items():
        say("  %s %-48s %s" % (c, desc, " ".join(
            "%s<%s>->%s" % (q, E.by_id[q][1], ",".join(E.by_id[q][2])) for q in E.ids[c])))
    say("\nbackstopctl runs (exit status: listed ids):")
    for what, rc, listed in E.ctl.runs:
        say("  %-48s %d: %s" % (what, rc, " ".join(sorted(listed)) or "-"))
    for label, attr in (("selected by the first dry run", "dry_listed"),
                        ("deleted by the first --yes", "deleted1"),
                        ("in the queue after it", "left1"),
                        ("selected once partner.test is deny", "dry_listed2"),
                        ("deleted by --yes then", "deleted2"),
                        ("in the queue at the end", "left2")):
        if hasattr(E, attr):
            ids = sorted(getattr(E, attr))
            say("  %-36s %2d  %s" % (label, len(ids), " ".join(
                "%s(%s)" % (q, E.by_id[q][0]) for q in ids) or "-"))


class Watchdog(Exception):
    pass


def on_alarm(signum, frame):
    raise Watchdog("watchdog: %ds since start, stopping everything" % DEADLINE_S)


def on_term(signum, frame):
    raise SystemExit("signal %d: stopping everything" % signum)


def main():
    global verbose
    started = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backstopctl", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", action="store_true", help="print details")
    args = ap.parse_args()
    verbose = e2e.verbose = args.v
    binary = os.path.abspath(args.backstopctl)
    if not os.access(binary, os.X_OK):
        raise SystemExit("no executable %s" % binary)
    prerequisites()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(int(max(120, DEADLINE_S - (time.monotonic() - started))))
    work = tempfile.mkdtemp(prefix="bs-e2e-pq-", dir="/tmp")
    os.chmod(work, 0o755)  # the postfix user walks into the queue directory
    setup_ok = False
    try:
        E.redis = e2e.Redis(work)
        E.redis.start()
        E.redis.load(DATA)
        E.mta = Postfix(work)
        E.mta.setup()
        E.mta.start()
        E.ctl = Ctl(binary, work, E.redis.sock, E.mta.etc)
        say("e2e: Postfix -c %s on 127.0.0.1:%d (everything on hold), Redis %s, work dir %s"
            % (E.mta.etc, E.mta.port, E.redis.sock, work))
        setup_ok = True
        for name, fn in (("queue holds exactly the submitted mix, on hold", fill_queue),
                         ("dry run lists exactly the (a) bounces, deletes nothing", dry_run),
                         ("--queue deferred selects nothing, --queue hold the same",
                          dry_run_queues),
                         ("--yes deletes exactly (a), the rest unchanged and on hold", purge_yes),
                         ("--yes again finds nothing, exit 0", purge_yes_again),
                         ("partner.test deny: selects and deletes exactly (b) and (c)",
                          partner_denied),
                         ("no warnings in the maillog", no_unexpected_warnings)):
            step(name, fn)
            if name.startswith("queue holds") and not RESULTS[-1][0]:
                break  # nothing else means anything
    except (Watchdog, SystemExit, Exception) as e:
        RESULTS.append((False, "setup" if not setup_ok else "run", str(e)))
        say("FAIL %s: %s" % ("setup" if not setup_ok else "run", e))
        if verbose:
            traceback.print_exc()
    finally:
        signal.alarm(0)
        for name in ("mta", "redis"):
            if hasattr(E, name):
                try:
                    getattr(E, name).stop()
                except Exception as e:
                    say("e2e: stopping %s: %s: %s" % (name, type(e).__name__, e))
    failed = sum(1 for ok, _, _ in RESULTS if not ok)
    passed = len(RESULTS) - failed
    if hasattr(E, "ctl"):
        print_summary()
    if failed:
        for x in [getattr(E, n) for n in ("redis", "mta") if hasattr(E, n)]:
            say("--- last lines of %s:\n%s" % (x.log.path, x.log.tail(15)))
    if args.keep or failed:
        say("e2e: work directory kept: %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    say("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
