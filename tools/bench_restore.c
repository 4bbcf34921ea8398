/* tools/bench_restore.c - arbor bench restore: how fast a directory of
 * many small files comes back (issue "point-in-time restore"), and what a
 * live workload keeps meanwhile.
 *
 * A 3-replica cluster on 127.0.0.1 (its own, in a scratch directory);
 * N files of one 4 KiB slice each written through the metadata protocol
 * (the slices' blocks are not uploaded: a restore only names them again);
 * then `restore /src` at the moment after them into /dst while live
 * clients create and stat files elsewhere. Prints the restore's phases and
 * files/s, and the live ops/s during it against their rate alone: the mean
 * of 3 s before the restore and 3 s after it (each of those moves ±20%
 * from run to run on its own). */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "client.h"
#include "cmd.h"
#include "meta.h"

#define NODES          3u
#define FILES_PER_DIR  1000u

struct rbench {
    struct ar_client *client;
    uint64_t files;
    uint32_t threads;
    uint32_t live_threads;
    uint32_t restore_threads;
    uint32_t batch_files;
    bool is_normal_priority;
    uint64_t src_ino;
    uint64_t *dirs;          /* the source's subdirectories */
    atomic_uint_fast64_t next_file;
    atomic_uint_fast64_t made;
    atomic_int rc;
    atomic_bool is_live_stop;
    atomic_uint_fast64_t live_ops;
    uint64_t live_dir;
};

static uint64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int call(struct ar_client *c, struct meta_cmd *cmd, struct meta_response_buf *out)
{
    return ar_client_call(c, META_ROOT_SHARD, cmd, META_READ_LINEARIZABLE, 0, out);
}

static int make_dir(struct ar_client *c, uint64_t parent, const char *name, uint64_t *ino,
                    struct meta_response_buf *out)
{
    struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = parent, .name = name,
                          .name_len = (uint32_t)strlen(name), .mode = S_IFDIR | 0755};
    int rc = call(c, &mk, out);

    *ino = out->r.reply.attr.ino;
    return rc;
}

static void *populate(void *arg)
{
    struct rbench *b = arg;
    struct meta_response_buf *out = malloc(sizeof(*out));
    uint64_t id = 0;
    uint64_t id_end = 0;

    while (out != NULL && atomic_load(&b->rc) == 0) {
        uint64_t i = atomic_fetch_add(&b->next_file, 1);
        if (i >= b->files)
            break;
        if (id == id_end) {
            struct meta_cmd al = {.op = META_OP_ALLOC_SLICES, .length = 4096};
            int rc = call(b->client, &al, out);
            if (rc != 0) {
                atomic_store(&b->rc, rc);
                break;
            }
            id = out->r.reply.attr.ino;
            id_end = id + out->r.reply.attr.size;
        }
        char name[32];
        snprintf(name, sizeof(name), "f%07" PRIu64, i);
        struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = b->dirs[i / FILES_PER_DIR],
                              .name = name, .name_len = (uint32_t)strlen(name),
                              .mode = S_IFREG | 0644};
        int rc = call(b->client, &mk, out);
        struct meta_cmd w = {.op = META_OP_WRITE, .ino = out->r.reply.attr.ino,
                             .slice = {.id = id++, .size = 4096, .len = 4096}};
        if (rc == 0)
            rc = call(b->client, &w, out);
        if (rc != 0) {
            atomic_store(&b->rc, rc);
            break;
        }
        atomic_fetch_add(&b->made, 1);
    }
    free(out);
    return NULL;
}

/* A live client: create a file and stat it, over and over. */
static void *live(void *arg)
{
    struct rbench *b = arg;
    struct meta_response_buf *out = malloc(sizeof(*out));
    static atomic_uint_fast64_t serial;

    while (out != NULL && !atomic_load(&b->is_live_stop)) {
        char name[32];
        snprintf(name, sizeof(name), "l%" PRIuFAST64, atomic_fetch_add(&serial, 1));
        struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = b->live_dir, .name = name,
                              .name_len = (uint32_t)strlen(name), .mode = S_IFREG | 0644};
        if (call(b->client, &mk, out) != 0)
            break;
        struct meta_cmd st = {.op = META_OP_GETATTR, .ino = out->r.reply.attr.ino};
        if (call(b->client, &st, out) != 0)
            break;
        atomic_fetch_add(&b->live_ops, 2);
    }
    free(out);
    return NULL;
}

/* A restore's progress line, with the live ops/s since the last one. */
struct progress_ctx {
    struct rbench *b;
    double t0;
    double last_t;
    uint64_t last_ops;
};

static void progress(void *ctx, const char *line)
{
    struct progress_ctx *p = ctx;
    double now = cmd_now();
    uint64_t ops = atomic_load(&p->b->live_ops);

    if (p->b->live_threads == 0)
        fprintf(stderr, "  restore %6.2f s: %s\n", now - p->t0, line);
    else
        fprintf(stderr, "  restore %6.2f s: %s (live ops/s since the last line: %.0f)\n",
                now - p->t0, line,
                now > p->last_t ? (double)(ops - p->last_ops) / (now - p->last_t) : 0.0);
    p->last_t = now;
    p->last_ops = ops;
}

