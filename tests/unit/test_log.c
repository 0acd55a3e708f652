/*
 * test_log.c - unit tests for the log lines (src/common/log.c)
 *
 * Before bs_log_open, lines go to stderr only: stderr is pointed at a
 * temporary file and each line read back after its "backstopd[pid]: ".
 * Covers bs_log and bs_log_text alike: the level check (nothing written
 * for a disabled level), the prefixes, control characters (and a NUL in
 * bs_log_text's text) as '?' on both sides of the 16-byte blocks the
 * cleaning tests at once, and the cut at BS_LOG_LINE_MAX ("..." at the end).
 *
 * Then the syslog client, against private AF_UNIX sockets in a temporary
 * directory (bs_log_open_path): the exact bytes of a message (PRI per
 * facility and level, the time stamp's shape and value, ident[pid]); the
 * stderr copy alongside; fatal's line (in a child); nothing listening (one
 * connect attempt a second at most over a burst, every line dropped and
 * counted, ns per line printed); a receiver that stops reading (lines
 * dropped at once and counted, then the "N log lines dropped" warning
 * before the next line); the daemon restarted between two lines (the line
 * resent on a new socket) and down for a while (reconnect after
 * BS_LOG_RECONNECT_MS); a stream-only daemon ('\0'-ended messages, a new
 * connection after the old one closed); a re-open (new ident and facility,
 * the old socket closed).
 *
 * Batching: queued lines arrive only at bs_log_flush, in order, in one
 * send call, byte for byte as unbatched; the stderr copy at once; a warn or
 * error line is queued behind the backlog and flushed at once; a full
 * backlog (BS_LOG_BATCH_MAX lines, or long lines reaching
 * BS_LOG_BATCH_BYTES) is flushed by the next line and keeps what was not
 * taken; a receiver that does not read (tiny SO_RCVBUF): no wait, lines
 * pending (not dropped, a warn line in its place) until the backlog is
 * full, then dropped and counted; once it reads, the pending lines in
 * order, then the drop warning ahead of the next line; batching off
 * flushes; a stream daemon gets each message with its '\0'; bs_fatal (in
 * a child) sends the queued line before its own (in test_fatal).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backstop/log.h"
#include "check.h"

#define LINE_MAX_TEXT 2047 /* BS_LOG_LINE_MAX - 1 */
#define RECONNECT_MS 1000  /* BS_LOG_RECONNECT_MS */

static FILE *cap;
static int saved_stderr;

/* captured - the text of what was written since the last call (the part
 * after "]: ", without the newline), "" when nothing was */
static const char *captured(void)
{
    static char all[8192];
    static off_t done; /* bytes of the file already read */
    const char *text;
    ssize_t r = pread(fileno(cap), all, sizeof(all) - 1, done);
    size_t n = r > 0 ? (size_t)r : 0;

    done += (off_t)n;
    all[n] = '\0';
    if (n == 0)
        return "";
    if (n > 0 && all[n - 1] == '\n')
        all[n - 1] = '\0';
    text = strstr(all, "]: ");
    return text ? text + 3 : "(no ident)";
}

static void test_levels(void)
{
    bs_log_level = BS_LOG_INFO;
    bs_log(BS_LOG_DEBUG, "not %s", "this");
    bs_log_text(BS_LOG_DEBUG, "nor this", 8);
    CHECK_EQ_STR(captured(), "");
    CHECK(!bs_log_enabled(BS_LOG_DEBUG));
    CHECK(bs_log_enabled(BS_LOG_INFO));
    bs_log_text(BS_LOG_INFO, "plain text, not a %s format", 27);
    CHECK_EQ_STR(captured(), "plain text, not a %s format");
    bs_log_text(BS_LOG_WARN, "careful", 7);
    CHECK_EQ_STR(captured(), "warning: careful");
    bs_log(BS_LOG_ERROR, "%d errors", 2);
    CHECK_EQ_STR(captured(), "error: 2 errors");
    bs_log_text(BS_LOG_INFO, "only the first 4", 4);
    CHECK_EQ_STR(captured(), "only");
    bs_log_level = BS_LOG_ERROR;
    bs_log_text(BS_LOG_WARN, "careful", 7);
    CHECK_EQ_STR(captured(), "");
    bs_log_level = BS_LOG_INFO;
}

/* test_clean - a control byte at every offset of a 40-byte line, both ways */
static void test_clean(void)
{
    static const char bad[] = {'\n', '\r', '\t', '\x1b', '\x7f', '\x01', '\x1f'};
    char text[41], want[41];
    size_t k, b;

    for (k = 0; k < 40; k++) {
        for (b = 0; b < sizeof(bad); b++) {
            memset(text, 'a', 40);
            text[39] = '\xe9'; /* 8-bit bytes are kept */
            text[40] = '\0';
            memcpy(want, text, sizeof(want));
            text[k] = bad[b];
            want[k] = '?';
            bs_log_text(BS_LOG_INFO, text, 40);
            CHECK_EQ_STR(captured(), want);
            bs_log(BS_LOG_INFO, "%s", text);
            CHECK_EQ_STR(captured(), want);
        }
        text[k] = '\0'; /* a NUL in the text: a '?' too, the rest still printed */
        bs_log_text(BS_LOG_INFO, text, 40);
        CHECK_EQ_STR(captured(), want);
    }
    /* the chars that are fine */
    bs_log_text(BS_LOG_INFO, " ~<>[]=;", 8);
    CHECK_EQ_STR(captured(), " ~<>[]=;");
}

