/* tests/meta/test_ops.c - the shard state machine's commands, one by one.
 * Goal: every limit holds at limit and limit + 1; a command that fails for
 * want of memory changes nothing; equal command streams give equal states;
 * readdir cookies survive changes between pages; hard links, times and
 * link counts behave as on Linux.
 * Method: a fresh shard per test; the allocator fails the Nth call
 * (ar_mem_fail_after); meta_shard_hash() compares whole states. */
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

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1u << 0)
#define RENAME_EXCHANGE  (1u << 1)
#endif

struct fixture {
    struct meta_shard *shard;
    uint64_t next_ino;
    int64_t now;
    struct meta_dirent entries[META_READDIR_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755, .created_ns = 1};

    assert_non_null(f);
    assert_int_equal(meta_shard_new(&cfg, &f->shard), 0);
    f->next_ino = 100;
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

/* ---- helpers: commands as root ------------------------------------------------- */

static int make(struct fixture *f, enum meta_op op, uint64_t dir, const char *name, uint32_t mode,
                struct meta_attr *out)
{
    struct meta_cmd cmd = {.op = op, .ino = dir, .name = name, .name_len = (uint32_t)strlen(name),
                           .mode = mode, .new_ino = f->next_ino++, .now_ns = ++f->now};
    struct meta_reply r;
    int rc;

    if (op == META_OP_SYMLINK) {
        cmd.target = "some/target";
        cmd.target_len = 11;
    }
    rc = meta_shard_apply(f->shard, &cmd, &r);
    if (rc == 0 && out != NULL)
        *out = r.attr;
    return rc;
}

static int simple(struct fixture *f, enum meta_op op, uint64_t dir, const char *name)
{
    struct meta_cmd cmd = {.op = op, .ino = dir, .name = name, .name_len = (uint32_t)strlen(name),
                           .now_ns = ++f->now};
    struct meta_reply r;

    return meta_shard_apply(f->shard, &cmd, &r);
}

static int ren(struct fixture *f, uint64_t od, const char *on, uint64_t nd, const char *nn,
               uint32_t flags)
{
    struct meta_cmd cmd = {.op = META_OP_RENAME, .ino = od, .name = on,
                           .name_len = (uint32_t)strlen(on), .new_dir = nd, .new_name = nn,
                           .new_name_len = (uint32_t)strlen(nn), .flags = flags,
                           .now_ns = ++f->now};
    struct meta_reply r;

    return meta_shard_apply(f->shard, &cmd, &r);
}

static int lnk(struct fixture *f, uint64_t ino, uint64_t nd, const char *nn)
{
    struct meta_cmd cmd = {.op = META_OP_LINK, .ino = ino, .new_dir = nd, .new_name = nn,
                           .new_name_len = (uint32_t)strlen(nn), .new_ino = f->next_ino++,
                           .now_ns = ++f->now};
    struct meta_reply r;

    return meta_shard_apply(f->shard, &cmd, &r);
}

static int look(struct fixture *f, uint64_t dir, const char *name, struct meta_attr *out)
{
    struct meta_cmd cmd = {.op = META_OP_LOOKUP, .ino = dir, .name = name,
                           .name_len = (uint32_t)strlen(name)};
    struct meta_reply r;
    int rc = meta_shard_read(f->shard, &cmd, &r);

    if (rc == 0 && out != NULL)
        *out = r.attr;
    return rc;
}

static struct meta_attr getattr(struct fixture *f, uint64_t ino)
{
    struct meta_cmd cmd = {.op = META_OP_GETATTR, .ino = ino};
    struct meta_reply r;

    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), 0);
    return r.attr;
}

/* ---- limits ------------------------------------------------------------------------ */

static void test_name_limits_hold_at_limit_plus_one(void **state)
{
    struct fixture *f = *state;
    char name[META_NAME_BYTES_MAX + 2];

    memset(name, 'n', sizeof(name));
    name[META_NAME_BYTES_MAX] = '\0';
    assert_int_equal(make(f, META_OP_MKNOD, 1, name, S_IFREG | 0644, NULL), 0);
    assert_int_equal(look(f, 1, name, NULL), 0);
    name[META_NAME_BYTES_MAX] = 'n';
    name[META_NAME_BYTES_MAX + 1] = '\0';
    assert_int_equal(make(f, META_OP_MKNOD, 1, name, S_IFREG | 0644, NULL), -ENAMETOOLONG);
    assert_int_equal(look(f, 1, name, NULL), -ENAMETOOLONG);
    assert_int_equal(make(f, META_OP_MKDIR, 1, "a/b", 0755, NULL), -EINVAL);
    assert_int_equal(make(f, META_OP_MKDIR, 1, ".", 0755, NULL), -EINVAL);
    assert_int_equal(make(f, META_OP_MKDIR, 1, "..", 0755, NULL), -EINVAL);
    assert_int_equal(make(f, META_OP_MKDIR, 1, "", 0755, NULL), -EINVAL);
    struct meta_cmd nul = {.op = META_OP_MKDIR, .ino = 1, .name = "a\0b", .name_len = 3,
                           .new_ino = 5000, .now_ns = 1};
    struct meta_reply r;
    assert_int_equal(meta_shard_apply(f->shard, &nul, &r), -EINVAL);
}

static void test_symlink_target_limits(void **state)
{
    struct fixture *f = *state;
    char *target = malloc(META_SYMLINK_BYTES_MAX + 2);
    struct meta_cmd cmd = {.op = META_OP_SYMLINK, .ino = 1, .name = "s", .name_len = 1,
                           .new_ino = 7000, .now_ns = 5};
    struct meta_reply r;

    assert_non_null(target);
    memset(target, 't', META_SYMLINK_BYTES_MAX + 1);
    cmd.target = target;
    cmd.target_len = META_SYMLINK_BYTES_MAX + 1;
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), -ENAMETOOLONG);
    cmd.target_len = 0;
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), -ENOENT);
    cmd.target_len = META_SYMLINK_BYTES_MAX;
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), 0);
    assert_int_equal(r.attr.size, META_SYMLINK_BYTES_MAX);
    struct meta_cmd rl = {.op = META_OP_READLINK, .ino = 7000};
    assert_int_equal(meta_shard_read(f->shard, &rl, &r), 0);
    assert_int_equal(strlen(r.target), META_SYMLINK_BYTES_MAX);
    free(target);
}

static void test_link_count_limit_is_emlink(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;
    char name[32];

    assert_int_equal(make(f, META_OP_MKNOD, 1, "many", S_IFREG | 0644, &a), 0);
    for (uint32_t i = 1; i < META_NLINK_MAX; i++) {
        snprintf(name, sizeof(name), "l%u", i);
        assert_int_equal(lnk(f, a.ino, 1, name), 0);
    }
    assert_int_equal(getattr(f, a.ino).nlink, META_NLINK_MAX);
    assert_int_equal(lnk(f, a.ino, 1, "one-too-many"), -EMLINK);
}

