/* meta/rpc_wire.c - the client protocol's requests and responses to and
 * from their protobuf form (meta/rpc.proto). Like cmd_wire.c, the only
 * other file that sees generated types: decoding checks every field while
 * copying it into arbor's structs, and frees the message before returning.
 * A response carries only what its command's reply fills.
 * Thread: any; no state. */
#include <stdio.h>
#include <string.h>

#include "limits.h"
#include "meta.h"
#include "rpc.pb-c.h"

_Static_assert(sizeof(((struct meta_response_buf *)0)->entries) ==
                   META_READDIR_MAX * sizeof(struct meta_dirent),
               "a response holds a full readdir page");
_Static_assert(META_FRAME_BYTES_MAX >= META_MSG_BYTES_MAX + (1u << 20),
               "a frame holds the largest command with room for its envelope");
_Static_assert(sizeof(((struct meta_response_buf *)0)->data) == META_XATTR_BYTES_MAX,
               "a response holds every xattr name of an inode");

static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return ar_malloc(size);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    ar_free(p);
}

static ProtobufCAllocator rpc_allocator = {.alloc = pb_alloc, .free = pb_free};

/* [u32 length] then the message, or -EMSGSIZE. */
static int frame(size_t need, uint8_t *buf, size_t cap, size_t *len)
{
    if (need > META_FRAME_BYTES_MAX || need + 4 > cap)
        return -EMSGSIZE;
    uint32_t n = (uint32_t)need;
    memcpy(buf, &n, 4);
    *len = need + 4;
    return 0;
}

int meta_request_encode(const struct meta_request *req, const struct meta_cmd *cmd, uint8_t *buf,
                        size_t cap, size_t *len)
{
    Arbor__Meta__Request pb = ARBOR__META__REQUEST__INIT;
    size_t cmd_len = 0;

    AR_ASSERT(req != NULL && buf != NULL && len != NULL);
    if ((req->kind == META_REQ_COMMAND) != (cmd != NULL) || cap < 4)
        return -EINVAL;
    if (cmd != NULL) {
        /* the command first, at the end of buf; then the envelope before it */
        int rc = meta_cmd_encode(cmd, buf + 4, cap - 4, &cmd_len);
        if (rc != 0)
            return rc;
    }
    uint8_t *cmd_bytes = NULL;
    if (cmd_len > 0) {
        cmd_bytes = ar_malloc(cmd_len);
        if (cmd_bytes == NULL)
            return -ENOMEM;
        memcpy(cmd_bytes, buf + 4, cmd_len);
    }
    pb.id = req->id;
    pb.shard = req->shard;
    pb.epoch = req->epoch;
    pb.kind = (uint32_t)req->kind;
    pb.command = (ProtobufCBinaryData){.len = cmd_len, .data = cmd_bytes};
    pb.read_mode = (uint32_t)req->read_mode;
    pb.stale_ms = req->stale_ms;
    pb.session = req->session;
    pb.data_cap = req->data_cap;
    pb.background = req->is_background;
    pb.lease = req->wants_lease;
    pb.notice = req->notice;
    pb.admin = (uint32_t)req->admin;
    pb.target = req->target;
    size_t need = arbor__meta__request__get_packed_size(&pb);
    int rc = frame(need, buf, cap, len);
    if (rc == 0)
        arbor__meta__request__pack(&pb, buf + 4);
    ar_free(cmd_bytes);
    return rc;
}

