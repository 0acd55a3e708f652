/*
 * server.c - listeners, the connection table, and shutdown (see server.h)
 *
 * Provides bs_server_*. Calls down into conn.c (conn.h): bs_conn_accept,
 * _close, _shutdown; conn.c reaches back only through the bs_conn_env
 * embedded here and the hooks below (the slot table, "a connection is
 * gone"). Nothing here reads or writes a connection's socket.
 *
 * The connection limit sheds load at accept: at [server] max_connections a
 * listener's pending connection is left unaccepted (libuv then stops
 * polling that listener) and counted; it is accepted when a connection
 * closes, so new smtpd processes wait instead of being refused.
 *
 * Unix listeners: only a socket is ever removed, and only a stale one:
 * before bind, a socket file nobody answers on (connect: ECONNREFUSED) is
 * removed; a live one, or a path that is not a socket, is an error and is
 * left alone. The socket gets [server] socket_mode and socket_group. At
 * close it is removed if the path still holds the socket we bound (same
 * device and inode) and the directory allows it (after [server] user drops
 * privileges it may not: that is logged, and the next start removes it).
 *
 * Reload: bs_server_open_new opens every new listener before
 * bs_server_reconfigure closes an old one; one failure closes those just
 * opened and leaves the running set as it was.
 *
 * Every listener's handle is initialised before anything about it can fail,
 * so there is one close path (close_listener) and it always closes a handle
 * libuv knows. Listen hosts must be IP literals (no DNS on the loop, none
 * at start; the config check refuses host names).
 */
#include <errno.h>
#include <stddef.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "backstop/cidr.h"
#include "backstop/log.h"
#include "stats.h"
#include "conn.h"
#include "server.h"

#define BS_LISTEN_BACKLOG 256
#define BS_SHUTDOWN_GRACE_MS 2000 /* beyond [redis] timeout, at shutdown */

typedef struct bs_listener {
    bs_stream_handle h;
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
    bs_conn_env env; /* loop, cfg, store, shared buffers: lent to conn.c */
    bs_listener *listeners;
    bs_conn **slots; /* the connection table */
    uint32_t *gens;  /* generation kept per slot across reuse */
    uint32_t nslots;
    uint32_t *free_slots; /* stack of free slot indexes */
    uint32_t nfree;
    uint32_t nconns;
    int shutting_down; /* 1 draining, 2 closing the last handle */
    int open_handles;  /* listeners + shutdown timer still open */
    uv_timer_t shutdown_timer;
    void (*done)(void *);
    void *done_arg;
};

static const bs_conn_hooks conn_hooks;

