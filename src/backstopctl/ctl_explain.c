/*
 * ctl_explain.c - re-derive backstopd's verdict for one request (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_request_text  a realistic RCPT-state policy request.
 *   bs_ctl_explain_run   run it through decide.c (the daemon's own rules,
 *                        same normalisation, same NDR candidate list), with
 *                        the facts read from Redis by the same queries the
 *                        daemon's store sends (GET block, SMISMEMBER exempt,
 *                        SISMEMBER domains, SMISMEMBER rcpt, HMGET ndr,
 *                        HMGET mode <domain> "*"), and
 *                        the follow-up lookups decide.c asks for as it asks
 *                        the daemon (the exempt SET for a blocked client;
 *                        for an unknown user of a protected domain the
 *                        directory: SCARD rcpt:<domain>, HGET sync
 *                        <domain>:ok with max_directory_age), interpreted by
 *                        store_reply.c, the daemon's own reader
 *                        (bs_store_reply_apply). 0, or -1 on an I/O error
 *                        (printed).
 *                        For a recipient of a protected domain the harvest
 *                        facts are read too, before the rules (ctl_harvest.c:
 *                        they set facts.under_attack as the daemon's table
 *                        of attacks does), and when decide.c asks for its
 *                        HARVEST step the check's result computed from them
 *                        (bs_ctl_harvest_result, nothing written) is fed to
 *                        bs_decide_harvest.
 *   bs_ctl_explain_ndr   print the NDR candidates and which one decided.
 *   bs_ctl_explain_print print every fact and the rule that decided.
 *   bs_ctl_explain_reply / _rule
 *                        the predicted reply and reason: decide.c's.
 *
 * WHY NOT OUR OWN RULES
 *   So "ndr explain", "check" and "purge-queue" can never disagree with the
 *   daemon: the only logic here is reading Redis and printing. The one
 *   computation is the harvest check's result (ctl_harvest.c), the store
 *   script's reading of the keys, which the daemon's store does too: what
 *   that result answers is decide.c's.
 *
 * NEVER
 *   Writes to Redis. A "limit" rule is predicted from ndrcount:<domain>
 *   (the daemon's script INCRs it and refuses past N); nothing is taken.
 *   The harvest check's first sight of (network, recipient) is not
 *   recorded (the daemon's check records it).
 *
 * LIMITS
 *   The directory's age is this host's clock minus the sync time, as the
 *   daemon's is its own: a prediction near max_directory_age may differ.
 *   Predictions use this host's backstop.ini: a daemon started with another
 *   file (mode, ndr_default, exempt, recipient_delimiter) may differ; check
 *   says so when the daemon's answer is not the predicted one.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backstop/cidr.h"
#include "ctl.h"
#include "backstop/store_reply.h"

/* What each pipelined reply is. */
enum reply_kind {
    R_BLOCK = 1,
    R_PTTL,
    R_EXEMPT,
    R_DOMAIN,
    R_RCPT,
    R_NDR,
    R_DIR_SIZE,
    R_DIR_SYNC,
    R_MODE
};
#define R_MAX 9                /* replies of one round trip: every kind once */
#define BS_CTL_LOOKUPS 3       /* round trips: the first, exempt, directory */
#define BS_CTL_HARVEST_STEPS 1 /* decide.c asks for the harvest check once */

