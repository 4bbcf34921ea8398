/* client/metaclient.c - the metadata client (client.h).
 *
 * One libuv loop on a thread of its own holds a connection per known server
 * and every call in flight. Callers hand a call over through a mutex-guarded
 * queue and uv_async_send(), then wait on the call's semaphore, which the
 * loop posts when it finishes the call; or (ar_client_start) go on at once,
 * and the loop runs their callback instead.
 *
 * A call's life: sent to the shard's leader as last learned (or the next
 * server in turn); an answer -AR_ENOTLEADER moves it to the leader named in
 * the answer (or the next server, after a pause while an election runs),
 * -AR_ESTALEEPOCH takes the shard's new epoch and sends it again, -EAGAIN
 * waits a moment and sends it again; no answer within attempt_ms, or a
 * connection lost, sends it to the next server. Every resend of a mutation
 * keeps its client id and sequence number, so the shard applies it once.
 *
 * Sequence numbers: at most META_CLIENT_REPLIES_MAX mutations are numbered
 * past the lowest one unanswered (the shard keeps that many answers per
 * client); ack_below tells the shard which answers it may forget.
 * Thread: the loop's, except the marked entry points. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "client.h"
#include "internal.h"
#include "limits.h"

#define CALLS_MAX        4096u  /* calls the loop holds at once */
#define TIMER_MS         20u
#define PAUSE_MS         50u    /* before asking again when no leader is known */
#define BUSY_PAUSE_MS    10u    /* after -EAGAIN */
#define RECONNECT_MS     200u   /* before connecting again to a server that failed */
#define SHARDS_KNOWN     META_MAP_SHARDS_MAX

struct ar_client;
struct call;

typedef void (*call_done_fn)(struct ar_client *c, struct call *k);

struct call {
    /* the caller's */
    uint32_t shard;
    enum meta_req_kind kind;
    const struct meta_cmd *cmd;  /* COMMAND: borrowed until done */
    enum meta_read_mode mode;
    uint32_t data_cap;
    uint64_t session;            /* HEARTBEAT */
    struct meta_response_buf *out;
    call_done_fn done;           /* NULL: a thread waits on finished */
    sem_t finished;              /* posted once the call is finished */
    ar_client_done_fn user_done; /* ar_client_start's */
    void *user_arg;
    int rc;
    struct call *next;           /* the submit queue */
    /* the loop's */
    uint64_t seq;                /* a mutation's number, 0 until first sent */
    uint64_t req_id;             /* the attempt in flight, 0 none */
    int conn;                    /* its connection, -1 none */
    uint32_t rotor;              /* the next server to try */
    uint64_t deadline_ms;
    uint64_t attempt_end_ms;
    uint64_t retry_at_ms;        /* req_id 0: send again from here on */
    uint64_t sent_ms;            /* the attempt in flight: when it was sent */
    bool has_answer;             /* a server answered some attempt (busy, not leader) */
    struct ar_lease_stamp stamp; /* taken when it finished */
};

enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_OPEN, CONN_CLOSING };

struct conn {
    struct ar_client *c;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    char addr[64];
    enum conn_state state;
    uint64_t retry_at_ms;        /* IDLE after a failure: not before */
    uint8_t *rx;
    size_t used;
    size_t cap;
    uint8_t *tx;                 /* requests of this loop turn */
    size_t tx_len;
    size_t tx_cap;
};

