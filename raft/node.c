/* raft/node.c - the public calls of a node: new and free, step and tick,
 * proposals, config changes, reads, transfer, snapshots, and the
 * ready/advance handshake with the host (see raft.h for its contract).
 *
 * Memory that a ready points to stays valid until its advance: the ready
 * owns copies of the entry structs and the message arrays, and entry data
 * that leaves the log (truncated, compacted) waits in a grave list until
 * no ready can name it.
 * Thread: none; one thread at a time per node. */
#include "core.h"

/* ---- helpers --------------------------------------------------------------------------- */

uint32_t raft__rand(struct raft_node *n, uint32_t below)
{
    /* xorshift64*: enough for spreading timeouts; seeded by the host */
    n->rng ^= n->rng >> 12;
    n->rng ^= n->rng << 25;
    n->rng ^= n->rng >> 27;
    return (uint32_t)((n->rng * 0x2545f4914f6cdd1dull) >> 32) % below;
}

void raft__reset_election_timeout(struct raft_node *n)
{
    n->election_timeout = n->opt.election_ticks + raft__rand(n, n->opt.election_ticks);
}

int raft__send(struct raft_node *n, const struct raft_msg *m)
{
    int rc = raft__grow((void **)&n->msgs, &n->msg_cap, n->msg_count + 1, sizeof(*n->msgs));

    if (rc != 0)
        return rc; /* a lost message: Raft sends again */
    RAFT_ASSERT(m->to != n->id && m->to != 0);
    n->msgs[n->msg_count] = *m;
    n->msgs[n->msg_count].from = n->id;
    n->msg_count++;
    return 0;
}

void raft__bury(struct raft_node *n, void *data)
{
    if (data == NULL)
        return;
    if (raft__grow((void **)&n->graves, &n->grave_cap, n->grave_count + 1, sizeof(*n->graves)) !=
        0) {
        /* no room to wait: only a ready could still name it, and rarely;
         * leaking beats a use after free */
        return;
    }
    /* pending messages go out in the next ready; free after its advance */
    n->graves[n->grave_count++] = (struct raft__grave){.data = data,
                                                       .after_ready = n->readies + 1};
}

static void free_msg_parts(struct raft_msg *m)
{
    if (m->type == RAFT_MSG_APPEND)
        raft_free(m->entries);
    if (m->type == RAFT_MSG_SNAPSHOT)
        raft_free((void *)(uintptr_t)m->chunk);
}

static uint64_t next_hlc(struct raft_node *n)
{
    n->hlc_ns = n->wall_ns > n->hlc_ns ? n->wall_ns : n->hlc_ns + 1;
    return n->hlc_ns;
}

/* ---- new and free ------------------------------------------------------------------------ */

void raft_options_init(struct raft_options *o, raft_id id)
{
    *o = (struct raft_options){.id = id, .election_ticks = 10, .heartbeat_ticks = 1,
                               .lease_margin_ticks = 2, .inflight_max = 64,
                               .append_bytes_max = 1u << 20, .chunk_bytes_max = 1u << 20,
                               .seed = id};
}

static bool options_valid(const struct raft_options *o)
{
    return o->id != 0 && o->election_ticks >= 2 && o->heartbeat_ticks >= 1 &&
           o->heartbeat_ticks < o->election_ticks && o->lease_margin_ticks < o->election_ticks &&
           o->inflight_max >= 1 && o->inflight_max <= RAFT_INFLIGHT_MAX &&
           o->append_bytes_max >= 1 && o->chunk_bytes_max >= 1 &&
           o->chunk_bytes_max <= RAFT_CHUNK_BYTES_MAX;
}

/* The stored state must hold together; it came from disk. */
static bool boot_valid(const struct raft_boot *b)
{
    raft_term prev_term = b->snapshot_term;
    raft_index last = b->snapshot_index + b->entry_count;
    uint64_t prev_hlc = b->snapshot_hlc_ns;

    if (!raft__config_valid(&b->config) || (b->entry_count > 0 && b->entries == NULL) ||
        b->applied < b->snapshot_index || b->applied > last ||
        b->snapshot_term > b->hard_state.term)
        return false;
    for (uint32_t i = 0; i < b->entry_count; i++) {
        const struct raft_entry *e = &b->entries[i];
        struct raft_config c;
        if (e->index != b->snapshot_index + 1 + i || e->term < prev_term ||
            e->term > b->hard_state.term || e->size > RAFT_ENTRY_BYTES_MAX ||
            (e->size > 0 && e->data == NULL) || ((i > 0 || b->snapshot_index > 0) &&
                                                  e->hlc_ns <= prev_hlc) ||
            (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONFIG) ||
            (e->type == RAFT_ENTRY_CONFIG && raft_config_decode(e->data, e->size, &c) != 0))
            return false;
        prev_term = e->term;
        prev_hlc = e->hlc_ns;
    }
    return true;
}

