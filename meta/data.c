/* meta/data.c - file data maps: chunks, stacked slices, and what a read sees.
 *
 * A regular file's data is in one of three forms, told by its node's flags:
 *   - none: no slice; every byte below the size reads as zero;
 *   - inline (NODE_DATA_INLINE): one slice of node->size bytes at offset 0,
 *     shown whole; node->aux is its id. A small file written once (the
 *     common case) costs no memory beyond its node;
 *   - map (NODE_DATA_MAP): node->aux points to a struct meta__fmap, the
 *     chunks in ascending order, each a stack of slices, oldest first.
 * The form is canonical: after every command, data_normalize() picks the
 * smallest form that shows the same bytes, so replicas hold the same form
 * and write the same checkpoint records.
 *
 * Invariants: every slice shows bytes below the file size (a truncation
 * trims the slices); a slice lies within its chunk; no slice is wholly
 * covered by a newer one (a write drops those); the oldest slice of a chunk
 * is never a hole (a hole over nothing shows nothing). So a chunk holds few
 * slices unless writes overlap in part, and META_CHUNK_SLICES_MAX bounds it.
 * Thread: none; one thread uses a shard at a time. */
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shard.h"

#define FALLOC_MODES (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)

/* ---- forms ------------------------------------------------------------------- */

struct meta__fmap *meta__fmap_of(const struct meta_shard *s, uint32_t inode)
{
    const struct meta__node *n = meta__node_at(s, inode);

    return meta__node_has(n, NODE_DATA_MAP) ? (struct meta__fmap *)(uintptr_t)n->aux : NULL;
}

static void fmap_free(struct meta__fmap *f)
{
    for (uint32_t i = 0; i < f->count; i++) {
        ar_free(f->chunks[i].slices);
    }
    ar_free(f->chunks);
    ar_free(f);
}

/* Drop a file's data, whatever its form. */
void meta__data_free(struct meta_shard *s, uint32_t inode)
{
    struct meta__node *n = meta__node_at(s, inode);
    struct meta__fmap *f = meta__fmap_of(s, inode);

    if (f != NULL)
        fmap_free(f);
    if (meta__node_has(n, NODE_DATA_MAP) || meta__node_has(n, NODE_DATA_INLINE))
        n->aux = 0;
    meta__node_flag(n, NODE_DATA_MAP, false);
    meta__node_flag(n, NODE_DATA_INLINE, false);
}

/* Put the data into map form (an empty map for none). -ENOMEM changes nothing. */
static int data_to_map(struct meta_shard *s, uint32_t inode)
{
    struct meta__node *n = meta__node_at(s, inode);
    struct meta__fmap *f;

    if (meta__node_has(n, NODE_DATA_MAP))
        return 0;
    f = ar_calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    if (meta__node_has(n, NODE_DATA_INLINE)) {
        f->chunks = ar_calloc(1, sizeof(*f->chunks));
        struct meta_slice *sl = ar_malloc(sizeof(*sl));
        if (f->chunks == NULL || sl == NULL) {
            ar_free(sl);
            fmap_free(f);
            return -ENOMEM;
        }
        *sl = (struct meta_slice){.id = n->aux, .size = (uint32_t)n->size, .len = (uint32_t)n->size};
        f->chunks[0] = (struct meta__chunk){.index = 0, .count = 1, .cap = 1, .slices = sl};
        f->count = 1;
        f->cap = 1;
        meta__node_flag(n, NODE_DATA_INLINE, false);
    }
    n->aux = (uint64_t)(uintptr_t)f;
    meta__node_flag(n, NODE_DATA_MAP, true);
    return 0;
}

/* The smallest form showing the same bytes: empty chunks go, an empty map
 * is none, one whole slice from offset 0 is inline. Never fails. */
