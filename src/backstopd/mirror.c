/*
 * mirror.c - the local mirror of the admin's keys (domains, rcpt:<d>, the
 * ndr and mode HASHes, exempt, block:*), kept exact by invalidations (see
 * mirror.h)
 *
 * Provides bs_mirror_new/_free, the link events (_connected, _lost), the
 * read cycle (_next_read, then _scanned, _block or _failed with the reply),
 * _invalidate, _answer and _get_info.
 *
 * Storage: every SET or HASH is one strset, an open-addressing table of
 * 32-bit offsets into one arena of length-prefixed records ("len, bytes"
 * for a member, "len, field, len, value" for a hash entry): about 4-6
 * bytes of overhead per member besides its bytes. A key being re-read is
 * built in a second strset and swapped in when the scan ends, so lookups
 * see the old contents or the new, never half of it. Keys live in one
 * table by name (linear probing, deletion by backward shift).
 *
 * Each key is in one state: NEED (a read is due or in flight, not exact),
 * EXACT, WRONG (a reply had the wrong type: Redis answers for it, as
 * without a mirror, until it is invalidated). `have` says its data was
 * exact once: while the link is lost such data answers for max_stale.
 *
 * Reads carry a sequence number; an invalidation stamps its key with a new
 * one. A reply to a read older than its key's last invalidation is
 * dropped and the key read again from the start (counted as raced). A
 * scan in several batches keeps its first number, so an invalidation in
 * the middle restarts it. bs_mirror_connected voids every read in flight.
 *
 * The block: keys are found by SCAN and read one by one (GET + PTTL);
 * an invalidation of one that is not held creates it. Expiry is kept
 * as an absolute time and checked at each answer.
 *
 * Never: allocates while answering, blocks, or answers from a key that is
 * not exact while the link is up. Out of memory while loading leaves that
 * key to Redis (state WRONG until its next invalidation).
 */
#include <stdlib.h>
#include <string.h>

#include "backstop/keys.h"
#include "backstop/store_reply.h"
#include "hash.h"
#include "mirror.h"

enum { K_SET = 1, K_HASH, K_BLOCK, K_SCAN };
enum { KS_NEED = 0, KS_EXACT, KS_WRONG };

/* Open addressing over an arena of length-prefixed records. */
typedef struct strset {
    char *arena; /* records from offset 1 (0 means an empty slot) */
    size_t used, cap;
    uint32_t *slot;
    size_t nslot, n;
} strset;

typedef struct mkey {
    struct mkey *qnext; /* read queue */
    int type;           /* K_* */
    int state;          /* KS_* */
    int have;           /* data was exact once */
    int queued, cont;   /* in the read queue; as a scan's next batch */
    uint64_t read_seq;  /* read in flight (0: none) */
    uint64_t inval_seq; /* last invalidation */
    unsigned long long cursor;
    strset cur, next;
    /* K_BLOCK */
    int blocked;
    uint64_t expires; /* ms, 0: no TTL */
    char reason[64];
    size_t nlen;
    char name[];
} mkey;

struct bs_mirror {
    mkey **tab; /* keys by name */
    size_t ntab, nkeys;
    mkey *domains, *ndr, *mode, *exempt, *scan;
    mkey *qhead, *qtail;
    uint64_t seq;
    int connected, stale;
    uint64_t stale_since;
    int blocks_scanned, blocks_have;
    uint64_t invalidations, raced;
    uint64_t changes; /* invalidations, link changes: bs_mirror_changes */
};

/* ------------------------------------------------------------ strset */

static uint32_t hash(const char *s, size_t len)
{
    return (uint32_t)bs_hash_end(bs_hash(BS_HASH_SEED, s, len));
}

static size_t rec_len(const char *p)
{
    return (size_t)(uint8_t)p[0] << 8 | (uint8_t)p[1];
}

