/* jepsen/worker.c - a client of a fault-injection run.
 *
 * Runs one workload on keys of its own, through the metadata protocol (the
 * client library) or through a mounted volume (plain syscalls), from a few
 * threads, and writes each operation it invoked as a history line the
 * checker reads (checker.h): invocation and completion on CLOCK_MONOTONIC,
 * which every process on the machine shares.
 *
 *   register  a file's value: through the protocol an xattr (SETXATTR,
 *             GETXATTR); through the mount a file written under a
 *             temporary name and renamed over (a training job's checkpoint)
 *   set       names n0..n7 in a directory: create, unlink, rename, list
 *   counter   a directory holding one name v<N>: compare-and-set is
 *             rename(v<a>, v<b>, RENAME_NOREPLACE), which only one of two
 *             racing clients can win; read lists the directory
 *
 * An operation whose effect is unknown (a timeout, a lost connection, an
 * I/O error) is "info": it may take effect at any later moment. Its thread
 * goes on as a new process (a process has one operation open at a time).
 * An operation refused by the state (EEXIST, ENOENT) is ok and refused;
 * one that certainly changed nothing (a read's error, a temporary file
 * that could not be written) is "fail".
 *
 * Leased mounts (--dir2, --stale-ms): odd threads work through a second
 * mount of the same volume, and both mounts answer lookups and stats from
 * attribute leases and kernel grants, which promise answers no staler than
 * their timeouts. A read, or a refusal (it only observed the state), may
 * then show the state of up to that long before it was invoked, so such an
 * observation is written down as invoked that much earlier: the checker
 * then allows exactly that staleness and no more. Mutations reach the
 * leader by name and are written down as they happened, but for one the
 * kernel answers itself: a rename between two names it takes for links of
 * one file (docs/jepsen.md, "Left").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checker.h"
#include "client.h"

#define THREADS_MAX 64
#define KEYS_MAX 64
#define SET_NAMES 8 /* names per set: few, so that clients collide */

enum workload { WL_REGISTER, WL_SET, WL_COUNTER };
enum outcome { OUT_OK, OUT_REFUSED, OUT_FAIL, OUT_INFO };

struct worker {
    enum workload workload;
    bool is_proto;
    enum meta_read_mode read_mode; /* linearizable; follower reads only to show the checker
                                    * catches what they allow */
    const char *dir;             /* fs: the mount's directory for this worker's keys */
    const char *dir2;            /* fs: the same directory on a second mount, or NULL */
    uint64_t stale_ns;           /* fs: how stale an observation may be (leased mounts) */
    struct ar_client *client;    /* proto */
    uint64_t root_ino;           /* proto: the directory of this worker's keys */
    uint64_t inos[KEYS_MAX];     /* proto: each key's file or directory */
    uint32_t keys;
    uint64_t key_base;
    uint32_t threads;
    uint32_t process_base;
    uint64_t deadline_ns;
    uint64_t seed;
    FILE *out;
    pthread_mutex_t lock;        /* out, and the open operations below */
    struct open_op {
        bool is_open;
        struct jk_op op;
    } open[THREADS_MAX];
    atomic_uint done;
};

