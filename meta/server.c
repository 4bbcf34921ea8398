/* meta/server.c - the metadata server: a replica of a shard group served
 * over the network (design §2-§4; issue "metadata server").
 *
 * One process, one libuv loop: one Raft transport and one 10 ms tick for
 * its groups, a client listener, and per group a raft node, its segment log,
 * its shard state machine and LMDB checkpoint. It hosts shard 0, the shard
 * map (members, epochs, leases), and shard 1, the shard that owns "/".
 *
 * A group's turn (after every poll): take the node's ready; send a leader's
 * early messages; persist (append + one fdatasync) on the thread pool, or on
 * the loop in a process that leads no group; then send the rest, apply the
 * committed entries to the shard, answer the clients whose proposals they
 * were and the reads now applied, advance.
 *
 * Clients: frames of meta/rpc.proto. A mutation at the leader gets the
 * leader's time and, if it makes an inode or link, a number above every
 * one used (the leader takes numbers only once it has applied its whole log
 * up to its own first entry); it is proposed and answered after commit and
 * apply. A query is answered after a ReadIndex round (or within the lease)
 * once applied that far; a follower read is answered from the local state.
 * A replica that does not lead answers -AR_ENOTLEADER with the leader's
 * client address.
 *
 * The shard is checkpointed behind: every CKPT_EVERY_MS its changes are
 * collected on the loop and committed to LMDB on the thread pool; then the
 * log is compacted to that index. A restart loads the checkpoint and
 * replays the log after it.
 * Thread: the loop's; the thread pool for the log and LMDB. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "archive.h"
#include "lease.h"
#include "limits.h"
#include "meta.h"
#include "objstore.h"
#include "raft.h"

#define TICK_MS          10u
/* A stall of the loop (a SIGSTOP, a slow disk) delays the tick timer, which
 * then fires once, and the loop reads what waited in its sockets before
 * it: ticks counted by the timer alone would run behind the clock, and a
 * lease counted in them outlast the real one. So the ticks a stall missed
 * are made up (at most this many: past two election timeouts more changes
 * nothing) before any message or request is handled, as well as by the
 * timer. */
#define TICKS_CATCH_UP_MAX 40u
#define CKPT_EVERY_MS    1000u    /* an LMDB commit (its disk syncs slow the log's) */
#define CKPT_DIRTY_MAX   1024u    /* collect at this many changes: a collect blocks the
                                   * loop ~1 us a change, so keep each one short */
#define CKPT_BATCHES_MAX 256u     /* collected batches waiting for the next commit */
#define COMPACT_EVERY_MS 1000u    /* log compaction (a snapshot file and its syncs) */
#define LOG_KEEP_DEFAULT 10000u   /* entries kept in memory below a checkpoint */
#define CHUNK_BYTES      (1u << 20) /* a snapshot chunk */
#define WANT_QUIET_MS    3000u    /* a transfer is active this long after a want */
#define SESSIONS_MAX     65536u   /* live sessions a leader tracks */
#define CLOSED_KEPT      4096u    /* closed sessions remembered, to answer -ESTALE */
#define SESSION_TIMEOUT_DEFAULT_MS 30000u
#define CONN_RX_MAX      (META_FRAME_BYTES_MAX + 4u)
#define CONNS_MAX        1024u
#define CONN_OUT_MAX     (64u << 20) /* responses a client has not read: past it, close */
#define CONN_OUT_PAUSE   (16u << 20) /* past it, read no more requests ... */
#define CONN_OUT_RESUME  (4u << 20)  /* ... until under this */
#define PENDING_MAX      65536u   /* proposals and reads waiting at a leader */
#define GROUP_COUNT      2u       /* shard 0 (the map) and shard 1 ("/") */
/* background commands (a restore's RESTORE_FILES), see bg_admit() */
#define BG_WAIT_MAX      256u     /* waiting at a leader; past it, -EAGAIN */
#define BG_FLIGHT_MAX    8u       /* in the log at once when nothing else runs */
#define FG_RECENT_MS     100u     /* other requests this recent: the server is busy */
#define BG_WAIT_LIMIT_MS 1000u    /* a background command waits no longer than this */
#define LEASE_INOS_MAX   (1u << 20) /* inodes under lease in each generation, a group */
#define DISK_CHECK_MS    100u     /* how often the data directory's free space is read */
#define DISK_RESERVE_DEFAULT (256ull << 20)
#define PEER_DISK_LOW    1u       /* raft_msg.host_flags: the sender's disk is under its reserve */
#define PEER_NEWS_MS     10000u   /* a peer's news stands this long after its last message */
#define PEERS_HEARD_MAX  16u      /* members and learners, past and present */

struct conn;

/* A client waiting for a proposal to commit, or for a read index. */
struct pending {
    raft_index index;     /* proposals: the entry; reads: 0 until the index comes */
    raft_term term;
    uint64_t read_id;     /* reads: raft_read_index()'s id */
    uint32_t conn_slot;
    uint64_t conn_gen;
    uint64_t req_id;
    uint32_t data_cap;
    enum meta_op op;
    uint8_t *frame;       /* reads: the request, decoded again when served */
    size_t frame_len;
    uint64_t proposed_ms; /* background proposals: when they went into the log */
    bool wants_lease;     /* proposals: the reply's inode under lease */
};

/* A background command waiting to be proposed, as it came. */
struct bg_wait {
    uint32_t conn_slot;
    uint64_t conn_gen;
    uint64_t req_id;
    uint8_t *frame;
    size_t frame_len;
    uint64_t since_ms;
};

struct group {
    struct meta_server *srv;
    uint32_t shard;
    char dir[600];
    struct raft_node *node;
    bool is_stalled;             /* a stall outlasted the ticks made up for it: no
                                  * follower read until the leader is heard again */
    struct raft_seglog *log;
    struct meta_shard *state;
    struct meta_checkpoint *ckpt;
    struct archiver *arch;       /* the point-in-time archive's tail and jobs */
    uv_work_t persist;
    struct raft_ready rd;
    bool is_persisting;
    uint32_t msgs_sent;          /* of rd.msgs, those sent */
    int persist_rc;
    char persist_err[RAFT_ERRMSG_MAX];
    /* a checkpoint is durable up to compact.to: compact the log. The
     * persist's copy (read and cleared on the thread pool while
     * is_persisting), and the loop's next, taken when a ready is */
    struct compaction {
        raft_index to;           /* 0: none */
        raft_term term;
        uint64_t hlc;
        struct raft_config config;
    } compact, compact_next;
    uv_work_t ckpt_work;
    struct meta_ckpt_batch *ckpt_waiting[CKPT_BATCHES_MAX]; /* collected, in order */
    uint32_t ckpt_waiting_count;
    struct meta_ckpt_batch *ckpt_batches[CKPT_BATCHES_MAX]; /* being committed */
    uint32_t ckpt_batch_count;
    bool is_checkpointing;
    int ckpt_rc;
    char ckpt_err[AR_ERRMSG_MAX];
    uint64_t last_ckpt_ms;
    uint64_t last_compact_ms;
    raft_term leader_term;       /* the term ready_from was set in */
    raft_index ready_from;       /* a leader takes numbers once applied here */
    uint64_t next_ino;
    int64_t last_now_ns;
    struct pending *pending;
    uint32_t pending_count;
    uint32_t pending_cap;
    uint64_t next_read_id;
    /* background commands (leader): a FIFO ring waiting, and those in the log */
    struct bg_wait bg_wait[BG_WAIT_MAX];
    uint32_t bg_head;
    uint32_t bg_count;
    uint32_t bg_flight;
    uint64_t bg_next_ms;         /* while busy: no background proposal before this */
    uint64_t bg_done;            /* proposed since start */
    uint64_t bg_yielded;         /* of them, those that waited for live traffic */
    uint32_t bg_busy_peak;       /* most in the log at once while busy */
    /* snapshots out (leader): an export of the checkpoint, served in chunks */
    bool is_exporting;
    uv_work_t export_work;
    int export_rc;
    raft_index export_index;
    char export_err[AR_ERRMSG_MAX];
    int out_fd;                  /* -1: none */
    raft_index out_index;
    uint64_t out_size;
    uint64_t last_want_ms;
    raft_index chore_index;      /* a leader's own command in flight (map_sync, root_stamp) */
    /* sessions (leader): when each was last heard from; closed ones, to refuse */
    uint64_t *session_ids;
    uint64_t *session_seen_ms;
    uint32_t session_count;
    uint64_t closed[CLOSED_KEPT];
    uint32_t closed_next;
    raft_term session_term;      /* the term the table was built in */
    uint32_t session_counter;
    uint64_t last_expiry_ms;
    /* attribute leases (leader): promises to tell connections of changes */
    struct lease_table *leases;
    uint64_t lease_epoch;        /* names the table to clients; moves at every reset */
    raft_term lease_term;        /* the term the table belongs to */
    uint64_t lease_rotated_ms;
    uint64_t told_until_ms;      /* a resend before this may find its first answer held */
    /* snapshots in (follower) */
    int in_fd;
    struct meta_shard *in_state; /* loaded from a finished snapshot, not yet swapped in */
    bool is_in_failed;
};

struct conn {
    struct meta_server *srv;
    uv_tcp_t tcp;
    uint32_t slot;
    uint64_t gen;
    uint8_t *rx;
    size_t used;
    size_t cap;
    uint8_t *out;         /* responses of this loop turn, written at its end */
    size_t out_len;
    size_t out_cap;
    bool is_dirty;        /* in the server's dirty list */
    bool is_closing;
    bool is_paused;       /* reads stopped: its client reads its responses too slowly */
    bool is_take_due;     /* resumed: the requests in rx wait for the next turn (takes_due) */
    int32_t holder;       /* its number in the lease tables, -1 none yet */
    /* change notices not yet sent (written before any later response); one
     * with empty lists tells of a new epoch: the promises of the old are void */
    bool is_notice_due;
    uint32_t notice_shard;
    uint64_t notice_lease;
    uint32_t changed_count;
    uint32_t renamed_count;
    uint64_t changed[META_NOTICE_INOS_MAX];
    uint64_t renamed[META_NOTICE_INOS_MAX];
    uint64_t notices_sent;  /* the notices written, numbered from 1 */
    uint64_t notices_acked; /* the last one its client said it took in */
};

/* A connection told of a change by a notice (the notice's number on it). */
struct told {
    uint32_t slot;
    uint64_t gen;
    uint64_t notice;
};

/* An answer held until the others told of its change acked, or until_ms
 * (META_NOTICE_WAIT_MS): close-to-open for clients that act on leases. */
struct held {
    uint32_t slot;      /* the asking connection */
    uint64_t gen;
    uint64_t until_ms;  /* 0 until the notices are written (held_stamp) */
    bool is_waiting_out; /* until until_ms, whatever the acks */
    size_t len;
    uint8_t *frame;     /* the encoded answer, after told[] */
    uint32_t told_count;
    struct told told[];
};

struct meta_server {
    uv_loop_t *loop;
    struct meta_server_config cfg;
    struct raft_transport *transport;
    uv_tcp_t listener;
    uv_timer_t tick;
    uint64_t ticked_ms;           /* the monotonic time the groups' ticks stand for
                                   * (0 until the groups tick) */
    uv_check_t check;
    uv_prepare_t prepare;
    uint32_t dirty[CONNS_MAX];    /* connections with responses to write */
    uint32_t dirty_count;
    uint32_t take_due[CONNS_MAX]; /* resumed connections with requests read */
    uint32_t take_due_count;
    struct group groups[GROUP_COUNT]; /* by shard id */
    struct obj_store *store;      /* the volume's store, once the map names it (archives) */
    uint64_t store_retry_ms;
    char store_failure[META_ARCHIVE_ERROR_BYTES]; /* why the store did not open, "" */
    struct conn *conns[CONNS_MAX];
    uint64_t conn_gen;
    uint32_t open_handles;
    int lock_fd;                  /* flock on DATA/lock: one server a data directory */
    bool is_stopping;
    uint8_t *tx;                  /* one response being encoded */
    uint8_t *enc;                 /* one command being encoded for the log */
    struct meta_map map_next;     /* map_sync(): the map it proposes */
    uint8_t map_bytes[META_MAP_BYTES_ENC_MAX]; /* and its bytes */
    struct meta_cmd_buf *cmd;     /* scratch: a decoded command */
    struct meta_reply reply;      /* scratch: what apply or read fills */
    struct meta_dirent *entries;
    struct meta_slice *slices;
    uint8_t *data;
    uint64_t fg_last_ms;          /* when a request other than background work came */
    uint64_t disk_free;           /* the data directory's disk: bytes free to us ... */
    uint64_t disk_checked_ms;     /* ... as read then */
    bool is_disk_low;             /* below the reserve: growth refused (disk_check()) */
    uint64_t low_peer;            /* a peer whose disk is under its reserve, heard within
                                   * PEER_NEWS_MS: growth refused too; 0 none */
    struct { raft_id id; uint64_t heard_ms; bool is_disk_low; } peers[PEERS_HEARD_MAX];
    struct { uint32_t slot; uint64_t gen; } holders[LEASE_HOLDERS_MAX]; /* gen 0: free */
    struct told told[LEASE_HOLDERS_MAX]; /* the connections the last apply told */
    uint32_t told_count;
    bool is_resend;                     /* the entry applying was applied before */
    struct held **held;                 /* answers waiting for acks, in order */
    uint32_t held_count;
    uint32_t held_cap;
    uint64_t held_timed_out;            /* answers whose acks did not come in time */
    uint64_t held_warned_ms;
};

static uint64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

/* ---- answering clients ------------------------------------------------------------ */

static struct conn *conn_at(struct meta_server *s, uint32_t slot, uint64_t gen)
{
    struct conn *c = slot < CONNS_MAX ? s->conns[slot] : NULL;

