/*
 * redis_conn.c - the link to Redis: one hiredis async connection, kept
 * alive (see redis_conn.h; the owner is store_redis.c)
 *
 * Provides bs__redis_conn_start/_reconfigure/_close, the state questions
 * (_ready, _closed, _current), _send/_replied for the owner's commands,
 * _handshake_cmd for its part of the handshake, and _drop.
 *
 * A connection is set up by connect_now(): with [redis] sentinel entries
 * the master is first found through Redis Sentinel (the Redis Sentinel
 * client spec: ask each sentinel in turn "SENTINEL get-master-addr-by-name"
 * with a short deadline, the last one that answered first), otherwise
 * [redis] server is used. The handshake (AUTH, SELECT, ROLE, then the
 * owner's SCRIPT LOADs) is queued at once and sent by hiredis on connect;
 * the connection is ready when every handshake reply has come. ROLE must
 * say master: with Sentinel anything else drops the connection (the
 * failover is not finished), without it is a warning (writes will fail).
 *
 * Deadlines are ours (hiredis 0.14 has none): connect + handshake within
 * [redis] connect_timeout; a stall detector drops the connection when
 * tracked commands are outstanding and Redis has sent nothing for
 * max(1s, 3 x [redis] timeout), so a frozen Redis (SIGSTOP) cannot hold the
 * owner's query pool forever; reconnection with exponential backoff
 * (100 ms .. 2 s, .. 500 ms with Sentinel: each attempt asks afresh). A
 * ready connection with Sentinel re-asks a sentinel every second and
 * follows a planned failover at once. The per-request answer deadline is
 * the caller's (conn.c).
 *
 * A connection failure is logged once: the first failed attempt after a
 * success is a warning, the retries that follow are debug lines, and the
 * reconnect says how many attempts failed.
 *
 * Never: blocks (host names in [redis] server are resolved by hiredis with
 * getaddrinfo; use an IP address or a unix socket), formats commands with
 * printf, exits because of Redis, or frees its owner (the closed hook does).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "backstop/log.h"
#include "redis_reply.h"
#include "redis_uv.h"
#include "stats.h"
#include "redis_conn.h"

#define BS_REDIS_BACKOFF_MIN_MS 100
#define BS_REDIS_BACKOFF_MAX_MS 2000
#define BS_SENTINEL_BACKOFF_MAX_MS 500 /* each retry asks a sentinel afresh */
#define BS_SENTINEL_PROBE_MS 1000      /* how often a connected store re-asks */
#define BS_SENTINEL_TIMEOUT_MS 500     /* one sentinel's answer, at most */
#define BS_REDIS_TICK_MS 100
#define BS_REDIS_CLOSE_MS 500       /* a graceful close waits no longer */
#define BS_REDIS_HANDSHAKE_MAX 8192 /* AUTH/SELECT/ROLE, built on the stack */

enum conn_state { ST_DOWN = 0, ST_CONNECTING, ST_READY, ST_CLOSED };

static void connect_now(bs_redis_conn *c);
static void sentinel_ask(bs_redis_conn *c);

/* schedule_retry - reconnect after the current backoff, then double it */
static void schedule_retry(bs_redis_conn *c);

/* note_failure - a failed attempt: the first after a success is a warning,
 * the retries that follow are debug lines (a Redis outage is logged once) */
static void note_failure(bs_redis_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note_failure(bs_redis_conn *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->failures++ == 0)
        bs_warn("redis: %s", msg);
    else
        bs_debug("redis: attempt %u failed: %s", c->failures, msg);
}

static void retry_cb(uv_timer_t *t)
{
    connect_now(t->data);
}