static void data_normalize(struct meta_shard *s, uint32_t inode)
{
    struct meta__node *n = meta__node_at(s, inode);
    struct meta__fmap *f = meta__fmap_of(s, inode);

    if (f == NULL)
        return;
    uint32_t kept = 0;
    f->slice_total = 0;
    for (uint32_t i = 0; i < f->count; i++) {
        f->slice_total += f->chunks[i].count;
        if (f->chunks[i].count > 0)
            f->chunks[kept++] = f->chunks[i];
        else
            ar_free(f->chunks[i].slices);
    }
    f->count = kept;
    if (kept == 0) {
        meta__data_free(s, inode);
        return;
    }
    const struct meta_slice *sl = &f->chunks[0].slices[0];
    if (kept == 1 && f->chunks[0].index == 0 && f->chunks[0].count == 1 && sl->id != 0 &&
        sl->pos == 0 && sl->off == 0 && sl->len == sl->size && sl->len == n->size) {
        uint64_t id = sl->id;
        meta__data_free(s, inode);
        n->aux = id;
        meta__node_flag(n, NODE_DATA_INLINE, true);
    }
}

/* Index of the chunk numbered index in f, or where it would go. */
static uint32_t chunk_pos(const struct meta__fmap *f, uint32_t index, bool *found)
{
    uint32_t lo = 0;
    uint32_t hi = f->count;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (f->chunks[mid].index < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < f->count && f->chunks[lo].index == index;
    return lo;
}

/* The chunk numbered index, made if absent, with room for one more slice.
 * -ENOMEM leaves the map as it was but for capacity. */
static int chunk_reserve(struct meta__fmap *f, uint32_t index, struct meta__chunk **out)
{
    bool found;
    uint32_t at = chunk_pos(f, index, &found);

    if (!found) {
        if (f->count == f->cap) {
            uint32_t cap = f->cap < 4 ? 4 : f->cap + f->cap / 2;
            struct meta__chunk *bigger = ar_realloc(f->chunks, sizeof(*bigger) * cap);
            if (bigger == NULL)
                return -ENOMEM;
            f->chunks = bigger;
            f->cap = cap;
        }
        memmove(&f->chunks[at + 1], &f->chunks[at], sizeof(*f->chunks) * (f->count - at));
        f->chunks[at] = (struct meta__chunk){.index = index};
        f->count++;
    }
    struct meta__chunk *c = &f->chunks[at];
    if (c->count == c->cap) {
        uint32_t cap = c->cap < 2 ? 2 : c->cap + c->cap / 2;
        struct meta_slice *bigger = ar_realloc(c->slices, sizeof(*bigger) * cap);
        if (bigger == NULL)
            return -ENOMEM; /* an empty new chunk goes at data_normalize() */
        c->slices = bigger;
        c->cap = cap;
    }
    *out = c;
    return 0;
}

/* ---- changing a chunk ------------------------------------------------------------ */

static bool covers(const struct meta_slice *top, const struct meta_slice *below)
{
    return top->pos <= below->pos && below->pos + below->len <= top->pos + top->len;
}

/* Slices of c that stay when sl goes on top (sl not counted). */
static uint32_t chunk_kept(const struct meta__chunk *c, const struct meta_slice *sl)
{
    uint32_t kept = 0;

    for (uint32_t i = 0; i < c->count; i++) {
        kept += !covers(sl, &c->slices[i]);
    }
    return kept;
}

/* Put sl on top of c (which has room), dropping what it covers and any
 * holes left at the bottom. */
static void chunk_push(struct meta__chunk *c, const struct meta_slice *sl)
{
    uint32_t kept = 0;

    for (uint32_t i = 0; i < c->count; i++) {
        if (!covers(sl, &c->slices[i]))
            c->slices[kept++] = c->slices[i];
    }
    c->slices[kept++] = *sl;
    uint32_t bottom = 0;
    while (bottom < kept && c->slices[bottom].id == 0) {
        bottom++;
    }
    memmove(c->slices, c->slices + bottom, sizeof(*c->slices) * (kept - bottom));
    c->count = kept - bottom;
}

/* Cut every slice of c at byte `end` of the chunk. */
static void chunk_trim(struct meta__chunk *c, uint32_t end)
{
    uint32_t kept = 0;

    for (uint32_t i = 0; i < c->count; i++) {
        struct meta_slice sl = c->slices[i];
        if (sl.pos >= end)
            continue;
        if (sl.pos + sl.len > end)
            sl.len = end - sl.pos;
        if (kept == 0 && sl.id == 0)
            continue; /* a hole at the bottom shows nothing */
        c->slices[kept++] = sl;
    }
    c->count = kept;
}

/* ---- truncation (setattr) --------------------------------------------------------- */

int meta__data_truncate_reserve(struct meta_shard *s, uint32_t inode, uint64_t size)
{
    struct meta__node *n = meta__node_at(s, inode);

    /* inline data survives only a truncation to its own size */
    if (meta__node_has(n, NODE_DATA_INLINE) && size != n->size)
        return data_to_map(s, inode);
    return 0;
}

void meta__data_truncate(struct meta_shard *s, uint32_t inode, uint64_t size)
{
    struct meta__fmap *f = meta__fmap_of(s, inode);

    if (f != NULL) {
        for (uint32_t i = 0; i < f->count; i++) {
            uint64_t start = (uint64_t)f->chunks[i].index * META_CHUNK_BYTES;
            if (size <= start)
                f->chunks[i].count = 0;
            else if (size - start < META_CHUNK_BYTES)
                chunk_trim(&f->chunks[i], (uint32_t)(size - start));
        }
    }
    meta__node_at(s, inode)->size = size;
    data_normalize(s, inode);
}

/* Undo a reserve whose command failed after it: the form goes back. */
void meta__data_unreserve(struct meta_shard *s, uint32_t inode)
{
    data_normalize(s, inode);
}

/* ---- write and fallocate ----------------------------------------------------------- */

/* The regular file of cmd->ino, for a data command. */
static int data_file(const struct meta_shard *s, uint64_t ino, uint32_t *out)
{
    uint32_t n = meta__find_ino(s, ino);

    if (n == META_NIL)
        return -ENOENT;
    if (S_ISDIR(meta__mode(s, n)))
        return -EISDIR;
    if (!S_ISREG(meta__mode(s, n)))
        return -EINVAL;
    *out = n;
    return 0;
}

static int write_check(const struct meta_cmd *cmd)
{
    const struct meta_slice *sl = &cmd->slice;

    if (sl->id == 0 || sl->len == 0 || sl->size > META_CHUNK_BYTES ||
        (uint64_t)sl->off + sl->len > sl->size)
        return -EINVAL;
    if (cmd->offset > META_FILE_BYTES_MAX || sl->len > META_FILE_BYTES_MAX - cmd->offset)
        return -EFBIG;
    if (cmd->offset % META_CHUNK_BYTES + sl->len > META_CHUNK_BYTES)
        return -EINVAL; /* one chunk per write; the client cuts at chunk edges */
    return 0;
}

/* Reserve what putting sl into chunk `index` needs. */
static int push_reserve(struct meta_shard *s, uint32_t inode, uint32_t index,
                        const struct meta_slice *sl, struct meta__chunk **out)
{
    struct meta__fmap *f = meta__fmap_of(s, inode);
    bool found;

    if (f != NULL) {
        uint32_t at = chunk_pos(f, index, &found);
        uint32_t count = found ? f->chunks[at].count : 0;
        uint32_t kept = found ? chunk_kept(&f->chunks[at], sl) : 0;
        if (kept + 1 > META_CHUNK_SLICES_MAX)
            return -AR_ECHUNKFULL;
        /* past the file's bound: compacting this chunk makes room if it
         * holds several slices; else the file's map is full */
        if (f->slice_total + 1 > META_FILE_SLICES_MAX + (count - kept))
            return count > 1 ? -AR_ECHUNKFULL : -EFBIG;
    }
    int rc = data_to_map(s, inode);
    if (rc == 0)
        rc = chunk_reserve(meta__fmap_of(s, inode), index, out);
    return rc;
}

/* What a write or fallocate by a user without CAP_FSETID does to the mode
 * (setattr_should_drop_suidgid()): set-user-ID goes; set-group-ID goes when
 * group-executable, or when the writer is not in the file's group. */
uint32_t meta__mode_after_write(const struct meta_shard *s, uint32_t inode,
                                const struct meta_cred *c)
{
    const struct meta__attr_class *a = meta__attr_of(s, meta__node_at(s, inode)->attr);
    uint32_t mode = a->mode;

    if (c->uid == 0 || !S_ISREG(mode))
        return mode;
    mode &= ~(uint32_t)S_ISUID;
    if ((mode & S_ISGID) && ((mode & S_IXGRP) || !meta__in_group(c, a->gid)))
        mode &= ~(uint32_t)S_ISGID;
    return mode;
}

/* The last steps of a data change: mode, size, times. Reserve the side
 * table and the new attribute class before; cannot fail. */
static void data_finish(struct meta_shard *s, uint32_t inode, uint32_t attr, uint64_t size,
                        int64_t now)
{
    struct meta__node *n = meta__node_at(s, inode);

    if (attr != n->attr) {
        meta__attr_put(s, n->attr);
        n->attr = attr;
    }
    s->file_bytes = s->file_bytes - n->size + size;
    n->size = size;
    data_normalize(s, inode);
    meta__set_times(s, inode, &now, now);
}

/* The attribute class after a write by c; reserved last, as it takes a reference. */
static int data_attr(struct meta_shard *s, uint32_t inode, const struct meta_cred *c,
                     uint32_t *attr)
{
    const struct meta__attr_class *a = meta__attr_of(s, meta__node_at(s, inode)->attr);
    uint32_t mode = meta__mode_after_write(s, inode, c);

    *attr = meta__node_at(s, inode)->attr;
    return mode == a->mode ? 0 : meta__attr_get(s, mode, a->uid, a->gid, attr);
}

/* Chunk `index` of regular file n (an inline file's one slice in *one),
 * and in *limit its bytes below the file's size. */
static const struct meta__chunk *chunk_at(const struct meta_shard *s, uint32_t n, uint64_t index,
                                          struct meta__chunk *one, struct meta_slice *inline_slice,
                                          uint32_t *limit)
{
    const struct meta__node *node = meta__node_at(s, n);
    uint64_t start = index * META_CHUNK_BYTES;
    uint64_t left = node->size > start ? node->size - start : 0;

    *limit = left < META_CHUNK_BYTES ? (uint32_t)left : META_CHUNK_BYTES;
    *one = (struct meta__chunk){0};
    if (meta__node_has(node, NODE_DATA_INLINE)) {
        *inline_slice = (struct meta_slice){.id = node->aux, .size = (uint32_t)node->size,
                                            .len = (uint32_t)node->size};
        *one = (struct meta__chunk){.count = 1, .slices = inline_slice};
    } else if (meta__fmap_of(s, n) != NULL) {
        const struct meta__fmap *f = meta__fmap_of(s, n);
        bool found;
        uint32_t at = chunk_pos(f, (uint32_t)index, &found);
        if (found)
            return &f->chunks[at];
    }
    return one;
}

/* What a read_map of chunk `index` answers as map_hash: its stack of
 * slices and the file's bytes in it; any write, hole or truncation there
 * changes it. Never 0 (0: unchecked). */
static uint64_t chunk_map_hash(const struct meta_shard *s, uint32_t n, uint64_t index)
{
    struct meta__chunk one;
    struct meta_slice inline_slice;
    uint32_t limit;
    const struct meta__chunk *c = chunk_at(s, n, index, &one, &inline_slice, &limit);
    uint64_t h = meta__hash_u64(meta__hash_u64(0, index), limit);

    for (uint32_t i = 0; i < c->count; i++) {
        const struct meta_slice *sl = &c->slices[i];
        const uint64_t f[] = {sl->id, sl->size, sl->off, sl->len, sl->pos};
        h = meta__hash_bytes(h, f, sizeof(f));
    }
    return h != 0 ? h : 1;
}

static int op_write(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t n;
    int rc = data_file(s, cmd->ino, &n);

    if (rc == 0)
        rc = write_check(cmd);
    if (rc == 0 && cmd->if_map_hash != 0 &&
        chunk_map_hash(s, n, cmd->offset / META_CHUNK_BYTES) != cmd->if_map_hash)
        rc = -ESTALE; /* a compaction of a chunk that changed since it was read */
    if (rc != 0)
        return rc;
    struct meta__node *node = meta__node_at(s, n);
    struct meta_slice sl = cmd->slice;
    uint64_t end = cmd->offset + sl.len;
    uint64_t size = end > node->size ? end : node->size;
    uint32_t attr;
    struct meta__chunk *c = NULL;
    sl.pos = (uint32_t)(cmd->offset % META_CHUNK_BYTES);
    /* a first write of the whole file from its start needs no memory */
    bool is_inline = !meta__node_has(node, NODE_DATA_MAP) &&
                     !meta__node_has(node, NODE_DATA_INLINE) && cmd->offset == 0 &&
                     sl.off == 0 && sl.len == sl.size && size == sl.len;
    rc = meta__reserve_side(s, 1);
    if (rc == 0 && !is_inline)
        rc = push_reserve(s, n, (uint32_t)(cmd->offset / META_CHUNK_BYTES), &sl, &c);
    if (rc == 0)
        rc = data_attr(s, n, &cmd->cred, &attr);
    if (rc != 0) {
        data_normalize(s, n);
        return rc;
    }
    if (is_inline) {
        node->aux = sl.id;
        meta__node_flag(node, NODE_DATA_INLINE, true);
    } else {
        chunk_push(c, &sl);
    }
    data_finish(s, n, attr, size, cmd->now_ns);
    meta__attr_fill(s, n, &r->attr);
    return 0;
}

/* vfs_fallocate()'s checks, in its order. */
static int falloc_check(const struct meta_shard *s, const struct meta_cmd *cmd, uint32_t *n)
{
    uint32_t mode = cmd->flags;

    if (cmd->offset > INT64_MAX || cmd->length == 0 || cmd->length > INT64_MAX)
        return -EINVAL;
    if ((mode & ~(uint32_t)FALLOC_MODES) != 0)
        return -EOPNOTSUPP; /* collapse, insert, unshare: not offered */
    if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE))
        return -EOPNOTSUPP;
    if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
        return -EOPNOTSUPP;
    *n = meta__find_ino(s, cmd->ino);
    if (*n == META_NIL)
        return -ENOENT;
    if (S_ISDIR(meta__mode(s, *n)))
        return -EISDIR;
    if (!S_ISREG(meta__mode(s, *n)))
        return -ENODEV;
    if (cmd->offset + cmd->length > META_FILE_BYTES_MAX)
        return -EFBIG;
    return 0;
}

