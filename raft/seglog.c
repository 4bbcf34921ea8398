/* raft/seglog.c - a node's durable log: entries and hard state in append-only
 * segment files, with a CRC on every record and one fdatasync for all that a
 * loop turn appended (group commit).
 *
 * Files in the log's directory:
 *   snapshot                      where the log starts: the snapshot's index,
 *                                 term, time and members (replaced atomically)
 *   vote                          the term and vote (replaced atomically when
 *                                 they change): the log's own hard state
 *                                 records can go with a truncation, and a
 *                                 vote, once synced, must never be forgotten
 *   <first>.open                  the segment being appended to
 *   <first>-<last>-<hlc>.seg      sealed segments: their index range and the
 *                                 time of their last entry, so retention needs
 *                                 no reading (numbers are 20 decimal digits)
 *
 * A record, little-endian, padded with zeros to a multiple of 8 bytes:
 *   u32 payload bytes | u32 CRC32C of (the length, then every byte from the
 *   type to the end of the payload) | u8 type | 3 zero bytes | payload
 *   type 1 segment header: "ARBRSEG1", u64 first index
 *   type 2 entry: u64 index, u64 term, u64 hlc_ns, u8 type, 3 zero, u32 size, data
 *   type 3 hard state: u64 term, u64 vote, u64 commit
 *   type 4 sync mark: u64 the segment's first index, u64 bytes synced
 * Every segment opens with its header and the hard state at that moment, so
 * deleting old segments never loses the newest hard state. Each sync that
 * covered new bytes is followed by a mark saying how far it reached.
 *
 * Recovery reads the segments from the one holding the snapshot's next
 * index. A record that does not check in the open segment ends it (a torn
 * write) unless a mark after it says a sync covered it: a power cut may
 * keep a later page of an unsynced write and not an earlier one, but
 * never loses a synced page. Then the tail is cut. Anywhere else, and
 * under a mark, it is -RAFT_ECORRUPT, naming the file and offset: synced
 * damage is never skipped. Sealed segments past the snapshot are kept for
 * the retention window (point-in-time restore), then deleted oldest first.
 *
 * Invariants: segments hold consecutive indexes; the open segment is the
 * newest; a failed write or sync is sticky (style §3).
 * Thread: one at a time per log. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

#define SEG_MAGIC        "ARBRSEG1"
#define SNAP_MAGIC       "ARBRSNP1"
#define VOTE_MAGIC       "ARBRVOT1"
#define REC_HEADER_BYTES 12u
#define REC_ENTRY_FIXED  32u
#define PREFILL_BYTES    (1u << 20) /* zeros written ahead of the open segment's records */
enum { REC_SEGMENT = 1, REC_ENTRY = 2, REC_HARD_STATE = 3, REC_SYNC_MARK = 4 };
#define REC_SYNC_MARK_LEN 16u

struct segment {
    raft_index first;
    raft_index last;      /* first - 1 while empty */
    uint64_t last_hlc_ns;
    bool is_open;
};

struct raft_seglog {
    char dir[RAFT_PATH_MAX];
    int dir_fd;
    struct raft_seglog_options opt;
    struct segment *segs;     /* oldest first; the last one is open */
    uint32_t seg_count;
    uint32_t seg_cap;
    int fd;                   /* the open segment */
    uint64_t size;            /* its bytes */
    uint64_t zeroed_to;       /* the file holds zeros from size up to here (prefill) */
    uint64_t marked_to;       /* the open segment's bytes up to here are under a sync mark
                               * (or the mark itself): a sync past it writes a new one */
    uint64_t *offsets;        /* offsets[i]: record of entry first + i in it */
    uint32_t offset_cap;
    struct raft_hard_state hs;
    raft_term vote_term;      /* what the vote file holds */
    raft_id vote_id;
    bool is_vote_dirty;       /* hs's term or vote differ from it: write at sync */
    raft_index snap_index;
    raft_term snap_term;
    uint64_t snap_hlc_ns;
    struct raft_config snap_config;
    bool is_snap_reset;       /* the snapshot replaced the log: older segments are void */
    bool is_dir_dirty;        /* a name changed: fsync the directory at sync */
    bool is_failed;
    uint8_t *buf;             /* records waiting for write() */
    uint64_t buf_used;
    uint64_t buf_cap;
    struct raft_entry *boot_entries; /* what open() recovered, owned */
    uint32_t boot_count;
    uint32_t boot_cap;
};

static int fail(char *errmsg, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *errmsg, int rc, const char *fmt, ...)
{
    if (errmsg != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, RAFT_ERRMSG_MAX, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- CRC32C ----------------------------------------------------------------------------
 * Castagnoli, reflected 0x82F63B78: the crc32 instruction where the CPU has
 * it, a byte table elsewhere. One lane is enough at log record sizes. */

static uint32_t crc_table[256];

__attribute__((constructor)) static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        }
        crc_table[i] = c;
    }
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;

    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = __builtin_ia32_crc32di(c64, w);
    }
    c = (uint32_t)c64;
    for (; n > 0; n--, p++) {
        c = __builtin_ia32_crc32qi(c, *p);
    }
    return c;
}

static uint32_t crc32c(uint32_t crc, const void *data, size_t n)
{
    static int has_hw = -1;
    const uint8_t *p = data;
    uint32_t c = ~crc;

    if (has_hw < 0)
        has_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    if (has_hw)
        return ~crc_hw(c, p, n);
    for (; n > 0; n--, p++) {
        c = crc_table[(c ^ *p) & 0xffu] ^ (c >> 8);
    }
    return ~c;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* x86-64 and arm64 hosts: little-endian, as the format says */
}

static void put_u64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint64_t padded(uint64_t n)
{
    return (n + 7u) & ~(uint64_t)7u;
}

static uint32_t record_crc(const uint8_t *rec, uint32_t len)
{
    return crc32c(crc32c(0, rec, 4), rec + 8, 4 + (size_t)len);
}

/* ---- names ---------------------------------------------------------------------------- */

static void seg_name(const struct segment *s, char *out, size_t cap)
{
    if (s->is_open)
        snprintf(out, cap, "%020" PRIu64 ".open", s->first);
    else
        snprintf(out, cap, "%020" PRIu64 "-%020" PRIu64 "-%020" PRIu64 ".seg", s->first, s->last,
                 s->last_hlc_ns);
}

