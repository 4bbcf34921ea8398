/* tests/raft/test_seglog.c - the segment log on a real disk: round trips,
 * sealing, truncation on conflict (also inside a sealed segment), a torn
 * tail cut off, a damaged middle refused (unless no sync covered it), snapshots, retention, a reset,
 * ranges read by another reader while the log stays open, and a seeded
 * fuzz: damage anywhere is refused or cut off, never read as other bytes.
 * Entries hold bytes derived from (index, term), so what is read back is
 * checked, not just counted. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../objstore/harness.h"
#include "core.h"

struct fixture {
    char dir[256];
    char log[300];
    struct raft_seglog_options opt;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    harness_tmpdir(f->dir);
    snprintf(f->log, sizeof(f->log), "%s/log", f->dir);
    raft_seglog_options_init(&f->opt);
    f->opt.segment_bytes = 4096; /* many segments from few entries */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    harness_rm_rf(f->dir);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------ */

static uint8_t data_byte(raft_index index, raft_term term, uint32_t k)
{
    return (uint8_t)(index * 31 + term * 7 + k);
}

static uint32_t data_size(raft_index index)
{
    return (uint32_t)(index * 37 % 300); /* 0..299 bytes, some empty */
}

/* Entries from..to of term, with hlc = index * 1000 + term. */
static struct raft_entry *make_entries(raft_index from, raft_index to, raft_term term)
{
    struct raft_entry *v = calloc(to - from + 1, sizeof(*v));

    assert_non_null(v);
    for (raft_index i = from; i <= to; i++) {
        struct raft_entry *e = &v[i - from];
        *e = (struct raft_entry){.index = i, .term = term, .hlc_ns = i * 1000 + term,
                                 .type = RAFT_ENTRY_NORMAL, .size = data_size(i)};
        e->data = e->size > 0 ? malloc(e->size) : NULL;
        for (uint32_t k = 0; k < e->size; k++) {
            e->data[k] = data_byte(i, term, k);
        }
    }
    return v;
}

static void free_entries(struct raft_entry *v, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        free(v[i].data);
    }
    free(v);
}

static void append(struct raft_seglog *l, raft_index from, raft_index to, raft_term term,
                   raft_index commit)
{
    struct raft_ready rd = {.has_hard_state = true,
                            .hard_state = {.term = term, .vote = 1, .commit = commit},
                            .entry_count = (uint32_t)(to - from + 1)};
    char errmsg[RAFT_ERRMSG_MAX] = "";

    rd.entries = make_entries(from, to, term);
    if (raft_seglog_append(l, &rd, errmsg) != 0 || raft_seglog_sync(l, errmsg) != 0)
        fail_msg("append: %s", errmsg);
    free_entries(rd.entries, rd.entry_count);
}

/* Entry i of boot has index first + i and the bytes of (index, term_of(index)). */
static void expect_entries(const struct raft_boot *b, raft_index first, raft_index last,
                           raft_term (*term_of)(raft_index))
{
    assert_int_equal(b->entry_count, last + 1 - first);
    for (raft_index i = first; i <= last; i++) {
        const struct raft_entry *e = &b->entries[i - first];
        raft_term t = term_of(i);
        assert_int_equal(e->index, i);
        assert_int_equal(e->term, t);
        assert_int_equal(e->hlc_ns, i * 1000 + t);
        assert_int_equal(e->size, data_size(i));
        for (uint32_t k = 0; k < e->size; k++) {
            assert_int_equal(e->data[k], data_byte(i, t, k));
        }
    }
}

static raft_term term_one(raft_index i)
{
    (void)i;
    return 1;
}

static raft_term term_split(raft_index i)
{
    return i < 40 ? 1 : 2;
}

static struct raft_seglog *reopen(struct fixture *f, struct raft_seglog *l, struct raft_boot *b)
{
    char errmsg[RAFT_ERRMSG_MAX] = "";

    raft_seglog_close(l);
    l = NULL;
    if (raft_seglog_open(f->log, &f->opt, &l, b, errmsg) != 0)
        fail_msg("reopen: %s", errmsg);
    return l;
}

static void find_file(const char *dir, const char *suffix, char *out, size_t cap);

/* A stop that loses everything in the open segment (the unsynced tail, as
 * a power cut may): close l, empty the open segment, open again. */
