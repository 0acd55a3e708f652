/*
 * stats.h - this process's counters (one global, single-threaded)
 *
 * Every limit, drop and fallback has a counter here. They are logged at
 * shutdown and on SIGUSR1 (bs_stats_log). Cluster-wide decision counters
 * are separate: the store flushes them to the Redis "stats" hash.
 */
#ifndef BACKSTOP_STATS_H
#define BACKSTOP_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "backstop/decide.h"
#include "backstop/proto.h"

/* Answer latency histogram: upper bounds in microseconds; the last bucket
 * (+Inf) is implicit. */
#define BS_LAT_NBUCKETS 14
extern const uint64_t bs_lat_bounds_us[BS_LAT_NBUCKETS];

/*
 * The plain counters, one row each, in the order of the statistics log line:
 * X(field, Prometheus counter or NULL, help). The log line (stats.c) and the
 * metrics (metrics.c) are generated from this table. NULL: logged only
 * (requests is exported per reason as backstop_requests_total, conn_active
 * as the backstop_connections gauge). clients_blocked is also the field the
 * rate script increments in the cluster-wide stats hash (keys.h), and
 * harvest_started / harvest_ended the fields the harvest scripts increment
 * there (cluster-wide; here: this process's count and sweep); the hash's
 * other fields are the decision reasons (bs_why_name).
 */
#define BS_COUNTERS(X)                                                                             \
    X(requests, NULL, "Policy requests answered.")                                                 \
    X(conn_accepted, "backstop_connections_accepted_total", "Policy connections accepted.")        \
    X(conn_closed, "backstop_connections_closed_total", "Policy connections closed.")              \
    X(conn_active, NULL, "Open policy connections.")                                               \
    X(conn_limit_waits, "backstop_connection_limit_waits_total",                                   \
      "Times a new connection waited at max_connections.")                                         \
    X(conn_denied, "backstop_connections_denied_total",                                            \
      "Connections refused: peer not in [server] allow.")                                          \
    X(bad_request_type, "backstop_bad_request_type_total",                                         \
      "Requests with request= other than smtpd_access_policy.")                                    \
    X(idle_timeouts, "backstop_idle_timeouts_total", "Connections closed after idle_timeout.")     \
    X(partial_timeouts, "backstop_partial_timeouts_total",                                         \
      "Connections closed: request not complete in time.")                                         \
    X(pipelined_closed, "backstop_pipelined_closed_total",                                         \
      "Connections closed: over a request's worth pipelined.")                                     \
    X(write_errors, "backstop_write_errors_total", "Replies that could not be written.")           \
    X(late_replies, "backstop_late_replies_total", "Redis answers for requests already answered.") \
    X(redis_connects, "backstop_redis_connects_total", "Redis connections established.")           \
    X(redis_disconnects, "backstop_redis_disconnects_total", "Redis connections lost or dropped.") \
    X(redis_stalls, "backstop_redis_stalls_total", "Redis connections dropped for not answering.") \
    X(redis_errors, "backstop_redis_errors_total", "Redis error replies.")                         \
    X(redis_busy, "backstop_redis_busy_total", "Requests refused at [redis] max_pending.")         \
    X(redis_noscript, NULL, "EVALSHA retried as EVAL (script not loaded).")                        \
    X(clients_blocked, "backstop_clients_blocked_total",                                           \
      "Clients blocked by this process's rate tracking.")                                          \
    X(unknown_counts_dropped, "backstop_unknown_counts_dropped_total",                             \
      "Unknown recipients not counted (rate, harvest): Redis not ready, or the batch full.")       \
    X(would_reject, "backstop_would_reject_total",                                                 \
      "Refusals report mode turned into WARN (also counted per domain in Redis wouldreject).")     \
    X(would_reject_dropped, "backstop_would_reject_dropped_total",                                 \
      "Would-reject counts not added to Redis: too many domains within one flush.")                \
    X(mode_bad_values, "backstop_mode_bad_values_total",                                           \
      "Requests that found a mode HASH value that is no mode (ignored).")                          \
    X(ndr_unreadable, "backstop_ndr_unreadable_total",                                             \
      "Bounces whose recipient domain could not be read; the \"*\" NDR policy decided.")           \
    X(dir_gauges_truncated, "backstop_directory_gauges_truncated_total",                           \
      "Directory gauge refreshes that left protected domains out (over BS_DIR_GAUGES_MAX).")       \
    X(mirror_answers, "backstop_mirror_answers_total",                                             \
      "Lookups answered from the local mirror, exact.")                                            \
    X(mirror_stale_answers, "backstop_mirror_stale_answers_total",                                 \
      "Lookups answered from the local mirror while it was stale (link to Redis lost).")           \
    X(mirror_stale_periods, "backstop_mirror_stale_periods_total",                                 \
      "Times the local mirror lost its invalidations and went stale.")                             \
    X(mirror_invalidations, "backstop_mirror_invalidations_total",                                 \
      "Invalidations received for mirrored keys (a flush counts one).")                            \
    X(mirror_reads, "backstop_mirror_reads_total", "Mirror reads sent (SCAN batches, GET+PTTL).")  \
    X(mirror_read_errors, "backstop_mirror_read_errors_total",                                     \
      "Mirror reads answered with an error (wrong type): that key is left to Redis.")              \
    X(harvest_started, "backstop_harvest_started_total",                                           \
      "Harvest attacks this process's count started.")                                             \
    X(harvest_ended, "backstop_harvest_ended_total",                                               \
      "Harvest attacks this process's sweep ended (their duration passed).")                       \
    X(harvest_greylisted, "backstop_harvest_greylisted_total",                                     \
      "Recipients deferred because their domain is under a harvest attack (greylist or defer).")   \
    X(harvest_domains_dropped, "backstop_harvest_domains_dropped_total",                           \
      "Domains under attack left out of the local table (over BS_HARVEST_DOMAINS_MAX).")           \
    X(harvest_unreadable, "backstop_harvest_unreadable_total",                                     \
      "Attack hash values without a readable until (treated as under attack).")                    \
    X(reloads, "backstop_reloads_total", "Configuration reloads.")                                 \
    X(reload_errors, "backstop_reload_errors_total", "Configuration reloads refused.")

