/* meta/xattr.c - extended attributes of an inode, as Linux gives them.
 *
 * Namespaces: "user." (regular files and directories; file permissions
 * decide; in a sticky directory only its owner may write) and "trusted."
 * (root only; others see nothing). Any other prefix is -EOPNOTSUPP. Checks
 * follow setxattr_copy(), xattr_permission() and ext4 in that order: name
 * length (ERANGE), value size (E2BIG), flags (EINVAL), permission (EPERM,
 * EACCES), namespace (EOPNOTSUPP, EINVAL for an empty name), then
 * XATTR_CREATE / XATTR_REPLACE (EEXIST, ENODATA).
 *
 * Storage: the inode's ext record holds them packed, in the order they were
 * first set: [u8 name length][u32 value length][name][value]...
 * Thread: none; one thread uses a shard at a time. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shard.h"

#ifndef XATTR_CREATE
#define XATTR_CREATE  0x1
#define XATTR_REPLACE 0x2
#endif

enum xattr_ns { NS_USER, NS_TRUSTED, NS_OTHER };

static enum xattr_ns ns_of(const char *name, uint32_t len)
{
    if (len >= 5 && memcmp(name, "user.", 5) == 0)
        return NS_USER;
    if (len >= 8 && memcmp(name, "trusted.", 8) == 0)
        return NS_TRUSTED;
    return NS_OTHER;
}

static uint32_t prefix_len(enum xattr_ns ns)
{
    return ns == NS_USER ? 5 : ns == NS_TRUSTED ? 8 : 0;
}

/* xattr_permission(): mask is MAY_R or MAY_W. */
static int xattr_may(const struct meta_shard *s, uint32_t inode, enum xattr_ns ns,
                     const struct meta_cred *c, uint32_t mask)
{
    const struct meta__attr_class *a = meta__attr_of(s, meta__node_at(s, inode)->attr);

    if (ns == NS_TRUSTED)
        return c->uid == 0 ? 0 : (mask & MAY_W) ? -EPERM : -ENODATA;
    if (ns == NS_USER) {
        if (!S_ISREG(a->mode) && !S_ISDIR(a->mode))
            return (mask & MAY_W) ? -EPERM : -ENODATA;
        if (S_ISDIR(a->mode) && (a->mode & S_ISVTX) && (mask & MAY_W) && c->uid != 0 &&
            c->uid != a->uid)
            return -EPERM;
    }
    return meta__may(s, inode, c, mask);
}

/* The offset of name in x's list, or -1. */
static int64_t xattr_find(const struct meta__ext *x, const char *name, uint32_t len)
{
    for (uint32_t off = 0; x != NULL && off < x->xattr_bytes;) {
        uint32_t nlen = x->xattrs[off];
        uint32_t vlen;
        memcpy(&vlen, x->xattrs + off + 1, 4);
        if (nlen == len && memcmp(x->xattrs + off + 5, name, len) == 0)
            return off;
        off += 5 + nlen + vlen;
    }
    return -1;
}

static uint32_t entry_bytes(const struct meta__ext *x, int64_t off)
{
    uint32_t vlen;

    memcpy(&vlen, x->xattrs + off + 1, 4);
    return 5u + x->xattrs[off] + vlen;
}

/* The checks every xattr call makes on its name before anything else. */
static int name_check(const struct meta_cmd *cmd, enum xattr_ns *ns)
{
    if (cmd->name_len == 0 || cmd->name_len > META_XATTR_NAME_MAX || cmd->name == NULL ||
        memchr(cmd->name, '\0', cmd->name_len) != NULL)
        return -ERANGE;
    *ns = ns_of(cmd->name, cmd->name_len);
    return 0;
}

/* What the namespace itself refuses, checked after permission as Linux does. */
static int ns_check(const struct meta_cmd *cmd, enum xattr_ns ns)
{
    if (ns == NS_OTHER)
        return -EOPNOTSUPP;
    return cmd->name_len == prefix_len(ns) ? -EINVAL : 0;
}

int meta__xattr_get(const struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t n = meta__find_ino(s, cmd->ino);
    enum xattr_ns ns;
    int rc = name_check(cmd, &ns);

    if (rc != 0)
        return rc;
    if (n == META_NIL)
        return -ENOENT;
    rc = xattr_may(s, n, ns, &cmd->cred, MAY_R);
    if (rc == 0)
        rc = ns_check(cmd, ns);
    if (rc != 0)
        return rc;
    const struct meta__ext *x = meta__ext_of(s, n);
    int64_t off = xattr_find(x, cmd->name, cmd->name_len);
    if (off < 0)
        return -ENODATA;
    uint32_t vlen;
    memcpy(&vlen, x->xattrs + off + 1, 4);
    r->data_len = vlen;
    if (r->data_cap == 0)
        return 0;
    if (r->data_cap < vlen)
        return -ERANGE;
    memcpy(r->data, x->xattrs + off + 5 + cmd->name_len, vlen);
    return 0;
}