/* ss_find - the record offset of s (len bytes), or 0 */
static uint32_t ss_find(const strset *ss, const char *s, size_t len)
{
    size_t i;

    if (!ss->nslot)
        return 0;
    for (i = hash(s, len) & (ss->nslot - 1); ss->slot[i]; i = (i + 1) & (ss->nslot - 1)) {
        const char *p = ss->arena + ss->slot[i];
        if (rec_len(p) == len && memcmp(p + 2, s, len) == 0)
            return ss->slot[i];
    }
    return 0;
}

static void ss_clear(strset *ss)
{
    free(ss->arena);
    free(ss->slot);
    memset(ss, 0, sizeof(*ss));
}

/* ss_grow - double the slots; 0 or -1 */
static int ss_grow(strset *ss)
{
    size_t n = ss->nslot ? ss->nslot * 2 : 16, i, j;
    uint32_t *slot = calloc(n, sizeof(*slot));

    if (!slot)
        return -1;
    for (i = 0; i < ss->nslot; i++) {
        const char *p;
        if (!ss->slot[i])
            continue;
        p = ss->arena + ss->slot[i];
        for (j = hash(p + 2, rec_len(p)) & (n - 1); slot[j]; j = (j + 1) & (n - 1))
            ;
        slot[j] = ss->slot[i];
    }
    free(ss->slot);
    ss->slot = slot;
    ss->nslot = n;
    return 0;
}

/* ss_put - append bytes to the arena; the offset, or 0 when out of memory */
static int ss_room(strset *ss, size_t need)
{
    size_t cap = ss->cap ? ss->cap : 256;
    char *a;

    if (ss->used + need <= ss->cap)
        return 0;
    while (cap < ss->used + need)
        cap *= 2;
    if (cap > UINT32_MAX || !(a = realloc(ss->arena, cap)))
        return -1;
    ss->arena = a;
    ss->cap = cap;
    return 0;
}

/* ss_add - add member s (with value v for a hash; v NULL for a set); 0, or
 * -1 (too long, out of memory). A member already present is kept. */
static int ss_add(strset *ss, const char *s, size_t len, const char *v, size_t vlen)
{
    size_t need = 2 + len + (v ? 2 + vlen : 0), i;
    char *p;

    if (len > BS_MIRROR_ITEM_MAX || vlen > BS_MIRROR_ITEM_MAX)
        return -1;
    if (ss_find(ss, s, len))
        return 0;
    if ((ss->n + 1) * 4 > ss->nslot * 3 && ss_grow(ss) < 0)
        return -1;
    if (ss->used == 0)
        ss->used = 1;
    if (ss_room(ss, need) < 0)
        return -1;
    p = ss->arena + ss->used;
    p[0] = (char)(len >> 8);
    p[1] = (char)len;
    memcpy(p + 2, s, len);
    if (v) {
        p[2 + len] = (char)(vlen >> 8);
        p[3 + len] = (char)vlen;
        memcpy(p + 4 + len, v, vlen);
    }
    for (i = hash(s, len) & (ss->nslot - 1); ss->slot[i]; i = (i + 1) & (ss->nslot - 1))
        ;
    ss->slot[i] = (uint32_t)ss->used;
    ss->used += need;
    ss->n++;
    return 0;
}

/* ss_value - the value of the hash record at off */
static const char *ss_value(const strset *ss, uint32_t off, size_t *vlen)
{
    const char *p = ss->arena + off;
    const char *v = p + 2 + rec_len(p);

    *vlen = rec_len(v);
    return v + 2;
}

/* ss_shrink - give back the arena's unused tail (a finished read) */
static void ss_shrink(strset *ss)
{
    char *a;

    if (ss->used && ss->used < ss->cap && (a = realloc(ss->arena, ss->used))) {
        ss->arena = a;
        ss->cap = ss->used;
    }
}

static size_t ss_bytes(const strset *ss)
{
    return ss->cap + ss->nslot * sizeof(uint32_t);
}

/* ------------------------------------------------------------ keys */

