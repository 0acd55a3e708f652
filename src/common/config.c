/*
 * config.c - backstop.ini: defaults, loading, checking and printing (config.h)
 *
 * PROVIDES
 *   bs_config_defaults  fill a bs_config with every default (no listener).
 *   bs_config_load      defaults, then the file; 0, or -1 with the first
 *                       problem as "FILE:LINE: [section] key: problem".
 *   bs_config_dump      every effective setting as an ini file that
 *                       bs_config_load reads back to the same bs_config;
 *                       secrets only with BS_DUMP_SECRETS (else a comment
 *                       line says a secret is set).
 *   bs_config_option    the tables' keys, one by one (for the doc tests):
 *                       options[], then src_options[] as "source NAME".
 *   bs_parse_duration, bs_parse_rate, bs_parse_ndr_rule, bs_parse_endpoint
 *                       value parsers; 0, or -1 with *out untouched.
 *   bs_format_ndr_rule  an NDR rule as bs_parse_ndr_rule reads it.
 *   bs_parse_mode, bs_mode_name  the values of the mode HASH (keys.h).
 *
 * HOW
 *   Every key is one row of options[]: section, name, type, where it goes in
 *   bs_config, bounds, default (as it would be written in the file). The
 *   defaults are applied by the same parsers as the file, so the table is the
 *   one place a key is described. A list key (listen, allow, sentinel,
 *   exempt) is a repeated line; its first line replaces the default list.
 *
 *   inih (Debian's libinih 55: INI_MAX_LINE 200, inline comments on, multi-line
 *   values on, no line number for the handler) reads the file through our own
 *   line reader, cfg_reader(). The reader counts lines for the messages and
 *   refuses, before inih sees them, the lines inih would silently misread
 *   (measured on that build):
 *     - lines over BS_CFG_LINE_MAX (197) characters: inih cuts them at 199
 *       and reads the rest as a new line, so "password = <long>evil = 1"
 *       quietly sets a key called "evil";
 *     - indented lines that are not comments: inih appends them to the
 *       previous key as a continuation, even "  [redis]" or "  db = 1";
 *     - a ';' after a blank in a key line: inih starts an inline comment
 *       there and cuts the value ("password = ab ;cd" reads as "ab"). A ';'
 *       anywhere else ("ab;cd") is kept, '#' is only a comment at line start;
 *     - NUL and control characters, unknown sections, text after "]".
 *   The first problem stops the parse (the reader then returns EOF).
 *
 * CHECKS AGAINST THIS HOST
 *   What start-up would find is found here too, so -t and a reload refuse
 *   it with FILE:LINE: [server] user, group and socket_group must exist; a
 *   listener ([server] or [metrics] listen) must be an IP address, not a
 *   host name ([metrics] takes no unix socket); a unix listener's path must not be a file other
 * than a socket, and its directory must exist.
 *
 * NEVER
 *   Allocates: bs_config is fixed-size data, the reader's line is on the
 *   stack. Quotes a password in a message, or prints one unless asked to
 *   (BS_DUMP_SECRETS). Logs: the caller reports err. Resolves host names.
 *   bs_parse_ndr_rule reads more than len bytes (it also parses Redis values).
 *
 * LIMITS AND BUGS
 *   A value cannot begin or end with blanks (inih strips them), cannot hold
 *   " ;" and cannot make its line longer than 197 characters.
 *   A redacted dump (BS_DUMP_REDACTED, what -t -v prints) loads back with
 *   the secrets unset. A list emptied by hand (nallow = 0) is printed
 *   as no lines and reads back as the default list.
 */
#include "backstop/config.h"

#include "backstop/addr.h"
#include "backstop/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <ini.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>

/* inih needs room for "\r\n\0" after the text ("3 more than the longest line") */
#define BS_CFG_LINE_MAX (INI_MAX_LINE - 3)
#define BS_CFG_DEFAULT_LISTEN "inet:127.0.0.1:10040"
#define BS_UNIX_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
_Static_assert(sizeof(((bs_config *)0)->log_socket) == BS_UNIX_PATH_MAX + 1,
               "[log] socket is a sun_path");
#define BS_HOSTNAME_MAX 253
#define BS_QUOTE_MAX 48 /* value characters echoed in a message */

#define MS_SEC UINT64_C(1000)
#define MS_MIN (60 * MS_SEC)
#define MS_HOUR (60 * MS_MIN)
#define MS_DAY (24 * MS_HOUR)

/* The NDR rule also comes from Redis, so its bounds live here, not in a row. */
#define NDR_LIMIT_MAX 1000000
#define NDR_PERIOD_MIN MS_SEC
#define NDR_PERIOD_MAX (30 * MS_DAY)

/* [ratelimit] invalid_recipients = N/WINDOW */
#define RATE_LIMIT_MAX 100000
#define RATE_WINDOW_MIN MS_SEC
#define RATE_WINDOW_MAX (7 * MS_DAY)

typedef struct option option;

/*
 * opt_type - how one kind of value is read and written. parse() stores into
 * dst (the field, or the list slot) and returns 0, or returns -1 with a
 * phrase that follows the quoted value in why ("is not a duration").
 * format() writes the value as the file would hold it.
 */
typedef struct opt_type {
    int (*parse)(const option *o, const char *v, void *dst, char *why, size_t whysz);
    void (*format)(const option *o, const void *src, char *buf, size_t size);
} opt_type;

enum { F_LIST = 1, F_SECRET = 2 };
/* [source NAME] rows: the source types a key belongs to (bit 2 + type) */
#define F_SRC(t) (1u << (1 + (t)))
#define F_SRC_ALL                                                                                  \
    (F_SRC(BS_SRC_LDAP) | F_SRC(BS_SRC_POSTFIX) | F_SRC(BS_SRC_FILE) | F_SRC(BS_SRC_COMMAND))

struct option {
    const char *section;
    const char *name;
    const opt_type *type;
    size_t off;        /* field, or first list element, in bs_config */
    size_t size;       /* field size, or list element size */
    size_t aux;        /* list: offset of the size_t count; rate: window - limit */
    size_t cap;        /* list: number of slots */
    uint64_t min, max; /* numbers and durations (ms): inclusive */
    const void *extra; /* enum names, string class, endpoint prefix */
    const char *def;   /* default as written in the file; lists: blank-separated */
    unsigned flags;    /* F_LIST, F_SECRET */
};

typedef struct enum_name {
    const char *name;
    int value;
} enum_name;

/* str_class - which bytes a string key accepts, and how to say so */
typedef struct str_class {
    int (*ok)(unsigned char c);
    const char *what;
} str_class;

/* ---------------------------------------------------------------- helpers */

/* reason - format a why phrase; returns -1 so a parser can return it */
static int reason(char *why, size_t whysz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reason(char *why, size_t whysz, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, whysz, fmt, ap);
    va_end(ap);
    return -1;
}

/* quote - "value" for messages: escaped, at most BS_QUOTE_MAX bytes shown */
static const char *quote(const char *s, size_t len, char *buf, size_t size)
{
    size_t o = 0, i;

    buf[o++] = '"';
    for (i = 0; i < len && i < BS_QUOTE_MAX && o + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(buf + o, size - o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    if (i < len)
        o += (size_t)snprintf(buf + o, size - o, "...");
    snprintf(buf + o, size - o, "\"");
    return buf;
}

/* keyname - a key as typed, for messages: plain if it looks like one, else quoted */
static const char *keyname(const char *name, char *buf, size_t size)
{
    size_t len = strlen(name);

    if (len > 0 && len <= BS_QUOTE_MAX &&
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == len)
        return name;
    return quote(name, len, buf, size);
}

/* copy_field - store a string of len bytes, zero-filling the whole field */
static void copy_field(char *dst, size_t size, const char *s, size_t len)
{
    memset(dst, 0, size);
    memcpy(dst, s, len < size ? len : size - 1);
}

static int is_blank(int c)
{
    return c == ' ' || c == '\t';
}

/*
 * parse_digits - decimal digits only. Returns 0, -1 if s is empty or holds
 * anything but digits, -2 if the number does not fit in 64 bits (so the
 * caller can say "out of range" rather than "not a number").
 */
static int parse_digits(const char *s, size_t len, uint64_t *out)
{
    uint64_t n = 0;
    int over = 0;

    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (n > (UINT64_MAX - d) / 10)
            over = 1;
        n = n * 10 + d;
    }
    *out = n;
    return over ? -2 : 0;
}

static const struct duration_unit {
    const char *suffix;
    uint64_t ms;
} duration_units[] = {
    {"d", MS_DAY}, {"h", MS_HOUR}, {"m", MS_MIN}, {"s", MS_SEC}, {"ms", 1}, {"", MS_SEC},
};

/*
 * parse_duration - DIGITS UNIT, UNIT one of ms s m h d or none (seconds).
 * Returns 0, -1 (syntax) or -2 (overflows uint64 milliseconds).
 */
static int parse_duration(const char *s, size_t len, uint64_t *ms)
{
    size_t ndig = 0;
    uint64_t n;
    int rc;

    while (ndig < len && s[ndig] >= '0' && s[ndig] <= '9')
        ndig++;
    rc = parse_digits(s, ndig, &n);
    if (rc == -1)
        return -1;
    for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++) {
        const struct duration_unit *u = &duration_units[i];
        if (strlen(u->suffix) != len - ndig || memcmp(s + ndig, u->suffix, len - ndig) != 0)
            continue;
        if (rc == -2 || n > UINT64_MAX / u->ms)
            return -2;
        *ms = n * u->ms;
        return 0;
    }
    return -1;
}

