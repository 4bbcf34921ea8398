/* tests/meta/test_checkpoint.c - the shard's LMDB checkpoint.
 * Goal: what is committed loads back to the same state; a restart from an
 * older checkpoint plus the commands after it reaches the live state; two
 * replicas write the same records; damage is reported, never half-loaded;
 * a snapshot streams out and in while the shard goes on.
 * Method: seeded random command streams (bounded) applied to a live shard
 * that collects and commits every few dozen commands; states compared by
 * meta_shard_hash(); records compared through LMDB itself. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../objstore/harness.h"
#include "limits.h"
#include "meta.h"
#include "shard.h"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1u << 1)
#endif

#define SCRIPT_STEPS 3000u

struct fixture {
    char dir[256];
    char ckpt[300];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    harness_tmpdir(f->dir);
    snprintf(f->ckpt, sizeof(f->ckpt), "%s/ckpt", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    ar_mem_fail_after(0, 0);
    harness_rm_rf(f->dir);
    free(f);
    return 0;
}

/* The namespace and data ops of the script (the rest of script_cmd()):
 * r[0] % 9 picks one, the other draws its details. */
static void script_op(struct meta_cmd *cmd, const unsigned r[6], unsigned i, char names[2][8])
{
    switch (r[0] % 9) {
    case 0:
        cmd->op = META_OP_MKNOD;
        cmd->mode = S_IFREG | (0600 + r[5] % 64);
        break;
    case 1: /* data: the caller resolves the inode */
        if (r[3] % 4 == 0) {
            cmd->op = META_OP_FALLOCATE;
            cmd->flags = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
            cmd->offset = r[5] % 5000;
            cmd->length = 1 + r[4] % 3000;
            break;
        }
        cmd->op = META_OP_WRITE;
        cmd->offset = (uint64_t)(r[4] % 3) * META_CHUNK_BYTES + r[5] % 5000;
        cmd->slice = (struct meta_slice){.id = 1 + i, .size = 1 + r[4] % 4000, .len = 1 + r[4] % 4000};
        if (r[5] % 3 == 0)
            cmd->offset = 0; /* a whole small file: inline */
        break;
    case 2:
        cmd->op = META_OP_SYMLINK;
        cmd->target = "../target";
        cmd->target_len = 9;
        break;
    case 3:
        cmd->op = META_OP_UNLINK;
        break;
    case 4:
        cmd->op = META_OP_RENAME;
        cmd->flags = r[5] % 4 == 0 ? RENAME_EXCHANGE : 0;
        break;
    case 5:
        cmd->op = META_OP_LINK; /* the source ino is filled in by the caller */
        break;
    case 6:
        cmd->op = META_OP_SETATTR;
        cmd->set_mask = META_SET_MODE | META_SET_SIZE | META_SET_ATIME;
        cmd->set.mode = 0400 + r[5] % 0377;
        cmd->set.size = r[5];
        cmd->set.atime_ns = r[4];
        break;
    case 7:
        if (r[5] % 2 == 0) {
            cmd->op = META_OP_MKNOD;
            cmd->mode = S_IFCHR | 0600;
            cmd->rdev = r[5];
        } else {
            cmd->op = META_OP_SETXATTR; /* the caller resolves the inode */
            cmd->name = r[4] % 2 ? "user.a" : "user.bb";
            cmd->name_len = (uint32_t)strlen(cmd->name);
            cmd->value = names[1];
            cmd->value_len = (uint32_t)strlen(names[1]);
        }
        break;
    default:
        cmd->op = META_OP_RMDIR;
        break;
    }
}

/* The i-th command of a random but repeatable stream: creates, links,
 * renames (exchanges too), unlinks, setattrs, in a few directories. */
static void script_cmd(uint64_t seed, unsigned i, struct meta_cmd *cmd, char names[2][8])
{
    uint64_t x = seed * 6364136223846793005ull + i * 1442695040888963407ull + 1;
    unsigned r[6];

    for (int k = 0; k < 6; k++) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        r[k] = (unsigned)(x % 1000003);
    }
    memset(cmd, 0, sizeof(*cmd));
    snprintf(names[0], 8, "n%u", r[1] % 24);
    snprintf(names[1], 8, "n%u", r[2] % 24);
    cmd->ino = r[3] % 3 == 0 ? 1 : 10 + r[3] % 4; /* root or one of four dirs */
    cmd->new_dir = r[4] % 3 == 0 ? 1 : 10 + r[4] % 4;
    cmd->name = names[0];
    cmd->name_len = (uint32_t)strlen(names[0]);
    cmd->new_name = names[1];
    cmd->new_name_len = (uint32_t)strlen(names[1]);
    cmd->new_ino = 1000 + i;
    cmd->now_ns = 5000 + i;
    /* a third of the commands come from a tracked client, retries included */
    if (r[1] % 3 == 0) {
        cmd->client_id = 1 + r[2] % 3;
        cmd->seq = 1 + i / 2; /* two steps share a seq: the second is a retry */
        cmd->ack_below = cmd->seq > 4 ? cmd->seq - 4 : 0;
    }
    switch (r[0] % 12) {
    case 9:
    case 10:
        cmd->op = r[0] % 12 == 9 ? META_OP_OPEN : META_OP_RELEASE;
        cmd->session = 1 + r[5] % 3;
        cmd->client_id = 0; /* the caller resolves the inode */
        return;
    case 11:
        cmd->op = META_OP_SESSION_CLOSE;
        cmd->session = 1 + r[5] % 3;
        cmd->client_id = 0;
        return;
    default:
        break;
    }
    script_op(cmd, r, i, names);
}

