/* meta/checkpoint.c - a shard's state written behind into LMDB (design §4).
 *
 * One environment per shard, three databases:
 *
 *   db       key                          value
 *   -------  ---------------------------  -------------------------------------------
 *   meta     "format"                     "arbor-meta-3"
 *            "root"                       root inode number, u64
 *            "ino_high"                   the largest inode number used, u64 (shard.h)
 *            "applied_index"              the log index the records reflect, u64
 *            "clients"                    the retry table (retry.c), see collect_clients()
 *            "holds"                      open holds (session.c): u32 count, then
 *                                         (u64 session, u64 ino, u32 count) each, u64 sum
 *            "info"                       the shard's identity, slice_next and (shard 0)
 *                                         the shard map (map.c), then u64 sum
 *   inodes   inode number, u64 big-endian  inode record (below)
 *   entries  parent ino (u64 BE) + name    entry key u64, target ino u64, checksum u64
 *
 *   inode record, little-endian:
 *     0 u8 version (1) | 1 u8 flags (1 nameless, 2 inline data) | 2 u16 target length
 *     4 u32 mode | 8 u32 uid | 12 u32 gid | 16 u32 nlink | 20 u32 rdev
 *     24 u64 size | 32 i64 atime | 40 i64 mtime | 48 i64 ctime
 *     56 u64 inline data: the id of the one slice showing all size bytes
 *     64 u32 xattr bytes | 68 u32 data map bytes | 72 target bytes
 *     | then the xattr list (xattr.c's format) | then the data map (data.c's
 *     format) | then u64 checksum
 *
 * A checksum is meta__hash_bytes() of the key and the value before it: a
 * flipped bit anywhere fails the load with the record named.
 *
 * Change tracking: while a shard is tracked, every command records the inode
 * numbers and entries it touched (space reserved before the command runs, so
 * recording cannot fail). A collect reads their current state into a batch:
 * a put where they exist, a delete where they are gone.
 * Thread: a shard's functions on its apply thread; a checkpoint's commit on
 * any one thread at a time; export from any thread (an LMDB read txn).
 */
#include <dirent.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shard.h"

#define CKPT_FORMAT        "arbor-meta-3"
#define CKPT_MAP_BYTES     (256ull << 30) /* address space only; the file grows as needed */
#define CKPT_INODE_FIXED   72u
#define CKPT_SUM_SEED      0x636b7074ull   /* "ckpt" */
#define CKPT_IMPORT_CHUNK  (1u << 20)

enum { OP_PUT_INODE = 1, OP_DEL_INODE, OP_PUT_ENTRY, OP_DEL_ENTRY, OP_PUT_META };

#define CKPT_HOLD_BYTES (8u + 8u + 4u)

#define CKPT_REPLY_BYTES  (8u + 4u + 10u * 8u)   /* seq, rc, ten attribute fields */
#define CKPT_CLIENT_BYTES (8u + 8u + 8u + 4u)   /* id, ack_below, last_ns, reply count */

struct meta_checkpoint {
    MDB_env *env;
    MDB_dbi meta;
    MDB_dbi inodes;
    MDB_dbi entries;
    uint64_t applied_index;
    bool is_failed; /* a commit failed: refuse the rest (style §3) */
    char dir[1024];
};

/* A batch is a list of operations: [u8 op][u16 key len][key][u32 value len][value]. */
struct meta_ckpt_batch {
    uint8_t *buf;
    uint64_t used;
    uint64_t cap;
    uint64_t records;
    uint64_t applied_index;
    uint64_t root_ino;
    uint64_t ino_high;
    bool is_full; /* the whole state: empty the databases first */
};

static int ar_err_from_mdb(int rc)
{
    if (rc == MDB_SUCCESS)
        return 0;
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
        rc == MDB_VERSION_MISMATCH || rc == MDB_BAD_TXN)
        return -AR_ECORRUPT;
    if (rc == MDB_MAP_FULL)
        return -ENOSPC;
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    return rc > 0 ? -rc : -EIO;
}

static void put_u64_be(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (56 - 8 * i));
    }
}