struct thread_arg {
    struct worker *w;
    uint32_t index;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t next_rand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static const char *fn_name(enum jk_fn fn)
{
    static const char *const names[] = {"?", "read", "write", "cas", "add", "remove", "move"};
    return names[fn <= JK_MOVE ? fn : 0];
}

/* One history line; the caller holds w->lock. */
static void write_line(struct worker *w, const struct jk_op *op)
{
    char complete[24] = "-";
    if (op->kind != JK_INFO)
        snprintf(complete, sizeof(complete), "%" PRIu64, op->complete);
    fprintf(w->out, "%" PRIu64 " %s %u %s %s%s %" PRIu64 " %" PRId64, op->invoke, complete,
            op->process, op->kind == JK_OK ? "ok" : op->kind == JK_FAIL ? "fail" : "info",
            fn_name(op->fn), op->is_refused ? "!" : "", op->key, op->value);
    if (op->fn == JK_CAS || op->fn == JK_MOVE)
        fprintf(w->out, " %" PRId64, op->value2);
    fputc('\n', w->out);
    fflush(w->out);
}

/* ---- through the protocol ------------------------------------------------------------------ */

static int call(struct worker *w, const struct meta_cmd *cmd, struct meta_response_buf *out)
{
    return ar_client_call(w->client, META_ROOT_SHARD, cmd, w->read_mode, sizeof(out->data), out);
}

static int proto_lookup_or_make(struct worker *w, uint64_t dir, const char *name, bool is_dir,
                                uint64_t *ino, struct meta_response_buf *out)
{
    struct meta_cmd cmd = {.op = is_dir ? META_OP_MKDIR : META_OP_MKNOD, .ino = dir,
                           .name = name, .name_len = (uint32_t)strlen(name),
                           .mode = (is_dir ? S_IFDIR | 0755u : S_IFREG | 0644u)};
    int rc = call(w, &cmd, out);
    if (rc == 0 || rc == -EEXIST) {
        cmd = (struct meta_cmd){.op = META_OP_LOOKUP, .ino = dir, .name = name,
                                .name_len = (uint32_t)strlen(name)};
        rc = call(w, &cmd, out);
    }
    if (rc == 0)
        *ino = out->r.reply.attr.ino;
    return rc;
}

/* The names of directory ino, as the set's bits or the counter's value. */
static int proto_list(struct worker *w, uint64_t ino, int64_t *value,
                      struct meta_response_buf *out)
{
    uint64_t bits = 0;
    int64_t counter = -1;
    uint32_t names = 0;
    struct meta_cmd cmd = {.op = META_OP_READDIR, .ino = ino, .entry_cap = 64};

