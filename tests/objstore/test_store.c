/* tests/objstore/test_store.c - the public object-store API, on both backends.
 * Goal: every call behaves the same on file:// and on a real S3 server
 * (s3rver on 127.0.0.1): round trips at every size edge, byte ranges on both
 * read paths, pagination, limits, async requests, and stored bytes damaged
 * behind the store's back are reported, never returned.
 * Method: the same tests run as two groups; each group's fixture knows where
 * its backend keeps an object's raw bytes on disk, to corrupt them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "objstore.h"

#define ASYNC_REQS 64u
#define DATA_BYTES (OBJ_DATA_BYTES_MAX + 256u)

struct fixture {
    struct obj_store *store;
    bool is_s3;
    char dir[256];             /* file://: the store; s3://: s3rver's data dir */
    struct harness_proc server;
    uint8_t *data;             /* DATA_BYTES patterned bytes: a full object at small offsets */
    uint8_t *buf;              /* as large, for reads */
};

static struct fixture *fixture_new(void)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->data = malloc(DATA_BYTES);
    f->buf = malloc(OBJ_DATA_BYTES_MAX + 1);
    assert_non_null(f->data);
    assert_non_null(f->buf);
    for (size_t i = 0; i < DATA_BYTES; i++) {
        f->data[i] = (uint8_t)((i * 2654435761u) >> 7);
    }
    return f;
}

static int setup_file(void **state)
{
    struct fixture *f = fixture_new();
    char url[512];
    char errmsg[OBJ_ERRMSG_MAX];

    harness_tmpdir(f->dir);
    snprintf(url, sizeof(url), "file://%s", f->dir);
    assert_int_equal(obj_store_open(url, NULL, &f->store, errmsg), 0);
    *state = f;
    return 0;
}

static int setup_s3(void **state)
{
    struct fixture *f = fixture_new();
    char url[512];
    char errmsg[OBJ_ERRMSG_MAX] = "";

    f->is_s3 = true;
    harness_s3rver_start(&f->server);
    snprintf(f->dir, sizeof(f->dir), "%s/data/" HARNESS_BUCKET "/store", f->server.dir);
    harness_s3_url(url, sizeof(url), f->server.port, "store", "");
    int rc = obj_store_open(url, NULL, &f->store, errmsg);
    if (rc != 0)
        fail_msg("open %s: %s", url, errmsg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    obj_store_close(f->store);
    if (f->is_s3)
        harness_proc_stop(&f->server);
    else
        harness_rm_rf(f->dir);
    free(f->data);
    free(f->buf);
    free(f);
    return 0;
}

/* Where the backend keeps key's raw bytes (header + data) on disk. */
static void raw_path(const struct fixture *f, const char *key, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s%s", f->dir, key, f->is_s3 ? "._S3rver_object" : "");
}

static void put_ok(struct fixture *f, const char *key, const void *data, size_t size)
{
    char errmsg[OBJ_ERRMSG_MAX] = "";
    int rc = obj_put(f->store, key, data, size, errmsg);

    if (rc != 0)
        fail_msg("put %s: %d %s", key, rc, errmsg);
}

/* Flip one byte of the stored object at raw offset at. */
static void corrupt_byte(const struct fixture *f, const char *key, long at)
{
    char path[1024];
    FILE *fp;
    int c;

    raw_path(f, key, path, sizeof(path));
    fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    c = fgetc(fp);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    fputc(c ^ 0x5a, fp);
    fclose(fp);
}

/* ---- round trips ----------------------------------------------------------- */

static void test_put_get_every_size_edge_round_trips(void **state)
{
    struct fixture *f = *state;
    const size_t sizes[] = {0, 1, 65535, 65536, 65537, OBJ_DATA_BYTES_MAX - 1, OBJ_DATA_BYTES_MAX};
    char key[64];

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t got = 7;
        size_t head = 7;
        snprintf(key, sizeof(key), "rt/%zu", sizes[i]);
        put_ok(f, key, f->data + i, sizes[i]);
        assert_int_equal(obj_get(f->store, key, f->buf, OBJ_DATA_BYTES_MAX, &got, NULL), 0);
        assert_int_equal(got, sizes[i]);
        assert_memory_equal(f->buf, f->data + i, sizes[i]);
        assert_int_equal(obj_head(f->store, key, &head, NULL), 0);
        assert_int_equal(head, sizes[i]);
    }
}

