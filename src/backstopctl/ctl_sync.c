/*
 * ctl_sync.c - sync [--dry-run] [--force] [--quiet] [--json] [SOURCE...]: make each
 * domain's user set what its directory sources say
 *
 * PROVIDES
 *   bs_ctl_sync  the command. Exit status (BS_SYNC_EXIT_*): 0 every domain
 *                written or unchanged; 1 a source failed or a write failed
 *                (those domains are left alone, the others are written);
 *                3 no failure, but a guard refused a domain (max_shrink or
 *                empty; --force lifts it); 2 a bad command line (an unknown
 *                SOURCE): nothing was done.
 *
 * HOW
 *   1. Every named source (default: all [source NAME] sections) is read by
 *      sync.c, all or nothing; a failed source is reported and its domains
 *      are not written.
 *   2. Per domain, in order of first appearance: WATCH rcpt:<domain>,
 *      SMEMBERS it, and let bs_sync_plan decide. One line per domain:
 *        example.com: +2 -1 =1200 (added: bob, carol; removed: dave)
 *   3. A domain to write: its new set is built in tmp:sync:<domain>:<pid>
 *      (bs_ctl_fill_set: pipelined SADD batches, 1h TTL), WATCHed and
 *      counted (SCARD: all of it, or it was evicted meanwhile and the domain
 *      fails), then one
 *      MULTI/EXEC does RENAME tmp -> rcpt:<domain>, PERSIST, HSET sync
 *      <domain> RECORD (and SADD domains <domain> with [sync] add_domains
 *      = yes). A reader of
 *      rcpt:<domain> sees the old set or the new one, never a mix. If the
 *      set was changed meanwhile (user add ...), WATCH aborts the EXEC: the
 *      domain is reported as failed and left as the other writer made it.
 *      A domain whose new set would be empty is written (with --force) as
 *      DEL rcpt:<domain>.
 *   4. Every other domain gets only its record (HSET sync <domain>), so
 *      "redis-cli HGETALL backstop:sync" shows when each domain was last
 *      looked at and what came of it. --dry-run writes nothing at all.
 *
 * OUTPUT
 *   Per source and per domain on stdout, a summary line; failures and
 *   refusals on stderr. --quiet (cron) prints only those. On a terminal,
 *   stderr shows the progress of long reads and writes.
 *
 * NEVER
 *   Writes a domain whose source failed, a half-built set, or an unchanged
 *   set (not even with the same members: only the record is touched).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "sync.h"
#include "source_int.h"

#define BS_SYNC_SHOW_NAMES 5 /* names shown per list in a domain line */
#define BS_SYNC_RECORD_MAX 512

enum { BS_SYNC_EXIT_OK = 0, BS_SYNC_EXIT_FAIL = 1, BS_SYNC_EXIT_REFUSED = 3 };

typedef struct sync_run {
    bs_ctl *c;
    bs_sync s;
    int dry_run, force, quiet, progress;
    json_t *jsources, *jdomains; /* --json: owned, NULL otherwise */
    uint64_t now;                /* Redis TIME, seconds */
    size_t written, unchanged, refused, failed;
} sync_run;