static int boot_log(struct raft_node *n, const struct raft_boot *b)
{
    int rc = raft__log_init(&n->log, b->snapshot_index, b->snapshot_term, b->snapshot_hlc_ns);

    if (rc == 0)
        rc = raft__log_reserve(&n->log, b->entry_count);
    if (rc == 0)
        rc = raft__config_push(n, b->snapshot_index, &b->config);
    for (uint32_t i = 0; rc == 0 && i < b->entry_count; i++) {
        struct raft_entry e = b->entries[i];
        struct raft_config c;
        e.data = NULL;
        if (e.size > 0) {
            e.data = raft_malloc(e.size);
            if (e.data == NULL)
                return -ENOMEM;
            memcpy(e.data, b->entries[i].data, e.size);
        }
        if (e.type == RAFT_ENTRY_CONFIG) {
            raft_config_decode(e.data, e.size, &c);
            rc = raft__config_push(n, e.index, &c);
        }
        if (rc == 0)
            rc = raft__log_append(&n->log, &e);
        if (rc != 0)
            raft_free(e.data);
        n->hlc_ns = e.hlc_ns;
    }
    return rc;
}

int raft_node_new(const struct raft_options *o, const struct raft_boot *b, struct raft_node **out)
{
    if (!options_valid(o) || !boot_valid(b))
        return -EINVAL;
    struct raft_node *n = raft__calloc(1, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    n->opt = *o;
    n->id = o->id;
    n->role = RAFT_FOLLOWER;
    n->term = b->hard_state.term;
    n->vote = b->hard_state.vote;
    n->rng = (o->seed ^ (o->id * 0x9e3779b97f4a7c15ull)) | 1;
    n->snap_index = b->snapshot_index;
    n->snap_term = b->snapshot_term;
    n->snap_hlc_ns = b->snapshot_hlc_ns;
    n->hlc_ns = b->snapshot_hlc_ns;
    n->snap_config = b->config;
    int rc = boot_log(n, b);
    if (rc != 0) {
        raft_node_free(n);
        return rc;
    }
    raft_index last = raft__log_last(&n->log);
    n->log.stable = last;
    n->log.applied = b->applied;
    n->log.commit = b->applied;
    raft__set_commit(n, b->hard_state.commit < last ? b->hard_state.commit : last);
    n->log.uncommitted_bytes = 0;
    for (raft_index i = n->log.commit + 1; i <= last; i++) {
        n->log.uncommitted_bytes += raft__log_at(&n->log, i)->size;
    }
    n->is_hs_dirty = false;
    raft__reset_election_timeout(n);
    *out = n;
    return 0;
}

static void free_msgs(struct raft_msg *msgs, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        free_msg_parts(&msgs[i]);
    }
    raft_free(msgs);
}

void raft_node_free(struct raft_node *n)
{
    if (n == NULL)
        return;
    raft__log_fini(&n->log);
    for (uint32_t i = 0; i < n->grave_count; i++) {
        raft_free(n->graves[i].data);
    }
    free_msgs(n->msgs, n->msg_count);
    free_msgs(n->ready_msgs, n->ready_msg_count);
    raft_free(n->ready_entries);
    raft_free(n->ready_committed);
    raft_free(n->ready_reads);
    raft_free(n->ready_wants);
    raft_free(n->graves);
    raft_free(n->configs);
    raft_free(n->peers);
    raft_free(n->reads);
    raft_free(n->reads_ready);
    raft_free(n->wants);
    raft_free(n->chunk_buf);
    raft_free(n->ready_chunk_buf);
    raft_free(n);
}

/* ---- step --------------------------------------------------------------------------------- */

static bool is_from_leader(uint8_t type)
{
    return type == RAFT_MSG_APPEND || type == RAFT_MSG_HEARTBEAT || type == RAFT_MSG_SNAPSHOT;
}

/* A message from a term behind ours: tell a stale leader or candidate. */
static void answer_stale(struct raft_node *n, const struct raft_msg *m)
{
    if (is_from_leader(m->type)) {
        struct raft_msg r = {.type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = n->term,
                             .is_reject = true, .index = 0, .hint_index = 0};
        raft__send(n, &r);
    } else if (m->type == RAFT_MSG_PREVOTE) {
        struct raft_msg r = {.type = RAFT_MSG_PREVOTE_RESP, .to = m->from, .term = n->term,
                             .is_reject = true};
        raft__send(n, &r);
    }
}

/* Terms first (thesis Figure 3.1, with pre-vote and leases); false: drop m. */
static bool step_term(struct raft_node *n, const struct raft_msg *m)
{
    bool is_vote_request = m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE;

    if (m->term < n->term) {
        answer_stale(n, m);
        return false;
    }
    if (m->term == n->term)
        return true;
    if (is_vote_request && !m->is_transfer && raft__in_lease(n))
        return false; /* a leader is alive: do not help depose it */
    if (m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_RESP && !m->is_reject))
        return true; /* about a term nobody has taken yet */
    raft__become_follower(n, m->term, is_from_leader(m->type) ? m->from : 0);
    return true;
}

