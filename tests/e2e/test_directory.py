"""
tests/e2e/test_directory.py - the directory end to end: SMTP client -> real
Postfix (smtputf8_enable = yes) -> backstopd -> real Redis, fed by
`backstopctl sync`

    /usr/bin/python3 -m pytest tests/e2e/test_directory.py --backstopd BUILD/backstopd \
        --backstopctl BUILD/backstopctl

One Postfix (tests/support/postfix.py) wired as etc/postfix/main.cf.snippet
says (check_policy_service on a free loopback port), relay_domains = the
protected domains; the SMTP client 127.0.0.1 is not in mynetworks, so
reject_unauth_destination shows which spellings of a domain Postfix itself
takes as that domain. One backstopd (enforce, 127.0.0.0/8 exempt from the
invalid-recipient block, so the many 550s below do not block the client),
one private redis-server.

test_every_form_of_a_protected_domain
    for each spelling of example.com and of the IDN domain protected as
    xn--bcher-kva.example (upper case, trailing dot, A-label, U-label with
    SMTPUTF8, decomposed U-label, a source route, ...): an unknown user and a
    known user in one transaction. Wherever Postfix takes the spelling as the
    domain (the known user gets 250) the unknown one gets 550 5.1.1; an
    unknown user never gets 2xx; the plain, upper-case, A-label and U-label
    forms must be taken.
test_empty_directory_defers
    a protected domain whose rcpt set is missing (never synced, and emptied
    by sync --force) answers 4xx for every recipient, never 5xx.
test_mail_during_sync_sees_old_or_new_set
    20,000 users replaced by 20,000 others with `backstopctl sync --force`
    (file source) while 4 clients send pairs of RCPTs, an old-only user then
    a new-only user (random ones, 200 pairs a transaction): every pair is (250, 550) (old set), (550, 250)
    (new set) or, once, (250, 250) (the swap fell between the two); never
    both refused, never old again after new.
The terminal summary (e2e report) has the reply table and the counts.
"""
import os
import random
import smtplib
import subprocess
import threading
import time

import pytest

from support.backstopd import Backstopd

pytestmark = [pytest.mark.slow, pytest.mark.postfix]

IDN_A = "xn--bcher-kva.example"     # protected as this (canonical form)
IDN_U = "bücher.example"            # its U-label
PROTECTED = ("example.com", IDN_A, "empty.test", "swap.test")
# Postfix matches relay_domains as written (it does not turn a U-label into
# its A-label): a site that takes mail for the U-label lists both forms.
RELAY_DOMAINS = PROTECTED + (IDN_U,)
LOOPS = 4                           # SMTP clients during the sync
PAIRS_PER_MAIL = 200                # under smtpd_recipient_limit (1000)
SNIPPET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc", "postfix",
                       "main.cf.snippet")
SWAP_USERS = 20_000

MAIN_CF = """\
smtputf8_enable = yes
mynetworks = 192.0.2.0/24
relay_domains = {relay}
recipient_delimiter = +
smtpd_soft_error_limit = 1000000
smtpd_hard_error_limit = 1000000
smtpd_junk_command_limit = 1000000
smtpd_error_sleep_time = 0
{snippet}"""

# (label, domain as sent, SMTPUTF8 on MAIL FROM, must Postfix take it as the domain)
FORMS = [
    ("lowercase", "example.com", False, True),
    ("UPPER", "EXAMPLE.COM", False, True),
    ("Mixed", "Example.Com", False, True),
    ("trailing dot", "example.com.", False, False),
    ("UPPER trailing dot", "EXAMPLE.COM.", False, False),
    ("source route", "example.com", False, False),  # <@elsewhere.test:user@example.com>
    ("A-label", IDN_A, False, True),
    ("A-label UPPER", IDN_A.upper(), False, True),
    ("U-label SMTPUTF8", "bücher.example", True, True),
    ("U-label UPPER SMTPUTF8", "BÜCHER.EXAMPLE", True, True),
    ("U-label NFD SMTPUTF8", "bu\u0308cher.example", True, False),
    ("U-label trailing dot SMTPUTF8", "bücher.example.", True, False),
    ("U-label without SMTPUTF8", "bücher.example", False, False),
    ("A-label SMTPUTF8", IDN_A, True, True),
]


def check(cond, msg):
    if not cond:
        pytest.fail(msg, pytrace=False)


