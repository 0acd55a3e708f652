/*
 * ctl_queue.c - purge-queue: queued bounces to NDR-denied domains (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_purge_queue  reads "postqueue -j" (or --from-json FILE), picks
 *                       the messages that are bounces (the null sender:
 *                       shown by postqueue as empty_address_recipient,
 *                       MAILER-DAEMON by default, or "") whose every
 *                       recipient is in a domain the daemon's NDR policy
 *                       denies (bs_ctl_explain_run, as "ndr explain": not
 *                       protected, and the entry that decides, or
 *                       ndr_default, is deny), lists them and, with --yes,
 *                       deletes exactly those by writing their queue ids to
 *                       "postsuper -d -". Dry run otherwise: it lists what
 *                       --yes would delete, checks included.
 *                       Exit 0 done (or nothing to do); 1 postconf,
 *                       postqueue or postsuper failed, some lines could not
 *                       be read, or some envelope senders could not be
 *                       checked (the others are still handled).
 *
 * THE NULL SENDER, AND A REAL ONE THAT LOOKS THE SAME
 *   showq prints "<>" as $empty_address_recipient, read with
 *   "postconf -x -h" (expanded: showq prints "nulls@$mydomain" expanded).
 *   The default, the bare MAILER-DAEMON, is never a real sender in the
 *   queue: cleanup appends @$myorigin to a bare sender and turns
 *   MAILER-DAEMON@$myorigin into <>. That holds only for a name without
 *   '@' while append_at_myorigin = yes. Otherwise (bounces@example.com,
 *   say) a real message from that address is shown exactly as a bounce,
 *   so each message that would be selected for that look has its true
 *   envelope sender read with "postcat -e -q ID..." (BS_QUEUE_CAT_BATCH ids
 *   a run): "sender: " with nothing after it is the null sender; anything
 *   else, or no clear answer, keeps the message (listed as kept). Messages
 *   shown as "" are never checked: no real sender is empty.
 *
 * SELECTION, CONSERVATIVELY
 *   A message with any recipient that is not denied (allowed, limited, a
 *   protected domain, an address that does not parse) is kept: deleting it
 *   would lose that delivery too. --queue NAME keeps to one Postfix queue
 *   and is passed to postsuper, which then deletes only from that queue.
 *   Queue ids must be alphanumeric (Postfix's short and long ids): anything
 *   else is a bad line, never written to postsuper. When postconf cannot
 *   say how the null sender is shown, nothing is selected (exit 1).
 *
 * PROGRAMS
 *   postqueue [-c DIR] -j and postsuper [-c DIR] -d - [QUEUE] are run
 *   directly (fork + execvp, no shell). --postqueue/--postsuper CMD name
 *   another program to run with the same arguments (tests, wrappers).
 *   postconf [-c DIR] -x -h empty_address_recipient append_at_myorigin and
 *   postcat [-c DIR] -e -q ID... are found on PATH (not run with
 *   --from-json, which assumes the default MAILER-DAEMON).
 *
 * LIMITS
 *   postconf and each postcat run are given --timeout, and a postcat run
 *   --timeout more per message it has finished; then killed. A postcat
 *   run that fails (a message gone from the queue: postcat stops at it) is
 *   redone one id a run; after BS_QUEUE_CAT_FAILS_MAX failed runs the
 *   messages not yet checked are kept unchecked. postqueue and postsuper
 *   have no timeout (a queue of any size; postsuper's deletions).
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

#define BS_QUEUE_LINE_MAX (1 << 20)
#define BS_QUEUE_OUT_LINE 4096    /* a postconf/postcat line kept; the rest cut */
#define BS_QUEUE_CAT_BATCH 100    /* queue ids per postcat run */
#define BS_QUEUE_CAT_FAILS_MAX 20 /* failed postcat runs, then the rest unchecked */

/* The queues postsuper -d knows. */
static const char *const queue_names[] = {"incoming", "active", "deferred", "hold", "maildrop"};

/* One recipient domain's NDR verdict, cached. */
typedef struct dom_verdict {
    char domain[BS_DOMAIN_MAX + 1];
    int deny;
    char why[BS_DOMAIN_MAX + 48]; /* "ndr entry *: deny" */
} dom_verdict;