static struct raft_seglog *lose_open_segment(struct fixture *f, struct raft_seglog *l,
                                             struct raft_boot *b)
{
    char path[600];

    raft_seglog_close(l);
    find_file(f->log, ".open", path, sizeof(path));
    assert_int_equal(truncate(path, 0), 0);
    return reopen(f, NULL, b);
}

static unsigned count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    unsigned n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        n += len > strlen(suffix) && strcmp(de->d_name + len - strlen(suffix), suffix) == 0;
    }
    closedir(d);
    return n;
}

/* The path of the first file in dir with suffix. */
static void find_file(const char *dir, const char *suffix, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > strlen(suffix) && strcmp(de->d_name + len - strlen(suffix), suffix) == 0) {
            snprintf(out, cap, "%s/%s", dir, de->d_name);
            closedir(d);
            return;
        }
    }
    closedir(d);
    fail_msg("no %s file in %s", suffix, dir);
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    uint8_t b;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_seglog_round_trip_across_many_segments(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;

    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    assert_int_equal(b.entry_count, 0);
    for (raft_index i = 1; i <= 100; i += 10) {
        append(l, i, i + 9, 1, i - 1);
    }
    l = reopen(f, l, &b);
    expect_entries(&b, 1, 100, term_one);
    assert_int_equal(b.hard_state.term, 1);
    assert_int_equal(b.hard_state.vote, 1);
    assert_int_equal(b.hard_state.commit, 90);
    assert_true(count_files(f->log, ".seg") >= 3); /* sealed as they filled */
    assert_int_equal(count_files(f->log, ".open"), 1);
    /* and a node boots from it */
    struct raft_options o;
    struct raft_node *n = NULL;
    raft_options_init(&o, 1);
    b.config = (struct raft_config){.voter_count = 1, .voters = {1}};
    assert_int_equal(raft_node_new(&o, &b, &n), 0);
    assert_int_equal(raft_last_index(n), 100);
    raft_node_free(n);
    raft_seglog_close(l);
}

static void test_seglog_conflict_truncates_even_a_sealed_segment(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;

    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 60, 1, 10);
    /* a new leader's entries replace 40.. (sealed segments hold some) */
    append(l, 40, 45, 2, 10);
    l = reopen(f, l, &b);
    expect_entries(&b, 1, 45, term_split);
    /* again at the end of the open segment only */
    append(l, 46, 50, 2, 10);
    append(l, 48, 48, 2, 10);
    l = reopen(f, l, &b);
    expect_entries(&b, 1, 48, term_split);
    raft_seglog_close(l);
}

static void test_seglog_torn_tail_is_cut_and_the_rest_kept(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    char path[600];

    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 20, 1, 5);
    raft_seglog_close(l);
    /* half a record at the end, as a crash mid-write leaves */
    find_file(f->log, ".open", path, sizeof(path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    int fd = open(path, O_WRONLY | O_APPEND);
    uint8_t junk[20] = {200, 0, 0, 0, 1, 2, 3, 4, 2};
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    l = reopen(f, NULL, &b);
    expect_entries(&b, 1, 20, term_one);
    struct stat after;
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_size, st.st_size); /* the junk is gone */
    append(l, 21, 22, 1, 5);                      /* and appends go on */
    l = reopen(f, l, &b);
    expect_entries(&b, 1, 22, term_one);
    raft_seglog_close(l);
}

/* The open segment is written ahead with zeros (its syncs then change no
 * metadata); a crash leaves them: they read as nothing written, and go. */
static void test_seglog_prefill_left_by_a_crash_reads_as_nothing(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    char path[600];
    char copy[700];
    char cmd[1500];
    struct stat st;

    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 30, 1, 5);
    find_file(f->log, ".open", path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size >= 1 << 20); /* zeros ahead of the records */
    /* a crash: the files as they are, without a close */
    snprintf(copy, sizeof(copy), "%s/crashed", f->dir);
    snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", f->log, copy);
    assert_int_equal(system(cmd), 0);
    raft_seglog_close(l);
    struct stat closed;
    assert_int_equal(stat(path, &closed), 0);
    assert_true(closed.st_size < st.st_size); /* a clean close trims them */
    l = NULL;
    assert_int_equal(raft_seglog_open(copy, &f->opt, &l, &b, NULL), 0);
    expect_entries(&b, 1, 30, term_one);
    append(l, 31, 35, 1, 5);
    raft_seglog_close(l);
    l = NULL;
    assert_int_equal(raft_seglog_open(copy, &f->opt, &l, &b, NULL), 0);
    expect_entries(&b, 1, 35, term_one);
    raft_seglog_close(l);
}

