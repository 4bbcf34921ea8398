/* tests/objstore/test_file.c - what only the file:// backend promises, and the
 * fault:// wrapper and allocator hook that drive error paths.
 * Goal: no object is ever seen half-written, even when the writer is killed;
 * nothing is read or written outside the store's directory; every injected
 * failure comes back as a clear error with nothing lost or leaked.
 * Method: a child process that puts objects is killed with SIGKILL at many
 * points, then every visible object must read back whole; symlinks planted
 * in the store; fault:// URLs; an allocator that fails the Nth call. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "objstore.h"

#define KILL_ROUNDS 8u

struct fixture {
    char dir[256];
    char url[512];
    struct obj_store *store;
    uint8_t *data;
    uint8_t *buf;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    harness_tmpdir(f->dir);
    snprintf(f->url, sizeof(f->url), "file://%s", f->dir);
    assert_int_equal(obj_store_open(f->url, NULL, &f->store, NULL), 0);
    f->data = malloc(OBJ_DATA_BYTES_MAX);
    f->buf = malloc(OBJ_DATA_BYTES_MAX);
    assert_non_null(f->data);
    assert_non_null(f->buf);
    for (size_t i = 0; i < OBJ_DATA_BYTES_MAX; i++) {
        f->data[i] = (uint8_t)(i * 131 + (i >> 12));
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    obj_store_close(f->store);
    harness_rm_rf(f->dir);
    free(f->data);
    free(f->buf);
    free(f);
    return 0;
}

/* Every key under prefix, in one list call (the tests keep it under 1000). */
static unsigned list_all(struct obj_store *s, const char *prefix, struct obj_list_entry *out,
                         unsigned cap)
{
    struct obj_list_page page = {.entries = out, .entry_cap = cap};

    assert_int_equal(obj_list(s, prefix, NULL, &page, NULL), 0);
    assert_false(page.is_truncated);
    return page.entry_count;
}

/* ---- atomic puts ---------------------------------------------------------------- */

/* The child puts objects of varying size forever, telling the parent each
 * time one is done; the parent kills it at a different moment each round. */
static void writer_child(const char *url, const uint8_t *data, unsigned round, int notify_fd)
{
    struct obj_store *s = NULL;
    char key[64];

    if (obj_store_open(url, NULL, &s, NULL) != 0)
        _exit(3);
    for (unsigned i = 0;; i++) {
        size_t size = OBJ_DATA_BYTES_MAX - (i * 99991u) % (3u << 20);
        snprintf(key, sizeof(key), "crash/%u.%u-%zu", round, i, size);
        if (obj_put(s, key, data, size, NULL) != 0)
            _exit(4);
        if (write(notify_fd, "x", 1) != 1)
            _exit(5);
    }
}

static void test_kill_during_put_never_leaves_partial_object(void **state)
{
    struct fixture *f = *state;
    struct obj_list_entry *entries = calloc(1000, sizeof(*entries));
    unsigned total = 0;

    assert_non_null(entries);
    for (unsigned round = 0; round < KILL_ROUNDS; round++) {
        int fds[2];
        char c;
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            writer_child(f->url, f->data, round, fds[1]);
        }
        close(fds[1]);
        /* let round+1 puts complete, then kill inside the next one; the
         * extra busy loop moves the moment of the kill from round to round */
        for (unsigned done = 0; done <= round % 3; done++) {
            assert_int_equal(read(fds[0], &c, 1), 1);
        }
        for (volatile unsigned spin = 0; spin < round * 200000u; spin++) {
        }
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        close(fds[0]);
    }
    /* Every object that is visible is whole: size from its key, bytes exact. */
    unsigned n = list_all(f->store, "crash/", entries, 1000);
    assert_true(n >= KILL_ROUNDS);
    for (unsigned i = 0; i < n; i++) {
        size_t want = strtoull(strchr(entries[i].key, '-') + 1, NULL, 10);
        size_t got = 0;
        char errmsg[OBJ_ERRMSG_MAX] = "";
        int rc = obj_get(f->store, entries[i].key, f->buf, OBJ_DATA_BYTES_MAX, &got, errmsg);
        if (rc != 0)
            fail_msg("%s: %d %s", entries[i].key, rc, errmsg);
        assert_int_equal(entries[i].size, want);
        assert_int_equal(got, want);
        assert_memory_equal(f->buf, f->data, want);
        total++;
    }
    assert_true(total >= KILL_ROUNDS);
    free(entries);
}

