/* tests/objstore/test_s3.c - what only the s3:// backend does: retries,
 * back-off limits, error mapping, credentials and URL checks.
 * Goal: a flaky server is retried a bounded number of times and then gives a
 * clear error; a refusal (4xx) is never retried; secrets never reach an
 * error line.
 * Method: a real s3rver behind tests/objstore/flaky_proxy.py, which fails
 * the first N requests in a chosen way and logs every request it sees, so
 * each test counts the attempts the client really made. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"
#include "objstore.h"

/* Fast retries: the tests count attempts, they do not wait for back-off. */
#define FAST "retries=3&backoff_ms=1&backoff_max_ms=5&connect_timeout_ms=2000"

struct fixture {
    struct harness_proc server;
    struct harness_proc proxy;
    char log[300]; /* the proxy's request log */
    char scratch[256];
    uint8_t data[100000];
    uint8_t buf[100000];
};

static int setup_group(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    for (size_t i = 0; i < sizeof(f->data); i++) {
        f->data[i] = (uint8_t)(i * 31 + 7);
    }
    harness_s3rver_start(&f->server);
    harness_tmpdir(f->scratch);
    *state = f;
    return 0;
}

static int teardown_group(void **state)
{
    struct fixture *f = *state;

    harness_proc_stop(&f->server);
    harness_rm_rf(f->scratch);
    free(f);
    return 0;
}

static int teardown_test(void **state)
{
    struct fixture *f = *state;

    harness_proc_stop(&f->proxy);
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    return 0;
}

/* Put a proxy that fails `count` requests by `mode` in front of s3rver and
 * open a store through it. */
static struct obj_store *open_via_proxy(struct fixture *f, const char *mode, int count,
                                        const char *extra)
{
    struct obj_store *s = NULL;
    char url[512];
    char errmsg[OBJ_ERRMSG_MAX] = "";

    snprintf(f->log, sizeof(f->log), "%s/proxy-%s-%d.log", f->scratch, mode, count);
    unlink(f->log);
    harness_proxy_start(&f->proxy, f->server.port, mode, count, f->log);
    harness_s3_url(url, sizeof(url), f->proxy.port, "retry", extra);
    if (obj_store_open(url, NULL, &s, errmsg) != 0)
        fail_msg("open %s: %s", url, errmsg);
    return s;
}

/* ---- retries ------------------------------------------------------------------ */

static void test_500_then_200_succeeds_after_retries(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = open_via_proxy(f, "status:500", 2, FAST);
    char errmsg[OBJ_ERRMSG_MAX] = "";
    size_t got = 0;

    assert_int_equal(obj_put(s, "a/b", f->data, 5000, errmsg), 0);
    assert_int_equal(harness_count_lines(f->log, "-> 500"), 2);
    assert_int_equal(harness_count_lines(f->log, "PUT /" HARNESS_BUCKET "/retry/a/b -> 200"), 1);
    assert_int_equal(obj_get(s, "a/b", f->buf, sizeof(f->buf), &got, errmsg), 0);
    assert_int_equal(got, 5000);
    assert_memory_equal(f->buf, f->data, 5000);
    obj_store_close(s);
}

static void test_slowdown_is_retried(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = open_via_proxy(f, "status:503:SlowDown", 3, FAST);
    size_t got = 0;

    assert_int_equal(obj_put(s, "slow", f->data, 100, NULL), 0);
    assert_int_equal(harness_count_lines(f->log, "-> 503"), 3);
    assert_int_equal(obj_head(s, "slow", &got, NULL), 0);
    assert_int_equal(got, 100);
    obj_store_close(s);
}

static void test_connection_reset_is_retried(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = open_via_proxy(f, "reset", 2, FAST);
    size_t got = 0;

    assert_int_equal(obj_put(s, "reset", f->data, 70000, NULL), 0);
    assert_int_equal(harness_count_lines(f->log, "-> reset"), 2);
    assert_int_equal(obj_get(s, "reset", f->buf, sizeof(f->buf), &got, NULL), 0);
    assert_memory_equal(f->buf, f->data, 70000);
    obj_store_close(s);
}

static void test_persistent_500_fails_after_bounded_attempts(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = open_via_proxy(f, "status:500", 1000, FAST);
    char errmsg[OBJ_ERRMSG_MAX] = "";

    assert_int_equal(obj_put(s, "never", f->data, 10, errmsg), -EIO);
    assert_int_equal(harness_count_lines(f->log, "-> 500"), 4); /* 1 + retries=3 */
    assert_non_null(strstr(errmsg, "HTTP 500"));
    assert_non_null(strstr(errmsg, "after 4 attempts"));
    obj_store_close(s);
}

static void test_throttling_that_never_ends_is_eagain(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = open_via_proxy(f, "status:503:SlowDown", 1000, FAST);
    char errmsg[OBJ_ERRMSG_MAX] = "";

    assert_int_equal(obj_delete(s, "x", errmsg), -EAGAIN);
    assert_non_null(strstr(errmsg, "SlowDown"));
    obj_store_close(s);
}

