/* client/leased.c - attributes and names the mount keeps under attribute
 * leases (internal.h), so that the kernel's lookups and getattrs of files
 * nobody changed are answered without a round trip to the leader.
 *
 * Two direct-mapped tables under one mutex: inodes (their attributes) and
 * names (parent, name) -> inode. A slot another inode or name takes costs
 * only a later round trip. What is kept is used only while:
 * - the metadata client's promises still stand (ar_client_lease_holds:
 *   the stamp's gen, and an answer from the leader within the bound);
 * - the leader's promise has not run out (until_ms: META_LEASE_MS from
 *   before the request, less a margin for clocks);
 * - no notice named the inode since (has_attr; a notice that names may
 *   have changed moves names_seq, which every name of that inode recorded).
 * A name is only ever taken from an inode by a command that changes that
 * inode (an unlink's link count, a rename's ctime), so a name stands as
 * long as its inode's names_seq does. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "internal.h"

#define LEASED_KEEP_MS (META_LEASE_MS - META_LEASE_MS / 10)

struct leased_inode {
    uint64_t ino;        /* 0: empty */
    uint64_t gen;        /* the lease stamp's gen it was kept under */
    uint64_t names_seq;  /* what its names recorded; moves when they may have changed */
    uint64_t until_ms;
    uint64_t notice_seq; /* the last notice that named an inode of this slot */
    uint32_t shard;      /* whose leader promised */
    bool has_attr;
    struct meta_attr attr;
};

struct leased_name {
    uint64_t parent;     /* 0: empty */
    uint64_t ino;
    uint64_t gen;
    uint64_t names_seq;  /* its inode's, when kept */
    uint8_t len;
    char name[LEASED_NAME_BYTES];
};

struct leased {
    pthread_mutex_t mu;
    uint32_t slots;      /* a power of two */
    struct leased_inode *inodes;
    struct leased_name *names;
    uint64_t names_seq;
    uint64_t hits;       /* atomic */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t inode_slot(const struct leased *l, uint64_t ino)
{
    return (uint32_t)((ino * 0x9E3779B97F4A7C15ull) >> 32) & (l->slots - 1);
}

static uint32_t name_slot(const struct leased *l, uint64_t parent, const char *name, size_t len)
{
    uint64_t h = parent * 0x9E3779B97F4A7C15ull;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)name[i]) * 0x100000001B3ull;
    }
    h ^= h >> 33; /* names that differ in their last bytes: apart in the high bits too */
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    return (uint32_t)h & (l->slots - 1);
}

struct leased *leased_new(uint32_t slots)
{
    struct leased *l = ar_calloc(1, sizeof(*l));

