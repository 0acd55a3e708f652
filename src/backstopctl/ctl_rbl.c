/*
 * ctl_rbl.c - rbl-check: look client addresses up in DNS blocklists
 *
 * PROVIDES
 *   bs_ctl_rbl_name   "<reversed ip>.<zone>": IPv4 per octet
 *                     ("2.0.0.127.zen.example"), IPv6 per nibble (32
 *                     labels, RFC 5782); IPv4-mapped IPv6 as IPv4.
 *                     -1 when the name is over 253 characters (255
 *                     octets on the wire) or has a label over 63: no
 *                     query can carry it.
 *   bs_ctl_rbl_check  for each IP and zone, an A query with res_nquery:
 *                       listed (127.0.0.x[, ...])   an answer in 127/8
 *                       not listed                  NXDOMAIN or no A record
 *                       lookup failed (reason)      no answer, SERVFAIL,
 *                                                   REFUSED (glibc does not
 *                                                   tell these apart), an answer
 *                                                   outside 127/8, or
 *                                                   127.255.255.x (the
 *                                                   list's own error codes:
 *                                                   Spamhaus uses them for
 *                                                   queries via public
 *                                                   resolvers), or a
 *                                                   name too long for DNS
 *                                                   (nothing is sent)
 *                     One answer that is no listing makes the lookup
 *                     failed, wherever it is among the answers; "answers"
 *                     (--json) lists the 127.0.0.x addresses only when
 *                     listed, else it is [].
 *                     Exit 1 when listed anywhere (with --strict also when
 *                     a lookup failed), 0 otherwise, 2 for bad operands.
 *                     --json: {"results": [...], "listed", "failed"}.
 *
 * RESOLVER
 *   res_ninit (resolv.conf), with --timeout per try and one retry.
 *   --nameserver IP[:PORT] replaces the servers with one IPv4 server
 *   (nsaddr_list[0], port included; glibc copies it to its private list on
 *   the next query). Zones come from --zone (repeatable) or the built-in
 *   list; the config file is not read.
 *
 * NEVER
 *   Sends anything but A queries for the names above.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>

#include "backstop/cidr.h"
#include "ctl.h"

#define BS_RBL_NAME_MAX 253 /* characters: 255 octets on the wire */
#define BS_RBL_LABEL_MAX 63

static const char *const default_zones[] = {"zen.spamhaus.org", "bl.spamcop.net",
                                            "b.barracudacentral.org", "dnsbl.sorbs.net"};

enum rbl_result { RBL_CLEAN = 0, RBL_LISTED, RBL_FAILED };
/* --json "status" of each enum rbl_result */
static const char *const result_names[] = {
    [RBL_CLEAN] = "not_listed", [RBL_LISTED] = "listed", [RBL_FAILED] = "failed"};

/* dns_name_ok - a name res_nquery can send: labels of 1..63 octets, at
 * most BS_RBL_NAME_MAX characters (RFC 1035 2.3.4) */
static int dns_name_ok(const char *name, size_t len)
{
    size_t i, label = 0;

    if (len == 0 || len > BS_RBL_NAME_MAX)
        return 0;
    for (i = 0; i < len; i++) {
        if (name[i] != '.')
            label++;
        else if (label == 0)
            return 0;
        else
            label = 0;
        if (label > BS_RBL_LABEL_MAX)
            return 0;
    }
    return label > 0;
}

/* bs_ctl_rbl_name - RFC 5782 query name */
int bs_ctl_rbl_name(const char *ip, const char *zone, char *out, size_t outsz)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const char hex[] = "0123456789abcdef";
    uint8_t a[16];
    size_t n = 0;
    int i, w;

    if (bs_ip_parse(ip, strlen(ip), a) < 0)
        return -1;
    if (memcmp(a, mapped, 12) == 0) {
        w = snprintf(out, outsz, "%u.%u.%u.%u.%s", a[15], a[14], a[13], a[12], zone);
    } else {
        if (outsz < 64 + strlen(zone) + 1)
            return -1;
        for (i = 15; i >= 0; i--) {
            out[n++] = hex[a[i] & 15];
            out[n++] = '.';
            out[n++] = hex[a[i] >> 4];
            out[n++] = '.';
        }
        w = snprintf(out + n, outsz - n, "%s", zone);
    }
    if (w < 0 || n + (size_t)w >= outsz || !dns_name_ok(out, n + (size_t)w))
        return -1;
    return (int)n + w;
}

