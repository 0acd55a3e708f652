/*
 * ctl_domain.c - domain add|del|list and user add|del|list (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_domain_add   SADD domains; 0, a note per domain; warns when a
 *                       newly protected domain has no users (every recipient
 *                       would be deferred: directory_empty).
 *   bs_ctl_domain_del   SREM domains (with --purge, DEL rcpt:<domain> too,
 *                       in the same MULTI/EXEC). 1 when a domain was neither
 *                       protected nor had users to purge.
 *   bs_ctl_domain_list  domains with their user counts, mode (and its
 *                       source) and would-reject counts (ctl_mode.c); with
 *                       operands, only those (1 when one is not protected). --json: one
 *                       {"domains": [...], "missing": [...], "sync": {...}}
 *                       object ("sync": bs_ctl_sync_show).
 *   bs_ctl_user_add     SADD rcpt:<domain>: "DOMAIN LOCAL..." or
 *                       "ADDRESS...", "@domain" or "*" = catch-all.
 *                       A user is written as Postfix passes it, unquoted
 *                       ("john doe@example.com"): an operand with a byte
 *                       import refuses in a key (bs_ctl_local_bad_byte:
 *                       '"', '\\', controls, not UTF-8) is exit 2.
 *   bs_ctl_user_del     SREM; 1 when a user was not there; operands as add.
 *   bs_ctl_user_list    SMEMBERS, sorted, one a line (for scripts).
 *
 * Every operand is validated (addr.c, the daemon's own normalisation)
 * before anything is sent: a bad one is exit 2 and nothing is written.
 * Commands for several operands are pipelined: one round trip.
 *
 * NEVER
 *   Deletes users without --purge. Prints raw bytes from Redis (bs_ctl_safe).
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

/* One user operand, normalised. */
typedef struct user_item {
    char domain[BS_DOMAIN_MAX + 1];
    char local[BS_LOCAL_MAX + 1];
} user_item;

/* protected_domains - SISMEMBER domains for each of n domains into
 * is_prot[]; 0 / -1 */
static int protected_domains(bs_ctl *c, char (*domains)[BS_DOMAIN_MAX + 1], size_t n, int *is_prot)
{
    char key[BS_CTL_KEY_MAX];
    size_t i;
    int rc = 0;

    bs_ctl_key(c, key, sizeof(key), BS_KEY_DOMAINS, NULL);
    for (i = 0; i < n; i++) {
        const char *argv[] = {"SISMEMBER", key, domains[i]};
        if (bs_ctl_append(c, 3, argv, NULL) < 0)
            return -1;
    }
    for (i = 0; i < n; i++) {
        redisReply *rep = bs_ctl_read(c);
        if (!rep)
            return -1;
        if (bs_ctl_reply_ok(rep, REDIS_REPLY_INTEGER, "SISMEMBER"))
            is_prot[i] = rep->integer == 1;
        else
            rc = -1;
        freeReplyObject(rep);
    }
    return rc;
}

/* norm_all - every operand a domain; 0 or BS_CTL_USAGE */
static int norm_all(int argc, char **argv, char (*out)[BS_DOMAIN_MAX + 1])
{
    int i, rc = 0;

    for (i = 0; i < argc; i++)
        if (bs_ctl_norm_domain(argv[i], out[i]) != 0)
            rc = BS_CTL_USAGE;
    return rc;
}

/* bs_ctl_domain_add - SADD domains + SCARD rcpt per domain, pipelined */
int bs_ctl_domain_add(bs_ctl *c, int argc, char **argv)
{
    char(*dom)[BS_DOMAIN_MAX + 1] = calloc((size_t)argc, sizeof(*dom));
    char key[BS_CTL_KEY_MAX], rkey[BS_CTL_KEY_MAX];
    int i, rc = norm_all(argc, argv, dom);

    if (rc == 0 && bs_ctl_connect(c) < 0)
        rc = BS_CTL_FAIL;
    bs_ctl_key(c, key, sizeof(key), BS_KEY_DOMAINS, NULL);
    for (i = 0; rc == 0 && i < argc; i++) {
        bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, dom[i]);
        const char *sadd[] = {"SADD", key, dom[i]};
        const char *scard[] = {"SCARD", rkey};
        if (bs_ctl_append(c, 3, sadd, NULL) < 0 || bs_ctl_append(c, 2, scard, NULL) < 0)
            rc = BS_CTL_FAIL;
    }
    for (i = 0; rc == 0 && i < argc; i++) {
        redisReply *add = bs_ctl_read(c), *card = add ? bs_ctl_read(c) : NULL;

        if (!card || !bs_ctl_reply_ok(add, REDIS_REPLY_INTEGER, "SADD") ||
            !bs_ctl_reply_ok(card, REDIS_REPLY_INTEGER, "SCARD")) {
            rc = BS_CTL_FAIL;
        } else {
            printf("%s: %s\n", dom[i], add->integer ? "protected" : "already protected");
            if (card->integer == 0)
                bs_ctl_note("%s has no users yet: every recipient at %s is deferred (4xx) until "
                            "you add some (backstopctl user add %s LOCAL..., '*' for catch-all, "
                            "or backstopctl sync)",
                            dom[i], dom[i], dom[i]);
        }
        if (add)
            freeReplyObject(add);
        if (card)
            freeReplyObject(card);
    }
    free(dom);
    return rc;
}

