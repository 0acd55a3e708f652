/*
 * resp.c - RESP command builder (see resp.h)
 *
 * Provides bs_resp_*: appends to a fixed buffer; never allocates, never
 * writes past cap; overflow is sticky and reported in b->overflow.
 */
#include <string.h>

#include "resp.h"

void bs_resp_init(bs_resp *b, char *buf, size_t cap)
{
    b->buf = buf;
    b->len = 0;
    b->cap = cap;
    b->overflow = 0;
}

/* put - append raw bytes, or set overflow */
static void put(bs_resp *b, const void *p, size_t n)
{
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

/* put_header - "<c><decimal>\r\n" */
static void put_header(bs_resp *b, char c, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    if (v < 10 && b->cap - b->len >= 4 && !b->overflow) { /* most headers */
        b->buf[b->len++] = c;
        b->buf[b->len++] = (char)('0' + v);
        b->buf[b->len++] = '\r';
        b->buf[b->len++] = '\n';
        return;
    }

    tmp[--i] = '\n';
    tmp[--i] = '\r';
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    tmp[--i] = c;
    put(b, tmp + i, sizeof(tmp) - i);
}

void bs_resp_cmd(bs_resp *b, unsigned argc)
{
    put_header(b, '*', argc);
}

void bs_resp_arg2(bs_resp *b, const char *a, size_t alen, const char *s, size_t len)
{
    put_header(b, '$', (uint64_t)alen + len);
    put(b, a, alen);
    put(b, s, len);
    put(b, "\r\n", 2);
}

void bs_resp_arg(bs_resp *b, const char *s, size_t len)
{
    bs_resp_arg2(b, "", 0, s, len);
}

void bs_resp_str(bs_resp *b, const char *s)
{
    bs_resp_arg2(b, "", 0, s, strlen(s));
}

void bs_resp_u64(bs_resp *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    bs_resp_arg(b, tmp + i, sizeof(tmp) - i);
}
