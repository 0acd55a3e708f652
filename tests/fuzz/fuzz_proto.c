/*
 * fuzz_proto.c - libFuzzer target for the policy protocol parser
 *
 * The input is a byte stream as a client might send it: requests are taken
 * off its front one at a time, as a connection would, until one is not
 * DONE. Each request is parsed
 *   - whole, in libFuzzer's exact-size buffer (ASan catches reads past it);
 *   - one byte at a time, in a copy whose bytes past len are ASan-poisoned,
 *     so reading past the len of any call is caught too;
 *   - in random chunks (seeded from the input, so a crash replays), and in
 *     two pieces at every offset (sampled for long inputs);
 *   - by ref_parse(), a byte-at-a-time model written from the SEMANTICS
 *     section of src/common/proto.c, as simple as it can be.
 * All must agree on result, *consumed and every attribute's (offset,
 * length), and the byte-at-a-time run must decide at exactly the byte the
 * model does (no error or DONE before its byte has arrived, no NEED_MORE
 * after); attributes must lie inside the request and hold no '\n' or NUL,
 * names no '='; bs_proto_get must find the first of each name; a second
 * call after DONE or an error must repeat the result. Any disagreement
 * prints what differed and aborts.
 *
 * Built by tests/fuzz/fuzz.cmake: fuzz_proto (libFuzzer: clang,
 * -DBACKSTOP_FUZZ=ON; scripts/fuzz fuzzes a scratch copy of the corpus) and
 * fuzz_replay_proto (replay.c instead of libFuzzer, any compiler: ctest
 * fuzz_replay_proto replays tests/fuzz/corpus/proto; it names the input
 * that failed).
 *   scripts/fuzz 60 proto
 *   build/fuzz/fuzz_proto -dict=tests/fuzz/proto.dict -max_len=20000 CORPUS_COPY
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backstop/proto.h"

#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define FUZZ_ASAN 1
#elif defined(__has_feature) /* clang */
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#ifdef FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
#endif

/* One parse's result, attributes as offsets so runs on copies compare. */
struct outcome {
    int r;
    size_t at; /* bytes it took to decide (0 for NEED_MORE): set by the model and bytewise runs */
    size_t consumed;
    unsigned nattrs;
    size_t off[BS_PROTO_MAX_ATTRS][4]; /* name off, name len, value off, value len */
};

/* fail - print what disagreed and abort, so libFuzzer saves the input */
static void fail(const char *what, const struct outcome *want, const struct outcome *got)
{
    fprintf(stderr,
            "fuzz_proto: %s: want r=%d at=%zu consumed=%zu nattrs=%u, got r=%d at=%zu "
            "consumed=%zu nattrs=%u\n",
            what, want->r, want->at, want->consumed, want->nattrs, got->r, got->at, got->consumed,
            got->nattrs);
    abort();
}

static void same(const char *what, const struct outcome *want, const struct outcome *got)
{
    if (want->r != got->r || (got->at && want->at != got->at) || want->consumed != got->consumed ||
        want->nattrs != got->nattrs ||
        memcmp(want->off, got->off, sizeof(want->off[0]) * want->nattrs) != 0)
        fail(what, want, got);
}

/*
 * ref_parse - the reference model: one byte at a time, no cleverness
 *
 * Mirrors SEMANTICS in src/common/proto.c line by line; fills o->off itself.
 */
static void ref_parse(const char *buf, size_t len, struct outcome *o)
{
    size_t i, ls = 0, end;
    long eq = -1;

    memset(o, 0, sizeof(*o));
    o->r = BS_PROTO_NEED_MORE;
    for (i = 0; i < len; i++) {
        char c = buf[i];

        if (i >= BS_PROTO_MAX_REQUEST) {
            o->r = BS_PROTO_E_REQUEST;
            break;
        }
        if (c == '\0') {
            o->r = BS_PROTO_E_NUL;
            break;
        }
        if (c != '\n') {
            if (c == '=' && eq < 0)
                eq = (long)i;
            if (i - ls >= BS_PROTO_MAX_LINE && !(i - ls == BS_PROTO_MAX_LINE && c == '\r')) {
                o->r = BS_PROTO_E_LINE;
                break;
            }
            continue;
        }
        end = i > ls && buf[i - 1] == '\r' ? i - 1 : i;
        if (end == ls) {
            o->r = BS_PROTO_DONE;
            o->consumed = i + 1;
            break;
        }
        if (o->nattrs == BS_PROTO_MAX_ATTRS) {
            o->r = BS_PROTO_E_ATTRS;
            break;
        }
        if (eq < 0 || (size_t)eq == ls) {
            o->r = BS_PROTO_E_SYNTAX;
            break;
        }
        o->off[o->nattrs][0] = ls;
        o->off[o->nattrs][1] = (size_t)eq - ls;
        o->off[o->nattrs][2] = (size_t)eq + 1;
        o->off[o->nattrs][3] = end - (size_t)eq - 1;
        o->nattrs++;
        ls = i + 1;
        eq = -1;
    }
    if (o->r != BS_PROTO_NEED_MORE)
        o->at = i + 1;
    if (o->r < 0)
        o->nattrs = 0, memset(o->off, 0, sizeof(o->off));
}

