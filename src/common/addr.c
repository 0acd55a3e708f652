/*
 * addr.c - validation and normalisation of wire strings (addr.h)
 *
 * PROVIDES
 *   bs_addr_parse      "local@domain" -> normalised local part and domain.
 *                      0, or -1 (out is cleared: both parts "" with length 0).
 *   bs_domain_norm     host name -> the canonical form: lowercase ASCII, a
 *                      UTF-8 name as its A-labels. Length, or -1 (out is
 *                      then "").
 *   bs_literal_norm    "[192.0.2.5]", "[IPv6:...]" -> "[192.0.2.5]",
 *                      "[ipv6:2001:db8::1]". Length, or -1 (out is "").
 *   bs_addr_domain     the domain of an address: a literal, else a host
 *                      name; says which. Length, or -1 (out is "").
 *   bs_local_base_len  length of a local part without its recipient_delimiter
 *                      extension; never fails.
 *   bs_client_key      client_address -> "a.b.c.d" or "v6net/prefix". Length,
 *                      or -1 (out is then "").
 *   bs_escape          any bytes -> printable ASCII for logs and replies.
 *                      Length written; out is always NUL-terminated when
 *                      outsz > 0.
 *
 * INPUT
 *   Every (s, len) pair is read for exactly len bytes: s need not be NUL
 *   terminated, and a NUL inside it is just another (invalid) byte, so
 *   "a@b\0c" can not pass for "a@b". s may be NULL when len is 0.
 *
 * CANONICAL DOMAIN
 *   One form for every spelling Postfix accepts and routes to the same
 *   domain: case folded, one trailing dot dropped (trivial-rewrite does),
 *   and a name with non-ASCII bytes converted the way Postfix's
 *   midna_domain_to_ascii() does for SMTPUTF8 mail: UTS #46
 *   non-transitional processing (case mapping, NFC, "ß" kept, "。" a dot),
 *   no STD3 rules, then the ASCII checks below on the result. So
 *   "BÜCHER.example", "bücher.example." and "bu\xcc\x88cher.example" are
 *   all "xn--bcher-kva.example". Address literals are not host names: the
 *   caller asks for them (bs_literal_norm; bs_addr_parse tries both).
 *
 * NEVER
 *   Allocates, except inside libidn2 for a domain with non-ASCII bytes (the
 *   result is freed before returning; ASCII input never reaches libidn2).
 *   Does I/O, logs, or depends on the locale (case folding is ASCII A-Z
 *   only, no tolower()). Writes beyond the documented output
 *   size. Scans over-long input: an address longer than BS_ADDR_RAW_MAX, a
 *   domain longer than BS_DOMAIN_UTF8_MAX + 1 (BS_DOMAIN_MAX + 1 when
 *   ASCII) or a client address longer than
 *   any IP address is rejected on its length alone, and bs_escape stops
 *   reading when out is full.
 *
 * LIMITS AND BUGS
 *   An ASCII label that looks like an A-label ("xn--...") is not checked
 *   for valid Punycode (Postfix does not either). Local parts are
 *   ASCII-folded only: "JÖRG" becomes "jÖrg". An unqualified recipient ("postmaster")
 *   has no '@' and is rejected; so is the null sender "".
 *   bs_local_base_len follows Postfix's split_addr(): postmaster,
 *   mailer-daemon and double-bounce are never split, nor owner-foo /
 *   foo-request when '-' is a delimiter (the local part is lowercase here).
 *   A client key's IPv6 text is what glibc's inet_ntop() prints (ip6_text
 *   does it by hand, for every libc): RFC 5952 lower case, except the
 *   deprecated IPv4-compatible range ::/96 in dotted form
 *   ("::192.0.2.1/128"). Literals still go through inet_ntop().
 */
#include "backstop/addr.h"
#include "backstop/cidr.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define BS_LABEL_MAX 63 /* RFC 1035 2.3.4 */
/* The flags of Postfix's midna_domain_to_ascii(): UTS #46, non-transitional */
#define BS_IDNA_FLAGS (IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL)

