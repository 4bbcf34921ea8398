/* tools/bench_fsm.c - `arbor bench fsm`: the shard state machine alone, in
 * memory, on one thread.
 *
 * It creates --files files (20-byte names, --per-dir to a directory) through
 * meta_shard_apply() and writes each one slice (a 100 KiB frame), then looks
 * each up, stats each, resolves each one's data map, lists every directory,
 * and unlinks them all, then makes them again as a restore does
 * (RESTORE_FILES batches, decoded, applied and collected for a
 * checkpoint), printing applies per
 * second for each phase and the resident memory the files cost (RSS after
 * writing minus RSS before, divided by the files), beside the shard's own
 * count of its bytes.
 */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cmd.h"
#include "meta.h"

#define FSM_FILES_DEFAULT  10000000ull
#define FSM_PER_DIR        1000u
#define FSM_DIR_INO_BASE   2ull
#define FSM_FILE_INO_BASE  (1ull << 32)
#define FSM_FILE_BYTES     (100u << 10) /* a camera frame */

struct fsm_bench {
    const char *checkpoint_dir; /* where to write and load the checkpoint; NULL: skip */
    struct meta_shard *shard;
    uint64_t files;
    uint32_t per_dir;
    uint64_t dirs;
    int64_t now;
};

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0;
    long rss = 0;

    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

/* The i-th file's name: 20 bytes, like a camera frame's ("frame_" and 14
 * digits). Made by hand: snprintf would cost more than some applies. */
static void file_name(uint64_t i, char name[21])
{
    memcpy(name, "frame_", 6);
    for (int k = 19; k >= 6; k--, i /= 10) {
        name[k] = (char)('0' + i % 10);
    }
    name[20] = '\0';
}

static void report(const char *phase, uint64_t ops, double seconds)
{
    printf("%-10s %12llu ops %8.2f s %12.0f ops/s\n", phase, (unsigned long long)ops, seconds,
           (double)ops / seconds);
    fflush(stdout);
}

/* ---- per-file phases ----------------------------------------------------------
 * One driver runs every per-file phase the way a replica's apply loop runs a
 * batch of committed commands: it builds each command FSM_AHEAD ahead of
 * the one it applies and passes it to meta_shard_prefetch(), so the cache
 * misses of neighbouring commands overlap. */

#define FSM_AHEAD 8u

enum fsm_phase { FSM_CREATE, FSM_WRITE, FSM_LOOKUP, FSM_GETATTR, FSM_READMAP, FSM_UNLINK };

static const char *const fsm_labels[] = {"create", "write", "lookup", "getattr", "readmap",
                                         "unlink"};

/* The command of phase p for the n-th step. Reads visit files in random
 * order, as a shuffling data loader does; changes go in file order. */
static void fsm_build(struct fsm_bench *b, enum fsm_phase p, uint64_t n, uint64_t *x,
                      struct meta_cmd *cmd, char name[21])
{
    static const enum meta_op ops[] = {META_OP_MKNOD, META_OP_WRITE, META_OP_LOOKUP,
                                       META_OP_GETATTR, META_OP_READ_MAP, META_OP_UNLINK};
    uint64_t i = n;

    if (p == FSM_LOOKUP || p == FSM_GETATTR || p == FSM_READMAP) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        i = *x % b->files;
    }
    *cmd = (struct meta_cmd){.op = ops[p], .now_ns = ++b->now};
    if (p == FSM_CREATE || p == FSM_LOOKUP || p == FSM_UNLINK) {
        file_name(i, name);
        cmd->ino = FSM_DIR_INO_BASE + i / b->per_dir;
        cmd->name = name;
        cmd->name_len = 20;
        cmd->mode = S_IFREG | 0644;
        cmd->new_ino = p == FSM_CREATE ? FSM_FILE_INO_BASE + i : 0;
    } else {
        cmd->ino = FSM_FILE_INO_BASE + i;
        cmd->slice = (struct meta_slice){.id = 1 + i, .size = FSM_FILE_BYTES,
                                         .len = FSM_FILE_BYTES};
    }
}

