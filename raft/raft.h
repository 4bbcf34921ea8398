/* raft/raft.h - the Raft library: one consensus group as a value.
 *
 * The core is a pure state machine in the shape of etcd/raft (design §3): it
 * does no I/O, reads no clock, starts no thread and keeps no globals. A host
 * drives it:
 *
 *   raft_step()     a message from a peer arrived
 *   raft_tick()     a tick of logical time passed (the host picks its length)
 *   raft_propose()  a command to replicate (leader only)
 *   raft_ready()    what to do now: persist, then send, then apply
 *   raft_advance()  that ready has been done
 *
 * Between raft_ready() and raft_advance() the host may keep calling step,
 * tick and propose (the persist runs on another thread); everything the
 * ready points to stays valid until its raft_advance(). At most one ready is
 * outstanding.
 *
 * The contract of a ready, in order:
 *   1. persist: the hard state (if has_hard_state) and the entries (an
 *      append that first drops every stored entry at or after entries[0]
 *      index), then the received snapshot chunk; all synced to disk;
 *   2. send the messages (none of them may leave before step 1 is durable:
 *      votes and acknowledgements depend on it), except the first
 *      early_count, which may be sent as soon as the ready is taken;
 *   3. apply the committed entries in order, and serve the reads whose index
 *      has been applied.
 *
 * Every entry carries the leader's hybrid-logical timestamp (hlc_ns): the
 * wall clock the host passes to raft_tick(), made strictly increasing along
 * the log, so a point in time names a log position (point-in-time restore).
 *
 * Sources: Ongaro's thesis (2014) §3-§6 and §9.6 (pre-vote), etcd/raft.
 * Thread: a node is used by one thread at a time.
 */
#ifndef ARBOR_RAFT_H
#define ARBOR_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_API __attribute__((visibility("default")))

typedef uint64_t raft_id;    /* a replica, never 0 */
typedef uint64_t raft_term;
typedef uint64_t raft_index; /* log positions start at 1; 0 is "none" */

/* Errors beyond errno's (returned negated, as errno values are). */
enum {
    RAFT_EBASE = 11000,
    RAFT_ENOTLEADER,  /* only the leader can do this; raft_leader() may name it */
    RAFT_EBUSY,       /* a membership change or a transfer is already under way */
    RAFT_ECORRUPT,    /* bytes that cannot be what a peer or the disk should send */
};

#define RAFT_VOTERS_MAX   7u  /* quorums beyond 7 only add latency */
#define RAFT_LEARNERS_MAX 4u
#define RAFT_MEMBERS_MAX  (RAFT_VOTERS_MAX + RAFT_LEARNERS_MAX)

/* Who is in the group. Voters elect and count toward commit; learners only
 * receive the log. No id appears twice. */
struct raft_config {
    uint32_t voter_count;
    uint32_t learner_count;
    raft_id voters[RAFT_VOTERS_MAX];
    raft_id learners[RAFT_LEARNERS_MAX];
};

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 1, /* the host's command; size 0 is the leader's own (skip it) */
    RAFT_ENTRY_CONFIG = 2, /* data is raft_config_encode() of the new config */
};

struct raft_entry {
    raft_term term;
    raft_index index;
    uint64_t hlc_ns;   /* the leader's hybrid-logical time, increasing along the log */
    uint8_t type;      /* enum raft_entry_type */
    uint32_t size;     /* bytes of data */
    uint8_t *data;     /* owned by the node (NULL when size is 0) */
};

enum raft_msg_type {
    RAFT_MSG_PREVOTE = 1,   /* would you vote for me at term? (nobody's term changes) */
    RAFT_MSG_PREVOTE_RESP,
    RAFT_MSG_VOTE,
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_APPEND,        /* entries after (index, log_term), and the leader's commit */
    RAFT_MSG_APPEND_RESP,   /* index: the last index now matching; or a reject with a hint */
    RAFT_MSG_HEARTBEAT,     /* commit, and read_seq for ReadIndex rounds */
    RAFT_MSG_HEARTBEAT_RESP,
    RAFT_MSG_SNAPSHOT,      /* a chunk of the snapshot at (index, log_term) */
    RAFT_MSG_SNAPSHOT_RESP, /* offset: bytes held so far; is_done; is_reject */
    RAFT_MSG_TIMEOUT_NOW,   /* leadership transfer: campaign now */
};
#define RAFT_MSG_TYPE_LAST RAFT_MSG_TIMEOUT_NOW

