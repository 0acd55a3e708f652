/*
 * store_reply.h - what Redis answered to the store's queries, as facts
 *
 * The one reader of the replies to the queries of keys.h's schema, shared
 * by backstopd's Redis store (store_redis.c) and by backstopctl's explain,
 * check and "ndr explain" (ctl_explain.c), so the admin's prediction reads
 * Redis exactly as the daemon does. Pure: no I/O, no allocation.
 */
#ifndef BACKSTOP_STORE_REPLY_H
#define BACKSTOP_STORE_REPLY_H

#include <stddef.h>

#include "backstop/decide.h"

/* What each pipelined reply of a query means. */
enum bs_store_reply_kind {
    BS_REPLY_BLOCK = 1, /* GET block:<client> */
    BS_REPLY_EXEMPT,    /* SMISMEMBER exempt ... */
    BS_REPLY_DOMAIN,    /* SISMEMBER domains <domain> */
    BS_REPLY_RCPT,      /* SMISMEMBER rcpt:<domain> ... */
    BS_REPLY_NDR,       /* HMGET ndr ... */
    BS_REPLY_TAKE,      /* the NDR budget script */
    BS_REPLY_NOTE,      /* the block script */
    BS_REPLY_DIR_SIZE,  /* SCARD rcpt:<domain> */
    BS_REPLY_DIR_SYNC,  /* HGET sync <domain>:ok */
    BS_REPLY_GREY,      /* the harvest check script (enum bs_grey_result) */
    BS_REPLY_SCRIPT,    /* another script; its reply is read by its caller */
    BS_REPLY_MODE,      /* HMGET mode <domain> "*" */
};

struct redisReply;
/* bs_store_reply_apply - interpret one reply of kind into f (lookups) or
 * *result (scripts). Bounded by the reply itself (strings are copied
 * truncated into f's fixed fields). Returns 0, or -1 when the reply has a
 * type that command cannot give (a key of the wrong type answers with an
 * error, which is -1 too). f must start with ndr_index = -1. */
int bs_store_reply_apply(int kind, const struct redisReply *rep, bs_facts *f, int *result);

/* bs_store_mode_value - mode HASH value i (0: the domain's field, 1: "*")
 * into f, truncated to BS_MODE_VALUE_MAX - 1 bytes (then mode_cut is set:
 * no mode, even when the start is one); shared with the mirror's answers */
void bs_store_mode_value(bs_facts *f, size_t i, const char *v, size_t len);

/* bs_store_unix_time - a sync record's time: decimal Unix seconds (at most
 * 12 digits, nothing else), or 0 when it is not that (then the domain
 * counts as never synced) */
long long bs_store_unix_time(const char *s, size_t len);

#endif
