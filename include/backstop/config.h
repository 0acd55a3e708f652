/*
 * config.h - backstop.ini: the one configuration file of backstopd and
 * backstopctl
 *
 * Parsed with inih. Every key is described once, in a table in config.c
 * (name, type, default, bounds, destination). Unknown sections or keys, bad
 * values, out-of-range numbers and over-long lines are errors naming
 * "FILE:LINE: [section] key: problem". Lists are written as repeated keys.
 * Durations take a unit: ms, s, m, h, d (a bare number means seconds).
 *
 * Ownership: a bs_config is a plain value with fixed-size fields (no heap),
 * so it can be copied, compared, and swapped on SIGHUP.
 */
#ifndef BACKSTOP_CONFIG_H
#define BACKSTOP_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backstop/cidr.h"
#include "backstop/source.h"

#define BS_CFG_MAX_LISTEN 8
#define BS_CFG_MAX_EXEMPT 64
#define BS_CFG_MAX_ALLOW 64
#define BS_CFG_MAX_SENTINELS 8
#define BS_CFG_PATH_MAX 256
#define BS_CFG_STR_MAX 128
#define BS_CFG_PREFIX_MAX 64
#define BS_CFG_DELIM_MAX 8
#define BS_CFG_MAX_SOURCES 8 /* [source NAME] sections */

enum bs_endpoint_type { BS_EP_INET = 1, BS_EP_UNIX = 2 };

/* "inet:HOST:PORT" ("inet:[::1]:10040" for IPv6) or "unix:/path" */
typedef struct bs_endpoint {
    int type;                   /* enum bs_endpoint_type */
    char host[BS_CFG_STR_MAX];  /* inet: literal address, or host name (not for listeners) */
    unsigned port;              /* inet: 1..65535 */
    char path[BS_CFG_PATH_MAX]; /* unix: socket path (< 108 bytes) */
} bs_endpoint;

/* [policy] mode is enforce or report; the mode HASH (keys.h) may also say
 * off for a domain or "*" (no checks: DUNNO, reason mode_off) */
enum bs_mode { BS_MODE_ENFORCE = 0, BS_MODE_REPORT = 1, BS_MODE_OFF = 2 };
enum bs_on_error { BS_ON_ERROR_DEFER = 0, BS_ON_ERROR_DUNNO = 1 };
enum bs_ndr_action { BS_NDR_ALLOW = 0, BS_NDR_DENY = 1, BS_NDR_LIMIT = 2 };
/* [harvest] new_clients: what clients not known to a domain under attack get */
enum bs_harvest_new { BS_HARVEST_GREYLIST = 0, BS_HARVEST_DEFER = 1, BS_HARVEST_NORMAL = 2 };

/* An NDR policy value: "allow", "deny" or "limit N/PERIOD", each with an
 * optional trailing "report" word ("deny report", "limit 10/1h report"). */
typedef struct bs_ndr_rule {
    int action;         /* enum bs_ndr_action */
    uint32_t limit;     /* BS_NDR_LIMIT: N >= 1 */
    uint64_t period_ms; /* BS_NDR_LIMIT: PERIOD >= 1s */
    int report;         /* "report": a refusal by this rule is only logged and
                           counted ("WARN would reject"), the bounce passes */
} bs_ndr_rule;

