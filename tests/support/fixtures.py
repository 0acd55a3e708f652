"""fixtures - the process-owning context managers behind tests/conftest.py.

Plain context managers, so a fixture of any scope (function, module) can
hold them: each stops what it started, by PID, when it exits.

    private_dir(keep)         Dirs: unique subdirectories of a fresh /tmp dir
    redis_servers(dirs)       make(name, tcp, start) -> RedisServer
    backstopd_daemons(dirs, binary, failed)
                              make(redis, name, unix_listen, start, wait_redis,
                              **sections) -> Backstopd; problems() fail the test
"""
import contextlib
import os

import pytest

from . import procs
from .backstopd import Backstopd
from .redis_server import RedisServer


class Dirs:
    """Subdirectories of one test's private directory, unique by name."""

    def __init__(self, root):
        self.root = root

    def make(self, name):
        d, n = os.path.join(self.root, name), 1
        while os.path.exists(d):
            n += 1
            d = os.path.join(self.root, "%s%d" % (name, n))
        os.makedirs(d)
        return d


@contextlib.contextmanager
def private_dir(keep):
    """A private directory under /tmp, removed afterwards unless keep() says so."""
    d = procs.short_tmpdir()
    try:
        yield Dirs(d)
    finally:
        if keep():
            print("# kept %s" % d)
        else:
            procs.remove_tree(d)


@contextlib.contextmanager
def redis_servers(dirs):
    """make(name, tcp=False, start=True) -> RedisServer; all stopped at exit."""
    servers = []

    def make(name="redis", tcp=False, start=True):
        r = RedisServer(dirs.make(name), tcp=tcp)
        servers.append(r)
        return r.start() if start else r
    try:
        yield make
    finally:
        for r in reversed(servers):
            r.stop()


@contextlib.contextmanager
def backstopd_daemons(dirs, binary, failed):
    """make(redis, name=, unix_listen=, start=, wait_redis=, **sections) ->
    Backstopd; at exit each is stopped, and problems() fail the test."""
    daemons = []

    def make(redis, /, name="backstopd", unix_listen=False, start=True, wait_redis=True,
             **sections):
        ep = redis if isinstance(redis, str) else redis.endpoint
        d = Backstopd(binary, dirs.make(name), ep, name=name, unix_listen=unix_listen, **sections)
        daemons.append(d)
        return d.start(wait_redis=wait_redis) if start else d
    try:
        yield make
    finally:
        problems = []
        for d in reversed(daemons):
            problems += d.problems()
            if problems or failed():
                print("--- %s log (last 25 lines) ---\n%s" % (d.name, procs.tail(d.log_path, 25)))
        if problems:
            pytest.fail("; ".join(problems), pytrace=False)