/* format_duration - the largest unit that divides ms exactly ("330s", "10m") */
static void format_duration(uint64_t ms, char *buf, size_t size)
{
    static const struct duration_unit units[] = {
        {"d", MS_DAY}, {"h", MS_HOUR}, {"m", MS_MIN}, {"s", MS_SEC}};

    for (size_t i = 0; ms != 0 && i < sizeof units / sizeof units[0]; i++) {
        if (ms % units[i].ms == 0) {
            snprintf(buf, size, "%" PRIu64 "%s", ms / units[i].ms, units[i].suffix);
            return;
        }
    }
    snprintf(buf, size, "%" PRIu64 "%s", ms, ms ? "ms" : "s");
}

/*
 * parse_rate - "N/DURATION" with N >= 1 and DURATION > 0, or exactly "0"
 * (n = 0, period 0: disabled). Returns 0, -1 (syntax) or -2 (overflow).
 */
static int parse_rate(const char *s, size_t len, uint32_t *n, uint64_t *period_ms)
{
    const char *slash = memchr(s, '/', len);
    uint64_t count, ms;
    int rc, over;

    if (len == 1 && s[0] == '0') {
        *n = 0;
        *period_ms = 0;
        return 0;
    }
    if (slash == NULL)
        return -1;
    rc = parse_digits(s, (size_t)(slash - s), &count);
    if (rc == -1)
        return -1;
    over = rc == -2 || count > UINT32_MAX;
    rc = parse_duration(slash + 1, len - (size_t)(slash - s) - 1, &ms);
    if (rc == -1 || (!over && count == 0) || (rc == 0 && ms == 0))
        return -1;
    if (over || rc == -2)
        return -2;
    *n = (uint32_t)count;
    *period_ms = ms;
    return 0;
}

/* valid_hostname - letters, digits, '-' and '.', labels of 1..63 bytes */
static int valid_hostname(const char *s, size_t len)
{
    size_t label = 0;
    int only_digits_and_dots = 1;

    if (len == 0 || len > BS_HOSTNAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!isalnum(c) && c != '-')
            return 0;
        if (label == 0 && c == '-')
            return 0;
        if (!isdigit(c))
            only_digits_and_dots = 0;
        if (++label > 63)
            return 0;
    }
    /* "256.1.1.1" or "10.1" is a mistyped address, not a name to look up */
    return label > 0 && s[len - 1] != '-' && !only_digits_and_dots;
}

/*
 * parse_hostport - "HOST:PORT" or "[IPV6]:PORT" into out (type BS_EP_INET,
 * host without brackets). Returns 0, or -1 with a why phrase.
 */
static int parse_hostport(const char *s, bs_endpoint *out, char *why, size_t whysz)
{
    const char *host = s, *colon;
    size_t hostlen;
    uint64_t port;
    char tmp[BS_CFG_STR_MAX];
    unsigned char addr[16];

    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return reason(why, whysz, "is not [IPV6]:PORT");
        host = s + 1;
        hostlen = (size_t)(close - host);
        colon = close + 1;
        if (hostlen == 0 || hostlen >= sizeof tmp)
            return reason(why, whysz, "does not hold an IPv6 address in brackets");
        copy_field(tmp, sizeof tmp, host, hostlen);
        if (inet_pton(AF_INET6, tmp, addr) != 1)
            return reason(why, whysz, "does not hold an IPv6 address in brackets");
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return reason(why, whysz, "has no :PORT");
        hostlen = (size_t)(colon - host);
        if (memchr(host, ':', hostlen) != NULL)
            return reason(why, whysz, "has an IPv6 address that is not in brackets ([::1]:PORT)");
        if (hostlen >= sizeof tmp)
            return reason(why, whysz, "has a host longer than %zu characters", sizeof tmp - 1);
        copy_field(tmp, sizeof tmp, host, hostlen);
        if (inet_pton(AF_INET, tmp, addr) != 1 && !valid_hostname(host, hostlen))
            return reason(why, whysz, "does not hold an IPv4 address or a host name");
    }
    if (parse_digits(colon + 1, strlen(colon + 1), &port) != 0 || port < 1 || port > 65535)
        return reason(why, whysz, "does not end in a port 1..65535");
    memset(out, 0, sizeof *out);
    out->type = BS_EP_INET;
    copy_field(out->host, sizeof out->host, host, hostlen);
    out->port = (unsigned)port;
    return 0;
}

/* parse_endpoint - "inet:" or "tcp:" HOST:PORT, or "unix:/PATH" */
static int parse_endpoint(const char *s, bs_endpoint *out, char *why, size_t whysz)
{
    if (strncmp(s, "inet:", 5) == 0)
        return parse_hostport(s + 5, out, why, whysz);
    if (strncmp(s, "tcp:", 4) == 0)
        return parse_hostport(s + 4, out, why, whysz);
    if (strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        size_t len = strlen(path);
        if (path[0] != '/')
            return reason(why, whysz, "is not unix:/ABSOLUTE/PATH");
        if (len > BS_UNIX_PATH_MAX)
            return reason(why, whysz, "has a socket path longer than %zu bytes",
                          (size_t)BS_UNIX_PATH_MAX);
        for (size_t i = 0; i < len; i++) {
            if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
                return reason(why, whysz, "has a control character in its path");
        }
        memset(out, 0, sizeof *out);
        out->type = BS_EP_UNIX;
        copy_field(out->path, sizeof out->path, path, len);
        return 0;
    }
    return reason(why, whysz, "does not start with inet:, tcp: or unix:");
}

/* format_hostport - "HOST:PORT", brackets around an IPv6 host */
static void format_hostport(const bs_endpoint *ep, char *buf, size_t size)
{
    if (strchr(ep->host, ':') != NULL)
        snprintf(buf, size, "[%s]:%u", ep->host, ep->port);
    else
        snprintf(buf, size, "%s:%u", ep->host, ep->port);
}

/* ------------------------------------------------------------ value types */

static int uint_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    uint64_t n;
    int rc = parse_digits(v, strlen(v), &n);

    if (rc == -1)
        return reason(why, whysz, "is not a number");
    if (rc == -2 || n < o->min || n > o->max)
        return reason(why, whysz, "is out of range (%" PRIu64 "..%" PRIu64 ")", o->min, o->max);
    *(unsigned *)dst = (unsigned)n;
    return 0;
}

static void uint_format(const option *o, const void *src, char *buf, size_t size)
{
    (void)o;
    snprintf(buf, size, "%u", *(const unsigned *)src);
}

/* octal_parse - a file mode: octal digits only, leading 0 optional */
static int octal_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    size_t len = strlen(v);
    uint64_t n = 0;

    if (len == 0 || len > 21 || strspn(v, "01234567") != len) /* 21 digits fit 63 bits */
        return reason(why, whysz, "is not an octal mode (e.g. 0660)");
    for (size_t i = 0; i < len; i++)
        n = n * 8 + (uint64_t)(v[i] - '0');
    if (n < o->min || n > o->max)
        return reason(why, whysz, "is out of range (%04" PRIo64 "..%04" PRIo64 ")", o->min, o->max);
    *(unsigned *)dst = (unsigned)n;
    return 0;
}

static void octal_format(const option *o, const void *src, char *buf, size_t size)
{
    (void)o;
    snprintf(buf, size, "%04o", *(const unsigned *)src);
}

