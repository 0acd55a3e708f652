/*
 * decide.c - the policy rules (see decide.h for the state machine)
 *
 * Provides bs_decide_*(): turn one parsed policy request plus the facts a
 * store found into a verdict, its reply line and its log line.
 *
 * Never does: I/O, allocation, libuv or hiredis calls. Every string from the
 * wire is either validated/normalised (addr.c) before it can become part of
 * a store query, or escaped (bs_escape) before it reaches a reply or a log
 * line. The only side effect is a warning log for an unusable NDR value
 * found in the store (an admin typo), which then falls back to ndr_default.
 * An unusable mode HASH value is only flagged (d->mode_bad): the caller
 * warns about it, rate-limited (it is read on every request).
 *
 * Modes: report_mode() is the one test of "this refusal is only reported";
 * the decision's mode comes from the mode HASH (bs_decide_mode), an NDR entry
 * may add "report" for its own refusals.
 *
 * Limits: NDR lookups consider the recipient domain, at most
 * BS_NDR_MAX_FIELDS - 2 parent suffixes (the shortest ones), and "*".
 * The recipient domain is addr.c's canonical form (A-labels, no trailing
 * dot, lowercase) for both the protected-domain check and the NDR lookup;
 * an address literal is looked up as itself, then "*". A null-sender
 * recipient whose domain cannot be read gets the "*" policy (unreadable()),
 * never a silent DUNNO.
 *
 * Failing safe: a 550 5.1.1 is final (the sender bounces the mail), so it
 * is given only when the directory can be trusted. Before it, a second
 * lookup (only on that path: the common one stays one round trip) asks
 * for the size of rcpt:<domain> and, with [policy] max_directory_age, the
 * time of the domain's last successful sync. An empty or missing set, or
 * a sync older than that (or none), answers 4xx: the sender retries, and a
 * real user's mail is delayed, never lost. The age is the store's wall
 * clock minus the sync writer's (hosts of a mail cluster run NTP); a sync
 * time in the future counts as age 0.
 */
#include <string.h>

#include "backstop/cidr.h"
#include "backstop/decide.h"
#include "backstop/log.h"

/* One row per reason: its name (stats field, log "reason=") and action. */
static const struct {
    const char *name;
    int action;
} why_table[BS_WHY_COUNT] = {
    [BS_WHY_NOT_RCPT] = {"not_rcpt", BS_ACT_DUNNO},
    [BS_WHY_BAD_RCPT] = {"bad_recipient", BS_ACT_DUNNO},
    [BS_WHY_UNPROTECTED] = {"unprotected", BS_ACT_DUNNO},
    [BS_WHY_VALID] = {"valid", BS_ACT_DUNNO},
    [BS_WHY_NDR_ALLOW] = {"ndr_allow", BS_ACT_DUNNO},
    [BS_WHY_NDR_UNDER] = {"ndr_under_limit", BS_ACT_DUNNO},
    [BS_WHY_MODE_OFF] = {"mode_off", BS_ACT_DUNNO},
    [BS_WHY_UNKNOWN_USER] = {"unknown_user", BS_ACT_REJECT_USER},
    [BS_WHY_NDR_DENY] = {"ndr_deny", BS_ACT_REJECT_NDR},
    [BS_WHY_NDR_LIMIT] = {"ndr_limit", BS_ACT_REJECT_NDR},
    [BS_WHY_BLOCKED] = {"blocked", BS_ACT_DEFER_CLIENT},
    [BS_WHY_DIR_EMPTY] = {"directory_empty", BS_ACT_DEFER_DIR},
    [BS_WHY_DIR_STALE] = {"directory_stale", BS_ACT_DEFER_DIR},
    [BS_WHY_HARVEST_GREY] = {"harvest_greylist", BS_ACT_DEFER_CLIENT},
    [BS_WHY_HARVEST_DEFER] = {"harvest_defer", BS_ACT_DEFER_CLIENT},
    [BS_WHY_REDIS_DOWN] = {"redis_down", BS_ACT_FALLBACK},
    [BS_WHY_REDIS_TIMEOUT] = {"redis_timeout", BS_ACT_FALLBACK},
    [BS_WHY_REDIS_ERROR] = {"redis_error", BS_ACT_FALLBACK},
    [BS_WHY_REDIS_BUSY] = {"redis_busy", BS_ACT_FALLBACK},
};

