/*
 * ctl_check.c - check: one real policy request to a running backstopd
 *
 * PROVIDES
 *   bs_ctl_check  sends the request Postfix's smtpd would send at RCPT time
 *                 (bs_ctl_request_text) to --server, or to the first
 *                 [server] listen of the config, and prints the action line
 *                 it gets. Then, clearly labelled, the explanation: the
 *                 verdict re-derived by ctl_explain.c from the same Redis
 *                 data with the daemon's own rules, read just before the
 *                 request was sent (the request itself may change the data:
 *                 count an invalid recipient, take from an NDR budget).
 *                 When the daemon's answer differs from the re-derived one
 *                 it says so. Redis being down (or frozen) does not stop
 *                 the request: backstopd is asked anyway, and both results
 *                 are reported (the explanation is then missing, and says
 *                 why). Exit 0 when backstopd answered (whatever the
 *                 action, whatever Redis did), 1 when it could not be
 *                 reached or did not answer in time, 2 for bad options.
 *                 --json: one object with both halves (backstopctl(8)).
 *
 * WHY RE-DERIVE
 *   The policy protocol's reply carries only the action; backstopd logs its
 *   reason to syslog, which this tool may not be able to read.
 *
 * NEVER
 *   Waits longer than --timeout for the connect, or for the whole answer.
 *   Sends a value with a control character (it would inject attributes).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "backstop/cidr.h"
#include "ctl.h"

#define BS_CHECK_REPLY_MAX 4096

/* now_ms - monotonic clock */
static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* wait_fd - poll for events until the deadline; 1 ready, 0 timeout, -1 */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    uint64_t now;
    int r;

    for (;;) {
        now = now_ms();
        if (now >= deadline)
            return 0;
        r = poll(&p, 1, (int)(deadline - now));
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

/* connect_addr - non-blocking connect with a deadline; fd or -1 (errno) */
static int connect_addr(int family, const struct sockaddr *sa, socklen_t salen, uint64_t deadline)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0, r;
    socklen_t len = sizeof(err);

    if (fd < 0)
        return -1;
    if (connect(fd, sa, salen) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    r = wait_fd(fd, POLLOUT, deadline);
    if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        close(fd);
        errno = r == 0 ? ETIMEDOUT : err ? err : EIO;
        return -1;
    }
    return fd;
}

/* dial - connect to a policy endpoint; fd, or -1 with the reason printed */
static int dial(const bs_endpoint *ep, const char *where, uint64_t deadline)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    char port[16];
    int fd = -1, rc;

    if (ep->type == BS_EP_UNIX) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        size_t plen = strlen(ep->path);
        if (plen >= sizeof(sun.sun_path)) {
            bs_ctl_err("%s: socket path too long", where);
            return -1;
        }
        memcpy(sun.sun_path, ep->path, plen + 1);
        fd = connect_addr(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun), deadline);
    } else {
        snprintf(port, sizeof(port), "%u", ep->port);
        if ((rc = getaddrinfo(ep->host, port, &hints, &res)) != 0) {
            bs_ctl_err("%s: %s", where, gai_strerror(rc));
            return -1;
        }
        for (ai = res; ai && fd < 0; ai = ai->ai_next)
            fd = connect_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline);
        freeaddrinfo(res);
    }
    if (fd < 0)
        bs_ctl_err("cannot connect to backstopd at %s: %s", where,
                   errno == ETIMEDOUT ? "timed out (--timeout)" : strerror(errno));
    return fd;
}

/* exchange - send the request, read the reply up to its empty line.
 * Returns the reply length, or -1 (printed). */
static int exchange(int fd, const char *req, size_t len, char *reply, size_t replysz,
                    uint64_t deadline, const char *where)
{
    size_t off = 0, got = 0;
    ssize_t n;

    while (off < len) {
        if (wait_fd(fd, POLLOUT, deadline) <= 0) {
            bs_ctl_err("%s: cannot send the request: timed out", where);
            return -1;
        }
        n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            bs_ctl_err("%s: cannot send the request: %s", where, strerror(errno));
            return -1;
        }
        off += n > 0 ? (size_t)n : 0;
    }
    while (got < 2 || memcmp(reply + got - 2, "\n\n", 2) != 0) {
        if (got + 1 >= replysz) {
            bs_ctl_err("%s: the reply is longer than %zu bytes", where, replysz);
            return -1;
        }
        if (wait_fd(fd, POLLIN, deadline) <= 0) {
            bs_ctl_err("%s: no complete answer within the timeout (--timeout)", where);
            return -1;
        }
        n = recv(fd, reply + got, replysz - 1 - got, 0);
        if (n == 0) {
            bs_ctl_err("%s: backstopd closed the connection without %s", where,
                       got ? "finishing its answer" : "an answer (a malformed request?)");
            return -1;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            bs_ctl_err("%s: %s", where, strerror(errno));
            return -1;
        }
        got += n > 0 ? (size_t)n : 0;
    }
    reply[got] = 0;
    return (int)got;
}