static void test_seglog_damaged_middle_is_refused_with_its_place(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    char path[600];
    char errmsg[RAFT_ERRMSG_MAX] = "";

    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 100, 1, 5);
    raft_seglog_close(l);
    l = NULL;
    /* a sealed segment */
    find_file(f->log, ".seg", path, sizeof(path));
    flip_byte(path, 100);
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, errmsg), -RAFT_ECORRUPT);
    assert_non_null(strstr(errmsg, ".seg is damaged at byte"));
    flip_byte(path, 100);
    /* the open segment's first record, with good ones after it: not a torn tail */
    find_file(f->log, ".open", path, sizeof(path));
    flip_byte(path, 40);
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, errmsg), -RAFT_ECORRUPT);
    assert_non_null(strstr(errmsg, ".open is damaged"));
    flip_byte(path, 40);
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, errmsg), 0);
    expect_entries(&b, 1, 100, term_one);
    raft_seglog_close(l);
}

/* Write-back takes pages in any order: a power cut during a write never
 * synced may keep a later page of it and not an earlier one. That is a
 * torn write, cut like a torn tail; what a sync covered stays. */
static void test_seglog_unsynced_write_torn_out_of_order_is_cut(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    char path[600];
    char errmsg[RAFT_ERRMSG_MAX] = "";
    struct stat synced;
    struct stat written;

    f->opt.segment_bytes = 1u << 20; /* both writes in one segment */
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 10, 1, 5);
    raft_seglog_close(l);
    find_file(f->log, ".open", path, sizeof(path));
    assert_int_equal(stat(path, &synced), 0);
    l = reopen(f, NULL, &b);
    struct raft_ready rd = {.has_hard_state = true, .hard_state = {.term = 1, .vote = 1,
                                                                   .commit = 5},
                            .entry_count = 70, .entries = make_entries(11, 80, 1)};
    assert_int_equal(raft_seglog_append(l, &rd, errmsg), 0); /* and no sync */
    free_entries(rd.entries, rd.entry_count);
    raft_seglog_close(l);
    assert_int_equal(stat(path, &written), 0);
    assert_true(written.st_size > synced.st_size + 8192);
    /* a page in the middle of the unsynced write never reached the disk */
    off_t hole = (synced.st_size + written.st_size) / 2 & ~(off_t)7;
    int fd = open(path, O_WRONLY);
    uint8_t zeros[512] = {0};
    assert_int_equal(pwrite(fd, zeros, sizeof(zeros), hole), (ssize_t)sizeof(zeros));
    close(fd);
    l = NULL;
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, errmsg), 0);
    assert_true(b.entry_count >= 10 && b.entry_count < 80);
    expect_entries(&b, 1, b.entry_count, term_one);
    raft_index last = b.entry_count;
    append(l, last + 1, last + 5, 1, 5); /* appends go on after the cut */
    l = reopen(f, l, &b);
    expect_entries(&b, 1, last + 5, term_one);
    raft_seglog_close(l);
}

static void test_seglog_snapshot_retention_and_reset(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    struct raft_config c = {.voter_count = 3, .voters = {1, 2, 3}};

    f->opt.retain_ns = 1000000; /* the hlc of index i is i * 1000 + term */
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 100, 1, 100);
    unsigned sealed = count_files(f->log, ".seg");
    /* a snapshot at 80: nothing is old enough to go at time 0 */
    assert_int_equal(raft_seglog_snapshot(l, 80, 1, 80001, &c, false, 0, NULL), 0);
    assert_int_equal(count_files(f->log, ".seg"), sealed);
    l = reopen(f, l, &b);
    assert_int_equal(b.snapshot_index, 80);
    assert_int_equal(b.snapshot_hlc_ns, 80001);
    assert_int_equal(b.config.voter_count, 3);
    expect_entries(&b, 81, 100, term_one);
    /* later, the segments wholly below 80 whose entries are older than the
     * window go; the one holding 80 stays */
    assert_int_equal(raft_seglog_snapshot(l, 80, 1, 80001, &c, false, 1050000, NULL), 0);
    unsigned left = count_files(f->log, ".seg");
    assert_true(left < sealed && left > 0);
    l = reopen(f, l, &b);
    expect_entries(&b, 81, 100, term_one);
    assert_int_equal(b.hard_state.commit, 100);
    /* a snapshot from the leader replaces everything */
    assert_int_equal(raft_seglog_snapshot(l, 500, 3, 900000, &c, true, 1050000, NULL), 0);
    l = reopen(f, l, &b);
    assert_int_equal(b.snapshot_index, 500);
    assert_int_equal(b.entry_count, 0);
    assert_int_equal(count_files(f->log, ".seg"), 0);
    append(l, 501, 502, 3, 500);
    l = reopen(f, l, &b);
    assert_int_equal(b.entry_count, 2);
    assert_int_equal(b.entries[0].index, 501);
    raft_seglog_close(l);
}

