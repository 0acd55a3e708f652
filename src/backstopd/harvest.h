/*
 * harvest.h - harvest detection's local state in backstopd: the table of
 * domains under attack and the known-client write filter
 *
 * Pure (no libuv, no hiredis, no clock of its own): store_redis.c fills the
 * attack table from the sweep script's answer (once a second: each field of
 * the attack hash still in force and the until the script read in its
 * value; at once when its own script started an attack; the value itself
 * is never parsed here) and reads it for every lookup of a protected
 * domain, so "under attack" costs no round trip; the filter keeps the
 * known:<domain> write off the common path (one write per domain and
 * network per BS_KNOWN_REWRITE_MS).
 */
#ifndef BACKSTOP_HARVEST_H
#define BACKSTOP_HARVEST_H

#include <stddef.h>
#include <stdint.h>

#include "backstop/addr.h"

#define BS_HARVEST_DOMAINS_MAX 256   /* domains under attack one process keeps */
#define BS_KNOWN_SLOTS 4096          /* known-client write filter (a power of two) */
#define BS_KNOWN_REWRITE_MS 3600000u /* write known:<domain> again after an hour */

/* One domain under attack: the attack hash's field and the until of its
 * value "since=UNIX;until=UNIX;unknown=N". */
typedef struct bs_attack {
    char domain[BS_DOMAIN_MAX + 1];
    long long until; /* Unix seconds, as the sweep script read it */
    int unreadable;  /* no readable until: treated as under attack */
} bs_attack;

typedef struct bs_attacks {
    bs_attack a[BS_HARVEST_DOMAINS_MAX];
    size_t n;
} bs_attacks;

/* bs_attacks_find - the entry of domain, or NULL */
const bs_attack *bs_attacks_find(const bs_attacks *t, const char *domain);

/* bs_attacks_put - add or replace a's domain; 0, or -1 when the table is
 * full (BS_HARVEST_DOMAINS_MAX: the caller counts and warns) */
int bs_attacks_put(bs_attacks *t, const bs_attack *a);

/* The known-client write filter: a fixed table of (hash of domain and
 * network, last write in ms); a collision just writes again. */
typedef struct bs_known_filter {
    uint64_t hash[BS_KNOWN_SLOTS];
    uint64_t last_ms[BS_KNOWN_SLOTS];
} bs_known_filter;

/* bs_known_due - 1 when (domain, network) must be written at now_ms (and
 * records the write), 0 when it was written within BS_KNOWN_REWRITE_MS */
int bs_known_due(bs_known_filter *k, const char *domain, const char *network, uint64_t now_ms);

#endif