/* What becomes of a message whose every recipient is denied. */
typedef enum cand_state {
    CAND_DELETE,    /* a bounce: listed, deleted with --yes */
    CAND_CHECK,     /* shown as the null sender, which a real sender can be */
    CAND_REAL,      /* postcat: a real sender; kept */
    CAND_UNCHECKED, /* postcat gave no clear answer; kept */
} cand_state;

/* A message whose every recipient is denied. Strings owned (purge_free). */
typedef struct cand {
    char *id, *queue, *rcpt; /* rcpt: the first recipient, as shown */
    char *sender;            /* CAND_CHECK: as postqueue showed it, shown; else NULL */
    int more;                /* it has more recipients */
    size_t verdict;          /* pg->cache index: why it is denied */
    cand_state state;
} cand;

typedef struct purge {
    bs_ctl *c;
    dom_verdict *cache;
    size_t ncache;
    cand *cands; /* owned, in queue order */
    size_t ncands;
    size_t messages, bounces, bad;
    int failed;                              /* a Redis error: stop */
    char null_sender[BS_QUEUE_OUT_LINE + 1]; /* how postqueue -j shows "<>" */
    int check_sender;                        /* a real sender may be shown so: postcat */
    size_t checked, real, unchecked, cat_fails;
} purge;

/* now_ms - CLOCK_MONOTONIC in ms */
static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* spawn - run argv with a pipe to its stdin (to_child) or from its stdout;
 * the pid, with *fd our end; -1 (printed) */
static pid_t spawn(char *const argv[], int to_child, int *fd)
{
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0) {
        bs_ctl_err("pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    if ((pid = fork()) < 0) {
        bs_ctl_err("fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL); /* ignored by backstopctl; exec would keep that */
        dup2(to_child ? p[0] : p[1], to_child ? STDIN_FILENO : STDOUT_FILENO);
        execvp(argv[0], argv);
        fprintf(stderr, "backstopctl: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(to_child ? p[0] : p[1]);
    *fd = to_child ? p[1] : p[0];
    return pid;
}

/* exit_ok - a wait status: 0 when it exited 0, else -1 (printed) */
static int exit_ok(int st, const char *name)
{
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    if (WIFEXITED(st))
        bs_ctl_err("%s exited with status %d", name, WEXITSTATUS(st));
    else
        bs_ctl_err("%s was killed by signal %d", name, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return -1;
}

/* reap - wait for pid; 0 when it exited 0, else -1 (printed) */
static int reap(pid_t pid, const char *name)
{
    int st;

    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            bs_ctl_err("waitpid: %s", strerror(errno));
            return -1;
        }
    return exit_ok(st, name);
}

/* reap_by - reap, but SIGKILL pid at deadline (ms, now_ms's clock) */
static int reap_by(pid_t pid, const char *name, uint64_t deadline)
{
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    pid_t r;
    int st;

    while ((r = waitpid(pid, &st, WNOHANG)) != pid) {
        if (r < 0 && errno != EINTR) {
            bs_ctl_err("waitpid: %s", strerror(errno));
            return -1;
        }
        if (r == 0 && now_ms() >= deadline) {
            bs_ctl_err("%s: still running after its output ended (--timeout): killed", name);
            kill(pid, SIGKILL);
            reap(pid, name);
            return -1;
        }
        if (r == 0)
            nanosleep(&tick, NULL);
    }
    return exit_ok(st, name);
}

/* Takes one line of a child's output (NUL-terminated; len excludes it);
 * cut: it was longer than BS_QUEUE_OUT_LINE and the rest is dropped.
 * Returns 1 for progress (the deadline moves on by the timeout), 0 to go
 * on, -1 to stop reading (the child is killed). */
typedef int (*line_fn)(void *arg, const char *line, size_t len, int cut);

/* run_reading - run argv and hand each line of its stdout to fn, within
 * --timeout (from the start, or from fn's last progress). 0 when the child
 * exited 0 and fn never stopped it; -1 otherwise (printed, except a stop
 * by fn, which the caller reports) */
static int run_reading(const bs_ctl *c, char *const argv[], line_fn fn, void *arg)
{
    char chunk[4096], line[BS_QUEUE_OUT_LINE + 1];
    size_t len = 0;
    uint64_t deadline;
    int fd, cut = 0, stop = 0, late = 0, r;
    pid_t pid;

    if ((pid = spawn(argv, 0, &fd)) < 0)
        return -1;
    deadline = now_ms() + c->timeout_ms;
    while (!stop) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        uint64_t now = now_ms();
        ssize_t got, i;

        if (now >= deadline) {
            late = stop = 1;
            break;
        }
        r = poll(&p, 1, deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now));
        if (r == 0 || (r < 0 && errno == EINTR))
            continue;
        got = r < 0 ? -1 : read(fd, chunk, sizeof(chunk));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            bs_ctl_err("%s: reading its output: %s", argv[0], strerror(errno));
            stop = 1;
        }
        if (got <= 0)
            break;
        for (i = 0; i < got && !stop; i++) {
            if (chunk[i] != '\n') {
                if (len < BS_QUEUE_OUT_LINE)
                    line[len++] = chunk[i];
                else
                    cut = 1;
                continue;
            }
            line[len] = 0;
            r = fn(arg, line, len, cut);
            len = 0;
            cut = 0;
            if (r < 0)
                stop = 1;
            else if (r > 0)
                deadline = now_ms() + c->timeout_ms;
        }
    }
    if (!stop && (len > 0 || cut)) { /* a last line without '\n' */
        line[len] = 0;
        stop = fn(arg, line, len, cut) < 0;
    }
    close(fd);
    if (stop) {
        kill(pid, SIGKILL);
        if (late)
            bs_ctl_err("%s: no answer within %llums (--timeout): killed", argv[0],
                       (unsigned long long)c->timeout_ms);
        while (waitpid(pid, &r, 0) < 0 && errno == EINTR)
            ;
        return -1;
    }
    return reap_by(pid, argv[0], now_ms() + c->timeout_ms);
}