/* ascii_lower - fold A-Z only; every other byte (UTF-8 too) is kept. */
static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static int domain_byte_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* domain_scan - the body of bs_domain_norm; out may be left partly written. */
static int domain_scan(const char *s, size_t len, char *out)
{
    size_t i, label = 0;

    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > BS_DOMAIN_MAX)
        return -1;
    for (i = 0; i < len; i++) {
        unsigned char c = ascii_lower((unsigned char)s[i]);

        if (c == '.') {
            if (label == 0)
                return -1; /* leading dot or ".." */
            label = 0;
        } else if (domain_byte_ok(c)) {
            if (++label > BS_LABEL_MAX)
                return -1;
        } else {
            return -1;
        }
        out[i] = (char)c;
    }
    if (label == 0)
        return -1; /* "a.." lost one dot above, the other is an empty label */
    out[len] = '\0';
    return (int)len;
}

/* has_non_ascii - any byte >= 0x80 (the only input libidn2 gets to see) */
static int has_non_ascii(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 1;
    return 0;
}

/* idna_scan - a name with non-ASCII bytes: its A-label form, then the
 * ASCII checks. Control bytes (NUL included) never reach libidn2. */
static int idna_scan(const char *s, size_t len, char *out)
{
    char in[BS_DOMAIN_UTF8_MAX + 1];
    uint8_t *ascii = NULL;
    size_t i;
    int n = -1;

    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > BS_DOMAIN_UTF8_MAX)
        return -1;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || s[i] == 0x7f)
            return -1;
    memcpy(in, s, len);
    in[len] = '\0';
    if (idn2_lookup_u8((const uint8_t *)in, &ascii, BS_IDNA_FLAGS) == IDN2_OK && ascii)
        n = domain_scan((const char *)ascii, strlen((const char *)ascii), out);
    free(ascii);
    return n;
}

/* bs_domain_norm - the canonical form (see CANONICAL DOMAIN above) */
int bs_domain_norm(const char *s, size_t len, char *out)
{
    int n = has_non_ascii(s, len) ? idna_scan(s, len, out) : domain_scan(s, len, out);

    if (n < 0)
        out[0] = '\0';
    return n;
}

/*
 * bs_literal_norm - RFC 5321 address literals, as Postfix accepts them in
 * a recipient: "[IPv4]" or "[IPv6:addr]" (tag in any case). The address is
 * re-printed, so every spelling of one address is one string: IPv6 in
 * RFC 5952 text with the tag lowercased like the rest of a domain.
 */
/*
 * ipv4_literal - the address of an IPv4 literal's text as Postfix reads
 * it: its syntax first (valid_ipv4_hostaddr: four dot-separated runs of
 * decimal digits, each at most 255, leading zeros allowed), then the C
 * library's numeric conversion that its resolve_local() uses (getaddrinfo
 * with AI_NUMERICHOST, which is inet_aton: a leading zero means octal, so
 * [192.0.2.005] is 192.0.2.5, [192.0.2.010] is 192.0.2.8 and [192.0.2.09]
 * no address). inet_pton, which refuses leading zeros, would leave
 * [192.0.2.005] unreadable while Postfix delivers it as 192.0.2.5.
 * 0 / -1.
 */
static int ipv4_literal(const char *text, unsigned char ip[4])
{
    unsigned parts = 0, val = 0, digits = 0;
    struct in_addr in;

    for (const char *p = text;; p++) {
        if (*p >= '0' && *p <= '9') {
            val = val * 10 + (unsigned)(*p - '0');
            digits++;
            if (val > 255)
                return -1;
            continue;
        }
        if ((*p != '.' && *p != '\0') || digits == 0)
            return -1;
        parts++;
        val = digits = 0;
        if (*p == '\0')
            break;
    }
    if (parts != 4 || inet_aton(text, &in) == 0)
        return -1;
    memcpy(ip, &in.s_addr, 4);
    return 0;
}

