/*
 * test_sync.c - "backstopctl sync" without Redis: the [source NAME] and
 * [sync] config (config.c), the engine (sync.c) against fake readers, and
 * the file and command readers (source_file.c, source_command.c) on real
 * files and programs.
 *
 * Runs with cwd tests/unit; writes its inputs to a mkdtemp() directory in /tmp.
 */
#include "backstop/config.h"
#include "sync.h"
#include "source_int.h"

#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Inputs are files in one mkdtemp() directory, removed at the end. */
static char tmp_dir[64] = "/tmp/test_sync.XXXXXX";
static char tmp_path[128];
static unsigned tmp_seq;

/* write_tmp - len bytes into the next file of tmp_dir; its path */
static const char *write_tmp(const char *text, size_t len)
{
    FILE *fp;

    snprintf(tmp_path, sizeof tmp_path, "%s/in%u", tmp_dir, tmp_seq++);
    fp = fopen(tmp_path, "w");
    if (!fp || fwrite(text, 1, len, fp) != len || fclose(fp) != 0) {
        perror(tmp_path);
        exit(2);
    }
    return tmp_path;
}

static int load(const char *text, bs_config *cfg, char *err, size_t errsz)
{
    int rc = bs_config_load(write_tmp(text, strlen(text)), cfg, err, errsz);

    unlink(tmp_path);
    return rc;
}

/* ------------------------------------------------------------ config */

static void test_config_sources(void)
{
    static bs_config cfg, again;
    char err[512], *dump = NULL;
    size_t dumplen = 0;
    FILE *fp;
    const char *text = "[sync]\n"
                       "max_shrink = 35%\n"
                       "add_domains = yes\n"
                       "[source relay]\n"
                       "type = postfix\n"
                       "domain = Example.COM\n"
                       "domain = example.org.\n"
                       "map = hash:/etc/postfix/relay_recipients\n"
                       "map = lmdb:/etc/postfix/more\n"
                       "maps = relay_recipient_maps\n"
                       "[source hr]\n"
                       "type = file\n"
                       "domain = example.net\n"
                       "path = /var/lib/hr.txt\n"
                       "timeout = 2m\n"
                       "[source ad]\n"
                       "type = ldap\n"
                       "domain = example.com\n"
                       "uri = ldaps://dc1\n"
                       "base = DC=example,DC=com\n";

    CHECK_EQ_INT(load(text, &cfg, err, sizeof err), 0);
    CHECK_EQ_INT(cfg.sync_max_shrink, 35);
    CHECK_EQ_INT(cfg.sync_add_domains, 1);
    CHECK_EQ_INT(cfg.nsources, 3);
    CHECK_EQ_STR(cfg.sources[0].name, "relay");
    CHECK_EQ_INT(cfg.sources[0].type, BS_SRC_POSTFIX);
    CHECK_EQ_INT(cfg.sources[0].ndomains, 2);
    CHECK_EQ_STR(cfg.sources[0].domains[0], "example.com");
    CHECK_EQ_STR(cfg.sources[0].domains[1], "example.org");
    CHECK_EQ_INT(cfg.sources[0].nmaps, 2);
    CHECK_EQ_STR(cfg.sources[0].maps[1], "lmdb:/etc/postfix/more");
    CHECK_EQ_STR(cfg.sources[0].maps_parameter, "relay_recipient_maps");
    CHECK_EQ_INT(cfg.sources[0].timeout_ms, 30000);
    CHECK_EQ_INT(cfg.sources[1].type, BS_SRC_FILE);
    CHECK_EQ_STR(cfg.sources[1].path, "/var/lib/hr.txt");
    CHECK_EQ_INT(cfg.sources[1].timeout_ms, 120000);
    CHECK_EQ_INT(cfg.sources[2].type, BS_SRC_LDAP);
    CHECK_EQ_INT(cfg.sources[2].nattributes, 1); /* default: mail */
    CHECK_EQ_STR(cfg.sources[2].attributes[0], "mail");
    CHECK_EQ_STR(cfg.sources[2].filter, "(objectClass=*)");
    CHECK_EQ_INT(cfg.sources[2].page_size, 500);

    /* the dump reads back to the same configuration */
    fp = open_memstream(&dump, &dumplen);
    bs_config_dump(&cfg, fp, BS_DUMP_SECRETS);
    fclose(fp);
    CHECK(strstr(dump, "[source hr]\ntype = file\ndomain = example.net\ntimeout = 2m\npath = "
                       "/var/lib/hr.txt\n") != NULL);
    CHECK(strstr(dump, "max_shrink = 35%") != NULL);
    CHECK_EQ_INT(load(dump, &again, err, sizeof err), 0);
    strcpy(again.file, cfg.file);
    CHECK(memcmp(&cfg, &again, sizeof cfg) == 0);
    free(dump);

    /* a UTF-8 domain is stored as its A-label, as the daemon matches it */
    CHECK_EQ_INT(load("[source u]\ntype = file\ndomain = BÜCHER.example\ndomain = "
                      "xn--bcher-kva.example\npath = /p\n",
                      &cfg, err, sizeof err),
                 -1); /* the same domain twice */
    CHECK_EQ_INT(load("[source u]\ntype = file\ndomain = BÜCHER.example\npath = /p\n", &cfg, err,
                      sizeof err),
                 0);
    CHECK_EQ_STR(cfg.sources[0].domains[0], "xn--bcher-kva.example");

    /* defaults */
    CHECK_EQ_INT(load("[log]\nlevel = info\n", &cfg, err, sizeof err), 0);
    CHECK_EQ_INT(cfg.sync_max_shrink, 20);
    CHECK_EQ_INT(cfg.sync_add_domains, 0);
    CHECK_EQ_INT(cfg.nsources, 0);
}

