/*
 * test_addr.c - unit tests for addr.c: domains, addresses, recipient
 * delimiters, client keys and escaping
 *
 * Every input is handed over as an exact-size heap copy without a NUL, so
 * AddressSanitizer reports any read past len. Tables hold the hostile cases
 * (controls, NUL, UTF-8, literals, wildcards, 10 kB strings) next to the
 * ordinary ones.
 */
#include "backstop/addr.h"
#include "backstop/cidr.h"
#include "check.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>

static size_t len_of(const char *s, size_t len)
{
    return len == LEN_STR ? strlen(s) : len;
}

/* repeat - n copies of c, NUL-terminated, in a static buffer. */
static char big[12 * 1024];

static const char *repeat(char c, size_t n)
{
    if (n >= sizeof(big))
        abort();
    memset(big, c, n);
    big[n] = '\0';
    return big;
}

/* join - a then b into buf (bufsz bytes); aborts rather than truncate. */
static const char *join(char *buf, size_t bufsz, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la + lb >= bufsz)
        abort();
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb + 1);
    return buf;
}

/* ---- bs_domain_norm ---------------------------------------------------- */

static const struct {
    const char *in;
    size_t len;
    const char *want; /* NULL = rejected */
} domain_cases[] = {
    {"example.com", LEN_STR, "example.com"},
    {"Example.COM", LEN_STR, "example.com"},
    {"EXAMPLE.COM.", LEN_STR, "example.com"},
    {"localhost", LEN_STR, "localhost"},
    {"a", LEN_STR, "a"},
    {"a.", LEN_STR, "a"},
    {"mail_1.ex-ample.org", LEN_STR, "mail_1.ex-ample.org"},
    {"-odd-.example", LEN_STR, "-odd-.example"}, /* lenient on purpose */
    {"xn--bcher-kva.de", LEN_STR, "xn--bcher-kva.de"},
    {"1.2.3.4", LEN_STR, "1.2.3.4"},
    {"example.com", 7, "example"},
    {"", LEN_STR, NULL},
    {".", LEN_STR, NULL},
    {"..", LEN_STR, NULL},
    {"example.com..", LEN_STR, NULL},
    {".example.com", LEN_STR, NULL},
    {"a..b", LEN_STR, NULL},
    {"[192.0.2.1]", LEN_STR, NULL},
    {"[IPv6:2001:db8::1]", LEN_STR, NULL},
    {"{}", LEN_STR, NULL},
    {"*", LEN_STR, NULL},
    {"*.example.com", LEN_STR, NULL},
    {"ex ample.com", LEN_STR, NULL},
    {"example.com ", LEN_STR, NULL},
    {"ex\r\nample.com", LEN_STR, NULL},
    {"example.com\n", LEN_STR, NULL},
    {"exa\0mple.com", 12, NULL},
    {"example.com\0", 12, NULL},
    /* SMTPUTF8: every spelling Postfix routes to one domain is its A-labels
     * (UTS #46 non-transitional, as Postfix's midna_domain_to_ascii) */
    {"b\303\274cher.de", LEN_STR, "xn--bcher-kva.de"},
    {"B\303\234CHER.De", LEN_STR, "xn--bcher-kva.de"},            /* Ü: case mapped */
    {"bu\314\210cher.de.", LEN_STR, "xn--bcher-kva.de"},          /* u + U+0308: NFC */
    {"b\303\274cher\343\200\202de", LEN_STR, "xn--bcher-kva.de"}, /* U+3002 is a dot */
    {"mx_1.b\303\274cher.de", LEN_STR, "mx_1.xn--bcher-kva.de"},  /* no STD3 rules */
    {"stra\303\237e.de", LEN_STR, "xn--strae-oqa.de"},            /* ß kept: non-transitional */
    {"b\374cher.de", LEN_STR, NULL},                              /* Latin-1, not UTF-8 */
    {"b\303cher.de", LEN_STR, NULL},                              /* truncated sequence */
    {"-b\303\274.de", LEN_STR, NULL},                             /* IDNA: leading hyphen */
    {"b\303\274..de", LEN_STR, NULL},                             /* empty label */
    {"b\303\274 cher.de", LEN_STR, NULL},
    {"b\303\274\0cher.de", 10, NULL},
    {"b\303\274cher.de\r\n", LEN_STR, NULL},
    {"example.com:25", LEN_STR, NULL},
    {"a/b", LEN_STR, NULL},
    {"a@b", LEN_STR, NULL},
    {"a\\b", LEN_STR, NULL},
    {"a%b", LEN_STR, NULL},
    {"a\177b", LEN_STR, NULL},
    {"a\tb", LEN_STR, NULL},
};

static void test_domain_table(void)
{
    char out[BS_DOMAIN_MAX + 1], again[BS_DOMAIN_MAX + 1];
    size_t i;

    for (i = 0; i < sizeof(domain_cases) / sizeof(domain_cases[0]); i++) {
        size_t len = len_of(domain_cases[i].in, domain_cases[i].len);
        char *in = dup_exact(domain_cases[i].in, len);
        int n = bs_domain_norm(in, len, out);

        if (domain_cases[i].want == NULL) {
            CHECK_EQ_INT(n, -1);
            CHECK_EQ_STR(out, "");
        } else {
            CHECK_EQ_INT(n, strlen(domain_cases[i].want));
            CHECK_EQ_STR(out, domain_cases[i].want);
            /* The normal form is a fixed point. */
            CHECK_EQ_INT(bs_domain_norm(out, (size_t)n, again), n);
            CHECK_EQ_STR(again, out);
        }
        if (n == -1 && domain_cases[i].want != NULL)
            fprintf(stderr, "  domain case %zu\n", i);
        free(in);
    }
}