static mkey **key_slot(const bs_mirror *m, const char *name, size_t len)
{
    size_t i;

    for (i = hash(name, len) & (m->ntab - 1); m->tab[i]; i = (i + 1) & (m->ntab - 1))
        if (m->tab[i]->nlen == len && memcmp(m->tab[i]->name, name, len) == 0)
            break;
    return &m->tab[i];
}

static mkey *key_find(const bs_mirror *m, const char *name, size_t len)
{
    return *key_slot(m, name, len);
}

static int key_table_grow(bs_mirror *m)
{
    mkey **old = m->tab;
    size_t n = m->ntab, i;

    if (!(m->tab = calloc(n * 2, sizeof(*m->tab)))) {
        m->tab = old;
        return -1;
    }
    m->ntab = n * 2;
    for (i = 0; i < n; i++)
        if (old[i])
            *key_slot(m, old[i]->name, old[i]->nlen) = old[i];
    free(old);
    return 0;
}

/* key_add - a new key (not present); NULL when out of memory */
static mkey *key_add(bs_mirror *m, const char *name, size_t len, int type)
{
    mkey *k;

    if ((m->nkeys + 1) * 2 > m->ntab && key_table_grow(m) < 0)
        return NULL;
    if (!(k = calloc(1, sizeof(*k) + len + 1)))
        return NULL;
    k->type = type;
    k->nlen = len;
    memcpy(k->name, name, len);
    *key_slot(m, name, len) = k;
    m->nkeys++;
    return k;
}

static void queue_unlink(bs_mirror *m, mkey *k)
{
    mkey **pp, *prev = NULL;

    for (pp = &m->qhead; *pp; prev = *pp, pp = &(*pp)->qnext)
        if (*pp == k) {
            *pp = k->qnext;
            if (m->qtail == k)
                m->qtail = prev;
            break;
        }
    k->queued = 0;
    k->qnext = NULL;
}

/* key_remove - drop k from the table (backward-shift deletion) and free it */
static void key_remove(bs_mirror *m, mkey *k)
{
    mkey **s = key_slot(m, k->name, k->nlen);
    size_t i = (size_t)(s - m->tab), j = i, home;

    if (k->queued)
        queue_unlink(m, k);
    for (;;) {
        m->tab[i] = NULL;
        for (;;) {
            j = (j + 1) & (m->ntab - 1);
            if (!m->tab[j])
                goto done;
            home = hash(m->tab[j]->name, m->tab[j]->nlen) & (m->ntab - 1);
            /* the entry at j may move to i unless its home lies in (i, j] */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
                break;
        }
        m->tab[i] = m->tab[j];
        i = j;
    }
done:
    m->nkeys--;
    ss_clear(&k->cur);
    ss_clear(&k->next);
    free(k);
}

/* enqueue - a fresh read of k is due (front: a scan's next batch) */
static void enqueue(bs_mirror *m, mkey *k, int front)
{
    if (k->queued || !m->connected)
        return;
    k->queued = 1;
    if (front) {
        k->qnext = m->qhead;
        m->qhead = k;
        if (!m->qtail)
            m->qtail = k;
        return;
    }
    k->qnext = NULL;
    if (m->qtail)
        m->qtail->qnext = k;
    else
        m->qhead = k;
    m->qtail = k;
}

/* invalidate - k changed in Redis: not exact until read again */
static void invalidate(bs_mirror *m, mkey *k)
{
    k->inval_seq = ++m->seq;
    m->changes++;
    if (k->state == KS_WRONG)
        k->have = 0;
    k->state = KS_NEED;
    m->invalidations++;
    if (!k->read_seq)
        enqueue(m, k, 0);
}

/* key_named - the key name + arg, or NULL (not held). Arguments are
 * bounded by addr.h (a domain, a client key), so the name always fits. */
static mkey *key_named(const bs_mirror *m, const char *name, const char *arg)
{
    char buf[BS_MIRROR_KEY_MAX + 1];
    size_t nl = strlen(name), al = strlen(arg);

    if (nl + al > BS_MIRROR_KEY_MAX)
        return NULL;
    memcpy(buf, name, nl);
    memcpy(buf + nl, arg, al);
    return key_find(m, buf, nl + al);
}