static const struct {
    const char *text;
    const char *error; /* after "FILE:" */
} bad_configs[] = {
    {"[source a]\ndomain = x.org\npath = /p\n", "1: [source a]: missing type"},
    {"[source a]\ntype = file\npath = /p\n", "1: [source a]: missing domain"},
    {"[source a]\ntype = file\ndomain = x.org\n", "1: [source a]: missing path"},
    {"[source a]\ntype = postfix\ndomain = x.org\n", "1: [source a]: missing map or maps"},
    {"[source a]\ntype = ldap\ndomain = x.org\nuri = ldap://h\n", "1: [source a]: missing base"},
    {"[source a]\ntype = command\ndomain = x.org\ncommand = c\npath = /p\n",
     "5: [source a] path: not a key of type = command sources"},
    {"[source a]\ntype = file\ndomain = x.org\npath = /p\n[source a]\n",
     "5: [source a]: a second section of that name (the first is at line 1)"},
    {"[source a b]\n", "1: [source \"a b\"]: a source name is"},
    {"[source a]\ntype = mysql\n", "2: [source a] type: \"mysql\" is not one of: ldap, postfix, "},
    {"[source a]\ndomain = exa..mple.de\n",
     "2: [source a] domain: \"exa..mple.de\" is not a domain "
     "name"},
    {"[source a]\ndomain = b\xfc"
     "cher.de\n",
     "2: [source a] domain: \"b\\xfccher.de\" is not a "
     "domain name"}, /* Latin-1, not UTF-8 */
    {"[source a]\nfrobnicate = 1\n", "2: [source a] frobnicate: unknown key"},
    {"[source a]\ntype = file\ntype = file\n", "3: [source a] type: set twice, first at line 2"},
    {"[sync]\nmax_shrink = 101%\n", "2: [sync] max_shrink: \"101%\" is out of range (0%..100%)"},
    {"[sync]\nadd_domains = maybe\n", "2: [sync] add_domains: \"maybe\" is not one of: yes, no"},
};

static void test_config_errors(void)
{
    static bs_config cfg;
    char err[512];

    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++) {
        int rc = load(bad_configs[i].text, &cfg, err, sizeof err);
        const char *colon = strchr(err, ':');
        int ok = rc == -1 && colon &&
                 strncmp(colon + 1, bad_configs[i].error, strlen(bad_configs[i].error)) == 0;
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  case %zu: rc %d, %s\n", i, rc, err);
    }
}

/* ------------------------------------------------------------ engine */

/* A fake reader: emits the NULL-terminated list in fake_entries, then
 * returns fake_rc (with fake_err). */