/* A name of total length total made of max-size labels. */
static void make_domain(char *buf, size_t total, size_t label)
{
    size_t i;

    for (i = 0; i < total; i++)
        buf[i] = (i % (label + 1) == label) ? '.' : 'a';
    if (total > 0 && buf[total - 1] == '.')
        buf[total - 1] = 'b';
    buf[total] = '\0';
}

static void test_domain_lengths(void)
{
    char name[512], out[BS_DOMAIN_MAX + 1];
    char *in;

    /* Labels of 63 pass, 64 does not. */
    join(name, sizeof(name), repeat('a', 63), ".com");
    CHECK_EQ_INT(bs_domain_norm(name, strlen(name), out), 67);
    join(name, sizeof(name), repeat('a', 64), ".com");
    CHECK_EQ_INT(bs_domain_norm(name, strlen(name), out), -1);
    join(name, sizeof(name), "com.", repeat('A', 64));
    CHECK_EQ_INT(bs_domain_norm(name, strlen(name), out), -1);

    /* 253 passes, also with its trailing dot; 254 does not. */
    make_domain(name, 253, 63);
    CHECK_EQ_INT(bs_domain_norm(name, 253, out), 253);
    CHECK_EQ_INT(strlen(out), 253);
    name[253] = '.';
    name[254] = '\0';
    CHECK_EQ_INT(bs_domain_norm(name, 254, out), 253);
    make_domain(name, 254, 63);
    CHECK_EQ_INT(bs_domain_norm(name, 254, out), -1);

    /* 10 kB: rejected on length, nothing written past out. */
    in = dup_exact(repeat('a', 10240), 10240);
    CHECK_EQ_INT(bs_domain_norm(in, 10240, out), -1);
    free(in);

    /* len 0 never touches s. */
    CHECK_EQ_INT(bs_domain_norm(NULL, 0, out), -1);
}

/* ---- bs_addr_parse ----------------------------------------------------- */

static const struct {
    const char *in;
    size_t len;
    const char *local; /* NULL = rejected */
    const char *domain;
} addr_cases[] = {
    {"user@example.com", LEN_STR, "user", "example.com"},
    {"User.Name@Example.COM", LEN_STR, "user.name", "example.com"},
    {"user+tag@example.com.", LEN_STR, "user+tag", "example.com"},
    {"MAILER-DAEMON@example.com", LEN_STR, "mailer-daemon", "example.com"},
    {"a@b@c", LEN_STR, "a@b", "c"},
    {"\"a@b\"@c", LEN_STR, "\"a@b\"", "c"},
    {"\"a b\"@x", LEN_STR, "\"a b\"", "x"},
    {"a b@x", LEN_STR, "a b", "x"},
    {" user@example.com", LEN_STR, " user", "example.com"},
    {"{}@x", LEN_STR, "{}", "x"},
    {"*@x", LEN_STR, "*", "x"},
    {"..@x", LEN_STR, "..", "x"},
    {"\\@x", LEN_STR, "\\", "x"},
    {"j\xc3\xb6rg@example.com", LEN_STR, "j\xc3\xb6rg", "example.com"},
    {"J\xc3\x96RG@example.com", LEN_STR, "j\xc3\x96rg", "example.com"}, /* ASCII fold only */
    {"\x80\xff@x", LEN_STR, "\x80\xff", "x"},
    {"user@example.com", 13, "user", "example"},
    /* address literals: re-printed from the address */
    {"user@[192.0.2.1]", LEN_STR, "user", "[192.0.2.1]"},
    {"user@[IPv6:2001:DB8:0::1]", LEN_STR, "user", "[ipv6:2001:db8::1]"},
    {"user@[ipv6:::ffff:192.0.2.1]", LEN_STR, "user", "[ipv6:::ffff:192.0.2.1]"},
    /* SMTPUTF8 domains: A-labels */
    {"user@b\303\274cher.de", LEN_STR, "user", "xn--bcher-kva.de"},
    {"User@B\303\234CHER.DE.", LEN_STR, "user", "xn--bcher-kva.de"},
    {"postmaster", LEN_STR, NULL, NULL},
    {"", LEN_STR, NULL, NULL},
    {"@", LEN_STR, NULL, NULL},
    {"@example.com", LEN_STR, NULL, NULL},
    {"user@", LEN_STR, NULL, NULL},
    {"user@.", LEN_STR, NULL, NULL},
    {"user@..", LEN_STR, NULL, NULL},
    {"user@*", LEN_STR, NULL, NULL},
    {"user@{}", LEN_STR, NULL, NULL},
    /* leading zeros, as Postfix reads them (inet_aton: octal) */
    {"user@[192.0.2.005]", LEN_STR, "user", "[192.0.2.5]"},
    {"user@[192.000.002.001]", LEN_STR, "user", "[192.0.2.1]"},
    {"user@[192.0.2.010]", LEN_STR, "user", "[192.0.2.8]"},
    {"user@[192.0.2.0377]", LEN_STR, NULL, NULL}, /* 377 > 255: Postfix refuses it */
    {"user@[192.0.2.09]", LEN_STR, NULL, NULL},   /* no octal: no address */
    {"user@[192.0.2.0x1]", LEN_STR, NULL, NULL},
    {"user@[192.0.513]", LEN_STR, NULL, NULL}, /* inet_aton would take it: not 4 parts */
    {"user@[192.0.2.1.]", LEN_STR, NULL, NULL},
    {"user@[.192.0.2.1]", LEN_STR, NULL, NULL},
    {"user@[192..2.1]", LEN_STR, NULL, NULL},
    {"user@[192.0.2.256]", LEN_STR, NULL, NULL},
    {"user@[192.0.2]", LEN_STR, NULL, NULL},
    {"user@[2001:db8::1]", LEN_STR, NULL, NULL}, /* IPv6 needs its tag */
    {"user@[IPv6:192.0.2.1]", LEN_STR, NULL, NULL},
    {"user@[IPv6:2001:db8::1", LEN_STR, NULL, NULL},
    {"user@[tag:content]", LEN_STR, NULL, NULL}, /* general literals: none */
    {"user@[]", LEN_STR, NULL, NULL},
    {"user@[192.0.2.1\0]", 17, NULL, NULL},
    {"user@[ 192.0.2.1]", LEN_STR, NULL, NULL},
    {"user@ex ample.com", LEN_STR, NULL, NULL},
    {"user@example.com ", LEN_STR, NULL, NULL},
    {"user@b\374cher.de", LEN_STR, NULL, NULL},
    {"us\rer@x", LEN_STR, NULL, NULL},
    {"user\n@x", LEN_STR, NULL, NULL},
    {"user@x\r\n", LEN_STR, NULL, NULL},
    {"\t@x", LEN_STR, NULL, NULL},
    {"us\177er@x", LEN_STR, NULL, NULL},
    {"us\0er@x", 7, NULL, NULL},
    {"user@x\0", 7, NULL, NULL},
    {"user@x\0@y", 9, NULL, NULL}, /* the NUL lands in the local part */
    {"a@b@", LEN_STR, NULL, NULL},
    {"<user@example.com>", LEN_STR, NULL, NULL}, /* '>' is not a domain byte */
};

