/*
 * metrics.c - Prometheus text endpoint (see metrics.h)
 *
 * Provides bs_metrics_start/_render/_render_directory/_stop.
 *
 * A deliberately small HTTP/1.0-style server: one request per connection
 * ("GET /metrics"; anything else gets 404, a non-GET 405), answered and
 * closed. Limits: BS_METRICS_MAX_CONNS scrapes at once (more are closed at
 * accept), BS_METRICS_REQ_MAX request bytes, BS_METRICS_TIMEOUT_MS to send
 * the request and take the answer. Never blocks; allocates one answer
 * buffer per scrape (not on the policy path).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backstop/log.h"
#include "conn.h"
#include "metrics.h"
#include "backstop/proto.h"
#include "stats.h"

#define BS_METRICS_MAX_CONNS 16
#define BS_METRICS_REQ_MAX 4096
#define BS_METRICS_TIMEOUT_MS 5000
#define BS_METRICS_BODY_MAX 131072 /* with BS_DIR_GAUGES_MAX domains of 253 bytes, 2 lines each */

struct bs_metrics {
    uv_tcp_t listener;
    uv_loop_t *loop;
    const bs_config *cfg;
    bs_store *store;
    unsigned nconns;
    int stopping;
    int open_handles;
    struct bs_scrape *conns;
};

typedef struct bs_scrape {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    bs_metrics *m;
    struct bs_scrape *next, **prevp;
    int open_handles;
    int closing;
    size_t len;
    char *answer;
    char req[BS_METRICS_REQ_MAX];
} bs_scrape;

