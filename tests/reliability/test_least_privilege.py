"""
tests/reliability/test_least_privilege.py - backstopd with as little privilege as it can have

test_privilege_drop (a)  Started as root with [server] user = nobody, group =
    nogroup, an inet listener and a unix socket (socket_mode 0660,
    socket_group nogroup): after start /proc/PID/status shows nobody's uid
    and nogroup's gid (real, effective, saved, fs), nogroup as the only
    supplementary group and no effective capability; the socket is 0660
    root:nogroup, so a process in group nogroup may connect and one outside
    it may not; it answers on both listeners and reloads its configuration
    on SIGHUP. Skipped unless root.
test_server_allow (b)  [server] allow = 192.0.2.0/24 (loopback not allowed):
    connections from 127.0.0.1 and 127.0.0.2 are closed without a byte, each
    counted (conn_denied in the SIGUSR1 statistics line) and logged; the
    metrics endpoint refuses loopback too; the unix listener (no peer
    address) still answers. After allow += 127.0.0.2/32 and SIGHUP, a scrape
    from 127.0.0.2 shows backstop_connections_denied_total = every refusal.
test_redis_acl (c)  redis-server with the default user off; backstopd logs in
    as an ACL user that has only the commands and keys it uses (MIN_RULE, and
    the stricter TIGHT_RULE with read-only access to the data it does not
    write; MIRROR_RULE: MIN_RULE plus what [redis] mirror = yes sends). Every decision path (valid, unknown -> rate tracking -> block,
    NDR allow/deny/limit, catch-all, extension, exempt set, NOSCRIPT after
    SCRIPT FLUSH -> EVAL, the stats flush) gives the right answer with
    backstop_redis_errors_total 0, no fallback answer and an empty ACL LOG.
    Then each permission of MIN_RULE is taken away in turn: Redis must
    refuse that command to backstopd (ACL LOG), which proves it is needed.
    The admin rule (ADMIN_RULE) runs backstopctl's Redis commands, and is
    refused dangerous commands and keys outside the prefix.
Every check is reported (reltools.Checks); each test fails with all its failed ones.
"""
import grp
import os
import pwd
import signal
import socket
import stat
import time

import pytest
import redis

from reliability.reltools import proc_status
from support.backstopd import render_config
from support.policy import Closed, PolicyConn
from support.policy import request as policy_request
from support.replies import (BLOCKED, DUNNO, NDR_DENY, NDR_LIMIT, USER_UNKNOWN, USER_UNKNOWN_TEXT,
                             WARN)
from support.wait import poll

pytestmark = pytest.mark.slow

UNKNOWN = USER_UNKNOWN("nobody@example.com")
NDR_DENIED = NDR_DENY("x@remote.example")
NDR_LIMITED = NDR_LIMIT("c@lists.example.org")

# What backstopd sends (src/backstopd/store_redis.c): handshake AUTH (needs no
# permission), SELECT, ROLE, SCRIPT LOAD; lookups GET, SMISMEMBER,
# SISMEMBER, HMGET; EVALSHA (EVAL after NOSCRIPT) of two Lua scripts whose
# redis.call()s are TIME ZREMRANGEBYSCORE ZCARD ZADD PEXPIRE SET DEL HINCRBY
# (rate) and INCR PTTL PEXPIRE (NDR budget); HINCRBY for the stats flush; SCARD
# before a 550 (and HGET with [policy] max_directory_age, not set here);
# unknown recipients counted with ZREMRANGEBYSCORE ZADD PEXPIRE ZCARD or ZCOUNT;
# SMEMBERS, HGETALL, SCARD for the directory gauges (on connect, then every 15 s);
# HMGET backstop:mode with every request, HINCRBY backstop:wouldreject with the
# stats flush (a refusal in report mode).
# Harvest detection adds four scripts: the count (SISMEMBER TIME ZREMRANGEBYSCORE
# ZADD PEXPIRE ZCARD, past the threshold ZREMRANGEBYRANK HGET HSET HINCRBY
# ZRANGE), the greylisting check (SISMEMBER TIME ZSCORE GET SET), the known
# client (TIME ZADD ZREMRANGEBYSCORE PEXPIRE) and the sweep once a second
# (TIME HGETALL, at an attack's end HDEL HINCRBY).
COMMANDS = ["get", "sismember", "smismember", "hmget", "scard", "smembers", "hgetall", "hincrby",
            "evalsha", "eval", "script|load", "select", "role", "time", "zremrangebyscore", "zcard",
            "zcount", "zadd", "pexpire", "set", "del", "incr", "pttl", "zremrangebyrank", "zrange", "zscore",
            "hget", "hset", "hdel"]
