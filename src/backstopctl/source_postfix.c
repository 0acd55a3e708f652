/*
 * source_postfix.c - "type = postfix" sources: Postfix lookup tables
 *
 * PROVIDES
 *   bs_source_postfix_read  every key of every table, listed with
 *                           "postmap [-c DIR] -s TYPE:NAME" (source.h
 *                           contract): 0 when every table was listed and
 *                           postmap exited 0 within src->timeout_ms (one
 *                           deadline for them all); -1 otherwise.
 *
 * HOW
 *   The tables are src->maps, then those of src->maps_parameter as
 *   "postconf [-c DIR] -xh PARAM" prints them (split on commas and blanks;
 *   -x expands $names). "proxy:" in front is dropped: postmap reads the
 *   file itself. Only table types whose entries postmap can list are run
 *   (listable[]); any other type fails the read with a message naming it,
 *   before anything is run. A key without '@' (a bare domain in a
 *   virtual(5) table, a local part) is not an address and is skipped;
 *   "@domain" is emitted as such (the engine's catch-all).
 *
 * NEVER
 *   Runs a shell (argv only). Reads a table postmap was not asked for.
 *
 * LIMITS
 *   Up to BS_PF_MAX_TABLES tables; postconf's answer up to BS_PF_CONF_MAX
 *   bytes.
 */
#include <stdio.h>
#include <string.h>

#include "source_int.h"

#define BS_PF_MAX_TABLES 32
#define BS_PF_CONF_MAX 8192

/* The table types "postmap -s" can list (the others have no sequence
 * operation: regexp, pcre, cidr, tcp, ldap, mysql, static, ...). */
static const char *const listable[] = {"hash", "btree", "lmdb",     "cdb",
                                       "dbm",  "sdbm",  "texthash", "inline"};
#define NLISTABLE (sizeof listable / sizeof listable[0])

/* A buffer for postconf's answer. */
typedef struct pf_text {
    char buf[BS_PF_CONF_MAX + 1];
    size_t len;
    char *err;
    size_t errsz;
} pf_text;

static int text_sink(void *arg, const char *data, size_t n)
{
    pf_text *t = arg;

    if (t->len + n > BS_PF_CONF_MAX) {
        snprintf(t->err, t->errsz, "postconf: answer longer than %d bytes", BS_PF_CONF_MAX);
        return -1;
    }
    memcpy(t->buf + t->len, data, n);
    t->len += n;
    return 0;
}

/* The tables of one read, and argv's room. */
typedef struct pf_tables {
    char name[BS_PF_MAX_TABLES][BS_PF_CONF_MAX / 8];
    size_t n;
} pf_tables;

/* add_table - check the type, drop "proxy:"; 0, or -1 with err */
static int add_table(pf_tables *t, const char *s, size_t len, char *err, size_t errsz)
{
    const char *colon;
    size_t tlen;

    if (len > 6 && memcmp(s, "proxy:", 6) == 0) {
        s += 6;
        len -= 6;
    }
    colon = memchr(s, ':', len);
    if (colon == NULL) {
        snprintf(err, errsz, "%.*s: not a TYPE:NAME table", (int)len, s);
        return -1;
    }
    tlen = (size_t)(colon - s);
    size_t i;
    for (i = 0; i < NLISTABLE; i++)
        if (strlen(listable[i]) == tlen && memcmp(listable[i], s, tlen) == 0)
            break;
    if (i == NLISTABLE) {
        snprintf(err, errsz,
                 "%.*s: postmap -s cannot list %.*s tables (hash, btree, lmdb, cdb, dbm, sdbm, "
                 "texthash and inline can)",
                 (int)len, s, (int)tlen, s);
        return -1;
    }
    if (t->n == BS_PF_MAX_TABLES || len >= sizeof t->name[0]) {
        snprintf(err, errsz, "%.*s: more than %d tables, or a name too long", (int)len, s,
                 BS_PF_MAX_TABLES);
        return -1;
    }
    memcpy(t->name[t->n], s, len);
    t->name[t->n++][len] = '\0';
    return 0;
}

/* token_len - one table of a list: up to a comma or blank outside "{...}" (inline:) */
static size_t token_len(const char *s)
{
    size_t len = 0;
    int depth = 0;

    for (; s[len] != '\0'; len++) {
        if (s[len] == '{')
            depth++;
        else if (s[len] == '}' && depth > 0)
            depth--;
        else if (depth == 0 && strchr(", \t\r\n", s[len]) != NULL)
            break;
    }
    return len;
}

/* parameter_tables - postconf -xh PARAM, split; 0 / -1 */
static int parameter_tables(const bs_source *src, uint64_t deadline, pf_tables *t, char *err,
                            size_t errsz)
{
    static pf_text out;
    const char *argv[8];
    size_t k = 0, i = 0;

    argv[k++] = "postconf";
    if (src->config_directory[0]) {
        argv[k++] = "-c";
        argv[k++] = src->config_directory;
    }
    argv[k++] = "-xh";
    argv[k++] = src->maps_parameter;
    argv[k] = NULL;
    out.len = 0;
    out.err = err;
    out.errsz = errsz;
    if (bs__src_run(argv, "postconf", deadline, text_sink, &out, err, errsz) < 0)
        return -1;
    out.buf[out.len] = '\0';
    while (i < out.len) {
        size_t len = token_len(out.buf + i);
        if (len > 0 && add_table(t, out.buf + i, len, err, errsz) < 0)
            return -1;
        i += len + 1;
    }
    if (t->n == 0) {
        snprintf(err, errsz, "postconf: %s names no table", src->maps_parameter);
        return -1;
    }
    return 0;
}

/* bs_source_postfix_read - check every table's type, then list each */
int bs_source_postfix_read(const bs_source *src, bs_source_emit emit, void *arg, char *err,
                           size_t errsz)
{
    static pf_tables t;
    uint64_t deadline = bs__src_deadline(src->timeout_ms);
    bs__src_lines l;

    t.n = 0;
    for (size_t i = 0; i < src->nmaps; i++)
        if (add_table(&t, src->maps[i], strlen(src->maps[i]), err, errsz) < 0)
            return -1;
    if (src->maps_parameter[0] && parameter_tables(src, deadline, &t, err, errsz) < 0)
        return -1;
    bs__src_lines_init(&l, src, emit, arg, err, errsz);
    l.need_at = 1;
    for (size_t i = 0; i < t.n; i++) {
        const char *argv[8];
        char what[sizeof t.name[0] + 16];
        size_t k = 0;

        argv[k++] = "postmap";
        if (src->config_directory[0]) {
            argv[k++] = "-c";
            argv[k++] = src->config_directory;
        }
        argv[k++] = "-s";
        argv[k++] = t.name[i];
        argv[k] = NULL;
        snprintf(what, sizeof what, "postmap -s %s", t.name[i]);
        if (bs__src_run(argv, what, deadline, bs__src_lines_feed, &l, err, errsz) < 0 ||
            bs__src_lines_end(&l) < 0)
            return -1;
    }
    return 0;
}
