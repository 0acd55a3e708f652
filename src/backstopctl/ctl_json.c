/*
 * ctl_json.c - backstopctl's JSON, read and written with jansson
 *
 * PROVIDES
 *   bs_ctl_qjson_parse  one "postqueue -j" line = one JSON object (jansson:
 *                       RFC 8259, the whole line, nothing after it; a
 *                       decoded NUL is refused). Extracts the top-level
 *                       string members queue_name, queue_id, sender, and
 *                       the "address" string of each object in the
 *                       "recipients" array (other elements are skipped).
 *                       0, or -1 with *why (static: valid until the next
 *                       call).
 *   bs_ctl_qmsg_free    frees the recipients.
 *   bs_ctl_jstr         a JSON string of bytes from Redis or a file.
 *   bs_ctl_json_rule    an NDR rule as {"action", "limit", "period_ms", "report"}.
 *   bs_ctl_json_print   writes a --json document: one line on stdout.
 *
 * When a member appears twice, the last one wins (jansson's rule). A
 * string longer than its field (queue_name, queue_id, sender, address) is
 * an error: the line is not used, never truncated.
 *
 * --json OUTPUT
 *   One JSON object on one line of stdout per command run, written with
 *   json_dumpf(JSON_COMPACT): keys in the documented order, strings UTF-8;
 *   diagnostics still go to stderr and the exit status is the same as
 *   without --json. The shapes are documented in backstopctl(8); fields
 *   may be added, never renamed or removed. A byte string that is not
 *   UTF-8 (Redis keeps bytes) is given as bs_ctl_safe shows it ("\xHH").
 *
 * NEVER
 *   Writes JSON by hand (every document is built and escaped by jansson).
 *   Recurses deeper than jansson's own limit (JSON_PARSER_MAX_DEPTH).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl.h"

/* copy_str - a JSON string member into a fixed field; 0, 1 absent or not a
 * string (left empty), -1 too long */
static int copy_str(json_t *obj, const char *name, char *out, size_t outsz)
{
    json_t *v = json_object_get(obj, name);
    size_t n;

    if (!json_is_string(v))
        return 1;
    n = json_string_length(v);
    if (n >= outsz)
        return -1;
    memcpy(out, json_string_value(v), n + 1);
    return 0;
}

/* add_rcpt - one recipient address; 0 / -1 (memory) */
static int add_rcpt(bs_ctl_qmsg *m, const char *address)
{
    char **v = realloc(m->rcpt, (m->nrcpt + 1) * sizeof(*v));

    if (!v)
        return -1;
    m->rcpt = v;
    if (!(v[m->nrcpt] = strdup(address)))
        return -1;
    m->nrcpt++;
    return 0;
}

/* take_members - the members we use, from the parsed object; 0, or -1 with *why */
static int take_members(json_t *obj, bs_ctl_qmsg *m, const char **why)
{
    /* the string members and where they go */
    const struct {
        const char *name;
        char *out;
        size_t outsz;
    } fields[] = {
        {"queue_name", m->queue_name, sizeof(m->queue_name)},
        {"queue_id", m->queue_id, sizeof(m->queue_id)},
        {"sender", m->sender, sizeof(m->sender)},
    };
    char address[BS_ADDR_MAX + 64];
    json_t *rcpts, *r;
    size_t i;
    int got;

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if ((got = copy_str(obj, fields[i].name, fields[i].out, fields[i].outsz)) < 0) {
            *why = "string too long";
            return -1;
        }
        if (got == 0 && fields[i].out == m->sender)
            m->has_sender = 1;
    }
    rcpts = json_object_get(obj, "recipients");
    json_array_foreach(rcpts, i, r)
    {
        if ((got = copy_str(r, "address", address, sizeof(address))) < 0) {
            *why = "string too long";
            return -1;
        }
        if (got == 0 && add_rcpt(m, address) < 0) {
            *why = "out of memory";
            return -1;
        }
    }
    return 0;
}

/* bs_ctl_qjson_parse - one line, one object, nothing after it */
int bs_ctl_qjson_parse(const char *line, size_t len, bs_ctl_qmsg *m, const char **why)
{
    static char msg[JSON_ERROR_TEXT_LENGTH + 32]; /* *why: one line at a time */
    json_error_t err;
    json_t *obj;
    int rc;

    memset(m, 0, sizeof(*m));
    /* jansson reads one value and refuses text after it (no
     * JSON_DISABLE_EOF_CHECK); without JSON_ALLOW_NUL a \u0000 is an error */
    if (!(obj = json_loadb(line, len, 0, &err))) {
        snprintf(msg, sizeof(msg), "not JSON: %s (column %d)", err.text, err.column);
        *why = msg;
        return -1;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        *why = "not a JSON object";
        return -1;
    }
    rc = take_members(obj, m, why);
    json_decref(obj);
    return rc;
}

void bs_ctl_qmsg_free(bs_ctl_qmsg *m)
{
    size_t i;

    for (i = 0; i < m->nrcpt; i++)
        free(m->rcpt[i]);
    free(m->rcpt);
    m->rcpt = NULL;
    m->nrcpt = 0;
}

/* bs_ctl_jstr - bytes as a JSON string: as they are when UTF-8, else escaped */
json_t *bs_ctl_jstr(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len); /* NULL: not UTF-8 */
    char *shown;
    size_t sz = len * 4 + 1;

    if (v || !(shown = malloc(sz)))
        return v;
    v = json_string(bs_ctl_safe(s, len, shown, sz));
    free(shown);
    return v;
}

/* bs_ctl_json_rule - {"action": "limit", "limit": 10, "period_ms": 3600000,
 * "report": false} */
json_t *bs_ctl_json_rule(const bs_ndr_rule *r)
{
    static const char *const actions[] = {
        [BS_NDR_ALLOW] = "allow", [BS_NDR_DENY] = "deny", [BS_NDR_LIMIT] = "limit"};
    int limit = r->action == BS_NDR_LIMIT;

    return json_pack("{s:s, s:o, s:o, s:b}", "action", actions[r->action], "limit",
                     limit ? json_integer(r->limit) : json_null(), "period_ms",
                     limit ? json_integer((json_int_t)r->period_ms) : json_null(), "report",
                     r->report);
}

/* bs_ctl_json_print - one line on stdout; takes doc; rc, or BS_CTL_FAIL
 * when doc is NULL (a json_pack failed: out of memory) */
int bs_ctl_json_print(json_t *doc, int rc)
{
    if (!doc) {
        bs_ctl_err("cannot build the JSON output");
        return BS_CTL_FAIL;
    }
    if (json_dumpf(doc, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6)) < 0) {
        bs_ctl_err("cannot write the JSON output");
        rc = BS_CTL_FAIL;
    }
    fputc('\n', stdout);
    json_decref(doc);
    return rc;
}
