/* meta/meta.h - arbor's metadata module, public header.
 *
 * It holds the base that meta/, client/ and tools/ share (style §1: error
 * codes, assertions, the allocator with fault injection, logging) and the
 * shard state machine: the POSIX namespace of one shard, in memory, changed
 * only by commands, so that every replica that applies the same commands
 * holds the same state, bit for bit.
 */
#ifndef ARBOR_META_H
#define ARBOR_META_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ------------------------------------------------------------------
 * Every function returns 0 or a negative code: an errno (arbor is a POSIX file
 * system, and libuv speaks -errno too) or one of arbor's own, above errno's
 * range. */
enum {
    AR_EBASE = 10000,
    AR_ENOTLEADER,  /* this replica does not lead the shard; retry at the hint */
    AR_EREDIRECT,   /* another shard owns the path; retry there */
    AR_ESTALEEPOCH, /* the request named an old shard epoch */
    AR_ECORRUPT,    /* stored bytes failed a check; FUSE sees EIO */
    AR_ECHUNKFULL,  /* a write to a chunk of META_CHUNK_SLICES_MAX slices: compact it first */
    AR_ELAST
};
_Static_assert(AR_EBASE > 4095, "arbor codes sit above every errno");

#define AR_ERRMSG_MAX 256u /* a one-line reason filled by start-up, config and store paths */

/* A static description of rc (negative errno or -AR_E*). Never NULL. */
const char *ar_strerror(int rc);
/* Write a reason into errmsg (AR_ERRMSG_MAX bytes; NULL: none) and return
 * rc, for the one-line `return ar_errorf(errmsg, -EIO, "...", ...)`. */