int meta_request_decode(const uint8_t *buf, size_t len, struct meta_request *req,
                        struct meta_cmd_buf *cmd)
{
    AR_ASSERT(req != NULL && cmd != NULL);
    req->id = 0;
    if (len > META_FRAME_BYTES_MAX)
        return -EMSGSIZE;
    Arbor__Meta__Request *pb = arbor__meta__request__unpack(&rpc_allocator, len, buf);
    if (pb == NULL)
        return -EPROTO;
    req->id = pb->id;
    int rc = 0;
    if (pb->kind < META_REQ_COMMAND || pb->kind > META_REQ_NOTICE_ACK ||
        (pb->kind == META_REQ_NOTICE_ACK && pb->notice == 0) ||
        (pb->kind == META_REQ_ADMIN &&
         (pb->admin < META_ADMIN_TRANSFER || pb->admin > META_ADMIN_SET_WINDOW ||
          pb->target == 0)) ||
        pb->read_mode > META_READ_FOLLOWER || pb->data_cap > META_XATTR_BYTES_MAX)
        rc = -EINVAL;
    memset(&cmd->cmd, 0, sizeof(cmd->cmd));
    if (rc == 0 && pb->kind == META_REQ_COMMAND)
        rc = meta_cmd_decode(pb->command.data, pb->command.len, cmd);
    else if (rc == 0 && pb->command.len > 0)
        rc = -EINVAL;
    if (rc == 0)
        *req = (struct meta_request){.id = pb->id, .shard = pb->shard, .epoch = pb->epoch,
                                     .kind = (enum meta_req_kind)pb->kind,
                                     .read_mode = (enum meta_read_mode)pb->read_mode,
                                     .stale_ms = pb->stale_ms, .session = pb->session,
                                     .data_cap = pb->data_cap,
                                     .admin = (enum meta_admin_op)pb->admin,
                                     .target = pb->target,
                                     .is_background = pb->background,
                                     .wants_lease = pb->lease,
                                     .notice = pb->notice};
    arbor__meta__request__free_unpacked(pb, &rpc_allocator);
    return rc;
}

/* ---- readdir entries, packed ------------------------------------------------------ */

/* A readdir page travels as one bytes field (Response.dirents): as 1,024
 * messages of their own they cost each side a third of a 16-client
 * benchmark in protobuf-c's per-message work and allocations. Each entry, in order:
 * a flags byte (DIRENT_HAS_ATTR), varints ino, cookie, type, name length,
 * the name's bytes, then with the flag the attributes: varints ino, mode,
 * nlink, uid, gid, rdev, size, and zigzag varints atime, mtime, ctime. */
enum { DIRENT_HAS_ATTR = 1 };

