/* meta/session.c - which sessions hold which inodes open, so that a file
 * unlinked while open lives on until its last holder lets go (POSIX).
 *
 * A hold is (session, inode, count), kept in one vector sorted by session
 * then inode, bounded by META_HOLDS_MAX (ENFILE past it); `held` counts the
 * opens of each node over all sessions. When an inode loses its last name
 * while held, it stays as an orphan: nlink 0, nameless, still found by its
 * number. Its last release, or the close of the last session holding it,
 * frees it. The leader ends a session whose heartbeats stop with
 * META_OP_SESSION_CLOSE, so expiry is a command like any other.
 *
 * The holds are state: hashed (shard.c) and checkpointed (checkpoint.c).
 * Thread: none; one thread uses a shard at a time. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shard.h"

static int hold_cmp_key(const struct meta__hold *h, uint64_t session, uint64_t ino)
{
    if (h->session != session)
        return h->session < session ? -1 : 1;
    if (h->ino != ino)
        return h->ino < ino ? -1 : 1;
    return 0;
}

/* Index of (session, ino), or where it would go. */
static uint32_t hold_pos(const struct meta_shard *s, uint64_t session, uint64_t ino, bool *found)
{
    uint32_t lo = 0;
    uint32_t hi = s->hold_count;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (hold_cmp_key(&s->holds[mid], session, ino) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < s->hold_count && hold_cmp_key(&s->holds[lo], session, ino) == 0;
    return lo;
}

uint32_t meta_shard_sessions(const struct meta_shard *s, uint64_t *out, uint32_t cap)
{
    uint32_t count = 0;

    AR_ASSERT(s != NULL && (cap == 0 || out != NULL));
    for (uint32_t i = 0; i < s->hold_count && count < cap; i++) {
        if (i == 0 || s->holds[i].session != s->holds[i - 1].session)
            out[count++] = s->holds[i].session;
    }
    return count;
}

bool meta__is_held(const struct meta_shard *s, uint32_t node)
{
    uint64_t n;

    return meta__map_get(&s->held, node, &n) && n > 0;
}

/* Free an orphan whose last hold went. */
static void orphan_free(struct meta_shard *s, uint32_t node)
{
    meta__index_ino(s, node, false);
    meta__inode_free(s, node);
}

/* Drop `count` opens of node; free it if it was an orphan and is no longer held. */
static void held_drop(struct meta_shard *s, uint32_t node, uint32_t count)
{
    uint64_t n = 0;

    meta__map_get(&s->held, node, &n);
    AR_ASSERT(n >= count);
    if (n == count)
        meta__map_del(&s->held, node);
    else
        meta__map_replace(&s->held, node, n - count);
    if (n == count && meta__node_nlink(meta__node_at(s, node)) == 0)
        orphan_free(s, node);
}

int meta__hold_reserve(struct meta_shard *s, uint64_t session, uint64_t ino)
{
    bool found;
    uint32_t at = hold_pos(s, session, ino, &found);

    if (found && s->holds[at].count == META_HOLD_COUNT_MAX)
        return -EMFILE;
    if (!found && s->hold_count == META_HOLDS_MAX)
        return -ENFILE;
    if (!found && s->hold_count == s->hold_cap) {
        uint32_t cap = s->hold_cap < 64 ? 64 : s->hold_cap * 2;
        struct meta__hold *bigger = ar_realloc(s->holds, cap * sizeof(*bigger));
        if (bigger == NULL)
            return -ENOMEM;
        s->holds = bigger;
        s->hold_cap = cap;
    }
    return meta__map_reserve(&s->held, 1);
}

void meta__hold_take(struct meta_shard *s, uint64_t session, uint64_t ino, uint32_t node)
{
    bool found;
    uint32_t at = hold_pos(s, session, ino, &found);
    uint64_t n = 0;

    meta__map_get(&s->held, node, &n);
    int rc = meta__map_put(&s->held, node, n + 1);
    AR_ASSERT(rc == 0); /* reserved */
    if (found) {
        s->holds[at].count++;
    } else {
        memmove(&s->holds[at + 1], &s->holds[at], (s->hold_count - at) * sizeof(*s->holds));
        s->holds[at] = (struct meta__hold){.session = session, .ino = ino, .count = 1};
        s->hold_count++;
    }
    s->is_holds_dirty = true;
}

static int op_open(struct meta_shard *s, const struct meta_cmd *cmd, uint32_t node,
                   struct meta_reply *r)
{
    bool is_holder;
    hold_pos(s, cmd->session, cmd->ino, &is_holder);
    /* an orphan is opened again only by a session that holds it (a
     * descriptor it has: /proc/self/fd, a path walk that raced the removal) */
    if (meta__node_nlink(meta__node_at(s, node)) == 0 && !is_holder)
        return -ENOENT;
    int rc = meta__hold_reserve(s, cmd->session, cmd->ino);
    if (rc != 0)
        return rc;
    meta__hold_take(s, cmd->session, cmd->ino, node);
    meta__attr_fill(s, node, &r->attr);
    return 0;
}

static int op_release(struct meta_shard *s, const struct meta_cmd *cmd, uint32_t node)
{
    bool found;
    uint32_t at = hold_pos(s, cmd->session, cmd->ino, &found);

    if (!found)
        return -EBADF; /* this session does not hold it */
    if (--s->holds[at].count == 0) {
        memmove(&s->holds[at], &s->holds[at + 1], (s->hold_count - at - 1) * sizeof(*s->holds));
        s->hold_count--;
    }
    s->is_holds_dirty = true;
    held_drop(s, node, 1);
    return 0;
}

static int op_session_close(struct meta_shard *s, const struct meta_cmd *cmd)
{
    bool found;
    uint32_t from = hold_pos(s, cmd->session, 0, &found);
    uint32_t to = from;

    while (to < s->hold_count && s->holds[to].session == cmd->session) {
        to++;
    }
    /* bounded by the session's holds */
    for (uint32_t i = from; i < to; i++) {
        uint32_t node = meta__find_ino(s, s->holds[i].ino);
        AR_ASSERT(node != META_NIL); /* a held inode is never freed */
        held_drop(s, node, s->holds[i].count);
    }
    if (to == from)
        return 0; /* the session held nothing (the vector may not even exist) */
    memmove(&s->holds[from], &s->holds[to], (s->hold_count - to) * sizeof(*s->holds));
    s->hold_count -= to - from;
    s->is_holds_dirty = true;
    return 0;
}

int meta__session_apply(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    if (cmd->session == 0)
        return -EINVAL;
    if (cmd->op == META_OP_SESSION_CLOSE)
        return op_session_close(s, cmd);
    uint32_t node = meta__find_ino(s, cmd->ino);
    if (node == META_NIL)
        return -ENOENT;
    return cmd->op == META_OP_OPEN ? op_open(s, cmd, node, r) : op_release(s, cmd, node);
}
