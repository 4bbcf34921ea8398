/* meta/ops.c - the commands of the shard state machine.
 *
 * Each mutation runs in three steps: check (every error, in the order Linux
 * checks them, so the errno is the one Linux gives), reserve (every
 * allocation that could fail), change (nothing can fail). So an error leaves
 * the shard exactly as it was: no partial apply.
 *
 * Permission rules follow Linux's generic_permission(), may_create(),
 * may_delete(), may_linkat() (with protected_hardlinks on, Debian's
 * default), setattr_prepare() and inode_init_owner().
 * Thread: none; one thread uses a shard at a time. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shard.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1u << 0)
#define RENAME_EXCHANGE  (1u << 1)
#endif

#define PATH_DEPTH_MAX 4096u /* bounds the ancestor walk of rename */

/* ---- checks ---------------------------------------------------------------------- */

static int name_check(const char *name, uint32_t len)
{
    if (len > META_NAME_BYTES_MAX)
        return -ENAMETOOLONG;
    if (name == NULL || len == 0 || memchr(name, '/', len) != NULL ||
        memchr(name, '\0', len) != NULL)
        return -EINVAL;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return -EINVAL; /* the kernel resolves these itself */
    return 0;
}

bool meta__in_group(const struct meta_cred *c, uint32_t gid)
{
    if (c->gid == gid)
        return true;
    for (uint32_t i = 0; i < c->group_count && i < META_GROUPS_MAX; i++) {
        if (c->groups[i] == gid)
            return true;
    }
    return false;
}

/* generic_permission(): mask of MAY_R, MAY_W, MAY_X. */
int meta__may(const struct meta_shard *s, uint32_t inode, const struct meta_cred *c, uint32_t mask)
{
    const struct meta__attr_class *a = meta__attr_of(s, meta__node_at(s, inode)->attr);
    uint32_t bits;

    if (c->uid == 0) {
        /* root may do anything but execute a file no one may execute */
        if ((mask & MAY_X) && !S_ISDIR(a->mode) && (a->mode & 0111) == 0)
            return -EACCES;
        return 0;
    }
    if (c->uid == a->uid)
        bits = a->mode >> 6;
    else if (meta__in_group(c, a->gid))
        bits = a->mode >> 3;
    else
        bits = a->mode;
    return (bits & mask) == mask ? 0 : -EACCES;
}

static bool is_owner_or_root(const struct meta_shard *s, uint32_t inode, const struct meta_cred *c)
{
    return c->uid == 0 || c->uid == meta__attr_of(s, meta__node_at(s, inode)->attr)->uid;
}

/* The directory inode ino, searchable by c. */
static int dir_get(const struct meta_shard *s, uint64_t ino, const struct meta_cred *c,
                   uint32_t *out)
{
    uint32_t d = meta__find_ino(s, ino);

    if (d == META_NIL)
        return -ENOENT;
    if (!S_ISDIR(meta__mode(s, d)))
        return -ENOTDIR;
    *out = d;
    return meta__may(s, d, c, MAY_X);
}

/* may_delete(): c may remove the entry victim (whose inode is vi) from dir d. */
static int may_delete(const struct meta_shard *s, uint32_t d, uint32_t vi, bool is_dir,
                      const struct meta_cred *c)
{
    int rc = meta__may(s, d, c, MAY_W | MAY_X);

    if (rc != 0)
        return rc;
    if ((meta__mode(s, d) & S_ISVTX) && !is_owner_or_root(s, vi, c) &&
        !is_owner_or_root(s, d, c))
        return -EPERM;
    if (is_dir && !S_ISDIR(meta__mode(s, vi)))
        return -ENOTDIR;
    if (!is_dir && S_ISDIR(meta__mode(s, vi)))
        return -EISDIR;
    if (vi == s->root)
        return -EBUSY;
    return 0;
}

static bool dir_is_empty(const struct meta_shard *s, uint32_t d)
{
    return s->dirs[meta__node_at(s, d)->aux].live == 0;
}

/* Is node a (or a itself) an ancestor of directory node d? */
static bool is_ancestor(const struct meta_shard *s, uint32_t a, uint32_t d)
{
    for (uint32_t depth = 0; depth < PATH_DEPTH_MAX; depth++) {
        if (d == a)
            return true;
        if (d == s->root)
            return false;
        d = meta__node_at(s, d)->parent;
    }
    return true; /* deeper than any path: refuse, as if it were */
}

/* ---- queries ----------------------------------------------------------------------- */

/* The entry cmd->name in directory cmd->ino, as the kernel's walk finds it:
 * ENAMETOOLONG, then the directory (ENOENT, ENOTDIR, EACCES), then the name. */
static int entry_lookup(const struct meta_shard *s, const struct meta_cmd *cmd, uint32_t *d,
                        uint32_t *e)
{
    int rc = cmd->name_len > META_NAME_BYTES_MAX ? -ENAMETOOLONG : 0;

    if (rc == 0)
        rc = dir_get(s, cmd->ino, &cmd->cred, d);
    if (rc == 0)
        rc = name_check(cmd->name, cmd->name_len);
    if (rc != 0)
        return rc;
    *e = meta__find_name(s, *d, cmd->name, cmd->name_len);
    return *e == META_NIL ? -ENOENT : 0;
}

static int op_lookup(const struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t d;
    uint32_t e;
    int rc = entry_lookup(s, cmd, &d, &e);

    if (rc == 0)
        meta__attr_fill(s, meta__inode_of(s, e), &r->attr);
    return rc;
}

