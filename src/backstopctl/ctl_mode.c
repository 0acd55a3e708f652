/*
 * ctl_mode.c - domain mode and stats --domain: the per-domain mode HASH and
 * the would-reject counts (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_mode_read     for n domains (or "*"): whether each is protected,
 *                        its mode fields (HMGET mode <domain> "*", read by
 *                        store_reply.c, the daemon's reader), the mode the
 *                        daemon gives its recipients (decide.c's
 *                        bs_decide_mode) and its would-reject count (HGET
 *                        wouldreject <domain>); one pipelined round trip.
 *   bs_ctl_domain_mode   domain mode DOMAIN|* [enforce|report|off|default]:
 *                        show the effective mode and where it comes from;
 *                        HSET mode DOMAIN MODE; "default": HDEL (1 when
 *                        there was no entry). --json for the show form.
 *   bs_ctl_stats_domain  stats --domain DOMAIN: its mode (and source),
 *                        would-reject count, users and last sync.
 *
 * The mode applies at once on every backstopd (it is read with each
 * request, or from the mirror kept exact by invalidations): no reload.
 *
 * NEVER
 *   Stores a value the daemon would not parse (only the canonical words).
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "backstop/store_reply.h"

#define MODE_REPLIES 3 /* per domain: SISMEMBER domains, HMGET mode, HGET wouldreject */

/* norm_target - DOMAIN (the daemon's canonical form) or "*"; 0 or
 * BS_CTL_USAGE (printed) */
static int norm_target(const char *arg, char *out)
{
    if (strcmp(arg, "*") == 0) {
        strcpy(out, "*");
        return 0;
    }
    return bs_ctl_norm_domain(arg, out);
}

/* read_one - the three replies of one domain into m; 0 / -1 (printed) */
static int read_one(bs_ctl *c, bs_ctl_mode *m)
{
    static const int kinds[MODE_REPLIES] = {BS_REPLY_DOMAIN, BS_REPLY_MODE, 0};
    int i, rc = 0, unused;

    for (i = 0; i < MODE_REPLIES; i++) {
        redisReply *rep = bs_ctl_read(c);
        if (!rep)
            return -1;
        if (kinds[i] && bs_store_reply_apply(kinds[i], rep, &m->f, &unused) < 0) {
            bs_ctl_reply_ok(rep, -1, i == 0 ? "SISMEMBER" : "HMGET");
            rc = -1;
        } else if (!kinds[i] && rep->type == REDIS_REPLY_STRING) {
            m->would_reject = strtoll(rep->str, NULL, 10);
        } else if (!kinds[i] && rep->type != REDIS_REPLY_NIL) {
            bs_ctl_reply_ok(rep, REDIS_REPLY_STRING, "HGET");
            rc = -1;
        }
        freeReplyObject(rep);
    }
    m->mode = bs_decide_mode(&c->cfg, &m->f, &m->src, &m->bad);
    return rc;
}

/* bs_ctl_mode_read - see ctl.h */
int bs_ctl_mode_read(bs_ctl *c, bs_ctl_mode *m, size_t n)
{
    char dkey[BS_CTL_KEY_MAX], mkey[BS_CTL_KEY_MAX], wkey[BS_CTL_KEY_MAX];
    size_t i;
    int rc = 0;

    if (bs_ctl_connect(c) < 0)
        return -1;
    bs_ctl_key(c, dkey, sizeof(dkey), BS_KEY_DOMAINS, NULL);
    bs_ctl_key(c, mkey, sizeof(mkey), BS_KEY_MODE, NULL);
    bs_ctl_key(c, wkey, sizeof(wkey), BS_KEY_WOULDREJECT, NULL);
    for (i = 0; i < n; i++) {
        const char *sis[] = {"SISMEMBER", dkey, m[i].domain};
        const char *hmget[] = {"HMGET", mkey, m[i].domain, "*"};
        const char *hget[] = {"HGET", wkey, m[i].domain};
        if (bs_ctl_append(c, 3, sis, NULL) < 0 || bs_ctl_append(c, 4, hmget, NULL) < 0 ||
            bs_ctl_append(c, 3, hget, NULL) < 0)
            return -1;
    }
    for (i = 0; i < n; i++) {
        memset(&m[i].f, 0, sizeof(m[i].f));
        m[i].f.ndr_index = -1;
        m[i].would_reject = 0;
        if (read_one(c, &m[i]) < 0)
            rc = -1; /* the replies of the others are still read */
    }
    return rc;
}

