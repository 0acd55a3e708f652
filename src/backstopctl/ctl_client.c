/*
 * ctl_client.c - block list|add|del, client, stats (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_block_list  SCAN block:* (the prefix glob-escaped), then GET and
 *                      PTTL of each, pipelined; sorted by client.
 *   bs_ctl_block_add   SET block:<client> REASON PX ms. CLIENT is made the
 *                      daemon's key by bs_client_key (IPv6: its
 *                      /ipv6_prefix network). Warns when the client is
 *                      exempt (the daemon ignores its block).
 *   bs_ctl_block_del   DEL; 1 when it was not blocked.
 *   bs_ctl_client      what the daemon knows of one client: block (reason,
 *                      time left), invalid recipients within the window
 *                      (ZCOUNT rate:<client> over (TIME - window, +inf], the
 *                      daemon's script keeps scores > TIME - window), and
 *                      exemption. 1 when the client is refused right now.
 *   bs_ctl_stats       HGETALL stats, sorted, aligned (--domain: ctl_mode.c).
 *   client and stats take --json: one object (ctl_json.c, backstopctl(8)).
 *
 * NEVER
 *   Blocks a client by a key the daemon would not look up.
 */
#include <stdlib.h>
#include <string.h>

#include "backstop/cidr.h"
#include "ctl.h"

#define BS_SCAN_COUNT "1000"
#define BS_REASON_MAX 200

/* glob_escape - a literal prefix for SCAN MATCH */
static void glob_escape(const char *s, char *out, size_t outsz)
{
    size_t n = 0;

    for (; *s && n + 3 < outsz; s++) {
        if (strchr("*?[]\\", *s))
            out[n++] = '\\';
        out[n++] = *s;
    }
    out[n] = 0;
}

/* One blocked client, for sorting. */
typedef struct block_row {
    char *client; /* owned */
    char reason[BS_REASON_MAX + 64];
    long long pttl;
} block_row;

static int row_order(const void *a, const void *b)
{
    return strcmp(((const block_row *)a)->client, ((const block_row *)b)->client);
}