    return c != NULL && c->gen == gen && !c->is_closing ? c : NULL;
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void conn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void conn_take(struct conn *c);
static void conn_close(struct conn *c);
static void notice_flush(struct conn *c);

/* Responses c's client has not read yet: libuv's queue and this turn's. */
static size_t conn_backlog(struct conn *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + c->out_len;
}

/* Bounded memory for a client that does not read: past CONN_OUT_PAUSE
 * its requests wait in the socket (TCP holds its sender back) and in
 * c->rx; a backlog that grows on anyway (change notices) closes it. */
static void conn_pause_check(struct conn *c)
{
    size_t backlog = conn_backlog(c);

    if (c->is_closing)
        return;
    if (backlog > CONN_OUT_MAX) {
        ar_log(AR_LOG_WARN, "a client does not read its responses: connection closed");
        conn_close(c);
    } else if (backlog > CONN_OUT_PAUSE && !c->is_paused) {
        c->is_paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

/* A paused connection whose client has read enough takes requests again:
 * from the socket, and at the next turn those it had read (takes_due). */
static void conn_resume_check(struct conn *c)
{
    struct meta_server *s = c->srv;

    if (!c->is_paused || c->is_closing || conn_backlog(c) >= CONN_OUT_RESUME)
        return;
    c->is_paused = false;
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) != 0) {
        conn_close(c);
    } else if (c->used >= 4 && !c->is_take_due) {
        c->is_take_due = true;
        s->take_due[s->take_due_count++] = c->slot; /* a slot is due at most once */
    }
}

static void takes_due(struct meta_server *s)
{
    /* bounded: a connection is listed once; conn_take adds none */
    for (uint32_t i = 0; i < s->take_due_count; i++) {
        struct conn *c = s->conns[s->take_due[i]];
        if (c != NULL && c->is_take_due) {
            c->is_take_due = false;
            conn_take(c);
        }
    }
    s->take_due_count = 0;
}

/* A failed write: the read side sees the connection go. */
static void write_done(uv_write_t *w, int status)
{
    struct conn *c = w->handle->data;

    ar_free(w->data);
    ar_free(w);
    if (status == 0)
        conn_resume_check(c);
}

/* Write what the loop turn queued for c: at once if the socket takes it
 * (the common case), the rest through libuv's queue, which keeps order. */
static void conn_flush(struct conn *c)
{
    c->is_dirty = false;
    if (c->is_closing || c->out_len == 0)
        return;
    uv_buf_t buf = uv_buf_init((char *)c->out, (unsigned)c->out_len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    size_t done = n > 0 ? (size_t)n : 0;
    if (n < 0 && n != UV_EAGAIN) {
        c->out_len = 0;
        conn_close(c); /* lost bytes (a change notice among them): the client starts over */
        return;
    }
    if (done < c->out_len) {
        uv_write_t *w = ar_malloc(sizeof(*w));
        uint8_t *rest = ar_malloc(c->out_len - done);
        if (w == NULL || rest == NULL) {
            ar_free(w);
            ar_free(rest);
            conn_close(c); /* a response cut in the middle: the client must start over */
            return;
        }
        memcpy(rest, c->out + done, c->out_len - done);
        w->data = rest;
        buf = uv_buf_init((char *)rest, (unsigned)(c->out_len - done));
        if (uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, write_done) != 0) {
            ar_free(rest);
            ar_free(w);
            conn_close(c);
            c->out_len = 0;
            return;
        }
    }
    c->out_len = 0;
    conn_pause_check(c);
    conn_resume_check(c); /* written whole: no write_done will come */
}

static void held_stamp(struct meta_server *s);

static void flush_all(struct meta_server *s)
{
    for (uint32_t i = 0; i < s->dirty_count; i++) {
        struct conn *c = s->conns[s->dirty[i]];
        if (c != NULL) {
            notice_flush(c);
            conn_flush(c);
        }
    }
    s->dirty_count = 0;
    held_stamp(s); /* the notices the held answers wait on are written */
}

/* c has something to write at the end of the loop turn (flush_all). */
static void conn_mark(struct conn *c)
{
    struct meta_server *s = c->srv;

    if (!c->is_dirty) {
        c->is_dirty = true;
        s->dirty[s->dirty_count++] = c->slot; /* a slot is dirty at most once */
    }
}

/* Queue a frame for c; written once the loop turn is done (flush_all), so
 * that the responses of a turn to one connection take one system call. */
static void conn_send(struct conn *c, const uint8_t *frame, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap < 65536 ? 65536 : c->out_cap;
        while (cap < c->out_len + len) {
            cap *= 2;
        }
        uint8_t *p = cap <= CONN_OUT_MAX ? ar_realloc(c->out, cap) : NULL;
        if (p == NULL) {
            ar_log(AR_LOG_WARN, "a client does not read its responses: connection closed");
            conn_close(c);
            return;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, frame, len);
    c->out_len += len;
    conn_mark(c);
}

static void respond(struct meta_server *s, struct conn *c, struct meta_response *resp,
                    enum meta_op op)
{
    size_t len;

    notice_flush(c); /* a change before this response is told before it */
    if (!c->is_closing && meta_response_encode(resp, op, s->tx, CONN_RX_MAX, &len) == 0)
        conn_send(c, s->tx, len);
}

static uint64_t epoch_of(const struct group *g)
{
    return meta_shard_self(g->state)->epoch;
}

static struct group *group_of(struct meta_server *s, uint64_t shard)
{
    return shard < GROUP_COUNT ? &s->groups[shard] : NULL;
}

/* An error; epoch 0: the reply speaks for no shard. */
static void respond_rc(struct meta_server *s, struct conn *c, uint64_t id, int rc)
{
    struct meta_response resp = {.id = id, .rc = rc};

    respond(s, c, &resp, META_OP_ACCESS);
}

/* A redirect to the leader, if known. */
static void respond_not_leader(struct meta_server *s, struct conn *c, uint64_t id,
                               struct group *g)
{
    struct meta_response resp = {.id = id, .rc = -AR_ENOTLEADER, .epoch = epoch_of(g)};
    raft_id leader = raft_leader(g->node);

    resp.leader = leader;
    for (uint32_t i = 0; i < s->cfg.node_count; i++) {
        if (s->cfg.nodes[i].id == leader)
            snprintf(resp.leader_addr, sizeof(resp.leader_addr), "%s",
                     s->cfg.nodes[i].client_addr);
    }
    respond(s, c, &resp, META_OP_ACCESS);
}

static void reply_reset(struct meta_server *s, uint32_t data_cap)
{
    memset(&s->reply, 0, sizeof(s->reply));
    s->reply.entries = s->entries;
    s->reply.slices = s->slices;
    s->reply.slice_cap = META_READ_SLICES_MAX;
    s->reply.data = s->data;
    s->reply.data_cap = data_cap;
}

/* ---- pending requests ------------------------------------------------------------------ */

/* Room for one more pending request: -EAGAIN at the bound, -ENOMEM. */
static int pending_reserve(struct group *g)
{
    if (g->pending_count >= PENDING_MAX)
        return -EAGAIN;
    if (g->pending_count == g->pending_cap) {
        uint32_t cap = g->pending_cap < 64 ? 64 : g->pending_cap * 2;
        struct pending *v = ar_realloc(g->pending, sizeof(*v) * cap);
        if (v == NULL)
            return -ENOMEM;
        g->pending = v;
        g->pending_cap = cap;
    }
    return 0;
}

static int pending_add(struct group *g, const struct pending *p)
{
    int rc = pending_reserve(g);

    if (rc == 0)
        g->pending[g->pending_count++] = *p;
    return rc;
}

static void pending_drop(struct group *g, uint32_t i)
{
    ar_free(g->pending[i].frame);
    g->pending[i] = g->pending[--g->pending_count];
}

static uint64_t lease_grant_reply(struct group *g, struct conn *c, const struct meta_reply *r);

/* Serve a read whose index is applied: decode it again and read the shard. */
static void serve_read(struct group *g, const struct pending *p)
{
    struct meta_server *s = g->srv;
    struct conn *c = conn_at(s, p->conn_slot, p->conn_gen);
    struct meta_request req;

    if (c == NULL || meta_request_decode(p->frame, p->frame_len, &req, s->cmd) != 0)
        return;
    reply_reset(s, req.data_cap);
    struct meta_response resp = {.id = req.id, .epoch = epoch_of(g)};
    resp.rc = meta_shard_read(g->state, &s->cmd->cmd, &s->reply);
    resp.reply = s->reply;
    if (req.wants_lease && resp.rc == 0)
        resp.lease = lease_grant_reply(g, c, &s->reply);
    respond(s, c, &resp, s->cmd->cmd.op);
}

/* After applies: answer the reads whose index is now applied. */
static void serve_ready_reads(struct group *g)
{
    raft_index applied = raft_applied_index(g->node);

    for (uint32_t i = 0; i < g->pending_count;) {
        struct pending *p = &g->pending[i];
        if (p->frame != NULL && p->index > 0 && p->index <= applied) {
            serve_read(g, p);
            pending_drop(g, i);
            continue;
        }
        i++;
    }
}

/* ---- attribute leases (lease.h) -------------------------------------------------------------
 * Promises live at the leader only, in memory, for the term they were made
 * in; whatever loses them (a new term, a shard that cannot say what an
 * apply changed) moves lease_epoch, which every promise and notice
 * carries: a client holding promises of another epoch drops them. */

/* c's queued change notices, as one frame. */
static void notice_flush(struct conn *c)
{
    struct meta_server *s = c->srv;
    size_t len;

    if (!c->is_notice_due)
        return;
    struct meta_response resp = {.lease = c->notice_lease, .shard = c->notice_shard,
                                 .changed = c->changed, .changed_count = c->changed_count,
                                 .renamed = c->renamed, .renamed_count = c->renamed_count};
    c->changed_count = 0;
    c->renamed_count = 0;
    c->is_notice_due = false;
    resp.notice = ++c->notices_sent;
    if (!c->is_closing && meta_response_encode(&resp, META_OP_ACCESS, s->tx, CONN_RX_MAX, &len) == 0)
        conn_send(c, s->tx, len);
}

/* c is being told of the change being applied: the answer to it waits for
 * c's ack of the notice that carries it (the one due, or the one just
 * written when the lists filled). */
static void told_note(struct meta_server *s, const struct conn *c)
{
    uint64_t notice = c->is_notice_due ? c->notices_sent + 1 : c->notices_sent;

    for (uint32_t i = 0; i < s->told_count; i++) {
        if (s->told[i].slot == c->slot && s->told[i].gen == c->gen) {
            s->told[i].notice = notice;
            return;
        }
    }
    /* a connection holds one holder number: at most LEASE_HOLDERS_MAX */
    if (s->told_count < LEASE_HOLDERS_MAX)
        s->told[s->told_count++] = (struct told){.slot = c->slot, .gen = c->gen, .notice = notice};
}

static void notice_add(struct conn *c, const struct group *g, uint64_t ino, bool is_renamed)
{
    if (c->notice_shard != g->shard || c->notice_lease != g->lease_epoch) {
        notice_flush(c);
        c->notice_shard = g->shard;
        c->notice_lease = g->lease_epoch;
    }
    if (is_renamed)
        c->renamed[c->renamed_count++] = ino;
    else
        c->changed[c->changed_count++] = ino;
    c->is_notice_due = true;
    if (c->renamed_count == META_NOTICE_INOS_MAX || c->changed_count == META_NOTICE_INOS_MAX)
        notice_flush(c);
    told_note(c->srv, c);
    conn_mark(c);
}

/* Every promise of g void: its holders are told at once (a notice of the
 * new epoch), so that none waits out its bound. */
static void lease_reset(struct group *g)
{
    struct meta_server *s = g->srv;

    lease_clear(g->leases);
    g->lease_epoch++;
    for (uint32_t h = 0; h < LEASE_HOLDERS_MAX; h++) {
        struct conn *c = conn_at(s, s->holders[h].slot, s->holders[h].gen);
        if (c == NULL)
            continue;
        notice_flush(c);
        c->notice_shard = g->shard;
        c->notice_lease = g->lease_epoch;
        c->is_notice_due = true;
        told_note(s, c);
        conn_mark(c);
    }
}

/* Whether g may make promises and keep them now: it leads, in the term
 * its table belongs to. */
static bool lease_ready(struct group *g)
{
    raft_term term = raft_term_of(g->node);

    if (g->leases == NULL)
        return false;
    if (raft_role(g->node) != RAFT_LEADER) {
        if (!lease_is_empty(g->leases))
            lease_reset(g);
        return false;
    }
    if (g->lease_term != term) {
        lease_reset(g);
        g->lease_term = term;
    }
    return true;
}

/* A promise to c for the inode of a reply g's leader read or changed (never
 * one answered from the retry table: older than what was told since): the
 * lease epoch, or 0 when none could be made. */
static uint64_t lease_grant_reply(struct group *g, struct conn *c, const struct meta_reply *r)
{
    struct meta_server *s = g->srv;

    /* a shard that cannot say what its applies change could not keep it */
    if (r->attr.ino == 0 || !lease_ready(g) || !meta_shard_tells_changes(g->state))
        return 0;
    for (uint32_t h = 0; c->holder < 0 && h < LEASE_HOLDERS_MAX; h++) {
        /* a number whose connection is gone is free (its promises only
         * bring the next holder a notice too many) */
        if (conn_at(s, s->holders[h].slot, s->holders[h].gen) == NULL) {
            s->holders[h].slot = c->slot;
            s->holders[h].gen = c->gen;
            c->holder = (int32_t)h;
        }
    }
    if (c->holder < 0 || !lease_grant(g->leases, r->attr.ino, (uint32_t)c->holder))
        return 0;
    return g->lease_epoch;
}

/* Commands that cannot take a name away from an inode or give it to another:
 * a notice of their changes leaves the client's cached names standing. */
static bool keeps_names(enum meta_op op)
{
    switch (op) {
    case META_OP_SETATTR:
    case META_OP_WRITE:
    case META_OP_FALLOCATE:
    case META_OP_MKNOD:
    case META_OP_MKDIR:
    case META_OP_SYMLINK:
    case META_OP_LINK:
    case META_OP_SETXATTR:
    case META_OP_REMOVEXATTR:
    case META_OP_OPEN:
    case META_OP_RELEASE:
    case META_OP_ALLOC_SLICES:
    case META_OP_RESTORE_FILES:
        return true;
    default:
        return false;
    }
}

struct lease_walk {
    struct group *g;
    bool is_telling;
    bool is_renamed;
};

static void lease_tell(void *arg, uint64_t ino)
{
    struct lease_walk *w = arg;
    struct meta_server *s = w->g->srv;

    if (!w->is_telling)
        return;
    /* a promise stands through changes that keep names: the holder keeps
     * the inode's names and must hear of the change that moves them */
    uint64_t mask = w->is_renamed ? lease_take(w->g->leases, ino)
                                  : lease_holders(w->g->leases, ino);
    while (mask != 0) {
        uint32_t h = (uint32_t)__builtin_ctzll(mask);
        mask &= mask - 1;
        struct conn *c = conn_at(s, s->holders[h].slot, s->holders[h].gen);
        if (c != NULL)
            notice_add(c, w->g, ino, w->is_renamed);
    }
}

/* After an apply (mark taken before it): tell the holders of what it
 * changed, before any response that follows. Whether it changed anything
 * the shard could name. */
static bool lease_changed(struct group *g, uint32_t mark, enum meta_op op)
{
    bool has_leases = g->leases != NULL && !lease_is_empty(g->leases);
    struct lease_walk w = {.g = g, .is_telling = has_leases && lease_ready(g),
                           .is_renamed = !keeps_names(op)};
    int n = meta_shard_changes_since(g->state, mark, lease_tell, &w);

    if (n < 0 && g->leases != NULL && !lease_is_empty(g->leases))
        lease_reset(g); /* what changed is not known: every promise is void */
    return n > 0;
}

/* Each tick: promises go when leadership does (not at the next apply). */
static void lease_turn(struct group *g, uint64_t now)
{
    if (g->leases != NULL && !lease_is_empty(g->leases))
        lease_ready(g);
    if (g->leases != NULL && now - g->lease_rotated_ms >= META_LEASE_MS) {
        lease_rotate(g->leases);
        g->lease_rotated_ms = now;
    }
}

static void bg_fail(struct group *g);
static void bg_admit(struct group *g);

/* Leadership is gone: the proposals may never commit here. Their clients
 * retry at the new leader (a command with a client id applies once). */
static void fail_proposals(struct group *g)
{
    struct meta_server *s = g->srv;

    for (uint32_t i = 0; i < g->pending_count;) {
        struct pending *p = &g->pending[i];
        if (p->frame != NULL) {
            i++;
            continue;
        }
        struct conn *c = conn_at(s, p->conn_slot, p->conn_gen);
        if (c != NULL)
            respond_not_leader(s, c, p->req_id, g);
        pending_drop(g, i);
    }
    g->bg_flight = 0;
    bg_fail(g);
}

/* ---- background commands (leader) ------------------------------------------------------
 * A restore writes its files with RESTORE_FILES commands of up to 256
 * files, each costing every replica far more than a live request. Queued
 * in the log behind each other they would stall the live workload (a
 * command waits for everything before it to apply). So they are
 * background work: while other requests reach this server (within
 * FG_RECENT_MS), a group's leader lets one into the log at a time and,
 * once it has applied, waits three times as long as it took before the
 * next, so that at least three quarters of the time no background entry
 * is ahead of a live one (waiting twice as long left the live workload
 * 62-73% of its rate, docs/benchmarks.md). With nothing else running
 * they go in as they come, up to BG_FLIGHT_MAX at once. One that waited
 * BG_WAIT_LIMIT_MS goes in without the pause once none is in the log (a
 * client's attempt lasts 2 s). A restore's other requests (files with
 * xattrs, links, its reads) come marked background and do not count as
 * live traffic. */

static bool bg_is_busy(const struct group *g, uint64_t now)
{
    return now - g->srv->fg_last_ms < FG_RECENT_MS;
}

static bool bg_may_start(const struct group *g, uint64_t now)
{
    bool is_busy = bg_is_busy(g, now);

    return g->bg_flight < (is_busy ? 1u : BG_FLIGHT_MAX) && (!is_busy || now >= g->bg_next_ms);
}

/* A background entry proposed at proposed_ms has applied here. */
static void bg_applied(struct group *g, uint64_t proposed_ms)
{
    uint64_t now = mono_ms();

    if (g->bg_flight > 0)
        g->bg_flight--;
    g->bg_next_ms = bg_is_busy(g, now) ? now + (now - proposed_ms) * 3 : now;
}

/* Not the leader any more: the waiting commands go to the new one. */
static void bg_fail(struct group *g)
{
    for (; g->bg_count > 0; g->bg_count--) {
        struct bg_wait *w = &g->bg_wait[g->bg_head];
        struct conn *c = conn_at(g->srv, w->conn_slot, w->conn_gen);
        if (c != NULL)
            respond_not_leader(g->srv, c, w->req_id, g);
        ar_free(w->frame);
        g->bg_head = (g->bg_head + 1) % BG_WAIT_MAX;
    }
}

/* ---- answers held for notices' acks -------------------------------------------------------- */

/* Connections other than c that the entry applying told of its change. */
static uint32_t told_others(const struct meta_server *s, const struct conn *c)
{
    uint32_t others = 0;

    for (uint32_t i = 0; i < s->told_count; i++) {
        others += s->told[i].slot != c->slot || s->told[i].gen != c->gen;
    }
    return others;
}

/* Whether the answer to c for the entry applying must be held: its change
 * was told to other connections (s->told), to go once they acked, or
 * META_NOTICE_WAIT_MS later; or it is a resend answered from the retry
 * table (s->is_resend), whose first answer may still be held, within that
 * time of a change g told: it waits that out. A held answer carries no
 * lease: notices sent meanwhile may overtake it (a later change of its
 * inode), so its client must not keep what it says. */
static bool held_is_due(const struct group *g, const struct conn *c)
{
    return told_others(g->srv, c) > 0 || (g->srv->is_resend && mono_ms() < g->told_until_ms);
}

/* Hold resp to c (held_is_due()). False: it could not be encoded; answer
 * now (respond() fails it as for any answer). */
static bool held_add(struct group *g, struct conn *c, const struct meta_response *resp,
                     enum meta_op op)
{
    struct meta_server *s = g->srv;
    uint32_t others = told_others(s, c);
    size_t len;