static void test_wrong_op_kind_and_bad_op_are_einval(void **state)
{
    struct fixture *f = *state;
    struct meta_cmd cmd = {.op = META_OP_GETATTR, .ino = 1};
    struct meta_reply r;

    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), -EINVAL);
    cmd.op = META_OP_MKDIR;
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), -EINVAL);
    cmd.op = (enum meta_op)77;
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), -EINVAL);
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), -EINVAL);
    /* a new inode number already in use is a bad command, not a new file */
    assert_int_equal(make(f, META_OP_MKDIR, 1, "d", 0755, NULL), 0);
    f->next_ino--;
    assert_int_equal(make(f, META_OP_MKDIR, 1, "e", 0755, NULL), -EINVAL);
    cmd = (struct meta_cmd){.op = META_OP_MKDIR, .ino = 1, .name = "z", .name_len = 1,
                            .cred.group_count = META_GROUPS_MAX + 1};
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), -EINVAL);
}

/* ---- failure leaves no trace ------------------------------------------------------------ */

static void seed_tree(struct fixture *f)
{
    struct meta_attr a;

    assert_int_equal(make(f, META_OP_MKDIR, 1, "dir", 0755, &a), 0);
    assert_int_equal(make(f, META_OP_MKNOD, a.ino, "file", S_IFREG | 0644, NULL), 0);
    assert_int_equal(make(f, META_OP_MKNOD, 1, "top", S_IFREG | 0600, NULL), 0);
}

/* Run one command with the Nth allocation failing, for N = 0, 1, ... until it
 * succeeds: every failure must be -ENOMEM and leave the hash as it was. */
static void check_atomic(struct fixture *f, const struct meta_cmd *cmd)
{
    for (unsigned n = 0; n < 32; n++) {
        struct meta_reply r;
        uint64_t before = meta_shard_hash(f->shard);
        ar_mem_fail_after(n, 1);
        int rc = meta_shard_apply(f->shard, cmd, &r);
        ar_mem_fail_after(0, 0);
        if (rc == 0)
            return;
        if (rc != -ENOMEM)
            fail_msg("op %d at allocation %u: %d, not -ENOMEM", cmd->op, n, rc);
        if (meta_shard_hash(f->shard) != before)
            fail_msg("op %d failed at allocation %u but changed the state", cmd->op, n);
    }
    fail_msg("command op %d never succeeded", cmd->op);
}

static void test_out_of_memory_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct meta_attr dir;
    struct meta_attr file;

    seed_tree(f);
    assert_int_equal(look(f, 1, "dir", &dir), 0);
    assert_int_equal(look(f, dir.ino, "file", &file), 0);
    /* fresh shards and big batches make every table grow inside these commands */
    for (unsigned i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof(name), "m%u", i);
        struct meta_cmd mk = {.op = i % 3 == 0 ? META_OP_MKDIR : META_OP_MKNOD, .ino = dir.ino,
                              .name = name, .name_len = (uint32_t)strlen(name),
                              .mode = i % 3 == 0 ? 0755 : (S_IFREG | (0600 + i % 8)),
                              .new_ino = f->next_ino++, .now_ns = ++f->now};
        check_atomic(f, &mk);
    }
    struct meta_cmd sym = {.op = META_OP_SYMLINK, .ino = 1, .name = "sym", .name_len = 3,
                           .target = "x/y", .target_len = 3, .new_ino = f->next_ino++,
                           .now_ns = ++f->now};
    check_atomic(f, &sym);
    struct meta_cmd link = {.op = META_OP_LINK, .ino = file.ino, .new_dir = 1,
                            .new_name = "hard", .new_name_len = 4, .new_ino = f->next_ino++,
                            .now_ns = ++f->now};
    check_atomic(f, &link);
    struct meta_cmd rn = {.op = META_OP_RENAME, .ino = 1, .name = "top", .name_len = 3,
                          .new_dir = dir.ino, .new_name = "moved-top-with-a-longer-name",
                          .new_name_len = 28, .now_ns = ++f->now};
    check_atomic(f, &rn);
    struct meta_cmd ex = {.op = META_OP_RENAME, .ino = 1, .name = "hard", .name_len = 4,
                          .new_dir = dir.ino, .new_name = "m1", .new_name_len = 2,
                          .flags = RENAME_EXCHANGE, .now_ns = ++f->now};
    check_atomic(f, &ex);
    struct meta_cmd ch = {.op = META_OP_SETATTR, .ino = file.ino,
                          .set_mask = META_SET_MODE | META_SET_UID, .set = {.mode = 0411,
                          .uid = 4242}, .now_ns = ++f->now};
    check_atomic(f, &ch);
    /* an exchange swaps inodes, not names: m1 is still in dir */
    struct meta_cmd un = {.op = META_OP_UNLINK, .ino = dir.ino, .name = "m1", .name_len = 2,
                          .now_ns = ++f->now};
    check_atomic(f, &un);
}

/* ---- determinism ------------------------------------------------------------------------- */

static void apply_script(struct meta_shard *s, unsigned variant)
{
    static const char *const names[] = {"a", "b", "c", "d"};
    struct meta_reply r;
    int64_t now = 10;
    uint64_t ino = 500;

    for (unsigned i = 0; i < 400; i++) {
        const char *n = names[(i * 7 + variant * 0) % 4];
        const char *m = names[(i * 3 + 1) % 4];
        struct meta_cmd cmd = {.ino = 1, .name = n, .name_len = 1, .new_dir = 1, .new_name = m,
                               .new_name_len = 1, .new_ino = ino++, .now_ns = ++now,
                               .mode = S_IFREG | 0644};
        cmd.op = (enum meta_op)(META_OP_MKNOD + (int)(i % 7));
        if (cmd.op == META_OP_LINK) {
            struct meta_cmd lk = {.op = META_OP_LOOKUP, .ino = 1, .name = n, .name_len = 1};
            if (meta_shard_read(s, &lk, &r) != 0)
                continue;
            cmd.ino = r.attr.ino;
        }
        if (cmd.op == META_OP_SYMLINK) {
            cmd.target = "t";
            cmd.target_len = 1;
        }
        meta_shard_apply(s, &cmd, &r); /* errors are part of the script */
    }
}

