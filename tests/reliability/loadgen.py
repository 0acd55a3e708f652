"""
loadgen.py - a closed-loop policy load generator (one thread, epoll)

    g = LoadGen(addr, nconn=64, kinds=KINDS, deadline_s=0.35)
    res = g.run(total=30000)            # or duration_s=...; rate=... paces it
    res.answered, res.late, res.max_latency, res.unexpected ...

Each of nconn connections has at most one request in flight (Postfix never
pipelines): it sends a request, waits for the reply, sends the next. The
latency of a request is the time from the end of its send to the arrival of
the end of its reply, as this process sees it (so it includes our own
scheduling delay: the figures are an upper bound of backstopd's).

On TCP connections the arrival time is the kernel's receive timestamp of
the reply (SO_TIMESTAMPNS), so a moment when this process was not scheduled
(a loaded 2-core machine) does not count against backstopd; the latency seen
by this process after that is recorded too (user_max_latency).

A request that has no reply after hang_s counts as unanswered (its
connection is closed and reopened); a connection the server closes counts
its request in flight as unanswered. Every reply is checked against the
allowed replies of its kind (bytes). Standard library only: scripts and
tests/reliability/test_soak.py import it.
"""
import collections
import selectors
import socket
import struct
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux


class Kind:
    """One kind of request: a few variants of its bytes and the replies allowed."""

    def __init__(self, name, requests, allowed):
        self.name = name
        self.requests = list(requests)
        self.allowed = set(allowed)


class Result:
    def __init__(self):
        self.sent = 0
        self.answered = 0
        self.unanswered = 0      # hung or closed by the server
        self.closed_by_server = 0
        self.hangs = 0
        self.connect_errors = 0
        self.late = 0            # answered, but later than deadline_s
        self.late_samples = []   # (latency, t_send since start, kind, reply)
        self.max_latency = 0.0
        self.user_max_latency = 0.0  # as this process saw it (includes its own scheduling delay)
        self.hist = collections.Counter()  # latency in whole ms -> count
        self.replies = collections.Counter()  # (kind, reply) -> count
        self.unexpected = 0
        self.unexpected_samples = []
        self.elapsed = 0.0
        self.t_start = 0.0

    def percentile(self, q):
        n = sum(self.hist.values())
        if not n:
            return 0.0
        want = q * n
        acc = 0
        for ms in sorted(self.hist):
            acc += self.hist[ms]
            if acc >= want:
                return ms / 1000.0
        return max(self.hist) / 1000.0

    def summary(self):
        return ("sent %d, answered %d, unanswered %d (hangs %d, closed by server %d), "
                "late %d, unexpected %d, max latency %.1f ms (as seen by the client process %.1f ms), "
                "p99 %.0f ms, p50 %.0f ms, %.0f req/s" % (
                    self.sent, self.answered, self.unanswered, self.hangs, self.closed_by_server,
                    self.late, self.unexpected, self.max_latency * 1000, self.user_max_latency * 1000,
                    self.percentile(.99) * 1000,
                    self.percentile(.5) * 1000, self.answered / self.elapsed if self.elapsed else 0))


class _Conn:
    __slots__ = ("sock", "idx", "t_send", "t_send_rt", "kind", "buf", "busy", "ts")

    def __init__(self, sock, idx):
        self.sock = sock
        self.idx = idx
        self.t_send = 0.0
        self.t_send_rt = 0.0
        self.ts = False  # kernel receive timestamps on
        self.kind = None
        self.buf = b""
        self.busy = False


