/* raft/replication.c - the log from leader to followers: appends with a
 * window in flight, fast back-tracking on a mismatch, the commit rule,
 * heartbeats that carry ReadIndex rounds, and snapshots in chunks for
 * followers the log no longer reaches.
 * Invariants: a follower never truncates at or below its commit index; the
 * leader commits by counting only entries of its own term (thesis §3.6.2).
 * Thread: none. */
#include "core.h"

/* ---- sending ------------------------------------------------------------------------ */

void raft__want_snapshot(struct raft_node *n, struct raft__progress *p)
{
    if (p->is_snap_wanted || n->snap_index == 0)
        return;
    if (raft__grow((void **)&n->wants, &n->want_cap, n->want_count + 1, sizeof(*n->wants)) != 0)
        return; /* retried at the next tick */
    n->wants[n->want_count++] = (struct raft_snapshot_want){
        .peer = p->id, .index = p->snap_index, .offset = p->snap_acked};
    p->is_snap_wanted = true;
    p->snap_idle_ticks = 0;
}

static void start_snapshot(struct raft_node *n, struct raft__progress *p)
{
    raft__pr_become(p, PR_SNAPSHOT);
    p->snap_index = n->snap_index;
    p->snap_acked = 0;
    raft__want_snapshot(n, p);
}

/* Send p what follows its next index: entries up to the byte budget, or
 * nothing but the commit index if may_be_empty. */
void raft__send_append(struct raft_node *n, struct raft__progress *p, bool may_be_empty)
{
    raft_index prev = p->next - 1;
    raft_index last = raft__log_last(&n->log);
    raft_term prev_term;

    if (raft__pr_is_paused(p, n->opt.inflight_max))
        return;
    if (!raft__log_term(&n->log, prev, &prev_term)) {
        start_snapshot(n, p); /* the entries it needs are compacted */
        return;
    }
    uint32_t count = 0;
    uint64_t bytes = 0;
    while (prev + count < last && count < RAFT_APPEND_ENTRIES_MAX) {
        uint32_t size = raft__log_at(&n->log, prev + count + 1)->size;
        if (count > 0 && bytes + size > n->opt.append_bytes_max)
            break;
        bytes += size;
        count++;
    }
    if (count == 0 && !may_be_empty)
        return;
    struct raft_msg m = {.type = RAFT_MSG_APPEND, .to = p->id, .term = n->term, .index = prev,
                         .log_term = prev_term, .commit = n->log.commit, .entry_count = count};
    if (count > 0) {
        m.entries = raft__calloc(count, sizeof(*m.entries));
        if (m.entries == NULL)
            return; /* sent again at the next heartbeat */
        for (uint32_t i = 0; i < count; i++) {
            m.entries[i] = *raft__log_at(&n->log, prev + 1 + i);
        }
    }
    if (raft__send(n, &m) != 0) {
        raft_free(m.entries);
        return;
    }
    if (count > 0 || p->state == PR_PROBE)
        raft__pr_sent(p, prev + count);
}

void raft__broadcast_append(struct raft_node *n)
{
    for (uint32_t i = 0; i < n->peer_count; i++) {
        raft__send_append(n, &n->peers[i], true);
    }
}

void raft__broadcast_heartbeat(struct raft_node *n)
{
    n->round++;
    n->round_tick[n->round % RAFT_ROUNDS_KEPT] = n->ticks;
    for (uint32_t i = 0; i < n->peer_count; i++) {
        struct raft__progress *p = &n->peers[i];
        /* a follower may only learn a commit index its log is known to reach */
        raft_index commit = p->match < n->log.commit ? p->match : n->log.commit;
        struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .to = p->id, .term = n->term,
                             .commit = commit, .read_seq = n->round};
        raft__send(n, &m);
    }
    raft__check_reads(n); /* a group of one confirms at once */
}

/* ---- commit -------------------------------------------------------------------------- */

void raft__set_commit(struct raft_node *n, raft_index commit)
{
    struct raft__log *l = &n->log;

    if (commit <= l->commit)
        return;
    RAFT_ASSERT(commit <= raft__log_last(l));
    for (raft_index i = l->commit + 1; i <= commit; i++) {
        uint32_t size = raft__log_at(l, i)->size;
        l->uncommitted_bytes -= size < l->uncommitted_bytes ? size : l->uncommitted_bytes;
    }
    l->commit = commit;
    n->is_hs_dirty = true;
    n->is_commit_news = n->role == RAFT_LEADER;
}

