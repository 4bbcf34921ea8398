/* tools/bench_objstore.c - `arbor bench objstore --store URL`.
 *
 * For each object size and each number of requests in flight it PUTs objects
 * for a bounded time and byte budget, GETs them back (checking every size),
 * and deletes them, printing ops/s, MiB/s and p50/p99 latency. Before that it
 * measures the ceiling: a plain sequential write (one fdatasync at the end)
 * and read of a file on the same disk, in the same run. Requests are kept in
 * flight with obj_submit() on the store's own worker pool.
 */
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"
#include "cmd.h"
#include "meta.h"
#include "objstore.h"

#define BENCH_LIST_MAX   8u        /* sizes or in-flight counts on one command line */
#define BENCH_INFLIGHT_MAX 256u
#define BENCH_OPS_MAX    100000u   /* objects in one phase */

struct bench_opts {
    const char *url;
    double seconds;            /* per phase */
    uint64_t bytes_max;        /* per PUT phase */
    uint64_t sizes[BENCH_LIST_MAX];
    unsigned size_count;
    unsigned inflights[BENCH_LIST_MAX];
    unsigned inflight_count;
    const char *ceiling_dir;   /* NULL: the file:// store's own directory, else "." */
};

struct bench_phase;

struct bench_slot {
    struct obj_req req;
    struct bench_phase *ph;
    double started;
    unsigned index;       /* object number */
    char key[96];
    uint8_t *buf;         /* GET target, size bytes */
};

struct bench_phase {
    struct obj_store *store;
    enum obj_op op;
    uint64_t size;
    const char *run_prefix;
    pthread_mutex_t lock;
    pthread_cond_t cond;         /* a slot came back */
    struct bench_slot *slots;    /* inflight of them */
    unsigned free_stack[BENCH_INFLIGHT_MAX];
    unsigned free_count;         /* under lock */
    unsigned error_count;        /* under lock */
    char first_error[OBJ_ERRMSG_MAX + 64];
    double *latency;             /* seconds, one per completed op */
    unsigned done_count;         /* under lock */
};

struct bench_figures {
    unsigned ops;
    double seconds;
    double p50_ms;
    double p99_ms;
};

static void bench_usage(FILE *to)
{
    fprintf(to,
            "usage: arbor bench objstore --store URL [options]\n\n"
            "PUT, GET and DELETE objects and print ops/s, MiB/s and latency, beside a plain\n"
            "sequential file write/read on the same disk as the ceiling.\n\n"
            "  --store URL         file:///DIR or s3://BUCKET/PREFIX?endpoint=...\n"
            "  --sizes LIST        object sizes (default 4M,64K; at most 4M)\n"
            "  --inflight LIST     requests in flight (default 1,8,32)\n"
            "  --seconds S         time budget per phase (default 3)\n"
            "  --bytes N           byte budget per PUT phase (default 1G)\n"
            "  --ceiling-dir DIR   where to measure the disk ceiling (default: the file://\n"
            "                      store's directory, else the current directory)\n");
}

static bool parse_list(const char *s, bool is_size, uint64_t *out, unsigned *count)
{
    char copy[256];
    char *save = NULL;

    if (strlen(s) >= sizeof(copy))
        return false;
    memcpy(copy, s, strlen(s) + 1);
    *count = 0;
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (*count == BENCH_LIST_MAX || !cmd_parse_size(t, &v) || v == 0)
            return false;
        if (is_size ? v > OBJ_DATA_BYTES_MAX : v > BENCH_INFLIGHT_MAX)
            return false;
        out[(*count)++] = v;
    }
    return *count > 0;
}

