/*
 * ctl_import.c - import DOMAIN FILE: load a user list into rcpt:<domain>
 *
 * PROVIDES
 *   bs_ctl_import_line  classify one line (pure; unit tested).
 *   bs_ctl_import       the command. Exit 0 written (or nothing to write),
 *                       1 bad lines without --skip-bad (nothing written), a
 *                       Redis error (rcpt:<domain> unchanged), or --replace
 *                       with no valid user; 2 bad operands.
 *
 * FILE FORMAT
 *   One entry a line: "alice", "alice@example.com", or a Postfix map line
 *   "alice@example.com  anything" (virtual_mailbox_maps): the first column
 *   is the key, the rest is ignored. "@example.com" is the catch-all (member
 *   "*"). Blank lines and lines whose first non-blank is '#' are skipped;
 *   any other line that starts with a blank continues the entry before it
 *   (comment and blank lines in between do not end an entry), as Postfix
 *   reads table files (readllines(); "postmap -s" shows the entries), and
 *   is skipped: "alice\n  bob" is one entry, alice, whose value is bob. The
 *   skipped lines are counted in a note. Before the first entry such a
 *   line is bad (Postfix ignores it with a warning). "DOMAIN value" (a
 *   virtual(5) domain line) is skipped. A UTF-8 byte order mark at the
 *   start of the file (Windows tools write one) is dropped, and a line may
 *   end in CRLF. Bad lines: an address of another domain, an invalid
 *   address or local part, a line over BS_IMPORT_LINE_MAX bytes, and a line
 *   holding a byte no local part has (see BYTES).
 *
 * BYTES (what no local part has: the line is bad, reported with its number)
 *   Anywhere in the line: C0 controls but TAB (a column separator) and DEL.
 *   In the key (the first column), bs_ctl_local_bad_byte, the check user
 *   add|del make too: bytes that are not UTF-8 (a stray Latin-1 byte, a
 *   truncated or overlong sequence, a surrogate, past U+10FFFF), C1
 *   controls (U+0080..U+009F), U+FEFF (a byte order mark anywhere but the
 *   start of the file), and '"' or '\\': Postfix hands the policy server
 *   the unquoted address, so a quoted local part would never match (write
 *   "a b"@x as it arrives, which a blank cuts: see LIMITS).
 *   Not bad: '@' (the key is split at its last '@', as the daemon splits
 *   the recipient Postfix sends unquoted), and UTF-8 letters (SMTPUTF8).
 *
 * HOW (nothing half-written)
 *   1. Read and validate the whole file; report each bad line as
 *      "FILE:LINE: problem: text" (the first BS_IMPORT_SHOW_BAD of them).
 *      Bad lines and no --skip-bad: stop, write nothing, exit 1.
 *   2. Sort and de-duplicate in memory.
 *   3. Pipeline SADDs into a temporary key (prefix "import:<domain>:<pid>",
 *      1h TTL so a killed import leaves nothing behind for long) with
 *      bs_ctl_fill_set: BS_CTL_FILL_BATCH members a round trip.
 *   4. One MULTI/EXEC moves it into place: SUNIONSTORE rcpt rcpt tmp (add),
 *      or with --replace SDIFFSTORE (to count the removed) + RENAME +
 *      PERSIST. Until EXEC, rcpt:<domain> is untouched; a failure before it
 *      deletes the temporary key (best effort) and changes nothing.
 *   A progress bar is drawn on stderr when it is a terminal; the summary
 *   line goes to stdout.
 *
 * LIMITS
 *   The file is held in memory (one string per distinct user). A local
 *   part with a blank cannot be imported (the blank ends the key): add it
 *   with "user add 'john smith@example.com'".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

#define BS_IMPORT_LINE_MAX 4096
#define BS_IMPORT_SHOW_BAD 100
#define BS_IMPORT_TMP_TTL "3600000"

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* bs_ctl_import_line - one line: a user, nothing, or a bad line */
int bs_ctl_import_line(bs_ctl_lines *st, const char *line, size_t len, const char *domain,
                       char local[BS_LOCAL_MAX + 1], const char **why)
{
    char buf[BS_ADDR_MAX + 2], dom[BS_DOMAIN_MAX + 1];
    size_t i = 0, klen, j;
    const char *key;
    bs_addr a;
    int has_value;

    if (st->lines++ == 0 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
        line += 3; /* the file's byte order mark */
        len -= 3;
    }
    if (len > 0 && line[len - 1] == '\r')
        len--; /* CRLF */
    if (len > 0 && !is_blank(line[0]) && line[0] != '#')
        st->in_entry = 1; /* a logical line starts here, good or bad */
    for (j = 0; j < len; j++)
        if (((unsigned char)line[j] < 0x20 && line[j] != '\t') || line[j] == 0x7f) {
            *why = "control character";
            return BS_LINE_BAD;
        }
    while (i < len && is_blank(line[i]))
        i++;
    if (i == len || line[i] == '#')
        return BS_LINE_SKIP;
    if (i > 0) { /* as in Postfix: an indented line continues the logical line */
        if (!st->in_entry) {
            *why = "starts with a blank but continues no entry (Postfix ignores it)";
            return BS_LINE_BAD;
        }
        st->continued++;
        return BS_LINE_SKIP;
    }
    key = line;
    for (klen = 0; klen < len && !is_blank(key[klen]); klen++)
        ;
    for (j = klen; j < len && is_blank(line[j]); j++)
        ;
    has_value = j < len;
    if ((*why = bs_ctl_local_bad_byte(key, klen)) != NULL)
        return BS_LINE_BAD;

    if (key[0] == '@') { /* catch-all */
        if (bs_domain_norm(key + 1, klen - 1, dom) < 0) {
            *why = "not a valid @domain";
            return BS_LINE_BAD;
        }
        if (strcmp(dom, domain) != 0) {
            *why = "catch-all of another domain";
            return BS_LINE_BAD;
        }
        strcpy(local, "*");
        return BS_LINE_USER;
    }
    if (memchr(key, '@', klen)) {
        if (bs_addr_parse(key, klen, &a) < 0) {
            *why = "not a valid address";
            return BS_LINE_BAD;
        }
        if (strcmp(a.domain, domain) != 0) {
            *why = "address of another domain";
            return BS_LINE_BAD;
        }
        memcpy(local, a.local, a.local_len + 1);
        return BS_LINE_USER;
    }
    if (has_value && bs_domain_norm(key, klen, dom) >= 0 && strcmp(dom, domain) == 0)
        return BS_LINE_SKIP; /* "example.com  anything": the domain's own line */
    if (klen > BS_LOCAL_MAX) {
        *why = "local part too long";
        return BS_LINE_BAD;
    }
    snprintf(buf, sizeof(buf), "%.*s@%s", (int)klen, key, domain);
    if (bs_addr_parse(buf, strlen(buf), &a) < 0) {
        *why = "not a valid local part";
        return BS_LINE_BAD;
    }
    memcpy(local, a.local, a.local_len + 1);
    return BS_LINE_USER;
}

