/* tests/meta/test_archive.c - the point-in-time archive's formats and the
 * rebuild (meta/archive.c).
 * Goal: a log batch, manifest and head read back as written; bytes that
 * do not hold together (any truncation, random damage) are refused, never
 * read past; keys parse only when well formed. A shard rebuilt at a moment
 * from a file:// store is the shard that applied the same commands up to
 * that moment (equal state hashes), from the empty shard or from an
 * archived checkpoint; a moment before the oldest state, in a hole of the
 * archive or past its end is refused with the error that says so. Block
 * gc deletes exactly the blocks no state of the window names. A leader
 * whose tail starts past the archive's end fills the gap from its Raft log
 * on disk; only what that log lacks is left to an archived checkpoint.
 * Method: commands made here (mkdir with leader times), applied to a
 * reference shard and archived by hand through archive.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../objstore/harness.h"
#include "archive.h"
#include "meta.h"
#include "objstore.h"
#include "raft.h"

#define N_CMDS 400u
#define T0 1700000000000000000ull /* the first entry's time */

struct world {
    char dir[256];
    struct obj_store *st;
    uint8_t *cmd_bytes[N_CMDS + 1];  /* entry i's command (index 1..N) */
    size_t cmd_len[N_CMDS + 1];
    uint64_t hash_after[N_CMDS + 1]; /* the reference state after entry i */
};

static uint64_t time_of(uint64_t index)
{
    return T0 + index * 1000000ull; /* 1 ms apart */
}

/* Entry i: mkdir "d<i>" in the root, or in d<i/2> (a tree). */
static void make_cmd(uint64_t i, struct meta_cmd *cmd, char *name)
{
    snprintf(name, 32, "d%llu", (unsigned long long)i);
    *cmd = (struct meta_cmd){.op = META_OP_MKDIR, .now_ns = (int64_t)time_of(i),
                             .new_ino = 1000 + i, .ino = i < 4 ? 1 : 1000 + i / 2, .name = name,
                             .name_len = (uint32_t)strlen(name), .mode = S_IFDIR | 0755};
}

static struct meta_shard *new_first(void)
{
    struct meta_shard *s = NULL;

    assert_int_equal(meta_shard_new_first(META_ROOT_SHARD, &s), 0);
    return s;
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    struct meta_shard *ref = NULL;
    char url[300];

    assert_non_null(w);
    harness_tmpdir(w->dir);
    snprintf(url, sizeof(url), "file://%s", w->dir);
    assert_int_equal(obj_store_open(url, NULL, &w->st, NULL), 0);
    assert_int_equal(meta_shard_new_first(META_ROOT_SHARD, &ref), 0);
    w->hash_after[0] = meta_shard_hash(ref);
    for (uint64_t i = 1; i <= N_CMDS; i++) {
        struct meta_cmd cmd;
        struct meta_reply rep = {0};
        char name[32];
        make_cmd(i, &cmd, name);
        w->cmd_bytes[i] = malloc(1024);
        assert_int_equal(meta_cmd_encode(&cmd, w->cmd_bytes[i], 1024, &w->cmd_len[i]), 0);
        assert_int_equal(meta_shard_apply(ref, &cmd, &rep), 0);
        w->hash_after[i] = meta_shard_hash(ref);
    }
    meta_shard_free(ref);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;

    obj_store_close(w->st);
    for (uint64_t i = 1; i <= N_CMDS; i++) {
        free(w->cmd_bytes[i]);
    }
    harness_rm_rf(w->dir);
    free(w);
    return 0;
}

/* Entries first..last as one batch object's bytes; *len its size. */
static uint8_t *batch_bytes(struct world *w, uint64_t first, uint64_t last, size_t *len)
{
    size_t cap = ARCHIVE_HDR_BYTES;
    for (uint64_t i = first; i <= last; i++) {
        cap += ARCHIVE_REC_BYTES + w->cmd_len[i];
    }
    uint8_t *buf = malloc(cap);
    size_t at = ARCHIVE_HDR_BYTES;
    assert_non_null(buf);
    for (uint64_t i = first; i <= last; i++) {
        struct archive_entry e = {.index = i, .term = 1, .hlc_ns = time_of(i), .type = 1,
                                  .size = (uint32_t)w->cmd_len[i], .data = w->cmd_bytes[i]};
        archive_entry_put(buf + at, &e);
        at += ARCHIVE_REC_BYTES + e.size;
    }
    struct archive_header h = {.shard = META_ROOT_SHARD, .count = (uint32_t)(last - first + 1),
                               .first = first, .last = last, .first_hlc = time_of(first),
                               .last_hlc = time_of(last)};
    archive_header_put(buf, &h);
    *len = at;
    return buf;
}

static void put_batch(struct world *w, uint64_t first, uint64_t last)
{
    char key[ARCHIVE_KEY_MAX];
    size_t len;
    uint8_t *buf = batch_bytes(w, first, last, &len);

    archive_key_log(key, META_ROOT_SHARD, first, last);
    assert_int_equal(obj_put(w->st, key, buf, len, NULL), 0);
    free(buf);
}

struct seen {
    uint64_t count;
    uint64_t next;
};

static int count_entry(void *ctx, const struct archive_entry *e)
{
    struct seen *s = ctx;

    assert_int_equal(e->index, s->next);
    s->next++;
    s->count++;
    return 0;
}

