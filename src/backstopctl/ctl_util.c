/*
 * ctl_util.c - backstopctl's small helpers: messages, display escaping,
 * durations, operand normalisation (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_err, bs_ctl_note   "backstopctl: ..." / "backstopctl: note: ..."
 *                             lines on stderr.
 *   bs_ctl_last_err           the last bs_ctl_err message (for --json).
 *   bs_ctl_utf8_char          decode one UTF-8 sequence, strictly.
 *   bs_ctl_local_bad_byte     a byte no local part Postfix passes has: the
 *                             one check of user add|del and import.
 *   bs_ctl_safe               display copy of bytes from Redis or a file.
 *   bs_ctl_duration           ms -> "1h" (the config's syntax, exact).
 *   bs_ctl_remaining          ms -> "59m12s" (for TTLs).
 *   bs_ctl_rule_text          an NDR rule in the syntax the daemon reads.
 *   bs_ctl_cidr_text          a network as written in the config.
 *   bs_ctl_sort_strings       qsort with strcmp.
 *   bs_ctl_norm_domain        DOMAIN operand -> bs_domain_norm's form.
 *   bs_ctl_norm_client        CLIENT operand -> the daemon's client key.
 *
 * NEVER
 *   Writes past the output sizes given; leaves an output unterminated.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backstop/cidr.h"
#include "ctl.h"

static char last_err[512]; /* the last bs_ctl_err message (cut to fit) */

