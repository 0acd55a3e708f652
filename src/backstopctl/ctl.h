/*
 * ctl.h - backstopctl, the admin command line: what its files share
 *
 * backstopctl is a short-lived, synchronous program: one command, one
 * hiredis connection (sync API, with a deadline on connect and on every
 * reply), output on stdout, diagnostics on stderr, an exit status. It is
 * not part of the daemon and never runs on its event loop, so blocking
 * calls (hiredis sync, res_nquery, poll) are fine here.
 *
 *   ctl_main.c     command and option tables, help, dispatch
 *   ctl_redis.c    connection (AUTH, SELECT), commands, pipelines, keys
 *   ctl_util.c     output helpers: durations, escaping, sorting, columns
 *   ctl_domain.c   domain add|del|list, user add|del|list
 *   ctl_mode.c     domain mode (the mode HASH), stats --domain, and the
 *                  mode + would-reject count that domain list shows
 *   ctl_import.c   import DOMAIN FILE (validate all, then one atomic write)
 *   ctl_ndr.c      ndr set|del|list|explain
 *   ctl_explain.c  re-derives a verdict from Redis with the daemon's own
 *                  rules (decide.c), for ndr explain, client, check and
 *                  purge-queue
 *   ctl_client.c   block list|add|del, client, stats
 *   ctl_check.c    check: one real policy request to a running backstopd,
 *                  whatever the state of Redis
 *   ctl_queue.c    purge-queue: queued bounces to NDR-denied domains
 *   ctl_json.c     JSON with jansson: "postqueue -j" lines in, --json out
 *   ctl_rbl.c      rbl-check: DNSBL lookups with res_nquery
 *   ctl_sync.c     sync: directory sources (sync.c) into rcpt:<domain>
 *   ctl_harvest.c  harvest [end]: domains under a harvest attack; the
 *                  harvest facts of one request for explain
 *
 * Exit status of every command: BS_CTL_OK, BS_CTL_FAIL (an error, or a
 * check that failed: documented per command), BS_CTL_USAGE (bad command
 * line, including an argument value that does not parse; nothing was done);
 * sync alone also returns 3 (BS_SYNC_EXIT_REFUSED: a guard refused a domain).
 *
 * Ownership: one bs_ctl per process, owned by main(). Replies returned by
 * bs_ctl_cmd*() and bs_ctl_read() belong to the caller (freeReplyObject).
 */
#ifndef BACKSTOP_CTL_H
#define BACKSTOP_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "backstop/addr.h"
#include "backstop/config.h"
#include "backstop/decide.h"
#include "backstop/keys.h"
#include "backstop/proto.h"

#define BS_CTL_DEFAULT_CONFIG "/etc/backstop/backstop.ini"
#define BS_CTL_DEFAULT_TIMEOUT_MS 5000
#define BS_CTL_KEY_MAX (BS_CFG_PREFIX_MAX + 16 + BS_DOMAIN_MAX + 64)
#define BS_CTL_MAX_ZONES 32

enum bs_ctl_exit { BS_CTL_OK = 0, BS_CTL_FAIL = 1, BS_CTL_USAGE = 2 };

/* Every option of every command; the command table says which it takes. */
enum bs_ctl_opt {
    BS_OPT_CONFIG = 0,
    BS_OPT_TIMEOUT,
    BS_OPT_HELP,
    BS_OPT_PURGE,
    BS_OPT_REPLACE,
    BS_OPT_SKIP_BAD,
    BS_OPT_FOR,
    BS_OPT_REASON,
    BS_OPT_SENDER,
    BS_OPT_RECIPIENT,
    BS_OPT_CLIENT,
    BS_OPT_HELO,
    BS_OPT_SERVER,
    BS_OPT_YES,
    BS_OPT_QUEUE,
    BS_OPT_CONFIG_DIR,
    BS_OPT_FROM_JSON,
    BS_OPT_POSTQUEUE,
    BS_OPT_POSTSUPER,
    BS_OPT_ZONE,
    BS_OPT_NAMESERVER,
    BS_OPT_STRICT,
    BS_OPT_JSON,
    BS_OPT_DRY_RUN,
    BS_OPT_FORCE,
    BS_OPT_QUIET,
    BS_OPT_DOMAIN,
    BS_OPT_COUNT
};

