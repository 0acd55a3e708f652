/*
 * cidr.c - IPv4/IPv6 addresses and network lists (cidr.h)
 *
 * PROVIDES
 *   bs_ip_parse         text address -> 16 bytes; 4 or 6 (the family as
 *                       written: "::ffff:1.2.3.4" is 6), or -1.
 *   bs_cidr_parse       "ADDR" or "ADDR/LEN" -> network; 0, or -1 with *out
 *                       untouched.
 *   bs_cidr_match       1 if an address is inside a network, else 0.
 *   bs_cidr_list_match  1 if it is inside any of n networks, else 0.
 *
 * Every address is held in 16-byte form, IPv4 as IPv4-mapped IPv6
 * (::ffff:a.b.c.d), so one comparison serves both families: an IPv4 /N is
 * the 128-bit prefix 96 + N.
 *
 * SYNTAX (strict; these come from the config and from the wire)
 *   ADDR  what inet_pton() accepts: dotted quad with no leading zeros, or
 *         IPv6 text. No zone id ("fe80::1%eth0"), no brackets ("[::1]"), no
 *         blanks, no trailing junk, at most 45 bytes, no NUL inside.
 *   LEN   decimal, "0" or without leading zeros, 0..32 for IPv4 and 0..128
 *         for IPv6. "/08" is rejected although Postfix accepts it: a typo
 *         in an exempt list should fail loudly.
 *   Host bits set beyond LEN are an error, as in Postfix cidr tables.
 *
 * NEVER
 *   Allocates, does I/O or logs. Reads more than len bytes in bs_ip_parse.
 *
 * FAMILIES
 *   IPv4 lives in ::ffff:0:0/96, but the families are kept apart as in
 *   Postfix: an IPv6 network ("::/0", "::/64", ...) never matches an IPv4
 *   address; only networks inside ::ffff:0:0/96 (IPv4 ones) do.
 */
#include "backstop/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/*
 * The longest valid text: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
 * is 45 bytes; INET6_ADDRSTRLEN (46) leaves room for the NUL.
 */
#define BS_IP_TEXT_MAX (INET6_ADDRSTRLEN - 1)

/* ip4_parse - what inet_pton(AF_INET) accepts, read in place (the common
 * client_address costs no copy and no libc call): four decimal octets
 * 0..255 without leading zeros, three dots, nothing else. 0 / -1. */
static int ip4_parse(const char *s, size_t len, uint8_t out[4])
{
    unsigned octets = 0, v = 0, digits = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= '0' && c <= '9') {
            if (digits && v == 0)
                return -1; /* a leading zero */
            if ((v = v * 10 + (c - '0')) > 255)
                return -1;
            digits++;
        } else if (c == '.' && digits && octets < 3) {
            out[octets++] = (uint8_t)v;
            v = digits = 0;
        } else {
            return -1; /* NUL, ':', blanks, a fourth dot, ".." */
        }
    }
    if (!digits || octets != 3)
        return -1;
    out[3] = (uint8_t)v;
    return 0;
}

/* bs_ip_parse - IPv4 by hand; IPv6: bounded copy, then inet_pton() on a
 * NUL-terminated string */
int bs_ip_parse(const char *s, size_t len, uint8_t out[16])
{
    char buf[BS_IP_TEXT_MAX + 1];
    uint8_t tmp[16];

    if (len == 0 || len > BS_IP_TEXT_MAX)
        return -1;
    if (memchr(s, ':', len) == NULL) {
        if (ip4_parse(s, len, tmp + 12) < 0)
            return -1;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, tmp + 12, 4);
        return 4;
    }
    if (memchr(s, '\0', len) != NULL)
        return -1; /* would truncate "1.2.3.4\0junk" to a valid address */
    memcpy(buf, s, len);
    buf[len] = '\0';

    if (inet_pton(AF_INET6, buf, tmp) != 1)
        return -1;
    memcpy(out, tmp, 16);
    return 6;
}

/* parse_len - the LEN after '/': see SYNTAX above. 0 / -1. */
static int parse_len(const char *s, unsigned max, unsigned *out)
{
    unsigned v = 0;
    size_t i;

    if (s[0] == '0' && s[1] != '\0')
        return -1;
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 3)
            return -1; /* 3 digits cover 128 and keep v far from overflow */
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (i == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* host_bits_zero - 1 if every bit of a after the first bits is clear */
static int host_bits_zero(const uint8_t a[16], unsigned bits)
{
    unsigned i;

    for (i = bits / 8; i < 16; i++) {
        uint8_t host = (i == bits / 8) ? (uint8_t)(0xffu >> (bits % 8)) : 0xff;

        if (a[i] & host)
            return 0;
    }
    return 1;
}

/* bs_cidr_parse - "ADDR[/LEN]" into a network with host bits zero */
int bs_cidr_parse(const char *s, bs_cidr *out)
{
    const char *slash;
    uint8_t ip[16];
    unsigned len, bits;
    int family;

    if (s == NULL)
        return -1;
    slash = strchr(s, '/');
    family = bs_ip_parse(s, slash ? (size_t)(slash - s) : strlen(s), ip);
    if (family < 0)
        return -1;
    if (slash == NULL)
        len = family == 4 ? 32 : 128;
    else if (parse_len(slash + 1, family == 4 ? 32 : 128, &len) < 0)
        return -1;

    bits = family == 4 ? 96 + len : len;
    if (!host_bits_zero(ip, bits))
        return -1;
    memcpy(out->addr, ip, 16);
    out->bits = bits;
    return 0;
}

/* bs_cidr_match - compare the first net->bits bits */
int bs_cidr_match(const bs_cidr *net, const uint8_t ip[16])
{
    unsigned whole = net->bits / 8, rest = net->bits % 8;

    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    int ip_v4 = memcmp(ip, mapped, 12) == 0;
    int net_v4 = net->bits >= 96 && memcmp(net->addr, mapped, 12) == 0;

    if (net->bits > 128)
        return 0; /* not made by bs_cidr_parse: match nothing */
    if (ip_v4 != net_v4)
        return 0; /* families apart, as in Postfix: ::/0 is no IPv4 network */
    if (memcmp(net->addr, ip, whole) != 0)
        return 0;
    if (rest != 0 && ((net->addr[whole] ^ ip[whole]) & (uint8_t)(0xff00u >> rest)) != 0)
        return 0;
    return 1;
}

int bs_cidr_list_match(const bs_cidr *nets, size_t n, const uint8_t ip[16])
{
    size_t i;

    for (i = 0; i < n; i++)
        if (bs_cidr_match(&nets[i], ip))
            return 1;
    return 0;
}