    AR_ASSERT(slots > 0 && (slots & (slots - 1)) == 0);
    if (l == NULL)
        return NULL;
    l->slots = slots;
    l->inodes = ar_calloc(slots, sizeof(*l->inodes));
    l->names = ar_calloc(slots, sizeof(*l->names));
    if (l->inodes == NULL || l->names == NULL) {
        leased_free(l);
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void leased_free(struct leased *l)
{
    if (l == NULL)
        return;
    if (l->inodes != NULL && l->names != NULL)
        pthread_mutex_destroy(&l->mu);
    ar_free(l->inodes);
    ar_free(l->names);
    ar_free(l);
}

void leased_keep(struct leased *l, struct ar_client *mc, uint32_t shard, const struct meta_attr *a,
                 const struct ar_lease_stamp *stamp, uint64_t asked_ms, uint64_t parent,
                 const char *name, size_t len)
{
    struct ar_lease_stamp now;

    if (l == NULL || a->ino == 0)
        return;
    pthread_mutex_lock(&l->mu);
    /* under mu: a notice counts itself (seq) before it takes mu, so either
     * it is recorded in the slot by now or it will drop what this keeps */
    ar_client_lease_stamp(mc, &now);
    struct leased_inode *n = &l->inodes[inode_slot(l, a->ino)];
    if (now.gen != stamp->gen || n->notice_seq > stamp->seq) {
        pthread_mutex_unlock(&l->mu);
        return; /* the inode changed since the answer: it may be older */
    }
    if (n->ino != a->ino || n->gen != stamp->gen) {
        n->ino = a->ino;
        n->names_seq = ++l->names_seq;
    }
    n->gen = stamp->gen;
    n->until_ms = asked_ms + LEASED_KEEP_MS;
    n->shard = shard;
    n->attr = *a;
    n->has_attr = true;
    if (name != NULL && len <= LEASED_NAME_BYTES) {
        struct leased_name *e = &l->names[name_slot(l, parent, name, len)];
        *e = (struct leased_name){.parent = parent, .ino = a->ino, .gen = stamp->gen,
                                  .names_seq = n->names_seq, .len = (uint8_t)len};
        memcpy(e->name, name, len);
    }
    pthread_mutex_unlock(&l->mu);
}

void leased_notice(void *arg, uint64_t seq, const uint64_t *changed, uint32_t changed_count,
                   const uint64_t *renamed, uint32_t renamed_count)
{
    struct leased *l = arg;

    pthread_mutex_lock(&l->mu);
    for (uint32_t i = 0; i < changed_count; i++) {
        struct leased_inode *n = &l->inodes[inode_slot(l, changed[i])];
        n->notice_seq = seq; /* whoever holds the slot: a keep of changed[i] waits */
        if (n->ino == changed[i])
            n->has_attr = false;
    }
    for (uint32_t i = 0; i < renamed_count; i++) {
        struct leased_inode *n = &l->inodes[inode_slot(l, renamed[i])];
        n->notice_seq = seq;
        if (n->ino == renamed[i]) {
            n->has_attr = false;
            n->names_seq = ++l->names_seq;
        }
    }
    pthread_mutex_unlock(&l->mu);
}

/* Under mu: ino's kept attributes, if they may be used now (but for the
 * client's promises, which the caller asks after). */
static const struct leased_inode *usable(const struct leased *l, uint64_t ino, uint64_t gen,
                                         uint64_t now)
{
    const struct leased_inode *n = &l->inodes[inode_slot(l, ino)];

    return n->ino == ino && n->has_attr && n->gen == gen && now < n->until_ms ? n : NULL;
}

bool leased_lookup(struct leased *l, struct ar_client *mc, uint64_t parent, const char *name,
                   size_t len, uint64_t bound_ms, struct meta_attr *out)
{
    struct ar_lease_stamp st;
    uint32_t shard = 0;
    bool is_kept = false;

    if (l == NULL || len > LEASED_NAME_BYTES || bound_ms == 0)
        return false;
    ar_client_lease_stamp(mc, &st);
    uint64_t now = mono_ms();
    pthread_mutex_lock(&l->mu);
    const struct leased_name *e = &l->names[name_slot(l, parent, name, len)];
    if (e->parent == parent && e->len == len && e->gen == st.gen && memcmp(e->name, name, len) == 0) {
        const struct leased_inode *n = usable(l, e->ino, st.gen, now);
        if (n != NULL && n->names_seq == e->names_seq) {
            *out = n->attr;
            shard = n->shard;
            is_kept = true;
        }
    }
    pthread_mutex_unlock(&l->mu);
    if (!is_kept || !ar_client_lease_holds(mc, shard, st.gen, bound_ms))
        return false;
    __atomic_add_fetch(&l->hits, 1, __ATOMIC_RELAXED);
    return true;
}

bool leased_getattr(struct leased *l, struct ar_client *mc, uint64_t ino, uint64_t bound_ms,
                    struct meta_attr *out)
{
    struct ar_lease_stamp st;
    uint32_t shard = 0;
    bool is_kept = false;

    if (l == NULL || bound_ms == 0)
        return false;
    ar_client_lease_stamp(mc, &st);
    uint64_t now = mono_ms();
    pthread_mutex_lock(&l->mu);
    const struct leased_inode *n = usable(l, ino, st.gen, now);
    if (n != NULL) {
        *out = n->attr;
        shard = n->shard;
        is_kept = true;
    }
    pthread_mutex_unlock(&l->mu);
    if (!is_kept || !ar_client_lease_holds(mc, shard, st.gen, bound_ms))
        return false;
    __atomic_add_fetch(&l->hits, 1, __ATOMIC_RELAXED);
    return true;
}

uint64_t leased_hits(const struct leased *l)
{
    return l != NULL ? __atomic_load_n(&l->hits, __ATOMIC_RELAXED) : 0;
}
