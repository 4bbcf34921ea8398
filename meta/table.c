/* meta/table.c - the hash structures of the shard: an index of u32 values
 * whose keys live elsewhere (in the nodes), and a small u32 -> u64 map for
 * side tables. Both use open addressing with linear probing and map a hash
 * to a slot by multiply-shift ("fastrange"), which works for any capacity, so
 * tables grow by 1.5x instead of doubling.
 * Invariant: count + tombstones < cap * 0.75; an empty slot ends every probe.
 * Thread: none; the shard is used by one thread at a time. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "shard.h"

#define TABLE_CAP_MIN     16u
#define TABLE_LOAD_MAX_PC 75u /* grow above this percentage of slots in use */

static uint64_t slot_of(uint64_t hash, uint64_t cap)
{
    __extension__ typedef unsigned __int128 u128; /* GCC and Clang; the product needs 128 bits */
    return (uint64_t)(((u128)hash * cap) >> 64);
}

static bool is_full(uint64_t used, uint64_t cap)
{
    return (used + 1) * 100 > cap * TABLE_LOAD_MAX_PC;
}

static uint64_t grown(uint64_t need)
{
    uint64_t cap = TABLE_CAP_MIN;

    while (need * 100 > cap * 50u) { /* land at 50% load: 1.5x from the top */
        cap += cap / 2;
    }
    return cap;
}

/* A mixer with full avalanche (the finaliser of MurmurHash3's 64-bit variant,
 * constants from SplitMix64). */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

uint64_t meta__hash_u64(uint64_t seed, uint64_t v)
{
    return mix(v ^ mix(seed));
}

uint64_t meta__hash_bytes(uint64_t seed, const void *data, uint32_t len)
{
    const uint8_t *p = data;
    uint64_t h = mix(seed ^ len);

    for (; len >= 8; len -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix(h ^ w) + 0x9e3779b97f4a7c15ull;
    }
    if (len > 0) {
        uint64_t w = 0;
        memcpy(&w, p, len);
        h = mix(h ^ w ^ ((uint64_t)len << 56));
    }
    return h;
}

/* Ask for transparent huge pages under the 2 MiB-aligned middle of a large
 * array: random probes into tens of MB then miss the TLB far less, and
 * filling it takes 512 times fewer page faults. Advice only: failure is fine. */
void meta__advise_huge(void *p, size_t bytes)
{
    const uintptr_t huge = 2u << 20;
    uintptr_t from = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t to = ((uintptr_t)p + bytes) & ~(huge - 1);

    if (to > from)
        madvise((void *)from, to - from, MADV_HUGEPAGE);
}

/* ---- index ----------------------------------------------------------------------
 * A slot holds value + 1 in its low 27 bits and, above them, 5 bits of the
 * value's hash: a probe skips most slots of other keys without reading their
 * node, which is a cache miss. An empty slot is 0, so a new table comes
 * zeroed from the kernel and needs no fill. */

#define TAG_SHIFT   27u
#define VALUE_MASK  ((1u << TAG_SHIFT) - 1)
#define SLOT_EMPTY  0u
#define SLOT_GONE   VALUE_MASK /* value + 1 never fills the field */
_Static_assert(META_VALUE_LIMIT < VALUE_MASK, "a stored value + 1 is neither empty nor gone");

/* The tag comes from the hash's low bits: slot_of() places by the high bits,
 * so slots near each other share those, and a tag made of them would tell
 * neighbours apart no better than chance. */
static uint32_t tagged(uint64_t hash, uint32_t value)
{
    return (uint32_t)(hash & 31u) << TAG_SHIFT | (value + 1);
}

static bool slot_is_used(uint32_t v)
{
    return v != SLOT_EMPTY && v != SLOT_GONE;
}

static uint32_t slot_value(uint32_t v)
{
    return (v & VALUE_MASK) - 1;
}

