"""
tests/e2e/test_postfix.py - SMTP client -> real Postfix -> backstopd -> real Redis

    /usr/bin/python3 -m pytest tests/e2e/test_postfix.py --backstopd BUILD/backstopd [-k NAME]

What the module fixture `cluster` starts (everything on loopback or private
unix sockets, all under one temporary directory, all stopped by PID or
"postfix -c DIR stop" whatever happens):

    redis-server   one, on WORK/redis/redis.sock (no TCP port)
    MTA A          Postfix (tests/support/postfix.py) with the settings of
                   etc/postfix/main.cf.snippet (check_policy_service
                   inet:127.0.0.1:PORT_A), smtpd on a free loopback port
    backstopd A    listen = inet:127.0.0.1:PORT_A, on_redis_error = defer (mirror = no, except in
                   test_redis_down_answered_from_mirror)
    MTA B          Postfix like A with etc/postfix/main.cf.chroot-snippet as it
                   is: check_policy_service unix:backstop/backstopd.sock,
                   relative to B's queue directory (smtpd is not chrooted
                   here, but reads the path the same way)
    backstopd B    listen = unix:B/queue/backstop/backstopd.sock (directory
                   root:postfix 0750, socket_mode 0660, socket_group postfix),
                   on_redis_error = dunno

Both backstopds share the Redis and the key prefix: a cluster of two MTAs.
The SMTP client (smtplib, and swaks for whole transactions) sets the client
address the policy sees with XCLIENT (smtpd_authorized_xclient_hosts =
127.0.0.0/8), so every scenario can play a distinct remote client. Those
192.0.2.x / 198.51.100.x addresses are labels inside the SMTP session only:
no packet is ever sent to them.

Postfix is wired exactly as the snippets say: relaying is decided by
smtpd_relay_restrictions (permit_mynetworks with mynetworks = 192.0.2.0/24,
then reject_unauth_destination), and smtpd_recipient_restrictions holds only
check_policy_service, so bounces relayed for mynetworks clients reach the NDR
policy. Everything is delivered to the discard transport.

The tests are scenarios run in file order on one cluster (later ones count
on what earlier ones did, e.g. the cluster-wide stats). Not root, or
postfix/swaks/redis-server missing: the module is skipped, loudly.
The terminal summary has a table of every SMTP reply seen (scenario, MTA,
client, sender, recipient, expected, seen, milliseconds) and the figures
measured.
"""
import grp
import os
import re
import shutil
import signal
import smtplib
import subprocess
import time

import pytest

from support import procs
from support.postfix import Log, free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postfix]

PREFIX = "backstop:"
POLICY_TIMEOUT_S = 10     # check_policy_service { ..., timeout=10s }
REDIS_TIMEOUT_MS = 300    # [redis] timeout of both backstopds

# What the SMTP client sees starts with the code and DSN code; Postfix puts
# "<rcpt>: Recipient address rejected: " before the text of any policy reply.
BLOCKED = "450 4.7.1"
BLOCKED_TEXT = "Too many invalid recipients from your host, try again later"
USER_UNKNOWN = "User unknown"
UNAVAILABLE = "Recipient verification temporarily unavailable"
NDR_DENY = "Delivery status notifications to this domain are not accepted"
NDR_LIMIT = "Too many delivery status notifications to this domain"

# The data every scenario starts from (redis-cli syntax, one command a line).
DATA = """\
SADD backstop:domains example.com catchall.test
SADD backstop:rcpt:example.com alice bob postmaster
SADD backstop:rcpt:catchall.test *
HSET backstop:ndr * deny
HSET backstop:ndr partner.test allow
HSET backstop:ndr .friends.test allow
HSET backstop:ndr bad.friends.test deny
HSET backstop:ndr .x.friends.test deny
HSET backstop:ndr lists.test "limit 3/1h"
HSET backstop:ndr broken.test "limit banana"
SADD backstop:exempt 192.0.2.251
"""
# Domains this cluster is a destination for (relay_domains); open.test is
# relayed but not protected by backstop.
RELAY_DOMAINS = "example.com catchall.test open.test"

MAIN_CF = """\
inet_protocols = ipv4, ipv6
mynetworks = 192.0.2.0/24
relay_domains = {relay_domains}
recipient_delimiter = +
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
smtpd_error_sleep_time = 0
# from etc/postfix/{snippet}:
{snippet_text}"""

SNIPPETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc", "postfix")


def check(cond, msg):
    if not cond:
        pytest.fail(msg, pytrace=False)


def snippet_settings(name, replace=()):
    """main.cf settings for an MTA: ours plus those of etc/postfix/NAME
    (comments dropped), with the (old, new) substitutions applied; each old
    text must be there."""
    with open(os.path.join(SNIPPETS, name)) as f:
        text = "".join(ln for ln in f if ln.strip() and not ln.lstrip().startswith("#"))
    for old, new in replace:
        check(old in text, "etc/postfix/%s: no '%s' in its settings" % (name, old))
        text = text.replace(old, new)
    return MAIN_CF.format(relay_domains=RELAY_DOMAINS, snippet=name, snippet_text=text)


# ---------------------------------------------------------------------------
# processes we start besides Postfix

