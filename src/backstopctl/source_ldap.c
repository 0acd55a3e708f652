/*
 * source_ldap.c - the LDAP / Active Directory directory source (source.h)
 *
 * PROVIDES
 *   bs_source_ldap_read  bind, search src->base with src->filter for
 *                        src->attributes, page by page, and emit every
 *                        address value. 0 when every page of the search was
 *                        read and the server said success; -1 otherwise
 *                        with a one-line reason in err (or err as the emit
 *                        callback left it when it stopped the read).
 *
 * HOW
 *   The synchronous OpenLDAP client API (backstopctl is a CLI, not the event
 *   loop). The URIs (ldap://, ldaps://, ldapi://) are tried in order: one
 *   that cannot be connected to, whose TLS fails (StartTLS or ldaps://) or
 *   that does not answer the bind is skipped, and the reason of each is kept
 *   for the error line. A bind the server answers with an error (wrong
 *   password, ...) stops the read at once: retrying the same secret on the
 *   other servers only locks the account sooner.
 *   - TLS: the certificate is always checked (TLS_REQCERT demand, set on
 *     the handle so ldap.conf and LDAPTLS_REQCERT cannot relax it), against
 *     tls_ca_file or the system CAs, host name included. start_tls = yes
 *     applies to ldap:// URIs; ldaps:// is TLS from the first byte; ldapi://
 *     is a local socket.
 *   - Bind: simple bind as bind_dn with the password read from
 *     bind_password_file (one trailing newline stripped; a file others can
 *     read or write is refused); the buffer is zeroed after the bind. An
 *     empty bind_dn binds anonymously. A password over a connection that is
 *     not encrypted is warned about.
 *   - Search: subtree, the paged-results control (RFC 2696, critical) with
 *     src->page_size entries a page (AD serves at most 1000; the config
 *     takes 1..100000); page_size 0, which only the test driver can give,
 *     sends no control, so a server size limit fails the read instead of
 *     truncating it. Results are taken one message at a time, so memory
 *     does not grow with the page or the directory. src->progress, when
 *     set, is called before each page with the entries read so far.
 *   - Values: "smtp:"/"SMTP:" (any case) is stripped; any other address
 *     type ("X500:", "SIP:", "x400:", "EUM:" ...: letters and digits before
 *     a ':' that comes before any '@') is skipped and counted; a value
 *     without a type (the mail attribute) is emitted as it is. A catch-all
 *     "smtp:@corp.example" is emitted as "@corp.example" (the engine maps it
 *     to "*").
 *   - Referrals are not chased (LDAP_OPT_REFERRALS off): the continuation
 *     references AD returns for DomainDnsZones, ForestDnsZones and
 *     Configuration are skipped and counted; a referral as the result (the
 *     base lives on another server) fails the read.
 *   - src->timeout_ms bounds the whole read: each connect gets at most
 *     BS_LDAP_CONNECT_MAX_MS of what is left (and a URI with another after
 *     it at most that for its connect, TLS and bind together, so a server
 *     that never answers leaves time for the next), each synchronous call and each
 *     wait for a result what is left, and the deadline is checked before each
 *     page is asked for. A Sockbuf layer under TLS (deadline_read) makes
 *     every read from the socket wait no longer than the deadline, because
 *     libldap's own TLS handshake has no working timeout. A server that stops
 *     answering fails the read within the timeout.
 *
 * NEVER
 *   Returns 0 for a partial read: a size or time limit, an admin limit, a
 *   page error, a referral, a lost connection or a timeout all return -1.
 *   Puts the password in err or a log line. Follows a referral.
 *
 * LIMITS AND BUGS
 *   AD range retrieval is NOT handled: an attribute with more values than the
 *   server's MaxValRange (1500) comes back as "proxyAddresses;range=0-1499"
 *   and the read fails with that attribute named, rather than reporting the
 *   first 1500 values as the whole. A user never has that many addresses;
 *   only groups' member lists do, and members are not addresses.
 *   A search that fails after the bind is not retried on the next URI.
 *   libldap's own copy of the password (the encoded bind request) is freed
 *   by libldap without being zeroed.
 */
#include "backstop/source.h"

#include "backstop/log.h"