/* verdict - the cached NDR verdict for domain; NULL on a Redis error */
static const dom_verdict *verdict(purge *pg, const char *domain)
{
    char rcpt[BS_ADDR_MAX + 16], rule[64];
    bs_ctl_explain *e;
    dom_verdict *v;
    size_t i;
    int len;

    for (i = 0; i < pg->ncache; i++)
        if (strcmp(pg->cache[i].domain, domain) == 0)
            return &pg->cache[i];
    if (!(v = realloc(pg->cache, (pg->ncache + 1) * sizeof(*v))) || !(e = calloc(1, sizeof(*e)))) {
        if (v)
            pg->cache = v;
        bs_ctl_err("out of memory");
        return NULL;
    }
    pg->cache = v;
    v = &pg->cache[pg->ncache];
    snprintf(rcpt, sizeof(rcpt), "postmaster@%s", domain);
    len = bs_ctl_request_text(e->text, sizeof(e->text), "", rcpt, NULL, NULL);
    if (len >= 0) {
        e->len = (size_t)len;
        len = bs_ctl_explain_run(pg->c, e);
    }
    if (len < 0 || e->redis_failed) {
        bs_ctl_err("%s: cannot decide its NDR policy", domain);
        free(e);
        return NULL;
    }
    snprintf(v->domain, sizeof(v->domain), "%s", domain);
    /* a refusal the daemon only reports (deny report, mode report or off) lets
     * such bounces through: they are not ours to delete */
    v->deny = e->d.why == BS_WHY_NDR_DENY && !bs_decide_would_reject(&e->d, &pg->c->cfg);
    if (e->f.protected_domain)
        snprintf(v->why, sizeof(v->why), "protected domain");
    else
        snprintf(v->why, sizeof(v->why), "%s: %s", e->ndr_winner,
                 bs_ctl_rule_text(&e->ndr_rule, rule, sizeof(rule)));
    free(e);
    pg->ncache++;
    return v;
}

/* id_ok - Postfix queue ids are alphanumeric */
static int id_ok(const char *id)
{
    size_t i;

    for (i = 0; id[i]; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= 'a' && id[i] <= 'z')))
            return 0;
    return i > 0;
}

/* add_cand - m, denied by the verdict at cache index vi; 0, -1 out of memory */
static int add_cand(purge *pg, const bs_ctl_qmsg *m, size_t vi, cand_state state)
{
    char shown[BS_ADDR_MAX * 4];
    cand *cs, *k;

    if (!(cs = realloc(pg->cands, (pg->ncands + 1) * sizeof(*cs)))) {
        bs_ctl_err("out of memory");
        return -1;
    }
    pg->cands = cs;
    k = &cs[pg->ncands];
    *k = (cand){.more = m->nrcpt > 1, .verdict = vi, .state = state};
    k->id = strdup(m->queue_id);
    k->queue = strdup(m->queue_name);
    k->rcpt = strdup(bs_ctl_safe(m->rcpt[0], strlen(m->rcpt[0]), shown, sizeof(shown)));
    if (state == CAND_CHECK)
        k->sender = strdup(bs_ctl_safe(m->sender, strlen(m->sender), shown, sizeof(shown)));
    pg->ncands++; /* freed by purge_free, complete or not */
    if (!k->id || !k->queue || !k->rcpt || (state == CAND_CHECK && !k->sender)) {
        bs_ctl_err("out of memory");
        return -1;
    }
    return 0;
}