struct ar_client {
    struct ar_client_options opt;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t timer;
    uv_prepare_t flusher;
    pthread_t thread;
    pthread_mutex_t mu;          /* guards queue, is_stopping, map, stats */
    struct call *queue_head;
    struct call *queue_tail;
    bool is_stopping;
    struct conn conns[AR_CLIENT_ADDRS_MAX * 2];
    uint32_t conn_count;
    struct call *active[CALLS_MAX];
    uint32_t active_count;
    uint64_t client_id;
    uint64_t next_seq;
    uint64_t next_req_id;
    int leader[SHARDS_KNOWN];    /* a connection index, -1 unknown */
    uint64_t epoch[SHARDS_KNOWN];
    int last_connect_error;      /* atomic: libuv's status of the last connect that
                                  * failed, 0 if none did */
    uint32_t open_count;         /* atomic: connections open (the loop changes it) */
    bool has_heard;              /* atomic: some replica answered a request */
    bool is_opening;             /* in ar_client_open (its thread's alone) */
    struct meta_map map;         /* under mu */
    bool has_new_map;            /* under mu: the loop has not taken it yet */
    struct meta_map loop_map;    /* the loop's copy of it (take_map) */
    uint64_t sessions[SHARDS_KNOWN];
    /* the loop's: when the last session call the servers answered began
     * (the servers heard it no earlier), and their session timeout */
    uint64_t session_confirmed_ms[SHARDS_KNOWN];
    uint32_t session_timeout_ms;
    /* the loop's: since when a shard's calls time out (0: it answers), and
     * how many failed so, for the log */
    uint64_t out_since_ms[SHARDS_KNOWN];
    uint64_t out_failed[SHARDS_KNOWN];
    uint8_t *enc;                /* one request being encoded */
    /* attribute leases: per shard, the connection and epoch the promises
     * this client holds came from, and when the latest answer under them was
     * asked for (atomic: read by ar_client_lease_left) */
    int lease_conn[SHARDS_KNOWN];
    uint64_t lease_epoch[SHARDS_KNOWN];
    uint64_t lease_fresh_ms[SHARDS_KNOWN];
    struct ar_lease_stamp lease;  /* atomic fields */
    struct meta_response_buf *notice_out; /* a change notice, decoded */
    /* the heartbeat, the loop's own call */
    struct call hb;
    uint64_t hb_started_ms;
    struct meta_response_buf *hb_out;
    bool is_hb_busy;
    uint64_t next_hb_ms;
    struct ar_client_stats stats;
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool is_mutation(const struct call *k)
{
    return k->kind == META_REQ_COMMAND && !meta_op_is_query(k->cmd->op);
}

static void stat_add(struct ar_client *c, uint64_t *counter)
{
    pthread_mutex_lock(&c->mu);
    (*counter)++;
    pthread_mutex_unlock(&c->mu);
}

/* ---- finishing ------------------------------------------------------------------------- */

static void finish(struct ar_client *c, struct call *k, int rc)
{
    for (uint32_t i = 0; i < c->active_count; i++) {
        if (c->active[i] == k) {
            c->active[i] = c->active[--c->active_count];
            break;
        }
    }
    k->req_id = 0;
    k->rc = rc;
    ar_client_lease_stamp(c, &k->stamp);
    if (k->done != NULL) {
        k->done(c, k);
        return;
    }
    /* a semaphore a call: waking its caller takes no lock all callers share */
    sem_post(&k->finished);
}

/* A call to k's shard timed out: said once, when the shard stops serving
 * a client that had heard from the cluster (a first contact's failure is
 * the caller's error to report). The heartbeat is not counted as a call. */
static void shard_timed_out(struct ar_client *c, struct call *k)
{
    if (k->shard >= SHARDS_KNOWN || !__atomic_load_n(&c->has_heard, __ATOMIC_RELAXED))
        return;
    if (k != &c->hb)
        c->out_failed[k->shard]++;
    if (c->out_since_ms[k->shard] != 0)
        return;
    c->out_since_ms[k->shard] = k->deadline_ms - c->opt.budget_ms;
    ar_log(AR_LOG_WARN, "shard %u: %s in %g s: its calls fail (EIO on a mount) until it serves "
                        "again", k->shard,
           k->has_answer ? "replicas answered, but none could serve a call (no leader: its "
                           "quorum lost or an election running; or a busy leader)"
                         : "no replica answered a call (all stopped, or out of reach)",
           c->opt.budget_ms / 1000.0);
}

static void shard_answered(struct ar_client *c, uint32_t shard)
{
    if (shard >= SHARDS_KNOWN || c->out_since_ms[shard] == 0)
        return;
    ar_log(AR_LOG_INFO, "shard %u serves again after %.1f s; %" PRIu64 " calls failed meanwhile",
           shard, (now_ms() - c->out_since_ms[shard]) / 1000.0, c->out_failed[shard]);
    c->out_since_ms[shard] = 0;
    c->out_failed[shard] = 0;
}

/* ---- connections ----------------------------------------------------------------------- */

static void call_send(struct ar_client *c, struct call *k);
static void conn_fail(struct conn *n);
static int tx_add(struct conn *n, const uint8_t *frame, size_t len);

static int conn_find(struct ar_client *c, const char *addr)
{
    for (uint32_t i = 0; i < c->conn_count; i++) {
        if (strcmp(c->conns[i].addr, addr) == 0)
            return (int)i;
    }
    return -1;
}

/* The connection for addr, added if new (-1 if there is no room). */
static int conn_for(struct ar_client *c, const char *addr)
{
    int i = conn_find(c, addr);

    if (i >= 0 || addr[0] == '\0' || c->conn_count == AR_ARRAY_LEN(c->conns))
        return i;
    struct conn *n = &c->conns[c->conn_count];
    memset(n, 0, sizeof(*n));
    n->c = c;
    snprintf(n->addr, sizeof(n->addr), "%s", addr);
    return (int)c->conn_count++;
}

static void rx_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *n = h->data;
    size_t want = n->used + 65536;

    (void)suggested;
    if (n->used >= 4) {
        uint32_t len;
        memcpy(&len, n->rx, 4);
        if ((size_t)len + 4 > want && len <= META_FRAME_BYTES_MAX)
            want = (size_t)len + 4;
    }
    if (want > n->cap) {
        uint8_t *p = ar_realloc(n->rx, want);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS: the connection goes */
            return;
        }
        n->rx = p;
        n->cap = want;
    }
    *buf = uv_buf_init((char *)n->rx + n->used, (unsigned)(n->cap - n->used));
}

static struct call *call_by_req(struct ar_client *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->active_count; i++) {
        if (c->active[i]->req_id == id && id != 0)
            return c->active[i];
    }
    return NULL;
}

/* The connection to try after k's last one. */
static void rotate(struct ar_client *c, struct call *k)
{
    k->rotor = (k->rotor + 1) % (c->conn_count > 0 ? c->conn_count : 1);
    k->conn = -1;
}

/* Every promise this client holds is void (lease.h): what was kept goes. */
static void lease_lost(struct ar_client *c)
{
    __atomic_add_fetch(&c->lease.gen, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&c->lease.seq, 1, __ATOMIC_RELEASE);
}

/* An answer with a lease came on connection from for k. */
static void lease_answer(struct ar_client *c, int from, const struct call *k, uint64_t lease)
{
    uint32_t s = k->shard;

    if (s >= SHARDS_KNOWN)
        return;
    if (c->lease_conn[s] != from || c->lease_epoch[s] != lease) {
        /* promises from another leader, or the same one after it lost its
         * record: the old ones will not be kept */
        lease_lost(c);
        c->lease_conn[s] = from;
        c->lease_epoch[s] = lease;
        __atomic_store_n(&c->lease_fresh_ms[s], 0, __ATOMIC_RELEASE);
    }
    if (k->sent_ms > __atomic_load_n(&c->lease_fresh_ms[s], __ATOMIC_ACQUIRE))
        __atomic_store_n(&c->lease_fresh_ms[s], k->sent_ms, __ATOMIC_RELEASE);
}

static void lease_notice(struct ar_client *c, int from, const struct meta_response *r)
{
    uint32_t s = r->shard;

    if (s >= SHARDS_KNOWN || c->lease_conn[s] != from)
        return; /* about promises this client no longer counts on */
    if (c->lease_epoch[s] != r->lease) {
        lease_lost(c); /* the leader lost its record of ours */
        c->lease_conn[s] = -1;
        return;
    }
    uint64_t seq = __atomic_add_fetch(&c->lease.seq, 1, __ATOMIC_RELEASE);
    c->opt.on_notice(c->opt.notice_arg, seq, r->changed, r->changed_count, r->renamed,
                     r->renamed_count);
}

