/*
 * fuzz_reply.c - libFuzzer target for the Redis reply interpreter
 * (bs_store_reply_apply in src/common/store_reply.c)
 *
 * The input is byte 0, the kind of the first reply, then a RESP2 byte
 * stream as Redis might send it. Byte 0: kind = 1 + (b & 0x7f) % 7, so
 * '1'..'7' are BS_REPLY_BLOCK..BS_REPLY_NOTE, except 'm': BS_REPLY_MODE
 * (HMGET mode <domain> "*"); with bit 0x80 set the kind
 * moves on to the next one for every further reply (as the replies of one
 * pipelined lookup do), else every reply has the same kind. The stream
 * goes through hiredis's own redisReader, and every complete reply is
 * applied to one bs_facts and one result, as the replies of one query are
 * in on_op_reply(). Each call must keep the contract in store_reply.h and
 * what decide.c relies on, else abort() (libFuzzer keeps the input):
 *   - it returns 0 or -1, and 0 exactly when the reply has a type the
 *     command can give (GET: bulk or nil; SISMEMBER and the scripts: an
 *     integer; SMISMEMBER: an array of integers; HMGET: an array of bulks
 *     and nils); an error reply is -1 for every kind, and so
 *     is a kind it does not know, which changes nothing;
 *   - a kind writes only its own fields of f (or *result), and writes
 *     nothing outside f: f is an exact-size heap block, for ASan;
 *   - flags are 0 or 1; block_reason is bs_escape() of the value, so
 *     printable ASCII only and terminated within its array; ndr_value is
 *     terminated, ndr_value_len < sizeof ndr_value and holds the first
 *     bytes of the first non-nil field (a value may contain NUL: only the
 *     copy and the bounds are checked); ndr_index is -1 or the index of
 *     that field, below the number of elements, and a later reply does not
 *     move it;
 *   - a script's integer keeps its sign in *result (decide.c reads < 0 as
 *     an error, 0 as over the budget, > 0 as within it), clamped to int.
 * Replies are freed with freeReplyObject and the reader with
 * redisReaderFree: LeakSanitizer checks nothing is left behind.
 *
 * hiredis calloc()s an array's element vector as soon as it reads "*N", so
 * "*2000000000" alone asks for 16 GB, which libFuzzer's malloc limit
 * reports as a crash in hiredis, not in backstop. The reader's createArray
 * is wrapped to refuse more elements than the input has bytes (no such
 * array could be completed anyway); hiredis turns that into its
 * out-of-memory reader error.
 *
 * Built by tests/fuzz/fuzz.cmake: fuzz_reply (libFuzzer, clang,
 * -DBACKSTOP_FUZZ=ON) and fuzz_replay_reply (replay.c, any compiler).
 *   scripts/fuzz 60 reply
 *   build/fuzz/fuzz_reply -dict=tests/fuzz/reply.dict CORPUS_COPY
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "backstop/addr.h"
#include "backstop/store_reply.h"

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

/* Fields of bs_facts, to say which ones a kind may write. */
enum {
    F_BLOCKED = 1 << 0,
    F_REASON = 1 << 1,
    F_EXEMPT = 1 << 2,
    F_DOMAIN = 1 << 3,
    F_RCPT = 1 << 4,
    F_NDR = 1 << 5, /* ndr_index, ndr_value, ndr_value_len */
    F_RESULT = 1 << 6,
    F_DIR = 1 << 7,  /* dir_known, dir_size, dir_synced_at */
    F_MODE = 1 << 8, /* mode_found, mode_value, mode_len */
};

static unsigned writable(int kind)
{
    switch (kind) {
    case BS_REPLY_BLOCK:
        return F_BLOCKED | F_REASON;
    case BS_REPLY_EXEMPT:
        return F_EXEMPT;
    case BS_REPLY_DOMAIN:
        return F_DOMAIN;
    case BS_REPLY_RCPT:
        return F_RCPT;
    case BS_REPLY_NDR:
        return F_NDR;
    case BS_REPLY_TAKE:
    case BS_REPLY_NOTE:
    case BS_REPLY_GREY:
        return F_RESULT;
    case BS_REPLY_DIR_SIZE:
    case BS_REPLY_DIR_SYNC:
        return F_DIR;
    case BS_REPLY_MODE:
        return F_MODE;
    default:
        return 0;
    }
}