static const char *const action_names[BS_ACT_COUNT] = {
    [BS_ACT_DUNNO] = "dunno",       [BS_ACT_REJECT_USER] = "reject",
    [BS_ACT_REJECT_NDR] = "reject", [BS_ACT_DEFER_CLIENT] = "defer",
    [BS_ACT_DEFER_DIR] = "defer",   [BS_ACT_FALLBACK] = "fallback",
};

const char *bs_why_name(int why)
{
    return (why >= 0 && why < BS_WHY_COUNT) ? why_table[why].name : "?";
}

const char *bs_action_name(int action)
{
    return (action >= 0 && action < BS_ACT_COUNT) ? action_names[action] : "?";
}

int bs_why_action(int why)
{
    return (why >= 0 && why < BS_WHY_COUNT) ? why_table[why].action : BS_ACT_DUNNO;
}

/* finish - record the verdict; always returns BS_DECIDE_DONE */
static int finish(bs_decision *d, int why)
{
    d->why = why;
    d->action = why_table[why].action;
    return BS_DECIDE_DONE;
}

/* The attributes the rules read, found in one pass over the request. */
enum {
    A_NONE,
    A_STATE,
    A_SENDER,
    A_RCPT,
    A_CLIENT_ADDR,
    A_CLIENT_NAME,
    A_QUEUE_ID,
    A_HELO,
    A_PROTO,
    A_N
};
/* is - a's name is the literal name (a memcmp of a constant length: the
 * compiler compares it in a few loads, no call) */
#define is(n, lit) (memcmp((n), (lit), sizeof(lit) - 1) == 0)

/* want_index - which wanted attribute a name is, or A_NONE: by length,
 * then the whole name. Most of Postfix's ~30 attributes are not wanted;
 * a byte-by-byte table walk and a memcmp call per candidate cost ~700
 * instructions a request. */
static int want_index(const bs_proto_attr *a)
{
    const char *n = a->name;

    switch (a->name_len) {
    case 6:
        return is(n, "sender") ? A_SENDER : A_NONE;
    case 8:
        return is(n, "queue_id") ? A_QUEUE_ID : A_NONE;
    case 9:
        return is(n, "recipient") ? A_RCPT : is(n, "helo_name") ? A_HELO : A_NONE;
    case 11:
        return is(n, "client_name") ? A_CLIENT_NAME : A_NONE;
    case 13:
        return is(n, "protocol_name") ? A_PROTO : A_NONE;
    case 14:
        return is(n, "protocol_state") ? A_STATE : is(n, "client_address") ? A_CLIENT_ADDR : A_NONE;
    default:
        return A_NONE;
    }
}

/* find_attrs - the first attribute of each wanted name, or NULL */
static void find_attrs(const bs_proto_parser *req, const bs_proto_attr *out[A_N])
{
    unsigned i;
    int w;

    for (w = 0; w < A_N; w++)
        out[w] = NULL;
    for (i = 0; i < req->nattrs; i++) {
        w = want_index(&req->attrs[i]);
        if (w != A_NONE && !out[w])
            out[w] = &req->attrs[i];
    }
}

/* copy_raw - a truncated copy of an attribute's value ("" when absent;
 * the parser lets no NUL through, so the copy is a C string): bit, or 0
 * when the whole value fits */
static unsigned copy_raw(const bs_proto_attr *a, char *out, size_t outsz, unsigned bit)
{
    size_t n = a ? (a->value_len < outsz - 1 ? a->value_len : outsz - 1) : 0;

    if (n)
        memcpy(out, a->value, n);
    out[n] = 0;
    return a && a->value_len > n ? bit : 0;
}

/* a field of bs_decide_text: escaped, "..." at the end when shortened */
#define TEXT(f, bit) bs_escape_marked(d->f, strlen(d->f), (d->cut & (bit)) != 0, t->f, sizeof(t->f))

void bs_decide_text(const bs_decision *d, bs_decision_text *t)
{
    TEXT(queue_id, BS_CUT_QUEUE_ID);
    TEXT(client_name, BS_CUT_CLIENT_NAME);
    TEXT(client_addr, BS_CUT_CLIENT_ADDR);
    TEXT(helo, BS_CUT_HELO);
    TEXT(proto, BS_CUT_PROTO);
    TEXT(from, BS_CUT_FROM);
    TEXT(to, BS_CUT_TO);
}
#undef TEXT

/* set_client - normalise client_address into the block key and the exempt
 * member; decide config exemption. Leaves both empty for "unknown". */