static void test_stale_temp_files_are_swept_fresh_ones_kept(void **state)
{
    struct fixture *f = *state;
    char stale[512];
    char fresh[512];
    struct obj_store *s = NULL;
    struct timeval old[2] = {{.tv_sec = time(NULL) - 7200}, {.tv_sec = time(NULL) - 7200}};

    snprintf(stale, sizeof(stale), "%s/.tmp/99999.1", f->dir);
    snprintf(fresh, sizeof(fresh), "%s/.tmp/99999.2", f->dir);
    fclose(fopen(stale, "w"));
    fclose(fopen(fresh, "w"));
    assert_int_equal(utimes(stale, old), 0);
    assert_int_equal(obj_store_open(f->url, NULL, &s, NULL), 0);
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(access(fresh, F_OK), 0); /* may belong to a live writer */
    obj_store_close(s);
    unlink(fresh);
}

/* ---- containment ------------------------------------------------------------------ */

static void test_symlinks_in_store_are_never_followed(void **state)
{
    struct fixture *f = *state;
    char outside[256];
    char link[512];
    char target[512];
    char errmsg[OBJ_ERRMSG_MAX] = "";
    size_t got = 0;

    harness_tmpdir(outside);
    snprintf(target, sizeof(target), "%s/secret", outside);
    FILE *fp = fopen(target, "w");
    assert_non_null(fp);
    fputs("not yours", fp);
    fclose(fp);
    /* a link to a directory outside, and a link to a file outside */
    snprintf(link, sizeof(link), "%s/evil", f->dir);
    assert_int_equal(symlink(outside, link), 0);
    snprintf(link, sizeof(link), "%s/evil-file", f->dir);
    assert_int_equal(symlink(target, link), 0);

    assert_int_equal(obj_get(f->store, "evil/secret", f->buf, 100, &got, errmsg), -EACCES);
    assert_int_equal(obj_get(f->store, "evil-file", f->buf, 100, &got, NULL), -EACCES);
    assert_int_equal(obj_head(f->store, "evil/secret", &got, NULL), -EACCES);
    assert_true(obj_put(f->store, "evil/planted", f->data, 10, NULL) < 0);
    snprintf(target, sizeof(target), "%s/planted", outside);
    assert_int_equal(access(target, F_OK), -1); /* nothing was written outside */
    /* the listing shows neither link */
    struct obj_list_entry entries[8];
    unsigned n = list_all(f->store, "evil", entries, 8);
    assert_int_equal(n, 0);
    harness_rm_rf(outside);
}

/* ---- listing and directories --------------------------------------------------- */

static void test_list_is_in_byte_order_across_directories(void **state)
{
    struct fixture *f = *state;
    static const char *const keys[] = {"o/a-b", "o/a.b", "o/a/x", "o/a/y/z", "o/a0", "o/b"};
    const unsigned count = sizeof(keys) / sizeof(keys[0]);
    struct obj_list_entry entries[16];

    /* put in reverse; expect byte order: '-' < '.' < '/' < '0' */
    for (int i = (int)count - 1; i >= 0; i--) {
        assert_int_equal(obj_put(f->store, keys[i], f->data, 1, NULL), 0);
    }
    unsigned n = list_all(f->store, "o/", entries, 16);
    assert_int_equal(n, count);
    for (unsigned i = 0; i < n; i++) {
        assert_string_equal(entries[i].key, keys[i]);
    }
    /* one key per page, resuming after each, visits all */
    struct obj_list_page page = {.entries = entries, .entry_cap = 1};
    char last[OBJ_KEY_BYTES_MAX + 1] = "";
    for (unsigned i = 0; i < count; i++) {
        assert_int_equal(obj_list(f->store, "o/", last, &page, NULL), 0);
        assert_int_equal(page.entry_count, 1);
        assert_string_equal(entries[0].key, keys[i]);
        assert_int_equal(page.is_truncated, i < count - 1);
        memcpy(last, page.last_key, sizeof(last));
    }
}

static void test_list_skips_files_that_are_not_keys(void **state)
{
    struct fixture *f = *state;
    static const char *const foreign[] = {"q/a b", "q/b%", "q/c\\d", "q/.hidden"};
    char path[700];
    struct obj_list_entry entries[1];
    struct obj_list_page page = {.entries = entries, .entry_cap = 1};
    char last[OBJ_KEY_BYTES_MAX + 1] = "";
    unsigned mine = 0;

    assert_int_equal(obj_put(f->store, "q/ok", f->data, 3, NULL), 0);
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, foreign[i]);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fclose(fp);
    }
    for (unsigned pages = 0; pages < 10; pages++) {
        assert_int_equal(obj_list(f->store, "q/", last, &page, NULL), 0);
        mine += page.entry_count;
        if (page.entry_count > 0)
            assert_string_equal(entries[0].key, "q/ok");
        memcpy(last, page.last_key, sizeof(last));
        if (!page.is_truncated)
            break;
    }
    assert_int_equal(mine, 1);
    assert_false(page.is_truncated);
}