static void heard_leader(struct raft_node *n, raft_id from)
{
    if (n->role != RAFT_FOLLOWER || n->leader != from)
        raft__become_follower(n, n->term, from);
    if (n->recv.is_active && n->recv.from != from)
        n->recv.is_active = false; /* another leader: its snapshot is abandoned */
    n->election_elapsed = 0;
    n->leader_heard_tick = n->ticks;
    n->has_heard_leader = true;
}

static bool msg_valid(const struct raft_node *n, const struct raft_msg *m)
{
    return m->type >= RAFT_MSG_PREVOTE && m->type <= RAFT_MSG_TYPE_LAST && m->to == n->id &&
           m->from != 0 && m->from != n->id;
}

int raft_step(struct raft_node *n, const struct raft_msg *m)
{
    RAFT_ASSERT(n != NULL && m != NULL);
    if (!msg_valid(n, m))
        return -RAFT_ECORRUPT;
    if (!step_term(n, m))
        return 0;
    switch ((enum raft_msg_type)m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        raft__on_vote_request(n, m);
        return 0;
    case RAFT_MSG_PREVOTE_RESP:
        if (m->term == n->term + 1 || m->is_reject)
            raft__on_vote_response(n, m);
        return 0;
    case RAFT_MSG_VOTE_RESP:
        raft__on_vote_response(n, m);
        return 0;
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        if (n->role == RAFT_LEADER)
            return -RAFT_ECORRUPT; /* two leaders in one term: a peer is broken */
        heard_leader(n, m->from);
        if (m->type == RAFT_MSG_HEARTBEAT) {
            raft__on_heartbeat(n, m);
        } else if (m->type == RAFT_MSG_SNAPSHOT) {
            raft__on_snapshot(n, m);
        } else if (!raft__is_receiving(n)) {
            /* while a snapshot is being received or stored the log stands still */
            if (!raft__append_is_valid(n, m))
                return -RAFT_ECORRUPT;
            return raft__on_append(n, m);
        }
        return 0;
    case RAFT_MSG_APPEND_RESP:
    case RAFT_MSG_HEARTBEAT_RESP:
    case RAFT_MSG_SNAPSHOT_RESP:
        if (n->role != RAFT_LEADER)
            return 0;
        if (m->type == RAFT_MSG_APPEND_RESP)
            raft__on_append_response(n, m);
        else if (m->type == RAFT_MSG_HEARTBEAT_RESP)
            raft__on_heartbeat_response(n, m);
        else
            raft__on_snapshot_response(n, m);
        return 0;
    case RAFT_MSG_TIMEOUT_NOW:
        if (n->role == RAFT_FOLLOWER && n->leader == m->from && raft__is_promotable(n) &&
            !raft__is_receiving(n))
            raft__start_campaign(n, false, true);
        return 0;
    }
    RAFT_UNREACHABLE();
}

/* ---- tick ---------------------------------------------------------------------------------- */

static bool quorum_active(struct raft_node *n)
{
    const struct raft_config *c = raft__config(n);
    uint32_t active = 0;

    for (uint32_t i = 0; i < c->voter_count; i++) {
        struct raft__progress *p = raft__peer(n, c->voters[i]);
        active += c->voters[i] == n->id || (p != NULL && p->is_active);
    }
    for (uint32_t i = 0; i < n->peer_count; i++) {
        n->peers[i].is_active = false;
    }
    return active >= raft__quorum(c);
}

static void tick_leader(struct raft_node *n)
{
    n->heartbeat_elapsed++;
    n->check_elapsed++;
    if (n->transfer_to != 0 && ++n->transfer_elapsed >= n->opt.election_ticks)
        n->transfer_to = 0; /* the target did not take over in time */
    if (n->check_elapsed >= n->opt.election_ticks) {
        n->check_elapsed = 0;
        if (!quorum_active(n)) {
            raft__become_follower(n, n->term, 0); /* check-quorum: cut off, step aside */
            return;
        }
    }
    for (uint32_t i = 0; i < n->peer_count; i++) {
        struct raft__progress *p = &n->peers[i];
        if (p->state == PR_SNAPSHOT && p->is_snap_wanted &&
            ++p->snap_idle_ticks >= n->opt.election_ticks)
            p->is_snap_wanted = false; /* a chunk or its answer was lost */
        if (p->state == PR_SNAPSHOT)
            raft__want_snapshot(n, p);
    }
    if (n->heartbeat_elapsed >= n->opt.heartbeat_ticks) {
        n->heartbeat_elapsed = 0;
        raft__broadcast_heartbeat(n);
    }
}

void raft_tick(struct raft_node *n, uint64_t wall_ns)
{
    RAFT_ASSERT(n != NULL);
    n->ticks++;
    n->wall_ns = wall_ns;
    if (n->role == RAFT_LEADER) {
        tick_leader(n);
        return;
    }
    if (n->recv.is_active && !n->has_chunk && !n->is_chunk_out &&
        ++n->recv.idle_ticks >= 2 * n->opt.election_ticks)
        n->recv.is_active = false; /* the leader stopped sending it: appends again */
    n->election_elapsed++;
    if (n->election_elapsed >= n->election_timeout && raft__is_promotable(n) &&
        !raft__is_receiving(n))
        raft__start_campaign(n, true, false);
}