class Backstopd:
    def __init__(self, name, binary, work):
        self.name = name
        self.binary = binary
        self.conf = os.path.join(work, "backstopd-%s.ini" % name)
        self.log = Log(os.path.join(work, "backstopd-%s.log" % name))
        self.proc = None
        self.rc = None
        self.out = None

    def configure(self, **sections):
        """Write the config: sections as {"server": [("listen", "..."), ...]}."""
        lines = ["# written by tests/e2e/test_postfix.py for backstopd %s" % self.name]
        for sect, pairs in sections.items():
            lines.append("[%s]" % sect)
            lines += ["%s = %s" % kv for kv in pairs]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run([self.binary, "-t", "-c", self.conf], capture_output=True, text=True)
        check(r.returncode == 0, "backstopd -t %s: %s" % (self.conf, r.stdout + r.stderr))

    def start(self):
        mark = self.log.size()
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.out = open(self.log.path, "ab")
        self.proc = subprocess.Popen([self.binary, "-f", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, env=env)
        check(self.log.wait(r"backstopd \S+ started", mark, 15),
              "backstopd %s did not start:\n%s" % (self.name, self.log.tail()))

    def reload(self):
        mark = self.log.size()
        self.proc.send_signal(signal.SIGHUP)
        check(self.log.wait(r"configuration reloaded", mark, 10),
              "backstopd %s: no 'configuration reloaded' after SIGHUP:\n%s"
              % (self.name, self.log.text(mark)))

    def stop(self):
        """SIGTERM; returns the exit status (0 expected: clean drain, no leak)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.rc = self.proc.wait(10)
        elif self.proc:
            self.rc = self.proc.returncode
        if self.out:
            self.out.close()
            self.out = None
        return self.rc

    def sanitizer_errors(self):
        m = re.search(r"(ERROR: AddressSanitizer.*|ERROR: LeakSanitizer.*|runtime error:.*|"
                      r"panic: .*)", self.log.text())
        return m.group(0) if m else None


# ---------------------------------------------------------------------------
# SMTP clients

class Reply:
    def __init__(self, code, text, secs):
        self.code, self.text, self.secs = code, text, secs

    def full(self):
        return "%d %s" % (self.code, self.text)

    def __repr__(self):
        return "%s (%.0f ms)" % (self.full(), self.secs * 1000)


class Session:
    """One SMTP session to an MTA, as remote client `ip` (set with XCLIENT)."""

    def __init__(self, mta, ip, helo=None):
        self.mta = mta
        self.ip = ip
        self.helo = helo or "mx-%s.remote.test" % re.sub(r"[^0-9a-zA-Z]+", "-", ip).strip("-")
        self.s = smtplib.SMTP("127.0.0.1", mta.port, local_hostname="e2e-client.test",
                              timeout=POLICY_TIMEOUT_S * 3)
        self.s.ehlo()
        addr = "IPV6:" + ip if ":" in ip else ip
        code, msg = self.s.docmd("XCLIENT", "ADDR=%s NAME=%s HELO=%s" % (addr, self.helo, self.helo))
        check(code == 220, "XCLIENT refused by MTA %s: %d %s" % (mta.name, code, msg))
        self.s.ehlo_resp = None
        self.s.ehlo(self.helo)

    def mail(self, sender):
        code, msg = self.s.mail(sender)
        check(code == 250, "MAIL FROM:<%s>: %d %s" % (sender, code, msg))

    def rcpt(self, rcpt):
        t = time.monotonic()
        code, msg = self.s.rcpt(rcpt)
        return Reply(code, msg.decode("utf-8", "replace").replace("\n", " "), time.monotonic() - t)

    def close(self):
        try:
            self.s.quit()
        except Exception:  # noqa: BLE001 - the session is over either way
            self.s.close()


def swaks(mta, ip, sender, rcpt, quit_after=None):
    """One transaction with swaks; returns (RCPT Reply, DATA Reply or None)."""
    cmd = ["swaks", "--server", "127.0.0.1:%d" % mta.port, "--from", sender or "<>",
           "--to", rcpt, "--xclient-addr", ip, "--xclient-name", "swaks.remote.test",
           "--helo", "swaks.remote.test", "--timeout", str(POLICY_TIMEOUT_S * 3),
           "--header", "Subject: backstop e2e"]
    if quit_after:
        cmd += ["--quit-after", quit_after]
    t = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    secs = time.monotonic() - t
    print("# swaks: " + " ".join(cmd) + "\n" + out)

    def reply_after(regex):
        m = re.search(regex + r".*\n(?:<-|<\*\*) +(\d{3})[ -](.*)", out)
        return Reply(int(m.group(1)), m.group(2), secs) if m else None
    rcpt_reply = reply_after(r"-> RCPT TO:")
    check(rcpt_reply is not None, "swaks: no RCPT reply in:\n" + out)
    return rcpt_reply, reply_after(r"-> \.")


def matches(reply, expected):
    """expected: "250", "550 5.1.1", or "450 4.7.1 ...text..." (a prefix of the reply)."""
    return reply.full().startswith(expected)


def expect_log(log, regex, since, what, timeout=5.0):
    line = log.wait(regex, since, timeout)
    check(line, "%s: no line matching /%s/ in %s; it has:\n%s" %
          (what, regex, log.path, log.text(since)[-3000:]))
    return line


def expect_no_log(log, regex, since, what, settle=0.5):
    time.sleep(settle)
    m = log.find(regex, since)
    check(not m, "%s: unexpected line in %s: %s" % (what, log.path, m and m.group(0)))


def esc(s):
    return re.escape(s)


# ---------------------------------------------------------------------------
# the cluster

def backstop_config(redis_sock, listen, on_redis_error, mode="enforce", extra_server=(),
                    mirror="no"):
    # mirror = no: the scenarios see every request go to Redis, so the outage
    # ones see on_redis_error; test_redis_down_answered_from_mirror restarts A
    # with the local mirror (the default) to see it answer through an outage
    return dict(
        server=[("listen", listen)] + list(extra_server),
        redis=[("server", "unix:" + redis_sock), ("timeout", "%dms" % REDIS_TIMEOUT_MS),
               ("connect_timeout", "1s"), ("mirror", mirror)],
        policy=[("mode", mode), ("on_redis_error", on_redis_error), ("ndr_default", "allow")],
        ratelimit=[("invalid_recipients", "3/1m"), ("block_time", "10m"),
                   ("exempt", "192.0.2.250/32")],
        log=[("level", "debug")])


class Cluster:
    """Two MTAs, two backstopds, one Redis; the SMTP replies seen (rows)."""

    def __init__(self, work, binary, postfix, e2e_redis, e2e_db):
        self.work = work
        self.rows = []      # (scenario, mta, client, sender, rcpt, expected, seen, ms, ok)
        self.measured = []  # "what: value" lines for the summary
        self.current = ""   # the running scenario's name
        self._next_ip = 100
        self.redis = e2e_redis
        self.db = e2e_db
        self.bs_port = free_port()
        # A: the inet snippet, on a free port; B: the chroot snippet as it is
        # (unix:backstop/backstopd.sock, relative to B's queue directory)
        self.mta_a = postfix("a", snippet_settings(
            "main.cf.snippet", [("inet:127.0.0.1:10040", "inet:127.0.0.1:%d" % self.bs_port)]))
        self.mta_b = postfix("b", snippet_settings("main.cf.chroot-snippet"))
        for mta in (self.mta_a, self.mta_b):
            mta.policy = re.sub(r"\s+", " ", mta.postconf("smtpd_recipient_restrictions"))
            check("check_policy_service" in mta.policy,
                  "postconf: smtpd_recipient_restrictions = %s" % mta.policy)
        sockdir = os.path.join(self.mta_b.queue, "backstop")
        self.bs_sock = os.path.join(sockdir, "backstopd.sock")
        self.bsd_a = Backstopd("a", binary, work)
        self.bsd_b = Backstopd("b", binary, work)
        os.mkdir(sockdir)  # as the chroot snippet says: only group postfix enters
        os.chmod(sockdir, 0o750)
        shutil.chown(sockdir, "root", "postfix")

    def start(self):
        self.db.load(DATA)
        self.configure_backstops()
        self.bsd_a.start()
        self.bsd_b.start()
        st = os.stat(self.bs_sock)
        check(st.st_mode & 0o777 == 0o660 and st.st_gid == grp.getgrnam("postfix").gr_gid,
              "socket %s: mode %o gid %d" % (self.bs_sock, st.st_mode & 0o777, st.st_gid))
        for mta in (self.mta_a, self.mta_b):
            mta.start()
        print("e2e: Postfix %s on 127.0.0.1:%d (policy %s) and 127.0.0.1:%d (policy %s), "
              "Redis %s, work dir %s" % (self.mta_a.name, self.mta_a.port, self.mta_a.policy,
                                          self.mta_b.port, self.mta_b.policy, self.redis.sock,
                                          self.work))

    def stop(self):
        """Stop the daemons, each on its own (one failing stops no other);
        the exit statuses and sanitizer reports of both backstopds."""
        problems = []
        for x in (self.mta_a, self.mta_b, self.bsd_a, self.bsd_b):
            try:
                x.stop()
            except Exception as e:  # noqa: BLE001 - the others are still stopped
                problems.append("stopping %s: %s: %s" % (x, type(e).__name__, e))
        for bs in (self.bsd_a, self.bsd_b):
            problem = bs.sanitizer_errors()
            if problem:
                problems.append("backstopd %s log: %s" % (bs.name, problem))
            elif bs.rc not in (0, None):
                problems.append("backstopd %s exited with status %s" % (bs.name, bs.rc))
        return problems

    def configure_backstops(self, mode="enforce", mirror="no"):
        self.bsd_a.configure(**backstop_config(
            self.redis.sock, "inet:127.0.0.1:%d" % self.bs_port, "defer", mode, mirror=mirror))
        self.bsd_b.configure(**backstop_config(
            self.redis.sock, "unix:" + self.bs_sock, "dunno", mode,
            extra_server=[("socket_mode", "0660"), ("socket_group", "postfix")],
            mirror=mirror))

    def new_ip(self):
        """A remote client address nobody used before (192.0.2.100 ..)."""
        ip = "192.0.2.%d" % self._next_ip
        self._next_ip += 1
        check(self._next_ip < 250, "out of test addresses")
        return ip

    def bs_for(self, mta):
        return self.bsd_a if mta is self.mta_a else self.bsd_b

    def marks(self):
        return {x: x.log.size() for x in (self.mta_a, self.mta_b, self.bsd_a, self.bsd_b)}

    def record(self, mta, ip, sender, rcpt, expected, reply, text=None):
        """Add a row to the table; True when the reply starts with `expected`
        (and holds `text`, if given)."""
        ok = matches(reply, expected) and (text is None or text in reply.text)
        self.rows.append((self.current, mta.name, ip, "<%s>" % sender, rcpt, expected,
                          reply.full(), reply.secs * 1000, ok))
        return ok

    def rcpt_check(self, mta, ip, sender, rcpt, expected, session=None, text=None):
        """RCPT (in a new session unless given one) and check the reply: it must
        start with `expected` and, if given, contain `text`."""
        s = session or Session(mta, ip)
        try:
            if session is None:
                s.mail(sender)
            r = s.rcpt(rcpt)
        finally:
            if session is None:
                s.close()
        print("# MTA %s %s from=<%s> to=<%s>: %r" % (mta.name, ip, sender, rcpt, r))
        ok = self.record(mta, ip, sender, rcpt, expected, r, text)
        check(ok, "MTA %s, client %s, <%s> -> <%s>: want %s%s, got %r"
              % (mta.name, ip, sender, rcpt, expected, " ... " + text if text else "", r))
        return r

    def report(self):
        """The SMTP reply tables and the figures, as lines."""
        out = ["SMTP codes per scenario (MTA:code, in order):"]
        for name in dict.fromkeys(r[0] for r in self.rows):
            codes = ["%s:%s%s" % (r[1], " ".join(r[6].split()[:2]) if not r[6].startswith("2") else
                                  r[6].split()[0], "" if r[8] else "(FAIL)")
                     for r in self.rows if r[0] == name]
            out.append("  %-42s %s" % (name, ", ".join(codes)))
        if self.measured:
            out.append("Measured:")
            out += ["  " + line for line in self.measured]
        out.append("SMTP replies seen (client addresses are set with XCLIENT):")
        hdr = ("scenario", "MTA", "client", "from", "to", "expected", "seen", "ms")
        rows = [(r[0], r[1], r[2], r[3], r[4], r[5][:40], r[6][:60] + ("" if r[8] else "  <-- FAIL"),
                 "%.0f" % r[7]) for r in self.rows]
        widths = [max(len(str(x[i])) for x in [hdr] + rows) for i in range(len(hdr) - 2)]
        for row in [hdr] + rows:
            cells = ["%-*s" % (w, c) for w, c in zip(widths, row[:-2])]
            out.append("  " + "  ".join(cells) + "  %6s  %s" % (row[7], row[6]))
        return out


@pytest.fixture(scope="module")
def cluster(backstopd_bin, e2e_work, postfix, e2e_redis, e2e_db, e2e_report):
    if not shutil.which("swaks"):
        pytest.skip("e2e SKIPPED: swaks missing (scripts/deps installs it)")
    c = Cluster(e2e_work, backstopd_bin, postfix, e2e_redis, e2e_db)
    try:
        c.start()
        yield c
    finally:
        problems = c.stop()
        e2e_report.extend(c.report())
        if problems:
            print("--- last lines of %s:\n%s" % (c.redis.log_path, procs.tail(c.redis.log_path, 15)))
            for x in (c.bsd_a, c.bsd_b, c.mta_a, c.mta_b):
                print("--- last lines of %s:\n%s" % (x.log.path, x.log.tail(15)))
        check(not problems, "; ".join(problems))


@pytest.fixture(autouse=True)
def scenario_name(request):
    """The running scenario's name, for the rows of the SMTP reply table."""
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").current = request.node.name[len("test_"):]


def test_recipients_known_and_unknown(cluster):
    """Protected domain: known user 250, unknown 550 5.1.1, on both MTAs (inet and unix policy)."""
    for mta in (cluster.mta_a, cluster.mta_b):
        m = cluster.marks()
        ip = cluster.new_ip()
        s = Session(mta, ip)
        s.mail("sender@remote.test")
        cluster.rcpt_check(mta, ip, "sender@remote.test", "alice@example.com", "250", s)
        r = cluster.rcpt_check(mta, ip, "sender@remote.test", "nobody@example.com",
                       "550 5.1.1 <nobody@example.com>: Recipient address rejected:", s,
                       text=USER_UNKNOWN)
        s.close()
        bs = cluster.bs_for(mta)
        expect_log(bs.log, r"\w+: reject: RCPT from mx-%s\.remote\.test\[%s\]: 550 5\.1\.1 "
                   r"<nobody@example\.com>: Recipient address rejected: User unknown; "
                   r"from=<sender@remote\.test> to=<nobody@example\.com> proto=ESMTP "
                   r"helo=<[^>]*> reason=unknown_user conn=\d+"
                   % (ip.replace(".", "-"), esc(ip)), m[bs], "backstopd %s" % bs.name)
        expect_log(bs.log, r"NOQUEUE: dunno: RCPT from \S+\[%s\]: from=<sender@remote\.test> "
                   r"to=<alice@example\.com> reason=valid" % esc(ip), m[bs],
                   "backstopd %s debug line" % bs.name)
        expect_log(mta.log, r"\w+: reject: RCPT from \S+\[%s\]: %s; from=<sender@remote\.test>"
                   r" to=<nobody@example\.com>" % (esc(ip), esc(r.full())), m[mta], "maillog")


def test_recipient_extension_case_catchall(cluster):
    """user+tag of a known user 250, unknown+tag 550, case-insensitive, catch-all 250."""
    ip = cluster.new_ip()
    s = Session(cluster.mta_a, ip)
    s.mail("sender@remote.test")
    cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "alice+tag@example.com", "250", s)
    cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "Alice@EXAMPLE.com", "250", s)
    cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "nobody+alice@example.com", "550 5.1.1", s)
    cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "anyone@catchall.test", "250", s)
    s.close()
    ip = cluster.new_ip()
    cluster.rcpt_check(cluster.mta_b, ip, "sender@remote.test", "bob+lists@example.com", "250")
    cluster.rcpt_check(cluster.mta_b, ip, "sender@remote.test", "whoever@catchall.test", "250")


