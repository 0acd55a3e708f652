/*
 * test_tables.c - the tables the code is built from agree with the
 * documentation and the messages that list them
 *
 *   test_tables README.md man/backstop.ini.5
 *
 * - keys.h's BS_KEY_TABLE and README's key table ("| `backstop:...` | TYPE
 *   |") name the same keys with the same types (a TTL written "+ TTL");
 * - config.c's option table, README's config table ("| `[section] key`,
 *   `key2` |") and backstop.ini(5) (".SH \"[section]\"", then ".TP" and a
 *   ".BI \"key = \" ..." line) name the same keys in the same sections;
 * - the unknown-section error lists every section of the option table;
 * - stats.h's BS_COUNTERS: every row is in the statistics log line as
 *   name=value, every row with a metric in the Prometheus text with its
 *   value; protocol errors are named (proto_error_line=...) in both;
 * - the syslog client's counters (log.h: lines sent, dropped, connect
 *   failures) are in both too, with their values (made non-zero by a few
 *   lines logged with nothing listening).
 * Every difference is printed; any one fails the test.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backstop/config.h"
#include "backstop/keys.h"
#include "backstop/log.h"
#include "metrics.h"
#include "backstop/proto.h"
#include "stats.h"
#include "check.h"

#define NAMES_MAX 128
#define NAME_LEN 96
#define LINE_MAX_ 4096

/* A set of names ("[section] key" or "key TYPE"), filled from one side. */
typedef struct names {
    const char *from;
    int n;
    char item[NAMES_MAX][NAME_LEN];
} names;

static void add(names *s, const char *a, size_t alen, const char *b, size_t blen)
{
    if (s->n >= NAMES_MAX || alen + blen + 2 > NAME_LEN) {
        fprintf(stderr, "%s: too many or too long names\n", s->from);
        CHECK(0);
        return;
    }
    snprintf(s->item[s->n++], NAME_LEN, "%.*s %.*s", (int)alen, a, (int)blen, b);
}

static int has(const names *s, const char *item)
{
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->item[i], item) == 0)
            return 1;
    }
    return 0;
}

/* same - every item of a is in b and back; print what is missing where */
static void same(const names *a, const names *b)
{
    for (int i = 0; i < a->n; i++) {
        if (!has(b, a->item[i]))
            fprintf(stderr, "FAILED: \"%s\" is in %s but not in %s\n", a->item[i], a->from,
                    b->from);
        CHECK(has(b, a->item[i]));
    }
    for (int i = 0; i < b->n; i++) {
        if (!has(a, b->item[i]))
            fprintf(stderr, "FAILED: \"%s\" is in %s but not in %s\n", b->item[i], b->from,
                    a->from);
        CHECK(has(a, b->item[i]));
    }
    CHECK(a->n > 0 && b->n > 0);
}

static FILE *open_doc(const char *path)
{
    FILE *fp = fopen(path, "r");

    if (!fp)
        fprintf(stderr, "FAILED: cannot read %s\n", path);
    CHECK(fp != NULL);
    return fp;
}

/* table_rows - call row() for each "| ..." line of the markdown table whose
 * header line is header */
static void table_rows(const char *path, const char *header, names *out,
                       void (*row)(const char *line, names *out))
{
    char line[LINE_MAX_];
    FILE *fp = open_doc(path);
    int in = 0, found = 0;

    if (!fp)
        return;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        if (!in) {
            in = found = strcmp(line, header) == 0;
            continue;
        }
        if (line[0] != '|')
            break;
        if (strncmp(line, "|---", 4) != 0)
            row(line, out);
    }
    fclose(fp);
    if (!found)
        fprintf(stderr, "FAILED: %s has no table \"%s\"\n", path, header);
    CHECK(found);
}

/* key_row - "| `backstop:rcpt:<domain>` | SET | ..." */
static void key_row(const char *line, names *out)
{
    const char *name = strstr(line, "`backstop:"), *end, *type, *tend;

    if (!name || !(end = strchr(name + 1, '`')) || !(type = strstr(end, "| ")) ||
        !(tend = strstr(type + 2, " |"))) {
        fprintf(stderr, "FAILED: %s: cannot read row %s\n", out->from, line);
        CHECK(0);
        return;
    }
    name += strlen("`backstop:");
    add(out, name, (size_t)(end - name), type + 2, (size_t)(tend - type - 2));
}

