/* raft/progress.c - the leader's view of each follower's log (thesis §3.5,
 * etcd's Progress): where it matches, what to send next, and a window of
 * appends in flight (flow control).
 * Invariant: match < next; inflight ascending, each > match.
 * Thread: none; called from the leader's step and tick. */
#include "core.h"

void raft__pr_reset(struct raft__progress *p, raft_id id, raft_index last)
{
    *p = (struct raft__progress){.id = id, .match = 0, .next = last + 1, .state = PR_PROBE,
                                 .is_active = true};
}

void raft__pr_become(struct raft__progress *p, enum raft__pr_state s)
{
    p->state = (uint8_t)s;
    p->is_probe_sent = false;
    p->inflight_head = 0;
    p->inflight_count = 0;
    p->is_snap_wanted = false;
    p->snap_idle_ticks = 0;
    if (s != PR_SNAPSHOT) {
        p->snap_index = 0;
        p->snap_acked = 0;
    }
}

bool raft__pr_is_paused(const struct raft__progress *p, uint32_t window)
{
    switch ((enum raft__pr_state)p->state) {
    case PR_PROBE:
        return p->is_probe_sent;
    case PR_REPLICATE:
        return p->inflight_count >= window;
    case PR_SNAPSHOT:
        return true;
    }
    RAFT_UNREACHABLE();
}

void raft__pr_sent(struct raft__progress *p, raft_index last_sent)
{
    if (p->state == PR_PROBE) {
        p->is_probe_sent = true;
        return;
    }
    RAFT_ASSERT(p->state == PR_REPLICATE);
    RAFT_ASSERT(p->inflight_count < RAFT_INFLIGHT_MAX);
    if (last_sent >= p->next) {
        p->next = last_sent + 1;
    }
    p->inflight[(p->inflight_head + p->inflight_count) % RAFT_INFLIGHT_MAX] = last_sent;
    p->inflight_count++;
}

bool raft__pr_acked(struct raft__progress *p, raft_index index)
{
    bool is_new = index > p->match;

    if (is_new)
        p->match = index;
    if (p->next < index + 1)
        p->next = index + 1;
    p->is_probe_sent = false;
    /* every append up to index is answered */
    while (p->inflight_count > 0 && p->inflight[p->inflight_head] <= index) {
        p->inflight_head = (p->inflight_head + 1) % RAFT_INFLIGHT_MAX;
        p->inflight_count--;
    }
    RAFT_ASSERT(p->match < p->next);
    return is_new;
}

void raft__pr_free_one(struct raft__progress *p)
{
    if (p->inflight_count == 0)
        return;
    p->inflight_head = (p->inflight_head + 1) % RAFT_INFLIGHT_MAX;
    p->inflight_count--;
}

bool raft__pr_rejected(struct raft__progress *p, raft_index rejected, raft_index hint)
{
    if (p->state == PR_REPLICATE) {
        if (rejected <= p->match)
            return false; /* an old append, answered out of order */
        p->next = p->match + 1;
        raft__pr_become(p, PR_PROBE);
        return true;
    }
    if (p->next - 1 != rejected)
        return false; /* not the probe now outstanding */
    raft_index next = hint + 1 < rejected ? hint + 1 : rejected;
    p->next = next > p->match + 1 ? next : p->match + 1;
    p->is_probe_sent = false;
    return true;
}
