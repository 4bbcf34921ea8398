/* meta/retry.c - the retry table: a command a client sends again (after a
 * timeout, a leader change) is applied once (Raft dissertation §6.3).
 *
 * Each client numbers its commands (seq) and says below which number it has
 * seen every answer (ack_below). The shard keeps, per client, the results of
 * the commands not yet acknowledged; a command whose seq is among them gets
 * its first result back instead of running again. Bounded: at most
 * META_CLIENTS_MAX clients and META_CLIENT_REPLIES_MAX unacknowledged results
 * each (-EAGAIN past that: the client must wait for answers). A client silent
 * for META_CLIENT_IDLE_NS of command time may be forgotten to make room, so
 * replicas forget the same clients at the same command.
 *
 * The table is part of the state: hashed, checkpointed (checkpoint.c).
 * Thread: none; one thread uses a shard at a time. */
#include <stdlib.h>
#include <string.h>

#include "shard.h"

/* Binary search: the client's index, or where it would go. */
static uint32_t client_pos(const struct meta_shard *s, uint64_t id, bool *is_found)
{
    uint32_t lo = 0;
    uint32_t hi = s->client_count;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->clients[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *is_found = lo < s->client_count && s->clients[lo].id == id;
    return lo;
}

int meta__retry_check(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r,
                      int *rc)
{
    bool is_found;

    if (cmd->client_id == 0)
        return 0;
    if (cmd->seq == 0 || cmd->ack_below > cmd->seq) {
        *rc = -EINVAL; /* a malformed number is refused before anything else */
        return 1;
    }
    uint32_t at = client_pos(s, cmd->client_id, &is_found);
    if (!is_found)
        return 0;
    const struct meta__client *c = &s->clients[at];
    if (cmd->seq < c->ack_below) {
        *rc = -ESTALE;
        return 1;
    }
    for (uint32_t i = 0; i < c->reply_count; i++) {
        if (c->replies[i].seq == cmd->seq) {
            *rc = c->replies[i].rc;
            r->attr = c->replies[i].attr;
            return 1;
        }
    }
    return 0;
}

bool meta_shard_is_answered(const struct meta_shard *s, const struct meta_cmd *cmd)
{
    bool is_found;

    if (cmd->client_id == 0 || cmd->seq == 0)
        return false;
    uint32_t at = client_pos(s, cmd->client_id, &is_found);
    if (!is_found)
        return false;
    const struct meta__client *c = &s->clients[at];
    for (uint32_t i = 0; i < c->reply_count; i++) {
        if (c->replies[i].seq == cmd->seq)
            return true;
    }
    return false;
}

/* The client idle longest, if it has been idle META_CLIENT_IDLE_NS by now. */
static uint32_t client_evictable(const struct meta_shard *s, int64_t now)
{
    uint32_t oldest = META_NIL;

    for (uint32_t i = 0; i < s->client_count; i++) {
        if (oldest == META_NIL || s->clients[i].last_ns < s->clients[oldest].last_ns)
            oldest = i;
    }
    if (oldest != META_NIL && now - s->clients[oldest].last_ns >= META_CLIENT_IDLE_NS)
        return oldest;
    return META_NIL;
}

int meta__retry_reserve(struct meta_shard *s, const struct meta_cmd *cmd)
{
    bool is_found;

    if (cmd->client_id == 0)
        return 0;
    AR_ASSERT(cmd->seq > 0 && cmd->ack_below <= cmd->seq); /* meta__retry_check() */
    uint32_t at = client_pos(s, cmd->client_id, &is_found);
    if (is_found) {
        const struct meta__client *c = &s->clients[at];
        uint64_t below = cmd->ack_below > c->ack_below ? cmd->ack_below : c->ack_below;
        uint32_t kept = 0;
        for (uint32_t i = 0; i < c->reply_count; i++) {
            kept += c->replies[i].seq >= below;
        }
        return kept < META_CLIENT_REPLIES_MAX ? 0 : -EAGAIN;
    }
    if (s->client_count == META_CLIENTS_MAX)
        return client_evictable(s, cmd->now_ns) != META_NIL ? 0 : -EAGAIN;
    if (s->client_count == s->client_cap) {
        uint32_t cap = s->client_cap < 16 ? 16 : s->client_cap * 2;
        cap = cap > META_CLIENTS_MAX ? META_CLIENTS_MAX : cap;
        struct meta__client *bigger = ar_realloc(s->clients, cap * sizeof(*bigger));
        if (bigger == NULL)
            return -ENOMEM;
        s->clients = bigger;
        s->client_cap = cap;
    }
    return 0;
}

void meta__retry_record(struct meta_shard *s, const struct meta_cmd *cmd, int rc,
                        const struct meta_reply *r)
{
    bool is_found;

    if (cmd->client_id == 0)
        return;
    uint32_t at = client_pos(s, cmd->client_id, &is_found);
    if (!is_found) {
        if (s->client_count == META_CLIENTS_MAX) {
            uint32_t gone = client_evictable(s, cmd->now_ns);
            AR_ASSERT(gone != META_NIL); /* meta__retry_reserve() saw it */
            memmove(&s->clients[gone], &s->clients[gone + 1],
                    (s->client_count - gone - 1) * sizeof(s->clients[0]));
            s->client_count--;
            at = client_pos(s, cmd->client_id, &is_found);
        }
        AR_ASSERT(s->client_count < s->client_cap);
        memmove(&s->clients[at + 1], &s->clients[at],
                (s->client_count - at) * sizeof(s->clients[0]));
        memset(&s->clients[at], 0, sizeof(s->clients[0]));
        s->clients[at].id = cmd->client_id;
        s->client_count++;
    }
    struct meta__client *c = &s->clients[at];
    if (cmd->ack_below > c->ack_below)
        c->ack_below = cmd->ack_below;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < c->reply_count; i++) {
        if (c->replies[i].seq >= c->ack_below)
            c->replies[kept++] = c->replies[i];
    }
    AR_ASSERT(kept < META_CLIENT_REPLIES_MAX);
    c->replies[kept] = (struct meta__reply){.seq = cmd->seq, .rc = rc};
    if (rc == 0)
        c->replies[kept].attr = r->attr;
    c->reply_count = kept + 1;
    c->last_ns = cmd->now_ns;
    s->is_clients_dirty = true;
}