static uint64_t get_u64_be(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static uint64_t record_sum(const void *key, size_t key_len, const void *val, size_t val_len)
{
    return meta__hash_bytes(meta__hash_bytes(CKPT_SUM_SEED, key, (uint32_t)key_len), val,
                            (uint32_t)val_len);
}

/* ---- change tracking ---------------------------------------------------------- */

/* A changed name in dirty_names: u64 its directory's inode number, u32 the
 * entry's node then (a hint, like struct meta__dirty_ino's), u8 the name's
 * length, the name. */
#define DIRTY_NAME_HEAD 13u

int meta_shard_track(struct meta_shard *s)
{
    s->is_tracking = true;
    s->is_all_dirty = true;
    return meta__dirty_reserve(s);
}

int meta__dirty_reserve(struct meta_shard *s)
{
    if (!s->is_tracking || s->is_all_dirty)
        return 0;
    if (s->dirty_ino_count + META_DIRTY_INODES_MAX > s->dirty_ino_cap) {
        uint32_t cap = s->dirty_ino_cap < 1024 ? 1024 : s->dirty_ino_cap * 2;
        struct meta__dirty_ino *bigger = ar_realloc(s->dirty_inos, cap * sizeof(*bigger));
        if (bigger == NULL)
            return -ENOMEM;
        s->dirty_inos = bigger;
        s->dirty_ino_cap = cap;
    }
    uint64_t need = META_DIRTY_ENTRIES_MAX * META_DIRTY_ENTRY_BYTES;
    if (s->dirty_name_bytes + need > s->dirty_name_cap) {
        uint64_t cap = s->dirty_name_cap < (64u << 10) ? (64u << 10) : s->dirty_name_cap * 2;
        uint8_t *bigger = ar_realloc(s->dirty_names, cap);
        if (bigger == NULL)
            return -ENOMEM;
        s->dirty_names = bigger;
        s->dirty_name_cap = cap;
    }
    return 0;
}

void meta__dirty_inode(struct meta_shard *s, uint32_t inode)
{
    uint64_t ino = meta__node_at(s, inode)->ino;

    if (!s->is_tracking || s->is_all_dirty)
        return;
    AR_ASSERT(s->dirty_ino_count < s->dirty_ino_cap); /* meta__dirty_reserve() */
    /* a command touches its inode several times in a row: once is enough;
     * each command lists its own (meta_shard_changes_since) */
    if (s->dirty_ino_count == s->dirty_ino_from || s->dirty_inos[s->dirty_ino_count - 1].ino != ino)
        s->dirty_inos[s->dirty_ino_count++] = (struct meta__dirty_ino){.ino = ino, .node = inode};
}

void meta__dirty_entry(struct meta_shard *s, uint32_t entry)
{
    const struct meta__node *n = meta__node_at(s, entry);
    uint32_t len;
    const uint8_t *name;

    if (!s->is_tracking || s->is_all_dirty)
        return;
    name = meta__name_bytes(s, n->name, &len);
    AR_ASSERT(s->dirty_name_bytes + DIRTY_NAME_HEAD + len <= s->dirty_name_cap);
    uint8_t *p = s->dirty_names + s->dirty_name_bytes;
    memcpy(p, &meta__node_at(s, n->parent)->ino, 8);
    memcpy(p + 8, &entry, 4);
    p[12] = (uint8_t)len;
    memcpy(p + DIRTY_NAME_HEAD, name, len);
    s->dirty_name_bytes += DIRTY_NAME_HEAD + len;
    s->dirty_name_count++;
}

uint32_t meta_shard_change_mark(struct meta_shard *s)
{
    s->dirty_ino_from = s->dirty_ino_count;
    return s->dirty_ino_count;
}

bool meta_shard_tells_changes(const struct meta_shard *s)
{
    return s->is_tracking && !s->is_all_dirty;
}

int meta_shard_changes_since(const struct meta_shard *s, uint32_t mark,
                             void (*fn)(void *arg, uint64_t ino), void *arg)
{
    if (!s->is_tracking || s->is_all_dirty || mark > s->dirty_ino_count)
        return -ENOENT;
    for (uint32_t i = mark; i < s->dirty_ino_count; i++) {
        fn(arg, s->dirty_inos[i].ino);
    }
    return (int)(s->dirty_ino_count - mark);
}

uint64_t meta_shard_dirty_count(const struct meta_shard *s)
{
    return s->is_all_dirty ? UINT64_MAX : (uint64_t)s->dirty_ino_count + s->dirty_name_count;
}

/* ---- batches ------------------------------------------------------------------------ */

static int batch_add(struct meta_ckpt_batch *b, uint8_t op, const void *key, uint16_t key_len,
                     const void *val, uint32_t val_len)
{
    uint64_t need = 1 + 2 + key_len + 4 + val_len;

    if (b->used + need > b->cap) {
        uint64_t cap = b->cap < (64u << 10) ? (64u << 10) : b->cap;
        while (cap < b->used + need) {
            cap += cap / 2;
        }
        uint8_t *bigger = ar_realloc(b->buf, cap);
        if (bigger == NULL)
            return -ENOMEM;
        b->buf = bigger;
        b->cap = cap;
    }
    uint8_t *p = b->buf + b->used;
    p[0] = op;
    memcpy(p + 1, &key_len, 2);
    memcpy(p + 3, key, key_len);
    memcpy(p + 3 + key_len, &val_len, 4);
    if (val_len > 0)
        memcpy(p + 7 + key_len, val, val_len);
    b->used += need;
    b->records++;
    return 0;
}

static int batch_inode(struct meta_ckpt_batch *b, const struct meta_shard *s, uint32_t inode)
{
    const struct meta__node *n = meta__node_at(s, inode);
    const struct meta__ext *x = meta__ext_of(s, inode);
    uint8_t key[8];
    struct meta_attr a;
    uint16_t tlen = x != NULL && x->target != NULL ? (uint16_t)x->target_len : 0;
    uint32_t xlen = x != NULL ? x->xattr_bytes : 0;
    uint64_t dlen = meta__data_encoded_bytes(s, inode);
    uint8_t fixed[CKPT_INODE_FIXED + META_SYMLINK_BYTES_MAX + 8];
    uint8_t flags = (meta__node_has(n, NODE_NAMELESS) ? 1 : 0) |
                    (meta__node_has(n, NODE_DATA_INLINE) ? 2 : 0);

    if (dlen > META_MAP_BYTES_MAX)
        return -EFBIG; /* a map past any the loader takes; never written */
    uint8_t *val = xlen + dlen > 0 ? ar_malloc(CKPT_INODE_FIXED + tlen + xlen + dlen + 8) : fixed;
    uint32_t u32[5];
    int64_t times[3];
    uint64_t size_aux[2];

    if (val == NULL)
        return -ENOMEM;
    meta__attr_fill(s, inode, &a);
    put_u64_be(key, n->ino);
    val[0] = 1;
    val[1] = flags;
    memcpy(val + 2, &tlen, 2);
    u32[0] = a.mode;
    u32[1] = a.uid;
    u32[2] = a.gid;
    u32[3] = a.nlink;
    u32[4] = a.rdev;
    memcpy(val + 4, u32, sizeof(u32));
    size_aux[0] = n->size;
    memcpy(val + 24, &size_aux[0], 8);
    times[0] = a.atime_ns;
    times[1] = a.mtime_ns;
    times[2] = a.ctime_ns;
    memcpy(val + 32, times, sizeof(times));
    size_aux[1] = meta__node_has(n, NODE_DATA_INLINE) ? n->aux : 0;
    memcpy(val + 56, &size_aux[1], 8);
    memcpy(val + 64, &xlen, 4);
    uint32_t dlen32 = (uint32_t)dlen;
    memcpy(val + 68, &dlen32, 4);
    if (tlen > 0)
        memcpy(val + CKPT_INODE_FIXED, x->target, tlen);
    if (xlen > 0)
        memcpy(val + CKPT_INODE_FIXED + tlen, x->xattrs, xlen);
    meta__data_encode(s, inode, val + CKPT_INODE_FIXED + tlen + xlen);
    uint32_t body = CKPT_INODE_FIXED + tlen + xlen + dlen32;
    uint64_t sum = record_sum(key, 8, val, body);
    memcpy(val + body, &sum, 8);
    int rc = batch_add(b, OP_PUT_INODE, key, 8, val, body + 8);
    if (val != fixed)
        ar_free(val);
    return rc;
}

static int batch_entry(struct meta_ckpt_batch *b, const struct meta_shard *s, uint32_t e)
{
    const struct meta__node *n = meta__node_at(s, e);
    uint8_t key[8 + META_NAME_BYTES_MAX];
    uint64_t val[3];
    uint32_t len;
    const uint8_t *name = meta__name_bytes(s, n->name, &len);

    put_u64_be(key, meta__node_at(s, n->parent)->ino);
    memcpy(key + 8, name, len);
    val[0] = n->ino;
    val[1] = meta__node_at(s, meta__inode_of(s, e))->ino;
    val[2] = record_sum(key, 8 + len, val, 16);
    return batch_add(b, OP_PUT_ENTRY, key, (uint16_t)(8 + len), val, sizeof(val));
}

static int collect_all(struct meta_shard *s, struct meta_ckpt_batch *b)
{
    int rc = 0;

    b->is_full = true;
    for (uint32_t i = 0; i < s->node_count && rc == 0; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        if (!meta__node_has(n, NODE_LIVE))
            continue;
        if (!meta__node_has(n, NODE_ALIAS))
            rc = batch_inode(b, s, i);
        if (rc == 0 && i != s->root && !meta__node_has(n, NODE_NAMELESS))
            rc = batch_entry(b, s, i);
    }
    return rc;
}

static int cmp_dirty_ino(const void *a, const void *b)
{
    uint64_t x = ((const struct meta__dirty_ino *)a)->ino;
    uint64_t y = ((const struct meta__dirty_ino *)b)->ino;

    return (x > y) - (x < y);
}

/* The node holding inode ino now, or META_NIL: the hint if it still does.
 * Inode numbers are never reused and a freed node is zeroed, so a live
 * node that is not an alias and holds ino is the one the index names. */
static uint32_t dirty_inode_node(const struct meta_shard *s, const struct meta__dirty_ino *d)
{
    if (d->node < s->node_count) {
        const struct meta__node *n = meta__node_at(s, d->node);
        if (n->ino == d->ino && meta__node_has(n, NODE_LIVE) && !meta__node_has(n, NODE_ALIAS))
            return d->node;
    }
    return meta__find_ino(s, d->ino);
}

/* The entry named p's name in directory d now, or META_NIL: the hinted
 * node if it still is that name there. */
static uint32_t dirty_entry_node(const struct meta_shard *s, uint32_t d, const uint8_t *p)
{
    uint32_t e;
    uint32_t len = p[12];
    const char *name = (const char *)p + DIRTY_NAME_HEAD;

    memcpy(&e, p + 8, 4);
    if (e < s->node_count) {
        const struct meta__node *n = meta__node_at(s, e);
        uint32_t have_len = 0;
        const uint8_t *have = meta__node_has(n, NODE_LIVE) && n->parent == d && n->name != META_NIL
                                  ? meta__name_bytes(s, n->name, &have_len)
                                  : NULL;
        if (have != NULL && have_len == len && memcmp(have, name, len) == 0)
            return e;
    }
    return meta__find_name(s, d, name, len);
}

static int collect_changes(struct meta_shard *s, struct meta_ckpt_batch *b)
{
    int rc = 0;

    if (s->dirty_ino_count > 0) /* none yet: the table may not exist */
        qsort(s->dirty_inos, s->dirty_ino_count, sizeof(s->dirty_inos[0]), cmp_dirty_ino);
    for (uint32_t i = 0; i < s->dirty_ino_count && rc == 0; i++) {
        uint64_t ino = s->dirty_inos[i].ino;
        if (i > 0 && ino == s->dirty_inos[i - 1].ino)
            continue;
        uint32_t n = dirty_inode_node(s, &s->dirty_inos[i]);
        if (n != META_NIL) {
            rc = batch_inode(b, s, n);
        } else {
            uint8_t key[8];
            put_u64_be(key, ino);
            rc = batch_add(b, OP_DEL_INODE, key, 8, NULL, 0);
        }
    }
    /* Entries: a name touched twice is looked at twice; the second look
     * sees the same current state, so the records agree. Names come in
     * runs of one directory, which is looked up once a run. */
    uint64_t last_parent = 0;
    uint32_t d = META_NIL;
    for (uint64_t off = 0; off < s->dirty_name_bytes && rc == 0;) {
        const uint8_t *p = s->dirty_names + off;
        uint64_t parent_ino;
        uint32_t len = p[12];
        memcpy(&parent_ino, p, 8);
        off += DIRTY_NAME_HEAD + len;
        if (parent_ino != last_parent || last_parent == 0) {
            d = meta__find_ino(s, parent_ino);
            last_parent = parent_ino;
        }
        uint32_t e = d != META_NIL && S_ISDIR(meta__mode(s, d)) ? dirty_entry_node(s, d, p)
                                                                 : META_NIL;
        if (e != META_NIL) {
            rc = batch_entry(b, s, e);
        } else {
            uint8_t key[8 + META_NAME_BYTES_MAX];
            put_u64_be(key, parent_ino);
            memcpy(key + 8, p + DIRTY_NAME_HEAD, len);
            rc = batch_add(b, OP_DEL_ENTRY, key, (uint16_t)(8 + len), NULL, 0);
        }
    }
    return rc;
}

/* The retry table as one record:
 *   u32 client count, then per client: u64 id, u64 ack_below, i64 last_ns,
 *   u32 reply count, then per reply: u64 seq, i32 rc, and the reply's ino,
 *   mode, nlink, uid, gid, rdev, size, atime, mtime, ctime as u64 each;
 *   then a u64 checksum of all of it. */
static int collect_clients(const struct meta_shard *s, struct meta_ckpt_batch *b)
{
    size_t bytes = 4 + 8;
    int rc;

    for (uint32_t i = 0; i < s->client_count; i++) {
        bytes += CKPT_CLIENT_BYTES + (size_t)s->clients[i].reply_count * CKPT_REPLY_BYTES;
    }
    uint8_t *buf = ar_malloc(bytes);
    if (buf == NULL)
        return -ENOMEM;
    uint8_t *p = buf;
    memcpy(p, &s->client_count, 4);
    p += 4;
    for (uint32_t i = 0; i < s->client_count; i++) {
        const struct meta__client *c = &s->clients[i];
        memcpy(p, &c->id, 8);
        memcpy(p + 8, &c->ack_below, 8);
        memcpy(p + 16, &c->last_ns, 8);
        memcpy(p + 24, &c->reply_count, 4);
        p += CKPT_CLIENT_BYTES;
        for (uint32_t k = 0; k < c->reply_count; k++) {
            const struct meta__reply *r = &c->replies[k];
            const uint64_t f[10] = {r->attr.ino, r->attr.mode, r->attr.nlink, r->attr.uid,
                                    r->attr.gid, r->attr.rdev, r->attr.size,
                                    (uint64_t)r->attr.atime_ns, (uint64_t)r->attr.mtime_ns,
                                    (uint64_t)r->attr.ctime_ns};
            memcpy(p, &r->seq, 8);
            memcpy(p + 8, &r->rc, 4);
            memcpy(p + 12, f, sizeof(f));
            p += CKPT_REPLY_BYTES;
        }
    }
    uint64_t sum = record_sum("clients", 7, buf, bytes - 8);
    memcpy(p, &sum, 8);
    rc = batch_add(b, OP_PUT_META, "clients", 7, buf, (uint32_t)bytes);
    ar_free(buf);
    return rc;
}

static int collect_holds(const struct meta_shard *s, struct meta_ckpt_batch *b)
{
    size_t bytes = 4 + (size_t)s->hold_count * CKPT_HOLD_BYTES + 8;
    uint8_t *buf = ar_malloc(bytes);
    int rc;

    if (buf == NULL)
        return -ENOMEM;
    memcpy(buf, &s->hold_count, 4);
    for (uint32_t i = 0; i < s->hold_count; i++) {
        uint8_t *p = buf + 4 + (size_t)i * CKPT_HOLD_BYTES;
        memcpy(p, &s->holds[i].session, 8);
        memcpy(p + 8, &s->holds[i].ino, 8);
        memcpy(p + 16, &s->holds[i].count, 4);
    }
    uint64_t sum = record_sum("holds", 5, buf, bytes - 8);
    memcpy(buf + bytes - 8, &sum, 8);
    rc = batch_add(b, OP_PUT_META, "holds", 5, buf, (uint32_t)bytes);
    ar_free(buf);
    return rc;
}

static int collect_info(const struct meta_shard *s, struct meta_ckpt_batch *b)
{
    uint8_t buf[META_MAP_BYTES_ENC_MAX + 128];
    size_t len = 0;

    AR_ASSERT(meta__info_encode(s, buf, sizeof(buf) - 8, &len) == 0);
    uint64_t sum = record_sum("info", 4, buf, len);
    memcpy(buf + len, &sum, 8);
    return batch_add(b, OP_PUT_META, "info", 4, buf, (uint32_t)len + 8);
}

int meta_shard_collect(struct meta_shard *s, uint64_t applied_index, struct meta_ckpt_batch **out)
{
    struct meta_ckpt_batch *b = ar_calloc(1, sizeof(*b));
    int rc;

    AR_ASSERT(s->is_tracking);
    if (b == NULL)
        return -ENOMEM;
    b->applied_index = applied_index;
    b->root_ino = meta__node_at(s, s->root)->ino;
    b->ino_high = s->ino_high;
    rc = s->is_all_dirty ? collect_all(s, b) : collect_changes(s, b);
    if (rc == 0 && (s->is_all_dirty || s->is_clients_dirty))
        rc = collect_clients(s, b);
    if (rc == 0 && (s->is_all_dirty || s->is_holds_dirty))
        rc = collect_holds(s, b);
    if (rc == 0 && (s->is_all_dirty || s->is_info_dirty))
        rc = collect_info(s, b);
    if (rc != 0) {
        meta_ckpt_batch_free(b);
        return rc; /* the changes stay recorded */
    }
    s->is_all_dirty = false;
    s->is_clients_dirty = false;
    s->is_holds_dirty = false;
    s->is_info_dirty = false;
    s->dirty_ino_count = 0;
    s->dirty_ino_from = 0;
    s->dirty_name_bytes = 0;
    s->dirty_name_count = 0;
    rc = meta__dirty_reserve(s);
    if (rc != 0) {
        /* without room to record, the next collect must take everything */
        s->is_all_dirty = true;
    }
    *out = b;
    return 0;
}

void meta_ckpt_batch_free(struct meta_ckpt_batch *b)
{
    if (b == NULL)
        return;
    ar_free(b->buf);
    ar_free(b);
}

uint64_t meta_ckpt_batch_records(const struct meta_ckpt_batch *b)
{
    return b->records;
}

uint64_t meta_ckpt_batch_index(const struct meta_ckpt_batch *b)
{
    return b->applied_index;
}

/* ---- the environment ------------------------------------------------------------------ */

static int ckpt_read_meta(struct meta_checkpoint *c, MDB_txn *txn, uint64_t *root, char *errmsg)
{
    MDB_val k = {.mv_size = 6, .mv_data = "format"};
    MDB_val v;
    int rc = mdb_get(txn, c->meta, &k, &v);

    if (rc == MDB_NOTFOUND)
        return 1; /* a new, empty checkpoint */
    if (rc != 0)
        return ar_errorf(errmsg, ar_err_from_mdb(rc), "%s: reading its format: %s", c->dir,
                    mdb_strerror(rc));
    if (v.mv_size != strlen(CKPT_FORMAT) || memcmp(v.mv_data, CKPT_FORMAT, v.mv_size) != 0)
        return ar_errorf(errmsg, -AR_ECORRUPT, "%s is not an arbor shard checkpoint", c->dir);
    k = (MDB_val){.mv_size = 13, .mv_data = "applied_index"};
    rc = mdb_get(txn, c->meta, &k, &v);
    if (rc != 0 || v.mv_size != 8)
        return ar_errorf(errmsg, -AR_ECORRUPT, "%s: applied index missing", c->dir);
    memcpy(&c->applied_index, v.mv_data, 8);
    k = (MDB_val){.mv_size = 4, .mv_data = "root"};
    rc = mdb_get(txn, c->meta, &k, &v);
    if (rc != 0 || v.mv_size != 8)
        return ar_errorf(errmsg, -AR_ECORRUPT, "%s: root inode missing", c->dir);
    if (root != NULL)
        memcpy(root, v.mv_data, 8);
    return 0;
}

/* LMDB maps the file: a page past a truncated end is a SIGBUS, not an error.
 * So the file must hold every page the meta page says is in use. */
static int ckpt_check_length(struct meta_checkpoint *c, char *errmsg)
{
    MDB_envinfo info;
    MDB_stat st;
    struct stat fst;
    char path[1100];
    int rc = mdb_env_info(c->env, &info);

    if (rc == 0)
        rc = mdb_env_stat(c->env, &st);
    if (rc != 0)
        return ar_errorf(errmsg, ar_err_from_mdb(rc), "checkpoint %s: %s", c->dir, mdb_strerror(rc));
    snprintf(path, sizeof(path), "%s/data.mdb", c->dir);
    if (stat(path, &fst) != 0)
        return ar_errorf(errmsg, -errno, "checkpoint %s: %s", path, strerror(errno));
    if ((uint64_t)fst.st_size < ((uint64_t)info.me_last_pgno + 1) * st.ms_psize)
        return ar_errorf(errmsg, -AR_ECORRUPT, "checkpoint %s is truncated: %lld bytes, needs %llu",
                    path, (long long)fst.st_size,
                    (unsigned long long)(((uint64_t)info.me_last_pgno + 1) * st.ms_psize));
    return 0;
}

int meta_checkpoint_open(const char *dir, struct meta_checkpoint **out, char *errmsg)
{
    struct meta_checkpoint *c = ar_calloc(1, sizeof(*c));
    MDB_txn *txn = NULL;
    int rc;

    if (c == NULL)
        return ar_errorf(errmsg, -ENOMEM, "out of memory");
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        rc = ar_errorf(errmsg, -errno, "checkpoint directory %s: %s", dir, strerror(errno));
        goto out_free;
    }
    rc = mdb_env_create(&c->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(c->env, 3);
    if (rc == 0)
        rc = mdb_env_set_mapsize(c->env, CKPT_MAP_BYTES);
    if (rc == 0)
        rc = mdb_env_open(c->env, dir, MDB_NOTLS, 0644);
    if (rc != 0) {
        rc = ar_errorf(errmsg, ar_err_from_mdb(rc), "checkpoint %s: %s", dir, mdb_strerror(rc));
        goto out_close_env;
    }
    rc = ckpt_check_length(c, errmsg);
    if (rc != 0)
        goto out_close_env;
    rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &c->meta);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "inodes", MDB_CREATE, &c->inodes);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "entries", MDB_CREATE, &c->entries);
    if (rc != 0) {
        mdb_txn_abort(txn);
        rc = ar_errorf(errmsg, ar_err_from_mdb(rc), "checkpoint %s: %s", dir, mdb_strerror(rc));
        goto out_close_env;
    }
    rc = ckpt_read_meta(c, txn, NULL, errmsg);
    if (rc < 0) {
        mdb_txn_abort(txn);
        goto out_close_env;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        rc = ar_errorf(errmsg, ar_err_from_mdb(rc), "checkpoint %s: %s", dir, mdb_strerror(rc));
        goto out_close_env;
    }
    *out = c;
    return 0;

