/*
 * store_redis.c - the Redis store: what backstopd asks Redis (see store.h
 * and store_redis.h); the link itself is redis_conn.c
 *
 * Provides bs_store_redis_new/_reconfigure/_close and the bs_store ops;
 * replies are read by store_reply.c (shared with backstopctl).
 *
 * Every key is built from keys.h under [redis] prefix. The queries of one
 * request are pipelined (sent together, one round trip) and hiredis
 * batches the requests of all clients that arrive in the same loop
 * iteration into one write. Commands are built in RESP form by resp.c (no
 * printf formatting) and handed to redis_conn.c.
 *
 * Each query owns an op from a pool of [redis] max_pending ops, allocated
 * once; when the pool is empty a query is refused at once (BS_WHY_REDIS_BUSY)
 * and counted. hiredis callbacks carry a pointer to the op, which belongs to
 * this store and outlives its commands; callers are reached only through
 * their (arg, id) pair. On disconnect hiredis calls every pending callback
 * with reply == NULL: the op then completes with BS_WHY_REDIS_DOWN.
 *
 * Rate tracking and NDR budgets are Lua scripts (atomic, clock from Redis
 * TIME), loaded with the connection's handshake, run with EVALSHA and
 * re-sent with EVAL on NOSCRIPT. They run only on the invalid-recipient and
 * NDR-limit paths; the common path is GET/SISMEMBER/SMISMEMBER/HMGET
 * (Redis >= 6.2); an unknown user adds SCARD rcpt:<domain> (and HGET
 * sync <domain>:ok with max_directory_age) in a second round trip, and
 * every 15 s SMEMBERS domains, HGETALL sync and one SCARD per domain feed
 * the directory gauges. A -READONLY reply (a failover demoted our server) drops
 * the connection, which rediscovers the master. Decision counts are added
 * to the stats hash once a second and at close.
 *
 * Never: blocks, formats commands with printf, exits because of Redis, or
 * calls a caller back after bs_store_redis_close.
 *
 * With [redis] mirror = yes a lookup is first put to the local mirror
 * (redis_track.c, mirror.c); one it answers completes from a check
 * handle, right after the loop's poll phase that read the request
 * (callbacks never run inside the call; an idle handle keeps the next poll
 * from blocking while answers wait; a lookup a callback chains that the
 * mirror answers too is delivered by the same check callback, and what the
 * callbacks queued for Redis is written before it returns: no loop turn is
 * added to a request),
 * one it cannot answer goes to Redis as above. Writes (rate scripts, NDR
 * budgets, stats) always go to Redis.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "backstop/keys.h"
#include "backstop/log.h"
#include "backstop/store_reply.h"
#include "resp.h"
#include "stats.h"
#include "store_redis.h"
#include "redis_conn.h"
#include "redis_track.h"
#include "redis_uv.h"

#define BS_REDIS_STATS_FLUSH_MS 1000
#define BS_REDIS_CMD_MAX 8192   /* one pipelined command, built on the stack */
#define BS_REDIS_MAX_CMDS 6     /* commands in one op */
#define BS_DIR_REFRESH_MS 15000 /* directory gauges: SMEMBERS domains, HGETALL sync, SCARDs */

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

enum op_kind { OP_LOOKUP = 1, OP_TAKE, OP_NOTE };

typedef struct bs_redis bs_redis;

