/*
 * test_proto.c - unit tests for the policy protocol parser (src/common/proto.c)
 *
 * Every input is parsed three ways: whole, one byte at a time, and split in
 * two at every offset (sampled for the big limit cases). The three must
 * agree on the result, *consumed and every attribute's (offset, length), and
 * the incremental runs must never move p->scanned backwards nor leave bytes
 * unexamined on NEED_MORE: that is how the O(n) resume is observed.
 * Covers a real Postfix request, pipelining, CRLF, empty values, '=' in
 * values, each limit at its exact boundary, NUL, garbage, reset and get.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "backstop/proto.h"
#include "check.h"

/* What one parse produced, with attributes as offsets so runs compare. */
struct outcome {
    int r;
    int inside; /* every attribute lies inside the buffer, before the '=' rule */
    size_t consumed;
    unsigned nattrs;
    size_t off[BS_PROTO_MAX_ATTRS][4]; /* name off, name len, value off, value len */
};

/* snapshot - record p's result; note whether every attribute is inside buf[0..end) */
static void snapshot(struct outcome *o, const bs_proto_parser *p, const char *buf, size_t end,
                     int r, size_t consumed)
{
    unsigned k;

    memset(o, 0, sizeof(*o));
    o->r = r;
    o->inside = 1;
    o->consumed = r == BS_PROTO_DONE ? consumed : 0;
    if (r < 0)
        return; /* attributes are unspecified after an error */
    o->nattrs = p->nattrs;
    for (k = 0; k < p->nattrs; k++) {
        const bs_proto_attr *a = &p->attrs[k];

        if (a->name < buf || a->name + a->name_len > buf + end || a->value < buf ||
            a->value + a->value_len > buf + end || a->name_len == 0 ||
            a->name[a->name_len] != '=' || a->value != a->name + a->name_len + 1)
            o->inside = 0;
        o->off[k][0] = (size_t)(a->name - buf);
        o->off[k][1] = a->name_len;
        o->off[k][2] = (size_t)(a->value - buf);
        o->off[k][3] = a->value_len;
    }
}

static int same_outcome(const struct outcome *a, const struct outcome *b)
{
    return a->r == b->r && a->inside == b->inside && a->consumed == b->consumed &&
           a->nattrs == b->nattrs && memcmp(a->off, b->off, sizeof(a->off[0]) * a->nattrs) == 0;
}

/* parse_whole - one call with the whole buffer; p keeps the attributes */
static int parse_whole(bs_proto_parser *p, const char *buf, size_t len, struct outcome *o)
{
    size_t consumed = 0;
    int r;

    bs_proto_reset(p);
    r = bs_proto_feed(p, buf, len, &consumed);
    snapshot(o, p, buf, r == BS_PROTO_DONE ? consumed : len, r, consumed);
    return r;
}

/* parse_bytewise - len grows one byte per call; checks the resume invariants */
static void parse_bytewise(const char *buf, size_t len, struct outcome *o)
{
    static bs_proto_parser p;
    size_t n, consumed = 0, last_scanned = 0;
    int r = BS_PROTO_NEED_MORE, monotonic = 1, all_seen = 1;

    bs_proto_reset(&p);
    for (n = 1; n <= len && r == BS_PROTO_NEED_MORE; n++) {
        r = bs_proto_feed(&p, buf, n, &consumed);
        if (p.scanned < last_scanned || p.line_start > p.scanned)
            monotonic = 0;
        if (r == BS_PROTO_NEED_MORE && p.scanned != n)
            all_seen = 0;
        last_scanned = p.scanned;
    }
    CHECK(monotonic);
    CHECK(all_seen);
    snapshot(o, &p, buf, r == BS_PROTO_DONE ? consumed : len, r, consumed);
}

/* parse_split - first call sees buf[0..cut), the second all of it */
static void parse_split(const char *buf, size_t len, size_t cut, struct outcome *o)
{
    static bs_proto_parser p;
    size_t consumed = 0;
    int r;

    bs_proto_reset(&p);
    r = bs_proto_feed(&p, buf, cut, &consumed);
    if (r == BS_PROTO_NEED_MORE)
        r = bs_proto_feed(&p, buf, len, &consumed);
    snapshot(o, &p, buf, r == BS_PROTO_DONE ? consumed : len, r, consumed);
}

/*
 * parse_all_ways - parse buf every way; returns the whole-buffer result
 *
 * p is left holding the whole-buffer parse, for the caller to inspect.
 */
