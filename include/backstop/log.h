/*
 * log.h - logging: syslog (facility from the config, ident "backstopd") and,
 * with -f, stderr too
 *
 * Syslog is our own non-blocking client (log.c), not syslog(3): never
 * waited for. Unbatched, a line the daemon cannot take at once, or any line
 * while nothing listens, is dropped and counted (bs_log_stats); batched, it
 * waits in the backlog (below) until the daemon takes it.
 *
 * Levels follow Postfix msg(3): warn = a peer or Redis misbehaved and we
 * recover; fatal = broken config/environment at start-up only (exits 1);
 * panic = our own bug (aborts). The macros test the level before any
 * formatting, so a disabled debug line costs one comparison.
 * Callers escape wire data (bs_escape) before it reaches a format string's
 * arguments.
 */
#ifndef BACKSTOP_LOG_H
#define BACKSTOP_LOG_H

#include <stddef.h>

enum bs_log_level { BS_LOG_ERROR = 0, BS_LOG_WARN = 1, BS_LOG_INFO = 2, BS_LOG_DEBUG = 3 };

extern int bs_log_level;

/* bs_log_open - ident, syslog facility name ("mail", "local0", ...; NULL =
 * mail), whether to copy lines to stderr. Connects to _PATH_LOG (/dev/log)
 * at once: call it before chroot or dropping privileges. May be called
 * again (reload: the old socket is closed); must be called again in a
 * forked child (the pid in each line is taken here). */
void bs_log_open(const char *ident, const char *facility, int to_stderr);
/* bs_log_open_path - the same with another socket path (NULL: _PATH_LOG) */
void bs_log_open_path(const char *ident, const char *facility, int to_stderr, const char *path);

/* Syslog counters since the process started (across re-opens). */
struct bs_log_stats {
    unsigned long long sent;             /* lines the daemon took (drop warnings too) */
    unsigned long long dropped;          /* lines not sent: backlog full, no socket, errors */
    unsigned long long connects;         /* connect attempts */
    unsigned long long connect_failures; /* of those, failed */
    unsigned long long send_calls;       /* send/sendmmsg calls: sent / send_calls = lines a call */
};
/* bs_log_stats - copy the counters into *out */
void bs_log_stats(struct bs_log_stats *out);
/*
 * Batching (backstopd: on once its loop runs, flushed before the loop
 * blocks). While on, every syslog line is formatted (time stamp taken) and
 * queued in a bounded backlog (static: BS_LOG_BATCH_MAX lines,
 * BS_LOG_BATCH_BYTES bytes); a flush sends what the daemon takes and keeps
 * the rest, in order, for the next flush. A line is dropped and counted
 * only when the backlog is full and one flush made no room. A warn or error
 * line is queued behind the backlog and flushed at once; fatal and panic
 * flush once, then send their line once. The stderr copy (-f) is never
 * queued. Fork with nothing queued (bs_log_flush).
 */
#define BS_LOG_BATCH_MAX 256           /* lines in the backlog (one sendmmsg at most this long) */
#define BS_LOG_BATCH_BYTES (256 << 10) /* their formatted bytes */
#define BS_LOG_RETRY_MS 10   /* lines pending after a flush: flush again this much later */
#define BS_LOG_HOLD_MS 20    /* info lines wait this long for company (bs_log_hold_ms) */
#define BS_LOG_HOLD_LINES 64 /* ... unless this many are queued */
/* bs_log_batch - on: queue from now on; off: flush once, drop and count
 * what is left, then send each line as logged */
void bs_log_batch(int on);
/* bs_log_flush - one attempt to send the backlog: one sendmmsg (a stream
 * socket: a send each); what the daemon does not take stays queued */
void bs_log_flush(void);
/* bs_log_pending - lines in the backlog (0: nothing to flush) */
unsigned bs_log_pending(void);
/* bs_log_retry_ms - when to flush the backlog again: 0 when it is empty;
 * BS_LOG_RETRY_MS while a daemon is connected (it was behind); while none
 * is, the time until the next connect may be tried (at least
 * BS_LOG_RETRY_MS): no wake-ups that cannot send anything */
unsigned bs_log_retry_ms(void);
/* bs_log_hold_ms - 0 when the backlog is due to be flushed (empty, or its
 * oldest line has waited BS_LOG_HOLD_MS, or BS_LOG_HOLD_LINES are queued),
 * else the ms until it is: info lines go out in fewer, larger sends, so a
 * quiet daemon does not wake the syslog daemon once a request (warn and
 * error lines are flushed as they are logged, whatever this says) */
unsigned bs_log_hold_ms(void);
/* bs_log_facility_valid - 1 if name is a syslog facility we know */
int bs_log_facility_valid(const char *name);
/* bs_log_level_parse - "error", "warn", "info", "debug" -> level, or -1 */
int bs_log_level_parse(const char *name);

void bs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* bs_log_text - one line of text formatted by the caller (len bytes, NUL
 * not needed), with the level's prefix, cut and cleaned as bs_log's; no
 * printf pass. Test the level first (bs_log_enabled) to skip building it. */
void bs_log_text(int level, const char *text, size_t len);
#define bs_log_enabled(level) ((level) <= bs_log_level)
/* bs_fatal, bs_panic - logged and always written to stderr too */
void bs_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void bs_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define bs_debug(...)                                                                              \
    do {                                                                                           \
        if (bs_log_level >= BS_LOG_DEBUG)                                                          \
            bs_log(BS_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
#define bs_info(...)                                                                               \
    do {                                                                                           \
        if (bs_log_level >= BS_LOG_INFO)                                                           \
            bs_log(BS_LOG_INFO, __VA_ARGS__);                                                      \
    } while (0)
#define bs_warn(...) bs_log(BS_LOG_WARN, __VA_ARGS__)
#define bs_error(...) bs_log(BS_LOG_ERROR, __VA_ARGS__)

#endif
