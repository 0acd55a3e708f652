"""[log] socket: backstopd's syslog lines go to the socket it names (a
private receiver here, as a daemon in a chroot or journald's dev-log would
be), and a reload that changes it moves them; refusals from connections
asking at once arrive complete and in order, in fewer send calls than lines
(backstopd batches a loop turn's lines), and with a sink that does not read
while they are logged, none is dropped: backstopd keeps them until it reads."""
import os
import re
import signal

from support.policy import request
from support.replies import USER_UNKNOWN
from support.wait import poll

PID_TAG = r"^<%d>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d backstopd\[%d\]: "
REJECT = r"NOQUEUE: reject: RCPT from [^ ]*\[192\.0\.2\.1\]: 550 5\.1\.1 <%s>: "


def test_refusal_logged_at_socket(redis, backstopd, syslog):
    sink = syslog("log")
    d = backstopd(redis, log={"socket": sink.path})
    assert d.ask(recipient="nobody@example.com") == USER_UNKNOWN("nobody@example.com")
    line = sink.wait_line(REJECT % re.escape("nobody@example.com"))
    # mail.info = 2 * 8 + 6
    assert re.match(PID_TAG % (22, d.pid) + REJECT % "nobody@example\\.com", line), line
    assert re.search(r" reason=unknown_user conn=\d+$", line), line


def test_reload_moves_the_lines(redis, backstopd, syslog):
    first, second = syslog("first"), syslog("second")
    d = backstopd(redis, log={"socket": first.path})
    assert d.ask(recipient="a1@example.com") == USER_UNKNOWN("a1@example.com")
    first.wait_line(REJECT % "a1@example\\.com")

    # the socket alone changes: the lines move, the facility stays mail
    d.write_config(log={"socket": second.path})
    d.reload()
    second.wait_line(r"backstopd\[%d\]: configuration reloaded from " % d.pid)
    assert d.ask(recipient="a2@example.com") == USER_UNKNOWN("a2@example.com")
    line = second.wait_line(REJECT % "a2@example\\.com")
    assert re.match(PID_TAG % (22, d.pid), line), line
    assert not [ln for ln in first.lines() if "a2@example.com" in ln or "reloaded" in ln], \
        "a line still went to the old socket"

    # the facility alone changes: same socket, local0.info = 16 * 8 + 6
    d.write_config(log={"syslog_facility": "local0"})
    d.reload()
    assert d.ask(recipient="a3@example.com") == USER_UNKNOWN("a3@example.com")
    assert re.match(PID_TAG % (134, d.pid), second.wait_line(REJECT % "a3@example\\.com"))


def test_nothing_listening_then_a_daemon(redis, backstopd, syslog, test_dir):
    """A socket nobody has bound yet: the start-up lines (before the loop
    runs, unbatched) are dropped; a line logged while the loop runs waits
    in the backlog, and once a daemon binds the path it gets there with no
    further request (the retry timer; a connect at most once a second),
    after the warning with the number dropped, before the next line."""
    path = os.path.join(test_dir.root, "late.sock")
    d = backstopd(redis, log={"socket": path})
    assert d.ask(recipient="early@example.com") == USER_UNKNOWN("early@example.com")
    sink = syslog("late")
    assert sink.path == path
    sink.wait_line(REJECT % "early@example\\.com")
    d.ask(recipient="late@example.com")
    sink.wait_line(REJECT % "late@example\\.com")
    lines = sink.lines()
    order = [i for i, ln in enumerate(lines)
             if re.search(r"warning: \d+ log lines dropped|<(early|late)@example\.com>", ln)]
    assert len(order) == 3 and "log lines dropped" in lines[order[0]], lines
    assert "<early@" in lines[order[1]] and "<late@" in lines[order[2]], lines


CONNS, ROUNDS = 8, 12
SLOW_CONNS = 16  # x ROUNDS lines, more than the sink queues, fewer than BS_LOG_BATCH_MAX


def refuse_rounds(d, n, rcpt, after_round=None):
    """ROUNDS rounds of n connections asking at once (all sent before any
    answer is read), each answered 550 5.1.1; after_round(r) after each."""
    conns = [d.conn() for _ in range(n)]
    try:
        for r in range(ROUNDS):
            for i, c in enumerate(conns):
                assert c.send(request(recipient=rcpt % (i, r)))
            for i, c in enumerate(conns):
                assert c.read_reply() == USER_UNKNOWN(rcpt % (i, r))
            if after_round:
                after_round(r)
    finally:
        for c in conns:
            c.close()


def in_order(lines, n, rcpt, pattern):
    """Each connection's refusal lines name its recipients in the order asked."""
    refusals = [ln for ln in lines if "NOQUEUE: reject:" in ln]
    for i in range(n):
        asked = [rcpt % (i, r) for r in range(ROUNDS)]
        got = [m.group(1) for m in (re.search(pattern % i, ln) for ln in refusals) if m]
        assert got == asked, "connection %d: lines %r" % (i, got)
    return refusals


def test_refusals_batched_complete_in_order(redis, backstopd, syslog):
    """Refusals over CONNS connections asking at once: every line reaches
    the daemon, each connection's in the order asked, and the loop sends
    them in fewer calls than lines (one sendmmsg a loop turn)."""
    sink = syslog("batch")
    d = backstopd(redis, log={"socket": sink.path}, ratelimit={"invalid_recipients": "0"},
                  harvest={"threshold": "0"})
    rcpt = "c%dr%d@example.com"
    sink.wait_line(r"backstopd \S+ started")

    def drained(r):  # a line may follow its answer by a loop turn
        poll(lambda: sum("NOQUEUE: reject:" in ln for ln in sink.lines()) >= CONNS * (r + 1),
             5, interval=0.001, what="round %d's lines" % r)
    refuse_rounds(d, CONNS, rcpt, drained)

    d.signal(signal.SIGUSR1)
    stats = sink.wait_line(r"statistics \(SIGUSR1\):")
    in_order(sink.lines(), CONNS, rcpt, r"<(c%dr\d+@example\.com)>")
    counters = dict(re.findall(r" (log_\w+)=(\d+)", stats))
    sent, calls = int(counters["log_sent"]), int(counters.get("log_send_calls", 0))
    assert counters.get("log_dropped", "0") == "0", stats
    assert sent >= CONNS * ROUNDS and 0 < calls < sent, stats
    print("%d log lines in %d send calls" % (sent, calls))


def test_refusals_kept_while_the_sink_does_not_read(redis, backstopd, syslog):
    """Refusals over SLOW_CONNS connections asking at once, the sink not
    read until all are answered (its queue holds net.unix.max_dgram_qlen
    lines): backstopd keeps the rest in its backlog and sends them once the
    sink reads, every connection's lines complete and in order, none
    dropped."""
    sink = syslog("slow")
    d = backstopd(redis, log={"socket": sink.path}, ratelimit={"invalid_recipients": "0"},
                  harvest={"threshold": "0"})
    rcpt = "s%dr%d@example.com"
    sink.wait_line(r"backstopd \S+ started")
    refuse_rounds(d, SLOW_CONNS, rcpt)

    d.signal(signal.SIGUSR1)
    stats = sink.wait_line(r"statistics \(SIGUSR1\):")
    refusals = in_order(sink.lines(), SLOW_CONNS, rcpt, r"<(s%dr\d+@example\.com)>")
    assert len(refusals) == SLOW_CONNS * ROUNDS
    counters = dict(re.findall(r" (log_\w+)=(\d+)", stats))
    assert counters.get("log_dropped", "0") == "0", stats
    assert not [ln for ln in sink.lines() if "log lines dropped" in ln]
