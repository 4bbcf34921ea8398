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
 * and a keep from an answer older than that is dropped.
 *
 * Kernel grants. What is kept may also be handed to the kernel to keep for
 * as long as the leader's promise lasts instead of the bound, so that stats
 * and path walks stop at the kernel (leased_grant). The mount's grants
 * threads take a grant back with a FUSE invalidation when a notice names
 * the inode (its attributes; and its granted name when names may have
 * moved), and takes all of them back when the promises are lost or the
 * leader has not answered lately (leased_void; mount.c says when). A name is
 * granted only for an inode with one name (a directory, or nlink 1), whose
 * entry remembers it (name_ix), so that a notice of the inode finds the
 * kernel's name to drop. While the kernel may hold an entry, or its
 * invalidation waits, the entry is pinned: never the victim of a keep. */
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "client.h"
#include "internal.h"

#define LEASED_KEEP_MS (META_LEASE_MS - META_LEASE_MS / 10)
#define WAYS           4u
#define GRANT_SLACK_MS 1000u /* the kernel starts counting a grant after the mount */
#define GRANT_SHARDS   LEASED_GRANT_SHARDS

struct leased_inode {
    uint64_t ino;        /* 0: empty */
    uint64_t gen;        /* the lease stamp's gen it was kept under */
    uint64_t names_seq;  /* what its names recorded; moves when they may have changed */
    uint64_t until_ms;
    uint64_t notice_seq; /* the last notice that named it */
    uint64_t kept;       /* when it was last kept (the table's count), to choose a victim */
    uint32_t shard;      /* whose leader promised */
    bool has_attr;
    bool is_pending;     /* queued for invalidation */
    uint32_t name_ix;    /* its granted name's index + 1; 0: none */
    uint64_t grant_until_ms; /* the kernel may hold it until then */
    uint64_t grant_gen;  /* the promises' gen when granted */
    struct meta_attr attr;
};

struct leased_name {
    uint64_t parent;     /* 0: empty */
    uint64_t ino;
    uint64_t gen;
    uint64_t names_seq;  /* its inode's, when kept */
    uint64_t kept;
    uint64_t grant_until_ms;
    uint64_t grant_gen;
    bool is_pending;
    uint8_t len;
    char name[LEASED_NAME_BYTES];
};

/* A name whose kernel entry a rename on this mount moved (a list). */
struct moved_name {
    struct moved_name *next;
    uint64_t parent;
    uint8_t len;
    char name[];
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
    /* grants: entries to invalidate, in two rings (LEASED_ATTRS: inodes'
     * indexes; LEASED_NAMES: slots plus names' indexes), each taken by a
     * thread of its own; an entry is in one at most once (is_pending), so
     * neither overflows */
    uint32_t slots;
    struct {
        uint32_t *refs;  /* slots of them */
        uint32_t head;
        uint32_t count;
    } rings[2];
    pthread_cond_t pending_cond;
    uint64_t granted_shards;                 /* a bit per shard with grants */
    uint64_t shard_until_ms[GRANT_SHARDS];   /* its last grant's end */
    uint64_t shard_ino[GRANT_SHARDS];        /* an inode it granted last */
    struct moved_name *moved;                /* names to take back besides the ring */
    uint64_t pushed;                         /* entries queued, ever (under mu) */
    uint64_t grants;                         /* atomic: grants made */
    uint64_t taken_back;                     /* atomic: invalidations queued */
};

static uint32_t inode_set(const struct leased *l, uint64_t ino)
{
    return (uint32_t)client_mix(ino) & (l->sets - 1);
}

static uint32_t name_set(const struct leased *l, uint64_t parent, const char *name, size_t len)
{
    uint64_t h = parent;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)name[i]) * 0x100000001B3ull;
    }
    return (uint32_t)client_mix(h) & (l->sets - 1);
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
    l->slots = slots;
    l->inodes = ar_calloc(slots, sizeof(*l->inodes));
    l->absent_notice_seq = ar_calloc(l->sets, sizeof(uint64_t));
    l->names = ar_calloc(slots, sizeof(*l->names));
    l->rings[LEASED_ATTRS].refs = ar_calloc(slots, sizeof(uint32_t));
    l->rings[LEASED_NAMES].refs = ar_calloc(slots, sizeof(uint32_t));
    if (l->inodes == NULL || l->absent_notice_seq == NULL || l->names == NULL ||
        l->rings[LEASED_ATTRS].refs == NULL || l->rings[LEASED_NAMES].refs == NULL) {
        ar_free(l->inodes);
        ar_free(l->absent_notice_seq);
        ar_free(l->names);
        ar_free(l->rings[LEASED_ATTRS].refs);
        ar_free(l->rings[LEASED_NAMES].refs);
        ar_free(l);
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->pending_cond, NULL);
    return l;
}

