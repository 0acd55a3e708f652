/*
 * redis_reply.h - hiredis reply objects from a free list, so that reading
 * Redis replies allocates nothing in steady state
 *
 * hiredis 0.14 builds every reply (and each array element) with calloc and
 * frees it after the callback; with several replies per policy request that
 * was most of the process's malloc/free traffic. These functions plug into a
 * reader (redisReader.fn) and build the same redisReply objects in recycled
 * nodes with room for short strings and small arrays inline; longer ones
 * fall back to malloc. Single-threaded (one loop): the free list is global.
 */
#ifndef BACKSTOP_REDIS_REPLY_H
#define BACKSTOP_REDIS_REPLY_H

#include <hiredis/read.h>

#define BS_REPLY_INLINE_STR 64   /* string bytes kept in the node */
#define BS_REPLY_INLINE_ELEMS 16 /* array elements kept in the node */
#define BS_REPLY_POOL_MAX 65536  /* free nodes kept for reuse */

/* bs_redis_reply_fns - the functions to put in redisReader.fn */
redisReplyObjectFunctions *bs_redis_reply_fns(void);

/* bs_redis_reply_pool_free - release the free list (at exit, for leak checks) */
void bs_redis_reply_pool_free(void);

#endif
