/* tools/bench_raft.c - `arbor bench raft`: replicas as processes on
 * 127.0.0.1, each with its own segment log on the real disk, committing
 * 128-byte entries with 1, 16, 64 and 256 proposals in flight; for 3
 * replicas and for 1.
 *
 * Each replica is this program again (`--replica ID`), a small Raft host:
 * one libuv loop; a tick every 10 ms; after every poll it takes the node's
 * ready and persists it on the thread pool (append, then one fdatasync for
 * everything: group commit), then sends, applies and advances. Messages
 * and proposals that arrive meanwhile wait for the next ready. Replica 1
 * campaigns first and, once leading, runs the load: it keeps N proposals
 * in flight and times each from propose to its own apply (= commit).
 * The parent starts the replicas, prints what replica 1 reports, and ends
 * them by PID.
 * Thread: the loop's, and the thread pool for the log. */
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
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bench.h"
#include "cmd.h"
#include "meta.h"
#include "raft.h"

#define TICK_MS        10u
#define SENT_RING      4096u   /* > the largest window; indexes in flight */
#define LAT_MAX        (1u << 22)
#define RUN_LIMIT_S    120.0   /* a replica gives up after this */
#define SNAPSHOT_EVERY 20000u  /* entries between log compactions in memory */

static const uint32_t windows[] = {1, 16, 64, 256};

struct sent {
    raft_index index;
    double at;
};

struct replica {
    uv_loop_t loop;
    raft_id id;
    uint32_t count;
    uint16_t ports[RAFT_VOTERS_MAX];
    struct raft_node *node;
    struct raft_seglog *log;
    struct raft_transport *t;
    uv_timer_t tick;
    uv_check_t check;
    uv_signal_t term;
    uv_work_t work;
    struct raft_ready rd;
    bool is_persisting;
    int persist_rc;
    char errmsg[RAFT_ERRMSG_MAX];
    double started;
    /* the load (replica 1) */
    uint32_t size;
    double seconds;
    uint32_t phase;           /* index into windows; past the end: done */
    bool is_draining;         /* the phase ended: wait for its proposals */
    double phase_start;
    uint32_t outstanding;
    uint64_t done;
    struct sent sent[SENT_RING];
    double *lat;
    uint32_t lat_count;
    raft_index last_snapshot;
};

static double now_s(void)
{
    return cmd_now();
}

static uint64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fatal(struct replica *r, const char *what)
{
    fprintf(stderr, "arbor bench raft: replica %llu: %s\n", (unsigned long long)r->id, what);
    exit(1);
}

/* ---- load ---------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

static void phase_report(struct replica *r)
{
    double elapsed = now_s() - r->phase_start;

    qsort(r->lat, r->lat_count, sizeof(double), cmp_double);
    double p50 = r->lat_count ? r->lat[r->lat_count / 2] * 1e3 : 0;
    double p99 = r->lat_count ? r->lat[(uint64_t)r->lat_count * 99 / 100] * 1e3 : 0;
    printf("%u %u %.0f %.3f %.3f\n", r->count, windows[r->phase], (double)r->done / elapsed, p50,
           p99);
    fflush(stdout);
}

static void load_top_up(struct replica *r)
{
    if (r->phase >= AR_ARRAY_LEN(windows) || raft_role(r->node) != RAFT_LEADER)
        return;
    double now = now_s();
    if (!r->is_draining && r->phase_start > 0 && now - r->phase_start >= r->seconds) {
        phase_report(r);
        r->is_draining = true;
    }
    if (r->is_draining) {
        if (r->outstanding > 0)
            return;
        r->is_draining = false;
        r->phase++;
        r->phase_start = 0;
        if (r->phase >= AR_ARRAY_LEN(windows)) {
            printf("done\n");
            fflush(stdout);
            return;
        }
    }
    if (r->phase_start == 0) {
        r->phase_start = now;
        r->done = 0;
        r->lat_count = 0;
    }
    /* bounded by the window */
    while (r->outstanding < windows[r->phase]) {
        uint8_t *data = raft_malloc(r->size);
        raft_index index;
        if (data == NULL)
            fatal(r, "out of memory");
        memset(data, 'a' + (int)(r->outstanding % 26), r->size);
        int rc = raft_propose(r->node, data, r->size, &index);
        if (rc != 0) {
            raft_free(data);
            return; /* not leading, or its queue is full: later */
        }
        r->sent[index % SENT_RING] = (struct sent){.index = index, .at = now};
        r->outstanding++;
    }
}

