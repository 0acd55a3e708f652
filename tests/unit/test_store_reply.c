/*
 * test_store_reply.c - the store's reply reader (src/common/store_reply.c)
 * without Redis: RESP bytes as Redis sends them, read by hiredis's own
 * redisReader, then applied as backstopd's store and backstopctl explain
 * apply them. Table-driven, one row per reply shape: every kind's good
 * replies, and for each kind the replies its command cannot give (a wrong
 * type, an error, an array element of the wrong type), which must be -1
 * and leave the facts as they were.
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

/* fresh - the facts as the store starts a lookup */
static void fresh(bs_facts *f)
{
    memset(f, 0, sizeof(*f));
    f->ndr_index = -1;
}

/* What one reply must do to fresh facts. The fields not named stay as fresh. */
static const struct {
    const char *name;
    int kind;
    const char *resp;
    int rc;              /* bs_store_reply_apply's return */
    int blocked;         /* f->blocked */
    const char *reason;  /* f->block_reason (blocked) */
    int exempt, known;   /* f->exempt, f->rcpt_known */
    int domain;          /* f->protected_domain */
    int ndr_index;       /* f->ndr_index */
    const char *ndr;     /* f->ndr_value (ndr_index >= 0) */
    int mode0, mode1;    /* f->mode_found[0], [1] */
    const char *mv0;     /* f->mode_value[0] (mode0) */
    int dir_known;       /* f->dir_known */
    long long dir_size;  /* f->dir_size */
    long long synced_at; /* f->dir_synced_at */
    int result;          /* *result (set to 12345 before) */
} cases[] = {
    {"block nil", BS_REPLY_BLOCK, "$-1\r\n", 0, .ndr_index = -1, .result = 12345},
    {"block set", BS_REPLY_BLOCK, "$14\r\nrate 21/10m ok\r\n", 0, 1, "rate\\x2021/10m\\x20ok",
     .ndr_index = -1, .result = 12345},
    {"block escaped", BS_REPLY_BLOCK, "$5\r\na\nb\"c\r\n", 0, 1, "a\\x0ab\"c", .ndr_index = -1,
     .result = 12345},
    {"block integer", BS_REPLY_BLOCK, ":1\r\n", -1, .ndr_index = -1, .result = 12345},
    {"block error", BS_REPLY_BLOCK, "-ERR x\r\n", -1, .ndr_index = -1, .result = 12345},
    {"domain yes", BS_REPLY_DOMAIN, ":1\r\n", 0, .domain = 1, .ndr_index = -1, .result = 12345},
    {"domain no", BS_REPLY_DOMAIN, ":0\r\n", 0, .ndr_index = -1, .result = 12345},
    {"domain string", BS_REPLY_DOMAIN, "$1\r\n1\r\n", -1, .ndr_index = -1, .result = 12345},
    {"domain wrongtype", BS_REPLY_DOMAIN, "-WRONGTYPE x\r\n", -1, .ndr_index = -1, .result = 12345},
    {"exempt one of two", BS_REPLY_EXEMPT, "*2\r\n:0\r\n:1\r\n", 0, .exempt = 1, .ndr_index = -1,
     .result = 12345},
    {"exempt none", BS_REPLY_EXEMPT, "*2\r\n:0\r\n:0\r\n", 0, .ndr_index = -1, .result = 12345},
    {"exempt a string in it", BS_REPLY_EXEMPT, "*2\r\n:1\r\n$1\r\n1\r\n", -1, .ndr_index = -1,
     .result = 12345},
    {"rcpt known", BS_REPLY_RCPT, "*3\r\n:0\r\n:0\r\n:1\r\n", 0, .known = 1, .ndr_index = -1,
     .result = 12345},
    {"rcpt unknown", BS_REPLY_RCPT, "*1\r\n:0\r\n", 0, .ndr_index = -1, .result = 12345},
    {"rcpt an integer", BS_REPLY_RCPT, ":1\r\n", -1, .ndr_index = -1, .result = 12345},
    {"ndr longest suffix", BS_REPLY_NDR, "*3\r\n$-1\r\n$5\r\ndeny \r\n$5\r\nallow\r\n", 0,
     .ndr_index = 1, .ndr = "deny ", .result = 12345},
    {"ndr none", BS_REPLY_NDR, "*2\r\n$-1\r\n$-1\r\n", 0, .ndr_index = -1, .result = 12345},
    {"ndr an integer after the entry", BS_REPLY_NDR, "*2\r\n$4\r\ndeny\r\n:1\r\n", -1,
     .ndr_index = -1, .result = 12345},
    {"ndr a string", BS_REPLY_NDR, "$4\r\ndeny\r\n", -1, .ndr_index = -1, .result = 12345},
    {"mode both", BS_REPLY_MODE, "*2\r\n$6\r\nreport\r\n$7\r\nenforce\r\n", 0, .ndr_index = -1,
     .mode0 = 1, .mode1 = 1, .mv0 = "report", .result = 12345},
    {"mode default only", BS_REPLY_MODE, "*2\r\n$-1\r\n$3\r\noff\r\n", 0, .ndr_index = -1,
     .mode1 = 1, .result = 12345},
    {"mode three fields", BS_REPLY_MODE, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", -1,
     .ndr_index = -1, .result = 12345},
    {"mode an integer second", BS_REPLY_MODE, "*2\r\n$3\r\noff\r\n:0\r\n", -1, .ndr_index = -1,
     .result = 12345},
    {"dir size", BS_REPLY_DIR_SIZE, ":1500\r\n", 0, .ndr_index = -1, .dir_known = 1,
     .dir_size = 1500, .result = 12345},
    {"dir size nil", BS_REPLY_DIR_SIZE, "$-1\r\n", -1, .ndr_index = -1, .result = 12345},
    {"dir sync", BS_REPLY_DIR_SYNC, "$10\r\n1764633600\r\n", 0, .ndr_index = -1,
     .synced_at = 1764633600, .result = 12345},
    {"dir sync unreadable", BS_REPLY_DIR_SYNC, "$3\r\nabc\r\n", 0, .ndr_index = -1,
     .result = 12345},
    {"dir sync nil", BS_REPLY_DIR_SYNC, "$-1\r\n", 0, .ndr_index = -1, .result = 12345},
    {"dir sync integer", BS_REPLY_DIR_SYNC, ":5\r\n", -1, .ndr_index = -1, .result = 12345},
    {"take", BS_REPLY_TAKE, ":3\r\n", 0, .ndr_index = -1, .result = 3},
    {"take negative", BS_REPLY_TAKE, ":-1\r\n", 0, .ndr_index = -1, .result = -1},
    {"note clamped", BS_REPLY_NOTE, ":99999999999\r\n", 0, .ndr_index = -1, .result = 2147483647},
    {"grey clamped low", BS_REPLY_GREY, ":-99999999999\r\n", 0, .ndr_index = -1,
     .result = -2147483647 - 1},
    {"grey a string", BS_REPLY_GREY, "$1\r\n1\r\n", -1, .ndr_index = -1, .result = 12345},
    {"noscript", BS_REPLY_TAKE, "-NOSCRIPT No matching script\r\n", -1, .ndr_index = -1,
     .result = 12345},
    {"script", BS_REPLY_SCRIPT, "*2\r\n:1\r\n$1\r\nx\r\n", 0, .ndr_index = -1, .result = 12345},
    {"unknown kind", 999, ":1\r\n", -1, .ndr_index = -1, .result = 12345},
};