static void test_4xx_is_not_retried(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = open_via_proxy(f, "status:403:AccessDenied", 1000, FAST);
    char errmsg[OBJ_ERRMSG_MAX] = "";

    assert_int_equal(obj_put(s, "denied", f->data, 10, errmsg), -EACCES);
    assert_int_equal(harness_count_lines(f->log, "REQ "), 1);
    assert_non_null(strstr(errmsg, "AccessDenied"));
    obj_store_close(s);
}

static void test_server_down_fails_after_bounded_retries(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = NULL;
    char url[512];
    char errmsg[OBJ_ERRMSG_MAX] = "";

    (void)f;
    harness_s3_url(url, sizeof(url), harness_closed_port(), "down", FAST);
    assert_int_equal(obj_store_open(url, NULL, &s, NULL), 0); /* opening does no I/O */
    assert_int_equal(obj_put(s, "k", f->data, 10, errmsg), -ECONNREFUSED);
    assert_non_null(strstr(errmsg, "after 4 attempts"));
    assert_int_equal(obj_get(s, "k", f->buf, 10, &(size_t){0}, NULL), -ECONNREFUSED);
    obj_store_close(s);
}

static void test_missing_bucket_is_enoent(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = NULL;
    char url[512];

    snprintf(url, sizeof(url), "s3://no-such-bucket/x?endpoint=http://127.0.0.1:%d&" FAST,
             f->server.port);
    assert_int_equal(obj_store_open(url, NULL, &s, NULL), 0);
    assert_int_equal(obj_put(s, "k", f->data, 10, NULL), -ENOENT);
    obj_store_close(s);
}

/* ---- credentials and URLs --------------------------------------------------------- */

static void test_credentials_missing_is_eacces_with_advice(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = NULL;
    char url[512];
    char errmsg[OBJ_ERRMSG_MAX] = "";
    char missing[300];

    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    snprintf(missing, sizeof(missing), "%s/no-such-file", f->scratch);
    setenv("AWS_SHARED_CREDENTIALS_FILE", missing, 1);
    harness_s3_url(url, sizeof(url), f->server.port, "c", "");
    assert_int_equal(obj_store_open(url, NULL, &s, errmsg), -EACCES);
    assert_null(s);
    assert_non_null(strstr(errmsg, "AWS_ACCESS_KEY_ID"));
}

static void test_credentials_file_profile_is_used(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = NULL;
    char path[300];
    char url[700];
    char extra[400];
    char errmsg[OBJ_ERRMSG_MAX] = "";
    FILE *fp;

    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    snprintf(path, sizeof(path), "%s/credentials", f->scratch);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("# comment\n[default]\naws_access_key_id = WRONG\naws_secret_access_key = x\n\n"
          "[arbor]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n",
          fp);
    fclose(fp);
    snprintf(extra, sizeof(extra), "profile=arbor&credentials=%s", path);
    harness_s3_url(url, sizeof(url), f->server.port, "c", extra);
    assert_int_equal(obj_store_open(url, NULL, &s, errmsg), 0);
    assert_int_equal(obj_put(s, "via-file", f->data, 10, errmsg), 0);
    obj_store_close(s);
    /* the default section has a key s3rver does not know: 403, not retried */
    snprintf(extra, sizeof(extra), "credentials=%s&" FAST, path);
    harness_s3_url(url, sizeof(url), f->server.port, "c", extra);
    assert_int_equal(obj_store_open(url, NULL, &s, errmsg), 0);
    assert_int_equal(obj_put(s, "wrong-key", f->data, 10, errmsg), -EACCES);
    assert_non_null(strstr(errmsg, "InvalidAccessKeyId"));
    obj_store_close(s);
    /* a malformed file is refused at open, with its line */
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("[arbor]\nthis line has no equals sign\n", fp);
    fclose(fp);
    snprintf(extra, sizeof(extra), "profile=arbor&credentials=%s", path);
    harness_s3_url(url, sizeof(url), f->server.port, "c", extra);
    assert_int_equal(obj_store_open(url, NULL, &s, errmsg), -EINVAL);
    assert_non_null(strstr(errmsg, "line 2"));
}

static void test_secret_never_appears_in_errors(void **state)
{
    struct fixture *f = *state;
    struct obj_store *s = NULL;
    char url[512];
    char errmsg[OBJ_ERRMSG_MAX] = "";

    setenv("AWS_ACCESS_KEY_ID", "UNKNOWNKEY", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "TOP-SECRET-VALUE", 1);
    harness_s3_url(url, sizeof(url), f->server.port, "c", FAST);
    assert_int_equal(obj_store_open(url, NULL, &s, errmsg), 0);
    assert_int_equal(obj_put(s, "k", f->data, 10, errmsg), -EACCES);
    assert_null(strstr(errmsg, "TOP-SECRET-VALUE"));
    assert_null(strstr(obj_store_url(s), "TOP-SECRET-VALUE"));
    obj_store_close(s);
}

