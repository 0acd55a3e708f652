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
    b->cap = cap ? cap - 1 : 0; /* the last byte: bs_resp_finish's NUL */
    b->overflow = cap == 0;
}

const char *bs_resp_finish(const bs_resp *b)
{
    if (!b->overflow)
        b->buf[b->len] = '\0';
    return b->buf;
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

    if (v < 100 && b->cap - b->len >= 5 && !b->overflow) { /* most headers */
        char *p = b->buf + b->len;
        *p++ = c;
        if (v >= 10)
            *p++ = (char)('0' + v / 10);
        *p++ = (char)('0' + v % 10);
        *p++ = '\r';
        *p++ = '\n';
        b->len = (size_t)(p - b->buf);
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

void bs_resp_arg3(bs_resp *b, const char *a, size_t alen, const char *m, size_t mlen, const char *s,
                  size_t len)
{
    char *p;

    put_header(b, '$', (uint64_t)alen + mlen + len);
    /* one check for the whole argument (alen + mlen + len are bounded by
     * the callers' buffers: no overflow of the sum) */
    if (b->overflow || alen + mlen + len + 2 > b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    p = b->buf + b->len;
    if (alen) { /* most arguments are one part: no empty memcpy calls */
        memcpy(p, a, alen);
        p += alen;
    }
    if (mlen) {
        memcpy(p, m, mlen);
        p += mlen;
    }
    memcpy(p, s, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    b->len = (size_t)(p - b->buf);
}

void bs_resp_arg2(bs_resp *b, const char *a, size_t alen, const char *s, size_t len)
{
    bs_resp_arg3(b, a, alen, "", 0, s, len);
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
    bs_resp_u64_after(b, "", v);
}

void bs_resp_u64_after(bs_resp *b, const char *pre, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    bs_resp_arg2(b, pre, strlen(pre), tmp + i, sizeof(tmp) - i);
}
