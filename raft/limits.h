/* raft/limits.h - every bound of the Raft library, each with its reason. */
#ifndef ARBOR_RAFT_LIMITS_H
#define ARBOR_RAFT_LIMITS_H

#include "raft.h"

/* One entry: a shard command is at most 4 MiB (META_MSG_BYTES_MAX). */
#define RAFT_ENTRY_BYTES_MAX (4u << 20)
/* Bytes a leader holds in entries not yet committed: a leader cut off from
 * its followers refuses proposals (-ENOBUFS) instead of filling memory. */
#define RAFT_UNCOMMITTED_BYTES_MAX (64ull << 20)
/* Appends in flight to one follower: the pipelining window. */
#define RAFT_INFLIGHT_MAX 256u
/* Reads waiting for a heartbeat round. */
#define RAFT_READS_MAX 4096u
/* Heartbeat rounds remembered for leases (rounds older than this have
 * expired long before: a round is sent every heartbeat_ticks). */
#define RAFT_ROUNDS_KEPT 64u
/* Entries handed to the host in one ready for applying, so one ready
 * cannot pin an unbounded batch. */
#define RAFT_APPLY_BATCH_MAX 4096u
/* Entries in one incoming append message. */
#define RAFT_APPEND_ENTRIES_MAX 65536u
/* One frame between replicas: a batch of messages for one peer. An append
 * carries at most append_bytes_max of entries (at least one entry, up to
 * RAFT_ENTRY_BYTES_MAX), so a batch this large is already many messages. */
#define RAFT_FRAME_BYTES_MAX (64u << 20)
/* Messages in one frame. */
#define RAFT_FRAME_MSGS_MAX 65536u
/* Bytes queued for one peer while its connection is down or slow: past
 * it messages are dropped (Raft sends again). */
#define RAFT_PEER_QUEUE_BYTES_MAX (128u << 20)
/* Incoming connections a transport keeps: each may buffer a whole frame. */
#define RAFT_CONNS_MAX 64u
/* Peers one transport connects to. */
#define RAFT_PEERS_MAX 64u
/* A log directory's path. */
#define RAFT_PATH_MAX 1024u
/* Snapshot chunk bytes, both ways. */
#define RAFT_CHUNK_BYTES_MAX (4u << 20)

_Static_assert(RAFT_VOTERS_MAX % 2 == 1, "an odd voter bound; a quorum of it is a majority");
_Static_assert(RAFT_ROUNDS_KEPT >= 8, "leases need a few rounds of history");

#endif