static void set_client(bs_decision *d, const bs_config *cfg, const bs_proto_attr *a)
{
    uint8_t ip[16];
    int n;

    d->client_key[0] = d->client_ip[0] = d->network[0] = 0;
    d->cidr_exempt = 0;
    if (!a || bs_ip_parse(a->value, a->value_len, ip) < 0 ||
        bs_client_key_ip(ip, cfg->ipv6_prefix, d->client_key) < 0)
        return;
    if (bs_client_network(ip, cfg->ipv6_prefix, d->network) < 0)
        d->network[0] = 0;
    if (!strchr(d->client_key, '/')) {
        memcpy(d->client_ip, d->client_key, sizeof(d->client_ip)); /* IPv4: the same */
    } else {
        n = bs_client_key_ip(ip, 128, d->client_ip);
        if (n > 4 && strcmp(d->client_ip + n - 4, "/128") == 0)
            d->client_ip[n - 4] = 0;
    }
    d->cidr_exempt = cfg->nexempt && bs_cidr_list_match(cfg->exempt, cfg->nexempt, ip);
}

/* set_ndr_fields - domain, its parent suffixes (".b.c", ".c"), then "*";
 * kept as offsets into the domain (a decision stays small and copyable).
 * An address literal has no parents: "[192.0.2.5]", then "*". */
static void set_ndr_fields(bs_decision *d)
{
    const char *dom = d->rcpt.domain;
    size_t dots[BS_DOMAIN_MAX], ndots = 0, skip, i;
    const size_t max_parents = BS_NDR_MAX_FIELDS - 2;

    d->nndr = 0;
    d->ndr_off[d->nndr++] = 0;
    for (i = 0; i < d->rcpt.domain_len && !d->rcpt.literal; i++)
        if (dom[i] == '.')
            dots[ndots++] = i;
    skip = ndots > max_parents ? ndots - max_parents : 0;
    for (i = skip; i < ndots; i++)
        d->ndr_off[d->nndr++] = (uint8_t)dots[i];
    d->ndr_off[d->nndr++] = BS_NDR_STAR;
}

const char *bs_decide_ndr_field(const bs_decision *d, unsigned i)
{
    if (i >= d->nndr)
        return NULL;
    return d->ndr_off[i] == BS_NDR_STAR ? "*" : d->rcpt.domain + d->ndr_off[i];
}

const char *bs_decide_ndr_match(const bs_decision *d)
{
    if (d->ndr_match == BS_NDR_DEFAULT)
        return "ndr_default";
    return d->ndr_match >= 0 ? bs_decide_ndr_field(d, (unsigned)d->ndr_match) : NULL;
}

/* bad_local_part - the recipient is no usable address, but its domain may
 * be ours: an over-long or control-character local part at a protected
 * domain must not pass as "not ours" (it would be accepted, then bounced).
 * Keeps the domain with an empty local part that matches only a catch-all.
 * Returns 0, or -1 when the domain is no domain either. */
static int bad_local_part(bs_decision *d, const bs_proto_attr *rcpt)
{
    const char *at = NULL, *p;
    int n;

    for (p = rcpt->value; p < rcpt->value + rcpt->value_len; p++)
        if (*p == '@')
            at = p;
    if (!at || at == rcpt->value)
        return -1;
    n = bs_addr_domain(at + 1, (size_t)(rcpt->value + rcpt->value_len - at - 1), d->rcpt.domain,
                       &d->rcpt.literal);
    if (n < 0)
        return -1;
    d->rcpt.domain_len = (size_t)n;
    d->rcpt.local[0] = 0;
    d->rcpt.local_len = 0;
    d->bad_local = 1;
    return 0;
}

/*
 * unreadable - a recipient with an '@' whose domain we cannot read (bad
 * UTF-8, a label IDNA refuses, a malformed literal, over-long, empty).
 * For a bounce, "not ours" would let it through whatever "*" says, so the
 * NDR policy decides as for a domain no entry names: "*", then
 * ndr_default, and a "*" limit draws on one budget shared by all such
 * recipients (rcpt.domain "*", which no real domain can be). Anything else
 * is no business of ours: DUNNO, reason bad_recipient. An unqualified
 * recipient ("postmaster") is not unreadable: Postfix appends $myorigin,
 * so it is local, never a remote bounce target.
 */