static int duration_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    char lo[32], hi[32];
    uint64_t ms;
    int rc = parse_duration(v, strlen(v), &ms);

    if (rc == -1)
        return reason(why, whysz, "is not a duration (use ms, s, m, h, d)");
    format_duration(o->min, lo, sizeof lo);
    format_duration(o->max, hi, sizeof hi);
    if (rc == -2 || ms < o->min || ms > o->max)
        return reason(why, whysz, "is out of range (%s..%s)", lo, hi);
    *(uint64_t *)dst = ms;
    return 0;
}

static void duration_format(const option *o, const void *src, char *buf, size_t size)
{
    (void)o;
    format_duration(*(const uint64_t *)src, buf, size);
}

static int text_char(unsigned char c)
{
    return c >= 0x20 && c != 0x7f;
}

static int token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static int delim_char(unsigned char c)
{
    return token_char(c) && c != '@';
}

static const str_class str_text = {text_char, "control characters"};
static const str_class str_token = {token_char, "characters other than printable ASCII without "
                                                "blanks"};
static const str_class str_delim = {delim_char, "characters other than printable ASCII without "
                                                "blanks and '@'"};

/* string_parse - length below the field size, every byte in the key's class */
static int string_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    const str_class *cls = o->extra;
    size_t len = strlen(v);

    if (len >= o->size)
        return reason(why, whysz, "is longer than %zu characters", o->size - 1);
    for (size_t i = 0; i < len; i++) {
        if (!cls->ok((unsigned char)v[i]))
            return reason(why, whysz, "contains %s", cls->what);
    }
    copy_field(dst, o->size, v, len);
    return 0;
}

static void string_format(const option *o, const void *src, char *buf, size_t size)
{
    (void)o;
    snprintf(buf, size, "%s", (const char *)src);
}

/* enum_parse - one of the row's words, case-insensitive; stored as its int */
static int enum_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    const enum_name *e;
    size_t n = 0;

    for (e = o->extra; e->name != NULL; e++) {
        if (strcasecmp(v, e->name) == 0) {
            *(int *)dst = e->value;
            return 0;
        }
    }
    n = (size_t)snprintf(why, whysz, "is not one of:");
    for (e = o->extra; e->name != NULL && n < whysz; e++)
        n += (size_t)snprintf(why + n, whysz - n, "%s %s", e == o->extra ? "" : ",", e->name);
    return -1;
}

static void enum_format(const option *o, const void *src, char *buf, size_t size)
{
    for (const enum_name *e = o->extra; e->name != NULL; e++) {
        if (e->value == *(const int *)src) {
            snprintf(buf, size, "%s", e->name);
            return;
        }
    }
    snprintf(buf, size, "%d", *(const int *)src); /* not loadable: says what is wrong */
}

/* facility_parse - a name log.c knows, stored in lower case */
static int facility_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    size_t len = strlen(v);
    char *out = dst;

    if (len >= o->size || !bs_log_facility_valid(v))
        return reason(why, whysz, "is not a syslog facility (mail, daemon, user, local0..local7)");
    memset(out, 0, o->size);
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)v[i]);
    return 0;
}

/* socket_path_parse - an absolute path that fits sun_path (the field is
 * its size): [log] socket. cfg_reader already refused control characters. */
static int socket_path_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    size_t len = strlen(v);

    if (v[0] != '/')
        return reason(why, whysz, "is not an absolute path");
    if (len >= o->size)
        return reason(why, whysz, "is longer than %zu bytes (a socket path)", o->size - 1);
    copy_field(dst, o->size, v, len);
    return 0;
}

/*
 * listen_path_check - what -t can know about a unix listener's path without
 * binding: it must not be a file other than a socket (backstopd removes
 * only stale sockets), and its directory must exist. A path we may not
 * look at (EACCES: -t run by another user) is left to start-up.
 */
static int listen_path_check(const char *path, char *why, size_t whysz)
{
    struct stat st;
    char dir[BS_CFG_PATH_MAX];
    size_t n = (size_t)(strrchr(path, '/') - path);

    if (lstat(path, &st) == 0)
        return S_ISSOCK(st.st_mode) ? 0
                                    : reason(why, whysz,
                                             "names a file that is not a socket; backstopd "
                                             "only ever replaces a stale socket");
    if (errno == EACCES)
        return 0;
    if (errno != ENOENT)
        return reason(why, whysz, "cannot be used: %s", strerror(errno));
    copy_field(dir, sizeof dir, path, n > 0 ? n : 1);
    if (stat(dir, &st) != 0 && errno != EACCES)
        return reason(why, whysz, "cannot be created: %s: %s", dir, strerror(errno));
    return 0;
}

/*
 * endpoint_parse - o->extra is the TCP prefix: "inet" rows are listeners
 * ([server] listen, [metrics] listen), which take IP addresses only (no
 * DNS at start or on the loop) and a usable unix path.
 */
static int endpoint_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    const bs_endpoint *ep = dst;
    unsigned char addr[16];
    char sub[160];

    if (parse_endpoint(v, dst, sub, sizeof sub) < 0)
        return reason(why, whysz, "%s (use %s:HOST:PORT, %s:[IPV6]:PORT or unix:/PATH)", sub,
                      (const char *)o->extra, (const char *)o->extra);
    if (strcmp(o->extra, "inet") != 0)
        return 0;
    if (ep->type == BS_EP_UNIX && strcmp(o->section, "metrics") == 0)
        return reason(why, whysz, "is a unix socket; metrics are served on inet:IP:PORT only");
    if (ep->type == BS_EP_UNIX)
        return listen_path_check(ep->path, why, whysz);
    if (inet_pton(AF_INET, ep->host, addr) != 1 && inet_pton(AF_INET6, ep->host, addr) != 1)
        return reason(why, whysz,
                      "has a host name; a listener needs an IP address "
                      "(e.g. inet:127.0.0.1:%u or inet:[::1]:%u)",
                      ep->port, ep->port);
    return 0;
}

/* endpoint_format - o->extra is the prefix written for TCP: "inet" or "tcp" */
static void endpoint_format(const option *o, const void *src, char *buf, size_t size)
{
    const bs_endpoint *ep = src;
    char hp[BS_CFG_STR_MAX + 16];

    if (ep->type == BS_EP_UNIX) {
        snprintf(buf, size, "unix:%s", ep->path);
        return;
    }
    format_hostport(ep, hp, sizeof hp);
    snprintf(buf, size, "%s:%s", (const char *)o->extra, hp);
}

/* sentinel_parse - "HOST:PORT"; a "tcp:" in front is accepted too */
static int sentinel_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    char sub[160];

    (void)o;
    if (strncmp(v, "unix:", 5) == 0)
        return reason(why, whysz, "is a UNIX socket; Sentinels are reached over TCP");
    if (strncmp(v, "tcp:", 4) == 0)
        v += 4;
    if (parse_hostport(v, dst, sub, sizeof sub) < 0)
        return reason(why, whysz, "%s (use HOST:PORT or [IPV6]:PORT)", sub);
    return 0;
}

static void sentinel_format(const option *o, const void *src, char *buf, size_t size)
{
    (void)o;
    format_hostport(src, buf, size);
}

static int cidr_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    (void)o;
    if (bs_cidr_parse(v, dst) < 0)
        return reason(why, whysz,
                      "is not an address or a network with its host bits zero "
                      "(e.g. 192.0.2.0/24, 2001:db8::/32)");
    return 0;
}

/* cidr_format - IPv4-mapped networks print as IPv4, as they were written */
static void cidr_format(const option *o, const void *src, char *buf, size_t size)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const bs_cidr *net = src;
    char text[INET6_ADDRSTRLEN];

    (void)o;
    if (net->bits >= 96 && memcmp(net->addr, v4mapped, sizeof v4mapped) == 0) {
        inet_ntop(AF_INET, net->addr + 12, text, sizeof text);
        snprintf(buf, size, "%s/%u", text, net->bits - 96);
    } else {
        inet_ntop(AF_INET6, net->addr, text, sizeof text);
        snprintf(buf, size, "%s/%u", text, net->bits);
    }
}

static int ndr_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    (void)o;
    if (bs_parse_ndr_rule(v, strlen(v), dst) < 0)
        return reason(why, whysz,
                      "is not allow, deny or limit N/PERIOD (N 1..%d, PERIOD 1s..30d), "
                      "optionally followed by report",
                      NDR_LIMIT_MAX);
    return 0;
}

static void ndr_format(const option *o, const void *src, char *buf, size_t size)
{
    (void)o;
    bs_format_ndr_rule(src, buf, size);
}

