/*
 * redis_track.c - the Redis side of the local mirror: invalidations in,
 * reads out (see redis_track.h; the data and its state machine are
 * mirror.c)
 *
 * Provides bs__redis_track_start/_data_new/_tick/_answer/_close.
 *
 * The invalidation connection is a second redis_conn.c connection (same
 * endpoint, AUTH, Sentinel discovery, backoff): once ready it asks its
 * CLIENT ID and SUBSCRIBEs to __redis__:invalidate (RESP2: each message's
 * payload is an array of key names, or nil for FLUSHALL/FLUSHDB). Then the
 * data connection's tick turns tracking on there:
 *   CLIENT TRACKING off; CLIENT TRACKING on REDIRECT <id> BCAST
 *     PREFIX <p>domains PREFIX <p>rcpt: PREFIX <p>ndr PREFIX <p>mode
 *     PREFIX <p>exempt PREFIX <p>block:
 * and the mirror re-reads everything (bs_mirror_connected): reads queued
 * after tracking on, on the same connection, see every change after it,
 * and every later change sends an invalidation. The reads (SSCAN, HSCAN,
 * SCAN in batches of BS_MIRROR_SCAN_COUNT, GET + PTTL) are tracked
 * commands, at most BS_TRACK_READS_MAX in flight, each reply sends the
 * next: loading never holds the loop for more than one batch.
 *
 * The link is up when both connections are ready, the subscription is
 * confirmed and tracking redirects to this subscription; anything else
 * makes the mirror stale (bs_mirror_lost) at once. A PING a second on the
 * data connection lets its stall detector notice a frozen Redis. A new
 * data connection (also after a failover) or a new subscription re-reads
 * everything before keys count as exact again.
 *
 * Never: blocks, trusts a reply of a connection that is gone, or answers
 * from the mirror past [redis] max_stale without a link.
 */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "backstop/keys.h"
#include "backstop/log.h"
#include "stats.h"
#include "redis_track.h"

#define BS_TRACK_READS_MAX 16      /* mirror reads in flight */
#define BS_TRACK_PING_MS 1000      /* data connection liveness */
#define BS_TRACK_RETRY_MS 5000     /* after CLIENT TRACKING was refused */
#define BS_TRACK_SUBSCRIBE_MS 3000 /* CLIENT ID + SUBSCRIBE answered within */
#define BS_TRACK_REFUSED_MS 60000  /* after a refused subscription */
#define BS_TRACK_CHANNEL "__redis__:invalidate"
#define BS_TRACK_VALUE_MAX 256 /* of a block's value: the reason, truncated anyway */

enum sub_state { SUB_NEW = 0, SUB_ASKING, SUB_SUBSCRIBING, SUB_SUBSCRIBED };

/* One mirror read in flight; freed by its (last) reply. */
typedef struct track_read {
    bs_redis_track *t;
    bs_mirror_read rd;
    uint64_t gen; /* t->read_gen when sent */
    int got_get;  /* BS_MIRROR_BLOCK: the GET reply came */
    int exists, failed;
    size_t vlen;
    char value[BS_TRACK_VALUE_MAX];
} track_read;

static void pump(bs_redis_track *t);

/* key_arg - prefix + name, as one argument */
static void key_arg(bs_resp *b, const bs_redis_track *t, const char *name, size_t nl)
{
    bs_resp_arg2(b, t->cfg->prefix, strlen(t->cfg->prefix), name, nl);
}

/* link_up - invalidations reach the mirror for everything it holds */
static int link_up(const bs_redis_track *t)
{
    return bs__redis_conn_ready(t->data) && bs__redis_conn_ready(&t->sub) &&
           t->sub_state == SUB_SUBSCRIBED && t->tracking_gen == t->sub_gen && t->tracking_gen;
}

/* check_link - the mirror goes stale the moment the link is not up */
static void check_link(bs_redis_track *t, uint64_t now)
{
    if (link_up(t) || !t->m || !bs_mirror_linked(t->m, NULL))
        return;
    bs_mirror_lost(t->m, now);
    t->reads = 0; /* their replies are void now */
    t->read_gen++;
    t->stale_logged = 1;
    bs_stat.mirror_stale_periods++;
    bs_warn("redis: mirror: invalidations lost; answering from the mirror for up to "
            "[redis] max_stale (%llus)",
            (unsigned long long)(t->cfg->max_stale_ms / 1000));
}