static void step_down_if_removed(struct raft_node *n)
{
    /* a leader removed from the config leads until that config commits
     * (thesis §4.2.2), then steps aside */
    if (n->role == RAFT_LEADER && !raft__is_promotable(n) &&
        n->configs[n->config_count - 1].index <= n->log.commit)
        raft__become_follower(n, n->term, 0);
}

/* The highest index a quorum of voters holds; the leader counts only what
 * its own disk holds. */
bool raft__maybe_commit(struct raft_node *n)
{
    const struct raft_config *c = raft__config(n);
    raft_index match[RAFT_VOTERS_MAX];
    uint32_t count = 0;

    for (uint32_t i = 0; i < c->voter_count; i++) {
        if (c->voters[i] == n->id) {
            match[count++] = n->log.stable;
            continue;
        }
        struct raft__progress *p = raft__peer(n, c->voters[i]);
        match[count++] = p != NULL ? p->match : 0;
    }
    if (count == 0)
        return false;
    for (uint32_t i = 1; i < count; i++) { /* insertion sort, descending; count <= 7 */
        raft_index v = match[i];
        uint32_t j = i;
        for (; j > 0 && match[j - 1] < v; j--) {
            match[j] = match[j - 1];
        }
        match[j] = v;
    }
    raft_index q = match[raft__quorum(c) - 1];
    raft_term t;
    if (q <= n->log.commit || !raft__log_term(&n->log, q, &t) || t != n->term)
        return false;
    raft__set_commit(n, q);
    raft__check_reads(n);
    step_down_if_removed(n);
    return true;
}

/* ---- follower side --------------------------------------------------------------------- */

static void reply_append(struct raft_node *n, const struct raft_msg *m, raft_index index,
                         bool is_reject, raft_index hint_index, raft_term hint_term)
{
    struct raft_msg r = {.type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = n->term,
                         .index = index, .is_reject = is_reject, .hint_index = hint_index,
                         .hint_term = hint_term};
    raft__send(n, &r);
}

/* Where the leader should probe next: the last index at or below m->index
 * whose term is at most m->log_term (every entry above it conflicts). */
static void reject_hint(const struct raft_node *n, const struct raft_msg *m, raft_index *index,
                        raft_term *term)
{
    raft_index i = m->index < raft__log_last(&n->log) ? m->index : raft__log_last(&n->log);
    raft_term t = 0;

    /* bounded by the log held: each turn steps one index down */
    while (i > n->log.offset && raft__log_term(&n->log, i, &t) && t > m->log_term) {
        i--;
    }
    if (!raft__log_term(&n->log, i, &t))
        t = 0;
    *index = i;
    *term = t;
}

static void observe_hlc(struct raft_node *n, uint64_t hlc_ns)
{
    if (hlc_ns > n->hlc_ns)
        n->hlc_ns = hlc_ns;
}

/* Append the entries of m past what matches; -ENOMEM leaves a prefix. */
static int append_new(struct raft_node *n, const struct raft_msg *m)
{
    uint32_t i = 0;
    raft_term t;

    for (; i < m->entry_count; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (!raft__log_term(&n->log, e->index, &t)) {
            if (e->index <= n->log.offset)
                continue; /* compacted here: committed, so it matches */
            break;        /* past the end */
        }
        if (t == e->term)
            continue;
        /* the first conflict: drop it and all after (never a committed one) */
        if (e->index <= n->log.commit)
            return -RAFT_ECORRUPT;
        raft_index last = raft__log_last(&n->log);
        for (raft_index j = last; j >= e->index; j--) {
            struct raft_entry *old = raft__log_at(&n->log, j);
            n->log.uncommitted_bytes -= old->size < n->log.uncommitted_bytes
                                            ? old->size : n->log.uncommitted_bytes;
            raft__bury(n, old->data);
            old->data = NULL;
            n->log.count--;
        }
        if (n->log.stable >= e->index)
            n->log.stable = e->index - 1;
        raft__config_truncate(n, e->index);
        break;
    }
    int rc = raft__log_reserve(&n->log, m->entry_count - i);
    for (; rc == 0 && i < m->entry_count; i++) {
        const struct raft_entry *e = &m->entries[i];
        struct raft_entry copy = *e;
        struct raft_config c;
        copy.data = NULL;
        if (e->size > 0) {
            copy.data = raft_malloc(e->size);
            if (copy.data == NULL)
                return -ENOMEM;
            memcpy(copy.data, e->data, e->size);
        }
        if (e->type == RAFT_ENTRY_CONFIG &&
            (raft_config_decode(e->data, e->size, &c) != 0 ||
             raft__config_push(n, e->index, &c) != 0)) {
            raft_free(copy.data);
            return -ENOMEM;
        }
        /* times increase along the log: a peer that says otherwise is broken */
        if (raft__log_last(&n->log) > 0 && e->hlc_ns <= raft__log_last_hlc(&n->log)) {
            raft_free(copy.data);
            if (e->type == RAFT_ENTRY_CONFIG)
                raft__config_truncate(n, e->index);
            return -RAFT_ECORRUPT;
        }
        rc = raft__log_append(&n->log, &copy);
        if (rc != 0) {
            raft__config_truncate(n, e->index);
            raft_free(copy.data);
        }
        observe_hlc(n, e->hlc_ns);
    }
    return rc;
}

