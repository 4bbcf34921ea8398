/* meta/shard.c - a shard's life (new, free), its lookups by ino and by name,
 * times and side tables, the state hash and the statistics.
 * Thread: none; one thread uses a shard at a time. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shard.h"

/* ---- lookups ------------------------------------------------------------------- */

struct name_key {
    uint32_t parent;
    const char *name;
    uint32_t len;
};

static uint64_t name_hash(const struct meta_shard *s, uint32_t parent, const void *name,
                          uint32_t len)
{
    return meta__hash_bytes(meta__hash_u64(s->seed, parent), name, len);
}

static bool name_match(const void *ctx, uint32_t v, const void *key)
{
    const struct meta_shard *s = ctx;
    const struct name_key *k = key;
    const struct meta__node *n = meta__node_at(s, v);
    uint32_t len;
    const uint8_t *bytes;

    if (n->parent != k->parent)
        return false;
    bytes = meta__name_bytes(s, n->name, &len);
    return len == k->len && memcmp(bytes, k->name, len) == 0;
}

static uint64_t name_rehash(const void *ctx, uint32_t v)
{
    const struct meta_shard *s = ctx;
    const struct meta__node *n = meta__node_at(s, v);
    uint32_t len;
    const uint8_t *bytes = meta__name_bytes(s, n->name, &len);

    return name_hash(s, n->parent, bytes, len);
}

/* Numbers are given in runs (a batch of creates, a restore's files), so
 * four consecutive ones land in neighbouring slots of by_ino: a run of
 * inserts or finds shares cache lines and pages instead of missing on
 * each. The high bits place a number (slot_of()), the low five tag it:
 * the group's offset goes into both. */
uint64_t meta__ino_hash(const struct meta_shard *s, uint64_t ino)
{
    uint64_t group = meta__hash_u64(s->seed, ino >> 2);

    return (group + ((ino & 3u) << 40)) ^ (ino & 3u);
}

static bool ino_match(const void *ctx, uint32_t v, const void *key)
{
    return meta__node_at(ctx, v)->ino == *(const uint64_t *)key;
}

static uint64_t ino_rehash(const void *ctx, uint32_t v)
{
    const struct meta_shard *s = ctx;

    return meta__ino_hash(s, meta__node_at(s, v)->ino);
}

uint32_t meta__find_ino(const struct meta_shard *s, uint64_t ino)
{
    return meta__index_find(&s->by_ino, meta__ino_hash(s, ino), &ino, ino_match, s);
}

uint32_t meta__find_name(const struct meta_shard *s, uint32_t dir, const char *name, uint32_t len)
{
    uint64_t unused;

    return meta__find_name_hashed(s, dir, name, len, &unused);
}

uint32_t meta__find_name_hashed(const struct meta_shard *s, uint32_t dir, const char *name,
                                uint32_t len, uint64_t *hash)
{
    struct name_key k = {dir, name, len};

    *hash = name_hash(s, dir, name, len);
    return meta__index_find(&s->by_name, *hash, &k, name_match, s);
}

/* Growth refills the two large indexes from the node pages in order: a
 * sequential scan, where walking the old slots would take a cache miss on
 * every node (and name). The slots they land in are random, so they go in
 * batches whose slots are fetched together (meta__index_place_batch()). */
static void ino_refill(const void *ctx, struct meta__index *fresh)
{
    const struct meta_shard *s = ctx;
    struct meta__index_batch b = {.count = 0};

    for (uint32_t i = 0; i < s->node_count; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        if (meta__node_has(n, NODE_LIVE) && !meta__node_has(n, NODE_ALIAS))
            meta__index_place_batch(fresh, &b, meta__ino_hash(s, n->ino), i);
    }
    meta__index_place_flush(fresh, &b);
}

static void name_refill(const void *ctx, struct meta__index *fresh)
{
    const struct meta_shard *s = ctx;
    struct meta__index_batch b = {.count = 0};

    for (uint32_t i = 0; i < s->node_count; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        /* unnamed: the root, a nameless inode, or one a load has not named yet */
        if (meta__node_has(n, NODE_LIVE) && n->name != META_NIL && i != s->root &&
            !meta__node_has(n, NODE_NAMELESS))
            meta__index_place_batch(fresh, &b, name_rehash(s, i), i);
    }
    meta__index_place_flush(fresh, &b);
}

static struct meta__index_owner ino_owner(const struct meta_shard *s)
{
    return (struct meta__index_owner){.rehash = ino_rehash, .refill = ino_refill, .ctx = s};
}

static struct meta__index_owner name_owner(const struct meta_shard *s)
{
    return (struct meta__index_owner){.rehash = name_rehash, .refill = name_refill, .ctx = s};
}