/* del_one_reply - read one domain's MULTI/EXEC replies; -1 on error, else
 * bit 0 = was protected, and *users = the size of rcpt:<domain> */
static int del_one_reply(bs_ctl *c, long long *users)
{
    redisReply *rep;
    int i, rc = -1;

    for (i = 0; i < 3; i++) { /* +OK, QUEUED, QUEUED */
        if (!(rep = bs_ctl_read(c)))
            return -1;
        freeReplyObject(rep);
    }
    if (!(rep = bs_ctl_read(c)))
        return -1;
    /* without --purge the DEL is absent: EXEC has 2 or 3 replies */
    if (bs_ctl_reply_ok(rep, REDIS_REPLY_ARRAY, "EXEC") && rep->elements >= 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        *users = rep->element[1]->integer;
        rc = rep->element[0]->integer == 1;
    } else {
        bs_ctl_err("redis: SREM/SCARD: unexpected reply (is a key of another type?)");
    }
    freeReplyObject(rep);
    return rc;
}

/* bs_ctl_domain_del - per domain MULTI SREM SCARD [DEL] EXEC, pipelined */
int bs_ctl_domain_del(bs_ctl *c, int argc, char **argv)
{
    char(*dom)[BS_DOMAIN_MAX + 1] = calloc((size_t)argc, sizeof(*dom));
    char key[BS_CTL_KEY_MAX], rkey[BS_CTL_KEY_MAX];
    int purge = c->opt[BS_OPT_PURGE] != NULL;
    int i, rc = norm_all(argc, argv, dom), failed = 0;

    if (rc == 0 && bs_ctl_connect(c) < 0)
        rc = BS_CTL_FAIL;
    bs_ctl_key(c, key, sizeof(key), BS_KEY_DOMAINS, NULL);
    for (i = 0; rc == 0 && i < argc; i++) {
        bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, dom[i]);
        const char *multi[] = {"MULTI"}, *srem[] = {"SREM", key, dom[i]};
        const char *scard[] = {"SCARD", rkey}, *del[] = {"DEL", rkey}, *exec[] = {"EXEC"};
        if (bs_ctl_append(c, 1, multi, NULL) < 0 || bs_ctl_append(c, 3, srem, NULL) < 0 ||
            bs_ctl_append(c, 2, scard, NULL) < 0 || (purge && bs_ctl_append(c, 2, del, NULL) < 0) ||
            bs_ctl_append(c, 1, exec, NULL) < 0)
            rc = BS_CTL_FAIL;
    }
    for (i = 0; rc == 0 && i < argc; i++) {
        long long users = 0;
        int was;

        if (purge) { /* one more QUEUED */
            redisReply *q = bs_ctl_read(c);
            if (!q) {
                rc = BS_CTL_FAIL;
                break;
            }
            freeReplyObject(q);
        }
        if ((was = del_one_reply(c, &users)) < 0) {
            rc = BS_CTL_FAIL;
            break;
        }
        bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, dom[i]);
        printf("%s: %s", dom[i], was ? "no longer protected" : "was not protected");
        if (purge && users > 0)
            printf("; %s deleted (%lld user%s)\n", rkey, users, users == 1 ? "" : "s");
        else if (purge)
            printf("; no %s to delete\n", rkey);
        else
            printf("\n");
        if (!purge && users > 0)
            bs_ctl_note("%s (%lld user(s)) is kept; drop it with 'backstopctl domain del --purge "
                        "%s' or 'redis-cli DEL %s'",
                        rkey, users, dom[i], rkey);
        if (!was && !(purge && users > 0))
            failed = 1;
    }
    free(dom);
    return rc ? rc : failed ? BS_CTL_FAIL : BS_CTL_OK;
}

