"""Harvest detection (issue 11, part 1): unknown recipients of a protected
domain counted cluster-wide; past [harvest] threshold the domain is under
attack on every backstopd at once; new clients then get the same 450 for
valid and unknown users (greylisting: the normal answer on a retry after
retry_after), known clients keep the normal answers, the per-client limit
drops to client_limit; the attack ends after its duration (logged once
across the cluster) or by HDEL. new_clients = defer and normal, report
mode, threshold 0.

Short durations keep the file fast: threshold 30/1m, retry_after 2s,
duration 5s (renewed by every unknown recipient past the threshold)."""
import re
import time

from support.backstopd import DEFAULT_CONFIG
from support.procs import free_port
from support.replies import BLOCKED, DUNNO, PREFIX, USER_UNKNOWN, action, full_text
from support.wait import poll

GREY_TEXT = "450 4.7.1 Recipient verification delayed, try again later"
GREY = action(GREY_TEXT)
UNKNOWN = USER_UNKNOWN("x")  # the reply carries no address
HARVEST = {"threshold": "30/1m", "duration": "5s", "client_limit": "3/1h",
           "new_clients": "greylist", "retry_after": "2s", "retry_window": "1m",
           "known_client_age": "30d"}
ATTACK = PREFIX + "attack"


def harvest(**over):
    h = dict(HARVEST)
    h.update(over)
    return h


def pair(redis, backstopd, **sections):
    """Two backstopd instances on one Redis."""
    return (backstopd(redis, name="bs1", **sections), backstopd(redis, name="bs2", **sections))


def attacked(redis, domain="example.com"):
    return redis.client.hget(ATTACK, domain) is not None


def start_attack(redis, domain="example.com", seconds=60):
    """An attack recorded by hand, as a tripped threshold writes it."""
    now = int(time.time())
    redis.client.hset(ATTACK, domain, "since=%d;until=%d;unknown=31" % (now, now + seconds))


_fresh = [0]


