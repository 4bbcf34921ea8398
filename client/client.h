/* client/client.h - arbor's client module, public header.
 *
 * The metadata client: what a mount (and every tool that changes a volume)
 * uses to run commands on the cluster. It finds each shard's leader and
 * follows redirects, leader changes and new shard epochs; it resends a
 * command whose answer was lost (a timeout, a closed connection, a leader
 * that went away) with the same client id and sequence number, so the
 * shard applies it once; it keeps a session alive with heartbeats.
 *
 * And the FUSE mount, which serves a volume through them (ar_mount_run()).
 *
 * Threads: the client runs its own libuv loop on a thread of its own. Any
 * number of threads may call ar_client_call() at once; each waits for its
 * own answer, and the requests of all of them share one connection per
 * server (pipelined, matched by request id). ar_client_start() hands a
 * call over without waiting; its answer reaches a callback.
 */
#ifndef ARBOR_CLIENT_H
#define ARBOR_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "meta.h"

#define AR_CLIENT_ADDRS_MAX META_SERVER_NODES_MAX

struct ar_client_options {
    uint32_t addr_count;                     /* replicas to start from (any of them) */
    char addrs[AR_CLIENT_ADDRS_MAX][64];     /* their client addresses, host:port */
    uint32_t attempt_ms;   /* wait this long for an answer before asking elsewhere (2000) */
    uint32_t budget_ms;    /* a call fails with -ETIMEDOUT after this long (30000) */
    uint32_t quiet_ms;     /* opening, with no replica answering, say so once after
                            * this long (5000) */
    uint32_t heartbeat_ms; /* the session's heartbeats (3000; 0: default), never more
                            * than a third of the servers' session timeout */
    bool has_no_session;   /* tools that open nothing need no session */
    bool is_background;    /* every request is background work (arbor restore):
                            * leaders pace it beside live traffic */
    bool is_low_priority;  /* the client's I/O thread yields the CPU to every
                            * other thread of the machine (nice 19) */
    /* Attribute leases (meta/rpc.proto): when set, lookups, getattrs and the
     * mutations that answer with attributes ask the leader to tell this
     * client of the inode's next change, and on_notice runs on the client's
     * thread for each change notice that arrives while the promises of its
     * epoch still stand: inodes whose attributes changed, and those whose
     * names may have changed too, with the stamp's seq the notice moved it
     * to. It must not block. */
    void (*on_notice)(void *arg, uint64_t seq, const uint64_t *changed, uint32_t changed_count,
                      const uint64_t *renamed, uint32_t renamed_count);
    void *notice_arg;
    /* Runs on the client's thread when a session opens in place of one
     * lost (the servers closed it, or no answer confirmed it for most of
     * their timeout): what the old one held may be gone. It must not block. */
    void (*on_session)(void *arg, uint32_t shard, uint64_t session);
    void *session_arg;
};

struct ar_client;

/* Connect, read the shard map and open a session. errmsg says why not
 * (no replica reachable within budget_ms, a map that does not decode). */
int ar_client_open(const struct ar_client_options *o, struct ar_client **out, char *errmsg);
/* Stop the loop and free everything; no call may be running. */
void ar_client_close(struct ar_client *c);

/* Run cmd on shard and wait for its answer, decoded into *out. A query is
 * read in mode (META_READ_FOLLOWER with stale_ms from the options of the
 * call: here 0, any replica); data_cap bounds the data a reply may carry.
 * Mutations get the client's id and the next sequence number; a call sent
 * again after a lost answer keeps them. Returns the reply's rc (0 or a
 * negative errno), or -ETIMEDOUT after the budget. cmd and its buffers are
 * borrowed until the call returns. */
int ar_client_call(struct ar_client *c, uint32_t shard, const struct meta_cmd *cmd,
                   enum meta_read_mode mode, uint32_t data_cap, struct meta_response_buf *out);

/* The same call without waiting: done(arg, rc) runs on the client's thread
 * when it ends, rc and *out as ar_client_call would have given them. done
 * must not block (it may start another call this way, not wait for one).
 * cmd, its buffers and out are borrowed until then. 0, or -ECANCELED (the
 * client is stopping) or -ENOMEM, and then done never runs. */
typedef void (*ar_client_done_fn)(void *arg, int rc);
int ar_client_start(struct ar_client *c, uint32_t shard, const struct meta_cmd *cmd,
                    enum meta_read_mode mode, uint32_t data_cap, struct meta_response_buf *out,
                    ar_client_done_fn done, void *arg);