/* list_rows - print "DOMAIN  N users; mode M (SOURCE), N would-reject"
 * for n protected domains, or (out not NULL) append {"domain", "users",
 * "catch_all", "mode", "mode_source", "would_reject"} objects to out */
static int list_rows(bs_ctl *c, char **dom, size_t n, json_t *out)
{
    char rkey[BS_CTL_KEY_MAX], users[64];
    bs_ctl_mode *m = calloc(n + 1, sizeof(*m));
    size_t i, w = 6;
    int rc = 0;

    for (i = 0; i < n; i++)
        snprintf(m[i].domain, sizeof(m[i].domain), "%s", dom[i]);
    if (!m || bs_ctl_mode_read(c, m, n) < 0) {
        free(m);
        return BS_CTL_FAIL;
    }
    for (i = 0; i < n; i++) {
        bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, dom[i]);
        const char *scard[] = {"SCARD", rkey}, *star[] = {"SISMEMBER", rkey, "*"};
        if (bs_ctl_append(c, 2, scard, NULL) < 0 || bs_ctl_append(c, 3, star, NULL) < 0) {
            free(m);
            return BS_CTL_FAIL;
        }
        if (strlen(dom[i]) > w)
            w = strlen(dom[i]);
    }
    for (i = 0; i < n; i++) {
        redisReply *card = bs_ctl_read(c), *star = card ? bs_ctl_read(c) : NULL;

        if (!star || !bs_ctl_reply_ok(card, REDIS_REPLY_INTEGER, "SCARD") ||
            !bs_ctl_reply_ok(star, REDIS_REPLY_INTEGER, "SISMEMBER")) {
            rc = BS_CTL_FAIL;
        } else if (out) {
            json_array_append_new(
                out, json_pack("{s:o, s:I, s:b, s:s, s:s, s:I}", "domain",
                               bs_ctl_jstr(dom[i], strlen(dom[i])), "users",
                               (json_int_t)card->integer, "catch_all", star->integer == 1, "mode",
                               bs_mode_name(m[i].mode), "mode_source", bs_decide_mode_src(m[i].src),
                               "would_reject", (json_int_t)m[i].would_reject));
        } else {
            if (star->integer == 1)
                snprintf(users, sizeof(users), "catch-all (%lld member%s)", card->integer,
                         card->integer == 1 ? "" : "s");
            else
                snprintf(users, sizeof(users), "%lld user%s%s", card->integer,
                         card->integer == 1 ? "" : "s",
                         card->integer == 0 ? " (every recipient is refused)" : "");
            printf("%-*s  %s; mode %s (%s), %lld would-reject\n", (int)w, dom[i], users,
                   bs_mode_name(m[i].mode), bs_decide_mode_src(m[i].src), m[i].would_reject);
        }
        if (card)
            freeReplyObject(card);
        if (star)
            freeReplyObject(star);
        if (rc)
            break;
    }
    free(m);
    return rc;
}

/* bs_ctl_domain_list - all protected domains, or the ones asked for */
int bs_ctl_domain_list(bs_ctl *c, int argc, char **argv)
{
    char(*dom)[BS_DOMAIN_MAX + 1] = calloc((size_t)argc + 1, sizeof(*dom));
    int *prot = calloc((size_t)argc + 1, sizeof(*prot));
    char **rows = NULL, key[BS_CTL_KEY_MAX];
    json_t *jrows = c->opt[BS_OPT_JSON] ? json_array() : NULL, *jmissing = json_array();
    redisReply *all = NULL;
    size_t n = 0, i;
    int rc = norm_all(argc, argv, dom), missing = 0;

    if (rc == 0 && bs_ctl_connect(c) < 0)
        rc = BS_CTL_FAIL;
    if (rc == 0 && argc > 0) {
        rows = calloc((size_t)argc, sizeof(*rows));
        if (protected_domains(c, dom, (size_t)argc, prot) < 0)
            rc = BS_CTL_FAIL;
        for (i = 0; rc == 0 && i < (size_t)argc; i++) {
            if (prot[i])
                rows[n++] = dom[i];
            else {
                bs_ctl_err("%s: not a protected domain", dom[i]);
                json_array_append_new(jmissing, json_string(dom[i]));
                missing = 1;
            }
        }
    } else if (rc == 0) {
        bs_ctl_key(c, key, sizeof(key), BS_KEY_DOMAINS, NULL);
        if (!(all = bs_ctl_cmd(c, "SMEMBERS", key, (char *)NULL)) ||
            !bs_ctl_reply_ok(all, REDIS_REPLY_ARRAY, "SMEMBERS")) {
            rc = BS_CTL_FAIL;
        } else {
            rows = calloc(all->elements + 1, sizeof(*rows));
            for (i = 0; i < all->elements; i++)
                if (all->element[i]->type == REDIS_REPLY_STRING)
                    rows[n++] = all->element[i]->str;
            bs_ctl_sort_strings(rows, n);
            if (n == 0)
                bs_ctl_note("no protected domains (%s is empty)", key);
        }
    }
    if (rc == 0)
        rc = list_rows(c, rows, n, jrows);
    json_t *doc =
        jrows && rc == 0 ? json_pack("{s:O, s:O}", "domains", jrows, "missing", jmissing) : NULL;
    if (rc == 0 && doc && n == 0) /* none asked for is protected, or none at all */
        json_object_set_new(doc, "sync", json_object());
    else if (rc == 0 && (doc || (!jrows && n > 0)) &&
             bs_ctl_sync_show(c, rows, argc > 0 ? n : 0, doc) < 0)
        rc = BS_CTL_FAIL;
    if (all)
        freeReplyObject(all);
    free(rows);
    free(prot);
    free(dom);
    if (rc != 0 && doc) {
        json_decref(doc);
        doc = NULL;
    }
    json_decref(jrows);
    json_decref(jmissing);
    rc = rc ? rc : missing ? BS_CTL_FAIL : BS_CTL_OK;
    return doc ? bs_ctl_json_print(doc, rc) : rc;
}

