/* client/mount.c - the FUSE mount (libfuse3's low-level API; design §6).
 *
 * FUSE inode numbers are arbor's (the root is 1 on both sides), so the
 * mount keeps no inode table: every operation is one or a few metadata
 * calls (client.h) with the caller's credentials. The kernel checks
 * permissions (default_permissions, Linux's order), and the server again.
 *
 * Write path: each open file buffers contiguous writes (at most two blocks,
 * never across a chunk); on flush, fsync, release, a write elsewhere, or a
 * full buffer, the bytes go to the store as a new slice (its blocks put in
 * parallel) and only then is the slice committed to the shard (WRITE).
 * Data is in the store before any metadata names it. The bytes all files
 * hold are bounded: past the budget a write commits at once.
 *
 * Read path: the chunk's resolved slices (READ_MAP; a reader's open
 * resolves chunk 0 and its reads use that for up to the attribute timeout,
 * while this mount changes nothing), then the blocks, from
 * a small in-memory cache, the disk cache (cache.c) or the store (whose
 * CRC32Cs are checked on every read: a bad block is EIO, never wrong
 * bytes). Holes read as zeros. A block read in pieces is fetched once:
 * the reads that want it while it is on its way wait for it (ahead[]). A
 * sequential reader has the next two blocks fetched ahead, by threads of
 * their own (ahead_main), while the kernel has several of its reads in
 * flight (it reads 4 MiB ahead: --read-ahead). A stat, truncation or read
 * of an inode first commits what this mount's open files of it hold.
 *
 * Kept pages: the kernel drops a file's cached pages at every open unless
 * the open says FOPEN_KEEP_CACHE. A reader's open says it when its
 * READ_MAP finds the same size, mtime and ctime (the leader's clock; every
 * data change sets ctime) that this mount recorded at the last open, and
 * nothing since may have put other bytes in those pages: a write or a
 * writer's open here, or a read that used another version (checked after
 * its reply is in the pages, so a read racing an open is seen by one of
 * the two). A training job's next epoch then reads the kernel's pages.
 *
 * Passthrough: a reader of a file that is one block cached on disk is
 * answered so that the kernel reads the copy itself (io_open(); fusedev.c
 * speaks the protocol). The kernel wants an inode's opens all in
 * passthrough on one backing file or none, so each open inode counts its
 * opens of each kind (struct io_inode). While readers hold an inode in
 * passthrough, this mount refuses to write or truncate it (ETXTBSY, as
 * for a running program): a write could not reach their copy, and a
 * writer's mmap would map that copy instead of the file.
 *
 * Threads: the FUSE loop's reader, which runs the requests is_quick()
 * names (so do the io_uring queues' threads, one a CPU, for the requests
 * that come over them: fusering.c), and its pool, which runs the rest
 * (fusedev.c; or libfuse's one thread, --single-threaded); the metadata
 * client's loop, which answers lookups, getattrs and readers' opens itself
 * (struct query); the openers, which open the copies on disk of the
 * readers' opens it answered, for passthrough (the disk may be slow: not
 * on the client's loop), unless the open came over io_uring, whose queue's
 * thread then does it; the store's
 * workers for uploads; the read-ahead threads; the disk cache's writer
 * (cache.c). Locks, in this order: an
 * open directory's mu, files_mu, an open file's mu, compact_mu, ids_mu; cache_mu,
 * listed_mu, kept_mu, queries_mu, dead_mu, openers_mu, pass_mu, removed_mu and
 * maps_mu are taken alone, as are the node table's (nodes.c). The client's
 * loop takes only the last seven and the node table's: the others are held across
 * calls that wait for that loop. */
#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"
#include "limits.h"
#include "objstore.h"

#define CACHE_BLOCKS    32u         /* blocks kept in memory for reads */
#define AHEAD_MAX       8u          /* blocks being fetched at once, ahead or for reads */
#define AHEAD_THREADS   4u          /* threads that fetch blocks ahead of readers */
#define OPENER_THREADS  4u          /* threads that open readers' copies on disk */
#define LOAD_WAITS_MAX  1000u       /* wake-ups a read waits for another's fetch */
#define RUN_BEHIND_BLOCKS 8u        /* a read this far behind a run begins a new one */
#define SLICE_IDS_TAKEN 1024u       /* slice ids asked for at a time */
#define FULL_WAIT_MS    1000u       /* after ENOSPC, commits fail at once this long */
#define COMPACT_TRIES   3           /* reads of a chunk that changed while it was compacted */
#define READDIR_ENTRIES 512u
#define LISTED_SLOTS    256u        /* directories whose attributes a listing sent lately */
#define KEPT_SLOTS_LOG2 16u
#define KEPT_SLOTS      (1u << KEPT_SLOTS_LOG2) /* files whose cached pages an open may
                                                 * keep */
#define QUERIES_SPARE   64u         /* finished queries kept for reuse */
#define OPEN_INODE_BUCKETS 1024u    /* the inodes open on this mount, by number */
#define LEASED_SLOTS    (1u << 18)  /* inodes and names kept under lease (66.5 MiB,
                                     * touched as used; room beside what the kernel
                                     * holds granted) */
#define REMOVED_DIRS    64u         /* directories removed while open remembered */
#define MAPS_SLOTS_LOG2 15u
#define MAPS_SLOTS      (1u << MAPS_SLOTS_LOG2) /* readers' chunk-0 maps kept, by inode
                                                 * (4.5 MiB) */
#define MAP_KEPT_SLICES 4u          /* a map of more pieces is not kept */
#define NODES_SETS      (1u << 15)  /* recently changed files whose entries the kernel
                                     * keeps: 131,072 remembered (6 MiB, nodes.c) */

/* What a file's bytes were as a READ_MAP saw them: blocks are immutable,
 * and every change sets ctime from the leader's clock, in ns. */
struct data_version {
    uint64_t size;
    int64_t mtime_ns;
    int64_t ctime_ns;
};

/* How the kernel does an open file's I/O. The kernel refuses an inode's
 * open in one of passthrough and its page cache while another holds it
 * in the other, so each open inode counts its opens of both (io_open). */
enum io_mode {
    IO_NONE,                        /* not counted (an open that failed) */
    IO_CACHED,                      /* through the kernel's pages and this mount */
    IO_PASSING,                     /* the kernel reads a cached copy itself */
    IO_DIRECT,                      /* a reader whose reads come to this mount, no
                                     * pages: its inode has readers in passthrough of
                                     * an older version, on whose copy the kernel wants
                                     * it too (an mmap of it maps that copy) */
};

/* An inode open on this mount, under pass_mu. */
struct io_inode {
    struct io_inode *next;          /* in its bucket */
    uint64_t ino;
    uint32_t cached;                /* opens in IO_CACHED */
    uint32_t passing;               /* opens in IO_PASSING or IO_DIRECT, all on one
                                     * backing file (the kernel refuses others): */
    int fd;                         /* the block's cached copy (-1: none) */
    int backing_id;                 /* as the device knows fd */
    char block[48];                 /* the copy's name in the disk cache */
    struct data_version version;    /* the bytes it holds */
    uint32_t buffering;             /* opens of it holding buffered bytes */
    uint64_t buffered_end;          /* atomic: while any do, the furthest their bytes
                                     * reached, which every size answered counts (io_size) */
};

struct open_file {
    struct open_file *next;         /* the mount's open files, under files_mu */
    struct open_file *prev;
    uint32_t pins;                  /* under files_mu: walks calling out on f (files_visit) */
    struct open_file *dead_next;    /* an open that failed on the client's thread (dead_mu) */
    uint64_t ino;
    uint64_t node;                  /* the kernel's node it was opened through (its pages) */
    pthread_mutex_t mu;
    uint8_t *buf;                   /* contiguous bytes not yet in a slice */
    uint64_t buf_off;               /* the file offset of buf[0] */
    uint32_t buf_len;               /* changed by buf_added() and buf_taken() only */
    uint32_t buf_touched;           /* buf's bytes ever written since its pages were dropped */
    uint64_t read_end;              /* atomic: the furthest a run of reads reached; a read
                                     * that begins up to a block past it or two blocks
                                     * short of it is sequential (the kernel's read-ahead
                                     * has several in flight, which may arrive out of
                                     * order); one RUN_BEHIND_BLOCKS behind begins a
                                     * new run */
    bool is_read_only;              /* opened O_RDONLY */
    uint64_t held_by;               /* the session that holds ino for it, 0 none (under
                                     * mu; for an orphan, before its open's reply, the
                                     * client's thread sets it alone: no removal can
                                     * reach it). Released under that session, not a
                                     * later one that replaced it. */
    /* A reader's chunk 0 as its open resolved it (immutable after; NULL:
     * none), good while the mount commits no data (map_gen = data_gen). */
    struct meta_slice *map;
    uint32_t map_count;
    uint64_t map_size;              /* the file's size then */
    uint64_t map_gen;
    uint64_t map_until_ms;          /* used until then (the attribute timeout): a
                                     * reader open for long sees other mounts' writes */
    struct data_version version;    /* a reader's file as its open found it */
    bool is_orphan;                 /* and it had no name left (held by another open) */
    enum io_mode io;                /* set once, before the open's reply */
    struct io_inode *io_entry;      /* its inode's entry while io is not IO_NONE */
    int lost_rc;                    /* under mu: another open of ino lost its bytes at
                                     * its close (this error); the next flush or fsync
                                     * here says so, once, as Linux reports a writeback
                                     * error to every descriptor open when it happened */
};

struct cached_block {
    uint64_t slice;
    uint32_t index;
    uint32_t len;
    uint64_t used;                  /* LRU tick; 0: empty */
    uint8_t *data;
};

struct mnt;

/* A lookup, a getattr or a reader's open that the metadata client's thread
 * answers (query_send): the FUSE thread that took it goes back to the
 * kernel at once instead of sleeping through the round trip, and no thread
 * is woken to reply. */
struct query {
    struct query *next;             /* the spares; the openers' queue */
    struct mnt *m;
    fuse_req_t req;
    struct meta_cmd cmd;
    bool has_groups;                /* sent with the caller's supplementary groups */
    char name[META_NAME_BYTES_MAX];
    uint64_t node;                  /* GETATTR: the kernel's node asked of */
    struct open_file *f;            /* READ_MAP: the reader's open file */
    uint64_t unique;                /* and its request's id (0: no passthrough) */
    struct fuse_file_info fi;       /* and the kernel's open, copied */
    uint64_t gen;                   /* and data_gen when it was sent */
    uint64_t asked_ms;              /* when it was sent (a lease lasts from then) */
    uint32_t shard;                 /* and where */
    struct meta_response_buf *out;
};

struct mnt {
    struct ar_client *mc;
    struct obj_store *store;
    uint32_t block_bytes;
    uint32_t buf_cap;               /* an open file's buffer: two blocks */
    double entry_timeout;
    double attr_timeout;
    struct leased *leased;          /* NULL: no leases */
    struct nodes *nodes;            /* NULL: the kernel keeps no names (timeouts 0) */
    uint64_t lease_bound_ms;        /* kept answers stale no longer than the kernel's own */
    struct grants *grants;          /* NULL: the kernel keeps answers for the bound only */
    uint64_t budget;                /* bytes all buffers may hold before writes commit at once,
                                     * and pages they may keep touched (buf_reclaim) */
    uint64_t buffered;              /* atomic */
    uint64_t touched;               /* atomic: the sum of the open files' buf_touched */
    pthread_mutex_t reclaim_mu;     /* one buf_reclaim() at a time (tried, never waited on) */
    uint32_t buffering;             /* atomic: open files holding buffered bytes */
    uint64_t full_until_ms;         /* atomic: a commit found the store or the shard full;
                                     * until then commits fail at once (no blocks put that
                                     * nothing could name) */
    pthread_mutex_t compact_mu;     /* one compaction at a time: it holds a chunk's bytes */
    pthread_mutex_t ids_mu;
    uint64_t id_next;               /* slice ids taken from the shard, not used yet */
    uint64_t id_end;
    uint64_t ids_taken_ms;          /* when they were taken */
    uint64_t ids_max_age_ms;        /* unused ones are dropped past this age: block GC
                                     * keeps only ids taken inside the recovery window */
    pthread_mutex_t cache_mu;
    struct cached_block cache[CACHE_BLOCKS];
    uint64_t tick;
    struct {
        uint64_t slice;             /* 0: a free slot */
        uint32_t index;
        uint32_t len;
        bool is_queued;             /* for the read-ahead threads; else being fetched */
    } ahead[AHEAD_MAX];             /* under cache_mu: blocks on their way into cache[] */
    pthread_cond_t ahead_cond;      /* with cache_mu: a fetch in ahead[] ended */
    pthread_cond_t ahead_work_cond; /* with cache_mu: a fetch was queued, or the end */
    bool is_ahead_done;             /* under cache_mu: the read-ahead threads end */
    pthread_t ahead_threads[AHEAD_THREADS];
    uint32_t ahead_thread_count;
    bool is_ahead_started;          /* ahead_start() ran: ahead_stop() ends it */
    /* Readers' opens whose answer came, waiting to open their copy on disk
     * (passthrough): the client's thread must not wait for the disk. */
    pthread_mutex_t openers_mu;
    pthread_cond_t openers_cond;    /* with openers_mu: a query queued, or the end */
    struct query *openers_head;     /* under openers_mu */
    struct query *openers_tail;
    bool is_openers_done;           /* under openers_mu: queue no more */
    pthread_t openers[OPENER_THREADS];
    uint32_t opener_count;
    bool is_openers_started;        /* openers_start() ran: mount_free() ends it */
    struct block_cache *disk;       /* NULL: no disk cache */
    bool is_store_local;            /* a file:// store: big blocks written are not kept
                                     * in the disk cache (uploaded()) */
    pthread_key_t out_key;          /* a response buffer per FUSE thread ... */
    bool has_out_key;               /* ... once made */
    pthread_mutex_t queries_mu;
    struct query *query_spares;     /* under queries_mu */
    uint32_t query_spare_count;
    pthread_mutex_t dead_mu;
    struct open_file *dead_files;   /* under dead_mu: freed by a FUSE thread (files_reap) */
    pthread_mutex_t files_mu;       /* taken before an open file's mu, never after, and
                                     * never held across a call to the store or shard */
    pthread_cond_t files_cond;      /* with files_mu: an open file's last pin went */
    struct open_file *files;
    /* The keeper takes open files' holds again when the metadata client
     * replaced a lost session (session_replaced). */
    pthread_mutex_t keeper_mu;      /* a leaf lock */
    pthread_cond_t keeper_cond;
    pthread_t keeper;
    bool is_keeper_init;
    bool is_keeper_started;
    bool is_keeper_done;            /* under keeper_mu */
    bool is_rehold_due;             /* under keeper_mu */
    /* Read-only opens take no hold (no commit): a removal on this mount
     * holds their inode first. Both counters atomic; an open counts itself
     * then looks at removals, a removal the other way round, so at least
     * one of the two sees the other. */
    uint64_t read_only_open;        /* open files opened O_RDONLY */
    uint64_t removals;              /* unlinks and renames in flight */
    uint64_t data_gen;              /* atomic: data commits of this mount (write, truncate) */
    uint64_t change_gen;            /* atomic: mutations of this mount (any) */
    /* Re-listing a directory with attributes makes the kernel update every
     * entry it already holds (twice the cost of a plain listing): within
     * half the entry timeout of sending them, a listing sends names only.
     * A hint: a slot another directory took only costs a fuller listing. */
    pthread_mutex_t listed_mu;
    struct { uint64_t dir; uint64_t until_ms; } listed[LISTED_SLOTS];
    pthread_mutex_t pass_mu;        /* a leaf lock */
    struct io_inode *open_inodes[OPEN_INODE_BUCKETS];
    /* Directories this mount removed while it had directories open: an
     * fstat of one still open answers as a local file system does (its
     * attributes, no links), where the shard no longer knows it. Inode
     * numbers are never given twice, so an entry never names another. */
    uint32_t dirs_open;             /* atomic: opendirs not yet released */
    pthread_mutex_t dirs_mu;        /* a leaf lock, over dirs */
    struct dir_handle *dirs;        /* the open directories, freed at a stop */
    pthread_mutex_t removed_mu;     /* a leaf lock */
    struct meta_attr removed[REMOVED_DIRS];
    uint32_t removed_next;
    uint64_t passthrough_opens;     /* atomic: opens answered in passthrough */
    uint64_t maps_hits;             /* atomic: readers' opens answered from kept maps */
    uint64_t blocks_fetched;        /* atomic: from the disk cache or the store, for reads */
    uint64_t blocks_ahead;          /* atomic: of those, by the read-ahead threads */
    uint64_t fetches_shared;        /* atomic: reads that had a fetch on its way serve them */
    bool may_pass;                  /* atomic: passthrough asked for, and the device
                                     * took the backing files it was given */
    /* The version of the bytes the kernel may hold in a file's pages, by a
     * hash of its node (a slot another file took costs one re-read). */
    pthread_mutex_t kept_mu;
    struct {
        uint64_t node;              /* 0: empty */
        struct data_version version;
        bool is_mixed;              /* other bytes may have reached the pages since */
    } kept[KEPT_SLOTS];
    /* Unless --no-open-from-leases: chunk 0 of files read here, as a
     * READ_MAP resolved it, by a hash of the inode (a slot another file
     * took costs one READ_MAP). A reader's open whose inode's attributes
     * are under lease, and at the version a kept map was read at, takes
     * the map from here: no round trip (the bytes of a version never
     * change: every change sets ctime); map_from_kept() says why that is
     * still close-to-open. */
    pthread_mutex_t maps_mu;        /* a leaf lock */
    struct kept_map *maps;          /* MAPS_SLOTS; NULL: off */
};

struct kept_map {
    uint64_t ino;                   /* 0: empty */
    struct data_version version;
    uint32_t count;
    struct meta_slice slices[MAP_KEPT_SLICES];
};

/* ---- helpers ------------------------------------------------------------------------------- */

static int err_of(int rc)
{
    if (rc == -ETIMEDOUT || rc == -ECANCELED || rc < -4095)
        return EIO; /* arbor's own codes, a cluster out of reach, an unmount */
    return rc < 0 ? -rc : rc;
}

/* The error for an operation on an inode the kernel named: an inode gone
 * since the kernel looked its name up (a rename over it, an unlink on
 * another mount) is ESTALE, on which the kernel walks the path again and
 * finds what the name holds now, as a local file system would have. */
static int err_of_ino(int rc)
{
    return rc == -ENOENT ? ESTALE : err_of(rc);
}

/* The inode behind the kernel's node (nodes.c); 0 for an alias it let go
 * of, which it never names. */
static uint64_t ino_of(struct mnt *m, fuse_ino_t node)
{
    return nodes_ino(m->nodes, node);
}

static struct meta_response_buf *out_of(struct mnt *m)
{
    struct meta_response_buf *out = pthread_getspecific(m->out_key);

    if (out == NULL) {
        out = ar_malloc(sizeof(*out));
        if (out != NULL)
            pthread_setspecific(m->out_key, out);
    }
    return out;
}

/* The caller's uid and gid; its supplementary groups too if is_full
 * (libfuse reads them from /proc: tens of microseconds a call). */
static void cred_of(fuse_req_t req, struct meta_cred *cred, bool is_full)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    gid_t groups[META_GROUPS_MAX];

    *cred = (struct meta_cred){.uid = ctx->uid, .gid = ctx->gid};
    if (!is_full || ctx->uid == 0)
        return; /* root passes every check: its groups change nothing */
    int n = fuse_req_getgroups(req, META_GROUPS_MAX, groups);
    if (n > (int)META_GROUPS_MAX)
        n = META_GROUPS_MAX; /* the first ones: more than the protocol carries */
    for (int i = 0; i < n; i++) {
        cred->groups[cred->group_count++] = groups[i];
    }
}