/* The hole a punch or zero range puts into chunk i, clipped to the file. */
static bool hole_in_chunk(uint32_t index, uint64_t from, uint64_t to, struct meta_slice *out)
{
    uint64_t start = (uint64_t)index * META_CHUNK_BYTES;
    uint64_t a = from > start ? from : start;
    uint64_t b = to < start + META_CHUNK_BYTES ? to : start + META_CHUNK_BYTES;

    if (a >= b)
        return false;
    *out = (struct meta_slice){.pos = (uint32_t)(a - start), .len = (uint32_t)(b - a)};
    return true;
}

static int op_fallocate(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t n;
    int rc = falloc_check(s, cmd, &n);

    if (rc != 0)
        return rc;
    struct meta__node *node = meta__node_at(s, n);
    uint64_t end = cmd->offset + cmd->length;
    uint64_t size = node->size;
    bool is_zeroing = (cmd->flags & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) != 0;
    uint64_t hole_end = end < node->size ? end : node->size; /* slices stop at the size */
    uint32_t attr;

    if (!(cmd->flags & FALLOC_FL_KEEP_SIZE) && end > size)
        size = end;
    rc = meta__reserve_side(s, 1);
    /* inline data means one slice exactly the file's size: a growing
     * file needs a map */
    if (rc == 0 && size != node->size)
        rc = meta__data_truncate_reserve(s, n, size);
    /* only chunks that hold slices need a hole: the rest read as zeros */
    if (rc == 0 && is_zeroing && cmd->offset < hole_end && meta__node_has(node, NODE_DATA_INLINE))
        rc = data_to_map(s, n);
    struct meta__fmap *f = meta__fmap_of(s, n);
    if (rc == 0 && is_zeroing && f != NULL && f->slice_total + f->count > META_FILE_SLICES_MAX)
        rc = -EFBIG; /* a hole per chunk would pass the file's bound */
    for (uint32_t i = 0; rc == 0 && is_zeroing && f != NULL && i < f->count; i++) {
        struct meta_slice hole;
        struct meta__chunk *c;
        if (hole_in_chunk(f->chunks[i].index, cmd->offset, hole_end, &hole))
            rc = push_reserve(s, n, f->chunks[i].index, &hole, &c);
    }
    if (rc == 0)
        rc = data_attr(s, n, &cmd->cred, &attr);
    if (rc != 0) {
        data_normalize(s, n);
        return rc;
    }
    for (uint32_t i = 0; is_zeroing && f != NULL && i < f->count; i++) {
        struct meta_slice hole;
        if (hole_in_chunk(f->chunks[i].index, cmd->offset, hole_end, &hole))
            chunk_push(&f->chunks[i], &hole);
    }
    data_finish(s, n, attr, size, cmd->now_ns);
    meta__attr_fill(s, n, &r->attr);
    return 0;
}

