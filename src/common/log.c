/*
 * log.c - syslog, and stderr with -f (log.h)
 *
 * PROVIDES
 *   bs_log_open            (re)open syslog with LOG_PID and a facility;
 *                          choose whether lines are copied to stderr.
 *   bs_log                 one line at a level, if the level is enabled.
 *   bs_log_text            the same for text already formatted (a length,
 *                          no format string): copied, not formatted again.
 *   bs_fatal, bs_panic     one line, then exit(1) / abort(); never return.
 *                          Their line goes to stderr as well, with or
 *                          without -f: a start-up failure is never silent.
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
 * STATE
 *   Until bs_log_open is first called, lines go to stderr only: a start-up
 *   error (a bad config) is seen by whoever started the program. After it,
 *   lines go to syslog, and to stderr too if to_stderr (fatal and panic
 *   lines always).
 *
 * NEVER
 *   Allocates. Blocks on anything but syslog(3) and write(2) to stderr.
 *   Returns from bs_fatal (exit status 1) or bs_panic (abort).
 */
#include "backstop/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define BS_LOG_LINE_MAX 2048
#define BS_LOG_IDENT_MAX 64

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

static char log_ident[BS_LOG_IDENT_MAX] = "backstopd"; /* openlog keeps the pointer */
static int log_opened;
static int log_to_stderr = 1;

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

/* bs_log_open - closelog first, so a reload can change ident and facility */
void bs_log_open(const char *ident, const char *facility, int to_stderr)
{
    int f = facility != NULL ? find_facility(facility) : -1;

    if (log_opened)
        closelog();
    snprintf(log_ident, sizeof log_ident, "%s", ident != NULL ? ident : "backstopd");
    /* LOG_NDELAY: connect now, while /dev/log is still reachable */
    openlog(log_ident, LOG_PID | LOG_NDELAY, f >= 0 ? facilities[f].facility : LOG_MAIL);
    log_opened = 1;
    log_to_stderr = to_stderr;
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
static void send_line(int priority, int to_stderr, const char *line)
{
    if (log_opened)
        syslog(priority, "%s", line);
    if (to_stderr) {
        char out[BS_LOG_LINE_MAX + 128], stamp[32] = "";
        struct timespec ts;
        struct tm tm;
        int len;

        clock_gettime(CLOCK_REALTIME, &ts);
        if (localtime_r(&ts.tv_sec, &tm) != NULL)
            strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
        len = snprintf(out, sizeof out, "%s.%03ld %s[%ld]: %s\n", stamp, ts.tv_nsec / 1000000,
                       log_ident, (long)getpid(), line);
        if (len > 0) {
            size_t todo = (size_t)len < sizeof out ? (size_t)len : sizeof out - 1;
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
    send_line(priority, to_stderr, line);
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
    send_line(levels[level].priority, log_to_stderr, line);
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