static void test_same_commands_give_same_state(void **state)
{
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755};
    struct meta_shard *a = NULL;
    struct meta_shard *b = NULL;

    (void)state;
    assert_int_equal(meta_shard_new(&cfg, &a), 0);
    assert_int_equal(meta_shard_new(&cfg, &b), 0);
    apply_script(a, 0);
    apply_script(b, 0);
    assert_int_equal(meta_shard_hash(a), meta_shard_hash(b));
    /* and one more command on one side shows */
    struct meta_cmd cmd = {.op = META_OP_MKDIR, .ino = 1, .name = "extra", .name_len = 5,
                           .new_ino = 99999, .now_ns = 1};
    struct meta_reply r;
    assert_int_equal(meta_shard_apply(a, &cmd, &r), 0);
    assert_int_not_equal(meta_shard_hash(a), meta_shard_hash(b));
    meta_shard_free(a);
    meta_shard_free(b);
}

static void test_hash_ignores_how_the_state_was_reached(void **state)
{
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755};
    struct meta_shard *a = NULL;
    struct meta_shard *b = NULL;
    struct meta_reply r;

    (void)state;
    assert_int_equal(meta_shard_new(&cfg, &a), 0);
    assert_int_equal(meta_shard_new(&cfg, &b), 0);
    /* a: x then y; b: a temporary first (its node slot is taken, then freed),
     * x, y, then the temporary gone. Inode numbers only grow in both. */
    struct meta_cmd x = {.op = META_OP_MKNOD, .ino = 1, .name = "x", .name_len = 1,
                         .mode = S_IFREG | 0644, .new_ino = 10, .now_ns = 5};
    struct meta_cmd y = {.op = META_OP_MKDIR, .ino = 1, .name = "y", .name_len = 1, .mode = 0700,
                         .new_ino = 11, .now_ns = 5};
    struct meta_cmd t = {.op = META_OP_MKNOD, .ino = 1, .name = "t", .name_len = 1,
                         .mode = S_IFREG | 0644, .new_ino = 9, .now_ns = 5};
    struct meta_cmd rm = {.op = META_OP_UNLINK, .ino = 1, .name = "t", .name_len = 1,
                          .now_ns = 5};
    assert_int_equal(meta_shard_apply(a, &x, &r), 0);
    assert_int_equal(meta_shard_apply(a, &y, &r), 0);
    assert_int_equal(meta_shard_apply(b, &t, &r), 0);
    assert_int_equal(meta_shard_apply(b, &x, &r), 0);
    assert_int_equal(meta_shard_apply(b, &y, &r), 0);
    assert_int_equal(meta_shard_apply(b, &rm, &r), 0);
    /* and a number that did not grow is refused */
    assert_int_equal(meta_shard_apply(a, &t, &r), -EINVAL);
    assert_int_equal(meta_shard_hash(a), meta_shard_hash(b));
    meta_shard_free(a);
    meta_shard_free(b);
}

/* ---- readdir ----------------------------------------------------------------------------- */

static void test_readdir_cookies_survive_changes_between_pages(void **state)
{
    struct fixture *f = *state;
    struct meta_attr d;
    char name[32];
    bool seen[400] = {false};
    bool was_removed[400] = {false};

    assert_int_equal(make(f, META_OP_MKDIR, 1, "big", 0755, &d), 0);
    for (unsigned i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "e%u", i);
        assert_int_equal(make(f, META_OP_MKNOD, d.ino, name, S_IFREG | 0644, NULL), 0);
    }
    struct meta_cmd cmd = {.op = META_OP_READDIR, .ino = d.ino, .entry_cap = 16};
    unsigned added = 300;
    for (unsigned page = 0; page < 100; page++) {
        struct meta_reply r = {.entries = f->entries};
        assert_int_equal(meta_shard_read(f->shard, &cmd, &r), 0);
        for (unsigned i = 0; i < r.entry_count; i++) {
            unsigned k = (unsigned)strtoul(r.entries[i].name + 1, NULL, 10);
            assert_false(seen[k]); /* never twice */
            assert_false(was_removed[k]);
            seen[k] = true;
            cmd.cookie = r.entries[i].cookie;
        }
        if (r.is_end)
            break;
        /* between pages: remove two entries not yet seen and one seen, add one */
        for (unsigned k = 299 - page * 2; k > 297 - page * 2 && k < 300; k--) {
            snprintf(name, sizeof(name), "e%u", k);
            if (!seen[k] && simple(f, META_OP_UNLINK, d.ino, name) == 0)
                was_removed[k] = true;
        }
        snprintf(name, sizeof(name), "e%u", page);
        simple(f, META_OP_UNLINK, d.ino, name);
        snprintf(name, sizeof(name), "e%u", added++);
        assert_int_equal(make(f, META_OP_MKNOD, d.ino, name, S_IFREG | 0644, NULL), 0);
    }
    /* every entry that lived through the whole listing was returned */
    for (unsigned k = 0; k < 300; k++) {
        if (!was_removed[k] && k >= 100)
            assert_true(seen[k]);
    }
}

/* The names of dir, listed in pages of 7, into names; their count. */
static unsigned list_all(struct fixture *f, uint64_t dir, char names[][16], unsigned cap)
{
    struct meta_cmd cmd = {.op = META_OP_READDIR, .ino = dir, .entry_cap = 7};
    unsigned n = 0;

    for (unsigned page = 0; page < 100; page++) {
        struct meta_reply r = {.entries = f->entries};
        assert_int_equal(meta_shard_read(f->shard, &cmd, &r), 0);
        for (unsigned i = 0; i < r.entry_count; i++) {
            assert_true(n < cap);
            snprintf(names[n++], 16, "%s", r.entries[i].name);
            cmd.cookie = r.entries[i].cookie;
        }
        if (r.is_end)
            return n;
    }
    fail_msg("the listing did not end");
    return n;
}

/* Removals in creation order leave no run of holes for a listing to step
 * through (the directory's start moves past them), and a rename inside
 * the directory keeps the entry where it was. */
static void test_removals_from_the_front_and_renames_keep_listings(void **state)
{
    struct fixture *f = *state;
    struct meta_attr d;
    char name[32];
    char names[300][16];

    assert_int_equal(make(f, META_OP_MKDIR, 1, "front", 0755, &d), 0);
    for (unsigned i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "f%u", i);
        assert_int_equal(make(f, META_OP_MKNOD, d.ino, name, S_IFREG | 0644, NULL), 0);
    }
    for (unsigned i = 0; i < 150; i++) {
        snprintf(name, sizeof(name), "f%u", i);
        assert_int_equal(simple(f, META_OP_UNLINK, d.ino, name), 0);
    }
    assert_int_equal(ren(f, d.ino, "f150", d.ino, "g150", 0), 0);
    assert_int_equal(ren(f, d.ino, "f151", d.ino, "f152", RENAME_EXCHANGE), 0);
    for (unsigned i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "h%u", i);
        assert_int_equal(make(f, META_OP_MKNOD, d.ino, name, S_IFREG | 0644, NULL), 0);
    }
    assert_int_equal(list_all(f, d.ino, names, 300), 60);
    /* in creation order, the renamed ones where they were */
    assert_string_equal(names[0], "g150");
    assert_string_equal(names[1], "f152");
    assert_string_equal(names[2], "f151");
    assert_string_equal(names[3], "f153");
    assert_string_equal(names[49], "f199");
    assert_string_equal(names[59], "h9");
    struct meta_attr a;
    assert_int_equal(look(f, d.ino, "g150", &a), 0);
    assert_int_equal(look(f, d.ino, "f150", &a), -ENOENT);
    /* emptied from the front, then refilled */
    for (unsigned i = 0; i < 60; i++)
        assert_int_equal(simple(f, META_OP_UNLINK, d.ino, names[i]), 0);
    assert_int_equal(list_all(f, d.ino, names, 300), 0);
    assert_int_equal(make(f, META_OP_MKNOD, d.ino, "last", S_IFREG | 0644, NULL), 0);
    assert_int_equal(list_all(f, d.ino, names, 300), 1);
    assert_string_equal(names[0], "last");
}

