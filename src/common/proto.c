/*
 * proto.c - incremental parser for the Postfix policy delegation protocol
 *
 * PROVIDES
 *   bs_proto_reset()    make a parser ready for a new request (O(1): only
 *                       the header fields and one scratch slot are cleared).
 *   bs_proto_feed()     scan buf[0..len) for one request, resuming at
 *                       p->scanned. Returns BS_PROTO_DONE (*consumed = bytes
 *                       of the request including its empty line; p->attrs
 *                       [0..nattrs) point into buf), BS_PROTO_NEED_MORE (the
 *                       attributes completed so far are in p->attrs), or a
 *                       negative BS_PROTO_E_* code. *consumed is written on
 *                       DONE only.
 *   bs_proto_get()      first attribute with exactly (case-sensitively) this
 *                       name, or NULL.
 *   bs_proto_strerror() short lowercase text for a BS_PROTO_E_* code;
 *                       "unknown error" for anything else. Never NULL.
 *
 * SEMANTICS
 *   The result is a function of the bytes alone, never of how they were
 *   split between calls: conceptually the bytes are examined one at a time
 *   and the first of these events decides.
 *     - byte offset BS_PROTO_MAX_REQUEST reached before the request ended:
 *       E_REQUEST (a request of exactly MAX_REQUEST bytes is accepted);
 *     - a NUL byte: E_NUL;
 *     - the line already holds MAX_LINE bytes and the next byte is neither
 *       '\n' nor a '\r' that might start "\r\n": E_LINE. This fires while the
 *       line is still partial, so no line end has to arrive first;
 *     - '\n': an empty line ("\n" or "\r\n") completes the request, even as
 *       the very first line (0 attributes: the caller decides). Otherwise
 *       with MAX_ATTRS attributes already taken: E_ATTRS (a 101st line is
 *       over the limit whatever it holds); a line without '=' or starting
 *       with '=': E_SYNTAX; else it becomes an attribute split at its first
 *       '=' (the value may contain more '='), minus one trailing '\r'.
 *   A '\r' that is not right before '\n' is an ordinary byte, as are all
 *   other control and 8-bit bytes: whoever logs or echoes a value escapes it.
 *   Bytes after the request's empty line are never examined.
 *
 COST
 *   Until the request is decided, each byte is examined once over all calls:
 *   '\n', NUL and '=' are found together, 16 bytes per compare with SSE2
 *   (the x86-64 baseline), else byte by byte into the same masks; plus O(1)
 *   look-backs per call and per line (the '\r' before '\n', the <= 15
 *   bytes of a short last block re-read and masked off), so feeding a
 *   request in k pieces costs O(n + k), not O(n * k). Nothing is allocated;
 *   no I/O; no globals. BS_PROTO_PORTABLE (a compile definition) forces the
 *   portable masks; the unit test and the fuzz replay run both builds.
 *
 * STATE LEFT BEHIND
 *   p->attrs[p->nattrs] (when nattrs < MAX_ATTRS) is a scratch slot for the
 *   line in progress: .name != NULL once its '=' has been seen, .name_len is
 *   then the '=' offset in the line. Callers only ever read attrs[0..nattrs).
 *   After DONE, p->scanned == *consumed and another call returns DONE again
 *   with the same *consumed (pipelined bytes are never taken as part of this
 *   request). A call that fails stores nothing but what the scratch slot
 *   learnt, so another call returns the same error. Either way, reset
 *   before the next request.
 *
 * LIMITS
 *   The buffer must not move or change between calls for one request; the
 *   attributes point into it. name must be NUL-terminated for bs_proto_get.
 */
#include <string.h>

#include "backstop/proto.h"

void bs_proto_reset(bs_proto_parser *p)
{
    p->scanned = 0;
    p->line_start = 0;
    p->nattrs = 0;
    p->attrs[0].name = NULL; /* scratch slot: no '=' seen in line 0 yet */
}

/* line_too_long - offset of the byte making line ls too long, or 0 if none in [ls, stop) */
static size_t line_too_long(const char *buf, size_t ls, size_t stop)
{
    size_t q = ls + BS_PROTO_MAX_LINE; /* first byte past a full line */

    if (q < stop && buf[q] == '\r')
        q++; /* may still be the '\r' of "\r\n"; the byte after it decides */
    return q < stop ? q : 0;
}

