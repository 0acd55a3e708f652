/*
 * main.c - backstopd: command line, signals, start-up and shutdown
 *
 *   backstopd [-f] [-c FILE]     run in the foreground (as systemd expects)
 *   backstopd -t [-v] [-c FILE]  check the config, exit 0/1 (-v: print it)
 *   backstopd -V | --version | -h | --help
 *
 * Signals: SIGHUP reloads the config (a bad one, or a new listener that
 * cannot open, is logged and the old config and listeners kept);
 * SIGTERM/SIGINT stop accepting, answer what is in flight, exit 0; SIGUSR1
 * logs the counters. Fatal errors happen only here, at start-up, and are
 * printed on stderr as well as logged. While the loop runs, info lines are
 * batched (bs_log_batch) and a prepare handle flushes them before each poll
 * once they are due (bs_log_hold_ms: 20 ms or 64 lines; a timer for the
 * rest): one sendmmsg for many lines; lines the syslog daemon did not take yet are
 * flushed again by a timer every BS_LOG_RETRY_MS while any are pending (while
 * no daemon listens, when the next connect may be tried: bs_log_retry_ms), so
 * none wait for the next request. Shutdown turns batching off.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "backstop/config.h"
#include "backstop/log.h"
#include "metrics.h"
#include "server.h"
#include "stats.h"
#include "store_redis.h"

#define DEFAULT_CONFIG "/etc/backstop/backstop.ini"

static bs_config cfg;          /* the live config; changed in place on reload */
static bs_config scratch, old; /* reload workspace */
static bs_server *server;
static bs_store *store;
static bs_metrics *metrics;
static uv_signal_t sig_hup, sig_term, sig_int, sig_usr1;
static uv_prepare_t log_flush; /* before the loop blocks: the turn's log lines */
static uv_timer_t log_retry;   /* while lines are pending: flush them again */
static int stopping;
static int to_stderr; /* -f */

static void usage(FILE *fp)
{
    fprintf(fp, "usage: backstopd [-f] [-c FILE]      run (in the foreground)\n"
                "       backstopd -t [-v] [-c FILE]   check the configuration and exit\n"
                "       backstopd -V | --version      print the version\n"
                "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
                "  -f       log to stderr as well as syslog\n"
                "  -t       test the configuration: exit 0 if it is valid, else 1\n"
                "  -v       with -t, print the effective configuration\n");
}

/* Settings a reload cannot apply: a changed one is reported, and the
 * running value is kept in cfg (so cfg is what runs, and a file changed
 * back to it is no change). */
static const struct {
    const char *key;
    size_t off, size;
} restart_only[] = {
    {"[server] user", offsetof(bs_config, user), sizeof(cfg.user)},
    {"[server] group", offsetof(bs_config, group), sizeof(cfg.group)},
    {"[redis] max_pending", offsetof(bs_config, max_pending), sizeof(cfg.max_pending)},
    {"[redis] mirror", offsetof(bs_config, mirror), sizeof(cfg.mirror)},
    /* the endpoint and its count (set or not), one setting */
    {"[metrics] listen", offsetof(bs_config, metrics),
     offsetof(bs_config, nmetrics) + sizeof(cfg.nmetrics) - offsetof(bs_config, metrics)},
};

/*
 * load - the config file into c: bs_config_load, and a file without a
 * single setting refused (an empty or cut-short file, as an editor or a
 * copy can leave, would otherwise move the listeners and Redis to the
 * defaults); 0 / -1 with err
 */
static int load(const char *path, bs_config *c, char *err, size_t errsz)
{
    unsigned settings;

    if (bs_config_load_counted(path, c, &settings, err, errsz) < 0)
        return -1;
    if (settings == 0) {
        snprintf(err, errsz,
                 "%s: no settings in the file (empty or cut short?): backstopd wants at least "
                 "[server] listen and [redis] server",
                 path);
        return -1;
    }
    return 0;
}

/*
 * on_reload - all or nothing for what can fail: the new file must load and
 * every new listener must open before anything changes; otherwise the
 * running configuration and listeners stay, and the log says so.
 */
static void on_reload(uv_signal_t *h, int signum)
{
    char err[512];
    size_t i;

    if (load(cfg.file, &scratch, err, sizeof(err)) < 0 ||
        bs_server_open_new(server, &scratch, err, sizeof(err)) < 0) {
        bs_stat.reload_errors++;
        bs_warn("reload: %s: keeping the running configuration", err);
        return;
    }
    old = cfg;
    cfg = scratch;
    bs_log_level = cfg.log_level;
    if (strcmp(old.syslog_facility, cfg.syslog_facility) != 0 ||
        strcmp(old.log_socket, cfg.log_socket) != 0)
        bs_log_open_path("backstopd", cfg.syslog_facility, to_stderr, cfg.log_socket);
    for (i = 0; i < sizeof(restart_only) / sizeof(restart_only[0]); i++) {
        char *now = (char *)&cfg + restart_only[i].off;
        const char *running = (const char *)&old + restart_only[i].off;
        if (memcmp(now, running, restart_only[i].size) != 0) {
            bs_warn("reload: %s takes effect at restart", restart_only[i].key);
            memcpy(now, running, restart_only[i].size);
        }
    }
    bs_store_redis_reconfigure(store, &old);
    bs_server_reconfigure(server, &old);
    bs_stat.reloads++;
    bs_info("configuration reloaded from %s", cfg.file);
}