static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},   {"sizes", required_argument, NULL, 'z'},
        {"inflight", required_argument, NULL, 'i'}, {"seconds", required_argument, NULL, 't'},
        {"bytes", required_argument, NULL, 'b'},   {"ceiling-dir", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    uint64_t inflight[BENCH_LIST_MAX];
    int c;

    *o = (struct bench_opts){.seconds = 3, .bytes_max = 1ull << 30};
    o->sizes[0] = 4u << 20;
    o->sizes[1] = 64u << 10;
    o->size_count = 2;
    o->inflights[0] = 1;
    o->inflights[1] = 8;
    o->inflights[2] = 32;
    o->inflight_count = 3;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 's':
            o->url = optarg;
            break;
        case 'z':
            if (!parse_list(optarg, true, o->sizes, &o->size_count)) {
                fprintf(stderr, "arbor bench objstore: --sizes wants sizes of 1..4M\n");
                return 2;
            }
            break;
        case 'i':
            if (!parse_list(optarg, false, inflight, &o->inflight_count)) {
                fprintf(stderr, "arbor bench objstore: --inflight wants counts of 1..%u\n",
                        BENCH_INFLIGHT_MAX);
                return 2;
            }
            for (unsigned i = 0; i < o->inflight_count; i++) {
                o->inflights[i] = (unsigned)inflight[i];
            }
            break;
        case 't':
            o->seconds = strtod(optarg, &end);
            if (*end != '\0' || !(o->seconds > 0 && o->seconds <= 3600)) {
                fprintf(stderr, "arbor bench objstore: --seconds wants 0 < S <= 3600\n");
                return 2;
            }
            break;
        case 'b':
            if (!cmd_parse_size(optarg, &o->bytes_max) || o->bytes_max == 0) {
                fprintf(stderr, "arbor bench objstore: --bytes wants a size such as 512M\n");
                return 2;
            }
            break;
        case 'c':
            o->ceiling_dir = optarg;
            break;
        case 'h':
            bench_usage(stdout);
            return 1;
        default:
            bench_usage(stderr);
            return 2;
        }
    }
    if (o->url == NULL || optind != argc) {
        bench_usage(stderr);
        return 2;
    }
    return 0;
}

/* ---- the disk ceiling ---------------------------------------------------------- */

/* Drop a file's pages from the page cache, so the next read goes to the
 * disk: a read ceiling from memory would measure memcpy, not the disk. */
static void evict_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* One pass: write `bytes` to a new file in 4 MiB writes, fdatasync, evict, read
 * it back cold. */
static int ceiling_pass(const char *dir, uint64_t bytes, uint8_t *buf, double *write_mibs,
                        double *read_mibs)
{
    const size_t chunk = 4u << 20;
    char path[4096];
    double t0;
    int rc = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/.arbor-bench-ceiling.%ld", dir, (long)getpid());
    bytes = bytes < chunk ? chunk : bytes / chunk * chunk; /* whole writes, so the rate is true */
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    t0 = cmd_now();
    for (uint64_t done = 0; done < bytes && rc == 0; done += chunk) {
        if (write(fd, buf, chunk) != (ssize_t)chunk)
            rc = -EIO;
    }
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    *write_mibs = (double)bytes / (1 << 20) / (cmd_now() - t0);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    t0 = cmd_now();
    for (uint64_t done = 0; done < bytes && rc == 0; done += chunk) {
        if (pread(fd, buf, chunk, (off_t)done) != (ssize_t)chunk)
            rc = -EIO;
    }
    *read_mibs = (double)bytes / (1 << 20) / (cmd_now() - t0);
    close(fd);
    unlink(path);
    return rc;
}

/* Reading separate files cold is slower on some disks than one long file, so
 * the bench also prints this ceiling: CEIL_FILE_READERS threads read
 * `count` files of 4 MiB, written and evicted just before, with plain
 * open/pread/close and nothing else. */
#define CEIL_FILE_READERS 4

struct files_ceiling {
    const char *dir;
    unsigned count;
    atomic_uint next;
    atomic_int rc;
};

static void files_path(const struct files_ceiling *c, unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/.arbor-bench-ceiling.%ld.%u", c->dir, (long)getpid(), i);
}

