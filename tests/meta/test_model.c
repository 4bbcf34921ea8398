/* tests/meta/test_model.c - the shard state machine against Linux itself.
 * Goal: for any sequence of namespace operations by any user, the state
 * machine gives the same result and errno as the kernel on a real directory,
 * and ends with the same tree.
 * Method: seeded random sequences (bounded in count) of mkdir, mknod,
 * symlink, link, unlink, rmdir, rename (with flags), chmod, chown, truncate,
 * utimens and access, each run as root or as one of two users who share a
 * group, both through syscalls (setfsuid/setfsgid/setgroups) in a scratch
 * directory and through meta_shard_apply(). After every step the two trees
 * are compared: type, mode, owner, group, link count, size, symlink target,
 * listings, and which names share an inode. A mismatch prints the seed and
 * the step; ARBOR_MODEL_SEED=N replays one seed. Needs root (for the ids). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "../objstore/harness.h"
#include "limits.h"
#include "meta.h"

#define SEEDS        400u
#define STEPS        250u
#define PATHS_MAX    512u
#define NAMES        "abcdef"

struct model_user {
    uint32_t uid;
    uint32_t gid;
    uint32_t group_count;
    uint32_t groups[2];
};

static const struct model_user users[] = {
    {0, 0, 0, {0}},
    {1000, 1000, 1, {1000}},
    {1001, 1001, 2, {1001, 1000}},
};

struct entry {
    char path[256]; /* relative to the root, "" for the root */
    bool is_dir;
    bool is_link;
};

struct model {
    char root[256];
    struct meta_shard *shard;
    uint64_t rng;
    uint64_t next_ino;
    int64_t now;
    struct entry paths[PATHS_MAX];
    unsigned path_count;
    struct meta_dirent dirents[META_READDIR_MAX];
    char log[64][160]; /* the last steps, printed on a mismatch */
    char xattr_buf[256];
    unsigned step;
    uint64_t seed;
};

static uint64_t rnd(struct model *m, uint64_t n)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng % n;
}

/* ---- acting as a user ------------------------------------------------------- */

static void become(const struct model_user *u)
{
    gid_t groups[2] = {u->groups[0], u->groups[1]};

    setfsuid(0);
    setfsgid(0);
    assert_int_equal(setgroups(u->group_count, groups), 0);
    setfsgid(u->gid);
    setfsuid(u->uid);
}

static void cred_of(const struct model_user *u, struct meta_cred *c)
{
    memset(c, 0, sizeof(*c));
    c->uid = u->uid;
    c->gid = u->gid;
    c->group_count = u->group_count;
    memcpy(c->groups, u->groups, sizeof(u->groups));
}

/* ---- the state machine side: walk a path as a user ---------------------------- */

/* Resolve all but the last component of path as cred; give the parent's
 * ino and the last name. 0 or the walk's errno. */
static int sm_walk(struct model *m, const char *path, const struct meta_cred *cred,
                   uint64_t *parent, const char **last)
{
    char comp[256];
    const char *p = path;
    uint64_t dir = 1;

    for (;;) {
        const char *slash = strchr(p, '/');
        if (slash == NULL) {
            *parent = dir;
            *last = p;
            return 0;
        }
        memcpy(comp, p, (size_t)(slash - p));
        struct meta_cmd cmd = {.op = META_OP_LOOKUP, .cred = *cred, .ino = dir,
                               .name = comp, .name_len = (uint32_t)(slash - p)};
        struct meta_reply r;
        int rc = meta_shard_read(m->shard, &cmd, &r);
        if (rc != 0)
            return rc;
        if (!S_ISDIR(r.attr.mode))
            return -ENOTDIR;
        dir = r.attr.ino;
        p = slash + 1;
    }
}