/* has_control - a value that would break the request's line structure */
static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* bs_ctl_request_text - attribute lines, the order smtpd sends them */
int bs_ctl_request_text(char *out, size_t outsz, const char *sender, const char *recipient,
                        const char *client, const char *helo)
{
    /* the attributes Postfix 3.x smtpd sends at RCPT time, in its order */
    const struct {
        const char *name, *value;
    } attrs[] = {
        {"request", "smtpd_access_policy"},
        {"protocol_state", "RCPT"},
        {"protocol_name", "ESMTP"},
        {"client_address", client},
        {"client_name", "unknown"},
        {"client_port", client ? "48562" : NULL},
        {"reverse_client_name", "unknown"},
        {"server_address", "127.0.0.1"},
        {"server_port", "25"},
        {"helo_name", helo ? helo : "backstopctl.invalid"},
        {"sender", sender},
        {"recipient", recipient},
        {"recipient_count", "0"},
        {"queue_id", ""},
        {"instance", NULL}, /* filled below */
        {"size", "0"},
        {"etrn_domain", ""},
        {"stress", ""},
        {"sasl_method", ""},
        {"sasl_username", ""},
        {"sasl_sender", ""},
        {"ccert_subject", ""},
        {"ccert_issuer", ""},
        {"ccert_fingerprint", ""},
        {"ccert_pubkey_fingerprint", ""},
        {"encryption_protocol", ""},
        {"encryption_cipher", ""},
        {"encryption_keysize", "0"},
        {"policy_context", "backstopctl"},
        {"compatibility_level", "3.6"},
        {"mail_version", "3.7.11"},
    };
    char instance[64];
    size_t i, n = 0;
    int w;

    snprintf(instance, sizeof(instance), "%lx.%lx.%lx.0", (unsigned long)getpid(),
             (unsigned long)time(NULL), (unsigned long)clock());
    for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        const char *v = strcmp(attrs[i].name, "instance") == 0 ? instance : attrs[i].value;
        if (!v)
            continue;
        if (has_control(v))
            return -1;
        w = snprintf(out + n, outsz - n, "%s=%s\n", attrs[i].name, v);
        if (w < 0 || (size_t)w >= outsz - n)
            return -1;
        n += (size_t)w;
    }
    if (n + 2 > outsz)
        return -1;
    out[n++] = '\n';
    out[n] = 0;
    return (int)n;
}

/* send_directory - SCARD rcpt:<domain> [HGET sync <domain>:ok], as the
 * daemon's store queues them; the number queued, or -1 */
static int send_directory(bs_ctl *c, const bs_lookup *q, uint8_t *kinds)
{
    char rkey[BS_CTL_KEY_MAX], skey[BS_CTL_KEY_MAX], field[BS_DOMAIN_MAX + sizeof BS_SYNC_OK_FIELD];
    const char *scard[] = {"SCARD", rkey}, *hget[] = {"HGET", skey, field};

    bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, q->directory);
    bs_ctl_key(c, skey, sizeof(skey), BS_KEY_SYNC, NULL);
    snprintf(field, sizeof(field), "%s%s", q->directory, BS_SYNC_OK_FIELD);
    if (bs_ctl_append(c, 2, scard, NULL) < 0)
        return -1;
    kinds[0] = R_DIR_SIZE;
    if (!q->directory_synced)
        return 1;
    if (bs_ctl_append(c, 3, hget, NULL) < 0)
        return -1;
    kinds[1] = R_DIR_SYNC;
    return 2;
}

/* send_lookup - pipeline the daemon's queries for q; kinds[] records what
 * each reply is. Returns the number queued, or -1. */
