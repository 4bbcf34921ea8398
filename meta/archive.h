/* meta/archive.h - inside meta/: the point-in-time archive's object
 * formats and the server's archiver. The public side (rebuilding a shard
 * at a moment) is in meta.h.
 *
 * Objects, per shard, beside the blocks in the volume's store:
 *   pitr/s<shard>/log/<first>-<last>     committed entries first..last
 *   pitr/s<shard>/ckpt/<index>/p<part>   an exported checkpoint at index, in parts
 *   pitr/s<shard>/ckpt/<index>/manifest  written last: no manifest, not finished
 *   pitr/s<shard>/head                   every entry committed by as_of_ns is archived
 *   pitr/s<shard>/pin/<at>-<made>-<nonce>  a restore of moment at runs (made: its wall
 *                                        time, ns); empty
 * Numbers in keys are 16 lower-case hex digits (parts: 6 decimal), so a
 * listing comes in index order. Integers in objects are little-endian; the
 * store frames and checksums every object, these formats only check that
 * the bytes hold together. Committed entries are the same on every
 * replica, so two objects that cover the same index hold the same entries. */
#ifndef ARBOR_META_ARCHIVE_H
#define ARBOR_META_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"

#define ARCHIVE_HDR_BYTES  48u  /* magic, shard, count, first, last, first_hlc, last_hlc */
#define ARCHIVE_REC_BYTES  29u  /* index, term, hlc, type, size; then the data */
#define ARCHIVE_KEY_MAX    96u
#define ARCHIVE_MANIFEST_BYTES 48u
#define ARCHIVE_HEAD_BYTES 40u
#define ARCHIVE_PART_BYTES (4u << 20) /* a checkpoint part: the store's largest object */

struct archive_entry {
    uint64_t index;
    uint64_t term;
    uint64_t hlc_ns;
    uint8_t type;        /* enum raft_entry_type */
    uint32_t size;
    const uint8_t *data; /* borrowed */
};

struct archive_header {
    uint32_t shard;
    uint32_t count;
    uint64_t first, last;
    uint64_t first_hlc, last_hlc;
};

/* A batch object: the header, then count records with consecutive indexes
 * and times that never go down. */
void archive_header_put(uint8_t *p, const struct archive_header *h);
void archive_entry_put(uint8_t *p, const struct archive_entry *e);
/* Check and walk a batch of shard: each entry in order (borrowed from buf);
 * a non-zero return from each stops the walk and is returned. Bytes that do
 * not hold together are -AR_ECORRUPT with a reason. */
int archive_decode(const uint8_t *buf, size_t len, uint32_t shard, struct archive_header *h,
                   int (*each)(void *ctx, const struct archive_entry *e), void *ctx,
                   char *errmsg);

/* A finished checkpoint: the applied index it holds, the time of the entry
 * there, its bytes and their CRC32C. */
struct archive_manifest {
    uint32_t shard;
    uint32_t part_count;
    uint64_t index;
    uint64_t hlc_ns;
    uint64_t bytes;
    uint32_t crc;
};
void archive_manifest_put(uint8_t *p, const struct archive_manifest *m);
int archive_manifest_get(const uint8_t *p, size_t len, struct archive_manifest *m);

struct archive_head {
    uint32_t shard;
    uint64_t last;      /* the last entry archived */
    uint64_t last_hlc;
    uint64_t as_of_ns;  /* nothing after last was committed at this wall time */
};
void archive_head_put(uint8_t *p, const struct archive_head *h);
int archive_head_get(const uint8_t *p, size_t len, struct archive_head *h);

void archive_key_log(char *out, uint32_t shard, uint64_t first, uint64_t last);
void archive_key_part(char *out, uint32_t shard, uint64_t index, uint32_t part);
void archive_key_manifest(char *out, uint32_t shard, uint64_t index);
void archive_key_head(char *out, uint32_t shard);
void archive_prefix(char *out, uint32_t shard, const char *what); /* "log" or "ckpt" */
/* Parse a listed key of the log ("pitr/s1/log/a-b") or a manifest. */
bool archive_parse_log(const char *key, uint64_t *first, uint64_t *last);
bool archive_parse_manifest(const char *key, uint64_t *index);

