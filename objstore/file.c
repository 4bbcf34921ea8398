/* objstore/file.c - the file:///DIR backend, the embedded default: one file a
 * key, below DIR.
 *
 * Atomic put: write DIR/.tmp/<pid>.<n>, fdatasync, rename into place, fsync
 * the directory. A reader therefore sees a whole object or none, even if the
 * writer is killed (the stale temp file is swept at the next open after an
 * hour). Keys never begin a segment with '.', so .tmp can never be a key.
 *
 * Containment: every path is resolved with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) below the directory's fd, and directories are made one
 * segment at a time with O_NOFOLLOW, so neither a key nor a symlink planted in
 * DIR can make us read or write outside it.
 *
 * Durability: a failed fsync makes the backend refuse every later put (style
 * §3: never retry an fsync; the page cache may have dropped the data).
 * A put that would leave the disk under OBJ_FILE_RESERVE_BYTES free is -ENOSPC.
 *
 * Reads: at most `readers` (URL parameter, default 8) read a file at once;
 * more callers wait. Cold reads of many files at once slow the disk down
 * (measured: 4 readers 3.6 GB/s, 32 readers 2.2 GB/s; docs/benchmarks.md).
 * Thread: any; no shared mutable state but two atomics. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define FILE_TMP_DIR           ".tmp"
#define FILE_TMP_STALE_SEC     3600     /* older temp files are from dead writers */
#define FILE_TMP_SWEEP_MAX     100000u  /* entries looked at by one sweep */
#define FILE_PUT_ATTEMPTS      10u      /* a racing delete may remove the parent dir */
#define FILE_TMP_ATTEMPTS      8u       /* fresh temp names tried before giving up */
#define FILE_EINTR_MAX         1000u    /* retries of a call a signal interrupted */
#define FILE_DIR_ENTRIES_MAX   (1u << 20) /* entries of one directory a listing sorts */
#define FILE_READAHEAD_MIN_BYTES (256u << 10) /* reads larger than the kernel's window */
#define FILE_READERS_DEFAULT   8u       /* files read at once; see the file comment */

struct file_backend {
    struct obj__backend base;
    int root_fd;           /* O_DIRECTORY fd of DIR, owned */
    int tmp_fd;            /* O_DIRECTORY fd of DIR/.tmp, resolved safely once; owned */
    char *root;            /* DIR, for messages */
    atomic_uint tmp_seq;   /* makes temp names unique inside this process */
    atomic_bool is_failed; /* a sync failed: refuse puts */
    sem_t readers;         /* free read slots */
};

static struct file_backend *file_of(struct obj__backend *b)
{
    return OBJ_CONTAINER_OF(b, struct file_backend, base);
}

static int open_beneath(int dir_fd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof(how));
    return fd < 0 ? -errno : (int)fd;
}

/* Split key into its parent directory ("." at the top) and base name. */
static void key_split(const char *key, char dir[OBJ_KEY_BYTES_MAX + 1], const char **base)
{
    const char *slash = strrchr(key, '/');

    if (slash == NULL) {
        memcpy(dir, ".", 2);
        *base = key;
        return;
    }
    memcpy(dir, key, (size_t)(slash - key));
    dir[slash - key] = '\0';
    *base = slash + 1;
}

/* Make every directory of key's parent path, a segment at a time without
 * following links; fsync each parent that gained an entry. */