static int send_lookup(bs_ctl *c, const bs_lookup *q, uint8_t *kinds)
{
    const char *argv[2 + BS_NDR_MAX_FIELDS];
    size_t lens[2 + BS_NDR_MAX_FIELDS];
    char bkey[BS_CTL_KEY_MAX], xkey[BS_CTL_KEY_MAX], dkey[BS_CTL_KEY_MAX], rkey[BS_CTL_KEY_MAX],
        nkey[BS_CTL_KEY_MAX], mkey[BS_CTL_KEY_MAX];
    int n = 0, m;
    unsigned i;

    if (q->client_key) {
        bs_ctl_key(c, bkey, sizeof(bkey), BS_KEY_BLOCK, q->client_key);
        const char *get[] = {"GET", bkey}, *pttl[] = {"PTTL", bkey};
        if (bs_ctl_append(c, 2, get, NULL) < 0 || bs_ctl_append(c, 2, pttl, NULL) < 0)
            return -1;
        kinds[n++] = R_BLOCK;
        kinds[n++] = R_PTTL;
    }
    if (q->nexempt) {
        bs_ctl_key(c, xkey, sizeof(xkey), BS_KEY_EXEMPT, NULL);
        argv[0] = "SMISMEMBER";
        argv[1] = xkey;
        for (i = 0; i < q->nexempt; i++)
            argv[2 + i] = q->exempt[i];
        if (bs_ctl_append(c, 2 + (int)q->nexempt, argv, NULL) < 0)
            return -1;
        kinds[n++] = R_EXEMPT;
    }
    if (q->domain) {
        bs_ctl_key(c, dkey, sizeof(dkey), BS_KEY_DOMAINS, NULL);
        const char *sis[] = {"SISMEMBER", dkey, q->domain};
        if (bs_ctl_append(c, 3, sis, NULL) < 0)
            return -1;
        kinds[n++] = R_DOMAIN;
    }
    if (q->domain && q->nlocals) {
        bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, q->domain);
        argv[0] = "SMISMEMBER";
        argv[1] = rkey;
        lens[0] = strlen(argv[0]);
        lens[1] = strlen(rkey);
        for (i = 0; i < q->nlocals; i++) {
            argv[2 + i] = q->locals[i];
            lens[2 + i] = q->local_lens[i];
        }
        if (bs_ctl_append(c, 2 + (int)q->nlocals, argv, lens) < 0)
            return -1;
        kinds[n++] = R_RCPT;
    }
    if (q->nndr) {
        bs_ctl_key(c, nkey, sizeof(nkey), BS_KEY_NDR, NULL);
        argv[0] = "HMGET";
        argv[1] = nkey;
        for (i = 0; i < q->nndr; i++)
            argv[2 + i] = q->ndr_fields[i];
        if (bs_ctl_append(c, 2 + (int)q->nndr, argv, NULL) < 0)
            return -1;
        kinds[n++] = R_NDR;
    }
    if (q->mode_domain) {
        bs_ctl_key(c, mkey, sizeof(mkey), BS_KEY_MODE, NULL);
        const char *hmget[] = {"HMGET", mkey, q->mode_domain, "*"};
        if (bs_ctl_append(c, 4, hmget, NULL) < 0)
            return -1;
        kinds[n++] = R_MODE;
    }
    if (q->directory) {
        if ((m = send_directory(c, q, kinds + n)) < 0)
            return -1;
        n += m;
    }
    return n;
}

/* apply - one reply into the facts with the daemon's own reader
 * (bs_store_reply_apply), plus the per-member detail shown to the admin;
 * 0 / -1 */
static int apply(bs_ctl_explain *e, int kind, const redisReply *rep)
{
    static const int store_kind[] = {
        [R_BLOCK] = BS_REPLY_BLOCK,       [R_EXEMPT] = BS_REPLY_EXEMPT,
        [R_DOMAIN] = BS_REPLY_DOMAIN,     [R_RCPT] = BS_REPLY_RCPT,
        [R_NDR] = BS_REPLY_NDR,           [R_DIR_SIZE] = BS_REPLY_DIR_SIZE,
        [R_DIR_SYNC] = BS_REPLY_DIR_SYNC, [R_MODE] = BS_REPLY_MODE,
    };
    int unused = 0;
    size_t i;

    if (kind == R_PTTL) {
        e->block_pttl = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
        return 0;
    }
    if (kind < R_BLOCK || kind > R_MODE ||
        bs_store_reply_apply(store_kind[kind], rep, &e->f, &unused) < 0)
        return -1;
    if (kind == R_EXEMPT || kind == R_RCPT) {
        for (i = 0; i < rep->elements && i < 3; i++)
            (kind == R_EXEMPT ? e->exempt_hit : e->rcpt_hit)[i] = rep->element[i]->integer == 1;
    } else if (kind == R_NDR) {
        for (i = 0; i < rep->elements && i < BS_NDR_MAX_FIELDS; i++) {
            const redisReply *v = rep->element[i];
            if (v->type != REDIS_REPLY_STRING)
                continue;
            e->ndr_present[i] = 1;
            bs_ctl_safe(v->str, v->len, e->ndr_raw[i], sizeof(e->ndr_raw[i]));
        }
        e->ndr_known = 1;
    }
    return 0;
}

/* ndr_verdict - the NDR rule decide.c picks from these facts, as if the
 * domain were not protected and the client not blocked */