/* The process state. Owned by main(); redis is opened by bs_ctl_connect()
 * and closed by main() at exit. */
typedef struct bs_ctl {
    const char *config_path;
    bs_config cfg;                       /* loaded before commands that need it */
    uint64_t timeout_ms;                 /* each connect, reply, DNS query */
    const char *opt[BS_OPT_COUNT];       /* last value given; "" for a flag; NULL: absent */
    const char *zones[BS_CTL_MAX_ZONES]; /* --zone, repeatable */
    size_t nzones;
    redisContext *redis;
    int tty; /* stderr is a terminal: progress bars */
} bs_ctl;

/* ------------------------------------------------------------ commands */
/* Each returns an enum bs_ctl_exit. argv holds the operands only. */
int bs_ctl_domain_add(bs_ctl *c, int argc, char **argv);
int bs_ctl_domain_del(bs_ctl *c, int argc, char **argv);
int bs_ctl_domain_list(bs_ctl *c, int argc, char **argv);
int bs_ctl_domain_mode(bs_ctl *c, int argc, char **argv); /* ctl_mode.c */
/* bs_ctl_stats_domain - stats --domain DOMAIN (ctl_mode.c); called by bs_ctl_stats */
int bs_ctl_stats_domain(bs_ctl *c);
int bs_ctl_user_add(bs_ctl *c, int argc, char **argv);
int bs_ctl_user_del(bs_ctl *c, int argc, char **argv);
int bs_ctl_user_list(bs_ctl *c, int argc, char **argv);
int bs_ctl_import(bs_ctl *c, int argc, char **argv);
int bs_ctl_ndr_set(bs_ctl *c, int argc, char **argv);
int bs_ctl_ndr_del(bs_ctl *c, int argc, char **argv);
int bs_ctl_ndr_list(bs_ctl *c, int argc, char **argv);
int bs_ctl_ndr_explain(bs_ctl *c, int argc, char **argv);
int bs_ctl_block_list(bs_ctl *c, int argc, char **argv);
int bs_ctl_block_add(bs_ctl *c, int argc, char **argv);
int bs_ctl_block_del(bs_ctl *c, int argc, char **argv);
int bs_ctl_client(bs_ctl *c, int argc, char **argv);
int bs_ctl_stats(bs_ctl *c, int argc, char **argv);
int bs_ctl_check(bs_ctl *c, int argc, char **argv);
int bs_ctl_purge_queue(bs_ctl *c, int argc, char **argv);
int bs_ctl_rbl_check(bs_ctl *c, int argc, char **argv);
int bs_ctl_sync(bs_ctl *c, int argc, char **argv);        /* ctl_sync.c */
int bs_ctl_harvest(bs_ctl *c, int argc, char **argv);     /* ctl_harvest.c */
int bs_ctl_harvest_end(bs_ctl *c, int argc, char **argv); /* ctl_harvest.c */
/* bs_ctl_sync_show - the last sync of these domains (all when n is 0) from
 * backstop:sync, for domain list and stats: printed, or with --json set as
 * member "sync" of into; 0 / -1 (printed) */
int bs_ctl_sync_show(bs_ctl *c, char *const *domains, size_t n, json_t *into);

/* ------------------------------------------------------------ ctl_mode.c */
/* One domain's (or "*"'s) mode as the daemon sees it. */
typedef struct bs_ctl_mode {
    char domain[BS_DOMAIN_MAX + 1]; /* canonical form, or "*"; set by the caller */
    bs_facts f;                     /* protected_domain and the mode fields */
    int mode;                       /* enum bs_mode its recipients get */
    int src;                        /* enum bs_mode_src */
    int bad;                        /* bs_decide_mode's bits: a field that is no mode */
    long long would_reject;         /* HGET wouldreject <domain>, 0: none */
} bs_ctl_mode;
/* bs_ctl_mode_read - fill m[0..n-1] (SISMEMBER domains, HMGET mode <d> "*",
 * HGET wouldreject <d>, pipelined); 0 / -1 (printed) */
