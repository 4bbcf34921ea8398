/* raft/transport_uv.c - Raft messages between processes over TCP, on a
 * libuv loop (design §3: one transport per process, for all its groups).
 *
 * Each process connects out to every peer and only writes on those
 * connections; it only reads on the ones it accepts. raft_transport_send()
 * appends a message to its peer's pending frame; raft_transport_flush(),
 * once a loop turn, writes each peer's frame: every message for a peer in
 * a turn, across groups, goes in one write. While a write is in flight the
 * next frame fills. A lost connection is retried with capped, jittered
 * back-off; what it had pending may be dropped (Raft sends again).
 *
 * A frame whose length passes RAFT_FRAME_BYTES_MAX, or whose bytes do not
 * decode within raft/limits.h, closes that connection; the event callback
 * says why. Nothing here asserts on bytes from the network.
 *
 * Memory is freed only in close callbacks (style §8). After stop, the loop
 * must run until every handle has closed.
 * Thread: the loop's. */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "core.h"
#include "wire.h"

#define BACKOFF_MIN_MS 20u
#define BACKOFF_MAX_MS 2000u
#define RX_CHUNK_BYTES (64u << 10)

enum peer_state { PEER_IDLE, PEER_CONNECTING, PEER_CONNECTED, PEER_WAITING };

struct peer {
    struct raft_transport *t;
    raft_id id;
    struct sockaddr_storage addr;
    enum peer_state state;
    uv_tcp_t *tcp;              /* the outgoing connection, freed in its close_cb */
    uv_connect_t connect_req;
    uv_timer_t timer;           /* back-off before the next attempt */
    uint32_t backoff_ms;
    struct raft__frame pending; /* messages for the next write */
    struct raft__frame writing; /* the frame uv_write() has */
    uv_write_t write_req;
    bool is_writing;
    uint8_t sink[256];          /* reads on an outgoing connection: only EOF matters */
};

struct conn {
    struct raft_transport *t;
    uv_tcp_t tcp;
    uint8_t *rx;
    size_t used;
    size_t cap;
    struct conn *next;
    bool is_closing;
};

struct raft_transport {
    uv_loop_t *loop;
    struct raft_transport_options opt;
    char host[64];
    uv_tcp_t listener;
    uint16_t port;
    struct peer *peers[RAFT_PEERS_MAX];
    uint32_t peer_count;
    struct conn *conns;
    uint32_t conn_count;
    uint32_t open_handles;      /* closes to wait for after stop */
    bool is_stopping;
    uint64_t rng;
};

static void event(struct raft_transport *t, raft_id peer, int status, const char *reason)
{
    if (t->opt.event != NULL)
        t->opt.event(t->opt.ctx, peer, status, reason);
}

static void maybe_free(struct raft_transport *t)
{
    if (!t->is_stopping || t->open_handles > 0)
        return;
    for (uint32_t i = 0; i < t->peer_count; i++) {
        raft_free(t->peers[i]->pending.buf);
        raft_free(t->peers[i]->writing.buf);
        raft_free(t->peers[i]);
    }
    raft_free(t);
}

static void handle_closed(uv_handle_t *h)
{
    struct raft_transport *t = h->data;

    RAFT_ASSERT(t->open_handles > 0);
    t->open_handles--;
    maybe_free(t);
}

/* ---- outgoing ----------------------------------------------------------------------------- */

static void peer_connect(struct peer *p);
static void peer_write(struct peer *p);

static void tcp_closed(uv_handle_t *h)
{
    struct peer *p = h->data;
    struct raft_transport *t = p->t;

    raft_free(h);
    RAFT_ASSERT(t->open_handles > 0);
    t->open_handles--;
    maybe_free(t);
}

static void timer_fired(uv_timer_t *timer)
{
    struct peer *p = RAFT_CONTAINER_OF(timer, struct peer, timer);

    RAFT_ASSERT(p->state == PEER_WAITING);
    p->state = PEER_IDLE;
    peer_connect(p);
}

/* The connection is gone: close it, and try again after a while. */
static void peer_lost(struct peer *p, int status, const char *reason)
{
    struct raft_transport *t = p->t;

    if (p->tcp != NULL && !uv_is_closing((uv_handle_t *)p->tcp))
        uv_close((uv_handle_t *)p->tcp, tcp_closed);
    p->tcp = NULL;
    if (t->is_stopping || p->state == PEER_WAITING)
        return;
    event(t, p->id, status, reason);
    p->state = PEER_WAITING;
    t->rng = t->rng * 6364136223846793005ull + 1;
    uint32_t jitter = (uint32_t)(t->rng >> 33) % (p->backoff_ms / 2 + 1);
    uv_timer_start(&p->timer, timer_fired, p->backoff_ms / 2 + jitter, 0);
    p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
}

static void sink_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct peer *p = h->data;

    (void)suggested;
    /* the peer never writes on our outgoing connection: only EOF matters */
    *buf = uv_buf_init((char *)p->sink, sizeof(p->sink));
}

static void out_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct peer *p = s->data;

    (void)buf;
    if (nread < 0)
        peer_lost(p, (int)nread, "connection closed by the peer");
}

