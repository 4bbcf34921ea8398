/* tests/integ/test_restore.c - point-in-time restore on a real cluster and
 * mount (design §7).
 * Goal: `arbor restore PATH --at T` gives back the tree as it was at T:
 * every file's bytes, mode, owner, times, symlinks, hard links and xattrs;
 * the live tree is not touched (or, with --replace, is set aside whole);
 * a restore works from an archived checkpoint after the live log was
 * compacted, and at a moment whose batch was open when every replica
 * died (the next leader archives it from its Raft log); what the
 * recovery window no longer needs leaves the store,
 * and a moment before the window is refused with a clear error.
 * Method: a tree written through the mount, described (lstat, readlink,
 * xattrs, a hash of the bytes) at T1 and T2 and after more changes; each
 * restored tree described the same way and compared as text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "mount_proc.h"

#define DESC_MAX (1u << 20)

static int setup_fast(void **state)
{
    static const char *const args[] = {"--archive-ms", "200", NULL};
    return cluster_setup_with(state, NULL, 3, "1,2,3", NULL, args);
}

/* Checkpoints archived every second, the live log compacted hard, and
 * sealed log segments small and kept on no server's disk. */
static int setup_checkpoints(void **state)
{
    static const char *const args[] = {"--archive-ms", "200", "--archive-checkpoint-s", "1",
                                       "--segment-bytes", "16K", "--log-retain-s", "0", NULL};
    return cluster_setup_with(state, "50", 3, "1,2,3", NULL, args);
}

/* Log batches of 8 s and a checkpoint archived every second: checkpoints
 * are taken while a batch is still open. */
static int setup_long_batches(void **state)
{
    static const char *const args[] = {"--archive-ms", "8000", "--archive-checkpoint-s", "1",
                                       NULL};
    return cluster_setup_with(state, NULL, 3, "1,2,3", NULL, args);
}

/* A recovery window of 4 s (block gc only when a test runs it). */
static int setup_short_window(void **state)
{
    static const char *const args[] = {"--archive-ms", "200", "--archive-checkpoint-s", "1",
                                       "--gc-every-s", "0", NULL};
    return cluster_setup_with(state, "50", 3, "1,2,3", "--window 4s", args);
}

/* A recovery window of 16 s (block gc only when a test runs it): longer
 * than a restore waits for the archive to reach its moment (15 s), so the
 * moment cannot leave the window while it waits. */
static int setup_gc_window(void **state)
{
    static const char *const args[] = {"--archive-ms", "200", "--archive-checkpoint-s", "1",
                                       "--gc-every-s", "0", NULL};
    return cluster_setup_with(state, "50", 3, "1,2,3", "--window 16s", args);
}

/* Log batches of 8 s and a recovery window of 16 s (block gc only when a
 * test runs it): every moment is near the window's edge, and the archive
 * lags the shard by seconds. */
static int setup_slow_archive(void **state)
{
    static const char *const args[] = {"--archive-ms", "8000", "--archive-checkpoint-s", "1",
                                       "--gc-every-s", "0", NULL};
    return cluster_setup_with(state, "50", 3, "1,2,3", "--window 16s", args);
}

/* A recovery window of 4 s and the leader's gc pass every second. */
static int setup_background_gc(void **state)
{
    static const char *const args[] = {"--archive-ms", "200", "--archive-checkpoint-s", "1",
                                       "--gc-every-s", "1", NULL};
    return cluster_setup_with(state, "50", 3, "1,2,3", "--window 4s", args);
}

static int teardown(void **state)
{
    mounts_end();
    return cluster_teardown(state);
}

static uint64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void rfc3339(uint64_t ns, char *out, size_t cap)
{
    time_t t = (time_t)(ns / 1000000000ull);
    struct tm tm;
    char base[32];

    gmtime_r(&t, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%09uZ", base, (unsigned)(ns % 1000000000ull));
}

/* A moment between what came before and what follows. */
static uint64_t moment(void)
{
    usleep(20000);
    uint64_t t = wall_ns();
    usleep(20000);
    return t;
}

/* ---- writing a tree ----------------------------------------------------------------------- */

static void put(const char *path, const void *data, size_t n, off_t at)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, n, at), (ssize_t)n);
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(close(fd), 0);
}

static void put_random(const char *path, size_t n, uint64_t seed, off_t at)
{
    uint8_t *p = malloc(n + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (uint8_t)(seed >> 56);
    }
    put(path, p, n, at);
    free(p);
}

