/* tests/client/test_cache.c - the disk block cache (client/cache.c) on a
 * small tmpfs of its own (as root; skipped otherwise): it never fills its
 * file system, whatever its bound, and the newest blocks stay readable; and
 * it survives its directory being removed under it; and it keeps big
 * blocks on its own thread. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

#define FS_BYTES    (8u << 20)
#define BLOCK_BYTES (256u << 10)

static char mnt[64];

static int setup(void **state)
{
    (void)state;
    snprintf(mnt, sizeof(mnt), "/tmp/arbor-test-cache.XXXXXX");
    if (mkdtemp(mnt) == NULL)
        return -1;
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=8m") != 0) {
        rmdir(mnt);
        mnt[0] = '\0'; /* not root: the test skips */
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (mnt[0] != '\0') {
        umount2(mnt, MNT_DETACH);
        rmdir(mnt);
    }
    return 0;
}

static uint64_t free_bytes(const char *dir)
{
    struct statvfs st;

    assert_int_equal(statvfs(dir, &st), 0);
    return (uint64_t)st.f_bavail * st.f_frsize;
}

/* A bound of 1 GiB on an 8 MiB file system: the cache stops growing once
 * less than a tenth is free, and from then on each block takes the place
 * of older ones. Sixty puts of 256 KiB would need 15 MiB. */
static void test_cache_never_fills_its_disk(void **state)
{
    struct block_cache *c = NULL;
    struct block_cache_stats st;
    char errmsg[256] = "";
    char dir[128];
    char name[32];
    uint8_t *block = malloc(BLOCK_BYTES);
    uint8_t *back = malloc(BLOCK_BYTES);
    uint64_t least_free = FS_BYTES;

    (void)state;
    if (mnt[0] == '\0')
        skip();
    assert_non_null(block);
    assert_non_null(back);
    snprintf(dir, sizeof(dir), "%s/cache", mnt);
    assert_int_equal(block_cache_open(dir, 1ull << 30, 0, &c, errmsg), 0);
    for (unsigned i = 0; i < 60; i++) {
        memset(block, (int)i, BLOCK_BYTES);
        snprintf(name, sizeof(name), "%016x_0", i);
        block_cache_put(c, name, block, BLOCK_BYTES);
        uint64_t f = free_bytes(mnt);
        least_free = f < least_free ? f : least_free;
        /* the newest block is always there, whole */
        assert_int_equal(block_cache_read(c, name, 0, BLOCK_BYTES, back), 0);
        assert_memory_equal(back, block, BLOCK_BYTES);
    }
    block_cache_stats(c, &st);
    assert_true(least_free >= FS_BYTES / 20); /* never full: a tenth, less one block */
    assert_true(st.crowded >= 20);            /* every put past the first ~28 */
    assert_true(st.bytes <= FS_BYTES);
    snprintf(name, sizeof(name), "%016x_0", 0u);
    assert_int_equal(block_cache_read(c, name, 0, BLOCK_BYTES, back), -ENOENT); /* oldest out */
    block_cache_close(c);
    free(block);
    free(back);
}

/* Leaving 16 MiB free on an 8 MiB file system: nothing is cached, and a
 * read of what was put finds nothing rather than a broken copy. */
static void test_cache_leaves_its_floor_free(void **state)
{
    struct block_cache *c = NULL;
    struct block_cache_stats st;
    char errmsg[256] = "";
    char dir[128];
    uint8_t *block = malloc(BLOCK_BYTES);
    uint8_t *back = malloc(BLOCK_BYTES);

    (void)state;
    if (mnt[0] == '\0')
        skip();
    assert_non_null(block);
    assert_non_null(back);
    snprintf(dir, sizeof(dir), "%s/cache", mnt);
    uint64_t before = free_bytes(mnt);
    assert_int_equal(block_cache_open(dir, 1ull << 30, 16u << 20, &c, errmsg), 0);
    memset(block, 7, BLOCK_BYTES);
    block_cache_put(c, "0000000000000001_0", block, BLOCK_BYTES);
    assert_int_equal(block_cache_read(c, "0000000000000001_0", 0, BLOCK_BYTES, back), -ENOENT);
    block_cache_stats(c, &st);
    assert_int_equal(st.bytes, 0);
    assert_true(free_bytes(mnt) + BLOCK_BYTES > before); /* no copy on the disk */
    block_cache_close(c);
    free(block);
    free(back);
}

/* A thread's put of its own block (by the order it starts in). */
static void *put_one(void *arg)
{
    static unsigned next;
    unsigned i = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
    uint8_t block[4096];
    char name[32];

    snprintf(name, sizeof(name), "%016x_1", 10 + i);
    memset(block, (int)(10 + i), sizeof(block));
    block_cache_put(arg, name, block, sizeof(block));
    return NULL;
}

