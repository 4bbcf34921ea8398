/* raft/core.h - what the files of the Raft core share: the node, its log,
 * the leader's view of each peer, and the assert and allocator hooks.
 * Included only from raft/ and tests/raft/.
 *
 * Files: log.c (the entries in memory), progress.c (the leader's view of a
 * peer), election.c (roles, votes, leases), replication.c (appends,
 * commit, snapshots, reads), membership.c (configs), node.c (the public
 * calls, ready and advance), base.c (assert, allocator).
 * Thread: none; a node is used by one thread at a time. */
#ifndef ARBOR_RAFT_CORE_H
#define ARBOR_RAFT_CORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "limits.h"
#include "raft.h"

/* ---- assertions and memory -------------------------------------------------------- */

void raft__assert_fail(const char *file, int line, const char *expr) __attribute__((noreturn));
#define RAFT_ASSERT(x) ((x) ? (void)0 : raft__assert_fail(__FILE__, __LINE__, #x))
#define RAFT_UNREACHABLE() raft__assert_fail(__FILE__, __LINE__, "unreachable")
#define RAFT_CONTAINER_OF(ptr, type, member)                                                   \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

void *raft__realloc(void *p, size_t size);
void *raft__calloc(size_t count, size_t size);
/* Grow *v (elements of elem bytes, *cap of them) to hold need; -ENOMEM leaves it. */
int raft__grow(void **v, uint32_t *cap, uint32_t need, size_t elem);

/* ---- the log in memory (log.c) ------------------------------------------------------
 * Entries after `offset` in a ring. offset is the index before the first
 * entry held (the point compacted to), offset_term its term.
 * Invariants: offset <= stable <= last; commit <= last; applied <= commit;
 * terms and hlc_ns increase along the log. */
struct raft__log {
    struct raft_entry *ring;
    uint32_t cap;          /* slots; a power of two */
    uint32_t head;         /* slot of offset + 1 */
    uint64_t count;        /* entries held */
    raft_index offset;
    raft_term offset_term;
    uint64_t offset_hlc_ns;
    raft_index stable;     /* entries <= stable are on the host's disk */
    raft_index commit;
    raft_index applied;    /* handed to the host to apply */
    uint64_t uncommitted_bytes;
};

/* Data whose entry left the log, freed once no ready can point to it. */
struct raft__grave {
    void *data;
    uint64_t after_ready; /* free at the advance of this ready (or later) */
};

int raft__log_init(struct raft__log *l, raft_index offset, raft_term offset_term,
                   uint64_t offset_hlc_ns);
uint64_t raft__log_last_hlc(const struct raft__log *l);
void raft__log_fini(struct raft__log *l);
raft_index raft__log_last(const struct raft__log *l);
raft_term raft__log_last_term(const struct raft__log *l);
/* The term at index; false when index is compacted or past the end. */
bool raft__log_term(const struct raft__log *l, raft_index index, raft_term *term);
struct raft_entry *raft__log_at(const struct raft__log *l, raft_index index);
/* Append one entry at last + 1 (the log takes its data). -ENOMEM. */
int raft__log_append(struct raft__log *l, const struct raft_entry *e);
/* Reserve room for more entries, so a batch appends without failing. */
int raft__log_reserve(struct raft__log *l, uint64_t more);

/* ---- the leader's view of a peer (progress.c) -----------------------------------------
 * PROBE: one append at a time until one matches; REPLICATE: a window of
 * appends in flight; SNAPSHOT: sending a snapshot, no appends.
 * Invariant: match < next; in REPLICATE, inflight holds the last index of
 * each append sent and not yet acknowledged, ascending. */
enum raft__pr_state { PR_PROBE = 1, PR_REPLICATE, PR_SNAPSHOT };

struct raft__progress {
    raft_id id;
    raft_index match;
    raft_index next;
    uint8_t state;
    bool is_probe_sent;     /* PROBE: an append is out; wait for it or a heartbeat */
    bool is_active;         /* heard from since the last quorum check */
    uint32_t inflight_head;
    uint32_t inflight_count;
    raft_index inflight[RAFT_INFLIGHT_MAX];
    uint64_t acked_round;   /* the newest heartbeat round it answered */
    raft_index snap_index;  /* SNAPSHOT: the one being sent */
    uint64_t snap_acked;    /* bytes the peer holds */
    bool is_snap_wanted;    /* a chunk is asked of the host or in flight */
    uint32_t snap_idle_ticks;
};