static void test_cases(void)
{
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redisReply *rep = parse(cases[i].resp);
        bs_facts f;
        int result = 12345, fails = check_failed;

        CHECK(rep != NULL);
        if (!rep) {
            fprintf(stderr, "case %s: unreadable RESP\n", cases[i].name);
            continue;
        }
        fresh(&f);
        CHECK_EQ_INT(bs_store_reply_apply(cases[i].kind, rep, &f, &result), cases[i].rc);
        CHECK_EQ_INT(f.blocked, cases[i].blocked);
        if (cases[i].blocked)
            CHECK_EQ_STR(f.block_reason, cases[i].reason);
        CHECK_EQ_INT(f.exempt, cases[i].exempt);
        CHECK_EQ_INT(f.rcpt_known, cases[i].known);
        CHECK_EQ_INT(f.protected_domain, cases[i].domain);
        CHECK_EQ_INT(f.ndr_index, cases[i].ndr_index);
        if (cases[i].ndr_index >= 0) {
            CHECK_EQ_STR(f.ndr_value, cases[i].ndr);
            CHECK_EQ_INT(f.ndr_value_len, strlen(cases[i].ndr));
        }
        CHECK_EQ_INT(f.mode_found[0], cases[i].mode0);
        CHECK_EQ_INT(f.mode_found[1], cases[i].mode1);
        if (cases[i].mode0)
            CHECK_EQ_STR(f.mode_value[0], cases[i].mv0);
        CHECK_EQ_INT(f.dir_known, cases[i].dir_known);
        CHECK(f.dir_size == cases[i].dir_size);
        CHECK(f.dir_synced_at == cases[i].synced_at);
        CHECK_EQ_INT(result, cases[i].result);
        if (check_failed != fails)
            fprintf(stderr, "  in case \"%s\"\n", cases[i].name);
        freeReplyObject(rep);
    }
}

/* test_ndr_truncated - an NDR value longer than the facts hold is cut,
 * NUL-terminated, its length the cut one */
static void test_ndr_truncated(void)
{
    char resp[256], want[sizeof(((bs_facts *)0)->ndr_value)];
    bs_facts f;
    redisReply *rep;
    int result = 0;

    memset(want, 'x', sizeof(want) - 1);
    want[sizeof(want) - 1] = 0;
    snprintf(resp, sizeof(resp), "*1\r\n$100\r\n%.100s\r\n",
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    rep = parse(resp);
    CHECK(rep != NULL);
    if (!rep)
        return;
    fresh(&f);
    CHECK_EQ_INT(bs_store_reply_apply(BS_REPLY_NDR, rep, &f, &result), 0);
    CHECK_EQ_INT(f.ndr_index, 0);
    CHECK_EQ_INT(f.ndr_value_len, sizeof(want) - 1);
    CHECK_EQ_STR(f.ndr_value, want);
    freeReplyObject(rep);
}

int main(void)
{
    test_cases();
    test_ndr_truncated();
    return check_summary();
}