/* Apply step i of the script to s; errors are part of the script. */
static void script_step(struct meta_shard *s, uint64_t seed, unsigned i)
{
    struct meta_cmd cmd;
    struct meta_reply r;
    char names[2][8];

    script_cmd(seed, i, &cmd, names);
    if (cmd.op == META_OP_LINK || cmd.op == META_OP_SETATTR || cmd.op == META_OP_SETXATTR ||
        cmd.op == META_OP_OPEN || cmd.op == META_OP_RELEASE || cmd.op == META_OP_WRITE ||
        cmd.op == META_OP_FALLOCATE) {
        struct meta_cmd look = {.op = META_OP_LOOKUP, .ino = cmd.ino, .name = names[0],
                                .name_len = (uint32_t)strlen(names[0])};
        if (meta_shard_read(s, &look, &r) != 0)
            return;
        cmd.ino = r.attr.ino;
    }
    meta_shard_apply(s, &cmd, &r);
}

static struct meta_shard *shard_with_dirs(void)
{
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755, .created_ns = 1};
    struct meta_shard *s = NULL;
    struct meta_reply r;
    char name[8];

    assert_int_equal(meta_shard_new(&cfg, &s), 0);
    for (unsigned d = 0; d < 4; d++) {
        snprintf(name, sizeof(name), "d%u", d);
        struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = 1, .name = name, .name_len = 2,
                              .mode = 0755, .new_ino = 10 + d, .now_ns = 2};
        assert_int_equal(meta_shard_apply(s, &mk, &r), 0);
    }
    return s;
}

static void commit(struct meta_checkpoint *c, struct meta_shard *s, uint64_t index)
{
    struct meta_ckpt_batch *b = NULL;
    char errmsg[AR_ERRMSG_MAX] = "";

    assert_int_equal(meta_shard_collect(s, index, &b), 0);
    if (meta_checkpoint_commit(c, b, errmsg) != 0)
        fail_msg("commit: %s", errmsg);
    meta_ckpt_batch_free(b);
}

static uint64_t loaded_hash(const char *dir, uint64_t *index)
{
    struct meta_checkpoint *c = NULL;
    struct meta_shard *s = NULL;
    char errmsg[AR_ERRMSG_MAX] = "";

    assert_int_equal(meta_checkpoint_open(dir, &c, errmsg), 0);
    if (meta_checkpoint_load(c, &s, index, errmsg) != 0)
        fail_msg("load: %s", errmsg);
    uint64_t h = meta_shard_hash(s);
    meta_shard_free(s);
    meta_checkpoint_close(c);
    return h;
}

/* ---- round trips ----------------------------------------------------------------- */

static void test_committed_state_loads_back_the_same(void **state)
{
    struct fixture *f = *state;

    for (uint64_t seed = 1; seed <= 4; seed++) {
        struct meta_shard *live = shard_with_dirs();
        struct meta_checkpoint *c = NULL;
        char dir[400];
        uint64_t index = 0;
        snprintf(dir, sizeof(dir), "%s-%llu", f->ckpt, (unsigned long long)seed);
        assert_int_equal(meta_checkpoint_open(dir, &c, NULL), 0);
        assert_int_equal(meta_checkpoint_applied_index(c), 0);
        assert_int_equal(meta_shard_track(live), 0);
        for (unsigned i = 0; i < SCRIPT_STEPS; i++) {
            script_step(live, seed, i);
            if (i % 37 == 36) /* first a full batch, then changes */
                commit(c, live, i + 1);
        }
        commit(c, live, SCRIPT_STEPS);
        assert_int_equal(meta_checkpoint_applied_index(c), SCRIPT_STEPS);
        meta_checkpoint_close(c);
        assert_int_equal(loaded_hash(dir, &index), meta_shard_hash(live));
        assert_int_equal(index, SCRIPT_STEPS);
        meta_shard_free(live);
    }
}

/* Batches collected often and committed together, as the server does:
 * the same state as the live shard, at the last batch's index; batches out
 * of order are refused and change nothing. */