    for (int pages = 0; pages < 64; pages++) { /* bounded: a set holds at most 8 names */
        int rc = call(w, &cmd, out);
        if (rc != 0)
            return rc;
        const struct meta_reply *r = &out->r.reply;
        for (uint32_t i = 0; i < r->entry_count; i++) {
            const char *n = r->entries[i].name;
            if (n[0] == 'n' && w->workload == WL_SET)
                bits |= 1ull << (strtoul(n + 1, NULL, 10) & 63);
            if (n[0] == 'v' && w->workload == WL_COUNTER) {
                counter = (int64_t)strtoll(n + 1, NULL, 10);
                names++;
            }
            cmd.cookie = r->entries[i].cookie;
        }
        if (r->is_end || r->entry_count == 0)
            break;
    }
    /* two names (or none) in a counter is no value anyone wrote: the checker says so */
    *value = w->workload == WL_SET ? (int64_t)bits : names == 1 ? counter : -1 - (int64_t)names;
    return 0;
}

static int proto_op(struct worker *w, struct jk_op *op, struct meta_response_buf *out)
{
    uint64_t ino = w->inos[op->key - w->key_base];
    char name[32];
    char name2[32];
    char value[32];
    struct meta_cmd cmd = {.ino = ino};

    switch (op->fn) {
    case JK_READ:
        if (w->workload != WL_REGISTER)
            return proto_list(w, ino, &op->value, out);
        cmd = (struct meta_cmd){.op = META_OP_GETXATTR, .ino = ino, .name = "user.v",
                                .name_len = 6};
        int rc = call(w, &cmd, out);
        if (rc == -ENODATA) {
            op->value = 0;
            return 0;
        }
        if (rc == 0) {
            uint32_t len = out->r.reply.data_len < 31 ? out->r.reply.data_len : 31;
            memcpy(value, out->r.reply.data, len);
            value[len] = '\0';
            op->value = (int64_t)strtoll(value, NULL, 10);
        }
        return rc;
    case JK_WRITE:
        snprintf(value, sizeof(value), "%" PRId64, op->value);
        cmd = (struct meta_cmd){.op = META_OP_SETXATTR, .ino = ino, .name = "user.v",
                                .name_len = 6, .value = value,
                                .value_len = (uint32_t)strlen(value)};
        return call(w, &cmd, out);
    case JK_ADD:
    case JK_REMOVE:
        snprintf(name, sizeof(name), "n%" PRId64, op->value);
        cmd = (struct meta_cmd){.op = op->fn == JK_ADD ? META_OP_MKNOD : META_OP_UNLINK,
                                .ino = ino, .name = name, .name_len = (uint32_t)strlen(name),
                                .mode = S_IFREG | 0644u};
        return call(w, &cmd, out);
    case JK_MOVE:
    case JK_CAS: {
        const char *prefix = op->fn == JK_MOVE ? "n" : "v";
        snprintf(name, sizeof(name), "%s%" PRId64, prefix, op->value);
        snprintf(name2, sizeof(name2), "%s%" PRId64, prefix, op->value2);
        cmd = (struct meta_cmd){.op = META_OP_RENAME, .ino = ino, .name = name,
                                .name_len = (uint32_t)strlen(name), .new_dir = ino,
                                .new_name = name2, .new_name_len = (uint32_t)strlen(name2),
                                .flags = op->fn == JK_CAS ? RENAME_NOREPLACE : 0};
        return call(w, &cmd, out);
    }
    }
    return -EINVAL;
}

static int proto_setup(struct worker *w, struct meta_response_buf *out)
{
    char name[32];
    snprintf(name, sizeof(name), "j%" PRIu64, w->key_base);
    int rc = proto_lookup_or_make(w, 1, name, true, &w->root_ino, out);
    for (uint32_t k = 0; rc == 0 && k < w->keys; k++) {
        snprintf(name, sizeof(name), "k%" PRIu64, w->key_base + k);
        rc = proto_lookup_or_make(w, w->root_ino, name, w->workload != WL_REGISTER, &w->inos[k],
                                  out);
        uint64_t first;
        if (rc == 0 && w->workload == WL_COUNTER) {
            int64_t v;
            rc = proto_list(w, w->inos[k], &v, out);
            if (rc == 0 && v == -1) /* empty: the counter starts at 0 */
                rc = proto_lookup_or_make(w, w->inos[k], "v0", false, &first, out);
        }
    }
    return rc;
}

/* ---- through the mount --------------------------------------------------------------------- */

static int fs_list(struct worker *w, const char *path, int64_t *value)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return -errno;
    uint64_t bits = 0;
    int64_t counter = -1;
    uint32_t names = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == 'n' && w->workload == WL_SET)
            bits |= 1ull << (strtoul(e->d_name + 1, NULL, 10) & 63);
        if (e->d_name[0] == 'v' && w->workload == WL_COUNTER) {
            counter = (int64_t)strtoll(e->d_name + 1, NULL, 10);
            names++;
        }
    }
    int rc = errno != 0 ? -errno : 0;
    closedir(d);
    *value = w->workload == WL_SET ? (int64_t)bits : names == 1 ? counter : -1 - (int64_t)names;
    return rc;
}

/* Whole-file write: 0, or -errno. */
static int fs_write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    int rc = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

/* The fs outcome of op: 0 done, a negative errno; *is_before says the error
 * came before anything that could change the state (a definite failure). */
