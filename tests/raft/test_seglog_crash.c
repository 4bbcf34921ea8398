/* tests/raft/test_seglog_crash.c - the segment log killed at random points.
 *
 * A writer process (this program with --writer) appends batches of
 * entries, syncs each batch, and says on stdout which index is now synced;
 * now and then it takes a snapshot that lets old segments go. The test
 * kills it with SIGKILL after a random number of batches, reopens the log
 * and checks that every synced entry is there with its bytes, and that
 * nothing after it is anything but a whole, correct entry.
 *
 * kill -9 keeps the page cache, so a second test runs the writer under
 * jepsen/faults.c (preloaded) and, after the kill, puts back what was
 * synced plus a random choice of the pages written since (what a power
 * cut leaves: write-back takes pages in any order, so a later page of an
 * unsynced write may be there and an earlier one not); the same checks
 * must hold.
 * ARBOR_CRASH_ROUNDS sets the rounds of each test (default 12).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../objstore/harness.h"
#include "core.h"

#define ROUNDS_DEFAULT 12u
#define WRITER_BATCHES 200000u /* the writer stops by itself after these */

static const char *self_path;

struct fixture {
    char dir[256];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    harness_tmpdir(f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    harness_rm_rf(f->dir);
    free(f);
    return 0;
}

static uint32_t entry_size(raft_index i)
{
    return (uint32_t)(i * 53 % 500);
}

static uint8_t entry_byte(raft_index i, uint32_t k)
{
    return (uint8_t)(i * 13 + k * 7);
}

static struct raft_seglog_options options(void)
{
    struct raft_seglog_options o;

    raft_seglog_options_init(&o);
    o.segment_bytes = 16384; /* seals and renames often */
    o.retain_ns = 0;
    return o;
}

/* ---- the writer ---------------------------------------------------------------------- */

/* With stop > 0 the writer, after stop synced batches, appends one more
 * without syncing, says "unsynced", and waits to be killed: a round that
 * surely has unsynced bytes for the power cut to drop. */
static int writer_main(const char *dir, uint64_t seed, uint32_t stop)
{
    struct raft_seglog_options o = options();
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    struct raft_config c = {.voter_count = 1, .voters = {1}};
    char errmsg[RAFT_ERRMSG_MAX] = "";
    static struct raft_entry v[64];
    static uint8_t data[64][500];
    raft_index next = 1;

    if (raft_seglog_open(dir, &o, &l, &b, errmsg) != 0) {
        fprintf(stderr, "writer: %s\n", errmsg);
        return 1;
    }
    for (uint32_t batch = 0; batch < WRITER_BATCHES; batch++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t count = 1 + (uint32_t)(seed >> 33) % 64;
        for (uint32_t i = 0; i < count; i++) {
            raft_index index = next + i;
            v[i] = (struct raft_entry){.index = index, .term = 1, .hlc_ns = index,
                                       .type = RAFT_ENTRY_NORMAL, .size = entry_size(index),
                                       .data = data[i]};
            for (uint32_t k = 0; k < v[i].size; k++) {
                data[i][k] = entry_byte(index, k);
            }
        }
        struct raft_ready rd = {.has_hard_state = true,
                                .hard_state = {.term = 1, .vote = 1, .commit = next - 1},
                                .entry_count = count, .entries = v};
        if (raft_seglog_append(l, &rd, errmsg) != 0) {
            fprintf(stderr, "writer: %s\n", errmsg);
            return 1;
        }
        if (stop > 0 && batch == stop) {
            printf("unsynced\n");
            fflush(stdout);
            for (int i = 0; i < 600; i++) { /* bounded: the test kills it long before */
                usleep(100000);
            }
            return 1;
        }
        if (raft_seglog_sync(l, errmsg) != 0) {
            fprintf(stderr, "writer: %s\n", errmsg);
            return 1;
        }
        next += count;
        if (batch % 25 == 24 &&
            raft_seglog_snapshot(l, next - 40, 1, next - 40, &c, false, next, errmsg) != 0) {
            fprintf(stderr, "writer: %s\n", errmsg);
            return 1;
        }
        printf("%llu\n", (unsigned long long)(next - 1));
        fflush(stdout);
    }
    raft_seglog_close(l);
    return 0;
}

/* ---- the test side -------------------------------------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *size)
{
    struct stat st;
    int fd = open(path, O_RDONLY);

    if (fd < 0) {
        *size = 0;
        return NULL;
    }
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *p = calloc(1, (size_t)st.st_size + 1);
    assert_non_null(p);
    assert_int_equal(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *size = (size_t)st.st_size;
    return p;
}

static bool coin(uint64_t *rng)
{
    *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
    return (*rng >> 40) & 1;
}

/* What a power cut leaves of a file written since its last sync (then):
 * each 4 KiB page that changed since is lost or kept, in any order, as
 * the page cache's write-back left it, and a cut in size may or may not
 * have reached the disk. Returns the changed bytes that went. */
static uint64_t keep_some_pages(const char *path, const char *saved, uint64_t *rng)
{
    enum { PAGE = 4096 };
    size_t now_size;
    size_t then_size;
    uint8_t *now = slurp(path, &now_size);
    uint8_t *then = slurp(saved, &then_size);
    size_t out_size = now_size < then_size && coin(rng) ? now_size : then_size;
    size_t cap = now_size > then_size ? now_size : then_size;
    uint8_t *out = calloc(1, cap + 1);
    uint64_t lost = 0;

    assert_non_null(out);
    memcpy(out, then, then_size < out_size ? then_size : out_size);
    for (size_t at = 0; at < now_size; at += PAGE) {
        size_t n = now_size - at < PAGE ? now_size - at : PAGE;
        bool is_changed = at + n > then_size || memcmp(now + at, then + at, n) != 0;
        if (!is_changed)
            continue;
        if (!coin(rng)) {
            lost += n;
            continue;
        }
        memcpy(out + at, now + at, n);
        if (at + n > out_size)
            out_size = at + n;
    }
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, out, out_size), (ssize_t)out_size);
    close(fd);
    free(now);
    free(then);
    free(out);
    return lost;
}