static void test_batches_committed_together_load_back_the_same(void **state)
{
    struct fixture *f = *state;
    struct meta_ckpt_batch *bs[40];
    char errmsg[AR_ERRMSG_MAX] = "";

    for (uint64_t seed = 5; seed <= 7; seed++) {
        struct meta_shard *live = shard_with_dirs();
        struct meta_checkpoint *c = NULL;
        char dir[400];
        uint64_t index = 0;
        uint32_t count = 0;
        snprintf(dir, sizeof(dir), "%s-many-%llu", f->ckpt, (unsigned long long)seed);
        assert_int_equal(meta_checkpoint_open(dir, &c, NULL), 0);
        assert_int_equal(meta_shard_track(live), 0);
        for (unsigned i = 0; i < SCRIPT_STEPS; i++) {
            script_step(live, seed, i);
            if (i % 97 == 96 && count < AR_ARRAY_LEN(bs)) /* the first holds everything */
                assert_int_equal(meta_shard_collect(live, i + 1, &bs[count++]), 0);
            if (count == 12 || (i + 1 == SCRIPT_STEPS && count > 0)) {
                if (count >= 2) { /* out of order: refused, nothing written */
                    const struct meta_ckpt_batch *swapped[2] = {bs[1], bs[0]};
                    uint64_t before = meta_checkpoint_applied_index(c);
                    assert_int_equal(meta_checkpoint_commit_all(c, swapped, 2, errmsg), -EINVAL);
                    assert_int_equal(meta_checkpoint_applied_index(c), before);
                }
                if (meta_checkpoint_commit_all(c, (const struct meta_ckpt_batch *const *)bs, count,
                                               errmsg) != 0)
                    fail_msg("commit: %s", errmsg);
                for (uint32_t k = 0; k < count; k++) {
                    meta_ckpt_batch_free(bs[k]);
                }
                count = 0;
            }
        }
        commit(c, live, SCRIPT_STEPS + 1);
        meta_checkpoint_close(c);
        assert_int_equal(loaded_hash(dir, &index), meta_shard_hash(live));
        assert_int_equal(index, SCRIPT_STEPS + 1);
        meta_shard_free(live);
    }
}

static void test_restart_from_old_checkpoint_plus_replay_reaches_live_state(void **state)
{
    struct fixture *f = *state;
    struct meta_shard *live = shard_with_dirs();
    struct meta_checkpoint *c = NULL;
    struct meta_shard *restarted = NULL;
    uint64_t index = 0;

    assert_int_equal(meta_checkpoint_open(f->ckpt, &c, NULL), 0);
    assert_int_equal(meta_shard_track(live), 0);
    for (unsigned i = 0; i < 1000; i++) {
        script_step(live, 9, i);
        if (i == 599)
            commit(c, live, 600);
    }
    /* "crash": the commands after index 600 never reached the checkpoint */
    assert_int_equal(meta_checkpoint_load(c, &restarted, &index, NULL), 0);
    assert_int_equal(index, 600);
    /* a loaded state owes its checkpoint nothing: a collect before any
     * change is empty (it once took the whole state, on the loop) */
    assert_int_equal(meta_shard_dirty_count(restarted), 0);
    struct meta_ckpt_batch *none = NULL;
    assert_int_equal(meta_shard_collect(restarted, 600, &none), 0);
    meta_ckpt_batch_free(none);
    for (unsigned i = (unsigned)index; i < 1000; i++) {
        script_step(restarted, 9, i);
    }
    assert_int_equal(meta_shard_hash(restarted), meta_shard_hash(live));
    /* the restarted shard goes on checkpointing incrementally */
    commit(c, restarted, 1000);
    meta_checkpoint_close(c);
    assert_int_equal(loaded_hash(f->ckpt, &index), meta_shard_hash(live));
    /* statfs counters are rebuilt by the load */
    struct meta_cmd st = {.op = META_OP_STATFS};
    struct meta_reply r1;
    struct meta_reply r2;
    assert_int_equal(meta_shard_read(live, &st, &r1), 0);
    assert_int_equal(meta_shard_read(restarted, &st, &r2), 0);
    assert_int_equal(r1.files, r2.files);
    assert_int_equal(r1.bytes, r2.bytes);
    meta_shard_free(restarted);
    meta_shard_free(live);
}

/* Every (key, value) of a checkpoint, hashed in key order. */
static uint64_t records_hash(const char *dir)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    uint64_t h = 1469598103934665603ull;
    static const char *const dbs[] = {"inodes", "entries"};

    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 3);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    for (int d = 0; d < 2; d++) {
        MDB_dbi dbi;
        MDB_cursor *cur;
        MDB_val k;
        MDB_val v;
        assert_int_equal(mdb_dbi_open(txn, dbs[d], 0, &dbi), 0);
        assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            for (size_t i = 0; i < k.mv_size; i++)
                h = (h ^ ((uint8_t *)k.mv_data)[i]) * 1099511628211ull;
            for (size_t i = 0; i < v.mv_size; i++)
                h = (h ^ ((uint8_t *)v.mv_data)[i]) * 1099511628211ull;
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return h;
}