/* strip_brackets - "<a@b>" -> "a@b", "<>" -> "" (into out) */
static void strip_brackets(const char *s, char *out, size_t outsz)
{
    size_t n = strlen(s);

    if (n >= 2 && s[0] == '<' && s[n - 1] == '>')
        snprintf(out, outsz, "%.*s", (int)(n - 2), s + 1);
    else
        snprintf(out, outsz, "%s", s);
}

/* endpoint_name - for messages */
static void endpoint_name(const bs_endpoint *ep, char *out, size_t outsz)
{
    if (ep->type == BS_EP_UNIX)
        snprintf(out, outsz, "unix:%s", ep->path);
    else
        snprintf(out, outsz, strchr(ep->host, ':') ? "inet:[%s]:%u" : "inet:%s:%u", ep->host,
                 ep->port);
}

/* check_options - the required options and the endpoint; 0 or BS_CTL_USAGE */
static int check_options(bs_ctl *c, bs_endpoint *ep)
{
    static const int required[] = {BS_OPT_SENDER, BS_OPT_RECIPIENT, BS_OPT_CLIENT};
    uint8_t ip[16];
    size_t i;

    for (i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!c->opt[required[i]]) {
            bs_ctl_err("check needs --sender, --recipient and --client ('--sender \"\"' for a "
                       "bounce)");
            return BS_CTL_USAGE;
        }
    if (bs_ip_parse(c->opt[BS_OPT_CLIENT], strlen(c->opt[BS_OPT_CLIENT]), ip) < 0) {
        bs_ctl_err("--client %s: not an IP address", c->opt[BS_OPT_CLIENT]);
        return BS_CTL_USAGE;
    }
    if (c->opt[BS_OPT_SERVER]) {
        if (bs_parse_endpoint(c->opt[BS_OPT_SERVER], ep) < 0) {
            bs_ctl_err("--server %s: not inet:HOST:PORT or unix:/PATH", c->opt[BS_OPT_SERVER]);
            return BS_CTL_USAGE;
        }
    } else {
        *ep = c->cfg.listen[0];
    }
    return 0;
}

/* same_answer - the daemon's reply vs the re-derived one */
static int same_answer(const bs_ctl *c, const bs_ctl_explain *e, const char *reply)
{
    char want[BS_REPLY_MAX];

    bs_ctl_explain_reply(c, e, want);
    return strcmp(want, reply) == 0;
}

/* What one check found: both halves, each with its own failure. */
typedef struct check_result {
    const char *where; /* the endpoint, for messages */
    int redis_ok;      /* the facts were read: e holds the explanation */
    char redis_err[512];
    int answered; /* backstopd answered: reply holds it */
    char daemon_err[512];
    char reply[BS_CHECK_REPLY_MAX];
} check_result;

/* ask_daemon - dial, send, read; fills r->answered / r->reply / r->daemon_err */
static void ask_daemon(bs_ctl *c, const bs_endpoint *ep, const bs_ctl_explain *e, check_result *r)
{
    uint64_t deadline = now_ms() + c->timeout_ms;
    int fd = dial(ep, r->where, deadline), len = -1;

    if (fd >= 0) {
        len = exchange(fd, e->text, e->len, r->reply, sizeof(r->reply), deadline, r->where);
        close(fd);
    }
    r->answered = len >= 0;
    if (!r->answered)
        snprintf(r->daemon_err, sizeof(r->daemon_err), "%s", bs_ctl_last_err());
}

/* explain_json - the re-derived verdict as an object, or null without facts */
static json_t *explain_json(const bs_ctl *c, const bs_ctl_explain *e, const check_result *r)
{
    char want[BS_REPLY_MAX];
    size_t n;

    if (!r->redis_ok)
        return json_null();
    n = bs_ctl_explain_reply(c, e, want);
    while (n > 0 && want[n - 1] == '\n')
        want[--n] = 0;
    return json_pack(
        "{s:s, s:s, s:o, s:b, s:b, s:b, s:b, s:b, s:s, s:s, s:b}", "rule", bs_why_name(e->d.why),
        "action", strncmp(want, "action=", 7) == 0 ? want + 7 : want, "matches",
        r->answered ? json_boolean(same_answer(c, e, r->reply)) : json_null(), "blocked",
        e->f.blocked, "exempt", e->f.exempt || e->d.cidr_exempt, "protected_domain",
        e->f.protected_domain, "null_sender", e->d.null_sender, "counts_invalid", e->d.note_invalid,
        "mode", bs_mode_name(e->d.mode), "mode_source", bs_decide_mode_src(e->d.mode_src),
        "would_reject", bs_decide_would_reject(&e->d, &c->cfg));
}

/* with_harvest - the explanation with decide.c's reason and harvest
 * detection's facts (ctl_harvest.c); takes and returns x */
static json_t *with_harvest(const bs_ctl *c, const bs_ctl_explain *e, json_t *x)
{
    if (json_is_object(x)) {
        json_object_set_new(x, "rule", json_string(bs_ctl_explain_rule(e)));
        json_object_set_new(x, "harvest", bs_ctl_harvest_explain_json(c, e));
    }
    return x;
}

