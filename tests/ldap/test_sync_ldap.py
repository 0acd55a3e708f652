"""test_sync_ldap.py - the LDAP source driven by `backstopctl sync` (the sync
engine, branch sync) against the 50,000-user slapd and a private
redis-server. Skipped unless run with --backstopctl=PATH (ldap.cmake passes
it when the tree has src/backstopctl/ctl_sync.c).

test_sync_writes_exactly_the_directory_and_a_failed_bind_writes_nothing:
    failover past a closed URI, StartTLS with the test CA, exact sets, the
    catch-all; a refused bind writes nothing.
test_resync_deletions_and_shrink_guard: on a 50,000-user slapd of its own,
    a second run writes nothing (no RENAME, no SADD in INFO commandstats);
    users ldapdeleted disappear on the next run and only their domains are
    written; deleting more than 20 % of a domain is refused (exit 3, nothing
    written, the record says shrink-refused) until --force.
test_starttls_wrong_ca_writes_nothing: a server certificate not from
    tls_ca_file fails the source; nothing written, exit 1."""
import os
import subprocess
import time

import pytest

import gen_users
import slapd

USERS = 50_000
DOMAINS = [d.lower() for d in gen_users.DOMAINS]


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


def sync_ini(tmp_path, port, server, uris, ca=None, password=gen_users.READER_PASSWORD):
    """backstop.ini with one [source ad] of the three test domains"""
    pw = tmp_path / "pw"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    ini = tmp_path / "backstop.ini"
    ini.write_text("\n".join(
        [f"[redis]\nserver = tcp:127.0.0.1:{port}\n[sync]\nadd_domains = yes\n[source ad]",
         "type = ldap"] + [f"domain = {d}" for d in DOMAINS] +
        [f"uri = {u}" for u in uris] +
        ["start_tls = yes", f"tls_ca_file = {ca or server.ca}", f"bind_dn = {gen_users.READER_DN}",
         f"bind_password_file = {pw}", f"base = {gen_users.BASE}", f"filter = {gen_users.FILTER}",
         "attribute = proxyAddresses", "page_size = 1000", "timeout = 60s", ""]))
    return ini, pw


def run_sync(ctl, ini, *args):
    start = time.monotonic()
    p = subprocess.run([ctl, "-c", str(ini), "sync"] + list(args), capture_output=True, text=True,
                       timeout=300)
    p.elapsed = time.monotonic() - start
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    return p


def calls(r, command):
    return r.info("commandstats").get("cmdstat_" + command, {}).get("calls", 0)


def writes(r):
    """(RENAME, SADD) calls so far: what building and swapping a set costs"""
    return calls(r, "rename"), calls(r, "sadd")


def sets(r):
    return {d: r.smembers(f"backstop:rcpt:{d}") for d in DOMAINS}


def test_sync_writes_exactly_the_directory_and_a_failed_bind_writes_nothing(
        directory, ldap_redis, sync_ctl, tmp_path, closed_uri):
    port, r = ldap_redis
    ini, pw = sync_ini(tmp_path, port, directory, [closed_uri, directory.uri])
    # when synced
    p = run_sync(sync_ctl, ini)
    # then each domain holds exactly its users, the catch-all as *
    assert p.returncode == 0, p.stdout + p.stderr
    for d in DOMAINS:
        assert r.smembers(f"backstop:rcpt:{d}") == expected(directory.proxies, d), d
    assert "*" in r.smembers("backstop:rcpt:dom3.example")
    before = sets(r)
    # when the bind fails, nothing is written
    pw.write_text("wrong\n")
    w = writes(r)
    p = run_sync(sync_ctl, ini)
    assert p.returncode == 1 and "Invalid credentials" in p.stderr, p.stdout + p.stderr
    assert sets(r) == before and writes(r) == w


def test_starttls_wrong_ca_writes_nothing(directory, ldap_redis, sync_ctl, tmp_path):
    port, r = ldap_redis
    ini, _ = sync_ini(tmp_path, port, directory, [directory.uri], ca=directory.wrong_ca)
    p = run_sync(sync_ctl, ini)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "certificate" in p.stderr.lower() or "tls" in p.stderr.lower(), p.stderr
    assert writes(r) == (0, 0) and r.keys("backstop:rcpt:*") == []


