/* tools/bench_meta.c - `arbor bench meta`: a 3-replica shard on 127.0.0.1
 * (three `arbor serve` processes this command formats and starts), driven
 * through the client protocol directly (no FUSE) by 1, 16 and 64 clients.
 * Each client has one request at a time in flight; clients share --conns
 * connections (a mount's threads share its connection), whose requests of a
 * loop turn go out in one write. Each phase runs for a few seconds and
 * prints ops/s and p50/p99 latency. Servers and clients share the
 * machine's cores.
 * Phases: create (each client in its own directory), getattr and lookup
 * (random files made by create, linearizable), readdir (directories of
 * 1,000 entries, a page of 1,000), rename (within a client's directory),
 * unlink. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "bench.h"
#include "cmd.h"
#include "limits.h"
#include "meta.h"

#define CLIENTS_MAX  64u
#define NODES        3u
#define LAT_MAX      (1u << 21)
#define FILES_MAX    (1u << 16)   /* files a client makes at most in a phase */
#define READDIR_SIZE 1000u

enum phase { PH_CREATE, PH_GETATTR, PH_LOOKUP, PH_READDIR, PH_RENAME, PH_UNLINK, PH_COUNT };
static const char *const phase_names[] = {"create", "getattr", "lookup", "readdir", "rename",
                                          "unlink"};

struct bench;

/* A connection that clients share. */
struct bconn {
    struct bench *b;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uint8_t *tx;              /* requests of this loop turn */
    size_t tx_len;
    size_t tx_cap;
    uint8_t *rx;
    size_t used;
    size_t cap;
};

struct client {
    struct bench *b;
    uint32_t index;
    struct bconn *conn;
    uint64_t dir;             /* its directory */
    uint64_t inos[FILES_MAX]; /* the files it made */
    uint32_t made;            /* files made in it */
    uint32_t cursor;          /* the next file of the phase */
    uint32_t renamed;         /* files the rename phase renamed (the first ones) */
    double sent_at;
    bool is_busy;
};

struct bench {
    uv_loop_t loop;
    uint16_t ports[NODES];
    uint32_t leader;          /* index of the node that leads */
    struct client clients[CLIENTS_MAX];
    uint32_t client_count;
    struct bconn conns[CLIENTS_MAX];
    uint32_t conn_count;
    uint32_t conns_wanted;    /* --conns; 0: one a client */
    uv_prepare_t flusher;
    enum phase phase;
    double phase_end;
    double phase_start;
    uint64_t done;
    uint64_t errors;
    double *lat;
    uint32_t lat_count;
    uint64_t rng;
    uint64_t readdir_dir;     /* a directory of READDIR_SIZE files */
    struct meta_response_buf *resp;
    double seconds;
    uint32_t counts[8];       /* --clients */
    uint32_t count_count;
    unsigned ops;             /* --ops: a bit per phase run */
};

static uint64_t next_rand(struct bench *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return b->rng;
}

static void file_name(uint32_t client, uint32_t i, char out[32], const char *prefix)
{
    snprintf(out, 32, "%s%02u_%07u.jpg", prefix, client, i);
}

/* ---- requests ---------------------------------------------------------------------------- */

static void client_next(struct client *c);

static void written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

/* Before the loop waits: each connection's requests in one write; what the
 * socket does not take goes through libuv's queue. */
static void flush_conns(uv_prepare_t *h)
{
    struct bench *b = h->data;

    for (uint32_t i = 0; i < b->conn_count; i++) {
        struct bconn *k = &b->conns[i];
        if (k->tx_len == 0)
            continue;
        uv_buf_t buf = uv_buf_init((char *)k->tx, (unsigned)k->tx_len);
        int n = uv_try_write((uv_stream_t *)&k->tcp, &buf, 1);
        size_t done = n > 0 ? (size_t)n : 0;
        if (done < k->tx_len) {
            uv_write_t *w = malloc(sizeof(*w));
            uint8_t *rest = malloc(k->tx_len - done);
            if (w == NULL || rest == NULL) {
                fprintf(stderr, "arbor bench meta: out of memory\n");
                exit(1);
            }
            memcpy(rest, k->tx + done, k->tx_len - done);
            w->data = rest;
            buf = uv_buf_init((char *)rest, (unsigned)(k->tx_len - done));
            uv_write(w, (uv_stream_t *)&k->tcp, &buf, 1, written);
        }
        k->tx_len = 0;
    }
}

