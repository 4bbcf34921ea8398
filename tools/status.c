/* tools/status.c - `arbor status`: ask every replica of a cluster what it
 * sees (any replica answers a status request, leader or not) and print one
 * line a replica and group: role, term, leader, commit and applied indexes,
 * lag behind the leader's commit, log and checkpoint marks, files; and what
 * the leader knows of each follower. Unreachable replicas say so. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "cmd.h"
#include "meta.h"

#define STATUS_TIMEOUT_MS 2000

static bool read_full(int fd, uint8_t *p, size_t len)
{
    size_t done = 0;

    /* bounded by len and the timeout of each wait */
    while (done < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, STATUS_TIMEOUT_MS) <= 0)
            return false;
        ssize_t n = read(fd, p + done, len - done);
        if (n <= 0)
            return false;
        done += (size_t)n;
    }
    return true;
}

int cmd_ask(const char *addr, const struct meta_request *req, const struct meta_cmd *cmd,
            struct meta_response_buf *out, char *why, size_t why_cap)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    uint8_t buf[256];
    size_t len;

    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
        snprintf(why, why_cap, "not host:port");
        return -EINVAL;
    }
    size_t len_host = (size_t)(colon - addr);
    /* [::1]:7101 */
    bool is_bracketed = len_host >= 2 && addr[0] == '[' && addr[len_host - 1] == ']';
    memcpy(host, addr + is_bracketed, len_host - 2 * is_bracketed);
    host[len_host - 2 * is_bracketed] = '\0';
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        snprintf(why, why_cap, "cannot resolve %s", host);
        return -EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    int rc = fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : -errno;
    freeaddrinfo(ai);
    if (rc != 0) {
        snprintf(why, why_cap, "unreachable: %s", strerror(-rc));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    uint32_t n = 0;
    rc = meta_request_encode(req, cmd, buf, sizeof(buf), &len);
    if (rc == 0 && write(fd, buf, len) != (ssize_t)len)
        rc = -EIO;
    uint8_t *rx = NULL;
    if (rc == 0 && (!read_full(fd, (uint8_t *)&n, 4) || n > META_FRAME_BYTES_MAX))
        rc = -ETIMEDOUT;
    if (rc == 0 && ((rx = malloc(n > 0 ? n : 1)) == NULL || !read_full(fd, rx, n)))
        rc = -ETIMEDOUT;
    if (rc == 0)
        rc = meta_response_decode(rx, n, out);
    if (rc == 0)
        rc = out->r.rc;
    free(rx);
    close(fd);
    if (rc != 0)
        snprintf(why, why_cap, "no answer: %s", ar_strerror(rc));
    return rc;
}

static const char *role_name(uint32_t role)
{
    static const char *const names[] = {"?", "follower", "pre-candidate", "candidate", "leader"};

    return role < 5 ? names[role] : "?";
}

