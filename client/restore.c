/* client/restore.c - point-in-time restore (design §7; arbor restore).
 *
 * 1. Rebuild the shard as it was at the moment from the store's archive
 *    (meta_archive_rebuild()): a scratch state in this process.
 * 2. Find PATH in it, and write that subtree into the live volume under a
 *    hidden staging name beside the destination. A pool of threads walks
 *    the tree from its top, making each directory before listing it, and
 *    writes the files, symlinks and special files listed so far beside the
 *    walk; then hard links; then the directories' owners, modes and times,
 *    deepest first (so adding children does not change them again). A file
 *    is a new inode whose slices name the old blocks: blocks never change,
 *    so nothing is copied, and a block stays in the store while any live
 *    inode names it.
 * 3. Rename the staging tree to its final name in one command (with
 *    --replace: rename it to <staging>.swap, exchange that with PATH, and
 *    move the old tree from there to a free PATH.replaced-<moment>[-n]).
 * The final name never holds half a tree. An interrupted restore leaves
 * only the staging name, which is derived from PATH and the moment: the
 * same command run again removes it and starts over. The old tree never
 * stands under the staging name, so that run never removes it; a run cut
 * off while replacing may leave a .swap name, which is reported, not
 * removed.
 * Threads: the caller's, the pool's, and the metadata client's own. */
#include <inttypes.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"
#include "limits.h"
#include "meta.h"
#include "objstore.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1u << 0)
#define RENAME_EXCHANGE  (1u << 1)
#endif

#define THREADS_DEFAULT 8u
#define XATTR_LIST_MAX  (64u << 10)
/* A moment that leaves the window within PIN_EDGE_S keeps its pin after
 * the restore until the archive holds the restore's commands (at most
 * PIN_WAIT_S; past it the pin stays, to lapse): until then only the pin
 * keeps the blocks they name from gc. PIN_CLOCK_NS allows for the
 * leader's clock being ahead of this one. */
#define PIN_EDGE_S      600u
#define PIN_WAIT_S      60u
#define PIN_CLOCK_NS    1000000000ull

/* A non-directory to make: the scratch inode, the live parent, its name. */
struct job {
    uint64_t src;
    uint64_t dst_parent;
    uint32_t name_off;   /* in the name arena */
    uint32_t name_len;
    uint32_t mode;
};

/* A directory of the tree: its scratch inode; its live one once made (0
 * before), under its live parent with its name (in the name arena); how
 * far below the tree's top it is (the top: 0). */
struct dir_pair {
    uint64_t src;
    uint64_t dst;
    uint64_t parent;
    uint32_t name_off;
    uint32_t name_len;
    uint32_t depth;
};

/* Jobs a pool thread takes at once, copied out with their names (the
 * walk grows the plan's arrays meanwhile); a worker's batches take names
 * of one run. */
#define BATCH_RUN META_RESTORE_FILES_MAX

struct run {
    size_t count;
    struct job jobs[BATCH_RUN];  /* name_off: into names below */
    char names[BATCH_RUN * (META_NAME_BYTES_MAX + 1)];
};

/* An open-addressed map of scratch inode -> live inode, for hard links. */
struct ino_map {
    uint64_t *keys;      /* 0: empty */
    uint64_t *vals;
    size_t cap;          /* a power of two */
    size_t count;
};

struct restore {
    const struct ar_restore_options *o;
    struct ar_restore_report *rep;
    struct ar_client *client;
    struct meta_shard *scratch;
    struct obj_store *store;   /* the volume's, open from the rebuild to the end */
    char pin[META_PIN_KEY_MAX]; /* the moment's pin in it ("": none) */
    /* the plan */
    struct job *jobs;
    size_t job_count;
    size_t job_cap;
    struct job *links;   /* later names of an inode with several */
    size_t link_count;
    size_t link_cap;
    char *names;
    size_t names_len;
    size_t names_cap;
    struct dir_pair *dirs;
    size_t dir_count;
    size_t dir_cap;
    struct ino_map firsts; /* inodes with nlink > 1 made so far */
    size_t *order;       /* finishing: indexes of dirs, the deepest first */
    /* the pool; mu guards the plan's arrays and the walk's counts while
     * its threads add to them, and more wakes a thread waiting for work */
    pthread_mutex_t mu;
    pthread_cond_t more;
    uint32_t threads;
    size_t dirs_busy;    /* directories being made and listed */
    double walked_at;    /* now_s() when the walk ended (0: not yet) */
    atomic_size_t next_dir;  /* the next of dirs to walk, verify or finish (to dir_end) */
    size_t dir_end;
    atomic_size_t next_job;
    atomic_uint workers_done;
    void *(*thread_fn)(void *); /* what the pool's threads run */
    atomic_uint_fast64_t done_files;
    atomic_uint_fast64_t bytes;
    atomic_uint_fast64_t xattrs;
    atomic_uint_fast64_t mismatches;
    /* verification: what the listings of the restored tree showed, and
     * what the moment's state says they must show */
    atomic_uint_fast64_t seen_dirs;
    atomic_uint_fast64_t seen_others;
    atomic_uint_fast64_t seen_digest;
    atomic_uint_fast64_t want_digest;
    atomic_int rc;
    char errmsg[AR_ERRMSG_MAX];
};