/* An entry committed and applied here: if the load proposed it, time it. */
static void load_applied(struct replica *r, const struct raft_entry *e, double now)
{
    struct sent *s = &r->sent[e->index % SENT_RING];

    if (s->index != e->index || s->at == 0)
        return;
    if (!r->is_draining && r->lat_count < LAT_MAX) {
        r->lat[r->lat_count++] = now - s->at;
        r->done++;
    }
    s->at = 0;
    r->outstanding--;
}

/* ---- the host loop ---------------------------------------------------------------------------- */

static void host_turn(struct replica *r);
static void persist_after(uv_work_t *w, int status);

static void persist_work(uv_work_t *w)
{
    struct replica *r = w->data;

    r->persist_rc = raft_seglog_append(r->log, &r->rd, r->errmsg);
    if (r->persist_rc == 0)
        r->persist_rc = raft_seglog_sync(r->log, r->errmsg);
}

/* The ready is durable: send, apply, advance. */
static void finish_ready(struct replica *r)
{
    double now = now_s();

    for (uint32_t i = r->rd.early_count; i < r->rd.msg_count; i++) {
        raft_transport_send(r->t, 0, &r->rd.msgs[i]);
    }
    raft_transport_flush(r->t);
    raft_index applied = 0;
    for (uint32_t i = 0; i < r->rd.committed_count; i++) {
        load_applied(r, &r->rd.committed[i], now);
        applied = r->rd.committed[i].index;
    }
    raft_advance(r->node, &r->rd);
    r->is_persisting = false;
    if (applied >= r->last_snapshot + SNAPSHOT_EVERY) {
        /* the state machine (a counter) is its own snapshot: let memory go */
        raft_snapshot_taken(r->node, applied, 1000);
        r->last_snapshot = applied;
    }
}

static void persist_after(uv_work_t *w, int status)
{
    struct replica *r = w->data;

    if (status != 0 || r->persist_rc != 0)
        fatal(r, r->errmsg);
    finish_ready(r);
    host_turn(r);
}

static void host_turn(struct replica *r)
{
    load_top_up(r);
    /* bounded: a ready with nothing for the disk is finished here */
    for (int k = 0; k < 64 && !r->is_persisting; k++) {
        if (!raft_ready(r->node, &r->rd))
            return;
        r->is_persisting = true;
        /* a leader's appends go out while its own disk writes */
        for (uint32_t i = 0; i < r->rd.early_count; i++) {
            raft_transport_send(r->t, 0, &r->rd.msgs[i]);
        }
        raft_transport_flush(r->t);
        /* a ready that only moves the commit index needs no disk (raft.h) */
        if (r->rd.must_sync) {
            r->work.data = r;
            uv_queue_work(&r->loop, &r->work, persist_work, persist_after);
            return;
        }
        finish_ready(r);
    }
}

static void on_check(uv_check_t *h)
{
    host_turn(h->data);
}

static void on_tick(uv_timer_t *h)
{
    struct replica *r = h->data;

    raft_tick(r->node, wall_ns());
    if (now_s() - r->started > RUN_LIMIT_S)
        fatal(r, "ran past its time limit");
    host_turn(r);
}

static void on_recv(void *ctx, uint64_t group, const struct raft_msg *m)
{
    struct replica *r = ctx;

    (void)group;
    raft_step(r->node, m);
}

static void on_term(uv_signal_t *h, int sig)
{
    (void)sig;
    uv_stop(h->loop);
}

