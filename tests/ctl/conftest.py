"""Fixtures of the backstopctl suite (on top of tests/conftest.py).

    env   one private redis-server (unix socket only), a backstop.ini that
          points at it, and a backstopctl runner using that file:
          env.ctl(*args, stdin=, config=) -> Result (.expect(rc, out, err))
          env.rcli(*args, db=) -> the reply as redis-cli prints it (via redis-py)
          env.members(key, db=) -> sorted set members
          env.write_config(name, extra=, redis_extra=, server=) -> path
          env.start(name, argv) -> Popen (log NAME.log), stopped by PID at the end
    dnsmasq  start(*options) -> FakeDns: a private dnsmasq on 127.0.0.1 and a
          free UDP port, serving those options (--local=, --address=,
          --host-record=), answering when returned; .ns is "127.0.0.1:PORT"
          for --nameserver, .a(name) the A answers in the order it sends them.
          Skips the test when there is no dnsmasq (BACKSTOP_TEST_DNSMASQ=PATH
          picks the binary; =none tests the skip path).
"""
import os
import shutil
import socket
import struct
import subprocess

import pytest
import redis

from support import procs
from support.procs import free_port
from support.wait import WaitTimeout, poll

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


def dnsmasq_binary():
    """The dnsmasq to run, installed with apt-get when we are root; skips otherwise."""
    dnsmasq = os.environ.get("BACKSTOP_TEST_DNSMASQ") or shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)
    if dnsmasq == "none":
        dnsmasq = None
    if not dnsmasq:
        if os.geteuid() != 0:
            pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base) and we are "
                        "not root: rbl-check not tested")
        print("installing dnsmasq-base (the dnsmasq binary, no system service) with apt-get")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "dnsmasq-base"],
                       stdout=subprocess.DEVNULL, check=False)
        dnsmasq = "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None
        if not dnsmasq:
            pytest.skip("dnsmasq could not be installed")
    return dnsmasq


class FakeDns:
    """A started dnsmasq: .ns for --nameserver, .a(name) asks it directly."""

    def __init__(self, port):
        self.port = port
        self.ns = "127.0.0.1:%d" % port

    def a(self, name, timeout=2.0):
        """The A records of the answer to an A query for name, in the order
        of the packet (a list of dotted quads; [] for NXDOMAIN or REFUSED)."""
        query = struct.pack(">HHHHHH", 0x6273, 0x0100, 1, 0, 0, 0) + b"".join(
            bytes([len(label)]) + label.encode() for label in name.split(".")) + \
            b"\0" + struct.pack(">HH", 1, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(query, ("127.0.0.1", self.port))
            reply = s.recv(4096)
        count, at, out = struct.unpack(">H", reply[6:8])[0], len(query), []
        for _ in range(count):
            if reply[at] & 0xc0 == 0xc0:  # a compressed name
                at += 2
            else:
                while reply[at]:
                    at += reply[at] + 1
                at += 1
            rtype, _, _, rdlen = struct.unpack(">HHIH", reply[at:at + 10])
            at += 10
            if rtype == 1 and rdlen == 4:
                out.append(socket.inet_ntoa(reply[at:at + 4]))
            at += rdlen
        return out


@pytest.fixture
def dnsmasq(env):
    binary = dnsmasq_binary()

    def start(*options):
        # a free UDP port can be taken between our probe and dnsmasq's bind
        # on a busy machine: try a few ports, and say what dnsmasq said if
        # none works
        for attempt in range(3):
            port = free_port(socket.SOCK_DGRAM)
            p = env.start("dnsmasq", [
                binary, "--no-daemon", "--port=%d" % port, "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--pid-file="] + (["--user=nobody"] if os.geteuid() == 0 else []) + [
                "--local=/probe.invalid/"] + list(options))
            dns = FakeDns(port)
            try:  # any reply (NXDOMAIN here) says it is up
                poll(lambda: dns.a("probe.invalid", timeout=0.5) == [], 20, what="dnsmasq")
                return dns
            except WaitTimeout:
                procs.stop(p)
                with open(os.path.join(env.dir, "dnsmasq.log"), errors="replace") as f:
                    print("dnsmasq on port %d did not answer; its log:\n%s" % (
                        port, f.read()[-2000:]))
                if attempt == 2:
                    raise
    return start