CMD_RULE = "-@all " + " ".join("+" + c for c in COMMANDS)
MIN_RULE = "on >SECRET resetkeys ~backstop:* resetchannels " + CMD_RULE
TIGHT_RULE = ("on >SECRET resetkeys %R~backstop:* %RW~backstop:rate:* %RW~backstop:block:* "
              "%RW~backstop:ndrcount:* %RW~backstop:stats %RW~backstop:wouldreject "
              "%RW~backstop:harvest:* %RW~backstop:attack %RW~backstop:known:* "
              "%RW~backstop:grey:* resetchannels " + CMD_RULE)
# [harvest] for the paths below: a fresh domain trips in each round (then ends
# after a second: the sweep's HDEL); example.com's clients are known to it, so
# its answers stay the normal ones when it trips too
# (client_limit 3/1h, the normal limit, keeps rate members an hour: the
# 1m invalid_recipients window is then counted with ZCOUNT)
HARVEST = {"threshold": "3/1m", "duration": "1s", "client_limit": "3/1h"}
GREY = "action=450 4.7.1 Recipient verification delayed, try again later\n\n"
# [redis] mirror = yes adds (src/backstopd/redis_track.c): CLIENT ID and
# SUBSCRIBE __redis__:invalidate on the invalidation connection; CLIENT
# TRACKING, SSCAN, HSCAN, SCAN and a PING a second on the data connection.
MIRROR_COMMANDS = ["client|id", "client|tracking", "subscribe", "sscan", "hscan", "scan", "ping"]
MIRROR_RULE = ("on >SECRET resetkeys ~backstop:* resetchannels &__redis__:invalidate " + CMD_RULE
               + " " + " ".join("+" + c for c in MIRROR_COMMANDS))
ADMIN_RULE = "on >SECRET resetkeys ~backstop:* resetchannels +@all -@dangerous"
PASSWORD = "s3cret-bs"
ADMIN = ("root-admin", "harness-pw")  # the test's own Redis user
ADMIN_PASSWORD = "s3cret-admin"


def acl_log(admin, user):
    return [e for e in admin.acl_log() if e.get("username") == user]


def setuser(admin, name, rule, password):
    admin.execute_command("ACL", "SETUSER", name, "reset", *rule.replace("SECRET", password).split())


def refusal(e):
    """A Redis error as its reply line ("NOPERM ...", "NOAUTH ...")."""
    code = {redis.exceptions.NoPermissionError: "NOPERM ",
            redis.exceptions.AuthenticationError: "NOAUTH "}.get(type(e), "")
    return code + str(e)


def try_command(client, *args):
    """"allowed", or the refusal."""
    try:
        client.execute_command(*args)
        return "allowed"
    except (redis.ResponseError, redis.AuthenticationError) as e:  # NOAUTH is a ConnectionError
        return refusal(e)


# ---------------------------------------------------------------------------
# (a) privilege drop