def fresh_client():
    """A client address no test used: asking with it leaves no trace that
    matters (a valid recipient answered DUNNO makes its network known)."""
    _fresh[0] += 1
    return "10.%d.%d.1" % (100 + _fresh[0] // 250, _fresh[0] % 250)


def answers_new(d, want, rcpt="user@example.com"):
    """Poll until d gives a new client want (the attack table is refreshed
    once a second)."""
    poll(lambda: d.ask(client_address=fresh_client(), recipient=rcpt) == want, 3,
         what="%s to answer a new client %r" % (d.name, want))


def count_lines(daemons, pattern):
    return sum(len(re.findall(pattern, d.log())) for d in daemons)


def scrape(port):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as resp:
        return resp.read().decode()


def test_distributed_harvest(redis, backstopd):
    ports = (free_port(), free_port())
    d1 = backstopd(redis, name="bs1", harvest=harvest(),
                   metrics={"listen": "inet:127.0.0.1:%d" % ports[0]})
    d2 = backstopd(redis, name="bs2", harvest=harvest(),
                   metrics={"listen": "inet:127.0.0.1:%d" % ports[1]})
    daemons = (d1, d2)
    known = "198.18.0.5"
    # given a partner that delivered to a valid user before the attack
    assert d1.ask(client_address=known, recipient="user@example.com") == DUNNO
    poll(lambda: redis.client.zscore(PREFIX + "known:example.com", "198.18.0.0/24") is not None,
         5, what="known:example.com to hold the partner's network")

    # when a harvester spreads 3 unknown recipients each over 1,000 addresses,
    # interleaved with normal mail from other clients, over both instances
    answers = {DUNNO: 0, UNKNOWN: 0, GREY: 0}
    with d1.conn() as c1, d2.conn() as c2:
        conns = (c1, c2)
        for i in range(1000):
            client = "10.%d.%d.%d" % (i % 7 + 1, i // 250, i % 250 + 1)
            for k in range(3):
                got = conns[(i + k) % 2].ask(client_address=client,
                                             recipient="h%d-%d@example.com" % (i, k))
                assert got in (UNKNOWN, GREY), got
                answers[got] += 1
            if i % 10 == 0:
                got = conns[i % 2].ask(client_address="172.16.%d.9" % (i // 10),
                                       recipient="alice@example.com")
                assert got in (DUNNO, GREY), got
                answers[got] += 1
    # then the domain is under attack, in Redis and on both instances
    assert attacked(redis), "no attack recorded"
    value = redis.client.hget(ATTACK, "example.com").decode()
    assert re.match(r"^since=\d+;until=\d+;unknown=\d+$", value), value
    # 550 until the threshold (30) trips, and on the other instance until its
    # next refresh (a second at most); 450 from then on
    assert answers[UNKNOWN] >= 30 and answers[GREY] > 0, answers
    # the last batch's ZADD lands before its ZCARD runs the trim: bounded a round trip later
    poll(lambda: redis.client.zcard(PREFIX + "harvest:example.com") <= 31, 5,
         what="harvest:example.com bounded at limit+1")
    for d in daemons:
        answers_new(d, GREY)
    for p in ports:
        assert 'backstop_harvest_active{domain="example.com"} 1' in scrape(p)
    assert count_lines(daemons, r"harvest attack on example\.com started: \d+ unknown recipients "
                                r"within 1m, top client networks: 10\.") == 1
    assert int(redis.client.hget(PREFIX + "stats", "harvest_started")) == 1

    # new clients: the same bytes for a valid and an unknown user
    new = "10.200.0.1"
    assert d1.ask(client_address=new, recipient="alice@example.com") == GREY
    assert d2.ask(client_address=new, recipient="nosuch@example.com") == GREY
    d1.wait_log(r"defer: RCPT from [^ ]*\[10\.200\.0\.1\]: 450 4\.7\.1 <alice@example\.com>: "
                r"Recipient address rejected: Recipient verification delayed, try again later; "
                r".* reason=harvest_greylist")
    # known clients keep the normal answers
    assert d2.ask(client_address="198.18.0.77", recipient="user@example.com") == DUNNO
    assert d1.ask(client_address="198.18.0.77", recipient="nosuch@example.com") == UNKNOWN
    # too early a retry: still 450; after retry_after: the normal answer
    assert d2.ask(client_address=new, recipient="alice@example.com") == GREY
    time.sleep(2.2)
    assert d2.ask(client_address=new, recipient="alice@example.com") == DUNNO
    assert d1.ask(client_address=new, recipient="nosuch@example.com") == UNKNOWN
    # the lowered client limit (3/1h) blocks a prober after 3 unknown recipients
    prober = "10.201.0.1"
    for k in range(4):
        assert d1.ask(client_address=prober, recipient="p%d@example.com" % k) == GREY
    poll(lambda: redis.client.exists(PREFIX + "block:" + prober), 5, what="the prober's block")
    assert d2.ask(client_address=prober, recipient="user@example.com") == BLOCKED

    # the attack ends after its duration: logged once across both instances
    poll(lambda: not attacked(redis), 9, interval=0.2, what="the attack to end")
    for d in daemons:
        answers_new(d, DUNNO)
    time.sleep(1.2)  # another sweep on each: it must not log the end again
    assert count_lines(daemons, r"harvest attack on example\.com ended after \d+s") == 1
    assert count_lines(daemons, r"ended by hand") == 0
    assert int(redis.client.hget(PREFIX + "stats", "harvest_ended")) == 1
    assert int(redis.client.hget(PREFIX + "stats", "harvest_greylist")) >= answers[GREY]
    for p in ports:
        assert "backstop_harvest_active{" not in scrape(p)


def test_threshold_trips_and_hdel_ends_it(redis, backstopd):
    d1, d2 = pair(redis, backstopd, harvest=harvest(duration="1h"))
    for i in range(31):
        assert (d1, d2)[i % 2].ask(client_address="10.1.%d.1" % i,
                                   recipient="nobody%d@example.com" % i) == UNKNOWN
    poll(lambda: attacked(redis), 5, what="the threshold to trip")
    for d in (d1, d2):
        answers_new(d, GREY)
    # when an admin ends it by hand, then both answer normally at once
    redis.client.hdel(ATTACK, "example.com")
    for d in (d1, d2):
        answers_new(d, DUNNO)
        d.wait_log(r"harvest attack on example\.com: no longer under attack \(ended by hand\)")
    assert count_lines((d1, d2), r"ended after") == 0


def test_defer_mode(redis, backstopd):
    d1, d2 = pair(redis, backstopd, harvest=harvest(new_clients="defer"))
    assert d1.ask(client_address="198.18.1.5", recipient="user@example.com") == DUNNO
    poll(lambda: redis.client.zcard(PREFIX + "known:example.com") == 1, 5, what="known client")
    start_attack(redis)
    answers_new(d2, GREY)
    time.sleep(1.1)  # both instances have the attack
    assert d2.ask(client_address="10.3.0.1", recipient="user@example.com") == GREY
    d2.wait_log(r"\[10\.3\.0\.1\]: 450 4\.7\.1 .* reason=harvest_defer")
    time.sleep(2.2)  # no greylisting: a retry is still deferred
    assert d1.ask(client_address="10.3.0.1", recipient="user@example.com") == GREY
    assert d1.ask(client_address="10.3.0.1", recipient="nobody@example.com") == GREY
    assert not redis.client.keys(PREFIX + "grey:*"), "defer mode keeps no first sight"
    # the known client keeps DUNNO and 550
    assert d2.ask(client_address="198.18.1.6", recipient="user@example.com") == DUNNO
    assert d2.ask(client_address="198.18.1.6", recipient="nobody@example.com") == UNKNOWN
    # an unknown recipient still counts towards the domain's threshold
    poll(lambda: redis.client.zcard(PREFIX + "harvest:example.com") >= 1, 5, what="counted")


def test_normal_mode_lowers_the_client_limit(redis, backstopd):
    port = free_port()
    d = backstopd(redis, harvest=harvest(new_clients="normal"),
                  metrics={"listen": "inet:127.0.0.1:%d" % port})
    start_attack(redis)
    prober = "10.4.0.1"
    # the table is refreshed once a second
    poll(lambda: 'backstop_harvest_active{domain="example.com"} 1' in scrape(port), 5,
         what="the attack in the local table")
    assert d.ask(client_address="10.4.1.1", recipient="user@example.com") == DUNNO
    for k in range(4):
        assert d.ask(client_address=prober, recipient="p%d@example.com" % k) == UNKNOWN
    poll(lambda: redis.client.exists(PREFIX + "block:" + prober), 5, what="blocked after 3")
    assert 3500 <= redis.client.ttl(PREFIX + "block:" + prober) <= 3600
    assert d.ask(client_address=prober, recipient="user@example.com") == BLOCKED


def test_a_probe_elsewhere_does_not_reset_the_lowered_client_limit(redis, backstopd):
    # given example.com under attack (client_limit 3/1h) and a second
    # protected domain not under attack, whose count window is 2 s
    redis.client.sadd(PREFIX + "domains", "other.test")
    redis.client.sadd(PREFIX + "rcpt:other.test", "someone")
    port = free_port()
    d = backstopd(redis, harvest=harvest(new_clients="normal", duration="1h"),
                  ratelimit={"invalid_recipients": "20/2s"},
                  metrics={"listen": "inet:127.0.0.1:%d" % port})
    start_attack(redis, seconds=3600)
    poll(lambda: 'backstop_harvest_active{domain="example.com"} 1' in scrape(port), 5,
         what="the attack in the local table")
    prober = "10.5.0.1"
    rate = PREFIX + "rate:" + prober
    # when a harvester probes example.com twice, waits past the short
    # window, probes other.test once (counted with the 2 s window), then
    # example.com once more
    for k in range(2):
        assert d.ask(client_address=prober, recipient="a%d@example.com" % k) == UNKNOWN
    poll(lambda: redis.client.zcard(rate) == 2, 5, what="two counted")
    time.sleep(2.5)
    assert d.ask(client_address=prober, recipient="o1@other.test") == UNKNOWN
    poll(lambda: redis.client.zcard(rate) == 3, 5, what="the other domain's probe counted")
    # then the first two were kept (the key lives for the longest window)...
    assert redis.client.pttl(rate) > 3_000_000
    assert d.ask(client_address=prober, recipient="a2@example.com") == UNKNOWN
    # ...and the 4th unknown recipient within the hour (3 of them to the
    # attacked domain) blocks it
    poll(lambda: redis.client.exists(PREFIX + "block:" + prober), 5, what="blocked after 3")
    assert d.ask(client_address=prober, recipient="user@example.com") == BLOCKED


def test_an_attacked_domain_with_an_empty_directory_counts_nobody(redis, backstopd):
    # given empty.test protected but its directory empty (a failed sync),
    # and under attack
    redis.client.sadd(PREFIX + "domains", "empty.test")
    d = backstopd(redis, harvest=harvest(duration="1h"))
    start_attack(redis, "empty.test", seconds=3600)
    client = "10.5.2.1"
    # when a new client (a real MTA) sends to 4 of its real users
    poll(lambda: d.ask(client_address=client, recipient="u0@empty.test") == GREY, 5,
         what="the attack in the local table")
    for k in range(1, 4):
        assert d.ask(client_address=client, recipient="u%d@empty.test" % k) == GREY
    time.sleep(0.5)
    # then none of them counts (the directory cannot say they are unknown):
    # no rate, no block, no harvest count, and the client's mail to example.com flows
    assert not redis.client.exists(PREFIX + "rate:" + client)
    assert not redis.client.exists(PREFIX + "block:" + client)
    assert not redis.client.exists(PREFIX + "harvest:empty.test")
    assert d.ask(client_address=client, recipient="user@example.com") == DUNNO


def test_the_short_window_still_counts_only_its_own_span(redis, backstopd):
    # given harvest on (rate members kept 1 h for client_limit) and no attack
    d = backstopd(redis, harvest=harvest(), ratelimit={"invalid_recipients": "3/2s"})
    prober = "10.5.1.1"
    # when 3 unknowns, a pause past the 2 s window, then 3 more
    for k in range(3):
        assert d.ask(client_address=prober, recipient="b%d@example.com" % k) == UNKNOWN
    poll(lambda: redis.client.zcard(PREFIX + "rate:" + prober) == 3, 5, what="counted")
    time.sleep(2.5)
    for k in range(3, 6):
        assert d.ask(client_address=prober, recipient="b%d@example.com" % k) == UNKNOWN
    poll(lambda: redis.client.zcard(PREFIX + "rate:" + prober) == 6, 5, what="counted")
    time.sleep(0.5)
    # then the old members do not count against the 2 s limit: no block
    assert not redis.client.exists(PREFIX + "block:" + prober)
    assert d.ask(client_address=prober, recipient="user@example.com") == DUNNO


def test_report_mode(redis, backstopd):
    d = backstopd(redis, harvest=harvest(), policy={"mode": "report"})
    start_attack(redis)
    rcpt = "user@example.com"
    warn = action("WARN would defer: " + full_text(GREY_TEXT, rcpt))
    answers_new(d, warn, rcpt)
    assert d.ask(client_address="10.5.0.1", recipient=rcpt) == warn
    d.wait_log(r"reject_warning: RCPT from [^ ]*\[10\.5\.0\.1\]: .*reason=harvest_greylist")
    got = d.ask(client_address="10.5.0.2", recipient="nobody@example.com")
    assert got == action("WARN would defer: " + full_text(GREY_TEXT, "nobody@example.com"))
    poll(lambda: redis.client.zcard(PREFIX + "harvest:example.com") >= 1, 5,
         what="report mode still counts")


def test_unreadable_attack_value_counts_as_under_attack(redis, backstopd):
    d = backstopd(redis, harvest=harvest())
    redis.client.hset(ATTACK, "example.com", "garbage")
    answers_new(d, GREY)
    d.wait_log(r"attack entry of example\.com has no readable until")


def test_hand_written_until_read_as_the_sweep_reads_it(redis, backstopd):
    """The daemon takes the until the sweep script read in a value (the first
    'until=' and digits, anywhere), so its table and the sweep never
    disagree: a future one is an attack (no 'unreadable' warning), a past
    one is ended by the sweep and the domain answers as before."""
    d = backstopd(redis, harvest=harvest())
    now = int(time.time())
    redis.client.hset(ATTACK, "example.com", "by hand, until=%d" % (now + 600))
    answers_new(d, GREY)
    assert "no readable until" not in d.log()
    redis.client.hset(ATTACK, "example.com", "by hand, until=%d" % (now - 600))
    answers_new(d, DUNNO)
    assert not attacked(redis), "the sweep deleted the ended attack"
    d.wait_log(r"harvest attack on example\.com ended after")
    assert "no readable until" not in d.log()


def test_threshold_zero_disables(redis, backstopd):
    d = backstopd(redis, harvest=harvest(threshold="0"))
    with d.conn() as c:
        for i in range(40):
            assert c.ask(client_address="10.7.%d.1" % i, recipient="n%d@example.com" % i) == UNKNOWN
        assert c.ask(client_address="10.7.99.1", recipient="user@example.com") == DUNNO
    start_attack(redis)  # even a recorded attack changes nothing
    time.sleep(1.3)
    assert d.ask(client_address="10.7.100.1", recipient="user@example.com") == DUNNO
    assert d.ask(client_address="10.7.100.1", recipient="n@example.com") == UNKNOWN
    assert not redis.client.exists(PREFIX + "harvest:example.com")
    assert not redis.client.exists(PREFIX + "known:example.com")
    assert redis.client.hget(ATTACK, "example.com") is not None, "not swept either"


def commandstats(redis):
    return {k: v["calls"] for k, v in redis.client.info("commandstats").items()}


def test_redis_clock_is_read_only_while_counting(redis, backstopd):
    """Given neither rate tracking nor harvest counting, when backstopd runs
    for 2.5 s, then it sends no TIME (Redis's clock only scores counts);
    given either one on, it reads it once a second."""
    d = backstopd(redis, name="noclock", ratelimit={"invalid_recipients": "0"},
                  harvest=harvest(threshold="0"))
    assert d.ask(client_address="192.0.2.40", recipient="user@example.com") == DUNNO
    before = commandstats(redis).get("cmdstat_time", 0)
    time.sleep(2.5)
    assert commandstats(redis).get("cmdstat_time", 0) == before, "TIME without counting"
    assert d.terminate() == 0
    for name, sections in (("rateclock", {"harvest": harvest(threshold="0")}),
                           ("harvestclock", {"ratelimit": {"invalid_recipients": "0"}})):
        d = backstopd(redis, name=name, **sections)
        before = commandstats(redis).get("cmdstat_time", 0)
        poll(lambda: commandstats(redis).get("cmdstat_time", 0) >= before + 2, 5,
             what="%s to read Redis's clock once a second" % name)
        assert d.terminate() == 0


def test_common_path_redis_commands(redis, backstopd, record):
    """What harvest detection adds to the common path (valid recipients of a
    domain not under attack): only the known-client write, once per domain
    and network, and the sweep once a second; figures by INFO commandstats,
    threshold 0 (off) against the default 200/10m in the same run."""
    n, nets = 600, 6
    per = {}
    for threshold in ("0", "200/10m"):
        d = backstopd(redis, name="cp%s" % threshold[0], harvest=harvest(threshold=threshold))
        with d.conn() as c:
            for i in range(60):  # warm up (the mirror loads)
                c.ask(client_address="192.0.2.%d" % (i % 50 + 1), recipient="user@example.com")
            time.sleep(1.2)
            before, t0 = commandstats(redis), time.monotonic()
            for i in range(n):
                assert c.ask(client_address="10.%d.0.%d" % (i % nets + 1, i % 7 + 1),
                             recipient=("user@example.com", "alice@example.com")[i % 2]) == DUNNO
            elapsed = time.monotonic() - t0
            after = commandstats(redis)
        assert d.terminate() == 0
        delta = {k[len("cmdstat_"):]: after.get(k, 0) - before.get(k, 0) for k in after}
        per[threshold] = (delta, elapsed)
        record("harvest threshold %s: %d valid recipients in %.2fs, Redis commands per request %.3f "
               "(%s)" % (threshold, n, elapsed, sum(delta.values()) / n,
                         " ".join("%s=%d" % kv for kv in sorted(delta.items()) if kv[1])))
    (off, _), (on, elapsed) = per["0"], per["200/10m"]
    scripts = on.get("evalsha", 0) + on.get("eval", 0) - off.get("evalsha", 0) - off.get("eval", 0)
    # one known:<domain> write per network, one sweep a second (and a margin of 2)
    assert scripts <= nets + int(elapsed) + 3, (scripts, on, off)
    assert redis.client.zcard(PREFIX + "known:example.com") == nets + 1  # and the warm-up's


def test_a_new_trip_ends_an_expired_attack_once(redis, backstopd):
    # given an attack whose until has passed (the sweep deletes it within a
    # second, or the next trip replaces it: either way it ends once)
    d = backstopd(redis, harvest=harvest())
    now = int(time.time())
    redis.client.hset(ATTACK, "example.com", "since=%d;until=%d;unknown=31" % (now - 100, now - 1))
    with d.conn() as c:
        for i in range(31):
            c.ask(client_address="10.8.%d.1" % i, recipient="n%d@example.com" % i)
    poll(lambda: "harvest attack on example.com started" in d.log(), 5, what="the new start")
    d.wait_log(r"harvest attack on example\.com ended after \d+m?\d*s?")
    time.sleep(1.2)
    assert count_lines([d], r"harvest attack on example\.com ended after") == 1
    assert count_lines([d], r"harvest attack on example\.com started") == 1
    stats = redis.client.hgetall(PREFIX + "stats")
    assert int(stats[b"harvest_ended"]) == 1 and int(stats[b"harvest_started"]) == 1, stats
    value = redis.client.hget(ATTACK, "example.com").decode()
    assert int(re.search(r"since=(\d+)", value).group(1)) >= now, "a new since: " + value


def slowlog(redis):
    """The slow log's entries as redis-py cannot give them: raw, with each
    command's arguments as sent (redis-py joins them with spaces)."""
    import redis as redispy
    raw = redispy.Redis(connection_pool=redis.client.connection_pool)
    raw.set_response_callback("SLOWLOG GET", lambda r, **kw: r)
    return raw.execute_command("SLOWLOG GET", 100000)


def script_calls(redis, since):
    """The EVALSHA and EVAL calls in the slow log (every command is logged
    with slowlog-log-slower-than 0) after entry id since, as (command, the
    kind of its first key): "block" the block script, "harvest" the harvest
    script, "attack" the sweep."""
    out = []
    for e in slowlog(redis):
        cmd = e[3][0].decode().upper()
        if e[0] > since and cmd in ("EVALSHA", "EVAL"):
            out.append((cmd, e[3][3].decode()[len(PREFIX):].split(":")[0]))
    return out


def command_calls(redis, since, name, key=None):
    """How many name commands (on key, when given) the slow log has after
    entry id since."""
    return sum(1 for e in slowlog(redis)
               if e[0] > since and e[3][0].decode().upper() == name
               and (key is None or e[3][1].decode() == PREFIX + key))


def mirror_answers(redis, c):
    """1 when a valid recipient's lookup sent nothing to Redis (the mirror
    answered it: loaded)."""
    since = slowlog_last(redis)
    assert c.ask(client_address="192.0.2.30", recipient="user@example.com") == DUNNO
    return command_calls(redis, since, "SMISMEMBER", "rcpt:example.com") == 0


def slowlog_last(redis):
    entries = slowlog(redis)
    return entries[0][0] if entries else -1


def test_unknown_recipients_are_counted_with_plain_commands(redis, backstopd, record):
    """Given the rate limit (3/1m) and the harvest threshold (11/1m) both on,
    when 3 clients send 4 unknown recipients each (12), then they are
    counted with plain commands (an SMISMEMBER exempt, then ZADD and ZCARD
    on rate:<client> and harvest:<domain>): no script runs but where a count
    passed its limit (one block script per client, the harvest script from
    the 12th on), each client is blocked on its 4th and the domain's attack
    starts on the 12th; after SCRIPT FLUSH a block script is sent again by
    EVAL (NOSCRIPT recovery)."""
    d = backstopd(redis, ratelimit={"invalid_recipients": "3/1m", "block_time": "1h"},
                  harvest=harvest(threshold="11/1m"))
    clients = ("192.0.2.31", "192.0.2.32", "192.0.2.33")
    mirror_on = DEFAULT_CONFIG["redis"].get("mirror", "yes") == "yes"
    redis.client.config_set("slowlog-max-len", "100000")
    redis.client.config_set("slowlog-log-slower-than", "0")
    try:
        with d.conn() as c:
            assert c.ask(client_address="192.0.2.30", recipient="user@example.com") == DUNNO
            if mirror_on:
                poll(lambda: mirror_answers(redis, c), 10, what="the mirror to answer")
            since, before = slowlog_last(redis), redis.client.info("commandstats")
            for n, client in enumerate(clients):
                for i in range(4):
                    rcpt = "u%d-%d@example.com" % (n, i)
                    assert c.ask(client_address=client, recipient=rcpt) == USER_UNKNOWN(rcpt)
                # the count is written after the answer: the block before the next client
                poll(lambda: redis.client.exists(PREFIX + "block:" + client), 5,
                     what="block:%s after its 4th unknown recipient (limit 3)" % client)
            poll(lambda: attacked(redis), 5, what="the attack on the 12th (threshold 11)")
            after = redis.client.info("commandstats")
            calls = script_calls(redis, since)
            zadds = command_calls(redis, since, "ZADD")
            exempt = command_calls(redis, since, "SMISMEMBER", "exempt")
            # when the scripts are gone, the next one is sent by EVAL
            redis.client.script_flush()
            since = slowlog_last(redis)
            for i in range(4):
                rcpt = "x%d@example.com" % i
                assert c.ask(client_address="192.0.2.34", recipient=rcpt) == USER_UNKNOWN(rcpt)
            poll(lambda: redis.client.exists(PREFIX + "block:192.0.2.34"), 5,
                 what="the block after NOSCRIPT")
            flushed = script_calls(redis, since)
    finally:
        redis.client.config_set("slowlog-log-slower-than", "10000")
    evalsha = (after["cmdstat_evalsha"]["calls"] - before["cmdstat_evalsha"]["calls"])
    record("12 unknown recipients: %d EVALSHA (%s), %d ZADD, %d SMISMEMBER exempt"
           % (evalsha, ", ".join(sorted(set("%d %s" % (calls.count(k), k[1]) for k in calls))),
              zadds, exempt))
    assert calls.count(("EVALSHA", "block")) == 3, calls
    assert calls.count(("EVALSHA", "harvest")) == 1, calls  # the 12th only
    # besides: the sweep (attack), and the warm-up's known-client write (known)
    assert len([k for k in calls if k[1] not in ("attack", "known")]) == 4, calls
    assert 2 <= zadds <= 24, zadds  # a batch adds a key's unknown recipients in one ZADD
    # the exempt SET is asked for each batch, unless the mirror answers for it
    if mirror_on:
        assert exempt == 0, exempt
    else:
        assert 1 <= exempt <= 12, exempt
    assert ("EVALSHA", "block") in flushed and ("EVAL", "block") in flushed, flushed
    assert int(redis.client.hget(PREFIX + "stats", "clients_blocked")) == 4
    assert int(redis.client.hget(PREFIX + "stats", "harvest_started")) == 1
    assert redis.client.zcard(PREFIX + "harvest:example.com") == 12
    # members "<network> <tag>:<seq>" (README's key table), one per recipient
    members = [m.decode() for m in redis.client.zrange(PREFIX + "harvest:example.com", 0, -1)]
    assert all(re.fullmatch(r"192\.0\.2\.0/24 [0-9a-f]{8}:\d+", m) for m in members), members
    assert len({m.split(":")[-1] for m in members}) == 12, members
    for client in clients:
        d.wait_log(r"client %s blocked for 3600s: 4 invalid recipients within 60s \(limit 3\)"
                   % re.escape(client))
    d.wait_log(r"harvest attack on example\.com started: 12 unknown recipients within 1m, "
               r"top client networks: 192\.0\.2\.0/24 \(12\)")
    assert d.terminate() == 0
    assert re.search(r"redis_noscript=\d", d.log()), "NOSCRIPT counted"


def test_a_failing_part_leaves_the_other(redis, backstopd):
    """The two counts of an unknown recipient fail alone: given
    harvest:example.com of the wrong type, a client is still blocked at its
    limit; given the client's rate key of the wrong type, the domain's
    harvest count still goes on; each error is warned."""
    d = backstopd(redis, ratelimit={"invalid_recipients": "2/1m", "block_time": "1h"},
                  harvest=harvest())
    redis.client.set(PREFIX + "harvest:example.com", "not a zset")
    with d.conn() as c:
        for i in range(3):
            assert c.ask(client_address="192.0.2.41", recipient="a%d@example.com" % i) == \
                USER_UNKNOWN("a%d@example.com" % i)
        poll(lambda: redis.client.exists(PREFIX + "block:192.0.2.41"), 5,
             what="the block despite the harvest part's error")
        d.wait_log(r"client 192\.0\.2\.41 blocked for 3600s: 3 invalid recipients")
        d.wait_log(r"redis: counting unknown recipients: .*WRONGTYPE")
        redis.client.delete(PREFIX + "harvest:example.com")
        redis.client.set(PREFIX + "rate:192.0.2.42", "not a zset")
        assert c.ask(client_address="192.0.2.42", recipient="b@example.com") == \
            USER_UNKNOWN("b@example.com")
        poll(lambda: redis.client.zcard(PREFIX + "harvest:example.com") == 1, 5,
             what="the harvest count despite the rate part's error")
    assert redis.client.get(PREFIX + "rate:192.0.2.42") == b"not a zset"