static int parse_all_ways(bs_proto_parser *p, const char *buf, size_t len, size_t *consumed)
{
    static struct outcome whole, other;
    size_t cut, stride = len <= 4096 ? 1 : 61;
    int split_ok = 1;

    parse_whole(p, buf, len, &whole);
    CHECK(whole.inside);
    parse_bytewise(buf, len, &other);
    CHECK(same_outcome(&whole, &other));
    for (cut = 0; cut <= len; cut += stride) {
        parse_split(buf, len, cut, &other);
        if (!same_outcome(&whole, &other)) {
            split_ok = 0;
            fprintf(stderr, "split at %zu disagrees (%d vs %d)\n", cut, other.r, whole.r);
            break;
        }
    }
    CHECK(split_ok);
    *consumed = whole.consumed;
    return whole.r;
}

/* attr_is - p->attrs[k] is exactly name=value */
static int attr_is(const bs_proto_parser *p, unsigned k, const char *name, const char *value)
{
    const bs_proto_attr *a = &p->attrs[k];

    return k < p->nattrs && a->name_len == strlen(name) &&
           memcmp(a->name, name, a->name_len) == 0 && a->value_len == strlen(value) &&
           memcmp(a->value, value, a->value_len) == 0;
}

/* value_is - the first attribute called name has this value */
static int value_is(const bs_proto_parser *p, const char *name, const char *value)
{
    const bs_proto_attr *a = bs_proto_get(p, name);

    return a && a->value_len == strlen(value) && memcmp(a->value, value, a->value_len) == 0;
}

/* What a Postfix 3.8 smtpd sends (3.7 sends all but the last two). */
static const char *const postfix_attrs[][2] = {
    {"request", "smtpd_access_policy"},
    {"protocol_state", "RCPT"},
    {"protocol_name", "ESMTP"},
    {"helo_name", "mail.example.org"},
    {"queue_id", "4Qv1Xk2RZHz9sWQ"},
    {"sender", "alice@example.org"},
    {"recipient", "bob@example.net"},
    {"recipient_count", "0"},
    {"client_address", "192.0.2.10"},
    {"client_name", "mail.example.org"},
    {"reverse_client_name", "mail.example.org"},
    {"instance", "1c4a.65f2a3b1.8d2e1.0"},
    {"sasl_method", ""},
    {"sasl_username", ""},
    {"sasl_sender", ""},
    {"size", "12345"},
    {"ccert_subject", ""},
    {"ccert_issuer", ""},
    {"ccert_fingerprint", ""},
    {"encryption_protocol", "TLSv1.3"},
    {"encryption_cipher", "TLS_AES_256_GCM_SHA384"},
    {"encryption_keysize", "256"},
    {"etrn_domain", ""},
    {"stress", ""},
    {"ccert_pubkey_fingerprint", ""},
    {"client_port", "53012"},
    {"policy_context", ""},
    {"server_address", "198.51.100.25"},
    {"server_port", "25"},
    {"compatibility_level", "3.6"},
    {"mail_version", "3.8.4"},
};
#define POSTFIX_NATTRS (sizeof(postfix_attrs) / sizeof(postfix_attrs[0]))

/* build_postfix - the request above with line end eol; returns its length */
static size_t build_postfix(char *buf, size_t size, const char *eol)
{
    size_t k, n = 0;

    for (k = 0; k < POSTFIX_NATTRS; k++)
        n += (size_t)snprintf(buf + n, size - n, "%s=%s%s", postfix_attrs[k][0],
                              postfix_attrs[k][1], eol);
    n += (size_t)snprintf(buf + n, size - n, "%s", eol);
    return n;
}