/* The cache's directory removed while in use (a clean-up of ~/.cache): a
 * read of a copy that went with it is a miss, counted as removed, not as
 * damaged; the next put makes the directory again, forgets the rest, and
 * caches from then on. */
static void test_cache_directory_removed_is_made_again(void **state)
{
    struct block_cache *c = NULL;
    struct block_cache_stats st;
    char errmsg[256] = "";
    char top[64] = "/tmp/arbor-test-cache-rm.XXXXXX";
    char dir[128];
    char cmd[160];
    char name[32];
    uint8_t block[4096];
    uint8_t back[4096];

    (void)state;
    assert_non_null(mkdtemp(top));
    snprintf(dir, sizeof(dir), "%s/home/.cache/arbor", top);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(block_cache_open(dir, 1ull << 30, 0, &c, errmsg), 0);
    for (unsigned i = 0; i < 3; i++) {
        memset(block, (int)i, sizeof(block));
        snprintf(name, sizeof(name), "%016x_0", i);
        block_cache_put(c, name, block, sizeof(block));
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/home'", top);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(block_cache_read(c, "0000000000000000_0", 0, sizeof(back), back), -ENOENT);
    assert_int_equal(block_cache_open_copy(c, "0000000000000001_0", sizeof(back)), -ENOENT);
    block_cache_stats(c, &st);
    assert_int_equal(st.gone, 2);
    assert_int_equal(st.damaged, 0);
    /* four threads put at once into the missing directory: it is made
     * once, and none of their copies is forgotten */
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, put_one, (void *)c), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(access(dir, F_OK), 0);
    block_cache_stats(c, &st);
    assert_int_equal(st.remade, 1);
    assert_int_equal(st.gone, 3); /* and the third, forgotten when it was made again */
    assert_int_equal(st.bytes, 4 * sizeof(block));
    for (unsigned i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "%016x_1", 10 + i);
        memset(block, (int)(10 + i), sizeof(block));
        assert_int_equal(block_cache_read(c, name, 0, sizeof(back), back), 0);
        assert_memory_equal(back, block, sizeof(block));
    }
    assert_int_equal(block_cache_read(c, "0000000000000002_0", 0, sizeof(back), back), -ENOENT);
    block_cache_close(c);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    assert_int_equal(system(cmd), 0);
}

/* Blocks kept later: a small one is there at once; big ones are there
 * once the cache's thread kept them, at the latest when the cache closes
 * (the next open finds them, whole); past 64 MiB waiting, a block is not
 * kept, and the figures say so. */
static void test_cache_keeps_big_blocks_later(void **state)
{
    static uint8_t big[2u << 20];
    static uint8_t back[2u << 20];
    struct block_cache *c = NULL;
    struct block_cache_stats st;
    char errmsg[256] = "";
    char top[64] = "/tmp/arbor-test-cache-later.XXXXXX";
    char name[32];
    uint8_t small[4096];
    uint32_t big_len = sizeof(big);

    (void)state;
    assert_non_null(mkdtemp(top));
    /* a file system of its own, large enough for every block */
    if (mount("tmpfs", top, "tmpfs", 0, "size=128m") != 0) {
        rmdir(top);
        skip(); /* not root */
    }
    assert_int_equal(block_cache_open(top, 1ull << 30, 0, &c, errmsg), 0);
    memset(small, 7, sizeof(small));
    block_cache_put_later(c, "0000000000000001_0", small, sizeof(small));
    assert_int_equal(block_cache_read(c, "0000000000000001_0", 0, sizeof(small), back), 0);
    assert_memory_equal(back, small, sizeof(small));
    /* 40 blocks of 2 MiB at once: 80 MiB, more than may wait */
    for (unsigned i = 0; i < 40; i++) {
        memset(big, (int)(i + 1), big_len);
        snprintf(name, sizeof(name), "%016x_0", 100 + i);
        block_cache_put_later(c, name, big, big_len);
    }
    block_cache_stats(c, &st);
    assert_int_equal(st.later + st.not_kept, 40);
    assert_true(st.later >= 32); /* 64 MiB may always wait */
    uint64_t kept = st.later;
    block_cache_close(c);
    assert_int_equal(block_cache_open(top, 1ull << 30, 0, &c, errmsg), 0);
    unsigned found = 0;
    for (unsigned i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "%016x_0", 100 + i);
        if (block_cache_read(c, name, 0, big_len, back) != 0)
            continue;
        memset(big, (int)(i + 1), big_len);
        assert_memory_equal(back, big, big_len);
        found++;
    }
    assert_int_equal(found, kept);
    block_cache_close(c);
    assert_int_equal(umount2(top, MNT_DETACH), 0);
    assert_int_equal(rmdir(top), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cache_never_fills_its_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_leaves_its_floor_free, setup, teardown),
        cmocka_unit_test(test_cache_directory_removed_is_made_again),
        cmocka_unit_test(test_cache_keeps_big_blocks_later),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
