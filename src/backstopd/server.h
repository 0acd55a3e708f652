/*
 * server.h - the listeners and the connection table of backstopd
 *
 * A bs_server owns its listeners (inet and unix), the connection table and
 * the shared read buffer and parser it lends its connections (conn.h: the
 * server calls conn.c, never the other way). It borrows the config (which
 * may change in place on reload) and the store.
 */
#ifndef BACKSTOP_SERVER_H
#define BACKSTOP_SERVER_H

#include <uv.h>

#include "backstop/config.h"
#include "store.h"

typedef struct bs_server bs_server;

/* bs_server_new - NULL on out of memory. Nothing is opened yet. */
bs_server *bs_server_new(uv_loop_t *loop, const bs_config *cfg, bs_store *store);

/* bs_server_listen - open every [server] listen endpoint. Returns 0, or -1
 * with a message in err (a start-up failure: the caller exits). */
int bs_server_listen(bs_server *s, char *err, size_t errsz);

/* bs_server_open_new - before a reload: open every listener of next that
 * is not open yet (with next's socket_mode and socket_group). Returns 0 (all
 * opened and listening), or -1 with a message in err: then every listener
 * this call opened is closed again and the running set is unchanged, so
 * the caller keeps its configuration. Nothing is closed here. */
int bs_server_open_new(bs_server *s, const bs_config *next, char *err, size_t errsz);

/* bs_server_reconfigure - after bs_server_open_new(next) succeeded and *cfg
 * became next in place (old = previous): closes the listeners no longer
 * configured, applies a changed socket_mode/socket_group to kept unix
 * sockets (a warning if it cannot: then it takes effect at restart), lets
 * waiting connections in under a raised limit. Existing connections stay. */
void bs_server_reconfigure(bs_server *s, const bs_config *old);

/* bs_server_shutdown - stop accepting, close idle connections, answer the
 * requests in flight, then call done(arg) once every connection and
 * listener has closed (at most [redis] timeout + 2 s later). The server is
 * freed before done is called. */
void bs_server_shutdown(bs_server *s, void (*done)(void *arg), void *arg);

#endif