static int file_mkdirs(struct file_backend *fb, const char *key, char *errmsg)
{
    char seg[OBJ_SEGMENT_BYTES_MAX + 1];
    int dir_fd = dup(fb->root_fd);
    const char *p = key;
    const char *slash;
    int rc = 0;

    if (dir_fd < 0)
        return obj__fail(errmsg, -errno, "dup: %s", strerror(errno));
    for (unsigned depth = 0; (slash = strchr(p, '/')) != NULL; depth++, p = slash + 1) {
        int next_fd;
        OBJ_ASSERT(depth < OBJ_KEY_SEGMENTS_MAX);
        memcpy(seg, p, (size_t)(slash - p));
        seg[slash - p] = '\0';
        if (mkdirat(dir_fd, seg, 0755) != 0 && errno != EEXIST) {
            rc = obj__fail(errmsg, -errno, "mkdir for key %.200s: %s", key, strerror(errno));
            break;
        }
        /* fsync even when it existed: its maker may not have synced it yet */
        if (fsync(dir_fd) != 0) {
            atomic_store(&fb->is_failed, true);
            rc = obj__fail(errmsg, -EIO, "fsync of a directory in %s failed: %s", fb->root,
                           strerror(errno));
            break;
        }
        next_fd = openat(dir_fd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next_fd < 0) {
            rc = obj__fail(errmsg, -errno, "open dir for key %.200s: %s", key, strerror(errno));
            break;
        }
        close(dir_fd);
        dir_fd = next_fd;
    }
    close(dir_fd);
    return rc;
}

static int write_all(int fd, const struct iovec *iov, int iovcnt)
{
    struct iovec local[OBJ_IOV_MAX];
    struct iovec *v = local;
    int n = iovcnt;

    OBJ_ASSERT(iovcnt > 0 && iovcnt <= (int)OBJ_IOV_MAX);
    memcpy(local, iov, sizeof(*iov) * (size_t)iovcnt);
    for (unsigned interrupted = 0; n > 0;) {
        ssize_t w = writev(fd, v, n);
        if (w < 0 && errno == EINTR && ++interrupted < FILE_EINTR_MAX)
            continue;
        if (w < 0)
            return -errno;
        obj__iov_advance(&v, &n, (size_t)w);
    }
    return 0;
}

static int file_put_rename(struct file_backend *fb, const char *tmp, const char *key, char *errmsg)
{
    char dir[OBJ_KEY_BYTES_MAX + 1];
    const char *base;
    int rc = -ENOENT;

    key_split(key, dir, &base);
    for (unsigned attempt = 0; attempt < FILE_PUT_ATTEMPTS && rc == -ENOENT; attempt++) {
        int dir_fd = open_beneath(fb->root_fd, dir, O_RDONLY | O_DIRECTORY);
        if (dir_fd == -ENOENT) {
            /* a delete that empties a directory prunes it, and may do so
             * between making a parent and opening it: make them again */
            rc = file_mkdirs(fb, key, errmsg);
            if (rc != 0 && rc != -ENOENT)
                return rc;
            rc = -ENOENT;
            continue;
        }
        if (dir_fd < 0)
            return obj__fail(errmsg, dir_fd, "open parent of %.200s: %s", key, strerror(-dir_fd));
        rc = renameat(fb->tmp_fd, tmp, dir_fd, base) == 0 ? 0 : -errno;
        if (rc == 0 && fsync(dir_fd) != 0) {
            atomic_store(&fb->is_failed, true);
            rc = obj__fail(errmsg, -EIO, "fsync of the directory of %.200s failed: %s", key,
                           strerror(errno));
        } else if (rc == -EISDIR || rc == -ENOTDIR) {
            rc = obj__fail(errmsg, rc, "key %.200s collides with a directory of other keys (%s)",
                           key, strerror(-rc));
        } else if (rc != 0 && rc != -ENOENT) {
            rc = obj__fail(errmsg, rc, "rename into %.200s: %s", key, strerror(-rc));
        }
        close(dir_fd);
    }
    if (rc == -ENOENT)
        return obj__fail(errmsg, -EIO, "parent of %.200s kept vanishing", key);
    return rc;
}

/* Create a temp file in .tmp with a name no other writer uses: the pid, a
 * counter, and 64 random bits (two handles in one process, or a pid reused
 * after a crash, would collide on the first two). */
