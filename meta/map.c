/* meta/map.c - a shard's identity, its slice ids, and the shard map
 * (design §2; issue "metadata server").
 *
 * Every shard knows which it is, its epoch and the ranges of numbers leased
 * to it; shard 0 also holds the map of all shards. Both are state: they
 * change only by commands, are checkpointed (one "info" record) and are part
 * of the state hash.
 *
 * The map's bytes (little-endian), also what MAP_GET answers:
 *   "amap" | u32 format (1) | u64 version | u32 block_bytes | u32 window_s
 *   | u64 ino_next | u64 slice_next | u8 len, volume | u16 len, store URL
 *   | u8 members, each: u64 id, u8 len, raft addr, u8 len, client addr
 *   | u8 shards, each: u32 id, u64 epoch, root, ino_lo, ino_hi, slice_lo, slice_hi
 * The info record: the identity as a shard entry, u64 slice_next, u8 has map,
 * then (has map) u32 length and the map.
 * Thread: the shard's apply thread. */
#include <string.h>

#include "shard.h"

#define MAP_MAGIC  0x70616d61u /* "amap" */
#define MAP_FORMAT 1u
#define SHARD_BYTES (4u + 6u * 8u)

void meta_shard_info_first(uint32_t shard, struct meta_shard_info *out)
{
    *out = (struct meta_shard_info){.id = shard, .epoch = 1};
    if (shard == META_MAP_SHARD)
        return;
    out->root_ino = 1;
    out->ino_lo = 1;
    out->ino_hi = META_ID_LEASE;
    out->slice_lo = 1;
    out->slice_hi = META_ID_LEASE;
}

void meta_map_seed(struct meta_map *m)
{
    m->version = 1;
    m->shard_count = 2;
    meta_shard_info_first(META_MAP_SHARD, &m->shards[0]);
    meta_shard_info_first(META_ROOT_SHARD, &m->shards[1]);
    m->ino_next = META_ID_LEASE;
    m->slice_next = META_ID_LEASE;
}

/* ---- bytes -------------------------------------------------------------------------- */

struct cursor {
    uint8_t *w;        /* writing: NULL counts only */
    const uint8_t *r;
    size_t at;
    size_t len;        /* reading: bytes available */
    bool is_short;
};

static void put(struct cursor *c, const void *v, size_t n)
{
    if (c->w != NULL && c->at + n <= c->len)
        memcpy(c->w + c->at, v, n);
    else if (c->w != NULL)
        c->is_short = true;
    c->at += n;
}

static void get(struct cursor *c, void *v, size_t n)
{
    if (c->is_short || c->len - c->at < n) {
        c->is_short = true;
        memset(v, 0, n);
        return;
    }
    memcpy(v, c->r + c->at, n);
    c->at += n;
}

static void put_str(struct cursor *c, const char *s, size_t width)
{
    size_t n = strlen(s);
    if (width == 1) {
        uint8_t b = (uint8_t)n;
        put(c, &b, 1);
    } else {
        uint16_t h = (uint16_t)n;
        put(c, &h, 2);
    }
    put(c, s, n);
}

/* A string into out[cap]: shorter than cap, no NUL inside. */
static bool get_str(struct cursor *c, char *out, size_t cap, size_t width)
{
    uint8_t b = 0;
    uint16_t h = 0;
    if (width == 1)
        get(c, &b, 1);
    else
        get(c, &h, 2);
    size_t n = width == 1 ? b : h;
    if (n >= cap)
        return false;
    get(c, out, n);
    out[c->is_short ? 0 : n] = '\0';
    return !c->is_short && strlen(out) == n;
}

static void put_shard(struct cursor *c, const struct meta_shard_info *i)
{
    const uint64_t f[6] = {i->epoch, i->root_ino, i->ino_lo, i->ino_hi, i->slice_lo, i->slice_hi};
    put(c, &i->id, 4);
    put(c, f, sizeof(f));
}

static void get_shard(struct cursor *c, struct meta_shard_info *i)
{
    uint64_t f[6];
    get(c, &i->id, 4);
    get(c, f, sizeof(f));
    *i = (struct meta_shard_info){.id = i->id, .epoch = f[0], .root_ino = f[1], .ino_lo = f[2],
                                  .ino_hi = f[3], .slice_lo = f[4], .slice_hi = f[5]};
}

static void map_put(struct cursor *c, const struct meta_map *m)
{
    const uint32_t head[2] = {MAP_MAGIC, MAP_FORMAT};
    put(c, head, sizeof(head));
    put(c, &m->version, 8);
    put(c, &m->block_bytes, 4);
    put(c, &m->window_s, 4);
    put(c, &m->ino_next, 8);
    put(c, &m->slice_next, 8);
    put_str(c, m->volume, 1);
    put_str(c, m->store_url, 2);
    uint8_t n = (uint8_t)m->member_count;
    put(c, &n, 1);
    for (uint32_t i = 0; i < m->member_count; i++) {
        put(c, &m->members[i].id, 8);
        put_str(c, m->members[i].raft_addr, 1);
        put_str(c, m->members[i].client_addr, 1);
    }
    n = (uint8_t)m->shard_count;
    put(c, &n, 1);
    for (uint32_t i = 0; i < m->shard_count; i++) {
        put_shard(c, &m->shards[i]);
    }
}