out_close_env:
    mdb_env_close(c->env);
out_free:
    ar_free(c);
    return rc;
}

void meta_checkpoint_close(struct meta_checkpoint *c)
{
    if (c == NULL)
        return;
    mdb_env_close(c->env);
    ar_free(c);
}

uint64_t meta_checkpoint_applied_index(const struct meta_checkpoint *c)
{
    return c->applied_index;
}

/* A table's puts past its last key go in with MDB_APPEND: no search, and
 * a full page splits at its end (new inodes, a new directory's names,
 * arrive in key order). last is >= the table's real last key: a delete may
 * lower the real one, never raise it. */
struct table_tail {
    MDB_cursor *cur;
    uint16_t last_len; /* 0: the table is empty */
    uint8_t last[8 + META_NAME_BYTES_MAX];
};

static int tail_open(MDB_txn *txn, MDB_dbi dbi, struct table_tail *t)
{
    MDB_val k;
    MDB_val v;
    int rc = mdb_cursor_open(txn, dbi, &t->cur);

    t->last_len = 0;
    if (rc == 0)
        rc = mdb_cursor_get(t->cur, &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == 0 && (k.mv_size == 0 || k.mv_size > sizeof(t->last)))
        return MDB_CORRUPTED; /* no key of ours is empty or longer */
    if (rc == 0) {
        memcpy(t->last, k.mv_data, k.mv_size);
        t->last_len = (uint16_t)k.mv_size;
    }
    return rc;
}

