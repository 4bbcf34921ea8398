/* meta/cmd_wire.c - struct meta_cmd to and from its protobuf form. The only
 * file of meta/ that sees generated protobuf-c types (style §7).
 * Decoding validates while it copies into arbor's structs and frees the
 * message before returning; every limit comes from meta/limits.h.
 * Thread: any; no state. */
#include <string.h>

#include "limits.h"
#include "meta.h"
#include "meta.pb-c.h"

/* Decoding allocates from the command buffer's arena by bumping an
 * offset, then from the heap once the arena is full; what the arena gave
 * is never freed piece by piece (the next decode starts it over). */
struct arena {
    uint8_t *base;
    size_t cap;
    size_t used;
    uint32_t heap_count; /* pieces the heap gave: then the message is freed */
};

static void *arena_alloc(void *data, size_t size)
{
    struct arena *a = data;
    size_t need = (size + 15u) & ~(size_t)15u;

    if (need >= size && need <= a->cap - a->used) {
        void *p = a->base + a->used;
        a->used += need;
        return p;
    }
    a->heap_count++;
    return ar_malloc(size);
}

static void arena_free(void *data, void *p)
{
    const struct arena *a = data;
    uintptr_t at = (uintptr_t)p;

    if (at >= (uintptr_t)a->base && at < (uintptr_t)a->base + a->cap)
        return;
    ar_free(p);
}

static bool op_is_known(uint32_t op)
{
    return op <= META_OP_LAST;
}

/* The items of a RESTORE_FILES command as protobuf, in one allocation
 * (freed by the caller): the arrays of pointers, then the messages. */
static int items_encode(const struct meta_cmd *cmd, Arbor__Meta__Command *pb, void **mem)
{
    uint32_t n = cmd->item_count;
    uint32_t np = cmd->piece_count;
    size_t bytes = 0;

    if (n > META_RESTORE_FILES_MAX || np > META_RESTORE_PIECES_MAX)
        return -E2BIG;
    for (uint32_t i = 0; i < n; i++) {
        const struct meta_file_item *it = &cmd->items[i];
        if (it->name_len > META_NAME_BYTES_MAX || it->target_len > META_SYMLINK_BYTES_MAX)
            return -ENAMETOOLONG;
        if (it->piece_first > np || it->piece_count > np - it->piece_first)
            return -EINVAL;
        bytes += it->name_len + 1u + it->target_len + 1u;
    }
    if (bytes > META_RESTORE_BYTES_MAX)
        return -E2BIG;
    size_t size = n * (sizeof(Arbor__Meta__FileItem *) + sizeof(Arbor__Meta__FileItem)) +
                  np * (sizeof(Arbor__Meta__FilePiece *) + sizeof(Arbor__Meta__FilePiece) +
                        sizeof(Arbor__Meta__Slice));
    uint8_t *m = ar_malloc(size > 0 ? size : 1);
    if (m == NULL)
        return -ENOMEM;
    Arbor__Meta__FileItem **items = (Arbor__Meta__FileItem **)(void *)m;
    Arbor__Meta__FilePiece **pieces = (Arbor__Meta__FilePiece **)(void *)(items + n);
    Arbor__Meta__FileItem *item_v = (Arbor__Meta__FileItem *)(void *)(pieces + np);
    Arbor__Meta__FilePiece *piece_v = (Arbor__Meta__FilePiece *)(void *)(item_v + n);
    Arbor__Meta__Slice *slice_v = (Arbor__Meta__Slice *)(void *)(piece_v + np);
    for (uint32_t k = 0; k < np; k++) {
        const struct meta_file_piece *fp = &cmd->pieces[k];
        arbor__meta__slice__init(&slice_v[k]);
        slice_v[k].id = fp->slice.id;
        slice_v[k].size = fp->slice.size;
        slice_v[k].off = fp->slice.off;
        slice_v[k].len = fp->slice.len;
        arbor__meta__file_piece__init(&piece_v[k]);
        piece_v[k].offset = fp->offset;
        piece_v[k].slice = &slice_v[k];
        pieces[k] = &piece_v[k];
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct meta_file_item *it = &cmd->items[i];
        Arbor__Meta__FileItem *f = &item_v[i];
        arbor__meta__file_item__init(f);
        f->name = (ProtobufCBinaryData){.len = it->name_len,
                                        .data = (uint8_t *)(uintptr_t)it->name};
        f->mode = it->mode;
        f->uid = it->uid;
        f->gid = it->gid;
        f->rdev = it->rdev;
        f->atime_ns = it->atime_ns;
        f->mtime_ns = it->mtime_ns;
        f->size = it->size;
        f->target = (ProtobufCBinaryData){.len = it->target_len,
                                          .data = (uint8_t *)(uintptr_t)it->target};
        f->n_pieces = it->piece_count;
        f->pieces = it->piece_count > 0 ? &pieces[it->piece_first] : NULL;
        items[i] = f;
    }
    pb->n_items = n;
    pb->items = n > 0 ? items : NULL;
    *mem = m;
    return 0;
}