static void ndr_verdict(const bs_ctl *c, bs_ctl_explain *e)
{
    bs_decision *nd = malloc(sizeof(*nd));
    bs_facts nf = e->f;

    if (!nd)
        return;
    *nd = e->d;
    nf.blocked = 0;
    nf.protected_domain = 0;
    nf.mode_found[0] = nf.mode_found[1] = 0; /* the rule, whatever the mode */
    bs_decide_facts(nd, &c->cfg, &nf, NULL);
    snprintf(e->ndr_winner, sizeof(e->ndr_winner), "%s",
             bs_decide_ndr_match(nd) ? bs_decide_ndr_match(nd) : "?");
    e->ndr_rule = nd->ndr_rule;
    e->ndr_unusable = e->f.ndr_index >= 0 && strcmp(e->ndr_winner, "ndr_default") == 0;
    free(nd);
}

/* ndr_budget - ndrcount:<domain> and its TTL; 0 / -1 */
static int ndr_budget(bs_ctl *c, bs_ctl_explain *e)
{
    char key[BS_CTL_KEY_MAX];
    redisReply *get, *pttl;

    bs_ctl_key(c, key, sizeof(key), BS_KEY_NDRCOUNT, e->d.rcpt.domain);
    const char *a1[] = {"GET", key}, *a2[] = {"PTTL", key};
    if (bs_ctl_append(c, 2, a1, NULL) < 0 || bs_ctl_append(c, 2, a2, NULL) < 0)
        return -1;
    get = bs_ctl_read(c);
    pttl = get ? bs_ctl_read(c) : NULL;
    if (!pttl) {
        if (get)
            freeReplyObject(get);
        return -1;
    }
    e->ndr_used = get->type == REDIS_REPLY_STRING ? strtoll(get->str, NULL, 10) : 0;
    e->ndr_pttl = pttl->type == REDIS_REPLY_INTEGER ? pttl->integer : -2;
    if (e->ndr_pttl < 0) /* the daemon's script starts a new period */
        e->ndr_used = 0;
    freeReplyObject(get);
    freeReplyObject(pttl);
    return 0;
}

/* round_trip - send q, read each reply into e->f (a bad one sets
 * e->redis_failed); 0, or -1 on an I/O error */
static int round_trip(bs_ctl *c, bs_ctl_explain *e, const bs_lookup *q)
{
    uint8_t kinds[R_MAX];
    int n, i;

    if ((n = send_lookup(c, q, kinds)) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        redisReply *rep = bs_ctl_read(c);
        if (!rep)
            return -1;
        if (apply(e, kinds[i], rep) < 0) {
            bs_ctl_reply_ok(rep, -1, "lookup");
            e->redis_failed = 1;
        }
        freeReplyObject(rep);
    }
    if (e->f.dir_known)
        e->f.dir_now = (long long)time(NULL); /* as the daemon: its wall clock */
    return 0;
}

/* without_harvest - the reason decide.c gives when the harvest check
 * passes, for the rule line (a copy; the directory not read: as if sound) */
static int without_harvest(const bs_ctl *c, const bs_ctl_explain *e)
{
    bs_decision *nd = malloc(sizeof(*nd));
    int why = -1;

    if (!nd)
        return -1;
    *nd = e->d;
    if (bs_decide_harvest(nd, &c->cfg, BS_GREY_PASS, NULL) == BS_DECIDE_DONE)
        why = nd->why;
    free(nd);
    return why;
}

/* follow_ups - the steps decide.c asks for after the first lookup (the
 * exempt SET, the harvest check, the directory), each as the daemon runs
 * it; 0 / -1 (I/O) */
