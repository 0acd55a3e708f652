/*
 * ctl_json.c - a minimal, strict JSON scanner for "postqueue -j" lines
 *
 * PROVIDES
 *   bs_ctl_qjson_parse  one line = one JSON object (RFC 8259 syntax: the
 *                       whole grammar is checked, values we do not need
 *                       are skipped). Extracts the top-level string members
 *                       queue_name, queue_id, sender, and the "address"
 *                       string of each object in the "recipients" array.
 *                       0, or -1 with *why (a static string).
 *   bs_ctl_qmsg_free    frees the recipients.
 *
 * Strings are decoded: the escapes \" \\ \/ \b \f \n \r \t \uXXXX (with
 * surrogate pairs) become UTF-8. A decoded NUL, an unpaired surrogate, a raw
 * control character, nesting deeper than JSON_MAX_DEPTH or a string longer
 * than its destination are errors: the line is not used.
 * When a member appears twice, the last one wins (recipients: all kept).
 *
 * NEVER
 *   Reads past len; recurses deeper than JSON_MAX_DEPTH; allocates anything
 *   but the recipient list.
 */
#include <stdlib.h>
#include <string.h>

#include "backstop/ctl.h"

#define JSON_MAX_DEPTH 32

typedef struct scan {
    const char *p, *end;
    const char *why;
} scan;

static int fail(scan *s, const char *why)
{
    if (!s->why)
        s->why = why;
    return -1;
}

static void ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* hex4 - the four hex digits of a \u escape */
static int hex4(scan *s, unsigned *out)
{
    unsigned v = 0;
    int i;

    if (s->end - s->p < 4)
        return fail(s, "truncated \\u escape");
    for (i = 0; i < 4; i++) {
        char ch = *s->p++;
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (unsigned)(ch - 'A' + 10);
        else
            return fail(s, "bad \\u escape");
    }
    *out = v;
    return 0;
}

/* put - append bytes to out (outsz incl. NUL); out NULL = discard */
static int put(scan *s, char *out, size_t outsz, size_t *n, const char *b, size_t len)
{
    if (!out) {
        return 0;
    }
    if (*n + len + 1 > outsz)
        return fail(s, "string too long");
    memcpy(out + *n, b, len);
    *n += len;
    return 0;
}

