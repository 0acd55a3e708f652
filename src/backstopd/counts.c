/*
 * counts.c - the unknown-recipient counts waiting for the next flush (see
 * counts.h)
 *
 * One open-addressed index over the three kinds of entry: a client is
 * found by (address, client key), a client's count by (client, limit,
 * window), a domain by its name; the index is at most half full, so a
 * probe always ends at an empty slot.
 */
#include <string.h>

#include "counts.h"
#include "hash.h"

_Static_assert((BS_COUNTS_SLOTS & (BS_COUNTS_SLOTS - 1)) == 0, "slots: a power of two");
_Static_assert(BS_COUNTS_CLIENTS_MAX + BS_COUNTS_RATES_MAX + BS_COUNTS_DOMAINS_MAX <=
                   BS_COUNTS_SLOTS / 2,
               "the index stays at most half full");
_Static_assert(BS_COUNTS_CLIENTS_MAX <= 4096 && BS_COUNTS_RATES_MAX <= 4096 &&
                   BS_COUNTS_DOMAINS_MAX <= 4096,
               "entry indexes fit a slot's 12 bits");

enum { K_CLIENT, K_RATE, K_DOMAIN };

void bs_counts_clear(bs_counts *c)
{
    c->nclient = c->nrate = c->ndom = c->nnote = c->nadded = 0;
    c->hot = 0;
    memset(c->slot, 0, sizeof(c->slot));
}

int bs_counts_empty(const bs_counts *c)
{
    return c->nadded == 0;
}

/* cut - src into dst of size bytes, cut to fit */
static void cut(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = 0;
}

/* same - the field f holds the len bytes at s (cut to the field) */
static int same(const char *f, const char *s, size_t len)
{
    return strncmp(f, s, len) == 0 && f[len] == 0;
}

/* A key of an entry: the strings cut to their fields' size. */
typedef struct key {
    int kind;
    const char *a, *b; /* client: ip, ckey; domain: name */
    size_t alen, blen;
    int client; /* rate */
    unsigned limit;
    uint64_t window_ms;
} key;

static int matches(const bs_counts *c, int v, const key *k)
{
    int kind = (v - 1) >> 12, i = (v - 1) & 0xfff;

    if (kind != k->kind)
        return 0;
    switch (kind) {
    case K_CLIENT:
        return same(c->client[i].ip, k->a, k->alen) && same(c->client[i].ckey, k->b, k->blen);
    case K_RATE:
        return c->rate[i].client == k->client && c->rate[i].limit == k->limit &&
               c->rate[i].window_ms == k->window_ms;
    default:
        return same(c->dom[i].domain, k->a, k->alen);
    }
}

/* slot_of - the slot of the entry that matches k, or the empty slot where
 * it would go */
static size_t slot_of(const bs_counts *c, const key *k)
{
    uint64_t h = BS_HASH_SEED ^ (uint64_t)k->kind, w[2];
    size_t i;

    if (k->kind == K_RATE) {
        w[0] = (uint64_t)k->client << 32 | k->limit;
        w[1] = k->window_ms;
        h = bs_hash(h, (const char *)w, sizeof(w));
    } else {
        h = bs_hash(h, k->a, k->alen);
        if (k->b)
            h = bs_hash(h, k->b, k->blen);
    }
    for (i = (size_t)bs_hash_end(h) & (BS_COUNTS_SLOTS - 1);; i = (i + 1) & (BS_COUNTS_SLOTS - 1))
        if (c->slot[i] == 0 || matches(c, c->slot[i], k))
            return i;
}

static void put(bs_counts *c, size_t slot, int kind, size_t index)
{
    c->slot[slot] = (uint16_t)(((unsigned)kind << 12 | (unsigned)index) + 1);
}

int bs_counts_add(bs_counts *c, const char *ip, const char *ckey, unsigned limit,
                  uint64_t window_ms, const char *domain, const char *net)
{
    key kc = {.kind = K_CLIENT}, kr = {.kind = K_RATE}, kd = {.kind = K_DOMAIN};
    size_t cs, rs = 0, ds = 0;
    int rate = limit > 0, dom = domain && *domain && net && *net, ci;

    if (!ip || !*ip || !ckey || !*ckey || (!rate && !dom))
        return 0;
    kc.a = ip;
    kc.alen = strnlen(ip, BS_CLIENT_KEY_MAX);
    kc.b = ckey;
    kc.blen = strnlen(ckey, BS_CLIENT_KEY_MAX);
    cs = slot_of(c, &kc);
    if (!c->slot[cs] && c->nclient == BS_COUNTS_CLIENTS_MAX)
        return -1;
    ci = c->slot[cs] ? (c->slot[cs] - 1) & 0xfff : (int)c->nclient;
    if (rate) {
        kr.client = ci;
        kr.limit = limit;
        kr.window_ms = window_ms;
        rs = slot_of(c, &kr);
        if (!c->slot[rs] && c->nrate == BS_COUNTS_RATES_MAX)
            return -1;
    }
    if (dom) {
        kd.a = domain;
        kd.alen = strnlen(domain, BS_DOMAIN_MAX);
        ds = slot_of(c, &kd);
        if ((!c->slot[ds] && c->ndom == BS_COUNTS_DOMAINS_MAX) || c->nnote == BS_COUNTS_NOTES_MAX)
            return -1;
    }
    /* it fits: add (a new entry's slot may be the one found for the next
     * kind: those look again) */
    if (!c->slot[cs]) {
        bs_count_client *e = &c->client[c->nclient];
        cut(e->ip, sizeof(e->ip), ip);
        cut(e->ckey, sizeof(e->ckey), ckey);
        e->exempt = 0;
        put(c, cs, K_CLIENT, c->nclient++);
        if (rate)
            rs = slot_of(c, &kr);
        if (dom)
            ds = slot_of(c, &kd);
    }
    if (rate) {
        if (!c->slot[rs]) {
            bs_count_rate *e = &c->rate[c->nrate];
            e->client = ci;
            e->limit = limit;
            e->window_ms = window_ms;
            e->adds = 0;
            put(c, rs, K_RATE, c->nrate++);
            if (dom)
                ds = slot_of(c, &kd);
        }
        bs_count_rate *e = &c->rate[(c->slot[rs] - 1) & 0xfff];
        if (++e->adds >= e->limit)
            c->hot = 1;
    }
    if (dom) {
        bs_count_note *n = &c->note[c->nnote];
        bs_count_domain *e;
        if (!c->slot[ds]) {
            e = &c->dom[c->ndom];
            cut(e->domain, sizeof(e->domain), domain);
            e->adds = 0;
            e->first = e->last = -1;
            put(c, ds, K_DOMAIN, c->ndom++);
        }
        e = &c->dom[(c->slot[ds] - 1) & 0xfff];
        cut(n->net, sizeof(n->net), net);
        n->client = ci;
        n->next = -1;
        if (e->last >= 0)
            c->note[e->last].next = (int)c->nnote;
        else
            e->first = (int)c->nnote;
        e->last = (int)c->nnote++;
        e->adds++;
    }
    c->nadded++;
    return 0;
}

int64_t bs_counts_clock(uint64_t sent_ms, uint64_t got_ms, uint64_t redis_ms)
{
    uint64_t mid = sent_ms + (got_ms >= sent_ms ? (got_ms - sent_ms) / 2 : 0);

    return (int64_t)(redis_ms - mid);
}
