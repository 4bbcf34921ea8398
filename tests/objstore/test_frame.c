/* tests/objstore/test_frame.c - the object frame and CRC32C.
 * Goal: every stored byte is covered by a CRC that is checked, and a header
 * that is damaged anywhere is rejected, never trusted.
 * Method: known CRC32C vectors; encode/decode round trips at the piece
 * boundaries; every single-bit flip of a header and of the data is caught; a
 * seeded mutation fuzz of the decoder (run under ASan in CI). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FUZZ_ROUNDS 20000u

struct fixture {
    uint8_t *data; /* OBJ_DATA_BYTES_MAX pseudo-random bytes */
    uint64_t rng;
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->rng = 0x5eed1234abcdULL;
    f->data = malloc(OBJ_DATA_BYTES_MAX);
    assert_non_null(f->data);
    for (size_t i = 0; i < OBJ_DATA_BYTES_MAX; i++) {
        f->data[i] = (uint8_t)rng_next(&f->rng);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    free(f->data);
    free(f);
    return 0;
}

/* The CRC of data[0..n) with a byte-at-a-time reference, to check the fast path. */
static uint32_t crc_reference(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;

    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
    }
    return ~c;
}

static int check(const struct obj__frame *fr, const uint8_t *data, size_t size)
{
    struct iovec iov = {.iov_base = (void *)(uintptr_t)data, .iov_len = size};
    uint32_t pieces = (uint32_t)((size + OBJ_FRAME_PIECE_BYTES - 1) / OBJ_FRAME_PIECE_BYTES);

    return obj__frame_check(fr, 0, pieces, &iov, 1, NULL);
}

/* ---- CRC32C ------------------------------------------------------------- */

static void test_crc32c_known_vectors_match(void **state)
{
    uint8_t zeros[32] = {0};
    uint8_t ones[32];

    (void)state;
    memset(ones, 0xff, sizeof(ones));
    assert_int_equal(obj_crc32c(0, "123456789", 9), 0xE3069283u); /* RFC 3720 check value */
    assert_int_equal(obj_crc32c(0, zeros, 32), 0x8A9136AAu);      /* RFC 3720 B.4 */
    assert_int_equal(obj_crc32c(0, ones, 32), 0x62A8AB43u);
    assert_int_equal(obj_crc32c(0, NULL, 0), 0u);
}

static void test_crc32c_fast_path_matches_reference(void **state)
{
    struct fixture *f = *state;

    for (unsigned round = 0; round < 300; round++) {
        size_t off = rng_next(&f->rng) % 4096;
        size_t n = rng_next(&f->rng) % (round < 200 ? 256 : 200000);
        assert_int_equal(obj_crc32c(0, f->data + off, n), crc_reference(f->data + off, n));
    }
}

static void test_crc32c_continues_across_calls(void **state)
{
    struct fixture *f = *state;
    uint32_t whole = obj_crc32c(0, f->data, 100000);

    for (size_t cut = 0; cut <= 100000; cut += 777) {
        uint32_t c = obj_crc32c(0, f->data, cut);
        assert_int_equal(obj_crc32c(c, f->data + cut, 100000 - cut), whole);
    }
}

/* ---- encode and decode ----------------------------------------------------- */

static void test_frame_round_trip_at_piece_edges_checks(void **state)
{
    struct fixture *f = *state;
    const size_t sizes[] = {0, 1, OBJ_FRAME_PIECE_BYTES - 1, OBJ_FRAME_PIECE_BYTES,
                            OBJ_FRAME_PIECE_BYTES + 1, OBJ_DATA_BYTES_MAX - 1,
                            OBJ_DATA_BYTES_MAX};

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t hdr[OBJ_FRAME_HEADER_BYTES];
        struct obj__frame fr;
        obj__frame_encode(hdr, f->data, sizes[i]);
        assert_int_equal(obj__frame_decode(hdr, &fr, NULL), 0);
        assert_int_equal(fr.data_bytes, sizes[i]);
        assert_int_equal(check(&fr, f->data, sizes[i]), 0);
    }
}