static int op_readdir(const struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t d = meta__find_ino(s, cmd->ino);
    uint32_t cap = cmd->entry_cap < META_READDIR_MAX ? cmd->entry_cap : META_READDIR_MAX;

    if (d == META_NIL)
        return -ENOENT;
    if (!S_ISDIR(meta__mode(s, d)))
        return -ENOTDIR;
    if (meta__may(s, d, &cmd->cred, MAY_R) != 0)
        return -EACCES;
    if (cap == 0 || r->entries == NULL || (cmd->flags & ~META_READDIR_ATTRS) != 0)
        return -EINVAL;
    if ((cmd->flags & META_READDIR_ATTRS) && meta__may(s, d, &cmd->cred, MAY_X) != 0)
        return -EACCES; /* attributes are what a lookup answers, which needs search */
    const struct meta__dir *dir = &s->dirs[meta__node_at(s, d)->aux];
    uint32_t at = meta__dir_seek(s, dir, cmd->cookie);
    r->entry_count = 0;
    for (; at < dir->count && r->entry_count < cap; at++) {
        uint32_t e = dir->children[at];
        if (e == META_NIL)
            continue;
        const struct meta__node *n = meta__node_at(s, e);
        uint32_t inode = meta__inode_of(s, e);
        struct meta_dirent *out = &r->entries[r->entry_count++];
        uint32_t len;
        const uint8_t *name = meta__name_bytes(s, n->name, &len);
        out->ino = meta__node_at(s, inode)->ino;
        out->cookie = n->ino;
        out->type = meta__mode(s, inode) & S_IFMT;
        out->name_len = len;
        memcpy(out->name, name, len);
        out->name[len] = '\0';
        if (cmd->flags & META_READDIR_ATTRS)
            meta__attr_fill(s, inode, &out->attr);
        else
            out->attr = (struct meta_attr){0};
    }
    while (at < dir->count && dir->children[at] == META_NIL) {
        at++;
    }
    r->is_end = at >= dir->count;
    return 0;
}

int meta_shard_read(const struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t n;

    AR_ASSERT(s != NULL && cmd != NULL && r != NULL);
    switch (cmd->op) {
    case META_OP_LOOKUP:
        return op_lookup(s, cmd, r);
    case META_OP_GETATTR:
        n = meta__find_ino(s, cmd->ino);
        if (n == META_NIL)
            return -ENOENT;
        meta__attr_fill(s, n, &r->attr);
        return 0;
    case META_OP_ACCESS:
        n = meta__find_ino(s, cmd->ino);
        if (n == META_NIL)
            return -ENOENT;
        if ((cmd->flags & ~7u) != 0)
            return -EINVAL;
        /* R_OK 4, W_OK 2, X_OK 1 are MAY_R, MAY_W, MAY_X */
        return meta__may(s, n, &cmd->cred, cmd->flags);
    case META_OP_READLINK: {
        n = meta__find_ino(s, cmd->ino);
        if (n == META_NIL)
            return -ENOENT;
        const struct meta__ext *x = meta__ext_of(s, n);
        if (!S_ISLNK(meta__mode(s, n)) || x == NULL)
            return -EINVAL;
        memcpy(r->target, x->target, x->target_len + 1);
        return 0;
    }
    case META_OP_READDIR:
        return op_readdir(s, cmd, r);
    case META_OP_GETXATTR:
        return meta__xattr_get(s, cmd, r);
    case META_OP_LISTXATTR:
        return meta__xattr_list(s, cmd, r);
    case META_OP_STATFS:
        r->files = s->inode_count;
        r->bytes = s->file_bytes;
        return 0;
    case META_OP_READ_MAP:
        return meta__data_read(s, cmd, r);
    case META_OP_MAP_GET:
        return meta__map_read(s, r);
    case META_OP_ALLOC_SLICES:
    case META_OP_MAP_SET:
    case META_OP_WRITE:
    case META_OP_FALLOCATE:
    case META_OP_RESTORE_FILES:
    case META_OP_SETATTR:
    case META_OP_MKNOD:
    case META_OP_MKDIR:
    case META_OP_SYMLINK:
    case META_OP_LINK:
    case META_OP_UNLINK:
    case META_OP_RMDIR:
    case META_OP_RENAME:
    case META_OP_SETXATTR:
    case META_OP_REMOVEXATTR:
    case META_OP_OPEN:
    case META_OP_RELEASE:
    case META_OP_SESSION_CLOSE:
        return -EINVAL;
    }
    return -EINVAL; /* an op number from outside the enum */
}

/* ---- creating ---------------------------------------------------------------------- */

/* What filename_create() checks before a command adds name to directory
 * ino: the walk, the name, and that it is free. may_create()'s write check
 * follows separately, since link checks the source in between. */
static int create_lookup(const struct meta_shard *s, const struct meta_cmd *cmd, uint64_t dir_ino,
                         const char *name, uint32_t len, uint32_t *d, uint64_t *hash)
{
    int rc = len > META_NAME_BYTES_MAX ? -ENAMETOOLONG : 0;

    if (rc == 0)
        rc = dir_get(s, dir_ino, &cmd->cred, d);
    if (rc == 0)
        rc = name_check(name, len);
    if (rc == 0 && meta__node_nlink(meta__node_at(s, *d)) == 0)
        rc = -ENOENT; /* a removed directory that is still open takes no names */
    if (rc == 0 && meta__find_name_hashed(s, *d, name, len, hash) != META_NIL)
        rc = -EEXIST;
    return rc;
}

static int create_check(const struct meta_shard *s, const struct meta_cmd *cmd, uint64_t dir_ino,
                        const char *name, uint32_t len, uint32_t *d, uint64_t *hash)
{
    int rc = create_lookup(s, cmd, dir_ino, name, len, d, hash);

    return rc != 0 ? rc : meta__may(s, *d, &cmd->cred, MAY_W | MAY_X);
}

/* Take a node slot and a name for an entry in d; on error nothing is held. */
static int entry_alloc(struct meta_shard *s, const char *name, uint32_t len, uint32_t *node,
                       uint32_t *name_off)
{
    int rc = meta__node_alloc(s, node);

    if (rc != 0)
        return rc;
    rc = meta__name_store(s, name, len, name_off);
    if (rc != 0)
        meta__node_release(s, *node);
    return rc;
}

/* Link entry node e into directory d and the name index (hash: of its name
 * in d, or 0 to compute it). Cannot fail. */
static void entry_link_hashed(struct meta_shard *s, uint32_t d, uint32_t e, uint64_t hash)
{
    meta__node_at(s, e)->parent = d;
    meta__dirty_entry(s, e);
    if (hash != 0)
        meta__index_name_hashed(s, e, true, hash);
    else
        meta__index_name(s, e, true);
    meta__dir_add(s, (uint32_t)meta__node_at(s, d)->aux, e);
    s->entry_count++;
}

static void entry_link(struct meta_shard *s, uint32_t d, uint32_t e)
{
    entry_link_hashed(s, d, e, 0);
}