    if (c->is_closing || meta_response_encode(resp, op, s->tx, CONN_RX_MAX, &len) != 0)
        return false;
    if (s->held_count == s->held_cap) {
        uint32_t cap = s->held_cap < 64 ? 64 : s->held_cap * 2;
        struct held **v = ar_realloc(s->held, sizeof(*v) * cap);
        if (v == NULL)
            goto out_no_memory;
        s->held = v;
        s->held_cap = cap;
    }
    struct held *h = ar_malloc(sizeof(*h) + sizeof(h->told[0]) * others + len);
    if (h == NULL)
        goto out_no_memory;
    *h = (struct held){.slot = c->slot, .gen = c->gen, .len = len, .is_waiting_out = others == 0};
    for (uint32_t i = 0; i < s->told_count; i++) {
        if (s->told[i].slot != c->slot || s->told[i].gen != c->gen)
            h->told[h->told_count++] = s->told[i];
    }
    h->frame = (uint8_t *)&h->told[others];
    memcpy(h->frame, s->tx, len);
    s->held[s->held_count++] = h;
    return true;

out_no_memory:
    /* the change is applied and cannot be held: its client must not take
     * an answer that its neighbours' caches may contradict */
    ar_log(AR_LOG_WARN, "no memory to hold an answer for its notices: connection closed");
    conn_close(c);
    return true;
}

/* The loop wrote what it queued: the wait of answers held this turn runs
 * from now, when their notices left (a long turn does not shorten it). */
static void held_stamp(struct meta_server *s)
{
    uint64_t now = mono_ms();

    for (uint32_t i = 0; i < s->held_count; i++) {
        if (s->held[i]->until_ms == 0)
            s->held[i]->until_ms = now + META_NOTICE_WAIT_MS;
    }
}

static bool held_is_acked(struct meta_server *s, const struct held *h)
{
    if (h->is_waiting_out)
        return false;
    for (uint32_t i = 0; i < h->told_count; i++) {
        /* one gone never acks: its client may still act on what it was
         * answered before, so its answer waits out the time */
        const struct conn *t = conn_at(s, h->told[i].slot, h->told[i].gen);
        if (t == NULL || t->notices_acked < h->told[i].notice)
            return false;
    }
    return true;
}

/* Send the held answers whose acks came or whose time is up, in order. */
static void held_release(struct meta_server *s)
{
    uint64_t now = mono_ms();
    uint32_t kept = 0;

    for (uint32_t i = 0; i < s->held_count; i++) {
        struct held *h = s->held[i];
        bool is_acked = held_is_acked(s, h);
        if (h->until_ms == 0 || (!is_acked && now < h->until_ms)) {
            s->held[kept++] = h;
            continue;
        }
        if (!is_acked && !h->is_waiting_out)
            s->held_timed_out++;
        struct conn *c = conn_at(s, h->slot, h->gen);
        if (c != NULL) {
            notice_flush(c);
            conn_send(c, h->frame, h->len);
        }
        ar_free(h);
    }
    s->held_count = kept;
    if (s->held_timed_out > 0 && now - s->held_warned_ms >= 10000) {
        ar_log(AR_LOG_WARN, "%" PRIu64 " answers waited %u ms for a client that did not ack a "
                            "change notice (a stopped or unreachable mount)",
               s->held_timed_out, META_NOTICE_WAIT_MS);
        s->held_timed_out = 0;
        s->held_warned_ms = now;
    }
}

/* c's client took in its notices up to notice. */
static void notice_acked(struct meta_server *s, struct conn *c, uint64_t notice)
{
    if (notice > c->notices_acked && notice <= c->notices_sent)
        c->notices_acked = notice;
    held_release(s);
}

/* ---- applying -------------------------------------------------------------------------- */

/* Answer the client waiting for entry e, applied with rc into s->reply
 * (an entry of another term took its place: not the leader any more). */
static void pending_answer(struct group *g, const struct raft_entry *e, int rc, bool did_change)
{
    struct meta_server *s = g->srv;

    for (uint32_t i = 0; i < g->pending_count; i++) {
        struct pending *p = &g->pending[i];
        if (p->frame != NULL || p->index != e->index)
            continue;
        struct conn *c = conn_at(s, p->conn_slot, p->conn_gen);
        if (c != NULL) {
            struct meta_response resp = {.id = p->req_id, .epoch = epoch_of(g),
                                         .rc = p->term == e->term ? rc : -AR_ENOTLEADER};
            resp.reply = s->reply;
            bool is_held = held_is_due(g, c);
            if (p->wants_lease && resp.rc == 0 && did_change && !is_held)
                resp.lease = lease_grant_reply(g, c, &s->reply);
            if (!is_held || !held_add(g, c, &resp, p->op))
                respond(s, c, &resp, p->op);
        }
        if (p->op == META_OP_RESTORE_FILES)
            bg_applied(g, p->proposed_ms);
        pending_drop(g, i);
        break;
    }
}

static void apply_entry(struct group *g, const struct raft_entry *e)
{
    struct meta_server *s = g->srv;

    s->told_count = 0; /* lease_changed() notes whom this entry's change is told to */
    s->is_resend = false;

    archiver_applied(g->arch, &(struct archive_entry){.index = e->index, .term = e->term,
                                                      .hlc_ns = e->hlc_ns, .type = e->type,
                                                      .size = e->size, .data = e->data});
    if (e->type != RAFT_ENTRY_NORMAL || e->size == 0) {
        /* a leader's own entry, or a config: a member change waits for it */
        reply_reset(s, 0);
        pending_answer(g, e, 0, false);
        return;
    }
    int rc = meta_cmd_decode(e->data, e->size, s->cmd);
    reply_reset(s, 0);
    uint32_t mark = meta_shard_change_mark(g->state);
    if (rc == 0 && mono_ms() < g->told_until_ms)
        s->is_resend = meta_shard_is_answered(g->state, &s->cmd->cmd);
    if (rc == 0)
        rc = meta_shard_apply(g->state, &s->cmd->cmd, &s->reply);
    else
        ar_log(AR_LOG_ERROR, "shard %u index %" PRIu64 ": an entry that does not decode (%d)",
               g->shard, e->index, rc);
    if (rc == -ENOMEM) {
        /* a fact about this replica, not the state: it cannot go on */
        ar_log(AR_LOG_ERROR, "shard %u index %" PRIu64 ": out of memory applying: exiting",
               g->shard, e->index);
        exit(1);
    }
    bool did_change = lease_changed(g, mark, s->cmd->cmd.op);
    if (s->told_count > 0) /* twice: the answers' wait begins once the loop turn ends */
        g->told_until_ms = mono_ms() + 2 * META_NOTICE_WAIT_MS;
    pending_answer(g, e, rc, did_change && rc == 0);
}

/* ---- the group's turn -------------------------------------------------------------------- */

static void group_turn(struct group *g);

/* Raft messages out; none once stopping (a disk write that finishes then
 * still advances its ready, but the transport is gone). */
static void send_msg(struct meta_server *s, uint32_t shard, const struct raft_msg *m)
{
    struct raft_msg out = *m;

    out.host_flags = s->is_disk_low ? PEER_DISK_LOW : 0;
    if (s->transport != NULL)
        raft_transport_send(s->transport, shard, &out);
}

static void flush_msgs(struct meta_server *s)
{
    if (s->transport != NULL)
        raft_transport_flush(s->transport);
}

static void free_batches(struct meta_ckpt_batch **v, uint32_t *count)
{
    for (uint32_t i = 0; i < *count; i++) {
        meta_ckpt_batch_free(v[i]);
    }
    *count = 0;
}

/* ---- snapshots in (follower): store chunks, load, swap -------------------------------- */

static void snap_path(const struct group *g, const char *what, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", g->dir, what);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        ar_log(AR_LOG_WARN, "could not remove %s: %s", path, strerror(errno));
    return 0;
}

/* Remove path and what is under it (children first; links not followed). */
static void rm_rf(const char *path)
{
    (void)nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Make the entries of directory path durable (a rename, a new file). */
static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd >= 0 && fsync(fd) == 0 ? 0 : -errno;

    if (fd >= 0)
        close(fd);
    return rc;
}

/* Thread pool: write a received chunk; on the last, load the snapshot (the
 * state is checked whole) and reset the log to it. A failure is reported to
 * the leader, which starts over. */
static void chunk_store(struct group *g, const struct raft_snapshot_chunk *c)
{
    char dir[700];
    char path[760];
    char errmsg[AR_ERRMSG_MAX] = "";

    snap_path(g, "snap-in", dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    if (c->offset == 0) {
        if (g->in_fd >= 0)
            close(g->in_fd);
        rm_rf(dir);
        mkdir(dir, 0755);
        g->in_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    bool is_ok = g->in_fd >= 0 &&
                 pwrite(g->in_fd, c->data, c->size, (off_t)c->offset) == (ssize_t)c->size;
    if (is_ok && c->is_done) {
        struct meta_checkpoint *ck = NULL;
        uint64_t applied = 0;
        /* whole on disk before the log resets to it: a crash after the
         * reset finishes the install from it (install_finish) */
        is_ok = fdatasync(g->in_fd) == 0 && sync_dir(dir) == 0 && sync_dir(g->dir) == 0;
        close(g->in_fd);
        g->in_fd = -1;
        is_ok = is_ok && meta_checkpoint_open(dir, &ck, errmsg) == 0 &&
                meta_checkpoint_load(ck, &g->in_state, &applied, errmsg) == 0 &&
                applied == c->index;
        meta_checkpoint_close(ck);
        is_ok = is_ok && raft_seglog_snapshot(g->log, c->index, c->term, c->hlc_ns, &c->config,
                                              true, wall_ns(), errmsg) == 0;
        if (!is_ok)
            ar_log(AR_LOG_ERROR, "shard %u: the snapshot at %" PRIu64 " cannot be installed: %s",
                   g->shard, c->index, errmsg[0] ? errmsg : "a write failed");
    }
    if (!is_ok) {
        meta_shard_free(g->in_state);
        g->in_state = NULL;
        g->is_in_failed = true;
    }
}

/* Loop: the snapshot is stored and loaded; put its checkpoint in place of
 * the old one and its state in place of the shard. */
static int snapshot_swap(struct group *g)
{
    char ckpt[700];
    char old[700];
    char in[700];
    char errmsg[AR_ERRMSG_MAX] = "";

    snap_path(g, "ckpt", ckpt, sizeof(ckpt));
    snap_path(g, "ckpt.old", old, sizeof(old));
    snap_path(g, "snap-in", in, sizeof(in));
    meta_checkpoint_close(g->ckpt);
    g->ckpt = NULL;
    rm_rf(old);
    if (rename(ckpt, old) != 0 || rename(in, ckpt) != 0 || sync_dir(g->dir) != 0 ||
        meta_checkpoint_open(ckpt, &g->ckpt, errmsg) != 0) {
        ar_log(AR_LOG_ERROR, "shard %u: cannot put the snapshot in place: %s: exiting",
               g->shard, errmsg[0] ? errmsg : strerror(errno));
        exit(1); /* the log was reset to it: starting again finishes the swap */
    }
    rm_rf(old);
    free_batches(g->ckpt_waiting, &g->ckpt_waiting_count); /* changes of the state replaced */
    g->compact_next.to = 0; /* of the log the install replaced */
    meta_shard_free(g->state);
    g->state = g->in_state; /* loaded: it tracks its changes from the checkpoint it is */
    g->in_state = NULL;
    return 0;
}

/* ---- snapshots out (leader): export the checkpoint, serve chunks -------------------------- */

static void export_work(uv_work_t *w)
{
    struct group *g = w->data;
    char dir[700];
    char tmp[700];
    char path[760];
    struct meta_checkpoint *ck = NULL;

    snap_path(g, "snap-out.tmp", tmp, sizeof(tmp));
    snap_path(g, "snap-out", dir, sizeof(dir));
    rm_rf(tmp);
    mkdir(tmp, 0755);
    snprintf(path, sizeof(path), "%s/data.mdb", tmp);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    g->export_rc = fd >= 0 ? meta_checkpoint_export(g->ckpt, fd, g->export_err) : -errno;
    if (fd >= 0)
        close(fd);
    /* the copy's own applied index is the snapshot's index */
    if (g->export_rc == 0)
        g->export_rc = meta_checkpoint_open(tmp, &ck, g->export_err);
    if (g->export_rc == 0)
        g->export_index = meta_checkpoint_applied_index(ck);
    meta_checkpoint_close(ck);
    if (g->export_rc == 0) {
        rm_rf(dir);
        if (rename(tmp, dir) != 0)
            g->export_rc = -errno;
    }
}

static void export_after(uv_work_t *w, int status)
{
    struct group *g = w->data;
    char path[760];
    struct stat st;

    g->is_exporting = false;
    if (status != 0 || g->export_rc != 0) {
        ar_log(AR_LOG_WARN, "shard %u: cannot export a snapshot: %s", g->shard, g->export_err);
        group_turn(g); /* a snapshot install may have waited for this */
        return;
    }
    if (g->out_fd >= 0)
        close(g->out_fd);
    snap_path(g, "snap-out/data.mdb", path, sizeof(path));
    g->out_fd = open(path, O_RDONLY | O_CLOEXEC);
    g->out_index = g->export_index;
    g->out_size = g->out_fd >= 0 && fstat(g->out_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    /* the node sends the snapshot it knows of: make it this one */
    raft_snapshot_taken(g->node, g->out_index, g->srv->cfg.log_keep);
    ar_log(AR_LOG_INFO, "shard %u: a snapshot at %" PRIu64 " (%" PRIu64 " bytes) for followers",
           g->shard, g->out_index, g->out_size);
    group_turn(g);
}

static void answer_want(struct group *g, const struct raft_snapshot_want *w)
{
    static uint8_t chunk[CHUNK_BYTES];

    g->last_want_ms = mono_ms();
    if (g->out_fd >= 0 && w->index == g->out_index && w->offset <= g->out_size) {
        uint64_t left = g->out_size - w->offset;
        uint32_t n = left < CHUNK_BYTES ? (uint32_t)left : CHUNK_BYTES;
        if (pread(g->out_fd, chunk, n, (off_t)w->offset) == (ssize_t)n)
            raft_snapshot_send(g->node, w->peer, w->index, w->offset, chunk, n,
                               w->offset + n == g->out_size);
        return;
    }
    if (g->is_exporting)
        return; /* the follower asks again once it is ready */
    g->is_exporting = true;
    g->export_work.data = g;
    uv_queue_work(g->srv->loop, &g->export_work, export_work, export_after);
}

static void persist_work(uv_work_t *w)
{
    struct group *g = w->data;

    g->persist_rc = 0;
    if (g->compact.to > 0) {
        g->persist_rc = raft_seglog_snapshot(g->log, g->compact.to, g->compact.term,
                                             g->compact.hlc, &g->compact.config, false,
                                             wall_ns(), g->persist_err);
        g->compact.to = 0;
    }
    if (g->persist_rc == 0)
        g->persist_rc = raft_seglog_append(g->log, &g->rd, g->persist_err);
    if (g->persist_rc == 0)
        g->persist_rc = raft_seglog_sync(g->log, g->persist_err);
    if (g->persist_rc == 0 && g->rd.has_chunk)
        chunk_store(g, &g->rd.chunk);
}

/* Send the ready's messages up to end (those before it not sent yet). */
static void send_msgs(struct group *g, uint32_t end)
{
    for (; g->msgs_sent < end; g->msgs_sent++) {
        send_msg(g->srv, g->shard, &g->rd.msgs[g->msgs_sent]);
    }
    flush_msgs(g->srv);
}

/* The ready is durable: send, apply, answer, advance. */
static void finish_ready(struct group *g)
{
    struct meta_server *s = g->srv;

    send_msgs(g, g->rd.msg_count);
    for (uint32_t i = 0; i < g->rd.read_count; i++) {
        for (uint32_t k = 0; k < g->pending_count; k++) {
            struct pending *p = &g->pending[k];
            if (p->frame == NULL || p->read_id != g->rd.reads[i].id)
                continue;
            if (g->rd.reads[i].index == 0) {
                struct conn *c = conn_at(s, p->conn_slot, p->conn_gen);
                if (c != NULL)
                    respond_not_leader(s, c, p->req_id, g);
                pending_drop(g, k);
            } else {
                p->index = g->rd.reads[i].index;
            }
            break;
        }
    }
    struct raft_snapshot_want wants[8];
    uint32_t want_count = g->rd.want_count < 8 ? g->rd.want_count : 8;
    if (want_count > 0) /* no wants: the array is NULL */
        memcpy(wants, g->rd.wants, sizeof(*wants) * want_count);
    if (g->rd.has_chunk && (g->is_in_failed || g->rd.chunk.is_done)) {
        /* an archive job may be exporting the checkpoint a swap would close
         * (none starts while a snapshot comes: only leaders start them) */
        if (g->is_in_failed || archiver_is_busy(g->arch)) {
            raft_snapshot_fail(g->node);
        } else {
            if (snapshot_swap(g) != 0)
                exit(1);
            ar_log(AR_LOG_INFO, "shard %u: installed a snapshot at %" PRIu64, g->shard,
                   g->rd.chunk.index);
        }
        g->is_in_failed = false;
    }
    if (g->rd.has_role_change && raft_role(g->node) != RAFT_LEADER)
        fail_proposals(g);
    if (g->rd.has_role_change) {
        static const char *const roles[] = {"?", "follower", "pre-candidate", "candidate",
                                            "leader"};
        ar_log(AR_LOG_INFO, "shard %u: node %" PRIu64 " is %s, term %" PRIu64 ", leader %" PRIu64,
               g->shard, s->cfg.id, roles[raft_role(g->node)], raft_term_of(g->node),
               raft_leader(g->node));
    }
    raft_advance(g->node, &g->rd);
    g->is_persisting = false;
    /* chunks are sent after the advance: raft_snapshot_send() queues them */
    for (uint32_t i = 0; i < want_count; i++) {
        answer_want(g, &wants[i]);
    }
    serve_ready_reads(g);
}

static void persist_check(struct group *g, int status)
{
    if (status != 0 || g->persist_rc != 0) {
        /* a failed fsync is never retried (style §3): stop this replica */
        ar_log(AR_LOG_ERROR, "shard %u: %s: exiting", g->shard, g->persist_err);
        exit(1);
    }
}

static void persist_after(uv_work_t *w, int status)
{
    struct group *g = w->data;

    persist_check(g, status);
    finish_ready(g);
    group_turn(g);
}

static bool leads_a_group(const struct meta_server *s)
{
    for (uint32_t i = 0; i < GROUP_COUNT; i++) {
        if (raft_role(s->groups[i].node) == RAFT_LEADER)
            return true;
    }
    return false;
}

static void ckpt_work(uv_work_t *w)
{
    struct group *g = w->data;

    g->ckpt_rc = meta_checkpoint_commit_all(g->ckpt,
                                            (const struct meta_ckpt_batch *const *)g->ckpt_batches,
                                            g->ckpt_batch_count, g->ckpt_err);
}

static void ckpt_after(uv_work_t *w, int status)
{
    struct group *g = w->data;
    raft_index index = meta_checkpoint_applied_index(g->ckpt);

    g->is_checkpointing = false;
    free_batches(g->ckpt_batches, &g->ckpt_batch_count);
    if (status != 0 || g->ckpt_rc != 0) {
        ar_log(AR_LOG_ERROR, "shard %u: checkpoint: %s: exiting", g->shard, g->ckpt_err);
        exit(1);
    }
    /* the log below the checkpoint may go (a tail stays in memory for
     * followers); recovery then starts at the checkpoint. Not while a
     * follower takes a snapshot: a new one would start its transfer over. */
    uint64_t now = mono_ms();
    if (now - g->last_want_ms < WANT_QUIET_MS || now - g->last_compact_ms < COMPACT_EVERY_MS) {
        group_turn(g);
        return;
    }
    g->last_compact_ms = now;
    if (raft_snapshot_taken(g->node, index, g->srv->cfg.log_keep) == 0) {
        /* taken here, on the loop: the node is not for the thread pool,
         * and a persist may be running there (compact_next, not compact) */
        struct compaction *c = &g->compact_next;
        raft_snapshot_info(g->node, &c->to, &c->term, &c->hlc, &c->config);
    }
    group_turn(g); /* a snapshot install may have waited for this */
}

/* Collect the shard's changes into a batch that waits for the commit. */
static void collect(struct group *g)
{
    raft_index applied = raft_applied_index(g->node);
    raft_index last = g->ckpt_waiting_count > 0
                          ? meta_ckpt_batch_index(g->ckpt_waiting[g->ckpt_waiting_count - 1])
                          : meta_checkpoint_applied_index(g->ckpt);

    if (g->ckpt_waiting_count == CKPT_BATCHES_MAX || applied <= last)
        return;
    /* the whole state: a new shard's first checkpoint only (it holds the loop) */
    bool is_whole = meta_shard_dirty_count(g->state) == UINT64_MAX;
    if (meta_shard_collect(g->state, applied, &g->ckpt_waiting[g->ckpt_waiting_count]) != 0)
        return; /* out of memory: the changes stay recorded */
    g->ckpt_waiting_count++;
    if (is_whole)
        ar_log(AR_LOG_INFO, "shard %u: the checkpoint takes the whole state", g->shard);
}

/* Collect in short steps whenever changes pile up; commit to LMDB once
 * every CKPT_EVERY_MS, all waiting batches in one transaction. */
static void maybe_checkpoint(struct group *g)
{
    uint64_t now = mono_ms();

    if (raft_is_receiving_snapshot(g->node))
        return;
    if (meta_shard_dirty_count(g->state) >= CKPT_DIRTY_MAX)
        collect(g);
    if (g->is_checkpointing || now - g->last_ckpt_ms < CKPT_EVERY_MS)
        return;
    g->last_ckpt_ms = now;
    collect(g);
    /* only state this replica's own log holds: a restart replays the log
     * after the checkpoint (the node applies what a quorum holds, which may
     * be ahead of this disk for a moment) */
    uint32_t n = 0;
    while (n < g->ckpt_waiting_count &&
           meta_ckpt_batch_index(g->ckpt_waiting[n]) <= raft_stable_index(g->node)) {
        n++;
    }
    if (n == 0)
        return;
    memcpy(g->ckpt_batches, g->ckpt_waiting, sizeof(g->ckpt_waiting[0]) * n);
    g->ckpt_batch_count = n;
    g->ckpt_waiting_count -= n;
    memmove(g->ckpt_waiting, g->ckpt_waiting + n, sizeof(g->ckpt_waiting[0]) * g->ckpt_waiting_count);
    g->is_checkpointing = true;
    g->ckpt_work.data = g;
    uv_queue_work(g->srv->loop, &g->ckpt_work, ckpt_work, ckpt_after);
}

static void group_turn(struct group *g)
{
    struct meta_server *s = g->srv;

    bg_admit(g);
    maybe_checkpoint(g);
    if (g->is_persisting) {
        /* what committed meanwhile (a follower's ack) is answered now, not
         * after this disk write and the next */
        struct raft_entry *e;
        uint32_t n = raft_committed_take(g->node, &e);
        for (uint32_t i = 0; i < n; i++) {
            apply_entry(g, &e[i]);
        }
        raft_free(e);
        if (n > 0)
            serve_ready_reads(g);
        /* and what was proposed meanwhile goes to the followers now */
        struct raft_msg *msgs;
        uint32_t count = raft_early_take(g->node, &msgs);
        for (uint32_t i = 0; i < count; i++) {
            send_msg(s, g->shard, &msgs[i]);
        }
        if (count > 0)
            flush_msgs(s);
        raft_msgs_free(msgs, count);
        return;
    }
    /* bounded: a ready with nothing for the disk is finished here, and
     * readies only come from work already done */
    for (int k = 0; k < 64 && !g->is_persisting; k++) {
        /* work on the checkpoint finishes first (its after-callback turns
         * again), and an archive job that may export it (a later turn):
         * once the last chunk resets the log, the swap must not be refused */
        if ((g->is_checkpointing || g->is_exporting || archiver_is_busy(g->arch)) &&
            raft_is_receiving_snapshot(g->node))
            return;
        if (!raft_ready(g->node, &g->rd))
            return;
        g->msgs_sent = 0;
        g->is_persisting = true;
        if (g->compact_next.to > 0) {
            g->compact = g->compact_next;
            g->compact_next.to = 0;
        }
        /* a leader's appends go out while its own disk writes */
        send_msgs(g, g->rd.early_count);
        /* a replica that leads nothing only waits for its disk: it writes on
         * the loop (what arrives meanwhile waits in the socket and joins the
         * next write; two thread switches a write saved) and acknowledges
         * before it applies */
        bool is_on_loop = g->rd.must_sync && g->compact.to == 0 && !g->rd.has_chunk &&
                          !leads_a_group(s);
        if (is_on_loop) {
            g->persist.data = g;
            persist_work(&g->persist);
            persist_check(g, 0);
            send_msgs(g, g->rd.msg_count);
        }
        /* the committed entries are stable already: apply and answer them
         * now, not after this ready's own disk write */
        for (uint32_t i = 0; i < g->rd.committed_count; i++) {
            apply_entry(g, &g->rd.committed[i]);
        }
        raft_applied_early(g->node, &g->rd);
        serve_ready_reads(g);
        if (is_on_loop) {
            finish_ready(g);
            continue;
        }
        /* a ready that only moves the commit index needs no disk (raft.h) */
        if (g->rd.must_sync || g->compact.to > 0) {
            g->persist.data = g;
            uv_queue_work(s->loop, &g->persist, persist_work, persist_after);
            return;
        }
        finish_ready(g); /* nothing for the disk: no trip to the thread pool */
    }
}

/* ---- requests -------------------------------------------------------------------------------- */

static bool takes_number(enum meta_op op)
{
    return op == META_OP_MKNOD || op == META_OP_MKDIR || op == META_OP_SYMLINK ||
           op == META_OP_LINK;
}

/* A new leader knows the numbers and sessions earlier leaders gave out
 * once it has applied the log up to its own first entry. */
static bool leader_is_caught_up(struct group *g)
{
    if (g->leader_term != raft_term_of(g->node)) {
        g->leader_term = raft_term_of(g->node);
        g->ready_from = raft_last_index(g->node);
    }
    return raft_applied_index(g->node) >= g->ready_from;
}

/* The leader's time and numbers for cmd, then propose it; *index is its
 * entry. Returns -EAGAIN while the leader cannot give numbers yet. */
static int propose_cmd(struct group *g, struct meta_cmd *cmd, raft_index *index)
{
    struct meta_server *s = g->srv;
    struct meta_shard_stats st;

    if (!leader_is_caught_up(g))
        return -EAGAIN;
    meta_shard_stats(g->state, &st);
    if (g->next_ino <= st.ino_high)
        g->next_ino = st.ino_high + 1;
    int64_t now = (int64_t)wall_ns();
    g->last_now_ns = now > g->last_now_ns ? now : g->last_now_ns + 1;
    cmd->now_ns = g->last_now_ns;
    cmd->epoch = epoch_of(g);
    /* restore_files takes a number for each of its files */
    uint64_t numbers = cmd->op == META_OP_RESTORE_FILES ? cmd->item_count
                       : takes_number(cmd->op)          ? 1u
                                                        : 0u;
    if (numbers > 0 && meta_shard_self(g->state)->ino_hi - g->next_ino < numbers)
        return -ENOSPC; /* the shard's lease of numbers is spent */
    if (numbers > 0) {
        cmd->new_ino = g->next_ino;
        g->next_ino += numbers;
    }
    size_t len;
    int rc = meta_cmd_encode(cmd, s->enc, META_MSG_BYTES_MAX, &len);
    if (rc != 0)
        return rc;
    uint8_t *data = raft_malloc(len); /* the entry's own bytes, owned by the node on success */
    if (data == NULL)
        return -ENOMEM;
    memcpy(data, s->enc, len);
    rc = raft_propose(g->node, data, (uint32_t)len, index);
    if (rc != 0) {
        raft_free(data);
        return rc == -RAFT_ENOTLEADER ? -AR_ENOTLEADER : (rc == -RAFT_EBUSY ? -EAGAIN : rc);
    }
    return 0;
}

static int propose(struct group *g, struct conn *c, const struct meta_request *req,
                   struct meta_cmd *cmd)
{
    raft_index index = 0;

    /* room before proposing: once proposed, an entry will apply, and an
     * error answered for it then would be wrong */
    int rc = pending_reserve(g);
    if (rc == 0)
        rc = propose_cmd(g, cmd, &index);
    if (rc != 0)
        return rc;
    struct pending p = {.index = index, .term = raft_term_of(g->node), .conn_slot = c->slot,
                        .conn_gen = c->gen, .req_id = req->id, .op = cmd->op,
                        .proposed_ms = cmd->op == META_OP_RESTORE_FILES ? mono_ms() : 0,
                        .wants_lease = req->wants_lease};
    rc = pending_add(g, &p);
    AR_ASSERT(rc == 0); /* reserved above */
    if (rc == 0 && cmd->op == META_OP_RESTORE_FILES) {
        /* counted only with its pending record: bg_applied() undoes it */
        g->bg_flight++;
        g->bg_done++;
    }
    return rc;
}

/* A background command went into the log by the rule (not for waiting
 * too long): the peak the status reports. */
static void bg_note_peak(struct group *g, uint64_t now)
{
    if (bg_is_busy(g, now) && g->bg_flight > g->bg_busy_peak)
        g->bg_busy_peak = g->bg_flight;
}

/* A background command: proposed now if it may start, else it waits. */
static int bg_submit(struct group *g, struct conn *c, const struct meta_request *req,
                     struct meta_cmd *cmd, const uint8_t *frame, size_t len)
{
    uint64_t now = mono_ms();

    if (g->bg_count == 0 && bg_may_start(g, now)) {
        int rc = propose(g, c, req, cmd);
        if (rc == 0)
            bg_note_peak(g, now);
        return rc;
    }
    if (g->bg_count == BG_WAIT_MAX)
        return -EAGAIN;
    struct bg_wait *w = &g->bg_wait[(g->bg_head + g->bg_count) % BG_WAIT_MAX];
    *w = (struct bg_wait){.conn_slot = c->slot, .conn_gen = c->gen, .req_id = req->id,
                          .frame = ar_malloc(len), .frame_len = len, .since_ms = now};
    if (w->frame == NULL)
        return -ENOMEM;
    memcpy(w->frame, frame, len);
    g->bg_count++;
    g->bg_yielded += bg_is_busy(g, now);
    return 0;
}

/* Propose the waiting background commands that may start now. */
static void bg_admit(struct group *g)
{
    struct meta_server *s = g->srv;
    uint64_t now = g->bg_count > 0 ? mono_ms() : 0;

    if (g->bg_count > 0 && raft_role(g->node) != RAFT_LEADER) {
        bg_fail(g);
        return;
    }
    while (g->bg_count > 0) {
        struct bg_wait *w = &g->bg_wait[g->bg_head];
        bool is_by_rule = bg_may_start(g, now);
        /* one that waited too long skips the pause, not the one-at-a-time */
        bool is_overdue = now - w->since_ms >= BG_WAIT_LIMIT_MS && g->bg_flight == 0;
        if (!is_by_rule && !is_overdue)
            return;
        struct conn *c = conn_at(s, w->conn_slot, w->conn_gen);
        struct meta_request req;
        int rc = c != NULL ? meta_request_decode(w->frame, w->frame_len, &req, s->cmd) : 0;
        if (c != NULL && rc == 0 && req.epoch != epoch_of(g))
            rc = -AR_ESTALEEPOCH;
        if (c != NULL && rc == 0)
            rc = propose(g, c, &req, &s->cmd->cmd);
        if (c != NULL && rc == 0 && is_by_rule)
            bg_note_peak(g, now);
        /* answers by the id kept at submit: req is not filled if the decode failed */
        if (c != NULL && rc == -AR_ESTALEEPOCH) {
            struct meta_response resp = {.id = w->req_id, .rc = rc, .epoch = epoch_of(g)};
            respond(s, c, &resp, META_OP_ACCESS);
        } else if (c != NULL && rc == -AR_ENOTLEADER) {
            respond_not_leader(s, c, w->req_id, g);
        } else if (c != NULL && rc != 0) {
            respond_rc(s, c, w->req_id, rc);
        }
        ar_free(w->frame);
        g->bg_head = (g->bg_head + 1) % BG_WAIT_MAX;
        g->bg_count--;
    }
}

/* A stalled group's time since its leader counts right again once it
 * heard the leader just now, or leads on a quorum's fresh answers (a lone
 * replica's own, at its next tick). */
static void stall_check(struct group *g)
{
    if (g->is_stalled && ((raft_role(g->node) != RAFT_LEADER &&
                           raft_ticks_since_leader(g->node) == 0) ||
                          raft_lease_read(g->node) != 0))
        g->is_stalled = false;
}

/* Tick every group as often as the time since the last tick asks
 * (TICKS_CATCH_UP_MAX). */
static void ticks_catch_up(struct meta_server *s)
{
    uint64_t now = mono_ms();
    uint64_t due = (now - s->ticked_ms) / TICK_MS;

    if (s->ticked_ms == 0 || due == 0)
        return; /* not started, or not due */
    if (due > TICKS_CATCH_UP_MAX) {
        s->ticked_ms = now - TICKS_CATCH_UP_MAX * TICK_MS;
        due = TICKS_CATCH_UP_MAX;
        /* the time since the leader was heard now counts short */
        for (uint32_t i = 0; i < GROUP_COUNT; i++) {
            s->groups[i].is_stalled = true;
        }
    }
    s->ticked_ms += due * TICK_MS;
    for (uint32_t i = 0; i < GROUP_COUNT; i++) {
        /* bounded by TICKS_CATCH_UP_MAX */
        for (uint64_t k = 0; k < due; k++) {
            raft_tick(s->groups[i].node, wall_ns());
        }
    }
}

static int read_later(struct group *g, struct conn *c, const struct meta_request *req,
                      const uint8_t *frame, size_t len)
{
    struct pending p = {.read_id = ++g->next_read_id, .conn_slot = c->slot, .conn_gen = c->gen,
                        .req_id = req->id, .frame = ar_malloc(len), .frame_len = len};

    if (p.frame == NULL)
        return -ENOMEM;
    memcpy(p.frame, frame, len);
    int rc = raft_read_index(g->node, p.read_id, req->read_mode == META_READ_LINEARIZABLE);
    if (rc == 0)
        rc = pending_add(g, &p);
    if (rc != 0)
        ar_free(p.frame);
    if (rc == -RAFT_ENOTLEADER)
        return -AR_ENOTLEADER;
    return rc == -RAFT_EBUSY ? -EAGAIN : rc;
}

/* ---- sessions (leader) ------------------------------------------------------------------
 * A mount opens a session and keeps it alive with heartbeats; a session
 * silent for the timeout is ended by a SESSION_CLOSE command, which releases
 * what it held (unlinked-but-open files go). The table lives at the leader;
 * a new leader, once it has applied what earlier leaders committed, learns
 * the sessions that hold something from the state and gives each a full
 * timeout; one it does not know is taken as an earlier leader's. A session
 * this leader closed gets -ESTALE. (One an earlier leader closed would be
 * taken back: telling it from a live one that holds nothing needs the
 * closed ones in the state. Refusing every unknown session instead would
 * leave each idle mount's first create after a change of leader held by
 * no session: see handle_command.) */

static int32_t session_find(const struct group *g, uint64_t id)
{
    for (uint32_t i = 0; i < g->session_count; i++) {
        if (g->session_ids[i] == id)
            return (int32_t)i;
    }
    return -1;
}

static bool session_is_closed(const struct group *g, uint64_t id)
{
    for (uint32_t i = 0; i < CLOSED_KEPT; i++) {
        if (g->closed[i] == id)
            return true;
    }
    return false;
}

static int session_add(struct group *g, uint64_t id)
{
    if (g->session_count == SESSIONS_MAX)
        return -EMFILE;
    g->session_ids[g->session_count] = id;
    g->session_seen_ms[g->session_count++] = mono_ms();
    return 0;
}

/* At the leader: the table of this term, built from the state when new.
 * false: not yet (not the leader, or it has not caught up). */
static bool session_sync(struct group *g)
{
    if (raft_role(g->node) != RAFT_LEADER) {
        g->session_count = 0;
        g->session_term = 0;
        return false;
    }
    if (g->session_term == raft_term_of(g->node))
        return true;
    if (!leader_is_caught_up(g))
        return false; /* a hold the last leader committed may not be applied yet */
    g->session_term = raft_term_of(g->node);
    g->session_counter = 0;
    g->session_count = meta_shard_sessions(g->state, g->session_ids, SESSIONS_MAX);
    for (uint32_t i = 0; i < g->session_count; i++) {
        g->session_seen_ms[i] = mono_ms(); /* a full timeout to check in again */
    }
    return true;
}

/* A request of session id: it is alive. -ESTALE if this leader closed it,
 * -EAGAIN while a new leader catches up. */
static int session_touch(struct group *g, uint64_t id)
{
    if (!session_sync(g))
        return -EAGAIN;
    if (session_is_closed(g, id))
        return -ESTALE;
    int32_t i = session_find(g, id);
    if (i < 0)
        return session_add(g, id); /* one an earlier leader opened */
    g->session_seen_ms[i] = mono_ms();
    return 0;
}

static int session_open(struct group *g, uint64_t *id)
{
    if (!session_sync(g))
        return -EAGAIN;
    /* unique across leaders: each leader has a term of its own */
    *id = raft_term_of(g->node) << 32 | ++g->session_counter;
    return session_add(g, *id);
}

/* Close the sessions silent past the timeout (leader, from the tick). */
static void session_expire(struct group *g)
{
    uint64_t now = mono_ms();

    if (!session_sync(g) || g->session_count == 0 || now - g->last_expiry_ms < 100)
        return;
    g->last_expiry_ms = now;
    for (uint32_t i = 0; i < g->session_count;) {
        if (now - g->session_seen_ms[i] < g->srv->cfg.session_timeout_ms) {
            i++;
            continue;
        }
        struct meta_cmd close = {.op = META_OP_SESSION_CLOSE, .session = g->session_ids[i]};
        raft_index index;
        if (propose_cmd(g, &close, &index) != 0) {
            i++; /* not now (a new leader's numbers): the next tick tries again */
            continue;
        }
        ar_log(AR_LOG_INFO, "shard %u: session %" PRIx64 " silent for %u ms: closed", g->shard,
               g->session_ids[i], g->srv->cfg.session_timeout_ms);
        g->closed[g->closed_next++ % CLOSED_KEPT] = g->session_ids[i];
        g->session_ids[i] = g->session_ids[--g->session_count];
        g->session_seen_ms[i] = g->session_seen_ms[g->session_count];
    }
}

static const struct meta_server_node *node_of(const struct meta_server *s, uint64_t id)
{
    for (uint32_t i = 0; i < s->cfg.node_count; i++) {
        if (s->cfg.nodes[i].id == id)
            return &s->cfg.nodes[i];
    }
    return NULL;
}

/* ---- the shard map (leader of shard 0) ---------------------------------------------------
 * The map leader seeds the map on its first turn in a new cluster (the
 * volume from its cluster file, the first leases), and then keeps the map's
 * members equal to the map group's members, with their addresses from the
 * cluster file. One MAP_SET of its own in flight at a time. */

static bool members_equal(const struct meta_map *a, const struct meta_map *b)
{
    if (a->member_count != b->member_count)
        return false;
    for (uint32_t i = 0; i < a->member_count; i++) {
        if (a->members[i].id != b->members[i].id ||
            strcmp(a->members[i].raft_addr, b->members[i].raft_addr) != 0 ||
            strcmp(a->members[i].client_addr, b->members[i].client_addr) != 0)
            return false;
    }
    return true;
}

static void map_members_from(const struct meta_server *s, const struct raft_config *c,
                             struct meta_map *m)
{
    m->member_count = 0;
    for (uint32_t i = 0; i < c->voter_count + c->learner_count; i++) {
        raft_id id = i < c->voter_count ? c->voters[i] : c->learners[i - c->voter_count];
        const struct meta_server_node *n = node_of(s, id);
        if (n == NULL || m->member_count == META_MAP_MEMBERS_MAX)
            continue; /* admin() takes only nodes of the cluster file */
        struct meta_map_member *mm = &m->members[m->member_count++];
        *mm = (struct meta_map_member){.id = id};
        snprintf(mm->raft_addr, sizeof(mm->raft_addr), "%s", n->raft_addr);
        snprintf(mm->client_addr, sizeof(mm->client_addr), "%s", n->client_addr);
        /* ascending id, so equal member sets compare equal */
        for (uint32_t k = m->member_count - 1; k > 0 && m->members[k - 1].id > id; k--) {
            struct meta_map_member t = m->members[k];
            m->members[k] = m->members[k - 1];
            m->members[k - 1] = t;
        }
    }
}

static void map_sync(struct group *g)
{
    struct meta_server *s = g->srv;
    const struct meta_map *cur = meta_shard_map(g->state);
    struct meta_map *next = &s->map_next;
    size_t len;
    raft_index index;

    *next = *cur;
    next->version = cur->version + 1;
    if (cur->version == 0) {
        snprintf(next->volume, sizeof(next->volume), "%s", s->cfg.volume);
        snprintf(next->store_url, sizeof(next->store_url), "%s", s->cfg.store_url);
        next->block_bytes = s->cfg.block_bytes;
        next->window_s = s->cfg.window_s;
        meta_map_seed(next);
    }
    map_members_from(s, raft_config_of(g->node), next);
    if (cur->version != 0 && members_equal(cur, next))
        return;
    int rc = meta_map_encode(next, s->map_bytes, sizeof(s->map_bytes), &len);
    if (rc != 0) {
        ar_log(AR_LOG_ERROR, "shard map: the next map does not encode (%d)", rc);
        return;
    }
    struct meta_cmd cmd = {.op = META_OP_MAP_SET, .cookie = cur->version, .value = s->map_bytes,
                           .value_len = (uint32_t)len};
    if (propose_cmd(g, &cmd, &index) == 0)
        g->chore_index = index;
}

/* A new shard's root has no times (replicas are formatted at different
 * moments): its first leader gives them, through the log, so that every
 * replica holds the same. */
static void root_stamp(struct group *g)
{
    struct meta_server *s = g->srv;
    struct meta_cmd cmd = {.op = META_OP_GETATTR, .ino = meta_shard_self(g->state)->root_ino};
    raft_index index;

    reply_reset(s, 0);
    if (meta_shard_read(g->state, &cmd, &s->reply) != 0 || s->reply.attr.mtime_ns != 0)
        return;
    cmd.op = META_OP_SETATTR;
    cmd.set_mask = META_SET_ATIME_NOW | META_SET_MTIME_NOW;
    if (propose_cmd(g, &cmd, &index) == 0)
        g->chore_index = index;
}

/* What a leader does of its own accord, one command at a time. */
static void leader_chores(struct group *g)
{
    if (raft_role(g->node) != RAFT_LEADER || g->chore_index > raft_applied_index(g->node))
        return;
    if (g->shard == META_MAP_SHARD)
        map_sync(g);
    else
        root_stamp(g);
}

/* A new recovery window in the map (the map leader proposes it, as a
 * compare-and-set on the map's version like every map change). */
static int set_window(struct group *g, uint64_t seconds, raft_index *index)
{
    struct meta_server *s = g->srv;
    const struct meta_map *cur = meta_shard_map(g->state);
    size_t len;

    if (g->shard != META_MAP_SHARD || cur->version == 0 || seconds == 0 ||
        seconds > UINT32_MAX)
        return -EINVAL;
    s->map_next = *cur;
    s->map_next.version = cur->version + 1;
    s->map_next.window_s = (uint32_t)seconds;
    int rc = meta_map_encode(&s->map_next, s->map_bytes, sizeof(s->map_bytes), &len);
    struct meta_cmd cmd = {.op = META_OP_MAP_SET, .cookie = cur->version, .value = s->map_bytes,
                           .value_len = (uint32_t)len};
    return rc == 0 ? propose_cmd(g, &cmd, index) : rc;
}

/* Take id out of the count ids (order does not matter). */
static void ids_drop(raft_id *ids, uint32_t *count, raft_id id)
{
    for (uint32_t i = 0; i < *count; i++) {
        if (ids[i] == id) {
            ids[i] = ids[--*count];
            return;
        }
    }
}

/* A change of members (one at a time) or of leader, at the group's leader.
 * The new node must be in the cluster file (its address is known); the map
 * leader then puts its addresses into the map (map_sync). Or, at the
 * map leader, a new recovery window (answered once it has applied: a
 * longer window the caller was told of keeps data from gc).
 * A member change is answered once the config that makes it has committed
 * (*wait: its index, to answer when it applies here): until then a removed
 * node may still count as a voter, and wiping it could lose what it held.
 * A change already made is answered as done once its config has
 * committed (-EAGAIN before), so a caller may retry after a timeout or a
 * new leader. */
static int admin(struct meta_server *s, struct group *g, const struct meta_request *req,
                 raft_index *wait)
{
    struct raft_config c = *raft_config_of(g->node);
    raft_index index;
    int rc;
    bool is_made = false;

    *wait = 0;
    if (req->admin == META_ADMIN_SET_WINDOW) {
        /* answered with the map change's own result, once applied */
        rc = set_window(g, req->target, wait);
    } else if (req->admin == META_ADMIN_TRANSFER) {
        /* to the leader itself (a group the target leads already): done */
        rc = req->target == raft_leader(g->node) ? 0 : raft_transfer_leader(g->node, req->target);
    } else {
        bool is_voter = raft_config_is_voter(&c, req->target);
        bool is_learner = raft_config_has(&c, req->target) && !is_voter;
        if (req->admin == META_ADMIN_ADD_LEARNER) {
            is_made = is_learner;
        } else if (req->admin == META_ADMIN_PROMOTE) {
            is_made = is_voter;
        } else if (req->admin == META_ADMIN_REMOVE) {
            is_made = !is_voter && !is_learner;
        }
        /* made already: answered once committed (a config of an earlier
         * term commits with this term's first entry) */
        if (is_made)
            return raft_config_index(g->node) > raft_commit_index(g->node) ? -EAGAIN : 0;
        if (req->admin == META_ADMIN_ADD_LEARNER) {
            if (node_of(s, req->target) == NULL || is_voter ||
                c.learner_count == RAFT_LEARNERS_MAX)
                return -EINVAL;
            c.learners[c.learner_count++] = req->target;
        } else if (req->admin == META_ADMIN_PROMOTE) {
            if (!is_learner || c.voter_count == RAFT_VOTERS_MAX)
                return -EINVAL;
            c.voters[c.voter_count++] = req->target;
        }
        /* a learner promoted or a member removed leaves the learners */
        if (req->admin != META_ADMIN_ADD_LEARNER)
            ids_drop(c.learners, &c.learner_count, req->target);
        if (req->admin == META_ADMIN_REMOVE)
            ids_drop(c.voters, &c.voter_count, req->target);
        if (c.voter_count == 0)
            return -EINVAL;
        rc = raft_change_config(g->node, &c, &index);
        if (rc == 0)
            *wait = index; /* answered when it applies here, in this term */
    }
    if (rc == 0 && !is_made)
        ar_log(AR_LOG_INFO, "shard %u: admin %d for node %" PRIu64 " under way", g->shard,
               req->admin, req->target);
    if (rc == -RAFT_ENOTLEADER)
        return -AR_ENOTLEADER;
    return rc == -RAFT_EBUSY ? -EAGAIN : rc;
}

static void group_status(const struct group *g, struct meta_group_status *gs);

/* Whether id is a voter or learner of a group here. */
static bool is_member(const struct meta_server *s, raft_id id)
{
    for (uint32_t g = 0; g < GROUP_COUNT; g++) {
        if (raft_config_has(raft_config_of(s->groups[g].node), id))
            return true;
    }
    return false;
}

/* A member of a group here whose disk, as it said within PEER_NEWS_MS,
 * is under its reserve; 0 if none. A replica removed from the groups may
 * go on sending (pre-votes that raft drops): its news does not count. */
static raft_id low_peer_find(const struct meta_server *s, uint64_t now)
{
    for (uint32_t i = 0; i < PEERS_HEARD_MAX; i++) {
        if (s->peers[i].is_disk_low && now - s->peers[i].heard_ms < PEER_NEWS_MS &&
            is_member(s, s->peers[i].id))
            return s->peers[i].id;
    }
    return 0;
}

/* What the disk holds for the log, the checkpoint and elections once a
 * leader stops taking growth: below the reserve, a leader answers ENOSPC
 * to what would grow its log (disk_refuses()), so that the replicas keep
 * serving reads and removals instead of failing their own writes and
 * stopping. Room comes back at a tenth more than the reserve (no
 * flapping at the edge). A follower's disk counts as much as the
 * leader's: each replica says in every raft message it sends whether its
 * disk is under its reserve (PEER_DISK_LOW), and a leader that heard so
 * from any member within PEER_NEWS_MS refuses growth too, since that
 * replica would fail its next write and stop, and the replicas' disks,
 * holding the same log, fill together. */
static void disk_check(struct meta_server *s, uint64_t now)
{
    struct statvfs vfs;

    if (now - s->disk_checked_ms < DISK_CHECK_MS && s->disk_checked_ms != 0)
        return;
    s->disk_checked_ms = now;
    s->low_peer = low_peer_find(s, now);
    if (statvfs(s->cfg.data_dir, &vfs) != 0)
        return; /* as before: an error here says nothing of the room */
    s->disk_free = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    uint64_t reserve = s->cfg.disk_reserve_bytes;
    bool is_low = s->is_disk_low ? s->disk_free < reserve + reserve / 10 : s->disk_free < reserve;
    if (is_low != s->is_disk_low)
        ar_log(is_low ? AR_LOG_WARN : AR_LOG_INFO,
               is_low ? "the disk of %s has %" PRIu64 " MiB free, under the reserve of %" PRIu64
                        " MiB: the leader refuses new files and writes (ENOSPC) until "
                        "there is room"
                      : "the disk of %s has room again (%" PRIu64 " MiB free, reserve %"
                        PRIu64 " MiB)",
               s->cfg.data_dir, s->disk_free >> 20, reserve >> 20);
    s->is_disk_low = is_low;
}

/* A raft message from peer came, with its host's news (host_flags). */
static void peer_heard(struct meta_server *s, raft_id peer, uint32_t host_flags)
{
    uint32_t at = 0;
    bool is_low = (host_flags & PEER_DISK_LOW) != 0;

    for (uint32_t i = 0; i < PEERS_HEARD_MAX; i++) {
        if (s->peers[i].id == peer) {
            at = i;
            break;
        }
        if (s->peers[i].heard_ms < s->peers[at].heard_ms)
            at = i; /* else the one heard from longest ago makes room */
    }
    if (s->peers[at].id != peer) {
        s->peers[at].id = peer;
        s->peers[at].is_disk_low = false;
    }
    bool is_change = is_low != s->peers[at].is_disk_low;
    if (is_change && is_member(s, peer))
        ar_log(is_low ? AR_LOG_WARN : AR_LOG_INFO,
               is_low ? "replica %" PRIu64 " says its disk is under its reserve: its leader "
                        "refuses new files and writes (ENOSPC) until it has room, so that "
                        "it does not fill and stop"
                      : "replica %" PRIu64 " has room on its disk again",
               peer);
    s->peers[at].is_disk_low = is_low;
    s->peers[at].heard_ms = mono_ms();
    if (is_change) /* at once, not at the next disk check: writes stop or go on now */
        s->low_peer = low_peer_find(s, s->peers[at].heard_ms);
}

/* Whether the leader refuses cmd for want of disk: all that grows the log
 * but what frees (removals, closes), which must work on a full disk, and a
 * retry of a command applied before, whose answer must be its first. */
static bool disk_refuses(const struct meta_server *s, const struct group *g,
                         const struct meta_cmd *cmd)
{
    enum meta_op op = cmd->op;

    return (s->is_disk_low || s->low_peer != 0) && op != META_OP_UNLINK && op != META_OP_RMDIR &&
           op != META_OP_REMOVEXATTR && op != META_OP_RELEASE && op != META_OP_SESSION_CLOSE &&
           op != META_OP_OPEN && !meta_shard_is_answered(g->state, cmd);
}

/* MemAvailable from /proc/meminfo, in bytes; 0 if unknown. */
static uint64_t memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long kib = 0;

    /* bounded by the file's lines */
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            break;
    }
    if (f != NULL)
        fclose(f);
    return (uint64_t)kib << 10;
}

/* What this replica knows of its groups and its room: any replica answers. */
static void respond_status(struct meta_server *s, struct conn *c, uint64_t id)
{
    struct meta_response *resp = ar_calloc(1, sizeof(*resp));

    if (resp == NULL)
        return;
    resp->id = id;
    resp->node = s->cfg.id;
    s->disk_checked_ms = 0; /* read now: a restore's room check may follow a deletion */
    disk_check(s, mono_ms());
    resp->disk_free_bytes = s->disk_free;
    resp->disk_reserve_bytes = s->cfg.disk_reserve_bytes;
    resp->memory_available_bytes = memory_available();
    resp->group_count = GROUP_COUNT;
    for (uint32_t i = 0; i < GROUP_COUNT; i++) {
        group_status(&s->groups[i], &resp->groups[i]);
    }
    /* the store's failure to open, else the first failing archiver's (each
     * runs while this replica leads its group) */
    snprintf(resp->archive_error, sizeof(resp->archive_error), "%s", s->store_failure);
    for (uint32_t i = 0; i < GROUP_COUNT && resp->archive_error[0] == '\0'; i++) {
        if (raft_role(s->groups[i].node) == RAFT_LEADER)
            snprintf(resp->archive_error, sizeof(resp->archive_error), "%s",
                     archiver_failure(s->groups[i].arch));
    }
    respond(s, c, resp, META_OP_ACCESS);
    ar_free(resp);
}

/* Bytes of the files in dir (not below it). */
static uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint64_t sum = 0;

    /* bounded by the directory's entries */
    while (d != NULL && (e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            sum += (uint64_t)st.st_blocks * 512u; /* what the disk holds: prefill counts */
    }
    if (d != NULL)
        closedir(d);
    return sum;
}

static void group_status(const struct group *g, struct meta_group_status *gs)
{
    char path[700];
    struct meta_shard_stats st;
    const struct raft_config *cfg = raft_config_of(g->node);

    meta_shard_stats(g->state, &st);
    *gs = (struct meta_group_status){.shard = g->shard, .role = raft_role(g->node),
                                     .term = raft_term_of(g->node),
                                     .leader = raft_leader(g->node),
                                     .commit = raft_commit_index(g->node),
                                     .applied = raft_applied_index(g->node),
                                     .last = raft_last_index(g->node),
                                     .checkpoint = meta_checkpoint_applied_index(g->ckpt),
                                     .files = st.inode_count,
                                     .memory_bytes = st.memory_bytes};
    snprintf(path, sizeof(path), "%s/log", g->dir);
    gs->log_bytes = dir_bytes(path);
    snprintf(path, sizeof(path), "%s/ckpt", g->dir);
    gs->checkpoint_bytes = dir_bytes(path);
    archiver_progress(g->arch, &gs->archived, &gs->archive_tail_bytes);
    gs->background_waiting = g->bg_count;
    gs->background_done = g->bg_done;
    gs->background_yielded = g->bg_yielded;
    gs->background_busy_peak = g->bg_busy_peak;
    gs->voter_count = cfg->voter_count;
    memcpy(gs->voters, cfg->voters, sizeof(uint64_t) * cfg->voter_count);
    gs->learner_count = cfg->learner_count;
    if (cfg->learner_count > 0)
        memcpy(gs->learners, cfg->learners, sizeof(uint64_t) * cfg->learner_count);
    uint32_t members = cfg->voter_count + cfg->learner_count;
    for (uint32_t i = 0; i < members && gs->peer_count < META_STATUS_PEERS_MAX; i++) {
        raft_id peer = i < cfg->voter_count ? cfg->voters[i] : cfg->learners[i - cfg->voter_count];
        raft_index match;
        if (raft_peer_match(g->node, peer, &match)) {
            gs->peer_ids[gs->peer_count] = peer;
            gs->peer_match[gs->peer_count++] = match;
        }
    }
}

/* A follower read within stale_ms (0: any): this replica heard from the
 * leader that recently and has applied all it was told is committed. */
static bool is_fresh_enough(const struct group *g, uint32_t stale_ms)
{
    uint64_t ticks = raft_ticks_since_leader(g->node);

    if (stale_ms == 0)
        return true;
    return ticks != UINT64_MAX && ticks * TICK_MS <= stale_ms && !g->is_stalled &&
           raft_applied_index(g->node) >= raft_commit_index(g->node);
}

/* An admin request (members, leadership, the window): answered once what
 * it proposed is applied. */
static void handle_admin(struct meta_server *s, struct group *g, struct conn *c,
                         const struct meta_request *req)
{
    raft_index wait;

    if (raft_role(g->node) != RAFT_LEADER) {
        respond_not_leader(s, c, req->id, g);
        return;
    }
    int rc = pending_reserve(g); /* before the change: it will apply once made */
    if (rc == 0)
        rc = admin(s, g, req, &wait);
    if (rc == 0 && wait > raft_applied_index(g->node)) {
        struct pending p = {.index = wait, .term = raft_term_of(g->node),
                            .conn_slot = c->slot, .conn_gen = c->gen, .req_id = req->id,
                            .op = META_OP_ACCESS};
        rc = pending_add(g, &p);
        if (rc == 0) {
            group_turn(g);
            return;
        }
    }
    if (rc == -AR_ENOTLEADER)
        respond_not_leader(s, c, req->id, g);
    else
        respond_rc(s, c, req->id, rc);
    group_turn(g);
}

/* A session opened, or a heartbeat of one, at the leader. */
static void handle_session(struct meta_server *s, struct group *g, struct conn *c,
                           const struct meta_request *req)
{
    if (raft_role(g->node) != RAFT_LEADER) {
        respond_not_leader(s, c, req->id, g);
        return;
    }
    struct meta_response resp = {.id = req->id, .epoch = epoch_of(g),
                                 .session_timeout_ms = s->cfg.session_timeout_ms};
    if (req->kind == META_REQ_SESSION_OPEN)
        resp.rc = session_open(g, &resp.session);
    else
        resp.rc = session_touch(g, req->session);
    respond(s, c, &resp, META_OP_ACCESS);
}

/* A shard command (s->cmd, decoded from frame): a query answered now or
 * later, or a change proposed. The group turns after the poll (on_check):
 * one ready for all the requests the poll brought. */
static void handle_command(struct meta_server *s, struct group *g, struct conn *c,
                           const struct meta_request *req, const uint8_t *frame, size_t len,
                           bool is_background)
{
    struct meta_cmd *cmd = &s->cmd->cmd;
    int rc;

    if (req->epoch != epoch_of(g)) {
        struct meta_response resp = {.id = req->id, .rc = -AR_ESTALEEPOCH, .epoch = epoch_of(g)};
        respond(s, c, &resp, META_OP_ACCESS);
        return;
    }
    /* the map changes only by the map leader's own proposals; namespace
     * ops belong to the other shards */
    if (cmd->op == META_OP_MAP_SET || (cmd->op == META_OP_MAP_GET) != (g->shard == META_MAP_SHARD)) {
        respond_rc(s, c, req->id, cmd->op == META_OP_MAP_SET ? -EPERM : -AR_EREDIRECT);
        return;
    }
    /* answered now: a follower read fresh enough, or a read at the leader
     * inside its lease with the state applied to the lease's read point */
    raft_index at = req->read_mode == META_READ_LINEARIZABLE ? raft_lease_read(g->node) : 0;
    bool is_lease_read = at != 0 && raft_applied_index(g->node) >= at;
    if (meta_op_is_query(cmd->op) &&
        ((req->read_mode == META_READ_FOLLOWER && is_fresh_enough(g, req->stale_ms)) ||
         is_lease_read)) {
        reply_reset(s, req->data_cap);
        struct meta_response resp = {.id = req->id, .epoch = epoch_of(g)};
        resp.rc = meta_shard_read(g->state, cmd, &s->reply);
        resp.reply = s->reply;
        if (req->wants_lease && resp.rc == 0 && is_lease_read)
            resp.lease = lease_grant_reply(g, c, &s->reply);
        respond(s, c, &resp, cmd->op);
        return;
    }
    if (raft_role(g->node) != RAFT_LEADER) {
        respond_not_leader(s, c, req->id, g);
        return;
    }
    rc = cmd->session != 0 ? session_touch(g, cmd->session) : 0;
    if (rc == -ESTALE && cmd->op == META_OP_MKNOD) {
        /* A create of a closed session is made all the same, held by none:
         * refused, its client would create again under a new number while
         * an earlier attempt of this one may still commit (answering
         * EEXIST for its own file). A resend is applied once. */
        cmd->session = 0;
        rc = 0;
    }
    if (rc != 0) {
        respond_rc(s, c, req->id, rc); /* a closed session: its holds are gone */
        return;
    }
    rc = meta_op_is_query(cmd->op)   ? read_later(g, c, req, frame, len)
         : disk_refuses(s, g, cmd)  ? -ENOSPC
         : is_background             ? bg_submit(g, c, req, cmd, frame, len)
                                     : propose(g, c, req, cmd);
    if (rc == -AR_ENOTLEADER)
        respond_not_leader(s, c, req->id, g);
    else if (rc != 0)
        respond_rc(s, c, req->id, rc);
}

static void handle_request(struct conn *c, const uint8_t *frame, size_t len)
{
    struct meta_server *s = c->srv;
    struct meta_request req;

    ticks_catch_up(s); /* a lease, a follower's freshness: counted in ticks */
    int rc = meta_request_decode(frame, len, &req, s->cmd);
    if (rc != 0) {
        /* to its call if the bytes were a request; id 0 (no call) if not */
        respond_rc(s, c, req.id, rc);
        return;
    }
    if (req.kind == META_REQ_STATUS) {
        respond_status(s, c, req.id);
        return;
    }
    if (req.kind == META_REQ_NOTICE_ACK) {
        notice_acked(s, c, req.notice);
        return;
    }
    struct group *g = group_of(s, req.shard);
    if (g == NULL) {
        respond_rc(s, c, req.id, -AR_EREDIRECT); /* no such shard here: read the map */
        return;
    }
    /* RESTORE_FILES waits its turn; a background client's other requests
     * go as they come but do not count as live traffic */
    bool is_background = req.kind == META_REQ_COMMAND && s->cmd->cmd.op == META_OP_RESTORE_FILES;
    if (!is_background && !req.is_background && req.kind != META_REQ_HEARTBEAT)
        s->fg_last_ms = mono_ms();
    if (req.kind == META_REQ_ADMIN)
        handle_admin(s, g, c, &req);
    else if (req.kind == META_REQ_SESSION_OPEN || req.kind == META_REQ_HEARTBEAT)
        handle_session(s, g, c, &req);
    else
        handle_command(s, g, c, &req, frame, len, is_background);
}

/* ---- connections ------------------------------------------------------------------------------ */

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct meta_server *s = c->srv;

    s->conns[c->slot] = NULL;
    ar_free(c->rx);
    ar_free(c->out);
    ar_free(c);
    s->open_handles--;
}

static void conn_close(struct conn *c)
{
    if (c->is_closing)
        return;
    c->is_closing = true;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    size_t want = c->used + 65536;

    (void)suggested;
    if (c->used >= 4) {
        uint32_t n;
        memcpy(&n, c->rx, 4);
        if ((size_t)n + 4 > want && (size_t)n + 4 <= CONN_RX_MAX)
            want = (size_t)n + 4;
    }
    if (want > c->cap) {
        uint8_t *p = ar_realloc(c->rx, want);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        c->rx = p;
        c->cap = want;
    }
    *buf = uv_buf_init((char *)c->rx + c->used, (unsigned)(c->cap - c->used));
}

/* Handle the whole frames c->rx holds, until a pause. */
static void conn_take(struct conn *c)
{
    size_t at = 0;

    /* bounded: each turn takes one whole frame */
    while (c->used - at >= 4 && !c->is_closing && !c->is_paused) {
        uint32_t n;
        memcpy(&n, c->rx + at, 4);
        if (n > META_FRAME_BYTES_MAX) {
            ar_log(AR_LOG_WARN, "a client frame of %u bytes: connection closed", n);
            conn_close(c);
            return;
        }
        if (c->used - at - 4 < n)
            break;
        handle_request(c, c->rx + at + 4, n);
        at += 4 + (size_t)n;
        conn_pause_check(c);
    }
    memmove(c->rx, c->rx + at, c->used - at);
    c->used -= at;
}

static void conn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = st->data;

