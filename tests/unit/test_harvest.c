/*
 * test_harvest.c - backstopd's harvest tables (src/backstopd/harvest.c):
 * the attack hash's values, the bounded table of domains under attack and
 * the known-client write filter
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "harvest.h"

static void test_parse(void)
{
    bs_attack a;
    static const char ok[] = "since=1700000000;until=1700003600;unknown=201";

    CHECK_EQ_INT(bs_attack_parse(ok, strlen(ok), &a), 0);
    CHECK(a.since == 1700000000 && a.until == 1700003600 && a.unknown == 201 && !a.unreadable);
    /* any order, parts missing */
    CHECK_EQ_INT(bs_attack_parse("until=5;since=4", 15, &a), 0);
    CHECK(a.until == 5 && a.since == 4 && a.unknown == 0);
    /* no readable until: -1, treated as under attack by the caller */
    CHECK_EQ_INT(bs_attack_parse("garbage", 7, &a), -1);
    CHECK(a.unreadable);
    CHECK_EQ_INT(bs_attack_parse("since=4;until=x5", 16, &a), -1);
    CHECK(a.since == 4);
    CHECK_EQ_INT(bs_attack_parse("since=4;until=", 14, &a), -1);
    CHECK_EQ_INT(bs_attack_parse("xuntil=5", 8, &a), -1); /* a name must be whole */
    CHECK_EQ_INT(bs_attack_parse("until=1234567890123456789", 25, &a), -1); /* too long */
    CHECK_EQ_INT(bs_attack_parse("", 0, &a), -1);
    /* the length bounds the read: no NUL needed */
    CHECK_EQ_INT(bs_attack_parse("until=12;junk", 8, &a), 0);
    CHECK(a.until == 12);
}

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
}

int main(void)
{
    test_parse();
    test_table();
    test_known_filter();
    return check_summary();
}