/* Take entry e out of its directory and the name index; its name is kept. */
static void entry_unlink(struct meta_shard *s, uint32_t e)
{
    struct meta__node *n = meta__node_at(s, e);

    meta__dirty_entry(s, e);
    meta__index_name(s, e, false);
    meta__dir_remove(s, (uint32_t)meta__node_at(s, n->parent)->aux, e);
    s->entry_count--;
}

static void dir_touch(struct meta_shard *s, uint32_t d, int64_t now)
{
    meta__set_times(s, d, &now, now);
}

/* What a create makes, decided by the checks, held by create_alloc(). */
struct create_plan {
    uint32_t type;     /* S_IFMT */
    uint32_t perm;     /* permission bits after inode_init_owner() */
    uint32_t uid;
    uint32_t gid;
    uint32_t dir;      /* the parent's node */
    uint64_t hash;     /* of the name in dir */
    uint32_t node;
    uint32_t name_off;
    uint32_t attr;
    uint32_t dslot;    /* a new directory's slot, or META_NIL */
    struct meta__ext *ext; /* a symlink's target or a device's rdev, or NULL */
};

/* Every check of mknod, mkdir and symlink, in Linux's order. */
static int create_plan(const struct meta_shard *s, const struct meta_cmd *cmd,
                       struct create_plan *p)
{
    int rc;

    p->type = cmd->op == META_OP_MKDIR     ? S_IFDIR
              : cmd->op == META_OP_SYMLINK ? S_IFLNK
                                           : (cmd->mode & S_IFMT);
    /* vfs_mkdir() keeps only rwx and sticky; set-id bits come from the parent */
    p->perm = cmd->op == META_OP_SYMLINK ? 0777
              : cmd->op == META_OP_MKDIR ? cmd->mode & 01777
                                         : cmd->mode & 07777;
    if (cmd->op == META_OP_MKNOD) {
        p->type = p->type == 0 ? S_IFREG : p->type;
        if (p->type == S_IFDIR)
            return -EPERM;
        if (p->type != S_IFREG && p->type != S_IFCHR && p->type != S_IFBLK &&
            p->type != S_IFIFO && p->type != S_IFSOCK)
            return -EINVAL;
    }
    rc = create_check(s, cmd, cmd->ino, cmd->name, cmd->name_len, &p->dir, &p->hash);
    if (rc != 0)
        return rc;
    if ((p->type == S_IFCHR || p->type == S_IFBLK) && cmd->cred.uid != 0)
        return -EPERM; /* CAP_MKNOD */
    if (cmd->op == META_OP_SYMLINK && (cmd->target == NULL || cmd->target_len == 0))
        return -ENOENT;
    if (cmd->op == META_OP_SYMLINK && cmd->target_len > META_SYMLINK_BYTES_MAX)
        return -ENAMETOOLONG;
    if (p->type == S_IFDIR && meta__node_nlink(meta__node_at(s, p->dir)) >= META_NLINK_MAX)
        return -EMLINK;
    if (cmd->new_ino <= s->ino_high || cmd->new_ino >= s->self.ino_hi)
        return -EINVAL; /* numbers only grow (see ino_high), inside the shard's lease */
    /* inode_init_owner(): a setgid directory gives its group, and its setgid
     * bit to subdirectories; a file keeps S_ISGID only if its creator could */
    const struct meta__attr_class *da = meta__attr_of(s, meta__node_at(s, p->dir)->attr);
    p->uid = cmd->cred.uid;
    p->gid = cmd->cred.gid;
    if (da->mode & S_ISGID) {
        p->gid = da->gid;
        if (p->type == S_IFDIR)
            p->perm |= S_ISGID;
        else if ((p->perm & S_ISGID) && !meta__in_group(&cmd->cred, p->gid) &&
                 cmd->cred.uid != 0)
            p->perm &= ~(uint32_t)S_ISGID;
    }
    return 0;
}

/* The ext record of a new symlink or device, or NULL when none is needed;
 * -ENOMEM in *rc. */
static struct meta__ext *create_ext(const struct meta_cmd *cmd, uint32_t type, int *rc)
{
    struct meta__ext *x;

    if (cmd->op != META_OP_SYMLINK && (cmd->rdev == 0 || type == S_IFREG))
        return NULL;
    x = ar_calloc(1, sizeof(*x));
    if (x != NULL && cmd->op == META_OP_SYMLINK) {
        x->target = ar_malloc(cmd->target_len + 1);
        if (x->target == NULL) {
            ar_free(x);
            x = NULL;
        } else {
            memcpy(x->target, cmd->target, cmd->target_len);
            x->target[cmd->target_len] = '\0';
            x->target_len = cmd->target_len;
        }
    }
    if (x == NULL)
        *rc = -ENOMEM;
    else
        x->rdev = cmd->rdev;
    return x;
}

/* Reserve and allocate all a create needs; on error nothing is held. */
static int create_alloc(struct meta_shard *s, const struct meta_cmd *cmd, struct create_plan *p)
{
    int rc = meta__reserve_indexes(s, 1, 1);

    if (rc == 0)
        rc = meta__reserve_side(s, 2);
    if (rc == 0)
        rc = meta__dir_reserve(s, (uint32_t)meta__node_at(s, p->dir)->aux, 1);
    if (rc == 0 && (cmd->op == META_OP_SYMLINK || cmd->rdev != 0))
        rc = meta__map_reserve(&s->exts, 1);
    if (rc == 0)
        rc = entry_alloc(s, cmd->name, cmd->name_len, &p->node, &p->name_off);
    if (rc != 0)
        return rc;
    p->dslot = META_NIL;
    p->ext = NULL;
    rc = meta__attr_get(s, p->type | p->perm, p->uid, p->gid, &p->attr);
    bool has_attr = rc == 0;
    if (rc == 0 && p->type == S_IFDIR)
        rc = meta__dir_alloc(s, &p->dslot);
    if (rc == 0)
        p->ext = create_ext(cmd, p->type, &rc);
    if (rc != 0) {
        if (p->dslot != META_NIL)
            meta__dir_release(s, p->dslot);
        if (has_attr)
            meta__attr_put(s, p->attr);
        meta__name_release(s, p->name_off);
        meta__node_release(s, p->node);
    }
    return rc;
}

/* Make the node create_alloc() holds: its inode, its name in the
 * directory, times now. Cannot fail. */