/* set_nameserver - "IP[:PORT]" (IPv4) as the only server; 0 or -1 */
static int set_nameserver(res_state res, const char *arg)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strchr(arg, ':');
    size_t hlen = colon ? (size_t)(colon - arg) : strlen(arg);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(53)};
    char *end;

    if (hlen >= sizeof(host) || (colon && strchr(colon + 1, ':')))
        return -1;
    memcpy(host, arg, hlen);
    host[hlen] = 0;
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
        return -1;
    if (colon) {
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (!colon[1] || *end || port == 0 || port > 65535)
            return -1;
        sin.sin_port = htons((uint16_t)port);
    }
    res->nsaddr_list[0] = sin;
    res->nscount = 1;
    return 0;
}

/* a_record - the address of answer i when it is an A record, else NULL
 * (it points into msg's packet) */
static const unsigned char *a_record(ns_msg *msg, int i)
{
    ns_rr rr;

    if (ns_parserr(msg, ns_s_an, i, &rr) < 0 || ns_rr_type(rr) != ns_t_a || ns_rr_rdlen(rr) != 4)
        return NULL;
    return ns_rr_rdata(rr);
}

/* not_listing - 1 when an A answer is no listing: outside 127/8, or
 * 127.255.255.x (the list's own error codes) */
static int not_listing(const unsigned char *a)
{
    return a[0] != 127 || (a[1] == 255 && a[2] == 255);
}

/* lookup - one query; the result and its text. The verdict is taken over
 * every answer first: one that is no listing makes the lookup failed,
 * whatever its place. Only when listed is each answer appended to answers
 * (a JSON array, or NULL), which is left empty otherwise. */
static int lookup(res_state res, const char *name, char *text, size_t textsz, json_t *answers)
{
    unsigned char ans[NS_PACKETSZ * 4];
    const unsigned char *a;
    char addr[INET_ADDRSTRLEN];
    size_t n = 0;
    int len, i, listed = 0;
    ns_msg msg;

    errno = 0;
    len = res_nquery(res, name, ns_c_in, ns_t_a, ans, sizeof(ans));
    if (len < 0) {
        switch (res->res_h_errno) {
        case HOST_NOT_FOUND:
        case NO_DATA:
            snprintf(text, textsz, "not listed");
            return RBL_CLEAN;
        case TRY_AGAIN: /* glibc: every server timed out, failed or refused */
            snprintf(text, textsz, "lookup failed (%s)",
                     errno == ECONNREFUSED ? "no DNS server at the address"
                                           : "no usable answer: timeout, SERVFAIL or REFUSED");
            return RBL_FAILED;
        case NO_RECOVERY:
            snprintf(text, textsz, "lookup failed (refused by the server)");
            return RBL_FAILED;
        default:
            snprintf(text, textsz, "lookup failed (%s)", hstrerror(res->res_h_errno));
            return RBL_FAILED;
        }
    }
    if (ns_initparse(ans, len, &msg) < 0) {
        snprintf(text, textsz, "lookup failed (malformed answer)");
        return RBL_FAILED;
    }
    for (i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
        if (!(a = a_record(&msg, i)) || !not_listing(a))
            continue;
        inet_ntop(AF_INET, a, addr, sizeof(addr));
        snprintf(text, textsz, "lookup failed (%s: %s)", addr,
                 a[0] == 127 ? "an error code of the list, e.g. a query through a public "
                               "resolver"
                             : "not a blocklist answer");
        return RBL_FAILED;
    }
    n = (size_t)snprintf(text, textsz, "listed (");
    for (i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
        if (!(a = a_record(&msg, i)))
            continue;
        inet_ntop(AF_INET, a, addr, sizeof(addr));
        if (n < textsz)
            n += (size_t)snprintf(text + n, textsz - n, "%s%s", listed ? ", " : "", addr);
        json_array_append_new(answers, json_string(addr));
        listed++;
    }
    if (!listed) {
        snprintf(text, textsz, "not listed");
        return RBL_CLEAN;
    }
    if (n < textsz)
        snprintf(text + n, textsz - n, ")");
    return RBL_LISTED;
}