/* Parse a segment file name; false for anything else. */
static bool seg_parse_name(const char *name, struct segment *out)
{
    char tail[8];
    uint64_t a, b, c;

    if (strlen(name) == 25 && sscanf(name, "%20" SCNu64 "%5s", &a, tail) == 2 &&
        strcmp(tail, ".open") == 0) {
        *out = (struct segment){.first = a, .last = a - 1, .is_open = true};
        return a > 0;
    }
    if (strlen(name) == 66 && sscanf(name, "%20" SCNu64 "-%20" SCNu64 "-%20" SCNu64 "%4s", &a, &b,
                                     &c, tail) == 4 &&
        strcmp(tail, ".seg") == 0) {
        *out = (struct segment){.first = a, .last = b, .last_hlc_ns = c};
        return a > 0 && b + 1 >= a;
    }
    return false;
}

/* ---- writing records ----------------------------------------------------------------------- */

static int buf_reserve(struct raft_seglog *l, uint64_t more)
{
    if (l->buf_used + more <= l->buf_cap)
        return 0;
    uint64_t cap = l->buf_cap < 65536 ? 65536 : l->buf_cap;
    while (cap < l->buf_used + more) {
        cap *= 2;
    }
    uint8_t *p = raft__realloc(l->buf, cap);
    if (p == NULL)
        return -ENOMEM;
    l->buf = p;
    l->buf_cap = cap;
    return 0;
}

/* A record of type with payload parts a (and b) into the buffer. */
static int buf_record(struct raft_seglog *l, uint8_t type, const void *a, uint32_t a_len,
                      const void *b, uint32_t b_len)
{
    uint32_t len = a_len + b_len;
    uint64_t total = padded(REC_HEADER_BYTES + (uint64_t)len);
    int rc = buf_reserve(l, total);

    if (rc != 0)
        return rc;
    uint8_t *r = l->buf + l->buf_used;
    memset(r, 0, total);
    put_u32(r, len);
    r[8] = type;
    memcpy(r + REC_HEADER_BYTES, a, a_len);
    if (b_len > 0)
        memcpy(r + REC_HEADER_BYTES + a_len, b, b_len);
    put_u32(r + 4, record_crc(r, len));
    l->buf_used += total;
    return 0;
}

static int buf_hard_state(struct raft_seglog *l)
{
    uint8_t p[24];

    put_u64(p, l->hs.term);
    put_u64(p + 8, l->hs.vote);
    put_u64(p + 16, l->hs.commit);
    return buf_record(l, REC_HARD_STATE, p, sizeof(p), NULL, 0);
}

/* Write the buffer at the end of the open segment. */
/* Write zeros ahead of the records: an fdatasync that only overwrites
 * blocks the file already has commits no metadata, and takes about half
 * the time of one that grows the file. Recovery reads zeros as "nothing
 * written here"; sealing cuts them off. */
static int prefill(struct raft_seglog *l, uint64_t need, char *errmsg)
{
    static const uint8_t zeros[64u << 10];
    uint64_t to = need + PREFILL_BYTES;

    /* bounded: each turn writes up to 64 KiB */
    while (l->zeroed_to < to) {
        size_t n = to - l->zeroed_to < sizeof(zeros) ? (size_t)(to - l->zeroed_to) : sizeof(zeros);
        ssize_t w = pwrite(l->fd, zeros, n, (off_t)l->zeroed_to);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            l->is_failed = true;
            return fail(errmsg, w < 0 ? -errno : -EIO, "log %s: write failed: %s", l->dir,
                        w < 0 ? strerror(errno) : "no progress");
        }
        l->zeroed_to += (uint64_t)w;
    }
    return 0;
}