static void create_commit(struct meta_shard *s, const struct meta_cmd *cmd,
                          const struct create_plan *p)
{
    struct meta__node *n = meta__node_at(s, p->node);
    *n = (struct meta__node){
        .ino = cmd->new_ino,
        .size = cmd->op == META_OP_SYMLINK ? cmd->target_len : 0,
        .mtime_ns = cmd->now_ns,
        .atime_ns = cmd->now_ns,
        .aux = p->type == S_IFDIR ? p->dslot : 0,
        .name = p->name_off,
        .attr = p->attr,
    };
    meta__node_flag(n, NODE_LIVE, true);
    meta__node_set_nlink(n, p->type == S_IFDIR ? 2 : 1);
    s->ino_high = cmd->new_ino;
    if (p->ext != NULL) {
        int rc = meta__map_put(&s->exts, p->node, (uint64_t)(uintptr_t)p->ext);
        AR_ASSERT(rc == 0); /* reserved */
        meta__node_flag(n, NODE_HAS_EXT, true);
    }
    meta__index_ino(s, p->node, true);
    meta__dirty_inode(s, p->node);
    entry_link_hashed(s, p->dir, p->node, p->hash);
    s->inode_count++;
    if (p->type == S_IFDIR) {
        struct meta__node *dn = meta__node_at(s, p->dir);
        meta__node_set_nlink(dn, meta__node_nlink(dn) + 1);
    }
}

static int op_create(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    struct create_plan p;
    int rc = create_plan(s, cmd, &p);

    /* a MKNOD with a session also opens the new file for it (a FUSE create:
     * one command instead of MKNOD then OPEN) */
    if (rc == 0 && cmd->session != 0)
        rc = cmd->op == META_OP_MKNOD && p.type == S_IFREG
                 ? meta__hold_reserve(s, cmd->session, cmd->new_ino) : -EINVAL;
    if (rc == 0)
        rc = create_alloc(s, cmd, &p);
    if (rc != 0)
        return rc;
    /* change: nothing below can fail */
    create_commit(s, cmd, &p);
    dir_touch(s, p.dir, cmd->now_ns);
    if (cmd->session != 0)
        meta__hold_take(s, cmd->session, cmd->new_ino, p.node);
    meta__attr_fill(s, p.node, &r->attr);
    return 0;
}

/* ---- links ---------------------------------------------------------------------------- */

/* may_linkat() with protected_hardlinks: someone who does not own a file may
 * link it only if it is a plain regular file they may read and write. */
static int may_link(const struct meta_shard *s, uint32_t inode, const struct meta_cred *c)
{
    uint32_t mode = meta__mode(s, inode);

    if (is_owner_or_root(s, inode, c))
        return 0;
    if (!S_ISREG(mode) || (mode & S_ISUID) || ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)))
        return -EPERM;
    return meta__may(s, inode, c, MAY_R | MAY_W) == 0 ? 0 : -EPERM;
}

static int op_link(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t inode = meta__find_ino(s, cmd->ino);
    uint32_t d;
    uint32_t node;
    uint32_t name_off;
    uint64_t hash = 0;
    int rc;

    if (inode == META_NIL || meta__node_nlink(meta__node_at(s, inode)) == 0)
        return -ENOENT; /* an unlinked, open file cannot be linked back */
    /* do_linkat(): the new name, then may_linkat(), then vfs_link()'s checks */
    rc = create_lookup(s, cmd, cmd->new_dir, cmd->new_name, cmd->new_name_len, &d, &hash);
    if (rc == 0)
        rc = may_link(s, inode, &cmd->cred);
    if (rc == 0)
        rc = meta__may(s, d, &cmd->cred, MAY_W | MAY_X);
    if (rc != 0)
        return rc;
    if (S_ISDIR(meta__mode(s, inode)))
        return -EPERM;
    if (meta__node_nlink(meta__node_at(s, inode)) >= META_NLINK_MAX)
        return -EMLINK;
    if (cmd->if_ctime_ns != 0 && meta__ctime(s, inode) != cmd->if_ctime_ns)
        return -ESTALE; /* named through a name that may have changed since */
    if (cmd->new_ino <= s->ino_high || cmd->new_ino >= s->self.ino_hi)
        return -EINVAL; /* numbers only grow (see ino_high), inside the shard's lease */

    rc = meta__reserve_indexes(s, 1, 1);
    if (rc == 0)
        rc = meta__reserve_side(s, 2);
    if (rc == 0)
        rc = meta__dir_reserve(s, (uint32_t)meta__node_at(s, d)->aux, 1);
    if (rc == 0)
        rc = entry_alloc(s, cmd->new_name, cmd->new_name_len, &node, &name_off);
    if (rc != 0)
        return rc;

    struct meta__node *alias = meta__node_at(s, node);
    *alias = (struct meta__node){.ino = cmd->new_ino, .aux = inode, .name = name_off};
    meta__node_flag(alias, NODE_LIVE, true);
    meta__node_flag(alias, NODE_ALIAS, true);
    s->ino_high = cmd->new_ino;
    entry_link_hashed(s, d, node, hash);
    struct meta__node *n = meta__node_at(s, inode);
    meta__node_set_nlink(n, meta__node_nlink(n) + 1);
    meta__set_times(s, inode, NULL, cmd->now_ns);
    dir_touch(s, d, cmd->now_ns);
    meta__attr_fill(s, inode, &r->attr);
    return 0;
}

/* Remove entry e (already checked) and drop one link of its inode; free the
 * inode at its last link. For a directory, also its parent's link. */
static void entry_remove(struct meta_shard *s, uint32_t e, int64_t now)
{
    uint32_t inode = meta__inode_of(s, e);
    struct meta__node *n = meta__node_at(s, inode);
    bool is_dir = S_ISDIR(meta__mode(s, inode));
    uint32_t d = meta__node_at(s, e)->parent;

    entry_unlink(s, e);
    meta__name_release(s, meta__node_at(s, e)->name);
    if (is_dir) {
        meta__node_set_nlink(meta__node_at(s, d), meta__node_nlink(meta__node_at(s, d)) - 1);
        if (meta__is_held(s, inode)) {
            /* an open directory lives on, empty and nameless, until released */
            n->name = META_NIL;
            meta__node_flag(n, NODE_NAMELESS, true);
            meta__node_set_nlink(n, 0);
            meta__set_times(s, inode, NULL, now);
            return;
        }
        meta__index_ino(s, inode, false);
        meta__inode_free(s, inode);
        return;
    }
    if (e != inode) {
        meta__node_release(s, e); /* an alias: the entry alone goes */
    } else {
        meta__node_at(s, e)->name = META_NIL;
    }
    meta__node_set_nlink(n, meta__node_nlink(n) - 1);
    if (meta__node_nlink(n) > 0) {
        if (e == inode)
            meta__node_flag(n, NODE_NAMELESS, true);
        meta__set_times(s, inode, NULL, now);
        return;
    }
    /* the last name: if the inode has aliases left this is not reached */
    if (meta__is_held(s, inode)) {
        /* unlinked but open: an orphan until its last release */
        meta__node_flag(n, NODE_NAMELESS, true);
        meta__set_times(s, inode, NULL, now);
        return;
    }
    meta__index_ino(s, inode, false);
    meta__inode_free(s, inode);
}

