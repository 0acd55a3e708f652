/*
 * ctl_harvest.c - harvest detection seen from backstopctl (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_harvest       "harvest [--json]": every domain in attack (the
 *                        daemon's record: since, until, unknown recipients at
 *                        the last trip), with the unknown recipients now in
 *                        the threshold window of harvest:<domain> (ZCOUNT
 *                        over [TIME - window, +inf], Redis's clock as the
 *                        daemon's script reads it), the rate, and the top
 *                        BS_CTL_HARVEST_TOP client networks (the members'
 *                        "<network> " prefix) among the newest
 *                        BS_CTL_HARVEST_SAMPLE members. A value that does not
 *                        parse, or a harvest:<domain> of another type, is
 *                        shown as unreadable; the others are still listed.
 *                        0 (also when no domain is under attack), 1 on an
 *                        error (attack unreadable as a hash, I/O).
 *   bs_ctl_harvest_end   "harvest end DOMAIN": HDEL attack DOMAIN and DEL
 *                        harvest:DOMAIN in one MULTI/EXEC (so the next
 *                        unknown recipient does not trip the domain again at
 *                        once). 0 when it was under attack, 1 when not.
 *   bs_ctl_harvest_attack_parse  the attack value's form.
 *   bs_ctl_harvest_explain_run / _result / _settle / _print / _json
 *                        the harvest facts of one request for explain
 *                        (check): is the domain under attack (the attack
 *                        hash read as the daemon's table reads it: sets
 *                        facts.under_attack for decide.c), is the client's
 *                        network known to it (known:<domain> within
 *                        known_client_age), the greylist state of (network,
 *                        recipient), the exempt SET; the result of the
 *                        harvest check from them, for decide.c's HARVEST
 *                        step; and what followed.
 *
 * THE CHECK (store_redis.c's script_grey, mirrored without its write)
 *   A member of the exempt SET (address or client key): KNOWN. A network
 *   in known:<domain> with a score newer than known_client_age: KNOWN.
 *   new_clients = defer: DEFER. No grey:<domain>:<network>:<local> (or not
 *   a number): DEFER, and the daemon records the first sight now (this
 *   does not). First sight at least retry_after ago: PASS; else DEFER.
 *   Whether the check is asked at all, and what its result answers (reply,
 *   reason, report or per-domain mode), is decide.c's: no rule here.
 *
 * NEVER
 *   Writes to Redis, except harvest end's HDEL and DEL.
 *
 * LIMITS
 *   The top networks are counted over at most BS_CTL_HARVEST_SAMPLE members
 *   (the newest); the text says so when the window holds more.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backstop/cidr.h"
#include "ctl.h"

#define BS_CTL_HARVEST_TOP 5        /* client networks shown per domain */
#define BS_CTL_HARVEST_SAMPLE 20000 /* members read to count them */

/* One network and how many members of the window it has. */
typedef struct net_count {
    const char *net; /* into the ZREVRANGEBYSCORE reply */
    size_t len;
    long long n;
} net_count;

/* One field of attack, what it says and what the window holds. */
typedef struct attack_row {
    const redisReply *field, *value; /* into the HGETALL reply */
    int readable;
    long long since, until, unknown;
    long long until_read; /* as the daemon reads it: -1 none (then in force) */
    long long in_window;  /* ZCOUNT; -1 unreadable */
    char window_err[128];
    struct {
        char net[BS_CLIENT_KEY_MAX + 16]; /* a longer member prefix is cut */
        size_t len;
        long long n;
    } top[BS_CTL_HARVEST_TOP]; /* copied: the reply is freed */
    size_t ntop;
    size_t sampled; /* members read for top */
} attack_row;

/* bs_ctl_harvest_attack_parse - each of the three names once, integers >= 0 */
int bs_ctl_harvest_attack_parse(const char *v, size_t len, long long *since, long long *until,
                                long long *unknown)
{
    static const char *const names[] = {"since", "until", "unknown"};
    long long *out[] = {since, until, unknown};
    int seen = 0;
    const char *p = v, *end = v + len;

    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p)), *eq;
        const char *stop = semi ? semi : end;
        char num[24];
        size_t i, nlen;
        char *numend;

        if (!(eq = memchr(p, '=', (size_t)(stop - p))))
            return -1;
        for (i = 0; i < 3; i++)
            if ((size_t)(eq - p) == strlen(names[i]) && memcmp(p, names[i], strlen(names[i])) == 0)
                break;
        nlen = (size_t)(stop - eq - 1);
        if (i == 3 || (seen & (1 << i)) || nlen == 0 || nlen >= sizeof(num))
            return -1;
        memcpy(num, eq + 1, nlen);
        num[nlen] = 0;
        if (num[0] < '0' || num[0] > '9')
            return -1;
        errno = 0;
        *out[i] = strtoll(num, &numend, 10);
        if (*numend || errno == ERANGE)
            return -1;
        seen |= 1 << i;
        if (semi && semi + 1 == end) /* a trailing ';' */
            return -1;
        p = semi ? semi + 1 : end;
    }
    return seen == 7 ? 0 : -1;
}

