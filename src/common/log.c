/*
 * log.c - syslog, and stderr with -f (log.h)
 *
 * PROVIDES
 *   bs_log_open            (re)open syslog with LOG_PID and a facility;
 *                          choose whether lines are copied to stderr.
 *   bs_log                 one line at a level, if the level is enabled.
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
 *   replaced by '?', so one call is one line whatever the arguments hold.
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
 * emit - format prefix + text into one bounded, control-free line and send
 * it to syslog and/or stderr.
 */
static void emit(int priority, int to_stderr, const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void emit(int priority, int to_stderr, const char *prefix, const char *fmt, va_list ap)
{
    char line[BS_LOG_LINE_MAX];
    size_t n = (size_t)snprintf(line, sizeof line, "%s", prefix);
    int r = vsnprintf(line + n, sizeof line - n, fmt, ap);

    if (r < 0)
        snprintf(line + n, sizeof line - n, "(unformattable log line: %s)", fmt);
    else if ((size_t)r >= sizeof line - n)
        memcpy(line + sizeof line - 4, "...", 4);
    for (char *c = line; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    }
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
