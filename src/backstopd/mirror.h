/*
 * mirror.h - the local mirror of what the admin manages in Redis (domains,
 * rcpt:<domain>, ndr, mode, exempt, block:<client>), kept exact by
 * invalidations
 *
 * Pure: no hiredis, no libuv, no clock of its own. The Redis side
 * (store_redis.c) asks it what to read (bs_mirror_next_read), runs the
 * read, and feeds the reply back as plain values; it passes every
 * invalidation message on; it says when the link is lost and when tracking
 * is on again. Lookups are answered from the mirror when every key they
 * need is exact (or, while the link is lost, known and younger than
 * max_stale); otherwise the caller asks Redis as without a mirror.
 *
 * The race of client-side caching: an invalidation that arrives between a
 * read's send and its reply wins. Every read carries the sequence number
 * it was issued with; a key remembers the number of its last invalidation;
 * a reply older than that is dropped and the key read again.
 *
 * Key names given to and by the mirror are without [redis] prefix.
 */
#ifndef BACKSTOP_MIRROR_H
#define BACKSTOP_MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include "backstop/addr.h"
#include "backstop/decide.h"

#define BS_MIRROR_KEY_MAX (6 + BS_DOMAIN_MAX + 1) /* "block:" / "rcpt:" + argument */
#define BS_MIRROR_SCAN_COUNT 1000                 /* SCAN/SSCAN/HSCAN COUNT */
#define BS_MIRROR_ITEM_MAX 65535                  /* longer members: key left to Redis */

/* What one read is: the command the Redis side sends for it. */
enum bs_mirror_read_kind {
    BS_MIRROR_SSCAN = 1, /* SSCAN <key> <cursor> COUNT 1000 */
    BS_MIRROR_HSCAN,     /* HSCAN <key> <cursor> COUNT 1000 */
    BS_MIRROR_BLOCK,     /* GET <key> + PTTL <key> */
    BS_MIRROR_SCAN,      /* SCAN <cursor> MATCH <prefix>block:* COUNT 1000 */
};

/* One read, filled by bs_mirror_next_read; give it back unchanged with the
 * reply. Plain value: the caller may copy it. */
typedef struct bs_mirror_read {
    int kind; /* enum bs_mirror_read_kind */
    char key[BS_MIRROR_KEY_MAX + 1];
    unsigned long long cursor;
    uint64_t seq;
} bs_mirror_read;

/* bs_mirror_answer results */
enum bs_mirror_answer {
    BS_MIRROR_ASK_REDIS = 0, /* not loaded, not exact, or stale too long */
    BS_MIRROR_EXACT = 1,     /* answered, exact */
    BS_MIRROR_STALE = 2,     /* answered from data last exact stale_ms ago */
};

typedef struct bs_mirror bs_mirror;

/* Counters, read by the caller for stats and metrics. */
typedef struct bs_mirror_info {
    uint64_t keys;          /* keys held */
    uint64_t bytes;         /* heap held by the data */
    uint64_t invalidations; /* invalidated keys (a flush counts one) */
    uint64_t raced;         /* replies dropped: invalidated in flight */
    int connected;          /* tracking on */
    uint64_t stale_since;   /* when the link was lost (0: not stale) */
} bs_mirror_info;

/* bs_mirror_new - an empty, disconnected mirror; NULL on out of memory */
bs_mirror *bs_mirror_new(void);
/* bs_mirror_free - returns NULL */
bs_mirror *bs_mirror_free(bs_mirror *m);

/* bs_mirror_connected - tracking is on (redirected to a subscribed
 * connection): everything is re-read; keys are exact again one by one as
 * their reads complete. Reads issued before are void. */
void bs_mirror_connected(bs_mirror *m);
/* bs_mirror_lost - the data or invalidation connection went at now (ms):
 * the data is kept, stale since now. No effect when already lost. */
void bs_mirror_lost(bs_mirror *m, uint64_t now);

/* bs_mirror_next_read - the next read to send into *rd: 1, or 0 when none
 * is due (or the mirror is not connected) */
int bs_mirror_next_read(bs_mirror *m, bs_mirror_read *rd);

/* bs_mirror_scanned - a SCAN/SSCAN/HSCAN reply: the next cursor and n
 * items (members; field, value pairs for HSCAN; key names without prefix
 * for SCAN). */
void bs_mirror_scanned(bs_mirror *m, const bs_mirror_read *rd, unsigned long long next,
                       const char *const *items, const size_t *lens, size_t n);
/* bs_mirror_block - a block read: exists, its value, its PTTL (ms, < 0:
 * none), at now (ms) */
void bs_mirror_block(bs_mirror *m, const bs_mirror_read *rd, int exists, const char *value,
                     size_t len, long long pttl_ms, uint64_t now);
/* bs_mirror_failed - the read got an error reply (wrong type...): its key
 * is left to Redis until it is invalidated. wrong = 0: no reply at all
 * (the connection went); nothing changes, bs_mirror_lost follows. */
void bs_mirror_failed(bs_mirror *m, const bs_mirror_read *rd, int wrong);

/* bs_mirror_invalidate - an invalidation for key (len bytes, without
 * prefix); key NULL: every key (FLUSHALL, FLUSHDB) */
void bs_mirror_invalidate(bs_mirror *m, const char *key, size_t len);

/* bs_mirror_answer - answer q into *f (its fields zeroed, ndr_index -1)
 * at now (ms) when the mirror can: see enum bs_mirror_answer. While the
 * link is lost, answers come from the last known data for max_stale ms. */
int bs_mirror_answer(bs_mirror *m, const bs_lookup *q, uint64_t now, uint64_t max_stale,
                     bs_facts *f);

/* bs_mirror_changes - a number that grows with every invalidation and link
 * change: an answer given when it was N may be out of date once it is
 * not N any more */
uint64_t bs_mirror_changes(const bs_mirror *m);

/* bs_mirror_linked - 1 when tracking is on; else 0, and *stale_since (if
 * not NULL) is when the link was lost (0: never up) */
int bs_mirror_linked(const bs_mirror *m, uint64_t *stale_since);

/* bs_mirror_get_info - counters and sizes (walks every key: for metrics) */
void bs_mirror_get_info(const bs_mirror *m, bs_mirror_info *info);

#endif