static void set_times(const char *path, time_t atime, time_t mtime)
{
    struct timespec ts[2] = {{.tv_sec = atime, .tv_nsec = 123456789},
                             {.tv_sec = mtime, .tv_nsec = 987654321}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

/* The first tree: every kind of thing a restore must bring back. */
static void write_tree(const char *ds)
{
    char p[600];
    char q[600];

    assert_int_equal(mkdir(ds, 0755), 0);
    snprintf(p, sizeof(p), "%s/labels", ds);
    assert_int_equal(mkdir(p, 0750), 0);
    snprintf(p, sizeof(p), "%s/labels/deep", ds);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/empty", ds);
    put(p, "", 0, 0);
    snprintf(p, sizeof(p), "%s/one", ds);
    put(p, "x", 1, 0);
    snprintf(p, sizeof(p), "%s/labels/frame.json", ds);
    put_random(p, 5000, 1, 0);
    snprintf(p, sizeof(p), "%s/labels/deep/big.bin", ds);
    put_random(p, (5u << 20) + 3, 2, 0); /* two blocks */
    snprintf(p, sizeof(p), "%s/stacked", ds);
    put_random(p, 200000, 3, 0);
    put_random(p, 1000, 4, 5000);  /* slices stacked over the first */
    put_random(p, 3000, 5, 150000);
    snprintf(p, sizeof(p), "%s/sparse", ds);
    put_random(p, 100, 6, 10 << 20); /* a hole before */
    assert_int_equal(truncate(p, (12 << 20) + 7), 0); /* and after */
    snprintf(p, sizeof(p), "%s/one", ds);
    snprintf(q, sizeof(q), "%s/labels/one-again", ds);
    assert_int_equal(link(p, q), 0); /* a hard link inside the tree */
    snprintf(p, sizeof(p), "%s/to-frame", ds);
    assert_int_equal(symlink("labels/frame.json", p), 0);
    snprintf(p, sizeof(p), "%s/fifo", ds);
    assert_int_equal(mkfifo(p, 0600), 0);
    snprintf(p, sizeof(p), "%s/labels/frame.json", ds);
    assert_int_equal(setxattr(p, "user.camera", "front-left", 10, 0), 0);
    assert_int_equal(setxattr(p, "user.empty", "", 0, 0), 0);
    snprintf(p, sizeof(p), "%s/labels", ds);
    assert_int_equal(setxattr(p, "user.owner", "team-a", 6, 0), 0);
    snprintf(p, sizeof(p), "%s/labels/deep/big.bin", ds);
    assert_int_equal(chown(p, 1234, 5678), 0);
    assert_int_equal(chmod(p, 04750), 0);
    snprintf(p, sizeof(p), "%s/one", ds);
    assert_int_equal(chmod(p, 0600), 0);
    snprintf(p, sizeof(p), "%s/to-frame", ds);
    assert_int_equal(lchown(p, 42, 43), 0);
    snprintf(p, sizeof(p), "%s/labels/frame.json", ds);
    set_times(p, 1600000000, 1500000000);
    snprintf(p, sizeof(p), "%s/labels/deep", ds);
    set_times(p, 1600000001, 1500000001);
    snprintf(p, sizeof(p), "%s/labels", ds);
    set_times(p, 1600000002, 1500000002);
}

/* ---- describing a tree ------------------------------------------------------------------- */

struct desc {
    char *text;
    size_t len;
    ino_t inos[256];     /* for hard links: the first path of each inode */
    char first[256][300];
    int ino_count;
};

static void emit(struct desc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct desc *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(d->text + d->len, DESC_MAX - d->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && d->len + (size_t)n < DESC_MAX);
    d->len += (size_t)n;
}

static uint64_t hash_file(const char *path)
{
    static uint8_t buf[1 << 16];
    uint64_t h = 0xcbf29ce484222325ull;
    int fd = open(path, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            h = (h ^ buf[i]) * 0x100000001b3ull;
        }
    }
    assert_true(n == 0);
    close(fd);
    return h;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One line per entry below root (rel is the path below it), sorted. Reads
 * change no attribute the description holds (atime is read before). */
static void describe_at(struct desc *d, const char *root, const char *rel, bool is_top)
{
    char path[900];
    struct stat st;

    snprintf(path, sizeof(path), "%s%s", root, rel);
    assert_int_equal(lstat(path, &st), 0);
    const char *name = is_top ? "." : rel;
    emit(d, "%s %o %u:%u n%lu s%lld a%lld.%09ld m%lld.%09ld", name, st.st_mode, st.st_uid,
         st.st_gid, (unsigned long)st.st_nlink, (long long)st.st_size, (long long)st.st_atim.tv_sec,
         st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        int k = 0;
        while (k < d->ino_count && d->inos[k] != st.st_ino) {
            k++;
        }
        if (k == d->ino_count) {
            assert_true(k < 256);
            d->inos[k] = st.st_ino;
            snprintf(d->first[k], sizeof(d->first[k]), "%s", name);
            d->ino_count++;
        }
        emit(d, " same-as:%s", d->first[k]);
    }
    if (S_ISLNK(st.st_mode)) {
        char target[600];
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        assert_true(n >= 0);
        target[n] = '\0';
        emit(d, " -> %s", target);
    } else {
        char names[2048];
        ssize_t n = llistxattr(path, names, sizeof(names));
        assert_true(n >= 0);
        char *v[64];
        int count = 0;
        for (ssize_t at = 0; at < n && count < 64; at += (ssize_t)strlen(names + at) + 1) {
            v[count++] = names + at;
        }
        qsort(v, (size_t)count, sizeof(*v), cmp_str);
        for (int i = 0; i < count; i++) {
            char value[512];
            ssize_t len = lgetxattr(path, v[i], value, sizeof(value) - 1);
            assert_true(len >= 0);
            value[len] = '\0';
            emit(d, " x:%s=%s", v[i], value);
        }
    }
    if (S_ISREG(st.st_mode))
        emit(d, " h%016llx", (unsigned long long)hash_file(path));
    emit(d, "\n");
    if (!S_ISDIR(st.st_mode))
        return;
    DIR *dir = opendir(path);
    assert_non_null(dir);
    char *names[256];
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            assert_true(count < 256);
            names[count++] = strdup(e->d_name);
        }
    }
    closedir(dir);
    qsort(names, (size_t)count, sizeof(*names), cmp_str);
    for (int i = 0; i < count; i++) {
        char sub[600];
        snprintf(sub, sizeof(sub), "%s/%s", rel, names[i]);
        describe_at(d, root, sub, false);
        free(names[i]);
    }
}

static char *describe(const char *root)
{
    struct desc *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->text = malloc(DESC_MAX);
    assert_non_null(d->text);
    describe_at(d, root, "", true);
    char *text = d->text;
    free(d);
    return text;
}

static void expect_same(const char *what, const char *want, const char *got)
{
    if (strcmp(want, got) != 0) {
        print_message("%s differs.\n--- wanted:\n%s--- got:\n%s", what, want, got);
        fail_msg("%s is not the tree it should be", what);
    }
}

/* Run arbor restore (or gc) with args against the fixture's cluster; its
 * output goes to f->dir/restore.log and the test's log. Returns its exit
 * status. */
static int run(struct fixture *f, const char *what, const char *args)
{
    char cmd[2000];

    snprintf(cmd, sizeof(cmd), "'%s' %s --meta 127.0.0.1:%u,127.0.0.1:%u %s > '%s/restore.log' 2>&1",
             f->arbor, what, f->client_port[0], f->client_port[1], args, f->dir);
    int st = system(cmd);
    snprintf(cmd, sizeof(cmd), "cat '%s/restore.log' >&2", f->dir);
    if (system(cmd) != 0)
        print_message("(no restore log)\n");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int restore(struct fixture *f, const char *args)
{
    return run(f, "restore", args);
}

static bool log_has(struct fixture *f, const char *text)
{
    char path[400];

    snprintf(path, sizeof(path), "%s/restore.log", f->dir);
    return file_has(path, text);
}

/* Some server's log has text. */
static bool node_log_has(struct fixture *f, const char *text)
{
    char path[400];

    for (int i = 0; i < f->nodes; i++) {
        snprintf(path, sizeof(path), "%s/node%d.log", f->dir, i + 1);
        if (file_has(path, text))
            return true;
    }
    return false;
}

/* Whether dir holds a name starting with prefix; the last such into name. */
static bool entry_with_prefix(const char *dir, const char *prefix, char *name, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool is_found = false;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(name, cap, "%s", e->d_name);
            is_found = true;
        }
    }
    closedir(d);
    return is_found;
}