/* LMDB's default order: bytes, then the shorter first */
static bool key_is_after(const struct table_tail *t, const MDB_val *k)
{
    size_t n = k->mv_size < t->last_len ? k->mv_size : t->last_len;
    int c = memcmp(k->mv_data, t->last, n);

    return t->last_len == 0 || c > 0 || (c == 0 && k->mv_size > t->last_len);
}

static int tail_put(struct table_tail *t, MDB_val *k, MDB_val *v)
{
    bool is_after = key_is_after(t, k);
    int rc = mdb_cursor_put(t->cur, k, v, is_after ? MDB_APPEND : 0);

    if (rc == 0 && is_after) {
        memcpy(t->last, k->mv_data, k->mv_size);
        t->last_len = (uint16_t)k->mv_size;
    }
    return rc;
}

static int commit_ops(struct meta_checkpoint *c, MDB_txn *txn, const struct meta_ckpt_batch *b)
{
    struct table_tail inodes = {0};
    struct table_tail entries = {0};
    int rc = tail_open(txn, c->inodes, &inodes);

    if (rc == 0)
        rc = tail_open(txn, c->entries, &entries);
    for (uint64_t off = 0; off < b->used && rc == 0;) {
        const uint8_t *p = b->buf + off;
        uint16_t key_len;
        uint32_t val_len;
        memcpy(&key_len, p + 1, 2);
        memcpy(&val_len, p + 3 + key_len, 4);
        MDB_val k = {.mv_size = key_len, .mv_data = (void *)(uintptr_t)(p + 3)};
        MDB_val v = {.mv_size = val_len, .mv_data = (void *)(uintptr_t)(p + 7 + key_len)};
        switch (p[0]) {
        case OP_PUT_INODE:
            rc = tail_put(&inodes, &k, &v);
            break;
        case OP_PUT_ENTRY:
            rc = tail_put(&entries, &k, &v);
            break;
        case OP_PUT_META:
            rc = mdb_put(txn, c->meta, &k, &v, 0);
            break;
        default:
            rc = mdb_del(txn, p[0] == OP_DEL_INODE ? c->inodes : c->entries, &k, NULL);
            rc = rc == MDB_NOTFOUND ? 0 : rc;
            break;
        }
        off += 7 + key_len + val_len;
    }
    if (inodes.cur != NULL)
        mdb_cursor_close(inodes.cur);
    if (entries.cur != NULL)
        mdb_cursor_close(entries.cur);
    return rc;
}

int meta_checkpoint_commit(struct meta_checkpoint *c, const struct meta_ckpt_batch *b,
                           char *errmsg)
{
    return meta_checkpoint_commit_all(c, &b, 1, errmsg);
}

int meta_checkpoint_commit_all(struct meta_checkpoint *c, const struct meta_ckpt_batch *const *bs,
                               uint32_t count, char *errmsg)
{
    MDB_txn *txn = NULL;
    int rc;

    AR_ASSERT(count > 0);
    if (c->is_failed)
        return ar_errorf(errmsg, -EIO, "checkpoint %s refuses writes after a failed commit", c->dir);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t before = i == 0 ? c->applied_index : bs[i - 1]->applied_index;
        if (bs[i]->applied_index < before)
            return ar_errorf(errmsg, -EINVAL, "batch at index %llu is older than %llu",
                        (unsigned long long)bs[i]->applied_index, (unsigned long long)before);
    }
    const struct meta_ckpt_batch *b = bs[count - 1]; /* its marks are the result's */
    rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        if (bs[i]->is_full)
            rc = mdb_drop(txn, c->inodes, 0);
        if (rc == 0 && bs[i]->is_full)
            rc = mdb_drop(txn, c->entries, 0);
        if (rc == 0)
            rc = commit_ops(c, txn, bs[i]);
    }
    if (rc == 0) {
        MDB_val k = {.mv_size = 13, .mv_data = "applied_index"};
        MDB_val v = {.mv_size = 8, .mv_data = (void *)(uintptr_t)&b->applied_index};
        rc = mdb_put(txn, c->meta, &k, &v, 0);
    }
    if (rc == 0) {
        MDB_val k = {.mv_size = 6, .mv_data = "format"};
        MDB_val v = {.mv_size = strlen(CKPT_FORMAT), .mv_data = CKPT_FORMAT};
        rc = mdb_put(txn, c->meta, &k, &v, 0);
    }
    if (rc == 0) {
        MDB_val k = {.mv_size = 4, .mv_data = "root"};
        MDB_val v = {.mv_size = 8, .mv_data = (void *)(uintptr_t)&b->root_ino};
        rc = mdb_put(txn, c->meta, &k, &v, 0);
    }
    if (rc == 0) {
        MDB_val k = {.mv_size = 8, .mv_data = "ino_high"};
        MDB_val v = {.mv_size = 8, .mv_data = (void *)(uintptr_t)&b->ino_high};
        rc = mdb_put(txn, c->meta, &k, &v, 0);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return ar_errorf(errmsg, ar_err_from_mdb(rc), "checkpoint %s: %s", c->dir, mdb_strerror(rc));
    }
    rc = mdb_txn_commit(txn); /* durable: LMDB syncs on commit */
    if (rc != 0) {
        c->is_failed = true;
        return ar_errorf(errmsg, ar_err_from_mdb(rc), "checkpoint %s commit: %s", c->dir,
                    mdb_strerror(rc));
    }
    c->applied_index = b->applied_index;
    return 0;
}