static void schedule_retry(bs_redis_conn *c)
{
    /* with Sentinel each attempt asks afresh, so retrying often is cheap and
     * follows a failover sooner */
    uint64_t cap = c->cfg->nsentinels ? BS_SENTINEL_BACKOFF_MAX_MS : BS_REDIS_BACKOFF_MAX_MS;
    uint64_t delay = c->backoff_ms > cap ? cap : c->backoff_ms;

    if (c->state == ST_CLOSED)
        return;
    c->state = ST_DOWN;
    c->backoff_ms = delay * 2 > cap ? cap : delay * 2;
    uv_timer_start(&c->retry_timer, retry_cb, delay, 0);
}

/* endpoint_name - where the connection goes: the master Sentinel named, or
 * [redis] server */
static void endpoint_name(const bs_redis_conn *c, char *out, size_t outsz)
{
    const bs_endpoint *ep = c->cfg->nsentinels ? &c->master : &c->cfg->redis;

    if (ep->type == BS_EP_UNIX)
        snprintf(out, outsz, "unix:%s", ep->path);
    else
        snprintf(out, outsz, "%s:%u", ep->host, ep->port);
}

static void sentinel_close(bs_redis_conn *c)
{
    redisAsyncContext *sac = c->sac;

    c->sac = NULL;
    if (sac)
        redisAsyncFree(sac); /* deferred by hiredis inside its callback */
}

/* bs__redis_conn_drop - see redis_conn.h */
void bs__redis_conn_drop(bs_redis_conn *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    char where[BS_CFG_PATH_MAX + 16];

    if (!ac)
        return;
    if (c->probing) {
        c->probing = 0;
        sentinel_close(c);
    }
    endpoint_name(c, where, sizeof(where));
    note_failure(c, "connection to %s dropped: %s", where, why);
    c->ac = NULL;
    c->state = ST_DOWN;
    bs_stat.redis_disconnects++;
    uv_timer_stop(&c->retry_timer);
    redisAsyncFree(ac); /* deferred by hiredis if we are inside its callback */
    schedule_retry(c);
}

/* ------------------------------------------------------------ the owner's view */

int bs__redis_conn_ready(const bs_redis_conn *c)
{
    return c->state == ST_READY && c->ac;
}

int bs__redis_conn_closed(const bs_redis_conn *c)
{
    return c->state == ST_CLOSED;
}

int bs__redis_conn_current(const bs_redis_conn *c, const redisAsyncContext *ac)
{
    return c->ac == ac;
}

/* bs__redis_conn_send - see redis_conn.h */
int bs__redis_conn_send(bs_redis_conn *c, const bs_resp *b, redisCallbackFn *fn, void *priv,
                        int tracked)
{
    if (!c->ac || b->overflow)
        return -1;
    if (redisAsyncFormattedCommand(c->ac, fn, priv, bs_resp_finish(b), b->len) != REDIS_OK)
        return -1;
    if (tracked && c->outstanding++ == 0)
        c->busy_since = uv_now(c->loop);
    return 0;
}

/* bs__redis_conn_replied - progress for the stall detector */
void bs__redis_conn_replied(bs_redis_conn *c, const void *reply)
{
    c->outstanding--;
    if (reply)
        c->busy_since = uv_now(c->loop);
}

/* ------------------------------------------------------------ connection */

static void on_connect(const redisAsyncContext *ac, int status)
{
    bs_redis_conn *c = ac->data;

    if (ac != c->ac || status == REDIS_OK)
        return;
    /* hiredis frees the context after this callback */
    c->ac = NULL;
    note_failure(c, "cannot connect: %s", ac->errstr);
    uv_timer_stop(&c->retry_timer);
    schedule_retry(c);
}

static void finish_close(bs_redis_conn *c);

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    bs_redis_conn *c = ac->data;

    if (ac != c->ac)
        return;
    c->ac = NULL;
    if (c->state == ST_CLOSED) {
        finish_close(c);
        return;
    }
    bs_stat.redis_disconnects++;
    note_failure(c, "connection lost: %s", ac->err ? ac->errstr : "closed by server");
    uv_timer_stop(&c->retry_timer);
    schedule_retry(c);
}