/* test_cut - a line longer than the buffer ends in "..." */
static void test_cut(void)
{
    static char text[3000], want[LINE_MAX_TEXT + 1];
    const char *got;

    memset(text, 'x', sizeof(text));
    bs_log_text(BS_LOG_INFO, text, LINE_MAX_TEXT + 1); /* one over: cut */
    got = captured();
    CHECK_EQ_INT(strlen(got), LINE_MAX_TEXT);
    CHECK(strcmp(got + LINE_MAX_TEXT - 3, "...") == 0);
    bs_log_text(BS_LOG_INFO, text, LINE_MAX_TEXT); /* exactly fits */
    got = captured();
    CHECK_EQ_INT(strlen(got), LINE_MAX_TEXT);
    CHECK(got[LINE_MAX_TEXT - 1] == 'x');
    bs_log_text(BS_LOG_WARN, text, sizeof(text));
    got = captured();
    memcpy(want, "warning: ", 9);
    memset(want + 9, 'x', LINE_MAX_TEXT - 9 - 3);
    memcpy(want + LINE_MAX_TEXT - 3, "...", 4);
    CHECK_EQ_STR(got, want);
    bs_log(BS_LOG_WARN, "%.*s", (int)sizeof(text), text);
    CHECK_EQ_STR(captured(), want);
}

/* ---- the syslog client -------------------------------------------------- */

static char dir[64], sock_path[96]; /* sun_path holds 108 */

/* receiver - a socket of type bound at sock_path (removed first), or -1 */
static int receiver(int type)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

    unlink(sock_path);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", sock_path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
        (type == SOCK_STREAM && listen(fd, 8) < 0)) {
        perror("receiver");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* take - the next message on fd within ms (NUL-terminated in buf), its
 * length, or -1 if none came */
static ssize_t take(int fd, char *buf, size_t bufsz, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t r;

    if (poll(&p, 1, ms) != 1)
        return -1;
    r = recv(fd, buf, bufsz - 1, MSG_DONTWAIT);
    if (r < 0)
        return -1;
    buf[r] = '\0';
    return r;
}

/* body - a message after "<PRI>Mmm dd HH:MM:SS backstopd[pid]: ", or NULL
 * if it does not start so (ident given) */
static const char *body(const char *msg, const char *ident)
{
    char tag[96];
    const char *p = strchr(msg, '>');

    snprintf(tag, sizeof tag, "%s[%ld]: ", ident, (long)getpid());
    if (!p || strlen(p + 1) < 16 || strncmp(p + 17, tag, strlen(tag)) != 0)
        return NULL;
    return p + 17 + strlen(tag);
}

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* stamp_of - "%b %e %T " of t, as the C locale writes it */
static void stamp_of(time_t t, char *out, size_t outsz)
{
    struct tm tm;

    localtime_r(&t, &tm);
    strftime(out, outsz, "%b %e %H:%M:%S ", &tm);
}

/* test_message - the exact bytes of one message, and the stderr copy */
static void test_message(void)
{
    char msg[4096], want[4096], s0[32], s1[32], head[16];
    int fd = receiver(SOCK_DGRAM);
    time_t t0, t1;
    ssize_t n;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    bs_log_open_path("backstopd", "mail", 1, sock_path);
    t0 = time(NULL);
    bs_log(BS_LOG_INFO, "NOQUEUE: reject: RCPT from %s: 550 5.1.1; conn=%d", "x[192.0.2.1]", 7);
    t1 = time(NULL);
    n = take(fd, msg, sizeof msg, 1000);
    stamp_of(t0, s0, sizeof s0);
    stamp_of(t1, s1, sizeof s1);
    CHECK_EQ_INT(strlen(s0), 16);
    /* <22> = mail (2 << 3) | info (6); the stamp is the time of the call */
    snprintf(head, sizeof head, "%.4s", msg);
    CHECK_EQ_STR(head, "<22>");
    CHECK(n > 20 && (strncmp(msg + 4, s0, 16) == 0 || strncmp(msg + 4, s1, 16) == 0));
    snprintf(want, sizeof want,
             "<22>%.16sbackstopd[%ld]: NOQUEUE: reject: RCPT from x[192.0.2.1]: "
             "550 5.1.1; conn=7",
             msg + 4, (long)getpid());
    CHECK_EQ_STR(msg, want);
    CHECK_EQ_INT(n, strlen(want)); /* no newline, no NUL on a datagram */
    /* the shape: "Mmm dd HH:MM:SS ", day space-padded */
    CHECK(n > 20 &&
          strstr("JanFebMarAprMayJunJulAugSepOctNovDec", (char[4]){msg[4], msg[5], msg[6], 0}));
    CHECK(msg[7] == ' ' && (msg[8] == ' ' || (msg[8] >= '1' && msg[8] <= '3')) && msg[9] >= '0' &&
          msg[9] <= '9' && msg[10] == ' ' && msg[13] == ':' && msg[16] == ':' && msg[19] == ' ');
    CHECK_EQ_STR(captured(), "NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1; conn=7");
    /* cleaned and cut as on stderr */
    bs_log_text(BS_LOG_INFO, "a\nb\0c", 5);
    CHECK(take(fd, msg, sizeof msg, 1000) > 0);
    CHECK(body(msg, "backstopd") && strcmp(body(msg, "backstopd"), "a?b?c") == 0);
    CHECK_EQ_STR(captured(), "a?b?c");
    {
        static char text[3000];
        const char *b;

        memset(text, 'y', sizeof text);
        bs_log_text(BS_LOG_INFO, text, sizeof text);
        CHECK(take(fd, msg, sizeof msg, 1000) > 0);
        b = body(msg, "backstopd");
        CHECK(b && strlen(b) == LINE_MAX_TEXT && strcmp(b + LINE_MAX_TEXT - 3, "...") == 0);
        captured();
    }
    bs_log_open_path("backstopd", "mail", 0, sock_path);
    close(fd);
}

/* test_priorities - PRI = facility | level, for each level and some facilities */
static void test_priorities(void)
{
    static const struct {
        const char *facility;
        int level;
        const char *pri, *text;
    } cases[] = {
        {"mail", BS_LOG_ERROR, "<19>", "error: e"}, {"mail", BS_LOG_WARN, "<20>", "warning: w"},
        {"mail", BS_LOG_INFO, "<22>", "i"},         {"mail", BS_LOG_DEBUG, "<23>", "d"},
        {"daemon", BS_LOG_INFO, "<30>", "i"},       {"user", BS_LOG_WARN, "<12>", "warning: w"},
        {"local0", BS_LOG_INFO, "<134>", "i"},      {"local7", BS_LOG_DEBUG, "<191>", "d"},
        {NULL, BS_LOG_INFO, "<22>", "i"},           {"LOCAL3", BS_LOG_ERROR, "<155>", "error: e"},
    };
    char msg[4096];
    int fd = receiver(SOCK_DGRAM);

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    bs_log_level = BS_LOG_DEBUG;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *text = cases[i].text + (cases[i].level == BS_LOG_ERROR  ? 7
                                            : cases[i].level == BS_LOG_WARN ? 9
                                                                            : 0);
        const char *b;

        bs_log_open_path("backstopd", cases[i].facility, 0, sock_path);
        bs_log(cases[i].level, "%s", text);
        CHECK(take(fd, msg, sizeof msg, 1000) > 0);
        if (strncmp(msg, cases[i].pri, strlen(cases[i].pri)) != 0)
            fprintf(stderr, "FAILED: %s/%d: \"%s\" does not start with %s\n",
                    cases[i].facility ? cases[i].facility : "NULL", cases[i].level, msg,
                    cases[i].pri);
        CHECK(strncmp(msg, cases[i].pri, strlen(cases[i].pri)) == 0);
        b = body(msg + strlen(cases[i].pri) - 4, "backstopd");
        CHECK(b && strcmp(b, cases[i].text) == 0);
    }
    bs_log_level = BS_LOG_INFO;
    bs_log(BS_LOG_DEBUG, "not enabled");
    CHECK_EQ_INT(take(fd, msg, sizeof msg, 50), -1);
    close(fd);
}