int meta__data_apply(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    return cmd->op == META_OP_WRITE ? op_write(s, cmd, r) : op_fallocate(s, cmd, r);
}

/* ---- reading --------------------------------------------------------------------- */

/* Lay sl over the sorted, disjoint pieces out[0..*count) (room for one
 * more than they can need): what it covers goes, it goes in. */
static void overlay(struct meta_slice *out, uint32_t *count, const struct meta_slice *sl)
{
    uint32_t a = sl->pos;
    uint32_t b = sl->pos + sl->len;
    uint32_t i = 0;
    uint32_t n = *count;

    while (i < n && out[i].pos + out[i].len <= a) {
        i++;
    }
    /* a piece that starts before a and runs past it keeps its head */
    if (i < n && out[i].pos < a) {
        struct meta_slice head = out[i];
        head.len = a - head.pos;
        if (out[i].pos + out[i].len > b) { /* sl falls inside it: split in three */
            struct meta_slice tail = out[i];
            tail.off += b - tail.pos;
            tail.len = tail.pos + tail.len - b;
            tail.pos = b;
            memmove(&out[i + 3], &out[i + 1], sizeof(*out) * (n - i - 1));
            out[i] = head;
            out[i + 1] = *sl;
            out[i + 2] = tail;
            *count = n + 2;
            return;
        }
        out[i++] = head;
    }
    uint32_t j = i;
    while (j < n && out[j].pos + out[j].len <= b) {
        j++; /* wholly covered */
    }
    if (j < n && out[j].pos < b) { /* covered in its head: keep the tail */
        out[j].off += b - out[j].pos;
        out[j].len = out[j].pos + out[j].len - b;
        out[j].pos = b;
    }
    /* out[i..j) goes, sl goes in at i */
    memmove(&out[i + 1], &out[j], sizeof(*out) * (n - j));
    out[i] = *sl;
    *count = n - (j - i) + 1;
}

