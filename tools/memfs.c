/* tools/memfs.c - a trivial in-memory FUSE file system: the ceiling that
 * `arbor bench fs` measures arbor against (what FUSE itself costs here).
 *
 * Inodes in one array under one mutex; a directory is a list of (name,
 * inode); a file's bytes are one growing buffer. It answers what the
 * benchmark does (lookup, getattr, setattr of size, mkdir, create, open,
 * read, write, release, readdir, rename, unlink, rmdir) with the same
 * kernel cache timeouts and read-ahead as arbor's mount, and nothing else.
 * Thread: libfuse's worker threads; the mutex guards everything. */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "client.h"
#include "meta.h"

#define MEMFS_INODES_MAX (1u << 22)

struct mem_dirent {
    char *name;
    fuse_ino_t ino;
};

struct mem_inode {
    mode_t mode;            /* 0: free */
    uint32_t nlink;
    uint8_t *data;
    size_t size;
    size_t cap;
    struct mem_dirent *entries;
    uint32_t entry_count;
    uint32_t entry_cap;
    uint32_t *slots;        /* a directory's names hashed: entry index + 1, or SLOT_GONE */
    uint32_t slot_cap;      /* a power of two, over twice the entries and the gone */
    uint32_t slots_gone;
};

struct memfs {
    pthread_mutex_t mu;
    struct mem_inode *inodes;
    fuse_ino_t next;
    double timeout;
    struct fuse_session *se;
    pthread_t thread;
    char mountpoint[512];
};

static struct memfs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static void stat_of(fuse_ino_t ino, const struct mem_inode *n, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_mode = n->mode;
    st->st_nlink = n->nlink;
    st->st_size = (off_t)n->size;
    st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
}

/* ---- a directory's names: an array, and an open-addressing index of it
 * (a ceiling must not scan a directory of 20,000 names for each lookup) */
#define SLOT_EMPTY 0u
#define SLOT_GONE  UINT32_MAX

static uint32_t name_hash(const char *name)
{
    uint32_t h = 2166136261u;

    for (const char *p = name; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    return h;
}

/* The slot holding name, or NULL. Bounded: a table is never over half full. */
static uint32_t *slot_of(const struct mem_inode *dir, const char *name)
{
    uint32_t mask = dir->slot_cap - 1;

    if (dir->slot_cap == 0)
        return NULL; /* no name added yet */
    for (uint32_t i = name_hash(name) & mask;; i = (i + 1) & mask) {
        uint32_t v = dir->slots[i];
        if (v == SLOT_EMPTY)
            return NULL;
        if (v != SLOT_GONE && strcmp(dir->entries[v - 1].name, name) == 0)
            return &dir->slots[i];
    }
}

static int find(const struct mem_inode *dir, const char *name, uint32_t *at)
{
    const uint32_t *slot = slot_of(dir, name);

    if (slot == NULL)
        return -ENOENT;
    *at = *slot - 1;
    return 0;
}

/* Put entry at in the index; there is room (index_reserve). */
static void index_put(struct mem_inode *dir, uint32_t at)
{
    uint32_t mask = dir->slot_cap - 1;
    uint32_t i = name_hash(dir->entries[at].name) & mask;

    while (dir->slots[i] != SLOT_EMPTY && dir->slots[i] != SLOT_GONE) {
        i = (i + 1) & mask;
    }
    dir->slots_gone -= dir->slots[i] == SLOT_GONE;
    dir->slots[i] = at + 1;
}

/* Room in the index for one more name: rebuilt, larger, past half full. */
static int index_reserve(struct mem_inode *dir)
{
    if ((dir->entry_count + 1 + dir->slots_gone) * 2 < dir->slot_cap)
        return 0;
    uint32_t cap = 16;
    while (cap < (dir->entry_count + 1) * 4) {
        cap *= 2;
    }
    uint32_t *slots = ar_calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return -ENOMEM;
    ar_free(dir->slots);
    dir->slots = slots;
    dir->slot_cap = cap;
    dir->slots_gone = 0;
    for (uint32_t k = 0; k < dir->entry_count; k++) {
        index_put(dir, k);
    }
    return 0;
}

/* Take entry at out of the directory: the last entry moves into its place. */
static void entry_remove(struct mem_inode *dir, uint32_t at)
{
    uint32_t last = dir->entry_count - 1;

    *slot_of(dir, dir->entries[at].name) = SLOT_GONE;
    dir->slots_gone++;
    if (at != last)
        *slot_of(dir, dir->entries[last].name) = at + 1;
    dir->entries[at] = dir->entries[last];
    dir->entry_count--;
}

static void reply_entry(fuse_req_t req, struct memfs *fs, fuse_ino_t ino)
{
    struct fuse_entry_param e = {.ino = ino, .attr_timeout = fs->timeout,
                                 .entry_timeout = fs->timeout};

    stat_of(ino, &fs->inodes[ino], &e.attr);
    fuse_reply_entry(req, &e);
}

static void m_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct memfs *fs = fs_of(req);
    uint32_t at;

    pthread_mutex_lock(&fs->mu);
    if (find(&fs->inodes[parent], name, &at) != 0) {
        pthread_mutex_unlock(&fs->mu);
        fuse_reply_err(req, ENOENT);
        return;
    }
    reply_entry(req, fs, fs->inodes[parent].entries[at].ino);
    pthread_mutex_unlock(&fs->mu);
}

