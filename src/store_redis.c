/*
 * store_redis.c - the Redis store (see store.h and store_redis.h)
 *
 * Provides bs_store_redis_new/_reconfigure/_close and the bs_store ops.
 *
 * One hiredis async connection carries every query of the process. The
 * queries of one request are pipelined (sent together, one round trip) and
 * hiredis batches the requests of all clients that arrive in the same loop
 * iteration into one write. Commands are built in RESP form by resp.c (no
 * printf formatting) and handed over with redisAsyncFormattedCommand.
 *
 * Deadlines are ours (hiredis 0.14 has none): a connect+handshake deadline
 * ([redis] connect_timeout); a stall detector that drops the connection when
 * commands are outstanding and Redis has sent nothing for
 * max(1s, 3 x [redis] timeout), so a frozen Redis (SIGSTOP) cannot hold the
 * pool forever; reconnection with exponential backoff (100 ms .. 2 s). The
 * per-request answer deadline is the caller's (conn.c).
 *
 * Each query owns an op from a pool of [redis] max_pending ops, allocated
 * once; when the pool is empty a query is refused at once (BS_WHY_REDIS_BUSY)
 * and counted. hiredis callbacks carry a pointer to the op, which belongs to
 * this store and outlives its commands; callers are reached only through
 * their (arg, id) pair. On disconnect hiredis calls every pending callback
 * with reply == NULL: the op then completes with BS_WHY_REDIS_DOWN.
 *
 * Rate tracking and NDR budgets are Lua scripts (atomic, clock from Redis
 * TIME), loaded at connect, run with EVALSHA and re-sent with EVAL on
 * NOSCRIPT. They run only on the invalid-recipient and NDR-limit paths; the
 * common path is GET/SISMEMBER/SMISMEMBER/HMGET (Redis >= 6.2).
 *
 * With [redis] sentinel entries the master is found through Redis Sentinel
 * before every (re)connect and verified with ROLE; a -READONLY reply (a
 * failover demoted our server) drops the connection, which rediscovers.
 *
 * Never: blocks (host names in [redis] server are resolved by hiredis with
 * getaddrinfo; use an IP address or a unix socket), formats commands with
 * printf, or exits because of Redis.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "backstop/log.h"
#include "backstop/redis_reply.h"
#include "backstop/redis_uv.h"
#include "backstop/resp.h"
#include "backstop/stats.h"
#include "backstop/store_redis.h"

#define BS_REDIS_BACKOFF_MIN_MS 100
#define BS_REDIS_BACKOFF_MAX_MS 2000
#define BS_SENTINEL_BACKOFF_MAX_MS 500 /* each retry asks a sentinel afresh */
#define BS_SENTINEL_PROBE_MS 1000      /* how often a connected store re-asks */
#define BS_REDIS_TICK_MS 100
#define BS_REDIS_STATS_FLUSH_MS 1000
#define BS_REDIS_CMD_MAX 8192 /* one pipelined command, built on the stack */
#define BS_REDIS_MAX_CMDS 6   /* commands in one op */

/*
 * Sliding-window invalid-recipient counter. KEYS: rate, block, stats (the
 * keys it writes). ARGV: limit, window ms, block ms, reason, client
 * address, client key, and the exempt SET's name: only read, so it is no
 * KEYS entry (Redis ACLs treat every script key as written, and a tight
 * ACL lets backstopd only read the exempt SET). Returns the count that
 * tripped the block, 0, or -1 for a member of the exempt SET (not counted).
 * The zset holds at most limit+1 members and expires.
 */