static void test_readdir_needs_read_permission_and_a_dir(void **state)
{
    struct fixture *f = *state;
    struct meta_attr d;
    struct meta_attr file;
    struct meta_cmd cmd = {.op = META_OP_READDIR, .entry_cap = 4,
                           .cred = {.uid = 1000, .gid = 1000}};
    struct meta_reply r = {.entries = f->entries};

    assert_int_equal(make(f, META_OP_MKDIR, 1, "private", 0311, &d), 0);
    assert_int_equal(make(f, META_OP_MKNOD, 1, "plain", S_IFREG | 0644, &file), 0);
    cmd.ino = d.ino;
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), -EACCES);
    cmd.ino = file.ino;
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), -ENOTDIR);
    cmd.ino = 424242;
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), -ENOENT);
}

/* With META_READDIR_ATTRS each entry carries what a lookup of its name
 * answers: a file, a directory, a symlink, a second name of a file. */
static void test_readdir_attrs_are_what_lookup_answers(void **state)
{
    struct fixture *f = *state;
    struct meta_attr d;
    struct meta_attr a;
    struct meta_attr want;
    const char *names[] = {"file", "sub", "sym", "second"};

    assert_int_equal(make(f, META_OP_MKDIR, 1, "listed", 0755, &d), 0);
    assert_int_equal(make(f, META_OP_MKNOD, d.ino, "file", S_IFREG | 0640, &a), 0);
    assert_int_equal(make(f, META_OP_MKDIR, d.ino, "sub", 0700, NULL), 0);
    assert_int_equal(make(f, META_OP_SYMLINK, d.ino, "sym", 0777, NULL), 0);
    assert_int_equal(lnk(f, a.ino, d.ino, "second"), 0);
    struct meta_cmd cmd = {.op = META_OP_READDIR, .ino = d.ino, .entry_cap = 16,
                           .flags = META_READDIR_ATTRS};
    struct meta_reply r = {.entries = f->entries};
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), 0);
    assert_int_equal(r.entry_count, 4);
    for (unsigned i = 0; i < 4; i++) {
        assert_string_equal(r.entries[i].name, names[i]);
        assert_int_equal(look(f, d.ino, names[i], &want), 0);
        assert_memory_equal(&r.entries[i].attr, &want, sizeof(want));
    }
    assert_int_equal(r.entries[0].attr.nlink, 2);
    assert_int_equal(r.entries[3].attr.ino, a.ino);
    /* without the flag, no attributes; an unknown flag is refused */
    cmd.flags = 0;
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), 0);
    assert_int_equal(r.entries[0].attr.ino, 0);
    cmd.flags = 2;
    assert_int_equal(meta_shard_read(f->shard, &cmd, &r), -EINVAL);
    /* a directory one may read but not search: names, not attributes */
    struct meta_attr closed;
    assert_int_equal(make(f, META_OP_MKDIR, 1, "readable", 0744, &closed), 0);
    struct meta_cmd other = {.op = META_OP_READDIR, .ino = closed.ino, .entry_cap = 4,
                             .cred = {.uid = 1000, .gid = 1000}};
    assert_int_equal(meta_shard_read(f->shard, &other, &r), 0);
    other.flags = META_READDIR_ATTRS;
    assert_int_equal(meta_shard_read(f->shard, &other, &r), -EACCES);
}

/* ---- links, times -------------------------------------------------------------------------- */

static void test_hard_links_outlive_their_first_name(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;
    struct meta_attr b;

    assert_int_equal(make(f, META_OP_MKNOD, 1, "first", S_IFREG | 0644, &a), 0);
    assert_int_equal(lnk(f, a.ino, 1, "second"), 0);
    assert_int_equal(getattr(f, a.ino).nlink, 2);
    assert_int_equal(simple(f, META_OP_UNLINK, 1, "first"), 0);
    assert_int_equal(look(f, 1, "first", NULL), -ENOENT);
    assert_int_equal(look(f, 1, "second", &b), 0);
    assert_int_equal(b.ino, a.ino);
    assert_int_equal(b.nlink, 1);
    /* the inode can be renamed and linked again through its alias */
    assert_int_equal(ren(f, 1, "second", 1, "third", 0), 0);
    assert_int_equal(lnk(f, a.ino, 1, "fourth"), 0);
    assert_int_equal(getattr(f, a.ino).nlink, 2);
    /* renaming one name of an inode onto another is a no-op */
    assert_int_equal(ren(f, 1, "third", 1, "fourth", 0), 0);
    assert_int_equal(look(f, 1, "third", NULL), 0);
    assert_int_equal(simple(f, META_OP_UNLINK, 1, "third"), 0);
    assert_int_equal(simple(f, META_OP_UNLINK, 1, "fourth"), 0);
    struct meta_cmd ga = {.op = META_OP_GETATTR, .ino = a.ino};
    struct meta_reply r;
    assert_int_equal(meta_shard_read(f->shard, &ga, &r), -ENOENT);
    struct meta_shard_stats st;
    meta_shard_stats(f->shard, &st);
    assert_int_equal(st.inode_count, 1); /* the root */
    assert_int_equal(st.entry_count, 0);
}