/* ---- loading --------------------------------------------------------------------------- */

/* An inode record, checked and decoded; target and xattrs point into it. */
struct inode_rec {
    uint64_t ino;
    uint8_t flags;
    uint16_t tlen;
    uint32_t xlen;
    uint32_t dlen;
    uint32_t mode, uid, gid, nlink, rdev;
    uint64_t size;
    int64_t atime, mtime, ctime;
    uint64_t aux;
    const uint8_t *target;
    const uint8_t *xattrs;
    const uint8_t *data;
};

static int inode_parse(const MDB_val *k, const MDB_val *v, struct inode_rec *out, char *errmsg)
{
    const uint8_t *p = v->mv_data;
    uint32_t u32[5];
    int64_t t[3];
    uint64_t sum;

    if (k->mv_size != 8 || v->mv_size < CKPT_INODE_FIXED + 8)
        return ar_errorf(errmsg, -AR_ECORRUPT, "inode record of %zu bytes", v->mv_size);
    out->ino = get_u64_be(k->mv_data);
    out->flags = p[1];
    memcpy(&out->tlen, p + 2, 2);
    memcpy(&out->xlen, p + 64, 4);
    memcpy(&out->dlen, p + 68, 4);
    uint64_t body = (uint64_t)CKPT_INODE_FIXED + out->tlen + out->xlen + out->dlen;
    if (p[0] != 1 || (p[1] & ~3u) != 0 || out->tlen > META_SYMLINK_BYTES_MAX ||
        out->xlen > META_XATTR_BYTES_MAX || out->dlen > META_MAP_BYTES_MAX ||
        v->mv_size != body + 8u)
        return ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu: malformed record",
                    (unsigned long long)out->ino);
    memcpy(&sum, p + body, 8);
    if (sum != record_sum(k->mv_data, 8, p, body))
        return ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu: checksum mismatch",
                    (unsigned long long)out->ino);
    out->target = p + CKPT_INODE_FIXED;
    out->xattrs = p + CKPT_INODE_FIXED + out->tlen;
    out->data = out->xattrs + out->xlen;
    /* the xattr list must parse to its exact end */
    for (uint32_t off = 0, count = 0; off < out->xlen; count++) {
        uint32_t vlen;
        if (out->xlen - off < 5 || count >= out->xlen)
            return ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu: bad xattr list",
                        (unsigned long long)out->ino);
        memcpy(&vlen, out->xattrs + off + 1, 4);
        uint32_t nlen = out->xattrs[off];
        if (nlen == 0 || vlen > META_XATTR_VALUE_MAX || out->xlen - off - 5 < nlen + vlen)
            return ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu: bad xattr list",
                        (unsigned long long)out->ino);
        off += 5 + nlen + vlen;
    }
    memcpy(u32, p + 4, sizeof(u32));
    memcpy(&out->size, p + 24, 8);
    memcpy(t, p + 32, sizeof(t));
    memcpy(&out->aux, p + 56, 8);
    out->mode = u32[0];
    out->uid = u32[1];
    out->gid = u32[2];
    out->nlink = u32[3];
    out->rdev = u32[4];
    out->atime = t[0];
    out->mtime = t[1];
    out->ctime = t[2];
    bool is_inline = (out->flags & 2u) != 0;
    if (out->ino == 0 || out->nlink > META_NLINK_MAX || (S_ISLNK(out->mode) != (out->tlen > 0)) ||
        (is_inline != (out->aux != 0)) || (is_inline && out->dlen > 0) ||
        ((is_inline || out->dlen > 0) && !S_ISREG(out->mode)) ||
        (is_inline && (out->size == 0 || out->size > META_CHUNK_BYTES)) ||
        (S_ISREG(out->mode) && out->size > META_FILE_BYTES_MAX))
        return ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu: impossible fields",
                    (unsigned long long)out->ino);
    return 0;
}

/* The ext record of a loaded inode, when it has a target, rdev or xattrs. */
static int load_ext(struct meta_shard *s, uint32_t n, const struct inode_rec *rec, char *errmsg)
{
    struct meta__ext *x;

    if (rec->tlen == 0 && rec->rdev == 0 && rec->xlen == 0)
        return 0;
    x = ar_calloc(1, sizeof(*x));
    if (x != NULL && rec->tlen > 0) {
        x->target = ar_malloc(rec->tlen + 1u);
        if (x->target != NULL) {
            memcpy(x->target, rec->target, rec->tlen);
            x->target[rec->tlen] = '\0';
            x->target_len = rec->tlen;
        }
    }
    if (x != NULL && rec->xlen > 0) {
        x->xattrs = ar_malloc(rec->xlen);
        if (x->xattrs != NULL) {
            memcpy(x->xattrs, rec->xattrs, rec->xlen);
            x->xattr_bytes = rec->xlen;
        }
    }
    if (x == NULL || (rec->tlen > 0 && x->target == NULL) ||
        (rec->xlen > 0 && x->xattrs == NULL) ||
        meta__map_put(&s->exts, n, (uint64_t)(uintptr_t)x) != 0) {
        if (x != NULL) {
            ar_free(x->target);
            ar_free(x->xattrs);
        }
        ar_free(x);
        return ar_errorf(errmsg, -ENOMEM, "out of memory loading inode %llu",
                    (unsigned long long)rec->ino);
    }
    x->rdev = rec->rdev;
    meta__node_flag(meta__node_at(s, n), NODE_HAS_EXT, true);
    return 0;
}

/* A node for a loaded inode (the root has its own already). */
static int load_node(struct meta_shard *s, const struct inode_rec *rec, uint32_t *out)
{
    uint32_t n = rec->ino == meta__node_at(s, s->root)->ino ? s->root : META_NIL;
    int rc = 0;

    if (n != META_NIL) {
        if (!S_ISDIR(rec->mode))
            return -AR_ECORRUPT;
        meta__attr_put(s, meta__node_at(s, n)->attr);
        meta__node_at(s, n)->attr = META_NIL;
        *out = n;
        return 0;
    }
    /* no duplicate check: keys of an LMDB database are unique; the inode is
     * indexed after the pass (meta__reindex_inos()) */
    rc = meta__node_alloc(s, &n);
    if (rc != 0)
        return rc;
    struct meta__node *node = meta__node_at(s, n);
    *node = (struct meta__node){.ino = rec->ino, .name = META_NIL, .parent = META_NIL,
                                .attr = META_NIL};
    meta__node_flag(node, NODE_LIVE, true);
    if (S_ISDIR(rec->mode)) {
        uint32_t dslot;
        rc = meta__dir_alloc(s, &dslot);
        node->aux = dslot;
    }
    s->inode_count++;
    *out = n;
    return rc;
}

