/* tests/meta/test_data.c - file data maps: write, truncate, fallocate, read.
 * Goal: a read resolves to exactly the bytes POSIX says, whatever mix of
 * overlapping writes, truncations, holes and chunk edges came before; every
 * bad command gets Linux's errno and changes nothing.
 * Method: cmocka cases for each command and its errors; then a byte-level
 * model: seeded random writes, truncations and fallocates, done both on a
 * real file (pwrite, ftruncate, fallocate, as root or as a user without
 * CAP_FSETID) and as commands on a shard, whose slices the test keeps in
 * memory as the object store would. After every step the file's size, mode
 * and every byte near the chunk edges (where the model writes) must match.
 * ARBOR_DATA_SEED=N replays one seed. The model needs root (for the ids). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../objstore/harness.h"
#include "limits.h"
#include "meta.h"

#define CHUNK ((uint64_t)META_CHUNK_BYTES)

struct fixture {
    struct meta_shard *shard;
    uint64_t next_ino;
    uint64_t next_slice;
    int64_t now;
    struct meta_slice pieces[META_READ_SLICES_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0777, .created_ns = 1};

    assert_non_null(f);
    assert_int_equal(meta_shard_new(&cfg, &f->shard), 0);
    f->next_ino = 100;
    f->next_slice = 1;
    f->now = 1000;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    ar_mem_fail_after(0, 0);
    meta_shard_free(f->shard);
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------------------- */

static uint64_t make_file(struct fixture *f, const char *name, uint32_t mode, uint32_t uid)
{
    struct meta_cmd cmd = {.op = META_OP_MKNOD, .ino = 1, .name = name,
                           .name_len = (uint32_t)strlen(name), .mode = mode,
                           .new_ino = f->next_ino++, .now_ns = ++f->now};
    struct meta_reply r;

    cmd.cred.uid = uid;
    cmd.cred.gid = uid;
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), 0);
    return r.attr.ino;
}

/* Show bytes [off, off + len) of a new slice of `size` bytes at file offset at. */
static int put(struct fixture *f, uint64_t ino, uint64_t at, uint32_t size, uint32_t off,
               uint32_t len, struct meta_attr *out)
{
    struct meta_cmd cmd = {.op = META_OP_WRITE, .ino = ino, .offset = at, .now_ns = ++f->now,
                           .slice = {.id = f->next_slice++, .size = size, .off = off, .len = len}};
    struct meta_reply r;
    int rc = meta_shard_apply(f->shard, &cmd, &r);

    if (rc == 0 && out != NULL)
        *out = r.attr;
    return rc;
}

static int falloc(struct fixture *f, uint64_t ino, uint32_t mode, uint64_t off, uint64_t len)
{
    struct meta_cmd cmd = {.op = META_OP_FALLOCATE, .ino = ino, .flags = mode, .offset = off,
                           .length = len, .now_ns = ++f->now};
    struct meta_reply r;

    return meta_shard_apply(f->shard, &cmd, &r);
}

static int truncate_to(struct fixture *f, uint64_t ino, uint64_t size)
{
    struct meta_cmd cmd = {.op = META_OP_SETATTR, .ino = ino, .set_mask = META_SET_SIZE,
                           .set = {.size = size}, .now_ns = ++f->now};
    struct meta_reply r;

    return meta_shard_apply(f->shard, &cmd, &r);
}

/* The resolved pieces of the chunk holding offset; returns their count. */
static uint32_t read_map(struct fixture *f, uint64_t ino, uint64_t offset)
{
    struct meta_cmd cmd = {.op = META_OP_READ_MAP, .ino = ino, .offset = offset};
    struct meta_reply r = {.slices = f->pieces, .slice_cap = META_READ_SLICES_MAX};

    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), 0);
    return r.slice_count;
}

static void expect_piece(const struct meta_slice *p, uint64_t id, uint32_t pos, uint32_t len,
                         uint32_t off)
{
    if (p->id != id || p->pos != pos || p->len != len || p->off != off)
        fail_msg("piece {id %llu pos %u len %u off %u}, expected {id %llu pos %u len %u off %u}",
                 (unsigned long long)p->id, p->pos, p->len, p->off, (unsigned long long)id, pos,
                 len, off);
}

/* ---- cases ---------------------------------------------------------------------- */