static const char script_rate[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "if redis.call('SISMEMBER', ARGV[7], ARGV[5]) == 1 or\n"
    "   redis.call('SISMEMBER', ARGV[7], ARGV[6]) == 1 then return -1 end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local window = tonumber(ARGV[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)\n"
    "local n = redis.call('ZCARD', KEYS[1]) + 1\n"
    "redis.call('ZADD', KEYS[1], now, t[1] .. '.' .. t[2] .. '.' .. n)\n"
    "redis.call('PEXPIRE', KEYS[1], window)\n"
    "if n > tonumber(ARGV[1]) then\n"
    "  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('HINCRBY', KEYS[3], 'clients_blocked', 1)\n"
    "  return n\n"
    "end\n"
    "return 0\n";

/* Fixed-window NDR budget. KEYS: counter. ARGV: limit, period ms.
 * Returns 1 within the budget, 0 over it. */
static const char script_ndr[] = "local n = redis.call('INCR', KEYS[1])\n"
                                 "if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then\n"
                                 "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                 "end\n"
                                 "if n > tonumber(ARGV[1]) then return 0 end\n"
                                 "return 1\n";

enum conn_state { ST_DOWN = 0, ST_CONNECTING, ST_READY, ST_CLOSED };

enum op_kind { OP_LOOKUP = 1, OP_TAKE, OP_NOTE };

typedef struct bs_redis bs_redis;

/* One query in flight. Owned by the pool; on the free list when idle. */
typedef struct bs_redis_op {
    bs_redis *r;
    struct bs_redis_op *next_free;
    int kind;          /* enum op_kind */
    int status;        /* 0 or BS_WHY_REDIS_* */
    unsigned pending;  /* replies still expected */
    unsigned nreplied; /* replies seen, indexes kinds[] */
    uint8_t kinds[BS_REDIS_MAX_CMDS];
    void *arg;
    uint64_t id;
    union {
        bs_store_facts_cb *facts;
        bs_store_take_cb *take;
    } cb;
    int result;                     /* OP_TAKE */
    bs_facts facts;                 /* OP_LOOKUP */
    char key[BS_DOMAIN_MAX + 1];    /* OP_TAKE: domain; OP_NOTE: client key */
    char ip[BS_CLIENT_KEY_MAX + 1]; /* OP_NOTE: client address */
    bs_ndr_rule rule;               /* OP_TAKE */
} bs_redis_op;

struct bs_redis {
    bs_store base;
    uv_loop_t *loop;
    const bs_config *cfg;
    redisAsyncContext *ac;
    int state; /* enum conn_state */
    unsigned handshake_pending;
    uv_timer_t retry_timer; /* reconnect backoff, and connect deadline */
    uv_timer_t tick_timer;  /* stall detector and stats flush */
    int open_handles;
    uint64_t backoff_ms;
    unsigned failures;    /* connection attempts failed since last ready */
    uint64_t busy_since;  /* last progress while commands are outstanding */
    unsigned outstanding; /* commands sent, not yet replied */
    uint64_t last_flush;
    uint64_t last_err_log;
    unsigned suppressed_errs;
    char sha_rate[41];
    char sha_ndr[41];
    /* Sentinel discovery ([redis] sentinel): the sentinel being asked, the
     * order to ask them in (the last one that answered first), the result */
    redisAsyncContext *sac;
    unsigned sentinel_order[BS_CFG_MAX_SENTINELS];
    unsigned sentinel_next;
    int discovered;
    int probing; /* asking a sentinel while connected (on_tick) */
    uint64_t last_probe;
    bs_endpoint master;
    uint64_t pending_stats[BS_WHY_COUNT];
    bs_redis_op *ops;
    bs_redis_op *free_ops;
};

static void connect_now(bs_redis *r);
static void sentinel_ask(bs_redis *r);
static void retry_cb(uv_timer_t *t);
static void finish_close(bs_redis *r);

/* key_part - prefix + name, as one argument */
static void arg_key(bs_resp *b, const bs_redis *r, const char *name, const char *sub)
{
    char tmp[BS_CFG_PREFIX_MAX + 16 + BS_DOMAIN_MAX + 1];
    size_t pl = strlen(r->cfg->prefix), nl = strlen(name), sl = sub ? strlen(sub) : 0;

    if (pl + nl + sl > sizeof(tmp)) {
        b->overflow = 1;
        return;
    }
    memcpy(tmp, r->cfg->prefix, pl);
    memcpy(tmp + pl, name, nl);
    if (sl)
        memcpy(tmp + pl + nl, sub, sl);
    bs_resp_arg(b, tmp, pl + nl + sl);
}

/* warn_rate_limited - at most one Redis error line a second; the rest are
 * counted and their number said in the next line */
static void warn_rate_limited(bs_redis *r, const char *what, const char *text)
{
    uint64_t now = uv_now(r->loop);
    char esc[256];

    if (now - r->last_err_log < 1000 && r->last_err_log) {
        r->suppressed_errs++;
        return;
    }
    bs_escape(text, strlen(text), esc, sizeof(esc));
    bs_warn("redis: %s: %s%s", what, esc, r->suppressed_errs ? " (and earlier errors)" : "");
    r->last_err_log = now;
    r->suppressed_errs = 0;
}

/* op_get - a free op, or NULL when max_pending are in flight */
static bs_redis_op *op_get(bs_redis *r, int kind)
{
    bs_redis_op *op = r->free_ops;

    if (!op)
        return NULL;
    r->free_ops = op->next_free;
    memset(op, 0, sizeof(*op));
    op->r = r;
    op->kind = kind;
    op->facts.ndr_index = -1;
    return op;
}

static void op_put(bs_redis *r, bs_redis_op *op)
{
    op->next_free = r->free_ops;
    r->free_ops = op;
}

/* op_done - deliver the result to the caller and recycle the op */
static void op_done(bs_redis_op *op)
{
    bs_redis *r = op->r;

    if (r->state == ST_CLOSED) {
        /* after bs_store_redis_close() the callers are gone: no callbacks */
        op_put(r, op);
        return;
    }
    switch (op->kind) {
    case OP_LOOKUP:
        op->cb.facts(op->arg, op->id, op->status, &op->facts);
        break;
    case OP_TAKE:
        op->cb.take(op->arg, op->id, op->status, op->status ? -1 : op->result);
        break;
    default:
        break;
    }
    op_put(r, op);
}

/* bs__redis_apply_reply - see store_redis.h */
int bs__redis_apply_reply(int kind, const redisReply *rep, bs_facts *f, int *result)
{
    size_t i;

    if (rep->type == REDIS_REPLY_ERROR)
        return -1;
    switch (kind) {
    case BS_REPLY_BLOCK:
        if (rep->type == REDIS_REPLY_NIL)
            return 0;
        if (rep->type != REDIS_REPLY_STRING)
            return -1;
        f->blocked = 1;
        bs_escape(rep->str, rep->len, f->block_reason, sizeof(f->block_reason));
        return 0;
    case BS_REPLY_DOMAIN:
        if (rep->type != REDIS_REPLY_INTEGER)
            return -1;
        f->protected_domain = rep->integer == 1;
        return 0;
    case BS_REPLY_EXEMPT:
    case BS_REPLY_RCPT:
        if (rep->type != REDIS_REPLY_ARRAY)
            return -1;
        for (i = 0; i < rep->elements; i++) {
            if (rep->element[i]->type != REDIS_REPLY_INTEGER)
                return -1;
            if (rep->element[i]->integer == 1)
                *(kind == BS_REPLY_EXEMPT ? &f->exempt : &f->rcpt_known) = 1;
        }
        return 0;
    case BS_REPLY_NDR:
        if (rep->type != REDIS_REPLY_ARRAY)
            return -1;
        for (i = 0; i < rep->elements; i++) {
            const redisReply *e = rep->element[i];
            if (e->type == REDIS_REPLY_NIL)
                continue;
            if (e->type != REDIS_REPLY_STRING)
                return -1;
            if (f->ndr_index < 0) {
                size_t n = e->len < sizeof(f->ndr_value) - 1 ? e->len : sizeof(f->ndr_value) - 1;
                memcpy(f->ndr_value, e->str, n);
                f->ndr_value[n] = 0;
                f->ndr_value_len = n;
                f->ndr_index = (int)i;
            }
        }
        return 0;
    case BS_REPLY_TAKE:
    case BS_REPLY_NOTE:
        if (rep->type != REDIS_REPLY_INTEGER)
            return -1;
        *result = (int)(rep->integer > INT_MAX   ? INT_MAX
                        : rep->integer < INT_MIN ? INT_MIN
                                                 : rep->integer);
        return 0;
    default:
        return -1;
    }
}

static int send_script(bs_redis_op *op, int eval);
static void drop(bs_redis *r, const char *why);
static void sentinel_close(bs_redis *r);

/* on_op_reply - hiredis callback for every command of every op */
static void on_op_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_op *op = privdata;
    bs_redis *r = op->r;
    redisReply *rep = reply;
    int kind = op->kinds[op->nreplied++];

    r->outstanding--;
    op->pending--;
    if (rep == NULL) {
        if (!op->status)
            op->status = BS_WHY_REDIS_DOWN;
    } else {
        r->busy_since = uv_now(r->loop);
        if (rep->type == REDIS_REPLY_ERROR && (kind == BS_REPLY_TAKE || kind == BS_REPLY_NOTE) &&
            strncmp(rep->str, "NOSCRIPT", 8) == 0 && r->ac == ac) {
            bs_stat.redis_noscript++;
            op->nreplied--;
            if (send_script(op, 1) == 0)
                return;
            op->nreplied++;
        }
        if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "READONLY", 8) == 0 &&
            r->ac == ac) {
            /* a failover made our master a replica: find the new one */
            if (!op->status)
                op->status = BS_WHY_REDIS_ERROR;
            drop(r, "server is a replica now (READONLY)");
        }
        if (bs__redis_apply_reply(kind, rep, &op->facts, &op->result) < 0 && !op->status) {
            op->status = BS_WHY_REDIS_ERROR;
            bs_stat.redis_errors++;
            warn_rate_limited(r, "unexpected reply",
                              rep->type == REDIS_REPLY_ERROR ? rep->str : "wrong reply type");
        }
    }
    if (op->pending)
        return;
    if (op->kind == OP_NOTE && !op->status && op->result > 0) {
        bs_stat.clients_blocked++;
        bs_info("client %s blocked for %llus: %d invalid recipients within %llus (limit %u)",
                op->key, (unsigned long long)(r->cfg->block_time_ms / 1000), op->result,
                (unsigned long long)(r->cfg->invalid_window_ms / 1000), r->cfg->invalid_limit);
    }
    op_done(op);
}

