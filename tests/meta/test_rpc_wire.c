/* tests/meta/test_rpc_wire.c - the client protocol's frames.
 * Goal: a request or a response decodes to what was encoded, carrying what
 * its command's reply fills; bytes from the network are checked against
 * every limit and never crash the decoder.
 * Method: round trips from a real shard's replies (readdir, readlink,
 * getxattr, read_map, statfs, errors and redirects); hand-made bytes past
 * each bound; a seeded mutation fuzz run under ASan and UBSan in CI. */
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

#define BUF_BYTES (8u << 20)

struct fixture {
    struct meta_shard *shard;
    uint8_t *buf;
    struct meta_response_buf *out;
    struct meta_cmd_buf *cmd;
    struct meta_dirent entries[META_READDIR_MAX];
    struct meta_slice slices[META_READ_SLICES_MAX];
    uint8_t data[META_XATTR_BYTES_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755, .created_ns = 1};
    struct meta_reply r;

    assert_non_null(f);
    f->buf = malloc(BUF_BYTES);
    f->out = malloc(sizeof(*f->out));
    f->cmd = malloc(sizeof(*f->cmd));
    assert_non_null(f->buf);
    assert_non_null(f->out);
    assert_non_null(f->cmd);
    assert_int_equal(meta_shard_new(&cfg, &f->shard), 0);
    /* a directory of 300 files, a symlink, an xattr, a file with data */
    for (unsigned i = 0; i < 300; i++) {
        char name[32];
        int n = snprintf(name, sizeof(name), "frame_%05u.jpg", i);
        struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = name,
                              .name_len = (uint32_t)n, .mode = S_IFREG | 0644,
                              .new_ino = 100 + i, .now_ns = 2};
        assert_int_equal(meta_shard_apply(f->shard, &mk, &r), 0);
    }
    struct meta_cmd ln = {.op = META_OP_SYMLINK, .ino = 1, .name = "link", .name_len = 4,
                          .target = "frame_00001.jpg", .target_len = 15, .new_ino = 1000,
                          .now_ns = 3};
    assert_int_equal(meta_shard_apply(f->shard, &ln, &r), 0);
    struct meta_cmd xa = {.op = META_OP_SETXATTR, .ino = 100, .name = "user.label",
                          .name_len = 10, .value = "cat", .value_len = 3, .now_ns = 4};
    assert_int_equal(meta_shard_apply(f->shard, &xa, &r), 0);
    struct meta_cmd wr = {.op = META_OP_WRITE, .ino = 101, .offset = 10, .now_ns = 5,
                          .slice = {.id = 42, .size = 100, .off = 0, .len = 100}};
    assert_int_equal(meta_shard_apply(f->shard, &wr, &r), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    meta_shard_free(f->shard);
    free(f->buf);
    free(f->out);
    free(f->cmd);
    free(f);
    return 0;
}

/* Run cmd on the shard, encode the response, decode it into f->out. */
static void round_trip(struct fixture *f, const struct meta_cmd *cmd, uint32_t data_cap)
{
    struct meta_response resp = {.id = 77, .epoch = 3};
    size_t len;

    resp.reply.entries = f->entries;
    resp.reply.slices = f->slices;
    resp.reply.slice_cap = META_READ_SLICES_MAX;
    resp.reply.data = f->data;
    resp.reply.data_cap = data_cap;
    resp.rc = meta_shard_read(f->shard, cmd, &resp.reply);
    assert_int_equal(meta_response_encode(&resp, cmd->op, f->buf, BUF_BYTES, &len), 0);
    uint32_t n;
    memcpy(&n, f->buf, 4);
    assert_int_equal(n + 4, len);
    assert_int_equal(meta_response_decode(f->buf + 4, n, f->out), 0);
    assert_int_equal(f->out->r.id, 77);
    assert_int_equal(f->out->r.epoch, 3);
    assert_int_equal(f->out->r.rc, resp.rc);
}