/* ---- the tests ---------------------------------------------------------------------------- */

/* The node that leads shard 1 now (a linearizable statfs is answered only
 * there); -1 if none within a few seconds. */
static int leader_of_root(struct fixture *f)
{
    struct meta_cmd sf = {.op = META_OP_STATFS};

    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < f->nodes; i++) {
            struct meta_request req = {.id = ++f->next_id, .shard = META_ROOT_SHARD, .epoch = 1,
                                       .kind = META_REQ_COMMAND};
            bool is_ok = f->pid[i] > 0 && client_connect(f, i) && exchange(f, &req, &sf) &&
                         f->resp->r.rc == 0;
            client_close(f);
            if (is_ok)
                return i;
        }
        usleep(50000);
    }
    return -1;
}

static void write_files(const char *dir, const char *prefix, int count, uint64_t seed)
{
    char p[600];

    for (int i = 0; i < count; i++) {
        snprintf(p, sizeof(p), "%s/%s%02d", dir, prefix, i);
        put_random(p, 1000 + (size_t)i * 100, seed + (uint64_t)i, 0);
    }
}

/* The leader that archives dies; the next one goes on where it stopped. */
static void test_restore_across_a_leader_crash(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char p[600];
    char at[64];
    char args[800];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    write_files(ds, "a", 20, 100);
    char *s1 = describe(ds);
    uint64_t t1 = moment();
    int leader = leader_of_root(f);
    assert_true(leader >= 0);
    node_kill(f, leader, SIGKILL);
    write_files(ds, "b", 20, 200); /* through the new leader */
    snprintf(p, sizeof(p), "%s/a05", ds);
    assert_int_equal(unlink(p), 0);
    char *s2 = describe(ds);
    uint64_t t2 = moment();
    node_start(f, leader);
    write_files(ds, "c", 5, 300);

    rfc3339(t1, at, sizeof(at));
    snprintf(args, sizeof(args), "/ds --at %s --into /at-t1", at);
    assert_int_equal(restore(f, args), 0);
    rfc3339(t2, at, sizeof(at));
    snprintf(args, sizeof(args), "/ds --at %s --into /at-t2", at);
    assert_int_equal(restore(f, args), 0);
    snprintf(p, sizeof(p), "%s/at-t1", m->dir);
    char *r1 = describe(p);
    snprintf(p, sizeof(p), "%s/at-t2", m->dir);
    char *r2 = describe(p);
    expect_same("the tree restored from before the crash", s1, r1);
    expect_same("the tree restored from after the crash", s2, r2);
    free(s1);
    free(s2);
    free(r1);
    free(r2);
    mount_stop(m);
}

/* /ds restored at the moment t into /into: the tree want describes. */
static void restore_and_compare(struct fixture *f, struct mount_proc *m, uint64_t t,
                                const char *into, const char *want)
{
    char at[64];
    char args[800];
    char p[600];

    rfc3339(t, at, sizeof(at));
    snprintf(args, sizeof(args), "/ds --at %s --into /%s", at, into);
    assert_int_equal(restore(f, args), 0);
    snprintf(p, sizeof(p), "%s/%s", m->dir, into);
    char *got = describe(p);
    expect_same(into, want, got);
    free(got);
}

/* T1 to T2: new bytes, a removed xattr, a delete, a rename, a link gone,
 * a mode, a new file. */
static void change_tree(const char *ds)
{
    char p[600];
    char q[600];

    snprintf(p, sizeof(p), "%s/labels/frame.json", ds);
    put_random(p, 7000, 11, 0);
    assert_int_equal(removexattr(p, "user.camera"), 0);
    snprintf(p, sizeof(p), "%s/stacked", ds);
    assert_int_equal(unlink(p), 0);
    snprintf(p, sizeof(p), "%s/labels/deep", ds);
    snprintf(q, sizeof(q), "%s/deep-moved", ds);
    assert_int_equal(rename(p, q), 0);
    snprintf(p, sizeof(p), "%s/labels/one-again", ds);
    assert_int_equal(unlink(p), 0);
    snprintf(p, sizeof(p), "%s/one", ds);
    assert_int_equal(chmod(p, 0666), 0);
    snprintf(p, sizeof(p), "%s/new", ds);
    put_random(p, 3333, 12, 0);
}

/* The moments /ds changed: at least the rounds before, and one made just
 * before the listing (it waits for the archive to reach the moment it
 * starts, as an operator lists right after an accident); and a path that
 * never was (a typo). */
static void list_shows_a_change_just_made(struct fixture *f, const char *ds)
{
    char p[600];

    snprintf(p, sizeof(p), "%s/just-now", ds);
    uint64_t t3 = wall_ns();
    put_random(p, 10, 14, 0);
    uint64_t t4 = wall_ns();
    assert_int_equal(restore(f, "--list /ds"), 0);
    assert_true(log_has(f, " changes of /ds at "));
    assert_false(log_has(f, "0 changes of /ds"));
    assert_false(log_has(f, "are not in the archive yet"));
    bool is_listed = false; /* a line for some second of [t3, t4] */
    for (uint64_t sec = t3 / 1000000000u; sec <= t4 / 1000000000u && !is_listed; sec++) {
        char second[40];
        rfc3339(sec * 1000000000u, second, sizeof(second));
        snprintf(second + 19, sizeof(second) - 19, "Z  "); /* as the listing writes it */
        is_listed = log_has(f, second);
    }
    assert_true(is_listed);
    assert_int_equal(restore(f, "--list /dss"), 1);
    assert_true(log_has(f, "/dss does not exist, and nothing at that path changed"));
}

/* Restores refused, each saying why, none changing anything: the
 * destination taken (refused before any work; /at-t1 holds T1's tree s1),
 * a path that did not exist at T1, a moment before the volume. at2: T2. */