static int sm_stat(struct model *m, const char *path, struct meta_attr *out)
{
    struct meta_cred root = {0};
    uint64_t parent;
    const char *last;
    struct meta_reply r;
    int rc;

    if (path[0] == '\0') {
        struct meta_cmd cmd = {.op = META_OP_GETATTR, .ino = 1};
        rc = meta_shard_read(m->shard, &cmd, &r);
    } else {
        rc = sm_walk(m, path, &root, &parent, &last);
        struct meta_cmd cmd = {.op = META_OP_LOOKUP, .ino = parent, .name = last,
                               .name_len = (uint32_t)strlen(last)};
        if (rc == 0)
            rc = meta_shard_read(m->shard, &cmd, &r);
    }
    if (rc == 0)
        *out = r.attr;
    return rc;
}

/* ---- the tree, seen from both sides ------------------------------------------------ */

/* Collect every path below the real root, breadth first, as root. */
static void collect(struct model *m)
{
    become(&users[0]);
    m->path_count = 1;
    memset(&m->paths[0], 0, sizeof(m->paths[0]));
    m->paths[0].is_dir = true;
    for (unsigned i = 0; i < m->path_count; i++) {
        char full[600];
        if (!m->paths[i].is_dir)
            continue;
        snprintf(full, sizeof(full), "%s/%s", m->root, m->paths[i].path);
        DIR *d = opendir(full);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d)) != NULL && m->path_count < PATHS_MAX) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char parent[256];
            memcpy(parent, m->paths[i].path, sizeof(parent));
            struct entry *e = &m->paths[m->path_count++];
            snprintf(e->path, sizeof(e->path), "%s%s%s", parent, parent[0] ? "/" : "",
                     de->d_name);
            e->is_dir = de->d_type == DT_DIR;
            e->is_link = de->d_type == DT_LNK;
        }
        closedir(d);
    }
}

static void mismatch(struct model *m, const char *what)
{
    unsigned from = m->step >= 64 ? m->step - 63 : 0;

    fprintf(stderr, "model mismatch, seed %llu step %u: %s\nlast steps:\n",
            (unsigned long long)m->seed, m->step, what);
    for (unsigned i = from; i <= m->step; i++) {
        fprintf(stderr, "  %u: %s\n", i, m->log[i % 64]);
    }
    fprintf(stderr, "replay: ARBOR_MODEL_SEED=%llu\n", (unsigned long long)m->seed);
    fail_msg("state machine and kernel disagree");
}

static void compare_listing(struct model *m, const struct entry *e, const struct meta_attr *a)
{
    struct meta_cmd cmd = {.op = META_OP_READDIR, .ino = a->ino, .entry_cap = 7};
    unsigned sm_count = 0;
    unsigned fs_count = 0;

    /* page through in sevens, so cookies are used */
    for (unsigned pages = 0; pages < 100; pages++) {
        struct meta_reply r = {.entries = m->dirents};
        assert_int_equal(meta_shard_read(m->shard, &cmd, &r), 0);
        for (unsigned i = 0; i < r.entry_count; i++) {
            char child[600];
            struct stat st;
            snprintf(child, sizeof(child), "%s/%s%s%s", m->root, e->path, e->path[0] ? "/" : "",
                     r.entries[i].name);
            if (lstat(child, &st) != 0 || (st.st_mode & S_IFMT) != r.entries[i].type)
                mismatch(m, child);
            cmd.cookie = r.entries[i].cookie;
        }
        sm_count += r.entry_count;
        if (r.is_end)
            break;
    }
    for (unsigned i = 0; i < m->path_count; i++) {
        const char *p = m->paths[i].path;
        size_t n = strlen(e->path);
        if (i > 0 && strncmp(p, e->path, n) == 0 && (n == 0 || p[n] == '/') &&
            strchr(p + n + (n > 0), '/') == NULL)
            fs_count++;
    }
    if (sm_count != fs_count)
        mismatch(m, "directory listing sizes differ");
}