/* Tell n's server that notice (and those before it) was taken in: its
 * leader holds the answer to the change until then (META_NOTICE_WAIT_MS). */
static int notice_ack(struct ar_client *c, struct conn *n, uint64_t notice)
{
    struct meta_request req = {.kind = META_REQ_NOTICE_ACK, .notice = notice};
    size_t len;
    int rc = meta_request_encode(&req, NULL, c->enc, META_FRAME_BYTES_MAX, &len);

    return rc == 0 ? tx_add(n, c->enc, len) : rc;
}

/* The ops whose answers a caller may keep under a lease. */
static bool may_lease(const struct call *k)
{
    if (k->kind != META_REQ_COMMAND || k->mode != META_READ_LINEARIZABLE)
        return false;
    switch (k->cmd->op) {
    case META_OP_LOOKUP:
    case META_OP_GETATTR:
    case META_OP_SETATTR:
    case META_OP_MKNOD:
    case META_OP_MKDIR:
    case META_OP_SYMLINK:
    case META_OP_LINK:
    case META_OP_WRITE:
    case META_OP_FALLOCATE:
    case META_OP_READ_MAP: /* a reader's open: keeps opens from kept maps fresh */
        return true;
    default:
        return false;
    }
}

/* The servers closed session (this client was cut off past their
 * timeout), or may have: its holds are gone. A new one is opened at once;
 * holds taken under the old one are not released under the new (the mount
 * takes its open files' holds again, on_session). */
static void session_lost(struct ar_client *c, uint32_t shard, uint64_t session, const char *why)
{
    if (shard >= SHARDS_KNOWN || session == 0 || c->sessions[shard] != session)
        return;
    ar_log(AR_LOG_WARN, "metadata session %" PRIx64 " %s; opening a new one", session, why);
    stat_add(c, &c->stats.sessions_lost);
    __atomic_store_n(&c->sessions[shard], 0, __ATOMIC_RELEASE);
    c->next_hb_ms = 0;
}

static void on_answer(struct ar_client *c, struct conn *n, struct call *k)
{
    const struct meta_response *r = &k->out->r;
    uint64_t now = now_ms();

    k->req_id = 0;
    k->has_answer = true;
    if (r->rc == -AR_ENOTLEADER) {
        int hint = r->leader_addr[0] != '\0' ? conn_for(c, r->leader_addr) : -1;
        int from = (int)(n - c->conns);
        if (k->shard < SHARDS_KNOWN)
            c->leader[k->shard] = hint;
        if (hint >= 0 && hint != from) {
            k->conn = hint;
            k->rotor = (uint32_t)hint;
            call_send(c, k);
            return;
        }
        rotate(c, k); /* no leader known yet: an election runs */
        k->retry_at_ms = now + PAUSE_MS;
        return;
    }
    if (r->rc == -AR_ESTALEEPOCH && r->epoch != 0 && k->shard < SHARDS_KNOWN &&
        r->epoch != c->epoch[k->shard]) {
        c->epoch[k->shard] = r->epoch;
        call_send(c, k);
        return;
    }
    if (r->rc == -EAGAIN) {
        k->retry_at_ms = now + BUSY_PAUSE_MS;
        return;
    }
    if (r->rc == 0 && r->lease != 0)
        lease_answer(c, (int)(n - c->conns), k, r->lease);
    if (r->rc == -ESTALE && k->kind == META_REQ_COMMAND && k->cmd->session != 0)
        session_lost(c, k->shard, k->cmd->session, "expired (the servers closed it)");
    shard_answered(c, k->shard);
    finish(c, k, r->rc);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *n = s->data;
    struct ar_client *c = n->c;
    size_t at = 0;

    (void)buf;
    if (nread < 0) {
        conn_fail(n);
        return;
    }
    n->used += (size_t)nread;
    /* bounded: each turn takes one whole frame */
    while (n->used - at >= 4) {
        uint32_t len;
        uint64_t id;
        memcpy(&len, n->rx + at, 4);
        if (len > META_FRAME_BYTES_MAX) {
            conn_fail(n);
            return;
        }
        if (n->used - at - 4 < len)
            break;
        const uint8_t *frame = n->rx + at + 4;
        at += 4 + (size_t)len;
        if (meta_response_id(frame, len, &id) != 0)
            id = UINT64_MAX; /* matches no call: skipped below */
        __atomic_store_n(&c->has_heard, true, __ATOMIC_RELAXED);
        if (c->opt.on_notice != NULL && id == 0) {
            /* a change notice (or a failure the server could not match) */
            if (meta_response_decode(frame, len, c->notice_out) != 0) {
                conn_fail(n);
                return;
            }
            if (c->notice_out->r.lease != 0)
                lease_notice(c, (int)(n - c->conns), &c->notice_out->r);
            if (c->notice_out->r.notice != 0 && notice_ack(c, n, c->notice_out->r.notice) != 0) {
                conn_fail(n); /* unacked, its server would hold others' answers */
                return;
            }
            continue;
        }
        struct call *k = call_by_req(c, id);
        if (k == NULL)
            continue; /* an answer to an attempt given up on */
        if (meta_response_decode(frame, len, k->out) != 0) {
            conn_fail(n); /* a server that speaks nonsense: ask another */
            return;
        }
        on_answer(c, n, k);
    }
    memmove(n->rx, n->rx + at, n->used - at);
    n->used -= at;
}

static void conn_closed(uv_handle_t *h)
{
    struct conn *n = h->data;

    n->state = CONN_IDLE;
    n->used = 0;
    n->tx_len = 0;
}