/* Queue cmd on c's connection; the request id names the client. */
static void send_cmd(struct client *c, const struct meta_cmd *cmd)
{
    static uint64_t next_seq;
    struct bconn *k = c->conn;
    struct meta_request req = {.id = ++next_seq * CLIENTS_MAX + c->index, .shard = 1,
                               .epoch = 1, .kind = META_REQ_COMMAND};
    size_t len;

    if (k->tx_cap - k->tx_len < 4096) {
        k->tx_cap = k->tx_cap == 0 ? 65536 : k->tx_cap * 2;
        k->tx = realloc(k->tx, k->tx_cap);
        if (k->tx == NULL) {
            fprintf(stderr, "arbor bench meta: out of memory\n");
            exit(1);
        }
    }
    if (meta_request_encode(&req, cmd, k->tx + k->tx_len, 4096, &len) != 0) {
        fprintf(stderr, "arbor bench meta: cannot encode a request\n");
        exit(1);
    }
    k->tx_len += len;
    c->sent_at = cmd_now();
    c->is_busy = true;
}

/* The command of the current phase for client c, or false when it has none left. */
static bool phase_cmd(struct client *c, struct meta_cmd *cmd, char name[32], char name2[32])
{
    struct bench *b = c->b;

    switch (b->phase) {
    case PH_CREATE:
        if (c->made >= FILES_MAX)
            return false;
        file_name(c->index, c->made, name, "f");
        *cmd = (struct meta_cmd){.op = META_OP_MKNOD, .ino = c->dir, .name = name,
                                 .name_len = (uint32_t)strlen(name), .mode = S_IFREG | 0644};
        return true;
    case PH_GETATTR:
    case PH_LOOKUP:
        if (c->made == 0)
            return false;
        uint32_t pick = (uint32_t)(next_rand(b) % c->made);
        file_name(c->index, pick, name, "f");
        *cmd = (struct meta_cmd){.op = META_OP_LOOKUP, .ino = c->dir, .name = name,
                                 .name_len = (uint32_t)strlen(name)};
        if (b->phase == PH_GETATTR)
            *cmd = (struct meta_cmd){.op = META_OP_GETATTR, .ino = c->inos[pick]};
        return true;
    case PH_READDIR:
        *cmd = (struct meta_cmd){.op = META_OP_READDIR, .ino = b->readdir_dir,
                                 .entry_cap = READDIR_SIZE};
        return true;
    case PH_RENAME:
        if (c->cursor >= c->made)
            return false;
        file_name(c->index, c->cursor, name, "f");
        file_name(c->index, c->cursor, name2, "r");
        *cmd = (struct meta_cmd){.op = META_OP_RENAME, .ino = c->dir, .name = name,
                                 .name_len = (uint32_t)strlen(name), .new_dir = c->dir,
                                 .new_name = name2, .new_name_len = (uint32_t)strlen(name2)};
        return true;
    case PH_UNLINK:
        if (c->cursor >= c->made)
            return false;
        file_name(c->index, c->cursor, name, c->cursor < c->renamed ? "r" : "f");
        *cmd = (struct meta_cmd){.op = META_OP_UNLINK, .ino = c->dir, .name = name,
                                 .name_len = (uint32_t)strlen(name)};
        return true;
    case PH_COUNT:
        return false;
    }
    return false;
}