static void test_addr_table(void)
{
    bs_addr a;
    size_t i;

    for (i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
        size_t len = len_of(addr_cases[i].in, addr_cases[i].len);
        char *in = dup_exact(addr_cases[i].in, len);
        int rc = bs_addr_parse(in, len, &a);

        if (addr_cases[i].local == NULL) {
            CHECK_EQ_INT(rc, -1);
        } else {
            CHECK_EQ_INT(rc, 0);
            CHECK_EQ_STR(a.local, addr_cases[i].local);
            CHECK_EQ_INT(a.local_len, strlen(addr_cases[i].local));
            CHECK_EQ_STR(a.domain, addr_cases[i].domain);
            CHECK_EQ_INT(a.domain_len, strlen(addr_cases[i].domain));
            CHECK_EQ_INT(a.literal, addr_cases[i].domain[0] == '[');
        }
        if ((rc == 0) != (addr_cases[i].local != NULL))
            fprintf(stderr, "  addr case %zu\n", i);
        free(in);
    }
}

static void test_addr_lengths(void)
{
    char s[BS_ADDR_MAX + 64];
    char dom[BS_DOMAIN_MAX + 2], local_at[BS_LOCAL_MAX + 2];
    bs_addr a;
    char *in;

    /* Longest valid address: 128 + '@' + 253, and once more with its dot. */
    make_domain(dom, 253, 63);
    join(s, sizeof(s), join(local_at, sizeof(local_at), repeat('X', 128), "@"), dom);
    CHECK_EQ_INT(strlen(s), BS_ADDR_MAX);
    CHECK_EQ_INT(bs_addr_parse(s, strlen(s), &a), 0);
    CHECK_EQ_INT(a.local_len, 128);
    CHECK_EQ_STR(a.local, repeat('x', 128));
    CHECK_EQ_INT(a.domain_len, 253);
    CHECK_EQ_STR(a.domain, dom);
    strcat(s, ".");
    CHECK_EQ_INT(bs_addr_parse(s, strlen(s), &a), 0);
    CHECK_EQ_INT(a.domain_len, 253);

    /* One too many in either part. */
    join(s, sizeof(s), repeat('a', 129), "@x");
    CHECK_EQ_INT(bs_addr_parse(s, strlen(s), &a), -1);
    make_domain(dom, 254, 63);
    join(s, sizeof(s), "a@", dom);
    CHECK_EQ_INT(bs_addr_parse(s, strlen(s), &a), -1);

    /* 10 kB of garbage, and 10 kB with an '@' at the very end. */
    in = dup_exact(repeat('a', 10240), 10240);
    in[5000] = '@';
    CHECK_EQ_INT(bs_addr_parse(in, 10240, &a), -1);
    in[10239] = '@';
    CHECK_EQ_INT(bs_addr_parse(in, 10240, &a), -1);
    free(in);

    /* A failed parse leaves empty parts, not half a result. */
    CHECK_EQ_INT(bs_addr_parse("user@bad..example", 17, &a), -1);
    CHECK_EQ_STR(a.local, "");
    CHECK_EQ_INT(a.local_len, 0);
    CHECK_EQ_STR(a.domain, "");
    CHECK_EQ_INT(a.domain_len, 0);

    CHECK_EQ_INT(bs_addr_parse(NULL, 0, &a), -1);
}

