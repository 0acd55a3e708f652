/*
 * decide.h - the policy rules: what backstopd answers to one policy request
 *
 * A pure, synchronous state machine. It never touches sockets, libuv or
 * hiredis; the caller (conn.c, or a test with a fake store) runs the store
 * queries it asks for and feeds the answers back:
 *
 *   bs_decide_begin(d, cfg, req, &q)   -> BS_DECIDE_DONE | BS_DECIDE_LOOKUP
 *   LOOKUP: run q against the store, then
 *   bs_decide_facts(d, cfg, &facts, &q) -> BS_DECIDE_DONE | BS_DECIDE_NDR_TAKE
 *                                         | BS_DECIDE_LOOKUP (a blocked
 *   client: run q, the exempt SET check; an unknown recipient of a
 *   protected domain: run q, the directory check; then call
 *   bs_decide_facts again, which may ask once more)
 *   NDR_TAKE: take one from the NDR budget d->ndr_count_domain, then
 *   bs_decide_taken(d, cfg, result)    -> BS_DECIDE_DONE
 *   HARVEST: the greylisting check of a client not exempt, recipient domain
 *   under a harvest attack (store op harvest_check), then
 *   bs_decide_harvest(d, cfg, result, &q) -> BS_DECIDE_DONE | BS_DECIDE_LOOKUP
 *   (an unknown recipient that may be refused: the directory check, then
 *   bs_decide_facts)
 *   Any step may instead end with bs_decide_fallback(d, cfg, why) when the
 *   store cannot answer in time.
 *
 * On DONE, d->action/d->why hold the verdict, d->note_invalid says whether
 * the caller must count an invalid recipient for d->client_key against
 * d->invalid_limit/_window_ms, d->note_harvest whether it counts one
 * unknown recipient of d->rcpt.domain for harvest detection, d->note_known
 * whether d->network delivered to a valid recipient of it (fire-and-forget
 * store writes: the answer does not wait for them), and
 * bs_decide_reply()/bs_decide_log_line() format the answer and log line.
 *
 * Rules (protocol_state=RCPT only; anything else is DUNNO):
 *  1. client blocked (and not exempt)              -> 450 4.7.1
 *  2. null sender, recipient domain not protected -> NDR policy, longest
 *     suffix match: domain, each ".parent", "*", then ndr_default (an
 *     address literal: itself, "*"; a domain that cannot be read: "*")
 *  3. recipient domain protected: local part, or local part without its
 *     extension, or "*" must be a member of rcpt:<domain>, else 550 5.1.1
 *     (a local part that is no valid local part only passes a catch-all)
 *     (and the client's invalid-recipient count goes up unless exempt) --
 *     but only when the directory can be trusted (a second lookup, on that
 *     path alone): an empty or missing rcpt:<domain> -> DEFER_IF_PERMIT
 *     4.7.1, a directory whose last successful sync is older than
 *     [policy] max_directory_age (or that was never synced, when that is
 *     set) -> 450 4.7.1; neither counts an invalid recipient. Refusing a
 *     real user loses mail; a 4xx only delays it.
 *     Harvest detection ([harvest] threshold > 0): every unknown recipient
 *     of a protected domain counts towards the domain's threshold (unless
 *     the client is exempt); a valid one marks the client's network known
 *     to the domain. While the domain is under attack (f->under_attack,
 *     from the store's local table of attacked domains):
 *     - the client's limit is [harvest] client_limit (when not 0);
 *     - a client not exempt, with new_clients greylist or defer, is first
 *       checked (HARVEST step): KNOWN (delivered to a valid recipient within
 *       known_client_age) or PASS (greylist: retried after retry_after,
 *       within retry_window) go on with the rules above; DEFER answers
 *       450 4.7.1 with one text for valid and unknown recipients alike
 *       (reason harvest_greylist, or harvest_defer for new_clients =
 *       defer); an unknown recipient is still counted. Rule 1 comes first.
 *  4. anything else                                -> DUNNO
 * The mode of a decision: for a recipient of a protected domain the mode
 * HASH's field <domain>, then its field "*", then [policy] mode; for
 * anything else (a bounce to a remote domain, a blocked client sending to a
 * domain not ours) "*", then [policy] mode. A value that is no mode is
 * ignored (d->mode_bad says which; the caller warns). off -> DUNNO, reason
 * mode_off, nothing counted, no second lookup. report turns every refusal
 * into "WARN would reject|defer: ..." (logged; the caller counts it per
 * recipient domain: bs_decide_would_reject), and so does an NDR entry's
 * "report" word for the refusals of that entry, whatever the mode.
 */