/* unchanged - a's and b's fields outside mask are equal (field by field:
 * struct padding is not compared) */
static int unchanged(const bs_facts *a, int ra, const bs_facts *b, int rb, unsigned mask)
{
    if (!(mask & F_BLOCKED) && a->blocked != b->blocked)
        return 0;
    if (!(mask & F_REASON) && memcmp(a->block_reason, b->block_reason, sizeof(a->block_reason)))
        return 0;
    if (!(mask & F_EXEMPT) && a->exempt != b->exempt)
        return 0;
    if (!(mask & F_DOMAIN) && a->protected_domain != b->protected_domain)
        return 0;
    if (!(mask & F_RCPT) && a->rcpt_known != b->rcpt_known)
        return 0;
    if (!(mask & F_NDR) && (a->ndr_index != b->ndr_index || a->ndr_value_len != b->ndr_value_len ||
                            memcmp(a->ndr_value, b->ndr_value, sizeof(a->ndr_value))))
        return 0;
    if (!(mask & F_RESULT) && ra != rb)
        return 0;
    if (!(mask & F_DIR) && (a->dir_known != b->dir_known || a->dir_size != b->dir_size ||
                            a->dir_synced_at != b->dir_synced_at))
        return 0;
    if (!(mask & F_MODE) && (memcmp(a->mode_found, b->mode_found, sizeof(a->mode_found)) ||
                             memcmp(a->mode_len, b->mode_len, sizeof(a->mode_len)) ||
                             memcmp(a->mode_value, b->mode_value, sizeof(a->mode_value))))
        return 0;
    return 1;
}

/* all_elements - every element of array r has one of types t1, t2 */
static int all_elements(const redisReply *r, int t1, int t2)
{
    size_t i;

    for (i = 0; i < r->elements; i++)
        if (r->element[i]->type != t1 && r->element[i]->type != t2)
            return 0;
    return 1;
}

/* accepts - a reply the command of kind can give (store_redis.h: anything
 * else, errors included, is -1) */
static int accepts(int kind, const redisReply *r)
{
    switch (kind) {
    case BS_REPLY_BLOCK:
        return r->type == REDIS_REPLY_NIL || r->type == REDIS_REPLY_STRING;
    case BS_REPLY_DOMAIN:
    case BS_REPLY_TAKE:
    case BS_REPLY_NOTE:
    case BS_REPLY_DIR_SIZE:
        return r->type == REDIS_REPLY_INTEGER;
    case BS_REPLY_DIR_SYNC:
        return r->type == REDIS_REPLY_NIL || r->type == REDIS_REPLY_STRING;
    case BS_REPLY_EXEMPT:
    case BS_REPLY_RCPT:
        return r->type == REDIS_REPLY_ARRAY &&
               all_elements(r, REDIS_REPLY_INTEGER, REDIS_REPLY_INTEGER);
    case BS_REPLY_NDR:
        return r->type == REDIS_REPLY_ARRAY && all_elements(r, REDIS_REPLY_STRING, REDIS_REPLY_NIL);
    case BS_REPLY_MODE: /* two fields asked: a longer array is no answer to it */
        return r->type == REDIS_REPLY_ARRAY && r->elements <= 2 &&
               all_elements(r, REDIS_REPLY_STRING, REDIS_REPLY_NIL);
    default:
        return 0;
    }
}