static void test_write_errors_follow_linux(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);
    uint64_t fifo = make_file(f, "p", S_IFIFO | 0644, 0);
    struct meta_cmd dir = {.op = META_OP_MKDIR, .ino = 1, .name = "d", .name_len = 1,
                           .mode = S_IFDIR | 0755, .new_ino = f->next_ino++, .now_ns = ++f->now};
    struct meta_reply r;
    assert_int_equal(meta_shard_apply(f->shard, &dir, &r), 0);
    uint64_t before = meta_shard_hash(f->shard);

    assert_int_equal(put(f, 999, 0, 10, 0, 10, NULL), -ENOENT);
    assert_int_equal(put(f, r.attr.ino, 0, 10, 0, 10, NULL), -EISDIR);
    assert_int_equal(put(f, fifo, 0, 10, 0, 10, NULL), -EINVAL);
    assert_int_equal(put(f, file, 0, 10, 0, 0, NULL), -EINVAL);          /* nothing shown */
    assert_int_equal(put(f, file, 0, 10, 5, 6, NULL), -EINVAL);          /* past the slice */
    assert_int_equal(put(f, file, 0, META_CHUNK_BYTES + 1, 0, 1, NULL), -EINVAL);
    assert_int_equal(put(f, file, CHUNK - 4, 8, 0, 8, NULL), -EINVAL);   /* two chunks */
    assert_int_equal(put(f, file, META_FILE_BYTES_MAX - 4, 8, 0, 8, NULL), -EFBIG);
    struct meta_cmd hole = {.op = META_OP_WRITE, .ino = file, .now_ns = ++f->now,
                            .slice = {.id = 0, .size = 0, .len = 4}};
    assert_int_equal(meta_shard_apply(f->shard, &hole, &r), -EINVAL);    /* id 0 is a hole */
    assert_true(meta_shard_hash(f->shard) == before);
    /* at the limits: the last chunk byte, the largest slice */
    assert_int_equal(put(f, file, CHUNK - 8, 8, 0, 8, NULL), 0);
    assert_int_equal(put(f, file, 0, META_CHUNK_BYTES, 0, META_CHUNK_BYTES, NULL), 0);
    /* a query op is not a command, and a command is not a query */
    struct meta_cmd q = {.op = META_OP_READ_MAP, .ino = file};
    assert_int_equal(meta_shard_apply(f->shard, &q, &r), -EINVAL);
    struct meta_cmd w = {.op = META_OP_WRITE, .ino = file};
    assert_int_equal(meta_shard_read(f->shard, &w, &r), -EINVAL);
}

static void test_write_sets_size_and_times(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);
    struct meta_attr a;

    assert_int_equal(put(f, file, 100, 50, 0, 50, &a), 0);
    assert_int_equal(a.size, 150);
    assert_true(a.mtime_ns == f->now && a.ctime_ns == f->now);
    assert_int_equal(put(f, file, 0, 10, 0, 10, &a), 0);
    assert_int_equal(a.size, 150); /* an earlier range does not shrink it */
    /* the bytes below 100 that no write covered read as a hole */
    assert_int_equal(read_map(f, file, 0), 3);
    expect_piece(&f->pieces[0], 2, 0, 10, 0);
    expect_piece(&f->pieces[1], 0, 10, 90, 0);
    expect_piece(&f->pieces[2], 1, 100, 50, 0);
}

static void test_overlapping_writes_resolve_newest_first(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);

    assert_int_equal(put(f, file, 0, 1000, 0, 1000, NULL), 0);  /* id 1: whole file, inline */
    assert_int_equal(put(f, file, 100, 200, 50, 100, NULL), 0); /* id 2: inside it */
    assert_int_equal(put(f, file, 150, 100, 0, 100, NULL), 0);  /* id 3: over 2's tail */
    assert_int_equal(read_map(f, file, 999), 4);
    expect_piece(&f->pieces[0], 1, 0, 100, 0);
    expect_piece(&f->pieces[1], 2, 100, 50, 50);
    expect_piece(&f->pieces[2], 3, 150, 100, 0);
    expect_piece(&f->pieces[3], 1, 250, 750, 250);
    assert_int_equal(read_map(f, file, 1000), 0); /* at the end: nothing */
    /* a write over all of it leaves one slice: the form goes back to inline */
    uint64_t covered = meta_shard_hash(f->shard);
    assert_int_equal(put(f, file, 0, 1000, 0, 1000, NULL), 0);
    assert_int_equal(read_map(f, file, 0), 1);
    expect_piece(&f->pieces[0], 4, 0, 1000, 0);
    assert_true(meta_shard_hash(f->shard) != covered);
}

/* A chunk's stack (META_READ_MAP_STACK): its slices bottom first, holes
 * among them, cut at the size; written again in that order into another
 * file, holes punched, they make a chunk that resolves the same, with as
 * many slices as the stack, where the pieces are many more. */