/* mode_from - where m's mode comes from, for people */
static const char *mode_from(const bs_ctl *c, const bs_ctl_mode *m, char *out, size_t outsz)
{
    return bs_ctl_mode_from(c, m->src, m->domain, out, outsz);
}

/* field_json - a mode field's raw value, or null */
static json_t *field_json(const bs_ctl_mode *m, int i)
{
    char v[BS_MODE_VALUE_MAX + 3];

    if (!m->f.mode_found[i])
        return json_null();
    /* a value too long to be a mode was cut: it ends in "..." */
    snprintf(v, sizeof(v), "%.*s%s", (int)m->f.mode_len[i], m->f.mode_value[i],
             m->f.mode_cut[i] ? "..." : "");
    return bs_ctl_jstr(v, strlen(v));
}

/* mode_json - the members every mode object has */
static json_t *mode_json(const bs_ctl *c, const bs_ctl_mode *m)
{
    return json_pack("{s:s, s:b, s:s, s:s, s:o, s:o, s:s, s:I}", "domain", m->domain, "protected",
                     m->f.protected_domain, "mode", bs_mode_name(m->mode), "mode_source",
                     bs_decide_mode_src(m->src), "field", field_json(m, 0), "star",
                     field_json(m, 1), "config", bs_mode_name(c->cfg.mode), "would_reject",
                     (json_int_t)m->would_reject);
}

/* notes - what an admin should know about m's mode */
static void notes(const bs_ctl *c, const bs_ctl_mode *m)
{
    char key[BS_CTL_KEY_MAX], v[BS_MODE_VALUE_MAX * 4];
    int i;

    bs_ctl_key(c, key, sizeof(key), BS_KEY_MODE, NULL);
    for (i = 0; i < 2; i++)
        if (m->bad & (1 << i))
            bs_ctl_note("%s field %s holds \"%s%s\", which is no mode (enforce, report, off): the "
                        "daemon ignores it and warns",
                        key, i == 0 ? m->domain : "*",
                        bs_ctl_safe(m->f.mode_value[i], m->f.mode_len[i], v, sizeof(v)),
                        m->f.mode_cut[i] ? "..." : "");
    if (strcmp(m->domain, "*") != 0 && !m->f.protected_domain && m->f.mode_found[0])
        bs_ctl_note("%s is not a protected domain: its own field applies once it is; bounces to "
                    "it and blocked clients follow '*', then [policy] mode",
                    m->domain);
}

/* show - the effective mode of one domain (or "*") */
static int show(bs_ctl *c, bs_ctl_mode *m)
{
    char from[BS_CTL_KEY_MAX + BS_DOMAIN_MAX + 16];

    if (bs_ctl_mode_read(c, m, 1) < 0)
        return BS_CTL_FAIL;
    if (c->opt[BS_OPT_JSON])
        return bs_ctl_json_print(mode_json(c, m), BS_CTL_OK);
    printf("%s: %s (from %s)%s\n", m->domain, bs_mode_name(m->mode),
           mode_from(c, m, from, sizeof(from)),
           strcmp(m->domain, "*") == 0 ? ""
           : m->f.protected_domain     ? ""
                                       : "; not a protected domain");
    printf("would-reject: %lld\n", m->would_reject);
    notes(c, m);
    return BS_CTL_OK;
}

/* set - HSET mode DOMAIN MODE, or HDEL for "default"; then show */
static int set(bs_ctl *c, bs_ctl_mode *m, const char *word)
{
    char key[BS_CTL_KEY_MAX], shown[64];
    int mode = strcasecmp(word, "default") == 0 ? -2 : bs_parse_mode(word, strlen(word));
    redisReply *rep;
    int had;

    if (mode == -1) {
        bs_ctl_err("%s: not a mode: enforce, report, off, or default (use the next in line: "
                   "'*', then [policy] mode)",
                   bs_ctl_safe(word, strlen(word), shown, sizeof(shown)));
        return BS_CTL_USAGE;
    }
    if (bs_ctl_connect(c) < 0)
        return BS_CTL_FAIL;
    bs_ctl_key(c, key, sizeof(key), BS_KEY_MODE, NULL);
    rep = mode == -2 ? bs_ctl_cmd(c, "HDEL", key, m->domain, (char *)NULL)
                     : bs_ctl_cmd(c, "HSET", key, m->domain, bs_mode_name(mode), (char *)NULL);
    if (!rep || !bs_ctl_reply_ok(rep, REDIS_REPLY_INTEGER, mode == -2 ? "HDEL" : "HSET")) {
        if (rep)
            freeReplyObject(rep);
        return BS_CTL_FAIL;
    }
    had = rep->integer > 0;
    freeReplyObject(rep);
    if (mode == -2 && !had)
        printf("%s had no mode of its own\n", m->domain);
    if (show(c, m) != BS_CTL_OK)
        return BS_CTL_FAIL;
    return mode == -2 && !had ? BS_CTL_FAIL : BS_CTL_OK;
}

