/* meta/lease.c - attribute leases (lease.h): two generations of an
 * open-addressing table from inode number to a mask of holders. Linear
 * probing; a removal shifts the run behind it back, so no tombstones. */
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "meta.h"

#define GEN_CAP_MIN 1024u

struct lease_gen {
    uint64_t *inos;  /* 0: an empty slot (no inode is numbered 0) */
    uint64_t *masks;
    uint32_t cap;    /* a power of two, or 0 before the first grant */
    uint32_t count;
};

struct lease_table {
    struct lease_gen gens[2]; /* [0] the newer */
    uint32_t max_inos;
    uint32_t first_cap;       /* the newer generation's first size: the older's */
};

static uint32_t slot_of(const struct lease_gen *g, uint64_t ino)
{
    /* splitmix64's finalizer: inode numbers come in runs */
    uint64_t h = ino;

    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    return (uint32_t)(h ^ (h >> 31)) & (g->cap - 1);
}

static void gen_free(struct lease_gen *g)
{
    ar_free(g->inos);
    ar_free(g->masks);
    *g = (struct lease_gen){.cap = 0};
}

/* The slot holding ino, or the empty slot where it would go. */
static uint32_t gen_find(const struct lease_gen *g, uint64_t ino)
{
    uint32_t i = slot_of(g, ino);

    /* bounded: the table is never more than half full */
    while (g->inos[i] != 0 && g->inos[i] != ino) {
        i = (i + 1) & (g->cap - 1);
    }
    return i;
}

/* first_cap: the size of a first table (a generation grows to about the
 * size of the last: rehashing it a step at a time would hold the loop) */
static bool gen_grow(struct lease_gen *g, uint32_t first_cap)
{
    uint32_t cap = g->cap == 0 ? first_cap : g->cap * 2;
    struct lease_gen n = {.inos = ar_calloc(cap, sizeof(uint64_t)),
                          .masks = ar_calloc(cap, sizeof(uint64_t)), .cap = cap};

    if (n.inos == NULL || n.masks == NULL) {
        gen_free(&n);
        return false;
    }
    for (uint32_t i = 0; i < g->cap; i++) {
        if (g->inos[i] == 0)
            continue;
        uint32_t j = gen_find(&n, g->inos[i]);
        n.inos[j] = g->inos[i];
        n.masks[j] = g->masks[i];
        n.count++;
    }
    gen_free(g);
    *g = n;
    return true;
}

static uint64_t gen_take(struct lease_gen *g, uint64_t ino)
{
    if (g->count == 0)
        return 0;
    uint32_t i = gen_find(g, ino);
    if (g->inos[i] == 0)
        return 0;
    uint64_t mask = g->masks[i];
    g->count--;
    /* shift back the entries after i that would not be found past a hole */
    for (uint32_t j = (i + 1) & (g->cap - 1); g->inos[j] != 0; j = (j + 1) & (g->cap - 1)) {
        uint32_t home = slot_of(g, g->inos[j]);
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        g->inos[i] = g->inos[j];
        g->masks[i] = g->masks[j];
        i = j;
    }
    g->inos[i] = 0;
    g->masks[i] = 0;
    return mask;
}

struct lease_table *lease_table_new(uint32_t max_inos)
{
    struct lease_table *t = ar_calloc(1, sizeof(*t));

    if (t != NULL) {
        t->max_inos = max_inos;
        t->first_cap = GEN_CAP_MIN;
    }
    return t;
}

void lease_table_free(struct lease_table *t)
{
    if (t == NULL)
        return;
    gen_free(&t->gens[0]);
    gen_free(&t->gens[1]);
    ar_free(t);
}

bool lease_grant(struct lease_table *t, uint64_t ino, uint32_t holder)
{
    struct lease_gen *g = &t->gens[0];

    if (ino == 0 || holder >= LEASE_HOLDERS_MAX)
        return false;
    uint32_t i = g->cap > 0 ? gen_find(g, ino) : 0;
    if (g->cap == 0 || g->inos[i] == 0) {
        if (g->count >= t->max_inos)
            return false;
        if ((uint64_t)(g->count + 1) * 2 > g->cap) {
            if (!gen_grow(g, t->first_cap))
                return false;
            i = gen_find(g, ino);
        }
        g->inos[i] = ino;
        g->count++;
    }
    g->masks[i] |= 1ull << holder;
    return true;
}

uint64_t lease_holders(const struct lease_table *t, uint64_t ino)
{
    uint64_t mask = 0;

    for (int k = 0; k < 2 && ino != 0; k++) {
        const struct lease_gen *g = &t->gens[k];
        if (g->count == 0)
            continue;
        uint32_t i = gen_find(g, ino);
        if (g->inos[i] == ino)
            mask |= g->masks[i];
    }
    return mask;
}

uint64_t lease_take(struct lease_table *t, uint64_t ino)
{
    if (ino == 0)
        return 0;
    return gen_take(&t->gens[0], ino) | gen_take(&t->gens[1], ino);
}

void lease_rotate(struct lease_table *t)
{
    t->first_cap = t->gens[0].cap > GEN_CAP_MIN ? t->gens[0].cap : GEN_CAP_MIN;
    gen_free(&t->gens[1]);
    t->gens[1] = t->gens[0];
    t->gens[0] = (struct lease_gen){.cap = 0};
}

void lease_clear(struct lease_table *t)
{
    gen_free(&t->gens[0]);
    gen_free(&t->gens[1]);
}

bool lease_is_empty(const struct lease_table *t)
{
    return t->gens[0].count == 0 && t->gens[1].count == 0;
}