/* queue - hand one built command to hiredis under op; 0 or -1 */
static int queue(bs_redis_op *op, int kind, const bs_resp *b)
{
    bs_redis *r = op->r;

    if (b->overflow || op->pending + op->nreplied >= BS_REDIS_MAX_CMDS)
        return -1;
    if (redisAsyncFormattedCommand(r->ac, on_op_reply, op, b->buf, b->len) != REDIS_OK)
        return -1;
    op->kinds[op->nreplied + op->pending] = (uint8_t)kind;
    op->pending++;
    if (r->outstanding++ == 0)
        r->busy_since = uv_now(r->loop);
    return 0;
}

/* check_ready - BS_WHY_REDIS_DOWN unless the connection can take queries */
static int check_ready(const bs_redis *r)
{
    return (r->state == ST_READY && r->ac) ? 0 : BS_WHY_REDIS_DOWN;
}

/* finish_queueing - after queueing an op's commands: 0 when at least one
 * went (the op completes later), else recycle it and report why */
static int finish_queueing(bs_redis *r, bs_redis_op *op, int failed)
{
    if (failed && !op->status)
        op->status = BS_WHY_REDIS_ERROR;
    if (op->pending)
        return 0;
    op_put(r, op);
    return BS_WHY_REDIS_ERROR;
}

