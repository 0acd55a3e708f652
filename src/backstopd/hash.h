/*
 * hash.h - the string hash of backstopd's in-memory tables (the mirror's
 * sets and keys, the known-client write filter)
 *
 * bs_hash(h, s, len) mixes len bytes at s into h, eight at a time (a byte
 * at a time, FNV-1a, cost ~5 instructions a byte on every lookup);
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

static inline uint64_t bs_hash(uint64_t h, const char *s, size_t len)
{
    uint64_t w;
    size_t i;

    h ^= len;
    for (; len >= 8; s += 8, len -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * BS_HASH_MUL;
        h ^= h >> 29;
    }
    if (len) {
        for (w = 0, i = 0; i < len; i++)
            w |= (uint64_t)(uint8_t)s[i] << (8 * i);
        h = (h ^ w) * BS_HASH_MUL;
        h ^= h >> 29;
    }
    return h;
}

static inline uint64_t bs_hash_end(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return h;
}

#endif
