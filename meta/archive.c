/* meta/archive.c - the point-in-time archive: its object formats
 * (meta/archive.h) and the rebuild of a shard as it was at a moment
 * (design §7): the newest archived checkpoint at or before the moment,
 * then the archived entries after it, applied up to the last one whose
 * time is not past the moment. Entries carry the leader's hybrid-logical
 * time, which never goes down along the log, so "applied up to the
 * moment" is a prefix of the log. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "limits.h"
#include "meta.h"
#include "objstore.h"

static const uint8_t LOG_MAGIC[8] = {'a', 'r', 'b', 'o', 'r', 'L', 'G', '1'};
static const uint8_t CKPT_MAGIC[8] = {'a', 'r', 'b', 'o', 'r', 'C', 'K', '1'};
static const uint8_t HEAD_MAGIC[8] = {'a', 'r', 'b', 'o', 'r', 'H', 'D', '1'};

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;

    for (int i = 3; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

/* ---- formats ------------------------------------------------------------------------- */

void archive_header_put(uint8_t *p, const struct archive_header *h)
{
    memcpy(p, LOG_MAGIC, 8);
    put32(p + 8, h->shard);
    put32(p + 12, h->count);
    put64(p + 16, h->first);
    put64(p + 24, h->last);
    put64(p + 32, h->first_hlc);
    put64(p + 40, h->last_hlc);
}

void archive_entry_put(uint8_t *p, const struct archive_entry *e)
{
    put64(p, e->index);
    put64(p + 8, e->term);
    put64(p + 16, e->hlc_ns);
    p[24] = e->type;
    put32(p + 25, e->size);
    if (e->size > 0)
        memcpy(p + ARCHIVE_REC_BYTES, e->data, e->size);
}

int archive_decode(const uint8_t *buf, size_t len, uint32_t shard, struct archive_header *h,
                   int (*each)(void *ctx, const struct archive_entry *e), void *ctx,
                   char *errmsg)
{
    if (len < ARCHIVE_HDR_BYTES || memcmp(buf, LOG_MAGIC, 8) != 0)
        return ar_errorf(errmsg, -AR_ECORRUPT, "not an archived log batch");
    h->shard = get32(buf + 8);
    h->count = get32(buf + 12);
    h->first = get64(buf + 16);
    h->last = get64(buf + 24);
    h->first_hlc = get64(buf + 32);
    h->last_hlc = get64(buf + 40);
    if (h->shard != shard)
        return ar_errorf(errmsg, -AR_ECORRUPT, "a log batch of shard %u, not %u", h->shard, shard);
    if (h->count == 0 || h->first == 0 || h->last < h->first ||
        h->last - h->first != h->count - 1u || h->last_hlc < h->first_hlc)
        return ar_errorf(errmsg, -AR_ECORRUPT, "a log batch whose header does not hold together");
    size_t at = ARCHIVE_HDR_BYTES;
    uint64_t hlc = h->first_hlc;
    for (uint32_t i = 0; i < h->count; i++) {
        struct archive_entry e;
        if (len - at < ARCHIVE_REC_BYTES)
            return ar_errorf(errmsg, -AR_ECORRUPT, "a log batch cut short at entry %u", i);
        e.index = get64(buf + at);
        e.term = get64(buf + at + 8);
        e.hlc_ns = get64(buf + at + 16);
        e.type = buf[at + 24];
        e.size = get32(buf + at + 25);
        at += ARCHIVE_REC_BYTES;
        if (e.index != h->first + i || e.hlc_ns < hlc || e.hlc_ns > h->last_hlc ||
            (i == 0 && e.hlc_ns != h->first_hlc) ||
            (i + 1 == h->count && e.hlc_ns != h->last_hlc) || e.type < 1 || e.type > 2 ||
            e.size > META_MSG_BYTES_MAX || len - at < e.size)
            return ar_errorf(errmsg, -AR_ECORRUPT, "entry %" PRIu64 " of a log batch is damaged",
                        h->first + i);
        e.data = e.size > 0 ? buf + at : NULL;
        at += e.size;
        hlc = e.hlc_ns;
        int rc = each != NULL ? each(ctx, &e) : 0;
        if (rc != 0)
            return rc;
    }
    if (at != len)
        return ar_errorf(errmsg, -AR_ECORRUPT, "%zu bytes after the last entry of a log batch",
                    len - at);
    return 0;
}

