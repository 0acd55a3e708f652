/*
 * resp.h - build Redis commands in RESP wire form without printf
 *
 * hiredis spends ~10k instructions formatting one command with its printf
 * style API; these helpers append "*N\r\n$len\r\narg\r\n..." to a
 * caller-owned fixed buffer, to be handed to redisAsyncFormattedCommand().
 * No allocation. Every argument is length-counted, so any byte is safe
 * (binary-safe, nothing is interpreted). Overflow is sticky: once an append
 * does not fit, b->overflow is set, later appends do nothing, and the caller
 * must not send the buffer.
 */
#ifndef BACKSTOP_RESP_H
#define BACKSTOP_RESP_H

#include <stddef.h>
#include <stdint.h>

typedef struct bs_resp {
    char *buf;
    size_t len;
    size_t cap;
    int overflow;
} bs_resp;

void bs_resp_init(bs_resp *b, char *buf, size_t cap);

/* bs_resp_finish - NUL-terminate the command (its last byte of buf is
 * kept for it) and return it. hiredis's redisAsyncFormattedCommand reads
 * the command it is given as a C string: it looks for a SUBSCRIBE's
 * channels with strchr, past the command's end without a NUL (and asserts,
 * aborting, when the bytes there hold a '$' and no '\r'). Every command is
 * finished before it is handed over. */
const char *bs_resp_finish(const bs_resp *b);
/* start a command of argc arguments (the caller then appends exactly argc) */
void bs_resp_cmd(bs_resp *b, unsigned argc);
void bs_resp_arg(bs_resp *b, const char *s, size_t len);
/* one argument made of two parts, e.g. key prefix + key name */
void bs_resp_arg2(bs_resp *b, const char *a, size_t alen, const char *s, size_t len);
/* ... and of three, e.g. key prefix + key name + its domain */
void bs_resp_arg3(bs_resp *b, const char *a, size_t alen, const char *m, size_t mlen, const char *s,
                  size_t len);
/* a C string argument */
void bs_resp_str(bs_resp *b, const char *s);
/* an unsigned decimal argument */
void bs_resp_u64(bs_resp *b, uint64_t v);
/* ... after a prefix, in one argument (ZCOUNT's exclusive "(123") */
void bs_resp_u64_after(bs_resp *b, const char *pre, uint64_t v);

#endif
