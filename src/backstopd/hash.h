/*
 * hash.h - the string hash of backstopd's in-memory tables (the mirror's
 * sets and keys, the known-client write filter)
 *
 * bs_hash(h, s, len) mixes len and the len bytes at s into h, eight at a
 * time, the last 1..8 in two loads (a byte at a time, FNV-1a, cost ~5
 * instructions a byte on every lookup);
 * bs_hash_end(h) finishes: every input bit reaches every output bit, so
 * any slice of the result can index a table. Not for anything an attacker
 * must not predict (no seed); the tables it indexes bound their probing or
 * tolerate collisions. Pure: no allocation, no I/O.
 */
#ifndef BACKSTOP_HASH_H
#define BACKSTOP_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BS_HASH_SEED 0x9e3779b97f4a7c15ULL
#define BS_HASH_MUL 0xff51afd7ed558ccdULL

static inline uint64_t bs_load(const char *s, size_t n)
{
    uint64_t w = 0;

    memcpy(&w, s, n); /* n is a constant where it is called: a load */
    return w;
}

static inline uint64_t bs_hash(uint64_t h, const char *s, size_t len)
{
    uint64_t w;

    h ^= len; /* the length first: the tail below may read bytes twice */
    for (; len > 8; s += 8, len -= 8) {
        h = (h ^ bs_load(s, 8)) * BS_HASH_MUL;
        h ^= h >> 29;
    }
    /* the last 1..8 bytes in at most two loads, no byte loop */
    if (len >= 4)
        w = bs_load(s, 4) | bs_load(s + len - 4, 4) << 32;
    else if (len)
        w = (uint64_t)(uint8_t)s[0] | (uint64_t)(uint8_t)s[len / 2] << 8 |
            (uint64_t)(uint8_t)s[len - 1] << 16;
    else
        return h;
    h = (h ^ w) * BS_HASH_MUL;
    return h ^ (h >> 29);
}

static inline uint64_t bs_hash_end(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return h;
}

#endif
