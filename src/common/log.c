/*
 * log.c - our own syslog client, and stderr with -f (log.h)
 *
 * PROVIDES
 *   bs_log_open            (re)open the syslog socket (_PATH_LOG) with an
 *                          ident and a facility; choose whether lines are
 *                          copied to stderr. Closes the previous socket.
 *   bs_log_open_path       the same with another socket path (tests, a
 *                          daemon listening elsewhere).
 *   bs_log                 one line at a level, if the level is enabled.
 *   bs_log_text            the same for text already formatted (a length,
 *                          no format string): copied, not formatted again.
 *   bs_fatal, bs_panic     one line, then exit(1) / abort(); never return.
 *                          Their line goes to stderr as well, with or
 *                          without -f: a start-up failure is never silent.
 *   bs_log_batch           on: queue syslog lines in a backlog (BATCHING);
 *                          off: flush once, drop the rest, send each
 *                          line as logged.
 *   bs_log_flush           send the backlog: one sendmmsg; what is not
 *                          taken stays queued.
 *   bs_log_pending         lines in the backlog.
 *   bs_log_retry_ms        when a flush of the backlog could get further.
 *   bs_log_hold_ms         when the backlog is due (info lines wait for
 *                          company, BS_LOG_HOLD_MS at most).
 *   bs_log_stats           the syslog counters (sent, dropped, connects,
 *                          send calls).
 *   bs_log_facility_valid  1 if a facility name is known, else 0.
 *   bs_log_level_parse     level word -> enum bs_log_level, or -1.
 *
 * LINES
 *   As Postfix writes them: "warning: ", "error: ", "fatal: ", "panic: "
 *   before the text; info and debug have no prefix. On stderr a line reads
 *   "2024-05-01 12:00:00.123 backstopd[1234]: warning: text". Each line is
 *   formatted into a fixed buffer of BS_LOG_LINE_MAX bytes (longer text is
 *   cut and ends in "..."), and any control character that reached it is
 *   replaced by '?' (a NUL in bs_log_text's text too), so one call is one
 *   line whatever the arguments hold.
 *
 * SYSLOG
 *   Not syslog(3): glibc's retries socket()+connect() for every line while
 *   nothing listens, and blocks the caller while the daemon's queue is
 *   full. Here one AF_UNIX socket (SOCK_DGRAM, or SOCK_STREAM if the daemon
 *   only offers that: connect says EPROTOTYPE), non-blocking and
 *   close-on-exec, is connected at bs_log_open (call it before chroot or
 *   dropping privileges). A message is what glibc sends, so rsyslog and
 *   journald read it the same: "<PRI>Mmm dd HH:MM:SS ident[pid]: text"
 *   (PRI = facility | priority, local time, C-locale month; on a stream
 *   socket followed by a '\0'). The pid is taken at bs_log_open: a process
 *   that forks must call it again in the child. The time stamp is rebuilt
 *   only when the second changes. Unbatched, each line is a batch of one
 *   (sendmmsg, or send on a stream; MSG_DONTWAIT|MSG_NOSIGNAL):
 *   - EAGAIN/ENOBUFS (the daemon is behind): the line is dropped and
 *     counted, never waited for;
 *   - ECONNREFUSED/ENOTCONN/ECONNRESET/EPIPE (the daemon restarted): the
 *     socket is closed and connected again at once, and the line sent once
 *     more; if that fails too, no connect for BS_LOG_RECONNECT_MS;
 *   - a stream write cut short: the socket is closed, the next line
 *     connects again;
 *   - no socket: a connect is tried at most once per BS_LOG_RECONNECT_MS
 *     (CLOCK_MONOTONIC_COARSE); lines in between are dropped and counted
 *     (with -f they still reach stderr).
 *   The first line to get through after drops is preceded by one
 *   "warning: N log lines dropped (syslog not accepting them)".
 *
 * BATCHING
 *   While bs_log_batch(1) holds, every line is formatted into its final
 *   message at once (its time stamp is when it was logged) and queued in a
 *   static backlog: BS_LOG_BATCH_MAX messages, BS_LOG_BATCH_BYTES bytes
 *   (256 each: several loop turns of a 64-connection spam wave while a
 *   daemon with net.unix.max_dgram_qlen = 10 catches up; a message takes
 *   its length, room for BS_LOG_MSG_MAX is kept for the next one).
 *   bs_log_flush is one attempt: one sendmmsg(MSG_DONTWAIT|MSG_NOSIGNAL) of
 *   the whole backlog; what the socket takes leaves it, the rest
 *   (EAGAIN/ENOBUFS, or fewer taken, or no socket yet) stays queued in
 *   order for the next flush: a line waits until the daemon takes it, it
 *   is not dropped. A peer gone reconnects and sends once more, as for one
 *   line; a message a datagram socket refuses for itself (EMSGSIZE...) is
 *   dropped and counted so it cannot block the ones behind it. On a stream
 *   socket, one send per message, stopping at the first not taken whole.
 *   A line that finds the backlog full flushes it once; if that makes no
 *   room, the line is dropped and counted, and the next line queued is
 *   preceded by the "N log lines dropped" warning, at the place of the
 *   drops. The caller chooses when to flush; bs_log_hold_ms says when the
 *   backlog is due: once its oldest line has waited BS_LOG_HOLD_MS
 *   (CLOCK_MONOTONIC_COARSE) or BS_LOG_HOLD_LINES are queued, so a daemon
 *   logging a line every few requests wakes the syslog daemon every 20 ms,
 *   not once a request. A warn or error line is queued behind the backlog
 *   (order kept) and flushed at once. fatal and panic flush once, then send their line
 *   once (to_syslog), never waiting. bs_log_batch(0) and bs_log_open (a
 *   reload) flush once and drop and count what is left. A forked child
 *   drops its copy of the parent's queue at bs_log_open. The stderr copy
 *   is never queued. send_calls counts send and sendmmsg calls.
 *
 * STATE
 *   Until bs_log_open is first called, lines go to stderr only: a start-up
 *   error (a bad config) is seen by whoever started the program. After it,
 *   lines go to syslog, and to stderr too if to_stderr (fatal and panic
 *   lines always). One process-wide state; not thread-safe (backstopd logs
 *   from its one loop thread).
 *
 * NEVER
 *   Allocates. Blocks: every syslog send is non-blocking; only the write(2)
 *   of the stderr copy may wait. Retries a line more than once.
 *   Returns from bs_fatal (exit status 1) or bs_panic (abort).
 */
