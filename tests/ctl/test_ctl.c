/*
 * test_ctl.c - unit tests of backstopctl's pure parts, table-driven
 *
 * The postqueue -j reader (jansson: good lines, every escape, every syntax
 * error we promise to catch), the --json string helper, the import line
 * classifier, DNSBL query names, the
 * duration formatters and the harvest attack value. No Redis, no network: tests/ctl/test_*.py drive
 * the commands themselves.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "check.h"

/* ------------------------------------------------------------ JSON */

static void test_json_good(void)
{
    static const char line[] =
        "{\"queue_name\": \"deferred\", \"queue_id\": \"4F1E61C3E3\", \"arrival_time\": "
        "1467721526, \"message_size\": 2.5e3, \"forced_expire\": false, \"x\": null, "
        "\"nested\": {\"a\": [1, -0.5, {\"b\": [true, \"]}\"]}]}, "
        "\"sender\": \"\", \"recipients\": [{\"address\": \"u@partner.example\", "
        "\"delay_reason\": \"connect to mx: Connection timed out\"}, "
        "{\"orig_address\": \"o@x\", \"address\": \"v\\u0040caf\\u00e9.example\"}, "
        "{\"delay_reason\": \"no address\"}, 42]}";
    bs_ctl_qmsg m;
    const char *why = NULL;

    CHECK_EQ_INT(bs_ctl_qjson_parse(line, strlen(line), &m, &why), 0);
    CHECK_EQ_STR(m.queue_name, "deferred");
    CHECK_EQ_STR(m.queue_id, "4F1E61C3E3");
    CHECK_EQ_INT(m.has_sender, 1);
    CHECK_EQ_STR(m.sender, "");
    CHECK_EQ_INT(m.nrcpt, 2);
    if (m.nrcpt == 2) {
        CHECK_EQ_STR(m.rcpt[0], "u@partner.example");
        CHECK_EQ_STR(m.rcpt[1], "v@caf\xc3\xa9.example");
    }
    bs_ctl_qmsg_free(&m);
}

static void test_json_escapes(void)
{
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"sender\": \"a\\\"b\"}", "a\"b"},
        {"{\"sender\": \"a\\\\b\\/c\"}", "a\\b/c"},
        {"{\"sender\": \"\\b\\f\\n\\r\\t\"}", "\b\f\n\r\t"},
        {"{\"sender\": \"\\u20AC\"}", "\xe2\x82\xac"},
        {"{\"sender\": \"\\ud83d\\ude00\"}", "\xf0\x9f\x98\x80"},
        {"{\"sender\": \"\\u007f\"}", "\x7f"},
        {"{\"sender\": \"first\", \"sender\": \"last\"}", "last"},
        {"  {\"sender\":\"x\"}  \r", "x"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bs_ctl_qmsg m;
        const char *why = NULL;
        int rc = bs_ctl_qjson_parse(cases[i].json, strlen(cases[i].json), &m, &why);
        CHECK_EQ_INT(rc, 0);
        if (rc == 0)
            CHECK_EQ_STR(m.sender, cases[i].want);
        bs_ctl_qmsg_free(&m);
    }
}

static void test_json_bad(void)
{
    static const char *const cases[] = {
        "",
        "[]",
        "{",
        "{\"sender\": \"x\"",
        "{\"sender\": \"x\"} trailing",
        "{\"sender\" \"x\"}",
        "{\"sender\": \"x\",}",
        "{\"a\": [1,]}",
        "{\"a\": 01}",
        "{\"a\": 1.}",
        "{\"a\": -}",
        "{\"a\": 1e}",
        "{\"a\": tru}",
        "{\"a\": nul}",
        "{\"sender\": \"\\x\"}",
        "{\"sender\": \"\\u12\"}",
        "{\"sender\": \"\\u0000\"}",
        "{\"sender\": \"\\ud800\"}",
        "{\"sender\": \"\\ude00\"}",
        "{\"sender\": \"\\ud800\\u0041\"}",
        "{\"sender\": \"raw\x01control\"}",
        "{\"sender\": \"unterminated}",
        "{'sender': 'x'}",
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bs_ctl_qmsg m;
        const char *why = NULL;
        int rc = bs_ctl_qjson_parse(cases[i], strlen(cases[i]), &m, &why);
        if (rc != -1 || why == NULL)
            fprintf(stderr, "accepted bad JSON #%zu: %s\n", i, cases[i]);
        CHECK(rc == -1 && why != NULL);
        bs_ctl_qmsg_free(&m);
    }
}

