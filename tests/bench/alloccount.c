/*
 * alloccount.c - bench_alloccount.so: count a process's heap allocations,
 * by caller, into a file others can read while it runs
 *
 * PROVIDES
 *   LD_PRELOAD=bench_alloccount.so BENCH_ALLOC_FILE=/tmp/x backstopd ...
 *   malloc, calloc, realloc, free, posix_memalign, aligned_alloc and
 *   memalign wrappers that call glibc's own (__libc_*) and count each call
 *   in a bench_alloc_counts (alloccount.h) mapped MAP_SHARED from
 *   BENCH_ALLOC_FILE (created, sized, zeroed). Without BENCH_ALLOC_FILE the
 *   counts are kept in memory only. realloc(NULL, n) counts as an
 *   allocation; realloc(p, n) as one too (it may move); free(NULL) does not
 *   count.
 *
 * WHO
 *   Each call is charged to the object file that holds its return address:
 *   the main executable (backstopd with libbackstop.a linked in), libhiredis,
 *   libuv, or other (libc itself, e.g. for syslog or stdio). The address
 *   ranges come from /proc/self/maps, read once in the constructor, before
 *   main() and after every needed library is mapped.
 *
 * NEVER
 *   Allocates, or uses stdio (both would recurse); locks (counters are
 *   relaxed atomics).
 *
 * LIMITS
 *   glibc only (__libc_malloc and friends). Calls made before the
 *   constructor ran are counted in memory, not in the file. valloc and
 *   pvalloc are not wrapped (nothing here uses them). Not for sanitizer
 *   builds: ASan has its own allocator.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloccount.h"

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

static bench_alloc_counts local_counts;
static bench_alloc_counts *counts = &local_counts;

/* One object's text, [lo, hi). */
static struct {
    uintptr_t lo, hi;
} ranges[BENCH_ALLOC_NWHO];

/* who - the object the address belongs to */
static int who(const void *ret)
{
    uintptr_t a = (uintptr_t)ret;
    int i;

    for (i = 0; i < BENCH_ALLOC_OTHER; i++)
        if (a >= ranges[i].lo && a < ranges[i].hi)
            return i;
    return BENCH_ALLOC_OTHER;
}

static void count(const void *ret, size_t n)
{
    int w = who(ret);

    __atomic_fetch_add(&counts->calls[w], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&counts->bytes[w], n, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    count(__builtin_return_address(0), n);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    count(__builtin_return_address(0), n * size);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    count(__builtin_return_address(0), n);
    return __libc_realloc(p, n);
}

void free(void *p)
{
    if (p)
        __atomic_fetch_add(&counts->frees, 1, __ATOMIC_RELAXED);
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    count(__builtin_return_address(0), n);
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    count(__builtin_return_address(0), n);
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p;

    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    count(__builtin_return_address(0), n);
    if (!(p = __libc_memalign(align, n)))
        return ENOMEM;
    *out = p;
    return 0;
}

/* hex - parse hex digits at *p, advancing it */
static uintptr_t hex(const char **p)
{
    uintptr_t v = 0;

    for (;; (*p)++) {
        char ch = **p;
        if (ch >= '0' && ch <= '9')
            v = v * 16 + (uintptr_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v = v * 16 + (uintptr_t)(ch - 'a' + 10);
        else
            return v;
    }
}

/* note_mapping - one line of /proc/self/maps: widen the range it belongs to */
static void note_mapping(const char *line, const char *exe)
{
    const char *p = line, *path;
    uintptr_t lo, hi;
    int w;

    lo = hex(&p);
    if (*p++ != '-')
        return;
    hi = hex(&p);
    if (!(path = strchr(p, '/')))
        return;
    if (strcmp(path, exe) == 0)
        w = BENCH_ALLOC_SELF;
    else if (strstr(path, "/libhiredis"))
        w = BENCH_ALLOC_HIREDIS;
    else if (strstr(path, "/libuv"))
        w = BENCH_ALLOC_LIBUV;
    else
        return;
    if (!ranges[w].lo || lo < ranges[w].lo)
        ranges[w].lo = lo;
    if (hi > ranges[w].hi)
        ranges[w].hi = hi;
}

/* read_maps - the address ranges of the objects we tell apart */
static void read_maps(void)
{
    static char buf[1 << 16];
    char exe[4096], line[4096];
    ssize_t n;
    size_t ll = 0;
    int fd;

    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return;
    exe[n] = 0;
    if ((fd = open("/proc/self/maps", O_RDONLY)) < 0)
        return;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (ll < sizeof(line) - 1)
                    line[ll++] = buf[i];
                continue;
            }
            line[ll] = 0;
            note_mapping(line, exe);
            ll = 0;
        }
    }
    close(fd);
}

__attribute__((constructor)) static void alloccount_init(void)
{
    const char *path = getenv("BENCH_ALLOC_FILE");
    void *p;
    int fd;

    read_maps();
    if (!path || !*path)
        return;
    if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) < 0)
        return;
    if (ftruncate(fd, sizeof(bench_alloc_counts)) == 0) {
        p = mmap(NULL, sizeof(bench_alloc_counts), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            memcpy(p, &local_counts, sizeof(local_counts));
            ((bench_alloc_counts *)p)->magic = BENCH_ALLOC_MAGIC;
            counts = p;
        }
    }
    close(fd);
}