static void test_request_round_trip(void **state)
{
    struct fixture *f = *state;
    struct meta_request req = {.id = 9, .shard = 1, .epoch = 4, .kind = META_REQ_COMMAND,
                               .read_mode = META_READ_FOLLOWER, .stale_ms = 250,
                               .data_cap = 100, .is_background = true, .wants_lease = true};
    struct meta_cmd cmd = {.op = META_OP_RENAME, .ino = 1, .name = "a", .name_len = 1,
                           .new_dir = 2, .new_name = "bb", .new_name_len = 2, .flags = 1,
                           .client_id = 5, .seq = 6, .ack_below = 4,
                           .cred = {.uid = 1000, .gid = 1000}};
    struct meta_request got;
    size_t len;

    assert_int_equal(meta_request_encode(&req, &cmd, f->buf, BUF_BYTES, &len), 0);
    assert_int_equal(meta_request_decode(f->buf + 4, len - 4, &got, f->cmd), 0);
    assert_int_equal(got.id, 9);
    assert_int_equal(got.shard, 1);
    assert_int_equal(got.epoch, 4);
    assert_int_equal(got.read_mode, META_READ_FOLLOWER);
    assert_int_equal(got.stale_ms, 250);
    assert_int_equal(got.data_cap, 100);
    assert_true(got.is_background);
    assert_true(got.wants_lease);
    assert_int_equal(f->cmd->cmd.op, META_OP_RENAME);
    assert_int_equal(f->cmd->cmd.new_name_len, 2);
    assert_memory_equal(f->cmd->cmd.new_name, "bb", 2);
    assert_int_equal(f->cmd->cmd.seq, 6);
    assert_int_equal(f->cmd->cmd.cred.uid, 1000);
    /* a heartbeat carries no command; a command kind must have one */
    struct meta_request hb = {.id = 10, .kind = META_REQ_HEARTBEAT, .session = 77};
    assert_int_equal(meta_request_encode(&hb, NULL, f->buf, BUF_BYTES, &len), 0);
    assert_int_equal(meta_request_decode(f->buf + 4, len - 4, &got, f->cmd), 0);
    assert_int_equal(got.session, 77);
    assert_false(got.is_background);
    assert_false(got.wants_lease);
    assert_int_equal(meta_request_encode(&hb, &cmd, f->buf, BUF_BYTES, &len), -EINVAL);
    assert_int_equal(meta_request_encode(&req, &cmd, f->buf, 8, &len), -EMSGSIZE);
    /* a notice ack names the notice; one naming none is refused */
    struct meta_request ack = {.kind = META_REQ_NOTICE_ACK, .notice = 41};
    assert_int_equal(meta_request_encode(&ack, NULL, f->buf, BUF_BYTES, &len), 0);
    assert_int_equal(meta_request_decode(f->buf + 4, len - 4, &got, f->cmd), 0);
    assert_int_equal(got.kind, META_REQ_NOTICE_ACK);
    assert_int_equal(got.notice, 41);
    ack.notice = 0;
    assert_int_equal(meta_request_encode(&ack, NULL, f->buf, BUF_BYTES, &len), 0);
    assert_int_equal(meta_request_decode(f->buf + 4, len - 4, &got, f->cmd), -EINVAL);
}