static bool ranges_overlap(uint64_t a_lo, uint64_t a_hi, uint64_t b_lo, uint64_t b_hi)
{
    return a_lo < a_hi && b_lo < b_hi && a_lo < b_hi && b_lo < a_hi;
}

/* The invariants of a map (see meta.h). */
static bool map_is_valid(const struct meta_map *m)
{
    if (m->member_count > META_MAP_MEMBERS_MAX || m->shard_count > META_MAP_SHARDS_MAX ||
        m->block_bytes > META_BLOCK_BYTES || strnlen(m->volume, sizeof(m->volume)) == sizeof(m->volume) ||
        strnlen(m->store_url, sizeof(m->store_url)) == sizeof(m->store_url))
        return false;
    for (uint32_t i = 0; i < m->member_count; i++) {
        const struct meta_map_member *a = &m->members[i];
        if (a->id == 0 || strnlen(a->raft_addr, 64) == 64 || strnlen(a->client_addr, 64) == 64)
            return false;
        for (uint32_t k = 0; k < i; k++) {
            if (m->members[k].id == a->id)
                return false;
        }
    }
    for (uint32_t i = 0; i < m->shard_count; i++) {
        const struct meta_shard_info *a = &m->shards[i];
        if (a->epoch == 0 || (i > 0 && a->id <= m->shards[i - 1].id) || a->ino_lo > a->ino_hi ||
            a->slice_lo > a->slice_hi || a->ino_hi > m->ino_next || a->slice_hi > m->slice_next)
            return false;
        for (uint32_t k = 0; k < i; k++) {
            const struct meta_shard_info *b = &m->shards[k];
            if (ranges_overlap(a->ino_lo, a->ino_hi, b->ino_lo, b->ino_hi) ||
                ranges_overlap(a->slice_lo, a->slice_hi, b->slice_lo, b->slice_hi))
                return false;
        }
    }
    return true;
}

int meta_map_encode(const struct meta_map *m, uint8_t *buf, size_t cap, size_t *len)
{
    if (!map_is_valid(m))
        return -EINVAL;
    struct cursor c = {.w = buf, .len = cap};
    map_put(&c, m);
    if (c.is_short)
        return -EMSGSIZE;
    *len = c.at;
    return 0;
}

static int map_get(struct cursor *c, struct meta_map *m)
{
    uint32_t head[2];
    uint8_t n;

    memset(m, 0, sizeof(*m));
    get(c, head, sizeof(head));
    if (c->is_short || head[0] != MAP_MAGIC || head[1] != MAP_FORMAT)
        return -EPROTO;
    get(c, &m->version, 8);
    get(c, &m->block_bytes, 4);
    get(c, &m->window_s, 4);
    get(c, &m->ino_next, 8);
    get(c, &m->slice_next, 8);
    if (!get_str(c, m->volume, sizeof(m->volume), 1) ||
        !get_str(c, m->store_url, sizeof(m->store_url), 2))
        return -EPROTO;
    get(c, &n, 1);
    if (n > META_MAP_MEMBERS_MAX)
        return -EINVAL;
    m->member_count = n;
    for (uint32_t i = 0; i < m->member_count; i++) {
        struct meta_map_member *a = &m->members[i];
        get(c, &a->id, 8);
        if (!get_str(c, a->raft_addr, sizeof(a->raft_addr), 1) ||
            !get_str(c, a->client_addr, sizeof(a->client_addr), 1))
            return -EPROTO;
    }
    get(c, &n, 1);
    if (n > META_MAP_SHARDS_MAX)
        return -EINVAL;
    m->shard_count = n;
    for (uint32_t i = 0; i < m->shard_count; i++) {
        get_shard(c, &m->shards[i]);
    }
    if (c->is_short)
        return -EPROTO;
    return map_is_valid(m) ? 0 : -EINVAL;
}

int meta_map_decode(const uint8_t *buf, size_t len, struct meta_map *out)
{
    struct cursor c = {.r = buf, .len = len};
    int rc = map_get(&c, out);

    if (rc == 0 && c.at != len)
        rc = -EPROTO; /* trailing bytes */
    return rc;
}

/* ---- the shard's side ------------------------------------------------------------------- */

int meta__info_init(struct meta_shard *s, const struct meta_shard_info *self)
{
    if (self->epoch == 0)
        meta_shard_info_first(META_ROOT_SHARD, &s->self);
    else
        s->self = *self;
    s->slice_next = s->self.slice_lo;
    s->is_info_dirty = true;
    if (s->self.id != META_MAP_SHARD)
        return 0;
    s->map = ar_calloc(1, sizeof(*s->map));
    return s->map != NULL ? 0 : -ENOMEM;
}