static void client_next(struct client *c)
{
    struct bench *b = c->b;
    struct meta_cmd cmd;
    char name[32];
    char name2[32];

    c->is_busy = false;
    if (cmd_now() >= b->phase_end || !phase_cmd(c, &cmd, name, name2))
        return;
    send_cmd(c, &cmd);
}

static void on_response(struct bench *b, const uint8_t *frame, size_t len)
{
    double now = cmd_now();

    if (meta_response_decode(frame, len, b->resp) != 0) {
        fprintf(stderr, "arbor bench meta: a response that does not decode\n");
        exit(1);
    }
    struct client *c = &b->clients[b->resp->r.id % CLIENTS_MAX];
    int rc = b->resp->r.rc;
    if (rc == 0) {
        b->done++;
        if (b->lat_count < LAT_MAX)
            b->lat[b->lat_count++] = now - c->sent_at;
        if (b->phase == PH_CREATE)
            c->inos[c->made++] = b->resp->r.reply.attr.ino;
        if (b->phase == PH_RENAME || b->phase == PH_UNLINK)
            c->cursor++;
    } else {
        b->errors++;
        if (b->errors < 5 && b->phase < PH_COUNT)
            fprintf(stderr, "arbor bench meta: %s: %s\n", phase_names[b->phase],
                    ar_strerror(rc));
        if (b->phase == PH_RENAME || b->phase == PH_UNLINK)
            c->cursor++; /* move on: one failure must not repeat forever */
    }
    client_next(c);
}

static void rx_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct bconn *c = h->data;

    (void)suggested;
    if (c->cap - c->used < 65536) {
        size_t cap = c->cap == 0 ? 1u << 20 : c->cap * 2;
        uint8_t *p = realloc(c->rx, cap);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        c->rx = p;
        c->cap = cap;
    }
    *buf = uv_buf_init((char *)c->rx + c->used, (unsigned)(c->cap - c->used));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct bconn *c = s->data;
    size_t at = 0;

    (void)buf;
    if (nread < 0) {
        fprintf(stderr, "arbor bench meta: a server closed a connection: %s\n",
                uv_strerror((int)nread));
        exit(1);
    }
    c->used += (size_t)nread;
    /* bounded: each client of the connection has one request in flight */
    while (c->used - at >= 4) {
        uint32_t n;
        memcpy(&n, c->rx + at, 4);
        if (c->used - at - 4 < n)
            break;
        on_response(c->b, c->rx + at + 4, n);
        at += 4 + (size_t)n;
    }
    memmove(c->rx, c->rx + at, c->used - at);
    c->used -= at;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct bconn *c = req->data;

    if (status < 0) {
        fprintf(stderr, "arbor bench meta: cannot connect: %s\n", uv_strerror(status));
        exit(1);
    }
    uv_read_start((uv_stream_t *)&c->tcp, rx_alloc, on_read);
}

/* ---- phases ------------------------------------------------------------------------------------ */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x;
    double b = *(const double *)y;

    return (a > b) - (a < b);
}

static void run_phase(struct bench *b, enum phase p)
{
    b->phase = p;
    b->done = 0;
    b->errors = 0;
    b->lat_count = 0;
    b->phase_start = cmd_now();
    b->phase_end = b->phase_start + b->seconds;
    for (uint32_t i = 0; i < b->client_count; i++) {
        b->clients[i].cursor = 0;
        client_next(&b->clients[i]);
    }
    /* bounded: the phase ends at phase_end, then in-flight requests drain */
    for (;;) {
        uv_run(&b->loop, UV_RUN_ONCE);
        bool is_busy = false;
        for (uint32_t i = 0; i < b->client_count; i++) {
            is_busy |= b->clients[i].is_busy;
        }
        if (!is_busy)
            break;
    }
    double took = cmd_now() - b->phase_start;
    qsort(b->lat, b->lat_count, sizeof(double), cmp_double);
    double p50 = b->lat_count ? b->lat[b->lat_count / 2] * 1e3 : 0;
    double p99 = b->lat_count ? b->lat[(uint64_t)b->lat_count * 99 / 100] * 1e3 : 0;
    printf("%7u %5u  %-8s %12.0f %9.3f %9.3f%s\n", b->client_count, b->conn_count, phase_names[p],
           (double)b->done / took, p50, p99, b->errors ? "  (errors)" : "");
    fflush(stdout);
}

