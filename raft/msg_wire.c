/* raft/msg_wire.c - struct raft_msg to and from its protobuf form
 * (raft/raft.proto). The only file of raft/ that sees generated types
 * (style §7). A frame's Batch is built by appending each Message as field 1
 * as it is sent (a repeated field is just its elements one after another),
 * so nothing is copied twice. Decoding checks every field against
 * raft/limits.h; what only the state machine can judge (terms, indexes)
 * is left to raft_step().
 * Thread: any; no state. */
#include <stdlib.h>

#include "core.h"
#include "raft.pb-c.h"
#include "wire.h"

static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return raft_malloc(size);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    raft_free(p);
}

static ProtobufCAllocator pb_allocator = {.alloc = pb_alloc, .free = pb_free};

/* Fill pb from m; entries and ids point into the caller's arrays. */
static void to_pb(uint64_t group, const struct raft_msg *m, Arbor__Raft__Message *pb,
                  Arbor__Raft__Entry *ents, Arbor__Raft__Entry **ent_ptrs,
                  Arbor__Raft__Config *conf)
{
    *pb = (Arbor__Raft__Message)ARBOR__RAFT__MESSAGE__INIT;
    pb->group = group;
    pb->type = m->type;
    pb->from = m->from;
    pb->to = m->to;
    pb->term = m->term;
    pb->index = m->index;
    pb->log_term = m->log_term;
    pb->commit = m->commit;
    pb->read_seq = m->read_seq;
    pb->hint_index = m->hint_index;
    pb->hint_term = m->hint_term;
    pb->is_reject = m->is_reject;
    pb->is_transfer = m->is_transfer;
    pb->is_done = m->is_done;
    pb->offset = m->offset;
    pb->hlc_ns = m->hlc_ns;
    pb->host_flags = m->host_flags;
    pb->chunk = (ProtobufCBinaryData){.len = m->chunk_size, .data = (uint8_t *)(uintptr_t)m->chunk};
    for (uint32_t i = 0; i < m->entry_count; i++) {
        const struct raft_entry *e = &m->entries[i];
        ents[i] = (Arbor__Raft__Entry)ARBOR__RAFT__ENTRY__INIT;
        ents[i].term = e->term;
        ents[i].index = e->index;
        ents[i].hlc_ns = e->hlc_ns;
        ents[i].type = e->type;
        ents[i].data = (ProtobufCBinaryData){.len = e->size, .data = e->data};
        ent_ptrs[i] = &ents[i];
    }
    pb->n_entries = m->entry_count;
    pb->entries = ent_ptrs;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        *conf = (Arbor__Raft__Config)ARBOR__RAFT__CONFIG__INIT;
        conf->n_voters = m->config.voter_count;
        conf->voters = (uint64_t *)(uintptr_t)m->config.voters;
        conf->n_learners = m->config.learner_count;
        conf->learners = (uint64_t *)(uintptr_t)m->config.learners;
        pb->config = conf;
    }
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    do {
        uint8_t b = v & 0x7fu;
        v >>= 7;
        p[n++] = (uint8_t)(b | (v != 0 ? 0x80u : 0));
    } while (v != 0);
    return n;
}

int raft__wire_append(struct raft__frame *f, uint64_t group, const struct raft_msg *m)
{
    Arbor__Raft__Message pb;
    Arbor__Raft__Config conf;
    Arbor__Raft__Entry *ents = NULL;
    Arbor__Raft__Entry **ptrs = NULL;

    if (m->entry_count > RAFT_APPEND_ENTRIES_MAX)
        return -EMSGSIZE;
    if (m->entry_count > 0) {
        ents = raft_malloc(sizeof(*ents) * m->entry_count);
        ptrs = raft_malloc(sizeof(*ptrs) * m->entry_count);
        if (ents == NULL || ptrs == NULL) {
            raft_free(ents);
            raft_free(ptrs);
            return -ENOMEM;
        }
    }
    to_pb(group, m, &pb, ents, ptrs, &conf);
    size_t size = arbor__raft__message__get_packed_size(&pb);
    int rc = 0;
    if (f->used + size + 11 > RAFT_FRAME_BYTES_MAX || f->count >= RAFT_FRAME_MSGS_MAX) {
        rc = -EMSGSIZE; /* the caller flushes this frame and starts another */
    } else if (f->used + size + 11 > f->cap) {
        size_t cap = f->cap < 4096 ? 4096 : f->cap;
        while (cap < f->used + size + 11) {
            cap *= 2;
        }
        uint8_t *p = raft__realloc(f->buf, cap);
        if (p == NULL) {
            rc = -ENOMEM;
        } else {
            f->buf = p;
            f->cap = cap;
        }
    }
    if (rc == 0) {
        if (f->used == 0)
            f->used = 4; /* the length goes here at raft__wire_seal() */
        f->buf[f->used++] = 0x0a; /* field 1, length-delimited */
        f->used += put_varint(f->buf + f->used, size);
        f->used += arbor__raft__message__pack(&pb, f->buf + f->used);
        f->count++;
    }
    raft_free(ents);
    raft_free(ptrs);
    return rc;
}

void raft__wire_seal(struct raft__frame *f)
{
    RAFT_ASSERT(f->used >= 4);
    uint32_t len = (uint32_t)(f->used - 4);
    memcpy(f->buf, &len, 4);
}