static void test_json_limits(void)
{
    char *deep = malloc(10000), *longid = malloc(300);
    bs_ctl_qmsg m;
    const char *why;
    size_t i, n = 0;

    /* nesting beyond jansson's limit (2048) is refused, not recursed into */
    n += (size_t)sprintf(deep, "{\"a\": ");
    for (i = 0; i < 4000; i++)
        deep[n++] = '[';
    for (i = 0; i < 4000; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    CHECK_EQ_INT(bs_ctl_qjson_parse(deep, n, &m, &why), -1);
    bs_ctl_qmsg_free(&m);
    /* a member we skip may nest 100 deep (the old scanner gave up at 32) */
    n = (size_t)sprintf(deep, "{\"queue_id\": \"D1\", \"x\": ");
    for (i = 0; i < 100; i++)
        deep[n++] = '[';
    for (i = 0; i < 100; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    CHECK_EQ_INT(bs_ctl_qjson_parse(deep, n, &m, &why), 0);
    CHECK_EQ_STR(m.queue_id, "D1");
    bs_ctl_qmsg_free(&m);
    /* a queue id longer than its field is an error, never truncated */
    n = (size_t)sprintf(longid, "{\"queue_id\": \"");
    for (i = 0; i < 100; i++)
        longid[n++] = 'A';
    n += (size_t)sprintf(longid + n, "\"}");
    CHECK_EQ_INT(bs_ctl_qjson_parse(longid, n, &m, &why), -1);
    bs_ctl_qmsg_free(&m);
    /* a long key we do not care about is skipped */
    n = (size_t)sprintf(longid, "{\"");
    for (i = 0; i < 100; i++)
        longid[n++] = 'k';
    n += (size_t)sprintf(longid + n, "\": 1, \"queue_id\": \"ABC\"}");
    CHECK_EQ_INT(bs_ctl_qjson_parse(longid, n, &m, &why), 0);
    CHECK_EQ_STR(m.queue_id, "ABC");
    bs_ctl_qmsg_free(&m);
    free(deep);
    free(longid);
}

/* --json strings: UTF-8 as it is, other bytes shown escaped, never NULL */
static void test_jstr(void)
{
    static const struct {
        const char *in, *want;
        size_t len;
    } cases[] = {
        {"caf\xc3\xa9", "caf\xc3\xa9", 5},
        {"a\nb\"c", "a\nb\"c", 5}, /* jansson escapes it when dumping */
        {"\xef\xbb\xbf"
         "alice",
         "\xef\xbb\xbf"
         "alice",
         8},
        {"ren\xe9", "ren\\xe9", 4},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = bs_ctl_jstr(cases[i].in, cases[i].len);
        CHECK(json_is_string(v));
        if (v)
            CHECK_EQ_STR(json_string_value(v), cases[i].want);
        json_decref(v);
    }
}

/* ------------------------------------------------------------ import lines */

/* an import line and what bs_ctl_import_line makes of it */
typedef struct {
    const char *line;
    int kind;
    const char *local; /* for BS_LINE_USER */
} line_case;

/* check_lines - feed cases to one line state in order; a bad line must say why */
static void check_lines(bs_ctl_lines *st, const line_case *cases, size_t n, const char *what)
{
    char local[BS_LOCAL_MAX + 1];
    const char *why;
    size_t i;
    int kind;

    for (i = 0; i < n; i++) {
        why = NULL;
        local[0] = 0;
        kind = bs_ctl_import_line(st, cases[i].line, strlen(cases[i].line), "example.com", local,
                                  &why);
        if (kind != cases[i].kind)
            fprintf(stderr, "%s #%zu \"%s\": kind %d\n", what, i, cases[i].line, kind);
        CHECK_EQ_INT(kind, cases[i].kind);
        if (cases[i].local && kind == BS_LINE_USER)
            CHECK_EQ_STR(local, cases[i].local);
        if (kind == BS_LINE_BAD)
            CHECK(why != NULL);
    }
}

static void test_import_lines(void)
{
    static const line_case cases[] = {
        {"alice", BS_LINE_USER, "alice"},
        {"Alice  ", BS_LINE_USER, "alice"},
        {"  Alice", BS_LINE_SKIP, NULL}, /* continues the line before, as in Postfix */
        {"alice@example.com", BS_LINE_USER, "alice"},
        {"ALICE@EXAMPLE.COM.", BS_LINE_USER, "alice"},
        {"alice@example.com\texample.com/alice/", BS_LINE_USER, "alice"},
        {"  continuation of alice's value", BS_LINE_SKIP, NULL},
        {"\tanother continuation", BS_LINE_SKIP, NULL},
        {"bob", BS_LINE_USER, "bob"},
        {"  carol", BS_LINE_SKIP, NULL}, /* continues bob, value or not: Postfix too */
        {"@example.com", BS_LINE_USER, "*"},
        {"@example.com  catch-all", BS_LINE_USER, "*"},
        {"*", BS_LINE_USER, "*"},
        {"", BS_LINE_SKIP, NULL},
        {"   ", BS_LINE_SKIP, NULL},
        {"# comment", BS_LINE_SKIP, NULL},
        {"   # indented comment", BS_LINE_SKIP, NULL},
        {"example.com  virtual", BS_LINE_SKIP, NULL},
        {"dave@other.org", BS_LINE_BAD, NULL},
        {"@other.org", BS_LINE_BAD, NULL},
        {"@", BS_LINE_BAD, NULL},
        {"eve@", BS_LINE_BAD, NULL},
        {"@@example.com", BS_LINE_BAD, NULL},
        {"x@[192.0.2.1]", BS_LINE_BAD, NULL},
        {"a\x01"
         "b",
         BS_LINE_BAD, NULL},
        {"o'brien", BS_LINE_USER, "o'brien"},
        {"j\xc3\xb6rg", BS_LINE_USER, "j\xc3\xb6rg"},
        {"a@b@example.com", BS_LINE_USER, "a@b"}, /* split at the last '@', as the daemon */
        {"frank\r", BS_LINE_USER, "frank"},       /* CRLF */
        /* bytes no local part has */
        {"a\x7f"
         "b",
         BS_LINE_BAD, NULL},
        {"caf\xe9", BS_LINE_BAD, NULL},          /* Latin-1, not UTF-8 */
        {"\xc0\xafx", BS_LINE_BAD, NULL},        /* overlong '/' */
        {"\xed\xa0\x80x", BS_LINE_BAD, NULL},    /* a surrogate */
        {"\xf4\x90\x80\x80", BS_LINE_BAD, NULL}, /* past U+10FFFF */
        {"ab\xc3", BS_LINE_BAD, NULL},           /* truncated */
        {"a\xc2\x85"
         "b",
         BS_LINE_BAD, NULL}, /* C1 control NEL */
        {"a\xef\xbb\xbf"
         "b",
         BS_LINE_BAD, NULL}, /* U+FEFF inside */
        {"\"john smith\"@example.com", BS_LINE_BAD, NULL},
        {"x\\y", BS_LINE_BAD, NULL},
        {"# caf\xe9 in a comment is fine", BS_LINE_SKIP, NULL},
    };
    bs_ctl_lines st = {0};
    char local[BS_LOCAL_MAX + 1], longl[BS_LOCAL_MAX + 2];
    const char *why;

    check_lines(&st, cases, sizeof(cases) / sizeof(cases[0]), "line");
    memset(longl, 'x', sizeof(longl) - 1);
    longl[sizeof(longl) - 1] = 0;
    CHECK_EQ_INT(bs_ctl_import_line(&st, longl, strlen(longl), "example.com", local, &why),
                 BS_LINE_BAD);
    longl[sizeof(longl) - 2] = 0; /* exactly BS_LOCAL_MAX */
    CHECK_EQ_INT(bs_ctl_import_line(&st, longl, strlen(longl), "example.com", local, &why),
                 BS_LINE_USER);
}

/* Postfix table files (readllines(), what "postmap -s" shows): an indented
 * line continues the logical line before it, whether that had a value or
 * not, across comment and blank lines; before the first entry it is bad
 * (Postfix ignores it with a warning). */
static void test_import_continuation(void)
{
    static const line_case lines[] = {
        {"  zed", BS_LINE_BAD, NULL}, /* no entry yet */
        {"  # indented comment", BS_LINE_SKIP, NULL},
        {"\t yves", BS_LINE_BAD, NULL},
        {"alice@example.com", BS_LINE_USER, "alice"},
        {"    example.com/alice/", BS_LINE_SKIP, NULL}, /* alice's value: not a user */
        {"bob@example.com example.com/bob/", BS_LINE_USER, "bob"},
        {"", BS_LINE_SKIP, NULL},
        {"# a comment does not end bob's entry", BS_LINE_SKIP, NULL},
        {"\tcarol", BS_LINE_SKIP, NULL},
        {"dave", BS_LINE_USER, "dave"},
        {" \t erin@example.com", BS_LINE_SKIP, NULL},
        {"x\x01y", BS_LINE_BAD, NULL},   /* a bad line is an entry too ... */
        {"  frank", BS_LINE_SKIP, NULL}, /* ... that this continues */
    };
    bs_ctl_lines st = {0};

    check_lines(&st, lines, sizeof(lines) / sizeof(lines[0]), "continuation line");
    CHECK_EQ_INT((int)st.continued, 4);
}

/* What no local part Postfix passes has: user add|del and import refuse
 * the same bytes (one check, bs_ctl_local_bad_byte). */
static void test_local_bad_byte(void)
{
    static const struct {
        const char *s;
        const char *why; /* a word of the reason, NULL: fine */
    } cases[] = {
        {"alice", NULL},
        {"john doe@example.com", NULL}, /* as Postfix passes "john doe"@example.com */
        {"o'brien", NULL},
        {"j\xc3\xb6rg@example.com", NULL},
        {"a@b@example.com", NULL},
        {"*", NULL},
        {"@example.com", NULL},
        {"\"john doe\"@example.com", "quoted"},
        {"\"q\"", "quoted"},
        {"x\\y", "quoted"},
        {"a\tb", "control"},
        {"a\x01"
         "b",
         "control"},
        {"a\x7f"
         "b",
         "control"},
        {"a\xc2\x85"
         "b",
         "control"},
        {"caf\xe9", "UTF-8"},
        {"\xc0\xafx", "UTF-8"},
        {"ab\xc3", "UTF-8"},
        {"a\xef\xbb\xbf"
         "b",
         "byte order mark"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = bs_ctl_local_bad_byte(cases[i].s, strlen(cases[i].s));
        if (!cases[i].why) {
            CHECK(why == NULL);
        } else {
            CHECK(why != NULL && strstr(why, cases[i].why) != NULL);
        }
    }
}

/* A Windows export: a byte order mark on line 1 only, CRLF line ends. */
static void test_import_bom(void)
{
    static const line_case lines[] = {
        {"\xef\xbb\xbf"
         "alice\r",
         BS_LINE_USER, "alice"},
        {"bob@example.com\r", BS_LINE_USER, "bob"},
        {"\xef\xbb\xbf"
         "carol\r",
         BS_LINE_BAD, NULL}, /* not the start of the file */
    };
    bs_ctl_lines st = {0};
    char local[BS_LOCAL_MAX + 1];
    const char *why;

    check_lines(&st, lines, sizeof(lines) / sizeof(lines[0]), "bom line");
    /* a file that is only a BOM and a line end: a blank line */
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(bs_ctl_import_line(&st, "\xef\xbb\xbf\r", 4, "example.com", local, &why),
                 BS_LINE_SKIP);
}

/* ------------------------------------------------------------ DNSBL names */

static void test_rbl_names(void)
{
    static const struct {
        const char *ip, *want;
    } cases[] = {
        {"192.0.2.1", "1.2.0.192.zen.example"},
        {"127.0.0.2", "2.0.0.127.zen.example"},
        {"::ffff:192.0.2.1", "1.2.0.192.zen.example"},
        {"2001:db8::1",
         "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example"},
        {"2001:DB8:abcd:12::f",
         "f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.1.0.0.d.c.b.a.8.b.d.0.1.0.0.2.zen.example"},
    };
    char out[300];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = bs_ctl_rbl_name(cases[i].ip, "zen.example", out, sizeof(out));
        CHECK_EQ_INT(n, (int)strlen(cases[i].want));
        if (n > 0)
            CHECK_EQ_STR(out, cases[i].want);
    }
    CHECK_EQ_INT(bs_ctl_rbl_name("192.0.2", "zen.example", out, sizeof(out)), -1);
    CHECK_EQ_INT(bs_ctl_rbl_name("2001:db8::1", "zen.example", out, 40), -1);
    CHECK_EQ_INT(bs_ctl_rbl_name("192.0.2.1", "zen.example", out, 10), -1);

    /* DNS names: at most 253 characters (255 octets on the wire), labels of
     * at most 63; res_nquery cannot send more, so nothing is asked */
    char zone[300];
    memset(zone, 'a', 63);
    zone[63] = '.';
    memset(zone + 64, 'b', 63);
    zone[127] = '.';
    memset(zone + 128, 'c', 61);
    zone[189] = 0; /* 189 characters: an IPv6 name (64 more) of exactly 253 */
    CHECK_EQ_INT(bs_ctl_rbl_name("2001:db8::1", zone, out, sizeof(out)), 253);
    CHECK_EQ_INT((int)strlen(out), 253);
    strcpy(zone + 189, "c"); /* 254 */
    CHECK_EQ_INT(bs_ctl_rbl_name("2001:db8::1", zone, out, sizeof(out)), -1);
    CHECK_EQ_INT(bs_ctl_rbl_name("2001:db8::1", zone, out, 40), -1);
    memset(zone + 128, 'c', 63);
    zone[191] = '.';
    memset(zone + 192, 'd', 51);
    zone[243] = 0; /* "1.2.0.192." (10) + 243 = 253 */
    CHECK_EQ_INT(bs_ctl_rbl_name("192.0.2.1", zone, out, sizeof(out)), 253);
    strcpy(zone + 243, "d");
    CHECK_EQ_INT(bs_ctl_rbl_name("192.0.2.1", zone, out, sizeof(out)), -1);
    CHECK_EQ_INT(bs_ctl_rbl_name("::ffff:192.0.2.1", zone, out, sizeof(out)), -1);
    memset(zone, 'a', 64);
    strcpy(zone + 64, ".example"); /* a label of 64 */
    CHECK_EQ_INT(bs_ctl_rbl_name("192.0.2.1", zone, out, sizeof(out)), -1);
    CHECK_EQ_INT(bs_ctl_rbl_name("192.0.2.1", "a..example", out, sizeof(out)), -1);
}

/* ------------------------------------------------------------ formatting */

static void test_durations(void)
{
    static const struct {
        uint64_t ms;
        const char *exact, *left;
    } cases[] = {
        {0, "0s", "0ms"},
        {500, "500ms", "500ms"},
        {1500, "1500ms", "1s"},
        {60000, "1m", "1m"},
        {90000, "90s", "1m30s"},
        {3600000, "1h", "1h"},
        {3552000, "3552s", "59m12s"},
        {86400000, "1d", "1d"},
        {172800000 - 1000, "172799s", "1d23h"},
    };
    char a[32], b[32];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ_STR(bs_ctl_duration(cases[i].ms, a, sizeof(a)), cases[i].exact);
        CHECK_EQ_STR(bs_ctl_remaining(cases[i].ms, b, sizeof(b)), cases[i].left);
    }
}

static void test_safe(void)
{
    char out[16];

    CHECK_EQ_STR(bs_ctl_safe("a\nb\\c", 5, out, sizeof(out)), "a\\x0ab\\x5cc");
    CHECK_EQ_STR(bs_ctl_safe("caf\xc3\xa9", 5, out, sizeof(out)), "caf\xc3\xa9");
    CHECK_EQ_STR(bs_ctl_safe("\x01\x01\x01\x01", 4, out, 10), "\\x01\\x01");  /* never half */
    CHECK_EQ_STR(bs_ctl_safe("ren\xe9", 4, out, sizeof(out)), "ren\\xe9");    /* not UTF-8 */
    CHECK_EQ_STR(bs_ctl_safe("\xc2\x85", 2, out, sizeof(out)), "\\xc2\\x85"); /* C1 */
    CHECK_EQ_STR(bs_ctl_safe("ab\xc3\xa9", 4, out, 4), "ab");                 /* never cut */
}

static void test_request_text(void)
{
    char buf[2048];
    int n = bs_ctl_request_text(buf, sizeof(buf), "", "a@example.com", "192.0.2.1", NULL);

    CHECK(n > 0);
    CHECK(strstr(buf, "request=smtpd_access_policy\nprotocol_state=RCPT\n") == buf);
    CHECK(strstr(buf, "\nsender=\n") != NULL);
    CHECK(strstr(buf, "\nrecipient=a@example.com\n") != NULL);
    CHECK(strstr(buf, "\nclient_address=192.0.2.1\n") != NULL);
    CHECK(n > 2 && memcmp(buf + n - 2, "\n\n", 2) == 0);
    /* a newline in a value would inject an attribute */
    CHECK_EQ_INT(bs_ctl_request_text(buf, sizeof(buf), "a@b\nrecipient=x", "a@example.com",
                                     "192.0.2.1", NULL),
                 -1);
    CHECK_EQ_INT(bs_ctl_request_text(buf, 100, "", "a@example.com", "192.0.2.1", NULL), -1);
}

/* ------------------------------------------------------------ harvest */

static void test_attack_values(void)
{
    static const struct {
        const char *v;
        int rc;
        long long since, until, unknown;
    } cases[] = {
        {"since=1796184000;until=1796187600;unknown=240", 0, 1796184000, 1796187600, 240},
        {"unknown=0;until=2;since=1", 0, 1, 2, 0}, /* any order */
        {"since=1;until=2", -1, 0, 0, 0},          /* each name once, all three */
        {"since=1;until=2;unknown=3;since=4", -1, 0, 0, 0},
        {"since=1;until=2;unknown=3;extra=4", -1, 0, 0, 0},
        {"since=1;until=2;unknown=-3", -1, 0, 0, 0},
        {"since=1;until=2;unknown=", -1, 0, 0, 0},
        {"since=1;until=2;unknown=3x", -1, 0, 0, 0},
        {"since=1;until=2;unknown=3;", -1, 0, 0, 0},
        {"since 1;until=2;unknown=3", -1, 0, 0, 0},
        {"since=+1;until=2;unknown=3", -1, 0, 0, 0},
        {"since=99999999999999999999999;until=2;unknown=3", -1, 0, 0, 0},
        {"", -1, 0, 0, 0},
        {"garbage", -1, 0, 0, 0},
    };
    long long a, b, n;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        a = b = n = 0;
        CHECK_EQ_INT(bs_ctl_harvest_attack_parse(cases[i].v, strlen(cases[i].v), &a, &b, &n),
                     cases[i].rc);
        if (cases[i].rc == 0) {
            CHECK_EQ_INT(a, cases[i].since);
            CHECK_EQ_INT(b, cases[i].until);
            CHECK_EQ_INT(n, cases[i].unknown);
        }
    }
    /* the until the daemon's sweep reads (Lua 'until=(%d+)'): the first with digits */
    CHECK_EQ_INT(bs_ctl_harvest_attack_until("since=1;until=22;unknown=3", 26), 22);
    CHECK_EQ_INT(bs_ctl_harvest_attack_until("until=;until=7", 14), 7);
    CHECK_EQ_INT(bs_ctl_harvest_attack_until("by hand until=1796184000", 24), 1796184000);
    CHECK_EQ_INT(bs_ctl_harvest_attack_until("until=", 6), -1);
    CHECK_EQ_INT(bs_ctl_harvest_attack_until("since=yesterday", 15), -1);
    CHECK_EQ_INT(bs_ctl_harvest_attack_until("until=5", 6), -1); /* the length ends it */
    CHECK(bs_ctl_harvest_attack_until("until=99999999999999999999999", 29) == LLONG_MAX);
    /* the length given, not the NUL, ends the value */
    CHECK_EQ_INT(bs_ctl_harvest_attack_parse("since=1;until=2;unknown=34", 25, &a, &b, &n), 0);
    CHECK_EQ_INT(n, 3);
}

int main(void)
{
    test_json_good();
    test_json_escapes();
    test_json_bad();
    test_json_limits();
    test_jstr();
    test_import_lines();
    test_import_bom();
    test_import_continuation();
    test_local_bad_byte();
    test_rbl_names();
    test_durations();
    test_safe();
    test_request_text();
    test_attack_values();
    return check_summary();
}