static void test_put_over_limit_fails_emsgsize(void **state)
{
    struct fixture *f = *state;
    char errmsg[OBJ_ERRMSG_MAX] = "";

    assert_int_equal(obj_put(f->store, "big", f->data, OBJ_DATA_BYTES_MAX + 1, errmsg), -EMSGSIZE);
    assert_non_null(strstr(errmsg, "limit"));
    assert_int_equal(obj_head(f->store, "big", &(size_t){0}, NULL), -ENOENT);
}

static void test_get_into_small_buffer_fails_emsgsize(void **state)
{
    struct fixture *f = *state;
    size_t got = 0;

    put_ok(f, "small-buf", f->data, 1000);
    assert_int_equal(obj_get(f->store, "small-buf", f->buf, 999, &got, NULL), -EMSGSIZE);
    assert_int_equal(obj_get(f->store, "small-buf", f->buf, 1000, &got, NULL), 0);
    assert_int_equal(got, 1000);
}

static void test_overwrite_replaces_whole_object(void **state)
{
    struct fixture *f = *state;
    size_t got = 0;

    put_ok(f, "ow", f->data, 300000);
    put_ok(f, "ow", f->data + 5, 1000);
    assert_int_equal(obj_get(f->store, "ow", f->buf, OBJ_DATA_BYTES_MAX, &got, NULL), 0);
    assert_int_equal(got, 1000);
    assert_memory_equal(f->buf, f->data + 5, 1000);
}

static void test_missing_key_is_enoent_and_delete_is_idempotent(void **state)
{
    struct fixture *f = *state;
    char errmsg[OBJ_ERRMSG_MAX] = "";
    size_t got = 0;

    assert_int_equal(obj_get(f->store, "nope/never", f->buf, 10, &got, errmsg), -ENOENT);
    assert_non_null(strstr(errmsg, "nope/never"));
    assert_int_equal(obj_get_range(f->store, "nope", 0, 10, f->buf, &got, NULL), -ENOENT);
    assert_int_equal(obj_get_range(f->store, "nope", 1 << 20, 10, f->buf, &got, NULL), -ENOENT);
    assert_int_equal(obj_head(f->store, "nope", &got, NULL), -ENOENT);
    assert_int_equal(obj_delete(f->store, "nope", NULL), 0);
    put_ok(f, "del/me", f->data, 10);
    assert_int_equal(obj_delete(f->store, "del/me", NULL), 0);
    assert_int_equal(obj_head(f->store, "del/me", &got, NULL), -ENOENT);
    assert_int_equal(obj_delete(f->store, "del/me", NULL), 0);
}

/* ---- ranges ------------------------------------------------------------------- */

static void test_get_range_matches_data_on_both_paths(void **state)
{
    struct fixture *f = *state;
    const size_t size = 1000000; /* 15.3 pieces */
    const struct {
        uint64_t off;
        size_t len;
    } ranges[] = {
        {0, 1},           {0, size},         {1, 65535},        {65535, 2},
        {65536, 65536},   {100, 300000},     {262143, 10},      /* last merged start */
        {262144, 1},      {300000, 123457},  {999999, 1},       {999990, 100},
        {size - 65536, 65536}, {size, 10},   {size + 5, 10},    {5000000, 10},
        {123, 0},
    };

    put_ok(f, "range/obj", f->data, size);
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        size_t got = 99;
        uint64_t off = ranges[i].off;
        size_t want = off >= size ? 0 : (off + ranges[i].len > size ? size - off : ranges[i].len);
        char errmsg[OBJ_ERRMSG_MAX] = "";
        memset(f->buf, 0xee, ranges[i].len + 1);
        int rc = obj_get_range(f->store, "range/obj", off, ranges[i].len, f->buf, &got, errmsg);
        if (rc != 0)
            fail_msg("range %zu [%llu,+%zu): %d %s", i, (unsigned long long)off, ranges[i].len,
                     rc, errmsg);
        assert_int_equal(got, want);
        if (want > 0)
            assert_memory_equal(f->buf, f->data + off, want);
        assert_int_equal(f->buf[ranges[i].len], 0xee); /* nothing written past len */
    }
}