/* The connection is gone: its calls go elsewhere. */
static void conn_fail(struct conn *n)
{
    struct ar_client *c = n->c;
    int index = (int)(n - c->conns);

    if (n->state == CONN_CLOSING || n->state == CONN_IDLE)
        return;
    if (n->state == CONN_OPEN)
        __atomic_sub_fetch(&c->open_count, 1, __ATOMIC_RELAXED);
    n->state = CONN_CLOSING;
    n->retry_at_ms = now_ms() + RECONNECT_MS;
    uv_close((uv_handle_t *)&n->tcp, conn_closed);
    for (uint32_t i = 0; i < SHARDS_KNOWN; i++) {
        if (c->leader[i] == index)
            c->leader[i] = -1;
        if (c->lease_conn[i] == index) {
            lease_lost(c); /* its notices may be lost with it */
            c->lease_conn[i] = -1;
        }
    }
    for (uint32_t i = 0; i < c->active_count; i++) {
        struct call *k = c->active[i];
        if (k->conn != index)
            continue;
        if (k->req_id != 0)
            stat_add(c, &c->stats.resends);
        k->req_id = 0;
        rotate(c, k);
        k->retry_at_ms = now_ms(); /* the timer sends it on */
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *n = req->data;
    struct ar_client *c = n->c;

    if (n->state != CONN_CONNECTING)
        return;
    if (status < 0)
        __atomic_store_n(&c->last_connect_error, status, __ATOMIC_RELAXED);
    if (status < 0 || uv_read_start((uv_stream_t *)&n->tcp, rx_alloc, on_read) != 0) {
        conn_fail(n);
        return;
    }
    n->state = CONN_OPEN;
    __atomic_add_fetch(&c->open_count, 1, __ATOMIC_RELAXED);
    uv_tcp_nodelay(&n->tcp, 1);
    int index = (int)(n - c->conns);
    for (uint32_t i = 0; i < c->active_count; i++) {
        struct call *k = c->active[i];
        if (k->conn == index && k->req_id == 0)
            call_send(c, k);
    }
}

static int conn_start(struct ar_client *c, struct conn *n)
{
    char host[64];
    struct sockaddr_storage sa;
    const char *colon = strrchr(n->addr, ':');

    if (colon == NULL || (size_t)(colon - n->addr) >= sizeof(host))
        return -EINVAL;
    memcpy(host, n->addr, (size_t)(colon - n->addr));
    host[colon - n->addr] = '\0';
    int port = atoi(colon + 1);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) != 0)
        return -EINVAL;
    uv_tcp_init(&c->loop, &n->tcp);
    n->tcp.data = n;
    n->connect_req.data = n;
    n->state = CONN_CONNECTING;
    int rc = uv_tcp_connect(&n->connect_req, &n->tcp, (const struct sockaddr *)&sa, on_connect);
    if (rc != 0) {
        n->state = CONN_CLOSING;
        n->retry_at_ms = now_ms() + RECONNECT_MS;
        uv_close((uv_handle_t *)&n->tcp, conn_closed);
    }
    return rc;
}

/* Before the loop waits: each connection's requests in one write. */
static void written(uv_write_t *w, int status)
{
    (void)status; /* a failed write: the read side sees the connection go */
    ar_free(w->data);
    ar_free(w);
}

static void flush_conns(uv_prepare_t *h)
{
    struct ar_client *c = h->data;

    for (uint32_t i = 0; i < c->conn_count; i++) {
        struct conn *n = &c->conns[i];
        if (n->tx_len == 0 || n->state != CONN_OPEN)
            continue;
        uv_buf_t buf = uv_buf_init((char *)n->tx, (unsigned)n->tx_len);
        int w = uv_try_write((uv_stream_t *)&n->tcp, &buf, 1);
        size_t done = w > 0 ? (size_t)w : 0;
        if (w < 0 && w != UV_EAGAIN) {
            conn_fail(n);
            continue;
        }
        if (done < n->tx_len) {
            uv_write_t *wr = ar_malloc(sizeof(*wr));
            uint8_t *rest = ar_malloc(n->tx_len - done);
            if (wr == NULL || rest == NULL) {
                ar_free(wr);
                ar_free(rest);
                conn_fail(n); /* a request cut in the middle: start the connection over */
                continue;
            }
            memcpy(rest, n->tx + done, n->tx_len - done);
            wr->data = rest;
            buf = uv_buf_init((char *)rest, (unsigned)(n->tx_len - done));
            if (uv_write(wr, (uv_stream_t *)&n->tcp, &buf, 1, written) != 0) {
                ar_free(rest);
                ar_free(wr);
                conn_fail(n);
                continue;
            }
        }
        n->tx_len = 0;
    }
}

/* ---- sending ---------------------------------------------------------------------------- */

/* The lowest sequence number not answered yet (next_seq + 1 if none). */
static uint64_t lowest_open_seq(const struct ar_client *c)
{
    uint64_t low = c->next_seq + 1;

    for (uint32_t i = 0; i < c->active_count; i++) {
        const struct call *k = c->active[i];
        if (k->seq != 0 && k->seq < low)
            low = k->seq;
    }
    return low;
}

/* Queue frame[0..len) for n's next write (flush_conns). */
static int tx_add(struct conn *n, const uint8_t *frame, size_t len)
{
    if (n->tx_cap - n->tx_len < len) {
        size_t cap = n->tx_cap < 65536 ? 65536 : n->tx_cap;
        while (cap - n->tx_len < len) {
            cap *= 2;
        }
        uint8_t *p = ar_realloc(n->tx, cap);
        if (p == NULL)
            return -ENOMEM;
        n->tx = p;
        n->tx_cap = cap;
    }
    memcpy(n->tx + n->tx_len, frame, len);
    n->tx_len += len;
    return 0;
}

static int encode(struct ar_client *c, struct call *k, struct conn *n)
{
    struct meta_request req = {.id = ++c->next_req_id, .shard = k->shard, .kind = k->kind,
                               .read_mode = k->mode, .data_cap = k->data_cap,
                               .session = k->session, .is_background = c->opt.is_background,
                               .wants_lease = c->opt.on_notice != NULL && may_lease(k)};
    struct meta_cmd cmd;
    size_t len;

    req.epoch = k->shard < SHARDS_KNOWN ? c->epoch[k->shard] : 1;
    if (k->kind == META_REQ_COMMAND) {
        cmd = *k->cmd;
        if (k->seq != 0) {
            cmd.client_id = c->client_id;
            cmd.seq = k->seq;
            cmd.ack_below = lowest_open_seq(c);
        }
    }
    int rc = meta_request_encode(&req, k->kind == META_REQ_COMMAND ? &cmd : NULL, c->enc,
                                 META_FRAME_BYTES_MAX, &len);
    if (rc == 0)
        rc = tx_add(n, c->enc, len);
    if (rc == 0)
        k->req_id = req.id;
    return rc;
}

