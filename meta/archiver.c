/* meta/archiver.c - a server's side of the point-in-time archive
 * (meta/archive.h): the tail of applied entries every replica keeps, and
 * the leader's jobs that put it in the store.
 *
 * The leader's jobs, one at a time on the loop's thread pool:
 *   probe   on becoming leader: where the archive ends (the first index
 *           not in it, from the listing), and the holes between its log
 *           objects;
 *   log     a closed batch of the tail, as one object;
 *   fill    entries the tail lost (its replica restarted, or it dropped
 *           them), read from the Raft log on disk, as log objects; and,
 *           when nothing else waits, a hole the probe found, where the
 *           Raft log still holds its entries (an archive written before
 *           a fix, or by a leader that had to bridge what this one has);
 *   export  the LMDB checkpoint, to a file (then its time is looked up in
 *           the Raft log on the loop) ...
 *   ckpt    ... and that file, in parts and a manifest last: every ckpt_s,
 *           and at once when neither the tail nor the Raft log reaches
 *           back to the archive's end (the checkpoint bridges the gap);
 *   head    all that was committed is archived, as of now (only while the
 *           leader holds its lease, so no other leader commits meanwhile);
 *   expire  what the recovery window no longer needs;
 *   gc      now and then, a block garbage collection pass (meta/gc.c).
 * Invariant: archived_next is the first index the store may lack; every
 * entry below it is in a log object, or at or below a finished checkpoint
 * where no log object can hold it (the leader's tail and Raft log had
 * both lost it).
 * Thread: the loop's, but for the job bodies, which touch only the job's
 * fields, closed batches (never changed) and the store. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "archive.h"
#include "meta.h"
#include "objstore.h"
#include "raft.h"

#define TAIL_MAX       (64u << 20) /* bytes of applied entries a replica keeps */
#define TAIL_KEEP_NS   (60ull * 1000000000ull) /* and how long it keeps archived ones */
#define BATCH_FIRST_CAP (64u << 10)
#define GAP_RETRY_MS   5000u       /* a checkpoint to bridge a gap, at most this often */
#define EXPIRE_EVERY_MS 60000u     /* or a quarter of the window, if shorter */
#define HEAD_EVERY_MS  10000u      /* an unchanged head is written again this often */
#define FAIL_PAUSE_MS  2000u       /* after a failed job */
#define FILL_JOB_BYTES (64u << 20) /* log objects a fill job writes, about */
#define HOLES_MAX      16u         /* holes a probe notes for refilling */

struct batch {
    struct batch *next;
    uint8_t *buf;                /* the header's room, then the records */
    size_t len;
    size_t cap;
    struct archive_header h;     /* count 0: empty */
    uint64_t opened_ms;
    bool is_closed;              /* no more records: a job may read it */
};

struct hole {
    uint64_t first, last;
};

enum job { JOB_NONE, JOB_PROBE, JOB_LOG, JOB_FILL, JOB_EXPORT, JOB_CKPT, JOB_HEAD, JOB_EXPIRE,
           JOB_GC };