/* ---- a synchronous call for set-up ------------------------------------------------------------- */

static int setup_call(struct bench *b, struct client *c, const struct meta_cmd *cmd)
{
    b->phase = PH_COUNT; /* a set-up answer counts nowhere */
    send_cmd(c, cmd);
    b->done = 0;
    b->errors = 0;
    b->phase_end = 0; /* client_next sends nothing more */
    uint64_t before = b->done + b->errors;
    for (int i = 0; i < 100000 && b->done + b->errors == before; i++) {
        uv_run(&b->loop, UV_RUN_ONCE);
    }
    return b->resp->r.rc;
}

/* ---- the cluster ------------------------------------------------------------------------------ */

/* count clients over conns connections (0: one each), dealt round-robin. */
static int connect_all(struct bench *b, uint32_t count, uint32_t conns, uint16_t port)
{
    struct sockaddr_in sa;

    uv_ip4_addr("127.0.0.1", port, &sa);
    b->conn_count = conns == 0 || conns > count ? count : conns;
    for (uint32_t i = 0; i < b->conn_count; i++) {
        struct bconn *k = &b->conns[i];
        memset(k, 0, sizeof(*k));
        k->b = b;
        uv_tcp_init(&b->loop, &k->tcp);
        k->tcp.data = k;
        k->connect_req.data = k;
        uv_tcp_nodelay(&k->tcp, 1);
        uv_tcp_connect(&k->connect_req, &k->tcp, (const struct sockaddr *)&sa, on_connect);
    }
    for (uint32_t i = 0; i < count; i++) {
        struct client *c = &b->clients[i];
        memset(c, 0, sizeof(*c));
        c->b = b;
        c->index = i;
        c->conn = &b->conns[i % b->conn_count];
    }
    b->client_count = count;
    for (int i = 0; i < 100; i++) {
        uv_run(&b->loop, UV_RUN_NOWAIT);
    }
    return 0;
}

static void close_all(struct bench *b)
{
    for (uint32_t i = 0; i < b->conn_count; i++) {
        uv_close((uv_handle_t *)&b->conns[i].tcp, NULL);
    }
    uv_prepare_stop(&b->flusher);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_prepare_start(&b->flusher, flush_conns);
    for (uint32_t i = 0; i < b->conn_count; i++) {
        free(b->conns[i].rx);
        free(b->conns[i].tx);
    }
    b->client_count = 0;
    b->conn_count = 0;
}

/* Wait (bounded) until every server accepts connections. */
/* Find the leader: a linearizable statfs answers only there. */
static int find_leader(struct bench *b, const uint16_t *ports)
{
    struct meta_cmd sf = {.op = META_OP_STATFS};

    if (!cmd_cluster_listening(ports, NODES))
        return -1;
    for (int round = 0; round < 200; round++) {
        for (uint32_t i = 0; i < NODES; i++) {
            connect_all(b, 1, 1, ports[i]);
            int rc = setup_call(b, &b->clients[0], &sf);
            close_all(b);
            if (rc == 0)
                return (int)i;
        }
        usleep(50000);
    }
    return -1;
}