/* ------------------------------------------------------------ reads */

/* scan_reply - [cursor, [items]] into the mirror; 0 or -1 (wrong shape) */
static int scan_reply(bs_redis_track *t, const bs_mirror_read *rd, const redisReply *rep)
{
    size_t i, n, pl = strlen(t->cfg->prefix), k = 0;
    const redisReply *arr;
    const char **items;
    size_t *lens;

    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    arr = rep->element[1];
    n = arr->elements;
    items = malloc((n ? n : 1) * sizeof(*items));
    lens = malloc((n ? n : 1) * sizeof(*lens));
    if (!items || !lens) {
        free(items);
        free(lens);
        return -1;
    }
    for (i = 0; i < n; i++) {
        const redisReply *e = arr->element[i];
        if (e->type != REDIS_REPLY_STRING)
            break;
        if (rd->kind == BS_MIRROR_SCAN) { /* key names: without our prefix */
            if (e->len < pl || memcmp(e->str, t->cfg->prefix, pl) != 0)
                continue;
            items[k] = e->str + pl;
            lens[k++] = e->len - pl;
        } else {
            items[k] = e->str;
            lens[k++] = e->len;
        }
    }
    if (i == n)
        bs_mirror_scanned(t->m, rd, strtoull(rep->element[0]->str, NULL, 10), items, lens, k);
    free(items);
    free(lens);
    return i == n ? 0 : -1;
}

static void on_read(redisAsyncContext *ac, void *reply, void *privdata)
{
    track_read *tr = privdata;
    bs_redis_track *t = tr->t;
    const redisReply *rep = reply;
    int last = tr->rd.kind != BS_MIRROR_BLOCK || tr->got_get;

    bs__redis_conn_replied(t->data, rep);
    if (last && tr->gen == t->read_gen && t->reads)
        t->reads--;
    if (!t->m || !rep || !bs__redis_conn_current(t->data, ac) || tr->gen != t->read_gen) {
        if (last)
            free(tr);
        else
            tr->got_get = 1; /* a voided GET (NULL reply: link dropped or freed, or an old
                                round): its PTTL's callback is then the last and frees tr */
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR && !tr->failed) {
        tr->failed = 1;
        bs_stat.mirror_read_errors++;
        bs_debug("redis: mirror: %s: %s", tr->rd.key, rep->str);
        bs_mirror_failed(t->m, &tr->rd, 1);
    } else if (tr->failed) {
        /* the PTTL after a failed GET */
    } else if (tr->rd.kind != BS_MIRROR_BLOCK) {
        if (scan_reply(t, &tr->rd, rep) < 0) {
            bs_stat.mirror_read_errors++;
            bs_mirror_failed(t->m, &tr->rd, 1);
        }
    } else if (!tr->got_get) {
        tr->exists = rep->type == REDIS_REPLY_STRING;
        tr->vlen = tr->exists ? (rep->len < sizeof(tr->value) ? rep->len : sizeof(tr->value)) : 0;
        if (tr->vlen)
            memcpy(tr->value, rep->str, tr->vlen);
    } else if (rep->type == REDIS_REPLY_INTEGER) {
        bs_mirror_block(t->m, &tr->rd, tr->exists, tr->value, tr->vlen, rep->integer,
                        uv_now(t->data->loop));
    } else {
        bs_mirror_failed(t->m, &tr->rd, 1);
    }
    tr->got_get = 1;
    if (!last)
        return;
    free(tr);
    pump(t);
}