static void test_get_range_of_empty_object_reads_nothing(void **state)
{
    struct fixture *f = *state;
    size_t got = 9;

    put_ok(f, "range/empty", f->data, 0);
    assert_int_equal(obj_get_range(f->store, "range/empty", 0, 100, f->buf, &got, NULL), 0);
    assert_int_equal(got, 0);
}

/* ---- damage behind the store's back ------------------------------------------- */

static void test_corrupt_data_is_ebadmsg_not_bytes(void **state)
{
    struct fixture *f = *state;
    const size_t size = 600000;
    const long header = 288;
    char errmsg[OBJ_ERRMSG_MAX] = "";
    size_t got = 0;

    put_ok(f, "bad/data", f->data, size);
    corrupt_byte(f, "bad/data", header + 400000); /* inside piece 6 */
    assert_int_equal(obj_get(f->store, "bad/data", f->buf, OBJ_DATA_BYTES_MAX, &got, errmsg),
                     -EBADMSG);
    assert_non_null(strstr(errmsg, "checksum"));
    /* a range over the damaged piece fails; ranges elsewhere still read */
    assert_int_equal(obj_get_range(f->store, "bad/data", 399000, 2000, f->buf, &got, NULL),
                     -EBADMSG);
    assert_int_equal(obj_get_range(f->store, "bad/data", 0, 1000, f->buf, &got, NULL), 0);
    assert_memory_equal(f->buf, f->data, 1000);
    assert_int_equal(obj_get_range(f->store, "bad/data", 500000, 1000, f->buf, &got, NULL), 0);
    assert_memory_equal(f->buf, f->data + 500000, 1000);
}

static void test_corrupt_header_is_ebadmsg(void **state)
{
    struct fixture *f = *state;
    size_t got = 0;

    put_ok(f, "bad/header", f->data, 5000);
    corrupt_byte(f, "bad/header", 9); /* the data length */
    assert_int_equal(obj_get(f->store, "bad/header", f->buf, OBJ_DATA_BYTES_MAX, &got, NULL),
                     -EBADMSG);
    assert_int_equal(obj_get_range(f->store, "bad/header", 10, 10, f->buf, &got, NULL), -EBADMSG);
}

static void test_truncated_object_is_ebadmsg(void **state)
{
    struct fixture *f = *state;
    char path[1024];
    size_t got = 0;

    put_ok(f, "bad/short", f->data, 300000);
    raw_path(f, "bad/short", path, sizeof(path));
    assert_int_equal(truncate(path, 288 + 200000), 0);
    assert_int_equal(obj_get(f->store, "bad/short", f->buf, OBJ_DATA_BYTES_MAX, &got, NULL),
                     -EBADMSG);
    /* bytes that are still there pass their own CRC; the missing ones fail */
    assert_int_equal(obj_get_range(f->store, "bad/short", 100, 10, f->buf, &got, NULL), 0);
    assert_memory_equal(f->buf, f->data + 100, 10);
    assert_int_equal(obj_get_range(f->store, "bad/short", 280000, 10, f->buf, &got, NULL),
                     -EBADMSG);
    assert_int_equal(obj_get_range(f->store, "bad/short", 199990, 20, f->buf, &got, NULL),
                     -EBADMSG);
    assert_int_equal(truncate(path, 100), 0); /* shorter than a header */
    assert_int_equal(obj_get(f->store, "bad/short", f->buf, OBJ_DATA_BYTES_MAX, &got, NULL),
                     -EBADMSG);
    assert_int_equal(obj_head(f->store, "bad/short", &got, NULL), -EBADMSG);
}

/* ---- keys ---------------------------------------------------------------------- */

