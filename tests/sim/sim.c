/* tests/sim/sim.c - the deterministic Raft cluster of sim.h: hosts, disks,
 * network, state machine and the checks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define SIM_TERMS_CHECKED 256u
#define SIM_SNAP_BYTES    24u

/* (index, term) -> hash of the entry and the term before it: log matching */
static uint64_t lm_hash[SIM_ENTRIES_MAX][SIM_TERMS_CHECKED];

static void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sim_fail(struct sim *s, const char *fmt, ...)
{
    char what[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    fail_msg("seed %llu event %llu: %s (replay: ARBOR_SIM_SEED=%llu)",
             (unsigned long long)s->seed, (unsigned long long)s->now, what,
             (unsigned long long)s->seed);
}

uint32_t sim_rand(struct sim *s, uint32_t below)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return below == 0 ? 0 : (uint32_t)(s->rng % below);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static uint64_t entry_hash(const struct raft_entry *e)
{
    uint64_t h = mix(mix(mix(e->term, e->type), e->hlc_ns), e->size);

    for (uint32_t i = 0; i < e->size; i++) {
        h = mix(h, e->data[i]);
    }
    return h;
}

struct sim_node *sim_node(struct sim *s, raft_id id)
{
    if (id < 1 || id > s->node_count)
        sim_fail(s, "no node %llu", (unsigned long long)id);
    return &s->nodes[id - 1];
}

/* ---- disks and boot ----------------------------------------------------------------- */

static void disk_drop_from(struct sim_disk *d, raft_index from)
{
    while (d->entry_count > 0 && d->entries[d->entry_count - 1].index >= from) {
        free(d->entries[--d->entry_count].data);
    }
}

static void disk_append(struct sim_disk *d, const struct raft_entry *e)
{
    if (d->entry_count == d->entry_cap) {
        d->entry_cap = d->entry_cap < 16 ? 16 : d->entry_cap * 2;
        d->entries = realloc(d->entries, d->entry_cap * sizeof(*d->entries));
        assert_non_null(d->entries);
    }
    struct raft_entry c = *e;
    c.data = NULL;
    if (e->size > 0) {
        c.data = malloc(e->size);
        assert_non_null(c.data);
        memcpy(c.data, e->data, e->size);
    }
    assert_true(d->entry_count == 0 || d->entries[d->entry_count - 1].index + 1 == e->index);
    d->entries[d->entry_count++] = c;
}

static void sm_encode(const struct sim_sm *sm, uint8_t *out)
{
    memcpy(out, &sm->applied, 8);
    memcpy(out + 8, &sm->writes, 8);
    memcpy(out + 16, &sm->chain, 8);
}

static void sm_decode(const uint8_t *in, struct sim_sm *sm)
{
    memcpy(&sm->applied, in, 8);
    memcpy(&sm->writes, in + 8, 8);
    memcpy(&sm->chain, in + 16, 8);
}

static struct raft_options node_options(const struct sim *s, raft_id id)
{
    struct raft_options o;

    raft_options_init(&o, id);
    o.election_ticks = 10;
    o.heartbeat_ticks = 2;
    o.lease_margin_ticks = 2;
    /* small windows and messages, varied by seed: flow control, partial
     * appends and back-tracking all show */
    o.inflight_max = 1 + (uint32_t)(s->seed % 7);
    o.append_bytes_max = 8 * (1 + (uint32_t)(s->seed / 7 % 6));
    o.chunk_bytes_max = 16;
    o.seed = s->seed * 1000003u + id;
    o.is_apply_unstable = (s->seed + id) % 2 == 0; /* half the nodes, as meta/server.c */
    return o;
}

static void node_boot(struct sim *s, struct sim_node *n)
{
    struct raft_options o = node_options(s, n->id);
    struct raft_config empty = {.voter_count = 0};
    struct raft_boot b = {.hard_state = n->disk.hs, .snapshot_index = n->disk.snap_index,
                          .snapshot_term = n->disk.snap_term,
                          .snapshot_hlc_ns = n->disk.snap_hlc_ns,
                          .entry_count = n->disk.entry_count,
                          .entries = n->disk.entries, .applied = n->disk.snap_index};

    if (n->disk.snap_index > 0)
        b.config = n->disk.snap_config;
    else
        b.config = raft_config_has(&s->initial, n->id) ? s->initial : empty;
    n->sm = (struct sim_sm){.applied = 0};
    if (n->disk.snap_index > 0)
        sm_decode(n->disk.snap_data, &n->sm);
    assert_int_equal(raft_node_new(&o, &b, &n->raft), 0);
    n->is_up = true;
    n->is_paused = false;
    n->has_ready = false;
    n->is_applied_early = false;
}

void sim_init(struct sim *s, uint64_t seed, uint32_t node_count, uint32_t voters)
{
    assert_true(node_count <= SIM_NODES_MAX && voters <= node_count);
    memset(s, 0, sizeof(*s));
    memset(lm_hash, 0, sizeof(lm_hash));
    s->seed = seed;
    s->rng = seed * 0x9e3779b97f4a7c15ull + 1;
    s->node_count = node_count;
    s->wall_ns = 1000000000ull;
    s->delay_max = 6;
    s->chunk_bytes = 7;
    s->msgs = calloc(SIM_MSGS_MAX, sizeof(*s->msgs));
    assert_non_null(s->msgs);
    for (uint32_t i = 0; i < voters; i++) {
        s->initial.voters[s->initial.voter_count++] = i + 1;
    }
    for (uint32_t i = 0; i < node_count; i++) {
        s->nodes[i].id = i + 1;
        s->nodes[i].slow_pc = sim_rand(s, 17);
        node_boot(s, &s->nodes[i]);
    }
}

static void free_msg(struct raft_msg *m)
{
    for (uint32_t i = 0; m->type == RAFT_MSG_APPEND && i < m->entry_count; i++) {
        free(m->entries[i].data);
    }
    free(m->entries);
    free((void *)(uintptr_t)m->chunk);
}

void sim_fini(struct sim *s)
{
    for (uint32_t i = 0; i < s->node_count; i++) {
        struct sim_node *n = &s->nodes[i];
        raft_node_free(n->raft);
        disk_drop_from(&n->disk, 0);
        free(n->disk.entries);
    }
    for (uint32_t i = 0; i < s->msg_count; i++) {
        free_msg(&s->msgs[i].m);
    }
    free(s->msgs);
}

/* ---- network --------------------------------------------------------------------------- */

static void net_put(struct sim *s, const struct raft_msg *m)
{
    if (s->msg_count == SIM_MSGS_MAX)
        return; /* a full network loses messages */
    struct sim_msg *q = &s->msgs[s->msg_count++];
    q->m = *m;
    q->m.entries = NULL;
    q->m.chunk = NULL;
    if (m->entry_count > 0) {
        q->m.entries = calloc(m->entry_count, sizeof(*m->entries));
        assert_non_null(q->m.entries);
        for (uint32_t i = 0; i < m->entry_count; i++) {
            q->m.entries[i] = m->entries[i];
            q->m.entries[i].data = NULL;
            if (m->entries[i].size > 0) {
                q->m.entries[i].data = malloc(m->entries[i].size);
                assert_non_null(q->m.entries[i].data);
                memcpy(q->m.entries[i].data, m->entries[i].data, m->entries[i].size);
            }
        }
    }
    if (m->chunk_size > 0) {
        uint8_t *c = malloc(m->chunk_size);
        assert_non_null(c);
        memcpy(c, m->chunk, m->chunk_size);
        q->m.chunk = c;
    }
    q->deliver_at = s->now + 1 + sim_rand(s, s->delay_max);
}

static void net_send(struct sim *s, const struct raft_msg *m)
{
    if (s->blocked[m->from][m->to] || sim_rand(s, 100) < s->drop_pc)
        return;
    net_put(s, m);
    if (sim_rand(s, 100) < s->dup_pc)
        net_put(s, m);
}

/* Deliver one due message, picked at random among (the first 64 of) the
 * due ones. */
static bool net_deliver(struct sim *s)
{
    uint32_t due[64];
    uint32_t count = 0;

    for (uint32_t i = 0; i < s->msg_count && count < 64; i++) {
        const struct sim_msg *q = &s->msgs[i];
        struct sim_node *to = sim_node(s, q->m.to);
        if (q->deliver_at <= s->now && !(to->is_up && to->is_paused))
            due[count++] = i;
    }
    if (count == 0)
        return false;
    uint32_t at = due[sim_rand(s, count)];
    struct sim_msg q = s->msgs[at];
    s->msgs[at] = s->msgs[--s->msg_count];
    struct sim_node *to = sim_node(s, q.m.to);
    /* a partition made after sending still cuts the message */
    if (to->is_up && !s->blocked[q.m.from][q.m.to]) {
        int rc = raft_step(to->raft, &q.m);
        if (rc != 0 && rc != -ENOMEM)
            sim_fail(s, "node %llu refused a message of type %u: %d",
                     (unsigned long long)to->id, q.m.type, rc);
        sim_check(s, to->id);
    }
    free_msg(&q.m);
    return true;
}

/* ---- hosts ------------------------------------------------------------------------------ */

static void apply_entry(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
    if (e->index != n->sm.applied + 1)
        sim_fail(s, "node %llu applies %llu after %llu", (unsigned long long)n->id,
                 (unsigned long long)e->index, (unsigned long long)n->sm.applied);
    uint64_t h = entry_hash(e);
    n->sm.chain = mix(n->sm.chain, h);
    n->sm.applied = e->index;
    if (e->index < SIM_ENTRIES_MAX) {
        if (s->chain_at[e->index] == 0) {
            s->chain_at[e->index] = n->sm.chain;
            s->entry_hash[e->index] = h;
        } else if (s->chain_at[e->index] != n->sm.chain) {
            sim_fail(s, "state machine safety: node %llu applied a different entry at %llu",
                     (unsigned long long)n->id, (unsigned long long)e->index);
        }
    }
    if (e->index > s->committed_max)
        s->committed_max = e->index;
    if (e->type != RAFT_ENTRY_NORMAL || e->size != 8)
        return;
    n->sm.writes++;
    uint64_t op_id;
    memcpy(&op_id, e->data, 8);
    assert_true(op_id < s->op_count);
    struct sim_op *op = &s->ops[op_id];
    if (op->node == n->id && op->index == e->index && op->state == 0) {
        op->state = 1; /* the proposer applied it: acknowledged */
        op->done_at = s->now;
        s->writes_ok++;
        if (e->index > s->acked_write_max)
            s->acked_write_max = e->index;
    }
}

/* Answer the reads of node n whose index it has applied. */
static void serve_reads(struct sim *s, struct sim_node *n)
{
    for (uint32_t i = 0; i < s->op_count; i++) {
        struct sim_op *op = &s->ops[i];
        if (op->kind != SIM_READ || op->state != 0 || op->node != n->id || op->index == 0 ||
            n->sm.applied < op->index)
            continue;
        /* linearizable: the read sees every write acknowledged before it began */
        if (n->sm.applied < op->ack_floor)
            sim_fail(s, "stale %s read at node %llu: applied %llu, a write at %llu was acked "
                     "before the read began", op->is_lease ? "lease" : "ReadIndex",
                     (unsigned long long)n->id, (unsigned long long)n->sm.applied,
                     (unsigned long long)op->ack_floor);
        op->state = 1;
        op->done_at = s->now;
        s->reads_ok++;
    }
}

static void install(struct sim *s, struct sim_node *n, const struct raft_snapshot_chunk *c)
{
    struct sim_sm sm;

    sm_decode(n->disk.staging, &sm);
    if (sm.applied != c->index)
        sim_fail(s, "snapshot at %llu holds state at %llu", (unsigned long long)c->index,
                 (unsigned long long)sm.applied);
    if (c->index < SIM_ENTRIES_MAX && s->chain_at[c->index] != 0 &&
        s->chain_at[c->index] != sm.chain)
        sim_fail(s, "snapshot at %llu differs from the applied log", (unsigned long long)c->index);
    n->sm = sm;
    n->disk.snap_index = c->index;
    n->disk.snap_term = c->term;
    n->disk.snap_hlc_ns = c->hlc_ns;
    n->disk.snap_config = c->config;
    memcpy(n->disk.snap_data, n->disk.staging, SIM_SNAP_BYTES);
    disk_drop_from(&n->disk, 0); /* the log restarts after the snapshot */
}

static void answer_wants(struct sim *s, struct sim_node *n, const struct raft_ready *rd)
{
    for (uint32_t i = 0; i < rd->want_count; i++) {
        const struct raft_snapshot_want *w = &rd->wants[i];
        if (w->index != n->disk.snap_index || w->offset >= SIM_SNAP_BYTES)
            continue;
        uint32_t size = SIM_SNAP_BYTES - (uint32_t)w->offset;
        size = size < s->chunk_bytes ? size : s->chunk_bytes;
        raft_snapshot_send(n->raft, w->peer, w->index, w->offset,
                           n->disk.snap_data + w->offset, size,
                           w->offset + size == SIM_SNAP_BYTES);
    }
}

/* The second half of a host turn: persist, send, apply, advance. */
static void host_finish(struct sim *s, struct sim_node *n)
{
    struct raft_ready *rd = &n->ready;

    if (rd->has_hard_state)
        n->disk.hs = rd->hard_state;
    if (rd->entry_count > 0) {
        assert_true(rd->entries[0].index > n->disk.snap_index);
        disk_drop_from(&n->disk, rd->entries[0].index);
        for (uint32_t i = 0; i < rd->entry_count; i++) {
            disk_append(&n->disk, &rd->entries[i]);
        }
    }
    if (rd->has_chunk) {
        const struct raft_snapshot_chunk *c = &rd->chunk;
        if (sim_rand(s, 100) < 5 || c->offset + c->size > sizeof(n->disk.staging)) {
            raft_snapshot_fail(n->raft);
        } else {
            memcpy(n->disk.staging + c->offset, c->data, c->size);
            if (c->is_done)
                install(s, n, c);
        }
    }
    for (uint32_t i = rd->early_count; i < rd->msg_count; i++) {
        net_send(s, &rd->msgs[i]);
    }
    for (uint32_t i = 0; !n->is_applied_early && i < rd->committed_count; i++) {
        apply_entry(s, n, &rd->committed[i]);
    }
    n->is_applied_early = false;
    for (uint32_t i = 0; i < rd->read_count; i++) {
        struct sim_op *op = &s->ops[rd->reads[i].id];
        if (rd->reads[i].index == 0)
            op->state = 2;
        else
            op->index = rd->reads[i].index;
    }
    answer_wants(s, n, rd);
    raft_advance(n->raft, rd);
    n->has_ready = false;
    serve_reads(s, n);
}

/* One turn of node n's host: take a ready, or finish the one taken. */
static void host_turn(struct sim *s, struct sim_node *n)
{
    uint32_t taken = 0;
    if (n->has_ready && n->is_applied_early && sim_rand(s, 2) == 0) {
        /* while the ready persists, apply what commits meanwhile */
        struct raft_entry *e;
        taken = raft_committed_take(n->raft, &e);
        for (uint32_t i = 0; i < taken; i++) {
            apply_entry(s, n, &e[i]);
        }
        raft_free(e);
        serve_reads(s, n);
    }
    if (n->has_ready && sim_rand(s, 3) == 0) {
        /* a leader sends what was proposed meanwhile while its disk writes */
        struct raft_msg *msgs;
        uint32_t count = raft_early_take(n->raft, &msgs);
        for (uint32_t i = 0; i < count; i++) {
            net_send(s, &msgs[i]);
        }
        raft_msgs_free(msgs, count);
        taken += count;
    }
    if (taken > 0) {
        /* the disk write goes on: finished on a later turn */
    } else if (n->has_ready) {
        host_finish(s, n);
    } else if (raft_ready(n->raft, &n->ready)) {
        n->has_ready = true;
        /* a leader's appends go out while its own disk writes */
        for (uint32_t i = 0; i < n->ready.early_count; i++) {
            net_send(s, &n->ready.msgs[i]);
        }
        if (n->ready.has_role_change && n->ready.role == RAFT_LEADER)
            s->elections++;
        /* half the time the host applies the committed entries before it
         * persists the ready (they are stable already), as meta/server.c does */
        if (sim_rand(s, 2) == 0) {
            for (uint32_t i = 0; i < n->ready.committed_count; i++) {
                apply_entry(s, n, &n->ready.committed[i]);
            }
            raft_applied_early(n->raft, &n->ready);
            n->is_applied_early = true;
            serve_reads(s, n);
        }
    }
    sim_check(s, n->id);
}

void sim_step(struct sim *s)
{
    s->now++;
    /* the network carries more than one message an event, or it floods */
    for (uint32_t k = 0; k < 4 && net_deliver(s); k++) {
    }
    struct sim_node *n = &s->nodes[sim_rand(s, s->node_count)];
    if (n->is_up && !n->is_paused)
        host_turn(s, n);
}

void sim_tick(struct sim *s)
{
    s->wall_ns += 1000000;
    for (uint32_t i = 0; i < s->node_count; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!n->is_up)
            continue;
        if (n->is_paused) {
            n->missed_ticks++;
            continue;
        }
        /* clocks drift: a slow node misses a tick now and then (within
         * the lease margin: 2 ticks in 10) */
        if (sim_rand(s, 100) < n->slow_pc)
            continue;
        raft_tick(n->raft, (uint64_t)((int64_t)s->wall_ns + n->clock_skew_ns));
        sim_check(s, n->id);
    }
}