static void test_seglog_foreign_files_and_gaps(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    char path[700];
    char errmsg[RAFT_ERRMSG_MAX] = "";

    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 100, 1, 5);
    raft_seglog_close(l);
    l = NULL;
    snprintf(path, sizeof(path), "%s/notes.txt", f->log); /* ignored */
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, errmsg), 0);
    raft_seglog_close(l);
    l = NULL;
    find_file(f->log, ".seg", path, sizeof(path)); /* a sealed segment vanishes */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, errmsg), -RAFT_ECORRUPT);
    assert_non_null(strstr(errmsg, "missing"));
}

/* A truncation can remove the records that held the newest hard state;
 * the vote, once synced, lives on in the vote file. Here the replacement
 * records never reach the disk (the open segment is emptied, as a power cut
 * before the next sync would leave it). */
static void test_seglog_truncation_never_forgets_a_synced_vote(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    char errmsg[RAFT_ERRMSG_MAX] = "";

    f->opt.segment_bytes = 1 << 20;
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 5, 1, 0); /* term 1, vote 1, in the open segment */
    struct raft_entry *e = make_entries(1, 2, 2);
    struct raft_ready rd = {.entry_count = 2, .entries = e};
    assert_int_equal(raft_seglog_append(l, &rd, errmsg), 0); /* replaces 1..: no sync */
    free_entries(e, 2);
    l = lose_open_segment(f, l, &b);
    assert_int_equal(b.hard_state.term, 1);
    assert_int_equal(b.hard_state.vote, 1);
    raft_seglog_close(l);
}

/* A new term's entries that roll into new segments (each seal syncs),
 * then a stop that loses the open segment: the term is on disk with them,
 * so the node boots (entries newer than the stored term are refused). */
static void test_seglog_new_terms_entries_never_outrun_its_record(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    char errmsg[RAFT_ERRMSG_MAX] = "";

    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 10, 1, 0);
    struct raft_ready rd = {.has_hard_state = true, .hard_state = {.term = 2, .vote = 0},
                            .entry_count = 50, .entries = make_entries(11, 60, 2)};
    assert_int_equal(raft_seglog_append(l, &rd, errmsg), 0); /* seals, but no sync at the end */
    free_entries(rd.entries, rd.entry_count);
    assert_true(count_files(f->log, ".seg") > 1);
    l = lose_open_segment(f, l, &b);
    assert_true(b.entry_count > 10);
    assert_int_equal(b.entries[b.entry_count - 1].term, 2);
    assert_int_equal(b.hard_state.term, 2);
    raft_seglog_close(l);
}

/* The vote file is made current at open: a vote only the log held (the
 * stop came before the vote file's write) survives a truncation that cuts
 * its record, and a second stop before the next sync. */