/* option_row - "| `[server] user`, `group` | ..." */
static void option_row(const char *line, names *out)
{
    const char *cell_end = strstr(line + 1, " |"), *p = line, *q;
    const char *sec = NULL;
    size_t seclen = 0;

    while (cell_end && (p = strchr(p, '`')) && p < cell_end && (q = strchr(p + 1, '`'))) {
        p++;
        if (*p == '[') {
            const char *close = memchr(p, ']', (size_t)(q - p));
            if (!close)
                break;
            sec = p;
            seclen = (size_t)(close - p + 1);
            p = close + 2;
        }
        if (sec && p < q)
            add(out, sec, seclen, p, (size_t)(q - p));
        p = q + 1;
    }
    if (!sec) {
        fprintf(stderr, "FAILED: %s: cannot read row %s\n", out->from, line);
        CHECK(0);
    }
}

/* man_options - the keys of each .SH "[section]": the "key = " of the line
 * after each .TP */
static void man_options(const char *path, names *out)
{
    char line[LINE_MAX_], sec[64] = "";
    FILE *fp = open_doc(path);
    int after_tp = 0;

    if (!fp)
        return;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, ".SH ", 4) == 0) {
            const char *open = strstr(line, "\"["), *close = strstr(line, "]\"");
            sec[0] = '\0';
            if (open && close && close > open)
                snprintf(sec, sizeof sec, "%.*s", (int)(close - open), open + 1);
            continue;
        }
        if (after_tp && sec[0] && line[0] == '.') {
            /* every identifier followed by " =" names a key */
            for (const char *p = line; (p = strstr(p, " =")); p += 2) {
                const char *start = p;
                while (start > line && (start[-1] == '_' || islower((unsigned char)start[-1]) ||
                                        isdigit((unsigned char)start[-1])))
                    start--;
                if (start < p)
                    add(out, sec, strlen(sec), start, (size_t)(p - start));
            }
        }
        after_tp = strcmp(line, ".TP") == 0;
    }
    fclose(fp);
}

static void check_keys(const char *readme)
{
    static names header = {.from = "include/backstop/keys.h"}, doc;
    char type[32];

    doc.from = readme;
#define KEY(name, arg, redis_type, ttl, writer)                                                    \
    snprintf(type, sizeof type, "%s%s", redis_type, ttl ? " + TTL" : "");                          \
    add(&header, name arg, strlen(name arg), type, strlen(type));
    BS_KEY_TABLE(KEY)
#undef KEY
    table_rows(readme, "| key | type | meaning |", &doc, key_row);
    same(&header, &doc);
}

static void check_options(const char *readme, const char *man)
{
    static names table = {.from = "src/common/config.c options[]"}, doc, page;
    const char *name, *sec;
    char brackets[64];

    doc.from = readme;
    page.from = man;
    for (size_t i = 0; (name = bs_config_option(i, &sec)); i++) {
        snprintf(brackets, sizeof brackets, "[%s]", sec);
        add(&table, brackets, strlen(brackets), name, strlen(name));
    }
    table_rows(readme, "| key | default | meaning |", &doc, option_row);
    man_options(man, &page);
    same(&table, &doc);
    same(&table, &page);
}

/* check_section_error - "[bogus]" is refused with every section listed */
static void check_section_error(void)
{
    char path[] = "/tmp/test_tables_XXXXXX", err[512], want[256] = "(known: ";
    const char *sec, *prev = NULL;
    bs_config cfg;
    int fd = mkstemp(path);

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, "[bogus]\n", 8) == 8);
    close(fd);
    for (size_t i = 0; bs_config_option(i, &sec); i++) {
        if (prev && strcmp(prev, sec) == 0)
            continue;
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", prev ? ", " : "", sec);
        prev = sec;
    }
    snprintf(want + strlen(want), sizeof want - strlen(want), ")");
    CHECK(strstr(want, "metrics") != NULL);
    CHECK_EQ_INT(bs_config_load(path, &cfg, err, sizeof err), -1);
    if (!strstr(err, want))
        fprintf(stderr, "FAILED: \"%s\" does not list %s\n", err, want);
    CHECK(strstr(err, want) != NULL);
    unlink(path);
}

/* stats_line - bs_stats_log's line, caught from stderr */
static void stats_line(char *out, size_t outsz)
{
    char path[] = "/tmp/test_tables_XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    FILE *fp;

    out[0] = '\0';
    CHECK(fd >= 0 && saved >= 0);
    if (fd < 0 || saved < 0)
        return;
    fflush(stderr);
    dup2(fd, 2);
    bs_stats_log("test");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    if ((fp = fopen(path, "r"))) {
        if (!fgets(out, (int)outsz, fp))
            out[0] = '\0';
        fclose(fp);
    }
    unlink(path);
}