void archive_manifest_put(uint8_t *p, const struct archive_manifest *m)
{
    memcpy(p, CKPT_MAGIC, 8);
    put32(p + 8, m->shard);
    put32(p + 12, m->part_count);
    put64(p + 16, m->index);
    put64(p + 24, m->hlc_ns);
    put64(p + 32, m->bytes);
    put32(p + 40, m->crc);
    put32(p + 44, 0);
}

int archive_manifest_get(const uint8_t *p, size_t len, struct archive_manifest *m)
{
    if (len != ARCHIVE_MANIFEST_BYTES || memcmp(p, CKPT_MAGIC, 8) != 0)
        return -AR_ECORRUPT;
    m->shard = get32(p + 8);
    m->part_count = get32(p + 12);
    m->index = get64(p + 16);
    m->hlc_ns = get64(p + 24);
    m->bytes = get64(p + 32);
    m->crc = get32(p + 40);
    uint64_t parts = (m->bytes + ARCHIVE_PART_BYTES - 1) / ARCHIVE_PART_BYTES;
    return m->index > 0 && m->bytes > 0 && parts == m->part_count ? 0 : -AR_ECORRUPT;
}

void archive_head_put(uint8_t *p, const struct archive_head *h)
{
    memcpy(p, HEAD_MAGIC, 8);
    put32(p + 8, h->shard);
    put32(p + 12, 0);
    put64(p + 16, h->last);
    put64(p + 24, h->last_hlc);
    put64(p + 32, h->as_of_ns);
}

int archive_head_get(const uint8_t *p, size_t len, struct archive_head *h)
{
    if (len != ARCHIVE_HEAD_BYTES || memcmp(p, HEAD_MAGIC, 8) != 0)
        return -AR_ECORRUPT;
    h->shard = get32(p + 8);
    h->last = get64(p + 16);
    h->last_hlc = get64(p + 24);
    h->as_of_ns = get64(p + 32);
    return 0;
}

void archive_prefix(char *out, uint32_t shard, const char *what)
{
    snprintf(out, ARCHIVE_KEY_MAX, "pitr/s%u/%s/", shard, what);
}

void archive_key_log(char *out, uint32_t shard, uint64_t first, uint64_t last)
{
    snprintf(out, ARCHIVE_KEY_MAX, "pitr/s%u/log/%016" PRIx64 "-%016" PRIx64, shard, first, last);
}

void archive_key_part(char *out, uint32_t shard, uint64_t index, uint32_t part)
{
    snprintf(out, ARCHIVE_KEY_MAX, "pitr/s%u/ckpt/%016" PRIx64 "/p%06u", shard, index, part);
}

void archive_key_manifest(char *out, uint32_t shard, uint64_t index)
{
    snprintf(out, ARCHIVE_KEY_MAX, "pitr/s%u/ckpt/%016" PRIx64 "/manifest", shard, index);
}

void archive_key_head(char *out, uint32_t shard)
{
    snprintf(out, ARCHIVE_KEY_MAX, "pitr/s%u/head", shard);
}