/* rate_parse - dst is the uint32_t limit; the window is o->aux bytes further */
static int rate_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    uint32_t n;
    uint64_t ms;
    int rc = parse_rate(v, strlen(v), &n, &ms);

    if (rc == -1)
        return reason(why, whysz, "is not N/WINDOW (e.g. 20/10m) or 0 (off)");
    if (rc == -2 || n > RATE_LIMIT_MAX ||
        (n != 0 && (ms < RATE_WINDOW_MIN || ms > RATE_WINDOW_MAX)))
        return reason(why, whysz, "is out of range (N 1..%d, WINDOW 1s..7d)", RATE_LIMIT_MAX);
    *(uint32_t *)dst = n;
    *(uint64_t *)((char *)dst + o->aux) = ms;
    return 0;
}

static void rate_format(const option *o, const void *src, char *buf, size_t size)
{
    uint32_t n = *(const uint32_t *)src;
    char window[32];

    format_duration(*(const uint64_t *)((const char *)src + o->aux), window, sizeof window);
    if (n == 0)
        snprintf(buf, size, "0");
    else
        snprintf(buf, size, "%" PRIu32 "/%s", n, window);
}

/* percent_parse - "20%" or "20", within the row's bounds */
static int percent_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    size_t len = strlen(v);
    uint64_t n;

    if (len > 0 && v[len - 1] == '%')
        len--;
    if (parse_digits(v, len, &n) == -1)
        return reason(why, whysz, "is not a percentage (e.g. 20%%)");
    if (n < o->min || n > o->max)
        return reason(why, whysz, "is out of range (%" PRIu64 "%%..%" PRIu64 "%%)", o->min, o->max);
    *(unsigned *)dst = (unsigned)n;
    return 0;
}

static void percent_format(const option *o, const void *src, char *buf, size_t size)
{
    (void)o;
    snprintf(buf, size, "%u%%", *(const unsigned *)src);
}

/* domain_parse - a domain in the daemon's normal form (addr.h), stored so */
static int domain_parse(const option *o, const char *v, void *dst, char *why, size_t whysz)
{
    char norm[BS_DOMAIN_MAX + 1];
    int len = bs_domain_norm(v, strlen(v), norm);

    if (len < 0)
        return reason(why, whysz, "is not a domain name");
    if ((size_t)len >= o->size)
        return reason(why, whysz, "is longer than %zu characters", o->size - 1);
    copy_field(dst, o->size, norm, (size_t)len);
    return 0;
}

static const opt_type t_uint = {uint_parse, uint_format};
static const opt_type t_octal = {octal_parse, octal_format};
static const opt_type t_duration = {duration_parse, duration_format};
static const opt_type t_string = {string_parse, string_format};
static const opt_type t_enum = {enum_parse, enum_format};
static const opt_type t_facility = {facility_parse, string_format};
static const opt_type t_sockpath = {socket_path_parse, string_format};
static const opt_type t_endpoint = {endpoint_parse, endpoint_format};
static const opt_type t_sentinel = {sentinel_parse, sentinel_format};
static const opt_type t_cidr = {cidr_parse, cidr_format};
static const opt_type t_ndr = {ndr_parse, ndr_format};
static const opt_type t_rate = {rate_parse, rate_format};
static const opt_type t_percent = {percent_parse, percent_format};
static const opt_type t_domain = {domain_parse, string_format};

/* ------------------------------------------------------------ the table */

static const enum_name modes[] = {
    {"enforce", BS_MODE_ENFORCE}, {"report", BS_MODE_REPORT}, {NULL, 0}};
static const enum_name on_errors[] = {
    {"defer", BS_ON_ERROR_DEFER}, {"dunno", BS_ON_ERROR_DUNNO}, {NULL, 0}};
static const enum_name harvest_new[] = {{"greylist", BS_HARVEST_GREYLIST},
                                        {"defer", BS_HARVEST_DEFER},
                                        {"normal", BS_HARVEST_NORMAL},
                                        {NULL, 0}};
static const enum_name levels[] = {{"error", BS_LOG_ERROR},
                                   {"warn", BS_LOG_WARN},
                                   {"info", BS_LOG_INFO},
                                   {"debug", BS_LOG_DEBUG},
                                   {NULL, 0}};

#define FIELD_SIZE(f) sizeof(((bs_config *)0)->f)
#define FIELD(f) offsetof(bs_config, f), FIELD_SIZE(f), 0, 0 /* off, size, aux, cap */
#define ROW(sec, key, type, where, lo, hi, extra, def, flags)                                      \
    {                                                                                              \
        sec, key, &type, where, lo, hi, extra, def, flags                                          \
    }

/* One macro per kind of key, as Redis's createIntConfig() and friends. */
#define NUMBER(sec, key, f, lo, hi, def) ROW(sec, key, t_uint, FIELD(f), lo, hi, NULL, def, 0)
#define OCTAL(sec, key, f, lo, hi, def) ROW(sec, key, t_octal, FIELD(f), lo, hi, NULL, def, 0)
#define DURATION(sec, key, f, lo, hi, def) ROW(sec, key, t_duration, FIELD(f), lo, hi, NULL, def, 0)
#define STRING(sec, key, f, cls, def, fl) ROW(sec, key, t_string, FIELD(f), 0, 0, &cls, def, fl)
#define ENUM(sec, key, f, names, def) ROW(sec, key, t_enum, FIELD(f), 0, 0, names, def, 0)
#define FACILITY(sec, key, f, def) ROW(sec, key, t_facility, FIELD(f), 0, 0, NULL, def, 0)
#define ENDPOINT(sec, key, f, tcp, def) ROW(sec, key, t_endpoint, FIELD(f), 0, 0, tcp, def, 0)
#define NDR(sec, key, f, def) ROW(sec, key, t_ndr, FIELD(f), 0, 0, NULL, def, 0)
/* the limit field; aux reaches the window field from it */
#define RATE(sec, key, n, w, def) ROW(sec, key, t_rate, RATE_WHERE(n, w), 0, 0, NULL, def, 0)
#define RATE_WHERE(n, w)                                                                           \
    offsetof(bs_config, n), FIELD_SIZE(n), offsetof(bs_config, w) - offsetof(bs_config, n), 0
/* a repeated key: elements of array f, their number in count */
#define LIST(sec, key, type, f, count, extra, def)                                                 \
    ROW(sec, key, type, LIST_WHERE(f, count), 0, 0, extra, def, F_LIST)
#define LIST_WHERE(f, n)                                                                           \
    offsetof(bs_config, f), FIELD_SIZE(f[0]), offsetof(bs_config, n),                              \
        FIELD_SIZE(f) / FIELD_SIZE(f[0])

#define LOOPBACK "127.0.0.0/8 ::1/128"

static const enum_name yes_no[] = {{"yes", 1}, {"no", 0}, {NULL, 0}};