static void test_bad_keys_are_rejected_before_any_io(void **state)
{
    struct fixture *f = *state;
    char key[OBJ_KEY_BYTES_MAX + 2];
    size_t got = 0;

    assert_int_equal(obj_put(f->store, "../escape", f->data, 1, NULL), -EINVAL);
    assert_int_equal(obj_put(f->store, "", f->data, 1, NULL), -EINVAL);
    assert_int_equal(obj_get(f->store, "/abs", f->buf, 1, &got, NULL), -EINVAL);
    assert_int_equal(obj_delete(f->store, "a/../../b", NULL), -EINVAL);
    assert_int_equal(obj_head(f->store, "a b", &got, NULL), -EINVAL);
    /* 1024 bytes is the most; segments of 100 (s3rver cannot store a segment
     * over about 233 bytes as a file name) */
    for (size_t i = 0; i < sizeof(key) - 1; i++) {
        key[i] = i % 101 == 100 ? '/' : 'k';
    }
    key[OBJ_KEY_BYTES_MAX + 1] = '\0';
    assert_int_equal(obj_put(f->store, key, f->data, 1, NULL), -ENAMETOOLONG);
    /* with the s3 store's prefix "store/" the whole key must still fit 1024 */
    size_t room = OBJ_KEY_BYTES_MAX - (f->is_s3 ? strlen("store/") : 0);
    key[room] = '\0';
    if (key[room - 1] == '/')
        key[room - 1] = 'k';
    put_ok(f, key, f->data, 1);
    assert_int_equal(obj_head(f->store, key, &got, NULL), 0);
    if (f->is_s3) {
        key[room] = 'k';
        key[room + 1] = '\0';
        assert_int_equal(obj_put(f->store, key, f->data, 1, NULL), -ENAMETOOLONG);
    }
}

/* ---- listing ------------------------------------------------------------------ */

static void test_list_pages_through_every_key_in_order(void **state)
{
    struct fixture *f = *state;
    struct obj_list_entry *entries = calloc(7, sizeof(*entries));
    struct obj_list_page page = {.entries = entries, .entry_cap = 7};
    char key[64];
    char last[OBJ_KEY_BYTES_MAX + 1] = "";
    unsigned seen = 0;
    unsigned pages = 0;

    assert_non_null(entries);
    for (unsigned i = 0; i < 25; i++) {
        snprintf(key, sizeof(key), "list/k%05u", i);
        put_ok(f, key, f->data, i);
    }
    put_ok(f, "listx", f->data, 1);    /* shares the prefix "list" but not "list/" */
    put_ok(f, "lisa/k", f->data, 1);   /* sorts before */
    do {
        assert_int_equal(obj_list(f->store, "list/", last, &page, NULL), 0);
        pages++;
        for (unsigned i = 0; i < page.entry_count; i++) {
            snprintf(key, sizeof(key), "list/k%05u", seen);
            assert_string_equal(page.entries[i].key, key);
            assert_int_equal(page.entries[i].size, seen);
            seen++;
        }
        memcpy(last, page.last_key, sizeof(last));
        assert_true(pages <= 10);
    } while (page.is_truncated);
    assert_int_equal(seen, 25);
    assert_true(pages >= 4); /* 7 + 7 + 7 + 4 */
    /* start_after in the middle */
    assert_int_equal(obj_list(f->store, "list/", "list/k00020", &page, NULL), 0);
    assert_int_equal(page.entry_count, 4);
    assert_string_equal(page.entries[0].key, "list/k00021");
    assert_false(page.is_truncated);
    /* prefix without the slash takes listx too */
    assert_int_equal(obj_list(f->store, "listx", NULL, &page, NULL), 0);
    assert_int_equal(page.entry_count, 1);
    assert_string_equal(page.entries[0].key, "listx");
    /* page size limits */
    page.entry_cap = 0;
    assert_int_equal(obj_list(f->store, "", NULL, &page, NULL), -EINVAL);
    page.entry_cap = OBJ_LIST_PAGE_MAX + 1;
    assert_int_equal(obj_list(f->store, "", NULL, &page, NULL), -EINVAL);
    assert_int_equal(obj_list(f->store, "../", NULL, &page, NULL), -EINVAL);
    free(entries);
}

/* ---- asynchronous requests ------------------------------------------------------ */

struct async_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned done;
    unsigned failed;
    unsigned cancelled;
};