def enabled_users(domain_index, n=USERS):
    """indexes of the users of DOMAINS[domain_index] the filter lets through"""
    return [i for i in range(domain_index, n, len(DOMAINS)) if gen_users.user(i)[1]]


def addresses(gone, n=USERS):
    """what a reader emits once the users in gone are deleted"""
    out = [gen_users.CATCH_ALL]
    for i in range(n):
        if i not in gone:
            out += gen_users.user(i)[1]
    return out


def test_resync_deletions_and_shrink_guard(own_directory, ldap_redis, sync_ctl, tmp_path):
    port, r = ldap_redis
    ini, _ = sync_ini(tmp_path, port, own_directory, [own_directory.uri])
    figures = []
    # given the 50,000-user directory synced
    p = run_sync(sync_ctl, ini)
    assert p.returncode == 0, p.stdout + p.stderr
    figures.append(f"first sync: {p.elapsed:.2f}s")
    assert sets(r) == {d: expected(own_directory.proxies, d) for d in DOMAINS}
    assert sum(len(v) for v in sets(r).values()) == len(set(a.lower() for a in own_directory.proxies))

    # when synced again with nothing changed: no RENAME, no SADD, all unchanged
    w = writes(r)
    p = run_sync(sync_ctl, ini)
    assert p.returncode == 0, p.stdout + p.stderr
    figures.append(f"unchanged re-run: {p.elapsed:.2f}s")
    assert writes(r) == w, (w, writes(r), p.stdout)
    for d in DOMAINS:
        assert f"{d}: +0 -0 =" in p.stdout and "unchanged" in p.stdout, p.stdout

    # when 10 users of dom1 and 5 of dom2 are deleted from the directory
    gone = set(enabled_users(0)[:10] + enabled_users(1)[:5])
    own_directory.delete(f"cn=user{i},ou=users,{gen_users.BASE}" for i in sorted(gone))
    w = writes(r)
    p = run_sync(sync_ctl, ini)
    assert p.returncode == 0, p.stdout + p.stderr
    # then they are gone (both their addresses), exactly, and only those two domains were written
    now = addresses(gone)
    assert sets(r) == {d: expected(now, d) for d in DOMAINS}
    for i in gone:
        local = gen_users.user(i)[1][0].split("@")[0].lower()
        assert not any(local in v for v in sets(r).values()), local
    assert "dom1.example: +0 -20 " in p.stdout and "dom2.example: +0 -10 " in p.stdout, p.stdout
    assert "dom3.example: +0 -0 " in p.stdout and "unchanged" in p.stdout, p.stdout
    assert writes(r)[0] == w[0] + 2, (w, writes(r))

    # when a quarter of dom3's users are deleted: the shrink guard refuses, writes nothing
    quarter = enabled_users(2)
    quarter = quarter[:len(quarter) // 4]
    own_directory.delete(f"cn=user{i},ou=users,{gen_users.BASE}" for i in quarter)
    gone |= set(quarter)
    before, w = sets(r), writes(r)
    p = run_sync(sync_ctl, ini)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "dom3.example" in p.stderr and "max_shrink 20%" in p.stderr and "--force" in p.stderr, \
        p.stderr
    assert sets(r) == before and writes(r) == w
    rec = dict(kv.split("=", 1) for kv in r.hget("backstop:sync", "dom3.example").split(";"))
    assert rec["outcome"] == "shrink-refused", rec
    # and with --force it is written
    p = run_sync(sync_ctl, ini, "--force")
    assert p.returncode == 0, p.stdout + p.stderr
    figures.append(f"--force after deleting {len(quarter)} of dom3's users: {p.elapsed:.2f}s")
    now = addresses(gone)
    assert sets(r) == {d: expected(now, d) for d in DOMAINS}
    assert r.keys("backstop:tmp:*") == []
    print("ldap sync, 50,000 users / 3 domains: " + "; ".join(figures))