static int unreadable(bs_decision *d, const bs_proto_attr *rcpt, bs_lookup *q)
{
    if (!d->null_sender || !memchr(rcpt->value, '@', rcpt->value_len))
        return finish(d, BS_WHY_BAD_RCPT);
    d->unreadable = 1;
    d->rcpt.literal = 0;
    memcpy(d->rcpt.domain, "*", 2);
    d->rcpt.domain_len = 1;
    d->rcpt.local[0] = 0;
    d->rcpt.local_len = 0;
    d->ndr_off[0] = BS_NDR_STAR;
    d->nndr = 1;
    q->ndr_fields[0] = "*";
    q->nndr = 1;
    q->mode_domain = d->rcpt.domain; /* "*": HMGET mode * * */
    if (d->client_key[0] && !d->cidr_exempt)
        q->client_key = d->client_key;
    return BS_DECIDE_LOOKUP;
}

/* bs_decide_begin - extract and normalise the request; say what to look up */
int bs_decide_begin(bs_decision *d, const bs_config *cfg, const bs_proto_parser *req, bs_lookup *q)
{
    const bs_proto_attr *sender, *rcpt;
    unsigned i;

    const bs_proto_attr *at[A_N];

    memset(q, 0, sizeof(*q));
    d->note_invalid = d->note_harvest = d->note_known = 0;
    d->invalid_limit = 0;
    d->invalid_window_ms = 0;
    d->exempt_pending = 0;
    d->dir_pending = 0;
    d->harvest_pending = 0;
    d->harvest_result = 0;
    d->unreadable = 0;
    d->ndr_match = BS_NDR_NONE;
    d->nndr = 0;
    d->mode = cfg->mode;
    d->mode_src = BS_MODE_SRC_CONFIG;
    d->mode_bad = 0;
    memset(&d->ndr_rule, 0, sizeof(d->ndr_rule));
    find_attrs(req, at);
    d->cut =
        copy_raw(at[A_QUEUE_ID], d->queue_id, sizeof(d->queue_id), BS_CUT_QUEUE_ID) |
        copy_raw(at[A_CLIENT_NAME], d->client_name, sizeof(d->client_name), BS_CUT_CLIENT_NAME) |
        copy_raw(at[A_CLIENT_ADDR], d->client_addr, sizeof(d->client_addr), BS_CUT_CLIENT_ADDR) |
        copy_raw(at[A_HELO], d->helo, sizeof(d->helo), BS_CUT_HELO) |
        copy_raw(at[A_PROTO], d->proto, sizeof(d->proto), BS_CUT_PROTO) |
        copy_raw(at[A_SENDER], d->from, sizeof(d->from), BS_CUT_FROM) |
        copy_raw(at[A_RCPT], d->to, sizeof(d->to), BS_CUT_TO);
    sender = at[A_SENDER];
    d->null_sender = sender && sender->value_len == 0;

    if (!at[A_STATE] || at[A_STATE]->value_len != 4 || memcmp(at[A_STATE]->value, "RCPT", 4) != 0)
        return finish(d, BS_WHY_NOT_RCPT);
    rcpt = at[A_RCPT];
    if (!rcpt)
        return finish(d, BS_WHY_BAD_RCPT);
    d->bad_local = 0;
    set_client(d, cfg, at[A_CLIENT_ADDR]);
    if (bs_addr_parse(rcpt->value, rcpt->value_len, &d->rcpt) < 0 && bad_local_part(d, rcpt) < 0)
        return unreadable(d, rcpt, q);
    d->base_len = bs_local_base_len(d->rcpt.local, d->rcpt.local_len, cfg->recipient_delimiter);
    memcpy(d->base, d->rcpt.local, d->base_len);
    d->base[d->base_len] = 0;

    if (d->client_key[0] && !d->cidr_exempt)
        q->client_key = d->client_key;
    q->domain = d->rcpt.domain;
    q->mode_domain = d->rcpt.domain;
    if (!d->bad_local) {
        q->locals[q->nlocals] = d->rcpt.local;
        q->local_lens[q->nlocals++] = d->rcpt.local_len;
    }
    if (d->base_len < d->rcpt.local_len) {
        q->locals[q->nlocals] = d->base;
        q->local_lens[q->nlocals++] = d->base_len;
    }
    q->locals[q->nlocals] = "*";
    q->local_lens[q->nlocals++] = 1;
    if (d->null_sender) {
        set_ndr_fields(d);
        for (i = 0; i < d->nndr; i++)
            q->ndr_fields[i] = bs_decide_ndr_field(d, i);
        q->nndr = d->nndr;
    }
    return BS_DECIDE_LOOKUP;
}