#include <errno.h>
#include <fcntl.h>
#include <ldap.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BS_LDAP_PASSWORD_MAX 256     /* bytes in bind_password_file */
#define BS_LDAP_CONNECT_MAX_MS 10000 /* one URI's TCP + TLS connect, so a dead one leaves time */
#define BS_LDAP_TYPE_MAX 16          /* longest address type looked for before ':' */
#define BS_LDAP_WHY_MAX 160          /* one URI's failure in the error line */
/* deadline_read's place: above the socket (libldap pushes its TCP layer at
 * PROVIDER after the connect callbacks) and below TLS (TRANSPORT) */
#define BS_LDAP_SBIOD_LEVEL (LBER_SBIOD_LEVEL_PROVIDER + 1)
#define BS_LDAP_DEFAULT_TIMEOUT_MS 30000 /* timeout_ms 0 (a bs_source not from the config) */
#define BS_LDAP_DEFAULT_FILTER "(objectClass=*)"
#define BS_LDAP_DEFAULT_ATTR "mail"

/* One read. Lives on bs_source_ldap_read's stack; ld is unbound at the end. */
struct ldap_read {
    const bs_source *src;
    bs_source_emit emit;
    void *arg;
    char *err;
    size_t errsz;
    uint64_t deadline; /* CLOCK_MONOTONIC ms */
    LDAP *ld;
    const char *uri;           /* the server bound to */
    int stopped;               /* the emit callback stopped the read: err is its own */
    int connected;             /* the TCP (or unix) connect to the current URI worked */
    struct ldap_conncb conncb; /* socket_connected, on every connection of ld */
    /* counters, logged at the end */
    uint64_t entries, pages, values, emitted, other_types, references;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* left - what is left of the read's time in tv (capped at cap_ms when cap_ms
 * is not 0); 0 when it is over. */
static int left(const struct ldap_read *r, uint64_t cap_ms, struct timeval *tv)
{
    uint64_t now = now_ms();
    uint64_t ms = r->deadline > now ? r->deadline - now : 0;
    if (cap_ms && ms > cap_ms)
        ms = cap_ms;
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
    return ms > 0;
}

static int fail(struct ldap_read *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* fail - set err from fmt; returns -1 */
static int fail(struct ldap_read *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errsz, fmt, ap);
    va_end(ap);
    return -1;
}

/* ldap_why - "text (server diagnostic)" for rc on ld into buf; returns buf */
static const char *ldap_why(LDAP *ld, int rc, char *buf, size_t size)
{
    char *diag = NULL;
    if (ld)
        ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    if (diag && *diag)
        snprintf(buf, size, "%s (%s)", ldap_err2string(rc), diag);
    else
        snprintf(buf, size, "%s", ldap_err2string(rc));
    ldap_memfree(diag);
    return buf;
}

/* failed_why - why connecting, StartTLS or the bind failed: "timed out" when
 * the read's time is over (a read cut by deadline_read looks like a lost
 * connection to libldap); for a failed TLS handshake (tls), what to check,
 * since libldap's GnuTLS backend only says "(unknown error code)"; else
 * ldap_why. Returns buf. */
static const char *failed_why(const struct ldap_read *r, int rc, int tls, char *buf, size_t size)
{
    struct timeval tv;
    const char *ca = r->src->tls_ca_file;
    if (!left(r, 0, &tv))
        snprintf(buf, size, "timed out (timeout %llu ms)", (unsigned long long)r->src->timeout_ms);
    else if (tls && r->connected && (rc == LDAP_CONNECT_ERROR || rc == LDAP_SERVER_DOWN))
        snprintf(buf, size,
                 "%s: TLS failed (certificate not signed by %s%s, host name not in it, or no "
                 "TLS there)",
                 ldap_err2string(rc), *ca ? "tls_ca_file " : "a system CA", ca);
    else
        ldap_why(r->ld, rc, buf, size);
    return buf;
}

/* read_password - bind_password_file into buf (NUL-terminated, one trailing
 * "\n" or "\r\n" stripped); 0, or -1 with err set and buf zeroed. */