/* Whether cmd, refused (rc) for want of permission, is worth asking again
 * with the caller's supplementary groups, now read into cmd->cred. */
static bool groups_may_help(fuse_req_t req, struct meta_cmd *cmd, int rc)
{
    if ((rc != -EACCES && rc != -EPERM) || cmd->cred.uid == 0)
        return false;
    cred_of(req, &cmd->cred, true);
    return cmd->cred.group_count > 0;
}

/* Keep what a leased answer to cmd said of its inode (and of the name it
 * made), to answer the kernel's next lookups and getattrs of them. */
static void keep_answer(struct mnt *m, uint32_t shard, const struct meta_cmd *cmd,
                        const struct meta_attr *a, const struct ar_lease_stamp *stamp,
                        uint64_t asked_ms)
{
    switch (cmd->op) {
    case META_OP_LOOKUP:
    case META_OP_MKNOD:
    case META_OP_MKDIR:
    case META_OP_SYMLINK:
        leased_keep(m->leased, m->mc, shard, a, stamp, asked_ms, cmd->ino, cmd->name,
                    cmd->name_len);
        break;
    case META_OP_LINK:
        leased_keep(m->leased, m->mc, shard, a, stamp, asked_ms, cmd->new_dir, cmd->new_name,
                    cmd->new_name_len);
        break;
    default:
        leased_keep(m->leased, m->mc, shard, a, stamp, asked_ms, 0, NULL, 0);
        break;
    }
}

/* Run cmd with req's credentials; *out holds the answer on 0. */
static int run(struct mnt *m, fuse_req_t req, struct meta_cmd *cmd, uint32_t data_cap,
               struct meta_response_buf **out)
{
    *out = out_of(m);
    if (*out == NULL)
        return -ENOMEM;
    if (cmd->ino == 0 && cmd->op != META_OP_ALLOC_SLICES)
        return -ESTALE; /* an alias the kernel let go of (ino_of) */
    /* Commands whose result depends on the groups (set-group-ID kept or
     * dropped) carry them always; the others only when a first try was
     * refused for want of permission (nothing changed then). */
    bool is_group_sensitive = cmd->op == META_OP_SETATTR || cmd->op == META_OP_MKNOD ||
                              cmd->op == META_OP_MKDIR || cmd->op == META_OP_SYMLINK ||
                              cmd->op == META_OP_WRITE || cmd->op == META_OP_FALLOCATE;
    if (req != NULL)
        cred_of(req, &cmd->cred, is_group_sensitive);
    uint32_t shard = ar_client_shard_of(m->mc, cmd->ino);
    struct ar_lease_stamp stamp;
    uint64_t asked_ms = client_mono_ms();
    int rc = ar_client_call_stamped(m->mc, shard, cmd, META_READ_LINEARIZABLE, data_cap, *out,
                                    &stamp);
    if (req != NULL && !is_group_sensitive && groups_may_help(req, cmd, rc))
        rc = ar_client_call_stamped(m->mc, shard, cmd, META_READ_LINEARIZABLE, data_cap, *out,
                                    &stamp);
    if (rc == 0 && (*out)->r.lease != 0)
        keep_answer(m, shard, cmd, &(*out)->r.reply.attr, &stamp, asked_ms);
    /* readers' maps from their opens are stale now (a failure may have
     * applied too: counted as well) */
    if (cmd->op == META_OP_WRITE || cmd->op == META_OP_FALLOCATE ||
        (cmd->op == META_OP_SETATTR && (cmd->set_mask & META_SET_SIZE)))
        __atomic_add_fetch(&m->data_gen, 1, __ATOMIC_RELEASE);
    /* and directory pages' attributes (a name gone, a size changed); holds
     * and slice ids change neither */
    if (!meta_op_is_query(cmd->op) && cmd->op != META_OP_OPEN && cmd->op != META_OP_RELEASE &&
        cmd->op != META_OP_SESSION_CLOSE && cmd->op != META_OP_ALLOC_SLICES)
        __atomic_add_fetch(&m->change_gen, 1, __ATOMIC_RELEASE);
    return rc;
}

static uint64_t io_size(struct mnt *m, uint64_t ino, uint64_t size);

static void stat_of(struct mnt *m, const struct meta_attr *a, struct stat *st)
{
    uint64_t size = S_ISREG(a->mode) ? io_size(m, a->ino, a->size) : a->size;

    memset(st, 0, sizeof(*st));
    st->st_ino = a->ino;
    st->st_mode = a->mode;
    st->st_nlink = a->nlink;
    st->st_uid = a->uid;
    st->st_gid = a->gid;
    st->st_rdev = a->rdev;
    st->st_size = (off_t)size;
    st->st_blksize = m->block_bytes;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
    st->st_atim = (struct timespec){.tv_sec = a->atime_ns / 1000000000,
                                    .tv_nsec = a->atime_ns % 1000000000};
    st->st_mtim = (struct timespec){.tv_sec = a->mtime_ns / 1000000000,
                                    .tv_nsec = a->mtime_ns % 1000000000};
    st->st_ctim = (struct timespec){.tv_sec = a->ctime_ns / 1000000000,
                                    .tv_nsec = a->ctime_ns % 1000000000};
}

/* The kernel keeps what it is told no longer than its timeouts, nor than
 * cap_s (an answer from what the mount kept: what remains of its bound). */
static double capped(double timeout_s, double cap_s)
{
    return cap_s < timeout_s ? cap_s : timeout_s;
}

/* Hand the kernel parent/name -> a, to keep entry_s (attributes attr_s;
 * an alias's for the attribute timeout capped at cap_s, since grants are
 * taken back by inode number). is_new: a was made by this request. */
static void reply_entry_as(struct mnt *m, fuse_req_t req, uint64_t parent, const char *name,
                           size_t len, const struct meta_attr *a, double entry_s, double attr_s,
                           double cap_s, bool is_new)
{
    uint64_t node = nodes_entry(m->nodes, parent, name, len, a,
                                (uint64_t)(entry_s * 1000.0) + 1, is_new);

    if (node == 0) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    struct fuse_entry_param e = {.ino = node, .entry_timeout = entry_s,
                                 .attr_timeout = node == a->ino ? attr_s
                                                                : capped(m->attr_timeout, cap_s)};
    stat_of(m, a, &e.attr);
    if (fuse_reply_entry(req, &e) != 0)
        nodes_forget(m->nodes, node, 1); /* interrupted: the kernel never counted it */
}

/* How long (ms) the kernel may keep parent/name -> ino (name not NULL) or
 * ino's attributes, which the grants threads take back when they change
 * (leased_grant); 0: only for its timeouts. */
static uint64_t granted_ms(struct mnt *m, uint64_t parent, const char *name, size_t len,
                           const struct meta_attr *a)
{
    if (m->grants == NULL)
        return 0;
    return leased_grant(m->leased, m->mc, parent, name, len, a, m->lease_bound_ms);
}

/* The entry of parent/name (len bytes): granted, or for the timeouts
 * capped at cap_s. is_new: the request made it. */
static void reply_name(struct mnt *m, fuse_req_t req, uint64_t parent, const char *name,
                       size_t len, const struct meta_attr *a, double cap_s, bool is_new)
{
    uint64_t ms = granted_ms(m, parent, name, len, a);

    if (ms == 0)
        reply_entry_as(m, req, parent, name, len, a, capped(m->entry_timeout, cap_s),
                       capped(m->attr_timeout, cap_s), cap_s, is_new);
    else
        reply_entry_as(m, req, parent, name, len, a, (double)ms / 1000.0, (double)ms / 1000.0,
                       cap_s, is_new);
}

/* The attributes of the kernel's node (of a's inode): granted, or for the
 * attribute timeout capped at cap_s. An alias's are not granted: a grant
 * is taken back by inode number. */
static void reply_attr_of(struct mnt *m, fuse_req_t req, uint64_t node, const struct meta_attr *a,
                          double cap_s)
{
    uint64_t ms = node == a->ino ? granted_ms(m, 0, NULL, 0, a) : 0;
    struct stat st;

    stat_of(m, a, &st);
    fuse_reply_attr(req, &st, ms > 0 ? (double)ms / 1000.0 : capped(m->attr_timeout, cap_s));
}

/* ---- the store side: slices and blocks --------------------------------------------------------- */

static void block_key(uint64_t slice, uint32_t index, char out[64])
{
    snprintf(out, 64, "s/%016" PRIx64 "/%u", slice, index);
}

/* The disk cache's name of a block (no '/'). */
static void cache_name(uint64_t slice, uint32_t index, char out[48])
{
    snprintf(out, 48, "%016" PRIx64 "_%u", slice, index);
}

static uint32_t block_len_of(const struct mnt *m, uint32_t size, uint32_t index)
{
    uint32_t from = index * m->block_bytes;

    return size - from < m->block_bytes ? size - from : m->block_bytes;
}

/* Under cache_mu: block index of slice in memory, or NULL. */
static struct cached_block *mem_find(struct mnt *m, uint64_t slice, uint32_t index)
{
    for (uint32_t i = 0; i < CACHE_BLOCKS; i++) {
        if (m->cache[i].used != 0 && m->cache[i].slice == slice && m->cache[i].index == index)
            return &m->cache[i];
    }
    return NULL;
}

/* Under cache_mu: copy [in, in + n) of the block (block_len bytes) from
 * memory into dst, if it is there. */
static bool mem_copy(struct mnt *m, uint64_t slice, uint32_t index, uint32_t block_len,
                     uint32_t in, uint32_t n, uint8_t *dst)
{
    struct cached_block *b = mem_find(m, slice, index);

    if (b == NULL || b->len != block_len)
        return false;
    memcpy(dst, b->data + in, n);
    b->used = ++m->tick;
    return true;
}

/* Keep a block in memory (data is handed over), the least recently used out. */
static void mem_insert(struct mnt *m, uint64_t slice, uint32_t index, uint8_t *data, uint32_t len)
{
    pthread_mutex_lock(&m->cache_mu);
    struct cached_block *victim = &m->cache[0];
    for (uint32_t i = 0; i < CACHE_BLOCKS; i++) {
        struct cached_block *b = &m->cache[i];
        if (b->used != 0 && b->slice == slice && b->index == index) {
            victim = NULL; /* there already (read ahead meanwhile) */
            break;
        }
        if (b->used < victim->used)
            victim = b;
    }
    if (victim != NULL) {
        ar_free(victim->data);
        *victim = (struct cached_block){.slice = slice, .index = index, .len = len,
                                        .used = ++m->tick, .data = data};
        data = NULL;
    }
    pthread_mutex_unlock(&m->cache_mu);
    ar_free(data);
}

/* Fetch a block into data (len bytes): the disk cache, else the store
 * (whose checksums are checked), which the disk cache then keeps. */
static int block_fetch(struct mnt *m, uint64_t slice, uint32_t index, uint8_t *data, uint32_t len)
{
    char key[64];
    char name[48];
    char errmsg[OBJ_ERRMSG_MAX];
    size_t got = 0;

    __atomic_add_fetch(&m->blocks_fetched, 1, __ATOMIC_RELAXED);
    cache_name(slice, index, name);
    if (m->disk != NULL && block_cache_read(m->disk, name, 0, len, data) == 0)
        return 0;
    block_key(slice, index, key);
    int rc = obj_get(m->store, key, data, len, &got, errmsg);
    if (rc != 0 || got != len) {
        ar_log(AR_LOG_ERROR, "cannot read block %s: %s", key, rc != 0 ? errmsg : "short");
        return -EIO;
    }
    if (m->disk != NULL)
        block_cache_put(m->disk, name, data, len);
    return 0;
}

/* Under cache_mu: the slot of ahead[] that (slice, index) is on its way
 * in, or -1. */
static int ahead_find(const struct mnt *m, uint64_t slice, uint32_t index)
{
    for (uint32_t i = 0; i < AHEAD_MAX; i++) {
        if (m->ahead[i].slice == slice && m->ahead[i].index == index)
            return (int)i;
    }
    return -1;
}

/* A fetch of (slice, index) into cache[] ended, well or not: its slot is
 * free, and the reads waiting for it look again. */
static void ahead_end(struct mnt *m, uint64_t slice, uint32_t index)
{
    pthread_mutex_lock(&m->cache_mu);
    int slot = ahead_find(m, slice, index);
    if (slot >= 0)
        m->ahead[slot].slice = 0;
    pthread_cond_broadcast(&m->ahead_cond);
    pthread_mutex_unlock(&m->cache_mu);
}

/* Under cache_mu: a free slot of ahead[], now (slice, index)'s, or -1 if
 * none is free. Its taker ends it with ahead_end(). */
static int ahead_take(struct mnt *m, uint64_t slice, uint32_t index, uint32_t len)
{
    for (uint32_t i = 0; i < AHEAD_MAX; i++) {
        if (m->ahead[i].slice == 0) {
            m->ahead[i].slice = slice;
            m->ahead[i].index = index;
            m->ahead[i].len = len;
            m->ahead[i].is_queued = false;
            return (int)i;
        }
    }
    return -1;
}

/* A read-ahead thread: fetches the blocks read_ahead() queued (from the
 * disk cache, else the store) into memory, until the mount ends. */
static void *ahead_main(void *arg)
{
    struct mnt *m = arg;

    pthread_mutex_lock(&m->cache_mu);
    /* bounded: each turn runs a queued fetch or sleeps until one comes */
    while (!m->is_ahead_done) {
        uint32_t i = 0;
        while (i < AHEAD_MAX && !m->ahead[i].is_queued) {
            i++;
        }
        if (i == AHEAD_MAX) {
            pthread_cond_wait(&m->ahead_work_cond, &m->cache_mu);
            continue;
        }
        m->ahead[i].is_queued = false;
        uint64_t slice = m->ahead[i].slice;
        uint32_t index = m->ahead[i].index;
        uint32_t len = m->ahead[i].len;
        pthread_mutex_unlock(&m->cache_mu);
        uint8_t *data = ar_malloc(len > 0 ? len : 1);
        if (data != NULL)
            __atomic_add_fetch(&m->blocks_ahead, 1, __ATOMIC_RELAXED);
        if (data != NULL && block_fetch(m, slice, index, data, len) == 0)
            mem_insert(m, slice, index, data, len);
        else
            ar_free(data); /* a read that needs it fetches it again, and reports */
        ahead_end(m, slice, index);
        pthread_mutex_lock(&m->cache_mu);
    }
    pthread_mutex_unlock(&m->cache_mu);
    return NULL;
}

/* Start the read-ahead threads (none: reads go on without read-ahead). */
static void ahead_start(struct mnt *m)
{
    m->is_ahead_started = true;
    pthread_cond_init(&m->ahead_cond, NULL);
    pthread_cond_init(&m->ahead_work_cond, NULL);
    for (uint32_t i = 0; i < AHEAD_THREADS; i++) {
        if (pthread_create(&m->ahead_threads[i], NULL, ahead_main, m) != 0)
            break;
        m->ahead_thread_count++;
    }
}

/* End the read-ahead threads; a fetch they run finishes first. */
static void ahead_stop(struct mnt *m)
{
    pthread_mutex_lock(&m->cache_mu);
    m->is_ahead_done = true;
    pthread_cond_broadcast(&m->ahead_work_cond);
    pthread_mutex_unlock(&m->cache_mu);
    for (uint32_t i = 0; i < m->ahead_thread_count; i++) {
        pthread_join(m->ahead_threads[i], NULL);
    }
    m->ahead_thread_count = 0;
    pthread_cond_destroy(&m->ahead_work_cond);
    pthread_cond_destroy(&m->ahead_cond);
}

/* A sequential reader will want block index of slice next: have a
 * read-ahead thread fetch it, unless it is in memory or on its way. */
static void read_ahead(struct mnt *m, uint64_t slice, uint32_t size, uint32_t index)
{
    if ((uint64_t)index * m->block_bytes >= size)
        return;
    pthread_mutex_lock(&m->cache_mu);
    int slot = m->ahead_thread_count == 0 || mem_find(m, slice, index) != NULL ||
                       ahead_find(m, slice, index) >= 0
                   ? -1
                   : ahead_take(m, slice, index, block_len_of(m, size, index));
    if (slot >= 0) {
        m->ahead[slot].is_queued = true;
        pthread_cond_signal(&m->ahead_work_cond);
    }
    pthread_mutex_unlock(&m->cache_mu);
}

static int slice_id(struct mnt *m, uint64_t *id)
{
    uint64_t now_ms = client_mono_ms();
    pthread_mutex_lock(&m->ids_mu);
    if (m->id_next == m->id_end || now_ms - m->ids_taken_ms > m->ids_max_age_ms) {
        struct meta_cmd al = {.op = META_OP_ALLOC_SLICES, .length = SLICE_IDS_TAKEN};
        struct meta_response_buf *out;
        int rc = run(m, NULL, &al, 0, &out);
        if (rc != 0) {
            pthread_mutex_unlock(&m->ids_mu);
            return rc;
        }
        m->id_next = out->r.reply.attr.ino;
        m->id_end = m->id_next + out->r.reply.attr.size;
        m->ids_taken_ms = now_ms;
    }
    *id = m->id_next++;
    pthread_mutex_unlock(&m->ids_mu);
    return 0;
}

struct upload {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint32_t left;
    int rc;
    struct block_cache *disk;  /* where a stored block is kept too (NULL: none) */
    bool is_store_local;       /* a file:// store: big blocks are not kept too */
    char keys[2][64];
    char cache_names[2][48];
    struct obj_req reqs[2];
};

/* On a store worker, as each block is stored: it goes to the disk cache
 * there, beside the other block's upload, not after both (a read after the
 * write finds a small block there). A big block (1 MiB or more) goes a
 * moment later, by the cache's thread, so that the commit does not wait
 * for its copy; and not at all when the store is a local directory: a
 * second copy on the same disk cost big writes a third of their speed
 * (docs/benchmarks.md), and the first read keeps it then. A small file's
 * block is always kept: the kernel reads it from there (passthrough). */
static void uploaded(struct obj_req *r)
{
    struct upload *u = r->data;

    bool is_big = r->size >= BLOCK_CACHE_LATER_MIN;
    if (r->rc == 0 && u->disk != NULL && !(is_big && u->is_store_local))
        block_cache_put_later(u->disk, u->cache_names[r - u->reqs], r->buf, (uint32_t)r->size);
    pthread_mutex_lock(&u->mu);
    if (r->rc != 0 && u->rc == 0) {
        u->rc = r->rc;
        ar_log(AR_LOG_ERROR, "cannot store block %s: %s", r->key, r->errmsg);
    }
    u->left--;
    pthread_cond_signal(&u->cond);
    pthread_mutex_unlock(&u->mu);
}

static void io_buffered(struct mnt *m, const struct open_file *f, int change);

/* f's buffer gained n bytes at its end; holds f->mu. */
static void buf_added(struct mnt *m, struct open_file *f, uint32_t n)
{
    bool was_empty = f->buf_len == 0;
    if (was_empty)
        __atomic_add_fetch(&m->buffering, 1, __ATOMIC_RELEASE);
    f->buf_len += n;
    io_buffered(m, f, was_empty ? 1 : 0);
    if (f->buf_len > f->buf_touched) {
        __atomic_add_fetch(&m->touched, f->buf_len - f->buf_touched, __ATOMIC_RELAXED);
        f->buf_touched = f->buf_len;
    }
    __atomic_add_fetch(&m->buffered, n, __ATOMIC_RELEASE);
}

/* The last n of f's buffered bytes leave it (in a slice now, lost, or
 * not written after all); holds f->mu. */
static void buf_taken(struct mnt *m, struct open_file *f, uint32_t n)
{
    if (n == 0)
        return;
    __atomic_sub_fetch(&m->buffered, n, __ATOMIC_RELAXED);
    f->buf_len -= n;
    if (f->buf_len == 0) {
        io_buffered(m, f, -1);
        __atomic_sub_fetch(&m->buffering, 1, __ATOMIC_RELAXED);
    }
}

