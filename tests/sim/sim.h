/* tests/sim/sim.h - a deterministic cluster of Raft nodes under a test's
 * control: a network that drops, delays, duplicates, reorders and
 * partitions; disks that lose what was not yet persisted when a node
 * crashes; pauses; wall-clock jumps; and a tiny state machine (a log of
 * client writes) whose every apply, snapshot and read is checked.
 *
 * Each node hosts one raft_node the way a real host does: raft_ready()
 * takes work, a later "persist" event stores it, sends its messages,
 * applies and calls raft_advance(). A crash in between loses that ready.
 *
 * Checked after every event (sim_check): election safety, log matching,
 * leader completeness, state machine safety, linearizable reads, and
 * raft__check_invariants() of the node that moved. A violation fails the
 * test with the seed and the event number.
 * Thread: one; everything is driven by sim_* calls. */
#ifndef ARBOR_TESTS_SIM_H
#define ARBOR_TESTS_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "raft.h"

#define SIM_NODES_MAX   5u
#define SIM_ENTRIES_MAX 4096u  /* indexes the checks remember */
#define SIM_OPS_MAX     2048u  /* client operations in one run */
#define SIM_MSGS_MAX    4096u  /* messages in flight; more are dropped */

struct sim_disk {
    struct raft_hard_state hs;
    struct raft_entry *entries;   /* after the snapshot, owned copies */
    uint32_t entry_count;
    uint32_t entry_cap;
    raft_index snap_index;
    raft_term snap_term;
    uint64_t snap_hlc_ns;
    struct raft_config snap_config;
    uint8_t snap_data[24];        /* the state machine at snap_index */
    uint8_t staging[64];          /* a snapshot being received */
};

/* The state machine: how many client writes it applied, a chain hash of
 * every entry applied, and the index reached. */
struct sim_sm {
    raft_index applied;
    uint64_t writes;
    uint64_t chain;
};

struct sim_node {
    raft_id id;
    struct raft_node *raft;
    bool is_up;
    bool is_paused;
    uint32_t missed_ticks;      /* ticks while paused, replayed at resume */
    bool has_ready;
    bool is_applied_early;  /* the taken ready's committed entries are applied */
    struct raft_ready ready;    /* taken, not yet persisted */
    struct sim_disk disk;
    struct sim_sm sm;
    int64_t clock_skew_ns;      /* added to the wall clock it is given */
    raft_term led_term;         /* the last term it was seen leading */
    uint32_t slow_pc;           /* ticks it misses: a slow monotonic clock */
};

struct sim_msg {
    struct raft_msg m;          /* entries and chunk owned by the network */
    uint64_t deliver_at;        /* event number */
};

enum sim_op_kind { SIM_WRITE = 1, SIM_READ };

struct sim_op {
    uint8_t kind;
    uint8_t state;              /* 0 pending, 1 ok, 2 failed or unknown */
    raft_id node;
    raft_index index;           /* WRITE: where proposed; READ: the read index */
    uint64_t invoked_at;
    uint64_t done_at;
    bool is_lease;
    raft_index ack_floor;       /* READ: highest index of a write acked before invoke */
};

struct sim {
    uint64_t seed;
    uint64_t rng;
    uint64_t now;               /* events so far */
    uint64_t wall_ns;
    uint32_t node_count;
    struct sim_node nodes[SIM_NODES_MAX];
    struct raft_config initial;
    bool blocked[SIM_NODES_MAX + 1][SIM_NODES_MAX + 1]; /* [from][to] */
    struct sim_msg *msgs;
    uint32_t msg_count;
    uint32_t drop_pc;           /* chance a message is lost */
    uint32_t dup_pc;            /* chance a message is delivered twice */
    uint32_t delay_max;         /* events a message may wait */
    uint32_t chunk_bytes;       /* snapshot chunk size the hosts send */
    /* what the checks remember */
    raft_id leader_of_term[256];
    uint64_t chain_at[SIM_ENTRIES_MAX];   /* chain hash after applying index i */
    uint64_t entry_hash[SIM_ENTRIES_MAX]; /* (term, data) hash of committed index i */
    raft_index committed_max;             /* highest index any node applied */
    struct sim_op ops[SIM_OPS_MAX];
    uint32_t op_count;
    raft_index acked_write_max;           /* highest index of a write acknowledged */
    uint64_t writes_ok;
    uint64_t reads_ok;
    uint64_t elections;
};

/* A cluster of node_count nodes; the first voters of them are voters, the
 * rest start outside the group (empty config) until added. */
void sim_init(struct sim *s, uint64_t seed, uint32_t node_count, uint32_t voters);
void sim_fini(struct sim *s);

/* One event: deliver a due message or run a node's host loop turn. */
void sim_step(struct sim *s);
/* Every up node ticks once. */
void sim_tick(struct sim *s);
/* Run events and ticks until `events` have passed. */
void sim_run(struct sim *s, uint32_t events);

void sim_crash(struct sim *s, raft_id id);
void sim_restart(struct sim *s, raft_id id);
void sim_pause(struct sim *s, raft_id id);
void sim_resume(struct sim *s, raft_id id);
void sim_partition(struct sim *s, const raft_id *side, uint32_t count); /* side vs rest */
void sim_block(struct sim *s, raft_id from, raft_id to, bool is_blocked);
void sim_heal(struct sim *s);

/* The node that is leader in the highest term now, or 0. */
raft_id sim_leader(const struct sim *s);
/* Client calls at node id; false if the node refused at once. */
bool sim_write(struct sim *s, raft_id id);
bool sim_read(struct sim *s, raft_id id, bool is_lease);
/* Host takes a snapshot at its applied index, keeping `keep` entries. */
void sim_snapshot(struct sim *s, raft_id id, uint32_t keep);

struct sim_node *sim_node(struct sim *s, raft_id id);
uint32_t sim_rand(struct sim *s, uint32_t below);

/* Print every node's view (role, term, log marks, peers): for failures. */
void sim_dump(struct sim *s);

/* Check every property; fails the test (cmocka) with the seed. */
void sim_check(struct sim *s, raft_id moved);

#endif