void sim_run(struct sim *s, uint32_t events)
{
    for (uint32_t i = 0; i < events; i++) {
        if (i % 8 == 0)
            sim_tick(s);
        sim_step(s);
    }
}

/* ---- faults ------------------------------------------------------------------------------ */

void sim_crash(struct sim *s, raft_id id)
{
    struct sim_node *n = sim_node(s, id);

    if (!n->is_up)
        return;
    /* the outstanding ready is lost with everything it held */
    raft_node_free(n->raft);
    n->raft = NULL;
    n->is_up = false;
    n->has_ready = false;
    n->is_applied_early = false;
    for (uint32_t i = 0; i < s->op_count; i++) {
        if (s->ops[i].node == id && s->ops[i].state == 0 && s->ops[i].kind == SIM_READ)
            s->ops[i].state = 2;
    }
}

void sim_restart(struct sim *s, raft_id id)
{
    struct sim_node *n = sim_node(s, id);

    if (n->is_up)
        return;
    node_boot(s, n);
    sim_check(s, id);
}

void sim_pause(struct sim *s, raft_id id)
{
    struct sim_node *n = sim_node(s, id);

    if (n->is_up)
        n->is_paused = true;
}

void sim_resume(struct sim *s, raft_id id)
{
    struct sim_node *n = sim_node(s, id);

    if (!n->is_up || !n->is_paused)
        return;
    n->is_paused = false;
    /* a host ticks by the monotonic clock: a stall is caught up at once */
    for (; n->missed_ticks > 0; n->missed_ticks--) {
        raft_tick(n->raft, (uint64_t)((int64_t)s->wall_ns + n->clock_skew_ns));
    }
    sim_check(s, id);
}