static void buf_emptied(struct mnt *m, struct open_file *f)
{
    buf_taken(m, f, f->buf_len);
}

/* Put len bytes of data (at most two blocks) into the store as blocks
 * first and first + 1 of slice id, both at once. A full store is the
 * caller's ENOSPC; its other failures, EIO. */
static int put_blocks(struct mnt *m, uint64_t id, uint32_t first, uint8_t *data, uint32_t len)
{
    struct upload u = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
                       .disk = m->disk, .is_store_local = m->is_store_local};
    uint32_t blocks = (len + m->block_bytes - 1) / m->block_bytes;

    AR_ASSERT(blocks <= 2);
    u.left = blocks;
    for (uint32_t i = 0; i < blocks; i++) {
        uint32_t off = i * m->block_bytes;
        uint32_t n = len - off < m->block_bytes ? len - off : m->block_bytes;
        block_key(id, first + i, u.keys[i]);
        cache_name(id, first + i, u.cache_names[i]);
        u.reqs[i] = (struct obj_req){.op = OBJ_OP_PUT, .key = u.keys[i], .buf = data + off,
                                     .size = n, .data = &u};
        if (obj_submit(m->store, &u.reqs[i], uploaded) != 0) {
            pthread_mutex_lock(&u.mu);
            u.left--;
            u.rc = -EAGAIN;
            pthread_mutex_unlock(&u.mu);
        }
    }
    pthread_mutex_lock(&u.mu);
    /* bounded: each upload ends (the store retries within its own limits) */
    while (u.left > 0) {
        pthread_cond_wait(&u.cond, &u.mu);
    }
    pthread_mutex_unlock(&u.mu);
    return u.rc == 0 || u.rc == -ENOSPC || u.rc == -EDQUOT ? u.rc : -EIO;
}

static int read_slices(struct mnt *m, const struct meta_slice *slices, uint32_t count,
                       uint64_t chunk_offset, uint64_t pos, uint64_t end, uint8_t *dst,
                       uint64_t dst_off, bool is_sequential);

/* A chunk of META_CHUNK_SLICES_MAX slices takes no more writes (scattered
 * small writes make one slice each): rewrite what it holds as one slice,
 * its bytes read back (holes as zeros), named only if the chunk has not
 * changed since the read (if_map_hash; else read again, a few times). */
static int compact_chunk(struct mnt *m, fuse_req_t req, uint64_t ino, uint64_t at)
{
    int rc = -ESTALE;
    uint32_t pieces = 0;

    pthread_mutex_lock(&m->compact_mu);
    for (int tries = 0; tries < COMPACT_TRIES && rc == -ESTALE; tries++) {
        /* from the chunk's start: at may be at or past the file's end (an
         * append), where the map holds no piece, and a full chunk always
         * starts below the end */
        struct meta_cmd c = {.op = META_OP_READ_MAP, .ino = ino,
                             .offset = at - at % META_CHUNK_BYTES};
        struct meta_response_buf *out;
        rc = run(m, req, &c, 0, &out);
        if (rc != 0)
            break;
        uint64_t start = out->r.reply.chunk_offset;
        uint64_t hash = out->r.reply.map_hash;
        uint32_t len = 0;
        pieces = out->r.reply.slice_count;
        for (uint32_t i = 0; i < pieces; i++) {
            const struct meta_slice *p = &out->r.reply.slices[i];
            len = p->pos + p->len > len ? p->pos + p->len : len;
        }
        uint8_t *data = len > 0 ? ar_malloc(len) : NULL;
        if (len == 0 || data == NULL) {
            rc = len == 0 ? -EIO : -ENOMEM; /* nothing to compact: the chunk is not full */
            break;
        }
        /* the pieces first: the calls below reuse this thread's reply buffer */
        rc = read_slices(m, out->r.reply.slices, pieces, start, start, start + len, data, start,
                         false);
        uint64_t id = 0;
        if (rc == 0)
            rc = slice_id(m, &id);
        for (uint32_t off = 0; rc == 0 && off < len; off += 2 * m->block_bytes) {
            uint32_t n = len - off < 2 * m->block_bytes ? len - off : 2 * m->block_bytes;
            rc = put_blocks(m, id, off / m->block_bytes, data + off, n);
        }
        ar_free(data);
        struct meta_cmd w = {.op = META_OP_WRITE, .ino = ino, .offset = start,
                             .slice = {.id = id, .size = len, .len = len}, .if_map_hash = hash};
        if (rc == 0)
            rc = run(m, req, &w, 0, &out);
    }
    pthread_mutex_unlock(&m->compact_mu);
    if (rc == 0)
        ar_log(AR_LOG_INFO, "inode %" PRIu64 ": the chunk at %" PRIu64 " MiB held too many "
               "slices: rewritten as one (%" PRIu32 " pieces)", ino, at / META_CHUNK_BYTES * 64,
               pieces);
    else
        ar_log(AR_LOG_ERROR, "inode %" PRIu64 ": cannot compact the chunk at %" PRIu64
               " MiB: %s", ino, at / META_CHUNK_BYTES * 64,
               rc == -ESTALE ? "other writers changed it at every try" : ar_strerror(rc));
    return rc == -ESTALE ? -EIO : rc; /* not the file handle's fault */
}

/* Put the buffer's bytes into the store as a new slice, then name it in
 * the file (WRITE); a full chunk is compacted first. Holds f->mu. */
static int commit(struct mnt *m, fuse_req_t req, struct open_file *f)
{
    if (f->buf_len == 0)
        return 0;
    if (client_mono_ms() < __atomic_load_n(&m->full_until_ms, __ATOMIC_RELAXED))
        return -ENOSPC;
    uint64_t id;
    int rc = slice_id(m, &id);
    if (rc == 0)
        rc = put_blocks(m, id, 0, f->buf, f->buf_len);
    struct meta_cmd w = {.op = META_OP_WRITE, .ino = f->ino, .offset = f->buf_off,
                         .slice = {.id = id, .size = f->buf_len, .off = 0, .len = f->buf_len}};
    struct meta_response_buf *out;
    if (rc == 0)
        rc = run(m, req, &w, 0, &out);
    if (rc == -AR_ECHUNKFULL) {
        rc = compact_chunk(m, req, f->ino, f->buf_off);
        if (rc == 0)
            rc = run(m, req, &w, 0, &out);
    }
    if (rc == -ENOSPC || rc == -EDQUOT) /* the kernel's write-back would go on putting */
        __atomic_store_n(&m->full_until_ms, client_mono_ms() + FULL_WAIT_MS, __ATOMIC_RELAXED);
    if (rc == 0)
        buf_emptied(m, f);
    return rc;
}

/* Give back the pages of f's buffer past its buffered bytes: after a
 * commit that is not a full buffer's (a writer streaming on refills it at
 * once), and when idle buffers' pages pass the budget (buf_reclaim), so
 * that open files that wrote once hold no memory. The interior pages of
 * the allocation only; holds f->mu. */
static void buf_drop_pages(struct mnt *m, struct open_file *f)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = ((uintptr_t)f->buf + f->buf_len + page - 1) & ~(page - 1);
    uintptr_t to = ((uintptr_t)f->buf + f->buf_touched) & ~(page - 1);

    if (f->buf == NULL || f->buf_touched <= f->buf_len)
        return;
    if (to > from)
        (void)madvise((void *)from, to - from, MADV_DONTNEED);
    __atomic_sub_fetch(&m->touched, f->buf_touched - f->buf_len, __ATOMIC_RELAXED);
    f->buf_touched = f->buf_len;
}

/* When the pages the buffers keep touched pass the budget, though the
 * bytes they buffer do not (writers that filled a buffer, committed it
 * and went idle with the file open: each kept two blocks of memory the
 * budget did not see), give back idle pages of other open files until
 * three quarters of the budget are left. A file busy under its own lock
 * is passed over: it gives its own back at its next flush. */
static void buf_reclaim(struct mnt *m)
{
    if (__atomic_load_n(&m->touched, __ATOMIC_RELAXED) <= m->budget ||
        pthread_mutex_trylock(&m->reclaim_mu) != 0)
        return;
    uint64_t enough = m->budget / 4 * 3;
    pthread_mutex_lock(&m->files_mu);
    /* bounded by the open files; unlisting one needs files_mu */
    for (struct open_file *f = m->files;
         f != NULL && __atomic_load_n(&m->touched, __ATOMIC_RELAXED) > enough; f = f->next) {
        if (pthread_mutex_trylock(&f->mu) != 0)
            continue;
        buf_drop_pages(m, f);
        pthread_mutex_unlock(&f->mu);
    }
    pthread_mutex_unlock(&m->files_mu);
    pthread_mutex_unlock(&m->reclaim_mu);
}

typedef int file_visitor(struct mnt *m, fuse_req_t req, struct open_file *f, void *arg);

/* Call visit on each open file of ino (0: every one), up to the first error, without
 * files_mu held through the calls (they wait on the store and the shard:
 * an outage must not stall every open and close of the mount). The file
 * visited is pinned; file_free() waits for its pins, so it stays listed
 * and its next is good when the walk goes on. Opens made meanwhile go to
 * the list's head, behind the walk: they began after it. */
static int files_visit(struct mnt *m, fuse_req_t req, uint64_t ino, file_visitor *visit,
                       void *arg)
{
    int rc = 0;

    pthread_mutex_lock(&m->files_mu);
    struct open_file *f = m->files;
    /* bounded by the files listed when the walk began */
    while (f != NULL && rc == 0) {
        if (ino != 0 && f->ino != ino) {
            f = f->next;
            continue;
        }
        f->pins++;
        pthread_mutex_unlock(&m->files_mu);
        rc = visit(m, req, f, arg);
        pthread_mutex_lock(&m->files_mu);
        struct open_file *next = f->next;
        if (--f->pins == 0)
            pthread_cond_broadcast(&m->files_cond);
        f = next;
    }
    pthread_mutex_unlock(&m->files_mu);
    return rc;
}

struct overlap {
    const struct open_file *writer;
    uint64_t at;
    size_t size;
};

static int commit_if_overlapping(struct mnt *m, fuse_req_t req, struct open_file *g, void *arg)
{
    const struct overlap *o = arg;
    int rc = 0;

    if (g == o->writer)
        return 0;
    pthread_mutex_lock(&g->mu);
    if (g->buf_len > 0 && g->buf_off < o->at + o->size && o->at < g->buf_off + g->buf_len)
        rc = commit(m, req, g);
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* Commit what other opens of f's inode buffer in [at, at + size), before
 * f buffers a write there: the later write must land later (the shard's
 * newest slice wins). Disjoint writers through several opens (parallel
 * pieces of one file) commit nothing here. */
static int commit_overlapping(struct mnt *m, fuse_req_t req, const struct open_file *f,
                              uint64_t at, size_t size)
{
    struct overlap o = {.writer = f, .at = at, .size = size};

    return files_visit(m, req, f->ino, commit_if_overlapping, &o);
}

/* Copy [in, in + n) of a block read in pieces (block_len bytes) into dst:
 * from memory; once the fetch of it on its way (ahead, or for another
 * read) ends; or fetched here, and then kept in memory. */
static int block_piece(struct mnt *m, uint64_t slice, uint32_t index, uint32_t block_len,
                       uint32_t in, uint32_t n, uint8_t *dst)
{
    pthread_mutex_lock(&m->cache_mu);
    /* bounded: every fetch in ahead[] ends (the store's calls time out),
     * and a wait past LOAD_WAITS_MAX wake-ups fetches here */
    for (uint32_t waits = 0;; waits++) {
        if (mem_copy(m, slice, index, block_len, in, n, dst)) {
            pthread_mutex_unlock(&m->cache_mu);
            if (waits > 0)
                __atomic_add_fetch(&m->fetches_shared, 1, __ATOMIC_RELAXED);
            return 0;
        }
        if (ahead_find(m, slice, index) < 0 || waits >= LOAD_WAITS_MAX)
            break;
        pthread_cond_wait(&m->ahead_cond, &m->cache_mu);
    }
    /* none free: fetched all the same, and maybe twice */
    bool is_claimed = ahead_find(m, slice, index) < 0 &&
                      ahead_take(m, slice, index, block_len) >= 0;
    pthread_mutex_unlock(&m->cache_mu);
    uint8_t *data = ar_malloc(block_len > 0 ? block_len : 1);
    int rc = data != NULL ? block_fetch(m, slice, index, data, block_len) : -ENOMEM;
    if (rc == 0) {
        memcpy(dst, data + in, n);
        mem_insert(m, slice, index, data, block_len);
    } else {
        ar_free(data);
    }
    if (is_claimed)
        ahead_end(m, slice, index);
    return rc;
}

/* Copy len bytes at offset off of slice (size bytes in all) into dst. */
static int slice_read(struct mnt *m, uint64_t slice, uint32_t size, uint32_t off, uint32_t len,
                      uint8_t *dst)
{
    /* bounded: each turn copies from one block */
    while (len > 0) {
        uint32_t index = off / m->block_bytes;
        uint32_t in = off % m->block_bytes;
        uint32_t block_len = block_len_of(m, size, index);
        uint32_t n = block_len - in < len ? block_len - in : len;
        pthread_mutex_lock(&m->cache_mu);
        bool is_hit = mem_copy(m, slice, index, block_len, in, n, dst);
        pthread_mutex_unlock(&m->cache_mu);
        /* the whole block (a small file's one read): straight into dst, not
         * into the memory cache, which is for blocks read in pieces (the
         * disk cache keeps it) */
        int rc = is_hit              ? 0
                 : n == block_len    ? block_fetch(m, slice, index, dst, block_len)
                                     : block_piece(m, slice, index, block_len, in, n, dst);
        if (rc != 0)
            return rc;
        dst += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Commit what this mount's open files of ino hold, so that a stat, a
 * truncation or a read through any descriptor sees every write that
 * returned (as on a local file system). */
static int commit_locked(struct mnt *m, fuse_req_t req, struct open_file *f, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&f->mu);
    int rc = commit(m, req, f);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int commit_ino(struct mnt *m, fuse_req_t req, uint64_t ino)
{
    /* nothing buffered anywhere (a reader's every call): no scan, no lock;
     * a write that returned counted its bytes before its reply */
    if (__atomic_load_n(&m->buffered, __ATOMIC_ACQUIRE) == 0)
        return 0;
    return files_visit(m, req, ino, commit_locked, NULL);
}

/* ---- the operations ----------------------------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct mnt *m = userdata;

    conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC; /* O_TRUNC arrives as a setattr */
    if (m->entry_timeout == 0)
        conn->want &= ~FUSE_CAP_READDIRPLUS; /* the kernel would keep none of it */
}

/* ---- queries answered on the metadata client's thread ---- */

static struct query *query_new(struct mnt *m, fuse_req_t req, enum meta_op op, uint64_t ino)
{
    pthread_mutex_lock(&m->queries_mu);
    struct query *q = m->query_spares;
    if (q != NULL) {
        m->query_spares = q->next;
        m->query_spare_count--;
    }
    pthread_mutex_unlock(&m->queries_mu);
    if (q == NULL) {
        q = ar_malloc(sizeof(*q));
        /* the answer's room: only the pages a decode writes become memory */
        struct meta_response_buf *out = q != NULL ? ar_malloc(sizeof(*out)) : NULL;
        if (out == NULL) {
            ar_free(q);
            return NULL;
        }
        q->out = out;
    }
    q->m = m;
    q->req = req;
    q->cmd = (struct meta_cmd){.op = op, .ino = ino};
    q->has_groups = false;
    q->f = NULL;
    q->unique = 0;
    return q;
}

static void query_free(struct query *q)
{
    struct mnt *m = q->m;

    pthread_mutex_lock(&m->queries_mu);
    bool is_kept = m->query_spare_count < QUERIES_SPARE;
    if (is_kept) {
        q->next = m->query_spares;
        m->query_spares = q;
        m->query_spare_count++;
    }
    pthread_mutex_unlock(&m->queries_mu);
    if (!is_kept) {
        ar_free(q->out);
        ar_free(q);
    }
}

static void query_done(void *arg, int rc);
static bool io_is_passing(struct mnt *m, uint64_t ino);
static void map_fill(struct mnt *m, struct open_file *f, const struct meta_reply *r, uint64_t gen);
static void maps_keep(struct mnt *m, const struct meta_reply *r);
static void reply_reader_open(struct mnt *m, fuse_req_t req, struct fuse_file_info *fi,
                              struct open_file *f, uint64_t unique, bool is_client_thread);
static bool is_one_block(const struct mnt *m, const struct open_file *f, char name[48]);
static bool may_pass_now(struct mnt *m);
static void file_dead(struct mnt *m, struct open_file *f);

/* Send q; its answer goes to the kernel from query_done. */
static void query_send(struct query *q)
{
    struct mnt *m = q->m;

    q->shard = ar_client_shard_of(m->mc, q->cmd.ino);
    q->asked_ms = client_mono_ms();
    int rc = q->cmd.ino == 0 ? -ESTALE /* ino_of() */
                             : ar_client_start(m->mc, q->shard, &q->cmd, META_READ_LINEARIZABLE,
                                               0, q->out, query_done, q);
    if (rc != 0) {
        fuse_reply_err(q->req, err_of(rc));
        if (q->f != NULL)
            file_dead(m, q->f);
        query_free(q);
    }
}

/* The openers: each answers the readers' opens queued for it. */
static void *opener_main(void *arg)
{
    struct mnt *m = arg;

    pthread_mutex_lock(&m->openers_mu);
    /* bounded: woken by each query and by the end, which comes once the
     * queue is empty */
    for (;;) {
        struct query *q = m->openers_head;
        if (q == NULL && m->is_openers_done)
            break;
        if (q == NULL) {
            pthread_cond_wait(&m->openers_cond, &m->openers_mu);
            continue;
        }
        m->openers_head = q->next;
        if (m->openers_head == NULL)
            m->openers_tail = NULL;
        pthread_mutex_unlock(&m->openers_mu);
        reply_reader_open(m, q->req, &q->fi, q->f, q->unique, false);
        query_free(q);
        pthread_mutex_lock(&m->openers_mu);
    }
    pthread_mutex_unlock(&m->openers_mu);
    return NULL;
}

static void openers_start(struct mnt *m)
{
    m->is_openers_started = true;
    pthread_mutex_init(&m->openers_mu, NULL);
    pthread_cond_init(&m->openers_cond, NULL);
    for (uint32_t i = 0; i < OPENER_THREADS; i++) {
        if (pthread_create(&m->openers[i], NULL, opener_main, m) != 0)
            break;
        m->opener_count++;
    }
}

/* What is queued is answered first; later answers reply on the client's
 * thread. */
static void openers_stop(struct mnt *m)
{
    if (!m->is_openers_started)
        return;
    pthread_mutex_lock(&m->openers_mu);
    m->is_openers_done = true;
    pthread_cond_broadcast(&m->openers_cond);
    pthread_mutex_unlock(&m->openers_mu);
    for (uint32_t i = 0; i < m->opener_count; i++) {
        pthread_join(m->openers[i], NULL);
    }
    m->opener_count = 0;
}

/* On the thread of the ring queue q's open came from: as an opener. */
static void open_on_ring(void *arg)
{
    struct query *q = arg;

    reply_reader_open(q->m, q->req, &q->fi, q->f, q->unique, false);
    query_free(q);
}

/* On the client's thread: reply to a reader's open whose map came (q is
 * done with after). Its copy on disk is opened by an opener (or the ring
 * queue's thread the open came from) if the kernel may read it in
 * passthrough. */
static void reply_reader_query(struct mnt *m, struct query *q)
{
    char name[48];
    bool is_queued = false;

    if (q->unique != 0 && may_pass_now(m) && is_one_block(m, q->f, name)) {
        /* a request over io_uring: its queue's thread opens and replies */
        if (fusering_call(q->unique, open_on_ring, q))
            return;
        pthread_mutex_lock(&m->openers_mu);
        if (!m->is_openers_done && m->opener_count > 0) {
            q->next = NULL;
            if (m->openers_tail != NULL)
                m->openers_tail->next = q;
            else
                m->openers_head = q;
            m->openers_tail = q;
            pthread_cond_signal(&m->openers_cond);
            is_queued = true;
        }
        pthread_mutex_unlock(&m->openers_mu);
    }
    if (is_queued)
        return;
    /* no copy on disk to open (openers stop only once passthrough has) */
    reply_reader_open(m, q->req, &q->fi, q->f, q->unique, true);
    query_free(q);
}

static void removed_dir_keep(struct mnt *m, const struct meta_attr *a)
{
    pthread_mutex_lock(&m->removed_mu);
    m->removed[m->removed_next] = *a;
    m->removed[m->removed_next].nlink = 0;
    m->removed_next = (m->removed_next + 1) % REMOVED_DIRS;
    pthread_mutex_unlock(&m->removed_mu);
}

static bool removed_dir_find(struct mnt *m, uint64_t ino, struct meta_attr *out)
{
    bool is_found = false;

    pthread_mutex_lock(&m->removed_mu);
    for (uint32_t i = 0; i < REMOVED_DIRS && !is_found; i++) {
        is_found = m->removed[i].ino == ino && ino != 0;
        if (is_found)
            *out = m->removed[i];
    }
    pthread_mutex_unlock(&m->removed_mu);
    return is_found;
}

/* On the metadata client's thread: never blocks but for the rare groups
 * (a copy on disk is opened by an opener). */
static void query_done(void *arg, int rc)
{
    struct query *q = arg;
    struct mnt *m = q->m;

    /* refused for want of permission: once more with the caller's groups,
     * as run() does */
    if (!q->has_groups && groups_may_help(q->req, &q->cmd, rc)) {
        q->has_groups = true;
        query_send(q);
        return;
    }
    struct meta_attr removed;
    if (rc == -ENOENT && q->cmd.op == META_OP_GETATTR && removed_dir_find(m, q->cmd.ino, &removed)) {
        struct stat st;
        stat_of(m, &removed, &st);
        fuse_reply_attr(q->req, &st, 0); /* a directory removed while open here */
    } else if (rc != 0) {
        fuse_reply_err(q->req, q->cmd.op == META_OP_LOOKUP ? err_of(rc) : err_of_ino(rc));
        if (q->f != NULL)
            file_dead(m, q->f);
    } else if (q->cmd.op == META_OP_READ_MAP) {
        maps_keep(m, &q->out->r.reply);
        map_fill(m, q->f, &q->out->r.reply, q->gen);
        if (q->f->is_orphan && __atomic_load_n(&q->f->held_by, __ATOMIC_ACQUIRE) == 0) {
            /* an inode another open keeps after its last name went (a path
             * walk that raced the removal, /proc/self/fd): this reader holds
             * it too. Nothing else can hold f now: no removal can name it. */
            uint32_t shard = ar_client_shard_of(m->mc, q->f->ino);
            q->cmd = (struct meta_cmd){.op = META_OP_OPEN, .ino = q->f->ino,
                                       .session = ar_client_session(m->mc, shard)};
            if (q->cmd.session != 0) {
                query_send(q);
                return;
            }
            fuse_reply_err(q->req, ESTALE); /* the kernel walks the path again */
            file_dead(m, q->f);
        } else {
            reply_reader_query(m, q);
            return;
        }
    } else if (q->cmd.op == META_OP_OPEN) {
        __atomic_store_n(&q->f->held_by, q->cmd.session, __ATOMIC_RELEASE); /* an orphan, held */
        reply_reader_query(m, q);
        return;
    } else {
        if (q->out->r.lease != 0) {
            /* on the client's thread: the stamp is the answer's */
            struct ar_lease_stamp stamp;
            ar_client_lease_stamp(m->mc, &stamp);
            keep_answer(m, q->shard, &q->cmd, &q->out->r.reply.attr, &stamp, q->asked_ms);
        }
        if (q->cmd.op == META_OP_LOOKUP)
            reply_name(m, q->req, q->cmd.ino, q->name, q->cmd.name_len, &q->out->r.reply.attr,
                       (double)UINT32_MAX, false);
        else
            reply_attr_of(m, q->req, q->node, &q->out->r.reply.attr, (double)UINT32_MAX);
    }
    query_free(q);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mnt *m = fuse_req_userdata(req);
    size_t len = strlen(name);
    struct meta_attr a;
    uint64_t left_ms;

    if (leased_lookup(m->leased, m->mc, parent, name, len, m->lease_bound_ms, &a, &left_ms)) {
        reply_name(m, req, parent, name, len, &a, (double)left_ms / 1000.0, false);
        return;
    }
    struct query *q = len <= META_NAME_BYTES_MAX ? query_new(m, req, META_OP_LOOKUP, parent) : NULL;

    if (q == NULL) {
        fuse_reply_err(req, len <= META_NAME_BYTES_MAX ? ENOMEM : ENAMETOOLONG);
        return;
    }
    memcpy(q->name, name, len); /* the kernel's request buffer is the thread's next one */
    q->cmd.name = q->name;
    q->cmd.name_len = (uint32_t)len;
    cred_of(req, &q->cmd.cred, false);
    query_send(q);
}

static void op_getattr(fuse_req_t req, fuse_ino_t node, struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    uint64_t ino = ino_of(m, node);
    struct query *q;

    struct meta_attr a;
    uint64_t left_ms;

    (void)fi;
    /* first: a commit changes the attributes */
    int rc = ino != 0 ? commit_ino(m, req, ino) : -ESTALE;
    if (rc == 0 && leased_getattr(m->leased, m->mc, ino, m->lease_bound_ms, &a, &left_ms)) {
        reply_attr_of(m, req, node, &a, (double)left_ms / 1000.0);
        return;
    }
    if (rc == 0 && (q = query_new(m, req, META_OP_GETATTR, ino)) == NULL)
        rc = -ENOMEM;
    if (rc != 0) {
        fuse_reply_err(req, err_of_ino(rc));
        return;
    }
    q->node = node;
    cred_of(req, &q->cmd.cred, false);
    query_send(q);
}

static void op_setattr(fuse_req_t req, fuse_ino_t node, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    uint64_t ino = ino_of(m, node);
    struct meta_cmd c = {.op = META_OP_SETATTR, .ino = ino};
    struct meta_response_buf *out;
    struct stat st;

    if (ino == 0) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    if ((to_set & FUSE_SET_ATTR_SIZE) && io_is_passing(m, ino)) {
        fuse_reply_err(req, ETXTBSY); /* readers in passthrough would not see it */
        return;
    }
    /* buffered bytes land first: a truncation cuts them too, times and
     * modes set now are not undone by their commit (which sets the mtime
     * and clears set-user-ID), and the size answered, which the kernel
     * takes, counts them (an O_APPEND write after a fchmod) */
    int committed = commit_ino(m, req, ino);
    if (committed != 0) {
        fuse_reply_err(req, err_of(committed));
        return;
    }
    if (to_set & FUSE_SET_ATTR_MODE)
        c.set_mask |= META_SET_MODE, c.set.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID)
        c.set_mask |= META_SET_UID, c.set.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID)
        c.set_mask |= META_SET_GID, c.set.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE)
        c.set_mask |= META_SET_SIZE, c.set.size = (uint64_t)attr->st_size;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
        c.set_mask |= META_SET_ATIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME)
        c.set_mask |= META_SET_ATIME,
            c.set.atime_ns = attr->st_atim.tv_sec * 1000000000ll + attr->st_atim.tv_nsec;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
        c.set_mask |= META_SET_MTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME)
        c.set_mask |= META_SET_MTIME,
            c.set.mtime_ns = attr->st_mtim.tv_sec * 1000000000ll + attr->st_mtim.tv_nsec;
    /* ftruncate: the descriptor's open for writing was the permission
     * check, as on a local file system (the mode may have changed since) */
    const struct open_file *f = to_set == FUSE_SET_ATTR_SIZE && fi != NULL
                                    ? (const struct open_file *)(uintptr_t)fi->fh /* a file's */
                                    : NULL;
    bool is_opened_for_it = f != NULL && !f->is_read_only;
    int rc = run(m, is_opened_for_it ? NULL : req, &c, 0, &out);
    if (rc != 0) {
        fuse_reply_err(req, err_of(rc));
        return;
    }
    stat_of(m, &out->r.reply.attr, &st);
    fuse_reply_attr(req, &st, m->attr_timeout);
}