/* ---- attribute leases ----
 * An answer that carries a lease (out->r.lease != 0) may be kept and used
 * in place of asking again while ar_client_lease_left() says so: the
 * client's promises have not been lost since the answer (a lost connection,
 * a new leader or term: each moves the stamp's gen), no notice has named the
 * inode since (the caller's on_notice drops what it names), and an answer
 * from the shard's leader came for a request sent less than bound_ms ago
 * (the leader had told every change before it). The caller keeps what it
 * got only if the gen of the stamp taken with the answer is still current,
 * and no notice since that stamp's seq named the inode. */
struct ar_lease_stamp {
    uint64_t gen;  /* moves when promises are lost */
    uint64_t seq;  /* moves with every notice and every loss */
};

/* The current stamp (any thread; within a done callback, the answer's). */
void ar_client_lease_stamp(struct ar_client *c, struct ar_lease_stamp *out);
/* ar_client_call, and the stamp taken when its answer came. */
int ar_client_call_stamped(struct ar_client *c, uint32_t shard, const struct meta_cmd *cmd,
                           enum meta_read_mode mode, uint32_t data_cap,
                           struct meta_response_buf *out, struct ar_lease_stamp *stamp);
/* How long (ms) what was kept under gen on shard may still be used, 0 not
 * at all: an answer used now is at most bound_ms less this old. Any thread. */
uint64_t ar_client_lease_left(struct ar_client *c, uint32_t shard, uint64_t gen,
                              uint64_t bound_ms);

/* The shard whose lease holds inode number ino (META_ROOT_SHARD if none). */
uint32_t ar_client_shard_of(struct ar_client *c, uint64_t ino);
/* The map as last read. */
void ar_client_map(struct ar_client *c, struct meta_map *out);
/* The session of shard's leader this client holds (0: none). A session
 * that expired (the client was cut off longer than the servers wait), or
 * that no answer confirmed for most of that time, is replaced by a new
 * one; what the old one held is gone. */
uint64_t ar_client_session(struct ar_client *c, uint32_t shard);

/* Counters, for tests and `arbor status`. */
struct ar_client_stats {
    uint64_t calls;
    uint64_t resends;       /* attempts after the first: redirects, timeouts, lost connections */
    uint64_t map_reads;
    uint64_t sessions_lost;
};
void ar_client_stats(struct ar_client *c, struct ar_client_stats *out);

/* ---- the FUSE mount (mount.c) -------------------------------------------------------------- */

#define AR_READ_AHEAD_KB_DEFAULT 4096u /* a block of the default size: what a read in
                                        * pieces fetches anyway */

struct ar_mount_options {
    const char *mountpoint;
    struct ar_client_options meta;  /* where the metadata servers are */
    const char *store_url;          /* NULL: the one the shard map names */
    double entry_timeout_s;         /* the kernel caches names this long (0: not at all) */
    double attr_timeout_s;          /* and attributes */
    bool is_single_threaded;        /* one FUSE thread instead of a pool */
    uint32_t threads;               /* the pool's most threads (0: 16) */
    uint32_t write_buffer_mb;       /* written bytes all open files may hold (0: 256) */
    const char *cache_dir;          /* a disk cache of blocks (a directory in it a store);
                                     * NULL or "": none */
    uint32_t cache_mb;              /* its bound (0: 10240) */
    bool no_passthrough;            /* never let the kernel read cached copies itself */
    bool no_uring;                  /* requests through /dev/fuse even where the kernel
                                     * offers them over io_uring (fusering.c) */
    uint32_t read_ahead_kb;         /* the kernel reads this far ahead of a sequential
                                     * reader (0: its own default, 128 KiB; `arbor
                                     * mount`'s: AR_READ_AHEAD_KB_DEFAULT) */
    bool no_leases;                 /* ask the servers for every lookup and getattr */
    bool no_kernel_grants;          /* the kernel keeps leased answers for the timeouts only */
    bool no_open_from_leases;       /* a reader's open always asks the shard for the
                                     * file's map; by default, an open of a leased file at
                                     * a version whose map the mount kept asks no server
                                     * while the leader answered within META_FRESH_ASK_MS
                                     * (still close-to-open: docs/architecture.md) */
    const char *fuse_opts;          /* more -o options for the kernel, e.g. "allow_other"
                                     * (default_permissions is always on); NULL none */
    const char *guard_program;      /* a program that runs ar_mount_guard() when given
                                     * "mount-guard PID CONN MOUNTPOINT" (arbor itself);
                                     * NULL: no guard */
    void (*on_mounted)(void *arg);  /* called once, mounted, before the first request is
                                     * served (e.g. to detach from a terminal); NULL none */
    void *on_mounted_arg;
};