void raft_campaign(struct raft_node *n)
{
    if (n->role != RAFT_LEADER && raft__is_promotable(n) && !raft__is_receiving(n))
        raft__start_campaign(n, false, true);
}

/* ---- leader calls -------------------------------------------------------------------------- */

static bool has_committed_own_term(const struct raft_node *n)
{
    raft_term t;

    return raft__log_term(&n->log, n->log.commit, &t) && t == n->term;
}

int raft_propose(struct raft_node *n, uint8_t *data, uint32_t size, raft_index *index)
{
    RAFT_ASSERT(n != NULL && index != NULL);
    RAFT_ASSERT(size == 0 || data != NULL);
    if (n->role != RAFT_LEADER)
        return -RAFT_ENOTLEADER;
    if (n->transfer_to != 0)
        return -RAFT_EBUSY;
    if (size > RAFT_ENTRY_BYTES_MAX)
        return -EMSGSIZE;
    if (n->log.uncommitted_bytes + size > RAFT_UNCOMMITTED_BYTES_MAX)
        return -ENOBUFS;
    struct raft_entry e = {.term = n->term, .index = raft__log_last(&n->log) + 1,
                           .type = RAFT_ENTRY_NORMAL, .size = size, .data = data};
    int rc = raft__log_reserve(&n->log, 1);
    if (rc != 0)
        return rc;
    e.hlc_ns = next_hlc(n);
    rc = raft__log_append(&n->log, &e);
    RAFT_ASSERT(rc == 0); /* reserved */
    *index = e.index;
    return 0; /* sent with the next ready, batched with others */
}

int raft_change_config(struct raft_node *n, const struct raft_config *next, raft_index *index)
{
    uint8_t buf[RAFT_CONFIG_BYTES_MAX];

    RAFT_ASSERT(n != NULL && next != NULL && index != NULL);
    if (n->role != RAFT_LEADER)
        return -RAFT_ENOTLEADER;
    if (n->transfer_to != 0 || !has_committed_own_term(n) ||
        n->configs[n->config_count - 1].index > n->log.commit)
        return -RAFT_EBUSY;
    if (!raft__config_is_one_step(raft__config(n), next))
        return -EINVAL;
    uint32_t size = raft_config_encode(next, buf);
    struct raft_entry e = {.term = n->term, .index = raft__log_last(&n->log) + 1,
                           .type = RAFT_ENTRY_CONFIG, .size = size, .data = raft_malloc(size)};
    if (e.data == NULL)
        return -ENOMEM;
    memcpy(e.data, buf, size);
    int rc = raft__log_reserve(&n->log, 1);
    if (rc == 0)
        rc = raft__config_push(n, e.index, next);
    if (rc == 0 && (rc = raft__peers_sync(n)) != 0)
        raft__config_truncate(n, e.index);
    if (rc != 0) {
        raft_free(e.data);
        return rc;
    }
    e.hlc_ns = next_hlc(n);
    rc = raft__log_append(&n->log, &e);
    RAFT_ASSERT(rc == 0); /* reserved */
    *index = e.index;
    return 0;
}

/* A quorum of voters answered a heartbeat sent recently enough that none
 * of them can have voted for another leader since. */
static bool lease_valid(const struct raft_node *n)
{
    const struct raft_config *c = raft__config(n);
    uint32_t fresh = 0;

    if (n->is_lease_void || n->transfer_to != 0)
        return false;
    for (uint32_t i = 0; i < c->voter_count; i++) {
        if (c->voters[i] == n->id) {
            fresh++;
            continue;
        }
        const struct raft__progress *p = NULL;
        for (uint32_t k = 0; k < n->peer_count; k++) {
            if (n->peers[k].id == c->voters[i])
                p = &n->peers[k];
        }
        if (p == NULL || p->acked_round == 0 || n->round - p->acked_round >= RAFT_ROUNDS_KEPT)
            continue;
        uint64_t sent = n->round_tick[p->acked_round % RAFT_ROUNDS_KEPT];
        fresh += n->ticks + n->opt.lease_margin_ticks < sent + n->opt.election_ticks;
    }
    return fresh >= raft__quorum(c);
}

int raft_read_index(struct raft_node *n, uint64_t id, bool is_lease)
{
    RAFT_ASSERT(n != NULL);
    if (n->role != RAFT_LEADER)
        return -RAFT_ENOTLEADER;
    if (!has_committed_own_term(n))
        return -RAFT_EBUSY; /* the commit index may still be behind (thesis §6.4) */
    if (is_lease && lease_valid(n))
        return raft__ready_read(n, id, n->log.commit);
    if (n->read_count >= RAFT_READS_MAX)
        return -ENOBUFS;
    int rc = raft__grow((void **)&n->reads, &n->read_cap, n->read_count + 1, sizeof(*n->reads));
    if (rc != 0)
        return rc;
    n->reads[n->read_count++] = (struct raft__pending_read){.id = id, .index = n->log.commit,
                                                            .round = n->round + 1};
    n->is_read_round_due = true;
    return 0;
}