static void test_archive_batch_round_trip_and_damage(void **state)
{
    struct world *w = *state;
    struct archive_header h;
    size_t len;
    uint8_t *buf = batch_bytes(w, 5, 60, &len);
    char err[AR_ERRMSG_MAX];
    struct seen s = {.next = 5};

    assert_int_equal(archive_decode(buf, len, META_ROOT_SHARD, &h, count_entry, &s, err), 0);
    assert_int_equal(s.count, 56);
    assert_int_equal(h.first, 5);
    assert_int_equal(h.last, 60);
    assert_int_equal(h.last_hlc, time_of(60));
    /* another shard's batch */
    assert_int_equal(archive_decode(buf, len, 7, &h, NULL, NULL, err), -AR_ECORRUPT);
    /* every truncation */
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(archive_decode(buf, cut, META_ROOT_SHARD, &h, NULL, NULL, err),
                         -AR_ECORRUPT);
    }
    /* random damage: refused or read whole, never past the end (ASan watches) */
    uint64_t seed = 42;
    uint8_t *copy = malloc(len);
    for (int round = 0; round < 20000; round++) {
        memcpy(copy, buf, len);
        int flips = 1 + round % 4;
        for (int k = 0; k < flips; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            copy[(seed >> 20) % len] ^= (uint8_t)(1u << ((seed >> 8) % 8));
        }
        size_t n = round % 3 == 0 ? len - (seed >> 40) % 64 : len;
        int rc = archive_decode(copy, n, META_ROOT_SHARD, &h, NULL, NULL, err);
        assert_true(rc == 0 || rc == -AR_ECORRUPT);
    }
    free(copy);
    free(buf);
}

static void test_archive_small_objects_and_keys(void **state)
{
    (void)state;
    uint8_t buf[64];
    char key[ARCHIVE_KEY_MAX];
    uint64_t a;
    uint64_t b;

    struct archive_manifest m = {.shard = 1, .part_count = 2, .index = 77, .hlc_ns = 5,
                                 .bytes = ARCHIVE_PART_BYTES + 1, .crc = 0xdeadbeef};
    struct archive_manifest m2;
    archive_manifest_put(buf, &m);
    assert_int_equal(archive_manifest_get(buf, ARCHIVE_MANIFEST_BYTES, &m2), 0);
    assert_int_equal(m2.shard, 1);
    assert_int_equal(m2.part_count, 2);
    assert_int_equal(m2.index, 77);
    assert_int_equal(m2.hlc_ns, 5);
    assert_int_equal(m2.bytes, ARCHIVE_PART_BYTES + 1);
    assert_int_equal(m2.crc, 0xdeadbeef);
    assert_int_equal(archive_manifest_get(buf, ARCHIVE_MANIFEST_BYTES - 1, &m2), -AR_ECORRUPT);
    m.part_count = 3; /* not what the bytes need */
    archive_manifest_put(buf, &m);
    assert_int_equal(archive_manifest_get(buf, ARCHIVE_MANIFEST_BYTES, &m2), -AR_ECORRUPT);

    struct archive_head h = {.shard = 1, .last = 9, .last_hlc = 10, .as_of_ns = 11};
    struct archive_head h2;
    archive_head_put(buf, &h);
    assert_int_equal(archive_head_get(buf, ARCHIVE_HEAD_BYTES, &h2), 0);
    assert_int_equal(h2.last, 9);
    assert_int_equal(h2.as_of_ns, 11);
    buf[0] ^= 1;
    assert_int_equal(archive_head_get(buf, ARCHIVE_HEAD_BYTES, &h2), -AR_ECORRUPT);

    archive_key_log(key, 1, 0x10, 0xff);
    assert_string_equal(key, "pitr/s1/log/0000000000000010-00000000000000ff");
    assert_true(archive_parse_log(key, &a, &b));
    assert_int_equal(a, 0x10);
    assert_int_equal(b, 0xff);
    archive_key_manifest(key, 12, 0xabc);
    assert_true(archive_parse_manifest(key, &a));
    assert_int_equal(a, 0xabc);
    archive_key_part(key, 12, 0xabc, 3);
    assert_false(archive_parse_manifest(key, &a));
    static const char *const bad[] = {
        "pitr/s1/log/0000000000000010-00000000000000f",   /* short */
        "pitr/s1/log/0000000000000010-00000000000000fff", /* long */
        "pitr/s1/log/0000000000000010_00000000000000ff",  /* separator */
        "pitr/s1/log/00000000000000ff-0000000000000010",  /* last before first */
        "pitr/s1/log/0000000000000000-0000000000000010",  /* index 0 */
        "pitr/s1/log/000000000000001G-0000000000000010",  /* not hex */
        "pitr/sx/log/0000000000000001-0000000000000010",  /* shard */
        "pitr/s1/ckpt/0000000000000001-0000000000000010",
        "other/s1/log/0000000000000001-0000000000000010",
    };
    for (size_t i = 0; i < AR_ARRAY_LEN(bad); i++) {
        assert_false(archive_parse_log(bad[i], &a, &b));
    }
}

static uint64_t rebuild_hash(struct world *w, uint64_t at_ns, int *rc_out,
                             struct meta_restore_point *pt)
{
    struct meta_rebuild_options o = {.shard = META_ROOT_SHARD, .at_ns = at_ns,
                                     .scratch_dir = w->dir};
    struct meta_shard *s = NULL;
    char err[AR_ERRMSG_MAX] = "";

    *rc_out = meta_archive_rebuild(w->st, &o, &s, pt, err);
    if (*rc_out != 0) {
        print_message("rebuild at %llu: %s\n", (unsigned long long)at_ns, err);
        assert_null(s);
        assert_true(err[0] != '\0');
        return 0;
    }
    uint64_t h = meta_shard_hash(s);
    meta_shard_free(s);
    return h;
}