/* What the file held. */
typedef struct import_set {
    char **users; /* owned, normalised, sorted and unique after dedupe() */
    size_t n, cap;
    size_t lines, bad, dups;
    size_t continued; /* indented lines: the value of the entry before them */
} import_set;

static void set_free(import_set *s)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        free(s->users[i]);
    free(s->users);
}

static int set_add(import_set *s, const char *local)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        char **v = realloc(s->users, cap * sizeof(*v));
        if (!v)
            return -1;
        s->users = v;
        s->cap = cap;
    }
    if (!(s->users[s->n] = strdup(local)))
        return -1;
    s->n++;
    return 0;
}

/* dedupe - sort, drop repeats (counted in dups) */
static void dedupe(import_set *s)
{
    size_t i, o = 0;

    bs_ctl_sort_strings(s->users, s->n);
    for (i = 0; i < s->n; i++) {
        if (o > 0 && strcmp(s->users[o - 1], s->users[i]) == 0) {
            free(s->users[i]);
            s->dups++;
        } else {
            s->users[o++] = s->users[i];
        }
    }
    s->n = o;
}

/* read_file - validate every line; 0, or -1 on I/O or memory trouble */
static int read_file(const char *name, const char *domain, import_set *s)
{
    FILE *fp = strcmp(name, "-") == 0 ? stdin : fopen(name, "r");
    const char *shown_name = fp == stdin ? "(stdin)" : name;
    char *line = NULL, local[BS_LOCAL_MAX + 1], shown[200];
    size_t cap = 0;
    bs_ctl_lines st = {0};
    ssize_t got;
    int rc = 0;

    if (!fp) {
        bs_ctl_err("%s: %s", name, strerror(errno));
        return -1;
    }
    while (rc == 0 && (got = getline(&line, &cap, fp)) >= 0) {
        size_t len = (size_t)got;
        const char *why = NULL;
        int kind;

        s->lines++;
        if (len > 0 && line[len - 1] == '\n')
            len--; /* a CR before it, and line 1's BOM: bs_ctl_import_line */
        if (len > BS_IMPORT_LINE_MAX) {
            kind = BS_LINE_BAD;
            why = "line too long";
        } else {
            kind = bs_ctl_import_line(&st, line, len, domain, local, &why);
        }
        if (kind == BS_LINE_USER && set_add(s, local) < 0) {
            bs_ctl_err("out of memory");
            rc = -1;
        } else if (kind == BS_LINE_BAD && s->bad++ < BS_IMPORT_SHOW_BAD) {
            fprintf(stderr, "%s:%zu: %s: %s\n", shown_name, s->lines, why,
                    bs_ctl_safe(line, len < 120 ? len : 120, shown, sizeof(shown)));
        }
    }
    s->continued = st.continued;
    if (rc == 0 && ferror(fp)) {
        bs_ctl_err("%s: %s", shown_name, strerror(errno));
        rc = -1;
    }
    if (s->bad > BS_IMPORT_SHOW_BAD)
        fprintf(stderr, "%s: ... and %zu more bad lines\n", shown_name,
                s->bad - BS_IMPORT_SHOW_BAD);
    free(line);
    if (fp != stdin)
        fclose(fp);
    return rc;
}