/* One inode record into the new shard s: the root's attributes, or a new node. */
static int load_inode(struct meta_shard *s, const MDB_val *k, const MDB_val *v, char *errmsg)
{
    struct inode_rec rec;
    uint32_t n;
    int rc = inode_parse(k, v, &rec, errmsg);

    if (rc != 0)
        return rc;
    rc = load_node(s, &rec, &n);
    struct meta__node *node = rc == 0 ? meta__node_at(s, n) : NULL;
    if (rc == 0)
        rc = meta__attr_get(s, rec.mode, rec.uid, rec.gid, &node->attr);
    if (rc == 0)
        rc = meta__reserve_side(s, 1);
    if (rc == -AR_ECORRUPT)
        return ar_errorf(errmsg, rc, "root inode %llu is not a directory", (unsigned long long)rec.ino);
    if (rc != 0)
        return ar_errorf(errmsg, rc, "out of memory loading inode %llu", (unsigned long long)rec.ino);
    node->size = rec.size;
    if (S_ISREG(rec.mode))
        s->file_bytes += rec.size;
    node->atime_ns = rec.atime;
    meta__node_set_nlink(node, rec.nlink);
    meta__node_flag(node, NODE_NAMELESS, rec.flags & 1u);
    meta__set_times(s, n, &rec.mtime, rec.ctime);
    if (rec.flags & 2u) {
        node->aux = rec.aux;
        meta__node_flag(node, NODE_DATA_INLINE, true);
    }
    rc = meta__data_decode(s, n, rec.data, rec.dlen);
    if (rc != 0)
        return ar_errorf(errmsg, rc, "inode %llu: %s", (unsigned long long)rec.ino,
                    rc == -ENOMEM ? "out of memory loading its data map" : "bad data map");
    return load_ext(s, n, &rec, errmsg);
}

/* Entries load in batches: each names an inode found through by_ino, a
 * cache miss on a random slot; fetching a batch's slots before using any
 * overlaps those misses. Entries come sorted by parent, so the last parent
 * is kept. */
#define LOAD_BATCH 32u
struct entry_batch {
    uint32_t count;
    MDB_val keys[LOAD_BATCH];
    uint64_t vals[LOAD_BATCH][3]; /* first node's ino, inode's ino, checksum */
    uint64_t parent_ino;
    uint32_t parent; /* the node of parent_ino, META_NIL before the first */
};

/* Check an entry record's shape and checksum, and add it to the batch. */
static int entry_stage(struct meta_shard *s, struct entry_batch *b, const MDB_val *k,
                       const MDB_val *v, char *errmsg)
{
    uint64_t *val = b->vals[b->count];

    if (k->mv_size <= 8 || k->mv_size > 8 + META_NAME_BYTES_MAX || v->mv_size != 24)
        return ar_errorf(errmsg, -AR_ECORRUPT, "entry record of %zu+%zu bytes", k->mv_size,
                    v->mv_size);
    memcpy(val, v->mv_data, 24);
    if (val[2] != record_sum(k->mv_data, k->mv_size, val, 16))
        return ar_errorf(errmsg, -AR_ECORRUPT, "entry '%.*s' in %llu: checksum mismatch",
                    (int)(k->mv_size - 8), (const char *)k->mv_data + 8,
                    (unsigned long long)get_u64_be(k->mv_data));
    meta__index_prefetch(&s->by_ino, meta__ino_hash(s, val[1]));
    b->keys[b->count++] = *k;
    return 0;
}

/* One staged entry: the first name of its inode, or an alias. Children are
 * appended unsorted; load_finish() orders them after, and names are indexed
 * after the pass (meta__reindex_names()). */
static int entry_load(struct meta_shard *s, struct entry_batch *b, uint32_t i, char *errmsg)
{
    const uint8_t *key = b->keys[i].mv_data;
    const uint64_t *val = b->vals[i];
    uint32_t len = (uint32_t)b->keys[i].mv_size - 8;
    uint64_t parent_ino = get_u64_be(key);

    if (b->parent == META_NIL || b->parent_ino != parent_ino) {
        b->parent = meta__find_ino(s, parent_ino);
        b->parent_ino = parent_ino;
    }
    uint32_t d = b->parent;
    uint32_t target = meta__find_ino(s, val[1]);
    if (d == META_NIL || !S_ISDIR(meta__mode(s, d)) || target == META_NIL ||
        memchr(key + 8, '/', len) != NULL || memchr(key + 8, 0, len) != NULL)
        return ar_errorf(errmsg, -AR_ECORRUPT, "entry '%.*s' in %llu names what is not there",
                    (int)len, key + 8, (unsigned long long)parent_ino);
    bool is_first = val[0] == val[1];
    uint32_t e = target;
    int rc = 0;
    if (is_first && (meta__node_at(s, target)->name != META_NIL || target == s->root))
        return ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu named twice", (unsigned long long)val[1]);
    if (!is_first && (S_ISDIR(meta__mode(s, target)) || val[0] == 0))
        return ar_errorf(errmsg, -AR_ECORRUPT, "entry '%.*s' in %llu: a second name of a directory "
                    "or a link key of 0", (int)len, key + 8, (unsigned long long)parent_ino);
    if (is_first && meta__node_has(meta__node_at(s, target), NODE_NAMELESS))
        return ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu is named but marked nameless",
                    (unsigned long long)val[1]);
    if (!is_first)
        rc = meta__node_alloc(s, &e);
    uint32_t dslot = (uint32_t)meta__node_at(s, d)->aux;
    struct meta__dir *dir = &s->dirs[dslot];
    if (rc == 0 && dir->count == dir->cap)
        rc = meta__dir_reserve(s, dslot, 1);
    uint32_t name_off = META_NIL;
    if (rc == 0)
        rc = meta__name_store(s, (const char *)key + 8, len, &name_off);
    if (rc != 0)
        return ar_errorf(errmsg, rc, "out of memory loading entries");
    struct meta__node *n = meta__node_at(s, e);
    if (!is_first) {
        *n = (struct meta__node){.ino = val[0], .aux = target};
        meta__node_flag(n, NODE_LIVE, true);
        meta__node_flag(n, NODE_ALIAS, true);
    }
    n->name = name_off;
    n->parent = d;
    dir = &s->dirs[dslot];
    dir->children[dir->count++] = e; /* sorted by load_finish() */
    dir->live++;
    s->entry_count++;
    return 0;
}

static int entry_flush(struct meta_shard *s, struct entry_batch *b, char *errmsg)
{
    int rc = 0;

    for (uint32_t i = 0; i < b->count && rc == 0; i++) {
        rc = entry_load(s, b, i, errmsg);
    }
    b->count = 0;
    return rc;
}

static int load_clients(struct meta_shard *s, MDB_txn *txn, MDB_dbi meta, char *errmsg)
{
    MDB_val k = {.mv_size = 7, .mv_data = "clients"};
    MDB_val v;
    uint32_t count;
    uint64_t sum;
    int rc = mdb_get(txn, meta, &k, &v);

    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0 || v.mv_size < 12)
        return ar_errorf(errmsg, -AR_ECORRUPT, "retry table unreadable");
    const uint8_t *p = v.mv_data;
    const uint8_t *end = p + v.mv_size - 8;
    memcpy(&sum, end, 8);
    if (sum != record_sum("clients", 7, p, v.mv_size - 8))
        return ar_errorf(errmsg, -AR_ECORRUPT, "retry table: checksum mismatch");
    memcpy(&count, p, 4);
    p += 4;
    if (count > META_CLIENTS_MAX)
        return ar_errorf(errmsg, -AR_ECORRUPT, "retry table: %u clients", count);
    s->clients = ar_calloc(count > 0 ? count : 1, sizeof(*s->clients));
    if (s->clients == NULL)
        return ar_errorf(errmsg, -ENOMEM, "out of memory for the retry table");
    s->client_cap = count > 0 ? count : 1;
    for (uint32_t i = 0; i < count; i++) {
        struct meta__client *c = &s->clients[i];
        if (end - p < (ptrdiff_t)CKPT_CLIENT_BYTES)
            return ar_errorf(errmsg, -AR_ECORRUPT, "retry table: short");
        memcpy(&c->id, p, 8);
        memcpy(&c->ack_below, p + 8, 8);
        memcpy(&c->last_ns, p + 16, 8);
        memcpy(&c->reply_count, p + 24, 4);
        p += CKPT_CLIENT_BYTES;
        if (c->reply_count > META_CLIENT_REPLIES_MAX || (i > 0 && c->id <= c[-1].id) ||
            c->id == 0 || end - p < (ptrdiff_t)(c->reply_count * CKPT_REPLY_BYTES))
            return ar_errorf(errmsg, -AR_ECORRUPT, "retry table: bad client %u", i);
        for (uint32_t r = 0; r < c->reply_count; r++) {
            struct meta__reply *x = &c->replies[r];
            uint64_t f[10];
            memcpy(&x->seq, p, 8);
            memcpy(&x->rc, p + 8, 4);
            memcpy(f, p + 12, sizeof(f));
            x->attr = (struct meta_attr){.ino = f[0], .mode = (uint32_t)f[1],
                                         .nlink = (uint32_t)f[2], .uid = (uint32_t)f[3],
                                         .gid = (uint32_t)f[4], .rdev = (uint32_t)f[5],
                                         .size = f[6], .atime_ns = (int64_t)f[7],
                                         .mtime_ns = (int64_t)f[8], .ctime_ns = (int64_t)f[9]};
            p += CKPT_REPLY_BYTES;
        }
        s->client_count++;
    }
    return p == end ? 0 : ar_errorf(errmsg, -AR_ECORRUPT, "retry table: trailing bytes");
}