    (void)buf;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->used += (size_t)nread;
    conn_take(c);
}

static void accepted(uv_stream_t *server, int status)
{
    struct meta_server *s = server->data;
    uint32_t slot = 0;

    if (status < 0 || s->is_stopping)
        return;
    while (slot < CONNS_MAX && s->conns[slot] != NULL) {
        slot++;
    }
    struct conn *c = slot < CONNS_MAX ? ar_calloc(1, sizeof(*c)) : NULL;
    if (c == NULL) {
        ar_log(AR_LOG_WARN, "too many client connections: one refused");
        return; /* the backlog keeps it until a slot frees */
    }
    c->srv = s;
    c->slot = slot;
    c->gen = ++s->conn_gen;
    c->holder = -1;
    s->conns[slot] = c;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    s->open_handles++;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) != 0)
        conn_close(c);
}

/* ---- the loop -------------------------------------------------------------------------------- */


static void on_recv(void *ctx, uint64_t group, const struct raft_msg *m)
{
    struct group *g = group_of(ctx, group);

    peer_heard(ctx, m->from, m->host_flags);
    if (g == NULL)
        return; /* a group this replica does not host */
    /* a follower that hears its leader only after a stall must not count
     * the stall as time since (its promise not to vote) */
    ticks_catch_up(g->srv);
    int rc = raft_step(g->node, m);
    stall_check(g);
    if (rc == -RAFT_ECORRUPT)
        ar_log(AR_LOG_WARN, "shard %u: a malformed message from node %" PRIu64 " ignored",
               g->shard, m->from);
}