static bool parse_hex16(const char *p, uint64_t *out)
{
    uint64_t v = 0;

    for (int i = 0; i < 16; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

/* The part of key after its "pitr/s<shard>/<what>/". */
static const char *after_prefix(const char *key, const char *what)
{
    const char *p = strncmp(key, "pitr/s", 6) == 0 ? key + 6 : NULL;

    while (p != NULL && *p >= '0' && *p <= '9') {
        p++;
    }
    size_t n = strlen(what);
    if (p == NULL || *p != '/' || strncmp(p + 1, what, n) != 0 || p[1 + n] != '/')
        return NULL;
    return p + 2 + n;
}

bool archive_parse_log(const char *key, uint64_t *first, uint64_t *last)
{
    const char *p = after_prefix(key, "log");

    return p != NULL && strlen(p) == 33 && p[16] == '-' && parse_hex16(p, first) &&
           parse_hex16(p + 17, last) && *first > 0 && *last >= *first;
}

bool archive_parse_manifest(const char *key, uint64_t *index)
{
    const char *p = after_prefix(key, "ckpt");

    return p != NULL && strlen(p) == 25 && strcmp(p + 16, "/manifest") == 0 &&
           parse_hex16(p, index);
}

/* ---- the catalog: what the store holds for a shard ---------------------------------------- */

struct span {
    uint64_t first, last;
};

struct catalog {
    struct span *logs;       /* ascending first */
    uint32_t log_count;
    uint64_t *ckpts;         /* indexes with a manifest, ascending */
    uint32_t ckpt_count;
    bool has_head;
    struct archive_head head;
};

static void catalog_free(struct catalog *c)
{
    ar_free(c->logs);
    ar_free(c->ckpts);
    memset(c, 0, sizeof(*c));
}

/* Every key under prefix, passed to take (which returns false to stop with -ENOMEM). */
static int list_all(struct obj_store *st, const char *prefix,
                    bool (*take)(struct catalog *c, const char *key), struct catalog *c,
                    char *errmsg)
{
    struct obj_list_page page = {.entry_cap = OBJ_LIST_PAGE_MAX};
    char start[OBJ_KEY_BYTES_MAX + 1] = "";
    int rc = 0;

    page.entries = ar_calloc(OBJ_LIST_PAGE_MAX, sizeof(*page.entries));
    if (page.entries == NULL)
        return -ENOMEM;
    do {
        rc = obj_list(st, prefix, start, &page, errmsg);
        for (unsigned i = 0; rc == 0 && i < page.entry_count; i++) {
            if (!take(c, page.entries[i].key))
                rc = -ENOMEM;
        }
        snprintf(start, sizeof(start), "%s", page.last_key);
    } while (rc == 0 && page.is_truncated);
    ar_free(page.entries);
    return rc;
}

static bool take_log(struct catalog *c, const char *key)
{
    struct span s;

    if (!archive_parse_log(key, &s.first, &s.last))
        return true; /* not ours: skipped */
    if ((c->log_count & (c->log_count + 1)) == 0) { /* 0, 1, 3, 7...: grow */
        struct span *v = ar_realloc(c->logs, sizeof(*v) * (c->log_count + 1) * 2);
        if (v == NULL)
            return false;
        c->logs = v;
    }
    c->logs[c->log_count++] = s;
    return true;
}

static bool take_ckpt(struct catalog *c, const char *key)
{
    uint64_t index;

    if (!archive_parse_manifest(key, &index))
        return true;
    if ((c->ckpt_count & (c->ckpt_count + 1)) == 0) {
        uint64_t *v = ar_realloc(c->ckpts, sizeof(*v) * (c->ckpt_count + 1) * 2);
        if (v == NULL)
            return false;
        c->ckpts = v;
    }
    c->ckpts[c->ckpt_count++] = index;
    return true;
}

static int catalog_read(struct obj_store *st, uint32_t shard, struct catalog *c, char *errmsg)
{
    char prefix[ARCHIVE_KEY_MAX];
    uint8_t head[ARCHIVE_HEAD_BYTES];
    size_t got = 0;

    memset(c, 0, sizeof(*c));
    archive_key_head(prefix, shard);
    int rc = obj_get(st, prefix, head, sizeof(head), &got, errmsg);
    if (rc == 0)
        c->has_head = archive_head_get(head, got, &c->head) == 0 && c->head.shard == shard;
    else if (rc != -ENOENT)
        return rc;
    archive_prefix(prefix, shard, "log");
    rc = list_all(st, prefix, take_log, c, errmsg);
    archive_prefix(prefix, shard, "ckpt");
    if (rc == 0)
        rc = list_all(st, prefix, take_ckpt, c, errmsg);
    if (rc != 0)
        catalog_free(c);
    return rc;
}

static int manifest_read(struct obj_store *st, uint32_t shard, uint64_t index,
                         struct archive_manifest *m, char *errmsg)
{
    char key[ARCHIVE_KEY_MAX];
    uint8_t buf[ARCHIVE_MANIFEST_BYTES];
    size_t got = 0;

    archive_key_manifest(key, shard, index);
    int rc = obj_get(st, key, buf, sizeof(buf), &got, errmsg);
    if (rc == 0 && (archive_manifest_get(buf, got, m) != 0 || m->shard != shard ||
                    m->index != index))
        rc = ar_errorf(errmsg, -AR_ECORRUPT, "%s: not a checkpoint manifest of shard %u", key, shard);
    return rc;
}

/* ---- rebuild ----------------------------------------------------------------------------- */

int meta_shard_new_first(uint32_t shard, struct meta_shard **out)
{
    /* the root's times come from the first leader's log entry (root_stamp) */
    struct meta_shard_config sc = {.root_ino = 1, .root_mode = 0755};

    meta_shard_info_first(shard, &sc.self);
    return meta_shard_new(&sc, out);
}

static void ckpt_dir_remove(const char *dir)
{
    char path[600];

    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

/* Fetch the checkpoint into scratch/ckpt (an LMDB environment), load it
 * (which checks every record) and remove the copy. */
static int ckpt_fetch(struct obj_store *st, const struct archive_manifest *m, const char *scratch,
                      uint8_t *buf, struct meta_shard **out, char *errmsg)
{
    char dir[540];
    char path[600];
    char key[ARCHIVE_KEY_MAX];
    uint32_t crc = 0;
    int rc = 0;

    snprintf(dir, sizeof(dir), "%s/ckpt", scratch);
    ckpt_dir_remove(dir); /* a copy an earlier run left */
    if (mkdir(dir, 0700) != 0)
        return ar_errorf(errmsg, -errno, "%s: %s", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        rc = ar_errorf(errmsg, -errno, "%s: %s", path, strerror(errno));
    uint64_t left = m->bytes;
    for (uint32_t part = 0; rc == 0 && part < m->part_count; part++) {
        size_t want = left < ARCHIVE_PART_BYTES ? (size_t)left : ARCHIVE_PART_BYTES;
        size_t got = 0;
        archive_key_part(key, m->shard, m->index, part);
        rc = obj_get(st, key, buf, ARCHIVE_PART_BYTES, &got, errmsg);
        if (rc == 0 && got != want)
            rc = ar_errorf(errmsg, -AR_ECORRUPT, "%s: %zu bytes, the manifest says %zu", key, got,
                      want);
        if (rc == 0 && write(fd, buf, got) != (ssize_t)got)
            rc = ar_errorf(errmsg, -EIO, "%s: %s", path, strerror(errno));
        crc = obj_crc32c(crc, buf, got);
        left -= got;
    }
    if (fd >= 0)
        close(fd);
    if (rc == 0 && crc != m->crc)
        rc = ar_errorf(errmsg, -AR_ECORRUPT, "checkpoint %" PRIu64 ": its parts fail the manifest's CRC",
                  m->index);
    struct meta_checkpoint *ck = NULL;
    uint64_t applied = 0;
    if (rc == 0)
        rc = meta_checkpoint_open(dir, &ck, errmsg);
    if (rc == 0)
        rc = meta_checkpoint_load(ck, out, &applied, errmsg);
    meta_checkpoint_close(ck);
    ckpt_dir_remove(dir);
    if (rc == 0 && applied != m->index) {
        meta_shard_free(*out);
        *out = NULL;
        rc = ar_errorf(errmsg, -AR_ECORRUPT, "checkpoint %" PRIu64 " holds index %" PRIu64, m->index,
                  applied);
    }
    return rc;
}

struct replay {
    struct meta_shard *shard;
    uint64_t next;          /* the next index to apply */
    uint64_t at_ns;
    uint64_t last_hlc;
    bool is_past;           /* an entry after at_ns was seen: the state is complete */
    uint64_t applied;
    struct meta_cmd_buf *cmd;
    struct meta_reply reply;
    meta_replay_fn watch;
    void *ctx;
    char *errmsg;
};

static int replay_one(void *ctx, const struct archive_entry *e)
{
    struct replay *r = ctx;

    if (e->index < r->next)
        return 0; /* an overlap of two batches (or the base checkpoint holds it) */
    if (e->index > r->next)
        return ar_errorf(r->errmsg, -AR_ECORRUPT, "the archive skips from entry %" PRIu64 " to %" PRIu64,
                    r->next - 1, e->index);
    if (e->hlc_ns > r->at_ns) {
        r->is_past = true;
        return 1; /* stop: everything up to the moment is applied */
    }
    r->next = e->index + 1;
    r->last_hlc = e->hlc_ns;
    if (e->type != 1 || e->size == 0)
        return 0; /* a config, or a leader's empty entry */
    int rc = meta_cmd_decode(e->data, e->size, r->cmd);
    if (rc != 0)
        return ar_errorf(r->errmsg, -AR_ECORRUPT, "entry %" PRIu64 " does not decode", e->index);
    if (r->watch != NULL)
        r->watch(r->ctx, r->shard, &r->cmd->cmd, e->hlc_ns, true);
    memset(&r->reply, 0, sizeof(r->reply));
    rc = meta_shard_apply(r->shard, &r->cmd->cmd, &r->reply);
    if (rc == -ENOMEM)
        return ar_errorf(r->errmsg, -ENOMEM, "out of memory at entry %" PRIu64, e->index);
    if (r->watch != NULL && rc == 0)
        r->watch(r->ctx, r->shard, &r->cmd->cmd, e->hlc_ns, false);
    r->applied++;
    return 0;
}

static void report(const struct meta_rebuild_options *o, const char *stage, uint64_t done,
                   uint64_t total)
{
    if (o->progress != NULL)
        o->progress(o->ctx, stage, done, total);
}

/* The checkpoint that crosses a hole before entry first: the first at or
 * past first - 1 (0: none). */
static uint64_t bridge_over(const struct catalog *c, uint64_t first)
{
    for (uint32_t k = 0; k < c->ckpt_count; k++) {
        if (c->ckpts[k] + 1 >= first)
            return c->ckpts[k];
    }
    return 0;
}

/* Replay goes on from the checkpoint at index, in place of its state. */
static int cross_bridge(struct obj_store *st, const struct meta_rebuild_options *o,
                        uint64_t index, uint8_t *buf, struct replay *r, char *errmsg)
{
    struct archive_manifest m;
    struct meta_shard *s = NULL;
    int rc = manifest_read(st, o->shard, index, &m, errmsg);

    if (rc == 0)
        rc = ckpt_fetch(st, &m, o->scratch_dir, buf, &s, errmsg);
    if (rc != 0)
        return rc;
    meta_shard_free(r->shard);
    r->shard = s;
    r->next = m.index + 1;
    r->last_hlc = m.hlc_ns;
    o->on_bridge(o->ctx, s);
    return 0;
}

/* The base: the newest finished checkpoint at or before the moment (from
 * the oldest: the oldest checkpoint, unless the log starts at 1), into
 * base (index 0: none, replay from the start); pt's oldest moment. */
static int choose_base(struct obj_store *st, const struct meta_rebuild_options *o,
                       const struct catalog *c, struct archive_manifest *base,
                       struct meta_restore_point *pt, char *errmsg)
{
    bool is_from_start = c->log_count > 0 && c->logs[0].first == 1;
    char t[40];
    int rc = 0;

    pt->oldest_ns = is_from_start ? 0 : UINT64_MAX;
    for (uint32_t i = c->ckpt_count; rc == 0 && i-- > 0;) {
        struct archive_manifest m;
        rc = manifest_read(st, o->shard, c->ckpts[i], &m, errmsg);
        if (rc == 0 && m.hlc_ns < pt->oldest_ns)
            pt->oldest_ns = m.hlc_ns;
        if (rc == 0 && (o->is_from_oldest ? !is_from_start
                                          : m.hlc_ns <= o->at_ns && base->index == 0))
            *base = m;
        if (base->index != 0 && is_from_start && !o->is_from_oldest)
            break;
    }
    if (rc == 0 && base->index == 0 && !is_from_start)
        rc = ar_errorf(errmsg, -ERANGE, "the moment is before the recovery window: the oldest "
                       "state the archive holds is at %s",
                       ar_format_time(pt->oldest_ns, t, sizeof(t)));
    return rc;
}

/* Replay the archived log parts after r's base, up to the moment; *hole:
 * the first entry of a part past a gap that nothing bridges (0: none). */
static int replay_logs(struct obj_store *st, const struct meta_rebuild_options *o,
                       const struct catalog *c, uint8_t *buf, struct replay *r, uint64_t *hole,
                       char *errmsg)
{
    int rc = 0;

    for (uint32_t i = 0; rc == 0 && !r->is_past && i < c->log_count; i++) {
        const struct span *s = &c->logs[i];
        char key[ARCHIVE_KEY_MAX];
        size_t got = 0;
        struct archive_header h;
        if (s->last < r->next)
            continue;
        uint64_t over = s->first > r->next && o->on_bridge != NULL && o->is_from_oldest &&
                                o->at_ns == UINT64_MAX
                            ? bridge_over(c, s->first)
                            : 0;
        if (s->first > r->next && over == 0) {
            *hole = s->first;
            break;
        }
        if (over != 0) {
            rc = cross_bridge(st, o, over, buf, r, errmsg);
            if (rc != 0 || s->last < r->next)
                continue;
        }
        archive_key_log(key, o->shard, s->first, s->last);
        rc = obj_get(st, key, buf, ARCHIVE_PART_BYTES, &got, errmsg);
        if (rc == 0)
            rc = archive_decode(buf, got, o->shard, &h, replay_one, r, errmsg);
        if (rc == 0 && (h.first != s->first || h.last != s->last))
            rc = ar_errorf(errmsg, -AR_ECORRUPT, "%s holds entries %" PRIu64 "..%" PRIu64, key,
                           h.first, h.last);
        if (rc == 1)
            rc = 0;
        report(o, "log", i + 1, c->log_count);
    }
    return rc;
}

/* One try; *is_raced when an object the listing named was gone when read
 * (the leader's expiry removed it meanwhile): a new listing will not name it. */
static int rebuild_once(struct obj_store *st, const struct meta_rebuild_options *o,
                        struct meta_shard **out, struct meta_restore_point *pt, bool *is_raced,
                        char *errmsg)
{
    struct catalog c;
    struct replay r = {.at_ns = o->at_ns, .errmsg = errmsg, .watch = o->watch, .ctx = o->ctx};
    uint64_t hole = 0;
    struct archive_manifest base = {0};
    char t[40];

    *out = NULL;
    memset(pt, 0, sizeof(*pt));
    int rc = catalog_read(st, o->shard, &c, errmsg);
    if (rc != 0)
        return rc;
    if (c.log_count == 0 && c.ckpt_count == 0) {
        catalog_free(&c);
        return ar_errorf(errmsg, -ENOENT, "the store holds no archive of shard %u", o->shard);
    }
    uint8_t *buf = ar_malloc(ARCHIVE_PART_BYTES);
    r.cmd = ar_malloc(sizeof(*r.cmd));
    if (buf == NULL || r.cmd == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = choose_base(st, o, &c, &base, pt, errmsg);
    if (rc == 0 && base.index > 0) {
        report(o, "checkpoint", 0, base.bytes);
        rc = ckpt_fetch(st, &base, o->scratch_dir, buf, &r.shard, errmsg);
        report(o, "checkpoint", base.bytes, base.bytes);
    } else if (rc == 0) {
        rc = meta_shard_new_first(o->shard, &r.shard);
    }
    if (rc == 0 && o->on_base != NULL)
        o->on_base(o->ctx, r.shard);
    r.next = base.index + 1;
    r.last_hlc = base.hlc_ns;
    pt->base_index = base.index;
    if (rc == 0)
        rc = replay_logs(st, o, &c, buf, &r, &hole, errmsg);
    pt->index = r.next - 1;
    pt->hlc_ns = r.last_hlc;
    pt->entries = r.applied;
    /* complete only if an entry past the moment was seen, or up to the last
     * entry replayed (a later one has a later time), or to when the head
     * said nothing after it was committed, if the replay reached its last:
     * a head is written only while the log is quiet, so under steady writes
     * it is old and the last entry is newer */
    pt->newest_ns = r.last_hlc;
    if (c.has_head && c.head.last <= pt->index && c.head.as_of_ns > pt->newest_ns)
        pt->newest_ns = c.head.as_of_ns;
    if (rc == 0 && hole != 0)
        rc = ar_errorf(errmsg, -ERANGE, "no archived state covers the moment: entries %" PRIu64
                  "..%" PRIu64 " are missing (lost by the leaders' archive tails and Raft logs)",
                  r.next, hole - 1);
    if (rc == 0 && !r.is_past && pt->newest_ns < o->at_ns && o->at_ns != UINT64_MAX)
        rc = ar_errorf(errmsg, -EAGAIN, "the archive reaches only to %s (entry %" PRIu64 "); the "
                  "leader archives every few seconds", ar_format_time(pt->newest_ns, t, sizeof(t)),
                  pt->index);
    if (rc == 0) {
        *out = r.shard;
        r.shard = NULL;
    }
    *is_raced = rc == -ENOENT; /* the listing named it (an empty archive returned above) */
    if (r.shard != NULL)
        meta_shard_free(r.shard);
    ar_free(r.cmd);
    ar_free(buf);
    catalog_free(&c);
    return rc;
}

int meta_archive_rebuild(struct obj_store *st, const struct meta_rebuild_options *o,
                         struct meta_shard **out, struct meta_restore_point *pt, char *errmsg)
{
    int rc = -ENOENT;
    bool is_raced = true;

    for (int tries = 0; tries < 3 && rc != 0 && is_raced; tries++) {
        is_raced = false;
        rc = rebuild_once(st, o, out, pt, &is_raced, errmsg);
    }
    return rc;
}

/* ---- pins ------------------------------------------------------------------------------ */

static uint64_t wall_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int meta_archive_pin(struct obj_store *st, uint32_t shard, uint64_t at_ns, char *key,
                     char *errmsg)
{
    static uint32_t made_count;
    uint32_t nonce = (uint32_t)getpid() << 12 ^ __atomic_add_fetch(&made_count, 1,
                                                                    __ATOMIC_RELAXED);

    snprintf(key, META_PIN_KEY_MAX, "pitr/s%u/pin/%016" PRIx64 "-%016" PRIx64 "-%08" PRIx32,
             shard, at_ns, wall_now_ns(), nonce);
    return obj_put(st, key, "", 0, errmsg);
}

int meta_archive_unpin(struct obj_store *st, const char *key, char *errmsg)
{
    return obj_delete(st, key, errmsg);
}

int meta_archive_head_as_of(struct obj_store *st, uint32_t shard, uint64_t *as_of_ns,
                            char *errmsg)
{
    char key[ARCHIVE_KEY_MAX];
    uint8_t buf[ARCHIVE_HEAD_BYTES];
    size_t got = 0;
    struct archive_head h;

    archive_key_head(key, shard);
    int rc = obj_get(st, key, buf, sizeof(buf), &got, errmsg);
    if (rc == 0 && (archive_head_get(buf, got, &h) != 0 || h.shard != shard))
        rc = ar_errorf(errmsg, -AR_ECORRUPT, "%s does not hold a head of shard %u", key, shard);
    *as_of_ns = rc == 0 ? h.as_of_ns : 0;
    return rc;
}

int archive_pins_oldest(struct obj_store *st, uint32_t shard, uint64_t now_ns, uint64_t *oldest,
                        char *errmsg)
{
    struct obj_list_page page = {.entry_cap = OBJ_LIST_PAGE_MAX};
    char start[OBJ_KEY_BYTES_MAX + 1] = "";
    char prefix[ARCHIVE_KEY_MAX];
    uint64_t ttl_ns = (uint64_t)META_PIN_TTL_S * 1000000000ull;
    int rc = 0;

    *oldest = UINT64_MAX;
    page.entries = ar_calloc(OBJ_LIST_PAGE_MAX, sizeof(*page.entries));
    if (page.entries == NULL)
        return -ENOMEM;
    archive_prefix(prefix, shard, "pin");
    /* bounded: a listing pages by key, and removing what it returned does not disturb it */
    do {
        rc = obj_list(st, prefix, start, &page, errmsg);
        for (unsigned i = 0; rc == 0 && i < page.entry_count; i++) {
            const char *p = after_prefix(page.entries[i].key, "pin");
            uint64_t at;
            uint64_t made;
            if (p == NULL || strlen(p) < 33 || p[16] != '-' || !parse_hex16(p, &at) ||
                !parse_hex16(p + 17, &made))
                continue; /* not a pin */
            if (made + ttl_ns < now_ns)
                rc = obj_delete(st, page.entries[i].key, errmsg); /* its restore died */
            else if (at < *oldest)
                *oldest = at;
        }
        snprintf(start, sizeof(start), "%s", page.last_key);
    } while (rc == 0 && page.is_truncated);
    ar_free(page.entries);
    return rc;
}

/* ---- expiry ------------------------------------------------------------------------------- */

/* The 16 hex digits of a checkpoint key's index ("pitr/s1/ckpt/<index>/..."). */
static bool parse_ckpt_index(const char *key, uint64_t *index)
{
    const char *p = after_prefix(key, "ckpt");

    return p != NULL && strlen(p) > 17 && p[16] == '/' && parse_hex16(p, index);
}

uint64_t archive_expiry_cutoff_ns(uint64_t now_ns, uint32_t window_s)
{
    const uint64_t skew_max_ns = 300ull * 1000000000ull;
    uint64_t window_ns = (uint64_t)window_s * 1000000000ull;
    uint64_t skew_ns = window_ns / 64 < skew_max_ns ? window_ns / 64 : skew_max_ns;

    return now_ns > window_ns + skew_ns ? now_ns - window_ns - skew_ns : 0;
}

int archive_expire(struct obj_store *st, uint32_t shard, uint64_t cutoff_ns, uint32_t *removed,
                   char *errmsg)
{
    struct catalog c;
    uint64_t keep = 0;
    char prefix[ARCHIVE_KEY_MAX];

    *removed = 0;
    /* a restore running keeps what its moment needs, if older */
    uint64_t pinned;
    int rc = archive_pins_oldest(st, shard, wall_now_ns(), &pinned, errmsg);
    if (rc != 0)
        return rc;
    if (pinned < cutoff_ns)
        cutoff_ns = pinned;
    rc = catalog_read(st, shard, &c, errmsg);
    /* the base of the window's first moment: the newest checkpoint at or before it */
    for (uint32_t i = c.ckpt_count; rc == 0 && keep == 0 && i-- > 0;) {
        struct archive_manifest m;
        rc = manifest_read(st, shard, c.ckpts[i], &m, errmsg);
        if (rc == 0 && m.hlc_ns <= cutoff_ns)
            keep = m.index;
    }
    if (rc != 0 || keep == 0) {
        catalog_free(&c);
        return rc;
    }
    struct obj_list_page page = {.entry_cap = OBJ_LIST_PAGE_MAX};
    char start[OBJ_KEY_BYTES_MAX + 1] = "";
    page.entries = ar_calloc(OBJ_LIST_PAGE_MAX, sizeof(*page.entries));
    if (page.entries == NULL)
        rc = -ENOMEM;
    archive_prefix(prefix, shard, "ckpt");
    /* a listing pages by key, so removing what it returned does not disturb it;
     * a manifest sorts before its parts and goes first */
    while (rc == 0) {
        rc = obj_list(st, prefix, start, &page, errmsg);
        for (unsigned i = 0; rc == 0 && i < page.entry_count; i++) {
            uint64_t index;
            if (parse_ckpt_index(page.entries[i].key, &index) && index < keep) {
                rc = obj_delete(st, page.entries[i].key, errmsg);
                *removed += rc == 0;
            }
        }
        snprintf(start, sizeof(start), "%s", page.last_key);
        if (!page.is_truncated)
            break;
    }
    for (uint32_t i = 0; rc == 0 && i < c.log_count; i++) {
        char key[ARCHIVE_KEY_MAX];
        if (c.logs[i].last > keep)
            continue;
        archive_key_log(key, shard, c.logs[i].first, c.logs[i].last);
        rc = obj_delete(st, key, errmsg);
        *removed += rc == 0;
    }
    ar_free(page.entries);
    catalog_free(&c);
    return rc;
}
