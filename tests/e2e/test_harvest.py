"""
tests/e2e/test_harvest.py - a directory harvest as the harvester sees it: SMTP
client -> real Postfix -> backstopd ([harvest] on) -> real Redis

    /usr/bin/python3 -m pytest tests/e2e/test_harvest.py --backstopd BUILD/backstopd \
        --backstopctl BUILD/backstopctl

One Postfix wired as etc/postfix/main.cf.snippet says (the settings of
test_postfix.py: smtpd_authorized_xclient_hosts = 127.0.0.0/8, so each SMTP
session plays another remote client with XCLIENT; the addresses are labels
inside the session, no packet goes to them), one backstopd with a low
threshold (HARVEST below: 5 unknown recipients a minute trip example.com,
greylisting retries pass after 3 s), one private redis-server.

test_harvest_as_seen_by_smtp_clients, in order:
    before   a harvester's probes get 250 for a valid user and 550 5.1.1 for
             an unknown one: the answer tells which users exist; a partner
             delivers to a valid user (its network becomes known)
    trip     probes of unknown users from 5 other networks, through Postfix;
             the attack field of example.com appears in Redis (the daemon
             counts after answering: polled), `backstopctl harvest` lists it
    during   a new client gets the same 450 4.7.1 for a valid and for an
             unknown user (the text after the address is the same); its
             retry after retry_after gets 250 and 550 5.1.1; the partner's
             network is known and keeps 250 / 550 5.1.1 at once
    end      `backstopctl harvest end example.com` (exit 0); once backstopd
             logs the end (its sweep runs once a second) a new client gets
             250 / 550 5.1.1 again
The terminal summary (e2e report) has the reply table.
"""
import json
import os
import subprocess
import time

import pytest

from e2e.test_postfix import Session, check, snippet_settings
from support.backstopd import Backstopd
from support.postfix import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postfix]

HARVEST = {"threshold": "5/1m", "duration": "10m", "client_limit": "10/1h",
           "new_clients": "greylist", "retry_after": "3s", "retry_window": "1h"}
RETRY_AFTER_S = 3
TRIP_TIMEOUT_S = 10


@pytest.fixture(scope="module")
def env(postfix, e2e_work, e2e_redis, e2e_db, backstopd_bin, backstopctl_bin, e2e_report):
    e2e_db.sadd("backstop:domains", "example.com")
    e2e_db.sadd("backstop:rcpt:example.com", "alice", "bob")
    bsd = Backstopd(backstopd_bin, os.path.join(e2e_work, "backstopd"), "unix:" + e2e_redis.sock,
                    policy={"ndr_default": "allow"}, harvest=dict(HARVEST))
    bsd.start()
    mta = postfix("harvest", snippet_settings(
        "main.cf.snippet", [("inet:127.0.0.1:10040", "inet:127.0.0.1:%d" % bsd.port)]))
    mta.start()
    e = type("Env", (), {})()
    e.mta, e.bsd, e.db, e.ctl, e.ini, e.rows = (mta, bsd, e2e_db, backstopctl_bin, bsd.conf_path,
                                                [])
    yield e
    e2e_report.append("e2e harvest: RCPT replies (client set with XCLIENT)")
    e2e_report.extend("  %-8s %-16s %-22s %s" % row for row in e.rows)
    bsd.stop()
    log = bsd.log()
    check(not any(m in log for m in ("Sanitizer", "runtime error:", "panic:")),
          "backstopd logged a sanitizer report or panic:\n" + log[-3000:])


def rcpts(env, phase, ip, *addrs):
    """One session as client ip, one RCPT per address: the replies, recorded."""
    s = Session(env.mta, ip)
    try:
        s.mail("probe@remote.test")
        replies = [s.rcpt(a) for a in addrs]
    finally:
        s.close()
    for a, r in zip(addrs, replies):
        env.rows.append((phase, ip, a, r.full()[:90]))
    return replies


def expect(reply, code, what):
    check(reply.full().startswith(code), "%s: want %s, got %r" % (what, code, reply))


def rejected_text(reply):
    """What follows "<rcpt>: Recipient address rejected:" (the same for every recipient)."""
    return reply.text.split("Recipient address rejected:", 1)[-1].strip()


