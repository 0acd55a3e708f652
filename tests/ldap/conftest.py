"""conftest.py - fixtures of the LDAP source tests: the ldap_dump driver and
private slapd servers (slapd.py), each stopped by PID in its finaliser.

    /usr/bin/python3 -m pytest tests/ldap --ldap-dump=build/test/ldap_dump
"""
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_users  # noqa: E402
import slapd  # noqa: E402

USERS = 50_000


def pytest_addoption(parser):
    parser.addoption("--ldap-dump", default=os.environ.get("LDAP_DUMP"),
                     help="the ldap_dump driver (tests/ldap/ldap_dump.c)")
    try:
        parser.addoption("--backstopctl", default=os.environ.get("BACKSTOPCTL"),
                         help="backstopctl with the sync command (test_sync_ldap.py)")
    except ValueError:
        pass  # tests/conftest.py (the shared fixtures) already has it


class Result:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.lines = proc.stdout.splitlines()
        self.err = proc.stderr
        self.elapsed = elapsed


class Dump:
    """ldap_dump as the reader: bound as the test reader, the AD filter,
    proxyAddresses, plus the options a test gives"""

    def __init__(self, exe, password_file):
        self.exe, self.password_file = exe, password_file

    def argv(self, uris, *options, password_file=True, attributes=("proxyAddresses",)):
        if password_file is True:
            password_file = self.password_file
        cmd = [self.exe]
        for u in uris:
            cmd += ["--uri", u]
        cmd += ["--base", gen_users.BASE, "--filter", gen_users.FILTER]
        for a in attributes:
            cmd += ["--attribute", a]
        if password_file:
            cmd += ["--bind-dn", gen_users.READER_DN, "--bind-password-file", str(password_file)]
        return cmd + list(options)

    def __call__(self, uris, *options, timeout=120, **kw):
        start = time.monotonic()
        proc = subprocess.run(self.argv(uris, *options, **kw), capture_output=True, text=True,
                              timeout=timeout)
        return Result(proc, time.monotonic() - start)


@pytest.fixture(scope="session")
def dump(request, tmp_path_factory):
    exe = request.config.getoption("--ldap-dump")
    if not exe or not os.access(exe, os.X_OK):
        pytest.skip("no ldap_dump driver (--ldap-dump=PATH)")
    pwfile = tmp_path_factory.mktemp("secret") / "password"
    pwfile.write_text(gen_users.READER_PASSWORD + "\n")
    pwfile.chmod(0o600)
    return Dump(exe, pwfile)


def _server(tmp_path_factory, users):
    if not slapd.have_slapd():
        pytest.skip("slapd/slapadd not installed")
    server = slapd.Slapd(tmp_path_factory.mktemp("slapd"), users)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def directory(tmp_path_factory):
    """the 50,000-user slapd, shared (tests must not change it)"""
    server = _server(tmp_path_factory, USERS)
    yield server
    server.stop()


@pytest.fixture
def own_directory(tmp_path_factory):
    """a 50,000-user slapd of the test's own, which it may change (delete)"""
    server = _server(tmp_path_factory, USERS)
    yield server
    server.stop()


@pytest.fixture
def small_directory(tmp_path_factory):
    """a 5,000-user slapd of the test's own, which it may freeze"""
    server = _server(tmp_path_factory, 5_000)
    yield server
    server.stop()


@pytest.fixture
def closed_uri():
    """an ldap:// URI nothing listens on"""
    return f"ldap://127.0.0.1:{slapd.free_port()}/"