static void test_stack_read_rebuilds_the_same_chunk(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);
    uint64_t copy = make_file(f, "copy", S_IFREG | 0644, 0);

    assert_int_equal(put(f, file, 0, 100000, 0, 100000, NULL), 0); /* id 1 */
    for (uint32_t i = 0; i < 40; i++) {
        assert_int_equal(put(f, file, i * 1000 + 10, 8, 2, 5, NULL), 0); /* ids 2..41 */
    }
    assert_int_equal(falloc(f, file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 5000, 3000), 0);
    assert_int_equal(truncate_to(f, file, 90000), 0);
    uint32_t pieces = read_map(f, file, 0);
    static struct meta_slice want[META_READ_SLICES_MAX];
    memcpy(want, f->pieces, sizeof(want[0]) * pieces);

    struct meta_cmd cmd = {.op = META_OP_READ_MAP, .ino = file, .flags = META_READ_MAP_STACK};
    static struct meta_slice stack[META_READ_SLICES_MAX];
    struct meta_reply r = {.slices = stack, .slice_cap = META_READ_SLICES_MAX};
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), 0);
    assert_int_equal(r.slice_count, 1 + 37 + 1); /* the hole covered three small ones */
    assert_true(pieces > 2 * (r.slice_count - 2));
    expect_piece(&stack[0], 1, 0, 90000, 0);
    expect_piece(&stack[1], 2, 10, 5, 2);
    bool has_hole = false;
    for (uint32_t i = 0; i < r.slice_count; i++) {
        has_hole = has_hole || (stack[i].id == 0 && stack[i].pos == 5000 && stack[i].len == 3000);
    }
    assert_true(has_hole);
    /* an unknown flag is refused */
    cmd.flags = 2;
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), -EINVAL);

    assert_int_equal(truncate_to(f, copy, 90000), 0);
    for (uint32_t i = 0; i < r.slice_count; i++) {
        const struct meta_slice *sl = &stack[i];
        struct meta_cmd w = {.op = META_OP_WRITE, .ino = copy, .offset = sl->pos,
                             .now_ns = ++f->now, .slice = *sl};
        struct meta_reply wr;
        if (sl->id == 0)
            assert_int_equal(falloc(f, copy, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                    sl->pos, sl->len), 0);
        else
            assert_int_equal(meta_shard_apply(f->shard, &w, &wr), 0);
    }
    assert_int_equal(read_map(f, copy, 0), pieces);
    for (uint32_t i = 0; i < pieces; i++) {
        expect_piece(&f->pieces[i], want[i].id, want[i].pos, want[i].len, want[i].off);
    }
}

static void test_truncate_cuts_slices_and_extends_with_zeros(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);

    assert_int_equal(put(f, file, 0, 1000, 0, 1000, NULL), 0);
    assert_int_equal(put(f, file, CHUNK + 10, 20, 0, 20, NULL), 0);
    assert_int_equal(truncate_to(f, file, 500), 0);
    assert_int_equal(truncate_to(f, file, 2 * CHUNK), 0);
    /* the old bytes past 500 must not come back */
    assert_int_equal(read_map(f, file, 0), 2);
    expect_piece(&f->pieces[0], 1, 0, 500, 0);
    expect_piece(&f->pieces[1], 0, 500, META_CHUNK_BYTES - 500, 0);
    assert_int_equal(read_map(f, file, CHUNK + 5), 1);
    expect_piece(&f->pieces[0], 0, 0, META_CHUNK_BYTES, 0);
    assert_int_equal(truncate_to(f, file, 0), 0);
    assert_int_equal(read_map(f, file, 0), 0);
}

static void test_fallocate_errors_follow_linux(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);
    uint64_t fifo = make_file(f, "p", S_IFIFO | 0644, 0);

    assert_int_equal(falloc(f, file, 0, 0, 0), -EINVAL);
    assert_int_equal(falloc(f, file, 0, (uint64_t)INT64_MAX + 1, 1), -EINVAL);
    assert_int_equal(falloc(f, file, FALLOC_FL_PUNCH_HOLE, 0, 10), -EOPNOTSUPP);
    assert_int_equal(falloc(f, file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE |
                                         FALLOC_FL_KEEP_SIZE, 0, 10), -EOPNOTSUPP);
    assert_int_equal(falloc(f, file, FALLOC_FL_COLLAPSE_RANGE, 0, 4096), -EOPNOTSUPP);
    assert_int_equal(falloc(f, 1, 0, 0, 10), -EISDIR);
    assert_int_equal(falloc(f, fifo, 0, 0, 10), -ENODEV);
    assert_int_equal(falloc(f, 999, 0, 0, 10), -ENOENT);
    assert_int_equal(falloc(f, file, 0, META_FILE_BYTES_MAX, 1), -EFBIG);
    assert_int_equal(falloc(f, file, 0, META_FILE_BYTES_MAX - 1, 1), 0);
}

