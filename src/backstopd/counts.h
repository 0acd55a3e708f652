/*
 * counts.h - the unknown-recipient counts waiting for the next flush to
 * Redis: one batch, per client (the invalid-recipient rate) and per
 * protected domain (the harvest threshold)
 *
 * An unknown recipient adds its client (address and client key) once,
 * one to the client's count (keyed by client, limit and window: a client
 * counted against two limits in one batch has two) and, when harvest
 * detection is on, one note with its client network to its domain's
 * entry. store_redis.c sends a batch when none is in flight and none was
 * sent within BS_COUNTS_GAP_MS (or at once when hot: one of its clients
 * reached its limit within the batch), as plain pipelined commands: SMISMEMBER exempt for the
 * batch's clients, then for each count and domain of the clients not exempt ZREMRANGEBYSCORE, ZADD
 * of all its members, PEXPIRE, ZCARD, and decides a block or an attack
 * from the ZCARD it reads back: where a script per unknown recipient ran,
 * which cost Redis three times as much.
 *
 * Pure (no libuv, no hiredis, no clock): a fixed-size struct, nothing
 * allocated. Every limit is named; bs_counts_add refuses what does not fit
 * (the caller counts the loss).
 */
#ifndef BACKSTOP_COUNTS_H
#define BACKSTOP_COUNTS_H

#include <stddef.h>
#include <stdint.h>

#include "backstop/addr.h"

#define BS_COUNTS_GAP_MS 5        /* a batch is sent at most this often, unless hot */
#define BS_COUNTS_NOTES_MAX 512   /* unknown recipients noted for domains in one batch */
#define BS_COUNTS_CLIENTS_MAX 256 /* clients (address and client key) in one batch */
#define BS_COUNTS_RATES_MAX 256   /* client counts (client, limit, window) in one batch */
#define BS_COUNTS_DOMAINS_MAX 128 /* domain counts in one batch */
#define BS_COUNTS_SLOTS 2048      /* index of the entries (a power of two) */

/* One client of a batch: its address and client key (the IPv6 network
 * for an IPv6 address), both asked about in the exempt SET at the flush. */
typedef struct bs_count_client {
    char ip[BS_CLIENT_KEY_MAX + 1];
    char ckey[BS_CLIENT_KEY_MAX + 1];
    int exempt; /* set by the flush: a member of the exempt SET, not counted */
} bs_count_client;

/* One client's count in a batch (rate:<ckey>). */
typedef struct bs_count_rate {
    int client; /* index in bs_counts.client */
    unsigned limit;
    uint64_t window_ms;
    unsigned adds; /* unknown recipients of this batch */
} bs_count_rate;

/* One protected domain's harvest count in a batch: its notes are chained
 * from first through bs_count_note.next (-1 ends), in the order added. */
typedef struct bs_count_domain {
    char domain[BS_DOMAIN_MAX + 1];
    unsigned adds;
    int first, last;
} bs_count_domain;

typedef struct bs_count_note {
    char net[BS_CLIENT_KEY_MAX + 1];
    int client; /* index in bs_counts.client */
    int next;
} bs_count_note;

typedef struct bs_counts {
    bs_count_client client[BS_COUNTS_CLIENTS_MAX];
    bs_count_rate rate[BS_COUNTS_RATES_MAX];
    bs_count_domain dom[BS_COUNTS_DOMAINS_MAX];
    bs_count_note note[BS_COUNTS_NOTES_MAX];
    size_t nclient, nrate, ndom, nnote;
    size_t nadded; /* unknown recipients added (bs_counts_add calls that added) */
    int hot;       /* a count's adds reached its limit: the batch alone blocks a client */
    /* open addressing over the three kinds of entry: 0 empty, else
     * (kind << 12 | index) + 1, kind 0 client, 1 rate, 2 domain */
    uint16_t slot[BS_COUNTS_SLOTS];
} bs_counts;

/* bs_counts_clear - an empty batch */
void bs_counts_clear(bs_counts *c);

/* bs_counts_empty - 1 when nothing waits */
int bs_counts_empty(const bs_counts *c);

/*
 * bs_counts_add - one unknown recipient of client (ip, ckey: both
 * non-empty): counted against limit within window_ms (limit 0: not
 * counted), and its client network net noted for domain (domain or net
 * NULL or empty: not noted). Returns 0, or -1 when the batch cannot take
 * it (nothing added: flush, then count the loss). Strings longer than
 * their entry's field are cut, as the store's keys are.
 */
int bs_counts_add(bs_counts *c, const char *ip, const char *ckey, unsigned limit,
                  uint64_t window_ms, const char *domain, const char *net);

/*
 * bs_counts_clock - the offset (ms) to add to this host's wall clock to
 * read Redis's, from a TIME reply of redis_ms read between sent_ms and
 * got_ms (this host's wall clock): Redis's time is taken as the midpoint's,
 * so the error is at most half the round trip.
 */
int64_t bs_counts_clock(uint64_t sent_ms, uint64_t got_ms, uint64_t redis_ms);

#endif