int bs_ctl_mode_read(bs_ctl *c, bs_ctl_mode *m, size_t n);

/* ------------------------------------------------------------ ctl_redis.c */
/* bs_ctl_connect - connect (once), AUTH, SELECT. 0, or -1 (message printed). */
int bs_ctl_connect(bs_ctl *c);
/* bs_ctl_key - prefix + kind + name (name may be NULL) into out. */
void bs_ctl_key(const bs_ctl *c, char *out, size_t outsz, const char *kind, const char *name);
/* bs_ctl_cmdargv / bs_ctl_cmd - one command, one reply. An error reply or
 * an I/O error is printed and gives NULL. bs_ctl_cmd's list ends with NULL;
 * its arguments are NUL-terminated strings. */
redisReply *bs_ctl_cmdargv(bs_ctl *c, int argc, const char **argv, const size_t *lens);
redisReply *bs_ctl_cmd(bs_ctl *c, const char *arg0, ...) __attribute__((sentinel));
/* bs_ctl_append / bs_ctl_read - pipelining: queue commands, then read their
 * replies in order. bs_ctl_read returns error replies too (the caller looks
 * at them); NULL only on an I/O error (printed). append: 0 / -1. */
int bs_ctl_append(bs_ctl *c, int argc, const char **argv, const size_t *lens);
redisReply *bs_ctl_read(bs_ctl *c);
/* bs_ctl_reply_ok - 1 when rep has the wanted type, else print what was
 * found instead (what: the command, for the message) and return 0. */
int bs_ctl_reply_ok(const redisReply *rep, int type, const char *what);
/* bs_ctl_hgetall - connect, HGETALL the hash <prefix>name; the reply (an
 * array of field, value, ...; the caller frees it) or NULL (printed). */
redisReply *bs_ctl_hgetall(bs_ctl *c, const char *name);
/* bs_ctl_redis_ms - Redis's clock (TIME) in ms; 0 / -1. */
int bs_ctl_redis_ms(bs_ctl *c, uint64_t *now_ms);
/* bs_ctl_fill_set - key becomes exactly the n members (DEL, then pipelined
 * SADD batches), with a TTL of ttl_ms (decimal text) renewed each batch;
 * progress (may be NULL) after each batch. 0, or -1 (printed): the key then
 * holds part of the members until it expires. */
#define BS_CTL_FILL_BATCH 1000  /* members per round trip */
#define BS_CTL_FILL_PER_CMD 100 /* members per SADD */
int bs_ctl_fill_set(bs_ctl *c, const char *key, char *const *members, size_t n, const char *ttl_ms,
                    void (*progress)(void *arg, size_t done, size_t total), void *arg);

/* ------------------------------------------------------------ ctl_util.c */
void bs_ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bs_ctl_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* bs_ctl_last_err - the text of the last bs_ctl_err ("" if none), without
 * the "backstopctl: " head; valid until the next bs_ctl_err. */
const char *bs_ctl_last_err(void);
/* bs_ctl_utf8_char - the code point of the UTF-8 sequence at s (n bytes
 * left), its length in *len; -1 when it is not UTF-8 (an overlong form, a
 * surrogate, past U+10FFFF, truncated, a stray byte). */
long bs_ctl_utf8_char(const unsigned char *s, size_t n, size_t *len);
/* bs_ctl_local_bad_byte - why the len bytes of s (a local part or an
 * address as typed: user add|del, an import key) hold a byte that no
 * local part Postfix hands the policy server has, or NULL when none:
 * a byte sequence that is not UTF-8, a C0 or C1 control or DEL, U+FEFF,
 * '"' or '\\' (a quoted local part: Postfix passes it unquoted, so it
 * would never match). */
const char *bs_ctl_local_bad_byte(const char *s, size_t len);
/* bs_ctl_safe - copy for display: control bytes (C0, DEL, C1), '\\' and
 * bytes that are not UTF-8 become "\xHH", other UTF-8 is kept. Always
 * NUL-terminated; a character is never cut. */