/* on_handshake - AUTH, SELECT, ROLE (via on_role) and the owner's replies */
static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_conn *c = ac->data;
    redisReply *rep = reply;
    char *sha = privdata;

    if (!rep || ac != c->ac)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        char what[320];
        snprintf(what, sizeof(what), "handshake failed: %.200s", rep->str);
        bs__redis_conn_drop(c, what);
        return;
    }
    if (sha && rep->type == REDIS_REPLY_STRING && rep->len == 40) {
        memcpy(sha, rep->str, 40);
        sha[40] = 0;
    }
    if (--c->handshake_pending == 0) {
        uv_timer_stop(&c->retry_timer);
        c->state = ST_READY;
        c->backoff_ms = BS_REDIS_BACKOFF_MIN_MS;
        bs_stat.redis_connects++;
        char where[BS_CFG_PATH_MAX + 16];
        endpoint_name(c, where, sizeof(where));
        if (c->failures)
            bs_info("redis: connected to %s again after %u failed attempt(s)", where, c->failures);
        else
            bs_info("redis: connected to %s", where);
        c->failures = 0;
    }
}

/* on_role - the server we reached must be a master: writes go there */
static void on_role(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_conn *c = ac->data;
    redisReply *rep = reply;

    if (!rep || ac != c->ac)
        return;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(rep->element[0]->str, "master") == 0) {
        on_handshake(ac, reply, NULL);
        return;
    }
    if (c->cfg->nsentinels) {
        bs__redis_conn_drop(c, "the server Sentinel named is not a master (yet)");
        return;
    }
    bs_warn("redis: server is not a master: writes (rate tracking, NDR limits) will fail");
    on_handshake(ac, reply, NULL);
}

/* on_connect_deadline - connect + handshake took longer than connect_timeout */
static void on_connect_deadline(uv_timer_t *t)
{
    bs__redis_conn_drop(t->data, "connect/handshake timed out");
}

/* handshake_cmd - queue one handshake command, answered to fn; 0 or -1 */
static int handshake_cmd(bs_redis_conn *c, const bs_resp *b, redisCallbackFn *fn, char *sha_out)
{
    if (b->overflow ||
        redisAsyncFormattedCommand(c->ac, fn, sha_out, bs_resp_finish(b), b->len) != REDIS_OK)
        return -1;
    c->handshake_pending++;
    return 0;
}

/* bs__redis_conn_handshake_cmd - see redis_conn.h */
int bs__redis_conn_handshake_cmd(bs_redis_conn *c, const bs_resp *b, char *sha_out)
{
    return handshake_cmd(c, b, on_handshake, sha_out);
}

/* handshake - queue AUTH/SELECT/ROLE and the owner's commands; hiredis
 * sends them on connect */
static int handshake(bs_redis_conn *c)
{
    const bs_config *cfg = c->cfg;
    char buf[BS_REDIS_HANDSHAKE_MAX];
    bs_resp b;
    int rc = 0;

    c->handshake_pending = 0;
    if (cfg->password[0]) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, cfg->username[0] ? 3 : 2);
        bs_resp_str(&b, "AUTH");
        if (cfg->username[0])
            bs_resp_str(&b, cfg->username);
        bs_resp_str(&b, cfg->password);
        rc |= handshake_cmd(c, &b, on_handshake, NULL);
    }
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_str(&b, "SELECT");
    bs_resp_u64(&b, cfg->db);
    rc |= handshake_cmd(c, &b, on_handshake, NULL);
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 1);
    bs_resp_str(&b, "ROLE");
    rc |= handshake_cmd(c, &b, on_role, NULL);
    rc |= c->hooks->handshake(c->owner);
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ Sentinel */