struct async_req {
    struct obj_req req;
    struct async_wait *wait;
    unsigned calls;
    char key[32];
};

static void async_done(struct obj_req *req)
{
    struct async_req *a = (struct async_req *)req;

    pthread_mutex_lock(&a->wait->lock);
    a->calls++;
    a->wait->done++;
    a->wait->failed += req->rc != 0 && req->rc != -ECANCELED;
    a->wait->cancelled += req->rc == -ECANCELED;
    pthread_cond_signal(&a->wait->cond);
    pthread_mutex_unlock(&a->wait->lock);
}

static void async_wait_for(struct async_wait *w, unsigned n)
{
    pthread_mutex_lock(&w->lock);
    while (w->done < n) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
}

static void test_submit_runs_each_request_once(void **state)
{
    struct fixture *f = *state;
    struct async_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct async_req *reqs = calloc(ASYNC_REQS, sizeof(*reqs));
    uint8_t *bufs = malloc(ASYNC_REQS * 10000);

    assert_non_null(reqs);
    assert_non_null(bufs);
    for (unsigned i = 0; i < ASYNC_REQS; i++) {
        reqs[i].wait = &w;
        snprintf(reqs[i].key, sizeof(reqs[i].key), "async/%u", i);
        reqs[i].req = (struct obj_req){
            .op = OBJ_OP_PUT, .key = reqs[i].key, .buf = f->data + i, .size = 10000};
        assert_int_equal(obj_submit(f->store, &reqs[i].req, async_done), 0);
    }
    async_wait_for(&w, ASYNC_REQS);
    assert_int_equal(w.failed, 0);
    w.done = 0;
    for (unsigned i = 0; i < ASYNC_REQS; i++) {
        reqs[i].req = (struct obj_req){
            .op = OBJ_OP_GET, .key = reqs[i].key, .buf = bufs + i * 10000, .size = 10000};
        assert_int_equal(obj_submit(f->store, &reqs[i].req, async_done), 0);
    }
    async_wait_for(&w, ASYNC_REQS);
    assert_int_equal(w.failed, 0);
    for (unsigned i = 0; i < ASYNC_REQS; i++) {
        assert_int_equal(reqs[i].calls, 2);
        assert_int_equal(reqs[i].req.result, 10000);
        assert_memory_equal(bufs + i * 10000, f->data + i, 10000);
    }
    struct obj_req bad = {.op = (enum obj_op)99};
    assert_int_equal(obj_submit(f->store, &bad, async_done), -EINVAL);
    free(reqs);
    free(bufs);
}

/* Many puts at once into new directories under one parent, two blocks of a
 * slice racing to make theirs, as a mount's writers do (on file:// each put
 * makes its directory or finds it made, and syncs it): every put succeeds
 * and reads back whole, and a listing finds each key once. */
static void test_concurrent_puts_into_new_directories(void **state)
{
    enum { SLICES = 96, BLOCKS = 2, SIZE = 3000 };
    struct fixture *f = *state;
    struct async_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct async_req *reqs = calloc(SLICES * BLOCKS, sizeof(*reqs));
    uint8_t *bufs = malloc((size_t)SLICES * BLOCKS * SIZE);
    char errmsg[OBJ_ERRMSG_MAX];

    assert_non_null(reqs);
    assert_non_null(bufs);
    for (unsigned i = 0; i < SLICES * BLOCKS; i++) {
        reqs[i].wait = &w;
        snprintf(reqs[i].key, sizeof(reqs[i].key), "sl/%016x/%u", 0x5000u + i / BLOCKS,
                 i % BLOCKS);
        reqs[i].req = (struct obj_req){
            .op = OBJ_OP_PUT, .key = reqs[i].key, .buf = f->data + i, .size = SIZE};
        assert_int_equal(obj_submit(f->store, &reqs[i].req, async_done), 0);
    }
    async_wait_for(&w, SLICES * BLOCKS);
    assert_int_equal(w.failed, 0);
    for (unsigned i = 0; i < SLICES * BLOCKS; i++) {
        size_t got = 0;
        assert_int_equal(obj_get(f->store, reqs[i].key, bufs + (size_t)i * SIZE, SIZE, &got,
                                 errmsg),
                         0);
        assert_int_equal(got, SIZE);
        assert_memory_equal(bufs + (size_t)i * SIZE, f->data + i, SIZE);
    }
    struct obj_list_entry *entries = calloc(OBJ_LIST_PAGE_MAX, sizeof(*entries));
    struct obj_list_page page = {.entries = entries, .entry_cap = OBJ_LIST_PAGE_MAX};
    assert_non_null(entries);
    unsigned listed = 0;
    char after[OBJ_KEY_BYTES_MAX + 1] = "";
    /* bounded: each page moves past at least one key, or ends the listing */
    do {
        assert_int_equal(obj_list(f->store, "sl/", after, &page, errmsg), 0);
        for (unsigned i = 0; i < page.entry_count; i++) {
            assert_true(listed < SLICES * BLOCKS);
            assert_string_equal(page.entries[i].key, reqs[listed].key); /* in order, once */
            listed++;
        }
        snprintf(after, sizeof(after), "%s", page.last_key);
    } while (page.is_truncated);
    assert_int_equal(listed, SLICES * BLOCKS);
    free(entries);
    free(reqs);
    free(bufs);
}