static void test_archive_rebuild_from_the_log(void **state)
{
    struct world *w = *state;
    struct meta_restore_point pt;
    int rc;

    rebuild_hash(w, time_of(10), &rc, &pt);
    assert_int_equal(rc, -ENOENT); /* nothing archived */
    put_batch(w, 1, 100);
    put_batch(w, 90, 150); /* an overlap, as two leaders may leave */
    put_batch(w, 151, 200);
    /* every moment: exactly the entries at or before it */
    static const uint64_t idx[] = {1, 2, 50, 99, 100, 101, 149, 150, 151, 199};
    for (size_t i = 0; i < AR_ARRAY_LEN(idx); i++) {
        assert_int_equal(rebuild_hash(w, time_of(idx[i]), &rc, &pt), w->hash_after[idx[i]]);
        assert_int_equal(rc, 0);
        assert_int_equal(pt.index, idx[i]);
        assert_int_equal(pt.base_index, 0);
        /* between two entries: the earlier */
        assert_int_equal(rebuild_hash(w, time_of(idx[i]) + 500000, &rc, &pt),
                         w->hash_after[idx[i]]);
    }
    /* before the first entry: the empty shard (the archive starts at 1) */
    assert_int_equal(rebuild_hash(w, T0, &rc, &pt), w->hash_after[0]);
    /* past the end, with no head saying more: not yet archived */
    rebuild_hash(w, time_of(200) + 1, &rc, &pt);
    assert_int_equal(rc, -EAGAIN);
    /* a head: nothing committed after 200 until a later time */
    uint8_t hb[ARCHIVE_HEAD_BYTES];
    char key[ARCHIVE_KEY_MAX];
    struct archive_head head = {.shard = META_ROOT_SHARD, .last = 200, .last_hlc = time_of(200),
                                .as_of_ns = time_of(300)};
    archive_head_put(hb, &head);
    archive_key_head(key, META_ROOT_SHARD);
    assert_int_equal(obj_put(w->st, key, hb, sizeof(hb), NULL), 0);
    assert_int_equal(rebuild_hash(w, time_of(250), &rc, &pt), w->hash_after[200]);
    rebuild_hash(w, time_of(301), &rc, &pt);
    assert_int_equal(rc, -EAGAIN);
    /* a hole: 201..209 missing */
    put_batch(w, 210, 260);
    rebuild_hash(w, time_of(220), &rc, &pt);
    assert_int_equal(rc, -ERANGE);
    /* a damaged batch is an error, not a shorter state */
    archive_key_log(key, META_ROOT_SHARD, 151, 200);
    assert_int_equal(obj_put(w->st, key, "junk", 4, NULL), 0);
    rebuild_hash(w, time_of(180), &rc, &pt);
    assert_int_equal(rc, -AR_ECORRUPT);
}