void raft__pr_reset(struct raft__progress *p, raft_id id, raft_index last);
bool raft__pr_is_paused(const struct raft__progress *p, uint32_t window);
void raft__pr_sent(struct raft__progress *p, raft_index last_sent);
/* A success up to index; false if stale. */
bool raft__pr_acked(struct raft__progress *p, raft_index index);
/* A reject of the append after `rejected`; hint is where to try next. False if stale. */
bool raft__pr_rejected(struct raft__progress *p, raft_index rejected, raft_index hint);
void raft__pr_become(struct raft__progress *p, enum raft__pr_state s);
/* Forget the oldest append in flight (its answer may be lost). */
void raft__pr_free_one(struct raft__progress *p);

/* ---- the node ------------------------------------------------------------------------ */

struct raft__config_at {
    raft_index index; /* the entry that set it (or the snapshot's index) */
    struct raft_config config;
};

struct raft__pending_read {
    uint64_t id;
    raft_index index;
    uint64_t round; /* ready once a quorum answered this heartbeat round */
};

/* A snapshot being received (follower). */
struct raft__snap_recv {
    raft_index index;
    raft_term term;
    uint64_t hlc_ns;
    struct raft_config config;
    uint64_t received;   /* bytes handed to the host */
    raft_id from;
    uint32_t idle_ticks; /* since its last chunk: past a limit it is given up */
    bool is_active;      /* while active the log takes no appends: an install
                          * would drop entries acknowledged meanwhile */
};

struct raft_node {
    struct raft_options opt;
    raft_id id;
    enum raft_role role;
    raft_term term;
    raft_id vote;
    raft_id leader;
    struct raft__log log;
    uint64_t rng;
    uint64_t ticks;              /* ticks since start: the node's monotonic clock */
    uint64_t wall_ns;            /* the host's wall clock at the last tick */
    uint64_t hlc_ns;             /* the newest timestamp seen or given */
    uint32_t election_elapsed;
    uint32_t election_timeout;   /* randomized */
    uint32_t heartbeat_elapsed;
    uint64_t leader_heard_tick;  /* when a leader was last heard from */
    bool has_heard_leader;

    /* configs: history[count - 1] is in effect; earlier ones above the snapshot
     * are kept so a truncation can fall back */
    struct raft__config_at *configs;
    uint32_t config_count;
    uint32_t config_cap;

    /* elections */
    raft_id granted[RAFT_VOTERS_MAX];
    uint32_t granted_count;
    raft_id refused[RAFT_VOTERS_MAX];
    uint32_t refused_count;
    bool is_transfer_campaign;

    /* leader */
    struct raft__progress *peers; /* every member but self */
    uint32_t peer_count;
    uint32_t peer_cap;
    uint32_t check_elapsed;
    raft_id transfer_to;
    uint32_t transfer_elapsed;
    bool is_lease_void;         /* a transfer started this term: no lease reads */
    uint64_t round;             /* heartbeat rounds sent */
    uint64_t round_tick[RAFT_ROUNDS_KEPT];
    struct raft__pending_read *reads;
    uint32_t read_count;
    uint32_t read_cap;
    struct raft_read *reads_ready;
    uint32_t ready_read_count;
    uint32_t ready_read_cap;

    /* snapshots */
    raft_index snap_index;      /* the host's newest snapshot (0: none) */
    raft_term snap_term;
    uint64_t snap_hlc_ns;
    struct raft_config snap_config;
    struct raft__snap_recv recv;
    bool has_chunk;             /* a chunk waits for the next ready */
    struct raft_snapshot_chunk chunk; /* its data is owned (chunk_buf) */
    uint8_t *chunk_buf;
    bool is_chunk_failed;
    struct raft_snapshot_want *wants;
    uint32_t want_count;
    uint32_t want_cap;

