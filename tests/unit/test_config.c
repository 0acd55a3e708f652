/*
 * test_config.c - backstop.ini loading, checking and printing (config.c),
 * and the logger (log.c)
 *
 * Table-driven: every key with valid values (checked through the dump, which
 * prints the value as it was understood) and invalid ones (checked for the
 * exact "FILE:LINE: [section] key: problem" message), bounds min, max, min-1
 * and max+1, the inih traps (long lines, ';', indentation), the value
 * parsers on their own, the dump round trip, and etc/backstop.ini (it loads,
 * its "# key = value" lines are the real defaults, it names every key).
 *
 * Runs with cwd tests/unit; writes its inputs to mkstemp() files in /tmp.
 */
#include "backstop/config.h"
#include "backstop/log.h"

#include "check.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define ETC_INI "../../etc/backstop.ini"

static char tmp_path[64];

/* write_tmp - len bytes into a new temp file, whose name is in tmp_path */
static const char *write_tmp(const char *text, size_t len)
{
    int fd;

    snprintf(tmp_path, sizeof tmp_path, "/tmp/test_config.XXXXXX");
    fd = mkstemp(tmp_path);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len) {
        perror("test_config: temp file");
        exit(2);
    }
    close(fd);
    return tmp_path;
}

static int load_len(const char *text, size_t len, bs_config *cfg, char *err, size_t errsz)
{
    int rc = bs_config_load(write_tmp(text, len), cfg, err, errsz);

    unlink(tmp_path);
    return rc;
}

static int load(const char *text, bs_config *cfg, char *err, size_t errsz)
{
    return load_len(text, strlen(text), cfg, err, errsz);
}

/* dump_how - bs_config_dump into a malloc'd string (caller frees) */
static char *dump_how(const bs_config *cfg, int how)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);

    bs_config_dump(cfg, fp, how);
    fclose(fp);
    return buf;
}

/* dump_text - with secrets: the round trip must reproduce them */
static char *dump_text(const bs_config *cfg)
{
    return dump_how(cfg, BS_DUMP_SECRETS);
}

/* dump_redacted - what backstopd -t -v prints */
static char *dump_redacted(const bs_config *cfg)
{
    return dump_how(cfg, BS_DUMP_REDACTED);
}

/* same_config - equal in every byte but the path it came from */
static int same_config(const bs_config *a, const bs_config *b)
{
    bs_config x = *a, y = *b;

    memset(x.file, 0, sizeof x.file);
    memset(y.file, 0, sizeof y.file);
    return memcmp(&x, &y, sizeof x) == 0;
}

/* ------------------------------------------------------------ valid values */

/* Each ini must load; the dump must then hold the line want. */
static const struct {
    const char *ini;
    const char *want;
} valid[] = {
    /* [server] */
    {"[server]\nlisten = inet:127.0.0.1:10040\n", "listen = inet:127.0.0.1:10040"},
    {"[server]\nlisten = inet:[::1]:10040\n", "listen = inet:[::1]:10040"},
    {"[server]\nlisten = tcp:192.0.2.1:1\n", "listen = inet:192.0.2.1:1"},
    {"[server]\nlisten = unix:/run/backstop-policy\n", "listen = unix:/run/backstop-policy"},
    {"[server]\nlisten: inet:127.0.0.2:10040\n", "listen = inet:127.0.0.2:10040"},
    {"[server]\nsocket_mode = 0\n", "socket_mode = 0000"},
    {"[server]\nsocket_mode = 0777\n", "socket_mode = 0777"},
    {"[server]\nsocket_mode = 600\n", "socket_mode = 0600"},
    {"[server]\nsocket_group = root\n", "socket_group = root"},
    {"[server]\nallow = 192.0.2.0/24\n", "allow = 192.0.2.0/24"},
    {"[server]\nallow = 2001:db8::/32\n", "allow = 2001:db8::/32"},
    {"[server]\nallow = 192.0.2.7\n", "allow = 192.0.2.7/32"},
    {"[server]\nallow = ::ffff:10.0.0.0/104\n", "allow = 10.0.0.0/8"},
    {"[server]\nmax_connections = 1\n", "max_connections = 1"},
    {"[server]\nmax_connections = 100000\n", "max_connections = 100000"},
    {"[server]\nidle_timeout = 1s\n", "idle_timeout = 1s"},
    {"[server]\nidle_timeout = 1000ms\n", "idle_timeout = 1s"},
    {"[server]\nidle_timeout = 1d\n", "idle_timeout = 1d"},
    {"[server]\nidle_timeout = 86400\n", "idle_timeout = 1d"},
    {"[server]\nidle_timeout = 90m\n", "idle_timeout = 90m"},
    {"[server]\nidle_timeout = 1500ms\n", "idle_timeout = 1500ms"},
    {"[server]\nidle_timeout = 007s\n", "idle_timeout = 7s"},
    {"[server]\nuser = nobody\n", "user = nobody"},
    {"[server]\ngroup = root\n", "group = root"},
    /* [redis] */
    {"[redis]\nserver = unix:/run/redis/redis.sock\n", "server = unix:/run/redis/redis.sock"},
    {"[redis]\nserver = tcp:[::1]:6380\n", "server = tcp:[::1]:6380"},
    {"[redis]\nserver = inet:redis.example.com:6379\n", "server = tcp:redis.example.com:6379"},
    {"[redis]\nusername = app\n", "username = app"},
    {"[redis]\npassword = s3cr3t;x\n", "password = s3cr3t;x"},
    {"[redis]\npassword = two words\n", "password = two words"},
    {"[redis]\npassword = a # b\n", "password = a # b"},
    {"[redis]\npassword =;lead\n", "password =;lead"},
    {"[redis]\npassword = x=y:z\n", "password = x=y:z"},
    {"[redis]\ndb = 0\n", "db = 0"},
    {"[redis]\ndb = 1000\n", "db = 1000"},
    {"[redis]\nprefix =\n", "prefix ="},
    {"[redis]\nprefix = bs{1}:\n", "prefix = bs{1}:"},
    {"[redis]\nprefix = ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp\n",
     "prefix = ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"},
    {"[redis]\ntimeout = 10ms\n", "timeout = 10ms"},
    {"[redis]\ntimeout = 60s\n", "timeout = 1m"},
    {"[redis]\nconnect_timeout = 10ms\n", "connect_timeout = 10ms"},
    {"[redis]\nconnect_timeout = 60000ms\n", "connect_timeout = 1m"},
    {"[redis]\nmax_pending = 1\n", "max_pending = 1"},
    {"[redis]\nmax_pending = 1000000\n", "max_pending = 1000000"},
    {"[redis]\nsentinel = 192.0.2.10:26379\nmaster_name = m\n", "sentinel = 192.0.2.10:26379"},
    {"[redis]\nsentinel = [2001:db8::1]:26379\nmaster_name = m\n",
     "sentinel = [2001:db8::1]:26379"},
    {"[redis]\nsentinel = tcp:s1.example:26379\nmaster_name = m\n", "sentinel = s1.example:26379"},
    {"[redis]\nsentinel = 192.0.2.10:26379\nmaster_name = mymaster\n", "master_name = mymaster"},
    {"[redis]\nsentinel_password = x y;z\n", "sentinel_password = x y;z"},
    /* a ';' not after a blank, and '#' not at line start, are part of the value */
    {"[redis]\nprefix = ab;cd#\n", "prefix = ab;cd#"},
    /* [policy] */
    {"[policy]\nmode = report\n", "mode = report"},
    {"[policy]\nmode = ENFORCE\n", "mode = enforce"},
    {"[policy]\non_redis_error = dunno\n", "on_redis_error = dunno"},
    {"[policy]\non_redis_error = Defer\n", "on_redis_error = defer"},
    {"[policy]\nrecipient_delimiter =\n", "recipient_delimiter ="},
    {"[policy]\nrecipient_delimiter = +-\n", "recipient_delimiter = +-"},
    {"[policy]\nrecipient_delimiter = +-_.=~!\n", "recipient_delimiter = +-_.=~!"},
    {"[policy]\nndr_default = allow\n", "ndr_default = allow"},
    {"[policy]\nndr_default = DENY\n", "ndr_default = deny"},
    {"[policy]\nndr_default = Limit 5/1h\n", "ndr_default = limit 5/1h"},
    {"[policy]\nndr_default = limit\t 1/1s\n", "ndr_default = limit 1/1s"},
    {"[policy]\nndr_default = limit 1000000/30d\n", "ndr_default = limit 1000000/30d"},
    {"[policy]\nndr_default = limit 2/3600\n", "ndr_default = limit 2/1h"},
    {"[policy]\nndr_default = deny report\n", "ndr_default = deny report"},
    {"[policy]\nndr_default = Limit 10/1h  REPORT\n", "ndr_default = limit 10/1h report"},
    {"[policy]\nndr_default = allow\treport\n", "ndr_default = allow report"},
    /* [ratelimit] */
    {"[ratelimit]\ninvalid_recipients = 0\n", "invalid_recipients = 0"},
    {"[ratelimit]\ninvalid_recipients = 1/1s\n", "invalid_recipients = 1/1s"},
    {"[ratelimit]\ninvalid_recipients = 100000/7d\n", "invalid_recipients = 100000/7d"},
    {"[ratelimit]\ninvalid_recipients = 20/600\n", "invalid_recipients = 20/10m"},
    {"[harvest]\nthreshold = 0\n", "threshold = 0"},
    {"[harvest]\nthreshold = 50/1h\nduration = 2h\n", "threshold = 50/1h"},
    {"[harvest]\nclient_limit = 5/30m\n", "client_limit = 5/30m"},
    {"[harvest]\nnew_clients = defer\n", "new_clients = defer"},
    {"[harvest]\nnew_clients = normal\n", "new_clients = normal"},
    {"[harvest]\nretry_after = 1s\nretry_window = 2s\n", "retry_window = 2s"},
    {"[harvest]\nknown_client_age = 7d\n", "known_client_age = 7d"},
    {"[ratelimit]\nblock_time = 1s\n", "block_time = 1s"},
    {"[ratelimit]\nblock_time = 30d\n", "block_time = 30d"},
    {"[ratelimit]\nipv6_prefix = 1\n", "ipv6_prefix = 1"},
    {"[ratelimit]\nipv6_prefix = 128\n", "ipv6_prefix = 128"},
    {"[ratelimit]\nexempt = 198.51.100.0/24\n", "exempt = 198.51.100.0/24"},
    {"[ratelimit]\nexempt = 0.0.0.0/0\n", "exempt = 0.0.0.0/0"},
    /* [log] */
    {"[log]\nlevel = debug\n", "level = debug"},
    {"[log]\nlevel = ERROR\n", "level = error"},
    {"[log]\nlevel = warn\n", "level = warn"},
    {"[log]\nsyslog_facility = local7\n", "syslog_facility = local7"},
    {"[log]\nsyslog_facility = DAEMON\n", "syslog_facility = daemon"},
    {"[log]\nsyslog_facility = user\n", "syslog_facility = user"},
    {"[log]\nsocket = /var/spool/postfix/dev/log\n", "socket = /var/spool/postfix/dev/log"},
    {"[log]\nsocket = /run/systemd/journal/dev-log\n", "socket = /run/systemd/journal/dev-log"},
    /* syntax that inih and we both accept */
    {"\xef\xbb\xbf[redis]\ndb = 3\n", "db = 3"},
    {"[redis]\r\ndb = 4\r\n", "db = 4"},
    {"[redis]\ndb = 5", "db = 5"},
    {"# comment\n; comment\n   # indented comment\n\n  \n[redis]\ndb=6\n", "db = 6"},
    {"[redis]\n[server]\n[redis]\ndb = 8\n", "db = 8"},
    {"[redis]\ndb = 9   \t\n", "db = 9"},
};