#define _GNU_SOURCE /* sendmmsg */
#include "backstop/log.h"

#include <errno.h>
#include <paths.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define BS_LOG_LINE_MAX 2048
#define BS_LOG_IDENT_MAX 64
#define BS_LOG_RECONNECT_MS 1000 /* at most one connect attempt a second */
/* "<191>" + "Mmm dd HH:MM:SS " + "ident[pid]: " + line + '\0' */
#define BS_LOG_MSG_MAX (5 + 16 + BS_LOG_IDENT_MAX + 24 + BS_LOG_LINE_MAX + 1)

int bs_log_level = BS_LOG_INFO;

static const struct {
    const char *name;
    int facility;
} facilities[] = {
    {"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},     {"local0", LOG_LOCAL0},
    {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},
    {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

/* One row per enum bs_log_level, in its order; fatal and panic are below. */
static const struct {
    const char *name;   /* the config word */
    const char *prefix; /* before the text, as Postfix does */
    int priority;       /* syslog */
} levels[] = {
    [BS_LOG_ERROR] = {"error", "error: ", LOG_ERR},
    [BS_LOG_WARN] = {"warn", "warning: ", LOG_WARNING},
    [BS_LOG_INFO] = {"info", "", LOG_INFO},
    [BS_LOG_DEBUG] = {"debug", "", LOG_DEBUG},
};

static char log_ident[BS_LOG_IDENT_MAX] = "backstopd";
static int log_opened;
static int log_to_stderr = 1;

/* The syslog client: one socket, process-wide (see SYSLOG above). */
static struct {
    int fd;                          /* -1: not connected */
    int stream;                      /* fd is SOCK_STREAM: messages end in '\0' */
    int facility;                    /* LOG_MAIL ... */
    long pid;                        /* at bs_log_open */
    long long retry_at_ms;           /* CLOCK_MONOTONIC_COARSE: no connect before */
    time_t stamp_sec;                /* stamp is for this second */
    size_t stamp_len, tag_len;       /* of stamp, tag */
    char stamp[20];                  /* "Mmm dd HH:MM:SS " */
    char tag[BS_LOG_IDENT_MAX + 24]; /* "ident[pid]: " */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    unsigned long long unreported; /* dropped since the last warning about it */
    struct bs_log_stats stats;
} sl = {.fd = -1, .stamp_sec = -1};

static void batch_flush(void); /* the batch: below to_syslog */
static void batch_reset(void);
static void batch_discard(void);

/* find_facility - index into facilities[], or -1 */
static int find_facility(const char *name)
{
    for (size_t i = 0; i < sizeof facilities / sizeof facilities[0]; i++) {
        if (strcasecmp(name, facilities[i].name) == 0)
            return (int)i;
    }
    return -1;
}

int bs_log_facility_valid(const char *name)
{
    return name != NULL && find_facility(name) >= 0;
}

int bs_log_level_parse(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof levels / sizeof levels[0]; i++) {
        if (strcasecmp(name, levels[i].name) == 0)
            return (int)i;
    }
    return -1;
}

/* now_ms - CLOCK_MONOTONIC_COARSE in milliseconds (a vDSO read, no syscall) */
static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* sl_close - close the socket, if any; the next line may connect at once */
static void sl_close(void)
{
    if (sl.fd >= 0)
        close(sl.fd);
    sl.fd = -1;
}

/* try_type - a non-blocking socket of type connected to sl.path: 0, or -1
 * with errno set and nothing left open */
static int try_type(int type)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e;

    if (fd < 0)
        return -1;
    memcpy(sun.sun_path, sl.path, sizeof sun.sun_path);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    sl.fd = fd;
    sl.stream = type == SOCK_STREAM;
    return 0;
}

/*
 * sl_connect - connect to sl.path, a datagram socket, else a stream one.
 * Returns 0 (sl.fd open) or -1 (counted; no attempt again before
 * BS_LOG_RECONNECT_MS). now: now_ms().
 */
static int sl_connect(long long now)
{
    sl_close();
    sl.stats.connects++;
    if (try_type(SOCK_DGRAM) == 0 || (errno == EPROTOTYPE && try_type(SOCK_STREAM) == 0))
        return 0;
    sl.stats.connect_failures++;
    sl.retry_at_ms = now + BS_LOG_RECONNECT_MS;
    return -1;
}

/* bs_log_open_path - close the old socket first, so a reload can change
 * ident and facility; connect now, while the path is still reachable */
void bs_log_open_path(const char *ident, const char *facility, int to_stderr, const char *path)
{
    int f = facility != NULL ? find_facility(facility) : -1;
    int n;

    if (log_opened && sl.pid == (long)getpid()) {
        batch_flush(); /* queued lines go where and as they were logged */
        batch_discard();
    } else {
        batch_reset(); /* a forked child's copy of its parent's queue */
    }

    snprintf(log_ident, sizeof log_ident, "%s", ident != NULL ? ident : "backstopd");
    sl.facility = f >= 0 ? facilities[f].facility : LOG_MAIL;
    sl.pid = (long)getpid();
    n = snprintf(sl.tag, sizeof sl.tag, "%s[%ld]: ", log_ident, sl.pid);
    sl.tag_len = n > 0 && (size_t)n < sizeof sl.tag ? (size_t)n : 0;
    snprintf(sl.path, sizeof sl.path, "%s", path != NULL ? path : _PATH_LOG);
    tzset(); /* the zone is read now, not from a chroot later */
    sl.stamp_sec = -1;
    log_opened = 1;
    log_to_stderr = to_stderr;
    sl_connect(now_ms());
}

void bs_log_open(const char *ident, const char *facility, int to_stderr)
{
    bs_log_open_path(ident, facility, to_stderr, _PATH_LOG);
}

void bs_log_stats(struct bs_log_stats *out)
{
    *out = sl.stats;
}

/* put_stamp - sl.stamp for the current second: "Dec  2 07:05:09 " as glibc's
 * "%h %e %T" in the C locale; localtime_r once a second at most */
static void put_stamp(void)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    time_t now = time(NULL);
    struct tm tm;
    char *s = sl.stamp;

    if (now == sl.stamp_sec)
        return;
    sl.stamp_sec = now;
    if (localtime_r(&now, &tm) == NULL || tm.tm_mon < 0 || tm.tm_mon > 11) {
        sl.stamp_len = 0; /* no stamp: the daemon adds its own */
        return;
    }
    memcpy(s, months + 3 * tm.tm_mon, 3);
    s[3] = ' ';
    s[4] = tm.tm_mday >= 10 ? (char)('0' + tm.tm_mday / 10) : ' ';
    s[5] = (char)('0' + tm.tm_mday % 10);
    s[6] = ' ';
    s[7] = (char)('0' + tm.tm_hour / 10);
    s[8] = (char)('0' + tm.tm_hour % 10);
    s[9] = ':';
    s[10] = (char)('0' + tm.tm_min / 10);
    s[11] = (char)('0' + tm.tm_min % 10);
    s[12] = ':';
    s[13] = (char)('0' + tm.tm_sec / 10); /* 60: a leap second */
    s[14] = (char)('0' + tm.tm_sec % 10);
    s[15] = ' ';
    sl.stamp_len = 16;
}