static int read_password(struct ldap_read *r, char *buf, size_t size, size_t *len)
{
    const char *path = r->src->bind_password_file;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail(r, "bind_password_file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(r, "bind_password_file %s: not a regular file", path);
    }
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
        close(fd);
        return fail(r, "bind_password_file %s: readable or writable by others (chmod o-rwx)", path);
    }
    size_t n = 0;
    ssize_t got;
    while (n < size && (got = read(fd, buf + n, size - n)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            explicit_bzero(buf, size);
            return fail(r, "bind_password_file %s: %s", path, strerror(e));
        }
        n += (size_t)got;
    }
    close(fd);
    if (n == size) {
        explicit_bzero(buf, size);
        return fail(r, "bind_password_file %s: longer than %d bytes", path,
                    BS_LDAP_PASSWORD_MAX - 1);
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    if (n == 0 || memchr(buf, '\0', n)) {
        /* An empty password is an "unauthenticated bind": many servers
         * accept it as anonymous, which would hide the mistake. */
        explicit_bzero(buf, size);
        return fail(r, "bind_password_file %s: %s", path,
                    n == 0 ? "empty password" : "NUL byte in the password");
    }
    *len = n;
    return 0;
}

/* value_address - where the address starts in an attribute value: 1 with
 * *off set ("smtp:x" -> 5, "x" -> 0), or 0 when the value is another address
 * type (X500:, SIP:, ...) and must not be emitted. */