const char *cmd_human_bytes(uint64_t bytes, char out[32])
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    unsigned u = 0;

    while (v >= 1024 && u + 1 < AR_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    snprintf(out, 32, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return out;
}

/* A line a replica and group, then its members and the leader's view. */
static void print_group(const struct meta_response *r, const char *addr,
                        const struct meta_group_status *s, const uint64_t *top_commits)
{
    uint64_t top_commit = s->shard < META_STATUS_GROUPS_MAX ? top_commits[s->shard] : s->commit;

    printf("%-4" PRIu64 " %-21s %-5u %-13s %6" PRIu64 " %6" PRIu64 " %10" PRIu64 " %10" PRIu64
           " %8" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "\n",
           r->node, addr, s->shard, role_name(s->role), s->term, s->leader, s->commit,
           s->applied, top_commit - s->applied, s->last, s->checkpoint, s->files);
    printf("       members: voters");
    for (uint32_t k = 0; k < s->voter_count; k++) {
        printf(" %" PRIu64, s->voters[k]);
    }
    if (s->learner_count > 0)
        printf(", learners");
    for (uint32_t k = 0; k < s->learner_count; k++) {
        printf(" %" PRIu64, s->learners[k]);
    }
    printf("\n");
    char a[32];
    char b[32];
    char c[32];
    char d[32];
    printf("       sizes: state in memory %s, log on disk %s, checkpoint on disk %s, archive "
           "tail %s\n", cmd_human_bytes(s->memory_bytes, a), cmd_human_bytes(s->log_bytes, b),
           cmd_human_bytes(s->checkpoint_bytes, c), cmd_human_bytes(s->archive_tail_bytes, d));
    if (s->archived > 0)
        printf("       archive: entries below %" PRIu64 " are in the store (%" PRIu64
               " committed after)\n", s->archived,
               s->commit >= s->archived ? s->commit - s->archived + 1 : 0);
    if (s->background_done > 0 || s->background_waiting > 0)
        printf("       background (restore) commands: %u waiting, %" PRIu64 " proposed, %"
               PRIu64 " of them after waiting for live traffic\n", s->background_waiting,
               s->background_done, s->background_yielded);
    for (uint32_t p = 0; p < s->peer_count; p++) {
        printf("       follower %" PRIu64 ": log matches to %" PRIu64 " (%" PRIu64 " behind)\n",
               s->peer_ids[p], s->peer_match[p],
               s->last > s->peer_match[p] ? s->last - s->peer_match[p] : 0);
    }
}

static void print_table(uint32_t count, char addrs[][64], const uint64_t *ids,
                        const struct meta_response_buf *answers, const bool *is_up,
                        char why[][96], const uint64_t *top_commits)
{
    printf("%-4s %-21s %-5s %-13s %6s %6s %10s %10s %8s %10s %10s %10s\n", "node", "address",
           "shard", "role", "term", "leader", "commit", "applied", "lag", "last", "checkpoint",
           "files");
    for (uint32_t i = 0; i < count; i++) {
        if (!is_up[i]) {
            printf("%-4" PRIu64 " %-21s %s\n", ids[i], addrs[i], why[i]);
            continue;
        }
        for (uint32_t g = 0; g < answers[i].r.group_count; g++) {
            print_group(&answers[i].r, addrs[i], &answers[i].r.groups[g], top_commits);
        }
        const struct meta_response *r = &answers[i].r;
        char free_h[32];
        char reserve_h[32];
        char mem_h[32];
        /* one under its reserve is named once, after the map */
        printf("       room: disk %s free (reserve %s), memory %s available\n",
               cmd_human_bytes(r->disk_free_bytes, free_h),
               cmd_human_bytes(r->disk_reserve_bytes, reserve_h),
               cmd_human_bytes(r->memory_available_bytes, mem_h));
    }
}

int cmd_fetch_map(const char *addr, struct meta_response_buf *out, struct meta_map *m)
{
    struct meta_request req = {.id = 2, .kind = META_REQ_COMMAND, .shard = META_MAP_SHARD,
                               .epoch = 1, .read_mode = META_READ_FOLLOWER,
                               .data_cap = META_MAP_BYTES_ENC_MAX};
    struct meta_cmd cmd = {.op = META_OP_MAP_GET};
    char why[96];

    int rc = cmd_ask(addr, &req, &cmd, out, why, sizeof(why));
    return rc == 0 ? meta_map_decode(out->r.reply.data, out->r.reply.data_len, m) : rc;
}

static void print_map(const struct meta_map *m)
{
    if (m->version == 0) {
        printf("\nshard map: not written yet (the map group has not elected a leader)\n");
        return;
    }
    printf("\nshard map, version %" PRIu64 ": volume %s, blocks of %u KiB in %s, "
           "recovery window %u s (%.1f days)\n",
           m->version, m->volume, m->block_bytes >> 10, m->store_url, m->window_s,
           m->window_s / 86400.0);
    for (uint32_t i = 0; i < m->member_count; i++) {
        printf("  member %" PRIu64 ": raft %s, clients %s\n", m->members[i].id,
               m->members[i].raft_addr, m->members[i].client_addr);
    }
    for (uint32_t i = 0; i < m->shard_count; i++) {
        const struct meta_shard_info *sh = &m->shards[i];
        printf("  shard %u: epoch %" PRIu64, sh->id, sh->epoch);
        if (sh->id != META_MAP_SHARD)
            printf(", root inode %" PRIu64 ", inodes [%" PRIu64 ", %" PRIu64
                   "), slices [%" PRIu64 ", %" PRIu64 ")",
                   sh->root_ino, sh->ino_lo, sh->ino_hi, sh->slice_lo, sh->slice_hi);
        printf("%s\n", sh->id == META_MAP_SHARD ? " (the map)" : "");
    }
}

static void usage(FILE *to)
{
    fprintf(to, "usage: arbor status [DATA_DIR]\n"
                "       arbor status --meta HOST:PORT[,HOST:PORT...]\n\n"
                "Without arguments: the local cluster `arbor up` runs.\n"
                "Ask each replica of the cluster (the members in DATA_DIR's cluster file, or\n"
                "the client addresses given) what it sees, and print a line a replica:\n"
                "role, term, leader, commit and applied indexes, lag behind the highest\n"
                "commit, the log's last index, the checkpoint's index and the files; the\n"
                "sizes of the state in memory, the log and the checkpoint on disk; at the\n"
                "leader, how far the log is archived in the store, the restore's background\n"
                "commands (waiting, proposed) and how far each follower's log matches its\n"
                "own; then the shard map: volume, members, and each shard's epoch and\n"
                "leases.\n"
                "Exits 1 if a replica does not answer, if one's disk is under its reserve\n"
                "(arbor serve --disk-reserve), or if one's archive cannot store what it\n"
                "commits (the store refuses or is out of reach), so that a monitor can\n"
                "call it.\n");
}

/* The comma-separated addresses of list into addrs; false, said, if there
 * are none. More than the cluster can have are said and left. */
static bool addrs_parse(const char *list, char addrs[][64], uint32_t *count)
{
    /* bounded: each turn takes one address */
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (*count == META_SERVER_NODES_MAX) {
            fprintf(stderr, "arbor status: more than %u addresses: %s and after it left\n",
                    META_SERVER_NODES_MAX, p);
            break;
        }
        if (n > 0)
            snprintf(addrs[(*count)++], sizeof(addrs[0]), "%.*s", (int)n, p);
        p += n + (p[n] == ',');
    }
    if (*count == 0)
        fprintf(stderr, "arbor status: no address to ask (HOST:PORT,...)\n");
    return *count > 0;
}

