/*
 * loadgen.c - bench_loadgen: Postfix-shaped policy load, every reply checked
 *
 * PROVIDES
 *   A command (usage() lists the options) that opens -c persistent
 *   connections to a policy server, as -c smtpd processes would, and sends
 *   RCPT-stage policy requests on each, one at a time: write one request,
 *   wait for its reply, write the next. Each request carries the attributes
 *   Postfix sends (the 3.7 set plus client_port, policy_context and the 3.8
 *   compatibility_level/mail_version: 31 lines, ~900 bytes, realistic values)
 *   drawn from the deterministic DATA SET below. Every reply is checked
 *   against the verdict the data set implies (--expect backstop), or against
 *   DUNNO (--expect dunno: the null server, postfwd): the SMTP code must
 *   match (action=550 5.1.1 ..., action=550 5.7.1 ..., action=DUNNO); the
 *   text after it is the server's to word. A wrong or malformed
 *   reply is an error: it is counted, the first few are printed, and the run
 *   exits 1. It is never a data point.
 *
 *   --emit-seed  writes (RESP, for redis-cli --pipe) the Redis commands that
 *                load the data set under --prefix, and exits.
 *   --idle       opens the connections (RSS of --server-pid measured), has
 *                each serve one request (measured again), and exits: the
 *                server's memory per idle connection.
 *
 * DATA SET (all of it a function of --mix, so seed and requests agree)
 *   domains     corp0.example.com .. corp{D-1}: protected; the last one is
 *               a catch-all (member "*").
 *   users       U local parts per domain, "first.last" (+ a number past 1024).
 *   unknown     "first.last" + 5000..9999 at a non-catch-all domain: never a
 *               member, so the answer is 550 5.1.1.
 *   null        sender <> to a remote domain: to remoteN.example.net (NDR
 *               entry "*" = deny: 550 5.7.1) or, for ndr_allow percent of
 *               them, to [lists.]partner.example (allow: DUNNO).
 *   clients     C client addresses in 198.18.0.0/15 (RFC 2544), ipv6
 *               percent of them in 2001:db8::/32, each in its own /64.
 *   Messages have 1..rcpts recipients from one client; recipient_count and
 *   queue_id follow what smtpd would send (no queue id before the first
 *   accepted recipient). The sequence each connection sends is fixed by
 *   seed and its index, whatever the server answers.
 *
 * MEASUREMENT
 *   Latency: from the start of the request's write to the read that
 *   completed its reply, in ns, into a log-linear histogram (HDR-like: 128
 *   linear sub-buckets per power of two, relative error below 0.8%; a fixed
 *   array, nothing allocated per request). Percentiles are bucket midpoints.
 *   Requests sent during --warmup are checked but not counted. The measured
 *   phase ends with the last reply of a request sent in it; req/s is
 *   measured requests over that time.
 *   --rate R (open loop): requests arrive at R a second in all, a Poisson
 *   process per connection (R/c each, arrival times from their own random
 *   stream, independent of the answers); a request is written at its
 *   arrival, or when its connection's previous reply came if that was later
 *   (smtpd waits too). Its latency runs from its arrival when it queued
 *   behind a slow reply (that wait counts: no coordinated omission), else
 *   from its write: this process's own lateness, from arrival to write
 *   when the connection was free (a timerfd wake-up), is reported apart
 *   (lag_p99_us), not charged to the server.
 *   Server CPU: utime+stime+cutime+cstime from /proc/PID/stat of each
 *   --server-pid and all its descendants (a pre-forking server's children
 *   count), delta over the measured phase / requests. Clock ticks (10 ms):
 *   runs of a few seconds give a few percent. --aux-pid is reported apart
 *   (Redis), and so is --sink-pid (the syslog daemon, bench_logsink). client_cpu is this process's
 * own (getrusage).
 *
 * OUTPUT
 *   A summary on stderr and one line "RESULT key=value ..." on stdout
 *   (IDLE ... for --idle), for scripts/bench.
 *
 * EXIT
 *   0 the run completed and every reply was right; 1 a wrong reply, a
 *   connection that failed or closed, a reply later than --timeout; 2 usage.
 *
 * NEVER
 *   Allocates per request (the connection table is allocated once), blocks
 *   the loop, or retries: a failure fails the run.
 *
 * LIMITS
 *   One thread: at high rates this process may be the bottleneck; compare
 *   its client_cpu per request with the server's. At most
 *   LG_CONNECT_INFLIGHT connects are pending at once (listen backlogs).
 */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <uv.h>

#include "alloccount.h"

#define LG_REQ_MAX 4096        /* one request; ours are ~900 bytes */
#define LG_RBUF 2048           /* one reply */
#define LG_ADDR_MAX 300        /* one address */
#define LG_CONNECT_INFLIGHT 64 /* pending connects at once */
#define LG_MAX_SERVER_PIDS 8
#define LG_MAX_PROCS 32768 /* /proc entries scanned for descendants */
#define LG_ERRORS_SHOWN 5
#define LG_TICK_MS 50
#define LG_SETTLE_MS 500 /* --idle: let the server finish its work */

/* ---- histogram ---------------------------------------------------------- */

#define H_SUB_BITS 8
#define H_SUB (1u << H_SUB_BITS) /* values below are exact */
#define H_HALF (H_SUB / 2)       /* sub-buckets per power of two above */
#define H_MAG 40                 /* powers of two above H_SUB: 2^48 ns max */
#define H_BUCKETS (H_SUB + H_MAG * H_HALF)

typedef struct lg_hist {
    uint64_t n, sum, min, max;
    uint64_t counts[H_BUCKETS];
} lg_hist;

/* hist_index - the bucket of v (ns) */
static unsigned hist_index(uint64_t v)
{
    unsigned m, shift, idx;

    if (v < H_SUB)
        return (unsigned)v;
    m = 63u - (unsigned)__builtin_clzll(v);
    shift = m - (H_SUB_BITS - 1); /* v >> shift lies in [H_HALF, H_SUB) */
    idx = H_SUB + (shift - 1) * H_HALF + (unsigned)((v >> shift) - H_HALF);
    return idx < H_BUCKETS ? idx : H_BUCKETS - 1;
}

/* hist_value - the midpoint of bucket idx (ns) */
static double hist_value(unsigned idx)
{
    unsigned k, shift;
    uint64_t low;

    if (idx < H_SUB)
        return idx;
    k = idx - H_SUB;
    shift = k / H_HALF + 1;
    low = (uint64_t)(k % H_HALF + H_HALF) << shift;
    return (double)low + ((double)((uint64_t)1 << shift) - 1) / 2;
}