class Client:
    """One SMTP session to the MTA as 127.0.0.1; UTF-8 commands allowed."""

    def __init__(self, mta):
        self.s = smtplib.SMTP("127.0.0.1", mta.port, local_hostname="e2e-client.test", timeout=30)
        self.s.ehlo()
        check(self.s.has_extn("smtputf8"), "the MTA does not offer SMTPUTF8")

    def mail(self, sender, utf8=False):
        code, msg = self.s.mail(sender, ["SMTPUTF8"] if utf8 else [])
        check(code == 250, "MAIL FROM:<%s>: %d %s" % (sender, code, msg))

    def rcpt(self, addr):
        """(code, "code text") of RCPT TO:<addr> (addr may be a source route)"""
        self.s.command_encoding = "utf-8"  # smtplib's mail() and rset() reset it
        code, msg = self.s.docmd("RCPT TO:<%s>" % addr)
        return code, "%d %s" % (code, msg.decode("utf-8", "replace").replace("\n", " "))

    def rset(self):
        self.s.rset()

    def close(self):
        try:
            self.s.quit()
        except Exception:  # noqa: BLE001 - the session is over either way
            self.s.close()


@pytest.fixture(scope="module")
def env(postfix, e2e_work, e2e_redis, e2e_db, backstopd_bin, backstopctl_bin, e2e_report):
    e2e_db.sadd("backstop:domains", *PROTECTED)
    e2e_db.sadd("backstop:rcpt:example.com", "alice", "bob")
    e2e_db.sadd("backstop:rcpt:" + IDN_A, "alice", "jürgen")
    bsd = Backstopd(backstopd_bin, os.path.join(e2e_work, "backstopd"), "unix:" + e2e_redis.sock,
                    policy={"ndr_default": "allow"},
                    ratelimit={"exempt": ["127.0.0.0/8"]})
    bsd.start()
    with open(SNIPPET) as f:
        snippet = "".join(ln for ln in f if ln.strip() and not ln.lstrip().startswith("#"))
    check("inet:127.0.0.1:10040" in snippet, "main.cf.snippet: no inet:127.0.0.1:10040")
    snippet = snippet.replace("inet:127.0.0.1:10040", "inet:127.0.0.1:%d" % bsd.port)
    mta = postfix("dir", MAIN_CF.format(relay=" ".join(RELAY_DOMAINS), snippet=snippet))
    mta.start()
    env = type("Env", (), {})()
    env.mta, env.bsd, env.db, env.work, env.ctl, env.report = (
        mta, bsd, e2e_db, e2e_work, backstopctl_bin, e2e_report)
    yield env
    bsd.stop()
    log = bsd.log()
    check(not any(m in log for m in ("Sanitizer", "runtime error:", "panic:")),
          "backstopd logged a sanitizer report or panic:\n" + log[-3000:])


def test_every_form_of_a_protected_domain(env):
    rows = []
    c = Client(env.mta)
    try:
        for label, dom, utf8, must in FORMS:
            c.mail("sender@remote.test", utf8)
            known = "jürgen" if dom.lower().startswith("b") and utf8 else "alice"
            if label == "source route":
                addrs = ["@elsewhere.test:nobody@" + dom, "@elsewhere.test:%s@%s" % (known, dom)]
            else:
                addrs = ["nobody@" + dom, "%s@%s" % (known, dom)]
            utext, ktext = c.rcpt(addrs[0])[1], c.rcpt(addrs[1])[1]
            rows.append((label, addrs[0], utext, addrs[1], ktext))
            c.rset()
    finally:
        c.close()
    env.report.append("e2e directory: RCPT replies per form of a protected domain")
    env.report.append("  %-30s %-46s %s" % ("form", "unknown user", "known user"))
    for label, ua, utext, ka, ktext in rows:
        env.report.append("  %-30s %-46s %s" % (label, utext[:46], ktext[:60]))
    for (label, dom, utf8, must), (_, ua, utext, ka, ktext) in zip(FORMS, rows):
        taken = ktext.startswith("250")
        check(not utext.startswith("2"), "%s: unknown <%s> accepted: %s" % (label, ua, utext))
        if must:
            check(taken, "%s: known <%s> not accepted: %s" % (label, ka, ktext))
        if taken:
            check(utext.startswith("550 5.1.1"),
                  "%s: Postfix takes the form (known user: %s) but unknown <%s> got %s"
                  % (label, ktext, ua, utext))
    # a sanity check of the client side: the U-label was sent as UTF-8, not as an A-label
    check(env.mta.log.find("bücher.example"), "maillog never names bücher.example")