static void test_replicas_write_identical_records(void **state)
{
    struct fixture *f = *state;
    char a_dir[400];
    char b_dir[400];

    snprintf(a_dir, sizeof(a_dir), "%s-a", f->ckpt);
    snprintf(b_dir, sizeof(b_dir), "%s-b", f->ckpt);
    for (int side = 0; side < 2; side++) {
        struct meta_shard *s = shard_with_dirs();
        struct meta_checkpoint *c = NULL;
        assert_int_equal(meta_checkpoint_open(side ? b_dir : a_dir, &c, NULL), 0);
        assert_int_equal(meta_shard_track(s), 0);
        for (unsigned i = 0; i < 1500; i++) {
            script_step(s, 21, i);
            /* the replicas commit at different moments */
            if (i % (side ? 101 : 13) == 0)
                commit(c, s, i + 1);
        }
        commit(c, s, 1500);
        meta_checkpoint_close(c);
        meta_shard_free(s);
    }
    assert_int_equal(records_hash(a_dir), records_hash(b_dir));
}

/* ---- damage --------------------------------------------------------------------------- */

static void make_checkpoint(const char *dir, uint64_t seed)
{
    struct meta_shard *s = shard_with_dirs();
    struct meta_checkpoint *c = NULL;

    assert_int_equal(meta_checkpoint_open(dir, &c, NULL), 0);
    assert_int_equal(meta_shard_track(s), 0);
    for (unsigned i = 0; i < 500; i++) {
        script_step(s, seed, i);
    }
    commit(c, s, 500);
    meta_checkpoint_close(c);
    meta_shard_free(s);
}

static void test_damaged_record_is_ecorrupt_and_names_it(void **state)
{
    struct fixture *f = *state;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k;
    MDB_val v;
    struct meta_checkpoint *c = NULL;
    struct meta_shard *s = NULL;
    uint64_t index;
    char errmsg[AR_ERRMSG_MAX] = "";

    make_checkpoint(f->ckpt, 3);
    /* flip one bit of the value of the third inode record, behind arbor's back */
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 3);
    assert_int_equal(mdb_env_open(env, f->ckpt, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "inodes", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_NEXT), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_NEXT), 0);
    uint8_t copy[8192];
    memcpy(copy, v.mv_data, v.mv_size);
    copy[30] ^= 0x04; /* inside the size field */
    MDB_val nv = {.mv_size = v.mv_size, .mv_data = copy};
    assert_int_equal(mdb_cursor_put(cur, &k, &nv, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(meta_checkpoint_open(f->ckpt, &c, NULL), 0);
    assert_int_equal(meta_checkpoint_load(c, &s, &index, errmsg), -AR_ECORRUPT);
    assert_null(s);
    assert_non_null(strstr(errmsg, "checksum"));
    meta_checkpoint_close(c);
}

static void test_truncated_or_foreign_file_is_refused_cleanly(void **state)
{
    struct fixture *f = *state;
    char path[400];
    struct meta_checkpoint *c = NULL;
    struct meta_shard *s = NULL;
    uint64_t index;
    struct stat st;

    make_checkpoint(f->ckpt, 4);
    snprintf(path, sizeof(path), "%s/data.mdb", f->ckpt);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 3), 0);
    int rc = meta_checkpoint_open(f->ckpt, &c, NULL);
    if (rc == 0) {
        rc = meta_checkpoint_load(c, &s, &index, NULL);
        meta_checkpoint_close(c);
    }
    assert_true(rc < 0);
    assert_null(s);
    /* a file of garbage where data.mdb should be */
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 100000; i++)
        fputc((i * 7919) & 0xff, fp);
    fclose(fp);
    c = NULL;
    rc = meta_checkpoint_open(f->ckpt, &c, NULL);
    assert_true(rc < 0);
    assert_null(c);
}

/* ---- snapshots ------------------------------------------------------------------------- */

struct exporter {
    struct meta_checkpoint *c;
    int fd;
    int rc;
};

static void *export_main(void *arg)
{
    struct exporter *e = arg;

    e->rc = meta_checkpoint_export(e->c, e->fd, NULL);
    close(e->fd);
    return NULL;
}