void sim_block(struct sim *s, raft_id from, raft_id to, bool is_blocked)
{
    s->blocked[from][to] = is_blocked;
}

void sim_partition(struct sim *s, const raft_id *side, uint32_t count)
{
    bool in[SIM_NODES_MAX + 1] = {false};

    for (uint32_t i = 0; i < count; i++) {
        in[side[i]] = true;
    }
    for (raft_id a = 1; a <= s->node_count; a++) {
        for (raft_id b = 1; b <= s->node_count; b++) {
            s->blocked[a][b] = in[a] != in[b];
        }
    }
}

void sim_heal(struct sim *s)
{
    memset(s->blocked, 0, sizeof(s->blocked));
}

/* ---- clients ----------------------------------------------------------------------------- */

raft_id sim_leader(const struct sim *s)
{
    raft_id best = 0;
    raft_term term = 0;

    for (uint32_t i = 0; i < s->node_count; i++) {
        const struct sim_node *n = &s->nodes[i];
        if (n->is_up && raft_role(n->raft) == RAFT_LEADER && raft_term_of(n->raft) >= term) {
            best = n->id;
            term = raft_term_of(n->raft);
        }
    }
    return best;
}

bool sim_write(struct sim *s, raft_id id)
{
    struct sim_node *n = sim_node(s, id);

    if (!n->is_up || n->is_paused || s->op_count == SIM_OPS_MAX)
        return false;
    uint64_t op_id = s->op_count;
    uint8_t *data = raft_malloc(8);
    raft_index index;
    assert_non_null(data);
    memcpy(data, &op_id, 8);
    if (raft_propose(n->raft, data, 8, &index) != 0) {
        raft_free(data);
        return false;
    }
    s->ops[s->op_count++] = (struct sim_op){.kind = SIM_WRITE, .node = id, .index = index,
                                            .invoked_at = s->now};
    sim_check(s, id);
    return true;
}