#ifndef BACKSTOP_DECIDE_H
#define BACKSTOP_DECIDE_H

#include <stddef.h>
#include <stdint.h>

#include "backstop/addr.h"
#include "backstop/config.h"
#include "backstop/proto.h"

#define BS_NDR_MAX_FIELDS 16 /* domain, up to 14 parents, "*" */
#define BS_REPLY_MAX 600     /* "action=" + text (<= 512) + "\n\n" */
#define BS_LOG_FIELD_MAX 256 /* escaped wire strings kept for the log line */
#define BS_NDR_STAR 0xff     /* ndr_off[] value of the "*" candidate */
#define BS_NDR_DEFAULT (-1)  /* ndr_match: no entry, ndr_default decided */
#define BS_NDR_NONE (-2)     /* ndr_match: no NDR policy was consulted */
#define BS_MODE_VALUE_MAX 16 /* a mode HASH value kept in the facts (truncated) */

/* Where a decision's mode came from (bs_decision.mode_src). */
enum bs_mode_src {
    BS_MODE_SRC_CONFIG = 0, /* [policy] mode */
    BS_MODE_SRC_STAR,       /* the mode HASH's field "*" */
    BS_MODE_SRC_DOMAIN,     /* the mode HASH's field <recipient domain> */
};

enum bs_decide_step {
    BS_DECIDE_DONE = 0,
    BS_DECIDE_LOOKUP = 1,
    BS_DECIDE_NDR_TAKE = 2,
    BS_DECIDE_HARVEST = 3,
};

/* What the harvest check (store op harvest_check) found; < 0: store error */
enum bs_grey_result {
    BS_GREY_KNOWN = 1, /* known to the domain (or in the exempt SET) */
    BS_GREY_PASS = 2,  /* greylisting: retried after retry_after, within retry_window */
    BS_GREY_DEFER = 3, /* first sight, too early, or new_clients = defer */
};

/* What the answer is. The order is the stats/log table order in decide.c. */
enum bs_action {
    BS_ACT_DUNNO = 0,
    BS_ACT_REJECT_USER,  /* 550 5.1.1 */
    BS_ACT_REJECT_NDR,   /* 550 5.7.1 */
    BS_ACT_DEFER_CLIENT, /* 450 4.7.1 */
    BS_ACT_DEFER_DIR,    /* 4xx: the recipient directory is in doubt */
    BS_ACT_FALLBACK,     /* on_redis_error: DEFER_IF_PERMIT or DUNNO */
    BS_ACT_COUNT
};

/* Why. Each reason belongs to one action (table in decide.c). */
enum bs_why {
    BS_WHY_NOT_RCPT = 0,  /* protocol_state other than RCPT */
    BS_WHY_BAD_RCPT,      /* recipient not a usable address */
    BS_WHY_UNPROTECTED,   /* recipient domain not ours, not a bounce */
    BS_WHY_VALID,         /* known recipient (or catch-all) */
    BS_WHY_NDR_ALLOW,     /* bounce allowed by NDR policy */
    BS_WHY_NDR_UNDER,     /* bounce within its limit */
    BS_WHY_MODE_OFF,      /* the mode HASH says off for this recipient */
    BS_WHY_UNKNOWN_USER,  /* 550 5.1.1 */
    BS_WHY_NDR_DENY,      /* 550 5.7.1 */
    BS_WHY_NDR_LIMIT,     /* 550 5.7.1, over limit */
    BS_WHY_BLOCKED,       /* 450 4.7.1 */
    BS_WHY_DIR_EMPTY,     /* DEFER_IF_PERMIT 4.7.1: rcpt:<domain> empty */
    BS_WHY_DIR_STALE,     /* 450 4.7.1: last sync older than max_directory_age */
    BS_WHY_HARVEST_GREY,  /* 450 4.7.1: domain under attack, new client greylisted */
    BS_WHY_HARVEST_DEFER, /* 450 4.7.1: domain under attack, new_clients = defer */
    BS_WHY_REDIS_DOWN,    /* no usable Redis connection */
    BS_WHY_REDIS_TIMEOUT, /* no answer within [redis] timeout */
    BS_WHY_REDIS_ERROR,   /* Redis answered with an error */
    BS_WHY_REDIS_BUSY,    /* too many Redis requests in flight */
    BS_WHY_COUNT
};

