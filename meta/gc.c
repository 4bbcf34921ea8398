/* meta/gc.c - block garbage collection that never breaks a restore
 * (design §7; meta.h "block garbage collection").
 *
 * 1. Replay the whole archived window from its oldest state: the slices
 *    that state's files name, and every slice a WRITE or RESTORE_FILES
 *    named since, are the ones a restore inside the window (or the live
 *    volume, which is the window's last state) may need. The oldest state's next slice id
 *    is the keep bound: ids from it up were taken inside the window. A
 *    hole in the log that a checkpoint bridged (entries no leader could
 *    archive) is crossed from that checkpoint, whose slices are kept: no
 *    restore reaches a moment inside the hole.
 * 2. The archive must reach within ARCHIVE_LAG_MAX_NS of now, so the live
 *    state is in it too (but for entries too new to matter: their slices
 *    were taken inside the window).
 * 3. List the blocks (keys s/<slice id>/<block>) and delete those of
 *    slices below the bound that nothing named.
 * Any failure before or during 3 stops the pass: it never deletes on a
 * partial view (JuiceFS lost live data to a listing error it ignored). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "meta.h"
#include "objstore.h"

#define ARCHIVE_LAG_MAX_NS (60ull * 1000000000ull)

struct named {
    uint64_t *ids;
    size_t count;
    size_t cap;
    bool is_oom;
    uint64_t keep_from;
};

static void add(void *ctx, uint64_t id)
{
    struct named *n = ctx;

    if (n->count == n->cap) {
        size_t cap = n->cap == 0 ? 4096 : n->cap * 2;
        uint64_t *v = ar_realloc(n->ids, cap * sizeof(*v));
        if (v == NULL) {
            n->is_oom = true;
            return;
        }
        n->ids = v;
        n->cap = cap;
    }
    n->ids[n->count++] = id;
}

static void on_base(void *ctx, const struct meta_shard *s)
{
    struct named *n = ctx;

    n->keep_from = meta_shard_slice_next(s);
    meta_shard_each_slice(s, add, n);
}

/* A checkpoint that bridged a hole in the archive's log: the slices it
 * names are kept. Those named only inside the hole are not: no restore can
 * reach a moment there. (The keep bound stays the oldest state's.) */
static void on_bridge(void *ctx, const struct meta_shard *s)
{
    meta_shard_each_slice(s, add, ctx);
}

static void on_command(void *ctx, const struct meta_shard *s, const struct meta_cmd *cmd,
                       uint64_t hlc_ns, bool is_before)
{
    (void)s;
    (void)hlc_ns;
    if (is_before)
        return;
    if (cmd->op == META_OP_WRITE && cmd->slice.id != 0)
        add(ctx, cmd->slice.id);
    for (uint32_t i = 0; cmd->op == META_OP_RESTORE_FILES && i < cmd->piece_count; i++) {
        add(ctx, cmd->pieces[i].slice.id);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* "s/<16 hex>/<decimal>": the slice id. */
static bool parse_block(const char *key, uint64_t *id)
{
    uint64_t v = 0;

    if (strncmp(key, "s/", 2) != 0 || strlen(key) < 20 || key[18] != '/')
        return false;
    for (int i = 2; i < 18; i++) {
        char c = key[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    for (const char *p = key + 19; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
    }
    *id = v;
    return true;
}

int meta_gc_run(struct obj_store *st, const struct meta_gc_options *o, struct meta_gc_report *rep,
                char *errmsg)
{
    struct named n = {0};
    struct meta_shard *end = NULL;
    struct meta_rebuild_options ro = {.shard = o->shard, .at_ns = UINT64_MAX,
                                      .is_from_oldest = true, .scratch_dir = o->scratch_dir,
                                      .watch = on_command, .on_base = on_base,
                                      .on_bridge = on_bridge, .ctx = &n};

    memset(rep, 0, sizeof(*rep));
    int rc = meta_archive_rebuild(st, &ro, &end, &rep->point, errmsg);
    if (rc == 0 && n.is_oom)
        rc = ar_errorf(errmsg, -ENOMEM, "out of memory listing the named slices");
    /* a restore of a moment older than the oldest state (the window's
     * expiry went past it before the restore's pin was seen) may still name
     * blocks that no state here names: gc waits for it */
    uint64_t pinned = UINT64_MAX;
    if (rc == 0)
        rc = archive_pins_oldest(st, o->shard, o->now_ns, &pinned, errmsg);
    if (rc == 0 && pinned < rep->point.oldest_ns) {
        char t[40];
        rc = ar_errorf(errmsg, -EAGAIN, "a restore of %s runs, older than the archive's "
                       "oldest state: gc waits for it", ar_format_time(pinned, t, sizeof(t)));
    }
    if (rc == 0 && rep->point.newest_ns + ARCHIVE_LAG_MAX_NS < o->now_ns)
        rc = ar_errorf(errmsg, -EAGAIN, "the archive lags %" PRIu64 " s behind now (is a leader "
                  "archiving?): gc stops", (uint64_t)((o->now_ns - rep->point.newest_ns) / 1000000000u));
    if (end != NULL) { /* named already by the commands; and a check of them */
        meta_shard_each_slice(end, add, &n);
        meta_shard_free(end);
    }
    if (n.count > 0) /* none named yet (an archive that ends before any write): ids is NULL */
        qsort(n.ids, n.count, sizeof(*n.ids), cmp_u64);
    size_t distinct = 0;
    for (size_t i = 0; i < n.count; i++) {
        if (distinct == 0 || n.ids[distinct - 1] != n.ids[i])
            n.ids[distinct++] = n.ids[i];
    }
    rep->named = distinct;
    rep->keep_from = n.keep_from;
    if (o->progress != NULL && rc == 0)
        o->progress(o->ctx, "named slices", distinct, distinct);

    struct obj_list_page page = {.entry_cap = OBJ_LIST_PAGE_MAX};
    char start[OBJ_KEY_BYTES_MAX + 1] = "";
    page.entries = rc == 0 ? ar_calloc(OBJ_LIST_PAGE_MAX, sizeof(*page.entries)) : NULL;
    if (rc == 0 && page.entries == NULL)
        rc = -ENOMEM;
    while (rc == 0) {
        rc = obj_list(st, "s/", start, &page, errmsg);
        for (unsigned i = 0; rc == 0 && i < page.entry_count; i++) {
            const struct obj_list_entry *e = &page.entries[i];
            uint64_t id;
            if (!parse_block(e->key, &id))
                continue; /* not a block */
            rep->blocks++;
            rep->bytes += e->size;
            if (id >= n.keep_from ||
                (distinct > 0 && bsearch(&id, n.ids, distinct, sizeof(id), cmp_u64) != NULL))
                continue;
            rep->garbage_blocks++;
            rep->garbage_bytes += e->size;
            if (o->is_dry_run)
                continue;
            rc = obj_delete(st, e->key, errmsg);
            if (rc == 0) {
                rep->deleted_blocks++;
                rep->deleted_bytes += e->size;
            }
        }
        if (o->progress != NULL)
            o->progress(o->ctx, "blocks", rep->blocks, 0);
        snprintf(start, sizeof(start), "%s", page.last_key);
        if (!page.is_truncated)
            break;
    }
    ar_free(page.entries);
    ar_free(n.ids);
    return rc;
}
