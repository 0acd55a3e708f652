/*
 * test_counts.c - backstopd's batch of unknown-recipient counts
 * (src/backstopd/counts.c): an empty batch and the adds that count
 * nothing; a client entry per (address, client key) and a count per
 * (client, limit, window); the per-domain note chains; the batch's limits
 * (an add that does not fit is refused whole); strings cut to their
 * fields; clearing; the Redis clock offset; and a randomized run against
 * a naive reference model
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "counts.h"

/* find_client / find_rate / find_dom - an entry's index by linear
 * search, or -1 */
static int find_client(const bs_counts *c, const char *ip, const char *ckey)
{
    size_t i;

    for (i = 0; i < c->nclient; i++)
        if (strcmp(c->client[i].ip, ip) == 0 && strcmp(c->client[i].ckey, ckey) == 0)
            return (int)i;
    return -1;
}

static int find_rate(const bs_counts *c, const char *ip, const char *ckey, unsigned limit,
                     uint64_t window_ms)
{
    int ci = find_client(c, ip, ckey);
    size_t i;

    for (i = 0; ci >= 0 && i < c->nrate; i++)
        if (c->rate[i].client == ci && c->rate[i].limit == limit &&
            c->rate[i].window_ms == window_ms)
            return (int)i;
    return -1;
}

static int find_dom(const bs_counts *c, const char *domain)
{
    size_t i;

    for (i = 0; i < c->ndom; i++)
        if (strcmp(c->dom[i].domain, domain) == 0)
            return (int)i;
    return -1;
}

/* chain_is - 1 when domain d's notes are exactly idx[0..n) in that order
 * with nets net[0..n), its last is idx[n - 1], the chain ends at -1 and
 * its adds are n */
static int chain_is(const bs_counts *c, int d, const int *idx, const char *const *net, size_t n)
{
    const bs_count_domain *e = &c->dom[d];
    int at = e->first, last = -1;
    size_t k;

    for (k = 0; k < n; k++) {
        if (at != idx[k] || at < 0 || (size_t)at >= c->nnote ||
            strcmp(c->note[at].net, net[k]) != 0)
            return 0;
        last = at;
        at = c->note[at].next;
    }
    return at == -1 && e->last == last && e->adds == n;
}

/* sizes - the batch's sizes, for one comparison */
static int sizes(const bs_counts *c, size_t nclient, size_t nrate, size_t ndom, size_t nnote,
                 size_t nadded)
{
    return c->nclient == nclient && c->nrate == nrate && c->ndom == ndom && c->nnote == nnote &&
           c->nadded == nadded;
}

static void test_empty(void)
{
    static bs_counts c;

    bs_counts_clear(&c);
    CHECK(bs_counts_empty(&c));
    CHECK(sizes(&c, 0, 0, 0, 0, 0));
    /* no client, or neither counted nor noted: nothing added, no error */
    CHECK_EQ_INT(bs_counts_add(&c, NULL, "192.0.2.1", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "", "192.0.2.1", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", NULL, 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, NULL, NULL, 10, 60000, "example.com", "192.0.2.0/24"), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 60000, "example.com", NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 60000, NULL, "192.0.2.0/24"), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 60000, "", "192.0.2.0/24"), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 60000, "example.com", ""), 0);
    CHECK(bs_counts_empty(&c));
    CHECK(sizes(&c, 0, 0, 0, 0, 0));
}

static void test_aggregate(void)
{
    static bs_counts c;
    int i;

    bs_counts_clear(&c);
    for (i = 0; i < 3; i++)
        CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, NULL, NULL), 0);
    CHECK(!bs_counts_empty(&c));
    CHECK(sizes(&c, 1, 1, 0, 0, 3));
    CHECK_EQ_STR(c.client[0].ip, "192.0.2.1");
    CHECK_EQ_STR(c.client[0].ckey, "192.0.2.1");
    CHECK_EQ_INT(c.client[0].exempt, 0);
    CHECK_EQ_INT(c.rate[0].client, 0);
    CHECK_EQ_INT(c.rate[0].limit, 10);
    CHECK_EQ_INT(c.rate[0].window_ms, 60000);
    CHECK_EQ_INT(c.rate[0].adds, 3);
    /* the same client against another limit, or another window: its own
     * count, the same client entry */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 20, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 3600000, NULL, NULL), 0);
    CHECK(sizes(&c, 1, 3, 0, 0, 5));
    /* another client; a prefix of an address is another client */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.2", "192.0.2.2", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.2", "192.0.2.2", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.", "192.0.2.", 10, 60000, NULL, NULL), 0);
    /* two addresses of one IPv6 network (one client key): two clients */
    CHECK_EQ_INT(bs_counts_add(&c, "2001:db8::1", "2001:db8::/64", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "2001:db8::2", "2001:db8::/64", 10, 60000, NULL, NULL), 0);
    CHECK(sizes(&c, 5, 7, 0, 0, 10));
    CHECK_EQ_INT(find_client(&c, "192.0.2.1", "192.0.2.1"), 0);
    CHECK_EQ_INT(find_client(&c, "192.0.2.2", "192.0.2.2"), 1);
    CHECK_EQ_INT(find_client(&c, "192.0.2.", "192.0.2."), 2);
    CHECK_EQ_INT(find_client(&c, "2001:db8::1", "2001:db8::/64"), 3);
    CHECK_EQ_INT(find_client(&c, "2001:db8::2", "2001:db8::/64"), 4);
    CHECK_EQ_INT(find_rate(&c, "192.0.2.1", "192.0.2.1", 10, 60000), 0);
    CHECK_EQ_INT(find_rate(&c, "192.0.2.1", "192.0.2.1", 20, 60000), 1);
    CHECK_EQ_INT(find_rate(&c, "192.0.2.1", "192.0.2.1", 10, 3600000), 2);
    CHECK_EQ_INT(find_rate(&c, "192.0.2.2", "192.0.2.2", 10, 60000), 3);
    CHECK_EQ_INT(find_rate(&c, "192.0.2.", "192.0.2.", 10, 60000), 4);
    CHECK_EQ_INT(c.rate[0].adds, 3);
    CHECK_EQ_INT(c.rate[1].adds, 1);
    CHECK_EQ_INT(c.rate[1].limit, 20);
    CHECK_EQ_INT(c.rate[2].adds, 1);
    CHECK_EQ_INT(c.rate[2].window_ms, 3600000);
    CHECK_EQ_INT(c.rate[3].adds, 2);
    CHECK_EQ_INT(c.rate[4].adds, 1);
    CHECK_EQ_INT(c.rate[5].client, 3);
    CHECK_EQ_INT(c.rate[6].client, 4);
    /* every one found again, not duplicated */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 20, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 3600000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "2001:db8::2", "2001:db8::/64", 10, 60000, NULL, NULL), 0);
    CHECK(sizes(&c, 5, 7, 0, 0, 13));
    CHECK_EQ_INT(c.rate[1].adds, 2);
    CHECK_EQ_INT(c.rate[2].adds, 2);
    CHECK_EQ_INT(c.rate[5].adds, 1);
    CHECK_EQ_INT(c.rate[6].adds, 2);
}