/* posix_fallocate, and holes: punched (FALLOC_FL_PUNCH_HOLE with
 * FALLOC_FL_KEEP_SIZE) or zeroed ranges, as the shard offers them (other
 * modes: EOPNOTSUPP). The kernel drops its pages of a hole itself. */
static void op_fallocate(fuse_req_t req, fuse_ino_t node, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    uint64_t ino = ino_of(m, node);
    struct meta_response_buf *out;

    (void)fi;
    if (ino == 0) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    if (offset < 0 || length <= 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (io_is_passing(m, ino)) {
        fuse_reply_err(req, ETXTBSY); /* readers in passthrough would not see it */
        return;
    }
    /* buffered bytes land first: a hole covers them too */
    int rc = commit_ino(m, req, ino);
    struct meta_cmd c = {.op = META_OP_FALLOCATE, .ino = ino, .offset = (uint64_t)offset,
                         .length = (uint64_t)length, .flags = (uint32_t)mode};
    if (rc == 0)
        rc = run(m, req, &c, 0, &out);
    fuse_reply_err(req, err_of(rc));
}

static void make(fuse_req_t req, struct meta_cmd *c)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_response_buf *out;
    int rc = run(m, req, c, 0, &out);

    if (rc != 0) {
        fuse_reply_err(req, err_of(rc));
        return;
    }
    reply_name(m, req, c->ino, c->name, c->name_len, &out->r.reply.attr, (double)UINT32_MAX,
               true);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev)
{
    struct meta_cmd c = {.op = META_OP_MKNOD, .ino = parent, .name = name,
                         .name_len = (uint32_t)strlen(name), .mode = mode,
                         .rdev = (uint32_t)rdev};
    make(req, &c);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct meta_cmd c = {.op = META_OP_MKDIR, .ino = parent, .name = name,
                         .name_len = (uint32_t)strlen(name), .mode = mode};
    make(req, &c);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    struct meta_cmd c = {.op = META_OP_SYMLINK, .ino = parent, .name = name,
                         .name_len = (uint32_t)strlen(name), .target = link,
                         .target_len = (uint32_t)strlen(link)};
    make(req, &c);
}

/* The new name leads to the kernel's inode it was made through, as on a
 * local file system (its link count is that inode's). The kernel found
 * that inode by a name it keeps, which may be stale (renamed or removed
 * elsewhere since): the link is made only if the file has not changed
 * since that name was true, else it fails ESTALE and Linux walks the path
 * again, asking the mount, and retries once. */
static void op_link(fuse_req_t req, fuse_ino_t node, fuse_ino_t newparent, const char *newname)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_LINK, .ino = ino_of(m, node), .new_dir = newparent,
                         .new_name = newname, .new_name_len = (uint32_t)strlen(newname)};
    struct meta_response_buf *out;
    int rc = c.ino != 0 ? 0 : -ESTALE;

    if (rc == 0)
        c.if_ctime_ns = nodes_link_ctime(m->nodes, node, c.ino);
    if (rc == 0 && c.if_ctime_ns == NODES_ASK_AGAIN)
        rc = -ESTALE;
    if (rc == 0)
        rc = run(m, req, &c, 0, &out);
    if (rc == 0 && nodes_link(m->nodes, node, &out->r.reply.attr,
                              (uint64_t)(m->entry_timeout * 1000.0) + 1, c.if_ctime_ns) == 0)
        rc = -ENOMEM;
    if (rc != 0) {
        fuse_reply_err(req, err_of(rc));
        return;
    }
    /* two names now: none is granted */
    struct fuse_entry_param e = {.ino = node, .attr_timeout = m->attr_timeout,
                                 .entry_timeout = m->entry_timeout};
    stat_of(m, &out->r.reply.attr, &e.attr);
    if (fuse_reply_entry(req, &e) != 0)
        nodes_forget(m->nodes, node, 1);
}

/* The client's session takes a hold on ino. A session the servers closed
 * (the mount was cut off past their timeout) is replaced by the metadata
 * client: the hold waits (bounded) for the new one and goes on. *by: the
 * session that holds. */
static int hold(struct mnt *m, fuse_req_t req, uint64_t ino, uint64_t *by)
{
    uint32_t shard = ar_client_shard_of(m->mc, ino);
    struct meta_response_buf *out;
    int rc = -ENOTCONN;

    for (int tries = 0; tries < 200; tries++) {
        struct meta_cmd c = {.op = META_OP_OPEN, .ino = ino,
                             .session = ar_client_session(m->mc, shard)};
        rc = c.session == 0 ? -ENOTCONN : run(m, req, &c, 0, &out);
        *by = rc == 0 ? c.session : 0;
        if (rc != -ENOTCONN && rc != -ESTALE)
            break;
        usleep(10000);
    }
    return rc;
}

/* Let go of the hold session `by` took on ino (0: none). A session the
 * servers closed holds nothing any more (-ESTALE, ignored). */
static void hold_release(struct mnt *m, uint64_t ino, uint64_t by)
{
    struct meta_cmd c = {.op = META_OP_RELEASE, .ino = ino, .session = by};
    struct meta_response_buf *out;

    if (by != 0)
        (void)run(m, NULL, &c, 0, &out);
}

/* The session holds f's inode from now until f's release (once). */
static int file_hold(struct mnt *m, fuse_req_t req, struct open_file *f)
{
    int rc = 0;

    pthread_mutex_lock(&f->mu);
    if (f->held_by == 0)
        rc = hold(m, req, f->ino, &f->held_by);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* f's hold, taken under a session the metadata client has since replaced
 * (lost, or maybe lost), is taken again under the current one, and the
 * old one's let go (if the servers closed it, there is nothing to let go).
 * An orphan cannot be held by a new session: it is left as it is. *arg
 * counts the holds taken again. */
static int file_rehold(struct mnt *m, fuse_req_t req, struct open_file *f, void *arg)
{
    uint32_t *count = arg;

    pthread_mutex_lock(&f->mu);
    uint64_t old = __atomic_load_n(&f->held_by, __ATOMIC_ACQUIRE);
    uint64_t now = ar_client_session(m->mc, ar_client_shard_of(m->mc, f->ino));
    if (old != 0 && now != 0 && old != now) {
        uint64_t by = 0;
        int rc = hold(m, req, f->ino, &by);
        if (rc == 0) {
            __atomic_store_n(&f->held_by, by, __ATOMIC_RELEASE);
            hold_release(m, f->ino, old);
            if (count != NULL)
                (*count)++;
        } else {
            ar_log(AR_LOG_WARN, "open file %" PRIu64 ": its hold went with a lost metadata "
                   "session (%s); a removal elsewhere frees it while it is open", f->ino,
                   strerror(-rc));
        }
    }
    pthread_mutex_unlock(&f->mu);
    return 0;
}

/* On the metadata client's thread (must not block): a session opened in
 * place of a lost one. The keeper takes the open files' holds again. */
static void session_replaced(void *arg, uint32_t shard, uint64_t session)
{
    struct mnt *m = arg;

    (void)shard;
    (void)session;
    pthread_mutex_lock(&m->keeper_mu);
    m->is_rehold_due = true;
    pthread_cond_signal(&m->keeper_cond);
    pthread_mutex_unlock(&m->keeper_mu);
}

static void *keeper_main(void *arg)
{
    struct mnt *m = arg;

    pthread_mutex_lock(&m->keeper_mu);
    /* bounded: woken by each new session and by the end */
    while (!m->is_keeper_done) {
        if (!m->is_rehold_due) {
            pthread_cond_wait(&m->keeper_cond, &m->keeper_mu);
            continue;
        }
        m->is_rehold_due = false;
        pthread_mutex_unlock(&m->keeper_mu);
        uint32_t count = 0;
        (void)files_visit(m, NULL, 0, file_rehold, &count);
        if (count > 0)
            ar_log(AR_LOG_INFO, "took the holds of %u open files again under the new "
                   "metadata session", count);
        pthread_mutex_lock(&m->keeper_mu);
    }
    pthread_mutex_unlock(&m->keeper_mu);
    return NULL;
}

/* Before the metadata client opens: its thread may call session_replaced. */
static void keeper_init(struct mnt *m)
{
    pthread_mutex_init(&m->keeper_mu, NULL);
    pthread_cond_init(&m->keeper_cond, NULL);
    m->is_keeper_init = true;
}

static void keeper_start(struct mnt *m)
{
    m->is_keeper_started = pthread_create(&m->keeper, NULL, keeper_main, m) == 0;
    if (!m->is_keeper_started)
        ar_log(AR_LOG_WARN, "no thread to take open files' holds again after a lost "
                            "metadata session");
}

/* Before the metadata client closes: the keeper's holds call it. */
static void keeper_stop(struct mnt *m)
{
    if (!m->is_keeper_started)
        return;
    pthread_mutex_lock(&m->keeper_mu);
    m->is_keeper_done = true;
    pthread_cond_signal(&m->keeper_cond);
    pthread_mutex_unlock(&m->keeper_mu);
    pthread_join(m->keeper, NULL);
    m->is_keeper_started = false;
}

static int reader_hold(struct mnt *m, fuse_req_t req, struct open_file *f, void *arg)
{
    (void)arg;
    if (f->is_read_only)
        (void)file_hold(m, req, f); /* failed: the inode is gone already */
    return 0;
}

static void reply_rc(fuse_req_t req, struct meta_cmd *c)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_response_buf *out;

    fuse_reply_err(req, err_of(run(m, req, c, 0, &out)));
}

/* dir/name is about to lose its inode (unlink, rename over it): this
 * mount's readers of that inode that hold nothing take their hold now, so
 * it outlives the name until their close, as on a local file system. */
static void removal_begin(struct mnt *m, uint64_t dir, const char *name)
{
    __atomic_add_fetch(&m->removals, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&m->read_only_open, __ATOMIC_SEQ_CST) == 0)
        return;
    struct meta_cmd c = {.op = META_OP_LOOKUP, .ino = dir, .name = name,
                         .name_len = (uint32_t)strlen(name)};
    struct meta_response_buf *out;
    if (run(m, NULL, &c, 0, &out) != 0)
        return; /* the removal will say why */
    (void)files_visit(m, NULL, out->r.reply.attr.ino, reader_hold, NULL);
}

static void removal_end(struct mnt *m)
{
    __atomic_sub_fetch(&m->removals, 1, __ATOMIC_SEQ_CST);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_UNLINK, .ino = parent, .name = name,
                         .name_len = (uint32_t)strlen(name)};

    removal_begin(m, parent, name);
    reply_rc(req, &c);
    removal_end(m);
}

/* While directories are open here, the one removed may be one of them:
 * the shard's answer brings its attributes (removed_dir_keep). */