def test_unprotected_domain_untouched(cluster):
    """Not in backstop:domains: backstop answers DUNNO (no reject line), Postfix decides."""
    m = cluster.marks()
    ip = cluster.new_ip()
    # a relay domain of this MTA that backstop does not protect
    cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "anyone@open.test", "250")
    expect_log(cluster.bsd_a.log, r"dunno: .*to=<anyone@open\.test> reason=unprotected", m[cluster.bsd_a],
               "backstopd a")
    # a client outside mynetworks relaying to a remote domain: Postfix's own
    # reject_unauth_destination, backstop never asked
    out = "198.51.100.7"
    cluster.rcpt_check(cluster.mta_b, out, "sender@remote.test", "someone@elsewhere.test",
               "554 5.7.1 <someone@elsewhere.test>: Relay access denied")
    for bs in (cluster.bsd_a, cluster.bsd_b):
        expect_no_log(bs.log, r"(reject|defer|warning).*(open\.test|elsewhere\.test)", m[bs],
                      "backstopd %s" % bs.name, settle=0.2)
    expect_no_log(cluster.bsd_b.log, r"elsewhere\.test", m[cluster.bsd_b], "backstopd b", settle=0)


def test_full_transactions_with_swaks(cluster):
    """Whole transactions through swaks: known user queued (and discarded), unknown refused."""
    m = cluster.marks()
    ip = cluster.new_ip()
    r, d = swaks(cluster.mta_a, ip, "sender@remote.test", "alice@example.com")
    check(cluster.record(cluster.mta_a, ip, "sender@remote.test", "alice@example.com", "250", r),
          "swaks RCPT alice: %r" % r)
    check(d is not None and cluster.record(cluster.mta_a, ip, "sender@remote.test", "(DATA)", "250 2.0.0", d),
          "swaks DATA: %r" % d)
    expect_log(cluster.mta_a.log, r"to=<alice@example\.com>, relay=none, .*status=sent", m[cluster.mta_a],
               "maillog delivery to the discard transport", timeout=10)
    r, d = swaks(cluster.mta_b, ip, "sender@remote.test", "nobody@example.com")
    check(cluster.record(cluster.mta_b, ip, "sender@remote.test", "nobody@example.com", "550 5.1.1", r),
          "swaks RCPT nobody: %r" % r)
    ip = cluster.new_ip()
    r, d = swaks(cluster.mta_b, ip, "", "bounce@deny.test", quit_after="RCPT")
    check(cluster.record(cluster.mta_b, ip, "", "bounce@deny.test", "550 5.7.1", r),
          "swaks null sender: %r" % r)