static void test_valid(void)
{
    static bs_config cfg;
    char err[512], want[256];

    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        int rc = load(valid[i].ini, &cfg, err, sizeof err);
        char *dump;

        CHECK_EQ_INT(rc, 0);
        if (rc != 0) {
            fprintf(stderr, "  valid[%zu]: %s\n", i, err);
            continue;
        }
        dump = dump_text(&cfg);
        snprintf(want, sizeof want, "\n%s\n", valid[i].want);
        CHECK(strstr(dump, want) != NULL);
        if (strstr(dump, want) == NULL)
            fprintf(stderr, "  valid[%zu]: no \"%s\" in the dump:\n%s", i, valid[i].want, dump);
        free(dump);
    }
}

/* ------------------------------------------------------------ invalid values */

/* Each ini must fail with "TMPFILE:line: " + msg (line 0: "TMPFILE: " + msg). */
static const struct {
    const char *ini;
    int line;
    const char *msg;
} invalid[] = {
    /* [server] listen */
    {"[server]\nlisten = inet:127.0.0.1\n", 2,
     "[server] listen: \"inet:127.0.0.1\" has no :PORT (use inet:HOST:PORT, inet:[IPV6]:PORT or "
     "unix:/PATH)"},
    {"[server]\nlisten = inet:127.0.0.1:0\n", 2, "does not end in a port 1..65535"},
    {"[server]\nlisten = inet:127.0.0.1:65536\n", 2, "does not end in a port 1..65535"},
    {"[server]\nlisten = inet:127.0.0.1:+80\n", 2, "does not end in a port 1..65535"},
    {"[server]\nlisten = inet:::1:10040\n", 2, "IPv6 address that is not in brackets"},
    {"[server]\nlisten = inet:[::1]10040\n", 2, "is not [IPV6]:PORT"},
    {"[server]\nlisten = inet:[1.2.3.4]:1\n", 2, "does not hold an IPv6 address in brackets"},
    {"[server]\nlisten = inet:256.1.1.1:5\n", 2, "does not hold an IPv4 address or a host name"},
    {"[server]\nlisten = inet:-x.example:5\n", 2, "does not hold an IPv4 address or a host name"},
    {"[server]\nlisten = inet:a_b:5\n", 2, "does not hold an IPv4 address or a host name"},
    {"[server]\nlisten = inet::5\n", 2, "does not hold an IPv4 address or a host name"},
    {"[server]\nlisten = unix:run/x\n", 2, "is not unix:/ABSOLUTE/PATH"},
    {"[server]\nlisten = udp:1.2.3.4:5\n", 2, "does not start with inet:, tcp: or unix:"},
    {"[server]\nlisten =\n", 2, "[server] listen: \"\" does not start with inet:, tcp: or unix:"},
    {"[server]\nlisten = inet:127.0.0.1:1\nlisten = inet:127.0.0.1:1\n", 3,
     "[server] listen: \"inet:127.0.0.1:1\" is listed twice"},
    /* [server] other keys */
    {"[server]\nsocket_mode = 0778\n", 2, "[server] socket_mode: \"0778\" is not an octal mode"},
    {"[server]\nsocket_mode = 01000\n", 2, "\"01000\" is out of range (0000..0777)"},
    {"[server]\nsocket_mode = -1\n", 2, "is not an octal mode"},
    {"[server]\nsocket_mode =\n", 2, "is not an octal mode"},
    {"[server]\nsocket_group = a b\n", 2, "[server] socket_group: \"a b\" contains characters"},
    {"[server]\nallow = 192.0.2.1/24\n", 2,
     "[server] allow: \"192.0.2.1/24\" is not an address or a network with its host bits zero"},
    {"[server]\nallow = example.com\n", 2, "is not an address or a network"},
    {"[server]\nallow =\n", 2, "[server] allow: \"\" is not an address"},
    {"[server]\nallow = 10.0.0.0/8\nallow = 10.0.0.0/8\n", 3, "is listed twice"},
    {"[server]\nmax_connections = 0\n", 2,
     "[server] max_connections: \"0\" is out of range (1..100000)"},
    {"[server]\nmax_connections = 100001\n", 2, "\"100001\" is out of range (1..100000)"},
    {"[server]\nmax_connections = 99999999999999999999999\n", 2, "is out of range (1..100000)"},
    {"[server]\nmax_connections = -1\n", 2, "\"-1\" is not a number"},
    {"[server]\nmax_connections = 1 0\n", 2, "\"1 0\" is not a number"},
    {"[server]\nmax_connections = 0x10\n", 2, "is not a number"},
    {"[server]\nmax_connections =\n", 2, "\"\" is not a number"},
    {"[server]\nidle_timeout = 0\n", 2, "[server] idle_timeout: \"0\" is out of range (1s..1d)"},
    {"[server]\nidle_timeout = 999ms\n", 2, "is out of range (1s..1d)"},
    {"[server]\nidle_timeout = 86400001ms\n", 2, "is out of range (1s..1d)"},
    {"[server]\nidle_timeout = 99999999999999999999d\n", 2, "is out of range (1s..1d)"},
    {"[server]\nidle_timeout = 18446744073709551615d\n", 2, "is out of range (1s..1d)"},
    {"[server]\nidle_timeout = 1x\n", 2, "\"1x\" is not a duration (use ms, s, m, h, d)"},
    {"[server]\nidle_timeout = 1 s\n", 2, "is not a duration"},
    {"[server]\nidle_timeout = -1s\n", 2, "is not a duration"},
    {"[server]\nidle_timeout = 1.5s\n", 2, "is not a duration"},
    {"[server]\nidle_timeout = s\n", 2, "is not a duration"},
    {"[server]\nidle_timeout = 1S\n", 2, "is not a duration"},
    {"[server]\nidle_timeout = 1sm\n", 2, "is not a duration"},
    {"[server]\nidle_timeout =\n", 2, "\"\" is not a duration"},
    {"[server]\nuser = a b\n", 2, "[server] user: \"a b\" contains"},
    {"[server]\ngroup = \xc3\xa9\n", 2, "[server] group: \"\\xc3\\xa9\" contains"},
    /* [redis] */
    {"[redis]\nserver = unix:\n", 2,
     "[redis] server: \"unix:\" is not unix:/ABSOLUTE/PATH (use "
     "tcp:HOST:PORT, tcp:[IPV6]:PORT or unix:/PATH)"},
    {"[redis]\nserver = tcp:redis\n", 2, "has no :PORT"},
    {"[redis]\nserver = 127.0.0.1:6379\n", 2, "does not start with inet:, tcp: or unix:"},
    {"[redis]\nusername = a b\n", 2, "[redis] username: \"a b\" contains"},
    {"[redis]\ndb = 1001\n", 2, "[redis] db: \"1001\" is out of range (0..1000)"},
    {"[redis]\ndb = -0\n", 2, "is not a number"},
    {"[redis]\nprefix = a b\n", 2,
     "[redis] prefix: \"a b\" contains characters other than "
     "printable ASCII without blanks"},
    {"[redis]\nprefix = pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp\n", 2,
     "is longer than 63 characters"},
    {"[redis]\ntimeout = 9ms\n", 2, "[redis] timeout: \"9ms\" is out of range (10ms..1m)"},
    {"[redis]\ntimeout = 60001ms\n", 2, "is out of range (10ms..1m)"},
    {"[redis]\ntimeout = 3x\n", 2,
     "[redis] timeout: \"3x\" is not a duration (use ms, s, m, h, d)"},
    {"[redis]\nconnect_timeout = 9ms\n", 2, "[redis] connect_timeout: \"9ms\" is out of range"},
    {"[redis]\nconnect_timeout = 61s\n", 2, "is out of range (10ms..1m)"},
    {"[redis]\nmax_pending = 0\n", 2, "[redis] max_pending: \"0\" is out of range (1..1000000)"},
    {"[redis]\nmax_pending = 1000001\n", 2, "is out of range (1..1000000)"},
    {"[redis]\nsentinel = 192.0.2.1:26379\n", 2, "[redis] sentinel: master_name is not set"},
    {"[redis]\nmaster_name = m\n", 2, "[redis] master_name: no sentinel line"},
    {"[redis]\nmaster_name = m\nsentinel = unix:/x\n", 3,
     "[redis] sentinel: \"unix:/x\" is a UNIX socket; Sentinels are reached over TCP"},
    {"[redis]\nmaster_name = m\nsentinel = 1.2.3.4\n", 3,
     "[redis] sentinel: \"1.2.3.4\" has no :PORT (use HOST:PORT or [IPV6]:PORT)"},
    {"[redis]\nsentinel = s.example\n", 2, "has no :PORT"},
    {"[redis]\nmaster_name = a b\n", 2, "[redis] master_name: \"a b\" contains"},
    /* [policy] */
    {"[policy]\nmode = bogus\n", 2, "[policy] mode: \"bogus\" is not one of: enforce, report"},
    {"[policy]\nmode =\n", 2, "is not one of: enforce, report"},
    {"[policy]\non_redis_error = reject\n", 2,
     "[policy] on_redis_error: \"reject\" is not one of: defer, dunno"},
    {"[policy]\nrecipient_delimiter = @\n", 2,
     "[policy] recipient_delimiter: \"@\" contains characters other than printable ASCII without "
     "blanks and '@'"},
    {"[policy]\nrecipient_delimiter = + -\n", 2, "\"+ -\" contains"},
    {"[policy]\nrecipient_delimiter = +-_.=~!#\n", 2, "is longer than 7 characters"},
    {"[policy]\nndr_default = maybe\n", 2,
     "[policy] ndr_default: \"maybe\" is not allow, deny or limit N/PERIOD (N 1..1000000, PERIOD "
     "1s..30d), optionally followed by report"},
    {"[policy]\nndr_default = report\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = deny reports\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = denyreport\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = limit 5/1h report report\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = limit 0/1h\n", 2, "is not allow, deny or limit N/PERIOD"},
    {"[policy]\nndr_default = limit 1000001/1h\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = limit 5/999ms\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = limit 5/31d\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = limit\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = limit5/1h\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = limit 5 / 1h\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default = allow please\n", 2, "is not allow, deny or limit"},
    {"[policy]\nndr_default =\n", 2, "is not allow, deny or limit"},
    /* [ratelimit] */
    {"[ratelimit]\ninvalid_recipients = 0/10m\n", 2,
     "[ratelimit] invalid_recipients: \"0/10m\" is not N/WINDOW (e.g. 20/10m) or 0 (off)"},
    {"[ratelimit]\ninvalid_recipients = 100001/1m\n", 2,
     "\"100001/1m\" is out of range (N 1..100000, WINDOW 1s..7d)"},
    {"[ratelimit]\ninvalid_recipients = 99999999999/1m\n", 2, "is out of range (N 1..100000"},
    {"[ratelimit]\ninvalid_recipients = 5/999ms\n", 2, "is out of range"},
    {"[ratelimit]\ninvalid_recipients = 5/8d\n", 2, "is out of range"},
    {"[ratelimit]\ninvalid_recipients = 5/0\n", 2, "is not N/WINDOW"},
    {"[harvest]\nthreshold = 200\n", 2, "[harvest] threshold: \"200\" is not N/WINDOW"},
    {"[harvest]\nnew_clients = tarpit\n", 2, "[harvest] new_clients: \"tarpit\""},
    {"[harvest]\nduration = 31d\n", 2, "[harvest] duration:"},
    {"[harvest]\nretry_after = 4h\n", 2, "[harvest] retry_after must be shorter than retry_window"},
    {"[harvest]\nretry_window = 1m\n", 2,
     "[harvest] retry_after must be shorter than retry_window"},
    {"[ratelimit]\ninvalid_recipients = 5\n", 2, "is not N/WINDOW"},
    {"[ratelimit]\ninvalid_recipients = 20/10x\n", 2, "is not N/WINDOW"},
    {"[ratelimit]\ninvalid_recipients = /10m\n", 2, "is not N/WINDOW"},
    {"[ratelimit]\ninvalid_recipients = 00\n", 2, "is not N/WINDOW"},
    {"[ratelimit]\nblock_time = 999ms\n", 2,
     "[ratelimit] block_time: \"999ms\" is out of range (1s..30d)"},
    {"[ratelimit]\nblock_time = 31d\n", 2, "is out of range (1s..30d)"},
    {"[ratelimit]\nipv6_prefix = 0\n", 2,
     "[ratelimit] ipv6_prefix: \"0\" is out of range (1..128)"},
    {"[ratelimit]\nipv6_prefix = 129\n", 2, "is out of range (1..128)"},
    {"[ratelimit]\nexempt = 10.0.0.0/33\n", 2, "[ratelimit] exempt: \"10.0.0.0/33\" is not"},
    /* [log] */
    {"[log]\nlevel = verbose\n", 2,
     "[log] level: \"verbose\" is not one of: error, warn, info, "
     "debug"},
    {"[log]\nsyslog_facility = local8\n", 2,
     "[log] syslog_facility: \"local8\" is not a syslog facility"},
    {"[log]\nsyslog_facility = kern\n", 2, "is not a syslog facility"},
    {"[log]\nsocket = dev/log\n", 2, "[log] socket: \"dev/log\" is not an absolute path"},
    {"[log]\nsocket = ./log.sock\n", 2, "is not an absolute path"},
    {"[log]\n\nsocket = /tmp/a\x01\n", 3, "control character 0x01 in the line"},
    /* what start-up would find on this host (issue 14 items 1, 3, 5, 7) */
    {"[server]\nlisten = inet:localhost:10041\n", 2,
     "[server] listen: \"inet:localhost:10041\" has a host name; a listener needs an IP address "
     "(e.g. inet:127.0.0.1:10041 or inet:[::1]:10041)"},
    {"[metrics]\nlisten = inet:mx-1.example.com:9100\n", 2,
     "[metrics] listen: \"inet:mx-1.example.com:9100\" has a host name"},
    {"[metrics]\nlisten = unix:/run/backstop-metrics\n", 2,
     "[metrics] listen: \"unix:/run/backstop-metrics\" is a unix socket; metrics are served on "
     "inet:IP:PORT only"},
    {"[server]\nlisten = unix:/etc/passwd\n", 2,
     "[server] listen: \"unix:/etc/passwd\" names a file that is not a socket; backstopd only "
     "ever replaces a stale socket"},
    {"[server]\nlisten = unix:/tmp\n", 2, "\"unix:/tmp\" names a file that is not a socket"},
    {"[server]\nlisten = unix:/nonexistent-bs14/dir/s.sock\n", 2,
     "[server] listen: \"unix:/nonexistent-bs14/dir/s.sock\" cannot be created: "
     "/nonexistent-bs14/dir: No such file or directory"},
    {"[server]\nlisten = unix:/etc/passwd/s.sock\n", 2,
     "\"unix:/etc/passwd/s.sock\" cannot be used: Not a directory"},
    {"[server]\nmax_connections = 5\nuser = nosuchuser-bs14\n", 3,
     "[server] user: \"nosuchuser-bs14\": no such user"},
    {"[server]\ngroup = nosuchgroup-bs14\n", 2,
     "[server] group: \"nosuchgroup-bs14\": no such group"},
    {"[log]\nlevel = info\n[server]\nsocket_group = nosuchgroup-bs14\n", 4,
     "[server] socket_group: \"nosuchgroup-bs14\": no such group"},
    /* structure */
    {"[bogus]\nx = 1\n", 1, "unknown section \"[bogus]\""},
    {"[redis]\ndb = 1\n\n[Redis]\n", 4, "unknown section \"[Redis]\""},
    {"[ redis ]\n", 1, "unknown section \"[ redis ]\""},
    {"[]\n", 1, "unknown section \"[]\""},
    {"[redis] junk\n", 1, "text after \"[section]\""},
    {"[redis] ; comment\n", 1, "text after \"[section]\""},
    {"[redis\ndb = 1\n", 1, "\"[redis\": missing ']'"},
    {"[redis]\ntmeout = 1s\n", 2, "[redis] tmeout: unknown key"},
    {"[redis]\nTimeout = 1s\n", 2, "[redis] Timeout: unknown key"},
    {"[redis]\nmax connections = 1\n", 2, "[redis] \"max connections\": unknown key"},
    {"[server]\ntimeout = 1s\n", 2, "[server] timeout: unknown key here; it belongs in [redis]"},
    {"db = 1\n", 1, "db: key before any [section]"},
    {"[redis]\ndb = 1\ndb = 2\n", 3, "[redis] db: set twice, first at line 2"},
    {"[redis]\ndb = 1\n[server]\n[redis]\ndb = 1\n", 5, "[redis] db: set twice, first at line 2"},
    {"[redis]\npassword = a\npassword = b\n", 3, "[redis] password: set twice, first at line 2"},
    {"[redis]\njunk\n", 2, "\"junk\": expected \"key = value\", \"[section]\" or a comment"},
    {"[redis]\n= 1\n", 2, "missing key name before '='"},
    {"[redis]\n : 1\n", 2, "indented line"},
    {"[redis]\ndb = 1\n  timeout = 1s\n", 3, "indented line: inih would read it as part of"},
    {"[redis]\ndb = 1\n\t[server]\n", 3, "indented line"},
    {"[redis]\n  db = 1\n", 2, "indented line"},
    {"[redis]\ndb = 1 ; one\n", 2,
     "[redis] db: a ';' after a blank starts an inih comment and would cut the value"},
    {"[redis]\npassword = ab ;cd\n", 2, "[redis] password: a ';' after a blank starts"},
    {"[redis]\npassword = ab\t;cd\n", 2, "[redis] password: a ';' after a blank starts"},
    {"[redis]\npassword = ;cd\n", 2, "[redis] password: a ';' after a blank starts"},
    {"[redis]\ndb ;x = 1\n", 2, "expected \"key = value\""},
    {"db = 1 ; x\n", 1, "db: a ';' after a blank starts"},
    {"[redis]\ndb = 1;x\n", 2, "[redis] db: \"1;x\" is not a number"},
    {"[redis]\ndb = 1 # x\n", 2, "[redis] db: \"1 # x\" is not a number"},
    {"[redis]\ndb = 1\x01\n", 2, "control character 0x01 in the line"},
    {"[redis]\ndb = 1\rx\n", 2, "control character 0x0d in the line"},
    {"[redis]\ndb = 1\x7f\n", 2, "control character 0x7f in the line"},
};