static void *files_reader(void *arg)
{
    struct files_ceiling *c = arg;
    const size_t chunk = 4u << 20;
    uint8_t *buf = ar_malloc(chunk);
    unsigned i;

    while (buf != NULL && (i = atomic_fetch_add(&c->next, 1)) < c->count) {
        char path[4096];
        files_path(c, i, path, sizeof(path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || pread(fd, buf, chunk, 0) != (ssize_t)chunk)
            atomic_store(&c->rc, -EIO);
        if (fd >= 0)
            close(fd);
    }
    ar_free(buf);
    return NULL;
}

static int ceiling_files(const char *dir, uint64_t bytes, const uint8_t *buf, double *read_mibs)
{
    const size_t chunk = 4u << 20;
    struct files_ceiling c = {.dir = dir, .count = (unsigned)(bytes / chunk)};
    pthread_t threads[CEIL_FILE_READERS];
    char path[4096];
    double t0;

    c.count = c.count < 256 ? (c.count > 0 ? c.count : 1) : 256;
    for (unsigned i = 0; i < c.count && atomic_load(&c.rc) == 0; i++) {
        files_path(&c, i, path, sizeof(path));
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, buf, chunk) != (ssize_t)chunk || fdatasync(fd) != 0)
            atomic_store(&c.rc, -EIO);
        if (fd >= 0) {
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
    }
    t0 = cmd_now();
    int started = 0;
    for (; started < CEIL_FILE_READERS && atomic_load(&c.rc) == 0; started++) {
        if (pthread_create(&threads[started], NULL, files_reader, &c) != 0) {
            atomic_store(&c.rc, -EAGAIN);
            break;
        }
    }
    for (int i = 0; i < started; i++) { /* every thread started, whatever failed */
        pthread_join(threads[i], NULL);
    }
    *read_mibs = (double)c.count * 4 / (cmd_now() - t0);
    for (unsigned i = 0; i < c.count; i++) {
        files_path(&c, i, path, sizeof(path));
        unlink(path);
    }
    return atomic_load(&c.rc);
}

/* The best of two passes: the disk is shared and noisy. */
static int ceiling_measure(const char *dir, uint64_t bytes, double *write_mibs, double *read_mibs,
                           double *files_mibs)
{
    const size_t chunk = 4u << 20;
    uint8_t *buf = ar_malloc(chunk);
    int rc = 0;

    if (buf == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < chunk; i++) {
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    }
    *write_mibs = 0;
    *read_mibs = 0;
    *files_mibs = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        double w = 0;
        double r = 0;
        rc = ceiling_pass(dir, bytes, buf, &w, &r);
        *write_mibs = w > *write_mibs ? w : *write_mibs;
        *read_mibs = r > *read_mibs ? r : *read_mibs;
        if (rc == 0)
            rc = ceiling_files(dir, bytes, buf, &r);
        *files_mibs = r > *files_mibs ? r : *files_mibs;
    }
    ar_free(buf);
    return rc;
}

/* ---- one phase: keep `inflight` requests going -------------------------------------- */