static void test_domains(void)
{
    static bs_counts c;
    static const int a_idx[] = {0, 2, 4}, b_idx[] = {1, 3};
    static const char *const a_net[] = {"192.0.2.0/24", "203.0.113.0/24", "2001:db8::/48"};
    static const char *const b_net[] = {"198.51.100.0/24", "192.0.2.0/24"};

    bs_counts_clear(&c);
    /* two domains interleaved, with and without a client count */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, "a.example", a_net[0]), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "198.51.100.7", "198.51.100.7", 0, 0, "b.example", b_net[0]), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "203.0.113.9", "203.0.113.9", 10, 60000, "a.example", a_net[1]),
                 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, "b.example", b_net[1]), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "2001:db8::1", "2001:db8::/64", 0, 0, "a.example", a_net[2]), 0);
    CHECK(sizes(&c, 4, 2, 2, 5, 5));
    CHECK_EQ_INT(find_dom(&c, "a.example"), 0);
    CHECK_EQ_INT(find_dom(&c, "b.example"), 1);
    CHECK_EQ_INT(c.dom[0].adds, 3);
    CHECK_EQ_INT(c.dom[0].first, 0);
    CHECK_EQ_INT(c.dom[0].last, 4);
    CHECK_EQ_INT(c.dom[1].adds, 2);
    CHECK_EQ_INT(c.dom[1].first, 1);
    CHECK_EQ_INT(c.dom[1].last, 3);
    CHECK(chain_is(&c, 0, a_idx, a_net, 3));
    CHECK(chain_is(&c, 1, b_idx, b_net, 2));
    /* each note knows its client */
    CHECK_EQ_INT(c.note[0].client, find_client(&c, "192.0.2.1", "192.0.2.1"));
    CHECK_EQ_INT(c.note[1].client, find_client(&c, "198.51.100.7", "198.51.100.7"));
    CHECK_EQ_INT(c.note[2].client, find_client(&c, "203.0.113.9", "203.0.113.9"));
    CHECK_EQ_INT(c.note[3].client, find_client(&c, "192.0.2.1", "192.0.2.1"));
    CHECK_EQ_INT(c.note[4].client, find_client(&c, "2001:db8::1", "2001:db8::/64"));
    CHECK_EQ_INT(c.rate[find_rate(&c, "192.0.2.1", "192.0.2.1", 10, 60000)].adds, 2);
    CHECK_EQ_INT(c.rate[find_rate(&c, "203.0.113.9", "203.0.113.9", 10, 60000)].adds, 1);

    /* a client spelled like a domain name: the kinds are apart */
    bs_counts_clear(&c);
    CHECK_EQ_INT(bs_counts_add(&c, "example.com", "example.com", 7, 1000, "example.com", "n1"), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "example.com", "example.com", 7, 1000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "x", "example.com", 0, 0, "example.com", "n2"), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "example.com", "x", 0, 0, "example.com", "n3"), 0);
    CHECK(sizes(&c, 3, 1, 1, 3, 4));
    CHECK_EQ_STR(c.client[0].ckey, "example.com");
    CHECK_EQ_INT(c.rate[0].adds, 2);
    CHECK_EQ_STR(c.dom[0].domain, "example.com");
    CHECK_EQ_INT(c.dom[0].adds, 3);
    {
        static const int idx[] = {0, 1, 2};
        static const char *const net[] = {"n1", "n2", "n3"};
        CHECK(chain_is(&c, 0, idx, net, 3));
    }
    CHECK_EQ_INT(c.note[0].client, 0);
    CHECK_EQ_INT(c.note[1].client, 1);
    CHECK_EQ_INT(c.note[2].client, 2);
}