/* cmd's credentials (their groups copied into groups) and attributes to
 * set, in their protobuf forms. */
static void cred_set_to_pb(const struct meta_cmd *cmd, Arbor__Meta__Cred *cred,
                           uint32_t groups[META_GROUPS_MAX], Arbor__Meta__SetAttr *set)
{
    if (cmd->cred.group_count > 0)
        memcpy(groups, cmd->cred.groups, sizeof(uint32_t) * cmd->cred.group_count);
    cred->uid = cmd->cred.uid;
    cred->gid = cmd->cred.gid;
    cred->n_groups = cmd->cred.group_count;
    cred->groups = groups;
    set->mode = cmd->set.mode;
    set->uid = cmd->set.uid;
    set->gid = cmd->set.gid;
    set->size = cmd->set.size;
    set->atime_ns = cmd->set.atime_ns;
    set->mtime_ns = cmd->set.mtime_ns;
}

int meta_cmd_encode(const struct meta_cmd *cmd, uint8_t *buf, size_t cap, size_t *len)
{
    Arbor__Meta__Command pb = ARBOR__META__COMMAND__INIT;
    Arbor__Meta__Cred cred = ARBOR__META__CRED__INIT;
    Arbor__Meta__SetAttr set = ARBOR__META__SET_ATTR__INIT;
    Arbor__Meta__Slice slice = ARBOR__META__SLICE__INIT;
    uint32_t groups[META_GROUPS_MAX];

    AR_ASSERT(cmd != NULL && len != NULL);
    if (!op_is_known((uint32_t)cmd->op) || cmd->cred.group_count > META_GROUPS_MAX)
        return -EINVAL;
    if (cmd->name_len > META_NAME_BYTES_MAX || cmd->new_name_len > META_NAME_BYTES_MAX ||
        cmd->target_len > META_SYMLINK_BYTES_MAX)
        return -ENAMETOOLONG;
    if (cmd->value_len > META_XATTR_VALUE_MAX)
        return -E2BIG;
    cred_set_to_pb(cmd, &cred, groups, &set);
    pb.op = (uint32_t)cmd->op;
    pb.cred = &cred;
    pb.now_ns = cmd->now_ns;
    pb.new_ino = cmd->new_ino;
    pb.ino = cmd->ino;
    pb.name = (ProtobufCBinaryData){.len = cmd->name_len, .data = (uint8_t *)(uintptr_t)cmd->name};
    pb.new_dir = cmd->new_dir;
    pb.new_name = (ProtobufCBinaryData){.len = cmd->new_name_len,
                                        .data = (uint8_t *)(uintptr_t)cmd->new_name};
    pb.mode = cmd->mode;
    pb.rdev = cmd->rdev;
    pb.flags = cmd->flags;
    pb.set_mask = cmd->set_mask;
    pb.set = &set;
    pb.target = (ProtobufCBinaryData){.len = cmd->target_len,
                                      .data = (uint8_t *)(uintptr_t)cmd->target};
    pb.cookie = cmd->cookie;
    pb.entry_cap = cmd->entry_cap;
    pb.value = (ProtobufCBinaryData){.len = cmd->value_len,
                                     .data = (uint8_t *)(uintptr_t)cmd->value};
    pb.client_id = cmd->client_id;
    pb.seq = cmd->seq;
    pb.ack_below = cmd->ack_below;
    pb.session = cmd->session;
    pb.epoch = cmd->epoch;
    pb.offset = cmd->offset;
    pb.length = cmd->length;
    slice.id = cmd->slice.id;
    slice.size = cmd->slice.size;
    slice.off = cmd->slice.off;
    slice.len = cmd->slice.len;
    pb.slice = &slice;
    pb.if_ctime_ns = cmd->if_ctime_ns;
    pb.if_map_hash = cmd->if_map_hash;
    void *mem = NULL;
    int rc = cmd->item_count > 0 ? items_encode(cmd, &pb, &mem) : 0;
    if (rc != 0)
        return rc;
    size_t need = arbor__meta__command__get_packed_size(&pb);
    if (need > cap || need > META_MSG_BYTES_MAX) {
        ar_free(mem);
        return -EMSGSIZE;
    }
    *len = arbor__meta__command__pack(&pb, buf);
    ar_free(mem);
    AR_ASSERT(*len == need);
    return 0;
}