/* sentinel_skip - this sentinel failed: ask the next one */
static void sentinel_skip(bs_redis_conn *c, const char *why)
{
    const bs_endpoint *ep;

    if (c->sentinel_next < c->cfg->nsentinels) {
        ep = &c->cfg->sentinels[c->sentinel_order[c->sentinel_next]];
        bs_debug("redis: sentinel %s:%u: %s", ep->host, ep->port, why);
    }
    sentinel_close(c);
    uv_timer_stop(&c->retry_timer);
    if (c->probing) {
        /* a failed check changes nothing; the next tick asks the next one */
        c->probing = 0;
        if (c->cfg->nsentinels > 1) {
            unsigned first = c->sentinel_order[0];
            memmove(c->sentinel_order, c->sentinel_order + 1,
                    (c->cfg->nsentinels - 1) * sizeof(c->sentinel_order[0]));
            c->sentinel_order[c->cfg->nsentinels - 1] = first;
        }
        return;
    }
    c->sentinel_next++;
    sentinel_ask(c);
}

static void on_sentinel_deadline(uv_timer_t *t)
{
    sentinel_skip(t->data, "no answer in time");
}

static void on_sentinel_connect(const redisAsyncContext *ac, int status)
{
    bs_redis_conn *c = ac->data;

    if (ac != c->sac || status == REDIS_OK)
        return;
    c->sac = NULL; /* hiredis frees it after this callback */
    sentinel_skip(c, ac->errstr);
}

static void on_sentinel_disconnect(const redisAsyncContext *ac, int status)
{
    bs_redis_conn *c = ac->data;

    if (ac != c->sac)
        return;
    c->sac = NULL;
    sentinel_skip(c, "connection lost");
}

static void on_sentinel_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_conn *c = ac->data;
    redisReply *rep = reply;

    if (rep && ac == c->sac && rep->type == REDIS_REPLY_ERROR)
        sentinel_skip(c, rep->str);
}

static void on_sentinel_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_conn *c = ac->data;
    redisReply *rep = reply;
    unsigned first, i;
    long port;

    if (!rep || ac != c->sac)
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING ||
        rep->element[0]->len >= sizeof(c->master.host) ||
        (port = strtol(rep->element[1]->str, NULL, 10)) < 1 || port > 65535) {
        sentinel_skip(c, rep->type == REDIS_REPLY_ERROR ? rep->str : "does not know the master");
        return;
    }
    if (c->probing) {
        /* a planned failover: the old master still answers as a master for
         * a while, and what we write there is lost; follow Sentinel now */
        int moved = strlen(c->master.host) != rep->element[0]->len ||
                    memcmp(c->master.host, rep->element[0]->str, rep->element[0]->len) != 0 ||
                    c->master.port != (unsigned)port;
        c->probing = 0;
        sentinel_close(c);
        uv_timer_stop(&c->retry_timer);
        if (moved && c->ac)
            bs__redis_conn_drop(c, "Sentinel names another master");
        return;
    }
    memset(&c->master, 0, sizeof(c->master));
    c->master.type = BS_EP_INET;
    memcpy(c->master.host, rep->element[0]->str, rep->element[0]->len);
    c->master.port = (unsigned)port;
    /* the sentinel that answered is asked first next time */
    first = c->sentinel_order[c->sentinel_next];
    for (i = c->sentinel_next; i > 0; i--)
        c->sentinel_order[i] = c->sentinel_order[i - 1];
    c->sentinel_order[0] = first;
    bs_debug("redis: sentinel says master %s is %s:%u", c->cfg->master_name, c->master.host,
             c->master.port);
    sentinel_close(c);
    uv_timer_stop(&c->retry_timer);
    c->discovered = 1;
    c->state = ST_DOWN;
    connect_now(c);
}