/* only one kind counted */
static void test_one_kind(void)
{
    static bs_counts c;

    bs_counts_clear(&c);
    /* rate only: no domain (or no network) */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, NULL, "192.0.2.0/24"), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, "example.com", NULL), 0);
    CHECK(sizes(&c, 1, 1, 0, 0, 2));
    CHECK_EQ_INT(c.rate[0].adds, 2);
    CHECK(!bs_counts_empty(&c));

    /* harvest only: limit 0 (the client is still entered, for the
     * exempt question) */
    bs_counts_clear(&c);
    CHECK_EQ_INT(
        bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 60000, "example.com", "192.0.2.0/24"), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "198.51.100.1", "198.51.100.1", 0, 60000, "example.com",
                               "198.51.100.0/24"),
                 0);
    CHECK(sizes(&c, 2, 0, 1, 2, 2));
    CHECK_EQ_INT(c.dom[0].adds, 2);
    CHECK_EQ_STR(c.note[c.dom[0].first].net, "192.0.2.0/24");
    CHECK_EQ_STR(c.note[c.dom[0].last].net, "198.51.100.0/24");
    CHECK(!bs_counts_empty(&c));
}

static void test_limit_clients(void)
{
    static bs_counts c;
    char ip[32];
    int i, ok = 1;

    bs_counts_clear(&c);
    /* harvest-only adds: clients without counts */
    for (i = 0; i < BS_COUNTS_CLIENTS_MAX; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256);
        if (bs_counts_add(&c, ip, ip, 0, 0, "example.com", "10.0.0.0/16") != 0)
            ok = 0;
    }
    CHECK(ok);
    CHECK(sizes(&c, BS_COUNTS_CLIENTS_MAX, 0, 1, BS_COUNTS_CLIENTS_MAX, BS_COUNTS_CLIENTS_MAX));
    /* a new client: refused, whatever it adds, nothing changed */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 0, "example.com", "n"), -1);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, NULL, NULL), -1);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, "new.example", "n"), -1);
    /* ... the same address under another client key is another client */
    CHECK_EQ_INT(bs_counts_add(&c, "10.0.0.1", "10.0.0.0/24", 10, 60000, NULL, NULL), -1);
    CHECK(sizes(&c, BS_COUNTS_CLIENTS_MAX, 0, 1, BS_COUNTS_CLIENTS_MAX, BS_COUNTS_CLIENTS_MAX));
    CHECK_EQ_INT(find_client(&c, "192.0.2.1", "192.0.2.1"), -1);
    CHECK_EQ_INT(find_dom(&c, "new.example"), -1);
    /* an existing client still adds: a count, a note, a new domain */
    CHECK_EQ_INT(bs_counts_add(&c, "10.0.0.7", "10.0.0.7", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "10.0.0.255", "10.0.0.255", 0, 0, "new.example", "n"), 0);
    CHECK(sizes(&c, BS_COUNTS_CLIENTS_MAX, 1, 2, BS_COUNTS_CLIENTS_MAX + 1,
                BS_COUNTS_CLIENTS_MAX + 2));
    CHECK_EQ_INT(c.rate[0].client, 7);
    CHECK_EQ_INT(c.note[BS_COUNTS_CLIENTS_MAX].client, 255);
}

static void test_limit_rates(void)
{
    static bs_counts c;
    char ip[32];
    int i, ok = 1;

    bs_counts_clear(&c);
    /* half as many clients as counts: two limits each */
    for (i = 0; i < BS_COUNTS_RATES_MAX; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", (i / 2) / 256, (i / 2) % 256);
        if (bs_counts_add(&c, ip, ip, i % 2 ? 30 : 10, 60000, NULL, NULL) != 0)
            ok = 0;
    }
    CHECK(ok);
    CHECK(sizes(&c, BS_COUNTS_RATES_MAX / 2, BS_COUNTS_RATES_MAX, 0, 0, BS_COUNTS_RATES_MAX));
    /* a new count of an existing client: refused, nothing changed */
    CHECK_EQ_INT(bs_counts_add(&c, "10.0.0.0", "10.0.0.0", 20, 60000, NULL, NULL), -1);
    CHECK_EQ_INT(bs_counts_add(&c, "10.0.0.0", "10.0.0.0", 10, 3600000, NULL, NULL), -1);
    /* a new client with a count: nor is the client entered */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, NULL, NULL), -1);
    /* a count with a note: the note is not taken either */
    CHECK_EQ_INT(bs_counts_add(&c, "10.0.0.0", "10.0.0.0", 20, 60000, "example.com", "n"), -1);
    CHECK(sizes(&c, BS_COUNTS_RATES_MAX / 2, BS_COUNTS_RATES_MAX, 0, 0, BS_COUNTS_RATES_MAX));
    CHECK_EQ_INT(find_client(&c, "192.0.2.1", "192.0.2.1"), -1);
    CHECK_EQ_INT(find_rate(&c, "10.0.0.0", "10.0.0.0", 20, 60000), -1);
    /* an existing count still counts, with or without a note */
    CHECK_EQ_INT(bs_counts_add(&c, "10.0.0.7", "10.0.0.7", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(c.rate[14].adds, 2);
    CHECK_EQ_INT(bs_counts_add(&c, "10.0.0.7", "10.0.0.7", 30, 60000, "example.com", "n"), 0);
    CHECK_EQ_INT(c.rate[15].adds, 2);
    CHECK(sizes(&c, BS_COUNTS_RATES_MAX / 2, BS_COUNTS_RATES_MAX, 1, 1, BS_COUNTS_RATES_MAX + 2));
    /* a new client, harvest only, needs no count */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 0, "example.org", "n"), 0);
    CHECK(
        sizes(&c, BS_COUNTS_RATES_MAX / 2 + 1, BS_COUNTS_RATES_MAX, 2, 2, BS_COUNTS_RATES_MAX + 3));
    CHECK_EQ_INT(c.rate[0].adds, 1);
}