/* Entries of an append must be well formed before any is taken. */
bool raft__append_is_valid(const struct raft_node *n, const struct raft_msg *m)
{
    raft_term prev_term = m->log_term;
    uint64_t prev_hlc = 0;
    struct raft_config c;

    (void)n;
    if (m->entry_count > RAFT_APPEND_ENTRIES_MAX || (m->entry_count > 0 && m->entries == NULL))
        return false;
    for (uint32_t i = 0; i < m->entry_count; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term ||
            e->size > RAFT_ENTRY_BYTES_MAX || (e->size > 0 && e->data == NULL) ||
            (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONFIG) ||
            (i > 0 && e->hlc_ns <= prev_hlc) ||
            (e->type == RAFT_ENTRY_CONFIG && raft_config_decode(e->data, e->size, &c) != 0))
            return false;
        prev_term = e->term;
        prev_hlc = e->hlc_ns;
    }
    return true;
}

int raft__on_append(struct raft_node *n, const struct raft_msg *m)
{
    raft_term t;

    if (m->index < n->log.commit) {
        /* everything up to our commit matches the leader's log */
        reply_append(n, m, n->log.commit, false, 0, 0);
        return 0;
    }
    if (!raft__log_term(&n->log, m->index, &t) || t != m->log_term) {
        raft_index hint_index;
        raft_term hint_term;
        reject_hint(n, m, &hint_index, &hint_term);
        reply_append(n, m, m->index, true, hint_index, hint_term);
        return 0;
    }
    int rc = append_new(n, m);
    if (rc != 0)
        return rc == -RAFT_ECORRUPT ? rc : 0; /* nothing acknowledged; sent again */
    raft_index last_new = m->index + m->entry_count;
    raft__set_commit(n, m->commit < last_new ? m->commit : last_new);
    reply_append(n, m, last_new, false, 0, 0);
    return 0;
}

void raft__on_heartbeat(struct raft_node *n, const struct raft_msg *m)
{
    raft_index commit = m->commit < raft__log_last(&n->log) ? m->commit : raft__log_last(&n->log);
    struct raft_msg r = {.type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .term = n->term,
                         .read_seq = m->read_seq};

    raft__set_commit(n, commit);
    raft__send(n, &r);
}

/* ---- leader side ----------------------------------------------------------------------- */

static void maybe_send_timeout_now(struct raft_node *n, struct raft__progress *p)
{
    if (n->transfer_to != p->id || p->match != raft__log_last(&n->log))
        return;
    struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = p->id, .term = n->term};
    n->is_lease_void = true; /* the target will ignore every lease */
    raft__send(n, &m);
}

/* The index in the leader's log to probe after a reject hinting (index,
 * term): the last at or below index whose term is at most term. */
static raft_index probe_after_reject(const struct raft_node *n, raft_index index, raft_term term)
{
    raft_index i = index < raft__log_last(&n->log) ? index : raft__log_last(&n->log);
    raft_term t;

    while (i > n->log.offset && raft__log_term(&n->log, i, &t) && t > term) {
        i--;
    }
    return i;
}