/* sl cut at byte `limit` of its chunk; false if it lies wholly past it. */
static bool slice_cut(struct meta_slice *sl, uint32_t limit)
{
    if (sl->pos >= limit)
        return false;
    if (sl->pos + sl->len > limit)
        sl->len = limit - sl->pos;
    return true;
}

/* Resolve chunk c over its first `limit` bytes into out, gaps as holes. */
static int chunk_resolve(const struct meta__chunk *c, uint32_t limit, struct meta_slice *out,
                         uint32_t cap, uint32_t *count)
{
    uint32_t n = 0;

    if (cap < 2 * c->count + 1)
        return -ERANGE;
    for (uint32_t i = 0; i < c->count; i++) {
        struct meta_slice sl = c->slices[i];
        if (slice_cut(&sl, limit))
            overlay(out, &n, &sl);
    }
    /* drop the holes, then lay them again over every gap up to limit */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (out[i].id != 0)
            out[kept++] = out[i];
    }
    n = kept;
    uint32_t gaps = 0;
    for (uint32_t i = 0, at = 0; i <= n; i++) {
        uint32_t next = i < n ? out[i].pos : limit;
        gaps += next > at;
        at = i < n ? out[i].pos + out[i].len : at;
    }
    AR_ASSERT(n + gaps <= cap); /* pieces and gaps alternate: <= 2 * count + 1 */
    uint32_t w = n + gaps; /* fill from the back: w never drops below the piece read */
    uint32_t end = limit;
    for (uint32_t i = n; i > 0; i--) {
        struct meta_slice piece = out[i - 1];
        uint32_t piece_end = piece.pos + piece.len;
        if (end > piece_end)
            out[--w] = (struct meta_slice){.pos = piece_end, .len = end - piece_end};
        out[--w] = piece;
        end = piece.pos;
    }
    if (end > 0)
        out[--w] = (struct meta_slice){.len = end};
    AR_ASSERT(w == 0);
    *count = n + gaps;
    return 0;
}

