"""redis_server - a private redis-server for one test.

It listens on a unix socket in its own directory (no TCP unless asked for,
then on a free loopback port), saves nothing, and is stopped by PID.
.client is a redis.Redis on the unix socket (bytes in, bytes out, so keys
with odd bytes survive); kill()/restart()/freeze()/thaw() simulate the
outages the daemon must ride out.
"""
import os
import shutil
import signal

import redis

from . import procs
from .replies import PREFIX
from .wait import poll

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(self, directory, tcp=False):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.sock = os.path.join(directory, "redis.sock")
        self.port = procs.free_port() if tcp else 0
        self.log_path = os.path.join(directory, "redis.log")
        self.proc = None
        self.client = redis.Redis(unix_socket_path=self.sock, socket_timeout=5)

    @property
    def endpoint(self):
        """backstopd's [redis] server value for this instance."""
        return "tcp:127.0.0.1:%d" % self.port if self.port else "unix:" + self.sock

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait=True):
        argv = [REDIS_SERVER, "--port", str(self.port), "--unixsocket", self.sock,
                "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--daemonize", "no"]
        if self.port:
            argv += ["--bind", "127.0.0.1"]
        self.proc = procs.spawn(argv, self.log_path)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0):
        def ping():
            assert self.proc.poll() is None, "redis-server exited (%s): %s" % (
                self.proc.returncode, procs.tail(self.log_path, 5))
            return self.client.ping()
        poll(ping, timeout, what="redis PING")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL, reaped: the socket stays behind, as after a crash."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        procs.forget(self.proc)
        self.client.connection_pool.disconnect()

    def restart(self):
        """Start again (same socket, same port, empty data set)."""
        if self.alive():
            self.stop()
        return self.start()

    def freeze(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc:
            procs.stop(self.proc)
        self.client.connection_pool.disconnect()

    # -- reading the state backstopd leaves
    def keys(self):
        """Every key (SCAN), as bytes."""
        return list(self.client.scan_iter(count=1000))

    def stats(self, prefix=PREFIX):
        """backstopd's stats hash as {name: int}."""
        raw = self.client.hgetall(prefix + "stats")
        return {k.decode(): int(v) for k, v in raw.items()}
