/*
 * test_cidr.c - unit tests for cidr.c: address parsing, network syntax
 * (host bits, lengths, junk) and matching across the two families
 *
 * bs_ip_parse inputs are exact-size heap copies without a NUL, so
 * AddressSanitizer reports any read past len. Expected 16-byte values are
 * written as IPv6 text and converted with inet_pton() here, so a table row
 * reads like the config line it stands for.
 */
#include "backstop/cidr.h"
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

/* v6 - 16 bytes from IPv6 text; the tables' own literals must be valid. */
static void v6(const char *text, uint8_t out[16])
{
    if (inet_pton(AF_INET6, text, out) != 1) {
        fprintf(stderr, "bad test literal %s\n", text);
        abort();
    }
}

/* ---- bs_ip_parse ------------------------------------------------------- */

static const struct {
    const char *in;
    size_t len;
    int family;        /* -1 = rejected */
    const char *bytes; /* expected value as IPv6 text */
} ip_cases[] = {
    {"192.0.2.1", LEN_STR, 4, "::ffff:192.0.2.1"},
    {"0.0.0.0", LEN_STR, 4, "::ffff:0.0.0.0"},
    {"255.255.255.255", LEN_STR, 4, "::ffff:255.255.255.255"},
    {"127.0.0.1", LEN_STR, 4, "::ffff:127.0.0.1"},
    {"192.0.2.1junk", 9, 4, "::ffff:192.0.2.1"},
    {"::1", LEN_STR, 6, "::1"},
    {"::", LEN_STR, 6, "::"},
    {"2001:db8::1", LEN_STR, 6, "2001:db8::1"},
    {"2001:DB8::A", LEN_STR, 6, "2001:db8::a"},
    {"2001:0db8:0000:0000:0000:0000:0000:0001", LEN_STR, 6, "2001:db8::1"},
    {"::ffff:192.0.2.1", LEN_STR, 6, "::ffff:192.0.2.1"}, /* family as written */
    {"::192.0.2.1", LEN_STR, 6, "::c000:201"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", LEN_STR, 6,
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"1:2:3:4:5:6:7::", LEN_STR, 6, "1:2:3:4:5:6:7:0"},
    {"::1:2:3:4:5:6:7", LEN_STR, 6, "0:1:2:3:4:5:6:7"},
    {"", LEN_STR, -1, NULL},
    {" 192.0.2.1", LEN_STR, -1, NULL},
    {"192.0.2.1 ", LEN_STR, -1, NULL},
    {"192.0.2.1\n", LEN_STR, -1, NULL},
    {"192.0.2.1\0", 10, -1, NULL},
    {"192.0.2.1\0.5", 12, -1, NULL},
    {"\0", 1, -1, NULL},
    {"192.0.2.01", LEN_STR, -1, NULL},
    {"010.0.0.1", LEN_STR, -1, NULL},
    {"0x0a.0.0.1", LEN_STR, -1, NULL},
    {"10.1", LEN_STR, -1, NULL},
    {"167772161", LEN_STR, -1, NULL},
    {"192.0.2", LEN_STR, -1, NULL},
    {"192.0.2.", LEN_STR, -1, NULL},
    {"192.0.2.1.", LEN_STR, -1, NULL},
    {"192.0.2.256", LEN_STR, -1, NULL},
    {"1.2.3.4.5", LEN_STR, -1, NULL},
    {"+1.2.3.4", LEN_STR, -1, NULL},
    {"-1.2.3.4", LEN_STR, -1, NULL},
    {"localhost", LEN_STR, -1, NULL},
    {"fe80::1%eth0", LEN_STR, -1, NULL},
    {"fe80::1%25eth0", LEN_STR, -1, NULL},
    {"[::1]", LEN_STR, -1, NULL},
    {"[192.0.2.1]", LEN_STR, -1, NULL},
    {"::1/128", LEN_STR, -1, NULL},
    {"192.0.2.0/24", LEN_STR, -1, NULL},
    {":::", LEN_STR, -1, NULL},
    {"::1::", LEN_STR, -1, NULL},
    {"1:2:3:4:5:6:7:8:9", LEN_STR, -1, NULL},
    {"1:2:3:4:5:6:7", LEN_STR, -1, NULL},
    {"12345::", LEN_STR, -1, NULL},
    {"::g", LEN_STR, -1, NULL},
    {"::ffff:1.2.3", LEN_STR, -1, NULL},
    {"::ffff:1.2.3.04", LEN_STR, -1, NULL},
    {"ipv6:::1", LEN_STR, -1, NULL},
    {"0000:0000:0000:0000:0000:0000:0000:00001", LEN_STR, -1, NULL},
    {"0ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", LEN_STR, -1, NULL}, /* 46 bytes */
};

