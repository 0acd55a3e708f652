/*
 * metrics.h - an optional Prometheus text endpoint ([metrics] listen)
 *
 * Serves GET /metrics (text exposition format 0.0.4) from the process
 * counters (stats.h) and the store's state. Meant for loopback: peers must
 * be inside [server] allow, like policy clients.
 */
#ifndef BACKSTOP_METRICS_H
#define BACKSTOP_METRICS_H

#include <uv.h>

#include "backstop/config.h"
#include "store.h"

typedef struct bs_metrics bs_metrics;

/* bs_metrics_start - listen on ep; NULL with err set on failure */
bs_metrics *bs_metrics_start(uv_loop_t *loop, const bs_config *cfg, const bs_endpoint *ep,
                             bs_store *store, char *err, size_t errsz);

/* bs_metrics_render - the exposition text into buf; returns its length
 * (truncated to bufsz - 1 if ever too long). Pure: for tests. */
size_t bs_metrics_render(char *buf, size_t bufsz, int redis_up);

/* bs_metrics_render_directory - append the directory gauges of n domains
 * (age against now, Unix seconds) after len bytes of buf; returns the new
 * length. Pure: for tests. */
size_t bs_metrics_render_directory(char *buf, size_t bufsz, size_t len, const bs_dir_gauge *g,
                                   size_t n, long long now);

/* bs_metrics_render_harvest - append backstop_harvest_active{domain} = 1
 * for each of the n domains under attack; the new length. Pure: for tests. */
size_t bs_metrics_render_harvest(char *buf, size_t bufsz, size_t len, const bs_attack *a, size_t n);

/* bs_metrics_render_mirror - append the mirror's gauges; the new length.
 * Pure: for tests. */
size_t bs_metrics_render_mirror(char *buf, size_t bufsz, size_t len, const bs_mirror_gauges *g);

/* bs_metrics_stop - close the listener and every scrape connection; the
 * object is freed once libuv released them. */
void bs_metrics_stop(bs_metrics *m);

#endif