/*
 * record - turn p's result into an outcome, checking the attributes
 *
 * end is how much of buf the attributes may cover: *consumed after DONE,
 * else the len of the last call.
 */
static void record(struct outcome *o, const bs_proto_parser *p, const char *buf, size_t end, int r,
                   size_t consumed)
{
    unsigned k;

    memset(o, 0, sizeof(*o));
    o->r = r;
    if (r < BS_PROTO_E_NUL || r > BS_PROTO_DONE)
        fail("result out of range", o, o);
    if (r < 0) {
        if (strcmp(bs_proto_strerror(r), "unknown error") == 0)
            fail("no text for the error", o, o);
        return; /* attributes are unspecified after an error */
    }
    if (r == BS_PROTO_DONE) {
        if (consumed == 0 || consumed > end || buf[consumed - 1] != '\n')
            fail("bad *consumed", o, o);
        o->consumed = consumed;
    }
    if (p->nattrs > BS_PROTO_MAX_ATTRS)
        fail("nattrs over the limit", o, o);
    o->nattrs = p->nattrs;
    for (k = 0; k < p->nattrs; k++) {
        const bs_proto_attr *a = &p->attrs[k];

        if (a->name < buf || a->name_len == 0 || a->name_len > end ||
            a->name + a->name_len > buf + end || a->value != a->name + a->name_len + 1 ||
            a->value_len > end || a->value + a->value_len > buf + end)
            fail("attribute outside the buffer", o, o);
        if (a->name[a->name_len] != '=' || memchr(a->name, '=', a->name_len) ||
            memchr(a->name, '\n', a->name_len) || memchr(a->name, '\0', a->name_len) ||
            memchr(a->value, '\n', a->value_len) || memchr(a->value, '\0', a->value_len))
            fail("attribute holds a forbidden byte", o, o);
        o->off[k][0] = (size_t)(a->name - buf);
        o->off[k][1] = a->name_len;
        o->off[k][2] = (size_t)(a->value - buf);
        o->off[k][3] = a->value_len;
    }
    if (bs_proto_get(p, "") != NULL)
        fail("bs_proto_get found an empty name", o, o);
}

/* check_get - bs_proto_get returns the first attribute of each name */
static void check_get(const bs_proto_parser *p)
{
    char name[BS_PROTO_MAX_LINE + 1];
    unsigned k, j;

    for (k = 0; k < p->nattrs && k < 8; k++) {
        const bs_proto_attr *a = &p->attrs[k];

        if (a->name_len >= sizeof(name) || memchr(a->name, '\0', a->name_len))
            continue;
        memcpy(name, a->name, a->name_len);
        name[a->name_len] = '\0';
        for (j = 0; j < k; j++)
            if (p->attrs[j].name_len == a->name_len &&
                memcmp(p->attrs[j].name, a->name, a->name_len) == 0)
                break;
        if (bs_proto_get(p, name) != &p->attrs[j]) {
            fprintf(stderr, "fuzz_proto: bs_proto_get(attr %u) is not attr %u\n", k, j);
            abort();
        }
    }
}

/* Small PRNG for chunk sizes; seeded from the input so runs repeat. */
static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/*
 * parse_chunks - feed buf in pieces; chunk == 0 means random sizes
 *
 * buf has size bytes, all but the first len poisoned, so the parser can't
 * peek ahead of what it has been given. Returns the final result, with the
 * resume invariants checked on every call.
 */