static void test_frame_check_spans_iovecs(void **state)
{
    struct fixture *f = *state;
    uint8_t hdr[OBJ_FRAME_HEADER_BYTES];
    struct obj__frame fr;
    size_t size = 3 * OBJ_FRAME_PIECE_BYTES + 5;
    /* the same bytes cut at odd places, as a range read lays them out */
    struct iovec iov[4] = {
        {.iov_base = f->data, .iov_len = 1000},
        {.iov_base = f->data + 1000, .iov_len = 0},
        {.iov_base = f->data + 1000, .iov_len = 2 * OBJ_FRAME_PIECE_BYTES},
        {.iov_base = f->data + 1000 + 2 * OBJ_FRAME_PIECE_BYTES,
         .iov_len = size - 1000 - 2 * OBJ_FRAME_PIECE_BYTES},
    };

    obj__frame_encode(hdr, f->data, size);
    assert_int_equal(obj__frame_decode(hdr, &fr, NULL), 0);
    assert_int_equal(obj__frame_check(&fr, 0, 4, iov, 4, NULL), 0);
    /* pieces 1..3 alone, starting at piece 1's first byte */
    struct iovec tail = {.iov_base = f->data + OBJ_FRAME_PIECE_BYTES,
                         .iov_len = size - OBJ_FRAME_PIECE_BYTES};
    assert_int_equal(obj__frame_check(&fr, 1, 3, &tail, 1, NULL), 0);
    /* too few bytes for the pieces asked */
    tail.iov_len -= 1;
    assert_int_equal(obj__frame_check(&fr, 1, 3, &tail, 1, NULL), -EBADMSG);
}

static void test_frame_every_header_bit_flip_is_rejected(void **state)
{
    struct fixture *f = *state;
    uint8_t hdr[OBJ_FRAME_HEADER_BYTES];
    struct obj__frame fr;
    char errmsg[OBJ_ERRMSG_MAX];

    obj__frame_encode(hdr, f->data, 200000);
    for (size_t bit = 0; bit < 8 * OBJ_FRAME_HEADER_BYTES; bit++) {
        hdr[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(obj__frame_decode(hdr, &fr, errmsg), -EBADMSG);
        hdr[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(obj__frame_decode(hdr, &fr, NULL), 0);
}

static void test_frame_every_data_bit_flip_is_caught(void **state)
{
    struct fixture *f = *state;
    uint8_t hdr[OBJ_FRAME_HEADER_BYTES];
    struct obj__frame fr;
    size_t size = OBJ_FRAME_PIECE_BYTES + 3000;
    uint8_t *copy = malloc(size);

    assert_non_null(copy);
    memcpy(copy, f->data, size);
    obj__frame_encode(hdr, copy, size);
    assert_int_equal(obj__frame_decode(hdr, &fr, NULL), 0);
    /* one bit in every 61st byte: all pieces, both ends */
    for (size_t byte = 0; byte < size; byte += 61) {
        copy[byte] ^= 0x01;
        assert_int_equal(check(&fr, copy, size), -EBADMSG);
        copy[byte] ^= 0x01;
    }
    copy[size - 1] ^= 0x80;
    assert_int_equal(check(&fr, copy, size), -EBADMSG);
    free(copy);
}

static void test_frame_decode_fuzz_never_trusts_garbage(void **state)
{
    struct fixture *f = *state;
    uint8_t good[OBJ_FRAME_HEADER_BYTES];
    uint8_t hdr[OBJ_FRAME_HEADER_BYTES];
    unsigned accepted = 0;

    obj__frame_encode(good, f->data, 12345);
    for (unsigned round = 0; round < FUZZ_ROUNDS; round++) {
        struct obj__frame fr;
        memcpy(hdr, good, sizeof(hdr));
        unsigned edits = 1 + (unsigned)(rng_next(&f->rng) % 8);
        for (unsigned e = 0; e < edits; e++) {
            hdr[rng_next(&f->rng) % sizeof(hdr)] = (uint8_t)rng_next(&f->rng);
        }
        if (obj__frame_decode(hdr, &fr, NULL) == 0) {
            /* only an edit that changed nothing can pass */
            assert_memory_equal(hdr, good, sizeof(hdr));
            accepted++;
        }
    }
    /* a few rounds write back the byte that was there */
    assert_true(accepted < FUZZ_ROUNDS / 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_known_vectors_match),
        cmocka_unit_test(test_crc32c_fast_path_matches_reference),
        cmocka_unit_test(test_crc32c_continues_across_calls),
        cmocka_unit_test(test_frame_round_trip_at_piece_edges_checks),
        cmocka_unit_test(test_frame_check_spans_iovecs),
        cmocka_unit_test(test_frame_every_header_bit_flip_is_rejected),
        cmocka_unit_test(test_frame_every_data_bit_flip_is_caught),
        cmocka_unit_test(test_frame_decode_fuzz_never_trusts_garbage),
    };
    return cmocka_run_group_tests_name("test_frame", tests, setup, teardown);
}
