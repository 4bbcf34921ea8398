/* meta/cmd_wire.c - struct meta_cmd to and from its protobuf form. The only
 * file of meta/ that sees generated protobuf-c types (style §7).
 * Decoding validates while it copies into arbor's structs and frees the
 * message before returning; every limit comes from meta/limits.h.
 * Thread: any; no state. */
#include <string.h>

#include "limits.h"
#include "meta.h"
#include "meta.pb-c.h"

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

static ProtobufCAllocator ar_pb_allocator = {.alloc = pb_alloc, .free = pb_free};

static bool op_is_known(uint32_t op)
{
    return op <= META_OP_LAST;
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
    if (cmd->cred.group_count > 0)
        memcpy(groups, cmd->cred.groups, sizeof(uint32_t) * cmd->cred.group_count);
    cred.uid = cmd->cred.uid;
    cred.gid = cmd->cred.gid;
    cred.n_groups = cmd->cred.group_count;
    cred.groups = groups;
    set.mode = cmd->set.mode;
    set.uid = cmd->set.uid;
    set.gid = cmd->set.gid;
    set.size = cmd->set.size;
    set.atime_ns = cmd->set.atime_ns;
    set.mtime_ns = cmd->set.mtime_ns;
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
    size_t need = arbor__meta__command__get_packed_size(&pb);
    if (need > cap || need > META_MSG_BYTES_MAX)
        return -EMSGSIZE;
    *len = arbor__meta__command__pack(&pb, buf);
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
    return 0;
}

int meta_cmd_decode(const uint8_t *buf, size_t len, struct meta_cmd_buf *out)
{
    Arbor__Meta__Command *pb;
    int rc;

    AR_ASSERT(out != NULL);
    if (len > META_MSG_BYTES_MAX)
        return -EMSGSIZE;
    pb = arbor__meta__command__unpack(&ar_pb_allocator, len, buf);
    if (pb == NULL)
        return -EPROTO;
    rc = decode_checked(pb, out);
    arbor__meta__command__free_unpacked(pb, &ar_pb_allocator);
    return rc;
}