/* Remove what no moment after cutoff_ns needs: checkpoints older than the
 * newest one at or before it, and batches wholly before that one. Nothing
 * goes while no checkpoint is that old. *removed: objects removed. */
struct obj_store;
/* The cutoff for a window of window_s seconds at now_ns: the window back,
 * and a margin more (a 64th of the window, at most 5 minutes) for clocks
 * apart: the leader's that expires, those that stamped the entries, the
 * operator's that names a moment. 0 (nothing expires) for a window
 * reaching back before the clock's epoch. */
uint64_t archive_expiry_cutoff_ns(uint64_t now_ns, uint32_t window_s);
int archive_expire(struct obj_store *st, uint32_t shard, uint64_t cutoff_ns, uint32_t *removed,
                   char *errmsg);
/* The oldest moment a fresh pin of shard holds at now_ns (UINT64_MAX:
 * none); pins past META_PIN_TTL_S (a restore that died) are removed. */
int archive_pins_oldest(struct obj_store *st, uint32_t shard, uint64_t now_ns, uint64_t *oldest,
                        char *errmsg);

/* ---- the archiver (archiver.c): a server's side, one per group -------------------
 * Every replica keeps the entries it applies in batches (the last minute,
 * at most ARCHIVER_TAIL_MAX bytes); the leader writes them to the store
 * every few seconds, archives from its Raft log on disk (work_dir/log)
 * what no tail holds, exports a checkpoint now and then, keeps the head
 * current and removes what the recovery window no longer needs. Store I/O
 * runs on the loop's thread pool, one job a group at a time. */
struct archiver;
struct obj_store;
struct uv_loop_s;
struct meta_checkpoint;

struct archiver_options {
    uint32_t shard;
    const char *work_dir;       /* where a checkpoint is exported before upload; its
                                 * log/ is the group's Raft log */
    uint32_t batch_ms;          /* a batch goes out at this age (2000) */
    uint32_t ckpt_s;            /* a checkpoint goes out this often (3600) */
    uint32_t gc_every_s;        /* a block gc pass this often (0: never; not for the map) */
};

int archiver_new(struct uv_loop_s *loop, const struct archiver_options *o, struct archiver **out);
void archiver_free(struct archiver *a);
/* The store to write to (borrowed; NULL: not yet known, nothing is written). */
void archiver_set_store(struct archiver *a, struct obj_store *store);
/* Every applied entry, in order; an index that does not follow the last
 * (a snapshot was installed) starts the tail over. -ENOMEM drops the tail. */
void archiver_applied(struct archiver *a, const struct archive_entry *e);
/* A loop turn, with the group's state now. */
struct raft_node;
struct archiver_view {
    bool is_leader;
    bool has_lease;             /* no other leader can commit now */
    uint64_t commit;            /* the leader's commit index */
    uint32_t window_s;
    struct meta_checkpoint *ckpt; /* exported for checkpoint objects */
    const struct raft_node *node; /* the times of entries */
};
void archiver_turn(struct archiver *a, const struct archiver_view *v);
bool archiver_is_busy(const struct archiver *a);
/* Status: the first index not yet in the store as the leader knows it (0:
 * unknown), and the bytes of the tail in memory. */
void archiver_progress(const struct archiver *a, uint64_t *archived_next, uint64_t *tail_bytes);
/* Why the last of the jobs that keep the archive current failed ("shard N:
 * archive log failed: ..."), or "" once one succeeded since (the hourly
 * expiry and gc passes only log theirs). Borrowed. */
const char *archiver_failure(const struct archiver *a);

#endif /* ARBOR_META_ARCHIVE_H */