/* send_read - the commands of one read; 0 or -1 */
static int send_read(bs_redis_track *t, const bs_mirror_read *rd)
{
    char buf[512], cursor[24];
    track_read *tr = calloc(1, sizeof(*tr));
    size_t kl = strlen(rd->key);
    bs_resp b;

    if (!tr)
        return -1;
    tr->t = t;
    tr->rd = *rd;
    tr->gen = t->read_gen;
    snprintf(cursor, sizeof(cursor), "%llu", rd->cursor);
    bs_resp_init(&b, buf, sizeof(buf));
    if (rd->kind == BS_MIRROR_BLOCK) {
        bs_resp_cmd(&b, 2);
        bs_resp_str(&b, "GET");
        key_arg(&b, t, rd->key, kl);
        if (bs__redis_conn_send(t->data, &b, on_read, tr, 1) < 0) {
            free(tr);
            return -1;
        }
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 2);
        bs_resp_str(&b, "PTTL");
        key_arg(&b, t, rd->key, kl);
    } else if (rd->kind == BS_MIRROR_SCAN) {
        bs_resp_cmd(&b, 6);
        bs_resp_str(&b, "SCAN");
        bs_resp_str(&b, cursor);
        bs_resp_str(&b, "MATCH");
        key_arg(&b, t, BS_KEY_BLOCK "*", sizeof(BS_KEY_BLOCK));
        bs_resp_str(&b, "COUNT");
        bs_resp_u64(&b, BS_MIRROR_SCAN_COUNT);
    } else {
        bs_resp_cmd(&b, 5);
        bs_resp_str(&b, rd->kind == BS_MIRROR_SSCAN ? "SSCAN" : "HSCAN");
        key_arg(&b, t, rd->key, kl);
        bs_resp_str(&b, cursor);
        bs_resp_str(&b, "COUNT");
        bs_resp_u64(&b, BS_MIRROR_SCAN_COUNT);
    }
    if (bs__redis_conn_send(t->data, &b, on_read, tr, 1) < 0) {
        if (rd->kind != BS_MIRROR_BLOCK)
            free(tr);
        else
            tr->got_get = 1; /* the GET's reply (or NULL) frees it */
        return -1;
    }
    bs_stat.mirror_reads++;
    return 0;
}

/* pump - send due reads up to BS_TRACK_READS_MAX in flight */
static void pump(bs_redis_track *t)
{
    bs_mirror_read rd;

    while (t->m && link_up(t) && t->reads < BS_TRACK_READS_MAX && bs_mirror_next_read(t->m, &rd)) {
        if (send_read(t, &rd) < 0) {
            bs__redis_conn_drop(t->data, "cannot queue a mirror read");
            return;
        }
        t->reads++;
    }
}

/* ------------------------------------------------------------ tracking */

static void on_untracked(redisAsyncContext *ac, void *reply, void *privdata) {}

static void on_ping(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_track *t = privdata;

    bs__redis_conn_replied(t->data, reply);
}

static void on_tracking(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_track *t = privdata;
    const redisReply *rep = reply;
    uint64_t gen = t->tracking_gen;

    bs__redis_conn_replied(t->data, rep);
    t->tracking_sent = 0;
    if (!t->m || !rep || !bs__redis_conn_current(t->data, ac))
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        bs_warn("redis: mirror: CLIENT TRACKING refused (%s): asking Redis for every request",
                rep->str);
        t->tracking_gen = 0;
        t->tracking_retry = uv_now(t->data->loop) + BS_TRACK_RETRY_MS;
        return;
    }
    if (gen != t->sub_gen)
        return; /* the subscription changed meanwhile: the next tick sends again */
    bs_mirror_connected(t->m);
    t->reads = 0;
    t->read_gen++;
    t->stale_logged = 0;
    bs_info("redis: mirror: tracking on, (re)loading");
    pump(t);
}

/* send_tracking - turn tracking on, redirected to the current subscription */
static void send_tracking(bs_redis_track *t)
{
    /* every key the mirror holds (mirror.c); no name may be a prefix of
     * another (Redis refuses overlapping BCAST prefixes) */
    static const char *const names[] = {BS_KEY_DOMAINS, BS_KEY_RCPT,   BS_KEY_NDR,
                                        BS_KEY_MODE,    BS_KEY_EXEMPT, BS_KEY_BLOCK};
    const size_t nnames = sizeof(names) / sizeof(names[0]);
    char buf[1024];
    bs_resp b;
    size_t i;

    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 3);
    bs_resp_str(&b, "CLIENT");
    bs_resp_str(&b, "TRACKING");
    bs_resp_str(&b, "off");
    if (bs__redis_conn_send(t->data, &b, on_untracked, t, 0) < 0)
        return;
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 6 + 2 * (unsigned)nnames);
    bs_resp_str(&b, "CLIENT");
    bs_resp_str(&b, "TRACKING");
    bs_resp_str(&b, "on");
    bs_resp_str(&b, "REDIRECT");
    bs_resp_u64(&b, (uint64_t)t->sub_id);
    bs_resp_str(&b, "BCAST");
    for (i = 0; i < nnames; i++) {
        bs_resp_str(&b, "PREFIX");
        key_arg(&b, t, names[i], strlen(names[i]));
    }
    if (bs__redis_conn_send(t->data, &b, on_tracking, t, 1) == 0) {
        t->tracking_sent = 1;
        t->tracking_gen = t->sub_gen;
    }
}

