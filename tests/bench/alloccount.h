/*
 * alloccount.h - the counters that bench_alloccount.so (an LD_PRELOAD
 * malloc wrapper, alloccount.c) keeps in a shared file, read by
 * bench_loadgen --alloc-file before and after its measured phase.
 *
 * The file holds one bench_alloc_counts. Allocation calls are sorted by the
 * object their caller's code lives in, so backstopd's own allocations are
 * told apart from hiredis's (which allocates reply objects per reply) and
 * libuv's. Counters only grow; readers take differences.
 */
#ifndef BACKSTOP_BENCH_ALLOCCOUNT_H
#define BACKSTOP_BENCH_ALLOCCOUNT_H

#include <stdint.h>

#define BENCH_ALLOC_MAGIC 0x316e756f63636c61ULL /* "alccoun1" */

/* Who called malloc: the object file holding the return address. */
enum bench_alloc_who {
    BENCH_ALLOC_SELF = 0, /* the main executable (backstopd, libbackstop.a) */
    BENCH_ALLOC_HIREDIS,  /* libhiredis.so */
    BENCH_ALLOC_LIBUV,    /* libuv.so */
    BENCH_ALLOC_OTHER,    /* libc (e.g. syslog, stdio) and anything else */
    BENCH_ALLOC_NWHO
};

typedef struct bench_alloc_counts {
    uint64_t magic;                   /* BENCH_ALLOC_MAGIC once initialised */
    uint64_t calls[BENCH_ALLOC_NWHO]; /* malloc, calloc, realloc, memalign... */
    uint64_t bytes[BENCH_ALLOC_NWHO]; /* bytes asked for by those calls */
    uint64_t frees;                   /* free(non-NULL), any caller */
} bench_alloc_counts;

#endif