/* Outcome of one send. */
enum { SENT, BUSY, GONE, FAILED };

/*
 * sl_format - the message for priority and text[0..len) into out (room for
 * BS_LOG_MSG_MAX bytes; text cut to fit): its length. The time stamp is
 * the time of this call.
 */
static size_t sl_format(char *out, int priority, const char *text, size_t len)
{
    unsigned pri = (unsigned)(sl.facility | (priority & LOG_PRIMASK));
    size_t n = 0;

    out[n++] = '<';
    if (pri >= 100)
        out[n++] = (char)('0' + pri / 100);
    if (pri >= 10)
        out[n++] = (char)('0' + pri / 10 % 10);
    out[n++] = (char)('0' + pri % 10);
    out[n++] = '>';
    put_stamp();
    memcpy(out + n, sl.stamp, sl.stamp_len);
    n += sl.stamp_len;
    memcpy(out + n, sl.tag, sl.tag_len);
    n += sl.tag_len;
    if (len > BS_LOG_MSG_MAX - 1 - n)
        len = BS_LOG_MSG_MAX - 1 - n;
    memcpy(out + n, text, len);
    n += len;
    if (sl.stream)
        out[n++] = '\0'; /* the stream's message separator, as glibc */
    return n;
}

/* send_failed - the outcome of a send that did not take a whole message
 * (w: what it returned, errno as it left it); a peer gone, or any failure
 * on a stream, closes the socket */