typedef struct bs_stats {
#define BS_COUNTER_FIELD(f, metric, help) uint64_t f;
    BS_COUNTERS(BS_COUNTER_FIELD)
#undef BS_COUNTER_FIELD
    uint64_t by_why[BS_WHY_COUNT];
    uint64_t proto_errors[BS_PROTO_NERR];      /* by -BS_PROTO_E_*, [0] unused */
    uint64_t lat_buckets[BS_LAT_NBUCKETS + 1]; /* non-cumulative counts */
    uint64_t lat_sum_us;
    uint64_t metrics_scrapes; /* neither logged nor exported */
} bs_stats;

/* One row of BS_COUNTERS, for code that walks them all. */
typedef struct bs_counter {
    const char *name;   /* the field's name, as logged */
    const char *metric; /* Prometheus counter, or NULL */
    const char *help;
    size_t off; /* of the field in bs_stats */
} bs_counter;

extern const bs_counter bs_counters[];
extern const size_t bs_ncounters;

/* bs_counter_value - the current value of row c in bs_stat */
uint64_t bs_counter_value(const bs_counter *c);

extern bs_stats bs_stat;

/* bs_stats_latency - count one answer that took us microseconds */
void bs_stats_latency(uint64_t us);

/* bs_stats_log - one info line with every non-zero counter: the rows of
 * BS_COUNTERS, then why_<reason>=, then proto_error_<name>=, then the
 * syslog client's log_sent=, log_dropped=, log_connect_failures= (log.h) */
void bs_stats_log(const char *when);

#endif