static void test_tmp_swapped_for_a_symlink_cannot_redirect_writes(void **state)
{
    struct fixture *f = *state;
    char outside[256];
    char tmp[600];
    char moved[600];
    size_t got = 0;

    harness_tmpdir(outside);
    snprintf(tmp, sizeof(tmp), "%s/.tmp", f->dir);
    snprintf(moved, sizeof(moved), "%s/.tmp-was", f->dir);
    assert_int_equal(rename(tmp, moved), 0); /* after the store opened it */
    assert_int_equal(symlink(outside, tmp), 0);
    assert_int_equal(obj_put(f->store, "safe", f->data, 100000, NULL), 0);
    /* the temp file was made in the directory the store opened, not outside */
    DIR *d = opendir(outside);
    assert_non_null(d);
    unsigned files = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        files += de->d_name[0] != '.';
    }
    closedir(d);
    assert_int_equal(files, 0);
    assert_int_equal(obj_get(f->store, "safe", f->buf, OBJ_DATA_BYTES_MAX, &got, NULL), 0);
    assert_int_equal(got, 100000);
    harness_rm_rf(outside);
}

static void test_two_handles_on_one_directory_do_not_collide(void **state)
{
    struct fixture *f = *state;
    struct obj_store *other = NULL;
    char key[32];

    assert_int_equal(obj_store_open(f->url, NULL, &other, NULL), 0);
    for (unsigned i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "two/%u", i);
        assert_int_equal(obj_put(i % 2 ? other : f->store, key, f->data, 100, NULL), 0);
    }
    obj_store_close(other);
}

struct overwriter {
    const char *url;
    const uint8_t *data;
    atomic_bool stop;
};

static void *overwrite_main(void *arg)
{
    struct overwriter *o = arg;
    struct obj_store *s = NULL;

    if (obj_store_open(o->url, NULL, &s, NULL) != 0)
        return NULL;
    for (unsigned i = 0; i < 400 && !atomic_load(&o->stop); i++) {
        obj_put(s, "race", o->data + (i % 2) * 7, 1000000, NULL);
    }
    obj_store_close(s);
    return NULL;
}

static void test_range_read_racing_an_overwrite_is_not_corrupt(void **state)
{
    struct fixture *f = *state;
    struct overwriter o = {.url = f->url, .data = f->data};
    pthread_t th;

    assert_int_equal(obj_put(f->store, "race", f->data, 1000000, NULL), 0);
    assert_int_equal(pthread_create(&th, NULL, overwrite_main, &o), 0);
    for (unsigned i = 0; i < 2000; i++) {
        size_t got = 0;
        char errmsg[OBJ_ERRMSG_MAX] = "";
        int rc = obj_get_range(f->store, "race", 600000, 5000, f->buf, &got, errmsg);
        if (rc != 0)
            fail_msg("read %u: %d %s", i, rc, errmsg);
        assert_int_equal(got, 5000);
        assert_true(memcmp(f->buf, f->data + 600000, 5000) == 0 ||
                    memcmp(f->buf, f->data + 7 + 600000, 5000) == 0);
    }
    atomic_store(&o.stop, true);
    pthread_join(th, NULL);
}

/* Two writers whose deletes empty a shared directory, which the store
 * then prunes: a put that made the directory and finds it gone before it
 * opens it makes it again, never answering ENOENT (once it did, and a
 * mount's write or a restore's pin failed). */
static void *prune_main(void *arg)
{
    struct overwriter *o = arg;
    struct obj_store *s = NULL;

    if (obj_store_open(o->url, NULL, &s, NULL) != 0)
        return NULL;
    for (unsigned i = 0; i < 3000 && !atomic_load(&o->stop); i++) { /* bounded */
        obj_put(s, "shared/b/0", o->data, 10, NULL);
        obj_delete(s, "shared/b/0", NULL);
    }
    obj_store_close(s);
    return NULL;
}

