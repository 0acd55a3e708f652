"""test_source_ldap.py - bs_source_ldap_read (through ldap_dump) against a
private slapd holding 50,000 AD-shaped users: whole reads succeed with exactly
the expected addresses, and every kind of failure is a failure, never a
partial success."""
import socket
import subprocess
import time

import pytest

import gen_users


def read_ok(res):
    assert res.rc == 0, res.err
    return res.lines


@pytest.mark.parametrize("page_size", ["500", "1000", "333"])
def test_paged_read_emits_exactly_the_directory(directory, dump, page_size):
    # given 50,000 users, 45,000 enabled, over a server that serves 1,000 entries without paging
    # when read page by page
    res = dump([directory.uri], "--page-size", page_size, "--verbose")
    lines = read_ok(res)
    # then every smtp address of every enabled user, prefix stripped, nothing else
    assert sorted(lines) == sorted(directory.proxies)
    assert len(lines) == 2 * 45_000 + 1
    assert gen_users.CATCH_ALL in lines
    assert not [a for a in lines if ":" in a]
    # and AD-style continuation references (ou=DomainDnsZones) were met and skipped
    pages = -(-45_002 // int(page_size))
    assert f"in {pages} pages" in res.err and "1 references skipped: complete" in res.err, res.err


def test_progress_before_each_page(directory, dump):
    res = dump([directory.uri], "--page-size", "1000", "--count", "--progress")
    assert read_ok(res) == [str(len(directory.proxies))]
    counts = [int(line.split()[1]) for line in res.err.splitlines() if line.startswith("progress ")]
    assert counts == [1000 * i for i in range(46)]  # 45,002 entries: 46 pages


def test_plain_mail_attribute(directory, dump):
    lines = read_ok(dump([directory.uri], attributes=("mail",)))
    assert sorted(lines) == sorted(directory.mails)


def test_several_attributes(directory, dump):
    lines = read_ok(dump([directory.uri], attributes=("mail", "proxyAddresses")))
    assert sorted(lines) == sorted(directory.mails + directory.proxies)


@pytest.mark.parametrize("page_size, why", [
    ("0", "Size limit exceeded"),        # no paged-results control: the server's size limit
    ("5000", "Administrative limit exceeded"),  # a page bigger than the server serves
])
def test_no_usable_paging_fails_instead_of_truncating(directory, dump, page_size, why):
    res = dump([directory.uri], "--page-size", page_size)
    assert res.rc == 1
    assert why in res.err
    # what was emitted before the failure is what the engine discards
    assert len(res.lines) < len(directory.proxies)


def test_wrong_password_fails(directory, dump, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("not-the-password\n")
    pw.chmod(0o600)
    res = dump([directory.uri], password_file=pw)
    assert res.rc == 1
    assert "Invalid credentials" in res.err
    assert res.lines == []
    assert "not-the-password" not in res.err


def test_wrong_password_is_not_retried_on_the_next_server(directory, dump, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("not-the-password")
    pw.chmod(0o600)
    res = dump([directory.uri, directory.ldapi_uri], "--verbose", password_file=pw)
    assert res.rc == 1
    assert res.err.count("bind as") == 1 and "ldapi" not in res.err


@pytest.mark.parametrize("content", ["reader-secret", "reader-secret\n", "reader-secret\r\n"])
def test_password_file_one_trailing_newline_stripped(directory, dump, tmp_path, content):
    pw = tmp_path / "pw"
    pw.write_bytes(content.encode())
    pw.chmod(0o600)
    assert dump([directory.uri], "--count", password_file=pw).lines == [str(len(directory.proxies))]


@pytest.mark.parametrize("content, mode, why", [
    ("reader-secret\n", 0o644, "readable or writable by others"),
    ("reader-secret\n", 0o602, "readable or writable by others"),
    ("\n", 0o600, "empty password"),
    ("reader-secret\n\n", 0o600, "Invalid credentials"),  # only one newline is stripped
    (None, None, "No such file"),
])
def test_password_file_refused(directory, dump, tmp_path, content, mode, why):
    pw = tmp_path / "pw"
    if content is not None:
        pw.write_text(content)
        pw.chmod(mode)
    res = dump([directory.uri], password_file=pw)
    assert res.rc == 1 and why in res.err, res.err


def test_unreachable_first_uri_then_good_second(directory, dump, closed_uri):
    res = dump([closed_uri, directory.uri], "--count")
    assert read_ok(res) == [str(len(directory.proxies))]


def test_silent_first_uri_leaves_time_for_the_second(directory, dump):
    # given a first server that takes the connection and never answers
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    uri = "ldap://127.0.0.1:%d/" % silent.getsockname()[1]
    try:
        # when the read may take 30 s in all
        res = dump([uri, directory.uri], "--count", "--timeout-ms", "30000", "--verbose")
    finally:
        silent.close()
    # then the first one gets its share (10 s) and the second one is read
    assert res.rc == 0, res.err
    assert res.lines == [str(len(directory.proxies))]
    assert 9.0 < res.elapsed < 20.0, res.elapsed


def test_no_uri_reachable_names_each(dump, closed_uri):
    other = closed_uri.replace("ldap://", "ldaps://")
    res = dump([closed_uri, other])
    assert res.rc == 1
    assert "no LDAP server usable" in res.err and closed_uri in res.err and other in res.err
    assert "TLS failed" not in res.err  # nothing listened: not a TLS problem


@pytest.mark.parametrize("kind", ["starttls", "ldaps"])
def test_tls_with_the_right_ca(directory, dump, kind):
    uri, opts = (directory.uri, ["--start-tls"]) if kind == "starttls" else (directory.ldaps_uri, [])
    res = dump([uri], "--tls-ca-file", directory.ca, "--count", *opts)
    assert read_ok(res) == [str(len(directory.proxies))]


@pytest.mark.parametrize("kind", ["starttls", "ldaps"])
def test_tls_with_a_wrong_ca_fails(directory, dump, kind):
    uri, opts = (directory.uri, ["--start-tls"]) if kind == "starttls" else (directory.ldaps_uri, [])
    res = dump([uri], "--tls-ca-file", directory.wrong_ca, *opts)
    assert res.rc == 1 and res.lines == []
    assert "no LDAP server usable" in res.err
    assert f"TLS failed (certificate not signed by tls_ca_file {directory.wrong_ca}" in res.err
    if kind == "starttls":
        assert "StartTLS" in res.err


def test_tls_failure_falls_over_to_the_next_uri(directory, dump):
    res = dump([directory.ldaps_uri, directory.uri], "--tls-ca-file", directory.wrong_ca,
               "--start-tls", "--count")
    assert res.rc == 1  # the second one checks the certificate just as well
    res = dump([directory.ldaps_uri, directory.ldapi_uri], "--tls-ca-file", directory.wrong_ca,
               "--count")
    assert read_ok(res) == [str(len(directory.proxies))]  # ldapi: a local socket, no TLS


def test_ldapi(directory, dump):
    assert read_ok(dump([directory.ldapi_uri], "--count")) == [str(len(directory.proxies))]


@pytest.mark.parametrize("base, why", [
    ("ou=DomainDnsZones," + gen_users.BASE, "referred to ldap://127.0.0.1:9/"),
    ("ou=nowhere," + gen_users.BASE, "No such object"),
])
def test_search_errors_fail(directory, dump, base, why):
    res = dump([directory.uri], "--base", base)
    assert res.rc == 1 and why in res.err, res.err


def test_bad_filter_fails(directory, dump):
    res = dump([directory.uri], "--filter", "(objectClass=user")
    assert res.rc == 1 and "Bad search filter" in res.err, res.err


def test_emit_can_stop_the_read(directory, dump):
    res = dump([directory.uri], "--stop-after", "1234")
    assert res.rc == 1
    assert "stopped by the caller after 1234 addresses" in res.err
    assert len(res.lines) == 1234


def test_anonymous_bind_reads_what_anonymous_may(directory, dump):
    # the test ACL lets anonymous read mail but not proxyAddresses
    assert read_ok(dump([directory.uri], password_file=None)) == []
    lines = read_ok(dump([directory.uri], password_file=None, attributes=("mail",)))
    assert sorted(lines) == sorted(directory.mails)


@pytest.mark.parametrize("kind", ["ldap", "starttls", "ldaps"])
def test_frozen_server_times_out(small_directory, dump, kind):
    uri = small_directory.ldaps_uri if kind == "ldaps" else small_directory.uri
    opts = ["--tls-ca-file", small_directory.ca] + (["--start-tls"] if kind == "starttls" else [])
    small_directory.freeze()
    res = dump([uri], "--timeout-ms", "2000", *opts, timeout=20)
    small_directory.thaw()
    assert res.rc == 1 and "timed out" in res.err.lower(), res.err
    assert res.elapsed < 2.0 + 1.0


def test_server_frozen_mid_read_times_out(small_directory, dump):
    # given a read of small pages under way
    start = time.monotonic()
    proc = subprocess.Popen(dump.argv([small_directory.uri], "--page-size", "50",
                                      "--timeout-ms", "3000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    # when the server stops answering
    small_directory.freeze()
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        small_directory.thaw()
    # then the read fails on its deadline, not with what it had so far
    assert first and proc.returncode == 1, err
    assert "timeout (3000 ms) after" in err
    assert time.monotonic() - start < 3.0 + 1.0
    assert len(out.splitlines()) + 1 < len(small_directory.proxies)