def test_ndr_policy_lookup_order(cluster):
    """Null sender to remote domains: exact entry, .parent entries, longest suffix, then *."""
    cases = [  # (recipient, expected, the ndr entry backstopd must name)
        ("postmaster@deny.test", "550 5.7.1", r"\*"),
        ("bounce@partner.test", "250", r"partner\.test"),
        ("bounce@sub.partner.test", "550 5.7.1", r"\*"),           # exact entry only
        ("bounce@mail.friends.test", "250", r"\.friends\.test"),
        ("bounce@a.b.friends.test", "250", r"\.friends\.test"),
        ("bounce@friends.test", "550 5.7.1", r"\*"),               # .parent = subdomains only
        ("bounce@bad.friends.test", "550 5.7.1", r"bad\.friends\.test"),
        ("bounce@h.x.friends.test", "550 5.7.1", r"\.x\.friends\.test"),
        ("bounce@Mail.FRIENDS.test", "250", r"\.friends\.test"),
    ]
    for i, (rcpt, expected, entry) in enumerate(cases):
        mta = (cluster.mta_a, cluster.mta_b)[i % 2]
        bs = cluster.bs_for(mta)
        m = cluster.marks()
        ip = cluster.new_ip()
        cluster.rcpt_check(mta, ip, "", rcpt, expected, text=None if expected == "250" else NDR_DENY)
        verb = "permit" if expected == "250" else "reject"
        reason = "ndr_allow" if expected == "250" else "ndr_deny"
        expect_log(bs.log, r"NOQUEUE: %s: RCPT from \S+\[%s\]: .*from=<> to=<%s> .*reason=%s "
                   r"ndr_entry=%s conn=" % (verb, esc(ip), esc(rcpt), reason, entry), m[bs],
                   "backstopd %s for %s" % (bs.name, rcpt))