def ctl(env, *args):
    p = subprocess.run([env.ctl, "-c", env.ini] + list(args), capture_output=True, text=True,
                       timeout=60)
    check("Sanitizer" not in p.stderr, "backstopctl %s: %s" % (args, p.stderr))
    return p


def test_harvest_as_seen_by_smtp_clients(env):
    # before: the answers tell a harvester which users exist
    valid, unknown = rcpts(env, "before", "198.51.100.1", "alice@example.com",
                           "nobody0@example.com")
    expect(valid, "250", "before, valid user")
    expect(unknown, "550 5.1.1", "before, unknown user")
    expect(rcpts(env, "before", "192.0.2.10", "bob@example.com")[0], "250", "partner, valid")
    check(not env.db.hexists("backstop:attack", "example.com"), "under attack before the probes")

    # trip: unknown recipients from 5 more networks, one each (under any per-client limit)
    for i in range(1, 6):
        expect(rcpts(env, "trip", "203.0.%d.7" % (100 + i), "nobody%d@example.com" % i)[0],
               "550 5.1.1", "probe %d before the trip" % i)
    check(wait_until(lambda: env.db.hexists("backstop:attack", "example.com"), TRIP_TIMEOUT_S,
                     0.1),
          "example.com not in backstop:attack %ds after 6 unknown recipients (threshold %s); "
          "backstop:harvest:example.com has %d members" % (
              TRIP_TIMEOUT_S, HARVEST["threshold"], env.db.zcard("backstop:harvest:example.com")))
    value = env.db.hget("backstop:attack", "example.com")
    check(value.startswith("since=") and ";until=" in value and ";unknown=" in value,
          "attack value: %r" % value)
    p = ctl(env, "harvest", "--json")
    check(p.returncode == 0, "backstopctl harvest: %d %s" % (p.returncode, p.stderr))
    doc = json.loads(p.stdout)
    rows = {a["domain"]: a for a in doc["attacks"]}
    check("example.com" in rows and rows["example.com"]["in_force"],
          "backstopctl harvest --json: %s" % p.stdout)
    check(rows["example.com"]["unknown"] >= 5, "unknown recipients in the window: %s" % p.stdout)

    # during: a new client cannot tell a valid from an unknown user
    new = "198.18.7.20"
    valid, unknown = rcpts(env, "during", new, "alice@example.com", "nobody9@example.com")
    expect(valid, "450 4.7.1", "during, new client, valid user")
    expect(unknown, "450 4.7.1", "during, new client, unknown user")
    check(rejected_text(valid) == rejected_text(unknown),
          "the two 450s differ: %r / %r" % (valid, unknown))
    # its retry after retry_after (from another address of the same /24) gets the real answer
    time.sleep(RETRY_AFTER_S + 1)
    valid, unknown = rcpts(env, "retry", "198.18.7.21", "alice@example.com",
                           "nobody9@example.com")
    expect(valid, "250", "retry after retry_after, valid user")
    expect(unknown, "550 5.1.1", "retry after retry_after, unknown user")
    # the partner's network delivered before: the normal answers at once
    valid, unknown = rcpts(env, "known", "192.0.2.11", "bob@example.com", "nobody10@example.com")
    expect(valid, "250", "known network, valid user")
    expect(unknown, "550 5.1.1", "known network, unknown user")

    # end by hand: once backstopd's once-a-second sweep has seen it (it logs the end), the
    # normal answers for a new client
    off = env.bsd.log_size()
    p = ctl(env, "harvest", "end", "example.com")
    check(p.returncode == 0 and "attack ended" in p.stdout,
          "harvest end: %d %s %s" % (p.returncode, p.stdout, p.stderr))
    check(not env.db.exists("backstop:harvest:example.com"), "harvest:example.com kept")
    env.bsd.wait_log(r"harvest attack on example\.com: no longer under attack \(ended by hand\)",
                     offset=off, timeout=TRIP_TIMEOUT_S)
    valid, unknown = rcpts(env, "ended", "198.18.9.20", "alice@example.com",
                           "nobody11@example.com")
    expect(valid, "250", "after harvest end, valid user")
    expect(unknown, "550 5.1.1", "after harvest end, unknown user")
    check(ctl(env, "harvest", "end", "example.com").returncode == 1,
          "harvest end of a domain not under attack: exit 1")
