/*
 * conn.c - one policy client connection (an smtpd process, usually)
 *
 * Provides bs_conn_accept/_close/_shutdown/_env_free/_peer_allowed (conn.h)
 * for server.c, which owns the connections; conn.c reaches it only through
 * bs_conn_env and its hooks, never through server.h.
 *
 * Each connection moves through enter_state(): READING -> DECIDING ->
 * (WRITING ->) READING ... -> CLOSING. One request is decided at a time:
 * bytes that arrive while a request is decided or its reply written wait in
 * the partial buffer (Postfix never pipelines). Reading is not paused for
 * a request (that saves two epoll_ctl calls a request); an EOF meanwhile
 * pauses it until the answer is out (a half-closing client still gets it).
 *
 * One timer per connection carries the deadline of its state:
 *   READING, nothing buffered  [server] idle_timeout       -> close
 *   READING, partial request   BS_PARTIAL_TIMEOUT_MS from its first byte
 *   DECIDING                   [redis] timeout -> the on_redis_error answer
 *   WRITING                    BS_WRITE_TIMEOUT_MS         -> close
 * The timer is armed lazily: a state change only records its deadline and
 * re-arms the timer when it would fire after it. A timer that fires before
 * the deadline (set for an earlier state) re-arms itself for the rest, so
 * the deadline is kept to the millisecond while a busy connection costs a
 * timer operation every [redis] timeout or so, not three a request.
 *
 * Store answers are routed by (env, id): id = slot << 32 | generation;
 * an answer whose connection is gone, or has moved on, is dropped and
 * counted (late_replies). One close path: bs_conn_close(); the memory is
 * freed in the last uv_close callback, never in a callback of its own.
 *
 * A malformed or oversized request, or request= other than
 * smtpd_access_policy, is logged as a warning and the connection closed
 * without a reply (SMTPD_POLICY_README); it never gets a made-up action.
 *
 * Steady state allocates nothing: a request that arrives in one read is
 * parsed in the owner's shared buffer (env->rbuf); only an incomplete one
 * takes a partial buffer (recycled through env->free_parts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "backstop/addr.h"
#include "backstop/cidr.h"
#include "backstop/keys.h"
#include "backstop/log.h"
#include "stats.h"
#include "conn.h"

#define BS_UNREADABLE_WARN_MS 60000 /* at most one unreadable-recipient warning */
#define BS_DIRECTORY_WARN_MS 60000  /* at most one warning a minute per directory reason */
#define BS_MODE_WARN_MS 60000       /* at most one warning a minute about a bad mode value */