/* r_lookup - the pipelined read queries of one RCPT request */
static int r_lookup(bs_store *s, const bs_lookup *q, bs_store_facts_cb *cb, void *arg, uint64_t id)
{
    bs_redis *r = (bs_redis *)s;
    char buf[BS_REDIS_CMD_MAX];
    bs_redis_op *op;
    bs_resp b;
    unsigned i;
    int failed = 0;

    if (check_ready(r))
        return BS_WHY_REDIS_DOWN;
    if (!(op = op_get(r, OP_LOOKUP))) {
        bs_stat.redis_busy++;
        return BS_WHY_REDIS_BUSY;
    }
    op->cb.facts = cb;
    op->arg = arg;
    op->id = id;
    if (q->client_key) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2);
        bs_resp_str(&b, "GET");
        arg_key(&b, r, "block:", q->client_key);
        failed |= queue(op, BS_REPLY_BLOCK, &b);
    }
    if (q->nexempt) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2 + q->nexempt);
        bs_resp_str(&b, "SMISMEMBER");
        arg_key(&b, r, "exempt", NULL);
        for (i = 0; i < q->nexempt; i++)
            bs_resp_str(&b, q->exempt[i]);
        failed |= queue(op, BS_REPLY_EXEMPT, &b);
    }
    if (q->domain) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 3);
        bs_resp_str(&b, "SISMEMBER");
        arg_key(&b, r, "domains", NULL);
        bs_resp_str(&b, q->domain);
        failed |= queue(op, BS_REPLY_DOMAIN, &b);

        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2 + q->nlocals);
        bs_resp_str(&b, "SMISMEMBER");
        arg_key(&b, r, "rcpt:", q->domain);
        for (i = 0; i < q->nlocals; i++)
            bs_resp_arg(&b, q->locals[i], q->local_lens[i]);
        failed |= queue(op, BS_REPLY_RCPT, &b);
    }
    if (q->nndr) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2 + q->nndr);
        bs_resp_str(&b, "HMGET");
        arg_key(&b, r, "ndr", NULL);
        for (i = 0; i < q->nndr; i++)
            bs_resp_str(&b, q->ndr_fields[i]);
        failed |= queue(op, BS_REPLY_NDR, &b);
    }
    return finish_queueing(r, op, failed);
}

/* send_script - the op's script by EVALSHA, or by EVAL (after NOSCRIPT) */
static int send_script(bs_redis_op *op, int eval)
{
    bs_redis *r = op->r;
    const bs_config *cfg = r->cfg;
    char buf[BS_REDIS_CMD_MAX];
    bs_resp b;
    const char *sha = op->kind == OP_TAKE ? r->sha_ndr : r->sha_rate;
    const char *body = op->kind == OP_TAKE ? script_ndr : script_rate;

    if (!r->ac)
        return -1;
    bs_resp_init(&b, buf, sizeof(buf));
    if (op->kind == OP_TAKE) {
        bs_resp_cmd(&b, 6);
        bs_resp_str(&b, eval ? "EVAL" : "EVALSHA");
        bs_resp_str(&b, eval ? body : sha);
        bs_resp_str(&b, "1");
        arg_key(&b, r, "ndrcount:", op->key);
        bs_resp_u64(&b, op->rule.limit);
        bs_resp_u64(&b, op->rule.period_ms);
    } else {
        bs_resp_cmd(&b, 13);
        bs_resp_str(&b, eval ? "EVAL" : "EVALSHA");
        bs_resp_str(&b, eval ? body : sha);
        bs_resp_str(&b, "3");
        arg_key(&b, r, "rate:", op->key);
        arg_key(&b, r, "block:", op->key);
        arg_key(&b, r, "stats", NULL);
        bs_resp_u64(&b, cfg->invalid_limit);
        bs_resp_u64(&b, cfg->invalid_window_ms);
        bs_resp_u64(&b, cfg->block_time_ms);
        bs_resp_str(&b, "too many invalid recipients");
        bs_resp_str(&b, op->ip);
        bs_resp_str(&b, op->key);
        arg_key(&b, r, "exempt", NULL);
    }
    return queue(op, op->kind == OP_TAKE ? BS_REPLY_TAKE : BS_REPLY_NOTE, &b);
}

static int r_ndr_take(bs_store *s, const char *domain, const bs_ndr_rule *rule,
                      bs_store_take_cb *cb, void *arg, uint64_t id)
{
    bs_redis *r = (bs_redis *)s;
    bs_redis_op *op;

    if (check_ready(r))
        return BS_WHY_REDIS_DOWN;
    if (!(op = op_get(r, OP_TAKE))) {
        bs_stat.redis_busy++;
        return BS_WHY_REDIS_BUSY;
    }
    op->cb.take = cb;
    op->arg = arg;
    op->id = id;
    op->rule = *rule;
    snprintf(op->key, sizeof(op->key), "%s", domain);
    return finish_queueing(r, op, send_script(op, !r->sha_ndr[0]));
}

static void r_note_invalid(bs_store *s, const char *client_key, const char *client_ip)
{
    bs_redis *r = (bs_redis *)s;
    bs_redis_op *op;

    if (check_ready(r))
        return;
    if (!(op = op_get(r, OP_NOTE))) {
        bs_stat.redis_busy++;
        return;
    }
    snprintf(op->key, sizeof(op->key), "%s", client_key);
    snprintf(op->ip, sizeof(op->ip), "%s", client_ip);
    finish_queueing(r, op, send_script(op, !r->sha_rate[0]));
}

