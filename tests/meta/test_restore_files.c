/* tests/meta/test_restore_files.c - META_OP_RESTORE_FILES (meta/ops.c).
 * Goal: a batch of files made whole in one command is the state the same
 * files made one command at a time would be (equal shard hashes); a
 * command with anything wrong in it changes nothing; it travels the wire
 * field for field; a retry is applied once.
 * Method: two shards from the same start, one fed the batch, one the
 * equivalent MKNOD/SYMLINK, WRITE and SETATTR commands. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "meta.h"

#define NOW 1700000000000000000ll

static struct meta_file_item items[4];
static struct meta_file_piece pieces[3];

/* A regular file of two pieces with a hole at its end, a set-uid file of
 * one, a symlink, a fifo. */
static void make_items(void)
{
    pieces[0] = (struct meta_file_piece){.offset = 0, .slice = {.id = 77, .size = 8192,
                                                                 .off = 0, .len = 4096}};
    pieces[1] = (struct meta_file_piece){.offset = 4096, .slice = {.id = 78, .size = 100,
                                                                    .off = 10, .len = 90}};
    pieces[2] = (struct meta_file_piece){.offset = 0, .slice = {.id = 79, .size = 5, .len = 5}};
    items[0] = (struct meta_file_item){.name = "frame", .name_len = 5, .mode = S_IFREG | 0640,
                                       .uid = 1000, .gid = 2000, .atime_ns = 111,
                                       .mtime_ns = 222, .size = 10000, .piece_count = 2};
    items[1] = (struct meta_file_item){.name = "tool", .name_len = 4, .mode = S_IFREG | 04755,
                                       .uid = 7, .gid = 8, .atime_ns = 333, .mtime_ns = 444,
                                       .size = 5, .piece_first = 2, .piece_count = 1};
    items[2] = (struct meta_file_item){.name = "link", .name_len = 4, .mode = S_IFLNK | 0777,
                                       .uid = 9, .gid = 9, .atime_ns = 555, .mtime_ns = 666,
                                       .target = "frame", .target_len = 5};
    items[3] = (struct meta_file_item){.name = "pipe", .name_len = 4, .mode = S_IFIFO | 0600,
                                       .atime_ns = 777, .mtime_ns = 888};
}

static struct meta_shard *new_shard(void)
{
    struct meta_shard *s = NULL;

    assert_int_equal(meta_shard_new_first(META_ROOT_SHARD, &s), 0);
    return s;
}

static struct meta_cmd batch_cmd(uint32_t count)
{
    return (struct meta_cmd){.op = META_OP_RESTORE_FILES, .now_ns = NOW, .new_ino = 100,
                             .ino = 1, .items = items, .item_count = count, .pieces = pieces,
                             .piece_count = 3};
}

static int apply(struct meta_shard *s, struct meta_cmd *cmd)
{
    struct meta_reply r = {0};

    return meta_shard_apply(s, cmd, &r);
}

/* The same files, one command at a time. */
static void apply_one_by_one(struct meta_shard *s, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        const struct meta_file_item *it = &items[i];
        bool is_link = (it->mode & S_IFMT) == S_IFLNK;
        struct meta_cmd mk = {.op = is_link ? META_OP_SYMLINK : META_OP_MKNOD, .now_ns = NOW,
                              .new_ino = 100 + i, .ino = 1, .name = it->name,
                              .name_len = it->name_len, .mode = it->mode, .target = it->target,
                              .target_len = it->target_len};
        assert_int_equal(apply(s, &mk), 0);
        for (uint32_t k = 0; k < it->piece_count; k++) {
            const struct meta_file_piece *p = &pieces[it->piece_first + k];
            struct meta_cmd w = {.op = META_OP_WRITE, .now_ns = NOW, .ino = 100 + i,
                                 .offset = p->offset, .slice = p->slice};
            assert_int_equal(apply(s, &w), 0);
        }
        struct meta_cmd own = {.op = META_OP_SETATTR, .now_ns = NOW, .ino = 100 + i,
                               .set_mask = META_SET_UID | META_SET_GID |
                                           ((it->mode & S_IFMT) == S_IFREG ? META_SET_SIZE : 0),
                               .set = {.uid = it->uid, .gid = it->gid, .size = it->size}};
        assert_int_equal(apply(s, &own), 0);
        struct meta_cmd rest = {.op = META_OP_SETATTR, .now_ns = NOW, .ino = 100 + i,
                                .set_mask = META_SET_ATIME | META_SET_MTIME |
                                            (is_link ? 0 : META_SET_MODE),
                                .set = {.mode = it->mode & 07777, .atime_ns = it->atime_ns,
                                        .mtime_ns = it->mtime_ns}};
        assert_int_equal(apply(s, &rest), 0);
    }
}

static void test_restore_files_equals_the_commands_one_by_one(void **state)
{
    (void)state;
    make_items();
    struct meta_shard *a = new_shard();
    struct meta_shard *b = new_shard();
    struct meta_cmd cmd = batch_cmd(4);
    struct meta_reply r = {0};

    assert_int_equal(meta_shard_apply(a, &cmd, &r), 0);
    assert_int_equal(r.attr.ino, 103); /* the last file's */
    apply_one_by_one(b, 4);
    assert_int_equal(meta_shard_hash(a), meta_shard_hash(b));
    /* and it is what it says */
    struct meta_cmd get = {.op = META_OP_GETATTR, .ino = 101};
    assert_int_equal(meta_shard_read(a, &get, &r), 0);
    assert_int_equal(r.attr.mode, S_IFREG | 04755);
    assert_int_equal(r.attr.uid, 7);
    assert_int_equal(r.attr.mtime_ns, 444);
    struct meta_slice got[8];
    struct meta_reply map = {.slices = got, .slice_cap = 8};
    struct meta_cmd rm = {.op = META_OP_READ_MAP, .ino = 100};
    assert_int_equal(meta_shard_read(a, &rm, &map), 0);
    assert_int_equal(map.attr.size, 10000);
    assert_int_equal(got[0].id, 77);
    assert_int_equal(got[1].id, 78);
    assert_int_equal(got[1].off, 10);
    meta_shard_free(a);
    meta_shard_free(b);
}

