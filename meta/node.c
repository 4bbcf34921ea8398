/* meta/node.c - the storage of a shard: node pages, the name arena, interned
 * attributes, directory child vectors and side tables; and the shard's
 * creation, hash and statistics. Commands live in ops.c.
 * Invariants: a live node's name is in by_name unless it is NAMELESS; an
 * inode (not an alias) is in by_ino; an attr class's refs equals the live
 * inodes that use it; a dir's `live` equals its non-NIL children.
 * Thread: none; one thread uses a shard at a time. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shard.h"

#define NODE_PAGE_SIZE (1u << NODE_PAGE_BITS)
#define NAMES_CAP_MIN  (64u << 10)
#define NAME_SLOT_MIN  5u /* a free slot holds a u32 link after its length byte */
#define DIR_HOLES_MIN  16u /* small vectors are not worth compacting */

struct meta__node *meta__node_at(const struct meta_shard *s, uint32_t idx)
{
    AR_ASSERT(idx < s->node_count);
    return &s->pages[idx >> NODE_PAGE_BITS][idx & (NODE_PAGE_SIZE - 1)];
}

uint32_t meta__node_nlink(const struct meta__node *n)
{
    return n->nlink_flags & NODE_NLINK_MASK;
}

void meta__node_set_nlink(struct meta__node *n, uint32_t nlink)
{
    AR_ASSERT(nlink <= NODE_NLINK_MASK);
    n->nlink_flags = (n->nlink_flags & ~NODE_NLINK_MASK) | nlink;
}

bool meta__node_has(const struct meta__node *n, uint32_t flag)
{
    return (n->nlink_flags >> NODE_NLINK_BITS & flag) != 0;
}

void meta__node_flag(struct meta__node *n, uint32_t flag, bool on)
{
    uint32_t bit = flag << NODE_NLINK_BITS;

    n->nlink_flags = on ? n->nlink_flags | bit : n->nlink_flags & ~bit;
}

/* ---- node slots --------------------------------------------------------------- */

int meta__node_alloc(struct meta_shard *s, uint32_t *out)
{
    if (s->node_free != META_NIL) {
        *out = s->node_free;
        s->node_free = (uint32_t)meta__node_at(s, s->node_free)->aux;
        return 0;
    }
    if (s->node_count == META_NODES_MAX)
        return -ENOSPC;
    if ((s->node_count & (NODE_PAGE_SIZE - 1)) == 0) {
        uint32_t page = s->node_count >> NODE_PAGE_BITS;
        struct meta__node **pages = ar_realloc(s->pages, (page + 1) * sizeof(*pages));
        if (pages == NULL)
            return -ENOMEM;
        s->pages = pages;
        pages[page] = ar_calloc(NODE_PAGE_SIZE, sizeof(struct meta__node));
        if (pages[page] == NULL)
            return -ENOMEM;
        meta__advise_huge(pages[page], NODE_PAGE_SIZE * sizeof(struct meta__node));
        s->page_count = page + 1;
    }
    *out = s->node_count++;
    return 0;
}

void meta__node_release(struct meta_shard *s, uint32_t idx)
{
    struct meta__node *n = meta__node_at(s, idx);

    memset(n, 0, sizeof(*n));
    n->aux = s->node_free;
    s->node_free = idx;
}

/* ---- names ----------------------------------------------------------------------- */

static uint32_t name_slot_bytes(uint32_t len)
{
    return len + 1 < NAME_SLOT_MIN ? NAME_SLOT_MIN : len + 1;
}

const uint8_t *meta__name_bytes(const struct meta_shard *s, uint32_t off, uint32_t *len)
{
    *len = s->names[off];
    return s->names + off + 1;
}

int meta__name_store(struct meta_shard *s, const char *name, uint32_t len, uint32_t *out)
{
    uint32_t slot = name_slot_bytes(len);
    uint32_t off = s->name_free[slot];

    AR_ASSERT(len > 0 && len <= META_NAME_BYTES_MAX);
    if (off != META_NIL) {
        memcpy(&s->name_free[slot], s->names + off + 1, sizeof(uint32_t));
    } else {
        if (s->names_used + slot > UINT32_MAX)
            return -ENOSPC;
        if (s->names_used + slot > s->names_cap) {
            uint64_t cap = s->names_cap < NAMES_CAP_MIN ? NAMES_CAP_MIN : s->names_cap;
            while (cap < s->names_used + slot) {
                cap += cap / 2;
            }
            uint8_t *bigger = ar_realloc(s->names, cap);
            if (bigger == NULL)
                return -ENOMEM;
            meta__advise_huge(bigger, cap);
            s->names = bigger;
            s->names_cap = cap;
        }
        off = (uint32_t)s->names_used;
        s->names_used += slot;
    }
    s->names[off] = (uint8_t)len;
    memcpy(s->names + off + 1, name, len);
    *out = off;
    return 0;
}