void raft__on_append_response(struct raft_node *n, const struct raft_msg *m)
{
    struct raft__progress *p = raft__peer(n, m->from);

    if (p == NULL)
        return;
    p->is_active = true;
    if (m->is_reject) {
        if (m->hint_index > m->index || p->state == PR_SNAPSHOT)
            return;
        raft_index hint = probe_after_reject(n, m->hint_index, m->hint_term);
        if (raft__pr_rejected(p, m->index, hint))
            raft__send_append(n, p, true);
        return;
    }
    if (m->index > raft__log_last(&n->log))
        return; /* acknowledges what we never sent: not from this term's log */
    if (p->state == PR_SNAPSHOT) {
        if (m->index < p->snap_index)
            return;
        raft__pr_become(p, PR_PROBE);
    }
    bool is_new = raft__pr_acked(p, m->index);
    if (p->state == PR_PROBE && is_new)
        raft__pr_become(p, PR_REPLICATE);
    if (is_new)
        raft__maybe_commit(n); /* the next ready tells the followers */
    if (n->role != RAFT_LEADER)
        return; /* maybe_commit stepped down (removed) */
    /* keep the window full; bounded by the window */
    for (uint32_t k = 0; k < n->opt.inflight_max && p->next <= raft__log_last(&n->log) &&
                         !raft__pr_is_paused(p, n->opt.inflight_max);
         k++) {
        raft__send_append(n, p, false);
    }
    maybe_send_timeout_now(n, p);
}

void raft__on_heartbeat_response(struct raft_node *n, const struct raft_msg *m)
{
    struct raft__progress *p = raft__peer(n, m->from);

    if (p == NULL)
        return;
    p->is_active = true;
    p->is_probe_sent = false;
    /* appends of a full window may all be lost: free one slot, so the next
     * append goes out and, if the follower lacks what came before, its
     * reject sends the leader back to probing */
    if (p->state == PR_REPLICATE && p->inflight_count >= n->opt.inflight_max)
        raft__pr_free_one(p);
    if (m->read_seq > p->acked_round && m->read_seq <= n->round)
        p->acked_round = m->read_seq;
    if (p->state != PR_SNAPSHOT && p->match < raft__log_last(&n->log)) {
        /* even with nothing new to send: if the follower lacks what was
         * sent before, it rejects this one and the leader probes back */
        raft__send_append(n, p, true);
    }
    raft__check_reads(n);
}

/* ---- reads ------------------------------------------------------------------------------ */

int raft__ready_read(struct raft_node *n, uint64_t id, raft_index index)
{
    int rc = raft__grow((void **)&n->reads_ready, &n->ready_read_cap, n->ready_read_count + 1,
                        sizeof(*n->reads_ready));
    if (rc == 0)
        n->reads_ready[n->ready_read_count++] = (struct raft_read){.id = id, .index = index};
    return rc;
}

/* The newest round a quorum of voters (self included) has answered. */
static uint64_t quorum_round(struct raft_node *n)
{
    const struct raft_config *c = raft__config(n);
    uint64_t acked[RAFT_VOTERS_MAX];
    uint32_t count = 0;

    for (uint32_t i = 0; i < c->voter_count; i++) {
        struct raft__progress *p = raft__peer(n, c->voters[i]);
        acked[count++] = c->voters[i] == n->id ? n->round : (p != NULL ? p->acked_round : 0);
    }
    for (uint32_t i = 1; i < count; i++) {
        uint64_t v = acked[i];
        uint32_t j = i;
        for (; j > 0 && acked[j - 1] < v; j--) {
            acked[j] = acked[j - 1];
        }
        acked[j] = v;
    }
    return count == 0 ? 0 : acked[raft__quorum(c) - 1];
}

void raft__check_reads(struct raft_node *n)
{
    if (n->role != RAFT_LEADER || n->read_count == 0)
        return;
    uint64_t round = quorum_round(n);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n->read_count; i++) {
        struct raft__pending_read *r = &n->reads[i];
        if (r->round <= round && raft__ready_read(n, r->id, r->index) == 0)
            continue;
        n->reads[kept++] = *r;
    }
    n->read_count = kept;
}

void raft__fail_reads(struct raft_node *n)
{
    for (uint32_t i = 0; i < n->read_count; i++) {
        if (raft__ready_read(n, n->reads[i].id, 0) != 0)
            break; /* without memory the host learns by its own timeout */
    }
    n->read_count = 0;
}

/* ---- snapshots --------------------------------------------------------------------------- */

static void reply_snapshot(struct raft_node *n, raft_id to, uint64_t offset, bool is_done,
                           bool is_reject, raft_index index)
{
    struct raft_msg r = {.type = RAFT_MSG_SNAPSHOT_RESP, .to = to, .term = n->term,
                         .index = index, .offset = offset, .is_done = is_done,
                         .is_reject = is_reject};
    raft__send(n, &r);
}