static int run_clients(struct bench *b, uint32_t count, uint16_t port, uint32_t round)
{
    char name[32];

    connect_all(b, count, b->conns_wanted, port);
    /* each client its own directory; one directory of READDIR_SIZE files */
    for (uint32_t i = 0; i < count; i++) {
        snprintf(name, sizeof(name), "c%u_%u", round, i);
        struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = 1, .name = name,
                              .name_len = (uint32_t)strlen(name), .mode = 0755};
        int rc;
        do {
            rc = setup_call(b, &b->clients[i], &mk);
        } while (rc == -EAGAIN);
        if (rc != 0) {
            fprintf(stderr, "arbor bench meta: mkdir: %s\n", ar_strerror(rc));
            return 1;
        }
        b->clients[i].dir = b->resp->r.reply.attr.ino;
    }
    if (b->readdir_dir == 0) {
        struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = 1, .name = "listing",
                              .name_len = 7, .mode = 0755};
        if (setup_call(b, &b->clients[0], &mk) != 0)
            return 1;
        b->readdir_dir = b->resp->r.reply.attr.ino;
        for (uint32_t i = 0; i < READDIR_SIZE; i++) {
            file_name(99, i, name, "l");
            struct meta_cmd f = {.op = META_OP_MKNOD, .ino = b->readdir_dir, .name = name,
                                 .name_len = (uint32_t)strlen(name), .mode = S_IFREG | 0644};
            if (setup_call(b, &b->clients[0], &f) != 0)
                return 1;
        }
    }
    for (enum phase p = PH_CREATE; p < PH_COUNT; p++) {
        /* create always runs: the other phases use its files */
        if (p != PH_CREATE && !(b->ops & (1u << p)))
            continue;
        run_phase(b, p);
        for (uint32_t i = 0; p == PH_RENAME && i < count; i++) {
            b->clients[i].renamed = b->clients[i].cursor;
        }
    }
    close_all(b);
    return 0;
}

/* "create,getattr" into a bit per phase; 0 if a name is unknown. */
static unsigned parse_ops(const char *list)
{
    unsigned ops = 0;

    /* bounded by the list's length */
    while (*list != '\0') {
        size_t n = strcspn(list, ",");
        unsigned bit = 0;
        for (unsigned p = 0; p < PH_COUNT; p++) {
            if (strlen(phase_names[p]) == n && strncmp(list, phase_names[p], n) == 0)
                bit = 1u << p;
        }
        if (bit == 0)
            return 0;
        ops |= bit;
        list += n + (list[n] == ',');
    }
    return ops;
}

static void meta_usage(void)
{
    printf("usage: arbor bench meta [--seconds S] [--clients N,...] [--conns C]\n"
           "                        [--ops OP,...]\n\n"
           "Format and start a 3-replica shard (arbor serve x3) on 127.0.0.1 in a new\n"
           "directory under $TMPDIR or /var/tmp (removed after), then drive it through\n"
           "the client protocol with 1, 16 and 64 clients, one request each in flight,\n"
           "S seconds a phase (default 3): create, getattr, lookup, readdir (1,000\n"
           "entries), rename, unlink. Prints ops/s and p50/p99 latency.\n"
           "--clients: the client counts to run (default 1,16,64, at most %u);\n"
           "--conns: connections the clients share, round-robin (default: one a\n"
           "client; a mount's threads share one, so 64 clients over 4 connections\n"
           "is four busy mounts);\n"
           "--ops: the phases to run (create always runs: the others use its files).\n",
           CLIENTS_MAX);
}

/* --clients' "N,..." into b->counts; false if malformed. */
static bool parse_counts(const char *list, struct bench *b)
{
    b->count_count = 0;
    /* bounded by the list's length */
    for (const char *p = list; *p != '\0';) {
        char *end;
        unsigned long n = strtoul(p, &end, 10);
        if (n == 0 || n > CLIENTS_MAX || (*end != ',' && *end != '\0') ||
            b->count_count == AR_ARRAY_LEN(b->counts))
            return false;
        b->counts[b->count_count++] = (uint32_t)n;
        p = end + (*end == ',');
    }
    return b->count_count > 0;
}