static int load_info(struct meta_shard *s, MDB_txn *txn, MDB_dbi meta, char *errmsg)
{
    MDB_val k = {.mv_size = 4, .mv_data = "info"};
    MDB_val v;
    uint64_t sum;

    if (mdb_get(txn, meta, &k, &v) != 0 || v.mv_size < 8)
        return ar_errorf(errmsg, -AR_ECORRUPT, "the shard's info record is missing");
    memcpy(&sum, (const uint8_t *)v.mv_data + v.mv_size - 8, 8);
    if (sum != record_sum("info", 4, v.mv_data, v.mv_size - 8))
        return ar_errorf(errmsg, -AR_ECORRUPT, "info record: checksum mismatch");
    int rc = meta__info_decode(s, v.mv_data, v.mv_size - 8);
    if (rc == -AR_ECORRUPT)
        return ar_errorf(errmsg, rc, "info record: not a shard identity and map");
    return rc != 0 ? ar_errorf(errmsg, rc, "out of memory for the shard map") : 0;
}

/* Open holds; then every orphan (an inode with no links) must be held. */
static int load_holds(struct meta_shard *s, MDB_txn *txn, MDB_dbi meta, char *errmsg)
{
    MDB_val k = {.mv_size = 5, .mv_data = "holds"};
    MDB_val v;
    uint32_t count = 0;
    int rc = mdb_get(txn, meta, &k, &v);

    if (rc != 0 && rc != MDB_NOTFOUND)
        return ar_errorf(errmsg, -AR_ECORRUPT, "holds unreadable");
    if (rc == 0) {
        const uint8_t *p = v.mv_data;
        uint64_t sum;
        if (v.mv_size < 12)
            return ar_errorf(errmsg, -AR_ECORRUPT, "holds: short");
        memcpy(&count, p, 4);
        memcpy(&sum, p + v.mv_size - 8, 8);
        if (count > META_HOLDS_MAX || v.mv_size != 4 + (size_t)count * CKPT_HOLD_BYTES + 8 ||
            sum != record_sum("holds", 5, p, v.mv_size - 8))
            return ar_errorf(errmsg, -AR_ECORRUPT, "holds: malformed or checksum mismatch");
        s->holds = ar_malloc((count > 0 ? count : 1) * sizeof(*s->holds));
        if (s->holds == NULL || meta__map_reserve(&s->held, count > 0 ? count : 1) != 0)
            return ar_errorf(errmsg, -ENOMEM, "out of memory for %u holds", count);
        s->hold_cap = count > 0 ? count : 1;
        for (uint32_t i = 0; i < count; i++) {
            struct meta__hold *h = &s->holds[i];
            const uint8_t *q = p + 4 + (size_t)i * CKPT_HOLD_BYTES;
            memcpy(&h->session, q, 8);
            memcpy(&h->ino, q + 8, 8);
            memcpy(&h->count, q + 16, 4);
            uint32_t node = meta__find_ino(s, h->ino);
            if (node == META_NIL || h->count == 0 || h->session == 0 ||
                (i > 0 && (h[-1].session > h->session ||
                           (h[-1].session == h->session && h[-1].ino >= h->ino))))
                return ar_errorf(errmsg, -AR_ECORRUPT, "hold %u names no inode or is out of order", i);
            uint64_t n = 0;
            meta__map_get(&s->held, node, &n);
            if (meta__map_put(&s->held, node, n + h->count) != 0)
                return ar_errorf(errmsg, -ENOMEM, "out of memory for holds");
            s->hold_count++;
        }
    }
    for (uint32_t i = 0; i < s->node_count; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        if (meta__node_has(n, NODE_LIVE) && !meta__node_has(n, NODE_ALIAS) && i != s->root &&
            meta__node_nlink(n) == 0 && !meta__is_held(s, i))
            return ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu has no links and no holder",
                        (unsigned long long)n->ino);
    }
    return 0;
}

static int child_cmp(const void *a, const void *b, void *ctx)
{
    const struct meta_shard *s = ctx;
    uint64_t x = meta__node_at(s, *(const uint32_t *)a)->ino;
    uint64_t y = meta__node_at(s, *(const uint32_t *)b)->ino;

    return (x > y) - (x < y);
}

/* Link counts must agree with the names found: a file has one link per
 * name, a directory 2 + its subdirectories. A count that lies would later
 * underflow on an unlink. */
static int load_check_links(struct meta_shard *s, char *errmsg)
{
    uint32_t *links = ar_calloc(s->node_count, sizeof(uint32_t));
    int rc = 0;

    if (links == NULL)
        return ar_errorf(errmsg, -ENOMEM, "out of memory checking link counts");
    for (uint32_t i = 0; i < s->node_count; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        if (!meta__node_has(n, NODE_LIVE) || i == s->root)
            continue;
        uint32_t inode = meta__inode_of(s, i);
        if (n->name != META_NIL)
            links[inode]++;
        if (n->name != META_NIL && S_ISDIR(meta__mode(s, inode)))
            links[n->parent]++; /* the subdirectory's ".." */
    }
    for (uint32_t i = 0; i < s->node_count && rc == 0; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        if (!meta__node_has(n, NODE_LIVE) || meta__node_has(n, NODE_ALIAS))
            continue;
        bool is_dir = S_ISDIR(meta__mode(s, i));
        /* a directory without a name is an orphan: no links, no entries */
        bool is_orphan = i != s->root && n->name == META_NIL;
        uint32_t want = is_dir ? (is_orphan ? 0 : 2 + links[i] - (i == s->root ? 0 : 1))
                               : links[i];
        if (is_dir && is_orphan && (links[i] != 0 || s->dirs[n->aux].count != 0))
            want = UINT32_MAX;
        if (meta__node_nlink(n) != want)
            rc = ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu: nlink %u, but %u links found",
                      (unsigned long long)n->ino, meta__node_nlink(n), want);
    }
    ar_free(links);
    return rc;
}

/* Every named directory hangs from the root: a walk from it reaches them
 * all (a cycle of directories named inside each other would not be). */
static int load_check_tree(struct meta_shard *s, char *errmsg)
{
    uint32_t named_dirs = 1; /* the root */
    uint32_t reached = 0;

    for (uint32_t i = 0; i < s->node_count; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        named_dirs += meta__node_has(n, NODE_LIVE) && !meta__node_has(n, NODE_ALIAS) &&
                      n->name != META_NIL && i != s->root && S_ISDIR(meta__mode(s, i));
    }
    uint32_t *queue = ar_malloc(sizeof(uint32_t) * named_dirs);
    if (queue == NULL)
        return ar_errorf(errmsg, -ENOMEM, "out of memory checking the tree");
    queue[reached++] = s->root;
    /* bounded: each directory is queued once, by its one name */
    for (uint32_t head = 0; head < reached; head++) {
        const struct meta__dir *d = &s->dirs[meta__node_at(s, queue[head])->aux];
        for (uint32_t k = 0; k < d->count; k++) {
            uint32_t c = d->children[k];
            if (meta__node_has(meta__node_at(s, c), NODE_ALIAS) || !S_ISDIR(meta__mode(s, c)))
                continue;
            if (reached == named_dirs) {
                ar_free(queue);
                return ar_errorf(errmsg, -AR_ECORRUPT, "a directory is named twice");
            }
            queue[reached++] = c;
        }
    }
    ar_free(queue);
    if (reached != named_dirs)
        return ar_errorf(errmsg, -AR_ECORRUPT, "%u directories cannot be reached from the root",
                    named_dirs - reached);
    return 0;
}