bool sim_read(struct sim *s, raft_id id, bool is_lease)
{
    struct sim_node *n = sim_node(s, id);

    if (!n->is_up || n->is_paused || s->op_count == SIM_OPS_MAX)
        return false;
    struct sim_op op = {.kind = SIM_READ, .node = id, .invoked_at = s->now,
                        .is_lease = is_lease, .ack_floor = s->acked_write_max};
    /* half the lease reads take the read point at once (raft_lease_read),
     * the rest through a ready, as a host may do either */
    op.index = is_lease && s->op_count % 2 == 0 ? raft_lease_read(n->raft) : 0;
    if (op.index == 0 && raft_read_index(n->raft, s->op_count, is_lease) != 0)
        return false;
    s->ops[s->op_count++] = op;
    sim_check(s, id);
    return true;
}

void sim_snapshot(struct sim *s, raft_id id, uint32_t keep)
{
    struct sim_node *n = sim_node(s, id);
    raft_term term;

    /* the state may be ahead of this node's disk (is_apply_unstable): a
     * snapshot then waits, as the server's checkpoint does */
    if (!n->is_up || n->sm.applied <= n->disk.snap_index ||
        n->sm.applied > raft_stable_index(n->raft))
        return;
    raft_index index = n->sm.applied;
    bool is_held = raft__log_term(&n->raft->log, index, &term);
    assert_true(is_held);
    n->disk.snap_index = index;
    n->disk.snap_term = term;
    n->disk.snap_hlc_ns = index == n->raft->log.offset ? n->raft->log.offset_hlc_ns
                                                       : raft__log_at(&n->raft->log, index)->hlc_ns;
    n->disk.snap_config = *raft__config_at(n->raft, index);
    sm_encode(&n->sm, n->disk.snap_data);
    /* the disk keeps what follows the snapshot */
    uint32_t drop = 0;
    while (drop < n->disk.entry_count && n->disk.entries[drop].index <= index) {
        free(n->disk.entries[drop++].data);
    }
    memmove(n->disk.entries, n->disk.entries + drop,
            (n->disk.entry_count - drop) * sizeof(*n->disk.entries));
    n->disk.entry_count -= drop;
    assert_int_equal(raft_snapshot_taken(n->raft, index, keep), 0);
    sim_check(s, id);
}