/* consider - one message: a candidate, or not; -1 on a Redis error or out
 * of memory */
static int consider(purge *pg, const bs_ctl_qmsg *m, const char *name, size_t lineno)
{
    const dom_verdict *v = NULL;
    char shown[BS_ADDR_MAX * 4];
    bs_addr a;
    size_t i;

    pg->messages++;
    if (pg->c->opt[BS_OPT_QUEUE] && strcmp(m->queue_name, pg->c->opt[BS_OPT_QUEUE]) != 0)
        return 0;
    /* showq prints the null sender as empty_address_recipient; "" is
     * accepted too (--from-json, other tools) */
    if (!m->has_sender || m->nrcpt == 0 ||
        (m->sender[0] && strcasecmp(m->sender, pg->null_sender) != 0))
        return 0;
    pg->bounces++;
    if (!id_ok(m->queue_id)) {
        bs_ctl_err("%s:%zu: queue_id \"%s\" is not a Postfix queue id: skipped", name, lineno,
                   bs_ctl_safe(m->queue_id, strlen(m->queue_id), shown, sizeof(shown)));
        pg->bad++;
        return 0;
    }
    for (i = 0; i < m->nrcpt; i++) {
        if (bs_addr_parse(m->rcpt[i], strlen(m->rcpt[i]), &a) < 0)
            return 0;
        if (!(v = verdict(pg, a.domain)))
            return -1;
        if (!v->deny)
            return 0;
    }
    return add_cand(pg, m, (size_t)(v - pg->cache),
                    m->sender[0] && pg->check_sender ? CAND_CHECK : CAND_DELETE);
}

/* read_queue - every line from fp */
static int read_queue(purge *pg, FILE *fp, const char *name)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    int rc = 0;

    while (rc == 0 && (got = getline(&line, &cap, fp)) >= 0) {
        size_t len = (size_t)got;
        const char *why;
        bs_ctl_qmsg m;

        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        if (len > BS_QUEUE_LINE_MAX || bs_ctl_qjson_parse(line, len, &m, &why) < 0) {
            bs_ctl_err("%s:%zu: %s: line skipped", name, lineno,
                       len > BS_QUEUE_LINE_MAX ? "line too long" : why);
            pg->bad++;
        } else if (consider(pg, &m, name, lineno) < 0) {
            rc = -1;
        }
        if (len <= BS_QUEUE_LINE_MAX)
            bs_ctl_qmsg_free(&m);
    }
    free(line);
    return rc;
}

/* prog_argv - CMD [-c DIR] args... into argv (static strings and options) */
static void prog_argv(const bs_ctl *c, const char *cmd, const char **argv, const char *const *args)
{
    size_t n = 0;

    argv[n++] = cmd;
    if (c->opt[BS_OPT_CONFIG_DIR]) {
        argv[n++] = "-c";
        argv[n++] = c->opt[BS_OPT_CONFIG_DIR];
    }
    while (*args)
        argv[n++] = *args++;
    argv[n] = NULL;
}

/* What postconf said: one value a line, in the order asked. */
typedef struct conf_read {
    char (*val)[BS_QUEUE_OUT_LINE + 1];
    size_t want, got;
    int cut;
} conf_read;

/* conf_line - line_fn: the next value */
static int conf_line(void *arg, const char *line, size_t len, int cut)
{
    conf_read *r = arg;

    if (r->got < r->want)
        memcpy(r->val[r->got], line, len + 1);
    r->cut |= cut;
    r->got++;
    return 0;
}

/* null_sender_name - the instance's empty_address_recipient, expanded,
 * which is what "postqueue -j" shows for the null sender, and whether a
 * real sender can be shown the same (see THE NULL SENDER above); --from-json:
 * MAILER-DAEMON. 0, or -1 when postconf cannot say (printed) */