static int fsm_phase(struct fsm_bench *b, enum fsm_phase p)
{
    struct meta_cmd cmds[FSM_AHEAD];
    char names[FSM_AHEAD][21];
    struct meta_slice pieces[4];
    struct meta_reply r = {.slices = pieces, .slice_cap = 4};
    bool is_change = p == FSM_CREATE || p == FSM_WRITE || p == FSM_UNLINK;
    uint64_t x = 88172645463325252ull;
    double t0 = cmd_now();

    for (uint64_t n = 0; n < b->files + FSM_AHEAD; n++) {
        uint32_t slot = (uint32_t)(n % FSM_AHEAD);
        if (n >= FSM_AHEAD) {
            int rc = is_change ? meta_shard_apply(b->shard, &cmds[slot], &r)
                               : meta_shard_read(b->shard, &cmds[slot], &r);
            if (rc != 0) {
                fprintf(stderr, "arbor bench fsm: %s %llu: %s\n", fsm_labels[p],
                        (unsigned long long)(n - FSM_AHEAD), ar_strerror(rc));
                return rc;
            }
        }
        if (n < b->files) {
            fsm_build(b, p, n, &x, &cmds[slot], names[slot]);
            meta_shard_prefetch(b->shard, &cmds[slot]);
        }
    }
    report(fsm_labels[p], b->files, cmd_now() - t0);
    return 0;
}

/* The files again after the unlink phase, as a restore writes them: one
 * RESTORE_FILES command for up to META_RESTORE_FILES_MAX files of a
 * directory, each with its one slice. Each command is encoded (the
 * leader's work, not timed), then decoded and applied as every replica
 * does, with the shard tracking its changes and collecting them for the
 * checkpoint every CKPT_DIRTY changes as a server does; the three are
 * timed apart. */
#define CKPT_DIRTY 1024u
/* The files from i on, as far as their directory and a command go, as a
 * restore's items (one piece each); returns how many. */
static uint32_t restore_batch(const struct fsm_bench *b, uint64_t i, struct meta_file_item *items,
                              struct meta_file_piece *pieces, char (*names)[21])
{
    uint64_t dir = i / b->per_dir;
    uint32_t n = 0;

    for (; n < META_RESTORE_FILES_MAX && i + n < b->files && (i + n) / b->per_dir == dir; n++) {
        file_name(i + n, names[n]);
        items[n] = (struct meta_file_item){
            .name = names[n], .name_len = 20, .mode = S_IFREG | 0644, .uid = 1000,
            .gid = 1000, .atime_ns = b->now, .mtime_ns = b->now, .size = FSM_FILE_BYTES,
            .piece_first = n, .piece_count = 1};
        pieces[n] = (struct meta_file_piece){
            .slice = {.id = 1 + i + n, .size = FSM_FILE_BYTES, .len = FSM_FILE_BYTES}};
    }
    return n;
}

