/*
 * store_redis.h - the Redis store: bs_store over one hiredis async
 * connection, with its own deadlines, reconnection and batching
 *
 * The key schema is keys.h; the connection itself (endpoint, Sentinel,
 * handshake, deadlines, reconnection) is redis_conn.c.
 */
#ifndef BACKSTOP_STORE_REDIS_H
#define BACKSTOP_STORE_REDIS_H

#include <uv.h>

#include "backstop/config.h"
#include "store.h"

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

#endif
