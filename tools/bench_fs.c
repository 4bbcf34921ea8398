/* tools/bench_fs.c - `arbor bench fs MOUNTPOINT`: an mdtest-like workload on
 * an arbor mount, and the same workload on a local directory and on a
 * trivial in-memory FUSE file system (memfs.c) mounted by the benchmark,
 * so arbor's figures print beside what the disk and what FUSE itself allow.
 *
 * Metadata phases with 1, 4 and 16 threads, each thread in a directory of
 * its own: mkdir, create (with 4 KiB written), create 1 dir (the same,
 * every thread in one directory, a quarter of the files), stat, list+stat (a
 * listing then a stat of every name, the kernel's dentries dropped first:
 * a loader's first pass over a directory), readdir, open+read 4 KiB,
 * rename, unlink. Then MiB/s: a 1 GiB file written and read in
 * 1 MiB pieces, and small files (100 KiB) read by 16 threads twice: the
 * first pass right after writing them, the second from whatever the file
 * system keeps (arbor: its block caches). The kernel's page cache is
 * dropped before each read pass (as root). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "cmd.h"
#include "meta.h"

#define THREADS_MAX 16
#define TARGETS     3   /* arbor, local, memfs */

enum phase { P_MKDIR, P_CREATE, P_CREATE_SHARED, P_STAT, P_LISTSTAT, P_READDIR, P_READ4K,
             P_RENAME, P_UNLINK, P_COUNT };
static const char *const phase_names[P_COUNT] = {"mkdir", "create", "create 1 dir", "stat",
                                                 "list+stat", "readdir", "open+read 4K",
                                                 "rename", "unlink"};

struct job {
    const char *root;
    int index;
    enum phase phase;
    unsigned files;
    unsigned done;
    int err;
};

/* what: "3" the page cache, dentries and inodes; "2" dentries and inodes */
static void drop_caches(const char *what)
{
    sync();
    FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
    if (f != NULL) {
        fputs(what, f);
        fclose(f);
    }
}

/* Create path with 4 KiB in it. */
static int create_4k(const char *path)
{
    static const char four_k[4096];
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    int rc = fd >= 0 && write(fd, four_k, sizeof(four_k)) == (ssize_t)sizeof(four_k) ? 0 : -1;

    if (fd >= 0 && close(fd) != 0)
        rc = -1;
    return rc;
}

/* List dir; with is_stat, stat every name it shows. *ops: the stats (or
 * 1, the listing). */
static int list_dir(const char *dir, bool is_stat, unsigned *ops)
{
    char path[800];
    DIR *d = opendir(dir);
    struct dirent *e;
    int rc = d != NULL ? 0 : -1;

    *ops = is_stat ? 0 : 1;
    /* bounded by the directory's entries */
    while (d != NULL && rc == 0 && (e = readdir(d)) != NULL) {
        struct stat st;
        if (!is_stat || e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        rc = stat(path, &st);
        (*ops)++;
    }
    if (d != NULL)
        closedir(d);
    return rc;
}

/* One op of phase j->phase, the i-th of this thread (dir its directory);
 * *ops: how many it counts for. 0, or -1 with errno. */
static int job_op(const struct job *j, const char *dir, unsigned i, unsigned *ops)
{
    char path[800];
    char path2[800];
    char buf[4096];
    struct stat st;

    *ops = 1;
    switch (j->phase) {
    case P_MKDIR:
        snprintf(path, sizeof(path), "%s/d%u", dir, i);
        return mkdir(path, 0755);
    case P_CREATE:
        snprintf(path, sizeof(path), "%s/f%u", dir, i);
        return create_4k(path);
    case P_CREATE_SHARED:
        snprintf(path, sizeof(path), "%s/shared/t%d-%u", j->root, j->index, i);
        return create_4k(path);
    case P_STAT:
        snprintf(path, sizeof(path), "%s/f%u", dir, i);
        return stat(path, &st);
    case P_READDIR:
    case P_LISTSTAT:
        return list_dir(dir, j->phase == P_LISTSTAT, ops);
    case P_READ4K: {
        snprintf(path, sizeof(path), "%s/f%u", dir, i);
        int fd = open(path, O_RDONLY);
        int rc = fd >= 0 && read(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf) ? 0 : -1;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    case P_RENAME:
        snprintf(path, sizeof(path), "%s/f%u", dir, i);
        snprintf(path2, sizeof(path2), "%s/r%u", dir, i);
        return rename(path, path2);
    default:
        snprintf(path, sizeof(path), "%s/r%u", dir, i);
        return unlink(path);
    }
}

static void *run_job(void *arg)
{
    struct job *j = arg;
    char dir[700];

    snprintf(dir, sizeof(dir), "%s/t%d", j->root, j->index);
    /* a listing reads the whole directory: one for every 100 files; a
     * listing with its stats once (each stat an op); creates in the one
     * directory all threads share, a quarter of the files (the kernel
     * makes them one at a time, so they are slow) */
    unsigned count = j->phase == P_READDIR          ? j->files / 100
                     : j->phase == P_LISTSTAT       ? 1
                     : j->phase == P_CREATE_SHARED  ? j->files / 4
                                                    : j->files;
    for (unsigned i = 0; i < count && j->err == 0; i++) {
        unsigned ops;
        if (job_op(j, dir, i, &ops) != 0)
            j->err = errno;
        j->done += ops;
    }
    return NULL;
}

/* One phase with n threads under root; ops/s, or -1 with the error printed. */
static double run_phase(const char *root, enum phase p, int n, unsigned files)
{
    struct job jobs[THREADS_MAX];
    pthread_t t[THREADS_MAX];

    if (p == P_LISTSTAT)
        drop_caches("2\n"); /* names and inodes the kernel knew: a first pass */
    double t0 = cmd_now();
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct job){.root = root, .index = i, .phase = p, .files = files};
        pthread_create(&t[i], NULL, run_job, &jobs[i]);
    }
    uint64_t ops = 0;
    int err = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ops += jobs[i].done;
        err = err ? err : jobs[i].err;
    }
    double took = cmd_now() - t0;
    if (err != 0) {
        fprintf(stderr, "arbor bench fs: %s under %s: %s\n", phase_names[p], root, strerror(err));
        return -1;
    }
    return (double)ops / took;
}

