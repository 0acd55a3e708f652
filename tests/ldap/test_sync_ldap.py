"""test_sync_ldap.py - the LDAP source driven by `backstopctl sync` (the sync
engine, branch sync) against the 50,000-user slapd and a private
redis-server. Skipped unless run with --backstopctl=PATH (ldap.cmake passes
it when the tree has src/backstopctl/ctl_sync.c)."""
import os
import subprocess
import time

import pytest

import gen_users
import slapd


@pytest.fixture
def ldap_redis(tmp_path):
    redis = pytest.importorskip("redis")
    port = slapd.free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield port, client
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def sync_ctl(request):
    exe = request.config.getoption("--backstopctl")
    if not exe or not os.access(exe, os.X_OK):
        pytest.skip("no backstopctl with sync (--backstopctl=PATH)")
    return exe


def expected(addresses, domain):
    """members of rcpt:<domain> for the raw addresses a reader emits"""
    out = set()
    for a in addresses:
        local, _, dom = a.rpartition("@")
        if dom.lower() == domain:
            out.add(local.lower() or "*")
    return out


def test_sync_writes_exactly_the_directory_and_a_failed_bind_writes_nothing(
        directory, ldap_redis, sync_ctl, tmp_path, closed_uri):
    port, r = ldap_redis
    pw = tmp_path / "pw"
    pw.write_text(gen_users.READER_PASSWORD + "\n")
    pw.chmod(0o600)
    domains = [d.lower() for d in gen_users.DOMAINS]
    ini = tmp_path / "backstop.ini"
    ini.write_text("\n".join(
        [f"[redis]\nserver = tcp:127.0.0.1:{port}\n[sync]\nadd_domains = yes\n[source ad]",
         "type = ldap"] + [f"domain = {d}" for d in domains] +
        [f"uri = {closed_uri}", f"uri = {directory.uri}", "start_tls = yes",
         f"tls_ca_file = {directory.ca}", f"bind_dn = {gen_users.READER_DN}",
         f"bind_password_file = {pw}", f"base = {gen_users.BASE}", f"filter = {gen_users.FILTER}",
         "attribute = proxyAddresses", "page_size = 1000", "timeout = 60s", ""]))
    # when synced
    p = subprocess.run([sync_ctl, "-c", str(ini), "sync"], capture_output=True, text=True)
    # then each domain holds exactly its users, the catch-all as *
    assert p.returncode == 0, p.stdout + p.stderr
    for d in domains:
        assert r.smembers(f"backstop:rcpt:{d}") == expected(directory.proxies, d), d
    assert "*" in r.smembers("backstop:rcpt:dom3.example")
    before = {d: r.smembers(f"backstop:rcpt:{d}") for d in domains}
    # when the bind fails, nothing is written
    pw.write_text("wrong\n")
    p = subprocess.run([sync_ctl, "-c", str(ini), "sync"], capture_output=True, text=True)
    assert p.returncode == 1 and "Invalid credentials" in p.stderr, p.stdout + p.stderr
    assert {d: r.smembers(f"backstop:rcpt:{d}") for d in domains} == before