/* ndr_rule_for - the rule from the first matching entry, else ndr_default */
static void ndr_rule_for(bs_decision *d, const bs_config *cfg, const bs_facts *f)
{
    if (f->ndr_index >= 0 && (unsigned)f->ndr_index < d->nndr) {
        d->ndr_match = f->ndr_index;
        if (bs_parse_ndr_rule(f->ndr_value, f->ndr_value_len, &d->ndr_rule) == 0)
            return;
        char esc[128];
        bs_escape(f->ndr_value, f->ndr_value_len, esc, sizeof(esc));
        bs_warn("ndr entry \"%s\" has an unusable value \"%s\" (want allow, deny or limit "
                "N/PERIOD); using ndr_default",
                bs_decide_ndr_match(d), esc);
    }
    d->ndr_match = BS_NDR_DEFAULT;
    d->ndr_rule = cfg->ndr_default;
}

/* directory_doubt - why the directory of a protected domain cannot be
 * trusted to refuse an unknown user (BS_WHY_DIR_*), or BS_WHY_UNKNOWN_USER
 * when it can */
static int directory_doubt(const bs_config *cfg, const bs_facts *f)
{
    long long age;

    if (!f->dir_known)
        return BS_WHY_UNKNOWN_USER;
    if (f->dir_size <= 0)
        return BS_WHY_DIR_EMPTY;
    if (!cfg->max_directory_age_ms)
        return BS_WHY_UNKNOWN_USER;
    if (f->dir_synced_at <= 0)
        return BS_WHY_DIR_STALE;
    age = f->dir_now > f->dir_synced_at ? f->dir_now - f->dir_synced_at : 0;
    return (unsigned long long)age * 1000 > cfg->max_directory_age_ms ? BS_WHY_DIR_STALE
                                                                      : BS_WHY_UNKNOWN_USER;
}

static int report_mode(const bs_decision *d, const bs_config *cfg);

/* note_unknown - count an unknown recipient of a protected domain: the
 * client's rate (against client_limit while the domain is under attack)
 * and the domain's harvest threshold; nothing for an exempt client */
static void note_unknown(bs_decision *d, const bs_config *cfg, const bs_facts *f, int exempt)
{
    int attacked = f->under_attack && cfg->harvest_limit > 0 && cfg->harvest_client_limit > 0;

    if (exempt)
        return;
    d->invalid_limit = attacked ? cfg->harvest_client_limit : cfg->invalid_limit;
    d->invalid_window_ms = attacked ? cfg->harvest_client_window_ms : cfg->invalid_window_ms;
    /* the store's counter skips members of the exempt SET itself */
    d->note_invalid = d->invalid_limit > 0;
    d->note_harvest = cfg->harvest_limit > 0 && d->network[0];
}

/* harvest_step - a protected domain under attack: a client not exempt is
 * checked first (greylisting, or defer), unless new_clients = normal */
static int harvest_step(const bs_decision *d, const bs_config *cfg, const bs_facts *f, int exempt)
{
    return f->under_attack && cfg->harvest_limit > 0 && !exempt && d->network[0] &&
           cfg->harvest_new_clients != BS_HARVEST_NORMAL && !d->harvest_result;
}

/* bs_decide_mode - see decide.h: a protected domain's own field, then
 * "*", then [policy] mode; anything else: "*", then [policy] mode. A
 * value that is no mode is skipped and flagged. */
int bs_decide_mode(const bs_config *cfg, const bs_facts *f, int *src, int *bad)
{
    int i, m;

    *bad = 0;
    for (i = f->protected_domain ? 0 : 1; i < 2; i++) {
        if (!f->mode_found[i])
            continue;
        /* a value cut to fit is no mode, even when its start is one */
        if (f->mode_cut[i] || (m = bs_parse_mode(f->mode_value[i], f->mode_len[i])) < 0) {
            *bad |= 1 << i;
            continue;
        }
        *src = i == 0 ? BS_MODE_SRC_DOMAIN : BS_MODE_SRC_STAR;
        return m;
    }
    *src = BS_MODE_SRC_CONFIG;
    return cfg->mode;
}

/* ask_directory - q becomes the second lookup: the directory's size (and
 * last sync) of the recipient's domain */
static int ask_directory(bs_decision *d, const bs_config *cfg, bs_lookup *q)
{
    memset(q, 0, sizeof(*q));
    q->directory = d->rcpt.domain;
    q->directory_synced = cfg->max_directory_age_ms > 0;
    d->dir_pending = 1;
    return BS_DECIDE_LOOKUP;
}

/* apply_rules - the rules over the facts gathered; q (may be NULL) gets
 * the directory lookup when an unknown user's refusal needs it */