void sim_dump(struct sim *s)
{
    print_message("network: %u messages in flight\n", s->msg_count);
    for (raft_id id = 1; id <= s->node_count; id++) {
        struct sim_node *n = sim_node(s, id);
        if (!n->is_up) {
            print_message("node %llu down\n", (unsigned long long)id);
            continue;
        }
        struct raft_node *r = n->raft;
        const struct raft__log *l = &r->log;
        print_message("node %llu role %d term %llu leader %llu: offset %llu stable %llu "
                      "commit %llu last %llu applied %llu; voters %u learners %u\n",
                      (unsigned long long)id, r->role, (unsigned long long)r->term,
                      (unsigned long long)r->leader, (unsigned long long)l->offset,
                      (unsigned long long)l->stable, (unsigned long long)l->commit,
                      (unsigned long long)raft__log_last(l), (unsigned long long)n->sm.applied,
                      raft_config_of(r)->voter_count, raft_config_of(r)->learner_count);
        for (uint32_t i = 0; r->role == RAFT_LEADER && i < r->peer_count; i++) {
            const struct raft__progress *p = &r->peers[i];
            print_message("  peer %llu: match %llu next %llu state %u in flight %u\n",
                          (unsigned long long)p->id, (unsigned long long)p->match,
                          (unsigned long long)p->next, p->state, p->inflight_count);
        }
    }
}