static void test_snapshot_streams_out_and_in_while_commits_go_on(void **state)
{
    struct fixture *f = *state;
    struct meta_shard *live = shard_with_dirs();
    struct meta_checkpoint *c = NULL;
    char copy_dir[400];
    int pipefd[2];
    pthread_t th;
    uint64_t index = 0;
    char errmsg[AR_ERRMSG_MAX] = "";

    snprintf(copy_dir, sizeof(copy_dir), "%s-copy", f->ckpt);
    assert_int_equal(meta_checkpoint_open(f->ckpt, &c, NULL), 0);
    assert_int_equal(meta_shard_track(live), 0);
    for (unsigned i = 0; i < 800; i++)
        script_step(live, 5, i);
    commit(c, live, 800);
    uint64_t at_800 = meta_shard_hash(live);
    assert_int_equal(pipe(pipefd), 0);
    struct exporter e = {.c = c, .fd = pipefd[1]};
    assert_int_equal(pthread_create(&th, NULL, export_main, &e), 0);
    /* the shard and its checkpoint go on meanwhile */
    for (unsigned i = 800; i < 900; i++)
        script_step(live, 5, i);
    commit(c, live, 900);
    int rc = meta_checkpoint_import(copy_dir, pipefd[0], errmsg);
    close(pipefd[0]);
    pthread_join(th, NULL);
    if (rc != 0)
        fail_msg("import: %s", errmsg);
    assert_int_equal(e.rc, 0);
    /* the copy is one consistent moment: index 800 or 900, whole */
    uint64_t h = loaded_hash(copy_dir, &index);
    assert_true(index == 800 || index == 900);
    if (index == 800)
        assert_int_equal(h, at_800);
    else
        assert_int_equal(h, meta_shard_hash(live));
    meta_checkpoint_close(c);
    meta_shard_free(live);
}

static void test_import_of_garbage_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    char path[400];
    char copy_dir[400];
    char errmsg[AR_ERRMSG_MAX] = "";

    snprintf(path, sizeof(path), "%s/garbage", f->dir);
    snprintf(copy_dir, sizeof(copy_dir), "%s/never", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 50000; i++)
        fputc(i & 0xff, fp);
    fclose(fp);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_true(meta_checkpoint_import(copy_dir, fd, errmsg) < 0);
    close(fd);
    assert_int_equal(access(copy_dir, F_OK), -1);
    assert_true(strlen(errmsg) > 0);
}

static void test_collect_out_of_memory_keeps_the_changes(void **state)
{
    struct fixture *f = *state;
    struct meta_shard *live = shard_with_dirs();
    struct meta_checkpoint *c = NULL;
    struct meta_ckpt_batch *b = NULL;
    uint64_t index;

    assert_int_equal(meta_checkpoint_open(f->ckpt, &c, NULL), 0);
    assert_int_equal(meta_shard_track(live), 0);
    commit(c, live, 1);
    for (unsigned i = 0; i < 300; i++)
        script_step(live, 8, i);
    ar_mem_fail_after(0, 1);
    assert_int_equal(meta_shard_collect(live, 300, &b), -ENOMEM);
    ar_mem_fail_after(0, 0);
    assert_null(b);
    commit(c, live, 300); /* the retry carries every change */
    meta_checkpoint_close(c);
    assert_int_equal(loaded_hash(f->ckpt, &index), meta_shard_hash(live));
    meta_shard_free(live);
}

/* A live shard tracked into the fixture's checkpoint, its first batch committed. */
static struct meta_shard *tracked_shard(struct fixture *f, struct meta_checkpoint **c)
{
    struct meta_shard *live = shard_with_dirs();

    assert_int_equal(meta_checkpoint_open(f->ckpt, c, NULL), 0);
    assert_int_equal(meta_shard_track(live), 0);
    commit(*c, live, 1);
    return live;
}

static void test_retry_table_survives_a_restart(void **state)
{
    struct fixture *f = *state;
    struct meta_checkpoint *c = NULL;
    struct meta_shard *live = tracked_shard(f, &c);
    struct meta_shard *again = NULL;
    struct meta_reply r;
    uint64_t index;

    struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = "dedup", .name_len = 5,
                          .mode = S_IFREG | 0644, .new_ino = 777, .now_ns = 9,
                          .client_id = 42, .seq = 1};
    assert_int_equal(meta_shard_apply(live, &mk, &r), 0);
    commit(c, live, 2);
    assert_int_equal(meta_checkpoint_load(c, &again, &index, NULL), 0);
    assert_int_equal(meta_shard_hash(again), meta_shard_hash(live));
    /* the retry after the restart gets the first answer, not EEXIST */
    mk.new_ino = 778;
    assert_int_equal(meta_shard_apply(again, &mk, &r), 0);
    assert_int_equal(r.attr.ino, 777);
    meta_shard_free(again);
    meta_shard_free(live);
    meta_checkpoint_close(c);
}