static int phase_restore(struct fsm_bench *b)
{
    struct meta_file_item *items = ar_calloc(META_RESTORE_FILES_MAX, sizeof(*items));
    struct meta_file_piece *pieces = ar_calloc(META_RESTORE_FILES_MAX, sizeof(*pieces));
    char(*names)[21] = ar_calloc(META_RESTORE_FILES_MAX, sizeof(*names));
    struct meta_cmd_buf *decoded = ar_malloc(sizeof(*decoded));
    uint8_t *enc = ar_malloc(META_FRAME_BYTES_MAX);
    struct meta_reply r;
    double decode_s = 0;
    double apply_s = 0;
    double collect_s = 0;
    struct meta_ckpt_batch *batch = NULL;
    int rc = items != NULL && pieces != NULL && names != NULL && decoded != NULL && enc != NULL
                 ? 0
                 : -ENOMEM;
    /* tracking starts with everything dirty: that first collect is not timed */
    if (rc == 0)
        rc = meta_shard_track(b->shard);
    if (rc == 0)
        rc = meta_shard_collect(b->shard, 1, &batch);
    meta_ckpt_batch_free(batch);

    for (uint64_t i = 0; rc == 0 && i < b->files;) {
        uint64_t dir = i / b->per_dir;
        uint32_t n = restore_batch(b, i, items, pieces, names);
        struct meta_cmd cmd = {.op = META_OP_RESTORE_FILES, .ino = FSM_DIR_INO_BASE + dir,
                               .now_ns = ++b->now, .new_ino = FSM_FILE_INO_BASE + b->files + i,
                               .items = items, .item_count = n, .pieces = pieces,
                               .piece_count = n};
        size_t len = 0;
        rc = meta_cmd_encode(&cmd, enc, META_FRAME_BYTES_MAX, &len);
        double t0 = cmd_now();
        if (rc == 0)
            rc = meta_cmd_decode(enc, len, decoded);
        double t1 = cmd_now();
        if (rc == 0)
            rc = meta_shard_apply(b->shard, &decoded->cmd, &r);
        double t2 = cmd_now();
        if (rc == 0 && meta_shard_dirty_count(b->shard) >= CKPT_DIRTY) {
            batch = NULL;
            rc = meta_shard_collect(b->shard, 2 + i, &batch);
            meta_ckpt_batch_free(batch);
        }
        decode_s += t1 - t0;
        apply_s += t2 - t1;
        collect_s += cmd_now() - t2;
        i += n;
    }
    if (rc == 0) {
        report("restore", b->files, decode_s + apply_s + collect_s);
        printf("           %.2f us a file decoding, %.2f us applying, %.2f us collecting "
               "(%u files a command)\n", decode_s * 1e6 / (double)b->files,
               apply_s * 1e6 / (double)b->files, collect_s * 1e6 / (double)b->files,
               META_RESTORE_FILES_MAX);
    } else {
        fprintf(stderr, "arbor bench fsm: restore: %s\n", ar_strerror(rc));
    }
    ar_free(items);
    ar_free(pieces);
    ar_free(names);
    ar_free(decoded);
    ar_free(enc);
    return rc;
}