static void test_bad_urls_are_refused_with_reason(void **state)
{
    static const char *const bad[] = {
        "s3://",                                          /* no bucket */
        "s3://Bad_Bucket/x",                              /* not a bucket name */
        "s3://b/x?endpoint=ftp://h",                      /* not http */
        "s3://b/x?endpoint=http://h/path",                /* endpoint with a path */
        "s3://b/x?endpoint=http://user:pw@h",             /* credentials in the URL */
        "s3://b/x?retries=21",                            /* over the cap */
        "s3://b/x?colour=blue",                           /* unknown parameter */
        "s3://b/../x",                                    /* prefix escapes */
        "s3://b/x?region=us%20east",                      /* not a region */
        "gopher://x",                                     /* unknown scheme */
        "file://host/dir",                                /* file:// with a host */
        "fault://?fail_every=2",                          /* no inner */
    };
    struct obj_store *s = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char errmsg[OBJ_ERRMSG_MAX] = "";
        int rc = obj_store_open(bad[i], NULL, &s, errmsg);
        if (rc == 0)
            fail_msg("%s was accepted", bad[i]);
        assert_int_equal(rc, -EINVAL);
        assert_true(strlen(errmsg) > 0);
    }
    char errmsg[OBJ_ERRMSG_MAX] = "";
    assert_int_equal(obj_store_open("file:///no/such/arbor/dir", NULL, &s, errmsg), -ENOENT);
    assert_non_null(strstr(errmsg, "/no/such/arbor/dir"));
}

/* Objects another tool wrote beside arbor's, and the "folder" marker an S3
 * console makes, are skipped, and paging still walks past them. */
static void test_list_skips_foreign_keys_and_pages_past_them(void **state)
{
    struct fixture *f = *state;
    struct obj__backend *raw = NULL;
    struct obj_store *s = NULL;
    char url[512];
    static const char *const foreign[] = {"mix/", "mix/a b", "mix/b b", "mix/c b", "mix/.x"};
    struct iovec iov = {.iov_base = f->data, .iov_len = 300};

    /* the backend below the store writes any key, unframed: another tool */
    harness_s3_url(url, sizeof(url), f->server.port, "", "");
    assert_int_equal(obj__backend_open(url, &raw, NULL), 0);
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
        assert_int_equal(raw->ops->put(raw, foreign[i], &iov, 1, NULL), 0);
    }
    raw->ops->close(raw);
    harness_s3_url(url, sizeof(url), f->server.port, "mix", "");
    assert_int_equal(obj_store_open(url, NULL, &s, NULL), 0);
    assert_int_equal(obj_put(s, "z-mine", f->data, 10, NULL), 0);
    struct obj_list_entry entries[2];
    struct obj_list_page page = {.entries = entries, .entry_cap = 2};
    char last[OBJ_KEY_BYTES_MAX + 1] = "";
    unsigned mine = 0;
    for (unsigned pages = 0; pages < 10; pages++) {
        char errmsg[OBJ_ERRMSG_MAX] = "";
        int rc = obj_list(s, "", last, &page, errmsg);
        if (rc != 0)
            fail_msg("list after '%s': %s", last, errmsg);
        for (unsigned i = 0; i < page.entry_count; i++) {
            assert_string_equal(page.entries[i].key, "z-mine");
            mine++;
        }
        memcpy(last, page.last_key, sizeof(last));
        if (!page.is_truncated)
            break;
    }
    assert_int_equal(mine, 1);
    assert_false(page.is_truncated);
    obj_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_500_then_200_succeeds_after_retries, teardown_test),
        cmocka_unit_test_teardown(test_slowdown_is_retried, teardown_test),
        cmocka_unit_test_teardown(test_connection_reset_is_retried, teardown_test),
        cmocka_unit_test_teardown(test_persistent_500_fails_after_bounded_attempts, teardown_test),
        cmocka_unit_test_teardown(test_throttling_that_never_ends_is_eagain, teardown_test),
        cmocka_unit_test_teardown(test_4xx_is_not_retried, teardown_test),
        cmocka_unit_test_teardown(test_server_down_fails_after_bounded_retries, teardown_test),
        cmocka_unit_test_teardown(test_missing_bucket_is_enoent, teardown_test),
        cmocka_unit_test_teardown(test_credentials_missing_is_eacces_with_advice, teardown_test),
        cmocka_unit_test_teardown(test_credentials_file_profile_is_used, teardown_test),
        cmocka_unit_test_teardown(test_secret_never_appears_in_errors, teardown_test),
        cmocka_unit_test_teardown(test_bad_urls_are_refused_with_reason, teardown_test),
        cmocka_unit_test_teardown(test_list_skips_foreign_keys_and_pages_past_them,
                                  teardown_test),
    };
    return cmocka_run_group_tests_name("test_s3", tests, setup_group, teardown_group);
}