class LoadGen:
    def __init__(self, addr, nconn, kinds, deadline_s, hang_s=5.0, progress=None):
        self.addr = addr
        self.nconn = nconn
        self.kinds = kinds
        self.deadline_s = deadline_s
        self.hang_s = hang_s
        self.progress = progress  # fn(result) about once a second
        self.sel = selectors.DefaultSelector()
        self.conns = []

    def _open(self, idx):
        if isinstance(self.addr, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5.0)
            s.connect(self.addr)
        else:
            s = socket.create_connection(self.addr, timeout=5.0)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = _Conn(s, idx)
        if not isinstance(self.addr, str):
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                c.ts = True
            except OSError:
                pass
        self.sel.register(s, selectors.EVENT_READ, c)
        return c

    def _reopen(self, c, res):
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        for _ in range(50):
            try:
                n = self._open(c.idx)
                self.conns[c.idx] = n
                return n
            except OSError:
                res.connect_errors += 1
                time.sleep(0.1)
        raise AssertionError("cannot reconnect to backstopd")

    def close(self):
        for c in self.conns:
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
        self.conns = []

    def run(self, total=None, duration_s=None, rate=None, stop_event=None):
        """Send total requests (or for duration_s), at most rate per second
        overall if given; returns a Result once every request is answered
        (or counted as unanswered). Connections stay open: call close()."""
        res = Result()
        if not self.conns:
            self.conns = [self._open(i) for i in range(self.nconn)]
        ready = collections.deque(self.conns)
        kinds = self.kinds
        nk = len(kinds)
        t0 = res.t_start = time.monotonic()
        t_end = t0 + duration_s if duration_s else None
        last_progress = t0
        last_hang_check = t0
        issued = 0
        inflight = 0
        mono = time.monotonic
        wall = time.time
        unpack = struct.unpack
        deadline_s = self.deadline_s
        hist = res.hist
        replies = res.replies
        select = self.sel.select

        while True:
            now = mono()
            issuing = (total is None or issued < total) and (t_end is None or now < t_end) and \
                (stop_event is None or not stop_event.is_set())
            if not issuing and inflight == 0:
                break
            timeout = 0.05
            while issuing and ready:
                if rate:
                    slot = t0 + issued / rate
                    if now < slot:
                        timeout = min(timeout, slot - now)
                        break
                c = ready.popleft()
                k = kinds[issued % nk]
                req = k.requests[(issued // nk) % len(k.requests)]
                try:
                    n = c.sock.send(req)
                    if n < len(req):
                        c.sock.setblocking(True)
                        c.sock.sendall(req[n:])
                        c.sock.setblocking(False)
                except OSError:
                    res.closed_by_server += 1
                    res.unanswered += 1
                    res.sent += 1
                    issued += 1
                    ready.append(self._reopen(c, res))
                    continue
                c.t_send = mono()
                c.t_send_rt = wall()
                c.kind = k
                c.busy = True
                c.buf = b""
                issued += 1
                res.sent += 1
                inflight += 1
                if total is not None and issued >= total:
                    break
            for key, _ in select(timeout):
                c = key.data
                t_rx = None
                try:
                    if c.ts:
                        data, anc, _, _ = c.sock.recvmsg(65536, 64)
                        for lvl, typ, cd in anc:
                            if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(cd) >= 16:
                                sec, ns = unpack("qq", cd[:16])
                                t_rx = sec + ns * 1e-9
                    else:
                        data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                t = mono()
                if not data:
                    if c.busy:
                        inflight -= 1
                        res.unanswered += 1
                        res.closed_by_server += 1
                    else:
                        res.closed_by_server += 1
                    n = self._reopen(c, res)
                    ready.append(n)
                    continue
                if not c.busy:
                    res.unexpected += 1
                    if len(res.unexpected_samples) < 10:
                        res.unexpected_samples.append(("(unsolicited)", data[:200]))
                    continue
                c.buf += data
                if not c.buf.endswith(b"\n\n"):
                    if len(c.buf) > 4096:
                        res.unexpected += 1
                    continue
                ulat = t - c.t_send
                lat = t_rx - c.t_send_rt if t_rx is not None else ulat
                if ulat > res.user_max_latency:
                    res.user_max_latency = ulat
                c.busy = False
                inflight -= 1
                res.answered += 1
                hist[int(lat * 1000)] += 1
                if lat > res.max_latency:
                    res.max_latency = lat
                if lat > deadline_s:
                    res.late += 1
                    if len(res.late_samples) < 200:
                        res.late_samples.append((lat, c.t_send - t0, c.kind.name, c.buf))
                reply = c.buf
                replies[(c.kind.name, reply)] += 1
                if reply not in c.kind.allowed:
                    res.unexpected += 1
                    if len(res.unexpected_samples) < 10:
                        res.unexpected_samples.append((c.kind.name, reply))
                ready.append(c)
            now = mono()
            if now - last_hang_check > 0.5:
                last_hang_check = now
                for c in list(self.conns):
                    if c.busy and now - c.t_send > self.hang_s:
                        res.hangs += 1
                        res.unanswered += 1
                        inflight -= 1
                        c.busy = False
                        ready.append(self._reopen(c, res))
            if self.progress and now - last_progress >= 1.0:
                last_progress = now
                res.elapsed = now - t0
                self.progress(res)
        res.elapsed = mono() - t0
        return res