struct stream {
    const char *root;
    int index;
    unsigned files;
    size_t bytes;
    bool is_write;
    int err;
};

static void *run_stream(void *arg)
{
    struct stream *s = arg;
    char path[800];
    size_t piece = s->bytes < (1u << 20) ? s->bytes : (1u << 20);
    char *buf = ar_malloc(piece);

    if (buf == NULL) {
        s->err = ENOMEM;
        return NULL;
    }
    memset(buf, 'a' + s->index, piece);
    for (unsigned i = 0; i < s->files && s->err == 0; i++) {
        snprintf(path, sizeof(path), "%s/s%d_%u", s->root, s->index, i);
        int fd = s->is_write ? open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)
                             : open(path, O_RDONLY);
        for (size_t at = 0; fd >= 0 && at < s->bytes && s->err == 0; at += piece) {
            ssize_t r = s->is_write ? write(fd, buf, piece) : read(fd, buf, piece);
            if (r != (ssize_t)piece)
                s->err = r < 0 ? errno : EIO;
        }
        if (fd < 0 || close(fd) != 0)
            s->err = s->err ? s->err : errno;
    }
    ar_free(buf);
    return NULL;
}

/* n threads each write or read `files` files of `bytes`; MiB/s or -1. */
static double run_streams(const char *root, int n, unsigned files, size_t bytes, bool is_write)
{
    struct stream s[THREADS_MAX];
    pthread_t t[THREADS_MAX];

    if (!is_write)
        drop_caches("3\n");
    double t0 = cmd_now();
    for (int i = 0; i < n; i++) {
        s[i] = (struct stream){.root = root, .index = i, .files = files, .bytes = bytes,
                               .is_write = is_write};
        pthread_create(&t[i], NULL, run_stream, &s[i]);
    }
    int err = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        err = err ? err : s[i].err;
    }
    double took = cmd_now() - t0;
    if (err != 0) {
        fprintf(stderr, "arbor bench fs: streams under %s: %s\n", root, strerror(err));
        return -1;
    }
    return (double)n * files * (double)bytes / (1 << 20) / took;
}

static void rm_rf(const char *path)
{
    char cmd[800];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "arbor bench fs: could not remove %s\n", path);
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: arbor bench fs MOUNTPOINT [--local DIR] [--files N] [--small-files N]\n"
            "                      [--big-mib N]\n\n"
            "Run an mdtest-like workload in a new directory under MOUNTPOINT (an arbor\n"
            "mount), under DIR (a local directory, default /var/tmp) and on an in-memory\n"
            "FUSE file system this command mounts, and print each figure with arbor's\n"
            "ratio to the others. Metadata ops/s with 1, 4 and 16 threads (N files a\n"
            "thread, default 2000; a quarter of that for creates with every thread in\n"
            "one directory); MiB/s of one big file (default 1024 MiB) and of\n"
            "small files of 100 KiB read by 16 threads (default 20000 in all), twice.\n"
            "Run as root so that the page cache can be dropped between passes.\n");
}

struct fs_args {
    const char *local;
    uint32_t files;   /* a thread, for the ops */
    uint32_t small;   /* 100 KiB files in all */
    uint32_t big_mib;
};