void raft__on_snapshot(struct raft_node *n, const struct raft_msg *m)
{
    struct raft__snap_recv *rv = &n->recv;
    raft_term t;

    if (m->index <= n->log.commit) {
        reply_snapshot(n, m->from, 0, true, false, n->log.commit); /* nothing to learn */
        return;
    }
    if (raft__log_term(&n->log, m->index, &t) && t == m->log_term) {
        /* the log already holds the snapshot's last entry, and so (log
         * matching) all before it: keep the log, whose later entries this
         * node may have acknowledged, and learn that it is committed */
        raft__set_commit(n, m->index);
        rv->is_active = false;
        reply_snapshot(n, m->from, 0, true, false, m->index);
        return;
    }
    if (m->chunk_size > RAFT_CHUNK_BYTES_MAX || (m->chunk_size > 0 && m->chunk == NULL) ||
        !raft__config_valid(&m->config))
        return;
    if (n->has_chunk || n->is_chunk_out)
        return; /* one chunk at a time: the leader sends this one again */
    if (rv->is_active && rv->index == m->index)
        rv->idle_ticks = 0;
    if (m->offset == 0)
        *rv = (struct raft__snap_recv){.index = m->index, .term = m->log_term,
                                       .hlc_ns = m->hlc_ns, .config = m->config,
                                       .from = m->from, .is_active = true};
    if (!rv->is_active || rv->index != m->index || rv->received != m->offset) {
        reply_snapshot(n, m->from, rv->is_active && rv->index == m->index ? rv->received : 0,
                       false, true, m->index);
        return;
    }
    uint8_t *buf = m->chunk_size > 0 ? raft_malloc(m->chunk_size) : NULL;
    if (m->chunk_size > 0 && buf == NULL)
        return;
    if (m->chunk_size > 0)
        memcpy(buf, m->chunk, m->chunk_size);
    n->chunk_buf = buf;
    n->chunk = (struct raft_snapshot_chunk){.index = m->index, .term = m->log_term,
                                            .hlc_ns = rv->hlc_ns, .config = m->config,
                                            .offset = m->offset,
                                            .size = m->chunk_size, .data = buf,
                                            .is_done = m->is_done};
    n->has_chunk = true;
    n->is_chunk_failed = false;
    rv->received += m->chunk_size;
    rv->idle_ticks = 0;
    n->election_elapsed = 0;
}

/* The host installed the received snapshot: the log restarts after it. */
void raft__install_snapshot(struct raft_node *n)
{
    struct raft__log *l = &n->log;
    const struct raft_snapshot_chunk *c = &n->chunk;

    for (uint64_t i = 0; i < l->count; i++) {
        struct raft_entry *e = &l->ring[(l->head + i) & (l->cap - 1)];
        raft__bury(n, e->data);
        e->data = NULL;
    }
    l->count = 0;
    l->head = 0;
    l->offset = c->index;
    l->offset_term = c->term;
    l->offset_hlc_ns = c->hlc_ns;
    if (c->hlc_ns > n->hlc_ns)
        n->hlc_ns = c->hlc_ns;
    l->stable = c->index;
    l->commit = c->index;
    l->applied = c->index;
    l->uncommitted_bytes = 0;
    n->snap_index = c->index;
    n->snap_term = c->term;
    n->snap_hlc_ns = c->hlc_ns;
    n->snap_config = c->config;
    n->config_count = 0;
    int rc = raft__config_push(n, c->index, &c->config);
    RAFT_ASSERT(rc == 0); /* the history array is never empty, so never shrunk to 0 cap */
    n->is_hs_dirty = true;
}

void raft__on_snapshot_response(struct raft_node *n, const struct raft_msg *m)
{
    struct raft__progress *p = raft__peer(n, m->from);

    if (p == NULL)
        return;
    p->is_active = true;
    if (m->is_done) {
        if (m->index > raft__log_last(&n->log))
            return;
        if (p->state == PR_SNAPSHOT)
            raft__pr_become(p, PR_PROBE);
        raft__pr_acked(p, m->index);
        raft__send_append(n, p, true);
        return;
    }
    if (p->state != PR_SNAPSHOT || m->index != p->snap_index)
        return;
    p->is_snap_wanted = false;
    p->snap_acked = m->is_reject ? m->offset : (m->offset > p->snap_acked ? m->offset
                                                                         : p->snap_acked);
    if (p->snap_index != n->snap_index) {
        /* the host has a newer snapshot now: start that one */
        p->snap_index = n->snap_index;
        p->snap_acked = 0;
    }
    raft__want_snapshot(n, p);
}
