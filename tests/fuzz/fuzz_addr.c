/*
 * fuzz_addr.c - libFuzzer driver for addr.c and cidr.c
 *
 * Feeds each input, as is, to every parser in addr.h and cidr.h and checks
 * what their contracts promise, aborting (so libFuzzer keeps the input) on
 * the first violation:
 *   - every result is NUL-terminated and as long as the function says;
 *   - a failed call leaves "" (bs_domain_norm, bs_client_key, bs_addr_parse);
 *   - a normalised domain holds only [a-z0-9._-], has no empty label, and
 *     normalises to itself; from ASCII input it is the input with A-Z
 *     folded (non-ASCII input goes through libidn2: its A-labels);
 *   - a normalised literal is "[a.b.c.d]" or "[ipv6:...]" that inet_pton
 *     reads back, normalises to itself, and has no parent labels;
 *   - a normalised local part has no controls and no A-Z, and sits before
 *     the input's last '@';
 *   - bs_local_base_len agrees with a plain model of Postfix's split_addr()
 *     (on a lowercase local part, as addr.c assumes);
 *   - bs_client_key succeeds for every prefix 1..128 exactly when
 *     bs_ip_parse does, and its key parses back (bs_cidr_parse) to a
 *     network that holds the client;
 *   - bs_escape writes only 0x21..0x7e, never splits an escape when it
 *     runs out of room, and decodes back to the input when it has room;
 *   - bs_cidr_parse agrees with bs_ip_parse on bare addresses, leaves no
 *     host bits, and its network matches its own address.
 * Buffers handed to the code under test are exact-size heap blocks, so
 * AddressSanitizer sees any byte read or written out of bounds.
 *
 * Built by tests/fuzz/fuzz.cmake: fuzz_addr (libFuzzer: clang,
 * -DBACKSTOP_FUZZ=ON) and fuzz_replay_addr (replay.c instead of libFuzzer,
 * any compiler: ctest fuzz_replay_addr replays the corpus).
 *   scripts/fuzz 60 addr
 *   build/fuzz/fuzz_addr -dict=tests/fuzz/addr.dict CORPUS_COPY
 */
#include "backstop/addr.h"
#include "backstop/cidr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        abort();
    return p;
}

/* check_domain - the promises of a normal-form domain of length n */
static void check_domain(const char *d, size_t n)
{
    char again[BS_DOMAIN_MAX + 1];
    size_t i, label = 0;

    REQUIRE(n >= 1 && n <= BS_DOMAIN_MAX);
    REQUIRE(strlen(d) == n);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];

        REQUIRE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                c == '-');
        if (c == '.') {
            REQUIRE(label > 0);
            label = 0;
        } else {
            REQUIRE(++label <= 63);
        }
    }
    REQUIRE(label > 0);
    REQUIRE(bs_domain_norm(d, n, again) == (int)n);
    REQUIRE(memcmp(again, d, n + 1) == 0);
}

/* check_literal - the promises of a normal-form address literal */
static void check_literal(const char *d, size_t n)
{
    char again[BS_DOMAIN_MAX + 1];
    int lit = 0;

    REQUIRE(n >= 9 && n <= BS_DOMAIN_MAX && strlen(d) == n);
    REQUIRE(d[0] == '[' && d[n - 1] == ']');
    REQUIRE(bs_addr_domain(d, n, again, &lit) == (int)n && lit == 1);
    REQUIRE(memcmp(again, d, n + 1) == 0);
    REQUIRE(bs_domain_norm(d, n, again) == -1); /* never a host name */
}

static int all_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

static void fuzz_domain(const char *s, size_t len)
{
    char *out = xmalloc(BS_DOMAIN_MAX + 1);
    int n = bs_domain_norm(s, len, out), lit = 0; /* n: host name, then literal */
    size_t i;

    if (n < 0) {
        REQUIRE(n == -1);
        REQUIRE(out[0] == '\0');
    } else {
        check_domain(out, (size_t)n);
        /* ASCII: the input, folded, with at most one trailing dot more. */
        if (all_ascii(s, len)) {
            REQUIRE(len == (size_t)n || (len == (size_t)n + 1 && s[n] == '.'));
            for (i = 0; i < (size_t)n; i++)
                REQUIRE((unsigned char)out[i] == lower((unsigned char)s[i]));
        }
    }
    n = bs_literal_norm(s, len, out);
    if (n < 0)
        REQUIRE(n == -1 && out[0] == '\0');
    else
        check_literal(out, (size_t)n);
    {
        char *host = xmalloc(BS_DOMAIN_MAX + 1);
        int got = bs_addr_domain(s, len, out, &lit);

        REQUIRE(got == (lit ? n : bs_domain_norm(s, len, host)));
        free(host);
    }
    free(out);
}