static void slot_done(struct obj_req *req)
{
    struct bench_slot *slot = AR_CONTAINER_OF(req, struct bench_slot, req);
    struct bench_phase *ph = slot->ph;
    double took = cmd_now() - slot->started;
    bool is_bad = req->rc != 0 || (ph->op == OBJ_OP_GET && req->result != ph->size);

    pthread_mutex_lock(&ph->lock);
    if (is_bad && ph->error_count++ == 0) {
        snprintf(ph->first_error, sizeof(ph->first_error), "%s %s: %s (%s)",
                 ph->op == OBJ_OP_PUT ? "PUT" : ph->op == OBJ_OP_GET ? "GET" : "DELETE",
                 slot->key, req->rc != 0 ? req->errmsg : "wrong size", ar_strerror(req->rc));
    }
    ph->latency[ph->done_count++] = took;
    ph->free_stack[ph->free_count++] = (unsigned)(slot - ph->slots);
    pthread_cond_signal(&ph->cond);
    pthread_mutex_unlock(&ph->lock);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Run op on objects [0, ops_max) until done, time is up (PUT only stops
 * early), or an error. Returns the figures in *fig. */
static int phase_run(struct bench_phase *ph, unsigned inflight, unsigned ops_max,
                     double seconds, const uint8_t *data, struct bench_figures *fig)
{
    double t0 = cmd_now();
    unsigned issued = 0;

    ph->free_count = inflight;
    for (unsigned i = 0; i < inflight; i++) {
        ph->free_stack[i] = i;
    }
    ph->done_count = 0;
    pthread_mutex_lock(&ph->lock);
    while (issued < ops_max && ph->error_count == 0 &&
           (ph->op != OBJ_OP_PUT || cmd_now() - t0 < seconds)) {
        while (ph->free_count == 0) {
            pthread_cond_wait(&ph->cond, &ph->lock);
        }
        struct bench_slot *slot = &ph->slots[ph->free_stack[--ph->free_count]];
        pthread_mutex_unlock(&ph->lock);
        slot->index = issued++;
        snprintf(slot->key, sizeof(slot->key), "%s/%u", ph->run_prefix, slot->index);
        slot->req = (struct obj_req){.op = ph->op, .key = slot->key};
        if (ph->op == OBJ_OP_PUT) {
            slot->req.buf = (void *)(uintptr_t)data;
            slot->req.size = ph->size;
        } else if (ph->op == OBJ_OP_GET) {
            slot->req.buf = slot->buf;
            slot->req.size = ph->size;
        }
        slot->started = cmd_now();
        int rc = obj_submit(ph->store, &slot->req, slot_done);
        pthread_mutex_lock(&ph->lock);
        if (rc != 0) {
            ph->free_stack[ph->free_count++] = (unsigned)(slot - ph->slots);
            ph->error_count++;
            snprintf(ph->first_error, sizeof(ph->first_error), "submit: %s", ar_strerror(rc));
        }
    }
    while (ph->free_count < inflight) {
        pthread_cond_wait(&ph->cond, &ph->lock);
    }
    pthread_mutex_unlock(&ph->lock);
    fig->ops = ph->done_count;
    fig->seconds = cmd_now() - t0;
    qsort(ph->latency, ph->done_count, sizeof(double), cmp_double);
    fig->p50_ms = ph->done_count ? ph->latency[ph->done_count / 2] * 1e3 : 0;
    fig->p99_ms = ph->done_count ? ph->latency[(ph->done_count * 99) / 100] * 1e3 : 0;
    return ph->error_count == 0 ? 0 : -EIO;
}

static void print_row(const char *op, uint64_t size, unsigned inflight,
                      const struct bench_figures *f, double ceiling_mibs)
{
    double ops = f->ops / f->seconds;
    double mibs = ops * (double)size / (1 << 20);

    printf("%-6s %6lluK %8u %10.0f %10.1f %9.2f %9.2f", op, (unsigned long long)(size >> 10),
           inflight, ops, mibs, f->p50_ms, f->p99_ms);
    if (ceiling_mibs > 0)
        printf(" %9.0f%%", 100.0 * mibs / ceiling_mibs);
    printf("\n");
    fflush(stdout);
}

struct size_result {
    double put_mibs[BENCH_LIST_MAX];
    double get_mibs[BENCH_LIST_MAX];
};

/* A phase's lock, slots (a buffer each, of ph->size) and latencies. */
static int phase_alloc(struct bench_phase *ph, unsigned inflight, unsigned ops_max)
{
    int rc;

    pthread_mutex_init(&ph->lock, NULL);
    pthread_cond_init(&ph->cond, NULL);
    ph->slots = ar_calloc(inflight, sizeof(*ph->slots));
    ph->latency = ar_calloc(ops_max, sizeof(double));
    rc = ph->slots != NULL && ph->latency != NULL ? 0 : -ENOMEM;
    for (unsigned i = 0; i < inflight && rc == 0; i++) {
        ph->slots[i].ph = ph;
        ph->slots[i].buf = ar_malloc(ph->size);
        rc = ph->slots[i].buf != NULL ? 0 : -ENOMEM;
        if (rc == 0) /* fault the pages in now: a reader reuses its buffers */
            memset(ph->slots[i].buf, 0, ph->size);
    }
    return rc;
}

static void phase_free(struct bench_phase *ph, unsigned inflight)
{
    for (unsigned i = 0; ph->slots != NULL && i < inflight; i++) {
        ar_free(ph->slots[i].buf);
    }
    ar_free(ph->slots);
    ar_free(ph->latency);
    pthread_cond_destroy(&ph->cond);
    pthread_mutex_destroy(&ph->lock);
}

/* file_dir: the directory of a file:// store, whose objects are evicted from
 * the page cache before each GET phase (a file per key below it), or NULL. */
static int bench_size(struct obj_store *store, const struct bench_opts *o, uint64_t size,
                      const char *run_id, const char *file_dir, double ceil_w, double ceil_r,
                      struct size_result *res)
{
    unsigned ops_max = (unsigned)(o->bytes_max / size);
    uint8_t *data = ar_malloc(size);
    int rc = 0;

    if (ops_max > BENCH_OPS_MAX)
        ops_max = BENCH_OPS_MAX;
    if (ops_max == 0)
        ops_max = 1;
    if (data == NULL)
        return -ENOMEM;
    for (uint64_t i = 0; i < size; i++) {
        data[i] = (uint8_t)((i * 0x9E3779B1u) >> 11);
    }
    for (unsigned k = 0; k < o->inflight_count && rc == 0; k++) {
        unsigned inflight = o->inflights[k];
        char prefix[64];
        struct bench_phase ph = {.store = store, .size = size, .run_prefix = prefix};
        struct bench_figures put = {0};
        struct bench_figures get = {0};
        struct bench_figures del = {0};
        char failure[sizeof(ph.first_error)] = "";

        snprintf(prefix, sizeof(prefix), "bench/%s/%llu-%u", run_id, (unsigned long long)size,
                 inflight);
        rc = phase_alloc(&ph, inflight, ops_max);
        if (rc == 0) {
            ph.op = OBJ_OP_PUT;
            rc = phase_run(&ph, inflight, ops_max, o->seconds, data, &put);
        }
        if (rc == 0) {
            print_row("PUT", size, inflight, &put, ceil_w);
            res->put_mibs[k] = put.ops / put.seconds * (double)size / (1 << 20);
            for (unsigned i = 0; file_dir != NULL && i < put.ops; i++) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s/%u", file_dir, prefix, i);
                evict_path(path);
            }
            ph.op = OBJ_OP_GET;
            rc = phase_run(&ph, inflight, put.ops, o->seconds, data, &get);
        }
        if (rc == 0) {
            print_row("GET", size, inflight, &get, ceil_r);
            res->get_mibs[k] = get.ops / get.seconds * (double)size / (1 << 20);
        }
        /* Always clean up what was written, even after a failure. */
        if (ph.error_count > 0)
            memcpy(failure, ph.first_error, sizeof(failure));
        ph.error_count = 0;
        ph.op = OBJ_OP_DELETE;
        if (ph.slots != NULL && ph.latency != NULL &&
            phase_run(&ph, inflight, put.ops, o->seconds, data, &del) == 0 && rc == 0)
            print_row("DELETE", size, inflight, &del, 0);
        if (failure[0] == '\0' && ph.error_count > 0)
            memcpy(failure, ph.first_error, sizeof(failure));
        if (failure[0] != '\0') {
            fprintf(stderr, "arbor bench objstore: %s\n", failure);
            rc = rc != 0 ? rc : -EIO;
        }
        phase_free(&ph, inflight);
    }
    ar_free(data);
    return rc;
}