static void refusals_change_nothing(struct fixture *f, const struct mount_proc *m,
                                    const char *s1, const char *at2, uint64_t t1)
{
    char args[800];
    char p[600];
    char at1[64];
    char name[300];

    snprintf(args, sizeof(args), "/ds --at %s --into /at-t1", at2);
    assert_int_equal(restore(f, args), 1);
    assert_true(log_has(f, "/at-t1 exists: name another with --into"));
    assert_false(log_has(f, "rebuilding"));
    assert_false(entry_with_prefix(m->dir, ".arbor-restore-", name, sizeof(name)));
    snprintf(p, sizeof(p), "%s/at-t1", m->dir);
    char *r1_again = describe(p);
    expect_same("a restore refused", s1, r1_again);
    free(r1_again);

    rfc3339(t1, at1, sizeof(at1));
    snprintf(args, sizeof(args), "/ds/new --at %s --into /nothing", at1);
    assert_int_equal(restore(f, args), 1);
    assert_true(log_has(f, "/ds/new did not exist at "));

    assert_int_equal(restore(f, "/ds --at 2020-01-01T00:00:00Z --into /nothing"), 1);
    assert_true(log_has(f, "the volume did not exist yet at 2020-01-01T00:00:00.000Z"));

    /* moments that are not: refused before anything is read */
    assert_int_equal(restore(f, "/ds --at 2099-01-01T00:00:00Z --into /nothing"), 2);
    assert_true(log_has(f, "--at is in the future"));
    assert_int_equal(restore(f, "/ds --at 2026-02-31T10:00:00Z --into /nothing"), 2);
    assert_true(log_has(f, "not 2026-02-31T10:00:00Z"));
    assert_int_equal(restore(f, "/ds --at -nanm --into /nothing"), 2);
    assert_true(log_has(f, "not -nanm"));
}

static void test_restore_at_two_moments_leaves_the_live_tree(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char p[600];
    char at[64];
    char args[800];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    write_tree(ds);
    char *s1 = describe(ds);
    uint64_t t1 = moment();

    change_tree(ds);
    char *s2 = describe(ds);
    uint64_t t2 = moment();

    /* and more: most of the tree gone */
    snprintf(p, sizeof(p), "rm -rf '%s/labels' '%s/deep-moved' '%s/sparse'", ds, ds, ds);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof(p), "%s/later", ds);
    put_random(p, 10, 13, 0);
    char *live = describe(ds);

    restore_and_compare(f, m, t1, "at-t1", s1);
    restore_and_compare(f, m, t2, "at-t2", s2);
    /* T2: 2 dirs below the top, 8 others: each dir's mode, each other's
     * size and mode read back */
    assert_true(log_has(f, "verified: 10 names read back, modes of 2 directories, sizes and "
                           "modes of 8 files"));
    char *live_after = describe(ds);
    expect_same("the live tree", live, live_after);
    rfc3339(t2, at, sizeof(at));

    list_shows_a_change_just_made(f, ds);

    /* a file alone, to its default name */
    snprintf(args, sizeof(args), "/ds/sparse --at %s", at);
    assert_int_equal(restore(f, args), 0);
    assert_true(log_has(f, "into /ds/sparse.restored-"));
    free(live);
    live = describe(ds); /* it holds the restored file now */

    refusals_change_nothing(f, m, s1, at, t1);
    rfc3339(t1, at, sizeof(at));

    /* --replace: T1's tree in place, the live one beside it */
    snprintf(args, sizeof(args), "/ds --at %s --replace", at);
    assert_int_equal(restore(f, args), 0);
    char *replaced = describe(ds);
    expect_same("the tree put back in place", s1, replaced);
    char aside[300];
    assert_true(entry_with_prefix(m->dir, "ds.replaced-", aside, sizeof(aside)));
    snprintf(p, sizeof(p), "%s/%s", m->dir, aside);
    char *set_aside = describe(p);
    expect_same("the live tree set aside", live, set_aside);
    /* the same replacement again, after a change: the first aside name is
     * taken, the tree live until now goes beside it under another (it was
     * once left under the staging name, which a third run removed) */
    snprintf(p, sizeof(p), "%s/after-replace", ds);
    put_random(p, 100, 17, 0);
    char *live2 = describe(ds);
    assert_int_equal(restore(f, args), 0);
    char *again = describe(ds);
    expect_same("the tree put back in place again", s1, again);
    snprintf(p, sizeof(p), "%s/%s-2", m->dir, aside);
    char *set_aside2 = describe(p);
    expect_same("the second live tree set aside", live2, set_aside2);
    assert_int_equal(restore(f, args), 0); /* and a third: nothing lost */
    char *third = describe(p);
    expect_same("the second aside after a third run", live2, third);
    free(live2);
    free(again);
    free(set_aside2);
    free(third);
    free(s1);
    free(s2);
    free(live);
    free(live_after);
    free(replaced);
    free(set_aside);
    mount_stop(m);
}