/* Progress bar state for bs_ctl_fill_set. */
typedef struct import_progress {
    const bs_ctl *c;
    const char *domain;
} import_progress;

/* progress - a bar on the terminal */
static void progress(void *arg, size_t done, size_t total)
{
    const import_progress *ip = arg;
    char bar[31];
    size_t fill = total ? done * 30 / total : 30;

    if (!ip->c->tty)
        return;
    memset(bar, '#', fill);
    memset(bar + fill, '.', 30 - fill);
    bar[30] = 0;
    fprintf(stderr, "\rimporting %s [%s] %3zu%% %zu/%zu", ip->domain, bar,
            total ? done * 100 / total : 100, done, total);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

/* load_tmp - SADD every user into tmp, a batch at a time; 0 / -1 */
static int load_tmp(bs_ctl *c, const char *domain, const char *tmp, const import_set *s)
{
    import_progress ip = {c, domain};

    return bs_ctl_fill_set(c, tmp, s->users, s->n, BS_IMPORT_TMP_TTL, progress, &ip);
}

/* exec_all - run n commands in one MULTI/EXEC; the EXEC reply when every
 * command succeeded, else NULL (printed) */
static redisReply *exec_all(bs_ctl *c, const char *const *cmds[], const int *argcs, size_t n)
{
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    redisReply *rep;
    size_t i;

    if (bs_ctl_append(c, 1, multi, NULL) < 0)
        return NULL;
    for (i = 0; i < n; i++)
        if (bs_ctl_append(c, argcs[i], (const char **)cmds[i], NULL) < 0)
            return NULL;
    if (bs_ctl_append(c, 1, exec, NULL) < 0)
        return NULL;
    for (i = 0; i <= n; i++) { /* +OK, then QUEUED each */
        if (!(rep = bs_ctl_read(c)))
            return NULL;
        /* a command refused while queueing makes EXEC fail: reported there */
        if (rep->type == REDIS_REPLY_ERROR)
            bs_ctl_reply_ok(rep, REDIS_REPLY_STATUS, i ? cmds[i - 1][0] : "MULTI");
        freeReplyObject(rep);
    }
    if (!(rep = bs_ctl_read(c)))
        return NULL;
    if (!bs_ctl_reply_ok(rep, REDIS_REPLY_ARRAY, "EXEC") || rep->elements != n) {
        freeReplyObject(rep);
        return NULL;
    }
    for (i = 0; i < n; i++)
        if (rep->element[i]->type == REDIS_REPLY_ERROR) {
            bs_ctl_reply_ok(rep->element[i], REDIS_REPLY_INTEGER, cmds[i][0]);
            freeReplyObject(rep);
            return NULL;
        }
    return rep;
}

/* check_type - rcpt:<domain> must be a set or absent; 0 / -1 */
static int check_type(bs_ctl *c, const char *rkey)
{
    redisReply *rep = bs_ctl_cmd(c, "TYPE", rkey, (char *)NULL);
    int rc = -1;

    if (!rep)
        return -1;
    if (rep->type == REDIS_REPLY_STATUS &&
        (strcmp(rep->str, "set") == 0 || strcmp(rep->str, "none") == 0))
        rc = 0;
    else
        bs_ctl_err("%s is a %s, not a set: fix it by hand (redis-cli TYPE/DEL %s)", rkey,
                   rep->type == REDIS_REPLY_STATUS ? rep->str : "?", rkey);
    freeReplyObject(rep);
    return rc;
}

/* write_set - steps 3 and 4; prints the summary; exit status */
static int write_set(bs_ctl *c, const char *domain, const import_set *s, int replace)
{
    char rkey[BS_CTL_KEY_MAX], tmp[BS_CTL_KEY_MAX], gone[BS_CTL_KEY_MAX], name[BS_DOMAIN_MAX + 32];
    redisReply *rep = NULL;

    bs_ctl_key(c, rkey, sizeof(rkey), BS_KEY_RCPT, domain);
    snprintf(name, sizeof(name), "%s:%ld", domain, (long)getpid());
    bs_ctl_key(c, tmp, sizeof(tmp), BS_KEY_IMPORT, name);
    snprintf(name, sizeof(name), "%s:%ld:removed", domain, (long)getpid());
    bs_ctl_key(c, gone, sizeof(gone), BS_KEY_IMPORT, name);
    if (check_type(c, rkey) < 0)
        return BS_CTL_FAIL;
    if (load_tmp(c, domain, tmp, s) == 0) {
        const char *card[] = {"SCARD", rkey};
        const char *uni[] = {"SUNIONSTORE", rkey, rkey, tmp}, *del[] = {"DEL", tmp};
        const char *diff[] = {"SDIFFSTORE", gone, rkey, tmp}, *delg[] = {"DEL", gone};
        const char *ren[] = {"RENAME", tmp, rkey}, *per[] = {"PERSIST", rkey};
        const char *const *add_cmds[] = {card, uni, del};
        const int add_argc[] = {2, 4, 2};
        const char *const *rep_cmds[] = {card, diff, delg, ren, per};
        const int rep_argc[] = {2, 4, 2, 3, 2};

        if (replace)
            rep = exec_all(c, rep_cmds, rep_argc, 5);
        else
            rep = exec_all(c, add_cmds, add_argc, 3);
    }
    if (!rep) {
        redisReply *d = c->redis->err ? NULL : bs_ctl_cmd(c, "DEL", tmp, gone, (char *)NULL);
        if (d)
            freeReplyObject(d);
        bs_ctl_err("import into %s failed: %s is unchanged", domain, rkey);
        return BS_CTL_FAIL;
    }
    long long before = rep->element[0]->integer, second = rep->element[1]->integer;
    if (replace) {
        long long kept = before - second;
        printf("replaced the users of %s: %zu users (%lld new, %lld removed, %lld kept), %zu bad "
               "lines\n",
               domain, s->n, (long long)s->n - kept, second, kept, s->bad);
    } else {
        printf("imported %lld users into %s (%lld already present), %zu bad lines\n",
               second - before, domain, (long long)s->n - (second - before), s->bad);
    }
    freeReplyObject(rep);
    return BS_CTL_OK;
}

/* bs_ctl_import - validate everything, then write in one transaction */
int bs_ctl_import(bs_ctl *c, int argc, char **argv)
{
    char domain[BS_DOMAIN_MAX + 1];
    import_set s = {0};
    int rc, replace = c->opt[BS_OPT_REPLACE] != NULL;

    if (bs_ctl_norm_domain(argv[0], domain) != 0)
        return BS_CTL_USAGE;
    if (read_file(argv[1], domain, &s) < 0) {
        set_free(&s);
        return BS_CTL_FAIL;
    }
    dedupe(&s);
    if (s.bad && !c->opt[BS_OPT_SKIP_BAD]) {
        bs_ctl_err("%s: %zu bad lines: nothing imported (fix them, or use --skip-bad to import "
                   "the %zu valid users)",
                   domain, s.bad, s.n);
        set_free(&s);
        return BS_CTL_FAIL;
    }
    if (replace && s.n == 0) {
        bs_ctl_err("%s: no valid users: refusing to empty the set with --replace (use "
                   "'backstopctl domain del --purge %s' to drop it)",
                   domain, domain);
        set_free(&s);
        return BS_CTL_FAIL;
    }
    if (bs_ctl_connect(c) < 0) {
        set_free(&s);
        return BS_CTL_FAIL;
    }
    if (s.n == 0) {
        printf("imported 0 users into %s (0 already present), %zu bad lines\n", domain, s.bad);
        rc = BS_CTL_OK;
    } else {
        rc = write_set(c, domain, &s, replace);
    }
    if (rc == BS_CTL_OK && s.continued)
        bs_ctl_note("%zu indented line%s continued the entry before %s, as in Postfix: "
                    "not read as users",
                    s.continued, s.continued == 1 ? "" : "s", s.continued == 1 ? "it" : "them");
    if (rc == BS_CTL_OK && s.dups)
        bs_ctl_note("%zu duplicate entries counted once", s.dups);
    if (rc == BS_CTL_OK) {
        redisReply *rep;
        char key[BS_CTL_KEY_MAX];
        bs_ctl_key(c, key, sizeof(key), BS_KEY_DOMAINS, NULL);
        if ((rep = bs_ctl_cmd(c, "SISMEMBER", key, domain, (char *)NULL))) {
            if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
                bs_ctl_note("%s is not a protected domain: its users are not checked until "
                            "'backstopctl domain add %s'",
                            domain, domain);
            freeReplyObject(rep);
        }
    }
    set_free(&s);
    return rc;
}
