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
 * Unknown recipients are counted in batches (counts.h) with plain
 * pipelined commands, scored by Redis's clock as read by TIME once a
 * second. NDR budgets, blocks, attacks, greylisting and the attack sweep
 * are Lua scripts (atomic), loaded with the connection's handshake, run
 * with EVALSHA and re-sent with EVAL on NOSCRIPT; the common path is
 * GET/SISMEMBER/SMISMEMBER/HMGET (Redis >= 6.2); an unknown user adds
 * SCARD rcpt:<domain> (and HGET sync <domain>:ok with max_directory_age)
 * in a second round trip, and every 15 s SMEMBERS domains, HGETALL sync
 * and one SCARD per domain feed the directory gauges. A -READONLY reply (a failover demoted our
 * server) drops the connection, which rediscovers the master. Decision counts are added to the
 * stats hash once a second and at close, and in the same flush the would-reject counts (refusals
 * report mode let pass) to the wouldreject hash, one HINCRBY per recipient domain (at most
 * BS_WOULDREJECT_PENDING_MAX domains between two flushes; more are dropped, counted, warned about).
 * The common path also reads HMGET mode <domain> "*" (per-domain mode).
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
 * one it cannot answer goes to Redis as above. Writes (counts, NDR
 * budgets, stats) always go to Redis.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
#include "counts.h"
#include "hash.h"

#define BS_REDIS_STATS_FLUSH_MS 1000
#define BS_REDIS_CMD_MAX 8192         /* one pipelined command, built on the stack */
#define BS_REDIS_MAX_CMDS 6           /* commands in one op */
#define BS_DIR_REFRESH_MS 15000       /* directory gauges: SMEMBERS domains, HGETALL sync, SCARDs */
#define BS_WOULDREJECT_PENDING_MAX 64 /* domains with would-reject counts between two flushes */
#define BS_WOULDREJECT_WARN_MS 60000  /* at most one "too many domains" warning a minute */

/*
 * Unknown recipients are counted with plain commands (counts.h: batches
 * of what comes during one round trip, ZREMRANGEBYSCORE/ZADD/PEXPIRE/ZCARD per client
 * and per domain); the scripts below run when a count has passed its
 * limit, and for the greylisting check, the known clients, the sweep and
 * the NDR budget. Each script that needs the time reads Redis TIME once.
 */
#define LUA_HEAD "if redis.replicate_commands then redis.replicate_commands() end\n"
/* LUA_EXEMPT - return ret when client address a or client key k (ARGV
 * references) is a member of the exempt SET named by ARGV set */
#define LUA_EXEMPT(set, a, k, ret)                                                                 \
    "if redis.call('SISMEMBER', " set ", " a ") == 1 or\n"                                         \
    "   redis.call('SISMEMBER', " set ", " k ") == 1 then return " ret " end\n"
/* now: Redis's clock in ms (t: TIME's reply). Integers passed to
 * redis.call go as strings made by string.format '%d': a Lua number goes
 * through printf "%.14g" and Redis parses it back (a fifth of
 * redis-server's instructions in these scripts, callgrind). */
#define LUA_NOW                                                                                    \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/*
 * A client's invalid-recipient count passed its limit (the ZCARD of the
 * flush that counted it). KEYS: block, rate, stats. ARGV: reason, block
 * ms. The window is emptied (a new one starts after the block); the block
 * is set unless one is in force (NX: a block by hand, or by another
 * process's flush that read the same count, stays as it is). Returns 1
 * when this call blocked the client (counted in stats clients_blocked),
 * 0 when a block was already there.
 */
static const char script_block[] = "redis.call('DEL', KEYS[2])\n"
                                   "if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], "
                                   "'NX') then return 0 end\n"
                                   "redis.call('HINCRBY', KEYS[3], 'clients_blocked', 1)\n"
                                   "return 1\n";

/*
 * A domain's harvest count passed [harvest] threshold (the ZCARD of the
 * flush that added its unknown recipients: members "<network>
 * <tag>:<seq>" scored by Redis time in ms). KEYS: harvest:<domain>,
 * attack, stats. ARGV: limit, duration ms, domain. The window keeps at
 * most limit+1 newest members; the domain is under attack until now +
 * duration (renewed by every count past the limit; "since" kept while the
 * field exists and has not expired: a field without a readable until
 * counts as current). Returns {0, n}, or {1, n, ended, net, count, ...}
 * with the top 3 networks when this call started the attack; ended: -1,
 * or the since (0: unreadable) of an attack whose until had passed before
 * a sweep deleted it (this call ends it: counted).
 */
static const char script_harvest[] = LUA_HEAD LUA_NOW
    "local hk, ak, sk = KEYS[1], KEYS[2], KEYS[3]\n"
    "local limit, duration, domain = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]\n"
    "local n = redis.call('ZCARD', hk)\n"
    "if n <= limit then return {0, n} end\n"
    "redis.call('ZREMRANGEBYRANK', hk, 0, -(limit + 2))\n"
    "n = redis.call('ZCARD', hk)\n"
    "local sec = tonumber(t[1])\n"
    "local since, started, ended = sec, 1, -1\n"
    "local old = redis.call('HGET', ak, domain)\n"
    "if old then\n"
    "  local os = tonumber(string.match(old, 'since=(%d+)'))\n"
    "  local ou = tonumber(string.match(old, 'until=(%d+)'))\n"
    "  if not ou or ou >= sec then started = 0 else ended = os or 0 end\n"
    "  if started == 0 and os then since = os end\n"
    "end\n"
    "local untl = sec + math.ceil(duration / 1000)\n"
    "redis.call('HSET', ak, domain, 'since=' .. since .. ';until=' .. untl .. ';unknown=' .. n)\n"
    "if started == 0 then return {0, n} end\n"
    "redis.call('HINCRBY', sk, 'harvest_started', 1)\n"
    "if ended >= 0 then redis.call('HINCRBY', sk, 'harvest_ended', 1) end\n"
    "local count, nets = {}, {}\n"
    "for _, m in ipairs(redis.call('ZRANGE', hk, 0, -1)) do\n"
    "  local nt = string.match(m, '^(%S+)')\n"
    "  if nt then\n"
    "    if not count[nt] then count[nt] = 0; nets[#nets + 1] = nt end\n"
    "    count[nt] = count[nt] + 1\n"
    "  end\n"
    "end\n"
    "table.sort(nets, function(a, b) if count[a] ~= count[b] then return count[a] > count[b] end\n"
    "  return a < b end)\n"
    "local out = {1, n, ended}\n"
    "for i = 1, math.min(3, #nets) do out[#out + 1] = nets[i]; out[#out + 1] = count[nets[i]] end\n"
    "return out\n";

/*
 * The greylisting check of a domain under attack. KEYS: known:<domain>,
 * grey:<domain>:<network>:<local>. ARGV: known_client_age ms, retry_after
 * ms, retry_window ms, mode ("greylist" or "defer"), network, the exempt
 * SET (read only), client address, client key. Returns 1 KNOWN (or an
 * exempt SET member), 2 PASS (first sight at least retry_after ago; the
 * key expires retry_window after it), 3 DEFER (first sight now, too early,
 * or mode defer). Redis's clock.
 */
static const char script_grey[] = LUA_HEAD LUA_EXEMPT("ARGV[6]", "ARGV[7]", "ARGV[8]", "1") LUA_NOW
    "local seen = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[5]))\n"
    "if seen and seen > now - tonumber(ARGV[1]) then return 1 end\n"
    "if ARGV[4] == 'defer' then return 3 end\n"
    "local first = redis.call('GET', KEYS[2])\n"
    "if not first or not tonumber(first) then\n"
    "  redis.call('SET', KEYS[2], now, 'PX', ARGV[3])\n"
    "  return 3\n"
    "end\n"
    "if now - tonumber(first) >= tonumber(ARGV[2]) then return 2 end\n"
    "return 3\n";

/* A client network delivered to a valid recipient. KEYS: known:<domain>.
 * ARGV: known_client_age ms, network. Returns 0. */
static const char script_known[] =
    LUA_HEAD LUA_NOW "local age = tonumber(ARGV[1])\n"
                     "redis.call('ZADD', KEYS[1], now, ARGV[2])\n"
                     "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - age)\n"
                     "redis.call('PEXPIRE', KEYS[1], age)\n"
                     "return 0\n";

/*
 * The end of attacks, and the table of domains under attack, once a
 * second. KEYS: attack, stats. Deletes the fields whose until has passed
 * (Redis time) and counts them. Returns {now (Unix s), {domain, since, ...
 * ended by this call}, {domain, until, ... still under attack}}: the until
 * this script read ('until=' and digits, the first anywhere in the value;
 * at most 2^53), or -1 when it has none (then the field counts as under
 * attack). The value is read here only: the daemons take its reading.
 */
static const char script_sweep[] =
    LUA_HEAD "local sec = tonumber(redis.call('TIME')[1])\n"
             "local all = redis.call('HGETALL', KEYS[1])\n"
             "local ended, left = {}, {}\n"
             "for i = 1, #all, 2 do\n"
             "  local u = tonumber(string.match(all[i + 1], 'until=(%d+)'))\n"
             "  if u and u < sec then\n"
             "    redis.call('HDEL', KEYS[1], all[i])\n"
             "    redis.call('HINCRBY', KEYS[2], 'harvest_ended', 1)\n"
             "    ended[#ended + 1] = all[i]\n"
             "    ended[#ended + 1] = string.match(all[i + 1], 'since=(%d+)') or '0'\n"
             "  else\n"
             "    left[#left + 1] = all[i]\n"
             "    left[#left + 1] = u and math.min(u, 9007199254740992) or -1\n"
             "  end\n"
             "end\n"
             "return {sec, ended, left}\n";

/* Fixed-window NDR budget. KEYS: counter. ARGV: limit, period ms.
 * Returns 1 within the budget, 0 over it. */
static const char script_ndr[] = "local n = redis.call('INCR', KEYS[1])\n"
                                 "if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then\n"
                                 "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                 "end\n"
                                 "if n > tonumber(ARGV[1]) then return 0 end\n"
                                 "return 1\n";

/* OP_BLOCK and OP_HARVEST: a count of a flush (counts.h) past its limit */
enum op_kind { OP_LOOKUP = 1, OP_TAKE, OP_BLOCK, OP_HARVEST, OP_GREY, OP_KNOWN };

/* The scripts, loaded on every connection (SCRIPT LOAD), by index. */
enum { S_BLOCK, S_NDR, S_HARVEST, S_GREY, S_KNOWN, S_SWEEP, S_N };
static const char *const scripts[S_N] = {
    [S_BLOCK] = script_block, [S_NDR] = script_ndr,     [S_HARVEST] = script_harvest,
    [S_GREY] = script_grey,   [S_KNOWN] = script_known, [S_SWEEP] = script_sweep,
};
/* SCRIPT LOAD and EVAL (after NOSCRIPT) carry a script's text in one
 * command built in BS_REDIS_CMD_MAX bytes: the largest must fit, with its
 * keys and arguments */
_Static_assert(sizeof(script_harvest) + 2048 <= BS_REDIS_CMD_MAX,
               "script_harvest does not fit in one command");

#define BS_HARVEST_WARN_MS 60000 /* at most one warning a minute about the attack hash */

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
    int result;                     /* OP_TAKE, OP_GREY, OP_BLOCK (1: this call blocked) */
    long long count;                /* OP_BLOCK: the count past the limit */
    bs_facts facts;                 /* OP_LOOKUP */
    char key[BS_DOMAIN_MAX + 1];    /* OP_TAKE, harvest ops: domain */
    char ip[BS_CLIENT_KEY_MAX + 1]; /* OP_GREY: client address */
    bs_ndr_rule rule;               /* OP_TAKE; OP_BLOCK: rate limit and window */
    /* OP_BLOCK, OP_GREY: client key; OP_GREY, OP_KNOWN: network; OP_GREY:
     * local part */
    char ckey[BS_CLIENT_KEY_MAX + 1];
    char net[BS_CLIENT_KEY_MAX + 1];
    char local[BS_LOCAL_MAX + 1];
    /* answered by the mirror: the lookup (its strings are the waiting
     * connection's, valid until the check handle delivers) and the mirror's
     * bs_mirror_changes when it answered (q is set by mirror_lookup, not
     * zeroed by op_get) */
    bs_lookup q;
    uint64_t changes;
} bs_redis_op;