static int file_tmp_create(struct file_backend *fb, char tmp[64], char *errmsg)
{
    for (unsigned attempt = 0; attempt < FILE_TMP_ATTEMPTS; attempt++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
            r = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull + attempt;
        snprintf(tmp, 64, "%ld.%u.%016llx", (long)getpid(), atomic_fetch_add(&fb->tmp_seq, 1),
                 (unsigned long long)r);
        int fd = openat(fb->tmp_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                        0644);
        if (fd >= 0 || errno != EEXIST)
            return fd >= 0 ? fd
                           : obj__fail(errmsg, -errno, "create temp file in %s/" FILE_TMP_DIR
                                                       ": %s",
                                       fb->root, strerror(errno));
    }
    return obj__fail(errmsg, -EEXIST, "no free temp file name in %s/" FILE_TMP_DIR, fb->root);
}

static int file_put(struct obj__backend *b, const char *key, const struct iovec *iov, int iovcnt,
                    char *errmsg)
{
    struct file_backend *fb = file_of(b);
    char tmp[64];
    int fd;
    int rc;

    if (atomic_load(&fb->is_failed))
        return obj__fail(errmsg, -EIO, "store %s refuses writes after a failed fsync", fb->root);
    struct statvfs vfs;
    uint64_t size = 0;
    for (int i = 0; i < iovcnt; i++)
        size += iov[i].iov_len;
    if (fstatvfs(fb->tmp_fd, &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < OBJ_FILE_RESERVE_BYTES + size)
        return obj__fail(errmsg, -ENOSPC, "the disk of store %s has %llu MiB free, under the "
                         "%llu MiB it keeps", fb->root,
                         (unsigned long long)((uint64_t)vfs.f_bavail * vfs.f_frsize >> 20),
                         OBJ_FILE_RESERVE_BYTES >> 20);
    fd = file_tmp_create(fb, tmp, errmsg);
    if (fd < 0)
        return fd;
    rc = write_all(fd, iov, iovcnt);
    if (rc != 0) {
        obj__fail(errmsg, rc, "write %.200s: %s", key, strerror(-rc));
    } else if (fdatasync(fd) != 0) {
        atomic_store(&fb->is_failed, true);
        rc = obj__fail(errmsg, -EIO, "fdatasync of %.200s failed: %s", key, strerror(errno));
    }
    if (close(fd) != 0 && rc == 0)
        rc = obj__fail(errmsg, -EIO, "close %.200s: %s", key, strerror(errno));
    if (rc == 0)
        rc = file_put_rename(fb, tmp, key, errmsg);
    if (rc != 0)
        unlinkat(fb->tmp_fd, tmp, 0);
    return rc;
}

static int file_open_key(struct file_backend *fb, const char *key, char *errmsg)
{
    int fd = open_beneath(fb->root_fd, key, O_RDONLY);

    if (fd == -ENOENT || fd == -ENOTDIR)
        return obj__fail(errmsg, -ENOENT, "no object %.200s", key);
    if (fd == -ELOOP || fd == -EXDEV)
        return obj__fail(errmsg, -EACCES, "%.200s crosses a symbolic link", key);
    if (fd < 0)
        return obj__fail(errmsg, fd, "open %.200s: %s", key, strerror(-fd));
    return fd;
}

static int file_get(struct obj__backend *b, const char *key, uint64_t off, uint64_t len,
                    const struct iovec *iov, int iovcnt, size_t *got, char *errmsg)
{
    struct file_backend *fb = file_of(b);
    struct iovec local[OBJ_IOV_MAX];
    size_t cap = obj__iov_bytes(iov, iovcnt);
    size_t want;
    size_t done = 0;
    struct stat st;
    int fd = file_open_key(fb, key, errmsg);

    OBJ_ASSERT(iovcnt > 0 && iovcnt <= (int)OBJ_IOV_MAX);
    if (fd < 0)
        return fd;
    if (fstat(fd, &st) != 0) { /* not "no object": callers may take that as gone */
        int err = -errno;
        close(fd);
        return obj__fail(errmsg, err, "stat of %.200s: %s", key, strerror(-err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return obj__fail(errmsg, -ENOENT, "no object %.200s (a directory of keys)", key);
    }
    want = (uint64_t)st.st_size <= off ? 0 : (size_t)((uint64_t)st.st_size - off);
    if (len == OBJ_RAW_TO_END && want > cap) {
        close(fd);
        return obj__fail(errmsg, -EMSGSIZE, "%.200s holds %zu bytes, more than the buffer", key,
                         want);
    }
    if (len != OBJ_RAW_TO_END && len < want)
        want = (size_t)len;
    want = want < cap ? want : cap;
    for (unsigned interrupted = 0; sem_wait(&fb->readers) != 0;) {
        if (errno != EINTR || ++interrupted == FILE_EINTR_MAX) {
            close(fd);
            return obj__fail(errmsg, -EINTR, "waiting to read %.200s was interrupted", key);
        }
    }
    memcpy(local, iov, sizeof(*iov) * (size_t)iovcnt);
    struct iovec *v = local;
    int n = iovcnt;
    /* Ask for the whole range at once: a cold read of a separate small file
     * otherwise advances one readahead window (128 KiB) at a time. */
    if (want > FILE_READAHEAD_MIN_BYTES)
        posix_fadvise(fd, (off_t)off, (off_t)want, POSIX_FADV_WILLNEED);
    for (unsigned interrupted = 0; done < want && n > 0;) {
        ssize_t r = preadv(fd, v, n, (off_t)(off + done));
        if (r < 0 && errno == EINTR && ++interrupted < FILE_EINTR_MAX)
            continue;
        if (r < 0) {
            int err = -errno;
            sem_post(&fb->readers);
            close(fd);
            return obj__fail(errmsg, err, "read %.200s: %s", key, strerror(-err));
        }
        if (r == 0)
            break; /* the file shrank under us; the frame check will say so */
        done += (size_t)r;
        obj__iov_advance(&v, &n, (size_t)r);
    }
    sem_post(&fb->readers);
    close(fd);
    *got = done < want ? done : want;
    return 0;
}

static int file_head(struct obj__backend *b, const char *key, uint64_t *raw_size, char *errmsg)
{
    struct stat st;
    int fd = file_open_key(file_of(b), key, errmsg);

    if (fd < 0)
        return fd;
    if (fstat(fd, &st) != 0) { /* not "no object": callers may take that as gone */
        int err = -errno;
        close(fd);
        return obj__fail(errmsg, err, "stat of %.200s: %s", key, strerror(-err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return obj__fail(errmsg, -ENOENT, "no object %.200s (a directory of keys)", key);
    }
    close(fd);
    *raw_size = (uint64_t)st.st_size;
    return 0;
}

/* Remove the now-empty directories above key, deepest first; stop at the
 * first that is not empty (or is in use by a racing put, which retries). */
static void file_prune_dirs(struct file_backend *fb, const char *key)
{
    char path[OBJ_KEY_BYTES_MAX + 1];
    char parent[OBJ_KEY_BYTES_MAX + 1];
    const char *base;

    snprintf(path, sizeof(path), "%s", key);
    for (unsigned depth = 0; depth < OBJ_KEY_SEGMENTS_MAX; depth++) {
        char *slash = strrchr(path, '/');
        int dir_fd;
        if (slash == NULL)
            return;
        *slash = '\0'; /* path is now the directory to try */
        key_split(path, parent, &base);
        dir_fd = open_beneath(fb->root_fd, parent, O_RDONLY | O_DIRECTORY);
        if (dir_fd < 0)
            return;
        int rc = unlinkat(dir_fd, base, AT_REMOVEDIR);
        close(dir_fd);
        if (rc != 0)
            return;
    }
}

static int file_del(struct obj__backend *b, const char *key, char *errmsg)
{
    struct file_backend *fb = file_of(b);
    char dir[OBJ_KEY_BYTES_MAX + 1];
    const char *base;
    int dir_fd;
    int rc;

    key_split(key, dir, &base);
    dir_fd = open_beneath(fb->root_fd, dir, O_RDONLY | O_DIRECTORY);
    if (dir_fd == -ENOENT)
        return 0;
    if (dir_fd < 0)
        return obj__fail(errmsg, dir_fd, "open parent of %.200s: %s", key, strerror(-dir_fd));
    rc = unlinkat(dir_fd, base, 0) == 0 ? 0 : -errno;
    close(dir_fd);
    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return obj__fail(errmsg, rc, "unlink %.200s: %s", key, strerror(-rc));
    file_prune_dirs(fb, key);
    return 0;
}

/* ---- listing ---------------------------------------------------------------
 * A depth-first walk that visits each directory's entries sorted with a
 * directory named as "name/": then the walk yields keys in byte order, as S3
 * lists them ("a.b" < "a/b" because '.' < '/'). Subtrees that cannot hold a
 * key matching the prefix or sorting after start_after are skipped. */

struct list_entry {
    char name[OBJ_SEGMENT_BYTES_MAX + 2]; /* with a trailing '/' for a directory */
    bool is_dir;
};

struct list_level {
    struct list_entry *entries;
    size_t count;
    size_t next;
    size_t path_len; /* bytes of the key path up to and including this dir's '/' */
};

static int list_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct list_entry *)a)->name, ((const struct list_entry *)b)->name);
}

/* Whether the directory entry de of d can be a key or a prefix: a file
 * or a directory (*is_dir), not a temp file, not too long a name. */
static bool is_listed(DIR *d, const struct dirent *de, bool *is_dir)
{
    struct stat st;

    if (de->d_name[0] == '.' || strlen(de->d_name) > OBJ_SEGMENT_BYTES_MAX)
        return false;
    if (de->d_type != DT_UNKNOWN) {
        *is_dir = de->d_type == DT_DIR;
        return *is_dir || de->d_type == DT_REG;
    }
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return false;
    *is_dir = S_ISDIR(st.st_mode);
    return *is_dir || S_ISREG(st.st_mode);
}

/* Read and sort the visible entries of directory path ("" for the root). */
static int list_read_dir(struct file_backend *fb, const char *path, struct list_level *lv,
                         char *errmsg)
{
    int fd = open_beneath(fb->root_fd, path[0] != '\0' ? path : ".", O_RDONLY | O_DIRECTORY);
    DIR *d;
    size_t cap = 64;
    struct dirent *de;

    lv->count = 0;
    lv->next = 0;
    if (fd == -ENOENT || fd == -ENOTDIR) {
        lv->entries = NULL;
        return 0;
    }
    if (fd < 0)
        return obj__fail(errmsg, fd, "open dir %.200s: %s", path, strerror(-fd));
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return obj__fail(errmsg, -errno, "fdopendir: %s", strerror(errno));
    }
    lv->entries = obj__malloc(cap * sizeof(*lv->entries));
    if (lv->entries == NULL) {
        closedir(d);
        return obj__fail(errmsg, -ENOMEM, "out of memory listing %.200s", path);
    }
    for (errno = 0; (de = readdir(d)) != NULL; errno = 0) {
        bool is_dir;
        if (!is_listed(d, de, &is_dir))
            continue;
        if (lv->count == FILE_DIR_ENTRIES_MAX) {
            closedir(d);
            obj__free(lv->entries);
            return obj__fail(errmsg, -EOVERFLOW, "directory %.200s has over %u entries", path,
                             FILE_DIR_ENTRIES_MAX);
        }
        if (lv->count == cap) {
            struct list_entry *bigger = obj__malloc(2 * cap * sizeof(*bigger));
            if (bigger == NULL) {
                closedir(d);
                obj__free(lv->entries);
                return obj__fail(errmsg, -ENOMEM, "out of memory listing %.200s", path);
            }
            memcpy(bigger, lv->entries, cap * sizeof(*bigger));
            obj__free(lv->entries);
            lv->entries = bigger;
            cap *= 2;
        }
        snprintf(lv->entries[lv->count].name, sizeof(lv->entries[0].name), "%s%s", de->d_name,
                 is_dir ? "/" : "");
        lv->entries[lv->count].is_dir = is_dir;
        lv->count++;
    }
    if (errno != 0) {
        /* a listing that silently lost entries would let GC delete live data */
        int err = -errno;
        closedir(d);
        obj__free(lv->entries);
        return obj__fail(errmsg, err, "read dir %.200s: %s", path, strerror(-err));
    }
    closedir(d);
    qsort(lv->entries, lv->count, sizeof(*lv->entries), list_entry_cmp);
    return 0;
}

