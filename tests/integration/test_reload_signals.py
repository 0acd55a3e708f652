"""SIGHUP reloads (good, bad, missing file, another Redis, another
prefix), SIGTERM (idle, in flight, Redis frozen), and `backstopd -t`."""
import os
import re
import signal
import subprocess
import time

import pytest

from support.backstopd import DEFAULT_CONFIG, render_config, seed
from support.policy import request
from support.procs import free_port
from support.replies import (DUNNO, FALLBACK_DEFER, NDR_DENY, NDR_DENY_TEXT, PREFIX,
                             USER_UNKNOWN, USER_UNKNOWN_TEXT, WARN)
from support.wait import poll

UNKNOWN = USER_UNKNOWN("nobody@example.com")
WARN_UNKNOWN = WARN("reject", USER_UNKNOWN_TEXT, "nobody@example.com")


def test_sighup_redis_change(redis_factory, backstopd):
    r1, r2 = redis_factory("redis1"), redis_factory("redis2")
    seed(r1.client)
    seed(r2.client)
    r2.client.sadd(PREFIX + "rcpt:example.com", "onlyin2")
    d = backstopd(r1)
    with d.conn() as c:
        assert c.ask(recipient="onlyin2@example.com") == USER_UNKNOWN("onlyin2@example.com")
        d.write_config(redis={"server": r2.endpoint})
        d.sighup()
        poll(lambda: c.ask(recipient="onlyin2@example.com") == DUNNO, 10, interval=0.1,
             what="answers from redis2 after SIGHUP")
        # the prefix changes on reload too
        r2.client.sadd("other:domains", "example.com")
        r2.client.sadd("other:rcpt:example.com", "onlyprefix")
        d.write_config(redis={"prefix": "other:"})
        d.sighup()
        poll(lambda: c.ask(recipient="onlyprefix@example.com") == DUNNO, 10, interval=0.1,
             what="answers under the new prefix")


def test_sighup_reload(redis, backstopd):
    d = backstopd(redis, policy={"mode": "enforce", "ndr_default": "deny"})
    with d.conn() as c:
        assert c.ask(recipient="nobody@example.com") == UNKNOWN, "enforce"
        d.write_config(policy={"mode": "report"})
        d.sighup()
        want = WARN("reject", NDR_DENY_TEXT, "x@bounce.example")
        poll(lambda: c.ask(sender="", recipient="x@bounce.example") == want, 5,
             what="report mode on the live connection after SIGHUP")
        assert c.ask(recipient="nobody@example.com") == WARN_UNKNOWN, "report mode, same connection"
        # a broken config is logged and the running one kept
        off = d.log_size()
        with open(d.conf_path, "a") as f:
            f.write("[policy]\nno_such_key = 1\n")
        d.sighup()
        d.wait_log(re.escape(d.conf_path) + r":\d+", offset=off, timeout=5)
        d.assert_alive()
        assert c.ask(recipient="nobody@example.com") == WARN_UNKNOWN, "old config kept, same conn"
        assert d.ask(recipient="nobody@example.com") == WARN_UNKNOWN, "old config kept, new conn"
        # a good config again: back to enforce
        d.write_config(policy={"mode": "enforce"})
        d.sighup()
        poll(lambda: c.ask(sender="", recipient="x@bounce.example") == NDR_DENY("x@bounce.example"),
             5, what="enforce again after a good reload")
    assert d.ask(recipient="user@example.com") == DUNNO, "new connection after reloads"


def test_sighup_bad_duration(redis, backstopd):
    d = backstopd(redis)
    off = d.log_size()
    with open(d.conf_path, "w") as f:
        f.write("[server]\nlisten = inet:127.0.0.1:%d\nidle_timeout = 5 fortnights\n" % d.port)
    with d.conn() as c:
        d.sighup()
        d.wait_log(re.escape(d.conf_path) + r":3", offset=off, timeout=5)
        assert c.ask(recipient="nobody@example.com") == UNKNOWN, "still answering after a bad reload"
    os.remove(d.conf_path)
    off = d.log_size()
    d.sighup()
    d.wait_log(r"(?i)reload", offset=off, timeout=5)
    assert d.ask(recipient="user@example.com") == DUNNO, "still answering, config file missing"


def exits_within(d, record, limit, t0=None):
    """SIGTERM (unless sent at t0): exit status 0 within limit s, recorded."""
    if t0 is None:
        t0 = time.monotonic()
        d.expected_exit = True
        d.signal(signal.SIGTERM)
    assert d.wait_exit(5) == 0, "exit status after SIGTERM"
    dt = time.monotonic() - t0
    record("exited %.2fs after SIGTERM" % dt)
    assert dt < limit


def test_sigterm_exit(redis, backstopd, record):
    d = backstopd(redis)
    with d.conn() as idle:
        assert idle.ask(recipient="user@example.com") == DUNNO
        exits_within(d, record, 3.0)  # with an idle connection open
        idle.expect_closed(2.0, "idle connection at shutdown")


def test_sigterm_in_flight(redis, backstopd, record):
    d = backstopd(redis, redis={"timeout": "1s"})
    with d.conn() as c:
        assert c.ask(recipient="user@example.com") == DUNNO
        redis.freeze()
        try:
            c.send(request(recipient="nobody@example.com"))
            time.sleep(0.3)  # nothing to poll: let the daemon read the request
            t0 = time.monotonic()
            d.expected_exit = True
            d.signal(signal.SIGTERM)
            assert c.read_reply(timeout=5) == FALLBACK_DEFER, "in-flight request answered at shutdown"
            exits_within(d, record, 3.5, t0)  # [redis] timeout 1s
            c.expect_closed(2.0, "connection after the in-flight answer")
        finally:
            redis.thaw()