static void check_counters(void)
{
    static char text[65536];
    char line[4096], want[160];
    uint64_t v = 1000;
    size_t i;

    for (i = 0; i < bs_ncounters; i++)
        memcpy((char *)&bs_stat + bs_counters[i].off, &(uint64_t){v++}, sizeof(v));
    for (i = 1; i < BS_PROTO_NERR; i++)
        bs_stat.proto_errors[i] = v++;
    stats_line(line, sizeof line);
    bs_metrics_render(text, sizeof text, 1);
    for (i = 0; i < bs_ncounters; i++) {
        const bs_counter *c = &bs_counters[i];
        snprintf(want, sizeof want, " %s=%llu ", c->name, (unsigned long long)bs_counter_value(c));
        if (!strstr(line, want))
            fprintf(stderr, "FAILED: the stats line has no \"%s\"\n", want);
        CHECK(strstr(line, want) != NULL);
        if (!c->metric)
            continue;
        snprintf(want, sizeof want, "\n%s %llu\n", c->metric,
                 (unsigned long long)bs_counter_value(c));
        if (!strstr(text, want))
            fprintf(stderr, "FAILED: the metrics have no \"%s\"\n", want + 1);
        CHECK(strstr(text, want) != NULL);
    }
    for (i = 1; i < BS_PROTO_NERR; i++) {
        const char *name = bs_proto_error_name(-(int)i);
        CHECK(strcmp(name, "unknown") != 0);
        snprintf(want, sizeof want, " proto_error_%s=%llu", name,
                 (unsigned long long)bs_stat.proto_errors[i]);
        if (!strstr(line, want))
            fprintf(stderr, "FAILED: the stats line has no \"%s\"\n", want);
        CHECK(strstr(line, want) != NULL);
        snprintf(want, sizeof want, "backstop_protocol_errors_total{error=\"%s\"} %llu\n", name,
                 (unsigned long long)bs_stat.proto_errors[i]);
        CHECK(strstr(text, want) != NULL);
    }
    CHECK(strstr(line, "proto_error_1") == NULL);
}

/* check_log_counters - bs_log_stats's counters in the stats line and the
 * metrics, with their values */
static void check_log_counters(void)
{
    static char text[65536];
    static const char *const metric[] = {"backstop_log_lines_total", "backstop_log_dropped_total",
                                         "backstop_log_connect_failures_total",
                                         "backstop_log_send_calls_total"};
    static const char *const field[] = {"log_sent", "log_dropped", "log_connect_failures",
                                        "log_send_calls"};
    char dir[] = "/tmp/test_tables_XXXXXX", path[64], line[4096], want[160];
    struct bs_log_stats ls;
    unsigned long long v[4];

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/nobody", dir);
    bs_log_open_path("test_tables", "mail", 1, path); /* nothing listens there */
    bs_log(BS_LOG_WARN, "test_tables: a line syslog will not take");
    bs_log(BS_LOG_WARN, "test_tables: another");
    bs_log_stats(&ls);
    CHECK(ls.dropped >= 2 && ls.connect_failures >= 1);
    stats_line(line, sizeof line); /* (itself one more line dropped) */
    v[0] = ls.sent, v[1] = ls.dropped, v[2] = ls.connect_failures, v[3] = ls.send_calls;
    for (int i = 0; i < 4; i++) {
        snprintf(want, sizeof want, " %s=%llu", field[i], v[i]);
        if (v[i] && !strstr(line, want))
            fprintf(stderr, "FAILED: the stats line has no \"%s\"\n", want);
        CHECK(v[i] == 0 || strstr(line, want) != NULL);
    }
    bs_log_stats(&ls);
    v[0] = ls.sent, v[1] = ls.dropped, v[2] = ls.connect_failures, v[3] = ls.send_calls;
    bs_metrics_render(text, sizeof text, 1);
    for (int i = 0; i < 4; i++) {
        snprintf(want, sizeof want, "\n%s %llu\n", metric[i], v[i]);
        if (!strstr(text, want))
            fprintf(stderr, "FAILED: the metrics have no \"%s\"\n", want + 1);
        CHECK(strstr(text, want) != NULL);
        snprintf(want, sizeof want, "# TYPE %s counter\n", metric[i]);
        CHECK(strstr(text, want) != NULL);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_tables README.md man/backstop.ini.5\n");
        return 2;
    }
    check_keys(argv[1]);
    check_options(argv[1], argv[2]);
    check_section_error();
    check_counters();
    check_log_counters();
    return check_summary();
}