/* utf8_labels - labels x "ü" * 20 (40 bytes a label, 27 as an A-label),
 * then "de", into s; returns the length */
static size_t utf8_labels(char *s, size_t labels)
{
    size_t n = 0, i, k;

    for (i = 0; i < labels; i++) {
        for (k = 0; k < 20; k++) {
            s[n++] = '\303';
            s[n++] = '\274';
        }
        s[n++] = '.';
    }
    memcpy(s + n, "de", 3);
    return n + 2;
}

/* A UTF-8 domain may be longer in bytes than its A-labels: read up to
 * BS_DOMAIN_UTF8_MAX, and the A-label form must still fit BS_DOMAIN_MAX. */
static void test_domain_utf8_lengths(void)
{
    char s[BS_ADDR_RAW_MAX + 64], out[BS_DOMAIN_MAX + 1];
    bs_addr a;
    size_t n, i;

    /* 7 labels: over BS_DOMAIN_MAX as UTF-8, under it as A-labels */
    n = utf8_labels(s, 7);
    CHECK(n > BS_DOMAIN_MAX);
    CHECK(bs_domain_norm(s, n, out) > 0);
    CHECK_EQ_INT(strncmp(out, "xn--", 4), 0);
    memmove(s + 5, s, n + 1);
    memcpy(s, "user@", 5);
    CHECK_EQ_INT(bs_addr_parse(s, n + 5, &a), 0);
    CHECK_EQ_STR(a.domain, out);

    /* over BS_DOMAIN_UTF8_MAX: rejected unread */
    for (i = 0; i < BS_DOMAIN_UTF8_MAX + 1; i++)
        s[i] = (i % 2) ? '\274' : '\303';
    CHECK_EQ_INT(bs_domain_norm(s, BS_DOMAIN_UTF8_MAX + 1, out), -1);
    CHECK_EQ_STR(out, "");
    /* 10 labels: an A-label form over 253 bytes, rejected like any long name */
    n = utf8_labels(s, 10);
    CHECK_EQ_INT(bs_domain_norm(s, n, out), -1);
}

/* ---- bs_local_base_len ------------------------------------------------- */

static const struct {
    const char *local;
    size_t len;
    const char *delims;
    size_t want;
} base_cases[] = {
    {"user+tag", LEN_STR, "+", 4},
    {"user", LEN_STR, "+", 4},
    {"user+", LEN_STR, "+", 4}, /* empty extension: Postfix splits */
    {"+tag", LEN_STR, "+", 4},  /* would leave an empty base */
    {"+", LEN_STR, "+", 1},
    {"++", LEN_STR, "+", 2},
    {"a++b", LEN_STR, "+", 1},
    {"user-a+b", LEN_STR, "+-", 4}, /* first of any delimiter */
    /* Postfix split_addr(): never split these */
    {"postmaster+x", LEN_STR, "+", 10}, /* only the exact name is kept whole */
    {"postmaster", LEN_STR, "+", 10},
    {"mailer-daemon", LEN_STR, "-", 13},
    {"double-bounce", LEN_STR, "-", 13},
    {"owner-list", LEN_STR, "-", 10},
    {"owner-", LEN_STR, "-", 6},
    {"owner-list", LEN_STR, "+", 10}, /* '-' not a delimiter: nothing to split */
    {"owner+x", LEN_STR, "+", 5},     /* owner- rule only with '-' */
    {"list-request", LEN_STR, "-", 12},
    {"list-request", LEN_STR, "+-", 12},
    {"list-requests", LEN_STR, "-", 4},
    {"user+a-b", LEN_STR, "-+", 4},
    {"user+a-b", LEN_STR, "-", 6},
    {"user.name+x", LEN_STR, ".", 4},
    {"user+tag", LEN_STR, "", 8},
    {"user+tag", LEN_STR, NULL, 8},
    {"user+tag", 3, "+", 3}, /* never looks past local_len */
    {"user+tag", 5, "+", 4},
    {"", 0, "+", 0},
    {"a\0+b", 4, "+", 2}, /* NUL is not strchr()'s terminator */
    {"a\0b", 3, "+", 3},
    {"j\xc3\xb6rg+x", LEN_STR, "+", 5},
    {"a\303b", LEN_STR, "\303", 1}, /* 8-bit delimiter bytes work too */
};

static void test_local_base(void)
{
    size_t i;

    for (i = 0; i < sizeof(base_cases) / sizeof(base_cases[0]); i++) {
        size_t len = len_of(base_cases[i].local, base_cases[i].len);
        char *in = dup_exact(base_cases[i].local, len);

        CHECK_EQ_INT(bs_local_base_len(in, len, base_cases[i].delims), base_cases[i].want);
        free(in);
    }
}