int bs_literal_norm(const char *s, size_t len, char *out)
{
    static const char tag[] = "ipv6:";
    const size_t taglen = sizeof(tag) - 1;
    char text[INET6_ADDRSTRLEN + 8];
    unsigned char ip[16];
    size_t i, n;
    int v6;

    out[0] = '\0';
    if (len < 3 || s[0] != '[' || s[len - 1] != ']' || len - 2 >= sizeof(text))
        return -1;
    s++;
    len -= 2;
    for (i = 0; i < taglen && i < len && ascii_lower((unsigned char)s[i]) == tag[i]; i++)
        ;
    v6 = i == taglen;
    if (v6) {
        s += taglen;
        len -= taglen;
    }
    memcpy(text, s, len);
    text[len] = '\0';
    if (strlen(text) != len ||
        (v6 ? inet_pton(AF_INET6, text, ip) != 1 : ipv4_literal(text, ip) < 0) ||
        !inet_ntop(v6 ? AF_INET6 : AF_INET, ip, text, sizeof(text)))
        return -1;
    n = 0;
    out[n++] = '[';
    if (v6) {
        memcpy(out + n, tag, taglen);
        n += taglen;
    }
    memcpy(out + n, text, strlen(text));
    n += strlen(text);
    out[n++] = ']';
    out[n] = '\0';
    return (int)n;
}

/* bs_addr_domain - the domain of an address: a literal or a host name */
int bs_addr_domain(const char *s, size_t len, char *out, int *literal)
{
    *literal = len > 0 && s[0] == '[';
    return *literal ? bs_literal_norm(s, len, out) : bs_domain_norm(s, len, out);
}

/* local_norm - 1..BS_LOCAL_MAX bytes, no controls, A-Z folded. */
static int local_norm(const char *s, size_t len, char *out)
{
    size_t i;

    if (len == 0 || len > BS_LOCAL_MAX)
        return -1;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            return -1;
        out[i] = (char)ascii_lower(c);
    }
    out[len] = '\0';
    return (int)len;
}

/*
 * bs_addr_parse - split at the last '@': Postfix hands us the address
 * unquoted, so "\"a@b\"@c" arrives as "a@b@c" and only the last '@' is
 * known to separate the domain. The domain is a host name in canonical
 * form, or an address literal (out->literal set).
 */
int bs_addr_parse(const char *s, size_t len, bs_addr *out)
{
    size_t at;
    int n;

    out->local[0] = out->domain[0] = '\0';
    out->local_len = out->domain_len = 0;
    out->literal = 0;

    if (len == 0 || len > BS_ADDR_RAW_MAX)
        return -1;
    for (at = len; at > 0 && s[at - 1] != '@'; at--)
        ;
    if (at == 0)
        return -1; /* no '@' */
    at--;          /* index of the last '@' */

    if ((n = local_norm(s, at, out->local)) < 0)
        goto fail;
    out->local_len = (size_t)n;
    if ((n = bs_addr_domain(s + at + 1, len - at - 1, out->domain, &out->literal)) < 0)
        goto fail;
    out->domain_len = (size_t)n;
    return 0;

fail:
    out->local[0] = out->domain[0] = '\0';
    out->local_len = out->domain_len = 0;
    out->literal = 0;
    return -1;
}

/* is_local - local part (already lowercase) equals the literal word */
#define is_local(local, len, word) ((len) == sizeof(word) - 1 && memcmp(local, word, len) == 0)

/* bs_local_base_len - where Postfix would cut "user+ext" (see addr.h) */
size_t bs_local_base_len(const char *local, size_t local_len, const char *delims)
{
    const char *hit = NULL;
    size_t i;

    if (delims == NULL || delims[0] == '\0')
        return local_len;
    /* Postfix split_addr(): these are never split ... */
    if (is_local(local, local_len, "postmaster") || is_local(local, local_len, "mailer-daemon") ||
        is_local(local, local_len, "double-bounce"))
        return local_len;
    /* ... nor owner-foo / foo-request when '-' is a delimiter */
    if (strchr(delims, '-') &&
        ((local_len >= 6 && memcmp(local, "owner-", 6) == 0) ||
         (local_len > 8 && memcmp(local + local_len - 8, "-request", 8) == 0)))
        return local_len;
    /* The first byte that is a delimiter; a NUL byte never is one. One
     * delimiter (the usual "+") is one memchr, not a strchr per byte. */
    if (delims[1] == '\0') {
        hit = memchr(local, delims[0], local_len);
    } else {
        for (i = 0; i < local_len && !hit; i++)
            if (local[i] != '\0' && strchr(delims, local[i]) != NULL)
                hit = local + i;
    }
    return hit == NULL || hit == local ? local_len : (size_t)(hit - local);
}

