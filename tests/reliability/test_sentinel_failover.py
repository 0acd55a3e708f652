"""
tests/reliability/test_sentinel_failover.py - backstopd behind Redis Sentinel while the master dies

One master, one replica (in sync), three sentinels (redis-server --sentinel)
on loopback: monitor m quorum 2, down-after-milliseconds 1000,
failover-timeout 5000 (the sentinel_group fixture, tests/support/sentinel.py).
backstopd finds the master through the three sentinels ([redis] sentinel x3,
master_name m, timeout 300ms). Four connections send requests continuously
(valid and unknown recipients from 200 non-exempt clients 192.0.2.x, so the
rate-tracking script writes; invalid_recipients 1000/1m blocks nobody).

Then the master is killed with SIGKILL. Checked:
  - every request is answered, each within [redis] timeout + 100 ms, and
    every answer is the right one or the on_redis_error fallback;
  - writes (a direct EVALSHA or a backstop:stats increment) reach the new
    master within down-after + 3 s of the kill, and backstopd's Redis
    connection goes to the new master;
  - the old master, restarted on its port (empty), is turned into a replica
    by the sentinels, and backstopd never talks to it: no TCP connection of
    the backstopd process to its port at any sample, no key written while
    it was still a master, no policy command (GET, SISMEMBER, SMISMEMBER,
    HMGET, EVALSHA, EVAL, SCRIPT, ROLE) in its INFO commandstats, and no
    client in its CLIENT LIST besides sentinels, the replication link and us;
  - known users are answered from the local mirror (the default) through
    the outage (at most one fallback per connection: its request in flight
    at the kill); unknown users get the fallback, never 550 from stale data;
  - answers stay real (no fallback) from recovery on;
  - then a graceful SENTINEL FAILOVER (the old master, now a replica, is
    promoted back; the current master is demoted but stays up): backstopd
    must follow, leave the demoted master within 3 s of the switch, send
    nothing to it once it is a replica, and give fallback answers for <= 2.5 s.
Measured and printed (and in the terminal summary): failover time (kill ->
first real answer again), sentinel switch time, first direct write, latencies.
Every check is reported (reltools.Checks); the test fails with all failed ones.
"""
import threading
import time

import pytest

from reliability.reltools import connected_ports, tcp_peers_of
from support.policy import Closed
from support.replies import DUNNO, FALLBACK_DEFER, USER_UNKNOWN
from support.wait import poll

pytestmark = pytest.mark.slow

UNKNOWN = USER_UNKNOWN("nobody@example.com")
TIMEOUT_MS = 300
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
NCONN = 4
PACE_S = 0.005  # per connection, between requests
# never propagated by replication: seen on the old master only if a client sent them
POLICY_COMMANDS = ("get", "sismember", "smismember", "hmget", "evalsha", "eval", "script|load", "role")