/* reconcile - domains changed: hold rcpt:<d> for its members only */
static void reconcile(bs_mirror *m)
{
    const strset *d = &m->domains->cur;
    char buf[BS_MIRROR_KEY_MAX + 1];
    size_t i, off, len, rl = sizeof(BS_KEY_RCPT) - 1;
    mkey *k;

    for (i = 0; i < m->ntab; i++) {
        k = m->tab[i];
        if (k && k->type == K_SET && k->nlen > rl && memcmp(k->name, BS_KEY_RCPT, rl) == 0 &&
            !ss_find(d, k->name + rl, k->nlen - rl)) {
            key_remove(m, k);
            i--; /* an entry may have shifted into slot i */
        }
    }
    memcpy(buf, BS_KEY_RCPT, rl);
    for (off = 1; off < d->used; off += 2 + len) {
        len = rec_len(d->arena + off);
        if (len == 0 || len > BS_DOMAIN_MAX)
            continue;
        memcpy(buf + rl, d->arena + off + 2, len);
        if (key_find(m, buf, rl + len))
            continue;
        if ((k = key_add(m, buf, rl + len, K_SET)))
            enqueue(m, k, 0);
    }
}

/* ------------------------------------------------------------ life cycle */

bs_mirror *bs_mirror_new(void)
{
    bs_mirror *m = calloc(1, sizeof(*m));

    if (!m || !(m->tab = calloc(64, sizeof(*m->tab)))) {
        free(m);
        return NULL;
    }
    m->ntab = 64;
    m->domains = key_add(m, BS_KEY_DOMAINS, strlen(BS_KEY_DOMAINS), K_SET);
    m->ndr = key_add(m, BS_KEY_NDR, strlen(BS_KEY_NDR), K_HASH);
    m->mode = key_add(m, BS_KEY_MODE, strlen(BS_KEY_MODE), K_HASH);
    m->exempt = key_add(m, BS_KEY_EXEMPT, strlen(BS_KEY_EXEMPT), K_SET);
    m->scan = calloc(1, sizeof(*m->scan) + 1);
    if (!m->domains || !m->ndr || !m->mode || !m->exempt || !m->scan)
        return bs_mirror_free(m);
    m->scan->type = K_SCAN;
    return m;
}

bs_mirror *bs_mirror_free(bs_mirror *m)
{
    size_t i;

    if (!m)
        return NULL;
    for (i = 0; i < m->ntab; i++)
        if (m->tab[i]) {
            ss_clear(&m->tab[i]->cur);
            ss_clear(&m->tab[i]->next);
            free(m->tab[i]);
        }
    free(m->tab);
    free(m->scan);
    free(m);
    return NULL;
}

/* void_reads - forget every read in flight and the queue */
static void void_reads(bs_mirror *m)
{
    size_t i;

    while (m->qhead)
        queue_unlink(m, m->qhead);
    m->scan->read_seq = 0;
    m->scan->cont = 0;
    for (i = 0; i < m->ntab; i++)
        if (m->tab[i]) {
            m->tab[i]->read_seq = 0;
            m->tab[i]->cont = 0;
        }
}

void bs_mirror_connected(bs_mirror *m)
{
    size_t i;
    mkey *k;

    void_reads(m);
    m->changes++;
    m->connected = 1;
    m->stale = 0;
    m->seq++;
    /* blocks are found again by SCAN: one the new master lacks must go */
    for (i = 0; i < m->ntab; i++) {
        k = m->tab[i];
        if (k && k->type == K_BLOCK) {
            key_remove(m, k);
            i--;
        }
    }
    m->blocks_scanned = m->blocks_have = 0;
    m->scan->state = KS_NEED;
    enqueue(m, m->domains, 0);
    enqueue(m, m->ndr, 0);
    enqueue(m, m->mode, 0);
    enqueue(m, m->exempt, 0);
    enqueue(m, m->scan, 0);
    for (i = 0; i < m->ntab; i++)
        if ((k = m->tab[i])) {
            if (k->state == KS_WRONG)
                k->have = 0;
            k->state = KS_NEED;
            enqueue(m, k, 0);
        }
}