/* put - append formatted text; never past bufsz - 1 */
static size_t put(char *buf, size_t bufsz, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put(char *buf, size_t bufsz, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (len >= bufsz - 1)
        return len;
    va_start(ap, fmt);
    n = vsnprintf(buf + len, bufsz - len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return len;
    return len + (size_t)n < bufsz ? len + (size_t)n : bufsz - 1;
}

size_t bs_metrics_render(char *buf, size_t bufsz, int redis_up)
{
    size_t len = 0, i;
    uint64_t cum = 0, fallback = 0;
    struct bs_log_stats ls;

    buf[0] = 0;
    len = put(buf, bufsz, len,
              "# HELP backstop_requests_total Policy requests answered, by verdict and reason.\n"
              "# TYPE backstop_requests_total counter\n");
    for (i = 0; i < BS_WHY_COUNT; i++) {
        len = put(buf, bufsz, len, "backstop_requests_total{verdict=\"%s\",reason=\"%s\"} %llu\n",
                  bs_action_name(bs_why_action((int)i)), bs_why_name((int)i),
                  (unsigned long long)bs_stat.by_why[i]);
        if (bs_why_action((int)i) == BS_ACT_FALLBACK)
            fallback += bs_stat.by_why[i];
    }
    len = put(buf, bufsz, len,
              "# HELP backstop_fallback_answers_total Answers given by on_redis_error.\n"
              "# TYPE backstop_fallback_answers_total counter\n"
              "backstop_fallback_answers_total %llu\n",
              (unsigned long long)fallback);
    len = put(buf, bufsz, len,
              "# HELP backstop_request_duration_seconds Time from a complete request to its "
              "answer.\n# TYPE backstop_request_duration_seconds histogram\n");
    for (i = 0; i <= BS_LAT_NBUCKETS; i++) {
        cum += bs_stat.lat_buckets[i];
        if (i < BS_LAT_NBUCKETS)
            len = put(buf, bufsz, len, "backstop_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                      (double)bs_lat_bounds_us[i] / 1e6, (unsigned long long)cum);
        else
            len =
                put(buf, bufsz, len, "backstop_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                    (unsigned long long)cum);
    }
    len = put(buf, bufsz, len,
              "backstop_request_duration_seconds_sum %.6f\n"
              "backstop_request_duration_seconds_count %llu\n",
              (double)bs_stat.lat_sum_us / 1e6, (unsigned long long)cum);
    len = put(buf, bufsz, len,
              "# HELP backstop_redis_up Whether the Redis connection can take queries.\n"
              "# TYPE backstop_redis_up gauge\nbackstop_redis_up %d\n"
              "# HELP backstop_connections Open policy connections.\n"
              "# TYPE backstop_connections gauge\nbackstop_connections %llu\n",
              redis_up ? 1 : 0, (unsigned long long)bs_stat.conn_active);
    len = put(buf, bufsz, len,
              "# HELP backstop_protocol_errors_total Malformed policy requests, by error.\n"
              "# TYPE backstop_protocol_errors_total counter\n");
    for (i = 1; i < BS_PROTO_NERR; i++)
        len = put(buf, bufsz, len, "backstop_protocol_errors_total{error=\"%s\"} %llu\n",
                  bs_proto_error_name(-(int)i), (unsigned long long)bs_stat.proto_errors[i]);
    for (i = 0; i < bs_ncounters; i++) {
        const bs_counter *c = &bs_counters[i];
        if (c->metric)
            len = put(buf, bufsz, len, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", c->metric,
                      c->help, c->metric, c->metric, (unsigned long long)bs_counter_value(c));
    }
    bs_log_stats(&ls); /* log.c's own: the syslog client is in the common library */
    len = put(buf, bufsz, len,
              "# HELP backstop_log_lines_total Log lines the syslog daemon took.\n"
              "# TYPE backstop_log_lines_total counter\nbackstop_log_lines_total %llu\n"
              "# HELP backstop_log_dropped_total Log lines not sent to syslog: nothing listening, "
              "or the daemon not taking them at once.\n"
              "# TYPE backstop_log_dropped_total counter\nbackstop_log_dropped_total %llu\n"
              "# HELP backstop_log_connect_failures_total Failed connects to the syslog socket "
              "(at most one a second).\n# TYPE backstop_log_connect_failures_total counter\n"
              "backstop_log_connect_failures_total %llu\n"
              "# HELP backstop_log_send_calls_total Send calls to the syslog socket (a sendmmsg "
              "carries a loop turn's lines).\n# TYPE backstop_log_send_calls_total counter\n"
              "backstop_log_send_calls_total %llu\n",
              ls.sent, ls.dropped, ls.connect_failures, ls.send_calls);
    return len;
}

/* bs_metrics_render_mirror - see metrics.h */
size_t bs_metrics_render_mirror(char *buf, size_t bufsz, size_t len, const bs_mirror_gauges *g)
{
    return put(buf, bufsz, len,
               "# HELP backstop_mirror_stale_seconds Seconds since the local mirror lost its "
               "invalidations (0: exact).\n# TYPE backstop_mirror_stale_seconds gauge\n"
               "backstop_mirror_stale_seconds %.3f\n"
               "# HELP backstop_mirror_keys Keys held by the local mirror.\n"
               "# TYPE backstop_mirror_keys gauge\nbackstop_mirror_keys %llu\n"
               "# HELP backstop_mirror_bytes Heap held by the local mirror's data.\n"
               "# TYPE backstop_mirror_bytes gauge\nbackstop_mirror_bytes %llu\n"
               "# HELP backstop_mirror_raced_total Mirror reads dropped: their key was "
               "invalidated in flight.\n# TYPE backstop_mirror_raced_total counter\n"
               "backstop_mirror_raced_total %llu\n",
               g->stale_seconds, g->keys, g->bytes, g->raced);
}

/* label_safe - a domain that can be a label value as it is (Redis holds
 * what an admin wrote: anything else is left out rather than escaped) */
static int label_safe(const char *s)
{
    for (; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f || *s == '"' || *s == '\\')
            return 0;
    return 1;
}

size_t bs_metrics_render_directory(char *buf, size_t bufsz, size_t len, const bs_dir_gauge *g,
                                   size_t n, long long now)
{
    size_t i;

    len = put(buf, bufsz, len,
              "# HELP backstop_directory_age_seconds Seconds since the last successful sync of a "
              "protected domain's recipients (no sample: never synced).\n"
              "# TYPE backstop_directory_age_seconds gauge\n");
    for (i = 0; i < n; i++)
        if (g[i].synced_at > 0 && label_safe(g[i].domain))
            len = put(buf, bufsz, len, "backstop_directory_age_seconds{domain=\"%s\"} %lld\n",
                      g[i].domain, now > g[i].synced_at ? now - g[i].synced_at : 0);
    len = put(buf, bufsz, len,
              "# HELP backstop_directory_size Members of a protected domain's recipient set "
              "(0: missing or empty, its unknown users are deferred).\n"
              "# TYPE backstop_directory_size gauge\n");
    for (i = 0; i < n; i++)
        if (label_safe(g[i].domain))
            len = put(buf, bufsz, len, "backstop_directory_size{domain=\"%s\"} %lld\n", g[i].domain,
                      g[i].size);
    return len;
}

size_t bs_metrics_render_harvest(char *buf, size_t bufsz, size_t len, const bs_attack *a, size_t n)
{
    size_t i;

    len = put(buf, bufsz, len,
              "# HELP backstop_harvest_active Protected domain under a harvest attack, as this "
              "process knows it (1; no sample: not under attack).\n"
              "# TYPE backstop_harvest_active gauge\n");
    for (i = 0; i < n; i++)
        if (label_safe(a[i].domain))
            len = put(buf, bufsz, len, "backstop_harvest_active{domain=\"%s\"} 1\n", a[i].domain);
    return len;
}

/* maybe_free - after stop: free once the listener and every scrape closed */
static void maybe_free(bs_metrics *m)
{
    if (m->stopping && m->open_handles == 0 && m->nconns == 0)
        free(m);
}

static void on_scrape_closed(uv_handle_t *h)
{
    bs_scrape *c = h->data;
    bs_metrics *m = c->m;

    if (--c->open_handles)
        return;
    free(c->answer);
    free(c);
    m->nconns--;
    maybe_free(m);
}

/* scrape_close - the one close path of a scrape connection */
static void scrape_close(bs_scrape *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if ((*c->prevp = c->next))
        c->next->prevp = c->prevp;
    uv_close((uv_handle_t *)&c->tcp, on_scrape_closed);
    uv_close((uv_handle_t *)&c->timer, on_scrape_closed);
}

static void on_scrape_timeout(uv_timer_t *t)
{
    scrape_close(t->data);
}

static void on_written(uv_write_t *w, int status)
{
    scrape_close(w->data);
}

/* respond - one answer, then close */
static void respond(bs_scrape *c, const char *status, const char *body, size_t body_len)
{
    size_t cap = body_len + 256;
    uv_buf_t b;
    int n;

    uv_read_stop((uv_stream_t *)&c->tcp);
    if (!(c->answer = malloc(cap))) {
        scrape_close(c);
        return;
    }
    n = snprintf(c->answer, cap,
                 "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 status, body_len);
    memcpy(c->answer + n, body, body_len);
    b = uv_buf_init(c->answer, (unsigned)(n + (int)body_len));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0)
        scrape_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    bs_scrape *c = h->data;

    buf->base = c->req + c->len;
    buf->len = sizeof(c->req) - 1 - c->len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bs_scrape *c = s->data;
    char *body;
    size_t n;

    if (nread < 0) {
        scrape_close(c);
        return;
    }
    c->len += (size_t)nread;
    c->req[c->len] = 0;
    if (!strstr(c->req, "\r\n\r\n") && !strstr(c->req, "\n\n")) {
        if (c->len >= sizeof(c->req) - 1)
            scrape_close(c);
        return;
    }
    if (strncmp(c->req, "GET ", 4) != 0) {
        respond(c, "405 Method Not Allowed", "GET only\n", 9);
        return;
    }
    if (strncmp(c->req + 4, "/metrics ", 9) != 0 && strncmp(c->req + 4, "/ ", 2) != 0) {
        respond(c, "404 Not Found", "try /metrics\n", 13);
        return;
    }
    if (!(body = malloc(BS_METRICS_BODY_MAX))) {
        scrape_close(c);
        return;
    }
    bs_stat.metrics_scrapes++;
    n = bs_metrics_render(body, BS_METRICS_BODY_MAX, c->m->store->ops->ready(c->m->store));
    if (c->m->store->ops->directory) {
        size_t ng;
        const bs_dir_gauge *g = c->m->store->ops->directory(c->m->store, &ng);
        n = bs_metrics_render_directory(body, BS_METRICS_BODY_MAX, n, g, ng, (long long)time(NULL));
    }
    if (c->m->store->ops->attacks) {
        size_t na;
        const bs_attack *a = c->m->store->ops->attacks(c->m->store, &na);
        n = bs_metrics_render_harvest(body, BS_METRICS_BODY_MAX, n, a, na);
    }
    if (c->m->store->ops->mirror) {
        bs_mirror_gauges g;
        if (c->m->store->ops->mirror(c->m->store, &g))
            n = bs_metrics_render_mirror(body, BS_METRICS_BODY_MAX, n, &g);
    }
    respond(c, "200 OK", body, n);
    free(body);
}

static void on_connection(uv_stream_t *l, int status)
{
    bs_metrics *m = l->data;
    char peer[64] = "";
    bs_scrape *c;
    int allowed;

    if (status < 0 || m->stopping || !(c = calloc(1, sizeof(*c))))
        return;
    c->m = m;
    uv_tcp_init(m->loop, &c->tcp);
    uv_timer_init(m->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    m->nconns++;
    c->next = m->conns;
    c->prevp = &m->conns;
    if (m->conns)
        m->conns->prevp = &c->next;
    m->conns = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 || m->nconns > BS_METRICS_MAX_CONNS) {
        scrape_close(c);
        return;
    }
    if ((allowed = bs_conn_peer_allowed(&c->tcp, m->cfg, peer, sizeof(peer))) < 0) {
        scrape_close(c); /* reset before its address was read: nobody to refuse */
        return;
    }
    if (!allowed) {
        bs_stat.conn_denied++;
        bs_warn("metrics: connection from %s refused: not in [server] allow",
                peer[0] ? peer : "unknown address");
        scrape_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_scrape_timeout, BS_METRICS_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

bs_metrics *bs_metrics_start(uv_loop_t *loop, const bs_config *cfg, const bs_endpoint *ep,
                             bs_store *store, char *err, size_t errsz)
{
    bs_metrics *m = calloc(1, sizeof(*m));
    struct sockaddr_storage ss;
    int rc;

    if (!m) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    if (ep->type != BS_EP_INET ||
        (uv_ip4_addr(ep->host, (int)ep->port, (struct sockaddr_in *)&ss) != 0 &&
         uv_ip6_addr(ep->host, (int)ep->port, (struct sockaddr_in6 *)&ss) != 0)) {
        snprintf(err, errsz, "[metrics] listen must be inet:IP:PORT");
        free(m);
        return NULL;
    }
    m->loop = loop;
    m->cfg = cfg;
    m->store = store;
    uv_tcp_init(loop, &m->listener);
    m->listener.data = m;
    m->open_handles = 1;
    if ((rc = uv_tcp_bind(&m->listener, (struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&m->listener, 16, on_connection)) != 0) {
        snprintf(err, errsz, "[metrics] cannot listen on %s:%u: %s", ep->host, ep->port,
                 uv_strerror(rc));
        bs_metrics_stop(m);
        return NULL;
    }
    bs_info("metrics on http://%s%s%s:%u/metrics", strchr(ep->host, ':') ? "[" : "", ep->host,
            strchr(ep->host, ':') ? "]" : "", ep->port);
    return m;
}

static void on_listener_closed(uv_handle_t *h)
{
    bs_metrics *m = h->data;

    m->open_handles = 0;
    maybe_free(m);
}

void bs_metrics_stop(bs_metrics *m)
{
    m->stopping = 1;
    while (m->conns)
        scrape_close(m->conns);
    uv_close((uv_handle_t *)&m->listener, on_listener_closed);
}
