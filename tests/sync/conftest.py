"""Fixtures of the backstopctl sync suite (on top of tests/conftest.py).

    sync   one private redis-server, and helpers around backstopctl sync:
           sync.write(name, text)           a file in the test's directory -> path
           sync.config(sources, extra="")   backstop.ini with these [source NAME]
                                            sections ({name: {key: value or [values]}})
           sync.run(*args)                  backstopctl -c that file sync ARGS -> Result
           sync.r                           redis.Redis (decode_responses) on the server
           sync.members(domain)             set of rcpt:<domain>
           sync.record(domain)              backstop:sync <domain> as a dict
           sync.calls(command)              INFO commandstats calls of a command
"""
import os

import pytest
import redis


class SyncEnv:
    def __init__(self, dirs, server, ctl):
        self.dir = dirs.make("sync")
        self.server = server
        self.ctl = ctl
        self.r = redis.Redis(unix_socket_path=server.sock, socket_timeout=30,
                             decode_responses=True)
        self.ini = None

    def write(self, name, text, mode="w"):
        path = os.path.join(self.dir, name)
        with open(path, mode) as f:
            f.write(text)
        return path

    def config(self, sources, extra=""):
        lines = ["[redis]", "server = unix:" + self.server.sock, ""]
        if extra:
            lines += [extra, ""]
        for name, keys in sources.items():
            lines.append("[source %s]" % name)
            for k, v in keys.items():
                for one in (v if isinstance(v, list) else [v]):
                    lines.append("%s = %s" % (k, one))
            lines.append("")
        self.ini = self.write("backstop.ini", "\n".join(lines))
        return self.ini

    def run(self, *args, timeout=300):
        return self.ctl.run("sync", *args, config=self.ini, timeout=timeout)

    def members(self, domain):
        return self.r.smembers("backstop:rcpt:" + domain)

    def record(self, domain):
        v = self.r.hget("backstop:sync", domain)
        return dict(kv.split("=", 1) for kv in v.split(";")) if v else None

    def calls(self, command):
        stats = self.r.info("commandstats")
        return stats.get("cmdstat_" + command, {}).get("calls", 0)


@pytest.fixture
def sync(test_dir, redis_server, backstopctl):
    return SyncEnv(test_dir, redis_server, backstopctl)
