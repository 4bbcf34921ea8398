/* raft/log.c - the entries of a node in memory: a ring from the compaction
 * point to the last index. The host keeps the durable copy (seglog.c); this
 * one serves appends to followers and hands committed entries to apply.
 * Invariants: see struct raft__log. Thread: none. */
#include "core.h"

int raft__log_init(struct raft__log *l, raft_index offset, raft_term offset_term,
                   uint64_t offset_hlc_ns)
{
    *l = (struct raft__log){.offset = offset, .offset_term = offset_term,
                            .offset_hlc_ns = offset_hlc_ns, .stable = offset, .commit = offset,
                            .applied = offset};
    l->cap = 64;
    l->ring = raft__calloc(l->cap, sizeof(*l->ring));
    return l->ring != NULL ? 0 : -ENOMEM;
}

void raft__log_fini(struct raft__log *l)
{
    for (uint64_t i = 0; i < l->count; i++) {
        raft_free(l->ring[(l->head + i) & (l->cap - 1)].data);
    }
    raft_free(l->ring);
    *l = (struct raft__log){.ring = NULL};
}

raft_index raft__log_last(const struct raft__log *l)
{
    return l->offset + l->count;
}

struct raft_entry *raft__log_at(const struct raft__log *l, raft_index index)
{
    RAFT_ASSERT(index > l->offset);
    RAFT_ASSERT(index <= raft__log_last(l));
    return &l->ring[(l->head + (index - l->offset - 1)) & (l->cap - 1)];
}

raft_term raft__log_last_term(const struct raft__log *l)
{
    return l->count == 0 ? l->offset_term : raft__log_at(l, raft__log_last(l))->term;
}

uint64_t raft__log_last_hlc(const struct raft__log *l)
{
    return l->count == 0 ? l->offset_hlc_ns : raft__log_at(l, raft__log_last(l))->hlc_ns;
}

bool raft__log_term(const struct raft__log *l, raft_index index, raft_term *term)
{
    if (index == l->offset) {
        *term = l->offset_term;
        return true;
    }
    if (index < l->offset || index > raft__log_last(l))
        return false;
    *term = raft__log_at(l, index)->term;
    return true;
}

int raft__log_reserve(struct raft__log *l, uint64_t more)
{
    if (l->count + more <= l->cap)
        return 0;
    uint64_t cap = l->cap;
    while (cap < l->count + more) {
        cap *= 2;
    }
    if (cap > (1ull << 31))
        return -ENOMEM;
    struct raft_entry *ring = raft__calloc(cap, sizeof(*ring));
    if (ring == NULL)
        return -ENOMEM;
    for (uint64_t i = 0; i < l->count; i++) {
        ring[i] = l->ring[(l->head + i) & (l->cap - 1)];
    }
    raft_free(l->ring);
    l->ring = ring;
    l->cap = (uint32_t)cap;
    l->head = 0;
    return 0;
}

int raft__log_append(struct raft__log *l, const struct raft_entry *e)
{
    RAFT_ASSERT(e->index == raft__log_last(l) + 1);
    RAFT_ASSERT(e->term >= raft__log_last_term(l));
    RAFT_ASSERT(e->hlc_ns > raft__log_last_hlc(l) || raft__log_last(l) == 0);
    int rc = raft__log_reserve(l, 1);
    if (rc != 0)
        return rc;
    l->ring[(l->head + l->count) & (l->cap - 1)] = *e;
    l->count++;
    if (e->index > l->commit)
        l->uncommitted_bytes += e->size;
    return 0;
}