static int follow_ups(bs_ctl *c, bs_ctl_explain *e)
{
    bs_lookup q;
    int rounds = 1, harvests = 0;

    e->step = bs_decide_facts(&e->d, &c->cfg, &e->f, &q);
    while (e->step == BS_DECIDE_LOOKUP || e->step == BS_DECIDE_HARVEST) {
        if (e->step == BS_DECIDE_HARVEST) {
            if (harvests++ == BS_CTL_HARVEST_STEPS)
                break;
            /* the facts were read before the rules (ctl_harvest.c) */
            e->step = bs_decide_harvest(&e->d, &c->cfg, bs_ctl_harvest_result(c, e), &q);
            continue;
        }
        if (rounds++ == BS_CTL_LOOKUPS)
            break;
        if (round_trip(c, e, &q) < 0)
            return -1;
        if (e->redis_failed)
            return 0;
        if (q.nexempt) { /* shown by print_client */
            memcpy(e->q.exempt, q.exempt, sizeof(q.exempt));
            e->q.nexempt = q.nexempt;
        }
        e->dir_looked_up |= q.directory != NULL;
        e->step = bs_decide_facts(&e->d, &c->cfg, &e->f, &q);
    }
    if (e->step != BS_DECIDE_DONE && e->step != BS_DECIDE_NDR_TAKE) {
        bs_ctl_err("internal error: decide.c asked more than the daemon can");
        return -1;
    }
    return 0;
}

/* bs_ctl_explain_run - decide.c's steps, with facts read from Redis */
int bs_ctl_explain_run(bs_ctl *c, bs_ctl_explain *e)
{
    size_t used;
    int rc = 0;

    bs_proto_reset(&e->req);
    if (bs_proto_feed(&e->req, e->text, e->len, &used) != BS_PROTO_DONE) {
        bs_ctl_err("internal error: the request does not parse");
        return -1;
    }
    memset(&e->f, 0, sizeof(e->f));
    e->f.ndr_index = -1;
    e->block_pttl = -1;
    e->ndr_pttl = -2;
    e->dir_looked_up = 0;
    e->harvest_without = -1;
    e->step = bs_decide_begin(&e->d, &c->cfg, &e->req, &e->q);
    if (e->step == BS_DECIDE_DONE)
        return 0;
    if (round_trip(c, e, &e->q) < 0)
        return -1;
    if (!e->redis_failed) {
        if (e->ndr_known)
            ndr_verdict(c, e);
        if (e->ndr_known && e->ndr_rule.action == BS_NDR_LIMIT)
            rc = ndr_budget(c, e);
        /* before the rules: facts.under_attack (ctl_harvest.c) */
        if (bs_ctl_harvest_explain_run(c, e) < 0)
            return -1;
    }
    if (!e->redis_failed && follow_ups(c, e) < 0)
        return -1;
    if (e->redis_failed) { /* in the first lookup, the harvest facts or a follow-up */
        bs_decide_fallback(&e->d, &c->cfg, BS_WHY_REDIS_ERROR);
        e->step = BS_DECIDE_DONE;
        return 0;
    }
    if (e->step == BS_DECIDE_NDR_TAKE) {
        bs_decide_taken(&e->d, &c->cfg, e->ndr_used + 1 <= (long long)e->d.ndr_rule.limit ? 1 : 0);
        e->step = BS_DECIDE_DONE;
    }
    bs_ctl_harvest_explain_settle(c, e);
    if (e->d.why == BS_WHY_HARVEST_GREY || e->d.why == BS_WHY_HARVEST_DEFER)
        e->harvest_without = without_harvest(c, e);
    return rc;
}

/* bs_ctl_explain_reply - decide.c's reply */
size_t bs_ctl_explain_reply(const bs_ctl *c, const bs_ctl_explain *e, char *out)
{
    return bs_decide_reply(&e->d, &c->cfg, out);
}

/* bs_ctl_explain_rule - decide.c's reason */
const char *bs_ctl_explain_rule(const bs_ctl_explain *e)
{
    return bs_why_name(e->d.why);
}

