/* jepsen/faults.c - an LD_PRELOAD layer that lets a test misbehave a
 * process's disk and clock from outside.
 *
 * Power loss. On every successful fsync or fdatasync of a file under
 * $ARBOR_POWERLOSS_DIR (a directory tree) it copies the file's bytes to the
 * same relative name under $ARBOR_POWERLOSS_SHADOW; a write through a
 * descriptor opened with O_DSYNC or O_SYNC (LMDB's meta pages) counts as
 * written and synced; renames and unlinks there follow along. After kill -9
 * a test makes every file what the shadow holds (files never synced come
 * back empty): every write that was not synced is lost, as the page cache
 * would be when the power goes. kill -9 alone keeps it. Limit: a name is
 * taken as durable when made.
 *
 * Clock and disk. $ARBOR_FAULT_CTL names a file of two little-endian
 * int64s, read (through a shared mapping) on every call: an offset in
 * nanoseconds added to the wall clock (CLOCK_REALTIME, gettimeofday, time:
 * what hybrid-logical clocks read; the monotonic clock that leases and
 * timers use is left alone), and a delay in microseconds before every
 * fsync and fdatasync (a slow disk). The test rewrites the file to skew,
 * jump or slow one process at a time.
 */
/* the real names: open and open64 both, not one redirected to the other */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* dlsym's object pointer into a function pointer, the way POSIX allows. */
#define REAL(fn, name)                                                                        \
    do {                                                                                      \
        if ((fn) == NULL) {                                                                   \
            void *sym = dlsym(RTLD_NEXT, name);                                               \
            memcpy(&(fn), &sym, sizeof(sym));                                                 \
        }                                                                                     \
    } while (0)

/* ---- the control file ---------------------------------------------------------------------- */

struct control {
    int64_t clock_offset_ns;
    int64_t fsync_delay_us;
};

static const volatile struct control *control;
static pthread_once_t control_once = PTHREAD_ONCE_INIT;

static void map_control(void)
{
    const char *path = getenv("ARBOR_FAULT_CTL");
    if (path == NULL)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    void *p = mmap(NULL, sizeof(struct control), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED)
        control = p;
}

static struct control read_control(void)
{
    struct control c = {0, 0};
    pthread_once(&control_once, map_control);
    if (control != NULL) {
        c.clock_offset_ns = control->clock_offset_ns;
        c.fsync_delay_us = control->fsync_delay_us;
    }
    return c;
}

int clock_gettime(clockid_t clk, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    REAL(real, "clock_gettime");
    int rc = real(clk, ts);
    if (rc == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE)) {
        int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + read_control().clock_offset_ns;
        ts->tv_sec = (time_t)(ns / 1000000000);
        ts->tv_nsec = (long)(ns % 1000000000);
    }
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

/* ---- power loss ---------------------------------------------------------------------------- */

/* The name of path below the watched tree, or NULL. */
static const char *below_watched(const char *path)
{
    const char *dir = getenv("ARBOR_POWERLOSS_DIR");
    if (dir == NULL || getenv("ARBOR_POWERLOSS_SHADOW") == NULL)
        return NULL;
    size_t dlen = strlen(dir);
    if (strncmp(path, dir, dlen) != 0 || path[dlen] != '/')
        return NULL;
    return path + dlen + 1;
}

/* The path of fd's file, and its name if it lies in the watched tree. */
static const char *watched_fd(int fd, char *path, size_t cap)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, cap - 1);
    if (n <= 0)
        return NULL;
    path[n] = '\0';
    return below_watched(path);
}

/* A name relative to dirfd (AT_FDCWD: the working directory) in the watched tree. */
static const char *watched_at(int dirfd, const char *name, char *path, size_t cap)
{
    char dir[PATH_MAX];
    if (name[0] == '/') {
        snprintf(path, cap, "%s", name);
    } else {
        if (dirfd == AT_FDCWD) {
            if (getcwd(dir, sizeof(dir)) == NULL)
                return NULL;
        } else {
            char link[64];
            snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(link, dir, sizeof(dir) - 1);
            if (n <= 0)
                return NULL;
            dir[n] = '\0';
        }
        snprintf(path, cap, "%s/%s", dir, name);
    }
    return below_watched(path);
}

static void shadow_path(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", getenv("ARBOR_POWERLOSS_SHADOW"), name);
}

/* Make the shadow's directories down to name's parent. */
static void shadow_parents(const char *shadow)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", shadow);
    size_t base = strlen(getenv("ARBOR_POWERLOSS_SHADOW"));
    for (char *p = dir + base + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(dir, 0755);
        *p = '/';
    }
}

/* Copy the file at path to the shadow's name, atomically there. */
static void remember(const char *path, const char *name)
{
    char to[PATH_MAX];
    char tmp[PATH_MAX + 8];
    char buf[65536];
    struct stat st;

    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    shadow_path(name, to, sizeof(to));
    shadow_parents(to);
    snprintf(tmp, sizeof(tmp), "%s.cp%d", to, (int)gettid());
    int in = open(path, O_RDONLY | O_CLOEXEC);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ssize_t n = 0;
    /* bounded by the file's size */
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    }
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (n == 0)
        rename(tmp, to);
    else
        unlink(tmp);
}

