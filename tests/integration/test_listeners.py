"""Listeners and the configuration check (issue 14): a listen path that is
a file, a live or stale unix socket, a host name, a reload that cannot
open its listeners, user/group/socket settings, start-up failures on
stderr, a missing directory, no secrets in `backstopd -t -v`."""
import os
import pwd
import re
import socket

import pytest

from support.backstopd import render_config, run_backstopd, sections_with
from support.policy import PolicyConn
from support.procs import free_port
from support.replies import DUNNO, USER_UNKNOWN

UNKNOWN = USER_UNKNOWN("nobody@example.com")


def write_conf(test_dir, name, redis_endpoint, **sections):
    path = os.path.join(test_dir.make("conf"), name)
    with open(path, "w") as f:
        f.write(render_config(sections_with(redis_endpoint, **sections)))
    return path


def line_of(path, start):
    """The number of the first line of file path that starts with start."""
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if text.startswith(start):
                return n
    raise AssertionError("no line %r in %s" % (start, path))


def expect_refused(binary, path, key, text, args=("-t",)):
    """backstopd ARGS -c path exits 1 with "path:LINE: ...text" on stderr,
    LINE that of the first "key =" line; the stderr text."""
    line = line_of(path, key + " =")
    rc, _, err = run_backstopd(binary, list(args) + ["-c", path])
    assert rc == 1, "backstopd %s on %s (stderr %r)" % (" ".join(args), path, err)
    assert re.search(r"(^|\n)(.*fatal: )?%s:%d: .*%s" % (re.escape(path), line, re.escape(text)),
                     err), "stderr lacks '%s:%d: ...%s': %r" % (path, line, text, err)
    return err


def can_connect(addr):
    try:
        PolicyConn(addr, timeout=2.0).close()
        return True
    except OSError:
        return False