/* How many files match rel (a shell pattern under the test's directory). */
static int count_paths(struct fixture *f, const char *rel)
{
    char cmd[800];

    snprintf(cmd, sizeof(cmd), "cd '%s' && find %s -type f 2>/dev/null | wc -l", f->dir, rel);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* How many objects the store holds under prefix (a file:// store: files). */
static int count_objects(struct fixture *f, const char *prefix)
{
    char rel[600];

    snprintf(rel, sizeof(rel), "node*/blocks/%s", prefix);
    return count_paths(f, rel);
}

/* The greatest hex number that sed_expr leaves of the names of the
 * store's files matching glob (0: none). */
static uint64_t newest_in_store(struct fixture *f, const char *glob, const char *sed_expr)
{
    char cmd[800];
    uint64_t n = 0;

    snprintf(cmd, sizeof(cmd), "cd '%s' && ls -d %s 2>/dev/null | sed '%s' | sort | tail -n 1",
             f->dir, glob, sed_expr);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (fscanf(p, "%" SCNx64, &n) != 1)
        n = 0;
    pclose(p);
    return n;
}

/* The index of the newest checkpoint of shard 1 in the store (0: none). */
static uint64_t newest_checkpoint(struct fixture *f)
{
    return newest_in_store(f, "node*/blocks/pitr/s1/ckpt/*/manifest",
                           "s,.*/ckpt/,,; s,/manifest,,");
}

/* The last index of the newest log object of shard 1 (0: none). */
static uint64_t newest_log_end(struct fixture *f)
{
    return newest_in_store(f, "node*/blocks/pitr/s1/log/*", "s,.*-,,");
}

/* Waits (bounded) until the newest archived checkpoint is past old and no
 * newer one came for 1.5 s: it holds the shard's state as it stands. */
static void checkpoint_settles_past(struct fixture *f, uint64_t old)
{
    uint64_t seen = newest_checkpoint(f);
    uint64_t since = wall_ns();

    for (int i = 0; i < 200; i++) {
        usleep(100000);
        uint64_t now = newest_checkpoint(f);
        if (now != seen) {
            seen = now;
            since = wall_ns();
        } else if (seen > old && wall_ns() - since >= 1500000000ull) {
            return;
        }
    }
    fail_msg("no checkpoint past entry %" PRIu64 " settled (newest: %" PRIu64 ")", old, seen);
}

/* Waits (bounded: 15 s) until shard 1 has more log objects than n. */
static void log_objects_past(struct fixture *f, int n)
{
    for (int i = 0; i < 150 && count_objects(f, "pitr/s1/log") <= n; i++) {
        usleep(100000);
    }
    assert_true(count_objects(f, "pitr/s1/log") > n);
}

/* A mount with /ds made, once the volume's first batch is in the store
 * (so the next writes open a batch of their own). */
static struct mount_proc *mount_with_ds(struct fixture *f, char *ds, size_t cap)
{
    struct mount_proc *m = mount_start(f, "m", "0");

    snprintf(ds, cap, "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    log_objects_past(f, 0);
    return m;
}

/* A checkpoint archived while the entries before it wait in an open batch
 * stands for one state only: the moments between those entries must stay
 * restorable, from the log, on this leader and on the next (which finds
 * that checkpoint past the archive's log). */
static void test_restore_between_entries_a_checkpoint_covers(void **state)
{
    struct fixture *f = *state;
    char ds[500];
    struct mount_proc *m = mount_with_ds(f, ds, sizeof(ds));
    write_files(ds, "a", 3, 400);
    char *s1 = describe(ds);
    uint64_t t1 = moment();
    uint64_t old = newest_checkpoint(f);
    write_files(ds, "b", 3, 500);
    /* a checkpoint past both writes, inside their batch */
    checkpoint_settles_past(f, old);
    assert_true(newest_log_end(f) < newest_checkpoint(f)); /* the batch is still open */
    restore_and_compare(f, m, t1, "at-t1", s1);
    assert_int_equal(count_objects(f, "pitr/s1/pin"), 0); /* the restore's pin went with it */

    /* a new leader finds a checkpoint past the log objects: the entries
     * between them, in its own tail, still go out as log objects. First
     * the batch the restore opened goes out, so the next writes open one. */
    log_objects_past(f, count_objects(f, "pitr/s1/log"));
    old = newest_checkpoint(f);
    write_files(ds, "c", 3, 600);
    char *s2 = describe(ds);
    uint64_t t2 = moment();
    write_files(ds, "d", 3, 700);
    checkpoint_settles_past(f, old);
    assert_true(newest_log_end(f) < newest_checkpoint(f));
    /* the leader dies with that batch open; no one leads for 9 s, longer
     * than a batch, so the survivors close their own batches of it */
    int leader = leader_of_root(f);
    assert_true(leader >= 0);
    int stalled = (leader + 1) % 3;
    assert_int_equal(kill(f->pid[stalled], SIGSTOP), 0);
    node_kill(f, leader, SIGKILL);
    sleep(9);
    assert_int_equal(kill(f->pid[stalled], SIGCONT), 0);
    assert_true(leader_of_root(f) >= 0);
    /* its writes to the dead leader failed (EPIPE) and it lives on */
    assert_int_equal(waitpid(f->pid[stalled], NULL, WNOHANG), 0);
    restore_and_compare(f, m, t2, "at-t2", s2);
    free(s1);
    free(s2);
    mount_stop(m);
}

/* Every replica dies with a batch open (8 s batches) and starts again.
 * Their tails now begin at their checkpoints, past the archive's end: the
 * entries between must come from the Raft logs they kept on disk, not
 * from a checkpoint, which stands for one state only. */
static void test_restore_after_every_replica_restarts(void **state)
{
    struct fixture *f = *state;
    char ds[500];
    struct mount_proc *m = mount_with_ds(f, ds, sizeof(ds));
    int logs = count_objects(f, "pitr/s1/log");
    write_files(ds, "a", 3, 1000);
    char *s1 = describe(ds);
    uint64_t t1 = moment();
    write_files(ds, "b", 3, 1100);
    char *s2 = describe(ds);
    uint64_t t2 = moment();
    sleep(1); /* the replicas' checkpoints take in every write */
    for (int i = 0; i < f->nodes; i++) {
        node_kill(f, i, SIGKILL);
    }
    /* else the writes went out before the kill, and this tests nothing */
    assert_int_equal(count_objects(f, "pitr/s1/log"), logs);
    for (int i = 0; i < f->nodes; i++) {
        node_start(f, i);
    }
    assert_true(leader_of_root(f) >= 0);
    write_files(ds, "c", 3, 1200);
    restore_and_compare(f, m, t1, "at-t1", s1);
    restore_and_compare(f, m, t2, "at-t2", s2);
    assert_true(node_log_has(f, "from the Raft log"));
    free(s1);
    free(s2);
    mount_stop(m);
}

/* A moment in a new volume's first seconds, before its first batch is in
 * the store (8 s batches): the restore waits for it, as for any batch. */
static void test_restore_in_a_new_volume_waits_for_its_first_batch(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    write_files(ds, "a", 2, 800);
    char *s1 = describe(ds);
    uint64_t t1 = moment();
    write_files(ds, "b", 2, 900);
    assert_int_equal(count_objects(f, "pitr/s1/log"), 0); /* else this tests nothing */
    restore_and_compare(f, m, t1, "at-t1", s1);
    assert_true(log_has(f, "waiting"));
    free(s1);
    mount_stop(m);
}

/* When shard 1's head was last written, in seconds since the epoch (0: never). */
static double head_written_s(struct fixture *f)
{
    char cmd[800];
    double t = 0;

    snprintf(cmd, sizeof(cmd), "cd '%s' && stat -c %%.9Y node*/blocks/pitr/s1/head 2>/dev/null"
             " | head -n 1", f->dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (fscanf(p, "%lf", &t) != 1)
        t = 0;
    pclose(p);
    return t;
}

/* On an idle shard a moment past the last entry is proven only by the
 * head, which is rewritten every 10 s; the restore makes an entry of its
 * own instead, so a 4 s wait is enough right after a head was written. */
static void test_restore_to_a_moment_after_the_last_entry(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char at[64];
    char args[800];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    write_files(ds, "a", 2, 1000);
    char *s1 = describe(ds);
    /* idle now: the next head comes 10 s after the one written last */
    double seen = head_written_s(f);
    for (int i = 0; i < 150 && head_written_s(f) == seen; i++) {
        usleep(100000);
    }
    assert_true(head_written_s(f) != seen);
    seen = head_written_s(f);
    for (int i = 0; i < 150 && head_written_s(f) == seen; i++) {
        usleep(100000);
    }
    assert_true(head_written_s(f) != seen);
    uint64_t t1 = moment();
    rfc3339(t1, at, sizeof(at));
    snprintf(args, sizeof(args), "/ds --at %s --into /at-t1 --wait 4", at);
    assert_int_equal(restore(f, args), 0);
    char p[600];
    snprintf(p, sizeof(p), "%s/at-t1", m->dir);
    char *got = describe(p);
    expect_same("the tree restored at a moment after the last entry", s1, got);
    free(got);
    free(s1);
    mount_stop(m);
}

/* A moment near the window's edge keeps its pin until the archive holds
 * the restore's commands: gc keeps the blocks restored files name from
 * the archive, and once the moment left the window only the pin would. */
static void test_restore_keeps_its_pin_until_archived(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char at[64];
    char args[800];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    write_files(ds, "a", 3, 2900);
    uint64_t t1 = moment();
    rfc3339(t1, at, sizeof(at));
    snprintf(args, sizeof(args), "/ds --at %s --into /r --wait 15", at);
    assert_int_equal(restore(f, args), 0);
    assert_true(log_has(f, "the archive holds the restored files"));
    assert_int_equal(count_objects(f, "pitr/s1/pin"), 0);
    /* the head went after the restore's last command, which put the tree
     * in place (the servers share this clock) */
    char p[600];
    struct stat st;
    snprintf(p, sizeof(p), "%s/r", m->dir);
    assert_int_equal(stat(p, &st), 0);
    double placed = (double)st.st_ctim.tv_sec + st.st_ctim.tv_nsec / 1e9;
    double head = head_written_s(f);
    print_message("placed at %.3f, head written at %.3f\n", placed, head);
    assert_true(head > placed);
    mount_stop(m);
}

/* A file of one big write that 600 small writes (each fsynced: a slice
 * each) and a punched hole then cut up: its chunk resolves to more pieces
 * than a chunk may hold slices, and is restored from its stack. */
static void test_restore_a_fragmented_chunk(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char path[600];
    char at[64];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    snprintf(path, sizeof(path), "%s/frag", ds);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    static uint8_t base[1u << 20];
    for (size_t i = 0; i < sizeof(base); i++) {
        base[i] = (uint8_t)(i * 31 + 7);
    }
    assert_int_equal(pwrite(fd, base, sizeof(base), 0), (ssize_t)sizeof(base));
    assert_int_equal(fsync(fd), 0);
    for (int i = 0; i < 600; i++) {
        uint8_t b = (uint8_t)(i ^ 0xa5);
        assert_int_equal(pwrite(fd, &b, 1, (off_t)i * 1600 + 7), 1);
        assert_int_equal(fsync(fd), 0);
    }
    assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 300000, 5000), 0);
    assert_int_equal(close(fd), 0);
    char *s1 = describe(ds);
    uint64_t t1 = moment();
    assert_int_equal(unlink(path), 0);
    rfc3339(t1, at, sizeof(at));
    char args[800];
    snprintf(args, sizeof(args), "/ds --at %s --into /at-t1 --wait 15", at);
    assert_int_equal(restore(f, args), 0);
    snprintf(path, sizeof(path), "%s/at-t1", m->dir);
    char *got = describe(path);
    expect_same("a fragmented file restored", s1, got);
    free(got);
    free(s1);
    mount_stop(m);
}

static void test_restore_from_a_checkpoint_after_compaction(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char p[600];
    char at[64];
    char args[800];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    write_tree(ds);
    char *s1 = describe(ds);
    /* a checkpoint of this state in the store before T1 (bounded wait) */
    for (int i = 0; i < 100 && count_objects(f, "pitr/s1/ckpt/*/manifest") < 2; i++) {
        usleep(100000);
    }
    assert_true(count_objects(f, "pitr/s1/ckpt") >= 2);
    uint64_t t1 = moment();
    /* enough commands that the live log (50 kept) moves far past T1 */
    for (int i = 0; i < 300; i++) {
        snprintf(p, sizeof(p), "%s/f%03d", ds, i);
        put(p, "y", 1, 0);
    }
    snprintf(p, sizeof(p), "rm -rf '%s/labels'", ds);
    assert_int_equal(system(p), 0);

    /* no server keeps the log's first segment, sealed or open (so it was
     * sealed, and removed), nor the live log's start */
    const char *first = "node*/shard-1/log/00000000000000000001*";
    for (int i = 0; i < 100 && count_paths(f, first) > 0; i++) {
        usleep(100000);
    }
    assert_int_equal(count_paths(f, first), 0);
    rfc3339(t1, at, sizeof(at));
    snprintf(args, sizeof(args), "/ds --at %s --into /back", at);
    assert_int_equal(restore(f, args), 0);
    assert_false(log_has(f, "(checkpoint 0 +")); /* started from an archived checkpoint */
    snprintf(p, sizeof(p), "%s/back", m->dir);
    char *r1 = describe(p);
    expect_same("the tree restored from a checkpoint", s1, r1);
    free(s1);
    free(r1);
    mount_stop(m);
}

static void test_restore_window_expires_and_refuses_older_moments(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char p[600];
    char at[64];
    char args[800];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    write_tree(ds);
    uint64_t t0 = moment();
    /* keep changing for twice the window: checkpoints come, old ones go */
    uint64_t end = wall_ns() + 9000000000ull;
    for (int i = 0; wall_ns() < end && i < 100000; i++) {
        snprintf(p, sizeof(p), "%s/t%d", ds, i % 50);
        put(p, "z", 1, 0);
        usleep(20000);
    }
    /* the first batches and checkpoints left the store */
    char first_log[600];
    snprintf(first_log, sizeof(first_log), "pitr/s1/log/0000000000000001-*");
    for (int i = 0; i < 100 && count_objects(f, first_log) > 0; i++) {
        usleep(100000);
    }
    assert_int_equal(count_objects(f, first_log), 0);
    rfc3339(t0, at, sizeof(at));
    snprintf(args, sizeof(args), "/ds --at %s --into /too-old", at);
    assert_int_equal(restore(f, args), 1);
    assert_true(log_has(f, "before the recovery window"));
    /* the window as the map holds it, and changed */
    assert_int_equal(run(f, "window", ""), 0);
    assert_true(log_has(f, "recovery window: 4 s"));
    assert_int_equal(run(f, "window", "set 30m"), 2); /* under an hour: only at format */
    assert_int_equal(run(f, "window", "set 2h"), 0);
    assert_true(log_has(f, "recovery window: 7200 s"));
    /* a moment inside the window still restores */
    snprintf(args, sizeof(args), "/ds --at -1s --into /recent");
    assert_int_equal(restore(f, args), 0);
    snprintf(p, sizeof(p), "%s/recent/labels/frame.json", m->dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 5000);
    mount_stop(m);
}

/* Change names (no data) every 20 ms for ms: the archive gets checkpoints
 * and the window moves on, and no block is made or freed. */
static void keep_busy(const char *dir, uint64_t ms)
{
    char p[600];
    uint64_t end = wall_ns() + ms * 1000000ull;

    snprintf(p, sizeof(p), "%s/busy", dir);
    for (int i = 0; wall_ns() < end && i < 100000; i++) {
        assert_int_equal(i % 2 == 0 ? mkdir(p, 0755) : rmdir(p), 0);
        usleep(20000);
    }
}

static void expect_pattern(const char *path, size_t n, uint64_t seed)
{
    uint8_t *want = malloc(n);
    uint8_t *got = malloc(n + 1);
    assert_non_null(want);
    assert_non_null(got);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        want[i] = (uint8_t)(seed >> 56);
    }
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, got, n + 1), (ssize_t)n);
    close(fd);
    assert_memory_equal(want, got, n);
    free(want);
    free(got);
}