static void test_invalid(void)
{
    static bs_config cfg;
    char err[512], prefix[128];

    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        int rc = load(invalid[i].ini, &cfg, err, sizeof err);
        int ok;

        if (invalid[i].line > 0)
            snprintf(prefix, sizeof prefix, "%s:%d: ", tmp_path, invalid[i].line);
        else
            snprintf(prefix, sizeof prefix, "%s: ", tmp_path);
        CHECK_EQ_INT(rc, -1);
        ok = rc == -1 && strncmp(err, prefix, strlen(prefix)) == 0 &&
             strstr(err, invalid[i].msg) != NULL;
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  invalid[%zu]: got \"%s\"\n    want \"%s...%s...\"\n", i,
                    rc == 0 ? "(loaded)" : err, prefix, invalid[i].msg);
    }
}

/* ------------------------------------------------------------ limits and traps */

/* expect_error - load text, want rc -1 and "TMP:line: " + a msg substring */
static void expect_error(const char *text, size_t len, int line, const char *msg)
{
    static bs_config cfg;
    char err[512], prefix[128];
    int rc = load_len(text, len, &cfg, err, sizeof err);
    int ok;

    snprintf(prefix, sizeof prefix, "%s:%d: ", tmp_path, line);
    ok = rc == -1 && strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, msg) != NULL;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  got \"%s\", want \"%s...%s...\"\n", rc == 0 ? "(loaded)" : err, prefix,
                msg);
}