static void test_ip_parse(void)
{
    uint8_t got[16], want[16];
    size_t i;

    for (i = 0; i < sizeof(ip_cases) / sizeof(ip_cases[0]); i++) {
        size_t len = ip_cases[i].len == LEN_STR ? strlen(ip_cases[i].in) : ip_cases[i].len;
        char *in = dup_exact(ip_cases[i].in, len);
        int fam = bs_ip_parse(in, len, got);

        CHECK_EQ_INT(fam, ip_cases[i].family);
        if (ip_cases[i].bytes != NULL && fam > 0) {
            v6(ip_cases[i].bytes, want);
            CHECK(memcmp(got, want, 16) == 0);
        }
        if (fam != ip_cases[i].family)
            fprintf(stderr, "  ip case %zu \"%s\"\n", i, ip_cases[i].in);
        free(in);
    }

    /* 10 kB, and len 0 without a pointer. */
    {
        char *big = malloc(10240);

        if (big == NULL)
            abort();
        memset(big, '1', 10240);
        CHECK_EQ_INT(bs_ip_parse(big, 10240, got), -1);
        memset(big, ':', 10240);
        CHECK_EQ_INT(bs_ip_parse(big, 10240, got), -1);
        free(big);
    }
    CHECK_EQ_INT(bs_ip_parse(NULL, 0, got), -1);
}

/* ---- bs_cidr_parse ----------------------------------------------------- */

static const struct {
    const char *in;
    const char *addr; /* NULL = rejected; else network as IPv6 text */
    unsigned bits;
} cidr_cases[] = {
    {"127.0.0.0/8", "::ffff:127.0.0.0", 104},
    {"127.0.0.1", "::ffff:127.0.0.1", 128},
    {"127.0.0.1/32", "::ffff:127.0.0.1", 128},
    {"192.168.0.0/16", "::ffff:192.168.0.0", 112},
    {"10.0.0.0/9", "::ffff:10.0.0.0", 105},
    {"0.0.0.0/0", "::ffff:0.0.0.0", 96},
    {"::1", "::1", 128},
    {"::1/128", "::1", 128},
    {"::/0", "::", 0},
    {"2001:db8::/32", "2001:db8::", 32},
    {"2001:db8:1::/48", "2001:db8:1::", 48},
    {"2001:db8:1:200::/56", "2001:db8:1:200::", 56},
    {"2001:db8:1:2::/64", "2001:db8:1:2::", 64},
    {"fe80::/10", "fe80::", 10},
    {"8000::/1", "8000::", 1},
    {"::ffff:10.0.0.0/104", "::ffff:10.0.0.0", 104},
    {"::ffff:0.0.0.0/96", "::ffff:0.0.0.0", 96},
    {"127.0.0.1/8", NULL, 0}, /* host bits, as Postfix */
    {"10.0.0.1/31", NULL, 0},
    {"10.128.0.0/8", NULL, 0},
    {"2001:db8::1/64", NULL, 0},
    {"2001:db8:1:2ff::/56", NULL, 0},
    {"::1/0", NULL, 0},
    {"c000::/1", NULL, 0},
    {"10.0.0.0/33", NULL, 0},
    {"::/129", NULL, 0},
    {"::/1280", NULL, 0},
    {"10.0.0.0/-1", NULL, 0},
    {"10.0.0.0/+8", NULL, 0},
    {"10.0.0.0/08", NULL, 0},
    {"0.0.0.0/00", NULL, 0},
    {"10.0.0.0/0x8", NULL, 0},
    {"10.0.0.0/8x", NULL, 0},
    {"10.0.0.0/8/8", NULL, 0},
    {"10.0.0.0/", NULL, 0},
    {"10.0.0.0//8", NULL, 0},
    {"10.0.0.0/4294967304", NULL, 0}, /* 2^32 + 8: no wrap to 8 */
    {"::/99999999999999999999", NULL, 0},
    {"/", NULL, 0},
    {"/8", NULL, 0},
    {"", NULL, 0},
    {" 10.0.0.0/8", NULL, 0},
    {"10.0.0.0/8 ", NULL, 0},
    {"10.0.0.0 /8", NULL, 0},
    {"10.0.0.0/ 8", NULL, 0},
    {"10.0.0.0/8\n", NULL, 0},
    {"010.0.0.0/8", NULL, 0},
    {"10.0.0/8", NULL, 0},
    {"10/8", NULL, 0},
    {"fe80::1%eth0/128", NULL, 0},
    {"fe80::/10%eth0", NULL, 0},
    {"[::1]/128", NULL, 0},
    {"[::1/128]", NULL, 0},
    {"localhost", NULL, 0},
    {"*", NULL, 0},
    {"!10.0.0.0/8", NULL, 0},
};