static int fs_op(struct worker *w, struct jk_op *op, uint32_t thread, bool *is_before)
{
    char path[512];
    char path2[512];
    char text[32];

    /* odd threads through the second mount, when there is one */
    const char *dir = w->dir2 != NULL && thread % 2 == 1 ? w->dir2 : w->dir;

    *is_before = false;
    snprintf(path, sizeof(path), "%s/k%" PRIu64, dir, op->key);
    switch (op->fn) {
    case JK_READ: {
        if (w->workload != WL_REGISTER)
            return fs_list(w, path, &op->value);
        int fd = open(path, O_RDONLY);
        if (fd < 0 && errno == ENOENT) {
            op->value = 0;
            return 0;
        }
        if (fd < 0)
            return -errno;
        ssize_t n = read(fd, text, sizeof(text) - 1);
        int rc = n < 0 ? -errno : 0;
        close(fd);
        if (n >= 0) {
            text[n] = '\0';
            /* a torn or empty file reads as a value nobody wrote */
            char *end = NULL;
            op->value = (int64_t)strtoll(text, &end, 10);
            if (n == 0 || end == text || *end != '\n')
                op->value = -1;
        }
        return rc;
    }
    case JK_WRITE: {
        snprintf(path2, sizeof(path2), "%s/k%" PRIu64 ".tmp%u", dir, op->key, thread);
        snprintf(text, sizeof(text), "%" PRId64 "\n", op->value);
        int rc = fs_write_file(path2, text);
        if (rc != 0) {
            *is_before = true;
            return rc;
        }
        return rename(path2, path) == 0 ? 0 : -errno;
    }
    case JK_ADD: {
        snprintf(path2, sizeof(path2), "%s/n%" PRId64, path, op->value);
        int fd = open(path2, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0)
            return -errno;
        return close(fd) == 0 ? 0 : -errno;
    }
    case JK_REMOVE:
        snprintf(path2, sizeof(path2), "%s/n%" PRId64, path, op->value);
        return unlink(path2) == 0 ? 0 : -errno;
    case JK_MOVE:
    case JK_CAS: {
        char from[600];
        char to[600];
        const char *prefix = op->fn == JK_MOVE ? "n" : "v";
        snprintf(from, sizeof(from), "%s/%s%" PRId64, path, prefix, op->value);
        snprintf(to, sizeof(to), "%s/%s%" PRId64, path, prefix, op->value2);
        unsigned flags = op->fn == JK_CAS ? RENAME_NOREPLACE : 0;
        return renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) == 0 ? 0 : -errno;
    }
    }
    return -EINVAL;
}

static int fs_setup(struct worker *w)
{
    char path[512];
    if (mkdir(w->dir, 0755) != 0 && errno != EEXIST)
        return -errno;
    for (uint32_t k = 0; k < w->keys; k++) {
        snprintf(path, sizeof(path), "%s/k%" PRIu64, w->dir, w->key_base + k);
        if (w->workload == WL_REGISTER)
            continue; /* absent reads as 0 */
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -errno;
        int64_t v;
        int rc = fs_list(w, path, &v);
        if (rc != 0)
            return rc;
        if (w->workload == WL_COUNTER && v == -1) {
            snprintf(path + strlen(path), sizeof(path) - strlen(path), "/v0");
            if ((rc = fs_write_file(path, "")) != 0)
                return rc;
        }
    }
    return 0;
}

/* ---- the run ------------------------------------------------------------------------------- */

/* The next operation of a thread's workload. last_read: its key's value as
 * this thread last read it (the counter's compare-and-set starts there). */
static void pick(struct worker *w, uint64_t *seed, uint32_t thread, uint64_t serial,
                 const int64_t *last_read, struct jk_op *op)
{
    uint32_t k = (uint32_t)(next_rand(seed) % w->keys);
    uint32_t r = (uint32_t)(next_rand(seed) % 100);
    *op = (struct jk_op){.key = w->key_base + k, .fn = JK_READ};
    switch (w->workload) {
    case WL_REGISTER:
        if (r < 50) { /* values unique to the run: a lost or invented one shows */
            op->fn = JK_WRITE;
            op->value = (int64_t)(w->process_base + thread + 1) * 1000000000 + (int64_t)serial;
        }
        break;
    case WL_SET:
        op->value = (int64_t)(next_rand(seed) % SET_NAMES);
        op->value2 = (int64_t)(next_rand(seed) % SET_NAMES);
        op->fn = r < 25 ? JK_READ : r < 55 ? JK_ADD : r < 80 ? JK_REMOVE : JK_MOVE;
        if (op->fn == JK_READ)
            op->value = 0;
        if (op->fn == JK_MOVE && op->value2 == op->value)
            op->value2 = (op->value + 1) % SET_NAMES;
        break;
    case WL_COUNTER:
        if (r >= 40) {
            op->fn = JK_CAS;
            op->value = last_read[k] < 0 ? 0 : last_read[k];
            op->value2 = op->value + 1;
        }
        break;
    }
}