/* The source tree: b->files files in directories of FILES_PER_DIR under
 * /src, written by b->threads clients; and /live for the live workload. */
static int write_source(struct rbench *b, struct meta_response_buf *out)
{
    pthread_t t[256];
    uint64_t dir_count = (b->files + FILES_PER_DIR - 1) / FILES_PER_DIR;

    b->dirs = calloc(dir_count, sizeof(*b->dirs));
    int rc = b->dirs != NULL ? make_dir(b->client, 1, "src", &b->src_ino, out) : -ENOMEM;
    for (uint64_t d = 0; rc == 0 && d < dir_count; d++) {
        char name[32];
        snprintf(name, sizeof(name), "d%05" PRIu64, d);
        rc = make_dir(b->client, b->src_ino, name, &b->dirs[d], out);
    }
    if (rc == 0)
        rc = make_dir(b->client, 1, "live", &b->live_dir, out);
    double t0 = cmd_now();
    double last = t0;
    uint32_t started = 0;
    for (; rc == 0 && started < b->threads; started++) {
        if (pthread_create(&t[started], NULL, populate, b) != 0)
            break;
    }
    while (rc == 0 && atomic_load(&b->made) < b->files && atomic_load(&b->rc) == 0) {
        usleep(100000);
        if (cmd_now() - last >= 5) {
            last = cmd_now();
            fprintf(stderr, "  writing the source: %" PRIuFAST64 " of %" PRIu64 " files\n",
                    atomic_load(&b->made), b->files);
        }
    }
    for (uint32_t i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
    }
    rc = rc != 0 ? rc : atomic_load(&b->rc);
    double populate_s = cmd_now() - t0;
    if (rc == 0)
        printf("source: %" PRIu64 " files in %" PRIu64 " directories, written in %.1f s "
               "(%.0f files/s, 2 commands each)\n", b->files, dir_count, populate_s,
               (double)b->files / populate_s);
    return rc;
}

/* The live workload's ops/s over the next `seconds`. */
static double live_rate(struct rbench *b, unsigned seconds)
{
    uint64_t ops0 = atomic_load(&b->live_ops);
    double t0 = cmd_now();

    sleep(seconds);
    return (double)(atomic_load(&b->live_ops) - ops0) / (cmd_now() - t0);
}

static int run(struct rbench *b, const uint16_t *ports)
{
    struct meta_response_buf *out = malloc(sizeof(*out));
    struct ar_client_options o = {.has_no_session = true, .budget_ms = 60000};
    char errmsg[AR_ERRMSG_MAX] = "";
    pthread_t t[256];

    for (uint32_t i = 0; i < NODES; i++) {
        snprintf(o.addrs[o.addr_count++], sizeof(o.addrs[0]), "127.0.0.1:%u", ports[i]);
    }
    int rc = out != NULL ? ar_client_open(&o, &b->client, errmsg) : -ENOMEM;
    if (rc != 0) {
        fprintf(stderr, "arbor bench restore: %s\n", errmsg);
        free(out);
        return 1;
    }
    rc = write_source(b, out);
    uint64_t at = wall_ns();
    usleep(200000);
    /* the live workload alone, then beside the restore */
    uint32_t started = 0;
    for (; rc == 0 && started < b->live_threads; started++) {
        if (pthread_create(&t[started], NULL, live, b) != 0)
            break;
    }
    sleep(1); /* warm; and alone, the archive has the moment by the end */
    double before = live_rate(b, 3);
    struct ar_restore_options ro = {.meta = o, .path = "/src", .at_ns = at, .into = "/dst",
                                    .threads = b->restore_threads, .wait_s = 30,
                                    .batch_files = b->batch_files,
                                    .is_normal_priority = b->is_normal_priority,
                                    .progress = progress};
    struct ar_restore_report rep;
    uint64_t ops0 = atomic_load(&b->live_ops);
    double t0 = cmd_now();
    struct progress_ctx pc = {.b = b, .t0 = t0, .last_t = t0, .last_ops = ops0};
    ro.ctx = &pc;
    if (rc == 0)
        rc = ar_restore_run(&ro, &rep, errmsg);
    double restore_s = cmd_now() - t0;
    double during = (double)(atomic_load(&b->live_ops) - ops0) / restore_s;
    double after = rc == 0 && b->live_threads > 0 ? live_rate(b, 3) : 0;
    double base = after > 0 ? (before + after) / 2 : before;
    atomic_store(&b->is_live_stop, true);
    for (uint32_t i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
    }
    if (rc != 0) {
        fprintf(stderr, "arbor bench restore: %s\n", errmsg[0] ? errmsg : ar_strerror(rc));
    } else {
        printf("restore: %.1f s in all: state rebuilt in %.2f s (%" PRIu64 " commands replayed), "
               "tree walked and %" PRIu64 " directories made in %.2f s (files written beside "
               "it), all written and verified in %.1f s\n",
               restore_s, rep.rebuild_s, rep.point.entries, rep.dirs, rep.plan_s, rep.write_s);
        printf("restore: %.0f files/s (target >= 50000)\n", (double)rep.files / restore_s);
        if (b->live_threads > 0)
            printf("live workload (%u clients, create + stat): %.0f ops/s alone (%.0f before, "
                   "%.0f after), %.0f ops/s during the restore: %.0f%% (target >= 70%%)\n",
                   b->live_threads, base, before, after, during, 100.0 * during / base);
        else
            printf("no live workload (--live-clients 0): the restore alone\n");
    }
    ar_client_close(b->client);
    free(b->dirs);
    free(out);
    return rc == 0 ? 0 : 1;
}