/* ---- bs_client_key ----------------------------------------------------- */

static const struct {
    const char *in;
    size_t len;
    unsigned prefix;
    const char *want; /* NULL = rejected */
} client_cases[] = {
    {"192.0.2.1", LEN_STR, 64, "192.0.2.1"},
    {"192.0.2.1", LEN_STR, 1, "192.0.2.1"},
    {"192.0.2.1", LEN_STR, 128, "192.0.2.1"},
    {"0.0.0.0", LEN_STR, 64, "0.0.0.0"},
    {"255.255.255.255", LEN_STR, 64, "255.255.255.255"},
    {"::ffff:192.0.2.1", LEN_STR, 64, "192.0.2.1"},
    {"::FFFF:192.0.2.1", LEN_STR, 48, "192.0.2.1"},
    {"::ffff:c000:0201", LEN_STR, 128, "192.0.2.1"},
    {"0:0:0:0:0:ffff:192.0.2.1", LEN_STR, 64, "192.0.2.1"},
    {"2001:db8:1:2ff:3:4:5:6", LEN_STR, 48, "2001:db8:1::/48"},
    {"2001:db8:1:2ff:3:4:5:6", LEN_STR, 56, "2001:db8:1:200::/56"},
    {"2001:db8:1:2ff:3:4:5:6", LEN_STR, 64, "2001:db8:1:2ff::/64"},
    {"2001:db8:1:2ff:3:4:5:6", LEN_STR, 128, "2001:db8:1:2ff:3:4:5:6/128"},
    {"2001:db8:1:2ff:3:4:5:6", LEN_STR, 127, "2001:db8:1:2ff:3:4:5:6/127"},
    {"2001:db8:1:2ff:3:4:5:7", LEN_STR, 127, "2001:db8:1:2ff:3:4:5:6/127"},
    {"2001:DB8::1", LEN_STR, 128, "2001:db8::1/128"},
    {"2001:0db8:0000:0000:0000:0000:0000:0001", LEN_STR, 64, "2001:db8::/64"},
    {"2001:db8:0:0:1:0:0:1", LEN_STR, 128, "2001:db8::1:0:0:1/128"},    /* first longest run */
    {"2001:db8:0:1:1:1:1:1", LEN_STR, 128, "2001:db8:0:1:1:1:1:1/128"}, /* no "::" for one 0 */
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LEN_STR, 128,
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LEN_STR, 1, "8000::/1"},
    {"2001:db8::1", LEN_STR, 1, "::/1"},
    {"::1", LEN_STR, 128, "::1/128"},
    {"::1", LEN_STR, 64, "::/64"},
    {"::", LEN_STR, 64, "::/64"},
    {"fe80::1", LEN_STR, 64, "fe80::/64"},
    {"192.0.2.1junk", 9, 64, "192.0.2.1"},
    {"2001:db8::1", 11, 64, "2001:db8::/64"},
    {"192.0.2.1", LEN_STR, 0, NULL},
    {"2001:db8::1", LEN_STR, 0, NULL},
    {"2001:db8::1", LEN_STR, 129, NULL},
    {"", LEN_STR, 64, NULL},
    {"unknown", LEN_STR, 64, NULL},
    {"localhost", LEN_STR, 64, NULL},
    {"fe80::1%eth0", LEN_STR, 64, NULL},
    {"fe80::1%1", LEN_STR, 64, NULL},
    {"[192.0.2.1]", LEN_STR, 64, NULL},
    {"[::1]", LEN_STR, 64, NULL},
    {"ipv6:::1", LEN_STR, 64, NULL},
    {"IPv6:2001:db8::1", LEN_STR, 64, NULL},
    {"192.0.2.1/24", LEN_STR, 64, NULL},
    {"2001:db8::/64", LEN_STR, 64, NULL},
    {" 192.0.2.1", LEN_STR, 64, NULL},
    {"192.0.2.1 ", LEN_STR, 64, NULL},
    {"192.0.2.1\r\n", LEN_STR, 64, NULL},
    {"::1\n", LEN_STR, 64, NULL},
    {"192.0.2.1\0", 10, 64, NULL},
    {"192.0.2.1\0junk", 14, 64, NULL},
    {"192.0.2.01", LEN_STR, 64, NULL},
    {"0x7f.0.0.1", LEN_STR, 64, NULL},
    {"127.1", LEN_STR, 64, NULL},
    {"2130706433", LEN_STR, 64, NULL},
    {"192.0.2", LEN_STR, 64, NULL},
    {"192.0.2.256", LEN_STR, 64, NULL},
    {"1.2.3.4.5", LEN_STR, 64, NULL},
    {"-1.2.3.4", LEN_STR, 64, NULL},
    {"2001:db8::1::2", LEN_STR, 64, NULL},
    {"2001:db8:::1", LEN_STR, 64, NULL},
    {"1:2:3:4:5:6:7:8:9", LEN_STR, 64, NULL},
    {"12345::", LEN_STR, 64, NULL},
    {"g::", LEN_STR, 64, NULL},
    {"::ffff:1.2.3", LEN_STR, 64, NULL},
    {"*", LEN_STR, 64, NULL},
    {"{}", LEN_STR, 64, NULL},
};

