/* tools/bench_meta.c - `arbor bench meta`: a 3-replica shard on 127.0.0.1
 * (three `arbor serve` processes this command formats and starts), driven
 * through the client protocol directly (no FUSE) by 1, 16 and 64 clients.
 * Each client is a connection with one request at a time; each phase runs
 * for a few seconds and prints ops/s and p50/p99 latency. Servers and
 * clients share the machine's cores.
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

struct client {
    struct bench *b;
    uint32_t index;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uint8_t tx[4096];
    uint8_t *rx;
    size_t used;
    size_t cap;
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
    (void)w;
    (void)status;
}

static void send_cmd(struct client *c, const struct meta_cmd *cmd)
{
    static uint64_t next_id;
    struct meta_request req = {.id = ++next_id, .shard = 1, .epoch = 1,
                               .kind = META_REQ_COMMAND};
    size_t len;

    if (meta_request_encode(&req, cmd, c->tx, sizeof(c->tx), &len) != 0) {
        fprintf(stderr, "arbor bench meta: cannot encode a request\n");
        exit(1);
    }
    c->sent_at = cmd_now();
    c->is_busy = true;
    uv_buf_t buf = uv_buf_init((char *)c->tx, (unsigned)len);
    uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, written);
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

static void on_response(struct client *c, const uint8_t *frame, size_t len)
{
    struct bench *b = c->b;
    double now = cmd_now();

    if (meta_response_decode(frame, len, b->resp) != 0) {
        fprintf(stderr, "arbor bench meta: a response that does not decode\n");
        exit(1);
    }
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
    struct client *c = h->data;

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
    struct client *c = s->data;
    size_t at = 0;

    (void)buf;
    if (nread < 0) {
        fprintf(stderr, "arbor bench meta: a server closed a connection: %s\n",
                uv_strerror((int)nread));
        exit(1);
    }
    c->used += (size_t)nread;
    /* bounded: a client has one request in flight */
    while (c->used - at >= 4) {
        uint32_t n;
        memcpy(&n, c->rx + at, 4);
        if (c->used - at - 4 < n)
            break;
        on_response(c, c->rx + at + 4, n);
        at += 4 + (size_t)n;
    }
    memmove(c->rx, c->rx + at, c->used - at);
    c->used -= at;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct client *c = req->data;

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
    printf("%7u  %-8s %12.0f %9.3f %9.3f%s\n", b->client_count, phase_names[p],
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

static int start_cluster(const char *dir, uint16_t *client_ports, pid_t *pids)
{
    char nodes[600] = "";
    char cmd[1600];

    for (uint32_t i = 0; i < NODES; i++) {
        client_ports[i] = cmd_free_port();
        uint16_t raft = cmd_free_port();
        if (client_ports[i] == 0 || raft == 0)
            return -1;
        snprintf(nodes + strlen(nodes), sizeof(nodes) - strlen(nodes),
                 "%s%u=127.0.0.1:%u/127.0.0.1:%u", i ? "," : "", i + 1, raft, client_ports[i]);
    }
    for (uint32_t i = 0; i < NODES; i++) {
        snprintf(cmd, sizeof(cmd),
                 "/proc/%d/exe format '%s/node%u' --id %u --nodes %s > /dev/null", getpid(),
                 dir, i + 1, i + 1, nodes);
        if (system(cmd) != 0)
            return -1;
    }
    for (uint32_t i = 0; i < NODES; i++) {
        char data[600];
        char log[600];
        snprintf(data, sizeof(data), "%s/node%u", dir, i + 1);
        snprintf(log, sizeof(log), "%s/node%u.log", dir, i + 1);
        pids[i] = fork();
        if (pids[i] == 0) {
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
            execl("/proc/self/exe", "arbor", "serve", data, (char *)NULL);
            _exit(127);
        }
    }
    return 0;
}

static int connect_all(struct bench *b, uint32_t count, uint16_t port)
{
    struct sockaddr_in sa;

    uv_ip4_addr("127.0.0.1", port, &sa);
    for (uint32_t i = 0; i < count; i++) {
        struct client *c = &b->clients[i];
        memset(c, 0, sizeof(*c));
        c->b = b;
        c->index = i;
        uv_tcp_init(&b->loop, &c->tcp);
        c->tcp.data = c;
        c->connect_req.data = c;
        uv_tcp_nodelay(&c->tcp, 1);
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&sa, on_connect);
    }
    b->client_count = count;
    for (int i = 0; i < 100; i++) {
        uv_run(&b->loop, UV_RUN_NOWAIT);
    }
    return 0;
}