static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_RMDIR, .ino = parent, .name = name,
                         .name_len = (uint32_t)strlen(name)};
    struct meta_response_buf *out;

    int rc = run(m, req, &c, 0, &out);
    if (rc == 0 && out->r.reply.attr.ino != 0 &&
        __atomic_load_n(&m->dirs_open, __ATOMIC_ACQUIRE) > 0)
        removed_dir_keep(m, &out->r.reply.attr);
    fuse_reply_err(req, err_of(rc));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    struct meta_cmd c = {.op = META_OP_RENAME, .ino = parent, .name = name,
                         .name_len = (uint32_t)strlen(name), .new_dir = newparent,
                         .new_name = newname, .new_name_len = (uint32_t)strlen(newname),
                         .flags = flags};
    struct mnt *m = fuse_req_userdata(req);
    struct meta_response_buf *out;
    /* the kernel moves its entries, and what was granted with them, to
     * names the tables do not know them by: taken back once it has */
    struct moved_name *to = m->grants ? leased_moved_new(newparent, newname, c.new_name_len) : NULL;
    struct moved_name *from = m->grants ? leased_moved_new(parent, name, c.name_len) : NULL;

    if (m->grants != NULL && (to == NULL || from == NULL)) {
        leased_moved_drop(to);
        leased_moved_drop(from);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    removal_begin(m, newparent, newname);
    int rc = run(m, req, &c, 0, &out);
    /* before the reply: until the kernel moves its entries, no lookup can
     * give the moved file's node another name */
    bool is_exchange = rc == 0 && (flags & RENAME_EXCHANGE) != 0;
    /* an exchange moved the other file the other way; a retried one's
     * first answer does not name it: whichever node had its old name is
     * retired, before the moved file takes that name */
    if (is_exchange && out->r.reply.other.ino == 0)
        nodes_name_moved(m->nodes, newparent, newname, c.new_name_len);
    if (rc == 0)
        nodes_renamed(m->nodes, &out->r.reply.attr, parent, name, c.name_len, newparent,
                      newname, c.new_name_len);
    if (is_exchange && out->r.reply.other.ino != 0)
        nodes_renamed(m->nodes, &out->r.reply.other, newparent, newname, c.new_name_len, parent,
                      name, c.name_len);
    fuse_reply_err(req, err_of(rc));
    removal_end(m);
    if (rc == 0 && m->grants != NULL) {
        leased_moved_take_back(m->leased, to);
        leased_moved_take_back(m->leased, from); /* an exchange moved this one too */
    } else {
        leased_moved_drop(to);
        leased_moved_drop(from);
    }
}

static void op_readlink(fuse_req_t req, fuse_ino_t node)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_READLINK, .ino = ino_of(m, node)};
    struct meta_response_buf *out;
    int rc = run(m, req, &c, 0, &out);

    if (rc != 0)
        fuse_reply_err(req, err_of(rc));
    else
        fuse_reply_readlink(req, out->r.reply.target);
}

static void op_access(fuse_req_t req, fuse_ino_t node, int mask)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_ACCESS, .ino = ino_of(m, node), .flags = (uint32_t)mask};
    reply_rc(req, &c);
}

/* The disk of a file:// store, which this mount writes its blocks into. */
static bool store_disk(const struct mnt *m, struct statvfs *out)
{
    const char *url = obj_store_url(m->store);
    char dir[1024];

    if (!m->is_store_local)
        return false;
    snprintf(dir, sizeof(dir), "%.*s", (int)strcspn(url + 7, "?"), url + 7);
    return statvfs(dir, out) == 0 && out->f_blocks > 0;
}

static void op_statfs(fuse_req_t req, fuse_ino_t node)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_STATFS, .ino = ino_of(m, node)};
    struct meta_response_buf *out;
    int rc = run(m, req, &c, 0, &out);

    if (rc != 0) {
        fuse_reply_err(req, err_of(rc));
        return;
    }
    /* an s3:// store has no fixed size: report 1 PiB, less what files hold;
     * a file:// one is a disk this mount writes to: its size and room */
    const uint64_t files = 1ull << 40;
    uint64_t blocks = (1ull << 50) / 4096;
    uint64_t used = (out->r.reply.bytes + 4095) / 4096;
    uint64_t avail = used < blocks ? blocks - used : 0;
    uint64_t bfree = avail;
    struct statvfs disk;
    if (store_disk(m, &disk)) {
        blocks = (uint64_t)disk.f_blocks * disk.f_frsize / 4096;
        bfree = (uint64_t)disk.f_bfree * disk.f_frsize / 4096;
        uint64_t room = (uint64_t)disk.f_bavail * disk.f_frsize;
        avail = room > OBJ_FILE_RESERVE_BYTES ? (room - OBJ_FILE_RESERVE_BYTES) / 4096 : 0;
    }
    struct statvfs sv = {.f_bsize = 4096, .f_frsize = 4096, .f_blocks = blocks, .f_bfree = bfree,
                         .f_bavail = avail, .f_files = files, .f_namemax = META_NAME_BYTES_MAX};
    sv.f_ffree = out->r.reply.files < files ? files - out->r.reply.files : 0;
    sv.f_favail = sv.f_ffree;
    fuse_reply_statfs(req, &sv);
}

/* ---- open files ------------------------------------------------------------------------------ */

static struct open_file *file_new(struct mnt *m, uint64_t ino, uint64_t node, bool is_read_only)
{
    struct open_file *f = ar_calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    f->ino = ino;
    f->node = node;
    f->is_read_only = is_read_only;
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_lock(&m->files_mu);
    f->next = m->files;
    if (m->files != NULL)
        m->files->prev = f;
    m->files = f;
    if (is_read_only)
        __atomic_add_fetch(&m->read_only_open, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&m->files_mu);
    return f;
}

/* The session that held f's inode for it (0: none), for hold_release().
 * Out of the list and with no pins, f can no longer gain a hold
 * (removal_begin takes them pinned). */
static uint64_t file_free(struct mnt *m, struct open_file *f)
{
    pthread_mutex_lock(&m->files_mu);
    /* bounded: a pin lasts one commit or hold, and the client's calls time out */
    while (f->pins > 0)
        pthread_cond_wait(&m->files_cond, &m->files_mu);
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        m->files = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    if (f->is_read_only)
        __atomic_sub_fetch(&m->read_only_open, 1, __ATOMIC_SEQ_CST);
    uint64_t held_by = f->held_by;
    pthread_mutex_unlock(&m->files_mu);
    pthread_mutex_destroy(&f->mu);
    __atomic_sub_fetch(&m->touched, f->buf_touched, __ATOMIC_RELAXED);
    ar_free(f->map);
    ar_free(f->buf);
    ar_free(f);
    return held_by;
}

static bool version_equal(const struct data_version *a, const struct data_version *b)
{
    return a->size == b->size && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

static struct data_version version_of(const struct meta_attr *a)
{
    return (struct data_version){.size = a->size, .mtime_ns = a->mtime_ns,
                                 .ctime_ns = a->ctime_ns};
}

static uint32_t kept_slot(uint64_t node)
{
    /* the product's top bits (see maps_slot) */
    return (uint32_t)(node * 0x9e3779b97f4a7c15ull >> (64u - KEPT_SLOTS_LOG2));
}

/* A reader opens the kernel's node at version v: whether the kernel may
 * keep the pages it holds (they hold v's bytes and no others). Records v
 * either way. */
static bool kept_open(struct mnt *m, uint64_t node, const struct data_version *v)
{
    uint32_t slot = kept_slot(node);

    pthread_mutex_lock(&m->kept_mu);
    bool is_kept = m->kept[slot].node == node && !m->kept[slot].is_mixed &&
                   version_equal(&m->kept[slot].version, v);
    if (!is_kept) {
        m->kept[slot].node = node;
        m->kept[slot].version = *v;
        m->kept[slot].is_mixed = false;
    }
    pthread_mutex_unlock(&m->kept_mu);
    return is_kept;
}

/* Bytes of version v (NULL: written here, of no version yet) may be in
 * node's pages now (its kernel inode's): if they are not the recorded
 * version's, the next open drops the pages. */
static void kept_filled(struct mnt *m, uint64_t node, const struct data_version *v)
{
    uint32_t slot = kept_slot(node);

    pthread_mutex_lock(&m->kept_mu);
    if (m->kept[slot].node == node && (v == NULL || !version_equal(&m->kept[slot].version, v)))
        m->kept[slot].is_mixed = true;
    pthread_mutex_unlock(&m->kept_mu);
}

/* f's writer put bytes of no version yet in its node's pages; an open
 * through the inode's own number must not keep its pages either. */
static void kept_written(struct mnt *m, const struct open_file *f)
{
    kept_filled(m, f->node, NULL);
    if (f->node != f->ino)
        kept_filled(m, f->ino, NULL);
}

/* ---- how the kernel does an open's I/O ---- */

static struct io_inode **io_slot(struct mnt *m, uint64_t ino)
{
    struct io_inode **p = &m->open_inodes[(ino * 0x9e3779b97f4a7c15ull >> 40) % OPEN_INODE_BUCKETS];

    /* bounded by the inodes open in one bucket */
    while (*p != NULL && (*p)->ino != ino) {
        p = &(*p)->next;
    }
    return p;
}

/* Whether a reader's file is one whole block (its one slice too): the disk
 * cache then holds a copy of exactly the file's bytes, named name. */
static bool is_one_block(const struct mnt *m, const struct open_file *f, char name[48])
{
    const struct meta_slice *p = f->map;

    if (m->disk == NULL || p == NULL || f->map_count != 1 || f->map_size == 0 ||
        f->map_size > m->block_bytes || p->id == 0 || p->pos != 0 || p->off != 0 ||
        p->len != f->map_size || p->size != f->map_size)
        return false;
    cache_name(p->id, 0, name);
    return true;
}

/* Whether the device's refusal of a backing file will be the same for
 * every file (else only this open goes without passthrough). */
static bool is_refused_for_good(int rc)
{
    return rc == -EPERM || rc == -ELOOP || rc == -EINVAL || rc == -EOPNOTSUPP || rc == -ENOTTY;
}

/* Decide and count how the kernel does f's I/O (f->io), before the open's
 * reply, which names *backing when it is not 0. A reader of a one-block
 * file whose copy on disk passes its check goes in passthrough unless its
 * inode is open through the kernel's pages; another reader of an inode
 * that has readers in passthrough joins them (direct, if the file changed
 * since). A writer of such an inode is refused: -ETXTBSY. may_pass: the
 * caller can answer in passthrough (else -EBUSY where it must). 0, or
 * -errno with f->io IO_NONE. */
static int io_open(struct mnt *m, struct open_file *f, bool may_pass, int *backing)
{
    char name[48] = "";
    int fd = -1;
    int id = 0;
    int rc = 0;

    *backing = 0;
    f->io = IO_NONE;
    if (may_pass && __atomic_load_n(&m->may_pass, __ATOMIC_RELAXED) && f->is_read_only &&
        fusedev_passthrough() && is_one_block(m, f, name))
        fd = block_cache_open_copy(m->disk, name, (uint32_t)f->map_size);
    pthread_mutex_lock(&m->pass_mu);
    struct io_inode **slot = io_slot(m, f->ino);
    struct io_inode *e = *slot;
    if (e == NULL && (e = ar_calloc(1, sizeof(*e))) != NULL) {
        e->ino = f->ino;
        e->fd = -1;
        *slot = e;
    }
    if (e == NULL) {
        rc = -ENOMEM;
    } else if (e->passing > 0 && !f->is_read_only) {
        rc = -ETXTBSY;
    } else if (e->passing > 0 && !may_pass) {
        rc = -EBUSY;
    } else if (e->passing > 0) {
        f->io = fd >= 0 && strcmp(e->block, name) == 0 && version_equal(&e->version, &f->version)
                    ? IO_PASSING
                    : IO_DIRECT;
        e->passing++;
        *backing = e->backing_id;
    } else if (e->cached == 0 && fd >= 0 && (id = fusedev_backing_open(fd)) > 0) {
        f->io = IO_PASSING;
        e->passing = 1;
        e->fd = fd;
        fd = -1;
        e->backing_id = id;
        snprintf(e->block, sizeof(e->block), "%s", name);
        e->version = f->version;
        *backing = id;
    } else {
        f->io = IO_CACHED;
        e->cached++;
    }
    if (e != NULL && e->cached == 0 && e->passing == 0) {
        *slot = e->next; /* refused: nothing counted */
        ar_free(e);
    }
    f->io_entry = f->io != IO_NONE ? e : NULL;
    pthread_mutex_unlock(&m->pass_mu);
    /* refused for a reason every file shares (no CAP_SYS_ADMIN, a cache on
     * a stacked file system): the mount stops asking */
    if (id < 0 && is_refused_for_good(id) &&
        __atomic_exchange_n(&m->may_pass, false, __ATOMIC_RELAXED))
        ar_log(AR_LOG_WARN, "reads stay in the mount: the kernel refused the disk cache's "
               "files for passthrough: %s", id == -ELOOP ? "the cache is on a stacked file "
               "system (overlayfs?)" : id == -EPERM ? "the mount lacks CAP_SYS_ADMIN"
                                                    : ar_strerror(id));
    if (fd >= 0)
        close(fd);
    if (f->io == IO_PASSING)
        __atomic_add_fetch(&m->passthrough_opens, 1, __ATOMIC_RELAXED);
    return rc;
}

/* f is closed (the kernel let go of its I/O mode before its RELEASE). */
static void io_close(struct mnt *m, struct open_file *f)
{
    int fd = -1;
    int id = 0;

    if (f->io == IO_NONE)
        return;
    pthread_mutex_lock(&m->pass_mu);
    struct io_inode **slot = io_slot(m, f->ino);
    struct io_inode *e = *slot;
    if (e != NULL && f->io == IO_CACHED)
        e->cached--;
    if (e != NULL && (f->io == IO_PASSING || f->io == IO_DIRECT) && e->passing > 0 &&
        --e->passing == 0) {
        fd = e->fd;
        id = e->backing_id;
        e->fd = -1;
        e->backing_id = 0;
        e->block[0] = '\0';
    }
    if (e != NULL && e->cached == 0 && e->passing == 0) {
        *slot = e->next;
        ar_free(e);
    }
    pthread_mutex_unlock(&m->pass_mu);
    f->io = IO_NONE;
    f->io_entry = NULL;
    if (id > 0)
        fusedev_backing_close(id);
    if (fd >= 0)
        close(fd);
}

/* Whether a reader's open may be answered in passthrough now. */
static bool may_pass_now(struct mnt *m)
{
    return fusedev_passthrough() && __atomic_load_n(&m->may_pass, __ATOMIC_RELAXED);
}

/* f began (change 1) or stopped (-1) buffering bytes, or buffered more
 * (0): its inode's buffered end follows; holds f->mu. Buffering more needs
 * no lock: f's own count keeps the entry's above 0 meanwhile, so nothing
 * resets the end under it, and f's open keeps the entry. */
static void io_buffered(struct mnt *m, const struct open_file *f, int change)
{
    if (f->io == IO_NONE)
        return; /* not counted: its open failed */
    uint64_t end = f->buf_off + f->buf_len;
    if (change == 0) {
        struct io_inode *e = f->io_entry;
        uint64_t was = __atomic_load_n(&e->buffered_end, __ATOMIC_RELAXED);
        /* bounded: each retry saw another open move the end */
        while (end > was && !__atomic_compare_exchange_n(&e->buffered_end, &was, end, true,
                                                         __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        }
        return;
    }
    pthread_mutex_lock(&m->pass_mu);
    struct io_inode *e = f->io_entry;
    e->buffering = (uint32_t)((int64_t)e->buffering + change);
    if (e->buffering == 0)
        __atomic_store_n(&e->buffered_end, 0, __ATOMIC_RELAXED);
    else if (change > 0 && end > __atomic_load_n(&e->buffered_end, __ATOMIC_RELAXED))
        __atomic_store_n(&e->buffered_end, end, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&m->pass_mu);
}

/* The size of ino to answer, from the shard's (size): past it if this
 * mount's opens of ino buffer bytes further. Writes that returned count,
 * as on a local file system: a lookup, a link or a listing answered
 * without them would shrink the kernel's size, and the next O_APPEND
 * write would go below them. A truncation commits them first. */
static uint64_t io_size(struct mnt *m, uint64_t ino, uint64_t size)
{
    if (__atomic_load_n(&m->buffering, __ATOMIC_ACQUIRE) == 0)
        return size;
    pthread_mutex_lock(&m->pass_mu);
    struct io_inode *e = *io_slot(m, ino);
    uint64_t end = e != NULL && e->buffering > 0
                       ? __atomic_load_n(&e->buffered_end, __ATOMIC_RELAXED) : 0;
    if (end > size)
        size = end;
    pthread_mutex_unlock(&m->pass_mu);
    return size;
}

/* Whether readers hold ino in passthrough on this mount. */
static bool io_is_passing(struct mnt *m, uint64_t ino)
{
    pthread_mutex_lock(&m->pass_mu);
    struct io_inode *e = *io_slot(m, ino);
    bool is_passing = e != NULL && e->passing > 0;
    pthread_mutex_unlock(&m->pass_mu);
    return is_passing;
}

/* Resolve chunk 0 of a reader's file into f->map: the open finds out the
 * inode is gone (ESTALE, on which the kernel walks the path again), and
 * the first reads need no round trip. */
/* The product's top bits: its middle ones repeat for inode numbers in a
 * run (25,000 consecutive ones fell in 7,210 of 32,768 slots). */
static uint32_t maps_slot(uint64_t ino)
{
    return (uint32_t)(ino * 0x9e3779b97f4a7c15ull >> (64u - MAPS_SLOTS_LOG2));
}

/* Keep a READ_MAP's answer r (chunk 0 of r->attr's file) for later opens. */
static void maps_keep(struct mnt *m, const struct meta_reply *r)
{
    if (m->maps == NULL || r->slice_count > MAP_KEPT_SLICES)
        return;
    pthread_mutex_lock(&m->maps_mu);
    struct kept_map *k = &m->maps[maps_slot(r->attr.ino)];
    k->ino = r->attr.ino;
    k->version = version_of(&r->attr);
    k->count = r->slice_count;
    memcpy(k->slices, r->slices, sizeof(*k->slices) * r->slice_count);
    pthread_mutex_unlock(&m->maps_mu);
}

static void map_fill(struct mnt *m, struct open_file *f, const struct meta_reply *r, uint64_t gen)
{
    f->version = version_of(&r->attr);
    f->is_orphan = r->attr.nlink == 0;
    f->map = ar_malloc(sizeof(*f->map) * (r->slice_count > 0 ? r->slice_count : 1));
    if (f->map == NULL)
        return; /* its reads resolve the chunk themselves */
    if (r->slice_count > 0)
        memcpy(f->map, r->slices, sizeof(*f->map) * r->slice_count);
    f->map_count = r->slice_count;
    f->map_size = r->attr.size;
    f->map_gen = gen;
    f->map_until_ms = client_mono_ms() + (uint64_t)(m->attr_timeout * 1000.0);
}

/* A reader's open of a file whose attributes this mount holds under lease
 * and whose chunk-0 map it kept at that version: f's map from there,
 * as a READ_MAP would have answered it (gen: the mount's data commits
 * before the lease was looked at). Close-to-open: only with an answer
 * from the leader to a request sent within META_FRESH_ASK_MS, so that a
 * change closed on another mount before this open was told here and
 * taken in (its leader answered that close only after this mount acked
 * the notice, or after that time). False: ask the shard. */
static bool map_from_kept(struct mnt *m, struct open_file *f, uint64_t gen)
{
    struct meta_attr a;
    uint64_t left_ms;
    struct meta_reply r = {0};
    struct meta_slice slices[MAP_KEPT_SLICES];
    uint64_t fresh_ms = m->lease_bound_ms < META_FRESH_ASK_MS ? m->lease_bound_ms
                                                              : META_FRESH_ASK_MS;

    if (m->maps == NULL ||
        !leased_getattr(m->leased, m->mc, f->ino, fresh_ms, &a, &left_ms) ||
        a.nlink == 0 || !S_ISREG(a.mode))
        return false; /* an orphan needs its hold: the shard's path takes it */
    pthread_mutex_lock(&m->maps_mu);
    const struct kept_map *k = &m->maps[maps_slot(f->ino)];
    struct data_version v = version_of(&a);
    bool is_kept = k->ino == f->ino && version_equal(&k->version, &v);
    if (is_kept) {
        r.slice_count = k->count;
        memcpy(slices, k->slices, sizeof(*slices) * k->count);
    }
    pthread_mutex_unlock(&m->maps_mu);
    if (!is_kept)
        return false;
    r.attr = a;
    r.slices = slices;
    map_fill(m, f, &r, gen);
    return f->map != NULL;
}

static int map_load(struct mnt *m, fuse_req_t req, struct open_file *f)
{
    uint64_t gen = __atomic_load_n(&m->data_gen, __ATOMIC_ACQUIRE);
    struct meta_cmd c = {.op = META_OP_READ_MAP, .ino = f->ino, .offset = 0};
    struct meta_response_buf *out;
    int rc = run(m, req, &c, 0, &out);

    if (rc == 0) {
        maps_keep(m, &out->r.reply);
        map_fill(m, f, &out->r.reply, gen);
    }
    return rc;
}

/* An open refused, or interrupted before its reply reached the kernel: no
 * RELEASE will come for f. On the client's thread (which must not take
 * files_mu nor wait for a release), a FUSE thread frees it later. */
static void open_abandoned(struct mnt *m, struct open_file *f, bool is_client_thread)
{
    io_close(m, f);
    if (is_client_thread) {
        file_dead(m, f);
        return;
    }
    uint64_t ino = f->ino;
    hold_release(m, ino, file_free(m, f));
}

/* Answer an open as io_open() decided for f (rc: what it returned;
 * unique: the request's id, for an answer that names a backing file).
 * On the metadata client's thread, f is left to a FUSE thread to free
 * (file_dead) should no RELEASE ever come. */
static void reply_open(struct mnt *m, fuse_req_t req, struct fuse_file_info *fi,
                       struct open_file *f, int rc, uint64_t unique, int backing,
                       bool is_client_thread)
{
    if (rc != 0) {
        fuse_reply_err(req, -rc);
    } else if (backing > 0) {
        rc = fusedev_reply_passthrough(unique, fi->fh, backing, f->io == IO_DIRECT);
        fuse_reply_none(req);
    } else {
        fi->direct_io = f->io == IO_DIRECT;
        rc = fuse_reply_open(req, fi);
    }
    if (rc != 0)
        open_abandoned(m, f, is_client_thread);
}

/* The reply to a reader's open: its close has nothing to commit (no FLUSH
 * round trip), and the kernel keeps the file's pages if they still hold
 * this version's bytes. */
static void reply_reader_open(struct mnt *m, fuse_req_t req, struct fuse_file_info *fi,
                              struct open_file *f, uint64_t unique, bool is_client_thread)
{
    int backing = 0;

    fi->fh = (uint64_t)(uintptr_t)f;
    fi->noflush = 1;
    int rc = io_open(m, f, unique != 0, &backing);
    /* an alias's pages are not kept: a write through the file's other
     * kernel inode, still in this mount's buffer, is not in them */
    if (rc == 0 && f->io == IO_CACHED && f->node == f->ino)
        fi->keep_cache = kept_open(m, f->node, &f->version);
    reply_open(m, req, fi, f, rc, unique, backing, is_client_thread);
}

/* An open that failed on the client's loop, which must not take files_mu:
 * a FUSE thread frees it at its next open or release. */
static void file_dead(struct mnt *m, struct open_file *f)
{
    pthread_mutex_lock(&m->dead_mu);
    f->dead_next = m->dead_files;
    m->dead_files = f;
    pthread_mutex_unlock(&m->dead_mu);
}

static void files_reap(struct mnt *m)
{
    /* a look without the lock: a file missed now goes at the next call */
    if (__atomic_load_n(&m->dead_files, __ATOMIC_ACQUIRE) == NULL)
        return;
    pthread_mutex_lock(&m->dead_mu);
    struct open_file *f = m->dead_files;
    m->dead_files = NULL;
    pthread_mutex_unlock(&m->dead_mu);
    /* bounded by the opens that failed */
    while (f != NULL) {
        struct open_file *next = f->dead_next;
        uint64_t ino = f->ino;
        hold_release(m, ino, file_free(m, f)); /* a removal here held it meanwhile */
        f = next;
    }
}

/* A reader's open commits nothing: the session's hold only matters once
 * the file loses its last name, and a removal on this mount takes it for
 * the readers first (removal_begin). A removal on another mount does not:
 * this mount's readers then fail with ESTALE, as NFS clients do. A writer
 * holds from its open, since its bytes commit to the inode later. */
static void op_open(fuse_req_t req, fuse_ino_t node, struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    uint64_t ino = ino_of(m, node);
    bool is_read_only = (fi->flags & O_ACCMODE) == O_RDONLY;
    files_reap(m);
    if (ino == 0) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    struct open_file *f = file_new(m, ino, node, is_read_only);
    int rc = f == NULL ? -ENOMEM : 0;

    /* a reader counted itself (file_new) before it looks at removals: a
     * removal in flight may have missed it */
    bool is_removing = __atomic_load_n(&m->removals, __ATOMIC_SEQ_CST) > 0;
    /* from what this mount holds under lease; else answered on the client's
     * loop, or (a copy on disk to open) by an opener */
    uint64_t gen = __atomic_load_n(&m->data_gen, __ATOMIC_ACQUIRE);
    if (rc == 0 && is_read_only && !is_removing && map_from_kept(m, f, gen)) {
        __atomic_add_fetch(&m->maps_hits, 1, __ATOMIC_RELAXED);
        reply_reader_open(m, req, fi, f, fusedev_unique(), false);
        return;
    }
    if (rc == 0 && is_read_only && !is_removing) {
        struct query *q = query_new(m, req, META_OP_READ_MAP, ino);
        if (q != NULL) {
            q->f = f;
            q->unique = fusedev_unique();
            q->fi = *fi;
            q->gen = gen;
            cred_of(req, &q->cmd.cred, false);
            query_send(q);
            return;
        }
    }
    if (rc == 0 && (!is_read_only || is_removing))
        rc = file_hold(m, req, f);
    if (rc == 0 && is_read_only)
        rc = map_load(m, req, f);
    if (rc == 0 && is_read_only && f->is_orphan)
        rc = file_hold(m, req, f); /* as the async path does (query_done) */
    if (rc != 0) {
        if (f != NULL)
            hold_release(m, ino, file_free(m, f));
        fuse_reply_err(req, err_of_ino(rc));
        return;
    }
    if (is_read_only) {
        reply_reader_open(m, req, fi, f, fusedev_unique(), false);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)f;
    int backing = 0;
    rc = io_open(m, f, false, &backing); /* a writer never passes through */
    kept_written(m, f); /* its writes go through the pages */
    reply_open(m, req, fi, f, rc, fusedev_unique(), backing, false);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_MKNOD, .ino = parent, .name = name,
                         .name_len = (uint32_t)strlen(name), .mode = S_IFREG | (mode & 07777)};
    uint32_t shard = ar_client_shard_of(m->mc, parent);
    struct meta_response_buf *out;
    int rc = -ENOTCONN;

    /* made and held open by the session in one command; like hold(), wait
     * (bounded) for a session when the servers closed ours */
    for (int tries = 0; tries < 200; tries++) {
        c.session = ar_client_session(m->mc, shard);
        rc = c.session == 0 ? -ENOTCONN : run(m, req, &c, 0, &out);
        if (rc != -ENOTCONN && rc != -ESTALE)
            break;
        usleep(10000);
    }
    if (rc != 0) {
        fuse_reply_err(req, err_of(rc));
        return;
    }
    const struct meta_attr *a = &out->r.reply.attr;
    struct fuse_entry_param e = {.attr_timeout = m->attr_timeout,
                                 .entry_timeout = m->entry_timeout};
    uint64_t ms = granted_ms(m, parent, name, c.name_len, a);
    if (ms > 0)
        e.attr_timeout = e.entry_timeout = (double)ms / 1000.0;
    stat_of(m, a, &e.attr);
    /* a new inode: the kernel knows no other name of it, so never an alias */
    e.ino = nodes_entry(m->nodes, parent, name, c.name_len, a,
                        (uint64_t)(e.entry_timeout * 1000.0) + 1, true);
    struct open_file *f = e.ino == a->ino ? file_new(m, a->ino, e.ino, false) : NULL;
    if (f != NULL) {
        /* the MKNOD took it; the keeper may have walked past f meanwhile */
        __atomic_store_n(&f->held_by, c.session, __ATOMIC_RELEASE);
        (void)file_rehold(m, req, f, NULL);
    }
    if (f == NULL) {
        hold_release(m, a->ino, c.session);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)f;
    int backing = 0;
    rc = io_open(m, f, false, &backing); /* a writer: in the pages */
    if (rc == 0 && fuse_reply_create(req, &e, fi) == 0)
        return;
    if (rc != 0)
        fuse_reply_err(req, -rc);
    open_abandoned(m, f, false);
}

static void op_write(fuse_req_t req, fuse_ino_t node, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)node; /* f's */
    struct mnt *m = fuse_req_userdata(req);
    struct open_file *f = (struct open_file *)(uintptr_t)fi->fh;
    uint64_t at = (uint64_t)off;
    size_t done = 0;
    int rc = 0;

    if (at + size > META_FILE_BYTES_MAX) {
        fuse_reply_err(req, EFBIG);
        return;
    }
    pthread_mutex_lock(&f->mu);
    /* another open of this mount buffers too (one of this inode?): its
     * bytes under this write go first (files_mu comes before f->mu) */
    if (__atomic_load_n(&m->buffering, __ATOMIC_ACQUIRE) > (f->buf_len > 0 ? 1u : 0u)) {
        pthread_mutex_unlock(&f->mu);
        rc = commit_overlapping(m, req, f, at, size);
        pthread_mutex_lock(&f->mu);
    }
    if (rc == 0 && f->buf == NULL && (f->buf = ar_malloc(m->buf_cap)) == NULL)
        rc = -ENOMEM;
    /* bounded: each turn takes what fits in the buffer and the chunk */
    while (rc == 0 && done < size) {
        if (f->buf_len > 0 && f->buf_off + f->buf_len != at)
            rc = commit(m, req, f); /* not contiguous: the buffered bytes go first */
        if (rc != 0)
            break;
        if (f->buf_len == 0)
            f->buf_off = at;
        uint64_t chunk_end = (at / META_CHUNK_BYTES + 1) * META_CHUNK_BYTES;
        size_t n = size - done;
        if (n > chunk_end - at)
            n = (size_t)(chunk_end - at);
        if (n > m->buf_cap - f->buf_len)
            n = m->buf_cap - f->buf_len;
        memcpy(f->buf + f->buf_len, buf + done, n);
        buf_added(m, f, (uint32_t)n);
        bool is_full = f->buf_len == m->buf_cap || at + n == chunk_end;
        bool is_over = __atomic_load_n(&m->buffered, __ATOMIC_RELAXED) > m->budget;
        if (is_full || is_over)
            rc = commit(m, req, f);
        /* not written: the caller hears so. And so a buffer never ends on a
         * chunk's edge uncommitted, where the next write would carry it
         * across (a slice of two chunks: every commit of it EINVAL) */
        if (rc != 0) {
            buf_taken(m, f, (uint32_t)n);
            break;
        }
        done += n;
        at += n;
        if (is_over && !is_full)
            buf_drop_pages(m, f);
    }
    pthread_mutex_unlock(&f->mu);
    buf_reclaim(m);
    kept_written(m, f); /* the kernel put these bytes in the pages */
    /* bytes written before a failure are a short count, as on Linux */
    if (rc != 0 && done == 0)
        fuse_reply_err(req, err_of(rc));
    else
        fuse_reply_write(req, done);
}