static int buf_flush(struct raft_seglog *l, char *errmsg)
{
    uint64_t done = 0;

    if (l->size + l->buf_used > l->zeroed_to) {
        int rc = prefill(l, l->size + l->buf_used, errmsg);
        if (rc != 0)
            return rc;
    }
    while (done < l->buf_used) {
        ssize_t n = pwrite(l->fd, l->buf + done, l->buf_used - done, (off_t)(l->size + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            l->is_failed = true;
            return fail(errmsg, n < 0 ? -errno : -EIO, "log %s: write failed: %s", l->dir,
                        n < 0 ? strerror(errno) : "no progress");
        }
        done += (uint64_t)n;
    }
    l->size += l->buf_used;
    l->buf_used = 0;
    return 0;
}

static struct segment *open_seg(struct raft_seglog *l)
{
    RAFT_ASSERT(l->seg_count > 0 && l->segs[l->seg_count - 1].is_open);
    return &l->segs[l->seg_count - 1];
}

/* Start a new open segment whose first entry will be first. */
static int seg_create(struct raft_seglog *l, raft_index first, char *errmsg)
{
    char name[96];
    uint8_t head[16];
    int rc = raft__grow((void **)&l->segs, &l->seg_cap, l->seg_count + 1, sizeof(*l->segs));

    if (rc != 0)
        return fail(errmsg, rc, "out of memory");
    struct segment s = {.first = first, .last = first - 1, .is_open = true};
    seg_name(&s, name, sizeof(name));
    int fd = openat(l->dir_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(errmsg, -errno, "log %s: cannot create %s: %s", l->dir, name, strerror(errno));
    l->segs[l->seg_count++] = s;
    l->fd = fd;
    l->size = 0;
    l->zeroed_to = 0;
    l->marked_to = 0;
    l->is_dir_dirty = true;
    memcpy(head, SEG_MAGIC, 8);
    put_u64(head + 8, first);
    rc = buf_record(l, REC_SEGMENT, head, sizeof(head), NULL, 0);
    if (rc == 0)
        rc = buf_hard_state(l);
    return rc == 0 ? 0 : fail(errmsg, rc, "out of memory");
}

/* Seal the open segment: sync it, give it its final name. */
static int seg_seal(struct raft_seglog *l, char *errmsg)
{
    struct segment *s = open_seg(l);
    char from[96];
    char to[96];
    int rc = buf_flush(l, errmsg);

    if (rc != 0)
        return rc;
    /* a sealed segment ends with its last record: the prefill goes */
    if (ftruncate(l->fd, (off_t)l->size) != 0 || fdatasync(l->fd) != 0) {
        l->is_failed = true;
        return fail(errmsg, -EIO, "log %s: cannot seal: %s", l->dir, strerror(errno));
    }
    seg_name(s, from, sizeof(from));
    s->is_open = false;
    seg_name(s, to, sizeof(to));
    if (renameat(l->dir_fd, from, l->dir_fd, to) != 0) {
        l->is_failed = true;
        return fail(errmsg, -errno, "log %s: cannot rename %s: %s", l->dir, from, strerror(errno));
    }
    close(l->fd);
    l->fd = -1;
    l->is_dir_dirty = true;
    return 0;
}

/* ---- reading a segment ---------------------------------------------------------------------- */

struct seg_read {
    uint8_t *data;
    uint64_t size;
    uint64_t end;     /* bytes of valid records */
    bool is_torn;     /* a bad record after which nothing checks */
    bool is_bad;      /* a bad record with valid ones after it */
    uint64_t bad_at;
};

static int read_file(int dir_fd, const char *name, uint8_t **out, uint64_t *size)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    uint8_t *p = raft_malloc((size_t)st.st_size);
    uint64_t done = 0;
    while (p != NULL && done < (uint64_t)st.st_size) {
        ssize_t n = pread(fd, p + done, (size_t)((uint64_t)st.st_size - done), (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (uint64_t)n;
    }
    close(fd);
    if (p == NULL)
        return -ENOMEM;
    if (done != (uint64_t)st.st_size) {
        raft_free(p);
        return -EIO;
    }
    *out = p;
    *size = done;
    return 0;
}

/* The record at off checks: its bytes are in range and its CRC matches. */
static bool record_ok(const struct seg_read *r, uint64_t off, uint32_t *len)
{
    if (r->size - off < REC_HEADER_BYTES)
        return false;
    const uint8_t *p = r->data + off;
    *len = get_u32(p);
    if (*len == 0 && get_u32(p + 4) == 0)
        return false; /* zeros: nothing was written here */
    /* a known type and its zero bytes before any CRC: scanning garbage for
     * a record then costs a few loads a position, not a CRC of megabytes */
    if (p[8] < REC_SEGMENT || p[8] > REC_SYNC_MARK || p[9] != 0 || p[10] != 0 || p[11] != 0 ||
        *len > REC_ENTRY_FIXED + RAFT_ENTRY_BYTES_MAX)
        return false;
    return (uint64_t)*len <= r->size - off - REC_HEADER_BYTES &&
           get_u32(r->data + off + 4) == record_crc(r->data + off, *len);
}

/* Walk the records: r->end is where valid ones stop; after it, a torn
 * tail (nothing valid) or damage (something valid later). */
static void seg_scan(struct seg_read *r)
{
    uint32_t len;
    uint64_t off = 0;

    /* bounded: each turn moves past one record */
    while (off < r->size && record_ok(r, off, &len)) {
        off += padded(REC_HEADER_BYTES + (uint64_t)len);
    }
    r->end = off;
    for (uint64_t at = off + 8; at + REC_HEADER_BYTES <= r->size; at += 8) {
        if (record_ok(r, at, &len)) {
            r->is_bad = true;
            r->bad_at = off;
            return;
        }
    }
    r->is_torn = off < r->size;
}

/* A sync mark of the segment starting at first, somewhere after at, says a
 * sync covered the record at `at`: damage there is not a torn write. Only
 * records shaped like a mark are checked, so the walk stays linear. */
static bool is_synced_past(const struct seg_read *r, raft_index first, uint64_t at)
{
    uint32_t len;

    /* bounded: one look every 8 bytes */
    for (uint64_t off = at + 8; off + REC_HEADER_BYTES + REC_SYNC_MARK_LEN <= r->size; off += 8) {
        const uint8_t *p = r->data + off;
        if (get_u32(p) == REC_SYNC_MARK_LEN && p[8] == REC_SYNC_MARK && record_ok(r, off, &len) &&
            get_u64(p + REC_HEADER_BYTES) == first && get_u64(p + REC_HEADER_BYTES + 8) > at)
            return true;
    }
    return false;
}

/* ---- recovery -------------------------------------------------------------------------------- */

static int read_vote_file(struct raft_seglog *l, char *errmsg);
static int write_vote_file(struct raft_seglog *l, char *errmsg);

static int read_snapshot_file(struct raft_seglog *l, char *errmsg)
{
    uint8_t *p = NULL;
    uint64_t size = 0;
    int rc = read_file(l->dir_fd, "snapshot", &p, &size);

    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return fail(errmsg, rc, "log %s: cannot read snapshot: %s", l->dir, strerror(-rc));
    /* magic, index, term, hlc, config length, config, crc */
    /* magic, index, term, hlc, u32 flags (1: a reset), u32 config bytes,
     * the config, u32 CRC32C of all before */
    uint32_t clen = size >= 40 ? get_u32(p + 36) : 0;
    if (size < 44 || memcmp(p, SNAP_MAGIC, 8) != 0 || clen > RAFT_CONFIG_BYTES_MAX ||
        size != 40 + (uint64_t)clen + 4 || (get_u32(p + 32) & ~1u) != 0 ||
        get_u32(p + 40 + clen) != crc32c(0, p, 40 + (size_t)clen) ||
        raft_config_decode(p + 40, clen, &l->snap_config) != 0) {
        raft_free(p);
        return fail(errmsg, -RAFT_ECORRUPT, "log %s: the snapshot file is damaged", l->dir);
    }
    l->snap_index = get_u64(p + 8);
    l->snap_term = get_u64(p + 16);
    l->snap_hlc_ns = get_u64(p + 24);
    l->is_snap_reset = (get_u32(p + 32) & 1u) != 0;
    raft_free(p);
    return 0;
}

static int list_segments(struct raft_seglog *l, char *errmsg)
{
    int fd = dup(l->dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;

    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return fail(errmsg, -errno, "log %s: cannot list: %s", l->dir, strerror(errno));
    }
    /* bounded by the directory's entries */
    while ((de = readdir(d)) != NULL) {
        struct segment s;
        if (!seg_parse_name(de->d_name, &s))
            continue;
        if (raft__grow((void **)&l->segs, &l->seg_cap, l->seg_count + 1, sizeof(*l->segs)) != 0) {
            closedir(d);
            return fail(errmsg, -ENOMEM, "out of memory");
        }
        l->segs[l->seg_count++] = s;
    }
    closedir(d);
    for (uint32_t i = 1; i < l->seg_count; i++) { /* insertion sort by first index */
        struct segment v = l->segs[i];
        uint32_t j = i;
        for (; j > 0 && l->segs[j - 1].first > v.first; j--) {
            l->segs[j] = l->segs[j - 1];
        }
        l->segs[j] = v;
    }
    return 0;
}

/* One open segment at most, the newest; no gaps between segments. */
static int check_segments(struct raft_seglog *l, char *errmsg)
{
    for (uint32_t i = 0; i < l->seg_count; i++) {
        if (l->segs[i].is_open && i + 1 != l->seg_count)
            return fail(errmsg, -RAFT_ECORRUPT, "log %s: an open segment is not the newest",
                        l->dir);
        if (i > 0 && l->segs[i].first != l->segs[i - 1].last + 1)
            return fail(errmsg, -RAFT_ECORRUPT, "log %s: segments leave a gap before %" PRIu64,
                        l->dir, l->segs[i].first);
    }
    return 0;
}

static int boot_push(struct raft_seglog *l, const uint8_t *p, uint32_t len, raft_index expect,
                     char *errmsg)
{
    uint32_t size = get_u32(p + 28);

    if (len != REC_ENTRY_FIXED + size || get_u64(p) != expect || size > RAFT_ENTRY_BYTES_MAX)
        return fail(errmsg, -RAFT_ECORRUPT, "log %s: entry %" PRIu64 " out of place", l->dir,
                    get_u64(p));
    if (raft__grow((void **)&l->boot_entries, &l->boot_cap, l->boot_count + 1,
                   sizeof(*l->boot_entries)) != 0)
        return fail(errmsg, -ENOMEM, "out of memory");
    struct raft_entry *e = &l->boot_entries[l->boot_count];
    *e = (struct raft_entry){.index = expect, .term = get_u64(p + 8), .hlc_ns = get_u64(p + 16),
                             .type = p[24], .size = size};
    if (size > 0) {
        e->data = raft_malloc(size);
        if (e->data == NULL)
            return fail(errmsg, -ENOMEM, "out of memory");
        memcpy(e->data, p + REC_ENTRY_FIXED, size);
    }
    l->boot_count++;
    return 0;
}

/* Read one segment's records into the boot state. */
static int seg_load(struct raft_seglog *l, uint32_t i, char *errmsg)
{
    struct segment *s = &l->segs[i];
    char name[96];
    struct seg_read r = {.data = NULL};
    raft_index next = s->first;

    seg_name(s, name, sizeof(name));
    int rc = read_file(l->dir_fd, name, &r.data, &r.size);
    if (rc != 0)
        return fail(errmsg, rc, "log %s: cannot read %s: %s", l->dir, name, strerror(-rc));
    seg_scan(&r);
    if (r.is_bad && s->is_open && !is_synced_past(&r, s->first, r.bad_at)) {
        r.is_bad = false; /* unsynced pages a power cut kept out of order */
        r.is_torn = true;
    }
    if (r.is_bad || (r.is_torn && !s->is_open)) {
        rc = fail(errmsg, -RAFT_ECORRUPT, "log %s: %s is damaged at byte %" PRIu64, l->dir, name,
                  r.is_bad ? r.bad_at : r.end);
        goto out_free;
    }
    for (uint64_t off = 0; off < r.end && rc == 0;) {
        uint32_t len = get_u32(r.data + off);
        const uint8_t *p = r.data + off + REC_HEADER_BYTES;
        uint8_t type = r.data[off + 8];
        if (off == 0 && (type != REC_SEGMENT || len != 16 || memcmp(p, SEG_MAGIC, 8) != 0 ||
                         get_u64(p + 8) != s->first))
            rc = fail(errmsg, -RAFT_ECORRUPT, "log %s: %s has a wrong header", l->dir, name);
        else if (type == REC_HARD_STATE && len == 24)
            l->hs = (struct raft_hard_state){.term = get_u64(p), .vote = get_u64(p + 8),
                                             .commit = get_u64(p + 16)};
        else if (type == REC_SYNC_MARK && len == REC_SYNC_MARK_LEN)
            ; /* read by is_synced_past() when needed */
        else if (type == REC_ENTRY && len >= REC_ENTRY_FIXED) {
            if (next > l->snap_index)
                rc = boot_push(l, p, len, next, errmsg);
            s->last_hlc_ns = get_u64(p + 16);
            next++;
        } else if (off != 0)
            rc = fail(errmsg, -RAFT_ECORRUPT, "log %s: %s: unknown record at %" PRIu64, l->dir,
                      name, off);
        off += padded(REC_HEADER_BYTES + (uint64_t)len);
    }
    if (rc == 0 && !s->is_open && next != s->last + 1)
        rc = fail(errmsg, -RAFT_ECORRUPT, "log %s: %s holds %" PRIu64 " entries, not its name's",
                  l->dir, name, next - s->first);
    s->last = next - 1;
    if (rc == 0 && r.end == 0 && s->is_open) {
        /* made, but its first write never reached the disk: start it again */
        if (unlinkat(l->dir_fd, name, 0) != 0)
            rc = fail(errmsg, -errno, "log %s: cannot remove %s", l->dir, name);
        l->seg_count--;
        goto out_free;
    }
    if (rc == 0 && r.end == 0)
        rc = fail(errmsg, -RAFT_ECORRUPT, "log %s: %s has no header", l->dir, name);
    if (rc == 0 && s->is_open && r.is_torn) {
        /* a write the crash cut short: drop it, durably */
        int fd = openat(l->dir_fd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)r.end) != 0 || fdatasync(fd) != 0)
            rc = fail(errmsg, -EIO, "log %s: cannot cut the torn tail of %s", l->dir, name);
        if (fd >= 0)
            close(fd);
    }
    if (rc == 0 && s->is_open) {
        l->size = r.end;
        l->zeroed_to = r.end; /* the cut took the zeros too */
    }
out_free:
    raft_free(r.data);
    return rc;
}

/* Offsets of the open segment's entries, for truncation. */
static int index_open_segment(struct raft_seglog *l, char *errmsg)
{
    struct segment *s = open_seg(l);
    char name[96];
    struct seg_read r = {.data = NULL};

    seg_name(s, name, sizeof(name));
    int rc = read_file(l->dir_fd, name, &r.data, &r.size);
    if (rc != 0)
        return fail(errmsg, rc, "log %s: cannot read %s", l->dir, name);
    uint64_t count = s->last + 1 - s->first;
    rc = raft__grow((void **)&l->offsets, &l->offset_cap, (uint32_t)count + 1, sizeof(uint64_t));
    raft_index next = s->first;
    for (uint64_t off = 0; rc == 0 && off < l->size;) {
        uint32_t len = get_u32(r.data + off);
        if (r.data[off + 8] == REC_ENTRY)
            l->offsets[next++ - s->first] = off;
        off += padded(REC_HEADER_BYTES + (uint64_t)len);
    }
    raft_free(r.data);
    return rc == 0 ? 0 : fail(errmsg, rc, "out of memory");
}

/* A received snapshot replaced the log, and a crash may have come before
 * every older segment was gone: remove the ones that start at or below it. */
static int finish_reset(struct raft_seglog *l, char *errmsg)
{
    uint32_t kept = 0;

    for (uint32_t i = 0; i < l->seg_count; i++) {
        char name[96];
        if (l->segs[i].first > l->snap_index) {
            l->segs[kept++] = l->segs[i];
            continue;
        }
        seg_name(&l->segs[i], name, sizeof(name));
        if (unlinkat(l->dir_fd, name, 0) != 0)
            return fail(errmsg, -errno, "log %s: cannot remove %s", l->dir, name);
        l->is_dir_dirty = true;
    }
    l->seg_count = kept;
    return 0;
}

static int recover(struct raft_seglog *l, struct raft_boot *boot, char *errmsg)
{
    int rc = read_snapshot_file(l, errmsg);

    if (rc == 0)
        rc = read_vote_file(l, errmsg);
    if (rc == 0)
        rc = list_segments(l, errmsg);
    if (rc == 0 && l->is_snap_reset)
        rc = finish_reset(l, errmsg);
    if (rc == 0)
        rc = check_segments(l, errmsg);
    for (uint32_t i = 0; rc == 0 && i < l->seg_count; i++) {
        /* a sealed segment wholly inside the snapshot is only kept for restores */
        if (!l->segs[i].is_open && l->segs[i].last <= l->snap_index)
            continue;
        if (l->boot_count == 0 && l->segs[i].first > l->snap_index + 1)
            rc = fail(errmsg, -RAFT_ECORRUPT, "log %s: entries %" PRIu64 "..%" PRIu64
                      " are missing", l->dir, l->snap_index + 1, l->segs[i].first - 1);
        if (rc == 0)
            rc = seg_load(l, i, errmsg);
    }
    if (rc == 0 && (l->seg_count == 0 || !l->segs[l->seg_count - 1].is_open)) {
        raft_index last = l->seg_count > 0 ? l->segs[l->seg_count - 1].last : l->snap_index;
        rc = seg_create(l, (last > l->snap_index ? last : l->snap_index) + 1, errmsg);
        if (rc == 0)
            rc = buf_flush(l, errmsg);
    } else if (rc == 0) {
        char name[96];
        seg_name(open_seg(l), name, sizeof(name));
        l->fd = openat(l->dir_fd, name, O_RDWR | O_CLOEXEC);
        rc = l->fd >= 0 ? index_open_segment(l, errmsg)
                        : fail(errmsg, -errno, "log %s: cannot open %s", l->dir, name);
        /* a kill leaves unsynced writes in the page cache, and they read
         * back: sync them before the node counts them as its log */
        if (rc == 0 && fdatasync(l->fd) != 0)
            rc = fail(errmsg, -EIO, "log %s: cannot sync %s: %s", l->dir, name, strerror(errno));
    }
    if (rc != 0)
        return rc;
    /* the term and vote: the vote file's unless the log has a newer term (a
     * vote file is written at the sync after the log's record) */
    if (l->vote_term > l->hs.term || (l->vote_term == l->hs.term && l->vote_id != 0)) {
        l->hs.term = l->vote_term;
        l->hs.vote = l->vote_id;
    }
    /* entries of a term no record reached (a stop cut the write after them;
     * an older log wrote the term after its entries): the node was in that
     * term. It gave no vote in it, or the vote would be on disk: a vote is
     * synced before it is sent. */
    raft_term last_term = l->boot_count > 0 ? l->boot_entries[l->boot_count - 1].term : 0;
    if (last_term > l->hs.term)
        l->hs = (struct raft_hard_state){.term = last_term, .commit = l->hs.commit};
    /* the vote file now, not at the next sync: a truncation before that
     * sync may cut the only record of this term and vote from the log */
    if (l->hs.term != l->vote_term || l->hs.vote != l->vote_id)
        rc = write_vote_file(l, errmsg);
    if (rc != 0)
        return rc;
    *boot = (struct raft_boot){.hard_state = l->hs, .snapshot_index = l->snap_index,
                               .snapshot_term = l->snap_term, .snapshot_hlc_ns = l->snap_hlc_ns,
                               .config = l->snap_config, .entry_count = l->boot_count,
                               .entries = l->boot_entries, .applied = l->snap_index};
    return 0;
}

/* ---- public ------------------------------------------------------------------------------------ */

void raft_seglog_options_init(struct raft_seglog_options *o)
{
    *o = (struct raft_seglog_options){.segment_bytes = 64u << 20,
                                      .retain_ns = 7ull * 24 * 3600 * 1000000000ull};
}

static void free_boot(struct raft_seglog *l)
{
    for (uint32_t i = 0; i < l->boot_count; i++) {
        raft_free(l->boot_entries[i].data);
    }
    raft_free(l->boot_entries);
    l->boot_entries = NULL;
    l->boot_count = 0;
    l->boot_cap = 0;
}

void raft_seglog_close(struct raft_seglog *l)
{
    if (l == NULL)
        return;
    /* a clean close leaves no prefill; if the cut fails, nothing is lost:
     * the zeros read as nothing written, and the next open cuts them */
    if (l->fd >= 0 && !l->is_failed && l->zeroed_to > l->size)
        l->is_failed = ftruncate(l->fd, (off_t)l->size) != 0;
    if (l->fd >= 0)
        close(l->fd);
    if (l->dir_fd >= 0)
        close(l->dir_fd);
    free_boot(l);
    raft_free(l->segs);
    raft_free(l->offsets);
    raft_free(l->buf);
    raft_free(l);
}

int raft_seglog_open(const char *dir, const struct raft_seglog_options *o,
                     struct raft_seglog **out, struct raft_boot *boot, char *errmsg)
{
    RAFT_ASSERT(dir != NULL && o != NULL && out != NULL && boot != NULL);
    if (strlen(dir) >= RAFT_PATH_MAX || o->segment_bytes < 4096)
        return fail(errmsg, -EINVAL, "log directory name too long, or segments below 4 KiB");
    struct raft_seglog *l = raft__calloc(1, sizeof(*l));
    if (l == NULL)
        return fail(errmsg, -ENOMEM, "out of memory");
    memcpy(l->dir, dir, strlen(dir) + 1);
    l->opt = *o;
    l->fd = -1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        int rc = fail(errmsg, -errno, "log %s: cannot create: %s", dir, strerror(errno));
        raft_seglog_close(l);
        return rc;
    }
    l->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = l->dir_fd >= 0 ? recover(l, boot, errmsg)
                            : fail(errmsg, -errno, "log %s: cannot open: %s", dir, strerror(errno));
    if (rc != 0) {
        raft_seglog_close(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* Make the newest (sealed) segment the open one again: its entries past
 * the commit index are about to be replaced. */
static int seg_unseal(struct raft_seglog *l, char *errmsg)
{
    struct segment *s = &l->segs[l->seg_count - 1];
    char from[96];
    char to[96];
    struct stat st;

    seg_name(s, from, sizeof(from));
    s->is_open = true;
    seg_name(s, to, sizeof(to));
    if (renameat(l->dir_fd, from, l->dir_fd, to) != 0)
        return fail(errmsg, -errno, "log %s: cannot reopen %s: %s", l->dir, from,
                    strerror(errno));
    l->is_dir_dirty = true;
    l->fd = openat(l->dir_fd, to, O_RDWR | O_CLOEXEC);
    if (l->fd < 0 || fstat(l->fd, &st) != 0)
        return fail(errmsg, -errno, "log %s: cannot open %s: %s", l->dir, to, strerror(errno));
    l->size = (uint64_t)st.st_size;
    l->zeroed_to = l->size;
    l->marked_to = 0;
    return index_open_segment(l, errmsg);
}

/* Drop every entry from index `from` on (a leader's log replaces them). */
static int truncate_from(struct raft_seglog *l, raft_index from, char *errmsg)
{
    int rc = buf_flush(l, errmsg);

    /* whole segments that start at or after from go, newest first */
    while (rc == 0 && l->seg_count > 0 && l->segs[l->seg_count - 1].first >= from) {
        struct segment *s = &l->segs[l->seg_count - 1];
        char name[96];
        seg_name(s, name, sizeof(name));
        if (s->is_open) {
            close(l->fd);
            l->fd = -1;
        }
        if (unlinkat(l->dir_fd, name, 0) != 0)
            return fail(errmsg, -errno, "log %s: cannot remove %s", l->dir, name);
        l->seg_count--;
        l->is_dir_dirty = true;
    }
    if (rc == 0 && l->seg_count == 0)
        return seg_create(l, from, errmsg);
    if (rc == 0 && !l->segs[l->seg_count - 1].is_open) {
        if (l->segs[l->seg_count - 1].last < from)
            return seg_create(l, from, errmsg);
        rc = seg_unseal(l, errmsg);
    }
    if (rc != 0)
        return rc;
    struct segment *s = open_seg(l);
    if (from > s->last)
        return 0;
    uint64_t at = l->offsets[from - s->first];
    /* synced before new records go there: old records and sync marks
     * brought back by a power cut would make torn new ones read as damage */
    if (ftruncate(l->fd, (off_t)at) != 0 || fdatasync(l->fd) != 0) {
        l->is_failed = true;
        return fail(errmsg, -errno, "log %s: truncate failed: %s", l->dir, strerror(errno));
    }
    l->size = at;
    l->zeroed_to = at;
    l->marked_to = at < l->marked_to ? at : l->marked_to;
    s->last = from - 1;
    /* a hard state written after from went with it: write it again */
    rc = buf_hard_state(l);
    return rc == 0 ? 0 : fail(errmsg, rc, "out of memory");
}

static int append_entry(struct raft_seglog *l, const struct raft_entry *e, char *errmsg)
{
    struct segment *s = open_seg(l);
    uint8_t fixed[REC_ENTRY_FIXED] = {0};

    if (l->size + l->buf_used >= l->opt.segment_bytes && s->last >= s->first) {
        int rc = seg_seal(l, errmsg);
        if (rc == 0)
            rc = seg_create(l, e->index, errmsg);
        if (rc != 0)
            return rc;
        s = open_seg(l);
    }
    RAFT_ASSERT(e->index == s->last + 1);
    int rc = raft__grow((void **)&l->offsets, &l->offset_cap,
                        (uint32_t)(e->index - s->first) + 1, sizeof(uint64_t));
    if (rc != 0)
        return fail(errmsg, rc, "out of memory");
    l->offsets[e->index - s->first] = l->size + l->buf_used;
    put_u64(fixed, e->index);
    put_u64(fixed + 8, e->term);
    put_u64(fixed + 16, e->hlc_ns);
    fixed[24] = e->type;
    put_u32(fixed + 28, e->size);
    rc = buf_record(l, REC_ENTRY, fixed, sizeof(fixed), e->data, e->size);
    if (rc != 0)
        return fail(errmsg, rc, "out of memory");
    s->last = e->index;
    s->last_hlc_ns = e->hlc_ns;
    return 0;
}

int raft_seglog_append(struct raft_seglog *l, const struct raft_ready *rd, char *errmsg)
{
    int rc = 0;

    RAFT_ASSERT(l != NULL && rd != NULL);
    if (l->is_failed)
        return fail(errmsg, -EIO, "log %s: an earlier write or sync failed", l->dir);
    if (rd->entry_count > 0 && rd->entries[0].index <= open_seg(l)->last)
        rc = truncate_from(l, rd->entries[0].index, errmsg);
    /* the term before the entries of that term: a segment the entries
     * roll into starts with it, and a write cut after them keeps it */
    if (rc == 0 && rd->has_hard_state) {
        l->hs = rd->hard_state;
        l->is_vote_dirty |= l->hs.term != l->vote_term || l->hs.vote != l->vote_id;
        rc = buf_hard_state(l);
        if (rc != 0)
            fail(errmsg, rc, "out of memory");
    }
    for (uint32_t i = 0; rc == 0 && i < rd->entry_count; i++) {
        rc = append_entry(l, &rd->entries[i], errmsg);
    }
    if (rc == 0)
        rc = buf_flush(l, errmsg);
    if (rc != 0)
        l->is_failed = true;
    return rc;
}

/* Say, after the records, that a sync covered them. The mark itself is
 * synced with the next batch; until then the batch before it is the one a
 * power cut could tear (recovery cannot tell it from synced damage). */
static int write_sync_mark(struct raft_seglog *l, char *errmsg)
{
    uint8_t p[REC_SYNC_MARK_LEN];

    put_u64(p, open_seg(l)->first);
    put_u64(p + 8, l->size);
    int rc = buf_record(l, REC_SYNC_MARK, p, sizeof(p), NULL, 0);
    if (rc != 0)
        return fail(errmsg, rc, "out of memory");
    rc = buf_flush(l, errmsg);
    if (rc == 0)
        l->marked_to = l->size;
    return rc;
}

int raft_seglog_sync(struct raft_seglog *l, char *errmsg)
{
    RAFT_ASSERT(l != NULL);
    if (l->is_failed)
        return fail(errmsg, -EIO, "log %s: an earlier write or sync failed", l->dir);
    int rc = buf_flush(l, errmsg);
    if (rc == 0 && fdatasync(l->fd) != 0) {
        l->is_failed = true; /* never retried: the page cache may have dropped the data */
        rc = fail(errmsg, -EIO, "log %s: fdatasync failed: %s", l->dir, strerror(errno));
    }
    if (rc == 0 && l->size > l->marked_to)
        rc = write_sync_mark(l, errmsg);
    if (rc == 0 && l->is_vote_dirty)
        rc = write_vote_file(l, errmsg);
    if (rc == 0 && l->is_dir_dirty) {
        if (fsync(l->dir_fd) != 0) {
            l->is_failed = true;
            return fail(errmsg, -EIO, "log %s: directory fsync failed: %s", l->dir,
                        strerror(errno));
        }
        l->is_dir_dirty = false;
    }
    return rc;
}

/* Replace the small file `name` with buf: temp, fdatasync, rename,
 * directory fsync. */
static int replace_file(struct raft_seglog *l, const char *name, const uint8_t *buf,
                        size_t size, char *errmsg)
{
    char tmp[64];

    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    int fd = openat(l->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool is_ok = fd >= 0 && write(fd, buf, size) == (ssize_t)size && fdatasync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (!is_ok || renameat(l->dir_fd, tmp, l->dir_fd, name) != 0 || fsync(l->dir_fd) != 0) {
        l->is_failed = true;
        return fail(errmsg, -EIO, "log %s: cannot write %s: %s", l->dir, name, strerror(errno));
    }
    return 0;
}

static int write_snapshot_file(struct raft_seglog *l, char *errmsg)
{
    uint8_t buf[44 + RAFT_CONFIG_BYTES_MAX];
    uint32_t clen = raft_config_encode(&l->snap_config, buf + 40);

    memcpy(buf, SNAP_MAGIC, 8);
    put_u64(buf + 8, l->snap_index);
    put_u64(buf + 16, l->snap_term);
    put_u64(buf + 24, l->snap_hlc_ns);
    put_u32(buf + 32, l->is_snap_reset ? 1u : 0u);
    put_u32(buf + 36, clen);
    put_u32(buf + 40 + clen, crc32c(0, buf, 40 + (size_t)clen));
    return replace_file(l, "snapshot", buf, 44 + (size_t)clen, errmsg);
}

/* magic, u64 term, u64 vote, u32 CRC32C of the 24 bytes before */
static int write_vote_file(struct raft_seglog *l, char *errmsg)
{
    uint8_t buf[28];

    memcpy(buf, VOTE_MAGIC, 8);
    put_u64(buf + 8, l->hs.term);
    put_u64(buf + 16, l->hs.vote);
    put_u32(buf + 24, crc32c(0, buf, 24));
    int rc = replace_file(l, "vote", buf, sizeof(buf), errmsg);
    if (rc == 0) {
        l->vote_term = l->hs.term;
        l->vote_id = l->hs.vote;
        l->is_vote_dirty = false;
    }
    return rc;
}

static int read_vote_file(struct raft_seglog *l, char *errmsg)
{
    uint8_t *p = NULL;
    uint64_t size = 0;
    int rc = read_file(l->dir_fd, "vote", &p, &size);

    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return fail(errmsg, rc, "log %s: cannot read vote: %s", l->dir, strerror(-rc));
    if (size != 28 || memcmp(p, VOTE_MAGIC, 8) != 0 || get_u32(p + 24) != crc32c(0, p, 24)) {
        raft_free(p);
        return fail(errmsg, -RAFT_ECORRUPT, "log %s: the vote file is damaged", l->dir);
    }
    l->vote_term = get_u64(p + 8);
    l->vote_id = get_u64(p + 16);
    raft_free(p);
    return 0;
}

/* Delete sealed segments wholly within the snapshot whose newest entry is
 * older than the retention window, oldest first. */
static int drop_expired(struct raft_seglog *l, uint64_t now_ns, char *errmsg)
{
    uint32_t gone = 0;

    while (gone < l->seg_count && !l->segs[gone].is_open && l->segs[gone].last <= l->snap_index &&
           l->segs[gone].last_hlc_ns + l->opt.retain_ns < now_ns) {
        char name[96];
        seg_name(&l->segs[gone], name, sizeof(name));
        if (unlinkat(l->dir_fd, name, 0) != 0)
            return fail(errmsg, -errno, "log %s: cannot remove %s", l->dir, name);
        gone++;
    }
    if (gone > 0) {
        memmove(l->segs, l->segs + gone, (l->seg_count - gone) * sizeof(*l->segs));
        l->seg_count -= gone;
        l->is_dir_dirty = true;
    }
    return 0;
}

int raft_seglog_snapshot(struct raft_seglog *l, raft_index index, raft_term term,
                         uint64_t hlc_ns, const struct raft_config *c, bool is_reset,
                         uint64_t now_ns, char *errmsg)
{
    RAFT_ASSERT(l != NULL && c != NULL);
    if (l->is_failed)
        return fail(errmsg, -EIO, "log %s: an earlier write or sync failed", l->dir);
    if (!is_reset && index > open_seg(l)->last)
        return fail(errmsg, -EINVAL, "log %s: snapshot at %" PRIu64 " is past the log", l->dir,
                    index);
    if (!is_reset && index < l->snap_index)
        return 0; /* a compaction an installed snapshot overtook: never back */
    l->snap_index = index;
    l->snap_term = term;
    l->snap_hlc_ns = hlc_ns;
    l->snap_config = *c;
    l->is_snap_reset = is_reset;
    /* the snapshot file first: a crash before the old segments go leaves
     * them behind a snapshot that supersedes them, never a log without one */
    int rc = write_snapshot_file(l, errmsg);
    if (rc == 0 && is_reset) {
        /* an installed snapshot replaces the whole log */
        while (l->seg_count > 0) {
            char name[96];
            seg_name(&l->segs[l->seg_count - 1], name, sizeof(name));
            if (unlinkat(l->dir_fd, name, 0) != 0 && errno != ENOENT)
                return fail(errmsg, -errno, "log %s: cannot remove %s", l->dir, name);
            l->seg_count--;
        }
        if (l->fd >= 0)
            close(l->fd);
        l->fd = -1;
        l->buf_used = 0;
        l->is_dir_dirty = true;
        rc = seg_create(l, index + 1, errmsg);
        if (rc == 0)
            rc = raft_seglog_sync(l, errmsg);
    }
    if (rc == 0)
        rc = drop_expired(l, now_ns, errmsg);
    return rc;
}

/* ---- reading beside the writer --------------------------------------------------------------- */

/* Give each the entries of segment s from *next to to, moving *next past
 * each one. The open segment may be growing: its records end at the first
 * that does not check. -ENOENT: s was renamed, removed or cut since listed. */
static int seg_read_range(struct raft_seglog *l, const struct segment *s, raft_index *next,
                          raft_index to, int (*each)(void *ctx, const struct raft_entry *e),
                          void *ctx, char *errmsg)
{
    char name[96];
    struct seg_read r = {.data = NULL};

    seg_name(s, name, sizeof(name));
    int rc = read_file(l->dir_fd, name, &r.data, &r.size);
    if (rc == -ENOENT || (rc == -EIO && s->is_open))
        return -ENOENT; /* sealing cuts the open segment's prefill, then renames it */
    if (rc != 0)
        return fail(errmsg, rc, "log %s: cannot read %s: %s", l->dir, name, strerror(-rc));
    seg_scan(&r);
    if (!s->is_open && (r.is_bad || r.is_torn))
        rc = fail(errmsg, -RAFT_ECORRUPT, "log %s: %s is damaged at byte %" PRIu64, l->dir, name,
                  r.is_bad ? r.bad_at : r.end);
    raft_index index = s->first;
    for (uint64_t off = 0; rc == 0 && off < r.end && *next <= to;) {
        uint32_t len = get_u32(r.data + off);
        uint8_t *p = r.data + off + REC_HEADER_BYTES;
        uint8_t type = r.data[off + 8];
        if (off == 0 && (type != REC_SEGMENT || len != 16 || memcmp(p, SEG_MAGIC, 8) != 0 ||
                         get_u64(p + 8) != s->first)) {
            rc = fail(errmsg, -RAFT_ECORRUPT, "log %s: %s has a wrong header", l->dir, name);
        } else if (type == REC_ENTRY && len >= REC_ENTRY_FIXED) {
            uint32_t size = get_u32(p + 28);
            if (len != REC_ENTRY_FIXED + size || get_u64(p) != index ||
                size > RAFT_ENTRY_BYTES_MAX) {
                rc = fail(errmsg, -RAFT_ECORRUPT, "log %s: %s: entry %" PRIu64 " out of place",
                          l->dir, name, get_u64(p));
            } else if (index == *next) {
                struct raft_entry e = {.index = index, .term = get_u64(p + 8),
                                       .hlc_ns = get_u64(p + 16), .type = p[24], .size = size,
                                       .data = size > 0 ? p + REC_ENTRY_FIXED : NULL};
                rc = each(ctx, &e);
                if (rc == 0)
                    (*next)++;
            }
            index++;
        }
        off += padded(REC_HEADER_BYTES + (uint64_t)len);
    }
    raft_free(r.data);
    return rc;
}

int raft_seglog_read(const char *dir, raft_index from, raft_index to,
                     int (*each)(void *ctx, const struct raft_entry *e), void *ctx, char *errmsg)
{
    RAFT_ASSERT(dir != NULL && each != NULL);
    if (strlen(dir) >= RAFT_PATH_MAX)
        return fail(errmsg, -EINVAL, "log directory name too long");
    struct raft_seglog *l = raft__calloc(1, sizeof(*l));
    if (l == NULL)
        return fail(errmsg, -ENOMEM, "out of memory");
    memcpy(l->dir, dir, strlen(dir) + 1);
    l->fd = -1;
    l->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = l->dir_fd >= 0 ? 0
                            : fail(errmsg, -errno, "log %s: cannot open: %s", dir, strerror(errno));
    raft_index next = from;
    bool is_moved = true;
    /* a segment sealed (renamed) between the listing and its reading is
     * looked for again under its new name, and a listing that came up
     * short (one taken during a rename may show neither name) is taken
     * again: a few times at most. Then the entries from next on are not
     * here. */
    for (int round = 0; rc == 0 && is_moved && round < 3; round++) {
        is_moved = false;
        l->seg_count = 0;
        rc = list_segments(l, errmsg);
        for (uint32_t i = 0; rc == 0 && i < l->seg_count && next <= to; i++) {
            const struct segment *s = &l->segs[i];
            if (s->first > next)
                break; /* the log starts past next: next is not here */
            if (s->is_open || s->last >= next)
                rc = seg_read_range(l, s, &next, to, each, ctx, errmsg);
            if (rc == -ENOENT) {
                rc = 0;
                break;
            }
        }
        is_moved = rc == 0 && next <= to;
    }
    raft_seglog_close(l);
    return rc;
}