static void close_all(struct bench *b)
{
    for (uint32_t i = 0; i < b->client_count; i++) {
        uv_close((uv_handle_t *)&b->clients[i].tcp, NULL);
    }
    uv_run(&b->loop, UV_RUN_DEFAULT);
    for (uint32_t i = 0; i < b->client_count; i++) {
        free(b->clients[i].rx);
    }
    b->client_count = 0;
}

/* Wait (bounded) until every server accepts connections. */
static bool wait_listening(const uint16_t *ports)
{
    for (uint32_t i = 0; i < NODES; i++) {
        bool is_up = false;
        for (int tries = 0; tries < 200 && !is_up; tries++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(ports[i])};
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            is_up = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
            if (fd >= 0)
                close(fd);
            if (!is_up)
                usleep(50000);
        }
        if (!is_up)
            return false;
    }
    return true;
}

/* Find the leader: a linearizable statfs answers only there. */
static int find_leader(struct bench *b, const uint16_t *ports)
{
    struct meta_cmd sf = {.op = META_OP_STATFS};

    if (!wait_listening(ports))
        return -1;
    for (int round = 0; round < 200; round++) {
        for (uint32_t i = 0; i < NODES; i++) {
            connect_all(b, 1, ports[i]);
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

    connect_all(b, count, port);
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
        run_phase(b, p);
        for (uint32_t i = 0; p == PH_RENAME && i < count; i++) {
            b->clients[i].renamed = b->clients[i].cursor;
        }
    }
    close_all(b);
    return 0;
}

/* --seconds into b; 0, or the exit status (-1: --help). */
static int meta_opts(int argc, char **argv, struct bench *b)
{
    static const struct option longopts[] = {
        {"seconds", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    b->seconds = 3;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            b->seconds = strtod(optarg, NULL);
            if (b->seconds <= 0 || b->seconds > 60) {
                fprintf(stderr, "arbor bench meta: --seconds wants (0, 60]\n");
                return 2;
            }
            break;
        case 'h':
            printf("usage: arbor bench meta [--seconds S]\n\n"
                   "Format and start a 3-replica shard (arbor serve x3) on 127.0.0.1 in a new\n"
                   "directory under $TMPDIR or /var/tmp (removed after), then drive it through\n"
                   "the client protocol with 1, 16 and 64 clients, one request each in flight,\n"
                   "S seconds a phase (default 3): create, getattr, lookup, readdir (1,000\n"
                   "entries), rename, unlink. Prints ops/s and p50/p99 latency.\n");
            return -1;
        default:
            return 2;
        }
    }
    return 0;
}

int bench_meta(int argc, char **argv)
{
    static struct bench b;
    static const uint32_t counts[] = {1, 16, 64};
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
    if (rc == 0)
        rc = start_cluster(dir, b.ports, pids) == 0 ? 0 : 1;
    int leader = rc == 0 ? find_leader(&b, b.ports) : -1;
    if (leader < 0) {
        fprintf(stderr, "arbor bench meta: no leader came up (logs in %s)\n", dir);
        rc = 1;
    } else {
        printf("arbor bench meta: 3 replicas, leader node %d, %g s a phase, data in %s\n",
               leader + 1, b.seconds, dir);
        printf("%7s  %-8s %12s %9s %9s\n", "clients", "op", "ops/s", "p50 ms", "p99 ms");
        for (size_t i = 0; rc == 0 && i < AR_ARRAY_LEN(counts); i++) {
            rc = run_clients(&b, counts[i], b.ports[leader], (uint32_t)i);
        }
    }
    for (uint32_t i = 0; i < NODES; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
        }
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