/* An RMDIR answers the directory's attributes as removed (no links, its
 * ctime now): a client with it open may still fstat it. */
static int op_remove(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r,
                     bool is_dir)
{
    uint32_t d;
    uint32_t e;
    int rc = entry_lookup(s, cmd, &d, &e);

    if (rc != 0)
        return rc;
    uint32_t vi = meta__inode_of(s, e);
    rc = may_delete(s, d, vi, is_dir, &cmd->cred);
    if (rc == 0 && is_dir && !dir_is_empty(s, vi))
        rc = -ENOTEMPTY;
    if (rc == 0)
        rc = meta__reserve_side(s, 2);
    if (rc != 0)
        return rc;
    if (is_dir) {
        meta__attr_fill(s, vi, &r->attr);
        r->attr.nlink = 0;
        r->attr.ctime_ns = cmd->now_ns;
    }
    /* A NAMELESS inode that loses its last alias keeps an entry count of 0,
     * handled in entry_remove through its nlink. */
    entry_remove(s, e, cmd->now_ns);
    dir_touch(s, d, cmd->now_ns);
    return 0;
}

/* ---- rename ------------------------------------------------------------------------------ */

/* Give entry e the name new_name in directory nd (a fresh name slot taken
 * beforehand in name_off); its old name slot is freed. Cannot fail. */
static void entry_move(struct meta_shard *s, uint32_t e, uint32_t nd, uint32_t name_off)
{
    struct meta__node *n = meta__node_at(s, e);
    uint32_t old_name = n->name;

    if (n->parent != nd) {
        entry_unlink(s, e);
        n->name = name_off;
        entry_link(s, nd, e);
    } else {
        /* a new name in the same directory: the entry keeps its key, so
         * its place among the children (a removal and an insert there
         * would cost a hole and a move of every later child) */
        meta__dirty_entry(s, e);
        meta__index_name(s, e, false);
        n->name = name_off;
        meta__dirty_entry(s, e);
        meta__index_name(s, e, true);
    }
    meta__name_release(s, old_name);
}

static int rename_check(struct meta_shard *s, const struct meta_cmd *cmd, uint32_t *od,
                        uint32_t *nd, uint32_t *oe, uint32_t *ne)
{
    uint32_t flags = cmd->flags;
    int rc = 0;

    if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0 ||
        (flags == (RENAME_NOREPLACE | RENAME_EXCHANGE)))
        return -EINVAL;
    if (cmd->name_len > META_NAME_BYTES_MAX || cmd->new_name_len > META_NAME_BYTES_MAX)
        return -ENAMETOOLONG;
    rc = dir_get(s, cmd->ino, &cmd->cred, od);
    if (rc == 0)
        rc = dir_get(s, cmd->new_dir, &cmd->cred, nd);
    if (rc == 0)
        rc = name_check(cmd->name, cmd->name_len);
    if (rc == 0)
        rc = name_check(cmd->new_name, cmd->new_name_len);
    if (rc != 0)
        return rc;
    *oe = meta__find_name(s, *od, cmd->name, cmd->name_len);
    if (*oe == META_NIL)
        return -ENOENT;
    *ne = meta__find_name(s, *nd, cmd->new_name, cmd->new_name_len);
    if ((flags & RENAME_NOREPLACE) && *ne != META_NIL)
        return -EEXIST;
    if ((flags & RENAME_EXCHANGE) && *ne == META_NIL)
        return -ENOENT;
    uint32_t oi = meta__inode_of(s, *oe);
    uint32_t ni = *ne != META_NIL ? meta__inode_of(s, *ne) : META_NIL;
    bool old_is_dir = S_ISDIR(meta__mode(s, oi));
    bool new_is_dir = ni != META_NIL && S_ISDIR(meta__mode(s, ni));
    /* source may not become its own descendant; nor may the target */
    if (old_is_dir && is_ancestor(s, oi, *nd))
        return -EINVAL;
    if (new_is_dir && is_ancestor(s, ni, *od))
        return (flags & RENAME_EXCHANGE) ? -EINVAL : -ENOTEMPTY;
    if (oi == ni)
        return 1; /* two names of one inode: nothing to do */
    rc = may_delete(s, *od, oi, old_is_dir, &cmd->cred);
    if (rc != 0)
        return rc;
    if (ni == META_NIL)
        rc = meta__may(s, *nd, &cmd->cred, MAY_W | MAY_X);
    else
        rc = may_delete(s, *nd, ni, (flags & RENAME_EXCHANGE) ? new_is_dir : old_is_dir,
                        &cmd->cred);
    if (rc != 0)
        return rc;
    if (*od != *nd && old_is_dir && meta__may(s, oi, &cmd->cred, MAY_W) != 0)
        return -EACCES;
    if (*od != *nd && new_is_dir && (flags & RENAME_EXCHANGE) &&
        meta__may(s, ni, &cmd->cred, MAY_W) != 0)
        return -EACCES;
    if (new_is_dir && !(flags & RENAME_EXCHANGE) && !dir_is_empty(s, ni))
        return -ENOTEMPTY;
    if (*od != *nd && old_is_dir && !new_is_dir &&
        meta__node_nlink(meta__node_at(s, *nd)) >= META_NLINK_MAX)
        return -EMLINK;
    if (*od != *nd && new_is_dir && (flags & RENAME_EXCHANGE) && !old_is_dir &&
        meta__node_nlink(meta__node_at(s, *od)) >= META_NLINK_MAX)
        return -EMLINK;
    return 0;
}

