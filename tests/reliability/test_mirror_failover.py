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
  - while no master is known the mirror answers (stale), no fallback;
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
    g.master.kill()
    t0 = time.monotonic()
    answers = []
    while time.monotonic() - t0 < 30:
        a = d.ask(**alice)
        answers.append(a)
        if a == DUNNO and d.ask(**blocked) == DUNNO:
            break
        time.sleep(0.02)
    took = time.monotonic() - t0
    checks.measure("kill -> answers from the new master's data", "%.2fs" % took)
    # then stale answers meanwhile, never the fallback
    checks.check("no fallback answer while the mirror was stale", FALLBACK_DEFER not in answers,
                 "%d fallback answers" % answers.count(FALLBACK_DEFER))
    checks.check("stale answers came from the old data first",
                 answers[0] == USER_UNKNOWN("alice@example.com"), repr(answers[0]))
    # and the old master's data the new one lacks is gone
    checks.check("alice valid and 192.0.2.77 unblocked (the new master's data)",
                 d.ask(**alice) == DUNNO and d.ask(**blocked) == DUNNO, "after %.1fs" % took)
    poll(lambda: d.metrics().get("backstop_mirror_stale_seconds") == 0, 10,
         what="the mirror exact again")
    mt = d.metrics()
    checks.check("stale answers counted", (mt.get("backstop_mirror_stale_answers_total") or 0) > 0,
                 str(mt.get("backstop_mirror_stale_answers_total")))
    checks.verdict()