static int copy_bytes(const ProtobufCBinaryData *b, char *dst, size_t limit, const char **out,
                      uint32_t *out_len)
{
    if (b->len > limit)
        return -ENAMETOOLONG;
    if (b->len > 0)
        memcpy(dst, b->data, b->len);
    dst[b->len] = '\0';
    *out = b->len > 0 ? dst : NULL;
    *out_len = (uint32_t)b->len;
    return 0;
}

/* The items into out's arrays; the names and targets into its arena. */
static int items_decode(const Arbor__Meta__Command *pb, struct meta_cmd_buf *out)
{
    struct meta_cmd *cmd = &out->cmd;
    size_t used = 0;
    uint32_t np = 0;

    if (pb->n_items > META_RESTORE_FILES_MAX)
        return -E2BIG;
    for (size_t i = 0; i < pb->n_items; i++) {
        const Arbor__Meta__FileItem *f = pb->items[i];
        struct meta_file_item *it = &out->items[i];
        if (f->name.len > META_NAME_BYTES_MAX || f->target.len > META_SYMLINK_BYTES_MAX)
            return -ENAMETOOLONG;
        if (used + f->name.len + 1 + f->target.len + 1 > META_RESTORE_BYTES_MAX ||
            f->n_pieces > META_RESTORE_PIECES_MAX - np)
            return -E2BIG;
        *it = (struct meta_file_item){.mode = f->mode, .uid = f->uid, .gid = f->gid,
                                      .rdev = f->rdev, .atime_ns = f->atime_ns,
                                      .mtime_ns = f->mtime_ns, .size = f->size,
                                      .piece_first = np, .piece_count = (uint32_t)f->n_pieces};
        int rc = copy_bytes(&f->name, out->item_bytes + used, META_NAME_BYTES_MAX, &it->name,
                            &it->name_len);
        used += f->name.len + 1;
        if (rc == 0)
            rc = copy_bytes(&f->target, out->item_bytes + used, META_SYMLINK_BYTES_MAX,
                            &it->target, &it->target_len);
        used += f->target.len + 1;
        if (rc != 0)
            return rc;
        for (size_t k = 0; k < f->n_pieces; k++) {
            const Arbor__Meta__FilePiece *p = f->pieces[k];
            struct meta_file_piece *fp = &out->pieces[np++];
            *fp = (struct meta_file_piece){.offset = p->offset};
            if (p->slice != NULL)
                fp->slice = (struct meta_slice){.id = p->slice->id, .size = p->slice->size,
                                                .off = p->slice->off, .len = p->slice->len};
        }
    }
    cmd->items = pb->n_items > 0 ? out->items : NULL;
    cmd->item_count = (uint32_t)pb->n_items;
    cmd->pieces = np > 0 ? out->pieces : NULL;
    cmd->piece_count = np;
    return 0;
}