/* -1: go on; else the exit status (said). */
static int fs_opts(int argc, char **argv, struct fs_args *a)
{
    static const struct option longopts[] = {
        {"local", required_argument, NULL, 'l'},
        {"files", required_argument, NULL, 'f'},
        {"small-files", required_argument, NULL, 's'},
        {"big-mib", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        const char *wrong = NULL;
        if (c == 'l')
            a->local = optarg;
        else if (c == 'f' && !cmd_parse_u32(optarg, 100, 1000000, &a->files))
            wrong = "--files wants files a thread, 100 to 1000000";
        else if (c == 's' && !cmd_parse_u32(optarg, 16, 10000000, &a->small))
            wrong = "--small-files wants 16 to 10000000";
        else if (c == 'b' && !cmd_parse_u32(optarg, 1, 65536, &a->big_mib))
            wrong = "--big-mib wants 1 to 65536";
        else if (c == 'h' || c == '?') {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
        if (wrong != NULL) {
            fprintf(stderr, "arbor bench fs: %s\n", wrong);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* The ops' rows: each phase at 1, 4 and 16 threads on every target. */
static int ops_rows(char roots[TARGETS][600], uint32_t files)
{
    static const int counts[] = {1, 4, 16};
    int rc = 0;

    for (size_t k = 0; rc == 0 && k < AR_ARRAY_LEN(counts); k++) {
        int n = counts[k];
        char sub[TARGETS][700];
        for (int t = 0; t < TARGETS; t++) {
            char d[800];
            snprintf(sub[t], sizeof(sub[t]), "%s/n%d", roots[t], n);
            mkdir(sub[t], 0755);
            snprintf(d, sizeof(d), "%s/shared", sub[t]);
            mkdir(d, 0755);
            for (int i = 0; i < n; i++) {
                snprintf(d, sizeof(d), "%s/t%d", sub[t], i);
                mkdir(d, 0755);
            }
        }
        for (enum phase p = 0; rc == 0 && p < P_COUNT; p++) {
            double v[TARGETS];
            for (int t = 0; t < TARGETS; t++) {
                v[t] = run_phase(sub[t], p, n, files);
                if (v[t] < 0)
                    rc = 1;
            }
            printf("%-14s %7d %12.0f %12.0f %12.0f %7.0f%% %7.0f%%\n", phase_names[p], n, v[0],
                   v[1], v[2], 100 * v[0] / v[1], 100 * v[0] / v[2]);
            fflush(stdout);
        }
    }
    return rc;
}

/* The MiB/s rows: one big file, then many small ones. */
static int stream_rows(char roots[TARGETS][600], uint32_t small, uint32_t big_mib)
{
    const struct {
        const char *what;
        int threads;
        unsigned files;
        size_t bytes;
        bool is_write;
    } streams[] = {
        {"write big", 1, 1, (size_t)big_mib << 20, true},
        {"read big", 1, 1, (size_t)big_mib << 20, false},
        {"write small", 16, small / 16, 100u << 10, true},
        {"read small 1", 16, small / 16, 100u << 10, false},
        {"read small 2", 16, small / 16, 100u << 10, false},
    };
    int rc = 0;

    for (size_t k = 0; rc == 0 && k < AR_ARRAY_LEN(streams); k++) {
        double v[TARGETS];
        for (int t = 0; t < TARGETS; t++) {
            v[t] = run_streams(roots[t], streams[k].threads, streams[k].files, streams[k].bytes,
                               streams[k].is_write);
            if (v[t] < 0)
                rc = 1;
        }
        printf("%-14s %7d %9.0f MiB %9.0f MiB %9.0f MiB %7.0f%% %7.0f%%\n", streams[k].what,
               streams[k].threads, v[0], v[1], v[2], 100 * v[0] / v[1], 100 * v[0] / v[2]);
        fflush(stdout);
    }
    return rc;
}

int bench_fs(int argc, char **argv)
{
    struct fs_args a = {.local = "/var/tmp", .files = 2000, .small = 20000, .big_mib = 1024};
    char roots[TARGETS][600];
    char mem_mnt[600];
    int rc = fs_opts(argc, argv, &a);

    if (rc >= 0)
        return rc;
    snprintf(roots[0], sizeof(roots[0]), "%s/arbor-bench-fs.%d", argv[optind], (int)getpid());
    snprintf(roots[1], sizeof(roots[1]), "%s/arbor-bench-fs.%d", a.local, (int)getpid());
    snprintf(mem_mnt, sizeof(mem_mnt), "/tmp/arbor-bench-memfs.%d", (int)getpid());
    snprintf(roots[2], sizeof(roots[2]), "%s", mem_mnt);
    if (mkdir(roots[0], 0755) != 0 || mkdir(roots[1], 0755) != 0 || mkdir(mem_mnt, 0755) != 0) {
        fprintf(stderr, "arbor bench fs: cannot make the working directories: %s\n",
                strerror(errno));
        return 1;
    }
    struct memfs *mem = memfs_mount(mem_mnt, 1.0);
    if (mem == NULL) {
        fprintf(stderr, "arbor bench fs: cannot mount the in-memory file system on %s\n",
                mem_mnt);
        rmdir(mem_mnt);
        return 1;
    }
    printf("arbor bench fs: %s (arbor), %s (local), %s (in-memory FUSE)\n", roots[0], roots[1],
           mem_mnt);
    printf("%-14s %7s %12s %12s %12s %8s %8s\n", "op", "threads", "arbor", "local", "memfs",
           "/local", "/memfs");
    rc = ops_rows(roots, a.files);
    if (rc == 0)
        rc = stream_rows(roots, a.small, a.big_mib);
    memfs_unmount(mem);
    rmdir(mem_mnt);
    rm_rf(roots[0]);
    rm_rf(roots[1]);
    return rc;
}