static void test_responses_carry_what_each_reply_fills(void **state)
{
    struct fixture *f = *state;

    struct meta_cmd rd = {.op = META_OP_READDIR, .ino = 1, .entry_cap = META_READDIR_MAX};
    round_trip(f, &rd, 0);
    assert_int_equal(f->out->r.reply.entry_count, 301);
    assert_true(f->out->r.reply.is_end);
    assert_string_equal(f->out->r.reply.entries[0].name, "frame_00000.jpg");
    assert_int_equal(f->out->r.reply.entries[0].ino, 100);
    assert_int_equal(f->out->r.reply.entries[0].attr.ino, 0); /* not asked for */
    rd.flags = META_READDIR_ATTRS;
    round_trip(f, &rd, 0);
    assert_int_equal(f->out->r.reply.entry_count, 301);
    for (uint32_t i = 0; i < f->out->r.reply.entry_count; i++) {
        /* what the shard answered, field for field */
        const struct meta_dirent *d = &f->out->r.reply.entries[i];
        assert_int_equal(d->attr.ino, d->ino);
        assert_memory_equal(&d->attr, &f->entries[i].attr, sizeof(d->attr));
    }
    assert_int_equal(f->out->r.reply.entries[1].attr.size, 110); /* frame 1: written to 10+100 */
    struct meta_cmd rl = {.op = META_OP_READLINK, .ino = 1000};
    round_trip(f, &rl, 0);
    assert_string_equal(f->out->r.reply.target, "frame_00001.jpg");
    struct meta_cmd gx = {.op = META_OP_GETXATTR, .ino = 100, .name = "user.label",
                          .name_len = 10};
    round_trip(f, &gx, 0); /* the size only */
    assert_int_equal(f->out->r.reply.data_len, 3);
    round_trip(f, &gx, 64);
    assert_int_equal(f->out->r.reply.data_len, 3);
    assert_memory_equal(f->out->r.reply.data, "cat", 3);
    struct meta_cmd rm = {.op = META_OP_READ_MAP, .ino = 101, .offset = 0};
    round_trip(f, &rm, 0);
    assert_int_equal(f->out->r.reply.attr.size, 110);
    assert_int_equal(f->out->r.reply.slice_count, 2); /* a hole, then the slice */
    assert_int_equal(f->out->r.reply.slices[1].id, 42);
    assert_int_equal(f->out->r.reply.slices[1].pos, 10);
    struct meta_reply direct = {.slices = f->slices, .slice_cap = META_READ_SLICES_MAX};
    assert_int_equal(meta_shard_read(f->shard, &rm, &direct), 0);
    assert_true(direct.map_hash != 0);
    assert_true(f->out->r.reply.map_hash == direct.map_hash);
    struct meta_cmd sf = {.op = META_OP_STATFS};
    round_trip(f, &sf, 0);
    assert_int_equal(f->out->r.reply.files, 302); /* 300 files, a link, the root */
    struct meta_cmd lk = {.op = META_OP_LOOKUP, .ino = 1, .name = "nothere", .name_len = 7};
    round_trip(f, &lk, 0);
    assert_int_equal(f->out->r.rc, -ENOENT);
    assert_int_equal(f->out->r.reply.other.ino, 0); /* only an exchange names another */
    /* an exchange's reply carries both files */
    struct meta_response resp = {.id = 5, .reply = {.attr = {.ino = 100, .ctime_ns = 9},
                                                    .other = {.ino = 101, .ctime_ns = 9,
                                                              .mode = S_IFREG | 0644}}};
    size_t len;
    assert_int_equal(meta_response_encode(&resp, META_OP_RENAME, f->buf, BUF_BYTES, &len), 0);
    assert_int_equal(meta_response_decode(f->buf + 4, len - 4, f->out), 0);
    assert_memory_equal(&f->out->r.reply.attr, &resp.reply.attr, sizeof(resp.reply.attr));
    assert_memory_equal(&f->out->r.reply.other, &resp.reply.other, sizeof(resp.reply.other));
}

static void test_redirect_carries_the_leader(void **state)
{
    struct fixture *f = *state;
    struct meta_response resp = {.id = 5, .rc = -AR_ENOTLEADER, .leader = 3, .epoch = 9};
    size_t len;

    snprintf(resp.leader_addr, sizeof(resp.leader_addr), "127.0.0.1:7003");
    assert_int_equal(meta_response_encode(&resp, META_OP_MKDIR, f->buf, BUF_BYTES, &len), 0);
    assert_int_equal(meta_response_decode(f->buf + 4, len - 4, f->out), 0);
    assert_int_equal(f->out->r.rc, -AR_ENOTLEADER);
    assert_int_equal(f->out->r.leader, 3);
    assert_string_equal(f->out->r.leader_addr, "127.0.0.1:7003");
}

/* A Response holding only field (16..2047, length-delimited) of bound + 1
 * bytes, each fill, is refused (-EPROTO); of bound bytes it is taken, and
 * f->out holds it. */