int meta__xattr_list(const struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t n = meta__find_ino(s, cmd->ino);
    uint32_t total = 0;

    if (n == META_NIL)
        return -ENOENT;
    const struct meta__ext *x = meta__ext_of(s, n);
    /* names the caller may see: trusted.* only to root */
    for (int pass = 0; pass < 2; pass++) {
        total = 0;
        for (uint32_t off = 0; x != NULL && off < x->xattr_bytes; off += entry_bytes(x, off)) {
            uint32_t nlen = x->xattrs[off];
            const char *name = (const char *)x->xattrs + off + 5;
            if (ns_of(name, nlen) == NS_TRUSTED && cmd->cred.uid != 0)
                continue;
            if (pass == 1) {
                memcpy((char *)r->data + total, name, nlen);
                ((char *)r->data)[total + nlen] = '\0';
            }
            total += nlen + 1;
        }
        r->data_len = total;
        if (r->data_cap == 0)
            return 0;
        if (r->data_cap < total)
            return -ERANGE;
    }
    return 0;
}

static int set_check(const struct meta_shard *s, const struct meta_cmd *cmd, uint32_t n,
                     enum xattr_ns ns, int64_t *off)
{
    int rc = xattr_may(s, n, ns, &cmd->cred, MAY_W);

    if (rc == 0)
        rc = ns_check(cmd, ns);
    if (rc != 0)
        return rc;
    *off = xattr_find(meta__ext_of(s, n), cmd->name, cmd->name_len);
    if (cmd->op == META_OP_REMOVEXATTR)
        return *off < 0 ? -ENODATA : 0;
    if ((cmd->flags & XATTR_CREATE) && *off >= 0)
        return -EEXIST;
    if ((cmd->flags & XATTR_REPLACE) && *off < 0)
        return -ENODATA;
    return 0;
}

/* setxattr and removexattr. */
int meta__xattr_set(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *r)
{
    uint32_t n = meta__find_ino(s, cmd->ino);
    enum xattr_ns ns;
    int64_t off;
    int rc = name_check(cmd, &ns);

    (void)r;
    if (rc != 0)
        return rc;
    if (cmd->op == META_OP_SETXATTR && cmd->value_len > META_XATTR_VALUE_MAX)
        return -E2BIG;
    if (cmd->op == META_OP_SETXATTR && (cmd->flags & ~(uint32_t)(XATTR_CREATE | XATTR_REPLACE)))
        return -EINVAL;
    if (n == META_NIL)
        return -ENOENT;
    rc = set_check(s, cmd, n, ns, &off);
    if (rc != 0)
        return rc;
    struct meta__ext *x = meta__ext_of(s, n);
    uint32_t old = off >= 0 ? entry_bytes(x, off) : 0;
    uint32_t add = cmd->op == META_OP_SETXATTR ? 5 + cmd->name_len + cmd->value_len : 0;
    uint32_t now = x != NULL ? x->xattr_bytes : 0;
    if (now - old + add > META_XATTR_BYTES_MAX)
        return -ENOSPC;

    /* reserve: the ext record, the new list, room to record the change */
    bool is_new_ext = x == NULL;
    rc = meta__reserve_side(s, 1);
    if (rc == 0 && is_new_ext)
        rc = meta__map_reserve(&s->exts, 1);
    if (rc != 0)
        return rc;
    uint8_t *list = now - old + add > 0 ? ar_malloc(now - old + add) : NULL;
    if (now - old + add > 0 && list == NULL)
        return -ENOMEM;
    if (is_new_ext) {
        x = ar_calloc(1, sizeof(*x));
        if (x == NULL) {
            ar_free(list);
            return -ENOMEM;
        }
        rc = meta__map_put(&s->exts, n, (uint64_t)(uintptr_t)x);
        AR_ASSERT(rc == 0); /* reserved */
        meta__node_flag(meta__node_at(s, n), NODE_HAS_EXT, true);
    }

    /* change: a replaced value keeps its place; a new one goes last */
    uint32_t at = off >= 0 ? (uint32_t)off : now; /* bytes kept before the new entry */
    if (at > 0)
        memcpy(list, x->xattrs, at);
    if (add > 0) {
        list[at] = (uint8_t)cmd->name_len;
        memcpy(list + at + 1, &cmd->value_len, 4);
        memcpy(list + at + 5, cmd->name, cmd->name_len);
        if (cmd->value_len > 0)
            memcpy(list + at + 5 + cmd->name_len, cmd->value, cmd->value_len);
        at += add;
    }
    if (off >= 0 && (uint32_t)off + old < now) {
        memcpy(list + at, x->xattrs + off + old, now - ((uint32_t)off + old));
        at += now - ((uint32_t)off + old);
    }
    ar_free(x->xattrs);
    x->xattrs = list;
    x->xattr_bytes = at;
    meta__set_times(s, n, NULL, cmd->now_ns);
    return 0;
}