static void on_event(void *ctx, raft_id peer, int status, const char *reason)
{
    static uint64_t last_ms;
    uint64_t now = mono_ms();

    (void)ctx;
    if (now - last_ms < 5000)
        return; /* rate-limited: a peer down says so every retry */
    last_ms = now;
    ar_log(AR_LOG_WARN, "raft transport: peer %" PRIu64 ": %s (%s)", peer, reason,
           uv_strerror(status));
}

/* The archive: the store opens once the map names it; each group's
 * archiver runs its jobs while this replica leads the group. */
static void archive_turn(struct meta_server *s)
{
    const struct meta_map *m = meta_shard_map(s->groups[META_MAP_SHARD].state);
    char errmsg[OBJ_ERRMSG_MAX];

    if (s->is_stopping)
        return;
    ticks_catch_up(s); /* the leases below: group_turn may have stalled */
    if (s->store == NULL && m != NULL && m->version > 0 && m->store_url[0] != '\0' &&
        mono_ms() >= s->store_retry_ms) {
        int rc = obj_store_open(m->store_url, &(struct obj_options){.workers = 2}, &s->store,
                                errmsg);
        if (rc != 0) {
            snprintf(s->store_failure, sizeof(s->store_failure),
                     "the archive cannot open the store: %s", errmsg);
            ar_log(AR_LOG_WARN, "%s (again in 10 s)", s->store_failure);
            s->store = NULL;
            s->store_retry_ms = mono_ms() + 10000u;
        } else {
            s->store_failure[0] = '\0';
        }
        for (uint32_t i = 0; i < GROUP_COUNT; i++) {
            archiver_set_store(s->groups[i].arch, s->store);
        }
    }
    for (uint32_t i = 0; i < GROUP_COUNT; i++) {
        struct group *g = &s->groups[i];
        raft_index lease = raft_lease_read(g->node);
        struct archiver_view v = {.is_leader = raft_role(g->node) == RAFT_LEADER,
                                  .has_lease = lease != 0,
                                  .commit = lease != 0 ? lease : raft_commit_index(g->node),
                                  .window_s = m != NULL ? m->window_s : 0,
                                  .ckpt = g->ckpt, .node = g->node};
        archiver_turn(g->arch, &v);
    }
}

