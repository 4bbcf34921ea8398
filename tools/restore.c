/* tools/restore.c - arbor restore: put a path of the volume back as it was
 * at a moment (client/restore.c), or list the moments it changed. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "cmd.h"
#include "meta.h"
#include "objstore.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: arbor restore PATH --at TIME [--into NEWPATH | --replace] [options]\n"
            "       arbor restore --list PATH [options]\n\n"
            "Put PATH (a path in the volume, such as /datasets/cams) back as it was at\n"
            "TIME, from the point-in-time archive the metadata leaders keep in the\n"
            "volume's store. The restored tree is new files that share the old blocks\n"
            "(nothing is copied); it is built under a hidden name and appears whole.\n\n"
            "  --at TIME        RFC 3339 (2026-11-30T10:42:13Z, 2026-11-30T11:42:13+01:00)\n"
            "                   or relative to now: -15m, -90s, -2h, -1d\n"
            "  --into NEWPATH   where to put it (default PATH.restored-<TIME as UTC>);\n"
            "                   the live PATH is not touched\n"
            "  --replace        put it at PATH itself, in one atomic exchange; the live\n"
            "                   tree stays beside it as PATH.replaced-<TIME>\n"
            "  --list           print the moments of the recovery window at which PATH\n"
            "                   or anything under it changed, to help pick TIME\n"
            "  --threads N      commands in flight (default 8)\n"
            "  --priority P     low (default): the threads that write into the volume\n"
            "                   run at nice 19, so that a server or a training job on\n"
            "                   this machine comes first; normal: at this command's own\n"
            "  --wait S         wait this long for the archive to reach TIME (with --list:\n"
            "                   now) (default 15)\n"
            "  --meta ADDR,...  the cluster (default: the local one arbor up runs)\n"
            "  --store URL      read the archive from this store (default: the volume's)\n"
            "  --skip-room-check  write even if the replicas seem short of memory or disk\n\n"
            "The recovery window (arbor window; 7 days unless arbor format --window\n"
            "said otherwise) bounds how far back TIME may go. An interrupted restore\n"
            "leaves only its hidden tree; the same command again removes it and\n"
            "starts over. Every restored file's size and mode is read back before\n"
            "the tree takes its name. Before anything is written, each replica is\n"
            "asked for its room: a restore that would not fit in its memory, or in\n"
            "its disk above the servers' reserve, is refused. A restore is\n"
            "background work: while other clients use the cluster, its leader takes\n"
            "one batch at a time and pauses between them, so it runs slower beside a\n"
            "busy workload and at full speed on a quiet cluster.\n");
}

/* "s" after a count other than one: "1 file", "2 files" */
static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

static uint64_t wall_now_ns(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* TIME into ns since the epoch; false if malformed. */
static bool parse_time(const char *s, uint64_t *out)
{
    uint64_t now_ns = wall_now_ns();

    if (s[0] == '-') {
        char *end;
        double v = strtod(s + 1, &end);
        double unit = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600
                      : *end == 'd' ? 86400 : 0;
        /* !(v >= 0) also refuses NaN ("-nanm"), whose cast is undefined */
        if (end == s + 1 || unit == 0 || end[1] != '\0' || !(v >= 0) ||
            v * unit > 400.0 * 86400)
            return false;
        *out = now_ns - (uint64_t)(v * unit * 1e9);
        return true;
    }
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 && 
        sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6)
        return false;
    const char *p = s + n;
    uint64_t frac = 0;
    if (*p == '.') {
        uint64_t scale = 100000000;
        for (p++; *p >= '0' && *p <= '9'; p++) {
            frac += (uint64_t)(*p - '0') * scale;
            scale /= 10;
        }
    }
    long offset_s = 0;
    if ((p[0] == '+' || p[0] == '-') && strlen(p) == 6 && p[3] == ':') {
        int hh = 0;
        int mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59)
            return false;
        offset_s = (p[0] == '+' ? 1 : -1) * (hh * 3600L + mm * 60L);
    } else if (!((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0')) {
        return false; /* RFC 3339 always says its offset */
    }
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970)
        return false;
    if (tm.tm_sec == 60) { /* a leap second: the clock never shows it, take its eve */
        tm.tm_sec = 59;
        frac = 999999999;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int mday = tm.tm_mday;
    int mon = tm.tm_mon;
    time_t t = timegm(&tm) - offset_s;
    /* timegm moves a day past its month's end (2026-02-31) into the next:
     * a date that does not exist is refused, not taken as another */
    if (t < 0 || tm.tm_mon != mon || tm.tm_mday != mday)
        return false;
    *out = (uint64_t)t * 1000000000ull + frac;
    return true;
}

static void print_progress(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "arbor restore: %s\n", line);
}

