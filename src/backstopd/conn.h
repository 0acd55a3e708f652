/*
 * conn.h - one policy client connection, and the one interface between the
 * connections and their owner (server.c)
 *
 * The dependency points down: server.c owns the listeners, the connection
 * table and the shutdown, includes this header and calls bs_conn_accept,
 * bs_conn_close and bs_conn_shutdown. conn.c never includes server.h: it
 * reaches its owner only through the bs_conn_env the owner embeds and the
 * four bs_conn_hooks the owner implements (slot table and "a connection is
 * gone"). Not an API outside src/backstopd.
 */
#ifndef BACKSTOP_CONN_H
#define BACKSTOP_CONN_H

#include <stdint.h>
#include <uv.h>

#include "backstop/config.h"
#include "backstop/decide.h"
#include "backstop/proto.h"
#include "store.h"

#define BS_READ_BUF 65536           /* shared read buffer, one per owner */
#define BS_PARTIAL_TIMEOUT_MS 10000 /* a request must be complete within */
#define BS_WRITE_TIMEOUT_MS 10000   /* a reply must be taken within */

typedef struct bs_conn bs_conn;
typedef struct bs_conn_env bs_conn_env;

/* An inet or unix stream handle (a connection's, a listener's). */
typedef union bs_stream_handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} bs_stream_handle;

/* What a connection asks of its owner. The owner keeps the table that
 * routes store answers by id (slot << 32 | generation). */
typedef struct bs_conn_hooks {
    /* slot_get - enter c in the table: sets c->slot and c->gen; 0, or -1
     * on out of memory */
    int (*slot_get)(bs_conn_env *env, bs_conn *c);
    /* slot_put - take c out of the table; its slot's next owner gets a new
     * generation, so a late answer for c finds nothing */
    void (*slot_put)(bs_conn_env *env, bs_conn *c);
    /* slot - the connection in slot, or NULL (also when out of range) */
    bs_conn *(*slot)(bs_conn_env *env, uint32_t slot);
    /* gone - c's memory is freed (after its last uv_close callback) */
    void (*gone)(bs_conn_env *env);
} bs_conn_hooks;

/* What the owner lends every connection: embedded in the owner, set before
 * the first accept. cfg may change in place (reload). */
struct bs_conn_env {
    uv_loop_t *loop;
    const bs_config *cfg;
    bs_store *store;
    const bs_conn_hooks *hooks;
    int draining; /* shutdown: close each connection after its reply */
    uint64_t next_cid;
    struct bs_partial *free_parts; /* conn.c's recycled partial buffers */
    bs_proto_parser parser;        /* for requests that arrive in one read */
    char rbuf[BS_READ_BUF];
};

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

struct bs_conn {
    bs_stream_handle h;
    uv_timer_t timer;   /* idle, partial, answer or write deadline by state */
    uint64_t deadline;  /* the state's deadline, uv_now() time (ms) */
    uint64_t timer_due; /* when the armed timer fires: never after deadline */
    uv_write_t wreq;
    bs_conn_env *env; /* the owner's, shared by every connection */
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
};

/* bs_conn_accept - accept one pending connection of listener (an inet or
 * unix endpoint ep); the caller checked the connection limit. Failures are
 * logged and counted; nothing is returned. */
void bs_conn_accept(bs_conn_env *env, uv_stream_t *listener, const bs_endpoint *ep);

/* bs_conn_close - the one close path; why = NULL for an ordinary close.
 * The memory is freed later (hooks->gone tells when). */
void bs_conn_close(bs_conn *c, const char *why);

/* bs_conn_shutdown - at shutdown (env->draining set): close now unless a
 * request is being answered (those close after their reply) */
void bs_conn_shutdown(bs_conn *c);

/* bs_conn_env_free - free the recycled partial buffers (the owner's last
 * step, once every connection is gone) */
void bs_conn_env_free(bs_conn_env *env);

/* bs_conn_peer_allowed - write the TCP peer's address into peer (peersz
 * bytes) and say whether [server] allow admits it: 1 yes, 0 no, -1 the
 * peer is gone (reset before its address was read: nobody to refuse).
 * Used for policy and metrics connections. */
int bs_conn_peer_allowed(const uv_tcp_t *tcp, const bs_config *cfg, char *peer, size_t peersz);

#endif
