/*
 * sync.c - the directory sync engine (sync.h): sources in, per-domain
 * decisions out
 *
 * PROVIDES
 *   bs_sync_read        one source, all or nothing: its entries are staged
 *                       while it is read and merged into its domains only
 *                       when the reader returned 0.
 *   bs_sync_plan        the diff of a domain against Redis's members and
 *                       the guard decision (sync.h).
 *   bs_sync_record      the backstop:sync value; bs_sync_count its count.
 *   bs_sync_reader_for  the reader table (type -> function).
 *
 * HOW AN ENTRY IS READ (emit)
 *   "local@domain" is split at the last '@'; the domain goes through
 *   canon_domain() (the one place the domain's canonical form is made), the
 *   local part through bs_addr_parse() exactly as backstopctl import does;
 *   "@domain" is the catch-all "*". An entry of a domain the source is not
 *   configured for is counted (foreign) and dropped; an entry that is not
 *   an address is counted (bad), and the first BS_SYNC_SHOW_BAD are kept
 *   for the message.
 *
 * NEVER
 *   Talks to Redis or prints: ctl_sync.c does. Writes anything for a domain
 *   one of whose sources failed.
 *
 * LIMITS
 *   Everything read is held in memory (one string per entry) until the run
 *   ends: about 60 bytes an address.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync.h"

#define BS_SYNC_GROW 1024

static const char *const outcome_names[] = {
    [BS_SYNC_WRITE] = "changed",
    [BS_SYNC_UNCHANGED] = "unchanged",
    [BS_SYNC_SHRINK_REFUSED] = "shrink-refused",
    [BS_SYNC_EMPTY_REFUSED] = "empty-refused",
    [BS_SYNC_SOURCE_FAILED] = "source-failed",
    [BS_SYNC_WRITE_FAILED] = "write-failed",
    [BS_SYNC_OK] = "ok",
};

const char *bs_sync_outcome_name(int outcome)
{
    if (outcome < 0 || (size_t)outcome >= sizeof outcome_names / sizeof outcome_names[0])
        return "?";
    return outcome_names[outcome];
}

/* ------------------------------------------------------------ readers */

static const struct {
    int type;
    bs_sync_reader read;
} readers[] = {
#ifdef BACKSTOP_HAVE_LDAP
    {BS_SRC_LDAP, bs_source_ldap_read},
#endif
    {BS_SRC_POSTFIX, bs_source_postfix_read},
    {BS_SRC_FILE, bs_source_file_read},
    {BS_SRC_COMMAND, bs_source_command_read},
};

bs_sync_reader bs_sync_reader_for(int type, const char **why)
{
    for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++)
        if (readers[i].type == type)
            return readers[i].read;
    *why = type == BS_SRC_LDAP ? "this backstopctl was built without LDAP (libldap-dev)"
                               : "unknown source type";
    return NULL;
}

/* ------------------------------------------------------------ domains */

