"""procs - free ports, private directories, processes stopped by PID.

Every process is started through spawn() and registered; stop() ends it
(SIGCONT first, in case it is frozen, then SIGTERM, SIGKILL after a grace
period) and unregisters it; an atexit hook SIGKILLs whatever is left, so an
interrupted run leaves no redis-server or backstopd behind. Nothing here
ever signals a process it did not start. Ports 6379 and 10040 (the
machine's own Redis and policy service) are never handed out.
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

FORBIDDEN_PORTS = {6379, 10040}
_LIVE = set()  # every Popen not yet reaped
_LIVE_LOCK = threading.Lock()


def free_port(kind=socket.SOCK_STREAM):
    """A loopback port nothing listens on right now (TCP, or UDP with SOCK_DGRAM)."""
    while True:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in FORBIDDEN_PORTS:
            return port


def short_tmpdir(prefix="bspy-"):
    """A fresh directory directly under /tmp: unix socket paths in it stay
    well under the 108-byte limit (pytest's tmp_path can be longer)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def spawn(argv, log_path=None, **kw):
    """Start argv with stdin from /dev/null and stdout+stderr appended to
    log_path (or discarded); returns the Popen, registered for stop()."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, close_fds=True, **kw)
    finally:
        if log_path:
            out.close()
    with _LIVE_LOCK:
        _LIVE.add(p)
    return p


def _signal(p, sig):
    try:
        os.kill(p.pid, sig)
    except ProcessLookupError:
        pass


def stop(p, timeout=5.0, sig=signal.SIGTERM):
    """End p: SIGCONT, then sig, then SIGKILL after timeout s. Returns the
    exit status (negative: the signal that ended it)."""
    if p.poll() is None:
        _signal(p, signal.SIGCONT)
        _signal(p, sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.wait()
    forget(p)
    return p.returncode


def forget(p):
    """p has been reaped by its owner: the safety net no longer covers it."""
    with _LIVE_LOCK:
        _LIVE.discard(p)


@atexit.register
def kill_leftovers():
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        if p.poll() is None:
            _signal(p, signal.SIGCONT)
            _signal(p, signal.SIGKILL)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        forget(p)


def tail(path, n=20):
    """The last n lines of a log file, for failure messages."""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no log)"