static void test_seglog_vote_survives_a_restart_and_a_truncation(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    char cmd[1400];
    char errmsg[RAFT_ERRMSG_MAX] = "";

    f->opt.segment_bytes = 1 << 20;
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 5, 1, 0); /* term 1, vote 1: the vote file says so */
    snprintf(cmd, sizeof(cmd), "cp '%s/vote' '%s/vote.bak'", f->log, f->dir);
    assert_int_equal(system(cmd), 0);
    struct raft_ready rd = {.has_hard_state = true, .hard_state = {.term = 2, .vote = 3},
                            .entry_count = 3, .entries = make_entries(6, 8, 2)};
    assert_int_equal(raft_seglog_append(l, &rd, errmsg), 0);
    assert_int_equal(raft_seglog_sync(l, errmsg), 0);
    free_entries(rd.entries, rd.entry_count);
    raft_seglog_close(l);
    snprintf(cmd, sizeof(cmd), "cp '%s/vote.bak' '%s/vote'", f->dir, f->log);
    assert_int_equal(system(cmd), 0); /* as if stopped before the vote file's write */
    l = reopen(f, NULL, &b);
    assert_int_equal(b.hard_state.term, 2);
    assert_int_equal(b.hard_state.vote, 3);
    /* a leader's entries conflict from 3: the truncation cuts the record */
    rd = (struct raft_ready){.entry_count = 2, .entries = make_entries(3, 4, 2)};
    assert_int_equal(raft_seglog_append(l, &rd, errmsg), 0); /* no sync */
    free_entries(rd.entries, rd.entry_count);
    l = lose_open_segment(f, l, &b);
    assert_int_equal(b.hard_state.term, 2);
    assert_int_equal(b.hard_state.vote, 3);
    raft_seglog_close(l);
}

/* A compaction that the install of a received snapshot overtook (the
 * host queued it before) never moves the log's snapshot back: the log
 * would then lack the entries between, and the node would not start. */
static void test_seglog_snapshot_never_moves_back(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    struct raft_config c = {.voter_count = 3, .voters = {1, 2, 3}};

    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 60, 1, 10);
    assert_int_equal(raft_seglog_snapshot(l, 500, 3, 900000, &c, true, 0, NULL), 0);
    assert_int_equal(raft_seglog_snapshot(l, 40, 1, 40001, &c, false, 0, NULL), 0);
    l = reopen(f, l, &b);
    assert_int_equal(b.snapshot_index, 500);
    assert_int_equal(b.snapshot_term, 3);
    assert_int_equal(b.entry_count, 0);
    raft_seglog_close(l);
}

/* A received snapshot replaces the log: a crash after its file was
 * written but before the old segments went leaves them behind; recovery
 * finishes the job, and the vote survives. */
static void test_seglog_interrupted_reset_is_finished_on_open(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    struct raft_config c = {.voter_count = 3, .voters = {1, 2, 3}};
    char path[600];
    char saved[700];
    char cmd[1500];

    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 60, 1, 10);
    find_file(f->log, ".seg", path, sizeof(path));
    snprintf(saved, sizeof(saved), "%s/kept.bak", f->dir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", path, saved);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(raft_seglog_snapshot(l, 500, 3, 900000, &c, true, 0, NULL), 0);
    raft_seglog_close(l);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", saved, path); /* as if never removed */
    assert_int_equal(system(cmd), 0);
    l = reopen(f, NULL, &b);
    assert_int_equal(b.snapshot_index, 500);
    assert_int_equal(b.entry_count, 0);
    assert_int_equal(b.hard_state.term, 1);
    assert_int_equal(count_files(f->log, ".seg"), 0); /* the old one is gone again */
    append(l, 501, 503, 3, 500);
    l = reopen(f, l, &b);
    assert_int_equal(b.entry_count, 3);
    assert_int_equal(b.hard_state.term, 3);
    raft_seglog_close(l);
}

/* What raft_seglog_read gave: indexes in order, bytes checked as they came. */
struct got {
    raft_index first;
    raft_index last;
    uint32_t count;
    raft_index stop_at; /* each answers 7 at this index (0: never) */
};

static int take(void *ctx, const struct raft_entry *e)
{
    struct got *g = ctx;

    if (e->index == g->stop_at)
        return 7;
    if (g->count == 0)
        g->first = e->index;
    else
        assert_int_equal(e->index, g->last + 1);
    assert_int_equal(e->hlc_ns, e->index * 1000 + e->term);
    assert_int_equal(e->size, data_size(e->index));
    for (uint32_t k = 0; k < e->size; k++) {
        assert_int_equal(e->data[k], data_byte(e->index, e->term, k));
    }
    g->last = e->index;
    g->count++;
    return 0;
}

static struct got read_range(struct fixture *f, raft_index from, raft_index to, int want_rc)
{
    struct got g = {0};
    char errmsg[RAFT_ERRMSG_MAX] = "";

    int rc = raft_seglog_read(f->log, from, to, take, &g, errmsg);
    if (rc != want_rc)
        fail_msg("read %" PRIu64 "..%" PRIu64 ": %d (%s)", from, to, rc, errmsg);
    return g;
}