/* test_fatal - fatal's line reaches syslog (<18>: mail | crit) and stderr;
 * batched, after the line queued before it */
static void test_fatal(void)
{
    char msg[4096];
    int fd = receiver(SOCK_DGRAM), status = 0;
    pid_t pid;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    for (int batched = 0; batched <= 1; batched++) {
        fflush(stderr);
        if ((pid = fork()) == 0) {
            bs_log_open_path("backstopd", "mail", 0, sock_path); /* again in the child: its pid */
            bs_log_batch(batched);
            if (batched)
                bs_log(BS_LOG_INFO, "queued before the fatal");
            bs_fatal("cannot bind %s", "unix:/x");
        }
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        if (batched) {
            CHECK(take(fd, msg, sizeof msg, 1000) > 0);
            CHECK(strstr(msg, "]: queued before the fatal") != NULL);
        }
        CHECK(take(fd, msg, sizeof msg, 1000) > 0);
        CHECK(strncmp(msg, "<18>", 4) == 0);
        CHECK(strstr(msg, "]: fatal: cannot bind unix:/x") != NULL);
        {
            char tag[64];
            snprintf(tag, sizeof tag, "backstopd[%ld]: ", (long)pid);
            CHECK(strstr(msg, tag) != NULL);
        }
        CHECK_EQ_INT(take(fd, msg, sizeof msg, 50), -1);
        CHECK_EQ_STR(captured(), "fatal: cannot bind unix:/x");
    }
    close(fd);
}

/* test_no_listener - a burst with nothing at the path: one connect attempt
 * a second at most, every line dropped and counted, no call waits */