const struct meta_shard_info *meta_shard_self(const struct meta_shard *s)
{
    return &s->self;
}

const struct meta_map *meta_shard_map(const struct meta_shard *s)
{
    return s->map;
}

uint64_t meta_shard_slice_next(const struct meta_shard *s)
{
    return s->slice_next;
}

static int alloc_slices(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    if (cmd->length == 0 || cmd->length > META_SLICES_ALLOC_MAX)
        return -EINVAL;
    if (s->self.slice_hi - s->slice_next < cmd->length)
        return -ENOSPC; /* the lease is spent */
    r->attr.ino = s->slice_next;
    r->attr.size = cmd->length;
    s->slice_next += cmd->length;
    s->is_info_dirty = true;
    return 0;
}

/* Replace the map if cmd names the version in place; never backwards:
 * numbers leased stay leased, and a shard's epoch never drops. */
static int map_set(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    struct meta_map next;

    if (s->map == NULL || cmd->value == NULL)
        return -EINVAL;
    if (cmd->cookie != s->map->version)
        return -ESTALE; /* another change came first: read the map again */
    int rc = meta_map_decode(cmd->value, cmd->value_len, &next);
    if (rc != 0)
        return -EINVAL;
    if (next.version != s->map->version + 1 || next.ino_next < s->map->ino_next ||
        next.slice_next < s->map->slice_next)
        return -EINVAL;
    for (uint32_t i = 0; i < s->map->shard_count; i++) {
        const struct meta_shard_info *old = &s->map->shards[i];
        for (uint32_t k = 0; k < next.shard_count; k++) {
            if (next.shards[k].id == old->id && next.shards[k].epoch < old->epoch)
                return -EINVAL;
        }
    }
    *s->map = next;
    s->is_info_dirty = true;
    r->attr.ino = next.version;
    return 0;
}

int meta__map_apply(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    return cmd->op == META_OP_ALLOC_SLICES ? alloc_slices(s, cmd, r) : map_set(s, cmd, r);
}

int meta__map_read(const struct meta_shard *s, struct meta_reply *r)
{
    if (s->map == NULL)
        return -EINVAL; /* not the map shard */
    struct cursor c = {.w = NULL};
    map_put(&c, s->map);
    r->data_len = (uint32_t)c.at;
    if (r->data_cap == 0)
        return 0; /* the size only */
    if (r->data_cap < c.at)
        return -ERANGE;
    size_t len;
    return meta_map_encode(s->map, r->data, r->data_cap, &len);
}

/* ---- the info record (checkpoint.c) and the hash ---------------------------------------- */

int meta__info_encode(const struct meta_shard *s, uint8_t *buf, size_t cap, size_t *len)
{
    struct cursor c = {.w = buf, .len = cap};
    uint8_t has_map = s->map != NULL;

    put_shard(&c, &s->self);
    put(&c, &s->slice_next, 8);
    put(&c, &has_map, 1);
    if (has_map) {
        struct cursor count = {.w = NULL};
        map_put(&count, s->map);
        uint32_t n = (uint32_t)count.at;
        put(&c, &n, 4);
        map_put(&c, s->map);
    }
    if (c.is_short)
        return -EMSGSIZE;
    *len = c.at;
    return 0;
}

int meta__info_decode(struct meta_shard *s, const uint8_t *buf, size_t len)
{
    struct cursor c = {.r = buf, .len = len};
    struct meta_shard_info self;
    uint64_t slice_next;
    uint8_t has_map;

    get_shard(&c, &self);
    get(&c, &slice_next, 8);
    get(&c, &has_map, 1);
    if (c.is_short || self.epoch == 0 || has_map != (self.id == META_MAP_SHARD) ||
        slice_next < self.slice_lo || slice_next > self.slice_hi)
        return -AR_ECORRUPT;
    struct meta_map *map = NULL;
    if (has_map) {
        uint32_t n;
        get(&c, &n, 4);
        map = ar_malloc(sizeof(*map));
        if (map == NULL)
            return -ENOMEM;
        if (c.is_short || n != len - c.at || meta_map_decode(buf + c.at, n, map) != 0) {
            ar_free(map);
            return -AR_ECORRUPT;
        }
    } else if (c.at != len) {
        return -AR_ECORRUPT;
    }
    ar_free(s->map);
    s->map = map;
    s->self = self;
    s->slice_next = slice_next;
    return 0;
}

uint64_t meta__info_hash(const struct meta_shard *s)
{
    uint8_t buf[META_MAP_BYTES_ENC_MAX + 128];
    size_t len = 0;

    AR_ASSERT(meta__info_encode(s, buf, sizeof(buf), &len) == 0);
    return meta__hash_bytes(s->seed ^ 0x696e666full, buf, (uint32_t)len); /* "info" */
}
