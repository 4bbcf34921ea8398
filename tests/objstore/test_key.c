/* tests/objstore/test_key.c - key rules and the store-URL parser.
 * Goal: no key can name a path outside its store, every limit holds at
 * limit and fails at limit + 1, and no URL, however malformed, crashes the
 * parser or passes half-parsed.
 * Method: table tests at each limit; a seeded mutation fuzz of both parsers
 * (thousands of inputs; ASan and UBSan watch in CI). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FUZZ_ROUNDS 50000u

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A key of n bytes made of segments of seg bytes. */
static char *key_of(size_t n, size_t seg)
{
    char *k = malloc(n + 1);

    assert_non_null(k);
    for (size_t i = 0; i < n; i++) {
        k[i] = (seg > 0 && i % (seg + 1) == seg) ? '/' : 'a' + (char)(i % 26);
    }
    if (n > 0 && k[n - 1] == '/')
        k[n - 1] = 'z';
    k[n] = '\0';
    return k;
}

/* ---- keys ------------------------------------------------------------------ */

static void test_key_check_accepts_block_keys(void **state)
{
    (void)state;
    assert_int_equal(obj__key_check("chunks/0/1/1234_0_4194304", false, NULL), 0);
    assert_int_equal(obj__key_check("a", false, NULL), 0);
    assert_int_equal(obj__key_check("A-Z_a.z!*'()/x", false, NULL), 0);
    assert_int_equal(obj__key_check("a..b/c.", false, NULL), 0); /* dots inside are fine */
}

static void test_key_check_rejects_escapes(void **state)
{
    static const char *const bad[] = {
        "", "/abs", "..", "../x", "a/../b", "a/..", ".", "./a", "a/./b", ".hidden", "a/.tmp/x",
        "a//b", "a/", "a b", "a\\b", "a%2e", "a?b", "a#b", "a&b", "caf\xc3\xa9", "a\nb", "a\tb",
    };
    char errmsg[OBJ_ERRMSG_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errmsg[0] = '\0';
        assert_int_equal(obj__key_check(bad[i], false, errmsg), -EINVAL);
        assert_true(strlen(errmsg) > 0);
    }
    assert_int_equal(obj__key_check(NULL, false, NULL), -EINVAL);
}

static void test_key_check_limits_hold_at_limit_plus_one(void **state)
{
    char *k;

    (void)state;
    k = key_of(OBJ_KEY_BYTES_MAX, 200);
    assert_int_equal(obj__key_check(k, false, NULL), 0);
    free(k);
    k = key_of(OBJ_KEY_BYTES_MAX + 1, 200);
    assert_int_equal(obj__key_check(k, false, NULL), -ENAMETOOLONG);
    free(k);
    k = key_of(OBJ_SEGMENT_BYTES_MAX, 0);
    assert_int_equal(obj__key_check(k, false, NULL), 0);
    free(k);
    k = key_of(OBJ_SEGMENT_BYTES_MAX + 1, 0);
    assert_int_equal(obj__key_check(k, false, NULL), -ENAMETOOLONG);
    free(k);
    k = key_of(2 * OBJ_KEY_SEGMENTS_MAX - 1, 1); /* 64 one-byte segments */
    assert_int_equal(obj__key_check(k, false, NULL), 0);
    free(k);
    k = key_of(2 * OBJ_KEY_SEGMENTS_MAX + 1, 1); /* 65 */
    assert_int_equal(obj__key_check(k, false, NULL), -EINVAL);
    free(k);
}

static void test_key_check_prefix_may_be_empty_or_end_in_slash(void **state)
{
    (void)state;
    assert_int_equal(obj__key_check("", true, NULL), 0);
    assert_int_equal(obj__key_check("chunks/", true, NULL), 0);
    assert_int_equal(obj__key_check("chunks/1", true, NULL), 0);
    assert_int_equal(obj__key_check("../", true, NULL), -EINVAL);
    assert_int_equal(obj__key_check("/", true, NULL), -EINVAL);
}

/* ---- URLs ------------------------------------------------------------------ */

static void test_url_parse_splits_parts(void **state)
{
    struct obj__url u;

    (void)state;
    assert_int_equal(obj__url_parse("s3://bkt/pre/fix?endpoint=http://127.0.0.1:9000&region=eu-"
                                    "west-1&path_style=1",
                                    &u, NULL),
                     0);
    assert_string_equal(u.scheme, "s3");
    assert_string_equal(u.host, "bkt");
    assert_string_equal(u.path, "pre/fix");
    assert_int_equal(u.param_count, 3);
    assert_string_equal(obj__url_param(&u, "endpoint"), "http://127.0.0.1:9000");
    assert_string_equal(obj__url_param(&u, "region"), "eu-west-1");
    assert_null(obj__url_param(&u, "nope"));

    assert_int_equal(obj__url_parse("file:///var/lib/arbor%20x", &u, NULL), 0);
    assert_string_equal(u.host, "");
    assert_string_equal(u.path, "var/lib/arbor x");

    assert_int_equal(obj__url_parse("fault://?inner=file%3A%2F%2F%2Ftmp%3Fcreate%3D1&fail_every=3",
                                    &u, NULL),
                     0);
    assert_string_equal(obj__url_param(&u, "inner"), "file:///tmp?create=1");
}