/* Send k (again): to the shard's leader if known, else the next server. */
static void call_send(struct ar_client *c, struct call *k)
{
    uint64_t now = now_ms();

    k->req_id = 0;
    k->retry_at_ms = UINT64_MAX; /* something below sets when to try again */
    if (now >= k->deadline_ms) {
        shard_timed_out(c, k);
        finish(c, k, -ETIMEDOUT);
        return;
    }
    if (is_mutation(k) && k->seq == 0) {
        /* the shard keeps META_CLIENT_REPLIES_MAX answers: number no further ahead */
        if (c->next_seq + 1 >= lowest_open_seq(c) + META_CLIENT_REPLIES_MAX) {
            k->retry_at_ms = now + 1;
            return;
        }
        k->seq = ++c->next_seq;
    }
    if (k->conn < 0) {
        int hint = k->shard < SHARDS_KNOWN ? c->leader[k->shard] : -1;
        k->conn = hint >= 0 ? hint : (int)(k->rotor % c->conn_count);
    }
    struct conn *n = &c->conns[k->conn];
    if (n->state == CONN_IDLE && now >= n->retry_at_ms && conn_start(c, n) != 0) {
        rotate(c, k);
        k->retry_at_ms = now + PAUSE_MS;
        return;
    }
    if (n->state == CONN_IDLE || n->state == CONN_CLOSING) {
        rotate(c, k); /* down for now: the next one */
        k->retry_at_ms = now + (c->conn_count > 1 ? 0 : PAUSE_MS);
        return;
    }
    if (n->state == CONN_CONNECTING)
        return; /* on_connect sends it */
    int rc = encode(c, k, n);
    if (rc != 0) {
        finish(c, k, rc);
        return;
    }
    k->sent_ms = now;
    k->attempt_end_ms = now + c->opt.attempt_ms;
}

static void call_start(struct ar_client *c, struct call *k)
{
    if (c->active_count == CALLS_MAX) {
        finish(c, k, -EAGAIN); /* not in active: finish() only signals */
        return;
    }
    c->active[c->active_count++] = k;
    k->deadline_ms = now_ms() + c->opt.budget_ms;
    k->conn = -1;
    k->seq = 0;
    k->has_answer = false;
    call_send(c, k);
}

/* ---- the loop's own work ------------------------------------------------------------------ */

static void hb_done(struct ar_client *c, struct call *k)
{
    c->is_hb_busy = false;
    /* beat at least three times within the servers' timeout */
    uint32_t timeout = k->rc == 0 ? k->out->r.session_timeout_ms : 0;
    if (timeout > 0 && c->opt.heartbeat_ms > timeout / 3) {
        c->opt.heartbeat_ms = timeout / 3 > 0 ? timeout / 3 : 1;
        c->next_hb_ms = now_ms() + c->opt.heartbeat_ms;
    }
    if (timeout > 0)
        c->session_timeout_ms = timeout;
    if (k->kind == META_REQ_SESSION_OPEN && k->rc == 0) {
        bool is_new = c->sessions[k->shard] == 0 && c->session_confirmed_ms[k->shard] != 0;
        c->session_confirmed_ms[k->shard] = c->hb_started_ms;
        __atomic_store_n(&c->sessions[k->shard], k->out->r.session, __ATOMIC_RELEASE);
        if (is_new && c->opt.on_session != NULL)
            c->opt.on_session(c->opt.session_arg, k->shard, k->out->r.session);
        return;
    }
    if (k->kind == META_REQ_HEARTBEAT && k->rc == 0 && k->session == c->sessions[k->shard])
        c->session_confirmed_ms[k->shard] = c->hb_started_ms;
    if (k->kind == META_REQ_HEARTBEAT && k->rc == -ESTALE)
        session_lost(c, k->shard, k->session, "expired (the servers closed it)");
}

/* A session no answer has confirmed for most of the servers' timeout may
 * be closed already: by a leader since replaced, whose successor would
 * take it back as one it never knew, and then nothing would tell this
 * client its holds went. So the client lets it go first. The servers
 * count their timeout from a heartbeat's arrival, the client from its
 * start; an eighth is left for the clocks' rates. */
static void session_check(struct ar_client *c, uint64_t now)
{
    uint64_t session = c->sessions[META_ROOT_SHARD];
    uint64_t limit = c->session_timeout_ms - c->session_timeout_ms / 8;
    char why[128];

    if (session == 0 || c->session_timeout_ms == 0 ||
        now - c->session_confirmed_ms[META_ROOT_SHARD] <= limit)
        return;
    snprintf(why, sizeof(why), "was not confirmed for %" PRIu64 " ms (the servers close one "
             "silent for %u ms)", now - c->session_confirmed_ms[META_ROOT_SHARD],
             c->session_timeout_ms);
    session_lost(c, META_ROOT_SHARD, session, why);
}

static void heartbeat(struct ar_client *c, uint64_t now)
{
    if (!c->opt.has_no_session)
        session_check(c, now);
    if (c->opt.has_no_session || c->is_hb_busy || now < c->next_hb_ms)
        return;
    c->next_hb_ms = now + c->opt.heartbeat_ms;
    c->hb_started_ms = now;
    uint64_t session = c->sessions[META_ROOT_SHARD];
    c->hb = (struct call){.shard = META_ROOT_SHARD, .out = c->hb_out, .done = hb_done,
                          .kind = session != 0 ? META_REQ_HEARTBEAT : META_REQ_SESSION_OPEN,
                          .session = session};
    c->is_hb_busy = true;
    call_start(c, &c->hb);
}