static void test_fallocate_modes(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);
    struct meta_cmd get = {.op = META_OP_GETATTR, .ino = file};
    struct meta_reply r;

    assert_int_equal(put(f, file, 0, 1000, 0, 1000, NULL), 0);
    assert_int_equal(falloc(f, file, FALLOC_FL_KEEP_SIZE, 0, 5000), 0);
    assert_int_equal(meta_shard_read(f->shard, &get, &r), 0);
    assert_int_equal(r.attr.size, 1000);
    assert_int_equal(falloc(f, file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 100), 0);
    assert_int_equal(falloc(f, file, FALLOC_FL_ZERO_RANGE, 900, 200), 0);
    assert_int_equal(meta_shard_read(f->shard, &get, &r), 0);
    assert_int_equal(r.attr.size, 1100);
    assert_int_equal(read_map(f, file, 0), 4);
    expect_piece(&f->pieces[0], 1, 0, 100, 0);
    expect_piece(&f->pieces[1], 0, 100, 100, 0);
    expect_piece(&f->pieces[2], 1, 200, 700, 200);
    expect_piece(&f->pieces[3], 0, 900, 200, 0);
    /* a punch over everything leaves no slice at all */
    assert_int_equal(falloc(f, file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1100), 0);
    assert_int_equal(read_map(f, file, 0), 1);
    expect_piece(&f->pieces[0], 0, 0, 1100, 0);
    assert_int_equal(falloc(f, file, 0, 0, 4000), 0);
    assert_int_equal(meta_shard_read(f->shard, &get, &r), 0);
    assert_int_equal(r.attr.size, 4000);
}

/* An inline file (one whole slice) that fallocate grows: the new bytes are
 * zeros, not the slice stretched, in this chunk and the next. */
static void test_fallocate_growing_an_inline_file_adds_zeros(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);
    uint64_t id = f->next_slice;

    assert_int_equal(put(f, file, 0, 100, 0, 100, NULL), 0);
    assert_int_equal(falloc(f, file, 0, 0, 200), 0);
    assert_int_equal(read_map(f, file, 0), 2);
    expect_piece(&f->pieces[0], id, 0, 100, 0);
    expect_piece(&f->pieces[1], 0, 100, 100, 0);
    assert_int_equal(falloc(f, file, FALLOC_FL_ZERO_RANGE, 0, (uint64_t)META_CHUNK_BYTES + 10),
                     0);
    assert_int_equal(read_map(f, file, META_CHUNK_BYTES), 1);
    expect_piece(&f->pieces[0], 0, 0, 10, 0);
}

static uint64_t map_hash(struct fixture *f, uint64_t ino, uint64_t offset)
{
    struct meta_cmd cmd = {.op = META_OP_READ_MAP, .ino = ino, .offset = offset};
    struct meta_reply r = {.slices = f->pieces, .slice_cap = META_READ_SLICES_MAX};

    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), 0);
    assert_true(r.map_hash != 0);
    return r.map_hash;
}

/* A compaction's write: one slice of len bytes over the chunk at `at`,
 * applied only if the chunk still hashes to if_hash. */
static int put_if(struct fixture *f, uint64_t ino, uint64_t at, uint32_t len, uint64_t if_hash)
{
    struct meta_cmd cmd = {.op = META_OP_WRITE, .ino = ino, .offset = at, .now_ns = ++f->now,
                           .slice = {.id = f->next_slice++, .size = len, .len = len},
                           .if_map_hash = if_hash};
    struct meta_reply r;

    return meta_shard_apply(f->shard, &cmd, &r);
}

static void test_chunk_slice_limit_is_full_until_compacted(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);

    /* each write overlaps the one before in part, so none is covered */
    for (uint32_t i = 0; i < META_CHUNK_SLICES_MAX; i++) {
        assert_int_equal(put(f, file, (uint64_t)i * 2, 3, 0, 3, NULL), 0);
    }
    uint64_t before = meta_shard_hash(f->shard);
    assert_int_equal(put(f, file, 5000, 3, 0, 3, NULL), -AR_ECHUNKFULL);
    assert_true(meta_shard_hash(f->shard) == before);
    /* the resolved chunk fits the reply the header promises */
    assert_int_equal(read_map(f, file, 0), META_CHUNK_SLICES_MAX);
    struct meta_cmd cmd = {.op = META_OP_READ_MAP, .ino = file};
    struct meta_reply small = {.slices = f->pieces, .slice_cap = 10};
    assert_int_equal(meta_shard_read(f->shard, &cmd, &small), -ERANGE);
    /* a compaction of the chunk as read: one slice drops every one below */
    uint64_t size = 2 * META_CHUNK_SLICES_MAX + 1;
    uint64_t seen = map_hash(f, file, 0);
    assert_true(map_hash(f, file, META_CHUNK_BYTES) != seen); /* another chunk's */
    assert_int_equal(put_if(f, file, 0, (uint32_t)size, seen), 0);
    assert_int_equal(read_map(f, file, 0), 1);
    assert_int_equal(put(f, file, 5000, 3, 0, 3, NULL), 0);
}