/* Mount the volume on o->mountpoint and serve it until it is unmounted
 * (fusermount3 -u) or a SIGINT, SIGTERM or SIGHUP arrives. 0 after a clean
 * unmount; else errmsg says why (no metadata server, the store, the
 * mount point). */
int ar_mount_run(const struct ar_mount_options *o, char *errmsg);

/* The guard of a mount (guard.c): started by ar_mount_run() as
 * o->guard_program, it waits until the mount's process (mount_pid, its
 * parent) ends and, if FUSE connection conn is still mounted then, aborts
 * it, so that nothing waits forever on a mount whose process died. 0 once
 * done. */
int ar_mount_guard(pid_t mount_pid, uint32_t conn, const char *mountpoint);

/* After fuse_session_mount() on mountpoint, before the session's loop:
 * have the kernel send lookups and listings of one directory in parallel,
 * as libfuse 3.14 means to and does not, and read read_ahead_kb KiB ahead
 * of a sequential reader (0: its own 128 KiB; root only) (fusedev.c).
 * se's handlers must be safe for parallel lookups. One session a process
 * may ask for read-ahead. 0, or what fuse_session_custom_io() returned. */
struct fuse_session;
int ar_fuse_session_io(struct fuse_session *se, const char *mountpoint, uint32_t read_ahead_kb);

/* ---- point-in-time restore (restore.c) ------------------------------------------------------
 * Put a subtree back as it was at a moment: rebuild the shard's state then
 * from the store's archive, and write the subtree at path into the live
 * volume as new inodes whose slices name the same (immutable) blocks. The
 * tree is built under a hidden name beside the destination and renamed
 * into place at the end, so the final name never holds half of it. */
struct ar_restore_options {
    struct ar_client_options meta;
    const char *store_url;     /* NULL: the one the shard map names */
    const char *path;          /* what to restore: an absolute path in the volume */
    uint64_t at_ns;            /* the moment (ns since the epoch) */
    const char *into;          /* where (absolute); NULL: path.restored-<moment> */
    bool is_replace;           /* into path itself; the live tree goes to
                                * path.replaced-<moment> */
    uint32_t threads;          /* commands in flight (0: 8) */
    uint32_t batch_files;      /* small files a command makes (0: META_RESTORE_FILES_MAX) */
    uint32_t wait_s;           /* wait this long for the archive to reach the moment */
    bool is_normal_priority;   /* write back at the caller's CPU priority; by default the
                                * threads that write into the volume run at nice 19 */
    const char *scratch_dir;   /* for a checkpoint's copy (NULL: $TMPDIR or /tmp) */
    void (*progress)(void *ctx, const char *line); /* NULL: quiet */
    /* Whether the cluster has room for names more names (files, directories,
     * links) and their state: 0, or -ENOSPC with errmsg saying what is short.
     * Asked before anything is written, first with the whole volume's count
     * at the moment, then, if that does not fit, with the subtree's own.
     * NULL: not checked. */
    int (*room)(void *ctx, uint64_t names, char *errmsg);
    void *ctx;
};

struct ar_restore_report {
    struct meta_restore_point point; /* the state rebuilt */
    uint64_t dirs, files, symlinks, links, others; /* made (links: extra names) */
    uint64_t bytes;            /* of the regular files */
    uint64_t xattrs;
    uint64_t mismatches;       /* files whose size came out different (0, or an error) */
    uint64_t names_counted;    /* read back from the restored tree before it took its name */
    uint64_t sizes_checked;    /* files whose size and mode were read back */
    double rebuild_s;          /* the state at the moment, from the archive */
    double plan_s;             /* the subtree walked, its directories made (files are
                                * written beside the walk) */
    double write_s;            /* all written and verified (plan_s included) */
    char final_path[1300];     /* where the restored tree is */
    char aside_name[300];      /* --replace: the live tree's new name, beside it */
};

/* Restore; on 0 *rep says what was done. errmsg says what went wrong:
 * the moment outside the window or not yet archived, path absent at the
 * moment, the destination taken, not enough room (-ENOSPC), an
 * interruption (and where the partial tree is: the same call removes it
 * and starts over). */
int ar_restore_run(const struct ar_restore_options *o, struct ar_restore_report *rep,
                   char *errmsg);
/* The moment as a name: 20261130T104213Z (UTC). */
void ar_restore_stamp(uint64_t at_ns, char *out, size_t cap);

#endif /* ARBOR_CLIENT_H */