/* bs_ctl_explain_ndr - every candidate, its value, which one decided */
void bs_ctl_explain_ndr(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp, const char *indent)
{
    char rule[64], left[32];
    unsigned i, ndots;
    int winner = e->ndr_unusable ? -2 : e->f.ndr_index;

    fprintf(fp, "%scandidates, most specific first (the first one set decides):\n", indent);
    for (i = 0; i < e->d.nndr; i++) {
        const char *mark = (int)i != e->f.ndr_index ? NULL
                           : e->ndr_unusable
                               ? "<- first set, but not a rule: the daemon logs a warning and "
                                 "uses ndr_default"
                               : "<- decides";
        const char *val = e->ndr_present[i] ? e->ndr_raw[i] : "-";
        if (mark)
            fprintf(fp, "%s  %-28s %-14s %s\n", indent, bs_decide_ndr_field(&e->d, i), val, mark);
        else
            fprintf(fp, "%s  %-28s %s\n", indent, bs_decide_ndr_field(&e->d, i), val);
    }
    for (i = 0, ndots = 0; e->d.rcpt.domain[i]; i++)
        ndots += e->d.rcpt.domain[i] == '.';
    if (e->d.nndr >= 2 && ndots > e->d.nndr - 2)
        fprintf(fp,
                "%s  (%u longer parent suffixes are not looked up: the daemon consults "
                "the %u shortest only)\n",
                indent, ndots - (e->d.nndr - 2), e->d.nndr - 2);
    bs_ctl_rule_text(&c->cfg.ndr_default, rule, sizeof(rule));
    if (winner < 0)
        fprintf(fp, "%s  %-28s %-14s <- decides\n", indent, "ndr_default ([policy])", rule);
    else
        fprintf(fp, "%s  %-28s %s\n", indent, "ndr_default ([policy])", rule);
    fprintf(fp, "%sresult: %s (from %s)\n", indent,
            bs_ctl_rule_text(&e->ndr_rule, rule, sizeof(rule)), e->ndr_winner);
    if (e->ndr_rule.action == BS_NDR_LIMIT) {
        long long n = e->ndr_used, max = e->ndr_rule.limit;
        if (e->ndr_pttl >= 0)
            fprintf(fp, "%sbudget: %lld of %lld used in this period (%s left), %s\n", indent, n,
                    max, bs_ctl_remaining((uint64_t)e->ndr_pttl, left, sizeof(left)),
                    n < max ? "the next bounce is accepted" : "the next bounce is refused");
        else
            fprintf(fp, "%sbudget: none used yet: the next bounce is accepted\n", indent);
    }
}

/* reply_text - the predicted reply without "action=" and line ends */
static void reply_text(const bs_ctl *c, const bs_ctl_explain *e, char *out, size_t outsz)
{
    char r[BS_REPLY_MAX];
    size_t n = bs_ctl_explain_reply(c, e, r);

    while (n > 0 && r[n - 1] == '\n')
        n--;
    r[n] = 0;
    snprintf(out, outsz, "%s", strncmp(r, "action=", 7) == 0 ? r + 7 : r);
}

/* print_client - rule 1's facts */
static void print_client(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp)
{
    const bs_decision *d = &e->d;
    char net[64], left[32], key[BS_CTL_KEY_MAX];
    unsigned i;
    uint8_t ip[16];

    if (!d->client_key[0]) {
        fprintf(fp, "  client:    no usable client address: never blocked or counted\n");
        return;
    }
    fprintf(fp, "  client:    %s", d->client_ip);
    if (strcmp(d->client_ip, d->client_key) != 0)
        fprintf(fp, " (counted and blocked as %s)", d->client_key);
    fputc('\n', fp);
    if (d->cidr_exempt && bs_ip_parse(d->client_ip, strlen(d->client_ip), ip) > 0) {
        for (i = 0; i < c->cfg.nexempt && !bs_cidr_match(&c->cfg.exempt[i], ip); i++)
            ;
        fprintf(fp, "  exempt:    yes, [ratelimit] exempt %s: never blocked or counted\n",
                i < c->cfg.nexempt ? bs_ctl_cidr_text(&c->cfg.exempt[i], net, sizeof(net)) : "?");
        return;
    }
    bs_ctl_key(c, key, sizeof(key), BS_KEY_EXEMPT, NULL);
    for (i = 0; i < e->q.nexempt && !e->exempt_hit[i]; i++)
        ;
    if (i < e->q.nexempt)
        fprintf(fp, "  exempt:    yes, %s is in %s: never blocked or counted\n", e->q.exempt[i],
                key);
    else
        fprintf(fp, "  exempt:    no\n");
    if (e->f.blocked)
        fprintf(fp, "  blocked:   yes, reason \"%s\", %s left%s\n", e->f.block_reason,
                e->block_pttl >= 0 ? bs_ctl_remaining((uint64_t)e->block_pttl, left, sizeof(left))
                                   : "no expiry,",
                e->f.exempt ? " (ignored: exempt)" : "");
    else
        fprintf(fp, "  blocked:   no\n");
}