static void nlink_add(struct meta_shard *s, uint32_t node, int delta)
{
    struct meta__node *n = meta__node_at(s, node);

    meta__node_set_nlink(n, (uint32_t)((int)meta__node_nlink(n) + delta));
}

/* The reply names the renamed inode (attr): a mount whose kernel moved a
 * name of it learns which file's names changed. */
static int op_rename(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t od;
    uint32_t nd;
    uint32_t oe = META_NIL; /* set where rename_check() succeeds */
    uint32_t ne;
    uint32_t name_a;
    uint32_t name_b = META_NIL;
    int64_t now = cmd->now_ns;
    int rc = rename_check(s, cmd, &od, &nd, &oe, &ne);

    if (rc == 1) {
        meta__attr_fill(s, meta__inode_of(s, oe), &r->attr);
        return 0;
    }
    if (rc != 0)
        return rc;
    rc = meta__reserve_indexes(s, 1, 2);
    if (rc == 0)
        rc = meta__reserve_side(s, 6);
    /* each moved entry takes a slot; an exchange in one directory moves two */
    if (rc == 0)
        rc = meta__dir_reserve(s, (uint32_t)meta__node_at(s, nd)->aux, 2);
    if (rc == 0)
        rc = meta__dir_reserve(s, (uint32_t)meta__node_at(s, od)->aux, 2);
    if (rc == 0)
        rc = meta__name_store(s, cmd->new_name, cmd->new_name_len, &name_a);
    if (rc == 0 && (cmd->flags & RENAME_EXCHANGE)) {
        rc = meta__name_store(s, cmd->name, cmd->name_len, &name_b);
        if (rc != 0)
            meta__name_release(s, name_a);
    }
    if (rc != 0)
        return rc;

    uint32_t oi = meta__inode_of(s, oe);
    bool old_is_dir = S_ISDIR(meta__mode(s, oi));
    if (cmd->flags & RENAME_EXCHANGE) {
        uint32_t ni = meta__inode_of(s, ne);
        bool new_is_dir = S_ISDIR(meta__mode(s, ni));
        entry_move(s, oe, nd, name_a);
        entry_move(s, ne, od, name_b);
        if (od != nd && old_is_dir != new_is_dir) {
            nlink_add(s, old_is_dir ? od : nd, -1);
            nlink_add(s, old_is_dir ? nd : od, +1);
        }
        meta__set_times(s, ni, NULL, now);
        meta__attr_fill(s, ni, &r->other);
    } else {
        if (ne != META_NIL)
            entry_remove(s, ne, now); /* the replaced entry; a dir drops nd's link */
        entry_move(s, oe, nd, name_a);
        if (old_is_dir && od != nd) {
            nlink_add(s, od, -1);
            nlink_add(s, nd, +1);
        }
    }
    meta__set_times(s, oi, NULL, now);
    dir_touch(s, od, now);
    if (nd != od)
        dir_touch(s, nd, now);
    meta__attr_fill(s, oi, &r->attr);
    return 0;
}

/* ---- setattr ------------------------------------------------------------------------------ */

static int setattr_check(const struct meta_shard *s, const struct meta_cmd *cmd, uint32_t n)
{
    const struct meta__attr_class *a = meta__attr_of(s, meta__node_at(s, n)->attr);
    const struct meta_cred *c = &cmd->cred;
    uint32_t m = cmd->set_mask;

    if ((m & META_SET_SIZE) != 0) {
        if (S_ISDIR(a->mode))
            return -EISDIR;
        if (!S_ISREG(a->mode))
            return -EINVAL;
        if (cmd->set.size > META_FILE_BYTES_MAX)
            return -EFBIG;
        if (meta__may(s, n, c, MAY_W) != 0)
            return -EACCES;
    }
    /* chown_ok(), chgrp_ok(): only the owner, and only to itself or a group
     * of theirs; even "no change" needs ownership */
    if ((m & META_SET_UID) != 0 && c->uid != 0 && (c->uid != a->uid || cmd->set.uid != a->uid))
        return -EPERM;
    if ((m & META_SET_GID) != 0 && c->uid != 0 &&
        (c->uid != a->uid || (cmd->set.gid != a->gid && !meta__in_group(c, cmd->set.gid))))
        return -EPERM;
    if ((m & META_SET_MODE) != 0 && !is_owner_or_root(s, n, c))
        return -EPERM;
    if ((m & (META_SET_ATIME | META_SET_MTIME)) != 0 && !is_owner_or_root(s, n, c))
        return -EPERM;
    if ((m & (META_SET_ATIME_NOW | META_SET_MTIME_NOW)) != 0 && !is_owner_or_root(s, n, c) &&
        meta__may(s, n, c, MAY_W) != 0)
        return -EACCES;
    return 0;
}

static int op_setattr(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t n = meta__find_ino(s, cmd->ino);
    uint32_t m = cmd->set_mask;
    int rc;

    if (n == META_NIL)
        return -ENOENT;
    if ((m & ~0xffu) != 0)
        return -EINVAL;
    rc = setattr_check(s, cmd, n);
    if (rc != 0)
        return rc;
    struct meta__node *node = meta__node_at(s, n);
    const struct meta__attr_class *a = meta__attr_of(s, node->attr);
    uint32_t mode = a->mode;
    uint32_t uid = (m & META_SET_UID) ? cmd->set.uid : a->uid;
    uint32_t gid = (m & META_SET_GID) ? cmd->set.gid : a->gid;
    if (m & META_SET_MODE) {
        mode = (mode & S_IFMT) | (cmd->set.mode & 07777);
        if (cmd->cred.uid != 0 && !meta__in_group(&cmd->cred, gid))
            mode &= ~(uint32_t)S_ISGID;
    }
    /* chown clears set-user-ID, and set-group-ID of a group-executable file */
    if ((m & (META_SET_UID | META_SET_GID)) && !S_ISDIR(mode)) {
        mode &= ~(uint32_t)S_ISUID;
        if (mode & S_IXGRP)
            mode &= ~(uint32_t)S_ISGID;
    }
    /* truncation clears them as a write does */
    if (m & META_SET_SIZE)
        mode &= meta__mode_after_write(s, n, &cmd->cred) | ~(uint32_t)(S_ISUID | S_ISGID);
    uint32_t attr = node->attr;
    rc = meta__reserve_side(s, 1);
    if (rc == 0 && (m & META_SET_SIZE))
        rc = meta__data_truncate_reserve(s, n, cmd->set.size);
    if (rc == 0 && (mode != a->mode || uid != a->uid || gid != a->gid))
        rc = meta__attr_get(s, mode, uid, gid, &attr);
    if (rc != 0) {
        if (m & META_SET_SIZE)
            meta__data_unreserve(s, n);
        return rc;
    }
    if (attr != node->attr) {
        meta__attr_put(s, node->attr);
        node->attr = attr;
    }
    int64_t mtime = node->mtime_ns;
    if (m & META_SET_SIZE) {
        s->file_bytes = s->file_bytes - node->size + cmd->set.size;
        meta__data_truncate(s, n, cmd->set.size);
        mtime = cmd->now_ns;
    }
    if (m & META_SET_ATIME)
        node->atime_ns = cmd->set.atime_ns;
    if (m & META_SET_ATIME_NOW)
        node->atime_ns = cmd->now_ns;
    if (m & META_SET_MTIME)
        mtime = cmd->set.mtime_ns;
    if (m & META_SET_MTIME_NOW)
        mtime = cmd->now_ns;
    meta__set_times(s, n, &mtime, cmd->now_ns);
    meta__attr_fill(s, n, &r->attr);
    return 0;
}

