/*
 * ldap_dump.c - test driver: run bs_source_ldap_read on a source given as
 * options and print every address it emits, one a line, on stdout
 *
 *   ldap_dump --uri URI [--uri URI ...] --base DN [--filter F]
 *             [--attribute A ...] [--bind-dn DN --bind-password-file FILE]
 *             [--start-tls] [--tls-ca-file FILE] [--page-size N]
 *             [--timeout-ms N] [--stop-after N] [--count] [--verbose]
 *             [--progress]
 *
 * Exit 0: the read returned 0 (with --count, only the number of addresses
 * is printed). Exit 1: it returned -1; "ldap_dump: ERR" on stderr (what was
 * printed before is what the engine would have discarded). Exit 2: usage.
 * --stop-after N makes the emit callback return -1 at the Nth address;
 * --progress prints "progress ENTRIES" on stderr at each progress call.
 */
#include "backstop/log.h"
#include "backstop/source.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dump {
    unsigned long long n, stop_after;
    int count_only;
    char *err;
    size_t errsz;
};

static void progress(void *arg, size_t entries)
{
    fprintf(stderr, "progress %zu\n", entries);
}

static int emit(void *arg, const char *addr, size_t len)
{
    struct dump *d = arg;
    if (d->stop_after && d->n >= d->stop_after) {
        snprintf(d->err, d->errsz, "stopped by the caller after %llu addresses", d->n);
        return -1;
    }
    d->n++;
    if (!d->count_only) {
        fwrite(addr, 1, len, stdout);
        putchar('\n');
    }
    return 0;
}

/* copy - an option value into a fixed-size field; exits 2 when too long */
static void copy(char *dst, size_t size, const char *val, const char *opt)
{
    if (strlen(val) >= size) {
        fprintf(stderr, "ldap_dump: --%s: longer than %zu characters\n", opt, size - 1);
        exit(2);
    }
    memcpy(dst, val, strlen(val) + 1);
}

int main(int argc, char **argv)
{
    static bs_source src; /* large: not on the stack */
    static const struct option opts[] = {
        {"uri", required_argument, NULL, 'u'},
        {"base", required_argument, NULL, 'b'},
        {"filter", required_argument, NULL, 'f'},
        {"attribute", required_argument, NULL, 'a'},
        {"bind-dn", required_argument, NULL, 'D'},
        {"bind-password-file", required_argument, NULL, 'y'},
        {"start-tls", no_argument, NULL, 'Z'},
        {"tls-ca-file", required_argument, NULL, 'C'},
        {"page-size", required_argument, NULL, 'p'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"stop-after", required_argument, NULL, 's'},
        {"count", no_argument, NULL, 'c'},
        {"verbose", no_argument, NULL, 'v'},
        {"progress", no_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    char err[512] = "";
    struct dump d = {.err = err, .errsz = sizeof err};
    snprintf(src.name, sizeof src.name, "ldap_dump");
    src.type = BS_SRC_LDAP;
    src.timeout_ms = 30000;
    src.page_size = 500;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *name = NULL;
        for (size_t i = 0; opts[i].name; i++)
            if (opts[i].val == ch)
                name = opts[i].name;
        switch (ch) {
        case 'u':
            if (src.nuris == BS_SRC_MAX_URIS)
                return fprintf(stderr, "ldap_dump: too many --uri\n"), 2;
            copy(src.uris[src.nuris++], BS_SRC_TEXT_MAX, optarg, name);
            break;
        case 'a':
            if (src.nattributes == BS_SRC_MAX_ATTRS)
                return fprintf(stderr, "ldap_dump: too many --attribute\n"), 2;
            copy(src.attributes[src.nattributes++], BS_SRC_TEXT_MAX, optarg, name);
            break;
        case 'b':
            copy(src.base, sizeof src.base, optarg, name);
            break;
        case 'f':
            copy(src.filter, sizeof src.filter, optarg, name);
            break;
        case 'D':
            copy(src.bind_dn, sizeof src.bind_dn, optarg, name);
            break;
        case 'y':
            copy(src.bind_password_file, sizeof src.bind_password_file, optarg, name);
            break;
        case 'Z':
            src.start_tls = 1;
            break;
        case 'C':
            copy(src.tls_ca_file, sizeof src.tls_ca_file, optarg, name);
            break;
        case 'p':
            src.page_size = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 't':
            src.timeout_ms = strtoull(optarg, NULL, 10);
            break;
        case 's':
            d.stop_after = strtoull(optarg, NULL, 10);
            break;
        case 'c':
            d.count_only = 1;
            break;
        case 'v':
            bs_log_level = BS_LOG_DEBUG;
            break;
        case 'P':
            src.progress = progress;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc)
        return fprintf(stderr, "ldap_dump: unexpected operand %s\n", argv[optind]), 2;
    int rc = bs_source_ldap_read(&src, emit, &d, err, sizeof err);
    if (d.count_only)
        printf("%llu\n", d.n);
    fflush(stdout);
    if (rc < 0) {
        fprintf(stderr, "ldap_dump: %s\n", err);
        return 1;
    }
    return 0;
}