/* print_rcpt - rule 3's facts: each local part looked up, and why */
static void print_rcpt(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp)
{
    char key[BS_CTL_KEY_MAX], shown[BS_LOCAL_MAX * 4 + 1];
    unsigned i;

    bs_ctl_key(c, key, sizeof(key), BS_KEY_RCPT, e->d.rcpt.domain);
    for (i = 0; i < e->q.nlocals; i++) {
        const char *what = i == 0                  ? "the local part"
                           : i == e->q.nlocals - 1 ? "the catch-all"
                                                   : "without its extension";
        bs_ctl_safe(e->q.locals[i], e->q.local_lens[i], shown, sizeof(shown));
        fprintf(fp, "  %-10s %-20s %s %s (%s)\n", i == 0 ? "users:" : "", shown,
                e->rcpt_hit[i] ? "in" : "not in", key, what);
    }
}

/* print_directory - the second lookup's facts (an unknown user only) */
static void print_directory(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp)
{
    char key[BS_CTL_KEY_MAX], age[32], max[32];
    long long now = e->f.dir_now, at = e->f.dir_synced_at;

    bs_ctl_key(c, key, sizeof(key), BS_KEY_RCPT, e->d.rcpt.domain);
    fprintf(fp, "  directory: %s has %lld member%s%s\n", key, e->f.dir_size,
            e->f.dir_size == 1 ? "" : "s",
            e->f.dir_size <= 0 ? " (empty or missing: the daemon defers, never refuses)" : "");
    if (!c->cfg.max_directory_age_ms)
        return;
    bs_ctl_duration(c->cfg.max_directory_age_ms, max, sizeof(max));
    if (at <= 0)
        fprintf(fp, "  synced:    never successfully (max_directory_age %s)\n", max);
    else
        fprintf(fp, "  synced:    last successful sync %s ago (max_directory_age %s)\n",
                bs_ctl_remaining(now > at ? (uint64_t)(now - at) * 1000 : 0, age, sizeof(age)),
                max);
}

/* bs_ctl_mode_from - where a decision's mode came from, for people */
const char *bs_ctl_mode_from(const bs_ctl *c, int src, const char *domain, char *out, size_t outsz)
{
    char key[BS_CTL_KEY_MAX];

    bs_ctl_key(c, key, sizeof(key), BS_KEY_MODE, NULL);
    if (src == BS_MODE_SRC_DOMAIN)
        snprintf(out, outsz, "%s field %s", key, domain);
    else if (src == BS_MODE_SRC_STAR)
        snprintf(out, outsz, "%s field *", key);
    else
        snprintf(out, outsz, "[policy] mode");
    return out;
}

/* print_mode - the decision's mode, where it came from, values ignored */
static void print_mode(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp)
{
    const bs_decision *d = &e->d;
    char from[BS_CTL_KEY_MAX + BS_DOMAIN_MAX + 16];
    int i;

    fprintf(fp, "  mode:      %s (from %s)\n", bs_mode_name(d->mode),
            bs_ctl_mode_from(c, d->mode_src, d->rcpt.domain, from, sizeof(from)));
    for (i = 0; i < 2; i++)
        if (d->mode_bad & (1 << i)) {
            char v[BS_MODE_VALUE_MAX * 4];
            bs_ctl_safe(e->f.mode_value[i], e->f.mode_len[i], v, sizeof(v));
            fprintf(fp,
                    "             (field %s holds \"%s%s\", no mode: ignored; the daemon warns)\n",
                    i == 0 ? d->rcpt.domain : "*", v, e->f.mode_cut[i] ? "..." : "");
        }
}