static void test_times_follow_linux(void **state)
{
    struct fixture *f = *state;
    struct meta_attr d;
    struct meta_attr x;

    assert_int_equal(make(f, META_OP_MKDIR, 1, "t", 0755, &d), 0);
    int64_t made = f->now;
    assert_int_equal(d.atime_ns, made);
    assert_int_equal(d.mtime_ns, made);
    assert_int_equal(d.ctime_ns, made);
    assert_int_equal(getattr(f, 1).mtime_ns, made); /* the parent changed */
    assert_int_equal(make(f, META_OP_MKNOD, d.ino, "x", S_IFREG | 0644, &x), 0);
    assert_int_equal(getattr(f, d.ino).mtime_ns, f->now);
    /* a link changes the inode's ctime only */
    assert_int_equal(lnk(f, x.ino, 1, "x2"), 0);
    struct meta_attr now = getattr(f, x.ino);
    assert_int_equal(now.ctime_ns, f->now);
    assert_int_equal(now.mtime_ns, x.mtime_ns);
    /* explicit times, then ctime moves to the command's time */
    struct meta_cmd ut = {.op = META_OP_SETATTR, .ino = x.ino,
                          .set_mask = META_SET_ATIME | META_SET_MTIME,
                          .set = {.atime_ns = 111, .mtime_ns = 222}, .now_ns = ++f->now};
    struct meta_reply r;
    assert_int_equal(meta_shard_apply(f->shard, &ut, &r), 0);
    assert_int_equal(r.attr.atime_ns, 111);
    assert_int_equal(r.attr.mtime_ns, 222);
    assert_int_equal(r.attr.ctime_ns, f->now);
    /* truncation sets mtime and ctime */
    struct meta_cmd tr = {.op = META_OP_SETATTR, .ino = x.ino, .set_mask = META_SET_SIZE,
                          .set = {.size = 4096}, .now_ns = ++f->now};
    assert_int_equal(meta_shard_apply(f->shard, &tr, &r), 0);
    assert_int_equal(r.attr.size, 4096);
    assert_int_equal(r.attr.mtime_ns, f->now);
    assert_int_equal(r.attr.ctime_ns, f->now);
    /* a rename changes the moved inode's ctime and both parents' mtimes */
    assert_int_equal(ren(f, d.ino, "x", 1, "x3", 0), 0);
    assert_int_equal(getattr(f, x.ino).ctime_ns, f->now);
    assert_int_equal(getattr(f, d.ino).mtime_ns, f->now);
    assert_int_equal(getattr(f, 1).mtime_ns, f->now);
}

static void test_rename_directory_moves_parent_links(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;
    struct meta_attr b;

    assert_int_equal(make(f, META_OP_MKDIR, 1, "a", 0755, &a), 0);
    assert_int_equal(make(f, META_OP_MKDIR, 1, "b", 0755, &b), 0);
    assert_int_equal(make(f, META_OP_MKDIR, a.ino, "sub", 0755, NULL), 0);
    assert_int_equal(getattr(f, a.ino).nlink, 3);
    assert_int_equal(ren(f, a.ino, "sub", b.ino, "sub", 0), 0);
    assert_int_equal(getattr(f, a.ino).nlink, 2);
    assert_int_equal(getattr(f, b.ino).nlink, 3);
    /* into its own subtree: EINVAL; over a non-empty dir: ENOTEMPTY */
    assert_int_equal(ren(f, 1, "b", b.ino, "inner", 0), -EINVAL);
    assert_int_equal(make(f, META_OP_MKNOD, a.ino, "f", S_IFREG | 0644, NULL), 0);
    assert_int_equal(ren(f, 1, "b", 1, "a", 0), -ENOTEMPTY);
    assert_int_equal(ren(f, 1, "b", 1, "a", RENAME_NOREPLACE), -EEXIST);
    assert_int_equal(ren(f, 1, "b", 1, "zz", RENAME_EXCHANGE), -ENOENT);
    assert_int_equal(ren(f, 1, "b", 1, "a", RENAME_EXCHANGE | RENAME_NOREPLACE), -EINVAL);
    assert_int_equal(ren(f, 1, "b", 1, "a", RENAME_EXCHANGE), 0);
    assert_int_equal(look(f, 1, "a", &a), 0);
    assert_int_equal(a.ino, b.ino); /* swapped */
}

/* A rename's reply names the inode renamed, at its new ctime, so that a
 * mount whose kernel moved a name of it knows which file that was. */
static void test_rename_reply_names_the_renamed_inode(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;
    struct meta_reply r;

    assert_int_equal(make(f, META_OP_MKNOD, 1, "f", S_IFREG | 0644, &a), 0);
    struct meta_cmd cmd = {.op = META_OP_RENAME, .ino = 1, .name = "f", .name_len = 1,
                           .new_dir = 1, .new_name = "g", .new_name_len = 1, .now_ns = ++f->now};
    memset(&r, 0, sizeof(r));
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), 0);
    assert_int_equal(r.attr.ino, a.ino);
    assert_int_equal(r.attr.ctime_ns, f->now);
    /* two names of one inode: nothing changes, and the reply names it */
    assert_int_equal(lnk(f, a.ino, 1, "h"), 0);
    struct meta_cmd same = {.op = META_OP_RENAME, .ino = 1, .name = "g", .name_len = 1,
                            .new_dir = 1, .new_name = "h", .new_name_len = 1, .now_ns = ++f->now};
    memset(&r, 0, sizeof(r));
    assert_int_equal(meta_shard_apply(f->shard, &same, &r), 0);
    assert_int_equal(r.attr.ino, a.ino);
    assert_int_equal(r.attr.nlink, 2);
    /* an exchange names both files: each moved to the other's name */
    struct meta_attr b;
    assert_int_equal(make(f, META_OP_MKNOD, 1, "x", S_IFREG | 0600, &b), 0);
    struct meta_cmd swap = {.op = META_OP_RENAME, .ino = 1, .name = "h", .name_len = 1,
                            .new_dir = 1, .new_name = "x", .new_name_len = 1,
                            .flags = RENAME_EXCHANGE, .now_ns = ++f->now};
    memset(&r, 0, sizeof(r));
    assert_int_equal(meta_shard_apply(f->shard, &swap, &r), 0);
    assert_int_equal(r.attr.ino, a.ino);
    assert_int_equal(r.other.ino, b.ino);
    assert_int_equal(r.other.ctime_ns, f->now);
    assert_int_equal(r.other.mode, S_IFREG | 0600);
}

/* A link through a name a mount keeps is made only while the inode is as
 * the mount last knew it, so a name renamed away elsewhere cannot link. */
static void test_link_if_ctime_refuses_a_changed_inode(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;
    struct meta_attr now;
    struct meta_reply r;

    assert_int_equal(make(f, META_OP_MKNOD, 1, "a", S_IFREG | 0644, &a), 0);
    assert_int_equal(ren(f, 1, "a", 1, "b", 0), 0); /* elsewhere: ctime moves */
    struct meta_cmd cmd = {.op = META_OP_LINK, .ino = a.ino, .new_dir = 1, .new_name = "c",
                           .new_name_len = 1, .new_ino = f->next_ino++, .now_ns = ++f->now,
                           .if_ctime_ns = a.ctime_ns};
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), -ESTALE);
    assert_int_equal(look(f, 1, "c", &now), -ENOENT); /* nothing made */
    assert_int_equal(look(f, 1, "b", &now), 0);
    assert_int_equal(now.nlink, 1);
    /* as the inode is now: made */
    cmd.if_ctime_ns = now.ctime_ns;
    cmd.now_ns = ++f->now;
    memset(&r, 0, sizeof(r));
    assert_int_equal(meta_shard_apply(f->shard, &cmd, &r), 0);
    assert_int_equal(r.attr.nlink, 2);
    assert_int_equal(r.attr.ctime_ns, f->now);
}