def test_ndr_star_then_ndr_default(cluster):
    """`*` applies before [policy] ndr_default (allow here); an unusable value -> ndr_default."""
    ip = cluster.new_ip()
    cluster.rcpt_check(cluster.mta_a, ip, "", "bounce@nowhere.test", "550 5.7.1")      # * = deny
    cluster.db.execute_command("HDEL", PREFIX + "ndr", "*")
    try:
        m = cluster.marks()
        cluster.rcpt_check(cluster.mta_a, ip, "", "bounce@nowhere.test", "250")        # ndr_default = allow
        expect_log(cluster.bsd_a.log, r"permit: .*to=<bounce@nowhere\.test> .*reason=ndr_allow "
                   r"ndr_entry=ndr_default", m[cluster.bsd_a], "backstopd a")
        cluster.rcpt_check(cluster.mta_b, ip, "", "bounce@nowhere.test", "250")
    finally:
        cluster.db.execute_command("HSET", PREFIX + "ndr", "*", "deny")
    m = cluster.marks()
    cluster.rcpt_check(cluster.mta_b, ip, "", "bounce@broken.test", "250")  # "limit banana" -> ndr_default
    expect_log(cluster.bsd_b.log, r"warning: ndr entry \"broken\.test\" has an unusable value "
               r"\"limit(\\x20| )banana\"", m[cluster.bsd_b], "backstopd b")


def test_ndr_to_protected_domain_and_exempt_client(cluster):
    """Null sender to a protected domain is a recipient check; exempt clients get NDR policy."""
    ip = cluster.new_ip()
    cluster.rcpt_check(cluster.mta_a, ip, "", "alice@example.com", "250")
    cluster.rcpt_check(cluster.mta_b, ip, "", "nobody@example.com", "550 5.1.1")
    cluster.rcpt_check(cluster.mta_a, "192.0.2.250", "", "bounce@deny.test", "550 5.7.1")
    cluster.rcpt_check(cluster.mta_b, "192.0.2.251", "", "bounce@partner.test", "250")


def test_ndr_limit_cluster_wide(cluster):
    """limit 3/1h on lists.test: exactly 3 bounces pass, counted across both MTAs."""
    got = []
    for i in range(7):
        mta = (cluster.mta_a, cluster.mta_b)[i % 2]
        ip = cluster.new_ip()
        s = Session(mta, ip)
        s.mail("")
        r = s.rcpt("bounce%d@lists.test" % i)
        s.close()
        got.append(r.code)
        cluster.record(mta, ip, "", "bounce%d@lists.test" % i, "250" if i < 3 else "550 5.7.1", r)
        if i >= 3:
            check(NDR_LIMIT in r.text, "over the limit, want '%s', got %r" % (NDR_LIMIT, r))
    check(got == [250] * 3 + [550] * 4, "want 3 x 250 then 550s, got %s" % got)
    count = cluster.db.execute_command("GET", PREFIX + "ndrcount:lists.test")
    ttl = int(cluster.db.execute_command("TTL", PREFIX + "ndrcount:lists.test"))
    check(count == "7" and 3500 <= ttl <= 3600, "ndrcount:lists.test = %s, TTL %d" % (count, ttl))
    expect_log(cluster.bsd_a.log, r"permit: .*to=<bounce0@lists\.test> .*reason=ndr_under_limit", 0,
               "backstopd a")
    expect_log(cluster.bsd_b.log, r"reject: .*to=<bounce3@lists\.test> .*reason=ndr_limit", 0,
               "backstopd b")


def test_reply_texts_as_seen_by_clients(cluster):
    """The SMTP client sees each refusal's text once (README's texts).

    Postfix puts "<rcpt>: Recipient address rejected: " before the text of
    every "NNN text" a policy service returns, so a policy reply that already
    holds that prefix reaches the client twice over."""
    ip = cluster.new_ip()
    blocked = "192.0.2.79"
    cluster.db.execute_command("SET", PREFIX + "block:" + blocked, "manual", "EX", "60")
    try:
        got = [
            (cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "nobody@example.com", "550 5.1.1"),
             "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"),
            (cluster.rcpt_check(cluster.mta_b, ip, "", "bounce@deny.test", "550 5.7.1"),
             "550 5.7.1 <bounce@deny.test>: Recipient address rejected: " + NDR_DENY),
            (cluster.rcpt_check(cluster.mta_a, ip, "", "bounce9@lists.test", "550 5.7.1"),  # over the limit
             "550 5.7.1 <bounce9@lists.test>: Recipient address rejected: " + NDR_LIMIT),
            (cluster.rcpt_check(cluster.mta_b, blocked, "sender@remote.test", "alice@example.com", BLOCKED),
             None),
        ]
    finally:
        cluster.db.execute_command("DEL", PREFIX + "block:" + blocked)
    bad = []
    for r, want in got:
        if (want and r.full() != want) or r.full().count("rejected:") > 1:
            bad.append(r.full())
    if bad:
        pytest.fail("policy reply texts already carry Postfix's own prefix, so clients see "
                       "it twice: %s" % " | ".join(bad))


def test_overlong_local_part_in_protected_domain(cluster):
    """A 129-byte local part in a protected domain must not be accepted either.

    README (Limits) documents that such a recipient is "not validated"
    (DUNNO, reason bad_recipient): Postfix then accepts mail for a user that
    cannot exist, and its bounce is the backscatter backstop exists to stop."""
    ip = cluster.new_ip()
    cluster.rcpt_check(cluster.mta_a, ip, "x@remote.test", "a" * 128 + "@example.com", "550 5.1.1")
    m = cluster.marks()
    s = Session(cluster.mta_b, ip)
    s.mail("x@remote.test")
    rcpt = "a" * 129 + "@example.com"
    r = s.rcpt(rcpt)
    s.close()
    cluster.record(cluster.mta_b, ip, "x@remote.test", "a{129}@example.com", "550 5.1.1", r)
    if not matches(r, "550 5.1.1"):
        why = cluster.bsd_b.log.find(r"reason=\w+", m[cluster.bsd_b])
        pytest.fail("unknown user with a 129-byte local part at a protected domain: %r, "
                       "backstopd %s" % (r, why and why.group(0)))