/* ---- restore_files ------------------------------------------------------------------
 * Files made whole in one command (arbor restore): each item as MKNOD or
 * SYMLINK would make it, its pieces as WRITEs, then its size and owner,
 * then its mode and times. Everything an item could fail on is checked
 * first, so a command applies whole or not at all. */

/* The sub-command that makes item i. */
static struct meta_cmd item_create(const struct meta_cmd *cmd, uint32_t i)
{
    const struct meta_file_item *it = &cmd->items[i];
    bool is_link = (it->mode & S_IFMT) == S_IFLNK;

    return (struct meta_cmd){.op = is_link ? META_OP_SYMLINK : META_OP_MKNOD,
                             .cred = cmd->cred, .now_ns = cmd->now_ns,
                             .new_ino = cmd->new_ino + i, .ino = cmd->ino, .name = it->name,
                             .name_len = it->name_len, .mode = it->mode, .rdev = it->rdev,
                             .target = it->target, .target_len = it->target_len};
}

/* -EEXIST if two items share a name: each goes into an open-addressing
 * set of twice as many slots (item + 1; 0 is empty), probed linearly. */
static int restore_names_distinct(const struct meta_cmd *cmd)
{
    _Static_assert((META_RESTORE_FILES_MAX & (META_RESTORE_FILES_MAX - 1)) == 0,
                   "the set's size is a power of two");
    uint16_t slots[2 * META_RESTORE_FILES_MAX] = {0};
    const uint32_t mask = 2 * META_RESTORE_FILES_MAX - 1;

    for (uint32_t i = 0; i < cmd->item_count; i++) {
        const struct meta_file_item *a = &cmd->items[i];
        uint32_t k = (uint32_t)meta__hash_bytes(0, a->name, a->name_len) & mask;
        for (; slots[k] != 0; k = (k + 1) & mask) { /* bounded: a slot is free */
            const struct meta_file_item *b = &cmd->items[slots[k] - 1];
            if (a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0)
                return -EEXIST;
        }
        slots[k] = (uint16_t)(i + 1);
    }
    return 0;
}

#define RESTORE_AHEAD 16u /* items whose name slots are fetched before they are checked */

/* Every check of the command; plans[i]: what item i's create needs. */
static int restore_check(const struct meta_shard *s, const struct meta_cmd *cmd,
                         struct create_plan *plans)
{
    if (cmd->cred.uid != 0)
        return -EPERM; /* it sets owners and set-id bits */
    if (cmd->item_count == 0 || cmd->item_count > META_RESTORE_FILES_MAX ||
        cmd->new_ino > UINT64_MAX - cmd->item_count ||
        cmd->new_ino + cmd->item_count > s->self.ino_hi)
        return -EINVAL;
    int rc = restore_names_distinct(cmd);
    /* each name's probe is a cache miss in a large index: fetched ahead */
    uint32_t dir = meta__find_ino(s, cmd->ino);
    for (uint32_t i = 0; dir != META_NIL && i < cmd->item_count && i < RESTORE_AHEAD; i++) {
        meta__prefetch_name(s, dir, cmd->items[i].name, cmd->items[i].name_len);
    }
    for (uint32_t i = 0; rc == 0 && i < cmd->item_count; i++) {
        const struct meta_file_item *it = &cmd->items[i];
        if (dir != META_NIL && i + RESTORE_AHEAD < cmd->item_count)
            meta__prefetch_name(s, dir, it[RESTORE_AHEAD].name, it[RESTORE_AHEAD].name_len);
        uint32_t type = it->mode & S_IFMT;
        if (type != S_IFREG && type != S_IFLNK && type != S_IFIFO && type != S_IFSOCK &&
            type != S_IFCHR && type != S_IFBLK)
            return -EINVAL;
        if ((type != S_IFLNK && it->target_len != 0) ||
            (type != S_IFREG && (it->piece_count > 0 || it->size > 0)) ||
            it->piece_first > cmd->piece_count ||
            it->piece_count > cmd->piece_count - it->piece_first)
            return -EINVAL;
        if (it->size > META_FILE_BYTES_MAX)
            return -EFBIG;
        for (uint32_t k = 0; k < it->piece_count; k++) {
            const struct meta_file_piece *p = &cmd->pieces[it->piece_first + k];
            const struct meta_slice *sl = &p->slice;
            if (sl->id == 0 || sl->len == 0 || sl->size > META_CHUNK_BYTES ||
                (uint64_t)sl->off + sl->len > sl->size || p->offset > it->size ||
                sl->len > it->size - p->offset ||
                p->offset % META_CHUNK_BYTES + sl->len > META_CHUNK_BYTES)
                return -EINVAL;
        }
        if (it->piece_count > META_CHUNK_SLICES_MAX)
            return -EINVAL;
        struct meta_cmd sub = item_create(cmd, i);
        rc = create_plan(s, &sub, &plans[i]); /* the name, the directory, the number */
    }
    return rc;
}

/* Item i whole: its node made with the owner, mode and times that MKNOD
 * or SYMLINK, then chown, chmod and utimens by root would leave, its
 * pieces written, its size set. The directory's times are the caller's. */
