/*
 * redis_uv.h - our own libuv adapter for hiredis 0.14 async contexts
 *
 * Debian's hiredis 0.14.1 ships adapters/libuv.h, whose poll callback returns
 * early on a poll error, so a refused or reset connection is never reported
 * to hiredis and its callbacks never run. This adapter hands every poll
 * event, errors included, to hiredis's read/write handlers, which then see
 * the socket error and run the connect/disconnect callbacks.
 *
 * Ownership: the adapter state is allocated at attach and freed in the
 * uv_close callback of its poll handle, after hiredis calls cleanup (when
 * the context is freed). Deadlines are not handled here: the owner of the
 * context (redis_conn.c) runs its own uv timers.
 */
#ifndef BACKSTOP_REDIS_UV_H
#define BACKSTOP_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* bs_redis_uv_attach - returns 0, or -1 (context left unattached). */
int bs_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

/* bs_redis_uv_flush - write the commands queued so far now, as the flush
 * check handle would (a no-op when nothing waits). For a caller in the
 * check phase: commands queued there, after the flush handle ran or
 * started, would otherwise wait for the next loop turn's poll. */
void bs_redis_uv_flush(redisAsyncContext *ac);

#endif
