/*
 * ctl_main.c - backstopctl: command line, command table, help, dispatch
 *
 *   backstopctl [-c FILE] [-t DURATION] COMMAND [ARGS...] [OPTIONS]
 *   backstopctl --help | COMMAND --help | -V | --version
 *
 * PROVIDES
 *   main(). Every command is one row of commands[]: its words, operands,
 *   the options it takes, whether it needs the config and Redis, a summary
 *   and the equivalent redis-cli command (shown by --help). Every option is
 *   one row of options[]. The global options (-c, -t, -h) may also follow
 *   the command. The read commands take --json (the JSON bit below): one
 *   JSON object on stdout instead of the text, shapes in backstopctl(8);
 *   --json may also come before the command (refused there, as after it,
 *   for a command that does not take it).
 *
 * EXIT STATUS
 *   0 done; 1 an error, or a check that failed (see each command); 2 a bad
 *   command line (unknown command or option, wrong operands, a value that
 *   does not parse): nothing was done; 3 sync only: a guard refused a
 *   domain (ctl_sync.c).
 *
 * NEVER
 *   Talks to Redis before the command line and the operands have been
 *   checked. Logs to syslog: the library's logger is kept quiet (decide.c
 *   would log a warning for an unusable NDR value; we explain it instead).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "backstop/log.h"

#define MANY -1 /* max_args: no limit */

enum { NEED_CONFIG = 1, NEED_REDIS = 2 };
#define O(x) (1u << (x))
#define COMMON (O(BS_OPT_CONFIG) | O(BS_OPT_TIMEOUT) | O(BS_OPT_HELP))
#define JSON O(BS_OPT_JSON) /* a read command: --json */

typedef struct ctl_command {
    const char *name; /* first word */
    const char *verb; /* second word, or NULL */
    int (*run)(bs_ctl *c, int argc, char **argv);
    int min_args, max_args;
    unsigned opts;    /* O(option) bits it takes */
    unsigned needs;   /* NEED_* */
    const char *args; /* operands and options, for the synopsis */
    const char *summary;
    const char *redis_cli; /* the equivalent by hand ("\n" between lines) */
} ctl_command;