/* The xattrs of a path, seen as root: the same names with the same values. */
static void compare_xattrs(struct model *m, const char *full, const struct meta_attr *a)
{
    char names[1024];
    char sm_names[1024];
    ssize_t n = llistxattr(full, names, sizeof(names));
    struct meta_cmd cmd = {.op = META_OP_LISTXATTR, .ino = a->ino};
    struct meta_reply r = {.data = sm_names, .data_cap = sizeof(sm_names)};

    assert_true(n >= 0);
    if (meta_shard_read(m->shard, &cmd, &r) != 0 || r.data_len != (uint32_t)n)
        mismatch(m, "xattr list length");
    for (ssize_t off = 0; off < n; off += (ssize_t)strlen(names + off) + 1) {
        char v1[256];
        char v2[256];
        ssize_t l1 = lgetxattr(full, names + off, v1, sizeof(v1));
        struct meta_cmd get = {.op = META_OP_GETXATTR, .ino = a->ino, .name = names + off,
                               .name_len = (uint32_t)strlen(names + off)};
        struct meta_reply gr = {.data = v2, .data_cap = sizeof(v2)};
        if (l1 < 0 || meta_shard_read(m->shard, &get, &gr) != 0 || gr.data_len != (uint32_t)l1 ||
            memcmp(v1, v2, (size_t)l1) != 0)
            mismatch(m, "xattr value in tree");
    }
}

static void compare_trees(struct model *m)
{
    collect(m);
    for (unsigned i = 0; i < m->path_count; i++) {
        const struct entry *e = &m->paths[i];
        char full[600];
        char what[700];
        struct stat st;
        struct meta_attr a;
        snprintf(full, sizeof(full), "%s/%s", m->root, e->path);
        assert_int_equal(lstat(full, &st), 0);
        snprintf(what, sizeof(what), "path '%s'", e->path);
        if (sm_stat(m, e->path, &a) != 0)
            mismatch(m, what);
        if (a.mode != st.st_mode || a.uid != st.st_uid || a.gid != st.st_gid ||
            a.nlink != st.st_nlink || (!S_ISDIR(a.mode) && a.size != (uint64_t)st.st_size)) {
            snprintf(what, sizeof(what),
                     "'%s': mode %o/%o uid %u/%u gid %u/%u nlink %u/%u size %llu/%lld (sm/fs)",
                     e->path, a.mode, st.st_mode, a.uid, st.st_uid, a.gid, st.st_gid, a.nlink,
                     (unsigned)st.st_nlink, (unsigned long long)a.size, (long long)st.st_size);
            mismatch(m, what);
        }
        if (S_ISLNK(a.mode)) {
            char target[4096];
            ssize_t n = readlink(full, target, sizeof(target) - 1);
            struct meta_cmd cmd = {.op = META_OP_READLINK, .ino = a.ino};
            struct meta_reply r;
            assert_true(n > 0);
            target[n] = '\0';
            if (meta_shard_read(m->shard, &cmd, &r) != 0 || strcmp(r.target, target) != 0)
                mismatch(m, "symlink target");
        }
        if (S_ISDIR(a.mode))
            compare_listing(m, e, &a);
        compare_xattrs(m, full, &a);
        /* names that share an inode on one side share it on the other */
        for (unsigned k = 0; k < i; k++) {
            char other[600];
            struct stat st2;
            struct meta_attr a2;
            snprintf(other, sizeof(other), "%s/%s", m->root, m->paths[k].path);
            if (lstat(other, &st2) != 0 || sm_stat(m, m->paths[k].path, &a2) != 0)
                mismatch(m, "path vanished");
            if ((st2.st_ino == st.st_ino) != (a2.ino == a.ino))
                mismatch(m, "hard-link partition");
        }
    }
}

/* ---- one random step ------------------------------------------------------------------ */

