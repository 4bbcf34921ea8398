/* tests/raft/powerloss.c - an LD_PRELOAD layer that remembers what a power
 * cut would leave: on every successful fsync or fdatasync of a file under
 * $ARBOR_POWERLOSS_DIR it copies the file's bytes to the same name under
 * $ARBOR_POWERLOSS_SHADOW; renames and unlinks there follow along. After
 * kill -9, a test makes the directory what the shadow holds (files never
 * synced come back empty): every write that was not synced is lost, as the
 * page cache would be when the power goes. kill -9 alone keeps it.
 * Limits: a name is taken as durable when made (ext4 commits names with
 * its journal within seconds; the log fsyncs its directory anyway). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* dlsym's object pointer into a function pointer, the way POSIX allows. */
#define REAL(fn, name)                                                                        \
    do {                                                                                      \
        if ((fn) == NULL) {                                                                   \
            void *sym = dlsym(RTLD_NEXT, name);                                               \
            memcpy(&(fn), &sym, sizeof(sym));                                                 \
        }                                                                                     \
    } while (0)

/* The path of fd's file, and its name if it lies in the watched directory. */
static const char *watched_name(int fd, char *path, size_t cap)
{
    char link[64];
    const char *dir = getenv("ARBOR_POWERLOSS_DIR");

    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, cap - 1);
    if (dir == NULL || n <= 0)
        return NULL;
    path[n] = '\0';
    size_t dlen = strlen(dir);
    if (strncmp(path, dir, dlen) != 0 || path[dlen] != '/' || strchr(path + dlen + 1, '/'))
        return NULL;
    return path + dlen + 1;
}

static void shadow_path(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", getenv("ARBOR_POWERLOSS_SHADOW"), name);
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
    snprintf(tmp, sizeof(tmp), "%s.cp", to);
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
    const char *name = watched_name(fd, path, sizeof(path));

    if (name != NULL)
        remember(path, name);
}

int fsync(int fd)
{
    static int (*real)(int);
    REAL(real, "fsync");
    int rc = real(fd);
    if (rc == 0)
        after_sync(fd);
    return rc;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    REAL(real, "fdatasync");
    int rc = real(fd);
    if (rc == 0)
        after_sync(fd);
    return rc;
}

/* A name relative to dirfd, if in the watched directory. */
static const char *watched_at(int dirfd, const char *name, char *path, size_t cap)
{
    if (strchr(name, '/') != NULL)
        return NULL;
    char dir[PATH_MAX];
    const char *w = getenv("ARBOR_POWERLOSS_DIR");
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, dir, sizeof(dir) - 1);
    if (w == NULL || n <= 0)
        return NULL;
    dir[n] = '\0';
    if (strcmp(dir, w) != 0)
        return NULL;
    snprintf(path, cap, "%s/%s", w, name);
    return name;
}

int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    static int (*real)(int, const char *, int, const char *);
    char a[PATH_MAX];
    char b[PATH_MAX];
    REAL(real, "renameat");
    int rc = real(olddirfd, oldpath, newdirfd, newpath);
    const char *from = watched_at(olddirfd, oldpath, a, sizeof(a));
    const char *to = watched_at(newdirfd, newpath, b, sizeof(b));
    if (rc == 0 && from != NULL && to != NULL) {
        char sa[PATH_MAX];
        char sb[PATH_MAX];
        shadow_path(from, sa, sizeof(sa));
        shadow_path(to, sb, sizeof(sb));
        rename(sa, sb);
    }
    return rc;
}

int unlinkat(int dirfd, const char *pathname, int flags)
{
    static int (*real)(int, const char *, int);
    char a[PATH_MAX];
    REAL(real, "unlinkat");
    int rc = real(dirfd, pathname, flags);
    const char *name = watched_at(dirfd, pathname, a, sizeof(a));
    if (rc == 0 && name != NULL) {
        char sa[PATH_MAX];
        shadow_path(name, sa, sizeof(sa));
        unlink(sa);
    }
    return rc;
}
