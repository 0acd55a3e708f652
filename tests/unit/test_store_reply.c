/*
 * test_store_reply.c - the store's reply reader (src/common/store_reply.c)
 * without Redis: RESP bytes as Redis sends them, read by hiredis's own
 * redisReader, then interpreted as the store does. Table-driven: the
 * unknown-recipient script's two-part reply (bs_store_reply_unknown and
 * BS_REPLY_UNKNOWN), and the scripts' integers it shares with
 * BS_REPLY_NOTE.
 */
#include <string.h>

#include <hiredis/hiredis.h>

#include "backstop/store_reply.h"
#include "check.h"

/* parse - one complete reply from RESP text; NULL when incomplete or bad */
static redisReply *parse(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    void *rep = NULL;

    if (!rd)
        return NULL;
    if (redisReaderFeed(rd, resp, strlen(resp)) != REDIS_OK ||
        redisReaderGetReply(rd, &rep) != REDIS_OK)
        rep = NULL;
    redisReaderFree(rd);
    return rep;
}

/* The parts: what the split gives, and what BS_REPLY_UNKNOWN makes of it. */
enum { P_BAD = -1, P_INT = REDIS_REPLY_INTEGER, P_ERR = REDIS_REPLY_ERROR };
static const struct {
    const char *name, *resp;
    int split;       /* bs_store_reply_unknown's return */
    int rate_type;   /* the rate part's type (split 0) */
    int harvest_arr; /* 1: the harvest part is an array, 0: an error */
    int apply;       /* bs_store_reply_apply(BS_REPLY_UNKNOWN)'s return */
    int result;      /* its *result (apply 0) */
} cases[] = {
    {"counted", "*2\r\n:0\r\n*2\r\n:0\r\n:5\r\n", 0, P_INT, 1, 0, 0},
    {"blocked", "*2\r\n:4\r\n*2\r\n:0\r\n:5\r\n", 0, P_INT, 1, 0, 4},
    {"exempt", "*2\r\n:-1\r\n*1\r\n:-1\r\n", 0, P_INT, 1, 0, -1},
    {"attack started",
     "*2\r\n:0\r\n*7\r\n:1\r\n:12\r\n:-1\r\n$12\r\n192.0.2.0/24\r\n:12\r\n"
     "$15\r\n198.51.100.0/24\r\n:1\r\n",
     0, P_INT, 1, 0, 0},
    {"clamped", "*2\r\n:99999999999\r\n*2\r\n:0\r\n:1\r\n", 0, P_INT, 1, 0, 2147483647},
    {"rate failed", "*2\r\n-WRONGTYPE x\r\n*2\r\n:0\r\n:1\r\n", 0, P_ERR, 1, -1, 0},
    {"harvest failed", "*2\r\n:3\r\n-WRONGTYPE y\r\n", 0, P_INT, 0, -1, 0},
    {"error", "-NOSCRIPT No matching script\r\n", -1, 0, 0, -1, 0},
    {"integer", ":1\r\n", -1, 0, 0, -1, 0},
    {"one part", "*1\r\n:0\r\n", -1, 0, 0, -1, 0},
    {"three parts", "*3\r\n:0\r\n*1\r\n:0\r\n:0\r\n", -1, 0, 0, -1, 0},
    {"rate a string", "*2\r\n$1\r\n0\r\n*2\r\n:0\r\n:1\r\n", -1, 0, 0, -1, 0},
    {"rate nil", "*2\r\n$-1\r\n*2\r\n:0\r\n:1\r\n", -1, 0, 0, -1, 0},
    {"harvest an integer", "*2\r\n:0\r\n:0\r\n", -1, 0, 0, -1, 0},
    {"harvest empty", "*2\r\n:0\r\n*0\r\n", -1, 0, 0, -1, 0},
    {"harvest a string first", "*2\r\n:0\r\n*2\r\n$1\r\n1\r\n:1\r\n", -1, 0, 0, -1, 0},
};

static void test_unknown(void)
{
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redisReply *rep = parse(cases[i].resp);
        const redisReply *rate = NULL, *harvest = NULL;
        bs_facts f;
        int result = 12345, rc;

        if (!rep)
            fprintf(stderr, "case %s: unreadable\n", cases[i].name);
        CHECK(rep != NULL);
        if (!rep)
            continue;
        rc = bs_store_reply_unknown(rep, &rate, &harvest);
        if (rc != cases[i].split)
            fprintf(stderr, "case %s\n", cases[i].name);
        CHECK_EQ_INT(rc, cases[i].split);
        if (rc == 0) {
            CHECK(rate == rep->element[0] && harvest == rep->element[1]);
            CHECK_EQ_INT(rate->type, cases[i].rate_type);
            CHECK_EQ_INT(harvest->type,
                         cases[i].harvest_arr ? REDIS_REPLY_ARRAY : REDIS_REPLY_ERROR);
        } else {
            CHECK(rate == NULL && harvest == NULL); /* untouched */
        }
        memset(&f, 0, sizeof(f));
        f.ndr_index = -1;
        rc = bs_store_reply_apply(BS_REPLY_UNKNOWN, rep, &f, &result);
        if (rc != cases[i].apply)
            fprintf(stderr, "case %s\n", cases[i].name);
        CHECK_EQ_INT(rc, cases[i].apply);
        CHECK_EQ_INT(result, rc == 0 ? cases[i].result : 12345);
        CHECK(!f.blocked && !f.exempt && f.ndr_index == -1); /* no facts written */
        freeReplyObject(rep);
    }
}

/* A rate part read as BS_REPLY_NOTE gives what the rate script alone gave. */
static void test_rate_part_as_note(void)
{
    redisReply *both = parse("*2\r\n:7\r\n*2\r\n:0\r\n:1\r\n"), *alone = parse(":7\r\n");
    const redisReply *rate, *harvest;
    bs_facts f;
    int a = 0, b = 0;

    CHECK(both && alone);
    if (!both || !alone)
        return;
    memset(&f, 0, sizeof(f));
    f.ndr_index = -1;
    CHECK_EQ_INT(bs_store_reply_unknown(both, &rate, &harvest), 0);
    CHECK_EQ_INT(bs_store_reply_apply(BS_REPLY_NOTE, rate, &f, &a), 0);
    CHECK_EQ_INT(bs_store_reply_apply(BS_REPLY_NOTE, alone, &f, &b), 0);
    CHECK_EQ_INT(a, 7);
    CHECK_EQ_INT(a, b);
    freeReplyObject(both);
    freeReplyObject(alone);
}

int main(void)
{
    test_unknown();
    test_rate_part_as_note();
    return check_summary();
}
