/*
 * source_file.c - "type = file" sources, and the line reader every
 * text-stream source shares (source_int.h)
 *
 * PROVIDES
 *   bs_source_file_read  read src->path: one address a line (source.h
 *                        contract). 0 when the whole file was read; -1 with
 *                        the reason (cannot open, read error, a line over
 *                        BS_SRC_LINE_MAX, timeout, emit stopped).
 *   bs__src_lines_*      bytes -> entries: the first column of each line;
 *                        blank lines and lines whose first non-blank is '#'
 *                        are skipped; a "\r" before "\n" and a UTF-8 BOM at
 *                        the start are dropped. The rest of a line (a
 *                        Postfix map's value column) is ignored.
 *
 * NEVER
 *   Judges an address: the engine canonicalises and counts bad entries.
 *   Holds more than one line.
 *
 * LIMITS
 *   A file that grows while it is read is read to the end seen; write the
 *   file elsewhere and rename(2) it into place for an atomic hand-over.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "source_int.h"

#define BS_SRC_READ_CHUNK 65536

void bs__src_lines_init(bs__src_lines *l, const bs_source *src, bs_source_emit emit, void *arg,
                        char *err, size_t errsz)
{
    memset(l, 0, offsetof(bs__src_lines, buf));
    l->src = src;
    l->emit = emit;
    l->arg = arg;
    l->err = err;
    l->errsz = errsz;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* one_line - the entry of buf[0..len) (no line end), if any; 0 / -1 */
static int one_line(bs__src_lines *l, char *s, size_t len)
{
    size_t i = 0, klen = 0;

    l->lineno++;
    if (len > 0 && s[len - 1] == '\r')
        len--;
    if (l->lineno == 1 && len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < len && is_blank(s[i]))
        i++;
    if (i == len || s[i] == '#')
        return 0;
    while (i + klen < len && !is_blank(s[i + klen]))
        klen++;
    if (l->need_at && memchr(s + i, '@', klen) == NULL)
        return 0;
    l->entries++;
    if (l->src->progress && l->entries % BS_SRC_PROGRESS_EVERY == 0)
        l->src->progress(l->src->progress_arg, l->entries);
    if (l->emit(l->arg, s + i, klen) < 0)
        return -1;
    return 0;
}

/* bs__src_lines_feed - split at '\n'; a line is copied only when it spans feeds */
int bs__src_lines_feed(void *arg, const char *data, size_t n)
{
    bs__src_lines *l = arg;

    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;

        if (l->len + take > BS_SRC_LINE_MAX + 1) { /* + 1: room for a '\r' */
            snprintf(l->err, l->errsz, "line %zu is longer than %d bytes", l->lineno + 1,
                     BS_SRC_LINE_MAX);
            return -1;
        }
        memcpy(l->buf + l->len, data, take);
        l->len += take;
        if (!nl)
            return 0;
        if (one_line(l, l->buf, l->len) < 0)
            return -1;
        l->len = 0;
        data += take + 1;
        n -= take + 1;
    }
    return 0;
}

int bs__src_lines_end(bs__src_lines *l)
{
    int rc = 0;

    if (l->len > 0)
        rc = one_line(l, l->buf, l->len);
    l->len = 0;
    return rc;
}

uint64_t bs__src_deadline(uint64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + ms;
}

/* bs_source_file_read - the whole file through the line reader */
int bs_source_file_read(const bs_source *src, bs_source_emit emit, void *arg, char *err,
                        size_t errsz)
{
    static char chunk[BS_SRC_READ_CHUNK];
    uint64_t deadline = bs__src_deadline(src->timeout_ms);
    bs__src_lines l;
    ssize_t got;
    struct stat st;
    int fd, rc = 0;

    bs__src_lines_init(&l, src, emit, arg, err, errsz);
    /* O_NONBLOCK: a FIFO there would block the open until a writer came
     * (no timeout covers that); only a regular file is read */
    fd = open(src->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errsz, "%s: %s", src->path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        snprintf(err, errsz, "%s: not a regular file", src->path);
        close(fd);
        return -1;
    }
    while (rc == 0 && (got = read(fd, chunk, sizeof chunk)) != 0) {
        if (got < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errsz, "%s: read error: %s", src->path, strerror(errno));
            rc = -1;
        } else if (bs__src_lines_feed(&l, chunk, (size_t)got) < 0) {
            rc = -1;
        } else if (bs__src_deadline(0) > deadline) {
            snprintf(err, errsz, "%s: not read within the timeout", src->path);
            rc = -1;
        }
    }
    close(fd);
    if (rc == 0)
        rc = bs__src_lines_end(&l);
    return rc;
}