void bs_mirror_lost(bs_mirror *m, uint64_t now)
{
    if (!m->connected)
        return;
    void_reads(m);
    m->changes++;
    m->connected = 0;
    m->stale = 1;
    m->stale_since = now;
}

/* ------------------------------------------------------------ reads */

int bs_mirror_next_read(bs_mirror *m, bs_mirror_read *rd)
{
    mkey *k = m->qhead;

    if (!k || !m->connected)
        return 0;
    queue_unlink(m, k);
    if (k->cont && k->inval_seq > k->read_seq) {
        m->raced++;
        k->cont = 0; /* invalidated between two batches: start again */
    }
    if (!k->cont) {
        k->read_seq = ++m->seq;
        k->cursor = 0;
        ss_clear(&k->next);
    }
    k->cont = 0;
    memset(rd, 0, sizeof(*rd));
    rd->kind = k->type == K_SET     ? BS_MIRROR_SSCAN
               : k->type == K_HASH  ? BS_MIRROR_HSCAN
               : k->type == K_BLOCK ? BS_MIRROR_BLOCK
                                    : BS_MIRROR_SCAN;
    memcpy(rd->key, k->name, k->nlen);
    rd->cursor = k->cursor;
    rd->seq = k->read_seq;
    return 1;
}

/* reply_key - the key rd read, when the reply still counts: NULL for a
 * void read; a read raced by an invalidation is queued again (NULL) */
static mkey *reply_key(bs_mirror *m, const bs_mirror_read *rd)
{
    mkey *k = rd->kind == BS_MIRROR_SCAN ? m->scan : key_find(m, rd->key, strlen(rd->key));

    if (!k || !rd->seq || k->read_seq != rd->seq || !m->connected)
        return NULL;
    if (k->inval_seq > rd->seq) {
        m->raced++;
        k->read_seq = 0;
        ss_clear(&k->next);
        enqueue(m, k, 0);
        return NULL;
    }
    return k;
}

/* set_wrong - k cannot be held: Redis answers for it */
static void set_wrong(mkey *k)
{
    k->state = KS_WRONG;
    k->have = 0;
    k->read_seq = 0;
    ss_clear(&k->cur);
    ss_clear(&k->next);
}

/* scan_block_key - SCAN found name: read it unless it is held already */
static void scan_block_key(bs_mirror *m, const char *name, size_t len)
{
    size_t bl = sizeof(BS_KEY_BLOCK) - 1;
    mkey *k;

    if (len <= bl || len > BS_MIRROR_KEY_MAX || memcmp(name, BS_KEY_BLOCK, bl) != 0 ||
        key_find(m, name, len))
        return;
    if ((k = key_add(m, name, len, K_BLOCK)))
        enqueue(m, k, 0);
}

void bs_mirror_scanned(bs_mirror *m, const bs_mirror_read *rd, unsigned long long next,
                       const char *const *items, const size_t *lens, size_t n)
{
    mkey *k = reply_key(m, rd);
    size_t i;

    if (!k)
        return;
    for (i = 0; i < n; i++) {
        if (k->type == K_SCAN) {
            scan_block_key(m, items[i], lens[i]);
        } else if (k->type == K_HASH) {
            if (i + 1 < n && ss_add(&k->next, items[i], lens[i], items[i + 1], lens[i + 1]) < 0) {
                set_wrong(k);
                return;
            }
            i++;
        } else if (ss_add(&k->next, items[i], lens[i], NULL, 0) < 0) {
            set_wrong(k);
            return;
        }
    }
    if (next) {
        k->cursor = next;
        k->cont = 1;
        enqueue(m, k, 1);
        return;
    }
    k->read_seq = 0;
    if (k->type == K_SCAN) {
        m->blocks_scanned = m->blocks_have = 1;
        return;
    }
    ss_clear(&k->cur);
    ss_shrink(&k->next);
    k->cur = k->next;
    memset(&k->next, 0, sizeof(k->next));
    k->state = KS_EXACT;
    k->have = 1;
    if (k == m->domains)
        reconcile(m);
}