static void test_gc_keeps_the_window_and_then_deletes(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char a[600];
    char c[600];
    char keep[600];
    char p[700];
    char at[64];
    char args[800];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    snprintf(a, sizeof(a), "%s/a", ds);
    snprintf(c, sizeof(c), "%s/c", ds);
    snprintf(keep, sizeof(keep), "%s/keep", ds);
    put_random(a, (4u << 20) + 10, 21, 0); /* two blocks each */
    put_random(c, (4u << 20) + 20, 22, 0);
    put_random(keep, 3000, 23, 0);
    int all = count_objects(f, "s");
    assert_true(all >= 5);
    /* the archive's first state must come before the moment restored below
     * (and gc refuses to run before the archive exists): wait for it */
    for (int i = 0; i < 100 && count_objects(f, "pitr/s1/log") == 0; i++) {
        usleep(50000);
    }
    uint64_t before = moment();
    assert_int_equal(unlink(a), 0);
    assert_int_equal(unlink(c), 0);

    /* inside the window a restore finds the blocks (at once: a gc run
     * under ASan on a busy machine can outlast much of the window), and
     * nothing is garbage: gc deletes none */
    rfc3339(before, at, sizeof(at));
    snprintf(args, sizeof(args), "/ds/a --at %s --into /a-back", at);
    assert_int_equal(restore(f, args), 0);
    snprintf(p, sizeof(p), "%s/a-back", m->dir);
    expect_pattern(p, (4u << 20) + 10, 21);
    assert_int_equal(run(f, "gc", ""), 0);
    assert_true(log_has(f, "garbage: 0 blocks"));
    assert_int_equal(count_objects(f, "s"), all);

    /* the window passes: c's blocks are garbage; a's are named by a-back */
    keep_busy(ds, 24000); /* the window, its expiry pass (a quarter of it) and more */
    assert_int_equal(run(f, "gc", "--dry-run"), 0);
    assert_true(log_has(f, "garbage: 2 blocks"));
    assert_true(log_has(f, "deleted: 0 blocks"));
    int busy = count_objects(f, "s");
    assert_int_equal(run(f, "gc", ""), 0);
    assert_true(log_has(f, "deleted: 2 blocks"));
    assert_int_equal(count_objects(f, "s"), busy - 2);
    /* what lives reads back whole, from the store (a fresh mount, no cache) */
    mount_stop(m);
    snprintf(p, sizeof(p), "rm -rf '%s/cache'", f->dir);
    assert_int_equal(system(p), 0);
    m = mount_start(f, "m", "0");
    snprintf(p, sizeof(p), "%s/a-back", m->dir);
    expect_pattern(p, (4u << 20) + 10, 21);
    snprintf(p, sizeof(p), "%s/ds/keep", m->dir);
    expect_pattern(p, 3000, 23);
    mount_stop(m);
}

