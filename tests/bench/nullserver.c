/*
 * nullserver.c - bench_nullserver: the policy protocol's ceiling
 *
 * PROVIDES
 *   bench_nullserver -l inet:HOST:PORT | unix:PATH
 *   A policy server that answers every complete request with
 *   "action=DUNNO\n\n" and does nothing else: no Redis, no policy, no log.
 *   Requests are parsed with backstop's own parser (bs_proto_feed), and the
 *   I/O has the shape a good server's has: one read and one write per
 *   request (uv_try_write; uv_write only for what the socket did not take).
 *   Port 0 binds a free port. The line "bench_nullserver: listening on
 *   inet:HOST:PORT" (or unix:PATH) is printed on stdout once it listens.
 *
 * SEMANTICS
 *   A malformed request (any bs_proto_feed error) closes the connection
 *   without an answer, as backstopd does. Pipelined requests are answered in
 *   order. SIGTERM or SIGINT closes the listener and every connection; the
 *   process exits 0 when the loop closed cleanly (uv_loop_close() == 0),
 *   else 1. Exit 2: usage or bind errors.
 *
 * NEVER
 *   Allocates per request (one block per connection, at accept), or looks
 *   at what a request says.
 *
 * LIMITS
 *   Each connection holds a BS_PROTO_MAX_REQUEST buffer and a parser
 *   (~20 KiB): this server measures speed, not memory.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "backstop/proto.h"

static const char dunno[] = "action=DUNNO\n\n";

/* One client connection; freed in its close callback. */
typedef struct ns_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_write_t wreq;
    uv_buf_t wbuf;
    struct ns_conn *prev, *next; /* every open connection, for shutdown */
    int writing;                 /* a uv_write is pending: reading paused */
    int closing;
    size_t len; /* bytes in buf */
    bs_proto_parser parser;
    char buf[BS_PROTO_MAX_REQUEST + 1];
} ns_conn;

static union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} listener;
static int is_unix;
static char unix_path[108];
static ns_conn *conns;
static uv_signal_t sig_term, sig_int;

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void on_conn_closed(uv_handle_t *h)
{
    free(h->data);
}

/* conn_close - the one close path */
static void conn_close(ns_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close(&c->h.handle, on_conn_closed);
}

static void process(ns_conn *c);

static void on_write(uv_write_t *w, int status)
{
    ns_conn *c = w->data;

    c->writing = 0;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    uv_read_start(&c->h.stream, on_alloc, on_read);
    process(c); /* requests that came pipelined behind */
}

/* answer - DUNNO; 0, or -1 when a uv_write is now pending (or c closed) */
static int answer(ns_conn *c)
{
    int w;

    c->wbuf = uv_buf_init((char *)dunno, sizeof(dunno) - 1);
    w = uv_try_write(&c->h.stream, &c->wbuf, 1);
    if (w == (int)c->wbuf.len)
        return 0;
    if (w < 0 && w != UV_EAGAIN) {
        conn_close(c);
        return -1;
    }
    if (w > 0) {
        c->wbuf.base += w;
        c->wbuf.len -= (size_t)w;
    }
    c->wreq.data = c;
    if (uv_write(&c->wreq, &c->h.stream, &c->wbuf, 1, on_write) < 0) {
        conn_close(c);
        return -1;
    }
    c->writing = 1;
    uv_read_stop(&c->h.stream);
    return -1;
}

/* process - answer every complete request in buf, keep the rest */
static void process(ns_conn *c)
{
    while (!c->closing && !c->writing && c->len) {
        size_t used = 0;
        int rc = bs_proto_feed(&c->parser, c->buf, c->len, &used);

        if (rc == BS_PROTO_NEED_MORE)
            return;
        if (rc < 0) {
            conn_close(c);
            return;
        }
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        bs_proto_reset(&c->parser);
        if (answer(c) < 0)
            return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ns_conn *c = h->data;

    buf->base = c->buf + c->len;
    buf->len = sizeof(c->buf) - c->len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ns_conn *c = s->data;

    if (nread == 0)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    process(c);
}

static void on_connection(uv_stream_t *l, int status)
{
    ns_conn *c;
    int rc;

    if (status < 0 || !(c = calloc(1, sizeof(*c))))
        return;
    if (is_unix)
        rc = uv_pipe_init(l->loop, &c->h.pipe, 0);
    else
        rc = uv_tcp_init(l->loop, &c->h.tcp);
    if (rc < 0) {
        free(c);
        return;
    }
    c->h.handle.data = c;
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    bs_proto_reset(&c->parser);
    if (uv_accept(l, &c->h.stream) < 0) {
        conn_close(c);
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&c->h.tcp, 1);
    uv_read_start(&c->h.stream, on_alloc, on_read);
}

static void on_signal(uv_signal_t *s, int signum)
{
    uv_close(&listener.handle, NULL);
    if (is_unix)
        unlink(unix_path);
    while (conns)
        conn_close(conns);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

/* listen_on - bind and listen; prints where; 0 or -1 */
static int listen_on(uv_loop_t *loop, const char *ep)
{
    char host[64];
    const char *colon;
    struct sockaddr_storage ss;
    int len = sizeof(ss), rc;

    if (!strncmp(ep, "unix:", 5)) {
        snprintf(unix_path, sizeof(unix_path), "%s", ep + 5);
        is_unix = 1;
        unlink(unix_path);
        uv_pipe_init(loop, &listener.pipe, 0);
        if ((rc = uv_pipe_bind(&listener.pipe, unix_path)) == 0 &&
            (rc = uv_listen(&listener.stream, 1024, on_connection)) == 0) {
            printf("bench_nullserver: listening on unix:%s\n", unix_path);
            return 0;
        }
    } else {
        if (strncmp(ep, "inet:", 5) != 0 || !(colon = strrchr(ep + 5, ':')) ||
            (size_t)(colon - ep - 5) >= sizeof(host))
            return -1;
        memcpy(host, ep + 5, (size_t)(colon - ep - 5));
        host[colon - ep - 5] = 0;
        if (uv_ip4_addr(host, atoi(colon + 1), (struct sockaddr_in *)&ss) != 0)
            return -1;
        uv_tcp_init(loop, &listener.tcp);
        if ((rc = uv_tcp_bind(&listener.tcp, (struct sockaddr *)&ss, 0)) == 0 &&
            (rc = uv_listen(&listener.stream, 1024, on_connection)) == 0 &&
            (rc = uv_tcp_getsockname(&listener.tcp, (struct sockaddr *)&ss, &len)) == 0) {
            printf("bench_nullserver: listening on inet:%s:%d\n", host,
                   ntohs(((struct sockaddr_in *)&ss)->sin_port));
            return 0;
        }
    }
    fprintf(stderr, "bench_nullserver: %s: %s\n", ep, uv_strerror(rc));
    return -1;
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();

    if (argc != 3 || strcmp(argv[1], "-l") != 0) {
        fprintf(stderr, "usage: bench_nullserver -l inet:HOST:PORT|unix:PATH\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (listen_on(loop, argv[2]) < 0)
        return 2;
    fflush(stdout);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