static void on_tick(uv_timer_t *t)
{
    struct meta_server *s = t->data;

    ticks_catch_up(s);
    disk_check(s, mono_ms());
    for (uint32_t i = 0; i < GROUP_COUNT; i++) {
        stall_check(&s->groups[i]);
        session_expire(&s->groups[i]);
        lease_turn(&s->groups[i], mono_ms());
    }
    held_release(s);
    for (uint32_t i = 0; i < GROUP_COUNT; i++) {
        leader_chores(&s->groups[i]);
        group_turn(&s->groups[i]);
    }
    archive_turn(s);
}

static void on_check(uv_check_t *h)
{
    struct meta_server *s = h->data;

    takes_due(s);
    for (uint32_t i = 0; i < GROUP_COUNT; i++) {
        group_turn(&s->groups[i]);
    }
    flush_all(s);
}

/* Before the loop waits: take what resumed connections had read, write
 * what timers and callbacks answered. */
static void on_prepare(uv_prepare_t *h)
{
    takes_due(h->data);
    flush_all(h->data);
}

/* ---- start and stop ----------------------------------------------------------------------------- */

static void group_close(struct group *g)
{
    if (g->out_fd >= 0)
        close(g->out_fd);
    if (g->in_fd >= 0)
        close(g->in_fd);
    meta_shard_free(g->in_state);
    free_batches(g->ckpt_waiting, &g->ckpt_waiting_count);
    for (uint32_t i = 0; i < g->bg_count; i++) {
        ar_free(g->bg_wait[(g->bg_head + i) % BG_WAIT_MAX].frame);
    }
    for (uint32_t i = 0; i < g->pending_count; i++) {
        ar_free(g->pending[i].frame);
    }
    ar_free(g->pending);
    ar_free(g->session_ids);
    ar_free(g->session_seen_ms);
    archiver_free(g->arch);
    lease_table_free(g->leases);
    raft_node_free(g->node);
    raft_seglog_close(g->log);
    meta_checkpoint_close(g->ckpt);
    meta_shard_free(g->state);
}