static void test_gc_runs_in_the_background(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char p[600];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    snprintf(p, sizeof(p), "%s/gone", ds);
    put_random(p, (4u << 20) + 30, 31, 0);
    snprintf(p, sizeof(p), "%s/stays", ds);
    put_random(p, 5000, 32, 0);
    int all = count_objects(f, "s");
    snprintf(p, sizeof(p), "%s/gone", ds);
    assert_int_equal(unlink(p), 0);
    keep_busy(ds, 6000);
    /* the leader's pass deletes the two blocks once the window passed */
    for (int i = 0; i < 100 && count_objects(f, "s") > all - 2; i++) {
        usleep(100000);
    }
    assert_int_equal(count_objects(f, "s"), all - 2);
    mount_stop(m);
    snprintf(p, sizeof(p), "rm -rf '%s/cache'", f->dir);
    assert_int_equal(system(p), 0);
    m = mount_start(f, "m", "0");
    snprintf(p, sizeof(p), "%s/ds/stays", m->dir);
    expect_pattern(p, 5000, 32);
    mount_stop(m);
}

/* The nice value of process pid's thread tid (proc(5): field 19), or 99. */
static int thread_nice(pid_t pid, const char *tid)
{
    char path[128];
    char line[1024];
    int nice = 99;

    snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, tid);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return nice;
    if (fgets(line, sizeof(line), fp) != NULL) {
        /* after the name in parentheses, field 3 on; nice is the 17th */
        char *p = strrchr(line, ')');
        for (int field = 2; p != NULL && field < 19; field++) {
            p = strchr(p + 1, ' ');
        }
        if (p != NULL)
            nice = atoi(p + 1);
    }
    fclose(fp);
    return nice;
}

/* How many of pid's threads run at nice 19; *main_nice: its first thread's. */
static int threads_at_nice_19(pid_t pid, int *main_nice)
{
    char path[64];
    char tid[32];
    int count = 0;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    snprintf(tid, sizeof(tid), "%d", (int)pid);
    *main_nice = thread_nice(pid, tid);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) { /* bounded by its threads */
        if (e->d_name[0] != '.' && thread_nice(pid, e->d_name) == 19)
            count++;
    }
    if (d != NULL)
        closedir(d);
    return count;
}

/* The servers on a 320 MiB tmpfs keeping 192 MiB of it. */
static int setup_small_disk(void **state)
{
    static const char *const args[] = {"--archive-ms", "200", "--disk-reserve", "192M", NULL};
    return cluster_setup_small_disk(state, "320m", args);
}

/* A restore that would not fit the replicas' disk is refused before it
 * writes anything, saying what is short; with room, the same restore runs. */