/* The bytes [pos, end) of a chunk at chunk_offset, whose map is slices,
 * into dst, which holds the file from dst_off: holes as zeros; a
 * sequential reader reads the next two blocks ahead. */
static int read_slices(struct mnt *m, const struct meta_slice *slices, uint32_t count,
                       uint64_t chunk_offset, uint64_t pos, uint64_t end, uint8_t *dst,
                       uint64_t dst_off, bool is_sequential)
{
    int rc = 0;

    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        const struct meta_slice *p = &slices[i];
        uint64_t from = chunk_offset + p->pos;
        uint64_t to = from + p->len;
        uint64_t lo = pos > from ? pos : from;
        uint64_t hi = end < to ? end : to;
        if (lo >= hi)
            continue;
        if (p->id == 0)
            memset(dst + (lo - dst_off), 0, hi - lo);
        else
            rc = slice_read(m, p->id, p->size, p->off + (uint32_t)(lo - from),
                            (uint32_t)(hi - lo), dst + (lo - dst_off));
        if (rc == 0 && p->id != 0 && is_sequential) {
            uint32_t last = (p->off + (uint32_t)(hi - from) - 1) / m->block_bytes;
            read_ahead(m, p->id, p->size, last + 1);
            read_ahead(m, p->id, p->size, last + 2);
        }
    }
    return rc;
}

/* *p = max(*p, v), atomically. */
static void atomic_raise(uint64_t *p, uint64_t v)
{
    uint64_t was = __atomic_load_n(p, __ATOMIC_RELAXED);

    /* bounded: each failed turn saw another thread raise it */
    while (was < v && !__atomic_compare_exchange_n(p, &was, v, true, __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED)) {
    }
}

static void op_read(fuse_req_t req, fuse_ino_t node, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    struct open_file *f = (struct open_file *)(uintptr_t)fi->fh;
    uint64_t ino = f->ino;
    uint8_t *dst = ar_malloc(size > 0 ? size : 1);
    uint64_t pos = (uint64_t)off;
    uint64_t end = pos + size;
    int rc = dst != NULL ? 0 : -ENOMEM;
    /* near the furthest a read reached: a reader going on reads ahead */
    uint64_t furthest = __atomic_load_n(&f->read_end, __ATOMIC_RELAXED);
    bool is_sequential = (uint64_t)off <= furthest + m->block_bytes &&
                         (uint64_t)off + 2ull * m->block_bytes >= furthest;
    struct data_version used = f->version; /* of the bytes read: a reader's from its open */
    bool has_used = f->is_read_only;
    bool is_one_version = true;

    if (rc == 0)
        rc = commit_ino(m, req, ino); /* reads see every write that returned */
    /* bounded: each turn resolves one chunk */
    while (rc == 0 && pos < end) {
        const struct meta_slice *slices = f->map;
        uint32_t count = f->map_count;
        uint64_t file_size = f->map_size;
        uint64_t chunk_offset = 0;
        if (f->map == NULL || pos >= META_CHUNK_BYTES ||
            f->map_gen != __atomic_load_n(&m->data_gen, __ATOMIC_ACQUIRE) ||
            client_mono_ms() >= f->map_until_ms) {
            struct meta_cmd c = {.op = META_OP_READ_MAP, .ino = ino, .offset = pos};
            struct meta_response_buf *out;
            rc = run(m, req, &c, 0, &out);
            if (rc == -ENOENT)
                rc = -ESTALE; /* removed on another mount while this one read it */
            if (rc != 0)
                break;
            slices = out->r.reply.slices;
            count = out->r.reply.slice_count;
            file_size = out->r.reply.attr.size;
            chunk_offset = out->r.reply.chunk_offset;
            struct data_version v = version_of(&out->r.reply.attr);
            is_one_version = is_one_version && (!has_used || version_equal(&v, &used));
            used = v;
            has_used = true;
        }
        if (end > file_size)
            end = file_size;
        if (pos >= end)
            break;
        rc = read_slices(m, slices, count, chunk_offset, pos, end, dst, (uint64_t)off,
                         is_sequential);
        uint64_t chunk_end = chunk_offset + META_CHUNK_BYTES;
        pos = chunk_end < end ? chunk_end : end;
    }
    /* a read far behind (a seek back, a second pass on the same
     * descriptor) begins a new run there; nearer, it may be one of the
     * kernel's reads in flight, late */
    uint64_t reached = end > (uint64_t)off ? end : (uint64_t)off;
    if (rc == 0 && (uint64_t)off + (uint64_t)RUN_BEHIND_BLOCKS * m->block_bytes < furthest)
        __atomic_store_n(&f->read_end, reached, __ATOMIC_RELAXED);
    else if (rc == 0)
        atomic_raise(&f->read_end, reached);
    if (rc != 0) {
        fuse_reply_err(req, err_of(rc));
    } else {
        fuse_reply_buf(req, (const char *)dst, end > (uint64_t)off ? end - (uint64_t)off : 0);
        /* after the reply: the bytes are in the pages now (kept pages);
         * f may be released by now, node is f's */
        if (has_used)
            kept_filled(m, node, is_one_version ? &used : NULL);
    }
    ar_free(dst);
}

/* rc, or if none the error of a write another open of f's inode lost
 * since f last said one (under f->mu). */
static int lost_write_taken(struct open_file *f, int rc)
{
    if (rc == 0)
        rc = f->lost_rc;
    f->lost_rc = 0;
    return rc;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    struct open_file *f = (struct open_file *)(uintptr_t)fi->fh;

    (void)ino;
    pthread_mutex_lock(&f->mu);
    int rc = commit(m, req, f);
    if (rc == 0)
        buf_drop_pages(m, f);
    rc = lost_write_taken(f, rc);
    pthread_mutex_unlock(&f->mu);
    fuse_reply_err(req, err_of(rc));
}

/* Every open of the inode on this mount commits, not only this one: an
 * fsync covers all the file's data (a commit is durable: the shard
 * answers after its quorum syncs). */
static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    struct open_file *f = (struct open_file *)(uintptr_t)fi->fh;

    (void)ino;
    (void)datasync;
    int rc = commit_ino(m, req, f->ino);
    pthread_mutex_lock(&f->mu);
    rc = lost_write_taken(f, rc);
    pthread_mutex_unlock(&f->mu);
    fuse_reply_err(req, err_of(rc));
}

struct lost_write {
    const struct open_file *closing;
    int rc;
};