static const ctl_command commands[] = {
    {"domain", "add", bs_ctl_domain_add, 1, MANY, COMMON, NEED_CONFIG | NEED_REDIS, "DOMAIN...",
     "protect domains: their recipients must be known users", "SADD backstop:domains DOMAIN..."},
    {"domain", "del", bs_ctl_domain_del, 1, MANY, COMMON | O(BS_OPT_PURGE),
     NEED_CONFIG | NEED_REDIS, "[--purge] DOMAIN...",
     "stop protecting domains (--purge: drop their users too); 1 if one was not protected",
     "SREM backstop:domains DOMAIN...\n--purge: DEL backstop:rcpt:DOMAIN"},
    {"domain", "list", bs_ctl_domain_list, 0, MANY, COMMON | JSON, NEED_CONFIG | NEED_REDIS,
     "[DOMAIN...] [--json]",
     "protected domains: user counts, mode, would-reject counts; 1 if a DOMAIN given is not "
     "protected",
     "SMEMBERS backstop:domains\nSCARD backstop:rcpt:DOMAIN\nHMGET backstop:mode DOMAIN '*'\n"
     "HGET backstop:wouldreject DOMAIN"},
    {"domain", "mode", bs_ctl_domain_mode, 1, 2, COMMON | JSON, NEED_CONFIG | NEED_REDIS,
     "DOMAIN|* [enforce|report|off|default] [--json]",
     "a protected domain's mode (or '*': every other recipient's), at once on every backstopd: "
     "show it and where it comes from, set it, or drop it (default: '*', then [policy] mode)",
     "HMGET backstop:mode DOMAIN '*'\nHSET backstop:mode DOMAIN report\n"
     "HDEL backstop:mode DOMAIN"},
    {"user", "add", bs_ctl_user_add, 1, MANY, COMMON, NEED_CONFIG | NEED_REDIS,
     "DOMAIN LOCAL...  |  user add ADDRESS...",
     "add valid recipients (LOCAL '*' makes the domain catch-all)",
     "SADD backstop:rcpt:DOMAIN LOCAL..."},
    {"user", "del", bs_ctl_user_del, 1, MANY, COMMON, NEED_CONFIG | NEED_REDIS,
     "DOMAIN LOCAL...  |  user del ADDRESS...", "remove recipients; 1 if one was not there",
     "SREM backstop:rcpt:DOMAIN LOCAL..."},
    {"user", "list", bs_ctl_user_list, 1, 1, COMMON, NEED_CONFIG | NEED_REDIS, "DOMAIN",
     "the valid local parts of DOMAIN, sorted, one a line", "SMEMBERS backstop:rcpt:DOMAIN"},
    {"import", NULL, bs_ctl_import, 2, 2, COMMON | O(BS_OPT_REPLACE) | O(BS_OPT_SKIP_BAD),
     NEED_CONFIG | NEED_REDIS, "[--replace] [--skip-bad] DOMAIN FILE|-",
     "load users from a list or a Postfix virtual_mailbox_maps file, atomically; any bad line "
     "makes it write nothing (exit 1) unless --skip-bad",
     "SADD backstop:rcpt:DOMAIN LOCAL...  (--replace: DEL, then SADD, in MULTI/EXEC)"},
    {"ndr", "set", bs_ctl_ndr_set, 2, 4, COMMON, NEED_CONFIG | NEED_REDIS,
     "DOMAIN|.DOMAIN|* allow|deny|limit N/PERIOD [report]",
     "NDR (null sender) policy for a remote domain, its subdomains, or the default ('report': "
     "its refusals are only logged and counted as would-rejects)",
     "HSET backstop:ndr DOMAIN 'limit 10/1h'\nHSET backstop:ndr DOMAIN 'deny report'"},
    {"ndr", "del", bs_ctl_ndr_del, 1, 1, COMMON, NEED_CONFIG | NEED_REDIS, "DOMAIN|.DOMAIN|*",
     "remove an NDR entry; 1 if there was none", "HDEL backstop:ndr DOMAIN"},
    {"ndr", "list", bs_ctl_ndr_list, 0, 0, COMMON, NEED_CONFIG | NEED_REDIS, "",
     "every NDR entry, and the config's ndr_default", "HGETALL backstop:ndr"},
    {"ndr", "explain", bs_ctl_ndr_explain, 1, 1, COMMON | JSON, NEED_CONFIG | NEED_REDIS,
     "DOMAIN|ADDRESS [--json]", "which NDR entry decides for bounces to DOMAIN, and why",
     "HMGET backstop:ndr DOMAIN .PARENT... '*'  (first one set wins, else ndr_default)"},
    {"block", "list", bs_ctl_block_list, 0, 0, COMMON, NEED_CONFIG | NEED_REDIS, "",
     "blocked clients with their reason and time left",
     "--scan --pattern 'backstop:block:*'\nGET / PTTL backstop:block:CLIENT"},
    {"block", "add", bs_ctl_block_add, 1, 1, COMMON | O(BS_OPT_FOR) | O(BS_OPT_REASON),
     NEED_CONFIG | NEED_REDIS, "CLIENT [--for DURATION] [--reason TEXT]",
     "refuse a client (450 4.7.1) for DURATION (default [ratelimit] block_time)",
     "SET backstop:block:CLIENT manual PX 3600000"},
    {"block", "del", bs_ctl_block_del, 1, 1, COMMON, NEED_CONFIG | NEED_REDIS, "CLIENT",
     "unblock a client; 1 if it was not blocked", "DEL backstop:block:CLIENT"},
    {"client", NULL, bs_ctl_client, 1, 1, COMMON | JSON, NEED_CONFIG | NEED_REDIS, "IP [--json]",
     "block state, invalid recipients in the window, exemption; 1 if it is refused now",
     "GET / PTTL backstop:block:CLIENT\nZCOUNT backstop:rate:CLIENT (NOW-WINDOW +inf\n"
     "SMISMEMBER backstop:exempt IP CLIENT"},
    {"stats", NULL, bs_ctl_stats, 0, 0, COMMON | JSON | O(BS_OPT_DOMAIN), NEED_CONFIG | NEED_REDIS,
     "[--domain DOMAIN] [--json]",
     "the cluster-wide decision counters; --domain: that domain's mode (and where it comes "
     "from), would-reject count, users and last sync",
     "HGETALL backstop:stats\n--domain: HMGET backstop:mode DOMAIN '*', HGET "
     "backstop:wouldreject DOMAIN, SCARD backstop:rcpt:DOMAIN, HGET backstop:sync DOMAIN"},
    {"check", NULL, bs_ctl_check, 0, 0,
     COMMON | JSON | O(BS_OPT_SENDER) | O(BS_OPT_RECIPIENT) | O(BS_OPT_CLIENT) | O(BS_OPT_HELO) |
         O(BS_OPT_SERVER),
     NEED_CONFIG | NEED_REDIS,
     "--sender S --recipient R --client IP [--helo H] [--server inet:H:P|unix:PATH] [--json]",
     "send one real policy request to backstopd, print its action and explain it; 1 if no "
     "answer",
     "(no equivalent: it talks to backstopd, then reads what the daemon reads)"},
    {"purge-queue", NULL, bs_ctl_purge_queue, 0, 0,
     COMMON | O(BS_OPT_YES) | O(BS_OPT_QUEUE) | O(BS_OPT_CONFIG_DIR) | O(BS_OPT_FROM_JSON) |
         O(BS_OPT_POSTQUEUE) | O(BS_OPT_POSTSUPER),
     NEED_CONFIG | NEED_REDIS,
     "[--yes] [--queue NAME] [--config-dir DIR] [--from-json FILE] [--postqueue CMD] "
     "[--postsuper CMD]",
     "list (--yes: delete) queued bounces to domains whose NDR policy is deny",
     "(no equivalent: postqueue -j, ndr explain per domain, postsuper -d -)"},
    {"rbl-check", NULL, bs_ctl_rbl_check, 1, MANY,
     COMMON | JSON | O(BS_OPT_ZONE) | O(BS_OPT_NAMESERVER) | O(BS_OPT_STRICT), 0,
     "IP... [--zone ZONE]... [--nameserver IP[:PORT]] [--strict] [--json]",
     "look IPs up in DNS blocklists; 1 if listed anywhere (--strict: or a lookup failed)",
     "(no equivalent: dig +short 1.2.0.192.zen.spamhaus.org A)"},
    {"sync", NULL, bs_ctl_sync, 0, MANY,
     COMMON | JSON | O(BS_OPT_DRY_RUN) | O(BS_OPT_FORCE) | O(BS_OPT_QUIET),
     NEED_CONFIG | NEED_REDIS, "[--dry-run] [--force] [--quiet] [--json] [SOURCE...]",
     "make each domain's users what its [source NAME] directories hold; 1 if a source or a "
     "write failed, 3 if a guard (max_shrink, empty) refused a domain",
     "SADD backstop:tmp:sync:DOMAIN:PID LOCAL...\nMULTI, RENAME ... backstop:rcpt:DOMAIN, "
     "HSET backstop:sync DOMAIN RECORD, EXEC"},
    /* "harvest end" before "harvest": a row without a verb takes any second word */
    {"harvest", "end", bs_ctl_harvest_end, 1, 1, COMMON, NEED_CONFIG | NEED_REDIS, "DOMAIN",
     "end a harvest attack on DOMAIN by hand and forget its unknown recipients (so the next one "
     "does not trip it again at once); 1 if it was not under attack",
     "HDEL backstop:attack DOMAIN\nDEL backstop:harvest:DOMAIN"},
    {"harvest", NULL, bs_ctl_harvest, 0, 0, COMMON | JSON, NEED_CONFIG | NEED_REDIS, "[--json]",
     "domains under a harvest attack: since, until, unknown recipients in the threshold window, "
     "rate, top client networks",
     "HGETALL backstop:attack\nZCOUNT backstop:harvest:DOMAIN NOW-WINDOW +inf\n"
     "ZREVRANGEBYSCORE backstop:harvest:DOMAIN +inf NOW-WINDOW"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Every option; val is the enum bs_ctl_opt. */
static const struct {
    struct option lo;
    char shortopt; /* 0 = long only */
    const char *arg;
    const char *help;
} options[] = {
    {{"config", required_argument, NULL, BS_OPT_CONFIG},
     'c',
     "FILE",
     "configuration file (default " BS_CTL_DEFAULT_CONFIG ")"},
    {{"timeout", required_argument, NULL, BS_OPT_TIMEOUT},
     't',
     "DURATION",
     "limit for each connect, reply and DNS query (default 5s)"},
    {{"help", no_argument, NULL, BS_OPT_HELP}, 'h', NULL, "help"},
    {{"purge", no_argument, NULL, BS_OPT_PURGE}, 0, NULL, "domain del: delete rcpt:DOMAIN too"},
    {{"replace", no_argument, NULL, BS_OPT_REPLACE},
     0,
     NULL,
     "import: the file becomes the whole user set"},
    {{"skip-bad", no_argument, NULL, BS_OPT_SKIP_BAD},
     0,
     NULL,
     "import: report bad lines and import the others"},
    {{"for", required_argument, NULL, BS_OPT_FOR}, 0, "DURATION", "block add: how long"},
    {{"reason", required_argument, NULL, BS_OPT_REASON}, 0, "TEXT", "block add: why"},
    {{"sender", required_argument, NULL, BS_OPT_SENDER},
     0,
     "ADDRESS",
     "check: envelope sender ('' or '<>': a bounce)"},
    {{"recipient", required_argument, NULL, BS_OPT_RECIPIENT}, 0, "ADDRESS", "check: recipient"},
    {{"client", required_argument, NULL, BS_OPT_CLIENT}, 0, "IP", "check: SMTP client address"},
    {{"helo", required_argument, NULL, BS_OPT_HELO}, 0, "NAME", "check: HELO name"},
    {{"server", required_argument, NULL, BS_OPT_SERVER},
     0,
     "ENDPOINT",
     "check: backstopd to ask (default the first [server] listen)"},
    {{"yes", no_argument, NULL, BS_OPT_YES}, 0, NULL, "purge-queue: really delete"},
    {{"queue", required_argument, NULL, BS_OPT_QUEUE},
     0,
     "NAME",
     "purge-queue: only this Postfix queue (deferred, active, hold, incoming)"},
    {{"config-dir", required_argument, NULL, BS_OPT_CONFIG_DIR},
     0,
     "DIR",
     "purge-queue: Postfix instance (postqueue/postsuper -c DIR)"},
    {{"from-json", required_argument, NULL, BS_OPT_FROM_JSON},
     0,
     "FILE",
     "purge-queue: read postqueue -j output from FILE (- = stdin)"},
    {{"postqueue", required_argument, NULL, BS_OPT_POSTQUEUE},
     0,
     "CMD",
     "purge-queue: program run instead of postqueue"},
    {{"postsuper", required_argument, NULL, BS_OPT_POSTSUPER},
     0,
     "CMD",
     "purge-queue: program run instead of postsuper"},
    {{"zone", required_argument, NULL, BS_OPT_ZONE},
     0,
     "ZONE",
     "rbl-check: a DNSBL zone (repeatable)"},
    {{"domain", required_argument, NULL, BS_OPT_DOMAIN},
     0,
     "DOMAIN",
     "stats: one domain's mode, would-reject count, users and last sync"},
    {{"nameserver", required_argument, NULL, BS_OPT_NAMESERVER},
     0,
     "IP[:PORT]",
     "rbl-check: ask this IPv4 server instead of resolv.conf's"},
    {{"strict", no_argument, NULL, BS_OPT_STRICT},
     0,
     NULL,
     "rbl-check: a failed lookup is a failure too"},
    {{"json", no_argument, NULL, BS_OPT_JSON},
     0,
     NULL,
     "one JSON object on stdout instead of text (shapes: backstopctl(8))"},
    {{"dry-run", no_argument, NULL, BS_OPT_DRY_RUN},
     0,
     NULL,
     "sync: read and compare, write nothing"},
    {{"force", no_argument, NULL, BS_OPT_FORCE},
     0,
     NULL,
     "sync: write a domain even if it shrinks past max_shrink or becomes empty"},
    {{"quiet", no_argument, NULL, BS_OPT_QUIET}, 0, NULL, "sync: print only failures and refusals"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static const char default_zones_text[] =
    "zen.spamhaus.org, bl.spamcop.net, b.barracudacentral.org, dnsbl.sorbs.net";

/* print_command - synopsis, summary, options, redis-cli equivalent */
static void print_command(FILE *fp, const ctl_command *cmd, int verbose)
{
    const char *p, *nl;
    size_t i;

    fprintf(fp, "  %s%s%s%s%s\n      %s\n", cmd->name, cmd->verb ? " " : "",
            cmd->verb ? cmd->verb : "", cmd->args[0] ? " " : "", cmd->args, cmd->summary);
    for (p = cmd->redis_cli; *p; p = nl + (*nl != 0)) {
        nl = strchr(p, '\n');
        if (!nl)
            nl = p + strlen(p);
        fprintf(fp, "      %s %.*s\n", p == cmd->redis_cli ? "redis-cli:" : "          ",
                (int)(nl - p), p);
    }
    if (!verbose)
        return;
    for (i = 0; i < NOPTIONS; i++) {
        unsigned id = (unsigned)options[i].lo.val;
        char head[64];

        if (!(cmd->opts & O(id)) || (COMMON & O(id)))
            continue;
        snprintf(head, sizeof(head), "--%s%s%s", options[i].lo.name, options[i].arg ? " " : "",
                 options[i].arg ? options[i].arg : "");
        fprintf(fp, "      %-26s %s\n", head, options[i].help);
    }
    if (cmd->run == bs_ctl_rbl_check)
        fprintf(fp, "      default zones: %s\n", default_zones_text);
}

/* usage - every command, or the commands of one group */
static void usage(FILE *fp, const ctl_command *only)
{
    size_t i;

    fprintf(fp,
            "usage: backstopctl [-c FILE] [-t DURATION] COMMAND [ARGS...]\n"
            "  -c, --config FILE      configuration file (default " BS_CTL_DEFAULT_CONFIG ")\n"
            "  -t, --timeout DURATION limit for each connect, reply, DNS query (default 5s)\n"
            "  -h, --help             this text; COMMAND --help for one command\n"
            "  -V, --version          the version\n"
            "Exit status: 0 done, 1 error or failed check, 2 bad command line, 3 (sync) a guard\n"
            "refused a domain.\n"
            "Keys are shown with the default [redis] prefix backstop:.\n\n"
            "commands:\n");
    for (i = 0; i < NCOMMANDS; i++) {
        if (!only || (strcmp(only->name, commands[i].name) == 0 && only->verb))
            print_command(fp, &commands[i], only != NULL);
    }
}

/* find_command - the row for argv[0] (and argv[1]); *nwords says how many
 * words it took. NULL: unknown; *group set when argv[0] named a group. */
static const ctl_command *find_command(int argc, char **argv, int *nwords,
                                       const ctl_command **group)
{
    size_t i;

    *group = NULL;
    for (i = 0; i < NCOMMANDS; i++) {
        const ctl_command *cmd = &commands[i];

        if (strcmp(cmd->name, argv[0]) != 0)
            continue;
        if (!cmd->verb) {
            *nwords = 1;
            return cmd;
        }
        *group = cmd;
        if (argc > 1 && strcmp(cmd->verb, argv[1]) == 0) {
            *nwords = 2;
            return cmd;
        }
    }
    return NULL;
}

/* parse_options - GNU getopt over the command's words and operands;
 * operands are moved to the front of argv. Returns the number of
 * operands, or -1 after a usage message. */
static int parse_options(bs_ctl *c, const ctl_command *cmd, int argc, char **argv)
{
    struct option lo[NOPTIONS + 1];
    char shortopts[32] = "";
    size_t i, ns = 0;
    int ch;

    for (i = 0; i < NOPTIONS; i++) {
        lo[i] = options[i].lo;
        if (options[i].shortopt && (cmd->opts & O(options[i].lo.val)) &&
            ns + 3 < sizeof(shortopts)) {
            shortopts[ns++] = options[i].shortopt;
            if (options[i].lo.has_arg)
                shortopts[ns++] = ':';
        }
    }
    memset(&lo[NOPTIONS], 0, sizeof(lo[NOPTIONS]));
    shortopts[ns] = 0;
    optind = 0; /* glibc: full re-initialisation */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        if (ch >= BS_OPT_COUNT && ch != '?' && ch != ':') { /* a short option letter */
            for (i = 0; i < NOPTIONS && options[i].shortopt != ch; i++)
                ;
            ch = i < NOPTIONS ? options[i].lo.val : '?';
        }
        if (ch == '?' || ch == ':' || ch < 0 || ch >= BS_OPT_COUNT || !(cmd->opts & O(ch))) {
            bs_ctl_err("%s%s%s: unknown option or missing value: %s (see %s%s%s --help)", cmd->name,
                       cmd->verb ? " " : "", cmd->verb ? cmd->verb : "", argv[optind - 1],
                       cmd->name, cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
            return -1;
        }
        c->opt[ch] = optarg ? optarg : "";
        if (ch == BS_OPT_ZONE) {
            if (c->nzones == BS_CTL_MAX_ZONES) {
                bs_ctl_err("at most %d --zone options", BS_CTL_MAX_ZONES);
                return -1;
            }
            c->zones[c->nzones++] = optarg;
        }
    }
    /* GNU getopt permuted the operands to argv[optind..] */
    for (i = 0; (int)i < argc - optind; i++)
        argv[i] = argv[optind + (int)i];
    return argc - optind;
}

/* prepare - the shared option values and the config; an exit status or -1 */
static int prepare(bs_ctl *c, const ctl_command *cmd)
{
    char err[512];

    if (c->opt[BS_OPT_CONFIG])
        c->config_path = c->opt[BS_OPT_CONFIG];
    if (c->opt[BS_OPT_TIMEOUT] &&
        (bs_parse_duration(c->opt[BS_OPT_TIMEOUT], &c->timeout_ms) < 0 || c->timeout_ms == 0)) {
        bs_ctl_err("--timeout %s: not a duration (e.g. 500ms, 5s)", c->opt[BS_OPT_TIMEOUT]);
        return BS_CTL_USAGE;
    }
    if (!(cmd->needs & NEED_CONFIG))
        return -1;
    if (bs_config_load(c->config_path, &c->cfg, err, sizeof(err)) < 0) {
        bs_ctl_err("%s", err);
        return BS_CTL_FAIL;
    }
    return -1;
}

/* main - global options, find the command, its options, config, run */
int main(int argc, char **argv)
{
    static bs_ctl ctl;
    const ctl_command *cmd, *group;
    int nwords, nargs, rc;

    bs_log_level = BS_LOG_ERROR; /* decide.c's warnings are explained, not logged */
    signal(SIGPIPE, SIG_IGN);    /* a child (postsuper) that exits early is an error, not death */
    ctl.config_path = BS_CTL_DEFAULT_CONFIG;
    ctl.timeout_ms = BS_CTL_DEFAULT_TIMEOUT_MS;
    ctl.tty = isatty(STDERR_FILENO);

    /* global options before the command ("+": stop at the first operand) */
    static const struct option glo[] = {
        {"config", required_argument, NULL, 'c'}, {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
        {"json", no_argument, NULL, 'j'},         {NULL, 0, NULL, 0}};
    int ch, json_first = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+c:t:hV", glo, NULL)) != -1) {
        switch (ch) {
        case 'c':
            ctl.opt[BS_OPT_CONFIG] = optarg;
            break;
        case 't':
            ctl.opt[BS_OPT_TIMEOUT] = optarg;
            break;
        case 'h':
            usage(stdout, NULL);
            return BS_CTL_OK;
        case 'V':
            printf("backstopctl %s\n", BACKSTOP_VERSION);
            return BS_CTL_OK;
        case 'j': /* checked against the command once it is known */
            json_first = 1;
            break;
        default:
            bs_ctl_err("unknown option or missing value: %s", argv[optind - 1]);
            usage(stderr, NULL);
            return BS_CTL_USAGE;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc == 0) {
        usage(stderr, NULL);
        return BS_CTL_USAGE;
    }
    cmd = find_command(argc, argv, &nwords, &group);
    if (!cmd) {
        if (group && argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            usage(stdout, group);
            return BS_CTL_OK;
        }
        if (group) {
            bs_ctl_err("%s: %s%s", argv[0], argc > 1 ? "unknown subcommand: " : "which one?",
                       argc > 1 ? argv[1] : "");
            usage(stderr, group);
        } else {
            bs_ctl_err("unknown command: %s (see backstopctl --help)", argv[0]);
        }
        return BS_CTL_USAGE;
    }
    if (json_first && !(cmd->opts & O(BS_OPT_JSON))) {
        bs_ctl_err("%s%s%s: unknown option or missing value: --json (see %s%s%s --help)", cmd->name,
                   cmd->verb ? " " : "", cmd->verb ? cmd->verb : "", cmd->name,
                   cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
        return BS_CTL_USAGE;
    }
    if (json_first)
        ctl.opt[BS_OPT_JSON] = "";
    /* getopt wants argv[0] to be a program name: keep the last command word */
    nargs = parse_options(&ctl, cmd, argc - nwords + 1, argv + nwords - 1);
    if (nargs < 0)
        return BS_CTL_USAGE;
    if (ctl.opt[BS_OPT_HELP]) {
        fprintf(stdout, "usage: backstopctl [-c FILE] [-t DURATION]\n");
        print_command(stdout, cmd, 1);
        return BS_CTL_OK;
    }
    if (nargs < cmd->min_args || (cmd->max_args != MANY && nargs > cmd->max_args)) {
        bs_ctl_err("%s%s%s: %s operands", cmd->name, cmd->verb ? " " : "",
                   cmd->verb ? cmd->verb : "", nargs < cmd->min_args ? "missing" : "too many");
        fprintf(stderr, "usage: backstopctl\n");
        print_command(stderr, cmd, 1);
        return BS_CTL_USAGE;
    }
    rc = prepare(&ctl, cmd);
    if (rc < 0)
        rc = cmd->run(&ctl, nargs, argv + nwords - 1);
    if (ctl.redis)
        redisFree(ctl.redis);
    if (fflush(stdout) != 0 && rc == BS_CTL_OK) {
        bs_ctl_err("cannot write the output");
        rc = BS_CTL_FAIL;
    }
    return rc;
}