struct raft_msg {
    uint8_t type;          /* enum raft_msg_type */
    raft_id from;
    raft_id to;
    raft_term term;
    raft_index index;      /* APPEND: previous index; (PRE)VOTE: last index; SNAPSHOT: its
                            * index; APPEND_RESP: match index, or on reject the probed one */
    raft_term log_term;    /* the term at index */
    raft_index commit;     /* APPEND, HEARTBEAT: the leader's commit index */
    uint64_t read_seq;     /* HEARTBEAT(_RESP): the ReadIndex round */
    raft_index hint_index; /* APPEND_RESP reject: the follower's last index, or the first
                            * index of the conflicting term hint_term */
    raft_term hint_term;
    bool is_reject;
    bool is_transfer;      /* VOTE after TIMEOUT_NOW: voters set aside their leader lease */
    bool is_done;          /* SNAPSHOT: the last chunk; SNAPSHOT_RESP: installed */
    uint32_t entry_count;  /* APPEND */
    struct raft_entry *entries; /* APPEND; borrowed: raft_step() copies what it keeps */
    uint64_t offset;       /* SNAPSHOT: where chunk starts; SNAPSHOT_RESP: bytes held */
    uint32_t chunk_size;
    const uint8_t *chunk;  /* SNAPSHOT; borrowed like entries */
    struct raft_config config; /* SNAPSHOT: the members as of its index */
    uint64_t hlc_ns;       /* SNAPSHOT: the time of the entry at its index */
    uint32_t host_flags;   /* the sending host's own news of itself (arbor: its disk is
                            * under its reserve), set by the host as it sends; raft
                            * neither sets nor reads it */
};

/* What is stored durably besides the log. */
struct raft_hard_state {
    raft_term term;
    raft_id vote;      /* 0: none this term */
    raft_index commit; /* may be stored lazily; a lower value is safe */
};