static int decode_checked(const Arbor__Meta__Command *pb, struct meta_cmd_buf *out)
{
    struct meta_cmd *cmd = &out->cmd;
    int rc;

    if (!op_is_known(pb->op))
        return -EINVAL;
    if (pb->cred != NULL && pb->cred->n_groups > META_GROUPS_MAX)
        return -EINVAL;
    memset(cmd, 0, sizeof(*cmd));
    cmd->op = (enum meta_op)pb->op;
    if (pb->cred != NULL) {
        cmd->cred.uid = pb->cred->uid;
        cmd->cred.gid = pb->cred->gid;
        cmd->cred.group_count = (uint32_t)pb->cred->n_groups;
        if (pb->cred->n_groups > 0) /* no groups: the array is NULL */
            memcpy(cmd->cred.groups, pb->cred->groups, sizeof(uint32_t) * pb->cred->n_groups);
    }
    rc = copy_bytes(&pb->name, out->name, META_NAME_BYTES_MAX, &cmd->name, &cmd->name_len);
    if (rc == 0)
        rc = copy_bytes(&pb->new_name, out->new_name, META_NAME_BYTES_MAX, &cmd->new_name,
                        &cmd->new_name_len);
    if (rc == 0)
        rc = copy_bytes(&pb->target, out->target, META_SYMLINK_BYTES_MAX, &cmd->target,
                        &cmd->target_len);
    if (rc != 0)
        return rc;
    if (pb->value.len > META_XATTR_VALUE_MAX)
        return -E2BIG;
    if (pb->value.len > 0)
        memcpy(out->value, pb->value.data, pb->value.len);
    cmd->value = pb->value.len > 0 ? out->value : NULL;
    cmd->value_len = (uint32_t)pb->value.len;
    cmd->now_ns = pb->now_ns;
    cmd->new_ino = pb->new_ino;
    cmd->ino = pb->ino;
    cmd->new_dir = pb->new_dir;
    cmd->mode = pb->mode;
    cmd->rdev = pb->rdev;
    cmd->flags = pb->flags;
    cmd->set_mask = pb->set_mask;
    cmd->if_ctime_ns = pb->if_ctime_ns;
    cmd->if_map_hash = pb->if_map_hash;
    if (pb->set != NULL) {
        cmd->set.mode = pb->set->mode;
        cmd->set.uid = pb->set->uid;
        cmd->set.gid = pb->set->gid;
        cmd->set.size = pb->set->size;
        cmd->set.atime_ns = pb->set->atime_ns;
        cmd->set.mtime_ns = pb->set->mtime_ns;
    }
    cmd->cookie = pb->cookie;
    cmd->entry_cap = pb->entry_cap;
    cmd->client_id = pb->client_id;
    cmd->seq = pb->seq;
    cmd->ack_below = pb->ack_below;
    cmd->session = pb->session;
    cmd->epoch = pb->epoch;
    cmd->offset = pb->offset;
    cmd->length = pb->length;
    if (pb->slice != NULL) {
        cmd->slice.id = pb->slice->id;
        cmd->slice.size = pb->slice->size;
        cmd->slice.off = pb->slice->off;
        cmd->slice.len = pb->slice->len;
    }
    return items_decode(pb, out);
}

int meta_cmd_decode(const uint8_t *buf, size_t len, struct meta_cmd_buf *out)
{
    Arbor__Meta__Command *pb;
    int rc;

    AR_ASSERT(out != NULL);
    if (len > META_MSG_BYTES_MAX)
        return -EMSGSIZE;
    struct arena a = {.base = out->unpack_arena, .cap = sizeof(out->unpack_arena)};
    ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_free, .allocator_data = &a};
    pb = arbor__meta__command__unpack(&alloc, len, buf);
    if (pb == NULL)
        return -EPROTO;
    rc = decode_checked(pb, out);
    if (a.heap_count > 0) /* else the arena held it all: nothing to walk */
        arbor__meta__command__free_unpacked(pb, &alloc);
    return rc;
}