static int xset(struct fixture *f, uint64_t ino, const char *name, uint32_t name_len,
                uint32_t value_len, uint32_t flags)
{
    static uint8_t value[META_XATTR_VALUE_MAX + 1];
    struct meta_cmd cmd = {.op = META_OP_SETXATTR, .ino = ino, .name = name, .name_len = name_len,
                           .value = value, .value_len = value_len, .flags = flags,
                           .now_ns = ++f->now};
    struct meta_reply r;

    memset(value, 'v', value_len);
    return meta_shard_apply(f->shard, &cmd, &r);
}

static void test_xattr_limits_and_flags(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;
    char name[META_XATTR_NAME_MAX + 2];

    assert_int_equal(make(f, META_OP_MKNOD, 1, "x", S_IFREG | 0644, &a), 0);
    memcpy(name, "user.", 5);
    memset(name + 5, 'n', sizeof(name) - 5);
    assert_int_equal(xset(f, a.ino, name, META_XATTR_NAME_MAX, 1, 0), 0);
    assert_int_equal(xset(f, a.ino, name, META_XATTR_NAME_MAX + 1, 1, 0), -ERANGE);
    assert_int_equal(xset(f, a.ino, "user.v", 6, META_XATTR_VALUE_MAX, 0), 0);
    assert_int_equal(xset(f, a.ino, "user.v", 6, META_XATTR_VALUE_MAX + 1, 0), -E2BIG);
    assert_int_equal(xset(f, a.ino, "user.v", 6, 3, 1 /* XATTR_CREATE */), -EEXIST);
    assert_int_equal(xset(f, a.ino, "user.w", 6, 3, 2 /* XATTR_REPLACE */), -ENODATA);
    assert_int_equal(xset(f, a.ino, "user.", 5, 3, 0), -EINVAL);
    assert_int_equal(xset(f, a.ino, "other.z", 7, 3, 0), -EOPNOTSUPP);
    assert_int_equal(xset(f, a.ino, "user.v", 6, 3, 4), -EINVAL);
    /* the whole inode holds at most META_XATTR_BYTES_MAX */
    char many[16];
    int rc = 0;
    for (unsigned i = 0; i < 10 && rc == 0; i++) {
        snprintf(many, sizeof(many), "user.m%u", i);
        rc = xset(f, a.ino, many, (uint32_t)strlen(many), META_XATTR_VALUE_MAX, 0);
    }
    assert_int_equal(rc, -ENOSPC);
    /* get: size 0 asks the size; too small a buffer is ERANGE */
    char buf[8];
    struct meta_cmd get = {.op = META_OP_GETXATTR, .ino = a.ino, .name = "user.v", .name_len = 6};
    struct meta_reply r = {.data = buf, .data_cap = 0};
    assert_int_equal(meta_shard_read(f->shard, &get, &r), 0);
    assert_int_equal(r.data_len, META_XATTR_VALUE_MAX);
    r.data_cap = sizeof(buf);
    assert_int_equal(meta_shard_read(f->shard, &get, &r), -ERANGE);
    struct meta_cmd rm = {.op = META_OP_REMOVEXATTR, .ino = a.ino, .name = "user.v", .name_len = 6,
                          .now_ns = ++f->now};
    assert_int_equal(meta_shard_apply(f->shard, &rm, &r), 0);
    assert_int_equal(meta_shard_apply(f->shard, &rm, &r), -ENODATA);
    assert_int_equal(getattr(f, a.ino).ctime_ns, f->now); /* the failed remove changed nothing */
}

static void test_xattr_out_of_memory_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;

    assert_int_equal(make(f, META_OP_MKDIR, 1, "xd", 0755, &a), 0);
    struct meta_cmd set = {.op = META_OP_SETXATTR, .ino = a.ino, .name = "user.k", .name_len = 6,
                           .value = "value", .value_len = 5, .now_ns = ++f->now};
    check_atomic(f, &set);
    set.value = "replaced-value";
    set.value_len = 14;
    set.now_ns = ++f->now;
    check_atomic(f, &set);
    struct meta_cmd rm = {.op = META_OP_REMOVEXATTR, .ino = a.ino, .name = "user.k",
                          .name_len = 6, .now_ns = ++f->now};
    check_atomic(f, &rm);
}

static int tracked(struct fixture *f, enum meta_op op, const char *name, uint64_t client,
                   uint64_t seq, uint64_t ack_below, int64_t now, struct meta_attr *out)
{
    struct meta_cmd cmd = {.op = op, .ino = 1, .name = name, .name_len = (uint32_t)strlen(name),
                           .mode = S_IFREG | 0644, .new_ino = f->next_ino++, .now_ns = now,
                           .client_id = client, .seq = seq, .ack_below = ack_below};
    struct meta_reply r;
    int rc = meta_shard_apply(f->shard, &cmd, &r);

    if (rc == 0 && out != NULL)
        *out = r.attr;
    return rc;
}

static void test_retry_applies_once_and_returns_first_answer(void **state)
{
    struct fixture *f = *state;
    struct meta_attr first;
    struct meta_attr again;
    struct meta_shard_stats st;

    struct meta_cmd probe = {.op = META_OP_MKNOD, .client_id = 7, .seq = 1};
    assert_false(meta_shard_is_answered(f->shard, &probe));
    assert_int_equal(tracked(f, META_OP_MKNOD, "once", 7, 1, 0, 100, &first), 0);
    assert_true(meta_shard_is_answered(f->shard, &probe)); /* a leader lets its retry in */
    probe.seq = 2;
    assert_false(meta_shard_is_answered(f->shard, &probe));
    probe.client_id = 0;
    assert_false(meta_shard_is_answered(f->shard, &probe));
    assert_int_equal(tracked(f, META_OP_MKNOD, "once", 7, 1, 0, 200, &again), 0);
    assert_int_equal(again.ino, first.ino); /* the first answer, not EEXIST */
    meta_shard_stats(f->shard, &st);
    assert_int_equal(st.entry_count, 1);
    /* another client is a different command */
    assert_int_equal(tracked(f, META_OP_MKNOD, "once", 8, 1, 0, 300, NULL), -EEXIST);
    /* a failure is remembered too: the retry does not see the new state */
    assert_int_equal(tracked(f, META_OP_UNLINK, "later", 7, 2, 0, 400, NULL), -ENOENT);
    assert_int_equal(make(f, META_OP_MKNOD, 1, "later", S_IFREG | 0644, NULL), 0);
    assert_int_equal(tracked(f, META_OP_UNLINK, "later", 7, 2, 0, 500, NULL), -ENOENT);
    /* once acknowledged, a seq is stale */
    assert_int_equal(tracked(f, META_OP_MKNOD, "third", 7, 3, 3, 600, NULL), 0);
    assert_int_equal(tracked(f, META_OP_MKNOD, "once", 7, 1, 0, 700, NULL), -ESTALE);
    assert_int_equal(tracked(f, META_OP_MKNOD, "bad", 7, 9, 10, 700, NULL), -EINVAL);
    assert_int_equal(tracked(f, META_OP_MKNOD, "bad", 7, 0, 0, 700, NULL), -EINVAL);
}

