/*
 * redis_uv.c - libuv event hooks for a hiredis async context (see redis_uv.h)
 *
 * Provides bs_redis_uv_attach() and bs_redis_uv_flush(). Never blocks; never frees the context
 * (only hiredis does). After any handler call the context may be gone (hiredis then called cleanup,
 * which cleared p->ac), so p->ac is re-checked before each call.
 *
 * Writes: on a connected context, the commands queued during one loop
 * iteration are written by a uv_check handle right after that iteration's
 * I/O callbacks: one write() for all of them, and no epoll_ctl to ask for
 * writability, which a socket with room in its buffer has anyway. Only when
 * that write cannot finish (the socket is full), or while connecting, does
 * the poll wait for UV_WRITABLE.
 */
#include <stdlib.h>

#include <hiredis/hiredis.h>

#include "redis_uv.h"

typedef struct bs_redis_uv {
    uv_poll_t poll;
    uv_check_t flush;      /* writes the iteration's commands */
    redisAsyncContext *ac; /* NULL once hiredis called cleanup */
    int events;            /* UV_READABLE | UV_WRITABLE wanted from the poll */
    int started;           /* the events the poll runs with now */
    int flushing;          /* inside on_flush: a new write wish needs the poll */
    int open_handles;
} bs_redis_uv;

/* on_poll - dispatch readiness, and errors, to hiredis */
static void on_poll(uv_poll_t *h, int status, int events)
{
    bs_redis_uv *p = h->data;

    if (status < 0) {
        /* Let hiredis meet the error itself: a pending connect is checked
         * with SO_ERROR by the write handler, an established socket fails
         * its read. Either path ends in the connect/disconnect callback. */
        events = p->events ? p->events : UV_READABLE;
    }
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
    if (p->ac && (events & (UV_READABLE | UV_DISCONNECT)))
        redisAsyncHandleRead(p->ac);
}

/* update - (re)start or stop the poll for the wanted events */
static void update(bs_redis_uv *p)
{
    if (p->events == p->started)
        return;
    if (p->events) {
        uv_poll_start(&p->poll, p->events, on_poll);
        p->started = p->events;
    } else {
        uv_poll_stop(&p->poll);
        p->started = 0;
    }
}

/* on_flush - write what this iteration queued */
static void on_flush(uv_check_t *h)
{
    bs_redis_uv *p = h->data;

    uv_check_stop(&p->flush);
    if (!p->ac)
        return;
    p->flushing = 1;
    redisAsyncHandleWrite(p->ac); /* may call add_write (full socket): poll */
    p->flushing = 0;
}

/* bs_redis_uv_flush - write now what on_flush would write after the next poll */
void bs_redis_uv_flush(redisAsyncContext *ac)
{
    bs_redis_uv *p = ac->ev.data;

    if (p && p->ac == ac && uv_is_active((uv_handle_t *)&p->flush))
        on_flush(&p->flush);
}

static void add_read(void *d)
{
    bs_redis_uv *p = d;
    p->events |= UV_READABLE;
    update(p);
}

static void del_read(void *d)
{
    bs_redis_uv *p = d;
    p->events &= ~UV_READABLE;
    update(p);
}

static void add_write(void *d)
{
    bs_redis_uv *p = d;

    if (!p->flushing && p->ac && (p->ac->c.flags & REDIS_CONNECTED) && !(p->events & UV_WRITABLE)) {
        uv_check_start(&p->flush, on_flush); /* no-op when already started */
        return;
    }
    p->events |= UV_WRITABLE;
    update(p);
}

static void del_write(void *d)
{
    bs_redis_uv *p = d;
    uv_check_stop(&p->flush);
    p->events &= ~UV_WRITABLE;
    update(p);
}

static void on_close(uv_handle_t *h)
{
    bs_redis_uv *p = h->data;

    if (--p->open_handles == 0)
        free(p);
}

static void cleanup(void *d)
{
    bs_redis_uv *p = d;

    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, on_close);
    uv_close((uv_handle_t *)&p->flush, on_close);
}

int bs_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    bs_redis_uv *p;

    if (ac->ev.data != NULL)
        return -1;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    uv_check_init(loop, &p->flush);
    p->poll.data = p->flush.data = p;
    p->open_handles = 2;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}