/* The store; freed by on_conn_closed once the connection's timers closed. */
struct bs_redis {
    bs_store base;
    bs_redis_conn conn;
    const bs_config *cfg;
    uint64_t last_flush;
    uint64_t last_err_log;
    unsigned suppressed_errs;
    char sha[S_N][41];
    uint64_t pending_stats[BS_WHY_COUNT];
    /* would-reject counts per recipient domain, added to the wouldreject
     * HASH with the stats (one HINCRBY per domain); past the table's size
     * a count is dropped, counted and warned about */
    struct {
        char domain[BS_DOMAIN_MAX + 1];
        uint64_t n;
    } wr[BS_WOULDREJECT_PENDING_MAX];
    size_t nwr;
    uint64_t wr_last_warn, wr_warned_dropped;
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
    /* harvest detection: the domains under attack (refreshed by the sweep
     * once a second), and the known-client write filter */
    bs_attacks attacks, attacks_next;
    uint64_t attacks_added[BS_HARVEST_DOMAINS_MAX]; /* uv_now when our script added it */
    int sweep_pending;
    int sweep_eval; /* the last sweep met NOSCRIPT */
    uint64_t sweep_sent;
    uint64_t last_harvest_warn;
    bs_known_filter known;
    /* unknown recipients counted (counts.h): the batch filling, and the
     * one whose replies are awaited; Redis's clock as this host's wall
     * clock + clock_offset (TIME once a second); members are named
     * "<tag>:<seq>", tag random per process */
    struct count_batch *fill, *flight;
    uv_timer_t count_timer; /* sends a batch held back by BS_COUNTS_GAP_MS; while
                             * closing, BS_COUNTS_LINGER_MS's deadline */
    uint64_t count_sent;    /* uv_now of the last batch sent */
    int closing;            /* 1: bs_store_redis_close waits for the counts; 2: closed */
    int64_t clock_offset;
    uint64_t time_sent; /* wall ms of the TIME in flight, 0: none */
    char tag[9];
    uint64_t seq;
};

/* One batch of counts and what its flush awaits. */
typedef struct count_batch {
    bs_redis *r;
    unsigned pending;    /* replies still expected */
    unsigned exempt_due; /* SMISMEMBER exempt replies still expected */
    int exempt_failed;   /* one failed: nothing of the batch is counted */
    size_t exempt_read;  /* clients whose answer was read */
    uint64_t now;        /* the members' score: Redis's clock at the flush */
    /* the ZCARDs sent, in order: a rate's index, or -(domain's index + 1) */
    int order[BS_COUNTS_RATES_MAX + BS_COUNTS_DOMAINS_MAX];
    size_t norder, cursor;
    bs_counts c;
} count_batch;

/* arg_key - prefix + name (+ sub), as one argument */
static void arg_key(bs_resp *b, const bs_redis *r, const char *name, const char *sub)
{
    bs_resp_arg3(b, r->cfg->prefix, strlen(r->cfg->prefix), name, strlen(name), sub ? sub : "",
                 sub ? strlen(sub) : 0);
}

/* begin_keyed - start "VERB <prefix><name><sub>" of argc arguments in all
 * (verb and key included) in b over buf */
static void begin_keyed(bs_resp *b, char *buf, size_t size, const bs_redis *r, unsigned argc,
                        const char *verb, const char *name, const char *sub)
{
    bs_resp_init(b, buf, size);
    bs_resp_cmd(b, argc);
    bs_resp_str(b, verb);
    arg_key(b, r, name, sub);
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
    /* the header and the facts; the strings, the rule and the mirror's
     * lookup are set by what uses them (an op is ~1 KiB: zeroing all of it
     * was ~200 instructions a request) */
    memset(op, 0, offsetof(bs_redis_op, key));
    op->key[0] = op->ip[0] = op->ckey[0] = op->net[0] = op->local[0] = 0;
    memset(&op->rule, 0, sizeof(op->rule));
    op->changes = 0;
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
    case OP_GREY:
        op->cb.take(op->arg, op->id, op->status, op->status ? -1 : op->result);
        break;
    default:
        break;
    }
    op_put(r, op);
}

static int send_script(bs_redis_op *op, int eval);
static void harvest_counted(bs_redis_op *op, const redisReply *rep);

/* rate_blocked - the block script blocked a client (op->count: the count
 * past the limit): count and log it */
static void rate_blocked(const bs_redis_op *op)
{
    const bs_config *cfg = op->r->cfg;

    bs_stat.clients_blocked++;
    bs_info("client %s blocked for %llus: %lld invalid recipients within %llus (limit %u)",
            op->ckey, (unsigned long long)(cfg->block_time_ms / 1000), op->count,
            (unsigned long long)(op->rule.period_ms / 1000), op->rule.limit);
}

/* drop_if_readonly - a READONLY reply on the current connection: a
 * failover made our master a replica: drop it to find the new one; 1 when
 * dropped */