static void test_retry_table_is_bounded(void **state)
{
    struct fixture *f = *state;
    char name[32];

    /* one client: at most META_CLIENT_REPLIES_MAX unacknowledged */
    for (uint64_t seq = 1; seq <= META_CLIENT_REPLIES_MAX; seq++) {
        snprintf(name, sizeof(name), "u%llu", (unsigned long long)seq);
        assert_int_equal(tracked(f, META_OP_MKNOD, name, 5, seq, 1, 10, NULL), 0);
    }
    assert_int_equal(tracked(f, META_OP_MKNOD, "over", 5, 33, 1, 10, NULL), -EAGAIN);
    assert_int_equal(tracked(f, META_OP_MKNOD, "over", 5, 33, 2, 10, NULL), 0); /* acked one */
    /* the table: META_CLIENTS_MAX clients, then an idle one makes room */
    for (uint64_t c = 100; c < 100 + META_CLIENTS_MAX - 1; c++) {
        snprintf(name, sizeof(name), "c%llu", (unsigned long long)c);
        assert_int_equal(tracked(f, META_OP_MKNOD, name, c, 1, 0, 1000, NULL), 0);
    }
    assert_int_equal(tracked(f, META_OP_MKNOD, "full", 99999, 1, 0, 2000, NULL), -EAGAIN);
    int64_t later = 1000 + META_CLIENT_IDLE_NS;
    assert_int_equal(tracked(f, META_OP_MKNOD, "full", 99999, 1, 0, later, NULL), 0);
}

static void test_retry_never_remembers_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;
    int rc = -ENOMEM;

    for (unsigned n = 0; n < 32 && rc == -ENOMEM; n++) {
        ar_mem_fail_after(n, 1);
        rc = tracked(f, META_OP_MKNOD, "oom", 3, 1, 0, 50, &a);
        ar_mem_fail_after(0, 0);
    }
    assert_int_equal(rc, 0); /* an ENOMEM try was not taken for the answer */
    assert_int_equal(look(f, 1, "oom", NULL), 0);
}

static void test_statfs_counts_files_and_bytes(void **state)
{
    struct fixture *f = *state;
    struct meta_cmd st = {.op = META_OP_STATFS};
    struct meta_reply r;
    struct meta_attr a;
    struct meta_attr b;

    assert_int_equal(make(f, META_OP_MKNOD, 1, "a", S_IFREG | 0644, &a), 0);
    assert_int_equal(make(f, META_OP_MKNOD, 1, "b", S_IFREG | 0644, &b), 0);
    assert_int_equal(make(f, META_OP_SYMLINK, 1, "l", 0, NULL), 0); /* not file bytes */
    struct meta_cmd tr = {.op = META_OP_SETATTR, .ino = a.ino, .set_mask = META_SET_SIZE,
                          .set = {.size = 5000}, .now_ns = ++f->now};
    assert_int_equal(meta_shard_apply(f->shard, &tr, &r), 0);
    tr.ino = b.ino;
    tr.set.size = 700;
    assert_int_equal(meta_shard_apply(f->shard, &tr, &r), 0);
    tr.set.size = 300; /* shrink */
    assert_int_equal(meta_shard_apply(f->shard, &tr, &r), 0);
    assert_int_equal(meta_shard_read(f->shard, &st, &r), 0);
    assert_int_equal(r.files, 4); /* root, a, b, l */
    assert_int_equal(r.bytes, 5300);
    assert_int_equal(simple(f, META_OP_UNLINK, 1, "a"), 0);
    assert_int_equal(meta_shard_read(f->shard, &st, &r), 0);
    assert_int_equal(r.files, 3);
    assert_int_equal(r.bytes, 300);
}

static int hold(struct fixture *f, enum meta_op op, uint64_t session, uint64_t ino)
{
    struct meta_cmd cmd = {.op = op, .session = session, .ino = ino, .now_ns = ++f->now};
    struct meta_reply r;

    return meta_shard_apply(f->shard, &cmd, &r);
}

static void test_unlinked_open_file_lives_until_last_release(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;
    struct meta_shard_stats st;

    assert_int_equal(make(f, META_OP_MKNOD, 1, "open", S_IFREG | 0644, &a), 0);
    assert_int_equal(hold(f, META_OP_OPEN, 11, a.ino), 0);
    assert_int_equal(hold(f, META_OP_OPEN, 11, a.ino), 0); /* opened twice */
    assert_int_equal(hold(f, META_OP_OPEN, 12, a.ino), 0); /* by another mount */
    assert_int_equal(simple(f, META_OP_UNLINK, 1, "open"), 0);
    assert_int_equal(look(f, 1, "open", NULL), -ENOENT);
    struct meta_attr orphan = getattr(f, a.ino); /* fstat still works */
    assert_int_equal(orphan.nlink, 0);
    struct meta_cmd tr = {.op = META_OP_SETATTR, .ino = a.ino, .set_mask = META_SET_SIZE,
                          .set = {.size = 10}, .now_ns = ++f->now};
    struct meta_reply r;
    assert_int_equal(meta_shard_apply(f->shard, &tr, &r), 0); /* so does ftruncate */
    assert_int_equal(lnk(f, a.ino, 1, "back"), -ENOENT); /* no way back in */
    assert_int_equal(hold(f, META_OP_OPEN, 13, a.ino), -ENOENT);
    /* its holder may (a descriptor it has: /proc/self/fd) */
    assert_int_equal(hold(f, META_OP_OPEN, 11, a.ino), 0);
    assert_int_equal(hold(f, META_OP_RELEASE, 11, a.ino), 0);
    assert_int_equal(hold(f, META_OP_RELEASE, 11, a.ino), 0);
    assert_int_equal(hold(f, META_OP_RELEASE, 11, a.ino), 0);
    assert_int_equal(hold(f, META_OP_RELEASE, 11, a.ino), -EBADF);
    assert_int_equal(getattr(f, a.ino).size, 10); /* session 12 still holds it */
    assert_int_equal(hold(f, META_OP_SESSION_CLOSE, 12, 0), 0); /* its mount expired */
    struct meta_cmd ga = {.op = META_OP_GETATTR, .ino = a.ino};
    assert_int_equal(meta_shard_read(f->shard, &ga, &r), -ENOENT);
    meta_shard_stats(f->shard, &st);
    assert_int_equal(st.inode_count, 1);
    assert_int_equal(hold(f, META_OP_OPEN, 0, 1), -EINVAL); /* session 0 is none */
}