struct archiver {
    uv_loop_t *loop;
    struct archiver_options o;
    char work_dir[600];
    struct obj_store *store;
    struct batch *first;         /* oldest */
    struct batch *last;
    uint64_t tail_bytes;
    uint64_t next;               /* the index applied next (0: any) */
    /* the leader's */
    uint64_t archived_next;      /* 0: unknown (probe) */
    uint64_t store_ckpt_last;    /* the newest checkpoint in the store (probe, then ours) */
    uint64_t fill_missed;        /* the Raft log on disk lacked this entry: no fill from here */
    struct hole holes[HOLES_MAX]; /* below archived_next, to refill from the Raft log */
    uint32_t hole_count;
    uint64_t last_ckpt_ms;
    uint64_t last_gap_ms;
    uint64_t last_expire_ms;
    uint64_t last_head_ms;
    uint64_t last_gc_ms;
    uint64_t head_last;          /* the last index a head was written for */
    uint64_t pause_until_ms;
    /* the job */
    uv_work_t work;
    enum job job;
    int rc;
    char err[AR_ERRMSG_MAX];
    char failure[META_ARCHIVE_ERROR_BYTES]; /* archiver_failure()'s */
    struct batch *job_batch;
    struct meta_checkpoint *job_ckpt;
    struct archive_manifest job_manifest;
    bool is_exported;            /* an export waits for its time to go out */
    struct archive_head job_head;
    uint64_t job_ckpt_last;      /* a probe's newest archived checkpoint (0: none) */
    struct hole job_holes[HOLES_MAX]; /* a probe's */
    uint32_t job_hole_count;
    bool is_job_hole;            /* the fill is of holes[0] */
    uint64_t job_fill_next;      /* a fill's first entry not yet in the store */
    uint64_t job_fill_to;        /* and its last */
    bool is_fill_log_bad;        /* the fill could not read the Raft log (not the store) */
    uint64_t job_cutoff_ns;
    uint32_t job_removed;
    struct meta_gc_report job_gc;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int archiver_new(uv_loop_t *loop, const struct archiver_options *o, struct archiver **out)
{
    struct archiver *a = ar_calloc(1, sizeof(*a));

    if (a == NULL)
        return -ENOMEM;
    a->loop = loop;
    a->o = *o;
    snprintf(a->work_dir, sizeof(a->work_dir), "%s", o->work_dir);
    a->o.work_dir = a->work_dir;
    if (a->o.batch_ms == 0)
        a->o.batch_ms = 2000;
    if (a->o.ckpt_s == 0)
        a->o.ckpt_s = 3600;
    a->last_ckpt_ms = mono_ms();
    a->last_expire_ms = mono_ms();
    a->last_gc_ms = mono_ms();
    *out = a;
    return 0;
}

static void batch_free(struct batch *b)
{
    if (b != NULL)
        ar_free(b->buf);
    ar_free(b);
}

static void drop_first(struct archiver *a)
{
    struct batch *b = a->first;

    a->first = b->next;
    if (a->first == NULL)
        a->last = NULL;
    a->tail_bytes -= b->cap;
    batch_free(b);
}

/* Drop the tail, but for a batch a job is reading (it goes after the job). */
static void drop_all(struct archiver *a)
{
    struct batch *keep = a->job == JOB_LOG ? a->job_batch : NULL;

    while (a->first != NULL) {
        if (a->first == keep) {
            a->first = keep->next;
            keep->next = NULL;
            continue;
        }
        drop_first(a);
    }
    a->first = keep;
    a->last = keep;
}

void archiver_free(struct archiver *a)
{
    if (a == NULL)
        return;
    AR_ASSERT(a->job == JOB_NONE);
    drop_all(a);
    ar_free(a);
}

void archiver_set_store(struct archiver *a, struct obj_store *store)
{
    a->store = store;
}

static void batch_close(struct batch *b)
{
    if (b != NULL && !b->is_closed) {
        b->is_closed = true;
        archive_header_put(b->buf, &b->h);
    }
}

/* A batch with room for need more bytes, opened if the newest is full or closed. */
static struct batch *batch_for(struct archiver *a, size_t need)
{
    struct batch *b = a->last;

