/*
 * ctl_ndr.c - ndr set|del|list|explain: the NDR policy hash (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_ndr_set      HSET ndr FIELD RULE. FIELD "example.org" (exact),
 *                       ".example.org" (subdomains only) or "*" (default);
 *                       RULE checked with bs_parse_ndr_rule (the parser the
 *                       daemon applies to the stored value) and stored in
 *                       its short form ("limit 10/1h").
 *   bs_ctl_ndr_del      HDEL; 1 when there was no such entry.
 *   bs_ctl_ndr_list     every entry, sorted ("*" last), unusable values
 *                       flagged, then the config's ndr_default.
 *   bs_ctl_ndr_explain  the daemon's NDR decision for a recipient domain,
 *                       candidate by candidate (ctl_explain.c runs
 *                       decide.c itself); --json: the same as one object.
 *
 * NEVER
 *   Stores a value the daemon would not parse.
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define NDR_FIELD_MAX (BS_DOMAIN_MAX + 2)

/* norm_field - "*", ".DOMAIN", "DOMAIN" or "[LITERAL]" (as the daemon
 * looks it up: addr.c's form); 0 or BS_CTL_USAGE (printed) */
static int norm_field(const char *arg, char *out)
{
    if (strcmp(arg, "*") == 0) {
        strcpy(out, "*");
        return 0;
    }
    if (arg[0] == '[') {
        char shown[NDR_FIELD_MAX + 8];

        if (bs_literal_norm(arg, strlen(arg), out) >= 0)
            return 0;
        bs_ctl_err("%s: not an address literal ([192.0.2.5] or [IPv6:2001:db8::1])",
                   bs_ctl_safe(arg, strlen(arg), shown, sizeof(shown)));
        return BS_CTL_USAGE;
    }
    if (arg[0] == '.') {
        out[0] = '.';
        return bs_ctl_norm_domain(arg + 1, out + 1);
    }
    return bs_ctl_norm_domain(arg, out);
}

/* usable - would the daemon parse this stored value? (it reads at most the
 * first 63 bytes, as bs_facts holds them) */
static int usable(const char *v, size_t len, bs_ndr_rule *r)
{
    bs_facts f;

    if (len > sizeof(f.ndr_value) - 1)
        len = sizeof(f.ndr_value) - 1;
    return bs_parse_ndr_rule(v, len, r) == 0;
}