/* ---- --list ---------------------------------------------------------------------------- */

struct watch {
    const char *path;
    uint64_t root;        /* PATH's inode now (0: absent) */
    uint64_t *set;        /* inodes under it: open addressing, 0 empty (inode
                           * numbers are never reused, so removed ones may stay) */
    size_t set_count;
    size_t set_cap;       /* a power of two */
    uint64_t second;      /* the second of the changes being counted */
    uint64_t changes;
    uint64_t total;
    uint64_t moments;
    bool is_started;
    bool is_oom;
};

static uint64_t resolve(const struct meta_shard *s, const char *path)
{
    uint64_t at = 1;

    for (const char *p = path; *p != '\0';) {
        while (*p == '/') {
            p++;
        }
        size_t n = strcspn(p, "/");
        if (n == 0)
            break;
        struct meta_cmd cmd = {.op = META_OP_LOOKUP, .ino = at, .name = p, .name_len = (uint32_t)n};
        struct meta_reply rep = {0};
        if (n > 255 || meta_shard_read(s, &cmd, &rep) != 0)
            return 0;
        at = rep.attr.ino;
        p += n;
    }
    return at;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    return x ^ (x >> 33);
}

static void set_push(struct watch *w, uint64_t ino)
{
    if ((w->set_count + 1) * 2 > w->set_cap) {
        size_t cap = w->set_cap == 0 ? 1024 : w->set_cap * 2;
        uint64_t *v = calloc(cap, sizeof(*v));
        if (v == NULL) {
            w->is_oom = true;
            return;
        }
        uint64_t *old = w->set;
        size_t old_cap = w->set_cap;
        w->set = v;
        w->set_cap = cap;
        w->set_count = 0;
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i] != 0)
                set_push(w, old[i]);
        }
        free(old);
    }
    size_t i = mix(ino) & (w->set_cap - 1);
    while (w->set[i] != 0 && w->set[i] != ino) {
        i = (i + 1) & (w->set_cap - 1);
    }
    w->set_count += w->set[i] == 0;
    w->set[i] = ino;
}

static bool in_set(const struct watch *w, uint64_t ino)
{
    if (ino == 0 || w->set_cap == 0)
        return false;
    size_t i = mix(ino) & (w->set_cap - 1);
    while (w->set[i] != 0) {
        if (w->set[i] == ino)
            return true;
        i = (i + 1) & (w->set_cap - 1);
    }
    return false;
}

/* Every inode under dir, into w->set (depth-first, bounded by the state). */
static void collect(struct watch *w, const struct meta_shard *s, uint64_t dir)
{
    struct meta_dirent *ents = malloc(sizeof(*ents) * 256);
    uint64_t cookie = 0;
    bool is_end = ents == NULL;

    w->is_oom = w->is_oom || ents == NULL;
    while (!is_end) {
        struct meta_cmd cmd = {.op = META_OP_READDIR, .ino = dir, .cookie = cookie,
                               .entry_cap = 256};
        struct meta_reply rep = {.entries = ents};
        if (meta_shard_read(s, &cmd, &rep) != 0)
            break;
        is_end = rep.is_end || rep.entry_count == 0;
        for (uint32_t i = 0; i < rep.entry_count; i++) {
            cookie = ents[i].cookie;
            set_push(w, ents[i].ino);
            if (S_ISDIR(ents[i].type))
                collect(w, s, ents[i].ino);
        }
    }
    free(ents);
}

