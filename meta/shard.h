/* meta/shard.h - the shard state machine's internal layout. Included only
 * from meta/ and tests/meta/.
 *
 * Memory is the budget that decides a cluster's size (design §2), so a small
 * file costs one 56-byte node, its name, and a few bytes in three indexes:
 *
 *   node (56) | name: 1 + len bytes | ino index ~5 | entry index ~5 | dir vector ~5
 *
 * A node is an inode together with the entry that named it. What most files
 * never have lives in side tables keyed by node index: a ctime that differs
 * from mtime, and the "ext" record (rdev, symlink target, xattrs). A second
 * name of a file (a hard link) is an alias node: an entry whose inode is
 * another node.
 *
 * Determinism: node, name and attr slots are reused last-freed-first, and
 * hash tables are seeded from the state, so replicas that apply the same
 * commands build the same tables.
 */
#ifndef ARBOR_META_SHARD_H
#define ARBOR_META_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "limits.h"
#include "meta.h"

#define META_NIL UINT32_MAX /* no node */
/* Values in an index (node, attr indices) stay below this: the index keeps a
 * hash tag in the bits above (table.c). */
#define META_VALUE_LIMIT ((1u << 27) - 2)
_Static_assert(META_NODES_MAX <= META_VALUE_LIMIT, "every node index fits an index slot");

/* ---- an index of u32 values by a caller's key (table.c) ----------------------
 * Open addressing with linear probing. The index stores only values; the
 * caller hashes keys and says whether a value's key matches, so the key
 * bytes live once, in the node. Capacity grows by 1.5x (not 2x) to keep the
 * slack small at millions of entries; the load stays in [0.5, 0.85]. */
struct meta__index {
    uint32_t *slots;  /* see table.c for what a slot holds */
    uint64_t cap;
    uint64_t count;
    uint64_t tombstones;
};

typedef bool (*meta__index_match)(const void *ctx, uint32_t value, const void *key);
typedef uint64_t (*meta__index_rehash)(const void *ctx, uint32_t value);
/* Put every value into fresh (an empty index of a larger capacity) with
 * meta__index_place(). Growth calls it, so the owner can visit values in
 * memory order (its node pages) rather than through the old slots. NULL:
 * the old slots are walked and rehash() gives each value's hash. */
typedef void (*meta__index_refill)(const void *ctx, struct meta__index *fresh);

void meta__index_init(struct meta__index *ix);
void meta__index_fini(struct meta__index *ix);
/* The value whose key matches, or META_NIL. */
uint32_t meta__index_find(const struct meta__index *ix, uint64_t hash, const void *key,
                          meta__index_match match, const void *ctx);
/* The hooks an index's owner gives for growth. */
struct meta__index_owner {
    meta__index_rehash rehash;
    meta__index_refill refill; /* may be NULL */
    const void *ctx;
};

/* Insert a value whose key is not present. -ENOMEM leaves the index as it was. */
int meta__index_insert(struct meta__index *ix, uint64_t hash, uint32_t value,
                       const struct meta__index_owner *owner);
/* Remove the value (present). */
void meta__index_remove(struct meta__index *ix, uint64_t hash, uint32_t value);
/* Make room for `more` inserts now, so a command can fail before it changes anything. */
int meta__index_reserve(struct meta__index *ix, uint64_t more,
                        const struct meta__index_owner *owner);
/* Build the index anew from its owner's refill, which places exactly count
 * values: for a loader that fills the nodes first and indexes them after.
 * -ENOMEM leaves the index as it was. */
int meta__index_rebuild(struct meta__index *ix, uint64_t count,
                        const struct meta__index_owner *owner);
/* Start fetching the slot where a probe for hash begins. */
void meta__index_prefetch(const struct meta__index *ix, uint64_t hash);
/* Add a value to an index being refilled (no growth, no checks). */
void meta__index_place(struct meta__index *fresh, uint64_t hash, uint32_t value);
/* The same, many at a time: values wait in a batch until it fills, then
 * their slots are fetched together, so the cache misses overlap. Flush at
 * the end. */
#define META_INDEX_BATCH 32u
struct meta__index_batch {
    uint32_t count;
    uint32_t values[META_INDEX_BATCH];
    uint64_t hashes[META_INDEX_BATCH];
};
void meta__index_place_batch(struct meta__index *fresh, struct meta__index_batch *b,
                             uint64_t hash, uint32_t value);