static int send_failed(ssize_t w)
{
    int gone;

    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
        return BUSY;
    gone = w < 0 &&
           (errno == ECONNREFUSED || errno == ENOTCONN || errno == ECONNRESET || errno == EPIPE);
    if (gone || sl.stream) /* a stream cut mid-message cannot go on */
        sl_close();
    return gone ? GONE : FAILED;
}

/* sl_send_raw - one formatted message msg[0..n) on sl.fd: SENT, or as
 * send_failed */
static int sl_send_raw(const char *msg, size_t n)
{
    ssize_t w;

    sl.stats.send_calls++;
    w = send(sl.fd, msg, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return w == (ssize_t)n ? SENT : send_failed(w);
}

static unsigned sl_deliver_many(struct iovec *iov, unsigned n, int *how);

/*
 * sl_deliver - one message for priority and text[0..len), sent as a batch
 * of one (and once more on a new socket if the peer went). Returns SENT;
 * BUSY (the daemon is behind: try later); GONE (the peer went away: the
 * socket was closed); FAILED (any other error; on a stream socket, or a
 * stream write cut short, the socket was closed).
 */
static int sl_deliver(int priority, const char *text, size_t len)
{
    char msg[BS_LOG_MSG_MAX];
    struct iovec iov = {.iov_base = msg, .iov_len = sl_format(msg, priority, text, len)};
    int how = BUSY;

    return sl_deliver_many(&iov, 1, &how) == 1 ? SENT : how;
}

/* sl_ready - 1 if sl.fd is open or connects now (a connect at most once
 * per BS_LOG_RECONNECT_MS), else 0 */
static int sl_ready(void)
{
    long long now;

    if (sl.fd >= 0)
        return 1;
    now = now_ms();
    return now >= sl.retry_at_ms && sl_connect(now) == 0;
}

/* count_dropped - n lines not sent: counted, and told at the next one sent */
static void count_dropped(unsigned long long n)
{
    sl.stats.dropped += n;
    sl.unreported += n;
}

/* drop_warning - the text of the warning about sl.unreported dropped lines
 * into text (96 bytes): its length */
static size_t drop_warning(char text[static 96])
{
    int n = snprintf(text, 96, "warning: %llu log lines dropped (syslog not accepting them)",
                     sl.unreported);

    return n > 0 && n < 96 ? (size_t)n : 0;
}

/*
 * to_syslog - one cleaned line (len bytes) to the syslog socket: sent, or
 * dropped and counted. The first line through after drops is preceded by a
 * warning with their number.
 */
static void to_syslog(int priority, const char *line, size_t len)
{
    if (!sl_ready()) {
        count_dropped(1);
        return;
    }
    if (sl.unreported) {
        char warn[96];

        if (sl_deliver(LOG_WARNING, warn, drop_warning(warn)) != SENT) {
            count_dropped(1);
            return;
        }
        sl.stats.sent++;
        sl.unreported = 0;
    }
    if (sl_deliver(priority, line, len) == SENT)
        sl.stats.sent++;
    else
        count_dropped(1);
}

/* The backlog: messages formatted when logged, sent at bs_log_flush, kept
 * in order until the socket takes them (see BATCHING above). */
static struct {
    int on;                              /* bs_log_batch(1) */
    unsigned n;                          /* messages queued: iov[0..n), oldest first */
    long long first_ms;                  /* when iov[0]'s line (or an older one) was queued */
    size_t used;                         /* end of their bytes in buf (they start at iov[0]) */
    struct iovec iov[BS_LOG_BATCH_MAX];  /* each into buf */
    struct mmsghdr mm[BS_LOG_BATCH_MAX]; /* for sendmmsg, over iov */
    char buf[BS_LOG_BATCH_BYTES];
} batch;

_Static_assert(BS_LOG_BATCH_BYTES >= 2 * BS_LOG_MSG_MAX, "the backlog holds a warning and a line");
_Static_assert(BS_LOG_BATCH_MAX >= 2 && BS_LOG_BATCH_MAX <= UIO_MAXIOV, "one sendmmsg takes all");
_Static_assert(BS_LOG_HOLD_LINES < BS_LOG_BATCH_MAX, "company comes before the backlog is full");

/*
 * sl_send_many - iov[0..n) (formatted messages) on sl.fd, in order: how
 * many the socket took, the first ones; when none, *how says why (BUSY,
 * GONE, FAILED, as sl_send). A datagram socket gets one sendmmsg; a stream
 * one send per message, stopping at the first not taken whole.
 */
static unsigned sl_send_many(struct iovec *iov, unsigned n, int *how)
{
    unsigned k = 0;
    int r = SENT; /* n == 0: nothing refused */

    if (sl.stream) {
        while (k < n && (r = sl_send_raw(iov[k].iov_base, iov[k].iov_len)) == SENT)
            k++;
        if (k == 0)
            *how = r;
        return k;
    }
    for (unsigned i = 0; i < n; i++)
        batch.mm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    sl.stats.send_calls++;
    r = sendmmsg(sl.fd, batch.mm, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r > 0)
        return (unsigned)r; /* the rest not taken: the daemon is behind */
    *how = send_failed(r);
    return 0;
}

/* sl_deliver_many - sl_send_many, and once more on a new socket if the peer
 * went: how many of iov[0..n) were taken; when none, *how as sl_send_many */
static unsigned sl_deliver_many(struct iovec *iov, unsigned n, int *how)
{
    unsigned k = sl_send_many(iov, n, how);

    if (k == 0 && *how == GONE) {
        long long now = now_ms();

        if (sl_connect(now) < 0)
            return 0;
        if ((k = sl_send_many(iov, n, how)) == 0 && sl.fd < 0)
            sl.retry_at_ms = now + BS_LOG_RECONNECT_MS; /* no connect per flush */
    }
    return k;
}

/* batch_reset - forget what is queued */
static void batch_reset(void)
{
    batch.n = 0;
    batch.used = 0;
}

/* batch_consume - the k oldest messages are gone from the backlog */
static void batch_consume(unsigned k)
{
    if (k >= batch.n) {
        batch_reset();
        return;
    }
    memmove(batch.iov, batch.iov + k, (batch.n - k) * sizeof batch.iov[0]);
    batch.n -= k;
}

/*
 * batch_flush - one attempt to send the backlog (one sendmmsg): what the
 * socket takes leaves it; the rest stays queued, in order, for the next
 * flush. Only a message a datagram socket refuses for itself (neither busy
 * nor gone: EMSGSIZE...) is dropped and counted, so it cannot block the
 * ones behind it.
 */
static void batch_flush(void)
{
    int how = BUSY;
    unsigned k;

    if (batch.n == 0 || !sl_ready())
        return;
    k = sl_deliver_many(batch.iov, batch.n, &how);
    sl.stats.sent += k;
    if (k == 0 && how == FAILED && sl.fd >= 0) {
        count_dropped(1);
        k = 1;
    }
    batch_consume(k);
}

/* batch_discard - drop and count what is still queued (batching off, a
 * re-open): without a loop nobody would flush it */
static void batch_discard(void)
{
    count_dropped(batch.n);
    batch_reset();
}

/* batch_room - 1 if k more messages fit, moving the queued bytes to the
 * start of buf when that makes the room, else 0 */
static int batch_room(unsigned k)
{
    size_t start;

    if (batch.n + k > BS_LOG_BATCH_MAX)
        return 0;
    if (sizeof batch.buf - batch.used >= k * BS_LOG_MSG_MAX)
        return 1;
    if (batch.n == 0) {
        batch.used = 0;
    } else if ((start = (size_t)((char *)batch.iov[0].iov_base - batch.buf)) > 0) {
        memmove(batch.buf, batch.buf + start, batch.used - start);
        for (unsigned i = 0; i < batch.n; i++)
            batch.iov[i].iov_base = (char *)batch.iov[i].iov_base - start;
        batch.used -= start;
    }
    return sizeof batch.buf - batch.used >= k * BS_LOG_MSG_MAX;
}

/* batch_push - format one message at the end of the backlog (room checked) */
static void batch_push(int priority, const char *text, size_t len)
{
    char *at = batch.buf + batch.used;

    if (batch.n == 0)
        batch.first_ms = now_ms();
    batch.iov[batch.n].iov_base = at;
    batch.iov[batch.n].iov_len = sl_format(at, priority, text, len);
    batch.used += batch.iov[batch.n].iov_len;
    batch.n++;
}

/*
 * batch_add - queue one line (formatted now: its time stamp is now), after
 * the "N log lines dropped" warning when lines were dropped since the last
 * one. A full backlog is flushed once first; if that makes no room, the
 * line is dropped and counted.
 */
static void batch_add(int priority, const char *line, size_t len)
{
    unsigned need = sl.unreported ? 2 : 1;

    if (!batch_room(need)) {
        batch_flush();
        if (!batch_room(need)) {
            count_dropped(1);
            return;
        }
    }
    if (sl.unreported) {
        char text[96];

        batch_push(LOG_WARNING, text, drop_warning(text));
        sl.unreported = 0;
    }
    batch_push(priority, line, len);
}

/* bs_log_flush - one attempt to send the backlog (no call while it is empty) */
void bs_log_flush(void)
{
    batch_flush();
}

/* bs_log_pending - messages in the backlog */
unsigned bs_log_pending(void)
{
    return batch.n;
}

unsigned bs_log_retry_ms(void)
{
    long long wait;

    if (!batch.n)
        return 0;
    if (sl.fd >= 0)
        return BS_LOG_RETRY_MS;
    wait = sl.retry_at_ms - now_ms();
    return wait > BS_LOG_RETRY_MS ? (unsigned)wait : BS_LOG_RETRY_MS;
}

unsigned bs_log_hold_ms(void)
{
    long long waited;

    if (batch.n == 0 || batch.n >= BS_LOG_HOLD_LINES)
        return 0;
    waited = now_ms() - batch.first_ms;
    return waited >= BS_LOG_HOLD_MS ? 0 : (unsigned)(BS_LOG_HOLD_MS - waited);
}

/* bs_log_batch - queue lines from now on (on), or flush once, drop and
 * count the rest, and stop (off) */
void bs_log_batch(int on)
{
    if (!on) {
        batch_flush();
        batch_discard();
    }
    batch.on = on != 0;
}

/*
 * clean - replace each control character (< 0x20, 0x7f) of line[0..len) by
 * '?'. Lines are mostly clean: with SSE2, 16 bytes are tested at a time and
 * only a block holding one is rewritten byte by byte.
 */
static void clean(char *line, size_t len)
{
    size_t i = 0;

#ifdef __SSE2__
    const __m128i c1f = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);

    for (; i + 16 <= len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(line + i));
        __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(_mm_max_epu8(v, c1f), c1f), /* <= 0x1f */
                                   _mm_cmpeq_epi8(v, del));

        if (_mm_movemask_epi8(bad) != 0) {
            for (size_t k = i; k < i + 16; k++)
                if ((unsigned char)line[k] < 0x20 || line[k] == 0x7f)
                    line[k] = '?';
        }
    }