static const char *const *fake_entries;
static int fake_rc;
static const char *fake_err = "";

static int fake_read(const bs_source *src, bs_source_emit emit, void *arg, char *err, size_t errsz)
{
    (void)src;
    for (size_t i = 0; fake_entries[i]; i++) {
        char *copy = dup_exact(fake_entries[i], strlen(fake_entries[i])); /* no NUL after */
        int rc = emit(arg, copy, strlen(fake_entries[i]));
        free(copy);
        if (rc < 0)
            return -1;
    }
    snprintf(err, errsz, "%s", fake_err);
    return fake_rc;
}

static bs_source fake_source(const char *name, const char *d1, const char *d2)
{
    bs_source src;

    memset(&src, 0, sizeof src);
    snprintf(src.name, sizeof src.name, "%s", name);
    snprintf(src.domains[src.ndomains++], BS_SRC_TEXT_MAX, "%s", d1);
    if (d2)
        snprintf(src.domains[src.ndomains++], BS_SRC_TEXT_MAX, "%s", d2);
    return src;
}

static int read_fake(bs_sync *s, const bs_source *src, const char *const *entries, int rc)
{
    char err[256];

    fake_entries = entries;
    fake_rc = rc;
    fake_err = rc ? "bind failed" : "";
    return bs_sync_read(s, src, fake_read, err, sizeof err);
}

/* have_of - a strdup'd copy of a NULL-terminated list, as Redis's members */
static char **have_of(const char *const *v, size_t *n)
{
    char **out = calloc(64, sizeof *out);

    for (*n = 0; v[*n]; (*n)++)
        out[*n] = (char *)v[*n];
    return out;
}

/* blanks around an entry are not part of it, nor a quoted local part's
 * quotes (Postfix passes "john smith"@x as john smith@x) */
static void test_engine_blanks_and_quotes(void)
{
    static const char *const a[] = {" lead@example.com",
                                    "trail@example.com ",
                                    "\t tab@example.com\t",
                                    "\"Quoted User\"@example.com",
                                    "\"a\\\"b\"@example.com",
                                    "\"half@example.com",
                                    NULL};
    bs_source sa = fake_source("ad", "example.com", NULL);
    bs_sync s;
    size_t n;

    bs_sync_init(&s);
    CHECK_EQ_INT(read_fake(&s, &sa, a, 0), 0);
    CHECK_EQ_INT(s.bad, 0);
    bs_sync_domain *com = bs_sync_domain_get(&s, "example.com");
    char **none = have_of((const char *const[]){NULL}, &n);
    CHECK_EQ_INT(bs_sync_plan(com, none, n, 20, 0), 0);
    CHECK_EQ_INT(com->nwant, 6);
    CHECK_EQ_STR(com->want[0], "\"half"); /* not a quoted string: as it is */
    CHECK_EQ_STR(com->want[1], "a\"b");
    CHECK_EQ_STR(com->want[2], "lead");
    CHECK_EQ_STR(com->want[3], "quoted user");
    CHECK_EQ_STR(com->want[4], "tab");
    CHECK_EQ_STR(com->want[5], "trail");
    free(none);
    bs_sync_free(&s);
}