@pytest.mark.parametrize("ask_first", [False, True], ids=["redis_frozen_idle", "after_timeout"])
def test_sigterm_with_frozen_redis(redis, backstopd, record, ask_first):
    d = backstopd(redis)
    with d.conn() as c:
        assert c.ask(recipient="user@example.com") == DUNNO
        redis.freeze()
        try:
            if ask_first:  # answered by the timeout; its Redis query is still pending
                assert c.ask(recipient="nobody@example.com") == FALLBACK_DEFER
            exits_within(d, record, 3.0)
        finally:
            redis.thaw()


BAD_CONFIGS = [
    # (id, text, the line reported)
    ("unknown key", "[server]\nmax_connections = 10\n[policy]\nno_such_key = 1\n", 4),
    ("bad duration", "# comment\n[server]\n\nidle_timeout = 5 fortnights\n", 4),
    ("bad duration unit", "[redis]\ntimeout = 300us\n", 2),
    ("bad rate", "[ratelimit]\ninvalid_recipients = lots\n", 2),
    ("unknown section", "[nonsense]\nx = 1\n", 1),
    ("bad mode", "[policy]\nmode = maybe\n", 2),
    ("bad cidr", "[ratelimit]\nexempt = 300.1.1.1/8\n", 2),
    ("relative log socket", "[log]\nlevel = info\nsocket = dev/log\n", 3),
    ("log socket too long", "[log]\nsocket = /%s\n" % ("s" * 107), 2),
]


def run_daemon(binary, *args):
    return subprocess.run([binary] + list(args), capture_output=True, timeout=10)


def test_config_check_good(backstopd_bin, tmp_path):
    good = tmp_path / "good.ini"
    good.write_text(render_config({**DEFAULT_CONFIG,
                                   "server": {"listen": "inet:127.0.0.1:%d" % free_port()},
                                   "redis": {"server": "unix:/nonexistent/redis.sock",
                                             "prefix": PREFIX}}))
    p = run_daemon(backstopd_bin, "-t", "-c", str(good))
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("text,line", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_config_check_bad(backstopd_bin, tmp_path, text, line):
    path = tmp_path / "bad.ini"
    path.write_text(text)
    p = run_daemon(backstopd_bin, "-t", "-c", str(path))
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, err
    assert re.search(r"(^|\n)%s:%d: " % (re.escape(str(path)), line), err)


def test_config_check_missing_file_and_version(backstopd_bin, tmp_path):
    assert run_daemon(backstopd_bin, "-t", "-c", str(tmp_path / "missing.ini")).returncode == 1
    p = run_daemon(backstopd_bin, "-V")
    assert p.returncode == 0
    assert re.search(r"backstopd \d+\.\d+", p.stdout.decode(errors="replace"))


def test_restart_only_settings_compared_with_what_runs(redis, backstopd):
    """A reload compares [redis] max_pending and mirror with the values in
    use, not with the last file read: a file changed back to the running
    value is no change, and one still differing is reported at every reload."""
    d = backstopd(redis)
    d.write_config(redis={"max_pending": "10", "mirror": "no"})
    log = d.reload()
    assert "configuration reloaded" in log, log
    assert "[redis] max_pending takes effect at restart" in log, log
    assert "[redis] mirror takes effect at restart" in log, log
    log = d.reload()  # the file unchanged: mirror = no still is not what runs
    assert "[redis] mirror takes effect at restart" in log, log
    assert "[redis] max_pending takes effect at restart" in log, log
    d.write_config(redis={"max_pending": "4096", "mirror": "yes"})  # what runs
    log = d.reload()
    assert "configuration reloaded" in log, log
    assert "takes effect at restart" not in log, log
    # a metrics endpoint added, then taken away again: its count is part of it
    d.write_config(metrics={"listen": "inet:127.0.0.1:%d" % free_port()})
    assert "[metrics] listen takes effect at restart" in d.reload()
    d.sections.pop("metrics")
    d.write_config()
    log = d.reload()
    assert "configuration reloaded" in log and "takes effect at restart" not in log, log
    with d.conn() as c:
        assert c.ask(recipient="nobody@example.com") == UNKNOWN


@pytest.mark.parametrize("text", ["", "[server]\n# cut short\n"], ids=["empty", "no_settings"])
def test_a_file_without_settings_is_refused(redis, backstopd, backstopd_bin, test_dir, text):
    """An empty or cut-short file is refused at a reload (the listeners and
    Redis stay: the defaults would move them) and at start-up."""
    d = backstopd(redis)
    with open(d.conf_path, "w") as f:
        f.write(text)
    log = d.reload()
    assert "no settings in the file" in log and "keeping the running configuration" in log, log
    assert "no longer listening" not in log and "reconnecting" not in log, log
    with d.conn() as c:
        assert c.ask(recipient="nobody@example.com") == UNKNOWN, "same listener, same Redis"
    path = os.path.join(test_dir.root, "empty.ini")
    with open(path, "w") as f:
        f.write(text)
    for args in (["-t", "-c", path], ["-f", "-c", path]):
        p = subprocess.run([backstopd_bin] + args, capture_output=True, text=True, timeout=10)
        assert p.returncode == 1 and "no settings in the file" in p.stderr, (args, p)