static void test_removed_open_directory_takes_no_names(void **state)
{
    struct fixture *f = *state;
    struct meta_attr d;

    assert_int_equal(make(f, META_OP_MKDIR, 1, "gone", 0755, &d), 0);
    assert_int_equal(hold(f, META_OP_OPEN, 5, d.ino), 0);
    assert_int_equal(simple(f, META_OP_RMDIR, 1, "gone"), 0);
    assert_int_equal(getattr(f, 1).nlink, 2);
    assert_int_equal(getattr(f, d.ino).nlink, 0);
    assert_int_equal(make(f, META_OP_MKNOD, d.ino, "x", S_IFREG | 0644, NULL), -ENOENT);
    assert_int_equal(hold(f, META_OP_RELEASE, 5, d.ino), 0);
    struct meta_cmd ga = {.op = META_OP_GETATTR, .ino = d.ino};
    struct meta_reply r;
    assert_int_equal(meta_shard_read(f->shard, &ga, &r), -ENOENT);
}

/* A FUSE create: MKNOD with a session makes the file and opens it for the
 * session in one command, as MKNOD then OPEN would. */
static void test_create_with_session_holds_the_file(void **state)
{
    struct fixture *f = *state;
    struct meta_reply r;
    struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = "c", .name_len = 1,
                          .mode = S_IFREG | 0644, .session = 21, .new_ino = f->next_ino++,
                          .now_ns = ++f->now};

    check_atomic(f, &mk); /* out of memory at any point: nothing made, nothing held */
    uint64_t ino = mk.new_ino;
    assert_int_equal(look(f, 1, "c", NULL), 0);
    assert_int_equal(simple(f, META_OP_UNLINK, 1, "c"), 0);
    assert_int_equal(getattr(f, ino).nlink, 0); /* held: an orphan, still there */
    assert_int_equal(hold(f, META_OP_RELEASE, 21, ino), 0);
    struct meta_cmd ga = {.op = META_OP_GETATTR, .ino = ino};
    assert_int_equal(meta_shard_read(f->shard, &ga, &r), -ENOENT); /* its last hold went */
    assert_int_equal(hold(f, META_OP_RELEASE, 21, ino), -ENOENT);

    /* only a regular file is made open; anything else is refused whole */
    uint64_t before = meta_shard_hash(f->shard);
    struct meta_cmd fifo = mk;
    fifo.mode = S_IFIFO | 0644;
    fifo.new_ino = f->next_ino++;
    assert_int_equal(meta_shard_apply(f->shard, &fifo, &r), -EINVAL);
    struct meta_cmd dir = mk;
    dir.op = META_OP_MKDIR;
    dir.mode = 0755;
    dir.new_ino = f->next_ino++;
    assert_int_equal(meta_shard_apply(f->shard, &dir, &r), -EINVAL);
    assert_int_equal(meta_shard_hash(f->shard), before);
    assert_int_equal(look(f, 1, "c", NULL), -ENOENT);

    /* the same state as MKNOD then OPEN */
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755, .created_ns = 1};
    struct meta_shard *one = NULL;
    struct meta_shard *two = NULL;
    assert_int_equal(meta_shard_new(&cfg, &one), 0);
    assert_int_equal(meta_shard_new(&cfg, &two), 0);
    mk.new_ino = 500;
    assert_int_equal(meta_shard_apply(one, &mk, &r), 0);
    struct meta_cmd plain = mk;
    plain.session = 0;
    assert_int_equal(meta_shard_apply(two, &plain, &r), 0);
    assert_true(meta_shard_hash(one) != meta_shard_hash(two)); /* the hold is state */
    struct meta_cmd open = {.op = META_OP_OPEN, .ino = 500, .session = 21, .now_ns = mk.now_ns};
    assert_int_equal(meta_shard_apply(two, &open, &r), 0);
    assert_true(meta_shard_hash(one) == meta_shard_hash(two));
    meta_shard_free(one);
    meta_shard_free(two);
}

static void test_holds_out_of_memory_change_nothing(void **state)
{
    struct fixture *f = *state;
    struct meta_attr a;

    assert_int_equal(make(f, META_OP_MKNOD, 1, "h", S_IFREG | 0644, &a), 0);
    for (uint64_t session = 1; session <= 100; session++) {
        struct meta_cmd op = {.op = META_OP_OPEN, .session = session, .ino = a.ino,
                              .now_ns = ++f->now};
        check_atomic(f, &op);
    }
    struct meta_cmd un = {.op = META_OP_UNLINK, .ino = 1, .name = "h", .name_len = 1,
                          .now_ns = ++f->now};
    check_atomic(f, &un);
    struct meta_cmd cl = {.op = META_OP_SESSION_CLOSE, .session = 50, .now_ns = ++f->now};
    check_atomic(f, &cl);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_name_limits_hold_at_limit_plus_one),
        T(test_symlink_target_limits),
        T(test_link_count_limit_is_emlink),
        T(test_wrong_op_kind_and_bad_op_are_einval),
        T(test_out_of_memory_changes_nothing),
        T(test_same_commands_give_same_state),
        T(test_hash_ignores_how_the_state_was_reached),
        T(test_readdir_cookies_survive_changes_between_pages),
        T(test_removals_from_the_front_and_renames_keep_listings),
        T(test_readdir_needs_read_permission_and_a_dir),
        T(test_readdir_attrs_are_what_lookup_answers),
        T(test_hard_links_outlive_their_first_name),
        T(test_times_follow_linux),
        T(test_rename_directory_moves_parent_links),
        T(test_rename_reply_names_the_renamed_inode),
        T(test_link_if_ctime_refuses_a_changed_inode),
        T(test_xattr_limits_and_flags),
        T(test_xattr_out_of_memory_changes_nothing),
        T(test_retry_applies_once_and_returns_first_answer),
        T(test_create_with_session_holds_the_file),
        T(test_retry_table_is_bounded),
        T(test_retry_never_remembers_out_of_memory),
        T(test_statfs_counts_files_and_bytes),
        T(test_unlinked_open_file_lives_until_last_release),
        T(test_removed_open_directory_takes_no_names),
        T(test_holds_out_of_memory_change_nothing),
    };
#undef T
    return cmocka_run_group_tests_name("test_ops", tests, NULL, NULL);
}