int ar_errorf(char *errmsg, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* mkdir -p: make path (absolute or relative) and each missing directory
 * above it with mode. 0, or the -errno of the first that could not be
 * made; a path that ends at something other than a directory is -ENOTDIR. */
int ar_mkdirs(const char *path, unsigned mode);
/* ns since the epoch as RFC 3339 in UTC with milliseconds
 * (2026-11-30T10:42:13.125Z); returns out. */
const char *ar_format_time(uint64_t ns, char *out, size_t cap);

/* ---- assertions ----------------------------------------------------------------
 * AR_ASSERT is always on, whatever NDEBUG says (style §5): it logs file:line,
 * the expression and a backtrace, then aborts. AR_DASSERT holds O(n) checks and
 * is compiled only with -Darbor_debug=true. Never assert on outside input. */
void ar_assert_fail(const char *file, int line, const char *expr) __attribute__((noreturn));
#define AR_ASSERT(x) ((x) ? (void)0 : ar_assert_fail(__FILE__, __LINE__, #x))
#if defined(AR_DEBUG)
#define AR_DASSERT(x) AR_ASSERT(x)
#else
#define AR_DASSERT(x) ((void)0)
#endif
#define AR_UNREACHABLE() ar_assert_fail(__FILE__, __LINE__, "unreachable")
#define AR_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define AR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- memory ----------------------------------------------------------------------
 * Every allocation of meta/, client/ and tools/ goes through these, so a test
 * can make the Nth call fail. ar_free(NULL) is a no-op. */
void *ar_malloc(size_t size);
void *ar_calloc(size_t count, size_t size);
void *ar_realloc(void *p, size_t size);
void ar_free(void *p);

/* Make allocations fail: after `skip` more succeed, the next `count` fail
 * (count 0 turns injection off). For tests; thread-safe. */
void ar_mem_fail_after(unsigned skip, unsigned count);

/* ---- logging -------------------------------------------------------------------- */
enum ar_log_level { AR_LOG_ERROR, AR_LOG_WARN, AR_LOG_INFO, AR_LOG_DEBUG };

typedef void (*ar_log_sink)(enum ar_log_level level, const char *line, void *data);

/* Log one line at level, if level is enabled (the check comes before any
 * formatting). Lines are cut at 1 KiB. Thread-safe. */
void ar_log(enum ar_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Messages above level are dropped. Default AR_LOG_INFO. */
void ar_log_set_level(enum ar_log_level level);
bool ar_log_is_enabled(enum ar_log_level level);

/* Send lines to sink (NULL: back to stderr with a timestamp). For tests and
 * daemons. data is passed back to every call. */
void ar_log_set_sink(ar_log_sink sink, void *data);

/* ---- the shard state machine -----------------------------------------------
 *
 * A shard owns directory trees. meta_shard_apply() changes it; every input it
 * needs (the time, a new inode number) is in the command, chosen once by the
 * leader, so apply reads no clock and no randomness. meta_shard_read()
 * answers queries and changes nothing. Both check permissions from the
 * command's credentials as Linux does, and fail with the errno Linux gives.
 */

struct meta_shard;

struct meta_cred {
    uint32_t uid;
    uint32_t gid;
    uint32_t group_count;   /* <= META_GROUPS_MAX */
    uint32_t groups[32];    /* supplementary groups */
};

/* What stat(2) shows, less what the client fills in (blksize, dev). */
struct meta_attr {
    uint64_t ino;
    uint32_t mode;     /* S_IFMT type and permission bits */
    uint32_t nlink;
    uint32_t uid;
    uint32_t gid;
    uint32_t rdev;
    uint64_t size;
    int64_t atime_ns;  /* since the epoch */
    int64_t mtime_ns;
    int64_t ctime_ns;
};

enum meta_op {
    META_OP_LOOKUP,   /* ino = dir, name              -> attr */
    META_OP_GETATTR,  /* ino                          -> attr */
    META_OP_ACCESS,   /* ino, mask (R_OK|W_OK|X_OK)   -> 0 or -EACCES */
    META_OP_READLINK, /* ino                          -> target */
    META_OP_READDIR,  /* ino, cookie, entry_cap, flags -> entries after cookie */
    META_OP_SETATTR,  /* ino, set_mask, set           -> attr */
    META_OP_MKNOD,    /* ino = dir, name, mode, rdev, new_ino -> attr (regular files too;
                       * with a session, the file is also open for it) */
    META_OP_MKDIR,    /* ino = dir, name, mode, new_ino       -> attr */
    META_OP_SYMLINK,  /* ino = dir, name, target, new_ino     -> attr */
    META_OP_LINK,     /* ino = file, new_dir, new_name        -> attr */
    META_OP_UNLINK,   /* ino = dir, name */
    META_OP_RMDIR,    /* ino = dir, name */
    META_OP_RENAME,   /* ino = dir, name, new_dir, new_name, flags (RENAME_*) */
    META_OP_GETXATTR, /* ino, name                      -> data (data_cap 0: its size) */
    META_OP_LISTXATTR,/* ino                            -> names, NUL after each */
    META_OP_SETXATTR, /* ino, name, value, flags (XATTR_CREATE, XATTR_REPLACE) */
    META_OP_REMOVEXATTR, /* ino, name */
    META_OP_STATFS,   /*                                -> files, bytes */
    META_OP_OPEN,     /* ino, session: the session holds the inode open */
    META_OP_RELEASE,  /* ino, session: one hold less; an unlinked inode goes with its last */
    META_OP_SESSION_CLOSE, /* session: every hold of the session ends (it closed or expired) */
    META_OP_WRITE,    /* ino, offset, slice: the slice's bytes now show at offset -> attr */
    META_OP_FALLOCATE,/* ino, flags (FALLOC_FL_*), offset, length -> attr */
    META_OP_READ_MAP, /* ino, offset: the chunk holding offset, resolved -> attr, slices */
    META_OP_ALLOC_SLICES, /* length: how many slice ids -> attr.ino the first, attr.size count */
    META_OP_MAP_SET,  /* the map shard: cookie = the version replaced, value = the new map */
    META_OP_MAP_GET,  /* the map shard: -> data = the encoded map (data_cap 0: its size) */
    META_OP_RESTORE_FILES, /* ino = dir, items, new_ino = the first item's number: files made
                            * whole (attributes, times, slices) -> attr of the last; root only */
};
#define META_OP_LAST META_OP_RESTORE_FILES /* the highest op */

/* ---- file data ------------------------------------------------------------------
 * A file is cut into chunks of META_CHUNK_BYTES. A write puts a slice (an
 * object of blocks of at most META_BLOCK_BYTES, written before the command)
 * over part of one chunk; slices stack, and a read sees the newest slice
 * that covers each byte. Bytes no slice covers read as zeros. */
#define META_CHUNK_BYTES (64u << 20)
#define META_BLOCK_BYTES (4u << 20)
/* Slices stacked in one chunk: a write past it is -EAGAIN until the client
 * compacts the chunk (rewrites it as one slice, which covers the rest). */
#define META_CHUNK_SLICES_MAX 1024u
/* One RESTORE_FILES command: files, pieces of them all, bytes of their
 * names and targets (each NUL-terminated). */
#define META_RESTORE_FILES_MAX  256u
#define META_RESTORE_PIECES_MAX 1024u
#define META_RESTORE_BYTES_MAX  (64u << 10)
#define META_READ_SLICES_MAX  (2u * META_CHUNK_SLICES_MAX + 1u) /* pieces of a resolved chunk */
/* An attribute lease lasts at least this long. Three minutes: files written
 * by a long job and stated after it, and a loader's pass over a working set
 * that takes minutes, are still held (docs/benchmarks.md). */
#define META_LEASE_MS         180000u
#define META_NOTICE_INOS_MAX  1024u   /* inodes of each kind in one change notice */
/* Close-to-open under leases. A leader answers a change that others were
 * told of (a notice) once each of them acked its notice, or
 * META_NOTICE_WAIT_MS after: so that a client that has not taken a notice
 * in may act on its leased answers without asking only while it holds an
 * answer to a request sent within META_FRESH_ASK_MS (any answer to a later
 * request comes behind the notice on the same connection). The wait runs
 * from the notice's write; the 50 ms between cover the two clocks' rates. */
#define META_FRESH_ASK_MS     200u
#define META_NOTICE_WAIT_MS   (META_FRESH_ASK_MS + 50u)

struct meta_slice {
    uint64_t id;   /* the slice's object; 0 is a hole: zeros */
    uint32_t size; /* bytes of the whole slice object (<= META_CHUNK_BYTES) */
    uint32_t off;  /* the first byte shown, in the slice */
    uint32_t len;  /* bytes shown */
    uint32_t pos;  /* where they show, in the chunk */
};

/* setattr: which fields of cmd->set to apply */
enum {
    META_SET_MODE = 1u << 0,
    META_SET_UID = 1u << 1,
    META_SET_GID = 1u << 2,
    META_SET_SIZE = 1u << 3,
    META_SET_ATIME = 1u << 4,     /* to set.atime_ns */
    META_SET_MTIME = 1u << 5,
    META_SET_ATIME_NOW = 1u << 6, /* to the command's time (UTIME_NOW) */
    META_SET_MTIME_NOW = 1u << 7,
};

/* A piece of a restored file's data: a slice shown at offset of the file
 * (within one chunk), as a WRITE would put it. */
struct meta_file_piece {
    uint64_t offset;
    struct meta_slice slice; /* id, size, off, len */
};

/* One file of META_OP_RESTORE_FILES: made as MKNOD or SYMLINK would, then
 * its pieces written, then its size, owner, mode and times set. */
struct meta_file_item {
    const char *name;       /* borrowed for the call */
    uint32_t name_len;
    uint32_t mode;          /* type and all permission bits (set-id too) */
    uint32_t uid;
    uint32_t gid;
    uint32_t rdev;
    int64_t atime_ns;
    int64_t mtime_ns;
    uint64_t size;          /* regular files */
    const char *target;     /* symlinks */
    uint32_t target_len;
    uint32_t piece_first;   /* its pieces: cmd->pieces[piece_first .. + piece_count) */
    uint32_t piece_count;
};

struct meta_cmd {
    enum meta_op op;
    struct meta_cred cred;
    int64_t now_ns;       /* mutations: the leader's time for this command */
    uint64_t new_ino;     /* mknod, mkdir, symlink: the leader's choice */
    uint64_t ino;         /* the inode, or the parent directory of name */
    const char *name;     /* borrowed for the call; not NUL-terminated */
    uint32_t name_len;
    uint64_t new_dir;     /* rename, link */
    const char *new_name;
    uint32_t new_name_len;
    uint32_t mode;        /* mknod, mkdir: type and permissions, umask applied */
    uint32_t rdev;
    uint32_t flags;       /* rename: RENAME_NOREPLACE, RENAME_EXCHANGE; access: mask;
                           * readdir: META_READDIR_ATTRS */
    uint32_t set_mask;    /* setattr: META_SET_* */
    struct meta_attr set; /* setattr: the new values */
    const char *target;   /* symlink */
    uint32_t target_len;
    const void *value;    /* setxattr: borrowed for the call */
    uint32_t value_len;
    uint64_t cookie;      /* readdir: 0 to start, else the last entry's cookie */
    uint32_t entry_cap;   /* readdir: room in the reply */
    /* Retries apply once (mutations): a client numbers its commands and says
     * which it has seen answered. client_id 0: not tracked. */
    uint64_t session;     /* open, release, session_close: the mount's session, > 0;
                           * mknod of a regular file: also open it for this one */
    uint64_t client_id;
    uint64_t seq;         /* this command's number, > 0 */
    uint64_t ack_below;   /* every seq below this was answered to the client */
    /* The shard epoch the command was accepted under; apply refuses another
     * with -AR_ESTALEEPOCH. 0: not checked (local tools; the server always
     * sets it). */
    uint64_t epoch;
    uint64_t offset;      /* write, fallocate, read_map: a byte of the file */
    uint64_t length;      /* fallocate */
    struct meta_slice slice; /* write: id, size, off, len (pos comes from offset) */
    const struct meta_file_item *items; /* restore_files: borrowed for the call */
    uint32_t item_count;
    const struct meta_file_piece *pieces;
    uint32_t piece_count;
    /* link: refused with -ESTALE unless the inode's ctime is this (the
     * moment the caller's name for it was last known true); 0: unchecked */
    int64_t if_ctime_ns;
    /* write: refused with -ESTALE unless the chunk it lands in is still as
     * a read_map's map_hash saw it (a compaction: the slice holds what the
     * chunk read then, and must not cover what changed since); 0: unchecked */
    uint64_t if_map_hash;
};

/* readdir's flags: each entry also carries its inode's attributes (what a
 * lookup would answer), so listing a directory and stating its names is one
 * round trip a page (FUSE's readdirplus) */
#define META_READDIR_ATTRS 1u

/* read_map's flags: the chunk's slices as they stack (bottom first, holes
 * with id 0 among them, cut at the file's size), not resolved into
 * pieces. Writing them again in that order (holes as punched holes) makes
 * the same chunk with no more slices than it has, where its pieces may be
 * twice as many (a restore of a chunk many small writes fragmented). */
#define META_READ_MAP_STACK 1u

struct meta_dirent {
    uint64_t ino;
    uint64_t cookie; /* pass it back to continue after this entry */
    uint32_t type;   /* S_IFMT bits */
    uint32_t name_len;
    char name[256];  /* NUL-terminated */
    struct meta_attr attr; /* with META_READDIR_ATTRS; else zero */
};

struct meta_reply {
    struct meta_attr attr;
    struct meta_attr other;         /* rename with RENAME_EXCHANGE: the file that moved
                                     * the other way (ino 0: not told) */
    char target[4096];              /* readlink: NUL-terminated */
    struct meta_dirent *entries;    /* readdir: the caller's array of entry_cap */
    uint32_t entry_count;
    bool is_end;                    /* readdir: no entries follow */
    void *data;                     /* getxattr, listxattr: the caller's buffer ... */
    uint32_t data_cap;              /* ... of this size; 0 asks only for the size */
    uint32_t data_len;              /* out: bytes of the value or the name list */
    uint64_t files;                 /* statfs: inodes in the shard */
    uint64_t bytes;                 /* statfs: bytes of all regular files */
    /* read_map: the chunk's bytes below the file size, in order, without gaps
     * (holes have id 0), in the caller's array of slice_cap */
    struct meta_slice *slices;
    uint32_t slice_cap;             /* META_READ_SLICES_MAX always suffices */
    uint32_t slice_count;
    uint64_t chunk_offset;          /* the chunk's first byte in the file */
    uint64_t map_hash;              /* read_map: the chunk's slices and the file's size
                                     * in it, hashed (never 0; a write's if_map_hash) */
};

/* ---- the shard map (map.c) --------------------------------------------------------
 * Shard 0 holds the map: the volume, the members, and per shard its epoch,
 * the root of its subtree and the ranges of numbers leased to it. Every shard
 * also holds its own entry (its identity): its replicas check a request's
 * epoch against it and give inode numbers and slice ids only from its
 * ranges, so numbers stay unique across shards. A map changes whole:
 * META_OP_MAP_SET carries the next map and the version it replaces. */
#define META_MAP_SHARD       0u          /* the group that holds the map */
#define META_ROOT_SHARD      1u          /* the shard that owns "/" from format on */
#define META_ROOT_INO        1u          /* "/"'s inode number */
#define META_MAP_SHARDS_MAX  64u
#define META_MAP_MEMBERS_MAX 7u
#define META_MAP_BYTES_ENC_MAX 8192u     /* an encoded map fits this */
#define META_ID_LEASE        (1ull << 40) /* numbers in a shard's first lease */
#define META_SLICES_ALLOC_MAX 65536u     /* slice ids one ALLOC_SLICES takes */
#define META_WINDOW_S_DEFAULT (7u * 86400u) /* the recovery window: 7 days */

struct meta_shard_info {
    uint32_t id;
    uint64_t epoch;               /* > 0; grows when the subtree or ranges change */
    uint64_t root_ino;            /* the subtree's root; 0 for the map shard */
    uint64_t ino_lo, ino_hi;      /* inode numbers and entry keys leased: [lo, hi) */
    uint64_t slice_lo, slice_hi;  /* slice ids leased: [lo, hi) */
};

struct meta_map_member {
    uint64_t id;
    char raft_addr[64];
    char client_addr[64];
};

struct meta_map {
    uint64_t version;             /* 0: not yet seeded; each MAP_SET adds one */
    char volume[64];
    char store_url[256];          /* where blocks go: file://DIR or s3://... */
    uint32_t block_bytes;         /* <= META_BLOCK_BYTES */
    uint32_t window_s;            /* the recovery window */
    uint64_t ino_next;            /* numbers from here up are leased to no shard */
    uint64_t slice_next;
    uint32_t member_count;
    struct meta_map_member members[META_MAP_MEMBERS_MAX];
    uint32_t shard_count;
    struct meta_shard_info shards[META_MAP_SHARDS_MAX]; /* ascending id */
};

/* A shard's identity when the cluster is formatted: shard 0 (the map) and
 * shard 1 ("/", the first lease of inode numbers and slice ids). */
void meta_shard_info_first(uint32_t shard, struct meta_shard_info *out);
/* The first map: these members and volume, shards 0 and 1 as above. */
void meta_map_seed(struct meta_map *m);
/* Encode m; -EMSGSIZE if cap is too small, -EINVAL if m fails the checks. */
int meta_map_encode(const struct meta_map *m, uint8_t *buf, size_t cap, size_t *len);
/* Decode and check: counts and strings in bounds, ids unique, ranges below
 * the next free numbers and disjoint. -EPROTO or -EINVAL. */
int meta_map_decode(const uint8_t *buf, size_t len, struct meta_map *out);
/* The shard's identity and (shard 0) its map. */
const struct meta_shard_info *meta_shard_self(const struct meta_shard *s);
const struct meta_map *meta_shard_map(const struct meta_shard *s);
/* The next slice id ALLOC_SLICES would give. */
uint64_t meta_shard_slice_next(const struct meta_shard *s);

struct meta_shard_config {
    struct meta_shard_info self; /* id 0 and epoch 0: shard 1's first identity */
    uint64_t root_ino;       /* the directory this shard owns; 1 for "/" */
    int64_t created_ns;      /* the root's times */
    uint32_t root_mode;      /* permission bits of the root, e.g. 0755 */
    uint32_t root_uid;
    uint32_t root_gid;
};

/* Make an empty shard that holds only its root directory. -ENOMEM. */
int meta_shard_new(const struct meta_shard_config *cfg, struct meta_shard **out);
void meta_shard_free(struct meta_shard *s);

/* Apply one mutating command. Returns 0 (reply filled) or the errno Linux
 * gives for the same case, negated; on error nothing changed. -EINVAL for a
 * query op. Deterministic: depends only on the state and the command.
 * A command with a client_id whose seq was applied before is not applied
 * again: its first result and reply attributes come back. A seq below the
 * client's ack_below is -ESTALE (it was answered; no client retries it). */
int meta_shard_apply(struct meta_shard *s, const struct meta_cmd *cmd, struct meta_reply *reply);
/* Whether cmd (client_id, seq) was applied before and its answer is kept:
 * a retry, which meta_shard_apply() answers without changing anything. */
bool meta_shard_is_answered(const struct meta_shard *s, const struct meta_cmd *cmd);

/* Whether op only reads (meta_shard_read()) rather than changes
 * (meta_shard_apply()): a server reads it without a log entry, a client
 * needs no sequence number for it. */
bool meta_op_is_query(enum meta_op op);

/* Answer a query (lookup, getattr, access, readlink, readdir). -EINVAL for a
 * mutating op. */
int meta_shard_read(const struct meta_shard *s, const struct meta_cmd *cmd,
                    struct meta_reply *reply);

/* A hint that cmd is applied or read soon: start fetching the memory its
 * lookups touch. An apply loop over a batch of committed commands calls it a
 * few commands ahead, so their cache misses overlap instead of queueing.
 * Changes nothing and checks nothing; any command may be passed. */
void meta_shard_prefetch(const struct meta_shard *s, const struct meta_cmd *cmd);

/* Every slice id the shard's files name (a slice may come more than once;
 * holes are not slices): block garbage collection keeps their blocks. */
void meta_shard_each_slice(const struct meta_shard *s, void (*fn)(void *ctx, uint64_t id),
                           void *ctx);

/* A hash of the whole state, for comparing replicas; equal states give equal
 * hashes whatever the order of their internal tables. */
uint64_t meta_shard_hash(const struct meta_shard *s);

/* Counters of the shard: inodes, entries, bytes of memory it holds. */
struct meta_shard_stats {
    uint64_t inode_count;
    uint64_t entry_count;
    uint64_t memory_bytes;
    uint64_t ino_high;    /* the largest inode number or link key used: a leader
                           * gives new ones above it */
};
void meta_shard_stats(const struct meta_shard *s, struct meta_shard_stats *out);
/* The sessions that hold an inode open, ascending, at most cap of them;
 * returns how many were written. A new leader learns them here. */
uint32_t meta_shard_sessions(const struct meta_shard *s, uint64_t *out, uint32_t cap);

/* ---- commands on the wire ------------------------------------------------------
 * A command travels as a protobuf message (meta/meta.proto). Decoding checks
 * every field against meta/limits.h and copies it out, so the decoded command
 * owns its bytes and the message is freed before the call returns. */

/* A decoded command with room for the bytes it points to. */
#define META_UNPACK_ARENA_BYTES (128u << 10) /* a full RESTORE_FILES batch fits */

struct meta_cmd_buf {
    struct meta_cmd cmd; /* name, new_name, target, items point into the arrays below */
    char name[256];
    char new_name[256];
    char target[4096];
    uint8_t value[65536];
    struct meta_file_item items[META_RESTORE_FILES_MAX];
    struct meta_file_piece pieces[META_RESTORE_PIECES_MAX];
    char item_bytes[META_RESTORE_BYTES_MAX]; /* the items' names and targets */
    /* scratch for decoding: the protobuf message's pieces are carved from
     * it (a restore batch's hundreds of them are otherwise a malloc each) */
    _Alignas(16) uint8_t unpack_arena[META_UNPACK_ARENA_BYTES];
};

/* Encode cmd into buf[0..cap). On 0, *len is the bytes written. -EMSGSIZE if
 * cap is too small; -EINVAL or -ENAMETOOLONG for a command past the limits
 * (never encoded, so never in a log). */
int meta_cmd_encode(const struct meta_cmd *cmd, uint8_t *buf, size_t cap, size_t *len);

/* Decode and check a command from bytes a peer or the disk gave. -EMSGSIZE
 * (over META_MSG_BYTES_MAX), -EPROTO (not a command), -EINVAL (an unknown op
 * or too many groups), -ENAMETOOLONG (a name or target too long), -E2BIG
 * (an xattr value too long). */
int meta_cmd_decode(const uint8_t *buf, size_t len, struct meta_cmd_buf *out);

/* ---- the client protocol (rpc_wire.c, meta/rpc.proto) --------------------------
 * Frames of [u32 little-endian length][Request or Response] on a TCP
 * connection; many requests in flight, matched by id. Decoding checks every
 * field (the command as meta_cmd_decode() does, the reply against
 * meta/limits.h) and copies it out. */
#define META_FRAME_BYTES_MAX (5u << 20) /* a command (META_MSG_BYTES_MAX) and its envelope */

enum meta_req_kind {
    META_REQ_COMMAND = 1, /* a query or a mutation of a shard */
    META_REQ_SESSION_OPEN,
    META_REQ_HEARTBEAT,   /* keeps a session alive */
    META_REQ_STATUS,      /* the replica's view of its groups (any replica answers) */
    META_REQ_ADMIN,       /* a change of members or leader (at the leader) */
    META_REQ_NOTICE_ACK,  /* change notices taken in (notice); never answered */
};
/* What an admin request asks of the group; target names the node. Members
 * change one at a time: a new node joins as a learner (it catches up but
 * does not vote), then is promoted. Answered once the change is proposed;
 * status shows when it took effect. */
enum meta_admin_op {
    META_ADMIN_TRANSFER = 1, /* hand leadership to target */
    META_ADMIN_ADD_LEARNER,
    META_ADMIN_PROMOTE,
    META_ADMIN_REMOVE,
    META_ADMIN_SET_WINDOW,   /* the map shard: the recovery window becomes target seconds */
};
enum meta_read_mode {
    META_READ_LINEARIZABLE = 0, /* at the leader: within its lease, else a ReadIndex round */
    META_READ_INDEX,            /* at the leader, always a ReadIndex round (no clock bound) */
    META_READ_FOLLOWER,         /* any replica at most stale_ms behind */
};

struct meta_request {
    uint64_t id;
    uint32_t shard;
    uint64_t epoch;
    enum meta_req_kind kind;
    enum meta_read_mode read_mode;
    uint32_t stale_ms;
    uint64_t session;
    uint32_t data_cap;
    enum meta_admin_op admin;
    uint64_t target;
    bool is_background; /* background work (arbor restore): a leader paces it */
    bool wants_lease;   /* tell this connection when the reply's inode changes */
    uint64_t notice;    /* NOTICE_ACK: the last change notice taken in */
};

/* Encode a request (cmd for META_REQ_COMMAND, else NULL) into buf[0..cap)
 * as a whole frame. Returns -EMSGSIZE, -EINVAL, -ENAMETOOLONG, -E2BIG. */
int meta_request_encode(const struct meta_request *req, const struct meta_cmd *cmd, uint8_t *buf,
                        size_t cap, size_t *len);
/* Decode a request's message (a frame without its length); the command
 * goes into *cmd (a kind without one leaves it zeroed). -EPROTO for bytes
 * that are not a request, -EINVAL (or -ENAMETOOLONG, -E2BIG) for a field
 * out of range. req->id is set whenever the bytes were a request, even
 * one refused, so the refusal can be answered to its call (0 if not). */
int meta_request_decode(const uint8_t *buf, size_t len, struct meta_request *req,
                        struct meta_cmd_buf *cmd);

#define META_STATUS_GROUPS_MAX 8u
#define META_ARCHIVE_ERROR_BYTES 256u /* status: why the archive fails, with its NUL */
#define META_STATUS_PEERS_MAX  11u

/* One group as a replica sees it (META_REQ_STATUS). */
struct meta_group_status {
    uint32_t shard;
    uint32_t role;         /* enum raft_role */
    uint64_t term;
    uint64_t leader;
    uint64_t commit;
    uint64_t applied;
    uint64_t last;
    uint64_t checkpoint;
    uint64_t files;
    uint64_t memory_bytes;     /* the shard state in memory */
    uint64_t log_bytes;        /* the segment log on disk */
    uint64_t checkpoint_bytes; /* the LMDB checkpoint on disk */
    uint64_t archived;         /* at the leader: entries below it are archived (0: unknown) */
    uint64_t archive_tail_bytes; /* applied entries held for the archive */
    /* at the leader, background commands (RESTORE_FILES), see rpc.proto */
    uint32_t background_waiting;
    uint64_t background_done;
    uint64_t background_yielded;
    uint32_t background_busy_peak;
    uint32_t peer_count;   /* at the leader */
    uint64_t peer_ids[META_STATUS_PEERS_MAX];
    uint64_t peer_match[META_STATUS_PEERS_MAX];
    uint32_t voter_count;
    uint32_t learner_count;
    uint64_t voters[META_STATUS_PEERS_MAX];
    uint64_t learners[META_STATUS_PEERS_MAX];
};

struct meta_response {
    uint64_t id;
    int32_t rc;
    uint64_t leader;
    char leader_addr[64];
    uint64_t epoch;
    uint64_t session;
    uint32_t session_timeout_ms;   /* session open, heartbeat: heartbeats must come sooner */
    uint64_t node;                 /* status */
    uint64_t disk_free_bytes;      /* status: the data directory's disk, free to it */
    uint64_t disk_reserve_bytes;   /* status: below this a leader refuses growth (ENOSPC) */
    uint64_t memory_available_bytes; /* status: MemAvailable */
    char archive_error[META_ARCHIVE_ERROR_BYTES]; /* status: why the archive fails, "" */
    uint32_t group_count;
    struct meta_group_status groups[META_STATUS_GROUPS_MAX];
    struct meta_reply reply; /* entries, data and slices point into a meta_response_buf */
    /* Attribute leases (rpc.proto): a reply's lease, or a change notice
     * (id 0, lease set) naming changed inodes; the arrays point into a
     * meta_response_buf, at most META_NOTICE_INOS_MAX each. */
    uint64_t lease;
    uint32_t shard;
    uint32_t changed_count;
    uint32_t renamed_count;
    const uint64_t *changed;
    const uint64_t *renamed;
    uint64_t notice;        /* a change notice's number on its connection, from 1 */
};

/* A decoded response with room for everything a reply may hold (the
 * sizes are META_READDIR_MAX and META_XATTR_BYTES_MAX of meta/limits.h). */
struct meta_response_buf {
    struct meta_response r;
    struct meta_dirent entries[1024];
    struct meta_slice slices[META_READ_SLICES_MAX];
    uint8_t data[256u << 10];
    uint64_t changed[META_NOTICE_INOS_MAX];
    uint64_t renamed[META_NOTICE_INOS_MAX];
};

/* Encode the response to op as a whole frame; only the fields op fills
 * travel. -EMSGSIZE when buf is too small. */
int meta_response_encode(const struct meta_response *resp, enum meta_op op, uint8_t *buf,
                         size_t cap, size_t *len);
int meta_response_decode(const uint8_t *buf, size_t len, struct meta_response_buf *out);
/* A response's id without decoding the rest (to pick the buffer to decode
 * it into). -EPROTO for bytes that are not protobuf fields. */
int meta_response_id(const uint8_t *buf, size_t len, uint64_t *id);


/* ---- the checkpoint in LMDB ---------------------------------------------------
 *
 * A shard's applied state is written behind into an LMDB environment, with the
 * log index it reflects in the same transaction; a restart loads it and needs
 * only the log after that index. Writing is split so that apply never waits
 * for a disk: meta_shard_collect() turns what changed into a batch on the
 * apply thread, meta_checkpoint_commit() writes the batch on any thread.
 *
 * Records are keyed by inode number and by (parent inode, name), never by
 * memory layout, so replicas that applied the same log hold the same records.
 * Every record carries a checksum; a bad record, a truncated or foreign file
 * is -AR_ECORRUPT with a reason, and nothing is loaded half.
 */

struct meta_checkpoint;
struct meta_ckpt_batch;

/* Open (creating if needed) the checkpoint in directory dir. -AR_ECORRUPT for
 * a damaged or foreign environment, else the errno of the failure. */
int meta_checkpoint_open(const char *dir, struct meta_checkpoint **out, char *errmsg);
void meta_checkpoint_close(struct meta_checkpoint *c);

/* The applied index stored, 0 for a new checkpoint. */
uint64_t meta_checkpoint_applied_index(const struct meta_checkpoint *c);

/* Start recording changes for a checkpoint: the next collect holds the whole
 * state, later ones what changed since the one before. Call once, before
 * the first collect. -ENOMEM. */
int meta_shard_track(struct meta_shard *s);

/* Drain the changes since the last collect into a new batch that carries
 * applied_index. On 0 the caller owns *out. -ENOMEM leaves the changes
 * recorded, for the next try. */
int meta_shard_collect(struct meta_shard *s, uint64_t applied_index, struct meta_ckpt_batch **out);
void meta_ckpt_batch_free(struct meta_ckpt_batch *b);
/* Changes recorded since the last collect (inodes and entries; a collect
 * costs about this many records), UINT64_MAX when it must take everything. */
uint64_t meta_shard_dirty_count(const struct meta_shard *s);
/* Attribute leases (meta/server.c): a mark taken just before an apply,
 * then the inodes that apply changed, each given to fn, and how many;
 * -ENOENT when the shard cannot tell (it tracks no changes, or its next
 * collect takes the whole state). A command applied before (a retry) and
 * answered from the retry table changes nothing. */
uint32_t meta_shard_change_mark(struct meta_shard *s);
bool meta_shard_tells_changes(const struct meta_shard *s);
int meta_shard_changes_since(const struct meta_shard *s, uint32_t mark,
                             void (*fn)(void *arg, uint64_t ino), void *arg);
uint64_t meta_ckpt_batch_records(const struct meta_ckpt_batch *b);
uint64_t meta_ckpt_batch_index(const struct meta_ckpt_batch *b); /* the applied index it carries */

/* Write a batch in one transaction, durably. Batches must be committed in
 * the order they were collected. A failed commit is sticky (style §3): the
 * checkpoint refuses later commits with -EIO. The batch stays the caller's. */
int meta_checkpoint_commit(struct meta_checkpoint *c, const struct meta_ckpt_batch *b,
                           char *errmsg);
/* The same for count batches, in the order collected, in one transaction:
 * collect often (each collect holds the apply thread briefly), commit
 * seldom (each commit syncs the disk). */
int meta_checkpoint_commit_all(struct meta_checkpoint *c, const struct meta_ckpt_batch *const *bs,
                               uint32_t count, char *errmsg);

/* Build a shard from the checkpoint. On 0, *out is a new shard that tracks
 * changes (its first collect is incremental) and *applied_index the index it
 * reflects. -AR_ECORRUPT (with the record that failed) or -ENOMEM; on error
 * nothing is returned. */
int meta_checkpoint_load(struct meta_checkpoint *c, struct meta_shard **out,
                         uint64_t *applied_index, char *errmsg);

/* Write a consistent copy of the checkpoint to fd (a file, a pipe, a socket)
 * while commits go on: a snapshot for a follower or the object store. */
int meta_checkpoint_export(struct meta_checkpoint *c, int fd, char *errmsg);

/* Make the checkpoint directory dir (absent or empty) from a stream that
 * meta_checkpoint_export() wrote, reading fd to its end. The copy is loaded
 * and checked before it takes its final name; on error dir is left as it was. */
int meta_checkpoint_import(const char *dir, int fd, char *errmsg);

/* ---- point-in-time rebuild (archive.c) ---------------------------------------------
 * Each shard's leader archives its committed log and, now and then, its
 * checkpoint in the volume's object store (keys under pitr/; formats in
 * docs/wire-protocol.md). From those, a shard is rebuilt as it was at any
 * moment of the recovery window: the newest archived checkpoint at or
 * before the moment, then the entries after it up to the last one whose
 * time is not past the moment. */
struct obj_store;

/* The shard as `arbor format` leaves it (its root only): the state before
 * the log's first entry. -ENOMEM. */
int meta_shard_new_first(uint32_t shard, struct meta_shard **out);

/* Called for each command replayed, before (is_before) and after it applies
 * (after only if it applied): --list uses it to see what changed a path. */
typedef void (*meta_replay_fn)(void *ctx, const struct meta_shard *s, const struct meta_cmd *cmd,
                               uint64_t hlc_ns, bool is_before);

struct meta_rebuild_options {
    uint32_t shard;
    uint64_t at_ns;            /* the moment, in the entries' time (ns since the epoch);
                                * UINT64_MAX: all that is archived */
    bool is_from_oldest;       /* start from the oldest state archived, not the newest
                                * before at_ns (to watch every change of the window) */
    const char *scratch_dir;   /* an existing directory for the checkpoint's copy (the
                                * rebuild removes it again) */
    void (*progress)(void *ctx, const char *stage, uint64_t done, uint64_t total);
    meta_replay_fn watch;      /* NULL: none */
    void (*on_base)(void *ctx, const struct meta_shard *s); /* the state replay starts
                                * from, once loaded (NULL: none) */
    void (*on_bridge)(void *ctx, const struct meta_shard *s); /* with is_from_oldest and
                                * at_ns UINT64_MAX: a hole in the log (entries no leader
                                * could archive) is crossed by the first checkpoint at or
                                * past its end, loaded and given here, and replay goes on
                                * from it; NULL: a hole is -ERANGE */
    void *ctx;                 /* for progress, watch, on_base and on_bridge */
};

struct meta_restore_point {
    uint64_t base_index;       /* the checkpoint started from (0: the empty shard) */
    uint64_t index;            /* the last entry applied */
    uint64_t hlc_ns;           /* its time */
    uint64_t entries;          /* commands replayed */
    uint64_t oldest_ns;        /* the earliest moment the archive can rebuild */
    uint64_t newest_ns;        /* the archive holds all that was committed by here */
};

/* Rebuild the shard at o->at_ns from the archive in st. On 0, *out is the
 * shard (the caller frees it) and *pt says which state it is. Errors, with
 * errmsg: -ENOENT (no archive of the shard), -ERANGE (the moment is before
 * the window, or falls where entries are missing), -EAGAIN (the moment is
 * later than the archive reaches yet), -AR_ECORRUPT (an archived object is
 * damaged), the store's errors, -ENOMEM. An object removed by the window's
 * expiry while it was read makes it start over (at most three times): the
 * callbacks may then see the same commands again. */
int meta_archive_rebuild(struct obj_store *st, const struct meta_rebuild_options *o,
                         struct meta_shard **out, struct meta_restore_point *pt, char *errmsg);

/* A restore's pin of the moment at_ns of shard: while it is fresh
 * (META_PIN_TTL_S from its making), the window's expiry keeps what a
 * rebuild at that moment needs, and block gc does not pass it, so a long
 * restore of a moment near the window's start keeps its blocks. The key
 * goes into key (META_PIN_KEY_MAX); meta_archive_unpin() removes it. */
#define META_PIN_TTL_S   (24u * 3600u)
#define META_PIN_KEY_MAX 96u
int meta_archive_pin(struct obj_store *st, uint32_t shard, uint64_t at_ns, char *key,
                     char *errmsg);
int meta_archive_unpin(struct obj_store *st, const char *key, char *errmsg);

/* The archive of shard holds every entry committed by *as_of_ns (the
 * leader's wall clock when it wrote its head: an idle moment, at least
 * every 10 s while the shard is idle, not while entries keep coming).
 * -ENOENT: no head yet. */
int meta_archive_head_as_of(struct obj_store *st, uint32_t shard, uint64_t *as_of_ns,
                            char *errmsg);

/* ---- block garbage collection (gc.c) -------------------------------------------------
 * A block is deleted only when no live file names its slice and no state
 * inside the recovery window did (design §7), so any restore inside the
 * window finds its blocks. From the archive: the oldest state it holds (at
 * or before the window's start) and every command since name the slices to
 * keep; slice ids taken since that state are kept too (a client may have
 * written blocks it has not named yet). Anything it depends on failing (a
 * listing, a fetch, an archive that lags) stops it before it deletes. */
struct meta_gc_report {
    uint64_t named;            /* distinct slices named in the window */
    uint64_t keep_from;        /* slice ids from here up are kept (taken in the window) */
    uint64_t blocks;           /* blocks in the store */
    uint64_t bytes;
    uint64_t garbage_blocks;   /* blocks of slices nothing in the window names */
    uint64_t garbage_bytes;
    uint64_t deleted_blocks;   /* (0 with is_dry_run) */
    uint64_t deleted_bytes;
    struct meta_restore_point point; /* the archive's end the pass saw */
};

struct meta_gc_options {
    uint32_t shard;
    uint64_t now_ns;           /* the archive must reach close to this */
    bool is_dry_run;           /* report, delete nothing */
    const char *scratch_dir;
    void (*progress)(void *ctx, const char *stage, uint64_t done, uint64_t total);
    void *ctx;
};

/* One pass over the store st. On error (with errmsg) nothing more is
 * deleted; *rep says what was done up to there. */
int meta_gc_run(struct obj_store *st, const struct meta_gc_options *o, struct meta_gc_report *rep,
                char *errmsg);

/* ---- the metadata server (server.c) ---------------------------------------------
 * A replica of the cluster's shard groups, served over TCP: one libuv loop,
 * one Raft transport, one tick for all its groups (shard 0, the map, and
 * shard 1, "/").
 * Clients speak the protocol above. See docs/architecture.md. */
#define META_SERVER_NODES_MAX 7u

struct meta_server_node {
    uint64_t id;
    char raft_addr[64];   /* host:port of the Raft transport */
    char client_addr[64]; /* host:port clients connect to */
};

struct meta_server_config {
    uint64_t id;                /* this replica */
    char data_dir[512];
    char volume[64];
    char store_url[256];        /* where the volume's blocks go (file://DIR, s3://...) */
    uint32_t block_bytes;       /* 0: META_BLOCK_BYTES */
    uint32_t window_s;          /* the recovery window; 0: META_WINDOW_S_DEFAULT */
    int64_t created_ns;         /* when this replica was formatted (the cluster file says) */
    uint32_t log_keep;          /* entries kept in memory below a checkpoint for lagging
                                 * followers; further behind, they get a snapshot */
    uint32_t session_timeout_ms; /* a session silent this long is closed (0: 30 s) */
    uint32_t archive_ms;        /* a leader archives its new entries this often (0: 2000) */
    uint32_t archive_ckpt_s;    /* and its checkpoint (0: 3600) */
    uint32_t gc_every_s;        /* the leader's block gc pass (0: never) */
    uint64_t log_segment_bytes; /* seal a log segment past this (0: the log's default) */
    bool has_log_retain;        /* else sealed segments below the checkpoint stay for the
                                 * recovery window ... */
    uint32_t log_retain_s;      /* ... not this long */
    uint64_t disk_reserve_bytes; /* a leader whose disk has less free refuses growth
                                 * with ENOSPC (0: 256 MiB) */
    uint32_t node_count;
    struct meta_server_node nodes[META_SERVER_NODES_MAX];
    uint32_t voter_count;       /* format: the first members (0: every node); the others
                                 * join later (arbor member add) */
    uint64_t voters[META_SERVER_NODES_MAX];
};

struct meta_server;
struct uv_loop_s;

/* Make data_dir a formatted replica of the cluster in cfg (its groups'
 * logs with the members, and the cluster file last). -EEXIST if it is
 * already formatted, -EINVAL, or the disk's error; errmsg says which. */
int meta_server_format(const struct meta_server_config *cfg, char *errmsg);
/* Read data_dir's cluster file into out (cluster.c). A file that is not
 * whole and exactly as arbor format writes it is -EINVAL, errmsg naming the
 * line and what is wrong; a missing one the error of open(2). */
int meta_cluster_load(const char *data_dir, struct meta_server_config *out, char *errmsg);
/* "IP:PORT" (an IPv4 or IPv6 literal, a port of 1..65535) into host and
 * port; -EINVAL for anything else. */
int meta_addr_parse(const char *addr, char *host, size_t cap, uint16_t *port);
/* Load the groups (checkpoint, then log) and start serving on loop.
 * Errors say what: port in use, a data directory that is not formatted or
 * holds another cluster, a damaged log or checkpoint. */
int meta_server_start(struct uv_loop_s *loop, const struct meta_server_config *cfg,
                      struct meta_server **out, char *errmsg);
/* Stop taking work and close every handle; run the loop until it returns
 * (in-flight log writes finish), then meta_server_free(). */
void meta_server_stop(struct meta_server *s);
void meta_server_free(struct meta_server *s);

#endif /* ARBOR_META_H */