static void test_engine_read(void)
{
    static const char *const a[] = {"Alice@Example.COM", "bob@example.com",    "@example.com",
                                    "carol@other.org",   "no-at-sign",         "x@exa..mple.com",
                                    "dave@example.org",  "alice@example.com.", NULL};
    static const char *const b[] = {"erin@example.com", "bob@example.com", NULL};
    static const char *const c[] = {"zed@example.org", NULL};
    bs_source sa = fake_source("relay", "example.com", "example.org");
    bs_source sb = fake_source("hr", "example.com", NULL);
    bs_source sc = fake_source("broken", "example.org", NULL);
    bs_sync s;
    size_t n;

    bs_sync_init(&s);
    CHECK_EQ_INT(read_fake(&s, &sa, a, 0), 0);
    CHECK_EQ_INT(s.entries, 8);
    CHECK_EQ_INT(s.bad, 2); /* no @, invalid domain */
    CHECK_EQ_INT(s.foreign, 1);
    CHECK(strstr(s.bad_shown[1], "not a valid domain") != NULL);
    CHECK_EQ_INT(read_fake(&s, &sb, b, 0), 0);
    CHECK_EQ_INT(s.ndom, 2);

    /* union of two sources, canonical, unique; the catch-all is "*" */
    bs_sync_domain *com = bs_sync_domain_get(&s, "example.com");
    char **none = have_of((const char *const[]){NULL}, &n);
    CHECK_EQ_INT(bs_sync_plan(com, none, n, 20, 0), 0);
    CHECK_EQ_INT(com->nwant, 4);
    CHECK_EQ_STR(com->want[0], "*");
    CHECK_EQ_STR(com->want[1], "alice");
    CHECK_EQ_STR(com->want[2], "bob");
    CHECK_EQ_STR(com->want[3], "erin");
    CHECK_EQ_STR(com->sources, "relay,hr");
    CHECK_EQ_INT(com->outcome, BS_SYNC_WRITE);
    free(none);

    /* a failing source: nothing it emitted is kept, its domain is failed
     * even though another source read fine */
    CHECK_EQ_INT(read_fake(&s, &sc, c, -1), -1);
    bs_sync_domain *org = bs_sync_domain_get(&s, "example.org");
    CHECK_EQ_INT(org->nwant, 1); /* dave from relay only: zed was dropped */
    CHECK_EQ_INT(org->failed, 1);
    CHECK(strstr(org->why, "broken: bind failed") != NULL);
    none = have_of((const char *const[]){"dave", NULL}, &n);
    CHECK_EQ_INT(bs_sync_plan(org, none, n, 20, 1), 0);
    CHECK_EQ_INT(org->outcome, BS_SYNC_SOURCE_FAILED); /* --force does not lift it */
    free(none);
    bs_sync_free(&s);
}

/* A source's entries in UTF-8 and in A-labels land in the A-label domain
 * its config names (config.c stores it so): one set, one canonical form. */
static void test_engine_idn(void)
{
    static const char *const e[] = {"anna@bücher.example",
                                    "Ben@XN--BCHER-KVA.example",
                                    "@BÜCHER.example.",
                                    "anna@xn--bcher-kva.example",
                                    "carl@b\xfc"
                                    "cher.example",
                                    NULL};
    bs_source src = fake_source("idn", "xn--bcher-kva.example", NULL);
    bs_sync s;
    size_t n;

    bs_sync_init(&s);
    CHECK_EQ_INT(read_fake(&s, &src, e, 0), 0);
    CHECK_EQ_INT(s.bad, 1); /* Latin-1 is not a domain */
    CHECK_EQ_INT(s.foreign, 0);
    bs_sync_domain *d = bs_sync_domain_get(&s, "xn--bcher-kva.example");
    char **none = have_of((const char *const[]){NULL}, &n);
    CHECK_EQ_INT(bs_sync_plan(d, none, n, 20, 0), 0);
    CHECK_EQ_INT(d->nwant, 3);
    if (d->nwant == 3) {
        CHECK_EQ_STR(d->want[0], "*");
        CHECK_EQ_STR(d->want[1], "anna");
        CHECK_EQ_STR(d->want[2], "ben");
    }
    CHECK_EQ_INT(s.ndom, 1);
    free(none);
    bs_sync_free(&s);
}

/* plan_case - want wanted users, Redis has have_n users (u0..), the first
 * keep of them in want too */
static int plan_case(size_t want_n, size_t have_n, size_t keep, unsigned max_shrink, int force,
                     size_t *added, size_t *removed)
{
    bs_sync s;
    bs_sync_domain *d;
    char **have = calloc(have_n + 1, sizeof *have);
    char name[32];
    int outcome;

    bs_sync_init(&s);
    d = bs_sync_domain_get(&s, "example.com");
    d->want = calloc(want_n + 1, sizeof *d->want);
    for (size_t i = 0; i < want_n; i++) {
        snprintf(name, sizeof name, i < keep ? "u%04zu" : "new%04zu", i);
        d->want[d->nwant++] = strdup(name);
    }
    for (size_t i = 0; i < have_n; i++) {
        snprintf(name, sizeof name, "u%04zu", i);
        have[i] = strdup(name);
    }
    bs_sync_plan(d, have, have_n, max_shrink, force);
    outcome = d->outcome;
    *added = d->nadded;
    *removed = d->nremoved;
    for (size_t i = 0; i < have_n; i++)
        free(have[i]);
    free(have);
    bs_sync_free(&s);
    return outcome;
}