/* bs_ctl_harvest_attack_until - the first "until=" followed by digits, as
 * the daemon's sweep reads a value (Lua 'until=(%d+)'); -1 when there is
 * none (the daemon then keeps the domain under attack) */
long long bs_ctl_harvest_attack_until(const char *v, size_t len)
{
    static const char name[] = "until=";
    const size_t nlen = sizeof(name) - 1;
    size_t i, j;
    long long u = 0;

    for (i = 0; i + nlen < len; i++) {
        if (memcmp(v + i, name, nlen) != 0 || v[i + nlen] < '0' || v[i + nlen] > '9')
            continue;
        for (j = i + nlen; j < len && v[j] >= '0' && v[j] <= '9'; j++)
            u = u > (LLONG_MAX - 9) / 10 ? LLONG_MAX : u * 10 + (v[j] - '0');
        return u;
    }
    return -1;
}

/* in_force - under attack at now_s as the daemon's sweep sees the value:
 * its until not past, or no readable until */
static int in_force(long long until_read, long long now_s)
{
    return until_read < 0 || until_read >= now_s;
}

/* utc_text - Unix seconds as "2026-12-02 04:00:00 UTC" */
static const char *utc_text(long long t, char *out, size_t outsz)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (!gmtime_r(&tt, &tm) || strftime(out, outsz, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, outsz, "@%lld", t);
    return out;
}

/* cmp_net - by network text */
static int cmp_net(const void *a, const void *b)
{
    const net_count *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->net, y->net, n);

    return r ? r : (x->len > y->len) - (x->len < y->len);
}

/* cmp_count - most members first, then by network */
static int cmp_count(const void *a, const void *b)
{
    const net_count *x = a, *y = b;

    if (x->n != y->n)
        return x->n < y->n ? 1 : -1;
    return cmp_net(a, b);
}

/* top_networks - count the members' "<network> " prefixes into row->top;
 * a member without one counts as "?"; 0 / -1 (memory) */
static int top_networks(const redisReply *rep, attack_row *row)
{
    net_count *v = calloc(rep->elements + 1, sizeof(*v));
    size_t i, n = 0, runs = 0;

    if (!v)
        return -1;
    for (i = 0; i < rep->elements; i++) {
        const redisReply *m = rep->element[i];
        const char *sp = m->type == REDIS_REPLY_STRING ? memchr(m->str, ' ', m->len) : NULL;
        v[n].net = sp ? m->str : "?";
        v[n].len = sp ? (size_t)(sp - m->str) : 1;
        n++;
    }
    qsort(v, n, sizeof(*v), cmp_net);
    for (i = 0; i < n; i++) { /* runs of one network, in place */
        if (runs > 0 && cmp_net(&v[runs - 1], &v[i]) == 0) {
            v[runs - 1].n++;
        } else {
            v[runs] = v[i];
            v[runs++].n = 1;
        }
    }
    qsort(v, runs, sizeof(*v), cmp_count);
    row->ntop = runs < BS_CTL_HARVEST_TOP ? runs : BS_CTL_HARVEST_TOP;
    for (i = 0; i < row->ntop; i++) {
        row->top[i].len = v[i].len < sizeof(row->top[i].net) ? v[i].len : sizeof(row->top[i].net);
        memcpy(row->top[i].net, v[i].net, row->top[i].len);
        row->top[i].n = v[i].n;
    }
    row->sampled = n;
    free(v);
    return 0;
}

/* window_min - the lowest score still in the threshold window, as text
 * ("-inf" when detection is off here: no window to cut at) */
static void window_min(const bs_ctl *c, uint64_t now, char *out, size_t outsz)
{
    if (c->cfg.harvest_limit == 0 || c->cfg.harvest_window_ms == 0)
        snprintf(out, outsz, "-inf");
    else
        snprintf(out, outsz, "%lld", (long long)now - (long long)c->cfg.harvest_window_ms);
}

/* read_windows - per row ZCOUNT and the newest members, pipelined; the
 * replies are read in the same order. 0 / -1 (I/O) */