static void print_machine(void)
{
    struct utsname u;
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);

    uname(&u);
    printf("machine: %ld cores, %.1f GiB memory, %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           (double)pages * (double)page / (1 << 30), u.sysname, u.release, u.machine);
}

/* One size's line of bests against the ceilings. */
static void print_summary(const struct bench_opts *o, uint64_t size, const struct size_result *res,
                          double ceil_w, double ceil_r, double ceil_files)
{
    double best_put = 0;
    double best_get = 0;
    unsigned last = o->inflight_count - 1;

    for (unsigned k = 0; k < o->inflight_count; k++) {
        best_put = res->put_mibs[k] > best_put ? res->put_mibs[k] : best_put;
        best_get = res->get_mibs[k] > best_get ? res->get_mibs[k] : best_get;
    }
    printf("summary %lluK: best PUT %.0f MiB/s (%.0f%% of ceiling), best GET %.0f MiB/s "
           "(%.0f%% of ceiling, %.0f%% of separate files)",
           (unsigned long long)(size >> 10), best_put, 100 * best_put / ceil_w, best_get,
           100 * best_get / ceil_r, 100 * best_get / ceil_files);
    if (o->inflight_count > 1 && res->put_mibs[0] > 0 && res->get_mibs[0] > 0)
        printf("; %u in flight vs 1: PUT %.1fx, GET %.1fx", o->inflights[last],
               res->put_mibs[last] / res->put_mibs[0], res->get_mibs[last] / res->get_mibs[0]);
    printf("\n\n");
}