static int is_v4mapped(const uint8_t ip[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    return memcmp(ip, prefix, sizeof(prefix)) == 0;
}

/* mask_host_bits - zero every bit after the first bits (0..128). */
static void mask_host_bits(uint8_t a[16], unsigned bits)
{
    unsigned i;

    for (i = 0; i < 16; i++) {
        if (bits >= 8) {
            bits -= 8;
        } else {
            a[i] &= (uint8_t)(0xff00u >> bits);
            bits = 0;
        }
    }
}

/* append_uint - decimal digits of v at out; returns the count. */
static size_t append_uint(char *out, unsigned v)
{
    char tmp[12];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* dotted_quad - "a.b.c.d" of 4 bytes at out, NUL-terminated; the length */
static size_t dotted_quad(const uint8_t b[4], char *out)
{
    size_t n = 0;
    int i;

    for (i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (i)
            out[n++] = '.';
        /* by hand: append_uint's loop and reversal cost ~50 instructions a
         * byte, twice a request (the client key, its network) */
        if (v >= 100) {
            out[n++] = (char)('0' + v / 100);
            v %= 100;
            out[n++] = (char)('0' + v / 10);
        } else if (v >= 10) {
            out[n++] = (char)('0' + v / 10);
        }
        out[n++] = (char)('0' + v % 10);
    }
    out[n] = '\0';
    return n;
}

/*
 * ip6_text - the text glibc's inet_ntop(AF_INET6) prints (the BIND
 * algorithm), by hand: inet_ntop formats each word with sprintf, which cost
 * more than the rest of a request's decision together. Lowercase hex words
 * without leading zeros; the longest run of two or more zero words (the
 * first of equal ones) is "::"; a dotted quad ends "::a.b.c.d" (the first
 * six words zero, the seventh not) and all of ::ffff:0:0/96. The length;
 * out needs INET6_ADDRSTRLEN bytes.
 */
static size_t ip6_text(const uint8_t ip[16], char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned w[8];
    int i, cur = -1, cur_len = 0, best = -1, best_len = 0;
    size_t n = 0;

    for (i = 0; i < 8; i++) {
        w[i] = (unsigned)ip[2 * i] << 8 | ip[2 * i + 1];
        if (w[i] != 0) {
            cur = -1;
            continue;
        }
        if (cur < 0) {
            cur = i;
            cur_len = 0;
        }
        if (++cur_len > best_len) { /* strictly longer: the first run wins a tie */
            best = cur;
            best_len = cur_len;
        }
    }
    if (best_len < 2)
        best = -1;
    for (i = 0; i < 8; i++) {
        if (best >= 0 && i >= best && i < best + best_len) {
            if (i == best)
                out[n++] = ':';
            continue;
        }
        if (i)
            out[n++] = ':';
        if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)))
            return n + dotted_quad(ip + 12, out + n);
        if (w[i] >= 0x1000)
            out[n++] = hex[w[i] >> 12];
        if (w[i] >= 0x100)
            out[n++] = hex[(w[i] >> 8) & 0xf];
        if (w[i] >= 0x10)
            out[n++] = hex[(w[i] >> 4) & 0xf];
        out[n++] = hex[w[i] & 0xf];
    }
    if (best >= 0 && best + best_len == 8)
        out[n++] = ':';
    out[n] = '\0';
    return n;
}

/*
 * bs_client_key - one key per IPv4 host, one per IPv6 network: a client
 * owns a whole /64 (or so), and keying on single IPv6 addresses would let
 * it walk past every limit.
 */
