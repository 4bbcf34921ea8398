/* client/cache.c - the disk block cache (internal.h).
 *
 * One file a block, named by the block and the CRC32C of its bytes
 * ("NAME.1a2b3c4d"), holding exactly those bytes: the kernel may read a
 * copy as a file's whole contents (FUSE passthrough). In memory: an entry a file, in a hash by name and a
 * list by last use (head: the most recent). Files are written to a
 * temporary name and renamed, so a crash leaves whole copies or none.
 * The cache holds at most its bound, and never makes its file system less
 * than a tenth free: past that, a new block takes the place of older ones.
 * A big block a writer stored is kept later, by a thread of the cache's
 * own (block_cache_put_later), so that the writer's commit does not wait
 * for a second copy on disk; at most CACHE_LATER_MAX bytes wait, past
 * that a block is not kept.
 * Thread: any; the mutex guards the index and the queue, never a file
 * operation. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"
#include "meta.h"
#include "objstore.h"

#define BUCKETS   65536u
#define NAME_MAX_ 48u
#define CACHE_FREE_MIN_PCT 10u /* of its file system: below, the cache stops growing */
#define CACHE_LATER_MAX    (64u << 20) /* bytes waiting to be kept */

struct later {
    struct later *next;
    char name[NAME_MAX_];
    uint32_t len;
    uint8_t bytes[];
};

struct entry {
    char name[NAME_MAX_];
    uint64_t bytes;            /* the file's, the block's */
    uint32_t crc;              /* CRC32C of the bytes, also in the file's name */
    bool is_checked;           /* its file held them when this process wrote or read it */
    struct entry *newer;       /* toward the head */
    struct entry *older;
    struct entry *chain;       /* the hash bucket */
};

struct block_cache {
    char dir[512];
    uint64_t max_bytes;
    uint64_t free_min;         /* bytes of its file system it leaves free */
    pthread_mutex_t mu;
    pthread_mutex_t remake_mu;  /* one thread at a time makes a removed directory again */
    struct entry *buckets[BUCKETS];
    struct entry *head;        /* the most recently used */
    struct entry *tail;
    struct block_cache_stats stats;
    uint64_t tmp_counter;
    struct later *later_head;  /* under mu: blocks the writer keeps next */
    struct later *later_tail;
    uint64_t later_bytes;      /* under mu */
    pthread_cond_t later_cond; /* with mu: a block queued, or the close */
    bool has_writer;           /* under mu: the writer thread runs */
    bool has_no_writer;        /* under mu: it could not be started */
    bool is_closing;           /* under mu */
    pthread_t writer;
};

