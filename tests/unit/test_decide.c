/*
 * test_decide.c - the policy rules against a deterministic fake store
 *
 * The fake store answers a bs_lookup from small in-memory tables exactly as
 * the Redis store reads its keys (block, exempt, domains, rcpt:<domain>,
 * ndr, mode, and for the directory check the size of rcpt:<domain> and the
 * sync record), and keeps NDR budgets per recipient domain. Each case runs one
 * request through bs_decide_begin/_facts/_taken and checks the verdict, the
 * reply line and the log line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backstop/decide.h"
#include "check.h"

/* ---- the fake store ---- */
static const char *f_blocked[8];
static const char *f_exempt[8];
static const char *f_domains[8];
static const char *f_rcpt[16][2]; /* domain, local */
static const char *f_ndr[8][2];   /* field, value */
static int f_budget_used[8];
static char f_budget_domain[8][BS_DOMAIN_MAX + 1];
static const char *f_sync[8][2];     /* domain, last successful sync (Unix s) */
static const char *f_mode[8][2];     /* mode HASH: field (domain or "*"), value */
static long long f_now = 1700000000; /* the store's wall clock */
static int f_fail;                   /* lookup answers with an error */
static int f_fail_second;            /* the second lookup answers with an error */
static int f_lookups, f_takes, f_dir_lookups;
static const char *f_attacked[4];  /* domains in the store's attack table */
static int f_grey = BS_GREY_DEFER; /* what the harvest check answers (< 0: error) */
static int f_grey_checks;

static void fake_reset(void)
{
    memset(f_blocked, 0, sizeof(f_blocked));
    memset(f_exempt, 0, sizeof(f_exempt));
    memset(f_domains, 0, sizeof(f_domains));
    memset(f_rcpt, 0, sizeof(f_rcpt));
    memset(f_ndr, 0, sizeof(f_ndr));
    memset(f_budget_used, 0, sizeof(f_budget_used));
    memset(f_budget_domain, 0, sizeof(f_budget_domain));
    memset(f_sync, 0, sizeof(f_sync));
    memset(f_mode, 0, sizeof(f_mode));
    f_fail = f_fail_second = f_lookups = f_takes = f_dir_lookups = 0;
    memset(f_attacked, 0, sizeof(f_attacked));
    f_grey = BS_GREY_DEFER;
    f_grey_checks = 0;
}