enum raft_role { RAFT_FOLLOWER = 1, RAFT_PRE_CANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

/* A read that may be served once index is applied (ReadIndex or lease). */
struct raft_read {
    uint64_t id;      /* the host's id from raft_read_index() */
    raft_index index; /* 0: refused (leadership lost); the host retries elsewhere */
};

/* A snapshot chunk the leader wants from the host for a follower: the host
 * answers with raft_snapshot_send(). */
struct raft_snapshot_want {
    raft_id peer;
    raft_index index;
    uint64_t offset;
};

/* A snapshot chunk received (follower): store it durably at offset of a
 * staging area for (index, term); on is_done, install the whole snapshot
 * atomically (stage, fsync, swap) and replace the stored log with it
 * (raft_seglog_snapshot() with is_reset) before raft_advance(), or call
 * raft_snapshot_fail(). A ready with a chunk carries no entries to apply. */
struct raft_snapshot_chunk {
    raft_index index;
    raft_term term;
    uint64_t hlc_ns;  /* of the entry at index: store it with the snapshot */
    struct raft_config config;
    uint64_t offset;
    uint32_t size;
    const uint8_t *data;
    bool is_done;
};

struct raft_ready {
    bool has_hard_state;
    struct raft_hard_state hard_state;
    bool must_sync;                /* entries, a chunk, or a new term or vote to store:
                                    * false when only the commit index moved, which may
                                    * be stored late (the ready needs no fdatasync) */
    uint32_t entry_count;          /* to persist: drop stored entries >= entries[0].index */
    struct raft_entry *entries;
    bool has_chunk;
    struct raft_snapshot_chunk chunk;
    uint32_t msg_count;            /* to send after persisting, but for the first */
    uint32_t early_count;          /* early_count: a leader's appends, heartbeats and
                                    * snapshots, which may go out at once (thesis §10.2.1:
                                    * the leader's own disk write runs alongside) */
    struct raft_msg *msgs;
    uint32_t committed_count;      /* to apply, in order */
    struct raft_entry *committed;
    uint32_t read_count;
    struct raft_read *reads;
    uint32_t want_count;
    struct raft_snapshot_want *wants;
    bool has_role_change;          /* role or leader changed */
    enum raft_role role;
    raft_id leader;                /* 0: unknown */
};

/* How the node behaves; times in ticks. */
struct raft_options {
    raft_id id;
    uint32_t election_ticks;    /* a follower campaigns after a random wait in
                                 * [election_ticks, 2 * election_ticks) without a leader */
    uint32_t heartbeat_ticks;   /* < election_ticks */
    uint32_t lease_margin_ticks; /* clock drift allowed between replicas; lease reads
                                 * stop this long before the lease could end */
    uint32_t inflight_max;      /* appends in flight to one follower */
    uint32_t append_bytes_max;  /* entry bytes in one append message (at least one entry) */
    uint32_t chunk_bytes_max;   /* bytes of one snapshot chunk */
    uint64_t seed;              /* randomness for election timeouts */
    bool is_apply_unstable;     /* hand out committed entries this node's disk may not
                                 * hold yet (a quorum's does): the host must not make
                                 * state beyond raft_stable_index() durable */
};

/* What a restarting node had stored; all borrowed for the call (copied). */
struct raft_boot {
    struct raft_hard_state hard_state;
    raft_index snapshot_index;   /* 0: none */
    raft_term snapshot_term;
    uint64_t snapshot_hlc_ns;    /* the time of the entry at snapshot_index */
    struct raft_config config;   /* as of the snapshot, or the initial members */
    uint32_t entry_count;        /* entries after the snapshot, consecutive */
    const struct raft_entry *entries;
    raft_index applied;          /* the host's state already holds entries up to here
                                  * (its checkpoint); at least snapshot_index */
};

struct raft_node;

/* Default options for id. */
RAFT_API void raft_options_init(struct raft_options *o, raft_id id);

/* A node from what it had stored (a new group: empty log and the initial
 * config). Returns -EINVAL for inconsistent options or boot state (bytes
 * from disk: a wrong count or a gap is refused, never asserted on), -ENOMEM. */
RAFT_API int raft_node_new(const struct raft_options *o, const struct raft_boot *b,
                           struct raft_node **out);
RAFT_API void raft_node_free(struct raft_node *n);

/* A message from a peer. Returns 0, or -RAFT_ECORRUPT for a message no
 * correct peer sends (ignored; the transport may close the connection),
 * -ENOMEM (the message is dropped; Raft tolerates lost messages). */
RAFT_API int raft_step(struct raft_node *n, const struct raft_msg *m);

/* A tick passed; wall_ns is the host's wall clock for timestamps (it may
 * jump either way; the log's times still increase). */
RAFT_API void raft_tick(struct raft_node *n, uint64_t wall_ns);

/* Append a command. On 0 the node owns data (allocated with the allocator
 * below) and frees it when the entry leaves memory; on error the caller
 * keeps it. *index gets the entry's index. Returns -RAFT_ENOTLEADER,
 * -RAFT_EBUSY (a leadership transfer is under way), -EMSGSIZE, -ENOMEM. */
RAFT_API int raft_propose(struct raft_node *n, uint8_t *data, uint32_t size, raft_index *index);

/* Change the members by one voter or learner at a time: the new config
 * must differ from the current one by adding one id, removing one, or
 * turning a learner into a voter. Takes effect as soon as it is appended.
 * Returns -RAFT_ENOTLEADER, -RAFT_EBUSY (a change is still uncommitted, or
 * the leader has not yet committed an entry of its term), -EINVAL, -ENOMEM. */
RAFT_API int raft_change_config(struct raft_node *n, const struct raft_config *next,
                                raft_index *index);

/* Ask for a linearizable read point. With is_lease and a valid lease the
 * read is ready at once; otherwise the leader confirms its leadership with a
 * heartbeat round (ReadIndex). The answer comes in a later ready's reads.
 * Returns -RAFT_ENOTLEADER, -RAFT_EBUSY (no entry of this term committed
 * yet: try again shortly), -ENOBUFS (too many reads pending). */
RAFT_API int raft_read_index(struct raft_node *n, uint64_t id, bool is_lease);
/* The same read point a valid lease gives, at once and without a ready:
 * the commit index, or 0 when the read must go through raft_read_index()
 * (not the leader, no entry of its term committed yet, or no valid lease).
 * The read is linearizable once the host has applied that far. */
RAFT_API raft_index raft_lease_read(const struct raft_node *n);

/* Hand leadership to a voter that is (or soon will be) up to date. Returns
 * -RAFT_ENOTLEADER, -RAFT_EBUSY, -EINVAL (not a voter, or self). */
RAFT_API int raft_transfer_leader(struct raft_node *n, raft_id to);

/* Campaign now (tests, and a single-node group's first start). */
RAFT_API void raft_campaign(struct raft_node *n);

/* The host has a snapshot of its state machine at index (applied; the
 * host stores the entry's term and hlc_ns with it). The log drops entries
 * up to index - keep; followers further behind get the snapshot. Returns
 * -EINVAL if index is not applied, or not yet on this node's disk. */
RAFT_API int raft_snapshot_taken(struct raft_node *n, raft_index index, uint32_t keep);

/* The snapshot the node knows of: its index (0: none), the term and time
 * of the entry there, and the members as of it; what the host stores with
 * its log (raft_seglog_snapshot()). */
RAFT_API void raft_snapshot_info(const struct raft_node *n, raft_index *index, raft_term *term,
                                 uint64_t *hlc_ns, struct raft_config *config);

/* A chunk of the snapshot at index for peer (answering a want); the node
 * copies it. Returns -EINVAL for a chunk nobody wants (e.g. stale), -ENOMEM. */
RAFT_API int raft_snapshot_send(struct raft_node *n, raft_id peer, raft_index index,
                                uint64_t offset, const uint8_t *data, uint32_t size,
                                bool is_done);

/* A snapshot is being received or stored: the host should not change its
 * state machine's checkpoint meanwhile. */
RAFT_API bool raft_is_receiving_snapshot(const struct raft_node *n);

/* The received snapshot of the current ready could not be stored or
 * installed: the leader is told and will start over. Call before advance. */
RAFT_API void raft_snapshot_fail(struct raft_node *n);

/* What to do now; false when there is nothing. rd stays valid (and the node
 * keeps every pointer in it alive) until raft_advance(n, rd). */
RAFT_API bool raft_ready(struct raft_node *n, struct raft_ready *rd);
RAFT_API void raft_advance(struct raft_node *n, struct raft_ready *rd);
/* The host applied rd's committed entries before persisting rd (they are
 * stable already: a ready commits only what earlier readies persisted), so
 * their clients need not wait for this ready's disk write: count them
 * applied now. raft_advance() then does the rest. */
RAFT_API void raft_applied_early(struct raft_node *n, const struct raft_ready *rd);
/* Entries committed (and stable here) that no ready handed out, for a host
 * that applies between readies — while a ready persists, say — so that
 * clients need not wait for that disk write. Returns how many are in *out
 * (free it with raft_free(); the entries' data stays valid until the next
 * raft_ready()), now counted applied; the host applies them in order.
 * 0 while the ready out still has committed entries to apply, or a
 * snapshot is on its way. */
RAFT_API uint32_t raft_committed_take(struct raft_node *n, struct raft_entry **out);
/* A leader's appends and heartbeats for what was proposed since the last
 * ready, taken while that ready persists, so that followers start on new
 * entries at once (the leader's own disk write may lag, thesis §10.2.1).
 * Returns how many messages are in *out; send them, then free them with
 * raft_msgs_free() before the next call into the node. 0 when not a leader
 * or its term or vote is not on disk yet. */
RAFT_API uint32_t raft_early_take(struct raft_node *n, struct raft_msg **out);
RAFT_API void raft_msgs_free(struct raft_msg *msgs, uint32_t count);

/* Queries. */
RAFT_API enum raft_role raft_role(const struct raft_node *n);
RAFT_API raft_id raft_leader(const struct raft_node *n);
RAFT_API raft_term raft_term_of(const struct raft_node *n);
RAFT_API raft_index raft_commit_index(const struct raft_node *n);
RAFT_API raft_index raft_last_index(const struct raft_node *n);
RAFT_API raft_index raft_applied_index(const struct raft_node *n);
/* The last entry this node's own disk holds (as far as readies advanced). */
RAFT_API raft_index raft_stable_index(const struct raft_node *n);
/* The time of the entry at index, if the node still holds it (or its
 * snapshot is there): the point-in-time archive names checkpoints by it. */
RAFT_API bool raft_entry_time(const struct raft_node *n, raft_index index, uint64_t *hlc_ns);
RAFT_API const struct raft_config *raft_config_of(const struct raft_node *n);
/* The index of the entry that set that config (in effect once appended;
 * a change is safe to act on once this is committed), or of the snapshot
 * it came with. */
RAFT_API raft_index raft_config_index(const struct raft_node *n);

/* Ticks since this node last heard from a leader of its term (0 at the
 * leader itself; UINT64_MAX if never): a follower's reads are at most this
 * stale once it has applied its commit index. */
RAFT_API uint64_t raft_ticks_since_leader(const struct raft_node *n);

/* At the leader: the index peer's log is known to match up to; false
 * elsewhere, or for a peer that is not a member. */
RAFT_API bool raft_peer_match(const struct raft_node *n, raft_id peer, raft_index *match);

/* The config as entry bytes: at most RAFT_CONFIG_BYTES_MAX. */
#define RAFT_CONFIG_BYTES_MAX (8u + 8u * RAFT_MEMBERS_MAX)
RAFT_API uint32_t raft_config_encode(const struct raft_config *c, uint8_t *buf);
/* Returns -RAFT_ECORRUPT for bytes that are not a valid config. */
RAFT_API int raft_config_decode(const uint8_t *buf, uint32_t size, struct raft_config *out);
RAFT_API bool raft_config_is_voter(const struct raft_config *c, raft_id id);
RAFT_API bool raft_config_has(const struct raft_config *c, raft_id id);

/* ---- the segment log (seglog.c) --------------------------------------------------------
 * A node's durable log and hard state in one directory: append-only
 * segment files with a CRC32C on every record, synced once per loop turn
 * for everything appended (group commit). The format is drawn in seglog.c.
 * Unlike the core, these calls do blocking I/O: run them off the loop
 * thread. Errors come with a reason in errmsg (RAFT_ERRMSG_MAX bytes). */
#define RAFT_ERRMSG_MAX 256u

struct raft_seglog;

struct raft_seglog_options {
    uint64_t segment_bytes; /* seal the open segment past this size (64 MiB) */
    uint64_t retain_ns;     /* keep a sealed segment this long after its newest entry,
                             * for point-in-time restore (7 days) */
};
RAFT_API void raft_seglog_options_init(struct raft_seglog_options *o);

/* Open the log in dir (made if absent) and recover it into *boot, which
 * stays valid until the next call on the log. A write torn by a crash at the
 * end of the newest segment is cut off; damage anywhere else is
 * -RAFT_ECORRUPT, never skipped. Also -EINVAL, -ENOMEM, -errno of the disk. */
RAFT_API int raft_seglog_open(const char *dir, const struct raft_seglog_options *o,
                              struct raft_seglog **out, struct raft_boot *boot, char *errmsg);
RAFT_API void raft_seglog_close(struct raft_seglog *l);

/* Write what rd asks to persist (its hard state, and its entries, which
 * replace every stored entry from entries[0] on); durable only after
 * raft_seglog_sync(). A failed write or sync makes every later call fail. */
RAFT_API int raft_seglog_append(struct raft_seglog *l, const struct raft_ready *rd,
                                char *errmsg);
RAFT_API int raft_seglog_sync(struct raft_seglog *l, char *errmsg);

/* The state machine holds a snapshot at index (term, hlc_ns and members
 * c as of it): recovery starts there, and sealed segments wholly below it
 * go once older than the retention window at now_ns. With is_reset (a
 * snapshot received from the leader) every stored entry goes. Durable on
 * return. Without is_reset, an index below the stored snapshot's is
 * ignored (the snapshot never moves back). Use index 0 when formatting a
 * group, to store its members. */
RAFT_API int raft_seglog_snapshot(struct raft_seglog *l, raft_index index, raft_term term,
                                  uint64_t hlc_ns, const struct raft_config *c, bool is_reset,
                                  uint64_t now_ns, char *errmsg);

/* Give each(ctx, e) the entries from..to that the log in dir holds, in
 * order and without a gap, each borrowed for its call; stop at the first
 * one the log lacks, or when each returns non-zero (which is returned).
 * Safe beside a node that appends to the same log on another thread,
 * for entries known committed: Raft never replaces a committed entry, and
 * a leader's log holds them all, so one found there is the committed one
 * (a follower's, only up to its own commit index). Reads
 * whole segment files (segment_bytes each). -RAFT_ECORRUPT for a damaged
 * sealed segment; -errno of the disk. */
RAFT_API int raft_seglog_read(const char *dir, raft_index from, raft_index to,
                              int (*each)(void *ctx, const struct raft_entry *e), void *ctx,
                              char *errmsg);

/* ---- the transport (transport_uv.c) -------------------------------------------------------
 * Raft messages between processes over TCP on a libuv loop: one transport
 * per process for all its groups; every message for a peer in a loop turn
 * goes out in one frame ([u32 length][protobuf Batch], raft/raft.proto).
 * Lost connections are retried with capped back-off; a malformed or
 * oversize frame closes its connection, never the process. */
struct raft_transport;
struct uv_loop_s;

/* A message arrived for group; borrowed for the call (raft_step() copies). */
typedef void (*raft_transport_recv_cb)(void *ctx, uint64_t group, const struct raft_msg *m);
/* Something to log: a peer unreachable or gone, a bad frame and why (peer 0:
 * an incoming connection). Called often while a peer is down: rate-limit. */
typedef void (*raft_transport_event_cb)(void *ctx, raft_id peer, int status, const char *reason);

struct raft_transport_options {
    raft_id id;
    const char *host;                /* listen address, an IP */
    uint16_t port;                   /* 0: any free port (raft_transport_port()) */
    raft_transport_recv_cb recv;
    raft_transport_event_cb event;   /* may be NULL */
    void *ctx;
};

/* Listen and get ready to connect. -EINVAL (host), or libuv's error (port
 * in use: UV_EADDRINUSE), with errmsg. */
RAFT_API int raft_transport_start(struct uv_loop_s *loop, const struct raft_transport_options *o,
                                  struct raft_transport **out, char *errmsg);
RAFT_API uint16_t raft_transport_port(const struct raft_transport *t);
/* A peer to send to (connected at once, then kept connected). -EINVAL,
 * -EEXIST, -ENOMEM. */
RAFT_API int raft_transport_add_peer(struct raft_transport *t, raft_id id, const char *host,
                                     uint16_t port);
/* Queue m (m->to names the peer) for the next flush; m is copied.
 * -ENOENT (unknown peer), -ENOBUFS (its queue is full: dropped). */
RAFT_API int raft_transport_send(struct raft_transport *t, uint64_t group,
                                 const struct raft_msg *m);
/* Write what is queued, one frame per peer; call once a loop turn. */
RAFT_API void raft_transport_flush(struct raft_transport *t);
/* Close everything; memory goes once the loop has run the close callbacks. */
RAFT_API void raft_transport_stop(struct raft_transport *t);

/* Replace the allocator (tests fail the Nth call). Any NULL: the libc ones. */
RAFT_API void raft_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                                 void (*free_fn)(void *));
RAFT_API void *raft_malloc(size_t size); /* for data handed to raft_propose() */
RAFT_API void raft_free(void *p);

#endif