class Load:
    """NCONN threads, each a policy connection sending requests in a loop."""

    def __init__(self, daemon):
        self.d = daemon
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results = []  # (t_send, t_recv, kind, reply)
        self.errors = []   # (t, text)
        self.threads = [threading.Thread(target=self.worker, args=(k,), daemon=True)
                        for k in range(NCONN)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def worker(self, k):
        conn = None
        i = 0
        while not self.stop.is_set():
            i += 1
            client = "192.0.2.%d" % (1 + (k * 50 + i) % 200)
            if i % 2:
                kind, rcpt = "valid", "user@example.com"
            else:
                kind, rcpt = "unknown", "nobody%d@example.com" % (i % 1000)
            try:
                if conn is None:
                    conn = self.d.conn(timeout=5.0)
                t0 = time.monotonic()
                reply = conn.ask(client_address=client, recipient=rcpt, timeout=5.0)
                t1 = time.monotonic()
                with self.lock:
                    self.results.append((t0, t1, kind, reply))
            except (Closed, AssertionError, OSError) as e:
                with self.lock:
                    self.errors.append((time.monotonic(), "conn %d: %s" % (k, e)))
                if conn:
                    conn.close()
                conn = None
            time.sleep(PACE_S)
        if conn:
            conn.close()

    def snapshot(self):
        with self.lock:
            return list(self.results), list(self.errors)


def commandstats(r):
    """{'get': {'calls': 3, 'rejected_calls': 0, ...}} from INFO commandstats."""
    return {k[len("cmdstat_"):]: v for k, v in r.client.info("commandstats").items()
            if k.startswith("cmdstat_")}


def policy_calls(r, commands=POLICY_COMMANDS):
    """Policy commands the instance has executed (from clients; never propagated)."""
    cs = commandstats(r)
    return sum(v.get("calls", 0) for c, v in cs.items() if c in commands)


def manual_failover(checks, d, group, promoted, demoted):
    """SENTINEL FAILOVER while under load: returns t0 (start, monotonic)
    after checking where backstopd's commands went."""
    pid = d.pid
    t0 = time.monotonic()
    group.sentinels[0].client.sentinel_failover("m")
    t_switch = t_conn_new = t_last_old = t_demoted = None
    calls_after_switch = 0  # policy commands the demoted master ran after the switch
    writes_after_switch = 0  # of which rate-tracking / NDR scripts
    at_switch = writes_at_switch = None
    while time.monotonic() < t0 + 30:
        now = time.monotonic() - t0
        if t_switch is None and group.master_port() == promoted.port:
            t_switch = now
            at_switch = policy_calls(demoted)
            writes_at_switch = policy_calls(demoted, ("evalsha", "eval"))
        peers = connected_ports(pid)
        if demoted.port in peers:
            t_last_old = now
        if t_conn_new is None and promoted.port in peers:
            t_conn_new = now
        try:
            if t_demoted is None and demoted.client.info("replication").get("role") == "slave":
                t_demoted = now
            if at_switch is not None:
                calls_after_switch = policy_calls(demoted) - at_switch
                writes_after_switch = policy_calls(demoted, ("evalsha", "eval")) - writes_at_switch
        except Exception:  # noqa: BLE001
            pass
        if t_switch is not None and t_conn_new is not None and t_demoted is not None \
                and now > max(t_last_old or 0, t_demoted) + 3:
            break
        time.sleep(0.1)
    fmt = lambda t: "%.2fs" % t if t is not None else "never"  # noqa: E731
    checks.measure("SENTINEL FAILOVER: sentinel switch-master after", fmt(t_switch))
    checks.measure("SENTINEL FAILOVER: demoted master turned replica after", fmt(t_demoted))
    checks.measure("SENTINEL FAILOVER: backstopd on the promoted master after", fmt(t_conn_new))
    checks.measure("SENTINEL FAILOVER: backstopd still connected to the demoted master at", fmt(t_last_old))
    checks.measure("SENTINEL FAILOVER: policy commands the demoted master ran after the switch",
                   "%d, of which %d write scripts (EVALSHA)" % (calls_after_switch, writes_after_switch))
    checks.check("SENTINEL FAILOVER: backstopd follows the switch", t_switch is not None and t_conn_new is not None)
    checks.check("SENTINEL FAILOVER: backstopd leaves the demoted master within 3 s of the switch",
                 t_switch is not None and t_last_old is not None and t_last_old - t_switch <= 3.0,
                 "left %.1fs after the switch, %d policy commands (writes among them, lost at its resync) "
                 "sent to it meanwhile" % ((t_last_old or 0) - (t_switch or 0), calls_after_switch))
    end_calls = policy_calls(demoted)
    time.sleep(1.0)
    checks.check("SENTINEL FAILOVER: nothing reaches the demoted master once it is a replica",
                 policy_calls(demoted) == end_calls and demoted.port not in
                 [rp for _, rp, st in tcp_peers_of(pid)], "")
    return t0


@pytest.mark.sentinel
def test_sentinel_failover(sentinel_group, rel_backstopd, checks):
    """Given backstopd behind Sentinel under load, when the master is killed
    (then comes back) and later a SENTINEL FAILOVER runs, then it answers in
    time and its writes follow the master, never the demoted or old one."""
    g = sentinel_group
    master, replica = g.master, g.replica
    master.client.sadd("backstop:domains", "example.com")
    master.client.sadd("backstop:rcpt:example.com", "user", "alice", "postmaster")
    t = time.monotonic()
    poll(lambda: replica.client.sismember("backstop:domains", "example.com"), 10,
         what="data on the replica")
    checks.measure("replica in sync after", "%.1fs" % (g.sync_s + time.monotonic() - t))
    checks.measure("sentinels ready after", "%.1fs" % g.ready_s)

    d = rel_backstopd("", metrics=True,
                      redis={"server": None, "sentinel": g.endpoints(), "master_name": "m",
                             "timeout": "%dms" % TIMEOUT_MS, "connect_timeout": "1s"},
                      ratelimit={"invalid_recipients": "1000/1m", "block_time": "1h"},
                      harvest={"threshold": "100000/1m"},  # counted, never tripped
                      log={"level": "info"})
    checks.check("backstopd connects to the master Sentinel names",
                  master.port in connected_ports(d.pid), "peers %s" % tcp_peers_of(d.pid))

    load = Load(d)
    load.start()
    time.sleep(2.0)
    pre, _ = load.snapshot()
    checks.check("real answers before the kill", pre and all(r[3] != FALLBACK_DEFER for r in pre),
                 "%d answers, %d fallback" % (len(pre), sum(r[3] == FALLBACK_DEFER for r in pre)))

    # --- kill -9 the master
    t_kill = time.monotonic()
    master.kill()
    stats0 = int(replica.client.hget("backstop:stats", "unknown_user") or 0)
    t_switch = t_evalsha = t_stats = None
    deadline = t_kill + 20
    while time.monotonic() < deadline and (t_switch is None or t_evalsha is None or t_stats is None):
        now = time.monotonic()
        if t_switch is None and g.master_port() == replica.port:
            t_switch = now
        try:
            cs = commandstats(replica)
            ev = cs.get("evalsha", {})
            if t_evalsha is None and ev.get("calls", 0) - ev.get("failed_calls", 0) > 0:
                t_evalsha = now
            if t_stats is None and int(replica.client.hget("backstop:stats", "unknown_user") or 0) > stats0:
                t_stats = now
        except Exception:  # noqa: BLE001 - the replica is being reconfigured
            pass
        time.sleep(0.05)
    rel_t = lambda t: "%.2fs" % (t - t_kill) if t is not None else "never"  # noqa: E731
    checks.measure("sentinel switch-master after kill", rel_t(t_switch))
    checks.measure("first direct EVALSHA on the new master after kill", rel_t(t_evalsha))
    checks.measure("first backstop:stats increment on the new master after kill", rel_t(t_stats))
    firsts = [t for t in (t_evalsha, t_stats) if t is not None]
    t_write = min(firsts) if firsts else None
    limit = DOWN_AFTER_MS / 1000 + 3
    why = "first write %s after the kill (limit %.1fs); sentinel switched %s after" % (
        rel_t(t_write), limit, rel_t(t_switch))
    if t_switch is not None and t_switch - t_kill > limit - 0.5 and \
            (t_write is None or t_write - t_kill > limit):
        # Sentinel itself was slow (an election retry): this run cannot judge backstopd
        checks.skip("writes reach the new master within down-after + 3 s of the kill", why)
    else:
        checks.check("writes reach the new master within down-after + 3 s of the kill",
                     t_write is not None and t_write - t_kill <= limit, why)
    if t_write is not None and t_switch is not None:
        checks.measure("backstopd followed the switch after", "%.2fs" % (t_write - t_switch))
    # its own part: the next rediscovery comes at most one backoff (<= 2 s) after the switch
    checks.check("backstopd writes to the new master within 2.5 s of the sentinel switch",
                 t_write is not None and t_switch is not None and t_write - t_switch <= 2.5,
                 "%s after the switch" % ("%.2fs" % (t_write - t_switch) if t_write and t_switch else "never"))
    poll(lambda: replica.port in connected_ports(d.pid), 5, what="backstopd connected to the new master")
    checks.check("backstopd's Redis connection is to the new master", True,
                 "port %d" % replica.port)

    # --- the old master comes back (empty) and must become a replica
    time.sleep(0.5)
    master.start()
    master.client.config_set("repl-diskless-sync-delay", 0)  # as at the start (sentinel_group)
    t_back = time.monotonic()
    writes_while_master = []
    conns_to_old = []
    became_replica = None
    while time.monotonic() < t_back + 40:
        for lp, rp, st in tcp_peers_of(d.pid):
            if rp == master.port:
                conns_to_old.append((round(time.monotonic() - t_back, 2), lp, st))
        try:
            info = master.client.info("replication")
            if info.get("role") == "master":
                n = master.client.dbsize()
                if n:
                    writes_while_master.append((round(time.monotonic() - t_back, 2), n))
            elif info.get("master_link_status") == "up" and became_replica is None:
                became_replica = time.monotonic()
        except Exception:  # noqa: BLE001
            pass
        if became_replica and time.monotonic() > became_replica + 4:
            break  # a few seconds of load with it as a replica
        time.sleep(0.1)
    checks.measure("old master turned into a replica (link up) after",
                   "%.1fs" % (became_replica - t_back) if became_replica else "never")
    checks.check("old master rejoins as a replica", became_replica is not None)
    checks.check("backstopd never connects to the old master", not conns_to_old,
                 "%d samples with a connection, first %s" % (len(conns_to_old), conns_to_old[:3]))
    checks.check("no key written on the old master while it was a master", not writes_while_master,
                 str(writes_while_master[:3]))
    cs = commandstats(master)
    used = {c: v.get("calls", 0) + v.get("rejected_calls", 0)
            for c, v in cs.items() if c in POLICY_COMMANDS}
    used = {c: n for c, n in used.items() if n}
    checks.check("no policy command reached the old master (INFO commandstats)", not used,
                 str(used) if used else "commands seen: %s" % ",".join(sorted(cs)))
    strangers = [c for c in master.client.client_list()
                 if not (c.get("name", "").startswith("sentinel-") or "M" in c.get("flags", "")
                         or c.get("cmd") == "client|list")]
    checks.check("old master's CLIENT LIST: only sentinels, the master link and us", not strangers,
                 "; ".join(strangers[:3]))

    # --- a graceful failover (SENTINEL FAILOVER): the old master, now a
    # replica, is promoted back; the current master is demoted but stays up
    t_manual = manual_failover(checks, d, g, promoted=master, demoted=replica)

    load.finish()
    results, errors = load.snapshot()
    checks.check("every request answered (no connection lost, no hang)", not errors,
                 "%d errors, first %s" % (len(errors), errors[:3]))
    lat = sorted(r[1] - r[0] for r in results)
    late = [r for r in results if r[1] - r[0] > (TIMEOUT_MS + 100) / 1000]
    checks.measure("requests answered", len(results))
    checks.measure("latency max / p99 / median",
                   "%.1f / %.1f / %.1f ms" % (lat[-1] * 1000, lat[int(len(lat) * .99)] * 1000,
                                              lat[len(lat) // 2] * 1000))
    checks.check("each answer within timeout + 100 ms", not late,
                 "%d of %d late, worst %.1f ms" % (len(late), len(results),
                                                   max((r[1] - r[0] for r in late), default=0) * 1000))
    want = {"valid": DUNNO, "unknown": UNKNOWN}
    wrong = [r for r in results if r[3] != FALLBACK_DEFER and r[3] != want[r[2]]]
    checks.check("every answer is the right one or the fallback", not wrong, str(wrong[:3]))

    after = sorted((r for r in results if r[1] > t_kill), key=lambda r: r[1])
    nfb = sum(1 for r in after if r[3] == FALLBACK_DEFER)
    first_fb = next((i for i, r in enumerate(after) if r[3] == FALLBACK_DEFER), None)
    recovered = None
    if first_fb is not None:
        # an unknown user needs Redis (stale data never says a user does
        # not exist): recovered when one is refused for real again
        recovered = next((r for r in after[first_fb:]
                          if r[2] == "unknown" and r[3] != FALLBACK_DEFER), None)
    checks.measure("fallback answers after the kill", nfb)
    if recovered:
        checks.measure("FAILOVER TIME (kill -> first real answer again)",
                       "%.2fs" % (recovered[1] - t_kill))
        late_fb = [r for r in after if recovered[1] < r[1] < t_manual and r[3] == FALLBACK_DEFER]
        checks.check("no fallback answer from recovery to the manual failover", not late_fb,
                     "%d fallback answers after recovery, first at +%.2fs" % (
                         len(late_fb), late_fb[0][1] - t_kill) if late_fb else "")
        # the local mirror (the default) answers known users meanwhile; a
        # request already sent to the dying master gets the fallback
        outage = [r for r in after if r[1] <= recovered[1]]
        vfb = sum(1 for r in outage if r[2] == "valid" and r[3] == FALLBACK_DEFER)
        nvalid = sum(1 for r in outage if r[2] == "valid")
        checks.measure("known users during the outage: answered / fallback", "%d / %d" % (nvalid, vfb))
        checks.check("known users answered from the local mirror during the outage",
                     vfb <= NCONN, "%d of %d got the fallback" % (vfb, nvalid))
    checks.check("real answers again after the failover", recovered is not None or nfb == 0)
    mfb = [r for r in results if r[1] > t_manual and r[3] == FALLBACK_DEFER]
    outage = mfb[-1][1] - mfb[0][1] if mfb else 0.0
    checks.measure("SENTINEL FAILOVER: fallback answers", "%d, over %.2fs" % (len(mfb), outage))
    checks.check("SENTINEL FAILOVER: fallback answers for at most 2.5 s", outage <= 2.5, "%.2fs" % outage)

    m = d.metrics()
    checks.measure("backstop_redis_connects_total / disconnects", "%d / %d" % (
         m.get("backstop_redis_connects_total", -1), m.get("backstop_redis_disconnects_total", -1)))
    rc = d.terminate(15.0)
    checks.check("backstopd exits 0 on SIGTERM", rc == 0, "status %s" % rc)
    checks.check("no sanitizer report", not d.sanitizer_reports(), str(d.sanitizer_reports()))
    checks.verdict()