/* Archive the reference state after entry index as a checkpoint object. */
static void put_checkpoint(struct world *w, uint64_t index)
{
    struct meta_shard *s = NULL;
    struct meta_checkpoint *ck = NULL;
    struct meta_ckpt_batch *b = NULL;
    char dir[400];
    char path[450];
    char key[ARCHIVE_KEY_MAX];
    char err[AR_ERRMSG_MAX];

    assert_int_equal(meta_shard_new_first(META_ROOT_SHARD, &s), 0);
    assert_int_equal(meta_shard_track(s), 0);
    for (uint64_t i = 1; i <= index; i++) {
        struct meta_cmd_buf *cb = malloc(sizeof(*cb));
        struct meta_reply rep = {0};
        assert_int_equal(meta_cmd_decode(w->cmd_bytes[i], w->cmd_len[i], cb), 0);
        assert_int_equal(meta_shard_apply(s, &cb->cmd, &rep), 0);
        free(cb);
    }
    snprintf(dir, sizeof(dir), "%s/ck-%llu", w->dir, (unsigned long long)index);
    assert_int_equal(meta_checkpoint_open(dir, &ck, err), 0);
    assert_int_equal(meta_shard_collect(s, index, &b), 0);
    assert_int_equal(meta_checkpoint_commit(ck, b, err), 0);
    snprintf(path, sizeof(path), "%s/stream", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(meta_checkpoint_export(ck, fd, err), 0);
    off_t size = lseek(fd, 0, SEEK_END);
    uint8_t *bytes = malloc((size_t)size);
    assert_int_equal(pread(fd, bytes, (size_t)size, 0), size);
    close(fd);
    struct archive_manifest m = {.shard = META_ROOT_SHARD, .part_count = 1, .index = index,
                                 .hlc_ns = time_of(index), .bytes = (uint64_t)size,
                                 .crc = obj_crc32c(0, bytes, (size_t)size)};
    archive_key_part(key, META_ROOT_SHARD, index, 0);
    assert_int_equal(obj_put(w->st, key, bytes, (size_t)size, NULL), 0);
    uint8_t mb[ARCHIVE_MANIFEST_BYTES];
    archive_manifest_put(mb, &m);
    archive_key_manifest(key, META_ROOT_SHARD, index);
    assert_int_equal(obj_put(w->st, key, mb, sizeof(mb), NULL), 0);
    free(bytes);
    meta_ckpt_batch_free(b);
    meta_checkpoint_close(ck);
    meta_shard_free(s);
}

/* A head is written only while the log is quiet: under steady writes the
 * store's head is old, and the archive is as new as its last entry. Both a
 * restore to that entry's moment and gc (whose pass stops when the archive
 * lags a minute) go by the newer of the two. */
static void test_archive_is_as_new_as_its_last_entry(void **state)
{
    struct world *w = *state;
    struct meta_restore_point pt;
    uint8_t hb[ARCHIVE_HEAD_BYTES];
    char key[ARCHIVE_KEY_MAX];
    int rc;

    put_batch(w, 1, N_CMDS);
    struct archive_head head = {.shard = META_ROOT_SHARD, .last = 1, .last_hlc = time_of(1),
                                .as_of_ns = time_of(2)};
    archive_head_put(hb, &head);
    archive_key_head(key, META_ROOT_SHARD);
    assert_int_equal(obj_put(w->st, key, hb, sizeof(hb), NULL), 0);
    assert_int_equal(rebuild_hash(w, time_of(N_CMDS), &rc, &pt), w->hash_after[N_CMDS]);
    assert_int_equal(rc, 0);
    assert_true(pt.newest_ns == time_of(N_CMDS));
    rebuild_hash(w, time_of(N_CMDS) + 1, &rc, &pt);
    assert_int_equal(rc, -EAGAIN); /* past it: not archived yet */
    /* a head newer than the last entry still counts */
    head = (struct archive_head){.shard = META_ROOT_SHARD, .last = N_CMDS,
                                 .last_hlc = time_of(N_CMDS), .as_of_ns = time_of(N_CMDS + 50)};
    archive_head_put(hb, &head);
    assert_int_equal(obj_put(w->st, key, hb, sizeof(hb), NULL), 0);
    assert_int_equal(rebuild_hash(w, time_of(N_CMDS + 40), &rc, &pt), w->hash_after[N_CMDS]);
    assert_int_equal(rc, 0);
}

/* Entries 1..300 in three batches, checkpoints at 150 and 250. */
static void put_three_batches_two_checkpoints(struct world *w)
{
    put_batch(w, 1, 100);
    put_batch(w, 101, 200);
    put_batch(w, 201, 300);
    put_checkpoint(w, 150);
    put_checkpoint(w, 250);
}

static void test_archive_rebuild_from_a_checkpoint_and_expiry(void **state)
{
    struct world *w = *state;
    struct meta_restore_point pt;
    uint32_t removed = 0;
    char err[AR_ERRMSG_MAX];
    int rc;

    put_three_batches_two_checkpoints(w);
    assert_int_equal(rebuild_hash(w, time_of(170), &rc, &pt), w->hash_after[170]);
    assert_int_equal(pt.base_index, 150);
    assert_int_equal(pt.entries, 20);
    assert_int_equal(rebuild_hash(w, time_of(299), &rc, &pt), w->hash_after[299]);
    assert_int_equal(pt.base_index, 250);
    assert_int_equal(rebuild_hash(w, time_of(120), &rc, &pt), w->hash_after[120]);
    assert_int_equal(pt.base_index, 0); /* before both: from the start */

    /* the window starts at 260: checkpoint 250 is its base; 150 and the
     * batches at or below 250 go, what a moment after 250 needs stays */
    assert_int_equal(archive_expire(w->st, META_ROOT_SHARD, time_of(260), &removed, err), 0);
    assert_int_equal(removed, 2 + 2); /* checkpoint 150's part and manifest, two batches */
    assert_int_equal(rebuild_hash(w, time_of(270), &rc, &pt), w->hash_after[270]);
    assert_int_equal(rebuild_hash(w, time_of(251), &rc, &pt), w->hash_after[251]);
    rebuild_hash(w, time_of(200), &rc, &pt);
    assert_int_equal(rc, -ERANGE); /* before the window */
    /* a damaged checkpoint part is an error */
    char key[ARCHIVE_KEY_MAX];
    archive_key_part(key, META_ROOT_SHARD, 250, 0);
    assert_int_equal(obj_put(w->st, key, "x", 1, NULL), 0);
    rebuild_hash(w, time_of(270), &rc, &pt);
    assert_int_equal(rc, -AR_ECORRUPT);
}

/* A restore's pin keeps its moment's base through the window's expiry
 * while it stands; a stale one (its restore died) is removed and keeps
 * nothing; gc waits for a pinned moment older than the oldest state. */
/* Expiry's cutoff: the window back and a margin for clocks apart. A
 * window reaching back before the clock's epoch expires nothing (the
 * cutoff wrapped, and expiry removed all but the newest checkpoint). */
static void test_archive_expiry_cutoff_keeps_a_margin_and_never_wraps(void **state)
{
    const uint64_t s = 1000000000ull;
    const uint64_t now = 1764800000ull * s;

    (void)state;
    assert_true(archive_expiry_cutoff_ns(now, 7 * 86400) == now - (7 * 86400 + 300) * s);
    assert_true(archive_expiry_cutoff_ns(now, 640) == now - 650 * s);
    assert_true(archive_expiry_cutoff_ns(now, 40000u * 86400u) == 0);
    assert_true(archive_expiry_cutoff_ns(now, UINT32_MAX) == 0);
}

static void test_archive_pin_keeps_a_restores_moment(void **state)
{
    struct world *w = *state;
    struct meta_restore_point pt;
    uint32_t removed = 0;
    char err[AR_ERRMSG_MAX] = "";
    char pin[META_PIN_KEY_MAX];
    char stale[ARCHIVE_KEY_MAX];
    size_t size;
    int rc;

    put_three_batches_two_checkpoints(w);
    assert_int_equal(meta_archive_pin(w->st, META_ROOT_SHARD, time_of(170), pin, err), 0);
    snprintf(stale, sizeof(stale), "pitr/s%u/pin/%016llx-%016llx-00000001", META_ROOT_SHARD,
             (unsigned long long)time_of(10), 1ull);
    assert_int_equal(obj_put(w->st, stale, "", 0, NULL), 0);
    /* the window starts at 260, the pin holds 170: its base (150) stays */
    assert_int_equal(archive_expire(w->st, META_ROOT_SHARD, time_of(260), &removed, err), 0);
    assert_int_equal(removed, 1); /* the batch 1..100 only */
    assert_int_not_equal(obj_head(w->st, stale, &size, NULL), 0);
    assert_int_equal(rebuild_hash(w, time_of(170), &rc, &pt), w->hash_after[170]);
    assert_int_equal(pt.base_index, 150);
    /* gc, meanwhile, is not held: the pin is not older than the oldest state */
    struct meta_gc_report gr;
    struct meta_gc_options o = {.shard = META_ROOT_SHARD, .now_ns = time_of(300),
                                .is_dry_run = true, .scratch_dir = w->dir};
    assert_int_equal(meta_gc_run(w->st, &o, &gr, err), 0);
    /* unpinned, the expiry goes on to the window */
    assert_int_equal(meta_archive_unpin(w->st, pin, err), 0);
    assert_int_equal(archive_expire(w->st, META_ROOT_SHARD, time_of(260), &removed, err), 0);
    assert_int_equal(removed, 2 + 1); /* checkpoint 150, the batch 101..200 */
    rebuild_hash(w, time_of(170), &rc, &pt);
    assert_int_equal(rc, -ERANGE);
    /* a pin seen only after the expiry passed its moment: gc waits */
    assert_int_equal(meta_archive_pin(w->st, META_ROOT_SHARD, time_of(170), pin, err), 0);
    assert_int_equal(meta_gc_run(w->st, &o, &gr, err), -EAGAIN);
    assert_non_null(strstr(err, "a restore of"));
    assert_int_equal(meta_archive_unpin(w->st, pin, err), 0);
    assert_int_equal(meta_gc_run(w->st, &o, &gr, err), 0);
}

/* Replace entry i's command with cmd (applied to s too, for its reply). */
static void set_entry(struct world *w, struct meta_shard *s, uint64_t i, struct meta_cmd *cmd,
                      struct meta_reply *rep)
{
    cmd->now_ns = (int64_t)time_of(i);
    assert_int_equal(meta_cmd_encode(cmd, w->cmd_bytes[i], 1024, &w->cmd_len[i]), 0);
    memset(rep, 0, sizeof(*rep));
    assert_int_equal(meta_shard_apply(s, cmd, rep), 0);
}

static void put_block(struct world *w, uint64_t id)
{
    char key[64];

    snprintf(key, sizeof(key), "s/%016llx/0", (unsigned long long)id);
    assert_int_equal(obj_put(w->st, key, "data", 4, NULL), 0);
}

static bool has_block(struct world *w, uint64_t id)
{
    char key[64];
    size_t size;

    snprintf(key, sizeof(key), "s/%016llx/0", (unsigned long long)id);
    return obj_head(w->st, key, &size, NULL) == 0;
}

/* ---- the archiver fills a gap from the Raft log -------------------------------------------- */

/* A replica's Raft log in dir holding entries first..last (small segments). */
static void write_raft_log(struct world *w, const char *dir, uint64_t first, uint64_t last)
{
    struct raft_seglog_options o;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    struct raft_config c = {.voter_count = 1, .voters = {1}};
    char err[RAFT_ERRMSG_MAX] = "";
    struct raft_entry *v = calloc(last - first + 1, sizeof(*v));

    assert_non_null(v);
    raft_seglog_options_init(&o);
    o.segment_bytes = 4096;
    assert_int_equal(raft_seglog_open(dir, &o, &l, &b, err), 0);
    if (first > 1) /* as if a snapshot at first - 1 was installed */
        assert_int_equal(raft_seglog_snapshot(l, first - 1, 1, time_of(first - 1), &c, true, 0,
                                              err), 0);
    for (uint64_t i = first; i <= last; i++) {
        v[i - first] = (struct raft_entry){.index = i, .term = 1, .hlc_ns = time_of(i),
                                           .type = RAFT_ENTRY_NORMAL,
                                           .size = (uint32_t)w->cmd_len[i],
                                           .data = w->cmd_bytes[i]};
    }
    struct raft_ready rd = {.has_hard_state = true, .hard_state = {.term = 1, .vote = 1,
                                                                   .commit = last},
                            .entry_count = (uint32_t)(last - first + 1), .entries = v};
    if (raft_seglog_append(l, &rd, err) != 0 || raft_seglog_sync(l, err) != 0)
        fail_msg("log: %s", err);
    raft_seglog_close(l);
    free(v);
}

/* An archiver whose tail holds entries first..N_CMDS, run leading (but
 * for every flap-th of the first 3,000 turns, when flap is not 0) until
 * everything is archived and it stays idle for 300 turns (bounded: 20,000
 * turns of 1 ms). */
static void run_archiver(struct world *w, const char *work_dir, uint64_t first, int flap)
{
    uv_loop_t loop;
    struct archiver *a = NULL;
    struct archiver_options o = {.shard = META_ROOT_SHARD, .work_dir = work_dir, .batch_ms = 1,
                                 .ckpt_s = 3600};
    uint64_t archived = 0;
    uint64_t tail_bytes = 0;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(archiver_new(&loop, &o, &a), 0);
    archiver_set_store(a, w->st);
    for (uint64_t i = first; i <= N_CMDS; i++) {
        archiver_applied(a, &(struct archive_entry){.index = i, .term = 1, .hlc_ns = time_of(i),
                                                    .type = RAFT_ENTRY_NORMAL,
                                                    .size = (uint32_t)w->cmd_len[i],
                                                    .data = w->cmd_bytes[i]});
    }
    struct archiver_view v = {.is_leader = true, .commit = N_CMDS};
    int idle = 0;
    for (int i = 0; i < 20000 && idle < 300; i++) {
        v.is_leader = flap == 0 || i >= 3000 || i % flap != 0;
        archiver_turn(a, &v);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
        archiver_progress(a, &archived, &tail_bytes);
        idle = archived == N_CMDS + 1 && !archiver_is_busy(a) ? idle + 1 : 0;
    }
    assert_int_equal(archived, N_CMDS + 1);
    archiver_free(a);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The first indexes of the shard's log objects, in order; their count. */
static unsigned log_objects(struct world *w, uint64_t *firsts, uint64_t *lasts, unsigned cap)
{
    struct obj_list_page page = {.entry_cap = 64};
    char prefix[ARCHIVE_KEY_MAX];
    unsigned n = 0;

    page.entries = calloc(64, sizeof(*page.entries));
    assert_non_null(page.entries);
    archive_prefix(prefix, META_ROOT_SHARD, "log");
    assert_int_equal(obj_list(w->st, prefix, NULL, &page, NULL), 0);
    assert_false(page.is_truncated);
    for (unsigned i = 0; i < page.entry_count && n < cap; i++) {
        if (archive_parse_log(page.entries[i].key, &firsts[n], &lasts[n]))
            n++;
    }
    free(page.entries);
    return n;
}

/* Every replica restarted: the leader's tail starts at its checkpoint, past
 * where the archive ends. The entries between come from its Raft log, so
 * every moment stays restorable, not only the checkpoint's. */
static void test_archiver_fills_a_gap_from_the_raft_log(void **state)
{
    struct world *w = *state;
    char work[300];
    char log[320];
    struct meta_restore_point pt;
    int rc;

    put_batch(w, 1, 50); /* what the last leader archived */
    snprintf(work, sizeof(work), "%s/replica", w->dir);
    snprintf(log, sizeof(log), "%s/log", work);
    mkdir(work, 0755);
    write_raft_log(w, log, 1, N_CMDS);
    run_archiver(w, work, 300, 0);
    static const uint64_t idx[] = {50, 51, 120, 299, 300, N_CMDS};
    for (size_t i = 0; i < AR_ARRAY_LEN(idx); i++) {
        assert_int_equal(rebuild_hash(w, time_of(idx[i]), &rc, &pt), w->hash_after[idx[i]]);
        assert_int_equal(rc, 0);
        assert_int_equal(pt.index, idx[i]);
    }
}

/* Holes between the archive's log objects (left by an archiver before a
 * fix, or by a leader that had to bridge them) are filled from a Raft log
 * that still holds their entries, after the archive's end is caught up;
 * with flap, through leaderships lost while jobs run. */
static void refill_holes(struct world *w, int flap)
{
    char work[300];
    char log[320];
    uint64_t firsts[64];
    uint64_t lasts[64];
    struct meta_restore_point pt;
    int rc;

    put_batch(w, 1, 50);
    put_batch(w, 81, 120); /* a hole: 51..80 */
    put_batch(w, 131, 140); /* and another: 121..130 */
    rebuild_hash(w, time_of(60), &rc, &pt);
    assert_int_not_equal(rc, 0); /* the hole is named */
    snprintf(work, sizeof(work), "%s/replica", w->dir);
    snprintf(log, sizeof(log), "%s/log", work);
    mkdir(work, 0755);
    write_raft_log(w, log, 1, N_CMDS);
    run_archiver(w, work, 300, flap);
    unsigned n = log_objects(w, firsts, lasts, 64);
    uint64_t covered = 0;
    for (unsigned i = 0; i < n; i++) { /* in order of first index; overlaps allowed */
        assert_true(firsts[i] <= covered + 1);
        if (lasts[i] > covered)
            covered = lasts[i];
    }
    assert_int_equal(covered, N_CMDS);
    static const uint64_t idx[] = {51, 60, 80, 125};
    for (size_t i = 0; i < AR_ARRAY_LEN(idx); i++) {
        assert_int_equal(rebuild_hash(w, time_of(idx[i]), &rc, &pt), w->hash_after[idx[i]]);
        assert_int_equal(rc, 0);
    }
}

static void test_archiver_refills_holes_from_the_raft_log(void **state)
{
    refill_holes(*state, 0);
}

/* Leadership lost every third turn, whatever job runs: each new one probes
 * again, and nothing a job was doing is counted for a leadership gone. */
static void test_archiver_loses_leadership_mid_job(void **state)
{
    refill_holes(*state, 3);
}

/* Damage the sealed segment of the Raft log in dir that holds index. */
static void damage_segment_of(const char *dir, uint64_t index)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[600] = "";

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        unsigned long long first;
        unsigned long long last;
        if (sscanf(de->d_name, "%20llu-%20llu-", &first, &last) == 2 && first <= index &&
            index <= last)
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    }
    closedir(d);
    assert_true(path[0] != '\0');
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "XXXX", 4, 40), 4);
    close(fd);
}