/* May the subtree or file at full path p (a directory's ends in '/') hold a
 * key that starts with prefix and sorts after start_after? */
static bool list_may_match(const char *p, bool is_dir, const char *prefix, const char *after)
{
    size_t plen = strlen(p);
    size_t prefix_len = strlen(prefix);
    size_t n = plen < prefix_len ? plen : prefix_len;

    if (strncmp(p, prefix, n) != 0)
        return false;
    if (!is_dir)
        return plen >= prefix_len && strcmp(p, after) > 0;
    /* every key below sorts after start_after, or start_after lies inside */
    return strcmp(p, after) > 0 || strncmp(after, p, plen) == 0;
}

static int file_list(struct obj__backend *b, const char *prefix, const char *start_after,
                     struct obj_list_page *page, char *errmsg)
{
    struct file_backend *fb = file_of(b);
    struct list_level stack[OBJ_KEY_SEGMENTS_MAX + 1];
    char path[OBJ_KEY_BYTES_MAX + OBJ_SEGMENT_BYTES_MAX + 2] = "";
    int depth = 0;
    int rc;

    page->entry_count = 0;
    page->is_truncated = false;
    page->last_key[0] = '\0';
    rc = list_read_dir(fb, "", &stack[0], errmsg);
    if (rc != 0)
        return rc;
    stack[0].path_len = 0;
    while (depth >= 0 && rc == 0) {
        struct list_level *lv = &stack[depth];
        if (lv->next == lv->count) {
            obj__free(lv->entries);
            depth--;
            continue;
        }
        struct list_entry *e = &lv->entries[lv->next++];
        size_t len = lv->path_len + strlen(e->name);
        if (len > OBJ_KEY_BYTES_MAX)
            continue;
        memcpy(path + lv->path_len, e->name, strlen(e->name) + 1);
        if (!list_may_match(path, e->is_dir, prefix, start_after))
            continue;
        if (e->is_dir) {
            if (depth + 1 >= (int)OBJ_KEY_SEGMENTS_MAX)
                continue;
            path[len - 1] = '\0';
            rc = list_read_dir(fb, path, &stack[depth + 1], errmsg);
            path[len - 1] = '/';
            if (rc == 0) {
                stack[++depth].path_len = len;
            }
            continue;
        }
        if (page->entry_count == page->entry_cap) {
            page->is_truncated = true;
            break;
        }
        memcpy(page->last_key, path, len + 1);
        if (obj__key_check(path, false, NULL) != 0)
            continue; /* a file arbor did not write, named against the rules */
        struct stat st;
        int fd = open_beneath(fb->root_fd, path, O_RDONLY);
        if (fd == -ENOENT)
            continue; /* deleted since the directory was read */
        if (fd < 0) {
            rc = obj__fail(errmsg, fd, "open %.200s while listing: %s", path, strerror(-fd));
            break;
        }
        if (fstat(fd, &st) != 0) {
            rc = obj__fail(errmsg, -errno, "stat %.200s while listing: %s", path,
                           strerror(errno));
            close(fd);
            break;
        }
        close(fd);
        struct obj_list_entry *out = &page->entries[page->entry_count++];
        memcpy(out->key, path, len + 1);
        out->size = (size_t)st.st_size;
    }
    for (; depth >= 0; depth--) {
        obj__free(stack[depth].entries);
    }
    return rc;
}