raft_index raft_lease_read(const struct raft_node *n)
{
    RAFT_ASSERT(n != NULL);
    if (n->role != RAFT_LEADER || !has_committed_own_term(n) || !lease_valid(n))
        return 0;
    return n->log.commit;
}

int raft_transfer_leader(struct raft_node *n, raft_id to)
{
    RAFT_ASSERT(n != NULL);
    if (n->role != RAFT_LEADER)
        return -RAFT_ENOTLEADER;
    if (to == n->id || !raft_config_is_voter(raft__config(n), to))
        return -EINVAL;
    if (n->transfer_to != 0)
        return -RAFT_EBUSY;
    struct raft__progress *p = raft__peer(n, to);
    RAFT_ASSERT(p != NULL);
    n->transfer_to = to;
    n->transfer_elapsed = 0;
    n->is_lease_void = true;
    if (p->match == raft__log_last(&n->log)) {
        struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = to, .term = n->term};
        raft__send(n, &m);
    } else {
        raft__send_append(n, p, true);
    }
    return 0;
}

/* ---- snapshots ------------------------------------------------------------------------------ */

static void log_compact(struct raft_node *n, raft_index upto)
{
    struct raft__log *l = &n->log;

    if (upto <= l->offset)
        return;
    raft_term t;
    bool is_held = raft__log_term(l, upto, &t);
    RAFT_ASSERT(is_held);
    uint64_t hlc_ns = raft__log_at(l, upto)->hlc_ns;
    for (raft_index i = l->offset + 1; i <= upto; i++) {
        struct raft_entry *e = raft__log_at(l, i);
        raft__bury(n, e->data);
        e->data = NULL;
    }
    l->head = (uint32_t)((l->head + (upto - l->offset)) & (l->cap - 1));
    l->count -= upto - l->offset;
    l->offset_hlc_ns = hlc_ns;
    l->offset = upto;
    l->offset_term = t;
    raft__config_compact(n, upto);
}

int raft_snapshot_taken(struct raft_node *n, raft_index index, uint32_t keep)
{
    raft_term t;

    RAFT_ASSERT(n != NULL);
    /* a snapshot covers only what this node's own disk holds too */
    if (index > n->log.applied || index > n->log.stable || !raft__log_term(&n->log, index, &t))
        return -EINVAL;
    if (index <= n->snap_index)
        return 0;
    n->snap_index = index;
    n->snap_term = t;
    n->snap_hlc_ns = index == n->log.offset ? n->log.offset_hlc_ns
                                            : raft__log_at(&n->log, index)->hlc_ns;
    n->snap_config = *raft__config_at(n, index);
    log_compact(n, index > keep ? index - keep : 0);
    for (uint32_t i = 0; i < n->peer_count; i++) {
        struct raft__progress *p = &n->peers[i];
        if (p->state == PR_SNAPSHOT && p->snap_index != index) {
            raft__pr_become(p, PR_SNAPSHOT); /* start over with the new one */
            p->snap_index = index;
            p->snap_acked = 0;
            raft__want_snapshot(n, p);
        }
    }
    return 0;
}

int raft_snapshot_send(struct raft_node *n, raft_id peer, raft_index index, uint64_t offset,
                       const uint8_t *data, uint32_t size, bool is_done)
{
    struct raft__progress *p = raft__peer(n, peer);

    RAFT_ASSERT(size == 0 || data != NULL);
    if (n->role != RAFT_LEADER || p == NULL || p->state != PR_SNAPSHOT || !p->is_snap_wanted ||
        p->snap_index != index || index != n->snap_index || p->snap_acked != offset ||
        size > n->opt.chunk_bytes_max)
        return -EINVAL;
    uint8_t *copy = size > 0 ? raft_malloc(size) : NULL;
    if (size > 0 && copy == NULL)
        return -ENOMEM;
    if (size > 0)
        memcpy(copy, data, size);
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .to = peer, .term = n->term, .index = index,
                         .log_term = n->snap_term, .offset = offset, .chunk_size = size,
                         .chunk = copy, .is_done = is_done, .config = n->snap_config,
                         .hlc_ns = n->snap_hlc_ns};
    int rc = raft__send(n, &m);
    if (rc != 0)
        raft_free(copy);
    return rc;
}

void raft_snapshot_info(const struct raft_node *n, raft_index *index, raft_term *term,
                        uint64_t *hlc_ns, struct raft_config *config)
{
    *index = n->snap_index;
    *term = n->snap_term;
    *hlc_ns = n->snap_hlc_ns;
    *config = n->snap_config;
}

bool raft_is_receiving_snapshot(const struct raft_node *n)
{
    return raft__is_receiving(n);
}

void raft_snapshot_fail(struct raft_node *n)
{
    RAFT_ASSERT(n->is_chunk_out);
    n->is_chunk_failed = true;
}

/* ---- ready and advance ------------------------------------------------------------------------ */

static struct raft_entry *copy_entries(const struct raft__log *l, raft_index from, raft_index to)
{
    struct raft_entry *v = raft__calloc(to - from + 1, sizeof(*v));