/* sentinel_ask - ask sentinel number sentinel_next (in sentinel_order) */
static void sentinel_ask(bs_redis_conn *c)
{
    const bs_config *cfg = c->cfg;
    const bs_endpoint *ep;
    redisAsyncContext *sac;
    char buf[1024];
    bs_resp b;

    if (c->state == ST_CLOSED)
        return;
    if (c->sentinel_next >= cfg->nsentinels) {
        note_failure(c, "no sentinel answered for master \"%s\"", cfg->master_name);
        schedule_retry(c);
        return;
    }
    ep = &cfg->sentinels[c->sentinel_order[c->sentinel_next]];
    sac = redisAsyncConnect(ep->host, (int)ep->port);
    if (!sac || sac->err || bs_redis_uv_attach(sac, c->loop) < 0) {
        if (sac)
            redisAsyncFree(sac);
        c->sentinel_next++;
        sentinel_ask(c);
        return;
    }
    sac->data = c;
    c->sac = sac;
    redisAsyncSetConnectCallback(sac, on_sentinel_connect);
    redisAsyncSetDisconnectCallback(sac, on_sentinel_disconnect);
    if (cfg->sentinel_password[0]) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2);
        bs_resp_str(&b, "AUTH");
        bs_resp_str(&b, cfg->sentinel_password);
        if (!b.overflow)
            redisAsyncFormattedCommand(sac, on_sentinel_auth, NULL, bs_resp_finish(&b), b.len);
    }
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 3);
    bs_resp_str(&b, "SENTINEL");
    bs_resp_str(&b, "get-master-addr-by-name");
    bs_resp_str(&b, cfg->master_name);
    if (!b.overflow)
        redisAsyncFormattedCommand(sac, on_sentinel_reply, NULL, bs_resp_finish(&b), b.len);
    c->retry_timer.data = c;
    uv_timer_start(&c->retry_timer, on_sentinel_deadline,
                   cfg->connect_timeout_ms < BS_SENTINEL_TIMEOUT_MS ? cfg->connect_timeout_ms
                                                                    : BS_SENTINEL_TIMEOUT_MS,
                   0);
}

/* ------------------------------------------------------------ life cycle */