/* The keys, in the order bs_config_dump prints them. Durations in ms. */
/* clang-format off */
static const option options[] = {
    LIST    ("server", "listen", t_endpoint, listen, nlisten, "inet", NULL),
    OCTAL   ("server", "socket_mode", socket_mode, 0, 0777, "0660"),
    STRING  ("server", "socket_group", socket_group, str_token, "", 0),
    LIST    ("server", "allow", t_cidr, allow, nallow, NULL, LOOPBACK),
    NUMBER  ("server", "max_connections", max_connections, 1, 100000, "1000"),
    DURATION("server", "idle_timeout", idle_timeout_ms, MS_SEC, MS_DAY, "330s"),
    STRING  ("server", "user", user, str_token, "", 0),
    STRING  ("server", "group", group, str_token, "", 0),

    ENDPOINT("redis", "server", redis, "tcp", "tcp:127.0.0.1:6379"),
    STRING  ("redis", "username", username, str_token, "", 0),
    STRING  ("redis", "password", password, str_text, "", F_SECRET),
    NUMBER  ("redis", "db", db, 0, 1000, "0"),
    STRING  ("redis", "prefix", prefix, str_token, "backstop:", 0),
    DURATION("redis", "timeout", timeout_ms, 10, 60 * MS_SEC, "300ms"),
    DURATION("redis", "connect_timeout", connect_timeout_ms, 10, 60 * MS_SEC, "1s"),
    NUMBER  ("redis", "max_pending", max_pending, 1, 1000000, "4096"),
    ENUM    ("redis", "mirror", mirror, yes_no, "yes"),
    DURATION("redis", "max_stale", max_stale_ms, 0, MS_DAY, "5m"),
    LIST    ("redis", "sentinel", t_sentinel, sentinels, nsentinels, NULL, NULL),
    STRING  ("redis", "master_name", master_name, str_token, "", 0),
    STRING  ("redis", "sentinel_password", sentinel_password, str_text, "", F_SECRET),

    ENUM    ("policy", "mode", mode, modes, "enforce"),
    ENUM    ("policy", "on_redis_error", on_redis_error, on_errors, "defer"),
    STRING  ("policy", "recipient_delimiter", recipient_delimiter, str_delim, "+", 0),
    NDR     ("policy", "ndr_default", ndr_default, "deny"),
    DURATION("policy", "max_directory_age", max_directory_age_ms, 0, 365 * MS_DAY, "0"),

    RATE    ("ratelimit", "invalid_recipients", invalid_limit, invalid_window_ms, "20/10m"),
    DURATION("ratelimit", "block_time", block_time_ms, MS_SEC, 30 * MS_DAY, "1h"),
    NUMBER  ("ratelimit", "ipv6_prefix", ipv6_prefix, 1, 128, "64"),
    LIST    ("ratelimit", "exempt", t_cidr, exempt, nexempt, NULL, LOOPBACK),

    RATE    ("harvest", "threshold", harvest_limit, harvest_window_ms, "200/10m"),
    DURATION("harvest", "duration", harvest_duration_ms, MS_SEC, 30 * MS_DAY, "1h"),
    RATE    ("harvest", "client_limit", harvest_client_limit, harvest_client_window_ms, "3/1h"),
    ENUM    ("harvest", "new_clients", harvest_new_clients, harvest_new, "greylist"),
    DURATION("harvest", "retry_after", harvest_retry_after_ms, MS_SEC, MS_DAY, "5m"),
    DURATION("harvest", "retry_window", harvest_retry_window_ms, MS_SEC, 7 * MS_DAY, "4h"),
    DURATION("harvest", "known_client_age", harvest_known_age_ms, MS_SEC, 365 * MS_DAY, "30d"),

    LIST    ("metrics", "listen", t_endpoint, metrics, nmetrics, "inet", NULL),

    ENUM    ("log", "level", log_level, levels, "info"),
    FACILITY("log", "syslog_facility", syslog_facility, "mail"),
    ROW     ("log", "socket", t_sockpath, FIELD(log_socket), 0, 0, NULL, "/dev/log", 0),

    ROW     ("sync", "max_shrink", t_percent, FIELD(sync_max_shrink), 0, 100, NULL, "20%", 0),
    ENUM    ("sync", "add_domains", sync_add_domains, yes_no, "no"),
};
/* clang-format on */

#define NOPTIONS (sizeof options / sizeof options[0])

/* find_option - the row for section/name, or NULL */
static const option *find_option(const char *section, const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (strcmp(options[i].section, section) == 0 && strcmp(options[i].name, name) == 0)
            return &options[i];
    }
    return NULL;
}

static const option *find_any_section(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    }
    return NULL;
}

static int known_section(const char *s, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (strlen(options[i].section) == len && memcmp(options[i].section, s, len) == 0)
            return 1;
    }
    return 0;
}

/* section_names - "server, redis, ...": every section of the table, in its
 * order (the rows of a section are together); truncated to outsz */