static void *run_thread(void *arg)
{
    struct thread_arg *ta = arg;
    struct worker *w = ta->w;
    uint64_t seed = w->seed * 1000003u + ta->index + 1;
    uint32_t process = w->process_base + ta->index;
    int64_t last_read[KEYS_MAX] = {0};
    struct meta_response_buf *out = w->is_proto ? malloc(sizeof(*out)) : NULL;

    for (uint64_t serial = 1; (out != NULL || !w->is_proto) && now_ns() < w->deadline_ns;
         serial++) {
        struct jk_op op;
        pick(w, &seed, ta->index, serial, last_read, &op);
        op.process = process;
        op.kind = JK_INFO;
        pthread_mutex_lock(&w->lock);
        op.invoke = now_ns();
        w->open[ta->index] = (struct open_op){.is_open = true, .op = op};
        pthread_mutex_unlock(&w->lock);

        bool is_before = false;
        int rc = w->is_proto ? proto_op(w, &op, out) : fs_op(w, &op, ta->index, &is_before);
        bool is_refusal = (rc == -EEXIST && (op.fn == JK_ADD || op.fn == JK_CAS)) ||
                          (rc == -ENOENT && (op.fn == JK_REMOVE || op.fn == JK_MOVE ||
                                             op.fn == JK_CAS));
        /* ENOTDIR: the path's directory is not the mount's (jepsen/run's
         * mount-kill leaves a file beneath it); nothing reached arbor */
        is_before = is_before || rc == -ENOTDIR;
        enum outcome how = rc == 0 ? OUT_OK : is_refusal ? OUT_REFUSED
                           : (op.fn == JK_READ || is_before) ? OUT_FAIL : OUT_INFO;
        op.kind = how == OUT_INFO ? JK_INFO : how == OUT_FAIL ? JK_FAIL : JK_OK;
        op.is_refused = how == OUT_REFUSED;
        if (op.fn == JK_READ && how == OUT_OK)
            last_read[op.key - w->key_base] = op.value;
        if (op.fn == JK_CAS && how == OUT_REFUSED)
            last_read[op.key - w->key_base] = -1; /* read again before the next try */

        pthread_mutex_lock(&w->lock);
        op.complete = now_ns();
        if ((op.fn == JK_READ && how == OUT_OK) || how == OUT_REFUSED)
            op.invoke -= w->stale_ns; /* an observation: see the top of this file */
        write_line(w, &op);
        w->open[ta->index].is_open = false;
        pthread_mutex_unlock(&w->lock);
        if (how == OUT_FAIL || how == OUT_INFO)
            fprintf(stderr, "worker: %s of key %" PRIu64 ": %s (%s)\n", fn_name(op.fn), op.key,
                    strerror(-rc), how == OUT_INFO ? "indeterminate" : "failed");
        if (how == OUT_INFO)
            process += 100000; /* the open operation may land later: go on as another */
        if (op.fn == JK_CAS && how != OUT_OK)
            last_read[op.key - w->key_base] = -1;
        usleep((useconds_t)(1000 + next_rand(&seed) % 9000)); /* 1-10 ms between operations */
        if (rc == -ENOTDIR || rc == -ENOTCONN)
            usleep(100000); /* the mount is away: no flood of failures meanwhile */
    }
    free(out);
    atomic_fetch_add(&w->done, 1);
    return NULL;
}

/* --final: read every key once, retrying until it answers or the time is up. */
static int final_reads(struct worker *w)
{
    struct meta_response_buf *out = w->is_proto ? malloc(sizeof(*out)) : NULL;
    int failed = 0;
    if (w->is_proto && out == NULL)
        return 1;
    for (uint32_t k = 0; k < w->keys; k++) {
        struct jk_op op = {.process = w->process_base, .fn = JK_READ, .key = w->key_base + k};
        int rc;
        do {
            bool is_before;
            op.invoke = now_ns();
            rc = w->is_proto ? proto_op(w, &op, out) : fs_op(w, &op, 0, &is_before);
            op.complete = now_ns();
            if (rc != 0)
                usleep(200000);
        } while (rc != 0 && now_ns() < w->deadline_ns);
        op.kind = rc == 0 ? JK_OK : JK_FAIL;
        if (rc == 0)
            op.invoke -= w->stale_ns;
        write_line(w, &op);
        if (rc != 0) {
            fprintf(stderr, "worker: final read of key %" PRIu64 ": %s\n", op.key, strerror(-rc));
            failed = 1;
        }
    }
    free(out);
    return failed;
}

