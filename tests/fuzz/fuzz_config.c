/*
 * fuzz_config.c - libFuzzer target for bs_config_load (and bs_parse_ndr_rule)
 *
 * Each input is written to a temp file and loaded. The load must not crash,
 * leak or read out of bounds (ASan/UBSan). When it succeeds, the config must
 * keep every invariant the rest of backstopd relies on (at least one
 * listener, timeouts in range, strings terminated, ...), and it must survive
 * bs_config_dump -> bs_config_load unchanged. When it fails, the message must
 * name the file. The raw input is also given to bs_parse_ndr_rule as a
 * (pointer, length) pair, as Redis values are: an exact-size buffer, so ASan
 * catches any read past len. Any broken rule calls abort().
 *
 * Built by tests/fuzz/fuzz.cmake: fuzz_config (libFuzzer: clang,
 * -DBACKSTOP_FUZZ=ON) and fuzz_replay_config (replay.c instead of
 * libFuzzer, any compiler: ctest fuzz_replay_config replays the corpus).
 *   scripts/fuzz 60 config
 *   build/fuzz/fuzz_config -dict=tests/fuzz/config.dict CORPUS_COPY
 */
#include "backstop/config.h"
#include "backstop/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_config: invariant broken: %s\n", #cond);                         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)
#define MS_DAY UINT64_C(86400000)

static void check_endpoint(const bs_endpoint *ep)
{
    REQUIRE(ep->type == BS_EP_INET || ep->type == BS_EP_UNIX);
    REQUIRE(TERMINATED(ep->host) && TERMINATED(ep->path));
    if (ep->type == BS_EP_INET) {
        REQUIRE(ep->host[0] != '\0');
        REQUIRE(ep->port >= 1 && ep->port <= 65535);
    } else {
        REQUIRE(ep->path[0] == '/' && strlen(ep->path) < 108);
    }
}

static void check_cidrs(const bs_cidr *nets, size_t n, size_t max)
{
    REQUIRE(n >= 1 && n <= max);
    for (size_t i = 0; i < n; i++)
        REQUIRE(nets[i].bits <= 128);
}

/* check_config - what a loaded config promises the rest of backstopd */
static void check_config(const bs_config *c)
{
    REQUIRE(c->nlisten >= 1 && c->nlisten <= BS_CFG_MAX_LISTEN);
    for (size_t i = 0; i < c->nlisten; i++)
        check_endpoint(&c->listen[i]);
    REQUIRE(c->socket_mode <= 0777);
    REQUIRE(TERMINATED(c->socket_group) && TERMINATED(c->user) && TERMINATED(c->group));
    check_cidrs(c->allow, c->nallow, BS_CFG_MAX_ALLOW);
    REQUIRE(c->max_connections >= 1 && c->max_connections <= 100000);
    REQUIRE(c->idle_timeout_ms >= 1000 && c->idle_timeout_ms <= MS_DAY);

    check_endpoint(&c->redis);
    REQUIRE(TERMINATED(c->username) && TERMINATED(c->password));
    REQUIRE(c->db <= 1000);
    REQUIRE(TERMINATED(c->prefix) && strlen(c->prefix) < BS_CFG_PREFIX_MAX);
    for (const char *p = c->prefix; *p != '\0'; p++)
        REQUIRE(*p > ' ' && *p < 0x7f);
    REQUIRE(c->timeout_ms >= 10 && c->timeout_ms <= 60000);
    REQUIRE(c->connect_timeout_ms >= 10 && c->connect_timeout_ms <= 60000);
    REQUIRE(c->max_pending >= 1 && c->max_pending <= 1000000);
    REQUIRE(c->nsentinels <= BS_CFG_MAX_SENTINELS);
    for (size_t i = 0; i < c->nsentinels; i++) {
        check_endpoint(&c->sentinels[i]);
        REQUIRE(c->sentinels[i].type == BS_EP_INET);
    }
    REQUIRE(TERMINATED(c->master_name) && TERMINATED(c->sentinel_password));
    REQUIRE((c->nsentinels > 0) == (c->master_name[0] != '\0'));

    REQUIRE(c->mode == BS_MODE_ENFORCE || c->mode == BS_MODE_REPORT);
    REQUIRE(c->on_redis_error == BS_ON_ERROR_DEFER || c->on_redis_error == BS_ON_ERROR_DUNNO);
    REQUIRE(TERMINATED(c->recipient_delimiter));
    for (const char *p = c->recipient_delimiter; *p != '\0'; p++)
        REQUIRE(*p > ' ' && *p < 0x7f && *p != '@');
    REQUIRE(c->ndr_default.action >= BS_NDR_ALLOW && c->ndr_default.action <= BS_NDR_LIMIT);
    if (c->ndr_default.action == BS_NDR_LIMIT) {
        REQUIRE(c->ndr_default.limit >= 1 && c->ndr_default.limit <= 1000000);
        REQUIRE(c->ndr_default.period_ms >= 1000 && c->ndr_default.period_ms <= 30 * MS_DAY);
    }

    if (c->invalid_limit == 0) {
        REQUIRE(c->invalid_window_ms == 0);
    } else {
        REQUIRE(c->invalid_limit <= 100000);
        REQUIRE(c->invalid_window_ms >= 1000 && c->invalid_window_ms <= 7 * MS_DAY);
    }
    REQUIRE(c->block_time_ms >= 1000 && c->block_time_ms <= 30 * MS_DAY);
    REQUIRE(c->ipv6_prefix >= 1 && c->ipv6_prefix <= 128);
    check_cidrs(c->exempt, c->nexempt, BS_CFG_MAX_EXEMPT);

    REQUIRE(c->log_level >= BS_LOG_ERROR && c->log_level <= BS_LOG_DEBUG);
    REQUIRE(TERMINATED(c->syslog_facility) && bs_log_facility_valid(c->syslog_facility));
    REQUIRE(TERMINATED(c->log_socket) && c->log_socket[0] == '/');
}