/* The archive holds 1..50 and a checkpoint at 120; the leader's tail starts
 * at 300, its Raft log at log_first (damaged where 51 is, if so asked).
 * The log fills what it can; the checkpoint stands for 51..120 only where
 * the log cannot, and the rest of the gap still comes from the log. */
static void fill_around(struct world *w, uint64_t log_first, bool is_damaged)
{
    char work[300];
    char log[320];
    char key[ARCHIVE_KEY_MAX];
    uint64_t firsts[64];
    uint64_t lasts[64];

    put_batch(w, 1, 50);
    archive_key_manifest(key, META_ROOT_SHARD, 120); /* the probe reads only its key */
    assert_int_equal(obj_put(w->st, key, "m", 1, NULL), 0);
    snprintf(work, sizeof(work), "%s/replica", w->dir);
    snprintf(log, sizeof(log), "%s/log", work);
    mkdir(work, 0755);
    write_raft_log(w, log, log_first, N_CMDS);
    if (is_damaged)
        damage_segment_of(log, 51);
    run_archiver(w, work, 300, 0);
    unsigned n = log_objects(w, firsts, lasts, 64);
    assert_true(n >= 3);
    assert_int_equal(firsts[0], 1);
    assert_int_equal(lasts[0], 50);
    assert_int_equal(firsts[1], 121); /* 51..120: the checkpoint's */
    for (unsigned i = 2; i < n; i++) {
        assert_int_equal(firsts[i], lasts[i - 1] + 1);
    }
    assert_int_equal(lasts[n - 1], N_CMDS);
}