/* say - a normal line on stdout, unless --quiet or --json */
static void say(const sync_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const sync_run *r, const char *fmt, ...)
{
    va_list ap;

    if (r->quiet || r->jdomains)
        return;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

/* read_progress - "reading relay: 12000 entries" on the terminal */
static void read_progress(void *arg, size_t entries)
{
    fprintf(stderr, "\rreading %s: %zu entries", (const char *)arg, entries);
    fflush(stderr);
}

/* source_json - --json: {"source", "ok", "entries", "bad", "foreign",
 * "bad_shown", "error"} of the source just read (error NULL: it was read) */
static void source_json(sync_run *r, const char *name, const char *error)
{
    json_t *shown = json_array();

    if (!r->jsources) {
        json_decref(shown);
        return;
    }
    for (size_t b = 0; shown && !error && b < r->s.bad && b < BS_SYNC_SHOW_BAD; b++)
        json_array_append_new(shown, json_string(r->s.bad_shown[b]));
    json_array_append_new(
        r->jsources,
        json_pack("{s:o, s:b, s:I, s:I, s:I, s:o, s:o}", "source", json_string(name), "ok",
                  error == NULL, "entries", (json_int_t)r->s.entries, "bad", (json_int_t)r->s.bad,
                  "foreign", (json_int_t)r->s.foreign, "bad_shown", shown ? shown : json_null(),
                  "error", error ? bs_ctl_jstr(error, strlen(error)) : json_null()));
}

/* unread_sources - a domain read in this run that a source not named also
 * feeds is not written: its set is the union of all its sources, and
 * writing the part read would take the other sources' users away */
static void unread_sources(sync_run *r, int argc, char **argv)
{
    const bs_config *cfg = &r->c->cfg;

    for (size_t k = 0; k < cfg->nsources; k++) {
        const bs_source *src = &cfg->sources[k];
        int named = 0;
        for (int i = 0; i < argc; i++)
            named |= strcmp(src->name, argv[i]) == 0;
        for (size_t j = 0; !named && j < src->ndomains; j++)
            for (size_t i = 0; i < r->s.ndom; i++) {
                bs_sync_domain *d = &r->s.dom[i];
                if (strcmp(d->name, src->domains[j]) != 0 || d->failed)
                    continue;
                snprintf(d->why, sizeof d->why,
                         "[source %s] feeds it too and was not read: name it as well, or run sync "
                         "without names",
                         src->name);
                d->failed = 1;
            }
    }
}

/* read_sources - step 1 for the named sources (all when argc is 0);
 * BS_CTL_USAGE for an unknown name, else 0 */
static int read_sources(sync_run *r, int argc, char **argv)
{
    const bs_config *cfg = &r->c->cfg;
    char err[512];

    for (int i = 0; i < argc; i++) {
        size_t k;
        for (k = 0; k < cfg->nsources && strcmp(cfg->sources[k].name, argv[i]) != 0; k++)
            ;
        if (k == cfg->nsources) {
            bs_ctl_err("sync: no [source %s] in %s", argv[i], r->c->config_path);
            return BS_CTL_USAGE;
        }
    }
    for (size_t k = 0; k < cfg->nsources; k++) {
        bs_source src = cfg->sources[k];
        const char *why = NULL;
        bs_sync_reader reader;
        int named = argc == 0;

        for (int i = 0; i < argc; i++)
            named |= strcmp(src.name, argv[i]) == 0;
        if (!named)
            continue;
        if (r->progress) {
            src.progress = read_progress;
            src.progress_arg = src.name;
        }
        reader = bs_sync_reader_for(src.type, &why);
        if (!reader)
            snprintf(err, sizeof err, "%s", why);
        if (!reader ? bs_sync_fail(&r->s, &src, err)
                    : bs_sync_read(&r->s, &src, reader, err, sizeof err)) {
            if (r->progress && r->s.entries >= BS_SRC_PROGRESS_EVERY)
                fputc('\n', stderr);
            bs_ctl_err("source %s failed: %s: its domains are left as they are", src.name, err);
            source_json(r, src.name, err);
            continue;
        }
        if (r->progress && r->s.entries >= BS_SRC_PROGRESS_EVERY)
            fputc('\n', stderr);
        say(r, "source %s: %zu entries, %zu not addresses, %zu of other domains\n", src.name,
            r->s.entries, r->s.bad, r->s.foreign);
        for (size_t b = 0; b < r->s.bad && b < BS_SYNC_SHOW_BAD; b++)
            say(r, "  not an address: %s\n", r->s.bad_shown[b]);
        source_json(r, src.name, NULL);
    }
    if (argc > 0)
        unread_sources(r, argc, argv);
    return 0;
}

/* names - "bob, carol, ... (+N)" from the first BS_SYNC_SHOW_NAMES of v */
static const char *names(const char *const *v, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    char shown[BS_LOCAL_MAX * 4 + 1];

    out[0] = '\0';
    for (size_t i = 0; i < n && i < BS_SYNC_SHOW_NAMES && o < outsz; i++)
        o += (size_t)snprintf(out + o, outsz - o, "%s%s", i ? ", " : "",
                              bs_ctl_safe(v[i], strlen(v[i]), shown, sizeof shown));
    if (n > BS_SYNC_SHOW_NAMES && o < outsz)
        snprintf(out + o, outsz - o, ", ... (+%zu)", n - BS_SYNC_SHOW_NAMES);
    return out;
}

/* domain_line - "example.com: +2 -1 =1200 (added: ...; removed: ...)" */
static void domain_line(const sync_run *r, const bs_sync_domain *d, FILE *fp)
{
    char a[512], b[512];

    if ((r->quiet || r->jdomains) && fp == stdout)
        return;
    fprintf(fp, "%s: +%zu -%zu =%zu", d->name, d->nadded, d->nremoved, d->kept);
    if (d->nadded || d->nremoved) {
        fprintf(fp, " (");
        if (d->nadded)
            fprintf(fp, "added: %s%s", names(d->added, d->nadded, a, sizeof a),
                    d->nremoved ? "; " : "");
        if (d->nremoved)
            fprintf(fp, "removed: %s", names(d->removed, d->nremoved, b, sizeof b));
        fprintf(fp, ")");
    }
}

/* exec_watched - MULTI, the n commands, EXEC. 1 done, 0 aborted by WATCH,
 * -1 error (printed). */
static int exec_watched(bs_ctl *c, const char **cmds[], const int *argcs, size_t n)
{
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    redisReply *rep;
    int rc = 1;

    if (bs_ctl_append(c, 1, multi, NULL) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (bs_ctl_append(c, argcs[i], cmds[i], NULL) < 0)
            return -1;
    if (bs_ctl_append(c, 1, exec, NULL) < 0)
        return -1;
    for (size_t i = 0; i <= n; i++) { /* +OK, QUEUED ... */
        if (!(rep = bs_ctl_read(c)))
            return -1;
        if (!bs_ctl_reply_ok(rep, REDIS_REPLY_STATUS, i ? cmds[i - 1][0] : "MULTI"))
            rc = -1;
        freeReplyObject(rep);
    }
    if (!(rep = bs_ctl_read(c)))
        return -1;
    if (rep->type == REDIS_REPLY_NIL) {
        freeReplyObject(rep);
        return 0;
    }
    if (!bs_ctl_reply_ok(rep, REDIS_REPLY_ARRAY, "EXEC"))
        rc = -1;
    for (size_t i = 0; rc == 1 && i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_ERROR) {
            bs_ctl_reply_ok(rep->element[i], REDIS_REPLY_STATUS, cmds[i][0]);
            rc = -1;
        }
    freeReplyObject(rep);
    return rc;
}

/* write_progress - "writing example.com: 20000/50000" for big sets */
static void write_progress(void *arg, size_t done, size_t total)
{
    const bs_sync_domain *d = arg;

    if (total < BS_CTL_FILL_BATCH * 10)
        return;
    fprintf(stderr, "\rwriting %s: %zu/%zu%s", d->name, done, total, done == total ? "\n" : "");
    fflush(stderr);
}

/* record_failed - best effort after a failed write: UNWATCH, the domain's
 * record says write-failed, and its <domain>:ok is put back as it was
 * (prev_ok; "" = absent; NULL = not touched: no EXEC was sent) in case an
 * EXEC ran with an error inside. The outcome is set; nothing is printed. */
static void record_failed(sync_run *r, bs_sync_domain *d, const char *prev_ok)
{
    char rec[BS_CTL_KEY_MAX], okf[BS_DOMAIN_MAX + sizeof BS_SYNC_OK_FIELD],
        value[BS_SYNC_RECORD_MAX];
    const char *unwatch[] = {"UNWATCH"}, *hset[] = {"HSET", rec, d->name, value};
    const char *restore[] = {"HSET", rec, okf, prev_ok ? prev_ok : ""},
               *hdel[] = {"HDEL", rec, okf};

    d->outcome = BS_SYNC_WRITE_FAILED;
    if (r->c->redis->err)
        return;
    bs_ctl_key(r->c, rec, sizeof rec, BS_KEY_SYNC, NULL);
    snprintf(okf, sizeof okf, "%s%s", d->name, BS_SYNC_OK_FIELD);
    bs_sync_record(d, r->now, value, sizeof value);
    int ncmd = prev_ok ? 3 : 2;

    if (bs_ctl_append(r->c, 1, unwatch, NULL) < 0 || bs_ctl_append(r->c, 4, hset, NULL) < 0 ||
        (prev_ok && bs_ctl_append(r->c, prev_ok[0] ? 4 : 3, prev_ok[0] ? restore : hdel, NULL) < 0))
        return;
    for (int i = 0; i < ncmd; i++) {
        redisReply *rep = bs_ctl_read(r->c);
        if (!rep)
            return;
        freeReplyObject(rep);
    }
}

/* check_filled - the set built in tmp holds all of d's members (a Redis
 * under maxmemory may evict it while it fills: later batches then build a
 * part), and it is WATCHed from here, so an eviction until the EXEC aborts
 * the EXEC: 0, or -1 with d->why */
static int check_filled(sync_run *r, bs_sync_domain *d, const char *tmp)
{
    redisReply *rep = bs_ctl_cmd(r->c, "WATCH", tmp, (char *)NULL);
    long long n = -1;

    if (!rep || !bs_ctl_reply_ok(rep, REDIS_REPLY_STATUS, "WATCH")) {
        if (rep)
            freeReplyObject(rep);
        return -1;
    }
    freeReplyObject(rep);
    if (!(rep = bs_ctl_cmd(r->c, "SCARD", tmp, (char *)NULL)))
        return -1;
    if (bs_ctl_reply_ok(rep, REDIS_REPLY_INTEGER, "SCARD"))
        n = rep->integer;
    freeReplyObject(rep);
    if (n < 0)
        return -1;
    if ((size_t)n != d->nwant) {
        snprintf(d->why, sizeof d->why,
                 "the new set holds %lld of its %zu members once written (Redis evicted it? see "
                 "maxmemory-policy): not swapped in",
                 n, d->nwant);
        return -1;
    }
    return 0;
}

/* drop_tmp - best effort: the TTL removes it anyway */
static void drop_tmp(sync_run *r, const char *tmp)
{
    if (!r->c->redis->err) {
        redisReply *rep = bs_ctl_cmd(r->c, "DEL", tmp, (char *)NULL);
        if (rep)
            freeReplyObject(rep);
    }
}

/* commit - step 3 (or 4: record only); the new outcome. An ok or unchanged
 * domain also gets <domain>:ok = now in the same EXEC (what the daemon's
 * max_directory_age reads); prev_ok is its value before ("" = none). */
static int commit(sync_run *r, bs_sync_domain *d, const char *rkey, const char *prev_ok)
{
    char tmp[BS_CTL_KEY_MAX], rec[BS_CTL_KEY_MAX], doms[BS_CTL_KEY_MAX];
    char name[BS_DOMAIN_MAX + 32], value[BS_SYNC_RECORD_MAX], now[24];
    char okf[BS_DOMAIN_MAX + sizeof BS_SYNC_OK_FIELD];
    int write = d->outcome == BS_SYNC_WRITE, rc;
    const char *ren[] = {"RENAME", tmp, rkey}, *per[] = {"PERSIST", rkey};
    const char *del[] = {"DEL", rkey}, *hset[] = {"HSET", rec, d->name, value, okf, now};
    const char *sadd[] = {"SADD", doms, d->name};
    const char **cmds[4];
    int argcs[4];
    size_t n = 0;

    bs_ctl_key(r->c, rec, sizeof rec, BS_KEY_SYNC, NULL);
    bs_ctl_key(r->c, doms, sizeof doms, BS_KEY_DOMAINS, NULL);
    snprintf(okf, sizeof okf, "%s%s", d->name, BS_SYNC_OK_FIELD);
    snprintf(now, sizeof now, "%llu", (unsigned long long)r->now);
    snprintf(name, sizeof name, "%s:%ld", d->name, (long)getpid());
    bs_ctl_key(r->c, tmp, sizeof tmp, BS_KEY_SYNC_TMP, name);
    if (write && d->nwant > 0) {
        if (bs_ctl_fill_set(r->c, tmp, d->want, d->nwant, BS_SYNC_TMP_TTL_MS,
                            r->progress ? write_progress : NULL, d) < 0 ||
            check_filled(r, d, tmp) < 0)
            goto failed;
        cmds[n] = ren, argcs[n++] = 3;
        cmds[n] = per, argcs[n++] = 2;
    } else if (write) {
        cmds[n] = del, argcs[n++] = 2; /* --force to empty: a set cannot be renamed empty */
    }
    if (write && r->c->cfg.sync_add_domains)
        cmds[n] = sadd, argcs[n++] = 3;
    d->outcome = write ? BS_SYNC_OK : d->outcome;
    bs_sync_record(d, r->now, value, sizeof value);
    cmds[n] = hset;
    argcs[n++] = d->outcome == BS_SYNC_OK || d->outcome == BS_SYNC_UNCHANGED ? 6 : 4;
    rc = exec_watched(r->c, cmds, argcs, n);
    if (rc == 1)
        return d->outcome;
    if (rc == 0) { /* no EXEC ran: the other writer's set, record and ok stay */
        snprintf(d->why, sizeof d->why,
                 "%.160s changed while it was read (another writer): run "
                 "sync again",
                 rkey);
        drop_tmp(r, tmp);
        d->outcome = BS_SYNC_WRITE_FAILED;
        return d->outcome;
    }
    goto failed_exec;
failed:
    prev_ok = NULL; /* no EXEC was sent: <domain>:ok was not touched */
failed_exec:
    drop_tmp(r, tmp);
    if (!d->why[0])
        snprintf(d->why, sizeof d->why, "Redis refused the write");
    record_failed(r, d, prev_ok);
    return d->outcome;
}

/* current - WATCH and SMEMBERS rcpt:<domain> (must be a set or absent); the
 * reply, or NULL (printed) */
static redisReply *current(sync_run *r, const char *rkey)
{
    redisReply *rep = bs_ctl_cmd(r->c, "WATCH", rkey, (char *)NULL);

    if (!rep)
        return NULL;
    freeReplyObject(rep);
    if (!(rep = bs_ctl_cmd(r->c, "TYPE", rkey, (char *)NULL)))
        return NULL;
    if (rep->type != REDIS_REPLY_STATUS ||
        (strcmp(rep->str, "set") != 0 && strcmp(rep->str, "none") != 0)) {
        bs_ctl_err("%s is a %s, not a set: fix it by hand (redis-cli TYPE/DEL %s)", rkey,
                   rep->type == REDIS_REPLY_STATUS ? rep->str : "?", rkey);
        freeReplyObject(rep);
        return NULL;
    }
    freeReplyObject(rep);
    if (!(rep = bs_ctl_cmd(r->c, "SMEMBERS", rkey, (char *)NULL)))
        return NULL;
    if (!bs_ctl_reply_ok(rep, REDIS_REPLY_ARRAY, "SMEMBERS")) {
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* names_json - the first BS_SYNC_SHOW_NAMES of v as a JSON array */
static json_t *names_json(const char *const *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n && i < BS_SYNC_SHOW_NAMES; i++)
        json_array_append_new(a, bs_ctl_jstr(v[i], strlen(v[i])));
    return a;
}

/* sources_json - "relay,hr" as ["relay", "hr"] */
static json_t *sources_json(const char *list)
{
    json_t *a = json_array();

    for (const char *p = list; a && *p;) {
        size_t len = strcspn(p, ",");
        json_array_append_new(a, json_stringn(p, len));
        p += len + (p[len] == ',');
    }
    return a;
}

/* domain_json - --json: the domain's object (shape in backstopctl(8)) */
static void domain_json(sync_run *r, const bs_sync_domain *d)
{
    const char *why =
        d->outcome == BS_SYNC_SOURCE_FAILED || d->outcome == BS_SYNC_WRITE_FAILED ? d->why : NULL;

    json_array_append_new(
        r->jdomains,
        json_pack("{s:o, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "domain",
                  bs_ctl_jstr(d->name, strlen(d->name)), "outcome",
                  bs_sync_outcome_name(d->outcome), "added", (json_int_t)d->nadded, "removed",
                  (json_int_t)d->nremoved, "unchanged", (json_int_t)d->kept, "count",
                  (json_int_t)bs_sync_count(d), "sources", sources_json(d->sources), "first_added",
                  names_json(d->added, d->nadded), "first_removed",
                  names_json(d->removed, d->nremoved), "error",
                  why ? bs_ctl_jstr(why, strlen(why)) : json_null()));
}

/* report - the domain's line and its outcome's words; counts it */
static void report(sync_run *r, const bs_sync_domain *d)
{
    const char *dry = r->dry_run ? " (dry run: nothing written)" : "";
    /* the users it would lose (removed, whatever is added; shrink-refused
     * implies nhave > 0) */
    unsigned shrink = d->nhave ? (unsigned)(d->nremoved * 100 / d->nhave) : 0;

    switch (d->outcome) {
    case BS_SYNC_OK:
    case BS_SYNC_WRITE:
        r->written++;
        domain_line(r, d, stdout);
        say(r, ": %s%s\n", r->dry_run ? "would be written" : "written", dry);
        break;
    case BS_SYNC_UNCHANGED:
        r->unchanged++;
        domain_line(r, d, stdout);
        say(r, ": unchanged\n");
        break;
    case BS_SYNC_SHRINK_REFUSED:
    case BS_SYNC_EMPTY_REFUSED:
        r->refused++;
        domain_line(r, d, stderr);
        if (d->outcome == BS_SYNC_EMPTY_REFUSED && d->nwant == 0)
            fprintf(stderr, ": refused: the sources hold no user of it, the set would become "
                            "empty; left as it is (--force empties it)\n");
        else if (d->outcome == BS_SYNC_EMPTY_REFUSED)
            fprintf(stderr,
                    ": refused: source %s gave no user of it (empty?), so its users would go; "
                    "left as it is (--force writes it)\n",
                    d->empty_source);
        else
            fprintf(stderr,
                    ": refused: it would lose %u%% of its %zu users, more than [sync] "
                    "max_shrink %u%%; left as it is (--force writes it)\n",
                    shrink, d->nhave, r->c->cfg.sync_max_shrink);
        break;
    default:
        r->failed++;
        bs_ctl_err("%s: not written: %s", d->name, d->why);
        break;
    }
    if (r->jdomains)
        domain_json(r, d);
}

/* domain_note - a domain that is written but not protected, said once */
static void domain_note(sync_run *r, const bs_sync_domain *d)
{
    char key[BS_CTL_KEY_MAX];
    redisReply *rep;

    if (r->c->cfg.sync_add_domains && !r->dry_run)
        return;
    bs_ctl_key(r->c, key, sizeof key, BS_KEY_DOMAINS, NULL);
    if (!(rep = bs_ctl_cmd(r->c, "SISMEMBER", key, d->name, (char *)NULL)))
        return;
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 0 && !r->quiet)
        bs_ctl_note("%s is not a protected domain: its users are not checked until "
                    "'backstopctl domain add %s' (or [sync] add_domains = yes)",
                    d->name, d->name);
    freeReplyObject(rep);
}

/* last_ok - HGET sync <domain>:ok into out ("" when absent); 0 / -1 */
static int last_ok(sync_run *r, const bs_sync_domain *d, char *out, size_t outsz)
{
    char rec[BS_CTL_KEY_MAX], okf[BS_DOMAIN_MAX + sizeof BS_SYNC_OK_FIELD];
    redisReply *rep;

    bs_ctl_key(r->c, rec, sizeof rec, BS_KEY_SYNC, NULL);
    snprintf(okf, sizeof okf, "%s%s", d->name, BS_SYNC_OK_FIELD);
    if (!(rep = bs_ctl_cmd(r->c, "HGET", rec, okf, (char *)NULL)))
        return -1;
    snprintf(out, outsz, "%s", rep->type == REDIS_REPLY_STRING ? rep->str : "");
    freeReplyObject(rep);
    return 0;
}

/* sync_domain - steps 2 to 4 for one domain */
static void sync_domain(sync_run *r, bs_sync_domain *d)
{
    char rkey[BS_CTL_KEY_MAX], prev_ok[32];
    redisReply *rep;
    char **have;

    bs_ctl_key(r->c, rkey, sizeof rkey, BS_KEY_RCPT, d->name);
    if (last_ok(r, d, prev_ok, sizeof prev_ok) < 0 || !(rep = current(r, rkey))) {
        snprintf(d->why, sizeof d->why, "cannot read %.200s", rkey);
        if (!r->dry_run)
            record_failed(r, d, NULL);
        d->outcome = BS_SYNC_WRITE_FAILED;
        report(r, d);
        return;
    }
    have = malloc((rep->elements ? rep->elements : 1) * sizeof *have);
    for (size_t i = 0; have && i < rep->elements; i++)
        have[i] = rep->element[i]->str;
    if (!have || bs_sync_plan(d, have, rep->elements, r->c->cfg.sync_max_shrink, r->force) < 0) {
        snprintf(d->why, sizeof d->why, "out of memory");
        d->outcome = BS_SYNC_WRITE_FAILED;
    } else if (r->dry_run) {
        redisReply *u = bs_ctl_cmd(r->c, "UNWATCH", (char *)NULL);
        if (u)
            freeReplyObject(u);
    } else {
        commit(r, d, rkey, prev_ok);
    }
    report(r, d); /* removed[] points into rep: report before freeing it */
    if (d->outcome == BS_SYNC_OK || d->outcome == BS_SYNC_WRITE)
        domain_note(r, d);
    free(have);
    freeReplyObject(rep);
}

/* bs_ctl_sync - read the sources, then each domain */
int bs_ctl_sync(bs_ctl *c, int argc, char **argv)
{
    sync_run r = {.c = c};
    uint64_t ms, t0 = bs__src_deadline(0);
    double secs;
    int rc;

    r.dry_run = c->opt[BS_OPT_DRY_RUN] != NULL;
    r.force = c->opt[BS_OPT_FORCE] != NULL;
    r.quiet = c->opt[BS_OPT_QUIET] != NULL;
    r.progress = c->tty && !r.quiet;
    if (c->opt[BS_OPT_JSON]) {
        r.jsources = json_array();
        r.jdomains = json_array();
        if (!r.jsources || !r.jdomains) {
            json_decref(r.jsources);
            json_decref(r.jdomains);
            return bs_ctl_json_print(NULL, BS_SYNC_EXIT_FAIL);
        }
    }
    if (c->cfg.nsources == 0) {
        bs_ctl_err("sync: %s has no [source NAME] section (see backstop.ini(5))", c->config_path);
        return BS_SYNC_EXIT_FAIL;
    }
    bs_sync_init(&r.s);
    if ((rc = read_sources(&r, argc, argv)) != 0)
        goto done;
    rc = BS_SYNC_EXIT_FAIL;
    if (bs_ctl_connect(c) < 0 || bs_ctl_redis_ms(c, &ms) < 0)
        goto done;
    r.now = ms / 1000;
    for (size_t i = 0; i < r.s.ndom; i++)
        sync_domain(&r, &r.s.dom[i]);
    secs = (double)(bs__src_deadline(0) - t0) / 1000.0;
    say(&r, "sync%s: %zu domains: %zu %s, %zu unchanged, %zu refused, %zu failed (%.1fs)\n",
        r.dry_run ? " --dry-run" : "", r.s.ndom, r.written, r.dry_run ? "to write" : "written",
        r.unchanged, r.refused, r.failed, secs);
    rc = r.failed ? BS_SYNC_EXIT_FAIL : r.refused ? BS_SYNC_EXIT_REFUSED : BS_SYNC_EXIT_OK;
    if (r.jdomains) /* takes the arrays */
        rc = bs_ctl_json_print(
            json_pack("{s:o, s:o, s:{s:b, s:I, s:I, s:I, s:I, s:I, s:f, s:i}}", "sources",
                      r.jsources, "domains", r.jdomains, "summary", "dry_run", r.dry_run, "domains",
                      (json_int_t)r.s.ndom, "written", (json_int_t)r.written, "unchanged",
                      (json_int_t)r.unchanged, "refused", (json_int_t)r.refused, "failed",
                      (json_int_t)r.failed, "seconds", secs, "exit", rc),
            rc);
    r.jsources = r.jdomains = NULL;
done:
    json_decref(r.jsources);
    json_decref(r.jdomains);
    bs_sync_free(&r.s);
    return rc;
}

/* record_field - the value of "name=" in a record (up to ';'), or "?" */
static const char *record_field(const char *rec, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);

    for (const char *p = rec; p && *p; p = strchr(p, ';') ? strchr(p, ';') + 1 : NULL) {
        if (strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t len = strcspn(p + nlen + 1, ";");
            bs_ctl_safe(p + nlen + 1, len, out, outsz);
            return out;
        }
    }
    return "?";
}

/* is_ok_field - "<domain>:ok": the daemon's field, not a record */
static int is_ok_field(const redisReply *f)
{
    size_t n = sizeof BS_SYNC_OK_FIELD - 1;

    return f->len > n && memcmp(f->str + f->len - n, BS_SYNC_OK_FIELD, n) == 0;
}

/* ok_time - the <domain>:ok value of the record in field f, or NULL */
static const redisReply *ok_time(const redisReply *rep, const redisReply *f)
{
    size_t n = sizeof BS_SYNC_OK_FIELD - 1;

    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *g = rep->element[i], *v = rep->element[i + 1];
        if (g->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            g->len == f->len + n && memcmp(g->str, f->str, f->len) == 0 && is_ok_field(g))
            return v;
    }
    return NULL;
}