/* A compaction read before a change to its chunk is refused (ESTALE) and
 * changes nothing: a write there, a truncation, a hole; a change to
 * another chunk leaves it good. */
static void test_compaction_of_a_changed_chunk_is_stale(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);
    uint64_t chunk = META_CHUNK_BYTES;

    assert_int_equal(put(f, file, 0, 100, 0, 100, NULL), 0);
    assert_int_equal(put(f, file, 50, 100, 0, 100, NULL), 0);
    assert_int_equal(put(f, file, chunk, 10, 0, 10, NULL), 0);
    uint64_t seen = map_hash(f, file, 0);
    assert_int_equal(map_hash(f, file, 10), seen); /* any byte of the chunk names it */

    assert_int_equal(put(f, file, 20, 5, 0, 5, NULL), 0);
    uint64_t before = meta_shard_hash(f->shard);
    assert_int_equal(put_if(f, file, 0, 150, seen), -ESTALE);
    assert_true(meta_shard_hash(f->shard) == before);

    seen = map_hash(f, file, 0);
    assert_int_equal(truncate_to(f, file, 120), 0);
    assert_int_equal(put_if(f, file, 0, 150, seen), -ESTALE);
    seen = map_hash(f, file, 0);
    assert_int_equal(falloc(f, file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 10), 0);
    assert_int_equal(put_if(f, file, 0, 120, seen), -ESTALE);

    seen = map_hash(f, file, 0);
    assert_int_equal(put(f, file, 2 * chunk, 10, 0, 10, NULL), 0); /* the size moves in it */
    assert_true(map_hash(f, file, 0) != seen);
    seen = map_hash(f, file, 0);
    assert_int_equal(put(f, file, chunk + 5, 10, 0, 10, NULL), 0); /* another chunk */
    assert_int_equal(map_hash(f, file, 0), seen);
    uint64_t compacted = f->next_slice;
    assert_int_equal(put_if(f, file, 0, 120, seen), 0);
    assert_int_equal(read_map(f, file, 0), 2); /* the slice, then a hole to the chunk's end */
    expect_piece(&f->pieces[0], compacted, 0, 120, 0);
    expect_piece(&f->pieces[1], 0, 120, (uint32_t)chunk - 120, 0);
}

static void test_write_by_user_drops_setuid_root_keeps_it(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 06777, 0);
    struct meta_cmd cmd = {.op = META_OP_WRITE, .ino = file, .now_ns = ++f->now,
                           .slice = {.id = 7, .size = 4, .len = 4}};
    struct meta_reply r;

    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), 0);
    assert_int_equal(r.attr.mode, S_IFREG | 06777);
    cmd.cred.uid = 1000;
    cmd.cred.gid = 1000;
    cmd.slice.id = 8;
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), 0);
    assert_int_equal(r.attr.mode, S_IFREG | 0777);
    /* set-group-ID without group execute stays for a writer in the group */
    uint64_t g = make_file(f, "g", S_IFREG | 02666, 1000);
    cmd.ino = g;
    cmd.slice.id = 9;
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), 0);
    assert_int_equal(r.attr.mode, S_IFREG | 02666);
}