static int note_lost_write(struct mnt *m, fuse_req_t req, struct open_file *g, void *arg)
{
    const struct lost_write *lost = arg;

    (void)m;
    (void)req;
    if (g == lost->closing)
        return 0;
    pthread_mutex_lock(&g->mu);
    if (g->lost_rc == 0)
        g->lost_rc = lost->rc;
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static void op_release(fuse_req_t req, fuse_ino_t node, struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    struct open_file *f = (struct open_file *)(uintptr_t)fi->fh;
    uint64_t ino = f->ino;

    (void)node; /* f's */
    files_reap(m);
    pthread_mutex_lock(&f->mu);
    int rc = commit(m, req, f);
    /* under f->mu: a commit_ino() that finds f still listed commits nothing */
    buf_emptied(m, f);
    pthread_mutex_unlock(&f->mu);
    if (rc != 0) {
        ar_log(AR_LOG_ERROR, "inode %" PRIu64 ": written bytes lost at close: %s",
               (uint64_t)ino, ar_strerror(rc));
        struct lost_write lost = {.closing = f, .rc = rc};
        (void)files_visit(m, NULL, ino, note_lost_write, &lost);
    }
    /* close() returns now; the session lets go of the inode after (the
     * reply ends req: the release goes without the caller's credentials,
     * which it does not need) */
    fuse_reply_err(req, 0);
    io_close(m, f);
    hold_release(m, ino, file_free(m, f));
}

/* ---- directories ------------------------------------------------------------------------------ */

/* An open directory: the server's last page of it. The kernel asks for a
 * few KiB of entries at a time (a 4 KiB buffer holds ~25 with attributes),
 * the server answers up to READDIR_ENTRIES: one round trip serves many
 * kernel requests. The page starts after offset `from`; a listing that
 * goes on from one of its entries is served from it, another offset (a
 * seekdir, a rewinddir: 0) asks the server again. */
struct dir_handle {
    struct dir_handle *next;        /* the mount's open directories, under dirs_mu */
    struct dir_handle *prev;
    pthread_mutex_t mu;
    struct meta_dirent *entries;    /* NULL: none yet */
    uint32_t count;
    uint64_t from;                  /* the offset before the first entry */
    bool is_end;                    /* no entries follow the page */
    bool has_attrs;
    bool skips_attrs;               /* this listing sends names only (mnt.listed) */
    uint64_t change_gen;            /* the mount's mutations when it was fetched */
    uint64_t attrs_until_ms;        /* its attributes are handed out until then */
};

static bool attrs_were_sent(struct mnt *m, uint64_t dir)
{
    uint32_t slot = (uint32_t)(dir * 0x9e3779b97f4a7c15ull >> 56) % LISTED_SLOTS;
    pthread_mutex_lock(&m->listed_mu);
    bool was = m->listed[slot].dir == dir && client_mono_ms() < m->listed[slot].until_ms;
    pthread_mutex_unlock(&m->listed_mu);
    return was;
}

static void attrs_sent(struct mnt *m, uint64_t dir)
{
    uint32_t slot = (uint32_t)(dir * 0x9e3779b97f4a7c15ull >> 56) % LISTED_SLOTS;
    pthread_mutex_lock(&m->listed_mu);
    m->listed[slot].dir = dir;
    m->listed[slot].until_ms = client_mono_ms() + (uint64_t)(m->entry_timeout * 500.0);
    pthread_mutex_unlock(&m->listed_mu);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mnt *m = fuse_req_userdata(req);
    struct dir_handle *h = ar_calloc(1, sizeof(*h));

    (void)ino;
    if (h == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_lock(&m->dirs_mu);
    h->next = m->dirs;
    if (m->dirs != NULL)
        m->dirs->prev = h;
    m->dirs = h;
    pthread_mutex_unlock(&m->dirs_mu);
    fi->fh = (uint64_t)(uintptr_t)h;
    __atomic_add_fetch(&m->dirs_open, 1, __ATOMIC_RELEASE);
    fuse_reply_open(req, fi);
}

static void dir_free(struct mnt *m, struct dir_handle *h)
{
    pthread_mutex_lock(&m->dirs_mu);
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        m->dirs = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&m->dirs_mu);
    pthread_mutex_destroy(&h->mu);
    ar_free(h->entries);
    ar_free(h);
    __atomic_sub_fetch(&m->dirs_open, 1, __ATOMIC_RELEASE);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    dir_free(fuse_req_userdata(req), (struct dir_handle *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* The page of ino's entries after offset `from` (>= 2) into h. */
static int page_fetch(struct mnt *m, fuse_req_t req, fuse_ino_t ino, struct dir_handle *h,
                      uint64_t from, bool is_plus)
{
    bool has_attrs = is_plus && !h->skips_attrs;
    uint64_t gen = __atomic_load_n(&m->change_gen, __ATOMIC_ACQUIRE);
    struct meta_cmd c = {.op = META_OP_READDIR, .ino = ino, .cookie = from - 2,
                         .entry_cap = READDIR_ENTRIES,
                         .flags = has_attrs ? META_READDIR_ATTRS : 0};
    struct meta_response_buf *out;
    int rc = run(m, req, &c, 0, &out);

    if (rc != 0)
        return rc;
    uint32_t n = out->r.reply.entry_count;
    struct meta_dirent *e = ar_malloc(sizeof(*e) * (n > 0 ? n : 1));
    if (e == NULL)
        return -ENOMEM;
    if (n > 0)
        memcpy(e, out->r.reply.entries, sizeof(*e) * n);
    ar_free(h->entries);
    h->entries = e;
    h->count = n;
    h->from = from;
    h->is_end = out->r.reply.is_end;
    h->has_attrs = has_attrs;
    h->change_gen = gen;
    h->attrs_until_ms = client_mono_ms() + (uint64_t)(m->attr_timeout * 1000.0);
    if (has_attrs && from == 2)
        attrs_sent(m, ino);
    return 0;
}

/* Where offset off continues in h's page: the index of the next entry, or
 * UINT32_MAX if the page does not hold that place. */
static uint32_t page_at(const struct dir_handle *h, uint64_t off, bool is_plus)
{
    if (h->entries == NULL || (is_plus && !h->has_attrs && !h->skips_attrs))
        return UINT32_MAX;
    if (off == h->from)
        return 0;
    for (uint32_t i = 0; i < h->count; i++) {
        if (h->entries[i].cookie + 2 == off)
            return i + 1;
    }
    return UINT32_MAX;
}

/* Add entry d of directory dir at buf (room bytes); its size, more than
 * room if it did not fit. */
static size_t add_entry(struct mnt *m, fuse_req_t req, uint64_t dir, char *buf, size_t room,
                        const struct meta_dirent *d, bool is_plus, bool with_attrs)
{
    off_t next = (off_t)(d->cookie + 2);

    if (!is_plus) {
        struct stat st = {.st_ino = d->ino, .st_mode = d->type};
        return fuse_add_direntry(req, buf, room, d->name, &st, next);
    }
    /* handed to the kernel as a lookup; without a node id, only a name */
    struct fuse_entry_param e = {.attr = {.st_ino = d->ino, .st_mode = d->type}};
    size_t need = fuse_add_direntry_plus(req, NULL, 0, d->name, NULL, next);
    /* counted only when it fits (an alias counted for a listing that never
     * reached the kernel, interrupted, stays until the unmount) */
    if (with_attrs && d->attr.ino == d->ino && need <= room &&
        (e.ino = nodes_entry(m->nodes, dir, d->name, d->name_len, &d->attr,
                             (uint64_t)(m->entry_timeout * 1000.0) + 1, false)) != 0) {
        e.attr_timeout = m->attr_timeout;
        e.entry_timeout = m->entry_timeout;
        stat_of(m, &d->attr, &e.attr);
    }
    return fuse_add_direntry_plus(req, buf, room, d->name, &e, next);
}

/* readdir, and readdirplus (is_plus): each entry with what a lookup would
 * answer, which the kernel caches as that lookup. Offsets: 1 after ".", 2 after "..",
 * then 2 + the server's cookies. */
static void list_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi, bool is_plus)
{
    struct mnt *m = fuse_req_userdata(req);
    struct dir_handle *h = (struct dir_handle *)(uintptr_t)fi->fh;
    char *buf = ar_malloc(size);
    size_t used = 0;
    struct fuse_entry_param dot = {.attr = {.st_ino = ino, .st_mode = S_IFDIR}};
    int rc = 0;

    if (buf == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* "." and ".." go without an inode number, which the kernel skips */
    for (off_t at = off; at < 2 && used <= size; at++) {
        const char *name = at == 0 ? "." : "..";
        used += is_plus ? fuse_add_direntry_plus(req, buf + used, size - used, name, &dot, at + 1)
                        : fuse_add_direntry(req, buf + used, size - used, name, &dot.attr, at + 1);
    }
    if (used > size) {
        fuse_reply_buf(req, buf, 0);
        ar_free(buf);
        return;
    }
    uint64_t from = off > 2 ? (uint64_t)off : 2;
    pthread_mutex_lock(&h->mu);
    if (off == 0 && is_plus)
        h->skips_attrs = attrs_were_sent(m, ino);
    uint32_t i = off == 0 ? UINT32_MAX : page_at(h, from, is_plus); /* 0: a fresh listing */
    /* bounded: each turn adds entries or ends (a full buffer, the end, an error) */
    for (;;) {
        if (i == UINT32_MAX) {
            rc = page_fetch(m, req, ino, h, from, is_plus);
            if (rc != 0)
                break;
            i = 0;
        }
        /* attributes only as fresh as the kernel's own would be, and none
         * once this mount changed anything since the page came (a size
         * the kernel knows newer, a name gone) or holds unsent bytes */
        bool with_attrs = h->has_attrs && client_mono_ms() < h->attrs_until_ms &&
                          h->change_gen == __atomic_load_n(&m->change_gen, __ATOMIC_ACQUIRE) &&
                          __atomic_load_n(&m->buffered, __ATOMIC_ACQUIRE) == 0;
        for (; i < h->count; i++) {
            size_t need = add_entry(m, req, ino, buf + used, size - used, &h->entries[i], is_plus,
                                    with_attrs);
            if (need > size - used)
                break; /* full: the kernel asks again from the last offset */
            used += need;
            from = h->entries[i].cookie + 2;
        }
        if (i < h->count || h->is_end || h->count == 0)
            break;
        i = UINT32_MAX; /* the page is spent and more follow */
    }
    pthread_mutex_unlock(&h->mu);
    if (rc != 0 && used == 0)
        fuse_reply_err(req, err_of(rc));
    else
        fuse_reply_buf(req, buf, used); /* what fit before an error: the next call reports it */
    ar_free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    list_dir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    list_dir(req, ino, size, off, fi, true);
}

/* ---- extended attributes ------------------------------------------------------------------ */

static void op_setxattr(fuse_req_t req, fuse_ino_t node, const char *name, const char *value,
                        size_t size, int flags)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_SETXATTR, .ino = ino_of(m, node), .name = name,
                         .name_len = (uint32_t)strlen(name), .value = value,
                         .value_len = (uint32_t)size, .flags = (uint32_t)flags};
    if (size > META_XATTR_VALUE_MAX) {
        fuse_reply_err(req, E2BIG);
        return;
    }
    reply_rc(req, &c);
}

static void reply_data(fuse_req_t req, int rc, const struct meta_response_buf *out, size_t size)
{
    if (rc != 0)
        fuse_reply_err(req, err_of(rc));
    else if (size == 0)
        fuse_reply_xattr(req, out->r.reply.data_len);
    else if (out->r.reply.data_len > size)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, out->r.reply.data, out->r.reply.data_len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t node, const char *name, size_t size)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_GETXATTR, .ino = ino_of(m, node), .name = name,
                         .name_len = (uint32_t)strlen(name)};
    struct meta_response_buf *out;
    uint32_t cap = size > META_XATTR_VALUE_MAX ? META_XATTR_VALUE_MAX : (uint32_t)size;

    int rc = run(m, req, &c, cap, &out);
    reply_data(req, rc, out, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t node, size_t size)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_LISTXATTR, .ino = ino_of(m, node)};
    struct meta_response_buf *out;
    uint32_t cap = size > META_XATTR_BYTES_MAX ? META_XATTR_BYTES_MAX : (uint32_t)size;

    int rc = run(m, req, &c, cap, &out);
    reply_data(req, rc, out, size);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t node, const char *name)
{
    struct mnt *m = fuse_req_userdata(req);
    struct meta_cmd c = {.op = META_OP_REMOVEXATTR, .ino = ino_of(m, node), .name = name,
                         .name_len = (uint32_t)strlen(name)};
    reply_rc(req, &c);
}