/* utf8 - code point to UTF-8 bytes; returns the length */
static size_t utf8(unsigned cp, char *b)
{
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    b[0] = (char)(0xf0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* escape - one backslash escape (after the '\\') into out */
static int escape(scan *s, char *out, size_t outsz, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *hit;
    unsigned cp, lo;
    char b[4];

    if (s->p >= s->end)
        return fail(s, "truncated escape");
    if (*s->p && (hit = strchr(from, *s->p))) {
        s->p++;
        return put(s, out, outsz, n, &to[hit - from], 1);
    }
    if (*s->p++ != 'u' || hex4(s, &cp) < 0)
        return fail(s, "bad escape");
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail(s, "unpaired surrogate");
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
            return fail(s, "unpaired surrogate");
        s->p += 2;
        if (hex4(s, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
            return fail(s, "unpaired surrogate");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp == 0)
        return fail(s, "NUL in a string");
    return put(s, out, outsz, n, b, utf8(cp, b));
}

/* string - a JSON string at s->p ('"' expected) into out (NULL: skip) */
static int string(scan *s, char *out, size_t outsz)
{
    size_t n = 0;

    if (s->p >= s->end || *s->p != '"')
        return fail(s, "string expected");
    s->p++;
    while (s->p < s->end && *s->p != '"') {
        const char *run = s->p;
        while (s->p < s->end && *s->p != '"' && *s->p != '\\' && (unsigned char)*s->p >= 0x20)
            s->p++;
        if (put(s, out, outsz, &n, run, (size_t)(s->p - run)) < 0)
            return -1;
        if (s->p < s->end && (unsigned char)*s->p < 0x20)
            return fail(s, "control character in a string");
        if (s->p < s->end && *s->p == '\\') {
            s->p++;
            if (escape(s, out, outsz, &n) < 0)
                return -1;
        }
    }
    if (s->p >= s->end)
        return fail(s, "unterminated string");
    s->p++;
    if (out)
        out[n] = 0;
    return 0;
}

static int value(scan *s, int depth);

/* number - RFC 8259: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? */
static int number(scan *s)
{
    const char *p = s->p;

    if (p < s->end && *p == '-')
        p++;
    if (p < s->end && *p == '0')
        p++;
    else if (p < s->end && *p >= '1' && *p <= '9')
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    else
        return fail(s, "bad value");
    if (p < s->end && *p == '.') {
        if (++p >= s->end || *p < '0' || *p > '9')
            return fail(s, "bad number");
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < s->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return fail(s, "bad number");
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    s->p = p;
    return 0;
}

/* members - the body of an object or array; each element by callback.
 * For objects, the key is decoded into key[] first. */
typedef int member_fn(scan *s, const char *key, int depth, void *arg);

/* members - the elements of an object or array, each by fn (or skipped) */
static int members(scan *s, int object, int depth, member_fn *fn, void *arg)
{
    char key[64];
    char close = object ? '}' : ']';

    if (depth > JSON_MAX_DEPTH)
        return fail(s, "nested too deep");
    s->p++; /* '{' or '[' */
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (;;) {
        ws(s);
        key[0] = 0;
        if (object) {
            /* long keys are skipped, not an error: none of ours is long */
            const char *start = s->p;
            if (string(s, key, sizeof(key)) < 0) {
                if (s->why && strcmp(s->why, "string too long") == 0) {
                    s->why = NULL;
                    s->p = start;
                    key[0] = 0;
                    if (string(s, NULL, 0) < 0)
                        return -1;
                } else {
                    return -1;
                }
            }
            ws(s);
            if (s->p >= s->end || *s->p++ != ':')
                return fail(s, "':' expected");
            ws(s);
        }
        if ((fn ? fn(s, key, depth, arg) : value(s, depth + 1)) < 0)
            return -1;
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 0;
        }
        return fail(s, object ? "',' or '}' expected" : "',' or ']' expected");
    }
}

/* literal - true, false, null */
static int literal(scan *s, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, "bad value");
    s->p += n;
    return 0;
}

/* value - skip any value */
static int value(scan *s, int depth)
{
    if (s->p >= s->end)
        return fail(s, "value expected");
    switch (*s->p) {
    case '"':
        return string(s, NULL, 0);
    case '{':
        return members(s, 1, depth, NULL, NULL);
    case '[':
        return members(s, 0, depth, NULL, NULL);
    case 't':
        return literal(s, "true");
    case 'f':
        return literal(s, "false");
    case 'n':
        return literal(s, "null");
    default:
        return number(s);
    }
}

/* A recipient object: keep its "address". */
typedef struct rcpt_ctx {
    char address[BS_ADDR_MAX + 64];
    int found;
} rcpt_ctx;

/* rcpt_member - a member of one recipient object */
static int rcpt_member(scan *s, const char *key, int depth, void *arg)
{
    rcpt_ctx *r = arg;

    if (strcmp(key, "address") == 0 && s->p < s->end && *s->p == '"') {
        r->found = 1;
        return string(s, r->address, sizeof(r->address));
    }
    return value(s, depth + 1);
}

/* recipients array element: an object with an address, else skipped */
static int rcpt_element(scan *s, const char *key, int depth, void *arg)
{
    bs_ctl_qmsg *m = arg;
    rcpt_ctx r = {.found = 0};
    char **v;

    if (s->p >= s->end || *s->p != '{')
        return value(s, depth + 1);
    if (members(s, 1, depth + 1, rcpt_member, &r) < 0)
        return -1;
    if (!r.found)
        return 0;
    if (!(v = realloc(m->rcpt, (m->nrcpt + 1) * sizeof(*v))) ||
        !(v[m->nrcpt] = strdup(r.address))) {
        if (v)
            m->rcpt = v;
        return fail(s, "out of memory");
    }
    m->rcpt = v;
    m->nrcpt++;
    return 0;
}

/* top_member - the members of the message object we want */
static int top_member(scan *s, const char *key, int depth, void *arg)
{
    bs_ctl_qmsg *m = arg;
    int is_str = s->p < s->end && *s->p == '"';

    if (is_str && strcmp(key, "queue_name") == 0)
        return string(s, m->queue_name, sizeof(m->queue_name));
    if (is_str && strcmp(key, "queue_id") == 0)
        return string(s, m->queue_id, sizeof(m->queue_id));
    if (is_str && strcmp(key, "sender") == 0) {
        m->has_sender = 1;
        return string(s, m->sender, sizeof(m->sender));
    }
    if (strcmp(key, "recipients") == 0 && s->p < s->end && *s->p == '[')
        return members(s, 0, depth + 1, rcpt_element, m);
    return value(s, depth + 1);
}

/* bs_ctl_qjson_parse - one line, one object, nothing after it */
int bs_ctl_qjson_parse(const char *line, size_t len, bs_ctl_qmsg *m, const char **why)
{
    scan s = {.p = line, .end = line + len, .why = NULL};

    memset(m, 0, sizeof(*m));
    ws(&s);
    if (s.p >= s.end || *s.p != '{') {
        *why = "not a JSON object";
        return -1;
    }
    if (members(&s, 1, 1, top_member, m) < 0) {
        *why = s.why ? s.why : "syntax error";
        return -1;
    }
    ws(&s);
    if (s.p != s.end) {
        *why = "text after the object";
        return -1;
    }
    return 0;
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
