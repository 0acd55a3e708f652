"""policy - the Postfix policy delegation protocol, client side.

    request(**kw)   a Postfix 3.7 RCPT request as bytes; attr=None drops an
                    attribute, unknown keywords are appended, values are str
                    or bytes
    PolicyConn      one connection (unix path or (host, port)): ask(),
                    ask_raw(), send() for pipelining and byte-by-byte
                    writes, read_reply(), expect_closed(), is_open()
    Closed          the server closed before a full reply (partial bytes kept)

A reply is checked against the protocol's shape (REPLY_RE) before it is
returned; a malformed one, or none within the timeout, fails the test.
"""
import socket
import time

from .replies import REPLY_RE

# the attributes Postfix 3.7 sends for RCPT, in its order
POSTFIX_ATTRS = (
    ("request", "smtpd_access_policy"),
    ("protocol_state", "RCPT"),
    ("protocol_name", "ESMTP"),
    ("helo_name", "mx.sender.example"),
    ("queue_id", ""),
    ("sender", "someone@sender.example"),
    ("recipient", "user@example.com"),
    ("recipient_count", "0"),
    ("client_address", "192.0.2.1"),
    ("client_name", "mx.sender.example"),
    ("reverse_client_name", "mx.sender.example"),
    ("instance", "a1b2.6425d3c4.8e2f1.0"),
    ("sasl_method", ""),
    ("sasl_username", ""),
    ("sasl_sender", ""),
    ("size", "0"),
    ("ccert_subject", ""),
    ("ccert_issuer", ""),
    ("ccert_fingerprint", ""),
    ("ccert_pubkey_fingerprint", ""),
    ("encryption_protocol", ""),
    ("encryption_cipher", ""),
    ("encryption_keysize", "0"),
    ("etrn_domain", ""),
    ("stress", ""),
    ("server_address", "127.0.0.1"),
    ("server_port", "25"),
    ("compatibility_level", "3.6"),
    ("mail_version", "3.7.11"),
)


def request(**kw):
    """A Postfix RCPT request (bytes, ending in the empty line)."""
    vals = dict(POSTFIX_ATTRS)
    names = [n for n, _ in POSTFIX_ATTRS] + [k for k in kw if k not in vals]
    vals.update(kw)
    out = []
    for n in names:
        v = vals[n]
        if v is None:
            continue
        out.append(n.encode() + b"=" + (v.encode() if isinstance(v, str) else v) + b"\n")
    return b"".join(out) + b"\n"


policy_request = request  # the name the older harnesses import


class Closed(Exception):
    """The server closed the connection (EOF or reset) before a full reply."""

    def __init__(self, partial=b""):
        super().__init__("connection closed by backstopd (partial reply %r)" % partial)
        self.partial = partial


class PolicyConn:
    def __init__(self, addr, timeout=10.0):
        """addr: a unix socket path, or (host, port) for TCP (no Nagle delay)."""
        if isinstance(addr, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(addr)
        else:
            self.sock = socket.create_connection(addr, timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.last_latency = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        """Send; False when the peer already closed (EPIPE/ECONNRESET)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def send_slowly(self, data, chunk=1, pause=0.0, every=1):
        """data in pieces of `chunk` bytes, sleeping `pause` s after every
        `every`-th piece (byte-by-byte writes, chunked writes)."""
        for n, i in enumerate(range(0, len(data), chunk)):
            self.send(data[i:i + chunk])
            if pause and n % every == 0:
                time.sleep(pause)

    def _recv(self, deadline):
        """One recv() before deadline: bytes, b"" at EOF/reset, None on timeout."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.sock.settimeout(left)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return None if time.monotonic() >= deadline else self._recv(deadline)
        except ConnectionResetError:
            return b""

    def read_raw_reply(self, timeout=None):
        """Bytes up to and including the first empty line; raises Closed."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self.buf:
            chunk = self._recv(deadline)
            if chunk is None:
                raise AssertionError("no reply within %.1fs (got %r so far)" % (timeout, self.buf))
            if not chunk:
                raise Closed(self.buf)
            self.buf += chunk
        i = self.buf.index(b"\n\n") + 2
        reply, self.buf = self.buf[:i], self.buf[i:]
        return reply

    def read_reply(self, timeout=None):
        raw = self.read_raw_reply(timeout)
        assert REPLY_RE.match(raw), "malformed reply %r" % raw
        return raw.decode()

    def ask(self, timeout=None, **kw):
        return self.ask_raw(request(**kw), timeout)

    def ask_raw(self, data, timeout=None):
        t0 = time.monotonic()
        if not self.send(data):
            raise Closed()
        r = self.read_reply(timeout)
        self.last_latency = time.monotonic() - t0
        return r

    def expect_closed(self, timeout=5.0, what="connection"):
        """Assert the server closes within timeout without sending a byte."""
        deadline = time.monotonic() + timeout
        got = self.buf
        while True:
            chunk = self._recv(deadline)
            if chunk is None:
                raise AssertionError("%s: not closed within %.1fs (received %r)" % (what, timeout, got))
            if not chunk:
                break
            got += chunk
        assert got == b"", "%s: closed, but only after sending %r" % (what, got)

    def is_open(self):
        """True if the server has not closed (no EOF pending)."""
        self.sock.setblocking(False)
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(self.timeout)

    def reset(self):
        """Close with an RST (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.close()