static void r_count(bs_store *s, int why)
{
    bs_redis *r = (bs_redis *)s;

    if (why >= 0 && why < BS_WHY_COUNT)
        r->pending_stats[why]++;
}

static int r_ready(const bs_store *s)
{
    return check_ready((const bs_redis *)s) == 0;
}

static const bs_store_ops redis_ops = {
    .lookup = r_lookup,
    .ndr_take = r_ndr_take,
    .note_invalid = r_note_invalid,
    .count = r_count,
    .ready = r_ready,
};

/* schedule_retry - reconnect after the current backoff, then double it */
static void schedule_retry(bs_redis *r)
{
    /* with Sentinel each attempt asks afresh, so retrying often is cheap and
     * follows a failover sooner */
    uint64_t cap = r->cfg->nsentinels ? BS_SENTINEL_BACKOFF_MAX_MS : BS_REDIS_BACKOFF_MAX_MS;
    uint64_t delay = r->backoff_ms > cap ? cap : r->backoff_ms;

    if (r->state == ST_CLOSED)
        return;
    r->state = ST_DOWN;
    r->backoff_ms = delay * 2 > cap ? cap : delay * 2;
    uv_timer_start(&r->retry_timer, retry_cb, delay, 0);
}

/* note_failure - a failed attempt: the first after a success is a warning,
 * the retries that follow are debug lines (a Redis outage is logged once) */
static void note_failure(bs_redis *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_failure(bs_redis *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->failures++ == 0)
        bs_warn("redis: %s", msg);
    else
        bs_debug("redis: attempt %u failed: %s", r->failures, msg);
}

/* endpoint_name - where the connection goes: the master Sentinel named, or
 * [redis] server */
static void endpoint_name(const bs_redis *r, char *out, size_t outsz)
{
    const bs_endpoint *ep = r->cfg->nsentinels ? &r->master : &r->cfg->redis;

    if (ep->type == BS_EP_UNIX)
        snprintf(out, outsz, "unix:%s", ep->path);
    else
        snprintf(out, outsz, "%s:%u", ep->host, ep->port);
}

/* drop - abandon the connection now: pending commands call back with NULL
 * (their ops complete with BS_WHY_REDIS_DOWN); then reconnect later. */
static void drop(bs_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    char where[BS_CFG_PATH_MAX + 16];

    if (!ac)
        return;
    if (r->probing) {
        r->probing = 0;
        sentinel_close(r);
    }
    endpoint_name(r, where, sizeof(where));
    note_failure(r, "connection to %s dropped: %s", where, why);
    r->ac = NULL;
    r->state = ST_DOWN;
    bs_stat.redis_disconnects++;
    uv_timer_stop(&r->retry_timer);
    redisAsyncFree(ac); /* deferred by hiredis if we are inside its callback */
    schedule_retry(r);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    bs_redis *r = ac->data;

    if (ac != r->ac || status == REDIS_OK)
        return;
    /* hiredis frees the context after this callback */
    r->ac = NULL;
    note_failure(r, "cannot connect: %s", ac->errstr);
    uv_timer_stop(&r->retry_timer);
    schedule_retry(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    bs_redis *r = ac->data;

    if (ac != r->ac)
        return;
    r->ac = NULL;
    if (r->state == ST_CLOSED) {
        finish_close(r);
        return;
    }
    bs_stat.redis_disconnects++;
    note_failure(r, "connection lost: %s", ac->err ? ac->errstr : "closed by server");
    uv_timer_stop(&r->retry_timer);
    schedule_retry(r);
}

/* on_handshake - AUTH, SELECT and SCRIPT LOAD replies */
static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = ac->data;
    redisReply *rep = reply;
    char *sha = privdata;

    if (!rep || ac != r->ac)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        char what[320];
        snprintf(what, sizeof(what), "handshake failed: %.200s", rep->str);
        drop(r, what);
        return;
    }
    if (sha && rep->type == REDIS_REPLY_STRING && rep->len == 40) {
        memcpy(sha, rep->str, 40);
        sha[40] = 0;
    }
    if (--r->handshake_pending == 0) {
        uv_timer_stop(&r->retry_timer);
        r->state = ST_READY;
        r->backoff_ms = BS_REDIS_BACKOFF_MIN_MS;
        bs_stat.redis_connects++;
        char where[BS_CFG_PATH_MAX + 16];
        endpoint_name(r, where, sizeof(where));
        if (r->failures)
            bs_info("redis: connected to %s again after %u failed attempt(s)", where, r->failures);
        else
            bs_info("redis: connected to %s", where);
        r->failures = 0;
    }
}

/* on_role - the server we reached must be a master: writes go there */
static void on_role(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = ac->data;
    redisReply *rep = reply;

    if (!rep || ac != r->ac)
        return;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(rep->element[0]->str, "master") == 0) {
        on_handshake(ac, reply, NULL);
        return;
    }
    if (r->cfg->nsentinels) {
        drop(r, "the server Sentinel named is not a master (yet)");
        return;
    }
    bs_warn("redis: server is not a master: writes (rate tracking, NDR limits) will fail");
    on_handshake(ac, reply, NULL);
}

