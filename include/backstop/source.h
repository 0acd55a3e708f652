/*
 * source.h - directory sources: where `backstopctl sync` reads recipients
 *
 * A source is one "[source NAME]" section of backstop.ini. Each type has a
 * reader that pulls every address the source holds and hands them, one at a
 * time, to an emit callback; the sync engine (sync.c) canonicalises them,
 * keeps those of the source's domains, and writes Redis. Readers never touch
 * Redis and never decide policy.
 *
 * Reader contract (every type):
 *   int bs_source_<type>_read(const bs_source *src, bs_source_emit emit,
 *                             void *arg, char *err, size_t errsz);
 *   - returns 0 when the WHOLE source was read (every page, every map, the
 *     command exited 0 within its timeout), -1 otherwise with a one-line
 *     reason in err (bind failure, timeout, partial read, size limit, exit
 *     status ...). After -1 the caller discards everything emitted: a source
 *     that fails writes nothing.
 *   - emits raw addresses as found ("alice@Corp.Example", "@corp.example"
 *     for a catch-all); the engine lowercases, converts the domain to its
 *     canonical form and rejects what is not an address (counted as bad).
 *     Type prefixes ("smtp:", "SMTP:") are stripped by the reader; other
 *     address types (X500:, SIP:, x400: ...) are not emitted.
 *   - emit returns 0 to go on, -1 to stop reading (the reader then returns
 *     -1 with err as the emit callback left it).
 *   - honours src->timeout_ms for the whole read.
 *   - progress (entries read so far) may be reported through src->progress.
 *
 * Ownership: a bs_source is a plain value with fixed-size fields inside
 * bs_config (config.h), like the rest of the configuration.
 */
#ifndef BACKSTOP_SOURCE_H
#define BACKSTOP_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#define BS_SRC_NAME_MAX 64
#define BS_SRC_TEXT_MAX 192 /* a value fits a 197-character ini line */
#define BS_SRC_MAX_URIS 4
#define BS_SRC_MAX_ATTRS 8
#define BS_SRC_MAX_DOMAINS 32
#define BS_SRC_MAX_MAPS 8

enum bs_source_type {
    BS_SRC_LDAP = 1,    /* LDAP / Active Directory */
    BS_SRC_POSTFIX = 2, /* Postfix lookup tables, listed with postmap -s */
    BS_SRC_FILE = 3,    /* one address per line */
    BS_SRC_COMMAND = 4, /* a program whose stdout is such a list */
};

typedef struct bs_source {
    char name[BS_SRC_NAME_MAX];                        /* [source NAME] */
    int type;                                          /* enum bs_source_type */
    char domains[BS_SRC_MAX_DOMAINS][BS_SRC_TEXT_MAX]; /* canonical; only these are written */
    size_t ndomains;
    uint64_t timeout_ms; /* whole read; default 30s */

    /* ldap */
    char uris[BS_SRC_MAX_URIS][BS_SRC_TEXT_MAX]; /* tried in order */
    size_t nuris;
    int start_tls;                            /* yes|no, default no */
    char tls_ca_file[BS_SRC_TEXT_MAX];        /* "" = system CAs */
    char bind_dn[BS_SRC_TEXT_MAX];            /* "" = anonymous */
    char bind_password_file[BS_SRC_TEXT_MAX]; /* the secret never sits in the ini */
    char base[BS_SRC_TEXT_MAX];
    char filter[BS_SRC_TEXT_MAX];                       /* default (objectClass=*) */
    char attributes[BS_SRC_MAX_ATTRS][BS_SRC_TEXT_MAX]; /* default mail */
    size_t nattributes;
    unsigned page_size; /* paged-results page, default 500 (AD caps at 1000) */

    /* postfix */
    char maps[BS_SRC_MAX_MAPS][BS_SRC_TEXT_MAX]; /* "hash:/etc/postfix/relay_recipients" */
    size_t nmaps;
    char maps_parameter[BS_SRC_TEXT_MAX];   /* e.g. relay_recipient_maps: postconf -h */
    char config_directory[BS_SRC_TEXT_MAX]; /* postconf/postmap -c DIR; "" = Postfix's default */

    /* file */
    char path[BS_SRC_TEXT_MAX];

    /* command */
    char command[BS_SRC_TEXT_MAX]; /* run with /bin/sh -c */

    /* Not configuration: set by the sync engine on its copy for one read.
     * A reader may call progress(progress_arg, entries read so far) now and
     * then; NULL = nobody is watching. */
    void (*progress)(void *arg, size_t entries);
    void *progress_arg;
} bs_source;

/* Called once per address found; len bytes at addr (not NUL-terminated).
 * Returns 0 to continue, -1 to stop the read. */
typedef int (*bs_source_emit)(void *arg, const char *addr, size_t len);

int bs_source_ldap_read(const bs_source *src, bs_source_emit emit, void *arg, char *err,
                        size_t errsz);
int bs_source_postfix_read(const bs_source *src, bs_source_emit emit, void *arg, char *err,
                           size_t errsz);
int bs_source_file_read(const bs_source *src, bs_source_emit emit, void *arg, char *err,
                        size_t errsz);
int bs_source_command_read(const bs_source *src, bs_source_emit emit, void *arg, char *err,
                           size_t errsz);

#endif
