"""Failing safe on a doubtful directory (issue 9, part 2): a protected
domain whose recipient set is missing or empty, or (with [policy]
max_directory_age) whose last successful sync is too old, never gets
550 5.1.1 for an unknown recipient, but a 4xx the sender retries; logged,
counted, and the directory's age and size are metrics."""
import re
import time
import urllib.request

from support.procs import free_port
from support.replies import DUNNO, PREFIX, USER_UNKNOWN, action
from support.wait import poll

EMPTY = action("DEFER_IF_PERMIT 4.7.1 Recipient directory of this domain is empty, try again later")
STALE = action("450 4.7.1 Recipient directory is out of date")
DAY = 86400


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as resp:
        return resp.read().decode()


def metric(body, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


def synced(redis, domain, ago):
    redis.client.hset(PREFIX + "sync", domain + ":ok", str(int(time.time()) - ago))


def test_domain_without_recipients_is_deferred_never_refused(redis, backstopd):
    # given a protected domain with no rcpt: set
    redis.client.sadd(PREFIX + "domains", "new.example")
    port = free_port()
    d = backstopd(redis, metrics={"listen": "inet:127.0.0.1:%d" % port})
    # when unknown users of it are asked for, then a 4xx, never 550
    with d.conn() as c:
        for rcpt in ("alice@new.example", "bob@new.example"):
            assert c.ask(recipient=rcpt, client_address="192.0.2.7") == EMPTY
        assert c.ask(recipient="x@new.example", sender="") == EMPTY, "a bounce too"
    d.wait_log(r"NOQUEUE: defer: RCPT from .*: 450 4\.7\.1 <alice@new\.example>: Recipient "
               r"address rejected: Recipient directory of this domain is empty.* "
               r"reason=directory_empty")
    # one rate-limited warning, naming the domain
    d.wait_log(r"warning: recipient directory of new\.example is empty")
    assert len(re.findall(r"directory of new\.example is empty", d.log())) == 1
    # counted: its own reason, in the metrics and the cluster-wide stats
    body = scrape(port)
    assert metric(body, 'backstop_requests_total{verdict="defer",reason="directory_empty"}') == 3
    assert metric(body, 'backstop_requests_total{verdict="reject",reason="unknown_user"}') == 0
    poll(lambda: redis.stats().get("directory_empty", 0) >= 3, 5, what="stats hash")
    # nothing written: the client was not counted as trying invalid recipients
    assert not redis.client.exists(PREFIX + "rate:192.0.2.7")
    # adding a user: unknown users are refused again, the user passes
    redis.client.sadd(PREFIX + "rcpt:new.example", "alice")
    with d.conn() as c:
        assert c.ask(recipient="alice@new.example") == DUNNO
        assert c.ask(recipient="bob@new.example") == USER_UNKNOWN("bob@new.example")


def test_catch_all_only_domain_is_not_empty(redis, backstopd):
    d = backstopd(redis)  # seed(): example.net holds only "*"
    assert d.ask(recipient="anyone@example.net") == DUNNO


def test_max_directory_age(redis, backstopd):
    port = free_port()
    d = backstopd(redis, policy={"max_directory_age": "1d"},
                  metrics={"listen": "inet:127.0.0.1:%d" % port})
    with d.conn() as c:
        # never synced (seed() writes no sync record): out of date, opt-in
        assert c.ask(recipient="nobody@example.com") == STALE
        synced(redis, "example.com", 2 * DAY)  # an old sync record
        assert c.ask(recipient="nobody@example.com") == STALE
        assert c.ask(recipient="user@example.com") == DUNNO, "known users still pass"
        synced(redis, "example.com", 3600)  # a fresh one
        assert c.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")
    d.wait_log(r"NOQUEUE: defer: RCPT from .*: 450 4\.7\.1 <nobody@example\.com>: Recipient "
               r"address rejected: Recipient directory is out of date.* reason=directory_stale")
    d.wait_log(r"warning: recipient directory of example\.com is out of date")
    body = scrape(port)
    assert metric(body, 'backstop_requests_total{verdict="defer",reason="directory_stale"}') == 2


def test_old_sync_record_without_max_directory_age(redis, backstopd):
    synced(redis, "example.com", 30 * DAY)
    d = backstopd(redis)  # max_directory_age off (the default)
    assert d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")


def test_directory_gauges(redis, backstopd):
    synced(redis, "example.com", 600)
    redis.client.sadd(PREFIX + "domains", "new.example")
    port = free_port()
    backstopd(redis, metrics={"listen": "inet:127.0.0.1:%d" % port})

    def gauges():
        body = scrape(port)
        return body if 'backstop_directory_size{domain="example.com"}' in body else None
    body = poll(gauges, 10, interval=0.2, what="directory gauges")
    age = metric(body, 'backstop_directory_age_seconds{domain="example.com"}')
    assert 600 <= age <= 700
    assert metric(body, 'backstop_directory_size{domain="example.com"}') == 3
    assert metric(body, 'backstop_directory_size{domain="example.net"}') == 1
    assert metric(body, 'backstop_directory_size{domain="new.example"}') == 0
    assert 'backstop_directory_age_seconds{domain="new.example"}' not in body, "never synced"
    assert "# TYPE backstop_directory_age_seconds gauge" in body
    assert metric(body, "backstop_directory_gauges_truncated_total") == 0