/* One query in flight. Owned by the pool; on the free list when idle. */
typedef struct bs_redis_op {
    bs_redis *r;
    struct bs_redis_op *next_free; /* also: the mirror's answered queue */
    int kind;                      /* enum op_kind */
    int status;                    /* 0 or BS_WHY_REDIS_* */
    unsigned pending;              /* replies still expected */
    unsigned nreplied;             /* replies seen, indexes kinds[] */
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

/* The store; freed by on_conn_closed once the connection's timers closed. */
struct bs_redis {
    bs_store base;
    bs_redis_conn conn;
    const bs_config *cfg;
    uint64_t last_flush;
    uint64_t last_err_log;
    unsigned suppressed_errs;
    char sha_rate[41];
    char sha_ndr[41];
    uint64_t pending_stats[BS_WHY_COUNT];
    bs_redis_op *ops;
    bs_redis_op *free_ops;
    /* directory gauges: dir is published, dir_next is being refreshed */
    bs_dir_gauge dir[BS_DIR_GAUGES_MAX], dir_next[BS_DIR_GAUGES_MAX];
    size_t ndir, ndir_next;
    unsigned dir_pending; /* refresh replies still expected */
    unsigned dir_sized;   /* SCARD replies seen */
    int dir_failed;
    uint64_t dir_last;
    /* [redis] mirror = yes: the mirror, and the ops it answered, delivered
     * by the check handle (the idle handle only keeps poll from blocking) */
    bs_redis_track *track;
    uv_check_t check;
    uv_idle_t idle;
    bs_redis_op *answered, *answered_tail;
    int open_parts; /* connections and handles still to close */
};

/* arg_key - prefix + name (+ sub), as one argument */
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
    uint64_t now = uv_now(r->conn.loop);
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

    if (bs__redis_conn_closed(&r->conn)) {
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

static int send_script(bs_redis_op *op, int eval);

/* on_op_reply - hiredis callback for every command of every op */
static void on_op_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_op *op = privdata;
    bs_redis *r = op->r;
    redisReply *rep = reply;
    int kind = op->kinds[op->nreplied++];

    bs__redis_conn_replied(&r->conn, rep);
    op->pending--;
    if (rep == NULL) {
        if (!op->status)
            op->status = BS_WHY_REDIS_DOWN;
    } else {
        if (rep->type == REDIS_REPLY_ERROR && (kind == BS_REPLY_TAKE || kind == BS_REPLY_NOTE) &&
            strncmp(rep->str, "NOSCRIPT", 8) == 0 && bs__redis_conn_current(&r->conn, ac)) {
            bs_stat.redis_noscript++;
            op->nreplied--;
            if (send_script(op, 1) == 0)
                return;
            op->nreplied++;
        }
        if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "READONLY", 8) == 0 &&
            bs__redis_conn_current(&r->conn, ac)) {
            /* a failover made our master a replica: find the new one */
            if (!op->status)
                op->status = BS_WHY_REDIS_ERROR;
            bs__redis_conn_drop(&r->conn, "server is a replica now (READONLY)");
        }
        if (bs_store_reply_apply(kind, rep, &op->facts, &op->result) < 0 && !op->status) {
            op->status = BS_WHY_REDIS_ERROR;
            bs_stat.redis_errors++;
            warn_rate_limited(r, "unexpected reply",
                              rep->type == REDIS_REPLY_ERROR ? rep->str : "wrong reply type");
        }
    }
    if (op->pending)
        return;
    if (op->facts.dir_known)
        op->facts.dir_now = (long long)time(NULL); /* the sync writer's clock is a wall clock too */
    if (op->kind == OP_NOTE && !op->status && op->result > 0) {
        bs_stat.clients_blocked++;
        bs_info("client %s blocked for %llus: %d invalid recipients within %llus (limit %u)",
                op->key, (unsigned long long)(r->cfg->block_time_ms / 1000), op->result,
                (unsigned long long)(r->cfg->invalid_window_ms / 1000), r->cfg->invalid_limit);
    }
    op_done(op);
}

/* queue - hand one built command to the connection under op; 0 or -1 */
static int queue(bs_redis_op *op, int kind, const bs_resp *b)
{
    if (op->pending + op->nreplied >= BS_REDIS_MAX_CMDS)
        return -1;
    if (bs__redis_conn_send(&op->r->conn, b, on_op_reply, op, 1) < 0)
        return -1;
    op->kinds[op->nreplied + op->pending] = (uint8_t)kind;
    op->pending++;
    return 0;
}

/* check_ready - BS_WHY_REDIS_DOWN unless the connection can take queries */
static int check_ready(const bs_redis *r)
{
    return bs__redis_conn_ready(&r->conn) ? 0 : BS_WHY_REDIS_DOWN;
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
/* queue_directory - SCARD rcpt:<domain> [HGET sync <domain>:ok]; 0 / -1 */
static int queue_directory(bs_redis *r, bs_redis_op *op, const bs_lookup *q)
{
    char buf[BS_REDIS_CMD_MAX], field[BS_DOMAIN_MAX + sizeof(BS_SYNC_OK_FIELD)];
    bs_resp b;
    int failed = 0;

    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_str(&b, "SCARD");
    arg_key(&b, r, BS_KEY_RCPT, q->directory);
    failed |= queue(op, BS_REPLY_DIR_SIZE, &b);
    if (q->directory_synced) {
        snprintf(field, sizeof(field), "%s%s", q->directory, BS_SYNC_OK_FIELD);
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 3);
        bs_resp_str(&b, "HGET");
        arg_key(&b, r, BS_KEY_SYNC, NULL);
        bs_resp_str(&b, field);
        failed |= queue(op, BS_REPLY_DIR_SYNC, &b);
    }
    return failed ? -1 : 0;
}