static void test_postfix_request(const char *eol)
{
    static bs_proto_parser p;
    char buf[4096];
    size_t len = build_postfix(buf, sizeof(buf), eol), consumed = 0;
    unsigned k;

    CHECK_EQ_INT(parse_all_ways(&p, buf, len, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(consumed, len);
    CHECK_EQ_INT(p.nattrs, POSTFIX_NATTRS);
    for (k = 0; k < POSTFIX_NATTRS; k++) {
        CHECK(attr_is(&p, k, postfix_attrs[k][0], postfix_attrs[k][1]));
        CHECK(bs_proto_get(&p, postfix_attrs[k][0]) == &p.attrs[k]);
    }
    CHECK(value_is(&p, "sasl_sender", ""));
    CHECK(value_is(&p, "encryption_cipher", "TLS_AES_256_GCM_SHA384"));
}

/* One table row: input (explicit length: NULs allowed), what must come out. */
struct proto_case {
    const char *what;
    const char *in;
    size_t len;
    int r;
    size_t consumed;            /* DONE only */
    int nattrs;                 /* DONE / NEED_MORE only; -1 = don't check */
    const char *name0, *value0; /* first attribute, or NULL */
};
#define IN(s) s, sizeof(s) - 1

static const struct proto_case cases[] = {
    {"empty input", IN(""), BS_PROTO_NEED_MORE, 0, 0, NULL, NULL},
    {"empty request", IN("\n"), BS_PROTO_DONE, 1, 0, NULL, NULL},
    {"empty request crlf", IN("\r\n"), BS_PROTO_DONE, 2, 0, NULL, NULL},
    {"lone cr", IN("\r"), BS_PROTO_NEED_MORE, 0, 0, NULL, NULL},
    {"partial line", IN("a=b"), BS_PROTO_NEED_MORE, 0, 0, NULL, NULL},
    {"no end yet", IN("a=b\n"), BS_PROTO_NEED_MORE, 0, 1, "a", "b"},
    {"half crlf end", IN("a=b\r\n\r"), BS_PROTO_NEED_MORE, 0, 1, "a", "b"},
    {"one attr", IN("a=b\n\n"), BS_PROTO_DONE, 5, 1, "a", "b"},
    {"pipelined", IN("a=b\n\nc=d\n\n"), BS_PROTO_DONE, 5, 1, "a", "b"},
    {"pipelined garbage", IN("a=b\n\n\0\0=\n"), BS_PROTO_DONE, 5, 1, "a", "b"},
    {"empty value", IN("sender=\n\n"), BS_PROTO_DONE, 9, 1, "sender", ""},
    {"empty value crlf", IN("sender=\r\n\r\n"), BS_PROTO_DONE, 11, 1, "sender", ""},
    {"eq in value", IN("a==b=c\n\n"), BS_PROTO_DONE, 8, 1, "a", "=b=c"},
    {"spaces kept", IN(" a = b \n\n"), BS_PROTO_DONE, 9, 1, " a ", " b "},
    {"inner cr kept", IN("a=b\rc\n\n"), BS_PROTO_DONE, 7, 1, "a", "b\rc"},
    {"one cr stripped", IN("a=b\r\r\n\n"), BS_PROTO_DONE, 7, 1, "a", "b\r"},
    {"mixed line ends", IN("a=b\r\nc=d\n\r\n"), BS_PROTO_DONE, 11, 2, "a", "b"},
    {"8-bit bytes", IN("\xff\xfe=\x01\x7f\n\n"), BS_PROTO_DONE, 7, 1, "\xff\xfe", "\x01\x7f"},
    {"empty name", IN("=x\n\n"), BS_PROTO_E_SYNTAX, 0, 0, NULL, NULL},
    {"only eq", IN("=\n\n"), BS_PROTO_E_SYNTAX, 0, 0, NULL, NULL},
    {"no eq", IN("abc\n\n"), BS_PROTO_E_SYNTAX, 0, 0, NULL, NULL},
    {"no eq crlf", IN("abc\r\n\r\n"), BS_PROTO_E_SYNTAX, 0, 0, NULL, NULL},
    {"no eq later", IN("a=b\nabc\n"), BS_PROTO_E_SYNTAX, 0, 0, NULL, NULL},
    {"no eq unfinished", IN("abc"), BS_PROTO_NEED_MORE, 0, 0, NULL, NULL},
    {"double cr line", IN("\r\r\n"), BS_PROTO_E_SYNTAX, 0, 0, NULL, NULL},
    {"nul first", IN("\0"), BS_PROTO_E_NUL, 0, 0, NULL, NULL},
    {"nul in value", IN("a=b\0c\n\n"), BS_PROTO_E_NUL, 0, 0, NULL, NULL},
    {"nul in name", IN("a\0=b\n\n"), BS_PROTO_E_NUL, 0, 0, NULL, NULL},
    {"nul before syntax", IN("ab\0c\n"), BS_PROTO_E_NUL, 0, 0, NULL, NULL},
    {"nul in last line", IN("a=b\n\r\0"), BS_PROTO_E_NUL, 0, 0, NULL, NULL},
    {"syntax before nul", IN("abc\n\0"), BS_PROTO_E_SYNTAX, 0, 0, NULL, NULL},
    {"http", IN("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), BS_PROTO_E_SYNTAX, 0, 0, NULL, NULL},
    {"smtp", IN("EHLO x\r\n"), BS_PROTO_E_SYNTAX, 0, 0, NULL, NULL},
    {"tls hello", IN("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), BS_PROTO_E_NUL, 0, 0, NULL,
     NULL},
};

static void test_cases(void)
{
    static bs_proto_parser p;
    size_t k, consumed;

    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const struct proto_case *c = &cases[k];
        int r = parse_all_ways(&p, c->in, c->len, &consumed);

        if (r != c->r)
            fprintf(stderr, "case \"%s\": got %d, want %d\n", c->what, r, c->r);
        CHECK_EQ_INT(r, c->r);
        if (r == BS_PROTO_DONE)
            CHECK_EQ_INT(consumed, c->consumed);
        if (r >= 0 && c->nattrs >= 0)
            CHECK_EQ_INT(p.nattrs, c->nattrs);
        if (r >= 0 && c->name0)
            CHECK(attr_is(&p, 0, c->name0, c->value0));
    }
}

/* A line of n bytes: "a=" then value bytes, no line end. */
static size_t fill_line(char *buf, size_t n)
{
    memcpy(buf, "a=", 2);
    memset(buf + 2, 'v', n - 2);
    return n;
}

static void test_line_limit(void)
{
    static bs_proto_parser p;
    static char buf[BS_PROTO_MAX_LINE + 16];
    size_t n, consumed;

    /* Exactly MAX_LINE: fine, with either line end. */
    n = fill_line(buf, BS_PROTO_MAX_LINE);
    memcpy(buf + n, "\n\n", 2);
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 2, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(p.attrs[0].value_len, BS_PROTO_MAX_LINE - 2);
    memcpy(buf + n, "\r\n\r\n", 4);
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 4, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(p.attrs[0].value_len, BS_PROTO_MAX_LINE - 2);

    /* MAX_LINE + 1: an error as soon as that byte is there, '\n' or not. */
    n = fill_line(buf, BS_PROTO_MAX_LINE + 1);
    memcpy(buf + n, "\n\n", 2);
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 2, &consumed), BS_PROTO_E_LINE);
    CHECK_EQ_INT(parse_all_ways(&p, buf, n - 1, &consumed), BS_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse_all_ways(&p, buf, n, &consumed), BS_PROTO_E_LINE);

    /* A '\r' after MAX_LINE bytes may be the start of "\r\n": wait for it. */
    n = fill_line(buf, BS_PROTO_MAX_LINE);
    memcpy(buf + n, "\rx", 2);
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 1, &consumed), BS_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 2, &consumed), BS_PROTO_E_LINE);
    memcpy(buf + n, "\r\r\n", 3);
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 3, &consumed), BS_PROTO_E_LINE);

    /* A long line without '=' is too long before it is malformed. */
    memset(buf, 'x', BS_PROTO_MAX_LINE + 1);
    buf[BS_PROTO_MAX_LINE + 1] = '\n';
    CHECK_EQ_INT(parse_all_ways(&p, buf, BS_PROTO_MAX_LINE + 2, &consumed), BS_PROTO_E_LINE);

    /* NUL vs line: whichever byte comes first decides. */
    n = fill_line(buf, BS_PROTO_MAX_LINE);
    buf[n] = '\0';
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 1, &consumed), BS_PROTO_E_NUL);
    buf[n] = 'x';
    buf[n + 1] = '\0';
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 2, &consumed), BS_PROTO_E_LINE);
    buf[n] = '\r';
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 2, &consumed), BS_PROTO_E_NUL);

    /* The limit is per line: a second full-length line is fine. */
    n = fill_line(buf, BS_PROTO_MAX_LINE);
    buf[n++] = '\n';
    memcpy(buf + n, "b=c\n\n", 5);
    CHECK_EQ_INT(parse_all_ways(&p, buf, n + 5, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(p.nattrs, 2);
    CHECK(attr_is(&p, 1, "b", "c"));
}

/* fill_attrs - n lines "aNNN=v\n"; returns the length */
static size_t fill_attrs(char *buf, unsigned n)
{
    size_t len = 0;
    unsigned k;

    for (k = 0; k < n; k++)
        len += (size_t)sprintf(buf + len, "a%u=v\n", k);
    return len;
}

static void test_attrs_limit(void)
{
    static bs_proto_parser p;
    static char buf[(BS_PROTO_MAX_ATTRS + 2) * 16];
    size_t len, consumed;
    char name[16];

    len = fill_attrs(buf, BS_PROTO_MAX_ATTRS);
    buf[len] = '\n';
    CHECK_EQ_INT(parse_all_ways(&p, buf, len + 1, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(p.nattrs, BS_PROTO_MAX_ATTRS);
    snprintf(name, sizeof(name), "a%u", BS_PROTO_MAX_ATTRS - 1);
    CHECK(bs_proto_get(&p, name) == &p.attrs[BS_PROTO_MAX_ATTRS - 1]);
    memcpy(buf + len, "\r\n", 2);
    CHECK_EQ_INT(parse_all_ways(&p, buf, len + 2, &consumed), BS_PROTO_DONE);

    /* One more: an error at its line end, whatever the line holds. */
    memcpy(buf + len, "x=y", 3);
    CHECK_EQ_INT(parse_all_ways(&p, buf, len + 3, &consumed), BS_PROTO_NEED_MORE);
    memcpy(buf + len, "x=y\n\n", 5);
    CHECK_EQ_INT(parse_all_ways(&p, buf, len + 5, &consumed), BS_PROTO_E_ATTRS);
    memcpy(buf + len, "xy\n\n", 4);
    CHECK_EQ_INT(parse_all_ways(&p, buf, len + 4, &consumed), BS_PROTO_E_ATTRS);
    memcpy(buf + len, "\rx\n", 3);
    CHECK_EQ_INT(parse_all_ways(&p, buf, len + 3, &consumed), BS_PROTO_E_ATTRS);
    buf[len] = '\0';
    CHECK_EQ_INT(parse_all_ways(&p, buf, len + 1, &consumed), BS_PROTO_E_NUL);
}

/*
 * fill_request - a valid request of exactly total bytes, final "\n" included
 *
 * Lines are as long as allowed, so the request limit is reached before the
 * attribute limit.
 */
static size_t fill_request(char *buf, size_t total)
{
    size_t left = total - 1, n = 0, line;

    while (left > 0) {
        line = left < BS_PROTO_MAX_LINE + 1 ? left : BS_PROTO_MAX_LINE + 1;
        if (left - line > 0 && left - line < 3)
            line -= 3; /* leave room for one more "a=\n" */
        n += fill_line(buf + n, line - 1);
        buf[n++] = '\n';
        left -= line;
    }
    buf[n++] = '\n';
    return n;
}

static void test_request_limit(void)
{
    static bs_proto_parser p;
    static char buf[BS_PROTO_MAX_REQUEST + 64];
    size_t len, consumed;

    /* Exactly MAX_REQUEST bytes, even with more (pipelined) after it. */
    len = fill_request(buf, BS_PROTO_MAX_REQUEST);
    CHECK_EQ_INT(len, BS_PROTO_MAX_REQUEST);
    CHECK_EQ_INT(parse_all_ways(&p, buf, len, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(consumed, BS_PROTO_MAX_REQUEST);
    CHECK(p.nattrs < BS_PROTO_MAX_ATTRS);
    memcpy(buf + len, "a=b\n\n", 5);
    CHECK_EQ_INT(parse_all_ways(&p, buf, len + 5, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(consumed, BS_PROTO_MAX_REQUEST);

    /* One byte more: an error as soon as byte MAX_REQUEST + 1 arrives. */
    len = fill_request(buf, BS_PROTO_MAX_REQUEST + 1);
    CHECK_EQ_INT(len, BS_PROTO_MAX_REQUEST + 1);
    CHECK_EQ_INT(parse_all_ways(&p, buf, len, &consumed), BS_PROTO_E_REQUEST);
    CHECK_EQ_INT(parse_all_ways(&p, buf, BS_PROTO_MAX_REQUEST, &consumed), BS_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse_all_ways(&p, buf, BS_PROTO_MAX_REQUEST + 1, &consumed), BS_PROTO_E_REQUEST);

    /* A NUL inside the limit still counts; one past it is never seen. */
    buf[BS_PROTO_MAX_REQUEST] = '\0';
    CHECK_EQ_INT(parse_all_ways(&p, buf, len, &consumed), BS_PROTO_E_REQUEST);
    buf[BS_PROTO_MAX_REQUEST - 1] = '\0';
    CHECK_EQ_INT(parse_all_ways(&p, buf, len, &consumed), BS_PROTO_E_NUL);
}

static void test_pipelined(void)
{
    static bs_proto_parser p;
    char buf[8192];
    size_t len1 = build_postfix(buf, sizeof(buf), "\n"), len, consumed = 0, consumed2 = 0;

    len = len1 + build_postfix(buf + len1, sizeof(buf) - len1, "\r\n");
    CHECK_EQ_INT(parse_all_ways(&p, buf, len, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(consumed, len1);
    CHECK_EQ_INT(p.nattrs, POSTFIX_NATTRS);
    CHECK(p.attrs[POSTFIX_NATTRS - 1].value + p.attrs[POSTFIX_NATTRS - 1].value_len < buf + len1);

    /* Fed again (more bytes arrived): still this request, not the next. */
    CHECK_EQ_INT(bs_proto_feed(&p, buf, len, &consumed2), BS_PROTO_DONE);
    CHECK_EQ_INT(consumed2, len1);
    CHECK_EQ_INT(p.nattrs, POSTFIX_NATTRS);

    /* The next one starts at buf + consumed. */
    CHECK_EQ_INT(parse_all_ways(&p, buf + len1, len - len1, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(consumed, len - len1);
    CHECK(value_is(&p, "request", "smtpd_access_policy"));
    CHECK(value_is(&p, "mail_version", "3.8.4"));

    /* The second request only partly there. */
    CHECK_EQ_INT(parse_all_ways(&p, buf + len1, 40, &consumed), BS_PROTO_NEED_MORE);
    CHECK_EQ_INT(p.nattrs, 1);
}

/* test_sticky - a failed call leaves p as it was, so the error repeats */
static void test_sticky(void)
{
    static bs_proto_parser p;
    static const char bad[] = "a=b\nc=d\nxyz\n\n";
    static const char nul[] = "a=b\nc=d\0\n\n";
    size_t consumed = 0;

    bs_proto_reset(&p);
    CHECK_EQ_INT(bs_proto_feed(&p, bad, 6, &consumed), BS_PROTO_NEED_MORE);
    CHECK_EQ_INT(bs_proto_feed(&p, bad, sizeof(bad) - 1, &consumed), BS_PROTO_E_SYNTAX);
    CHECK_EQ_INT(p.nattrs, 1);
    CHECK_EQ_INT(p.scanned, 6);
    CHECK_EQ_INT(bs_proto_feed(&p, bad, sizeof(bad) - 1, &consumed), BS_PROTO_E_SYNTAX);

    bs_proto_reset(&p);
    CHECK_EQ_INT(bs_proto_feed(&p, nul, 6, &consumed), BS_PROTO_NEED_MORE);
    CHECK_EQ_INT(bs_proto_feed(&p, nul, sizeof(nul) - 1, &consumed), BS_PROTO_E_NUL);
    CHECK_EQ_INT(p.nattrs, 1);
    CHECK_EQ_INT(bs_proto_feed(&p, nul, sizeof(nul) - 1, &consumed), BS_PROTO_E_NUL);
}

/*
 * test_no_rescan - bytes before p->scanned are not read again
 *
 * Deliberately breaks the "buffer must not change" rule: once a feed has
 * returned NEED_MORE, the bytes it examined are overwritten (with NULs, with
 * an earlier '='). A parser that rescanned them would notice.
 */
static void test_no_rescan(void)
{
    static bs_proto_parser p;
    char buf[64];
    size_t consumed = 0;

    bs_proto_reset(&p);
    memcpy(buf, "a=b\nsender=abc", 14);
    CHECK_EQ_INT(bs_proto_feed(&p, buf, 14, &consumed), BS_PROTO_NEED_MORE);
    CHECK_EQ_INT(p.scanned, 14);
    CHECK_EQ_INT(p.line_start, 4);
    memset(buf, '\0', 14);
    memcpy(buf + 14, "def\n\n", 5);
    CHECK_EQ_INT(bs_proto_feed(&p, buf, 19, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(consumed, 19);
    CHECK_EQ_INT(p.nattrs, 2);
    CHECK_EQ_INT(p.attrs[1].name_len, 6);
    CHECK_EQ_INT(p.attrs[1].value_len, 6);
    CHECK(memcmp(p.attrs[1].value, "\0\0\0def", 6) == 0);

    /* Nor for the '=': the first one among the bytes as they arrived counts. */
    bs_proto_reset(&p);
    memcpy(buf, "abc", 3);
    CHECK_EQ_INT(bs_proto_feed(&p, buf, 3, &consumed), BS_PROTO_NEED_MORE);
    memcpy(buf, "x=y=d\n\n", 7);
    CHECK_EQ_INT(bs_proto_feed(&p, buf, 7, &consumed), BS_PROTO_DONE);
    CHECK_EQ_INT(p.attrs[0].name_len, 3);
    CHECK_EQ_INT(p.attrs[0].value_len, 1);
}

/*
 * test_block_edges - '=', '\n', NUL and '\r' at every offset around the
 * scan's 16-byte blocks
 *
 * The SSE2 scan reads 16 bytes at a time and re-reads the last block of a
 * short tail; the portable one uses memchr. A prefix line of each length
 * 0 or 2..21 moves the line under test across block edges; its '=' (then a
 * second '='), its end, a NUL and a lone '\r' are put at every offset up
 * to 40 bytes, each input parsed every way (parse_all_ways).
 */
static void test_block_edges(void)
{
    static bs_proto_parser p;
    char buf[128];
    size_t pre, len, eq, k, off, consumed = 0;

    for (pre = 0; pre <= 21; pre += pre ? 1 : 2) {
        off = pre ? pre + 1 : 0; /* "x=...\n" of pre (2..21) bytes, or nothing */
        if (pre) {
            buf[0] = 'x';
            memset(buf + 1, '=', pre - 1);
            buf[pre] = '\n';
        }
        for (len = 2; len <= 40; len++) { /* the line under test, '\n' excluded */
            for (eq = 1; eq < len; eq++) {
                memset(buf + off, 'a', len);
                buf[off + eq] = '=';
                memcpy(buf + off + len, "\n\n", 2);
                CHECK_EQ_INT(parse_all_ways(&p, buf, off + len + 2, &consumed), BS_PROTO_DONE);
                CHECK_EQ_INT(consumed, off + len + 2);
                CHECK_EQ_INT(p.nattrs, pre ? 2 : 1);
                CHECK_EQ_INT(p.attrs[p.nattrs - 1].name_len, eq);
                CHECK_EQ_INT(p.attrs[p.nattrs - 1].value_len, len - eq - 1);
                if (eq + 1 < len) { /* a later '=' is part of the value */
                    buf[off + len - 1] = '=';
                    CHECK_EQ_INT(parse_all_ways(&p, buf, off + len + 2, &consumed), BS_PROTO_DONE);
                    CHECK_EQ_INT(p.attrs[p.nattrs - 1].name_len, eq);
                    buf[off + len - 1] = 'a';
                }
            }
            /* '=' first: an empty name; no '=' at all */
            memset(buf + off, 'a', len);
            buf[off] = '=';
            CHECK_EQ_INT(parse_all_ways(&p, buf, off + len + 2, &consumed), BS_PROTO_E_SYNTAX);
            buf[off] = 'a';
            CHECK_EQ_INT(parse_all_ways(&p, buf, off + len + 2, &consumed), BS_PROTO_E_SYNTAX);
            /* a NUL or a lone '\r' anywhere in a valid line */
            buf[off + 1] = '=';
            for (k = 0; k < len; k++) {
                char was = buf[off + k];

                buf[off + k] = '\0';
                CHECK_EQ_INT(parse_all_ways(&p, buf, off + len + 2, &consumed), BS_PROTO_E_NUL);
                CHECK_EQ_INT(parse_all_ways(&p, buf, off + k + 1, &consumed), BS_PROTO_E_NUL);
                CHECK_EQ_INT(parse_all_ways(&p, buf, off + k, &consumed), BS_PROTO_NEED_MORE);
                buf[off + k] = '\r';
                CHECK_EQ_INT(parse_all_ways(&p, buf, off + len + 2, &consumed),
                             k == 1 ? BS_PROTO_E_SYNTAX : BS_PROTO_DONE);
                if (k > 1 && k + 1 < len)
                    CHECK_EQ_INT(p.attrs[p.nattrs - 1].value_len, len - 2);
                buf[off + k] = was;
            }
        }
    }
}

static void test_reset(void)
{
    bs_proto_parser zeroed;
    static bs_proto_parser p;
    size_t consumed = 0;

    /* A zeroed parser is a reset one. */
    memset(&zeroed, 0, sizeof(zeroed));
    CHECK_EQ_INT(bs_proto_feed(&zeroed, "k=v\n\n", 5, &consumed), BS_PROTO_DONE);
    CHECK(attr_is(&zeroed, 0, "k", "v"));

    /* After reset, nothing of the last request leaks into the next. */
    bs_proto_reset(&p);
    CHECK_EQ_INT(bs_proto_feed(&p, "name=value\n\n", 12, &consumed), BS_PROTO_DONE);
    bs_proto_reset(&p);
    CHECK_EQ_INT(p.nattrs, 0);
    CHECK_EQ_INT(p.scanned, 0);
    CHECK(bs_proto_get(&p, "name") == NULL);
    CHECK_EQ_INT(bs_proto_feed(&p, "abc\n\n", 5, &consumed), BS_PROTO_E_SYNTAX);

    /* Same when the last request stopped mid-line after its '='. */
    bs_proto_reset(&p);
    CHECK_EQ_INT(bs_proto_feed(&p, "xy=z", 4, &consumed), BS_PROTO_NEED_MORE);
    bs_proto_reset(&p);
    CHECK_EQ_INT(bs_proto_feed(&p, "xyz\n", 4, &consumed), BS_PROTO_E_SYNTAX);
}

static void test_get(void)
{
    static bs_proto_parser p;
    static const char req[] = "sender=a@x\nSENDER=b@x\nsender=c@x\nsender_x=d\nrecipient=\n\n";
    size_t consumed = 0;

    bs_proto_reset(&p);
    CHECK_EQ_INT(bs_proto_feed(&p, req, sizeof(req) - 1, &consumed), BS_PROTO_DONE);
    CHECK(bs_proto_get(&p, "sender") == &p.attrs[0]);
    CHECK(bs_proto_get(&p, "SENDER") == &p.attrs[1]);
    CHECK(bs_proto_get(&p, "Sender") == NULL);
    CHECK(bs_proto_get(&p, "send") == NULL);
    CHECK(bs_proto_get(&p, "sender_") == NULL);
    CHECK(bs_proto_get(&p, "sender_x") == &p.attrs[3]);
    CHECK(bs_proto_get(&p, "") == NULL);
    CHECK(value_is(&p, "recipient", ""));

    /* Only completed lines count while the request is partial. */
    bs_proto_reset(&p);
    CHECK_EQ_INT(bs_proto_feed(&p, req, 15, &consumed), BS_PROTO_NEED_MORE);
    CHECK(bs_proto_get(&p, "sender") == &p.attrs[0]);
    CHECK(bs_proto_get(&p, "SENDER") == NULL);
}

static void test_strerror(void)
{
    static const int codes[] = {BS_PROTO_E_LINE, BS_PROTO_E_ATTRS, BS_PROTO_E_REQUEST,
                                BS_PROTO_E_SYNTAX, BS_PROTO_E_NUL};
    size_t i, j;

    CHECK_EQ_STR(bs_proto_strerror(BS_PROTO_E_LINE), "line too long");
    CHECK_EQ_STR(bs_proto_strerror(BS_PROTO_E_ATTRS), "too many attributes");
    CHECK_EQ_STR(bs_proto_strerror(BS_PROTO_E_REQUEST), "request too long");
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        CHECK(strcmp(bs_proto_strerror(codes[i]), "unknown error") != 0);
        for (j = 0; j < i; j++)
            CHECK(strcmp(bs_proto_strerror(codes[i]), bs_proto_strerror(codes[j])) != 0);
    }
    CHECK_EQ_STR(bs_proto_strerror(BS_PROTO_NEED_MORE), "unknown error");
    CHECK_EQ_STR(bs_proto_strerror(BS_PROTO_DONE), "unknown error");
    CHECK_EQ_STR(bs_proto_strerror(-6), "unknown error");
    CHECK_EQ_STR(bs_proto_strerror(INT_MIN), "unknown error");
    CHECK_EQ_STR(bs_proto_strerror(INT_MAX), "unknown error");
}

int main(void)
{
    test_postfix_request("\n");
    test_postfix_request("\r\n");
    test_cases();
    test_line_limit();
    test_attrs_limit();
    test_request_limit();
    test_pipelined();
    test_sticky();
    test_no_rescan();
    test_block_edges();
    test_reset();
    test_get();
    test_strerror();
    return check_summary();
}