static uint32_t bucket_of(const char *name)
{
    uint32_t h = 2166136261u;

    for (const char *p = name; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    return h % BUCKETS;
}

static struct entry *find(struct block_cache *c, const char *name)
{
    for (struct entry *e = c->buckets[bucket_of(name)]; e != NULL; e = e->chain) {
        if (strcmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

/* The file that holds a block: its name, a dot and its CRC in hex. */
static void path_of(const struct block_cache *c, const char *name, uint32_t crc, char out[600])
{
    snprintf(out, 600, "%s/%s.%08x", c->dir, name, crc);
}

static void unlink_lru(struct block_cache *c, struct entry *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        c->head = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        c->tail = e->newer;
    e->newer = e->older = NULL;
}

static void push_head(struct block_cache *c, struct entry *e)
{
    e->older = c->head;
    e->newer = NULL;
    if (c->head != NULL)
        c->head->newer = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

static void remove_entry(struct block_cache *c, struct entry *e)
{
    struct entry **p = &c->buckets[bucket_of(e->name)];

    while (*p != e) {
        p = &(*p)->chain;
    }
    *p = e->chain;
    unlink_lru(c, e);
    c->stats.bytes -= e->bytes;
}

/* Under the mutex: take the oldest entries off until at most limit bytes
 * are held; their files' names go to victims (the caller unlinks them,
 * unlocked). */
static uint32_t shrink(struct block_cache *c, uint64_t limit, char (*victims)[NAME_MAX_],
                       uint32_t cap)
{
    uint32_t n = 0;

    while (c->stats.bytes > limit && c->tail != NULL && n < cap) {
        struct entry *e = c->tail;
        snprintf(victims[n++], NAME_MAX_, "%s.%08x", e->name, e->crc);
        remove_entry(c, e);
        ar_free(e);
        c->stats.evicted++;
    }
    return n;
}

static void unlink_all(struct block_cache *c, char (*victims)[NAME_MAX_], uint32_t n)
{
    char path[600];

    for (uint32_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", c->dir, victims[i]);
        unlink(path);
    }
}

/* Add name (bytes on disk) as the most recent; the caller holds the mutex. */
static void add(struct block_cache *c, const char *name, uint64_t bytes, uint32_t crc)
{
    struct entry *e = find(c, name);

    if (e != NULL) {
        unlink_lru(c, e);
        push_head(c, e);
        return;
    }
    e = ar_calloc(1, sizeof(*e));
    if (e == NULL)
        return; /* the file stays unindexed: it is found again at the next open */
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->bytes = bytes;
    e->crc = crc;
    uint32_t b = bucket_of(name);
    e->chain = c->buckets[b];
    c->buckets[b] = e;
    push_head(c, e);
    c->stats.bytes += bytes;
}

struct found {
    char name[NAME_MAX_];
    uint64_t bytes;
    uint32_t crc;
    int64_t mtime_ns;
};

/* Split a cache file's name into the block's name and its CRC: false for
 * a file of another kind (or of the older layout, its CRC after its bytes). */
static bool name_parse(const char *file, char name[NAME_MAX_], uint32_t *crc)
{
    const char *dot = strrchr(file, '.');
    uint32_t v = 0;

    if (dot == NULL || dot == file || strlen(dot + 1) != 8 || (size_t)(dot - file) >= NAME_MAX_)
        return false;
    /* exactly as path_of() writes it: 8 lowercase hex digits */
    for (const char *p = dot + 1; *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
        v = v << 4 | (uint32_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
    }
    memcpy(name, file, (size_t)(dot - file));
    name[dot - file] = '\0';
    *crc = v;
    return true;
}

static int by_mtime(const void *a, const void *b)
{
    const struct found *x = a;
    const struct found *y = b;

    return (x->mtime_ns > y->mtime_ns) - (x->mtime_ns < y->mtime_ns);
}

/* The copies the directory d holds into *found (count of them), oldest
 * first; what a crash cut short, or copies of an older layout, removed. */
static void scan_copies(DIR *d, struct found **found, size_t *count)
{
    size_t cap = 0;
    struct dirent *de;

    /* bounded by the directory's entries */
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        char name[NAME_MAX_];
        uint32_t crc = 0;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (de->d_name[0] == '.' || !name_parse(de->d_name, name, &crc)) {
            unlinkat(dirfd(d), de->d_name, 0); /* ".tmp.", or the older layout */
            continue;
        }
        if (*count == cap) {
            cap = cap ? cap * 2 : 256;
            struct found *v = ar_realloc(*found, cap * sizeof(*v));
            if (v == NULL)
                break; /* the rest go uncounted: evicted by nothing, overwritten when put */
            *found = v;
        }
        (*found)[*count] = (struct found){.bytes = (uint64_t)st.st_size, .crc = crc,
                                          .mtime_ns = st.st_mtim.tv_sec * 1000000000ll +
                                                      st.st_mtim.tv_nsec};
        snprintf((*found)[*count].name, NAME_MAX_, "%s", name);
        (*count)++;
    }
    if (*count > 0)
        qsort(*found, *count, sizeof(**found), by_mtime);
}

int block_cache_open(const char *dir, uint64_t max_bytes, uint64_t free_min,
                     struct block_cache **out, char *errmsg)
{
    struct block_cache *c = ar_calloc(1, sizeof(*c));
    struct found *found = NULL;
    size_t count = 0;

    if (c == NULL)
        return -ENOMEM;
    if (strlen(dir) >= sizeof(c->dir)) {
        ar_free(c);
        return ar_errorf(errmsg, -ENAMETOOLONG, "the cache directory's path is too long: "
                         "%.100s...", dir);
    }
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    c->max_bytes = max_bytes;
    c->free_min = free_min;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->remake_mu, NULL);
    pthread_cond_init(&c->later_cond, NULL);
    int rc = ar_mkdirs(dir, 0700);
    if (rc != 0) {
        ar_errorf(errmsg, rc, "cannot make the cache directory %s: %s", dir, strerror(-rc));
        block_cache_close(c);
        return rc;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        rc = ar_errorf(errmsg, -errno, "cannot read the cache directory %s: %s", dir,
                       strerror(errno));
        block_cache_close(c);
        return rc;
    }
    scan_copies(d, &found, &count);
    closedir(d);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < count; i++) {
        add(c, found[i].name, found[i].bytes, found[i].crc); /* oldest first: newest at the head */
    }
    pthread_mutex_unlock(&c->mu);
    ar_free(found);
    /* over the bound (it was lowered): drop the oldest */
    char victims[64][NAME_MAX_];
    uint32_t n;
    do {
        pthread_mutex_lock(&c->mu);
        n = shrink(c, c->max_bytes, victims, 64);
        pthread_mutex_unlock(&c->mu);
        unlink_all(c, victims, n);
    } while (n == 64);
    *out = c;
    return 0;
}

void block_cache_close(struct block_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->is_closing = true;
    bool has_writer = c->has_writer;
    pthread_cond_signal(&c->later_cond);
    pthread_mutex_unlock(&c->mu);
    if (has_writer)
        pthread_join(c->writer, NULL); /* it keeps what waits first */
    for (uint32_t b = 0; b < BUCKETS; b++) {
        struct entry *e = c->buckets[b];
        while (e != NULL) {
            struct entry *next = e->chain;
            ar_free(e);
            e = next;
        }
    }
    pthread_cond_destroy(&c->later_cond);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->remake_mu);
    ar_free(c);
}

/* Under the mutex: the entry of name, made the most recent (a hit), or
 * NULL (a miss). */
static struct entry *touch(struct block_cache *c, const char *name)
{
    struct entry *e = find(c, name);

    if (e != NULL) {
        unlink_lru(c, e);
        push_head(c, e);
    } else {
        c->stats.misses++;
    }
    return e;
}

/* Forget a copy that failed its check, or whose file is gone, and remove
 * its file. */
static void drop_copy(struct block_cache *c, const char *name, uint32_t crc, bool is_gone)
{
    char path[600];

    pthread_mutex_lock(&c->mu);
    struct entry *e = find(c, name);
    if (e != NULL && e->crc == crc) {
        remove_entry(c, e);
        ar_free(e);
        if (is_gone)
            c->stats.gone++;
        else
            c->stats.damaged++;
    }
    pthread_mutex_unlock(&c->mu);
    path_of(c, name, crc, path);
    unlink(path);
}

int block_cache_read(struct block_cache *c, const char *name, uint32_t off, uint32_t len,
                     void *dst)
{
    char path[600];

    pthread_mutex_lock(&c->mu);
    struct entry *e = touch(c, name);
    uint64_t bytes = e != NULL ? e->bytes : 0;
    uint32_t crc = e != NULL ? e->crc : 0;
    pthread_mutex_unlock(&c->mu);
    if (e == NULL || (uint64_t)off + len > bytes)
        return -ENOENT;
    path_of(c, name, crc, path);
    /* a whole block (every caller's read) lands in dst at once; on a bad
     * check dst holds garbage, which the caller then reads over */
    bool is_whole = off == 0 && (uint64_t)len == bytes;
    uint8_t *all = is_whole ? dst : ar_malloc(bytes > 0 ? bytes : 1);
    int fd = all != NULL ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    /* out of memory or descriptors: a miss, the copy kept */
    bool is_gone = all != NULL && fd < 0 && errno == ENOENT;
    bool is_damaged = all != NULL && fd >= 0;
    bool is_ok = fd >= 0 && pread(fd, all, bytes, 0) == (ssize_t)bytes &&
                 obj_crc32c(0, all, bytes) == crc;
    if (fd >= 0)
        close(fd);
    if (is_ok && !is_whole)
        memcpy(dst, all + off, len);
    if (!is_whole)
        ar_free(all);
    if (!is_ok) {
        if (is_damaged || is_gone)
            drop_copy(c, name, crc, is_gone); /* read from the store again */
        return -ENOENT;
    }
    pthread_mutex_lock(&c->mu);
    c->stats.hits++;
    if ((e = find(c, name)) != NULL && e->crc == crc)
        e->is_checked = true;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int block_cache_open_copy(struct block_cache *c, const char *name, uint32_t len)
{
    char path[600];
    struct stat st;

    /* a miss is counted by the read that follows it */
    pthread_mutex_lock(&c->mu);
    struct entry *e = find(c, name);
    uint64_t bytes = e != NULL ? e->bytes : 0;
    uint32_t crc = e != NULL ? e->crc : 0;
    bool is_checked = e != NULL && e->is_checked;
    pthread_mutex_unlock(&c->mu);
    if (e == NULL || bytes != len)
        return -ENOENT;
    path_of(c, name, crc, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        if (rc == -ENOENT)
            drop_copy(c, name, crc, true); /* gone from under the cache */
        return rc;
    }
    bool is_ok = fstat(fd, &st) == 0 && (uint64_t)st.st_size == bytes;
    uint8_t *all = is_ok && !is_checked ? ar_malloc(bytes > 0 ? bytes : 1) : NULL;
    if (is_ok && !is_checked && all == NULL) {
        close(fd);
        return -ENOMEM;
    }
    if (all != NULL) {
        /* a copy this process did not write is checked once, as a read is */
        is_ok = pread(fd, all, bytes, 0) == (ssize_t)bytes && obj_crc32c(0, all, bytes) == crc;
        ar_free(all);
    }
    if (!is_ok) {
        close(fd);
        drop_copy(c, name, crc, false);
        return -ENOENT;
    }
    pthread_mutex_lock(&c->mu);
    if ((e = touch(c, name)) != NULL && e->crc == crc) {
        e->is_checked = true;
        c->stats.hits++;
    }
    pthread_mutex_unlock(&c->mu);
    return fd;
}

/* Whether the cache's file system has less than CACHE_FREE_MIN_PCT of its
 * space free, or less than c->free_min: the cache then grows no further,
 * whatever its bound. */
static bool disk_is_low(const struct block_cache *c)
{
    struct statvfs st;

    if (statvfs(c->dir, &st) != 0 || st.f_blocks == 0)
        return false;
    uint64_t free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
    return st.f_bavail < st.f_blocks / 100 * CACHE_FREE_MIN_PCT ||
           free_bytes < c->free_min;
}

/* The cache's directory was removed while in use (a clean-up of ~/.cache,
 * an rm -rf): forget every copy, all gone with it, and make it again
 * (mkdir -p). True if it is there again. Puts that find it gone at once
 * come here one at a time: the first forgets and makes it; the others find
 * it there and only try again, so no copy put since is forgotten (none can
 * be put while it is missing, and the index is emptied before it is made). */
static bool dir_remake(struct block_cache *c)
{
    struct stat st;

    AR_ASSERT(c != NULL);
    pthread_mutex_lock(&c->remake_mu);
    if (stat(c->dir, &st) == 0) {
        pthread_mutex_unlock(&c->remake_mu);
        return S_ISDIR(st.st_mode);
    }
    uint64_t forgotten = 0;
    pthread_mutex_lock(&c->mu);
    while (c->tail != NULL) {
        struct entry *e = c->tail;
        remove_entry(c, e);
        ar_free(e);
        forgotten++;
    }
    c->stats.gone += forgotten;
    c->stats.remade++;
    pthread_mutex_unlock(&c->mu);
    bool is_made = ar_mkdirs(c->dir, 0700) == 0;
    pthread_mutex_unlock(&c->remake_mu);
    ar_log(AR_LOG_WARN, "the disk cache's directory %s was removed while mounted: %s; %" PRIu64
           " of its copies went with it (read from the store instead)", c->dir,
           is_made ? "made it again" : "cannot make it again, nothing is cached", forgotten);
    return is_made;
}

void block_cache_put(struct block_cache *c, const char *name, const void *data, uint32_t len)
{
    char tmp[600];
    char path[600];
    char victims[64][NAME_MAX_];
    uint32_t crc = obj_crc32c(0, data, len);
    uint64_t bytes = len;
    bool is_low = disk_is_low(c);
    uint32_t k = 0;

    if (bytes > c->max_bytes)
        return;
    pthread_mutex_lock(&c->mu);
    bool is_there = find(c, name) != NULL;
    /* on a disk short of space a block only takes the place of older ones */
    bool has_room = !is_low || c->stats.bytes >= bytes;
    if (!is_there && is_low && has_room) {
        k = shrink(c, c->stats.bytes - bytes, victims, AR_ARRAY_LEN(victims));
        c->stats.crowded++;
    }
    uint64_t n = ++c->tmp_counter;
    pthread_mutex_unlock(&c->mu);
    unlink_all(c, victims, k);
    if (is_there || !has_room)
        return;
    snprintf(tmp, sizeof(tmp), "%s/.tmp.%llu.%d", c->dir, (unsigned long long)n, (int)getpid());
    path_of(c, name, crc, path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT && dir_remake(c))
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool is_ok = fd >= 0 && write(fd, data, len) == (ssize_t)len;
    if (fd >= 0)
        close(fd);
    if (!is_ok || rename(tmp, path) != 0) {
        unlink(tmp); /* a full disk: the block is simply not cached */
        return;
    }
    pthread_mutex_lock(&c->mu);
    add(c, name, bytes, crc);
    struct entry *e = find(c, name);
    if (e != NULL && e->crc == crc)
        e->is_checked = true; /* its bytes are the ones just written */
    k = shrink(c, c->max_bytes, victims, AR_ARRAY_LEN(victims));
    pthread_mutex_unlock(&c->mu);
    unlink_all(c, victims, k);
}

/* The writer: keeps the queued blocks, oldest first, until the close and
 * the queue is empty. */
static void *writer_main(void *arg)
{
    struct block_cache *c = arg;

    pthread_mutex_lock(&c->mu);
    /* bounded: each turn keeps a block or sleeps until one comes */
    for (;;) {
        struct later *l = c->later_head;
        if (l == NULL && c->is_closing)
            break;
        if (l == NULL) {
            pthread_cond_wait(&c->later_cond, &c->mu);
            continue;
        }
        c->later_head = l->next;
        if (c->later_head == NULL)
            c->later_tail = NULL;
        pthread_mutex_unlock(&c->mu);
        block_cache_put(c, l->name, l->bytes, l->len);
        pthread_mutex_lock(&c->mu);
        c->later_bytes -= l->len;
        ar_free(l);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void block_cache_put_later(struct block_cache *c, const char *name, const void *data,
                           uint32_t len)
{
    if (len < BLOCK_CACHE_LATER_MIN) {
        block_cache_put(c, name, data, len);
        return;
    }
    struct later *l = ar_malloc(sizeof(*l) + len);
    if (l == NULL) {
        pthread_mutex_lock(&c->mu);
        c->stats.not_kept++;
        pthread_mutex_unlock(&c->mu);
        return;
    }
    l->next = NULL;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->len = len;
    memcpy(l->bytes, data, len);
    pthread_mutex_lock(&c->mu);
    if (!c->has_writer && !c->is_closing && !c->has_no_writer) {
        c->has_writer = pthread_create(&c->writer, NULL, writer_main, c) == 0;
        c->has_no_writer = !c->has_writer;
    }
    if (!c->has_writer) { /* no thread for it: kept here and now */
        pthread_mutex_unlock(&c->mu);
        block_cache_put(c, name, data, len);
        ar_free(l);
        return;
    }
    bool is_queued = !c->is_closing && c->later_bytes + len <= CACHE_LATER_MAX;
    if (is_queued) {
        if (c->later_tail != NULL)
            c->later_tail->next = l;
        else
            c->later_head = l;
        c->later_tail = l;
        c->later_bytes += len;
        c->stats.later++;
        pthread_cond_signal(&c->later_cond);
    } else {
        c->stats.not_kept++;
    }
    pthread_mutex_unlock(&c->mu);
    if (!is_queued)
        ar_free(l);
}

void block_cache_stats(struct block_cache *c, struct block_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    pthread_mutex_unlock(&c->mu);
}