void meta__index_place_flush(struct meta__index *fresh, struct meta__index_batch *b);
uint64_t meta__index_bytes(const struct meta__index *ix);

/* ---- a map of u32 keys (node indices) to u64 values (table.c) -----------------
 * For the side tables, which few nodes use. A slot holds its key and its
 * value side by side, 12 bytes aligned to 4: a put or a get touches one
 * cache line (rarely two), where separate key and value arrays took two
 * misses a put in a big table (a restore puts a ctime for every file). */
struct meta__map_slot {
    uint32_t key;    /* META_NIL empty, META_MAP_GONE removed */
    uint32_t val[2]; /* the value, by memcpy: no 8-byte alignment, no padding */
};
struct meta__map {
    struct meta__map_slot *slots;
    uint64_t cap;
    uint64_t count;
    uint64_t gone;
};
#define META_MAP_GONE (UINT32_MAX - 1)

static inline uint64_t meta__map_slot_val(const struct meta__map_slot *slot)
{
    uint64_t v;
    memcpy(&v, slot->val, sizeof(v));
    return v;
}

void meta__map_init(struct meta__map *m);
void meta__map_fini(struct meta__map *m);
/* true and *val if key is present */
bool meta__map_get(const struct meta__map *m, uint32_t key, uint64_t *val);
/* Insert or replace. -ENOMEM leaves the map as it was. */
int meta__map_put(struct meta__map *m, uint32_t key, uint64_t val);
void meta__map_del(struct meta__map *m, uint32_t key);
/* Set the value of a key that is present; never allocates. */
void meta__map_replace(struct meta__map *m, uint32_t key, uint64_t val);
/* Room for `more` puts of new keys. */
int meta__map_reserve(struct meta__map *m, uint32_t more);
uint64_t meta__map_bytes(const struct meta__map *m);

uint64_t meta__hash_bytes(uint64_t seed, const void *data, uint32_t len);
void meta__advise_huge(void *p, size_t bytes);
uint64_t meta__hash_u64(uint64_t seed, uint64_t v);

/* ---- nodes ------------------------------------------------------------------- */

enum {
    NODE_LIVE = 1u << 0,      /* slot in use */
    NODE_ALIAS = 1u << 1,     /* an extra name: aux is the node of the inode */
    NODE_NAMELESS = 1u << 2,  /* an inode whose first name is gone; reached by ino only */
    NODE_HAS_CTIME = 1u << 3, /* ctime != mtime: in the ctime table */
    NODE_HAS_EXT = 1u << 4,   /* rdev, symlink target or xattrs: in the ext table */
    NODE_DATA_INLINE = 1u << 5, /* one whole slice: aux is its id (data.c) */
    NODE_DATA_MAP = 1u << 6,  /* aux points to the file's struct meta__fmap */
};

#define NODE_NLINK_BITS 24u
#define NODE_NLINK_MASK ((1u << NODE_NLINK_BITS) - 1)
_Static_assert(META_NLINK_MAX < (1u << NODE_NLINK_BITS), "nlink fits its bits");

struct meta__node {
    uint64_t ino;         /* inode number; an alias's own entry key (its readdir cookie) */
    uint64_t size;        /* bytes; a symlink's target length */
    int64_t mtime_ns;
    int64_t atime_ns;
    uint64_t aux;         /* dir: its dir slot; alias: the inode's node; file: see data.c */
    uint32_t parent;      /* node of the directory holding this name; root: itself */
    uint32_t name;        /* offset of the name in the name arena */
    uint32_t attr;        /* interned (mode, uid, gid) */
    uint32_t nlink_flags; /* nlink in the low 24 bits, NODE_* in the high 8 */
};
_Static_assert(sizeof(struct meta__node) == 56, "the node is the memory budget");

#define NODE_PAGE_BITS 16u /* nodes are allocated 64Ki at a time */

struct meta__attr_class {
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint32_t refs; /* nodes using it; 0 = free slot */
};

/* A directory's children, by entry key, for readdir cookies that survive
 * changes: a cookie is the last entry key returned, and entries are visited
 * in key order. Removed children become META_NIL until compaction. */
struct meta__dir {
    uint32_t *children; /* node indices, ascending entry key, with META_NIL holes */
    uint32_t count;     /* slots used, holes included */
    uint32_t cap;
    uint32_t holes;
    uint32_t live;      /* children */
    uint32_t start;     /* every slot before it is a hole: seeks begin here */
};

/* A file's data map (data.c): chunks in ascending order, each a stack of
 * slices, oldest first. */