static void section_names(char *out, size_t outsz)
{
    size_t len = 0;

    out[0] = '\0';
    for (size_t i = 0; i < NOPTIONS && len < outsz; i++) {
        if (i > 0 && strcmp(options[i].section, options[i - 1].section) == 0)
            continue;
        int n = snprintf(out + len, outsz - len, "%s%s", len ? ", " : "", options[i].section);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

/* The list helpers take the struct a row's offsets are in: bs_config, or a
 * bs_source for the [source NAME] rows. */
static size_t *list_count(const option *o, void *cfg)
{
    return (size_t *)((char *)cfg + o->aux);
}

/*
 * list_slot - the next free element of a list, zeroed, or NULL when full.
 * The caller bumps the count once the value parsed.
 */
static void *list_slot(const option *o, void *cfg)
{
    size_t n = *list_count(o, cfg);
    char *slot;

    if (n >= o->cap)
        return NULL;
    slot = (char *)cfg + o->off + n * o->size;
    memset(slot, 0, o->size);
    return slot;
}

/* list_has - 1 if the n-th (just parsed) element equals an earlier one */
static int list_has(const option *o, const void *cfg, size_t n)
{
    const char *base = (const char *)cfg + o->off;

    for (size_t i = 0; i < n; i++) {
        if (memcmp(base + i * o->size, base + n * o->size, o->size) == 0)
            return 1;
    }
    return 0;
}

/* apply_defaults - every row's default into base, through the row's own parser */
static void apply_defaults(const option *table, size_t n, void *cfg)
{
    char why[256], word[BS_CFG_STR_MAX];

    for (size_t i = 0; i < n; i++) {
        const option *o = &table[i];
        const char *d = o->def;
        if (d == NULL)
            continue;
        if (!(o->flags & F_LIST)) {
            if (o->type->parse(o, d, (char *)cfg + o->off, why, sizeof why) < 0)
                bs_panic("config: default %s = %s %s", o->name, d, why);
            continue;
        }
        while (*d != '\0') {
            size_t len = strcspn(d, " ");
            void *slot = list_slot(o, cfg);
            copy_field(word, sizeof word, d, len);
            if (slot == NULL || o->type->parse(o, word, slot, why, sizeof why) < 0)
                bs_panic("config: default %s = %s %s", o->name, word, why);
            ++*list_count(o, cfg);
            d += len + (d[len] == ' ');
        }
    }
}

/* bs_config_defaults - every row's default; no source */
void bs_config_defaults(bs_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    apply_defaults(options, NOPTIONS, cfg);
}

/* ------------------------------------------------------------ [source NAME] */

/*
 * A [source NAME] section fills one bs_source (source.h) from its own table,
 * src_options[], whose offsets are into bs_source. A row's F_SRC() bits say
 * which source types take the key: a key of another type is an error after
 * the last line (the type may come after it), and bs_config_dump prints only
 * the type's rows.
 */
#define BS_SRC_NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
#define BS_SRC_NAME_LEN 32           /* inih keeps 49 bytes of "source NAME" */
#define BS_SRC_SECTION "source NAME" /* how the docs and bs_config_option name it */

static const enum_name src_types[] = {{"ldap", BS_SRC_LDAP},
                                      {"postfix", BS_SRC_POSTFIX},
                                      {"file", BS_SRC_FILE},
                                      {"command", BS_SRC_COMMAND},
                                      {NULL, 0}};

#define SFIELD_SIZE(f) sizeof(((bs_source *)0)->f)
#define SFIELD(f) offsetof(bs_source, f), SFIELD_SIZE(f), 0, 0
#define SLIST_WHERE(f, n)                                                                          \
    offsetof(bs_source, f), SFIELD_SIZE(f[0]), offsetof(bs_source, n),                             \
        SFIELD_SIZE(f) / SFIELD_SIZE(f[0])
/* f is a field name: the offsets are built inside, after ROW took its arguments */
#define S_ROW(key, type, f, lo, hi, extra, def, fl)                                                \
    ROW("source", key, type, SFIELD(f), lo, hi, extra, def, fl)
#define S_STRING(key, f, cls, def, types) S_ROW(key, t_string, f, 0, 0, &cls, def, types)
#define S_LIST(key, type, f, n, extra, def, types)                                                 \
    ROW("source", key, type, SLIST_WHERE(f, n), 0, 0, extra, def, F_LIST | (types))

#define F_LDAP F_SRC(BS_SRC_LDAP)
#define F_POSTFIX F_SRC(BS_SRC_POSTFIX)

/* clang-format off */
static const option src_options[] = {
    S_ROW   ("type", t_enum, type, 0, 0, src_types, NULL, F_SRC_ALL),
    S_LIST  ("domain", t_domain, domains, ndomains, NULL, NULL, F_SRC_ALL),
    S_ROW   ("timeout", t_duration, timeout_ms, MS_SEC, MS_DAY, NULL, "30s", F_SRC_ALL),

    S_LIST  ("uri", t_string, uris, nuris, &str_token, NULL, F_LDAP),
    S_ROW   ("start_tls", t_enum, start_tls, 0, 0, yes_no, "no", F_LDAP),
    S_STRING("tls_ca_file", tls_ca_file, str_text, "", F_LDAP),
    S_STRING("bind_dn", bind_dn, str_text, "", F_LDAP),
    S_STRING("bind_password_file", bind_password_file, str_text, "", F_LDAP),
    S_STRING("base", base, str_text, "", F_LDAP),
    S_STRING("filter", filter, str_text, "(objectClass=*)", F_LDAP),
    S_LIST  ("attribute", t_string, attributes, nattributes, &str_token, "mail", F_LDAP),
    S_ROW   ("page_size", t_uint, page_size, 1, 100000, NULL, "500", F_LDAP),

    S_LIST  ("map", t_string, maps, nmaps, &str_token, NULL, F_POSTFIX),
    S_STRING("maps", maps_parameter, str_token, "", F_POSTFIX),
    S_STRING("config_directory", config_directory, str_token, "", F_POSTFIX),

    S_STRING("path", path, str_text, "", F_SRC(BS_SRC_FILE)),
    S_STRING("command", command, str_text, "", F_SRC(BS_SRC_COMMAND)),
};
/* clang-format on */

#define NSRC_OPTIONS (sizeof src_options / sizeof src_options[0])

/* bs_config_option - see config.h: options[], then src_options[] */
const char *bs_config_option(size_t i, const char **section)
{
    if (i < NOPTIONS) {
        *section = options[i].section;
        return options[i].name;
    }
    if (i - NOPTIONS >= NSRC_OPTIONS)
        return NULL;
    *section = BS_SRC_SECTION;
    return src_options[i - NOPTIONS].name;
}

static const option *find_src_option(const char *name)
{
    for (size_t i = 0; i < NSRC_OPTIONS; i++) {
        if (strcmp(src_options[i].name, name) == 0)
            return &src_options[i];
    }
    return NULL;
}

/* src_type_name - "ldap", "file", ... for messages */
static const char *src_type_name(int type)
{
    for (const enum_name *e = src_types; e->name != NULL; e++) {
        if (e->value == type)
            return e->name;
    }
    return "?";
}

/* ------------------------------------------------------------ loading */

/* One load: the reader's and the handler's shared state. */
typedef struct cfg_parse {
    bs_config *cfg;
    const char *path;
    FILE *fp;
    int lineno;                                     /* lines handed to inih so far */
    char section[16];                               /* last valid [section], "" before any */
    int seen[NOPTIONS];                             /* line of a key's first setting, 0 = not set */
    int source;                                     /* [source NAME] being read: index, or -1 */
    int src_line[BS_CFG_MAX_SOURCES];               /* its "[source NAME]" line */
    int src_seen[BS_CFG_MAX_SOURCES][NSRC_OPTIONS]; /* as seen[], per source */
    char line[BS_CFG_LINE_MAX + 3];                 /* the current line, without "\r\n" */
    char *err;
    size_t errsz;
    int failed;
    unsigned settings; /* key lines read */
} cfg_parse;

/* load_error - keep the first problem only; "FILE:LINE: " is prepended */
static void load_error(cfg_parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void load_error(cfg_parse *p, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->failed)
        return;
    p->failed = 1;
    if (p->err == NULL || p->errsz == 0)
        return;
    if (p->lineno > 0)
        n = snprintf(p->err, p->errsz, "%s:%d: ", p->path, p->lineno);
    else
        n = snprintf(p->err, p->errsz, "%s: ", p->path);
    if (n < 0 || (size_t)n >= p->errsz)
        return;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errsz - (size_t)n, fmt, ap);
    va_end(ap);
}

/*
 * lint_key_line - "name = value" as inih will split it (first '=' or ':'),
 * refusing an inline comment, which inih would cut the value at. Returns 0
 * or -1 (error recorded).
 */
static int lint_key_line(cfg_parse *p, const char *start)
{
    const char *s = start, *name_end;
    int was_blank = 0;
    char q[BS_QUOTE_MAX * 4 + 8];

    /* inih's find_chars_or_comment(): ';' is a comment only after a blank */
    for (; *s != '\0' && *s != '=' && *s != ':'; s++) {
        if (was_blank && *s == ';')
            break;
        was_blank = is_blank(*s);
    }
    if (*s != '=' && *s != ':') {
        /* only the first word: the rest may be a password that lost its '=' */
        load_error(p, "%s: expected \"key = value\", \"[section]\" or a comment",
                   quote(start, strcspn(start, " \t"), q, sizeof q));
        return -1;
    }
    for (name_end = s; name_end > start && is_blank(name_end[-1]); name_end--)
        ;
    if (name_end == start) {
        load_error(p, "missing key name before '%c'", *s);
        return -1;
    }
    was_blank = 0;
    for (s++; *s != '\0'; s++) {
        if (was_blank && *s == ';') {
            load_error(p,
                       "%s%s%s%.*s: a ';' after a blank starts an inih comment and would cut "
                       "the value; put comments on lines of their own",
                       p->section[0] ? "[" : "", p->section, p->section[0] ? "] " : "",
                       (int)(name_end - start), start);
            return -1;
        }
        was_blank = is_blank(*s);
    }
    return 0;
}

/*
 * source_section - "[source NAME]": a new source with every default, named
 * [A-Za-z0-9_.-]{1,BS_SRC_NAME_LEN}, not used before. 0, or -1 (recorded).
 */
static int source_section(cfg_parse *p, const char *name, const char *end)
{
    bs_config *cfg = p->cfg;
    size_t len = (size_t)(end - name);
    char q[BS_QUOTE_MAX * 4 + 8];
    bs_source *src;

    if (len == 0 || len > BS_SRC_NAME_LEN || strspn(name, BS_SRC_NAME_CHARS) < len) {
        load_error(p, "[source %s]: a source name is 1 to %d characters of A-Z a-z 0-9 _ . -",
                   quote(name, len, q, sizeof q), BS_SRC_NAME_LEN);
        return -1;
    }
    for (size_t i = 0; i < cfg->nsources; i++) {
        if (strlen(cfg->sources[i].name) == len && memcmp(cfg->sources[i].name, name, len) == 0) {
            load_error(p, "[source %.*s]: a second section of that name (the first is at line %d)",
                       (int)len, name, p->src_line[i]);
            return -1;
        }
    }
    if (cfg->nsources == BS_CFG_MAX_SOURCES) {
        load_error(p, "[source %.*s]: more than %d sources", (int)len, name, BS_CFG_MAX_SOURCES);
        return -1;
    }
    p->source = (int)cfg->nsources++;
    p->src_line[p->source] = p->lineno;
    src = &cfg->sources[p->source];
    memset(src, 0, sizeof *src);
    apply_defaults(src_options, NSRC_OPTIONS, src);
    copy_field(src->name, sizeof src->name, name, len);
    copy_field(p->section, sizeof p->section, "source", 6);
    return 0;
}

/* lint_section_line - "[name]", a section of the table, nothing after it */
static int lint_section_line(cfg_parse *p, const char *start, const char *end)
{
    const char *close = memchr(start, ']', (size_t)(end - start));
    char q[BS_QUOTE_MAX * 4 + 8];

    if (close == NULL) {
        load_error(p, "%s: missing ']'", quote(start, (size_t)(end - start), q, sizeof q));
        return -1;
    }
    if (close + 1 != end) {
        load_error(p, "text after \"[section]\"; put comments on lines of their own");
        return -1;
    }
    if (close - start > 7 && memcmp(start + 1, "source", 6) == 0 && is_blank(start[7]))
        return source_section(p, start + 8, close);
    p->source = -1;
    if (!known_section(start + 1, (size_t)(close - start - 1))) {
        char known[128];
        section_names(known, sizeof known - 16);
        strcat(known, ", " BS_SRC_SECTION);
        load_error(p, "unknown section %s (known: %s)",
                   quote(start, (size_t)(close - start + 1), q, sizeof q), known);
        return -1;
    }
    copy_field(p->section, sizeof p->section, start + 1, (size_t)(close - start - 1));
    return 0;
}

/*
 * lint_line - refuse what inih would misread in p->line (see the top of the
 * file). Returns 0, or -1 with the error recorded.
 */
static int lint_line(cfg_parse *p, size_t len)
{
    const char *s = p->line, *start, *end = p->line + len;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            load_error(p, "control character 0x%02x in the line", c);
            return -1;
        }
    }
    if (p->lineno == 1 && len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        s += 3; /* inih skips a UTF-8 byte order mark */
    for (start = s; start < end && is_blank(*start); start++)
        ;
    while (end > start && is_blank(end[-1]))
        end--;
    if (start == end || *start == ';' || *start == '#')
        return 0;
    if (start > s) {
        load_error(p, "indented line: inih would read it as part of the previous value; "
                      "remove the leading blanks");
        return -1;
    }
    if (*start == '[')
        return lint_section_line(p, start, end);
    return lint_key_line(p, start);
}

/*
 * cfg_reader - inih's fgets(): one line of the file per call, checked by
 * lint_line. Returns str, or NULL at the end of the file or after the first
 * error (which ends the parse).
 */