/* check_facts - what any bs_facts must look like, whatever it was fed */
static void check_facts(const bs_facts *f)
{
    size_t i;

    REQUIRE(f->blocked == 0 || f->blocked == 1);
    REQUIRE(f->exempt == 0 || f->exempt == 1);
    REQUIRE(f->protected_domain == 0 || f->protected_domain == 1);
    REQUIRE(f->rcpt_known == 0 || f->rcpt_known == 1);
    REQUIRE(TERMINATED(f->block_reason));
    for (i = 0; f->block_reason[i] != '\0'; i++)
        REQUIRE(f->block_reason[i] >= 0x21 && f->block_reason[i] <= 0x7e);
    REQUIRE(f->ndr_index >= -1);
    REQUIRE(f->ndr_value_len < sizeof(f->ndr_value));
    REQUIRE(f->ndr_value[f->ndr_value_len] == '\0');
    if (memchr(f->ndr_value, '\0', f->ndr_value_len) == NULL)
        REQUIRE(strlen(f->ndr_value) == f->ndr_value_len);
    if (f->ndr_index < 0)
        REQUIRE(f->ndr_value_len == 0 && f->ndr_value[0] == '\0');
    for (i = 0; i < 2; i++) {
        REQUIRE(f->mode_found[i] == 0 || f->mode_found[i] == 1);
        REQUIRE(f->mode_len[i] < sizeof(f->mode_value[i]));
        REQUIRE(f->mode_value[i][f->mode_len[i]] == '\0');
    }
}

/* check_applied - what a successful call of kind must have done */
static void check_applied(int kind, const redisReply *r, const bs_facts *was, const bs_facts *f,
                          int result)
{
    char reason[sizeof(f->block_reason)];
    size_t i, n;
    int any = 0;

    switch (kind) {
    case BS_REPLY_BLOCK:
        if (r->type == REDIS_REPLY_NIL) {
            REQUIRE(unchanged(was, 0, f, 0, 0));
            break;
        }
        REQUIRE(f->blocked == 1);
        bs_escape(r->str, r->len, reason, sizeof(reason));
        REQUIRE(strcmp(f->block_reason, reason) == 0);
        REQUIRE(r->len == 0 || f->block_reason[0] != '\0');
        break;
    case BS_REPLY_DOMAIN:
        REQUIRE(f->protected_domain == (r->integer == 1));
        break;
    case BS_REPLY_EXEMPT:
    case BS_REPLY_RCPT:
        for (i = 0; i < r->elements; i++)
            any |= r->element[i]->integer == 1;
        if (kind == BS_REPLY_EXEMPT)
            REQUIRE(f->exempt == (was->exempt | any));
        else
            REQUIRE(f->rcpt_known == (was->rcpt_known | any));
        break;
    case BS_REPLY_NDR:
        if (was->ndr_index >= 0) { /* the first field found stays */
            REQUIRE(unchanged(was, 0, f, 0, 0));
            break;
        }
        for (i = 0; i < r->elements && r->element[i]->type == REDIS_REPLY_NIL; i++)
            ;
        if (i == r->elements) {
            REQUIRE(f->ndr_index == -1);
            break;
        }
        REQUIRE(f->ndr_index >= 0 && (size_t)f->ndr_index == i && i < r->elements);
        n = r->element[i]->len;
        if (n > sizeof(f->ndr_value) - 1)
            n = sizeof(f->ndr_value) - 1;
        REQUIRE(f->ndr_value_len == n);
        REQUIRE(memcmp(f->ndr_value, r->element[i]->str, n) == 0);
        break;
    case BS_REPLY_DIR_SIZE:
        REQUIRE(f->dir_known == 1 && f->dir_size == r->integer);
        break;
    case BS_REPLY_MODE: /* each field set: its first bytes; a nil: as it was */
        for (i = 0; i < r->elements; i++) {
            if (r->element[i]->type == REDIS_REPLY_NIL) {
                REQUIRE(f->mode_found[i] == was->mode_found[i] &&
                        f->mode_len[i] == was->mode_len[i]);
                continue;
            }
            n = r->element[i]->len;
            if (n > sizeof(f->mode_value[i]) - 1)
                n = sizeof(f->mode_value[i]) - 1;
            REQUIRE(f->mode_found[i] == 1 && f->mode_len[i] == n);
            REQUIRE(memcmp(f->mode_value[i], r->element[i]->str, n) == 0);
        }
        break;
    case BS_REPLY_DIR_SYNC:
        REQUIRE(f->dir_synced_at >= 0 && (r->type == REDIS_REPLY_STRING || !f->dir_synced_at ||
                                          f->dir_synced_at == was->dir_synced_at));
        break;
    case BS_REPLY_TAKE:
    case BS_REPLY_NOTE: {
        long long v = r->integer;
        if (v > INT_MAX) {
            REQUIRE(result == INT_MAX);
        } else if (v >= INT_MIN) {
            REQUIRE(result == (int)v);
        } else {
            REQUIRE(result == INT_MIN);
        }
        break;
    }
    default:
        REQUIRE(!"a valid kind");
    }
}