static int in_list(const char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n && list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

static void fake_lookup(const bs_lookup *q, bs_facts *f)
{
    unsigned i, j;

    f_lookups++;
    memset(f, 0, sizeof(*f));
    f->ndr_index = -1;
    if (q->client_key && in_list(f_blocked, 8, q->client_key)) {
        f->blocked = 1;
        strcpy(f->block_reason, "test");
    }
    for (i = 0; i < q->nexempt; i++)
        f->exempt |= in_list(f_exempt, 8, q->exempt[i]);
    if (q->domain) {
        f->protected_domain = in_list(f_domains, 8, q->domain);
        f->under_attack = in_list(f_attacked, 4, q->domain);
        for (i = 0; i < q->nlocals; i++)
            for (j = 0; j < 16 && f_rcpt[j][0]; j++)
                if (strcmp(f_rcpt[j][0], q->domain) == 0 &&
                    strlen(f_rcpt[j][1]) == q->local_lens[i] &&
                    memcmp(f_rcpt[j][1], q->locals[i], q->local_lens[i]) == 0)
                    f->rcpt_known = 1;
    }
    if (q->directory) { /* SCARD rcpt:<domain>, HGET sync <domain>:ok */
        f_dir_lookups++;
        f->dir_known = 1;
        f->dir_now = f_now;
        for (j = 0; j < 16 && f_rcpt[j][0]; j++)
            f->dir_size += strcmp(f_rcpt[j][0], q->directory) == 0;
        for (j = 0; j < 8 && f_sync[j][0] && q->directory_synced; j++)
            if (strcmp(f_sync[j][0], q->directory) == 0)
                f->dir_synced_at = atoll(f_sync[j][1]);
    }
    for (i = 0; i < 2 && q->mode_domain; i++) /* HMGET mode <domain> "*" */
        for (j = 0; j < 8 && f_mode[j][0]; j++)
            if (strcmp(f_mode[j][0], i == 0 ? q->mode_domain : "*") == 0) {
                f->mode_found[i] = 1;
                f->mode_len[i] = strlen(f_mode[j][1]);
                memcpy(f->mode_value[i], f_mode[j][1], f->mode_len[i] + 1);
            }
    for (i = 0; i < q->nndr && f->ndr_index < 0; i++)
        for (j = 0; j < 8 && f_ndr[j][0]; j++)
            if (strcmp(f_ndr[j][0], q->ndr_fields[i]) == 0) {
                f->ndr_index = (int)i;
                f->ndr_value_len = strlen(f_ndr[j][1]);
                memcpy(f->ndr_value, f_ndr[j][1], f->ndr_value_len + 1);
                break;
            }
}

static int fake_take(const char *domain, const bs_ndr_rule *rule)
{
    int i;

    f_takes++;
    for (i = 0; i < 8; i++) {
        if (!f_budget_domain[i][0])
            snprintf(f_budget_domain[i], sizeof(f_budget_domain[i]), "%s", domain);
        if (strcmp(f_budget_domain[i], domain) == 0)
            return ++f_budget_used[i] <= (int)rule->limit;
    }
    return -1;
}

/* ---- request building ---- */
static char reqbuf[8192];
static bs_proto_parser parser;

static void build(const char *state, const char *sender, const char *rcpt, const char *client)
{
    size_t used;
    int n = snprintf(reqbuf, sizeof(reqbuf),
                     "request=smtpd_access_policy\nprotocol_state=%s\nprotocol_name=ESMTP\n"
                     "helo_name=helo.example\nqueue_id=\nsender=%s\nrecipient=%s\n"
                     "client_address=%s\nclient_name=mx.example\ninstance=1.2.3\n\n",
                     state, sender, rcpt, client);
    bs_proto_reset(&parser);
    if (bs_proto_feed(&parser, reqbuf, (size_t)n, &used) != BS_PROTO_DONE)
        fprintf(stderr, "test request did not parse\n");
}

/* run - one request through the rules with the fake store */
static bs_decision d;
static int run(const bs_config *cfg, const char *state, const char *sender, const char *rcpt,
               const char *client)
{
    bs_lookup q;
    bs_facts f;
    int step;

    build(state, sender, rcpt, client);
    memset(&d, 0, sizeof(d));
    step = bs_decide_begin(&d, cfg, &parser, &q);
    if (step == BS_DECIDE_LOOKUP) {
        if (f_fail) {
            bs_decide_fallback(&d, cfg, BS_WHY_REDIS_ERROR);
            return d.why;
        }
        fake_lookup(&q, &f);
        step = bs_decide_facts(&d, cfg, &f, &q);
        /* a blocked client: the exempt SET; then, or else, an unknown user:
         * the directory (after the harvest check, when there is one); each
         * asked at most once */
        for (int more = 0; step == BS_DECIDE_LOOKUP || step == BS_DECIDE_HARVEST; more++) {
            if (step == BS_DECIDE_HARVEST) {
                CHECK_EQ_INT(f_grey_checks, 0);
                CHECK(d.network[0] != 0);
                f_grey_checks++;
                step = bs_decide_harvest(&d, cfg, f_grey, &q);
                continue;
            }
            CHECK(more < 3);
            CHECK(!q.domain && !q.client_key && !q.nndr);
            CHECK((q.nexempt > 0) != (q.directory != NULL));
            if (f_fail_second) {
                bs_decide_fallback(&d, cfg, BS_WHY_REDIS_TIMEOUT);
                return d.why;
            }
            fake_lookup(&q, &f);
            step = bs_decide_facts(&d, cfg, &f, &q);
        }
        if (step == BS_DECIDE_NDR_TAKE)
            step = bs_decide_taken(&d, cfg, fake_take(d.rcpt.domain, &d.ndr_rule));
    }
    CHECK_EQ_INT(step, BS_DECIDE_DONE);
    return d.why;
}

static const char *reply(const bs_config *cfg)
{
    static char out[BS_REPLY_MAX];
    bs_decide_reply(&d, cfg, out);
    return out;
}

/* check_fallback_defer - the last answer was on_redis_error = defer */
static void check_fallback_defer(const bs_config *cfg)
{
    CHECK_EQ_STR(reply(cfg),
                 "action=DEFER_IF_PERMIT Recipient verification temporarily unavailable\n\n");
    CHECK(!d.note_invalid);
}

static void seed(void)
{
    fake_reset();
    f_domains[0] = "example.com";
    f_domains[1] = "catchall.example";
    f_rcpt[0][0] = "example.com";
    f_rcpt[0][1] = "alice";
    f_rcpt[1][0] = "example.com";
    f_rcpt[1][1] = "bob-x";
    f_rcpt[2][0] = "catchall.example";
    f_rcpt[2][1] = "*";
}

static void test_recipients(bs_config *cfg)
{
    seed();
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "alice@example.com", "192.0.2.1"),
                 BS_WHY_VALID);
    CHECK_EQ_STR(reply(cfg), "action=DUNNO\n\n");
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "Alice@EXAMPLE.com.", "192.0.2.1"),
                 BS_WHY_VALID);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "alice+tag@example.com", "192.0.2.1"),
                 BS_WHY_VALID);
    CHECK(!d.note_invalid);
    /* the full local part is tried first: "bob-x" is a user, "-" no delimiter */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "bob-x@example.com", "192.0.2.1"),
                 BS_WHY_VALID);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    /* Postfix adds "<rcpt>: Recipient address rejected: " itself */
    CHECK_EQ_STR(reply(cfg), "action=550 5.1.1 User unknown\n\n");
    CHECK(d.note_invalid);
    CHECK_EQ_STR(d.client_key, "192.0.2.1");
    /* extension of an unknown user does not help */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "nobody+alice@example.com", "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "anyone@catchall.example", "192.0.2.1"),
                 BS_WHY_VALID);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "x@other.example", "192.0.2.1"),
                 BS_WHY_UNPROTECTED);
    CHECK_EQ_INT(run(cfg, "MAIL", "s@remote.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_NOT_RCPT);
    CHECK_EQ_INT(f_lookups, 10); /* 8 requests; the 2 unknown users ask for the directory */
    CHECK_EQ_INT(f_dir_lookups, 2);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "postmaster", "192.0.2.1"), BS_WHY_BAD_RCPT);
    /* an address literal is an address, not ours */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "x@[192.0.2.9]", "192.0.2.1"),
                 BS_WHY_UNPROTECTED);
    /* a null sender to a protected domain is recipient-validated, not NDR */
    CHECK_EQ_INT(run(cfg, "RCPT", "", "nobody@example.com", "192.0.2.1"), BS_WHY_UNKNOWN_USER);
    CHECK_EQ_INT(run(cfg, "RCPT", "", "alice@example.com", "192.0.2.1"), BS_WHY_VALID);
}

/* seed_ndr - seed(), and an NDR hash of nested suffixes (allow, deny, the
 * limit given) plus one more entry */
static void seed_ndr(const char *limit, const char *last, const char *last_value)
{
    seed();
    f_ndr[0][0] = "a.b.example.org";
    f_ndr[0][1] = "allow";
    f_ndr[1][0] = ".b.example.org";
    f_ndr[1][1] = "deny";
    f_ndr[2][0] = ".example.org";
    f_ndr[2][1] = limit;
    f_ndr[3][0] = last;
    f_ndr[3][1] = last_value;
}

static void test_ndr(bs_config *cfg)
{
    seed_ndr("limit 2/1h", "*", "ALLOW");

    CHECK_EQ_INT(run(cfg, "RCPT", "", "v@a.b.example.org", "192.0.2.1"), BS_WHY_NDR_ALLOW);
    CHECK_EQ_STR(bs_decide_ndr_match(&d), "a.b.example.org");
    CHECK_EQ_INT(run(cfg, "RCPT", "", "v@c.b.example.org", "192.0.2.1"), BS_WHY_NDR_DENY);
    CHECK_EQ_STR(bs_decide_ndr_match(&d), ".b.example.org");
    CHECK_EQ_STR(reply(cfg), "action=550 5.7.1 Delivery status notifications to this domain are "
                             "not accepted\n\n");
    /* ".b.example.org" does not match "b.example.org" itself */
    CHECK_EQ_INT(run(cfg, "RCPT", "", "v@b.example.org", "192.0.2.1"), BS_WHY_NDR_UNDER);
    CHECK_EQ_STR(bs_decide_ndr_match(&d), ".example.org");
    CHECK_EQ_INT(run(cfg, "RCPT", "", "w@b.example.org", "192.0.2.1"), BS_WHY_NDR_UNDER);
    CHECK_EQ_INT(run(cfg, "RCPT", "", "x@b.example.org", "192.0.2.1"), BS_WHY_NDR_LIMIT);
    CHECK(strstr(reply(cfg), "Too many delivery status notifications") != NULL);
    /* the budget is per recipient domain */
    CHECK_EQ_INT(run(cfg, "RCPT", "", "x@z.example.org", "192.0.2.1"), BS_WHY_NDR_UNDER);
    CHECK_EQ_INT(run(cfg, "RCPT", "", "v@elsewhere.net", "192.0.2.1"), BS_WHY_NDR_ALLOW);
    CHECK_EQ_STR(bs_decide_ndr_match(&d), "*");
    /* a normal sender is not subject to NDR policy */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "v@c.b.example.org", "192.0.2.1"),
                 BS_WHY_UNPROTECTED);
    /* no entry: ndr_default (deny by default) */
    f_ndr[3][0] = NULL;
    CHECK_EQ_INT(run(cfg, "RCPT", "", "v@elsewhere.net", "192.0.2.1"), BS_WHY_NDR_DENY);
    CHECK_EQ_STR(bs_decide_ndr_match(&d), "ndr_default");
    cfg->ndr_default.action = BS_NDR_ALLOW;
    CHECK_EQ_INT(run(cfg, "RCPT", "", "v@elsewhere.net", "192.0.2.1"), BS_WHY_NDR_ALLOW);
    /* an unusable value falls back to ndr_default */
    f_ndr[3][0] = "*";
    f_ndr[3][1] = "denny";
    CHECK_EQ_INT(run(cfg, "RCPT", "", "v@elsewhere.net", "192.0.2.1"), BS_WHY_NDR_ALLOW);
    CHECK_EQ_STR(bs_decide_ndr_match(&d), "ndr_default");
    cfg->ndr_default.action = BS_NDR_DENY;
}