int bs_client_key(const char *s, size_t len, unsigned ipv6_prefix, char *out)
{
    uint8_t ip[16];

    out[0] = '\0';
    if (bs_ip_parse(s, len, ip) < 0)
        return -1;
    return bs_client_key_ip(ip, ipv6_prefix, out);
}

/* bs_client_key_ip - the same from an address already parsed */
int bs_client_key_ip(const uint8_t addr[16], unsigned ipv6_prefix, char *out)
{
    uint8_t ip[16];
    size_t n;

    out[0] = '\0';
    if (ipv6_prefix < 1 || ipv6_prefix > 128)
        return -1;
    if (is_v4mapped(addr))
        return (int)dotted_quad(addr + 12, out);
    memcpy(ip, addr, sizeof(ip));
    mask_host_bits(ip, ipv6_prefix);
    n = ip6_text(ip, out); /* at most 45 bytes: the key's "/128" fits */
    out[n++] = '/';
    n += append_uint(out + n, ipv6_prefix);
    out[n] = '\0';
    return (int)n;
}

int bs_client_network(const uint8_t addr[16], unsigned ipv6_prefix, char *out)
{
    uint8_t ip[16];
    size_t n;

    if (!is_v4mapped(addr))
        return bs_client_key_ip(addr, ipv6_prefix, out);
    memcpy(ip, addr, sizeof(ip));
    ip[15] = 0;
    n = dotted_quad(ip + 12, out);
    memcpy(out + n, "/24", 4);
    return (int)n + 3;
}

/* plain_run - the end of the run of bytes from s[i] that need no escape
 * (0x21..0x7e but '\\'), at most len; 16 bytes per compare with SSE2 */
static size_t plain_run(const char *s, size_t i, size_t len)
{
#ifdef __SSE2__
    const __m128i lo = _mm_set1_epi8(0x21), del = _mm_set1_epi8(0x7f), bs = _mm_set1_epi8('\\');

    for (; i + 16 <= len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        /* signed: 0x80..0xff are below 0x21 too */
        unsigned bad = (unsigned)_mm_movemask_epi8(_mm_or_si128(
            _mm_cmplt_epi8(v, lo), _mm_or_si128(_mm_cmpeq_epi8(v, del), _mm_cmpeq_epi8(v, bs))));

        if (bad)
            return i + (size_t)__builtin_ctz(bad);
    }
#endif
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == '\\')
            break;
    }
    return i;
}

/* escape_to - bs_escape; *done: the bytes of s it wrote out */
static size_t escape_to(const char *s, size_t len, char *out, size_t outsz, size_t *done)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, n = 0, run;

    *done = 0;
    if (outsz == 0)
        return 0;
    while (i < len) {
        /* a run of bytes that need no escape is copied in one go */
        run = plain_run(s, i, len);
        if (run > i) {
            size_t take = run - i < outsz - 1 - n ? run - i : outsz - 1 - n;
            memcpy(out + n, s + i, take);
            n += take;
            i += take;
            if (i < run)
                break; /* out is full */
            continue;
        }
        if (outsz - n < 5)
            break;
        out[n++] = '\\';
        out[n++] = 'x';
        out[n++] = hex[(unsigned char)s[i] >> 4];
        out[n++] = hex[(unsigned char)s[i] & 0x0f];
        i++;
    }
    out[n] = '\0';
    *done = i;
    return n;
}

/* bs_escape - "\xHH" for every byte outside 0x21..0x7e, and for '\\' */
size_t bs_escape(const char *s, size_t len, char *out, size_t outsz)
{
    size_t done;

    return escape_to(s, len, out, outsz, &done);
}

/* bs_escape_marked - see addr.h */
size_t bs_escape_marked(const char *s, size_t len, int cut, char *out, size_t outsz)
{
    size_t done, n = escape_to(s, len, out, outsz, &done);

    if ((done == len && !cut) || outsz < 4)
        return n;
    n = escape_to(s, len, out, outsz - 3, &done); /* room for the mark */
    memcpy(out + n, "...", 4);
    return n + 3;
}