static int make_dirs(struct fsm_bench *b)
{
    struct meta_cmd cmd = {.op = META_OP_MKDIR, .mode = S_IFDIR | 0755, .name_len = 20};
    struct meta_reply r;
    char name[21];

    for (uint64_t d = 0; d < b->dirs; d++) {
        snprintf(name, sizeof(name), "dir_%016llu", (unsigned long long)d);
        cmd.ino = 1;
        cmd.name = name;
        cmd.new_ino = FSM_DIR_INO_BASE + d;
        cmd.now_ns = ++b->now;
        int rc = meta_shard_apply(b->shard, &cmd, &r);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static uint64_t dir_bytes(const char *dir)
{
    char path[4200];
    struct stat st;

    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/* Load the checkpoint in dir after dropping it from the page cache (as after
 * a reboot); prints the time. *out is the loaded shard. */
static int load_cold(const char *dir, struct meta_shard **out, uint64_t *index, char *errmsg)
{
    struct meta_checkpoint *c = NULL;
    char path[4200];

    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    double t0 = cmd_now();
    int rc = meta_checkpoint_open(dir, &c, errmsg);
    if (rc == 0)
        rc = meta_checkpoint_load(c, out, index, errmsg);
    meta_checkpoint_close(c);
    if (rc == 0) {
        struct meta_shard_stats st;
        meta_shard_stats(*out, &st);
        printf("load       %12llu inodes, %llu names in %.2f s cold\n",
               (unsigned long long)st.inode_count, (unsigned long long)st.entry_count,
               cmd_now() - t0);
    }
    return rc;
}

/* Write the whole state into a fresh checkpoint, then load it cold. */
static int phase_checkpoint(struct fsm_bench *b)
{
    struct meta_checkpoint *c = NULL;
    struct meta_ckpt_batch *batch = NULL;
    struct meta_shard *loaded = NULL;
    char errmsg[AR_ERRMSG_MAX] = "";
    uint64_t index = 0;
    int rc = meta_checkpoint_open(b->checkpoint_dir, &c, errmsg);
    double t0 = cmd_now();

    if (rc == 0)
        rc = meta_shard_track(b->shard);
    if (rc == 0)
        rc = meta_shard_collect(b->shard, 1, &batch);
    double t1 = cmd_now();
    if (rc == 0)
        rc = meta_checkpoint_commit(c, batch, errmsg);
    double t2 = cmd_now();
    if (rc == 0) {
        printf("checkpoint %12llu records: collect %.2f s, commit %.2f s, %.0f MiB on disk\n",
               (unsigned long long)meta_ckpt_batch_records(batch), t1 - t0, t2 - t1,
               (double)dir_bytes(b->checkpoint_dir) / (1 << 20));
        fflush(stdout);
    }
    meta_ckpt_batch_free(batch);
    meta_checkpoint_close(c);
    c = NULL;
    if (rc == 0)
        rc = load_cold(b->checkpoint_dir, &loaded, &index, errmsg);
    if (rc == 0)
        printf("load       state %s\n", meta_shard_hash(loaded) == meta_shard_hash(b->shard)
                                            ? "identical to the one written"
                                            : "DIFFERENT from the one written");
    if (rc != 0)
        fprintf(stderr, "arbor bench fsm: checkpoint: %s\n", errmsg);
    meta_shard_free(loaded);
    meta_checkpoint_close(c);
    return rc;
}

static int phase_readdir(struct fsm_bench *b)
{
    static struct meta_dirent entries[256];
    struct meta_cmd cmd = {.op = META_OP_READDIR, .entry_cap = 256};
    uint64_t seen = 0;
    double t0 = cmd_now();

    for (uint64_t d = 0; d < b->dirs; d++) {
        cmd.ino = FSM_DIR_INO_BASE + d;
        cmd.cookie = 0;
        for (unsigned pages = 0; pages < b->per_dir / 256 + 2; pages++) {
            struct meta_reply r = {.entries = entries};
            if (meta_shard_read(b->shard, &cmd, &r) != 0)
                return -EIO;
            seen += r.entry_count;
            if (r.is_end)
                break;
            cmd.cookie = entries[r.entry_count - 1].cookie;
        }
    }
    if (seen != b->files) {
        fprintf(stderr, "arbor bench fsm: readdir saw %llu entries, not %llu\n",
                (unsigned long long)seen, (unsigned long long)b->files);
        return -EIO;
    }
    report("readdir", seen, cmd_now() - t0);
    return 0;
}

/* -1: go on; else the exit status (said). */
static int fsm_opts(int argc, char **argv, struct fsm_bench *b, const char **load_dir)
{
    static const struct option longopts[] = {
        {"files", required_argument, NULL, 'n'},
        {"per-dir", required_argument, NULL, 'd'},
        {"checkpoint", required_argument, NULL, 'c'},
        {"load", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'n' && (!cmd_parse_size(optarg, &b->files) || b->files == 0 ||
                         b->files > 100000000)) {
            fprintf(stderr, "arbor bench fsm: --files wants 1..100M\n");
            return 2;
        } else if (c == 'd' && (!cmd_parse_size(optarg, &v) || v == 0 || v > 1000000)) {
            fprintf(stderr, "arbor bench fsm: --per-dir wants 1..1000000\n");
            return 2;
        } else if (c == 'd') {
            b->per_dir = (uint32_t)v;
        } else if (c == 'c') {
            b->checkpoint_dir = optarg;
        } else if (c == 'l') {
            *load_dir = optarg;
        } else if (c == 'h') {
            printf("usage: arbor bench fsm [--files N] [--per-dir N] [--checkpoint DIR]\n"
                   "       arbor bench fsm --load DIR\n\n"
                   "Create N files (default 10M; sizes such as 1M work) with 20-byte names,\n"
                   "--per-dir to a directory (default 1000), in one shard state machine, and\n"
                   "write each one slice; then look up, stat, read the data map of, list\n"
                   "and unlink them, and make them again as a restore does (batches of\n"
                   "256 files, decoded and applied). Prints ops/s per phase and\n"
                   "the memory each file costs. With --checkpoint, also write the whole state\n"
                   "to an LMDB checkpoint in DIR (new or empty) and load it back cold.\n"
                   "With --load, only load the checkpoint in DIR cold and print the time.\n");
            return 0;
        } else if (c == '?') {
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "arbor bench fsm: unexpected argument '%s' (try --help)\n", argv[optind]);
        return 2;
    }
    return -1;
}

/* The phases after the files are made and written, in order. */
static int fsm_later_phases(struct fsm_bench *b)
{
    int rc = 0;

    if (b->checkpoint_dir != NULL)
        rc = phase_checkpoint(b);
    for (enum fsm_phase p = FSM_LOOKUP; rc == 0 && p <= FSM_READMAP; p++) {
        rc = fsm_phase(b, p);
    }
    if (rc == 0)
        rc = phase_readdir(b);
    if (rc == 0)
        rc = fsm_phase(b, FSM_UNLINK);
    if (rc == 0)
        rc = phase_restore(b);
    return rc;
}

int bench_fsm(int argc, char **argv)
{
    struct fsm_bench b = {.files = FSM_FILES_DEFAULT, .per_dir = FSM_PER_DIR};
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755};
    const char *load_dir = NULL;
    int rc = fsm_opts(argc, argv, &b, &load_dir);

    if (rc >= 0)
        return rc;
    if (load_dir != NULL) {
        char errmsg[AR_ERRMSG_MAX] = "";
        uint64_t index = 0;
        struct meta_shard *loaded = NULL;
        if (load_cold(load_dir, &loaded, &index, errmsg) != 0) {
            fprintf(stderr, "arbor bench fsm: %s\n", errmsg);
            return 1;
        }
        meta_shard_free(loaded);
        return 0;
    }
    b.dirs = (b.files + b.per_dir - 1) / b.per_dir;
    printf("arbor bench fsm: %llu files, %u per directory, %llu directories\n",
           (unsigned long long)b.files, b.per_dir, (unsigned long long)b.dirs);
    long rss0 = rss_bytes();
    if (meta_shard_new(&cfg, &b.shard) != 0)
        return 1;
    rc = make_dirs(&b);
    if (rc == 0)
        rc = fsm_phase(&b, FSM_CREATE);
    if (rc == 0)
        rc = fsm_phase(&b, FSM_WRITE);
    long rss1 = rss_bytes();
    struct meta_shard_stats st;
    meta_shard_stats(b.shard, &st);
    if (rc == 0) {
        printf("memory     %.1f bytes/file resident (RSS delta %.0f MiB); shard counts %.1f "
               "bytes/file\n",
               (double)(rss1 - rss0) / (double)b.files, (double)(rss1 - rss0) / (1 << 20),
               (double)st.memory_bytes / (double)b.files);
        fflush(stdout);
        rc = fsm_later_phases(&b);
    }
    if (rc == 0) {
        /* a restored file's ctime (the restore's time) differs from its
         * mtime: each holds an entry of the ctime side table */
        meta_shard_stats(b.shard, &st);
        printf("memory     restored files: shard counts %.1f bytes/file\n",
               (double)st.memory_bytes / (double)b.files);
    }
    meta_shard_free(b.shard);
    return rc == 0 ? 0 : 1;
}