static void say(const struct restore *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct restore *r, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (r->o->progress == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    r->o->progress(r->o->ctx, line);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Record the first error of any thread; later ones are dropped. */
static int set_error(struct restore *r, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_error(struct restore *r, int rc, const char *fmt, ...)
{
    int zero = 0;

    pthread_mutex_lock(&r->mu);
    if (atomic_compare_exchange_strong(&r->rc, &zero, rc)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
        va_end(ap);
    }
    pthread_cond_broadcast(&r->more); /* a waiting thread stops */
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static bool grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    size_t cap2 = *cap == 0 ? 1024 : *cap * 2;
    while (cap2 < need) {
        cap2 *= 2;
    }
    void *p = ar_realloc(*v, cap2 * size);
    if (p == NULL)
        return false;
    *v = p;
    *cap = cap2;
    return true;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* FNV-1a of bytes: a name's hash for digests and the staging name. */
static uint64_t fnv1a(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    }
    return h;
}

static int map_put(struct ino_map *m, uint64_t key, uint64_t val)
{
    if ((m->count + 1) * 2 > m->cap) {
        struct ino_map n = {.cap = m->cap == 0 ? 1024 : m->cap * 2};
        n.keys = ar_calloc(n.cap, sizeof(*n.keys));
        n.vals = ar_calloc(n.cap, sizeof(*n.vals));
        if (n.keys == NULL || n.vals == NULL) {
            ar_free(n.keys);
            ar_free(n.vals);
            return -ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (m->keys[i] != 0)
                map_put(&n, m->keys[i], m->vals[i]);
        }
        ar_free(m->keys);
        ar_free(m->vals);
        *m = n;
    }
    size_t i = mix(key) & (m->cap - 1);
    while (m->keys[i] != 0 && m->keys[i] != key) {
        i = (i + 1) & (m->cap - 1);
    }
    m->count += m->keys[i] == 0;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}

static uint64_t map_get(const struct ino_map *m, uint64_t key)
{
    if (m->cap == 0)
        return 0;
    size_t i = mix(key) & (m->cap - 1);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key)
            return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return 0;
}

/* ---- the live volume ------------------------------------------------------------------- */

static int live(struct restore *r, struct meta_cmd *cmd, uint32_t data_cap,
                struct meta_response_buf *out)
{
    uint32_t shard = ar_client_shard_of(r->client, cmd->ino);

    return ar_client_call(r->client, shard, cmd, META_READ_LINEARIZABLE, data_cap, out);
}

static int live_lookup(struct restore *r, uint64_t dir, const char *name, uint64_t *ino,
                       uint32_t *mode, struct meta_response_buf *out)
{
    struct meta_cmd cmd = {.op = META_OP_LOOKUP, .ino = dir, .name = name,
                           .name_len = (uint32_t)strlen(name)};
    int rc = live(r, &cmd, 0, out);

    if (rc == 0) {
        *ino = out->r.reply.attr.ino;
        *mode = out->r.reply.attr.mode;
    }
    return rc;
}

/* Remove dir/name and all below it (an interrupted restore's staging tree). */
static int live_remove(struct restore *r, uint64_t dir, const char *name,
                       struct meta_response_buf *out)
{
    uint64_t ino;
    uint32_t mode;
    int rc = live_lookup(r, dir, name, &ino, &mode, out);

    if (rc != 0)
        return rc == -ENOENT ? 0 : rc;
    if (S_ISDIR(mode)) {
        for (;;) { /* each pass removes what one page lists, until the directory is empty */
            struct meta_cmd rd = {.op = META_OP_READDIR, .ino = ino, .entry_cap = 256};
            rc = live(r, &rd, 0, out);
            if (rc != 0 || out->r.reply.entry_count == 0)
                break;
            uint32_t n = out->r.reply.entry_count;
            struct meta_dirent *ents = ar_malloc(sizeof(*ents) * n);
            if (ents == NULL)
                return -ENOMEM;
            memcpy(ents, out->r.reply.entries, sizeof(*ents) * n);
            for (uint32_t i = 0; rc == 0 && i < n; i++) {
                rc = live_remove(r, ino, ents[i].name, out);
            }
            ar_free(ents);
            if (rc != 0)
                return rc;
        }
        if (rc != 0)
            return rc;
    }
    struct meta_cmd rm = {.op = S_ISDIR(mode) ? META_OP_RMDIR : META_OP_UNLINK, .ino = dir,
                          .name = name, .name_len = (uint32_t)strlen(name)};
    return live(r, &rm, 0, out);
}

/* ---- the scratch state ------------------------------------------------------------------ */

static int scratch_read(const struct restore *r, struct meta_cmd *cmd, struct meta_reply *rep)
{
    memset(&cmd->cred, 0, sizeof(cmd->cred)); /* root: reads everything */
    return meta_shard_read(r->scratch, cmd, rep);
}

static int scratch_attr(const struct restore *r, uint64_t ino, struct meta_attr *out)
{
    struct meta_cmd cmd = {.op = META_OP_GETATTR, .ino = ino};
    struct meta_reply rep = {0};
    int rc = scratch_read(r, &cmd, &rep);

    *out = rep.attr;
    return rc;
}

/* Copy the extended attributes of src (scratch) to dst (live). */
static int copy_xattrs(struct restore *r, uint64_t src, uint64_t dst, uint8_t *names,
                       uint8_t *value, struct meta_response_buf *out)
{
    struct meta_cmd cmd = {.op = META_OP_LISTXATTR, .ino = src};
    struct meta_reply rep = {.data = names, .data_cap = XATTR_LIST_MAX};
    int rc = scratch_read(r, &cmd, &rep);

    for (uint32_t at = 0; rc == 0 && at < rep.data_len;) {
        const char *name = (const char *)names + at;
        uint32_t n = (uint32_t)strnlen(name, rep.data_len - at);
        struct meta_cmd get = {.op = META_OP_GETXATTR, .ino = src, .name = name, .name_len = n};
        struct meta_reply val = {.data = value, .data_cap = 65536};
        rc = scratch_read(r, &get, &val);
        struct meta_cmd set = {.op = META_OP_SETXATTR, .ino = dst, .name = name, .name_len = n,
                               .value = value, .value_len = val.data_len};
        if (rc == 0)
            rc = live(r, &set, 0, out);
        if (rc == 0)
            atomic_fetch_add(&r->xattrs, 1);
        at += n + 1;
    }
    return rc;
}

/* Owner, then mode and times (a chown may clear set-id bits), as at the moment. */
static int copy_attrs(struct restore *r, uint64_t dst, const struct meta_attr *a, bool is_link,
                      struct meta_response_buf *out)
{
    struct meta_cmd own = {.op = META_OP_SETATTR, .ino = dst,
                           .set_mask = META_SET_UID | META_SET_GID, .set = *a};
    int rc = live(r, &own, 0, out);
    struct meta_cmd rest = {.op = META_OP_SETATTR, .ino = dst,
                            .set_mask = META_SET_ATIME | META_SET_MTIME |
                                        (is_link ? 0u : META_SET_MODE),
                            .set = *a};
    if (rc == 0)
        rc = live(r, &rest, 0, out);
    return rc;
}

/* ---- the plan: directories made, the rest listed -------------------------------------------- */

/* Names are found by 32-bit offsets into one arena: a tree whose names
 * pass 4 GiB (about 140M names) is refused, not read at wrong offsets. */
static bool names_fit(const struct restore *r, size_t name_len)
{
    return r->names_len + name_len + 1 <= UINT32_MAX;
}

static int plan_add(struct restore *r, struct job **v, size_t *count, size_t *cap,
                    const struct job *j, const char *name)
{
    if (!names_fit(r, j->name_len))
        return -E2BIG;
    if (!grow((void **)v, cap, *count + 1, sizeof(**v)) ||
        !grow((void **)&r->names, &r->names_cap, r->names_len + j->name_len + 1, 1))
        return -ENOMEM;
    struct job *slot = &(*v)[(*count)++];
    *slot = *j;
    slot->name_off = (uint32_t)r->names_len;
    memcpy(r->names + r->names_len, name, j->name_len + 1);
    r->names_len += j->name_len + 1;
    return 0;
}

/* Directory src to walk, depth below the top, under live parent. Under mu. */
static int dir_add(struct restore *r, uint64_t src, uint64_t parent, uint32_t depth,
                   const char *name, uint32_t name_len)
{
    if (!names_fit(r, name_len))
        return -E2BIG;
    if (!grow((void **)&r->dirs, &r->dir_cap, r->dir_count + 1, sizeof(*r->dirs)) ||
        !grow((void **)&r->names, &r->names_cap, r->names_len + name_len + 1, 1))
        return -ENOMEM;
    r->dirs[r->dir_count++] = (struct dir_pair){.src = src, .parent = parent,
                                                .name_off = (uint32_t)r->names_len,
                                                .name_len = name_len, .depth = depth};
    memcpy(r->names + r->names_len, name, name_len);
    r->names[r->names_len + name_len] = '\0';
    r->names_len += name_len + 1;
    return 0;
}

/* Make directory d in the live volume (mode 0700 until finish_dirs), with
 * its xattrs; d->dst is its inode. */
static int make_dir(struct restore *r, struct dir_pair *d, const char *name,
                    struct meta_response_buf *out, uint8_t *names, uint8_t *value)
{
    struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = d->parent, .name = name,
                          .name_len = d->name_len, .mode = S_IFDIR | 0700};
    int rc = live(r, &mk, 0, out);

    if (rc != 0)
        return set_error(r, rc, "making directory %s: %s", name, ar_strerror(rc));
    d->dst = out->r.reply.attr.ino;
    rc = copy_xattrs(r, d->src, d->dst, names, value, out);
    if (rc != 0)
        return set_error(r, rc, "extended attributes of directory %s: %s", name,
                         ar_strerror(rc));
    return 0;
}

static void *pool_thread(void *arg)
{
    struct restore *r = arg;

    if (!r->o->is_normal_priority)
        ar_thread_lower_priority();
    return r->thread_fn(r);
}

/* The lines said each second while the pool writes: how far the walk and
 * the files are; and once, when the walk is over, what it found. */
static void say_progress(struct restore *r, double t0, bool *said_walked)
{
    pthread_mutex_lock(&r->mu);
    size_t dirs = r->rep->dirs;
    size_t dir_count = r->dir_count;
    size_t jobs = r->job_count;
    size_t links = r->link_count;
    double walked_at = r->walked_at;
    pthread_mutex_unlock(&r->mu);
    uint_fast64_t done = atomic_load(&r->done_files);

    if (walked_at > 0 && !*said_walked) {
        *said_walked = true;
        say(r, "tree walked in %.1f s: %zu directories made; %zu files to restore, then %zu "
            "more links", walked_at - t0, dirs, jobs, links);
    }
    if (walked_at > 0 || dir_count == 0) /* dir_count 0: one file, nothing to walk */
        say(r, "files: %" PRIuFAST64 " of %zu", done, jobs);
    else
        say(r, "directories made: %zu of %zu found; files: %" PRIuFAST64 " of %zu found", dirs,
            dir_count, done, jobs);
}

/* Run the restore's threads, each fn, until each returns; with
 * is_writing, say how far they are each second. */
static int run_threads(struct restore *r, void *(*fn)(void *), bool is_writing)
{
    uint32_t n = r->threads;
    pthread_t *t = ar_calloc(n, sizeof(*t));
    uint32_t started = 0;
    bool said_walked = false;
    double t0 = now_s();

    if (t == NULL)
        return set_error(r, -ENOMEM, "out of memory");
    atomic_store(&r->workers_done, 0);
    r->thread_fn = fn;
    for (; started < n; started++) {
        if (pthread_create(&t[started], NULL, pool_thread, r) != 0)
            break;
    }
    if (started == 0)
        set_error(r, -EAGAIN, "cannot start a thread");
    double last = now_s();
    while (atomic_load(&r->workers_done) < started) {
        usleep(20000);
        if (is_writing && now_s() - last >= 1.0) {
            last = now_s();
            say_progress(r, t0, &said_walked);
        }
    }
    for (uint32_t i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
    }
    if (is_writing && !said_walked && r->dir_count > 0 && atomic_load(&r->rc) == 0)
        say_progress(r, t0, &said_walked);
    ar_free(t);
    return atomic_load(&r->rc);
}

/* List made directory d: its subdirectories to walk, its other names as
 * jobs, a page at a time under mu (so a directory's names stay together
 * in the jobs, and its files share batches). */
static int plan_dir(struct restore *r, struct dir_pair d, struct meta_dirent *ents)
{
    uint64_t cookie = 0;
    bool is_end = false;
    int rc = 0;

    while (rc == 0 && !is_end && atomic_load(&r->rc) == 0) {
        struct meta_cmd cmd = {.op = META_OP_READDIR, .ino = d.src, .cookie = cookie,
                               .entry_cap = META_READDIR_MAX};
        struct meta_reply rep = {.entries = ents};
        rc = scratch_read(r, &cmd, &rep);
        is_end = rep.is_end || rep.entry_count == 0;
        uint32_t nlinks[META_READDIR_MAX];
        uint32_t modes[META_READDIR_MAX];
        for (uint32_t i = 0; rc == 0 && i < rep.entry_count; i++) {
            const struct meta_dirent *e = &ents[i];
            cookie = e->cookie;
            nlinks[i] = 0;
            if (S_ISDIR(e->type))
                continue; /* walked in its turn */
            struct meta_attr a;
            rc = scratch_attr(r, e->ino, &a);
            nlinks[i] = a.nlink;
            modes[i] = a.mode;
        }
        pthread_mutex_lock(&r->mu);
        for (uint32_t i = 0; rc == 0 && i < rep.entry_count; i++) {
            const struct meta_dirent *e = &ents[i];
            if (S_ISDIR(e->type)) {
                rc = dir_add(r, e->ino, d.dst, d.depth + 1, e->name, e->name_len);
                continue;
            }
            struct job j = {.src = e->ino, .dst_parent = d.dst, .name_len = e->name_len,
                            .mode = modes[i]};
            bool is_later = false;
            if (nlinks[i] > 1) { /* the first name makes the inode, later ones link to it */
                is_later = map_get(&r->firsts, e->ino) != 0;
                rc = is_later ? 0 : map_put(&r->firsts, e->ino, UINT64_MAX);
            }
            if (rc == 0 && is_later)
                rc = plan_add(r, &r->links, &r->link_count, &r->link_cap, &j, e->name);
            else if (rc == 0)
                rc = plan_add(r, &r->jobs, &r->job_count, &r->job_cap, &j, e->name);
        }
        pthread_cond_broadcast(&r->more);
        pthread_mutex_unlock(&r->mu);
    }
    if (rc != 0)
        set_error(r, rc, "listing the tree at the moment: %s", ar_strerror(rc));
    return rc;
}

/* Directory i of the plan made, then listed. */
static void walk_dir(struct restore *r, size_t i, struct meta_dirent *ents, uint8_t *names,
                     uint8_t *value, struct meta_response_buf *out)
{
    char name[META_NAME_BYTES_MAX + 1];

    pthread_mutex_lock(&r->mu); /* dirs and names grow meanwhile */
    struct dir_pair d = r->dirs[i];
    memcpy(name, r->names + d.name_off, d.name_len + 1);
    pthread_mutex_unlock(&r->mu);
    if (make_dir(r, &d, name, out, names, value) != 0)
        return;
    pthread_mutex_lock(&r->mu);
    r->dirs[i].dst = d.dst;
    r->rep->dirs++;
    pthread_mutex_unlock(&r->mu);
    plan_dir(r, d, ents);
}

/* ---- files (the pool) --------------------------------------------------------------------- */

/* Name a piece or a slice of chunk_offset's chunk again in dst: data by
 * its slice, a hole punched (the file already reaches past it). */
static int name_again(struct restore *r, uint64_t dst, uint64_t chunk_offset,
                      const struct meta_slice *p, struct meta_response_buf *out)
{
    struct meta_cmd w = {.op = META_OP_WRITE, .ino = dst, .offset = chunk_offset + p->pos,
                         .slice = *p};
    if (p->id == 0) {
        w = (struct meta_cmd){.op = META_OP_FALLOCATE, .ino = dst,
                              .offset = chunk_offset + p->pos, .length = p->len,
                              .flags = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE};
    }
    return live(r, &w, 0, out);
}

/* The file's data, chunk by chunk: every piece named again by its slice;
 * a chunk of more pieces than a chunk may hold slices (small writes that
 * fragmented one another) gets its slices again, in the order they stack,
 * holes punched, which makes the same chunk. */
static int copy_data(struct restore *r, uint64_t src, uint64_t dst, uint64_t size,
                     struct meta_slice *pieces, struct meta_response_buf *out)
{
    bool is_sized = false; /* dst has its size already */
    uint64_t end = 0;
    int rc = 0;

    for (uint64_t off = 0; rc == 0 && off < size; off += META_CHUNK_BYTES) {
        struct meta_cmd map = {.op = META_OP_READ_MAP, .ino = src, .offset = off};
        struct meta_reply rep = {.slices = pieces, .slice_cap = META_READ_SLICES_MAX};
        rc = scratch_read(r, &map, &rep);
        uint32_t data_pieces = 0;
        for (uint32_t i = 0; rc == 0 && i < rep.slice_count; i++) {
            data_pieces += pieces[i].id != 0 && pieces[i].len > 0;
        }
        bool is_stack = data_pieces > META_CHUNK_SLICES_MAX;
        if (rc == 0 && is_stack) {
            map.flags = META_READ_MAP_STACK;
            rc = scratch_read(r, &map, &rep);
        }
        if (rc == 0 && is_stack && !is_sized) { /* a hole is punched below the size only */
            struct meta_cmd t = {.op = META_OP_SETATTR, .ino = dst, .set_mask = META_SET_SIZE,
                                 .set = {.size = size}};
            rc = live(r, &t, 0, out);
            is_sized = rc == 0;
        }
        for (uint32_t i = 0; rc == 0 && i < rep.slice_count; i++) {
            const struct meta_slice *p = &pieces[i];
            if ((p->id == 0 && !is_stack) || p->len == 0)
                continue; /* a hole reads as zeros without a slice */
            rc = name_again(r, dst, rep.chunk_offset, p, out);
            if (rc == -AR_ECHUNKFULL)
                rc = -EFBIG; /* more slices than the chunk held: cannot happen */
            end = rep.chunk_offset + p->pos + p->len > end ? rep.chunk_offset + p->pos + p->len
                                                           : end;
        }
    }
    if (rc == 0 && end < size && !is_sized) { /* a hole at the end */
        struct meta_cmd t = {.op = META_OP_SETATTR, .ino = dst, .set_mask = META_SET_SIZE,
                             .set = {.size = size}};
        rc = live(r, &t, 0, out);
    }
    return rc;
}

static int restore_one(struct restore *r, const struct job *j, const char *name,
                       struct meta_slice *pieces, uint8_t *names, uint8_t *value,
                       struct meta_response_buf *out)
{
    struct meta_attr a;
    struct meta_cmd mk = {.ino = j->dst_parent, .name = name, .name_len = j->name_len};
    struct meta_reply rep = {0};
    int rc = scratch_attr(r, j->src, &a);

    if (rc == 0 && S_ISLNK(a.mode)) {
        struct meta_cmd rl = {.op = META_OP_READLINK, .ino = j->src};
        rc = scratch_read(r, &rl, &rep);
        mk.op = META_OP_SYMLINK;
        mk.target = rep.target;
        mk.target_len = (uint32_t)strlen(rep.target);
    } else {
        mk.op = META_OP_MKNOD;
        mk.mode = a.mode & (S_IFMT | 0777); /* set-id bits come with the last setattr */
        mk.rdev = a.rdev;
    }
    if (rc == 0)
        rc = live(r, &mk, 0, out);
    uint64_t dst = rc == 0 ? out->r.reply.attr.ino : 0;
    if (rc == 0 && S_ISREG(a.mode))
        rc = copy_data(r, j->src, dst, a.size, pieces, out);
    if (rc == 0)
        rc = copy_xattrs(r, j->src, dst, names, value, out);
    if (rc == 0)
        rc = copy_attrs(r, dst, &a, S_ISLNK(a.mode), out);
    if (rc != 0)
        return set_error(r, rc, "restoring %s: %s", name, ar_strerror(rc));
    if (out->r.reply.attr.size != a.size)
        atomic_fetch_add(&r->mismatches, 1);
    if (a.nlink > 1) {
        pthread_mutex_lock(&r->mu);
        rc = map_put(&r->firsts, j->src, dst);
        pthread_mutex_unlock(&r->mu);
    }
    atomic_fetch_add(&r->bytes, S_ISREG(a.mode) ? a.size : 0);
    return rc;
}

/* A worker's RESTORE_FILES command being filled: files of one directory
 * that need nothing but their attributes and at most PIECES_PER_FILE
 * pieces of one chunk (the small files of a training set). Its names are
 * those of the worker's run. */
#define PIECES_PER_FILE 16u

struct batch {
    uint64_t parent;
    uint32_t count;
    uint32_t piece_count;
    size_t used;                 /* of bytes */
    uint64_t bytes_total;        /* of the regular files */
    struct meta_file_item items[META_RESTORE_FILES_MAX];
    struct meta_file_piece pieces[META_RESTORE_PIECES_MAX];
    char bytes[META_RESTORE_BYTES_MAX]; /* symlink targets */
};

static int batch_flush(struct restore *r, struct batch *b, struct meta_response_buf *out)
{
    if (b->count == 0)
        return 0;
    struct meta_cmd cmd = {.op = META_OP_RESTORE_FILES, .ino = b->parent, .items = b->items,
                           .item_count = b->count, .pieces = b->pieces,
                           .piece_count = b->piece_count};
    int rc = live(r, &cmd, 0, out);
    if (rc != 0)
        return set_error(r, rc, "restoring %u files (%s, ...): %s", b->count, b->items[0].name,
                         ar_strerror(rc));
    atomic_fetch_add(&r->done_files, b->count);
    atomic_fetch_add(&r->bytes, b->bytes_total);
    b->count = 0;
    b->piece_count = 0;
    b->used = 0;
    b->bytes_total = 0;
    return 0;
}

/* Put job j in the batch if it is a plain small file; false if it needs
 * the one-by-one path (xattrs, several links, many pieces, big). */
static bool batch_take(struct restore *r, struct batch *b, const struct job *j, const char *name,
                       struct meta_slice *pieces, uint8_t *names, struct meta_response_buf *out)
{
    struct meta_attr a;
    if (scratch_attr(r, j->src, &a) != 0 || a.nlink != 1 || S_ISDIR(a.mode) ||
        (S_ISREG(a.mode) && a.size > META_CHUNK_BYTES))
        return false;
    struct meta_cmd lx = {.op = META_OP_LISTXATTR, .ino = j->src};
    struct meta_reply xr = {.data = names, .data_cap = XATTR_LIST_MAX};
    if (scratch_read(r, &lx, &xr) != 0 || xr.data_len != 0)
        return false;
    struct meta_reply map = {.slices = pieces, .slice_cap = META_READ_SLICES_MAX};
    if (S_ISREG(a.mode) && a.size > 0) {
        struct meta_cmd rm = {.op = META_OP_READ_MAP, .ino = j->src};
        if (scratch_read(r, &rm, &map) != 0)
            return false;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < map.slice_count; i++) {
        n += pieces[i].id != 0 && pieces[i].len > 0;
    }
    char target[4096] = "";
    if (S_ISLNK(a.mode)) {
        struct meta_cmd rl = {.op = META_OP_READLINK, .ino = j->src};
        struct meta_reply tr = {0};
        if (scratch_read(r, &rl, &tr) != 0)
            return false;
        snprintf(target, sizeof(target), "%s", tr.target);
    }
    size_t tlen = strlen(target);
    if (n > PIECES_PER_FILE)
        return false;
    uint32_t cap = r->o->batch_files != 0 && r->o->batch_files < META_RESTORE_FILES_MAX
                       ? r->o->batch_files
                       : META_RESTORE_FILES_MAX;
    if (b->count > 0 && (b->parent != j->dst_parent || b->count >= cap ||
                         b->piece_count + n > META_RESTORE_PIECES_MAX ||
                         b->used + tlen + 1 > META_RESTORE_BYTES_MAX)) {
        if (batch_flush(r, b, out) != 0)
            return true; /* the error is recorded; the worker stops */
    }
    b->parent = j->dst_parent;
    struct meta_file_item *it = &b->items[b->count++];
    *it = (struct meta_file_item){.name = name, .name_len = j->name_len,
                                  .mode = a.mode, .uid = a.uid, .gid = a.gid, .rdev = a.rdev,
                                  .atime_ns = a.atime_ns, .mtime_ns = a.mtime_ns,
                                  .size = S_ISREG(a.mode) ? a.size : 0,
                                  .piece_first = b->piece_count, .piece_count = n};
    if (S_ISLNK(a.mode)) {
        memcpy(b->bytes + b->used, target, tlen + 1);
        it->target = b->bytes + b->used;
        it->target_len = (uint32_t)tlen;
        b->used += tlen + 1;
    }
    for (uint32_t i = 0; i < map.slice_count; i++) {
        if (pieces[i].id != 0 && pieces[i].len > 0)
            b->pieces[b->piece_count++] = (struct meta_file_piece){
                .offset = map.chunk_offset + pieces[i].pos, .slice = pieces[i]};
    }
    b->bytes_total += it->size;
    return true;
}

/* What a pool thread does next: walk directory *dir, write the run of
 * files copied into run, or end. Under mu. A directory comes first while
 * fewer than half the threads walk, or while no run is ready: a run is
 * BATCH_RUN jobs, or what is left once the walk is over. */
enum turn { TURN_DIR, TURN_FILES, TURN_END };

static enum turn next_turn(struct restore *r, size_t *dir, struct run *run)
{
    uint32_t walkers = r->threads > 1 ? r->threads / 2 : 1;

    /* bounded: every wait ends with a change the waker broadcasts, and
     * the walk of a finite tree ends */
    while (atomic_load(&r->rc) == 0) {
        size_t next_dir = atomic_load(&r->next_dir);
        size_t next_job = atomic_load(&r->next_job);
        size_t ready = r->job_count - next_job;
        bool is_walked = next_dir == r->dir_count && r->dirs_busy == 0;
        bool is_run_ready = ready >= BATCH_RUN || (is_walked && ready > 0);
        if (next_dir < r->dir_count && (r->dirs_busy < walkers || !is_run_ready)) {
            *dir = atomic_fetch_add(&r->next_dir, 1);
            r->dirs_busy++;
            return TURN_DIR;
        }
        if (is_run_ready) {
            size_t used = 0;
            run->count = ready < BATCH_RUN ? ready : BATCH_RUN;
            for (size_t i = 0; i < run->count; i++) {
                struct job *j = &run->jobs[i];
                *j = r->jobs[next_job + i];
                memcpy(run->names + used, r->names + j->name_off, j->name_len + 1);
                j->name_off = (uint32_t)used;
                used += j->name_len + 1;
            }
            atomic_store(&r->next_job, next_job + run->count);
            return TURN_FILES;
        }
        if (is_walked)
            return TURN_END;
        pthread_cond_wait(&r->more, &r->mu);
    }
    return TURN_END;
}

static void write_run(struct restore *r, const struct run *run, struct batch *b,
                      struct meta_slice *pieces, uint8_t *names, uint8_t *value,
                      struct meta_response_buf *out)
{
    for (size_t i = 0; i < run->count && atomic_load(&r->rc) == 0; i++) {
        const struct job *j = &run->jobs[i];
        const char *name = run->names + j->name_off;
        if (!batch_take(r, b, j, name, pieces, names, out) &&
            restore_one(r, j, name, pieces, names, value, out) == 0)
            atomic_fetch_add(&r->done_files, 1);
    }
    if (atomic_load(&r->rc) == 0)
        batch_flush(r, b, out); /* before the run's names go */
}

static void *worker(void *arg)
{
    struct restore *r = arg;
    struct meta_response_buf *out = ar_malloc(sizeof(*out));
    struct meta_dirent *ents = ar_malloc(sizeof(*ents) * META_READDIR_MAX);
    struct meta_slice *pieces = ar_malloc(sizeof(*pieces) * META_READ_SLICES_MAX);
    uint8_t *names = ar_malloc(XATTR_LIST_MAX);
    uint8_t *value = ar_malloc(65536);
    struct batch *b = ar_calloc(1, sizeof(*b));
    struct run *run = ar_malloc(sizeof(*run));

    if (out == NULL || ents == NULL || pieces == NULL || names == NULL || value == NULL ||
        b == NULL || run == NULL)
        set_error(r, -ENOMEM, "out of memory");
    pthread_mutex_lock(&r->mu);
    for (;;) {
        size_t dir = 0;
        enum turn turn = next_turn(r, &dir, run);
        if (turn == TURN_END)
            break;
        pthread_mutex_unlock(&r->mu);
        if (turn == TURN_DIR)
            walk_dir(r, dir, ents, names, value, out);
        else
            write_run(r, run, b, pieces, names, value, out);
        pthread_mutex_lock(&r->mu);
        if (turn == TURN_DIR && --r->dirs_busy == 0 &&
            atomic_load(&r->next_dir) == r->dir_count)
            r->walked_at = now_s();
        pthread_cond_broadcast(&r->more);
    }
    pthread_mutex_unlock(&r->mu);
    ar_free(run);
    ar_free(b);
    ar_free(out);
    ar_free(ents);
    ar_free(pieces);
    ar_free(names);
    ar_free(value);
    atomic_fetch_add(&r->workers_done, 1);
    return NULL;
}

/* Walk the tree from r->dirs (its top, or none for one file) and write
 * what it holds, on the pool. */
static int run_pool(struct restore *r)
{
    int rc = run_threads(r, worker, true);

    for (size_t i = 0; rc == 0 && i < r->job_count; i++) {
        r->rep->files += S_ISREG(r->jobs[i].mode);
        r->rep->symlinks += S_ISLNK(r->jobs[i].mode);
        r->rep->others += !S_ISREG(r->jobs[i].mode) && !S_ISLNK(r->jobs[i].mode);
    }
    return rc;
}

static int make_links(struct restore *r, struct meta_response_buf *out)
{
    for (size_t i = 0; i < r->link_count; i++) {
        const struct job *j = &r->links[i];
        const char *name = r->names + j->name_off;
        struct meta_cmd ln = {.op = META_OP_LINK, .ino = map_get(&r->firsts, j->src),
                              .new_dir = j->dst_parent, .new_name = name,
                              .new_name_len = j->name_len};
        int rc = ln.ino != 0 && ln.ino != UINT64_MAX ? live(r, &ln, 0, out) : -ENOENT;
        if (rc != 0)
            return set_error(r, rc, "linking %s: %s", name, ar_strerror(rc));
        r->rep->links++;
    }
    return 0;
}

static void *finish_worker(void *arg)
{
    struct restore *r = arg;
    struct meta_response_buf *out = ar_malloc(sizeof(*out));

    if (out == NULL)
        set_error(r, -ENOMEM, "out of memory");
    while (atomic_load(&r->rc) == 0) {
        size_t i = atomic_fetch_add(&r->next_dir, 1);
        if (i >= r->dir_end)
            break;
        const struct dir_pair *d = &r->dirs[r->order[i]];
        struct meta_attr a;
        int rc = scratch_attr(r, d->src, &a);
        if (rc == 0)
            rc = copy_attrs(r, d->dst, &a, false, out);
        if (rc != 0)
            set_error(r, rc, "directory attributes: %s", ar_strerror(rc));
    }
    ar_free(out);
    atomic_fetch_add(&r->workers_done, 1);
    return NULL;
}

/* Directories' owners, modes and times, the deepest first (their children
 * are all made by then), the directories of one depth on the pool. */
static int finish_dirs(struct restore *r)
{
    uint32_t deepest = 0;

    for (size_t i = 0; i < r->dir_count; i++) {
        deepest = r->dirs[i].depth > deepest ? r->dirs[i].depth : deepest;
    }
    /* a counting sort: the directories of depth deepest - k go in
     * order[ends[k - 1] .. ends[k]) */
    size_t *ends = ar_calloc((size_t)deepest + 1, sizeof(*ends));
    r->order = ar_malloc(sizeof(*r->order) * (r->dir_count + 1));
    if (ends == NULL || r->order == NULL) {
        ar_free(ends);
        return set_error(r, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < r->dir_count; i++) {
        if (r->dirs[i].depth > 0) /* counted where the next shallower one starts */
            ends[deepest - r->dirs[i].depth + 1]++;
    }
    for (uint32_t k = 1; k <= deepest; k++) {
        ends[k] += ends[k - 1];
    }
    for (size_t i = 0; i < r->dir_count; i++) {
        r->order[ends[deepest - r->dirs[i].depth]++] = i;
    }
    int rc = 0;
    for (uint32_t k = 0; rc == 0 && k <= deepest; k++) {
        atomic_store(&r->next_dir, k > 0 ? ends[k - 1] : 0);
        r->dir_end = ends[k];
        rc = run_threads(r, finish_worker, false);
    }
    ar_free(ends);
    return rc;
}

/* ---- verification ------------------------------------------------------------------------ */

/* What one name of the restored tree must be, folded into a sum over
 * the tree: the directory it is in, the name, its mode and (not for a
 * directory) size. A sum, so that the order names come in does not matter. */
static uint64_t name_digest(uint64_t dir, const char *name, uint32_t len, uint32_t mode,
                            uint64_t size)
{
    return mix(mix(fnv1a(name, len) ^ dir) ^ mix(((uint64_t)mode << 40) ^ size ^
                                                  0x9e3779b97f4a7c15ull));
}

/* List made directory d with attributes: count its names and add up
 * their name_digest() into seen_*. */
static int list_made(struct restore *r, const struct dir_pair *d, struct meta_response_buf *out)
{
    uint64_t cookie = 0;
    bool is_end = false;
    uint64_t dirs = 0;
    uint64_t others = 0;
    uint64_t sum = 0;
    int rc = 0;

    while (rc == 0 && !is_end) {
        struct meta_cmd rd = {.op = META_OP_READDIR, .ino = d->dst, .cookie = cookie,
                              .entry_cap = META_READDIR_MAX, .flags = META_READDIR_ATTRS};
        rc = live(r, &rd, 0, out);
        uint32_t n = rc == 0 ? out->r.reply.entry_count : 0;
        is_end = rc != 0 || out->r.reply.is_end || n == 0;
        for (uint32_t i = 0; i < n; i++) {
            const struct meta_dirent *e = &out->r.reply.entries[i];
            bool is_dir = S_ISDIR(e->type);
            cookie = e->cookie;
            dirs += is_dir;
            others += !is_dir;
            sum += name_digest(d->dst, e->name, e->name_len, e->attr.mode,
                               is_dir ? 0 : e->attr.size);
        }
    }
    atomic_fetch_add(&r->seen_dirs, dirs);
    atomic_fetch_add(&r->seen_others, others);
    atomic_fetch_add(&r->seen_digest, sum);
    return rc;
}

/* name_digest() of name k of the plan as the moment has it: directories
 * below the top, then jobs, then links. */
static int want_digest(struct restore *r, size_t k, uint64_t *sum)
{
    uint64_t src;
    uint64_t parent;
    uint32_t name_off;
    uint32_t name_len;
    bool is_dir = k < r->dir_count;

    if (is_dir) {
        src = r->dirs[k].src;
        parent = r->dirs[k].parent;
        name_off = r->dirs[k].name_off;
        name_len = r->dirs[k].name_len;
    } else {
        k -= r->dir_count;
        const struct job *j = k < r->job_count ? &r->jobs[k] : &r->links[k - r->job_count];
        src = j->src;
        parent = j->dst_parent;
        name_off = j->name_off;
        name_len = j->name_len;
    }
    struct meta_attr a;
    int rc = scratch_attr(r, src, &a);
    if (rc == 0)
        *sum += name_digest(parent, r->names + name_off, name_len, a.mode, is_dir ? 0 : a.size);
    return rc;
}

#define VERIFY_RUN 4096u /* names of the plan a thread sums at once */

/* Each made directory listed; the plan summed, both on the pool. */
static void *verify_worker(void *arg)
{
    struct restore *r = arg;
    struct meta_response_buf *out = ar_malloc(sizeof(*out));
    size_t total = r->dir_count + r->job_count + r->link_count;

    if (out == NULL)
        set_error(r, -ENOMEM, "out of memory");
    while (atomic_load(&r->rc) == 0) {
        size_t i = atomic_fetch_add(&r->next_dir, 1);
        if (i >= r->dir_count)
            break;
        int rc = list_made(r, &r->dirs[i], out);
        if (rc != 0)
            set_error(r, rc, "reading the restored tree back: %s", ar_strerror(rc));
    }
    while (atomic_load(&r->rc) == 0) {
        size_t first = atomic_fetch_add(&r->next_job, VERIFY_RUN);
        if (first >= total)
            break;
        size_t end = first + VERIFY_RUN < total ? first + VERIFY_RUN : total;
        uint64_t sum = 0;
        int rc = 0;
        for (size_t k = first == 0 ? 1 : first; rc == 0 && k < end; k++) {
            rc = want_digest(r, k, &sum); /* k 0: the top, which no listing shows */
        }
        if (rc != 0)
            set_error(r, rc, "reading the moment's attributes: %s", ar_strerror(rc));
        atomic_fetch_add(&r->want_digest, sum);
    }
    ar_free(out);
    atomic_fetch_add(&r->workers_done, 1);
    return NULL;
}

/* The first job whose name in the staging tree has not its mode and size
 * at the moment, named in the error; the tree's sums differed. */
static int find_mismatch(struct restore *r, const struct job *jobs, size_t count,
                         struct meta_response_buf *out)
{
    for (size_t i = 0; i < count; i++) {
        const struct job *j = &jobs[i];
        const char *name = r->names + j->name_off;
        struct meta_attr a;
        uint64_t ino;
        uint32_t mode;
        int rc = scratch_attr(r, j->src, &a);
        if (rc == 0)
            rc = live_lookup(r, j->dst_parent, name, &ino, &mode, out);
        if (rc != 0)
            return set_error(r, rc, "reading %s back: %s", name, ar_strerror(rc));
        if (out->r.reply.attr.size != a.size || out->r.reply.attr.mode != a.mode)
            return set_error(r, -EIO, "%s came back with size %" PRIu64 " and mode %o, not %"
                             PRIu64 " and %o", name, out->r.reply.attr.size,
                             out->r.reply.attr.mode, a.size, a.mode);
    }
    return 0;
}

/* The staging tree holds what was planned: every name, and every name's
 * mode and (but for directories) size, read back in listings with
 * attributes. Errors in r->errmsg. */
static int verify(struct restore *r, bool is_dir, struct meta_response_buf *out)
{
    if (!is_dir) {
        /* one file: its own lookup */
        int rc = r->job_count == 1 ? find_mismatch(r, r->jobs, 1, out) : 0;
        r->rep->sizes_checked = rc == 0 ? r->job_count : 0;
        return rc;
    }
    atomic_store(&r->next_dir, 0);
    atomic_store(&r->next_job, 0);
    int rc = run_threads(r, verify_worker, false);
    if (rc != 0)
        return rc;
    uint64_t dirs = atomic_load(&r->seen_dirs);
    uint64_t others = atomic_load(&r->seen_others);
    uint64_t want_others = r->job_count + r->link_count;
    if (dirs + 1 != r->dir_count || others != want_others)
        return set_error(r, -EIO, "the restored tree holds %" PRIu64 " directories and %" PRIu64
                         " other names; %zu and %" PRIu64 " were restored", dirs + 1, others,
                         r->dir_count, want_others);
    if (atomic_load(&r->seen_digest) != atomic_load(&r->want_digest)) {
        rc = find_mismatch(r, r->jobs, r->job_count, out);
        if (rc == 0)
            rc = find_mismatch(r, r->links, r->link_count, out);
        if (rc == 0)
            rc = set_error(r, -EIO, "the restored tree's names differ from the moment's");
        return rc;
    }
    r->rep->sizes_checked = want_others;
    r->rep->names_counted = dirs + others;
    return 0;
}

/* ---- the whole ------------------------------------------------------------------------------ */

/* Split an absolute volume path into its parent's path and last name. */
static int split_path(const char *path, char *parent, size_t cap, char *name)
{
    size_t n = strlen(path);

    while (n > 1 && path[n - 1] == '/') {
        n--;
    }
    if (path[0] != '/' || n <= 1)
        return -EINVAL;
    size_t cut = n;
    while (cut > 0 && path[cut - 1] != '/') {
        cut--;
    }
    if (n - cut > 255)
        return -ENAMETOOLONG;
    if (cut >= cap)
        return -ENAMETOOLONG;
    memcpy(name, path + cut, n - cut);
    name[n - cut] = '\0';
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EINVAL;
    memcpy(parent, path, cut);
    parent[cut > 1 ? cut - 1 : 1] = '\0';
    return 0;
}

/* Walk path (absolute, in the volume) to *ino: in the live volume (out
 * given) or in the scratch state (out NULL). */
static int resolve(struct restore *r, const char *path, uint64_t *ino,
                   struct meta_response_buf *out)
{
    char part[256];
    uint64_t at = 1;
    const char *p = path;

    while (*p != '\0') {
        while (*p == '/') {
            p++;
        }
        size_t n = strcspn(p, "/");
        if (n == 0)
            break;
        if (n > 255)
            return -ENAMETOOLONG;
        memcpy(part, p, n);
        part[n] = '\0';
        uint32_t mode;
        int rc;
        if (out != NULL) {
            rc = live_lookup(r, at, part, &at, &mode, out);
        } else {
            struct meta_cmd cmd = {.op = META_OP_LOOKUP, .ino = at, .name = part,
                                   .name_len = (uint32_t)n};
            struct meta_reply rep = {0};
            rc = scratch_read(r, &cmd, &rep);
            at = rep.attr.ino;
        }
        if (rc != 0)
            return rc;
        p += n;
    }
    *ino = at;
    return 0;
}

void ar_restore_stamp(uint64_t at_ns, char *out, size_t cap)
{
    time_t t = (time_t)(at_ns / 1000000000ull);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y%m%dT%H%M%SZ", &tm);
}

static void rebuild_progress(void *ctx, const char *stage, uint64_t done, uint64_t total)
{
    const struct restore *r = ctx;

    if (strcmp(stage, "log") != 0 || done % 64 == 0 || done == total)
        say(r, "rebuilding: %s %" PRIu64 " of %" PRIu64, stage, done, total);
}

/* A moment past a shard's last entry is proven by a later entry, or by the
 * leader's head, which an idle shard rewrites only every 10 s. Taking one
 * slice id makes such an entry now, in the next batch (an id left unused
 * costs nothing). Best effort: the wait goes on without it. */
static void mark_the_moment_passed(struct restore *r, uint32_t shard)
{
    struct meta_response_buf *out = ar_malloc(sizeof(*out));
    struct meta_cmd take = {.op = META_OP_ALLOC_SLICES, .length = 1};

    if (out != NULL)
        (void)ar_client_call(r->client, shard, &take, META_READ_LINEARIZABLE, 0, out);
    ar_free(out);
}

static int rebuild(struct restore *r, uint32_t shard, char *errmsg)
{
    struct meta_map map;
    struct obj_store *st = NULL;
    char dir[512];
    const char *tmp = getenv("TMPDIR");

    ar_client_map(r->client, &map);
    const char *url = r->o->store_url != NULL ? r->o->store_url : map.store_url;
    int rc = obj_store_open(url, NULL, &st, errmsg);
    if (rc != 0)
        return rc;
    r->store = st;
    /* before the rebuild: the window's expiry and block gc keep the moment's
     * state and blocks until the restore ends (a moment near the window's
     * start may leave it meanwhile) */
    char pin_err[AR_ERRMSG_MAX] = "";
    if (meta_archive_pin(st, shard, r->o->at_ns, r->pin, pin_err) != 0) {
        r->pin[0] = '\0';
        say(r, "warning: cannot pin the moment in the store (%s): a gc pass while this restore "
            "runs may remove blocks of a moment near the window's start", pin_err);
    }
    snprintf(dir, sizeof(dir), "%s/arbor-restore-XXXXXX",
             r->o->scratch_dir != NULL ? r->o->scratch_dir : tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        return ar_errorf(errmsg, -errno, "cannot make a scratch directory %s: %s", dir,
                    strerror(errno));
    }
    struct meta_rebuild_options ro = {.shard = shard, .at_ns = r->o->at_ns, .scratch_dir = dir,
                                      .progress = rebuild_progress, .ctx = r};
    uint64_t window_ns = (uint64_t)map.window_s * 1000000000ull;
    bool is_in_window = r->o->at_ns != UINT64_MAX && r->o->at_ns + window_ns >= wall_ns();
    double t0 = now_s();
    for (uint32_t tries = 0;; tries++) {
        rc = meta_archive_rebuild(st, &ro, &r->scratch, &r->rep->point, errmsg);
        /* The moment may be newer than the archive by a batch: wait for the
         * next. A moment inside the window that the archive does not reach
         * back to yet is a new volume's, before its first batch is stored. */
        bool is_early = is_in_window && (rc == -ENOENT || (rc == -ERANGE &&
                                         r->rep->point.oldest_ns > r->o->at_ns));
        if ((rc != -EAGAIN && !is_early) || tries >= r->o->wait_s)
            break;
        if (tries == 0) {
            say(r, "the archive does not reach the moment yet; waiting (at most %u s)",
                r->o->wait_s);
            if (rc == -EAGAIN && r->o->at_ns < wall_ns())
                mark_the_moment_passed(r, shard);
        }
        sleep(1);
    }
    r->rep->rebuild_s = now_s() - t0;
    rmdir(dir); /* the rebuild removed what it put there */
    if (rc != 0 && rc != -ERANGE && rc != -ENOENT && rc != -EAGAIN) {
        /* a store's words name a request, not what it was for */
        char why[AR_ERRMSG_MAX];
        snprintf(why, sizeof(why), "%s", errmsg);
        snprintf(errmsg, AR_ERRMSG_MAX, "rebuilding the state from the archive in %.200s "
                 "failed: %.700s", url, why);
    }
    return rc;
}

/* The restore's writes are done (has_written: some may have been made,
 * in shard): let go of the moment's pin. Gc keeps the blocks restored
 * files name from the archive's commands, which lag the shard by a batch;
 * a moment near the window's edge may leave it meanwhile, and with the
 * pin gone nothing else would keep them. Such a pin goes once the archive
 * of shard holds everything committed by now. */
static void pin_let_go(struct restore *r, uint32_t shard, bool has_written)
{
    struct meta_map map;
    char why[AR_ERRMSG_MAX] = "";

    if (r->pin[0] == '\0')
        return;
    uint64_t end_ns = wall_ns() + PIN_CLOCK_NS;
    if (has_written)
        ar_client_map(r->client, &map);
    if (has_written && r->o->at_ns + (uint64_t)map.window_s * 1000000000ull <
                           end_ns + PIN_EDGE_S * 1000000000ull) {
        say(r, "waiting for the archive to hold the restored files (the moment leaves the "
            "recovery window soon; until then its pin keeps their blocks)");
        uint64_t as_of = 0;
        /* bounded: PIN_WAIT_S tries a second apart */
        for (uint32_t tries = 0; tries <= PIN_WAIT_S; tries++) {
            if (meta_archive_head_as_of(r->store, shard, &as_of, why) == 0 && as_of >= end_ns)
                break;
            sleep(1);
        }
        if (as_of < end_ns) {
            say(r, "the archive does not hold the restored files yet: the pin %s stays in the "
                "store until it lapses (%u h), keeping the moment's blocks", r->pin,
                META_PIN_TTL_S / 3600u);
            r->pin[0] = '\0';
            return;
        }
        say(r, "the archive holds the restored files");
    }
    if (meta_archive_unpin(r->store, r->pin, why) != 0)
        ar_log(AR_LOG_WARN, "cannot remove the restore's pin %s from the store (it lapses "
               "in %u h): %s", r->pin, META_PIN_TTL_S / 3600u, why);
    r->pin[0] = '\0';
}

static void restore_free(struct restore *r)
{
    pin_let_go(r, 0, false); /* a restore that failed before it wrote */
    if (r->store != NULL)
        obj_store_close(r->store);
    if (r->scratch != NULL)
        meta_shard_free(r->scratch);
    ar_free(r->jobs);
    ar_free(r->links);
    ar_free(r->names);
    ar_free(r->dirs);
    ar_free(r->order);
    ar_free(r->firsts.keys);
    ar_free(r->firsts.vals);
    if (r->client != NULL)
        ar_client_close(r->client);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->more);
}

/* Names under src at the moment, src's own included (hard links once a
 * name): one walk of the scratch state, directory by directory. */
static int count_names(const struct restore *r, uint64_t src, uint64_t *out)
{
    struct meta_dirent *ents = ar_malloc(sizeof(*ents) * META_READDIR_MAX);
    uint64_t *dirs = ar_malloc(sizeof(*dirs) * 64);
    size_t dir_count = 1;
    size_t dir_cap = 64;
    int rc = ents != NULL && dirs != NULL ? 0 : -ENOMEM;

    *out = 1;
    if (dirs != NULL)
        dirs[0] = src;
    /* bounded: each turn lists one directory of a finite tree */
    for (size_t i = 0; rc == 0 && i < dir_count; i++) {
        uint64_t cookie = 0;
        bool is_end = false;
        while (rc == 0 && !is_end) {
            struct meta_cmd cmd = {.op = META_OP_READDIR, .ino = dirs[i], .cookie = cookie,
                                   .entry_cap = META_READDIR_MAX};
            struct meta_reply rep = {.entries = ents};
            rc = scratch_read(r, &cmd, &rep);
            is_end = rep.is_end || rep.entry_count == 0;
            for (uint32_t k = 0; rc == 0 && k < rep.entry_count; k++) {
                cookie = ents[k].cookie;
                (*out)++;
                if (!S_ISDIR(ents[k].type))
                    continue;
                if (!grow((void **)&dirs, &dir_cap, dir_count + 1, sizeof(*dirs)))
                    rc = -ENOMEM;
                else
                    dirs[dir_count++] = ents[k].ino;
            }
        }
    }
    ar_free(ents);
    ar_free(dirs);
    return rc;
}

/* Before anything is written: room for what the subtree holds. */
static int check_room(struct restore *r, uint64_t src, char *errmsg)
{
    struct meta_shard_stats st;

    if (r->o->room == NULL)
        return 0;
    meta_shard_stats(r->scratch, &st);
    if (r->o->room(r->o->ctx, st.inode_count, errmsg) == 0)
        return 0;
    uint64_t names;
    int rc = count_names(r, src, &names);
    if (rc != 0)
        return ar_errorf(errmsg, rc, "counting the tree at the moment: %s", ar_strerror(rc));
    say(r, "names to restore: %" PRIu64, names);
    errmsg[0] = '\0';
    rc = r->o->room(r->o->ctx, names, errmsg);
    if (rc != 0 && errmsg[0] == '\0')
        ar_errorf(errmsg, rc, "the cluster has no room for %" PRIu64 " names", names);
    return rc;
}

/* Rename from to to in directory dir, with flags (RENAME_NOREPLACE, RENAME_EXCHANGE). */
static int rename_in(struct restore *r, uint64_t dir, const char *from, const char *to,
                     uint32_t flags, struct meta_response_buf *out)
{
    struct meta_cmd mv = {.op = META_OP_RENAME, .ino = dir, .name = from,
                          .name_len = (uint32_t)strlen(from), .new_dir = dir, .new_name = to,
                          .new_name_len = (uint32_t)strlen(to), .flags = flags};

    return live(r, &mv, 0, out);
}

/* The final steps: the tree into its place (and, replacing, the old one aside). */
static int put_in_place(struct restore *r, uint64_t parent, const char *staging,
                        const char *final, bool is_replace, struct meta_response_buf *out,
                        char *errmsg)
{
    uint64_t ino;
    uint32_t mode;
    int rc = live_lookup(r, parent, final, &ino, &mode, out);
    bool is_there = rc == 0;

    if (rc != 0 && rc != -ENOENT)
        return ar_errorf(errmsg, rc, "looking up %s: %s", final, ar_strerror(rc));
    if (is_there && !is_replace)
        return ar_errorf(errmsg, -EEXIST, "%s exists now: the restored tree stays at %s", final,
                    staging);
    if (!is_there) {
        rc = rename_in(r, parent, staging, final, RENAME_NOREPLACE, out);
        return rc == 0 ? 0 : ar_errorf(errmsg, rc, "renaming %s to %s: %s", staging, final,
                                       ar_strerror(rc));
    }
    /* Replacing: the exchange puts the old tree under the name the new one
     * had. Never the staging name, which the same command run again
     * removes: the new tree moves to a name of its own first, and nothing
     * removes what is under that name. */
    char swap[80];
    snprintf(swap, sizeof(swap), "%s.swap", staging);
    rc = rename_in(r, parent, staging, swap, RENAME_NOREPLACE, out);
    if (rc == -EEXIST)
        return ar_errorf(errmsg, rc, "%s is left from an earlier run cut off while replacing "
                         "(the restored tree, or the one it replaced): move or remove it, then "
                         "run again; the restored tree is at %s", swap, staging);
    if (rc != 0)
        return ar_errorf(errmsg, rc, "renaming %s to %s: %s", staging, swap, ar_strerror(rc));
    rc = rename_in(r, parent, swap, final, RENAME_EXCHANGE, out);
    if (rc != 0)
        return ar_errorf(errmsg, rc, "exchanging %s and %s: %s (the restored tree is at %s)",
                         swap, final, ar_strerror(rc), swap);
    /* the old tree is under the swap name now: give it its own, one not
     * taken (an earlier replacement to the same moment has the first) */
    char stamp[32];
    char aside[300];
    ar_restore_stamp(r->o->at_ns, stamp, sizeof(stamp));
    rc = -EEXIST;
    for (int n = 1; rc == -EEXIST && n <= 100; n++) { /* bounded: 100 names */
        if (n == 1)
            snprintf(aside, sizeof(aside), "%.200s.replaced-%s", final, stamp);
        else
            snprintf(aside, sizeof(aside), "%.200s.replaced-%s-%d", final, stamp, n);
        rc = rename_in(r, parent, swap, aside, RENAME_NOREPLACE, out);
    }
    if (rc != 0)
        return ar_errorf(errmsg, rc, "the restored tree is in place; the old one is at %s: %s",
                         swap, ar_strerror(rc));
    snprintf(r->rep->aside_name, sizeof(r->rep->aside_name), "%s", aside);
    return 0;
}

/* Where the restored tree goes: the destination's parent path and final
 * name (the default's name carries the moment), the report's final path,
 * and the staging name it is built under. 0, or an error with errmsg. */
static int restore_names(const struct ar_restore_options *o, struct ar_restore_report *rep,
                         char parent[1024], char final[256], char staging[64], char *errmsg)
{
    char stamp[32];
    const char *into = o->is_replace || o->into == NULL ? o->path : o->into;
    int rc = split_path(into, parent, 1024, final);

    ar_restore_stamp(o->at_ns, stamp, sizeof(stamp));
    if (rc == 0 && o->into == NULL && !o->is_replace) {
        if (strlen(final) + strlen(".restored-") + strlen(stamp) > 255)
            rc = -ENAMETOOLONG;
        else
            snprintf(final + strlen(final), 256 - strlen(final), ".restored-%s", stamp);
    }
    if (rc != 0)
        return ar_errorf(errmsg, rc, "%s: not a path in the volume (absolute, not /): %s", into,
                         ar_strerror(rc));
    snprintf(rep->final_path, sizeof(rep->final_path), "%s%s%s", parent,
             strcmp(parent, "/") == 0 ? "" : "/", final);
    /* PATH without trailing slashes: "/d/" and "/d" are one tree */
    size_t path_len = strlen(o->path);
    while (path_len > 1 && o->path[path_len - 1] == '/')
        path_len--;
    snprintf(staging, 64, ".arbor-restore-%016" PRIx64, mix(fnv1a(o->path, path_len) ^ o->at_ns));
    return 0;
}

/* The client opened, the destination's directory found (dst_parent), and
 * its final name checked free unless the tree replaces what is there. */
static int restore_open(struct restore *r, const char *parent, const char *final,
                        uint64_t *dst_parent, struct meta_response_buf *out, char *errmsg)
{
    const struct ar_restore_options *o = r->o;
    /* all of a restore is background work: leaders pace it beside live
     * traffic, and what sends it yields the CPU to a server or a live
     * client on this machine (the rebuild before it only reads) */
    struct ar_client_options mo = o->meta;
    mo.is_background = true;
    mo.is_low_priority = !o->is_normal_priority;
    int rc = ar_client_open(&mo, &r->client, errmsg);
    if (rc == 0)
        rc = resolve(r, parent, dst_parent, out);
    if (rc != 0 && errmsg[0] == '\0')
        ar_errorf(errmsg, rc, "the destination's directory %s: %s", parent, ar_strerror(rc));
    if (rc != 0 || o->is_replace)
        return rc;
    /* refused before the work; checked again at the end */
    uint64_t ino;
    uint32_t mode;
    rc = live_lookup(r, *dst_parent, final, &ino, &mode, out);
    if (rc == 0)
        return ar_errorf(errmsg, -EEXIST, "%s exists: name another with --into, or put the "
                         "tree at %s itself with --replace", r->rep->final_path, o->path);
    if (rc != -ENOENT)
        return ar_errorf(errmsg, rc, "looking up %s: %s", r->rep->final_path, ar_strerror(rc));
    return 0;
}

/* The state at the moment rebuilt, the source found in it (src), and the
 * room for its copy checked. */
static int restore_source(struct restore *r, uint64_t *src, char *errmsg)
{
    struct ar_restore_report *rep = r->rep;
    char at[40];

    ar_format_time(r->o->at_ns, at, sizeof(at));
    say(r, "rebuilding the volume's state at %s", at);
    errmsg[0] = '\0';
    int rc = rebuild(r, ar_client_shard_of(r->client, 1), errmsg);
    if (rc != 0)
        return rc;
    say(r, "rebuilt from checkpoint %" PRIu64 " and %" PRIu64 " commands, to entry %" PRIu64
           " (%.1f s)", rep->point.base_index, rep->point.entries, rep->point.index,
        rep->rebuild_s);
    rc = resolve(r, r->o->path, src, NULL);
    if (rc != 0 && rep->point.index == 0) /* no entry was at or before the moment */
        return ar_errorf(errmsg, rc, "the volume did not exist yet at %s", at);
    if (rc != 0)
        return ar_errorf(errmsg, rc, "%s did not exist at %s (%s)", r->o->path, at,
                         ar_strerror(rc));
    return check_room(r, *src, errmsg);
}

/* The tree at src written under staging in dst_parent, and verified;
 * errors in r->errmsg. */
static int restore_write(struct restore *r, uint64_t src, uint64_t dst_parent,
                         const char *staging, double t0, struct meta_response_buf *out)
{
    struct meta_attr top;
    int rc = scratch_attr(r, src, &top);

    if (rc == 0 && S_ISDIR(top.mode)) {
        rc = dir_add(r, src, dst_parent, 0, staging, (uint32_t)strlen(staging));
    } else if (rc == 0) {
        struct job j = {.src = src, .dst_parent = dst_parent,
                        .name_len = (uint32_t)strlen(staging), .mode = top.mode};
        rc = plan_add(r, &r->jobs, &r->job_count, &r->job_cap, &j, staging);
    }
    if (rc == 0) {
        say(r, "walking the tree and restoring what it holds");
        rc = run_pool(r);
    }
    r->rep->plan_s = r->walked_at > 0 ? r->walked_at - t0 : 0;
    if (rc == 0)
        rc = make_links(r, out);
    if (rc == 0)
        rc = finish_dirs(r);
    r->rep->mismatches = atomic_load(&r->mismatches);
    if (rc == 0 && r->rep->mismatches > 0)
        rc = set_error(r, -EIO, "%" PRIu64 " restored files do not have their size at the "
                       "moment", r->rep->mismatches);
    if (rc == 0) {
        say(r, "verifying");
        rc = verify(r, S_ISDIR(top.mode), out);
    }
    return rc;
}

int ar_restore_run(const struct ar_restore_options *o, struct ar_restore_report *rep,
                   char *errmsg)
{
    struct restore r = {.o = o, .rep = rep};
    char parent[1024];
    char final[256];
    char staging[64];
    uint64_t dst_parent = 0;
    uint64_t src = 0;

    memset(rep, 0, sizeof(*rep));
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.more, NULL);
    r.threads = o->threads != 0 ? o->threads : THREADS_DEFAULT;
    int rc = restore_names(o, rep, parent, final, staging, errmsg);
    struct meta_response_buf *out = rc == 0 ? ar_malloc(sizeof(*out)) : NULL;
    if (rc == 0 && out == NULL)
        rc = ar_errorf(errmsg, -ENOMEM, "no memory for a response buffer");
    if (rc == 0)
        rc = restore_open(&r, parent, final, &dst_parent, out, errmsg);
    if (rc == 0)
        rc = restore_source(&r, &src, errmsg);
    if (rc == 0) { /* an interrupted run's staging tree goes first */
        rc = live_remove(&r, dst_parent, staging, out);
        if (rc != 0)
            ar_errorf(errmsg, rc, "removing an earlier run's %s: %s", staging, ar_strerror(rc));
    }
    double t0 = now_s();
    if (rc == 0) { /* from here on a staging tree may stand */
        rc = restore_write(&r, src, dst_parent, staging, t0, out);
        if (rc != 0) {
            /* the moment to the nanosecond: a relative --at (-15m) names
             * another moment, and another staging name, when run again */
            char at[48];
            time_t t = (time_t)(o->at_ns / 1000000000ull);
            struct tm tm;
            gmtime_r(&t, &tm);
            size_t n = strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(at + n, sizeof(at) - n, ".%09" PRIu64 "Z", o->at_ns % UINT64_C(1000000000));
            snprintf(errmsg, AR_ERRMSG_MAX, "%s; the partial tree is %s%s%s (the same command "
                     "with --at %s removes it and starts over)",
                     r.errmsg[0] != '\0' ? r.errmsg : ar_strerror(rc), parent,
                     strcmp(parent, "/") == 0 ? "" : "/", staging, at);
        }
        else
            rc = put_in_place(&r, dst_parent, staging, final, o->is_replace, out, errmsg);
    }
    rep->write_s = now_s() - t0;
    if (r.client != NULL)
        pin_let_go(&r, ar_client_shard_of(r.client, dst_parent), dst_parent != 0 && src != 0);
    rep->bytes = atomic_load(&r.bytes);
    rep->xattrs = atomic_load(&r.xattrs);
    ar_free(out);
    restore_free(&r);
    return rc;
}