static void test_orphans_and_holds_survive_a_restart(void **state)
{
    struct fixture *f = *state;
    struct meta_checkpoint *c = NULL;
    struct meta_shard *live = tracked_shard(f, &c);
    struct meta_shard *again = NULL;
    struct meta_reply r;
    uint64_t index;

    struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = "o", .name_len = 1,
                          .mode = S_IFREG | 0644, .new_ino = 900, .now_ns = 3};
    struct meta_cmd op = {.op = META_OP_OPEN, .ino = 900, .session = 77, .now_ns = 4};
    struct meta_cmd un = {.op = META_OP_UNLINK, .ino = 1, .name = "o", .name_len = 1,
                          .now_ns = 5};
    assert_int_equal(meta_shard_apply(live, &mk, &r), 0);
    assert_int_equal(meta_shard_apply(live, &op, &r), 0);
    assert_int_equal(meta_shard_apply(live, &un, &r), 0);
    commit(c, live, 2);
    assert_int_equal(meta_checkpoint_load(c, &again, &index, NULL), 0);
    assert_int_equal(meta_shard_hash(again), meta_shard_hash(live));
    /* the restarted shard frees the orphan when its session closes */
    struct meta_cmd cl = {.op = META_OP_SESSION_CLOSE, .session = 77, .now_ns = 6};
    assert_int_equal(meta_shard_apply(again, &cl, &r), 0);
    struct meta_cmd ga = {.op = META_OP_GETATTR, .ino = 900};
    assert_int_equal(meta_shard_read(again, &ga, &r), -ENOENT);
    commit(c, again, 3);
    meta_shard_free(again);
    meta_checkpoint_close(c);
    uint64_t h = loaded_hash(f->ckpt, &index);
    assert_int_equal(meta_shard_apply(live, &cl, &r), 0);
    assert_int_equal(h, meta_shard_hash(live));
    meta_shard_free(live);
}

/* Every record ends in a checksum of (key, value before it): see checkpoint.c. */
static void reseal(const MDB_val *k, uint8_t *val, size_t len)
{
    if (len < 8)
        return;
    uint64_t sum = meta__hash_bytes(meta__hash_bytes(0x636b7074ull, k->mv_data,
                                                     (uint32_t)k->mv_size),
                                    val, (uint32_t)(len - 8));
    memcpy(val + len - 8, &sum, 8);
}

/* Mutate one record of db in the checkpoint at dir, resealing its checksum
 * so that the loader's structural checks, not the checksum, must catch it. */
static void mutate_one(const char *dir, const char *db, uint64_t *rng)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k;
    MDB_val v;
    static uint8_t buf[1 << 20];

    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 3);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (uint64_t skip = *rng % 64; rc == 0 && skip > 0; skip--) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == 0 && v.mv_size + 16 < sizeof(buf)) {
        size_t len = v.mv_size;
        memcpy(buf, v.mv_data, len);
        uint8_t key[512];
        size_t klen = k.mv_size < sizeof(key) ? k.mv_size : sizeof(key);
        memcpy(key, k.mv_data, klen);
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        switch (*rng % 4) {
        case 0: /* a byte anywhere but the checksum */
        case 1:
            if (len > 8)
                buf[(*rng >> 8) % (len - 8)] ^= (uint8_t)(1u << ((*rng >> 40) % 8));
            break;
        case 2: /* shorter */
            len = len > 9 ? len - 1 - (*rng >> 8) % 8 : len;
            break;
        default: /* longer */
            memset(buf + len, 0x5a, 8);
            len += 1 + (*rng >> 8) % 8;
            break;
        }
        MDB_val nk = {.mv_size = klen, .mv_data = key};
        reseal(&nk, buf, len);
        MDB_val nv = {.mv_size = len, .mv_data = buf};
        assert_int_equal(mdb_put(txn, dbi, &nk, &nv, 0), 0);
    }
    mdb_cursor_close(cur);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_load_fuzz_never_trusts_a_resealed_record(void **state)
{
    struct fixture *f = *state;
    char pristine[400];
    char work[400];
    char cmd[1000];
    static const char *const dbs[] = {"inodes", "entries", "meta"};
    uint64_t rng = 0xFACADE;
    unsigned loaded = 0;
    unsigned refused = 0;

    snprintf(pristine, sizeof(pristine), "%s-pristine", f->ckpt);
    snprintf(work, sizeof(work), "%s-work", f->ckpt);
    make_checkpoint(pristine, 11);
    for (unsigned round = 0; round < 300; round++) {
        struct meta_checkpoint *c = NULL;
        struct meta_shard *s = NULL;
        uint64_t index;
        char errmsg[AR_ERRMSG_MAX] = "";
        snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", work, pristine, work);
        assert_int_equal(system(cmd), 0);
        rng = rng * 6364136223846793005ull + round;
        mutate_one(work, dbs[rng % 3], &rng);
        int rc = meta_checkpoint_open(work, &c, errmsg); /* a damaged meta record: here */
        if (rc == 0)
            rc = meta_checkpoint_load(c, &s, &index, errmsg);
        if (rc == 0) {
            /* whatever loads must hold together: it hashes and takes commands */
            struct meta_reply r;
            struct meta_dirent entries[8];
            struct meta_cmd rd = {.op = META_OP_READDIR, .ino = 1, .entry_cap = 8};
            r.entries = entries;
            (void)meta_shard_hash(s);
            assert_int_equal(meta_shard_read(s, &rd, &r), 0);
            for (unsigned i = 0; i < r.entry_count; i++) {
                struct meta_cmd rm = {.op = META_OP_UNLINK, .ino = 1, .name = entries[i].name,
                                      .name_len = entries[i].name_len, .now_ns = 1 << 30};
                meta_shard_apply(s, &rm, &r);
            }
            loaded++;
        } else {
            if (rc != -AR_ECORRUPT)
                fail_msg("round %u: %d %s", round, rc, errmsg);
            refused++;
        }
        meta_shard_free(s);
        meta_checkpoint_close(c);
    }
    assert_true(refused > 30); /* resealed damage is still found */
    assert_true(loaded > 0);   /* and harmless edits (a time, a size) load */
}