    if (b != NULL && !b->is_closed && b->len + need > ARCHIVE_PART_BYTES)
        batch_close(b);
    if (b == NULL || b->is_closed) {
        b = ar_calloc(1, sizeof(*b));
        if (b == NULL)
            return NULL;
        b->cap = BATCH_FIRST_CAP;
        b->buf = ar_malloc(b->cap);
        if (b->buf == NULL) {
            ar_free(b);
            return NULL;
        }
        b->len = ARCHIVE_HDR_BYTES;
        b->h.shard = a->o.shard;
        b->opened_ms = mono_ms();
        if (a->last != NULL)
            a->last->next = b;
        else
            a->first = b;
        a->last = b;
        a->tail_bytes += b->cap;
    }
    if (b->len + need > b->cap) {
        size_t cap = b->cap;
        while (cap < b->len + need) {
            cap *= 2;
        }
        uint8_t *buf = ar_realloc(b->buf, cap);
        if (buf == NULL)
            return NULL;
        a->tail_bytes += cap - b->cap;
        b->buf = buf;
        b->cap = cap;
    }
    return b;
}

/* An entry put after the others of a batch: its header counts it. */
static void header_count(struct archive_header *h, uint64_t index, uint64_t hlc_ns)
{
    if (h->count == 0) {
        h->first = index;
        h->first_hlc = hlc_ns;
    }
    h->count++;
    h->last = index;
    h->last_hlc = hlc_ns;
}

void archiver_applied(struct archiver *a, const struct archive_entry *e)
{
    if (a->next != 0 && e->index != a->next) {
        /* a snapshot replaced the state: what came before is not ours to give */
        drop_all(a);
    }
    a->next = e->index + 1;
    size_t need = ARCHIVE_REC_BYTES + e->size;
    struct batch *b = batch_for(a, need);
    if (b == NULL) {
        ar_log(AR_LOG_WARN, "shard %u: out of memory for the archive tail; it starts over",
               a->o.shard);
        drop_all(a);
        return;
    }
    archive_entry_put(b->buf + b->len, e);
    b->len += need;
    header_count(&b->h, e->index, e->hlc_ns);
}

bool archiver_is_busy(const struct archiver *a)
{
    return a->job != JOB_NONE;
}

void archiver_progress(const struct archiver *a, uint64_t *archived_next, uint64_t *tail_bytes)
{
    *archived_next = a->archived_next;
    *tail_bytes = a->tail_bytes;
}

const char *archiver_failure(const struct archiver *a)
{
    return a->failure;
}

/* ---- jobs (thread pool) ---------------------------------------------------------------- */

static int probe(struct archiver *a)
{
    struct obj_list_page page = {.entry_cap = OBJ_LIST_PAGE_MAX};
    char prefix[ARCHIVE_KEY_MAX];
    char start[OBJ_KEY_BYTES_MAX + 1] = "";
    uint64_t next = 1;
    uint64_t ckpt_last = 0;
    bool is_first = true;
    int rc = 0;

    a->job_hole_count = 0;
    page.entries = ar_calloc(OBJ_LIST_PAGE_MAX, sizeof(*page.entries));
    if (page.entries == NULL)
        return -ENOMEM;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        archive_prefix(prefix, a->o.shard, pass == 0 ? "log" : "ckpt");
        start[0] = '\0';
        do {
            rc = obj_list(a->store, prefix, start, &page, a->err);
            for (unsigned i = 0; rc == 0 && i < page.entry_count; i++) {
                uint64_t first;
                uint64_t last;
                if (!archive_parse_log(page.entries[i].key, &first, &last)) {
                    /* not a log object */
                } else if (is_first) {
                    /* what came before it expired, or never was */
                    next = last + 1;
                    is_first = false;
                } else {
                    /* listed in order of first index */
                    if (first > next && a->job_hole_count < HOLES_MAX)
                        a->job_holes[a->job_hole_count++] = (struct hole){next, first - 1};
                    if (last + 1 > next)
                        next = last + 1;
                }
                if (archive_parse_manifest(page.entries[i].key, &last) && last > ckpt_last)
                    ckpt_last = last;
            }
            snprintf(start, sizeof(start), "%s", page.last_key);
        } while (rc == 0 && page.is_truncated);
    }
    ar_free(page.entries);
    if (rc == 0) {
        a->job_head.last = next;
        a->job_ckpt_last = ckpt_last;
    }
    return rc;
}

static int put_log(struct archiver *a)
{
    char key[ARCHIVE_KEY_MAX];
    const struct batch *b = a->job_batch;

    archive_key_log(key, a->o.shard, b->h.first, b->h.last);
    return obj_put(a->store, key, b->buf, b->len, a->err);
}