/* jnumber - a decimal text as a JSON integer, null when it is not one */
static json_t *jnumber(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    return *s >= '0' && *s <= '9' && !*end && v <= INT64_MAX ? json_integer((json_int_t)v)
                                                             : json_null();
}

/* record_json - {"time", "last_ok", "source", "count", "added", "removed",
 * "outcome"} of one record (ok: its <domain>:ok value, or NULL) */
static json_t *record_json(const char *rec, const redisReply *ok)
{
    char b[4][32], source[BS_SYNC_SOURCES_MAX * 4], outcome[32];

    return json_pack("{s:o, s:o, s:s, s:o, s:o, s:o, s:s}", "time",
                     jnumber(record_field(rec, "time", b[0], sizeof b[0])), "last_ok",
                     ok ? jnumber(ok->str) : json_null(), "source",
                     record_field(rec, "source", source, sizeof source), "count",
                     jnumber(record_field(rec, "count", b[1], sizeof b[1])), "added",
                     jnumber(record_field(rec, "added", b[2], sizeof b[2])), "removed",
                     jnumber(record_field(rec, "removed", b[3], sizeof b[3])), "outcome",
                     record_field(rec, "outcome", outcome, sizeof outcome));
}

/* ago - "5s ago" from a Unix time in seconds (text), now in ms */
static const char *ago(const char *secs, uint64_t now_ms, char *out, size_t outsz)
{
    uint64_t when = strtoull(secs, NULL, 10) * 1000;
    size_t len;

    bs_ctl_remaining(now_ms > when ? now_ms - when : 0, out, outsz);
    len = strlen(out);
    snprintf(out + len, outsz - len, " ago");
    return out;
}