const char *bs_ctl_safe(const char *s, size_t len, char *out, size_t outsz);
/* bs_ctl_duration - ms as the shortest exact config form: "1h", "90s",
 * "1500ms". bs_ctl_remaining - ms as "2d3h", "59m12s", "800ms". */
const char *bs_ctl_duration(uint64_t ms, char *out, size_t outsz);
const char *bs_ctl_remaining(uint64_t ms, char *out, size_t outsz);
/* bs_ctl_rule_text - "allow", "deny", "limit 10/1h", "deny report" */
const char *bs_ctl_rule_text(const bs_ndr_rule *r, char *out, size_t outsz);
/* bs_ctl_cidr_text - "127.0.0.0/8", "::1/128" */
const char *bs_ctl_cidr_text(const bs_cidr *n, char *out, size_t outsz);
/* bs_ctl_sort_strings - sort (strcmp order) in place */
void bs_ctl_sort_strings(char **v, size_t n);
/* bs_ctl_norm_domain - a DOMAIN operand: normalise or say why not.
 * 0, or BS_CTL_USAGE with the message printed. */
int bs_ctl_norm_domain(const char *arg, char *out);
/* bs_ctl_norm_client - a CLIENT operand ("192.0.2.1", "2001:db8::1", or a
 * key as "block list" prints it, "2001:db8::/64" with the configured
 * prefix) -> the daemon's key. 0, or BS_CTL_USAGE with the message printed. */
int bs_ctl_norm_client(const bs_ctl *c, const char *arg, char *key);

/* ------------------------------------------------------------ ctl_import.c */
enum bs_ctl_line { BS_LINE_SKIP = 0, BS_LINE_USER, BS_LINE_BAD };

/* Import line classifier state: as in Postfix table files, a line that
 * starts with a blank continues the logical line before it (comment and
 * blank lines in between do not end it). Zero it before line 1. */
typedef struct bs_ctl_lines {
    int in_entry;     /* a logical line (an entry) has started */
    size_t continued; /* lines skipped as the continuation of an entry */
    size_t lines;     /* lines seen: a byte order mark is dropped from line 1 */
} bs_ctl_lines;

/*
 * bs_ctl_import_line - one line of an import file (without its "\n"; a
 * "\r" before it is dropped, as is a UTF-8 BOM at the start of line 1) for
 * domain (normalised). BS_LINE_USER with the normalised local part ("*" for a
 * "@domain" catch-all) in local; BS_LINE_SKIP for blank lines, comments,
 * continuation lines (counted in st->continued) and a "DOMAIN value" line;
 * BS_LINE_BAD with *why, an indented line before the first entry included
 * (Postfix ignores it with a warning).
 */
int bs_ctl_import_line(bs_ctl_lines *st, const char *line, size_t len, const char *domain,
                       char local[BS_LOCAL_MAX + 1], const char **why);

/* ------------------------------------------------------------ ctl_harvest.c */
/* What harvest detection does with one request (a recipient of a protected
 * domain): decide.c's HARVEST step (asked or not), its result computed from
 * the keys of the schema (attack, known:<domain>,
 * grey:<domain>:<network>:<local>, the exempt SET) as the daemon's check
 * reads them. */
enum bs_ctl_harvest_verdict {
    BS_HV_NONE = 0,   /* not looked at: not a protected domain, no client */
    BS_HV_OFF,        /* [harvest] threshold = 0 */
    BS_HV_NO_ATTACK,  /* the domain is not under attack (or it is past until) */
    BS_HV_EXEMPT,     /* an exempt client (config: no check; exempt SET: KNOWN) */
    BS_HV_KNOWN,      /* KNOWN: the client's network is known to the domain */
    BS_HV_NORMAL,     /* new_clients = normal: no check, the lowered limit */
    BS_HV_PASS,       /* PASS: greylist retry after retry_after (grey: key still there) */
    BS_HV_GREY_FIRST, /* DEFER: first sight (the daemon records it): harvest_greylist */
    BS_HV_GREY_EARLY, /* DEFER: retried before retry_after: harvest_greylist */
    BS_HV_DEFER       /* DEFER: new_clients = defer: harvest_defer */
};