/* A fill's log object being built from entries of the Raft log. */
struct fill {
    struct archiver *a;
    uint8_t *buf;
    size_t len;
    size_t cap;
    struct archive_header h;
    uint64_t put_bytes;
    int put_rc;
};

static int fill_put(struct fill *f)
{
    struct archiver *a = f->a;
    char key[ARCHIVE_KEY_MAX];

    if (f->h.count == 0)
        return 0;
    archive_header_put(f->buf, &f->h);
    archive_key_log(key, a->o.shard, f->h.first, f->h.last);
    int rc = obj_put(a->store, key, f->buf, f->len, a->err);
    if (rc == 0) {
        a->job_fill_next = f->h.last + 1;
        f->put_bytes += f->len;
    }
    f->put_rc = rc;
    f->len = ARCHIVE_HDR_BYTES;
    f->h.count = 0;
    return rc;
}

/* An entry of the Raft log into the object; 1 when the job has written enough. */
static int fill_entry(void *ctx, const struct raft_entry *e)
{
    struct fill *f = ctx;
    size_t need = ARCHIVE_REC_BYTES + e->size;

    if (f->h.count > 0 && f->len + need > ARCHIVE_PART_BYTES) {
        int rc = fill_put(f);
        if (rc != 0 || f->put_bytes >= FILL_JOB_BYTES)
            return rc != 0 ? rc : 1;
    }
    if (f->len + need > f->cap) {
        uint8_t *buf = ar_realloc(f->buf, f->len + need);
        if (buf == NULL)
            return f->put_rc = -ENOMEM;
        f->buf = buf;
        f->cap = f->len + need;
    }
    archive_entry_put(f->buf + f->len, &(struct archive_entry){.index = e->index, .term = e->term,
                                                               .hlc_ns = e->hlc_ns,
                                                               .type = e->type, .size = e->size,
                                                               .data = e->data});
    f->len += need;
    header_count(&f->h, e->index, e->hlc_ns);
    return 0;
}

/* Entries job_fill_next..job_fill_to from the replica's Raft log to the
 * store, as far as the log holds them; job_fill_next moves past each
 * object put. */
static int fill(struct archiver *a)
{
    char dir[700];
    struct fill f = {.a = a, .len = ARCHIVE_HDR_BYTES, .cap = ARCHIVE_PART_BYTES,
                     .h.shard = a->o.shard};

    f.buf = ar_malloc(f.cap);
    if (f.buf == NULL)
        return -ENOMEM;
    snprintf(dir, sizeof(dir), "%s/log", a->work_dir);
    int rc = raft_seglog_read(dir, a->job_fill_next, a->job_fill_to, fill_entry, &f, a->err);
    /* a log that cannot be read there is given up on; memory is not the log's */
    a->is_fill_log_bad = rc < 0 && rc != -ENOMEM && f.put_rc == 0;
    if (rc >= 0)
        rc = fill_put(&f);
    ar_free(f.buf);
    return rc;
}

static void out_dir(const struct archiver *a, char *out, size_t cap)
{
    snprintf(out, cap, "%s/pitr-out", a->work_dir);
}