/* A snapshot's install resets the log to it, then swaps its checkpoint
 * (snap-in, durable whole before the reset) in for the old one. A crash
 * between the two leaves a log that starts past the checkpoint, or no
 * checkpoint: the swap is finished here, before the checkpoint opens. A
 * snap-in that the log [first, last] does not call for is a transfer that
 * never finished: removed. */
static int install_finish(struct group *g, uint64_t first, uint64_t last, char *errmsg)
{
    char ckpt[700];
    char old[700];
    char in[700];
    char mdb[760];
    struct stat st;
    struct meta_checkpoint *ck = NULL;

    snap_path(g, "ckpt", ckpt, sizeof(ckpt));
    snap_path(g, "ckpt.old", old, sizeof(old));
    snap_path(g, "snap-in", in, sizeof(in));
    snprintf(mdb, sizeof(mdb), "%s/data.mdb", in);
    if (stat(mdb, &st) != 0)
        return 0;
    uint64_t got = 0;
    if (meta_checkpoint_open(in, &ck, errmsg) == 0)
        got = meta_checkpoint_applied_index(ck);
    meta_checkpoint_close(ck);
    ck = NULL;
    snprintf(mdb, sizeof(mdb), "%s/data.mdb", ckpt);
    bool has_ckpt = stat(mdb, &st) == 0;
    uint64_t have = 0;
    if (has_ckpt && meta_checkpoint_open(ckpt, &ck, errmsg) == 0)
        have = meta_checkpoint_applied_index(ck);
    meta_checkpoint_close(ck);
    errmsg[0] = '\0';
    if ((has_ckpt && have >= first) || got < first || got > last) {
        rm_rf(in);
        return 0;
    }
    rm_rf(old);
    if ((has_ckpt && rename(ckpt, old) != 0) || rename(in, ckpt) != 0 || sync_dir(g->dir) != 0)
        return ar_errorf(errmsg, -errno, "shard %u: cannot finish installing the snapshot "
                         "at %" PRIu64 ": %s", g->shard, got, strerror(errno));
    rm_rf(old);
    ar_log(AR_LOG_INFO, "shard %u: finished installing the snapshot at %" PRIu64
           " (a stop interrupted it)", g->shard, got);
    return 0;
}

/* The log, then the shard from its checkpoint (or new), then the node. */
static int group_open(struct meta_server *s, struct group *g, uint32_t shard, char *errmsg)
{
    struct raft_seglog_options lo;
    struct raft_options o;
    struct raft_boot b = {0};
    char path[700];
    uint64_t applied = 0;

    g->srv = s;
    g->shard = shard;
    g->leases = lease_table_new(LEASE_INOS_MAX); /* without memory: no leases */
    g->lease_epoch = 1;
    g->lease_rotated_ms = mono_ms();
    snprintf(g->dir, sizeof(g->dir), "%s/shard-%u", s->cfg.data_dir, g->shard);
    snprintf(path, sizeof(path), "%s/log", g->dir);
    raft_seglog_options_init(&lo);
    if (s->cfg.has_log_retain)
        lo.retain_ns = (uint64_t)s->cfg.log_retain_s * 1000000000ull;
    else if (s->cfg.window_s > 0)
        lo.retain_ns = (uint64_t)s->cfg.window_s * 1000000000ull;
    if (s->cfg.log_segment_bytes > 0)
        lo.segment_bytes = s->cfg.log_segment_bytes;
    int rc = raft_seglog_open(path, &lo, &g->log, &b, errmsg);
    raft_index last = b.snapshot_index + b.entry_count;
    if (rc == 0)
        rc = install_finish(g, b.snapshot_index, last, errmsg);
    snprintf(path, sizeof(path), "%s/ckpt", g->dir);
    if (rc == 0)
        rc = meta_checkpoint_open(path, &g->ckpt, errmsg);
    /* a loaded state tracks its changes from the checkpoint; a new one
     * goes into its first checkpoint whole */
    if (rc == 0 && meta_checkpoint_applied_index(g->ckpt) > 0) {
        rc = meta_checkpoint_load(g->ckpt, &g->state, &applied, errmsg);
    } else if (rc == 0) {
        rc = meta_shard_new_first(shard, &g->state);
        if (rc == 0)
            rc = meta_shard_track(g->state);
    }
    struct archiver_options ao = {.shard = shard, .work_dir = g->dir,
                                  .batch_ms = s->cfg.archive_ms, .ckpt_s = s->cfg.archive_ckpt_s,
                                  .gc_every_s = s->cfg.gc_every_s};
    if (rc == 0)
        rc = archiver_new(s->loop, &ao, &g->arch);
    if (rc != 0)
        return rc;
    if (meta_shard_self(g->state)->id != shard) {
        snprintf(errmsg, AR_ERRMSG_MAX, "%s/ckpt holds shard %u, not %u", g->dir,
                 meta_shard_self(g->state)->id, shard);
        return -AR_ECORRUPT;
    }
    if (b.config.voter_count == 0) {
        snprintf(errmsg, AR_ERRMSG_MAX, "%s holds no members: not formatted (arbor format)", path);
        return -EINVAL;
    }
    if (applied < b.snapshot_index || applied > last) {
        snprintf(errmsg, AR_ERRMSG_MAX,
                 "shard %u: the checkpoint is at %" PRIu64 ", the log holds %" PRIu64 "..%" PRIu64,
                 g->shard, applied, b.snapshot_index, last);
        return -AR_ECORRUPT;
    }
    b.applied = applied;
    raft_options_init(&o, s->cfg.id);
    o.election_ticks = 20; /* 200 ms: a new leader well within 3 s of a crash */
    o.heartbeat_ticks = 2;
    /* two ticks of drift between replicas, and the part of a tick not
     * yet counted (ticks_catch_up) */
    o.lease_margin_ticks = 3;
    o.seed = s->cfg.id ^ wall_ns();
    o.is_apply_unstable = true; /* answer once a quorum holds an entry (see maybe_checkpoint) */
    rc = raft_node_new(&o, &b, &g->node);
    if (rc != 0)
        snprintf(errmsg, AR_ERRMSG_MAX, "shard %u: the stored log does not hold together",
                 g->shard);
    g->last_ckpt_ms = mono_ms();
    return rc;
}