static void refused_past(struct fixture *f, uint32_t field, uint32_t bound, uint8_t fill)
{
    uint8_t *big = malloc(4 + bound + 1);
    uint32_t tag = field << 3 | 2;

    assert_non_null(big);
    assert_true(field >= 16 && field < 2048 && bound + 1 < 16384); /* two-byte varints */
    for (uint32_t count = bound + 1; count >= bound; count--) {
        size_t n = 0;
        big[n++] = (uint8_t)(0x80 | (tag & 0x7F));
        big[n++] = (uint8_t)(tag >> 7);
        big[n++] = (uint8_t)(0x80 | (count & 0x7F));
        big[n++] = (uint8_t)(count >> 7);
        memset(big + n, fill, count);
        n += count;
        assert_int_equal(meta_response_decode(big, n, f->out), count > bound ? -EPROTO : 0);
    }
    free(big);
}

/* A status's archive error comes through whole; one past its bound
 * (field 28, a string of META_ARCHIVE_ERROR_BYTES bytes) is refused. */
static void test_status_archive_error_round_trip(void **state)
{
    struct fixture *f = *state;
    struct meta_response resp = {.id = 8, .node = 2, .disk_free_bytes = 1u << 30};
    size_t len;

    snprintf(resp.archive_error, sizeof(resp.archive_error),
             "shard 1: archive log failed: PUT s3://b: HTTP 403 AccessDenied");
    assert_int_equal(meta_response_encode(&resp, META_OP_ACCESS, f->buf, BUF_BYTES, &len), 0);
    assert_int_equal(meta_response_decode(f->buf + 4, len - 4, f->out), 0);
    assert_string_equal(f->out->r.archive_error, resp.archive_error);
    assert_int_equal(f->out->r.disk_free_bytes, 1u << 30);
    refused_past(f, 28, META_ARCHIVE_ERROR_BYTES - 1, 'x');
    assert_int_equal(strlen(f->out->r.archive_error), META_ARCHIVE_ERROR_BYTES - 1);
}

/* A change notice: id 0, its lease, shard and number, both lists whole; a list
 * past META_NOTICE_INOS_MAX is refused. */
static void test_change_notice_round_trip(void **state)
{
    struct fixture *f = *state;
    static const uint64_t changed[] = {3, 1u << 20, UINT64_MAX};
    static const uint64_t renamed[] = {77, 5};
    struct meta_response resp = {.lease = 9, .shard = 1, .changed = changed, .changed_count = 3,
                                 .renamed = renamed, .renamed_count = 2, .notice = 12};
    size_t len;
    uint64_t id = 1;

    assert_int_equal(meta_response_encode(&resp, META_OP_ACCESS, f->buf, BUF_BYTES, &len), 0);
    assert_int_equal(meta_response_id(f->buf + 4, len - 4, &id), 0);
    assert_int_equal(id, 0);
    assert_int_equal(meta_response_decode(f->buf + 4, len - 4, f->out), 0);
    assert_int_equal(f->out->r.lease, 9);
    assert_int_equal(f->out->r.shard, 1);
    assert_int_equal(f->out->r.notice, 12);
    assert_int_equal(f->out->r.changed_count, 3);
    assert_memory_equal(f->out->r.changed, changed, sizeof(changed));
    assert_int_equal(f->out->r.renamed_count, 2);
    assert_memory_equal(f->out->r.renamed, renamed, sizeof(renamed));
    /* field 20, packed: one more inode than a notice may name */
    refused_past(f, 20, META_NOTICE_INOS_MAX, 1);
    assert_int_equal(f->out->r.changed_count, META_NOTICE_INOS_MAX);
}

static void test_bytes_out_of_bounds_are_refused(void **state)
{
    struct fixture *f = *state;
    struct meta_request got;
    /* Request{kind: 9} */
    uint8_t bad_kind[] = {0x20, 9};
    /* Request{kind: 1, command: "\x08\x63"} — op 99 */
    uint8_t bad_op[] = {0x20, 1, 0x2a, 2, 0x08, 99};
    /* Request{kind: 3, command: "x"} — a command where none belongs */
    uint8_t stray[] = {0x20, 3, 0x2a, 1, 'x'};
    uint8_t junk[] = {0xff, 0xff, 0xff};

    assert_int_equal(meta_request_decode(bad_kind, sizeof(bad_kind), &got, f->cmd), -EINVAL);
    assert_int_equal(meta_request_decode(bad_op, sizeof(bad_op), &got, f->cmd), -EINVAL);
    assert_int_equal(meta_request_decode(stray, sizeof(stray), &got, f->cmd), -EINVAL);
    assert_int_equal(meta_request_decode(junk, sizeof(junk), &got, f->cmd), -EPROTO);
    assert_int_equal(meta_response_decode(junk, sizeof(junk), f->out), -EPROTO);
}