static void test_put_racing_a_pruned_directory_never_says_enoent(void **state)
{
    struct fixture *f = *state;
    struct overwriter o = {.url = f->url, .data = f->data};
    pthread_t th;
    char key[64];

    assert_int_equal(pthread_create(&th, NULL, prune_main, &o), 0);
    for (unsigned i = 0; i < 3000; i++) {
        char errmsg[OBJ_ERRMSG_MAX] = "";
        snprintf(key, sizeof(key), "shared/a%u/0", i);
        int rc = obj_put(f->store, key, f->data, 10, errmsg);
        if (rc != 0) {
            atomic_store(&o.stop, true);
            pthread_join(th, NULL);
            fail_msg("put %u: %d %s", i, rc, errmsg);
        }
        assert_int_equal(obj_delete(f->store, key, NULL), 0);
    }
    atomic_store(&o.stop, true);
    pthread_join(th, NULL);
}

static void test_key_that_is_a_directory_of_another_is_refused(void **state)
{
    struct fixture *f = *state;
    char errmsg[OBJ_ERRMSG_MAX] = "";
    size_t got = 0;

    /* a file cannot also be a directory: the one limit file:// has that S3 has not */
    assert_int_equal(obj_put(f->store, "p/a/x", f->data, 1, NULL), 0);
    assert_int_equal(obj_put(f->store, "p/a", f->data, 1, errmsg), -EISDIR);
    assert_non_null(strstr(errmsg, "p/a"));
    assert_int_equal(obj_put(f->store, "p/b", f->data, 1, NULL), 0);
    assert_int_equal(obj_put(f->store, "p/b/x", f->data, 1, errmsg), -ENOTDIR);
    /* and nothing of either was stored: reads say there is no such object */
    assert_int_equal(obj_head(f->store, "p/b/x", &got, NULL), -ENOENT);
    assert_int_equal(obj_get(f->store, "p/a", f->buf, 10, &got, NULL), -ENOENT);
    assert_int_equal(obj_head(f->store, "p/a", &got, NULL), -ENOENT);
}

static void test_delete_removes_empty_directories(void **state)
{
    struct fixture *f = *state;
    char path[512];

    assert_int_equal(obj_put(f->store, "d1/d2/d3/obj", f->data, 1, NULL), 0);
    assert_int_equal(obj_put(f->store, "d1/keep", f->data, 1, NULL), 0);
    assert_int_equal(obj_delete(f->store, "d1/d2/d3/obj", NULL), 0);
    snprintf(path, sizeof(path), "%s/d1/d2", f->dir);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/d1/keep", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    /* and a put recreates them */
    assert_int_equal(obj_put(f->store, "d1/d2/d3/obj", f->data, 1, NULL), 0);
}

/* ---- fault:// ---------------------------------------------------------------------- */

static void fault_url(const struct fixture *f, char *out, size_t cap, const char *params)
{
    snprintf(out, cap, "fault://?inner=file%%3A%%2F%%2F%s&%s", f->dir, params);
}

static void test_fault_torn_put_is_never_read_as_data(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = NULL;
    char url[700];
    char errmsg[OBJ_ERRMSG_MAX] = "";
    size_t got = 0;

    fault_url(f, url, sizeof(url), "fail_every=1&fail_ops=1&torn_puts=1");
    assert_int_equal(obj_store_open(url, NULL, &s, errmsg), 0);
    assert_int_equal(obj_put(s, "torn", f->data, 200000, errmsg), -EIO);
    assert_non_null(strstr(errmsg, "injected"));
    /* half an object is stored; every read of it is refused */
    assert_int_equal(obj_get(s, "torn", f->buf, OBJ_DATA_BYTES_MAX, &got, NULL), -EBADMSG);
    assert_int_equal(obj_get_range(s, "torn", 150000, 100, f->buf, &got, NULL), -EBADMSG);
    obj_store_close(s);
}

static void test_fault_every_nth_call_fails_with_chosen_errno(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = NULL;
    char url[700];
    unsigned failures = 0;

    fault_url(f, url, sizeof(url), "fail_every=3&errno=28"); /* ENOSPC */
    assert_int_equal(obj_store_open(url, NULL, &s, NULL), 0);
    for (unsigned i = 0; i < 30; i++) {
        int rc = obj_put(s, "nth", f->data, 10, NULL);
        assert_true(rc == 0 || rc == -ENOSPC);
        failures += rc == -ENOSPC;
    }
    assert_int_equal(failures, 10);
    obj_store_close(s);
}

static void test_fault_flipped_read_bits_are_caught(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = NULL;
    char url[700];
    unsigned bad = 0;

    assert_int_equal(obj_put(f->store, "flip", f->data, 300000, NULL), 0);
    fault_url(f, url, sizeof(url), "flip_reads=1");
    assert_int_equal(obj_store_open(url, NULL, &s, NULL), 0);
    for (unsigned i = 0; i < 10; i++) {
        size_t got = 0;
        int rc = obj_get(s, "flip", f->buf, OBJ_DATA_BYTES_MAX, &got, NULL);
        if (rc == 0)
            assert_memory_equal(f->buf, f->data, 300000);
        else
            assert_int_equal(rc, -EBADMSG);
        bad += rc != 0;
    }
    assert_int_equal(bad, 5); /* every second read is damaged */
    obj_store_close(s);
}