    /* out */
    struct raft_msg *msgs;      /* queued for the next ready; APPEND entries and
                                 * SNAPSHOT chunks are owned arrays */
    uint32_t msg_count;
    uint32_t msg_cap;
    uint32_t early_count;       /* set by order_early() for the ready */
    bool is_hs_dirty;
    bool is_vote_dirty;         /* the term or vote changed since the last ready */
    bool is_role_dirty;
    struct raft__grave *graves;
    uint32_t grave_count;
    uint32_t grave_cap;
    uint64_t readies;           /* handed out so far */
    bool is_ready_out;
    raft_index ready_last;      /* the last entry the outstanding ready persists */
    raft_term ready_last_term;
    struct raft_msg *ready_msgs;       /* the outstanding ready's arrays, so that */
    uint32_t ready_msg_count;          /* freeing the node frees them too */
    struct raft_entry *ready_entries;
    struct raft_entry *ready_committed;
    raft_index ready_committed_last; /* the last entry the ready out hands to apply, 0 none */
    struct raft_read *ready_reads;
    struct raft_snapshot_want *ready_wants;
    bool is_chunk_out;          /* the outstanding ready carries a chunk */
    uint8_t *ready_chunk_buf;   /* its data */
    bool is_read_round_due;     /* reads wait for the next heartbeat round */
    bool is_commit_news;        /* the commit index moved: tell every follower */
};

/* node.c */
int raft__send(struct raft_node *n, const struct raft_msg *m);
void raft__bury(struct raft_node *n, void *data);
uint32_t raft__rand(struct raft_node *n, uint32_t below);
void raft__reset_election_timeout(struct raft_node *n);

/* election.c */
void raft__become_follower(struct raft_node *n, raft_term term, raft_id leader);
void raft__become_leader(struct raft_node *n);
void raft__start_campaign(struct raft_node *n, bool is_pre, bool is_transfer);
void raft__on_vote_request(struct raft_node *n, const struct raft_msg *m);
void raft__on_vote_response(struct raft_node *n, const struct raft_msg *m);
bool raft__in_lease(const struct raft_node *n);
/* A snapshot is being received or stored: no appends, no campaign. */
bool raft__is_receiving(const struct raft_node *n);
bool raft__is_promotable(const struct raft_node *n);
void raft__set_hard_state(struct raft_node *n, raft_term term, raft_id vote);

/* replication.c */
void raft__send_append(struct raft_node *n, struct raft__progress *p, bool may_be_empty);
void raft__broadcast_append(struct raft_node *n);
void raft__broadcast_heartbeat(struct raft_node *n);
bool raft__append_is_valid(const struct raft_node *n, const struct raft_msg *m);
int raft__on_append(struct raft_node *n, const struct raft_msg *m);
void raft__on_append_response(struct raft_node *n, const struct raft_msg *m);
void raft__on_heartbeat(struct raft_node *n, const struct raft_msg *m);
void raft__on_heartbeat_response(struct raft_node *n, const struct raft_msg *m);
void raft__on_snapshot(struct raft_node *n, const struct raft_msg *m);
void raft__on_snapshot_response(struct raft_node *n, const struct raft_msg *m);
bool raft__maybe_commit(struct raft_node *n);
void raft__check_reads(struct raft_node *n);
void raft__fail_reads(struct raft_node *n);
int raft__ready_read(struct raft_node *n, uint64_t id, raft_index index);
void raft__set_commit(struct raft_node *n, raft_index commit);
void raft__install_snapshot(struct raft_node *n);
void raft__want_snapshot(struct raft_node *n, struct raft__progress *p);

/* membership.c */
const struct raft_config *raft__config(const struct raft_node *n);
int raft__config_push(struct raft_node *n, raft_index index, const struct raft_config *c);
void raft__config_truncate(struct raft_node *n, raft_index from);
void raft__config_compact(struct raft_node *n, raft_index upto);
int raft__peers_sync(struct raft_node *n);
struct raft__progress *raft__peer(struct raft_node *n, raft_id id);
uint32_t raft__quorum(const struct raft_config *c);
bool raft__config_valid(const struct raft_config *c);
bool raft__config_is_one_step(const struct raft_config *from, const struct raft_config *to);
const struct raft_config *raft__config_at(const struct raft_node *n, raft_index index);

/* Every invariant of the node, checked by the simulator after each step. */
void raft__check_invariants(const struct raft_node *n);

#endif