/* Postfix's split_addr() keeps every local part that starts with "owner-",
 * "owner-" itself included. */
#define OWNER_MIN_LEN 6

/* ref_base_len - Postfix split_addr() (global/split_addr.c) written the
 * obvious way, on (pointer, length) and with exact (lowercase) compares */
static size_t ref_base_len(const char *l, size_t n, const char *delims)
{
    static const char *const never_split[] = {"postmaster", "mailer-daemon", "double-bounce"};
    size_t i, j;

    for (i = 0; i < sizeof(never_split) / sizeof(never_split[0]); i++)
        if (n == strlen(never_split[i]) && memcmp(l, never_split[i], n) == 0)
            return n;
    if (strchr(delims, '-') != NULL) { /* owner_request_special = yes */
        if (n >= OWNER_MIN_LEN && memcmp(l, "owner-", 6) == 0)
            return n;
        if (n > 8 && memcmp(l + n - 8, "-request", 8) == 0)
            return n;
    }
    for (i = 0; i < n; i++)
        for (j = 0; delims[j] != '\0'; j++)
            if (l[i] == delims[j])
                return i == 0 ? n : i; /* never an empty local part */
    return n;
}

static void check_base_len(const char *l, size_t n, const char *delims)
{
    size_t got = bs_local_base_len(l, n, delims);

    REQUIRE(got == ref_base_len(l, n, delims));
    REQUIRE(got <= n);
    REQUIRE(got > 0 || n == 0);
}

static void fuzz_addr(const char *s, size_t len)
{
    bs_addr *a = xmalloc(sizeof(*a));
    size_t i;

    if (bs_addr_parse(s, len, a) != 0) {
        REQUIRE(a->local[0] == '\0' && a->local_len == 0);
        REQUIRE(a->domain[0] == '\0' && a->domain_len == 0);
    } else {
        REQUIRE(a->local_len >= 1 && a->local_len <= BS_LOCAL_MAX);
        REQUIRE(strlen(a->local) == a->local_len);
        for (i = 0; i < a->local_len; i++) {
            unsigned char c = (unsigned char)a->local[i];

            REQUIRE(c >= 0x20 && c != 0x7f && !(c >= 'A' && c <= 'Z'));
            REQUIRE(c == lower((unsigned char)s[i]));
        }
        /* Split at the last '@'. */
        REQUIRE(s[a->local_len] == '@');
        REQUIRE(memchr(s + a->local_len + 1, '@', len - a->local_len - 1) == NULL);
        if (a->literal)
            check_literal(a->domain, a->domain_len);
        else
            check_domain(a->domain, a->domain_len);

        check_base_len(a->local, a->local_len, "+");
        check_base_len(a->local, a->local_len, "+-_.=");
        REQUIRE(bs_local_base_len(a->local, a->local_len, "") == a->local_len);
    }
    free(a);
}

/* Raw bytes as a local part, with delimiters taken from the input too. */
static void fuzz_base_len(const char *s, size_t len)
{
    char delims[4] = {0};
    size_t i;

    for (i = 0; i < 3 && i < len; i++)
        delims[i] = s[i];
    check_base_len(s, len, delims);
    check_base_len(s, len, "+");
    REQUIRE(bs_local_base_len(s, len, NULL) == len);
}

static int is_v4mapped(const uint8_t ip[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    return memcmp(ip, prefix, 12) == 0;
}

static void fuzz_client(const char *s, size_t len)
{
    char *out = xmalloc(BS_CLIENT_KEY_MAX + 1);
    uint8_t ip[16], back[16];
    int fam = bs_ip_parse(s, len, ip);
    unsigned p;
    size_t i;

    REQUIRE(fam == -1 || fam == 4 || fam == 6);
    if (fam == 4)
        REQUIRE(is_v4mapped(ip));
    /* Accepted text is made of address characters only: no NUL, no zone. */
    for (i = 0; fam > 0 && i < len; i++)
        REQUIRE(strchr("0123456789abcdefABCDEF:.", s[i]) != NULL && s[i] != '\0');
    REQUIRE(bs_client_key(s, len, 0, out) == -1 && out[0] == '\0');
    REQUIRE(bs_client_key(s, len, 129, out) == -1 && out[0] == '\0');

    for (p = 1; p <= 128; p++) {
        int n = bs_client_key(s, len, p, out);
        bs_cidr net;

        if (fam < 0) {
            REQUIRE(n == -1 && out[0] == '\0');
            break; /* no prefix will change that */
        }
        REQUIRE(n > 0 && n <= BS_CLIENT_KEY_MAX);
        REQUIRE(strlen(out) == (size_t)n);
        for (i = 0; i < (size_t)n; i++)
            REQUIRE((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f') ||
                    out[i] == ':' || out[i] == '.' || out[i] == '/');
        if (is_v4mapped(ip)) {
            /* Plain dotted quad, the same address, whatever the prefix. */
            REQUIRE(strchr(out, '/') == NULL);
            REQUIRE(bs_ip_parse(out, (size_t)n, back) == 4);
            REQUIRE(memcmp(back, ip, 16) == 0);
            /* A dotted quad has one spelling: the key is the input. */
            if (fam == 4)
                REQUIRE((size_t)n == len && memcmp(out, s, len) == 0);
        } else {
            REQUIRE(bs_cidr_parse(out, &net) == 0);
            REQUIRE(net.bits == p);
            REQUIRE(bs_cidr_match(&net, ip) == 1);
        }
    }
    free(out);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* bs_escape writes lower case only */
}

/* unescape - inverse of bs_escape; -1 on anything bs_escape can't emit */
static long unescape(const char *e, size_t n, char *out)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        if (e[i] != '\\') {
            out[o++] = e[i];
            continue;
        }
        if (n - i < 4 || e[i + 1] != 'x' || hexval(e[i + 2]) < 0 || hexval(e[i + 3]) < 0)
            return -1; /* a cut or malformed escape */
        out[o++] = (char)(hexval(e[i + 2]) * 16 + hexval(e[i + 3]));
        i += 3;
    }
    return (long)o;
}