    for (raft_index i = from; v != NULL && i <= to; i++) {
        v[i - from] = *raft__log_at(l, i);
    }
    return v;
}

/* Leader work batched per ready: one append per peer for everything new. */
static void flush_leader(struct raft_node *n)
{
    if (n->role != RAFT_LEADER)
        return;
    raft__maybe_commit(n);
    if (n->role != RAFT_LEADER)
        return; /* removed from the config, and that config committed */
    bool is_news = n->is_commit_news;
    n->is_commit_news = false;
    for (uint32_t i = 0; i < n->peer_count; i++) {
        struct raft__progress *p = &n->peers[i];
        uint32_t k = 0;
        for (; k < n->opt.inflight_max && p->next <= raft__log_last(&n->log) &&
               !raft__pr_is_paused(p, n->opt.inflight_max);
             k++) {
            raft__send_append(n, p, false);
        }
        if (k == 0 && is_news)
            raft__send_append(n, p, true); /* just the new commit index */
    }
    if (n->is_read_round_due) {
        n->is_read_round_due = false;
        n->heartbeat_elapsed = 0;
        raft__broadcast_heartbeat(n);
    }
}

/* A leader's appends, heartbeats, snapshot chunks and transfer messages do
 * not depend on its own disk (it counts itself toward a commit only once
 * its disk has the entries): move them to the front so the host can send
 * them before persisting. Stable, so each peer's messages keep their order
 * within each part. */
static bool is_early(const struct raft_msg *m)
{
    return m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
           m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_TIMEOUT_NOW;
}

/* What may be applied: what is committed and (unless the host takes
 * unstable entries) on this node's disk. */
static raft_index apply_limit(const struct raft_node *n)
{
    if (n->opt.is_apply_unstable)
        return n->log.commit;
    return n->log.commit < n->log.stable ? n->log.commit : n->log.stable;
}

static void order_early(struct raft_node *n)
{
    uint32_t early = 0;

    n->early_count = 0;
    /* a new term or vote must be on disk before any message that claims it */
    if (n->role != RAFT_LEADER || n->is_vote_dirty)
        return;
    for (uint32_t i = 0; i < n->msg_count; i++) {
        if (!is_early(&n->msgs[i]))
            continue;
        struct raft_msg m = n->msgs[i];
        memmove(&n->msgs[early + 1], &n->msgs[early], (i - early) * sizeof(m));
        n->msgs[early++] = m;
    }
    n->early_count = early;
}

/* A finished chunk the log overtook meanwhile is dropped, not installed. */
static void drop_overtaken_chunk(struct raft_node *n)
{
    raft_term t;

    if (!n->has_chunk || !n->chunk.is_done)
        return;
    bool is_held = raft__log_term(&n->log, n->chunk.index, &t) && t == n->chunk.term;
    if (n->chunk.index > n->log.commit && !is_held)
        return;
    raft_free(n->chunk_buf);
    n->chunk_buf = NULL;
    n->has_chunk = false;
    n->recv.is_active = false;
}

bool raft_ready(struct raft_node *n, struct raft_ready *rd)
{
    RAFT_ASSERT(n != NULL && rd != NULL);
    RAFT_ASSERT(!n->is_ready_out);
    flush_leader(n);
    drop_overtaken_chunk(n);
    *rd = (struct raft_ready){.role = n->role, .leader = n->leader};
    raft_index last = raft__log_last(&n->log);
    if (last > n->log.stable) {
        rd->entries = copy_entries(&n->log, n->log.stable + 1, last);
        if (rd->entries == NULL)
            return false; /* asked again next turn */
        rd->entry_count = (uint32_t)(last - n->log.stable);
    }
    raft_index apply_to = apply_limit(n);
    if (apply_to - n->log.applied > RAFT_APPLY_BATCH_MAX)
        apply_to = n->log.applied + RAFT_APPLY_BATCH_MAX;
    if (n->has_chunk) {
        rd->has_chunk = true; /* nothing is applied beside a snapshot */
        rd->chunk = n->chunk;
        n->is_chunk_out = true;
        n->ready_chunk_buf = n->chunk_buf;
        n->chunk_buf = NULL;
        n->has_chunk = false;
    } else if (apply_to > n->log.applied) {
        rd->committed = copy_entries(&n->log, n->log.applied + 1, apply_to);
        if (rd->committed != NULL)
            rd->committed_count = (uint32_t)(apply_to - n->log.applied);
    }
    rd->has_hard_state = n->is_hs_dirty;
    rd->must_sync = rd->entry_count > 0 || rd->has_chunk || n->is_vote_dirty;
    rd->hard_state = (struct raft_hard_state){.term = n->term, .vote = n->vote,
                                              .commit = n->log.commit};
    order_early(n);
    rd->msgs = n->msgs;
    rd->msg_count = n->msg_count;
    rd->early_count = n->early_count;
    n->early_count = 0;
    n->msgs = NULL;
    n->msg_count = n->msg_cap = 0;
    rd->reads = n->reads_ready;
    rd->read_count = n->ready_read_count;
    n->reads_ready = NULL;
    n->ready_read_count = n->ready_read_cap = 0;
    rd->wants = n->wants;
    rd->want_count = n->want_count;
    n->wants = NULL;
    n->want_count = n->want_cap = 0;
    rd->has_role_change = n->is_role_dirty;
    n->is_hs_dirty = false;
    n->is_vote_dirty = false;
    n->is_role_dirty = false;
    n->is_ready_out = true;
    n->readies++;
    n->ready_msgs = rd->msgs;
    n->ready_msg_count = rd->msg_count;
    n->ready_entries = rd->entries;
    n->ready_committed = rd->committed;
    n->ready_committed_last = rd->committed_count > 0 ? rd->committed[rd->committed_count - 1].index
                                                      : 0;
    n->ready_reads = rd->reads;
    n->ready_wants = rd->wants;
    if (rd->entry_count > 0) {
        n->ready_last = rd->entries[rd->entry_count - 1].index;
        n->ready_last_term = rd->entries[rd->entry_count - 1].term;
    }
    bool has_work = rd->has_hard_state || rd->entry_count > 0 || rd->has_chunk ||
                    rd->msg_count > 0 || rd->committed_count > 0 || rd->read_count > 0 ||
                    rd->want_count > 0 || rd->has_role_change;
    if (!has_work)
        raft_advance(n, rd);
    return has_work;
}