#endif
    for (; i < len; i++) {
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    }
}

/* send_line - a finished line (NUL-terminated, len bytes) to syslog and/or stderr */
static void send_line(int priority, int to_stderr, const char *line, size_t len)
{
    if (log_opened) {
        if (!batch.on) {
            to_syslog(priority, line, len);
        } else if (priority <= LOG_CRIT) { /* fatal, panic: last words, never waited for */
            batch_flush();                 /* what was logged before goes first */
            to_syslog(priority, line, len);
        } else {
            batch_add(priority, line, len);
            if (priority <= LOG_WARNING)
                batch_flush(); /* behind the backlog, but tried at once */
        }
    }
    if (to_stderr) {
        char out[BS_LOG_LINE_MAX + 128], stamp[32] = "";
        struct timespec ts;
        struct tm tm;
        int n;

        clock_gettime(CLOCK_REALTIME, &ts);
        if (localtime_r(&ts.tv_sec, &tm) != NULL)
            strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
        n = snprintf(out, sizeof out, "%s.%03ld %s[%ld]: %s\n", stamp, ts.tv_nsec / 1000000,
                     log_ident, log_opened ? sl.pid : (long)getpid(), line);
        if (n > 0) {
            size_t todo = (size_t)n < sizeof out ? (size_t)n : sizeof out - 1;
            ssize_t w = write(STDERR_FILENO, out, todo); /* one write: lines do not interleave */
            (void)w;
        }
    }
}