static void fuzz_escape(const char *s, size_t len)
{
    size_t full_sz = len * 4 + 1;
    char *full = xmalloc(full_sz);
    char *raw = xmalloc(len);
    size_t n = bs_escape(s, len, full, full_sz), i;
    static const size_t sizes[] = {1, 2, 4, 5, 6, 17, 64};
    char sentinel = 'Z';

    /* Room for everything: printable, complete, reversible. */
    REQUIRE(n < full_sz && full[n] == '\0' && strlen(full) == n);
    for (i = 0; i < n; i++)
        REQUIRE(full[i] >= 0x21 && full[i] <= 0x7e);
    REQUIRE(unescape(full, n, raw) == (long)len);
    REQUIRE(memcmp(raw, s, len) == 0);

    /* Short of room: a prefix of the full text, cut between escapes. */
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char *out = xmalloc(sizes[i]);
        size_t m = bs_escape(s, len, out, sizes[i]);
        long k;

        REQUIRE(m < sizes[i] && out[m] == '\0' && strlen(out) == m);
        REQUIRE(m <= n && memcmp(out, full, m) == 0);
        /* Stopped only because the next item did not fit. */
        REQUIRE(m == n || sizes[i] - m < (full[m] == '\\' ? 5u : 2u));
        /* Never mid-escape: the text decodes to a prefix of the input. */
        k = unescape(out, m, raw);
        REQUIRE(k >= 0 && (size_t)k <= len && memcmp(raw, s, (size_t)k) == 0);
        free(out);
    }
    REQUIRE(bs_escape(s, len, &sentinel, 0) == 0 && sentinel == 'Z');
    free(raw);
    free(full);
}

static int host_bits_clear(const uint8_t a[16], unsigned bits)
{
    unsigned i;

    for (i = bits; i < 128; i++)
        if (a[i / 8] & (0x80 >> (i % 8)))
            return 0;
    return 1;
}

static void fuzz_cidr(const char *s, size_t len)
{
    char *z = xmalloc(len + 1);
    bs_cidr net;
    uint8_t ip[16];
    size_t zlen;
    int rc, fam;

    /* bs_cidr_parse takes a C string: the input up to its first NUL. */
    memcpy(z, s, len);
    z[len] = '\0';
    zlen = strlen(z);
    rc = bs_cidr_parse(z, &net);
    if (rc == 0) {
        REQUIRE(net.bits <= 128);
        REQUIRE(host_bits_clear(net.addr, net.bits));
        REQUIRE(bs_cidr_match(&net, net.addr) == 1);
        REQUIRE(bs_cidr_list_match(&net, 1, net.addr) == 1);
        if (strchr(z, ':') == NULL)
            REQUIRE(net.bits >= 96 && is_v4mapped(net.addr));
    } else {
        REQUIRE(rc == -1);
    }

    /* Without a '/', bs_cidr_parse is bs_ip_parse plus a host route. */
    if (strchr(z, '/') == NULL) {
        fam = bs_ip_parse(z, zlen, ip);
        REQUIRE((rc == 0) == (fam > 0));
        if (rc == 0)
            REQUIRE(net.bits == 128 && memcmp(net.addr, ip, 16) == 0);
    }
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;

    fuzz_domain(s, size);
    fuzz_addr(s, size);
    fuzz_base_len(s, size);
    fuzz_client(s, size);
    fuzz_escape(s, size);
    fuzz_cidr(s, size);
    return 0;
}
