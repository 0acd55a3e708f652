/*
 * addr.h - validation and normalisation of wire strings before they are used
 *
 * Everything that comes from a policy request and becomes part of a Redis key
 * or member passes through here first. Functions are pure (no I/O; no
 * allocation but libidn2's, for a non-ASCII domain only, freed at once) and
 * write NUL-terminated results into caller buffers.
 *
 * Normal forms:
 *   domain  ASCII letters, digits, '-', '_' and '.', lowercased; no empty
 *           label, no leading/trailing dot (one trailing dot is dropped),
 *           labels <= 63, total <= BS_DOMAIN_MAX. A name with non-ASCII
 *           bytes (SMTPUTF8) is first converted to its A-labels as Postfix
 *           does (UTS #46 non-transitional): "BÜCHER.example" ->
 *           "xn--bcher-kva.example". Anything else is rejected.
 *   literal "[192.0.2.1]" or "[ipv6:2001:db8::1]" (RFC 5952 text): an
 *           address literal, re-printed from the parsed address.
 *   local   1..BS_LOCAL_MAX bytes, ASCII lowercased, no control characters
 *           (< 0x20, 0x7f); spaces, quotes and UTF-8 bytes are kept as is.
 *   client  an IPv4 address in dotted quad, or an IPv6 address reduced to
 *           its network of ipv6_prefix bits in RFC 5952 text plus "/prefix"
 *           (e.g. "2001:db8:1:2::/64"); IPv4-mapped IPv6 becomes IPv4.
 */
#ifndef BACKSTOP_ADDR_H
#define BACKSTOP_ADDR_H

#include <stddef.h>
#include <stdint.h>

#define BS_DOMAIN_MAX 253
#define BS_LOCAL_MAX 128
#define BS_ADDR_MAX (BS_LOCAL_MAX + 1 + BS_DOMAIN_MAX)
/* A UTF-8 domain may take up to 4 bytes for each byte of its A-labels;
 * longer input is rejected unread. */
#define BS_DOMAIN_UTF8_MAX 1016
/* The longest address read: a UTF-8 domain and its trailing dot. */
#define BS_ADDR_RAW_MAX (BS_LOCAL_MAX + 1 + BS_DOMAIN_UTF8_MAX + 1)
#define BS_CLIENT_KEY_MAX 64 /* "ffff:...:ffff/128" fits */

typedef struct bs_addr {
    char local[BS_LOCAL_MAX + 1];
    size_t local_len;
    char domain[BS_DOMAIN_MAX + 1];
    size_t domain_len;
    int literal; /* domain is an address literal ("[192.0.2.1]") */
} bs_addr;

/*
 * bs_addr_parse - split "local@domain" at the LAST '@' and normalise both
 * parts; the domain may be a host name or an address literal. Returns 0,
 * or -1 when the string has no '@', an empty or invalid part, or a part
 * too long; *out is then cleared (both parts "").
 */
int bs_addr_parse(const char *s, size_t len, bs_addr *out);

/*
 * bs_domain_norm - the canonical form of a host name (see "domain" above)
 * into out (BS_DOMAIN_MAX + 1 bytes). Returns the length, or -1 when
 * invalid (out is then ""). The one function every domain that becomes a
 * key passes through, in the daemon and in backstopctl.
 */
int bs_domain_norm(const char *s, size_t len, char *out);

/* bs_literal_norm - an address literal (see "literal" above) into out
 * (BS_DOMAIN_MAX + 1 bytes); the length, or -1 (out is then "") */
int bs_literal_norm(const char *s, size_t len, char *out);

/* bs_addr_domain - the domain part of an address: a literal when it starts
 * with '[' (*literal = 1), else a host name; as the two above */
int bs_addr_domain(const char *s, size_t len, char *out, int *literal);

/*
 * bs_local_base_len - Postfix recipient_delimiter semantics: the length of
 * the local part before the first byte that is one of the delimiter
 * characters in delims. Returns local_len when there is no delimiter, or
 * when delims is empty, or when the delimiter is the first byte (Postfix
 * does not strip an extension that would leave an empty local part), and
 * never for postmaster, mailer-daemon, double-bounce, nor for owner-foo and
 * foo-request when '-' is a delimiter (Postfix split_addr()).
 */
size_t bs_local_base_len(const char *local, size_t local_len, const char *delims);

/*
 * bs_client_key - normalise a client_address attribute into out
 * (BS_CLIENT_KEY_MAX + 1 bytes): see "client" above. ipv6_prefix is 1..128.
 * Returns the length, or -1 when the string is not an IP address.
 */
int bs_client_key(const char *s, size_t len, unsigned ipv6_prefix, char *out);

/* bs_client_key_ip - the same from an address bs_ip_parse() already gave
 * (16-byte form, IPv4 mapped); -1 only for a bad prefix */
int bs_client_key_ip(const uint8_t ip[16], unsigned ipv6_prefix, char *out);

/* bs_client_network - the network harvest detection tracks a client by
 * (greylisting, known clients, top networks): an IPv4 client's /24
 * ("192.0.2.0/24": a sending farm retries from another address of it, as
 * postgrey assumes), an IPv6 client's key at ipv6_prefix; into out
 * (BS_CLIENT_KEY_MAX + 1 bytes). Returns the length, or -1. */
int bs_client_network(const uint8_t ip[16], unsigned ipv6_prefix, char *out);

/*
 * bs_escape - copy at most len bytes of s into out (outsz bytes, NUL
 * terminated) with every byte outside 0x21..0x7e, and '\\', written as
 * "\xHH". Stops early (cleanly, never mid-escape) when out is full.
 * Returns the length written. Used for everything from the wire that
 * reaches a log line or a reply.
 */
size_t bs_escape(const char *s, size_t len, char *out, size_t outsz);

/*
 * bs_escape_marked - bs_escape, and when s does not fit in out, or cut
 * says it was already cut before (a truncated copy), out ends with "..."
 * (after whole escapes only), so a shortened value is never mistaken for
 * the whole one. out needs at least 4 bytes for the mark. The length.
 */
size_t bs_escape_marked(const char *s, size_t len, int cut, char *out, size_t outsz);

#endif