static void test_fault_slow_gets_wait_and_bad_delays_are_refused(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = NULL;
    char url[700];
    char errmsg[OBJ_ERRMSG_MAX] = "";
    size_t got = 0;
    struct timespec t0;
    struct timespec t1;

    fault_url(f, url, sizeof(url), "get_delay_ms=60001");
    assert_int_equal(obj_store_open(url, NULL, &s, errmsg), -EINVAL);
    assert_non_null(strstr(errmsg, "get_delay_ms"));
    fault_url(f, url, sizeof(url), "get_delay_ms=300");
    assert_int_equal(obj_store_open(url, NULL, &s, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(obj_put(s, "slow", f->data, 1000, NULL), 0); /* puts do not wait */
    assert_int_equal(obj_get(s, "slow", f->buf, OBJ_DATA_BYTES_MAX, &got, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(got, 1000);
    assert_memory_equal(f->buf, f->data, 1000);
    /* the get waited its delay (a lower bound: the injected wait, not a speed) */
    assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 300);
    obj_store_close(s);
    fault_url(f, url, sizeof(url), "put_delay_ms=300");
    assert_int_equal(obj_store_open(url, NULL, &s, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(obj_put(s, "slow", f->data, 1000, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 300);
    obj_store_close(s);
}

/* ---- allocation failure ------------------------------------------------------------ */

static atomic_int alloc_countdown = -1; /* < 0: never fail */

static bool alloc_should_fail(void)
{
    return atomic_load(&alloc_countdown) >= 0 && atomic_fetch_sub(&alloc_countdown, 1) == 0;
}

static void *failing_malloc(size_t n)
{
    return alloc_should_fail() ? NULL : malloc(n);
}

static void *failing_calloc(size_t n, size_t m)
{
    return alloc_should_fail() ? NULL : calloc(n, m);
}

static void test_every_allocation_failure_is_enomem_and_leaks_nothing(void **state)
{
    struct fixture *f = *state;
    unsigned enomem = 0;

    assert_int_equal(obj_put(f->store, "oom/obj", f->data, 400000, NULL), 0);
    assert_int_equal(obj_put(f->store, "oom/list1", f->data, 1, NULL), 0);
    obj_set_allocator(failing_malloc, failing_calloc, free);
    /* fail the 0th, 1st, ... allocation of each call until it succeeds */
    for (int n = 0; n < 16; n++) {
        struct obj_store *s = NULL;
        struct obj_list_entry entries[4];
        struct obj_list_page page = {.entries = entries, .entry_cap = 4};
        size_t got = 0;
        atomic_store(&alloc_countdown, n);
        int rc = obj_store_open(f->url, NULL, &s, NULL);
        if (rc == 0)
            rc = obj_get_range(s, "oom/obj", 300000, 1000, f->buf, &got, NULL);
        if (rc == 0)
            rc = obj_list(s, "oom/", NULL, &page, NULL);
        atomic_store(&alloc_countdown, -1);
        assert_true(rc == 0 || rc == -ENOMEM);
        enomem += rc == -ENOMEM;
        if (rc == 0) {
            assert_memory_equal(f->buf, f->data + 300000, 1000);
            assert_int_equal(page.entry_count, 2);
        }
        obj_store_close(s);
    }
    obj_set_allocator(NULL, NULL, NULL);
    assert_true(enomem >= 3); /* open, range scratch, list level */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_during_put_never_leaves_partial_object, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stale_temp_files_are_swept_fresh_ones_kept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_symlinks_in_store_are_never_followed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list_is_in_byte_order_across_directories, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_key_that_is_a_directory_of_another_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list_skips_files_that_are_not_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmp_swapped_for_a_symlink_cannot_redirect_writes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles_on_one_directory_do_not_collide, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_range_read_racing_an_overwrite_is_not_corrupt,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_racing_a_pruned_directory_never_says_enoent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_removes_empty_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_torn_put_is_never_read_as_data, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fault_every_nth_call_fails_with_chosen_errno, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fault_flipped_read_bits_are_caught, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_slow_gets_wait_and_bad_delays_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_every_allocation_failure_is_enomem_and_leaks_nothing, setup, teardown),
    };
    return cmocka_run_group_tests_name("test_file", tests, NULL, NULL);
}