static void connected(uv_connect_t *req, int status)
{
    struct peer *p = req->data;

    if (p->t->is_stopping)
        return;
    if (status < 0) {
        peer_lost(p, status, "cannot connect");
        return;
    }
    p->state = PEER_CONNECTED;
    p->backoff_ms = BACKOFF_MIN_MS;
    uv_read_start((uv_stream_t *)p->tcp, sink_alloc, out_read);
    peer_write(p);
}

static void peer_connect(struct peer *p)
{
    struct raft_transport *t = p->t;

    RAFT_ASSERT(p->state == PEER_IDLE);
    p->tcp = raft_malloc(sizeof(*p->tcp));
    if (p->tcp == NULL) {
        peer_lost(p, -ENOMEM, "out of memory");
        return;
    }
    uv_tcp_init(t->loop, p->tcp);
    p->tcp->data = p;
    t->open_handles++;
    uv_tcp_nodelay(p->tcp, 1);
    p->connect_req.data = p;
    p->state = PEER_CONNECTING;
    int rc = uv_tcp_connect(&p->connect_req, p->tcp, (const struct sockaddr *)&p->addr,
                            connected);
    if (rc != 0)
        peer_lost(p, rc, "cannot connect");
}

static void written(uv_write_t *req, int status)
{
    struct peer *p = req->data;

    p->is_writing = false;
    p->writing.used = 0;
    p->writing.count = 0;
    if (p->t->is_stopping || p->state != PEER_CONNECTED)
        return; /* already lost: the frame went with the connection */
    if (status < 0) {
        peer_lost(p, status, "write failed");
        return;
    }
    peer_write(p);
}

/* Write the pending frame if the connection is up and idle. */
static void peer_write(struct peer *p)
{
    if (p->state != PEER_CONNECTED || p->is_writing || p->pending.count == 0)
        return;
    raft__wire_seal(&p->pending);
    struct raft__frame f = p->writing; /* swap: the old buffer is reused */
    p->writing = p->pending;
    p->pending = f;
    p->pending.used = 0;
    p->pending.count = 0;
    uv_buf_t buf = uv_buf_init((char *)p->writing.buf, (unsigned)p->writing.used);
    p->write_req.data = p;
    p->is_writing = true;
    int rc = uv_write(&p->write_req, (uv_stream_t *)p->tcp, &buf, 1, written);
    if (rc != 0) {
        p->is_writing = false;
        peer_lost(p, rc, "write failed");
    }
}

/* ---- incoming ------------------------------------------------------------------------------- */

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct raft_transport *t = c->t;

    raft_free(c->rx);
    raft_free(c);
    RAFT_ASSERT(t->open_handles > 0);
    t->open_handles--;
    maybe_free(t);
}

static void conn_close(struct conn *c)
{
    struct raft_transport *t = c->t;

    if (c->is_closing)
        return;
    c->is_closing = true;
    t->conn_count--;
    for (struct conn **pp = &t->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    size_t want = c->used + RX_CHUNK_BYTES;

    (void)suggested;
    if (c->used >= 4) {
        uint32_t len;
        memcpy(&len, c->rx, 4);
        if ((size_t)len + 4 > want && len <= RAFT_FRAME_BYTES_MAX)
            want = (size_t)len + 4; /* the whole frame in one buffer */
    }
    if (want > c->cap) {
        uint8_t *p = raft__realloc(c->rx, want);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS: the connection closes */
            return;
        }
        c->rx = p;
        c->cap = want;
    }
    *buf = uv_buf_init((char *)c->rx + c->used, (unsigned)(c->cap - c->used));
}

static void deliver(uint64_t group, const struct raft_msg *m, void *ctx)
{
    struct raft_transport *t = ctx;

    t->opt.recv(t->opt.ctx, group, m);
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct raft_transport *t = c->t;
    size_t at = 0;

    (void)buf;
    if (nread < 0) {
        if (nread != UV_EOF)
            event(t, 0, (int)nread, "read failed");
        conn_close(c);
        return;
    }
    c->used += (size_t)nread;
    /* bounded: each turn takes one whole frame */
    while (c->used - at >= 4) {
        uint32_t len;
        memcpy(&len, c->rx + at, 4);
        if (len > RAFT_FRAME_BYTES_MAX) {
            event(t, 0, -EMSGSIZE, "a frame past the size bound: connection closed");
            conn_close(c);
            return;
        }
        if (c->used - at - 4 < len)
            break;
        int rc = raft__wire_decode(c->rx + at + 4, len, deliver, t);
        if (rc != 0) {
            event(t, 0, rc, rc == -ENOMEM ? "out of memory decoding a frame"
                                          : "a malformed frame: connection closed");
            conn_close(c);
            return;
        }
        at += 4 + (size_t)len;
    }
    memmove(c->rx, c->rx + at, c->used - at);
    c->used -= at;
}

static void refused_closed(uv_handle_t *h)
{
    struct raft_transport *t = h->data;

    raft_free(h);
    RAFT_ASSERT(t->open_handles > 0);
    t->open_handles--;
    maybe_free(t);
}