void meta__index_init(struct meta__index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

void meta__index_fini(struct meta__index *ix)
{
    ar_free(ix->slots);
    memset(ix, 0, sizeof(*ix));
}

uint32_t meta__index_find(const struct meta__index *ix, uint64_t hash, const void *key,
                          meta__index_match match, const void *ctx)
{
    if (ix->cap == 0)
        return META_NIL;
    uint64_t i = slot_of(hash, ix->cap);
    uint32_t tag = (uint32_t)(hash & 31u) << TAG_SHIFT;
    for (uint64_t probes = 0; probes < ix->cap; probes++) {
        uint32_t v = ix->slots[i];
        if (v == SLOT_EMPTY)
            return META_NIL;
        if (v != SLOT_GONE && (v & ~VALUE_MASK) == tag && match(ctx, slot_value(v), key))
            return slot_value(v);
        i = i + 1 == ix->cap ? 0 : i + 1;
    }
    return META_NIL;
}

void meta__index_prefetch(const struct meta__index *ix, uint64_t hash)
{
    if (ix->cap > 0)
        __builtin_prefetch(&ix->slots[slot_of(hash, ix->cap)]);
}

void meta__index_place(struct meta__index *fresh, uint64_t hash, uint32_t value)
{
    uint64_t i = slot_of(hash, fresh->cap);

    for (uint64_t probes = 0; probes < fresh->cap; probes++) {
        if (fresh->slots[i] == SLOT_EMPTY) {
            fresh->slots[i] = tagged(hash, value);
            fresh->count++;
            return;
        }
        i = i + 1 == fresh->cap ? 0 : i + 1;
    }
    AR_UNREACHABLE(); /* the load limit keeps a free slot */
}

void meta__index_place_flush(struct meta__index *fresh, struct meta__index_batch *b)
{
    for (uint32_t k = 0; k < b->count; k++) {
        __builtin_prefetch(&fresh->slots[slot_of(b->hashes[k], fresh->cap)], 1);
    }
    for (uint32_t k = 0; k < b->count; k++) {
        meta__index_place(fresh, b->hashes[k], b->values[k]);
    }
    b->count = 0;
}

void meta__index_place_batch(struct meta__index *fresh, struct meta__index_batch *b,
                             uint64_t hash, uint32_t value)
{
    b->hashes[b->count] = hash;
    b->values[b->count] = value;
    if (++b->count == META_INDEX_BATCH)
        meta__index_place_flush(fresh, b);
}

/* Move the index into a fresh table of cap slots; expect: how many values
 * the refill will place. */
static int index_resize(struct meta__index *ix, uint64_t cap, uint64_t expect,
                        const struct meta__index_owner *o)
{
    struct meta__index fresh = {.cap = cap};

    fresh.slots = ar_calloc(cap, sizeof(*fresh.slots)); /* SLOT_EMPTY */
    if (fresh.slots == NULL)
        return -ENOMEM;
    meta__advise_huge(fresh.slots, cap * sizeof(*fresh.slots));
    if (o->refill != NULL) {
        o->refill(o->ctx, &fresh);
    } else {
        for (uint64_t i = 0; i < ix->cap; i++) {
            uint32_t v = ix->slots[i];
            if (slot_is_used(v))
                meta__index_place(&fresh, o->rehash(o->ctx, slot_value(v)), slot_value(v));
        }
    }
    AR_ASSERT(fresh.count == expect);
    ar_free(ix->slots);
    *ix = fresh;
    return 0;
}

int meta__index_reserve(struct meta__index *ix, uint64_t more, const struct meta__index_owner *o)
{
    AR_ASSERT(more > 0);
    if (ix->cap > 0 && !is_full(ix->count + ix->tombstones + more - 1, ix->cap))
        return 0;
    return index_resize(ix, grown(ix->count + more), ix->count, o);
}

int meta__index_rebuild(struct meta__index *ix, uint64_t count, const struct meta__index_owner *o)
{
    AR_ASSERT(o->refill != NULL);
    return index_resize(ix, grown(count), count, o);
}

int meta__index_insert(struct meta__index *ix, uint64_t hash, uint32_t value,
                       const struct meta__index_owner *o)
{
    int rc = meta__index_reserve(ix, 1, o);

    AR_ASSERT(value < META_VALUE_LIMIT);
    if (rc != 0)
        return rc;
    uint64_t i = slot_of(hash, ix->cap);
    for (uint64_t probes = 0; probes < ix->cap; probes++) {
        if (!slot_is_used(ix->slots[i])) {
            ix->tombstones -= ix->slots[i] == SLOT_GONE;
            ix->slots[i] = tagged(hash, value);
            ix->count++;
            return 0;
        }
        i = i + 1 == ix->cap ? 0 : i + 1;
    }
    AR_UNREACHABLE();
}

void meta__index_remove(struct meta__index *ix, uint64_t hash, uint32_t value)
{
    AR_ASSERT(ix->cap > 0);
    uint64_t i = slot_of(hash, ix->cap);
    uint32_t want = tagged(hash, value);
    for (uint64_t probes = 0; probes < ix->cap; probes++) {
        AR_ASSERT(ix->slots[i] != SLOT_EMPTY); /* the value is present */
        if (ix->slots[i] == want) {
            uint64_t next = i + 1 == ix->cap ? 0 : i + 1;
            /* a slot before an empty one can simply be emptied */
            if (ix->slots[next] == SLOT_EMPTY) {
                ix->slots[i] = SLOT_EMPTY;
            } else {
                ix->slots[i] = SLOT_GONE;
                ix->tombstones++;
            }
            ix->count--;
            return;
        }
        i = i + 1 == ix->cap ? 0 : i + 1;
    }
    AR_UNREACHABLE();
}

uint64_t meta__index_bytes(const struct meta__index *ix)
{
    return ix->cap * sizeof(uint32_t);
}

/* ---- map -------------------------------------------------------------------------- */

void meta__map_init(struct meta__map *m)
{
    memset(m, 0, sizeof(*m));
}

void meta__map_fini(struct meta__map *m)
{
    ar_free(m->slots);
    memset(m, 0, sizeof(*m));
}

static void slot_set_val(struct meta__map_slot *slot, uint64_t v)
{
    memcpy(slot->val, &v, sizeof(v));
}

/* Keys are node indexes, which files made together (a restore's batch, a
 * copy) take in runs: four consecutive keys go to consecutive slots, so a
 * run of puts, and the checkpoint's reads after them, share cache lines
 * and pages instead of missing on each. */
static uint64_t map_slot(uint32_t key, uint64_t cap)
{
    uint64_t i = slot_of(meta__hash_u64(0, key >> 2), cap) + (key & 3u);

    return i < cap ? i : i - cap;
}

static uint64_t map_find(const struct meta__map *m, uint32_t key)
{
    uint64_t i = map_slot(key, m->cap);

    for (uint64_t probes = 0; probes < m->cap; probes++) {
        if (m->slots[i].key == META_NIL || m->slots[i].key == key)
            return i;
        i = i + 1 == m->cap ? 0 : i + 1;
    }
    return m->cap;
}

bool meta__map_get(const struct meta__map *m, uint32_t key, uint64_t *val)
{
    if (m->cap == 0)
        return false;
    uint64_t i = map_find(m, key);
    if (i == m->cap || m->slots[i].key != key)
        return false;
    *val = meta__map_slot_val(&m->slots[i]);
    return true;
}

static int map_resize(struct meta__map *m, uint64_t cap)
{
    struct meta__map bigger = {.cap = cap};

    bigger.slots = ar_malloc(cap * sizeof(*bigger.slots));
    if (bigger.slots == NULL)
        return -ENOMEM;
    meta__advise_huge(bigger.slots, cap * sizeof(*bigger.slots));
    for (uint64_t i = 0; i < cap; i++) {
        bigger.slots[i].key = META_NIL;
    }
    for (uint64_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key != META_NIL && m->slots[i].key != META_MAP_GONE) {
            uint64_t j = map_find(&bigger, m->slots[i].key);
            bigger.slots[j] = m->slots[i];
            bigger.count++;
        }
    }
    meta__map_fini(m);
    *m = bigger;
    return 0;
}