static bool get_varint(const uint8_t *buf, size_t len, size_t *at, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *at < len; shift += 7) {
        uint8_t b = buf[(*at)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static size_t dirents_size(const struct meta_dirent *d, uint32_t count)
{
    size_t n = 0;
    for (uint32_t i = 0; i < count; i++, d++) {
        n += 1 + varint_size(d->ino) + varint_size(d->cookie) + varint_size(d->type) +
             varint_size(d->name_len) + d->name_len;
        if (d->attr.ino != 0) {
            const struct meta_attr *a = &d->attr;
            n += varint_size(a->ino) + varint_size(a->mode) + varint_size(a->nlink) +
                 varint_size(a->uid) + varint_size(a->gid) + varint_size(a->rdev) +
                 varint_size(a->size) + varint_size(zigzag(a->atime_ns)) +
                 varint_size(zigzag(a->mtime_ns)) + varint_size(zigzag(a->ctime_ns));
        }
    }
    return n;
}

/* Writes exactly dirents_size(d, count) bytes at p. */
static void dirents_put(const struct meta_dirent *d, uint32_t count, uint8_t *p)
{
    for (uint32_t i = 0; i < count; i++, d++) {
        bool has_attr = d->attr.ino != 0; /* asked for (META_READDIR_ATTRS) */
        *p++ = has_attr ? DIRENT_HAS_ATTR : 0;
        p = put_varint(p, d->ino);
        p = put_varint(p, d->cookie);
        p = put_varint(p, d->type);
        p = put_varint(p, d->name_len);
        memcpy(p, d->name, d->name_len);
        p += d->name_len;
        if (has_attr) {
            const struct meta_attr *a = &d->attr;
            p = put_varint(p, a->ino);
            p = put_varint(p, a->mode);
            p = put_varint(p, a->nlink);
            p = put_varint(p, a->uid);
            p = put_varint(p, a->gid);
            p = put_varint(p, a->rdev);
            p = put_varint(p, a->size);
            p = put_varint(p, zigzag(a->atime_ns));
            p = put_varint(p, zigzag(a->mtime_ns));
            p = put_varint(p, zigzag(a->ctime_ns));
        }
    }
}

static bool get_u32(const uint8_t *buf, size_t len, size_t *at, uint32_t *v)
{
    uint64_t x;
    if (!get_varint(buf, len, at, &x) || x > UINT32_MAX)
        return false;
    *v = (uint32_t)x;
    return true;
}

static bool get_attr(const uint8_t *buf, size_t len, size_t *at, struct meta_attr *a)
{
    uint64_t t[3];
    bool ok = get_varint(buf, len, at, &a->ino) && a->ino != 0 &&
              get_u32(buf, len, at, &a->mode) && get_u32(buf, len, at, &a->nlink) &&
              get_u32(buf, len, at, &a->uid) && get_u32(buf, len, at, &a->gid) &&
              get_u32(buf, len, at, &a->rdev) && get_varint(buf, len, at, &a->size) &&
              get_varint(buf, len, at, &t[0]) && get_varint(buf, len, at, &t[1]) &&
              get_varint(buf, len, at, &t[2]);
    a->atime_ns = unzigzag(t[0]);
    a->mtime_ns = unzigzag(t[1]);
    a->ctime_ns = unzigzag(t[2]);
    return ok;
}

/* The entries of a packed page into out (META_READDIR_MAX of them), or
 * false when it is malformed: truncated, too many entries, an unknown
 * flag, a name that is empty, too long or holds a '/' or a NUL. */
static bool dirents_get(const uint8_t *buf, size_t len, struct meta_dirent *out, uint32_t *count)
{
    size_t at = 0;
    uint32_t n = 0;

    /* bounded: each turn consumes at least one byte */
    while (at < len) {
        if (n == META_READDIR_MAX)
            return false;
        struct meta_dirent *d = &out[n];
        uint8_t flags = buf[at++];
        if ((flags & ~DIRENT_HAS_ATTR) != 0 || !get_varint(buf, len, &at, &d->ino) ||
            !get_varint(buf, len, &at, &d->cookie) || !get_u32(buf, len, &at, &d->type) ||
            !get_u32(buf, len, &at, &d->name_len) || d->name_len == 0 ||
            d->name_len > META_NAME_BYTES_MAX || len - at < d->name_len)
            return false;
        memcpy(d->name, buf + at, d->name_len);
        d->name[d->name_len] = '\0';
        at += d->name_len;
        if (memchr(d->name, '/', d->name_len) != NULL || strlen(d->name) != d->name_len)
            return false;
        d->attr = (struct meta_attr){0};
        if ((flags & DIRENT_HAS_ATTR) && !get_attr(buf, len, &at, &d->attr))
            return false;
        n++;
    }
    *count = n;
    return true;
}

/* ---- responses ------------------------------------------------------------------- */

/* What op's reply fills besides the attributes. */
enum fill { FILL_ATTR = 1, FILL_ENTRIES = 2, FILL_DATA = 4, FILL_TARGET = 8, FILL_PIECES = 16,
            FILL_STATFS = 32 };

static unsigned fills(enum meta_op op)
{
    switch (op) {
    case META_OP_READDIR:
        return FILL_ENTRIES;
    case META_OP_READLINK:
        return FILL_TARGET;
    case META_OP_GETXATTR:
    case META_OP_LISTXATTR:
    case META_OP_MAP_GET:
        return FILL_DATA;
    case META_OP_READ_MAP:
        return FILL_ATTR | FILL_PIECES;
    case META_OP_STATFS:
        return FILL_STATFS;
    case META_OP_LOOKUP:
    case META_OP_GETATTR:
    case META_OP_SETATTR:
    case META_OP_MKNOD:
    case META_OP_MKDIR:
    case META_OP_SYMLINK:
    case META_OP_LINK:
    case META_OP_WRITE:
    case META_OP_FALLOCATE:
    case META_OP_ALLOC_SLICES:
    case META_OP_MAP_SET:
    case META_OP_RESTORE_FILES:
    case META_OP_RENAME:
    case META_OP_RMDIR:
        return FILL_ATTR;
    case META_OP_ACCESS:
    case META_OP_UNLINK:
    case META_OP_SETXATTR:
    case META_OP_REMOVEXATTR:
    case META_OP_OPEN:
    case META_OP_RELEASE:
    case META_OP_SESSION_CLOSE:
        return 0;
    }
    return 0; /* an op from the wire was checked before; nothing to add */
}

struct resp_parts {
    Arbor__Meta__Attr attr;
    Arbor__Meta__Attr other_attr;
    uint8_t *dirents;
    Arbor__Meta__Piece *pieces;
    Arbor__Meta__Piece **piece_ptrs;
};

static void attr_to_pb(const struct meta_attr *a, Arbor__Meta__Attr *pb)
{
    *pb = (Arbor__Meta__Attr)ARBOR__META__ATTR__INIT;
    pb->ino = a->ino;
    pb->mode = a->mode;
    pb->nlink = a->nlink;
    pb->uid = a->uid;
    pb->gid = a->gid;
    pb->rdev = a->rdev;
    pb->size = a->size;
    pb->atime_ns = a->atime_ns;
    pb->mtime_ns = a->mtime_ns;
    pb->ctime_ns = a->ctime_ns;
}

static struct meta_attr attr_of_pb(const Arbor__Meta__Attr *pb)
{
    return (struct meta_attr){.ino = pb->ino, .mode = pb->mode, .nlink = pb->nlink,
                              .uid = pb->uid, .gid = pb->gid, .rdev = pb->rdev,
                              .size = pb->size, .atime_ns = pb->atime_ns,
                              .mtime_ns = pb->mtime_ns, .ctime_ns = pb->ctime_ns};
}

static int parts_fill(const struct meta_response *resp, unsigned what, Arbor__Meta__Response *pb,
                      struct resp_parts *p)
{
    const struct meta_reply *r = &resp->reply;

    if (what & FILL_ATTR) {
        attr_to_pb(&r->attr, &p->attr);
        pb->attr = &p->attr;
    }
    if ((what & FILL_ATTR) && r->other.ino != 0) {
        attr_to_pb(&r->other, &p->other_attr);
        pb->other_attr = &p->other_attr;
    }
    if ((what & FILL_ENTRIES) && r->entry_count > 0) {
        size_t need = dirents_size(r->entries, r->entry_count);
        if ((p->dirents = ar_malloc(need)) == NULL)
            return -ENOMEM;
        dirents_put(r->entries, r->entry_count, p->dirents);
        pb->dirents = (ProtobufCBinaryData){.len = need, .data = p->dirents};
    }
    pb->is_end = r->is_end;
    if (what & FILL_TARGET)
        pb->data = (ProtobufCBinaryData){.len = strnlen(r->target, sizeof(r->target)),
                                         .data = (uint8_t *)(uintptr_t)r->target};
    if (what & FILL_DATA) {
        uint32_t n = r->data_len < r->data_cap ? r->data_len : r->data_cap;
        pb->data = (ProtobufCBinaryData){.len = r->data != NULL ? n : 0, .data = r->data};
        pb->data_len = r->data_len;
    }
    if ((what & FILL_PIECES) && r->slice_count > 0) {
        p->pieces = ar_malloc(sizeof(*p->pieces) * r->slice_count);
        p->piece_ptrs = ar_malloc(sizeof(*p->piece_ptrs) * r->slice_count);
        if (p->pieces == NULL || p->piece_ptrs == NULL)
            return -ENOMEM;
        for (uint32_t i = 0; i < r->slice_count; i++) {
            const struct meta_slice *s = &r->slices[i];
            p->pieces[i] = (Arbor__Meta__Piece)ARBOR__META__PIECE__INIT;
            p->pieces[i].id = s->id;
            p->pieces[i].size = s->size;
            p->pieces[i].off = s->off;
            p->pieces[i].len = s->len;
            p->pieces[i].pos = s->pos;
            p->piece_ptrs[i] = &p->pieces[i];
        }
        pb->n_pieces = r->slice_count;
        pb->pieces = p->piece_ptrs;
        pb->chunk_offset = r->chunk_offset;
        pb->map_hash = r->map_hash;
    }
    if (what & FILL_STATFS) {
        pb->files = r->files;
        pb->bytes = r->bytes;
    }
    return 0;
}

/* A group's status in its protobuf form; its arrays point into g. */
static void group_status_to_pb(const struct meta_group_status *g, Arbor__Meta__GroupStatus *pb)
{
    *pb = (Arbor__Meta__GroupStatus)ARBOR__META__GROUP_STATUS__INIT;
    pb->shard = g->shard;
    pb->role = g->role;
    pb->term = g->term;
    pb->leader = g->leader;
    pb->commit = g->commit;
    pb->applied = g->applied;
    pb->last = g->last;
    pb->checkpoint = g->checkpoint;
    pb->files = g->files;
    pb->memory_bytes = g->memory_bytes;
    pb->log_bytes = g->log_bytes;
    pb->checkpoint_bytes = g->checkpoint_bytes;
    pb->archived = g->archived;
    pb->archive_tail_bytes = g->archive_tail_bytes;
    pb->background_waiting = g->background_waiting;
    pb->background_done = g->background_done;
    pb->background_yielded = g->background_yielded;
    pb->background_busy_peak = g->background_busy_peak;
    pb->n_peer_ids = g->peer_count;
    pb->peer_ids = (uint64_t *)(uintptr_t)g->peer_ids;
    pb->n_peer_match = g->peer_count;
    pb->peer_match = (uint64_t *)(uintptr_t)g->peer_match;
    pb->n_voters = g->voter_count;
    pb->voters = (uint64_t *)(uintptr_t)g->voters;
    pb->n_learners = g->learner_count;
    pb->learners = (uint64_t *)(uintptr_t)g->learners;
}

int meta_response_encode(const struct meta_response *resp, enum meta_op op, uint8_t *buf,
                         size_t cap, size_t *len)
{
    Arbor__Meta__Response pb = ARBOR__META__RESPONSE__INIT;
    struct resp_parts parts = {.dirents = NULL};

    AR_ASSERT(resp != NULL && buf != NULL && len != NULL);
    pb.id = resp->id;
    pb.rc = resp->rc;
    pb.leader = resp->leader;
    pb.leader_addr = (char *)(uintptr_t)resp->leader_addr;
    pb.epoch = resp->epoch;
    pb.session = resp->session;
    pb.session_timeout_ms = resp->session_timeout_ms;
    pb.node = resp->node;
    pb.disk_free_bytes = resp->disk_free_bytes;
    pb.disk_reserve_bytes = resp->disk_reserve_bytes;
    pb.memory_available_bytes = resp->memory_available_bytes;
    pb.archive_error = (char *)(uintptr_t)resp->archive_error;
    pb.lease = resp->lease;
    pb.shard = resp->shard;
    pb.notice = resp->notice;
    AR_ASSERT(resp->changed_count <= META_NOTICE_INOS_MAX &&
              resp->renamed_count <= META_NOTICE_INOS_MAX);
    pb.n_changed = resp->changed_count;
    pb.changed = (uint64_t *)(uintptr_t)resp->changed;
    pb.n_renamed = resp->renamed_count;
    pb.renamed = (uint64_t *)(uintptr_t)resp->renamed;
    Arbor__Meta__GroupStatus gs[META_STATUS_GROUPS_MAX];
    Arbor__Meta__GroupStatus *gsp[META_STATUS_GROUPS_MAX];
    AR_ASSERT(resp->group_count <= META_STATUS_GROUPS_MAX);
    for (uint32_t i = 0; i < resp->group_count; i++) {
        group_status_to_pb(&resp->groups[i], &gs[i]);
        gsp[i] = &gs[i];
    }
    pb.n_groups = resp->group_count;
    pb.groups = gsp;
    int rc = resp->rc == 0 ? parts_fill(resp, fills(op), &pb, &parts) : 0;
    if (rc == 0) {
        size_t need = arbor__meta__response__get_packed_size(&pb);
        rc = frame(need, buf, cap, len);
        if (rc == 0)
            arbor__meta__response__pack(&pb, buf + 4);
    }
    ar_free(parts.dirents);
    ar_free(parts.pieces);
    ar_free(parts.piece_ptrs);
    return rc;
}

/* Status groups, checked by the caller against the bounds. */
static void copy_groups(const Arbor__Meta__Response *pb, struct meta_response *r)
{
    r->group_count = (uint32_t)pb->n_groups;
    for (size_t i = 0; i < pb->n_groups; i++) {
        const Arbor__Meta__GroupStatus *g = pb->groups[i];
        struct meta_group_status *o = &r->groups[i];
        *o = (struct meta_group_status){.shard = g->shard, .role = g->role, .term = g->term,
                                        .leader = g->leader, .commit = g->commit,
                                        .applied = g->applied, .last = g->last,
                                        .checkpoint = g->checkpoint, .files = g->files,
                                        .memory_bytes = g->memory_bytes,
                                        .log_bytes = g->log_bytes,
                                        .checkpoint_bytes = g->checkpoint_bytes,
                                        .archived = g->archived,
                                        .archive_tail_bytes = g->archive_tail_bytes,
                                        .background_waiting = g->background_waiting,
                                        .background_done = g->background_done,
                                        .background_yielded = g->background_yielded,
                                        .background_busy_peak = g->background_busy_peak,
                                        .peer_count = (uint32_t)g->n_peer_ids,
                                        .voter_count = (uint32_t)g->n_voters,
                                        .learner_count = (uint32_t)g->n_learners};
        for (size_t k = 0; k < g->n_peer_ids; k++) {
            o->peer_ids[k] = g->peer_ids[k];
            o->peer_match[k] = g->peer_match[k];
        }
        for (size_t k = 0; k < g->n_voters; k++) {
            o->voters[k] = g->voters[k];
        }
        for (size_t k = 0; k < g->n_learners; k++) {
            o->learners[k] = g->learners[k];
        }
    }
}

static int copy_response(const Arbor__Meta__Response *pb, struct meta_response_buf *out)
{
    struct meta_response *r = &out->r;
    struct meta_reply *rp = &r->reply;

    if (pb->n_pieces > META_READ_SLICES_MAX ||
        pb->data.len > sizeof(out->data) || strlen(pb->leader_addr) >= sizeof(r->leader_addr) ||
        strlen(pb->archive_error) >= sizeof(r->archive_error) ||
        pb->n_groups > META_STATUS_GROUPS_MAX || pb->n_changed > META_NOTICE_INOS_MAX ||
        pb->n_renamed > META_NOTICE_INOS_MAX)
        return -EPROTO;
    for (size_t i = 0; i < pb->n_groups; i++) {
        const Arbor__Meta__GroupStatus *g = pb->groups[i];
        if (g->n_peer_ids > META_STATUS_PEERS_MAX || g->n_peer_ids != g->n_peer_match ||
            g->n_voters > META_STATUS_PEERS_MAX || g->n_learners > META_STATUS_PEERS_MAX)
            return -EPROTO;
    }
    memset(r, 0, sizeof(*r));
    r->id = pb->id;
    r->rc = pb->rc;
    r->leader = pb->leader;
    memcpy(r->leader_addr, pb->leader_addr, strlen(pb->leader_addr) + 1);
    r->epoch = pb->epoch;
    r->session = pb->session;
    r->session_timeout_ms = pb->session_timeout_ms;
    r->node = pb->node;
    r->disk_free_bytes = pb->disk_free_bytes;
    r->disk_reserve_bytes = pb->disk_reserve_bytes;
    r->memory_available_bytes = pb->memory_available_bytes;
    memcpy(r->archive_error, pb->archive_error, strlen(pb->archive_error) + 1);
    r->lease = pb->lease;
    r->shard = pb->shard;
    r->notice = pb->notice;
    for (size_t i = 0; i < pb->n_changed; i++) {
        out->changed[i] = pb->changed[i];
    }
    for (size_t i = 0; i < pb->n_renamed; i++) {
        out->renamed[i] = pb->renamed[i];
    }
    r->changed_count = (uint32_t)pb->n_changed;
    r->renamed_count = (uint32_t)pb->n_renamed;
    r->changed = out->changed;
    r->renamed = out->renamed;
    copy_groups(pb, r);
    if (pb->attr != NULL)
        rp->attr = attr_of_pb(pb->attr);
    if (pb->other_attr != NULL)
        rp->other = attr_of_pb(pb->other_attr);
    rp->entries = out->entries;
    if (!dirents_get(pb->dirents.data, pb->dirents.len, out->entries, &rp->entry_count))
        return -EPROTO;
    rp->is_end = pb->is_end;
    if (pb->data.len > 0)
        memcpy(out->data, pb->data.data, pb->data.len);
    rp->data = out->data;
    rp->data_cap = (uint32_t)pb->data.len;
    rp->data_len = pb->data_len > 0 ? pb->data_len : (uint32_t)pb->data.len;
    size_t tlen = pb->data.len < sizeof(rp->target) ? pb->data.len : sizeof(rp->target) - 1;
    memcpy(rp->target, out->data, tlen); /* readlink's target travels as data */
    rp->target[tlen] = '\0';
    rp->slices = out->slices;
    for (size_t i = 0; i < pb->n_pieces; i++) {
        const Arbor__Meta__Piece *p = pb->pieces[i];
        out->slices[i] = (struct meta_slice){.id = p->id, .size = p->size, .off = p->off,
                                             .len = p->len, .pos = p->pos};
    }
    rp->slice_count = (uint32_t)pb->n_pieces;
    rp->slice_cap = META_READ_SLICES_MAX;
    rp->chunk_offset = pb->chunk_offset;
    rp->map_hash = pb->map_hash;
    rp->files = pb->files;
    rp->bytes = pb->bytes;
    return 0;
}

int meta_response_id(const uint8_t *buf, size_t len, uint64_t *id)
{
    size_t at = 0;

    *id = 0; /* proto3 leaves a zero id out */
    /* bounded: each turn moves past one field */
    while (at < len) {
        uint64_t key;
        uint64_t v;
        if (!get_varint(buf, len, &at, &key))
            return -EPROTO;
        switch (key & 7) {
        case 0: /* varint */
            if (!get_varint(buf, len, &at, &v))
                return -EPROTO;
            if (key >> 3 == 1)
                *id = v; /* the last one counts, as in a full decode */
            break;
        case 1: /* 64-bit */
        case 5: /* 32-bit */
            v = (key & 7) == 1 ? 8 : 4;
            if (len - at < v)
                return -EPROTO;
            at += v;
            break;
        case 2: /* length-delimited */
            if (!get_varint(buf, len, &at, &v) || len - at < v)
                return -EPROTO;
            at += v;
            break;
        default:
            return -EPROTO;
        }
    }
    return 0;
}

int meta_response_decode(const uint8_t *buf, size_t len, struct meta_response_buf *out)
{
    AR_ASSERT(out != NULL);
    if (len > META_FRAME_BYTES_MAX)
        return -EMSGSIZE;
    Arbor__Meta__Response *pb = arbor__meta__response__unpack(&rpc_allocator, len, buf);
    if (pb == NULL)
        return -EPROTO;
    int rc = copy_response(pb, out);
    arbor__meta__response__free_unpacked(pb, &rpc_allocator);
    return rc;
}
