/*
 * store_redis.h - the Redis store: bs_store over one hiredis async
 * connection, with its own deadlines, reconnection and batching
 *
 * The key schema is keys.h; the connection itself (endpoint, Sentinel,
 * handshake, deadlines, reconnection) is src/redis_conn.c.
 */
#ifndef BACKSTOP_STORE_REDIS_H
#define BACKSTOP_STORE_REDIS_H

#include <uv.h>

#include "backstop/config.h"
#include "backstop/store.h"

/* bs_store_redis_new - allocate and start connecting (in the background).
 * cfg must stay valid and may change in place (see _reconfigure). NULL on
 * out of memory. */
bs_store *bs_store_redis_new(uv_loop_t *loop, const bs_config *cfg);

/* bs_store_redis_reconfigure - call after *cfg changed in place; old holds
 * the previous values. Reconnects when the endpoint, credentials or db
 * changed (queries in flight then end with BS_WHY_REDIS_DOWN). */
void bs_store_redis_reconfigure(bs_store *s, const bs_config *old);

/* bs_store_redis_close - send the last stats, drop the connection (pending
 * queries are abandoned: their callbacks are not called), close the timers,
 * free s once libuv has released its handles. */
void bs_store_redis_close(bs_store *s);

/* What each pipelined reply of a query means (internal; for tests). */
enum bs_redis_reply_kind {
    BS_REPLY_BLOCK = 1, /* GET block:<client> */
    BS_REPLY_EXEMPT,    /* SMISMEMBER exempt ... */
    BS_REPLY_DOMAIN,    /* SISMEMBER domains <domain> */
    BS_REPLY_RCPT,      /* SMISMEMBER rcpt:<domain> ... */
    BS_REPLY_NDR,       /* HMGET ndr ... */
    BS_REPLY_TAKE,      /* the NDR budget script */
    BS_REPLY_NOTE,      /* the rate-tracking script */
    BS_REPLY_DIR_SIZE,  /* SCARD rcpt:<domain> */
    BS_REPLY_DIR_SYNC,  /* HGET sync <domain>:ok */
};

struct redisReply;
/* bs__redis_apply_reply - interpret one reply of kind into f (lookups) or
 * *result (scripts). Pure, bounded by the reply itself (strings are copied
 * truncated into f's fixed fields). Returns 0, or -1 when the reply has a
 * type that command cannot give (a key of the wrong type answers with an
 * error, which is -1 too). f must start with ndr_index = -1. */
int bs__redis_apply_reply(int kind, const struct redisReply *rep, bs_facts *f, int *result);

/* bs__redis_unix_time - a sync record's time: decimal Unix seconds (at most
 * 12 digits, nothing else), or 0 when it is not that (then the domain
 * counts as never synced) */
long long bs__redis_unix_time(const char *s, size_t len);

#endif