int meta__map_reserve(struct meta__map *m, uint32_t more)
{
    if (m->cap > 0 && !is_full(m->count + m->gone + more - 1, m->cap))
        return 0;
    return map_resize(m, grown(m->count + more));
}

int meta__map_put(struct meta__map *m, uint32_t key, uint64_t val)
{
    AR_ASSERT(key < META_MAP_GONE);
    int rc = meta__map_reserve(m, 1);
    if (rc != 0)
        return rc;
    uint64_t i = map_find(m, key);
    AR_ASSERT(i < m->cap);
    if (m->slots[i].key != key) {
        m->slots[i].key = key;
        m->count++;
    }
    slot_set_val(&m->slots[i], val);
    return 0;
}

void meta__map_replace(struct meta__map *m, uint32_t key, uint64_t val)
{
    AR_ASSERT(m->cap > 0);
    uint64_t i = map_find(m, key);
    AR_ASSERT(i < m->cap && m->slots[i].key == key);
    slot_set_val(&m->slots[i], val);
}

void meta__map_del(struct meta__map *m, uint32_t key)
{
    if (m->cap == 0)
        return;
    uint64_t i = map_find(m, key);
    if (i == m->cap || m->slots[i].key != key)
        return;
    m->slots[i].key = META_MAP_GONE;
    m->count--;
    m->gone++;
}

uint64_t meta__map_bytes(const struct meta__map *m)
{
    return m->cap * sizeof(*m->slots);
}