int bench_objstore(int argc, char **argv)
{
    struct bench_opts o;
    struct obj_options store_opts = {.workers = 0};
    struct obj_store *store = NULL;
    char errmsg[OBJ_ERRMSG_MAX];
    char run_id[32];
    char ceiling_dir[4096] = ".";
    char file_dir[4096] = "";
    double ceil_w = 0;
    double ceil_r = 0;
    double ceil_files = 0;
    int rc = parse_opts(argc, argv, &o);

    if (rc != 0)
        return rc == 1 ? 0 : rc;
    for (unsigned k = 0; k < o.inflight_count; k++) {
        if (o.inflights[k] > store_opts.workers)
            store_opts.workers = o.inflights[k];
    }
    rc = obj_store_open(o.url, &store_opts, &store, errmsg);
    if (rc != 0) {
        fprintf(stderr, "arbor bench objstore: cannot open %s: %s\n", o.url, errmsg);
        return 1;
    }
    if (strncmp(o.url, "file://", 7) == 0)
        snprintf(file_dir, sizeof(file_dir), "%.*s", (int)strcspn(o.url + 7, "?"), o.url + 7);
    snprintf(ceiling_dir, sizeof(ceiling_dir), "%s",
             o.ceiling_dir != NULL ? o.ceiling_dir : file_dir[0] != '\0' ? file_dir : ".");
    snprintf(run_id, sizeof(run_id), "%ld-%ld", (long)getpid(), (long)cmd_now());

    printf("arbor bench objstore: %s\n", obj_store_url(store));
    print_machine();
    rc = ceiling_measure(ceiling_dir, o.bytes_max, &ceil_w, &ceil_r, &ceil_files);
    if (rc != 0) {
        fprintf(stderr, "arbor bench objstore: ceiling in %s: %s\n", ceiling_dir,
                ar_strerror(rc));
        obj_store_close(store);
        return 1;
    }
    printf("ceiling: plain sequential file in %s, %llu MiB in 4 MiB writes + one fdatasync,\n"
           "         then read cold (evicted from the page cache); best of 2: write %.0f MiB/s, "
           "read %.0f MiB/s\n",
           ceiling_dir, (unsigned long long)(o.bytes_max >> 20), ceil_w, ceil_r);
    printf("         separate 4 MiB files read cold by %d threads (open/pread/close only): "
           "%.0f MiB/s\n",
           CEIL_FILE_READERS, ceil_files);
    printf("%s\n\n", file_dir[0] != '\0' ? "GETs read cold: each object is evicted from the page "
                                           "cache after its PUT phase"
                                         : "GETs read whatever the store serves (its own caching)");
    printf("%-6s %7s %8s %10s %10s %9s %9s %10s\n", "op", "size", "inflight", "ops/s", "MiB/s",
           "p50 ms", "p99 ms", "%ceiling");

    for (unsigned i = 0; i < o.size_count && rc == 0; i++) {
        struct size_result res = {0};
        rc = bench_size(store, &o, o.sizes[i], run_id, file_dir[0] != '\0' ? file_dir : NULL,
                        ceil_w, ceil_r, &res);
        if (rc == 0)
            print_summary(&o, o.sizes[i], &res, ceil_w, ceil_r, ceil_files);
    }
    obj_store_close(store);
    return rc == 0 ? 0 : 1;
}
