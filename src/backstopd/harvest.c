/*
 * harvest.c - the attack table and the known-client write filter (see
 * harvest.h)
 *
 * Provides bs_attacks_find/_put, bs_known_due. Never:
 * allocates, does I/O, or reads a clock (the caller passes the time).
 * The attack table is small and usually empty: a linear scan, comparing
 * lengths first, is cheaper than hashing for a handful of entries and
 * bounded at BS_HARVEST_DOMAINS_MAX.
 */
#include <string.h>

#include "harvest.h"
#include "hash.h"

const bs_attack *bs_attacks_find(const bs_attacks *t, const char *domain)
{
    size_t i, len;

    if (!t->n)
        return NULL;
    len = strlen(domain);
    for (i = 0; i < t->n; i++)
        if (t->a[i].domain[0] == domain[0] && strlen(t->a[i].domain) == len &&
            memcmp(t->a[i].domain, domain, len) == 0)
            return &t->a[i];
    return NULL;
}

int bs_attacks_put(bs_attacks *t, const bs_attack *a)
{
    bs_attack *e = (bs_attack *)bs_attacks_find(t, a->domain);

    if (!e) {
        if (t->n == BS_HARVEST_DOMAINS_MAX)
            return -1;
        e = &t->a[t->n++];
    }
    *e = *a;
    return 0;
}

int bs_known_due(bs_known_filter *k, const char *domain, const char *network, uint64_t now_ms)
{
    /* the domain's length is mixed in first: ("a.b", "c") and ("a", "b c") differ */
    uint64_t h = bs_hash(BS_HASH_SEED, domain, strlen(domain));
    size_t slot;

    h = bs_hash_end(bs_hash(h, network, strlen(network))) | 1; /* 0 marks an empty slot */
    slot = (size_t)(h >> 20) & (BS_KNOWN_SLOTS - 1);
    if (k->hash[slot] == h && now_ms - k->last_ms[slot] < BS_KNOWN_REWRITE_MS)
        return 0;
    k->hash[slot] = h;
    k->last_ms[slot] = now_ms;
    return 1;
}