static void test_data_commands_out_of_memory_change_nothing(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 06777, 0);
    struct meta_cmd cmds[] = {
        {.op = META_OP_WRITE, .ino = file, .offset = 0, .slice = {.id = 1, .size = 100, .len = 100}},
        {.op = META_OP_WRITE, .ino = file, .offset = 10, .slice = {.id = 2, .size = 10, .len = 10},
         .cred = {.uid = 1000, .gid = 1000}},
        {.op = META_OP_WRITE, .ino = file, .offset = CHUNK, .slice = {.id = 3, .size = 5, .len = 5}},
        {.op = META_OP_FALLOCATE, .ino = file, .flags = FALLOC_FL_ZERO_RANGE, .offset = 50,
         .length = CHUNK},
        {.op = META_OP_SETATTR, .ino = file, .set_mask = META_SET_SIZE, .set = {.size = 20}},
        {.op = META_OP_WRITE, .ino = file, .offset = 0, .slice = {.id = 4, .size = 20, .len = 20}},
        {.op = META_OP_SETATTR, .ino = file, .set_mask = META_SET_SIZE, .set = {.size = 30}},
    };

    for (size_t i = 0; i < AR_ARRAY_LEN(cmds); i++) {
        int rc = -ENOMEM;
        cmds[i].now_ns = ++f->now;
        for (unsigned n = 0; rc == -ENOMEM; n++) {
            struct meta_reply r;
            uint64_t before = meta_shard_hash(f->shard);
            assert_true(n < 32);
            ar_mem_fail_after(n, 1);
            rc = meta_shard_apply(f->shard, &cmds[i], &r);
            ar_mem_fail_after(0, 0);
            if (rc == -ENOMEM && meta_shard_hash(f->shard) != before)
                fail_msg("command %zu failed at allocation %u but changed the state", i, n);
        }
        assert_int_equal(rc, 0);
    }
}

static void test_unlink_frees_the_map(void **state)
{
    struct fixture *f = *state;
    uint64_t file = make_file(f, "f", S_IFREG | 0644, 0);
    struct meta_cmd un = {.op = META_OP_UNLINK, .ino = 1, .name = "f", .name_len = 1,
                          .now_ns = ++f->now};
    struct meta_reply r;

    assert_int_equal(put(f, file, 3, 10, 0, 10, NULL), 0);
    assert_int_equal(put(f, file, CHUNK * 3, 10, 0, 10, NULL), 0);
    assert_int_equal(meta_shard_apply(f->shard, &un, &r), 0);
    struct meta_cmd st = {.op = META_OP_STATFS};
    assert_int_equal(meta_shard_read(f->shard, &st, &r), 0);
    assert_int_equal(r.bytes, 0); /* and ASan sees no leak at teardown */
}

/* ---- the byte-level model ---------------------------------------------------------- */

#define MODEL_SEEDS   200u
#define MODEL_STEPS   150u
#define MODEL_FILES   3u
#define WINDOW        (16u << 10)  /* bytes each side of a chunk edge the model touches */
#define EDGES         4u           /* chunk edges 0 .. 3 */
#define SLICES_MAX    (MODEL_STEPS * 2u + 1u)

struct model {
    struct fixture fx;
    char dir[256];
    int fds[MODEL_FILES];
    uint64_t inos[MODEL_FILES];
    uint8_t *slices[SLICES_MAX]; /* the object store: a slice id's bytes */
    uint64_t rng;
    uint64_t seed;
    unsigned step;
    uint8_t want[2 * WINDOW];
    uint8_t got[2 * WINDOW];
};

static uint64_t rnd(struct model *m, uint64_t n)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng % n;
}

static void become(uint32_t uid)
{
    gid_t g = uid;

    setfsuid(0);
    setfsgid(0);
    assert_int_equal(setgroups(1, &g), 0);
    setfsgid(uid);
    setfsuid(uid);
}

/* An offset near a chunk edge. */
static uint64_t near_edge(struct model *m)
{
    uint64_t edge = rnd(m, EDGES) * CHUNK;
    uint64_t delta = rnd(m, WINDOW);

    return edge >= delta && rnd(m, 2) ? edge - delta : edge + delta;
}

/* Our file's bytes [at, at + len) within one chunk, from the read map and the slices. */
static void sm_read(struct model *m, unsigned i, uint64_t at, uint32_t len, uint8_t *out)
{
    struct fixture *f = &m->fx;
    uint32_t count = read_map(f, m->inos[i], at);
    uint64_t start = at / CHUNK * CHUNK;

    memset(out, 0, len);
    for (uint32_t k = 0; k < count; k++) {
        const struct meta_slice *p = &f->pieces[k];
        uint64_t a = start + p->pos > at ? start + p->pos : at;
        uint64_t b = start + p->pos + p->len < at + len ? start + p->pos + p->len : at + len;
        if (a >= b || p->id == 0)
            continue;
        assert_true(p->id < SLICES_MAX && m->slices[p->id] != NULL);
        memcpy(out + (a - at), m->slices[p->id] + p->off + (a - start - p->pos), b - a);
    }
}

static void model_fail(struct model *m, const char *what)
{
    fail_msg("seed %llu step %u: %s (replay: ARBOR_DATA_SEED=%llu)", (unsigned long long)m->seed,
             m->step, what, (unsigned long long)m->seed);
}

