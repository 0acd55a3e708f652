"""backstopctl rbl-check against a private dnsmasq."""
import os
import shutil
import socket
import subprocess

import pytest

from support import procs
from support.procs import free_port
from support.wait import WaitTimeout

def test_rbl(env):
    # BACKSTOP_TEST_DNSMASQ=PATH picks the binary; =none tests the skip/install path
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
    v6 = ".".join(reversed("20010db8000000000000000000000001"))  # 2001:db8::1 per nibble
    # a free UDP port can be taken between our probe and dnsmasq's bind on a
    # busy machine: try a few ports, and say what dnsmasq said if none works
    for attempt in range(3):
        port = free_port(socket.SOCK_DGRAM)
        dm = env.start("dnsmasq", [
            dnsmasq, "--no-daemon", "--port=%d" % port, "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
            "--pid-file="] + (["--user=nobody"] if os.geteuid() == 0 else []) + [
            "--local=/zen.example/", "--local=/bl.example/",
            "--address=/2.0.0.127.zen.example/127.0.0.2",
            "--address=/2.0.0.127.bl.example/127.0.0.4",
            "--host-record=2.0.0.127.bl.example,127.0.0.10",
            "--address=/9.9.9.9.zen.example/127.255.255.254",
            "--address=/8.8.8.8.zen.example/10.0.0.1",
            "--address=/%s.zen.example/127.0.0.3" % v6,
        ])
        ns = "127.0.0.1:%d" % port

        def probe():
            r = env.ctl("rbl-check", "127.0.0.2", "--zone", "zen.example", "--nameserver", ns,
                        "-t", "1s")
            return "listed" in r.out
        try:
            env.wait_for(probe, "dnsmasq", secs=20)
            break
        except WaitTimeout:
            procs.stop(dm)
            with open(os.path.join(env.dir, "dnsmasq.log"), errors="replace") as f:
                print("dnsmasq on port %d did not answer; its log:\n%s" % (port, f.read()[-2000:]))
            if attempt == 2:
                raise

    def rbl(*a):
        return env.ctl("rbl-check", "--nameserver", ns, "-t", "2s", *a)

    r = rbl("127.0.0.2", "--zone", "zen.example", "--zone", "bl.example")
    r.expect(1, out=["127.0.0.2  zen.example  listed (127.0.0.2)",
                          "127.0.0.2  bl.example   listed ("])
    assert "127.0.0.4" in r.out or "127.0.0.10" in r.out, "bl.example answer"
    rbl("127.0.0.1", "--zone", "zen.example", "--zone", "bl.example").expect(0,
               out=["zen.example  not listed", "bl.example   not listed"])
    rbl("2001:db8::1", "2001:db8::2", "--zone", "zen.example").expect(1,
               out=["2001:db8::1  zen.example  listed (127.0.0.3)",
                    "2001:db8::2  zen.example  not listed"])
    rbl("9.9.9.9", "--zone", "zen.example").expect(0,
               out="lookup failed (127.255.255.254: an error code of the list")
    rbl("8.8.8.8", "--zone", "zen.example").expect(0,
               out="lookup failed (10.0.0.1: not a blocklist answer)")
    doc = rbl("127.0.0.2", "127.0.0.1", "--zone", "zen.example", "--zone", "refused.example",
              "--json").json(1, "rbl-check --json")
    res = [(x.get("ip"), x.get("zone"), x.get("status"), x.get("answers"))
           for x in doc.get("results", [])]
    assert res == [("127.0.0.2", "zen.example", "listed", ["127.0.0.2"]),
                   ("127.0.0.2", "refused.example", "failed", []),
                   ("127.0.0.1", "zen.example", "not_listed", []),
                   ("127.0.0.1", "refused.example", "failed", [])], \
        "rbl-check --json results: %r" % res
    assert doc.get("listed") is True and doc.get("failed") is True and \
        all(isinstance(x.get("detail"), str) for x in doc.get("results", [])), \
        "rbl-check --json: %r" % doc
    doc = rbl("127.0.0.1", "--zone", "zen.example", "--json").json(0, "rbl-check --json, clean")
    assert doc.get("listed") is False and doc.get("failed") is False, "clean: %r" % doc
    rbl("127.0.0.1", "--zone", "refused.example").expect(0, out="lookup failed (")
    rbl("127.0.0.1", "--zone", "refused.example", "--strict").expect(1, out="lookup failed")
    env.ctl("rbl-check", "127.0.0.2", "--zone", "zen.example", "--nameserver",
                       "127.0.0.1:%d" % free_port(socket.SOCK_DGRAM), "-t", "1s").expect(0,
               out="lookup failed (")
    assert env.ctl.last.seconds < 10, "dead nameserver: gave up in %.1fs" % env.ctl.last.seconds
    env.ctl("rbl-check").expect(2, err="missing operands")
    env.ctl("rbl-check", "1.2.3.x").expect(2, err="not an IP address")
    rbl("127.0.0.2", "--zone", "bad..zone").expect(2)
    env.ctl("rbl-check", "127.0.0.2", "--nameserver", "[::1]:53").expect(2)
    # rbl-check does not need the config or Redis
    env.ctl("rbl-check", "127.0.0.1", "--zone", "zen.example", "--nameserver", ns,
                       config="/nonexistent.ini").expect(0, out="not listed")
    env.ctl("rbl-check", "--help").expect(0, out="zen.spamhaus.org, bl.spamcop.net")