static void test_client_table(void)
{
    char out[BS_CLIENT_KEY_MAX + 1];
    size_t i;

    for (i = 0; i < sizeof(client_cases) / sizeof(client_cases[0]); i++) {
        size_t len = len_of(client_cases[i].in, client_cases[i].len);
        char *in = dup_exact(client_cases[i].in, len);
        int n = bs_client_key(in, len, client_cases[i].prefix, out);

        if (client_cases[i].want == NULL) {
            CHECK_EQ_INT(n, -1);
            CHECK_EQ_STR(out, "");
        } else {
            CHECK_EQ_INT(n, strlen(client_cases[i].want));
            CHECK_EQ_STR(out, client_cases[i].want);
        }
        if ((n >= 0) != (client_cases[i].want != NULL))
            fprintf(stderr, "  client case %zu\n", i);
        {
            /* the same key from the parsed address */
            uint8_t ip[16];
            char out2[BS_CLIENT_KEY_MAX + 1];
            if (bs_ip_parse(in, len, ip) > 0) {
                int n2 = bs_client_key_ip(ip, client_cases[i].prefix, out2);
                CHECK_EQ_INT(n2, n);
                if (n >= 0)
                    CHECK_EQ_STR(out2, out);
            }
        }
        free(in);
    }
}

/* ip6_want - what inet_ntop() prints for ip, with "/128" (the client key
 * at prefix 128 of any address outside ::ffff:0:0/96) */
static void ip6_want(const uint8_t ip[16], char *out)
{
    inet_ntop(AF_INET6, ip, out, INET6_ADDRSTRLEN);
    strcat(out, "/128");
}

/* The key's IPv6 text is printed by hand: the same as glibc's inet_ntop()
 * for every shape of zero runs (each word zero or one of a few values,
 * 0xffff in word 5 for the IPv4-mapped and -compatible forms), and for
 * pseudo-random addresses. */
/* test_client_v4_text - every byte value in every place of an IPv4 key,
 * its network, and an IPv4-compatible address's "::a.b.c.d", as
 * inet_ntop and "%u.%u.%u.%u" print them (dotted_quad is by hand) */