static const struct meta_server_node *self_node(const struct meta_server_config *c)
{
    for (uint32_t i = 0; i < c->node_count; i++) {
        if (c->nodes[i].id == c->id)
            return &c->nodes[i];
    }
    return NULL;
}

static int start_network(struct meta_server *s, char *errmsg)
{
    const struct meta_server_node *me = self_node(&s->cfg);
    char host[64];
    uint16_t port;
    struct sockaddr_storage addr;

    if (meta_addr_parse(me->raft_addr, host, sizeof(host), &port) != 0) {
        snprintf(errmsg, AR_ERRMSG_MAX, "bad raft address %s", me->raft_addr);
        return -EINVAL;
    }
    struct raft_transport_options to = {.id = s->cfg.id, .host = host, .port = port,
                                        .recv = on_recv, .event = on_event, .ctx = s};
    int rc = raft_transport_start(s->loop, &to, &s->transport, errmsg);
    for (uint32_t i = 0; rc == 0 && i < s->cfg.node_count; i++) {
        const struct meta_server_node *n = &s->cfg.nodes[i];
        if (n->id == s->cfg.id)
            continue;
        if (meta_addr_parse(n->raft_addr, host, sizeof(host), &port) != 0)
            return ar_errorf(errmsg, -EINVAL, "node %" PRIu64 ": bad raft address %s", n->id,
                             n->raft_addr);
        rc = raft_transport_add_peer(s->transport, n->id, host, port);
    }
    if (rc != 0)
        return rc;
    if (meta_addr_parse(me->client_addr, host, sizeof(host), &port) != 0 ||
        (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
         uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0)) {
        snprintf(errmsg, AR_ERRMSG_MAX, "bad client address %s", me->client_addr);
        return -EINVAL;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    s->open_handles++;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 512, accepted);
    if (rc != 0)
        snprintf(errmsg, AR_ERRMSG_MAX, "cannot listen for clients on %s: %s", me->client_addr,
                 uv_strerror(rc));
    return rc;
}

int meta_server_start(struct uv_loop_s *loop, const struct meta_server_config *cfg,
                      struct meta_server **out, char *errmsg)
{
    AR_ASSERT(loop != NULL && cfg != NULL && out != NULL && errmsg != NULL);
    if (cfg->node_count == 0 || cfg->node_count > META_SERVER_NODES_MAX ||
        self_node(cfg) == NULL) {
        snprintf(errmsg, AR_ERRMSG_MAX, "node %" PRIu64 " is not in the cluster", cfg->id);
        return -EINVAL;
    }
    struct meta_server *s = ar_calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->loop = loop;
    s->cfg = *cfg;
    if (s->cfg.log_keep == 0)
        s->cfg.log_keep = LOG_KEEP_DEFAULT;
    if (s->cfg.session_timeout_ms == 0)
        s->cfg.session_timeout_ms = SESSION_TIMEOUT_DEFAULT_MS;
    if (s->cfg.disk_reserve_bytes == 0)
        s->cfg.disk_reserve_bytes = DISK_RESERVE_DEFAULT;
    s->tx = ar_malloc(CONN_RX_MAX);
    s->enc = ar_malloc(META_MSG_BYTES_MAX);
    bool has_sessions = true;
    for (uint32_t i = 0; i < GROUP_COUNT; i++) {
        s->groups[i].session_ids = ar_malloc(sizeof(uint64_t) * SESSIONS_MAX);
        s->groups[i].session_seen_ms = ar_malloc(sizeof(uint64_t) * SESSIONS_MAX);
        has_sessions = has_sessions && s->groups[i].session_ids && s->groups[i].session_seen_ms;
        s->groups[i].out_fd = -1;
        s->groups[i].in_fd = -1;
    }
    s->cmd = ar_malloc(sizeof(*s->cmd));
    s->entries = ar_malloc(sizeof(*s->entries) * META_READDIR_MAX);
    s->slices = ar_malloc(sizeof(*s->slices) * META_READ_SLICES_MAX);
    s->data = ar_malloc(META_XATTR_BYTES_MAX);
    int rc = s->tx && s->enc && s->cmd && s->entries && s->slices && s->data &&
                     has_sessions
                 ? 0
                 : -ENOMEM;
    char lock[600];
    snprintf(lock, sizeof(lock), "%s/lock", cfg->data_dir);
    s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (rc == 0 && (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)) {
        snprintf(errmsg, AR_ERRMSG_MAX, "%s is in use by another arbor serve", cfg->data_dir);
        rc = -EBUSY;
    }
    for (uint32_t i = 0; rc == 0 && i < GROUP_COUNT; i++) {
        rc = group_open(s, &s->groups[i], i, errmsg);
    }
    if (rc == 0)
        rc = start_network(s, errmsg);
    if (rc != 0) {
        meta_server_stop(s);
        uv_run(loop, UV_RUN_DEFAULT); /* bounded: only closes are pending */
        meta_server_free(s);
        return rc;
    }
    disk_check(s, mono_ms());
    uv_timer_init(loop, &s->tick);
    s->tick.data = s;
    s->ticked_ms = mono_ms();
    uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
    uv_check_init(loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, on_check);
    uv_prepare_init(loop, &s->prepare);
    s->prepare.data = s;
    uv_prepare_start(&s->prepare, on_prepare);
    s->open_handles += 3;
    *out = s;
    ar_log(AR_LOG_INFO, "node %" PRIu64 " serving shards 0..%u: clients on %s, raft on %s",
           cfg->id, GROUP_COUNT - 1, self_node(cfg)->client_addr, self_node(cfg)->raft_addr);
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    struct meta_server *s = h->data;

    s->open_handles--;
}

void meta_server_stop(struct meta_server *s)
{
    if (s == NULL || s->is_stopping)
        return;
    s->is_stopping = true;
    if (s->open_handles >= 3 && uv_is_active((uv_handle_t *)&s->tick)) {
        uv_close((uv_handle_t *)&s->tick, handle_closed);
        uv_close((uv_handle_t *)&s->check, handle_closed);
        uv_close((uv_handle_t *)&s->prepare, handle_closed);
    }
    if (s->listener.data == s && !uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, handle_closed);
    for (uint32_t i = 0; i < CONNS_MAX; i++) {
        if (s->conns[i] != NULL)
            conn_close(s->conns[i]);
    }
    raft_transport_stop(s->transport);
    s->transport = NULL; /* it frees itself as its handles close: send nothing more */
}

void meta_server_free(struct meta_server *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < GROUP_COUNT; i++) {
        struct group *g = &s->groups[i];
        AR_ASSERT(!g->is_persisting && !g->is_checkpointing && !g->is_exporting);
        group_close(g);
    }
    for (uint32_t i = 0; i < s->held_count; i++) {
        ar_free(s->held[i]);
    }
    ar_free(s->held);
    obj_store_close(s->store);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    ar_free(s->tx);
    ar_free(s->enc);
    ar_free(s->cmd);
    ar_free(s->entries);
    ar_free(s->slices);
    ar_free(s->data);
    ar_free(s);
}

/* ---- formatting (cluster.c reads the cluster file back) ------------------------------------------- */

static bool is_known_node_cfg(const struct meta_server_config *cfg, uint64_t id)
{
    for (uint32_t i = 0; i < cfg->node_count; i++) {
        if (cfg->nodes[i].id == id)
            return true;
    }
    return false;
}

/* Whether dir holds a name that is not a replica's own (an earlier format
 * cut short leaves only these); the first such into name. */
static bool holds_strangers(const char *dir, char *name, size_t cap)
{
    static const char *const own[] = {".", "..", "shard-0", "shard-1", "blocks", "lock",
                                      "cluster.tmp", "lost+found"}; /* and a new disk's */
    DIR *d = opendir(dir);
    struct dirent *e;
    bool is_stranger = false;

    /* bounded by the directory's entries */
    while (d != NULL && !is_stranger && (e = readdir(d)) != NULL) {
        is_stranger = true;
        for (size_t i = 0; i < AR_ARRAY_LEN(own) && is_stranger; i++)
            is_stranger = strcmp(e->d_name, own[i]) != 0;
        if (is_stranger)
            snprintf(name, cap, "%s", e->d_name);
    }
    if (d != NULL)
        closedir(d);
    return is_stranger;
}

/* What format is given, checked before anything is made; the first
 * members into rc_cfg. */
static int format_check(const struct meta_server_config *cfg, struct raft_config *rc_cfg,
                        char *errmsg)
{
    char path[700];
    char stranger[256];

    if (cfg->node_count == 0 || cfg->node_count > RAFT_VOTERS_MAX)
        return ar_errorf(errmsg, -EINVAL, "a cluster has 1 to %u members, not %u",
                         RAFT_VOTERS_MAX, cfg->node_count);
    if (self_node(cfg) == NULL)
        return ar_errorf(errmsg, -EINVAL, "--id %" PRIu64 " is not among the --nodes", cfg->id);
    if (strpbrk(cfg->volume, " \t\n") != NULL) /* the cluster file's line for it */
        return ar_errorf(errmsg, -EINVAL, "the volume name '%s' holds a blank", cfg->volume);
    snprintf(path, sizeof(path), "%s/cluster", cfg->data_dir);
    if (access(path, F_OK) == 0)
        return ar_errorf(errmsg, -EEXIST, "%s is already formatted (%s)", cfg->data_dir, path);
    if (holds_strangers(cfg->data_dir, stranger, sizeof(stranger)))
        return ar_errorf(errmsg, -ENOTEMPTY, "%s is not empty (it holds %s): format a new or "
                         "empty directory", cfg->data_dir, stranger);
    *rc_cfg = (struct raft_config){.voter_count = cfg->node_count};
    for (uint32_t i = 0; i < cfg->node_count; i++) {
        rc_cfg->voters[i] = cfg->nodes[i].id;
    }
    if (cfg->voter_count > 0)
        rc_cfg->voter_count = cfg->voter_count;
    for (uint32_t i = 0; i < cfg->voter_count; i++) {
        if (!is_known_node_cfg(cfg, cfg->voters[i]))
            return ar_errorf(errmsg, -EINVAL, "voter %" PRIu64 " is not among the nodes",
                             cfg->voters[i]);
        for (uint32_t k = 0; k < i; k++) {
            if (cfg->voters[k] == cfg->voters[i])
                return ar_errorf(errmsg, -EINVAL, "voter %" PRIu64 " is named twice",
                                 cfg->voters[i]);
        }
        rc_cfg->voters[i] = cfg->voters[i];
    }
    return 0;
}

/* The data directory made, and the store's URL into store (cap bytes):
 * the one given, else file://DATA_DIR/blocks, made. */
static int format_store(const struct meta_server_config *cfg, char *store, size_t cap,
                        char *errmsg)
{
    if (mkdir(cfg->data_dir, 0755) != 0 && errno != EEXIST)
        return ar_errorf(errmsg, -errno, "cannot make %s: %s", cfg->data_dir, strerror(errno));
    char *abs = realpath(cfg->data_dir, NULL);
    int n = cfg->store_url[0] != '\0'
                ? snprintf(store, cap, "%s", cfg->store_url)
                : snprintf(store, cap, "file://%s/blocks", abs != NULL ? abs : cfg->data_dir);
    free(abs);
    if (n < 0 || (size_t)n >= cap)
        return ar_errorf(errmsg, -ENAMETOOLONG, "the store URL would be longer than %zu bytes: "
                         "name a shorter data directory, or a --store", cap - 1);
    if (cfg->store_url[0] == '\0' && mkdir(store + 7, 0755) != 0 && errno != EEXIST)
        return ar_errorf(errmsg, -errno, "cannot make %s: %s", store + 7, strerror(errno));
    if (strpbrk(store, " \t\n") != NULL)
        return ar_errorf(errmsg, -EINVAL, "the store URL %s holds a blank", store);
    return 0;
}

/* The cluster file, last and atomically: its presence means "formatted". */
static int format_cluster_file(const struct meta_server_config *cfg, const char *store,
                               char *errmsg)
{
    char path[700];
    char tmp[720];

    snprintf(path, sizeof(path), "%s/cluster", cfg->data_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return ar_errorf(errmsg, -errno, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "arbor-cluster 1\nvolume %s\ncreated_ns %lld\nself %" PRIu64 "\n",
            cfg->volume[0] ? cfg->volume : "arbor", (long long)cfg->created_ns, cfg->id);
    fprintf(f, "store %s\nblock_bytes %u\nwindow_s %u\n", store,
            cfg->block_bytes ? cfg->block_bytes : META_BLOCK_BYTES,
            cfg->window_s ? cfg->window_s : META_WINDOW_S_DEFAULT);
    for (uint32_t i = 0; i < cfg->node_count; i++) {
        fprintf(f, "node %" PRIu64 " %s %s\n", cfg->nodes[i].id, cfg->nodes[i].raft_addr,
                cfg->nodes[i].client_addr);
    }
    bool is_ok = fflush(f) == 0 && fdatasync(fileno(f)) == 0;
    fclose(f);
    if (!is_ok || rename(tmp, path) != 0)
        return ar_errorf(errmsg, -EIO, "cannot write %s: %s", path, strerror(errno));
    int dir_fd = open(cfg->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    is_ok = dir_fd >= 0 && fsync(dir_fd) == 0; /* the rename itself on disk */
    if (dir_fd >= 0)
        close(dir_fd);
    return is_ok ? 0 : ar_errorf(errmsg, -EIO, "cannot sync %s: %s", cfg->data_dir,
                                 strerror(errno));
}

int meta_server_format(const struct meta_server_config *cfg, char *errmsg)
{
    char path[700];
    char store[256];
    struct raft_seglog_options lo;
    struct raft_seglog *log = NULL;
    struct raft_boot b;
    struct raft_config rc_cfg;
    int rc = format_check(cfg, &rc_cfg, errmsg);

    if (rc == 0)
        rc = format_store(cfg, store, sizeof(store), errmsg);
    raft_seglog_options_init(&lo);
    for (uint32_t shard = 0; rc == 0 && shard < GROUP_COUNT; shard++) {
        snprintf(path, sizeof(path), "%s/shard-%u", cfg->data_dir, shard);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/shard-%u/log", cfg->data_dir, shard);
        rc = raft_seglog_open(path, &lo, &log, &b, errmsg);
        if (rc == 0)
            rc = raft_seglog_snapshot(log, 0, 0, 0, &rc_cfg, false, wall_ns(), errmsg);
        raft_seglog_close(log);
        log = NULL;
    }
    return rc == 0 ? format_cluster_file(cfg, store, errmsg) : rc;
}