struct meta__chunk {
    uint32_t index; /* the chunk's number in the file */
    uint32_t count;
    uint32_t cap;
    struct meta_slice *slices;
};

struct meta__fmap {
    struct meta__chunk *chunks;
    uint32_t count;
    uint32_t cap;
    uint32_t slice_total; /* slices of all chunks, as of the last data_normalize() */
};

struct meta__reply {
    uint64_t seq;
    int32_t rc;
    struct meta_attr attr;
};

struct meta__client {
    uint64_t id;
    uint64_t ack_below;
    int64_t last_ns;       /* command time of its last command */
    uint32_t reply_count;
    struct meta__reply replies[META_CLIENT_REPLIES_MAX];
};

struct meta__hold {
    uint64_t session;
    uint64_t ino;
    uint32_t count;
};

struct meta__ext {
    uint32_t rdev;
    uint32_t target_len;
    char *target;       /* symlink target, NUL-terminated */
    uint8_t *xattrs;    /* [u8 name len][u32 value len][name][value]..., in order set */
    uint32_t xattr_bytes;
};

/* A changed inode: its number, and the node that held it then (a hint:
 * the node may be freed or reused by collect time; see collect_changes). */
struct meta__dirty_ino {
    uint64_t ino;
    uint32_t node;
};

struct meta_shard {
    uint64_t seed;              /* hash seed, part of the state */
    struct meta_shard_info self; /* which shard this is, its epoch and leases (map.c) */
    uint64_t slice_next;        /* the next slice id to give, in self's slice lease */
    struct meta_map *map;       /* shard 0 only: the shard map */
    bool is_info_dirty;         /* self, slice_next or map changed since the last collect */
    /* The largest inode number (or entry key) the shard has used. Numbers
     * come from ranges the shard map leases in increasing order, so a new
     * one must be larger: an O(1) check where an index probe would miss
     * the cache on every create. (A subtree moved in from another shard
     * keeps its numbers; that import is not a create and will raise this.) */
    uint64_t ino_high;
    uint32_t root;              /* node of the shard's root directory */
    /* nodes */
    struct meta__node **pages;
    uint32_t page_count;
    uint32_t node_count;        /* slots handed out, free or not */
    uint32_t node_free;         /* head of the free list (through aux), or META_NIL */
    uint64_t inode_count;
    uint64_t entry_count;
    uint64_t file_bytes;        /* sum of regular files' sizes (statfs) */
    /* names: a length byte then the bytes; freed slots are reused by size */
    uint8_t *names;
    uint64_t names_used;
    uint64_t names_cap;
    uint32_t name_free[META_NAME_BYTES_MAX + 2]; /* per slot size: offset of a free slot */
    /* interned attributes */
    struct meta__attr_class *attrs;
    uint32_t attr_count;
    uint32_t attr_cap;
    uint32_t attr_free;
    struct meta__index attr_index;
    /* directories */
    struct meta__dir *dirs;
    uint32_t dir_count;
    uint32_t dir_cap;
    uint32_t dir_free;
    /* indexes */
    struct meta__index by_ino;   /* ino -> node (inodes, not aliases) */
    struct meta__index by_name;  /* (parent, name) -> node (entries) */
    /* side tables, keyed by node */
    struct meta__map ctimes;     /* node -> ctime_ns, where it differs from mtime */
    struct meta__map exts;       /* node -> struct meta__ext * */
    /* the retry table (retry.c): clients and their unacknowledged replies */
    struct meta__client *clients; /* sorted by id */
    uint32_t client_count;        /* <= META_CLIENTS_MAX */
    uint32_t client_cap;
    bool is_clients_dirty;        /* changed since the last checkpoint collect */
    /* open holds (session.c): sorted by (session, ino); the count per node */
    struct meta__hold *holds;
    uint32_t hold_count;
    uint32_t hold_cap;
    struct meta__map held;        /* node -> opens by all sessions */
    bool is_holds_dirty;
    /* changes since the last checkpoint collect (checkpoint.c) */
    bool is_tracking;
    bool is_all_dirty;           /* the next collect takes the whole state */
    struct meta__dirty_ino *dirty_inos; /* inodes changed, created or freed */
    uint32_t dirty_ino_count;
    uint32_t dirty_ino_cap;
    uint32_t dirty_ino_from;     /* the first of the command being applied */
    uint8_t *dirty_names;        /* entries added or removed: parent ino (8), len (1), name */
    uint64_t dirty_name_bytes;
    uint32_t dirty_name_count;
    uint64_t dirty_name_cap;
};