static void test_limit_domains(void)
{
    static bs_counts c;
    char dom[32];
    int i, ok = 1;

    bs_counts_clear(&c);
    for (i = 0; i < BS_COUNTS_DOMAINS_MAX; i++) {
        snprintf(dom, sizeof(dom), "d%d.example", i);
        if (bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 0, dom, "192.0.2.0/24") != 0)
            ok = 0;
    }
    CHECK(ok);
    CHECK(sizes(&c, 1, 0, BS_COUNTS_DOMAINS_MAX, BS_COUNTS_DOMAINS_MAX, BS_COUNTS_DOMAINS_MAX));
    /* a new domain: refused, nothing changed */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 0, "new.example", "n"), -1);
    /* with a count, or a new client: those are not taken either */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, "new.example", "n"), -1);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.2", "192.0.2.2", 10, 60000, "new.example", "n"), -1);
    CHECK(sizes(&c, 1, 0, BS_COUNTS_DOMAINS_MAX, BS_COUNTS_DOMAINS_MAX, BS_COUNTS_DOMAINS_MAX));
    CHECK_EQ_INT(find_dom(&c, "new.example"), -1);
    /* an existing domain still takes notes, chained after its first */
    CHECK_EQ_INT(
        bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 10, 60000, "d5.example", "198.51.100.0/24"), 0);
    CHECK(sizes(&c, 1, 1, BS_COUNTS_DOMAINS_MAX, BS_COUNTS_DOMAINS_MAX + 1,
                BS_COUNTS_DOMAINS_MAX + 1));
    CHECK_EQ_INT(c.rate[0].adds, 1);
    {
        const int idx[] = {5, BS_COUNTS_DOMAINS_MAX};
        static const char *const net[] = {"192.0.2.0/24", "198.51.100.0/24"};
        CHECK(chain_is(&c, 5, idx, net, 2));
    }
    /* a rate-only add needs no domain */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.2", "192.0.2.2", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(c.nrate, 2);
    CHECK_EQ_INT(c.nclient, 2);
}

static void test_limit_notes(void)
{
    static bs_counts c;
    char ip[32], dom[32], net[32];
    int i, ok = 1, d;
    unsigned rate_adds, dom_adds;
    size_t total;

    bs_counts_clear(&c);
    for (i = 0; i < BS_COUNTS_NOTES_MAX; i++) {
        snprintf(ip, sizeof(ip), "192.0.2.%d", i % 8);
        snprintf(dom, sizeof(dom), "d%d.example", i % 4);
        snprintf(net, sizeof(net), "net%d", i);
        if (bs_counts_add(&c, ip, ip, 10, 60000, dom, net) != 0)
            ok = 0;
    }
    CHECK(ok);
    CHECK(sizes(&c, 8, 8, 4, BS_COUNTS_NOTES_MAX, BS_COUNTS_NOTES_MAX));
    total = 0;
    for (i = 0; i < 4; i++)
        total += c.dom[i].adds;
    CHECK_EQ_INT(total, BS_COUNTS_NOTES_MAX);
    /* each chain holds its own notes in order: the fourth of every four */
    for (d = 0; d < 4; d++) {
        int at = c.dom[d].first, n = 0, good = 1;
        while (at >= 0 && n <= BS_COUNTS_NOTES_MAX) {
            snprintf(net, sizeof(net), "net%d", d + 4 * n);
            if (at != d + 4 * n || strcmp(c.note[at].net, net) != 0 || c.note[at].client != at % 8)
                good = 0;
            at = c.note[at].next;
            n++;
        }
        CHECK(good);
        CHECK_EQ_INT(n, BS_COUNTS_NOTES_MAX / 4);
        CHECK_EQ_INT(c.dom[d].last, BS_COUNTS_NOTES_MAX - 4 + d);
    }

    /* one note too many, an existing client and domain: all or nothing,
     * the client's count is not taken either */
    d = find_dom(&c, "d1.example");
    i = find_rate(&c, "192.0.2.3", "192.0.2.3", 10, 60000);
    CHECK(d >= 0 && i >= 0);
    if (d < 0 || i < 0)
        return;
    rate_adds = c.rate[i].adds;
    dom_adds = c.dom[d].adds;
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.3", "192.0.2.3", 10, 60000, "d1.example", "late"), -1);
    CHECK_EQ_INT(c.rate[i].adds, rate_adds);
    CHECK_EQ_INT(c.dom[d].adds, dom_adds);
    /* ... nor a new client's entry, nor a new count, nor a new domain */
    CHECK_EQ_INT(
        bs_counts_add(&c, "198.51.100.1", "198.51.100.1", 10, 60000, "new.example", "late"), -1);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.3", "192.0.2.3", 20, 60000, "d1.example", "late"), -1);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.3", "192.0.2.3", 0, 0, "d2.example", "late"), -1);
    CHECK(sizes(&c, 8, 8, 4, BS_COUNTS_NOTES_MAX, BS_COUNTS_NOTES_MAX));
    CHECK_EQ_INT(find_client(&c, "198.51.100.1", "198.51.100.1"), -1);
    CHECK_EQ_INT(find_dom(&c, "new.example"), -1);
    /* rate-only adds need no note */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.3", "192.0.2.3", 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(c.rate[i].adds, rate_adds + 1);
    CHECK_EQ_INT(bs_counts_add(&c, "198.51.100.1", "198.51.100.1", 10, 60000, NULL, NULL), 0);
    CHECK(sizes(&c, 9, 9, 4, BS_COUNTS_NOTES_MAX, BS_COUNTS_NOTES_MAX + 2));
}

