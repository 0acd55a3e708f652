/*
 * test_harvest.c - backstopd's harvest tables (src/backstopd/harvest.c):
 * the bounded table of domains under attack and
 * the known-client write filter; and the tables' hash (hash.h)
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "harvest.h"
#include "hash.h"

static void test_table(void)
{
    static bs_attacks t;
    bs_attack a;
    int i;

    memset(&a, 0, sizeof(a));
    CHECK(bs_attacks_find(&t, "example.com") == NULL);
    snprintf(a.domain, sizeof(a.domain), "example.com");
    a.until = 10;
    CHECK_EQ_INT(bs_attacks_put(&t, &a), 0);
    a.until = 20; /* replaces */
    CHECK_EQ_INT(bs_attacks_put(&t, &a), 0);
    CHECK(t.n == 1 && bs_attacks_find(&t, "example.com")->until == 20);
    CHECK(bs_attacks_find(&t, "example.co") == NULL);
    CHECK(bs_attacks_find(&t, "example.com.") == NULL);
    for (i = 1; i < BS_HARVEST_DOMAINS_MAX; i++) {
        snprintf(a.domain, sizeof(a.domain), "d%d.example", i);
        CHECK_EQ_INT(bs_attacks_put(&t, &a), 0);
    }
    snprintf(a.domain, sizeof(a.domain), "one-too-many.example");
    CHECK_EQ_INT(bs_attacks_put(&t, &a), -1); /* full: the caller counts and warns */
    CHECK(t.n == BS_HARVEST_DOMAINS_MAX);
    CHECK(bs_attacks_find(&t, "one-too-many.example") == NULL);
    CHECK(bs_attacks_find(&t, "d255.example") != NULL);
}

static void test_known_filter(void)
{
    static bs_known_filter k;
    uint64_t t0 = 1000;

    CHECK_EQ_INT(bs_known_due(&k, "example.com", "192.0.2.0/24", t0), 1);
    CHECK_EQ_INT(bs_known_due(&k, "example.com", "192.0.2.0/24", t0 + 1), 0);
    CHECK_EQ_INT(bs_known_due(&k, "example.com", "192.0.2.0/24", t0 + BS_KNOWN_REWRITE_MS - 1), 0);
    CHECK_EQ_INT(bs_known_due(&k, "example.com", "198.51.100.0/24", t0), 1);
    CHECK_EQ_INT(bs_known_due(&k, "example.org", "192.0.2.0/24", t0), 1);
    CHECK_EQ_INT(bs_known_due(&k, "example.com", "192.0.2.0/24", t0 + BS_KNOWN_REWRITE_MS), 1);
    /* "a b" + "c" and "a" + "b c" are different pairs (mostly: a collision
     * only costs a write) */
    CHECK_EQ_INT(bs_known_due(&k, "a.example", "b", t0), 1);
    /* where the domain ends is part of the pair */
    CHECK_EQ_INT(bs_known_due(&k, "ab.example", "192.0.2.0/24", t0), 1);
    CHECK_EQ_INT(bs_known_due(&k, "ab.exampl", "e192.0.2.0/24", t0), 1);
    CHECK_EQ_INT(bs_known_due(&k, "ab.example", "192.0.2.0/24", t0 + 1), 0);
}

static uint64_t h_of(const char *s, size_t len)
{
    return bs_hash_end(bs_hash(BS_HASH_SEED, s, len));
}

/* bs_hash: every byte counts, whatever its place in an 8-byte step (the
 * mirror's tables find a key by it), and the low bits spread (they index
 * the tables) */
static void test_hash(void)
{
    static unsigned count[4096];
    char a[40], b[40];
    size_t len, i, worst = 0;
    int n, differ = 1;

    memset(a, 'x', sizeof(a));
    for (len = 0; len <= sizeof(a); len++) {
        CHECK(h_of(a, len) == h_of(a, len));
        if (len < sizeof(a) && h_of(a, len) == h_of(a, len + 1))
            differ = 0; /* a longer key of the same bytes */
        for (i = 0; i < len; i++) {
            memcpy(b, a, len);
            b[i] ^= 0x01;
            if (h_of(a, len) == h_of(b, len))
                differ = 0;
            b[i] = (char)0xff;
            if (h_of(a, len) == h_of(b, len))
                differ = 0;
        }
    }
    CHECK(differ);
    /* 16,384 user names in 4,096 slots by the low bits: 4 a slot on average */
    for (i = 0; i < 16384; i++) {
        n = snprintf(a, sizeof(a), "user%zu", i);
        count[h_of(a, (size_t)n) & 4095]++;
    }
    for (i = 0; i < 4096; i++)
        worst = count[i] > worst ? count[i] : worst;
    CHECK(worst < 20);
}

int main(void)
{
    test_table();
    test_known_filter();
    test_hash();
    return check_summary();
}