static void m_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct memfs *fs = fs_of(req);
    struct stat st;

    (void)fi;
    pthread_mutex_lock(&fs->mu);
    stat_of(ino, &fs->inodes[ino], &st);
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_attr(req, &st, fs->timeout);
}

static void m_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi)
{
    struct memfs *fs = fs_of(req);
    struct stat st;

    (void)fi;
    pthread_mutex_lock(&fs->mu);
    struct mem_inode *n = &fs->inodes[ino];
    if ((to_set & FUSE_SET_ATTR_SIZE) && (size_t)attr->st_size <= n->cap)
        n->size = (size_t)attr->st_size; /* the benchmark only shrinks */
    if (to_set & FUSE_SET_ATTR_MODE)
        n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
    stat_of(ino, n, &st);
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_attr(req, &st, fs->timeout);
}

/* Add a name in parent for a new inode of mode; under the mutex. */
static int make(struct memfs *fs, fuse_ino_t parent, const char *name, mode_t mode, fuse_ino_t *out)
{
    struct mem_inode *dir = &fs->inodes[parent];
    uint32_t at;

    if (find(dir, name, &at) == 0)
        return -EEXIST;
    if (fs->next == MEMFS_INODES_MAX)
        return -ENOSPC;
    if (index_reserve(dir) != 0)
        return -ENOMEM;
    if (dir->entry_count == dir->entry_cap) {
        uint32_t cap = dir->entry_cap ? dir->entry_cap * 2 : 16;
        struct mem_dirent *v = ar_realloc(dir->entries, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        dir->entries = v;
        dir->entry_cap = cap;
    }
    char *copy = ar_malloc(strlen(name) + 1);
    if (copy != NULL)
        memcpy(copy, name, strlen(name) + 1);
    if (copy == NULL)
        return -ENOMEM;
    fuse_ino_t ino = fs->next++;
    fs->inodes[ino] = (struct mem_inode){.mode = mode, .nlink = S_ISDIR(mode) ? 2 : 1};
    dir->entries[dir->entry_count++] = (struct mem_dirent){.name = copy, .ino = ino};
    index_put(dir, dir->entry_count - 1);
    *out = ino;
    return 0;
}

static void m_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct memfs *fs = fs_of(req);
    fuse_ino_t ino;

    pthread_mutex_lock(&fs->mu);
    int rc = make(fs, parent, name, S_IFDIR | (mode & 07777), &ino);
    if (rc == 0)
        reply_entry(req, fs, ino);
    pthread_mutex_unlock(&fs->mu);
    if (rc != 0)
        fuse_reply_err(req, -rc);
}

static void m_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     struct fuse_file_info *fi)
{
    struct memfs *fs = fs_of(req);
    fuse_ino_t ino;

    pthread_mutex_lock(&fs->mu);
    int rc = make(fs, parent, name, S_IFREG | (mode & 07777), &ino);
    struct fuse_entry_param e = {.ino = ino, .attr_timeout = fs->timeout,
                                 .entry_timeout = fs->timeout};
    if (rc == 0)
        stat_of(ino, &fs->inodes[ino], &e.attr);
    pthread_mutex_unlock(&fs->mu);
    if (rc != 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_create(req, &e, fi);
}

static void m_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fuse_reply_open(req, fi);
}