static void on_idle(uv_idle_t *h) {}

/* on_check - deliver the lookups the mirror answered */
static void on_check(uv_check_t *h)
{
    bs_redis *r = h->data;
    bs_redis_op *op, *next;

    /* a callback may queue another lookup the mirror answers (the
     * directory before a 550): delivered here too, not a loop turn later */
    while ((op = r->answered) != NULL) {
        r->answered = r->answered_tail = NULL;
        for (; op; op = next) {
            next = op->next_free;
            op_done(op);
        }
    }
    /* a callback that queued a Redis command (a lookup the mirror cannot
     * answer, a rate script) started redis_uv's flush check handle during
     * this check phase, too late for this turn: write now, not after the
     * next poll */
    if (r->conn.ac)
        bs_redis_uv_flush(r->conn.ac);
    uv_check_stop(&r->check);
    uv_idle_stop(&r->idle);
}

/* mirror_lookup - answer q from the mirror (the callback follows from the
 * check handle): 0, a BS_WHY_REDIS_* reason, or -1 (ask Redis) */
static int mirror_lookup(bs_redis *r, const bs_lookup *q, bs_store_facts_cb *cb, void *arg,
                         uint64_t id)
{
    bs_facts f;
    bs_redis_op *op;

    if (bs__redis_track_answer(r->track, q, &f) == BS_MIRROR_ASK_REDIS)
        return -1;
    if (!(op = op_get(r, OP_LOOKUP))) {
        bs_stat.redis_busy++;
        return BS_WHY_REDIS_BUSY;
    }
    op->cb.facts = cb;
    op->arg = arg;
    op->id = id;
    op->facts = f;
    if (f.dir_known)
        op->facts.dir_now = (long long)time(NULL);
    if (r->answered_tail)
        r->answered_tail->next_free = op;
    else
        r->answered = op;
    r->answered_tail = op;
    uv_check_start(&r->check, on_check);
    uv_idle_start(&r->idle, on_idle);
    return 0;
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

    if (r->track && (failed = mirror_lookup(r, q, cb, arg, id)) >= 0)
        return failed;
    failed = 0;
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
        arg_key(&b, r, BS_KEY_BLOCK, q->client_key);
        failed |= queue(op, BS_REPLY_BLOCK, &b);
    }
    if (q->nexempt) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2 + q->nexempt);
        bs_resp_str(&b, "SMISMEMBER");
        arg_key(&b, r, BS_KEY_EXEMPT, NULL);
        for (i = 0; i < q->nexempt; i++)
            bs_resp_str(&b, q->exempt[i]);
        failed |= queue(op, BS_REPLY_EXEMPT, &b);
    }
    if (q->domain) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 3);
        bs_resp_str(&b, "SISMEMBER");
        arg_key(&b, r, BS_KEY_DOMAINS, NULL);
        bs_resp_str(&b, q->domain);
        failed |= queue(op, BS_REPLY_DOMAIN, &b);

        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2 + q->nlocals);
        bs_resp_str(&b, "SMISMEMBER");
        arg_key(&b, r, BS_KEY_RCPT, q->domain);
        for (i = 0; i < q->nlocals; i++)
            bs_resp_arg(&b, q->locals[i], q->local_lens[i]);
        failed |= queue(op, BS_REPLY_RCPT, &b);
    }
    if (q->nndr) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2 + q->nndr);
        bs_resp_str(&b, "HMGET");
        arg_key(&b, r, BS_KEY_NDR, NULL);
        for (i = 0; i < q->nndr; i++)
            bs_resp_str(&b, q->ndr_fields[i]);
        failed |= queue(op, BS_REPLY_NDR, &b);
    }
    if (q->directory) {
        failed |= queue_directory(r, op, q);
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

    bs_resp_init(&b, buf, sizeof(buf));
    if (op->kind == OP_TAKE) {
        bs_resp_cmd(&b, 6);
        bs_resp_str(&b, eval ? "EVAL" : "EVALSHA");
        bs_resp_str(&b, eval ? body : sha);
        bs_resp_str(&b, "1");
        arg_key(&b, r, BS_KEY_NDRCOUNT, op->key);
        bs_resp_u64(&b, op->rule.limit);
        bs_resp_u64(&b, op->rule.period_ms);
    } else {
        bs_resp_cmd(&b, 13);
        bs_resp_str(&b, eval ? "EVAL" : "EVALSHA");
        bs_resp_str(&b, eval ? body : sha);
        bs_resp_str(&b, "3");
        arg_key(&b, r, BS_KEY_RATE, op->key);
        arg_key(&b, r, BS_KEY_BLOCK, op->key);
        arg_key(&b, r, BS_KEY_STATS, NULL);
        bs_resp_u64(&b, cfg->invalid_limit);
        bs_resp_u64(&b, cfg->invalid_window_ms);
        bs_resp_u64(&b, cfg->block_time_ms);
        bs_resp_str(&b, "too many invalid recipients");
        bs_resp_str(&b, op->ip);
        bs_resp_str(&b, op->key);
        arg_key(&b, r, BS_KEY_EXEMPT, NULL);
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

static const bs_dir_gauge *r_directory(const bs_store *s, size_t *n);

static int r_mirror(const bs_store *s, bs_mirror_gauges *g)
{
    const bs_redis *r = (const bs_redis *)s;
    bs_mirror_info info;

    if (!r->track || !r->track->m)
        return 0;
    bs__redis_track_check(r->track);
    bs_mirror_get_info(r->track->m, &info);
    g->keys = info.keys;
    g->bytes = info.bytes;
    g->raced = info.raced;
    g->stale_seconds =
        info.stale_since ? (double)(uv_now(r->conn.loop) - info.stale_since) / 1000.0 : 0;
    return 1;
}

static const bs_store_ops redis_ops = {
    .lookup = r_lookup,
    .ndr_take = r_ndr_take,
    .note_invalid = r_note_invalid,
    .count = r_count,
    .ready = r_ready,
    .directory = r_directory,
    .mirror = r_mirror,
};

/* on_stats_reply - a failed HINCRBY loses those counts: say so */
static void on_stats_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = privdata;
    redisReply *rep = reply;

    if (rep && rep->type == REDIS_REPLY_ERROR && !bs__redis_conn_closed(&r->conn)) {
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
        arg_key(&b, r, BS_KEY_STATS, NULL);
        bs_resp_str(&b, bs_why_name(i));
        bs_resp_u64(&b, r->pending_stats[i]);
        if (bs__redis_conn_send(&r->conn, &b, on_stats_reply, r, 0) == 0)
            r->pending_stats[i] = 0;
    }
}

/* ------------------------------------------------------------ directory gauges */

/*
 * Every BS_DIR_REFRESH_MS: SMEMBERS domains and HGETALL sync, then one
 * SCARD rcpt:<domain> per domain kept (the first BS_DIR_GAUGES_MAX in byte
 * order; more are left out and counted). Tracked commands, so the stall
 * detector is their deadline; one refresh at a time; a failed one keeps
 * the last snapshot. Off the policy path: a few commands every 15 s.
 */

/* dir_reply_ok - common checks of a refresh reply; 1 when usable */
static int dir_reply_ok(bs_redis *r, const redisReply *rep, int type)
{
    bs__redis_conn_replied(&r->conn, rep);
    r->dir_pending--;
    if (!rep || bs__redis_conn_closed(&r->conn))
        r->dir_failed = 1;
    else if (rep->type != type) {
        r->dir_failed = 1;
        bs_stat.redis_errors++;
        warn_rate_limited(r, "directory gauges",
                          rep->type == REDIS_REPLY_ERROR ? rep->str : "wrong reply type");
    }
    return !r->dir_failed;
}

/* dir_find - the entry of dir_next for domain (len bytes), or NULL */
static bs_dir_gauge *dir_find(bs_redis *r, const char *domain, size_t len)
{
    size_t i;

    for (i = 0; i < r->ndir_next; i++)
        if (strlen(r->dir_next[i].domain) == len && memcmp(r->dir_next[i].domain, domain, len) == 0)
            return &r->dir_next[i];
    return NULL;
}

/* memcmp_str - order of C string a and len bytes at b, as strcmp */
static int memcmp_str(const char *a, const char *b, size_t len)
{
    size_t al = strlen(a);
    int c = memcmp(a, b, al < len ? al : len);

    return c ? c : (al > len) - (al < len);
}

/* dir_keep - insert domain into the sorted, bounded dir_next; 0, or 1 when
 * a domain had to be left out */
static int dir_keep(bs_redis *r, const char *domain, size_t len)
{
    size_t i, j;
    int full = r->ndir_next == BS_DIR_GAUGES_MAX;

    if (len > BS_DOMAIN_MAX || len == 0)
        return 0; /* no domain of ours: addr.c would never ask for it */
    for (i = 0; i < r->ndir_next && memcmp_str(r->dir_next[i].domain, domain, len) < 0; i++)
        ;
    if (i == BS_DIR_GAUGES_MAX)
        return 1;
    j = r->ndir_next < BS_DIR_GAUGES_MAX ? r->ndir_next++ : BS_DIR_GAUGES_MAX - 1;
    memmove(&r->dir_next[i + 1], &r->dir_next[i], (j - i) * sizeof(r->dir_next[0]));
    memset(&r->dir_next[i], 0, sizeof(r->dir_next[i]));
    memcpy(r->dir_next[i].domain, domain, len);
    return full; /* the last one fell off */
}

static void on_dir_domains(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = privdata;
    const redisReply *rep = reply;
    size_t i;
    int dropped = 0;

    if (!dir_reply_ok(r, rep, REDIS_REPLY_ARRAY))
        return;
    for (i = 0; i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING)
            dropped |= dir_keep(r, rep->element[i]->str, rep->element[i]->len);
    if (dropped)
        bs_stat.dir_gauges_truncated++;
}

static void on_dir_size(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = privdata;
    const redisReply *rep = reply;

    if (dir_reply_ok(r, rep, REDIS_REPLY_INTEGER) && r->dir_sized < r->ndir_next)
        r->dir_next[r->dir_sized++].size = rep->integer;
    if (r->dir_pending == 0 && !r->dir_failed) {
        memcpy(r->dir, r->dir_next, r->ndir_next * sizeof(r->dir[0]));
        r->ndir = r->ndir_next;
    }
}

static void on_dir_sync(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = privdata;
    const redisReply *rep = reply;
    char buf[512];
    bs_dir_gauge *g;
    size_t i, flen, oklen = sizeof(BS_SYNC_OK_FIELD) - 1;
    bs_resp b;

    if (!dir_reply_ok(r, rep, REDIS_REPLY_ARRAY))
        return;
    for (i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *f = rep->element[i], *v = rep->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        flen = f->len;
        if (flen <= oklen || memcmp(f->str + flen - oklen, BS_SYNC_OK_FIELD, oklen) != 0 ||
            !(g = dir_find(r, f->str, flen - oklen)))
            continue;
        g->synced_at = bs_store_unix_time(v->str, v->len);
    }
    for (i = 0; i < r->ndir_next; i++) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2);
        bs_resp_str(&b, "SCARD");
        arg_key(&b, r, BS_KEY_RCPT, r->dir_next[i].domain);
        if (bs__redis_conn_send(&r->conn, &b, on_dir_size, r, 1) < 0) {
            r->dir_failed = 1;
            return;
        }
        r->dir_pending++;
    }
    if (r->ndir_next == 0)
        r->ndir = 0; /* no protected domain left */
}