void meta__name_release(struct meta_shard *s, uint32_t off)
{
    uint32_t slot = name_slot_bytes(s->names[off]);

    memcpy(s->names + off + 1, &s->name_free[slot], sizeof(uint32_t));
    s->name_free[slot] = off;
}

/* ---- interned (mode, uid, gid) ---------------------------------------------------- */

struct attr_key {
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
};

static uint64_t attr_hash(const struct meta_shard *s, uint32_t mode, uint32_t uid, uint32_t gid)
{
    return meta__hash_u64(s->seed, (uint64_t)mode << 40 ^ (uint64_t)uid << 20 ^ gid ^
                                       (uint64_t)gid << 52);
}

static bool attr_match(const void *ctx, uint32_t v, const void *key)
{
    const struct meta_shard *s = ctx;
    const struct attr_key *k = key;
    const struct meta__attr_class *a = &s->attrs[v];

    return a->mode == k->mode && a->uid == k->uid && a->gid == k->gid;
}

static uint64_t attr_rehash(const void *ctx, uint32_t v)
{
    const struct meta_shard *s = ctx;

    return attr_hash(s, s->attrs[v].mode, s->attrs[v].uid, s->attrs[v].gid);
}

const struct meta__attr_class *meta__attr_of(const struct meta_shard *s, uint32_t idx)
{
    AR_ASSERT(idx < s->attr_count && s->attrs[idx].refs > 0);
    return &s->attrs[idx];
}

/* The class of (mode, uid, gid), with one more reference. */
int meta__attr_get(struct meta_shard *s, uint32_t mode, uint32_t uid, uint32_t gid, uint32_t *out)
{
    struct attr_key k = {mode, uid, gid};
    uint64_t h = attr_hash(s, mode, uid, gid);
    uint32_t idx = meta__index_find(&s->attr_index, h, &k, attr_match, s);
    int rc;

    if (idx != META_NIL) {
        s->attrs[idx].refs++;
        *out = idx;
        return 0;
    }
    const struct meta__index_owner owner = {.rehash = attr_rehash, .ctx = s};
    rc = meta__index_reserve(&s->attr_index, 1, &owner);
    if (rc != 0)
        return rc;
    if (s->attr_free != META_NIL) {
        idx = s->attr_free;
        s->attr_free = s->attrs[idx].mode; /* free slots link through mode */
    } else {
        if (s->attr_count == s->attr_cap) {
            uint32_t cap = s->attr_cap < 64 ? 64 : s->attr_cap * 2;
            struct meta__attr_class *bigger = ar_realloc(s->attrs, cap * sizeof(*bigger));
            if (bigger == NULL)
                return -ENOMEM;
            s->attrs = bigger;
            s->attr_cap = cap;
        }
        idx = s->attr_count++;
    }
    s->attrs[idx] = (struct meta__attr_class){.mode = mode, .uid = uid, .gid = gid, .refs = 1};
    rc = meta__index_insert(&s->attr_index, h, idx, &owner);
    AR_ASSERT(rc == 0); /* reserved above */
    *out = idx;
    return 0;
}

void meta__attr_put(struct meta_shard *s, uint32_t idx)
{
    struct meta__attr_class *a = &s->attrs[idx];

    AR_ASSERT(a->refs > 0);
    if (--a->refs > 0)
        return;
    meta__index_remove(&s->attr_index, attr_hash(s, a->mode, a->uid, a->gid), idx);
    a->mode = s->attr_free;
    s->attr_free = idx;
}

/* ---- directories -------------------------------------------------------------------- */

int meta__dir_alloc(struct meta_shard *s, uint32_t *out)
{
    if (s->dir_free != META_NIL) {
        *out = s->dir_free;
        s->dir_free = s->dirs[*out].count;
        memset(&s->dirs[*out], 0, sizeof(s->dirs[0]));
        return 0;
    }
    if (s->dir_count == s->dir_cap) {
        uint32_t cap = s->dir_cap < 64 ? 64 : s->dir_cap + s->dir_cap / 2;
        struct meta__dir *bigger = ar_realloc(s->dirs, cap * sizeof(*bigger));
        if (bigger == NULL)
            return -ENOMEM;
        s->dirs = bigger;
        s->dir_cap = cap;
    }
    *out = s->dir_count++;
    memset(&s->dirs[*out], 0, sizeof(s->dirs[0]));
    return 0;
}

