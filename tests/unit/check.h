/*
 * check.h - the unit tests' tiny harness
 *
 * CHECK(cond) records a pass or a failure (with file:line and the
 * expression); CHECK_EQ_INT / CHECK_EQ_STR print both sides. Each test
 * binary ends with `return check_summary();`, which prints the plain
 * "N passed, N failed" line and returns non-zero on any failure.
 */
#ifndef BACKSTOP_TEST_CHECK_H
#define BACKSTOP_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);                     \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ == check_b_) {                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: FAILED: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a,    \
                    #b, check_a_, check_b_);                                                       \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        if (check_a_ && check_b_ && strcmp(check_a_, check_b_) == 0) {                             \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: FAILED: %s == %s (\"%s\" != \"%s\")\n", __FILE__, __LINE__,    \
                    #a, #b, check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");       \
        }                                                                                          \
    } while (0)

#define LEN_STR ((size_t)-1) /* table shorthand: use strlen() */

/* dup_exact - len bytes on the heap, no terminator: over-reads trap
 * (AddressSanitizer), so a function that reads past len is caught. */
static inline char *dup_exact(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);

    if (p == NULL)
        abort();
    memcpy(p, s, len);
    return p;
}

static int check_summary(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