/* dir_refresh - start a refresh (at most one at a time) */
static void dir_refresh(bs_redis *r)
{
    char buf[512];
    bs_resp b;

    if (r->dir_pending)
        return;
    r->ndir_next = 0;
    r->dir_sized = 0;
    r->dir_failed = 0;
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_str(&b, "SMEMBERS");
    arg_key(&b, r, BS_KEY_DOMAINS, NULL);
    if (bs__redis_conn_send(&r->conn, &b, on_dir_domains, r, 1) < 0)
        return;
    r->dir_pending++;
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_str(&b, "HGETALL");
    arg_key(&b, r, BS_KEY_SYNC, NULL);
    if (bs__redis_conn_send(&r->conn, &b, on_dir_sync, r, 1) == 0)
        r->dir_pending++;
    else
        r->dir_failed = 1;
}

static const bs_dir_gauge *r_directory(const bs_store *s, size_t *n)
{
    const bs_redis *r = (const bs_redis *)s;

    *n = r->ndir;
    return r->dir;
}

/* ------------------------------------------------------------ connection hooks */

/* on_conn_handshake - load the scripts on every new connection */
static int on_conn_handshake(void *owner)
{
    bs_redis *r = owner;
    char buf[BS_REDIS_CMD_MAX];
    bs_resp b;
    int rc = 0;

    r->sha_rate[0] = r->sha_ndr[0] = 0;
    if (r->track)
        bs__redis_track_data_new(r->track);
    r->dir_last = 0; /* the directory gauges are refreshed first thing on a new connection */
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 3);
    bs_resp_str(&b, "SCRIPT");
    bs_resp_str(&b, "LOAD");
    bs_resp_str(&b, script_rate);
    rc |= bs__redis_conn_handshake_cmd(&r->conn, &b, r->sha_rate);
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 3);
    bs_resp_str(&b, "SCRIPT");
    bs_resp_str(&b, "LOAD");
    bs_resp_str(&b, script_ndr);
    rc |= bs__redis_conn_handshake_cmd(&r->conn, &b, r->sha_ndr);
    return rc;
}