void meta_shard_prefetch(const struct meta_shard *s, const struct meta_cmd *cmd)
{
    AR_ASSERT(s != NULL && cmd != NULL);
    meta__index_prefetch(&s->by_ino, meta__ino_hash(s, cmd->ino));
    if (cmd->new_ino != 0)
        meta__index_prefetch(&s->by_ino, meta__ino_hash(s, cmd->new_ino));
    if (cmd->name_len == 0 || cmd->name_len > META_NAME_BYTES_MAX || cmd->name == NULL)
        return;
    /* the directory is usually hot: a batch tends to stay in one */
    uint32_t dir = meta__find_ino(s, cmd->ino);
    if (dir != META_NIL)
        meta__index_prefetch(&s->by_name, name_hash(s, dir, cmd->name, cmd->name_len));
}

void meta__prefetch_name(const struct meta_shard *s, uint32_t dir, const char *name, uint32_t len)
{
    meta__index_prefetch(&s->by_name, name_hash(s, dir, name, len));
}

int meta__reserve_indexes(struct meta_shard *s, uint32_t inodes, uint32_t names)
{
    struct meta__index_owner io = ino_owner(s);
    struct meta__index_owner no = name_owner(s);
    int rc = inodes > 0 ? meta__index_reserve(&s->by_ino, inodes, &io) : 0;

    if (rc == 0 && names > 0)
        rc = meta__index_reserve(&s->by_name, names, &no);
    return rc;
}

int meta__reindex_inos(struct meta_shard *s)
{
    struct meta__index_owner io = ino_owner(s);

    return meta__index_rebuild(&s->by_ino, s->inode_count, &io);
}

int meta__reindex_names(struct meta_shard *s)
{
    struct meta__index_owner no = name_owner(s);

    return meta__index_rebuild(&s->by_name, s->entry_count, &no);
}

void meta__index_ino(struct meta_shard *s, uint32_t node, bool is_in)
{
    uint64_t h = ino_rehash(s, node);
    struct meta__index_owner io = ino_owner(s);

    if (is_in) {
        int rc = meta__index_insert(&s->by_ino, h, node, &io);
        AR_ASSERT(rc == 0); /* reserved */
    } else {
        meta__index_remove(&s->by_ino, h, node);
    }
}

void meta__index_name(struct meta_shard *s, uint32_t node, bool is_in)
{
    meta__index_name_hashed(s, node, is_in, name_rehash(s, node));
}

void meta__index_name_hashed(struct meta_shard *s, uint32_t node, bool is_in, uint64_t h)
{

    struct meta__index_owner no = name_owner(s);

    if (is_in) {
        int rc = meta__index_insert(&s->by_name, h, node, &no);
        AR_ASSERT(rc == 0); /* reserved */
    } else {
        meta__index_remove(&s->by_name, h, node);
    }
}

/* ---- inodes ------------------------------------------------------------------ */

uint32_t meta__inode_of(const struct meta_shard *s, uint32_t entry)
{
    const struct meta__node *n = meta__node_at(s, entry);

    return meta__node_has(n, NODE_ALIAS) ? (uint32_t)n->aux : entry;
}

uint32_t meta__mode(const struct meta_shard *s, uint32_t inode)
{
    return meta__attr_of(s, meta__node_at(s, inode)->attr)->mode;
}

int64_t meta__ctime(const struct meta_shard *s, uint32_t inode)
{
    const struct meta__node *n = meta__node_at(s, inode);
    uint64_t v;

    if (meta__node_has(n, NODE_HAS_CTIME) && meta__map_get(&s->ctimes, inode, &v))
        return (int64_t)v;
    return n->mtime_ns;
}

/* Room for `more` side-table entries, so setting times cannot fail. */
int meta__reserve_side(struct meta_shard *s, uint32_t more)
{
    return meta__map_reserve(&s->ctimes, more);
}

void meta__set_times(struct meta_shard *s, uint32_t inode, const int64_t *mtime_ns,
                     int64_t ctime_ns)
{
    struct meta__node *n = meta__node_at(s, inode);

    meta__dirty_inode(s, inode); /* every inode change sets a time */
    if (mtime_ns != NULL)
        n->mtime_ns = *mtime_ns;
    if (ctime_ns == n->mtime_ns) {
        /* the flag says whether the side table holds one: a lookup of a
         * big table is a cache miss, spared for the common case */
        if (meta__node_has(n, NODE_HAS_CTIME))
            meta__map_del(&s->ctimes, inode);
        meta__node_flag(n, NODE_HAS_CTIME, false);
        return;
    }
    int rc = meta__map_put(&s->ctimes, inode, (uint64_t)ctime_ns);
    AR_ASSERT(rc == 0); /* meta__reserve_side() made room */
    meta__node_flag(n, NODE_HAS_CTIME, true);
}

struct meta__ext *meta__ext_of(const struct meta_shard *s, uint32_t inode)
{
    uint64_t v;