static void test_cut(void)
{
    static bs_counts c;
    char longip[100], longkey[100], otherkey[100], longdom[300], longnet[100];
    char want[BS_DOMAIN_MAX + 1];

    memset(longip, 'i', sizeof(longip) - 1);
    longip[sizeof(longip) - 1] = 0;
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = 0;
    memcpy(otherkey, longkey, sizeof(otherkey));
    otherkey[BS_CLIENT_KEY_MAX + 5] = 'X'; /* differs only past the cut */
    memset(longdom, 'd', sizeof(longdom) - 1);
    longdom[sizeof(longdom) - 1] = 0;
    memset(longnet, 'n', sizeof(longnet) - 1);
    longnet[sizeof(longnet) - 1] = 0;

    bs_counts_clear(&c);
    CHECK_EQ_INT(bs_counts_add(&c, longip, longkey, 10, 60000, longdom, longnet), 0);
    CHECK(sizes(&c, 1, 1, 1, 1, 1));
    CHECK_EQ_INT(strlen(c.client[0].ip), BS_CLIENT_KEY_MAX);
    CHECK_EQ_INT(strlen(c.client[0].ckey), BS_CLIENT_KEY_MAX);
    CHECK(strncmp(c.client[0].ip, longip, BS_CLIENT_KEY_MAX) == 0);
    CHECK(strncmp(c.client[0].ckey, longkey, BS_CLIENT_KEY_MAX) == 0);
    CHECK_EQ_INT(strlen(c.dom[0].domain), BS_DOMAIN_MAX);
    memcpy(want, longdom, BS_DOMAIN_MAX);
    want[BS_DOMAIN_MAX] = 0;
    CHECK_EQ_STR(c.dom[0].domain, want);
    CHECK_EQ_INT(strlen(c.note[0].net), BS_CLIENT_KEY_MAX);
    CHECK(strncmp(c.note[0].net, longnet, BS_CLIENT_KEY_MAX) == 0);
    /* the same long strings again find the same entries */
    CHECK_EQ_INT(bs_counts_add(&c, longip, longkey, 10, 60000, longdom, longnet), 0);
    CHECK(sizes(&c, 1, 1, 1, 2, 2));
    CHECK_EQ_INT(c.rate[0].adds, 2);
    CHECK_EQ_INT(c.dom[0].adds, 2);
    /* as the store's keys are cut: a key differing only past the cut, or
     * the cut strings themselves, are the same entries */
    CHECK_EQ_INT(bs_counts_add(&c, longip, otherkey, 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, c.client[0].ip, c.client[0].ckey, 10, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, longip, longkey, 0, 0, want, "n"), 0);
    CHECK(sizes(&c, 1, 1, 1, 3, 5));
    CHECK_EQ_INT(c.rate[0].adds, 4);
    CHECK_EQ_INT(c.dom[0].adds, 3);
    /* one byte shorter than the cut: other entries */
    longkey[BS_CLIENT_KEY_MAX - 1] = 0;
    longdom[BS_DOMAIN_MAX - 1] = 0;
    CHECK_EQ_INT(bs_counts_add(&c, longip, longkey, 10, 60000, longdom, "n"), 0);
    CHECK(sizes(&c, 2, 2, 2, 4, 6));
    CHECK_EQ_INT(strlen(c.client[1].ckey), BS_CLIENT_KEY_MAX - 1);
    CHECK_EQ_INT(strlen(c.dom[1].domain), BS_DOMAIN_MAX - 1);
    CHECK_EQ_INT(c.rate[0].adds, 4);
    CHECK_EQ_INT(c.dom[0].adds, 3);
}