static int null_sender_name(purge *pg)
{
    static const char *const args[] = {"-x", "-h", "empty_address_recipient", "append_at_myorigin",
                                       NULL};
    char val[2][BS_QUEUE_OUT_LINE + 1];
    conf_read r = {.val = val, .want = 2};
    const char *argv[8];
    int rc;

    snprintf(pg->null_sender, sizeof(pg->null_sender), "MAILER-DAEMON");
    if (pg->c->opt[BS_OPT_FROM_JSON])
        return 0;
    prog_argv(pg->c, "postconf", argv, args);
    if ((rc = run_reading(pg->c, (char *const *)argv, conf_line, &r)) < 0 || r.got != 2 || r.cut) {
        bs_ctl_err("postconf%s%s: cannot read empty_address_recipient (how postqueue shows the "
                   "null sender)%s",
                   pg->c->opt[BS_OPT_CONFIG_DIR] ? " -c " : "",
                   pg->c->opt[BS_OPT_CONFIG_DIR] ? pg->c->opt[BS_OPT_CONFIG_DIR] : "",
                   rc < 0  ? ""
                   : r.cut ? ": too long"
                           : ": not one value a line");
        return -1;
    }
    memcpy(pg->null_sender, val[0], sizeof(pg->null_sender));
    pg->check_sender =
        pg->null_sender[0] && (strchr(pg->null_sender, '@') || strcasecmp(val[1], "yes") != 0);
    return 0;
}

/* collect - from --from-json or postqueue; 0 / -1 */
static int collect(purge *pg)
{
    const bs_ctl *c = pg->c;
    const char *file = c->opt[BS_OPT_FROM_JSON], *argv[8];
    static const char *const args[] = {"-j", NULL};
    FILE *fp;
    pid_t pid;
    int fd, rc;

    if (file) {
        fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
        if (!fp) {
            bs_ctl_err("%s: %s", file, strerror(errno));
            return -1;
        }
        rc = read_queue(pg, fp, fp == stdin ? "(stdin)" : file);
        if (fp != stdin)
            fclose(fp);
        return rc;
    }
    prog_argv(c, c->opt[BS_OPT_POSTQUEUE] ? c->opt[BS_OPT_POSTQUEUE] : "postqueue", argv, args);
    if ((pid = spawn((char *const *)argv, 0, &fd)) < 0)
        return -1;
    if (!(fp = fdopen(fd, "r"))) {
        close(fd);
        reap(pid, argv[0]);
        return -1;
    }
    rc = read_queue(pg, fp, argv[0]);
    fclose(fp);
    return reap(pid, argv[0]) < 0 ? -1 : rc;
}

/* One postcat run over some candidates, and what its output says of each.
 * Its output must be exactly one section per id, in argv order:
 *   *** ENVELOPE RECORDS QUEUE/ID ***, one "sender: ..." line among
 *   others, ... *** MESSAGE FILE END QUEUE/ID ***
 * Anything else (a marker out of place, a second sender line: a sender
 * with a newline in it could forge either) makes the whole run bad. */
typedef struct cat_run {
    purge *pg;
    const size_t *idx; /* pg->cands indexes, in argv order */
    size_t n, done;    /* ids, sections complete */
    int open;          /* in idx[done]'s section */
    int senders, null; /* its sender lines; one was "sender: " */
    int bad;
    cand_state got[BS_QUEUE_CAT_BATCH];
} cat_run;

/* marker_id - "*** WORDS QUEUE/ID ***": WORDS and ID in place (line
 * changed), 0; -1 when it is not such a line */
static int marker_id(char *line, size_t len, char **words, char **id)
{
    char *sp, *sl;

    if (len < 8 || memcmp(line, "*** ", 4) != 0 || memcmp(line + len - 4, " ***", 4) != 0)
        return -1;
    line[len - 4] = 0;
    if (!(sp = strrchr(line + 4, ' ')) || !(sl = strrchr(sp, '/')))
        return -1;
    *sp = 0;
    *words = line + 4;
    *id = sl + 1;
    return 0;
}

/* cat_bad - the run's output is not postcat's: -1 (stop reading) */
static int cat_bad(cat_run *r)
{
    r->bad = 1;
    return -1;
}

