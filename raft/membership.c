/* raft/membership.c - who is in the group: configs as entries, their
 * history in the log, quorums, and the leader's set of peers.
 *
 * Changes go one server at a time (thesis §4.1): a config takes effect on
 * each node as soon as its entry is in that node's log, committed or not,
 * and a truncation that drops the entry falls back to the one before. Any
 * two configs one step apart share a majority, so two leaders cannot be
 * elected by disjoint quorums. Encoded config, little-endian:
 *   u32 voter_count | u32 learner_count | u64 ids (voters, then learners)
 * Invariant: configs[] ascending by index; configs[0] at or below the
 * compaction point. Thread: none. */
#include "core.h"

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;

    for (int i = bytes - 1; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

uint32_t raft_config_encode(const struct raft_config *c, uint8_t *buf)
{
    RAFT_ASSERT(raft__config_valid(c));
    put_u32(buf, c->voter_count);
    put_u32(buf + 4, c->learner_count);
    uint8_t *p = buf + 8;
    for (uint32_t i = 0; i < c->voter_count; i++, p += 8) {
        put_u64(p, c->voters[i]);
    }
    for (uint32_t i = 0; i < c->learner_count; i++, p += 8) {
        put_u64(p, c->learners[i]);
    }
    return (uint32_t)(p - buf);
}

int raft_config_decode(const uint8_t *buf, uint32_t size, struct raft_config *out)
{
    struct raft_config c = {.voter_count = 0};

    if (size < 8)
        return -RAFT_ECORRUPT;
    c.voter_count = (uint32_t)get_le(buf, 4);
    c.learner_count = (uint32_t)get_le(buf + 4, 4);
    if (c.voter_count > RAFT_VOTERS_MAX || c.learner_count > RAFT_LEARNERS_MAX ||
        size != 8 + 8 * (c.voter_count + c.learner_count))
        return -RAFT_ECORRUPT;
    for (uint32_t i = 0; i < c.voter_count; i++) {
        c.voters[i] = get_le(buf + 8 + 8 * i, 8);
    }
    for (uint32_t i = 0; i < c.learner_count; i++) {
        c.learners[i] = get_le(buf + 8 + 8 * (c.voter_count + i), 8);
    }
    if (!raft__config_valid(&c))
        return -RAFT_ECORRUPT;
    *out = c;
    return 0;
}

bool raft_config_is_voter(const struct raft_config *c, raft_id id)
{
    for (uint32_t i = 0; i < c->voter_count; i++) {
        if (c->voters[i] == id)
            return true;
    }
    return false;
}

bool raft_config_has(const struct raft_config *c, raft_id id)
{
    for (uint32_t i = 0; i < c->learner_count; i++) {
        if (c->learners[i] == id)
            return true;
    }
    return raft_config_is_voter(c, id);
}

/* Within bounds, no id 0, no id twice. */
bool raft__config_valid(const struct raft_config *c)
{
    raft_id all[RAFT_MEMBERS_MAX];
    uint32_t count = 0;

    if (c->voter_count > RAFT_VOTERS_MAX || c->learner_count > RAFT_LEARNERS_MAX)
        return false;
    for (uint32_t i = 0; i < c->voter_count; i++) {
        all[count++] = c->voters[i];
    }
    for (uint32_t i = 0; i < c->learner_count; i++) {
        all[count++] = c->learners[i];
    }
    for (uint32_t i = 0; i < count; i++) {
        if (all[i] == 0)
            return false;
        for (uint32_t j = 0; j < i; j++) {
            if (all[j] == all[i])
                return false;
        }
    }
    return true;
}

static uint32_t member_count(const struct raft_config *c)
{
    return c->voter_count + c->learner_count;
}

/* One id added (as voter or learner), one removed, or one learner made a
 * voter; nothing else differs. */
bool raft__config_is_one_step(const struct raft_config *from, const struct raft_config *to)
{
    uint32_t changed = 0;

    if (!raft__config_valid(to))
        return false;
    for (uint32_t i = 0; i < from->voter_count; i++) {
        raft_id id = from->voters[i];
        changed += !raft_config_is_voter(to, id); /* removed, or demoted */
    }
    for (uint32_t i = 0; i < from->learner_count; i++) {
        raft_id id = from->learners[i];
        changed += !raft_config_has(to, id); /* removed */
    }
    for (uint32_t i = 0; i < to->voter_count; i++) {
        changed += !raft_config_is_voter(from, to->voters[i]); /* added or promoted */
    }
    for (uint32_t i = 0; i < to->learner_count; i++) {
        raft_id id = to->learners[i];
        changed += !raft_config_has(from, id) || raft_config_is_voter(from, id);
    }
    /* a promotion counts once on each side of the comparison above only as
     * "added voter"; a demotion counts twice and is refused */
    return changed == 1 && member_count(to) > 0 && to->voter_count > 0;
}

uint32_t raft__quorum(const struct raft_config *c)
{
    return c->voter_count / 2 + 1;
}

const struct raft_config *raft__config(const struct raft_node *n)
{
    RAFT_ASSERT(n->config_count > 0);
    return &n->configs[n->config_count - 1].config;
}

const struct raft_config *raft_config_of(const struct raft_node *n)
{
    return raft__config(n);
}

raft_index raft_config_index(const struct raft_node *n)
{
    return n->configs[n->config_count - 1].index;
}

const struct raft_config *raft__config_at(const struct raft_node *n, raft_index index)
{
    for (uint32_t i = n->config_count; i > 0; i--) {
        if (n->configs[i - 1].index <= index)
            return &n->configs[i - 1].config;
    }
    return &n->configs[0].config;
}

int raft__config_push(struct raft_node *n, raft_index index, const struct raft_config *c)
{
    int rc = raft__grow((void **)&n->configs, &n->config_cap, n->config_count + 1,
                        sizeof(*n->configs));
    if (rc != 0)
        return rc;
    RAFT_ASSERT(n->config_count == 0 || n->configs[n->config_count - 1].index < index);
    n->configs[n->config_count++] = (struct raft__config_at){.index = index, .config = *c};
    return 0;
}

void raft__config_truncate(struct raft_node *n, raft_index from)
{
    while (n->config_count > 1 && n->configs[n->config_count - 1].index >= from) {
        n->config_count--;
    }
}

/* Drop history no truncation can reach again: keep the config in effect at
 * upto and everything after. */
void raft__config_compact(struct raft_node *n, raft_index upto)
{
    uint32_t keep_from = 0;

    for (uint32_t i = 0; i < n->config_count; i++) {
        if (n->configs[i].index <= upto)
            keep_from = i;
    }
    if (keep_from > 0) {
        memmove(n->configs, n->configs + keep_from,
                (n->config_count - keep_from) * sizeof(*n->configs));
        n->config_count -= keep_from;
    }
}

struct raft__progress *raft__peer(struct raft_node *n, raft_id id)
{
    for (uint32_t i = 0; i < n->peer_count; i++) {
        if (n->peers[i].id == id)
            return &n->peers[i];
    }
    return NULL;
}

/* Make the leader's peers the members of the config in effect, keeping
 * the progress of those that stay. */
int raft__peers_sync(struct raft_node *n)
{
    const struct raft_config *c = raft__config(n);
    struct raft__progress *fresh = raft__calloc(RAFT_MEMBERS_MAX, sizeof(*fresh));
    uint32_t count = 0;

    if (fresh == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < member_count(c); i++) {
        raft_id id = i < c->voter_count ? c->voters[i] : c->learners[i - c->voter_count];
        if (id == n->id)
            continue;
        struct raft__progress *old = raft__peer(n, id);
        if (old != NULL)
            fresh[count] = *old;
        else
            raft__pr_reset(&fresh[count], id, raft__log_last(&n->log));
        count++;
    }
    raft_free(n->peers);
    n->peers = fresh;
    n->peer_count = count;
    n->peer_cap = RAFT_MEMBERS_MAX;
    return 0;
}