static int apply_rules(bs_decision *d, const bs_config *cfg, const bs_facts *f, bs_lookup *q)
{
    int exempt = d->cidr_exempt || f->exempt || !d->client_key[0];
    int why;

    if (f->blocked && !exempt)
        return finish(d, BS_WHY_BLOCKED);
    if (f->protected_domain) {
        if (harvest_step(d, cfg, f, exempt)) {
            d->harvest_pending = 1;
            return BS_DECIDE_HARVEST;
        }
        if (d->harvest_result == BS_GREY_DEFER) {
            /* the same answer for valid and unknown: nothing learnt. An
             * unknown recipient counts only when the directory can be
             * trusted to say so (an empty or stale one counted every real
             * user, and blocked the real MTAs sending to them) */
            if (!f->rcpt_known) {
                if (q && !f->dir_known && !exempt)
                    return ask_directory(d, cfg, q);
                if (directory_doubt(cfg, f) == BS_WHY_UNKNOWN_USER)
                    note_unknown(d, cfg, f, exempt);
            }
            return finish(d, cfg->harvest_new_clients == BS_HARVEST_DEFER ? BS_WHY_HARVEST_DEFER
                                                                          : BS_WHY_HARVEST_GREY);
        }
        if (f->rcpt_known) {
            d->note_known = cfg->harvest_limit > 0 && !exempt && d->network[0];
            return finish(d, BS_WHY_VALID);
        }
        if (q && !f->dir_known)
            return ask_directory(d, cfg, q);
        if ((why = directory_doubt(cfg, f)) != BS_WHY_UNKNOWN_USER)
            return finish(d, why);
        note_unknown(d, cfg, f, exempt);
        return finish(d, BS_WHY_UNKNOWN_USER);
    }
    if (!d->null_sender)
        return finish(d, BS_WHY_UNPROTECTED);
    ndr_rule_for(d, cfg, f);
    switch (d->ndr_rule.action) {
    case BS_NDR_ALLOW:
        return finish(d, BS_WHY_NDR_ALLOW);
    case BS_NDR_LIMIT:
        return BS_DECIDE_NDR_TAKE;
    default:
        return finish(d, BS_WHY_NDR_DENY);
    }
}

/* bs_decide_facts - apply the rules to what the store found. The exempt SET
 * matters only for a blocked client, and the directory's size and age only
 * before refusing an unknown user, so each is asked about only then (a
 * second lookup, on that rare path) and the common path stays at one round
 * trip. */
int bs_decide_facts(bs_decision *d, const bs_config *cfg, const bs_facts *f, bs_lookup *q)
{
    if (d->exempt_pending) {
        d->exempt_pending = 0;
        d->facts.exempt = f->exempt;
        return apply_rules(d, cfg, &d->facts, q);
    }
    if (d->dir_pending) {
        d->dir_pending = 0;
        d->facts.dir_known = 1;
        d->facts.dir_size = f->dir_size;
        d->facts.dir_synced_at = f->dir_synced_at;
        d->facts.dir_now = f->dir_now;
        return apply_rules(d, cfg, &d->facts, q);
    }
    d->facts = *f;
    d->mode = bs_decide_mode(cfg, f, &d->mode_src, &d->mode_bad);
    if (d->mode == BS_MODE_OFF) /* no checks: nothing counted, no second lookup */
        return finish(d, BS_WHY_MODE_OFF);
    if (q && f->blocked && !f->exempt && d->client_key[0] && !d->cidr_exempt) {
        memset(q, 0, sizeof(*q));
        q->exempt[q->nexempt++] = d->client_ip;
        if (strcmp(d->client_ip, d->client_key) != 0)
            q->exempt[q->nexempt++] = d->client_key;
        d->exempt_pending = 1;
        return BS_DECIDE_LOOKUP;
    }
    return apply_rules(d, cfg, &d->facts, q);
}

/* bs_decide_taken - the answer to an NDR budget take */
int bs_decide_taken(bs_decision *d, const bs_config *cfg, int result)
{
    if (result < 0)
        return finish(d, BS_WHY_REDIS_ERROR);
    return finish(d, result > 0 ? BS_WHY_NDR_UNDER : BS_WHY_NDR_LIMIT);
}

/* bs_decide_harvest - the answer of the harvest check; a store error is
 * the on_redis_error fallback, as for any lookup */
int bs_decide_harvest(bs_decision *d, const bs_config *cfg, int result, bs_lookup *q)
{
    d->harvest_pending = 0;
    if (result < BS_GREY_KNOWN || result > BS_GREY_DEFER) {
        bs_decide_fallback(d, cfg, BS_WHY_REDIS_ERROR);
        return BS_DECIDE_DONE;
    }
    d->harvest_result = result;
    return apply_rules(d, cfg, &d->facts, q);
}