static void on_server_done(void *arg)
{
    server = NULL;
    if (metrics)
        bs_metrics_stop(metrics);
    metrics = NULL;
    bs_store_redis_close(store);
    store = NULL;
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_usr1, NULL);
    bs_log_batch(0); /* lines from here to exit go out as they are logged */
    uv_close((uv_handle_t *)&log_flush, NULL);
    uv_close((uv_handle_t *)&log_retry, NULL);
}

static void on_log_retry(uv_timer_t *h);

/* log_flush_now - one flush; the retry timer runs while lines are pending */
static void log_flush_now(void)
{
    unsigned ms;

    bs_log_flush();
    if ((ms = bs_log_retry_ms()) != 0 && !uv_is_active((uv_handle_t *)&log_retry))
        uv_timer_start(&log_retry, on_log_retry, ms, 0);
}

/* on_log_flush - before the loop polls: the backlog in one sendmmsg once
 * it is due, else a timer for when it is */
static void on_log_flush(uv_prepare_t *h)
{
    unsigned hold = bs_log_hold_ms();

    if (hold == 0)
        log_flush_now();
    else if (!uv_is_active((uv_handle_t *)&log_retry))
        uv_timer_start(&log_retry, on_log_retry, hold, 0);
}

/* on_log_retry - the syslog daemon was behind: try the backlog again */
static void on_log_retry(uv_timer_t *h)
{
    log_flush_now();
}

static void on_stop(uv_signal_t *h, int signum)
{
    if (stopping++)
        return;
    bs_info("%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    bs_server_shutdown(server, on_server_done, NULL);
}

static void on_usr1(uv_signal_t *h, int signum)
{
    bs_stats_log("SIGUSR1");
}

/* drop_privileges - become [server] user/group after binding */
static void drop_privileges(void)
{
    struct passwd *pw = NULL;
    struct group *gr = NULL;

    if (!cfg.user[0] && !cfg.group[0])
        return;
    if (cfg.user[0] && !(pw = getpwnam(cfg.user)))
        bs_fatal("[server] user %s: no such user", cfg.user);
    if (cfg.group[0] && !(gr = getgrnam(cfg.group)))
        bs_fatal("[server] group %s: no such group", cfg.group);
    if (gr || pw) {
        gid_t gid = gr ? gr->gr_gid : pw->pw_gid;
        if (setgroups(1, &gid) != 0 || setgid(gid) != 0)
            bs_fatal("cannot change group to %u: %s", (unsigned)gid, strerror(errno));
    }
    if (pw && setuid(pw->pw_uid) != 0)
        bs_fatal("cannot change user to %s: %s", cfg.user, strerror(errno));
    if (pw && setuid(0) == 0)
        bs_fatal("privileges could not be dropped for good");
    bs_info("running as %s%s%s", pw ? cfg.user : "", gr ? ":" : "", gr ? cfg.group : "");
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG;
    int opt, test = 0, verbose = 0;
    char err[512];
    uv_loop_t *loop = uv_default_loop();
    static const struct option long_opts[] = {
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };

    while ((opt = getopt_long(argc, argv, "c:ftvVh", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'f':
            to_stderr = 1;
            break;
        case 't':
            test = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'V':
            printf("backstopd %s\n", BACKSTOP_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (load(path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (test) {
        if (verbose)
            bs_config_dump(&cfg, stdout, BS_DUMP_REDACTED);
        return 0;
    }
    bs_log_level = cfg.log_level;
    bs_log_open_path("backstopd", cfg.syslog_facility, to_stderr, cfg.log_socket);
    signal(SIGPIPE, SIG_IGN);

    store = bs_store_redis_new(loop, &cfg);
    server = store ? bs_server_new(loop, &cfg, store) : NULL;
    if (!server)
        bs_fatal("out of memory");
    if (bs_server_listen(server, err, sizeof(err)) < 0)
        bs_fatal("%s", err);
    if (cfg.nmetrics &&
        !(metrics = bs_metrics_start(loop, &cfg, &cfg.metrics[0], store, err, sizeof(err))))
        bs_fatal("%s", err);
    drop_privileges();

    uv_signal_init(loop, &sig_hup);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_usr1);
    uv_signal_start(&sig_hup, on_reload, SIGHUP);
    uv_signal_start(&sig_term, on_stop, SIGTERM);
    uv_signal_start(&sig_int, on_stop, SIGINT);
    uv_signal_start(&sig_usr1, on_usr1, SIGUSR1);
    uv_prepare_init(loop, &log_flush);
    uv_prepare_start(&log_flush, on_log_flush);
    uv_unref((uv_handle_t *)&log_flush); /* it keeps no loop alive */
    uv_timer_init(loop, &log_retry);
    uv_unref((uv_handle_t *)&log_retry); /* nor this: at exit the backlog is flushed once */
    bs_log_batch(1);
    bs_info("backstopd %s started (mode=%s, on_redis_error=%s)", BACKSTOP_VERSION,
            cfg.mode == BS_MODE_REPORT ? "report" : "enforce",
            cfg.on_redis_error == BS_ON_ERROR_DUNNO ? "dunno" : "defer");

    uv_run(loop, UV_RUN_DEFAULT);
    bs_log_batch(0); /* off already, unless the loop ended another way */
    bs_stats_log("exit");
    if (uv_loop_close(loop) != 0)
        bs_warn("event loop closed with handles still open");
    bs_info("stopped");
    return 0;
}