/* connect_now - start one connection attempt (from the retry timer) */
static void connect_now(bs_redis_conn *c)
{
    const bs_endpoint *ep = &c->cfg->redis;
    redisAsyncContext *ac;

    if (c->state == ST_CLOSED || c->ac || c->sac)
        return;
    if (c->cfg->nsentinels) {
        if (!c->discovered) {
            /* every (re)connect asks the sentinels afresh */
            c->sentinel_next = 0;
            c->state = ST_CONNECTING;
            sentinel_ask(c);
            return;
        }
        c->discovered = 0;
        ep = &c->master;
    }
    if (ep->type == BS_EP_UNIX)
        ac = redisAsyncConnectUnix(ep->path);
    else
        ac = redisAsyncConnect(ep->host, (int)ep->port);
    if (!ac || ac->err) {
        note_failure(c, "cannot connect: %s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    if (bs_redis_uv_attach(ac, c->loop) < 0) {
        redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    ac->data = c;
    ac->c.reader->fn = bs_redis_reply_fns(); /* replies from a free list */
    c->ac = ac;
    c->state = ST_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->retry_timer.data = c;
    uv_timer_start(&c->retry_timer, on_connect_deadline, c->cfg->connect_timeout_ms, 0);
    if (handshake(c) < 0)
        bs__redis_conn_drop(c, "cannot queue handshake");
}

/* on_tick - stall detection; the owner's periodic work; Sentinel probe */
static void on_tick(uv_timer_t *t)
{
    bs_redis_conn *c = t->data;
    uint64_t now = uv_now(c->loop);
    uint64_t stall = c->cfg->timeout_ms * 3 > 1000 ? c->cfg->timeout_ms * 3 : 1000;

    if (bs__redis_conn_ready(c) && c->outstanding && now - c->busy_since > stall) {
        bs_stat.redis_stalls++;
        bs__redis_conn_drop(c, "no reply in time (Redis stalled?)");
        return;
    }
    if (bs__redis_conn_ready(c))
        c->hooks->tick(c->owner, now);
    else if (c->state != ST_CLOSED && c->hooks->down)
        c->hooks->down(c->owner, now);
    if (c->cfg->nsentinels && bs__redis_conn_ready(c) && !c->sac &&
        now - c->last_probe >= BS_SENTINEL_PROBE_MS) {
        c->last_probe = now;
        c->probing = 1;
        c->sentinel_next = 0;
        sentinel_ask(c);
    }
}

void bs__redis_conn_start(bs_redis_conn *c, uv_loop_t *loop, const bs_config *cfg,
                          const bs_redis_conn_hooks *hooks, void *owner)
{
    unsigned i;

    memset(c, 0, sizeof(*c));
    for (i = 0; i < BS_CFG_MAX_SENTINELS; i++)
        c->sentinel_order[i] = i;
    c->loop = loop;
    c->cfg = cfg;
    c->hooks = hooks;
    c->owner = owner;
    c->backoff_ms = BS_REDIS_BACKOFF_MIN_MS;
    uv_timer_init(loop, &c->retry_timer);
    uv_timer_init(loop, &c->tick_timer);
    c->retry_timer.data = c->tick_timer.data = c;
    c->open_handles = 2;
    uv_timer_start(&c->tick_timer, on_tick, BS_REDIS_TICK_MS, BS_REDIS_TICK_MS);
    connect_now(c);
}

/* same_connection - nothing that needs a new connection changed */
static int same_connection(const bs_config *a, const bs_config *b)
{
    return memcmp(&a->redis, &b->redis, sizeof(a->redis)) == 0 && a->nsentinels == b->nsentinels &&
           memcmp(a->sentinels, b->sentinels, a->nsentinels * sizeof(a->sentinels[0])) == 0 &&
           strcmp(a->master_name, b->master_name) == 0 &&
           strcmp(a->sentinel_password, b->sentinel_password) == 0 &&
           strcmp(a->username, b->username) == 0 && strcmp(a->password, b->password) == 0 &&
           a->db == b->db;
}

void bs__redis_conn_reconfigure(bs_redis_conn *c, const bs_config *old)
{
    if (same_connection(old, c->cfg))
        return;
    bs_info("redis: settings changed, reconnecting");
    c->failures = 0;
    c->backoff_ms = BS_REDIS_BACKOFF_MIN_MS;
    c->discovered = 0;
    if (c->ac) {
        bs__redis_conn_drop(c, "reconfigured");
    } else {
        sentinel_close(c);
        uv_timer_stop(&c->retry_timer);
        schedule_retry(c);
    }
    c->failures = 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    bs_redis_conn *c = h->data;

    if (--c->open_handles == 0) {
        bs_redis_reply_pool_free();
        c->hooks->closed(c->owner); /* frees c */
    }
}

/* finish_close - free the connection now, close our handles (the owner is
 * freed when both have closed) */
static void finish_close(bs_redis_conn *c)
{
    redisAsyncContext *ac = c->ac;

    sentinel_close(c);
    c->ac = NULL;
    if (ac)
        redisAsyncFree(ac);
    if (c->open_handles == 2 && !uv_is_closing((uv_handle_t *)&c->tick_timer)) {
        uv_close((uv_handle_t *)&c->retry_timer, on_handle_closed);
        uv_close((uv_handle_t *)&c->tick_timer, on_handle_closed);
    }
}

static void on_close_deadline(uv_timer_t *t)
{
    finish_close(t->data);
}

void bs__redis_conn_close(bs_redis_conn *c)
{
    if (bs__redis_conn_ready(c)) {
        /* let hiredis close gracefully (what is queued is written first),
         * but never wait for a stalled Redis longer than the deadline */
        c->state = ST_CLOSED;
        redisAsyncDisconnect(c->ac);
        uv_timer_stop(&c->retry_timer);
        uv_timer_start(&c->retry_timer, on_close_deadline, BS_REDIS_CLOSE_MS, 0);
        return;
    }
    c->state = ST_CLOSED;
    finish_close(c);
}