def test_privilege_drop(redis_factory, rel_backstopd, test_dir, checks):
    """(a) Given root starts it with user/group nobody:nogroup, then it runs
    with nobody's ids and no capability, its socket admits group nogroup
    only, and it still answers, reloads and exits cleanly."""
    if os.geteuid() != 0:
        pytest.skip("(a) privilege drop: not root")
    try:
        nobody = pwd.getpwnam("nobody")
        nogroup = grp.getgrnam("nogroup")
    except KeyError as e:
        pytest.skip("(a) privilege drop: no such user/group: %s" % e)
    os.chmod(test_dir.root, 0o755)  # nobody reads its config and reaches its socket
    r = redis_factory("redis-a", tcp=True)
    r.client.sadd("backstop:domains", "example.com")
    r.client.sadd("backstop:rcpt:example.com", "user")
    d = rel_backstopd(r, name="backstopd-a", unix_listen=True,
                      server={"user": "nobody", "group": "nogroup", "socket_mode": "0660",
                              "socket_group": "nogroup"})
    st = proc_status(d.pid)
    ids = lambda v: [int(x) for x in v.split()]  # noqa: E731
    checks.check("(a) Uid real/effective/saved/fs are nobody's", ids(st["Uid"]) == [nobody.pw_uid] * 4, st["Uid"])
    checks.check("(a) Gid real/effective/saved/fs are nogroup's", ids(st["Gid"]) == [nogroup.gr_gid] * 4, st["Gid"])
    checks.check("(a) supplementary groups: nogroup only", ids(st.get("Groups", "")) == [nogroup.gr_gid],
                 st.get("Groups"))
    checks.check("(a) no effective or permitted capability",
                 int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0,
                 "CapEff %s CapPrm %s" % (st["CapEff"], st["CapPrm"]))
    checks.check("(a) logged the drop", "running as nobody:nogroup" in d.log())
    s = os.stat(d.unix_path)
    checks.check("(a) unix socket mode 0660, group nogroup", stat.S_ISSOCK(s.st_mode) and
                 stat.S_IMODE(s.st_mode) == 0o660 and s.st_gid == nogroup.gr_gid,
                 "mode %o uid %d gid %d" % (stat.S_IMODE(s.st_mode), s.st_uid, s.st_gid))
    with PolicyConn(("127.0.0.1", d.port)) as c:
        checks.check("(a) answers on the inet listener", c.ask(recipient="user@example.com") == DUNNO)
    with PolicyConn(d.unix_path) as c:
        checks.check("(a) answers on the unix socket", c.ask(recipient="nobody@example.com") == UNKNOWN)

    def connect_as(uid, gid):
        """Fork; the child drops to uid/gid (no supplementary groups) and
        tries the socket. Returns 'EACCES' or the reply's first line."""
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: no exceptions may escape
            out = b"?"
            try:
                os.close(rfd)
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                try:
                    c = PolicyConn(d.unix_path, timeout=5)
                    out = c.ask(recipient="user@example.com").strip().encode()
                except PermissionError:
                    out = b"EACCES"
            except BaseException as e:  # noqa: BLE001
                out = repr(e).encode()
            finally:
                os.write(wfd, out)
                os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            got = f.read().decode(errors="replace")
        os.waitpid(pid, 0)
        return got
    got = connect_as(nobody.pw_uid, nogroup.gr_gid)
    checks.check("(a) a process in group nogroup may use the socket", got == "action=DUNNO", got)
    got = connect_as(12345, 12345)
    checks.check("(a) a process outside group nogroup may not", got == "EACCES", got)

    # reload as nobody: the config file is world-readable here
    d.write_config(log={"level": "debug"})
    d.signal(signal.SIGHUP)
    poll(lambda: "configuration reloaded" in d.log() or "reload:" in d.log(), 10, what="reload")
    checks.check("(a) SIGHUP reload works after the privilege drop", "configuration reloaded" in d.log(),
                 [ln for ln in d.log().splitlines() if "reload" in ln][-1:])
    with PolicyConn(d.unix_path) as c:
        checks.check("(a) still answers after the reload", c.ask(recipient="user@example.com") == DUNNO)
    rc = d.terminate(15.0)
    checks.check("(a) exits 0 on SIGTERM as nobody", rc == 0, "status %s" % rc)
    # nobody cannot unlink in a root-owned directory: the daemon says so, and
    # the next start removes the stale socket (README: use a directory the
    # service user owns, e.g. systemd's RuntimeDirectory)
    checks.check("(a) unix socket removed at exit, or its removal failure logged",
                 not os.path.exists(d.unix_path) or "cannot remove " + d.unix_path in d.log(),
                 "%s left behind without a log line" % d.unix_path)
    checks.verdict()


# ---------------------------------------------------------------------------
# (b) [server] allow