void bs_ctl_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_err, sizeof(last_err), fmt, ap);
    va_end(ap);
    fputs("backstopctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

const char *bs_ctl_last_err(void)
{
    return last_err;
}

void bs_ctl_note(const char *fmt, ...)
{
    va_list ap;

    fputs("backstopctl: note: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* bs_ctl_utf8_char - one UTF-8 sequence (RFC 3629) */
long bs_ctl_utf8_char(const unsigned char *s, size_t n, size_t *len)
{
    static const struct {
        unsigned char mask, lead;
        long min; /* below it: an overlong form */
    } forms[] = {{0x80, 0x00, 0}, {0xe0, 0xc0, 0x80}, {0xf0, 0xe0, 0x800}, {0xf8, 0xf0, 0x10000}};
    size_t k, i;
    long cp;

    if (n == 0)
        return -1;
    for (k = 0; k < 4 && (s[0] & forms[k].mask) != forms[k].lead; k++)
        ;
    if (k == 4 || k + 1 > n)
        return -1;
    cp = k == 0 ? s[0] : s[0] & (0x3f >> k);
    for (i = 1; i <= k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < forms[k].min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *len = k + 1;
    return cp;
}

/* bs_ctl_local_bad_byte - why s holds a byte no local part has, or NULL */
const char *bs_ctl_local_bad_byte(const char *s, size_t len)
{
    size_t i, n;
    long cp;

    for (i = 0; i < len; i += n) {
        if ((cp = bs_ctl_utf8_char((const unsigned char *)s + i, len - i, &n)) < 0)
            return "not UTF-8";
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
            return "control character";
        if (cp == 0xfeff)
            return "byte order mark (U+FEFF)";
        if (cp == '"' || cp == '\\')
            return "quoted local part (write it unquoted, as Postfix passes it)";
    }
    return NULL;
}

/* bs_ctl_safe - bytes for a terminal: controls, the backslash and bytes
 * that are not UTF-8 escaped; a character is copied whole or not at all */
const char *bs_ctl_safe(const char *s, size_t len, char *out, size_t outsz)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, n = 0, clen;

    if (outsz == 0)
        return out;
    for (i = 0; i < len; i += clen) {
        long cp = bs_ctl_utf8_char((const unsigned char *)s + i, len - i, &clen);

        if (cp >= 0x20 && cp != 0x7f && cp != '\\' && !(cp >= 0x80 && cp <= 0x9f)) {
            if (outsz - n < clen + 1)
                break;
            memcpy(out + n, s + i, clen);
            n += clen;
        } else {
            unsigned char ch = (unsigned char)s[i];
            if (outsz - n < 5)
                break;
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
            clen = 1;
        }
    }
    out[n] = 0;
    return out;
}

/* Units from the largest; both duration formatters walk this table. */
static const struct {
    const char *suffix;
    uint64_t ms;
} units[] = {
    {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1},
};
#define NUNITS (sizeof(units) / sizeof(units[0]))

/* bs_ctl_duration - the largest unit that divides ms exactly */
const char *bs_ctl_duration(uint64_t ms, char *out, size_t outsz)
{
    size_t i;

    for (i = 0; i < NUNITS - 1 && (ms == 0 || ms % units[i].ms != 0); i++)
        ;
    if (ms == 0)
        i = 3; /* "0s" */
    snprintf(out, outsz, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].suffix);
    return out;
}

/* bs_ctl_remaining - the two most significant units */
const char *bs_ctl_remaining(uint64_t ms, char *out, size_t outsz)
{
    size_t i, n = 0, shown = 0;

    out[0] = 0;
    if (ms < 1000) {
        snprintf(out, outsz, "%llums", (unsigned long long)ms);
        return out;
    }
    /* two most significant units, seconds at most: "2d3h", "59m12s" */
    for (i = 0; i < NUNITS - 1 && shown < 2; i++) {
        uint64_t q = ms / units[i].ms;

        if (q == 0 && shown == 0)
            continue;
        if (q > 0 && n < outsz)
            n += (size_t)snprintf(out + n, outsz - n, "%llu%s", (unsigned long long)q,
                                  units[i].suffix);
        ms -= q * units[i].ms;
        shown++;
    }
    return out;
}

/* bs_ctl_rule_text - a rule as the daemon reads it */
const char *bs_ctl_rule_text(const bs_ndr_rule *r, char *out, size_t outsz)
{
    bs_format_ndr_rule(r, out, outsz);
    return out;
}

/* bs_ctl_cidr_text - IPv4-mapped networks as IPv4 */
const char *bs_ctl_cidr_text(const bs_cidr *n, char *out, size_t outsz)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char ip[INET6_ADDRSTRLEN] = "?";

    if (memcmp(n->addr, mapped, 12) == 0 && n->bits >= 96) {
        inet_ntop(AF_INET, n->addr + 12, ip, sizeof(ip));
        snprintf(out, outsz, "%s/%u", ip, n->bits - 96);
    } else {
        inet_ntop(AF_INET6, n->addr, ip, sizeof(ip));
        snprintf(out, outsz, "%s/%u", ip, n->bits);
    }
    return out;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void bs_ctl_sort_strings(char **v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_str);
}

/* bs_ctl_norm_domain - bs_domain_norm with a message */
int bs_ctl_norm_domain(const char *arg, char *out)
{
    char shown[BS_DOMAIN_MAX + 8];

    if (bs_domain_norm(arg, strlen(arg), out) < 0) {
        bs_ctl_err("%s: not a domain name (ASCII letters, digits, '-', '_' and dots)",
                   bs_ctl_safe(arg, strlen(arg), shown, sizeof(shown)));
        return BS_CTL_USAGE;
    }
    return 0;
}

/* bs_ctl_norm_client - an address or ADDRESS/PREFIX to the daemon's key */
int bs_ctl_norm_client(const bs_ctl *c, const char *arg, char *key)
{
    const char *slash = strchr(arg, '/');
    size_t alen = slash ? (size_t)(slash - arg) : strlen(arg);
    char shown[128];
    uint8_t ip[16];
    int family = bs_ip_parse(arg, alen, ip);

    bs_ctl_safe(arg, strlen(arg), shown, sizeof(shown));
    if (family < 0) {
        bs_ctl_err("%s: not an IP address", shown);
        return BS_CTL_USAGE;
    }
    if (slash) {
        char *end;
        unsigned long bits = strtoul(slash + 1, &end, 10);
        unsigned want = family == 4 ? 32 : c->cfg.ipv6_prefix;

        if (slash[1] == 0 || *end || bits != want) {
            bs_ctl_err("%s: clients are tracked per %s (IPv4 /32, IPv6 /%u as [ratelimit] "
                       "ipv6_prefix says); give an address or ADDRESS/%u",
                       shown, family == 4 ? "address" : "network", c->cfg.ipv6_prefix, want);
            return BS_CTL_USAGE;
        }
    }
    if (bs_client_key(arg, alen, c->cfg.ipv6_prefix, key) < 0) {
        bs_ctl_err("%s: not an IP address", shown);
        return BS_CTL_USAGE;
    }
    return 0;
}