/* list_text - head, then lines "key = PRE<i>POST" for i = 1..n */
static void list_text(char *buf, size_t size, const char *head, const char *key, const char *pre,
                      const char *post, unsigned n)
{
    size_t o = (size_t)snprintf(buf, size, "%s", head);

    for (unsigned i = 1; i <= n && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s = %s%u%s\n", key, pre, i, post);
}

static void test_lists(void)
{
    static bs_config cfg;
    static char text[16384];
    char err[512];
    static const struct {
        const char *head, *key, *pre, *post;
        unsigned max;
        const char *msg;
    } lists[] = {
        {"[server]\n", "listen", "inet:127.0.0.1:", "", BS_CFG_MAX_LISTEN,
         "[server] listen: more than 8 entries"},
        {"[server]\n", "allow", "10.0.0.", "", BS_CFG_MAX_ALLOW,
         "[server] allow: more than 64 entries"},
        {"[redis]\nmaster_name = m\n", "sentinel", "192.0.2.", ":26379", BS_CFG_MAX_SENTINELS,
         "[redis] sentinel: more than 8 entries"},
        {"[ratelimit]\n", "exempt", "10.1.", ".0/24", BS_CFG_MAX_EXEMPT,
         "[ratelimit] exempt: more than 64 entries"},
    };

    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        int head_lines = 0, rc;

        for (const char *c = lists[i].head; *c != '\0'; c++)
            head_lines += *c == '\n';
        list_text(text, sizeof text, lists[i].head, lists[i].key, lists[i].pre, lists[i].post,
                  lists[i].max);
        rc = load(text, &cfg, err, sizeof err);
        CHECK_EQ_INT(rc, 0);
        if (rc != 0)
            fprintf(stderr, "  list %zu at max: %s\n", i, err);
        list_text(text, sizeof text, lists[i].head, lists[i].key, lists[i].pre, lists[i].post,
                  lists[i].max + 1);
        expect_error(text, strlen(text), head_lines + (int)lists[i].max + 1, lists[i].msg);
    }

    /* full lists hold what was written, in order */
    list_text(text, sizeof text, "[server]\n", "listen", "inet:127.0.0.1:", "", BS_CFG_MAX_LISTEN);
    CHECK_EQ_INT(load(text, &cfg, err, sizeof err), 0);
    CHECK_EQ_INT(cfg.nlisten, BS_CFG_MAX_LISTEN);
    CHECK_EQ_INT(cfg.listen[0].port, 1);
    CHECK_EQ_INT(cfg.listen[7].port, 8);

    /* the first allow line replaces the defaults; later ones add */
    CHECK_EQ_INT(
        load("[server]\nallow = 192.0.2.0/24\nallow = 198.51.100.0/24\n", &cfg, err, sizeof err),
        0);
    CHECK_EQ_INT(cfg.nallow, 2);
    CHECK_EQ_INT(cfg.allow[0].addr[12], 192);
    CHECK_EQ_INT(cfg.allow[1].addr[12], 198);
    CHECK_EQ_INT(cfg.nexempt, 2); /* untouched default */
    CHECK_EQ_INT(load("[ratelimit]\nexempt = 192.0.2.0/24\n", &cfg, err, sizeof err), 0);
    CHECK_EQ_INT(cfg.nexempt, 1);
    CHECK_EQ_INT(cfg.exempt[0].bits, 96 + 24);
    CHECK_EQ_INT(cfg.nallow, 2); /* untouched default: 127.0.0.0/8, ::1/128 */
    CHECK_EQ_INT(cfg.allow[0].bits, 96 + 8);
    CHECK_EQ_INT(cfg.allow[1].bits, 128);
}

/* long_line - "[redis]\npassword = " padded with c to a line of n characters, then eol */
static size_t long_line(char *buf, size_t n, char c, const char *eol)
{
    size_t o = (size_t)sprintf(buf, "[redis]\npassword = ");
    size_t start = strlen("[redis]\n");

    while (o - start < n)
        buf[o++] = c;
    o += (size_t)sprintf(buf + o, "%s", eol);
    return o;
}