def connect_from(src, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_without_reply(s, data):
    """Send data; True when the peer closes without sending a byte."""
    try:
        s.sendall(data)
    except OSError:
        pass
    got = b""
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            return got == b""
        got += chunk
    return False


def test_server_allow(redis_factory, rel_backstopd, checks):
    """(b) Given [server] allow without loopback, then loopback peers are
    refused without a byte (policy and metrics), counted and logged, the unix
    listener still answers, and a reload that allows 127.0.0.2 lets it in."""
    r = redis_factory("redis-b", tcp=True)
    r.client.sadd("backstop:domains", "example.com")
    r.client.sadd("backstop:rcpt:example.com", "user")
    d = rel_backstopd(r, name="backstopd-b", unix_listen=True, metrics=True, start=False,
                      server={"allow": ["192.0.2.0/24"]})
    d.probe_unix = True  # start-up checks over the unix socket: inet peers are all refused
    d.start()
    denied = 0
    results = []
    for src in ["127.0.0.1"] * 4 + ["127.0.0.2"]:
        s = connect_from(src, d.port)
        results.append(closed_without_reply(s, policy_request()))
        s.close()
        denied += 1
    checks.check("(b) connections from 127.0.0.1 and 127.0.0.2 closed without a byte", all(results), str(results))
    s = connect_from("127.0.0.1", d.metrics_port)
    checks.check("(b) the metrics endpoint refuses loopback too",
                 closed_without_reply(s, b"GET /metrics HTTP/1.0\r\n\r\n"))
    s.close()
    denied += 1
    with PolicyConn(d.unix_path) as c:
        checks.check("(b) the unix listener still answers", c.ask(recipient="user@example.com") == DUNNO)
    off = len(d.log())
    d.signal(signal.SIGUSR1)
    line = poll(lambda: [ln for ln in d.log()[off:].splitlines() if "statistics (SIGUSR1)" in ln], 5,
                what="SIGUSR1 statistics line")[0]
    checks.check("(b) counted: conn_denied=%d in the SIGUSR1 statistics" % denied,
                 (" conn_denied=%d " % denied) in line + " ", line[line.find("statistics"):])
    log = d.log()
    nlog = log.count("refused: not in [server] allow")
    checks.check("(b) each refusal logged with the peer address", nlog == denied and
                 "connection from 127.0.0.1 refused" in log and "connection from 127.0.0.2 refused" in log,
                 "%d log lines" % nlog)
    # allow 127.0.0.2 for the scraper (reload) and read the counter
    d.write_config(server={"allow": ["192.0.2.0/24", "127.0.0.2/32"]})
    d.signal(signal.SIGHUP)
    poll(lambda: "configuration reloaded" in d.log(), 10, what="reload")
    m = d.metrics(source="127.0.0.2")
    checks.check("(b) backstop_connections_denied_total == %d (scraped from 127.0.0.2 once allowed)" % denied,
                 m.get("backstop_connections_denied_total") == denied, "got %s" % m.get("backstop_connections_denied_total"))
    s = connect_from("127.0.0.1", d.port)
    checks.check("(b) 127.0.0.1 still refused after the reload", closed_without_reply(s, policy_request()))
    s.close()
    s = connect_from("127.0.0.2", d.port)
    s.sendall(policy_request(recipient="user@example.com"))
    checks.check("(b) 127.0.0.2 answered once in allow", s.recv(100) == DUNNO.encode())
    s.close()
    rc = d.terminate(15.0)
    checks.check("(b) exits 0", rc == 0, "status %s" % rc)
    checks.verdict()


# ---------------------------------------------------------------------------
# (c) Redis ACL

class Paths:
    """Drives every decision path; a fresh set of clients/domains per round."""

    rounds = 0  # across daemons: every round uses clients and domains of its own

    def __init__(self, d, r):
        self.d, self.r = d, r

    def run(self, flush_scripts=True, wait_block=True):
        """Returns a list of (what, expected, got) for wrong answers."""
        Paths.rounds += 1
        n = Paths.rounds
        bad = []

        def want(what, exp, **kw):
            got = self.d.ask(**kw)
            if got != exp:
                bad.append((what, exp, got))

        want("valid", DUNNO, recipient="user@example.com", client_address="192.0.2.%d" % n)
        want("extension", DUNNO, recipient="user+tag@example.com", client_address="192.0.2.%d" % n)
        want("catch-all", DUNNO, recipient="x@example.net", client_address="192.0.2.%d" % n)
        want("unprotected", DUNNO, recipient="x@elsewhere.example", client_address="192.0.2.%d" % n)
        want("exempt set", UNKNOWN, recipient="nobody@example.com", client_address="198.51.100.25")
        client = "203.0.113.%d" % n
        for i in range(3):  # invalid_recipients = 3/1m
            want("unknown %d" % (i + 1), UNKNOWN, recipient="no%d@example.com" % i, client_address=client)
        if flush_scripts:
            self.r.script_flush()  # the next EVALSHA gets NOSCRIPT -> EVAL
        want("unknown 4 (trips the block)", UNKNOWN, recipient="no4@example.com", client_address=client)
        end = time.monotonic() + (3 if wait_block else 0.3)  # the script runs after the answer
        while time.monotonic() < end and not self.r.exists("backstop:block:" + client):
            time.sleep(0.02)
        want("blocked", BLOCKED, recipient="user@example.com", client_address=client)
        want("ndr allow", DUNNO, sender="", recipient="x@partner.example", client_address="192.0.2.%d" % n)
        want("ndr deny", NDR_DENIED, sender="", recipient="x@remote.example", client_address="192.0.2.%d" % n)
        dom = "r%d.lists.example.org" % n   # ".lists.example.org" = limit 2/1h, one budget per domain
        want("ndr limit 1", DUNNO, sender="", recipient="a@" + dom, client_address="192.0.2.%d" % n)
        if flush_scripts:
            self.r.script_flush()
        want("ndr limit 2", DUNNO, sender="", recipient="b@" + dom, client_address="192.0.2.%d" % n)
        want("ndr limit 3", NDR_LIMITED, sender="", recipient="c@" + dom, client_address="192.0.2.%d" % n)
        # harvest: 4 unknown recipients from 4 networks trip h<n>.example (3/1m);
        # then a new client is greylisted
        hdom = "h%d.example" % n
        self.r.sadd("backstop:rcpt:" + hdom, "user")
        self.r.sadd("backstop:domains", hdom)
        for k in range(4):
            want("harvest %d" % (k + 1), USER_UNKNOWN("x"), recipient="n%d@%s" % (k, hdom),
                 client_address="10.%d.%d.1" % (n % 250, k))
        end = time.monotonic() + (3 if wait_block else 0.3)
        while time.monotonic() < end and not self.r.hexists("backstop:attack", hdom):
            time.sleep(0.02)
        time.sleep(0.05)  # the instance that started it knows it once the script answered
        want("harvest greylisted", GREY, recipient="user@" + hdom, client_address="10.%d.99.1" % (n % 250))
        return bad


def test_redis_acl(redis_factory, rel_backstopd, backstopctl, test_dir, checks):
    """(c) Given Redis with the default user off and backstopd logged in as a
    minimal ACL user, then every decision path works with nothing refused,
    every permission is needed, and the admins' rule runs backstopctl while
    refusing dangerous commands."""
    r = redis_factory("redis-c", tcp=True)
    r.client.execute_command("ACL", "SETUSER", ADMIN[0], "on", ">" + ADMIN[1], "~*", "&*", "+@all")
    r.client.execute_command("ACL", "SETUSER", "default", "off")
    admin = redis.Redis(unix_socket_path=r.sock, username=ADMIN[0], password=ADMIN[1],
                        decode_responses=True, socket_timeout=5)
    admin.sadd("backstop:domains", "example.com", "example.net", "report.example")
    admin.sadd("backstop:rcpt:report.example", "user")
    admin.hset("backstop:mode", "report.example", "report")
    admin.sadd("backstop:rcpt:example.com", "user", "postmaster")
    admin.sadd("backstop:rcpt:example.net", "*")
    admin.sadd("backstop:exempt", "198.51.100.25")
    admin.hset("backstop:ndr", mapping={"*": "deny", "partner.example": "allow",
                                        ".lists.example.org": "limit 2/1h"})
    far = int(time.time() * 1000) + 86400 * 1000
    admin.zadd("backstop:known:example.com", {"192.0.2.0/24": far, "203.0.113.0/24": far})
    # the default user is off: nobody gets in without credentials
    anon = try_command(redis.Redis(host="127.0.0.1", port=r.port), "GET", "backstop:domains")
    checks.check("(c) the default user is off", anon.startswith("NOAUTH"), anon)

    for label, rule in (("MIN_RULE", MIN_RULE), ("TIGHT_RULE", TIGHT_RULE),
                        ("MIRROR_RULE", MIRROR_RULE)):
        setuser(admin, "backstopd", rule, PASSWORD)
        admin.acl_log_reset()
        before = {k: int(v) for k, v in admin.hgetall("backstop:stats").items()}
        wouldreject_before = int(admin.hget("backstop:wouldreject", "report.example") or 0)
        d = rel_backstopd(r, name="backstopd-c", metrics=True,
                          redis={"username": "backstopd", "password": PASSWORD,
                                 "mirror": "yes" if label == "MIRROR_RULE" else "no"},
                          ratelimit={"invalid_recipients": "3/1m", "block_time": "1h"},
                          harvest=HARVEST)
        if label == "MIRROR_RULE":  # the paths below then run against the loaded mirror
            poll(lambda: d.ask(recipient="user@example.com", client_address="192.0.2.250") == DUNNO
                 and (d.metrics().get("backstop_mirror_answers_total") or 0) > 0, 10,
                 interval=0.1, what="the mirror loaded")
        paths = Paths(d, admin)
        bad = paths.run()
        time.sleep(1.3)  # one stats flush (HINCRBY) at least
        m = d.metrics()
        stats = {k: int(v) - before.get(k, 0) for k, v in admin.hgetall("backstop:stats").items()}
        log = acl_log(admin, "backstopd")
        off = len(d.log())
        d.signal(signal.SIGUSR1)
        sl = poll(lambda: [ln for ln in d.log()[off:].splitlines() if "statistics (SIGUSR1)" in ln], 5,
                  what="statistics")[0]
        checks.check("(c) %s: every decision path answered right" % label, not bad, str(bad[:3]))
        checks.check("(c) %s: backstop_redis_errors_total 0, no fallback" % label,
                     m.get("backstop_redis_errors_total") == 0 and m.get("backstop_fallback_answers_total") == 0,
                     "errors %s fallback %s" % (m.get("backstop_redis_errors_total"),
                                                m.get("backstop_fallback_answers_total")))
        checks.check("(c) %s: Redis refused nothing (ACL LOG empty)" % label, not log,
                     str([(e.get("reason"), e.get("object"), e.get("context")) for e in log][:5]))
        if label == "MIRROR_RULE":
            checks.check("(c) MIRROR_RULE: the mirror answered",
                         (m.get("backstop_mirror_answers_total") or 0) > 0,
                         str(m.get("backstop_mirror_answers_total")))
        checks.check("(c) %s: NOSCRIPT -> EVAL exercised" % label, "redis_noscript=" in sl, sl[sl.find("statistics"):])
        checks.check("(c) %s: stats flushed (HINCRBY) and the block set by the script" % label,
                     stats.get("valid", 0) >= 1 and stats.get("clients_blocked", 0) >= 1, str(stats))
        hdom = "h%d.example" % Paths.rounds
        ended = "harvest attack on %s ended after" % hdom
        try:
            poll(lambda: ended in d.log(), 5, what="the attack on %s to end" % hdom)
        except AssertionError:
            pass
        checks.check("(c) %s: an attack started and ended (HSET, HDEL by the sweep)" % label,
                     ("harvest attack on %s started" % hdom) in d.log() and ended in d.log()
                     and not admin.hexists("backstop:attack", hdom), hdom)
        with redis.Redis(host="127.0.0.1", port=r.port, username="backstopd", password=PASSWORD) as bc:
            if label == "TIGHT_RULE":
                # commands it may run, on keys it may only read (MIN_RULE would let these through)
                res = []
                for args in (("SET", "backstop:domains", "x"), ("DEL", "backstop:rcpt:example.com"),
                             ("HINCRBY", "backstop:ndr", "*", "1"), ("PEXPIRE", "backstop:exempt", "1")):
                    got = try_command(bc, *args)
                    res.append("%s allowed" % args[0] if got == "allowed" else got[:60])
                checks.check("(c) TIGHT_RULE: backstopd's user cannot change the data it only reads",
                             all(x.startswith("NOPERM") for x in res), "; ".join(res))
            res2 = try_command(bc, "FLUSHALL")
            res3 = try_command(bc, "SET", "other:key", "x")
            checks.check("(c) %s: no FLUSHALL, no key outside the prefix" % label,
                         res2.startswith("NOPERM") and res3.startswith("NOPERM"), "%s / %s" % (res2, res3))

        if label == "MIN_RULE":
            # every permission is needed: take each away, Redis must refuse it to backstopd
            not_needed = []
            for cmd in COMMANDS:
                admin.execute_command("ACL", "SETUSER", "backstopd", "-" + cmd)
                admin.acl_log_reset()
                admin.execute_command("CLIENT", "KILL", "USER", "backstopd")  # the handshake runs again
                seen = []

                def refused():
                    seen[:] = [e for e in acl_log(admin, "backstopd") if e.get("object") == cmd]
                    return seen
                try:  # reconnected (unless the handshake itself is refused)
                    poll(lambda: refused() or d.ask(recipient="user@example.com",
                                                    client_address="192.0.2.250") == DUNNO, 3, interval=0.1)
                except AssertionError:
                    pass
                end = time.monotonic() + 5
                while time.monotonic() < end and not refused():
                    try:
                        paths.run(wait_block=False)
                    except (AssertionError, Closed, OSError):
                        pass
                    time.sleep(0.1)
                if not seen:
                    not_needed.append(cmd)
                admin.execute_command("ACL", "SETUSER", "backstopd", "+" + cmd)
                admin.execute_command("CLIENT", "KILL", "USER", "backstopd")
                poll(lambda: d.ask(recipient="user@example.com", client_address="192.0.2.250") == DUNNO, 10,
                     interval=0.2, what="backstopd healthy again after +%s" % cmd)
            checks.check("(c) every command of MIN_RULE is needed (refused to backstopd when removed)",
                         not not_needed, "never used: %s" % not_needed)
        rc = d.terminate(15.0)
        checks.check("(c) %s: backstopd exits 0" % label, rc == 0, "status %s" % rc)

    # ---- the admins' rule, through backstopctl
    setuser(admin, "backstop-admin", ADMIN_RULE, ADMIN_PASSWORD)
    admin.acl_log_reset()
    conf = os.path.join(test_dir.make("ctl"), "backstop.ini")
    with open(conf, "w") as f:
        f.write(render_config({"redis": {"server": r.endpoint, "username": "backstop-admin",
                                         "password": ADMIN_PASSWORD}}))
    users = os.path.join(os.path.dirname(conf), "users.txt")
    with open(users, "w") as f:
        f.write("carol\ndave@example.org\n")
    ctl_cmds = [
        ["domain", "add", "example.org"], ["domain", "list"], ["user", "add", "example.org", "erin"],
        ["user", "list", "example.org"], ["import", "example.org", users],
        ["import", "--replace", "example.org", users], ["user", "del", "example.org", "carol"],
        ["ndr", "set", "bounce.example", "limit 5/1h"], ["ndr", "list"], ["ndr", "explain", "bounce.example"],
        ["ndr", "del", "bounce.example"], ["block", "add", "198.51.100.9", "--for", "1h"], ["block", "list"],
        ["client", "198.51.100.9"], ["block", "del", "198.51.100.9"], ["stats"],
        ["domain", "mode", "example.org", "report"], ["domain", "mode", "example.org"],
        ["stats", "--domain", "example.org"], ["domain", "mode", "example.org", "default"],
        ["domain", "del", "--purge", "example.org"],
    ]
    failed = []
    for argv in ctl_cmds:
        p = backstopctl.run(*argv, config=conf, timeout=30)
        # "client" exits 1 for a refused client: it is blocked here on purpose
        if p.rc not in ((0, 1) if argv[0] == "client" else (0,)) or "NOPERM" in p.out + p.err:
            failed.append("%s -> %d %s" % (" ".join(argv), p.rc, (p.err or p.out).strip()[-160:]))
    log = acl_log(admin, "backstop-admin")
    checks.check("(c) ADMIN_RULE: every backstopctl Redis command works (%d commands)" % len(ctl_cmds),
                 not failed and not log, "; ".join(failed[:3]) +
                 str([(e.get("reason"), e.get("object")) for e in log][:5]))
    with redis.Redis(host="127.0.0.1", port=r.port, username="backstop-admin",
                     password=ADMIN_PASSWORD) as ac:
        refused = [args[0] for args in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"),
                                        ("SET", "other:key", "x"), ("SAVE",), ("SHUTDOWN",), ("ACL", "LIST"))
                   if try_command(ac, *args).startswith("NOPERM")]
        checks.check("(c) ADMIN_RULE refuses FLUSHALL, CONFIG, KEYS, SAVE, SHUTDOWN, ACL and keys outside the prefix",
                     len(refused) == 7, "refused %s" % refused)
    checks.verdict()
