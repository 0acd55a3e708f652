/*
 * cidr.h - IPv4/IPv6 network lists ("127.0.0.0/8", "::1/128", "192.0.2.7")
 *
 * Pure functions over fixed-size values: no allocation. A list is a
 * caller-owned array (the config owns it). Addresses are compared in their
 * 16-byte form; IPv4 is held as IPv4-mapped IPv6 (::ffff:a.b.c.d), so
 * "127.0.0.0/8" matches both "127.0.0.1" and "::ffff:127.0.0.1".
 */
#ifndef BACKSTOP_CIDR_H
#define BACKSTOP_CIDR_H

#include <stddef.h>
#include <stdint.h>

typedef struct bs_cidr {
    uint8_t addr[16]; /* network address, host bits zero */
    unsigned bits;    /* prefix length in the 128-bit space */
} bs_cidr;

/*
 * bs_cidr_parse - parse "ADDR" or "ADDR/LEN" (NUL-terminated). IPv4 LEN is
 * 0..32, IPv6 0..128; host bits set beyond the prefix are an error (as in
 * Postfix cidr tables). Returns 0, or -1 with *out unspecified.
 */
int bs_cidr_parse(const char *s, bs_cidr *out);

/*
 * bs_ip_parse - parse an IPv4 or IPv6 address (len bytes, need not be NUL
 * terminated) into 16-byte form. Returns 4 or 6 for the family, -1 if invalid.
 */
int bs_ip_parse(const char *s, size_t len, uint8_t out[16]);

/* bs_cidr_match - 1 if ip (16-byte form) is inside net, else 0. */
int bs_cidr_match(const bs_cidr *net, const uint8_t ip[16]);

/* bs_cidr_list_match - 1 if ip is inside any of the n nets, else 0. */
int bs_cidr_list_match(const bs_cidr *nets, size_t n, const uint8_t ip[16]);

#endif