static void parse_chunks(bs_proto_parser *p, char *buf, size_t size, size_t chunk,
                         struct outcome *o)
{
    size_t len = 0, next, consumed = 0, last_scanned = 0;
    int r = BS_PROTO_NEED_MORE;

    bs_proto_reset(p);
    ASAN_POISON_MEMORY_REGION(buf, size);
    do {
        next = len + (chunk ? chunk : 1 + (size_t)(rng() % (rng() % 4 ? 16 : 4096)));
        if (next > size)
            next = size;
        ASAN_UNPOISON_MEMORY_REGION(buf + len, next - len);
        len = next;
        r = bs_proto_feed(p, buf, len, &consumed);
        if (p->scanned < last_scanned || p->line_start > p->scanned)
            fail("scanned went backwards", o, o);
        if (r == BS_PROTO_NEED_MORE && p->scanned != len)
            fail("NEED_MORE left bytes unexamined", o, o);
        last_scanned = p->scanned;
    } while (r == BS_PROTO_NEED_MORE && len < size);
    record(o, p, buf, r == BS_PROTO_DONE ? consumed : len, r, consumed);
    if (chunk == 1 && r != BS_PROTO_NEED_MORE)
        o->at = len; /* fed a byte at a time, so this is the deciding byte */
    ASAN_UNPOISON_MEMORY_REGION(buf, size);
}

/* parse_two - buf[0..cut) first, then all of it */
static void parse_two(bs_proto_parser *p, const char *buf, size_t size, size_t cut,
                      struct outcome *o)
{
    size_t consumed = 0;
    int r;

    bs_proto_reset(p);
    r = bs_proto_feed(p, buf, cut, &consumed);
    if (r == BS_PROTO_NEED_MORE)
        r = bs_proto_feed(p, buf, size, &consumed);
    record(o, p, buf, r == BS_PROTO_DONE ? consumed : size, r, consumed);
}

/*
 * check_request - parse the request at the front of buf every way
 *
 * Returns *consumed if it was DONE, else 0 (the stream ends there).
 */
static size_t check_request(const char *buf, size_t size, char *copy)
{
    static bs_proto_parser p;
    static struct outcome want, got, again;
    size_t consumed = 0, k, cut;
    int r;

    ref_parse(buf, size, &want);

    bs_proto_reset(&p);
    r = bs_proto_feed(&p, buf, size, &consumed);
    record(&got, &p, buf, r == BS_PROTO_DONE ? consumed : size, r, consumed);
    same("whole vs model", &want, &got);
    check_get(&p);
    if (r != BS_PROTO_NEED_MORE) { /* a repeated call repeats the answer */
        size_t consumed2 = 0;
        int r2 = bs_proto_feed(&p, buf, size, &consumed2);

        record(&again, &p, buf, r2 == BS_PROTO_DONE ? consumed2 : size, r2, consumed2);
        same("second call", &want, &again);
    }

    memcpy(copy, buf, size);
    parse_chunks(&p, copy, size, 1, &got);
    same("byte at a time", &want, &got);
    for (k = 0; k < 4; k++) {
        parse_chunks(&p, copy, size, 0, &got);
        same("random chunks", &want, &got);
    }
    if (size <= 512) {
        for (cut = 0; cut <= size; cut++) {
            parse_two(&p, buf, size, cut, &got);
            same("two pieces", &want, &got);
        }
    } else {
        for (k = 0; k < 32; k++) {
            parse_two(&p, buf, size, (size_t)(rng() % (size + 1)), &got);
            same("two pieces (sampled)", &want, &got);
        }
    }
    return want.r == BS_PROTO_DONE ? want.consumed : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    char *copy = malloc(size ? size : 1);
    size_t off = 0, used, k;

    if (copy == NULL)
        abort();
    rng_state = 0x9e3779b97f4a7c15ULL ^ size;
    for (k = 0; k < size; k++)
        rng_state = (rng_state ^ data[k]) * 0x100000001b3ULL;
    if (rng_state == 0)
        rng_state = 1;
    do {
        /* the copy ends where the allocation does: reading past it is caught */
        used = check_request(buf + off, size - off, copy + off);
        off += used;
    } while (used > 0 && off < size);
    free(copy);
    return 0;
}