/* The host stored (or failed to store) the chunk of the ready. */
static void advance_chunk(struct raft_node *n, const struct raft_ready *rd)
{
    struct raft__snap_recv *rv = &n->recv;
    struct raft_msg r = {.type = RAFT_MSG_SNAPSHOT_RESP, .to = rv->from, .term = n->term,
                         .index = rd->chunk.index};

    if (n->is_chunk_failed) {
        rv->is_active = false;
        r.is_reject = true;
        r.offset = 0;
    } else if (rd->chunk.is_done) {
        n->chunk = rd->chunk;
        raft__install_snapshot(n);
        rv->is_active = false;
        r.is_done = true;
    } else {
        r.offset = rd->chunk.offset + rd->chunk.size;
    }
    n->is_chunk_failed = false;
    if (rv->from != 0 && rv->from != n->id)
        raft__send(n, &r);
}

void raft_advance(struct raft_node *n, struct raft_ready *rd)
{
    raft_term t;

    RAFT_ASSERT(n != NULL && rd != NULL);
    RAFT_ASSERT(n->is_ready_out);
    if (rd->entry_count > 0 && raft__log_term(&n->log, n->ready_last, &t) &&
        t == n->ready_last_term && n->ready_last > n->log.stable)
        n->log.stable = n->ready_last;
    /* raft_committed_take() may have applied past the ready's entries */
    if (rd->committed_count > 0 && rd->committed[rd->committed_count - 1].index > n->log.applied)
        n->log.applied = rd->committed[rd->committed_count - 1].index;
    if (rd->has_chunk) {
        advance_chunk(n, rd);
        raft_free(n->ready_chunk_buf);
        n->ready_chunk_buf = NULL;
        n->is_chunk_out = false;
    }
    raft_free(rd->entries);
    raft_free(rd->committed);
    free_msgs(rd->msgs, rd->msg_count);
    raft_free(rd->reads);
    raft_free(rd->wants);
    n->ready_msgs = NULL;
    n->ready_msg_count = 0;
    n->ready_entries = n->ready_committed = NULL;
    n->ready_committed_last = 0;
    n->ready_reads = NULL;
    n->ready_wants = NULL;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n->grave_count; i++) {
        if (n->graves[i].after_ready <= n->readies)
            raft_free(n->graves[i].data);
        else
            n->graves[kept++] = n->graves[i];
    }
    n->grave_count = kept;
    *rd = (struct raft_ready){.role = n->role};
    n->is_ready_out = false;
    if (n->role == RAFT_LEADER)
        raft__maybe_commit(n); /* its own disk caught up */
}

void raft_applied_early(struct raft_node *n, const struct raft_ready *rd)
{
    RAFT_ASSERT(n != NULL && rd != NULL && n->is_ready_out);
    if (rd->committed_count == 0)
        return;
    raft_index last = rd->committed[rd->committed_count - 1].index;
    RAFT_ASSERT(last <= apply_limit(n));
    n->log.applied = last;
}

uint32_t raft_early_take(struct raft_node *n, struct raft_msg **out)
{
    RAFT_ASSERT(n != NULL && out != NULL);
    *out = NULL;
    /* a new term or vote must be on disk before any message that claims it */
    if (n->role != RAFT_LEADER || n->is_vote_dirty)
        return 0;
    flush_leader(n);
    uint32_t early = 0;
    for (uint32_t i = 0; i < n->msg_count; i++) {
        early += is_early(&n->msgs[i]);
    }
    if (early == 0)
        return 0;
    struct raft_msg *v = raft__calloc(early, sizeof(*v));
    if (v == NULL)
        return 0; /* they go with the next ready */
    uint32_t kept = 0;
    uint32_t taken = 0;
    for (uint32_t i = 0; i < n->msg_count; i++) {
        if (is_early(&n->msgs[i]))
            v[taken++] = n->msgs[i];
        else
            n->msgs[kept++] = n->msgs[i];
    }
    n->msg_count = kept;
    *out = v;
    return taken;
}