/* on_conn_tick - the periodic stats flush */
static void on_conn_tick(void *owner, uint64_t now)
{
    bs_redis *r = owner;

    if (now - r->last_flush >= BS_REDIS_STATS_FLUSH_MS) {
        r->last_flush = now;
        flush_stats(r);
    }
    if (!r->dir_last || now - r->dir_last >= BS_DIR_REFRESH_MS) {
        r->dir_last = now;
        dir_refresh(r);
    }
    if (r->track)
        bs__redis_track_tick(r->track, now);
}

/* part_closed - a connection or handle is closed: the last frees the store */
static void part_closed(void *owner)
{
    bs_redis *r = owner;

    if (--r->open_parts)
        return;
    free(r->track);
    free(r->ops);
    free(r);
}

static void on_handle_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

static const bs_redis_conn_hooks conn_hooks = {
    .handshake = on_conn_handshake,
    .tick = on_conn_tick,
    .closed = part_closed,
};

/* ------------------------------------------------------------ life cycle */

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
    r->base.ops = &redis_ops;
    r->cfg = cfg;
    r->open_parts = 1;
    bs__redis_conn_start(&r->conn, loop, cfg, &conn_hooks, r);
    if (cfg->mirror && (r->track = calloc(1, sizeof(*r->track))) &&
        bs__redis_track_start(r->track, loop, cfg, &r->conn, part_closed, r) == 0) {
        r->open_parts += 3;
        uv_check_init(loop, &r->check);
        uv_idle_init(loop, &r->idle);
        r->check.data = r->idle.data = r;
    } else if (cfg->mirror) {
        free(r->track);
        r->track = NULL;
        bs_warn("redis: out of memory: running without the mirror");
    }
    return &r->base;
}

void bs_store_redis_reconfigure(bs_store *s, const bs_config *old)
{
    bs_redis *r = (bs_redis *)s;

    if (r->track && strcmp(old->prefix, r->cfg->prefix) != 0)
        bs__redis_track_reset(r->track);
    if (r->track) /* the invalidations must come from the server the data does */
        bs__redis_conn_reconfigure(&r->track->sub, old);
    bs__redis_conn_reconfigure(&r->conn, old);
}

void bs_store_redis_close(bs_store *s)
{
    bs_redis *r = (bs_redis *)s;

    /* the last counters go out before the connection closes gracefully */
    if (bs__redis_conn_ready(&r->conn))
        flush_stats(r);
    if (r->track) {
        uv_close((uv_handle_t *)&r->check, on_handle_closed);
        uv_close((uv_handle_t *)&r->idle, on_handle_closed);
        bs__redis_track_close(r->track);
    }
    bs__redis_conn_close(&r->conn);
}