/* next - a pseudo-random number below n */
static unsigned next(unsigned *seed, unsigned n)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) % n;
}

/* IPv4 is read by hand: it accepts exactly what inet_pton(AF_INET) does,
 * with the same bytes, over dotted quads of octets 0..299 (some with a
 * leading zero), one byte in four changed to a digit, dot, blank, ':', 'x'
 * or NUL, and cut at a random length. */
static void test_ip4_inet_pton(void)
{
    static const char alphabet[] = "0123456789. :x\0";
    char in[32], z[33];
    uint8_t got[16], want[4];
    unsigned k, seed = 4242, bad = 0, valid = 0;
    size_t len, j;

    for (k = 0; k < 200000; k++) {
        len = 0;
        for (j = 0; j < 4; j++)
            len += (size_t)snprintf(in + len, sizeof(in) - len, j ? ".%s%u" : "%s%u",
                                    next(&seed, 8) ? "" : "0", next(&seed, 300));
        for (j = 0; j < len; j++)
            if (next(&seed, 4 * len) == 0)
                in[j] = alphabet[next(&seed, sizeof(alphabet) - 1)];
        if (next(&seed, 4) == 0)
            len = 1 + next(&seed, (unsigned)len);
        memcpy(z, in, len);
        z[len] = '\0';
        int ok = memchr(in, '\0', len) == NULL && inet_pton(AF_INET, z, want) == 1;
        int fam = memchr(in, ':', len) ? -1 : bs_ip_parse(in, len, got); /* ':' is IPv6 */

        valid += ok;
        bad += ok ? fam != 4 || memcmp(got + 12, want, 4) != 0 : fam != -1;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(valid > 10000); /* the strings did hit valid addresses */
}

static void test_cidr_parse(void)
{
    uint8_t want[16];
    bs_cidr net;
    size_t i;

    for (i = 0; i < sizeof(cidr_cases) / sizeof(cidr_cases[0]); i++) {
        int rc = bs_cidr_parse(cidr_cases[i].in, &net);

        if (cidr_cases[i].addr == NULL) {
            CHECK_EQ_INT(rc, -1);
        } else {
            CHECK_EQ_INT(rc, 0);
            v6(cidr_cases[i].addr, want);
            CHECK(memcmp(net.addr, want, 16) == 0);
            CHECK_EQ_INT(net.bits, cidr_cases[i].bits);
        }
        if ((rc == 0) != (cidr_cases[i].addr != NULL))
            fprintf(stderr, "  cidr case %zu \"%s\"\n", i, cidr_cases[i].in);
    }

    /* A failed parse leaves *out alone. */
    memset(&net, 0xa5, sizeof(net));
    CHECK_EQ_INT(bs_cidr_parse("127.0.0.1/8", &net), -1);
    CHECK_EQ_INT(net.bits, 0xa5a5a5a5u);
    CHECK_EQ_INT(bs_cidr_parse(NULL, &net), -1);

    /* Every valid length, both families. */
    {
        unsigned n;
        char s[64];

        for (n = 0; n <= 32; n++) {
            snprintf(s, sizeof(s), "0.0.0.0/%u", n);
            CHECK(bs_cidr_parse(s, &net) == 0 && net.bits == 96 + n);
        }
        for (n = 0; n <= 128; n++) {
            snprintf(s, sizeof(s), "::/%u", n);
            CHECK(bs_cidr_parse(s, &net) == 0 && net.bits == n);
        }
    }
}

/* ---- bs_cidr_match / bs_cidr_list_match -------------------------------- */

static const struct {
    const char *net;
    const char *ip;
    int want;
} match_cases[] = {
    {"127.0.0.0/8", "127.0.0.1", 1},
    {"127.0.0.0/8", "127.255.255.255", 1},
    {"127.0.0.0/8", "::ffff:127.0.0.1", 1},
    {"127.0.0.0/8", "128.0.0.1", 0},
    {"127.0.0.0/8", "126.255.255.255", 0},
    {"127.0.0.0/8", "::1", 0},
    {"127.0.0.0/8", "::127.0.0.1", 0}, /* IPv4-compatible is not mapped */
    {"::1/128", "::1", 1},
    {"::1", "::1", 1},
    {"::1/128", "127.0.0.1", 0},
    {"::1/128", "::2", 0},
    {"10.0.0.0/9", "10.127.255.255", 1},
    {"10.0.0.0/9", "10.128.0.0", 0},
    {"192.0.2.7", "192.0.2.7", 1},
    {"192.0.2.7", "192.0.2.6", 0},
    {"192.0.2.7", "192.0.2.71", 0},
    {"0.0.0.0/0", "192.0.2.1", 1},
    {"0.0.0.0/0", "0.0.0.0", 1},
    {"0.0.0.0/0", "::1", 0},
    {"0.0.0.0/0", "2001:db8::1", 0},
    {"::/0", "2001:db8::1", 1},
    {"::/0", "192.0.2.1", 0}, /* families apart: an IPv6 net never matches IPv4 */
    {"::ffff:0:0/96", "192.0.2.1", 1},
    {"2001:db8::/32", "2001:db8:ffff:ffff::1", 1},
    {"2001:db8::/32", "2001:db9::1", 0},
    {"2001:db8::/32", "2001:db7:ffff::1", 0},
    {"fe80::/10", "febf:ffff::1", 1},
    {"fe80::/10", "fec0::1", 0},
    {"8000::/1", "ffff::", 1},
    {"8000::/1", "7fff::", 0},
    {"2001:db8:1:2::/64", "2001:db8:1:2:ffff:ffff:ffff:ffff", 1},
    {"2001:db8:1:2::/64", "2001:db8:1:3::", 0},
};

static void test_match(void)
{
    bs_cidr net;
    uint8_t ip[16];
    size_t i;

    for (i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        CHECK_EQ_INT(bs_cidr_parse(match_cases[i].net, &net), 0);
        CHECK(bs_ip_parse(match_cases[i].ip, strlen(match_cases[i].ip), ip) > 0);
        CHECK_EQ_INT(bs_cidr_match(&net, ip), match_cases[i].want);
        if (bs_cidr_match(&net, ip) != match_cases[i].want)
            fprintf(stderr, "  match case %zu %s ~ %s\n", i, match_cases[i].net, match_cases[i].ip);
    }

    /* A hand-made value beyond 128 bits matches nothing. */
    memset(&net, 0, sizeof(net));
    net.bits = 129;
    memset(ip, 0, sizeof(ip));
    CHECK_EQ_INT(bs_cidr_match(&net, ip), 0);
    net.bits = 0;
    CHECK_EQ_INT(bs_cidr_match(&net, ip), 1);
}

static void test_list_match(void)
{
    static const char *const exempt[] = {"127.0.0.0/8", "::1/128", "2001:db8:1::/48"};
    static const struct {
        const char *ip;
        int want;
    } cases[] = {
        {"127.0.0.1", 1}, {"127.1.2.3", 1},        {"::ffff:127.0.0.1", 1},
        {"::1", 1},       {"2001:db8:1:ff::1", 1}, {"10.0.0.1", 0},
        {"::2", 0},       {"2001:db8:2::1", 0},
    };
    bs_cidr nets[3];
    uint8_t ip[16];
    size_t i;

    for (i = 0; i < 3; i++)
        CHECK_EQ_INT(bs_cidr_parse(exempt[i], &nets[i]), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(bs_ip_parse(cases[i].ip, strlen(cases[i].ip), ip) > 0);
        CHECK_EQ_INT(bs_cidr_list_match(nets, 3, ip), cases[i].want);
    }

    /* An empty list matches nothing, and is never dereferenced. */
    CHECK(bs_ip_parse("127.0.0.1", 9, ip) > 0);
    CHECK_EQ_INT(bs_cidr_list_match(NULL, 0, ip), 0);
    CHECK_EQ_INT(bs_cidr_list_match(nets, 1, ip), 1);
    CHECK(bs_ip_parse("::1", 3, ip) > 0);
    CHECK_EQ_INT(bs_cidr_list_match(nets, 1, ip), 0); /* n respected */
}

int main(void)
{
    test_ip_parse();
    test_ip4_inet_pton();
    test_cidr_parse();
    test_match();
    test_list_match();
    return check_summary();
}
