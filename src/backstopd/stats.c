/*
 * stats.c - the process counters (see stats.h)
 *
 * Provides the global bs_stat, the counter table bs_counters[] (from
 * BS_COUNTERS) and bs_stats_log(). Never allocates; the log line is built in
 * a fixed buffer and truncated if ever too long.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "backstop/log.h"
#include "backstop/proto.h"
#include "stats.h"

bs_stats bs_stat;

const uint64_t bs_lat_bounds_us[BS_LAT_NBUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
};

void bs_stats_latency(uint64_t us)
{
    unsigned i = 0;

    while (i < BS_LAT_NBUCKETS && us > bs_lat_bounds_us[i])
        i++;
    bs_stat.lat_buckets[i]++;
    bs_stat.lat_sum_us += us;
}

const bs_counter bs_counters[] = {
#define BS_COUNTER_ROW(f, metric, help) {#f, metric, help, offsetof(bs_stats, f)},
    BS_COUNTERS(BS_COUNTER_ROW)
#undef BS_COUNTER_ROW
};
const size_t bs_ncounters = sizeof(bs_counters) / sizeof(bs_counters[0]);

uint64_t bs_counter_value(const bs_counter *c)
{
    uint64_t v;

    memcpy(&v, (const char *)&bs_stat + c->off, sizeof(v));
    return v;
}

/* append - add " name=value" to the line if it fits */
static size_t append(char *buf, size_t len, size_t cap, const char *name, uint64_t v)
{
    int n;

    if (v == 0 || len >= cap)
        return len;
    n = snprintf(buf + len, cap - len, " %s=%llu", name, (unsigned long long)v);
    if (n < 0 || (size_t)n >= cap - len)
        return len;
    return len + (size_t)n;
}

void bs_stats_log(const char *when)
{
    char buf[2048], name[64];
    size_t len = 0, i;
    struct bs_log_stats ls;

    buf[0] = 0;
    for (i = 0; i < bs_ncounters; i++)
        len = append(buf, len, sizeof(buf), bs_counters[i].name, bs_counter_value(&bs_counters[i]));
    for (i = 0; i < BS_WHY_COUNT; i++) {
        snprintf(name, sizeof(name), "why_%s", bs_why_name((int)i));
        len = append(buf, len, sizeof(buf), name, bs_stat.by_why[i]);
    }
    for (i = 1; i < BS_PROTO_NERR; i++) {
        snprintf(name, sizeof(name), "proto_error_%s", bs_proto_error_name(-(int)i));
        len = append(buf, len, sizeof(buf), name, bs_stat.proto_errors[i]);
    }
    bs_log_stats(&ls);
    len = append(buf, len, sizeof(buf), "log_sent", ls.sent);
    len = append(buf, len, sizeof(buf), "log_dropped", ls.dropped);
    len = append(buf, len, sizeof(buf), "log_connect_failures", ls.connect_failures);
    len = append(buf, len, sizeof(buf), "log_send_calls", ls.send_calls);
    bs_log(BS_LOG_INFO, "statistics (%s):%s", when, len ? buf : " none");
}