bs_server *bs_server_new(uv_loop_t *loop, const bs_config *cfg, bs_store *store)
{
    bs_server *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->env.loop = loop;
    s->env.cfg = cfg;
    s->env.store = store;
    s->env.hooks = &conn_hooks;
    uv_timer_init(loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    s->open_handles = 1;
    return s;
}

/* grow_table - make room for n connections (never shrinks) */
static int grow_table(bs_server *s, uint32_t n)
{
    bs_conn **slots;
    uint32_t *gens, *free_slots, i;

    if (n <= s->nslots)
        return 0;
    slots = realloc(s->slots, n * sizeof(*slots));
    if (slots)
        s->slots = slots;
    gens = realloc(s->gens, n * sizeof(*gens));
    if (gens)
        s->gens = gens;
    free_slots = realloc(s->free_slots, n * sizeof(*free_slots));
    if (free_slots)
        s->free_slots = free_slots;
    if (!slots || !gens || !free_slots)
        return -1;
    for (i = n; i-- > s->nslots;) {
        s->slots[i] = NULL;
        s->gens[i] = 0;
        s->free_slots[s->nfree++] = i;
    }
    s->nslots = n;
    return 0;
}

/* owner - the server a connection's env is embedded in */
static bs_server *owner(bs_conn_env *env)
{
    return (bs_server *)((char *)env - offsetof(bs_server, env));
}

/* accept_one - let one pending connection of l in (limit checked) */
static void accept_one(bs_listener *l)
{
    l->waiting = 0;
    bs_conn_accept(&l->srv->env, &l->h.stream, &l->ep);
}

/* slot_get - hook: enter c in the connection table */
static int slot_get(bs_conn_env *env, bs_conn *c)
{
    bs_server *s = owner(env);
    uint32_t slot;

    if (s->nfree == 0 && grow_table(s, s->nslots ? s->nslots * 2 : 64) < 0)
        return -1;
    slot = s->free_slots[--s->nfree];
    s->slots[slot] = c;
    c->slot = slot;
    c->gen = s->gens[slot];
    s->nconns++;
    return 0;
}

/* slot_put - hook: take c out of the table */
static void slot_put(bs_conn_env *env, bs_conn *c)
{
    bs_server *s = owner(env);

    s->gens[c->slot] = c->gen + 1; /* the slot's next owner starts fresh */
    s->slots[c->slot] = NULL;
    s->free_slots[s->nfree++] = c->slot;
}

/* slot_at - hook: the connection in slot i, or NULL */
static bs_conn *slot_at(bs_conn_env *env, uint32_t i)
{
    bs_server *s = owner(env);

    return i < s->nslots ? s->slots[i] : NULL;
}

static void maybe_done(bs_server *s);

/* conn_gone - hook: a connection's memory is freed: accept a waiting
 * connection, or finish the shutdown */
static void conn_gone(bs_conn_env *env)
{
    bs_server *s = owner(env);
    bs_listener *l;

    s->nconns--;
    if (s->shutting_down) {
        maybe_done(s);
        return;
    }
    for (l = s->listeners; l; l = l->next) {
        if (l->waiting && !l->closing && s->nconns < s->env.cfg->max_connections) {
            accept_one(l);
            break;
        }
    }
}

static const bs_conn_hooks conn_hooks = {
    .slot_get = slot_get,
    .slot_put = slot_put,
    .slot = slot_at,
    .gone = conn_gone,
};

static void on_connection(uv_stream_t *st, int status)
{
    bs_listener *l = st->data;
    bs_server *s = l->srv;

    if (status < 0) {
        bs_warn("accept on listener: %s", uv_strerror(status));
        return;
    }
    if (s->shutting_down)
        return;
    if (s->nconns >= s->env.cfg->max_connections) {
        if (!l->waiting)
            bs_stat.conn_limit_waits++;
        l->waiting = 1; /* libuv stops polling it until we accept */
        return;
    }
    accept_one(l);
}

/* endpoint_text - "inet:H:P" or "unix:/p" for messages */
static void endpoint_text(const bs_endpoint *ep, char *out, size_t outsz)
{
    if (ep->type == BS_EP_UNIX)
        snprintf(out, outsz, "unix:%s", ep->path);
    else
        snprintf(out, outsz, "inet:%s%s%s:%u", strchr(ep->host, ':') ? "[" : "", ep->host,
                 strchr(ep->host, ':') ? "]" : "", ep->port);
}

/* unix_socket - a non-blocking socket and the address of path in *sun;
 * the fd, or -1 with err (config.c keeps paths short enough) */
static int unix_socket(const char *path, struct sockaddr_un *sun, char *err, size_t errsz)
{
    size_t len = strlen(path);
    int fd;

    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (len >= sizeof(sun->sun_path)) {
        snprintf(err, errsz, "unix:%s: path too long", path);
        return -1;
    }
    memcpy(sun->sun_path, path, len + 1);
    /* non-blocking: a live listener with a full backlog says EAGAIN at once */
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        snprintf(err, errsz, "unix:%s: socket: %s", path, strerror(errno));
    return fd;
}

/*
 * clear_stale_socket - make room for a unix listener at path. Nothing
 * there: 0. A socket nobody answers on (connect: ECONNREFUSED): removed, 0.
 * Anything else -1 with err, and nothing removed: a file that is not a
 * socket, a socket another process listens on, a path we cannot probe.
 */
static int clear_stale_socket(const char *path, char *err, size_t errsz)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd, rc, e;

    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errsz, "unix:%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errsz, "unix:%s exists and is not a socket; not removing it", path);
        return -1;
    }
    if ((fd = unix_socket(path, &sun, err, errsz)) < 0)
        return -1;
    rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
        snprintf(err, errsz, "unix:%s is in use by another process", path);
        return -1;
    }
    if (e != ECONNREFUSED) {
        snprintf(err, errsz, "unix:%s: cannot tell whether it is in use: %s", path, strerror(e));
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errsz, "cannot remove stale socket unix:%s: %s", path, strerror(errno));
        return -1;
    }
    bs_info("removed stale socket %s", path);
    return 0;
}

