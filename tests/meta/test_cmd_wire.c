/* tests/meta/test_cmd_wire.c - commands to and from their protobuf form.
 * Goal: what is encoded decodes to the same command; bytes from outside are
 * checked against every limit and never crash the decoder or, once decoded,
 * the state machine.
 * Method: round trips of every op; hand-made wire bytes just past each
 * limit; a seeded mutation fuzz (tens of thousands of inputs, run under ASan
 * and UBSan in CI) whose surviving commands are applied to a shard. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "limits.h"
#include "meta.h"

#define FUZZ_ROUNDS 40000u

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static struct meta_cmd sample(enum meta_op op)
{
    struct meta_cmd c = {
        .op = op, .cred = {.uid = 1000, .gid = 100, .group_count = 3, .groups = {4, 5, 6}},
        .now_ns = -5, .new_ino = 77, .ino = 1, .name = "frame_0001.jpg", .name_len = 14,
        .new_dir = 9, .new_name = "x", .new_name_len = 1, .mode = S_IFREG | 0640, .rdev = 3,
        .flags = 2, .set_mask = META_SET_SIZE, .set = {.mode = 0600, .uid = 1, .gid = 2,
        .size = 1ull << 40, .atime_ns = 11, .mtime_ns = -12}, .target = "../t",
        .target_len = 4, .cookie = 123456789, .entry_cap = 64, .offset = 3ull << 40,
        .length = 5, .slice = {.id = 1ull << 60, .size = 4096, .off = 7, .len = 8},
        .if_ctime_ns = -7,
        .if_map_hash = 0x1234567890abcdefull,
    };
    return c;
}

static void test_every_op_round_trips(void **state)
{
    uint8_t buf[8192];
    struct meta_cmd_buf out;
    size_t len = 0;

    (void)state;
    for (int op = META_OP_LOOKUP; op <= META_OP_LAST; op++) {
        struct meta_cmd c = sample((enum meta_op)op);
        assert_int_equal(meta_cmd_encode(&c, buf, sizeof(buf), &len), 0);
        assert_int_equal(meta_cmd_decode(buf, len, &out), 0);
        assert_int_equal(out.cmd.op, op);
        assert_int_equal(out.cmd.cred.uid, 1000);
        assert_int_equal(out.cmd.cred.group_count, 3);
        assert_int_equal(out.cmd.cred.groups[2], 6);
        assert_int_equal(out.cmd.now_ns, -5);
        assert_int_equal(out.cmd.name_len, 14);
        assert_memory_equal(out.cmd.name, "frame_0001.jpg", 14);
        assert_string_equal(out.cmd.new_name, "x");
        assert_string_equal(out.cmd.target, "../t");
        assert_int_equal(out.cmd.set.size, 1ull << 40);
        assert_int_equal(out.cmd.set.mtime_ns, -12);
        assert_int_equal(out.cmd.cookie, 123456789);
        assert_int_equal(out.cmd.entry_cap, 64);
        assert_int_equal(out.cmd.offset, 3ull << 40);
        assert_int_equal(out.cmd.length, 5);
        assert_int_equal(out.cmd.slice.id, 1ull << 60);
        assert_int_equal(out.cmd.slice.size, 4096);
        assert_int_equal(out.cmd.slice.off, 7);
        assert_int_equal(out.cmd.slice.len, 8);
        assert_int_equal(out.cmd.if_ctime_ns, -7);
        assert_true(out.cmd.if_map_hash == 0x1234567890abcdefull);
    }
    struct meta_cmd c = sample(META_OP_MKDIR);
    assert_int_equal(meta_cmd_encode(&c, buf, 10, &len), -EMSGSIZE);
}

static void test_encode_refuses_commands_past_the_limits(void **state)
{
    char name[META_NAME_BYTES_MAX + 1];
    uint8_t buf[16384];
    size_t len;

    (void)state;
    memset(name, 'n', sizeof(name));
    struct meta_cmd c = sample(META_OP_MKNOD);
    c.name = name;
    c.name_len = META_NAME_BYTES_MAX;
    assert_int_equal(meta_cmd_encode(&c, buf, sizeof(buf), &len), 0);
    c.name_len = META_NAME_BYTES_MAX + 1;
    assert_int_equal(meta_cmd_encode(&c, buf, sizeof(buf), &len), -ENAMETOOLONG);
    c = sample(META_OP_MKNOD);
    c.cred.group_count = META_GROUPS_MAX + 1;
    assert_int_equal(meta_cmd_encode(&c, buf, sizeof(buf), &len), -EINVAL);
    c = sample((enum meta_op)(META_OP_LAST + 1));
    assert_int_equal(meta_cmd_encode(&c, buf, sizeof(buf), &len), -EINVAL);
}

/* Wire bytes made by hand, as a hostile or broken peer would send them. */
static void test_decode_checks_each_limit_on_raw_bytes(void **state)
{
    uint8_t buf[600];
    struct meta_cmd_buf out;
    size_t n = 0;

    (void)state;
    /* op 99: field 1, varint */
    buf[0] = 0x08;
    buf[1] = 99;
    assert_int_equal(meta_cmd_decode(buf, 2, &out), -EINVAL);
    /* a name of 256 bytes: field 6, length-delimited, length 256 = 0x80 0x02 */
    buf[n++] = 0x08;
    buf[n++] = META_OP_MKDIR;
    buf[n++] = 0x32;
    buf[n++] = 0x80;
    buf[n++] = 0x02;
    memset(buf + n, 'a', 256);
    assert_int_equal(meta_cmd_decode(buf, n + 256, &out), -ENAMETOOLONG);
    buf[3] = 0xff; /* length 255 */
    buf[4] = 0x01;
    assert_int_equal(meta_cmd_decode(buf, n + 255, &out), 0);
    assert_int_equal(out.cmd.name_len, 255);
    /* 33 groups: field 2 (cred) holding field 3 packed, 33 one-byte varints */
    n = 0;
    buf[n++] = 0x12;
    buf[n++] = 2 + 33;
    buf[n++] = 0x1a;
    buf[n++] = 33;
    for (int i = 0; i < 33; i++)
        buf[n++] = (uint8_t)i;
    assert_int_equal(meta_cmd_decode(buf, n, &out), -EINVAL);
    /* a length running past the end, and bytes that are no message */
    buf[0] = 0x32;
    buf[1] = 100;
    assert_int_equal(meta_cmd_decode(buf, 5, &out), -EPROTO);
    memset(buf, 0xff, 16);
    assert_int_equal(meta_cmd_decode(buf, 16, &out), -EPROTO);
    assert_int_equal(meta_cmd_decode(buf, META_MSG_BYTES_MAX + 1, &out), -EMSGSIZE);
}