/* cat_line - line_fn for postcat -e */
static int cat_line(void *arg, const char *line, size_t len, int cut)
{
    cat_run *r = arg;
    char copy[BS_QUEUE_OUT_LINE + 1], *words, *id;

    if (len >= 3 && memcmp(line, "***", 3) == 0) {
        memcpy(copy, line, len + 1);
        /* every marker names the id whose section is next or open */
        if (cut || marker_id(copy, len, &words, &id) < 0 || r->done == r->n ||
            strcmp(id, r->pg->cands[r->idx[r->done]].id) != 0)
            return cat_bad(r);
        if (strcmp(words, "ENVELOPE RECORDS") == 0) {
            if (r->open)
                return cat_bad(r);
            r->open = 1;
            r->senders = r->null = 0;
            return 0;
        }
        if (!r->open || (strcmp(words, "MESSAGE FILE END") == 0 && r->senders != 1))
            return cat_bad(r);
        if (strcmp(words, "MESSAGE FILE END") != 0)
            return 0;
        r->got[r->done++] = r->null ? CAND_DELETE : CAND_REAL;
        r->open = 0;
        return 1;
    }
    if (!r->open)
        return cat_bad(r);
    if (len >= 7 && memcmp(line, "sender:", 7) == 0) {
        r->senders++;
        r->null = len == 8 && line[7] == ' ' && !cut;
    }
    return 0;
}

/* cat_ids - one postcat run over n (<= BS_QUEUE_CAT_BATCH) candidates;
 * their states set when it answered for all of them, else left; 0 / -1 */
static int cat_ids(purge *pg, const size_t *idx, size_t n)
{
    static const char *const args[] = {"-e", "-q", NULL};
    const char *argv[8 + BS_QUEUE_CAT_BATCH];
    cat_run r = {.pg = pg, .idx = idx, .n = n};
    size_t i, k;
    int rc;

    prog_argv(pg->c, "postcat", argv, args);
    for (k = 0; argv[k]; k++)
        ;
    for (i = 0; i < n; i++)
        argv[k++] = pg->cands[idx[i]].id;
    argv[k] = NULL;
    rc = run_reading(pg->c, (char *const *)argv, cat_line, &r);
    if (rc < 0 || r.bad || r.open || r.done != n) {
        if (rc == 0 || r.bad)
            bs_ctl_err("postcat -e -q %s%s: not the output expected of it", pg->cands[idx[0]].id,
                       n > 1 ? " ..." : "");
        pg->cat_fails++;
        return -1;
    }
    for (i = 0; i < n; i++)
        pg->cands[idx[i]].state = r.got[i];
    return 0;
}

/* check_senders - the true envelope sender of every CAND_CHECK candidate:
 * CAND_DELETE, CAND_REAL or CAND_UNCHECKED. A failed batch is redone one
 * id a run; after BS_QUEUE_CAT_FAILS_MAX failed runs no more are tried. */
static void check_senders(purge *pg)
{
    size_t idx[BS_QUEUE_CAT_BATCH], n = 0, i, j;

    for (i = 0; i <= pg->ncands; i++) {
        if (i < pg->ncands && pg->cands[i].state == CAND_CHECK) {
            pg->checked++;
            idx[n++] = i;
        }
        if (n == 0 || (n < BS_QUEUE_CAT_BATCH && i < pg->ncands))
            continue;
        if (pg->cat_fails >= BS_QUEUE_CAT_FAILS_MAX || cat_ids(pg, idx, n) < 0)
            for (j = 0; j < n; j++)
                if (pg->cat_fails >= BS_QUEUE_CAT_FAILS_MAX || n == 1 ||
                    cat_ids(pg, &idx[j], 1) < 0)
                    pg->cands[idx[j]].state = CAND_UNCHECKED;
        n = 0;
    }
    for (i = 0; i < pg->ncands; i++) {
        pg->real += pg->cands[i].state == CAND_REAL;
        pg->unchecked += pg->cands[i].state == CAND_UNCHECKED;
    }
    if (pg->cat_fails >= BS_QUEUE_CAT_FAILS_MAX)
        bs_ctl_err("postcat failed %zu times: stopped checking; every message not checked is "
                   "kept",
                   pg->cat_fails);
}