static void accepted(uv_stream_t *server, int status)
{
    struct raft_transport *t = server->data;

    if (status < 0 || t->is_stopping)
        return;
    if (t->conn_count >= RAFT_CONNS_MAX) {
        /* refuse: accept and close at once, so the backlog drains */
        uv_tcp_t *x = raft_malloc(sizeof(*x));
        if (x == NULL)
            return;
        uv_tcp_init(t->loop, x);
        x->data = t;
        t->open_handles++;
        uv_accept(server, (uv_stream_t *)x);
        uv_close((uv_handle_t *)x, refused_closed);
        event(t, 0, -EMFILE, "too many incoming connections: one refused");
        return;
    }
    struct conn *c = raft__calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->t = t;
    uv_tcp_init(t->loop, &c->tcp);
    c->tcp.data = c;
    t->open_handles++;
    c->next = t->conns;
    t->conns = c;
    t->conn_count++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) != 0)
        conn_close(c);
}

/* ---- public ----------------------------------------------------------------------------------- */

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *out)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0)
        return 0;
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0 ? 0 : -EINVAL;
}

int raft_transport_start(struct uv_loop_s *loop, const struct raft_transport_options *o,
                         struct raft_transport **out, char *errmsg)
{
    struct sockaddr_storage addr;
    struct sockaddr_storage bound;
    int len = sizeof(bound);

    RAFT_ASSERT(loop != NULL && o != NULL && o->recv != NULL && out != NULL);
    if (o->host == NULL || strlen(o->host) >= 64 || resolve(o->host, o->port, &addr) != 0) {
        if (errmsg != NULL)
            snprintf(errmsg, RAFT_ERRMSG_MAX, "not an IP address: %s", o->host);
        return -EINVAL;
    }
    struct raft_transport *t = raft__calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->loop = loop;
    t->opt = *o;
    memcpy(t->host, o->host, strlen(o->host) + 1);
    t->opt.host = t->host;
    t->rng = o->id * 0x9e3779b97f4a7c15ull + 1;
    uv_tcp_init(loop, &t->listener);
    t->listener.data = t;
    t->open_handles = 1;
    int rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&t->listener, 128, accepted);
    if (rc == 0)
        rc = uv_tcp_getsockname(&t->listener, (struct sockaddr *)&bound, &len);
    if (rc != 0) {
        if (errmsg != NULL)
            snprintf(errmsg, RAFT_ERRMSG_MAX, "cannot listen on %s port %u: %s", o->host,
                     o->port, uv_strerror(rc));
        t->is_stopping = true;
        uv_close((uv_handle_t *)&t->listener, handle_closed);
        return rc;
    }
    t->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    *out = t;
    return 0;
}

uint16_t raft_transport_port(const struct raft_transport *t)
{
    return t->port;
}

int raft_transport_add_peer(struct raft_transport *t, raft_id id, const char *host, uint16_t port)
{
    RAFT_ASSERT(t != NULL && !t->is_stopping);
    if (id == 0 || id == t->opt.id || t->peer_count == RAFT_PEERS_MAX)
        return -EINVAL;
    for (uint32_t i = 0; i < t->peer_count; i++) {
        if (t->peers[i]->id == id)
            return -EEXIST;
    }
    struct peer *p = raft__calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    if (resolve(host, port, &p->addr) != 0) {
        raft_free(p);
        return -EINVAL;
    }
    p->t = t;
    p->id = id;
    p->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(t->loop, &p->timer);
    p->timer.data = t;
    t->open_handles++;
    t->peers[t->peer_count++] = p;
    peer_connect(p);
    return 0;
}

static struct peer *find_peer(struct raft_transport *t, raft_id id)
{
    for (uint32_t i = 0; i < t->peer_count; i++) {
        if (t->peers[i]->id == id)
            return t->peers[i];
    }
    return NULL;
}

int raft_transport_send(struct raft_transport *t, uint64_t group, const struct raft_msg *m)
{
    RAFT_ASSERT(t != NULL && m != NULL);
    struct peer *p = find_peer(t, m->to);
    if (p == NULL)
        return -ENOENT;
    if (t->is_stopping)
        return -ECANCELED;
    int rc = raft__wire_append(&p->pending, group, m);
    return rc == -EMSGSIZE ? -ENOBUFS : rc; /* a full frame: dropped, Raft sends again */
}

void raft_transport_flush(struct raft_transport *t)
{
    for (uint32_t i = 0; i < t->peer_count; i++) {
        peer_write(t->peers[i]);
    }
}

void raft_transport_stop(struct raft_transport *t)
{
    if (t == NULL || t->is_stopping)
        return;
    t->is_stopping = true;
    uv_close((uv_handle_t *)&t->listener, handle_closed);
    for (uint32_t i = 0; i < t->peer_count; i++) {
        struct peer *p = t->peers[i];
        if (p->tcp != NULL && !uv_is_closing((uv_handle_t *)p->tcp))
            uv_close((uv_handle_t *)p->tcp, tcp_closed);
        uv_close((uv_handle_t *)&p->timer, handle_closed);
    }
    while (t->conns != NULL) {
        conn_close(t->conns);
    }
}