/* on_connect_deadline - connect + handshake took longer than connect_timeout */
static void on_connect_deadline(uv_timer_t *t)
{
    drop(t->data, "connect/handshake timed out");
}

/* handshake - queue AUTH/SELECT/SCRIPT LOAD; hiredis sends them on connect */
static int handshake(bs_redis *r)
{
    const bs_config *cfg = r->cfg;
    char buf[BS_REDIS_CMD_MAX];
    bs_resp b;
    int rc = 0;

    r->handshake_pending = 0;
    r->sha_rate[0] = r->sha_ndr[0] = 0;
    if (cfg->password[0]) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, cfg->username[0] ? 3 : 2);
        bs_resp_str(&b, "AUTH");
        if (cfg->username[0])
            bs_resp_str(&b, cfg->username);
        bs_resp_str(&b, cfg->password);
        rc |= redisAsyncFormattedCommand(r->ac, on_handshake, NULL, b.buf, b.len);
        r->handshake_pending++;
    }
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_str(&b, "SELECT");
    bs_resp_u64(&b, cfg->db);
    rc |= redisAsyncFormattedCommand(r->ac, on_handshake, NULL, b.buf, b.len);
    r->handshake_pending++;
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 1);
    bs_resp_str(&b, "ROLE");
    rc |= redisAsyncFormattedCommand(r->ac, on_role, NULL, b.buf, b.len);
    r->handshake_pending++;
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 3);
    bs_resp_str(&b, "SCRIPT");
    bs_resp_str(&b, "LOAD");
    bs_resp_str(&b, script_rate);
    rc |= redisAsyncFormattedCommand(r->ac, on_handshake, r->sha_rate, b.buf, b.len);
    r->handshake_pending++;
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 3);
    bs_resp_str(&b, "SCRIPT");
    bs_resp_str(&b, "LOAD");
    bs_resp_str(&b, script_ndr);
    rc |= redisAsyncFormattedCommand(r->ac, on_handshake, r->sha_ndr, b.buf, b.len);
    r->handshake_pending++;
    return rc == REDIS_OK ? 0 : -1;
}

/*
 * Sentinel discovery (the Redis Sentinel client spec): ask each sentinel in
 * turn, with a short deadline, "SENTINEL get-master-addr-by-name"; move the
 * first one that answers to the front of the list; connect to the address
 * it gave and verify it with ROLE (on_role). Any failure moves on to the
 * next sentinel; when none answers, retry after the backoff.
 */
#define BS_SENTINEL_TIMEOUT_MS 500

static void sentinel_close(bs_redis *r)
{
    redisAsyncContext *sac = r->sac;

    r->sac = NULL;
    if (sac)
        redisAsyncFree(sac); /* deferred by hiredis inside its callback */
}

/* sentinel_skip - this sentinel failed: ask the next one */
static void sentinel_skip(bs_redis *r, const char *why)
{
    const bs_endpoint *ep;

    if (r->sentinel_next < r->cfg->nsentinels) {
        ep = &r->cfg->sentinels[r->sentinel_order[r->sentinel_next]];
        bs_debug("redis: sentinel %s:%u: %s", ep->host, ep->port, why);
    }
    sentinel_close(r);
    uv_timer_stop(&r->retry_timer);
    if (r->probing) {
        /* a failed check changes nothing; the next tick asks the next one */
        r->probing = 0;
        if (r->cfg->nsentinels > 1) {
            unsigned first = r->sentinel_order[0];
            memmove(r->sentinel_order, r->sentinel_order + 1,
                    (r->cfg->nsentinels - 1) * sizeof(r->sentinel_order[0]));
            r->sentinel_order[r->cfg->nsentinels - 1] = first;
        }
        return;
    }
    r->sentinel_next++;
    sentinel_ask(r);
}

static void on_sentinel_deadline(uv_timer_t *t)
{
    sentinel_skip(t->data, "no answer in time");
}

static void on_sentinel_connect(const redisAsyncContext *ac, int status)
{
    bs_redis *r = ac->data;

    if (ac != r->sac || status == REDIS_OK)
        return;
    r->sac = NULL; /* hiredis frees it after this callback */
    sentinel_skip(r, ac->errstr);
}

static void on_sentinel_disconnect(const redisAsyncContext *ac, int status)
{
    bs_redis *r = ac->data;

    if (ac != r->sac)
        return;
    r->sac = NULL;
    sentinel_skip(r, "connection lost");
}

static void on_sentinel_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = ac->data;
    redisReply *rep = reply;

    if (rep && ac == r->sac && rep->type == REDIS_REPLY_ERROR)
        sentinel_skip(r, rep->str);
}