/* bs_ctl_explain_print - the facts of each rule, then the rule */
void bs_ctl_explain_print(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp)
{
    const bs_decision *d = &e->d;
    char reply[600], dkey[BS_CTL_KEY_MAX];

    reply_text(c, e, reply, sizeof(reply));
    if (e->q.domain == NULL && !e->redis_failed) { /* decided before any lookup */
        bs_decision_text t;
        bs_decide_text(d, &t);
        fprintf(fp, "  recipient: %s: not a usable address, nothing looked up\n", t.to);
    } else if (e->redis_failed) {
        fprintf(fp, "  redis:     a lookup failed: the daemon answers with on_redis_error\n");
    } else {
        bs_ctl_key(c, dkey, sizeof(dkey), BS_KEY_DOMAINS, NULL);
        print_client(c, e, fp);
        fprintf(fp, "  domain:    %s: %s\n", d->rcpt.domain,
                e->f.protected_domain ? "protected (in domains)" : "not protected");
        print_mode(c, e, fp);
        bs_decision_text t;
        bs_decide_text(d, &t);
        fprintf(fp, "  sender:    %s\n", d->null_sender ? "null (a bounce)" : t.from);
        if (e->f.protected_domain)
            print_rcpt(c, e, fp);
        if (e->dir_looked_up)
            print_directory(c, e, fp);
        else if (d->null_sender && e->ndr_known) {
            fprintf(fp, "  ndr policy for %s:\n", d->rcpt.domain);
            bs_ctl_explain_ndr(c, e, fp, "    ");
        }
        bs_ctl_harvest_explain_print(c, e, fp); /* nothing unless it was looked at */
    }
    fprintf(fp, "  rule:      %s", bs_ctl_explain_rule(e));
    switch (d->why) {
    case BS_WHY_BLOCKED:
        fprintf(fp, " (1: the client is blocked, whatever the recipient)");
        break;
    case BS_WHY_VALID:
        fprintf(fp, " (3: a known user of a protected domain)");
        break;
    case BS_WHY_UNKNOWN_USER:
        fprintf(fp, " (3: not a user of a protected domain%s)",
                d->note_invalid ? "; counts an invalid recipient for the client" : "");
        break;
    case BS_WHY_DIR_EMPTY:
        fprintf(fp, " (3: not a user, but the domain's user set is empty: a 4xx, not a 550)");
        break;
    case BS_WHY_DIR_STALE:
        fprintf(fp, " (3: not a user, but the last successful sync is older than "
                    "max_directory_age: a 4xx, not a 550)");
        break;
    case BS_WHY_UNPROTECTED:
        fprintf(fp, " (5: not a bounce, and not a protected domain: nothing to check)");
        break;
    case BS_WHY_MODE_OFF:
        fprintf(fp, " (the mode is off for this recipient: nothing checked or counted)");
        break;
    case BS_WHY_HARVEST_GREY:
    case BS_WHY_HARVEST_DEFER:
        fprintf(fp,
                " (3: harvest detection: a new client of a domain under attack, the same "
                "answer for every recipient%s; without it: %s%s)",
                d->note_invalid ? "; counts an invalid recipient for the client" : "",
                e->harvest_without >= 0 ? bs_why_name(e->harvest_without) : "?",
                e->harvest_without == BS_WHY_UNKNOWN_USER && !d->facts.dir_known
                    ? ", the directory not read"
                    : "");
        break;
    case BS_WHY_NDR_ALLOW:
    case BS_WHY_NDR_DENY:
    case BS_WHY_NDR_UNDER:
    case BS_WHY_NDR_LIMIT:
        fprintf(fp, " (2: a bounce to a domain that is not protected: NDR policy)");
        break;
    default:
        break;
    }
    if (bs_decide_would_reject(d, &c->cfg))
        fprintf(fp, "\n  report:    %s: only logged and counted in %s%s, the mail passes",
                d->mode == BS_MODE_REPORT ? "report mode" : "the NDR entry says report",
                c->cfg.prefix, BS_KEY_WOULDREJECT);
    fprintf(fp, "\n  answer:    %s\n", reply);
}