void bs_mirror_block(bs_mirror *m, const bs_mirror_read *rd, int exists, const char *value,
                     size_t len, long long pttl_ms, uint64_t now)
{
    mkey *k = reply_key(m, rd);

    if (!k)
        return;
    k->read_seq = 0;
    if (!exists || pttl_ms == -2) {
        key_remove(m, k);
        return;
    }
    k->blocked = 1;
    bs_escape(value, len, k->reason, sizeof(k->reason));
    k->expires = pttl_ms >= 0 ? now + (uint64_t)pttl_ms : 0;
    k->state = KS_EXACT;
    k->have = 1;
}

void bs_mirror_failed(bs_mirror *m, const bs_mirror_read *rd, int wrong)
{
    mkey *k;

    if (!wrong || !(k = reply_key(m, rd)))
        return;
    if (k->type == K_SCAN)
        k->read_seq = 0; /* blocks stay unscanned: Redis answers for them */
    else
        set_wrong(k);
}

void bs_mirror_invalidate(bs_mirror *m, const char *key, size_t len)
{
    size_t i, bl = sizeof(BS_KEY_BLOCK) - 1;
    mkey *k;

    if (!key) {
        for (i = 0; i < m->ntab; i++)
            if (m->tab[i])
                invalidate(m, m->tab[i]);
        /* blocks the new data holds (a full resync, a FLUSHALL then a
         * restore) sent no invalidation of their own: SCAN again, and
         * until it ends Redis answers for the clients the mirror lacks */
        m->blocks_scanned = 0;
        invalidate(m, m->scan);
        return;
    }
    if (len > BS_MIRROR_KEY_MAX)
        return;
    if ((k = key_find(m, key, len))) {
        invalidate(m, k);
        return;
    }
    /* a new block: held from now on (other keys are not ours, or an rcpt
     * set of a domain that is not protected) */
    if (len > bl && memcmp(key, BS_KEY_BLOCK, bl) == 0 && (k = key_add(m, key, len, K_BLOCK)))
        invalidate(m, k);
}

/* ------------------------------------------------------------ answers */

/* usable - k may answer: exact, or known while stale */
static int usable(const bs_mirror *m, const mkey *k)
{
    return k && (m->connected ? k->state == KS_EXACT : k->have);
}

static int member(const mkey *k, const char *s, size_t len)
{
    return ss_find(&k->cur, s, len) != 0;
}

/* answer_block - the block facts of client; 0, or -1 (ask Redis) */
static int answer_block(const bs_mirror *m, const char *client, uint64_t now, bs_facts *f)
{
    const mkey *k;

    if (!(m->connected ? m->blocks_scanned : m->blocks_have))
        return -1;
    k = key_named(m, BS_KEY_BLOCK, client);
    if (!k)
        return 0;
    if (!usable(m, k))
        return -1;
    if (k->blocked && (!k->expires || k->expires > now)) {
        f->blocked = 1;
        memcpy(f->block_reason, k->reason, sizeof(f->block_reason));
    }
    return 0;
}

/* answer_ndr - the first NDR field present; 0 or -1 */
static int answer_ndr(const bs_mirror *m, const bs_lookup *q, bs_facts *f)
{
    unsigned i;
    uint32_t off;
    size_t vlen;
    const char *v;

    if (!usable(m, m->ndr))
        return -1;
    for (i = 0; i < q->nndr; i++) {
        if (!(off = ss_find(&m->ndr->cur, q->ndr_fields[i], strlen(q->ndr_fields[i]))))
            continue;
        v = ss_value(&m->ndr->cur, off, &vlen);
        if (vlen > sizeof(f->ndr_value) - 1)
            vlen = sizeof(f->ndr_value) - 1;
        memcpy(f->ndr_value, v, vlen);
        f->ndr_value[vlen] = 0;
        f->ndr_value_len = vlen;
        f->ndr_index = (int)i;
        break;
    }
    return 0;
}