static int drop_if_readonly(bs_redis *r, redisAsyncContext *ac, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ERROR || strncmp(rep->str, "READONLY", 8) != 0 ||
        !bs__redis_conn_current(&r->conn, ac))
        return 0;
    bs__redis_conn_drop(&r->conn, "server is a replica now (READONLY)");
    return 1;
}

/* part_replied - one reply of kind, read into op: a READONLY drops the
 * connection; an error or a reply of the wrong type sets op->status and is
 * counted and warned about (once an op); a block is logged, a harvest
 * count read */
static void part_replied(bs_redis_op *op, redisAsyncContext *ac, int kind, const redisReply *rep)
{
    bs_redis *r = op->r;

    if (drop_if_readonly(r, ac, rep) && !op->status)
        op->status = BS_WHY_REDIS_ERROR;
    if (bs_store_reply_apply(kind, rep, &op->facts, &op->result) < 0 && !op->status) {
        op->status = BS_WHY_REDIS_ERROR;
        bs_stat.redis_errors++;
        warn_rate_limited(r, "unexpected reply",
                          rep->type == REDIS_REPLY_ERROR ? rep->str : "wrong reply type");
    }
    if (kind == BS_REPLY_NOTE && !op->status && op->result > 0)
        rate_blocked(op);
    if (op->kind == OP_HARVEST && kind == BS_REPLY_SCRIPT && rep->type == REDIS_REPLY_ARRAY)
        harvest_counted(op, rep);
}

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
        if (rep->type == REDIS_REPLY_ERROR &&
            (kind == BS_REPLY_TAKE || kind == BS_REPLY_NOTE || kind == BS_REPLY_GREY ||
             kind == BS_REPLY_SCRIPT) &&
            strncmp(rep->str, "NOSCRIPT", 8) == 0 && bs__redis_conn_current(&r->conn, ac)) {
            bs_stat.redis_noscript++;
            op->nreplied--;
            if (send_script(op, 1) == 0)
                return;
            op->nreplied++;
        }
        part_replied(op, ac, kind, rep);
    }
    if (op->pending)
        return;
    if (op->facts.dir_known)
        op->facts.dir_now = (long long)time(NULL); /* the sync writer's clock is a wall clock too */
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

/* queue_keyed - build "CMD <prefix><name><sub> ARG..." (n arguments; lens
 * NULL: NUL-terminated) and queue it as a reply of kind; 0 / -1 */