/* scan_blocks - every block:* key; the rows (owned) or NULL with *n = 0 */
static block_row *scan_blocks(bs_ctl *c, size_t *n, int *rc)
{
    char pat[BS_CTL_KEY_MAX * 2], prefix[BS_CTL_KEY_MAX], cursor[32] = "0";
    size_t plen, cap = 0, i;
    block_row *rows = NULL;

    *n = 0;
    bs_ctl_key(c, prefix, sizeof(prefix), BS_KEY_BLOCK, NULL);
    plen = strlen(prefix);
    glob_escape(prefix, pat, sizeof(pat) - 2);
    strcat(pat, "*");
    do {
        redisReply *rep =
            bs_ctl_cmd(c, "SCAN", cursor, "MATCH", pat, "COUNT", BS_SCAN_COUNT, (char *)NULL);
        if (!rep || !bs_ctl_reply_ok(rep, REDIS_REPLY_ARRAY, "SCAN") || rep->elements != 2) {
            if (rep)
                freeReplyObject(rep);
            *rc = BS_CTL_FAIL;
            return rows;
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        for (i = 0; i < rep->element[1]->elements; i++) {
            const redisReply *k = rep->element[1]->element[i];
            if (k->len <= plen)
                continue;
            if (*n == cap) {
                block_row *grown = realloc(rows, (cap ? cap * 2 : 64) * sizeof(*rows));
                if (!grown)
                    break;
                rows = grown;
                cap = cap ? cap * 2 : 64;
            }
            memset(&rows[*n], 0, sizeof(rows[*n]));
            if (!(rows[*n].client = strndup(k->str + plen, k->len - plen)))
                break;
            (*n)++;
        }
        if (i < rep->element[1]->elements) {
            freeReplyObject(rep);
            bs_ctl_err("out of memory");
            *rc = BS_CTL_FAIL;
            return rows;
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
    return rows;
}

/* bs_ctl_block_list - SCAN, then GET+PTTL pipelined; sorted table */
int bs_ctl_block_list(bs_ctl *c, int argc, char **argv)
{
    char key[BS_CTL_KEY_MAX], left[32], shown[128];
    block_row *rows;
    size_t n, i, w = 6, shownrows = 0;
    int rc = 0;

    if (bs_ctl_connect(c) < 0)
        return BS_CTL_FAIL;
    rows = scan_blocks(c, &n, &rc);
    for (i = 0; rc == 0 && i < n; i++) {
        bs_ctl_key(c, key, sizeof(key), BS_KEY_BLOCK, rows[i].client);
        const char *get[] = {"GET", key}, *pttl[] = {"PTTL", key};
        if (bs_ctl_append(c, 2, get, NULL) < 0 || bs_ctl_append(c, 2, pttl, NULL) < 0)
            rc = BS_CTL_FAIL;
    }
    for (i = 0; rc == 0 && i < n; i++) {
        redisReply *g = bs_ctl_read(c), *t = g ? bs_ctl_read(c) : NULL;
        if (!t) {
            rc = BS_CTL_FAIL;
        } else {
            rows[i].pttl = t->type == REDIS_REPLY_INTEGER ? t->integer : -2;
            if (g->type == REDIS_REPLY_STRING)
                bs_ctl_safe(g->str, g->len, rows[i].reason, sizeof(rows[i].reason));
            else
                rows[i].pttl = -2; /* gone since SCAN, or not a string */
        }
        if (g)
            freeReplyObject(g);
        if (t)
            freeReplyObject(t);
    }
    if (rc == 0) {
        qsort(rows, n, sizeof(*rows), row_order);
        for (i = 0; i < n; i++)
            if (rows[i].pttl != -2 && strlen(rows[i].client) > w)
                w = strlen(rows[i].client);
        for (i = 0; i < n; i++) {
            if (rows[i].pttl == -2)
                continue;
            if (shownrows++ == 0)
                printf("%-*s  %-10s  %s\n", (int)w, "CLIENT", "TIME LEFT", "REASON");
            printf("%-*s  %-10s  %s\n", (int)w,
                   bs_ctl_safe(rows[i].client, strlen(rows[i].client), shown, sizeof(shown)),
                   rows[i].pttl < 0 ? "forever"
                                    : bs_ctl_remaining((uint64_t)rows[i].pttl, left, sizeof(left)),
                   rows[i].reason);
        }
        if (shownrows == 0)
            bs_ctl_note("no blocked clients");
    }
    for (i = 0; i < n; i++)
        free(rows[i].client);
    free(rows);
    return rc;
}

/* exempt_reason - why the daemon would not block key (ip: the address
 * operand); "" when it would. The exempt set is checked for the address
 * (without /128) and the key, as decide.c asks the store. 0 / -1. */
static int exempt_reason(bs_ctl *c, const char *arg, const char *key, char *why, size_t whysz)
{
    const char *slash = strchr(arg, '/');
    size_t alen = slash ? (size_t)(slash - arg) : strlen(arg);
    char ipkey[BS_CLIENT_KEY_MAX + 1], xkey[BS_CTL_KEY_MAX], net[64];
    uint8_t ip[16];
    redisReply *rep;
    size_t i;
    int n;

    why[0] = 0;
    if (bs_ip_parse(arg, alen, ip) > 0 && !slash) {
        for (i = 0; i < c->cfg.nexempt; i++)
            if (bs_cidr_match(&c->cfg.exempt[i], ip)) {
                snprintf(why, whysz, "[ratelimit] exempt %s",
                         bs_ctl_cidr_text(&c->cfg.exempt[i], net, sizeof(net)));
                return 0;
            }
    }
    n = bs_client_key(arg, alen, 128, ipkey);
    if (n > 4 && strcmp(ipkey + n - 4, "/128") == 0)
        ipkey[n - 4] = 0;
    bs_ctl_key(c, xkey, sizeof(xkey), BS_KEY_EXEMPT, NULL);
    if (!(rep = bs_ctl_cmd(c, "SMISMEMBER", xkey, slash ? key : ipkey, key, (char *)NULL)))
        return -1;
    for (i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_INTEGER && rep->element[i]->integer == 1) {
            snprintf(why, whysz, "%.64s is in %.300s", i == 0 ? (slash ? key : ipkey) : key, xkey);
            break;
        }
    freeReplyObject(rep);
    return 0;
}

/* bs_ctl_block_add - SET block:<key> REASON PX ms, then warn if exempt */
int bs_ctl_block_add(bs_ctl *c, int argc, char **argv)
{
    char key[BS_CLIENT_KEY_MAX + 1], bkey[BS_CTL_KEY_MAX], ms[32], d[32], why[BS_CTL_KEY_MAX + 64];
    const char *reason = c->opt[BS_OPT_REASON] ? c->opt[BS_OPT_REASON] : "manual";
    uint64_t for_ms = c->cfg.block_time_ms;
    redisReply *rep;
    size_t i;

    if (bs_ctl_norm_client(c, argv[0], key) != 0)
        return BS_CTL_USAGE;
    if (c->opt[BS_OPT_FOR] && (bs_parse_duration(c->opt[BS_OPT_FOR], &for_ms) < 0 || !for_ms)) {
        bs_ctl_err("--for %s: not a duration (e.g. 1h, 2d)", c->opt[BS_OPT_FOR]);
        return BS_CTL_USAGE;
    }
    for (i = 0; reason[i]; i++)
        if ((unsigned char)reason[i] < 0x20 || reason[i] == 0x7f)
            break;
    if (reason[i] || i == 0 || i > BS_REASON_MAX) {
        bs_ctl_err("--reason: 1..%d characters, no control characters", BS_REASON_MAX);
        return BS_CTL_USAGE;
    }
    if (bs_ctl_connect(c) < 0)
        return BS_CTL_FAIL;
    bs_ctl_key(c, bkey, sizeof(bkey), BS_KEY_BLOCK, key);
    snprintf(ms, sizeof(ms), "%llu", (unsigned long long)for_ms);
    if (!(rep = bs_ctl_cmd(c, "SET", bkey, reason, "PX", ms, (char *)NULL)))
        return BS_CTL_FAIL;
    freeReplyObject(rep);
    printf("blocked %s for %s (reason: %s)\n", key, bs_ctl_duration(for_ms, d, sizeof(d)), reason);
    if (exempt_reason(c, argv[0], key, why, sizeof(why)) < 0)
        return BS_CTL_FAIL;
    if (why[0])
        bs_ctl_note("%s is exempt (%s): backstopd ignores its block", key, why);
    return BS_CTL_OK;
}

/* bs_ctl_block_del - DEL block:<key>; 1 when there was none */
int bs_ctl_block_del(bs_ctl *c, int argc, char **argv)
{
    char key[BS_CLIENT_KEY_MAX + 1], bkey[BS_CTL_KEY_MAX];
    redisReply *rep;
    int rc = BS_CTL_OK;

    if (bs_ctl_norm_client(c, argv[0], key) != 0)
        return BS_CTL_USAGE;
    if (bs_ctl_connect(c) < 0)
        return BS_CTL_FAIL;
    bs_ctl_key(c, bkey, sizeof(bkey), BS_KEY_BLOCK, key);
    if (!(rep = bs_ctl_cmd(c, "DEL", bkey, (char *)NULL)))
        return BS_CTL_FAIL;
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
        printf("unblocked %s\n", key);
    } else {
        bs_ctl_err("%s was not blocked", key);
        rc = BS_CTL_FAIL;
    }
    freeReplyObject(rep);
    return rc;
}

/* invalid_count - ZCOUNT over the daemon's window; -1 on error */
static long long invalid_count(bs_ctl *c, const char *key)
{
    char rkey[BS_CTL_KEY_MAX], min[32];
    uint64_t now;
    redisReply *rep;
    long long n = -1;

    if (bs_ctl_redis_ms(c, &now) < 0)
        return -1;
    bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RATE, key);
    /* the script drops scores <= now - window: count the ones above */
    snprintf(min, sizeof(min), "(%lld", (long long)now - (long long)c->cfg.invalid_window_ms);
    if (!(rep = bs_ctl_cmd(c, "ZCOUNT", rkey, min, "+inf", (char *)NULL)))
        return -1;
    if (bs_ctl_reply_ok(rep, REDIS_REPLY_INTEGER, "ZCOUNT"))
        n = rep->integer;
    freeReplyObject(rep);
    return n;
}

/* block_state - GET and PTTL of block:<key>; 0 / -1 */
static int block_state(bs_ctl *c, const char *key, char *reason, size_t rsz, long long *pttl)
{
    char bkey[BS_CTL_KEY_MAX];
    redisReply *g, *t;

    bs_ctl_key(c, bkey, sizeof(bkey), BS_KEY_BLOCK, key);
    const char *a1[] = {"GET", bkey}, *a2[] = {"PTTL", bkey};
    if (bs_ctl_append(c, 2, a1, NULL) < 0 || bs_ctl_append(c, 2, a2, NULL) < 0)
        return -1;
    g = bs_ctl_read(c);
    t = g ? bs_ctl_read(c) : NULL;
    if (!t) {
        if (g)
            freeReplyObject(g);
        return -1;
    }
    reason[0] = 0;
    *pttl = -2;
    if (g->type == REDIS_REPLY_STRING) {
        bs_ctl_safe(g->str, g->len, reason, rsz);
        *pttl = t->type == REDIS_REPLY_INTEGER ? t->integer : -1;
    }
    freeReplyObject(g);
    freeReplyObject(t);
    return 0;
}

/* client_json - what bs_ctl_client prints, as one object (see backstopctl(8)) */
static json_t *client_json(const bs_ctl *c, const char *ip, const char *key, const char *why,
                           const char *reason, long long pttl, long long invalid, int refused)
{
    int blocked = pttl != -2, tracked = c->cfg.invalid_limit > 0 && !why[0];

    return json_pack(
        "{s:s, s:s, s:b, s:s?, s:b, s:s?, s:o, s:b, s:o, s:I, s:I, s:I, s:b}", "client", ip, "key",
        key, "exempt", why[0] != 0, "exempt_reason", why[0] ? why : NULL, "blocked", blocked,
        "block_reason", blocked ? reason : NULL, "block_ttl_ms",
        blocked && pttl >= 0 ? json_integer(pttl) : json_null(), "invalid_tracked", tracked,
        "invalid", tracked ? json_integer(invalid) : json_null(), "invalid_limit",
        (json_int_t)c->cfg.invalid_limit, "invalid_window_ms", (json_int_t)c->cfg.invalid_window_ms,
        "block_time_ms", (json_int_t)c->cfg.block_time_ms, "refused", refused);
}

/* bs_ctl_client - exemption, block, window count; 1 when refused now */
int bs_ctl_client(bs_ctl *c, int argc, char **argv)
{
    char key[BS_CLIENT_KEY_MAX + 1], why[BS_CTL_KEY_MAX + 64], reason[BS_REASON_MAX + 64];
    char left[32], win[32], bt[32];
    long long pttl, invalid = 0;
    uint8_t ip[16];
    int refused;

    if (strchr(argv[0], '/') || bs_ip_parse(argv[0], strlen(argv[0]), ip) < 0) {
        bs_ctl_err("%s: not an IP address", argv[0]);
        return BS_CTL_USAGE;
    }
    if (bs_ctl_norm_client(c, argv[0], key) != 0)
        return BS_CTL_USAGE;
    if (bs_ctl_connect(c) < 0 || exempt_reason(c, argv[0], key, why, sizeof(why)) < 0 ||
        block_state(c, key, reason, sizeof(reason), &pttl) < 0)
        return BS_CTL_FAIL;
    if (c->cfg.invalid_limit > 0 && (invalid = invalid_count(c, key)) < 0)
        return BS_CTL_FAIL;

    refused = pttl != -2 && !why[0];
    if (c->opt[BS_OPT_JSON])
        return bs_ctl_json_print(client_json(c, argv[0], key, why, reason, pttl, invalid, refused),
                                 refused ? BS_CTL_FAIL : BS_CTL_OK);
    printf("client:   %s", argv[0]);
    if (strcmp(argv[0], key) != 0)
        printf(" (counted and blocked as %s)", key);
    printf("\nexempt:   %s%s\n", why[0] ? "yes, " : "no", why);
    if (pttl == -2)
        printf("blocked:  no\n");
    else
        printf("blocked:  yes, reason \"%s\", %s%s\n", reason,
               pttl >= 0 ? bs_ctl_remaining((uint64_t)pttl, left, sizeof(left)) : "no expiry",
               why[0]      ? " (ignored: exempt)"
               : pttl >= 0 ? " left"
                           : "");
    if (c->cfg.invalid_limit == 0)
        printf("invalid:  not tracked ([ratelimit] invalid_recipients = 0)\n");
    else if (why[0])
        printf("invalid:  not tracked (exempt)\n");
    else
        printf("invalid:  %lld invalid recipients in the last %s (blocked for %s when over %u)\n",
               invalid, bs_ctl_duration(c->cfg.invalid_window_ms, win, sizeof(win)),
               bs_ctl_duration(c->cfg.block_time_ms, bt, sizeof(bt)),
               (unsigned)c->cfg.invalid_limit);
    printf("verdict:  %s\n", refused ? "refused: every recipient gets 450 4.7.1"
                                     : "not refused: its recipients are checked");
    return refused ? BS_CTL_FAIL : BS_CTL_OK;
}

/* One counter, for sorting. */
typedef struct stat_row {
    const redisReply *name, *value;
} stat_row;

static int stat_order(const void *a, const void *b)
{
    return strcmp(((const stat_row *)a)->name->str, ((const stat_row *)b)->name->str);
}

/* stats_json - {"counters": {"name": N, ...}}; a value that is not an
 * integer is null, a name that is not UTF-8 is left out */
static json_t *stats_json(const stat_row *rows, size_t n)
{
    json_t *counters = json_object();
    size_t i;

    for (i = 0; counters && i < n; i++) {
        const char *v = rows[i].value->str;
        char *end;
        long long num = strtoll(v, &end, 10);
        json_t *jv = *v && !*end ? json_integer(num) : json_null();
        json_object_set_new(counters, rows[i].name->str, jv);
    }
    return json_pack("{s:o}", "counters", counters);
}

/* bs_ctl_stats - HGETALL stats, sorted by name, numbers right-aligned */
int bs_ctl_stats(bs_ctl *c, int argc, char **argv)
{
    char key[BS_CTL_KEY_MAX], n1[128], n2[64];
    redisReply *rep;
    stat_row *rows;
    size_t i, n, wn = 0, wv = 0;
    int rc = BS_CTL_OK;

    if (c->opt[BS_OPT_DOMAIN])
        return bs_ctl_stats_domain(c);
    if (!(rep = bs_ctl_hgetall(c, BS_KEY_STATS)))
        return BS_CTL_FAIL;
    bs_ctl_key(c, key, sizeof(key), BS_KEY_STATS, NULL); /* for the message below */
    n = rep->elements / 2;
    rows = calloc(n + 1, sizeof(*rows));
    for (i = 0; i < n; i++) {
        rows[i].name = rep->element[2 * i];
        rows[i].value = rep->element[2 * i + 1];
        wn = rows[i].name->len > wn ? rows[i].name->len : wn;
        wv = rows[i].value->len > wv ? rows[i].value->len : wv;
    }
    qsort(rows, n, sizeof(*rows), stat_order);
    if (c->opt[BS_OPT_JSON]) {
        json_t *doc = stats_json(rows, n);
        if (doc && bs_ctl_sync_show(c, NULL, 0, doc) < 0) {
            json_decref(doc);
            rc = BS_CTL_FAIL;
        } else {
            rc = bs_ctl_json_print(doc, rc);
        }
    } else
        for (i = 0; i < n; i++)
            printf("%-*s  %*s\n", (int)wn,
                   bs_ctl_safe(rows[i].name->str, rows[i].name->len, n1, sizeof(n1)), (int)wv,
                   bs_ctl_safe(rows[i].value->str, rows[i].value->len, n2, sizeof(n2)));
    if (n == 0)
        bs_ctl_note("no statistics yet (%s is empty)", key);
    free(rows);
    freeReplyObject(rep);
    if (rc == BS_CTL_OK && !c->opt[BS_OPT_JSON] && bs_ctl_sync_show(c, NULL, 0, NULL) < 0)
        rc = BS_CTL_FAIL;
    return rc;
}