/* bs_ctl_rbl_check - every IP against every zone, one line each */
int bs_ctl_rbl_check(bs_ctl *c, int argc, char **argv)
{
    const char *const *zones = c->nzones ? c->zones : default_zones;
    size_t nz = c->nzones ? c->nzones : sizeof(default_zones) / sizeof(default_zones[0]);
    char name[NS_MAXDNAME], text[256], zone[BS_DOMAIN_MAX + 1];
    struct __res_state res;
    size_t i, wi = 0, wz = 0;
    int a, listed = 0, failed = 0, rc;
    json_t *results = NULL;
    uint8_t ip[16];

    for (a = 0; a < argc; a++) {
        if (bs_ip_parse(argv[a], strlen(argv[a]), ip) < 0) {
            bs_ctl_err("%s: not an IP address", argv[a]);
            return BS_CTL_USAGE;
        }
        wi = strlen(argv[a]) > wi ? strlen(argv[a]) : wi;
    }
    for (i = 0; i < nz; i++) {
        if (bs_domain_norm(zones[i], strlen(zones[i]), zone) < 0) {
            bs_ctl_err("--zone %s: not a DNS zone", zones[i]);
            return BS_CTL_USAGE;
        }
        wz = strlen(zones[i]) > wz ? strlen(zones[i]) : wz;
    }
    memset(&res, 0, sizeof(res));
    if (res_ninit(&res) < 0) {
        bs_ctl_err("cannot initialise the resolver");
        return BS_CTL_FAIL;
    }
    if (c->opt[BS_OPT_NAMESERVER] && set_nameserver(&res, c->opt[BS_OPT_NAMESERVER]) < 0) {
        bs_ctl_err("--nameserver %s: not IPV4[:PORT]", c->opt[BS_OPT_NAMESERVER]);
        res_nclose(&res);
        return BS_CTL_USAGE;
    }
    if (c->opt[BS_OPT_JSON])
        results = json_array();
    res.retrans = (int)((c->timeout_ms + 999) / 1000);
    res.retry = 2;
    for (a = 0; a < argc; a++) {
        for (i = 0; i < nz; i++) {
            json_t *answers = results ? json_array() : NULL;
            int r;
            bs_domain_norm(zones[i], strlen(zones[i]), zone);
            if (bs_ctl_rbl_name(argv[a], zone, name, sizeof(name)) < 0) {
                snprintf(text, sizeof(text), "lookup failed (name too long)");
                r = RBL_FAILED;
            } else {
                r = lookup(&res, name, text, sizeof(text), answers);
            }
            listed |= r == RBL_LISTED;
            failed |= r == RBL_FAILED;
            if (results)
                json_array_append_new(results, json_pack("{s:s, s:s, s:s, s:o, s:s}", "ip", argv[a],
                                                         "zone", zone, "status", result_names[r],
                                                         "answers", answers, "detail", text));
            else
                printf("%-*s  %-*s  %s\n", (int)wi, argv[a], (int)wz, zones[i], text);
        }
    }
    res_nclose(&res);
    rc = listed || (failed && c->opt[BS_OPT_STRICT]) ? BS_CTL_FAIL : BS_CTL_OK;
    if (results)
        rc = bs_ctl_json_print(
            json_pack("{s:o, s:b, s:b}", "results", results, "listed", listed, "failed", failed),
            rc);
    return rc;
}