/*
 * block - masks of the bytes buf[i..i+16) (fewer at limit): bit k of *stop
 * set where buf[i+k] is '\n' or NUL, of *eq where it is '='; returns how
 * many bytes the masks cover (1..16; none past limit is ever read).
 */
static inline size_t block_portable(const char *buf, size_t i, size_t limit, unsigned *stop,
                                    unsigned *eq)
{
    size_t n = limit - i < 16 ? limit - i : 16, k;

    *stop = *eq = 0;
    for (k = 0; k < n; k++) {
        *stop |= (unsigned)(buf[i + k] == '\n' || buf[i + k] == '\0') << k;
        *eq |= (unsigned)(buf[i + k] == '=') << k;
    }
    return n;
}

#if defined(__SSE2__) && !defined(BS_PROTO_PORTABLE)
#include <emmintrin.h>

static inline void masks16(const char *p, unsigned *stop, unsigned *eq)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);

    *stop = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\n')),
                                                     _mm_cmpeq_epi8(v, _mm_setzero_si128())));
    *eq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('=')));
}

/* block - 16 bytes per compare; a short last block is the 16 bytes that end
 * at limit, shifted past the bytes already seen (a request shorter than 16
 * bytes: byte by byte) */
static inline size_t block(const char *buf, size_t i, size_t limit, unsigned *stop, unsigned *eq)
{
    size_t sh;

    if (i + 16 <= limit) {
        masks16(buf + i, stop, eq);
        return 16;
    }
    if (limit < 16)
        return block_portable(buf, i, limit, stop, eq);
    sh = i - (limit - 16);
    masks16(buf + limit - 16, stop, eq);
    *stop >>= sh;
    *eq >>= sh;
    return 16 - sh;
}
#else
#define block block_portable
#endif

/* NO_EQ - no '=' seen yet in the line being scanned */
#define NO_EQ ((size_t)-1)

/*
 * bs_proto_feed - scan buf[0..len) for one complete request
 *
 * A block of up to 16 bytes at a time (block()): its masks of line ends
 * (and NULs) and '=' are walked bit by bit, so the many short lines of a
 * Postfix request cost a few instructions each, not a scan each. The
 * attribute count and the line's '=' (eq) live in locals while the lines go
 * by; the scratch slot is read on entry and written when the bytes run out
 * in mid-line. A NUL ends a line's scan like a '\n' does, so it is found in
 * the same pass: only a line grown too long before it decides first. On any
 * error the attribute count is put back and nothing else is stored but
 * completed lines past it, so the parser is as before the call and the
 * same error comes again.
 */