static int queue_keyed(bs_redis_op *op, int kind, const char *cmd, const char *name,
                       const char *sub, const char *const *args, const size_t *lens, unsigned n)
{
    char buf[BS_REDIS_CMD_MAX];
    bs_resp b;
    unsigned i;

    begin_keyed(&b, buf, sizeof(buf), op->r, 2 + n, cmd, name, sub);
    for (i = 0; i < n; i++) {
        if (lens)
            bs_resp_arg(&b, args[i], lens[i]);
        else
            bs_resp_str(&b, args[i]);
    }
    return queue(op, kind, &b);
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
static int queue_directory(bs_redis_op *op, const bs_lookup *q)
{
    char field[BS_DOMAIN_MAX + sizeof(BS_SYNC_OK_FIELD)];
    const char *args[1] = {field};
    int failed = 0;

    failed |= queue_keyed(op, BS_REPLY_DIR_SIZE, "SCARD", BS_KEY_RCPT, q->directory, NULL, NULL, 0);
    if (q->directory_synced) {
        snprintf(field, sizeof(field), "%s%s", q->directory, BS_SYNC_OK_FIELD);
        failed |= queue_keyed(op, BS_REPLY_DIR_SYNC, "HGET", BS_KEY_SYNC, NULL, args, NULL, 1);
    }
    return failed ? -1 : 0;
}

/* under_attack - the lookup's domain is in the local attack table (the
 * same answer for the mirror and Redis paths: no query) */
static int under_attack(const bs_redis *r, const bs_lookup *q)
{
    return q->domain && r->cfg->harvest_limit > 0 && bs_attacks_find(&r->attacks, q->domain);
}
static int queue_lookup(bs_redis *r, bs_redis_op *op, const bs_lookup *q);

/* mirror_facts - q answered from the mirror into op's facts, with what the
 * mirror does not hold (under attack, the clock of the directory's age): 0,
 * or -1 (ask Redis: op's facts are reset for it) */
static int mirror_facts(bs_redis *r, bs_redis_op *op, const bs_lookup *q)
{
    if (bs__redis_track_answer(r->track, q, &op->facts) == BS_MIRROR_ASK_REDIS) {
        memset(&op->facts, 0, sizeof(op->facts));
        op->facts.ndr_index = -1;
        return -1;
    }
    op->facts.under_attack = under_attack(r, q);
    if (op->facts.dir_known)
        op->facts.dir_now = (long long)time(NULL);
    return 0;
}

static void on_idle(uv_idle_t *h) {}

/*
 * recheck - an op the mirror answered during the poll phase, before an
 * invalidation read later in the same phase (epoll reports a policy
 * connection that was ready before in front of the invalidation
 * connection): answer it again, or from Redis, so a change is obeyed from
 * the first request that follows it. 0: deliver op now; 1: it went to
 * Redis (delivered by its replies, or already with an error status).
 */
static int recheck(bs_redis *r, bs_redis_op *op)
{
    bs_facts f = {.ndr_index = -1}; /* with an error status: no facts */
    int rc;

    if (bs__redis_conn_closed(&r->conn) || bs__redis_track_changes(r->track) == op->changes)
        return 0;
    if (mirror_facts(r, op, &op->q) == 0)
        return 0;
    bs_store_facts_cb *cb = op->cb.facts;
    void *arg = op->arg;
    uint64_t id = op->id;

    if ((rc = check_ready(r)) != 0) {
        op->status = rc;
        return 0;
    }
    if ((rc = queue_lookup(r, op, &op->q)) != 0)
        cb(arg, id, rc, &f); /* queue_lookup recycled op: answer from here */
    return 1;
}

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
            if (!recheck(r, op))
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

/* mirror_lookup - answer q from the mirror into op (delivered from the
 * check handle): 0, or -1 (ask Redis: op's facts are reset for it) */
static int mirror_lookup(bs_redis *r, bs_redis_op *op, const bs_lookup *q)
{
    if (mirror_facts(r, op, q) < 0)
        return -1;
    op->q = *q;
    op->changes = bs__redis_track_changes(r->track);
    if (r->answered_tail)
        r->answered_tail->next_free = op;
    else
        r->answered = op;
    r->answered_tail = op;
    uv_check_start(&r->check, on_check);
    uv_idle_start(&r->idle, on_idle);
    return 0;
}

/* queue_lookup - the pipelined read queries of q under op: 0 when at
 * least one went (op completes later), else the op is recycled and the
 * reason returned */
static int queue_lookup(bs_redis *r, bs_redis_op *op, const bs_lookup *q)
{
    const char *mode_args[2] = {q->mode_domain, "*"};
    int failed = 0;

    op->facts.under_attack = under_attack(r, q);
    if (q->client_key)
        failed |=
            queue_keyed(op, BS_REPLY_BLOCK, "GET", BS_KEY_BLOCK, q->client_key, NULL, NULL, 0);
    if (q->nexempt)
        failed |= queue_keyed(op, BS_REPLY_EXEMPT, "SMISMEMBER", BS_KEY_EXEMPT, NULL, q->exempt,
                              NULL, q->nexempt);
    if (q->domain) {
        failed |= queue_keyed(op, BS_REPLY_DOMAIN, "SISMEMBER", BS_KEY_DOMAINS, NULL, &q->domain,
                              NULL, 1);
        failed |= queue_keyed(op, BS_REPLY_RCPT, "SMISMEMBER", BS_KEY_RCPT, q->domain, q->locals,
                              q->local_lens, q->nlocals);
    }
    if (q->nndr)
        failed |=
            queue_keyed(op, BS_REPLY_NDR, "HMGET", BS_KEY_NDR, NULL, q->ndr_fields, NULL, q->nndr);
    if (q->mode_domain)
        failed |= queue_keyed(op, BS_REPLY_MODE, "HMGET", BS_KEY_MODE, NULL, mode_args, NULL, 2);
    if (q->directory)
        failed |= queue_directory(op, q);
    return finish_queueing(r, op, failed);
}

/* r_lookup - one RCPT request's reads: from the mirror, else from Redis */
static int r_lookup(bs_store *s, const bs_lookup *q, bs_store_facts_cb *cb, void *arg, uint64_t id)
{
    bs_redis *r = (bs_redis *)s;
    bs_redis_op *op;

    if (!r->track && check_ready(r))
        return BS_WHY_REDIS_DOWN;
    if (!(op = op_get(r, OP_LOOKUP))) {
        bs_stat.redis_busy++;
        return BS_WHY_REDIS_BUSY;
    }
    op->cb.facts = cb;
    op->arg = arg;
    op->id = id;
    if (r->track && mirror_lookup(r, op, q) == 0)
        return 0;
    if (check_ready(r)) {
        op_put(r, op);
        return BS_WHY_REDIS_DOWN;
    }
    return queue_lookup(r, op, q);
}

/* copy_str - src into the array dst, cut to fit as snprintf "%s" cuts it
 * (snprintf cost ~600 instructions a copy: five of them an op) */
#define copy_str(dst, src) copy_cut((dst), sizeof(dst), (src))
static void copy_cut(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = 0;
}

/* script_of - the script an op runs */
static int script_of(const bs_redis_op *op)
{
    switch (op->kind) {
    case OP_TAKE:
        return S_NDR;
    case OP_HARVEST:
        return S_HARVEST;
    case OP_GREY:
        return S_GREY;
    case OP_KNOWN:
        return S_KNOWN;
    default:
        return S_BLOCK;
    }
}

/* script_head - "EVALSHA sha nkeys" (or EVAL body after NOSCRIPT) of an
 * n-argument command */
static void script_head(bs_resp *b, const bs_redis *r, int script, int eval, unsigned nkeys,
                        unsigned nargs)
{
    bs_resp_cmd(b, 3 + nkeys + nargs);
    bs_resp_str(b, eval ? "EVAL" : "EVALSHA");
    bs_resp_str(b, eval ? scripts[script] : r->sha[script]);
    bs_resp_u64(b, nkeys);
}

/* send_script - the op's script by EVALSHA, or by EVAL (after NOSCRIPT) */
static int send_script(bs_redis_op *op, int eval)
{
    bs_redis *r = op->r;
    const bs_config *cfg = r->cfg;
    char buf[BS_REDIS_CMD_MAX];
    bs_resp b;
    int script = script_of(op), kind = BS_REPLY_SCRIPT;

    bs_resp_init(&b, buf, sizeof(buf));
    eval = eval || !r->sha[script][0];
    switch (op->kind) {
    case OP_TAKE:
        script_head(&b, r, script, eval, 1, 2);
        arg_key(&b, r, BS_KEY_NDRCOUNT, op->key);
        bs_resp_u64(&b, op->rule.limit);
        bs_resp_u64(&b, op->rule.period_ms);
        kind = BS_REPLY_TAKE;
        break;
    case OP_HARVEST:
        script_head(&b, r, script, eval, 3, 3);
        arg_key(&b, r, BS_KEY_HARVEST, op->key);
        arg_key(&b, r, BS_KEY_ATTACK, NULL);
        arg_key(&b, r, BS_KEY_STATS, NULL);
        bs_resp_u64(&b, cfg->harvest_limit);
        bs_resp_u64(&b, cfg->harvest_duration_ms);
        bs_resp_str(&b, op->key);
        break;
    case OP_GREY: {
        char sub[BS_DOMAIN_MAX + 2 * BS_CLIENT_KEY_MAX + BS_LOCAL_MAX + 4];
        snprintf(sub, sizeof(sub), "%s:%s:%s", op->key, op->net, op->local);
        script_head(&b, r, script, eval, 2, 8);
        arg_key(&b, r, BS_KEY_KNOWN, op->key);
        arg_key(&b, r, BS_KEY_GREY, sub);
        bs_resp_u64(&b, cfg->harvest_known_age_ms);
        bs_resp_u64(&b, cfg->harvest_retry_after_ms);
        bs_resp_u64(&b, cfg->harvest_retry_window_ms);
        bs_resp_str(&b, cfg->harvest_new_clients == BS_HARVEST_DEFER ? "defer" : "greylist");
        bs_resp_str(&b, op->net);
        arg_key(&b, r, BS_KEY_EXEMPT, NULL);
        bs_resp_str(&b, op->ip);
        bs_resp_str(&b, op->ckey);
        kind = BS_REPLY_GREY;
        break;
    }
    case OP_KNOWN:
        script_head(&b, r, script, eval, 1, 2);
        arg_key(&b, r, BS_KEY_KNOWN, op->key);
        bs_resp_u64(&b, cfg->harvest_known_age_ms);
        bs_resp_str(&b, op->net);
        break;
    default: /* OP_BLOCK */
        script_head(&b, r, script, eval, 3, 2);
        arg_key(&b, r, BS_KEY_BLOCK, op->ckey);
        arg_key(&b, r, BS_KEY_RATE, op->ckey);
        arg_key(&b, r, BS_KEY_STATS, NULL);
        bs_resp_str(&b, "too many invalid recipients");
        bs_resp_u64(&b, cfg->block_time_ms);
        kind = BS_REPLY_NOTE;
        break;
    }
    return queue(op, kind, &b);
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
    copy_str(op->key, domain);
    return finish_queueing(r, op, send_script(op, 0));
}

/* script_op - an op of kind for d's script, or NULL (not ready, or busy:
 * counted) */
static bs_redis_op *script_op(bs_redis *r, int kind, const bs_decision *d)
{
    bs_redis_op *op;

    if (check_ready(r))
        return NULL;
    if (!(op = op_get(r, kind))) {
        bs_stat.redis_busy++;
        return NULL;
    }
    copy_str(op->key, d->rcpt.domain);
    copy_str(op->ip, d->client_ip);
    copy_str(op->ckey, d->client_key);
    copy_str(op->net, d->network);
    copy_str(op->local, d->rcpt.local);
    return op;
}

/* r_count_unknown - d's unknown recipient into the batch (see counts below) */
static void r_count_unknown(bs_store *s, const bs_decision *d);

static void r_known_note(bs_store *s, const bs_decision *d)
{
    bs_redis *r = (bs_redis *)s;
    bs_redis_op *op;

    if (!bs_known_due(&r->known, d->rcpt.domain, d->network, uv_now(r->conn.loop)))
        return;
    if ((op = script_op(r, OP_KNOWN, d)))
        finish_queueing(r, op, send_script(op, 0));
}

static int r_harvest_check(bs_store *s, const bs_decision *d, bs_store_take_cb *cb, void *arg,
                           uint64_t id)
{
    bs_redis *r = (bs_redis *)s;
    bs_redis_op *op;

    if (check_ready(r))
        return BS_WHY_REDIS_DOWN;
    if (!(op = script_op(r, OP_GREY, d)))
        return BS_WHY_REDIS_BUSY;
    op->cb.take = cb;
    op->arg = arg;
    op->id = id;
    return finish_queueing(r, op, send_script(op, 0));
}

static const bs_attack *r_attacks(const bs_store *s, size_t *n)
{
    const bs_redis *r = (const bs_redis *)s;

    *n = r->attacks.n;
    return r->attacks.a;
}

static void r_count(bs_store *s, int why)
{
    bs_redis *r = (bs_redis *)s;

    if (why >= 0 && why < BS_WHY_COUNT)
        r->pending_stats[why]++;
}

static void r_would_reject(bs_store *s, const char *domain)
{
    bs_redis *r = (bs_redis *)s;
    uint64_t now;
    size_t i;

    for (i = 0; i < r->nwr; i++)
        if (strcmp(r->wr[i].domain, domain) == 0) {
            r->wr[i].n++;
            return;
        }
    if (r->nwr < BS_WOULDREJECT_PENDING_MAX) {
        copy_str(r->wr[r->nwr].domain, domain);
        r->wr[r->nwr++].n = 1;
        return;
    }
    bs_stat.would_reject_dropped++;
    now = uv_now(r->conn.loop);
    if (r->wr_last_warn && now - r->wr_last_warn < BS_WOULDREJECT_WARN_MS)
        return;
    bs_warn("would-reject counts of more than %d domains within one flush: %llu counts not "
            "added to %s%s since the last warning",
            BS_WOULDREJECT_PENDING_MAX,
            (unsigned long long)(bs_stat.would_reject_dropped - r->wr_warned_dropped),
            r->cfg->prefix, BS_KEY_WOULDREJECT);
    r->wr_last_warn = now;
    r->wr_warned_dropped = bs_stat.would_reject_dropped;
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
    .count_unknown = r_count_unknown,
    .known_note = r_known_note,
    .harvest_check = r_harvest_check,
    .attacks = r_attacks,
    .count = r_count,
    .would_reject = r_would_reject,
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

/* flush_would_reject - one HINCRBY wouldreject <domain> N per domain
 * pending; a count that cannot be sent stays for the next flush */
static void flush_would_reject(bs_redis *r)
{
    char buf[BS_CFG_PREFIX_MAX + 2 * BS_DOMAIN_MAX + 64];
    bs_resp b;
    size_t i, kept = 0;

    for (i = 0; i < r->nwr; i++) {
        begin_keyed(&b, buf, sizeof(buf), r, 4, "HINCRBY", BS_KEY_WOULDREJECT, NULL);
        bs_resp_str(&b, r->wr[i].domain);
        bs_resp_u64(&b, r->wr[i].n);
        if (bs__redis_conn_send(&r->conn, &b, on_stats_reply, r, 0) != 0)
            r->wr[kept++] = r->wr[i];
    }
    r->nwr = kept;
}

/* flush_stats - add the decision counts to the cluster-wide stats hash,
 * and the would-reject counts to the wouldreject hash */
static void flush_stats(bs_redis *r)
{
    char buf[512];
    bs_resp b;
    int i;

    flush_would_reject(r);
    for (i = 0; i < BS_WHY_COUNT; i++) {
        if (!r->pending_stats[i])
            continue;
        begin_keyed(&b, buf, sizeof(buf), r, 4, "HINCRBY", BS_KEY_STATS, NULL);
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
        begin_keyed(&b, buf, sizeof(buf), r, 2, "SCARD", BS_KEY_RCPT, r->dir_next[i].domain);
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
    begin_keyed(&b, buf, sizeof(buf), r, 2, "SMEMBERS", BS_KEY_DOMAINS, NULL);
    if (bs__redis_conn_send(&r->conn, &b, on_dir_domains, r, 1) < 0)
        return;
    r->dir_pending++;
    begin_keyed(&b, buf, sizeof(buf), r, 2, "HGETALL", BS_KEY_SYNC, NULL);
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

/* ------------------------------------------------------------ harvest attacks */

/*
 * The table of domains under attack: filled by the sweep script once a
 * second (it also ends the attacks whose time is up: the process whose
 * sweep deleted one logs its end), and at once by the process whose count
 * started one. An entry our script added after the sweep was sent is kept
 * when that sweep's answer lacks it. A domain that disappears before its
 * until was ended by hand (HDEL, backstopctl harvest end).
 */

/* fmt_duration - "1h2m3s", "10m", "5s" */
static const char *fmt_duration(long long s, char *out, size_t outsz)
{
    long long h = s / 3600, m = s / 60 % 60, sec = s % 60;
    size_t n = 0;

    out[0] = 0;
    if (h)
        n += (size_t)snprintf(out + n, outsz - n, "%lldh", h);
    if (m && n < outsz)
        n += (size_t)snprintf(out + n, outsz - n, "%lldm", m);
    if ((sec || !n) && n < outsz)
        snprintf(out + n, outsz - n, "%llds", sec);
    return out;
}

/* harvest_warn - at most one warning a minute about the attack hash */
static int harvest_warn_due(bs_redis *r)
{
    uint64_t now = uv_now(r->conn.loop);

    if (r->last_harvest_warn && now - r->last_harvest_warn < BS_HARVEST_WARN_MS)
        return 0;
    r->last_harvest_warn = now;
    return 1;
}

/* attacks_put - into t, counting and warning about a full table */
static void attacks_put(bs_redis *r, bs_attacks *t, const bs_attack *a)
{
    if (bs_attacks_put(t, a) == 0)
        return;
    bs_stat.harvest_domains_dropped++;
    if (harvest_warn_due(r))
        bs_warn("harvest: more than %d domains under attack: %s and others left out (treated as "
                "not under attack here)",
                BS_HARVEST_DOMAINS_MAX, a->domain);
}

/* str_el - element i of an array reply as a string (len), or NULL */
static const char *str_el(const redisReply *rep, size_t i, size_t *len)
{
    const redisReply *e;

    if (rep->type != REDIS_REPLY_ARRAY || i >= rep->elements)
        return NULL;
    e = rep->element[i];
    if (e->type != REDIS_REPLY_STRING || e->len > BS_DOMAIN_MAX)
        return NULL;
    *len = e->len;
    return e->str;
}

static void log_ended(const char *domain, size_t len, long long since, long long now);

/* harvest_counted - the harvest script's answer; {1, n, ended, net,
 * count...}: this call started an attack: log it (and the end of an
 * expired one it replaced), count it, and act on it at once */
static void harvest_counted(bs_redis_op *op, const redisReply *rep)
{
    bs_redis *r = op->r;
    char top[3 * (BS_CLIENT_KEY_MAX + 24)] = "", win[32], esc[BS_CLIENT_KEY_MAX * 4 + 1];
    size_t i, n = 0, len;
    const char *net;
    bs_attack a;

    if (rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[0]->integer != 1 || rep->element[1]->type != REDIS_REPLY_INTEGER ||
        rep->element[2]->type != REDIS_REPLY_INTEGER)
        return;
    if (rep->element[2]->integer >= 0)
        log_ended(op->key, strlen(op->key), rep->element[2]->integer, (long long)time(NULL));
    for (i = 3; i + 1 < rep->elements && n < sizeof(top); i += 2) {
        if (!(net = str_el(rep, i, &len)) || rep->element[i + 1]->type != REDIS_REPLY_INTEGER)
            break;
        bs_escape(net, len, esc, sizeof(esc));
        n += (size_t)snprintf(top + n, sizeof(top) - n, "%s%s (%lld)", n ? ", " : "", esc,
                              rep->element[i + 1]->integer);
    }
    bs_stat.harvest_started++;
    bs_info("harvest attack on %s started: %lld unknown recipients within %s, top client "
            "networks: %s",
            op->key, rep->element[1]->integer,
            fmt_duration((long long)(r->cfg->harvest_window_ms / 1000), win, sizeof(win)),
            n ? top : "none");
    memset(&a, 0, sizeof(a));
    snprintf(a.domain, sizeof(a.domain), "%s", op->key);
    a.until = (long long)time(NULL) + (long long)(r->cfg->harvest_duration_ms / 1000);
    attacks_put(r, &r->attacks, &a);
    for (i = 0; i < r->attacks.n; i++)
        if (strcmp(r->attacks.a[i].domain, a.domain) == 0)
            r->attacks_added[i] = uv_now(r->conn.loop);
}

/* log_ended - an attack this process ended (since 0: unknown) */
static void log_ended(const char *domain, size_t len, long long since, long long now)
{
    char dur[32], dom[BS_DOMAIN_MAX * 4 + 1];

    bs_escape(domain, len, dom, sizeof(dom));
    bs_stat.harvest_ended++;
    bs_info("harvest attack on %s ended after %s", dom,
            fmt_duration(since > 0 && now > since ? now - since : 0, dur, sizeof(dur)));
}

/* sweep_ended - the attacks this sweep ended: log each once */
static void sweep_ended(const redisReply *ended, long long now)
{
    size_t i, len;
    const char *d;
    const redisReply *since;

    for (i = 0; i + 1 < ended->elements; i += 2) {
        if (!(d = str_el(ended, i, &len)))
            continue;
        since = ended->element[i + 1];
        log_ended(d, len,
                  since->type == REDIS_REPLY_STRING ? bs_store_unix_time(since->str, since->len)
                                                    : 0,
                  now);
    }
}

static void on_sweep(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = privdata;
    const redisReply *rep = reply, *left;
    bs_attacks *next = &r->attacks_next;
    size_t i, len;
    const char *d;
    long long now;
    bs_attack a;

    bs__redis_conn_replied(&r->conn, rep);
    r->sweep_pending = 0;
    if (!rep || bs__redis_conn_closed(&r->conn))
        return;
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        bs_stat.redis_noscript++;
        r->sweep_eval = 1; /* EVAL next time, which loads it again */
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_ARRAY || rep->element[2]->type != REDIS_REPLY_ARRAY) {
        bs_stat.redis_errors++;
        warn_rate_limited(r, "harvest sweep",
                          rep->type == REDIS_REPLY_ERROR ? rep->str : "wrong reply type");
        return;
    }
    now = rep->element[0]->integer;
    sweep_ended(rep->element[1], now);
    left = rep->element[2];
    next->n = 0;
    for (i = 0; i + 1 < left->elements; i += 2) {
        if (!(d = str_el(left, i, &len)) || left->element[i + 1]->type != REDIS_REPLY_INTEGER)
            continue;
        memset(&a, 0, sizeof(a));
        memcpy(a.domain, d, len);
        a.until = left->element[i + 1]->integer;
        if (a.until < 0) {
            a.unreadable = 1;
            char esc[BS_DOMAIN_MAX * 4 + 1];
            bs_stat.harvest_unreadable++;
            bs_escape(d, len, esc, sizeof(esc));
            if (harvest_warn_due(r))
                bs_warn("harvest: attack entry of %s has no readable until (want "
                        "since=UNIX;until=UNIX;unknown=N): treated as under attack",
                        esc);
        }
        attacks_put(r, next, &a);
    }
    for (i = 0; i < r->attacks.n; i++) {
        const bs_attack *old = &r->attacks.a[i];
        if (bs_attacks_find(next, old->domain))
            continue;
        if (r->attacks_added[i] >= r->sweep_sent) { /* ours, newer than this answer */
            attacks_put(r, next, old);
            continue;
        }
        if (old->unreadable || old->until > now + 1) {
            char esc[BS_DOMAIN_MAX * 4 + 1];
            bs_escape(old->domain, strlen(old->domain), esc, sizeof(esc));
            bs_info("harvest attack on %s: no longer under attack (ended by hand)", esc);
        }
    }
    memcpy(r->attacks.a, next->a, next->n * sizeof(next->a[0]));
    r->attacks.n = next->n;
    memset(r->attacks_added, 0, sizeof(r->attacks_added));
}

/* sweep - run the sweep script (one at a time) */
static void sweep(bs_redis *r, uint64_t now)
{
    char buf[BS_REDIS_CMD_MAX];
    bs_resp b;

    if (r->sweep_pending || !bs__redis_conn_ready(&r->conn))
        return;
    bs_resp_init(&b, buf, sizeof(buf));
    script_head(&b, r, S_SWEEP, r->sweep_eval || !r->sha[S_SWEEP][0], 2, 0);
    r->sweep_eval = 0;
    arg_key(&b, r, BS_KEY_ATTACK, NULL);
    arg_key(&b, r, BS_KEY_STATS, NULL);
    if (bs__redis_conn_send(&r->conn, &b, on_sweep, r, 1) == 0) {
        r->sweep_pending = 1;
        r->sweep_sent = now;
    }
}

/* ------------------------------------------------------------ unknown-recipient counts */

/*
 * Unknown recipients are counted in batches (counts.h): the first unknown
 * recipient after a quiet spell is sent at once (written in the loop
 * iteration of its answer); then the next batch fills while one is in
 * flight or for the rest of BS_COUNTS_GAP_MS after the last send (a
 * timer), whichever ends later; a batch in which a client reached its
 * limit goes as soon as nothing is in flight. So a batch holds one
 * recipient when idle and dozens under load (Redis's work per recipient
 * falls with the batch), and a client that pipelines RCPTs past its limit
 * meets its block about one round trip later.
 * A flush is two pipelined bursts: SMISMEMBER exempt with the address and
 * client key of each client of the batch (BS_COUNTS_EXEMPT_CHUNK clients a
 * command; not sent when the mirror is exact: it answers for the exempt
 * SET); once all are answered, for each count of a client not exempt
 * ZREMRANGEBYSCORE rate:<client> -inf <now - window>, ZADD of one member
 * per unknown recipient, PEXPIRE window, ZCARD; per domain the same on
 * harvest:<domain> with [harvest] window and the notes of clients not
 * exempt. A ZCARD past the limit runs the block script (OP_BLOCK) or the
 * harvest script (OP_HARVEST). An exempt answer that fails drops the batch
 * (counted): an exempt client, a relay of ours, must never be blocked by a
 * guess. What does not fit a batch is dropped and counted, as is a batch
 * while Redis is not ready. Scores are Redis's clock in ms as this process
 * reads it (its wall clock + the offset measured by TIME once a second).
 */
#define BS_COUNTS_LINGER_MS 500   /* a close waits this long for the last counts */
#define BS_COUNTS_ZADD_CHUNK 48   /* members in one ZADD: the command fits BS_REDIS_CMD_MAX */
#define BS_COUNTS_EXEMPT_CHUNK 48 /* clients (two members each) in one SMISMEMBER */
_Static_assert(BS_COUNTS_ZADD_CHUNK *(BS_CLIENT_KEY_MAX + 2 * 21 + 40) + BS_CFG_PREFIX_MAX +
                       BS_DOMAIN_MAX + 64 <=
                   BS_REDIS_CMD_MAX,
               "a ZADD of BS_COUNTS_ZADD_CHUNK members fits one command");
_Static_assert(BS_COUNTS_EXEMPT_CHUNK * 2 * (BS_CLIENT_KEY_MAX + 16) + BS_CFG_PREFIX_MAX + 64 <=
                   BS_REDIS_CMD_MAX,
               "an SMISMEMBER of BS_COUNTS_EXEMPT_CHUNK clients fits one command");

/* wall_ms - this host's wall clock in ms */
static uint64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* count_reply_ok - common checks of a count reply; 1 when rep has type */
static int count_reply_ok(count_batch *b, redisAsyncContext *ac, const redisReply *rep, int type)
{
    bs_redis *r = b->r;

    bs__redis_conn_replied(&r->conn, rep);
    b->pending--;
    if (!rep || bs__redis_conn_closed(&r->conn))
        return 0;
    if (rep->type == type)
        return 1;
    drop_if_readonly(r, ac, rep);
    bs_stat.redis_errors++;
    warn_rate_limited(r, "counting unknown recipients",
                      rep->type == REDIS_REPLY_ERROR ? rep->str : "wrong reply type");
    return 0;
}

static void counts_flush(bs_redis *r);
static void close_parts(bs_redis *r);

/* count_done - at the end of a count callback: the batch in flight has all
 * its replies: send the one that filled meanwhile (closing: close when
 * nothing is left) */
static void count_done(count_batch *b)
{
    bs_redis *r = b->r;

    if (b->pending != 0 || b != r->flight || bs__redis_conn_closed(&r->conn))
        return;
    counts_flush(r);
    if (r->closing == 1 && r->flight->pending == 0 && bs_counts_empty(&r->fill->c))
        close_parts(r);
}

static void on_count_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    count_reply_ok(privdata, ac, reply, REDIS_REPLY_INTEGER);
    count_done(privdata);
}

/* count_past - the count of order entry v (a rate's index, or -(domain's
 * index + 1)) is n: past its limit, run the block or the harvest script */
static void count_past(count_batch *b, int v, long long n)
{
    bs_redis *r = b->r;
    bs_redis_op *op;
    int kind = v >= 0 ? OP_BLOCK : OP_HARVEST;

    if (kind == OP_BLOCK ? n <= (long long)b->c.rate[v].limit
                         : n <= (long long)r->cfg->harvest_limit)
        return;
    if (!bs__redis_conn_ready(&r->conn))
        return;
    if (!(op = op_get(r, kind))) {
        bs_stat.redis_busy++;
        return;
    }
    op->count = n;
    if (kind == OP_BLOCK) {
        copy_str(op->ckey, b->c.client[b->c.rate[v].client].ckey);
        op->rule.limit = b->c.rate[v].limit;
        op->rule.period_ms = b->c.rate[v].window_ms;
    } else
        copy_str(op->key, b->c.dom[-v - 1].domain);
    finish_queueing(r, op, send_script(op, 0));
}

static void on_count_card(redisAsyncContext *ac, void *reply, void *privdata)
{
    count_batch *b = privdata;
    const redisReply *rep = reply;
    size_t i = b->cursor++;

    if (count_reply_ok(b, ac, rep, REDIS_REPLY_INTEGER) && i < b->norder)
        count_past(b, b->order[i], rep->integer);
    count_done(b);
}

/* count_send - one built command of b; 0 / -1 */
static int count_send(count_batch *b, const bs_resp *cmd, redisCallbackFn *fn)
{
    if (cmd->overflow || bs__redis_conn_send(&b->r->conn, cmd, fn, b, 1) < 0)
        return -1;
    b->pending++;
    return 0;
}

/* member - "<net> <tag>:<seq>" (net NULL: "<tag>:<seq>") into out, which
 * holds a network (BS_CLIENT_KEY_MAX), the tag and 20 digits (snprintf
 * was ~600 instructions a member) */
static size_t member(bs_redis *r, const char *net, char *out, size_t size)
{
    char digits[20];
    size_t n = 0, k = 0, tl = strlen(r->tag);
    uint64_t seq = ++r->seq;

    if (net) {
        size_t nl = strnlen(net, BS_CLIENT_KEY_MAX);
        memcpy(out, net, nl);
        out[nl] = ' ';
        n = nl + 1;
    }
    do
        digits[k++] = (char)('0' + seq % 10);
    while ((seq /= 10) != 0);
    if (n + tl + 1 + k > size)
        return 0;
    memcpy(out + n, r->tag, tl);
    n += tl;
    out[n++] = ':';
    while (k)
        out[n++] = digits[--k];
    return n;
}

/* next_note - the first note from i on whose client is not exempt, or -1 */
static int next_note(const bs_counts *c, int i)
{
    while (i >= 0 && c->client[c->note[i].client].exempt)
        i = c->note[i].next;
    return i;
}

/*
 * count_key - the four commands of one count: key name:sub, members kept
 * for keep_ms, adds members (the notes chained from note whose clients are
 * not exempt, or nameless ones when note is -2), then ZCARD, or, with a
 * window_ms shorter than keep_ms, ZCOUNT over (now - window_ms, +inf];
 * order entry v; 0 / -1 (a command could not be sent: the rest of the
 * batch is not sent either)
 */
static int count_key(count_batch *b, const char *name, const char *sub, uint64_t keep_ms,
                     uint64_t window_ms, unsigned adds, int note, int v)
{
    bs_redis *r = b->r;
    char buf[BS_REDIS_CMD_MAX], m[BS_CLIENT_KEY_MAX + 48];
    bs_resp cmd;
    unsigned done, k, i;

    begin_keyed(&cmd, buf, sizeof(buf), r, 4, "ZREMRANGEBYSCORE", name, sub);
    bs_resp_str(&cmd, "-inf");
    bs_resp_u64(&cmd, b->now > keep_ms ? b->now - keep_ms : 0);
    if (count_send(b, &cmd, on_count_reply) < 0)
        return -1;
    for (done = 0; done < adds; done += k) {
        k = adds - done < BS_COUNTS_ZADD_CHUNK ? adds - done : BS_COUNTS_ZADD_CHUNK;
        begin_keyed(&cmd, buf, sizeof(buf), r, 2 + 2 * k, "ZADD", name, sub);
        for (i = 0; i < k; i++) {
            const char *net = NULL;
            if (note >= 0) {
                net = b->c.note[note].net;
                note = next_note(&b->c, b->c.note[note].next);
            }
            bs_resp_u64(&cmd, b->now);
            bs_resp_arg(&cmd, m, member(r, net, m, sizeof(m)));
        }
        if (count_send(b, &cmd, on_count_reply) < 0)
            return -1;
    }
    begin_keyed(&cmd, buf, sizeof(buf), r, 3, "PEXPIRE", name, sub);
    bs_resp_u64(&cmd, keep_ms);
    if (count_send(b, &cmd, on_count_reply) < 0)
        return -1;
    if (window_ms < keep_ms) {
        begin_keyed(&cmd, buf, sizeof(buf), r, 4, "ZCOUNT", name, sub);
        bs_resp_u64_after(&cmd, "(", b->now > window_ms ? b->now - window_ms : 0);
        bs_resp_str(&cmd, "+inf");
    } else
        begin_keyed(&cmd, buf, sizeof(buf), r, 2, "ZCARD", name, sub);
    if (count_send(b, &cmd, on_count_card) < 0)
        return -1;
    b->order[b->norder++] = v;
    return 0;
}

/*
 * rate_keep_ms - how long a client's rate members are kept: its one
 * rate:<client> ZSET serves [ratelimit] invalid_recipients and, while a
 * domain is under attack, [harvest] client_limit; each counts over its own
 * window (ZCOUNT), but none trims or expires the other's members (a count
 * with the shorter window cut the longer one's short: a harvester probing
 * a domain not under attack between probes of one that is escaped
 * client_limit)
 */
static uint64_t rate_keep_ms(const bs_redis *r, uint64_t window_ms)
{
    const bs_config *cfg = r->cfg;
    uint64_t keep = window_ms;

    if (cfg->invalid_limit > 0 && cfg->invalid_window_ms > keep)
        keep = cfg->invalid_window_ms;
    if (cfg->harvest_limit > 0 && cfg->harvest_client_limit > 0 &&
        cfg->harvest_client_window_ms > keep)
        keep = cfg->harvest_client_window_ms;
    return keep;
}

/* counts_send - the counting commands of b's clients not exempt */
static void counts_send(count_batch *b)
{
    bs_redis *r = b->r;
    size_t i;

    b->now = (uint64_t)((int64_t)wall_ms() + r->clock_offset);
    for (i = 0; i < b->c.nrate; i++) {
        const bs_count_rate *e = &b->c.rate[i];
        if (b->c.client[e->client].exempt)
            continue;
        if (count_key(b, BS_KEY_RATE, b->c.client[e->client].ckey, rate_keep_ms(r, e->window_ms),
                      e->window_ms, e->adds, -2, (int)i) < 0)
            return;
    }
    for (i = 0; i < b->c.ndom; i++) {
        const bs_count_domain *e = &b->c.dom[i];
        unsigned adds = 0;
        int n;
        for (n = next_note(&b->c, e->first); n >= 0; n = next_note(&b->c, b->c.note[n].next))
            adds++;
        if (adds &&
            count_key(b, BS_KEY_HARVEST, e->domain, r->cfg->harvest_window_ms,
                      r->cfg->harvest_window_ms, adds, next_note(&b->c, e->first), -(int)i - 1) < 0)
            return;
    }
}

/* on_count_exempt - one SMISMEMBER exempt of the batch's clients (two
 * members each, in order): marks them; the last answer sends the counts */
static void on_count_exempt(redisAsyncContext *ac, void *reply, void *privdata)
{
    count_batch *b = privdata;
    const redisReply *rep = reply;
    size_t i;

    b->exempt_due--;
    if (!count_reply_ok(b, ac, rep, REDIS_REPLY_ARRAY))
        b->exempt_failed = 1;
    else
        for (i = 0; i + 1 < rep->elements && b->exempt_read < b->c.nclient; i += 2)
            b->c.client[b->exempt_read++].exempt =
                rep->element[i]->type != REDIS_REPLY_INTEGER || rep->element[i]->integer != 0 ||
                rep->element[i + 1]->type != REDIS_REPLY_INTEGER ||
                rep->element[i + 1]->integer != 0;
    if (b->exempt_due)
        return;
    if (b->exempt_failed || b->exempt_read != b->c.nclient || bs__redis_conn_closed(&b->r->conn))
        bs_stat.unknown_counts_dropped += b->c.nadded;
    else
        counts_send(b);
    count_done(b);
}

/* exempt_from_mirror - the batch's exempt flags from the mirror, when it
 * is exact for every client (no SMISMEMBER then): 1, else 0 */
static int exempt_from_mirror(bs_redis *r, count_batch *b)
{
    bs_lookup q;
    bs_facts f;
    size_t i;

    if (!r->track || !r->track->m)
        return 0;
    memset(&q, 0, sizeof(q));
    q.nexempt = 2;
    for (i = 0; i < b->c.nclient; i++) {
        q.exempt[0] = b->c.client[i].ip;
        q.exempt[1] = b->c.client[i].ckey;
        if (bs_mirror_answer(r->track->m, &q, uv_now(r->conn.loop), 0, &f) != BS_MIRROR_EXACT)
            return 0;
        b->c.client[i].exempt = f.exempt;
    }
    return 1;
}

/* on_count_timer - the end of a batch's gap: send it, and write it now
 * (commands queued in the timer phase would wait for the next poll event) */
static void on_count_timer(uv_timer_t *t)
{
    bs_redis *r = t->data;

    counts_flush(r);
    if (r->conn.ac)
        bs_redis_uv_flush(r->conn.ac);
}

/* counts_flush - send the filling batch, unless the last one's replies
 * are still awaited (then its last reply sends it) or its gap has not
 * passed (then the timer does; no gap while closing: the last counts go
 * now, and the timer holds the linger's deadline); a batch Redis cannot
 * take now is dropped and counted */
static void counts_flush(bs_redis *r)
{
    count_batch *b = r->fill;
    uint64_t now;
    char buf[BS_REDIS_CMD_MAX];
    bs_resp cmd;
    size_t i, k;

    if (bs_counts_empty(&b->c))
        return;
    if (r->flight->pending)
        return;
    now = uv_now(r->conn.loop);
    if (!b->c.hot && !r->closing && r->count_sent && now - r->count_sent < BS_COUNTS_GAP_MS) {
        if (!uv_is_active((uv_handle_t *)&r->count_timer) && !bs__redis_conn_closed(&r->conn))
            uv_timer_start(&r->count_timer, on_count_timer,
                           BS_COUNTS_GAP_MS - (now - r->count_sent), 0);
        return;
    }
    r->count_sent = now;
    if (!r->closing) /* else it holds the linger's deadline */
        uv_timer_stop(&r->count_timer);
    r->fill = r->flight;
    r->flight = b;
    bs_counts_clear(&r->fill->c);
    b->cursor = b->norder = b->exempt_read = 0;
    b->exempt_due = 0;
    b->exempt_failed = 0;
    if (check_ready(r)) {
        bs_stat.unknown_counts_dropped += b->c.nadded;
        return;
    }
    if (exempt_from_mirror(r, b)) {
        counts_send(b);
        return;
    }
    for (i = 0; i < b->c.nclient; i += k) {
        k = b->c.nclient - i < BS_COUNTS_EXEMPT_CHUNK ? b->c.nclient - i : BS_COUNTS_EXEMPT_CHUNK;
        begin_keyed(&cmd, buf, sizeof(buf), r, 2 + 2 * (unsigned)k, "SMISMEMBER", BS_KEY_EXEMPT,
                    NULL);
        for (size_t j = i; j < i + k; j++) {
            bs_resp_str(&cmd, b->c.client[j].ip);
            bs_resp_str(&cmd, b->c.client[j].ckey);
        }
        if (count_send(b, &cmd, on_count_exempt) < 0)
            break;
        b->exempt_due++;
    }
    if (i < b->c.nclient) /* the answers that come drop the batch */
        b->exempt_failed = 1;
    if (!b->exempt_due)
        bs_stat.unknown_counts_dropped += b->c.nadded;
}

/* r_count_unknown - d's unknown recipient into the filling batch: for its
 * client's rate (d->note_invalid), its domain's harvest count
 * (d->note_harvest), or both; sent at once unless a batch is in flight or
 * within its gap; lost (counted) while Redis is not ready or when it does
 * not fit */
static void r_count_unknown(bs_store *s, const bs_decision *d)
{
    bs_redis *r = (bs_redis *)s;
    const char *domain = d->note_harvest ? d->rcpt.domain : NULL;
    unsigned limit = d->note_invalid ? d->invalid_limit : 0;

    if (check_ready(r)) {
        bs_stat.unknown_counts_dropped++;
        return;
    }
    /* a batch fills only while one is in flight (else it was sent): full,
     * nothing can be sent before that one's replies */
    if (bs_counts_add(&r->fill->c, d->client_ip, d->client_key, limit, d->invalid_window_ms, domain,
                      d->network) < 0) {
        bs_stat.unknown_counts_dropped++;
        return;
    }
    counts_flush(r);
}

/* on_time - TIME's reply: Redis's clock against ours */
static void on_time(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis *r = privdata;
    const redisReply *rep = reply;
    uint64_t sent = r->time_sent;

    bs__redis_conn_replied(&r->conn, rep);
    r->time_sent = 0;
    if (!rep || bs__redis_conn_closed(&r->conn) || rep->type != REDIS_REPLY_ARRAY ||
        rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    r->clock_offset = bs_counts_clock(sent, wall_ms(),
                                      strtoull(rep->element[0]->str, NULL, 10) * 1000 +
                                          strtoull(rep->element[1]->str, NULL, 10) / 1000);
}

/* clock_read - TIME (one at a time) */
static void clock_read(bs_redis *r)
{
    char buf[64];
    bs_resp b;

    if (r->time_sent)
        return;
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 1);
    bs_resp_str(&b, "TIME");
    r->time_sent = wall_ms();
    if (bs__redis_conn_send(&r->conn, &b, on_time, r, 1) < 0)
        r->time_sent = 0;
}

/* ------------------------------------------------------------ connection hooks */

/* on_conn_handshake - load the scripts on every new connection */
static int on_conn_handshake(void *owner)
{
    bs_redis *r = owner;
    char buf[BS_REDIS_CMD_MAX];
    bs_resp b;
    int rc = 0;

    int i;

    for (i = 0; i < S_N; i++)
        r->sha[i][0] = 0;
    r->sweep_pending = 0;
    r->time_sent = 0;
    if (r->track)
        bs__redis_track_data_new(r->track);
    r->dir_last = 0; /* the directory gauges are refreshed first thing on a new connection */
    for (i = 0; i < S_N; i++) {
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 3);
        bs_resp_str(&b, "SCRIPT");
        bs_resp_str(&b, "LOAD");
        bs_resp_str(&b, scripts[i]);
        rc |= bs__redis_conn_handshake_cmd(&r->conn, &b, r->sha[i]);
    }
    return rc;
}

/* on_conn_tick - the periodic stats flush */
static void on_conn_tick(void *owner, uint64_t now)
{
    bs_redis *r = owner;

    if (now - r->last_flush >= BS_REDIS_STATS_FLUSH_MS) {
        r->last_flush = now;
        flush_stats(r);
        if (r->cfg->invalid_limit > 0 || r->cfg->harvest_limit > 0)
            clock_read(r); /* only counts need Redis's clock */
        if (r->cfg->harvest_limit > 0)
            sweep(r, now);
        else
            r->attacks.n = 0;
    }
    if (!r->dir_last || now - r->dir_last >= BS_DIR_REFRESH_MS) {
        r->dir_last = now;
        dir_refresh(r);
    }
    if (r->track)
        bs__redis_track_tick(r->track, now);
}

/* on_conn_down - while the data connection is lost: the mirror is stale
 * within a tick of the loss, not at the next request (max_stale counts
 * from then). With the data connection up, its tick checks the link
 * (bs__redis_track_tick), a lost subscription included. */
static void on_conn_down(void *owner, uint64_t now)
{
    bs_redis *r = owner;

    (void)now;
    if (r->track)
        bs__redis_track_check(r->track);
}

/* part_closed - a connection or handle is closed: the last frees the store */
static void part_closed(void *owner)
{
    bs_redis *r = owner;

    if (--r->open_parts)
        return;
    free(r->track);
    free(r->ops);
    free(r->fill);
    free(r->flight);
    free(r);
}

static void on_handle_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

static const bs_redis_conn_hooks conn_hooks = {
    .handshake = on_conn_handshake,
    .tick = on_conn_tick,
    .down = on_conn_down,
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
    r->fill = calloc(1, sizeof(*r->fill));
    r->flight = calloc(1, sizeof(*r->flight));
    if (!r->ops || !r->fill || !r->flight) {
        free(r->ops);
        free(r->fill);
        free(r->flight);
        free(r);
        return NULL;
    }
    r->fill->r = r->flight->r = r;
    snprintf(r->tag, sizeof(r->tag), "%08llx",
             (unsigned long long)(bs_hash_end(uv_hrtime() ^ wall_ms() ^ (uint64_t)getpid() << 32) &
                                  0xffffffffu));
    for (i = cfg->max_pending; i-- > 0;)
        op_put(r, &r->ops[i]);
    r->base.ops = &redis_ops;
    r->cfg = cfg;
    r->open_parts = 2;
    uv_timer_init(loop, &r->count_timer);
    r->count_timer.data = r;
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

/* on_linger_deadline - the counts did not all go in BS_COUNTS_LINGER_MS:
 * the store closes. Lost: the batch filling, and the one in flight if its
 * exempt answers are still awaited (its callbacks, called at the close,
 * count that one); a batch in flight whose commands went is written */
static void on_linger_deadline(uv_timer_t *t)
{
    bs_redis *r = t->data;
    size_t lost = r->fill->c.nadded + (r->flight->exempt_due ? r->flight->c.nadded : 0);

    bs_stat.unknown_counts_dropped += r->fill->c.nadded;
    bs_warn("redis: stopping: %zu unknown recipients not counted (no answer from Redis in %d ms)",
            lost, BS_COUNTS_LINGER_MS);
    close_parts(r);
}

/*
 * bs_store_redis_close - the last counters go out before the connections
 * close gracefully: the stats, and the unknown recipients counted since the
 * last batch. A batch in flight (its replies, or with mirror = no its
 * exempt answers, awaited) holds the one filling: the close waits for it,
 * BS_COUNTS_LINGER_MS at most (count_done closes when all went).
 */
void bs_store_redis_close(bs_store *s)
{
    bs_redis *r = (bs_redis *)s;

    if (bs__redis_conn_ready(&r->conn)) {
        flush_stats(r);
        r->closing = 1;
        counts_flush(r);
        if (r->flight->pending || !bs_counts_empty(&r->fill->c)) {
            uv_timer_start(&r->count_timer, on_linger_deadline, BS_COUNTS_LINGER_MS, 0);
            return;
        }
    }
    close_parts(r);
}

/* close_parts - close the store's handles and connections (once) */
static void close_parts(bs_redis *r)
{
    if (r->closing == 2)
        return;
    r->closing = 2;
    uv_close((uv_handle_t *)&r->count_timer, on_handle_closed);
    if (r->track) {
        uv_close((uv_handle_t *)&r->check, on_handle_closed);
        uv_close((uv_handle_t *)&r->idle, on_handle_closed);
        bs__redis_track_close(r->track);
    }
    bs__redis_conn_close(&r->conn);
}