    if (!meta__node_has(meta__node_at(s, inode), NODE_HAS_EXT) || !meta__map_get(&s->exts, inode, &v))
        return NULL;
    return (struct meta__ext *)(uintptr_t)v;
}

void meta__attr_fill(const struct meta_shard *s, uint32_t inode, struct meta_attr *out)
{
    const struct meta__node *n = meta__node_at(s, inode);
    const struct meta__attr_class *a = meta__attr_of(s, n->attr);
    const struct meta__ext *x = meta__ext_of(s, inode);

    AR_ASSERT(!meta__node_has(n, NODE_ALIAS));
    *out = (struct meta_attr){
        .ino = n->ino,
        .mode = a->mode,
        .nlink = meta__node_nlink(n),
        .uid = a->uid,
        .gid = a->gid,
        .rdev = x != NULL ? x->rdev : 0,
        .size = S_ISDIR(a->mode) ? 4096 : n->size,
        .atime_ns = n->atime_ns,
        .mtime_ns = n->mtime_ns,
        .ctime_ns = meta__ctime(s, inode),
    };
}

/* Free everything an inode holds: its node must already be out of the
 * indexes and its names gone. */
void meta__inode_free(struct meta_shard *s, uint32_t inode)
{
    struct meta__node *n = meta__node_at(s, inode);
    struct meta__ext *x = meta__ext_of(s, inode);

    meta__dirty_inode(s, inode);
    if (x != NULL) {
        ar_free(x->target);
        ar_free(x->xattrs);
        ar_free(x);
        meta__map_del(&s->exts, inode);
    }
    meta__map_del(&s->ctimes, inode);
    if (S_ISREG(meta__mode(s, inode))) {
        s->file_bytes -= n->size;
        meta__data_free(s, inode);
    }
    if (S_ISDIR(meta__mode(s, inode)))
        meta__dir_release(s, (uint32_t)n->aux);
    meta__attr_put(s, n->attr);
    meta__node_release(s, inode);
    s->inode_count--;
}

/* ---- life ---------------------------------------------------------------------- */

int meta_shard_new(const struct meta_shard_config *cfg, struct meta_shard **out)
{
    struct meta_shard *s = ar_calloc(1, sizeof(*s));
    uint32_t root;
    uint32_t dslot;
    int rc;

    if (s == NULL)
        return -ENOMEM;
    AR_ASSERT(cfg->root_ino != 0);
    s->seed = meta__hash_u64(0x6172626f72ull, cfg->root_ino); /* "arbor" */
    s->node_free = META_NIL;
    s->attr_free = META_NIL;
    s->dir_free = META_NIL;
    memset(s->name_free, 0xff, sizeof(s->name_free));
    meta__index_init(&s->by_ino);
    meta__index_init(&s->by_name);
    meta__index_init(&s->attr_index);
    meta__map_init(&s->ctimes);
    meta__map_init(&s->exts);
    meta__map_init(&s->held);
    rc = meta__info_init(s, &cfg->self);
    if (rc == 0)
        rc = meta__node_alloc(s, &root);
    if (rc == 0)
        rc = meta__dir_alloc(s, &dslot);
    if (rc == 0)
        rc = meta__reserve_indexes(s, 1, 0);
    struct meta__node *n = rc == 0 ? meta__node_at(s, root) : NULL;
    if (rc == 0)
        rc = meta__attr_get(s, S_IFDIR | (cfg->root_mode & 07777), cfg->root_uid, cfg->root_gid,
                            &n->attr);
    if (rc != 0) {
        meta_shard_free(s);
        return rc;
    }
    n->ino = cfg->root_ino;
    s->ino_high = cfg->root_ino;
    n->parent = root;
    n->name = META_NIL;
    n->aux = dslot;
    n->mtime_ns = cfg->created_ns;
    n->atime_ns = cfg->created_ns;
    meta__node_flag(n, NODE_LIVE, true);
    meta__node_set_nlink(n, 2);
    meta__index_ino(s, root, true);
    s->root = root;
    s->inode_count = 1;
    *out = s;
    return 0;
}