/* list - the selected messages, then the kept ones, then what was checked */
static size_t list(const purge *pg)
{
    char shown[BS_ADDR_MAX * 4];
    size_t i, n = 0;

    for (i = 0; i < pg->ncands; i++) {
        const cand *k = &pg->cands[i];

        if (k->state == CAND_DELETE)
            printf("%-14s %-9s %s%s  (%s)\n", k->id, k->queue, k->rcpt, k->more ? " ..." : "",
                   pg->cache[k->verdict].why);
        n += k->state == CAND_DELETE;
    }
    bs_ctl_safe(pg->null_sender, strlen(pg->null_sender), shown, sizeof(shown));
    for (i = 0; i < pg->ncands; i++) {
        const cand *k = &pg->cands[i];

        if (k->state == CAND_REAL)
            printf("kept: %s %s %s%s: not a bounce, a real message from %s\n", k->id, k->queue,
                   k->rcpt, k->more ? " ..." : "", k->sender);
        else if (k->state == CAND_UNCHECKED)
            printf("kept: %s %s %s%s: its envelope sender could not be checked\n", k->id, k->queue,
                   k->rcpt, k->more ? " ..." : "");
    }
    if (pg->check_sender)
        printf("empty_address_recipient = %s: mail from that address looks like a bounce; "
               "postcat checked the envelope sender of %zu messages: %zu bounces, %zu real "
               "(kept), %zu not checked (kept)\n",
               shown, pg->checked, pg->checked - pg->real - pg->unchecked, pg->real, pg->unchecked);
    return n;
}

/* delete - the selected ids to postsuper -d - [QUEUE]; 0 / -1 */
static int delete_ids(purge *pg)
{
    const bs_ctl *c = pg->c;
    const char *argv[10], *args[4] = {"-d", "-", c->opt[BS_OPT_QUEUE], NULL};
    FILE *fp;
    pid_t pid;
    size_t i;
    int fd, werr;

    prog_argv(c, c->opt[BS_OPT_POSTSUPER] ? c->opt[BS_OPT_POSTSUPER] : "postsuper", argv, args);
    if ((pid = spawn((char *const *)argv, 1, &fd)) < 0)
        return -1;
    if (!(fp = fdopen(fd, "w"))) {
        close(fd);
        reap(pid, argv[0]);
        return -1;
    }
    for (i = 0; i < pg->ncands; i++)
        if (pg->cands[i].state == CAND_DELETE)
            fprintf(fp, "%s\n", pg->cands[i].id);
    werr = fclose(fp) != 0;
    if (reap(pid, argv[0]) < 0 || werr) {
        if (werr)
            bs_ctl_err("cannot write the queue ids to %s", argv[0]);
        return -1;
    }
    return 0;
}

/* purge_free - what pg owns */
static void purge_free(purge *pg)
{
    size_t i;

    for (i = 0; i < pg->ncands; i++) {
        free(pg->cands[i].id);
        free(pg->cands[i].queue);
        free(pg->cands[i].rcpt);
        free(pg->cands[i].sender);
    }
    free(pg->cands);
    free(pg->cache);
}

/* bs_ctl_purge_queue - collect, check, list, and with --yes delete */
int bs_ctl_purge_queue(bs_ctl *c, int argc, char **argv)
{
    purge pg = {.c = c};
    const char *q = c->opt[BS_OPT_QUEUE];
    size_t i, n;
    int rc = BS_CTL_OK;

    if (q) {
        for (i = 0; i < sizeof(queue_names) / sizeof(queue_names[0]); i++)
            if (strcmp(q, queue_names[i]) == 0)
                break;
        if (i == sizeof(queue_names) / sizeof(queue_names[0])) {
            bs_ctl_err("--queue %s: not a Postfix queue (incoming, active, deferred, hold, "
                       "maildrop)",
                       q);
            return BS_CTL_USAGE;
        }
    }
    if (bs_ctl_connect(c) < 0)
        return BS_CTL_FAIL;
    if (null_sender_name(&pg) < 0 || collect(&pg) < 0) {
        rc = BS_CTL_FAIL;
        bs_ctl_err("nothing deleted");
    } else {
        check_senders(&pg);
        n = list(&pg);
        printf("%zu of %zu queued messages are bounces to NDR-denied domains (%zu bounces in "
               "all)\n",
               n, pg.messages, pg.bounces - pg.real);
        if (n && !c->opt[BS_OPT_YES])
            printf("dry run: nothing deleted (run again with --yes to delete them)\n");
        else if (n && delete_ids(&pg) < 0)
            rc = BS_CTL_FAIL;
        else if (n)
            printf("handed %zu queue ids to postsuper -d -\n", n);
        if (pg.bad || pg.unchecked)
            rc = BS_CTL_FAIL;
    }
    purge_free(&pg);
    return rc;
}