static void pick_name(struct model *m, char *out, size_t cap)
{
    const struct entry *dir;

    do {
        dir = &m->paths[rnd(m, m->path_count)];
    } while (!dir->is_dir);
    snprintf(out, cap, "%s%s%c", dir->path, dir->path[0] ? "/" : "", NAMES[rnd(m, 6)]);
}

static const char *pick_path(struct model *m, char *buf, size_t cap)
{
    /* mostly existing paths (not the root), sometimes a fresh name */
    if (m->path_count > 1 && rnd(m, 4) != 0)
        return m->paths[1 + rnd(m, m->path_count - 1)].path;
    pick_name(m, buf, cap);
    return buf;
}

static bool is_link_path(const struct model *m, const char *path)
{
    for (unsigned i = 0; i < m->path_count; i++) {
        if (strcmp(m->paths[i].path, path) == 0)
            return m->paths[i].is_link;
    }
    return false;
}

/* Explicit times set on path a (fa in the kernel's tree) read back the
 * same from both. */
static void times_agree(struct model *m, const char *a, const char *fa)
{
    struct meta_attr at;
    struct stat st;

    lstat(fa, &st);
    if (sm_stat(m, a, &at) != 0 ||
        at.mtime_ns != st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec ||
        at.atime_ns != st.st_atim.tv_sec * 1000000000LL + st.st_atim.tv_nsec)
        mismatch(m, "explicit times");
}

/* The ops that make or take names (0 mkdir, 1 mknod, 2 symlink, 3 unlink
 * or rmdir, 4 link, 5 rename) on the kernel, cmd made ready for the state
 * machine (a link takes its source by inode). Returns the kernel's rc. */
static int step_name(struct model *m, unsigned op, const char *fa, const char *fb,
                     uint32_t mode, uint64_t source, struct meta_cmd *cmd)
{
    static const uint32_t flags[] = {0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE};

    switch (op) {
    case 0:
        cmd->op = META_OP_MKDIR;
        cmd->mode = S_IFDIR | mode;
        return mkdir(fa, mode) == 0 ? 0 : -errno;
    case 1: /* a regular file or a fifo */
        cmd->op = META_OP_MKNOD;
        cmd->mode = (rnd(m, 4) == 0 ? S_IFIFO : S_IFREG) | (mode & 07777);
        return mknod(fa, cmd->mode, 0) == 0 ? 0 : -errno;
    case 2:
        cmd->op = META_OP_SYMLINK;
        cmd->target = rnd(m, 2) ? "target/x" : "../y";
        cmd->target_len = (uint32_t)strlen(cmd->target);
        return symlink(cmd->target, fa) == 0 ? 0 : -errno;
    case 3:
        cmd->op = rnd(m, 2) ? META_OP_UNLINK : META_OP_RMDIR;
        return (cmd->op == META_OP_UNLINK ? unlink(fa) : rmdir(fa)) == 0 ? 0 : -errno;
    case 4:
        cmd->op = META_OP_LINK;
        cmd->ino = source;
        return link(fa, fb) == 0 ? 0 : -errno;
    default: /* with a flag now and then */
        cmd->op = META_OP_RENAME;
        cmd->flags = flags[rnd(m, 4)];
        return renameat2(AT_FDCWD, fa, AT_FDCWD, fb, cmd->flags) == 0 ? 0 : -errno;
    }
}

/* The attribute ops (6 chmod, 7 chown, 8 truncate, 9-10 utimens, 11-12
 * access) on the kernel (*fs_rc) and made ready for the state machine:
 * cmd takes the inode, looked up as the user (*sm_rc: that lookup). */
