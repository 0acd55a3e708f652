/*
 * redis_reply.c - pooled hiredis reply objects (see redis_reply.h)
 *
 * Provides bs_redis_reply_fns() and bs_redis_reply_pool_free().
 *
 * The objects are ordinary redisReply structs (code reading replies cannot
 * tell the difference); each is the first member of a node that also holds
 * an inline string buffer and an inline element array. A node's string or
 * element array is malloc'ed only when it does not fit. Freed nodes go back
 * to the free list (at most BS_REPLY_POOL_MAX are kept). Returns NULL on out
 * of memory, which hiredis turns into a reader error (the connection is then
 * dropped and re-established by redis_conn.c).
 */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_reply.h"

typedef struct bs_reply_node {
    redisReply r; /* first: the object hiredis and its callers see */
    struct bs_reply_node *next_free;
    char str[BS_REPLY_INLINE_STR];
    redisReply *elems[BS_REPLY_INLINE_ELEMS];
} bs_reply_node;

static bs_reply_node *free_nodes;
static size_t nfree;

/* node_get - a cleared node, recycled if possible */
static bs_reply_node *node_get(int type)
{
    bs_reply_node *n = free_nodes;

    if (n) {
        free_nodes = n->next_free;
        nfree--;
    } else if (!(n = malloc(sizeof(*n)))) {
        return NULL;
    }
    memset(&n->r, 0, sizeof(n->r));
    n->r.type = type;
    return n;
}

/* node_put - release what the node holds, keep the node */
static void node_put(bs_reply_node *n)
{
    if (n->r.str && n->r.str != n->str)
        free(n->r.str);
    if (n->r.element && n->r.element != n->elems)
        free(n->r.element);
    if (nfree >= BS_REPLY_POOL_MAX) {
        free(n);
        return;
    }
    n->next_free = free_nodes;
    free_nodes = n;
    nfree++;
}

/* link_parent - as hiredis does: an element goes into its parent array */
static void *link_parent(const redisReadTask *task, bs_reply_node *n)
{
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = &n->r;
    }
    return n;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    bs_reply_node *n = node_get(task->type);

    if (!n)
        return NULL;
    if (len < sizeof(n->str)) {
        n->r.str = n->str;
    } else if (!(n->r.str = malloc(len + 1))) {
        node_put(n);
        return NULL;
    }
    memcpy(n->r.str, str, len);
    n->r.str[len] = '\0';
    n->r.len = len;
    return link_parent(task, n);
}

static void *create_array(const redisReadTask *task, int elements)
{
    bs_reply_node *n = node_get(REDIS_REPLY_ARRAY);

    if (!n)
        return NULL;
    if (elements > 0) {
        if ((size_t)elements <= BS_REPLY_INLINE_ELEMS) {
            n->r.element = n->elems;
            memset(n->elems, 0, (size_t)elements * sizeof(n->elems[0]));
        } else if (!(n->r.element = calloc((size_t)elements, sizeof(redisReply *)))) {
            node_put(n);
            return NULL;
        }
    }
    n->r.elements = elements > 0 ? (size_t)elements : 0;
    return link_parent(task, n);
}

static void *create_integer(const redisReadTask *task, long long value)
{
    bs_reply_node *n = node_get(REDIS_REPLY_INTEGER);

    if (!n)
        return NULL;
    n->r.integer = value;
    return link_parent(task, n);
}

static void *create_nil(const redisReadTask *task)
{
    bs_reply_node *n = node_get(REDIS_REPLY_NIL);

    return n ? link_parent(task, n) : NULL;
}

/* free_object - a reply and, for arrays, its elements (depth is bounded by
 * hiredis's reader, 9 levels) */
static void free_object(void *obj)
{
    bs_reply_node *n = obj;
    size_t i;

    if (!n)
        return;
    if (n->r.type == REDIS_REPLY_ARRAY)
        for (i = 0; i < n->r.elements; i++)
            free_object(n->r.element[i]);
    node_put(n);
}

static redisReplyObjectFunctions pooled = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
    .createNil = create_nil,
    .freeObject = free_object,
};

redisReplyObjectFunctions *bs_redis_reply_fns(void)
{
    return &pooled;
}

void bs_redis_reply_pool_free(void)
{
    bs_reply_node *n;

    while ((n = free_nodes)) {
        free_nodes = n->next_free;
        free(n);
    }
    nfree = 0;
}