void raft_msgs_free(struct raft_msg *msgs, uint32_t count)
{
    free_msgs(msgs, count);
}

uint32_t raft_committed_take(struct raft_node *n, struct raft_entry **out)
{
    RAFT_ASSERT(n != NULL && out != NULL);
    *out = NULL;
    /* in order: the ready's own entries first; nothing beside a snapshot */
    if (n->ready_committed_last > n->log.applied || n->has_chunk || n->is_chunk_out)
        return 0;
    if (n->role == RAFT_LEADER)
        raft__maybe_commit(n);
    raft_index apply_to = apply_limit(n);
    if (apply_to - n->log.applied > RAFT_APPLY_BATCH_MAX)
        apply_to = n->log.applied + RAFT_APPLY_BATCH_MAX;
    if (apply_to <= n->log.applied)
        return 0;
    *out = copy_entries(&n->log, n->log.applied + 1, apply_to);
    if (*out == NULL)
        return 0; /* out of memory: the next ready hands them out */
    uint32_t count = (uint32_t)(apply_to - n->log.applied);
    n->log.applied = apply_to;
    return count;
}

/* ---- queries -------------------------------------------------------------------------------- */

enum raft_role raft_role(const struct raft_node *n)
{
    return n->role;
}

raft_index raft_stable_index(const struct raft_node *n)
{
    return n->log.stable;
}

bool raft_entry_time(const struct raft_node *n, raft_index index, uint64_t *hlc_ns)
{
    if (index == n->log.offset && index > 0) {
        *hlc_ns = n->log.offset_hlc_ns;
        return true;
    }
    if (index <= n->log.offset || index > raft__log_last(&n->log))
        return false;
    *hlc_ns = raft__log_at(&n->log, index)->hlc_ns;
    return true;
}

raft_id raft_leader(const struct raft_node *n)
{
    return n->leader;
}

raft_term raft_term_of(const struct raft_node *n)
{
    return n->term;
}

raft_index raft_commit_index(const struct raft_node *n)
{
    return n->log.commit;
}

raft_index raft_last_index(const struct raft_node *n)
{
    return raft__log_last(&n->log);
}

raft_index raft_applied_index(const struct raft_node *n)
{
    return n->log.applied;
}

uint64_t raft_ticks_since_leader(const struct raft_node *n)
{
    if (n->role == RAFT_LEADER)
        return 0;
    if (!n->has_heard_leader || n->leader == 0)
        return UINT64_MAX;
    return n->ticks - n->leader_heard_tick;
}

bool raft_peer_match(const struct raft_node *n, raft_id peer, raft_index *match)
{
    if (n->role != RAFT_LEADER)
        return false;
    for (uint32_t i = 0; i < n->peer_count; i++) {
        if (n->peers[i].id == peer) {
            *match = n->peers[i].match;
            return true;
        }
    }
    return false;
}

/* ---- invariants ------------------------------------------------------------------------------- */

void raft__check_invariants(const struct raft_node *n)
{
    const struct raft__log *l = &n->log;
    raft_index last = raft__log_last(l);
    raft_term prev_term = l->offset_term;
    uint64_t prev_hlc = l->offset_hlc_ns;
    uint64_t uncommitted = 0;

    RAFT_ASSERT(l->offset <= l->stable && l->stable <= last);
    RAFT_ASSERT(l->offset <= l->applied || l->applied == l->offset);
    RAFT_ASSERT(l->applied <= l->commit && l->commit <= last);
    RAFT_ASSERT(l->applied <= l->stable || n->opt.is_apply_unstable);
    for (raft_index i = l->offset + 1; i <= last; i++) {
        const struct raft_entry *e = raft__log_at(l, i);
        RAFT_ASSERT(e->index == i);
        RAFT_ASSERT(e->term >= prev_term && e->term <= n->term);
        RAFT_ASSERT(e->hlc_ns > prev_hlc || (i == 1 && prev_hlc == 0));
        RAFT_ASSERT(e->size == 0 || e->data != NULL);
        prev_term = e->term;
        prev_hlc = e->hlc_ns;
        if (i > l->commit)
            uncommitted += e->size;
    }
    RAFT_ASSERT(uncommitted == l->uncommitted_bytes);
    RAFT_ASSERT(n->config_count >= 1);
    for (uint32_t i = 1; i < n->config_count; i++) {
        RAFT_ASSERT(n->configs[i - 1].index < n->configs[i].index);
    }
    if (n->role == RAFT_LEADER) {
        RAFT_ASSERT(n->vote == n->id && n->leader == n->id);
        for (uint32_t i = 0; i < n->peer_count; i++) {
            const struct raft__progress *p = &n->peers[i];
            RAFT_ASSERT(p->match < p->next && p->next <= last + 1);
            RAFT_ASSERT(p->inflight_count <= n->opt.inflight_max);
        }
    }
    RAFT_ASSERT(n->snap_index >= l->offset);
}