/* The store queries of one request, all sent in one pipeline. Strings point
 * into the bs_decision; a NULL/0 entry means "not needed". */
typedef struct bs_lookup {
    const char *client_key; /* GET block:<client_key> */
    const char *exempt[2];  /* SMISMEMBER exempt <addr> [<client_key>]
                               (only for a blocked client: bs_decide_facts) */
    unsigned nexempt;
    const char *domain;    /* SISMEMBER domains <domain> */
    const char *locals[3]; /* SMISMEMBER rcpt:<domain> local [base] "*" */
    size_t local_lens[3];
    unsigned nlocals;
    const char *ndr_fields[BS_NDR_MAX_FIELDS]; /* HMGET ndr f1 f2 ... */
    unsigned nndr;
    const char *directory;   /* SCARD rcpt:<directory> (only for an unknown
                                recipient: bs_decide_facts) */
    int directory_synced;    /* and HGET sync <directory>:ok */
    const char *mode_domain; /* HMGET mode <mode_domain> "*" */
} bs_lookup;

/* What the store found; filled by the store for one bs_lookup. */
typedef struct bs_facts {
    int blocked;           /* block:<client> exists */
    char block_reason[64]; /* its value, truncated, escaped by the store */
    int exempt;            /* any exempt member present */
    int protected_domain;  /* domain in domains */
    int rcpt_known;        /* any of the locals present */
    int ndr_index;         /* first ndr field present, -1 none */
    char ndr_value[64];    /* its value (raw, NUL-terminated, truncated) */
    size_t ndr_value_len;
    /* the directory lookup (bs_lookup.directory) */
    int dir_known;           /* it was answered: the fields below are set */
    long long dir_size;      /* SCARD rcpt:<domain> (0: missing or empty) */
    long long dir_synced_at; /* Unix seconds of the last successful sync,
                                0: no (readable) sync record */
    long long dir_now;       /* the store's wall clock when it answered */
    int under_attack;        /* the recipient domain is under a harvest attack
                                (the store's local table; no query) */
    /* HMGET mode <domain> "*": [0] the domain's field, [1] "*" */
    int mode_found[2];                     /* the field is set */
    char mode_value[2][BS_MODE_VALUE_MAX]; /* its value (raw, truncated) */
    size_t mode_len[2];
    int mode_cut[2]; /* longer than BS_MODE_VALUE_MAX - 1: never a mode */
} bs_facts;

/* One request's decision. Embedded in its connection; no heap. */
/* bs_decision.cut: the request strings too long for their copy (the log
 * line shows them ending in "...") */
enum {
    BS_CUT_QUEUE_ID = 1 << 0,
    BS_CUT_CLIENT_NAME = 1 << 1,
    BS_CUT_CLIENT_ADDR = 1 << 2,
    BS_CUT_HELO = 1 << 3,
    BS_CUT_PROTO = 1 << 4,
    BS_CUT_FROM = 1 << 5,
    BS_CUT_TO = 1 << 6,
};

typedef struct bs_decision {
    /* from the request: raw (unescaped) copies, truncated, for the reply
     * and the log line; escape with bs_decide_text() before printing */
    char queue_id[32];
    char client_name[128];
    char client_addr[64];
    char helo[128];
    char proto[16];
    char from[BS_LOG_FIELD_MAX];
    char to[BS_LOG_FIELD_MAX];
    unsigned cut; /* BS_CUT_* of the copies above that were truncated */
    int null_sender;
    int cidr_exempt;

    /* normalised */
    bs_addr rcpt;
    int bad_local;   /* local part unusable (too long, control bytes): only a
                        catch-all can accept it */
    int unreadable;  /* null sender, recipient domain unreadable: decided by
                        "*" alone (rcpt.domain is "*", the shared budget) */
    size_t base_len; /* rcpt.local without extension */
    char base[BS_LOCAL_MAX + 1];
    char client_key[BS_CLIENT_KEY_MAX + 1];
    char client_ip[BS_CLIENT_KEY_MAX + 1];
    char network[BS_CLIENT_KEY_MAX + 1]; /* bs_client_network(): harvest detection */
    uint8_t ndr_off[BS_NDR_MAX_FIELDS];  /* NDR candidates: offsets into rcpt.domain
                                            (0 = it, else a '.'), or BS_NDR_STAR */
    unsigned nndr;

    /* outcome */
    bs_facts facts;             /* what the store found (kept across the exempt lookup) */
    int exempt_pending;         /* waiting for the exempt SET answer */
    int dir_pending;            /* waiting for the directory answer */
    int action;                 /* enum bs_action */
    int why;                    /* enum bs_why */
    int harvest_pending;        /* waiting for the harvest check's answer */
    int harvest_result;         /* enum bs_grey_result once checked, else 0 */
    int note_invalid;           /* caller counts an invalid recipient for client_key */
    uint32_t invalid_limit;     /* ... against this limit (client_limit under attack) */
    uint64_t invalid_window_ms; /* ... and window */
    int note_harvest;           /* caller counts an unknown recipient of rcpt.domain */
    int note_known;             /* caller records network as known to rcpt.domain */
    int ndr_match;              /* index of the NDR entry that decided, BS_NDR_DEFAULT
                                   (ndr_default decided) or BS_NDR_NONE */
    bs_ndr_rule ndr_rule;
    int mode;     /* enum bs_mode of this decision (see the rules above) */
    int mode_src; /* enum bs_mode_src */
    int mode_bad; /* bit 0: the domain's mode field, bit 1: "*" held a value
                     that is no mode (ignored; the caller warns) */
} bs_decision;