/* PATH's inode and every inode under it, now (after a move in or out). */
static void rescan(struct watch *w, const struct meta_shard *s)
{
    if (w->set_cap > 0)
        memset(w->set, 0, w->set_cap * sizeof(*w->set));
    w->set_count = 0;
    w->root = resolve(s, w->path);
    if (w->root == 0)
        return;
    collect(w, s, w->root);
    set_push(w, w->root);
}

static void flush_second(struct watch *w)
{
    char when[48];

    if (w->changes == 0)
        return;
    ar_format_time(w->second * 1000000000ull, when, sizeof(when));
    when[19] = 'Z';
    when[20] = '\0';
    printf("%s  %" PRIu64 " change%s\n", when, w->changes, plural(w->changes));
    w->moments++;
    w->changes = 0;
}

static void on_replay(void *ctx, const struct meta_shard *s, const struct meta_cmd *cmd,
                      uint64_t hlc_ns, bool is_before)
{
    struct watch *w = ctx;

    if (!w->is_started) { /* the first command: the state before it */
        w->is_started = true;
        rescan(w, s);
    }
    if (is_before)
        return;
    /* a command in a directory (or on an inode) under PATH touches it;
     * new inodes there join the set, a move in or out rescans it, and a
     * rename that touches neither side cannot change what is under PATH,
     * unless it moved PATH itself, which its lookup shows */
    bool is_touch = in_set(w, cmd->ino) || in_set(w, cmd->new_dir);
    uint64_t root = resolve(s, w->path);
    if (root != w->root) {
        is_touch = true; /* PATH itself made, removed, moved or replaced */
        rescan(w, s);
    } else if (is_touch && cmd->op == META_OP_RENAME) {
        rescan(w, s);
    } else if (is_touch && (cmd->op == META_OP_MKDIR || cmd->op == META_OP_MKNOD ||
                            cmd->op == META_OP_SYMLINK)) {
        set_push(w, cmd->new_ino);
    } else if (is_touch && cmd->op == META_OP_LINK) {
        set_push(w, cmd->ino);
    } else if (is_touch && cmd->op == META_OP_RESTORE_FILES) {
        for (uint32_t i = 0; i < cmd->item_count; i++) {
            set_push(w, cmd->new_ino + i);
        }
    }
    if (!is_touch || meta_op_is_query(cmd->op))
        return;
    uint64_t second = hlc_ns / 1000000000ull;
    if (second != w->second)
        flush_second(w);
    w->second = second;
    w->changes++;
    w->total++;
}

/* Wait (about wait_s seconds at most: an attempt under way finishes)
 * until the archive of shard holds what was committed by now, so that a
 * listing shows what just happened (an accident is what sends people
 * here). The leader archives a batch every few seconds; one slice id taken
 * now is an entry past this moment, so the next batch proves it (as a
 * restore does). Each attempt rebuilds the state at this moment from the
 * newest checkpoint before it. True once the archive holds it; a failure
 * other than "not yet" is said. The moment is this machine's clock: one
 * ahead of the leader's makes it wait the whole time. */