static void compare_file(struct model *m, unsigned i)
{
    struct stat st;
    struct meta_cmd get = {.op = META_OP_GETATTR, .ino = m->inos[i]};
    struct meta_reply r;
    char what[200];

    assert_int_equal(fstat(m->fds[i], &st), 0);
    assert_int_equal(meta_shard_read(m->fx.shard, &get, &r), 0);
    if (r.attr.size != (uint64_t)st.st_size || r.attr.mode != st.st_mode) {
        snprintf(what, sizeof(what), "file %u: size %llu/%lld mode %o/%o (sm/fs)", i,
                 (unsigned long long)r.attr.size, (long long)st.st_size, r.attr.mode, st.st_mode);
        model_fail(m, what);
    }
    for (uint64_t e = 0; e < EDGES; e++) {
        /* the window's two halves lie in two chunks; read them apart */
        for (int half = 0; half < 2; half++) {
            if (e == 0 && half == 0)
                continue;
            uint64_t at = e * CHUNK - (half == 0 ? WINDOW : 0);
            uint64_t end = at + WINDOW < r.attr.size ? at + WINDOW : r.attr.size;
            if (at >= end)
                continue;
            uint32_t len = (uint32_t)(end - at);
            assert_int_equal(pread(m->fds[i], m->want, len, (off_t)at), (ssize_t)len);
            sm_read(m, i, at, len, m->got);
            if (memcmp(m->want, m->got, len) != 0) {
                uint32_t k = 0;
                while (m->want[k] == m->got[k]) {
                    k++;
                }
                snprintf(what, sizeof(what), "file %u: byte %llu is %u, kernel has %u", i,
                         (unsigned long long)(at + k), m->got[k], m->want[k]);
                model_fail(m, what);
            }
        }
    }
}

/* Write [at, at + len) of fresh bytes: a new slice per chunk it touches. */
static void model_write(struct model *m, unsigned i, uint64_t at, uint32_t len, uint32_t uid,
                        struct meta_cred *cred, bool is_whole)
{
    uint8_t buf[WINDOW];
    int fs_rc;

    for (uint32_t k = 0; k < len; k++) {
        buf[k] = (uint8_t)rnd(m, 255) + 1;
    }
    become(uid);
    fs_rc = pwrite(m->fds[i], buf, len, (off_t)at) == (ssize_t)len ? 0 : -errno;
    become(0);
    assert_int_equal(fs_rc, 0);
    for (uint32_t done = 0; done < len;) {
        uint64_t pos = at + done;
        uint32_t room = (uint32_t)(CHUNK - pos % CHUNK);
        uint32_t part = len - done < room ? len - done : room;
        /* the slice object holds the bytes with a little before and after,
         * as after a compaction or a partly shown upload */
        uint32_t pre = is_whole ? 0 : (uint32_t)rnd(m, 3) * 7;
        uint32_t post = is_whole ? 0 : (uint32_t)rnd(m, 3) * 5;
        uint64_t id = m->fx.next_slice++;
        assert_true(id < SLICES_MAX);
        m->slices[id] = calloc(1, pre + part + post);
        assert_non_null(m->slices[id]);
        memcpy(m->slices[id] + pre, buf + done, part);
        struct meta_cmd cmd = {.op = META_OP_WRITE, .cred = *cred, .ino = m->inos[i],
                               .offset = pos, .now_ns = ++m->fx.now,
                               .slice = {.id = id, .size = pre + part + post, .off = pre,
                                         .len = part}};
        struct meta_reply r;
        assert_int_equal(meta_shard_apply(m->fx.shard, &cmd, &r), 0);
        done += part;
    }
}