int bs_proto_feed(bs_proto_parser *p, const char *buf, size_t len, size_t *consumed)
{
    size_t limit = len < BS_PROTO_MAX_REQUEST ? len : BS_PROTO_MAX_REQUEST;
    size_t i = p->scanned, ls = p->line_start, at, stop, end, span, eq = NO_EQ;
    unsigned nattrs = p->nattrs, n = nattrs, stopm, eqm, s;
    bs_proto_attr *a = &p->attrs[n]; /* the scratch slot, when n < MAX_ATTRS */
    int r;

    /* Already complete: only DONE leaves a '\n' just before scanned. */
    if (i > ls && buf[i - 1] == '\n') {
        *consumed = i;
        return BS_PROTO_DONE;
    }
    if (n < BS_PROTO_MAX_ATTRS && a->name != NULL)
        eq = ls + a->name_len; /* an earlier call saw the line's '=' */
    for (; i < limit; i += span) {
        span = block(buf, i, limit, &stopm, &eqm);
        for (; stopm != 0; stopm &= stopm - 1) {
            s = (unsigned)__builtin_ctz(stopm);
            stop = i + s;
            /* eqm holds no '=' of an earlier line of this block */
            if (eq == NO_EQ && (eqm & ((1u << s) - 1)) != 0)
                eq = i + (size_t)__builtin_ctz(eqm);
            eqm &= ~((2u << s) - 1);
            if (stop - ls > BS_PROTO_MAX_LINE && (at = line_too_long(buf, ls, stop)) != 0) {
                at++;
                r = BS_PROTO_E_LINE;
                goto decided;
            }
            at = stop + 1;
            if (buf[stop] == '\0') {
                r = BS_PROTO_E_NUL;
                goto decided;
            }
            end = stop > ls && buf[stop - 1] == '\r' ? stop - 1 : stop;
            if (end == ls) {
                r = BS_PROTO_DONE;
                goto decided;
            }
            if (n >= BS_PROTO_MAX_ATTRS) {
                r = BS_PROTO_E_ATTRS;
                goto decided;
            }
            if (eq == NO_EQ || eq == ls) {
                r = BS_PROTO_E_SYNTAX; /* no '=', or empty name */
                goto decided;
            }
            a->name = buf + ls;
            a->name_len = eq - ls;
            a->value = buf + eq + 1;
            a->value_len = end - eq - 1;
            a++;
            n++;
            eq = NO_EQ;
            ls = at;
        }
        if (eq == NO_EQ && eqm != 0)
            eq = i + (size_t)__builtin_ctz(eqm);
    }
    /* out of bytes, or at the request limit (i > limit only if the caller
     * shrank len) */
    if (limit - ls > BS_PROTO_MAX_LINE && (at = line_too_long(buf, ls, limit)) != 0) {
        at++;
        r = BS_PROTO_E_LINE;
        goto decided;
    }
    at = i;
    r = len > BS_PROTO_MAX_REQUEST ? BS_PROTO_E_REQUEST : BS_PROTO_NEED_MORE;
decided:
    if (r < 0) {
        p->nattrs = nattrs; /* back to the state before this call */
        return r;
    }
    if (n < BS_PROTO_MAX_ATTRS) { /* the scratch slot: the '=' seen, if any */
        a->name = eq == NO_EQ ? NULL : buf + ls;
        a->name_len = eq - ls;
    }
    p->nattrs = n;
    p->scanned = at;
    p->line_start = ls; /* after DONE: on the empty line */
    if (r == BS_PROTO_DONE)
        *consumed = at;
    return r;
}

/* bs_proto_get - first attribute named exactly name, or NULL */
const bs_proto_attr *bs_proto_get(const bs_proto_parser *p, const char *name)
{
    size_t n = strlen(name);
    unsigned k;

    for (k = 0; k < p->nattrs; k++) {
        const bs_proto_attr *a = &p->attrs[k];

        if (a->name_len == n && memcmp(a->name, name, n) == 0)
            return a;
    }
    return NULL;
}

/* Each error's name (in counters and metrics) and text (in log lines). */
static const struct {
    const char *name, *text;
} proto_errors[] = {
    [-BS_PROTO_E_LINE] = {"line", "line too long"},           /* > BS_PROTO_MAX_LINE */
    [-BS_PROTO_E_ATTRS] = {"attrs", "too many attributes"},   /* > BS_PROTO_MAX_ATTRS */
    [-BS_PROTO_E_REQUEST] = {"request", "request too long"},  /* > BS_PROTO_MAX_REQUEST */
    [-BS_PROTO_E_SYNTAX] = {"syntax", "malformed attribute"}, /* no '=', or empty name */
    [-BS_PROTO_E_NUL] = {"nul", "nul byte in request"},       /* anywhere before the end */
};
#define NPROTO_ERRORS ((int)(sizeof(proto_errors) / sizeof(proto_errors[0])))

/* bs_proto_strerror - short text for a BS_PROTO_E_* code */
const char *bs_proto_strerror(int err)
{
    if (err < 0 && err > -NPROTO_ERRORS && proto_errors[-err].text)
        return proto_errors[-err].text;
    return "unknown error";
}

/* bs_proto_error_name - one word for a BS_PROTO_E_* code */
const char *bs_proto_error_name(int err)
{
    if (err < 0 && err > -NPROTO_ERRORS && proto_errors[-err].name)
        return proto_errors[-err].name;
    return "unknown";
}