static void test_decoded_replay_equals_direct_apply(void **state)
{
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0777};
    struct meta_shard *direct = NULL;
    struct meta_shard *replay = NULL;
    uint8_t buf[8192];
    char name[16];

    (void)state;
    assert_int_equal(meta_shard_new(&cfg, &direct), 0);
    assert_int_equal(meta_shard_new(&cfg, &replay), 0);
    for (unsigned i = 0; i < 500; i++) {
        struct meta_cmd c = sample((enum meta_op)(META_OP_SETATTR + (int)(i % 8)));
        struct meta_cmd_buf out;
        struct meta_reply r1;
        struct meta_reply r2;
        size_t len = 0;
        snprintf(name, sizeof(name), "f%u", i % 13);
        c.name = name;
        c.name_len = (uint32_t)strlen(name);
        c.new_name = i % 2 ? "f1" : "g";
        c.new_name_len = (uint32_t)strlen(c.new_name);
        c.new_dir = 1;
        c.flags = 0;
        c.new_ino = 100 + i;
        c.ino = c.op == META_OP_LINK || c.op == META_OP_SETATTR ? 100 + i / 2 : 1;
        c.cred.uid = 0;
        c.mode = c.op == META_OP_MKNOD ? S_IFREG | 0644 : 0755;
        assert_int_equal(meta_cmd_encode(&c, buf, sizeof(buf), &len), 0);
        assert_int_equal(meta_cmd_decode(buf, len, &out), 0);
        int a = meta_shard_apply(direct, &c, &r1);
        int b = meta_shard_apply(replay, &out.cmd, &r2);
        assert_int_equal(a, b);
    }
    assert_int_equal(meta_shard_hash(direct), meta_shard_hash(replay));
    meta_shard_free(direct);
    meta_shard_free(replay);
}

static void test_decode_fuzz_never_crashes_decoder_or_shard(void **state)
{
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0777};
    struct meta_shard *s = NULL;
    uint8_t good[8192];
    uint8_t buf[8192];
    uint64_t rng = 0xF00D;
    unsigned decoded = 0;

    (void)state;
    assert_int_equal(meta_shard_new(&cfg, &s), 0);
    for (unsigned round = 0; round < FUZZ_ROUNDS; round++) {
        struct meta_cmd c = sample((enum meta_op)(round % (META_OP_LAST + 1)));
        struct meta_cmd_buf out;
        struct meta_reply r = {0};
        struct meta_dirent entries[4];
        size_t len = 0;
        assert_int_equal(meta_cmd_encode(&c, good, sizeof(good), &len), 0);
        memcpy(buf, good, len);
        for (unsigned e = 0, edits = 1 + (unsigned)(rng_next(&rng) % 4); e < edits; e++) {
            size_t at = rng_next(&rng) % len;
            unsigned kind = (unsigned)(rng_next(&rng) % 3);
            if (kind == 0)
                buf[at] = (uint8_t)rng_next(&rng);
            else if (kind == 1)
                buf[at] ^= (uint8_t)(1u << (rng_next(&rng) % 8));
            else
                len = at + 1; /* truncate */
        }
        int rc = meta_cmd_decode(buf, len, &out);
        assert_true(rc == 0 || rc == -EPROTO || rc == -EINVAL || rc == -ENAMETOOLONG);
        if (rc != 0)
            continue;
        decoded++;
        assert_true(out.cmd.name_len <= META_NAME_BYTES_MAX);
        assert_true(out.cmd.target_len <= META_SYMLINK_BYTES_MAX);
        assert_true(out.cmd.cred.group_count <= META_GROUPS_MAX);
        r.entries = entries;
        out.cmd.entry_cap = out.cmd.entry_cap % 5;
        /* whatever survived decoding must be safe to apply */
        if (meta_shard_apply(s, &out.cmd, &r) == -EINVAL)
            meta_shard_read(s, &out.cmd, &r);
    }
    assert_true(decoded > FUZZ_ROUNDS / 10); /* the fuzz reached the state machine */
    meta_shard_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_round_trips),
        cmocka_unit_test(test_encode_refuses_commands_past_the_limits),
        cmocka_unit_test(test_decode_checks_each_limit_on_raw_bytes),
        cmocka_unit_test(test_decoded_replay_equals_direct_apply),
        cmocka_unit_test(test_decode_fuzz_never_crashes_decoder_or_shard),
    };
    return cmocka_run_group_tests_name("test_cmd_wire", tests, NULL, NULL);
}