void bs__redis_track_tick(bs_redis_track *t, uint64_t now)
{
    char buf[64];
    bs_resp b;

    if (!t->m)
        return;
    check_link(t, now);
    if (t->sub_state == SUB_SUBSCRIBED && bs__redis_conn_ready(&t->sub) && !t->tracking_sent &&
        (t->tracking_gen != t->sub_gen || !t->tracking_gen) && now >= t->tracking_retry)
        send_tracking(t);
    pump(t);
    if (now - t->last_ping >= BS_TRACK_PING_MS) {
        t->last_ping = now;
        bs_resp_init(&b, buf, sizeof(buf));
        bs_resp_cmd(&b, 1);
        bs_resp_str(&b, "PING");
        bs__redis_conn_send(t->data, &b, on_ping, t, 1);
    }
}

void bs__redis_track_data_new(bs_redis_track *t)
{
    t->tracking_gen = 0;
    t->tracking_sent = 0;
    t->tracking_retry = 0;
    if (t->m)
        check_link(t, uv_now(t->data->loop));
}

/* ------------------------------------------------------------ invalidations */

/* on_message - the subscription's confirmation and every invalidation */
static void on_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_track *t = privdata;
    const redisReply *rep = reply, *p;
    size_t i, pl;

    if (!rep || !t->m || !bs__redis_conn_current(&t->sub, ac))
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(rep->element[0]->str, "subscribe") == 0) {
        t->sub_state = SUB_SUBSCRIBED;
        t->sub_refused = 0;
        t->sub_gen++;
        return;
    }
    if (strcmp(rep->element[0]->str, "message") != 0)
        return;
    p = rep->element[2];
    pl = strlen(t->cfg->prefix);
    if (p->type == REDIS_REPLY_NIL) {
        bs_stat.mirror_invalidations++;
        bs_mirror_invalidate(t->m, NULL, 0);
    } else if (p->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < p->elements; i++) {
            const redisReply *k = p->element[i];
            if (k->type != REDIS_REPLY_STRING || k->len < pl ||
                memcmp(k->str, t->cfg->prefix, pl) != 0)
                continue;
            bs_stat.mirror_invalidations++;
            bs_mirror_invalidate(t->m, k->str + pl, k->len - pl);
        }
    }
    pump(t);
}

static void on_client_id(redisAsyncContext *ac, void *reply, void *privdata)
{
    bs_redis_track *t = privdata;
    const redisReply *rep = reply;
    char buf[128];
    bs_resp b;

    if (!rep || !t->m || !bs__redis_conn_current(&t->sub, ac))
        return;
    if (rep->type != REDIS_REPLY_INTEGER) {
        bs__redis_conn_drop(&t->sub, "CLIENT ID refused");
        return;
    }
    t->sub_id = rep->integer;
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_str(&b, "SUBSCRIBE");
    bs_resp_str(&b, BS_TRACK_CHANNEL);
    if (bs__redis_conn_send(&t->sub, &b, on_message, t, 0) == 0)
        t->sub_state = SUB_SUBSCRIBING;
    else
        bs__redis_conn_drop(&t->sub, "cannot subscribe");
}

/* ------------------------------------------------------------ the
 * invalidation connection's hooks */

static int sub_handshake(void *owner)
{
    bs_redis_track *t = owner;
    uint64_t now = uv_now(t->sub.loop);

    if (t->sub_state == SUB_ASKING || t->sub_state == SUB_SUBSCRIBING) {
        /* the connection went before the subscription was confirmed: an
         * error reply (NOPERM) ends a subscribed hiredis connection */
        t->sub_retry = now + BS_TRACK_REFUSED_MS;
        if (!t->sub_refused++)
            bs_warn("redis: mirror: the subscription to " BS_TRACK_CHANNEL
                    " was refused (ACL: +client|id +subscribe &" BS_TRACK_CHANNEL
                    "?): asking Redis for every request, trying again every %us",
                    BS_TRACK_REFUSED_MS / 1000);
    }
    t->sub_state = SUB_NEW;
    if (t->m)
        check_link(t, uv_now(t->sub.loop));
    return 0;
}