/* Every form Postfix accepts and routes to a domain is looked up as the
 * canonical one: the protected-domain check and the NDR policy alike. */
static void test_recipient_forms(bs_config *cfg)
{
    static const char *const known[] = {
        "alice@xn--bcher-kva.example",
        "alice@b\xc3\xbc"
        "cher.example",
        "Alice@B\xc3\x9c"
        "CHER.Example.",
        "alice@bu\xcc\x88"
        "cher.example",
        "alice@b\xc3\xbc"
        "cher\xe3\x80\x82"
        "example",
    };
    size_t i;

    seed();
    f_domains[2] = "xn--bcher-kva.example";
    f_rcpt[3][0] = "xn--bcher-kva.example";
    f_rcpt[3][1] = "alice";
    for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", known[i], "192.0.2.1"), BS_WHY_VALID);
        CHECK_EQ_STR(d.rcpt.domain, "xn--bcher-kva.example");
    }
    /* an unknown user at the UTF-8 form of a protected domain: refused */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example",
                     "user@b\xc3\xbc"
                     "cher.example",
                     "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    CHECK_EQ_STR(reply(cfg), "action=550 5.1.1 User unknown\n\n");
    CHECK(d.note_invalid);
    CHECK_EQ_INT(run(cfg, "RCPT", "",
                     "user@B\xc3\x9c"
                     "CHER.example",
                     "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    /* quoted local part (Postfix sends it unquoted), trailing dot, case */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@remote.example", "\"a@b\"@EXAMPLE.com.", "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    CHECK_EQ_STR(d.rcpt.domain, "example.com");

    /* "*" deny reaches bounces to literals and UTF-8 domains */
    f_ndr[0][0] = "*";
    f_ndr[0][1] = "deny";
    CHECK_EQ_INT(run(cfg, "RCPT", "", "x@remote.example", "192.0.2.1"), BS_WHY_NDR_DENY);
    CHECK_EQ_INT(run(cfg, "RCPT", "", "x@[192.0.2.5]", "192.0.2.1"), BS_WHY_NDR_DENY);
    CHECK_EQ_STR(bs_decide_ndr_match(&d), "*");
    CHECK_EQ_INT(d.nndr, 2); /* "[192.0.2.5]", "*": a literal has no parents */
    CHECK_EQ_STR(bs_decide_ndr_field(&d, 0), "[192.0.2.5]");
    CHECK_EQ_STR(reply(cfg), "action=550 5.7.1 Delivery status notifications to this domain are "
                             "not accepted\n\n");
    CHECK_EQ_INT(run(cfg, "RCPT", "", "x@[IPv6:2001:DB8::1]", "192.0.2.1"), BS_WHY_NDR_DENY);
    CHECK_EQ_STR(bs_decide_ndr_field(&d, 0), "[ipv6:2001:db8::1]");
    CHECK_EQ_INT(run(cfg, "RCPT", "",
                     "user@b\xc3\xbc"
                     "cher.remote.example",
                     "192.0.2.1"),
                 BS_WHY_NDR_DENY);
    CHECK_EQ_STR(bs_decide_ndr_field(&d, 0), "xn--bcher-kva.remote.example");
    /* the schema names literals exactly, and UTF-8 domains by A-label */
    memcpy(f_ndr[1], (const char *[2]){"[192.0.2.5]", "allow"}, sizeof(f_ndr[1]));
    memcpy(f_ndr[2], (const char *[2]){".xn--bcher-kva.remote.example", "allow"}, sizeof(f_ndr[2]));
    CHECK_EQ_INT(run(cfg, "RCPT", "", "x@[192.0.2.5]", "192.0.2.1"), BS_WHY_NDR_ALLOW);
    CHECK_EQ_STR(bs_decide_ndr_match(&d), "[192.0.2.5]");
    CHECK_EQ_INT(run(cfg, "RCPT", "", "x@[192.0.2.6]", "192.0.2.1"), BS_WHY_NDR_DENY);
    CHECK_EQ_INT(run(cfg, "RCPT", "",
                     "x@mx.B\xc3\x9c"
                     "cher.remote.example",
                     "192.0.2.1"),
                 BS_WHY_NDR_ALLOW);
    CHECK(!d.unreadable);
}

/* A bounce whose recipient domain cannot be read is decided by "*" (then
 * ndr_default), never waved through as a bad recipient. */
static void test_unreadable(bs_config *cfg)
{
    static const char *const unreadable[] = {
        "x@b\xfc"
        "cher.example", /* Latin-1 */
        "x@b\xc3"
        "cher.example", /* truncated UTF-8 */
        "x@[192.0.2.256]",
        "x@[tag:content]",
        "x@",
        "x@bad..example",
        "x@-b\xc3\xbc.example",
        "no\x01"
        "body@[1.2.3]",
    };
    char line[1024];
    size_t i;

    seed();
    f_ndr[0][0] = "*";
    f_ndr[0][1] = "deny";
    for (i = 0; i < sizeof(unreadable) / sizeof(unreadable[0]); i++) {
        CHECK_EQ_INT(run(cfg, "RCPT", "", unreadable[i], "192.0.2.1"), BS_WHY_NDR_DENY);
        CHECK(d.unreadable);
        CHECK_EQ_STR(bs_decide_ndr_match(&d), "*");
        CHECK_EQ_INT(d.nndr, 1);
    }
    CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
    CHECK(strstr(line, "reason=ndr_deny ndr_entry=* recipient=unreadable") != NULL);
    CHECK(strstr(line, "to=<no\\x01body@[1.2.3]>") != NULL);
    /* "*" allow lets them through, logged; no "*": ndr_default (deny) */
    f_ndr[0][1] = "allow";
    CHECK_EQ_INT(run(cfg, "RCPT", "", unreadable[0], "192.0.2.1"), BS_WHY_NDR_ALLOW);
    CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
    f_ndr[0][0] = NULL;
    CHECK_EQ_INT(run(cfg, "RCPT", "", unreadable[0], "192.0.2.1"), BS_WHY_NDR_DENY);
    CHECK_EQ_STR(bs_decide_ndr_match(&d), "ndr_default");
    /* a "*" limit: one budget shared by every unreadable recipient */
    f_ndr[0][0] = "*";
    f_ndr[0][1] = "limit 1/1h";
    CHECK_EQ_INT(run(cfg, "RCPT", "", unreadable[0], "192.0.2.1"), BS_WHY_NDR_UNDER);
    CHECK_EQ_INT(run(cfg, "RCPT", "", unreadable[2], "192.0.2.1"), BS_WHY_NDR_LIMIT);
    CHECK_EQ_INT(run(cfg, "RCPT", "", "x@fine.example", "192.0.2.1"), BS_WHY_NDR_UNDER);
    /* a blocked client stays blocked */
    f_blocked[0] = "192.0.2.66";
    CHECK_EQ_INT(run(cfg, "RCPT", "", unreadable[0], "192.0.2.66"), BS_WHY_BLOCKED);
    /* not a bounce, or unqualified (local: Postfix appends $myorigin) */
    f_ndr[0][1] = "deny";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", unreadable[0], "192.0.2.1"), BS_WHY_BAD_RCPT);
    CHECK(!d.unreadable);
    CHECK_EQ_INT(run(cfg, "RCPT", "", "postmaster", "192.0.2.1"), BS_WHY_BAD_RCPT);
    CHECK(!d.unreadable);
}

static void test_clients(bs_config *cfg)
{
    seed();
    f_blocked[0] = "192.0.2.66";
    f_blocked[1] = "2001:db8:1:2::/64";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.66"),
                 BS_WHY_BLOCKED);
    CHECK_EQ_STR(reply(cfg), "action=450 4.7.1 Too many invalid recipients from your host, try "
                             "again later\n\n");
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "x@unprotected.example", "2001:db8:1:2::99"),
                 BS_WHY_BLOCKED);
    CHECK_EQ_STR(d.client_key, "2001:db8:1:2::/64");
    CHECK_EQ_STR(d.client_ip, "2001:db8:1:2::99");
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "2001:db8:1:3::99"),
                 BS_WHY_VALID);
    /* exempt by the SET (address or network) */
    f_exempt[0] = "192.0.2.66";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.66"), BS_WHY_VALID);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.66"),
                 BS_WHY_UNKNOWN_USER);
    CHECK(!d.note_invalid); /* blocked, so the exempt SET was read: known exempt */
    /* not blocked: the SET is not read on the common path; the store's
     * counting script skips exempt-SET members itself */
    f_exempt[2] = "192.0.2.67";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.67"),
                 BS_WHY_UNKNOWN_USER);
    CHECK(d.note_invalid);
    CHECK_EQ_STR(d.client_ip, "192.0.2.67");
    f_exempt[2] = NULL;
    f_exempt[1] = "2001:db8:1:2::/64";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "2001:db8:1:2::5"),
                 BS_WHY_VALID);
    /* exempt by config CIDR (127.0.0.0/8 by default): never counted, and the
     * store is not even asked about the client */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "127.0.0.1"),
                 BS_WHY_UNKNOWN_USER);
    CHECK(!d.note_invalid);
    CHECK(d.cidr_exempt);
    /* NDR policy still applies to exempt clients */
    CHECK_EQ_INT(run(cfg, "RCPT", "", "v@elsewhere.net", "127.0.0.1"), BS_WHY_NDR_DENY);
    /* unknown client address: no key, not counted */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "unknown"),
                 BS_WHY_UNKNOWN_USER);
    CHECK(!d.note_invalid);
    /* rate tracking disabled */
    cfg->invalid_limit = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.9"),
                 BS_WHY_UNKNOWN_USER);
    CHECK(!d.note_invalid);
    cfg->invalid_limit = 20;
}