static bool archive_reaches_now(struct ar_client *c, struct obj_store *st, uint32_t shard,
                                const char *dir, uint32_t wait_s)
{
    AR_ASSERT(c != NULL && st != NULL && dir != NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct meta_rebuild_options ro = {.shard = shard, .scratch_dir = dir,
                                      .at_ns = (uint64_t)ts.tv_sec * 1000000000u +
                                               (uint64_t)ts.tv_nsec};
    struct meta_response_buf *out = ar_malloc(sizeof(*out));
    struct meta_cmd take = {.op = META_OP_ALLOC_SLICES, .length = 1};
    char errmsg[AR_ERRMSG_MAX] = "";
    int rc = -EAGAIN;

    if (out != NULL)
        (void)ar_client_call(c, shard, &take, META_READ_LINEARIZABLE, 0, out);
    ar_free(out);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    time_t end = ts.tv_sec + (time_t)wait_s;
    for (bool is_said = false; rc == -EAGAIN;) {
        struct meta_shard *s = NULL;
        struct meta_restore_point pt;
        rc = meta_archive_rebuild(st, &ro, &s, &pt, errmsg);
        if (s != NULL)
            meta_shard_free(s);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (rc != -EAGAIN || ts.tv_sec >= end)
            break;
        if (!is_said)
            fprintf(stderr, "arbor restore: the archive does not reach this moment yet; "
                            "waiting (at most %u s)\n", wait_s);
        is_said = true;
        sleep(1);
    }
    if (rc != 0 && rc != -EAGAIN)
        fprintf(stderr, "arbor restore: cannot tell how far the archive reaches: %s\n",
                errmsg[0] != '\0' ? errmsg : ar_strerror(rc));
    return rc == 0;
}

static int list_changes(const struct ar_client_options *mo, const char *store_url,
                        const char *path, uint32_t wait_s)
{
    struct ar_client *c = NULL;
    struct obj_store *st = NULL;
    struct meta_map map;
    struct meta_shard *shard = NULL;
    struct meta_restore_point pt;
    char errmsg[AR_ERRMSG_MAX] = "";
    char dir[512];
    struct watch w = {.path = path};

    int rc = ar_client_open(mo, &c, errmsg);
    if (rc == 0) {
        ar_client_map(c, &map);
        rc = obj_store_open(store_url != NULL ? store_url : map.store_url, NULL, &st, errmsg);
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/arbor-list-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (rc == 0 && mkdtemp(dir) == NULL)
        rc = -errno;
    bool is_now = rc == 0 && archive_reaches_now(c, st, ar_client_shard_of(c, 1), dir, wait_s);
    if (rc == 0) {
        struct meta_rebuild_options ro = {.shard = ar_client_shard_of(c, 1), .at_ns = UINT64_MAX,
                                          .is_from_oldest = true, .scratch_dir = dir,
                                          .watch = on_replay, .ctx = &w};
        /* From here on only the store is read, so the cluster's connections
         * can go, and a reader of the list that stops early (| head) may end
         * the command with SIGPIPE as it would any other filter, rather than
         * leave it replaying the window into a closed pipe. */
        ar_client_close(c);
        c = NULL;
        signal(SIGPIPE, SIG_DFL);
        rc = meta_archive_rebuild(st, &ro, &shard, &pt, errmsg);
        rmdir(dir); /* the rebuild removed what it put there */
    }
    if (rc == 0 && w.is_oom) {
        rc = -ENOMEM;
        snprintf(errmsg, sizeof(errmsg), "out of memory following %s", path);
    }
    if (rc == 0 && w.is_started && w.root == 0 && w.total == 0) {
        rc = -ENOENT; /* a typo, most likely: say so rather than "0 changes" */
        snprintf(errmsg, sizeof(errmsg), "%s does not exist, and nothing at that path changed "
                 "inside the window", path);
    }
    if (rc == 0) {
        flush_second(&w);
        char from[48];
        char to[48];
        ar_format_time(pt.oldest_ns, from, sizeof(from));
        ar_format_time(pt.hlc_ns, to, sizeof(to));
        printf("%" PRIu64 " change%s of %s at %" PRIu64 " moment%s; the archive covers %s to "
               "%s\n", w.total, plural(w.total), path, w.moments, plural(w.moments),
               pt.oldest_ns == 0 ? "the volume's start" : from, to);
        if (!is_now)
            printf("(changes after %s are not in the archive yet: run this again in a "
                   "moment)\n", to);
        printf("(restore --at a moment just before a change to undo it)\n");
    } else {
        fprintf(stderr, "arbor restore: %s\n", errmsg[0] ? errmsg : ar_strerror(rc));
    }
    if (shard != NULL)
        meta_shard_free(shard);
    free(w.set);
    obj_store_close(st);
    if (c != NULL)
        ar_client_close(c);
    return rc == 0 ? 0 : 1;
}

/* ---- room ---------------------------------------------------------------------------------- */

/* What a restored name costs a replica at least: its node and name in
 * memory, its checkpoint records and its share of the log, which is kept
 * for the recovery window. The replica's own averages count when larger. */
#define ROOM_MEMORY_MIN  128u
#define ROOM_DISK_MIN    256u
#define ROOM_LOG_BYTES   128u

struct room_host {
    char host[64];
    uint32_t replicas;
    uint64_t memory_each;   /* the largest need of one replica, a name */
    uint64_t disk_each;
    uint64_t memory_free;   /* MemAvailable */
    uint64_t disk_free;     /* the least free above the reserve among its replicas */
};

/* A replica's room (its status answer r, at addr) into its host's entry
 * of hosts: replicas on one host share its disk and memory. */
static void room_add(struct room_host *hosts, uint32_t *host_count, const char *addr,
                     const struct meta_response *r)
{
    uint64_t memory = ROOM_MEMORY_MIN;
    uint64_t disk = ROOM_DISK_MIN;

    for (uint32_t g = 0; g < r->group_count; g++) {
        const struct meta_group_status *gs = &r->groups[g];
        if (gs->shard == META_ROOT_SHARD && gs->files > 0) {
            memory = gs->memory_bytes / gs->files > memory ? gs->memory_bytes / gs->files : memory;
            disk = gs->checkpoint_bytes / gs->files > disk ? gs->checkpoint_bytes / gs->files
                                                           : disk;
        }
    }
    disk += ROOM_LOG_BYTES;
    uint64_t above = r->disk_free_bytes > r->disk_reserve_bytes
                         ? r->disk_free_bytes - r->disk_reserve_bytes
                         : 0;
    const char *colon = strrchr(addr, ':');
    size_t host_len = colon != NULL ? (size_t)(colon - addr) : 0;
    struct room_host *h = NULL;
    for (uint32_t k = 0; k < *host_count && h == NULL; k++) {
        if (strlen(hosts[k].host) == host_len && strncmp(hosts[k].host, addr, host_len) == 0)
            h = &hosts[k];
    }
    if (h == NULL) {
        h = &hosts[(*host_count)++];
        *h = (struct room_host){.memory_free = r->memory_available_bytes, .disk_free = above};
        snprintf(h->host, sizeof(h->host), "%.*s", (int)host_len, addr);
    }
    h->replicas++;
    h->memory_each = memory > h->memory_each ? memory : h->memory_each;
    h->disk_each = disk > h->disk_each ? disk : h->disk_each;
    h->disk_free = above < h->disk_free ? above : h->disk_free;
}

/* ar_restore_options.room: ask each member of the cluster (the shard
 * map's, else the addresses given) what it has; replicas on one host share
 * its memory and, as arbor up's do, its disk. */
static int room_check(void *ctx, uint64_t names, char *errmsg)
{
    const struct ar_client_options *given = ctx;
    struct room_host hosts[META_MAP_MEMBERS_MAX + AR_CLIENT_ADDRS_MAX];
    uint32_t host_count = 0;
    struct meta_response_buf *out = malloc(sizeof(*out));
    struct meta_map *map = malloc(sizeof(*map));
    char addrs[META_MAP_MEMBERS_MAX + AR_CLIENT_ADDRS_MAX][64];
    uint32_t addr_count = 0;

    /* every member the map names, else the addresses given */
    bool is_map = false;
    for (uint32_t i = 0; out != NULL && map != NULL && i < given->addr_count && !is_map; i++)
        is_map = cmd_fetch_map(given->addrs[i], out, map) == 0 && map->member_count > 0;
    for (uint32_t i = 0; is_map && i < map->member_count; i++)
        snprintf(addrs[addr_count++], sizeof(addrs[0]), "%s", map->members[i].client_addr);
    for (uint32_t i = 0; !is_map && i < given->addr_count; i++)
        snprintf(addrs[addr_count++], sizeof(addrs[0]), "%s", given->addrs[i]);
    free(map);
    if (out == NULL)
        return 0; /* unchecked, as without the check */
    for (uint32_t i = 0; i < addr_count; i++) {
        struct meta_request req = {.id = 1, .kind = META_REQ_STATUS};
        char why[96];
        /* a replica down, or one that does not say its room, is left out */
        if (cmd_ask(addrs[i], &req, NULL, out, why, sizeof(why)) == 0 &&
            out->r.disk_reserve_bytes != 0)
            room_add(hosts, &host_count, addrs[i], &out->r);
    }
    free(out);
    for (uint32_t k = 0; k < host_count; k++) {
        const struct room_host *h = &hosts[k];
        uint64_t memory = names * h->memory_each * h->replicas;
        uint64_t disk = names * h->disk_each * h->replicas;
        bool is_memory_short = h->memory_free > 0 && memory > h->memory_free / 10 * 9;
        if (!is_memory_short && disk <= h->disk_free)
            continue;
        char need[32];
        char have[32];
        return ar_errorf(errmsg, -ENOSPC,
                         "not enough room on %s for %" PRIu64 " restored names: its %u "
                         "replica%s about %s of %s, and %s %s (free some, restore a "
                         "smaller PATH, or try anyway with --skip-room-check)",
                         h->host, names, h->replicas, h->replicas > 1 ? "s need" : " needs",
                         cmd_human_bytes(is_memory_short ? memory : disk, need),
                         is_memory_short ? "memory" : "disk",
                         cmd_human_bytes(is_memory_short ? h->memory_free : h->disk_free, have),
                         is_memory_short ? "is available" : "is free above the servers' reserve");
    }
    return 0;
}

/* What the command line asks; -1: go on, else the exit status (said). */
struct restore_args {
    struct ar_restore_options o;
    const char *meta;
    bool is_list;
    bool is_room_checked;
};

static int restore_opts(int argc, char **argv, struct restore_args *a)
{
    static const struct option longopts[] = {
        {"at", required_argument, NULL, 'a'},      {"into", required_argument, NULL, 'i'},
        {"replace", no_argument, NULL, 'r'},       {"list", no_argument, NULL, 'l'},
        {"threads", required_argument, NULL, 't'}, {"priority", required_argument, NULL, 'p'},
        {"wait", required_argument, NULL, 'w'},    {"meta", required_argument, NULL, 'm'},
        {"store", required_argument, NULL, 's'},   {"skip-room-check", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    struct ar_restore_options *o = &a->o;
    bool has_at = false;
    uint32_t v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        const char *wrong = NULL;
        if (c == 'a' && !(has_at = parse_time(optarg, &o->at_ns)))
            wrong = "--at wants RFC 3339 (2026-11-30T10:42:13Z) or -15m, -90s, -2h, -1d";
        else if (c == 'a' && o->at_ns > wall_now_ns() + 1000000000ull)
            wrong = "--at is in the future: a restore puts back what was";
        else if (c == 't' && !cmd_parse_u32(optarg, 1, 256, &o->threads))
            wrong = "--threads wants 1..256";
        else if (c == 'p' && strcmp(optarg, "low") != 0 && strcmp(optarg, "normal") != 0)
            wrong = "--priority wants low or normal";
        else if (c == 'w' && !cmd_parse_u32(optarg, 0, 3600, &v))
            wrong = "--wait wants 0..3600 seconds";
        if (wrong != NULL) {
            fprintf(stderr, "arbor restore: %s, not %s\n", wrong, optarg);
            return 2;
        }
        switch (c) {
        case 'i': o->into = optarg; break;
        case 'r': o->is_replace = true; break;
        case 'l': a->is_list = true; break;
        case 'p': o->is_normal_priority = strcmp(optarg, "normal") == 0; break;
        case 'w': o->wait_s = v; break;
        case 'm': a->meta = optarg; break;
        case 's': o->store_url = optarg; break;
        case 'k': a->is_room_checked = false; break;
        case 'h': usage(stdout); return 0;
        case 'a': case 't': break;
        default: usage(stderr); return 2;
        }
    }
    const char *wrong = NULL;
    if (optind + 1 != argc)
        wrong = "wants one PATH";
    else if (o->into != NULL && o->is_replace)
        wrong = "--into or --replace, not both";
    else if (a->is_list && (has_at || o->into != NULL || o->is_replace))
        wrong = "--list takes none of --at, --into, --replace";
    else if (!a->is_list && !has_at)
        wrong = "wants --at TIME (or --list)";
    else if (argv[optind][0] != '/' || (o->into != NULL && o->into[0] != '/'))
        wrong = "paths are absolute paths in the volume (/datasets/cams)";
    if (wrong != NULL) {
        fprintf(stderr, "arbor restore: %s (try --help)\n", wrong);
        return 2;
    }
    o->path = argv[optind];
    return -1;
}

static void print_report(const struct ar_restore_options *o, const struct ar_restore_report *rep)
{
    char when[48];

    ar_format_time(o->at_ns, when, sizeof(when));
    printf("restored %s as of %s into %s\n", o->path, when, rep->final_path);
    printf("  %" PRIu64 " director%s, %" PRIu64 " file%s (%" PRIu64 " byte%s), %" PRIu64
           " symlink%s, %" PRIu64 " more hard link%s, %" PRIu64 " other file%s, %" PRIu64
           " extended attribute%s\n",
           rep->dirs, rep->dirs == 1 ? "y" : "ies", rep->files, plural(rep->files), rep->bytes,
           plural(rep->bytes), rep->symlinks, plural(rep->symlinks), rep->links,
           plural(rep->links), rep->others, plural(rep->others), rep->xattrs, plural(rep->xattrs));
    printf("  state: entry %" PRIu64 " (checkpoint %" PRIu64 " + %" PRIu64
           " command%s), rebuilt in %.1f s, written in %.1f s\n",
           rep->point.index, rep->point.base_index, rep->point.entries,
           plural(rep->point.entries), rep->rebuild_s, rep->write_s);
    /* a tree's names are its directories below the top and its other
     * names; one file is looked up, not listed */
    uint64_t dirs_checked = rep->names_counted > rep->sizes_checked
                                ? rep->names_counted - rep->sizes_checked
                                : 0;
    if (rep->names_counted == 0)
        printf("  verified: size and mode of %" PRIu64 " file read back\n", rep->sizes_checked);
    else
        printf("  verified: %" PRIu64 " name%s read back, modes of %" PRIu64 " director%s, "
               "sizes and modes of %" PRIu64 " file%s\n",
               rep->names_counted, plural(rep->names_counted), dirs_checked,
               dirs_checked == 1 ? "y" : "ies", rep->sizes_checked, plural(rep->sizes_checked));
    if (rep->aside_name[0] != '\0')
        printf("  the tree that was live is now %s, beside it\n", rep->aside_name);
}

int cmd_restore(int argc, char **argv)
{
    struct restore_args a = {.o = {.wait_s = 15, .progress = print_progress,
                                   .meta = {.has_no_session = true}},
                             .is_room_checked = true};
    struct ar_restore_report rep;
    char errmsg[AR_ERRMSG_MAX] = "";
    int rc = restore_opts(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (!cmd_meta_options("restore", a.meta, &a.o.meta))
        return 1;
    if (a.is_list)
        return list_changes(&a.o.meta, a.o.store_url, a.o.path, a.o.wait_s);
    if (a.is_room_checked) {
        a.o.room = room_check;
        a.o.ctx = &a.o.meta;
    }
    if (ar_restore_run(&a.o, &rep, errmsg) != 0) {
        fprintf(stderr, "arbor restore: %s\n", errmsg[0] ? errmsg : "the restore failed");
        return 1;
    }
    print_report(&a.o, &rep);
    return 0;
}