def test_rate_tracking_cluster(cluster):
    """3/1m invalid recipients via MTA A blocks the client on MTA B too; DEL unblocks."""
    ip = "192.0.2.66"
    m = cluster.marks()
    s = Session(cluster.mta_a, ip)
    s.mail("probe@remote.test")
    for i in range(4):  # the 4th is "more than 3": the block is set after its answer
        cluster.rcpt_check(cluster.mta_a, ip, "probe@remote.test", "nobody%d@example.com" % i, "550 5.1.1", s)
    key = PREFIX + "block:" + ip
    check(wait_until(lambda: cluster.db.execute_command("EXISTS", key) == 1, 5), "no %s after 4 invalid" % key)
    expect_log(cluster.bsd_a.log, r"client %s blocked for 600s: 4 invalid recipients within 60s "
               r"\(limit 3\)" % esc(ip), m[cluster.bsd_a], "backstopd a")
    cluster.rcpt_check(cluster.mta_a, ip, "probe@remote.test", "alice@example.com", BLOCKED, s,
               text=BLOCKED_TEXT)
    s.close()
    # the other MTA, with its own backstopd, refuses it too, whatever the recipient
    r = cluster.rcpt_check(cluster.mta_b, ip, "probe@remote.test", "alice@example.com", BLOCKED,
                   text=BLOCKED_TEXT)
    cluster.rcpt_check(cluster.mta_b, ip, "", "bounce@partner.test", BLOCKED, text=BLOCKED_TEXT)
    expect_log(cluster.bsd_b.log, r"NOQUEUE: defer: RCPT from \S+\[%s\]: %s .*%s; .*reason=blocked"
               % (esc(ip), BLOCKED, BLOCKED_TEXT), m[cluster.bsd_b], "backstopd b")
    expect_log(cluster.mta_b.log, r"NOQUEUE: reject: RCPT from \S+\[%s\]: %s;" % (esc(ip), esc(r.full())),
               m[cluster.mta_b], "maillog b")
    ttl = int(cluster.db.execute_command("TTL", key))
    check(590 <= ttl <= 600, "TTL of %s = %d, want ~600 (block_time = 10m)" % (key, ttl))
    # an unrelated client is not affected
    cluster.rcpt_check(cluster.mta_b, cluster.new_ip(), "x@remote.test", "alice@example.com", "250")
    # the admin lets it back in
    check(cluster.db.execute_command("DEL", key) == 1, "DEL " + key)
    cluster.rcpt_check(cluster.mta_b, ip, "probe@remote.test", "alice@example.com", "250")
    cluster.rcpt_check(cluster.mta_a, ip, "probe@remote.test", "bob@example.com", "250")


def test_ipv6_clients_per_network(cluster):
    """IPv6 clients are counted and blocked per /64 ([ratelimit] ipv6_prefix), on both MTAs."""
    key = PREFIX + "block:2001:db8:1:2::/64"
    m = cluster.marks()
    for mta, ip in ((cluster.mta_a, "2001:db8:1:2::5"), (cluster.mta_b, "2001:db8:1:2::6")):
        s = Session(mta, ip)
        s.mail("probe@remote.test")
        for i in range(2):  # 2 + 2 = 4 invalid from one /64: more than 3
            cluster.rcpt_check(mta, ip, "probe@remote.test", "v6-%d@example.com" % i, "550 5.1.1", s)
        s.close()
    check(wait_until(lambda: cluster.db.execute_command("EXISTS", key) == 1, 5),
          "no %s after 4 invalid recipients from the /64" % key)
    expect_log(cluster.bsd_b.log, r"client 2001:db8:1:2::/64 blocked for 600s: 4 invalid recipients",
               m[cluster.bsd_b], "backstopd b")
    cluster.rcpt_check(cluster.mta_a, "2001:db8:1:2::99", "x@remote.test", "alice@example.com", BLOCKED,
               text=BLOCKED_TEXT)
    expect_log(cluster.bsd_a.log, r"defer: RCPT from \S+\[2001:db8:1:2::99\]: .*reason=blocked",
               m[cluster.bsd_a], "backstopd a")
    cluster.rcpt_check(cluster.mta_b, "2001:db8:1:3::1", "x@remote.test", "alice@example.com", "250")
    cluster.db.execute_command("DEL", key)
    cluster.rcpt_check(cluster.mta_b, "2001:db8:1:2::99", "x@remote.test", "alice@example.com", "250")


def test_exempt_and_manual_block(cluster):
    """Exempt clients (config CIDR, backstop:exempt) are never blocked; a manual block works."""
    for ip in ("192.0.2.250", "192.0.2.251"):
        s = Session(cluster.mta_a, ip)
        s.mail("sender@remote.test")
        for i in range(5):
            cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "ghost%d@example.com" % i, "550 5.1.1", s)
        s.close()
        time.sleep(0.3)  # the counting script runs after the answer
        check(cluster.db.execute_command("EXISTS", PREFIX + "block:" + ip) == 0, "exempt %s was blocked" % ip)
        cluster.rcpt_check(cluster.mta_b, ip, "sender@remote.test", "alice@example.com", "250")
    ip = "192.0.2.77"
    cluster.db.execute_command("SET", PREFIX + "block:" + ip, "manual", "EX", "120")
    cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "alice@example.com", BLOCKED, text=BLOCKED_TEXT)
    cluster.rcpt_check(cluster.mta_b, ip, "sender@remote.test", "bob@example.com", BLOCKED, text=BLOCKED_TEXT)
    cluster.db.execute_command("DEL", PREFIX + "block:" + ip)
    cluster.rcpt_check(cluster.mta_b, ip, "sender@remote.test", "bob@example.com", "250")


