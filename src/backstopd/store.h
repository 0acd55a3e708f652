/*
 * store.h - the interface between the policy driver (conn.c) and the shared
 * state (Redis in production, a fake in tests)
 *
 * Calls never block. A call that returns 0 has queued the work and will call
 * its callback exactly once, later, from the event loop (never from inside
 * the call), also when the connection is lost (status BS_WHY_REDIS_DOWN) —
 * except after the store itself is closed, which ends all callbacks. A call
 * that returns non-zero (a BS_WHY_REDIS_* reason) queued nothing and will
 * never call back: the caller answers with the fallback at once.
 *
 * Results are routed by (arg, id): arg is a long-lived owner (the server's
 * connection table), id names one request of one connection with a
 * generation, so a late answer for a connection that was closed or already
 * answered is recognised and dropped by its owner. The store never holds a
 * pointer to a connection.
 */
#ifndef BACKSTOP_STORE_H
#define BACKSTOP_STORE_H

#include <stdint.h>

#include "backstop/decide.h"
#include "harvest.h"

/* status: 0 = facts valid, else a BS_WHY_REDIS_* reason (facts unusable) */
typedef void bs_store_facts_cb(void *arg, uint64_t id, int status, const bs_facts *facts);
/* result: 1 = within the budget, 0 = over it, -1 = error (status says why) */
typedef void bs_store_take_cb(void *arg, uint64_t id, int status, int result);

typedef struct bs_store bs_store;

/* One protected domain's directory, for the metrics (refreshed in the
 * background; at most BS_DIR_GAUGES_MAX domains, the first in byte order). */
#define BS_DIR_GAUGES_MAX 100
typedef struct bs_dir_gauge {
    char domain[BS_DOMAIN_MAX + 1];
    long long size;      /* SCARD rcpt:<domain> */
    long long synced_at; /* Unix seconds of its last successful sync, 0: none */
} bs_dir_gauge;

/* The local mirror's gauges ([redis] mirror = yes). */
typedef struct bs_mirror_gauges {
    unsigned long long keys, bytes, raced;
    double stale_seconds; /* 0 while exact (or never loaded) */
} bs_mirror_gauges;

typedef struct bs_store_ops {
    int (*lookup)(bs_store *s, const bs_lookup *q, bs_store_facts_cb *cb, void *arg, uint64_t id);
    /* take one from the NDR budget of recipient domain `domain` */
    int (*ndr_take)(bs_store *s, const char *domain, const bs_ndr_rule *rule, bs_store_take_cb *cb,
                    void *arg, uint64_t id);
    /* count one unknown recipient, unless its client (d->client_ip or
     * d->client_key) is in the exempt SET: with d->note_invalid for
     * d->client_key (blocked past d->invalid_limit within
     * d->invalid_window_ms), with d->note_harvest for harvest detection's
     * count of d->rcpt.domain (network d->network: the store logs and
     * records an attack it started). Fire and forget: the outcome is
     * logged and counted by the store. */
    void (*count_unknown)(bs_store *s, const bs_decision *d);
    /* harvest detection: record d->network as known to d->rcpt.domain
     * (fire and forget, deduplicated by the store), and the greylisting
     * check of a domain under attack (cb gets an enum bs_grey_result) */
    void (*known_note)(bs_store *s, const bs_decision *d);
    int (*harvest_check)(bs_store *s, const bs_decision *d, bs_store_take_cb *cb, void *arg,
                         uint64_t id);
    /* the domains under attack, as this process knows them (*n entries);
     * may be NULL */
    const bs_attack *(*attacks)(const bs_store *s, size_t *n);
    /* count one decision (cluster-wide stats, flushed in batches) */
    void (*count)(bs_store *s, int why);
    /* count one refusal that report mode let pass, for recipient domain
     * `domain` (the cluster-wide wouldreject HASH, flushed with the stats) */
    void (*would_reject)(bs_store *s, const char *domain);
    /* 1 when the store can take queries now */
    int (*ready)(const bs_store *s);
    /* the last directory snapshot: *n entries (0 before the first); may be
     * NULL in stores that keep none */
    const bs_dir_gauge *(*directory)(const bs_store *s, size_t *n);
    /* 1 and *g filled when the store keeps a mirror; may be NULL */
    int (*mirror)(const bs_store *s, bs_mirror_gauges *g);
} bs_store_ops;

struct bs_store {
    const bs_store_ops *ops;
};

#endif