static void after_sync(int fd)
{
    char path[PATH_MAX];
    const char *name = watched_fd(fd, path, sizeof(path));
    if (name != NULL)
        remember(path, name);
}

static void before_sync(void)
{
    int64_t us = read_control().fsync_delay_us;
    if (us > 0)
        usleep((useconds_t)(us < 10000000 ? us : 10000000));
}

int fsync(int fd)
{
    static int (*real)(int);
    REAL(real, "fsync");
    before_sync();
    int rc = real(fd);
    if (rc == 0)
        after_sync(fd);
    return rc;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    REAL(real, "fdatasync");
    before_sync();
    int rc = real(fd);
    if (rc == 0)
        after_sync(fd);
    return rc;
}

/* Descriptors opened with O_DSYNC or O_SYNC: each write through them is synced. */
#define SYNC_FDS_MAX 4096
static _Atomic unsigned char sync_fds[SYNC_FDS_MAX];

static void note_open(int fd, int flags)
{
    if (fd >= 0 && fd < SYNC_FDS_MAX)
        sync_fds[fd] = (flags & (O_DSYNC | O_SYNC)) != 0;
}

#define OPEN_WRAPPER(fname, ...)                                                              \
    int fname(__VA_ARGS__, int flags, ...)                                                    \
    {                                                                                         \
        static int (*real)(__VA_ARGS__, int, ...);                                            \
        REAL(real, #fname);                                                                   \
        mode_t mode = 0;                                                                      \
        if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {                        \
            va_list ap;                                                                       \
            va_start(ap, flags);                                                              \
            mode = (mode_t)va_arg(ap, int);                                                   \
            va_end(ap);                                                                       \
        }                                                                                     \
        int fd = OPEN_CALL;                                                                   \
        note_open(fd, flags);                                                                 \
        return fd;                                                                            \
    }

#define OPEN_CALL real(path, flags, mode)
OPEN_WRAPPER(open, const char *path)
OPEN_WRAPPER(open64, const char *path)
#undef OPEN_CALL
#define OPEN_CALL real(dirfd, path, flags, mode)
OPEN_WRAPPER(openat, int dirfd, const char *path)
OPEN_WRAPPER(openat64, int dirfd, const char *path)
#undef OPEN_CALL

static void after_write(int fd, ssize_t n)
{
    if (n > 0 && fd >= 0 && fd < SYNC_FDS_MAX && sync_fds[fd])
        after_sync(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    REAL(real, "pwrite");
    ssize_t n = real(fd, buf, count, offset);
    after_write(fd, n);
    return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    REAL(real, "pwrite64");
    ssize_t n = real(fd, buf, count, offset);
    after_write(fd, n);
    return n;
}

ssize_t write(int fd, const void *buf, size_t count)
{
    static ssize_t (*real)(int, const void *, size_t);
    REAL(real, "write");
    ssize_t n = real(fd, buf, count);
    after_write(fd, n);
    return n;
}

static void follow_rename(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    char a[PATH_MAX];
    char b[PATH_MAX];
    const char *from = watched_at(olddirfd, oldpath, a, sizeof(a));
    const char *to = watched_at(newdirfd, newpath, b, sizeof(b));
    if (from != NULL && to != NULL) {
        char sa[PATH_MAX];
        char sb[PATH_MAX];
        shadow_path(from, sa, sizeof(sa));
        shadow_path(to, sb, sizeof(sb));
        shadow_parents(sb);
        rename(sa, sb);
    }
}

static void follow_unlink(int dirfd, const char *pathname)
{
    char a[PATH_MAX];
    const char *name = watched_at(dirfd, pathname, a, sizeof(a));
    if (name != NULL) {
        char sa[PATH_MAX];
        shadow_path(name, sa, sizeof(sa));
        if (unlink(sa) != 0 && errno == EISDIR)
            rmdir(sa);
    }
}

int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    static int (*real)(int, const char *, int, const char *);
    REAL(real, "renameat");
    int rc = real(olddirfd, oldpath, newdirfd, newpath);
    if (rc == 0)
        follow_rename(olddirfd, oldpath, newdirfd, newpath);
    return rc;
}

int rename(const char *oldpath, const char *newpath)
{
    static int (*real)(const char *, const char *);
    REAL(real, "rename");
    int rc = real(oldpath, newpath);
    if (rc == 0)
        follow_rename(AT_FDCWD, oldpath, AT_FDCWD, newpath);
    return rc;
}

int unlinkat(int dirfd, const char *pathname, int flags)
{
    static int (*real)(int, const char *, int);
    REAL(real, "unlinkat");
    int rc = real(dirfd, pathname, flags);
    if (rc == 0)
        follow_unlink(dirfd, pathname);
    return rc;
}

int unlink(const char *pathname)
{
    static int (*real)(const char *);
    REAL(real, "unlink");
    int rc = real(pathname);
    if (rc == 0)
        follow_unlink(AT_FDCWD, pathname);
    return rc;
}