/*
 * apply - one complete reply, as on_op_reply() hands it over
 */
static void apply(int kind, const redisReply *r, bs_facts *f, int *result)
{
    static const int bad_kinds[] = {0, BS_REPLY_MODE + 1, -1, INT_MAX, INT_MIN};
    bs_facts was, scratch;
    int was_result = *result, scratch_result, rc;
    size_t i;

    memcpy(&was, f, sizeof(was));

    /* a kind it does not know: -1, and nothing written */
    for (i = 0; i < sizeof(bad_kinds) / sizeof(bad_kinds[0]); i++) {
        memcpy(&scratch, f, sizeof(scratch));
        scratch_result = *result;
        REQUIRE(bs_store_reply_apply(bad_kinds[i], r, &scratch, &scratch_result) == -1);
        REQUIRE(unchanged(&was, was_result, &scratch, scratch_result, 0));
    }

    rc = bs_store_reply_apply(kind, r, f, result);
    REQUIRE(rc == 0 || rc == -1);
    REQUIRE((rc == 0) == accepts(kind, r));
    REQUIRE(unchanged(&was, was_result, f, *result, writable(kind)));
    check_facts(f);
    if (rc == 0)
        check_applied(kind, r, &was, f, *result);
}

/* The reader's createArray, capped at the input size (see the top). */
static void *(*create_array)(const redisReadTask *task, int elements);
static size_t array_cap;

static void *capped_create_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || (size_t)elements > array_cap)
        return NULL; /* hiredis: "Out of memory" reader error */
    return create_array(task, elements);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static redisReplyObjectFunctions fns;
    redisReader *reader;
    bs_facts *f;
    int kind, cycle, result = 0;
    void *reply;

    if (size < 1)
        return 0;
    kind = (data[0] & 0x7f) == 'm' ? BS_REPLY_MODE : 1 + (data[0] & 0x7f) % 7;
    cycle = data[0] & 0x80;

    reader = redisReaderCreate();
    REQUIRE(reader != NULL);
    if (create_array == NULL) {
        fns = *reader->fn; /* hiredis's defaults, createArray wrapped */
        create_array = fns.createArray;
        fns.createArray = capped_create_array;
    }
    reader->fn = &fns;
    array_cap = size;

    f = malloc(sizeof(*f)); /* exact size: ASan sees any write past it */
    REQUIRE(f != NULL);
    memset(f, 0, sizeof(*f));
    f->ndr_index = -1;

    REQUIRE(redisReaderFeed(reader, (const char *)data + 1, size - 1) == REDIS_OK);
    for (;;) {
        reply = NULL;
        if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
            REQUIRE(reply == NULL && reader->err != 0);
            break; /* a protocol error ends the connection */
        }
        if (reply == NULL)
            break; /* needs more bytes */
        apply(kind, reply, f, &result);
        freeReplyObject(reply);
        if (cycle)
            kind = kind % BS_REPLY_NOTE + 1;
    }
    redisReaderFree(reader);
    free(f);
    return 0;
}