/* answer_mode - the mode HASH's fields <domain> and "*"; 0 or -1 */
static int answer_mode(const bs_mirror *m, const bs_lookup *q, bs_facts *f)
{
    const char *fields[2] = {q->mode_domain, "*"};
    uint32_t off;
    size_t i, vlen;
    const char *v;

    if (!usable(m, m->mode))
        return -1;
    for (i = 0; i < 2; i++)
        if ((off = ss_find(&m->mode->cur, fields[i], strlen(fields[i])))) {
            v = ss_value(&m->mode->cur, off, &vlen);
            bs_store_mode_value(f, i, v, vlen);
        }
    return 0;
}

/* answer_domain - protected, known recipient, directory size; 0 or -1 */
static int answer_domain(const bs_mirror *m, const bs_lookup *q, bs_facts *f)
{
    const mkey *r;
    unsigned i;

    if (q->domain) {
        if (!usable(m, m->domains))
            return -1;
        f->protected_domain = member(m->domains, q->domain, strlen(q->domain));
        if (f->protected_domain) {
            if (!usable(m, r = key_named(m, BS_KEY_RCPT, q->domain)))
                return -1;
            for (i = 0; i < q->nlocals; i++)
                f->rcpt_known |= member(r, q->locals[i], q->local_lens[i]);
        }
    }
    if (q->directory) {
        /* the sync record is not mirrored */
        if (q->directory_synced || !usable(m, r = key_named(m, BS_KEY_RCPT, q->directory)))
            return -1;
        f->dir_known = 1;
        f->dir_size = (long long)r->cur.n;
    }
    return 0;
}

int bs_mirror_answer(bs_mirror *m, const bs_lookup *q, uint64_t now, uint64_t max_stale,
                     bs_facts *f)
{
    unsigned i;

    memset(f, 0, sizeof(*f));
    f->ndr_index = -1;
    if (!m->connected && (!m->stale || now - m->stale_since > max_stale))
        return BS_MIRROR_ASK_REDIS;
    if (q->client_key && answer_block(m, q->client_key, now, f) < 0)
        return BS_MIRROR_ASK_REDIS;
    if (q->nexempt) {
        if (!usable(m, m->exempt))
            return BS_MIRROR_ASK_REDIS;
        for (i = 0; i < q->nexempt; i++)
            f->exempt |= member(m->exempt, q->exempt[i], strlen(q->exempt[i]));
    }
    if (answer_domain(m, q, f) < 0 || (q->nndr && answer_ndr(m, q, f) < 0) ||
        (q->mode_domain && answer_mode(m, q, f) < 0))
        return BS_MIRROR_ASK_REDIS;
    return m->connected ? BS_MIRROR_EXACT : BS_MIRROR_STALE;
}

uint64_t bs_mirror_changes(const bs_mirror *m)
{
    return m->changes;
}

int bs_mirror_linked(const bs_mirror *m, uint64_t *stale_since)
{
    if (stale_since)
        *stale_since = m->stale ? m->stale_since : 0;
    return m->connected;
}

void bs_mirror_get_info(const bs_mirror *m, bs_mirror_info *info)
{
    size_t i;

    memset(info, 0, sizeof(*info));
    info->keys = m->nkeys;
    info->bytes = sizeof(*m) + m->ntab * sizeof(*m->tab);
    for (i = 0; i < m->ntab; i++)
        if (m->tab[i])
            info->bytes += sizeof(mkey) + m->tab[i]->nlen + ss_bytes(&m->tab[i]->cur) +
                           ss_bytes(&m->tab[i]->next);
    info->invalidations = m->invalidations;
    info->raced = m->raced;
    info->connected = m->connected;
    info->stale_since = m->stale ? m->stale_since : 0;
}