static int export_ckpt(struct archiver *a)
{
    char dir[700];
    char path[760];
    struct meta_checkpoint *ck = NULL;

    out_dir(a, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", dir);
    unlink(path);
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(a->err, sizeof(a->err), "%s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = meta_checkpoint_export(a->job_ckpt, fd, a->err);
    close(fd);
    if (rc == 0)
        rc = meta_checkpoint_open(dir, &ck, a->err);
    if (rc == 0)
        a->job_manifest.index = meta_checkpoint_applied_index(ck);
    meta_checkpoint_close(ck);
    return rc;
}

static int put_ckpt(struct archiver *a)
{
    char path[760];
    char key[ARCHIVE_KEY_MAX];
    struct archive_manifest *m = &a->job_manifest;
    struct stat st;

    out_dir(a, path, sizeof(path));
    strncat(path, "/data.mdb", sizeof(path) - strlen(path) - 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
        snprintf(a->err, sizeof(a->err), "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -EIO;
    }
    uint8_t *buf = ar_malloc(ARCHIVE_PART_BYTES);
    int rc = buf != NULL ? 0 : -ENOMEM;
    m->shard = a->o.shard;
    m->bytes = (uint64_t)st.st_size;
    m->part_count = (uint32_t)((m->bytes + ARCHIVE_PART_BYTES - 1) / ARCHIVE_PART_BYTES);
    m->crc = 0;
    for (uint32_t part = 0; rc == 0 && part < m->part_count; part++) {
        ssize_t got = pread(fd, buf, ARCHIVE_PART_BYTES, (off_t)part * ARCHIVE_PART_BYTES);
        size_t want = part + 1 < m->part_count ? ARCHIVE_PART_BYTES
                                               : (size_t)(m->bytes - (uint64_t)part *
                                                                         ARCHIVE_PART_BYTES);
        if (got != (ssize_t)want) {
            snprintf(a->err, sizeof(a->err), "%s: short read", path);
            rc = -EIO;
            break;
        }
        m->crc = obj_crc32c(m->crc, buf, want);
        archive_key_part(key, a->o.shard, m->index, part);
        rc = obj_put(a->store, key, buf, want, a->err);
    }
    close(fd);
    if (rc == 0) {
        uint8_t mb[ARCHIVE_MANIFEST_BYTES];
        archive_manifest_put(mb, m);
        archive_key_manifest(key, a->o.shard, m->index);
        rc = obj_put(a->store, key, mb, sizeof(mb), a->err);
    }
    ar_free(buf);
    return rc;
}

static int put_head(struct archiver *a)
{
    char key[ARCHIVE_KEY_MAX];
    uint8_t buf[ARCHIVE_HEAD_BYTES];

    archive_head_put(buf, &a->job_head);
    archive_key_head(key, a->o.shard);
    return obj_put(a->store, key, buf, sizeof(buf), a->err);
}

static int gc(struct archiver *a)
{
    char dir[700];

    snprintf(dir, sizeof(dir), "%s/gc-scratch", a->work_dir);
    mkdir(dir, 0700);
    struct meta_gc_options o = {.shard = a->o.shard, .now_ns = wall_ns(), .scratch_dir = dir};
    int rc = meta_gc_run(a->store, &o, &a->job_gc, a->err);
    rmdir(dir);
    return rc;
}

static void job_work(uv_work_t *w)
{
    struct archiver *a = w->data;

    a->err[0] = '\0';
    switch (a->job) {
    case JOB_PROBE: a->rc = probe(a); break;
    case JOB_LOG: a->rc = put_log(a); break;
    case JOB_FILL: a->rc = fill(a); break;
    case JOB_EXPORT: a->rc = export_ckpt(a); break;
    case JOB_CKPT: a->rc = put_ckpt(a); break;
    case JOB_HEAD: a->rc = put_head(a); break;
    case JOB_EXPIRE:
        a->rc = archive_expire(a->store, a->o.shard, a->job_cutoff_ns, &a->job_removed, a->err);
        break;
    case JOB_GC: a->rc = gc(a); break;
    case JOB_NONE: AR_UNREACHABLE();
    }
}

/* The oldest batch holding entries from archived_next on (NULL: none). */
static struct batch *first_unarchived(const struct archiver *a)
{
    struct batch *b = a->first;

    while (b != NULL && b->h.last < a->archived_next) {
        b = b->next;
    }
    return b;
}

/* The first index from archived_next on that the tail still holds: past
 * archived_next when the tail lost entries the store lacks (a gap). */
static uint64_t tail_first(const struct archiver *a)
{
    const struct batch *b = first_unarchived(a);

    return b != NULL ? b->h.first : a->next;
}

/* An archived checkpoint at index stands for the entries up to it, but
 * only where the tail lost them: the entries the tail holds still go out
 * as log objects, else no moment between them could be restored (a
 * checkpoint gives one state, at its index, not those before it). */
static void checkpoint_covers(struct archiver *a, uint64_t index)
{
    uint64_t end = index + 1;
    uint64_t first = tail_first(a);

    if (first < end)
        end = first;
    if (end > a->archived_next)
        a->archived_next = end;
}

/* What a fill put counts, even if it failed after. */
static void fill_done(struct archiver *a, bool is_ok)
{
    if (a->archived_next == 0)
        return; /* leadership lost meanwhile (holes gone too): the next one probes again */
    uint64_t from = a->is_job_hole ? a->holes[0].first : a->archived_next;
    bool is_progress = a->job_fill_next > from;

    if (is_progress)
        ar_log(AR_LOG_INFO, "shard %u: archived entries %" PRIu64 "..%" PRIu64 " from the Raft "
               "log%s", a->o.shard, from, a->job_fill_next - 1,
               a->is_job_hole ? ", in a hole of the archive" : "");
    if (a->is_job_hole) {
        if (is_progress && is_ok && a->job_fill_next <= a->holes[0].last) {
            a->holes[0].first = a->job_fill_next; /* the job wrote its share: more next time */
        } else {
            /* filled, or the log lacks the rest: one try a leadership */
            a->hole_count--;
            memmove(a->holes, a->holes + 1, a->hole_count * sizeof(*a->holes));
        }
    } else if (is_progress) {
        a->archived_next = a->job_fill_next;
    } else if (is_ok || a->is_fill_log_bad) {
        /* the log lacks the entry, or cannot be read there: not worth a retry */
        a->fill_missed = a->archived_next;
    }
}

/* A probe found where the archive ends, its last checkpoint and holes. */
static void probe_done(struct archiver *a)
{
    a->archived_next = a->job_head.last;
    a->store_ckpt_last = a->job_ckpt_last;
    memcpy(a->holes, a->job_holes, a->job_hole_count * sizeof(*a->holes));
    a->hole_count = a->job_hole_count;
    ar_log(AR_LOG_INFO, "shard %u: the archive ends before entry %" PRIu64, a->o.shard,
           a->archived_next);
    if (a->hole_count > 0)
        ar_log(AR_LOG_INFO, "shard %u: the archive's log has %s%u holes, the first "
               "%" PRIu64 "..%" PRIu64 ": filled from the Raft log where it holds them",
               a->o.shard, a->hole_count == HOLES_MAX ? "at least " : "", a->hole_count,
               a->holes[0].first, a->holes[0].last);
}

static void job_after(uv_work_t *w, int status)
{
    static const char *const names[] = {"", "probe", "log", "fill", "export", "checkpoint",
                                        "head", "expire", "gc"};
    struct archiver *a = w->data;
    enum job job = a->job;

    a->job = JOB_NONE;
    if (job == JOB_FILL)
        fill_done(a, status == 0 && a->rc == 0);
    if (status != 0 || a->rc != 0) {
        char failure[META_ARCHIVE_ERROR_BYTES];
        snprintf(failure, sizeof(failure), "shard %u: archive %s failed: %s", a->o.shard,
                 names[job],
                 a->err[0] != '\0' ? a->err : ar_strerror(a->rc != 0 ? a->rc : status));
        ar_log(AR_LOG_WARN, "%s", failure);
        /* what keeps the archive current, retried until it succeeds; not
         * the hourly removal of expired objects or blocks */
        if (job != JOB_EXPIRE && job != JOB_GC)
            memcpy(a->failure, failure, sizeof(failure));
        a->pause_until_ms = mono_ms() + FAIL_PAUSE_MS;
        return;
    }
    if (job != JOB_EXPIRE && job != JOB_GC)
        a->failure[0] = '\0';
    switch (job) {
    case JOB_PROBE: probe_done(a); break;
    case JOB_LOG:
        if (a->job_batch->h.last + 1 > a->archived_next)
            a->archived_next = a->job_batch->h.last + 1;
        a->job_batch = NULL;
        break;
    case JOB_FILL: break;
    case JOB_EXPORT:
        /* its time comes from the Raft log, on the next turn */
        a->is_exported = true;
        a->last_ckpt_ms = mono_ms();
        break;
    case JOB_CKPT:
        if (a->job_manifest.index > a->store_ckpt_last)
            a->store_ckpt_last = a->job_manifest.index;
        /* it stands for entries the tail lost only once the Raft log was
         * found to lack them (gap_turn fills from it first): a checkpoint
         * is one state, not the moments before it */
        if (a->fill_missed == a->archived_next)
            checkpoint_covers(a, a->job_manifest.index);
        ar_log(AR_LOG_INFO, "shard %u: archived a checkpoint at %" PRIu64 " (%" PRIu64 " bytes)",
               a->o.shard, a->job_manifest.index, a->job_manifest.bytes);
        break;
    case JOB_HEAD:
        a->head_last = a->job_head.last;
        break;
    case JOB_EXPIRE:
        if (a->job_removed > 0)
            ar_log(AR_LOG_INFO, "shard %u: removed %u archive objects past the recovery window",
                   a->o.shard, a->job_removed);
        break;
    case JOB_GC:
        ar_log(AR_LOG_INFO, "shard %u: gc: %" PRIu64 " blocks, %" PRIu64 " slices named in the "
               "window; deleted %" PRIu64 " blocks (%" PRIu64 " bytes)", a->o.shard,
               a->job_gc.blocks, a->job_gc.named, a->job_gc.deleted_blocks,
               a->job_gc.deleted_bytes);
        break;
    case JOB_NONE: AR_UNREACHABLE();
    }
}

static void job_start(struct archiver *a, enum job job)
{
    a->job = job;
    a->work.data = a;
    uv_queue_work(a->loop, &a->work, job_work, job_after);
}

/* ---- the turn (loop thread) -------------------------------------------------------------- */

/* Drop what no job needs: archived batches past their minute (a follower's
 * all batches past it, as it cannot know what was archived), and the oldest
 * of all past TAIL_MAX. */
static void trim(struct archiver *a, bool is_leader)
{
    uint64_t old = wall_ns() - TAIL_KEEP_NS;

    while (a->first != NULL && a->first != a->job_batch && a->first->is_closed) {
        const struct batch *b = a->first;
        bool is_archived = !is_leader || (a->archived_next != 0 && b->h.last < a->archived_next);
        if (a->tail_bytes > TAIL_MAX) {
            if (!is_archived)
                ar_log(AR_LOG_WARN, "shard %u: the archive tail is full; entries %" PRIu64
                       "..%" PRIu64 " leave it, to be archived from the Raft log", a->o.shard,
                       b->h.first, b->h.last);
        } else if (!is_archived || b->h.last_hlc > old) {
            break;
        }
        drop_first(a);
    }
}

/* The entries from archived_next on must be in the tail, else they come
 * from the Raft log on disk, else a checkpoint has to cover them. True
 * while they are not all in the tail (a job started, or a wait). */
static bool gap_turn(struct archiver *a, const struct archiver_view *v, uint64_t now)
{
    uint64_t first = tail_first(a);
    bool is_gap = first > a->archived_next && a->next > a->archived_next;

    if (is_gap && a->fill_missed == a->archived_next) {
        uint64_t gap_first = a->archived_next;
        checkpoint_covers(a, a->store_ckpt_last);
        if (a->archived_next > gap_first)
            ar_log(AR_LOG_WARN, "shard %u: entries %" PRIu64 "..%" PRIu64 " are in neither the "
                   "tail nor the Raft log: the archived checkpoint at %" PRIu64 " stands for "
                   "them", a->o.shard, gap_first, a->archived_next - 1, a->store_ckpt_last);
        first = tail_first(a);
        is_gap = first > a->archived_next && a->next > a->archived_next;
    }
    if (!is_gap)
        return false;
    if (a->fill_missed != a->archived_next) {
        a->job_fill_next = a->archived_next;
        a->job_fill_to = first - 1;
        a->is_job_hole = false;
        job_start(a, JOB_FILL);
    } else if (now - a->last_gap_ms >= GAP_RETRY_MS) {
        ar_log(AR_LOG_WARN, "shard %u: entries %" PRIu64 "..%" PRIu64 " are in neither the "
               "tail nor the Raft log: a checkpoint bridges them", a->o.shard,
               a->archived_next, first - 1);
        a->last_gap_ms = now;
        a->job_ckpt = v->ckpt;
        job_start(a, JOB_EXPORT);
    }
    return true;
}

/* The jobs the clock calls for: a checkpoint, expiry, gc, a head. */
static void timed_turn(struct archiver *a, const struct archiver_view *v, uint64_t now)
{
    if (now - a->last_ckpt_ms >= (uint64_t)a->o.ckpt_s * 1000u) {
        a->job_ckpt = v->ckpt;
        job_start(a, JOB_EXPORT);
        return;
    }
    uint64_t expire_ms = (uint64_t)v->window_s * 250u; /* a quarter of the window ... */
    if (expire_ms > EXPIRE_EVERY_MS)
        expire_ms = EXPIRE_EVERY_MS;                     /* ... at most a minute */
    if (now - a->last_expire_ms >= expire_ms && v->window_s > 0) {
        a->last_expire_ms = now;
        a->job_cutoff_ns = archive_expiry_cutoff_ns(wall_ns(), v->window_s);
        job_start(a, JOB_EXPIRE);
        return;
    }
    if (a->o.gc_every_s > 0 && a->o.shard != META_MAP_SHARD &&
        now - a->last_gc_ms >= (uint64_t)a->o.gc_every_s * 1000u) {
        a->last_gc_ms = now;
        job_start(a, JOB_GC);
        return;
    }
    uint64_t last = a->archived_next - 1;
    if (v->has_lease && v->commit == last && a->next == last + 1 &&
        (last != a->head_last || now - a->last_head_ms >= HEAD_EVERY_MS)) {
        uint64_t hlc = 0;
        raft_entry_time(v->node, last, &hlc);
        a->job_head = (struct archive_head){.shard = a->o.shard, .last = last, .last_hlc = hlc,
                                            .as_of_ns = wall_ns()};
        a->last_head_ms = now;
        job_start(a, JOB_HEAD);
    }
}

void archiver_turn(struct archiver *a, const struct archiver_view *v)
{
    uint64_t now = mono_ms();

    if (a->last != NULL && !a->last->is_closed && a->last->h.count > 0 &&
        now - a->last->opened_ms >= a->o.batch_ms)
        batch_close(a->last);
    trim(a, v->is_leader);
    if (!v->is_leader) {
        a->archived_next = 0; /* a later leadership probes again */
        a->fill_missed = 0;
        a->hole_count = 0;
        a->is_exported = false;
        return;
    }
    if (a->store == NULL || a->job != JOB_NONE || now < a->pause_until_ms)
        return;
    if (a->archived_next == 0) {
        job_start(a, JOB_PROBE);
        return;
    }
    if (a->is_exported) {
        a->is_exported = false;
        if (a->job_manifest.index > 0 &&
            raft_entry_time(v->node, a->job_manifest.index, &a->job_manifest.hlc_ns)) {
            job_start(a, JOB_CKPT);
            return;
        }
    }
    if (gap_turn(a, v, now))
        return;
    struct batch *b = first_unarchived(a);
    if (b != NULL && b->is_closed) {
        a->job_batch = b;
        job_start(a, JOB_LOG);
    } else if (a->hole_count > 0) {
        a->job_fill_next = a->holes[0].first;
        a->job_fill_to = a->holes[0].last;
        a->is_job_hole = true;
        job_start(a, JOB_FILL);
    } else {
        timed_turn(a, v, now);
    }
}