/* parse_user - one operand into it (domain: the DOMAIN operand or NULL);
 * 0 or BS_CTL_USAGE (printed) */
static int parse_user(const char *arg, const char *domain, user_item *it)
{
    char buf[BS_ADDR_MAX + 2], shown[BS_ADDR_MAX + 8];
    const char *why;
    bs_addr a;
    size_t len = strlen(arg);

    bs_ctl_safe(arg, len, shown, sizeof(shown));
    if ((why = bs_ctl_local_bad_byte(arg, len)) != NULL) { /* as import refuses it */
        bs_ctl_err("%s: %s", shown, why);
        return BS_CTL_USAGE;
    }
    if (arg[0] == '@' || strcmp(arg, "*") == 0) { /* catch-all */
        const char *d = arg[0] == '@' ? arg + 1 : domain;
        if (!d || bs_domain_norm(d, strlen(d), it->domain) < 0) {
            bs_ctl_err("%s: not a catch-all of a domain (@DOMAIN, or '*' after DOMAIN)", shown);
            return BS_CTL_USAGE;
        }
        strcpy(it->local, "*");
    } else if (strchr(arg, '@')) {
        if (bs_addr_parse(arg, len, &a) < 0) {
            bs_ctl_err("%s: not a valid address", shown);
            return BS_CTL_USAGE;
        }
        memcpy(it->domain, a.domain, a.domain_len + 1);
        memcpy(it->local, a.local, a.local_len + 1);
    } else {
        if (!domain || len > BS_LOCAL_MAX) {
            bs_ctl_err("%s: %s", shown, domain ? "local part too long" : "not an address");
            return BS_CTL_USAGE;
        }
        snprintf(buf, sizeof(buf), "%s@%s", arg, domain);
        if (bs_addr_parse(buf, strlen(buf), &a) < 0) {
            bs_ctl_err("%s: not a valid local part", shown);
            return BS_CTL_USAGE;
        }
        memcpy(it->domain, a.domain, a.domain_len + 1);
        memcpy(it->local, a.local, a.local_len + 1);
    }
    if (domain && strcmp(it->domain, domain) != 0) {
        bs_ctl_err("%s: not an address at %s", shown, domain);
        return BS_CTL_USAGE;
    }
    return 0;
}

/* parse_users - "DOMAIN LOCAL..." or "ADDRESS..."; 0 or BS_CTL_USAGE */
static int parse_users(int argc, char **argv, user_item *items, size_t *n)
{
    char domain[BS_DOMAIN_MAX + 1];
    const char *dom = NULL;
    int i = 0, rc = 0;

    *n = 0;
    if (!strchr(argv[0], '@')) {
        if (bs_ctl_norm_domain(argv[0], domain) != 0)
            return BS_CTL_USAGE;
        if (argc < 2) {
            bs_ctl_err("%s: which users? (DOMAIN LOCAL..., or ADDRESS...)", domain);
            return BS_CTL_USAGE;
        }
        dom = domain;
        i = 1;
    }
    for (; i < argc; i++)
        if (parse_user(argv[i], dom, &items[(*n)++]) != 0)
            rc = BS_CTL_USAGE;
    return rc;
}