/* Response{dirents: blob} into out; its length. */
static size_t dirents_frame(const uint8_t *blob, size_t len, uint8_t *out)
{
    size_t n = 0;
    out[n++] = 0xBA; /* (23 << 3) | 2 as a varint: two bytes */
    out[n++] = 0x01;
    for (size_t v = len; ; v >>= 7) {
        out[n++] = (uint8_t)(v >= 0x80 ? (v & 0x7F) | 0x80 : v);
        if (v < 0x80)
            break;
    }
    memcpy(out + n, blob, len);
    return n + len;
}

/* A packed readdir page: each malformed entry is refused, and the count
 * is bounded at META_READDIR_MAX. */
static void test_packed_dirents_are_checked(void **state)
{
    struct fixture *f = *state;
    static const struct {
        uint8_t bytes[12];
        size_t len;
        int rc;
    } cases[] = {
        {{0, 7, 9, 0x80, 1, 2, 'a', 'b'}, 8, 0},       /* ino 7, cookie 9, type 128, "ab" */
        {{0, 7, 9, 0, 0}, 5, -EPROTO},                 /* an empty name */
        {{0, 7, 9, 0, 3, 'a', '/', 'b'}, 8, -EPROTO},  /* a '/' */
        {{0, 7, 9, 0, 3, 'a', 0, 'b'}, 8, -EPROTO},    /* a NUL */
        {{2, 7, 9, 0, 1, 'a'}, 6, -EPROTO},            /* an unknown flag */
        {{1, 7, 9, 0, 1, 'a', 7, 1}, 8, -EPROTO},      /* attributes cut short */
        {{0, 7, 9, 0, 4, 'a', 'b'}, 7, -EPROTO},       /* a name cut short */
        {{0, 7, 0xff}, 3, -EPROTO},                    /* a varint cut short */
    };
    uint8_t *frame = malloc(8 + META_READDIR_MAX * 8 + 8);
    assert_non_null(frame);

    for (size_t i = 0; i < AR_ARRAY_LEN(cases); i++) {
        size_t n = dirents_frame(cases[i].bytes, cases[i].len, frame);
        assert_int_equal(meta_response_decode(frame, n, f->out), cases[i].rc);
    }
    size_t n = dirents_frame(cases[0].bytes, cases[0].len, frame);
    assert_int_equal(meta_response_decode(frame, n, f->out), 0);
    assert_int_equal(f->out->r.reply.entries[0].type, 128);
    assert_string_equal(f->out->r.reply.entries[0].name, "ab");
    /* a name of 255 bytes is taken, one of 256 refused: flags, ino, cookie,
     * type, then the length as a two-byte varint */
    uint8_t *blob = calloc(1, (META_READDIR_MAX + 1) * 8);
    assert_non_null(blob);
    memcpy(blob, (uint8_t[]){0, 7, 9, 0, 0xFF, 0x01}, 6);
    memset(blob + 6, 'x', 256);
    assert_int_equal(meta_response_decode(frame, dirents_frame(blob, 6 + 255, frame), f->out), 0);
    assert_int_equal(f->out->r.reply.entries[0].name_len, 255);
    memcpy(blob + 4, (uint8_t[]){0x80, 0x02}, 2);
    assert_int_equal(meta_response_decode(frame, dirents_frame(blob, 6 + 256, frame), f->out),
                     -EPROTO);
    /* 1,024 entries are taken, 1,025 refused */
    for (uint32_t i = 0; i <= META_READDIR_MAX; i++)
        memcpy(blob + i * 8, cases[0].bytes, 8);
    assert_int_equal(meta_response_decode(frame, dirents_frame(blob, META_READDIR_MAX * 8, frame),
                                          f->out),
                     0);
    assert_int_equal(f->out->r.reply.entry_count, META_READDIR_MAX);
    assert_int_equal(
        meta_response_decode(frame, dirents_frame(blob, (META_READDIR_MAX + 1) * 8, frame),
                             f->out),
        -EPROTO);
    free(blob);
    free(frame);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Mutated frames never crash a decoder (ASan and UBSan watch in CI). */
/* A response's id, read without decoding it, for ids of every varint
 * length and for replies with fields before and after. */
static void test_response_id_is_read_alone(void **state)
{
    struct fixture *f = *state;
    static const uint64_t ids[] = {0, 1, 127, 128, 300, 1ull << 35, UINT64_MAX};
    size_t len;
    uint64_t id;

    for (size_t i = 0; i < AR_ARRAY_LEN(ids); i++) {
        struct meta_response resp = {.id = ids[i], .rc = -ENOENT, .epoch = 9};
        resp.reply.attr.ino = 77;
        assert_int_equal(meta_response_encode(&resp, META_OP_GETATTR, f->buf, BUF_BYTES, &len),
                         0);
        assert_int_equal(meta_response_id(f->buf + 4, len - 4, &id), 0);
        assert_int_equal(id, ids[i]);
    }
    uint8_t bad[] = {0x08, 0xff}; /* a varint cut short */
    assert_int_equal(meta_response_id(bad, sizeof(bad), &id), -EPROTO);
    uint8_t group[] = {0x0b}; /* a wire type protobuf no longer uses */
    assert_int_equal(meta_response_id(group, sizeof(group), &id), -EPROTO);
}

static void test_mutated_frames_never_crash_the_decoders(void **state)
{
    struct fixture *f = *state;
    struct meta_cmd rd = {.op = META_OP_READDIR, .ino = 1, .entry_cap = 40,
                          .flags = META_READDIR_ATTRS};
    struct meta_response resp = {.id = 1};
    struct meta_request req = {.id = 2, .kind = META_REQ_COMMAND};
    static uint8_t work[1 << 16];
    uint64_t rng = 0xfeed;
    size_t rlen;
    size_t qlen;

    resp.reply.entries = f->entries;
    resp.reply.slices = f->slices;
    assert_int_equal(meta_shard_read(f->shard, &rd, &resp.reply), 0);
    assert_int_equal(meta_response_encode(&resp, META_OP_READDIR, f->buf, BUF_BYTES, &rlen), 0);
    assert_true(rlen <= sizeof(work));
    uint8_t *qbuf = malloc(1 << 16);
    assert_non_null(qbuf);
    assert_int_equal(meta_request_encode(&req, &rd, qbuf, 1 << 16, &qlen), 0);
    unsigned decoded = 0;
    for (unsigned round = 0; round < 20000; round++) {
        bool is_resp = round % 2 == 0;
        const uint8_t *src = is_resp ? f->buf + 4 : qbuf + 4;
        size_t len = (is_resp ? rlen : qlen) - 4;
        memcpy(work, src, len);
        for (int k = 0; k < 1 + (int)(round % 5); k++) {
            uint64_t r = rng_next(&rng);
            work[r % len] ^= (uint8_t)(r >> 32);
        }
        if (round % 7 == 0)
            len = rng_next(&rng) % len;
        int rc = is_resp ? meta_response_decode(work, len, f->out)
                         : meta_request_decode(work, len, &(struct meta_request){.id = 0},
                                               f->cmd);
        decoded += rc == 0;
        /* the id a client picks a buffer by agrees with the full decode */
        uint64_t id;
        int id_rc = meta_response_id(work, len, &id);
        if (is_resp && rc == 0) {
            assert_int_equal(id_rc, 0);
            assert_int_equal(id, f->out->r.id);
        }
    }
    assert_true(decoded > 100);
    free(qbuf);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_request_round_trip),
        T(test_response_id_is_read_alone),
        T(test_responses_carry_what_each_reply_fills),
        T(test_redirect_carries_the_leader),
        T(test_status_archive_error_round_trip),
        T(test_change_notice_round_trip),
        T(test_bytes_out_of_bounds_are_refused),
        T(test_packed_dirents_are_checked),
        T(test_mutated_frames_never_crash_the_decoders),
    };
#undef T
    return cmocka_run_group_tests_name("test_rpc_wire", tests, NULL, NULL);
}