static void file_close(struct obj__backend *b)
{
    struct file_backend *fb = file_of(b);

    close(fb->tmp_fd);
    close(fb->root_fd);
    sem_destroy(&fb->readers);
    obj__free(fb->root);
    obj__free(fb);
}

static const struct obj__backend_ops file_ops = {
    .put = file_put,
    .get = file_get,
    .head = file_head,
    .del = file_del,
    .list = file_list,
    .close = file_close,
};

/* Remove temp files left by writers that died more than an hour ago. */
static void file_sweep_tmp(struct file_backend *fb)
{
    int fd = openat(fb->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    time_t now = time(NULL);
    struct dirent *de;
    DIR *d;

    if (fd < 0)
        return;
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return;
    }
    for (unsigned seen = 0; seen < FILE_TMP_SWEEP_MAX && (de = readdir(d)) != NULL; seen++) {
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            now - st.st_mtime > FILE_TMP_STALE_SEC) {
            unlinkat(dirfd(d), de->d_name, 0);
        }
    }
    closedir(d);
}

int obj__file_open(const struct obj__url *u, struct obj__backend **out, char *errmsg)
{
    static const char *const known[] = {"create", "readers"};
    struct file_backend *fb;
    uint32_t create = 0;
    uint32_t readers = FILE_READERS_DEFAULT;
    char root[sizeof(u->path) + 1];
    int rc;

    if (u->host[0] != '\0')
        return obj__fail(errmsg, -EINVAL, "file:// URL must be file:///ABSOLUTE/DIR (got host '%s')",
                         u->host);
    if (u->path[0] == '\0')
        return obj__fail(errmsg, -EINVAL, "file:// URL has no directory");
    rc = obj__url_check_params(u, known, 2, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "create", 0, 1, &create, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "readers", 1, OBJ_WORKERS_MAX, &readers, errmsg);
    if (rc != 0)
        return rc;
    snprintf(root, sizeof(root), "/%s", u->path);
    if (create && mkdir(root, 0755) != 0 && errno != EEXIST)
        return obj__fail(errmsg, -errno, "create store directory %s: %s", root, strerror(errno));
    fb = obj__calloc(1, sizeof(*fb));
    if (fb == NULL)
        return obj__fail(errmsg, -ENOMEM, "out of memory");
    fb->base.ops = &file_ops;
    fb->tmp_fd = -1;
    sem_init(&fb->readers, 0, readers);
    fb->root = obj__strdup(root);
    fb->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fb->root == NULL || fb->root_fd < 0) {
        rc = fb->root == NULL ? -ENOMEM : -errno;
        obj__fail(errmsg, rc, "store directory %s: %s", root, strerror(-rc));
        goto out_free;
    }
    if (mkdirat(fb->root_fd, FILE_TMP_DIR, 0755) != 0 && errno != EEXIST) {
        rc = obj__fail(errmsg, -errno, "create %s/" FILE_TMP_DIR ": %s", root, strerror(errno));
        goto out_free;
    }
    /* Held open from now on: every temp file lives relative to this fd, so a
     * .tmp replaced by a symlink later cannot lead a write elsewhere. */
    fb->tmp_fd = open_beneath(fb->root_fd, FILE_TMP_DIR, O_RDONLY | O_DIRECTORY);
    if (fb->tmp_fd < 0) {
        rc = fb->tmp_fd;
        obj__fail(errmsg, rc,
                  rc == -ENOSYS ? "this kernel lacks openat2 (Linux 5.6 or later is needed)"
                                : "%s/" FILE_TMP_DIR " is not a plain directory",
                  root);
        goto out_free;
    }
    file_sweep_tmp(fb);
    *out = &fb->base;
    return 0;

out_free:
    if (fb->tmp_fd >= 0)
        close(fb->tmp_fd);
    if (fb->root_fd >= 0)
        close(fb->root_fd);
    sem_destroy(&fb->readers);
    obj__free(fb->root);
    obj__free(fb);
    return rc;
}