/* Another thread reads ranges of a log its node keeps open and appending:
 * across sealed segments and into the open one, up to where the log ends
 * or the caller stops; never past a gap (compacted away), and never from a
 * damaged sealed segment. */
static void test_seglog_read_gives_ranges_beside_the_writer(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    struct raft_config c = {.voter_count = 1, .voters = {1}};
    char path[600];
    char errmsg[RAFT_ERRMSG_MAX] = "";

    f->opt.retain_ns = 1000000;
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 100, 1, 100);
    assert_true(count_files(f->log, ".seg") >= 3);
    struct got g = read_range(f, 5, 95, 0);
    assert_int_equal(g.first, 5);
    assert_int_equal(g.last, 95);
    g = read_range(f, 90, 1000, 0); /* the open segment, to its end */
    assert_int_equal(g.first, 90);
    assert_int_equal(g.last, 100);
    g = (struct got){.stop_at = 50};
    assert_int_equal(raft_seglog_read(f->log, 20, 80, take, &g, NULL), 7);
    assert_int_equal(g.first, 20);
    assert_int_equal(g.last, 49);
    /* the writer goes on, then drops segments below a snapshot */
    append(l, 101, 140, 1, 140);
    g = read_range(f, 99, 140, 0);
    assert_int_equal(g.count, 42);
    assert_int_equal(raft_seglog_snapshot(l, 120, 1, 120001, &c, false, 1050000, NULL), 0);
    g = read_range(f, 1, 140, 0);
    assert_int_equal(g.count, 0); /* 1 is gone: nothing after it either */
    /* the oldest entry kept: the segment holding 120 stays */
    raft_index first = 120;
    for (uint32_t i = 0; i < 200 && read_range(f, first - 1, first - 1, 0).count == 1; i++) {
        first--;
    }
    assert_true(first > 1);
    g = read_range(f, first, 140, 0);
    assert_int_equal(g.count, 141 - first);
    /* a damaged sealed segment is named, not skipped */
    find_file(f->log, ".seg", path, sizeof(path));
    flip_byte(path, 100);
    assert_int_equal(raft_seglog_read(f->log, first, 140, take, &(struct got){0}, errmsg),
                     -RAFT_ECORRUPT);
    assert_non_null(strstr(errmsg, ".seg is damaged at byte"));
    assert_int_equal(raft_seglog_read("/nonexistent-log", 1, 2, take, &(struct got){0}, errmsg),
                     -ENOENT);
    raft_seglog_close(l);
}

/* ---- fuzz ------------------------------------------------------------------------------- */

#define FUZZ_ROUNDS 2000u
#define FUZZ_FILES  64u

struct file_copy {
    char name[128];
    uint8_t *data;
    size_t size;
};

/* Every file of dir into memory; their count. */
static unsigned copy_dir(const char *dir, struct file_copy *out)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    unsigned n = 0;
    char path[600];

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        assert_true(n < FUZZ_FILES);
        snprintf(out[n].name, sizeof(out[n].name), "%s", de->d_name);
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        out[n].size = (size_t)st.st_size;
        out[n].data = malloc(out[n].size + 1);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, out[n].data, out[n].size), (ssize_t)out[n].size);
        close(fd);
        n++;
    }
    closedir(d);
    return n;
}

/* dir holds exactly the copies again, file k changed by the mutator. */
static void put_dir(const char *dir, const struct file_copy *fc, unsigned n, unsigned k,
                    uint64_t *rng)
{
    char path[600];
    DIR *d = opendir(dir);
    struct dirent *de;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) { /* what the last round's open left or made */
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (de->d_name[0] != '.')
            assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    for (unsigned i = 0; i < n; i++) {
        uint8_t *p = malloc(fc[i].size + 1);
        size_t size = fc[i].size;
        memcpy(p, fc[i].data, size);
        if (i == k && size > 0) {
            *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
            unsigned how = (unsigned)(*rng >> 60) % 4;
            unsigned count = 1 + (unsigned)(*rng >> 40) % 4;
            for (unsigned j = 0; j < count && size > 0; j++) {
                *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
                size_t at = (size_t)(*rng >> 33) % size;
                if (how == 0)
                    p[at] ^= (uint8_t)(1u << ((*rng >> 20) % 8)); /* a bit */
                else if (how == 1)
                    p[at] = (uint8_t)(*rng >> 24);                /* a byte */
                else if (how == 2)
                    size = at;                                    /* cut short */
                else
                    memset(p + at, 0, size - at < 64 ? size - at : 64); /* zeros */
            }
        }
        snprintf(path, sizeof(path), "%s/%s", dir, fc[i].name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, p, size), (ssize_t)size);
        close(fd);
        free(p);
    }
}