/* socket_access - [server] socket_mode and socket_group on our socket file */
static int socket_access(const bs_listener *l, const bs_config *cfg, char *err, size_t errsz)
{
    struct group *gr;

    if (chmod(l->ep.path, cfg->socket_mode) != 0) {
        snprintf(err, errsz, "chmod %s: %s", l->ep.path, strerror(errno));
        return -1;
    }
    if (!cfg->socket_group[0])
        return 0;
    errno = 0;
    if (!(gr = getgrnam(cfg->socket_group))) {
        snprintf(err, errsz, "socket_group %s for %s: %s", cfg->socket_group, l->ep.path,
                 errno ? strerror(errno) : "no such group");
        return -1;
    }
    if (chown(l->ep.path, (uid_t)-1, gr->gr_gid) != 0) {
        snprintf(err, errsz, "socket_group %s for %s: %s", cfg->socket_group, l->ep.path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * open_unix - bind a unix listener with its mode and group. The socket is
 * made and bound here, not by uv_pipe_bind, which reports ENOENT as EACCES
 * and would unlink the path when the handle closes, ours or not.
 */
static int open_unix(bs_listener *l, const bs_config *cfg, char *err, size_t errsz)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd, rc;

    if (clear_stale_socket(l->ep.path, err, errsz) < 0 ||
        (fd = unix_socket(l->ep.path, &sun, err, errsz)) < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        snprintf(err, errsz, "cannot bind unix:%s: %s", l->ep.path, strerror(errno));
        close(fd);
        return -1;
    }
    /* from here on the file is ours: close_listener removes it */
    if (lstat(l->ep.path, &st) == 0) {
        l->created = 1;
        l->dev = st.st_dev;
        l->ino = st.st_ino;
    }
    if ((rc = uv_pipe_open(&l->h.pipe, fd)) != 0) {
        snprintf(err, errsz, "unix:%s: %s", l->ep.path, uv_strerror(rc));
        close(fd);
        return -1;
    }
    return socket_access(l, cfg, err, errsz);
}

/* open_inet - bind an inet listener on an IP literal */
static int open_inet(bs_listener *l, char *err, size_t errsz)
{
    struct sockaddr_storage ss;
    int rc;

    if (uv_ip4_addr(l->ep.host, (int)l->ep.port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(l->ep.host, (int)l->ep.port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, errsz, "listen host \"%s\" is not an IP address", l->ep.host);
        return -1;
    }
    if ((rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0)) != 0) {
        snprintf(err, errsz, "cannot bind inet:%s:%u: %s", l->ep.host, l->ep.port, uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    bs_listener *l = h->data;
    bs_server *s = l->srv;

    free(l);
    s->open_handles--;
    maybe_done(s);
}

/* remove_socket_file - unlink our socket file, if the path still holds it */
static void remove_socket_file(const bs_listener *l)
{
    struct stat st;

    if (!l->created || lstat(l->ep.path, &st) != 0)
        return;
    if (!S_ISSOCK(st.st_mode) || st.st_dev != l->dev || st.st_ino != l->ino) {
        bs_info("not removing %s: it is no longer our socket", l->ep.path);
        return;
    }
    if (unlink(l->ep.path) != 0 && errno != ENOENT)
        bs_info("cannot remove %s: %s (a stale socket is removed at the next start)", l->ep.path,
                strerror(errno));
}

/* close_listener - unlink it from the list (if there) and close it */
static void close_listener(bs_server *s, bs_listener *l)
{
    bs_listener **pp;

    for (pp = &s->listeners; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    l->next = NULL;
    l->closing = 1;
    remove_socket_file(l);
    uv_close(&l->h.handle, on_listener_closed);
}

/*
 * open_listener - one endpoint with cfg's socket settings. Returns the
 * listener (not in s->listeners yet), or NULL with err. The handle is
 * initialised before anything can fail, so every failure closes a handle
 * libuv knows.
 */
static bs_listener *open_listener(bs_server *s, const bs_endpoint *ep, const bs_config *cfg,
                                  char *err, size_t errsz)
{
    bs_listener *l = calloc(1, sizeof(*l));
    char name[300];
    int rc;

    if (!l) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    l->srv = s;
    l->ep = *ep;
    if (ep->type == BS_EP_UNIX)
        uv_pipe_init(s->env.loop, &l->h.pipe, 0);
    else
        uv_tcp_init(s->env.loop, &l->h.tcp);
    l->h.handle.data = l;
    s->open_handles++;
    rc = ep->type == BS_EP_UNIX ? open_unix(l, cfg, err, errsz) : open_inet(l, err, errsz);
    if (rc == 0 && (rc = uv_listen(&l->h.stream, BS_LISTEN_BACKLOG, on_connection)) != 0) {
        endpoint_text(ep, name, sizeof(name));
        snprintf(err, errsz, "cannot listen on %s: %s", name, uv_strerror(rc));
    }
    if (rc != 0) {
        close_listener(s, l);
        return NULL;
    }
    return l;
}

static int same_endpoint(const bs_endpoint *a, const bs_endpoint *b)
{
    return a->type == b->type && a->port == b->port && strcmp(a->host, b->host) == 0 &&
           strcmp(a->path, b->path) == 0;
}

/* find_listener - the open listener for ep, or NULL */
static bs_listener *find_listener(bs_server *s, const bs_endpoint *ep)
{
    bs_listener *l;

    for (l = s->listeners; l; l = l->next)
        if (same_endpoint(&l->ep, ep))
            return l;
    return NULL;
}

int bs_server_open_new(bs_server *s, const bs_config *next, char *err, size_t errsz)
{
    bs_listener *fresh = NULL, *l;
    char name[300];
    size_t i;

    for (i = 0; i < next->nlisten; i++) {
        if (find_listener(s, &next->listen[i]))
            continue;
        if (!(l = open_listener(s, &next->listen[i], next, err, errsz))) {
            while ((l = fresh)) {
                fresh = l->next;
                close_listener(s, l);
            }
            return -1;
        }
        l->next = fresh;
        fresh = l;
    }
    while ((l = fresh)) {
        fresh = l->next;
        l->next = s->listeners;
        s->listeners = l;
        endpoint_text(&l->ep, name, sizeof(name));
        bs_info("listening on %s", name);
    }
    return 0;
}

int bs_server_listen(bs_server *s, char *err, size_t errsz)
{
    if (grow_table(s, s->env.cfg->max_connections < 64 ? s->env.cfg->max_connections : 64) < 0) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    return bs_server_open_new(s, s->env.cfg, err, errsz);
}

void bs_server_reconfigure(bs_server *s, const bs_config *old)
{
    const bs_config *cfg = s->env.cfg;
    bs_listener *l, *next;
    char err[512];
    size_t i;
    int found;

    for (l = s->listeners; l; l = next) {
        next = l->next;
        for (found = 0, i = 0; i < cfg->nlisten && !found; i++)
            found = same_endpoint(&l->ep, &cfg->listen[i]);
        if (!found) {
            endpoint_text(&l->ep, err, sizeof(err));
            bs_info("no longer listening on %s", err);
            close_listener(s, l);
        }
    }
    /* kept unix sockets get a changed mode or group now, if we still may */
    if (cfg->socket_mode != old->socket_mode || strcmp(cfg->socket_group, old->socket_group) != 0)
        for (l = s->listeners; l; l = l->next)
            if (l->ep.type == BS_EP_UNIX && socket_access(l, cfg, err, sizeof(err)) < 0)
                bs_warn("reload: %s; [server] socket_mode and socket_group take effect at restart",
                        err);
    /* a raised limit lets waiting connections in */
    for (l = s->listeners; l; l = l->next)
        if (l->waiting && s->nconns < cfg->max_connections)
            accept_one(l);
}

/* on_server_closed - the last handle is closed: free and report */
static void on_server_closed(uv_handle_t *h)
{
    bs_server *s = h->data;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;

    bs_conn_env_free(&s->env);
    free(s->slots);
    free(s->gens);
    free(s->free_slots);
    free(s);
    done(arg);
}

/* maybe_done - shutdown ends when every connection and listener is gone */
static void maybe_done(bs_server *s)
{
    if (s->shutting_down != 1 || s->nconns || s->open_handles > 1)
        return;
    s->shutting_down = 2;
    uv_close((uv_handle_t *)&s->shutdown_timer, on_server_closed);
}

/* on_shutdown_deadline - requests in flight took too long: close them */
static void on_shutdown_deadline(uv_timer_t *t)
{
    bs_server *s = t->data;
    uint32_t i;

    bs_warn("shutdown: closing %u connection(s) still busy", s->nconns);
    for (i = 0; i < s->nslots; i++)
        if (s->slots[i])
            bs_conn_close(s->slots[i], "shutdown deadline");
}

void bs_server_shutdown(bs_server *s, void (*done)(void *), void *arg)
{
    uint32_t i;

    s->shutting_down = 1;
    s->env.draining = 1;
    s->done = done;
    s->done_arg = arg;
    while (s->listeners)
        close_listener(s, s->listeners);
    for (i = 0; i < s->nslots; i++)
        if (s->slots[i])
            bs_conn_shutdown(s->slots[i]);
    uv_timer_start(&s->shutdown_timer, on_shutdown_deadline,
                   s->env.cfg->timeout_ms + BS_SHUTDOWN_GRACE_MS, 0);
    maybe_done(s);
}