static char *cfg_reader(char *str, int num, void *stream)
{
    cfg_parse *p = stream;
    size_t len = 0, limit = BS_CFG_LINE_MAX;
    int c = EOF;

    if (p->failed)
        return NULL;
    if (num < 4) {
        load_error(p, "inih line buffer of %d bytes is too small", num);
        return NULL;
    }
    if ((size_t)num - 3 < limit)
        limit = (size_t)num - 3; /* an inih built with a smaller INI_MAX_LINE */
    /* getc_unlocked: p->fp is ours alone. limit + 1 leaves room for a '\r' before '\n'. */
    while ((c = getc_unlocked(p->fp)) != EOF && c != '\n') {
        if (len == limit + 1) {
            p->lineno++;
            load_error(p, "line longer than %zu characters (inih would split it)", limit);
            return NULL;
        }
        if (c == '\0') {
            p->lineno++;
            load_error(p, "NUL byte in the line");
            return NULL;
        }
        p->line[len++] = (char)c;
    }
    if (ferror(p->fp)) {
        load_error(p, "read error: %s", strerror(errno));
        return NULL;
    }
    if (c == EOF && len == 0)
        return NULL;
    p->lineno++;
    if (len > 0 && p->line[len - 1] == '\r')
        len--;
    if (len > limit) {
        load_error(p, "line longer than %zu characters (inih would split it)", limit);
        return NULL;
    }
    p->line[len] = '\0';
    if (lint_line(p, len) < 0)
        return NULL;
    memcpy(str, p->line, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

/*
 * cfg_handler - one "key = value" from inih, on line p->lineno. Returns 1,
 * or 0 with the error recorded (the reader then ends the parse).
 */
static int set_option(cfg_parse *p, const option *o, void *base, int *seen, const char *section,
                      const char *name, const char *value);

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
    cfg_parse *p = user;
    const option *o, *elsewhere;
    char q[BS_QUOTE_MAX * 4 + 8];

    if (p->failed)
        return 0;
    p->settings++;
    if (section[0] == '\0') {
        load_error(p, "%s: key before any [section]", keyname(name, q, sizeof q));
        return 0;
    }
    if (p->source >= 0) {
        bs_source *src = &p->cfg->sources[p->source];
        o = find_src_option(name);
        if (o == NULL) {
            load_error(p, "[source %s] %s: unknown key", src->name, keyname(name, q, sizeof q));
            return 0;
        }
        return set_option(p, o, src, &p->src_seen[p->source][o - src_options], section, name,
                          value);
    }
    o = find_option(section, name);
    if (o == NULL) {
        elsewhere = find_any_section(name);
        if (elsewhere != NULL)
            load_error(p, "[%s] %s: unknown key here; it belongs in [%s]", section, name,
                       elsewhere->section);
        else
            load_error(p, "[%s] %s: unknown key", section, keyname(name, q, sizeof q));
        return 0;
    }
    return set_option(p, o, p->cfg, &p->seen[o - options], section, name, value);
}

/*
 * set_option - store one value of row o into base (the bs_config, or a
 * bs_source); *seen is the row's first line. Returns 1, or 0 with the
 * error recorded.
 */
static int set_option(cfg_parse *p, const option *o, void *base, int *seen, const char *section,
                      const char *name, const char *value)
{
    char why[256], q[BS_QUOTE_MAX * 4 + 8];
    void *dst;

    if (o->flags & F_LIST) {
        if (*seen == 0)
            *list_count(o, base) = 0; /* the first line replaces the default list */
        dst = list_slot(o, base);
        if (dst == NULL) {
            load_error(p, "[%s] %s: more than %zu entries", section, name, o->cap);
            return 0;
        }
    } else {
        if (*seen != 0) {
            load_error(p, "[%s] %s: set twice, first at line %d", section, name, *seen);
            return 0;
        }
        dst = (char *)base + o->off;
    }
    if (*seen == 0)
        *seen = p->lineno;
    if (o->flags & F_SECRET)
        snprintf(q, sizeof q, "the value");
    else
        quote(value, strlen(value), q, sizeof q);
    if (o->type->parse(o, value, dst, why, sizeof why) < 0) {
        load_error(p, "[%s] %s: %s %s", section, name, q, why);
        return 0;
    }
    if (o->flags & F_LIST) {
        if (list_has(o, base, *list_count(o, base))) {
            load_error(p, "[%s] %s: %s is listed twice", section, name, q);
            return 0;
        }
        ++*list_count(o, base);
    }
    return 1;
}

/* seen_line - the line a key was first set on, 0 if never */
static int seen_line(const cfg_parse *p, const char *section, const char *name)
{
    const option *o = find_option(section, name);

    return o != NULL ? p->seen[o - options] : 0;
}

/* Names that must exist on this host: -t finds what start-up would. */
static const struct {
    const char *name; /* [server] key */
    size_t off;       /* the name in bs_config */
    int is_user;      /* getpwnam, else getgrnam */
} host_names[] = {
    {"user", offsetof(bs_config, user), 1},
    {"group", offsetof(bs_config, group), 0},
    {"socket_group", offsetof(bs_config, socket_group), 0},
};

/* check_host_names - each set name of host_names[] is known to NSS */
static int check_host_names(cfg_parse *p)
{
    char q[BS_QUOTE_MAX * 4 + 8];

    for (size_t i = 0; i < sizeof host_names / sizeof host_names[0]; i++) {
        const char *name = (const char *)p->cfg + host_names[i].off;
        int found;
        if (name[0] == '\0')
            continue;
        errno = 0;
        found = host_names[i].is_user ? getpwnam(name) != NULL : getgrnam(name) != NULL;
        if (found)
            continue;
        p->lineno = seen_line(p, "server", host_names[i].name);
        load_error(p, "[server] %s: %s: %s", host_names[i].name,
                   quote(name, strlen(name), q, sizeof q),
                   errno                   ? strerror(errno)
                   : host_names[i].is_user ? "no such user"
                                           : "no such group");
        return -1;
    }
    return 0;
}

/* src_required - the keys a source of each type cannot do without */
static const char *src_missing(const bs_source *src)
{
    if (src->type == 0)
        return "type (ldap, postfix, file or command)";
    if (src->ndomains == 0)
        return "domain (the domains it is the directory of)";
    switch (src->type) {
    case BS_SRC_LDAP:
        return src->nuris == 0 ? "uri" : src->base[0] == '\0' ? "base" : NULL;
    case BS_SRC_POSTFIX:
        return src->nmaps == 0 && src->maps_parameter[0] == '\0' ? "map or maps" : NULL;
    case BS_SRC_FILE:
        return src->path[0] == '\0' ? "path" : NULL;
    default:
        return src->command[0] == '\0' ? "command" : NULL;
    }
}

/* check_sources - each source has what its type needs and no key of another type */
static int check_sources(cfg_parse *p)
{
    for (size_t i = 0; i < p->cfg->nsources; i++) {
        const bs_source *src = &p->cfg->sources[i];
        const char *missing = src_missing(src);

        if (missing != NULL) {
            p->lineno = p->src_line[i];
            load_error(p, "[source %s]: missing %s", src->name, missing);
            return -1;
        }
        for (size_t k = 0; k < NSRC_OPTIONS; k++) {
            if (p->src_seen[i][k] != 0 && !(src_options[k].flags & F_SRC(src->type))) {
                p->lineno = p->src_seen[i][k];
                load_error(p, "[source %s] %s: not a key of type = %s sources", src->name,
                           src_options[k].name, src_type_name(src->type));
                return -1;
            }
        }
    }
    return 0;
}

/* check_whole - rules across keys, after the last line */
static int check_whole(cfg_parse *p)
{
    bs_config *cfg = p->cfg;
    char why[256];

    if (cfg->nlisten == 0) {
        if (parse_endpoint(BS_CFG_DEFAULT_LISTEN, &cfg->listen[0], why, sizeof why) < 0)
            bs_panic("config: default listen %s %s", BS_CFG_DEFAULT_LISTEN, why);
        cfg->nlisten = 1;
    }
    if (cfg->nsentinels > 0 && cfg->master_name[0] == '\0') {
        p->lineno = seen_line(p, "redis", "sentinel");
        load_error(p, "[redis] sentinel: master_name is not set");
        return -1;
    }
    if (cfg->nsentinels == 0 && cfg->master_name[0] != '\0') {
        p->lineno = seen_line(p, "redis", "master_name");
        load_error(p, "[redis] master_name: no sentinel line");
        return -1;
    }
    if (cfg->harvest_retry_after_ms >= cfg->harvest_retry_window_ms) {
        p->lineno = seen_line(p, "harvest", "retry_after");
        if (!p->lineno)
            p->lineno = seen_line(p, "harvest", "retry_window");
        load_error(p, "[harvest] retry_after must be shorter than retry_window");
        return -1;
    }
    if (check_host_names(p) < 0)
        return -1;
    return check_sources(p);
}

/* bs_config_load - see config.h; the first problem is the one reported */
int bs_config_load(const char *path, bs_config *cfg, char *err, size_t errsz)
{
    unsigned settings;

    return bs_config_load_counted(path, cfg, &settings, err, errsz);
}

int bs_config_load_counted(const char *path, bs_config *cfg, unsigned *settings, char *err,
                           size_t errsz)
{
    cfg_parse p;
    int rc;

    *settings = 0;
    memset(&p, 0, sizeof p);
    p.source = -1;
    p.cfg = cfg;
    p.path = path;
    p.err = err;
    p.errsz = errsz;
    if (err != NULL && errsz > 0)
        err[0] = '\0';
    bs_config_defaults(cfg);
    if (strlen(path) >= sizeof cfg->file) {
        load_error(&p, "path longer than %zu bytes", sizeof cfg->file - 1);
        return -1;
    }
    copy_field(cfg->file, sizeof cfg->file, path, strlen(path));
    p.fp = fopen(path, "r");
    if (p.fp == NULL) {
        load_error(&p, "cannot open: %s", strerror(errno));
        return -1;
    }
    rc = ini_parse_stream(cfg_reader, &p, cfg_handler, &p);
    fclose(p.fp);
    if (rc != 0 && !p.failed) {
        /* inih saw a syntax error that lint_line let through */
        p.lineno = rc > 0 ? rc : 0;
        load_error(&p, "syntax error (inih code %d)", rc);
    }
    *settings = p.settings;
    if (p.failed || check_whole(&p) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------ printing */

/* dump_line - "name = value"; "name =;x" keeps a leading ';' from becoming a comment */
static void dump_line(const option *o, const void *src, FILE *fp)
{
    char buf[512];

    o->type->format(o, src, buf, sizeof buf);
    if (buf[0] == '\0')
        fprintf(fp, "%s =\n", o->name);
    else if (buf[0] == ';')
        fprintf(fp, "%s =%s\n", o->name, buf);
    else
        fprintf(fp, "%s = %s\n", o->name, buf);
}

/* dump_rows - the rows of table whose flags share a bit with mask, from base */
static void dump_rows(const option *table, size_t n, unsigned mask, const void *base, FILE *fp)
{
    for (size_t i = 0; i < n; i++) {
        const option *o = &table[i];
        if (!(o->flags & mask))
            continue;
        if (o->flags & F_LIST) {
            size_t count = *(const size_t *)((const char *)base + o->aux);
            for (size_t k = 0; k < count && k < o->cap; k++)
                dump_line(o, (const char *)base + o->off + k * o->size, fp);
        } else {
            dump_line(o, (const char *)base + o->off, fp);
        }
    }
}

/* bs_config_dump - the table's order, one [section] block each */
void bs_config_dump(const bs_config *cfg, FILE *fp, int how)
{
    const char *section = NULL;

    fprintf(fp, "# backstopd: effective configuration\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option *o = &options[i];
        const char *src = (const char *)cfg + o->off;
        if (section == NULL || strcmp(section, o->section) != 0) {
            section = o->section;
            fprintf(fp, "\n[%s]\n", section);
        }
        if (o->flags & F_LIST) {
            size_t n = *(const size_t *)((const char *)cfg + o->aux);
            for (size_t k = 0; k < n && k < o->cap; k++)
                dump_line(o, src + k * o->size, fp);
        } else if ((o->flags & F_SECRET) && how != BS_DUMP_SECRETS && src[0] != '\0') {
            fprintf(fp, "# %s = (set, not shown)\n", o->name); /* a comment: loads as unset */
        } else {
            dump_line(o, src, fp);
        }
    }
    for (size_t i = 0; i < cfg->nsources; i++) {
        const bs_source *src = &cfg->sources[i];
        fprintf(fp, "\n[source %s]\n", src->name);
        dump_rows(src_options, NSRC_OPTIONS, F_SRC(src->type), src, fp);
    }
}

/* ------------------------------------------------------------ public parsers */

int bs_parse_duration(const char *s, uint64_t *ms)
{
    return parse_duration(s, strlen(s), ms) == 0 ? 0 : -1;
}

int bs_parse_rate(const char *s, uint32_t *n, uint64_t *period_ms)
{
    return parse_rate(s, strlen(s), n, period_ms) == 0 ? 0 : -1;
}

int bs_parse_endpoint(const char *s, bs_endpoint *out)
{
    char why[160];
    bs_endpoint ep;

    if (parse_endpoint(s, &ep, why, sizeof why) < 0)
        return -1;
    *out = ep;
    return 0;
}

/* trim_blanks - skip the blanks at *s; the end of the len bytes at *s
 * without their trailing blanks */
static const char *trim_blanks(const char **s, size_t len)
{
    const char *p = *s, *end = p + len;

    while (p < end && is_blank(*p))
        p++;
    while (end > p && is_blank(end[-1]))
        end--;
    *s = p;
    return end;
}

/*
 * bs_parse_ndr_rule - strict and bounded: it parses Redis values too. Only
 * the len bytes at s are read (a NUL among them is an error); nothing is
 * allocated; *out is written only on success.
 */
int bs_parse_ndr_rule(const char *s, size_t len, bs_ndr_rule *out)
{
    const char *end;
    uint32_t n;
    uint64_t ms;
    int report = 0;

    if (s == NULL)
        return -1;
    end = trim_blanks(&s, len);
    /* a trailing " report" word: this entry refuses nothing, it reports */
    if (end - s > 7 && strncasecmp(end - 6, "report", 6) == 0 && is_blank(end[-7])) {
        report = 1;
        for (end -= 7; end > s && is_blank(end[-1]); end--)
            ;
    }
    len = (size_t)(end - s);
    if (len == 5 && strncasecmp(s, "allow", 5) == 0) {
        *out = (bs_ndr_rule){.action = BS_NDR_ALLOW, .report = report};
        return 0;
    }
    if (len == 4 && strncasecmp(s, "deny", 4) == 0) {
        *out = (bs_ndr_rule){.action = BS_NDR_DENY, .report = report};
        return 0;
    }
    if (len < 6 || strncasecmp(s, "limit", 5) != 0 || !is_blank(s[5]))
        return -1;
    for (s += 5; s < end && is_blank(*s); s++)
        ;
    if (parse_rate(s, (size_t)(end - s), &n, &ms) < 0 || n == 0 || n > NDR_LIMIT_MAX ||
        ms < NDR_PERIOD_MIN || ms > NDR_PERIOD_MAX)
        return -1;
    *out = (bs_ndr_rule){.action = BS_NDR_LIMIT, .limit = n, .period_ms = ms, .report = report};
    return 0;
}

/* bs_format_ndr_rule - what bs_parse_ndr_rule reads back */
void bs_format_ndr_rule(const bs_ndr_rule *r, char *buf, size_t size)
{
    const char *report = r->report ? " report" : "";
    char period[32];

    if (r->action == BS_NDR_ALLOW) {
        snprintf(buf, size, "allow%s", report);
    } else if (r->action == BS_NDR_LIMIT) {
        format_duration(r->period_ms, period, sizeof period);
        snprintf(buf, size, "limit %" PRIu32 "/%s%s", r->limit, period, report);
    } else {
        snprintf(buf, size, "deny%s", report);
    }
}

static const char *const mode_names[] = {
    [BS_MODE_ENFORCE] = "enforce", [BS_MODE_REPORT] = "report", [BS_MODE_OFF] = "off"};

/* bs_parse_mode - bounded like bs_parse_ndr_rule: it reads Redis values */
int bs_parse_mode(const char *s, size_t len)
{
    const char *end;
    size_t i;

    if (s == NULL)
        return -1;
    end = trim_blanks(&s, len);
    for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
        if ((size_t)(end - s) == strlen(mode_names[i]) &&
            strncasecmp(s, mode_names[i], (size_t)(end - s)) == 0)
            return (int)i;
    return -1;
}

const char *bs_mode_name(int mode)
{
    return mode >= 0 && mode < (int)(sizeof(mode_names) / sizeof(mode_names[0])) ? mode_names[mode]
                                                                                 : "?";
}