static int restore_item(struct meta_shard *s, const struct meta_cmd *cmd, uint32_t i,
                        struct create_plan *p, struct meta_reply *r)
{
    const struct meta_file_item *it = &cmd->items[i];
    struct meta_cmd sub = item_create(cmd, i);

    if (p->type != S_IFLNK)
        p->perm = it->mode & 07777;
    p->uid = it->uid;
    p->gid = it->gid;
    int rc = meta__dirty_reserve(s);
    if (rc == 0)
        rc = create_alloc(s, &sub, p);
    if (rc != 0)
        return rc;
    create_commit(s, &sub, p);
    for (uint32_t k = 0; rc == 0 && k < it->piece_count; k++) {
        const struct meta_file_piece *piece = &cmd->pieces[it->piece_first + k];
        struct meta_cmd w = {.op = META_OP_WRITE, .cred = cmd->cred, .now_ns = cmd->now_ns,
                             .ino = sub.new_ino, .offset = piece->offset, .slice = piece->slice};
        rc = meta__dirty_reserve(s);
        if (rc == 0)
            rc = meta__data_apply(s, &w, r);
    }
    struct meta__node *n = meta__node_at(s, p->node);
    if (rc == 0)
        rc = meta__dirty_reserve(s);
    if (rc == 0)
        rc = meta__reserve_side(s, 1);
    if (rc == 0 && p->type == S_IFREG && n->size != it->size) {
        /* a hole at the end: the pieces stop short of the size */
        rc = meta__data_truncate_reserve(s, p->node, it->size);
        if (rc == 0) {
            s->file_bytes = s->file_bytes - n->size + it->size;
            meta__data_truncate(s, p->node, it->size);
        }
    }
    if (rc != 0)
        return rc;
    n->atime_ns = it->atime_ns;
    meta__set_times(s, p->node, &it->mtime_ns, cmd->now_ns);
    return 0;
}

static int op_restore_files(struct meta_shard *s, const struct meta_cmd *cmd,
                            struct meta_reply *r)
{
    struct create_plan plans[META_RESTORE_FILES_MAX];
    int rc = restore_check(s, cmd, plans);
    uint32_t made = 0;

    for (; rc == 0 && made < cmd->item_count; made++) {
        rc = restore_item(s, cmd, made, &plans[made], r);
    }
    if (rc == 0)
        rc = meta__dirty_reserve(s);
    if (rc == 0) {
        dir_touch(s, plans[0].dir, cmd->now_ns);
        meta__attr_fill(s, plans[cmd->item_count - 1].node, &r->attr); /* the last file's */
        return 0;
    }
    if (rc == -ENOMEM || made == 0)
        return rc; /* -ENOMEM stops the replica (the server's rule) */
    /* a case the checks missed: take back this command's files, so that no
     * name of it stays */
    for (uint32_t j = 0; j < made; j++) {
        struct meta_cmd un = {.op = META_OP_UNLINK, .cred = cmd->cred, .now_ns = cmd->now_ns,
                              .ino = cmd->ino, .name = cmd->items[j].name,
                              .name_len = cmd->items[j].name_len};
        if (meta__dirty_reserve(s) == 0)
            (void)op_remove(s, &un, r, false);
    }
    return rc;
}

static int apply_op(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    switch (cmd->op) {
    case META_OP_SETATTR:
        return op_setattr(s, cmd, r);
    case META_OP_MKNOD:
    case META_OP_MKDIR:
    case META_OP_SYMLINK:
        return op_create(s, cmd, r);
    case META_OP_LINK:
        return op_link(s, cmd, r);
    case META_OP_UNLINK:
        return op_remove(s, cmd, r, false);
    case META_OP_RMDIR:
        return op_remove(s, cmd, r, true);
    case META_OP_RENAME:
        return op_rename(s, cmd, r);
    case META_OP_SETXATTR:
    case META_OP_REMOVEXATTR:
        return meta__xattr_set(s, cmd, r);
    case META_OP_OPEN:
    case META_OP_RELEASE:
    case META_OP_SESSION_CLOSE:
        return meta__session_apply(s, cmd, r);
    case META_OP_WRITE:
    case META_OP_FALLOCATE:
        return meta__data_apply(s, cmd, r);
    case META_OP_RESTORE_FILES:
        return op_restore_files(s, cmd, r);
    case META_OP_ALLOC_SLICES:
    case META_OP_MAP_SET:
        return meta__map_apply(s, cmd, r);
    case META_OP_MAP_GET:
    case META_OP_READ_MAP:
    case META_OP_LOOKUP:
    case META_OP_GETATTR:
    case META_OP_ACCESS:
    case META_OP_READLINK:
    case META_OP_READDIR:
    case META_OP_GETXATTR:
    case META_OP_LISTXATTR:
    case META_OP_STATFS:
        return -EINVAL;
    }
    return -EINVAL; /* an op number from outside the enum */
}

bool meta_op_is_query(enum meta_op op)
{
    switch (op) {
    case META_OP_LOOKUP:
    case META_OP_GETATTR:
    case META_OP_ACCESS:
    case META_OP_READLINK:
    case META_OP_READDIR:
    case META_OP_GETXATTR:
    case META_OP_LISTXATTR:
    case META_OP_STATFS:
    case META_OP_READ_MAP:
    case META_OP_MAP_GET:
        return true;
    default:
        return false;
    }
}

int meta_shard_apply(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    AR_ASSERT(s != NULL && cmd != NULL && r != NULL);
    if (cmd->cred.group_count > META_GROUPS_MAX)
        return -EINVAL;
    /* before the retry table: a retry under the new epoch gets its first answer */
    if (cmd->epoch != 0 && cmd->epoch != s->self.epoch)
        return -AR_ESTALEEPOCH;
    int rc;
    if (meta__retry_check(s, cmd, r, &rc))
        return rc; /* applied before: its first answer */
    rc = meta__dirty_reserve(s);
    if (rc == 0)
        rc = meta__retry_reserve(s, cmd);
    if (rc != 0)
        return rc;
    rc = apply_op(s, cmd, r);
    /* -ENOMEM is this replica's trouble, not a result: never remembered */
    if (rc != -ENOMEM)
        meta__retry_record(s, cmd, rc, r);
    return rc;
}
