"""sentinel - a Redis Sentinel group on loopback: master, replica, 3 sentinels.

    with sentinel_group(make_redis, dirs) as g:   # make_redis: the redis_factory fixture
        g.master, g.replica     RedisServer (TCP on free ports), replica in sync
        g.sentinels             3 Sentinel (redis-server --sentinel), ready:
                                each knows the other two and the replica
        g.sync_s, g.ready_s     how long the sync and the sentinels took
        g.master_port()         the master's port as sentinels[0] says (or None)

Sentinels monitor "m" with quorum 2, down-after-milliseconds 1000 and
failover-timeout 5000 (the defaults of sentinel_group, overridable). The
redis-sentinel package is not needed. Everything is stopped by PID at the
end (the RedisServers by their own factory, the sentinels here).
"""
import contextlib
import os
import time

import redis

from . import procs
from .redis_server import REDIS_SERVER
from .wait import poll

MASTER_NAME = "m"


class Sentinel:
    """One redis-server --sentinel on a free loopback port."""

    def __init__(self, directory, master_port, quorum, down_after_ms, failover_ms):
        self.dir = directory
        self.port = procs.free_port()
        self.conf = os.path.join(directory, "sentinel.conf")
        self.log_path = os.path.join(directory, "sentinel.log")
        with open(self.conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
                    "sentinel monitor %s 127.0.0.1 %d %d\n"
                    "sentinel down-after-milliseconds %s %d\n"
                    "sentinel failover-timeout %s %d\n" % (
                        self.port, directory, MASTER_NAME, master_port, quorum,
                        MASTER_NAME, down_after_ms, MASTER_NAME, failover_ms))
        self.proc = None
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                                  decode_responses=True)

    def start(self):
        self.proc = procs.spawn([REDIS_SERVER, self.conf, "--sentinel"], self.log_path)
        return self

    def stop(self):
        if self.proc:
            procs.stop(self.proc)
        self.client.connection_pool.disconnect()

    def master_port(self):
        """The master's port as this sentinel names it, or None."""
        try:
            addr = self.client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(addr[1]) if addr else None
        except redis.RedisError:
            return None

    def knows(self, nsentinels, nreplicas):
        """It sees the other sentinels and the replicas, and the master is up."""
        m = self.client.sentinel_master(MASTER_NAME)
        return (m.get("num-other-sentinels") == nsentinels - 1 and m.get("num-slaves") == nreplicas
                and not m.get("is_sdown") and not m.get("is_odown"))


class Group:
    def __init__(self):
        self.master = self.replica = None
        self.sentinels = []
        self.sync_s = self.ready_s = None

    def master_port(self):
        return self.sentinels[0].master_port()

    def endpoints(self):
        """backstopd's [redis] sentinel values."""
        return ["127.0.0.1:%d" % s.port for s in self.sentinels]


@contextlib.contextmanager
def sentinel_group(make_redis, dirs, quorum=2, down_after_ms=1000, failover_ms=5000):
    """Master + replica (waited for until master_link_status:up) + 3 sentinels
    (waited for until each knows the others and the replica)."""
    g = Group()
    try:
        g.master = make_redis("master", tcp=True)
        g.master.client.config_set("repl-diskless-sync-delay", 0)
        g.replica = make_redis("replica", tcp=True)
        g.replica.client.config_set("repl-diskless-sync-delay", 0)
        t = time.monotonic()
        g.replica.client.replicaof("127.0.0.1", g.master.port)
        poll(lambda: g.replica.client.info("replication").get("master_link_status") == "up", 30,
             interval=0.1, what="replica master_link_status:up")
        g.sync_s = time.monotonic() - t
        g.sentinels = [Sentinel(dirs.make("sentinel%d" % i), g.master.port, quorum, down_after_ms,
                                failover_ms).start() for i in range(3)]
        t = time.monotonic()
        poll(lambda: all(s.knows(3, 1) for s in g.sentinels), 30, interval=0.2,
             what="3 sentinels that know each other and the replica")
        g.ready_s = time.monotonic() - t
        yield g
    finally:
        for s in g.sentinels:
            s.stop()