/* The replicas to ask, from the command line (--meta, a data directory)
 * or the local cluster, into addrs (and ids, where known). 0, or the exit
 * status (said). -1: go on. */
static int status_targets(int argc, char **argv, char addrs[][64], uint64_t *ids,
                          uint32_t *count)
{
    static const struct option longopts[] = {
        {"meta", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *meta = NULL;
    char local[AR_CLIENT_ADDRS_MAX * 64];
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c != 'm') {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
        meta = optarg;
    }
    if (meta != NULL && optind == argc)
        return addrs_parse(meta, addrs, count) ? -1 : 2;
    if (meta == NULL && optind + 1 == argc) {
        struct meta_server_config cfg;
        char errmsg[AR_ERRMSG_MAX] = "";
        if (meta_cluster_load(argv[optind], &cfg, errmsg) != 0) {
            fprintf(stderr, "arbor status: %s\n", errmsg);
            return 1;
        }
        for (uint32_t i = 0; i < cfg.node_count; i++) {
            snprintf(addrs[*count], 64, "%s", cfg.nodes[i].client_addr);
            ids[(*count)++] = cfg.nodes[i].id;
        }
        return -1;
    }
    if (meta != NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (cmd_local_meta(local, sizeof(local), NULL) != 0) {
        fprintf(stderr, "arbor status: no local arbor is up (arbor up); name a data "
                        "directory or --meta ADDR,...\n");
        return 2;
    }
    return addrs_parse(local, addrs, count) ? -1 : 2;
}

/* Say what a monitor must hear of besides a replica down: a disk under
 * its reserve, an archive that fails. True if anything was said. */
static bool print_trouble(uint32_t count, char addrs[][64], const uint64_t *ids,
                          const struct meta_response_buf *answers, const bool *is_up)
{
    bool is_any = false;

    for (uint32_t i = 0; i < count; i++) {
        const struct meta_response *r = &answers[i].r;
        uint64_t id = ids[i] != 0 ? ids[i] : r->node;
        char free_h[32];
        if (!is_up[i])
            continue;
        if (r->disk_free_bytes < r->disk_reserve_bytes) {
            printf("\nreplica %" PRIu64 " (%s): its disk has %s free, under its reserve: "
                   "its leader refuses new files and writes until it has room\n",
                   id, addrs[i], cmd_human_bytes(r->disk_free_bytes, free_h));
            is_any = true;
        }
        if (r->archive_error[0] != '\0') {
            printf("\nreplica %" PRIu64 " (%s): its archive fails, so a restore cannot reach "
                   "past the servers' disks and gc deletes nothing: %s\n",
                   id, addrs[i], r->archive_error);
            is_any = true;
        }
    }
    return is_any;
}

int cmd_status(int argc, char **argv)
{
    char addrs[META_SERVER_NODES_MAX][64];
    uint64_t ids[META_SERVER_NODES_MAX] = {0};
    uint32_t count = 0;
    int rc = status_targets(argc, argv, addrs, ids, &count);

    if (rc >= 0)
        return rc;
    struct meta_response_buf *answers = calloc(count, sizeof(*answers));
    bool is_up[META_SERVER_NODES_MAX] = {false};
    char why[META_SERVER_NODES_MAX][96];
    uint64_t top_commits[META_STATUS_GROUPS_MAX] = {0}; /* by shard */
    if (answers == NULL)
        return 1;
    bool is_any_down = false;
    for (uint32_t i = 0; i < count; i++) {
        struct meta_request req = {.id = 1, .kind = META_REQ_STATUS};
        is_up[i] = cmd_ask(addrs[i], &req, NULL, &answers[i], why[i], sizeof(why[i])) == 0;
        is_any_down |= !is_up[i];
        for (uint32_t g = 0; is_up[i] && g < answers[i].r.group_count; g++) {
            const struct meta_group_status *gs = &answers[i].r.groups[g];
            if (gs->shard < META_STATUS_GROUPS_MAX && gs->commit > top_commits[gs->shard])
                top_commits[gs->shard] = gs->commit;
        }
    }
    /* the map from the first replica that gives it; it names the replicas
     * given by address alone, so that one that does not answer has its id */
    struct meta_map *map = malloc(sizeof(*map));
    struct meta_response_buf *map_buf = malloc(sizeof(*map_buf));
    bool is_map = false;
    for (uint32_t i = 0; map != NULL && map_buf != NULL && i < count && !is_map; i++)
        is_map = is_up[i] && cmd_fetch_map(addrs[i], map_buf, map) == 0;
    for (uint32_t i = 0; is_map && i < count; i++) {
        for (uint32_t k = 0; ids[i] == 0 && k < map->member_count; k++) {
            if (strcmp(map->members[k].client_addr, addrs[i]) == 0)
                ids[i] = map->members[k].id;
        }
    }
    print_table(count, addrs, ids, answers, is_up, why, top_commits);
    if (is_map)
        print_map(map);
    bool is_any_trouble = print_trouble(count, addrs, ids, answers, is_up);
    free(map);
    free(map_buf);
    free(answers);
    return is_any_down || is_any_trouble ? 1 : 0;
}