static void m_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    struct memfs *fs = fs_of(req);

    (void)fi;
    pthread_mutex_lock(&fs->mu);
    struct mem_inode *n = &fs->inodes[ino];
    size_t from = (size_t)off < n->size ? (size_t)off : n->size;
    size_t len = n->size - from < size ? n->size - from : size;
    fuse_reply_buf(req, (const char *)n->data + from, len);
    pthread_mutex_unlock(&fs->mu);
}

static void m_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct memfs *fs = fs_of(req);
    size_t end = (size_t)off + size;

    (void)fi;
    pthread_mutex_lock(&fs->mu);
    struct mem_inode *n = &fs->inodes[ino];
    if (end > n->cap) {
        size_t cap = n->cap ? n->cap : 4096;
        while (cap < end) {
            cap *= 2;
        }
        uint8_t *p = ar_realloc(n->data, cap);
        if (p == NULL) {
            pthread_mutex_unlock(&fs->mu);
            fuse_reply_err(req, ENOSPC);
            return;
        }
        memset(p + n->cap, 0, cap - n->cap);
        n->data = p;
        n->cap = cap;
    }
    memcpy(n->data + off, buf, size);
    if (end > n->size)
        n->size = end;
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_write(req, size);
}

static void m_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    struct memfs *fs = fs_of(req);
    char *buf = ar_malloc(size);
    size_t used = 0;

    (void)fi;
    if (buf == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_mutex_lock(&fs->mu);
    struct mem_inode *dir = &fs->inodes[ino];
    for (uint32_t i = (uint32_t)off; i < dir->entry_count; i++) {
        struct stat st = {.st_ino = dir->entries[i].ino,
                          .st_mode = fs->inodes[dir->entries[i].ino].mode};
        size_t need = fuse_add_direntry(req, buf + used, size - used, dir->entries[i].name, &st,
                                        (off_t)i + 1);
        if (need > size - used)
            break;
        used += need;
    }
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_buf(req, buf, used);
    ar_free(buf);
}

static void drop(struct memfs *fs, fuse_ino_t parent, const char *name, bool is_dir, int *err)
{
    struct mem_inode *dir = &fs->inodes[parent];
    uint32_t at;

    if (find(dir, name, &at) != 0) {
        *err = ENOENT;
        return;
    }
    struct mem_inode *n = &fs->inodes[dir->entries[at].ino];
    if (is_dir != S_ISDIR(n->mode) || (is_dir && n->entry_count > 0)) {
        *err = is_dir ? (S_ISDIR(n->mode) ? ENOTEMPTY : ENOTDIR) : EISDIR;
        return;
    }
    char *gone = dir->entries[at].name;
    entry_remove(dir, at);
    ar_free(gone);
    ar_free(n->data);
    ar_free(n->entries);
    ar_free(n->slots);
    *n = (struct mem_inode){.mode = 0}; /* numbers are not reused: the kernel may hold them */
    *err = 0;
}

static void m_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct memfs *fs = fs_of(req);
    int err;

    pthread_mutex_lock(&fs->mu);
    drop(fs, parent, name, false, &err);
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_err(req, err);
}

static void m_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct memfs *fs = fs_of(req);
    int err;

    pthread_mutex_lock(&fs->mu);
    drop(fs, parent, name, true, &err);
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_err(req, err);
}