/* The Raft log starts past the gap's start (a snapshot replaced it). */
static void test_archiver_fills_what_the_raft_log_holds(void **state)
{
    fill_around(*state, 100, false);
}

/* The Raft log's segment where the gap starts is damaged: the fill fails
 * once, not for ever. */
static void test_archiver_fills_past_a_damaged_raft_log(void **state)
{
    fill_around(*state, 1, true);
}

static void test_gc_keeps_what_the_window_names(void **state)
{
    struct world *w = *state;
    struct meta_shard *s = new_first();
    struct meta_reply rep;
    struct meta_gc_report gr;
    char err[AR_ERRMSG_MAX] = "";
    uint64_t i = 1;

    struct meta_cmd al = {.op = META_OP_ALLOC_SLICES, .length = 100};
    set_entry(w, s, i++, &al, &rep);
    uint64_t f = rep.attr.ino; /* the first id taken */
    static const char *const names[] = {"a", "b", "c"};
    for (uint64_t k = 0; k < 3; k++) {
        struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = names[k], .name_len = 1,
                              .mode = S_IFREG | 0644, .new_ino = 1000 + k};
        set_entry(w, s, i++, &mk, &rep);
        struct meta_cmd wr = {.op = META_OP_WRITE, .ino = 1000 + k,
                              .slice = {.id = f + k, .size = 4, .len = 4}};
        set_entry(w, s, i++, &wr, &rep);
    }
    struct meta_cmd un = {.op = META_OP_UNLINK, .ino = 1, .name = "c", .name_len = 1};
    set_entry(w, s, i++, &un, &rep);
    uint64_t base = i - 1; /* the window's oldest state: c is gone, f+2 unnamed */
    struct meta_cmd over = {.op = META_OP_WRITE, .ino = 1000,
                            .slice = {.id = f + 3, .size = 4, .len = 4}};
    set_entry(w, s, i++, &over, &rep); /* f+0 no longer live, but the base names it */
    struct meta_cmd unb = {.op = META_OP_UNLINK, .ino = 1, .name = "b", .name_len = 1};
    set_entry(w, s, i++, &unb, &rep); /* f+1: likewise */
    struct meta_file_piece piece = {.slice = {.id = f + 2, .size = 4, .len = 4}};
    struct meta_file_item item = {.name = "c-back", .name_len = 6, .mode = S_IFREG | 0644,
                                  .size = 4, .piece_count = 1};
    struct meta_cmd rf = {.op = META_OP_RESTORE_FILES, .ino = 1, .new_ino = 2000, .items = &item,
                          .item_count = 1, .pieces = &piece, .piece_count = 1};
    set_entry(w, s, i++, &rf, &rep); /* f+2 named again */
    uint64_t last = i - 1;
    meta_shard_free(s);
    put_checkpoint(w, base);
    put_batch(w, base + 1, last);
    for (uint64_t k = 0; k < 6; k++) {
        put_block(w, f + k);
    }
    put_block(w, f + 50);  /* taken before the window, never named */
    put_block(w, f + 100); /* taken inside the window (the base's next id) */

    struct meta_gc_options o = {.shard = META_ROOT_SHARD, .now_ns = time_of(last),
                                .is_dry_run = true, .scratch_dir = w->dir};
    assert_int_equal(meta_gc_run(w->st, &o, &gr, err), 0);
    assert_int_equal(gr.blocks, 8);
    assert_int_equal(gr.keep_from, f + 100);
    assert_int_equal(gr.garbage_blocks, 3); /* f+4, f+5, f+50 */
    assert_int_equal(gr.deleted_blocks, 0);
    assert_true(has_block(w, f + 4));
    o.is_dry_run = false;
    assert_int_equal(meta_gc_run(w->st, &o, &gr, err), 0);
    assert_int_equal(gr.deleted_blocks, 3);
    static const uint64_t kept[] = {0, 1, 2, 3, 100};
    for (size_t k = 0; k < AR_ARRAY_LEN(kept); k++) {
        assert_true(has_block(w, f + kept[k]));
    }
    assert_false(has_block(w, f + 4));
    assert_false(has_block(w, f + 50));
    /* an archive that lags: nothing is deleted */
    put_block(w, f + 5);
    o.now_ns = time_of(last) + 61000000000ull;
    assert_int_equal(meta_gc_run(w->st, &o, &gr, err), -EAGAIN);
    assert_true(has_block(w, f + 5));
}

