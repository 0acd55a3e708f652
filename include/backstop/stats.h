/*
 * stats.h - this process's counters (one global, single-threaded)
 *
 * Every limit, drop and fallback has a counter here. They are logged at
 * shutdown and on SIGUSR1 (bs_stats_log). Cluster-wide decision counters
 * are separate: the store flushes them to the Redis "stats" hash.
 */
#ifndef BACKSTOP_STATS_H
#define BACKSTOP_STATS_H

#include <stdint.h>

#include "backstop/decide.h"
#include "backstop/proto.h"

/* Answer latency histogram: upper bounds in microseconds; the last bucket
 * (+Inf) is implicit. */
#define BS_LAT_NBUCKETS 14
extern const uint64_t bs_lat_bounds_us[BS_LAT_NBUCKETS];

typedef struct bs_stats {
    uint64_t requests;
    uint64_t by_why[BS_WHY_COUNT];
    uint64_t conn_accepted;
    uint64_t conn_closed;
    uint64_t conn_active;
    uint64_t conn_limit_waits; /* accepts delayed at max_connections */
    uint64_t conn_denied;      /* inet peer not in [server] allow */
    uint64_t proto_errors[BS_PROTO_NERR];
    uint64_t bad_request_type; /* request= other than smtpd_access_policy */
    uint64_t idle_timeouts;
    uint64_t partial_timeouts; /* request not complete within its deadline */
    uint64_t pipelined_closed; /* more than a request's worth pipelined */
    uint64_t write_errors;
    uint64_t late_replies; /* store answers for requests already answered */
    uint64_t redis_connects;
    uint64_t redis_disconnects;
    uint64_t redis_stalls;    /* connection dropped: no reply in time */
    uint64_t redis_errors;    /* error replies */
    uint64_t redis_busy;      /* max_pending reached */
    uint64_t redis_noscript;  /* EVALSHA retried as EVAL */
    uint64_t clients_blocked; /* blocks set by our rate tracking */
    uint64_t ndr_unreadable;  /* bounces whose recipient domain could not be
                                 read: the "*" NDR policy decided */
    uint64_t reloads;
    uint64_t reload_errors;
    uint64_t lat_buckets[BS_LAT_NBUCKETS + 1]; /* non-cumulative counts */
    uint64_t lat_sum_us;
    uint64_t metrics_scrapes;
} bs_stats;

extern bs_stats bs_stat;

/* bs_stats_latency - count one answer that took us microseconds */
void bs_stats_latency(uint64_t us);

/* bs_stats_log - one info line with every non-zero counter */
void bs_stats_log(const char *when);

#endif
