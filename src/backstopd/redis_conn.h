/*
 * redis_conn.h - private between redis_conn.c (the link to Redis) and its
 * owners: store_redis.c (what backstop asks Redis) and redis_track.c (the
 * mirror's invalidation connection); nothing else includes it
 *
 * redis_conn.c keeps one hiredis async connection to the master alive:
 * endpoint or Sentinel discovery, AUTH/SELECT/ROLE handshake, connect
 * deadline, reconnect backoff, stall detection. store_redis.c builds the
 * commands, decodes the replies and owns the query pool; it embeds a
 * bs_redis_conn and is called back through bs_redis_conn_hooks.
 *
 * The fields below are the connection's own: store_redis.c reads none of
 * them and goes through the bs__redis_conn_* functions.
 */
#ifndef BACKSTOP_REDIS_CONN_H
#define BACKSTOP_REDIS_CONN_H

#include <stdint.h>

#include <hiredis/async.h>
#include <uv.h>

#include "backstop/config.h"
#include "resp.h"

/* What the owner of a connection is told, and asked, by the connection. */
typedef struct bs_redis_conn_hooks {
    /* a new connection is being set up: queue the owner's part of the
     * handshake (SCRIPT LOAD) with bs__redis_conn_handshake_cmd; 0 or -1 */
    int (*handshake)(void *owner);
    /* every tick (100 ms) while the connection can take commands */
    void (*tick)(void *owner, uint64_t now);
    /* every tick while it cannot (lost, reconnecting): may be NULL */
    void (*down)(void *owner, uint64_t now);
    /* both timers are closed after bs__redis_conn_close: free the owner */
    void (*closed)(void *owner);
} bs_redis_conn_hooks;

typedef struct bs_redis_conn {
    uv_loop_t *loop;
    const bs_config *cfg;
    const bs_redis_conn_hooks *hooks;
    void *owner;
    redisAsyncContext *ac;
    int state; /* enum conn_state (redis_conn.c) */
    unsigned handshake_pending;
    uv_timer_t retry_timer; /* reconnect backoff, and connect deadline */
    uv_timer_t tick_timer;  /* stall detector, owner's tick, Sentinel probe */
    int open_handles;
    uint64_t backoff_ms;
    unsigned failures;    /* connection attempts failed since last ready */
    uint64_t busy_since;  /* last progress while commands are outstanding */
    unsigned outstanding; /* tracked commands sent, not yet replied */
    /* Sentinel discovery ([redis] sentinel): the sentinel being asked, the
     * order to ask them in (the last one that answered first), the result */
    redisAsyncContext *sac;
    unsigned sentinel_order[BS_CFG_MAX_SENTINELS];
    unsigned sentinel_next;
    int discovered;
    int probing; /* asking a sentinel while connected (on_tick) */
    uint64_t last_probe;
    bs_endpoint master;
} bs_redis_conn;

/* bs__redis_conn_start - init c inside its owner and start connecting in
 * the background. cfg must stay valid (it may change in place). */
void bs__redis_conn_start(bs_redis_conn *c, uv_loop_t *loop, const bs_config *cfg,
                          const bs_redis_conn_hooks *hooks, void *owner);

/* bs__redis_conn_reconfigure - after *cfg changed in place (old: the values
 * before): reconnect when the endpoint, credentials or db changed. */
void bs__redis_conn_reconfigure(bs_redis_conn *c, const bs_config *old);

/* bs__redis_conn_close - no more commands or hooks except closed(): a ready
 * connection is closed gracefully (what was queued is still written) within
 * a 500 ms deadline, any other is dropped at once. */
void bs__redis_conn_close(bs_redis_conn *c);

/* bs__redis_conn_ready - 1 when commands can be sent now */
int bs__redis_conn_ready(const bs_redis_conn *c);

/* bs__redis_conn_closed - 1 after bs__redis_conn_close */
int bs__redis_conn_closed(const bs_redis_conn *c);

/* bs__redis_conn_current - 1 when ac is the live connection (a reply from
 * a dropped one is late: its connection is gone) */
int bs__redis_conn_current(const bs_redis_conn *c, const redisAsyncContext *ac);

/* bs__redis_conn_send - queue one built command on the live connection, fn
 * called with privdata priv on its reply (reply NULL when the connection
 * goes first). tracked: counted by the stall detector until the owner
 * calls bs__redis_conn_replied. 0, or -1 (no connection, b overflowed,
 * hiredis refused): then fn is never called. */
int bs__redis_conn_send(bs_redis_conn *c, const bs_resp *b, redisCallbackFn *fn, void *priv,
                        int tracked);

/* bs__redis_conn_replied - a tracked command's reply (NULL: the connection
 * went) arrived */
void bs__redis_conn_replied(bs_redis_conn *c, const void *reply);

/* bs__redis_conn_handshake_cmd - from the handshake hook: queue one more
 * handshake command; a 40-character string reply is copied to sha_out
 * (41 bytes), an error reply drops the connection. 0 or -1. */
int bs__redis_conn_handshake_cmd(bs_redis_conn *c, const bs_resp *b, char *sha_out);

/* bs__redis_conn_drop - abandon the connection now (logged with why): every
 * pending callback runs with reply NULL; reconnect after the backoff */
void bs__redis_conn_drop(bs_redis_conn *c, const char *why);

#endif
