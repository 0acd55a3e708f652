/* test_resp.c - RESP builder: exact wire bytes, binary safety, overflow */
#include <stdio.h>
#include <string.h>

#include "resp.h"
#include "check.h"

static void test_basic(void)
{
    char buf[128];
    bs_resp b;

    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 3);
    bs_resp_str(&b, "SISMEMBER");
    bs_resp_arg2(&b, "bs:", 3, "domains", 7);
    bs_resp_u64(&b, 0);
    CHECK(!b.overflow);
    CHECK_EQ_INT(b.len, strlen("*3\r\n$9\r\nSISMEMBER\r\n$10\r\nbs:domains\r\n$1\r\n0\r\n"));
    CHECK(memcmp(buf, "*3\r\n$9\r\nSISMEMBER\r\n$10\r\nbs:domains\r\n$1\r\n0\r\n", b.len) == 0);
}

static void test_binary_and_numbers(void)
{
    char buf[128];
    bs_resp b;

    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_arg(&b, "a\r\n\0b", 5);
    bs_resp_u64(&b, 18446744073709551615ULL);
    CHECK(!b.overflow);
    CHECK(memcmp(buf, "*2\r\n$5\r\na\r\n\0b\r\n$20\r\n18446744073709551615\r\n", b.len) == 0);
    /* ZCOUNT's exclusive bound: one argument "(" + digits */
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_u64_after(&b, "(", 1733200000123ULL);
    bs_resp_u64_after(&b, "(", 0);
    CHECK(!b.overflow);
    CHECK_EQ_INT(b.len, strlen("*2\r\n$14\r\n(1733200000123\r\n$2\r\n(0\r\n"));
    CHECK(memcmp(buf, "*2\r\n$14\r\n(1733200000123\r\n$2\r\n(0\r\n", b.len) == 0);
}

static void test_overflow(void)
{
    char buf[16];
    bs_resp b;
    size_t before;

    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 1);
    before = b.len;
    bs_resp_str(&b, "a-very-long-argument");
    CHECK(b.overflow);
    CHECK(b.len <= sizeof(buf));
    CHECK(b.len >= before);
    bs_resp_str(&b, "x");
    CHECK(b.overflow);
    /* exact fit (the command and bs_resp_finish's NUL) is not an overflow */
    bs_resp_init(&b, buf, 12);
    bs_resp_cmd(&b, 1);   /* 4 bytes */
    bs_resp_str(&b, "x"); /* "$1\r\nx\r\n" = 7 bytes */
    CHECK(!b.overflow);
    CHECK_EQ_INT(b.len, 11);
    bs_resp_init(&b, buf, 11); /* no room for the NUL */
    bs_resp_cmd(&b, 1);
    bs_resp_str(&b, "x");
    CHECK(b.overflow);
    bs_resp_init(&b, buf, 0);
    CHECK(b.overflow);
}

/* A finished command is a C string: hiredis scans a SUBSCRIBE's arguments
 * with strchr, and a '$' left in the buffer past the command (a longer
 * command built there before) made it assert and abort backstopd. */
static void test_finish(void)
{
    char buf[64];
    bs_resp b;

    memset(buf, '$', sizeof(buf));
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_str(&b, "SUBSCRIBE");
    bs_resp_str(&b, "__redis__:invalidate");
    CHECK(!b.overflow);
    CHECK_EQ_INT(strlen(bs_resp_finish(&b)), b.len);
    CHECK(strchr(buf, '$') != NULL && strrchr(buf, '$') < buf + b.len);
}

/* bs_resp_arg3, and the lengths of one, two and three digits (the header's
 * fast path below 100), each at an exact fit and one byte short */
static void test_parts_and_lengths(void)
{
    static const size_t lens[] = {0, 9, 10, 99, 100, 1000};
    char buf[1200], want[1200], arg[1000];
    size_t i, n, cap;
    bs_resp b;

    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_arg3(&b, "bs:", 3, "rcpt:", 5, "example.com", 11);
    bs_resp_arg3(&b, "", 0, "", 0, "", 0);
    CHECK(!b.overflow);
    CHECK_EQ_INT(b.len, strlen("*2\r\n$19\r\nbs:rcpt:example.com\r\n$0\r\n\r\n"));
    CHECK(memcmp(buf, "*2\r\n$19\r\nbs:rcpt:example.com\r\n$0\r\n\r\n", b.len) == 0);
    memset(arg, 'a', sizeof(arg));
    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        n = (size_t)snprintf(want, sizeof(want), "$%zu\r\n%.*s\r\n", lens[i], (int)lens[i], arg);
        for (cap = n; cap <= n + 1; cap++) { /* n + 1: the command and its NUL */
            bs_resp_init(&b, buf, cap);
            bs_resp_arg3(&b, arg, lens[i] / 3, arg, lens[i] / 3, arg, lens[i] - 2 * (lens[i] / 3));
            CHECK_EQ_INT(b.overflow, cap <= n);
            CHECK(b.len < cap);
            if (!b.overflow)
                CHECK(b.len == n && memcmp(buf, want, n) == 0);
        }
    }
}

int main(void)
{
    test_basic();
    test_binary_and_numbers();
    test_overflow();
    test_finish();
    test_parts_and_lengths();
    return check_summary();
}