static void test_no_listener(void)
{
    struct bs_log_stats a, b, c;
    const int lines = 200000;
    long long t0, t1, slowest = 0;

    unlink(sock_path);
    bs_log_stats(&a);
    bs_log_open_path("backstopd", "mail", 0, sock_path); /* connects now: fails */
    t0 = mono_ms();
    for (int i = 0; i < lines; i++) {
        long long s = i % 1000 == 0 ? mono_ms() : 0;

        bs_log(BS_LOG_INFO, "conn=%d client[192.0.2.1] NOQUEUE: reject", i);
        if (s && mono_ms() - s > slowest)
            slowest = mono_ms() - s;
    }
    t1 = mono_ms();
    bs_log_stats(&b);
    CHECK_EQ_INT(b.dropped - a.dropped, lines);
    CHECK_EQ_INT(b.sent, a.sent);
    /* the one at open, then one per RECONNECT_MS elapsed at most */
    CHECK(b.connects - a.connects >= 1);
    CHECK(b.connects - a.connects <= 1 + (unsigned long long)((t1 - t0) / RECONNECT_MS) + 1);
    CHECK_EQ_INT(b.connect_failures - a.connect_failures, b.connects - a.connects);
    CHECK(slowest < 100); /* no call waited */
    fprintf(stderr, "test_log: no listener: %.0f ns per line (%d lines, %llu connect attempts)\n",
            (double)(t1 - t0) * 1e6 / lines, lines, b.connects - a.connects);
    /* after RECONNECT_MS, the next line tries again, once */
    usleep((RECONNECT_MS + 50) * 1000);
    bs_log(BS_LOG_INFO, "again");
    bs_log(BS_LOG_INFO, "and again");
    bs_log_stats(&c);
    CHECK_EQ_INT(c.connects - b.connects, 1);
    CHECK_EQ_INT(c.dropped - b.dropped, 2);
}

/* test_full - a receiver that stops reading: lines dropped at once and
 * counted; when it reads again, the warning with their number, then the line */
static void test_full(void)
{
    char msg[4096], want[128];
    int fd = receiver(SOCK_DGRAM), small = 1, got = 0;
    struct bs_log_stats a, b, c;
    const int lines = 5000;
    long long t0, t1;
    const char *w;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small); /* the kernel's minimum */
    bs_log_open_path("backstopd", "mail", 0, sock_path);
    bs_log(BS_LOG_INFO, "start"); /* and the warning about the last test's drops */
    while (take(fd, msg, sizeof msg, 0) > 0)
        ;
    bs_log_stats(&a);
    t0 = mono_ms();
    for (int i = 0; i < lines; i++)
        bs_log(BS_LOG_INFO, "line %d of a burst the daemon cannot keep up with", i);
    t1 = mono_ms();
    bs_log_stats(&b);
    CHECK(b.dropped - a.dropped > 0);
    CHECK_EQ_INT((b.dropped - a.dropped) + (b.sent - a.sent), lines);
    CHECK(t1 - t0 < 2000);                /* never waited for the reader */
    CHECK_EQ_INT(b.connects, a.connects); /* a full queue is no reason to reconnect */
    while (take(fd, msg, sizeof msg, 0) > 0)
        got++;
    CHECK_EQ_INT(got, b.sent - a.sent);
    bs_log(BS_LOG_INFO, "back");
    bs_log_stats(&c);
    CHECK_EQ_INT(c.sent - b.sent, 2); /* the warning, the line */
    CHECK(take(fd, msg, sizeof msg, 1000) > 0);
    snprintf(want, sizeof want, "warning: %llu log lines dropped (syslog not accepting them)",
             b.dropped - a.dropped);
    CHECK(strncmp(msg, "<20>", 4) == 0);
    w = body(msg, "backstopd");
    CHECK(w && strcmp(w, want) == 0);
    CHECK(take(fd, msg, sizeof msg, 1000) > 0);
    CHECK(body(msg, "backstopd") && strcmp(body(msg, "backstopd"), "back") == 0);
    bs_log(BS_LOG_INFO, "no warning now");
    CHECK(take(fd, msg, sizeof msg, 1000) > 0);
    CHECK(body(msg, "backstopd") && strcmp(body(msg, "backstopd"), "no warning now") == 0);
    fprintf(stderr, "test_log: full receiver: %llu of %d lines dropped in %lld ms\n",
            b.dropped - a.dropped, lines, t1 - t0);
    close(fd);
}

/* test_restart - the daemon restarts between two lines (the line is sent
 * again on a new socket), then is down a while (lines dropped, reconnect
 * after RECONNECT_MS, the warning and the line) */
static void test_restart(void)
{
    char msg[4096];
    int fd = receiver(SOCK_DGRAM);
    struct bs_log_stats a, b;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    bs_log_open_path("backstopd", "mail", 0, sock_path);
    bs_log(BS_LOG_INFO, "before");
    CHECK(take(fd, msg, sizeof msg, 1000) > 0);
    close(fd);
    fd = receiver(SOCK_DGRAM); /* a new socket at the same path */
    bs_log_stats(&a);
    bs_log(BS_LOG_INFO, "after the restart");
    bs_log_stats(&b);
    CHECK_EQ_INT(b.connects - a.connects, 1);
    CHECK_EQ_INT(b.dropped, a.dropped);
    CHECK(take(fd, msg, sizeof msg, 1000) > 0);
    CHECK(body(msg, "backstopd") && strcmp(body(msg, "backstopd"), "after the restart") == 0);

    /* down: the line finds nobody, the reconnect fails; lines after it wait
     * for RECONNECT_MS without a connect each */
    close(fd);
    unlink(sock_path);
    bs_log(BS_LOG_INFO, "lost 1");
    fd = receiver(SOCK_DGRAM);
    bs_log(BS_LOG_INFO, "lost 2");
    bs_log_stats(&a);
    CHECK_EQ_INT(a.connects - b.connects, 1);
    CHECK_EQ_INT(a.dropped - b.dropped, 2);
    CHECK_EQ_INT(take(fd, msg, sizeof msg, 50), -1);
    usleep((RECONNECT_MS + 50) * 1000);
    bs_log(BS_LOG_INFO, "found");
    bs_log_stats(&b);
    CHECK_EQ_INT(b.connects - a.connects, 1);
    CHECK(take(fd, msg, sizeof msg, 1000) > 0);
    CHECK(body(msg, "backstopd") &&
          strcmp(body(msg, "backstopd"),
                 "warning: 2 log lines dropped (syslog not accepting them)") == 0);
    CHECK(take(fd, msg, sizeof msg, 1000) > 0);
    CHECK(body(msg, "backstopd") && strcmp(body(msg, "backstopd"), "found") == 0);
    close(fd);
}

