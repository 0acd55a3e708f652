#!/usr/bin/env python3
"""
run.py - end-to-end tests: SMTP client -> real Postfix -> backstopd -> real Redis

    python3 tests/e2e/run.py --backstopd BUILD/backstopd [--keep] [-v] [--only NAME]...

What it starts (everything on loopback or private unix sockets, all under one
temporary directory, all stopped by PID or "postfix -c DIR stop" whatever
happens, and a watchdog that stops everything before ctest's TIMEOUT):

    redis-server   one, on WORK/redis/redis.sock (no TCP port)
    MTA A          Postfix, own config dir/queue/data/maillog, smtpd on a free
                   loopback port; the settings of etc/postfix/main.cf.snippet
                   (check_policy_service inet:127.0.0.1:PORT_A)
    backstopd A    listen = inet:127.0.0.1:PORT_A, on_redis_error = defer
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

Packages: postfix, swaks, redis-server and redis-tools are installed when
missing and running as root (postfix preseeded "No configuration", with a
/usr/sbin/policy-rc.d that exits 101 for the duration of the install so that
no system Postfix is started). Not root and something missing, or not root at
all (Postfix needs root to start): a loud SKIPPED message and exit 77 (ctest
SKIP_RETURN_CODE).

Output: one line per scenario ("ok NAME (1.2s)" / "FAIL NAME: reason"), a
table of every SMTP reply seen (scenario, MTA, client, sender, recipient,
expected, seen, milliseconds), then "N passed, N failed". Exit 1 on any
failure. Standard library only.
"""
import argparse
import ctypes
import grp
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

FORBIDDEN_PORTS = {25, 6379, 10040}
PREFIX = "backstop:"
DEADLINE_S = 840          # ctest TIMEOUT is 900 s: stop everything before it
POLICY_TIMEOUT_S = 10     # check_policy_service { ..., timeout=10s }
REDIS_TIMEOUT_MS = 300    # [redis] timeout of both backstopds
SKIP = 77

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

verbose = False


def say(msg):
    print(msg, flush=True)


def debug(msg):
    if verbose:
        print("# " + msg, flush=True)


class Failure(Exception):
    """A scenario's expectation was not met."""


class KnownBug(Failure):
    """A known backstopd defect, reported as XFAIL (a failure with --strict)."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_until(fn, timeout, step=0.05):
    """fn() until it returns something true, or None after timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > end:
            return v or None
        time.sleep(step)


def free_port():
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in FORBIDDEN_PORTS:
            return port


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM if this harness dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------------------
# prerequisites

PACKAGES = [  # (program, Debian package)
    ("/usr/sbin/postfix", "postfix"),
    ("swaks", "swaks"),
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
]


def missing_packages():
    return [pkg for prog, pkg in PACKAGES
            if not (os.access(prog, os.X_OK) if prog.startswith("/") else shutil.which(prog))]


def skip(reason):
    bar = "!" * 78
    say("%s\n!! e2e_postfix SKIPPED: %s\n%s" % (bar, reason, bar))
    say("0 passed, 0 failed, 1 skipped")
    sys.exit(SKIP)


def apt_install(pkgs):
    """Install Debian packages without letting them start a system daemon."""
    say("e2e: installing %s" % " ".join(pkgs))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["debconf-set-selections"], check=True, text=True, env=env,
                   input="postfix postfix/main_mailer_type select No configuration\n")
    prc = "/usr/sbin/policy-rc.d"
    made_prc = not os.path.exists(prc)
    if made_prc:
        with open(prc, "w") as f:
            f.write("#!/bin/sh\n# written by backstop tests/e2e/run.py during apt-get install\nexit 101\n")
        os.chmod(prc, 0o755)
    try:
        cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q",
               "--no-install-recommends"] + pkgs
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-q"],
                           env=env, stdout=subprocess.DEVNULL, check=True)
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    finally:
        if made_prc:
            os.unlink(prc)


def prerequisites():
    missing = missing_packages()
    if os.geteuid() != 0:
        skip("not root (Postfix must be started as root)%s" %
             ("; missing packages: " + " ".join(missing) if missing else ""))
    if missing:
        apt_install(missing)
        still = missing_packages()
        if still:
            raise SystemExit("e2e: could not install: %s" % " ".join(still))


# ---------------------------------------------------------------------------
# logs