static void on_sentinel_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = ac->data;
    redisReply *rep = reply;
    unsigned first, i;
    long port;

    if (!rep || ac != r->sac)
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING ||
        rep->element[0]->len >= sizeof(r->master.host) ||
        (port = strtol(rep->element[1]->str, NULL, 10)) < 1 || port > 65535) {
        sentinel_skip(r, rep->type == REDIS_REPLY_ERROR ? rep->str : "does not know the master");
        return;
    }
    if (r->probing) {
        /* a planned failover: the old master still answers as a master for
         * a while, and what we write there is lost; follow Sentinel now */
        int moved = strlen(r->master.host) != rep->element[0]->len ||
                    memcmp(r->master.host, rep->element[0]->str, rep->element[0]->len) != 0 ||
                    r->master.port != (unsigned)port;
        r->probing = 0;
        sentinel_close(r);
        uv_timer_stop(&r->retry_timer);
        if (moved && r->ac)
            drop(r, "Sentinel names another master");
        return;
    }
    memset(&r->master, 0, sizeof(r->master));
    r->master.type = BS_EP_INET;
    memcpy(r->master.host, rep->element[0]->str, rep->element[0]->len);
    r->master.port = (unsigned)port;
    /* the sentinel that answered is asked first next time */
    first = r->sentinel_order[r->sentinel_next];
    for (i = r->sentinel_next; i > 0; i--)
        r->sentinel_order[i] = r->sentinel_order[i - 1];
    r->sentinel_order[0] = first;
    bs_debug("redis: sentinel says master %s is %s:%u", r->cfg->master_name, r->master.host,
             r->master.port);
    sentinel_close(r);
    uv_timer_stop(&r->retry_timer);
    r->discovered = 1;
    r->state = ST_DOWN;
    connect_now(r);
}

/* sentinel_ask - ask sentinel number sentinel_next (in sentinel_order) */
static void sentinel_ask(bs_redis *r)
{
    const bs_config *cfg = r->cfg;
    const bs_endpoint *ep;
    redisAsyncContext *sac;
    char buf[1024];
    bs_resp b;

    if (r->state == ST_CLOSED)
        return;
    if (r->sentinel_next >= cfg->nsentinels) {
        note_failure(r, "no sentinel answered for master \"%s\"", cfg->master_name);
        schedule_retry(r);
        return;
    }
    ep = &cfg->sentinels[r->sentinel_order[r->sentinel_next]];
    sac = redisAsyncConnect(ep->host, (int)ep->port);
    if (!sac || sac->err || bs_redis_uv_attach(sac, r->loop) < 0) {
        if (sac)
            redisAsyncFree(sac);
        r->sentinel_next++;
        sentinel_ask(r);
        return;
    }
    sac->data = r;
    r->sac = sac;
    redisAsyncSetConnectCallback(sac, on_sentinel_connect);
    redisAsyncSetDisconnectCallback(sac, on_sentinel_disconnect);
    if (cfg->sentinel_password[0]) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2);
        bs_resp_str(&b, "AUTH");
        bs_resp_str(&b, cfg->sentinel_password);
        redisAsyncFormattedCommand(sac, on_sentinel_auth, NULL, b.buf, b.len);
    }
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 3);
    bs_resp_str(&b, "SENTINEL");
    bs_resp_str(&b, "get-master-addr-by-name");
    bs_resp_str(&b, cfg->master_name);
    redisAsyncFormattedCommand(sac, on_sentinel_reply, NULL, b.buf, b.len);
    r->retry_timer.data = r;
    uv_timer_start(&r->retry_timer, on_sentinel_deadline,
                   cfg->connect_timeout_ms < BS_SENTINEL_TIMEOUT_MS ? cfg->connect_timeout_ms
                                                                    : BS_SENTINEL_TIMEOUT_MS,
                   0);
}

/* connect_now - start one connection attempt (from the retry timer) */
static void connect_now(bs_redis *r)
{
    const bs_endpoint *ep = &r->cfg->redis;
    redisAsyncContext *ac;

    if (r->state == ST_CLOSED || r->ac || r->sac)
        return;
    if (r->cfg->nsentinels) {
        if (!r->discovered) {
            /* every (re)connect asks the sentinels afresh */
            r->sentinel_next = 0;
            r->state = ST_CONNECTING;
            sentinel_ask(r);
            return;
        }
        r->discovered = 0;
        ep = &r->master;
    }
    if (ep->type == BS_EP_UNIX)
        ac = redisAsyncConnectUnix(ep->path);
    else
        ac = redisAsyncConnect(ep->host, (int)ep->port);
    if (!ac || ac->err) {
        note_failure(r, "cannot connect: %s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(r);
        return;
    }
    if (bs_redis_uv_attach(ac, r->loop) < 0) {
        redisAsyncFree(ac);
        schedule_retry(r);
        return;
    }
    ac->data = r;
    ac->c.reader->fn = bs_redis_reply_fns(); /* replies from a free list */
    r->ac = ac;
    r->state = ST_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->retry_timer.data = r;
    uv_timer_start(&r->retry_timer, on_connect_deadline, r->cfg->connect_timeout_ms, 0);
    if (handshake(r) < 0)
        drop(r, "cannot queue handshake");
}

static void retry_cb(uv_timer_t *t)
{
    connect_now(t->data);
}

/* on_stats_reply - a failed HINCRBY loses those counts: say so */
static void on_stats_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = ac->data;
    redisReply *rep = reply;

    if (rep && rep->type == REDIS_REPLY_ERROR && r->state != ST_CLOSED) {
        bs_stat.redis_errors++;
        warn_rate_limited(r, "stats flush failed", rep->str);
    }
}