void leased_free(struct leased *l)
{
    if (l == NULL)
        return;
    while (l->moved != NULL) {
        struct moved_name *next = l->moved->next;
        ar_free(l->moved);
        l->moved = next;
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->pending_cond);
    ar_free(l->rings[LEASED_ATTRS].refs);
    ar_free(l->rings[LEASED_NAMES].refs);
    ar_free(l->inodes);
    ar_free(l->absent_notice_seq);
    ar_free(l->names);
    ar_free(l);
}

static bool is_pinned(uint64_t grant_until_ms, bool is_pending, uint64_t now)
{
    return is_pending || grant_until_ms > now;
}

/* Under mu: room for ino in its set (its entry, or the unpinned one kept
 * longest ago, whose notices the set then remembers), or NULL. */
static struct leased_inode *inode_room(struct leased *l, uint64_t ino, uint64_t now)
{
    uint32_t s = inode_set(l, ino);
    struct leased_inode *set = &l->inodes[s * WAYS];
    struct leased_inode *victim = NULL;

    for (uint32_t w = 0; w < WAYS; w++) {
        if (set[w].ino == ino)
            return &set[w];
        if (!is_pinned(set[w].grant_until_ms, set[w].is_pending, now) &&
            (victim == NULL || set[w].kept < victim->kept))
            victim = &set[w];
    }
    if (victim == NULL)
        return NULL;
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
    uint64_t now_ms = client_mono_ms();
    n = inode_room(l, a->ino, now_ms);
    if (n == NULL) {
        pthread_mutex_unlock(&l->mu);
        return; /* every way is granted to the kernel */
    }
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
    struct leased_name *e = NULL;
    if (name != NULL && len <= LEASED_NAME_BYTES) {
        e = name_find(l, parent, name, len);
        if (e == NULL) {
            struct leased_name *set = &l->names[name_set(l, parent, name, len) * WAYS];
            for (uint32_t w = 0; w < WAYS; w++) {
                if (!is_pinned(set[w].grant_until_ms, set[w].is_pending, now_ms) &&
                    (e == NULL || set[w].kept < e->kept))
                    e = &set[w];
            }
            if (e != NULL)
                *e = (struct leased_name){.parent = parent, .len = (uint8_t)len};
        }
    }
    if (e != NULL) {
        /* the same name may be granted or pending still: that stays */
        e->ino = a->ino;
        e->gen = stamp->gen;
        e->names_seq = n->names_seq;
        e->kept = l->kept;
        memcpy(e->name, name, len);
    }
    pthread_mutex_unlock(&l->mu);
}

/* Under mu: queue the inode entry (ref < slots) or name entry (slots +
 * its index) for invalidation, if the kernel may hold it. */
static void take_back(struct leased *l, uint32_t ref, uint64_t now)
{
    bool is_inode = ref < l->slots;
    struct leased_inode *n = is_inode ? &l->inodes[ref] : NULL;
    struct leased_name *e = is_inode ? NULL : &l->names[ref - l->slots];
    uint64_t *until = is_inode ? &n->grant_until_ms : &e->grant_until_ms;
    bool *is_pending = is_inode ? &n->is_pending : &e->is_pending;

    if (*is_pending || *until <= now)
        return;
    *is_pending = true;
    int kind = is_inode ? LEASED_ATTRS : LEASED_NAMES;
    AR_ASSERT(l->rings[kind].count < l->slots);
    l->rings[kind].refs[(l->rings[kind].head + l->rings[kind].count) % l->slots] = ref;
    l->rings[kind].count++;
    l->pushed++;
    __atomic_add_fetch(&l->taken_back, 1, __ATOMIC_RELAXED);
}