/* bs_ctl_domain_mode - show, set, or reset one domain's (or "*") mode */
int bs_ctl_domain_mode(bs_ctl *c, int argc, char **argv)
{
    bs_ctl_mode m;

    memset(&m, 0, sizeof(m));
    if (norm_target(argv[0], m.domain) != 0)
        return BS_CTL_USAGE;
    if (argc == 1)
        return show(c, &m);
    if (c->opt[BS_OPT_JSON]) {
        bs_ctl_err("--json is for showing a mode, not for setting one");
        return BS_CTL_USAGE;
    }
    return set(c, &m, argv[1]);
}

/* users - SCARD rcpt:<domain> and SISMEMBER rcpt:<domain> "*"; 0 / -1 */
static int users(bs_ctl *c, const char *domain, long long *n, int *catch_all)
{
    char rkey[BS_CTL_KEY_MAX];
    redisReply *card, *star;
    int rc = -1;

    bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, domain);
    const char *scard[] = {"SCARD", rkey}, *sis[] = {"SISMEMBER", rkey, "*"};
    if (bs_ctl_append(c, 2, scard, NULL) < 0 || bs_ctl_append(c, 3, sis, NULL) < 0)
        return -1;
    card = bs_ctl_read(c);
    star = card ? bs_ctl_read(c) : NULL;
    if (star && bs_ctl_reply_ok(card, REDIS_REPLY_INTEGER, "SCARD") &&
        bs_ctl_reply_ok(star, REDIS_REPLY_INTEGER, "SISMEMBER")) {
        *n = card->integer;
        *catch_all = star->integer == 1;
        rc = 0;
    }
    if (card)
        freeReplyObject(card);
    if (star)
        freeReplyObject(star);
    return rc;
}

/* bs_ctl_stats_domain - stats --domain DOMAIN */
int bs_ctl_stats_domain(bs_ctl *c)
{
    char from[BS_CTL_KEY_MAX + BS_DOMAIN_MAX + 16], *one[1];
    bs_ctl_mode m;
    long long n = 0;
    int catch_all = 0;
    json_t *doc;

    memset(&m, 0, sizeof(m));
    if (bs_ctl_norm_domain(c->opt[BS_OPT_DOMAIN], m.domain) != 0)
        return BS_CTL_USAGE;
    if (bs_ctl_mode_read(c, &m, 1) < 0 || users(c, m.domain, &n, &catch_all) < 0)
        return BS_CTL_FAIL;
    one[0] = m.domain;
    if (c->opt[BS_OPT_JSON]) {
        doc = mode_json(c, &m);
        json_object_set_new(doc, "users", json_integer(n));
        json_object_set_new(doc, "catch_all", json_boolean(catch_all));
        if (bs_ctl_sync_show(c, one, 1, doc) < 0) {
            json_decref(doc);
            return BS_CTL_FAIL;
        }
        return bs_ctl_json_print(doc, BS_CTL_OK);
    }
    printf("domain:        %s (%s)\n", m.domain,
           m.f.protected_domain ? "protected" : "not protected");
    printf("mode:          %s (from %s)\n", bs_mode_name(m.mode),
           mode_from(c, &m, from, sizeof(from)));
    printf("would-reject:  %lld\n", m.would_reject);
    if (catch_all)
        printf("users:         catch-all (%lld member%s)\n", n, n == 1 ? "" : "s");
    else
        printf("users:         %lld\n", n);
    notes(c, &m);
    return bs_ctl_sync_show(c, one, 1, NULL) < 0 ? BS_CTL_FAIL : BS_CTL_OK;
}
