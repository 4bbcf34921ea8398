/* client/leased.c - attributes and names the mount keeps under attribute
 * leases (internal.h), so that the kernel's lookups and getattrs of files
 * nobody changed are answered without a round trip to the leader.
 *
 * Two tables under one mutex, each of sets of WAYS entries (the entry kept
 * longest ago makes room): inodes (their attributes) and names (parent,
 * name) -> inode. What is kept is used only while:
 * - the metadata client's promises still stand (ar_client_lease_left:
 *   the stamp's gen, and an answer from the leader within the bound);
 * - the leader's promise has not run out (until_ms: META_LEASE_MS from
 *   before the request, less a margin for clocks);
 * - no notice named the inode since (has_attr; a notice that names may
 *   have changed moves names_seq, which every name of that inode recorded).
 * A name is only ever taken from an inode by a command that changes that
 * inode (an unlink's link count, a rename's ctime), so a name stands as
 * long as its inode's names_seq does.
 * An answer kept from a thread other than the client's may have been
 * overtaken by a notice: each inode entry, and each set for the inodes it
 * does not hold, remembers the last notice that named one (notice_seq),
 * and a keep from an answer older than that is dropped. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "internal.h"

#define LEASED_KEEP_MS (META_LEASE_MS - META_LEASE_MS / 10)
#define WAYS           4u

struct leased_inode {
    uint64_t ino;        /* 0: empty */
    uint64_t gen;        /* the lease stamp's gen it was kept under */
    uint64_t names_seq;  /* what its names recorded; moves when they may have changed */
    uint64_t until_ms;
    uint64_t notice_seq; /* the last notice that named it */
    uint64_t kept;       /* when it was last kept (the table's count), to choose a victim */
    uint32_t shard;      /* whose leader promised */
    bool has_attr;
    struct meta_attr attr;
};

struct leased_name {
    uint64_t parent;     /* 0: empty */
    uint64_t ino;
    uint64_t gen;
    uint64_t names_seq;  /* its inode's, when kept */
    uint64_t kept;
    uint8_t len;
    char name[LEASED_NAME_BYTES];
};

struct leased {
    pthread_mutex_t mu;
    uint32_t sets;       /* a power of two */
    struct leased_inode *inodes;    /* sets * WAYS */
    uint64_t *absent_notice_seq;    /* a set's: the last notice of an inode not in it */
    struct leased_name *names;      /* sets * WAYS */
    uint64_t names_seq;
    uint64_t kept;
    uint64_t hits;       /* atomic */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A 64-bit finalizer (splitmix64's): inode numbers come in runs. */
static uint64_t mix(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

static uint32_t inode_set(const struct leased *l, uint64_t ino)
{
    return (uint32_t)mix(ino) & (l->sets - 1);
}

static uint32_t name_set(const struct leased *l, uint64_t parent, const char *name, size_t len)
{
    uint64_t h = parent;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)name[i]) * 0x100000001B3ull;
    }
    return (uint32_t)mix(h) & (l->sets - 1);
}

/* Under mu: ino's entry, or NULL. */
static struct leased_inode *inode_find(struct leased *l, uint64_t ino)
{
    struct leased_inode *set = &l->inodes[inode_set(l, ino) * WAYS];

    for (uint32_t w = 0; w < WAYS; w++) {
        if (set[w].ino == ino)
            return &set[w];
    }
    return NULL;
}

static struct leased_name *name_find(struct leased *l, uint64_t parent, const char *name,
                                     size_t len)
{
    struct leased_name *set = &l->names[name_set(l, parent, name, len) * WAYS];

    for (uint32_t w = 0; w < WAYS; w++) {
        if (set[w].parent == parent && set[w].len == len && memcmp(set[w].name, name, len) == 0)
            return &set[w];
    }
    return NULL;
}

struct leased *leased_new(uint32_t slots)
{
    struct leased *l = ar_calloc(1, sizeof(*l));