def test_empty_directory_defers(env, tmp_path):
    rows = []
    c = Client(env.mta)
    try:
        # never synced: rcpt:empty.test does not exist
        c.mail("sender@remote.test")
        for rcpt in ("anyone@empty.test", "ANYONE@EMPTY.TEST"):
            rows.append(("missing set", rcpt, c.rcpt(rcpt)[1]))
        c.rset()
        # emptied by sync --force: the key is gone again
        env.db.sadd("backstop:rcpt:swap.test", "x")
        users = tmp_path / "none.txt"
        users.write_text("# nobody\n")
        ini = tmp_path / "backstop.ini"
        ini.write_text("[redis]\nserver = unix:%s\n[source none]\ntype = file\ndomain = swap.test\n"
                       "path = %s\n" % (env.db.connection_pool.connection_kwargs["path"], users))
        p = subprocess.run([env.ctl, "-c", str(ini), "sync", "--force"], capture_output=True,
                           text=True, timeout=120)
        check(p.returncode == 0, "sync --force: %d %s %s" % (p.returncode, p.stdout, p.stderr))
        check(not env.db.exists("backstop:rcpt:swap.test"), "rcpt:swap.test still there")
        c.mail("sender@remote.test")
        rows.append(("emptied by sync", "x@swap.test", c.rcpt("x@swap.test")[1]))
        c.rset()
    finally:
        c.close()
    env.report.append("e2e directory: a protected domain without users")
    for what, rcpt, text in rows:
        env.report.append("  %-16s %-20s %s" % (what, rcpt, text[:90]))
        check(text.startswith("4"), "%s: <%s> got %s, not a 4xx" % (what, rcpt, text))


def test_mail_during_sync_sees_old_or_new_set(env, tmp_path):
    old = ["old%05d" % i for i in range(SWAP_USERS)]
    new = ["new%05d" % i for i in range(SWAP_USERS)]
    users = tmp_path / "users.txt"
    users.write_text("".join("%s@swap.test\n" % u for u in old))
    ini = tmp_path / "backstop.ini"
    ini.write_text("[redis]\nserver = unix:%s\n[source hr]\ntype = file\ndomain = swap.test\n"
                   "path = %s\n" % (env.db.connection_pool.connection_kwargs["path"], users))

    def sync(*args):
        t = time.monotonic()
        p = subprocess.run([env.ctl, "-c", str(ini), "sync"] + list(args), capture_output=True,
                           text=True, timeout=120)
        check(p.returncode == 0, "sync: %d %s %s" % (p.returncode, p.stdout, p.stderr))
        return time.monotonic() - t
    sync("--force")
    check(env.db.scard("backstop:rcpt:swap.test") == SWAP_USERS, "old set not written")
    users.write_text("".join("%s@swap.test\n" % u for u in new))

    pairs = [[] for _ in range(LOOPS)]  # per client: (start, end, old code, new code)
    stop = threading.Event()
    errors = []

    def loop(n):
        rnd = random.Random(n)
        c = Client(env.mta)
        try:
            while not stop.is_set():
                # many pairs a transaction: an RSET costs ~80 ms here, a pair ~2 ms
                c.mail("sender@remote.test")
                for _ in range(PAIRS_PER_MAIL):
                    start = time.monotonic()
                    a = c.rcpt("%s@swap.test" % rnd.choice(old))[0]
                    b = c.rcpt("%s@swap.test" % rnd.choice(new))[0]
                    pairs[n].append((start, time.monotonic(), a, b))
                    if stop.is_set():
                        break
                c.rset()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            c.close()
    threads = [threading.Thread(target=loop, args=(n,)) for n in range(LOOPS)]
    for th in threads:
        th.start()
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        secs = sync("--force")
        t1 = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        for th in threads:
            th.join(60)
    check(not errors, "the SMTP loop failed: %s" % errors)
    check(env.db.smembers("backstop:rcpt:swap.test") == set(new), "new set not written exactly")
    kind = {(250, 550): "o", (550, 250): "n", (250, 250): "s"}  # old set, new set, swap between
    orders = ["".join(kind.get((x, y), "m") for _, _, x, y in mine) for mine in pairs]
    every = [p for mine in pairs for p in mine]
    during = sum(1 for start, end, _, _ in every if start <= t1 and end >= t0)  # overlapping
    counts = {k: sum(o.count(k) for o in orders) for k in "osnm"}
    env.report.append(
        "e2e directory: sync of %d users replaced by %d others took %.2f s; %d clients sent %d "
        "RCPT pairs (%d overlapping the sync run): old set %d, swap between the two RCPTs %d, new set %d, "
        "mixed %d; a pair took %.0f ms (median)"
        % (SWAP_USERS, SWAP_USERS, secs, LOOPS, len(every), during, counts["o"], counts["s"],
           counts["n"], counts["m"], 1000 * sorted(e - s for s, e, _, _ in every)[len(every) // 2]))
    check(counts["m"] == 0, "answers from neither the old nor the new set: %s"
          % [p for p in every if (p[2], p[3]) not in kind][:10])
    # each client: old ... old [swap] new ... new: the set changes once, and never back
    for o in orders:
        check(o == "o" * o.count("o") + "s" * o.count("s") + "n" * o.count("n") and o.count("s") <= 1,
              "the answers went back and forth: %s" % o)
    check(counts["o"] > 0 and counts["n"] > 0 and during > 0,
          "the loops did not see both sets while sync ran: %s, %d during" % (counts, during))
