/*
 * server_int.h - what server.c and conn.c share (bs__ names; not an API)
 */
#ifndef BACKSTOP_SERVER_INT_H
#define BACKSTOP_SERVER_INT_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "backstop/decide.h"
#include "backstop/proto.h"
#include "server.h"

#define BS_READ_BUF 65536           /* shared read buffer, one per server */
#define BS_PARTIAL_TIMEOUT_MS 10000 /* a request must be complete within */
#define BS_WRITE_TIMEOUT_MS 10000   /* a reply must be taken within */
#define BS_SHUTDOWN_GRACE_MS 2000   /* beyond [redis] timeout, at shutdown */

enum bs_conn_state {
    BS_CONN_READING = 1, /* waiting for (the rest of) a request */
    BS_CONN_DECIDING,    /* waiting for the store, under the answer deadline */
    BS_CONN_WRITING,     /* reply queued, waiting for the socket */
    BS_CONN_CLOSING,     /* handles closing; freed in their close callbacks */
};

/* A request that did not arrive in one read: kept, with its parser, until
 * complete. Allocated only then, and recycled. */
typedef struct bs_partial {
    struct bs_partial *next_free;
    bs_proto_parser parser;
    size_t len;
    uint64_t deadline_set;
    char buf[BS_PROTO_MAX_REQUEST + 1]; /* +1: a byte past the limit is seen */
} bs_partial;

typedef struct bs_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t timer; /* idle, partial, answer or write deadline by state */
    uv_write_t wreq;
    bs_server *srv;
    uint64_t cid;     /* connection number, for logs */
    uint32_t slot;    /* index in the server's table */
    uint32_t gen;     /* request generation: ids are (slot << 32 | gen) */
    int state;        /* enum bs_conn_state */
    int open_handles; /* closed when 0: then freed */
    int in_decide;    /* inside process(): after_reply must not recurse */
    int reading;      /* uv_read_start() done */
    bs_partial *part; /* unfinished or pipelined input, or NULL */
    uint64_t started; /* uv_hrtime() (ns) when the request was complete */
    char peer[64];
    uv_buf_t wbuf;
    char reply[BS_REPLY_MAX];
    bs_decision d;
} bs_conn;

typedef struct bs_listener {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    bs_server *srv;
    bs_endpoint ep;
    int waiting; /* a connection is pending, not accepted (at the limit) */
    int closing;
    int created; /* unix: we bound the file at ep.path; it is (dev, ino) */
    dev_t dev;
    ino_t ino;
    struct bs_listener *next;
} bs_listener;

struct bs_server {
    uv_loop_t *loop;
    const bs_config *cfg;
    bs_store *store;
    bs_listener *listeners;
    bs_conn **slots; /* the connection table */
    uint32_t *gens;  /* generation kept per slot across reuse */
    uint32_t nslots;
    uint32_t *free_slots; /* stack of free slot indexes */
    uint32_t nfree;
    uint32_t nconns;
    uint64_t next_cid;
    bs_partial *free_parts;
    int shutting_down;
    int open_handles; /* listeners + shutdown timer still open */
    uv_timer_t shutdown_timer;
    void (*done)(void *);
    void *done_arg;
    bs_proto_parser parser; /* for requests that arrive in one read */
    char rbuf[BS_READ_BUF];
};

/* conn.c */
void bs__conn_accept(bs_listener *l);
void bs__conn_close(bs_conn *c, const char *why);
void bs__conn_shutdown(bs_conn *c);

/* server.c */
int bs__server_slot_get(bs_server *s, bs_conn *c);
void bs__server_slot_put(bs_server *s, bs_conn *c);
void bs__server_conn_gone(bs_server *s);
bs_partial *bs__server_part_get(bs_server *s);
void bs__server_part_put(bs_server *s, bs_partial *p);

#endif