/* Chunk c's slices as they stack, cut at limit (META_READ_MAP_STACK). */
static int chunk_stack(const struct meta__chunk *c, uint32_t limit, struct meta_slice *out,
                       uint32_t cap, uint32_t *count)
{
    uint32_t n = 0;

    if (cap < c->count)
        return -ERANGE;
    for (uint32_t i = 0; i < c->count; i++) {
        struct meta_slice sl = c->slices[i];
        if (slice_cut(&sl, limit))
            out[n++] = sl;
    }
    *count = n;
    return 0;
}

int meta__data_read(const struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t n;
    int rc = data_file(s, cmd->ino, &n);

    if (rc != 0)
        return rc;
    if (r->slices == NULL || (cmd->flags & ~META_READ_MAP_STACK) != 0)
        return -EINVAL;
    uint64_t index = cmd->offset / META_CHUNK_BYTES;

    meta__attr_fill(s, n, &r->attr);
    r->chunk_offset = index * META_CHUNK_BYTES;
    r->slice_count = 0;
    r->map_hash = chunk_map_hash(s, n, index);
    if (cmd->offset >= meta__node_at(s, n)->size)
        return 0; /* at or past the end: nothing to read */
    struct meta__chunk one;
    struct meta_slice inline_slice;
    uint32_t limit;
    const struct meta__chunk *c = chunk_at(s, n, index, &one, &inline_slice, &limit);
    if (cmd->flags & META_READ_MAP_STACK)
        return chunk_stack(c, limit, r->slices, r->slice_cap, &r->slice_count);
    return chunk_resolve(c, limit, r->slices, r->slice_cap, &r->slice_count);
}

