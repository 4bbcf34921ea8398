/* tests/meta/test_base.c - the base's helpers that touch the disk:
 * ar_mkdirs() makes a path and its missing parents, takes what is there
 * already, and refuses a path through or at something that is not a
 * directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../objstore/harness.h"
#include "meta.h"

static bool is_dir(const char *path, mode_t mode)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == mode;
}

static void test_mkdirs_makes_parents_and_takes_what_is_there(void **state)
{
    char top[256];
    char path[400];

    (void)state;
    harness_tmpdir(top);
    snprintf(path, sizeof(path), "%s/a//b/c", top); /* a doubled slash too */
    assert_int_equal(ar_mkdirs(path, 0700), 0);
    assert_true(is_dir(path, 0700));
    snprintf(path, sizeof(path), "%s/a", top);
    assert_true(is_dir(path, 0700));
    snprintf(path, sizeof(path), "%s/a/b/c/", top); /* there already, with a trailing slash */
    assert_int_equal(ar_mkdirs(path, 0755), 0);
    harness_rm_rf(top);
}

static void test_mkdirs_refuses_files_on_the_way(void **state)
{
    char top[256];
    char path[400];

    (void)state;
    harness_tmpdir(top);
    snprintf(path, sizeof(path), "%s/file", top);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ar_mkdirs(path, 0700), -ENOTDIR); /* ends at a file */
    snprintf(path, sizeof(path), "%s/file/below", top);
    assert_int_equal(ar_mkdirs(path, 0700), -ENOTDIR); /* through a file */
    assert_int_equal(ar_mkdirs("", 0700), -ENOENT);
    char long_path[5000];
    memset(long_path, 'x', sizeof(long_path) - 1);
    long_path[sizeof(long_path) - 1] = '\0';
    assert_int_equal(ar_mkdirs(long_path, 0700), -ENAMETOOLONG);
    harness_rm_rf(top);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mkdirs_makes_parents_and_takes_what_is_there),
        cmocka_unit_test(test_mkdirs_refuses_files_on_the_way),
    };
    return cmocka_run_group_tests_name("test_base", tests, NULL, NULL);
}