/* test_stream - a daemon with a stream socket only: messages end in '\0';
 * its connection closed, the next line goes on a new one */
static void test_stream(void)
{
    char msg[4096], want[256];
    int l = receiver(SOCK_STREAM), c;
    ssize_t n;

    CHECK(l >= 0);
    if (l < 0)
        return;
    bs_log_open_path("backstopd", "local1", 0, sock_path);
    c = accept(l, NULL, NULL);
    CHECK(c >= 0);
    bs_log(BS_LOG_WARN, "over %s", "a stream");
    n = take(c, msg, sizeof msg, 1000);
    snprintf(want, sizeof want, "backstopd[%ld]: warning: over a stream", (long)getpid());
    CHECK(n > 0 && msg[n - 1] == '\0');   /* one message, its NUL included */
    CHECK(strncmp(msg, "<140>", 5) == 0); /* local1 (17 << 3) | warning (4) */
    CHECK(n > 21 && strcmp(msg + 21, want) == 0);
    close(c);
    bs_log(BS_LOG_INFO, "on a new connection");
    c = accept(l, NULL, NULL);
    CHECK(c >= 0);
    n = take(c, msg, sizeof msg, 1000);
    CHECK(n > 0 && body(msg, "backstopd") &&
          strcmp(body(msg, "backstopd"), "on a new connection") == 0);
    close(c);
    close(l);
}