static void on_timer(uv_timer_t *t)
{
    struct ar_client *c = t->data;
    uint64_t now = now_ms();

    for (uint32_t i = 0; i < c->active_count;) {
        struct call *k = c->active[i];
        uint32_t before = c->active_count;
        if (now >= k->deadline_ms) {
            shard_timed_out(c, k);
            finish(c, k, -ETIMEDOUT);
        } else if (k->req_id != 0 && now >= k->attempt_end_ms) {
            stat_add(c, &c->stats.resends); /* no answer: ask the next server */
            rotate(c, k);
            call_send(c, k);
        } else if (k->req_id == 0 && now >= k->retry_at_ms) {
            stat_add(c, &c->stats.resends);
            call_send(c, k);
        }
        if (c->active_count == before)
            i++; /* else the slot holds another call now */
    }
    heartbeat(c, now);
}

static void close_all(struct ar_client *c)
{
    for (uint32_t i = 0; i < c->conn_count; i++) {
        struct conn *n = &c->conns[i];
        if (n->state == CONN_OPEN)
            __atomic_sub_fetch(&c->open_count, 1, __ATOMIC_RELAXED);
        if (n->state == CONN_CONNECTING || n->state == CONN_OPEN) {
            n->state = CONN_CLOSING;
            uv_close((uv_handle_t *)&n->tcp, conn_closed);
        }
    }
    uv_close((uv_handle_t *)&c->wake, NULL);
    uv_close((uv_handle_t *)&c->timer, NULL);
    uv_close((uv_handle_t *)&c->flusher, NULL);
}

/* A new map: its epochs, and its members' addresses, so that every server
 * is reachable whichever ones the options named. */
static void take_map(struct ar_client *c)
{
    struct meta_map *m = &c->loop_map;

    pthread_mutex_lock(&c->mu);
    bool is_new = c->has_new_map;
    if (is_new)
        *m = c->map;
    c->has_new_map = false;
    pthread_mutex_unlock(&c->mu);
    if (!is_new)
        return;
    for (uint32_t i = 0; i < m->shard_count; i++) {
        if (m->shards[i].id < SHARDS_KNOWN)
            c->epoch[m->shards[i].id] = m->shards[i].epoch;
    }
    for (uint32_t i = 0; i < m->member_count; i++) {
        conn_for(c, m->members[i].client_addr);
    }
}

static void on_wake(uv_async_t *a)
{
    struct ar_client *c = a->data;

    take_map(c);
    pthread_mutex_lock(&c->mu);
    struct call *k = c->queue_head;
    bool is_stopping = c->is_stopping;
    c->queue_head = c->queue_tail = NULL;
    pthread_mutex_unlock(&c->mu);
    /* bounded by the calls queued */
    while (k != NULL) {
        struct call *next = k->next;
        call_start(c, k);
        k = next;
    }
    if (is_stopping) {
        while (c->active_count > 0) {
            finish(c, c->active[c->active_count - 1], -ECANCELED);
        }
        close_all(c);
    }
}

void ar_thread_lower_priority(void)
{
    /* under Linux the nice value is each thread's own, and PRIO_PROCESS
     * with who 0 names the calling thread (setpriority(2)) */
    (void)setpriority(PRIO_PROCESS, 0, 19);
}