static void process(bs_conn *c);
static void respond(bs_conn *c);
static void drop_partial(bs_conn *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static uint64_t conn_id(const bs_conn *c)
{
    return ((uint64_t)c->slot << 32) | c->gen;
}

/* find - the connection an id names, if it still waits for that answer */
static bs_conn *find(bs_conn_env *env, uint64_t id)
{
    bs_conn *c = env->hooks->slot(env, (uint32_t)(id >> 32));

    if (!c || c->gen != (uint32_t)id || c->state != BS_CONN_DECIDING) {
        bs_stat.late_replies++;
        return NULL;
    }
    return c;
}

/* part_get - a partial buffer from the free list, or a new one (NULL on
 * out of memory) */
static bs_partial *part_get(bs_conn_env *env)
{
    bs_partial *p = env->free_parts;

    if (p) {
        env->free_parts = p->next_free;
        return p;
    }
    return malloc(sizeof(*p));
}

static void part_put(bs_conn_env *env, bs_partial *p)
{
    p->next_free = env->free_parts;
    env->free_parts = p;
}

static void on_timer(uv_timer_t *t);

/* arm - the state's deadline is ms from now; the timer is started again
 * only if it is idle or would fire after that */
static void arm(bs_conn *c, uint64_t ms)
{
    uint64_t now = uv_now(c->env->loop);

    c->deadline = now + ms;
    if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due <= c->deadline)
        return; /* fires first: on_timer re-arms for the rest */
    c->timer_due = c->deadline;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* enter_state - every state change passes here, with its deadline */
static void enter_state(bs_conn *c, int state)
{
    const bs_config *cfg = c->env->cfg;
    uint64_t ms = 0;

    c->state = state;
    switch (state) {
    case BS_CONN_READING:
        if (c->part) {
            uint64_t now = uv_now(c->env->loop);
            uint64_t end = c->part->deadline_set + BS_PARTIAL_TIMEOUT_MS;
            ms = end > now ? end - now : 1;
        } else {
            ms = cfg->idle_timeout_ms;
        }
        if (!c->reading) {
            uv_read_start(&c->h.stream, on_alloc, on_read);
            c->reading = 1;
        }
        break;
    case BS_CONN_DECIDING:
        /* reading goes on (stopping and starting it costs two epoll_ctl
         * calls a request): bytes that come meanwhile wait in the partial
         * buffer, and an EOF closes the connection at once */
        ms = cfg->timeout_ms;
        break;
    case BS_CONN_WRITING:
        ms = BS_WRITE_TIMEOUT_MS;
        break;
    case BS_CONN_CLOSING:
        uv_read_stop(&c->h.stream);
        uv_timer_stop(&c->timer);
        return;
    }
    arm(c, ms);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    bs_conn *c = h->data;

    if (!c->part && c->state != BS_CONN_READING && (c->part = part_get(c->env))) {
        c->part->len = 0; /* bytes while a request is decided: kept for later */
        bs_proto_reset(&c->part->parser);
    }
    if (c->part) {
        buf->base = c->part->buf + c->part->len;
        buf->len = sizeof(c->part->buf) - c->part->len;
    } else if (c->state != BS_CONN_READING) {
        buf->base = NULL; /* no buffer: libuv reports UV_ENOBUFS, we close */
        buf->len = 0;
    } else {
        buf->base = c->env->rbuf;
        buf->len = sizeof(c->env->rbuf);
    }
}

/* protocol_error - log, count, close: never answer a broken request */
static void protocol_error(bs_conn *c, int err)
{
    if (-err > 0 && -err < BS_PROTO_NERR)
        bs_stat.proto_errors[-err]++;
    bs_warn("conn=%llu client=%s: malformed policy request (%s): closing connection",
            (unsigned long long)c->cid, c->peer, bs_proto_strerror(err));
    bs_conn_close(c, NULL);
}

static void on_facts(void *arg, uint64_t id, int status, const bs_facts *f);
static void on_taken(void *arg, uint64_t id, int status, int result);
static void on_grey(void *arg, uint64_t id, int status, int result);
static void next_step(bs_conn *c, int step, const bs_lookup *q);

/* decide - a complete request: start its decision (parser holds it) */
static void decide(bs_conn *c, const bs_proto_parser *p)
{
    bs_conn_env *env = c->env;
    const bs_proto_attr *req = bs_proto_get(p, "request");
    bs_lookup q;

    if (!req || req->value_len != 19 || memcmp(req->value, "smtpd_access_policy", 19) != 0) {
        char esc[64] = "(none)";
        if (req)
            bs_escape(req->value, req->value_len, esc, sizeof(esc));
        bs_stat.bad_request_type++;
        bs_warn("conn=%llu client=%s: unsupported request type \"%s\": closing connection",
                (unsigned long long)c->cid, c->peer, esc);
        bs_conn_close(c, NULL);
        return;
    }
    bs_stat.requests++;
    c->gen++;
    c->started = uv_hrtime();
    enter_state(c, BS_CONN_DECIDING);
    next_step(c, bs_decide_begin(&c->d, env->cfg, p, &q), &q);
}

/* next_step - run what decide asked for (a lookup, an NDR budget take, the
 * harvest check), whose answer comes back through a callback; or, when it
 * is done or the store refuses the work, answer now */
static void next_step(bs_conn *c, int step, const bs_lookup *q)
{
    bs_conn_env *env = c->env;
    int rc;

    switch (step) {
    case BS_DECIDE_LOOKUP:
        rc = env->store->ops->lookup(env->store, q, on_facts, env, conn_id(c));
        break;
    case BS_DECIDE_NDR_TAKE:
        rc = env->store->ops->ndr_take(env->store, c->d.rcpt.domain, &c->d.ndr_rule, on_taken, env,
                                       conn_id(c));
        break;
    case BS_DECIDE_HARVEST:
        rc = env->store->ops->harvest_check(env->store, &c->d, on_grey, env, conn_id(c));
        break;
    default: /* BS_DECIDE_DONE */
        respond(c);
        return;
    }
    if (rc == 0)
        return;
    bs_decide_fallback(&c->d, env->cfg, rc);
    respond(c);
}

static void on_facts(void *arg, uint64_t id, int status, const bs_facts *f)
{
    bs_conn_env *env = arg;
    bs_conn *c = find(env, id);
    bs_lookup q;

    if (!c)
        return;
    if (status) {
        bs_decide_fallback(&c->d, env->cfg, status);
        respond(c);
        return;
    }
    next_step(c, bs_decide_facts(&c->d, env->cfg, f, &q), &q);
}

/* on_grey - the harvest check's answer; an unknown recipient may still
 * need the directory check */
static void on_grey(void *arg, uint64_t id, int status, int result)
{
    bs_conn_env *env = arg;
    bs_conn *c = find(env, id);
    bs_lookup q;

    if (!c)
        return;
    if (status) {
        bs_decide_fallback(&c->d, env->cfg, status);
        respond(c);
        return;
    }
    next_step(c, bs_decide_harvest(&c->d, env->cfg, result, &q), &q);
}

static void on_taken(void *arg, uint64_t id, int status, int result)
{
    bs_conn_env *env = arg;
    bs_conn *c = find(env, id);

    if (!c)
        return;
    if (status)
        bs_decide_fallback(&c->d, env->cfg, status);
    else
        bs_decide_taken(&c->d, env->cfg, result);
    respond(c);
}

/* after_reply - the reply is out: next request, or close when draining */
static void after_reply(bs_conn *c)
{
    if (c->env->draining) {
        bs_conn_close(c, NULL);
        return;
    }
    if (c->part && c->part->len == 0)
        drop_partial(c);
    enter_state(c, BS_CONN_READING);
    if (!c->in_decide && c->part)
        process(c);
}

static void on_write(uv_write_t *w, int status)
{
    bs_conn *c = w->data;

    if (c->state != BS_CONN_WRITING)
        return; /* cancelled by close */
    if (status < 0) {
        bs_stat.write_errors++;
        bs_conn_close(c, uv_strerror(status));
        return;
    }
    after_reply(c);
}

/* note_unreadable - count a bounce whose recipient domain could not be read
 * (decided by the "*" NDR policy); warn at most once a minute, with the
 * count, so a flood of them cannot flood the log */
static void note_unreadable(bs_conn *c)
{
    static uint64_t last_warn_ms, last_count;
    uint64_t now = uv_now(c->env->loop);
    bs_decision_text t;

    bs_stat.ndr_unreadable++;
    if (last_warn_ms && now - last_warn_ms < BS_UNREADABLE_WARN_MS)
        return;
    bs_decide_text(&c->d, &t);
    bs_warn("%s: bounce to a recipient whose domain cannot be read: <%s>: the \"*\" NDR policy "
            "decides (%llu such since the last warning) conn=%llu",
            t.queue_id[0] ? t.queue_id : "NOQUEUE", t.to,
            (unsigned long long)(bs_stat.ndr_unreadable - last_count), (unsigned long long)c->cid);
    last_warn_ms = now;
    last_count = bs_stat.ndr_unreadable;
}

/* note_directory - a 4xx because a protected domain's directory is empty
 * or out of date: warn at most once a minute per reason, naming the domain
 * (the last one seen) and the number of such answers since the last
 * warning; by_why counts them all */
static void note_directory(bs_conn *c)
{
    static uint64_t last_warn_ms[2], last_count[2];
    const bs_decision *d = &c->d;
    int k = d->why == BS_WHY_DIR_STALE;
    uint64_t now = uv_now(c->env->loop), n = bs_stat.by_why[d->why];
    char since[64] = "never";

    if (last_warn_ms[k] && now - last_warn_ms[k] < BS_DIRECTORY_WARN_MS)
        return;
    if (d->facts.dir_synced_at > 0)
        snprintf(since, sizeof(since), "%llds ago",
                 d->facts.dir_now > d->facts.dir_synced_at
                     ? d->facts.dir_now - d->facts.dir_synced_at
                     : 0);
    if (k)
        bs_warn("recipient directory of %s is out of date (last successful sync: %s, "
                "max_directory_age %llus): unknown recipients get 450 4.7.1, not 550 (%llu such "
                "answers since the last warning)",
                d->rcpt.domain, since,
                (unsigned long long)(c->env->cfg->max_directory_age_ms / 1000),
                (unsigned long long)(n - last_count[k]));
    else
        bs_warn(
            "recipient directory of %s is empty (rcpt:%s missing or empty): unknown "
            "recipients get DEFER_IF_PERMIT, not 550 (%llu such answers since the last warning)",
            d->rcpt.domain, d->rcpt.domain, (unsigned long long)(n - last_count[k]));
    last_warn_ms[k] = now;
    last_count[k] = n;
}

/* note_mode_bad - the mode HASH holds a value that is no mode (an admin
 * typo, read on every request to that domain): warn at most once a minute,
 * naming the field and the value, with the number of such requests since */
static void note_mode_bad(bs_conn *c)
{
    static uint64_t last_warn_ms, last_count;
    const bs_decision *d = &c->d;
    uint64_t now = uv_now(c->env->loop);
    int i = (d->mode_bad & 1) ? 0 : 1;
    char esc[BS_MODE_VALUE_MAX * 4];

    bs_stat.mode_bad_values++;
    if (last_warn_ms && now - last_warn_ms < BS_MODE_WARN_MS)
        return;
    bs_escape_marked(d->facts.mode_value[i], d->facts.mode_len[i], d->facts.mode_cut[i], esc,
                     sizeof(esc));
    bs_warn("%s%s field \"%s\" has the value \"%s\", which is no mode (want enforce, report or "
            "off): ignored, the mode is %s from %s (%llu such requests since the last warning)",
            c->env->cfg->prefix, BS_KEY_MODE, i == 0 ? d->rcpt.domain : "*", esc,
            bs_mode_name(d->mode), bs_decide_mode_src(d->mode_src),
            (unsigned long long)(bs_stat.mode_bad_values - last_count));
    last_warn_ms = now;
    last_count = bs_stat.mode_bad_values;
}

/* conn_tag - " conn=<cid>" at out (CONN_TAG_MAX bytes), the log line's
 * last field; returns its length (NUL not counted) */
#define CONN_TAG_MAX 32
static size_t conn_tag(char *out, uint64_t cid)
{
    char digits[20];
    size_t k = 0;

    do
        digits[k++] = (char)('0' + cid % 10);
    while ((cid /= 10) != 0);
    memcpy(out, " conn=", 6);
    for (size_t i = 0; i < k; i++)
        out[6 + i] = digits[k - 1 - i];
    out[6 + k] = '\0';
    return 6 + k;
}

/* respond - count, log, and write the decided answer */
static void respond(bs_conn *c)
{
    bs_conn_env *env = c->env;
    const bs_config *cfg = env->cfg;
    bs_decision *d = &c->d;
    char line[1536];
    size_t n;
    int w;

    bs_stats_latency((uv_hrtime() - c->started) / 1000);
    bs_stat.by_why[d->why]++;
    env->store->ops->count(env->store, d->why);
    if (bs_decide_would_reject(d, cfg)) {
        bs_stat.would_reject++;
        env->store->ops->would_reject(env->store, d->rcpt.domain);
    }
    if (d->mode_bad)
        note_mode_bad(c);
    if (d->note_invalid || d->note_harvest)
        env->store->ops->count_unknown(env->store, d);
    if (d->note_known)
        env->store->ops->known_note(env->store, d);
    if (d->why == BS_WHY_HARVEST_GREY || d->why == BS_WHY_HARVEST_DEFER)
        bs_stat.harvest_greylisted++;
    if (d->unreadable)
        note_unreadable(c);
    if (d->action == BS_ACT_DEFER_DIR)
        note_directory(c);
    /* the line is built once, and only when it will be printed */
    if (bs_log_enabled(BS_LOG_INFO) &&
        (n = bs_decide_log_line(d, cfg, line, sizeof(line) - CONN_TAG_MAX)) != 0) {
        n += conn_tag(line + n, c->cid);
        bs_log_text(BS_LOG_INFO, line, n);
    } else if (bs_log_enabled(BS_LOG_DEBUG)) {
        bs_decision_text t;
        bs_decide_text(d, &t);
        bs_log(BS_LOG_DEBUG, "%s: dunno: RCPT from %s[%s]: from=<%s> to=<%s> reason=%s conn=%llu",
               t.queue_id[0] ? t.queue_id : "NOQUEUE", t.client_name[0] ? t.client_name : "unknown",
               t.client_addr, t.from, t.to, bs_why_name(d->why), (unsigned long long)c->cid);
    }

    c->wbuf.base = c->reply;
    c->wbuf.len = bs_decide_reply(d, cfg, c->reply);
    w = uv_try_write(&c->h.stream, &c->wbuf, 1);
    if (w == (int)c->wbuf.len) {
        after_reply(c);
        return;
    }
    if (w < 0 && w != UV_EAGAIN) {
        bs_stat.write_errors++;
        bs_conn_close(c, uv_strerror(w));
        return;
    }
    if (w > 0) {
        c->wbuf.base += w;
        c->wbuf.len -= (size_t)w;
    }
    enter_state(c, BS_CONN_WRITING);
    c->wreq.data = c;
    if (uv_write(&c->wreq, &c->h.stream, &c->wbuf, 1, on_write) < 0) {
        bs_stat.write_errors++;
        bs_conn_close(c, "write failed");
    }
}

/* keep_partial - copy len bytes into the connection's partial buffer (a
 * fresh parse starts on it); 0, -1 when no buffer can be had, -2 when len
 * is more than one request may be */
static int keep_partial(bs_conn *c, const char *data, size_t len)
{
    if (len > sizeof(c->part->buf))
        return -2; /* more than a request's worth waiting: never buffered */
    if (!c->part) {
        if (!(c->part = part_get(c->env)))
            return -1;
    }
    memcpy(c->part->buf, data, len);
    c->part->len = len;
    c->part->deadline_set = uv_now(c->env->loop);
    bs_proto_reset(&c->part->parser);
    return 0;
}

/* drop_partial - return the partial buffer */
static void drop_partial(bs_conn *c)
{
    if (c->part) {
        part_put(c->env, c->part);
        c->part = NULL;
    }
}

/* process - parse and decide what c->part holds (after a read into it, or
 * bytes left over after a reply), one request at a time */
static void process(bs_conn *c)
{
    while (c->state == BS_CONN_READING && c->part) {
        bs_partial *p = c->part;
        size_t used = 0;
        int rc = bs_proto_feed(&p->parser, p->buf, p->len, &used);

        if (rc < 0) {
            protocol_error(c, rc);
            return;
        }
        if (rc == BS_PROTO_NEED_MORE) {
            enter_state(c, BS_CONN_READING); /* the partial deadline */
            return;
        }
        c->in_decide = 1;
        decide(c, &p->parser); /* copies what it needs out of p->buf */
        c->in_decide = 0;
        if (c->state == BS_CONN_CLOSING)
            return;
        if (used < p->len) {
            memmove(p->buf, p->buf + used, p->len - used);
            p->len -= used;
            p->deadline_set = uv_now(c->env->loop);
            bs_proto_reset(&p->parser);
        } else {
            drop_partial(c);
        }
        if (c->state == BS_CONN_READING)
            enter_state(c, BS_CONN_READING); /* deadline for what is left */
    }
}

/* on_read - bytes arrived in the shared buffer or in the partial buffer */
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    bs_conn *c = st->data;
    bs_conn_env *env = c->env;
    size_t used = 0;
    int rc, rc2;

    if (nread == 0)
        return;
    if (nread == UV_ENOBUFS) {
        /* a whole request's worth arrived while one was being answered:
         * a client that does not wait for its replies */
        bs_stat.pipelined_closed++;
        bs_warn("conn=%llu client=%s: more than a request pipelined while one is answered: "
                "closing connection",
                (unsigned long long)c->cid, c->peer);
        bs_conn_close(c, NULL);
        return;
    }
    if (nread == UV_EOF && c->state != BS_CONN_READING) {
        /* a half-close after the last request (printf ... | nc): answer
         * what was asked first; reading again after the reply meets this
         * EOF again and closes */
        uv_read_stop(&c->h.stream);
        c->reading = 0;
        return;
    }
    if (nread < 0) {
        if (c->part && c->part->len && nread == UV_EOF)
            bs_warn("conn=%llu client=%s: connection closed inside a request",
                    (unsigned long long)c->cid, c->peer);
        bs_conn_close(c, nread == UV_EOF ? NULL : uv_strerror((int)nread));
        return;
    }
    if (c->part) {
        if (c->part->len == 0)
            c->part->deadline_set = uv_now(env->loop);
        c->part->len += (size_t)nread;
        if (c->state == BS_CONN_READING)
            process(c);
        return;
    }
    /* the common case: parse in place in the shared buffer */
    bs_proto_reset(&env->parser);
    rc = bs_proto_feed(&env->parser, buf->base, (size_t)nread, &used);
    if (rc < 0) {
        protocol_error(c, rc);
        return;
    }
    if (rc == BS_PROTO_DONE && used == (size_t)nread) {
        decide(c, &env->parser);
        return;
    }
    /* incomplete, or more than one request: keep the bytes that are not
     * decided now; the next read, or the end of this request, parses them */
    rc2 = keep_partial(c, buf->base + (rc == BS_PROTO_DONE ? used : 0),
                       (size_t)nread - (rc == BS_PROTO_DONE ? used : 0));
    if (rc2 == -2) {
        /* Postfix sends one request and waits: a client that pipelines
         * more than a whole request's worth behind it is not one */
        bs_stat.pipelined_closed++;
        bs_warn("conn=%llu client=%s: %zd bytes pipelined behind a request: closing connection",
                (unsigned long long)c->cid, c->peer, nread - (ssize_t)used);
        bs_conn_close(c, NULL);
        return;
    }
    if (rc2 < 0) {
        bs_conn_close(c, "out of memory");
        return;
    }
    if (rc == BS_PROTO_DONE)
        decide(c, &env->parser); /* env->parser points into rbuf, still intact */
    else
        process(c); /* rescans the copy once; sets the partial deadline */
}