static void test_report_and_fallback(bs_config *cfg)
{
    char line[1024];

    seed();
    cfg->mode = BS_MODE_REPORT;
    run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.1");
    /* WARN text is logged by Postfix as it is: the full client-visible text */
    CHECK_EQ_STR(reply(cfg), "action=WARN would reject: 550 5.1.1 <nobody@example.com>: "
                             "Recipient address rejected: User unknown\n\n");
    CHECK(d.note_invalid); /* still counted in report mode */
    CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
    CHECK(strstr(line, "NOQUEUE: reject_warning: RCPT from mx.example[192.0.2.1]: ") == line);
    f_blocked[0] = "192.0.2.1";
    run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.1");
    CHECK(strncmp(reply(cfg), "action=WARN would defer: 450 4.7.1 ", 35) == 0);
    cfg->mode = BS_MODE_ENFORCE;
    run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.2");
    CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
    CHECK_EQ_STR(line, "NOQUEUE: reject: RCPT from mx.example[192.0.2.2]: 550 5.1.1 "
                       "<nobody@example.com>: Recipient address rejected: User unknown; "
                       "from=<s@x.example> to=<nobody@example.com> proto=ESMTP "
                       "helo=<helo.example> reason=unknown_user");
    run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.2");
    CHECK_EQ_INT(bs_decide_log_line(&d, cfg, line, sizeof(line)), 0);

    f_fail = 1;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.2"),
                 BS_WHY_REDIS_ERROR);
    check_fallback_defer(cfg);
    cfg->on_redis_error = BS_ON_ERROR_DUNNO;
    run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.2");
    CHECK_EQ_STR(reply(cfg), "action=DUNNO\n\n");
    cfg->on_redis_error = BS_ON_ERROR_DEFER;
    f_fail = 0;
}

