"""syslog - a private syslog daemon for a test: one AF_UNIX SOCK_DGRAM
socket bound in the test's directory, read without blocking.

SyslogReceiver(path) binds at once; lines() returns every datagram received
so far (decoded, in order), wait_line(pattern) polls until one matches
(re.search) and returns it, close() closes and unlinks the socket. It is
what backstopd's [log] socket points at: the lines arrive as glibc's
syslog() sends them, "<PRI>Mmm dd HH:MM:SS ident[pid]: text".
"""
import os
import re
import socket

from .wait import poll


class SyslogReceiver:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.received = []

    def lines(self):
        """Every line received so far, the new ones read now."""
        while True:
            try:
                self.received.append(self.sock.recv(65536).decode(errors="replace"))
            except BlockingIOError:
                return list(self.received)

    def wait_line(self, pattern, timeout=5.0):
        """The first line matching pattern, polled for up to timeout seconds."""
        rx = re.compile(pattern)

        def find():
            return next((ln for ln in self.lines() if rx.search(ln)), None)
        return poll(find, timeout, what="a syslog line matching %r at %s" % (pattern, self.path))

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