static void on_timer(uv_timer_t *t)
{
    bs_conn *c = t->data;
    uint64_t now = uv_now(c->env->loop);

    if (now < c->deadline) { /* armed for an earlier state's deadline */
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
        return;
    }
    switch (c->state) {
    case BS_CONN_DECIDING:
        bs_decide_fallback(&c->d, c->env->cfg, BS_WHY_REDIS_TIMEOUT);
        c->gen++; /* the store's answer, when it comes, is late */
        respond(c);
        break;
    case BS_CONN_READING:
        if (c->part && c->part->len) {
            bs_stat.partial_timeouts++;
            bs_warn("conn=%llu client=%s: request not complete within %ds: closing connection",
                    (unsigned long long)c->cid, c->peer, BS_PARTIAL_TIMEOUT_MS / 1000);
        } else {
            bs_stat.idle_timeouts++;
        }
        bs_conn_close(c, NULL);
        break;
    case BS_CONN_WRITING:
        bs_stat.write_errors++;
        bs_conn_close(c, "reply not taken in time");
        break;
    default:
        break;
    }
}

static void on_closed(uv_handle_t *h)
{
    bs_conn *c = h->data;

    if (--c->open_handles == 0) {
        bs_conn_env *env = c->env;
        free(c);
        env->hooks->gone(env);
    }
}