@pytest.fixture
def busy_port():
    """A loopback port held by a listening socket of ours."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def test_listen_regular_file_kept(redis, backstopd, backstopd_bin, test_dir):
    """A listen path that is an ordinary file is refused, never removed."""
    precious = os.path.join(test_dir.make("x"), "precious.txt")
    with open(precious, "w") as f:
        f.write("keep me\n")
    path = write_conf(test_dir, "file.ini", redis.endpoint, server={"listen": "unix:" + precious})
    expect_refused(backstopd_bin, path, "listen", "not a socket")
    expect_refused(backstopd_bin, path, "listen", "not a socket", args=("-f",))
    assert os.path.isfile(precious), "start-up removed %s" % precious
    d = backstopd(redis)
    d.write_listen(["inet:127.0.0.1:%d" % d.port, "unix:" + precious])
    log = d.reload()
    assert os.path.isfile(precious), "SIGHUP removed %s" % precious
    assert "configuration reloaded" not in log, "a refused reload logged as done"
    assert "keeping the running configuration" in log, "reload failure not said"
    assert d.ask(recipient="user@example.com") == DUNNO, "still answering after the refused reload"


def test_unix_socket_not_stolen(redis, backstopd, backstopd_bin):
    """A second instance leaves a live socket alone; a stale one is
    replaced; at exit an instance removes only the socket it made."""
    a = backstopd(redis, name="A", unix_listen=True)
    rc, _, err = run_backstopd(backstopd_bin, ["-f", "-c", a.conf_path])
    assert rc == 1, "a second instance on A's socket (stderr %r)" % err
    assert "in use by another process" in err, "the refusal does not say why"
    assert os.path.exists(a.unix_path), "the second instance removed A's socket"
    assert a.ask(recipient="user@example.com") == DUNNO, "A still reachable after the second instance"
    # A's socket file replaced behind its back: A's exit must leave the new one
    os.unlink(a.unix_path)
    c = backstopd(redis, name="C", unix_listen=True, start=False)
    c.unix_path = a.unix_path
    c.start()
    assert a.terminate() == 0, "A's exit status"
    assert os.path.exists(a.unix_path), "A removed C's socket at exit"
    assert c.ask(recipient="user@example.com") == DUNNO, "C reachable after A exited"
    # C killed: its socket is stale (nobody answers) and the next start replaces it
    c.expected_exit = True
    c.proc.kill()
    c.wait_exit()
    assert os.path.exists(c.unix_path), "SIGKILL left no stale socket to test with"
    e = backstopd(redis, name="E", unix_listen=True, start=False)
    e.unix_path = a.unix_path
    e.start()
    assert e.ask(recipient="user@example.com") == DUNNO, "a stale socket is replaced at start"
    assert "removed stale socket" in e.log(), "the stale socket removal is not logged"


def test_listen_host_name_refused(redis, backstopd, backstopd_bin, test_dir):
    """inet:localhost is refused by -t, at start and on SIGHUP, with
    FILE:LINE; no abort."""
    port = free_port()
    path = write_conf(test_dir, "host.ini", redis.endpoint,
                      server={"listen": "inet:localhost:%d" % port})
    err = expect_refused(backstopd_bin, path, "listen", "inet:127.0.0.1:%d" % port)
    assert "inet:[::1]:%d" % port in err, "no IPv6 suggestion"
    rc, _, err = run_backstopd(backstopd_bin, ["-f", "-c", path])
    assert rc == 1, "start with a listen host name (stderr %r)" % err
    d = backstopd(redis)
    d.write_listen("inet:localhost:%d" % d.port)
    log = d.reload()
    d.assert_alive()
    assert re.search(re.escape(d.conf_path) + r":\d+: \[server\] listen: .*host name", log), \
        "the reload refusal lacks FILE:LINE"
    assert d.ask(recipient="user@example.com") == DUNNO, "still answering"


def test_reload_listener_all_or_nothing(redis, backstopd, busy_port):
    """A reload whose new listener cannot open keeps every old one and the
    old config, and says so; a good move opens before it closes."""
    d = backstopd(redis, policy={"mode": "enforce"})
    free = free_port()
    d.write_listen(["inet:127.0.0.1:%d" % free, "inet:127.0.0.1:%d" % busy_port],
                   policy={"mode": "report"})
    log = d.reload()
    assert "keeping the running configuration" in log and "address already in use" in log, \
        "the failed reload is not reported"
    assert "no longer listening" not in log, "an old listener was closed"
    assert "configuration reloaded" not in log, "a failed reload logged as done"
    assert d.ask(recipient="nobody@example.com") == UNKNOWN, \
        "old listener, old config (enforce) after the failed reload"
    assert not can_connect(("127.0.0.1", free)), "the listener opened by the failed reload stayed open"

    d.write_listen("inet:127.0.0.1:%d" % free, policy={"mode": "enforce"})
    log = d.reload()
    assert log.index("listening on inet:127.0.0.1:%d" % free) < log.index("no longer listening"), \
        "the old listener closed before the new one opened"
    with PolicyConn(("127.0.0.1", free)) as c:
        assert c.ask(recipient="nobody@example.com") == UNKNOWN, "new port"
    assert not can_connect(d.addr), "the old port still accepts"


@pytest.mark.parametrize("key,name", [("user", "nosuchuser-bs14"), ("group", "nosuchgroup-bs14"),
                                      ("socket_group", "nosuchgroup-bs14")])
def test_host_settings_checked(redis, backstopd_bin, test_dir, key, name):
    """user, group and socket_group are checked by -t with FILE:LINE."""
    path = write_conf(test_dir, key + ".ini", redis.endpoint,
                      server={"max_connections": "50", key: name})
    expect_refused(backstopd_bin, path, key, "[server] %s: \"%s\": no such" % (key, name))


def test_host_settings_reload(redis, backstopd):
    """A reload applies socket_mode and says user takes effect at restart."""
    d = backstopd(redis, unix_listen=True, server={"socket_mode": "0660"})
    assert os.stat(d.unix_path).st_mode & 0o777 == 0o660, "socket mode at start"
    me = pwd.getpwuid(os.getuid()).pw_name
    d.write_config(server={"socket_mode": "0600", "user": me})
    log = d.reload()
    assert "configuration reloaded" in log, "reload failed"
    assert os.stat(d.unix_path).st_mode & 0o777 == 0o600, "socket mode after the reload"
    assert "[server] user takes effect at restart" in log, "user change not reported"


def test_start_failure_on_stderr(redis, backstopd_bin, test_dir, busy_port):
    """Without -f a start-up failure still reaches stderr."""
    path = write_conf(test_dir, "busy.ini", redis.endpoint,
                      server={"listen": "inet:127.0.0.1:%d" % busy_port})
    rc, _, err = run_backstopd(backstopd_bin, ["-c", path])
    assert rc == 1, "start on a busy port"
    assert re.search(r"fatal: cannot (bind|listen on) inet:127\.0\.0\.1:%d: address already in use"
                     % busy_port, err), "no fatal line on stderr without -f: %r" % err


@pytest.mark.parametrize("args", [("-t",), ("-f",)], ids=["check", "start"])
def test_listen_missing_dir_errno(redis, backstopd_bin, test_dir, args):
    """A unix listener in a missing directory says ENOENT, not EACCES."""
    missing = os.path.join(test_dir.root, "nonexistent", "dir")
    path = write_conf(test_dir, "nodir.ini", redis.endpoint,
                      server={"listen": "unix:%s/s.sock" % missing})
    err = expect_refused(backstopd_bin, path, "listen", "%s: No such file or directory" % missing,
                         args=args)
    assert "ermission denied" not in err, "EACCES reported for ENOENT"


def test_config_dump_no_secrets(backstopd_bin, test_dir):
    """backstopd -t -v prints no password, and says that one is set."""
    path = write_conf(test_dir, "secret.ini", "unix:/nonexistent/redis.sock",
                      server={"listen": "inet:127.0.0.1:%d" % free_port()},
                      redis={"password": "hunter2-redis", "sentinel": "192.0.2.10:26379",
                             "master_name": "mm", "sentinel_password": "hunter2-sentinel"})
    rc, out, err = run_backstopd(backstopd_bin, ["-t", "-v", "-c", path])
    assert rc == 0, "-t -v (stderr %r)" % err
    assert "hunter2" not in out + err, "a secret printed by -t -v"
    assert "# password = (set, not shown)" in out, "the dump does not say the password is set"
    assert "# sentinel_password = (set, not shown)" in out, \
        "the dump does not say the sentinel password is set"