class Log:
    """A growing log file: mark a position, then wait for a line after it."""

    def __init__(self, path):
        self.path = path

    def size(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def text(self, since=0):
        try:
            with open(self.path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def find(self, regex, since=0):
        return re.search(regex, self.text(since), re.M)

    def wait(self, regex, since=0, timeout=5.0):
        m = wait_until(lambda: self.find(regex, since), timeout)
        return m.group(0) if m else None

    def tail(self, n=30):
        return "\n".join(self.text().splitlines()[-n:])


# ---------------------------------------------------------------------------
# processes we start

class Redis:
    def __init__(self, work):
        self.dir = os.path.join(work, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.log = Log(os.path.join(self.dir, "redis.log"))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700",
             "--dir", self.dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--logfile", self.log.path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent)
        if not wait_until(lambda: self.ping(), 10):
            raise SystemExit("redis-server did not start:\n" + self.log.tail())

    def ping(self):
        try:
            return self.cli("PING") == "PONG"
        except Exception:
            return False

    def cli(self, *args, stdin=None):
        r = subprocess.run(["redis-cli", "-s", self.sock] + list(args), input=stdin,
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise Failure("redis-cli %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout.strip()

    def load(self, text):
        out = self.cli(stdin=text)
        check("ERR" not in out, "loading data: " + out)

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self):
        """Crash it (SIGKILL); the socket file stays, as after a real crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


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
        lines = ["# written by tests/e2e/run.py for backstopd %s" % self.name]
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
                                     stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_die_with_parent)
        if not self.log.wait(r"backstopd \S+ started", mark, 15):
            raise SystemExit("backstopd %s did not start:\n%s" % (self.name, self.log.tail()))

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


MASTER_CF = """\
# written by tests/e2e/run.py: a minimal master.cf, nothing chrooted
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
proxywrite unix  - - n -     1 proxymap
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
# written by tests/e2e/run.py: a throw-away Postfix that delivers nothing
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-{name}
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
myhostname = mta-{name}.e2e.test
mydomain = e2e.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4, ipv6
mynetworks = 192.0.2.0/24
relay_domains = {relay_domains}
default_transport = discard
local_transport = discard
virtual_transport = discard
relay_transport = discard
alias_maps =
alias_database =
local_recipient_maps =
recipient_delimiter = +
smtpd_reject_unlisted_recipient = no
smtpd_peername_lookup = no
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
smtpd_error_sleep_time = 0
# from etc/postfix/{snippet}:
{snippet_text}"""

HERE = os.path.dirname(os.path.abspath(__file__))
SNIPPETS = os.path.join(HERE, "..", "..", "etc", "postfix")


def snippet_settings(name, replace):
    """The settings of etc/postfix/NAME (comments dropped), with the
    (old, new) substitutions applied; each old text must be there."""
    with open(os.path.join(SNIPPETS, name)) as f:
        text = "".join(l for l in f if l.strip() and not l.lstrip().startswith("#"))
    for old, new in replace:
        check(old in text, "etc/postfix/%s: no '%s' in its settings" % (name, old))
        text = text.replace(old, new)
    return text


class Postfix:
    def __init__(self, name, work, snippet, replace=()):
        """snippet: the etc/postfix file whose settings wire in backstopd."""
        self.name = name
        self.snippet = snippet
        self.replace = replace
        self.dir = os.path.join(work, "mta-" + name)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.port = free_port()
        self.log = Log(os.path.join(self.dir, "maillog"))
        self.started = False

    def setup(self):
        data = os.path.join(self.dir, "data")
        for d in (self.etc, self.queue, data):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.dir, 0o755)
        shutil.chown(data, "postfix")
        os.chmod(data, 0o700)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=self.dir, name=self.name, relay_domains=RELAY_DOMAINS,
                                   snippet=self.snippet,
                                   snippet_text=snippet_settings(self.snippet, self.replace)))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        # check creates the queue's subdirectories (private/ among them)
        r = self.postfix("check")
        check(r.returncode == 0 and "warning" not in r.stdout + r.stderr,
              "postfix -c %s check: %s" % (self.etc, r.stdout + r.stderr))
        r = subprocess.run(["postconf", "-c", self.etc, "-h", "smtpd_recipient_restrictions"],
                           capture_output=True, text=True)
        self.policy = re.sub(r"\s+", " ", r.stdout.strip())
        check("check_policy_service" in self.policy and not r.stderr,
              "postconf: smtpd_recipient_restrictions = %s %s" % (self.policy, r.stderr))

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
        if not wait_until(listening, 20, 0.2):
            raise SystemExit("MTA %s does not answer on port %d:\n%s" % (self.name, self.port,
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
        except Exception:
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
    debug("swaks: " + " ".join(cmd) + "\n" + out)

    def reply_after(regex):
        m = re.search(regex + r".*\n(?:<-|<\*\*) +(\d{3})[ -](.*)", out)
        return Reply(int(m.group(1)), m.group(2), secs) if m else None
    rcpt_reply = reply_after(r"-> RCPT TO:")
    check(rcpt_reply is not None, "swaks: no RCPT reply in:\n" + out)
    return rcpt_reply, reply_after(r"-> \.")


# ---------------------------------------------------------------------------
# the cluster, results

class Env:
    pass


E = Env()
ROWS = []         # (scenario, mta, client, sender, rcpt, expected, seen, ms, ok)
MEASURED = []     # "what: value" lines for the summary
current = [""]    # the running scenario's name
_next_ip = [100]


def new_ip():
    """A remote client address nobody used before (192.0.2.100 ..)."""
    ip = "192.0.2.%d" % _next_ip[0]
    _next_ip[0] += 1
    check(_next_ip[0] < 250, "out of test addresses")
    return ip


def matches(reply, expected):
    """expected: "250", "550 5.1.1", or "450 4.7.1 ...text..." (a prefix of the reply)."""
    return reply.full().startswith(expected)


def record(mta, ip, sender, rcpt, expected, reply, text=None):
    """Add a row to the table; True when the reply starts with `expected`
    (and holds `text`, if given)."""
    ok = matches(reply, expected) and (text is None or text in reply.text)
    ROWS.append((current[0], mta.name, ip, "<%s>" % sender, rcpt, expected, reply.full(),
                 reply.secs * 1000, ok))
    return ok


def rcpt_check(mta, ip, sender, rcpt, expected, session=None, text=None):
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
    debug("MTA %s %s from=<%s> to=<%s>: %r" % (mta.name, ip, sender, rcpt, r))
    ok = record(mta, ip, sender, rcpt, expected, r, text)
    check(ok,
          "MTA %s, client %s, <%s> -> <%s>: want %s%s, got %r"
          % (mta.name, ip, sender, rcpt, expected, " ... " + text if text else "", r))
    return r


def expect_log(log, regex, since, what, timeout=5.0):
    line = log.wait(regex, since, timeout)
    check(line, "%s: no line matching /%s/ in %s; it has:\n%s" %
          (what, regex, log.path, log.text(since)[-3000:]))
    return line


def expect_no_log(log, regex, since, what, settle=0.5):
    time.sleep(settle)
    m = log.find(regex, since)
    check(not m, "%s: unexpected line in %s: %s" % (what, log.path, m and m.group(0)))


def bs_for(mta):
    return E.bsd_a if mta is E.mta_a else E.bsd_b


def marks():
    return {x: x.log.size() for x in (E.mta_a, E.mta_b, E.bsd_a, E.bsd_b)}


def esc(s):
    return re.escape(s)


# ---------------------------------------------------------------------------
# scenarios (run in this order; each registers itself)

SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


def backstop_config(name, listen, on_redis_error, mode="enforce", extra_server=()):
    return dict(
        server=[("listen", listen)] + list(extra_server),
        redis=[("server", "unix:" + E.redis.sock), ("timeout", "%dms" % REDIS_TIMEOUT_MS),
               ("connect_timeout", "1s")],
        policy=[("mode", mode), ("on_redis_error", on_redis_error), ("ndr_default", "allow")],
        ratelimit=[("invalid_recipients", "3/1m"), ("block_time", "10m"),
                   ("exempt", "192.0.2.250/32")],
        log=[("level", "debug")])


def configure_backstops(mode="enforce"):
    E.bsd_a.configure(**backstop_config("a", "inet:127.0.0.1:%d" % E.bs_port, "defer", mode))
    E.bsd_b.configure(**backstop_config(
        "b", "unix:" + E.bs_sock, "dunno", mode,
        extra_server=[("socket_mode", "0660"), ("socket_group", "postfix")]))


@scenario
def recipients_known_and_unknown():
    """Protected domain: known user 250, unknown 550 5.1.1, on both MTAs (inet and unix policy)."""
    for mta in (E.mta_a, E.mta_b):
        m = marks()
        ip = new_ip()
        s = Session(mta, ip)
        s.mail("sender@remote.test")
        rcpt_check(mta, ip, "sender@remote.test", "alice@example.com", "250", s)
        r = rcpt_check(mta, ip, "sender@remote.test", "nobody@example.com",
                       "550 5.1.1 <nobody@example.com>: Recipient address rejected:", s,
                       text=USER_UNKNOWN)
        s.close()
        bs = bs_for(mta)
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


@scenario
def recipient_extension_case_catchall():
    """user+tag of a known user 250, unknown+tag 550, case-insensitive, catch-all 250."""
    ip = new_ip()
    s = Session(E.mta_a, ip)
    s.mail("sender@remote.test")
    rcpt_check(E.mta_a, ip, "sender@remote.test", "alice+tag@example.com", "250", s)
    rcpt_check(E.mta_a, ip, "sender@remote.test", "Alice@EXAMPLE.com", "250", s)
    rcpt_check(E.mta_a, ip, "sender@remote.test", "nobody+alice@example.com", "550 5.1.1", s)
    rcpt_check(E.mta_a, ip, "sender@remote.test", "anyone@catchall.test", "250", s)
    s.close()
    ip = new_ip()
    rcpt_check(E.mta_b, ip, "sender@remote.test", "bob+lists@example.com", "250")
    rcpt_check(E.mta_b, ip, "sender@remote.test", "whoever@catchall.test", "250")


@scenario
def unprotected_domain_untouched():
    """Not in backstop:domains: backstop answers DUNNO (no reject line), Postfix decides."""
    m = marks()
    ip = new_ip()
    # a relay domain of this MTA that backstop does not protect
    rcpt_check(E.mta_a, ip, "sender@remote.test", "anyone@open.test", "250")
    expect_log(E.bsd_a.log, r"dunno: .*to=<anyone@open\.test> reason=unprotected", m[E.bsd_a],
               "backstopd a")
    # a client outside mynetworks relaying to a remote domain: Postfix's own
    # reject_unauth_destination, backstop never asked
    out = "198.51.100.7"
    rcpt_check(E.mta_b, out, "sender@remote.test", "someone@elsewhere.test",
               "554 5.7.1 <someone@elsewhere.test>: Relay access denied")
    for bs in (E.bsd_a, E.bsd_b):
        expect_no_log(bs.log, r"(reject|defer|warning).*(open\.test|elsewhere\.test)", m[bs],
                      "backstopd %s" % bs.name, settle=0.2)
    expect_no_log(E.bsd_b.log, r"elsewhere\.test", m[E.bsd_b], "backstopd b", settle=0)


@scenario
def full_transactions_with_swaks():
    """Whole transactions through swaks: known user queued (and discarded), unknown refused."""
    m = marks()
    ip = new_ip()
    r, d = swaks(E.mta_a, ip, "sender@remote.test", "alice@example.com")
    check(record(E.mta_a, ip, "sender@remote.test", "alice@example.com", "250", r),
          "swaks RCPT alice: %r" % r)
    check(d is not None and record(E.mta_a, ip, "sender@remote.test", "(DATA)", "250 2.0.0", d),
          "swaks DATA: %r" % d)
    expect_log(E.mta_a.log, r"to=<alice@example\.com>, relay=none, .*status=sent", m[E.mta_a],
               "maillog delivery to the discard transport", timeout=10)
    r, d = swaks(E.mta_b, ip, "sender@remote.test", "nobody@example.com")
    check(record(E.mta_b, ip, "sender@remote.test", "nobody@example.com", "550 5.1.1", r),
          "swaks RCPT nobody: %r" % r)
    ip = new_ip()
    r, d = swaks(E.mta_b, ip, "", "bounce@deny.test", quit_after="RCPT")
    check(record(E.mta_b, ip, "", "bounce@deny.test", "550 5.7.1", r),
          "swaks null sender: %r" % r)


@scenario
def ndr_policy_lookup_order():
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
        mta = (E.mta_a, E.mta_b)[i % 2]
        bs = bs_for(mta)
        m = marks()
        ip = new_ip()
        rcpt_check(mta, ip, "", rcpt, expected, text=None if expected == "250" else NDR_DENY)
        verb = "permit" if expected == "250" else "reject"
        reason = "ndr_allow" if expected == "250" else "ndr_deny"
        expect_log(bs.log, r"NOQUEUE: %s: RCPT from \S+\[%s\]: .*from=<> to=<%s> .*reason=%s "
                   r"ndr_entry=%s conn=" % (verb, esc(ip), esc(rcpt), reason, entry), m[bs],
                   "backstopd %s for %s" % (bs.name, rcpt))


@scenario
def ndr_star_then_ndr_default():
    """`*` applies before [policy] ndr_default (allow here); an unusable value -> ndr_default."""
    ip = new_ip()
    rcpt_check(E.mta_a, ip, "", "bounce@nowhere.test", "550 5.7.1")      # * = deny
    E.redis.cli("HDEL", PREFIX + "ndr", "*")
    try:
        m = marks()
        rcpt_check(E.mta_a, ip, "", "bounce@nowhere.test", "250")        # ndr_default = allow
        expect_log(E.bsd_a.log, r"permit: .*to=<bounce@nowhere\.test> .*reason=ndr_allow "
                   r"ndr_entry=ndr_default", m[E.bsd_a], "backstopd a")
        rcpt_check(E.mta_b, ip, "", "bounce@nowhere.test", "250")
    finally:
        E.redis.cli("HSET", PREFIX + "ndr", "*", "deny")
    m = marks()
    rcpt_check(E.mta_b, ip, "", "bounce@broken.test", "250")  # "limit banana" -> ndr_default
    expect_log(E.bsd_b.log, r"warning: ndr entry \"broken\.test\" has an unusable value "
               r"\"limit(\\x20| )banana\"", m[E.bsd_b], "backstopd b")


@scenario
def ndr_to_protected_domain_and_exempt_client():
    """Null sender to a protected domain is a recipient check; exempt clients get NDR policy."""
    ip = new_ip()
    rcpt_check(E.mta_a, ip, "", "alice@example.com", "250")
    rcpt_check(E.mta_b, ip, "", "nobody@example.com", "550 5.1.1")
    rcpt_check(E.mta_a, "192.0.2.250", "", "bounce@deny.test", "550 5.7.1")
    rcpt_check(E.mta_b, "192.0.2.251", "", "bounce@partner.test", "250")


@scenario
def ndr_limit_cluster_wide():
    """limit 3/1h on lists.test: exactly 3 bounces pass, counted across both MTAs."""
    got = []
    for i in range(7):
        mta = (E.mta_a, E.mta_b)[i % 2]
        ip = new_ip()
        s = Session(mta, ip)
        s.mail("")
        r = s.rcpt("bounce%d@lists.test" % i)
        s.close()
        got.append(r.code)
        record(mta, ip, "", "bounce%d@lists.test" % i, "250" if i < 3 else "550 5.7.1", r)
        if i >= 3:
            check(NDR_LIMIT in r.text, "over the limit, want '%s', got %r" % (NDR_LIMIT, r))
    check(got == [250] * 3 + [550] * 4, "want 3 x 250 then 550s, got %s" % got)
    count = E.redis.cli("GET", PREFIX + "ndrcount:lists.test")
    ttl = int(E.redis.cli("TTL", PREFIX + "ndrcount:lists.test"))
    check(count == "7" and 3500 <= ttl <= 3600, "ndrcount:lists.test = %s, TTL %d" % (count, ttl))
    expect_log(E.bsd_a.log, r"permit: .*to=<bounce0@lists\.test> .*reason=ndr_under_limit", 0,
               "backstopd a")
    expect_log(E.bsd_b.log, r"reject: .*to=<bounce3@lists\.test> .*reason=ndr_limit", 0,
               "backstopd b")


@scenario
def reply_texts_as_seen_by_clients():
    """The SMTP client sees each refusal's text once (README's texts).

    Postfix puts "<rcpt>: Recipient address rejected: " before the text of
    every "NNN text" a policy service returns, so a policy reply that already
    holds that prefix reaches the client twice over."""
    ip = new_ip()
    blocked = "192.0.2.79"
    E.redis.cli("SET", PREFIX + "block:" + blocked, "manual", "EX", "60")
    try:
        got = [
            (rcpt_check(E.mta_a, ip, "sender@remote.test", "nobody@example.com", "550 5.1.1"),
             "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"),
            (rcpt_check(E.mta_b, ip, "", "bounce@deny.test", "550 5.7.1"),
             "550 5.7.1 <bounce@deny.test>: Recipient address rejected: " + NDR_DENY),
            (rcpt_check(E.mta_a, ip, "", "bounce9@lists.test", "550 5.7.1"),  # over the limit
             "550 5.7.1 <bounce9@lists.test>: Recipient address rejected: " + NDR_LIMIT),
            (rcpt_check(E.mta_b, blocked, "sender@remote.test", "alice@example.com", BLOCKED),
             None),
        ]
    finally:
        E.redis.cli("DEL", PREFIX + "block:" + blocked)
    bad = []
    for r, want in got:
        if (want and r.full() != want) or r.full().count("rejected:") > 1:
            bad.append(r.full())
    if bad:
        raise Failure("policy reply texts already carry Postfix's own prefix, so clients see "
                       "it twice: %s" % " | ".join(bad))


@scenario
def overlong_local_part_in_protected_domain():
    """A 129-byte local part in a protected domain must not be accepted either.

    README (Limits) documents that such a recipient is "not validated"
    (DUNNO, reason bad_recipient): Postfix then accepts mail for a user that
    cannot exist, and its bounce is the backscatter backstop exists to stop."""
    ip = new_ip()
    rcpt_check(E.mta_a, ip, "x@remote.test", "a" * 128 + "@example.com", "550 5.1.1")
    m = marks()
    s = Session(E.mta_b, ip)
    s.mail("x@remote.test")
    rcpt = "a" * 129 + "@example.com"
    r = s.rcpt(rcpt)
    s.close()
    record(E.mta_b, ip, "x@remote.test", "a{129}@example.com", "550 5.1.1", r)
    if not matches(r, "550 5.1.1"):
        why = E.bsd_b.log.find(r"reason=\w+", m[E.bsd_b])
        raise Failure("unknown user with a 129-byte local part at a protected domain: %r, "
                       "backstopd %s" % (r, why and why.group(0)))


@scenario
def rate_tracking_cluster():
    """3/1m invalid recipients via MTA A blocks the client on MTA B too; DEL unblocks."""
    ip = "192.0.2.66"
    m = marks()
    s = Session(E.mta_a, ip)
    s.mail("probe@remote.test")
    for i in range(4):  # the 4th is "more than 3": the block is set after its answer
        rcpt_check(E.mta_a, ip, "probe@remote.test", "nobody%d@example.com" % i, "550 5.1.1", s)
    key = PREFIX + "block:" + ip
    check(wait_until(lambda: E.redis.cli("EXISTS", key) == "1", 5), "no %s after 4 invalid" % key)
    expect_log(E.bsd_a.log, r"client %s blocked for 600s: 4 invalid recipients within 60s "
               r"\(limit 3\)" % esc(ip), m[E.bsd_a], "backstopd a")
    rcpt_check(E.mta_a, ip, "probe@remote.test", "alice@example.com", BLOCKED, s,
               text=BLOCKED_TEXT)
    s.close()
    # the other MTA, with its own backstopd, refuses it too, whatever the recipient
    r = rcpt_check(E.mta_b, ip, "probe@remote.test", "alice@example.com", BLOCKED,
                   text=BLOCKED_TEXT)
    rcpt_check(E.mta_b, ip, "", "bounce@partner.test", BLOCKED, text=BLOCKED_TEXT)
    expect_log(E.bsd_b.log, r"NOQUEUE: defer: RCPT from \S+\[%s\]: %s .*%s; .*reason=blocked"
               % (esc(ip), BLOCKED, BLOCKED_TEXT), m[E.bsd_b], "backstopd b")
    expect_log(E.mta_b.log, r"NOQUEUE: reject: RCPT from \S+\[%s\]: %s;" % (esc(ip), esc(r.full())),
               m[E.mta_b], "maillog b")
    ttl = int(E.redis.cli("TTL", key))
    check(590 <= ttl <= 600, "TTL of %s = %d, want ~600 (block_time = 10m)" % (key, ttl))
    # an unrelated client is not affected
    rcpt_check(E.mta_b, new_ip(), "x@remote.test", "alice@example.com", "250")
    # the admin lets it back in
    check(E.redis.cli("DEL", key) == "1", "DEL " + key)
    rcpt_check(E.mta_b, ip, "probe@remote.test", "alice@example.com", "250")
    rcpt_check(E.mta_a, ip, "probe@remote.test", "bob@example.com", "250")


@scenario
def ipv6_clients_per_network():
    """IPv6 clients are counted and blocked per /64 ([ratelimit] ipv6_prefix), on both MTAs."""
    key = PREFIX + "block:2001:db8:1:2::/64"
    m = marks()
    for mta, ip in ((E.mta_a, "2001:db8:1:2::5"), (E.mta_b, "2001:db8:1:2::6")):
        s = Session(mta, ip)
        s.mail("probe@remote.test")
        for i in range(2):  # 2 + 2 = 4 invalid from one /64: more than 3
            rcpt_check(mta, ip, "probe@remote.test", "v6-%d@example.com" % i, "550 5.1.1", s)
        s.close()
    check(wait_until(lambda: E.redis.cli("EXISTS", key) == "1", 5),
          "no %s after 4 invalid recipients from the /64" % key)
    expect_log(E.bsd_b.log, r"client 2001:db8:1:2::/64 blocked for 600s: 4 invalid recipients",
               m[E.bsd_b], "backstopd b")
    rcpt_check(E.mta_a, "2001:db8:1:2::99", "x@remote.test", "alice@example.com", BLOCKED,
               text=BLOCKED_TEXT)
    expect_log(E.bsd_a.log, r"defer: RCPT from \S+\[2001:db8:1:2::99\]: .*reason=blocked",
               m[E.bsd_a], "backstopd a")
    rcpt_check(E.mta_b, "2001:db8:1:3::1", "x@remote.test", "alice@example.com", "250")
    E.redis.cli("DEL", key)
    rcpt_check(E.mta_b, "2001:db8:1:2::99", "x@remote.test", "alice@example.com", "250")


@scenario
def exempt_and_manual_block():
    """Exempt clients (config CIDR, backstop:exempt) are never blocked; a manual block works."""
    for ip in ("192.0.2.250", "192.0.2.251"):
        s = Session(E.mta_a, ip)
        s.mail("sender@remote.test")
        for i in range(5):
            rcpt_check(E.mta_a, ip, "sender@remote.test", "ghost%d@example.com" % i, "550 5.1.1", s)
        s.close()
        time.sleep(0.3)  # the counting script runs after the answer
        check(E.redis.cli("EXISTS", PREFIX + "block:" + ip) == "0", "exempt %s was blocked" % ip)
        rcpt_check(E.mta_b, ip, "sender@remote.test", "alice@example.com", "250")
    ip = "192.0.2.77"
    E.redis.cli("SET", PREFIX + "block:" + ip, "manual", "EX", "120")
    rcpt_check(E.mta_a, ip, "sender@remote.test", "alice@example.com", BLOCKED, text=BLOCKED_TEXT)
    rcpt_check(E.mta_b, ip, "sender@remote.test", "bob@example.com", BLOCKED, text=BLOCKED_TEXT)
    E.redis.cli("DEL", PREFIX + "block:" + ip)
    rcpt_check(E.mta_b, ip, "sender@remote.test", "bob@example.com", "250")


@scenario
def report_mode():
    """mode = report (SIGHUP): everything 250, Postfix logs WARN would reject/defer."""
    configure_backstops(mode="report")
    E.bsd_a.reload()
    E.bsd_b.reload()
    blocked = "192.0.2.78"
    E.redis.cli("SET", PREFIX + "block:" + blocked, "manual", "EX", "120")
    try:
        for mta in (E.mta_a, E.mta_b):
            bs = bs_for(mta)
            m = marks()
            ip = new_ip()
            s = Session(mta, ip)
            s.mail("sender@remote.test")
            rcpt_check(mta, ip, "sender@remote.test", "nobody@example.com", "250", s)
            rcpt_check(mta, ip, "sender@remote.test", "alice@example.com", "250", s)
            s.close()
            rcpt_check(mta, ip, "", "bounce@deny.test", "250")
            rcpt_check(mta, blocked, "sender@remote.test", "alice@example.com", "250")
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
        E.redis.cli("DEL", PREFIX + "block:" + blocked)
        configure_backstops(mode="enforce")
        E.bsd_a.reload()
        E.bsd_b.reload()
    rcpt_check(E.mta_a, new_ip(), "sender@remote.test", "nobody@example.com", "550 5.1.1")


def redis_outage_answers(reason, fast):
    """RCPTs while Redis is unusable: A (defer) 450 4.7.1, B (dunno) 250, within the deadline."""
    m = marks()
    ip = new_ip()
    limit_s = (REDIS_TIMEOUT_MS / 1000.0 + 1.0) if not fast else 1.0
    times = []
    for mta, rcpt, expected in ((E.mta_a, "alice@example.com", "450 4.7.1"),
                                (E.mta_a, "nobody@example.com", "450 4.7.1"),
                                (E.mta_b, "alice@example.com", "250"),
                                (E.mta_b, "nobody@example.com", "250")):
        r = rcpt_check(mta, ip, "sender@remote.test", rcpt, expected)
        times.append("%s %.0f ms" % (mta.name, r.secs * 1000))
        if mta is E.mta_a:
            check(UNAVAILABLE in r.text, "want '%s' in %r" % (UNAVAILABLE, r))
        check(r.secs < limit_s, "RCPT took %.0f ms (limit %.0f ms; policy timeout %ds)"
              % (r.secs * 1000, limit_s * 1000, POLICY_TIMEOUT_S))
        if not fast and len(times) == 1:
            # the first one waited for the deadline (later ones may find the
            # connection already dropped by the stall detector)
            check(r.secs >= REDIS_TIMEOUT_MS / 1000.0 * 0.9,
                  "answered in %.0f ms, before the %d ms deadline?" % (r.secs * 1000,
                                                                       REDIS_TIMEOUT_MS))
    MEASURED.append("%s: RCPT round trips %s (Postfix policy timeout %ds)"
                    % (current[0], ", ".join(times), POLICY_TIMEOUT_S))
    expect_log(E.bsd_a.log, r"NOQUEUE: fallback: RCPT from \S+\[%s\]: DEFER_IF_PERMIT %s; "
               r".*to=<alice@example\.com> .*reason=(%s)" % (esc(ip), UNAVAILABLE, reason),
               m[E.bsd_a], "backstopd a")
    expect_log(E.bsd_b.log, r"NOQUEUE: fallback: RCPT from \S+\[%s\]: DUNNO; .*"
               r"to=<nobody@example\.com> .*reason=(%s)" % (esc(ip), reason), m[E.bsd_b],
               "backstopd b")
    expect_log(E.mta_a.log, r"NOQUEUE: reject: RCPT from \S+\[%s\]: 450 4\.7\.1 <alice@example\.com>"
               r": Recipient address rejected: %s;" % (esc(ip), UNAVAILABLE), m[E.mta_a],
               "maillog a")


def recovered():
    """Mail flows again: valid 250 and unknown 550 on both MTAs; returns seconds waited."""
    t = time.monotonic()

    def ok():
        s = Session(E.mta_a, "192.0.2.250")  # exempt: the probes are not counted
        s.mail("probe@remote.test")
        r = s.rcpt("alice@example.com")
        s.close()
        return r.code == 250
    check(wait_until(ok, 15, 0.25), "MTA A still not accepting alice 15s after Redis is back")
    waited = time.monotonic() - t
    ip = new_ip()
    for mta in (E.mta_a, E.mta_b):
        rcpt_check(mta, ip, "sender@remote.test", "alice@example.com", "250")
        rcpt_check(mta, ip, "sender@remote.test", "nobody@example.com", "550 5.1.1")
    return waited


@scenario
def redis_frozen():
    """Redis frozen (SIGSTOP): the on_redis_error answer within [redis] timeout; SIGCONT heals."""
    E.redis.signal(signal.SIGSTOP)
    try:
        redis_outage_answers("redis_timeout|redis_down", fast=False)
    finally:
        E.redis.signal(signal.SIGCONT)
    MEASURED.append("redis_frozen: mail flows again %.1fs after SIGCONT" % recovered())


@scenario
def redis_killed_and_restarted():
    """Redis crashes (SIGKILL): fallback answers at once; a restart on the same socket heals."""
    check(E.redis.cli("SAVE") == "OK", "SAVE")
    m = marks()
    E.redis.kill()
    try:
        redis_outage_answers("redis_down", fast=True)
        expect_log(E.bsd_a.log, r"warning: redis: connection lost", m[E.bsd_a], "backstopd a")
        expect_log(E.bsd_b.log, r"warning: redis: connection lost", m[E.bsd_b], "backstopd b")
    finally:
        E.redis.start()  # same socket, same dump.rdb: the data is back
    waited = recovered()
    MEASURED.append("redis_killed_and_restarted: mail flows again %.1fs after redis-server "
                    "restarted on the same socket" % waited)
    check(waited < 6, "took %.1fs to use Redis again (backoff max is 2s)" % waited)
    expect_log(E.bsd_a.log, r"redis: connected to \S+ again", m[E.bsd_a], "backstopd a")


@scenario
def stats_counted_cluster_wide():
    """backstop:stats holds the decisions of both backstopds."""
    time.sleep(1.5)  # flushed every second
    raw = E.redis.cli("HGETALL", PREFIX + "stats").split("\n")
    stats = dict(zip(raw[0::2], (int(v) for v in raw[1::2])))
    debug("stats: %s" % stats)
    for field in ("valid", "unknown_user", "ndr_deny", "ndr_allow", "ndr_limit",
                  "ndr_under_limit", "blocked", "unprotected", "clients_blocked"):
        check(stats.get(field, 0) > 0, "backstop:stats %s = %s" % (field, stats.get(field)))
    # lists.test: 3 under the limit, then 4 refused (+1 in reply_texts_as_seen_by_clients)
    check(stats.get("ndr_under_limit") == 3 and stats.get("ndr_limit", 0) >= 4,
          "ndr_under_limit/ndr_limit = %s/%s, want 3/>=4" % (stats.get("ndr_under_limit"),
                                                            stats.get("ndr_limit")))


@scenario
def no_unexpected_warnings():
    """Neither Postfix nor backstopd logged a warning the scenarios did not provoke."""
    expected_bs = (r"warning: ndr entry \"broken\.test\"|warning: redis: (connection lost|"
                   r"connection to \S+ dropped|cannot connect)")
    for x in (E.mta_a, E.mta_b, E.bsd_a, E.bsd_b):
        bad = [l for l in x.log.text().splitlines()
               if re.search(r"\b(warning|fatal|panic|error):", l)
               and not (x in (E.bsd_a, E.bsd_b) and re.search(expected_bs, l))]
        check(not bad, "%s: %s" % (x.log.path, "\n".join(bad[:5])))


@scenario
def backstopd_down_default_action():
    """backstopd A stopped: Postfix's default_action=DUNNO lets mail through; exit status 0."""
    rc = E.bsd_a.stop()
    check(rc == 0, "backstopd a exited %s on SIGTERM:\n%s" % (rc, E.bsd_a.log.tail()))
    m = marks()
    ip = new_ip()
    r = rcpt_check(E.mta_a, ip, "sender@remote.test", "nobody@example.com", "250")
    check(r.secs < POLICY_TIMEOUT_S, "RCPT took %.1fs" % r.secs)
    MEASURED.append("backstopd_down_default_action: RCPT answered by default_action=DUNNO in "
                    "%.0f ms (smtpd_policy_service_try_limit 2, retry delay 1s)" % (r.secs * 1000))
    expect_log(E.mta_a.log, r"warning: problem talking to server 127\.0\.0\.1:%d" % E.bs_port,
               m[E.mta_a], "maillog a")
    rcpt_check(E.mta_b, ip, "sender@remote.test", "nobody@example.com", "550 5.1.1")


# ---------------------------------------------------------------------------
# main

def setup(work, binary):
    E.work = work
    E.redis = Redis(work)
    E.redis.start()
    E.redis.load(DATA)
    E.bs_port = free_port()
    # A: the inet snippet, on a free port; B: the chroot snippet as it is
    # (unix:backstop/backstopd.sock, relative to B's queue directory)
    E.mta_a = Postfix("a", work, "main.cf.snippet",
                      [("inet:127.0.0.1:10040", "inet:127.0.0.1:%d" % E.bs_port)])
    E.mta_b = Postfix("b", work, "main.cf.chroot-snippet")
    sockdir = os.path.join(E.mta_b.queue, "backstop")
    E.bs_sock = os.path.join(sockdir, "backstopd.sock")
    E.bsd_a = Backstopd("a", binary, work)
    E.bsd_b = Backstopd("b", binary, work)
    for mta in (E.mta_a, E.mta_b):
        mta.setup()
    os.mkdir(sockdir)  # as the chroot snippet says: only group postfix enters
    os.chmod(sockdir, 0o750)
    shutil.chown(sockdir, "root", "postfix")
    configure_backstops()
    E.bsd_a.start()
    E.bsd_b.start()
    st = os.stat(E.bs_sock)
    check(st.st_mode & 0o777 == 0o660 and st.st_gid == grp.getgrnam("postfix").gr_gid,
          "socket %s: mode %o gid %d" % (E.bs_sock, st.st_mode & 0o777, st.st_gid))
    for mta in (E.mta_a, E.mta_b):
        mta.start()
    say("e2e: Postfix %s on 127.0.0.1:%d (policy %s) and 127.0.0.1:%d (policy %s), "
        "Redis %s, work dir %s" % (E.mta_a.name, E.mta_a.port, E.mta_a.policy, E.mta_b.port,
                                    E.mta_b.policy, E.redis.sock, work))


def teardown():
    """Stop all we started, each step on its own (one failing stops no other)."""
    for name in ("mta_a", "mta_b", "bsd_a", "bsd_b", "redis"):
        if hasattr(E, name):
            try:
                getattr(E, name).stop()
            except Exception as e:
                say("e2e: stopping %s: %s: %s" % (name, type(e).__name__, e))


def print_table():
    say("\nSMTP codes per scenario (MTA:code, in order):")
    for name in dict.fromkeys(r[0] for r in ROWS):
        codes = ["%s:%s%s" % (r[1], " ".join(r[6].split()[:2]) if not r[6].startswith("2") else
                                 r[6].split()[0], "" if r[8] else "(FAIL)")
                 for r in ROWS if r[0] == name]
        say("  %-42s %s" % (name, ", ".join(codes)))
    if MEASURED:
        say("\nMeasured:")
        for line in MEASURED:
            say("  " + line)
    say("\nSMTP replies seen (client addresses are set with XCLIENT):")
    hdr = ("scenario", "MTA", "client", "from", "to", "expected", "seen", "ms")
    rows = [(r[0], r[1], r[2], r[3], r[4], r[5][:40], r[6][:60] + ("" if r[8] else "  <-- FAIL"),
             "%.0f" % r[7]) for r in ROWS]
    widths = [max(len(str(x[i])) for x in [hdr] + rows) for i in range(len(hdr) - 2)]
    for row in [hdr] + rows:
        cells = ["%-*s" % (w, c) for w, c in zip(widths, row[:-2])]
        say("  " + "  ".join(cells) + "  %6s  %s" % (row[7], row[6]))


class Watchdog(Exception):
    pass


def on_alarm(signum, frame):
    raise Watchdog("e2e: watchdog: %ds since start, stopping everything" % DEADLINE_S)


def on_term(signum, frame):
    raise SystemExit("e2e: signal %d: stopping everything" % signum)


def main():
    global verbose
    started = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backstopd", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--only", action="append", help="run only these scenarios (setup always)")
    ap.add_argument("-v", action="store_true", help="print details")
    ap.add_argument("--strict", action="store_true", help="count known bugs (XFAIL) as failures")
    args = ap.parse_args()
    verbose = args.v
    binary = os.path.abspath(args.backstopd)
    if not os.access(binary, os.X_OK):
        raise SystemExit("no executable %s" % binary)
    prerequisites()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    # what is left of the deadline after a possible apt-get install, but
    # enough to run at all (the scenarios take well under a minute)
    signal.alarm(int(max(120, DEADLINE_S - (time.monotonic() - started))))
    work = tempfile.mkdtemp(prefix="bs-e2e-", dir="/tmp")
    os.chmod(work, 0o755)  # the postfix user walks into the queue directories
    passed = failed = xfailed = 0
    try:
        setup(work, binary)
        for fn in SCENARIOS:
            if args.only and fn.__name__ not in args.only:
                continue
            current[0] = fn.__name__
            t = time.monotonic()
            try:
                fn()
                passed += 1
                say("ok %s (%.1fs)" % (fn.__name__, time.monotonic() - t))
            except KnownBug as e:
                if args.strict:
                    failed += 1
                    say("FAIL %s (known bug, --strict): %s" % (fn.__name__, e))
                else:
                    xfailed += 1
                    say("XFAIL %s: KNOWN BACKSTOPD BUG, not counted: %s" % (fn.__name__, e))
            except Failure as e:
                failed += 1
                say("FAIL %s: %s" % (fn.__name__, e))
            except (smtplib.SMTPException, OSError, subprocess.SubprocessError, ValueError) as e:
                failed += 1
                say("FAIL %s: %s: %s" % (fn.__name__, type(e).__name__, e))
                if verbose:
                    traceback.print_exc()
    except (Watchdog, SystemExit, Exception) as e:  # setup failed, or the watchdog fired
        failed += 1
        say("FAIL %s: %s" % (current[0] or "setup", e))
        if verbose:
            traceback.print_exc()
    finally:
        signal.alarm(0)
        teardown()
        for bs in [getattr(E, n) for n in ("bsd_a", "bsd_b") if hasattr(E, n)]:
            problem = bs.sanitizer_errors()
            if problem:
                say("FAIL backstopd %s log: %s" % (bs.name, problem))
                failed += 1
            elif bs.rc not in (0, None):
                say("FAIL backstopd %s exited with status %s" % (bs.name, bs.rc))
                failed += 1
        if failed:
            for x in [getattr(E, n) for n in ("redis", "bsd_a", "bsd_b", "mta_a", "mta_b")
                      if hasattr(E, n)]:
                say("--- last lines of %s:\n%s" % (x.log.path, x.log.tail(15)))
        if ROWS:
            print_table()
        if args.keep or failed:
            say("e2e: work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if xfailed:
        say("e2e: %d scenario(s) XFAIL: known backstopd bugs, see the XFAIL lines above" % xfailed)
    say("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