/* ---- impossible trees, checksums intact ------------------------------------------------ */

struct tree_edit {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi inodes;
    MDB_dbi entries;
};

static void edit_open(struct tree_edit *e, const char *dir)
{
    assert_int_equal(mdb_env_create(&e->env), 0);
    mdb_env_set_maxdbs(e->env, 3);
    assert_int_equal(mdb_env_open(e->env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &e->txn), 0);
    assert_int_equal(mdb_dbi_open(e->txn, "inodes", 0, &e->inodes), 0);
    assert_int_equal(mdb_dbi_open(e->txn, "entries", 0, &e->entries), 0);
}

static void edit_close(struct tree_edit *e)
{
    assert_int_equal(mdb_txn_commit(e->txn), 0);
    mdb_env_close(e->env);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (56 - 8 * i));
    }
}

/* An entry (parent, name) -> (key, target), sealed. */
static void edit_entry(struct tree_edit *e, uint64_t parent, const char *name, uint64_t key,
                       uint64_t target, bool is_delete)
{
    uint8_t k[64];
    uint8_t v[24];
    size_t len = strlen(name);

    put_be64(k, parent);
    memcpy(k + 8, name, len);
    MDB_val mk = {.mv_size = 8 + len, .mv_data = k};
    if (is_delete) {
        assert_int_equal(mdb_del(e->txn, e->entries, &mk, NULL), 0);
        return;
    }
    memcpy(v, &key, 8);
    memcpy(v + 8, &target, 8);
    reseal(&mk, v, sizeof(v));
    MDB_val mv = {.mv_size = sizeof(v), .mv_data = v};
    assert_int_equal(mdb_put(e->txn, e->entries, &mk, &mv, 0), 0);
}

/* Set an inode's nlink, or in flag bits, or change its mode; reseal. */
static void edit_inode(struct tree_edit *e, uint64_t ino, uint32_t nlink, uint8_t flags,
                       uint32_t mode)
{
    uint8_t k[8];
    uint8_t buf[4096];
    MDB_val mv;

    put_be64(k, ino);
    MDB_val mk = {.mv_size = 8, .mv_data = k};
    assert_int_equal(mdb_get(e->txn, e->inodes, &mk, &mv), 0);
    assert_true(mv.mv_size <= sizeof(buf));
    memcpy(buf, mv.mv_data, mv.mv_size);
    memcpy(buf + 16, &nlink, 4); /* layout: checkpoint.c's inode record */
    buf[1] |= flags;
    if (mode != 0)
        memcpy(buf + 4, &mode, 4);
    reseal(&mk, buf, mv.mv_size);
    MDB_val nv = {.mv_size = mv.mv_size, .mv_data = buf};
    assert_int_equal(mdb_put(e->txn, e->inodes, &mk, &nv, 0), 0);
}

enum tree_case { TREE_DIR_ALIAS, TREE_KEY_ZERO, TREE_KEY_TWICE, TREE_NAMELESS_DIR, TREE_CYCLE,
                 TREE_ROOT_FILE, TREE_CASES };

