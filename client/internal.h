/* client/internal.h - what the client module's files share; not public. */
#ifndef ARBOR_CLIENT_INTERNAL_H
#define ARBOR_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* ---- the disk block cache (cache.c) ----------------------------------------------------------
 * Blocks are immutable, so a cached copy is never stale: one file a block
 * in a directory, named by the block's key, with a CRC32C after the bytes
 * (a damaged copy is dropped, and the block read from the store again).
 * The bytes held are bounded; the least recently used go first. Nor does
 * the cache fill its file system: with less than a tenth of it free, a
 * new block only takes the place of older ones. All functions are
 * thread-safe. */
struct block_cache;

/* Open (creating) dir with a bound of max_bytes; the blocks already there
 * are taken in, oldest first. -errno, with errmsg. */
int block_cache_open(const char *dir, uint64_t max_bytes, struct block_cache **out, char *errmsg);
void block_cache_close(struct block_cache *c);
/* Copy block name's bytes [off, off + len) into dst: 0, or -ENOENT when it
 * is not cached (or its copy failed its check; then it is dropped). */
int block_cache_read(struct block_cache *c, const char *name, uint32_t off, uint32_t len,
                     void *dst);
/* Keep a block's bytes (best effort: a full disk only skips it). */
void block_cache_put(struct block_cache *c, const char *name, const void *data, uint32_t len);

struct block_cache_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t bytes;      /* held now */
    uint64_t evicted;    /* blocks dropped to stay in bounds */
    uint64_t damaged;    /* copies that failed their check */
    uint64_t crowded;    /* blocks that replaced older ones because the disk was short of space */
};
void block_cache_stats(struct block_cache *c, struct block_cache_stats *out);

/* Lower the calling thread's CPU priority to the least (nice 19): work
 * that must not delay a server or a client sharing the machine. Best
 * effort: lowering needs no privilege. */
void ar_thread_lower_priority(void);

/* ---- the FUSE device (fusedev.c) -------------------------------------------------------------
 * The read and writev that ar_fuse_parallel_dirops() gives a session. */
struct fuse_custom_io;
const struct fuse_custom_io *fusedev_io(void);

#endif