static void sub_tick(void *owner, uint64_t now)
{
    bs_redis_track *t = owner;
    char buf[64];
    bs_resp b;

    if (!t->m)
        return;
    if (t->sub_state == SUB_ASKING || t->sub_state == SUB_SUBSCRIBING) {
        /* an ACL that refuses SUBSCRIBE gets no reply hiredis passes on */
        if (now - t->sub_asked > BS_TRACK_SUBSCRIBE_MS)
            bs__redis_conn_drop(&t->sub, "no subscription to " BS_TRACK_CHANNEL
                                         " (ACL: +client|id +subscribe &" BS_TRACK_CHANNEL "?)");
        return;
    }
    if (t->sub_state != SUB_NEW || now < t->sub_retry)
        return;
    t->sub_asked = now;
    bs_resp_init(&b, buf, sizeof(buf));
    bs_resp_cmd(&b, 2);
    bs_resp_str(&b, "CLIENT");
    bs_resp_str(&b, "ID");
    if (bs__redis_conn_send(&t->sub, &b, on_client_id, t, 0) == 0)
        t->sub_state = SUB_ASKING;
}

static void sub_closed(void *owner)
{
    bs_redis_track *t = owner;

    t->closed(t->owner);
}

static const bs_redis_conn_hooks sub_hooks = {
    .handshake = sub_handshake,
    .tick = sub_tick,
    .closed = sub_closed,
};

/* ------------------------------------------------------------ answers, life cycle */

int bs__redis_track_answer(bs_redis_track *t, const bs_lookup *q, bs_facts *f)
{
    uint64_t now = uv_now(t->data->loop);
    uint64_t since;
    int rc;

    if (!t->m)
        return BS_MIRROR_ASK_REDIS;
    check_link(t, now);
    rc = bs_mirror_answer(t->m, q, now, t->cfg->max_stale_ms, f);
    /* stale answers only while Redis cannot answer: with the data
     * connection up (the subscription refused or lost alone, or the mirror
     * being re-read after a reconnect) Redis is asked. And stale data never
     * says a user does not exist: a recipient of a protected domain that
     * the stale mirror lacks may have been added since (a 550 would lose
     * the mail); Redis is asked, and while it cannot answer, the
     * on_redis_error answer (a 4xx by default) is given. */
    if (rc == BS_MIRROR_STALE &&
        (bs__redis_conn_ready(t->data) || (q->nlocals && f->protected_domain && !f->rcpt_known)))
        rc = BS_MIRROR_ASK_REDIS;
    if (rc == BS_MIRROR_EXACT) {
        bs_stat.mirror_answers++;
    } else if (rc == BS_MIRROR_STALE) {
        bs_stat.mirror_stale_answers++;
    } else if (t->stale_logged == 1) {
        if (!bs_mirror_linked(t->m, &since) && now - since > t->cfg->max_stale_ms) {
            t->stale_logged = 2;
            bs_warn("redis: mirror: stale for longer than [redis] max_stale: answers depend on "
                    "Redis again");
        }
    }
    return rc;
}

uint64_t bs__redis_track_changes(const bs_redis_track *t)
{
    return t->m ? bs_mirror_changes(t->m) : 0;
}

void bs__redis_track_reset(bs_redis_track *t)
{
    bs_mirror *m = bs_mirror_new();

    if (!m || !t->m) {
        bs_mirror_free(m);
        return;
    }
    bs_mirror_free(t->m);
    t->m = m;
    t->reads = 0;
    t->read_gen++;
    t->tracking_gen = 0; /* tracking is sent again, with the new prefixes */
    t->tracking_sent = 0;
    bs_info("redis: mirror: [redis] prefix changed: reloading");
}

void bs__redis_track_check(bs_redis_track *t)
{
    check_link(t, uv_now(t->data->loop));
}

int bs__redis_track_start(bs_redis_track *t, uv_loop_t *loop, const bs_config *cfg,
                          bs_redis_conn *data, void (*closed)(void *owner), void *owner)
{
    memset(t, 0, sizeof(*t));
    if (!(t->m = bs_mirror_new()))
        return -1;
    t->cfg = cfg;
    t->data = data;
    t->closed = closed;
    t->owner = owner;
    bs__redis_conn_start(&t->sub, loop, cfg, &sub_hooks, t);
    return 0;
}

void bs__redis_track_close(bs_redis_track *t)
{
    t->m = bs_mirror_free(t->m);
    bs__redis_conn_close(&t->sub);
}