static void *loop_main(void *arg)
{
    struct ar_client *c = arg;

    if (c->opt.is_low_priority)
        ar_thread_lower_priority();
    uv_run(&c->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- the entry points (any thread) ---------------------------------------------------------- */

/* Queue k for the loop; -ECANCELED if the client is stopping. */
static int submit(struct ar_client *c, struct call *k)
{
    pthread_mutex_lock(&c->mu);
    bool is_stopping = c->is_stopping;
    if (!is_stopping) {
        if (c->queue_tail != NULL)
            c->queue_tail->next = k;
        else
            c->queue_head = k;
        c->queue_tail = k;
        c->stats.calls++;
    }
    pthread_mutex_unlock(&c->mu);
    if (is_stopping)
        return -ECANCELED;
    uv_async_send(&c->wake);
    return 0;
}

/* The addresses the client was given, "a,b,c", into out. */
static void addrs_text(const struct ar_client *c, char *out, size_t cap)
{
    out[0] = '\0';
    for (uint32_t i = 0; i < c->opt.addr_count; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "", c->opt.addrs[i]);
}

/* Why no replica answered, for the messages that say so: " (...)", or
 * "" when nothing is known. A connect error is named only while some
 * replica is not connected (it may be older than a connect that worked). */
static void silence_text(struct ar_client *c, char *out, size_t cap)
{
    uint32_t open = __atomic_load_n(&c->open_count, __ATOMIC_RELAXED);
    int err = __atomic_load_n(&c->last_connect_error, __ATOMIC_RELAXED);
    const char *why = err != 0 && open < c->opt.addr_count ? uv_strerror(err) : NULL;
    const char *replicas = open == 1 ? "replica" : "replicas";

    if (open > 0 && why != NULL)
        snprintf(out, cap, " (%u %s connected but silent; the others: %s)", open, replicas, why);
    else if (open > 0)
        snprintf(out, cap, " (%u %s connected but silent)", open, replicas);
    else if (why != NULL)
        snprintf(out, cap, " (%s)", why);
    else
        out[0] = '\0';
}

/* Wait for k to finish: bounded, the loop finishes every call by its
 * deadline. While the client opens and no replica has answered, say so
 * once after quiet_ms: a wrong address or a cluster that is down would
 * otherwise keep a command silent for the whole budget. */
static void call_wait(struct ar_client *c, struct call *k)
{
    struct timespec at = {0};
    bool is_said = !c->is_opening; /* every call after the open: a plain wait */

    AR_ASSERT(c != NULL && k != NULL);
    if (!is_said) {
        clock_gettime(CLOCK_REALTIME, &at); /* sem_timedwait's clock */
        uint64_t ns = (uint64_t)at.tv_nsec + (uint64_t)c->opt.quiet_ms * 1000000u;
        at.tv_sec += (time_t)(ns / 1000000000u);
        at.tv_nsec = (long)(ns % 1000000000u);
    }
    for (;;) {
        if ((is_said ? sem_wait(&k->finished) : sem_timedwait(&k->finished, &at)) == 0)
            return;
        if (errno != ETIMEDOUT)
            continue; /* EINTR */
        is_said = true;
        if (__atomic_load_n(&c->has_heard, __ATOMIC_RELAXED))
            continue;
        char addrs[AR_CLIENT_ADDRS_MAX * 66];
        char why[160];
        addrs_text(c, addrs, sizeof(addrs));
        silence_text(c, why, sizeof(why));
        ar_log(AR_LOG_WARN, "no replica at %.120s has answered yet%s; trying for up to "
               "%.0f s in all", addrs, why, c->opt.budget_ms / 1000.0);
    }
}

/* A call, waited for; stamp (if not NULL) gets the lease stamp of its answer. */
static int request(struct ar_client *c, uint32_t shard, enum meta_req_kind kind,
                   const struct meta_cmd *cmd, enum meta_read_mode mode, uint32_t data_cap,
                   struct meta_response_buf *out, struct ar_lease_stamp *stamp)
{
    struct call k = {.shard = shard, .kind = kind, .cmd = cmd, .mode = mode,
                     .data_cap = data_cap, .out = out};

    sem_init(&k.finished, 0, 0);
    int rc = submit(c, &k);
    if (rc == 0)
        call_wait(c, &k);
    sem_destroy(&k.finished);
    if (stamp != NULL)
        *stamp = k.stamp;
    return rc != 0 ? rc : k.rc;
}

/* An ar_client_start call ended: its callback, then it is freed. */
static void started_done(struct ar_client *c, struct call *k)
{
    (void)c;
    k->user_done(k->user_arg, k->rc);
    ar_free(k);
}

int ar_client_start(struct ar_client *c, uint32_t shard, const struct meta_cmd *cmd,
                    enum meta_read_mode mode, uint32_t data_cap, struct meta_response_buf *out,
                    ar_client_done_fn done, void *arg)
{
    AR_ASSERT(c != NULL && cmd != NULL && out != NULL && done != NULL);
    struct call *k = ar_malloc(sizeof(*k));

    if (k == NULL)
        return -ENOMEM;
    *k = (struct call){.shard = shard, .kind = META_REQ_COMMAND, .cmd = cmd, .mode = mode,
                       .data_cap = data_cap, .out = out, .done = started_done,
                       .user_done = done, .user_arg = arg};
    int rc = submit(c, k);
    if (rc != 0)
        ar_free(k);
    return rc;
}

int ar_client_call(struct ar_client *c, uint32_t shard, const struct meta_cmd *cmd,
                   enum meta_read_mode mode, uint32_t data_cap, struct meta_response_buf *out)
{
    AR_ASSERT(c != NULL && cmd != NULL && out != NULL);
    return request(c, shard, META_REQ_COMMAND, cmd, mode, data_cap, out, NULL);
}

int ar_client_call_stamped(struct ar_client *c, uint32_t shard, const struct meta_cmd *cmd,
                           enum meta_read_mode mode, uint32_t data_cap,
                           struct meta_response_buf *out, struct ar_lease_stamp *stamp)
{
    AR_ASSERT(c != NULL && cmd != NULL && out != NULL && stamp != NULL);
    return request(c, shard, META_REQ_COMMAND, cmd, mode, data_cap, out, stamp);
}

/* Read the map (at its leader) and take the epochs and servers it names. */
static int read_map(struct ar_client *c, struct meta_response_buf *out, char *errmsg)
{
    struct meta_cmd get = {.op = META_OP_MAP_GET};
    struct meta_map *m = ar_malloc(sizeof(*m));
    int rc = m == NULL ? -ENOMEM : 0;

    uint64_t end = now_ms() + c->opt.budget_ms;
    /* bounded by the budget; a new cluster's first map leader seeds the map
     * a moment after it is elected (version 0 until then) */
    while (rc == 0) {
        rc = request(c, META_MAP_SHARD, META_REQ_COMMAND, &get, META_READ_LINEARIZABLE,
                     META_MAP_BYTES_ENC_MAX, out, NULL);
        if (rc == 0)
            rc = meta_map_decode(out->r.reply.data, out->r.reply.data_len, m);
        if (rc != 0 || m->version > 0)
            break;
        if (now_ms() >= end)
            rc = -ETIMEDOUT;
        else
            usleep(20000);
    }
    if (rc == -ETIMEDOUT && !__atomic_load_n(&c->has_heard, __ATOMIC_RELAXED)) {
        char addrs[AR_CLIENT_ADDRS_MAX * 66];
        char why[160];
        addrs_text(c, addrs, sizeof(addrs));
        silence_text(c, why, sizeof(why));
        snprintf(errmsg, AR_ERRMSG_MAX, "no replica at %.120s answered in %.1f s%s", addrs,
                 c->opt.budget_ms / 1000.0, why);
    } else if (rc != 0) {
        snprintf(errmsg, AR_ERRMSG_MAX, "cannot read the shard map: %s", ar_strerror(rc));
    }
    if (rc != 0) {
        ar_free(m);
        return rc;
    }
    pthread_mutex_lock(&c->mu);
    c->map = *m;
    c->has_new_map = true; /* the loop takes its epochs and servers */
    c->stats.map_reads++;
    pthread_mutex_unlock(&c->mu);
    uv_async_send(&c->wake);
    ar_free(m);
    return 0;
}

static void client_free(struct ar_client *c)
{
    for (uint32_t i = 0; i < c->conn_count; i++) {
        ar_free(c->conns[i].rx);
        ar_free(c->conns[i].tx);
    }
    ar_free(c->enc);
    ar_free(c->hb_out);
    ar_free(c->notice_out);
    pthread_mutex_destroy(&c->mu);
    ar_free(c);
}

/* The client's loop: its wake-up, its timer and the flush of what a turn
 * queued, before its thread runs it. */
static void loop_prepare(struct ar_client *c)
{
    uv_loop_init(&c->loop);
    uv_async_init(&c->loop, &c->wake, on_wake);
    c->wake.data = c;
    uv_timer_init(&c->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_timer, TIMER_MS, TIMER_MS);
    uv_prepare_init(&c->loop, &c->flusher);
    c->flusher.data = c;
    uv_prepare_start(&c->flusher, flush_conns);
}

int ar_client_open(const struct ar_client_options *o, struct ar_client **out, char *errmsg)
{
    AR_ASSERT(o != NULL && out != NULL && errmsg != NULL);
    if (o->addr_count == 0 || o->addr_count > AR_CLIENT_ADDRS_MAX) {
        snprintf(errmsg, AR_ERRMSG_MAX, "name 1..%u metadata servers", AR_CLIENT_ADDRS_MAX);
        return -EINVAL;
    }
    struct ar_client *c = ar_calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->opt = *o;
    c->opt.attempt_ms = o->attempt_ms ? o->attempt_ms : 2000;
    c->opt.budget_ms = o->budget_ms ? o->budget_ms : 30000;
    c->opt.quiet_ms = o->quiet_ms ? o->quiet_ms : 5000;
    c->opt.heartbeat_ms = o->heartbeat_ms ? o->heartbeat_ms : 3000;
    pthread_mutex_init(&c->mu, NULL);
    c->enc = ar_malloc(META_FRAME_BYTES_MAX);
    c->hb_out = ar_malloc(sizeof(*c->hb_out));
    c->notice_out = o->on_notice != NULL ? ar_malloc(sizeof(*c->notice_out)) : NULL;
    struct meta_response_buf *resp = ar_malloc(sizeof(*resp));
    if (c->enc == NULL || c->hb_out == NULL || resp == NULL ||
        (o->on_notice != NULL && c->notice_out == NULL) ||
        getrandom(&c->client_id, sizeof(c->client_id), 0) != sizeof(c->client_id)) {
        ar_free(resp);
        client_free(c);
        snprintf(errmsg, AR_ERRMSG_MAX, "out of memory or randomness");
        return -ENOMEM;
    }
    c->client_id |= 1; /* never 0: 0 means "not tracked" */
    for (uint32_t i = 0; i < SHARDS_KNOWN; i++) {
        c->leader[i] = -1;
        c->epoch[i] = 1;
        c->lease_conn[i] = -1;
    }
    for (uint32_t i = 0; i < o->addr_count; i++) {
        conn_for(c, o->addrs[i]);
    }
    loop_prepare(c);
    c->next_hb_ms = c->opt.has_no_session ? UINT64_MAX : 0; /* the session opens at once */
    if (pthread_create(&c->thread, NULL, loop_main, c) != 0) {
        close_all(c);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
        ar_free(resp);
        client_free(c);
        snprintf(errmsg, AR_ERRMSG_MAX, "cannot start the client's thread");
        return -EAGAIN;
    }
    c->is_opening = true;
    int rc = read_map(c, resp, errmsg);
    /* then wait (bounded) for the session the loop opens */
    uint64_t end = now_ms() + c->opt.budget_ms;
    while (rc == 0 && !c->opt.has_no_session && ar_client_session(c, META_ROOT_SHARD) == 0) {
        if (now_ms() >= end) {
            snprintf(errmsg, AR_ERRMSG_MAX, "cannot open a metadata session");
            rc = -ETIMEDOUT;
            break;
        }
        usleep(5000);
    }
    c->is_opening = false;
    ar_free(resp);
    if (rc != 0) {
        ar_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void ar_client_close(struct ar_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->is_stopping = true;
    pthread_mutex_unlock(&c->mu);
    uv_async_send(&c->wake);
    pthread_join(c->thread, NULL);
    uv_loop_close(&c->loop);
    client_free(c);
}

uint32_t ar_client_shard_of(struct ar_client *c, uint64_t ino)
{
    uint32_t shard = META_ROOT_SHARD;

    pthread_mutex_lock(&c->mu);
    for (uint32_t i = 0; i < c->map.shard_count; i++) {
        const struct meta_shard_info *s = &c->map.shards[i];
        if (ino >= s->ino_lo && ino < s->ino_hi)
            shard = s->id;
    }
    pthread_mutex_unlock(&c->mu);
    return shard;
}

void ar_client_map(struct ar_client *c, struct meta_map *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->map;
    pthread_mutex_unlock(&c->mu);
}

uint64_t ar_client_session(struct ar_client *c, uint32_t shard)
{
    /* written by the loop: a stale read is a session one heartbeat old */
    return shard < SHARDS_KNOWN ? __atomic_load_n(&c->sessions[shard], __ATOMIC_ACQUIRE) : 0;
}

void ar_client_lease_stamp(struct ar_client *c, struct ar_lease_stamp *out)
{
    /* seq moves with gen: a gen read before seq is never newer than it */
    out->gen = __atomic_load_n(&c->lease.gen, __ATOMIC_ACQUIRE);
    out->seq = __atomic_load_n(&c->lease.seq, __ATOMIC_ACQUIRE);
}

uint64_t ar_client_lease_left(struct ar_client *c, uint32_t shard, uint64_t gen, uint64_t bound_ms)
{
    if (shard >= SHARDS_KNOWN || gen != __atomic_load_n(&c->lease.gen, __ATOMIC_ACQUIRE))
        return 0;
    uint64_t fresh = __atomic_load_n(&c->lease_fresh_ms[shard], __ATOMIC_ACQUIRE);
    uint64_t now = now_ms();
    /* a loss moves gen before it resets fresh: read again, gen still stands */
    if (fresh == 0 || now >= fresh + bound_ms ||
        gen != __atomic_load_n(&c->lease.gen, __ATOMIC_ACQUIRE))
        return 0;
    return fresh + bound_ms - now;
}

void ar_client_stats(struct ar_client *c, struct ar_client_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    pthread_mutex_unlock(&c->mu);
}
