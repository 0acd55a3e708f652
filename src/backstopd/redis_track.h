/*
 * redis_track.h - private between redis_track.c (the Redis side of the
 * local mirror) and store_redis.c, which owns it when [redis] mirror = yes
 *
 * redis_track.c keeps a second connection (redis_conn.c, same endpoint or
 * Sentinel master) subscribed to __redis__:invalidate, turns CLIENT
 * TRACKING on (BCAST, REDIRECT to that connection, the prefixes of the
 * mirrored keys) on the store's data connection, runs the mirror's reads
 * on the data connection and feeds their replies and the invalidations to
 * the pure mirror (mirror.c).
 */
#ifndef BACKSTOP_REDIS_TRACK_H
#define BACKSTOP_REDIS_TRACK_H

#include <stdint.h>

#include "mirror.h"
#include "redis_conn.h"

typedef struct bs_redis_track {
    bs_mirror *m;
    bs_redis_conn *data; /* the store's connection: reads and tracking */
    bs_redis_conn sub;   /* the invalidation connection (ours) */
    const bs_config *cfg;
    void (*closed)(void *owner); /* called once sub has closed */
    void *owner;
    int sub_state;           /* enum sub_state (redis_track.c) */
    long long sub_id;        /* CLIENT ID of sub */
    uint64_t sub_asked;      /* when CLIENT ID was sent */
    uint64_t sub_retry;      /* no subscription before (after a refusal) */
    unsigned sub_refused;    /* refusals in a row */
    uint64_t sub_gen;        /* subscriptions confirmed so far */
    uint64_t tracking_gen;   /* sub_gen that tracking redirects to, 0: off */
    int tracking_sent;       /* CLIENT TRACKING in flight */
    uint64_t tracking_retry; /* after a refused CLIENT TRACKING: not before */
    unsigned reads;          /* mirror reads in flight (of read_gen) */
    uint64_t read_gen;       /* bumped when the reads in flight become void */
    uint64_t last_ping;
    int stale_logged; /* 1: said stale, 2: said past max_stale */
} bs_redis_track;

/* bs__redis_track_start - init t, start the invalidation connection; 0, or
 * -1 (out of memory: no mirror) */
int bs__redis_track_start(bs_redis_track *t, uv_loop_t *loop, const bs_config *cfg,
                          bs_redis_conn *data, void (*closed)(void *owner), void *owner);

/* bs__redis_track_data_new - the data connection is being set up again:
 * tracking is off on it (the mirror is stale until it is on again) */
void bs__redis_track_data_new(bs_redis_track *t);

/* bs__redis_track_tick - from the data connection's tick: turn tracking on,
 * send due reads, a PING a second (so a frozen Redis is noticed) */
void bs__redis_track_tick(bs_redis_track *t, uint64_t now);

/* bs__redis_track_answer - bs_mirror_answer with the link state checked
 * first; logs the stale periods once; see enum bs_mirror_answer. A stale
 * answer that a protected domain's recipient is unknown is not given
 * (BS_MIRROR_ASK_REDIS): stale data never makes a 550. */
int bs__redis_track_answer(bs_redis_track *t, const bs_lookup *q, bs_facts *f);

/* bs__redis_track_changes - bs_mirror_changes of the mirror (0 without) */
uint64_t bs__redis_track_changes(const bs_redis_track *t);

/* bs__redis_track_check - mark the mirror stale now if the link is down
 * (done by every answer and tick; for a metrics scrape in between) */
void bs__redis_track_check(bs_redis_track *t);

/* bs__redis_track_reset - [redis] prefix changed: start from an empty
 * mirror (Redis answers until it is loaded again) and track the new keys */
void bs__redis_track_reset(bs_redis_track *t);

/* bs__redis_track_close - free the mirror, close the invalidation
 * connection; t->closed(owner) follows */
void bs__redis_track_close(bs_redis_track *t);

#endif
