/*
 * ctl_redis.c - backstopctl's Redis connection (ctl.h)
 *
 * PROVIDES
 *   bs_ctl_connect     connect once to [redis] server (tcp or unix) with a
 *                      deadline, AUTH ([username] password) and SELECT db.
 *                      0, or -1 with the reason printed.
 *   bs_ctl_key         prefix + kind + name.
 *   bs_ctl_cmd*        one command, one reply: the reply, or NULL with the
 *                      problem printed (I/O error, timeout, error reply).
 *   bs_ctl_append/read pipelining: queue, then read the replies in order;
 *                      read gives error replies back to the caller.
 *   bs_ctl_reply_ok    type check with a message.
 *   bs_ctl_hgetall     a whole hash of ours.
 *   bs_ctl_redis_ms    Redis's clock, as the daemon's Lua scripts read it.
 *   bs_ctl_fill_set    a staging set from a member list: pipelined SADD
 *                      batches with a TTL (import, sync).
 *
 * Uses hiredis's synchronous API: redisConnectWithTimeout or
 * redisConnectUnixWithTimeout, then redisSetTimeout, so a dead or frozen
 * Redis costs at most --timeout per reply, never a hang.
 *
 * NEVER
 *   Prints a password. Retries: after an I/O error the context is unusable
 *   and the command fails (exit 1).
 *
 * LIMITS
 *   [redis] sentinel is not followed: the tool talks to [redis] server.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "ctl.h"

#define BS_CTL_MAX_VARARGS 16

/* io_problem - describe a failed context: a timeout says so plainly */
static void io_problem(const bs_ctl *c, const char *what)
{
    const redisContext *rc = c->redis;

    if (rc->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        bs_ctl_err("redis: %s: no answer within %llums (--timeout)", what,
                   (unsigned long long)c->timeout_ms);
    else
        bs_ctl_err("redis: %s: %s", what, rc->errstr[0] ? rc->errstr : "connection lost");
}

/* endpoint_text - "unix:/path" or "tcp:host:port" for messages */
static void endpoint_text(const bs_endpoint *ep, char *out, size_t outsz)
{
    if (ep->type == BS_EP_UNIX)
        snprintf(out, outsz, "unix:%s", ep->path);
    else if (strchr(ep->host, ':'))
        snprintf(out, outsz, "tcp:[%s]:%u", ep->host, ep->port);
    else
        snprintf(out, outsz, "tcp:%s:%u", ep->host, ep->port);
}

/* handshake - AUTH and SELECT; 0 / -1 (printed) */
static int handshake(bs_ctl *c)
{
    const bs_config *cfg = &c->cfg;
    char db[16];
    redisReply *rep;

    if (cfg->password[0]) {
        if (cfg->username[0])
            rep = bs_ctl_cmd(c, "AUTH", cfg->username, cfg->password, (char *)NULL);
        else
            rep = bs_ctl_cmd(c, "AUTH", cfg->password, (char *)NULL);
        if (!rep)
            return -1;
        freeReplyObject(rep);
    }
    if (cfg->db == 0)
        return 0;
    snprintf(db, sizeof(db), "%u", cfg->db);
    rep = bs_ctl_cmd(c, "SELECT", db, (char *)NULL);
    if (!rep)
        return -1;
    freeReplyObject(rep);
    return 0;
}

/* bs_ctl_connect - connect with the deadline, set it for replies, AUTH, SELECT */
int bs_ctl_connect(bs_ctl *c)
{
    const bs_endpoint *ep = &c->cfg.redis;
    struct timeval tv = {.tv_sec = (time_t)(c->timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(c->timeout_ms % 1000) * 1000};
    char where[BS_CFG_PATH_MAX + 16];

    if (c->redis)
        return 0;
    endpoint_text(ep, where, sizeof(where));
    if (ep->type == BS_EP_UNIX)
        c->redis = redisConnectUnixWithTimeout(ep->path, tv);
    else
        c->redis = redisConnectWithTimeout(ep->host, (int)ep->port, tv);
    if (!c->redis) {
        bs_ctl_err("redis: %s: out of memory", where);
        return -1;
    }
    if (c->redis->err) {
        bs_ctl_err("redis: cannot connect to %s ([redis] server in %s): %s", where, c->config_path,
                   c->redis->errstr);
        return -1;
    }
    if (redisSetTimeout(c->redis, tv) != REDIS_OK) {
        bs_ctl_err("redis: %s: cannot set the timeout", where);
        return -1;
    }
    return handshake(c);
}

void bs_ctl_key(const bs_ctl *c, char *out, size_t outsz, const char *kind, const char *name)
{
    snprintf(out, outsz, "%s%s%s", c->cfg.prefix, kind, name ? name : "");
}

/* bs_ctl_cmdargv - one command; error replies become NULL, printed */
redisReply *bs_ctl_cmdargv(bs_ctl *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *rep = redisCommandArgv(c->redis, argc, argv, lens);

    if (!rep) {
        io_problem(c, argv[0]);
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        char msg[256];
        bs_ctl_err("redis: %s: %s", argv[0], bs_ctl_safe(rep->str, rep->len, msg, sizeof(msg)));
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* bs_ctl_cmd - bs_ctl_cmdargv over a NULL-terminated list */
redisReply *bs_ctl_cmd(bs_ctl *c, const char *arg0, ...)
{
    const char *argv[BS_CTL_MAX_VARARGS];
    int argc = 0;
    va_list ap;

    argv[argc++] = arg0;
    va_start(ap, arg0);
    while (argc < BS_CTL_MAX_VARARGS && (argv[argc] = va_arg(ap, const char *)) != NULL)
        argc++;
    va_end(ap);
    return bs_ctl_cmdargv(c, argc, argv, NULL);
}

/* bs_ctl_append - queue a command (sent with the next read) */
int bs_ctl_append(bs_ctl *c, int argc, const char **argv, const size_t *lens)
{
    if (redisAppendCommandArgv(c->redis, argc, argv, lens) != REDIS_OK) {
        io_problem(c, argv[0]);
        return -1;
    }
    return 0;
}

/* bs_ctl_read - the next pipelined reply, error replies included */
redisReply *bs_ctl_read(bs_ctl *c)
{
    void *rep = NULL;

    if (redisGetReply(c->redis, &rep) != REDIS_OK || !rep) {
        io_problem(c, "reply");
        return NULL;
    }
    return rep;
}

/* bs_ctl_reply_ok - type check, with a message naming the command */
int bs_ctl_reply_ok(const redisReply *rep, int type, const char *what)
{
    char msg[256];

    if (rep->type == type)
        return 1;
    if (rep->type == REDIS_REPLY_ERROR)
        bs_ctl_err("redis: %s: %s", what, bs_ctl_safe(rep->str, rep->len, msg, sizeof(msg)));
    else
        bs_ctl_err("redis: %s: unexpected reply (type %d)", what, rep->type);
    return 0;
}

/* bs_ctl_hgetall - a whole hash of ours, type-checked */
redisReply *bs_ctl_hgetall(bs_ctl *c, const char *name)
{
    char key[BS_CTL_KEY_MAX];
    redisReply *rep;

    if (bs_ctl_connect(c) < 0)
        return NULL;
    bs_ctl_key(c, key, sizeof(key), name, NULL);
    if (!(rep = bs_ctl_cmd(c, "HGETALL", key, (char *)NULL)))
        return NULL;
    if (!bs_ctl_reply_ok(rep, REDIS_REPLY_ARRAY, "HGETALL")) {
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* bs_ctl_redis_ms - TIME in ms, computed as the daemon's scripts do */
int bs_ctl_redis_ms(bs_ctl *c, uint64_t *now_ms)
{
    redisReply *rep = bs_ctl_cmd(c, "TIME", (char *)NULL);
    int rc = -1;

    if (!rep)
        return -1;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        rep->element[1]->type == REDIS_REPLY_STRING) {
        /* the daemon's script: now = sec * 1000 + floor(usec / 1000) */
        *now_ms = strtoull(rep->element[0]->str, NULL, 10) * 1000 +
                  strtoull(rep->element[1]->str, NULL, 10) / 1000;
        rc = 0;
    } else {
        bs_ctl_err("redis: TIME: unexpected reply");
    }
    freeReplyObject(rep);
    return rc;
}

/* bs_ctl_fill_set - DEL key, then SADD the members BS_CTL_FILL_BATCH at a
 * round trip (BS_CTL_FILL_PER_CMD per SADD), PEXPIRE ttl_ms after each */
int bs_ctl_fill_set(bs_ctl *c, const char *key, char *const *members, size_t n, const char *ttl_ms,
                    void (*progress)(void *arg, size_t done, size_t total), void *arg)
{
    const char *argv[2 + BS_CTL_FILL_PER_CMD];
    size_t off = 0, i, ncmds;
    redisReply *rep;
    int rc = 0;

    if (!(rep = bs_ctl_cmd(c, "DEL", key, (char *)NULL)))
        return -1;
    freeReplyObject(rep);
    while (off < n && rc == 0) {
        size_t end = off + BS_CTL_FILL_BATCH < n ? off + BS_CTL_FILL_BATCH : n;
        const char *exp[] = {"PEXPIRE", key, ttl_ms};

        for (ncmds = 0; off < end; ncmds++) {
            size_t k = 0;
            argv[k++] = "SADD";
            argv[k++] = key;
            while (off < end && k < 2 + BS_CTL_FILL_PER_CMD)
                argv[k++] = members[off++];
            if (bs_ctl_append(c, (int)k, argv, NULL) < 0)
                return -1;
        }
        if (bs_ctl_append(c, 3, exp, NULL) < 0)
            return -1;
        for (i = 0; i <= ncmds; i++) {
            if (!(rep = bs_ctl_read(c)))
                return -1;
            if (!bs_ctl_reply_ok(rep, REDIS_REPLY_INTEGER, i < ncmds ? "SADD" : "PEXPIRE"))
                rc = -1;
            freeReplyObject(rep);
        }
        if (progress)
            progress(arg, off, n);
    }
    return rc;
}