static void test_clear(void)
{
    static bs_counts c;
    int i;

    bs_counts_clear(&c);
    for (i = 0; i < 5; i++) {
        char ip[16], dom[16];
        snprintf(ip, sizeof(ip), "c%d", i);
        snprintf(dom, sizeof(dom), "d%d", i);
        CHECK_EQ_INT(bs_counts_add(&c, ip, ip, 10, 60000, dom, "n"), 0);
    }
    CHECK(!bs_counts_empty(&c));
    c.client[3].exempt = 1; /* as a flush sets it */
    bs_counts_clear(&c);
    CHECK(bs_counts_empty(&c));
    CHECK(sizes(&c, 0, 0, 0, 0, 0));
    /* added again from index 0, nothing of the old batch left */
    CHECK_EQ_INT(bs_counts_add(&c, "c3", "c3", 10, 60000, "d3", "n3"), 0);
    CHECK(sizes(&c, 1, 1, 1, 1, 1));
    CHECK_EQ_STR(c.client[0].ip, "c3");
    CHECK_EQ_INT(c.client[0].exempt, 0);
    CHECK_EQ_INT(c.rate[0].client, 0);
    CHECK_EQ_INT(c.rate[0].adds, 1);
    CHECK_EQ_STR(c.dom[0].domain, "d3");
    CHECK_EQ_INT(c.dom[0].adds, 1);
    CHECK_EQ_INT(c.dom[0].first, 0);
    CHECK_EQ_INT(c.dom[0].last, 0);
    CHECK_EQ_INT(c.note[0].next, -1);
    CHECK_EQ_INT(c.note[0].client, 0);
    CHECK_EQ_STR(c.note[0].net, "n3");
    CHECK_EQ_INT(bs_counts_add(&c, "c0", "c0", 10, 60000, "d0", "n0"), 0);
    CHECK(sizes(&c, 2, 2, 2, 2, 2));
    CHECK_EQ_INT(c.rate[1].client, 1);
    CHECK_EQ_INT(c.rate[1].adds, 1);
    CHECK_EQ_INT(c.dom[1].first, 1);
}

static void test_clock(void)
{
    const uint64_t now = 1700000000000ULL;

    /* Redis's time is taken at the round trip's midpoint */
    CHECK_EQ_INT(bs_counts_clock(1000, 1010, 5005), 4000);
    CHECK_EQ_INT(bs_counts_clock(1000, 1011, 5005), 4000);
    CHECK_EQ_INT(bs_counts_clock(1000, 1000, 5005), 4005);
    CHECK_EQ_INT(bs_counts_clock(now, now + 10, now + 5), 0);
    /* this host's clock stepped back during the round trip: no underflow,
     * the offset is from the send time */
    CHECK_EQ_INT(bs_counts_clock(1000, 900, 5000), 4000);
    CHECK_EQ_INT(bs_counts_clock(now, 0, now + 7), 7);
    /* Redis behind this host: a negative offset */
    CHECK_EQ_INT(bs_counts_clock(10000, 10010, 9005), -1000);
    CHECK_EQ_INT(bs_counts_clock(now, now + 20, now - 3600000), -3600010);
    CHECK_EQ_INT(bs_counts_clock(1000, 1010, 0), -1005);
}

/* The reference model: the same batch in plain arrays, found by linear
 * search, its limits checked the way counts.h states them. */
#define R_CLIENTS 150
#define R_DOMAINS 60
#define R_ADDS 2000

typedef struct m_client {
    char ip[BS_CLIENT_KEY_MAX + 1], ckey[BS_CLIENT_KEY_MAX + 1];
} m_client;

typedef struct m_rate {
    size_t client;
    unsigned limit;
    uint64_t window_ms;
    unsigned adds;
} m_rate;

typedef struct m_dom {
    char domain[BS_DOMAIN_MAX + 1];
    unsigned adds;
} m_dom;

typedef struct m_note {
    char net[BS_CLIENT_KEY_MAX + 1];
    size_t client, dom;
} m_note;

typedef struct model {
    m_client client[BS_COUNTS_CLIENTS_MAX];
    m_rate rate[BS_COUNTS_RATES_MAX];
    m_dom dom[BS_COUNTS_DOMAINS_MAX];
    m_note note[BS_COUNTS_NOTES_MAX];
    size_t nclient, nrate, ndom, nnote, nadded;
    unsigned full_rates, full_notes; /* refusals, by cause */
} model;

static void m_clear(model *m)
{
    m->nclient = m->nrate = m->ndom = m->nnote = m->nadded = 0;
}