/* bs_ctl_ndr_set - validate the rule as the daemon will, HSET its short form */
int bs_ctl_ndr_set(bs_ctl *c, int argc, char **argv)
{
    char field[NDR_FIELD_MAX], text[256], rule_s[64], key[BS_CTL_KEY_MAX], was[96];
    size_t n = 0;
    bs_ndr_rule rule;
    redisReply *old, *set;
    int i;

    if (norm_field(argv[0], field) != 0)
        return BS_CTL_USAGE;
    for (i = 1; i < argc; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", i > 1 ? " " : "", argv[i]);
    if (n >= sizeof(text) || bs_parse_ndr_rule(text, strlen(text), &rule) < 0) {
        bs_ctl_err("%s: not an NDR rule: allow, deny or limit N/PERIOD (N 1..1000000, PERIOD "
                   "1s..30d, e.g. limit 10/1h), optionally followed by report",
                   bs_ctl_safe(text, strlen(text), was, sizeof(was)));
        return BS_CTL_USAGE;
    }
    bs_ctl_rule_text(&rule, rule_s, sizeof(rule_s));
    if (bs_ctl_connect(c) < 0)
        return BS_CTL_FAIL;
    bs_ctl_key(c, key, sizeof(key), BS_KEY_NDR, NULL);
    const char *hget[] = {"HGET", key, field}, *hset[] = {"HSET", key, field, rule_s};
    if (bs_ctl_append(c, 3, hget, NULL) < 0 || bs_ctl_append(c, 4, hset, NULL) < 0)
        return BS_CTL_FAIL;
    old = bs_ctl_read(c);
    set = old ? bs_ctl_read(c) : NULL;
    if (!set || !bs_ctl_reply_ok(set, REDIS_REPLY_INTEGER, "HSET")) {
        if (old)
            freeReplyObject(old);
        if (set)
            freeReplyObject(set);
        return BS_CTL_FAIL;
    }
    if (old->type == REDIS_REPLY_STRING)
        bs_ctl_safe(old->str, old->len, was, sizeof(was));
    printf("ndr %s = %s (%s%s)\n", field, rule_s, old->type == REDIS_REPLY_STRING ? "was " : "new",
           old->type == REDIS_REPLY_STRING ? was : "");
    if (field[0] == '.')
        bs_ctl_note("%s matches the subdomains of %s, not %s itself", field, field + 1, field + 1);
    freeReplyObject(old);
    freeReplyObject(set);
    return BS_CTL_OK;
}

/* bs_ctl_ndr_del - HDEL; 1 when there was no such entry */
int bs_ctl_ndr_del(bs_ctl *c, int argc, char **argv)
{
    char field[NDR_FIELD_MAX], key[BS_CTL_KEY_MAX];
    redisReply *rep;
    int rc;

    if (norm_field(argv[0], field) != 0)
        return BS_CTL_USAGE;
    if (bs_ctl_connect(c) < 0)
        return BS_CTL_FAIL;
    bs_ctl_key(c, key, sizeof(key), BS_KEY_NDR, NULL);
    if (!(rep = bs_ctl_cmd(c, "HDEL", key, field, (char *)NULL)))
        return BS_CTL_FAIL;
    if (!bs_ctl_reply_ok(rep, REDIS_REPLY_INTEGER, "HDEL")) {
        rc = BS_CTL_FAIL;
    } else if (rep->integer == 0) {
        bs_ctl_err("ndr %s: no such entry", field);
        rc = BS_CTL_FAIL;
    } else {
        printf("ndr %s deleted\n", field);
        rc = BS_CTL_OK;
    }
    freeReplyObject(rep);
    return rc;
}

/* One entry of the hash, pointing into the HGETALL reply. */
typedef struct ndr_pair {
    const redisReply *field, *value;
} ndr_pair;

/* pair_order - exact and ".suffix" entries by domain, "*" last */
static int pair_order(const void *a, const void *b)
{
    const char *x = ((const ndr_pair *)a)->field->str, *y = ((const ndr_pair *)b)->field->str;
    int xs = strcmp(x, "*") == 0, ys = strcmp(y, "*") == 0;

    if (xs != ys)
        return xs - ys;
    return strcmp(x + (x[0] == '.'), y + (y[0] == '.'));
}

/* bs_ctl_ndr_list - HGETALL, sorted, unusable values flagged */
int bs_ctl_ndr_list(bs_ctl *c, int argc, char **argv)
{
    char f[NDR_FIELD_MAX * 4], v[96], rule_s[64];
    redisReply *rep;
    ndr_pair *pairs;
    size_t i, n, w = 22;
    bs_ndr_rule r;

    if (!(rep = bs_ctl_hgetall(c, BS_KEY_NDR)))
        return BS_CTL_FAIL;
    n = rep->elements / 2;
    pairs = calloc(n + 1, sizeof(*pairs));
    for (i = 0; i < n; i++) {
        pairs[i].field = rep->element[2 * i];
        pairs[i].value = rep->element[2 * i + 1];
        if (pairs[i].field->len > w)
            w = pairs[i].field->len;
    }
    qsort(pairs, n, sizeof(*pairs), pair_order);
    for (i = 0; i < n; i++) {
        const redisReply *fr = pairs[i].field, *vr = pairs[i].value;
        printf("%-*s  %s%s\n", (int)w, bs_ctl_safe(fr->str, fr->len, f, sizeof(f)),
               bs_ctl_safe(vr->str, vr->len, v, sizeof(v)),
               usable(vr->str, vr->len, &r) ? ""
                                            : "   <- not a rule: when it matches, the daemon "
                                              "logs a warning and uses ndr_default");
    }
    printf("%-*s  %s   (config, when no entry matches)\n", (int)w, "ndr_default ([policy])",
           bs_ctl_rule_text(&c->cfg.ndr_default, rule_s, sizeof(rule_s)));
    free(pairs);
    freeReplyObject(rep);
    return BS_CTL_OK;
}

/* explain_json - what ndr explain prints, as one object (see backstopctl(8)) */
static json_t *explain_json(const bs_ctl *c, const bs_ctl_explain *e, const char *answer)
{
    json_t *cands = json_array(), *budget = json_null();
    unsigned i;

    for (i = 0; i < e->d.nndr; i++)
        json_array_append_new(cands,
                              json_pack("{s:s, s:s?}", "field", bs_decide_ndr_field(&e->d, i),
                                        "value", e->ndr_present[i] ? e->ndr_raw[i] : NULL));
    if (e->ndr_rule.action == BS_NDR_LIMIT)
        budget = json_pack("{s:I, s:I, s:o}", "used", (json_int_t)e->ndr_used, "limit",
                           (json_int_t)e->ndr_rule.limit, "ttl_ms",
                           e->ndr_pttl >= 0 ? json_integer(e->ndr_pttl) : json_null());
    return json_pack("{s:s, s:s++, s:o, s:o, s:s, s:b, s:o, s:o, s:b, s:s, s:s}", "domain",
                     e->d.rcpt.domain, "recipient", e->d.rcpt.local, "@", e->d.rcpt.domain,
                     "candidates", cands, "ndr_default", bs_ctl_json_rule(&c->cfg.ndr_default),
                     "winner", e->ndr_winner, "winner_unusable", e->ndr_unusable, "rule",
                     bs_ctl_json_rule(&e->ndr_rule), "budget", budget, "protected",
                     e->f.protected_domain, "action", answer, "reason", bs_why_name(e->d.why));
}

/* bs_ctl_ndr_explain - a bounce to DOMAIN through decide.c, shown step by step */
int bs_ctl_ndr_explain(bs_ctl *c, int argc, char **argv)
{
    bs_ctl_explain *e;
    char domain[BS_DOMAIN_MAX + 1], rcpt[BS_ADDR_MAX + 16], reply[BS_REPLY_MAX];
    bs_addr a;
    int rc = BS_CTL_OK, len;

    if (strchr(argv[0], '@')) {
        if (bs_addr_parse(argv[0], strlen(argv[0]), &a) < 0) {
            bs_ctl_err("%s: not a valid address", argv[0]);
            return BS_CTL_USAGE;
        }
        snprintf(rcpt, sizeof(rcpt), "%s@%s", a.local, a.domain);
    } else {
        if (argv[0][0] == '.' || argv[0][0] == '*') {
            bs_ctl_err("ndr explain takes a recipient domain (example.org), not an entry");
            return BS_CTL_USAGE;
        }
        if (bs_ctl_norm_domain(argv[0], domain) != 0)
            return BS_CTL_USAGE;
        snprintf(rcpt, sizeof(rcpt), "postmaster@%s", domain);
    }
    if (!(e = calloc(1, sizeof(*e))))
        return BS_CTL_FAIL;
    len = bs_ctl_request_text(e->text, sizeof(e->text), "", rcpt, NULL, NULL);
    if (len < 0) {
        bs_ctl_err("%s: too long", argv[0]);
        free(e);
        return BS_CTL_USAGE;
    }
    e->len = (size_t)len;
    if (bs_ctl_connect(c) < 0 || bs_ctl_explain_run(c, e) < 0) {
        free(e);
        return BS_CTL_FAIL;
    }
    if (e->redis_failed || !e->ndr_known) {
        bs_ctl_err("cannot explain: a Redis lookup failed");
        free(e);
        return BS_CTL_FAIL;
    }
    len = (int)bs_decide_reply(&e->d, &c->cfg, reply);
    while (len > 0 && reply[len - 1] == '\n')
        reply[--len] = 0;
    if (c->opt[BS_OPT_JSON]) {
        rc = bs_ctl_json_print(explain_json(c, e, reply + 7), rc);
        free(e);
        return rc;
    }
    printf("bounces (null sender) to %s:\n", e->d.rcpt.domain);
    bs_ctl_explain_ndr(c, e, stdout, "  ");
    if (e->f.protected_domain) {
        printf("but %s is a protected domain: the NDR policy does not apply to it; bounces to "
               "it are accepted for its users only (rcpt:%s)\n",
               e->d.rcpt.domain, e->d.rcpt.domain);
    }
    printf("a bounce to %s@%s gets: %s (reason %s)\n", e->d.rcpt.local, e->d.rcpt.domain, reply + 7,
           bs_why_name(e->d.why));
    free(e);
    return rc;
}