typedef struct bs_ctl_harvest_facts {
    int verdict;                         /* enum bs_ctl_harvest_verdict */
    char network[BS_CLIENT_KEY_MAX + 1]; /* bs_client_network of the client */
    long long now_ms;                    /* Redis's clock (TIME) */
    int attack;                          /* the domain's field is in attack */
    char attack_raw[96];                 /* its value, displayable */
    long long since, unknown;            /* parsed (Unix seconds), -1 unreadable */
    long long until;                     /* as the daemon reads it, -1 none (in force) */
    int exempt_set;                      /* the client is in the exempt SET */
    long long known_ms;                  /* known:<domain> score, -1 absent */
    int grey_ok;                         /* grey:... is there and a number (Lua's tonumber) */
    long long grey_ms;                   /* its value (first sight, Unix ms) when grey_ok */
    long long grey_pttl;                 /* its TTL in ms, < 0 none */
} bs_ctl_harvest_facts;

/* bs_ctl_harvest_attack_parse - "since=UNIX;until=UNIX;unknown=N" (any
 * order, each once) into the three numbers; 0, or -1 (not that form). */
int bs_ctl_harvest_attack_parse(const char *v, size_t len, long long *since, long long *until,
                                long long *unknown);
/* bs_ctl_harvest_attack_until - the until the daemon reads in a value (the
 * first "until=" with digits), or -1 when it has none. */
long long bs_ctl_harvest_attack_until(const char *v, size_t len);

/* ------------------------------------------------------------ ctl_explain.c */
/* One request re-derived with decide.c against the Redis data. */
typedef struct bs_ctl_explain {
    char text[2048]; /* the request, as sent to backstopd */
    size_t len;
    bs_proto_parser req; /* attributes point into text */
    bs_lookup q;
    bs_facts f;
    bs_decision d;
    int step;          /* last bs_decide_* step */
    int redis_failed;  /* a reply had an error or the wrong type */
    int exempt_hit[2]; /* per q.exempt[] */
    int rcpt_hit[3];   /* per q.locals[] */
    int dir_looked_up; /* the directory (e->f.dir_*) was read, as the daemon does */
    int ndr_present[BS_NDR_MAX_FIELDS];
    char ndr_raw[BS_NDR_MAX_FIELDS][80]; /* displayable values */
    /* The NDR verdict for the recipient domain as if it were not protected
     * and the client not blocked (decide.c run on a copy), so ndr explain
     * can show it whatever else decided: */
    int ndr_known;                      /* the ndr fields were looked up */
    char ndr_winner[BS_DOMAIN_MAX + 2]; /* field, or "ndr_default" */
    int ndr_unusable;                   /* first field set had a bad value */
    bs_ndr_rule ndr_rule;
    long long ndr_used;           /* limit: ndrcount before this request, 0 = none */
    long long ndr_pttl;           /* its time left in ms, < 0 none */
    long long block_pttl;         /* ms; -1 no expiry */
    bs_ctl_harvest_facts harvest; /* read for a recipient of a protected domain */
    int harvest_without;          /* decide.c's reason had the harvest check answered
                                     PASS (set when it deferred), else -1 */
} bs_ctl_explain;

/* bs_ctl_request_text - a realistic RCPT-state request with these values
 * (sender "" is the null sender; client/helo may be NULL). Returns the
 * length, or -1 when a value holds a control character or is too long. */
int bs_ctl_request_text(char *out, size_t outsz, const char *sender, const char *recipient,
                        const char *client, const char *helo);
/* bs_ctl_explain_run - parse e->text, run decide.c's steps with facts read
 * from Redis (a limit rule is predicted from ndrcount: nothing is taken).
 * 0, or -1 on an I/O error (printed). A Redis error reply is not -1: the
 * verdict is then the daemon's fallback and e->redis_failed is set. */
int bs_ctl_explain_run(bs_ctl *c, bs_ctl_explain *e);
/* bs_ctl_explain_ndr - print the NDR candidates and the winner */
void bs_ctl_explain_ndr(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp, const char *indent);
/* bs_ctl_mode_from - where a decision's mode came from ("backstop:mode
 * field example.com", "... field *", "[policy] mode") into out */
