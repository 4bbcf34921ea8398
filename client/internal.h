/* client/internal.h - what the client module's files share; not public. */
#ifndef ARBOR_CLIENT_INTERNAL_H
#define ARBOR_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/* Monotonic milliseconds. */
static inline uint64_t client_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A 64-bit finalizer (splitmix64's): inode numbers come in runs. */
static inline uint64_t client_mix(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

/* ---- the disk block cache (cache.c) ----------------------------------------------------------
 * Blocks are immutable, so a cached copy is never stale: one file a block
 * in a directory, holding its bytes, named by the block's key and the
 * CRC32C of the bytes (a damaged copy is dropped, and the block read from
 * the store again).
 * The bytes held are bounded; the least recently used go first. Nor does
 * the cache fill its file system: with less than a tenth of it free, or
 * less than free_min bytes, a new block only takes the place of older
 * ones. All functions are thread-safe. */
struct block_cache;

/* What a mount's cache leaves free at least: under arbor up it shares its
 * disk with the store and the servers, whose reserves (128 and 256 MiB)
 * it must not eat into. */
#define BLOCK_CACHE_FREE_MIN (512ull << 20)

/* Open (creating) dir with a bound of max_bytes, leaving free_min bytes of
 * its file system free; the blocks already there are taken in, oldest
 * first. -errno, with errmsg. */
int block_cache_open(const char *dir, uint64_t max_bytes, uint64_t free_min,
                     struct block_cache **out, char *errmsg);
void block_cache_close(struct block_cache *c);
/* Copy block name's bytes [off, off + len) into dst: 0, or -ENOENT when it
 * is not cached (or its copy failed its check; then it is dropped). */
int block_cache_read(struct block_cache *c, const char *name, uint32_t off, uint32_t len,
                     void *dst);
/* A read-only descriptor of block name's copy, if it holds exactly len
 * bytes: the caller closes it. -ENOENT when there is none (or it failed
 * its check: then it is dropped). A copy this process neither wrote nor
 * read is checked first (once), since the caller's reader may read the
 * file without the cache. */
int block_cache_open_copy(struct block_cache *c, const char *name, uint32_t len);
/* Keep a block's bytes (best effort: a full disk only skips it). */
void block_cache_put(struct block_cache *c, const char *name, const void *data, uint32_t len);
/* The same, for a big block (BLOCK_CACHE_LATER_MIN or more) on the cache's
 * own thread a moment later (data is copied): a writer need not wait for
 * the copy. Not kept if 64 MiB already wait. A smaller one: at once. */
#define BLOCK_CACHE_LATER_MIN (1u << 20)
void block_cache_put_later(struct block_cache *c, const char *name, const void *data,
                           uint32_t len);

struct block_cache_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t bytes;      /* held now */
    uint64_t evicted;    /* blocks dropped to stay in bounds */
    uint64_t damaged;    /* copies that failed their check */
    uint64_t gone;       /* copies removed from under the cache (its directory cleaned) */
    uint64_t remade;     /* times its directory was found removed and made again */
    uint64_t crowded;    /* blocks that replaced older ones because the disk was short of space */
    uint64_t later;      /* big blocks a writer stored, queued to be kept */
    uint64_t not_kept;   /* of those, dropped: too many bytes waited */
};
void block_cache_stats(struct block_cache *c, struct block_cache_stats *out);

/* ---- attributes kept under lease (leased.c) --------------------------------------------------
 * The mount answers the kernel's lookups and getattrs from what leased
 * answers gave it while the promises behind them stand (client.h). All
 * functions are thread-safe; l may be NULL (nothing kept). */
#define LEASED_NAME_BYTES 48u  /* longer names are not kept */

struct leased;
struct ar_client;
struct ar_lease_stamp;
struct meta_attr;

/* slots: a power of two, the inodes (and names) kept at most. */
struct leased *leased_new(uint32_t slots);
void leased_free(struct leased *l);
/* Keep a (answered on shard to a request asked at asked_ms (mono ms),
 * with stamp taken when it came) and, with name, parent/name -> a->ino;
 * nothing if promises were lost or a notice named the inode since. */
void leased_keep(struct leased *l, struct ar_client *mc, uint32_t shard, const struct meta_attr *a,
                 const struct ar_lease_stamp *stamp, uint64_t asked_ms, uint64_t parent,
                 const char *name, size_t len);
/* The metadata client's on_notice (arg: the struct leased). */
void leased_notice(void *arg, uint64_t seq, const uint64_t *changed, uint32_t changed_count,
                   const uint64_t *renamed, uint32_t renamed_count);
/* What a lookup of parent/name or a getattr of ino answers now, if kept and
 * the promises stand with an answer from the leader within bound_ms; and
 * how long (ms) the answer may be kept further (ar_client_lease_left). */
bool leased_lookup(struct leased *l, struct ar_client *mc, uint64_t parent, const char *name,
                   size_t len, uint64_t bound_ms, struct meta_attr *out, uint64_t *left_ms);
bool leased_getattr(struct leased *l, struct ar_client *mc, uint64_t ino, uint64_t bound_ms,
                    struct meta_attr *out, uint64_t *left_ms);
/* Lookups and getattrs answered from what was kept. */
uint64_t leased_hits(const struct leased *l);

/* Kernel grants (leased.c): how long (ms) the kernel may keep what was kept
 * of parent/name -> a->ino (name not NULL) or of its attributes, if they
 * are a (what the kernel is told) and still stand, marked as
 * granted until the leader's promise ends; 0: no grant (keep to the bound).
 * Taken back through leased_take_back() when a notice names the inode, and
 * by leased_void(). */
#define LEASED_GRANT_BOUND_MIN_MS 1000u /* a shorter bound leaves too little time to take back */
/* A shard whose freshness (ar_client_lease_left) is down to this has all its
 * grants taken back (the rest of the bound is for the invalidations), and
 * gets no new one. */
#define LEASED_VOID_LEFT(bound_ms) ((bound_ms) * 3 / 4)
#define LEASED_GRANT_SHARDS 64u
uint64_t leased_grant(struct leased *l, struct ar_client *mc, uint64_t parent, const char *name,
                      size_t len, const struct meta_attr *a, uint64_t bound_ms);
/* A grant to take back: an inode's attributes (ino), or a name (parent). */
struct leased_item {
    uint64_t ino;
    uint64_t parent;
    uint8_t len;
    char name[256];
};
/* Take back whatever the kernel holds of parent/name: a rename on this
 * mount moves the kernel's entry, with what was granted to it, to a name
 * the tables do not know it by. Made before the rename (NULL: no memory,
 * and no rename), then queued (l may be NULL) or dropped. */
struct moved_name;
struct moved_name *leased_moved_new(uint64_t parent, const char *name, size_t len);
void leased_moved_take_back(struct leased *l, struct moved_name *mv);
void leased_moved_drop(struct moved_name *mv);
/* Up to max grants of a kind to take back, waiting up to wait_ms for one:
 * attributes (LEASED_ATTRS), or names (LEASED_NAMES; an invalidation of a
 * name waits for the kernel's lock on its directory). */
enum { LEASED_ATTRS, LEASED_NAMES };
uint32_t leased_take_back(struct leased *l, int kind, struct leased_item *out, uint32_t max,
                          uint64_t wait_ms);
/* Wake a leased_take_back() that waits. */
void leased_wake(struct leased *l);
/* Queue every grant made under another gen than gen, or on a shard in the
 * mask shards, to be taken back; how many. */
uint64_t leased_void(struct leased *l, uint64_t gen, uint64_t shards);
/* The shards with grants the kernel may still hold (a mask), and for each
 * an inode it granted. */
uint64_t leased_granted_shards(struct leased *l, uint64_t ino_out[LEASED_GRANT_SHARDS]);
void leased_grant_counts(const struct leased *l, uint64_t *grants, uint64_t *taken_back);

/* ---- the kernel's node ids (nodes.c) -------------------------------------------------------
 * Linux answers a rename between two names that lead to one kernel inode
 * itself. So that two names it keeps from different moments never lead
 * to one inode the servers did not give both (a name from before another
 * mount renamed the file, and its new name), a file whose names may have
 * changed since the kernel was given one is handed to it under an alias:
 * a node id of its own (NODE_ALIAS_BIT set), standing for the inode until
 * the kernel forgets it. Directories keep their inode numbers. All
 * functions are thread-safe; n may be NULL (inode numbers only). */
#define NODE_ALIAS_BIT (1ull << 63) /* never in an inode number */

struct nodes;
/* sets: a power of two; the table remembers sets * 4 inodes at most. */
struct nodes *nodes_new(uint32_t sets);
void nodes_free(struct nodes *n);
/* The node id under which the kernel is given parent/name -> a's inode, an
 * entry it may keep keep_ms: a->ino, or an alias, counted as one lookup of
 * it (0: no memory for an alias). is_new: an inode made by this request,
 * of which the kernel can keep no other name. */
uint64_t nodes_entry(struct nodes *n, uint64_t parent, const char *name, size_t len,
                     const struct meta_attr *a, uint64_t keep_ms, bool is_new);
/* What a link through node (of ino) must find the inode's ctime to be
 * (meta_cmd.if_ctime_ns): the moment every name the kernel keeps under
 * node was last known true. 0: not checked (no table, or the kernel asks
 * again before it uses any name of it); NODES_ASK_AGAIN: the kernel must
 * look its name up again first, as the table moved on from node or does
 * not hold ino (the link fails ESTALE, which Linux retries once after
 * walking the path afresh). */
#define NODES_ASK_AGAIN INT64_MIN
int64_t nodes_link_ctime(struct nodes *n, uint64_t node, uint64_t ino);
/* A link made through node (with if_ctime_ns, from nodes_link_ctime()):
 * the kernel's new name leads to it (counted); 0 without memory. */
uint64_t nodes_link(struct nodes *n, uint64_t node, const struct meta_attr *a, uint64_t keep_ms,
                    int64_t if_ctime_ns);
/* A rename on this mount moved parent/name of a's inode (a->ino 0: not
 * known; its attributes after) to new_parent/new_name: the kernel moved
 * its entry itself. NULL names: some name of it moved (an exchange). */
void nodes_renamed(struct nodes *n, const struct meta_attr *a, uint64_t parent, const char *name,
                   size_t len, uint64_t new_parent, const char *new_name, size_t new_len);
/* A rename on this mount moved the entry parent/name of a file it was not
 * told (a retried exchange's answer names one file): whatever node had
 * that one name goes under no new name (a scan of the table). */
void nodes_name_moved(struct nodes *n, uint64_t parent, const char *name, size_t len);
/* The kernel let go of count lookups of node (FORGET), or an answer that
 * counted one never reached it. */
void nodes_forget(struct nodes *n, uint64_t node, uint64_t count);
/* The inode node stands for: node itself unless an alias; 0 for an alias
 * the kernel let go of. */
uint64_t nodes_ino(struct nodes *n, uint64_t node);
/* Aliases made, and aliases the kernel holds now. */
void nodes_counts(struct nodes *n, uint64_t *made, uint64_t *live);

/* ---- the mount's guard (guard.c) ------------------------------------------------------------ */
/* The FUSE connection (its device's minor, the name fusectl gives it)
 * mounted on mountpoint, the top one there; with mountpoint NULL, whether
 * connection conn is mounted anywhere. From /proc/self/mountinfo, so never
 * a request to the file system itself. */
bool mount_conn_find(const char *mountpoint, uint32_t conn, uint32_t *out);
/* Abort connection conn: its requests fail ENOTCONN, the mount stays.
 * Through fusectl (mounted for the moment if it is not); false if that
 * cannot be done (fusectl absent and not root). */
bool mount_conn_abort(uint32_t conn);
/* Start program as the guard of connection conn; its PID, or 0 (logged). */
pid_t mount_guard_start(const char *program, uint32_t conn, const char *mountpoint);
/* End and reap the guard once the mount is gone (0: none): it must not
 * outlive the unmount, since the connection's number may be reused by
 * the next mount, which it would then abort. */
void mount_guard_stop(pid_t guard);

/* Lower the calling thread's CPU priority to the least (nice 19): work
 * that must not delay a server or a client sharing the machine. Best
 * effort: lowering needs no privilege. */
void ar_thread_lower_priority(void);

/* ---- the FUSE device (fusedev.c) -------------------------------------------------------------
 * The read and writev that ar_fuse_session_io() gives a session. */
struct fuse_custom_io;
const struct fuse_custom_io *fusedev_io(void);

/* FUSE passthrough: asked for (before the session starts), then whether
 * the kernel's INIT took it. */
void fusedev_want_passthrough(bool is_wanted);
bool fusedev_passthrough(void);
/* The unique id of the request the calling thread runs in fusedev_loop()
 * (0 on any other thread): what an answer in passthrough is sent with. */
uint64_t fusedev_unique(void);
/* Register fd (a local file the kernel may read for a FUSE file) on the
 * device: its id (> 0), or -errno (-ESHUTDOWN once the loop has ended).
 * Each id is closed once. */
int fusedev_backing_open(int fd);
void fusedev_backing_close(int id);
/* Answer the reader's OPEN `unique` in passthrough to backing_id, with
 * file handle fh and no FLUSH at close (in place of fuse_reply_open(); the
 * caller then ends its request with fuse_reply_none()): 0, or -errno
 * (-ENOENT: the open was interrupted). is_direct: its reads still come to
 * the mount (only an mmap uses the backing file), since every open of an
 * inode in passthrough must name its backing file. */
int fusedev_reply_passthrough(uint64_t unique, uint64_t fh, int backing_id, bool is_direct);

/* Requests over io_uring when the kernel offers them (the fuse module's
 * enable_uring; Linux 6.14 and later): asked for before the session
 * starts. */
void fusedev_want_uring(bool is_wanted);

/* What the loop asks of a request before it runs it (opcodes as the wire's). */
enum fuse_wire_op {
    FUSE_WIRE_LOOKUP = 1,
    FUSE_WIRE_FORGET = 2,
    FUSE_WIRE_GETATTR = 3,
    FUSE_WIRE_OPEN = 14,
    FUSE_WIRE_RELEASE = 18,
    FUSE_WIRE_INIT = 26,
    FUSE_WIRE_RELEASEDIR = 29,
    FUSE_WIRE_INTERRUPT = 36,
    FUSE_WIRE_DESTROY = 38,
    FUSE_WIRE_BATCH_FORGET = 42,
};

/* body: the request after its header, len bytes (an OPEN's starts with
 * its flags; a RELEASE's with the file handle, then the flags). Whether
 * the request's handler returns without waiting for anything (it answers
 * at once or from another thread). */
typedef bool (*fuse_quick_fn)(void *arg, uint32_t opcode, const uint8_t *body, size_t len);

/* Serve a session until it ends: the calling thread reads every request
 * and runs the quick ones itself, without sleeping between them; the
 * others go, with the buffer they arrived in, to `threads` threads that
 * run them. Signals reach only the calling thread (the pool blocks them),
 * so SIGTERM ends its read. 0 when the session ended, else -errno. */
struct fuse_session;
int fusedev_loop(struct fuse_session *se, uint32_t threads, fuse_quick_fn is_quick, void *arg);

/* ---- FUSE requests over io_uring (fusering.c) ------------------------------------------------
 * One session a process, driven by fusedev.c: prepared when the kernel's
 * INIT offers FUSE_OVER_IO_URING, started once the INIT reply took it,
 * stopped and released when the session's loop ends. run(ctx, request, len) gets each request as
 * a read of /dev/fuse would (header, then arguments), on its queue's
 * thread; the buffer stays valid until the request's reply. */
typedef void (*fusering_run_fn)(void *ctx, void *request, size_t len);
/* Rings and threads for device dev_fd, a queue a possible CPU, each entry
 * with payload bytes: 0, or -errno (no io_uring here). */
int fusering_prepare(int dev_fd, size_t payload, fusering_run_fn run, void *ctx);
bool fusering_prepared(void);
size_t fusering_payload(void);
/* The INIT reply took the rings: register their entries and serve. */
void fusering_start(void);
/* A reply (iov[0]: its 16-byte header, then its body): true if its request
 * came from a ring and the reply went back there. Any thread. */
bool fusering_reply(const struct iovec *iov, int count);
/* Run call(arg) on the thread of the queue that request `unique` came
 * from, where its reply goes back without a hand-over: true if queued
 * (call then replies, and runs even if the session ends first); false if
 * the request did not come from a ring. Any thread. */
typedef void (*fusering_call_fn)(void *arg);
bool fusering_call(uint64_t unique, fusering_call_fn call, void *arg);
/* The queues' threads send the replies left to them and end (nothing
 * more is run); then the rings go. Called once the pool has replied. */
void fusering_stop(void);
void fusering_release(void);

#endif