void meta_shard_free(struct meta_shard *s)
{
    if (s == NULL)
        return;
    for (uint64_t i = 0; i < s->exts.cap; i++) {
        uint32_t key = s->exts.slots[i].key;
        if (key != META_NIL && key != META_MAP_GONE) {
            uint64_t v = meta__map_slot_val(&s->exts.slots[i]);
            struct meta__ext *x = (struct meta__ext *)(uintptr_t)v;
            ar_free(x->target);
            ar_free(x->xattrs);
            ar_free(x);
        }
    }
    for (uint32_t d = 0; d < s->dir_count; d++) {
        ar_free(s->dirs[d].children);
    }
    for (uint32_t i = 0; i < s->node_count; i++) {
        if (meta__node_has(meta__node_at(s, i), NODE_DATA_MAP))
            meta__data_free(s, i);
    }
    for (uint32_t p = 0; p < s->page_count; p++) {
        ar_free(s->pages[p]);
    }
    ar_free(s->pages);
    ar_free(s->map);
    ar_free(s->names);
    ar_free(s->attrs);
    ar_free(s->dirs);
    meta__index_fini(&s->by_ino);
    meta__index_fini(&s->by_name);
    meta__index_fini(&s->attr_index);
    meta__map_fini(&s->ctimes);
    meta__map_fini(&s->exts);
    ar_free(s->dirty_inos);
    ar_free(s->dirty_names);
    ar_free(s->clients);
    ar_free(s->holds);
    meta__map_fini(&s->held);
    ar_free(s);
}

/* ---- hash and statistics ------------------------------------------------------------ */

/* Order-independent: the sum of a strong hash of each live node's visible
 * state (entry, inode attributes, target). Slot numbers are left out, so two
 * shards with the same files hash the same however they were built. */
uint64_t meta_shard_hash(const struct meta_shard *s)
{
    uint64_t sum = 0;

    for (uint32_t i = 0; i < s->node_count; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        if (!meta__node_has(n, NODE_LIVE))
            continue;
        uint32_t inode = meta__inode_of(s, i);
        struct meta_attr a;
        meta__attr_fill(s, inode, &a);
        /* field by field: struct meta_attr has padding, which holds garbage */
        const uint64_t fields[] = {
            n->ino,     a.ino, a.mode, a.nlink, a.uid, a.gid, a.rdev, a.size,
            (uint64_t)a.atime_ns, (uint64_t)a.mtime_ns, (uint64_t)a.ctime_ns,
        };
        uint64_t h = meta__hash_bytes(s->seed, fields, sizeof(fields));
        if (n->name != META_NIL && !meta__node_has(n, NODE_NAMELESS)) {
            uint32_t len;
            const uint8_t *name = meta__name_bytes(s, n->name, &len);
            h = meta__hash_bytes(h ^ meta__node_at(s, n->parent)->ino, name, len);
        }
        const struct meta__ext *x = meta__ext_of(s, inode);
        if (x != NULL && x->target != NULL)
            h = meta__hash_bytes(h, x->target, x->target_len);
        if (x != NULL && x->xattr_bytes > 0 && !meta__node_has(n, NODE_ALIAS))
            h = meta__hash_bytes(h, x->xattrs, x->xattr_bytes);
        if (!meta__node_has(n, NODE_ALIAS))
            h = meta__data_hash(s, inode, h);
        sum += h;
    }
    sum += meta__hash_u64(s->seed ^ 0x68696768ull, s->ino_high); /* decides future commands */
    sum += meta__info_hash(s);
    /* open holds are state too */
    for (uint32_t i = 0; i < s->hold_count; i++) {
        const uint64_t f[] = {s->holds[i].session, s->holds[i].ino, s->holds[i].count};
        sum += meta__hash_bytes(s->seed ^ 0x686f6c64ull, f, sizeof(f));
    }
    /* the retry table is state too */
    for (uint32_t i = 0; i < s->client_count; i++) {
        const struct meta__client *c = &s->clients[i];
        uint64_t h = meta__hash_u64(s->seed ^ c->id, c->ack_below ^ (uint64_t)c->last_ns);
        for (uint32_t k = 0; k < c->reply_count; k++) {
            const uint64_t f[] = {c->replies[k].seq, (uint64_t)(int64_t)c->replies[k].rc,
                                  c->replies[k].attr.ino, c->replies[k].attr.size};
            h = meta__hash_bytes(h, f, sizeof(f));
        }
        sum += h;
    }
    return sum;
}

void meta_shard_stats(const struct meta_shard *s, struct meta_shard_stats *out)
{
    uint64_t bytes = sizeof(*s) + (uint64_t)s->page_count * (sizeof(struct meta__node) << NODE_PAGE_BITS);

    bytes += s->names_cap + (uint64_t)s->attr_cap * sizeof(struct meta__attr_class);
    bytes += (uint64_t)s->dir_cap * sizeof(struct meta__dir);
    for (uint32_t d = 0; d < s->dir_count; d++) {
        bytes += (uint64_t)s->dirs[d].cap * sizeof(uint32_t);
    }
    bytes += meta__index_bytes(&s->by_ino) + meta__index_bytes(&s->by_name);
    bytes += meta__index_bytes(&s->attr_index);
    bytes += meta__map_bytes(&s->ctimes) + meta__map_bytes(&s->exts);
    *out = (struct meta_shard_stats){
        .inode_count = s->inode_count,
        .entry_count = s->entry_count,
        .ino_high = s->ino_high,
        .memory_bytes = bytes,
    };
}