/* What one command may change at most, reserved before it starts. */
#define META_DIRTY_INODES_MAX  8u
#define META_DIRTY_ENTRIES_MAX 4u
#define META_DIRTY_ENTRY_BYTES (8u + 4u + 1u + META_NAME_BYTES_MAX)

/* ---- node.c: storage ----------------------------------------------------------
 * Every allocating call returns 0, -ENOMEM or -ENOSPC and changes nothing on
 * error; commands reserve first, then change state with calls that cannot fail. */
struct meta__node *meta__node_at(const struct meta_shard *s, uint32_t idx);
uint32_t meta__node_nlink(const struct meta__node *n);
void meta__node_set_nlink(struct meta__node *n, uint32_t nlink);
bool meta__node_has(const struct meta__node *n, uint32_t flag);
void meta__node_flag(struct meta__node *n, uint32_t flag, bool on);
int meta__node_alloc(struct meta_shard *s, uint32_t *out);
void meta__node_release(struct meta_shard *s, uint32_t idx);

const uint8_t *meta__name_bytes(const struct meta_shard *s, uint32_t off, uint32_t *len);
int meta__name_store(struct meta_shard *s, const char *name, uint32_t len, uint32_t *out);
void meta__name_release(struct meta_shard *s, uint32_t off);

const struct meta__attr_class *meta__attr_of(const struct meta_shard *s, uint32_t idx);
int meta__attr_get(struct meta_shard *s, uint32_t mode, uint32_t uid, uint32_t gid,
                   uint32_t *out);
void meta__attr_put(struct meta_shard *s, uint32_t idx);

int meta__dir_alloc(struct meta_shard *s, uint32_t *out);
void meta__dir_release(struct meta_shard *s, uint32_t d);
uint32_t meta__dir_seek(const struct meta_shard *s, const struct meta__dir *d, uint64_t key);
int meta__dir_reserve(struct meta_shard *s, uint32_t dslot, uint32_t more);
void meta__dir_add(struct meta_shard *s, uint32_t dslot, uint32_t child);
void meta__dir_remove(struct meta_shard *s, uint32_t dslot, uint32_t child);

/* ---- shard.c: lookups, times, side tables ------------------------------------- */
/* Start fetching the by_name slot where a probe for dir/name begins. */
void meta__prefetch_name(const struct meta_shard *s, uint32_t dir, const char *name, uint32_t len);
/* by_ino's hash of an inode number */
uint64_t meta__ino_hash(const struct meta_shard *s, uint64_t ino);
uint32_t meta__find_ino(const struct meta_shard *s, uint64_t ino);
uint32_t meta__find_name(const struct meta_shard *s, uint32_t dir, const char *name,
                         uint32_t len);
int meta__reserve_indexes(struct meta_shard *s, uint32_t inodes, uint32_t names);
void meta__index_ino(struct meta_shard *s, uint32_t node, bool is_in);
void meta__index_name(struct meta_shard *s, uint32_t node, bool is_in);
/* Index every inode (or every name) in the node pages anew: a load fills
 * the pages first, then indexes all at once. */
int meta__reindex_inos(struct meta_shard *s);
int meta__reindex_names(struct meta_shard *s);
/* The same, with the hash a meta__find_name_hashed() of the node's name gave. */
uint32_t meta__find_name_hashed(const struct meta_shard *s, uint32_t dir, const char *name,
                                uint32_t len, uint64_t *hash);
void meta__index_name_hashed(struct meta_shard *s, uint32_t node, bool is_in, uint64_t hash);
uint32_t meta__inode_of(const struct meta_shard *s, uint32_t entry);
uint32_t meta__mode(const struct meta_shard *s, uint32_t inode);
int64_t meta__ctime(const struct meta_shard *s, uint32_t inode);
int meta__reserve_side(struct meta_shard *s, uint32_t more);
/* Set mtime (when not NULL) and ctime; cannot fail after meta__reserve_side(). */
void meta__set_times(struct meta_shard *s, uint32_t inode, const int64_t *mtime_ns,
                     int64_t ctime_ns);
struct meta__ext *meta__ext_of(const struct meta_shard *s, uint32_t inode);
void meta__attr_fill(const struct meta_shard *s, uint32_t inode, struct meta_attr *out);
void meta__inode_free(struct meta_shard *s, uint32_t inode);