/* Make dir what a power cut leaves: each file what the shadow holds
 * (synced bytes, or nothing for a file never synced), plus some of the
 * pages written since. */
static uint64_t cut_the_power(const char *dir, const char *shadow, uint64_t *rng)
{
    uint64_t lost = 0;
    DIR *d = opendir(dir);
    struct dirent *de;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        char path[800];
        char saved[800];
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        snprintf(saved, sizeof(saved), "%s/%s", shadow, de->d_name);
        if (access(saved, F_OK) == 0) {
            lost += keep_some_pages(path, saved, rng);
        } else {
            struct stat now;
            assert_int_equal(stat(path, &now), 0);
            lost += (uint64_t)now.st_size;
            assert_int_equal(truncate(path, 0), 0);
        }
    }
    closedir(d);
    return lost;
}

/* Start the writer, let it sync `batches` batches, kill it; returns the
 * last index it reported synced. */
static raft_index run_and_kill(const char *log, const char *shadow, uint64_t seed,
                               uint32_t batches, bool is_unsynced_tail)
{
    int out[2];

    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char seed_arg[32];
        dup2(out[1], 1);
        close(out[0]);
        snprintf(seed_arg, sizeof(seed_arg), "%llu", (unsigned long long)seed);
        if (shadow != NULL) {
            const char *so = getenv("ARBOR_POWERLOSS_SO");
            setenv("LD_PRELOAD", so, 1);
            setenv("ARBOR_POWERLOSS_DIR", log, 1);
            setenv("ARBOR_POWERLOSS_SHADOW", shadow, 1);
            /* an ASan build lets the layer load first */
            setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0", 1);
        }
        char stop_arg[16];
        snprintf(stop_arg, sizeof(stop_arg), "%u", is_unsynced_tail ? batches : 0);
        execl(self_path, self_path, "--writer", log, seed_arg, stop_arg, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *in = fdopen(out[0], "r");
    char line[64];
    raft_index synced = 0;
    /* bounded: a line a batch, then "unsynced" if asked for */
    for (uint32_t n = 0; n < batches + 1 && fgets(line, sizeof(line), in) != NULL; n++) {
        if (strncmp(line, "unsynced", 8) == 0)
            break;
        synced = strtoull(line, NULL, 10);
        if (!is_unsynced_tail && n + 1 == batches)
            break;
    }
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    fclose(in);
    assert_true(synced > 0);
    return synced;
}

static void check_log(const char *log, raft_index synced, uint32_t round)
{
    struct raft_seglog_options o = options();
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    char errmsg[RAFT_ERRMSG_MAX] = "";

    if (raft_seglog_open(log, &o, &l, &b, errmsg) != 0)
        fail_msg("round %u: the log does not open after the crash: %s", round, errmsg);
    raft_index first = b.snapshot_index + 1;
    raft_index last = b.snapshot_index + b.entry_count;
    if (last < synced)
        fail_msg("round %u: entries up to %llu were synced, the log ends at %llu", round,
                 (unsigned long long)synced, (unsigned long long)last);
    for (raft_index i = first; i <= last; i++) {
        const struct raft_entry *e = &b.entries[i - first];
        assert_int_equal(e->index, i);
        assert_int_equal(e->size, entry_size(i));
        for (uint32_t k = 0; k < e->size; k++) {
            if (e->data[k] != entry_byte(i, k))
                fail_msg("round %u: entry %llu byte %u is wrong", round, (unsigned long long)i,
                         k);
        }
    }
    raft_seglog_close(l);
}

static void crash_rounds(struct fixture *f, bool is_power_cut)
{
    const char *env = getenv("ARBOR_CRASH_ROUNDS");
    uint32_t rounds = env != NULL ? (uint32_t)strtoul(env, NULL, 10) : ROUNDS_DEFAULT;

    uint64_t lost = 0;

    for (uint32_t round = 0; round < rounds; round++) {
        char log[400];
        char shadow[400];
        char cmd[900];
        snprintf(log, sizeof(log), "%s/log%u", f->dir, round);
        snprintf(shadow, sizeof(shadow), "%s/shadow%u", f->dir, round);
        assert_int_equal(mkdir(log, 0755), 0);
        assert_int_equal(mkdir(shadow, 0755), 0);
        uint64_t seed = round * 7919u + (is_power_cut ? 1 : 0);
        /* odd power-cut rounds stop with a batch surely unsynced; the
         * others die wherever the kill lands */
        bool is_unsynced_tail = is_power_cut && round % 2 == 1;
        raft_index synced = run_and_kill(log, is_power_cut ? shadow : NULL, seed,
                                         1 + (uint32_t)(seed * 2654435761u % 300),
                                         is_unsynced_tail);
        uint64_t rng = seed;
        if (is_power_cut)
            lost += cut_the_power(log, shadow, &rng);
        check_log(log, synced, round);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", log, shadow);
        assert_int_equal(system(cmd), 0);
    }
    if (is_power_cut && rounds >= 2)
        assert_true(lost > 0); /* the cuts did drop unsynced writes */
}

static void test_kill_keeps_every_synced_entry(void **state)
{
    crash_rounds(*state, false);
}

static void test_power_cut_keeps_every_synced_entry(void **state)
{
    assert_non_null(getenv("ARBOR_POWERLOSS_SO"));
    crash_rounds(*state, true);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--writer") == 0)
        return writer_main(argv[2], strtoull(argv[3], NULL, 10),
                           (uint32_t)strtoul(argv[4], NULL, 10));
    self_path = argv[0];
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_kill_keeps_every_synced_entry),
        T(test_power_cut_keeps_every_synced_entry),
    };
#undef T
    return cmocka_run_group_tests_name("test_seglog_crash", tests, NULL, NULL);
}