/* harvest detection: a protected domain under attack */
static void test_harvest(bs_config *cfg)
{
    static const char grey[] =
        "action=450 4.7.1 Recipient verification delayed, try again later\n\n";
    char valid_reply[BS_REPLY_MAX], line[1024];

    seed();
    /* not under attack: counted towards the threshold, no check; a valid
     * recipient marks the network known */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.7"),
                 BS_WHY_UNKNOWN_USER);
    CHECK(d.note_invalid && d.note_harvest && !d.note_known);
    CHECK_EQ_INT(d.invalid_limit, cfg->invalid_limit);
    CHECK_EQ_STR(d.network, "192.0.2.0/24");
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.7"), BS_WHY_VALID);
    CHECK(!d.note_invalid && !d.note_harvest && d.note_known);
    CHECK_EQ_INT(f_grey_checks, 0);
    /* an unprotected domain is never counted */
    run(cfg, "RCPT", "s@x.example", "x@other.example", "192.0.2.7");
    CHECK(!d.note_harvest && !d.note_known);

    f_attacked[0] = "example.com";
    f_dir_lookups = 0;
    /* DEFER: the same bytes for a valid and an unknown user */
    f_grey = BS_GREY_DEFER;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.7"),
                 BS_WHY_HARVEST_GREY);
    CHECK_EQ_INT(f_grey_checks, 1);
    CHECK_EQ_STR(reply(cfg), grey);
    snprintf(valid_reply, sizeof(valid_reply), "%s", reply(cfg));
    CHECK(!d.note_invalid && !d.note_harvest && !d.note_known); /* no known on a defer */
    CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
    CHECK(strstr(line, "NOQUEUE: defer: RCPT from mx.example[192.0.2.7]: 450 4.7.1 "
                       "<alice@example.com>: Recipient address rejected: Recipient verification "
                       "delayed, try again later; ") == line);
    CHECK(strstr(line, " reason=harvest_greylist") != NULL);
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.7"),
                 BS_WHY_HARVEST_GREY);
    CHECK_EQ_STR(reply(cfg), valid_reply);
    /* an unknown recipient still counts, with the lowered client limit */
    CHECK(d.note_invalid && d.note_harvest);
    CHECK_EQ_INT(d.invalid_limit, cfg->harvest_client_limit);
    CHECK(d.invalid_window_ms == cfg->harvest_client_window_ms);
    /* counted only once the directory is known to be trusted */
    CHECK_EQ_INT(f_dir_lookups, 1);
    /* an attacked domain whose directory is empty: the same 450, nothing
     * counted (every real user would count, and block the real MTAs) */
    int slot = f_domains[2] ? 3 : 2; /* the first free one */
    f_domains[slot] = "empty.example";
    f_attacked[1] = "empty.example";
    f_dir_lookups = f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@empty.example", "192.0.2.7"),
                 BS_WHY_HARVEST_GREY);
    CHECK_EQ_STR(reply(cfg), grey);
    CHECK_EQ_INT(f_dir_lookups, 1);
    CHECK(!d.note_invalid && !d.note_harvest);
    f_domains[slot] = NULL;
    f_attacked[1] = NULL;
    f_dir_lookups = 0;

    /* KNOWN and PASS: the normal rules, counted with the lowered limit */
    f_grey = BS_GREY_KNOWN;
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.8"), BS_WHY_VALID);
    CHECK(d.note_known && !d.note_invalid);
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.8"),
                 BS_WHY_UNKNOWN_USER);
    CHECK_EQ_INT(f_dir_lookups, 1); /* the directory check after the harvest check */
    CHECK(d.note_invalid && d.note_harvest && !d.note_known);
    CHECK_EQ_INT(d.invalid_limit, cfg->harvest_client_limit);
    f_grey = BS_GREY_PASS;
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.9"), BS_WHY_VALID);
    CHECK_EQ_STR(reply(cfg), "action=DUNNO\n\n");
    CHECK(d.note_known);
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.9"),
                 BS_WHY_UNKNOWN_USER);
    CHECK_EQ_STR(reply(cfg), "action=550 5.1.1 User unknown\n\n");
    CHECK(d.note_invalid && d.note_harvest);
    /* client_limit 0: the [ratelimit] limit stays */
    cfg->harvest_client_limit = 0;
    f_grey_checks = 0;
    run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.9");
    CHECK_EQ_INT(d.invalid_limit, cfg->invalid_limit);
    cfg->harvest_client_limit = 3;

    /* a store error on the check: the on_redis_error fallback, nothing counted */
    f_grey = -1;
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.9"),
                 BS_WHY_REDIS_ERROR);
    check_fallback_defer(cfg);
    CHECK(!d.note_harvest && !d.note_known);

    /* defer mode: its own reason, the same text */
    f_grey = BS_GREY_DEFER;
    cfg->harvest_new_clients = BS_HARVEST_DEFER;
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.10"),
                 BS_WHY_HARVEST_DEFER);
    CHECK_EQ_STR(reply(cfg), grey);
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.10"),
                 BS_WHY_HARVEST_DEFER);
    CHECK_EQ_STR(reply(cfg), grey);
    CHECK(d.note_invalid && d.note_harvest);
    CHECK_EQ_STR(bs_why_name(BS_WHY_HARVEST_DEFER), "harvest_defer");
    CHECK_EQ_STR(bs_action_name(bs_why_action(BS_WHY_HARVEST_GREY)), "defer");

    /* normal mode: no check, only the lowered limit */
    cfg->harvest_new_clients = BS_HARVEST_NORMAL;
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.11"), BS_WHY_VALID);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.11"),
                 BS_WHY_UNKNOWN_USER);
    CHECK_EQ_INT(f_grey_checks, 0);
    CHECK(d.note_invalid && d.note_harvest);
    CHECK_EQ_INT(d.invalid_limit, cfg->harvest_client_limit);
    cfg->harvest_new_clients = BS_HARVEST_GREYLIST;

    /* exempt clients skip the step and are not counted */
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "127.0.0.1"),
                 BS_WHY_UNKNOWN_USER); /* default exempt 127.0.0.0/8 */
    CHECK(!d.note_invalid && !d.note_harvest);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "127.0.0.1"), BS_WHY_VALID);
    CHECK(!d.note_known);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "unknown"), BS_WHY_VALID);
    CHECK_EQ_INT(f_grey_checks, 0);
    /* a blocked client in the exempt SET: known exempt, no check */
    f_blocked[0] = "192.0.2.12";
    f_exempt[0] = "192.0.2.12";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.12"), BS_WHY_VALID);
    CHECK_EQ_INT(f_grey_checks, 0);
    /* a blocked client stays blocked first */
    f_exempt[0] = NULL;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.12"),
                 BS_WHY_BLOCKED);
    CHECK_EQ_INT(f_grey_checks, 0);
    f_blocked[0] = NULL;

    /* report mode: "WARN would defer", the mail passes, counting goes on */
    cfg->mode = BS_MODE_REPORT;
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.13"),
                 BS_WHY_HARVEST_GREY);
    CHECK_EQ_STR(reply(cfg), "action=WARN would defer: 450 4.7.1 <nobody@example.com>: Recipient "
                             "address rejected: Recipient verification delayed, try again "
                             "later\n\n");
    CHECK(d.note_invalid && d.note_harvest);
    CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
    CHECK(strstr(line, "NOQUEUE: reject_warning: ") == line);
    cfg->mode = BS_MODE_ENFORCE;

    /* threshold 0: harvest detection off, the table ignored */
    cfg->harvest_limit = 0;
    f_grey_checks = 0;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.14"),
                 BS_WHY_UNKNOWN_USER);
    CHECK(d.note_invalid && !d.note_harvest);
    CHECK_EQ_INT(d.invalid_limit, cfg->invalid_limit);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.14"), BS_WHY_VALID);
    CHECK(!d.note_known);
    CHECK_EQ_INT(f_grey_checks, 0);
    cfg->harvest_limit = 200;
    /* another domain is not under attack */
    f_grey_checks = 0;
    run(cfg, "RCPT", "s@x.example", "nobody@catchall.example", "192.0.2.15");
    CHECK_EQ_INT(f_grey_checks, 0);
    f_attacked[0] = NULL;
}