/* test_log_socket - [log] socket holds sun_path: 107 bytes load (and come
 * back in the dump), 108 fail with the file's line */
static void test_log_socket(void)
{
    static bs_config cfg;
    char text[256], path[128], err[512];
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

    CHECK_EQ_INT(max, 107);
    memset(path, 'a', sizeof path);
    path[0] = '/';
    path[max] = '\0';
    snprintf(text, sizeof text, "[log]\nsocket = %s\n", path);
    CHECK_EQ_INT(load(text, &cfg, err, sizeof err), 0);
    CHECK_EQ_STR(cfg.log_socket, path);

    path[max] = 'a';
    path[max + 1] = '\0';
    snprintf(text, sizeof text, "[log]\nlevel = info\nsocket = %s\n", path);
    expect_error(text, strlen(text), 3, "[log] socket: \"/aaaa");
    expect_error(text, strlen(text), 3, "is longer than 107 bytes (a socket path)");
}

static void test_long_lines(void)
{
    static bs_config cfg;
    char buf[1024], err[512];
    size_t len;

    /* 197 characters is the longest line inih reads whole; with "\r\n" too */
    len = long_line(buf, 127 + strlen("password = "), 'p', "\n");
    CHECK_EQ_INT(load_len(buf, len, &cfg, err, sizeof err), 0);
    CHECK_EQ_INT(strlen(cfg.password), 127);

    len = (size_t)sprintf(buf, "[redis]\n# ");
    memset(buf + len, 'c', 195);
    len += 195;
    len += (size_t)sprintf(buf + len, "\r\ndb = 1\n");
    CHECK_EQ_INT(load_len(buf, len, &cfg, err, sizeof err), 0); /* comment of 197 + CRLF */
    CHECK_EQ_INT(cfg.db, 1);

    len = (size_t)sprintf(buf, "[redis]\n# ");
    memset(buf + len, 'c', 196);
    len += 196;
    len += (size_t)sprintf(buf + len, "\ndb = 1\n");
    expect_error(buf, len, 2, "line longer than 197 characters (inih would split it)");

    /* the trap: inih cuts at 199 and reads the tail as a key line */
    len = long_line(buf, 199, 'x', "evil = 1\n");
    expect_error(buf, len, 2, "line longer than 197 characters");
    len = long_line(buf, 600, 'x', "\n");
    expect_error(buf, len, 2, "line longer than 197 characters");
    len = long_line(buf, 198, 'x', ""); /* last line, no newline */
    expect_error(buf, len, 2, "line longer than 197 characters");

    /* a string value at its field size, inside the line limit */
    len = long_line(buf, 128 + strlen("password = "), 'p', "\n");
    expect_error(buf, len, 2, "[redis] password: the value is longer than 127 characters");
    CHECK(load_len(buf, len, &cfg, err, sizeof err) == -1 && strstr(err, "ppppp") == NULL);
}

static void test_bytes(void)
{
    static const char nul[] = "[redis]\ndb = 1\0junk\n";

    expect_error(nul, sizeof nul - 1, 2, "NUL byte in the line");
    expect_error("[redis]\n\0", 9, 2, "NUL byte in the line");
}

static void test_secrets_not_echoed(void)
{
    static bs_config cfg;
    char err[512];

    CHECK_EQ_INT(load("[redis]\nsentinel_password = hunter2\x01\n", &cfg, err, sizeof err), -1);
    CHECK(strstr(err, "hunter2") == NULL);
    CHECK_EQ_INT(load("[redis]\npassword = hunter2 ;x\n", &cfg, err, sizeof err), -1);
    CHECK(strstr(err, "hunter2") == NULL);
    CHECK_EQ_INT(load("[redis]\npassword hunter2\n", &cfg, err, sizeof err), -1);
    CHECK(strstr(err, "hunter2") == NULL && strstr(err, "\"password\": expected") != NULL);
    CHECK_EQ_INT(load("[redis]\npassword = hunter2\npassword = x\n", &cfg, err, sizeof err), -1);
    CHECK(strstr(err, "hunter2") == NULL);
}

/* ------------------------------------------------------------ whole files */

static void test_defaults(void)
{
    static bs_config cfg, def;
    char err[512];

    bs_config_defaults(&def);
    CHECK_EQ_INT(def.nlisten, 0);
    CHECK_EQ_INT(load("", &cfg, err, sizeof err), 0);
    CHECK_EQ_STR(cfg.file, tmp_path);
    CHECK_EQ_INT(cfg.nlisten, 1);
    CHECK_EQ_INT(cfg.listen[0].type, BS_EP_INET);
    CHECK_EQ_STR(cfg.listen[0].host, "127.0.0.1");
    CHECK_EQ_INT(cfg.listen[0].port, 10040);
    CHECK_EQ_INT(cfg.socket_mode, 0660);
    CHECK_EQ_STR(cfg.socket_group, "");
    CHECK_EQ_INT(cfg.nallow, 2);
    CHECK_EQ_INT(cfg.allow[0].bits, 104);
    CHECK_EQ_INT(cfg.allow[0].addr[12], 127);
    CHECK_EQ_INT(cfg.allow[0].addr[10], 0xff);
    CHECK_EQ_INT(cfg.allow[1].bits, 128);
    CHECK_EQ_INT(cfg.allow[1].addr[15], 1);
    CHECK_EQ_INT(cfg.max_connections, 1000);
    CHECK_EQ_INT(cfg.idle_timeout_ms, 330000);
    CHECK_EQ_STR(cfg.user, "");
    CHECK_EQ_STR(cfg.group, "");
    CHECK_EQ_INT(cfg.redis.type, BS_EP_INET);
    CHECK_EQ_STR(cfg.redis.host, "127.0.0.1");
    CHECK_EQ_INT(cfg.redis.port, 6379);
    CHECK_EQ_STR(cfg.username, "");
    CHECK_EQ_STR(cfg.password, "");
    CHECK_EQ_INT(cfg.db, 0);
    CHECK_EQ_STR(cfg.prefix, "backstop:");
    CHECK_EQ_INT(cfg.timeout_ms, 300);
    CHECK_EQ_INT(cfg.connect_timeout_ms, 1000);
    CHECK_EQ_INT(cfg.max_pending, 4096);
    CHECK_EQ_INT(cfg.nsentinels, 0);
    CHECK_EQ_STR(cfg.master_name, "");
    CHECK_EQ_STR(cfg.sentinel_password, "");
    CHECK_EQ_INT(cfg.mode, BS_MODE_ENFORCE);
    CHECK_EQ_INT(cfg.on_redis_error, BS_ON_ERROR_DEFER);
    CHECK_EQ_STR(cfg.recipient_delimiter, "+");
    CHECK_EQ_INT(cfg.ndr_default.action, BS_NDR_DENY);
    CHECK_EQ_INT(cfg.invalid_limit, 20);
    CHECK_EQ_INT(cfg.invalid_window_ms, 600000);
    CHECK_EQ_INT(cfg.block_time_ms, 3600000);
    CHECK_EQ_INT(cfg.ipv6_prefix, 64);
    CHECK_EQ_INT(cfg.nexempt, 2);
    CHECK_EQ_INT(cfg.log_level, BS_LOG_INFO);
    CHECK_EQ_STR(cfg.syslog_facility, "mail");
    CHECK_EQ_STR(cfg.log_socket, "/dev/log");

    /* defaults + the default listener = the empty file */
    def.listen[0] = cfg.listen[0];
    def.nlisten = 1;
    CHECK(same_config(&def, &cfg));

    /* comments and blank lines only: still the defaults */
    CHECK_EQ_INT(load("# nothing\n\n; here\n", &def, err, sizeof err), 0);
    CHECK(same_config(&def, &cfg));
}