/*
 * emit - format prefix + text into one bounded, control-free line and send
 * it to syslog and/or stderr.
 */
static void emit(int priority, int to_stderr, const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void emit(int priority, int to_stderr, const char *prefix, const char *fmt, va_list ap)
{
    char line[BS_LOG_LINE_MAX];
    size_t n = strlen(prefix);
    int r;

    memcpy(line, prefix, n + 1); /* the prefixes are short constants */
    r = vsnprintf(line + n, sizeof line - n, fmt, ap);
    if (r < 0)
        r = snprintf(line + n, sizeof line - n, "(unformattable log line: %s)", fmt);
    if (r < 0)
        r = 0;
    if ((size_t)r >= sizeof line - n) {
        memcpy(line + sizeof line - 4, "...", 4);
        r = (int)(sizeof line - 1 - n);
    }
    clean(line, n + (size_t)r);
    send_line(priority, to_stderr, line, n + (size_t)r);
}

/* bs_log_text - as bs_log with "%.*s": the text is copied, not formatted */
void bs_log_text(int level, const char *text, size_t len)
{
    char line[BS_LOG_LINE_MAX];
    size_t n;

    if (level > bs_log_level)
        return;
    if (level < BS_LOG_ERROR || level > BS_LOG_DEBUG)
        level = BS_LOG_ERROR;
    n = strlen(levels[level].prefix);
    memcpy(line, levels[level].prefix, n);
    if (len >= sizeof line - n) {
        len = sizeof line - 1 - n;
        memcpy(line + n, text, len - 3);
        memcpy(line + n + len - 3, "...", 3);
    } else {
        memcpy(line + n, text, len);
    }
    line[n + len] = '\0';
    clean(line, n + len); /* a NUL inside text becomes '?' too */
    send_line(levels[level].priority, log_to_stderr, line, n + len);
}

void bs_log(int level, const char *fmt, ...)
{
    va_list ap;

    if (level > bs_log_level)
        return;
    if (level < BS_LOG_ERROR || level > BS_LOG_DEBUG)
        level = BS_LOG_ERROR; /* a bad level is still worth seeing */
    va_start(ap, fmt);
    emit(levels[level].priority, log_to_stderr, levels[level].prefix, fmt, ap);
    va_end(ap);
}

/* bs_fatal - start-up only: the configuration or the environment is broken.
 * Always on stderr too: without -f and without /dev/log it would be lost. */
void bs_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    emit(LOG_CRIT, 1, "fatal: ", fmt, ap);
    va_end(ap);
    exit(1);
}

/* bs_panic - our own bug: abort() for a core dump */
void bs_panic(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    emit(LOG_CRIT, 1, "panic: ", fmt, ap);
    va_end(ap);
    abort();
}