void bs_sync_init(bs_sync *s)
{
    memset(s, 0, sizeof *s);
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void bs_sync_free(bs_sync *s)
{
    for (size_t i = 0; i < s->ndom; i++) {
        free_strings(s->dom[i].want, s->dom[i].nwant);
        free(s->dom[i].added);
        free(s->dom[i].removed);
    }
    free(s->dom);
    free_strings(s->stage, s->nstage);
    free(s->stage_dom);
    memset(s, 0, sizeof *s);
}

bs_sync_domain *bs_sync_domain_get(bs_sync *s, const char *domain)
{
    bs_sync_domain *d;

    for (size_t i = 0; i < s->ndom; i++)
        if (strcmp(s->dom[i].name, domain) == 0)
            return &s->dom[i];
    d = realloc(s->dom, (s->ndom + 1) * sizeof *d);
    if (!d)
        return NULL;
    s->dom = d;
    d = &s->dom[s->ndom++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", domain);
    return d;
}

/* grow - room for one more string in *v (capacity *cap); 0 / -1 */
static int grow(char ***v, size_t n, size_t *cap)
{
    size_t ncap;
    char **nv;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : BS_SYNC_GROW;
    if (!(nv = realloc(*v, ncap * sizeof *nv)))
        return -1;
    *v = nv;
    *cap = ncap;
    return 0;
}

/* ------------------------------------------------------------ reading */

/*
 * canon_domain - THE canonical domain of an entry: bs_domain_norm's (addr.h),
 * so a UTF-8 domain becomes its A-label as in the daemon and in every other
 * backstopctl command. Returns the length or -1 with *why.
 */
static int canon_domain(const char *s, size_t len, char out[BS_DOMAIN_MAX + 1], const char **why)
{
    int n = bs_domain_norm(s, len, out);

    if (n < 0)
        *why = "not a valid domain";
    return n;
}

/* bad - count an entry that is not an address; keep the first few */
static void bad(bs_sync *s, const char *addr, size_t len, const char *why)
{
    if (s->bad < BS_SYNC_SHOW_BAD) {
        char shown[48];
        bs_escape(addr, len < 40 ? len : 40, shown, sizeof shown);
        snprintf(s->bad_shown[s->bad], sizeof s->bad_shown[0], "%s (%s)", shown, why);
    }
    s->bad++;
}

/* unquote - a quoted local part ("john smith", RFC 5321's Quoted-string)
 * as Postfix passes it to a policy server: without the quotes and the
 * backslashes of quoted pairs; its length, or (size_t)-1 when it is not
 * one (then it is used as it is) */
static size_t unquote(const char *s, size_t len, char *out)
{
    size_t i, n = 0;

    if (len < 2 || s[0] != '"' || s[len - 1] != '"')
        return (size_t)-1;
    for (i = 1; i + 1 < len; i++) {
        if (s[i] == '"')
            return (size_t)-1;
        if (s[i] == '\\' && i + 2 < len)
            i++;
        out[n++] = s[i];
    }
    return n;
}

/* emit - the reader's callback: canonicalise one entry and stage it. Blanks
 * around it are not part of it (LDAP compares mail values so: "  bob@x "
 * finds bob@x), nor the quotes of a quoted local part. */
static int emit(void *arg, const char *addr, size_t len)
{
    bs_sync *s = arg;
    const char *at = NULL, *why = NULL;
    char dom[BS_DOMAIN_MAX + 1], buf[BS_ADDR_MAX + 2], unq[BS_LOCAL_MAX + 1];
    const char *local;
    bs_addr a;
    size_t i, ll;

    s->entries++;
    while (len > 0 && (addr[0] == ' ' || addr[0] == '\t'))
        addr++, len--;
    while (len > 0 && (addr[len - 1] == ' ' || addr[len - 1] == '\t'))
        len--;
    for (i = len; i > 0; i--)
        if (addr[i - 1] == '@') {
            at = addr + i - 1;
            break;
        }
    if (!at) {
        bad(s, addr, len, "no @domain");
        return 0;
    }
    if (canon_domain(at + 1, len - (size_t)(at + 1 - addr), dom, &why) < 0) {
        bad(s, addr, len, why);
        return 0;
    }
    for (i = 0; i < s->cur->ndomains; i++)
        if (strcmp(s->cur->domains[i], dom) == 0)
            break;
    if (i == s->cur->ndomains) {
        s->foreign++;
        return 0;
    }
    if (at == addr) {
        local = "*";
    } else {
        if ((size_t)(at - addr) > BS_LOCAL_MAX) {
            bad(s, addr, len, "local part too long");
            return 0;
        }
        ll = unquote(addr, (size_t)(at - addr), unq);
        if (ll != (size_t)-1)
            snprintf(buf, sizeof buf, "%.*s@%s", (int)ll, unq, dom);
        else
            snprintf(buf, sizeof buf, "%.*s@%s", (int)(at - addr), addr, dom);
        if (bs_addr_parse(buf, strlen(buf), &a) < 0) {
            bad(s, addr, len, "not a valid local part");
            return 0;
        }
        local = a.local;
    }
    if (s->nstage == s->stage_cap) { /* stage and stage_dom grow together */
        size_t cap = s->stage_cap;
        if (grow(&s->stage, s->nstage, &cap) < 0)
            goto oom;
        size_t *nd = realloc(s->stage_dom, cap * sizeof *nd);
        if (!nd)
            goto oom;
        s->stage_dom = nd;
        s->stage_cap = cap;
    }
    if (!(s->stage[s->nstage] = strdup(local)))
        goto oom;
    s->stage_dom[s->nstage++] = s->cur_dom[i];
    return 0;
oom:
    s->oom = 1;
    return -1;
}

/* unstage - drop everything staged */
static void unstage(bs_sync *s)
{
    for (size_t i = 0; i < s->nstage; i++)
        free(s->stage[i]);
    s->nstage = 0;
}

/* note_empty - a source that gave nothing at all (not one entry: an
 * emptied file, a query that found nobody) is remembered by each of its
 * domains (the first such source). One that gave entries, none of them
 * for one of its domains, is not: a source may list a domain that others
 * feed. */
static void note_empty(bs_sync *s, const bs_source *src)
{
    if (s->entries != 0)
        return;
    for (size_t i = 0; i < src->ndomains; i++) {
        bs_sync_domain *d = &s->dom[s->cur_dom[i]];
        if (!d->empty_source[0])
            snprintf(d->empty_source, sizeof d->empty_source, "%s", src->name);
    }
}

/* merge - move the staged entries into their domains; 0 / -1 (oom) */
static int merge(bs_sync *s)
{
    for (size_t i = 0; i < s->nstage; i++) {
        bs_sync_domain *d = &s->dom[s->stage_dom[i]];
        if (grow(&d->want, d->nwant, &d->cap) < 0)
            return -1;
        d->want[d->nwant++] = s->stage[i];
        s->stage[i] = NULL;
    }
    s->nstage = 0;
    return 0;
}

/* add_source_name - "a" then "a,b" in each domain's record */
static void add_source_name(bs_sync_domain *d, const char *name)
{
    size_t len = strlen(d->sources);

    snprintf(d->sources + len, sizeof d->sources - len, "%s%s", len ? "," : "", name);
}

/* src_domains - the entries of src's domains, named after it; 0 / -1 (oom) */
static int src_domains(bs_sync *s, const bs_source *src)
{
    for (size_t i = 0; i < src->ndomains; i++) {
        bs_sync_domain *d = bs_sync_domain_get(s, src->domains[i]);
        if (!d)
            return -1;
        s->cur_dom[i] = (size_t)(d - s->dom);
        add_source_name(d, src->name);
    }
    return 0;
}

/* mark_failed - src's domains (cur_dom) will not be written; the first reason stays */
static void mark_failed(bs_sync *s, const bs_source *src, const char *why)
{
    for (size_t i = 0; i < src->ndomains; i++) {
        bs_sync_domain *d = &s->dom[s->cur_dom[i]];
        if (!d->failed)
            snprintf(d->why, sizeof d->why, "%s: %s", src->name, why);
        d->failed = 1;
    }
}

int bs_sync_fail(bs_sync *s, const bs_source *src, const char *why)
{
    s->entries = s->bad = s->foreign = 0;
    if (src_domains(s, src) < 0)
        return -1;
    mark_failed(s, src, why);
    return -1;
}

int bs_sync_read(bs_sync *s, const bs_source *src, bs_sync_reader reader, char *err, size_t errsz)
{
    int rc;

    s->entries = s->bad = s->foreign = 0;
    s->oom = 0;
    s->cur = src;
    if (src_domains(s, src) < 0) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    err[0] = '\0';
    rc = reader(src, emit, s, err, errsz);
    if (rc == 0)
        note_empty(s, src);
    if (rc == 0 && merge(s) < 0)
        s->oom = 1;
    if (s->oom) {
        snprintf(err, errsz, "out of memory after %zu entries", s->entries);
        rc = -1;
    }
    if (rc != 0) {
        unstage(s);
        if (err[0] == '\0')
            snprintf(err, errsz, "read failed");
        mark_failed(s, src, err);
        rc = -1;
    }
    s->cur = NULL;
    return rc;
}

/* ------------------------------------------------------------ planning */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* sort_unique - sort v, free and drop repeats; the new length */
static size_t sort_unique(char **v, size_t n, int owned)
{
    size_t o = 0;

    if (n == 0)
        return 0; /* v may be NULL: qsort must not see it */
    qsort(v, n, sizeof *v, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (o > 0 && strcmp(v[o - 1], v[i]) == 0) {
            if (owned)
                free(v[i]);
        } else {
            v[o++] = v[i];
        }
    }
    return o;
}

int bs_sync_plan(bs_sync_domain *d, char **have, size_t nhave, unsigned max_shrink, int force)
{
    size_t i = 0, j = 0;

    d->nwant = sort_unique(d->want, d->nwant, 1);
    nhave = sort_unique(have, nhave, 0); /* a set has no repeats: this only sorts */
    d->nhave = nhave;
    free(d->added);
    free(d->removed);
    d->added = malloc((d->nwant ? d->nwant : 1) * sizeof *d->added);
    d->removed = malloc((nhave ? nhave : 1) * sizeof *d->removed);
    if (!d->added || !d->removed)
        return -1;
    d->nadded = d->nremoved = d->kept = 0;
    while (i < d->nwant || j < nhave) {
        int c = i == d->nwant ? 1 : j == nhave ? -1 : strcmp(d->want[i], have[j]);
        if (c < 0)
            d->added[d->nadded++] = d->want[i++];
        else if (c > 0)
            d->removed[d->nremoved++] = have[j++];
        else
            d->kept++, i++, j++;
    }
    if (d->failed)
        d->outcome = BS_SYNC_SOURCE_FAILED;
    else if (d->nadded == 0 && d->nremoved == 0)
        d->outcome = BS_SYNC_UNCHANGED;
    else if ((d->nwant == 0 || (d->empty_source[0] && d->nremoved > 0)) && !force)
        d->outcome = BS_SYNC_EMPTY_REFUSED;
    else if ((uint64_t)d->nremoved * 100 > (uint64_t)max_shrink * nhave && !force)
        d->outcome = BS_SYNC_SHRINK_REFUSED; /* users lost, whatever was added */
    else
        d->outcome = BS_SYNC_WRITE;
    return 0;
}

size_t bs_sync_count(const bs_sync_domain *d)
{
    return d->outcome == BS_SYNC_OK ? d->nwant : d->nhave;
}

int bs_sync_record(const bs_sync_domain *d, uint64_t unix_time, char *out, size_t outsz)
{
    int written = d->outcome == BS_SYNC_OK;

    return snprintf(out, outsz, "time=%llu;source=%s;count=%zu;added=%zu;removed=%zu;outcome=%s",
                    (unsigned long long)unix_time, d->sources, bs_sync_count(d),
                    written ? d->nadded : 0, written ? d->nremoved : 0,
                    bs_sync_outcome_name(d->outcome));
}