static int read_windows(bs_ctl *c, attack_row *rows, size_t n, uint64_t now)
{
    char key[BS_CTL_KEY_MAX], min[32], limit[16];
    size_t i;

    window_min(c, now, min, sizeof(min));
    snprintf(limit, sizeof(limit), "%d", BS_CTL_HARVEST_SAMPLE);
    for (i = 0; i < n; i++) {
        bs_ctl_key(c, key, sizeof(key), BS_KEY_HARVEST, rows[i].field->str);
        const char *zc[] = {"ZCOUNT", key, min, "+inf"};
        const char *zr[] = {"ZREVRANGEBYSCORE", key, "+inf", min, "LIMIT", "0", limit};
        if (bs_ctl_append(c, 4, zc, NULL) < 0 || bs_ctl_append(c, 7, zr, NULL) < 0)
            return -1;
    }
    for (i = 0; i < n; i++) {
        redisReply *cnt = bs_ctl_read(c), *mem = cnt ? bs_ctl_read(c) : NULL;
        attack_row *r = &rows[i];
        int rc = 0;

        if (!mem) {
            rc = -1;
        } else if (cnt->type == REDIS_REPLY_INTEGER && mem->type == REDIS_REPLY_ARRAY) {
            r->in_window = cnt->integer;
            rc = top_networks(mem, r);
        } else {
            const redisReply *bad = cnt->type == REDIS_REPLY_ERROR ? cnt : mem;
            r->in_window = -1;
            if (bad->type == REDIS_REPLY_ERROR)
                bs_ctl_safe(bad->str, bad->len, r->window_err, sizeof(r->window_err));
            else
                snprintf(r->window_err, sizeof(r->window_err), "unexpected reply");
        }
        if (cnt)
            freeReplyObject(cnt);
        if (mem)
            freeReplyObject(mem);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* cmp_row - by domain */
static int cmp_row(const void *a, const void *b)
{
    const attack_row *x = a, *y = b;

    return strcmp(x->field->str, y->field->str);
}

/* rate_per_min - unknown recipients a minute over the window; < 0 none */
static double rate_per_min(const bs_ctl *c, const attack_row *r)
{
    if (r->in_window < 0 || !c->cfg.harvest_limit || !c->cfg.harvest_window_ms)
        return -1;
    return (double)r->in_window * 60000.0 / (double)c->cfg.harvest_window_ms;
}

/* capped - r's window count is a lower bound: past the threshold backstopd
 * trims the window to the newest threshold + 1 members */
static int capped(const bs_ctl *c, const attack_row *r)
{
    return c->cfg.harvest_limit && r->in_window > (long long)c->cfg.harvest_limit;
}

/* print_row - one domain as text */
static void print_row(const bs_ctl *c, const attack_row *r, uint64_t now)
{
    char dom[BS_DOMAIN_MAX * 4 + 1], raw[256], t1[40], t2[40], ago[32], left[32], win[32];
    long long now_s = (long long)(now / 1000);
    size_t i;

    bs_ctl_safe(r->field->str, r->field->len, dom, sizeof(dom));
    if (!r->readable) {
        printf("%s  unreadable value in attack: \"%s\" (not since=UNIX;until=UNIX;unknown=N; "
               "backstopd %s)\n",
               dom,
               r->value->type == REDIS_REPLY_STRING
                   ? bs_ctl_safe(r->value->str, r->value->len, raw, sizeof(raw))
                   : "?",
               r->until_read < 0 ? "keeps it under attack: no readable until"
               : in_force(r->until_read, now_s)
                   ? "reads an until not past: in force"
                   : "reads an until that is past: no longer in force");
    } else {
        printf("%s  under attack since %s (%s ago), ", dom, utc_text(r->since, t1, sizeof(t1)),
               bs_ctl_remaining(now_s > r->since ? (uint64_t)(now_s - r->since) * 1000 : 0, ago,
                                sizeof(ago)));
        if (in_force(r->until, now_s))
            printf("until %s (%s left)\n", utc_text(r->until, t2, sizeof(t2)),
                   bs_ctl_remaining((uint64_t)(r->until - now_s) * 1000, left, sizeof(left)));
        else
            printf("until %s (past: no longer in force)\n", utc_text(r->until, t2, sizeof(t2)));
    }
    if (r->in_window < 0) {
        printf("  unknown recipients: unreadable (%s)\n", r->window_err);
        return;
    }
    if (c->cfg.harvest_limit && c->cfg.harvest_window_ms) {
        /* past the threshold backstopd keeps only the newest threshold + 1
         * members (the window's memory bound): a lower bound then */
        const char *low = capped(c, r) ? "at least " : "";

        bs_ctl_duration(c->cfg.harvest_window_ms, win, sizeof(win));
        printf("  unknown recipients: %s%lld in the last %s (%s%.1f a minute; threshold %u/%s%s)",
               low, r->in_window, win, low, rate_per_min(c, r), c->cfg.harvest_limit, win,
               *low ? "; past it only the newest threshold + 1 are kept" : "");
    } else {
        printf("  unknown recipients: %lld recorded ([harvest] threshold = 0 in %s: no window)",
               r->in_window, c->config_path);
    }
    if (r->readable)
        printf(", %lld at the last trip", r->unknown);
    printf("\n  top client networks%s:",
           (long long)r->sampled < r->in_window ? " (newest members)" : "");
    for (i = 0; i < r->ntop; i++)
        printf("%s %.*s (%lld)", i ? "," : "", (int)r->top[i].len, r->top[i].net, r->top[i].n);
    printf("%s\n", r->ntop ? "" : " none");
}

/* row_json - one domain as an object (backstopctl(8)) */
static json_t *row_json(const bs_ctl *c, const attack_row *r, uint64_t now)
{
    long long now_s = (long long)(now / 1000);
    json_t *top = json_array();
    double rate = rate_per_min(c, r);
    size_t i;

    for (i = 0; i < r->ntop; i++)
        json_array_append_new(top, json_pack("{s:o, s:I}", "network",
                                             bs_ctl_jstr(r->top[i].net, r->top[i].len), "count",
                                             (json_int_t)r->top[i].n));
    return json_pack(
        "{s:o, s:o, s:b, s:o, s:o, s:o, s:b, s:o, s:o, s:b, s:o, s:o, s:I}", "domain",
        bs_ctl_jstr(r->field->str, r->field->len), "value",
        r->value->type == REDIS_REPLY_STRING ? bs_ctl_jstr(r->value->str, r->value->len)
                                             : json_null(),
        "readable", r->readable, "since", r->readable ? json_integer(r->since) : json_null(),
        "until", r->readable ? json_integer(r->until) : json_null(), "left_s",
        r->readable ? json_integer(r->until > now_s ? r->until - now_s : 0) : json_null(),
        "in_force", in_force(r->until_read, now_s), "unknown_at_trip",
        r->readable ? json_integer(r->unknown) : json_null(), "unknown",
        r->in_window >= 0 ? json_integer(r->in_window) : json_null(), "unknown_at_least",
        capped(c, r), "rate_per_minute", rate >= 0 ? json_real(rate) : json_null(), "top_networks",
        top, "sampled", (json_int_t)r->sampled);
}

/* bs_ctl_harvest - the domains under attack */
int bs_ctl_harvest(bs_ctl *c, int argc, char **argv)
{
    redisReply *all;
    attack_row *rows;
    uint64_t now;
    size_t i, n = 0;
    json_t *list = NULL;
    int rc = BS_CTL_OK;

    (void)argc;
    (void)argv;
    if (!(all = bs_ctl_hgetall(c, BS_KEY_ATTACK)))
        return BS_CTL_FAIL;
    if (bs_ctl_redis_ms(c, &now) < 0 || !(rows = calloc(all->elements / 2 + 1, sizeof(*rows)))) {
        freeReplyObject(all);
        return BS_CTL_FAIL;
    }
    for (i = 0; i + 1 < all->elements; i += 2) {
        attack_row *r = &rows[n];
        const redisReply *v = all->element[i + 1];
        if (all->element[i]->type != REDIS_REPLY_STRING)
            continue;
        r->field = all->element[i];
        r->value = v;
        r->readable =
            v->type == REDIS_REPLY_STRING &&
            bs_ctl_harvest_attack_parse(v->str, v->len, &r->since, &r->until, &r->unknown) == 0;
        r->until_read =
            v->type == REDIS_REPLY_STRING ? bs_ctl_harvest_attack_until(v->str, v->len) : -1;
        n++;
    }
    qsort(rows, n, sizeof(*rows), cmp_row);
    if (read_windows(c, rows, n, now) < 0)
        rc = BS_CTL_FAIL;
    if (rc == BS_CTL_OK && c->opt[BS_OPT_JSON]) {
        list = json_array();
        for (i = 0; i < n; i++)
            json_array_append_new(list, row_json(c, &rows[i], now));
    } else if (rc == BS_CTL_OK) {
        if (n == 0)
            printf("no domain is under attack\n");
        for (i = 0; i < n; i++)
            print_row(c, &rows[i], now);
    }
    free(rows);
    freeReplyObject(all);
    if (!list)
        return rc;
    return bs_ctl_json_print(
        json_pack("{s:I, s:o, s:o}", "now", (json_int_t)(now / 1000), "threshold",
                  c->cfg.harvest_limit
                      ? json_pack("{s:I, s:I}", "limit", (json_int_t)c->cfg.harvest_limit,
                                  "window_ms", (json_int_t)c->cfg.harvest_window_ms)
                      : json_null(),
                  "attacks", list),
        rc);
}

/* bs_ctl_harvest_end - MULTI HDEL attack DOMAIN, DEL harvest:DOMAIN EXEC */
int bs_ctl_harvest_end(bs_ctl *c, int argc, char **argv)
{
    char dom[BS_DOMAIN_MAX + 1], akey[BS_CTL_KEY_MAX], hkey[BS_CTL_KEY_MAX];
    redisReply *rep = NULL;
    int i, rc = BS_CTL_FAIL;

    (void)argc;
    if (bs_ctl_norm_domain(argv[0], dom) != 0)
        return BS_CTL_USAGE;
    if (bs_ctl_connect(c) < 0)
        return BS_CTL_FAIL;
    bs_ctl_key(c, akey, sizeof(akey), BS_KEY_ATTACK, NULL);
    bs_ctl_key(c, hkey, sizeof(hkey), BS_KEY_HARVEST, dom);
    const char *multi[] = {"MULTI"}, *hdel[] = {"HDEL", akey, dom}, *del[] = {"DEL", hkey},
               *exec[] = {"EXEC"};
    if (bs_ctl_append(c, 1, multi, NULL) < 0 || bs_ctl_append(c, 3, hdel, NULL) < 0 ||
        bs_ctl_append(c, 2, del, NULL) < 0 || bs_ctl_append(c, 1, exec, NULL) < 0)
        return BS_CTL_FAIL;
    for (i = 0; i < 4; i++) { /* +OK, QUEUED, QUEUED, then EXEC's array */
        if (rep)
            freeReplyObject(rep);
        if (!(rep = bs_ctl_read(c)))
            return BS_CTL_FAIL;
    }
    if (bs_ctl_reply_ok(rep, REDIS_REPLY_ARRAY, "EXEC") && rep->elements == 2 &&
        bs_ctl_reply_ok(rep->element[0], REDIS_REPLY_INTEGER, "HDEL") &&
        bs_ctl_reply_ok(rep->element[1], REDIS_REPLY_INTEGER, "DEL")) {
        printf("%s: %s; %s %s\n", dom,
               rep->element[0]->integer ? "attack ended (removed from attack: every backstopd "
                                          "answers normally within a second)"
                                        : "was not under attack",
               hkey, rep->element[1]->integer ? "deleted" : "was already empty");
        rc = rep->element[0]->integer ? BS_CTL_OK : BS_CTL_FAIL;
    }
    freeReplyObject(rep);
    return rc;
}

/* ------------------------------------------------------------ explain */

/* known_now - known:<domain>'s score newer than known_client_age (the
 * daemon's script: seen > now - age) */
static int known_now(const bs_ctl *c, const bs_ctl_harvest_facts *h)
{
    return h->known_ms >= 0 && h->known_ms > h->now_ms - (long long)c->cfg.harvest_known_age_ms;
}

/* bs_ctl_harvest_result - script_grey's answer from the facts read (see
 * THE CHECK); nothing written */
int bs_ctl_harvest_result(const bs_ctl *c, const bs_ctl_explain *e)
{
    const bs_ctl_harvest_facts *h = &e->harvest;

    if (h->exempt_set || known_now(c, h))
        return BS_GREY_KNOWN;
    if (c->cfg.harvest_new_clients == BS_HARVEST_DEFER || !h->grey_ok)
        return BS_GREY_DEFER; /* no grey: key: first sight now, the daemon records it */
    return h->now_ms - h->grey_ms >= (long long)c->cfg.harvest_retry_after_ms ? BS_GREY_PASS
                                                                              : BS_GREY_DEFER;
}

/* bs_ctl_harvest_explain_settle - the verdict: why decide.c did not ask
 * for the check, or what the check answers (asked, or, when an earlier
 * rule decided, would answer) */
void bs_ctl_harvest_explain_settle(const bs_ctl *c, bs_ctl_explain *e)
{
    bs_ctl_harvest_facts *h = &e->harvest;
    int r;

    if (h->verdict != BS_HV_NO_ATTACK) /* NONE, OFF: not looked at */
        return;
    if (!e->f.under_attack)
        return;
    if (e->f.exempt || e->d.cidr_exempt || h->exempt_set) {
        h->verdict = BS_HV_EXEMPT; /* config: not checked; the exempt SET: KNOWN */
        return;
    }
    if (c->cfg.harvest_new_clients == BS_HARVEST_NORMAL) {
        h->verdict = BS_HV_NORMAL;
        return;
    }
    r = e->d.harvest_result ? e->d.harvest_result : bs_ctl_harvest_result(c, e);
    h->verdict = r == BS_GREY_KNOWN                               ? BS_HV_KNOWN
                 : r == BS_GREY_PASS                              ? BS_HV_PASS
                 : c->cfg.harvest_new_clients == BS_HARVEST_DEFER ? BS_HV_DEFER
                 : h->grey_ok                                     ? BS_HV_GREY_EARLY
                                                                  : BS_HV_GREY_FIRST;
}

/* lua_number - a reply's text as Lua's tonumber reads it (decimal or hex,
 * spaces around); 0 and *out, or -1 when nil or not a number */
static int lua_number(const redisReply *rep, long long *out)
{
    char buf[64], *end;
    double v;

    if (rep->type != REDIS_REPLY_STRING || rep->len == 0 || rep->len >= sizeof(buf))
        return -1;
    memcpy(buf, rep->str, rep->len);
    buf[rep->len] = 0;
    if (strpbrk(buf, "nNiI")) /* strtod's "nan", "inf": not numbers to Lua */
        return -1;
    v = strtod(buf, &end);
    while (*end == ' ' || (*end >= '\t' && *end <= '\r'))
        end++;
    if (end == buf || *end || !(v > -9e18 && v < 9e18))
        return -1;
    *out = (long long)v;
    return 0;
}

/* bs_ctl_harvest_explain_run - TIME, HGET attack, ZSCORE known, GET/PTTL
 * grey, SMISMEMBER exempt (the daemon's script checks the SET for every
 * client; decide.c's lookup only for a blocked one) */
#define HARVEST_REPLIES 6 /* one round trip: the six commands above */
int bs_ctl_harvest_explain_run(bs_ctl *c, bs_ctl_explain *e)
{
    bs_ctl_harvest_facts *h = &e->harvest;
    const bs_decision *d = &e->d;
    char akey[BS_CTL_KEY_MAX], kkey[BS_CTL_KEY_MAX], gkey[BS_CTL_KEY_MAX + BS_LOCAL_MAX],
        xkey[BS_CTL_KEY_MAX];
    char gname[BS_DOMAIN_MAX + BS_CLIENT_KEY_MAX + BS_LOCAL_MAX + 3];
    redisReply *rep[HARVEST_REPLIES];
    uint8_t ip[16];
    int i, n = 0, bad = 0;

    memset(h, 0, sizeof(*h));
    h->since = h->until = h->unknown = h->known_ms = h->grey_ms = h->grey_pttl = -1;
    if (!e->f.protected_domain || e->redis_failed || !d->client_ip[0] ||
        bs_ip_parse(d->client_ip, strlen(d->client_ip), ip) < 0 ||
        bs_client_network(ip, c->cfg.ipv6_prefix, h->network) < 0)
        return 0; /* BS_HV_NONE */
    if (!c->cfg.harvest_limit) {
        h->verdict = BS_HV_OFF;
        return 0;
    }
    bs_ctl_key(c, akey, sizeof(akey), BS_KEY_ATTACK, NULL);
    bs_ctl_key(c, kkey, sizeof(kkey), BS_KEY_KNOWN, d->rcpt.domain);
    snprintf(gname, sizeof(gname), "%s:%s:%s", d->rcpt.domain, h->network, d->rcpt.local);
    bs_ctl_key(c, gkey, sizeof(gkey), BS_KEY_GREY, gname);
    bs_ctl_key(c, xkey, sizeof(xkey), BS_KEY_EXEMPT, NULL);
    const char *time_[] = {"TIME"}, *hget[] = {"HGET", akey, d->rcpt.domain},
               *zscore[] = {"ZSCORE", kkey, h->network}, *get[] = {"GET", gkey},
               *pttl[] = {"PTTL", gkey}, *sms[] = {"SMISMEMBER", xkey, d->client_ip, d->client_key};
    if (bs_ctl_append(c, 1, time_, NULL) < 0 || bs_ctl_append(c, 3, hget, NULL) < 0 ||
        bs_ctl_append(c, 3, zscore, NULL) < 0 || bs_ctl_append(c, 2, get, NULL) < 0 ||
        bs_ctl_append(c, 2, pttl, NULL) < 0 || bs_ctl_append(c, 4, sms, NULL) < 0)
        return -1;
    for (n = 0; n < HARVEST_REPLIES; n++)
        if (!(rep[n] = bs_ctl_read(c)))
            break;
    if (n == HARVEST_REPLIES) {
        const redisReply *t = rep[0];
        if (t->type == REDIS_REPLY_ARRAY && t->elements == 2 &&
            t->element[0]->type == REDIS_REPLY_STRING && t->element[1]->type == REDIS_REPLY_STRING)
            /* the daemon's scripts: sec * 1000 + floor(usec / 1000) */
            h->now_ms = strtoll(t->element[0]->str, NULL, 10) * 1000 +
                        strtoll(t->element[1]->str, NULL, 10) / 1000;
        else
            bad = !bs_ctl_reply_ok(t, REDIS_REPLY_ARRAY, "TIME");
        for (i = 1; i < HARVEST_REPLIES; i++)
            if (rep[i]->type == REDIS_REPLY_ERROR)
                bad = !bs_ctl_reply_ok(rep[i], REDIS_REPLY_STRING, "harvest lookup");
        h->attack = rep[1]->type == REDIS_REPLY_STRING;
        if (h->attack) {
            bs_ctl_safe(rep[1]->str, rep[1]->len, h->attack_raw, sizeof(h->attack_raw));
            if (bs_ctl_harvest_attack_parse(rep[1]->str, rep[1]->len, &h->since, &h->until,
                                            &h->unknown) < 0)
                h->since = h->unknown = -1; /* unreadable: shown as such */
            h->until = bs_ctl_harvest_attack_until(rep[1]->str, rep[1]->len);
        }
        if (lua_number(rep[2], &h->known_ms) < 0)
            h->known_ms = -1;
        h->grey_ok = lua_number(rep[3], &h->grey_ms) == 0;
        h->grey_pttl = rep[4]->type == REDIS_REPLY_INTEGER ? rep[4]->integer : -2;
        for (i = 0; rep[5]->type == REDIS_REPLY_ARRAY && i < (int)rep[5]->elements; i++)
            h->exempt_set |=
                rep[5]->element[i]->type == REDIS_REPLY_INTEGER && rep[5]->element[i]->integer == 1;
    }
    for (i = 0; i < n; i++)
        freeReplyObject(rep[i]);
    if (n < HARVEST_REPLIES)
        return -1;
    if (bad) {
        e->redis_failed = 1;
        return 0;
    }
    /* the daemon's table of attacks (its sweep): a field whose until is not
     * past, or that has no readable until */
    e->f.under_attack = h->attack && in_force(h->until, h->now_ms / 1000);
    h->verdict = BS_HV_NO_ATTACK; /* until settled */
    return 0;
}

/* verdict_text - what the verdict means, for the text and the JSON */
static const char *verdict_text(int v)
{
    static const char *const texts[] = {
        [BS_HV_NONE] = "not looked at",
        [BS_HV_OFF] = "off ([harvest] threshold = 0): the normal rules",
        [BS_HV_NO_ATTACK] = "not under attack: the normal rules",
        [BS_HV_EXEMPT] = "an exempt client: the normal rules",
        [BS_HV_KNOWN] = "KNOWN client network: the normal rules",
        [BS_HV_NORMAL] = "new client, new_clients = normal: the normal rules with the lowered "
                         "client_limit",
        [BS_HV_PASS] = "PASS: a greylisting retry after retry_after: the normal rules",
        [BS_HV_GREY_FIRST] = "DEFER: first sight now: the daemon would record it "
                             "(harvest_greylist)",
        [BS_HV_GREY_EARLY] = "DEFER: retried before retry_after (harvest_greylist)",
        [BS_HV_DEFER] = "DEFER: new_clients = defer, until the attack ends (harvest_defer)",
    };
    return v >= 0 && v <= BS_HV_DEFER ? texts[v] : "?";
}

/* verdict_name - the short form for --json */
static const char *verdict_name(int v)
{
    static const char *const names[] = {
        [BS_HV_NONE] = "none",     [BS_HV_OFF] = "off",          [BS_HV_NO_ATTACK] = "normal",
        [BS_HV_EXEMPT] = "exempt", [BS_HV_KNOWN] = "known",      [BS_HV_NORMAL] = "normal",
        [BS_HV_PASS] = "pass",     [BS_HV_GREY_FIRST] = "defer", [BS_HV_GREY_EARLY] = "defer",
        [BS_HV_DEFER] = "defer",
    };
    return v >= 0 && v <= BS_HV_DEFER ? names[v] : "?";
}

/* not_checked - why decide.c did not ask for the check although its
 * result is shown (an earlier rule decided), or NULL */
static const char *not_checked(const bs_ctl_explain *e)
{
    int v = e->harvest.verdict;

    if (e->d.harvest_result || v < BS_HV_KNOWN || v == BS_HV_NORMAL)
        return NULL;
    if (e->d.why == BS_WHY_MODE_OFF)
        return "; but the mode is off for this recipient: the daemon does not check";
    if (e->d.why == BS_WHY_BLOCKED)
        return "; but the client is blocked: rule 1 answers first, the daemon does not check";
    return "; but an earlier rule decided: the daemon does not check";
}

/* harvest_why - the reason when harvest detection decided, else NULL */
static const char *harvest_why(const bs_ctl_explain *e)
{
    return e->d.why == BS_WHY_HARVEST_GREY || e->d.why == BS_WHY_HARVEST_DEFER
               ? bs_why_name(e->d.why)
               : NULL;
}

/* print_attack - the attack line of explain */
static void print_attack(const bs_ctl_explain *e, FILE *fp)
{
    const bs_ctl_harvest_facts *h = &e->harvest;
    char t[40], left[32];
    long long now_s = h->now_ms / 1000;

    if (!h->attack)
        fprintf(fp, "  attack:    %s is not under attack\n", e->d.rcpt.domain);
    else if (h->since < 0 && h->until < 0)
        fprintf(fp,
                "  attack:    unreadable value \"%s\" in attack: backstopd keeps the domain under "
                "attack (no readable until)\n",
                h->attack_raw);
    else if (h->since < 0 && in_force(h->until, now_s))
        fprintf(fp, "  attack:    unreadable value \"%s\" in attack, but its until is not past\n",
                h->attack_raw);
    else if (in_force(h->until, now_s))
        fprintf(fp, "  attack:    under attack until %s (%s left)\n",
                utc_text(h->until, t, sizeof(t)),
                bs_ctl_remaining((uint64_t)(h->until - now_s) * 1000, left, sizeof(left)));
    else
        fprintf(fp, "  attack:    was under attack until %s (past: no longer in force)\n",
                utc_text(h->until, t, sizeof(t)));
}

/* bs_ctl_harvest_explain_print - the harvest lines of explain */
void bs_ctl_harvest_explain_print(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp)
{
    const bs_ctl_harvest_facts *h = &e->harvest;
    char left[32], age[32], max[32];
    const char *skip = not_checked(e);

    if (h->verdict == BS_HV_NONE || h->verdict == BS_HV_OFF) {
        if (h->verdict == BS_HV_OFF)
            fprintf(fp, "  harvest:   %s\n", verdict_text(h->verdict));
        return;
    }
    print_attack(e, fp);
    bs_ctl_duration(c->cfg.harvest_known_age_ms, max, sizeof(max));
    if (h->known_ms < 0)
        fprintf(fp,
                "  known:     %s has not delivered to a valid user here (known_client_age %s)\n",
                h->network, max);
    else
        fprintf(fp, "  known:     %s delivered to a valid user %s ago (known_client_age %s)%s\n",
                h->network,
                bs_ctl_remaining(h->now_ms > h->known_ms ? (uint64_t)(h->now_ms - h->known_ms) : 0,
                                 age, sizeof(age)),
                max, known_now(c, h) ? "" : ": too long ago");
    if (!h->grey_ok) {
        fprintf(fp, "  greylist:  %s and this recipient not seen yet\n", h->network);
    } else {
        long long since_first = h->now_ms - h->grey_ms;
        long long wait = (long long)c->cfg.harvest_retry_after_ms - since_first;
        fprintf(fp, "  greylist:  first sight %s ago, ",
                bs_ctl_remaining(since_first > 0 ? (uint64_t)since_first : 0, age, sizeof(age)));
        if (wait > 0)
            fprintf(fp, "passes after %s more",
                    bs_ctl_remaining((uint64_t)wait, left, sizeof(left)));
        else
            fprintf(fp, "a retry passes now");
        if (h->grey_pttl >= 0)
            fprintf(fp, " (forgotten in %s)",
                    bs_ctl_remaining((uint64_t)h->grey_pttl, left, sizeof(left)));
        fputc('\n', fp);
    }
    fprintf(fp, "  harvest:   %s%s%s\n", verdict_text(h->verdict),
            h->verdict == BS_HV_EXEMPT && e->d.harvest_result == BS_GREY_KNOWN
                ? " (in the exempt SET: the check answers KNOWN)"
                : "",
            skip ? skip : "");
}

/* bs_ctl_harvest_explain_json - the same facts as an object, or null */
json_t *bs_ctl_harvest_explain_json(const bs_ctl *c, const bs_ctl_explain *e)
{
    const bs_ctl_harvest_facts *h = &e->harvest;

    if (h->verdict == BS_HV_NONE)
        return json_null();
    return json_pack(
        "{s:s, s:s, s:s?, s:b, s:s, s:b, s:o, s:o, s:b, s:o, s:o, s:o}", "verdict",
        verdict_name(h->verdict), "detail", verdict_text(h->verdict), "rule", harvest_why(e),
        "checked", e->d.harvest_result != 0, "network", h->network, "under_attack",
        e->f.under_attack, "attack_value", h->attack ? json_string(h->attack_raw) : json_null(),
        "until", h->until >= 0 ? json_integer(h->until) : json_null(), "known", known_now(c, h),
        "known_at_ms", h->known_ms >= 0 ? json_integer(h->known_ms) : json_null(), "grey_first_ms",
        h->grey_ok ? json_integer(h->grey_ms) : json_null(), "grey_passes_at_ms",
        h->grey_ok ? json_integer(h->grey_ms + (json_int_t)c->cfg.harvest_retry_after_ms)
                   : json_null());
}