/* the directory check before a 550 5.1.1: empty, missing, stale, fresh */
static void test_directory(bs_config *cfg)
{
    static const char empty_text[] = "Recipient directory of this domain is empty, try again later";
    char line[1024], want[512];
    bs_facts f;
    int dirs;

    seed();
    f_domains[2] = "empty.example"; /* protected, no rcpt:empty.example */
    /* given a protected domain without any recipient: a 4xx, never 550 */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@empty.example", "192.0.2.1"),
                 BS_WHY_DIR_EMPTY);
    snprintf(want, sizeof(want), "action=DEFER_IF_PERMIT 4.7.1 %s\n\n", empty_text);
    CHECK_EQ_STR(reply(cfg), want);
    CHECK(!d.note_invalid);
    CHECK_EQ_INT(d.action, BS_ACT_DEFER_DIR);
    CHECK_EQ_STR(bs_action_name(d.action), "defer");
    CHECK_EQ_STR(bs_why_name(d.why), "directory_empty");
    CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
    CHECK(strstr(line,
                 "NOQUEUE: defer: RCPT from mx.example[192.0.2.1]: 450 4.7.1 "
                 "<alice@empty.example>: Recipient address rejected: Recipient directory") == line);
    CHECK(strstr(line, " reason=directory_empty") != NULL);
    /* a null sender too (recipient validation, not NDR policy) */
    CHECK_EQ_INT(run(cfg, "RCPT", "", "x@empty.example", "192.0.2.1"), BS_WHY_DIR_EMPTY);
    /* one recipient added: unknown users are refused again */
    f_rcpt[3][0] = "empty.example";
    f_rcpt[3][1] = "bob";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@empty.example", "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    CHECK(d.note_invalid);
    /* a catch-all-only set is not empty, and is never asked about */
    dirs = f_dir_lookups;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "any@catchall.example", "192.0.2.1"),
                 BS_WHY_VALID);
    CHECK_EQ_INT(f_dir_lookups, dirs);
    /* valid users and unprotected domains never cost a second lookup */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "bob@empty.example", "192.0.2.1"), BS_WHY_VALID);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "a@other.example", "192.0.2.1"),
                 BS_WHY_UNPROTECTED);
    CHECK_EQ_INT(f_dir_lookups, dirs);

    /* max_directory_age off: the sync record is not even read */
    f_sync[0][0] = "example.com";
    f_sync[0][1] = "1600000000"; /* years before f_now */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    /* never synced, max_directory_age off: 550 as before (import by hand) */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@empty.example", "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);

    cfg->max_directory_age_ms = 86400 * 1000ULL;
    /* stale: 450 4.7.1, not counted */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_DIR_STALE);
    CHECK_EQ_STR(reply(cfg), "action=450 4.7.1 Recipient directory is out of date\n\n");
    CHECK(!d.note_invalid);
    CHECK_EQ_STR(bs_why_name(d.why), "directory_stale");
    CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
    CHECK(strstr(line, "NOQUEUE: defer: ") == line && strstr(line, " reason=directory_stale"));
    /* known users of a stale domain still pass */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.1"), BS_WHY_VALID);
    /* exactly max_directory_age old: still fresh; a second more: stale */
    f_sync[0][1] = "1699913600";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    CHECK(d.note_invalid);
    f_sync[0][1] = "1699913599";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_DIR_STALE);
    /* fresh (an hour ago), and a sync time ahead of our clock: 550 */
    f_sync[0][1] = "1699996400";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    CHECK_EQ_STR(reply(cfg), "action=550 5.1.1 User unknown\n\n");
    f_sync[0][1] = "1700000100";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_UNKNOWN_USER);
    /* never synced, max_directory_age set: stale (documented: opt in) */
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@empty.example", "192.0.2.1"),
                 BS_WHY_DIR_STALE);
    /* empty wins over stale: its text says what to fix */
    f_rcpt[3][0] = NULL;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@empty.example", "192.0.2.1"),
                 BS_WHY_DIR_EMPTY);

    /* Redis fails in the second lookup: on_redis_error, never 550 */
    f_fail_second = 1;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_REDIS_TIMEOUT);
    check_fallback_defer(cfg);
    f_fail_second = 0;

    /* a blocked client of the exempt SET: exempt lookup, then directory */
    f_blocked[0] = "192.0.2.66";
    f_exempt[0] = "192.0.2.66";
    dirs = f_dir_lookups;
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@empty.example", "192.0.2.66"),
                 BS_WHY_DIR_EMPTY);
    CHECK_EQ_INT(f_dir_lookups, dirs + 1);

    /* report mode: "WARN would defer", with the client-visible text */
    cfg->mode = BS_MODE_REPORT;
    f_sync[0][1] = "1600000000";
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@empty.example", "192.0.2.1"),
                 BS_WHY_DIR_EMPTY);
    snprintf(want, sizeof(want),
             "action=WARN would defer: 450 4.7.1 <nobody@empty.example>: Recipient address "
             "rejected: %s\n\n",
             empty_text);
    CHECK_EQ_STR(reply(cfg), want);
    CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
    CHECK(strstr(line, "NOQUEUE: reject_warning: ") == line);
    CHECK_EQ_INT(run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.1"),
                 BS_WHY_DIR_STALE);
    CHECK(strncmp(reply(cfg), "action=WARN would defer: 450 4.7.1 <nobody@example.com>", 55) == 0);
    cfg->mode = BS_MODE_ENFORCE;

    /* facts given whole (backstopctl explain: q NULL, no second lookup) */
    run(cfg, "RCPT", "s@x.example", "nobody@empty.example", "192.0.2.1");
    bs_decide_begin(&d, cfg, &parser, &(bs_lookup){0});
    memset(&f, 0, sizeof(f));
    f.ndr_index = -1;
    f.protected_domain = 1;
    f.dir_known = 1;
    CHECK_EQ_INT(bs_decide_facts(&d, cfg, &f, NULL), BS_DECIDE_DONE);
    CHECK_EQ_INT(d.why, BS_WHY_DIR_EMPTY);
    bs_decide_begin(&d, cfg, &parser, &(bs_lookup){0});
    f.dir_size = 1;
    f.dir_now = f_now;
    f.dir_synced_at = f_now - 60;
    CHECK_EQ_INT(bs_decide_facts(&d, cfg, &f, NULL), BS_DECIDE_DONE);
    CHECK_EQ_INT(d.why, BS_WHY_UNKNOWN_USER);
    cfg->max_directory_age_ms = 0;
}