static void test_fields(void)
{
    static bs_config cfg;
    char err[512];

    CHECK_EQ_INT(load("[server]\nlisten = inet:[2001:db8::1]:25\nlisten = unix:/run/b.sock\n"
                      "[redis]\nserver = unix:/run/redis.sock\nsentinel = [::1]:26379\n"
                      "sentinel = host.example:26380\nmaster_name = mm\n"
                      "[policy]\nmode = report\non_redis_error = dunno\nndr_default = limit 7/2h\n"
                      "[ratelimit]\ninvalid_recipients = 0\n[log]\nlevel = debug\n",
                      &cfg, err, sizeof err),
                 0);
    CHECK_EQ_INT(cfg.nlisten, 2);
    CHECK_EQ_INT(cfg.listen[0].type, BS_EP_INET);
    CHECK_EQ_STR(cfg.listen[0].host, "2001:db8::1");
    CHECK_EQ_INT(cfg.listen[0].port, 25);
    CHECK_EQ_INT(cfg.listen[1].type, BS_EP_UNIX);
    CHECK_EQ_STR(cfg.listen[1].path, "/run/b.sock");
    CHECK_EQ_INT(cfg.redis.type, BS_EP_UNIX);
    CHECK_EQ_STR(cfg.redis.path, "/run/redis.sock");
    CHECK_EQ_INT(cfg.nsentinels, 2);
    CHECK_EQ_INT(cfg.sentinels[0].type, BS_EP_INET);
    CHECK_EQ_STR(cfg.sentinels[0].host, "::1");
    CHECK_EQ_INT(cfg.sentinels[0].port, 26379);
    CHECK_EQ_STR(cfg.sentinels[1].host, "host.example");
    CHECK_EQ_STR(cfg.master_name, "mm");
    CHECK_EQ_INT(cfg.mode, BS_MODE_REPORT);
    CHECK_EQ_INT(cfg.on_redis_error, BS_ON_ERROR_DUNNO);
    CHECK_EQ_INT(cfg.ndr_default.action, BS_NDR_LIMIT);
    CHECK_EQ_INT(cfg.ndr_default.limit, 7);
    CHECK_EQ_INT(cfg.ndr_default.period_ms, 7200000);
    CHECK_EQ_INT(cfg.invalid_limit, 0);
    CHECK_EQ_INT(cfg.invalid_window_ms, 0);
    CHECK_EQ_INT(cfg.log_level, BS_LOG_DEBUG);
}

/* A file that changes every key, with awkward but legal values. */
static const char full_ini[] = "[server]\n"
                               "listen = inet:192.0.2.1:10040\n"
                               "listen = inet:[2001:db8::1]:10041\n"
                               "listen = unix:/run/backstop.sock\n"
                               "socket_mode = 0600\n"
                               "socket_group = root\n"
                               "allow = 192.0.2.0/24\n"
                               "allow = 2001:db8::/32\n"
                               "allow = ::ffff:10.0.0.0/104\n"
                               "max_connections = 5\n"
                               "idle_timeout = 1500ms\n"
                               "user = nobody\n"
                               "group = nogroup\n"
                               "[redis]\n"
                               "server = unix:/run/redis.sock\n"
                               "username = u\n"
                               "password =;p a;ss#\n"
                               "db = 7\n"
                               "prefix = x:\n"
                               "timeout = 45ms\n"
                               "connect_timeout = 2s\n"
                               "max_pending = 9\n"
                               "sentinel = 192.0.2.10:26379\n"
                               "sentinel = [2001:db8::10]:26380\n"
                               "sentinel = tcp:sentinel.example.com:26381\n"
                               "master_name = mymaster\n"
                               "sentinel_password = sp=1:2\n"
                               "[policy]\n"
                               "mode = report\n"
                               "on_redis_error = dunno\n"
                               "recipient_delimiter = +-=\n"
                               "ndr_default = limit 3/90m\n"
                               "[ratelimit]\n"
                               "invalid_recipients = 0\n"
                               "block_time = 2d\n"
                               "ipv6_prefix = 56\n"
                               "exempt = 198.51.100.0/24\n"
                               "[log]\n"
                               "level = debug\n"
                               "syslog_facility = local3\n"
                               "socket = /run/backstop/log\n";

/* round_trip - load text, dump, load the dump: same config, same dump */
static void round_trip(const char *name, const char *text)
{
    static bs_config a, b;
    char err[512];
    char *d1, *d2;

    CHECK_EQ_INT(load(text, &a, err, sizeof err), 0);
    d1 = dump_text(&a);
    CHECK_EQ_INT(load(d1, &b, err, sizeof err), 0);
    d2 = dump_text(&b);
    CHECK(same_config(&a, &b));
    CHECK_EQ_STR(d1, d2);
    if (!same_config(&a, &b))
        fprintf(stderr, "  round trip of %s: %s\n%s", name, err, d1);
    free(d1);
    free(d2);
}

static void test_round_trip(void)
{
    static bs_config cfg;
    char err[512];
    char *d;

    round_trip("empty", "");
    round_trip("full", full_ini);
    round_trip("empty strings", "[policy]\nrecipient_delimiter =\n[redis]\nprefix =\n");
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        round_trip(valid[i].ini, valid[i].ini);

    /* the full file really changed every line of the default dump */
    CHECK_EQ_INT(load(full_ini, &cfg, err, sizeof err), 0);
    CHECK_EQ_STR(cfg.password, ";p a;ss#");
    CHECK_EQ_STR(cfg.sentinel_password, "sp=1:2");
    CHECK_EQ_STR(cfg.recipient_delimiter, "+-=");
    CHECK_EQ_INT(cfg.allow[2].bits, 104);
    d = dump_text(&cfg);
    CHECK(strstr(d, "\npassword =;p a;ss#\n") != NULL);
    CHECK(strstr(d, "\nallow = 10.0.0.0/8\n") != NULL);
    CHECK(strstr(d, "\nsentinel = [2001:db8::10]:26380\n") != NULL);
    CHECK(strstr(d, "\nlisten = inet:[2001:db8::1]:10041\n") != NULL);
    free(d);
}

/* test_dump_redacted - -t -v prints no secret (issue 14 item 8) */
static void test_dump_redacted(void)
{
    static bs_config cfg, back;
    char err[512];
    char *d;

    CHECK_EQ_INT(load(full_ini, &cfg, err, sizeof err), 0);
    d = dump_redacted(&cfg);
    CHECK(strstr(d, "p a;ss") == NULL);
    CHECK(strstr(d, "sp=1:2") == NULL);
    CHECK(strstr(d, "\n# password = (set, not shown)\n") != NULL);
    CHECK(strstr(d, "\n# sentinel_password = (set, not shown)\n") != NULL);
    CHECK(strstr(d, "\nusername = u\n") != NULL);
    /* it still loads: everything but the secrets comes back */
    CHECK_EQ_INT(load(d, &back, err, sizeof err), 0);
    CHECK_EQ_STR(back.password, "");
    CHECK_EQ_INT(back.db, 7);
    free(d);
    /* an unset secret is shown as unset */
    CHECK_EQ_INT(load("", &cfg, err, sizeof err), 0);
    d = dump_redacted(&cfg);
    CHECK(strstr(d, "\npassword =\n") != NULL);
    free(d);
}

/* etc/backstop.ini: loads; equals the defaults; its commented keys are the defaults */
static void test_etc_file(void)
{
    static bs_config etc, empty, uncommented;
    static char text[65536];
    char err[512], line[512], key[64];
    char *dump, *p;
    size_t o = 0, nkeys = 0;
    FILE *fp;
    int rc;

    rc = bs_config_load(ETC_INI, &etc, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s: %s\n", ETC_INI, err);
        return;
    }
    CHECK_EQ_INT(load("", &empty, err, sizeof err), 0);
    CHECK(same_config(&etc, &empty));

    /* uncomment every "# key = value" line: still the defaults */
    fp = fopen(ETC_INI, "r");
    CHECK(fp != NULL);
    if (fp == NULL)
        return;
    while (fgets(line, sizeof line, fp) != NULL) {
        CHECK(strlen(line) <= 198); /* 197 + '\n' */
        size_t n = strspn(line + 2, "abcdefghijklmnopqrstuvwxyz_");
        if (strncmp(line, "# ", 2) == 0 && n > 0 && strncmp(line + 2 + n, " =", 2) == 0) {
            o += (size_t)snprintf(text + o, sizeof text - o, "%s", line + 2);
            nkeys++;
        } else {
            o += (size_t)snprintf(text + o, sizeof text - o, "%s", line);
        }
    }
    fclose(fp);
    CHECK(nkeys >= 25);
    rc = load(text, &uncommented, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "  uncommented %s: %s\n", ETC_INI, err);
    CHECK(same_config(&uncommented, &empty));

    /* every key the dump knows is in the file, set or commented */
    dump = dump_text(&empty);
    for (p = dump; (p = strchr(p, '\n')) != NULL; p++) {
        size_t n = strspn(p + 1, "abcdefghijklmnopqrstuvwxyz_");
        if (n == 0 || n >= sizeof key || p[1 + n] != ' ')
            continue;
        memcpy(key, p + 1, n);
        key[n] = '\0';
        snprintf(line, sizeof line, "\n%s =", key);
        int found = strstr(text, line) != NULL; /* text is the uncommented copy */
        CHECK(found);
        if (!found)
            fprintf(stderr, "  %s does not document %s\n", ETC_INI, key);
    }
    free(dump);
}