/* ---- hashing and the checkpoint ---------------------------------------------------- */

static uint64_t slice_hash(uint64_t h, uint32_t index, const struct meta_slice *sl)
{
    const uint64_t f[] = {index, sl->id, sl->size, sl->off, sl->len, sl->pos};

    return meta__hash_bytes(h, f, sizeof(f));
}

uint64_t meta__data_hash(const struct meta_shard *s, uint32_t inode, uint64_t h)
{
    const struct meta__node *n = meta__node_at(s, inode);
    const struct meta__fmap *f = meta__fmap_of(s, inode);

    if (meta__node_has(n, NODE_DATA_INLINE)) {
        struct meta_slice sl = {.id = n->aux, .size = (uint32_t)n->size, .len = (uint32_t)n->size};
        return slice_hash(h, 0, &sl);
    }
    for (uint32_t i = 0; f != NULL && i < f->count; i++) {
        for (uint32_t k = 0; k < f->chunks[i].count; k++) {
            h = slice_hash(h, f->chunks[i].index, &f->chunks[i].slices[k]);
        }
    }
    return h;
}

void meta_shard_each_slice(const struct meta_shard *s, void (*fn)(void *ctx, uint64_t id),
                           void *ctx)
{
    for (uint32_t i = 0; i < s->node_count; i++) {
        const struct meta__node *n = meta__node_at(s, i);
        if (!meta__node_has(n, NODE_LIVE) || meta__node_has(n, NODE_ALIAS))
            continue;
        if (meta__node_has(n, NODE_DATA_INLINE)) {
            fn(ctx, n->aux);
            continue;
        }
        const struct meta__fmap *f = meta__node_has(n, NODE_DATA_MAP) ? meta__fmap_of(s, i) : NULL;
        for (uint32_t c = 0; f != NULL && c < f->count; c++) {
            for (uint32_t k = 0; k < f->chunks[c].count; k++) {
                if (f->chunks[c].slices[k].id != 0)
                    fn(ctx, f->chunks[c].slices[k].id);
            }
        }
    }
}

/* The map record: per chunk [u32 index][u32 count], then per slice
 * [u64 id][u32 size][u32 off][u32 len][u32 pos], little-endian. */
#define MAP_CHUNK_BYTES 8u
#define MAP_SLICE_BYTES 24u
_Static_assert((META_FILE_BYTES_MAX / META_CHUNK_BYTES) * MAP_CHUNK_BYTES +
                       (uint64_t)META_FILE_SLICES_MAX * MAP_SLICE_BYTES <= META_MAP_BYTES_MAX,
               "any file's map fits one checkpoint record, so a collect never fails on it");