static const struct {
    size_t want, have, keep;
    unsigned max_shrink;
    int force;
    int outcome;
    size_t added, removed;
} plans[] = {
    {100, 100, 100, 20, 0, BS_SYNC_UNCHANGED, 0, 0},
    {100, 100, 99, 20, 0, BS_SYNC_WRITE, 1, 1},          /* one replaced: no shrink */
    {80, 100, 80, 20, 0, BS_SYNC_WRITE, 0, 20},          /* exactly 20 %: allowed */
    {79, 100, 79, 20, 0, BS_SYNC_SHRINK_REFUSED, 0, 21}, /* 21 % */
    {79, 100, 79, 20, 1, BS_SYNC_WRITE, 0, 21},          /* --force */
    {79, 100, 79, 25, 0, BS_SYNC_WRITE, 0, 21},          /* max_shrink 25% */
    {0, 100, 0, 100, 0, BS_SYNC_EMPTY_REFUSED, 0, 100},  /* empty, even at 100 % */
    {0, 100, 0, 20, 1, BS_SYNC_WRITE, 0, 100},           /* --force empties */
    {0, 0, 0, 20, 0, BS_SYNC_UNCHANGED, 0, 0},
    {50, 0, 0, 20, 0, BS_SYNC_WRITE, 50, 0}, /* a new domain */
    {60, 100, 50, 20, 0, BS_SYNC_SHRINK_REFUSED, 10, 50},
    /* users removed count, not the net change: every user swapped for
     * another (net 0), or 30 % gone with as many new ones, is refused */
    {100, 100, 0, 20, 0, BS_SYNC_SHRINK_REFUSED, 100, 100},
    {100, 100, 70, 20, 0, BS_SYNC_SHRINK_REFUSED, 30, 30},
    {120, 100, 80, 20, 0, BS_SYNC_WRITE, 40, 20},
    {100, 100, 0, 20, 1, BS_SYNC_WRITE, 100, 100}, /* --force */
};

static void test_engine_plan(void)
{
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
        size_t added, removed;
        int outcome = plan_case(plans[i].want, plans[i].have, plans[i].keep, plans[i].max_shrink,
                                plans[i].force, &added, &removed);
        CHECK_EQ_INT(outcome, plans[i].outcome);
        CHECK_EQ_INT(added, plans[i].added);
        CHECK_EQ_INT(removed, plans[i].removed);
        if (outcome != plans[i].outcome)
            fprintf(stderr, "  plan case %zu\n", i);
    }
}

static void test_record(void)
{
    bs_sync_domain d;
    char out[256];

    memset(&d, 0, sizeof d);
    strcpy(d.sources, "relay,hr");
    d.nwant = 10, d.nhave = 12, d.nadded = 1, d.nremoved = 3;
    d.outcome = BS_SYNC_OK;
    bs_sync_record(&d, 1700000000, out, sizeof out);
    CHECK_EQ_STR(out, "time=1700000000;source=relay,hr;count=10;added=1;removed=3;outcome=ok");
    d.outcome = BS_SYNC_SHRINK_REFUSED; /* nothing written: the count Redis still holds */
    bs_sync_record(&d, 1700000000, out, sizeof out);
    CHECK_EQ_STR(out, "time=1700000000;source=relay,hr;count=12;added=0;removed=0;"
                      "outcome=shrink-refused");
}

/* ------------------------------------------------------------ readers */

/* collect - an emit callback appending "entry|" to a buffer */
typedef struct collected {
    char text[4096];
    size_t len, n;
    size_t stop_after; /* 0: never stop */
} collected;

static int collect(void *arg, const char *addr, size_t len)
{
    collected *c = arg;

    c->len += (size_t)snprintf(c->text + c->len, sizeof c->text - c->len, "%.*s|", (int)len, addr);
    c->n++;
    return c->stop_after && c->n >= c->stop_after ? -1 : 0;
}