static void m_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                     const char *newname, unsigned int flags)
{
    struct memfs *fs = fs_of(req);
    uint32_t at;
    uint32_t to;
    int err = 0;

    pthread_mutex_lock(&fs->mu);
    struct mem_inode *from = &fs->inodes[parent];
    struct mem_inode *dest = &fs->inodes[newparent];
    if (flags != 0 || find(from, name, &at) != 0) {
        err = flags != 0 ? EINVAL : ENOENT;
    } else if (find(dest, newname, &to) == 0) {
        err = EEXIST; /* the benchmark renames to new names only */
    } else if (index_reserve(dest) != 0) {
        err = ENOMEM;
    } else if (dest->entry_count == dest->entry_cap) {
        err = EMLINK;
        uint32_t cap = dest->entry_cap ? dest->entry_cap * 2 : 16;
        struct mem_dirent *v = ar_realloc(dest->entries, cap * sizeof(*v));
        if (v != NULL) {
            dest->entries = v;
            dest->entry_cap = cap;
            err = 0;
        }
    }
    char *copy = err == 0 ? ar_malloc(strlen(newname) + 1) : NULL;
    if (copy != NULL)
        memcpy(copy, newname, strlen(newname) + 1);
    if (err == 0 && copy != NULL) {
        struct mem_dirent moved = from->entries[at];
        entry_remove(from, at);
        ar_free(moved.name);
        moved.name = copy;
        dest->entries[dest->entry_count++] = moved;
        index_put(dest, dest->entry_count - 1);
    } else if (err == 0) {
        err = ENOMEM;
    }
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_err(req, err);
}

static const struct fuse_lowlevel_ops memfs_ops = {
    .lookup = m_lookup,
    .getattr = m_getattr,
    .setattr = m_setattr,
    .mkdir = m_mkdir,
    .create = m_create,
    .open = m_open,
    .read = m_read,
    .write = m_write,
    .readdir = m_readdir,
    .unlink = m_unlink,
    .rmdir = m_rmdir,
    .rename = m_rename,
};

static void *memfs_loop(void *arg)
{
    struct memfs *fs = arg;
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();

    fuse_loop_cfg_set_max_threads(cfg, 16);
    fuse_session_loop_mt(fs->se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return NULL;
}

struct memfs *memfs_mount(const char *mountpoint, double timeout)
{
    struct memfs *fs = ar_calloc(1, sizeof(*fs));
    char *argv[] = {"memfs", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(1, argv);

    if (fs == NULL)
        return NULL;
    fs->inodes = ar_calloc(MEMFS_INODES_MAX, sizeof(*fs->inodes));
    pthread_mutex_init(&fs->mu, NULL);
    fs->timeout = timeout;
    fs->next = FUSE_ROOT_ID + 1;
    snprintf(fs->mountpoint, sizeof(fs->mountpoint), "%s", mountpoint);
    if (fs->inodes != NULL)
        fs->inodes[FUSE_ROOT_ID] = (struct mem_inode){.mode = S_IFDIR | 0777, .nlink = 2};
    fs->se = fs->inodes != NULL ? fuse_session_new(&args, &memfs_ops, sizeof(memfs_ops), fs)
                                : NULL;
    fuse_opt_free_args(&args);
    /* parallel lookups and read-ahead as arbor's mount has them by default:
     * the ceiling is FUSE's */
    bool is_mounted = fs->se != NULL && fuse_session_mount(fs->se, mountpoint) == 0;
    if (!is_mounted || ar_fuse_session_io(fs->se, mountpoint, AR_READ_AHEAD_KB_DEFAULT) != 0 ||
        pthread_create(&fs->thread, NULL, memfs_loop, fs) != 0) {
        if (is_mounted)
            fuse_session_unmount(fs->se);
        if (fs->se != NULL)
            fuse_session_destroy(fs->se);
        ar_free(fs->inodes);
        ar_free(fs);
        return NULL;
    }
    return fs;
}

void memfs_unmount(struct memfs *fs)
{
    if (fs == NULL)
        return;
    fuse_session_exit(fs->se);
    fuse_session_unmount(fs->se); /* the loop's read ends with ENODEV */
    pthread_join(fs->thread, NULL);
    fuse_session_destroy(fs->se);
    for (fuse_ino_t i = 0; i < fs->next; i++) {
        ar_free(fs->inodes[i].data);
        for (uint32_t k = 0; k < fs->inodes[i].entry_count; k++) {
            ar_free(fs->inodes[i].entries[k].name);
        }
        ar_free(fs->inodes[i].entries);
        ar_free(fs->inodes[i].slots);
    }
    ar_free(fs->inodes);
    pthread_mutex_destroy(&fs->mu);
    ar_free(fs);
}