static int replica_main(struct replica *r, const char *dir)
{
    struct raft_seglog_options lo;
    struct raft_options o;
    struct raft_boot b;
    struct raft_config c = {.voter_count = r->count};
    char errmsg[RAFT_ERRMSG_MAX] = "";

    for (uint32_t i = 0; i < r->count; i++) {
        c.voters[i] = i + 1;
    }
    raft_seglog_options_init(&lo);
    if (raft_seglog_open(dir, &lo, &r->log, &b, errmsg) != 0 ||
        raft_seglog_snapshot(r->log, 0, 0, 0, &c, false, wall_ns(), errmsg) != 0) {
        fprintf(stderr, "arbor bench raft: %s\n", errmsg);
        return 1;
    }
    b.config = c;
    raft_options_init(&o, r->id);
    o.election_ticks = 20;
    o.heartbeat_ticks = 2;
    o.inflight_max = 64;
    if (raft_node_new(&o, &b, &r->node) != 0)
        return 1;
    r->lat = malloc(sizeof(double) * LAT_MAX);
    if (r->lat == NULL || uv_loop_init(&r->loop) != 0)
        return 1;
    struct raft_transport_options to = {.id = r->id, .host = "127.0.0.1",
                                        .port = r->ports[r->id - 1], .recv = on_recv, .ctx = r};
    if (raft_transport_start(&r->loop, &to, &r->t, errmsg) != 0) {
        fprintf(stderr, "arbor bench raft: %s\n", errmsg);
        return 1;
    }
    for (uint32_t i = 0; i < r->count; i++) {
        if (i + 1 != r->id)
            raft_transport_add_peer(r->t, i + 1, "127.0.0.1", r->ports[i]);
    }
    r->started = now_s();
    uv_timer_init(&r->loop, &r->tick);
    r->tick.data = r;
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    uv_check_init(&r->loop, &r->check);
    r->check.data = r;
    uv_check_start(&r->check, on_check);
    uv_signal_init(&r->loop, &r->term);
    uv_signal_start(&r->term, on_term, SIGTERM);
    if (r->id == 1)
        raft_campaign(r->node); /* a new group: nobody else can lead yet */
    uv_run(&r->loop, UV_RUN_DEFAULT); /* the one unbounded loop: until SIGTERM */
    return 0;
}

/* ---- the parent -------------------------------------------------------------------------------- */

/* Run one cluster of count replicas under dir; prints replica 1's figures. */
static int run_cluster(uint32_t count, const char *dir, double seconds, uint32_t size)
{
    pid_t pids[RAFT_VOTERS_MAX];
    char ports[128] = "";
    char secs[32];
    char sz[16];
    char of[8];
    int out[2];

    for (uint32_t i = 0; i < count; i++) {
        uint16_t p = cmd_free_port();
        if (p == 0)
            return 1;
        snprintf(ports + strlen(ports), sizeof(ports) - strlen(ports), "%s%u", i ? "," : "", p);
    }
    snprintf(secs, sizeof(secs), "%g", seconds);
    snprintf(sz, sizeof(sz), "%u", size);
    snprintf(of, sizeof(of), "%u", count);
    if (pipe(out) != 0)
        return 1;
    for (uint32_t i = 0; i < count; i++) {
        char id[8];
        char rdir[4200];
        snprintf(id, sizeof(id), "%u", i + 1);
        snprintf(rdir, sizeof(rdir), "%s/%u-of-%u", dir, i + 1, count);
        pids[i] = fork();
        if (pids[i] == 0) {
            if (i == 0)
                dup2(out[1], 1);
            close(out[0]);
            close(out[1]);
            execl("/proc/self/exe", "arbor", "bench", "raft", "--replica", id, "--of", of,
                  "--ports", ports, "--dir", rdir, "--seconds", secs, "--size", sz,
                  (char *)NULL);
            _exit(127);
        }
    }
    close(out[1]);
    FILE *in = fdopen(out[0], "r");
    char line[256];
    int rc = 1;
    /* bounded: replica 1 prints a line a phase, then "done", within RUN_LIMIT_S */
    while (in != NULL && fgets(line, sizeof(line), in) != NULL) {
        unsigned n;
        unsigned window;
        double rate;
        double p50;
        double p99;
        if (strncmp(line, "done", 4) == 0) {
            rc = 0;
            break;
        }
        if (sscanf(line, "%u %u %lf %lf %lf", &n, &window, &rate, &p50, &p99) == 5) {
            printf("%8u %10u %14.0f %9.3f %9.3f\n", n, window, rate, p50, p99);
            fflush(stdout);
        }
    }
    for (uint32_t i = 0; i < count; i++) {
        kill(pids[i], SIGTERM);
    }
    for (uint32_t i = 0; i < count; i++) {
        waitpid(pids[i], NULL, 0);
    }
    if (in != NULL)
        fclose(in);
    if (rc != 0)
        fprintf(stderr, "arbor bench raft: the %u-replica run ended early\n", count);
    return rc;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: arbor bench raft [--replicas N] [--seconds S] [--size BYTES] [--dir DIR]\n\n"
                "Start N replicas (default: 3, then 1) as processes on 127.0.0.1, each with its\n"
                "own segment log in DIR (default: a new directory under $TMPDIR or /var/tmp,\n"
                "removed after), and commit entries of --size bytes (default 128) with 1, 16,\n"
                "64 and 256 proposals in flight for S seconds each (default 3). Prints\n"
                "committed entries/s and p50/p99 commit latency (propose to commit at the\n"
                "leader). Replicas share this machine's cores and disk.\n");
}

