/* raft/election.c - roles, terms and votes: randomized election timeouts,
 * pre-vote (thesis §9.6: a node that cannot win does not disturb the
 * group), check-quorum and the leader lease (a follower that heard from a
 * leader within the minimum election timeout refuses to vote, so a leader
 * that heard from a quorum knows nobody else can be elected until then),
 * and leadership transfer.
 * Invariant: vote is for term; a leader has voted for itself.
 * Thread: none. */
#include "core.h"

void raft__set_hard_state(struct raft_node *n, raft_term term, raft_id vote)
{
    RAFT_ASSERT(term >= n->term);
    if (term != n->term || vote != n->vote) {
        n->is_hs_dirty = true;
        n->is_vote_dirty = true;
    }
    n->term = term;
    n->vote = vote;
}

static void set_role(struct raft_node *n, enum raft_role role, raft_id leader)
{
    if (n->role != role || n->leader != leader)
        n->is_role_dirty = true;
    if (n->role == RAFT_LEADER && role != RAFT_LEADER)
        raft__fail_reads(n);
    n->role = role;
    n->leader = leader;
}

bool raft__is_promotable(const struct raft_node *n)
{
    return raft_config_is_voter(raft__config(n), n->id);
}

bool raft__is_receiving(const struct raft_node *n)
{
    return n->recv.is_active || n->has_chunk || n->is_chunk_out;
}

/* A leader may be counting on this node's promise not to vote: it heard
 * from one within the minimum election timeout, or it has just started and
 * cannot know (a restart must not break a lease it granted before). */
bool raft__in_lease(const struct raft_node *n)
{
    if (n->ticks < n->opt.election_ticks)
        return true;
    return n->has_heard_leader && n->leader != 0 && n->leader != n->id &&
           n->ticks - n->leader_heard_tick < n->opt.election_ticks;
}

void raft__become_follower(struct raft_node *n, raft_term term, raft_id leader)
{
    raft__set_hard_state(n, term, term == n->term ? n->vote : 0);
    set_role(n, RAFT_FOLLOWER, leader);
    n->election_elapsed = 0;
    n->transfer_to = 0;
    n->is_transfer_campaign = false;
    raft__reset_election_timeout(n);
}

void raft__become_leader(struct raft_node *n)
{
    RAFT_ASSERT(n->role == RAFT_CANDIDATE);
    set_role(n, RAFT_LEADER, n->id);
    n->heartbeat_elapsed = 0;
    n->check_elapsed = 0;
    n->transfer_to = 0;
    n->is_lease_void = false;
    n->round = 0;
    n->peer_count = 0;
    if (raft__peers_sync(n) != 0) {
        /* without memory a leader cannot track its followers: step aside */
        raft__become_follower(n, n->term, 0);
        return;
    }
    for (uint32_t i = 0; i < n->peer_count; i++) {
        raft__pr_reset(&n->peers[i], n->peers[i].id, raft__log_last(&n->log));
    }
    /* an entry of its own term, so the commit index can move (thesis §3.6.2)
     * and so ReadIndex and config changes may start once it commits */
    uint64_t last_hlc = raft__log_last_hlc(&n->log);
    n->hlc_ns = n->hlc_ns > last_hlc ? n->hlc_ns : last_hlc;
    n->hlc_ns = n->wall_ns > n->hlc_ns ? n->wall_ns : n->hlc_ns + 1;
    struct raft_entry e = {.term = n->term, .index = raft__log_last(&n->log) + 1,
                           .hlc_ns = n->hlc_ns, .type = RAFT_ENTRY_NORMAL};
    if (raft__log_append(&n->log, &e) != 0) {
        raft__become_follower(n, n->term, 0);
        return;
    }
    raft__broadcast_append(n);
    raft__maybe_commit(n); /* a group of one commits at once (after persisting) */
}

static bool log_up_to_date(const struct raft_node *n, raft_index index, raft_term term)
{
    raft_term last_term = raft__log_last_term(&n->log);

    return term > last_term || (term == last_term && index >= raft__log_last(&n->log));
}

static void send_requests(struct raft_node *n, bool is_pre, raft_term term)
{
    const struct raft_config *c = raft__config(n);

    for (uint32_t i = 0; i < c->voter_count; i++) {
        if (c->voters[i] == n->id)
            continue;
        struct raft_msg m = {.type = is_pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE,
                             .to = c->voters[i], .term = term,
                             .index = raft__log_last(&n->log),
                             .log_term = raft__log_last_term(&n->log),
                             .is_transfer = n->is_transfer_campaign};
        raft__send(n, &m);
    }
}

/* Count a vote; returns the role change it decides, if any. */
static void tally(struct raft_node *n, raft_id from, bool is_granted)
{
    raft_id *list = is_granted ? n->granted : n->refused;
    uint32_t *count = is_granted ? &n->granted_count : &n->refused_count;
    const struct raft_config *c = raft__config(n);

    if (!raft_config_is_voter(c, from))
        return;
    for (uint32_t i = 0; i < n->granted_count; i++) {
        if (n->granted[i] == from)
            return;
    }
    for (uint32_t i = 0; i < n->refused_count; i++) {
        if (n->refused[i] == from)
            return;
    }
    RAFT_ASSERT(*count < RAFT_VOTERS_MAX);
    list[(*count)++] = from;
    uint32_t q = raft__quorum(c);
    if (n->granted_count >= q) {
        if (n->role == RAFT_PRE_CANDIDATE)
            raft__start_campaign(n, false, false);
        else
            raft__become_leader(n);
    } else if (n->refused_count >= q) {
        raft__become_follower(n, n->term, 0);
    }
}

void raft__start_campaign(struct raft_node *n, bool is_pre, bool is_transfer)
{
    RAFT_ASSERT(raft__is_promotable(n));
    n->granted_count = 0;
    n->refused_count = 0;
    n->election_elapsed = 0;
    raft__reset_election_timeout(n);
    if (is_pre) {
        set_role(n, RAFT_PRE_CANDIDATE, 0);
        n->is_transfer_campaign = false;
        send_requests(n, true, n->term + 1);
    } else {
        raft__set_hard_state(n, n->term + 1, n->id);
        set_role(n, RAFT_CANDIDATE, 0);
        /* a pre-vote win carries no transfer; TIMEOUT_NOW does */
        n->is_transfer_campaign = is_transfer;
        send_requests(n, false, n->term);
    }
    tally(n, n->id, true); /* a group of one wins here */
}

void raft__on_vote_request(struct raft_node *n, const struct raft_msg *m)
{
    bool is_pre = m->type == RAFT_MSG_PREVOTE;
    /* a pre-vote is granted for a future term without taking it */
    bool can_vote = is_pre ? m->term > n->term
                           : (n->vote == 0 || n->vote == m->from) && n->leader == 0;
    bool is_granted = can_vote && log_up_to_date(n, m->index, m->log_term);
    struct raft_msg r = {.type = is_pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
                         .to = m->from, .term = is_granted && is_pre ? m->term : n->term,
                         .is_reject = !is_granted};

    if (is_granted && !is_pre) {
        raft__set_hard_state(n, n->term, m->from); /* persisted before r is sent */
        n->election_elapsed = 0;
    }
    raft__send(n, &r);
}

void raft__on_vote_response(struct raft_node *n, const struct raft_msg *m)
{
    bool is_pre = m->type == RAFT_MSG_PREVOTE_RESP;

    if ((is_pre && n->role != RAFT_PRE_CANDIDATE) || (!is_pre && n->role != RAFT_CANDIDATE))
        return;
    tally(n, m->from, !m->is_reject);
}