/* ---- checks -------------------------------------------------------------------------------- */

static void check_log(struct sim *s, struct sim_node *n)
{
    const struct raft__log *l = &n->raft->log;
    raft_term prev = l->offset_term;

    for (raft_index i = l->offset + 1; i <= raft__log_last(l) && i < SIM_ENTRIES_MAX; i++) {
        const struct raft_entry *e = raft__log_at(l, i);
        if (e->term < SIM_TERMS_CHECKED) {
            /* log matching: one (index, term) is one entry after one history */
            uint64_t h = mix(entry_hash(e), prev) | 1;
            uint64_t *slot = &lm_hash[i][e->term];
            if (*slot == 0)
                *slot = h;
            else if (*slot != h)
                sim_fail(s, "log matching: node %llu has another entry at %llu term %llu",
                         (unsigned long long)n->id, (unsigned long long)i,
                         (unsigned long long)e->term);
        }
        prev = e->term;
    }
}

/* A new leader holds every entry any node applied (leader completeness);
 * checked when it is elected: a deposed leader that has not heard yet may
 * lag, harmlessly, since it can commit nothing. */
static void check_leader(struct sim *s, struct sim_node *n)
{
    raft_term term = raft_term_of(n->raft);
    const struct raft__log *l = &n->raft->log;

    if (n->led_term == term)
        return;
    n->led_term = term;
    if (term < SIM_TERMS_CHECKED) {
        raft_id *who = &s->leader_of_term[term];
        if (*who != 0 && *who != n->id)
            sim_fail(s, "election safety: nodes %llu and %llu lead term %llu",
                     (unsigned long long)*who, (unsigned long long)n->id,
                     (unsigned long long)term);
        *who = n->id;
    }
    for (raft_index i = l->offset + 1; i <= s->committed_max && i < SIM_ENTRIES_MAX; i++) {
        if (i > raft__log_last(l) || entry_hash(raft__log_at(l, i)) != s->entry_hash[i])
            sim_fail(s, "leader completeness: leader %llu of term %llu lacks committed %llu "
                     "(its log ends at %llu)", (unsigned long long)n->id,
                     (unsigned long long)term, (unsigned long long)i,
                     (unsigned long long)raft__log_last(l));
    }
    if (l->offset > s->committed_max && s->committed_max > 0)
        sim_fail(s, "leader %llu compacted past what anyone applied", (unsigned long long)n->id);
}

void sim_check(struct sim *s, raft_id moved)
{
    struct sim_node *n = sim_node(s, moved);

    if (!n->is_up)
        return;
    raft__check_invariants(n->raft);
    check_log(s, n);
    if (raft_role(n->raft) == RAFT_LEADER)
        check_leader(s, n);
}