static void test_file_reader(void)
{
    static const char text[] = "\xef\xbb\xbf"
                               "alice@example.com\r\n"
                               "# a comment\r\n"
                               "\r\n"
                               "   # indented comment\n"
                               "  bob@example.com   OK\n"
                               "@example.com\tcatch-all\n"
                               "last@example.com"; /* no line end */
    bs_source src;
    collected c;
    char err[256], *big;

    memset(&src, 0, sizeof src);
    src.timeout_ms = 10000;
    snprintf(src.path, sizeof src.path, "%s", write_tmp(text, sizeof text - 1));
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(bs_source_file_read(&src, collect, &c, err, sizeof err), 0);
    CHECK_EQ_STR(c.text, "alice@example.com|bob@example.com|@example.com|last@example.com|");
    unlink(tmp_path);

    /* a line over the limit fails the read */
    big = malloc(BS_SRC_LINE_MAX + 64);
    memset(big, 'a', BS_SRC_LINE_MAX + 10);
    memcpy(big + BS_SRC_LINE_MAX + 10, "@x.org\n", 7);
    snprintf(src.path, sizeof src.path, "%s", write_tmp(big, BS_SRC_LINE_MAX + 17));
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(bs_source_file_read(&src, collect, &c, err, sizeof err), -1);
    CHECK(strstr(err, "line 1 is longer than") != NULL);
    unlink(tmp_path);
    free(big);

    snprintf(src.path, sizeof src.path, "/nonexistent/file");
    CHECK_EQ_INT(bs_source_file_read(&src, collect, &c, err, sizeof err), -1);
    CHECK(strstr(err, "No such file") != NULL);
}

static void test_command_reader(void)
{
    bs_source src;
    collected c;
    char err[256];
    uint64_t t0;

    memset(&src, 0, sizeof src);
    src.timeout_ms = 10000;
    snprintf(src.command, sizeof src.command, "printf 'a@x.org\\r\\n# c\\nb@x.org x\\n'");
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(bs_source_command_read(&src, collect, &c, err, sizeof err), 0);
    CHECK_EQ_STR(c.text, "a@x.org|b@x.org|");

    /* non-zero exit after printing: a failure */
    snprintf(src.command, sizeof src.command, "echo a@x.org; exit 3");
    CHECK_EQ_INT(bs_source_command_read(&src, collect, &c, err, sizeof err), -1);
    CHECK(strstr(err, "exit status 3") != NULL);

    /* timeout: the whole process group dies (the sleep too), promptly */
    src.timeout_ms = 1000;
    snprintf(src.command, sizeof src.command, "echo a@x.org; sleep 30 | cat; echo never@x.org");
    memset(&c, 0, sizeof c);
    t0 = bs__src_deadline(0);
    CHECK_EQ_INT(bs_source_command_read(&src, collect, &c, err, sizeof err), -1);
    CHECK(strstr(err, "timeout") != NULL);
    CHECK(bs__src_deadline(0) - t0 < 5000);

    /* a program that closes stdout but keeps running is waited for, up to the deadline */
    snprintf(src.command, sizeof src.command, "exec >&-; sleep 30");
    t0 = bs__src_deadline(0);
    CHECK_EQ_INT(bs_source_command_read(&src, collect, &c, err, sizeof err), -1);
    CHECK(strstr(err, "timeout") != NULL);
    CHECK(bs__src_deadline(0) - t0 < 5000);

    /* the callback stops the read: the program is killed, the read fails */
    src.timeout_ms = 10000;
    snprintf(src.command, sizeof src.command, "yes a@x.org");
    memset(&c, 0, sizeof c);
    c.stop_after = 5;
    snprintf(err, sizeof err, "stopped by the callback");
    t0 = bs__src_deadline(0);
    CHECK_EQ_INT(bs_source_command_read(&src, collect, &c, err, sizeof err), -1);
    CHECK(bs__src_deadline(0) - t0 < 5000);
}

int main(void)
{
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_config_sources();
    test_config_errors();
    test_engine_read();
    test_engine_blanks_and_quotes();
    test_engine_idn();
    test_engine_plan();
    test_record();
    test_file_reader();
    test_command_reader();
    rmdir(tmp_dir);
    return check_summary();
}