struct raft_bench_opts {
    uint32_t replicas; /* 0: 3, then 1 */
    double seconds;
    const char *dir;
    const char *ports;
};

/* The options into o (and a replica's own into r); 0, or the exit status. */
static int parse_opts(int argc, char **argv, struct raft_bench_opts *o, struct replica *r)
{
    static const struct option longopts[] = {
        {"replicas", required_argument, NULL, 'n'}, {"seconds", required_argument, NULL, 's'},
        {"size", required_argument, NULL, 'z'},     {"dir", required_argument, NULL, 'd'},
        {"replica", required_argument, NULL, 'r'},  {"of", required_argument, NULL, 'o'},
        {"ports", required_argument, NULL, 'p'},    {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (!cmd_parse_size(optarg, &v) || v < 1 || v > RAFT_VOTERS_MAX) {
                fprintf(stderr, "arbor bench raft: --replicas wants 1..%u\n", RAFT_VOTERS_MAX);
                return 2;
            }
            o->replicas = (uint32_t)v;
            break;
        case 's':
            o->seconds = strtod(optarg, NULL);
            if (o->seconds <= 0 || o->seconds > 20) {
                fprintf(stderr, "arbor bench raft: --seconds wants (0, 20]\n");
                return 2;
            }
            break;
        case 'z':
            if (!cmd_parse_size(optarg, &v) || v < 1 || v > (1u << 20)) {
                fprintf(stderr, "arbor bench raft: --size wants 1..1M\n");
                return 2;
            }
            r->size = (uint32_t)v;
            break;
        case 'd':
            o->dir = optarg;
            break;
        case 'r':
            r->id = strtoull(optarg, NULL, 10);
            break;
        case 'o':
            r->count = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'p':
            o->ports = optarg;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

int bench_raft(int argc, char **argv)
{
    static struct replica r;
    struct raft_bench_opts o = {.seconds = 3};

    r.size = 128;
    int prc = parse_opts(argc, argv, &o, &r);
    if (prc != 0)
        return prc < 0 ? 0 : prc;
    uint32_t replicas = o.replicas;
    double seconds = o.seconds;
    const char *dir = o.dir;
    const char *ports = o.ports;
    if (r.id != 0) {
        /* a replica started by the parent */
        char *p = (char *)ports;
        for (uint32_t i = 0; p != NULL && i < r.count && i < RAFT_VOTERS_MAX; i++) {
            r.ports[i] = (uint16_t)strtoul(p, &p, 10);
            p = *p == ',' ? p + 1 : NULL;
        }
        r.seconds = seconds;
        if (dir == NULL || r.count == 0 || r.id > r.count)
            return 2;
        return replica_main(&r, dir);
    }
    char made[512] = "";
    if (dir == NULL) {
        const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/var/tmp";
        snprintf(made, sizeof(made), "%s/arbor-bench-raft.XXXXXX", tmp);
        if (mkdtemp(made) == NULL) {
            fprintf(stderr, "arbor bench raft: cannot make a directory in %s: %s\n", tmp,
                    strerror(errno));
            return 1;
        }
        dir = made;
    } else if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "arbor bench raft: cannot make %s: %s\n", dir, strerror(errno));
        return 1;
    }
    printf("arbor bench raft: %u-byte entries, %g s a window, logs in %s\n", r.size, seconds,
           dir);
    printf("%8s %10s %14s %9s %9s\n", "replicas", "in flight", "entries/s", "p50 ms", "p99 ms");
    fflush(stdout);
    int rc = 0;
    if (replicas == 0 || replicas == 3)
        rc = run_cluster(3, dir, seconds, r.size);
    if (rc == 0 && (replicas == 0 || replicas != 3))
        rc = run_cluster(replicas == 0 ? 1 : replicas, dir, seconds, r.size);
    if (made[0] != '\0') {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", made);
        if (system(cmd) != 0)
            fprintf(stderr, "arbor bench raft: could not remove %s\n", made);
    }
    return rc == 0 ? 0 : 1;
}