/* bs_conn_close - the one close path; why = NULL for an ordinary close */
void bs_conn_close(bs_conn *c, const char *why)
{
    if (c->state == BS_CONN_CLOSING)
        return;
    if (why)
        bs_debug("conn=%llu client=%s: closing: %s", (unsigned long long)c->cid, c->peer, why);
    enter_state(c, BS_CONN_CLOSING);
    drop_partial(c);
    c->env->hooks->slot_put(c->env, c); /* late store answers now find nothing */
    bs_stat.conn_closed++;
    bs_stat.conn_active--;
    uv_close(&c->h.handle, on_closed);
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

/* bs_conn_shutdown - at server shutdown: close now unless a request is
 * being answered (after_reply closes those) */
void bs_conn_shutdown(bs_conn *c)
{
    if (c->state == BS_CONN_READING)
        bs_conn_close(c, NULL);
}

/* bs_conn_peer_allowed - see conn.h */
int bs_conn_peer_allowed(const uv_tcp_t *tcp, const bs_config *cfg, char *peer, size_t peersz)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uint8_t ip[16];

    peer[0] = 0;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, peer, peersz);
    else
        uv_ip6_name((struct sockaddr_in6 *)&ss, peer, peersz);
    if (bs_ip_parse(peer, strlen(peer), ip) < 0)
        return 0;
    return bs_cidr_list_match(cfg->allow, cfg->nallow, ip);
}