/* Order children by entry key (no key twice), check that every inode is
 * named as it says (an inode without its first name must be marked
 * nameless), that the tree hangs together, and the link counts. */
static int load_finish(struct meta_shard *s, char *errmsg)
{
    for (uint32_t d = 0; d < s->dir_count; d++) {
        struct meta__dir *dir = &s->dirs[d];
        if (dir->children == NULL)
            continue;
        qsort_r(dir->children, dir->count, sizeof(uint32_t), child_cmp, s);
        for (uint32_t k = 1; k < dir->count; k++) {
            uint64_t key = meta__node_at(s, dir->children[k])->ino;
            if (meta__node_at(s, dir->children[k - 1])->ino == key)
                return ar_errorf(errmsg, -AR_ECORRUPT, "two entries of one directory have key %llu",
                            (unsigned long long)key);
        }
    }
    for (uint32_t i = 0; i < s->node_count; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        if (!meta__node_has(n, NODE_LIVE) || meta__node_has(n, NODE_ALIAS) || i == s->root)
            continue;
        if ((n->name == META_NIL) != meta__node_has(n, NODE_NAMELESS))
            return ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu has no name and no mark",
                        (unsigned long long)n->ino);
    }
    int rc = load_check_tree(s, errmsg);
    return rc == 0 ? load_check_links(s, errmsg) : rc;
}

/* Every record of the inodes (or entries) database into s. The key and
 * value pointers stay valid until the read transaction ends. */
static int load_db(struct meta_shard *s, MDB_txn *txn, MDB_dbi dbi, bool is_inodes, char *errmsg)
{
    struct entry_batch b = {.parent = META_NIL};
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    int err = 0;
    int rc = mdb_cursor_open(txn, dbi, &cur);

    if (rc != 0)
        return ar_errorf(errmsg, ar_err_from_mdb(rc), "%s", mdb_strerror(rc));
    /* Bounded by the records in the database: each turn moves the cursor on. */
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && err == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (is_inodes) {
            err = load_inode(s, &k, &v, errmsg);
            continue;
        }
        err = entry_stage(s, &b, &k, &v, errmsg);
        if (err == 0 && b.count == LOAD_BATCH)
            err = entry_flush(s, &b, errmsg);
    }
    mdb_cursor_close(cur);
    if (err == 0 && rc != MDB_NOTFOUND)
        err = ar_errorf(errmsg, ar_err_from_mdb(rc), "reading the checkpoint: %s", mdb_strerror(rc));
    if (err == 0)
        err = entry_flush(s, &b, errmsg);
    if (err == 0)
        err = is_inodes ? meta__reindex_inos(s) : meta__reindex_names(s);
    if (err == -ENOMEM)
        ar_errorf(errmsg, err, "out of memory indexing the checkpoint");
    return err;
}

int meta_checkpoint_load(struct meta_checkpoint *c, struct meta_shard **out,
                         uint64_t *applied_index, char *errmsg)
{
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755};
    struct meta_shard *s = NULL;
    MDB_txn *txn = NULL;
    uint64_t root = 0;
    int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);

    if (rc != 0)
        return ar_errorf(errmsg, ar_err_from_mdb(rc), "checkpoint %s: %s", c->dir, mdb_strerror(rc));
    rc = ckpt_read_meta(c, txn, &root, errmsg);
    if (rc == 1)
        rc = ar_errorf(errmsg, -ENOENT, "checkpoint %s is empty", c->dir);
    if (rc == 0) {
        cfg.root_ino = root;
        rc = meta_shard_new(&cfg, &s);
    }
    if (rc == 0)
        rc = load_db(s, txn, c->inodes, true, errmsg);
    if (rc == 0)
        rc = load_db(s, txn, c->entries, false, errmsg);
    if (rc == 0)
        rc = load_finish(s, errmsg);
    if (rc == 0)
        rc = load_clients(s, txn, c->meta, errmsg);
    if (rc == 0)
        rc = load_holds(s, txn, c->meta, errmsg);
    if (rc == 0)
        rc = load_info(s, txn, c->meta, errmsg);
    if (rc == 0) {
        MDB_val k = {.mv_size = 8, .mv_data = "ino_high"};
        MDB_val v;
        int got = mdb_get(txn, c->meta, &k, &v);
        if (got != 0 || v.mv_size != 8)
            rc = ar_errorf(errmsg, -AR_ECORRUPT, "checkpoint %s: ino_high missing", c->dir);
        else
            memcpy(&s->ino_high, v.mv_data, 8);
        /* never below a number the records use */
        for (uint32_t i = 0; rc == 0 && i < s->node_count; i++) {
            const struct meta__node *n = meta__node_at(s, i);
            if (meta__node_has(n, NODE_LIVE) && n->ino > s->ino_high)
                rc = ar_errorf(errmsg, -AR_ECORRUPT, "inode %llu above ino_high",
                          (unsigned long long)n->ino);
        }
    }
    mdb_txn_abort(txn);
    /* tracked from here: the changes after the checkpoint, not the whole */
    if (rc == 0)
        rc = meta_shard_track(s);
    if (rc == 0) {
        s->is_all_dirty = false;
        rc = meta__dirty_reserve(s);
    }
    if (rc != 0) {
        meta_shard_free(s); /* nothing half-loaded escapes */
        return rc;
    }
    *applied_index = c->applied_index;
    *out = s;
    return 0;
}

/* ---- snapshots as streams ------------------------------------------------------------------ */

int meta_checkpoint_export(struct meta_checkpoint *c, int fd, char *errmsg)
{
    int rc = mdb_env_copyfd2(c->env, fd, MDB_CP_COMPACT);

    if (rc != 0)
        return ar_errorf(errmsg, ar_err_from_mdb(rc), "export of %s: %s", c->dir, mdb_strerror(rc));
    return 0;
}

static int copy_stream(int from, int to, char *errmsg)
{
    uint8_t *buf = ar_malloc(CKPT_IMPORT_CHUNK);
    int rc = 0;

    if (buf == NULL)
        return ar_errorf(errmsg, -ENOMEM, "out of memory");
    /* Until the end of the stream; each turn reads at least one byte. */
    for (;;) {
        ssize_t n = read(from, buf, CKPT_IMPORT_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                rc = ar_errorf(errmsg, -errno, "reading the snapshot: %s", strerror(errno));
            break;
        }
        for (ssize_t done = 0; done < n && rc == 0;) {
            ssize_t w = write(to, buf + done, (size_t)(n - done));
            if (w < 0 && errno != EINTR)
                rc = ar_errorf(errmsg, -errno, "writing the snapshot: %s", strerror(errno));
            done += w > 0 ? w : 0;
        }
        if (rc != 0)
            break;
    }
    ar_free(buf);
    return rc;
}

int meta_checkpoint_import(const char *dir, int fd, char *errmsg)
{
    char tmp[1100];
    char path[1200];
    struct meta_checkpoint *c = NULL;
    struct meta_shard *s = NULL;
    uint64_t index;
    int out;
    int rc;

    snprintf(tmp, sizeof(tmp), "%s.import-%ld", dir, (long)getpid());
    if (mkdir(tmp, 0755) != 0)
        return ar_errorf(errmsg, -errno, "making %s: %s", tmp, strerror(errno));
    snprintf(path, sizeof(path), "%s/data.mdb", tmp);
    out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        rc = ar_errorf(errmsg, -errno, "creating %s: %s", path, strerror(errno));
        goto out_remove;
    }
    rc = copy_stream(fd, out, errmsg);
    if (rc == 0 && fsync(out) != 0)
        rc = ar_errorf(errmsg, -EIO, "fsync of %s: %s", path, strerror(errno));
    close(out);
    /* check it whole before it takes the final name */
    if (rc == 0)
        rc = meta_checkpoint_open(tmp, &c, errmsg);
    if (rc == 0)
        rc = meta_checkpoint_load(c, &s, &index, errmsg);
    meta_shard_free(s);
    meta_checkpoint_close(c);
    if (rc == 0) {
        rmdir(dir); /* an empty one may stand there; a full one makes rename fail */
        if (rename(tmp, dir) != 0)
            rc = ar_errorf(errmsg, -errno, "renaming the snapshot to %s: %s", dir, strerror(errno));
    }
    if (rc == 0)
        return 0;
out_remove:
    snprintf(path, sizeof(path), "%s/data.mdb", tmp);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", tmp);
    unlink(path);
    rmdir(tmp);
    return rc;
}
