/* test_mirror.c - the mirror's state machine against scripted orders of
 * reads, replies and invalidations: the load, the read/invalidation race,
 * the mode HASH (loaded, invalidated, raced, stale like ndr),
 * a scan invalidated between batches, FLUSHALL, a key type change, a lost
 * link (stale answers until max_stale, then Redis; re-validation), blocks
 * with expiry, and a huge set */
#include <stdio.h>
#include <string.h>

#include "mirror.h"
#include "check.h"

#define MAX_STALE 300000

/* next_for - issue reads until the one of key (others are kept aside in
 * held[]); 1 when found */
static bs_mirror_read held[64];
static size_t nheld;

static int next_for(bs_mirror *m, const char *key, bs_mirror_read *rd)
{
    size_t i;

    for (i = 0; i < nheld; i++)
        if (strcmp(held[i].key, key) == 0) {
            *rd = held[i];
            held[i] = held[--nheld];
            return 1;
        }
    while (bs_mirror_next_read(m, rd)) {
        if (strcmp(rd->key, key) == 0 || (rd->kind == BS_MIRROR_SCAN && strcmp(key, "*") == 0))
            return 1;
        if (nheld < 64)
            held[nheld++] = *rd;
    }
    return 0;
}

/* reply_items - answer rd with the NULL-terminated items in one batch */
static void reply_items(bs_mirror *m, const bs_mirror_read *rd, unsigned long long next,
                        const char **items)
{
    size_t lens[64], n;

    for (n = 0; items[n]; n++)
        lens[n] = strlen(items[n]);
    bs_mirror_scanned(m, rd, next, items, lens, n);
}

/* load - read key and answer with items (a whole read in one batch) */
static int load(bs_mirror *m, const char *key, const char **items)
{
    bs_mirror_read rd;

    if (!next_for(m, key, &rd))
        return 0;
    reply_items(m, &rd, 0, items);
    return 1;
}

static const char *none[] = {NULL};

/* loaded - a connected mirror: one protected domain with two users, an
 * NDR policy, one exempt client, no blocks */
static bs_mirror *loaded(void)
{
    bs_mirror *m = bs_mirror_new();
    const char *domains[] = {"example.com", NULL}, *users[] = {"alice", "bob", NULL};
    const char *ndr[] = {"*", "deny", "example.org", "allow", NULL}, *exempt[] = {"10.0.0.1", NULL};

    nheld = 0;
    bs_mirror_connected(m);
    CHECK(load(m, "domains", domains));
    CHECK(load(m, "ndr", ndr));
    CHECK(load(m, "exempt", exempt));
    CHECK(load(m, "*", none));
    CHECK(load(m, "rcpt:example.com", users));
    return m;
}

/* ask - answer a lookup for local@domain (client, null sender NDR fields) */
static int ask(bs_mirror *m, const char *local, const char *domain, uint64_t now, bs_facts *f)
{
    bs_lookup q;

    memset(&q, 0, sizeof(q));
    q.client_key = "192.0.2.1";
    q.domain = domain;
    q.locals[0] = local;
    q.local_lens[0] = strlen(local);
    q.nlocals = 1;
    return bs_mirror_answer(m, &q, now, MAX_STALE, f);
}