/* flush_stats - add the decision counts to the cluster-wide stats hash */
static void flush_stats(bs_redis *r)
{
    char buf[512];
    bs_resp b;
    int i;

    for (i = 0; i < BS_WHY_COUNT; i++) {
        if (!r->pending_stats[i])
            continue;
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 4);
        bs_resp_str(&b, "HINCRBY");
        arg_key(&b, r, "stats", NULL);
        bs_resp_str(&b, bs_why_name(i));
        bs_resp_u64(&b, r->pending_stats[i]);
        if (!b.overflow &&
            redisAsyncFormattedCommand(r->ac, on_stats_reply, NULL, b.buf, b.len) == REDIS_OK)
            r->pending_stats[i] = 0;
    }
}

/* on_tick - stall detection; periodic stats flush */
static void on_tick(uv_timer_t *t)
{
    bs_redis *r = t->data;
    uint64_t now = uv_now(r->loop);
    uint64_t stall = r->cfg->timeout_ms * 3 > 1000 ? r->cfg->timeout_ms * 3 : 1000;

    if (r->state == ST_READY && r->ac && r->outstanding && now - r->busy_since > stall) {
        bs_stat.redis_stalls++;
        drop(r, "no reply in time (Redis stalled?)");
        return;
    }
    if (r->state == ST_READY && r->ac && now - r->last_flush >= BS_REDIS_STATS_FLUSH_MS) {
        r->last_flush = now;
        flush_stats(r);
    }
    if (r->cfg->nsentinels && r->state == ST_READY && r->ac && !r->sac &&
        now - r->last_probe >= BS_SENTINEL_PROBE_MS) {
        r->last_probe = now;
        r->probing = 1;
        r->sentinel_next = 0;
        sentinel_ask(r);
    }
}

bs_store *bs_store_redis_new(uv_loop_t *loop, const bs_config *cfg)
{
    bs_redis *r = calloc(1, sizeof(*r));
    unsigned i;

    if (!r)
        return NULL;
    r->ops = calloc(cfg->max_pending, sizeof(*r->ops));
    if (!r->ops) {
        free(r);
        return NULL;
    }
    for (i = cfg->max_pending; i-- > 0;)
        op_put(r, &r->ops[i]);
    for (i = 0; i < BS_CFG_MAX_SENTINELS; i++)
        r->sentinel_order[i] = i;
    r->base.ops = &redis_ops;
    r->loop = loop;
    r->cfg = cfg;
    r->backoff_ms = BS_REDIS_BACKOFF_MIN_MS;
    uv_timer_init(loop, &r->retry_timer);
    uv_timer_init(loop, &r->tick_timer);
    r->retry_timer.data = r->tick_timer.data = r;
    r->open_handles = 2;
    uv_timer_start(&r->tick_timer, on_tick, BS_REDIS_TICK_MS, BS_REDIS_TICK_MS);
    connect_now(r);
    return &r->base;
}

/* same_endpoint_and_auth - nothing that needs a new connection changed */
static int same_connection(const bs_config *a, const bs_config *b)
{
    return memcmp(&a->redis, &b->redis, sizeof(a->redis)) == 0 && a->nsentinels == b->nsentinels &&
           memcmp(a->sentinels, b->sentinels, a->nsentinels * sizeof(a->sentinels[0])) == 0 &&
           strcmp(a->master_name, b->master_name) == 0 &&
           strcmp(a->sentinel_password, b->sentinel_password) == 0 &&
           strcmp(a->username, b->username) == 0 && strcmp(a->password, b->password) == 0 &&
           a->db == b->db;
}

void bs_store_redis_reconfigure(bs_store *s, const bs_config *old)
{
    bs_redis *r = (bs_redis *)s;

    if (same_connection(old, r->cfg))
        return;
    bs_info("redis: settings changed, reconnecting");
    r->failures = 0;
    r->backoff_ms = BS_REDIS_BACKOFF_MIN_MS;
    r->discovered = 0;
    if (r->ac) {
        drop(r, "reconfigured");
    } else {
        sentinel_close(r);
        uv_timer_stop(&r->retry_timer);
        schedule_retry(r);
    }
    r->failures = 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    bs_redis *r = h->data;

    if (--r->open_handles == 0) {
        free(r->ops);
        free(r);
        bs_redis_reply_pool_free();
    }
}

/* finish_close - free the connection now, close our handles (the store is
 * freed when both have closed) */
static void finish_close(bs_redis *r)
{
    redisAsyncContext *ac = r->ac;

    sentinel_close(r);
    r->ac = NULL;
    if (ac)
        redisAsyncFree(ac);
    if (r->open_handles == 2 && !uv_is_closing((uv_handle_t *)&r->tick_timer)) {
        uv_close((uv_handle_t *)&r->retry_timer, on_handle_closed);
        uv_close((uv_handle_t *)&r->tick_timer, on_handle_closed);
    }
}

static void on_close_deadline(uv_timer_t *t)
{
    finish_close(t->data);
}

void bs_store_redis_close(bs_store *s)
{
    bs_redis *r = (bs_redis *)s;

    if (r->state == ST_READY && r->ac) {
        /* send the last counters, then let hiredis close gracefully, but
         * never wait for a stalled Redis longer than the deadline */
        r->state = ST_CLOSED;
        flush_stats(r);
        redisAsyncDisconnect(r->ac);
        uv_timer_stop(&r->retry_timer);
        uv_timer_start(&r->retry_timer, on_close_deadline, 500, 0);
        return;
    }
    r->state = ST_CLOSED;
    finish_close(r);
}