static void test_hostile(bs_config *cfg)
{
    static char big[1900];
    char rcpt[2000];
    const char *r;
    size_t i;

    seed();
    /* control characters and bytes from the wire never reach a reply raw */
    /* an unusable local part at a protected domain is an unknown user (it
     * must not be accepted and bounced later), unless the domain is catch-all */
    run(cfg, "RCPT", "s@x.example",
        "no\x01"
        "body\x7f@example.com",
        "192.0.2.1");
    CHECK_EQ_INT(d.why, BS_WHY_UNKNOWN_USER);
    CHECK(d.note_invalid);
    {
        bs_decision_text t;
        char line[1024];
        bs_decide_text(&d, &t);
        CHECK(strstr(t.to, "\\x01") != NULL && strstr(t.to, "\\x7f") != NULL);
        CHECK(bs_decide_log_line(&d, cfg, line, sizeof(line)) > 0);
        CHECK(strchr(line, '\x01') == NULL && strstr(line, "no\\x01body\\x7f@") != NULL);
    }
    run(cfg, "RCPT", "s@x.example",
        "no\x01"
        "body@catchall.example",
        "192.0.2.1");
    CHECK_EQ_INT(d.why, BS_WHY_VALID);
    run(cfg, "RCPT", "s@x.example",
        "no\x01"
        "body@unprotected.example",
        "192.0.2.1");
    CHECK_EQ_INT(d.why, BS_WHY_UNPROTECTED);
    run(cfg, "RCPT", "s@x.example", "nobody@bad..domain", "192.0.2.1");
    CHECK_EQ_INT(d.why, BS_WHY_BAD_RCPT);
    run(cfg, "RCPT", "s@x.example", "\xc3\xa9t\xc3\xa9@example.com", "192.0.2.1");
    r = reply(cfg);
    CHECK_EQ_INT(d.why, BS_WHY_UNKNOWN_USER);
    for (i = 0; r[i]; i++)
        CHECK(r[i] == '\n' || (r[i] >= 0x20 && r[i] < 0x7f));
    memset(big, 'a', sizeof(big) - 1);
    snprintf(rcpt, sizeof(rcpt), "%s@example.com", big);
    run(cfg, "RCPT", "s@x.example", rcpt, "192.0.2.1");
    CHECK_EQ_INT(d.why, BS_WHY_UNKNOWN_USER);
    CHECK(strlen(reply(cfg)) <= 7 + 512 + 2);
    cfg->mode = BS_MODE_REPORT; /* the longest reply: WARN with the full text */
    run(cfg, "RCPT", "s@x.example", rcpt, "192.0.2.1");
    CHECK(strlen(reply(cfg)) <= 7 + 512 + 2);
    CHECK_EQ_STR(reply(cfg) + strlen(reply(cfg)) - 2, "\n\n");
    cfg->mode = BS_MODE_ENFORCE;
    /* a long domain with many labels still gets "*" and the shortest parents */
    run(cfg, "RCPT", "", "v@a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.example.org", "192.0.2.1");
    CHECK(d.nndr == BS_NDR_MAX_FIELDS);
    CHECK_EQ_STR(bs_decide_ndr_field(&d, d.nndr - 1), "*");
    CHECK_EQ_STR(bs_decide_ndr_field(&d, d.nndr - 2), ".org");
    CHECK_EQ_STR(bs_decide_ndr_field(&d, 0), "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.example.org");
}

/* ---- the reply and the log line, byte for byte ----
 * Every verdict's reply and log line as the snprintf formatting of
 * backstop before issue 10's second round gave them (golden[], recorded
 * from it; one change since: a recipient too long for its copy ends in
 * "..." in the reply and the log line, where it was cut silently), and
 * the log line's truncation at every buffer size: the prefix that fits,
 * NUL-terminated, as snprintf truncates. */
static void build_raw(const char *text)
{
    size_t used;

    snprintf(reqbuf, sizeof(reqbuf), "%s", text);
    bs_proto_reset(&parser);
    if (bs_proto_feed(&parser, reqbuf, strlen(reqbuf), &used) != BS_PROTO_DONE)
        fprintf(stderr, "test request did not parse\n");
}

/* run_raw - run() for a request given whole (its facts from the fake store) */
static void run_raw(const bs_config *cfg, const char *text)
{
    bs_lookup q;
    bs_facts f;
    int step;

    build_raw(text);
    memset(&d, 0, sizeof(d));
    step = bs_decide_begin(&d, cfg, &parser, &q);
    while (step == BS_DECIDE_LOOKUP) {
        fake_lookup(&q, &f);
        step = bs_decide_facts(&d, cfg, &f, &q);
    }
    CHECK_EQ_INT(step, BS_DECIDE_DONE);
}

#define FORMAT_CASES 21
static const char *const golden[FORMAT_CASES][2] = {
#include "test_decide_golden.inc"
};

