/* raft/wire.h - frames of Raft messages between replicas (msg_wire.c):
 * [u32 little-endian length][protobuf Batch], built message by message.
 * Included only from raft/ and tests/raft/. */
#ifndef ARBOR_RAFT_WIRE_H
#define ARBOR_RAFT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"

/* A frame being built: buf[0..4) is the length, filled by seal. */
struct raft__frame {
    uint8_t *buf;
    size_t used;
    size_t cap;
    uint32_t count; /* messages in it */
};

/* Add m (of group) to f. -EMSGSIZE when f would pass RAFT_FRAME_BYTES_MAX
 * (send f and start another), -ENOMEM. */
int raft__wire_append(struct raft__frame *f, uint64_t group, const struct raft_msg *m);
/* Write the length; the frame is buf[0..used). */
void raft__wire_seal(struct raft__frame *f);

/* Each message of a frame's Batch (buf without its length), checked
 * against raft/limits.h and handed over one at a time, borrowed for the
 * call. Element counts are bounded before anything is unpacked. A bad
 * message stops the frame: -EPROTO for bytes no peer should send (the
 * messages before it were handed over; each stands alone), -EMSGSIZE,
 * -ENOMEM. */
typedef void (*raft__wire_msg_cb)(uint64_t group, const struct raft_msg *m, void *ctx);
int raft__wire_decode(const uint8_t *buf, size_t len, raft__wire_msg_cb cb, void *ctx);

#endif
