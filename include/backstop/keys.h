/*
 * keys.h - the Redis key schema: every key backstopd and backstopctl use,
 * named once
 *
 * A key is [redis] prefix + name (+ the argument for per-domain and
 * per-client keys), e.g. "backstop:rcpt:example.com". This schema is the
 * interface between backstopd, backstopctl and admins' own scripts; the
 * key table in README.md says the same (test_docs checks that it does).
 *
 * Use the BS_KEY_* names, never a literal, when building a key.
 */
#ifndef BACKSTOP_KEYS_H
#define BACKSTOP_KEYS_H

#define BS_KEY_DOMAINS "domains"         /* protected domains */
#define BS_KEY_RCPT "rcpt:"              /* + <domain>: its valid local parts */
#define BS_KEY_NDR "ndr"                 /* NDR policy per remote domain */
#define BS_KEY_MODE "mode"               /* per protected domain or "*": enforce, report, off */
#define BS_KEY_BLOCK "block:"            /* + <client>: blocked, value = reason */
#define BS_KEY_EXEMPT "exempt"           /* clients never rate-tracked */
#define BS_KEY_STATS "stats"             /* cluster-wide counters */
#define BS_KEY_WOULDREJECT "wouldreject" /* per recipient domain: refusals report mode let pass */
#define BS_KEY_RATE "rate:"              /* + <client>: recent invalid recipients */
#define BS_KEY_NDRCOUNT "ndrcount:"      /* + <domain>: NDR budget use */
#define BS_KEY_IMPORT "import:"          /* + <domain>:<pid>: backstopctl import staging */
#define BS_KEY_SYNC "sync"               /* per-domain sync record (backstopctl sync) */
#define BS_SYNC_OK_FIELD ":ok"      /* <domain> + this: Unix seconds of its last successful sync */
#define BS_KEY_SYNC_TMP "tmp:sync:" /* + <domain>:<pid>: the set backstopctl sync builds */
#define BS_KEY_HARVEST "harvest:"   /* + <domain>: recent unknown recipients of a domain */
#define BS_KEY_ATTACK "attack"      /* domains under a harvest attack */
#define BS_KEY_KNOWN "known:"       /* + <domain>: client networks that delivered there */
#define BS_KEY_GREY "grey:"         /* + <domain>:<network>:<local>: greylisting first sight */

/*
 * The schema as a table, in README order: X(name, argument or "", Redis
 * type, with a TTL, who writes it). An argument is the part after the
 * name: <domain> or <client> (an IPv4 address, or an IPv6 network as
 * "2001:db8:1:2::/64" at [ratelimit] ipv6_prefix); a <network> is
 * bs_client_network()'s: "192.0.2.0/24", or the IPv6 <client>).
 */
#define BS_KEY_TABLE(X)                                                                            \
    X(BS_KEY_DOMAINS, "", "SET", 0, "admin")                                                       \
    X(BS_KEY_RCPT, "<domain>", "SET", 0, "admin")                                                  \
    X(BS_KEY_NDR, "", "HASH", 0, "admin")                                                          \
    X(BS_KEY_MODE, "", "HASH", 0, "admin")                                                         \
    X(BS_KEY_BLOCK, "<client>", "STRING", 1, "backstopd, admin")                                   \
    X(BS_KEY_EXEMPT, "", "SET", 0, "admin")                                                        \
    X(BS_KEY_STATS, "", "HASH", 0, "backstopd")                                                    \
    X(BS_KEY_WOULDREJECT, "", "HASH", 0, "backstopd")                                              \
    X(BS_KEY_RATE, "<client>", "ZSET", 1, "backstopd")                                             \
    X(BS_KEY_NDRCOUNT, "<domain>", "STRING", 1, "backstopd")                                       \
    X(BS_KEY_IMPORT, "<domain>:<pid>", "SET", 1, "backstopctl")                                    \
    X(BS_KEY_SYNC, "", "HASH", 0, "backstopctl")                                                   \
    X(BS_KEY_SYNC_TMP, "<domain>:<pid>", "SET", 1, "backstopctl")                                  \
    X(BS_KEY_HARVEST, "<domain>", "ZSET", 1, "backstopd")                                          \
    X(BS_KEY_ATTACK, "", "HASH", 0, "backstopd, admin")                                            \
    X(BS_KEY_KNOWN, "<domain>", "ZSET", 1, "backstopd")                                            \
    X(BS_KEY_GREY, "<domain>:<network>:<local>", "STRING", 1, "backstopd")

#endif