/* bs_ctl_sync_show - the backstop:sync records of the n domains (all when
 * n is 0): one line each after a heading (nothing when there are none),
 * or, with into, its "sync" member {domain: record_json} */
int bs_ctl_sync_show(bs_ctl *c, char *const *domains, size_t n, json_t *into)
{
    redisReply *rep = bs_ctl_hgetall(c, BS_KEY_SYNC);
    char dom[BS_DOMAIN_MAX * 4 + 1], outcome[32], count[32], source[BS_SYNC_SOURCES_MAX * 4];
    char t[32], age[48], okage[48];
    json_t *jsync = into ? json_object() : NULL;
    uint64_t now_ms;
    int heading = 0;

    if (!rep || bs_ctl_redis_ms(c, &now_ms) < 0 || (into && !jsync)) {
        if (rep)
            freeReplyObject(rep);
        json_decref(jsync);
        return -1;
    }
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *f = rep->element[i], *v = rep->element[i + 1], *ok;
        size_t k = 0;

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || is_ok_field(f))
            continue;
        while (k < n && strcmp(domains[k], f->str) != 0)
            k++;
        if (n > 0 && k == n)
            continue;
        ok = ok_time(rep, f);
        if (jsync) {
            char *name = malloc(f->len * 4 + 1);
            if (name)
                json_object_set_new(jsync, bs_ctl_safe(f->str, f->len, name, f->len * 4 + 1),
                                    record_json(v->str, ok));
            free(name);
            continue;
        }
        if (!heading++)
            printf("last directory sync (backstopctl sync):\n");
        printf("  %s  %s, %s users, from %s, %s; last successful sync %s\n",
               bs_ctl_safe(f->str, f->len, dom, sizeof dom),
               record_field(v->str, "outcome", outcome, sizeof outcome),
               record_field(v->str, "count", count, sizeof count),
               record_field(v->str, "source", source, sizeof source),
               ago(record_field(v->str, "time", t, sizeof t), now_ms, age, sizeof age),
               ok ? ago(ok->str, now_ms, okage, sizeof okage) : "never");
    }
    freeReplyObject(rep);
    if (jsync && json_object_set_new(into, "sync", jsync) < 0)
        return -1;
    return 0;
}