uint64_t meta__data_encoded_bytes(const struct meta_shard *s, uint32_t inode)
{
    const struct meta__fmap *f = meta__fmap_of(s, inode);
    uint64_t bytes = 0;

    for (uint32_t i = 0; f != NULL && i < f->count; i++) {
        bytes += MAP_CHUNK_BYTES + (uint64_t)MAP_SLICE_BYTES * f->chunks[i].count;
    }
    return bytes;
}

void meta__data_encode(const struct meta_shard *s, uint32_t inode, uint8_t *p)
{
    const struct meta__fmap *f = meta__fmap_of(s, inode);

    for (uint32_t i = 0; f != NULL && i < f->count; i++) {
        const struct meta__chunk *c = &f->chunks[i];
        memcpy(p, &c->index, 4);
        memcpy(p + 4, &c->count, 4);
        p += MAP_CHUNK_BYTES;
        for (uint32_t k = 0; k < c->count; k++) {
            const struct meta_slice *sl = &c->slices[k];
            memcpy(p, &sl->id, 8);
            memcpy(p + 8, &sl->size, 4);
            memcpy(p + 12, &sl->off, 4);
            memcpy(p + 16, &sl->len, 4);
            memcpy(p + 20, &sl->pos, 4);
            p += MAP_SLICE_BYTES;
        }
    }
}

static bool slice_is_sane(const struct meta_slice *sl, uint64_t chunk_start, uint64_t file_size)
{
    if (sl->len == 0 || sl->size > META_CHUNK_BYTES || (uint64_t)sl->pos + sl->len > META_CHUNK_BYTES)
        return false;
    if (sl->id == 0 ? sl->size != 0 || sl->off != 0 : (uint64_t)sl->off + sl->len > sl->size)
        return false;
    return chunk_start + sl->pos + sl->len <= file_size;
}

/* Rebuild a file's data from its record (bytes p[0..len)), checking every
 * invariant a command keeps. -AR_ECORRUPT or -ENOMEM; on error the file has
 * no data. */
int meta__data_decode(struct meta_shard *s, uint32_t inode, const uint8_t *p, uint32_t len)
{
    struct meta__node *n = meta__node_at(s, inode);
    uint32_t index = 0;
    int rc = 0;

    for (uint32_t at = 0, chunks = 0; at < len && rc == 0; chunks++) {
        uint32_t count;
        if (len - at < MAP_CHUNK_BYTES) {
            rc = -AR_ECORRUPT;
            break;
        }
        uint32_t prev = index;
        memcpy(&index, p + at, 4);
        memcpy(&count, p + at + 4, 4);
        at += MAP_CHUNK_BYTES;
        if ((chunks > 0 && index <= prev) || count == 0 || count > META_CHUNK_SLICES_MAX ||
            (len - at) / MAP_SLICE_BYTES < count ||
            (uint64_t)index * META_CHUNK_BYTES >= n->size) {
            rc = -AR_ECORRUPT;
            break;
        }
        struct meta__chunk *c = NULL;
        rc = data_to_map(s, inode);
        for (uint32_t k = 0; k < count && rc == 0; k++, at += MAP_SLICE_BYTES) {
            struct meta_slice sl;
            memcpy(&sl.id, p + at, 8);
            memcpy(&sl.size, p + at + 8, 4);
            memcpy(&sl.off, p + at + 12, 4);
            memcpy(&sl.len, p + at + 16, 4);
            memcpy(&sl.pos, p + at + 20, 4);
            if (!slice_is_sane(&sl, (uint64_t)index * META_CHUNK_BYTES, n->size) ||
                (k == 0 && sl.id == 0)) {
                rc = -AR_ECORRUPT;
                break;
            }
            rc = chunk_reserve(meta__fmap_of(s, inode), index, &c);
            if (rc == 0)
                c->slices[c->count++] = sl;
        }
    }
    if (rc == 0) {
        data_normalize(s, inode);
        const struct meta__fmap *f = meta__fmap_of(s, inode);
        if (f != NULL && f->slice_total > META_FILE_SLICES_MAX)
            rc = -AR_ECORRUPT;
    }
    if (rc != 0)
        meta__data_free(s, inode);
    return rc;
}