/* format_case - set up and decide case i */
static void format_case(bs_config *cfg, int i)
{
    static char big[1900];
    char rcpt[2000];

    seed_ndr("limit 1/1h", "report.example", "deny report");
    switch (i) {
    case 1: /* report mode */
    case 3:
        cfg->mode = BS_MODE_REPORT;
        break;
    case 9: /* empty directory */
        f_domains[2] = "empty.example";
        break;
    case 10: /* stale directory */
        cfg->max_directory_age_ms = 3600000;
        f_sync[0][0] = "example.com";
        f_sync[0][1] = "1600000000";
        break;
    case 12:
        cfg->harvest_new_clients = BS_HARVEST_DEFER;
        /* fall through */
    case 11:
        f_attacked[0] = "example.com";
        f_grey = BS_GREY_DEFER;
        break;
    case 14:
        cfg->on_redis_error = BS_ON_ERROR_DUNNO;
        /* fall through */
    case 13:
        f_fail = 1;
        break;
    case 15:
        f_mode[0][0] = "example.com";
        f_mode[0][1] = "report";
        break;
    case 16:
        f_mode[0][0] = "*";
        f_mode[0][1] = "report";
        break;
    }
    if (i == 2 || i == 3)
        f_blocked[0] = "192.0.2.1";
    switch (i) {
    case 2:
    case 3:
        run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.1");
        break;
    case 4:
        run(cfg, "RCPT", "", "v@c.b.example.org", "192.0.2.1");
        break;
    case 5:
        run(cfg, "RCPT", "", "v@a.b.example.org", "192.0.2.1");
        break;
    case 7: /* over the limit of 1 */
        run(cfg, "RCPT", "", "w@x.example.org", "192.0.2.1");
        /* fall through */
    case 6:
        run(cfg, "RCPT", "", "v@x.example.org", "192.0.2.1");
        break;
    case 8:
        run(cfg, "RCPT", "", "v@report.example", "2001:db8::1");
        break;
    case 9:
        run(cfg, "RCPT", "s@x.example", "alice@empty.example", "192.0.2.1");
        break;
    case 11:
    case 12:
        run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.7");
        break;
    case 17: /* a bounce to a domain that cannot be read */
        run(cfg, "RCPT", "", "v@bad..domain", "192.0.2.1");
        break;
    case 18: /* queue id, no client_name or protocol_name, bytes to escape */
        run_raw(cfg, "request=smtpd_access_policy\nprotocol_state=RCPT\nqueue_id=4Xyz12AB\n"
                     "helo_name=h\\ \xc3\xa9lo\nsender=s\x01@x.example\n"
                     "recipient=n\\o\x7f"
                     "body@example.com\nclient_address=::ffff:192.0.2.9\n\n");
        break;
    case 19: /* the longest recipient, in report mode */
        cfg->mode = BS_MODE_REPORT;
        memset(big, 'a', sizeof(big) - 1);
        snprintf(rcpt, sizeof(rcpt), "%s@example.com", big);
        run(cfg, "RCPT", "s@x.example", rcpt, "192.0.2.1");
        break;
    case 20:
        run(cfg, "RCPT", "s@x.example", "alice@example.com", "192.0.2.1");
        break;
    default: /* an unknown user */
        run(cfg, "RCPT", "s@x.example", "nobody@example.com", "192.0.2.2");
        break;
    }
}

/* c_literal - s as a C string literal on stdout (recording golden[]) */
static void c_literal(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if (*s == '\n')
            printf("\\n");
        else if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            printf("\\x%02x\"\"", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

/* the attributes the rules read: a name is taken whole (a lookalike of
 * the same length, differing in one byte anywhere, is not it), the first
 * of a name wins, and any order does */
static void test_attributes(bs_config *cfg)
{
    seed();
    run_raw(cfg, "client_addresS=192.0.2.98\nrequest=smtpd_access_policy\n"
                 "protocol_stbte=END-OF-MESSAGE\nsendeR=x@y.example\nsender=s@x.example\n"
                 "recipienT=alice@example.com\nqueue_Id=BAD\nrecjpient=bob-x@example.com\n"
                 "recipient=nobody@example.com\nsender=t@x.example\nhelo_namE=bad\n"
                 "Helo_name=bad\nclient_nAme=bad\nprotocol_namE=BAD\nqueue_id=Q1\n"
                 "xclient_address=192.0.2.97\nclient_address=192.0.2.5\n"
                 "client_address=192.0.2.6\nprotocol_name=ESMTP\nrecipient=alice@example.com\n"
                 "protocol_state=RCPT\nclient_name=mx.example\nhelo_name=h.example\n"
                 "protocol_state=DATA\n\n");
    CHECK_EQ_INT(d.why, BS_WHY_UNKNOWN_USER);
    CHECK_EQ_STR(d.to, "nobody@example.com");
    CHECK_EQ_STR(d.from, "s@x.example");
    CHECK_EQ_STR(d.client_addr, "192.0.2.5");
    CHECK_EQ_STR(d.client_key, "192.0.2.5");
    CHECK_EQ_STR(d.queue_id, "Q1");
    CHECK_EQ_STR(d.helo, "h.example");
    CHECK_EQ_STR(d.client_name, "mx.example");
    CHECK_EQ_STR(d.proto, "ESMTP");
    /* only lookalikes: nothing is read */
    run_raw(cfg, "request=smtpd_access_policy\nprotocol_statE=RCPT\n"
                 "recipienT=nobody@example.com\n\n");
    CHECK_EQ_INT(d.why, BS_WHY_NOT_RCPT);
    CHECK_EQ_STR(d.to, "");
}

static void test_formatting(bs_config *cfg)
{
    static char line[1504], part[1504], out[BS_REPLY_MAX];
    const int record = getenv("BACKSTOP_GOLDEN_RECORD") != NULL;
    const bs_config saved = *cfg;
    size_t n, m, sz;
    int i;

    for (i = 0; i < FORMAT_CASES; i++) {
        format_case(cfg, i);
        bs_decide_reply(&d, cfg, out);
        n = bs_decide_log_line(&d, cfg, line, sizeof(line));
        line[n] = 0;
        if (record) {
            printf("    {");
            c_literal(out);
            printf(",\n     ");
            c_literal(line);
            printf("},\n");
        } else {
            CHECK_EQ_STR(out, golden[i][0]);
            CHECK_EQ_STR(line, golden[i][1]);
        }
        for (sz = 1; n && sz <= n + 1; sz++) {
            memset(part, 'X', sizeof(part));
            m = bs_decide_log_line(&d, cfg, part, sz);
            CHECK_EQ_INT(m, n < sz - 1 ? n : sz - 1);
            CHECK(part[m] == 0 && memcmp(part, line, m) == 0);
        }
        *cfg = saved;
    }
}

int main(void)
{
    static bs_config cfg;

    bs_config_defaults(&cfg);
    CHECK_EQ_INT(cfg.ndr_default.action, BS_NDR_DENY);
    CHECK_EQ_INT(cfg.invalid_limit, 20);
    test_recipients(&cfg);
    test_ndr(&cfg);
    test_recipient_forms(&cfg);
    test_unreadable(&cfg);
    test_clients(&cfg);
    test_report_and_fallback(&cfg);
    test_directory(&cfg);
    test_harvest(&cfg);
    test_hostile(&cfg);
    test_formatting(&cfg);
    test_attributes(&cfg);
    return check_summary();
}