static int value_address(const char *v, size_t len, size_t *off)
{
    size_t i = 0;
    while (i < len && i <= BS_LDAP_TYPE_MAX &&
           ((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
            (v[i] >= '0' && v[i] <= '9')))
        i++;
    *off = 0;
    if (i == 0 || i > BS_LDAP_TYPE_MAX || i == len || v[i] != ':')
        return 1; /* no type: a plain address ("alice@x", "@x", "a:b@x" is not typed) */
    if (i == 4 && strncasecmp(v, "smtp", 4) == 0) {
        *off = 5;
        return 1;
    }
    return 0;
}

/* range_cut - 1 when an attribute description returned by the server is one
 * slice of an AD range retrieval that is not the last ("x;range=0-1499"),
 * i.e. the entry has more values than were sent. */
static int range_cut(const char *name, size_t len)
{
    static const char opt[] = ";range=";
    for (size_t i = 0; i + sizeof opt - 1 <= len; i++) {
        if (strncasecmp(name + i, opt, sizeof opt - 1) != 0)
            continue;
        const char *dash = memchr(name + i, '-', len - i);
        const char *end = memchr(name + i + 1, ';', len - i - 1);
        if (!end)
            end = name + len;
        return !(dash && dash + 2 == end && dash[1] == '*');
    }
    return 0;
}

/* deadline_read - a Sockbuf I/O layer right above the socket: wait for data
 * no later than the read's deadline, then fail with ETIMEDOUT. libldap waits
 * for results with poll() and a timeout, but its TLS handshake (ldaps:// and
 * after StartTLS) does not: with a network timeout set it turns the socket
 * non-blocking and calls the handshake again and again without polling
 * (libldap 2.5 tls2.c, non-async), so a server that accepts and then stops
 * answering would spin it for ever. */
static ber_slen_t deadline_read(Sockbuf_IO_Desc *sbiod, void *buf, ber_len_t len)
{
    const struct ldap_read *r = sbiod->sbiod_pvt;
    ber_socket_t fd = -1;
    ber_sockbuf_ctrl(sbiod->sbiod_sb, LBER_SB_OPT_GET_FD, &fd);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int n;
    do {
        uint64_t now = now_ms();
        n = poll(&pfd, 1, r->deadline > now ? (int)(r->deadline - now) : 0);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    return LBER_SBIOD_READ_NEXT(sbiod, buf, len);
}

static int deadline_setup(Sockbuf_IO_Desc *sbiod, void *arg)
{
    sbiod->sbiod_pvt = arg;
    return 0;
}

static int deadline_remove(Sockbuf_IO_Desc *sbiod)
{
    return 0;
}

static int deadline_ctrl(Sockbuf_IO_Desc *sbiod, int opt, void *arg)
{
    return LBER_SBIOD_CTRL_NEXT(sbiod, opt, arg);
}

static ber_slen_t deadline_write(Sockbuf_IO_Desc *sbiod, void *buf, ber_len_t len)
{
    return LBER_SBIOD_WRITE_NEXT(sbiod, buf, len);
}

static Sockbuf_IO deadline_io = {deadline_setup, deadline_remove, deadline_ctrl,
                                 deadline_read,  deadline_write,  NULL};

/* socket_connected - libldap connect callback: deadline_read on the new
 * socket, before any TLS. Returns 0 (go on), -1 (libldap drops it). */
static int socket_connected(LDAP *ld, Sockbuf *sb, LDAPURLDesc *srv, struct sockaddr *addr,
                            struct ldap_conncb *ctx)
{
    struct ldap_read *r = ctx->lc_arg;
    r->connected = 1;
    return ber_sockbuf_add_io(sb, &deadline_io, BS_LDAP_SBIOD_LEVEL, r) == 0 ? 0 : -1;
}

static void socket_closed(LDAP *ld, Sockbuf *sb, struct ldap_conncb *ctx) {}

/* tls_options - certificate checking on this handle only; 0, or -1 with why */
static int tls_options(struct ldap_read *r, char *why, size_t whysize)
{
    int demand = LDAP_OPT_X_TLS_DEMAND, server = 0;
    const char *ca = r->src->tls_ca_file;
    if (ldap_set_option(r->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand) != LDAP_OPT_SUCCESS ||
        (*ca && ldap_set_option(r->ld, LDAP_OPT_X_TLS_CACERTFILE, ca) != LDAP_OPT_SUCCESS) ||
        ldap_set_option(r->ld, LDAP_OPT_X_TLS_NEWCTX, &server) != LDAP_OPT_SUCCESS) {
        snprintf(why, whysize, "cannot set up TLS (tls_ca_file %s)", *ca ? ca : "system");
        return -1;
    }
    return 0;
}

/* connect_once - a handle on uri, TLS as configured, bound. 0 bound (r->ld
 * set); -1 this server is not usable (why set, try the next one); -2 the
 * server refused the bind (err set, stop). */
static int connect_once(struct ldap_read *r, const char *uri, const struct berval *cred, char *why,
                        size_t whysize)
{
    int rc = ldap_initialize(&r->ld, uri);
    r->connected = 0;
    if (rc != LDAP_SUCCESS) {
        snprintf(why, whysize, "%s", ldap_err2string(rc));
        return -1;
    }
    int v3 = LDAP_VERSION3;
    struct timeval net, op;
    if (!left(r, BS_LDAP_CONNECT_MAX_MS, &net) || !left(r, 0, &op)) {
        snprintf(why, whysize, "timeout (%llu ms) before connecting",
                 (unsigned long long)r->src->timeout_ms);
        return -1;
    }
    if (ldap_set_option(r->ld, LDAP_OPT_PROTOCOL_VERSION, &v3) != LDAP_OPT_SUCCESS ||
        ldap_set_option(r->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS ||
        ldap_set_option(r->ld, LDAP_OPT_NETWORK_TIMEOUT, &net) != LDAP_OPT_SUCCESS ||
        ldap_set_option(r->ld, LDAP_OPT_TIMEOUT, &op) != LDAP_OPT_SUCCESS ||
        ldap_set_option(r->ld, LDAP_OPT_CONNECT_CB, &r->conncb) != LDAP_OPT_SUCCESS) {
        snprintf(why, whysize, "cannot set client options");
        return -1;
    }
    int ldaps = strncasecmp(uri, "ldaps:", 6) == 0, plain = strncasecmp(uri, "ldap:", 5) == 0;
    if ((ldaps || (plain && r->src->start_tls)) && tls_options(r, why, whysize) < 0)
        return -1;
    int tls = ldaps || (plain && r->src->start_tls);
    if (plain && r->src->start_tls && (rc = ldap_start_tls_s(r->ld, NULL, NULL)) != LDAP_SUCCESS) {
        char buf[BS_LDAP_WHY_MAX];
        snprintf(why, whysize, "StartTLS: %s", failed_why(r, rc, tls, buf, sizeof buf));
        return -1;
    }
    if (cred->bv_len && plain && !r->src->start_tls)
        bs_warn("source %s: %s: the bind password crosses the network in clear (start_tls = no)",
                r->src->name, uri);
    const char *dn = *r->src->bind_dn ? r->src->bind_dn : NULL;
    struct berval anon = {0, NULL};
    rc = ldap_sasl_bind_s(r->ld, dn, LDAP_SASL_SIMPLE, dn ? (struct berval *)cred : &anon, NULL,
                          NULL, NULL);
    if (rc == LDAP_SUCCESS)
        return 0;
    char buf[BS_LDAP_WHY_MAX];
    failed_why(r, rc, ldaps, buf, sizeof buf);
    if (rc < 0) { /* the client's own error: no answer from this server */
        snprintf(why, whysize, "bind: %s", buf);
        return -1;
    }
    fail(r, "%s: bind as %s: %s", uri, dn ? dn : "anonymous", buf);
    return -2;
}

/* connect_uri - connect_once; a URI with another after it gets at most
 * BS_LDAP_CONNECT_MAX_MS of the deadline for its connect, TLS and bind (a
 * server that takes the connection and never answers would otherwise use
 * up the whole read, and the next URI would never be tried) */
static int connect_uri(struct ldap_read *r, const char *uri, int last, const struct berval *cred,
                       char *why, size_t whysize)
{
    uint64_t full = r->deadline, now = now_ms();
    struct timeval op;
    int rc;

    if (!last && full > now + BS_LDAP_CONNECT_MAX_MS)
        r->deadline = now + BS_LDAP_CONNECT_MAX_MS;
    rc = connect_once(r, uri, cred, why, whysize);
    r->deadline = full;
    if (rc == 0 &&
        (!left(r, 0, &op) || ldap_set_option(r->ld, LDAP_OPT_TIMEOUT, &op) != LDAP_OPT_SUCCESS)) {
        snprintf(why, whysize, "timeout (%llu ms) after the bind",
                 (unsigned long long)r->src->timeout_ms);
        return -1;
    }
    return rc;
}

/* bind_any - connect_uri on each URI in turn; 0 bound, or -1 with err set */
static int bind_any(struct ldap_read *r, const struct berval *cred)
{
    char tried[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < r->src->nuris; i++) {
        const char *uri = r->src->uris[i];
        char why[BS_LDAP_WHY_MAX * 2];
        int rc = connect_uri(r, uri, i + 1 == r->src->nuris, cred, why, sizeof why);
        if (rc == 0) {
            r->uri = uri;
            return 0;
        }
        if (r->ld)
            ldap_unbind_ext_s(r->ld, NULL, NULL);
        r->ld = NULL;
        if (rc == -2)
            return -1;
        bs_debug("source %s: %s: %s", r->src->name, uri, why);
        int n = snprintf(tried + used, sizeof tried - used, "%s%s: %s", used ? "; " : "", uri, why);
        if (n > 0)
            used = used + (size_t)n < sizeof tried ? used + (size_t)n : sizeof tried - 1;
    }
    return fail(r, "no LDAP server usable: %s", r->src->nuris ? tried : "no uri");
}

/* entry - emit the addresses of one entry; 0, or -1 (err set, or stopped) */
static int entry(struct ldap_read *r, LDAPMessage *msg)
{
    BerElement *ber = NULL;
    struct berval dn, name, *vals = NULL;
    int rc = ldap_get_dn_ber(r->ld, msg, &ber, &dn), out = 0;
    r->entries++;
    while (!out && rc == LDAP_SUCCESS &&
           (rc = ldap_get_attribute_ber(r->ld, msg, ber, &name, &vals)) == LDAP_SUCCESS &&
           name.bv_val) {
        if (vals && range_cut(name.bv_val, name.bv_len)) {
            out = fail(r, "%s: entry %.*s: attribute %.*s: AD range retrieval is not supported",
                       r->uri, (int)dn.bv_len, dn.bv_val, (int)name.bv_len, name.bv_val);
            break;
        }
        for (struct berval *v = vals; v && v->bv_val; v++) {
            size_t off;
            r->values++;
            if (!value_address(v->bv_val, v->bv_len, &off)) {
                r->other_types++;
                continue;
            }
            r->emitted++;
            if (r->emit(r->arg, v->bv_val + off, v->bv_len - off) < 0) {
                r->stopped = 1;
                out = -1;
                break;
            }
        }
        ber_memfree(vals);
        vals = NULL;
    }
    ber_memfree(vals);
    ber_free(ber, 0);
    if (out < 0)
        return -1;
    if (rc != LDAP_SUCCESS) {
        char buf[BS_LDAP_WHY_MAX];
        return fail(r, "%s: undecodable entry: %s", r->uri, ldap_why(r->ld, rc, buf, sizeof buf));
    }
    return 0;
}

/* timeout - err for a read that ran out of time; returns -1 */
static int timeout(struct ldap_read *r)
{
    return fail(r, "%s: timeout (%llu ms) after %llu entries in %llu pages", r->uri,
                (unsigned long long)r->src->timeout_ms, (unsigned long long)r->entries,
                (unsigned long long)r->pages);
}

/* result - the search result that ends a page (msg freed): 0 with cookie
 * set to the next page's (empty after the last page), or -1 */
static int result(struct ldap_read *r, LDAPMessage *msg, struct berval *cookie)
{
    int code = LDAP_OTHER;
    char *matched = NULL, *diag = NULL, **referrals = NULL, buf[BS_LDAP_WHY_MAX];
    LDAPControl **ctrls = NULL;
    int rc = ldap_parse_result(r->ld, msg, &code, &matched, &diag, &referrals, &ctrls, 1);
    if (rc != LDAP_SUCCESS)
        fail(r, "%s: bad search result: %s", r->uri, ldap_why(r->ld, rc, buf, sizeof buf));
    else if (code == LDAP_REFERRAL)
        rc =
            fail(r, "%s: search referred to %s (referrals are not followed: use that server's uri)",
                 r->uri, referrals && referrals[0] ? referrals[0] : "another server");
    else if (code != LDAP_SUCCESS)
        rc = fail(r, "%s: search failed after %llu entries in %llu pages: %s%s%s%s", r->uri,
                  (unsigned long long)r->entries, (unsigned long long)r->pages,
                  ldap_err2string(code), diag && *diag ? " (" : "", diag ? diag : "",
                  diag && *diag ? ")" : "");
    LDAPControl *page = ctrls ? ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls, NULL) : NULL;
    if (rc == LDAP_SUCCESS && r->src->page_size && page) {
        ber_int_t estimate;
        if ((rc = ldap_parse_pageresponse_control(r->ld, page, &estimate, cookie)) != LDAP_SUCCESS)
            fail(r, "%s: bad paged-results control: %s", r->uri, ldap_err2string(rc));
    }
    ldap_memfree(matched);
    ldap_memfree(diag);
    ber_memvfree((void **)referrals);
    ldap_controls_free(ctrls);
    return rc == LDAP_SUCCESS ? 0 : -1;
}

/* page - ask for one page (after cookie, which is consumed) and read it to
 * its result; 0 with cookie set to the next page's, or -1 */
static int page(struct ldap_read *r, char **attrs, struct berval *cookie)
{
    const bs_source *src = r->src;
    LDAPControl *ctrl = NULL, *ctrls[2] = {NULL, NULL};
    struct timeval tv;
    char buf[BS_LDAP_WHY_MAX];
    int msgid, rc = LDAP_SUCCESS;
    if (!left(r, 0, &tv))
        rc = LDAP_TIMEOUT;
    else if (src->page_size)
        rc = ldap_create_page_control(r->ld, (ber_int_t)src->page_size, cookie, 1, &ctrl);
    ber_memfree(cookie->bv_val);
    *cookie = (struct berval){0, NULL};
    if (rc == LDAP_TIMEOUT)
        return timeout(r);
    if (rc != LDAP_SUCCESS)
        return fail(r, "paged-results control: %s", ldap_err2string(rc));
    ctrls[0] = ctrl;
    rc = ldap_search_ext(r->ld, src->base, LDAP_SCOPE_SUBTREE,
                         *src->filter ? src->filter : BS_LDAP_DEFAULT_FILTER, attrs, 0,
                         ctrl ? ctrls : NULL, NULL, &tv, 0, &msgid);
    ldap_control_free(ctrl);
    if (rc != LDAP_SUCCESS)
        return fail(r, "%s: search: %s", r->uri, ldap_why(r->ld, rc, buf, sizeof buf));
    r->pages++;
    if (src->progress)
        src->progress(src->progress_arg, (size_t)r->entries);
    for (;;) {
        LDAPMessage *msg = NULL;
        if (!left(r, 0, &tv))
            rc = 0;
        else
            rc = ldap_result(r->ld, msgid, LDAP_MSG_ONE, &tv, &msg);
        if (rc == LDAP_RES_SEARCH_RESULT)
            return result(r, msg, cookie);
        if (rc == LDAP_RES_SEARCH_ENTRY && entry(r, msg) == 0)
            rc = LDAP_SUCCESS;
        else if (rc == LDAP_RES_SEARCH_REFERENCE) /* AD's DomainDnsZones & co. */
            r->references++;
        else if (rc != LDAP_RES_INTERMEDIATE) {
            ldap_msgfree(msg);
            ldap_abandon_ext(r->ld, msgid, NULL, NULL);
            if (rc == LDAP_RES_SEARCH_ENTRY)
                return -1; /* entry() set err, or emit stopped the read */
            if (rc == 0 || !left(r, 0, &tv))
                return timeout(r);
            if (rc > 0)
                return fail(r, "%s: unexpected message (type 0x%x) in a search", r->uri, rc);
            ldap_get_option(r->ld, LDAP_OPT_RESULT_CODE, &rc);
            return fail(r, "%s: search failed after %llu entries in %llu pages: %s", r->uri,
                        (unsigned long long)r->entries, (unsigned long long)r->pages,
                        ldap_why(r->ld, rc, buf, sizeof buf));
        }
        ldap_msgfree(msg);
    }
}

/* search - every page of the search; 0 or -1 */
static int search(struct ldap_read *r)
{
    const bs_source *src = r->src;
    char *attrs[BS_SRC_MAX_ATTRS + 1] = {NULL};
    static char mail[] = BS_LDAP_DEFAULT_ATTR;
    for (size_t i = 0; i < src->nattributes && i < BS_SRC_MAX_ATTRS; i++)
        attrs[i] = (char *)src->attributes[i];
    if (!src->nattributes)
        attrs[0] = mail;
    struct berval cookie = {0, NULL};
    int rc;
    do
        rc = page(r, attrs, &cookie);
    while (rc == 0 && cookie.bv_len > 0);
    ber_memfree(cookie.bv_val);
    return rc;
}

/* bs_source_ldap_read - see the top of the file and source.h */
int bs_source_ldap_read(const bs_source *src, bs_source_emit emit, void *arg, char *err,
                        size_t errsz)
{
    struct ldap_read r = {.src = src, .emit = emit, .arg = arg, .err = err, .errsz = errsz};
    r.conncb = (struct ldap_conncb){socket_connected, socket_closed, &r};
    r.deadline = now_ms() + (src->timeout_ms ? src->timeout_ms : BS_LDAP_DEFAULT_TIMEOUT_MS);
    r.uri = src->nuris ? src->uris[0] : "";
    if (!src->nuris)
        return fail(&r, "no uri");
    char password[BS_LDAP_PASSWORD_MAX];
    struct berval cred = {0, password};
    if (*src->bind_dn && read_password(&r, password, sizeof password, &cred.bv_len) < 0)
        return -1;
    int rc = bind_any(&r, &cred);
    explicit_bzero(password, sizeof password);
    if (rc == 0)
        rc = search(&r);
    if (r.ld)
        ldap_unbind_ext_s(r.ld, NULL, NULL);
    bs_debug("source %s: %s: %llu entries in %llu pages, %llu values, %llu emitted, %llu of "
             "other types, %llu references skipped: %s",
             src->name, r.uri, (unsigned long long)r.entries, (unsigned long long)r.pages,
             (unsigned long long)r.values, (unsigned long long)r.emitted,
             (unsigned long long)r.other_types, (unsigned long long)r.references,
             rc == 0 ? "complete" : "failed");
    return rc;
}