int bs_decide_begin(bs_decision *d, const bs_config *cfg, const bs_proto_parser *req, bs_lookup *q);
/* q may be NULL when f->exempt and the directory facts (f->dir_known) are
 * already known (then no second lookup); without dir_known the unknown
 * recipient is then judged as if the directory were sound */
int bs_decide_facts(bs_decision *d, const bs_config *cfg, const bs_facts *f, bs_lookup *q);
/* result: 1 within the budget, 0 over it, -1 store error */
int bs_decide_taken(bs_decision *d, const bs_config *cfg, int result);
/* result: enum bs_grey_result, or < 0 for a store error (the fallback);
 * q gets the directory lookup when an unknown recipient needs it */
int bs_decide_harvest(bs_decision *d, const bs_config *cfg, int result, bs_lookup *q);
void bs_decide_fallback(bs_decision *d, const bs_config *cfg, int why);

/* bs_decide_reply - "action=...\n\n" into out (BS_REPLY_MAX); returns length.
 * The text is printable ASCII and at most 512 bytes. */
size_t bs_decide_reply(const bs_decision *d, const bs_config *cfg, char *out);

/* bs_decide_log_line - the Postfix-shaped log line (no trailing newline), or
 * length 0 when the verdict is a plain DUNNO that is not logged at info. */
size_t bs_decide_log_line(const bs_decision *d, const bs_config *cfg, char *out, size_t outsz);

/* The request's strings escaped for printing (bs_escape). */
typedef struct bs_decision_text {
    char queue_id[32];
    char client_name[128];
    char client_addr[64];
    char helo[128];
    char proto[16];
    char from[BS_LOG_FIELD_MAX];
    char to[BS_LOG_FIELD_MAX];
} bs_decision_text;

/* bs_decide_text - escape d's request strings into t (done only when a line
 * is printed: most answers are a plain DUNNO that prints nothing) */
void bs_decide_text(const bs_decision *d, bs_decision_text *t);

/* bs_decide_mode - the mode (enum bs_mode) the rules above give a recipient
 * with facts f (protected_domain and the mode fields); *src: enum
 * bs_mode_src; *bad: the mode_bad bits. Used by bs_decide_facts and by
 * backstopctl (domain mode, domain list, stats --domain). */
int bs_decide_mode(const bs_config *cfg, const bs_facts *f, int *src, int *bad);

/* bs_decide_would_reject - 1 when the verdict is a refusal that report mode
 * (or an NDR entry's "report") turned into a WARN: the caller counts it
 * for d->rcpt.domain */
int bs_decide_would_reject(const bs_decision *d, const bs_config *cfg);

/* bs_decide_mode_src - where a mode came from, as logged and as
 * backstopctl's JSON says: "own" (the domain's field), "*", "config" */
const char *bs_decide_mode_src(int src);

/* bs_decide_ndr_field - NDR candidate i (< d->nndr): "example.org",
 * ".org", "*" */
const char *bs_decide_ndr_field(const bs_decision *d, unsigned i);
/* bs_decide_ndr_match - the entry that decided, "ndr_default", or NULL */
const char *bs_decide_ndr_match(const bs_decision *d);

/* Names for stats and logs: "unknown_user", "reject", ... */
const char *bs_why_name(int why);
const char *bs_action_name(int action);
int bs_why_action(int why);

#endif