/* check_json - the whole result as one object (see backstopctl(8)) */
static json_t *check_json(const bs_ctl *c, const bs_ctl_explain *e, const char *sender,
                          const char *rcpt, const check_result *r)
{
    size_t n = strcspn(r->reply, "\n"), skip = strncmp(r->reply, "action=", 7) == 0 ? 7 : 0;
    const char *helo = c->opt[BS_OPT_HELO];

    return json_pack(
        "{s:s, s:{s:o, s:o, s:s, s:o}, s:b, s:o, s:s?, s:{s:b, s:s?}, s:o}", "server", r->where,
        "request", "sender", bs_ctl_jstr(sender, strlen(sender)), "recipient",
        bs_ctl_jstr(rcpt, strlen(rcpt)), "client", c->opt[BS_OPT_CLIENT], "helo",
        helo ? bs_ctl_jstr(helo, strlen(helo)) : json_null(), "answered", r->answered, "action",
        r->answered ? bs_ctl_jstr(r->reply + skip, n - skip) : json_null(), "error",
        r->answered ? NULL : r->daemon_err, "redis", "ok", r->redis_ok && !e->redis_failed, "error",
        r->redis_err[0] ? r->redis_err : NULL, "explanation",
        with_harvest(c, e, explain_json(c, e, r)));
}

/* print_text - the answer, then the explanation or why there is none */
static void print_text(bs_ctl *c, const bs_ctl_explain *e, const check_result *r)
{
    char shown[BS_CHECK_REPLY_MAX * 4];

    if (r->answered) {
        printf("%s\n", bs_ctl_safe(r->reply, strcspn(r->reply, "\n"), shown, sizeof(shown)));
        if (strncmp(r->reply, "action=", 7) != 0)
            bs_ctl_note("the answer does not start with action=: is %s a policy server?", r->where);
    }
    if (!r->redis_ok) {
        printf("explanation: none: backstopctl could not read Redis (%s); while backstopd "
               "cannot reach Redis either it answers with [policy] on_redis_error\n",
               r->redis_err);
        return;
    }
    printf("explanation (re-derived by backstopctl from Redis and %s just before the request; "
           "backstopd's reply does not say which rule applied):\n",
           c->config_path);
    bs_ctl_explain_print(c, e, stdout);
    if (!r->answered)
        return;
    if (!same_answer(c, e, r->reply))
        bs_ctl_note("backstopd's answer differs from the re-derived one: the data changed in "
                    "between, or backstopd runs with another configuration than %s",
                    c->config_path);
    else if (e->d.note_invalid)
        bs_ctl_note("backstopd counted this unknown recipient against client %s "
                    "(see: backstopctl client %s)",
                    e->d.client_key, c->opt[BS_OPT_CLIENT]);
    else if (e->d.why == BS_WHY_NDR_UNDER)
        bs_ctl_note("this bounce used one of the NDR budget of %s", e->d.rcpt.domain);
}

/* bs_ctl_check - predict from Redis, ask backstopd, report both */
int bs_ctl_check(bs_ctl *c, int argc, char **argv)
{
    char sender[BS_ADDR_MAX * 2], rcpt[BS_ADDR_MAX * 2], where[BS_CFG_PATH_MAX + 32];
    check_result *r;
    bs_ctl_explain *e;
    bs_endpoint ep;
    int rc, len;

    if ((rc = check_options(c, &ep)) != 0)
        return rc;
    strip_brackets(c->opt[BS_OPT_SENDER], sender, sizeof(sender));
    strip_brackets(c->opt[BS_OPT_RECIPIENT], rcpt, sizeof(rcpt));
    endpoint_name(&ep, where, sizeof(where));
    e = calloc(1, sizeof(*e));
    r = calloc(1, sizeof(*r));
    if (!e || !r) {
        free(e);
        free(r);
        return BS_CTL_FAIL;
    }
    r->where = where;
    len = bs_ctl_request_text(e->text, sizeof(e->text), sender, rcpt, c->opt[BS_OPT_CLIENT],
                              c->opt[BS_OPT_HELO]);
    if (len < 0) {
        bs_ctl_err("--sender, --recipient and --helo must not hold control characters");
        free(e);
        free(r);
        return BS_CTL_USAGE;
    }
    e->len = (size_t)len;
    /* facts first: the request may change them (invalid count, NDR budget).
     * Redis down is when the daemon's answer matters most: ask it anyway. */
    r->redis_ok = bs_ctl_connect(c) == 0 && bs_ctl_explain_run(c, e) == 0;
    if (!r->redis_ok)
        snprintf(r->redis_err, sizeof(r->redis_err), "%s", bs_ctl_last_err());
    else if (e->redis_failed)
        snprintf(r->redis_err, sizeof(r->redis_err), "a lookup failed");
    ask_daemon(c, &ep, e, r);
    rc = r->answered ? BS_CTL_OK : BS_CTL_FAIL;
    if (c->opt[BS_OPT_JSON])
        rc = bs_ctl_json_print(check_json(c, e, sender, rcpt, r), rc);
    else
        print_text(c, e, r);
    free(e);
    free(r);
    return rc;
}
