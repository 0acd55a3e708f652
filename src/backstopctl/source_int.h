/*
 * source_int.h - what the directory readers share (source_*.c, sync.c)
 *
 * bs__src_lines turns a byte stream (a file, a program's stdout, postmap -s)
 * into addresses: one entry a line, the first column, "#" comments and
 * blank lines skipped, CRLF and a UTF-8 byte order mark accepted. It holds
 * one line at most (BS_SRC_LINE_MAX); a longer line fails the read.
 *
 * bs__src_run runs a program with its stdout piped to a sink, under a
 * deadline: the program gets its own process group, which is killed
 * (SIGKILL) on timeout or when the sink says stop.
 */
#ifndef BACKSTOP_SOURCE_INT_H
#define BACKSTOP_SOURCE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "backstop/source.h"

#define BS_SRC_LINE_MAX 4096       /* bytes in one line, without its end */
#define BS_SRC_PROGRESS_EVERY 1000 /* entries between progress calls */

typedef struct bs__src_lines {
    const bs_source *src;
    bs_source_emit emit;
    void *arg;
    char *err;
    size_t errsz;
    int need_at; /* postmap -s: keys without '@' (bare domains) are not addresses: skipped */
    size_t lineno, entries;
    size_t len; /* bytes of the current line in buf */
    char buf[BS_SRC_LINE_MAX + 2];
} bs__src_lines;

/* bs__src_lines_init - ready to read src's entries into emit(arg, ...) */
void bs__src_lines_init(bs__src_lines *l, const bs_source *src, bs_source_emit emit, void *arg,
                        char *err, size_t errsz);
/* bs__src_lines_feed - n more bytes; 0, or -1 with err set (line too
 * long, emit stopped). bs__src_lines_end - the last line without a line
 * end; 0 / -1. Signature of a bs__src_sink. */
int bs__src_lines_feed(void *l, const char *data, size_t n);
int bs__src_lines_end(bs__src_lines *l);

/* A sink for a program's stdout: 0 to go on, -1 to stop (err is set). */
typedef int (*bs__src_sink)(void *arg, const char *data, size_t n);

/* bs__src_deadline - now + ms on the monotonic clock, in ms */
uint64_t bs__src_deadline(uint64_t ms);

/*
 * bs__src_run - run argv (argv[0] searched in PATH) with stdin from
 * /dev/null, stdout to sink, stderr inherited, until deadline_ms
 * (bs__src_deadline). Returns 0 when the program exited 0 and the sink took
 * all of its output; -1 with a reason in err otherwise (cannot start,
 * timeout, killed by a signal, exit status N, sink stopped). what names
 * the program in messages.
 */
int bs__src_run(const char *const argv[], const char *what, uint64_t deadline_ms, bs__src_sink sink,
                void *arg, char *err, size_t errsz);

#endif