static void rbench_usage(void)
{
    printf("usage: arbor bench restore [--files N] [--threads N] [--live-clients N]\n"
           "                           [--restore-threads N] [--batch-files N]\n"
           "                           [--priority low|normal]\n\n"
           "Start a 3-replica cluster on 127.0.0.1, write N files (default 100000;\n"
           "the issue's figure is for 1M) with --threads clients (16), then restore\n"
           "them into a new directory while --live-clients (4) create and stat\n"
           "files (0: none, the restore alone). Prints the restore's phases and\n"
           "files/s, and the live ops/s during the restore against their rate\n"
           "alone (the mean of 3 s before it and 3 s after it).\n"
           "--restore-threads, --batch-files and --priority: the restore's\n"
           "commands in flight, files a command and CPU priority (arbor restore's\n"
           "defaults).\n");
}

/* -1: go on; else the exit status (said). */
static int rbench_opts(int argc, char **argv, struct rbench *b)
{
    static const struct option longopts[] = {
        {"files", required_argument, NULL, 'f'},
        {"threads", required_argument, NULL, 't'},
        {"live-clients", required_argument, NULL, 'l'},
        {"restore-threads", required_argument, NULL, 'r'},
        {"batch-files", required_argument, NULL, 'b'},
        {"priority", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (!cmd_parse_size(optarg, &v) || v == 0 || v > 100000000) {
                fprintf(stderr, "arbor bench restore: --files wants 1..100M\n");
                return 2;
            }
            b->files = v;
            break;
        case 't':
        case 'l':
        case 'r':
            if (!cmd_parse_size(optarg, &v) || (v == 0 && c != 'l') || v > 256) {
                fprintf(stderr, "arbor bench restore: --%s wants %s..256\n",
                        c == 't' ? "threads" : c == 'l' ? "live-clients" : "restore-threads",
                        c == 'l' ? "0" : "1");
                return 2;
            }
            *(c == 't' ? &b->threads : c == 'l' ? &b->live_threads : &b->restore_threads) =
                (uint32_t)v;
            break;
        case 'b':
            if (!cmd_parse_size(optarg, &v) || v == 0 || v > META_RESTORE_FILES_MAX) {
                fprintf(stderr, "arbor bench restore: --batch-files wants 1..%u\n",
                        META_RESTORE_FILES_MAX);
                return 2;
            }
            b->batch_files = (uint32_t)v;
            break;
        case 'p':
            if (strcmp(optarg, "low") != 0 && strcmp(optarg, "normal") != 0) {
                fprintf(stderr, "arbor bench restore: --priority wants low or normal\n");
                return 2;
            }
            b->is_normal_priority = strcmp(optarg, "normal") == 0;
            break;
        case 'h':
            rbench_usage();
            return 0;
        default:
            return 2;
        }
    }
    return -1;
}

int bench_restore(int argc, char **argv)
{
    struct rbench b = {.files = 100000, .threads = 16, .live_threads = 4};
    int orc = rbench_opts(argc, argv, &b);

    if (orc >= 0)
        return orc;
    char dir[512];
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/var/tmp";
    snprintf(dir, sizeof(dir), "%s/arbor-bench-restore.XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "arbor bench restore: cannot make a directory in %s\n", tmp);
        return 1;
    }
    static const char *const args[] = {"--archive-ms", "1000", NULL};
    uint16_t ports[NODES];
    pid_t pids[NODES] = {0};
    int rc = 1;
    if (cmd_cluster_start(dir, NODES, args, ports, pids) != 0 ||
        !cmd_cluster_listening(ports, NODES)) {
        fprintf(stderr, "arbor bench restore: the cluster did not start (logs in %s)\n", dir);
    } else {
        printf("arbor bench restore: 3 replicas, %" PRIu64 " files, data in %s\n", b.files, dir);
        rc = run(&b, ports);
    }
    cmd_cluster_stop(pids, NODES);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (rc == 0 && system(cmd) != 0)
        fprintf(stderr, "arbor bench restore: could not remove %s\n", dir);
    return rc;
}