static int bridges_seen;
static uint64_t bridge_hash;

static void note_bridge(void *ctx, const struct meta_shard *s)
{
    (void)ctx;
    bridges_seen++;
    bridge_hash = meta_shard_hash(s);
}

/* A hole in the archive's log that a checkpoint bridged (entries no leader
 * could archive): a restore inside it is refused, but the window's replay
 * for gc crosses it from that checkpoint instead of stopping gc for as
 * long as the hole stays in the window. */
static void test_gc_crosses_a_bridged_hole(void **state)
{
    struct world *w = *state;
    struct meta_shard *s = NULL;
    struct meta_restore_point pt;
    struct meta_gc_report gr;
    char err[AR_ERRMSG_MAX] = "";
    int rc;

    put_checkpoint(w, 20);
    put_batch(w, 21, 50);
    put_checkpoint(w, 80); /* bridges 51..80 */
    put_batch(w, 81, 120);
    rebuild_hash(w, time_of(60), &rc, &pt);
    assert_int_equal(rc, -ERANGE);
    assert_int_equal(rebuild_hash(w, time_of(100), &rc, &pt), w->hash_after[100]);
    struct meta_rebuild_options o = {.shard = META_ROOT_SHARD, .at_ns = UINT64_MAX,
                                     .is_from_oldest = true, .scratch_dir = w->dir};
    assert_int_equal(meta_archive_rebuild(w->st, &o, &s, &pt, err), -ERANGE);
    o.on_bridge = note_bridge;
    bridges_seen = 0;
    assert_int_equal(meta_archive_rebuild(w->st, &o, &s, &pt, err), 0);
    assert_int_equal(bridges_seen, 1);
    assert_int_equal(bridge_hash, w->hash_after[80]);
    assert_int_equal(meta_shard_hash(s), w->hash_after[120]);
    assert_int_equal(pt.base_index, 20);
    meta_shard_free(s);
    /* a moment of its own does not cross: only the whole window's replay */
    o.at_ns = time_of(100);
    assert_int_equal(meta_archive_rebuild(w->st, &o, &s, &pt, err), -ERANGE);
    struct meta_gc_options go = {.shard = META_ROOT_SHARD, .now_ns = time_of(120),
                                 .is_dry_run = true, .scratch_dir = w->dir};
    assert_int_equal(meta_gc_run(w->st, &go, &gr, err), 0);
}