static void test_restore_without_room_is_refused_before_writing(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char p[700];
    char at[64];
    char args[400];
    char name[300];
    struct stat st;

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    for (int d = 0; d < 3; d++) { /* describe() lists 256 names a directory */
        snprintf(p, sizeof(p), "%s/d%d", ds, d);
        assert_int_equal(mkdir(p, 0755), 0);
        for (int i = 0; i < 100; i++) {
            snprintf(p, sizeof(p), "%s/d%d/f%03d", ds, d, i);
            put_random(p, 100, (uint64_t)(d * 100 + i), 0);
        }
    }
    char *before = describe(ds);
    rfc3339(moment(), at, sizeof(at));

    /* 64 KiB above the servers' reserve: 304 names need more on three replicas */
    small_disk_fill(f, (192u << 20) + (64u << 10));
    snprintf(args, sizeof(args), "/ds --at %s --into /back", at);
    assert_int_equal(restore(f, args), 1);
    assert_true(log_has(f, "not enough room on 127.0.0.1 for 304 restored names"));
    assert_true(log_has(f, "is free above the servers' reserve"));
    snprintf(p, sizeof(p), "%s/back", m->dir);
    assert_int_equal(stat(p, &st), -1);
    assert_false(entry_with_prefix(m->dir, ".arbor-restore-", name, sizeof(name)));

    /* room again: once every replica has seen it (each reads its disk every
     * 100 ms, and a leader hears of its followers' within a heartbeat),
     * creates go on and the same restore runs */
    small_disk_fill(f, 0);
    snprintf(p, sizeof(p), "%s/room", m->dir);
    int made = -1;
    for (int tries = 0; tries < 100 && made != 0; tries++) { /* 5 s */
        made = mkdir(p, 0755);
        if (made != 0)
            usleep(50000);
    }
    assert_int_equal(made, 0);
    assert_int_equal(rmdir(p), 0);
    snprintf(p, sizeof(p), "%s/back", m->dir);
    assert_int_equal(restore(f, args), 0);
    char *back = describe(p);
    expect_same("the tree restored once there was room", before, back);
    free(before);
    free(back);
    mount_stop(m);
}

/* A restore killed half way leaves only its hidden tree; the same command
 * again removes it and finishes. */
static void test_restore_killed_half_way_starts_over(void **state)
{
    struct fixture *f = *state;
    struct mount_proc *m = mount_start(f, "m", "0");
    char ds[500];
    char p[700];
    char at[64];
    char cmd[2000];
    char hidden[300];

    snprintf(ds, sizeof(ds), "%s/ds", m->dir);
    assert_int_equal(mkdir(ds, 0755), 0);
    for (int d = 0; d < 150; d++) { /* directories: made one round trip each */
        snprintf(p, sizeof(p), "%s/d%03d", ds, d);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/d%03d/f", ds, d);
        put_random(p, 100, (uint64_t)d, 0);
    }
    char *s1 = describe(ds);
    uint64_t t1 = moment();
    rfc3339(t1, at, sizeof(at));
    snprintf(cmd, sizeof(cmd), "/ds --at %s --into /back --threads 1", at);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char meta[64];
        snprintf(meta, sizeof(meta), "127.0.0.1:%u", f->client_port[0]);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(f->arbor, "arbor", "restore", "/ds", "--at", at, "--into", "/back", "--threads",
              "1", "--meta", meta, (char *)NULL);
        _exit(127);
    }
    /* kill it once its hidden tree stands (bounded) */
    bool is_staged = false;
    for (int i = 0; i < 2000 && !is_staged; i++) {
        is_staged = entry_with_prefix(m->dir, ".arbor-restore-", hidden, sizeof(hidden));
        if (!is_staged)
            usleep(5000);
    }
    /* what writes into the volume yields the CPU; the command itself does not */
    int main_nice = 0;
    int low_threads = threads_at_nice_19(pid, &main_nice);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(is_staged);
    assert_int_equal(main_nice, 0);
    assert_true(low_threads >= 1); /* the connection's I/O thread at least */
    assert_true(WIFSIGNALED(status)); /* it was still at work */
    snprintf(p, sizeof(p), "%s/back", m->dir);
    struct stat st;
    assert_int_equal(lstat(p, &st), -1); /* the final name holds nothing */
    assert_int_equal(restore(f, cmd), 0);
    assert_false(entry_with_prefix(m->dir, ".arbor-restore-", hidden, sizeof(hidden)));
    char *r1 = describe(p);
    expect_same("the tree restored after an interrupted restore", s1, r1);
    free(s1);
    free(r1);
    mount_stop(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restore_at_two_moments_leaves_the_live_tree,
                                        setup_fast, teardown),
        cmocka_unit_test_setup_teardown(test_restore_across_a_leader_crash, setup_fast,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restore_without_room_is_refused_before_writing,
                                        setup_small_disk, teardown),
        cmocka_unit_test_setup_teardown(test_restore_killed_half_way_starts_over, setup_fast,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restore_between_entries_a_checkpoint_covers,
                                        setup_long_batches, teardown),
        cmocka_unit_test_setup_teardown(test_restore_after_every_replica_restarts,
                                        setup_long_batches, teardown),
        cmocka_unit_test_setup_teardown(test_restore_in_a_new_volume_waits_for_its_first_batch,
                                        setup_long_batches, teardown),
        cmocka_unit_test_setup_teardown(test_restore_to_a_moment_after_the_last_entry,
                                        setup_fast, teardown),
        cmocka_unit_test_setup_teardown(test_restore_a_fragmented_chunk, setup_fast, teardown),
        cmocka_unit_test_setup_teardown(test_restore_keeps_its_pin_until_archived,
                                        setup_slow_archive, teardown),
        cmocka_unit_test_setup_teardown(test_restore_from_a_checkpoint_after_compaction,
                                        setup_checkpoints, teardown),
        cmocka_unit_test_setup_teardown(test_restore_window_expires_and_refuses_older_moments,
                                        setup_short_window, teardown),
        cmocka_unit_test_setup_teardown(test_gc_keeps_the_window_and_then_deletes,
                                        setup_gc_window, teardown),
        cmocka_unit_test_setup_teardown(test_gc_runs_in_the_background, setup_background_gc,
                                        teardown),
    };
    if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
        fprintf(stderr, "test_restore needs root and /dev/fuse\n");
        return 1; /* not skipped: CI has both */
    }
    /* ARBOR_TEST_ONLY=PATTERN runs the tests whose names match (cmocka's filter) */
    if (getenv("ARBOR_TEST_ONLY") != NULL)
        cmocka_set_test_filter(getenv("ARBOR_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