const char *bs_ctl_mode_from(const bs_ctl *c, int src, const char *domain, char *out, size_t outsz);

/* bs_ctl_explain_print - every fact and the rule that decided */
void bs_ctl_explain_print(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp);
/* bs_ctl_explain_reply - the predicted "action=...\n\n" (BS_REPLY_MAX):
 * decide.c's (harvest detection included); returns its length */
size_t bs_ctl_explain_reply(const bs_ctl *c, const bs_ctl_explain *e, char *out);
/* bs_ctl_explain_rule - the predicted reason name ("valid", "harvest_greylist") */
const char *bs_ctl_explain_rule(const bs_ctl_explain *e);

/* bs_ctl_harvest_explain_run - read e's harvest facts (after the first
 * lookup, before decide.c's rules: only for a recipient of a protected
 * domain) and set e->f.under_attack as the daemon's table of attacks reads
 * the attack hash; 0, or -1 on an I/O error (printed). A bad reply sets
 * e->redis_failed. */
int bs_ctl_harvest_explain_run(bs_ctl *c, bs_ctl_explain *e);
/* bs_ctl_harvest_result - the harvest check's answer (enum bs_grey_result)
 * from the facts read, as the daemon's script computes it, nothing
 * written: fed to bs_decide_harvest when decide.c asks for it */
int bs_ctl_harvest_result(const bs_ctl *c, const bs_ctl_explain *e);
/* bs_ctl_harvest_explain_settle - e->harvest.verdict once decide.c is done */
void bs_ctl_harvest_explain_settle(const bs_ctl *c, bs_ctl_explain *e);
/* bs_ctl_harvest_explain_print / _json - the facts, as lines or an object
 * (json: null when not looked at) */
void bs_ctl_harvest_explain_print(const bs_ctl *c, const bs_ctl_explain *e, FILE *fp);
json_t *bs_ctl_harvest_explain_json(const bs_ctl *c, const bs_ctl_explain *e);

/* ------------------------------------------------------------ ctl_json.c */
/* One "postqueue -j" line. Strings are decoded (UTF-8, no NUL). */
typedef struct bs_ctl_qmsg {
    char queue_name[32];
    char queue_id[64];
    char sender[BS_ADDR_MAX + 64];
    int has_sender;
    char **rcpt; /* owned: bs_ctl_qmsg_free */
    size_t nrcpt;
} bs_ctl_qmsg;

/* bs_ctl_qjson_parse - parse one line into m (zeroed first). 0, or -1 with
 * *why (valid until the next call); m must be freed with bs_ctl_qmsg_free
 * either way. */
int bs_ctl_qjson_parse(const char *line, size_t len, bs_ctl_qmsg *m, const char **why);
void bs_ctl_qmsg_free(bs_ctl_qmsg *m);
/* bs_ctl_jstr - a new JSON string of len bytes: as they are when UTF-8,
 * else as bs_ctl_safe shows them. NULL: out of memory. */
json_t *bs_ctl_jstr(const char *s, size_t len);
/* bs_ctl_json_rule - a new {"action", "limit", "period_ms"} object (limit
 * and period_ms null unless action is "limit"). */
json_t *bs_ctl_json_rule(const bs_ndr_rule *r);
/* bs_ctl_json_print - write doc as one line on stdout and free it. Returns
 * rc, or BS_CTL_FAIL when doc is NULL or cannot be written (printed). */
int bs_ctl_json_print(json_t *doc, int rc);

/* ------------------------------------------------------------ ctl_rbl.c */
/* bs_ctl_rbl_name - "<reversed ip>.<zone>" (IPv4 per octet, IPv6 per
 * nibble). Returns the length, or -1 when ip is not an address, out is
 * too small, or the name is no DNS name: over 253 characters (255 octets
 * on the wire), or a label empty or over 63 octets. */
int bs_ctl_rbl_name(const char *ip, const char *zone, char *out, size_t outsz);

#endif
