/* tests/integ/posix_ops.c - random POSIX call sequences (posix_ops.h).
 *
 * A small namespace (two files, two directories, names inside them, a
 * symlink) so calls collide: renames over names, links, removals of
 * non-empty directories, opens of what was just unlinked. Four file
 * descriptor slots carry reads and writes across calls. What differs
 * between file systems for reasons outside POSIX is left out of the hash:
 * a directory's size, times, inode numbers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "posix_ops.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE  (1 << 1)
#endif

#define SLOTS 4
#define OPS   25

static const char *const paths[] = {"a", "b", "d1", "d1/a", "d1/b", "d2", "d2/a", "d2/d3", "l"};
#define PATH_COUNT (sizeof(paths) / sizeof(paths[0]))

struct op {
    unsigned kind;
    unsigned path;
    unsigned path2;
    unsigned slot;
    unsigned arg;     /* flags, modes, lengths: the kind says */
    uint64_t off;
    uint64_t len;
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 0x100000001b3ull;
    }
    return h;
}

/* Call i of seed's sequence: the rng is reseeded from both, so a sequence
 * can be described call by call. */
static void op_of(uint64_t seed, unsigned i, struct op *o)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + i * 0xbf58476d1ce4e5b9ull + 1;

    for (int k = 0; k < 4; k++) {
        rng_next(&s);
    }
    o->kind = (unsigned)(rng_next(&s) % OPS);
    o->path = (unsigned)(rng_next(&s) % PATH_COUNT);
    o->path2 = (unsigned)(rng_next(&s) % PATH_COUNT);
    o->slot = (unsigned)(rng_next(&s) % SLOTS);
    o->arg = (unsigned)(rng_next(&s) % 5);
    o->off = rng_next(&s) % 30000;
    o->len = 1 + rng_next(&s) % 20000;
}

static const char *const kind_names[OPS] = {
    "open", "close", "write", "pread", "lseek", "ftruncate", "truncate", "rename",
    "link", "symlink", "readlink", "unlink", "rmdir", "mkdir", "chmod", "stat",
    "lstat", "setxattr", "getxattr", "removexattr", "readdir", "renameat2", "fstat", "access",
    "fallocate"};

void posix_describe(uint64_t seed, unsigned i, char *buf, size_t cap)
{
    struct op o;

    op_of(seed, i, &o);
    snprintf(buf, cap, "step %u: %s path %s path2 %s slot %u arg %u off %llu len %llu", i,
             kind_names[o.kind], paths[o.path], paths[o.path2], o.slot, o.arg,
             (unsigned long long)o.off, (unsigned long long)o.len);
}