static void test_open_errors(void)
{
    static bs_config cfg;
    char err[512], path[400];

    CHECK_EQ_INT(bs_config_load("/nonexistent/backstop.ini", &cfg, err, sizeof err), -1);
    CHECK_EQ_STR(err, "/nonexistent/backstop.ini: cannot open: No such file or directory");
    CHECK_EQ_INT(bs_config_load("/", &cfg, err, sizeof err), -1);
    CHECK(strncmp(err, "/: read error", 13) == 0);
    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    CHECK_EQ_INT(bs_config_load(path, &cfg, err, sizeof err), -1);
    CHECK(strstr(err, "path longer than 255 bytes") != NULL);
    /* err may be absent or tiny */
    CHECK_EQ_INT(load("[redis]\ndb = x\n", &cfg, NULL, 0), -1);
    CHECK_EQ_INT(load("[redis]\ndb = x\n", &cfg, err, 1), -1);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(load("[redis]\ndb = x\n", &cfg, err, 10), -1);
    CHECK_EQ_INT(strlen(err), 9);
}

/* ------------------------------------------------------------ value parsers */

static void test_parse_duration(void)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"300ms", 0, 300},
        {"5s", 0, 5000},
        {"10m", 0, 600000},
        {"1h", 0, 3600000},
        {"2d", 0, 172800000},
        {"30", 0, 30000},
        {"0", 0, 0},
        {"0ms", 0, 0},
        {"18446744073709551615ms", 0, UINT64_MAX},
        {"18446744073709551616ms", -1, 0},
        {"18446744073709551s", 0, UINT64_C(18446744073709551000)},
        {"18446744073709552s", -1, 0},
        {"213503982334d", 0, UINT64_C(213503982334) * 86400000},
        {"213503982335d", -1, 0},
        {"99999999999999999999", -1, 0},
        {"", -1, 0},
        {"ms", -1, 0},
        {"-1s", -1, 0},
        {"+1s", -1, 0},
        {" 1s", -1, 0},
        {"1s ", -1, 0},
        {"1 s", -1, 0},
        {"1.5s", -1, 0},
        {"1w", -1, 0},
        {"1ss", -1, 0},
        {"1MS", -1, 0},
        {"1s1", -1, 0},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms = 12345;
        int rc = bs_parse_duration(cases[i].s, &ms);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc != cases[i].rc)
            fprintf(stderr, "  duration \"%s\"\n", cases[i].s);
        if (cases[i].rc == 0)
            CHECK(ms == cases[i].ms);
        else
            CHECK(ms == 12345);
    }
}

static void test_parse_rate(void)
{
    static const struct {
        const char *s;
        int rc;
        uint32_t n;
        uint64_t ms;
    } cases[] = {
        {"20/10m", 0, 20, 600000},
        {"0", 0, 0, 0},
        {"1/1ms", 0, 1, 1},
        {"4294967295/1s", 0, UINT32_MAX, 1000},
        {"4294967296/1s", -1, 0, 0},
        {"0/10m", -1, 0, 0},
        {"5/0", -1, 0, 0},
        {"5/", -1, 0, 0},
        {"/5s", -1, 0, 0},
        {"5", -1, 0, 0},
        {"5/1s/1s", -1, 0, 0},
        {"", -1, 0, 0},
        {"00", -1, 0, 0},
        {" 5/1s", -1, 0, 0},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t n = 7;
        uint64_t ms = 7;
        int rc = bs_parse_rate(cases[i].s, &n, &ms);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc != cases[i].rc)
            fprintf(stderr, "  rate \"%s\"\n", cases[i].s);
        if (rc == 0 && cases[i].rc == 0) {
            CHECK(n == cases[i].n);
            CHECK(ms == cases[i].ms);
        }
    }
}

static void test_parse_ndr_rule(void)
{
    static const struct {
        const char *s;
        size_t len; /* 0: strlen */
        int rc, action;
        uint32_t limit;
        uint64_t period_ms;
        int report;
    } cases[] = {
        {"allow", 0, 0, BS_NDR_ALLOW, 0, 0, 0},
        {"deny", 0, 0, BS_NDR_DENY, 0, 0, 0},
        {"ALLOW", 0, 0, BS_NDR_ALLOW, 0, 0, 0},
        {" \tDeny\t ", 0, 0, BS_NDR_DENY, 0, 0, 0},
        {"limit 5/1h", 0, 0, BS_NDR_LIMIT, 5, 3600000, 0},
        {"LIMIT\t5/1h", 0, 0, BS_NDR_LIMIT, 5, 3600000, 0},
        {"  limit   1/1s  ", 0, 0, BS_NDR_LIMIT, 1, 1000, 0},
        {"limit 1000000/30d", 0, 0, BS_NDR_LIMIT, 1000000, 30 * UINT64_C(86400000), 0},
        {"limit 1/1000ms", 0, 0, BS_NDR_LIMIT, 1, 1000, 0},
        {"denyXYZ", 4, 0, BS_NDR_DENY, 0, 0, 0}, /* only len bytes are read */
        {"limit 2/5mjunk", 10, 0, BS_NDR_LIMIT, 2, 300000, 0},
        {"allow", 4, -1, 0, 0, 0, 0},
        {"deny\0", 5, -1, 0, 0, 0, 0},
        {"de\0ny", 5, -1, 0, 0, 0, 0},
        {"limit 5/1h\0", 11, -1, 0, 0, 0, 0},
        {"limit 0/1h", 0, -1, 0, 0, 0, 0},
        {"limit 1000001/1h", 0, -1, 0, 0, 0, 0},
        {"limit 5/999ms", 0, -1, 0, 0, 0, 0},
        {"limit 5/30d1ms", 0, -1, 0, 0, 0, 0},
        {"limit 5/2592000001ms", 0, -1, 0, 0, 0, 0},
        {"limit 5/31d", 0, -1, 0, 0, 0, 0},
        {"limit 0", 0, -1, 0, 0, 0, 0},
        {"limit", 0, -1, 0, 0, 0, 0},
        {"limit ", 0, -1, 0, 0, 0, 0},
        {"limit5/1h", 0, -1, 0, 0, 0, 0},
        {"limit 5 /1h", 0, -1, 0, 0, 0, 0},
        {"limit 5/ 1h", 0, -1, 0, 0, 0, 0},
        {"limit -5/1h", 0, -1, 0, 0, 0, 0},
        {"limit 99999999999999999999999/1h", 0, -1, 0, 0, 0, 0},
        {"allowed", 0, -1, 0, 0, 0, 0},
        {"allow deny", 0, -1, 0, 0, 0, 0},
        {"", 0, -1, 0, 0, 0, 0},
        {"   ", 0, -1, 0, 0, 0, 0},
        {"\nallow", 0, -1, 0, 0, 0, 0},
        /* the optional trailing "report" word */
        {"deny report", 0, 0, BS_NDR_DENY, 0, 0, 1},
        {" DENY \t Report ", 0, 0, BS_NDR_DENY, 0, 0, 1},
        {"allow report", 0, 0, BS_NDR_ALLOW, 0, 0, 1},
        {"limit 10/1h report", 0, 0, BS_NDR_LIMIT, 10, 3600000, 1},
        {"limit 10/1h report", 11, 0, BS_NDR_LIMIT, 10, 3600000, 0}, /* only len bytes */
        {"deny report", 10, -1, 0, 0, 0, 0},
        {"report", 0, -1, 0, 0, 0, 0},
        {" report", 0, -1, 0, 0, 0, 0},
        {"denyreport", 0, -1, 0, 0, 0, 0},
        {"deny reports", 0, -1, 0, 0, 0, 0},
        {"deny report report", 0, -1, 0, 0, 0, 0},
        {"report deny", 0, -1, 0, 0, 0, 0},
        {"limit 10/1hreport", 0, -1, 0, 0, 0, 0},
        {"deny report\0", 12, -1, 0, 0, 0, 0},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bs_ndr_rule r = {.action = 99, .limit = 99, .period_ms = 99};
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].s);
        int rc = bs_parse_ndr_rule(cases[i].s, len, &r);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc != cases[i].rc)
            fprintf(stderr, "  ndr rule case %zu \"%s\"\n", i, cases[i].s);
        if (cases[i].rc == 0) {
            CHECK_EQ_INT(r.action, cases[i].action);
            CHECK(r.limit == cases[i].limit);
            CHECK(r.period_ms == cases[i].period_ms);
            CHECK_EQ_INT(r.report, cases[i].report);
        } else {
            CHECK_EQ_INT(r.action, 99); /* untouched */
        }
    }
    CHECK_EQ_INT(bs_parse_ndr_rule(NULL, 0, NULL), -1);
}

/* the mode HASH's values, and the canonical text of a rule */
static void test_parse_mode(void)
{
    char buf[64];
    bs_ndr_rule r;

    CHECK_EQ_INT(bs_parse_mode("enforce", 7), BS_MODE_ENFORCE);
    CHECK_EQ_INT(bs_parse_mode(" Report\t", 8), BS_MODE_REPORT);
    CHECK_EQ_INT(bs_parse_mode("OFF", 3), BS_MODE_OFF);
    CHECK_EQ_INT(bs_parse_mode("offX", 3), BS_MODE_OFF); /* only len bytes */
    CHECK_EQ_INT(bs_parse_mode("of", 2), -1);
    CHECK_EQ_INT(bs_parse_mode("", 0), -1);
    CHECK_EQ_INT(bs_parse_mode("enforced", 8), -1);
    CHECK_EQ_INT(bs_parse_mode("on", 2), -1);
    CHECK_EQ_INT(bs_parse_mode("of\0f", 4), -1);
    CHECK_EQ_INT(bs_parse_mode(NULL, 0), -1);
    CHECK_EQ_STR(bs_mode_name(BS_MODE_OFF), "off");
    CHECK_EQ_STR(bs_mode_name(7), "?");
    CHECK_EQ_INT(bs_parse_ndr_rule("limit 5/90m report", 18, &r), 0);
    bs_format_ndr_rule(&r, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "limit 5/90m report");
}