void bs_decide_fallback(bs_decision *d, const bs_config *cfg, int why)
{
    d->note_invalid = d->note_harvest = d->note_known = 0;
    finish(d, why);
}

/*
 * The refusals. Postfix puts "<rcpt>: Recipient address rejected: " in
 * front of a policy server's text in smtpd_recipient_restrictions, so the
 * action carries the short text only; the log line and WARN replies (which
 * Postfix logs as they are) carry what the client sees.
 */
static const struct {
    int why;
    const char *action; /* what Postfix is told: "550 5.1.1", "DEFER_IF_PERMIT 4.7.1" */
    const char *code;   /* what the client sees */
    const char *text;
} refusals[] = {
    {BS_WHY_UNKNOWN_USER, "550 5.1.1", "550 5.1.1", "User unknown"},
    {BS_WHY_NDR_DENY, "550 5.7.1", "550 5.7.1",
     "Delivery status notifications to this domain are not accepted"},
    {BS_WHY_NDR_LIMIT, "550 5.7.1", "550 5.7.1",
     "Too many delivery status notifications to this domain"},
    {BS_WHY_BLOCKED, "450 4.7.1", "450 4.7.1",
     "Too many invalid recipients from your host, try again later"},
    /* DEFER_IF_PERMIT: a later restriction that rejects still wins */
    {BS_WHY_DIR_EMPTY, "DEFER_IF_PERMIT 4.7.1", "450 4.7.1",
     "Recipient directory of this domain is empty, try again later"},
    {BS_WHY_DIR_STALE, "450 4.7.1", "450 4.7.1", "Recipient directory is out of date"},
    /* one text for every recipient, valid or not: a probe learns nothing */
    {BS_WHY_HARVEST_GREY, "450 4.7.1", "450 4.7.1",
     "Recipient verification delayed, try again later"},
    {BS_WHY_HARVEST_DEFER, "450 4.7.1", "450 4.7.1",
     "Recipient verification delayed, try again later"},
};

/* report_mode - this decision's refusal is only reported ("WARN would
 * ..."): its mode is report, or it is an NDR refusal by an entry (or
 * ndr_default) that says "report" */
static int report_mode(const bs_decision *d, const bs_config *cfg)
{
    (void)cfg; /* d->mode starts as [policy] mode (bs_decide_begin) */
    return d->mode == BS_MODE_REPORT ||
           (d->ndr_rule.report && (d->why == BS_WHY_NDR_DENY || d->why == BS_WHY_NDR_LIMIT));
}

int bs_decide_would_reject(const bs_decision *d, const bs_config *cfg)
{
    return d->action != BS_ACT_DUNNO && d->action != BS_ACT_FALLBACK && report_mode(d, cfg);
}

const char *bs_decide_mode_src(int src)
{
    return src == BS_MODE_SRC_DOMAIN ? "own" : src == BS_MODE_SRC_STAR ? "*" : "config";
}

/* is_defer - a refusal that asks the sender to retry */
static int is_defer(const bs_decision *d)
{
    return d->action == BS_ACT_DEFER_CLIENT || d->action == BS_ACT_DEFER_DIR;
}

/*
 * A line being built in a caller's buffer, without snprintf (the log line
 * of a refusal cost ~2,500 instructions through it): what does not fit is
 * cut as snprintf cuts, the prefix that fits; line_end() NUL-terminates.
 * cap >= 1.
 */
typedef struct line_buf {
    char *p;
    size_t len, cap;
} line_buf;