def test_report_mode(cluster):
    """mode = report (SIGHUP): everything 250, Postfix logs WARN would reject/defer."""
    cluster.configure_backstops(mode="report")
    cluster.bsd_a.reload()
    cluster.bsd_b.reload()
    blocked = "192.0.2.78"
    cluster.db.execute_command("SET", PREFIX + "block:" + blocked, "manual", "EX", "120")
    try:
        for mta in (cluster.mta_a, cluster.mta_b):
            bs = cluster.bs_for(mta)
            m = cluster.marks()
            ip = cluster.new_ip()
            s = Session(mta, ip)
            s.mail("sender@remote.test")
            cluster.rcpt_check(mta, ip, "sender@remote.test", "nobody@example.com", "250", s)
            cluster.rcpt_check(mta, ip, "sender@remote.test", "alice@example.com", "250", s)
            s.close()
            cluster.rcpt_check(mta, ip, "", "bounce@deny.test", "250")
            cluster.rcpt_check(mta, blocked, "sender@remote.test", "alice@example.com", "250")
            # Postfix logs a WARN action as "warn: ...: <text without WARN>"
            for rcpt, text in (("nobody@example.com", r"would reject: 550 5\.1\.1 .*User unknown"),
                               ("bounce@deny.test", r"would reject: 550 5\.7\.1 .*" + NDR_DENY),
                               ("alice@example.com", r"would defer: 450 4\.7\.1 .*" + BLOCKED_TEXT)):
                expect_log(mta.log, r"NOQUEUE: warn: RCPT from \S+: %s; from=<[^>]*> to=<%s>"
                           % (text, esc(rcpt)), m[mta], "maillog %s" % mta.name)
                expect_log(bs.log, r"NOQUEUE: reject_warning: RCPT from \S+: WARN %s; .*to=<%s>"
                           % (text, esc(rcpt)), m[bs], "backstopd %s" % bs.name)
            expect_no_log(mta.log, r"NOQUEUE: reject:", m[mta], "maillog %s" % mta.name, 0)
    finally:
        cluster.db.execute_command("DEL", PREFIX + "block:" + blocked)
        cluster.configure_backstops(mode="enforce")
        cluster.bsd_a.reload()
        cluster.bsd_b.reload()
    cluster.rcpt_check(cluster.mta_a, cluster.new_ip(), "sender@remote.test", "nobody@example.com", "550 5.1.1")


def redis_outage_answers(cluster, reason, fast):
    """RCPTs while Redis is unusable: A (defer) 450 4.7.1, B (dunno) 250, within the deadline."""
    m = cluster.marks()
    ip = cluster.new_ip()
    limit_s = (REDIS_TIMEOUT_MS / 1000.0 + 1.0) if not fast else 1.0
    times = []
    for mta, rcpt, expected in ((cluster.mta_a, "alice@example.com", "450 4.7.1"),
                                (cluster.mta_a, "nobody@example.com", "450 4.7.1"),
                                (cluster.mta_b, "alice@example.com", "250"),
                                (cluster.mta_b, "nobody@example.com", "250")):
        r = cluster.rcpt_check(mta, ip, "sender@remote.test", rcpt, expected)
        times.append("%s %.0f ms" % (mta.name, r.secs * 1000))
        if mta is cluster.mta_a:
            check(UNAVAILABLE in r.text, "want '%s' in %r" % (UNAVAILABLE, r))
        check(r.secs < limit_s, "RCPT took %.0f ms (limit %.0f ms; policy timeout %ds)"
              % (r.secs * 1000, limit_s * 1000, POLICY_TIMEOUT_S))
        if not fast and len(times) == 1:
            # the first one waited for the deadline (later ones may find the
            # connection already dropped by the stall detector)
            check(r.secs >= REDIS_TIMEOUT_MS / 1000.0 * 0.9,
                  "answered in %.0f ms, before the %d ms deadline?" % (r.secs * 1000,
                                                                       REDIS_TIMEOUT_MS))
    cluster.measured.append("%s: RCPT round trips %s (Postfix policy timeout %ds)"
                    % (cluster.current, ", ".join(times), POLICY_TIMEOUT_S))
    expect_log(cluster.bsd_a.log, r"NOQUEUE: fallback: RCPT from \S+\[%s\]: DEFER_IF_PERMIT %s; "
               r".*to=<alice@example\.com> .*reason=(%s)" % (esc(ip), UNAVAILABLE, reason),
               m[cluster.bsd_a], "backstopd a")
    expect_log(cluster.bsd_b.log, r"NOQUEUE: fallback: RCPT from \S+\[%s\]: DUNNO; .*"
               r"to=<nobody@example\.com> .*reason=(%s)" % (esc(ip), reason), m[cluster.bsd_b],
               "backstopd b")
    expect_log(cluster.mta_a.log, r"NOQUEUE: reject: RCPT from \S+\[%s\]: 450 4\.7\.1 <alice@example\.com>"
               r": Recipient address rejected: %s;" % (esc(ip), UNAVAILABLE), m[cluster.mta_a],
               "maillog a")


def probe_code(mta, rcpt):
    """The SMTP code mta answers for rcpt, asked from the exempt address (not counted)."""
    s = Session(mta, "192.0.2.250")
    s.mail("probe@remote.test")
    r = s.rcpt(rcpt)
    s.close()
    return r.code


def recovered(cluster):
    """Mail flows again: valid 250 and unknown 550 on both MTAs; returns seconds waited."""
    t = time.monotonic()
    check(wait_until(lambda: probe_code(cluster.mta_a, "alice@example.com") == 250, 15, 0.25),
          "MTA A still not accepting alice 15s after Redis is back")
    # B's fallback is DUNNO (250 for anyone): it is back when it refuses again;
    # its reconnect backoff may end later than A's
    check(wait_until(lambda: probe_code(cluster.mta_b, "nobody@example.com") == 550, 15, 0.25),
          "MTA B still not refusing nobody 15s after Redis is back")
    waited = time.monotonic() - t
    ip = cluster.new_ip()
    for mta in (cluster.mta_a, cluster.mta_b):
        cluster.rcpt_check(mta, ip, "sender@remote.test", "alice@example.com", "250")
        cluster.rcpt_check(mta, ip, "sender@remote.test", "nobody@example.com", "550 5.1.1")
    return waited


def test_redis_frozen(cluster):
    """Redis frozen (SIGSTOP): the on_redis_error answer within [redis] timeout; SIGCONT heals."""
    cluster.redis.freeze()
    try:
        redis_outage_answers(cluster, "redis_timeout|redis_down", fast=False)
    finally:
        cluster.redis.thaw()
    cluster.measured.append("redis_frozen: mail flows again %.1fs after SIGCONT" % recovered(cluster))