static void test_url_parse_rejects_malformed(void **state)
{
    static const char *const bad[] = {
        "", "file", "://x", "FILE:///x", "s3://b?x", "s3://b?=1", "s3://b?a=1&a=2", "s3://b?a=1&",
        "s3://b?a=%zz", "s3://b?a=%0", "s3://b/%00", "s3:/b",
    };
    struct obj__url u;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char errmsg[OBJ_ERRMSG_MAX] = "";
        assert_int_equal(obj__url_parse(bad[i], &u, errmsg), -EINVAL);
        assert_true(strlen(errmsg) > 0);
    }
    assert_int_equal(obj__url_parse(NULL, &u, NULL), -EINVAL);
}

static void test_url_param_u32_bounds(void **state)
{
    struct obj__url u;
    uint32_t v = 7;

    (void)state;
    assert_int_equal(obj__url_parse("s3://b?n=20&m=21&x=-1&y=1x&z=99999999999", &u, NULL), 0);
    assert_int_equal(obj__url_param_u32(&u, "n", 0, 20, &v, NULL), 0);
    assert_int_equal(v, 20);
    assert_int_equal(obj__url_param_u32(&u, "m", 0, 20, &v, NULL), -EINVAL);
    assert_int_equal(obj__url_param_u32(&u, "x", 0, 20, &v, NULL), -EINVAL);
    assert_int_equal(obj__url_param_u32(&u, "y", 0, 20, &v, NULL), -EINVAL);
    assert_int_equal(obj__url_param_u32(&u, "z", 0, UINT32_MAX, &v, NULL), -EINVAL);
    assert_int_equal(obj__url_param_u32(&u, "absent", 0, 20, &v, NULL), 0);
    assert_int_equal(v, 20);
}

static void test_url_and_key_fuzz_never_crash(void **state)
{
    static const char seeds[][96] = {
        "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=1",
        "file:///tmp/arbor?create=1",
        "fault://?inner=file%3A%2F%2F%2Ftmp&fail_every=2&errno=5",
        "chunks/0/0/1_0_4194304",
    };
    static const char alphabet[] = "/.%?&=:0aZ\x01\xff \\";
    uint64_t rng = 0xC0FFEE;
    char buf[128];

    (void)state;
    for (unsigned round = 0; round < FUZZ_ROUNDS; round++) {
        const char *seed = seeds[round % 4];
        size_t n = strlen(seed);
        struct obj__url u;
        char errmsg[OBJ_ERRMSG_MAX];
        memcpy(buf, seed, n + 1);
        for (unsigned e = 0, edits = 1 + (unsigned)(rng_next(&rng) % 6); e < edits; e++) {
            size_t at = rng_next(&rng) % (n + 1);
            unsigned kind = (unsigned)(rng_next(&rng) % 3);
            char c = alphabet[rng_next(&rng) % (sizeof(alphabet) - 1)];
            if (kind == 0 && at < n) {
                buf[at] = c; /* replace */
            } else if (kind == 1 && n + 1 < sizeof(buf)) {
                memmove(buf + at + 1, buf + at, n - at + 1); /* insert */
                buf[at] = c;
                n++;
            } else if (at < n) {
                memmove(buf + at, buf + at + 1, n - at); /* delete */
                n--;
            }
        }
        int rc = obj__url_parse(buf, &u, errmsg);
        assert_true(rc == 0 || rc == -EINVAL);
        if (rc == 0) {
            assert_true(strlen(u.scheme) > 0);
            assert_true(u.param_count <= OBJ_URL_PARAMS_MAX);
        }
        rc = obj__key_check(buf, round % 2 == 0, errmsg);
        assert_true(rc == 0 || rc == -EINVAL || rc == -ENAMETOOLONG);
        if (rc == 0) {
            /* no segment can be "." or "..", nor begin with '.'; none is empty */
            assert_true(buf[0] != '/' && buf[0] != '.');
            assert_null(strstr(buf, "/."));
            assert_null(strstr(buf, "//"));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_check_accepts_block_keys),
        cmocka_unit_test(test_key_check_rejects_escapes),
        cmocka_unit_test(test_key_check_limits_hold_at_limit_plus_one),
        cmocka_unit_test(test_key_check_prefix_may_be_empty_or_end_in_slash),
        cmocka_unit_test(test_url_parse_splits_parts),
        cmocka_unit_test(test_url_parse_rejects_malformed),
        cmocka_unit_test(test_url_param_u32_bounds),
        cmocka_unit_test(test_url_and_key_fuzz_never_crash),
    };
    return cmocka_run_group_tests_name("test_key", tests, NULL, NULL);
}