static void model_step(struct model *m)
{
    unsigned i = (unsigned)rnd(m, MODEL_FILES);
    uint32_t uid = rnd(m, 2) ? 0 : 1000;
    struct meta_cred cred = {.uid = uid, .gid = uid};
    struct meta_reply r;
    int fs_rc;
    int sm_rc;

    switch (rnd(m, 7)) {
    case 0:
    case 1:
    case 2:
        model_write(m, i, near_edge(m), 1 + (uint32_t)rnd(m, WINDOW), uid, &cred, false);
        break;
    case 6: { /* a whole small file written anew: the inline form */
        struct meta_cmd cmd = {.op = META_OP_SETATTR, .cred = cred, .ino = m->inos[i],
                               .set_mask = META_SET_SIZE, .now_ns = ++m->fx.now};
        become(uid);
        fs_rc = ftruncate(m->fds[i], 0) == 0 ? 0 : -errno;
        become(0);
        if (fs_rc != meta_shard_apply(m->fx.shard, &cmd, &r))
            model_fail(m, "truncate to 0 errno");
        if (fs_rc == 0)
            model_write(m, i, 0, 1 + (uint32_t)rnd(m, WINDOW), uid, &cred, true);
        break;
    }
    case 3: { /* ftruncate */
        uint64_t size = rnd(m, 4) == 0 ? 0 : near_edge(m);
        become(uid);
        fs_rc = ftruncate(m->fds[i], (off_t)size) == 0 ? 0 : -errno;
        become(0);
        struct meta_cmd cmd = {.op = META_OP_SETATTR, .cred = cred, .ino = m->inos[i],
                               .set_mask = META_SET_SIZE, .set = {.size = size},
                               .now_ns = ++m->fx.now};
        /* every mode the model uses lets others write, as the open did */
        sm_rc = meta_shard_apply(m->fx.shard, &cmd, &r);
        if (fs_rc != sm_rc)
            model_fail(m, "truncate errno");
        break;
    }
    default: { /* fallocate */
        static const int modes[] = {
            0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_PUNCH_HOLE, /* EOPNOTSUPP without KEEP_SIZE */
        };
        int mode = modes[rnd(m, AR_ARRAY_LEN(modes))];
        uint64_t at = near_edge(m);
        uint64_t len = 1 + rnd(m, 2 * WINDOW);
        become(uid);
        fs_rc = fallocate(m->fds[i], mode, (off_t)at, (off_t)len) == 0 ? 0 : -errno;
        become(0);
        struct meta_cmd cmd = {.op = META_OP_FALLOCATE, .cred = cred, .ino = m->inos[i],
                               .flags = (uint32_t)mode, .offset = at, .length = len,
                               .now_ns = ++m->fx.now};
        sm_rc = meta_shard_apply(m->fx.shard, &cmd, &r);
        if (fs_rc != sm_rc) {
            char what[120];
            snprintf(what, sizeof(what), "fallocate mode %#x: kernel %d, state machine %d", mode,
                     fs_rc, sm_rc);
            model_fail(m, what);
        }
        break;
    }
    }
    compare_file(m, i);
}

static void run_seed(uint64_t seed)
{
    struct model *m = calloc(1, sizeof(*m));
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0777};
    static const uint32_t modes[] = {0666, 06777, 02666, 04666, 06766};

    assert_non_null(m);
    m->seed = seed;
    m->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    m->fx.next_ino = 100;
    m->fx.next_slice = 1;
    harness_tmpdir(m->dir);
    assert_int_equal(meta_shard_new(&cfg, &m->fx.shard), 0);
    for (unsigned i = 0; i < MODEL_FILES; i++) {
        char name[8];
        char path[300];
        uint32_t mode = modes[rnd(m, AR_ARRAY_LEN(modes))];
        snprintf(name, sizeof(name), "f%u", i);
        snprintf(path, sizeof(path), "%s/%s", m->dir, name);
        m->fds[i] = open(path, O_RDWR | O_CREAT | O_EXCL, 0);
        assert_true(m->fds[i] >= 0);
        assert_int_equal(fchmod(m->fds[i], mode), 0);
        m->inos[i] = make_file(&m->fx, name, S_IFREG | mode, 0);
    }
    for (m->step = 0; m->step < MODEL_STEPS; m->step++) {
        model_step(m);
    }
    for (unsigned i = 0; i < MODEL_FILES; i++) {
        close(m->fds[i]);
    }
    for (unsigned k = 0; k < SLICES_MAX; k++) {
        free(m->slices[k]);
    }
    meta_shard_free(m->fx.shard);
    harness_rm_rf(m->dir);
    free(m);
}

static void test_model_bytes_match_linux(void **state)
{
    const char *one = getenv("ARBOR_DATA_SEED");

    (void)state;
    if (geteuid() != 0)
        skip(); /* acting as another user needs root */
    if (one != NULL) {
        run_seed(strtoull(one, NULL, 10));
        return;
    }
    for (uint64_t seed = 1; seed <= MODEL_SEEDS; seed++) {
        run_seed(seed);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_errors_follow_linux, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_sets_size_and_times, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlapping_writes_resolve_newest_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stack_read_rebuilds_the_same_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_cuts_slices_and_extends_with_zeros, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fallocate_errors_follow_linux, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallocate_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallocate_growing_an_inline_file_adds_zeros, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_chunk_slice_limit_is_full_until_compacted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_compaction_of_a_changed_chunk_is_stale, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_write_by_user_drops_setuid_root_keeps_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_data_commands_out_of_memory_change_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unlink_frees_the_map, setup, teardown),
        cmocka_unit_test(test_model_bytes_match_linux),
    };
    return cmocka_run_group_tests_name("test_data", tests, NULL, NULL);
}