static void test_load_and_answer(void)
{
    bs_mirror *m = bs_mirror_new();
    bs_facts f;
    bs_lookup q;
    const char *domains[] = {"example.com", NULL}, *users[] = {"alice", NULL};

    nheld = 0;
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_ASK_REDIS); /* never connected */
    bs_mirror_connected(m);
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_ASK_REDIS); /* nothing loaded */
    CHECK(load(m, "domains", domains));
    CHECK(load(m, "*", none));
    /* the domain is known protected, its users are not loaded yet */
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_ASK_REDIS);
    CHECK_EQ_INT(ask(m, "x", "other.net", 0, &f), BS_MIRROR_EXACT);
    CHECK(!f.protected_domain && !f.blocked);
    CHECK(load(m, "rcpt:example.com", users));
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(f.protected_domain && f.rcpt_known);
    CHECK_EQ_INT(ask(m, "carol", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(f.protected_domain && !f.rcpt_known);
    /* NDR: not loaded yet, then the first field present and its value */
    memset(&q, 0, sizeof(q));
    q.ndr_fields[0] = "example.org";
    q.ndr_fields[1] = ".org";
    q.ndr_fields[2] = "*";
    q.nndr = 3;
    CHECK_EQ_INT(bs_mirror_answer(m, &q, 0, MAX_STALE, &f), BS_MIRROR_ASK_REDIS);
    {
        const char *ndr[] = {"*", "deny", ".org", "limit 5/1h", NULL};
        CHECK(load(m, "ndr", ndr));
    }
    CHECK_EQ_INT(bs_mirror_answer(m, &q, 0, MAX_STALE, &f), BS_MIRROR_EXACT);
    CHECK_EQ_INT(f.ndr_index, 1);
    CHECK_EQ_STR(f.ndr_value, "limit 5/1h");
    /* directory size from the set; a sync record is Redis's to answer */
    memset(&q, 0, sizeof(q));
    q.directory = "example.com";
    CHECK_EQ_INT(bs_mirror_answer(m, &q, 0, MAX_STALE, &f), BS_MIRROR_EXACT);
    CHECK(f.dir_known && f.dir_size == 1);
    q.directory_synced = 1;
    CHECK_EQ_INT(bs_mirror_answer(m, &q, 0, MAX_STALE, &f), BS_MIRROR_ASK_REDIS);
    bs_mirror_free(m);
}

/* the race: SREM's invalidation arrives between the re-read's send and its
 * (older) reply; the reply must not undo the SREM */
static void test_race(void)
{
    bs_mirror *m = loaded();
    bs_mirror_read rd;
    bs_facts f;
    const char *old[] = {"alice", "bob", NULL}, *now[] = {"alice", NULL};
    bs_mirror_info info;

    bs_mirror_invalidate(m, "rcpt:example.com", 16); /* someone SADDs */
    CHECK(next_for(m, "rcpt:example.com", &rd));     /* re-read sent */
    bs_mirror_invalidate(m, "rcpt:example.com", 16); /* SREM bob, before the reply */
    reply_items(m, &rd, 0, old);                     /* reply from before the SREM */
    CHECK_EQ_INT(ask(m, "bob", "example.com", 0, &f), BS_MIRROR_ASK_REDIS);
    bs_mirror_get_info(m, &info);
    CHECK_EQ_INT(info.raced, 1);
    CHECK(load(m, "rcpt:example.com", now)); /* read again */
    CHECK_EQ_INT(ask(m, "bob", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(!f.rcpt_known);
    bs_mirror_free(m);
}

/* a scan in batches invalidated between two batches starts again at 0 */
static void test_scan_restart(void)
{
    bs_mirror *m = loaded();
    bs_mirror_read rd;
    bs_facts f;
    const char *b1[] = {"alice", NULL}, *b2[] = {"bob", NULL};

    bs_mirror_invalidate(m, "rcpt:example.com", 16);
    CHECK(next_for(m, "rcpt:example.com", &rd));
    reply_items(m, &rd, 17, b1);
    CHECK(next_for(m, "rcpt:example.com", &rd)); /* the next batch */
    CHECK_EQ_INT(rd.cursor, 17);
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_ASK_REDIS); /* half read */
    bs_mirror_invalidate(m, "rcpt:example.com", 16);
    reply_items(m, &rd, 0, b2);
    CHECK_EQ_INT(ask(m, "bob", "example.com", 0, &f), BS_MIRROR_ASK_REDIS);
    CHECK(next_for(m, "rcpt:example.com", &rd));
    CHECK_EQ_INT(rd.cursor, 0); /* from the start */
    reply_items(m, &rd, 0, b2);
    CHECK_EQ_INT(ask(m, "bob", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(f.rcpt_known);
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(!f.rcpt_known);
    bs_mirror_free(m);
}

/* FLUSHALL: every key invalid; a domain gone from domains is dropped */
static void test_flush(void)
{
    bs_mirror *m = loaded();
    bs_facts f;
    bs_mirror_info info;

    bs_mirror_invalidate(m, NULL, 0);
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_ASK_REDIS);
    CHECK(load(m, "domains", none));
    /* the blocks are scanned again too: until then Redis answers */
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_ASK_REDIS);
    CHECK(load(m, "*", none));
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(!f.protected_domain);
    bs_mirror_get_info(m, &info);
    CHECK_EQ_INT(info.keys, 4); /* domains, ndr, mode, exempt: rcpt:example.com went */
    bs_mirror_free(m);
}

/* a flush that brings blocks of its own (a replica's full resync: one nil
 * invalidation, no key of its own): the new block is found by the SCAN */
static void test_flush_finds_new_blocks(void)
{
    bs_mirror *m = loaded();
    bs_mirror_read rd;
    bs_facts f;
    const char *found[] = {"block:192.0.2.1", NULL};

    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(!f.blocked);
    bs_mirror_invalidate(m, NULL, 0);
    CHECK(next_for(m, "*", &rd));
    reply_items(m, &rd, 0, found);
    CHECK(next_for(m, "block:192.0.2.1", &rd));
    bs_mirror_block(m, &rd, 1, "manual", 6, -1, 0);
    CHECK(load(m, "domains", (const char *[]){"example.com", NULL}));
    CHECK(load(m, "rcpt:example.com", (const char *[]){"alice", NULL}));
    CHECK(load(m, "ndr", none));
    CHECK(load(m, "exempt", none));
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(f.blocked);
    bs_mirror_free(m);
}

/* a key whose type changed: Redis answers until it is fixed */
static void test_wrong_type(void)
{
    bs_mirror *m = loaded();
    bs_mirror_read rd;
    bs_facts f;
    const char *users[] = {"carol", NULL};

    bs_mirror_invalidate(m, "rcpt:example.com", 16); /* DEL + HSET */
    CHECK(next_for(m, "rcpt:example.com", &rd));
    bs_mirror_failed(m, &rd, 1); /* WRONGTYPE */
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_ASK_REDIS);
    CHECK(!bs_mirror_next_read(m, &rd)); /* no loop of re-reads */
    bs_mirror_lost(m, 1000);             /* no stale answer from a key never held */
    CHECK_EQ_INT(ask(m, "alice", "example.com", 1000, &f), BS_MIRROR_ASK_REDIS);
    bs_mirror_connected(m);
    CHECK(load(m, "domains", (const char *[]){"example.com", NULL}));
    CHECK(load(m, "*", none));
    CHECK(load(m, "rcpt:example.com", users)); /* a set again */
    CHECK_EQ_INT(ask(m, "carol", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(f.rcpt_known);
    bs_mirror_free(m);
}

/* a lost link: stale answers until max_stale, then Redis; replies of the
 * old link are void; re-validation before exact; data of the old master
 * that the new one lacks is gone */
static void test_lost(void)
{
    bs_mirror *m = loaded();
    bs_mirror_read rd;
    bs_facts f;
    bs_mirror_info info;
    const char *users[] = {"alice", NULL};

    bs_mirror_invalidate(m, "rcpt:example.com", 16);
    CHECK(next_for(m, "rcpt:example.com", &rd));
    bs_mirror_lost(m, 5000);
    reply_items(m, &rd, 0, users); /* late reply of the lost link */
    CHECK(!bs_mirror_next_read(m, &rd));
    CHECK_EQ_INT(ask(m, "bob", "example.com", 5000 + MAX_STALE, &f), BS_MIRROR_STALE);
    CHECK(f.rcpt_known); /* the last exact data */
    bs_mirror_get_info(m, &info);
    CHECK_EQ_INT(info.stale_since, 5000);
    CHECK_EQ_INT(ask(m, "bob", "example.com", 5001 + MAX_STALE, &f), BS_MIRROR_ASK_REDIS);
    /* reconnected to a new master that lacks the domain */
    bs_mirror_connected(m);
    nheld = 0;
    CHECK_EQ_INT(ask(m, "bob", "example.com", 6000, &f), BS_MIRROR_ASK_REDIS);
    CHECK(load(m, "domains", none));
    CHECK(load(m, "*", none));
    CHECK_EQ_INT(ask(m, "bob", "example.com", 6000, &f), BS_MIRROR_EXACT);
    CHECK(!f.protected_domain);
    bs_mirror_free(m);
}

/* blocks: found by SCAN, created by an invalidation, expiring, deleted */
static void test_blocks(void)
{
    bs_mirror *m = bs_mirror_new();
    bs_mirror_read rd;
    bs_facts f;
    const char *found[] = {"block:192.0.2.1", "block:", "rate:x", NULL};

    nheld = 0;
    bs_mirror_connected(m);
    CHECK(load(m, "domains", none));
    CHECK(next_for(m, "*", &rd));
    reply_items(m, &rd, 0, found);
    CHECK_EQ_INT(ask(m, "a", "x.org", 0, &f), BS_MIRROR_ASK_REDIS); /* its read is due */
    CHECK(next_for(m, "block:192.0.2.1", &rd));
    CHECK_EQ_INT(rd.kind, BS_MIRROR_BLOCK);
    bs_mirror_block(m, &rd, 1, "too many\ninvalid", 16, 1000, 100);
    CHECK_EQ_INT(ask(m, "a", "x.org", 1099, &f), BS_MIRROR_EXACT);
    CHECK(f.blocked);
    CHECK_EQ_STR(f.block_reason, "too\\x20many\\x0ainvalid"); /* escaped as store_reply.c does */
    CHECK_EQ_INT(ask(m, "a", "x.org", 1100, &f), BS_MIRROR_EXACT);
    CHECK(!f.blocked); /* expired */
    /* DEL by the admin */
    bs_mirror_invalidate(m, "block:192.0.2.1", 15);
    CHECK_EQ_INT(ask(m, "a", "x.org", 200, &f), BS_MIRROR_ASK_REDIS);
    CHECK(next_for(m, "block:192.0.2.1", &rd));
    bs_mirror_block(m, &rd, 0, NULL, 0, -2, 200);
    CHECK_EQ_INT(ask(m, "a", "x.org", 200, &f), BS_MIRROR_EXACT);
    CHECK(!f.blocked);
    /* a new block written by the rate script: no TTL given -> persistent */
    bs_mirror_invalidate(m, "block:192.0.2.1", 15);
    CHECK(next_for(m, "block:192.0.2.1", &rd));
    bs_mirror_block(m, &rd, 1, "manual", 6, -1, 300);
    CHECK_EQ_INT(ask(m, "a", "x.org", 99999999, &f), BS_MIRROR_EXACT);
    CHECK(f.blocked);
    bs_mirror_free(m);
}

/* ask_mode - the mode fields of domain (HMGET mode <domain> "*") */
static int ask_mode(bs_mirror *m, const char *domain, uint64_t now, bs_facts *f)
{
    bs_lookup q;

    memset(&q, 0, sizeof(q));
    q.mode_domain = domain;
    return bs_mirror_answer(m, &q, now, MAX_STALE, f);
}

/* the mode HASH, held the way ndr is: loaded by HSCAN, not answered until
 * loaded, re-read on an invalidation, a raced reply dropped, stale answers
 * while the link is lost, re-loaded on a new link */
static void test_mode(void)
{
    bs_mirror *m = loaded();
    bs_mirror_read rd;
    bs_mirror_info info;
    bs_facts f;
    const char *v1[] = {"example.com", "report", "*", "enforce", NULL};
    const char *v2[] = {"example.com", "off", NULL};
    const char *v3[] = {"example.com", "enforce", NULL};

    CHECK_EQ_INT(ask_mode(m, "example.com", 0, &f), BS_MIRROR_ASK_REDIS); /* not loaded yet */
    CHECK(next_for(m, "mode", &rd));
    CHECK_EQ_INT(rd.kind, BS_MIRROR_HSCAN);
    reply_items(m, &rd, 0, v1);
    CHECK_EQ_INT(ask_mode(m, "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(f.mode_found[0] && f.mode_found[1]);
    CHECK_EQ_STR(f.mode_value[0], "report");
    CHECK_EQ_INT(f.mode_len[0], 6);
    CHECK_EQ_STR(f.mode_value[1], "enforce");
    CHECK_EQ_INT(ask_mode(m, "other.example", 0, &f), BS_MIRROR_EXACT);
    CHECK(!f.mode_found[0] && f.mode_found[1]);
    /* HSET mode example.com off: Redis answers until the re-read is back
     * (and an answer given before it can tell: bs_mirror_changes moved) */
    uint64_t changes = bs_mirror_changes(m);
    bs_mirror_invalidate(m, "mode", 4);
    CHECK(bs_mirror_changes(m) > changes);
    CHECK_EQ_INT(ask_mode(m, "example.com", 0, &f), BS_MIRROR_ASK_REDIS);
    CHECK(next_for(m, "mode", &rd));
    /* HDEL mode "*" before that reply: the reply is void, read again */
    bs_mirror_invalidate(m, "mode", 4);
    reply_items(m, &rd, 0, v1);
    CHECK_EQ_INT(ask_mode(m, "example.com", 0, &f), BS_MIRROR_ASK_REDIS);
    bs_mirror_get_info(m, &info);
    CHECK_EQ_INT(info.raced, 1);
    CHECK(load(m, "mode", v2));
    CHECK_EQ_INT(ask_mode(m, "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK_EQ_STR(f.mode_value[0], "off");
    CHECK(!f.mode_found[1]);
    /* a lookup that needs no mode is not held up by it */
    bs_mirror_invalidate(m, "mode", 4);
    CHECK_EQ_INT(ask(m, "alice", "example.com", 0, &f), BS_MIRROR_EXACT);
    CHECK(load(m, "mode", v2));
    /* the link lost: the last exact data answers for max_stale */
    bs_mirror_lost(m, 1000);
    CHECK_EQ_INT(ask_mode(m, "example.com", 1000 + MAX_STALE, &f), BS_MIRROR_STALE);
    CHECK_EQ_STR(f.mode_value[0], "off");
    CHECK_EQ_INT(ask_mode(m, "example.com", 1001 + MAX_STALE, &f), BS_MIRROR_ASK_REDIS);
    /* a new link: re-read before it answers again */
    bs_mirror_connected(m);
    nheld = 0;
    CHECK_EQ_INT(ask_mode(m, "example.com", 2000, &f), BS_MIRROR_ASK_REDIS);
    CHECK(load(m, "mode", v3));
    CHECK_EQ_INT(ask_mode(m, "example.com", 2000, &f), BS_MIRROR_EXACT);
    CHECK_EQ_STR(f.mode_value[0], "enforce");
    /* FLUSHALL: the mode is Redis's to answer until read again (empty) */
    bs_mirror_invalidate(m, NULL, 0);
    CHECK_EQ_INT(ask_mode(m, "example.com", 2000, &f), BS_MIRROR_ASK_REDIS);
    CHECK(load(m, "mode", none));
    CHECK_EQ_INT(ask_mode(m, "example.com", 2000, &f), BS_MIRROR_EXACT);
    CHECK(!f.mode_found[0] && !f.mode_found[1]);
    bs_mirror_free(m);
}

/* a huge set in batches: every member found, memory bounded */
static void test_huge(void)
{
    enum { N = 200000, BATCH = 1000 };
    bs_mirror *m = bs_mirror_new();
    bs_mirror_read rd;
    bs_mirror_info info;
    bs_facts f;
    static char names[BATCH][16];
    const char *items[BATCH];
    size_t lens[BATCH], i, b, missing = 0;
    char local[16];

    nheld = 0;
    bs_mirror_connected(m);
    CHECK(load(m, "domains", (const char *[]){"big.example", NULL}));
    CHECK(load(m, "*", none));
    CHECK(next_for(m, "rcpt:big.example", &rd));
    for (b = 0; b < N / BATCH; b++) {
        for (i = 0; i < BATCH; i++) {
            lens[i] = (size_t)snprintf(names[i], sizeof(names[i]), "user%zu", b * BATCH + i);
            items[i] = names[i];
        }
        bs_mirror_scanned(m, &rd, b + 1 < N / BATCH ? b + 1 : 0, items, lens, BATCH);
        if (b + 1 < N / BATCH)
            CHECK(bs_mirror_next_read(m, &rd) && rd.cursor == b + 1);
    }
    for (i = 0; i < N; i += 7) {
        snprintf(local, sizeof(local), "user%zu", i);
        if (ask(m, local, "big.example", 0, &f) != BS_MIRROR_EXACT || !f.rcpt_known)
            missing++;
    }
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(ask(m, "user200000", "big.example", 0, &f), BS_MIRROR_EXACT);
    CHECK(!f.rcpt_known);
    bs_mirror_get_info(m, &info);
    CHECK(info.bytes < (uint64_t)N * 32); /* 2 + ~9 bytes of record, 4-8 of table */
    bs_mirror_free(m);
}

int main(void)
{
    test_load_and_answer();
    test_race();
    test_scan_restart();
    test_flush();
    test_flush_finds_new_blocks();
    test_wrong_type();
    test_lost();
    test_blocks();
    test_mode();
    test_huge();
    return check_summary();
}