/* Under mu: a notice (seq) named ino; its names may have moved. */
static void inode_noticed(struct leased *l, uint64_t ino, uint64_t seq, bool is_renamed,
                          uint64_t now)
{
    struct leased_inode *n = inode_find(l, ino);

    if (n == NULL) {
        l->absent_notice_seq[inode_set(l, ino)] = seq; /* a keep of ino on its way waits */
        return;
    }
    n->notice_seq = seq;
    n->has_attr = false;
    take_back(l, (uint32_t)(n - l->inodes), now);
    if (is_renamed) {
        n->names_seq = ++l->names_seq;
        if (n->name_ix != 0 && l->names[n->name_ix - 1].ino == ino)
            take_back(l, l->slots + n->name_ix - 1, now);
    }
}

void leased_notice(void *arg, uint64_t seq, const uint64_t *changed, uint32_t changed_count,
                   const uint64_t *renamed, uint32_t renamed_count)
{
    struct leased *l = arg;
    uint64_t now = client_mono_ms();

    pthread_mutex_lock(&l->mu);
    uint64_t was_pushed = l->pushed;
    for (uint32_t i = 0; i < changed_count; i++) {
        inode_noticed(l, changed[i], seq, false, now);
    }
    for (uint32_t i = 0; i < renamed_count; i++) {
        inode_noticed(l, renamed[i], seq, true, now);
    }
    if (l->pushed > was_pushed)
        pthread_cond_broadcast(&l->pending_cond);
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
    uint64_t now = client_mono_ms();
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

static bool attr_equal(const struct meta_attr *x, const struct meta_attr *y)
{
    return x->ino == y->ino && x->mode == y->mode && x->nlink == y->nlink && x->uid == y->uid &&
           x->gid == y->gid && x->rdev == y->rdev && x->size == y->size &&
           x->atime_ns == y->atime_ns && x->mtime_ns == y->mtime_ns && x->ctime_ns == y->ctime_ns;
}

uint64_t leased_grant(struct leased *l, struct ar_client *mc, uint64_t parent, const char *name,
                      size_t len, const struct meta_attr *a, uint64_t bound_ms)
{
    uint64_t ino = a->ino;
    struct ar_lease_stamp st;
    uint64_t granted_ms = 0;

    if (l == NULL || len > LEASED_NAME_BYTES || bound_ms < LEASED_GRANT_BOUND_MIN_MS)
        return 0;
    ar_client_lease_stamp(mc, &st);
    uint64_t now = client_mono_ms();
    pthread_mutex_lock(&l->mu);
    struct leased_name *e = name != NULL ? name_find(l, parent, name, len) : NULL;
    struct leased_inode *n = inode_find(l, ino);
    bool is_grantable =
        n != NULL && n->has_attr && n->gen == st.gen && n->shard < GRANT_SHARDS &&
        n->until_ms > now + bound_ms &&
        /* what the kernel is about to be told is what stands now: a notice
         * and a newer keep since may have come between */
        attr_equal(&n->attr, a) &&
        (name == NULL ||
         (e != NULL && e->ino == ino && e->gen == st.gen && e->names_seq == n->names_seq &&
          (S_ISDIR(n->attr.mode) || n->attr.nlink == 1))) &&
        ar_client_lease_left(mc, n->shard, st.gen, bound_ms) > LEASED_VOID_LEFT(bound_ms);
    if (is_grantable) {
        uint64_t until = n->until_ms + GRANT_SLACK_MS;
        if (n->grant_until_ms < until)
            n->grant_until_ms = until;
        n->grant_gen = st.gen;
        if (e != NULL) {
            if (e->grant_until_ms < until)
                e->grant_until_ms = until;
            e->grant_gen = st.gen;
            n->name_ix = (uint32_t)(e - l->names) + 1;
        }
        l->granted_shards |= 1ull << n->shard;
        if (l->shard_until_ms[n->shard] < until)
            l->shard_until_ms[n->shard] = until;
        l->shard_ino[n->shard] = ino;
        granted_ms = n->until_ms - now;
        __atomic_add_fetch(&l->grants, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&l->mu);
    return granted_ms;
}

uint32_t leased_take_back(struct leased *l, int kind, struct leased_item *out, uint32_t max,
                          uint64_t wait_ms)
{
    uint32_t count = 0;
    bool has_moved = kind == LEASED_NAMES;

    pthread_mutex_lock(&l->mu);
    if (l->rings[kind].count == 0 && (!has_moved || l->moved == NULL) && wait_ms > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(wait_ms / 1000);
        until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->pending_cond, &l->mu, &until);
    }
    /* bounded by max */
    while (has_moved && count < max && l->moved != NULL) {
        struct moved_name *mv = l->moved;
        l->moved = mv->next;
        out[count] = (struct leased_item){.parent = mv->parent, .len = mv->len};
        memcpy(out[count++].name, mv->name, mv->len);
        ar_free(mv);
    }
    while (count < max && l->rings[kind].count > 0) {
        uint32_t ref = l->rings[kind].refs[l->rings[kind].head];
        l->rings[kind].head = (l->rings[kind].head + 1) % l->slots;
        l->rings[kind].count--;
        struct leased_item *it = &out[count++];
        if (ref < l->slots) {
            struct leased_inode *n = &l->inodes[ref];
            *it = (struct leased_item){.ino = n->ino};
            n->is_pending = false;
            n->grant_until_ms = 0;
        } else {
            struct leased_name *e = &l->names[ref - l->slots];
            *it = (struct leased_item){.parent = e->parent, .len = e->len};
            memcpy(it->name, e->name, e->len);
            e->is_pending = false;
            e->grant_until_ms = 0;
        }
    }
    pthread_mutex_unlock(&l->mu);
    return count;
}

struct moved_name *leased_moved_new(uint64_t parent, const char *name, size_t len)
{
    struct moved_name *mv = len < 256 ? ar_malloc(sizeof(*mv) + len) : NULL;

    if (mv != NULL) {
        mv->next = NULL;
        mv->parent = parent;
        mv->len = (uint8_t)len;
        memcpy(mv->name, name, len);
    }
    return mv;
}

void leased_moved_take_back(struct leased *l, struct moved_name *mv)
{
    if (l == NULL) {
        ar_free(mv);
        return;
    }
    pthread_mutex_lock(&l->mu);
    mv->next = l->moved;
    l->moved = mv;
    pthread_cond_broadcast(&l->pending_cond);
    pthread_mutex_unlock(&l->mu);
}

void leased_moved_drop(struct moved_name *mv)
{
    ar_free(mv);
}

void leased_wake(struct leased *l)
{
    pthread_mutex_lock(&l->mu);
    pthread_cond_broadcast(&l->pending_cond);
    pthread_mutex_unlock(&l->mu);
}

uint64_t leased_void(struct leased *l, uint64_t gen, uint64_t shards)
{
    uint64_t now = client_mono_ms();
    uint64_t voided = 0;

    pthread_mutex_lock(&l->mu);
    uint64_t was_pushed = l->pushed;
    /* bounded: one pass over both tables */
    for (uint32_t i = 0; i < l->slots; i++) {
        const struct leased_inode *n = &l->inodes[i];
        if (n->grant_until_ms > now && !n->is_pending &&
            (n->grant_gen != gen || (n->shard < GRANT_SHARDS && (shards >> n->shard) & 1)))
            take_back(l, i, now);
        const struct leased_name *e = &l->names[i];
        if (e->grant_until_ms > now && !e->is_pending && (e->grant_gen != gen || shards != 0))
            take_back(l, l->slots + i, now);
    }
    voided = l->pushed - was_pushed;
    l->granted_shards &= ~shards;
    if (voided > 0)
        pthread_cond_broadcast(&l->pending_cond);
    pthread_mutex_unlock(&l->mu);
    return voided;
}

uint64_t leased_granted_shards(struct leased *l, uint64_t ino_out[LEASED_GRANT_SHARDS])
{
    uint64_t now = client_mono_ms();

    pthread_mutex_lock(&l->mu);
    for (uint32_t s = 0; s < GRANT_SHARDS; s++) {
        if (((l->granted_shards >> s) & 1) && l->shard_until_ms[s] <= now)
            l->granted_shards &= ~(1ull << s); /* the kernel let all of them go */
        ino_out[s] = l->shard_ino[s];
    }
    uint64_t shards = l->granted_shards;
    pthread_mutex_unlock(&l->mu);
    return shards;
}

void leased_grant_counts(const struct leased *l, uint64_t *grants, uint64_t *taken_back)
{
    *grants = l != NULL ? __atomic_load_n(&l->grants, __ATOMIC_RELAXED) : 0;
    *taken_back = l != NULL ? __atomic_load_n(&l->taken_back, __ATOMIC_RELAXED) : 0;
}
