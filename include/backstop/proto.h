/*
 * proto.h - incremental parser for the Postfix policy delegation protocol
 *
 * A request is a sequence of "name=value\n" lines ended by an empty line
 * (SMTPD_POLICY_README). The parser is pure: no allocation, no I/O, no
 * globals. It scans a caller-owned buffer that holds the request from its
 * first byte; attributes are returned as (pointer, length) pairs into that
 * buffer, so the buffer must not move or change between calls for one
 * request. A "\r\n" line end is tolerated (the '\r' is not part of the value).
 *
 * Limits (all checked before anything grows):
 *   BS_PROTO_MAX_LINE     bytes in one line, excluding the line end
 *   BS_PROTO_MAX_ATTRS    attribute lines in one request
 *   BS_PROTO_MAX_REQUEST  bytes in one request, including line ends
 * A NUL byte anywhere, or a non-empty line without '=' or with an empty name,
 * is a syntax error.
 */
#ifndef BACKSTOP_PROTO_H
#define BACKSTOP_PROTO_H

#include <stddef.h>

#define BS_PROTO_MAX_LINE 2048
#define BS_PROTO_MAX_ATTRS 100
#define BS_PROTO_MAX_REQUEST 16384

/* Results of bs_proto_feed(). Errors are negative. */
enum bs_proto_result {
    BS_PROTO_NEED_MORE = 0,  /* request incomplete: call again with more */
    BS_PROTO_DONE = 1,       /* request complete: *consumed bytes used */
    BS_PROTO_E_LINE = -1,    /* a line exceeds BS_PROTO_MAX_LINE */
    BS_PROTO_E_ATTRS = -2,   /* more than BS_PROTO_MAX_ATTRS attributes */
    BS_PROTO_E_REQUEST = -3, /* request exceeds BS_PROTO_MAX_REQUEST */
    BS_PROTO_E_SYNTAX = -4,  /* line without '=' or with an empty name */
    BS_PROTO_E_NUL = -5,     /* NUL byte in the request */
};
#define BS_PROTO_NERR 6 /* error codes are -1 .. -(BS_PROTO_NERR - 1) */

typedef struct bs_proto_attr {
    const char *name;
    size_t name_len;
    const char *value; /* may be empty (value_len == 0), e.g. "sender=" */
    size_t value_len;
} bs_proto_attr;

/* Parser state; zero it (or bs_proto_reset()) before each request. */
typedef struct bs_proto_parser {
    size_t scanned;    /* bytes of the buffer already examined */
    size_t line_start; /* offset of the line being scanned */
    unsigned nattrs;
    bs_proto_attr attrs[BS_PROTO_MAX_ATTRS];
} bs_proto_parser;

void bs_proto_reset(bs_proto_parser *p);

/*
 * bs_proto_feed - scan buf[0..len) for one complete request
 *
 * buf always starts at the request's first byte; len grows between calls
 * (the parser resumes where it stopped; bytes already scanned are not looked
 * at again). Returns BS_PROTO_DONE with *consumed set to the request's length
 * including the terminating empty line (bytes after it belong to the next
 * request), BS_PROTO_NEED_MORE, or a negative BS_PROTO_E_* (the parser state
 * is then undefined until reset).
 */
int bs_proto_feed(bs_proto_parser *p, const char *buf, size_t len, size_t *consumed);

/* bs_proto_get - value of the first attribute named name, or NULL. */
const bs_proto_attr *bs_proto_get(const bs_proto_parser *p, const char *name);

/* bs_proto_strerror - short text for a BS_PROTO_E_* code. */
const char *bs_proto_strerror(int err);

/* bs_proto_error_name - one lowercase word for a BS_PROTO_E_* code ("line",
 * "attrs", "request", "syntax", "nul"): the label of its counters. */
const char *bs_proto_error_name(int err);

#endif
