/*
 * sync.h - the directory sync engine behind "backstopctl sync"
 *
 * The engine reads sources (source.h) into per-domain sets of canonical
 * local parts, compares each domain's set with the one Redis holds, and
 * decides what may be written (guards). It does no I/O of its own besides
 * calling the readers: ctl_sync.c reads Redis, writes, and prints. So the
 * whole decision is unit tested against fake readers (tests/unit/test_sync.c).
 *
 *   bs_sync_init      an empty run
 *   bs_sync_read      one source (all or nothing), merged into its domains
 *   bs_sync_plan      one domain against the members Redis holds
 *   bs_sync_record    the backstop:sync HASH value of a domain (bs_sync_count)
 *   bs_sync_free      everything
 *
 * Canonical forms: a local part as "backstopctl import" stores it (addr.h:
 * lowercased, no control characters, 1..BS_LOCAL_MAX bytes), "*" for a
 * catch-all ("@domain"); a domain in the daemon's normal form.
 *
 * Ownership: a bs_sync owns its domains and their strings; the added and
 * removed lists point into want (added) and into the caller's have array
 * (removed), so have must outlive the plan's use.
 */
#ifndef BACKSTOP_SYNC_H
#define BACKSTOP_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "backstop/addr.h"
#include "backstop/config.h"
#include "backstop/keys.h"
#include "backstop/source.h"

/* The keys are keys.h's: BS_KEY_SYNC (field <domain> = bs_sync_record(),
 * field <domain>BS_SYNC_OK_FIELD = the last successful sync's time) and
 * BS_KEY_SYNC_TMP (the set being built, with this TTL): */
#define BS_SYNC_TMP_TTL_MS "3600000" /* a killed sync leaves nothing for long */

#define BS_SYNC_SOURCES_MAX 128 /* "relay,hr" in a record */
#define BS_SYNC_WHY_MAX 256
#define BS_SYNC_SHOW_BAD 5 /* bad entries quoted per source */

enum bs_sync_outcome {
    BS_SYNC_WRITE = 0,      /* changed: to be written ("ok" once written) */
    BS_SYNC_UNCHANGED,      /* same set: only the record's time is refreshed */
    BS_SYNC_SHRINK_REFUSED, /* would lose more than max_shrink: left alone */
    BS_SYNC_EMPTY_REFUSED,  /* would become empty: left alone */
    BS_SYNC_SOURCE_FAILED,  /* a source of the domain failed: left alone */
    BS_SYNC_WRITE_FAILED,   /* Redis refused (set by the caller) */
    BS_SYNC_OK,             /* written (set by the caller) */
};

typedef struct bs_sync_domain {
    char name[BS_DOMAIN_MAX + 1];
    char sources[BS_SYNC_SOURCES_MAX]; /* names of the sources read, comma-separated */
    char why[BS_SYNC_WHY_MAX];         /* source-failed: the first reason */
    char empty_source[64];             /* a source that gave no entry at all ("" none) */
    char **want;                       /* owned: sorted, unique after bs_sync_plan */
    size_t nwant, cap;
    int failed;
    /* bs_sync_plan: */
    size_t nhave;
    const char **added; /* owned array; strings in want */
    size_t nadded;
    const char **removed; /* owned array; strings in the caller's have */
    size_t nremoved;
    size_t kept;
    int outcome; /* enum bs_sync_outcome */
} bs_sync_domain;

typedef struct bs_sync {
    bs_sync_domain *dom; /* owned; in order of first appearance */
    size_t ndom;
    /* counters of the last bs_sync_read */
    size_t entries, bad, foreign;
    char bad_shown[BS_SYNC_SHOW_BAD][128]; /* the first bad entries, escaped */
    /* internal: the source being read */
    const bs_source *cur;
    size_t *stage_dom; /* per staged entry: index in dom */
    char **stage;
    size_t nstage, stage_cap;
    size_t cur_dom[BS_SRC_MAX_DOMAINS]; /* src->domains[i] -> index in dom */
    int oom;
} bs_sync;

typedef int (*bs_sync_reader)(const bs_source *src, bs_source_emit emit, void *arg, char *err,
                              size_t errsz);

void bs_sync_init(bs_sync *s);
void bs_sync_free(bs_sync *s);

/* bs_sync_reader_for - the reader of a source type, or NULL with *why
 * (e.g. ldap in a build without libldap) */
bs_sync_reader bs_sync_reader_for(int type, const char **why);

/* bs_sync_domain_get - the entry of a canonical domain, created (empty) if
 * new; NULL when out of memory */
bs_sync_domain *bs_sync_domain_get(bs_sync *s, const char *domain);

/*
 * bs_sync_read - read src with reader. Each domain of src gets an entry.
 * Returns 0: every address of src's domains is added to them (bad entries
 * and addresses of other domains are counted, not fatal). -1: the source
 * failed (err says why): nothing of it is kept, and its domains are marked
 * failed (a failed domain is never written, whatever its other sources
 * gave). Out of memory is a failure too.
 */
int bs_sync_read(bs_sync *s, const bs_source *src, bs_sync_reader reader, char *err, size_t errsz);

/* bs_sync_fail - src cannot be read at all (why): its domains get entries
 * marked failed, as after a failed bs_sync_read. Returns -1. */
int bs_sync_fail(bs_sync *s, const bs_source *src, const char *why);

/*
 * bs_sync_plan - compare d (sorted and de-duplicated first) with the nhave
 * members in have (sorted here, in place) and decide: source-failed, then
 * empty-refused (nothing wanted, or one of its sources gave no entry at
 * all while users would be removed: a source of several that came back
 * empty would otherwise take its users away), shrink-refused (would
 * remove more than max_shrink percent of the members Redis holds, however
 * many are added: a source that swapped its users for others loses them
 * all), unchanged, or write. force lifts the
 * two refusals. Returns 0, or -1 when out of memory.
 */
int bs_sync_plan(bs_sync_domain *d, char **have, size_t nhave, unsigned max_shrink, int force);

/* bs_sync_outcome_name - "ok", "unchanged", "shrink-refused", ... */
const char *bs_sync_outcome_name(int outcome);

/* bs_sync_record - the value stored in HASH <prefix>sync for d:
 * "time=UNIX;source=a,b;count=N;added=N;removed=N;outcome=NAME", count the
 * members the domain holds after this run. Returns snprintf's length. */
int bs_sync_record(const bs_sync_domain *d, uint64_t unix_time, char *out, size_t outsz);

/* bs_sync_count - the members d holds after this run: the new set once
 * written (BS_SYNC_OK), else what Redis held */
size_t bs_sync_count(const bs_sync_domain *d);

#endif