void meta__dir_release(struct meta_shard *s, uint32_t d)
{
    AR_ASSERT(s->dirs[d].live == 0);
    ar_free(s->dirs[d].children);
    s->dirs[d].children = NULL;
    s->dirs[d].count = s->dir_free; /* free slots link through count */
    s->dir_free = d;
}

/* Position of the first child whose entry key is > key (holes skipped by the
 * caller). Holes keep no key, so search the live neighbours. */
uint32_t meta__dir_seek(const struct meta_shard *s, const struct meta__dir *d, uint64_t key)
{
    uint32_t lo = d->start;
    uint32_t hi = d->count;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint32_t probe = mid;
        while (probe < hi && d->children[probe] == META_NIL) {
            probe++;
        }
        if (probe == hi) {
            hi = mid; /* only holes from mid to hi */
        } else if (meta__node_at(s, d->children[probe])->ino <= key) {
            lo = probe + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void dir_compact(struct meta__dir *d)
{
    uint32_t out = 0;

    for (uint32_t i = 0; i < d->count; i++) {
        if (d->children[i] != META_NIL)
            d->children[out++] = d->children[i];
    }
    d->count = out;
    d->holes = 0;
    d->start = 0;
}

/* Make room for `more` children now, so that adding them cannot fail later.
 * (A removal leaves a hole that is not reused until compaction.) */
int meta__dir_reserve(struct meta_shard *s, uint32_t dslot, uint32_t more)
{
    struct meta__dir *d = &s->dirs[dslot];

    if (d->count + more <= d->cap)
        return 0;
    if (d->holes >= more && d->holes > d->count / 4) {
        dir_compact(d);
        return 0;
    }
    uint32_t cap = d->cap < 8 ? 8 : d->cap + d->cap / 2;
    while (cap < d->count + more) {
        cap += cap / 2;
    }
    uint32_t *bigger = ar_realloc(d->children, cap * sizeof(*bigger));
    if (bigger == NULL)
        return -ENOMEM;
    d->children = bigger;
    d->cap = cap;
    return 0;
}

void meta__dir_add(struct meta_shard *s, uint32_t dslot, uint32_t child)
{
    struct meta__dir *d = &s->dirs[dslot];
    uint64_t key = meta__node_at(s, child)->ino;
    uint32_t at;

    AR_ASSERT(d->count < d->cap); /* reserved */
    /* New entries usually carry the largest key: append. The last slot is
     * never a hole (meta__dir_remove trims them). */
    if (d->count == 0 || meta__node_at(s, d->children[d->count - 1])->ino < key)
        at = d->count;
    else
        at = meta__dir_seek(s, d, key);
    memmove(&d->children[at + 1], &d->children[at], (d->count - at) * sizeof(uint32_t));
    d->children[at] = child;
    d->count++;
    d->live++;
}

void meta__dir_remove(struct meta_shard *s, uint32_t dslot, uint32_t child)
{
    struct meta__dir *d = &s->dirs[dslot];
    uint64_t key = meta__node_at(s, child)->ino;
    uint32_t at = meta__dir_seek(s, d, key - 1);

    while (at < d->count && d->children[at] != child) {
        at++; /* past holes, to the child itself */
    }
    AR_ASSERT(at < d->count);
    d->children[at] = META_NIL;
    d->holes++;
    d->live--;
    if (at == d->count - 1) { /* trailing holes cost nothing to drop */
        while (d->count > 0 && d->children[d->count - 1] == META_NIL) {
            d->count--;
            d->holes--;
        }
    }
    /* nor leading ones to step over: a seek scans a run of holes, and
     * removals in creation order (the oldest files first) make one long
     * run at the front */
    if (at == d->start) {
        while (d->start < d->count && d->children[d->start] == META_NIL) {
            d->start++;
        }
    }
    if (d->start > d->count)
        d->start = d->count;
    /* Seeks step over runs of holes, so keep them fewer than the children:
     * compacting in place costs O(count) once per count/2 removals. */
    if (d->holes > DIR_HOLES_MIN && d->holes > d->live)
        dir_compact(d);
}