typedef struct bs_config {
    char file[BS_CFG_PATH_MAX]; /* path it was read from */

    /* [server] */
    bs_endpoint listen[BS_CFG_MAX_LISTEN];
    size_t nlisten;
    unsigned socket_mode;              /* unix listeners, default 0660 */
    char socket_group[BS_CFG_STR_MAX]; /* unix listeners, "" = unchanged */
    bs_cidr allow[BS_CFG_MAX_ALLOW];   /* inet peers allowed; default loopback */
    size_t nallow;
    unsigned max_connections;  /* default 1000 */
    uint64_t idle_timeout_ms;  /* default 330s (> Postfix max_idle) */
    char user[BS_CFG_STR_MAX]; /* drop privileges after bind; "" = stay */
    char group[BS_CFG_STR_MAX];

    /* [redis] */
    bs_endpoint redis;              /* "tcp:HOST:PORT" or "unix:/path" (type inet = tcp) */
    char username[BS_CFG_STR_MAX];  /* Redis 6 ACL user, "" = none */
    char password[BS_CFG_STR_MAX];  /* "" = no AUTH */
    unsigned db;                    /* 0..15 by default range 0..1000 */
    char prefix[BS_CFG_PREFIX_MAX]; /* default "backstop:" */
    uint64_t timeout_ms;            /* answer deadline per request, default 300ms */
    uint64_t connect_timeout_ms;    /* default 1s */
    unsigned max_pending;           /* in-flight Redis requests, default 4096 */
    int mirror;                     /* local mirror kept exact by invalidations (restart) */
    uint64_t max_stale_ms;          /* mirror answers this long after losing Redis, default 5m */
    bs_endpoint sentinels[BS_CFG_MAX_SENTINELS]; /* tcp:HOST:PORT */
    size_t nsentinels;
    char master_name[BS_CFG_STR_MAX];
    char sentinel_password[BS_CFG_STR_MAX];

    /* [policy] */
    int mode;                                   /* enum bs_mode, default enforce */
    int on_redis_error;                         /* enum bs_on_error, default defer */
    char recipient_delimiter[BS_CFG_DELIM_MAX]; /* default "+", "" = none */
    bs_ndr_rule ndr_default;                    /* default deny */
    uint64_t max_directory_age_ms; /* 0 = off: an unknown user of a domain synced longer ago
                                      (or never) gets 450 4.7.1, not 550 */

    /* [ratelimit] */
    uint32_t invalid_limit;            /* "20/10m": 20; 0 disables */
    uint64_t invalid_window_ms;        /* "20/10m": 10 minutes */
    uint64_t block_time_ms;            /* default 1h */
    unsigned ipv6_prefix;              /* default 64, 1..128 */
    bs_cidr exempt[BS_CFG_MAX_EXEMPT]; /* default 127.0.0.0/8 and ::1/128 */
    size_t nexempt;

    /* [harvest] cluster-wide directory-harvest detection per protected domain */
    uint32_t harvest_limit;        /* threshold "200/10m": 200 unknown recipients; 0 disables */
    uint64_t harvest_window_ms;    /* threshold "200/10m": 10 minutes */
    uint64_t harvest_duration_ms;  /* under attack this long after the last trip, default 1h */
    uint32_t harvest_client_limit; /* per-client limit while under attack, "3/1h"; 0: unchanged */
    uint64_t harvest_client_window_ms; /* its window */
    int harvest_new_clients;           /* enum bs_harvest_new, default greylist */
    uint64_t harvest_retry_after_ms;   /* greylist: a retry passes after this, default 5m */
    uint64_t harvest_retry_window_ms;  /* ... and within this of the first sight, default 4h */
    uint64_t harvest_known_age_ms;     /* a client that delivered to a valid recipient this
                                          recently is known to the domain, default 30d */

    /* [metrics] */
    bs_endpoint metrics[1]; /* "inet:127.0.0.1:PORT"; none = off */
    size_t nmetrics;

    /* [log] */
    int log_level;            /* enum bs_log_level (log.h), default info */
    char syslog_facility[16]; /* default "mail" */
    char log_socket[108];     /* syslog socket, absolute, fits sun_path; default "/dev/log" */

    /* [sync] (backstopctl sync) */
    unsigned sync_max_shrink; /* percent a domain may lose without --force, default 20 */
    int sync_add_domains;     /* yes: a source's domain joins "domains"; default no */

    /* [source NAME], in file order; only backstopctl sync reads them */
    bs_source sources[BS_CFG_MAX_SOURCES];
    size_t nsources;
} bs_config;

/* bs_config_defaults - fill cfg with every default (no listener yet). */
void bs_config_defaults(bs_config *cfg);

/*
 * bs_config_load - defaults, then the file. Returns 0, or -1 with a
 * "FILE:LINE: problem" message (NUL-terminated, truncated to errsz) in err.
 * Also checks against this host what start-up would find: [server] user,
 * group and socket_group exist, unix listener paths are usable.
 * On error *cfg is unspecified: load into a scratch value and copy on success.
 * A file without any listen line gets the default inet:127.0.0.1:10040.
 */
int bs_config_load(const char *path, bs_config *cfg, char *err, size_t errsz);

/* bs_config_load_counted - bs_config_load, and *settings the number of key
 * lines the file held (0: a file empty of settings; backstopd refuses it). */
int bs_config_load_counted(const char *path, bs_config *cfg, unsigned *settings, char *err,
                           size_t errsz);

/* bs_parse_duration - "300ms", "5s", "10m", "1h", "2d" or "30". 0 / -1. */
int bs_parse_duration(const char *s, uint64_t *ms);

/* bs_parse_rate - "N/DURATION" (e.g. "20/10m"), or "0" = disabled. 0 / -1. */
int bs_parse_rate(const char *s, uint32_t *n, uint64_t *period_ms);

/* bs_parse_ndr_rule - "allow", "deny" or "limit N/PERIOD", optionally
 * followed by the word "report" (case-insensitive, blanks between words and
 * around ignored). Used for both the config and Redis values. 0 / -1. */
int bs_parse_ndr_rule(const char *s, size_t len, bs_ndr_rule *out);

/* bs_format_ndr_rule - the canonical text of a rule ("limit 10/1h report") */
void bs_format_ndr_rule(const bs_ndr_rule *r, char *buf, size_t size);

/* bs_parse_mode - a mode HASH value: "enforce", "report" or "off"
 * (case-insensitive, surrounding blanks ignored; only len bytes read):
 * enum bs_mode, or -1 */
int bs_parse_mode(const char *s, size_t len);

/* bs_mode_name - "enforce", "report", "off" (or "?") */
const char *bs_mode_name(int mode);

/* bs_parse_endpoint - "inet:H:P", "tcp:H:P", "[v6]" hosts, or "unix:/p". */
int bs_parse_endpoint(const char *s, bs_endpoint *out);

enum bs_dump_how {
    BS_DUMP_REDACTED = 0, /* a set secret is a comment line "# password = (set, not shown)" */
    BS_DUMP_SECRETS = 1,  /* secrets in clear, for round-trip tests only: never to a log */
};

/* bs_config_dump - write every effective setting, ini syntax, to fp; how is
 * enum bs_dump_how. */
void bs_config_dump(const bs_config *cfg, FILE *fp, int how);

/* bs_config_option - the name of key number i of the option tables (its
 * section in *section), in bs_config_dump's order: the fixed sections, then
 * the keys of a [source NAME] section (section "source NAME"); NULL past
 * the last. */
const char *bs_config_option(size_t i, const char **section);

#endif