static void test_parse_endpoint(void)
{
    bs_endpoint ep;

    CHECK_EQ_INT(bs_parse_endpoint("inet:127.0.0.1:10040", &ep), 0);
    CHECK_EQ_INT(ep.type, BS_EP_INET);
    CHECK_EQ_STR(ep.host, "127.0.0.1");
    CHECK_EQ_INT(ep.port, 10040);
    CHECK_EQ_INT(bs_parse_endpoint("tcp:[::1]:6379", &ep), 0);
    CHECK_EQ_STR(ep.host, "::1");
    CHECK_EQ_INT(ep.port, 6379);
    CHECK_EQ_INT(bs_parse_endpoint("unix:/var/run/redis.sock", &ep), 0);
    CHECK_EQ_INT(ep.type, BS_EP_UNIX);
    CHECK_EQ_STR(ep.path, "/var/run/redis.sock");
    /* sun_path holds 107 bytes and a NUL */
    char path[128] = "unix:/";
    memset(path + 6, 'p', 106);
    path[112] = '\0';
    CHECK_EQ_INT(bs_parse_endpoint(path, &ep), 0);
    CHECK_EQ_INT(strlen(ep.path), 107);
    path[112] = 'p';
    path[113] = '\0';
    ep.port = 4242;
    CHECK_EQ_INT(bs_parse_endpoint(path, &ep), -1);
    CHECK_EQ_INT(ep.port, 4242); /* untouched on error */
    /* host names: labels up to 63, names up to 253 */
    char host[300];
    snprintf(host, sizeof host, "inet:%.63s.example:1",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK_EQ_INT(bs_parse_endpoint(host, &ep), 0);
    snprintf(host, sizeof host, "inet:%.64s.example:1",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK_EQ_INT(bs_parse_endpoint(host, &ep), -1);
    CHECK_EQ_INT(bs_parse_endpoint("inet:a..b:1", &ep), -1);
    CHECK_EQ_INT(bs_parse_endpoint("inet:a-.b:1", &ep), -1);
    CHECK_EQ_INT(bs_parse_endpoint("inet:example.com.:1", &ep), -1);
    CHECK_EQ_INT(bs_parse_endpoint("inet:10.1:1", &ep), -1);
    CHECK_EQ_INT(bs_parse_endpoint("inet:[fe80::1%eth0]:1", &ep), -1);
    CHECK_EQ_INT(bs_parse_endpoint("inet:1.2.3.4:99999", &ep), -1);
    CHECK_EQ_INT(bs_parse_endpoint("inet:1.2.3.4:0080", &ep), 0);
    CHECK_EQ_INT(ep.port, 80);
    CHECK_EQ_INT(bs_parse_endpoint("", &ep), -1);
    CHECK_EQ_INT(bs_parse_endpoint("INET:1.2.3.4:5", &ep), -1);
}

/* ------------------------------------------------------------ log.c */

static void test_log_words(void)
{
    static const char *levels[] = {"error", "warn", "info", "debug"};
    static const char *good[] = {"mail",   "daemon", "user",   "local0", "local1", "local2",
                                 "local3", "local4", "local5", "local6", "local7", "LOCAL0"};
    static const char *bad[] = {"kern", "local8", "", "mail ", "auth"};
    static bs_config cfg;
    char ini[64], err[512];

    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(bs_log_level_parse(levels[i]), i);
        snprintf(ini, sizeof ini, "[log]\nlevel = %s\n", levels[i]);
        CHECK_EQ_INT(load(ini, &cfg, err, sizeof err), 0);
        CHECK_EQ_INT(cfg.log_level, bs_log_level_parse(levels[i])); /* same words, same values */
    }
    CHECK_EQ_INT(bs_log_level_parse("DEBUG"), BS_LOG_DEBUG);
    CHECK_EQ_INT(bs_log_level_parse("warning"), -1);
    CHECK_EQ_INT(bs_log_level_parse(""), -1);
    CHECK_EQ_INT(bs_log_level_parse(NULL), -1);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_EQ_INT(bs_log_facility_valid(good[i]), 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(bs_log_facility_valid(bad[i]), 0);
    CHECK_EQ_INT(bs_log_facility_valid(NULL), 0);
}

/* capture_stderr - run fn with fd 2 on a temp file; the output in buf */
static void capture_stderr(void (*fn)(void), char *buf, size_t size)
{
    char path[] = "/tmp/test_config_log.XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    ssize_t n;

    if (fd < 0 || saved < 0) {
        perror("test_config: capture");
        exit(2);
    }
    dup2(fd, 2);
    fn();
    dup2(saved, 2);
    close(saved);
    n = pread(fd, buf, size - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
}

static void log_some(void)
{
    static char big[5000];

    memset(big, 'x', sizeof big - 1);
    bs_log_level = BS_LOG_INFO;
    bs_warn("disk %s", "on\nfire");
    bs_debug("hidden %d", 1);
    bs_info("plain %d", 2);
    bs_error("bad %s", "thing");
    bs_info("%s", big);
    bs_log_level = BS_LOG_ERROR;
    bs_warn("suppressed");
    bs_error("still here");
    bs_log_level = BS_LOG_DEBUG;
    bs_debug("now shown");
    bs_log_level = BS_LOG_INFO;
}

static void test_log_lines(void)
{
    static char out[16384];
    char want[64];
    const char *x, *nl;

    capture_stderr(log_some, out, sizeof out);
    snprintf(want, sizeof want, " backstopd[%ld]: ", (long)getpid());
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "]: warning: disk on?fire\n") != NULL);
    CHECK(strstr(out, "hidden") == NULL);
    CHECK(strstr(out, "]: plain 2\n") != NULL);
    CHECK(strstr(out, "]: error: bad thing\n") != NULL);
    CHECK(strstr(out, "suppressed") == NULL);
    CHECK(strstr(out, "]: error: still here\n") != NULL);
    CHECK(strstr(out, "]: now shown\n") != NULL);
    /* the 5000-byte line is cut to the 2 KiB buffer and marked */
    x = strstr(out, "xxxx");
    CHECK(x != NULL);
    if (x != NULL) {
        nl = strchr(x, '\n');
        CHECK(nl != NULL && nl - x < 2048 && nl - x > 2000);
        CHECK(nl != NULL && strncmp(nl - 3, "...", 3) == 0);
    }
    /* "YYYY-MM-DD HH:MM:SS.mmm " at the start of each line */
    CHECK(strlen(out) > 24 && out[4] == '-' && out[10] == ' ' && out[19] == '.' && out[23] == ' ');
}

/* run_child - fork, run fn with stderr on /dev/null, return the wait status */
static int run_child(void (*fn)(void))
{
    int status = 0;
    pid_t pid = fork();

    if (pid == 0) {
        FILE *null = freopen("/dev/null", "w", stderr);
        (void)null;
        fn();
        _exit(99);
    }
    waitpid(pid, &status, 0);
    return status;
}

static void do_fatal(void)
{
    bs_fatal("bad config %d", 1);
}

static void do_panic(void)
{
    bs_panic("bug %d", 2);
}

/* fatal_without_f - a child that logs to syslog only (no -f), then fails */
static void fatal_without_f(void)
{
    int status = 0;
    pid_t pid = fork();

    if (pid == 0) {
        bs_log_open("backstopd", "mail", 0);
        bs_fatal("cannot bind %s", "unix:/x");
    }
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
}

static void test_log_exits(void)
{
    static char out[4096];
    int st = run_child(do_fatal);

    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    /* issue 14 item 6: a fatal line reaches stderr without -f */
    capture_stderr(fatal_without_f, out, sizeof out);
    CHECK(strstr(out, "]: fatal: cannot bind unix:/x\n") != NULL);
    st = run_child(do_panic);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
}

int main(void)
{
    test_valid();
    test_invalid();
    test_lists();
    test_log_socket();
    test_long_lines();
    test_bytes();
    test_secrets_not_echoed();
    test_defaults();
    test_fields();
    test_round_trip();
    test_dump_redacted();
    test_etc_file();
    test_open_errors();
    test_parse_duration();
    test_parse_rate();
    test_parse_ndr_rule();
    test_parse_mode();
    test_parse_endpoint();
    test_log_words();
    test_log_lines();
    test_log_exits();
    return check_summary();
}