/* user_change - SADD/SREM each user; per-user line; 1 = some no-op on del */
static int user_change(bs_ctl *c, int argc, char **argv, const char *cmd)
{
    user_item *it = calloc((size_t)argc, sizeof(*it));
    char(*doms)[BS_DOMAIN_MAX + 1] = calloc((size_t)argc, sizeof(*doms));
    int *prot = calloc((size_t)argc, sizeof(*prot));
    char rkey[BS_CTL_KEY_MAX];
    size_t n, i, j, nd = 0;
    int add = strcmp(cmd, "SADD") == 0, rc = parse_users(argc, argv, it, &n), noop = 0;

    if (rc == 0 && bs_ctl_connect(c) < 0)
        rc = BS_CTL_FAIL;
    for (i = 0; rc == 0 && i < n; i++) {
        bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, it[i].domain);
        const char *argv2[] = {cmd, rkey, it[i].local};
        if (bs_ctl_append(c, 3, argv2, NULL) < 0)
            rc = BS_CTL_FAIL;
    }
    for (i = 0; rc == 0 && i < n; i++) {
        redisReply *rep = bs_ctl_read(c);
        char shown[BS_LOCAL_MAX * 4 + 1];

        if (!rep || !bs_ctl_reply_ok(rep, REDIS_REPLY_INTEGER, cmd)) {
            rc = BS_CTL_FAIL;
        } else {
            bs_ctl_safe(it[i].local, strlen(it[i].local), shown, sizeof(shown));
            printf("%s@%s: %s\n", shown, it[i].domain,
                   add ? (rep->integer ? "added" : "already present")
                       : (rep->integer ? "removed" : "was not there"));
            noop |= !add && rep->integer == 0;
        }
        if (rep)
            freeReplyObject(rep);
    }
    for (i = 0; rc == 0 && i < n; i++) { /* distinct domains, to warn once each */
        for (j = 0; j < nd && strcmp(doms[j], it[i].domain) != 0; j++)
            ;
        if (j == nd)
            strcpy(doms[nd++], it[i].domain);
    }
    if (rc == 0 && add && protected_domains(c, doms, nd, prot) < 0)
        rc = BS_CTL_FAIL;
    for (j = 0; rc == 0 && add && j < nd; j++)
        if (!prot[j])
            bs_ctl_note("%s is not a protected domain: its users are not checked until "
                        "'backstopctl domain add %s'",
                        doms[j], doms[j]);
    free(prot);
    free(doms);
    free(it);
    return rc ? rc : noop ? BS_CTL_FAIL : BS_CTL_OK;
}

/* bs_ctl_user_add - SADD rcpt:<domain> per user */
int bs_ctl_user_add(bs_ctl *c, int argc, char **argv)
{
    return user_change(c, argc, argv, "SADD");
}

/* bs_ctl_user_del - SREM rcpt:<domain> per user */
int bs_ctl_user_del(bs_ctl *c, int argc, char **argv)
{
    return user_change(c, argc, argv, "SREM");
}

/* bs_ctl_user_list - SMEMBERS, sorted, one a line, nothing else on stdout */
int bs_ctl_user_list(bs_ctl *c, int argc, char **argv)
{
    char dom[1][BS_DOMAIN_MAX + 1], rkey[BS_CTL_KEY_MAX], shown[BS_LOCAL_MAX * 4 + 8];
    redisReply *rep;
    char **v;
    size_t i, n = 0;
    int prot = 0;

    if (bs_ctl_norm_domain(argv[0], dom[0]) != 0)
        return BS_CTL_USAGE;
    if (bs_ctl_connect(c) < 0 || protected_domains(c, dom, 1, &prot) < 0)
        return BS_CTL_FAIL;
    bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, dom[0]);
    if (!(rep = bs_ctl_cmd(c, "SMEMBERS", rkey, (char *)NULL)))
        return BS_CTL_FAIL;
    if (!bs_ctl_reply_ok(rep, REDIS_REPLY_ARRAY, "SMEMBERS")) {
        freeReplyObject(rep);
        return BS_CTL_FAIL;
    }
    v = calloc(rep->elements + 1, sizeof(*v));
    for (i = 0; i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING)
            v[n++] = rep->element[i]->str;
    bs_ctl_sort_strings(v, n);
    for (i = 0; i < n; i++)
        printf("%s\n", bs_ctl_safe(v[i], strlen(v[i]), shown, sizeof(shown)));
    if (!prot)
        bs_ctl_note("%s is not a protected domain: these users are not checked", dom[0]);
    if (n == 0)
        bs_ctl_note("%s is empty", rkey);
    free(v);
    freeReplyObject(rep);
    return BS_CTL_OK;
}
