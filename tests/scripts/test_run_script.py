"""
test_run_script.py - scripts/run as a newcomer uses it: -h, -c FILE given
relative to the caller's directory, and Ctrl-C (SIGINT to the whole process
group, as a terminal sends it), which must stop both daemons, remove the
Redis socket, print its "stopped" line and exit 0.

scripts/run builds build/release itself; the first test pays for that
(ctest scripts_run, 600 s).
"""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from support.policy import PolicyConn
from support.procs import free_port
from support.replies import FALLBACK_DEFER
from support.wait import poll

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN = os.path.join(TOP, "scripts", "run")
REQUEST = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=someone@remote.example\n"
           b"recipient=nobody@example.com\nclient_address=192.0.2.1\nclient_name=mx.remote.example\n\n")

pytestmark = pytest.mark.slow


def ask(port, proc, timeout=60, retry=()):
    """Connect (retrying until the daemon listens) and send one request;
    an answer in retry is asked again (until timeout)."""
    def once():
        assert proc.poll() is None, "scripts/run exited with %s" % proc.returncode
        with PolicyConn(("127.0.0.1", port), timeout=5) as c:
            reply = c.ask_raw(REQUEST)
        return None if reply in retry else reply
    return poll(once, timeout, interval=0.1, what="an answer on 127.0.0.1:%d" % port)


def test_help_prints_usage_only():
    r = subprocess.run([RUN, "-h"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert "scripts/run -c FILE" in r.stdout
    assert "set -e" not in r.stdout


def test_config_relative_to_caller(tmp_path):
    port = free_port()
    (tmp_path / "my.ini").write_text(
        "[server]\nlisten = inet:127.0.0.1:%d\n[redis]\nserver = unix:%s/no-redis.sock\n"
        "[policy]\non_redis_error = dunno\n" % (port, tmp_path))
    p = subprocess.Popen([RUN, "-c", "my.ini"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        # Redis is absent: the configured fallback answers
        assert ask(port, p, timeout=300) == "action=DUNNO\n\n"
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        out = p.communicate(timeout=30)[0]
    assert "cannot open" not in out


def test_ctrl_c_stops_everything():
    sock = os.path.join(TOP, "state", "redis.sock")
    p = subprocess.Popen([RUN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        port = None
        deadline = time.monotonic() + 300
        while port is None and time.monotonic() < deadline:
            line = p.stdout.readline()
            assert line, "scripts/run ended early: %s" % p.stderr.read()
            m = re.match(r"backstopd is starting on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        assert port, "no start line"
        # the first request can come before backstopd has reached Redis:
        # that one gets the on_redis_error fallback
        assert ask(port, p, retry=(FALLBACK_DEFER,)).startswith("action=550 5.1.1 ")
        assert os.path.exists(sock)
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 0, err
    assert "scripts/run: stopped backstopd and redis-server" in err
    assert not os.path.exists(sock)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