/* peer_allowed - inet peers must be inside [server] allow: as
 * bs_conn_peer_allowed */
static int peer_allowed(bs_conn *c, const bs_endpoint *ep)
{
    if (ep->type != BS_EP_INET) {
        snprintf(c->peer, sizeof(c->peer), "unix:%.50s", ep->path);
        return 1;
    }
    return bs_conn_peer_allowed(&c->h.tcp, c->env->cfg, c->peer, sizeof(c->peer));
}

/* bs_conn_accept - see conn.h */
void bs_conn_accept(bs_conn_env *env, uv_stream_t *listener, const bs_endpoint *ep)
{
    bs_conn *c = calloc(1, sizeof(*c));
    int allowed;

    if (!c || env->hooks->slot_get(env, c) < 0) {
        free(c);
        bs_warn("cannot accept a connection: out of memory");
        return;
    }
    c->env = env;
    c->cid = ++env->next_cid;
    if (ep->type == BS_EP_INET)
        uv_tcp_init(env->loop, &c->h.tcp);
    else
        uv_pipe_init(env->loop, &c->h.pipe, 0);
    uv_timer_init(env->loop, &c->timer);
    c->h.handle.data = c->timer.data = c;
    c->open_handles = 2;
    c->state = BS_CONN_READING;
    bs_stat.conn_accepted++;
    bs_stat.conn_active++;
    if (uv_accept(listener, &c->h.stream) != 0) {
        bs_conn_close(c, "accept failed");
        return;
    }
    if ((allowed = peer_allowed(c, ep)) < 0) {
        bs_debug("conn=%llu: peer gone before its address was read", (unsigned long long)c->cid);
        bs_conn_close(c, NULL);
        return;
    }
    if (!allowed) {
        bs_stat.conn_denied++;
        bs_warn("conn=%llu: connection from %s refused: not in [server] allow",
                (unsigned long long)c->cid, c->peer[0] ? c->peer : "unknown address");
        bs_conn_close(c, NULL);
        return;
    }
    if (ep->type == BS_EP_INET)
        uv_tcp_nodelay(&c->h.tcp, 1);
    bs_debug("conn=%llu: connect from %s", (unsigned long long)c->cid, c->peer);
    enter_state(c, BS_CONN_READING);
}

/* bs_conn_env_free - see conn.h */
void bs_conn_env_free(bs_conn_env *env)
{
    bs_partial *p;

    while ((p = env->free_parts)) {
        env->free_parts = p->next_free;
        free(p);
    }
}