static void test_client_v4_text(void)
{
    char got[BS_CLIENT_KEY_MAX + 1], want[INET6_ADDRSTRLEN + 8];
    uint8_t ip[16];
    unsigned v, w, bad = 0;

    for (v = 0; v < 256; v++) {
        for (w = 0; w < 4; w++) {
            memset(ip, 0, sizeof(ip));
            ip[10] = ip[11] = 0xff;
            ip[12] = (uint8_t)(w == 0 ? v : 255 - v);
            ip[13] = (uint8_t)(w == 1 ? v : v / 3);
            ip[14] = (uint8_t)(w == 2 ? v : 7);
            ip[15] = (uint8_t)(w == 3 ? v : 100 + v % 100);
            snprintf(want, sizeof(want), "%u.%u.%u.%u", ip[12], ip[13], ip[14], ip[15]);
            bad += bs_client_key_ip(ip, 64, got) != (int)strlen(want) || strcmp(got, want) != 0;
            snprintf(want, sizeof(want), "%u.%u.%u.0/24", ip[12], ip[13], ip[14]);
            bad += bs_client_network(ip, 64, got) != (int)strlen(want) || strcmp(got, want) != 0;
            ip[10] = ip[11] = 0;
            ip[12] |= 1; /* ::a.b.c.d, not :: or ::1 */
            ip6_want(ip, want);
            bad += bs_client_key_ip(ip, 128, got) != (int)strlen(want) || strcmp(got, want) != 0;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_client_inet_ntop(void)
{
    static const unsigned values[] = {1, 0x12, 0xabc, 0x1000, 0xffff};
    const size_t nv = sizeof(values) / sizeof(values[0]);
    char got[BS_CLIENT_KEY_MAX + 1], want[INET6_ADDRSTRLEN + 8];
    uint8_t ip[16];
    unsigned mask, v, k, bad = 0, seed = 12345;
    int w;

    for (mask = 0; mask < 256; mask++) {
        for (v = 0; v < nv * nv; v++) {
            for (w = 0; w < 8; w++) {
                unsigned x =
                    (mask >> w & 1) ? values[(v / (w < 4 ? 1 : nv) + (unsigned)w) % nv] : 0;

                ip[2 * w] = (uint8_t)(x >> 8);
                ip[2 * w + 1] = (uint8_t)x;
            }
            if (mask == 0xc0 && v == 0)
                ip[10] = ip[11] = 0xff; /* ::ffff:a.b.c.d: the v4 key, not text */
            if (ip[10] == 0xff && ip[11] == 0xff && !ip[0] && !ip[1] && !ip[2] && !ip[3] &&
                !ip[4] && !ip[5] && !ip[6] && !ip[7] && !ip[8] && !ip[9])
                continue;
            ip6_want(ip, want);
            bad += bs_client_key_ip(ip, 128, got) != (int)strlen(want) || strcmp(got, want) != 0;
        }
    }
    for (k = 0; k < 100000; k++) {
        for (w = 0; w < 16; w++) {
            seed = seed * 1103515245u + 12345u;
            ip[w] = (seed >> 16) % 5 == 0 ? 0 : (uint8_t)(seed >> 8);
        }
        ip[0] |= 0x20; /* never ::ffff:0:0/96 */
        ip6_want(ip, want);
        bad += bs_client_key_ip(ip, 128, got) != (int)strlen(want) || strcmp(got, want) != 0;
    }
    CHECK_EQ_INT(bad, 0);
    memset(ip, 0, sizeof(ip));
    CHECK_EQ_INT(bs_client_key_ip(ip, 128, got), 6);
    CHECK_EQ_STR(got, "::/128");
    ip[15] = 1;
    CHECK(bs_client_key_ip(ip, 128, got) > 0 && strcmp(got, "::1/128") == 0);
    ip[12] = 192;
    CHECK(bs_client_key_ip(ip, 128, got) > 0 && strcmp(got, "::192.0.0.1/128") == 0);
}

static void test_client_misc(void)
{
    char out[BS_CLIENT_KEY_MAX + 1];
    const char *v6 = "2001:db8:abcd:1234:5678:9abc:def0:1234";
    unsigned p;
    char *in;

    /* Every prefix works and gives "text/p" with the right suffix. */
    for (p = 1; p <= 128; p++) {
        char suffix[8];
        int n = bs_client_key(v6, strlen(v6), p, out);

        snprintf(suffix, sizeof(suffix), "/%u", p);
        CHECK(n > 0 && n <= BS_CLIENT_KEY_MAX);
        CHECK(n > 0 && (size_t)n == strlen(out));
        CHECK(n > 0 && strcmp(out + n - strlen(suffix), suffix) == 0);
    }

    /* Two hosts in one /64 share a key; neighbouring /64s do not. */
    {
        char a[BS_CLIENT_KEY_MAX + 1], b[BS_CLIENT_KEY_MAX + 1];

        const char *h1 = "2001:db8:0:1::1", *h2 = "2001:db8:0:1:ffff:ffff:ffff:ffff";
        const char *h3 = "2001:db8:0:2::1";

        CHECK(bs_client_key(h1, strlen(h1), 64, a) > 0);
        CHECK(bs_client_key(h2, strlen(h2), 64, b) > 0);
        CHECK_EQ_STR(a, b);
        CHECK(bs_client_key(h3, strlen(h3), 64, b) > 0);
        CHECK(strcmp(a, b) != 0);
    }

    /* The deprecated IPv4-compatible range stays IPv6 (text is libc's). */
    CHECK(bs_client_key("::192.0.2.1", 11, 128, out) > 0);
    CHECK(strcmp(out, "192.0.2.1") != 0);
    CHECK(strstr(out, "/128") != NULL);

    /* The longest text an address can have (45 bytes) passes; 46 bytes
     * can not be an address and is turned away on its length. */
    CHECK_EQ_INT(bs_client_key("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 45, 128, out),
                 strlen("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"));
    CHECK_EQ_INT(bs_client_key("0ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 46, 128, out), -1);

    /* 10 kB. */
    in = dup_exact(repeat('1', 10240), 10240);
    CHECK_EQ_INT(bs_client_key(in, 10240, 64, out), -1);
    free(in);
    CHECK_EQ_INT(bs_client_key(NULL, 0, 64, out), -1);
}

/* ---- bs_escape --------------------------------------------------------- */

static const struct {
    const char *in;
    size_t len;
    size_t outsz;
    const char *want;
} escape_cases[] = {
    {"abc", LEN_STR, 64, "abc"},
    {"", LEN_STR, 64, ""},
    {"!~", LEN_STR, 64, "!~"},
    {"a b", LEN_STR, 64, "a\\x20b"},
    {"\r\n", LEN_STR, 64, "\\x0d\\x0a"},
    {"a\\b", LEN_STR, 64, "a\\x5cb"},
    {"\0", 1, 64, "\\x00"},
    {"a\0b", 3, 64, "a\\x00b"},
    {"\x7f\x80\xff", LEN_STR, 64, "\\x7f\\x80\\xff"},
    {"\x1b[31m", LEN_STR, 64, "\\x1b[31m"},
    {"\xc3\xa9", LEN_STR, 64, "\\xc3\\xa9"},
    {"%s%n", LEN_STR, 64, "%s%n"}, /* harmless once passed as an argument */
    {"abcdef", 3, 64, "abc"},
    {"abcdef", LEN_STR, 4, "abc"},
    {"abcdef", LEN_STR, 1, ""},
    {"a\r", LEN_STR, 5, "a"}, /* "\x0d" needs 4 + NUL: stop, never split */
    {"a\r", LEN_STR, 6, "a\\x0d"},
    {"\r", LEN_STR, 4, ""},
    {"\r", LEN_STR, 5, "\\x0d"},
    {"\rab", LEN_STR, 6, "\\x0da"},
};

static void test_escape_table(void)
{
    size_t i;

    for (i = 0; i < sizeof(escape_cases) / sizeof(escape_cases[0]); i++) {
        size_t len = len_of(escape_cases[i].in, escape_cases[i].len);
        char *in = dup_exact(escape_cases[i].in, len);
        char *out = malloc(escape_cases[i].outsz);
        size_t n;

        if (out == NULL)
            abort();
        n = bs_escape(in, len, out, escape_cases[i].outsz);
        CHECK_EQ_INT(n, strlen(escape_cases[i].want));
        CHECK_EQ_STR(out, escape_cases[i].want);
        free(out);
        free(in);
    }
}

static void test_escape_misc(void)
{
    char out[64], sentinel = 'Z';
    char all[256];
    char wide[256 * 4 + 1];
    size_t i, n;
    char *in;

    /* outsz 0 writes nothing at all. */
    CHECK_EQ_INT(bs_escape("abc", 3, &sentinel, 0), 0);
    CHECK_EQ_INT(sentinel, 'Z');

    /* Every byte value: output printable, and 4 bytes for each escaped one. */
    for (i = 0; i < 256; i++)
        all[i] = (char)i;
    n = bs_escape(all, 256, wide, sizeof(wide));
    CHECK_EQ_INT(n, 94 - 1 + (256 - 94 + 1) * 4); /* 0x21..0x7e minus '\\' */
    CHECK_EQ_INT(strlen(wide), n);
    for (i = 0; i < n; i++)
        CHECK(wide[i] >= 0x21 && wide[i] <= 0x7e);

    /* Each byte value at every offset of a 40-byte run (across the 16-byte
     * blocks bs_escape scans at once), the rest plain. */
    for (i = 0; i < 40; i++) {
        for (int c = 0; c < 256; c++) {
            char run[40], want[40 + 4 + 1], got[sizeof(want)];
            int esc = c < 0x21 || c > 0x7e || c == '\\';

            memset(run, 'a', sizeof(run));
            run[i] = (char)c;
            memcpy(want, run, i);
            if (esc)
                snprintf(want + i, 5, "\\x%02x", c);
            else
                want[i] = (char)c;
            memcpy(want + i + (esc ? 4 : 1), run + i + 1, 40 - i - 1);
            want[40 + (esc ? 3 : 0)] = '\0';
            n = bs_escape(run, sizeof(run), got, sizeof(got));
            CHECK_EQ_INT(n, 40 + (esc ? 3 : 0));
            CHECK_EQ_STR(got, want);
        }
    }

    /* 10 kB of CRLF into 64 bytes: stops cleanly on an escape boundary. */
    in = dup_exact(repeat('\n', 10240), 10240);
    n = bs_escape(in, 10240, out, sizeof(out));
    CHECK_EQ_INT(n, 60);
    CHECK_EQ_INT(strlen(out), 60);
    CHECK(strncmp(out + 56, "\\x0a", 4) == 0);
    free(in);
}

/* bs_client_network: IPv4 by /24, IPv6 as its client key */
static void test_client_network(void)
{
    static const struct {
        const char *in;
        unsigned prefix;
        const char *want;
    } cases[] = {
        {"192.0.2.77", 64, "192.0.2.0/24"},
        {"192.0.2.0", 64, "192.0.2.0/24"},
        {"::ffff:198.51.100.9", 64, "198.51.100.0/24"},
        {"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
        {"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"},
    };
    char out[BS_CLIENT_KEY_MAX + 1];
    uint8_t ip[16];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(bs_ip_parse(cases[i].in, strlen(cases[i].in), ip) > 0);
        CHECK_EQ_INT(bs_client_network(ip, cases[i].prefix, out), (int)strlen(cases[i].want));
        CHECK_EQ_STR(out, cases[i].want);
    }
}

/* bs_escape_marked: "..." only when shortened, never inside an escape */
static void test_escape_marked(void)
{
    char out[16];

    CHECK_EQ_INT(bs_escape_marked("abc", 3, 0, out, sizeof(out)), 3);
    CHECK_EQ_STR(out, "abc");
    CHECK_EQ_INT(bs_escape_marked("abc", 3, 1, out, sizeof(out)), 6); /* cut before */
    CHECK_EQ_STR(out, "abc...");
    CHECK_EQ_INT(bs_escape_marked("0123456789abcde", 15, 0, out, sizeof(out)), 15); /* fits */
    CHECK_EQ_STR(out, "0123456789abcde");
    CHECK_EQ_INT(bs_escape_marked("0123456789abcdef", 16, 0, out, sizeof(out)), 15);
    CHECK_EQ_STR(out, "0123456789ab...");
    /* "\xff" at 10..13 would leave no room for the mark: it goes whole */
    CHECK_EQ_INT(bs_escape_marked("0123456789\xff\xff", 12, 0, out, sizeof(out)), 13);
    CHECK_EQ_STR(out, "0123456789...");
    CHECK_EQ_INT(bs_escape_marked("abcdef", 6, 1, out, 4), 3); /* room for the mark only */
    CHECK_EQ_STR(out, "...");
    CHECK_EQ_INT(bs_escape_marked("abcdef", 6, 1, out, 3), 2); /* no room: as bs_escape */
    CHECK_EQ_STR(out, "ab");
}

int main(void)
{
    test_domain_table();
    test_domain_lengths();
    test_addr_table();
    test_addr_lengths();
    test_domain_utf8_lengths();
    test_local_base();
    test_client_table();
    test_client_misc();
    test_client_inet_ntop();
    test_client_v4_text();
    test_client_network();
    test_escape_table();
    test_escape_misc();
    test_escape_marked();
    return check_summary();
}