static int usage(int rc)
{
    fprintf(rc == 0 ? stdout : stderr,
            "usage: worker (--meta HOST:PORT[,...] | --dir DIR) --workload register|set|counter\n"
            "              --key-base K [--keys N] [--threads T] [--process-base P] [--time S]\n"
            "              [--seed N] [--out FILE] [--timeout-ms MS] [--setup | --final]\n"
            "              [--follower-reads] [--dir2 DIR --stale-ms MS]\n\n"
            "One client of a fault-injection run (jepsen/run starts them): runs the\n"
            "workload on keys K..K+N-1 through the metadata protocol (--meta) or a\n"
            "mounted volume (--dir, where this worker's keys live) from T threads for S\n"
            "seconds, and appends each operation to FILE (default stdout) as a history\n"
            "line for jepsen/check. --setup makes the keys' files and directories and\n"
            "exits; --final reads every key once (retrying for up to S seconds).\n"
            "--timeout-ms: a protocol call with no answer this long is indeterminate\n"
            "(default 10000). --follower-reads: queries go to any replica, however far\n"
            "behind (not linearizable: to see that a run catches it). --dir2: odd\n"
            "threads work through this directory, the same one on a second mount;\n"
            "--stale-ms: reads and refusals through mounts whose answers may be this\n"
            "stale are written down as invoked that much earlier.\n");
    return rc;
}

/* What the command line asks besides the worker's own fields. */
struct worker_args {
    struct ar_client_options co;
    const char *meta;
    const char *workload;
    const char *out_path;
    double seconds;
    bool is_setup;
    bool is_final;
    bool has_base;
};

/* -1: go on; else the exit status. */
static int worker_opts(int argc, char **argv, struct worker *w, struct worker_args *a)
{
    static const struct option longs[] = {
        {"meta", required_argument, NULL, 'm'},     {"dir", required_argument, NULL, 'd'},
        {"workload", required_argument, NULL, 'w'}, {"keys", required_argument, NULL, 'k'},
        {"key-base", required_argument, NULL, 'b'}, {"threads", required_argument, NULL, 't'},
        {"process-base", required_argument, NULL, 'p'}, {"time", required_argument, NULL, 'T'},
        {"seed", required_argument, NULL, 's'},     {"out", required_argument, NULL, 'o'},
        {"timeout-ms", required_argument, NULL, 'x'}, {"setup", no_argument, NULL, 'S'},
        {"final", no_argument, NULL, 'F'},          {"help", no_argument, NULL, 'h'},
        {"follower-reads", no_argument, NULL, 'R'}, {"dir2", required_argument, NULL, 'D'},
        {"stale-ms", required_argument, NULL, 'M'},
        {NULL, 0, NULL, 0}};
    char *end = NULL;
    int c;

    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': a->meta = optarg; break;
        case 'd': w->dir = optarg; break;
        case 'w': a->workload = optarg; break;
        case 'k': w->keys = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'b': w->key_base = strtoull(optarg, NULL, 10); a->has_base = true; break;
        case 't': w->threads = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'p': w->process_base = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'T': a->seconds = strtod(optarg, NULL); break;
        case 's': w->seed = strtoull(optarg, NULL, 10); break;
        case 'o': a->out_path = optarg; break;
        case 'x': a->co.budget_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'S': a->is_setup = true; break;
        case 'F': a->is_final = true; break;
        case 'R': w->read_mode = META_READ_FOLLOWER; break;
        case 'D': w->dir2 = optarg; break;
        case 'M':
            w->stale_ns = strtoull(optarg, &end, 10);
            if (end == optarg || *end != '\0' || w->stale_ns > 60000) {
                fprintf(stderr, "worker: --stale-ms wants milliseconds, 0 to 60000\n");
                return 2;
            }
            w->stale_ns *= 1000000ull;
            break;
        case 'h': return usage(0);
        default: return usage(2);
        }
    }
    if (a->workload == NULL || (a->meta == NULL) == (w->dir == NULL) || !a->has_base ||
        w->keys == 0 || w->keys > KEYS_MAX || w->threads == 0 || w->threads > THREADS_MAX ||
        optind != argc || ((w->dir2 != NULL || w->stale_ns > 0) && w->dir == NULL))
        return usage(2);
    w->workload = strcmp(a->workload, "register") == 0  ? WL_REGISTER
                  : strcmp(a->workload, "set") == 0     ? WL_SET
                  : strcmp(a->workload, "counter") == 0 ? WL_COUNTER : (enum workload)-1;
    return (int)w->workload < 0 ? usage(2) : -1;
}