/* Across a bridged hole gc keeps what the bridging checkpoint names and
 * deletes a slice named only inside the hole (no restore reaches there). */
static void test_gc_across_a_hole_keeps_what_the_bridge_names(void **state)
{
    struct world *w = *state;
    struct meta_shard *s = new_first();
    struct meta_reply rep;
    struct meta_gc_report gr;
    char err[AR_ERRMSG_MAX] = "";

    struct meta_cmd al = {.op = META_OP_ALLOC_SLICES, .length = 100};
    set_entry(w, s, 1, &al, &rep);
    uint64_t f = rep.attr.ino;
    static const char *const names[] = {"a", "b", "c"};
    for (uint64_t k = 0; k < 3; k++) { /* entries 2..7: a file named k with slice f + k */
        struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = names[k], .name_len = 1,
                              .mode = S_IFREG | 0644, .new_ino = 1000 + k};
        set_entry(w, s, 2 + 2 * k, &mk, &rep);
        struct meta_cmd wr = {.op = META_OP_WRITE, .ino = 1000 + k,
                              .slice = {.id = f + k, .size = 4, .len = 4}};
        set_entry(w, s, 3 + 2 * k, &wr, &rep);
    }
    struct meta_cmd un = {.op = META_OP_UNLINK, .ino = 1, .name = "b", .name_len = 1};
    set_entry(w, s, 8, &un, &rep); /* f+1: named only inside the hole */
    struct meta_cmd una = {.op = META_OP_UNLINK, .ino = 1, .name = "a", .name_len = 1};
    set_entry(w, s, 9, &una, &rep);
    meta_shard_free(s);
    put_checkpoint(w, 3);  /* the window's oldest state: a, with f+0 */
    put_checkpoint(w, 8);  /* bridges 4..8: a and c, with f+0 and f+2 */
    put_batch(w, 9, 9);
    for (uint64_t k = 0; k < 3; k++) {
        put_block(w, f + k);
    }
    put_block(w, f + 50); /* taken before the window, never named */
    struct meta_gc_options o = {.shard = META_ROOT_SHARD, .now_ns = time_of(9),
                                .scratch_dir = w->dir};
    assert_int_equal(meta_gc_run(w->st, &o, &gr, err), 0);
    assert_int_equal(gr.deleted_blocks, 2);
    assert_true(has_block(w, f + 0));
    assert_false(has_block(w, f + 1));
    assert_true(has_block(w, f + 2));
    assert_false(has_block(w, f + 50));
}

/* A window whose states name no slice at all (files made, none written):
 * every block taken before it is garbage, and the empty list of named ids
 * is no special case (UBSan watches the sort and search of it). */
static void test_gc_with_nothing_named(void **state)
{
    struct world *w = *state;
    struct meta_shard *s = new_first();
    struct meta_reply rep;
    struct meta_gc_report gr;
    char err[AR_ERRMSG_MAX] = "";

    struct meta_cmd al = {.op = META_OP_ALLOC_SLICES, .length = 10};
    set_entry(w, s, 1, &al, &rep);
    uint64_t f = rep.attr.ino;
    struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = "empty", .name_len = 5,
                          .mode = S_IFREG | 0644, .new_ino = 1000};
    set_entry(w, s, 2, &mk, &rep);
    meta_shard_free(s);
    put_checkpoint(w, 2);
    put_block(w, f);
    struct meta_gc_options o = {.shard = META_ROOT_SHARD, .now_ns = time_of(2),
                                .scratch_dir = w->dir};
    assert_int_equal(meta_gc_run(w->st, &o, &gr, err), 0);
    assert_int_equal(gr.named, 0);
    assert_int_equal(gr.garbage_blocks, 1);
    assert_int_equal(gr.deleted_blocks, 1);
    assert_false(has_block(w, f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gc_with_nothing_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_batch_round_trip_and_damage, setup, teardown),
        cmocka_unit_test(test_archive_small_objects_and_keys),
        cmocka_unit_test_setup_teardown(test_archive_rebuild_from_the_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_is_as_new_as_its_last_entry, setup,
                                        teardown),
        cmocka_unit_test(test_archive_expiry_cutoff_keeps_a_margin_and_never_wraps),
        cmocka_unit_test_setup_teardown(test_archive_pin_keeps_a_restores_moment, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_archive_rebuild_from_a_checkpoint_and_expiry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gc_keeps_what_the_window_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_crosses_a_bridged_hole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_across_a_hole_keeps_what_the_bridge_names, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_archiver_fills_a_gap_from_the_raft_log, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_archiver_fills_what_the_raft_log_holds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_archiver_fills_past_a_damaged_raft_log, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_archiver_refills_holes_from_the_raft_log, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_archiver_loses_leadership_mid_job, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