static int m_add(model *m, const char *ip, const char *ckey, unsigned limit, uint64_t window_ms,
                 const char *domain, const char *net)
{
    char a[BS_CLIENT_KEY_MAX + 1], k[BS_CLIENT_KEY_MAX + 1], d[BS_DOMAIN_MAX + 1];
    int rate = limit > 0, dom = domain && *domain && net && *net;
    size_t ci, ri = 0, di = 0;

    if (!ip || !*ip || !ckey || !*ckey || (!rate && !dom))
        return 0;
    snprintf(a, sizeof(a), "%.*s", (int)sizeof(a) - 1, ip); /* cut as the store cuts */
    snprintf(k, sizeof(k), "%.*s", (int)sizeof(k) - 1, ckey);
    for (ci = 0; ci < m->nclient; ci++)
        if (strcmp(m->client[ci].ip, a) == 0 && strcmp(m->client[ci].ckey, k) == 0)
            break;
    if (ci == m->nclient && m->nclient == BS_COUNTS_CLIENTS_MAX)
        return -1;
    if (rate) {
        for (ri = 0; ri < m->nrate; ri++)
            if (m->rate[ri].client == ci && m->rate[ri].limit == limit &&
                m->rate[ri].window_ms == window_ms)
                break;
        if (ri == m->nrate && m->nrate == BS_COUNTS_RATES_MAX) {
            m->full_rates++;
            return -1;
        }
    }
    if (dom) {
        snprintf(d, sizeof(d), "%s", domain);
        for (di = 0; di < m->ndom; di++)
            if (strcmp(m->dom[di].domain, d) == 0)
                break;
        if (di == m->ndom && m->ndom == BS_COUNTS_DOMAINS_MAX)
            return -1;
        if (m->nnote == BS_COUNTS_NOTES_MAX) {
            m->full_notes++;
            return -1;
        }
    }
    if (ci == m->nclient) {
        memcpy(m->client[ci].ip, a, sizeof(a));
        memcpy(m->client[ci].ckey, k, sizeof(k));
        m->nclient++;
    }
    if (rate) {
        if (ri == m->nrate) {
            m->rate[ri].client = ci;
            m->rate[ri].limit = limit;
            m->rate[ri].window_ms = window_ms;
            m->rate[ri].adds = 0;
            m->nrate++;
        }
        m->rate[ri].adds++;
    }
    if (dom) {
        if (di == m->ndom) {
            memcpy(m->dom[di].domain, d, sizeof(d));
            m->dom[di].adds = 0;
            m->ndom++;
        }
        m->dom[di].adds++;
        snprintf(m->note[m->nnote].net, sizeof(m->note[m->nnote].net), "%s", net);
        m->note[m->nnote].client = ci;
        m->note[m->nnote].dom = di;
        m->nnote++;
    }
    m->nadded++;
    return 0;
}

static int m_bad;

#define M_EXPECT(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (m_bad++ < 10) {                                                                    \
                fprintf(stderr, "%s:%d: model mismatch: ", __FILE__, __LINE__);                    \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static int m_sizes(const bs_counts *c, const model *m)
{
    return sizes(c, m->nclient, m->nrate, m->ndom, m->nnote, m->nadded);
}

/* m_compare - every entry of the batch against the model */
static void m_compare(const bs_counts *c, const model *m, int step)
{
    size_t i, j;

    M_EXPECT(m_sizes(c, m), "step %d: sizes %zu/%zu/%zu/%zu/%zu, model %zu/%zu/%zu/%zu/%zu", step,
             c->nclient, c->nrate, c->ndom, c->nnote, c->nadded, m->nclient, m->nrate, m->ndom,
             m->nnote, m->nadded);
    if (!m_sizes(c, m))
        return;
    for (i = 0; i < m->nclient; i++)
        M_EXPECT(strcmp(c->client[i].ip, m->client[i].ip) == 0 &&
                     strcmp(c->client[i].ckey, m->client[i].ckey) == 0,
                 "step %d: client %zu \"%s\" \"%s\", model \"%s\" \"%s\"", step, i, c->client[i].ip,
                 c->client[i].ckey, m->client[i].ip, m->client[i].ckey);
    for (i = 0; i < m->nrate; i++)
        M_EXPECT(
            c->rate[i].client == (int)m->rate[i].client && c->rate[i].limit == m->rate[i].limit &&
                c->rate[i].window_ms == m->rate[i].window_ms && c->rate[i].adds == m->rate[i].adds,
            "step %d: rate %zu %d/%u/%llu adds %u, model %zu/%u/%llu adds %u", step, i,
            c->rate[i].client, c->rate[i].limit, (unsigned long long)c->rate[i].window_ms,
            c->rate[i].adds, m->rate[i].client, m->rate[i].limit,
            (unsigned long long)m->rate[i].window_ms, m->rate[i].adds);
    for (i = 0; i < m->ndom; i++) {
        const bs_count_domain *e = &c->dom[i];
        int at = e->first, last = -1;
        size_t steps = 0;

        M_EXPECT(strcmp(e->domain, m->dom[i].domain) == 0 && e->adds == m->dom[i].adds,
                 "step %d: domain %zu \"%s\" adds %u, model \"%s\" adds %u", step, i, e->domain,
                 e->adds, m->dom[i].domain, m->dom[i].adds);
        /* the chain: exactly the model's notes of this domain, in order */
        for (j = 0; j < m->nnote; j++) {
            if (m->note[j].dom != i)
                continue;
            M_EXPECT(at == (int)j, "step %d: domain %zu chain at %d, model note %zu", step, i, at,
                     j);
            if (at != (int)j)
                break;
            M_EXPECT(strcmp(c->note[j].net, m->note[j].net) == 0 &&
                         c->note[j].client == (int)m->note[j].client,
                     "step %d: note %zu \"%s\" client %d, model \"%s\" client %zu", step, j,
                     c->note[j].net, c->note[j].client, m->note[j].net, m->note[j].client);
            last = at;
            at = c->note[at].next;
            steps++;
        }
        if (j == m->nnote) {
            M_EXPECT(at == -1, "step %d: domain %zu chain goes on to %d", step, i, at);
            M_EXPECT(e->last == last, "step %d: domain %zu last %d, chain's last %d", step, i,
                     e->last, last);
            M_EXPECT(steps == m->dom[i].adds, "step %d: domain %zu chain of %zu, adds %u", step, i,
                     steps, m->dom[i].adds);
        }
    }
}

