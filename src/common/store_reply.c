/*
 * store_reply.c - decode Redis's replies to the store's queries into
 * bs_facts (see store_reply.h)
 *
 * Provides bs_store_reply_apply: one reply of a known kind (keys.h's
 * lookups and the scripts) into the facts decide.c reads, or into the
 * script's integer result. Used by backstopd's store (store_redis.c) and
 * by backstopctl (ctl_explain.c): one reader, so the admin's prediction and
 * the daemon's verdict see the same facts. Fuzzed (tests/fuzz/fuzz_reply.c).
 *
 * Never: allocates, does I/O, or trusts a reply's type: a reply of a type
 * the command cannot give (or an array holding one) is -1 and changes
 * nothing in the facts, never a guess. Unit-tested reply by reply
 * (tests/unit/test_store_reply.c).
 */
#include <limits.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "backstop/addr.h"
#include "backstop/store_reply.h"

/* bs_store_unix_time - see store_reply.h */
long long bs_store_unix_time(const char *s, size_t len)
{
    long long t = 0;
    size_t i;

    if (len == 0 || len > 12) /* 12 digits: well past the year 30000 */
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        t = t * 10 + (s[i] - '0');
    }
    return t;
}

/* bs_store_mode_value - see store_reply.h */
void bs_store_mode_value(bs_facts *f, size_t i, const char *v, size_t len)
{
    size_t n = len < BS_MODE_VALUE_MAX - 1 ? len : BS_MODE_VALUE_MAX - 1;

    if (i > 1) /* two fields are asked: the domain's and "*" */
        return;
    f->mode_found[i] = 1;
    memcpy(f->mode_value[i], v, n);
    f->mode_value[i][n] = 0;
    f->mode_len[i] = n;
    f->mode_cut[i] = n < len;
}

/* clamp_int - a script's integer, kept in int with its sign */
static int clamp_int(long long v)
{
    return (int)(v > INT_MAX ? INT_MAX : v < INT_MIN ? INT_MIN : v);
}

/* array_of - 1 when rep is an array of at most max elements, each of type
 * t or (t2 >= 0) t2: what SMISMEMBER (integers) or HMGET (strings and
 * nils) gives; nothing is applied from a reply that is not */
static int array_of(const redisReply *rep, size_t max, int t, int t2)
{
    size_t i;

    if (rep->type != REDIS_REPLY_ARRAY || rep->elements > max)
        return 0;
    for (i = 0; i < rep->elements; i++)
        if (rep->element[i]->type != t && rep->element[i]->type != t2)
            return 0;
    return 1;
}

/* bs_store_reply_apply - see store_reply.h */
int bs_store_reply_apply(int kind, const redisReply *rep, bs_facts *f, int *result)
{
    size_t i;

    if (rep->type == REDIS_REPLY_ERROR)
        return -1;
    switch (kind) {
    case BS_REPLY_BLOCK:
        if (rep->type == REDIS_REPLY_NIL)
            return 0;
        if (rep->type != REDIS_REPLY_STRING)
            return -1;
        f->blocked = 1;
        bs_escape(rep->str, rep->len, f->block_reason, sizeof(f->block_reason));
        return 0;
    case BS_REPLY_DOMAIN:
        if (rep->type != REDIS_REPLY_INTEGER)
            return -1;
        f->protected_domain = rep->integer == 1;
        return 0;
    case BS_REPLY_EXEMPT:
    case BS_REPLY_RCPT:
        if (!array_of(rep, rep->elements, REDIS_REPLY_INTEGER, -1))
            return -1;
        for (i = 0; i < rep->elements; i++) {
            if (rep->element[i]->integer == 1)
                *(kind == BS_REPLY_EXEMPT ? &f->exempt : &f->rcpt_known) = 1;
        }
        return 0;
    case BS_REPLY_NDR:  /* the longest suffix's entry: the first field found */
    case BS_REPLY_MODE: /* the domain's field and "*" */
        if (!array_of(rep, kind == BS_REPLY_MODE ? 2 : rep->elements, REDIS_REPLY_STRING,
                      REDIS_REPLY_NIL))
            return -1;
        for (i = 0; i < rep->elements; i++) {
            const redisReply *e = rep->element[i];

            if (e->type == REDIS_REPLY_NIL)
                continue;
            if (kind == BS_REPLY_MODE) {
                bs_store_mode_value(f, i, e->str, e->len);
            } else if (f->ndr_index < 0) {
                size_t n = e->len < sizeof(f->ndr_value) - 1 ? e->len : sizeof(f->ndr_value) - 1;

                memcpy(f->ndr_value, e->str, n);
                f->ndr_value[n] = 0;
                f->ndr_value_len = n;
                f->ndr_index = (int)i;
            }
        }
        return 0;
    case BS_REPLY_DIR_SIZE:
        if (rep->type != REDIS_REPLY_INTEGER)
            return -1;
        f->dir_known = 1;
        f->dir_size = rep->integer;
        return 0;
    case BS_REPLY_DIR_SYNC:
        if (rep->type == REDIS_REPLY_NIL)
            return 0;
        if (rep->type != REDIS_REPLY_STRING)
            return -1;
        f->dir_synced_at = bs_store_unix_time(rep->str, rep->len);
        return 0;
    case BS_REPLY_SCRIPT:
        return 0;
    case BS_REPLY_TAKE:
    case BS_REPLY_NOTE:
    case BS_REPLY_GREY:
        if (rep->type != REDIS_REPLY_INTEGER)
            return -1;
        *result = clamp_int(rep->integer);
        return 0;
    default:
        return -1;
    }
}