    AR_ASSERT(slots >= WAYS && (slots & (slots - 1)) == 0);
    if (l == NULL)
        return NULL;
    l->sets = slots / WAYS;
    l->inodes = ar_calloc(slots, sizeof(*l->inodes));
    l->absent_notice_seq = ar_calloc(l->sets, sizeof(uint64_t));
    l->names = ar_calloc(slots, sizeof(*l->names));
    if (l->inodes == NULL || l->absent_notice_seq == NULL || l->names == NULL) {
        ar_free(l->inodes);
        ar_free(l->absent_notice_seq);
        ar_free(l->names);
        ar_free(l);
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void leased_free(struct leased *l)
{
    if (l == NULL)
        return;
    pthread_mutex_destroy(&l->mu);
    ar_free(l->inodes);
    ar_free(l->absent_notice_seq);
    ar_free(l->names);
    ar_free(l);
}

/* Under mu: room for ino in its set (its entry, or the one kept longest
 * ago, whose notices the set then remembers). */
static struct leased_inode *inode_room(struct leased *l, uint64_t ino)
{
    uint32_t s = inode_set(l, ino);
    struct leased_inode *set = &l->inodes[s * WAYS];
    struct leased_inode *victim = &set[0];

    for (uint32_t w = 0; w < WAYS; w++) {
        if (set[w].ino == ino)
            return &set[w];
        if (set[w].kept < victim->kept)
            victim = &set[w];
    }
    if (victim->notice_seq > l->absent_notice_seq[s])
        l->absent_notice_seq[s] = victim->notice_seq;
    *victim = (struct leased_inode){.ino = 0, .notice_seq = l->absent_notice_seq[s]};
    return victim;
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
     * it is recorded by now or it will drop what this keeps */
    ar_client_lease_stamp(mc, &now);
    struct leased_inode *n = inode_find(l, a->ino);
    uint64_t noticed = n != NULL ? n->notice_seq : l->absent_notice_seq[inode_set(l, a->ino)];
    if (now.gen != stamp->gen || noticed > stamp->seq) {
        pthread_mutex_unlock(&l->mu);
        return; /* the inode changed since the answer: it may be older */
    }
    n = inode_room(l, a->ino);
    if (n->ino != a->ino || n->gen != stamp->gen) {
        n->ino = a->ino;
        n->names_seq = ++l->names_seq;
    }
    n->gen = stamp->gen;
    n->until_ms = asked_ms + LEASED_KEEP_MS;
    n->kept = ++l->kept;
    n->shard = shard;
    n->attr = *a;
    n->has_attr = true;
    if (name != NULL && len <= LEASED_NAME_BYTES) {
        struct leased_name *e = name_find(l, parent, name, len);
        if (e == NULL) {
            struct leased_name *set = &l->names[name_set(l, parent, name, len) * WAYS];
            e = &set[0];
            for (uint32_t w = 1; w < WAYS; w++) {
                if (set[w].kept < e->kept)
                    e = &set[w];
            }
        }
        *e = (struct leased_name){.parent = parent, .ino = a->ino, .gen = stamp->gen,
                                  .names_seq = n->names_seq, .kept = l->kept,
                                  .len = (uint8_t)len};
        memcpy(e->name, name, len);
    }
    pthread_mutex_unlock(&l->mu);
}

/* Under mu: a notice (seq) named ino; its names may have moved. */
static void inode_noticed(struct leased *l, uint64_t ino, uint64_t seq, bool is_renamed)
{
    struct leased_inode *n = inode_find(l, ino);

    if (n == NULL) {
        l->absent_notice_seq[inode_set(l, ino)] = seq; /* a keep of ino on its way waits */
        return;
    }
    n->notice_seq = seq;
    n->has_attr = false;
    if (is_renamed)
        n->names_seq = ++l->names_seq;
}

void leased_notice(void *arg, uint64_t seq, const uint64_t *changed, uint32_t changed_count,
                   const uint64_t *renamed, uint32_t renamed_count)
{
    struct leased *l = arg;

    pthread_mutex_lock(&l->mu);
    for (uint32_t i = 0; i < changed_count; i++) {
        inode_noticed(l, changed[i], seq, false);
    }
    for (uint32_t i = 0; i < renamed_count; i++) {
        inode_noticed(l, renamed[i], seq, true);
    }
    pthread_mutex_unlock(&l->mu);
}

/* Under mu: ino's kept attributes, if they may be used now (but for the
 * client's promises, which the caller asks after). */
static const struct leased_inode *usable(struct leased *l, uint64_t ino, uint64_t gen,
                                         uint64_t now)
{
    const struct leased_inode *n = inode_find(l, ino);

    return n != NULL && n->has_attr && n->gen == gen && now < n->until_ms ? n : NULL;
}

/* What is kept of parent/name (name not NULL) or of ino, if it may be used now. */
static bool answer(struct leased *l, struct ar_client *mc, uint64_t parent, const char *name,
                   size_t len, uint64_t ino, uint64_t bound_ms, struct meta_attr *out,
                   uint64_t *left_ms)
{
    struct ar_lease_stamp st;
    uint32_t shard = 0;
    bool is_kept = false;

    if (l == NULL || len > LEASED_NAME_BYTES || bound_ms == 0)
        return false;
    ar_client_lease_stamp(mc, &st);
    uint64_t now = mono_ms();
    pthread_mutex_lock(&l->mu);
    const struct leased_name *e = name != NULL ? name_find(l, parent, name, len) : NULL;
    if (name == NULL || (e != NULL && e->gen == st.gen)) {
        const struct leased_inode *n = usable(l, name != NULL ? e->ino : ino, st.gen, now);
        if (n != NULL && (name == NULL || n->names_seq == e->names_seq)) {
            *out = n->attr;
            shard = n->shard;
            is_kept = true;
        }
    }
    pthread_mutex_unlock(&l->mu);
    if (is_kept)
        *left_ms = ar_client_lease_left(mc, shard, st.gen, bound_ms);
    if (!is_kept || *left_ms == 0)
        return false;
    __atomic_add_fetch(&l->hits, 1, __ATOMIC_RELAXED);
    return true;
}

bool leased_lookup(struct leased *l, struct ar_client *mc, uint64_t parent, const char *name,
                   size_t len, uint64_t bound_ms, struct meta_attr *out, uint64_t *left_ms)
{
    return answer(l, mc, parent, name, len, 0, bound_ms, out, left_ms);
}

bool leased_getattr(struct leased *l, struct ar_client *mc, uint64_t ino, uint64_t bound_ms,
                    struct meta_attr *out, uint64_t *left_ms)
{
    return answer(l, mc, 0, NULL, 0, ino, bound_ms, out, left_ms);
}

uint64_t leased_hits(const struct leased *l)
{
    return l != NULL ? __atomic_load_n(&l->hits, __ATOMIC_RELAXED) : 0;
}