static uint64_t stat_hash(const struct stat *st)
{
    uint64_t f[4] = {st->st_mode, st->st_nlink, S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size,
                     (uint64_t)st->st_uid << 32 | st->st_gid};

    return hash_bytes(0xcbf29ce484222325ull, f, sizeof(f));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint64_t list_hash(const char *dir, long *ret)
{
    DIR *d = opendir(dir);
    char *names[64];
    unsigned count = 0;
    struct dirent *e;
    uint64_t h = 0xcbf29ce484222325ull;

    if (d == NULL) {
        *ret = -1;
        return 0;
    }
    /* bounded by the namespace: a directory holds few names */
    while ((e = readdir(d)) != NULL && count < 64) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            names[count++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof(names[0]), cmp_str);
    for (unsigned i = 0; i < count; i++) {
        h = hash_bytes(h, names[i], strlen(names[i]) + 1);
        free(names[i]);
    }
    *ret = count;
    return h;
}

/* The ops on the open file *fd of the step's slot (0 open, 1 close,
 * 2 write, 3 pread, 4 lseek, 5 ftruncate, 22 fstat, 24 fallocate); their
 * return. */
static long posix_fd_op(const struct op *o, uint64_t seed, unsigned i, const char *p1, int *fd,
                        char *buf, uint64_t *value)
{
    static const int open_flags[5] = {O_RDONLY, O_WRONLY | O_CREAT, O_RDWR | O_CREAT | O_EXCL,
                                      O_RDWR | O_TRUNC, O_WRONLY | O_APPEND | O_CREAT};
    static const int falloc_modes[5] = {0, FALLOC_FL_KEEP_SIZE,
                                        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                        FALLOC_FL_ZERO_RANGE,
                                        FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE};
    struct stat st;
    long ret = 0;

    switch (o->kind) {
    case 0:
        if (*fd >= 0)
            close(*fd);
        *fd = open(p1, open_flags[o->arg], 0644);
        return *fd >= 0 ? 0 : -1;
    case 1:
        ret = *fd >= 0 ? close(*fd) : 0;
        *fd = -1;
        return ret;
    case 2:
        for (uint64_t k = 0; k < o->len; k++) {
            buf[k] = (char)(seed + i + k);
        }
        return write(*fd, buf, o->len);
    case 3:
        ret = pread(*fd, buf, o->len, (off_t)o->off);
        if (ret > 0)
            *value = hash_bytes(1, buf, (size_t)ret);
        return ret;
    case 4:
        return lseek(*fd, (off_t)o->off, o->arg % 2 ? SEEK_END : SEEK_SET);
    case 5:
        return ftruncate(*fd, (off_t)o->off);
    case 24:
        return fallocate(*fd, falloc_modes[o->arg], (off_t)o->off, (off_t)o->len);
    default: /* 22 */
        ret = *fd >= 0 ? fstat(*fd, &st) : -1;
        if (ret == 0)
            *value = stat_hash(&st);
        return ret;
    }
}

/* Step i's op o on p1 (and p2), with the open file *fd of its slot; its
 * return (errno set by it), and in *value a hash of what it read. */
static long posix_op(const struct op *o, uint64_t seed, unsigned i, const char *p1,
                     const char *p2, int *fd, uint64_t *value)
{
    static const mode_t modes[5] = {0644, 0600, 0755, 0000, 0444};
    static const int access_modes[5] = {F_OK, R_OK, W_OK, X_OK, R_OK | W_OK};
    static char buf[30000];
    struct stat st;
    long ret = 0;

    if (o->kind <= 5 || o->kind == 22 || o->kind == 24)
        return posix_fd_op(o, seed, i, p1, fd, buf, value);
    switch (o->kind) {
    case 6:
        return truncate(p1, (off_t)o->off);
    case 7:
        return rename(p1, p2);
    case 8:
        return link(p1, p2);
    case 9:
        return symlink(paths[o->path], p2);
    case 10:
        ret = readlink(p1, buf, sizeof(buf));
        if (ret > 0)
            *value = hash_bytes(1, buf, (size_t)ret);
        return ret;
    case 11:
        return unlink(p1);
    case 12:
        return rmdir(p1);
    case 13:
        return mkdir(p1, 0755);
    case 14:
        return chmod(p1, modes[o->arg]);
    case 15:
    case 16:
        ret = o->kind == 15 ? stat(p1, &st) : lstat(p1, &st);
        if (ret == 0)
            *value = stat_hash(&st);
        return ret;
    case 17:
        return setxattr(p1, "user.k", buf, o->len % 100, (int)(o->arg % 3));
    case 18:
        ret = getxattr(p1, "user.k", buf, o->arg == 0 ? 0 : sizeof(buf));
        if (ret > 0 && o->arg != 0)
            *value = hash_bytes(1, buf, (size_t)ret);
        return ret;
    case 19:
        return removexattr(p1, "user.k");
    case 20:
        *value = list_hash(p1, &ret);
        return ret;
    case 21:
        return syscall(SYS_renameat2, AT_FDCWD, p1, AT_FDCWD, p2,
                       o->arg % 2 ? RENAME_NOREPLACE : RENAME_EXCHANGE);
    default: /* 23 */
        return access(p1, access_modes[o->arg]);
    }
}


void posix_run(const char *root, uint64_t seed, unsigned steps, struct posix_result *out)
{
    int fds[SLOTS] = {-1, -1, -1, -1};
    char p1[600];
    char p2[600];

    for (unsigned i = 0; i < steps && i < POSIX_STEPS_MAX; i++) {
        struct op o;
        uint64_t value = 0;
        op_of(seed, i, &o);
        snprintf(p1, sizeof(p1), "%s/%s", root, paths[o.path]);
        snprintf(p2, sizeof(p2), "%s/%s", root, paths[o.path2]);
        errno = 0;
        long ret = posix_op(&o, seed, i, p1, p2, &fds[o.slot], &value);
        out[i] = (struct posix_result){.ret = ret, .err = ret < 0 ? errno : 0, .value = value};
    }
    for (int k = 0; k < SLOTS; k++) {
        if (fds[k] >= 0)
            close(fds[k]);
    }
}