static void op_forget(fuse_req_t req, fuse_ino_t node, uint64_t nlookup)
{
    struct mnt *m = fuse_req_userdata(req);

    nodes_forget(m->nodes, node, nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct mnt *m = fuse_req_userdata(req);

    for (size_t i = 0; i < count; i++) {
        nodes_forget(m->nodes, forgets[i].ino, forgets[i].nlookup);
    }
    fuse_reply_none(req);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .fallocate = op_fallocate,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .access = op_access,
    .create = op_create,
};

/* ---- kernel grants ----------------------------------------------------------------------------
 * Two grants threads take back what the kernel was granted (leased.c): one
 * attributes, one names, since a name's invalidation waits for the kernel's
 * lock on its directory, which a lookup stuck behind a failed leader may
 * hold for seconds, and attributes must not wait behind it. Neither is a
 * FUSE thread, which the kernel may be waiting for. They take back each
 * change a notice names, each name a rename here moved, and all of a
 * shard's when its promises are lost or its leader has not answered a
 * request sent in the last quarter of the bound (LEASED_VOID_LEFT): the
 * invalidations, about 3 us each, then have three quarters of it to reach
 * the kernel. While a shard has grants out, the attributes thread asks its
 * leader for something every eighth of the bound (GRANTS_ASK_LEFT), so
 * that an idle mount stays fresh. Each invalidation (the first
 * GRANTS_AGAIN_MAX of a burst) is sent again GRANTS_AGAIN_MS later: a
 * lookup in flight when the first went may have put the old answer back. */
#define GRANTS_ASK_LEFT(bound)  ((bound) * 7 / 8)
#define GRANTS_BATCH      64u
#define GRANTS_TICK_MS    20u
#define GRANTS_AGAIN_MS   100u
#define GRANTS_AGAIN_MAX  4096u
#define GRANTS_JOIN_MS    2000u /* at unmount, a thread stuck in the kernel is left */

struct keepalive {
    struct meta_cmd cmd;
    struct meta_response_buf *out;
    bool is_busy;                   /* atomic */
};

struct taker {
    struct mnt *m;
    int kind;                       /* LEASED_ATTRS or LEASED_NAMES */
    pthread_t thread;
    bool is_started;
    bool is_done;                   /* atomic: the thread returned */
    struct leased_item again[GRANTS_AGAIN_MAX]; /* sent once, sent again at again_ms */
    uint64_t again_ms[GRANTS_AGAIN_MAX];
    uint32_t again_count;
};

struct grants {
    struct fuse_session *se;
    bool is_stopping;               /* atomic */
    pthread_mutex_t mc_mu;          /* held while the metadata client is used */
    bool is_mc_gone;                /* under mc_mu */
    uint64_t last_gen;
    struct keepalive ask[LEASED_GRANT_SHARDS];
    struct taker takers[2];
    uint64_t voids;                 /* times a shard's grants were all taken back */
};

static void keepalive_done(void *arg, int rc)
{
    struct keepalive *k = arg;

    (void)rc; /* an answer with a lease refreshed the shard (ar_client_lease_left) */
    __atomic_store_n(&k->is_busy, false, __ATOMIC_RELEASE);
}

static void invalidate(struct grants *g, const struct leased_item *it)
{
    if (__atomic_load_n(&g->is_stopping, __ATOMIC_ACQUIRE))
        return; /* the session's device may be closing */
    if (it->ino != 0)
        fuse_lowlevel_notify_inval_inode(g->se, it->ino, -1, 0); /* attributes only */
    else
        fuse_lowlevel_notify_inval_entry(g->se, it->parent, it->name, it->len);
}

/* Each granting shard: fresh enough, or asked, or all taken back. */
static void grants_check(struct mnt *m, struct grants *g)
{
    uint64_t inos[LEASED_GRANT_SHARDS];
    struct ar_lease_stamp st;

    pthread_mutex_lock(&g->mc_mu);
    if (g->is_mc_gone) {
        pthread_mutex_unlock(&g->mc_mu);
        return;
    }
    ar_client_lease_stamp(m->mc, &st);
    if (st.gen != g->last_gen) {
        leased_void(m->leased, st.gen, 0); /* promises were lost */
        g->last_gen = st.gen;
    }
    uint64_t shards = leased_granted_shards(m->leased, inos);
    for (uint32_t s = 0; shards != 0 && s < LEASED_GRANT_SHARDS; s++) {
        if (((shards >> s) & 1) == 0)
            continue;
        uint64_t left = ar_client_lease_left(m->mc, s, st.gen, m->lease_bound_ms);
        if (left <= LEASED_VOID_LEFT(m->lease_bound_ms)) {
            leased_void(m->leased, st.gen, 1ull << s);
            g->voids++;
        }
        struct keepalive *k = &g->ask[s];
        if (left < GRANTS_ASK_LEFT(m->lease_bound_ms) &&
            !__atomic_load_n(&k->is_busy, __ATOMIC_ACQUIRE) &&
            (k->out != NULL || (k->out = ar_malloc(sizeof(*k->out))) != NULL)) {
            /* the root lives as long as the volume; another shard's last
             * granted inode may be gone (then the grants go, safely) */
            uint64_t ino = s == META_ROOT_SHARD ? FUSE_ROOT_ID : inos[s];
            k->cmd = (struct meta_cmd){.op = META_OP_GETATTR, .ino = ino};
            __atomic_store_n(&k->is_busy, true, __ATOMIC_RELEASE);
            if (ar_client_start(m->mc, s, &k->cmd, META_READ_LINEARIZABLE, 0, k->out,
                                keepalive_done, k) != 0)
                __atomic_store_n(&k->is_busy, false, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&g->mc_mu);
}

static void *taker_main(void *arg)
{
    struct taker *t = arg;
    struct mnt *m = t->m;
    struct grants *g = m->grants;
    struct leased_item batch[GRANTS_BATCH];
    uint64_t last_check = 0;

    /* bounded: each turn waits at most a tick; stops when asked */
    while (!__atomic_load_n(&g->is_stopping, __ATOMIC_ACQUIRE)) {
        uint32_t n = leased_take_back(m->leased, t->kind, batch, GRANTS_BATCH, GRANTS_TICK_MS);
        uint64_t now = client_mono_ms();
        uint32_t due = 0;
        while (due < t->again_count && t->again_ms[due] <= now) {
            invalidate(g, &t->again[due++]);
        }
        if (due > 0) {
            t->again_count -= due;
            memmove(t->again, t->again + due, t->again_count * sizeof(t->again[0]));
            memmove(t->again_ms, t->again_ms + due, t->again_count * sizeof(t->again_ms[0]));
        }
        for (uint32_t i = 0; i < n; i++) {
            invalidate(g, &batch[i]);
            if (t->again_count < GRANTS_AGAIN_MAX) {
                t->again_ms[t->again_count] = now + GRANTS_AGAIN_MS;
                t->again[t->again_count++] = batch[i];
            }
        }
        if (t->kind == LEASED_ATTRS && now - last_check >= GRANTS_TICK_MS) {
            grants_check(m, g);
            last_check = now;
        }
    }
    __atomic_store_n(&t->is_done, true, __ATOMIC_RELEASE);
    return NULL;
}

static int grants_start(struct mnt *m, struct fuse_session *se)
{
    struct grants *g = ar_calloc(1, sizeof(*g));

    if (g == NULL)
        return -ENOMEM;
    g->se = se;
    pthread_mutex_init(&g->mc_mu, NULL);
    struct ar_lease_stamp st;
    ar_client_lease_stamp(m->mc, &st);
    g->last_gen = st.gen;
    m->grants = g;
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        struct taker *t = &g->takers[k];
        t->m = m;
        t->kind = k == 0 ? LEASED_ATTRS : LEASED_NAMES;
        rc = -pthread_create(&t->thread, NULL, taker_main, t);
        t->is_started = rc == 0;
    }
    if (rc != 0) {
        __atomic_store_n(&g->is_stopping, true, __ATOMIC_RELEASE);
        leased_wake(m->leased);
        for (int k = 0; k < 2; k++) {
            if (g->takers[k].is_started)
                pthread_join(g->takers[k].thread, NULL);
        }
        pthread_mutex_destroy(&g->mc_mu);
        m->grants = NULL;
        ar_free(g);
    }
    return rc;
}

/* Before the metadata client closes: the threads stop using it. False if
 * one of them is still held in the kernel (an invalidation waiting for a
 * directory that a request nobody will answer now holds): it is left, and
 * the caller aborts the connection. */
static bool grants_stop(struct mnt *m)
{
    struct grants *g = m->grants;
    bool has_ended = true;

    if (g == NULL)
        return true;
    __atomic_store_n(&g->is_stopping, true, __ATOMIC_RELEASE);
    leased_wake(m->leased);
    uint64_t until = client_mono_ms() + GRANTS_JOIN_MS;
    for (int k = 0; k < 2; k++) {
        struct taker *t = &g->takers[k];
        /* bounded by GRANTS_JOIN_MS */
        while (!__atomic_load_n(&t->is_done, __ATOMIC_ACQUIRE) && client_mono_ms() < until) {
            usleep(2000);
        }
        if (__atomic_load_n(&t->is_done, __ATOMIC_ACQUIRE))
            pthread_join(t->thread, NULL);
        else
            has_ended = false;
    }
    pthread_mutex_lock(&g->mc_mu);
    g->is_mc_gone = true;
    pthread_mutex_unlock(&g->mc_mu);
    uint64_t grants;
    uint64_t taken_back;
    leased_grant_counts(m->leased, &grants, &taken_back);
    ar_log(AR_LOG_INFO,
           "kernel grants: %" PRIu64 " made, %" PRIu64 " taken back; all of a shard's taken "
           "back at once: %" PRIu64,
           grants, taken_back, g->voids);
    if (!has_ended)
        ar_log(AR_LOG_WARN, "kernel grants: an invalidation still waits in the kernel; its "
                            "thread is left, and the connection aborted to end its wait");
    return has_ended;
}

/* After the metadata client closed: keepalives still out ended with it. */
static void grants_free(struct mnt *m)
{
    struct grants *g = m->grants;

    if (g == NULL)
        return;
    for (uint32_t s = 0; s < LEASED_GRANT_SHARDS; s++) {
        ar_free(g->ask[s].out);
    }
    pthread_mutex_destroy(&g->mc_mu);
    ar_free(g);
    m->grants = NULL;
}

/* ---- mounting ------------------------------------------------------------------------------- */

/* Requests the FUSE loop's reader runs itself (fusedev_loop): those whose
 * handlers hand their call to the metadata client and return. */
static bool is_quick(void *arg, uint32_t opcode, const uint8_t *body, size_t len)
{
    struct mnt *m = arg;
    bool is_calm = __atomic_load_n(&m->removals, __ATOMIC_SEQ_CST) == 0;
    uint32_t flags = 0;

    switch (opcode) {
    case FUSE_WIRE_LOOKUP:
    case FUSE_WIRE_FORGET:
    case FUSE_WIRE_BATCH_FORGET:
    case FUSE_WIRE_INIT:
    case FUSE_WIRE_DESTROY:
    case FUSE_WIRE_INTERRUPT:
    case FUSE_WIRE_RELEASEDIR:
        return true;
    case FUSE_WIRE_GETATTR:
        /* else it first commits what this mount's open files hold */
        return __atomic_load_n(&m->buffered, __ATOMIC_ACQUIRE) == 0;
    case FUSE_WIRE_OPEN:
        /* A reader's open or release, unless a removal here makes it take
         * (or a release let go of) a hold. (A copy on disk for passthrough
         * is opened by an opener.) A request that races past this check
         * only waits here, as it would have on a pool thread (and a
         * reader's open then opens its copy here). */
        if (len >= 4)
            memcpy(&flags, body, 4);
        return is_calm && len >= 4 && (flags & O_ACCMODE) == O_RDONLY;
    case FUSE_WIRE_RELEASE:
        /* (a reader a removal held lets go of its hold here: rare) */
        if (len >= 12)
            memcpy(&flags, body + 8, 4); /* after the 8-byte file handle */
        return is_calm && len >= 12 && (flags & O_ACCMODE) == O_RDONLY;
    default:
        return false;
    }
}

static void out_free(void *p)
{
    ar_free(p);
}

/* Ask the store for a listing nothing matches: a missing bucket or a store
 * out of reach is said at mount, not as a lost write later (an application
 * may not check close()). */
static int store_probe(struct obj_store *store, char *errmsg)
{
    struct obj_list_entry entry;
    struct obj_list_page page = {.entries = &entry, .entry_cap = 1};
    char why[AR_ERRMSG_MAX] = "";

    int rc = obj_list(store, "mount-probe/", NULL, &page, why);
    if (rc == -EACCES) {
        /* credentials that may get and put objects but not list them are
         * enough for a mount: only the store's answer is known */
        ar_log(AR_LOG_WARN, "the store %s refused a listing (%s); mounting anyway: reads and "
                            "writes will tell", obj_store_url(store), why);
        return 0;
    }
    if (rc != 0)
        snprintf(errmsg, AR_ERRMSG_MAX, "the store %.200s cannot be used: %.600s",
                 obj_store_url(store), why[0] != '\0' ? why : strerror(-rc));
    return rc;
}

/* Whether this process holds CAP_SYS_ADMIN, which the kernel asks of
 * whoever hands it a backing file for passthrough. Read in this process's
 * user namespace, where the kernel asks it of the first one: "root" in a
 * rootless container passes here, and the first open finds out. */
static bool has_sys_admin(void)
{
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2] = {{0}};

    if (syscall(SYS_capget, &head, data) != 0)
        return true; /* unknown: let the first open find out */
    return (data[CAP_SYS_ADMIN / 32].effective & (1u << (CAP_SYS_ADMIN % 32))) != 0;
}

/* The parts a mount needs before it mounts: leases and nodes as the
 * options say, the metadata client (filling map), the store and the disk
 * cache. 0, or an error with errmsg. */
static int mount_open_parts(struct mnt *m, const struct ar_mount_options *o,
                            struct meta_map *map, char *errmsg)
{
    struct ar_client_options meta = o->meta;
    /* what is kept may be as stale as the kernel's caches may: never with 0 */
    double bound = o->entry_timeout_s < o->attr_timeout_s ? o->entry_timeout_s : o->attr_timeout_s;
    int rc = 0;

    if (!o->no_leases && bound > 0) {
        m->lease_bound_ms = (uint64_t)(bound * 1000.0);
        m->leased = leased_new(LEASED_SLOTS);
        if (m->leased != NULL && !o->no_open_from_leases)
            m->maps = ar_calloc(MAPS_SLOTS, sizeof(*m->maps)); /* no memory: opens ask */
        meta.on_notice = m->leased != NULL ? leased_notice : NULL; /* no memory: no leases */
        meta.notice_arg = m->leased;
    }
    keeper_init(m);
    meta.on_session = session_replaced;
    meta.session_arg = m;
    /* with entry timeouts of 0 the kernel keeps no names: inode numbers only */
    if (o->entry_timeout_s > 0 && (m->nodes = nodes_new(NODES_SETS)) == NULL)
        return -ENOMEM;
    if ((rc = ar_client_open(&meta, &m->mc, errmsg)) != 0)
        return rc;
    ar_client_map(m->mc, map);
    const char *url = o->store_url != NULL ? o->store_url : map->store_url;
    m->block_bytes = map->block_bytes > 0 ? map->block_bytes : META_BLOCK_BYTES;
    uint64_t window_ms = (uint64_t)(map->window_s > 0 ? map->window_s : META_WINDOW_S_DEFAULT)
                         * 1000u;
    m->ids_max_age_ms = window_ms / 4 < 600000u ? window_ms / 4 : 600000u;
    rc = obj_store_open(url, NULL, &m->store, errmsg);
    m->is_store_local = rc == 0 && strncmp(obj_store_url(m->store), "file://", 7) == 0;
    if (rc == 0)
        rc = store_probe(m->store, errmsg);
    if (rc != 0 || o->cache_dir == NULL || o->cache_dir[0] == '\0')
        return rc;
    /* a directory a store: two volumes' slice ids may meet */
    char dir[4200]; /* block_cache_open() refuses what it cannot keep */
    uint64_t h = 1469598103934665603ull;
    for (const char *p = obj_store_url(m->store); *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    }
    snprintf(dir, sizeof(dir), "%s/%016" PRIx64, o->cache_dir, h);
    return block_cache_open(dir, (uint64_t)(o->cache_mb ? o->cache_mb : 10240) << 20,
                            BLOCK_CACHE_FREE_MIN, &m->disk, errmsg);
}

/* m's settings and locks, then the FUSE session mounted on the absolute
 * mountpoint (both out, to be freed by the caller even on failure). 0, or
 * -EIO with errmsg. */
static int mount_session(struct mnt *m, const struct ar_mount_options *o,
                         struct fuse_session **se, char **mountpoint, char *errmsg)
{
    m->buf_cap = 2 * m->block_bytes;
    m->entry_timeout = o->entry_timeout_s;
    m->attr_timeout = o->attr_timeout_s;
    m->budget = (uint64_t)(o->write_buffer_mb ? o->write_buffer_mb : 256) << 20;
    pthread_mutex_t *locks[] = {&m->compact_mu, &m->ids_mu, &m->cache_mu, &m->files_mu, &m->listed_mu,
                                &m->kept_mu, &m->queries_mu, &m->dead_mu, &m->pass_mu,
                                &m->removed_mu, &m->maps_mu, &m->reclaim_mu, &m->dirs_mu};
    for (size_t i = 0; i < AR_ARRAY_LEN(locks); i++) {
        pthread_mutex_init(locks[i], NULL);
    }
    pthread_cond_init(&m->files_cond, NULL);
    ahead_start(m);
    keeper_start(m);
    m->has_out_key = pthread_key_create(&m->out_key, out_free) == 0;
    if (!m->has_out_key)
        return ar_errorf(errmsg, -EIO, "no thread key for the FUSE threads' buffers");
    m->may_pass = m->disk != NULL && !o->no_passthrough && !o->is_single_threaded;
    if (m->may_pass && !has_sys_admin()) {
        m->may_pass = false;
        ar_log(AR_LOG_INFO, "reads stay in the mount: the kernel takes cached files for "
               "passthrough only from a process with CAP_SYS_ADMIN (root)");
    }
    if (m->may_pass) {
        openers_start(m);
        m->may_pass = m->opener_count > 0; /* they open the copies */
        if (!m->may_pass)
            ar_log(AR_LOG_WARN, "reads stay in the mount: no thread to open the disk cache's "
                                "files for passthrough");
    }
    fusedev_want_passthrough(m->may_pass);
    fusedev_want_uring(!o->no_uring);
    /* default_permissions: the kernel checks permissions as it does for a
     * local file system, in the same order (a path's search rights before
     * its names); the server checks them again, with the same credentials,
     * for what reaches it */
    char *argv[] = {"arbor", "-o", "default_permissions", "-o", (char *)o->fuse_opts, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(o->fuse_opts != NULL ? 5 : 3, argv);
    *se = fuse_session_new(&args, &ops, sizeof(ops), m);
    fuse_opt_free_args(&args); /* the session copied what it needs */
    /* absolute: a detached mount works from "/", and the unmount needs the path */
    *mountpoint = realpath(o->mountpoint, NULL);
    bool is_mounted = *se != NULL && *mountpoint != NULL && fuse_set_signal_handlers(*se) == 0 &&
                      fuse_session_mount(*se, *mountpoint) == 0;
    if (is_mounted && ar_fuse_session_io(*se, *mountpoint, o->read_ahead_kb) == 0)
        return 0;
    if (is_mounted)
        fuse_session_unmount(*se);
    if (access("/dev/fuse", R_OK | W_OK) != 0)
        return ar_errorf(errmsg, -EIO, "cannot mount on %s: /dev/fuse: %s (mount as root, or "
                         "let users open it: chmod 0666 /dev/fuse, as Debian does)",
                         o->mountpoint, strerror(errno));
    if (!is_mounted)
        return ar_errorf(errmsg, -EIO, "cannot mount on %s (libfuse's reason is above)",
                         o->mountpoint);
    return ar_errorf(errmsg, -EIO, "cannot mount on %s: the FUSE device would not take this "
                     "mount's own loop", o->mountpoint);
}

/* What the stop did with open files' buffered bytes. */
struct stop_tally {
    uint32_t committed;
    uint32_t lost;
    int cut_rc;                     /* the cluster stopped answering: not tried further */
};

/* A write that returned is the mount's to keep: at a stop, files still
 * open commit what they buffer, as their close would have. Once a commit
 * times out the rest are not tried (each would wait as long); what is
 * lost is said, file by file. */
static int commit_at_stop(struct mnt *m, fuse_req_t req, struct open_file *f, void *arg)
{
    struct stop_tally *t = arg;

    pthread_mutex_lock(&f->mu);
    uint32_t len = f->buf_len;
    int rc = len == 0 ? 0 : t->cut_rc != 0 ? t->cut_rc : commit(m, req, f);
    pthread_mutex_unlock(&f->mu);
    if (rc == -ETIMEDOUT)
        t->cut_rc = rc;
    if (len > 0 && rc == 0)
        t->committed++;
    if (rc != 0) {
        t->lost++;
        ar_log(AR_LOG_ERROR, "inode %" PRIu64 ": %" PRIu32 " written bytes lost at the "
               "stop: %s", f->ino, len, ar_strerror(rc));
    }
    return 0;
}

/* Then the open files and directories go: no release will come for them
 * (the session's close lets go of what it held). */
static void files_close_at_stop(struct mnt *m)
{
    struct stop_tally t = {0};

    (void)files_visit(m, NULL, 0, commit_at_stop, &t);
    if (t.committed > 0 || t.lost > 0)
        ar_log(t.lost > 0 ? AR_LOG_ERROR : AR_LOG_INFO, "stopping with files open: %" PRIu32
               " committed what they had buffered, %" PRIu32 " could not", t.committed, t.lost);
    /* bounded by the files open; no handler runs now to open more */
    while (m->files != NULL) {
        struct open_file *f = m->files;
        pthread_mutex_lock(&f->mu);
        buf_emptied(m, f);
        pthread_mutex_unlock(&f->mu);
        io_close(m, f);
        (void)file_free(m, f);
    }
    /* bounded by the directories open */
    while (m->dirs != NULL) {
        dir_free(m, m->dirs);
    }
}

/* Serve the mounted session until it is unmounted or a stop signal comes
 * (mask: the signal mask to serve under), then unmount. *is_grants_left:
 * a grants thread still uses m and its tables (stuck in the kernel). */
static int mount_serve(struct mnt *m, const struct ar_mount_options *o, struct fuse_session *se,
                       const char *mountpoint, const sigset_t *mask, bool *is_grants_left)
{
    uint32_t conn = 0; /* the FUSE connection */
    pid_t guard = 0;
    int rc;

    if (o->on_mounted != NULL)
        o->on_mounted(o->on_mounted_arg);
    /* from the thread that lives as long as the mount */
    bool has_conn = mount_conn_find(mountpoint, 0, &conn);
    if (o->guard_program != NULL && has_conn)
        guard = mount_guard_start(o->guard_program, conn, mountpoint);
    /* with the stop signals still blocked: they must reach the loop's reader */
    if (m->leased != NULL && !o->no_kernel_grants &&
        m->lease_bound_ms >= LEASED_GRANT_BOUND_MIN_MS && grants_start(m, se) != 0)
        ar_log(AR_LOG_WARN, "no kernel grants (no thread): stats reach the mount past the "
                            "timeouts");
    pthread_sigmask(SIG_SETMASK, mask, NULL);
    if (o->is_single_threaded)
        rc = fuse_session_loop(se);
    else
        rc = fusedev_loop(se, o->threads ? o->threads : 16, is_quick, m);
    *is_grants_left = !grants_stop(m);
    /* no handler runs now; queries still out reply through the session,
     * so the client ends them (-ECANCELED) before the session goes */
    files_reap(m);
    openers_stop(m); /* answers that come later reply on the client's thread */
    keeper_stop(m);
    files_close_at_stop(m);
    ar_client_close(m->mc);
    m->mc = NULL;
    if (!*is_grants_left)
        grants_free(m);
    /* what the stuck thread waits for will never be answered now, and its
     * write holds /dev/fuse open: abort, or the mount's callers and this
     * process would wait on each other forever */
    if (*is_grants_left && has_conn)
        mount_conn_abort(conn);
    fuse_session_unmount(se);
    mount_guard_stop(guard);
    ar_log(AR_LOG_INFO, "unmounted %s", mountpoint);
    return rc > 0 ? 0 : rc; /* a signal ended the loop */
}

/* The closing figures of a mount that served. */
static void mount_log_figures(struct mnt *m)
{
    if (m->disk != NULL) {
        struct block_cache_stats st;
        block_cache_stats(m->disk, &st);
        ar_log(AR_LOG_INFO,
               "disk cache: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64 " MiB held, "
               "%" PRIu64 " evicted, %" PRIu64 " put in place of older ones (disk nearly "
               "full), %" PRIu64 " damaged, %" PRIu64 " removed from under it; its "
               "directory made again: %" PRIu64 "; big blocks written here kept after "
               "their commit: %" PRIu64 ", %" PRIu64 " of them not (too many waited)",
               st.hits, st.misses, st.bytes >> 20, st.evicted, st.crowded, st.damaged,
               st.gone, st.remade, st.later, st.not_kept);
        ar_log(AR_LOG_INFO, "passthrough: %" PRIu64 " opens",
               __atomic_load_n(&m->passthrough_opens, __ATOMIC_RELAXED));
    }
    ar_log(AR_LOG_INFO, "reads: %" PRIu64 " blocks fetched, %" PRIu64 " of them ahead; %" PRIu64
           " reads waited for a fetch already on its way",
           __atomic_load_n(&m->blocks_fetched, __ATOMIC_RELAXED),
           __atomic_load_n(&m->blocks_ahead, __ATOMIC_RELAXED),
           __atomic_load_n(&m->fetches_shared, __ATOMIC_RELAXED));
    if (m->leased != NULL)
        ar_log(AR_LOG_INFO, "leases: %" PRIu64 " lookups and getattrs answered by this mount, "
               "%" PRIu64 " readers' opens from kept maps", leased_hits(m->leased),
               __atomic_load_n(&m->maps_hits, __ATOMIC_RELAXED));
    if (m->nodes != NULL) {
        uint64_t made;
        uint64_t live;
        nodes_counts(m->nodes, &made, &live);
        ar_log(AR_LOG_INFO, "aliases: %" PRIu64 " made, %" PRIu64 " held by the kernel", made,
               live);
    }
}

/* What mount_open_parts() and mount_session() made; m itself and its
 * lease tables stay if a grants thread still uses them. */
static void mount_free(struct mnt *m, bool has_served, bool is_grants_left)
{
    while (m->query_spares != NULL) {
        struct query *q = m->query_spares;
        m->query_spares = q->next;
        ar_free(q->out);
        ar_free(q);
    }
    /* a fetch ahead still on its way finishes before the store closes, and
     * may put its block in memory: freed after */
    if (m->is_ahead_started)
        ahead_stop(m);
    if (m->is_openers_started) {
        openers_stop(m); /* if the mount never served */
        pthread_cond_destroy(&m->openers_cond);
        pthread_mutex_destroy(&m->openers_mu);
    }
    obj_store_close(m->store);
    for (uint32_t i = 0; i < CACHE_BLOCKS; i++) {
        ar_free(m->cache[i].data);
    }
    if (has_served)
        mount_log_figures(m);
    block_cache_close(m->disk);
    keeper_stop(m); /* if the mount never served */
    ar_client_close(m->mc); /* its thread calls leased_notice until then */
    if (m->is_keeper_init) {
        pthread_cond_destroy(&m->keeper_cond);
        pthread_mutex_destroy(&m->keeper_mu);
    }
    if (m->has_out_key)
        pthread_key_delete(m->out_key);
    nodes_free(m->nodes);
    ar_free(m->maps);
    if (!is_grants_left) {
        leased_free(m->leased);
        ar_free(m);
    }
}

int ar_mount_run(const struct ar_mount_options *o, char *errmsg)
{
    AR_ASSERT(o != NULL && o->mountpoint != NULL && errmsg != NULL);
    struct mnt *m = ar_calloc(1, sizeof(*m));
    struct meta_map *map = ar_malloc(sizeof(*map));
    struct fuse_session *se = NULL;
    char *mountpoint = NULL;
    bool is_grants_left = false;
    bool has_served = false;
    int rc = m != NULL && map != NULL ? 0 : -ENOMEM;
    /* the threads started before the FUSE loop (the metadata client's, the
     * store's) take no stop signal: it must reach the loop's reader */
    sigset_t stops;
    sigset_t mask;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stops, &mask);

    if (rc == 0)
        rc = mount_open_parts(m, o, map, errmsg);
    if (rc == 0)
        rc = mount_session(m, o, &se, &mountpoint, errmsg);
    if (rc == 0) {
        ar_log(AR_LOG_INFO, "mounted volume %s on %s", map->volume, mountpoint);
        rc = mount_serve(m, o, se, mountpoint, &mask, &is_grants_left);
        has_served = true;
    }
    if (se != NULL) {
        fuse_remove_signal_handlers(se);
        if (!is_grants_left)
            fuse_session_destroy(se);
    }
    if (m != NULL)
        mount_free(m, has_served, is_grants_left);
    ar_free(map);
    free(mountpoint);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    return rc;
}