def test_redis_killed_and_restarted(cluster):
    """Redis crashes (SIGKILL): fallback answers at once; a restart on the same socket heals."""
    check(cluster.db.save(), "SAVE")
    m = cluster.marks()
    cluster.redis.kill()
    try:
        redis_outage_answers(cluster, "redis_down", fast=True)
        expect_log(cluster.bsd_a.log, r"warning: redis: connection lost", m[cluster.bsd_a], "backstopd a")
        expect_log(cluster.bsd_b.log, r"warning: redis: connection lost", m[cluster.bsd_b], "backstopd b")
    finally:
        cluster.redis.start()  # same socket, same dump.rdb: the data is back
    waited = recovered(cluster)
    cluster.measured.append("redis_killed_and_restarted: mail flows again %.1fs after redis-server "
                    "restarted on the same socket" % waited)
    check(waited < 6, "took %.1fs to use Redis again (backoff max is 2s)" % waited)
    expect_log(cluster.bsd_a.log, r"redis: connected to \S+ again", m[cluster.bsd_a], "backstopd a")


def test_redis_down_answered_from_mirror(cluster):
    """backstopd A restarted with the local mirror ([redis] mirror = yes,
    max_stale 5m): Redis killed, MTA A still gets 250 for a known user from
    the mirror, at once; an unknown user gets A's on_redis_error answer
    (450 4.7.1), never 550: stale data never says a user does not exist (the
    user may have been added since). B (no mirror) falls back to its
    on_redis_error DUNNO; a restart of Redis heals."""
    bs = cluster.bsd_a
    check(bs.stop() == 0, "backstopd a exited %s" % bs.rc)
    cluster.configure_backstops(mirror="yes")
    mark = bs.log.size()
    bs.start()
    check(bs.log.wait(r"redis: mirror: tracking on", mark, 15),
          "backstopd a: mirror not tracking:\n%s" % bs.log.text(mark))
    ip = cluster.new_ip()
    # the mirror loads in the background: wait until A answers from it
    cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "nobody@example.com", "550 5.1.1")
    time.sleep(1.0)
    check(cluster.db.save(), "SAVE")
    m = cluster.marks()
    cluster.redis.kill()
    try:
        # A answers from its mirror once it knows the link is lost
        expect_log(bs.log, r"warning: redis: mirror: invalidations lost; answering from the mirror",
                   m[bs], "backstopd a")
        s = Session(cluster.mta_a, ip)
        s.mail("sender@remote.test")
        r = cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "alice@example.com", "250", s)
        check(r.secs < 1.0, "RCPT took %.0f ms" % (r.secs * 1000))
        cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "nobody@example.com",
                           "450 4.7.1", s)
        s.close()
        cluster.rcpt_check(cluster.mta_b, cluster.new_ip(), "sender@remote.test",
                           "nobody@example.com", "250")
        # the one fallback of A is the unknown user's; alice came from the mirror
        expect_log(bs.log, r": fallback: RCPT .* to=<nobody@example\.com>", m[bs], "backstopd a")
        expect_no_log(bs.log, r": fallback: RCPT .* to=<alice@example\.com>", m[bs],
                      "backstopd a", 0)
    finally:
        cluster.redis.start()

    # B asks Redis for every request: wait until it is reconnected
    check(wait_until(lambda: probe_code(cluster.mta_b, "nobody@example.com") == 550, 15, 0.25),
          "MTA B still not refusing nobody 15s after Redis is back")
    waited = recovered(cluster)
    cluster.measured.append("redis_down_answered_from_mirror: A answered from its mirror while "
                            "Redis was down; mail flows through Redis again %.1fs after its restart"
                            % waited)


def test_stats_counted_cluster_wide(cluster):
    """backstop:stats holds the decisions of both backstopds."""
    time.sleep(1.5)  # flushed every second
    stats = {k: int(v) for k, v in cluster.db.hgetall(PREFIX + "stats").items()}
    print("# stats: %s" % stats)
    for field in ("valid", "unknown_user", "ndr_deny", "ndr_allow", "ndr_limit",
                  "ndr_under_limit", "blocked", "unprotected", "clients_blocked"):
        check(stats.get(field, 0) > 0, "backstop:stats %s = %s" % (field, stats.get(field)))
    # lists.test: 3 under the limit, then 4 refused (+1 in reply_texts_as_seen_by_clients)
    check(stats.get("ndr_under_limit") == 3 and stats.get("ndr_limit", 0) >= 4,
          "ndr_under_limit/ndr_limit = %s/%s, want 3/>=4" % (stats.get("ndr_under_limit"),
                                                            stats.get("ndr_limit")))


def test_no_unexpected_warnings(cluster):
    """Neither Postfix nor backstopd logged a warning the scenarios did not provoke."""
    expected_bs = (r"warning: ndr entry \"broken\.test\"|warning: redis: (connection lost|"
                   r"connection to \S+ dropped|cannot connect|mirror: invalidations lost)")
    for x in (cluster.mta_a, cluster.mta_b, cluster.bsd_a, cluster.bsd_b):
        bad = [l for l in x.log.text().splitlines()
               if re.search(r"\b(warning|fatal|panic|error):", l)
               and not (x in (cluster.bsd_a, cluster.bsd_b) and re.search(expected_bs, l))]
        check(not bad, "%s: %s" % (x.log.path, "\n".join(bad[:5])))


def test_backstopd_down_default_action(cluster):
    """backstopd A stopped: Postfix's default_action=DUNNO lets mail through; exit status 0."""
    rc = cluster.bsd_a.stop()
    check(rc == 0, "backstopd a exited %s on SIGTERM:\n%s" % (rc, cluster.bsd_a.log.tail()))
    m = cluster.marks()
    ip = cluster.new_ip()
    r = cluster.rcpt_check(cluster.mta_a, ip, "sender@remote.test", "nobody@example.com", "250")
    check(r.secs < POLICY_TIMEOUT_S, "RCPT took %.1fs" % r.secs)
    cluster.measured.append("backstopd_down_default_action: RCPT answered by default_action=DUNNO in "
                    "%.0f ms (smtpd_policy_service_try_limit 2, retry delay 1s)" % (r.secs * 1000))
    expect_log(cluster.mta_a.log, r"warning: problem talking to server 127\.0\.0\.1:%d" % cluster.bs_port,
               m[cluster.mta_a], "maillog a")
    cluster.rcpt_check(cluster.mta_b, ip, "sender@remote.test", "nobody@example.com", "550 5.1.1")


# ---------------------------------------------------------------------------
# main