/* Every field of pb within raft/limits.h. */
static int msg_check(const Arbor__Raft__Message *pb)
{
    if (pb->type < RAFT_MSG_PREVOTE || pb->type > RAFT_MSG_TYPE_LAST || pb->from == 0 ||
        pb->to == 0 || pb->n_entries > RAFT_APPEND_ENTRIES_MAX ||
        pb->chunk.len > RAFT_CHUNK_BYTES_MAX)
        return -EPROTO;
    for (size_t i = 0; i < pb->n_entries; i++) {
        const Arbor__Raft__Entry *e = pb->entries[i];
        if (e->data.len > RAFT_ENTRY_BYTES_MAX ||
            (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONFIG))
            return -EPROTO;
    }
    if (pb->config != NULL &&
        (pb->config->n_voters > RAFT_VOTERS_MAX || pb->config->n_learners > RAFT_LEARNERS_MAX))
        return -EPROTO;
    return 0;
}

/* m of a checked pb; its arrays point into pb and ents. */
static void from_pb(const Arbor__Raft__Message *pb, struct raft_msg *m, struct raft_entry *ents)
{
    *m = (struct raft_msg){.type = (uint8_t)pb->type, .from = pb->from, .to = pb->to,
                           .term = pb->term, .index = pb->index, .log_term = pb->log_term,
                           .commit = pb->commit, .read_seq = pb->read_seq,
                           .hint_index = pb->hint_index, .hint_term = pb->hint_term,
                           .is_reject = pb->is_reject, .is_transfer = pb->is_transfer,
                           .is_done = pb->is_done, .offset = pb->offset,
                           .hlc_ns = pb->hlc_ns, .host_flags = pb->host_flags,
                           .chunk_size = (uint32_t)pb->chunk.len,
                           .chunk = pb->chunk.data, .entry_count = (uint32_t)pb->n_entries,
                           .entries = ents};
    for (size_t i = 0; i < pb->n_entries; i++) {
        const Arbor__Raft__Entry *e = pb->entries[i];
        ents[i] = (struct raft_entry){.term = e->term, .index = e->index, .hlc_ns = e->hlc_ns,
                                      .type = (uint8_t)e->type, .size = (uint32_t)e->data.len,
                                      .data = e->data.data};
    }
    if (pb->config != NULL) {
        const Arbor__Raft__Config *c = pb->config;
        m->config.voter_count = (uint32_t)c->n_voters;
        m->config.learner_count = (uint32_t)c->n_learners;
        if (c->n_voters > 0)
            memcpy(m->config.voters, c->voters, sizeof(uint64_t) * c->n_voters);
        if (c->n_learners > 0)
            memcpy(m->config.learners, c->learners, sizeof(uint64_t) * c->n_learners);
    }
}

static bool get_varint(const uint8_t *p, size_t len, size_t *at, uint64_t *out)
{
    uint64_t v = 0;

    for (int shift = 0; shift < 64 && *at < len; shift += 7) {
        uint8_t b = p[(*at)++];
        v |= (uint64_t)(b & 0x7fu) << shift;
        if ((b & 0x80u) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Walk one level of protobuf fields in p[0..len) without decoding them:
 * count the length-delimited fields numbered `field`, and check that the
 * rest parses. Unpacking allocates per element, so the counts are bounded
 * before anything is unpacked (a frame of empty elements would otherwise
 * cost a hundred times its size). */
static int count_field(const uint8_t *p, size_t len, uint32_t field, uint32_t *count)
{
    size_t at = 0;
    uint64_t key;
    uint64_t v;

    *count = 0;
    /* bounded: each turn moves past one field */
    while (at < len) {
        if (!get_varint(p, len, &at, &key))
            return -EPROTO;
        switch (key & 7u) {
        case 0:
            if (!get_varint(p, len, &at, &v))
                return -EPROTO;
            break;
        case 1:
        case 5: {
            size_t width = (key & 7u) == 1 ? 8 : 4;
            if (len - at < width)
                return -EPROTO;
            at += width;
            break;
        }
        case 2:
            if (!get_varint(p, len, &at, &v) || v > len - at)
                return -EPROTO;
            at += (size_t)v;
            *count += (key >> 3) == field;
            break;
        default:
            return -EPROTO;
        }
    }
    return 0;
}

int raft__wire_decode(const uint8_t *buf, size_t len, raft__wire_msg_cb cb, void *ctx)
{
    uint32_t count;

    if (len > RAFT_FRAME_BYTES_MAX)
        return -EMSGSIZE;
    int rc = count_field(buf, len, 1, &count);
    if (rc == 0 && count > RAFT_FRAME_MSGS_MAX)
        rc = -EPROTO;
    /* one Message at a time: unpack, check, hand over, free */
    for (size_t at = 0; rc == 0 && at < len;) {
        uint64_t key;
        uint64_t size;
        uint32_t entries;
        if (!get_varint(buf, len, &at, &key) || key != 0x0a ||
            !get_varint(buf, len, &at, &size) || size > len - at)
            return -EPROTO;
        const uint8_t *p = buf + at;
        at += (size_t)size;
        rc = count_field(p, (size_t)size, 15, &entries);
        if (rc == 0 && entries > RAFT_APPEND_ENTRIES_MAX)
            rc = -EPROTO;
        Arbor__Raft__Message *pb =
            rc == 0 ? arbor__raft__message__unpack(&pb_allocator, (size_t)size, p) : NULL;
        if (rc == 0 && pb == NULL)
            rc = -EPROTO;
        if (rc == 0)
            rc = msg_check(pb);
        struct raft_entry *ents = NULL;
        if (rc == 0 && pb->n_entries > 0) {
            ents = raft_malloc(sizeof(*ents) * pb->n_entries);
            rc = ents == NULL ? -ENOMEM : 0;
        }
        if (rc == 0) {
            struct raft_msg m;
            from_pb(pb, &m, ents);
            cb(pb->group, &m, ctx);
        }
        raft_free(ents);
        if (pb != NULL)
            arbor__raft__message__free_unpacked(pb, &pb_allocator);
    }
    return rc;
}