static uint64_t lcg_state = 20240601;

static unsigned lcg(unsigned n)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(lcg_state >> 33) % n;
}

static void test_random(void)
{
    static bs_counts c;
    static model m;
    char ip[128], key[128], dom[64], net[32];
    int step, clears = 0, refused = 0, batch_refused = 0;

    bs_counts_clear(&c);
    m_clear(&m);
    m.full_rates = m.full_notes = 0;
    m_bad = 0;
    for (step = 0; step < R_ADDS; step++) {
        unsigned kind = lcg(10), client = lcg(R_CLIENTS), limit = lcg(2) ? 10 : 30;
        uint64_t window = limit == 10 ? 60000 : 3600000;
        const char *a = ip, *k = key, *d = dom, *n = net;
        int got, want;

        if (client % 37 == 0) { /* long keys, all cut to one client key */
            snprintf(ip, sizeof(ip), "192.0.2.%u", client);
            snprintf(key, sizeof(key), "%080d/%u", 0, client);
        } else if (client % 5 == 0) { /* IPv6: four addresses a network */
            snprintf(ip, sizeof(ip), "2001:db8:%u::%u", client / 20, client);
            snprintf(key, sizeof(key), "2001:db8:%u::/64", client / 20);
        } else {
            snprintf(ip, sizeof(ip), "198.51.%u.%u", client / 100, client % 100);
            snprintf(key, sizeof(key), "%s", ip);
        }
        snprintf(dom, sizeof(dom), "d%u.example", lcg(R_DOMAINS));
        snprintf(net, sizeof(net), "192.0.%u.0/24", lcg(40));
        if (kind == 0) { /* no client, or nothing counted */
            switch (lcg(3)) {
            case 0:
                a = lcg(2) ? NULL : "";
                break;
            case 1:
                k = lcg(2) ? NULL : "";
                break;
            default:
                limit = 0;
                d = NULL;
            }
        } else if (kind <= 4) { /* rate only */
            d = lcg(2) ? NULL : dom;
            n = d ? NULL : net;
        } else if (kind <= 6) { /* harvest only */
            limit = 0;
        }
        if (lcg(50) == 0)
            limit = 0;

        want = m_add(&m, a, k, limit, window, d, n);
        got = bs_counts_add(&c, a, k, limit, window, d, n);
        M_EXPECT(got == want, "step %d: add(%s, %s, %u, %llu, %s, %s) returned %d, model %d", step,
                 a ? a : "NULL", k ? k : "NULL", limit, (unsigned long long)window, d ? d : "NULL",
                 n ? n : "NULL", got, want);
        M_EXPECT(m_sizes(&c, &m), "step %d: sizes %zu/%zu/%zu/%zu/%zu, model %zu/%zu/%zu/%zu/%zu",
                 step, c.nclient, c.nrate, c.ndom, c.nnote, c.nadded, m.nclient, m.nrate, m.ndom,
                 m.nnote, m.nadded);
        M_EXPECT(bs_counts_empty(&c) == (m.nadded == 0), "step %d: empty %d", step,
                 bs_counts_empty(&c));
        if (want < 0) {
            refused++;
            /* keep adding to a full batch a while (another limit may
             * be reached), then flush */
            if (++batch_refused == 24) {
                batch_refused = 0;
                m_compare(&c, &m, step);
                bs_counts_clear(&c);
                m_clear(&m);
                clears++;
            }
        }
    }
    m_compare(&c, &m, R_ADDS);
    CHECK_EQ_INT(m_bad, 0);
    /* the run did reach the limits it was meant to */
    CHECK(clears > 0);
    CHECK(m.full_notes > 0);
    CHECK(m.full_rates > 0);
    printf("random: %d adds, %d refused (%u counts full, %u notes full), %d flushes\n", R_ADDS,
           refused, m.full_rates, m.full_notes, clears);
}

/* A batch is hot once one count's adds reach its limit (the store sends it
 * without waiting for its gap); notes alone and other counts do not; clear
 * cools it. */
static void test_hot(void)
{
    static bs_counts c;
    int i;

    bs_counts_clear(&c);
    for (i = 0; i < 5; i++) /* harvest notes only: no limit to reach */
        CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.1", "192.0.2.1", 0, 0, "d.example", "n"), 0);
    CHECK_EQ_INT(c.hot, 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.2", "192.0.2.2", 3, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.3", "192.0.2.3", 3, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.2", "192.0.2.2", 3, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(c.hot, 0); /* two of three for .2, one for .3 */
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.2", "192.0.2.2", 3, 60000, "d.example", "n"), 0);
    CHECK_EQ_INT(c.hot, 1); /* .2 reached 3 */
    bs_counts_clear(&c);
    CHECK_EQ_INT(c.hot, 0);
    CHECK_EQ_INT(bs_counts_add(&c, "192.0.2.4", "192.0.2.4", 1, 60000, NULL, NULL), 0);
    CHECK_EQ_INT(c.hot, 1); /* limit 1: the first reaches it */
}

int main(void)
{
    test_empty();
    test_aggregate();
    test_domains();
    test_one_kind();
    test_limit_clients();
    test_limit_rates();
    test_limit_domains();
    test_limit_notes();
    test_cut();
    test_clear();
    test_hot();
    test_clock();
    test_random();
    return check_summary();
}