static void step_attr(struct model *m, unsigned *op, const char *a, const char *fa,
                      uint32_t mode, struct meta_cmd *cmd, uint64_t pa, const char *la,
                      int *sm_rc, int *fs_rc)
{
    if (is_link_path(m, a) && *op != 7 && *op != 9) {
        *op = 12; /* access does not follow symlinks with AT_SYMLINK_NOFOLLOW */
    }
    cmd->op = META_OP_SETATTR;
    if (*op == 6) {
        cmd->set_mask = META_SET_MODE;
        cmd->set.mode = mode;
        *fs_rc = chmod(fa, mode) == 0 ? 0 : -errno;
    } else if (*op == 7) {
        static const uint32_t ids[] = {0, 1000, 1001};
        bool both = rnd(m, 2);
        cmd->set.uid = ids[rnd(m, 3)];
        cmd->set.gid = ids[rnd(m, 3)];
        cmd->set_mask = META_SET_GID | (both ? META_SET_UID : 0);
        *fs_rc = lchown(fa, both ? cmd->set.uid : (uid_t)-1, cmd->set.gid) == 0 ? 0 : -errno;
    } else if (*op == 8) {
        cmd->set_mask = META_SET_SIZE;
        cmd->set.size = rnd(m, 3) * 1000;
        *fs_rc = truncate(fa, (off_t)cmd->set.size) == 0 ? 0 : -errno;
    } else if (*op == 9 || *op == 10) {
        struct timespec ts[2];
        if (*op == 9) {
            ts[0] = (struct timespec){.tv_sec = 1000 + (time_t)rnd(m, 9), .tv_nsec = 5};
            ts[1] = (struct timespec){.tv_sec = 2000, .tv_nsec = 7};
            cmd->set_mask = META_SET_ATIME | META_SET_MTIME;
            cmd->set.atime_ns = ts[0].tv_sec * 1000000000LL + 5;
            cmd->set.mtime_ns = 2000 * 1000000000LL + 7;
        } else {
            ts[0] = (struct timespec){.tv_nsec = UTIME_NOW};
            ts[1] = (struct timespec){.tv_nsec = UTIME_NOW};
            cmd->set_mask = META_SET_ATIME_NOW | META_SET_MTIME_NOW;
        }
        *fs_rc = utimensat(AT_FDCWD, fa, ts, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
    } else {
        static const int masks[] = {F_OK, R_OK, W_OK, X_OK, R_OK | W_OK, R_OK | X_OK};
        int mask = masks[rnd(m, 6)];
        *fs_rc = faccessat(AT_FDCWD, fa, mask, AT_EACCESS | AT_SYMLINK_NOFOLLOW) == 0 ? 0
                                                                                      : -errno;
        cmd->op = META_OP_ACCESS;
        cmd->flags = (uint32_t)mask;
    }
    if (*sm_rc == 0) { /* setattr and access take the inode: resolve it as the user */
        struct meta_cmd look = {.op = META_OP_LOOKUP, .cred = cmd->cred, .ino = pa,
                                .name = la, .name_len = cmd->name_len};
        struct meta_reply lr;
        *sm_rc = meta_shard_read(m->shard, &look, &lr);
        cmd->ino = *sm_rc == 0 ? lr.attr.ino : 0;
    }
}

/* The xattr ops (13 set, 14 get, 15 remove, 16 list) on the kernel as
 * user u, then on the state machine; sizes and values compared. */
static void step_xattr(struct model *m, const struct model_user *u, unsigned op,
                       const char *fa, struct meta_cmd *cmd, struct meta_reply *r, uint64_t pa,
                       const char *la, int *sm_rc, int *fs_rc)
{
    static const char *const xnames[] = {"user.a", "user.b", "trusted.t", "bogus.z", "user."};
    static const int xflags[] = {0, 0, XATTR_CREATE, XATTR_REPLACE};
    const char *xn = xnames[rnd(m, 5)];
    /* setfsuid keeps CAP_SYS_ADMIN, so the kernel would let our "users"
     * write trusted.*: only root tries it here */
    if (u->uid != 0 && xn[0] == 't')
        xn = "user.a";
    char value[32];
    char got[256];
    int vlen = snprintf(value, sizeof(value), "v%u", (unsigned)rnd(m, 1000));
    ssize_t n = 0;
    cmd->name = xn;
    cmd->name_len = (uint32_t)strlen(xn);
    r->data = m->xattr_buf;
    if (op == 13) {
        cmd->op = META_OP_SETXATTR;
        cmd->flags = (uint32_t)xflags[rnd(m, 4)];
        cmd->value = value;
        cmd->value_len = (uint32_t)vlen;
        *fs_rc = lsetxattr(fa, xn, value, (size_t)vlen, (int)cmd->flags) == 0 ? 0 : -errno;
    } else if (op == 14) {
        cmd->op = META_OP_GETXATTR;
        r->data_cap = rnd(m, 3) == 0 ? 0 : (rnd(m, 2) ? sizeof(m->xattr_buf) : 1);
        n = lgetxattr(fa, xn, r->data_cap ? got : NULL, r->data_cap);
        *fs_rc = n >= 0 ? 0 : -errno;
    } else if (op == 15) {
        cmd->op = META_OP_REMOVEXATTR;
        *fs_rc = lremovexattr(fa, xn) == 0 ? 0 : -errno;
    } else {
        cmd->op = META_OP_LISTXATTR;
        r->data_cap = rnd(m, 2) ? sizeof(m->xattr_buf) : 0;
        n = llistxattr(fa, got, sizeof(got));
        *fs_rc = n >= 0 ? 0 : -errno;
        /* the kernel shows trusted.* to a process that kept CAP_SYS_ADMIN,
         * as ours does under setfsuid; arbor shows them to root only */
        ssize_t kept = 0;
        for (ssize_t off = 0; u->uid != 0 && off < n; off += (ssize_t)strlen(got + off) + 1) {
            if (strncmp(got + off, "trusted.", 8) != 0) {
                memmove(got + kept, got + off, strlen(got + off) + 1);
                kept += (ssize_t)strlen(got + kept) + 1;
            }
        }
        if (u->uid != 0 && n >= 0)
            n = kept;
    }
    become(&users[0]);
    if (*sm_rc == 0) {
        struct meta_cmd look = {.op = META_OP_LOOKUP, .cred = cmd->cred, .ino = pa, .name = la,
                                .name_len = (uint32_t)strlen(la)};
        struct meta_reply lr;
        *sm_rc = meta_shard_read(m->shard, &look, &lr);
        cmd->ino = *sm_rc == 0 ? lr.attr.ino : 0;
    }
    if (*sm_rc == 0)
        *sm_rc = op == 14 || op == 16 ? meta_shard_read(m->shard, cmd, r)
                                     : meta_shard_apply(m->shard, cmd, r);
    if (*sm_rc == 0 && *fs_rc == 0 && (op == 14 || op == 16) && (size_t)n != r->data_len)
        mismatch(m, "xattr size");
    if (*sm_rc == 0 && *fs_rc == 0 && op == 14 && r->data_cap > 0 &&
        memcmp(got, m->xattr_buf, (size_t)n) != 0)
        mismatch(m, "xattr value");
}

/* Run one name-taking op on both sides; returns nothing, checks the errnos. */
static void step(struct model *m)
{
    static const uint32_t modes[] = {0777, 0755, 0700, 0770, 0750, 0644, 0600, 0640,
                                     01777, 02775, 02755, 04755, 0000, 0311, 0555, 06777};
    const struct model_user *u = &users[rnd(m, 3)];
    char a_buf[300];
    char b_buf[300];
    const char *a = pick_path(m, a_buf, sizeof(a_buf));
    const char *b = pick_path(m, b_buf, sizeof(b_buf));
    char fa[700];
    char fb[700];
    struct meta_cmd cmd = {0};
    struct meta_reply r = {0};
    uint64_t pa = 0;
    uint64_t pb = 0;
    const char *la = NULL;
    const char *lb = NULL;
    int fs_rc = 0;
    int sm_rc;
    unsigned op = (unsigned)rnd(m, 17);
    uint32_t mode = modes[rnd(m, 16)];

    snprintf(fa, sizeof(fa), "%s/%s", m->root, a);
    snprintf(fb, sizeof(fb), "%s/%s", m->root, b);
    cred_of(u, &cmd.cred);
    cmd.now_ns = ++m->now;
    cmd.new_ino = m->next_ino++;
    sm_rc = sm_walk(m, a, &cmd.cred, &pa, &la);
    /* link resolves its whole source before the target's directory; rename
     * walks both directories first (do_linkat(), do_renameat2()) */
    uint64_t source = 0;
    if (sm_rc == 0 && op == 4) {
        struct meta_cmd look = {.op = META_OP_LOOKUP, .cred = cmd.cred, .ino = pa, .name = la,
                                .name_len = (uint32_t)strlen(la)};
        struct meta_reply lr;
        sm_rc = meta_shard_read(m->shard, &look, &lr);
        source = sm_rc == 0 ? lr.attr.ino : 0;
    }
    if (sm_rc == 0 && (op == 4 || op == 5))
        sm_rc = sm_walk(m, b, &cmd.cred, &pb, &lb);
    cmd.ino = pa;
    cmd.name = la;
    cmd.name_len = la != NULL ? (uint32_t)strlen(la) : 0;
    cmd.new_dir = pb;
    cmd.new_name = lb;
    cmd.new_name_len = lb != NULL ? (uint32_t)strlen(lb) : 0;
    snprintf(m->log[m->step % 64], sizeof(m->log[0]), "uid %u op %u mode %o a '%s' b '%s'",
             u->uid, op, mode, a, b);

    become(u);
    if (op <= 5)
        fs_rc = step_name(m, op, fa, fb, mode, source, &cmd);
    else if (op <= 12) /* 6 chmod, not through a symlink, which it would follow */
        step_attr(m, &op, a, fa, mode, &cmd, pa, la, &sm_rc, &fs_rc);
    if (op >= 13)
        step_xattr(m, u, op, fa, &cmd, &r, pa, la, &sm_rc, &fs_rc);
    become(&users[0]);
    if (sm_rc == 0 && op < 13) {
        sm_rc = cmd.op == META_OP_ACCESS ? meta_shard_read(m->shard, &cmd, &r)
                                         : meta_shard_apply(m->shard, &cmd, &r);
    }
    if (sm_rc != fs_rc) {
        char what[300];
        snprintf(what, sizeof(what), "errno: kernel %d (%s), state machine %d (%s)", fs_rc,
                 strerror(-fs_rc), sm_rc, strerror(-sm_rc));
        mismatch(m, what);
    }
    if (fs_rc == 0 && op == 9)
        times_agree(m, a, fa);
}

static void run_seed(uint64_t seed)
{
    struct model *m = calloc(1, sizeof(*m));
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0777};

    assert_non_null(m);
    m->seed = seed;
    m->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    m->next_ino = 100;
    harness_tmpdir(m->root);
    assert_int_equal(chmod(m->root, 0777), 0);
    assert_int_equal(meta_shard_new(&cfg, &m->shard), 0);
    collect(m);
    for (m->step = 0; m->step < STEPS; m->step++) {
        step(m);
        compare_trees(m);
    }
    become(&users[0]);
    meta_shard_free(m->shard);
    harness_rm_rf(m->root);
    free(m);
}

static void test_model_random_sequences_match_linux(void **state)
{
    const char *one = getenv("ARBOR_MODEL_SEED");

    (void)state;
    if (geteuid() != 0)
        skip(); /* acting as other users needs root */
    umask(0); /* the kernel applies the umask before a request reaches arbor */
    if (one != NULL) {
        run_seed(strtoull(one, NULL, 10));
        return;
    }
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        run_seed(seed);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_random_sequences_match_linux),
    };
    return cmocka_run_group_tests_name("test_model", tests, NULL, NULL);
}
