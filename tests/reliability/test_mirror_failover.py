"""
tests/reliability/test_mirror_failover.py - the local mirror across a
Sentinel failover whose replica lags (issue 10)

One master, one replica, three sentinels (tests/support/sentinel.py);
backstopd finds the master through them, with [redis] mirror = yes. The
master then takes writes the replica never gets (a Lua script with
redis.set_repl(redis.REPL_NONE): replication lag made exact): alice is
removed from example.com and client 192.0.2.77 is blocked. The mirror
obeys them (invalidations come from the master). Then the master is
SIGKILLed: Sentinel promotes the replica, which still has alice and no
block. Checked:
  - while no master is known the stale mirror answers a known user (no
    fallback) and keeps 192.0.2.77 blocked (the old data), but never says
    a user does not exist: alice gets the fallback (4xx), never 550;
  - after the failover the mirror holds the new master's data, not the old
    one's: alice is valid again, 192.0.2.77 is not blocked; the mirror is
    exact again (backstop_mirror_stale_seconds 0).
Measured: kill -> first answer from the new master's data.
"""
import time

import pytest

from support.replies import BLOCKED, DUNNO, FALLBACK_DEFER, PREFIX, USER_UNKNOWN
from support.wait import poll

pytestmark = pytest.mark.slow

LAGGING_WRITE = """
redis.set_repl(redis.REPL_NONE)
redis.call('SREM', KEYS[1], 'alice')
redis.call('SET', KEYS[2], 'manual', 'EX', 3600)
return 1
"""


def test_failover_with_a_lagging_replica(sentinel_group, rel_backstopd, checks):
    g = sentinel_group
    m = g.master.client
    m.sadd(PREFIX + "domains", "example.com")
    m.sadd(PREFIX + "rcpt:example.com", "alice", "bob")
    poll(lambda: g.replica.client.scard(PREFIX + "rcpt:example.com") == 2, 10,
         what="data on the replica")
    d = rel_backstopd("", metrics=True,
                      redis={"server": None, "sentinel": g.endpoints(), "master_name": "m",
                             "mirror": "yes", "max_stale": "5m"},
                      ratelimit={"invalid_recipients": "0"},
                      harvest={"threshold": "0"})
    alice = {"recipient": "alice@example.com"}
    blocked = {"recipient": "bob@example.com", "client_address": "192.0.2.77"}
    poll(lambda: d.ask(**alice) == DUNNO and
         (d.metrics().get("backstop_mirror_answers_total") or 0) > 0, 10, what="the mirror loaded")

    # given writes the replica never gets
    m.eval(LAGGING_WRITE, 2, PREFIX + "rcpt:example.com", PREFIX + "block:192.0.2.77")
    checks.check("the replica lags", g.replica.client.sismember(PREFIX + "rcpt:example.com", "alice")
                 and not g.replica.client.exists(PREFIX + "block:192.0.2.77"), "")
    poll(lambda: d.ask(**alice) == USER_UNKNOWN("alice@example.com") and d.ask(**blocked) == BLOCKED,
         2, what="the mirror to obey the master")

    # when the master dies
    other = {"recipient": "bob@example.com", "client_address": "192.0.2.78"}
    g.master.kill()
    t0 = time.monotonic()
    seen = {"alice": [], "blocked": [], "other": []}
    while time.monotonic() - t0 < 30:
        a, b, o = d.ask(**alice), d.ask(**blocked), d.ask(**other)
        seen["alice"].append(a)
        seen["blocked"].append(b)
        seen["other"].append(o)
        if a == DUNNO and b == DUNNO:
            break
        time.sleep(0.02)
    took = time.monotonic() - t0
    checks.measure("kill -> answers from the new master's data", "%.2fs" % took)
    n_fb = {k: v.count(FALLBACK_DEFER) for k, v in seen.items()}
    checks.measure("answers while the master was gone (alice / blocked / other)",
                   "%d / %d / %d, fallback %d / %d / %d" % (
                       len(seen["alice"]), len(seen["blocked"]), len(seen["other"]),
                       n_fb["alice"], n_fb["blocked"], n_fb["other"]))
    # then the stale mirror answers what it may: a known user passes, the
    # block holds (old data), never the fallback for them
    checks.check("a known user answered from the stale mirror throughout",
                 set(seen["other"]) == {DUNNO}, repr(sorted(set(seen["other"]))))
    bl = seen["blocked"]
    first_free = bl.index(DUNNO) if DUNNO in bl else len(bl)
    checks.check("the old master's block held from the stale mirror until the new master's data",
                 set(bl[:first_free]) == {BLOCKED} and set(bl[first_free:]) == {DUNNO},
                 repr(bl[:3]) + " ... " + repr(bl[-3:]))
    # but stale data never says a user does not exist: alice, removed on the
    # old master only, gets the fallback (a 4xx), never 550, once the link is lost
    al = seen["alice"]
    first_fb = al.index(FALLBACK_DEFER) if FALLBACK_DEFER in al else None
    checks.check("alice: the fallback while stale, never 550 from stale data",
                 first_fb is not None and USER_UNKNOWN("alice@example.com") not in al[first_fb:]
                 and set(al) <= {USER_UNKNOWN("alice@example.com"), FALLBACK_DEFER, DUNNO},
                 repr(sorted(set(al))))
    # and the old master's data the new one lacks is gone
    checks.check("alice valid and 192.0.2.77 unblocked (the new master's data)",
                 d.ask(**alice) == DUNNO and d.ask(**blocked) == DUNNO, "after %.1fs" % took)
    poll(lambda: d.metrics().get("backstop_mirror_stale_seconds") == 0, 10,
         what="the mirror exact again")
    mt = d.metrics()
    checks.check("stale answers counted", (mt.get("backstop_mirror_stale_answers_total") or 0) > 0,
                 str(mt.get("backstop_mirror_stale_answers_total")))
    checks.verdict()