/* ---- ops.c: permissions, as Linux checks them ------------------------------------ */
#define MAY_X 1u
#define MAY_W 2u
#define MAY_R 4u
bool meta__in_group(const struct meta_cred *c, uint32_t gid);
/* generic_permission(): 0 or -EACCES for a mask of MAY_R, MAY_W, MAY_X. */
int meta__may(const struct meta_shard *s, uint32_t inode, const struct meta_cred *c,
              uint32_t mask);

/* ---- session.c ------------------------------------------------------------------- */
int meta__session_apply(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r);
/* Does any session hold this node open? */
bool meta__is_held(const struct meta_shard *s, uint32_t node);
/* A hold of ino (at node) by session, in two steps so that a command that
 * also makes the inode fails before it changes anything: reserve checks the
 * limits and makes room (EMFILE, ENFILE, ENOMEM), take cannot fail after. */
int meta__hold_reserve(struct meta_shard *s, uint64_t session, uint64_t ino);
void meta__hold_take(struct meta_shard *s, uint64_t session, uint64_t ino, uint32_t node);

/* ---- retry.c ---------------------------------------------------------------------- */
/* 1 with *rc and the reply filled if cmd was applied before (or is stale);
 * 0 to apply it. */
int meta__retry_check(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r,
                      int *rc);
/* Make room to remember cmd's result (before applying). -ENOMEM, -EAGAIN
 * when the client has META_CLIENT_REPLIES_MAX unacknowledged commands. */
int meta__retry_reserve(struct meta_shard *s, const struct meta_cmd *cmd);
/* Remember the result of an applied command. Cannot fail after reserve. */
void meta__retry_record(struct meta_shard *s, const struct meta_cmd *cmd, int rc,
                        const struct meta_reply *r);

/* ---- xattr.c ---------------------------------------------------------------------- */
int meta__xattr_get(const struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r);
int meta__xattr_list(const struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r);
int meta__xattr_set(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r);

/* ---- data.c ------------------------------------------------------------------------ */
int meta__data_apply(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r);

/* ---- map.c: the shard's identity, slice ids, the shard map ---------------------------- */
/* ALLOC_SLICES and MAP_SET. */
int meta__map_apply(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r);
/* MAP_GET: the encoded map into r->data. */
int meta__map_read(const struct meta_shard *s, struct meta_reply *r);
/* Set the identity (self.epoch 0: shard 1's first); shard 0 gets an empty map. -ENOMEM. */
int meta__info_init(struct meta_shard *s, const struct meta_shard_info *self);
/* The identity, slice_next and map as one checkpoint record (format in map.c). */
int meta__info_encode(const struct meta_shard *s, uint8_t *buf, size_t cap, size_t *len);
/* Set them from a record; -AR_ECORRUPT or -ENOMEM leave the shard as it was. */
int meta__info_decode(struct meta_shard *s, const uint8_t *buf, size_t len);
uint64_t meta__info_hash(const struct meta_shard *s);
int meta__data_read(const struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r);
struct meta__fmap *meta__fmap_of(const struct meta_shard *s, uint32_t inode);
void meta__data_free(struct meta_shard *s, uint32_t inode);
/* Truncation: reserve (the last step that may fail), then truncate, which
 * sets node->size; or unreserve if the command fails after the reserve. */
int meta__data_truncate_reserve(struct meta_shard *s, uint32_t inode, uint64_t size);
void meta__data_truncate(struct meta_shard *s, uint32_t inode, uint64_t size);
void meta__data_unreserve(struct meta_shard *s, uint32_t inode);
uint32_t meta__mode_after_write(const struct meta_shard *s, uint32_t inode,
                                const struct meta_cred *c);
uint64_t meta__data_hash(const struct meta_shard *s, uint32_t inode, uint64_t h);
uint64_t meta__data_encoded_bytes(const struct meta_shard *s, uint32_t inode);
void meta__data_encode(const struct meta_shard *s, uint32_t inode, uint8_t *p);
int meta__data_decode(struct meta_shard *s, uint32_t inode, const uint8_t *p, uint32_t len);

/* ---- checkpoint.c: change tracking -------------------------------------------- */
int meta__dirty_reserve(struct meta_shard *s);
void meta__dirty_inode(struct meta_shard *s, uint32_t inode);
void meta__dirty_entry(struct meta_shard *s, uint32_t entry);

#endif /* ARBOR_META_SHARD_H */