static void hist_reset(lg_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

static void hist_add(lg_hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->n++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

/* hist_pct - the value at percentile p (0 < p <= 100), ns; 0 when empty */
static double hist_pct(const lg_hist *h, double p)
{
    uint64_t rank, seen = 0;
    unsigned i;

    if (h->n == 0)
        return 0;
    rank = (uint64_t)ceil(p / 100.0 * (double)h->n);
    if (rank < 1)
        rank = 1;
    for (i = 0; i < H_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            return hist_value(i);
    }
    return (double)h->max;
}

/* ---- options and the data set ------------------------------------------- */

enum lg_expect { LG_EXPECT_BACKSTOP = 0, LG_EXPECT_DUNNO };

typedef struct lg_mix {
    double unknown;   /* percent of requests for unknown users */
    double null;      /* percent with sender <> to a remote domain */
    double ndr_allow; /* percent of those to an allowed (partner) domain */
    double ext;       /* percent of valid recipients with a +extension */
    double ipv6;      /* percent of clients with an IPv6 address */
    double tls;       /* percent of sessions with TLS */
    unsigned clients; /* distinct client addresses */
    unsigned domains; /* protected domains (the last one catch-all) */
    unsigned users;   /* valid local parts per domain */
    unsigned rcpts;   /* most recipients in one message */
    uint64_t seed;
} lg_mix;

typedef struct lg_opts {
    const char *target;
    unsigned conns;
    uint64_t requests; /* -n; 0 = use duration */
    double duration;   /* -d seconds */
    double warmup;     /* --warmup seconds */
    double timeout;    /* --timeout seconds for one reply */
    double rate;       /* --rate requests a second in all (open loop); 0 = closed loop */
    int expect;        /* enum lg_expect */
    int emit_seed;
    int idle;
    int quiet;
    const char *prefix;
    const char *alloc_file;
    const char *label;
    int server_pids[LG_MAX_SERVER_PIDS];
    unsigned nserver_pids;
    int aux_pid;
    int sink_pid;
    lg_mix mix;
} lg_opts;

static const char *const first_names[32] = {
    "alice", "bob",    "carol",   "dave",  "erin",   "frank",  "grace",  "heidi",
    "ivan",  "judy",   "mallory", "niaj",  "olivia", "peggy",  "rupert", "sybil",
    "trent", "victor", "walter",  "wendy", "xavier", "yvonne", "zoe",    "adam",
    "bella", "chris",  "diana",   "edgar", "fiona",  "george", "hannah", "isaac",
};
static const char *const last_names[32] = {
    "smith",     "johnson",  "williams",  "brown",   "jones",    "garcia",   "miller",   "davis",
    "rodriguez", "martinez", "hernandez", "lopez",   "gonzalez", "wilson",   "anderson", "thomas",
    "taylor",    "moore",    "jackson",   "martin",  "lee",      "perez",    "thompson", "white",
    "harris",    "sanchez",  "clark",     "ramirez", "lewis",    "robinson", "walker",   "young",
};
static const char *const extensions[4] = {"newsletter", "orders", "lists", "billing"};

/* What a request is, hence the verdict backstopd must give. */
enum lg_kind { K_VALID = 0, K_UNKNOWN, K_NDR_DENY, K_NDR_ALLOW };

/* ---- small fixed-buffer writer (no printf on the request path) ----------- */

typedef struct lg_out {
    char *p, *end;
    int overflow;
} lg_out;

static void out_mem(lg_out *o, const char *s, size_t n)
{
    if (o->overflow || n > (size_t)(o->end - o->p)) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void out_str(lg_out *o, const char *s)
{
    out_mem(o, s, strlen(s));
}

static void out_u64(lg_out *o, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_mem(o, tmp + i, sizeof(tmp) - i);
}

static void out_hex(lg_out *o, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    out_mem(o, tmp + i, sizeof(tmp) - i);
}

/* out_attr - "name=value\n" */
static void out_attr(lg_out *o, const char *name, const char *value, size_t vlen)
{
    out_str(o, name);
    out_mem(o, "=", 1);
    out_mem(o, value, vlen);
    out_mem(o, "\n", 1);
}

/* ---- deterministic random numbers (splitmix64) -------------------------- */

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rnd_below(uint64_t *s, uint32_t n)
{
    return n ? (uint32_t)(rnd(s) % n) : 0;
}

/* rnd_pct - true with probability pct percent */
static int rnd_pct(uint64_t *s, double pct)
{
    return (double)(rnd(s) % 1000000) < pct * 10000.0;
}

/* ---- names of the data set --------------------------------------------- */

/* out_user - local part of valid user u (u < users) or of an unknown one */
static void out_local(lg_out *o, uint32_t u, uint32_t number)
{
    out_str(o, first_names[u % 32]);
    out_mem(o, ".", 1);
    out_str(o, last_names[(u / 32) % 32]);
    if (number)
        out_u64(o, number);
}

static void out_user(lg_out *o, uint32_t u)
{
    out_local(o, u, u / 1024);
}

static void out_domain(lg_out *o, uint32_t d)
{
    out_str(o, "corp");
    out_u64(o, d);
    out_str(o, ".example.com");
}

/* out_client_addr - client c's address: 198.18.0.0/15, or 2001:db8::/32 */
static void out_client_addr(lg_out *o, const lg_mix *m, uint32_t c)
{
    uint64_t h = c * 0x9e3779b97f4a7c15ULL + m->seed;

    if (rnd_pct(&h, m->ipv6)) {
        out_str(o, "2001:db8:");
        out_hex(o, (c >> 16) & 0xffff);
        out_mem(o, ":", 1);
        out_hex(o, c & 0xffff);
        out_str(o, "::25");
        return;
    }
    out_str(o, "198.");
    out_u64(o, 18 + (c / 250 / 256) % 2);
    out_mem(o, ".", 1);
    out_u64(o, (c / 250) % 256);
    out_mem(o, ".", 1);
    out_u64(o, c % 250 + 1);
}

static void out_client_name(lg_out *o, uint32_t c)
{
    out_str(o, "mx");
    out_u64(o, c % 7 + 1);
    out_str(o, ".mailhost");
    out_u64(o, c);
    out_str(o, ".example");
}

/* ---- connections ------------------------------------------------------- */

enum lg_conn_state {
    LC_NEW = 0,    /* not yet connecting */
    LC_CONNECTING, /* connect pending */
    LC_READY,      /* connected, no request out */
    LC_WAITING,    /* request out, reply not complete */
    LC_DONE,       /* sent its last request */
    LC_CLOSED,     /* closing or closed */
};

/* One SMTP message in progress on a connection (smtpd's view). */
typedef struct lg_msg {
    uint32_t client; /* index of the client address */
    uint32_t left;   /* recipients still to come */
    uint32_t count;  /* recipient_count: recipients accepted so far */
    uint32_t serial; /* messages sent on this connection */
    int null_sender;
    int tls;
    uint32_t size;
    uint32_t client_port;
    char sender[LG_ADDR_MAX];
    size_t sender_len;
    char queue_id[16];
    char instance[48];
    size_t instance_len;
} lg_msg;

struct lg;

/* One connection; the array of them is allocated once. */
typedef struct lg_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_buf_t wbuf;
    struct lg *g;
    uint32_t idx;
    int state;    /* enum lg_conn_state */
    int kind;     /* enum lg_kind of the request out */
    int measured; /* the request out was sent in the measured phase */
    uint64_t rng;
    uint64_t t_sent; /* uv_hrtime() at its write (--rate: at its arrival) */
    uint64_t due;    /* --rate: the next request's arrival (uv_hrtime() ns) */
    uint64_t arng;   /* --rate: the arrival times' random stream */
    uint32_t parked; /* --rate: 1 + its index in g->heap while it waits for due */
    int woken;       /* --rate: sent on the timerfd's wake-up, not on a reply */
    lg_msg msg;
    size_t req_len, rlen;
    char rcpt[LG_ADDR_MAX];
    size_t rcpt_len;
    char req[LG_REQ_MAX];
    char rbuf[LG_RBUF];
} lg_conn;

enum lg_phase { PH_CONNECT = 0, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_IDLE_USE, PH_END };

typedef struct lg_cpu {
    uint64_t server_ticks, aux_ticks, sink_ticks;
    double self_us;
} lg_cpu;

typedef struct lg {
    uv_loop_t *loop;
    lg_opts o;
    lg_conn *conns;
    uint32_t next_connect, connecting, connected, active, open_handles;
    uint32_t next_use, in_use; /* --idle: the one request of each connection */
    int phase;                 /* enum lg_phase */
    int failed;
    int unix_target;
    struct sockaddr_storage addr;
    char path[108];
    uint64_t t_start, t_last;
    uint64_t issued, completed, warm_completed, errors;
    uint64_t kinds[4];
    lg_hist hist;
    lg_cpu cpu0, cpu1;
    const bench_alloc_counts *alloc;
    bench_alloc_counts alloc0, alloc1;
    uint64_t rss0, rss1, rss2;
    uv_timer_t tick, phase_timer;
    /* --rate: connections waiting for their next arrival, a min-heap on due;
     * one timerfd (ns resolution, unlike uv timers) armed for the first */
    lg_conn **heap;
    uint32_t nheap;
    int tfd;
    uv_poll_t tpoll;
    uint64_t armed; /* the due the timerfd is armed for; 0 none */
    lg_hist lag;    /* arrival to write of requests sent on a wake-up */
} lg;

static void lg_fail(lg *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_next(lg_conn *c);
static void idle_use_more(lg *g);
static void on_phase_timer(uv_timer_t *t);
static void start_connects(lg *g);

/* ---- /proc readings ---------------------------------------------------- */

/* stat_fields - ppid and utime+stime+cutime+cstime of pid; 0 or -1 */
static int stat_fields(int pid, int *ppid, uint64_t *ticks)
{
    char path[64], buf[1024], *p;
    unsigned long long v[15];
    ssize_t n;
    int fd, i;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if ((fd = open(path, O_RDONLY)) < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    if (!(p = strrchr(buf, ')')))
        return -1;
    p++;
    /* after "pid (comm)": state ppid pgrp session tty tpgid flags minflt
     * cminflt majflt cmajflt utime stime cutime cstime */
    for (i = 0; i < 15; i++) {
        while (*p == ' ')
            p++;
        if (i == 0) {
            v[i] = 0;
            p++; /* the state letter */
            continue;
        }
        v[i] = strtoull(p, &p, 10);
    }
    *ppid = (int)v[1];
    *ticks = v[11] + v[12] + v[13] + v[14];
    return 0;
}

/* tree_ticks - CPU ticks of the pids and all their descendants */
static uint64_t tree_ticks(const int *pids, unsigned npids)
{
    static int all[LG_MAX_PROCS], parent[LG_MAX_PROCS];
    static uint64_t ticks[LG_MAX_PROCS];
    static unsigned char in[LG_MAX_PROCS];
    unsigned n = 0, i, changed;
    uint64_t sum = 0;
    struct dirent *de;
    DIR *d;

    if (npids == 0)
        return 0;
    if ((d = opendir("/proc")) == NULL)
        return 0;
    while ((de = readdir(d)) != NULL && n < LG_MAX_PROCS) {
        int pid = atoi(de->d_name);
        if (pid > 0 && stat_fields(pid, &parent[n], &ticks[n]) == 0) {
            all[n] = pid;
            in[n] = 0;
            for (i = 0; i < npids; i++)
                if (pids[i] == pid)
                    in[n] = 1;
            n++;
        }
    }
    closedir(d);
    do { /* mark descendants until nothing changes */
        changed = 0;
        for (i = 0; i < n; i++) {
            if (in[i])
                continue;
            for (unsigned j = 0; j < n; j++) {
                if (in[j] && all[j] == parent[i]) {
                    in[i] = changed = 1;
                    break;
                }
            }
        }
    } while (changed);
    for (i = 0; i < n; i++)
        if (in[i])
            sum += ticks[i];
    return sum;
}

/* rss_kib - VmRSS of pid in KiB, or 0 */
static uint64_t rss_kib(int pid)
{
    char path[64], buf[4096], *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    if ((fd = open(path, O_RDONLY)) < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    if (!(p = strstr(buf, "VmRSS:")))
        return 0;
    return strtoull(p + 6, NULL, 10);
}

static void cpu_snapshot(lg *g, lg_cpu *s)
{
    struct rusage ru;
    int aux = g->o.aux_pid, sink = g->o.sink_pid;

    s->server_ticks = tree_ticks(g->o.server_pids, g->o.nserver_pids);
    s->aux_ticks = aux > 0 ? tree_ticks(&aux, 1) : 0;
    s->sink_ticks = sink > 0 ? tree_ticks(&sink, 1) : 0;
    getrusage(RUSAGE_SELF, &ru);
    s->self_us = (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
                 (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

/* ---- requests ---------------------------------------------------------- */

static const char qid_chars[] = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

/* new_message - start an SMTP message: client, sender, size, TLS */
static void new_message(lg_conn *c, int null_sender)
{
    const lg_mix *m = &c->g->o.mix;
    lg_msg *msg = &c->msg;
    lg_out o;
    uint32_t u;

    msg->client = rnd_below(&c->rng, m->clients);
    msg->null_sender = null_sender;
    msg->left = null_sender ? 1 : 1 + rnd_below(&c->rng, m->rcpts ? m->rcpts : 1);
    msg->count = 0;
    msg->serial++;
    msg->tls = rnd_pct(&c->rng, m->tls);
    msg->size = rnd_pct(&c->rng, 80) ? 2000 + rnd_below(&c->rng, 2000000) : 0;
    msg->client_port = 1024 + rnd_below(&c->rng, 64000);
    msg->queue_id[0] = 0;
    o.p = msg->sender;
    o.end = msg->sender + sizeof(msg->sender);
    o.overflow = 0;
    if (!null_sender) {
        u = (uint32_t)rnd(&c->rng);
        out_local(&o, u, u % 3 ? 0 : u % 100);
        out_str(&o, "@mailhost");
        out_u64(&o, msg->client);
        out_str(&o, ".example");
    }
    msg->sender_len = (size_t)(o.p - msg->sender);
    o.p = msg->instance;
    o.end = msg->instance + sizeof(msg->instance);
    out_hex(&o, 0x1000 + c->idx);
    out_mem(&o, ".", 1);
    out_hex(&o, 0x65f2a3b1 + msg->serial);
    out_mem(&o, ".", 1);
    out_hex(&o, rnd_below(&c->rng, 1000000));
    out_str(&o, ".0");
    msg->instance_len = (size_t)(o.p - msg->instance);
}

/* draw_kind - what the next request is, by the mix */
static int draw_kind(lg_conn *c)
{
    const lg_mix *m = &c->g->o.mix;
    double r = (double)(rnd(&c->rng) % 1000000) / 10000.0;

    if (r < m->null)
        return rnd_pct(&c->rng, m->ndr_allow) ? K_NDR_ALLOW : K_NDR_DENY;
    if (r < m->null + m->unknown)
        return K_UNKNOWN;
    return K_VALID;
}

/* make_rcpt - the recipient for kind into c->rcpt */
static void make_rcpt(lg_conn *c, int kind)
{
    const lg_mix *m = &c->g->o.mix;
    uint32_t d, catchall = m->domains - 1;
    lg_out o = {c->rcpt, c->rcpt + sizeof(c->rcpt), 0};

    switch (kind) {
    case K_VALID:
        d = rnd_below(&c->rng, m->domains);
        if (d == catchall) {
            uint32_t u = (uint32_t)rnd(&c->rng);
            out_local(&o, u, u % 10000);
        } else {
            out_user(&o, rnd_below(&c->rng, m->users));
            if (rnd_pct(&c->rng, m->ext)) {
                out_mem(&o, "+", 1);
                out_str(&o, extensions[rnd_below(&c->rng, 4)]);
            }
        }
        out_mem(&o, "@", 1);
        out_domain(&o, d);
        break;
    case K_UNKNOWN:
        d = m->domains > 1 ? rnd_below(&c->rng, m->domains - 1) : 0;
        out_local(&o, (uint32_t)rnd(&c->rng), 5000 + rnd_below(&c->rng, 5000));
        out_mem(&o, "@", 1);
        out_domain(&o, d);
        break;
    case K_NDR_DENY:
        out_str(&o, "bounce-");
        out_hex(&o, rnd(&c->rng) & 0xffffffffu);
        out_str(&o, "@remote");
        out_u64(&o, rnd_below(&c->rng, 5000));
        out_str(&o, ".example.net");
        break;
    default: /* K_NDR_ALLOW */
        out_local(&o, (uint32_t)rnd(&c->rng), 0);
        out_str(&o, rnd_pct(&c->rng, 50) ? "@partner.example" : "@lists.partner.example");
        break;
    }
    c->rcpt_len = (size_t)(o.p - c->rcpt);
}

/* build_request - the next request of c into c->req, and its kind */
static int build_request(lg_conn *c)
{
    const lg_mix *m = &c->g->o.mix;
    lg_msg *msg = &c->msg;
    int kind = draw_kind(c);
    int null_sender = kind == K_NDR_DENY || kind == K_NDR_ALLOW;
    char tmp[LG_ADDR_MAX];
    lg_out o = {c->req, c->req + sizeof(c->req), 0}, t;

    if (null_sender || msg->left == 0 || msg->null_sender || msg->serial == 0)
        new_message(c, null_sender);
    make_rcpt(c, kind);
    c->kind = kind;

    out_attr(&o, "request", "smtpd_access_policy", 19);
    out_attr(&o, "protocol_state", "RCPT", 4);
    out_attr(&o, "protocol_name", "ESMTP", 5);
    t = (lg_out){tmp, tmp + sizeof(tmp), 0};
    out_client_name(&t, msg->client);
    out_attr(&o, "helo_name", tmp, (size_t)(t.p - tmp));
    out_attr(&o, "queue_id", msg->queue_id, strlen(msg->queue_id));
    out_attr(&o, "sender", msg->sender, msg->sender_len);
    out_attr(&o, "recipient", c->rcpt, c->rcpt_len);
    out_str(&o, "recipient_count=");
    out_u64(&o, msg->count);
    out_mem(&o, "\n", 1);
    t = (lg_out){tmp, tmp + sizeof(tmp), 0};
    out_client_addr(&t, m, msg->client);
    out_attr(&o, "client_address", tmp, (size_t)(t.p - tmp));
    t = (lg_out){tmp, tmp + sizeof(tmp), 0};
    if (msg->client % 10 == 9)
        out_str(&t, "unknown"); /* no (valid) reverse DNS */
    else
        out_client_name(&t, msg->client);
    out_attr(&o, "client_name", tmp, (size_t)(t.p - tmp));
    out_attr(&o, "reverse_client_name", tmp, (size_t)(t.p - tmp));
    out_attr(&o, "instance", msg->instance, msg->instance_len);
    out_attr(&o, "sasl_method", "", 0);
    out_attr(&o, "sasl_username", "", 0);
    out_attr(&o, "sasl_sender", "", 0);
    out_str(&o, "size=");
    out_u64(&o, msg->size);
    out_mem(&o, "\n", 1);
    out_attr(&o, "ccert_subject", "", 0);
    out_attr(&o, "ccert_issuer", "", 0);
    out_attr(&o, "ccert_fingerprint", "", 0);
    if (msg->tls) {
        out_attr(&o, "encryption_protocol", "TLSv1.3", 7);
        out_attr(&o, "encryption_cipher", "TLS_AES_256_GCM_SHA384", 22);
        out_attr(&o, "encryption_keysize", "256", 3);
    } else {
        out_attr(&o, "encryption_protocol", "", 0);
        out_attr(&o, "encryption_cipher", "", 0);
        out_attr(&o, "encryption_keysize", "0", 1);
    }
    out_attr(&o, "etrn_domain", "", 0);
    out_attr(&o, "stress", "", 0);
    out_attr(&o, "ccert_pubkey_fingerprint", "", 0);
    out_str(&o, "client_port=");
    out_u64(&o, msg->client_port);
    out_mem(&o, "\n", 1);
    out_attr(&o, "policy_context", "", 0);
    out_attr(&o, "server_address", "192.0.2.25", 10);
    out_attr(&o, "server_port", "25", 2);
    out_attr(&o, "compatibility_level", "3.6", 3);
    out_attr(&o, "mail_version", "3.8.6", 5);
    out_mem(&o, "\n", 1);
    if (o.overflow)
        return -1;
    c->req_len = (size_t)(o.p - c->req);
    return 0;
}

/* after_reply - smtpd's view of an answered recipient (what the data set
 * says the answer is, so the sequence is the same for every server) */
static void after_reply(lg_conn *c)
{
    lg_msg *msg = &c->msg;
    unsigned i;

    if (c->kind == K_VALID || c->kind == K_NDR_ALLOW) {
        if (msg->count++ == 0) { /* smtpd creates the queue file now */
            for (i = 0; i < 15; i++)
                msg->queue_id[i] = qid_chars[rnd_below(&c->rng, sizeof(qid_chars) - 1)];
            msg->queue_id[15] = 0;
        }
    }
    if (msg->left)
        msg->left--;
}

/* ---- checking replies -------------------------------------------------- */

/* reply_error - count one wrong reply; print the first few */
static void reply_error(lg_conn *c, const char *what, const char *line, size_t len)
{
    lg *g = c->g;

    if (g->errors++ < LG_ERRORS_SHOWN)
        fprintf(stderr, "bench_loadgen: conn %u: %s: recipient <%.*s>%s: got \"%.*s\"\n", c->idx,
                what, (int)c->rcpt_len, c->rcpt, c->msg.null_sender ? " (sender <>)" : "",
                (int)(len > 200 ? 200 : len), line);
}

/* has_code - line is "action=CODE" or "action=CODE text..." (the text is
 * backstopd's to word; the code is the verdict) */
static int has_code(const char *line, size_t len, const char *code)
{
    size_t cl = strlen(code);

    return len >= 7 + cl && memcmp(line, "action=", 7) == 0 && memcmp(line + 7, code, cl) == 0 &&
           (len == 7 + cl || line[7 + cl] == ' ');
}

/* check_reply - the one-line reply (without "\n\n") against the verdict */
static void check_reply(lg_conn *c, const char *line, size_t len)
{
    int kind = c->g->o.expect == LG_EXPECT_DUNNO ? K_VALID : c->kind;

    if (memchr(line, '\n', len)) {
        reply_error(c, "reply of more than one line", line, len);
        return;
    }
    switch (kind) {
    case K_UNKNOWN:
        if (!has_code(line, len, "550 5.1.1"))
            reply_error(c, "want 550 5.1.1 (unknown user)", line, len);
        break;
    case K_NDR_DENY:
        if (!has_code(line, len, "550 5.7.1"))
            reply_error(c, "want 550 5.7.1 (NDR denied)", line, len);
        break;
    default:
        if (len != 12 || memcmp(line, "action=DUNNO", 12) != 0)
            reply_error(c, "want DUNNO", line, len);
        break;
    }
}

/* ---- the run ----------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    lg *g = h->loop->data;

    g->open_handles--;
}

static void conn_close(lg_conn *c)
{
    if (c->state == LC_CLOSED || c->state == LC_NEW) {
        c->state = LC_CLOSED;
        return;
    }
    c->state = LC_CLOSED;
    uv_close(&c->h.handle, on_closed);
}

/* finish - stop everything; uv_run returns when the handles are closed */
static void finish(lg *g)
{
    uint32_t i;

    if (g->phase == PH_END)
        return;
    g->phase = PH_END;
    for (i = 0; i < g->o.conns; i++)
        conn_close(&g->conns[i]);
    if (!uv_is_closing((uv_handle_t *)&g->tick))
        uv_close((uv_handle_t *)&g->tick, on_closed);
    if (!uv_is_closing((uv_handle_t *)&g->phase_timer))
        uv_close((uv_handle_t *)&g->phase_timer, on_closed);
    if (g->tfd >= 0 && !uv_is_closing((uv_handle_t *)&g->tpoll))
        uv_close((uv_handle_t *)&g->tpoll, on_closed);
}

static void lg_fail(lg *g, const char *fmt, ...)
{
    va_list ap;

    if (g->phase == PH_END)
        return;
    fprintf(stderr, "bench_loadgen: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    g->failed = 1;
    finish(g);
}

static void alloc_snapshot(lg *g, bench_alloc_counts *s)
{
    if (g->alloc)
        memcpy(s, (const void *)g->alloc, sizeof(*s));
}

static void start_measure(lg *g)
{
    g->phase = PH_MEASURE;
    hist_reset(&g->hist);
    hist_reset(&g->lag);
    g->issued = g->completed = 0;
    memset(g->kinds, 0, sizeof(g->kinds));
    cpu_snapshot(g, &g->cpu0);
    alloc_snapshot(g, &g->alloc0);
    g->t_start = g->t_last = uv_hrtime();
}

/* measured_end - the measured phase is over: snapshot, then close */
static void measured_end(lg *g)
{
    cpu_snapshot(g, &g->cpu1);
    alloc_snapshot(g, &g->alloc1);
    finish(g);
}

/* conn_done - c sends no more; the run ends with the last one */
static void conn_done(lg_conn *c)
{
    lg *g = c->g;

    c->state = LC_DONE;
    if (--g->active > 0)
        return;
    if (g->phase == PH_IDLE_USE) /* let the server settle, then read its RSS */
        uv_timer_start(&g->phase_timer, on_phase_timer, LG_SETTLE_MS, 0);
    else
        measured_end(g);
}

/* may_issue - whether another request is sent now */
static int may_issue(lg *g)
{
    switch (g->phase) {
    case PH_WARMUP:
        return 1;
    case PH_MEASURE:
        if (g->o.requests)
            return g->issued < g->o.requests;
        return uv_hrtime() - g->t_start < (uint64_t)(g->o.duration * 1e9);
    default:
        return 0;
    }
}

static void on_write(uv_write_t *w, int status)
{
    lg_conn *c = w->data;

    if (status < 0 && c->state != LC_CLOSED)
        lg_fail(c->g, "conn %u: write: %s", c->idx, uv_strerror(status));
}

/* idle_use_more - --idle: one request on each connection, at most
 * LG_CONNECT_INFLIGHT at a time (more at once would only measure the
 * server's [redis] max_pending) */
static void idle_use_more(lg *g)
{
    while (g->phase == PH_IDLE_USE && g->in_use < LG_CONNECT_INFLIGHT && g->next_use < g->o.conns)
        send_next(&g->conns[g->next_use++]);
}

/* ---- --rate: arrivals ---------------------------------------------------- */

/* arrival_gap - ns to c's next arrival: exponential, mean c/R seconds */
static uint64_t arrival_gap(lg_conn *c)
{
    double u = ((double)(rnd(&c->arng) >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */

    return (uint64_t)(-log(u) * (double)c->g->o.conns / c->g->o.rate * 1e9);
}

static int heap_less(lg *g, uint32_t a, uint32_t b)
{
    return g->heap[a]->due < g->heap[b]->due;
}

static void heap_swap(lg *g, uint32_t a, uint32_t b)
{
    lg_conn *t = g->heap[a];

    g->heap[a] = g->heap[b];
    g->heap[b] = t;
    g->heap[a]->parked = a + 1;
    g->heap[b]->parked = b + 1;
}

/* park - c waits in the heap for its due */
static void park(lg_conn *c)
{
    lg *g = c->g;
    uint32_t i = g->nheap++;

    g->heap[i] = c;
    c->parked = i + 1;
    while (i > 0 && heap_less(g, i, (i - 1) / 2)) {
        heap_swap(g, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

/* unpark_first - the heap's first connection, out of it */
static lg_conn *unpark_first(lg *g)
{
    lg_conn *c = g->heap[0];
    uint32_t i = 0;

    g->heap[0] = g->heap[--g->nheap];
    g->heap[0]->parked = 1;
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;

        if (l < g->nheap && heap_less(g, l, m))
            m = l;
        if (r < g->nheap && heap_less(g, r, m))
            m = r;
        if (m == i)
            break;
        heap_swap(g, i, m);
        i = m;
    }
    c->parked = 0;
    return c;
}

/* arm - the timerfd for the first arrival (absolute, CLOCK_MONOTONIC:
 * uv_hrtime's clock) */
static void arm(lg *g)
{
    struct itimerspec its = {{0, 0}, {0, 0}};

    if (g->phase == PH_END || g->nheap == 0 || g->armed == g->heap[0]->due)
        return;
    g->armed = g->heap[0]->due;
    its.it_value.tv_sec = (time_t)(g->armed / 1000000000u);
    its.it_value.tv_nsec = (long)(g->armed % 1000000000u);
    if (timerfd_settime(g->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        lg_fail(g, "timerfd_settime: %s", strerror(errno));
}

static void send_request(lg_conn *c);

/* on_arrivals - the timerfd fired: send what has arrived */
static void on_arrivals(uv_poll_t *p, int status, int events)
{
    lg *g = p->loop->data;
    uint64_t expirations, now;

    (void)events;
    if (status < 0) {
        lg_fail(g, "timerfd poll: %s", uv_strerror(status));
        return;
    }
    if (read(g->tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN) {
        lg_fail(g, "timerfd read: %s", strerror(errno));
        return;
    }
    g->armed = 0;
    now = uv_hrtime();
    while (g->nheap && g->heap[0]->due <= now && g->phase != PH_END) {
        lg_conn *c = unpark_first(g);

        if (g->phase == PH_MEASURE)
            hist_add(&g->lag, now - c->due);
        c->woken = 1;
        send_request(c);
        c->woken = 0;
    }
    arm(g);
}

/* send_next - the next request on c, or done (--rate: or wait for its
 * arrival) */
static void send_next(lg_conn *c)
{
    lg *g = c->g;

    if (g->phase == PH_END || c->state == LC_CLOSED)
        return;
    if (g->o.rate > 0 && g->phase != PH_IDLE_USE && c->due > uv_hrtime()) {
        c->state = LC_READY;
        park(c);
        arm(g);
        return;
    }
    send_request(c);
}

/* send_request - the next request on c now, or done */
static void send_request(lg_conn *c)
{
    lg *g = c->g;
    int w;

    if (g->phase == PH_END || c->state == LC_CLOSED)
        return;
    if (g->phase == PH_IDLE_USE) {
        if (c->state == LC_WAITING) { /* its one request was answered */
            g->in_use--;
            conn_done(c);
            idle_use_more(g);
            return;
        }
        g->in_use++;
    } else if (!may_issue(g)) {
        conn_done(c);
        return;
    }
    if (build_request(c) < 0) {
        lg_fail(g, "conn %u: request does not fit in %d bytes", c->idx, LG_REQ_MAX);
        return;
    }
    c->state = LC_WAITING;
    c->measured = g->phase == PH_MEASURE;
    if (c->measured) {
        g->issued++;
        g->kinds[c->kind]++;
    }
    c->rlen = 0;
    c->t_sent = uv_hrtime();
    /* --rate: latency from the arrival if the request waited for the last
     * reply, else from now (our lateness to wake is not the server's: lag);
     * then the next arrival */
    if (g->o.rate > 0) {
        if (!c->woken)
            c->t_sent = c->due;
        c->due += arrival_gap(c);
    }
    c->wbuf = uv_buf_init(c->req, (unsigned)c->req_len);
    w = uv_try_write(&c->h.stream, &c->wbuf, 1);
    if (w == (int)c->req_len)
        return;
    if (w < 0 && w != UV_EAGAIN) {
        lg_fail(g, "conn %u: write: %s", c->idx, uv_strerror(w));
        return;
    }
    if (w > 0) {
        c->wbuf.base += w;
        c->wbuf.len -= (size_t)w;
    }
    c->wreq.data = c;
    if ((w = uv_write(&c->wreq, &c->h.stream, &c->wbuf, 1, on_write)) < 0)
        lg_fail(g, "conn %u: write: %s", c->idx, uv_strerror(w));
}

/* reply_complete - c->rbuf[0..end) is one reply ending in "\n\n" */
static void reply_complete(lg_conn *c, size_t end)
{
    lg *g = c->g;
    uint64_t now = uv_hrtime();

    if (end != c->rlen) {
        lg_fail(g, "conn %u: %zu unexpected bytes after a reply", c->idx, c->rlen - end);
        return;
    }
    check_reply(c, c->rbuf, end - 2);
    if (c->measured) {
        hist_add(&g->hist, now - c->t_sent);
        g->completed++;
        g->t_last = now;
    } else {
        g->warm_completed++;
    }
    after_reply(c);
    send_next(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    lg_conn *c = h->data;

    buf->base = c->rbuf + c->rlen;
    buf->len = sizeof(c->rbuf) - c->rlen;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    lg_conn *c = s->data;
    size_t from;
    char *e;

    if (nread == 0 || c->state == LC_CLOSED)
        return;
    if (nread < 0) {
        lg_fail(c->g, "conn %u: %s while %s", c->idx,
                nread == UV_EOF ? "server closed the connection" : uv_strerror((int)nread),
                c->state == LC_WAITING ? "waiting for a reply" : "idle");
        return;
    }
    if (c->state != LC_WAITING) {
        lg_fail(c->g, "conn %u: %zd bytes from the server with no request out", c->idx, nread);
        return;
    }
    from = c->rlen ? c->rlen - 1 : 0; /* a "\n" may end the previous read */
    c->rlen += (size_t)nread;
    e = memmem(c->rbuf + from, c->rlen - from, "\n\n", 2);
    if (e) {
        reply_complete(c, (size_t)(e - c->rbuf) + 2);
        return;
    }
    if (c->rlen == sizeof(c->rbuf))
        lg_fail(c->g, "conn %u: reply longer than %d bytes", c->idx, LG_RBUF);
}

/* begin - every connection is up: warm up, measure, or (--idle) settle */
static void begin(lg *g)
{
    uint32_t i;

    g->active = g->o.conns;
    if (g->o.idle) {
        g->phase = PH_CONNECT;
        uv_timer_start(&g->phase_timer, on_phase_timer, LG_SETTLE_MS, 0);
        return;
    }
    if (g->o.warmup > 0) {
        g->phase = PH_WARMUP;
        uv_timer_start(&g->phase_timer, on_phase_timer, (uint64_t)(g->o.warmup * 1000), 0);
    } else {
        start_measure(g);
    }
    for (i = 0; i < g->o.conns && g->phase != PH_END; i++) {
        if (g->o.rate > 0)
            g->conns[i].due = uv_hrtime() + arrival_gap(&g->conns[i]);
        send_next(&g->conns[i]);
    }
}

/* on_phase_timer - warm-up over; or, --idle: the settle times */
static void on_phase_timer(uv_timer_t *t)
{
    lg *g = t->loop->data;

    if (g->phase == PH_WARMUP) {
        start_measure(g);
        return;
    }
    if (!g->o.idle)
        return;
    if (g->phase == PH_CONNECT) { /* all connected and settled */
        g->rss1 = rss_kib(g->o.server_pids[0]);
        g->phase = PH_IDLE_USE;
        idle_use_more(g);
        return;
    }
    if (g->phase == PH_IDLE_USE && g->active == 0) { /* each served one, settled */
        g->rss2 = rss_kib(g->o.server_pids[0]);
        finish(g);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    lg_conn *c = req->data;
    lg *g = c->g;
    int rc;

    g->connecting--;
    if (c->state == LC_CLOSED)
        return;
    if (status < 0) {
        lg_fail(g, "conn %u: connect to %s: %s", c->idx, g->o.target, uv_strerror(status));
        return;
    }
    c->state = LC_READY;
    if (!g->unix_target)
        uv_tcp_nodelay(&c->h.tcp, 1);
    if ((rc = uv_read_start(&c->h.stream, on_alloc, on_read)) < 0) {
        lg_fail(g, "conn %u: read: %s", c->idx, uv_strerror(rc));
        return;
    }
    if (++g->connected == g->o.conns)
        begin(g);
    else
        start_connects(g);
}

/* start_connects - keep up to LG_CONNECT_INFLIGHT connects pending */
static void start_connects(lg *g)
{
    while (g->next_connect < g->o.conns && g->connecting < LG_CONNECT_INFLIGHT &&
           g->phase != PH_END) {
        lg_conn *c = &g->conns[g->next_connect++];
        int rc;

        if (g->unix_target)
            rc = uv_pipe_init(g->loop, &c->h.pipe, 0);
        else
            rc = uv_tcp_init(g->loop, &c->h.tcp);
        if (rc < 0) {
            lg_fail(g, "conn %u: %s", c->idx, uv_strerror(rc));
            return;
        }
        g->open_handles++;
        c->h.handle.data = c;
        c->creq.data = c;
        c->state = LC_CONNECTING;
        g->connecting++;
        if (g->unix_target) {
            uv_pipe_connect(&c->creq, &c->h.pipe, g->path, on_connect);
        } else if ((rc = uv_tcp_connect(&c->creq, &c->h.tcp, (struct sockaddr *)&g->addr,
                                        on_connect)) < 0) {
            g->connecting--;
            lg_fail(g, "conn %u: connect: %s", c->idx, uv_strerror(rc));
            return;
        }
    }
}

/* on_tick - replies later than --timeout fail the run */
static void on_tick(uv_timer_t *t)
{
    lg *g = t->loop->data;
    uint64_t now = uv_hrtime(), limit = (uint64_t)(g->o.timeout * 1e9);
    uint32_t i;

    for (i = 0; i < g->o.conns; i++) {
        lg_conn *c = &g->conns[i];
        if (c->state == LC_WAITING && now - c->t_sent > limit) {
            lg_fail(g, "conn %u: no reply within %.1fs", c->idx, g->o.timeout);
            return;
        }
    }
}

/* ---- seeding ----------------------------------------------------------- */

static void resp_cmd(unsigned argc)
{
    printf("*%u\r\n", argc);
}

static void resp_arg(const char *s, size_t n)
{
    printf("$%zu\r\n", n);
    fwrite(s, 1, n, stdout);
    fputs("\r\n", stdout);
}

static void resp_key(const char *prefix, const char *name)
{
    char k[512];
    int n = snprintf(k, sizeof(k), "%s%s", prefix, name);

    resp_arg(k, (size_t)n);
}

/* emit_seed - the data set as Redis commands, RESP (redis-cli --pipe) */
static void emit_seed(const lg_opts *o)
{
    const lg_mix *m = &o->mix;
    char buf[LG_ADDR_MAX], key[LG_ADDR_MAX];
    lg_out b;
    uint32_t d, u, chunk;
    static const char *const ndr[][2] = {
        {"*", "deny"},
        {"partner.example", "allow"},
        {".partner.example", "allow"},
        {"bounces.example.org", "limit 10/1h"},
    };
    size_t i;

    /* start clean: a data set of an earlier run must not change verdicts */
    resp_cmd(2);
    resp_arg("DEL", 3);
    resp_key(o->prefix, "domains");
    resp_cmd(2);
    resp_arg("DEL", 3);
    resp_key(o->prefix, "ndr");
    for (d = 0; d < m->domains; d++) {
        b = (lg_out){buf, buf + sizeof(buf), 0};
        out_domain(&b, d);
        resp_cmd(3);
        resp_arg("SADD", 4);
        resp_key(o->prefix, "domains");
        resp_arg(buf, (size_t)(b.p - buf));
        snprintf(key, sizeof(key), "rcpt:%.*s", (int)(b.p - buf), buf);
        resp_cmd(2);
        resp_arg("DEL", 3);
        resp_key(o->prefix, key);
        if (d == m->domains - 1) {
            resp_cmd(3);
            resp_arg("SADD", 4);
            resp_key(o->prefix, key);
            resp_arg("*", 1);
            continue;
        }
        for (u = 0; u < m->users; u += chunk) {
            chunk = m->users - u < 500 ? m->users - u : 500;
            resp_cmd(2 + chunk);
            resp_arg("SADD", 4);
            resp_key(o->prefix, key);
            for (uint32_t k = u; k < u + chunk; k++) {
                b = (lg_out){buf, buf + sizeof(buf), 0};
                out_user(&b, k);
                resp_arg(buf, (size_t)(b.p - buf));
            }
        }
    }
    /* filler entries, so HMGET reads from a realistically sized hash */
    for (u = 0; u < 50; u++) {
        b = (lg_out){buf, buf + sizeof(buf), 0};
        out_str(&b, ".lists");
        out_u64(&b, u);
        out_str(&b, ".example.org");
        resp_cmd(4);
        resp_arg("HSET", 4);
        resp_key(o->prefix, "ndr");
        resp_arg(buf, (size_t)(b.p - buf));
        resp_arg("allow", 5);
    }
    for (i = 0; i < sizeof(ndr) / sizeof(ndr[0]); i++) {
        resp_cmd(4);
        resp_arg("HSET", 4);
        resp_key(o->prefix, "ndr");
        resp_arg(ndr[i][0], strlen(ndr[i][0]));
        resp_arg(ndr[i][1], strlen(ndr[i][1]));
    }
}

/* ---- command line ------------------------------------------------------ */

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: bench_loadgen -t TARGET [-c CONNS] (-n REQUESTS | -d SECONDS) [options]\n"
            "       bench_loadgen --emit-seed [--mix ...] [--prefix P]   Redis data set (RESP)\n"
            "       bench_loadgen --idle -t TARGET -c CONNS --server-pid PID\n"
            "  -t inet:HOST:PORT | unix:PATH   the policy server\n"
            "  -c N               persistent connections (smtpd processes), default 1\n"
            "  -n N               measured requests in all, or\n"
            "  -d SECONDS         measure for this long (default 3)\n"
            "  --warmup SECONDS   checked but not measured, before (default 0)\n"
            "  --expect backstop|dunno   verdicts of backstopd (default), or DUNNO for all\n"
            "  --mix K=V,...      unknown=10 null=5 ndr_allow=50 ext=5 ipv6=12 tls=70 (percent)\n"
            "                     clients=1000 domains=20 users=500 rcpts=4 seed=1\n"
            "  --server-pid PID   server CPU per request (its descendants too); repeatable\n"
            "  --aux-pid PID      another process's CPU per request, apart (Redis)\n"
            "  --sink-pid PID     the same for the syslog daemon (bench_logsink)\n"
            "  --alloc-file FILE  the server's bench_alloccount.so counters: allocs/request\n"
            "  --timeout SECONDS  longest wait for one reply (default 10)\n"
            "  --rate R           open loop: R requests a second in all, Poisson arrivals;\n"
            "                     latency from each arrival (default: closed loop)\n"
            "  --prefix P         Redis key prefix for --emit-seed (default backstop:)\n"
            "  --label TEXT       put in front of the summary\n"
            "  -q                 no summary on stderr\n");
}

/* parse_mix - "k=v,k=v"; 0 or -1 */
static int parse_mix(lg_mix *m, const char *s)
{
    char buf[512], *tok, *save = NULL;

    if (strlen(s) >= sizeof(buf))
        return -1;
    strcpy(buf, s);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '='), *end;
        double v;

        if (!eq)
            return -1;
        *eq = 0;
        v = strtod(eq + 1, &end);
        if (*end || end == eq + 1 || v < 0)
            return -1;
        if (!strcmp(tok, "unknown"))
            m->unknown = v;
        else if (!strcmp(tok, "null"))
            m->null = v;
        else if (!strcmp(tok, "ndr_allow"))
            m->ndr_allow = v;
        else if (!strcmp(tok, "ext"))
            m->ext = v;
        else if (!strcmp(tok, "ipv6"))
            m->ipv6 = v;
        else if (!strcmp(tok, "tls"))
            m->tls = v;
        else if (!strcmp(tok, "clients"))
            m->clients = (unsigned)v;
        else if (!strcmp(tok, "domains"))
            m->domains = (unsigned)v;
        else if (!strcmp(tok, "users"))
            m->users = (unsigned)v;
        else if (!strcmp(tok, "rcpts"))
            m->rcpts = (unsigned)v;
        else if (!strcmp(tok, "seed"))
            m->seed = (uint64_t)v;
        else
            return -1;
    }
    if (m->unknown + m->null > 100 || m->ndr_allow > 100 || m->ext > 100 || m->ipv6 > 100 ||
        m->tls > 100 || m->clients < 1 || m->domains < 2 || m->users < 1 || m->users > 1000000 ||
        m->rcpts < 1)
        return -1;
    return 0;
}

/* parse_target - inet:HOST:PORT or unix:PATH into g; 0 or -1 */
static int parse_target(lg *g, const char *t)
{
    char host[64];
    const char *colon;
    long port;

    if (!strncmp(t, "unix:", 5)) {
        if (strlen(t + 5) == 0 || strlen(t + 5) >= sizeof(g->path))
            return -1;
        strcpy(g->path, t + 5);
        g->unix_target = 1;
        return 0;
    }
    if (strncmp(t, "inet:", 5) != 0 || !(colon = strrchr(t + 5, ':')))
        return -1;
    port = strtol(colon + 1, NULL, 10);
    if (port < 1 || port > 65535 || (size_t)(colon - t - 5) >= sizeof(host))
        return -1;
    memcpy(host, t + 5, (size_t)(colon - t - 5));
    host[colon - t - 5] = 0;
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&g->addr) == 0)
        return 0;
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&g->addr) == 0 ? 0 : -1;
}

enum {
    OPT_WARMUP = 256,
    OPT_EXPECT,
    OPT_MIX,
    OPT_SPID,
    OPT_APID,
    OPT_SINK,
    OPT_ALLOC,
    OPT_TIMEOUT,
    OPT_PREFIX,
    OPT_LABEL,
    OPT_SEED,
    OPT_IDLE,
    OPT_RATE
};

/* parse_args - options into g->o; 0, or 2 for usage errors */
static int parse_args(lg *g, int argc, char **argv);

/* report - the summary and the RESULT line */
static void report(lg *g)
{
    lg_opts *o = &g->o;
    double secs = (double)(g->t_last - g->t_start) / 1e9;
    double n = (double)g->completed, tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
    char cpu[32] = "NA", aux[32] = "NA", sink[32] = "NA", allocs[256] = "";
    double self = n ? (g->cpu1.self_us - g->cpu0.self_us) / n : 0;

    if (o->nserver_pids && n)
        snprintf(cpu, sizeof(cpu), "%.2f",
                 (double)(g->cpu1.server_ticks - g->cpu0.server_ticks) * tick_us / n);
    if (o->aux_pid && n)
        snprintf(aux, sizeof(aux), "%.2f",
                 (double)(g->cpu1.aux_ticks - g->cpu0.aux_ticks) * tick_us / n);
    if (o->sink_pid && n)
        snprintf(sink, sizeof(sink), "%.2f",
                 (double)(g->cpu1.sink_ticks - g->cpu0.sink_ticks) * tick_us / n);
    if (g->alloc && n)
        snprintf(allocs, sizeof(allocs),
                 " allocs_self=%.3f allocs_hiredis=%.3f allocs_libuv=%.3f allocs_other=%.3f "
                 "frees=%.3f",
                 (double)(g->alloc1.calls[0] - g->alloc0.calls[0]) / n,
                 (double)(g->alloc1.calls[1] - g->alloc0.calls[1]) / n,
                 (double)(g->alloc1.calls[2] - g->alloc0.calls[2]) / n,
                 (double)(g->alloc1.calls[3] - g->alloc0.calls[3]) / n,
                 (double)(g->alloc1.frees - g->alloc0.frees) / n);
    if (!o->quiet)
        fprintf(stderr,
                "%s%s%u conns, %" PRIu64 " requests in %.2fs (+%" PRIu64
                " warm-up): %.0f req/s, latency p50 %.1f us, p99 %.1f us, p99.9 %.1f us, "
                "max %.1f us; server CPU %s us/req, client CPU %.2f us/req; errors %" PRIu64 "\n",
                o->label ? o->label : "", o->label ? ": " : "", o->conns, g->completed, secs,
                g->warm_completed, secs > 0 ? n / secs : 0, hist_pct(&g->hist, 50) / 1e3,
                hist_pct(&g->hist, 99) / 1e3, hist_pct(&g->hist, 99.9) / 1e3,
                (double)(g->hist.n ? g->hist.max : 0) / 1e3, cpu, self, g->errors);
    if (!o->quiet && o->rate > 0)
        fprintf(
            stderr,
            "  offered %.0f req/s (open loop); this process's lateness p50 %.1f us, p99 %.1f us\n",
            o->rate, g->lag.n ? hist_pct(&g->lag, 50) / 1e3 : 0,
            g->lag.n ? hist_pct(&g->lag, 99) / 1e3 : 0);
    printf("RESULT conns=%u requests=%" PRIu64 " errors=%" PRIu64 " failed=%d seconds=%.3f "
           "rps=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f cpu_us=%s "
           "aux_cpu_us=%s sink_cpu_us=%s client_cpu_us=%.2f valid=%" PRIu64 " unknown=%" PRIu64
           " ndr_deny=%" PRIu64 " ndr_allow=%" PRIu64 " offered_rps=%.0f lag_p50_us=%.1f"
           " lag_p99_us=%.1f%s\n",
           o->conns, g->completed, g->errors, g->failed, secs, secs > 0 ? n / secs : 0,
           hist_pct(&g->hist, 50) / 1e3, hist_pct(&g->hist, 99) / 1e3,
           hist_pct(&g->hist, 99.9) / 1e3, (double)(g->hist.n ? g->hist.max : 0) / 1e3,
           g->hist.n ? (double)g->hist.sum / (double)g->hist.n / 1e3 : 0, cpu, aux, sink, self,
           g->kinds[K_VALID], g->kinds[K_UNKNOWN], g->kinds[K_NDR_DENY], g->kinds[K_NDR_ALLOW],
           o->rate, g->lag.n ? hist_pct(&g->lag, 50) / 1e3 : 0,
           g->lag.n ? hist_pct(&g->lag, 99) / 1e3 : 0, allocs);
}

static void report_idle(lg *g)
{
    double n = g->o.conns;

    fprintf(stderr,
            "%u idle connections: server RSS %" PRIu64 " KiB before, %" PRIu64
            " KiB connected (%.0f B/conn), %" PRIu64 " KiB after one request each (%.0f B/conn)\n",
            g->o.conns, g->rss0, g->rss1, (double)(g->rss1 - g->rss0) * 1024 / n, g->rss2,
            (double)(g->rss2 - g->rss0) * 1024 / n);
    printf("IDLE conns=%u errors=%" PRIu64 " failed=%d rss0_kib=%" PRIu64 " rss1_kib=%" PRIu64
           " rss2_kib=%" PRIu64 " connected_b_per_conn=%.0f used_b_per_conn=%.0f\n",
           g->o.conns, g->errors, g->failed, g->rss0, g->rss1, g->rss2,
           (double)(g->rss1 - g->rss0) * 1024 / n, (double)(g->rss2 - g->rss0) * 1024 / n);
}

/* map_alloc_file - the server's counters, read-only; NULL on error */
static const bench_alloc_counts *map_alloc_file(const char *path)
{
    int fd = open(path, O_RDONLY);
    void *p;

    if (fd < 0)
        return NULL;
    p = mmap(NULL, sizeof(bench_alloc_counts), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED || ((const bench_alloc_counts *)p)->magic != BENCH_ALLOC_MAGIC)
        return NULL;
    return p;
}

/* raise_nofile - as many descriptors as the hard limit allows */
static void raise_nofile(unsigned want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static lg g; /* big (the histogram): not on the stack */
    uint32_t i;
    int rc;

    if ((rc = parse_args(&g, argc, argv)) != 0)
        return rc;
    if (g.o.emit_seed) {
        emit_seed(&g.o);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (g.o.alloc_file && !(g.alloc = map_alloc_file(g.o.alloc_file))) {
        fprintf(stderr, "bench_loadgen: %s: not a bench_alloccount file\n", g.o.alloc_file);
        return 1;
    }
    raise_nofile(g.o.conns);
    if (!(g.conns = calloc(g.o.conns, sizeof(*g.conns)))) {
        fprintf(stderr, "bench_loadgen: out of memory\n");
        return 1;
    }
    for (i = 0; i < g.o.conns; i++) {
        g.conns[i].g = &g;
        g.conns[i].idx = i;
        g.conns[i].rng = g.o.mix.seed * 0x100000001b3ULL + i * 0x9e3779b97f4a7c15ULL + 1;
    }
    hist_reset(&g.hist);
    hist_reset(&g.lag);
    g.loop = uv_default_loop();
    g.loop->data = &g;
    uv_timer_init(g.loop, &g.tick);
    uv_timer_init(g.loop, &g.phase_timer);
    g.open_handles = 2;
    g.tfd = -1;
    if (g.o.rate > 0) {
        (void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake-ups to the us, not 50 us late */
        g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        g.heap = calloc(g.o.conns, sizeof(*g.heap));
        if (g.tfd < 0 || !g.heap || uv_poll_init(g.loop, &g.tpoll, g.tfd) < 0) {
            fprintf(stderr, "bench_loadgen: --rate: timerfd: %s\n", strerror(errno));
            return 1;
        }
        g.open_handles++;
        uv_poll_start(&g.tpoll, UV_READABLE, on_arrivals);
        for (i = 0; i < g.o.conns; i++)
            g.conns[i].arng = g.o.mix.seed * 0x2545f4914f6cdd1dULL + i * 0xbf58476d1ce4e5b9ULL + 7;
    }
    uv_timer_start(&g.tick, on_tick, LG_TICK_MS, LG_TICK_MS);
    if (g.o.idle)
        g.rss0 = rss_kib(g.o.server_pids[0]);
    g.t_start = g.t_last = uv_hrtime();
    start_connects(&g);
    uv_run(g.loop, UV_RUN_DEFAULT);
    if (!g.o.idle && !g.failed && g.completed == 0)
        fprintf(stderr,
                "bench_loadgen: no request measured: no reply came early enough to send one "
                "within the %.1fs measured (the server is slower than that)\n",
                g.o.duration);
    if (uv_loop_close(g.loop) != 0)
        fprintf(stderr, "bench_loadgen: handles left open at exit\n");
    if (g.o.idle)
        report_idle(&g);
    else
        report(&g);
    if (g.tfd >= 0)
        close(g.tfd);
    free(g.heap);
    free(g.conns);
    return g.failed || g.errors || (!g.o.idle && g.completed == 0) ? 1 : 0;
}

static int parse_args(lg *g, int argc, char **argv)
{
    static const struct {
        const char *name;
        int id, has_arg;
    } longs[] = {
        {"--warmup", OPT_WARMUP, 1},    {"--expect", OPT_EXPECT, 1},   {"--mix", OPT_MIX, 1},
        {"--server-pid", OPT_SPID, 1},  {"--aux-pid", OPT_APID, 1},    {"--sink-pid", OPT_SINK, 1},
        {"--alloc-file", OPT_ALLOC, 1}, {"--timeout", OPT_TIMEOUT, 1}, {"--prefix", OPT_PREFIX, 1},
        {"--label", OPT_LABEL, 1},      {"--emit-seed", OPT_SEED, 0},  {"--idle", OPT_IDLE, 0},
        {"--rate", OPT_RATE, 1},
    };
    lg_opts *o = &g->o;
    int i;

    o->conns = 1;
    o->duration = 3;
    o->timeout = 10;
    o->prefix = "backstop:";
    o->mix = (lg_mix){.unknown = 10,
                      .null = 5,
                      .ndr_allow = 50,
                      .ext = 5,
                      .ipv6 = 12,
                      .tls = 70,
                      .clients = 1000,
                      .domains = 20,
                      .users = 500,
                      .rcpts = 4,
                      .seed = 1};
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int id = 0, has_arg = 1;
        size_t k;

        if (!strcmp(a, "-c") || !strcmp(a, "-n") || !strcmp(a, "-d") || !strcmp(a, "-t")) {
            id = a[1];
        } else if (!strcmp(a, "-q")) {
            id = 'q';
            has_arg = 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else {
            for (k = 0; k < sizeof(longs) / sizeof(longs[0]); k++)
                if (!strcmp(a, longs[k].name)) {
                    id = longs[k].id;
                    has_arg = longs[k].has_arg;
                }
        }
        if (!id || (has_arg && i + 1 >= argc)) {
            fprintf(stderr, "bench_loadgen: bad or incomplete option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (has_arg)
            v = argv[++i];
        switch (id) {
        case 'c':
            o->conns = (unsigned)strtoul(v, NULL, 10);
            break;
        case 'n':
            o->requests = strtoull(v, NULL, 10);
            break;
        case 'd':
            o->duration = strtod(v, NULL);
            break;
        case 't':
            o->target = v;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case OPT_WARMUP:
            o->warmup = strtod(v, NULL);
            break;
        case OPT_EXPECT:
            if (!strcmp(v, "backstop"))
                o->expect = LG_EXPECT_BACKSTOP;
            else if (!strcmp(v, "dunno"))
                o->expect = LG_EXPECT_DUNNO;
            else
                id = -1;
            break;
        case OPT_MIX:
            if (parse_mix(&o->mix, v) < 0)
                id = -1;
            break;
        case OPT_SPID:
            if (o->nserver_pids == LG_MAX_SERVER_PIDS || atoi(v) <= 0)
                id = -1;
            else
                o->server_pids[o->nserver_pids++] = atoi(v);
            break;
        case OPT_APID:
            o->aux_pid = atoi(v);
            break;
        case OPT_SINK:
            o->sink_pid = atoi(v);
            break;
        case OPT_ALLOC:
            o->alloc_file = v;
            break;
        case OPT_TIMEOUT:
            o->timeout = strtod(v, NULL);
            break;
        case OPT_PREFIX:
            o->prefix = v;
            break;
        case OPT_LABEL:
            o->label = v;
            break;
        case OPT_SEED:
            o->emit_seed = 1;
            break;
        case OPT_IDLE:
            o->idle = 1;
            break;
        case OPT_RATE:
            o->rate = strtod(v, NULL);
            if (!(o->rate > 0))
                id = -1;
            break;
        }
        if (id < 0) {
            fprintf(stderr, "bench_loadgen: bad value for %s: %s\n", a, v);
            return 2;
        }
    }
    if (o->emit_seed)
        return 0;
    if (!o->target || parse_target(g, o->target) < 0 || o->conns < 1 || o->conns > 100000 ||
        (!o->requests && o->duration <= 0) || o->timeout <= 0 ||
        (o->idle && o->nserver_pids == 0) || (o->idle && o->rate > 0)) {
        fprintf(stderr, "bench_loadgen: need -t inet:HOST:PORT|unix:PATH, -c 1..100000, "
                        "-n or -d > 0 (--idle: --server-pid)\n");
        usage(stderr);
        return 2;
    }
    return 0;
}
