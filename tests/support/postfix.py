"""
tests/support/postfix.py - a throw-away Postfix instance for the e2e tests

    pf = Postfix("a", work, MAIN_CF_EXTRA)   # own config dir, queue, data dir, maillog
    pf.setup()                               # main.cf + master.cf, "postfix check"
    pf.start()                               # "postfix -c DIR start", waits for the 220 banner
    pf.submit(sender, rcpts, n)              # one message over SMTP: its queue id
    pf.queue_snapshot()                      # postqueue -j of this instance
    pf.stop()                                # "postfix -c DIR stop" (the master's PID if that fails)

Each instance runs smtpd on a free 127.0.0.1 port (never 25), nothing
chrooted, every transport discard, its maillog through postlogd in its own
directory (Log: mark a position, wait for a line after it). The work
directory must be traversable by the postfix user (0755, under /tmp, not
pytest's 0700 tmp_path). Postfix must be started as root: postfix_missing()
says why an instance cannot run here (the tests skip then).
"""
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time

FORBIDDEN_PORTS = {25, 6379, 10040}
PROGRAMS = ("/usr/sbin/postfix", "/usr/sbin/postqueue", "/usr/sbin/postsuper", "/usr/sbin/postconf")

MASTER_CF = """\
# written by tests/support/postfix.py: a minimal master.cf, nothing chrooted
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

# What every instance has; each suite appends its own settings.
MAIN_CF = """\
# written by tests/support/postfix.py: a throw-away Postfix that delivers nothing
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
default_transport = discard
local_transport = discard
virtual_transport = discard
relay_transport = discard
alias_maps =
alias_database =
local_recipient_maps =
smtpd_reject_unlisted_recipient = no
smtpd_peername_lookup = no
"""


def postfix_missing():
    """Why no throw-away Postfix can run here, or None."""
    missing = [p for p in PROGRAMS if not os.access(p, os.X_OK)]
    if os.geteuid() != 0:
        return "not root (Postfix must be started as root)%s" % (
            "; missing: " + " ".join(missing) if missing else "")
    if missing:
        return "missing %s (apt-get install postfix; scripts/deps)" % " ".join(missing)
    return None


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


class Postfix:
    def __init__(self, name, work, settings):
        """settings: main.cf lines added after MAIN_CF (this suite's wiring)."""
        self.name = name
        self.settings = settings
        self.dir = os.path.join(work, "mta-" + name)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.port = free_port()
        self.log = Log(os.path.join(self.dir, "maillog"))
        self.started = False
        self.postqueue = None

    def setup(self):
        data = os.path.join(self.dir, "data")
        for d in (self.etc, self.queue, data):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.dir, 0o755)
        shutil.chown(data, "postfix")
        os.chmod(data, 0o700)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=self.dir, name=self.name) + self.settings)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        # check creates the queue's subdirectories (private/ among them)
        r = self.postfix("check")
        assert r.returncode == 0 and "warning" not in r.stdout + r.stderr, \
            "postfix -c %s check: %s" % (self.etc, r.stdout + r.stderr)
        return self

    def postfix(self, *args):
        return subprocess.run(["postfix", "-c", self.etc] + list(args), capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    def postconf(self, name):
        r = subprocess.run(["postconf", "-c", self.etc, "-h", name], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and not r.stderr, "postconf -h %s: %s" % (name, r.stderr)
        return r.stdout.strip()

    def start(self):
        r = self.postfix("start")
        self.started = True
        assert r.returncode == 0, "postfix -c %s start: %s\n%s" % (
            self.etc, r.stdout + r.stderr, self.log.tail())

        def listening():
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    return s.recv(200).startswith(b"220")
            except OSError:
                return False
        assert wait_until(listening, 20, 0.2), "MTA %s does not answer on port %d:\n%s" % (
            self.name, self.port, self.log.tail())
        return self

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
        """One message over SMTP; its queue id (from "250 ... queued as ID")."""
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="e2e-client.test", timeout=30)
        try:
            s.ehlo()
            code, msg = s.mail(sender)
            assert code == 250, "MAIL FROM:<%s>: %d %s" % (sender, code, msg)
            for r in rcpts:
                code, msg = s.rcpt(r)
                assert code == 250, "RCPT TO:<%s>: %d %s" % (r, code, msg)
            body = ("From: %s\r\nTo: %s\r\nSubject: backstop purge-queue e2e %d\r\n\r\n"
                    "message %d\r\n" % (sender or "MAILER-DAEMON@remote.test", ", ".join(rcpts),
                                        n, n))
            code, msg = s.data(body.encode())
            msg = msg.decode("utf-8", "replace")
            assert code == 250, "DATA: %d %s" % (code, msg)
            m = re.search(r"queued as ([0-9A-Za-z]+)", msg)
            assert m, "no queue id in the DATA reply: %s" % msg
            return m.group(1)
        finally:
            try:
                s.quit()
            except Exception:  # noqa: BLE001 - the session is over either way
                s.close()

    def queue_snapshot(self):
        """{queue_id: (queue_name, sender, recipients, arrival_time, message_size)}"""
        # the instance's own postqueue (not whatever PATH finds)
        if self.postqueue is None:
            self.postqueue = os.path.join(self.postconf("command_directory"), "postqueue")
        r = subprocess.run([self.postqueue, "-c", self.etc, "-j"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, "postqueue -c %s -j: %d %s" % (self.etc, r.returncode, r.stderr)
        snap = {}
        for line in r.stdout.splitlines():
            if not line.strip():
                continue
            m = json.loads(line)
            snap[m["queue_id"]] = (m["queue_name"], m["sender"],
                                   tuple(sorted(x["address"] for x in m["recipients"])),
                                   m.get("arrival_time"), m.get("message_size"))
        return snap