/* The options into b; 0, or the exit status (-1: --help). */
static int meta_opts(int argc, char **argv, struct bench *b)
{
    static const struct option longopts[] = {
        {"seconds", required_argument, NULL, 's'},
        {"clients", required_argument, NULL, 'c'},
        {"ops", required_argument, NULL, 'o'},
        {"conns", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char wrong[160] = "";
    int c;

    b->seconds = 3;
    b->ops = (1u << PH_COUNT) - 1;
    b->count_count = 3;
    b->counts[0] = 1;
    b->counts[1] = 16;
    b->counts[2] = 64;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1 && wrong[0] == '\0') {
        if (c == 'c' && !parse_counts(optarg, b))
            snprintf(wrong, sizeof(wrong), "--clients wants up to %zu counts 1..%u, "
                     "comma-separated", AR_ARRAY_LEN(b->counts), CLIENTS_MAX);
        else if (c == 'n' && !cmd_parse_u32(optarg, 1, CLIENTS_MAX, &b->conns_wanted))
            snprintf(wrong, sizeof(wrong), "--conns wants 1..%u", CLIENTS_MAX);
        else if (c == 'o' && (b->ops = parse_ops(optarg)) == 0)
            snprintf(wrong, sizeof(wrong), "--ops wants names of create, getattr, lookup, "
                     "readdir, rename, unlink");
        else if (c == 's' && (!cmd_parse_seconds(optarg, &b->seconds) || b->seconds <= 0 ||
                              b->seconds > 60))
            snprintf(wrong, sizeof(wrong), "--seconds wants (0, 60]");
        else if (c == 'h') {
            meta_usage();
            return -1;
        } else if (c == '?') {
            return 2;
        }
    }
    if (wrong[0] != '\0')
        fprintf(stderr, "arbor bench meta: %s\n", wrong);
    return wrong[0] != '\0' ? 2 : 0;
}

int bench_meta(int argc, char **argv)
{
    static struct bench b;
    pid_t pids[NODES] = {0};

    int orc = meta_opts(argc, argv, &b);
    if (orc != 0)
        return orc < 0 ? 0 : orc;
    char dir[512];
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/var/tmp";
    snprintf(dir, sizeof(dir), "%s/arbor-bench-meta.XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "arbor bench meta: cannot make a directory in %s\n", tmp);
        return 1;
    }
    b.lat = malloc(sizeof(double) * LAT_MAX);
    b.resp = malloc(sizeof(*b.resp));
    b.rng = 0x9e3779b97f4a7c15ull;
    int rc = b.lat && b.resp && uv_loop_init(&b.loop) == 0 ? 0 : 1;
    if (rc == 0) {
        uv_prepare_init(&b.loop, &b.flusher);
        b.flusher.data = &b;
        uv_prepare_start(&b.flusher, flush_conns);
    }
    if (rc == 0)
        rc = cmd_cluster_start(dir, NODES, NULL, b.ports, pids) == 0 ? 0 : 1;
    int leader = rc == 0 ? find_leader(&b, b.ports) : -1;
    if (leader < 0) {
        fprintf(stderr, "arbor bench meta: no leader came up (logs in %s)\n", dir);
        rc = 1;
    } else {
        printf("arbor bench meta: 3 replicas, leader node %d, %g s a phase, data in %s\n",
               leader + 1, b.seconds, dir);
        printf("%7s %5s  %-8s %12s %9s %9s\n", "clients", "conns", "op", "ops/s", "p50 ms",
               "p99 ms");
        for (uint32_t i = 0; rc == 0 && i < b.count_count; i++) {
            rc = run_clients(&b, b.counts[i], b.ports[leader], i);
        }
    }
    cmd_cluster_stop(pids, NODES);
    if (b.flusher.data == &b) {
        uv_close((uv_handle_t *)&b.flusher, NULL);
        uv_run(&b.loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&b.loop);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (rc == 0 && system(cmd) != 0)
        fprintf(stderr, "arbor bench meta: could not remove %s\n", dir);
    free(b.lat);
    free(b.resp);
    return rc;
}