/* Break the checkpoint's tree (open in e) as case tc says. */
static void tree_break(struct tree_edit *e, enum tree_case tc)
{
    switch (tc) {
    case TREE_DIR_ALIAS: /* /x, a second name of a; counts raised to match */
        edit_entry(e, 1, "x", 9, 2, false);
        edit_inode(e, 2, 3, 0, 0);
        edit_inode(e, 1, 5, 0, 0);
        break;
    case TREE_KEY_ZERO: /* h's link key 0 */
        edit_entry(e, 1, "h", 0, 4, false);
        break;
    case TREE_KEY_TWICE: /* h's link key equal to a's number */
        edit_entry(e, 1, "h", 2, 4, false);
        break;
    case TREE_NAMELESS_DIR: /* a loses its name, keeps a link */
        edit_entry(e, 1, "a", 0, 0, true);
        edit_inode(e, 2, 1, 1, 0);
        edit_inode(e, 1, 3, 0, 0);
        break;
    case TREE_CYCLE: /* a moves into b and b into a: counts unchanged */
        edit_entry(e, 1, "a", 0, 0, true);
        edit_entry(e, 1, "b", 0, 0, true);
        edit_entry(e, 3, "a", 2, 2, false);
        edit_entry(e, 2, "b", 3, 3, false);
        edit_inode(e, 1, 2, 0, 0);
        break;
    case TREE_ROOT_FILE:
        edit_inode(e, 1, 4, 0, S_IFREG | 0644);
        break;
    case TREE_CASES:
        AR_UNREACHABLE();
    }
}

/* / holds a (2), b (3) and g (4); a case then edits the records so that
 * every count and checksum still agrees but the tree cannot be. */
static void test_load_refuses_impossible_trees(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {"alias to a directory", "link key 0", "one key twice",
                                        "nameless directory with a link", "cycle",
                                        "root is a file"};
    /* what the refusal must name: the check meant for the case, not another */
    static const char *const reasons[] = {"second name of a directory", "link key of 0",
                                          "have key 2", "nlink 1, but 0", "cannot be reached",
                                          "not a directory"};

    for (int tc = 0; tc < TREE_CASES; tc++) {
        struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755, .created_ns = 1};
        struct meta_shard *s = NULL;
        struct meta_checkpoint *c = NULL;
        struct meta_reply r;
        struct tree_edit e;
        char dir[400];
        char errmsg[AR_ERRMSG_MAX] = "";
        uint64_t index;
        static const struct meta_cmd mk[] = {
            {.op = META_OP_MKDIR, .ino = 1, .name = "a", .name_len = 1, .mode = 0755, .new_ino = 2},
            {.op = META_OP_MKDIR, .ino = 1, .name = "b", .name_len = 1, .mode = 0755, .new_ino = 3},
            {.op = META_OP_MKNOD, .ino = 1, .name = "g", .name_len = 1, .mode = S_IFREG | 0644,
             .new_ino = 4},
            {.op = META_OP_LINK, .ino = 4, .new_dir = 1, .new_name = "h", .new_name_len = 1,
             .new_ino = 5},
            {.op = META_OP_MKNOD, .ino = 1, .name = "t", .name_len = 1, .mode = S_IFREG | 0644,
             .new_ino = 20}, /* numbers up to 20 are used */
            {.op = META_OP_UNLINK, .ino = 1, .name = "t", .name_len = 1},
        };
        snprintf(dir, sizeof(dir), "%s-tree%d", f->ckpt, tc);
        assert_int_equal(meta_shard_new(&cfg, &s), 0);
        for (unsigned i = 0; i < sizeof(mk) / sizeof(mk[0]); i++) {
            assert_int_equal(meta_shard_apply(s, &mk[i], &r), 0);
        }
        assert_int_equal(meta_checkpoint_open(dir, &c, errmsg), 0);
        assert_int_equal(meta_shard_track(s), 0);
        commit(c, s, 1);
        meta_checkpoint_close(c);
        meta_shard_free(s);
        edit_open(&e, dir);
        tree_break(&e, (enum tree_case)tc);
        edit_close(&e);
        assert_int_equal(meta_checkpoint_open(dir, &c, errmsg), 0);
        int rc = meta_checkpoint_load(c, &s, &index, errmsg);
        if (rc != -AR_ECORRUPT || strstr(errmsg, reasons[tc]) == NULL)
            fail_msg("%s: load gave %d (%s)", names[tc], rc, errmsg);
        meta_checkpoint_close(c);
    }
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_committed_state_loads_back_the_same),
        T(test_batches_committed_together_load_back_the_same),
        T(test_restart_from_old_checkpoint_plus_replay_reaches_live_state),
        T(test_replicas_write_identical_records),
        T(test_damaged_record_is_ecorrupt_and_names_it),
        T(test_truncated_or_foreign_file_is_refused_cleanly),
        T(test_snapshot_streams_out_and_in_while_commits_go_on),
        T(test_import_of_garbage_leaves_nothing),
        T(test_collect_out_of_memory_keeps_the_changes),
        T(test_retry_table_survives_a_restart),
        T(test_orphans_and_holds_survive_a_restart),
        T(test_load_fuzz_never_trusts_a_resealed_record),
        T(test_load_refuses_impossible_trees),
    };
#undef T
    return cmocka_run_group_tests_name("test_checkpoint", tests, NULL, NULL);
}