static void put(line_buf *b, const char *s, size_t n)
{
    size_t room = b->cap - 1 - b->len;

    if (n > room)
        n = room;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_str(line_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* put_lit - a string literal */
#define put_lit(b, lit) put((b), (lit), sizeof(lit) - 1)

static size_t line_end(line_buf *b)
{
    b->p[b->len] = 0;
    return b->len;
}

/* refusal_row - the action of d's refusal, or NULL (DUNNO, fallback) */
static const char *refusal_row(const bs_decision *d, const char **code, const char **text)
{
    size_t i;

    for (i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
        if (refusals[i].why == d->why) {
            *code = refusals[i].code;
            *text = refusals[i].text;
            return refusals[i].action;
        }
    return NULL;
}

/* put_answer - the action line's text, without "action="; full: with the
 * client-visible refusal text (for the log line); to: d->to escaped (as
 * bs_decide_text escapes it), or NULL to escape it here when needed */
static void put_answer(line_buf *b, const bs_decision *d, const bs_config *cfg, int full,
                       const char *to)
{
    char esc[BS_LOG_FIELD_MAX];
    const char *action, *code, *text;
    int report;

    if (d->action == BS_ACT_FALLBACK) {
        if (cfg->on_redis_error == BS_ON_ERROR_DUNNO)
            put_lit(b, "DUNNO");
        else
            put_lit(b, "DEFER_IF_PERMIT Recipient verification temporarily unavailable");
        return;
    }
    if (!(action = refusal_row(d, &code, &text))) {
        put_lit(b, "DUNNO");
        return;
    }
    report = report_mode(d, cfg);
    if (report) {
        put_lit(b, "WARN would ");
        put_str(b, is_defer(d) ? "defer" : "reject");
        put_lit(b, ": ");
    }
    if (full || report) {
        if (!to) {
            bs_escape_marked(d->to, strlen(d->to), (d->cut & BS_CUT_TO) != 0, esc, sizeof(esc));
            to = esc;
        }
        put_str(b, code);
        put_lit(b, " <");
        put_str(b, to);
        put_lit(b, ">: Recipient address rejected: ");
    } else {
        put_str(b, action);
        put_lit(b, " ");
    }
    put_str(b, text);
}

size_t bs_decide_reply(const bs_decision *d, const bs_config *cfg, char *out)
{
    static const char dunno[] = "action=DUNNO\n\n";
    line_buf b = {out, 0, BS_REPLY_MAX};

    if (d->action == BS_ACT_DUNNO) { /* the common answer: no formatting */
        memcpy(out, dunno, sizeof(dunno));
        return sizeof(dunno) - 1;
    }
    /* the text is at most ~400 bytes (a 255-byte address escaped, in a
     * WARN): it and "action=...\n\n" fit BS_REPLY_MAX */
    put_lit(&b, "action=");
    put_answer(&b, d, cfg, 0, NULL);
    put_lit(&b, "\n\n");
    return line_end(&b);
}

size_t bs_decide_log_line(const bs_decision *d, const bs_config *cfg, char *out, size_t outsz)
{
    line_buf b = {out, 0, outsz};
    bs_decision_text t;
    const char *verb, *ndr;

    if (d->action == BS_ACT_DUNNO && d->why != BS_WHY_NDR_ALLOW && d->why != BS_WHY_NDR_UNDER)
        return 0;
    if (outsz == 0)
        return 0;
    bs_decide_text(d, &t);
    if (d->action == BS_ACT_DUNNO)
        verb = "permit";
    else if (d->action == BS_ACT_FALLBACK)
        verb = "fallback";
    else if (report_mode(d, cfg))
        verb = "reject_warning";
    else
        verb = is_defer(d) ? "defer" : "reject";
    /* "%s: %s: RCPT from %s[%s]: %s; from=<%s> to=<%s> proto=%s helo=<%s>
     * reason=%s[ ndr_entry=%s][ recipient=unreadable][ mode_entry=%s]" */
    put_str(&b, t.queue_id[0] ? t.queue_id : "NOQUEUE");
    put_lit(&b, ": ");
    put_str(&b, verb);
    put_lit(&b, ": RCPT from ");
    put_str(&b, t.client_name[0] ? t.client_name : "unknown");
    put_lit(&b, "[");
    put_str(&b, t.client_addr);
    put_lit(&b, "]: ");
    put_answer(&b, d, cfg, 1, t.to);
    put_lit(&b, "; from=<");
    put_str(&b, t.from);
    put_lit(&b, "> to=<");
    put_str(&b, t.to);
    put_lit(&b, "> proto=");
    put_str(&b, t.proto[0] ? t.proto : "SMTP");
    put_lit(&b, " helo=<");
    put_str(&b, t.helo);
    put_lit(&b, "> reason=");
    put_str(&b, bs_why_name(d->why));
    if ((ndr = bs_decide_ndr_match(d))) {
        put_lit(&b, " ndr_entry=");
        put_str(&b, ndr);
    }
    if (d->unreadable)
        put_lit(&b, " recipient=unreadable");
    if (d->mode_src != BS_MODE_SRC_CONFIG) {
        put_lit(&b, " mode_entry=");
        put_str(&b, d->mode_src == BS_MODE_SRC_DOMAIN ? d->rcpt.domain : "*");
    }
    return line_end(&b);
}
