/*
 * ctl_queue.c - purge-queue: queued bounces to NDR-denied domains (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_purge_queue  reads "postqueue -j" (or --from-json FILE), picks
 *                       the messages that are bounces (the null sender:
 *                       shown by postqueue as empty_address_recipient,
 *                       MAILER-DAEMON by default, or "") whose every recipient is in a domain the
 *                       daemon's NDR policy denies (bs_ctl_explain_run, as
 *                       "ndr explain": not protected, and the entry that
 *                       decides, or ndr_default, is deny), lists them and,
 *                       with --yes, deletes exactly those by writing their
 *                       queue ids to "postsuper -d -". Dry run otherwise.
 *                       Exit 0 done (or nothing to do); 1 postqueue or
 *                       postsuper failed, or some lines could not be read
 *                       (the others are still handled).
 *
 * SELECTION, CONSERVATIVELY
 *   A message with any recipient that is not denied (allowed, limited, a
 *   protected domain, an address that does not parse) is kept: deleting it
 *   would lose that delivery too. --queue NAME keeps to one Postfix queue
 *   and is passed to postsuper, which then deletes only from that queue.
 *   Queue ids must be alphanumeric (Postfix's short and long ids): anything
 *   else is a bad line, never written to postsuper.
 *
 * PROGRAMS
 *   postqueue [-c DIR] -j and postsuper [-c DIR] -d - [QUEUE] are run
 *   directly (fork + execvp, no shell). --postqueue/--postsuper CMD name
 *   another program to run with the same arguments (tests, wrappers).
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

#define BS_QUEUE_LINE_MAX (1 << 20)

/* The queues postsuper -d knows. */
static const char *const queue_names[] = {"incoming", "active", "deferred", "hold", "maildrop"};

/* One recipient domain's NDR verdict, cached. */
typedef struct dom_verdict {
    char domain[BS_DOMAIN_MAX + 1];
    int deny;
    char why[BS_DOMAIN_MAX + 48]; /* "ndr entry *: deny" */
} dom_verdict;

typedef struct purge {
    bs_ctl *c;
    dom_verdict *cache;
    size_t ncache;
    char **ids; /* selected, owned */
    size_t nids;
    size_t messages, bounces, bad;
    int failed;            /* a Redis error: stop */
    char null_sender[256]; /* how postqueue -j shows "<>": empty_address_recipient */
} purge;

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

/* reap - wait for pid; 0 when it exited 0, else -1 (printed) */
static int reap(pid_t pid, const char *name)
{
    int st;

    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            bs_ctl_err("waitpid: %s", strerror(errno));
            return -1;
        }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    if (WIFEXITED(st))
        bs_ctl_err("%s exited with status %d", name, WEXITSTATUS(st));
    else
        bs_ctl_err("%s was killed by signal %d", name, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return -1;
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

/* consider - one message: select it, or not; -1 on a Redis error */
static int consider(purge *pg, const bs_ctl_qmsg *m, const char *name, size_t lineno)
{
    const dom_verdict *v = NULL;
    char shown[BS_ADDR_MAX * 4];
    bs_addr a;
    size_t i;

    pg->messages++;
    if (pg->c->opt[BS_OPT_QUEUE] && strcmp(m->queue_name, pg->c->opt[BS_OPT_QUEUE]) != 0)
        return 0;
    /* showq prints the null sender as empty_address_recipient
     * (MAILER-DAEMON); "" is accepted too (--from-json, other tools) */
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
    printf("%-14s %-9s %s%s  (%s)\n", m->queue_id, m->queue_name,
           bs_ctl_safe(m->rcpt[0], strlen(m->rcpt[0]), shown, sizeof(shown)),
           m->nrcpt > 1 ? " ..." : "", v->why);
    char **ids = realloc(pg->ids, (pg->nids + 1) * sizeof(*ids));
    if (!ids || !(ids[pg->nids] = strdup(m->queue_id))) {
        if (ids)
            pg->ids = ids;
        bs_ctl_err("out of memory");
        return -1;
    }
    pg->ids = ids;
    pg->nids++;
    return 0;
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

/* null_sender_name - the instance's empty_address_recipient, which is what
 * "postqueue -j" shows for the null sender; MAILER-DAEMON when postconf
 * cannot say. (cleanup turns a submitted MAILER-DAEMON@... sender into <>,
 * so this bare name in the queue only ever means the null sender.) */
static void null_sender_name(purge *pg)
{
    static const char *const args[] = {"-h", "empty_address_recipient", NULL};
    const char *argv[8];
    char line[256];
    FILE *fp;
    pid_t pid;
    int fd;
    size_t n;

    snprintf(pg->null_sender, sizeof(pg->null_sender), "MAILER-DAEMON");
    if (pg->c->opt[BS_OPT_FROM_JSON])
        return;
    prog_argv(pg->c, "postconf", argv, args);
    if ((pid = spawn((char *const *)argv, 0, &fd)) < 0)
        return;
    if ((fp = fdopen(fd, "r"))) {
        if (fgets(line, sizeof(line), fp) && (n = strcspn(line, "\r\n")) > 0) {
            line[n] = 0;
            snprintf(pg->null_sender, sizeof(pg->null_sender), "%s", line);
        }
        fclose(fp);
    } else {
        close(fd);
    }
    if (reap(pid, argv[0]) < 0)
        snprintf(pg->null_sender, sizeof(pg->null_sender), "MAILER-DAEMON");
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
    for (i = 0; i < pg->nids; i++)
        fprintf(fp, "%s\n", pg->ids[i]);
    werr = fclose(fp) != 0;
    if (reap(pid, argv[0]) < 0 || werr) {
        if (werr)
            bs_ctl_err("cannot write the queue ids to %s", argv[0]);
        return -1;
    }
    return 0;
}

/* bs_ctl_purge_queue - collect, select, list, and with --yes delete */
int bs_ctl_purge_queue(bs_ctl *c, int argc, char **argv)
{
    purge pg = {.c = c};
    const char *q = c->opt[BS_OPT_QUEUE];
    size_t i;
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
    null_sender_name(&pg);
    if (collect(&pg) < 0) {
        rc = BS_CTL_FAIL;
        bs_ctl_err("nothing deleted");
    } else {
        printf("%zu of %zu queued messages are bounces to NDR-denied domains (%zu bounces in "
               "all)\n",
               pg.nids, pg.messages, pg.bounces);
        if (pg.nids && !c->opt[BS_OPT_YES])
            printf("dry run: nothing deleted (run again with --yes to delete them)\n");
        else if (pg.nids && delete_ids(&pg) < 0)
            rc = BS_CTL_FAIL;
        else if (pg.nids)
            printf("handed %zu queue ids to postsuper -d -\n", pg.nids);
        if (pg.bad)
            rc = BS_CTL_FAIL;
    }
    for (i = 0; i < pg.nids; i++)
        free(pg.ids[i]);
    free(pg.ids);
    free(pg.cache);
    return rc;
}