static void test_close_cancels_queued_requests_once(void **state)
{
    struct fixture *f = *state;
    struct async_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct async_req *reqs = calloc(200, sizeof(*reqs));
    struct obj_options one_worker = {.workers = 1};
    struct obj_store *s = NULL;
    char url[512];

    assert_non_null(reqs);
    if (f->is_s3)
        harness_s3_url(url, sizeof(url), f->server.port, "store", "");
    else
        snprintf(url, sizeof(url), "file://%s", f->dir);
    assert_int_equal(obj_store_open(url, &one_worker, &s, NULL), 0);
    for (unsigned i = 0; i < 200; i++) {
        reqs[i].wait = &w;
        snprintf(reqs[i].key, sizeof(reqs[i].key), "cancel/%u", i);
        reqs[i].req = (struct obj_req){
            .op = OBJ_OP_PUT, .key = reqs[i].key, .buf = f->data, .size = 200000};
        assert_int_equal(obj_submit(s, &reqs[i].req, async_done), 0);
    }
    obj_store_close(s); /* returns after every callback */
    assert_int_equal(w.done, 200);
    assert_int_equal(w.failed, 0);
    for (unsigned i = 0; i < 200; i++) {
        assert_int_equal(reqs[i].calls, 1);
    }
    free(reqs);
}

#define STORE_TESTS                                                                       \
    cmocka_unit_test(test_put_get_every_size_edge_round_trips),                           \
        cmocka_unit_test(test_put_over_limit_fails_emsgsize),                             \
        cmocka_unit_test(test_get_into_small_buffer_fails_emsgsize),                      \
        cmocka_unit_test(test_overwrite_replaces_whole_object),                           \
        cmocka_unit_test(test_missing_key_is_enoent_and_delete_is_idempotent),            \
        cmocka_unit_test(test_get_range_matches_data_on_both_paths),                      \
        cmocka_unit_test(test_get_range_of_empty_object_reads_nothing),                   \
        cmocka_unit_test(test_corrupt_data_is_ebadmsg_not_bytes),                         \
        cmocka_unit_test(test_corrupt_header_is_ebadmsg),                                 \
        cmocka_unit_test(test_truncated_object_is_ebadmsg),                               \
        cmocka_unit_test(test_bad_keys_are_rejected_before_any_io),                       \
        cmocka_unit_test(test_list_pages_through_every_key_in_order),                     \
        cmocka_unit_test(test_submit_runs_each_request_once),                             \
        cmocka_unit_test(test_concurrent_puts_into_new_directories),                      \
        cmocka_unit_test(test_close_cancels_queued_requests_once)

int main(void)
{
    const struct CMUnitTest tests[] = {STORE_TESTS};
    int failed = cmocka_run_group_tests_name("test_store file://", tests, setup_file, teardown);

    failed += cmocka_run_group_tests_name("test_store s3://", tests, setup_s3, teardown);
    return failed;
}