static void test_restore_files_refusals_change_nothing(void **state)
{
    (void)state;
    make_items();
    struct meta_shard *s = new_shard();
    uint64_t h = meta_shard_hash(s);
    struct meta_cmd cmd;

    cmd = batch_cmd(4);
    cmd.cred.uid = 1000;
    assert_int_equal(apply(s, &cmd), -EPERM);
    items[3].name = "frame"; /* two of one name */
    items[3].name_len = 5;
    cmd = batch_cmd(4);
    assert_int_equal(apply(s, &cmd), -EEXIST);
    make_items();
    pieces[1].slice.len = 200; /* past its slice */
    cmd = batch_cmd(4);
    assert_int_equal(apply(s, &cmd), -EINVAL);
    make_items();
    pieces[1].offset = 9950; /* past the file's size */
    cmd = batch_cmd(4);
    assert_int_equal(apply(s, &cmd), -EINVAL);
    make_items();
    items[3].mode = S_IFDIR | 0755;
    cmd = batch_cmd(4);
    assert_int_equal(apply(s, &cmd), -EINVAL);
    make_items();
    items[2].name = "a/b";
    items[2].name_len = 3;
    cmd = batch_cmd(4);
    assert_int_equal(apply(s, &cmd), -EINVAL);
    make_items();
    cmd = batch_cmd(4);
    cmd.ino = 55; /* no such directory */
    assert_int_equal(apply(s, &cmd), -ENOENT);
    cmd = batch_cmd(0);
    assert_int_equal(apply(s, &cmd), -EINVAL);
    assert_int_equal(meta_shard_hash(s), h);
    /* a name that exists: the whole command is refused */
    cmd = batch_cmd(1);
    assert_int_equal(apply(s, &cmd), 0);
    h = meta_shard_hash(s);
    cmd = batch_cmd(4);
    cmd.new_ino = 200;
    assert_int_equal(apply(s, &cmd), -EEXIST);
    assert_int_equal(meta_shard_hash(s), h);
    meta_shard_free(s);
}

static void test_restore_files_on_the_wire_and_retried(void **state)
{
    (void)state;
    make_items();
    struct meta_cmd cmd = batch_cmd(4);
    cmd.client_id = 5;
    cmd.seq = 1;
    static uint8_t buf[1 << 16];
    static struct meta_cmd_buf out;
    size_t len;

    assert_int_equal(meta_cmd_encode(&cmd, buf, sizeof(buf), &len), 0);
    assert_int_equal(meta_cmd_decode(buf, len, &out), 0);
    assert_int_equal(out.cmd.item_count, 4);
    assert_int_equal(out.cmd.piece_count, 3);
    for (uint32_t i = 0; i < 4; i++) {
        const struct meta_file_item *x = &items[i];
        const struct meta_file_item *y = &out.cmd.items[i];
        assert_int_equal(y->name_len, x->name_len);
        assert_memory_equal(y->name, x->name, x->name_len);
        assert_int_equal(y->mode, x->mode);
        assert_int_equal(y->uid, x->uid);
        assert_int_equal(y->atime_ns, x->atime_ns);
        assert_int_equal(y->size, x->size);
        assert_int_equal(y->target_len, x->target_len);
        assert_int_equal(y->piece_count, x->piece_count);
        for (uint32_t k = 0; k < x->piece_count; k++) {
            const struct meta_file_piece *px = &pieces[x->piece_first + k];
            const struct meta_file_piece *py = &out.cmd.pieces[y->piece_first + k];
            assert_int_equal(py->offset, px->offset);
            assert_int_equal(py->slice.id, px->slice.id);
            assert_int_equal(py->slice.size, px->slice.size);
            assert_int_equal(py->slice.off, px->slice.off);
            assert_int_equal(py->slice.len, px->slice.len);
        }
    }
    assert_int_equal(out.cmd.pieces[1].offset, 4096);
    assert_int_equal(out.cmd.pieces[1].slice.off, 10);
    /* every truncation is refused or decodes within bounds */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = meta_cmd_decode(buf, cut, &out);
        assert_true(rc == 0 || rc == -EPROTO || rc == -EINVAL || rc == -E2BIG ||
                    rc == -ENAMETOOLONG);
    }
    /* too many files for one command */
    static struct meta_file_item many[META_RESTORE_FILES_MAX + 1];
    struct meta_cmd big = {.op = META_OP_RESTORE_FILES, .items = many,
                           .item_count = META_RESTORE_FILES_MAX + 1};
    assert_int_equal(meta_cmd_encode(&big, buf, sizeof(buf), &len), -E2BIG);
    /* a retry is applied once */
    struct meta_shard *s = new_shard();
    assert_int_equal(apply(s, &cmd), 0);
    uint64_t h = meta_shard_hash(s);
    assert_int_equal(apply(s, &cmd), 0);
    assert_int_equal(meta_shard_hash(s), h);
    meta_shard_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restore_files_equals_the_commands_one_by_one),
        cmocka_unit_test(test_restore_files_refusals_change_nothing),
        cmocka_unit_test(test_restore_files_on_the_wire_and_retried),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