/* The client (over the protocol) or the mount's keys, made ready. */
static int worker_setup(struct worker *w, struct worker_args *a)
{
    char errmsg[256] = "";
    int rc;

    w->is_proto = a->meta != NULL;
    if (!w->is_proto) {
        rc = fs_setup(w);
        if (rc != 0)
            fprintf(stderr, "worker: setting up keys under %s: %s\n", w->dir, strerror(-rc));
        return rc;
    }
    for (const char *p = a->meta; *p != '\0' && a->co.addr_count < AR_CLIENT_ADDRS_MAX;) {
        size_t n = strcspn(p, ",");
        snprintf(a->co.addrs[a->co.addr_count++], sizeof(a->co.addrs[0]), "%.*s", (int)n, p);
        p += n + (p[n] == ',');
    }
    if ((rc = ar_client_open(&a->co, &w->client, errmsg)) != 0) {
        fprintf(stderr, "worker: %s\n", errmsg);
        return rc;
    }
    struct meta_response_buf *out = malloc(sizeof(*out));
    rc = out == NULL ? -ENOMEM : proto_setup(w, out);
    free(out);
    if (rc != 0)
        fprintf(stderr, "worker: setting up keys: %s\n", strerror(-rc));
    return rc;
}

/* Run the threads to the deadline and write down what is still open. */
static int worker_run(struct worker *w, uint32_t budget_ms)
{
    static struct thread_arg args[THREADS_MAX];

    for (uint32_t t = 0; t < w->threads; t++) {
        pthread_t tid;
        args[t] = (struct thread_arg){.w = w, .index = t};
        if (pthread_create(&tid, NULL, run_thread, &args[t]) != 0) {
            fprintf(stderr, "worker: no thread\n");
            return 1;
        }
        pthread_detach(tid);
    }
    /* Threads end at the deadline; one stuck in a call past it plus the
     * call's budget is written down as open (info), and the process exits
     * without it (a FUSE call may hang while the cluster cannot answer). */
    uint64_t grace = w->deadline_ns + (uint64_t)budget_ms * 1000000ull + 2000000000ull;
    while (atomic_load(&w->done) < w->threads && now_ns() < grace)
        usleep(20000);
    pthread_mutex_lock(&w->lock);
    for (uint32_t t = 0; t < w->threads; t++) {
        if (w->open[t].is_open)
            write_line(w, &w->open[t].op);
    }
    fflush(w->out);
    if (atomic_load(&w->done) == w->threads && w->client != NULL)
        ar_client_close(w->client); /* else a thread may still be in a call */
    return 0;
}

int main(int argc, char **argv)
{
    static struct worker w = {.keys = 4, .threads = 4, .seed = 1,
                              .lock = PTHREAD_MUTEX_INITIALIZER};
    struct worker_args a = {.co = {.budget_ms = 10000, .attempt_ms = 1000}, .seconds = 10};

    signal(SIGPIPE, SIG_IGN); /* a write to a killed server fails; as in arbor */
    int rc = worker_opts(argc, argv, &w, &a);
    if (rc >= 0)
        return rc;
    w.out = a.out_path == NULL ? stdout : fopen(a.out_path, "a");
    if (w.out == NULL) {
        fprintf(stderr, "worker: %s: %s\n", a.out_path, strerror(errno));
        return 1;
    }
    w.deadline_ns = now_ns() + (uint64_t)(a.seconds * 1e9);
    if (worker_setup(&w, &a) != 0)
        return 1;
    if (a.is_setup || a.is_final) {
        rc = a.is_final ? final_reads(&w) : 0;
        if (w.client != NULL)
            ar_client_close(w.client);
        return rc;
    }
    rc = worker_run(&w, a.co.budget_ms);
    fflush(w.out);
    _exit(rc);
}