/* open_fds - how many descriptors this process has open */
static int open_fds(void)
{
    int n = 0;

    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

/* test_reopen - a reload: new ident and facility, the old socket closed */
static void test_reopen(void)
{
    char msg[4096];
    int fd = receiver(SOCK_DGRAM), before;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    bs_log_open_path("backstopd", "mail", 0, sock_path);
    before = open_fds();
    bs_log_open_path("other", "local0", 0, sock_path);
    CHECK_EQ_INT(open_fds(), before);
    bs_log(BS_LOG_INFO, "renamed");
    CHECK(take(fd, msg, sizeof msg, 1000) > 0);
    CHECK(strncmp(msg, "<134>", 5) == 0);
    CHECK(body(msg + 1, "other") && strcmp(body(msg + 1, "other"), "renamed") == 0);
    CHECK(fcntl(fd, F_GETFD) >= 0);
    close(fd);
    unlink(sock_path);
}

/* ---- batching (bs_log_batch, bs_log_flush) ----------------------------- */

/* drain - every message waiting on fd, bodies into got[] (up to max): how many */
static int drain(int fd, char got[][256], int max)
{
    char msg[4096];
    const char *b;
    int n = 0;

    while (take(fd, msg, sizeof msg, 0) > 0) {
        b = body(msg, "backstopd");
        if (n < max)
            snprintf(got[n], sizeof got[n], "%.200s", b ? b : "(bad message)");
        n++;
    }
    return n;
}

/* test_batch - queued lines arrive only at the flush, in order, in one
 * call, byte for byte as an unbatched line; batching off flushes */
static void test_batch(void)
{
    char a[4096], b[4096], got[8][256], want[64];
    int fd = receiver(SOCK_DGRAM);
    struct bs_log_stats s0, s1, s2;
    time_t t0, t1;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    bs_log_open_path("backstopd", "mail", 1, sock_path);
    captured();
    /* the same line unbatched, then batched: the same bytes */
    t0 = time(NULL);
    bs_log(BS_LOG_INFO, "same bytes %d", 1);
    CHECK(take(fd, a, sizeof a, 1000) > 0);
    captured();
    bs_log_batch(1);
    bs_log(BS_LOG_INFO, "same bytes %d", 1);
    CHECK_EQ_INT(take(fd, b, sizeof b, 50), -1); /* queued, not sent */
    CHECK_EQ_STR(captured(), "same bytes 1");    /* stderr (-f) at once */
    bs_log_flush();
    t1 = time(NULL);
    CHECK(take(fd, b, sizeof b, 1000) > 0);
    if (t0 == t1)
        CHECK_EQ_STR(b, a);
    else /* a second boundary between them: all but the stamp */
        CHECK(strlen(a) == strlen(b) && strcmp(a + 20, b + 20) == 0 && strncmp(a, b, 4) == 0);

    bs_log_stats(&s0);
    for (int i = 0; i < 5; i++)
        bs_log(BS_LOG_INFO, "queued %d", i);
    bs_log_text(BS_LOG_DEBUG, "not enabled", 11);
    bs_log_stats(&s1);
    CHECK_EQ_INT(s1.send_calls, s0.send_calls);
    CHECK_EQ_INT(s1.sent, s0.sent);
    CHECK_EQ_INT(take(fd, b, sizeof b, 50), -1);
    bs_log_flush();
    bs_log_flush(); /* nothing queued: no call */
    bs_log_stats(&s2);
    CHECK_EQ_INT(s2.send_calls - s1.send_calls, 1); /* one sendmmsg for the five */
    CHECK_EQ_INT(s2.sent - s1.sent, 5);
    CHECK_EQ_INT(s2.dropped, s1.dropped);
    CHECK_EQ_INT(drain(fd, got, 8), 5);
    for (int i = 0; i < 5; i++) {
        snprintf(want, sizeof want, "queued %d", i);
        CHECK_EQ_STR(got[i], want);
    }
    captured();

    /* off flushes, and a line after it goes at once */
    bs_log(BS_LOG_INFO, "before off");
    CHECK_EQ_INT(take(fd, b, sizeof b, 50), -1);
    bs_log_batch(0);
    bs_log(BS_LOG_INFO, "after off");
    CHECK_EQ_INT(drain(fd, got, 8), 2);
    CHECK_EQ_STR(got[0], "before off");
    CHECK_EQ_STR(got[1], "after off");
    bs_log_open_path("backstopd", "mail", 0, sock_path);
    captured();
    close(fd);
}

/* collect - flush and read until the backlog is empty (at most 1000
 * rounds): every message read, bodies into got[] (up to max): how many */
static int collect(int fd, char got[][256], int max)
{
    int n = 0;

    for (int round = 0; round < 1000 && bs_log_pending() > 0; round++) {
        n += drain(fd, got + (n < max ? n : max), n < max ? max - n : 0);
        bs_log_flush();
    }
    return n + drain(fd, got + (n < max ? n : max), n < max ? max - n : 0);
}

/* test_batch_urgent - a warn or error line is queued behind the backlog
 * and flushed at once, its place kept; a full backlog is flushed by the
 * line that finds it full, and keeps what the daemon did not take */
static void test_batch_urgent(void)
{
    static char got[BS_LOG_BATCH_MAX + 2][256];
    char want[64];
    int fd = receiver(SOCK_DGRAM), n;
    struct bs_log_stats s0, s1;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    bs_log_open_path("backstopd", "mail", 0, sock_path);
    bs_log_batch(1);
    bs_log_stats(&s0);
    bs_log(BS_LOG_INFO, "info 1");
    bs_log(BS_LOG_INFO, "info 2");
    bs_log(BS_LOG_WARN, "now");
    CHECK_EQ_INT(bs_log_pending(), 0);
    bs_log(BS_LOG_INFO, "info 3");
    bs_log(BS_LOG_ERROR, "and now");
    bs_log_stats(&s1);
    CHECK_EQ_INT(s1.send_calls - s0.send_calls, 2); /* 2 lines + warn, 1 line + error */
    CHECK_EQ_INT(s1.sent - s0.sent, 5);
    n = drain(fd, got, 8);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_STR(got[0], "info 1");
    CHECK_EQ_STR(got[1], "info 2");
    CHECK_EQ_STR(got[2], "warning: now");
    CHECK_EQ_STR(got[3], "info 3");
    CHECK_EQ_STR(got[4], "error: and now");

    /* BS_LOG_BATCH_MAX lines wait; the next one flushes them; the ones the
     * queue (net.unix.max_dgram_qlen) does not take stay, in order */
    bs_log_stats(&s0);
    for (int i = 0; i < BS_LOG_BATCH_MAX; i++)
        bs_log(BS_LOG_INFO, "full %d", i);
    CHECK_EQ_INT(bs_log_pending(), BS_LOG_BATCH_MAX);
    CHECK_EQ_INT(take(fd, got[0], sizeof got[0], 0), -1);
    bs_log(BS_LOG_INFO, "full %d", BS_LOG_BATCH_MAX);
    bs_log_stats(&s1);
    CHECK_EQ_INT(s1.send_calls - s0.send_calls, 1);
    CHECK_EQ_INT(s1.dropped, s0.dropped);
    CHECK(s1.sent - s0.sent >= 1);
    CHECK_EQ_INT(bs_log_pending(), BS_LOG_BATCH_MAX + 1 - (s1.sent - s0.sent));
    fprintf(stderr, "test_log: a full backlog: %llu of %d lines taken by one sendmmsg\n",
            s1.sent - s0.sent, BS_LOG_BATCH_MAX);
    n = collect(fd, got, BS_LOG_BATCH_MAX + 2);
    CHECK_EQ_INT(n, BS_LOG_BATCH_MAX + 1);
    for (int i = 0; i < n && i <= BS_LOG_BATCH_MAX; i++) {
        snprintf(want, sizeof want, "full %d", i);
        CHECK_EQ_STR(got[i], want);
    }
    bs_log_stats(&s1);
    CHECK_EQ_INT(s1.dropped, s0.dropped);
    CHECK_EQ_INT(s1.sent - s0.sent, BS_LOG_BATCH_MAX + 1);

    /* BS_LOG_BATCH_BYTES: long lines fill it before the count is reached */
    {
        static char text[1900];
        int lines = BS_LOG_BATCH_BYTES / (int)sizeof text + 1;

        memset(text, 'z', sizeof text);
        bs_log_stats(&s0);
        for (int i = 0; i < lines; i++)
            bs_log_text(BS_LOG_INFO, text, sizeof text);
        bs_log_stats(&s1);
        CHECK(lines < BS_LOG_BATCH_MAX);
        CHECK(s1.send_calls - s0.send_calls >= 1);
        CHECK(bs_log_pending() < (unsigned)lines);
        CHECK_EQ_INT(collect(fd, got, 0), lines);
        bs_log_stats(&s1);
        CHECK_EQ_INT(s1.sent - s0.sent, lines);
        CHECK_EQ_INT(s1.dropped, s0.dropped);
    }
    bs_log_batch(0);
    drain(fd, got, 0);
    close(fd);
}

/* test_batch_full - a receiver with a tiny SO_RCVBUF that does not read:
 * the flush does not wait; lines it does not take stay pending, not
 * dropped, a warn line in its place among them, until the backlog is full;
 * then each line is dropped and counted. Once it reads, the pending lines
 * arrive in order, then the warning about the dropped ones, then the next */
static void test_batch_full(void)
{
    static char got[BS_LOG_BATCH_MAX + 8][256];
    char want[128];
    int fd = receiver(SOCK_DGRAM), small = 1, n, fill, k;
    struct bs_log_stats s0, s1, s2;
    long long t0, t1;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    bs_log_open_path("backstopd", "mail", 0, sock_path);
    bs_log(BS_LOG_INFO, "start"); /* and any warning left from before */
    drain(fd, got, 0);
    bs_log_batch(1);
    bs_log_stats(&s0);
    t0 = mono_ms();
    for (int i = 0; i < BS_LOG_BATCH_MAX; i++)
        bs_log(BS_LOG_INFO, "line %d", i);
    bs_log_flush();
    bs_log_stats(&s1);
    k = (int)(s1.sent - s0.sent); /* what the receiver's queue took */
    CHECK(k >= 1 && k < BS_LOG_BATCH_MAX);
    CHECK_EQ_INT(bs_log_pending(), BS_LOG_BATCH_MAX - k);
    CHECK_EQ_INT(s1.dropped, s0.dropped);
    bs_log(BS_LOG_WARN, "in its place");
    bs_log_stats(&s1);
    CHECK_EQ_INT(s1.sent - s0.sent, k); /* tried, not taken, not dropped */
    CHECK_EQ_INT(bs_log_pending(), BS_LOG_BATCH_MAX - k + 1);
    fill = k - 1;
    for (int i = 0; i < fill; i++)
        bs_log(BS_LOG_INFO, "line %d", BS_LOG_BATCH_MAX + i);
    CHECK_EQ_INT(bs_log_pending(), BS_LOG_BATCH_MAX);
    bs_log_stats(&s1);
    CHECK_EQ_INT(s1.dropped, s0.dropped);
    for (int i = 0; i < 5; i++)
        bs_log(BS_LOG_INFO, "dropped %d", i);
    t1 = mono_ms();
    bs_log_stats(&s1);
    CHECK(t1 - t0 < 2000); /* never waited */
    CHECK_EQ_INT(s1.dropped - s0.dropped, 5);
    CHECK_EQ_INT(bs_log_pending(), BS_LOG_BATCH_MAX);
    CHECK_EQ_INT(s1.connects, s0.connects);

    /* the receiver reads: everything pending, in order, the warn line in
     * its place; then the drop warning ahead of the next line */
    n = collect(fd, got, BS_LOG_BATCH_MAX + 8);
    CHECK_EQ_INT(n, BS_LOG_BATCH_MAX + 1 + fill);
    for (int i = 0, line = 0; i < n && i < BS_LOG_BATCH_MAX + 8; i++) {
        if (i == BS_LOG_BATCH_MAX)
            snprintf(want, sizeof want, "warning: in its place");
        else
            snprintf(want, sizeof want, "line %d", line++);
        CHECK_EQ_STR(got[i], want);
    }
    bs_log(BS_LOG_INFO, "read again 1");
    bs_log(BS_LOG_INFO, "read again 2");
    bs_log_flush();
    bs_log_stats(&s2);
    CHECK_EQ_INT(bs_log_pending(), 0);
    CHECK_EQ_INT(s2.sent - s0.sent, n + 3); /* and the warning, the two lines */
    CHECK_EQ_INT(s2.dropped, s1.dropped);
    CHECK_EQ_INT(drain(fd, got, 4), 3);
    CHECK_EQ_STR(got[0], "warning: 5 log lines dropped (syslog not accepting them)");
    CHECK_EQ_STR(got[1], "read again 1");
    CHECK_EQ_STR(got[2], "read again 2");
    fprintf(stderr, "test_log: a backlog nobody reads: %d lines kept, 5 dropped, in %lld ms\n",
            BS_LOG_BATCH_MAX + fill + 1, t1 - t0);
    bs_log_batch(0);
    close(fd);
}

/* test_batch_stream - a stream-only daemon: the queued lines, each ending
 * in '\0', in order at the flush */
static void test_batch_stream(void)
{
    char buf[4096], want[256];
    int l = receiver(SOCK_STREAM), c;
    size_t have = 0;
    const char *p;

    CHECK(l >= 0);
    if (l < 0)
        return;
    bs_log_open_path("backstopd", "mail", 0, sock_path);
    c = accept(l, NULL, NULL);
    CHECK(c >= 0);
    bs_log_batch(1);
    bs_log(BS_LOG_INFO, "s1");
    bs_log(BS_LOG_INFO, "s2");
    bs_log(BS_LOG_INFO, "s3");
    CHECK_EQ_INT(take(c, buf, sizeof buf, 50), -1);
    bs_log_flush();
    for (ssize_t r; have < sizeof buf - 1 && (r = take(c, buf + have, sizeof buf - have, 200)) > 0;)
        have += (size_t)r;
    p = buf;
    for (int i = 1; i <= 3; i++) {
        snprintf(want, sizeof want, "s%d", i);
        CHECK(p < buf + have && body(p, "backstopd") && strcmp(body(p, "backstopd"), want) == 0);
        p += strlen(p) + 1; /* past its '\0' */
    }
    CHECK(p == buf + have);
    bs_log_batch(0);
    close(c);
    close(l);
}

/* test_batch_retry_ms - when backstopd's timer flushes the backlog again: at
 * once-a-connect pace while nothing listens, BS_LOG_RETRY_MS while a daemon
 * is connected, never while the backlog is empty */
static void test_batch_retry_ms(void)
{
    unsigned ms;
    int fd;

    unlink(sock_path);
    bs_log_open_path("backstopd", "mail", 0, sock_path); /* connects now: fails */
    bs_log_batch(1);
    CHECK_EQ_INT(bs_log_retry_ms(), 0); /* nothing pending */
    bs_log(BS_LOG_INFO, "waits for a daemon");
    bs_log_flush();
    CHECK(bs_log_pending() > 0);
    ms = bs_log_retry_ms();
    CHECK(ms > BS_LOG_RETRY_MS && ms <= RECONNECT_MS); /* no 10 ms wake-ups for nothing */
    fd = receiver(SOCK_DGRAM);
    CHECK(fd >= 0);
    if (fd < 0) {
        bs_log_batch(0);
        return;
    }
    usleep((ms + 50) * 1000);
    bs_log_flush(); /* connects, sends */
    CHECK_EQ_INT(bs_log_pending(), 0);
    CHECK_EQ_INT(bs_log_retry_ms(), 0);
    bs_log_batch(0);
    close(fd);
    unlink(sock_path);
}

/* test_batch_hold - info lines wait for company: due when the backlog is
 * empty, once BS_LOG_HOLD_LINES are queued, or once the oldest has waited
 * BS_LOG_HOLD_MS; a partial flush keeps the rest due */
static void test_batch_hold(void)
{
    unsigned ms;
    int fd = receiver(SOCK_DGRAM);
    static char got[BS_LOG_HOLD_LINES + 1][256];
    char want[32];

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    bs_log_open_path("backstopd", "mail", 0, sock_path);
    bs_log_batch(1);
    CHECK_EQ_INT(bs_log_hold_ms(), 0); /* nothing queued: nothing to wait for */
    bs_log(BS_LOG_INFO, "held");
    ms = bs_log_hold_ms();
    CHECK(ms > 0 && ms <= BS_LOG_HOLD_MS);
    CHECK_EQ_INT(bs_log_pending(), 1); /* logging does not send it */
    usleep((BS_LOG_HOLD_MS + 10) * 1000);
    CHECK_EQ_INT(bs_log_hold_ms(), 0); /* waited long enough */
    bs_log_flush();
    CHECK_EQ_INT(drain(fd, got, 2), 1);
    CHECK_EQ_STR(got[0], "held");

    for (int i = 0; i < BS_LOG_HOLD_LINES - 1; i++)
        bs_log(BS_LOG_INFO, "line %d", i);
    CHECK(bs_log_hold_ms() > 0); /* one short of company enough */
    bs_log(BS_LOG_INFO, "line %d", BS_LOG_HOLD_LINES - 1);
    CHECK_EQ_INT(bs_log_hold_ms(), 0);
    CHECK_EQ_INT(collect(fd, got, BS_LOG_HOLD_LINES + 1), BS_LOG_HOLD_LINES);
    snprintf(want, sizeof want, "line %d", BS_LOG_HOLD_LINES - 1);
    CHECK_EQ_STR(got[BS_LOG_HOLD_LINES - 1], want);

    bs_log(BS_LOG_INFO, "behind a warning");
    bs_log(BS_LOG_WARN, "never held");
    CHECK_EQ_INT(bs_log_pending(), 0); /* a warning sends what waited, at once */
    CHECK_EQ_INT(drain(fd, got, 3), 2);
    CHECK_EQ_STR(got[1], "warning: never held");
    bs_log_batch(0);
    close(fd);
    unlink(sock_path);
}

int main(void)
{
    cap = tmpfile();
    if (!cap)
        return 2;
    saved_stderr = dup(STDERR_FILENO);
    dup2(fileno(cap), STDERR_FILENO);   /* log.c writes to fd 2 ... */
    stderr = fdopen(saved_stderr, "w"); /* ... and failed CHECKs still show */
    if (!stderr)
        return 2;
    test_levels();
    test_clean();
    test_cut();
    snprintf(dir, sizeof dir, "/tmp/test_log_XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    snprintf(sock_path, sizeof sock_path, "%s/log", dir);
    test_message();
    test_priorities();
    test_fatal();
    test_no_listener();
    test_full();
    test_restart();
    test_stream();
    test_reopen();
    test_batch();
    test_batch_urgent();
    test_batch_full();
    test_batch_stream();
    test_batch_retry_ms();
    test_batch_hold();
    rmdir(dir);
    return check_summary();
}