/* temp_file - one file per process, rewritten for every input; tmpfs if there is one */
static int temp_file(char *path, size_t size, const char *name)
{
    int fd;

    snprintf(path, size, "/dev/shm/fuzz_config.%s.XXXXXX", name);
    fd = mkstemp(path);
    if (fd < 0) {
        snprintf(path, size, "/tmp/fuzz_config.%s.XXXXXX", name);
        fd = mkstemp(path);
    }
    REQUIRE(fd >= 0);
    return fd;
}

static char in_path[64], out_path[64];

static void remove_temp_files(void)
{
    unlink(in_path);
    unlink(out_path);
}

static void rewrite(int fd, const void *data, size_t size)
{
    REQUIRE(ftruncate(fd, 0) == 0);
    REQUIRE(size == 0 || pwrite(fd, data, size, 0) == (ssize_t)size);
}

static void check_ndr_rule(const uint8_t *data, size_t size)
{
    bs_ndr_rule r;

    if (bs_parse_ndr_rule((const char *)data, size, &r) != 0)
        return;
    REQUIRE(r.action >= BS_NDR_ALLOW && r.action <= BS_NDR_LIMIT);
    if (r.action == BS_NDR_LIMIT)
        REQUIRE(r.limit >= 1 && r.limit <= 1000000 && r.period_ms >= 1000 &&
                r.period_ms <= 30 * MS_DAY);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int in_fd = -1, out_fd = -1;
    static bs_config cfg, again;
    char err[1024], *text = NULL;
    size_t text_len = 0;
    FILE *fp;

    check_ndr_rule(data, size);
    if (in_fd < 0) {
        in_fd = temp_file(in_path, sizeof in_path, "in");
        out_fd = temp_file(out_path, sizeof out_path, "dump");
        atexit(remove_temp_files);
    }
    rewrite(in_fd, data, size);
    if (bs_config_load(in_path, &cfg, err, sizeof err) != 0) {
        REQUIRE(strncmp(err, in_path, strlen(in_path)) == 0);
        REQUIRE(err[strlen(in_path)] == ':');
        return 0;
    }
    check_config(&cfg);

    /* round trip: the dump loads back to the same config */
    fp = open_memstream(&text, &text_len);
    REQUIRE(fp != NULL);
    bs_config_dump(&cfg, fp, BS_DUMP_SECRETS);
    REQUIRE(fclose(fp) == 0);
    rewrite(out_fd, text, text_len);
    free(text);
    if (bs_config_load(out_path, &again, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_config: the dump does not load: %s\n", err);
        abort();
    }
    memcpy(again.file, cfg.file, sizeof cfg.file);
    REQUIRE(memcmp(&cfg, &again, sizeof cfg) == 0);
    return 0;
}
