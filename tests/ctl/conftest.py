"""Fixtures of the backstopctl suite (on top of tests/conftest.py).

    env   one private redis-server (unix socket only), a backstop.ini that
          points at it, and a backstopctl runner using that file:
          env.ctl(*args, stdin=, config=) -> Result (.expect(rc, out, err))
          env.rcli(*args, db=) -> the reply as redis-cli prints it (via redis-py)
          env.members(key, db=) -> sorted set members
          env.write_config(name, extra=, redis_extra=, server=) -> path
          env.start(name, argv) -> Popen (log NAME.log), stopped by PID at the end
"""
import os

import pytest
import redis

from support import procs
from support.wait import poll

HERE = os.path.dirname(os.path.abspath(__file__))


def cli_text(v):
    """A redis-py reply the way redis-cli prints it (the tests compare text)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (list, tuple, set)):
        return "\n".join(cli_text(x) for x in v)
    return str(v)


class Env:
    def __init__(self, dirs, server, ctl):
        self.dir = dirs.root
        self.sock = server.sock
        self.server = server
        self.ctl = ctl
        self._clients = {}
        self.procs = []
        self.ini = ctl.config = self.write_config("b.ini")

    def client(self, db=None):
        if db not in self._clients:
            self._clients[db] = redis.Redis(unix_socket_path=self.sock, db=db or 0,
                                            decode_responses=True, socket_timeout=30)
        return self._clients[db]

    def rcli(self, *args, db=None):
        return cli_text(self.client(db).execute_command(*args))

    def members(self, key, db=None):
        return sorted(self.client(db).smembers(key))

    def start(self, name, argv):
        p = procs.spawn(argv, os.path.join(self.dir, name + ".log"))
        self.procs.append(p)
        return p

    def wait_for(self, cond, what, secs=10):
        poll(cond, secs, what=what)

    def write_config(self, name, extra="", redis_extra="", server=""):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("[server]\n%s\n[redis]\nserver = unix:%s\n%s\n%s" % (
                server or "listen = unix:%s" % os.path.join(self.dir, "p.sock"),
                self.sock, redis_extra, extra))
        return path


@pytest.fixture
def env(test_dir, redis_server, backstopctl):
    e = Env(test_dir, redis_server, backstopctl)
    yield e
    for c in e._clients.values():
        c.close()
    for p in reversed(e.procs):
        procs.stop(p, timeout=10)