/* Damage anywhere in a log's files: recovery and a reader either refuse it
 * as corrupt or give entries whose bytes are the ones written, in order
 * (a torn tail cut off); never a crash, never wrong bytes. */
static void test_seglog_fuzz_damage_is_refused_or_cut(void **state)
{
    struct fixture *f = *state;
    struct raft_seglog *l = NULL;
    struct raft_boot b;
    struct file_copy fc[FUZZ_FILES];
    uint64_t rng = 0x5eed;
    unsigned refused = 0;
    unsigned cut = 0;

    struct raft_config c = {.voter_count = 3, .voters = {1, 2, 3}};
    assert_int_equal(raft_seglog_open(f->log, &f->opt, &l, &b, NULL), 0);
    append(l, 1, 100, 1, 100);
    assert_int_equal(raft_seglog_snapshot(l, 50, 1, 50001, &c, false, 0, NULL), 0);
    raft_seglog_close(l);
    unsigned n = copy_dir(f->log, fc);
    assert_true(n >= 4);
    for (unsigned round = 0; round < FUZZ_ROUNDS; round++) {
        unsigned k = round % n;
        uint64_t seed = rng;
        put_dir(f->log, fc, n, k, &rng);
        l = NULL;
        int rc = raft_seglog_open(f->log, &f->opt, &l, &b, NULL);
        if (rc == 0) {
            for (uint32_t i = 0; i < b.entry_count; i++) {
                const struct raft_entry *e = &b.entries[i];
                assert_int_equal(e->index, b.entries[0].index + i);
                assert_int_equal(e->hlc_ns, e->index * 1000 + 1);
                assert_int_equal(e->size, data_size(e->index));
                for (uint32_t j = 0; j < e->size; j++) {
                    assert_int_equal(e->data[j], data_byte(e->index, 1, j));
                }
            }
            cut += b.entry_count < 50; /* the snapshot is at 50 */
            raft_seglog_close(l);
        } else if (rc != -RAFT_ECORRUPT) {
            fail_msg("round %u (file %s, seed %llx): open gave %d", round, fc[k].name,
                     (unsigned long long)seed, rc);
        } else {
            refused++;
        }
        rng = seed;
        put_dir(f->log, fc, n, k, &rng); /* the same damage, for a reader */
        struct got g = {0};
        rc = raft_seglog_read(f->log, 1, 100, take, &g, NULL);
        if (rc != 0 && rc != -RAFT_ECORRUPT)
            fail_msg("round %u (file %s): read gave %d", round, fc[k].name, rc);
    }
    print_message("%u rounds: %u refused as corrupt, %u cut short\n", FUZZ_ROUNDS, refused, cut);
    assert_true(refused > 0 && cut > 0); /* the damage reached both paths */
    for (unsigned i = 0; i < n; i++) {
        free(fc[i].data);
    }
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_seglog_round_trip_across_many_segments),
        T(test_seglog_conflict_truncates_even_a_sealed_segment),
        T(test_seglog_torn_tail_is_cut_and_the_rest_kept),
        T(test_seglog_prefill_left_by_a_crash_reads_as_nothing),
        T(test_seglog_damaged_middle_is_refused_with_its_place),
        T(test_seglog_unsynced_write_torn_out_of_order_is_cut),
        T(test_seglog_snapshot_retention_and_reset),
        T(test_seglog_foreign_files_and_gaps),
        T(test_seglog_truncation_never_forgets_a_synced_vote),
        T(test_seglog_new_terms_entries_never_outrun_its_record),
        T(test_seglog_vote_survives_a_restart_and_a_truncation),
        T(test_seglog_interrupted_reset_is_finished_on_open),
        T(test_seglog_snapshot_never_moves_back),
        T(test_seglog_read_gives_ranges_beside_the_writer),
        T(test_seglog_fuzz_damage_is_refused_or_cut),
    };
#undef T
    return cmocka_run_group_tests_name("test_seglog", tests, NULL, NULL);
}
