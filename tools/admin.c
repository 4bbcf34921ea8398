/* tools/admin.c - `arbor member add|promote|remove` and `arbor leader
 * transfer`: a change of a cluster's members or leader, sent to its
 * leader (found by asking the replicas in the cluster file and following
 * redirects). Members change one at a time: a node joins as a learner,
 * catches up (by the log or a snapshot), then is promoted to vote. A
 * member change is answered once committed; anything but that or a
 * refusal is asked again (bounded), which finds a change made as done. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "cmd.h"
#include "meta.h"

#define ADMIN_TRIES 50 /* bounded: an election may be under way */

/* The change for one group, at its leader: the replicas at addrs are asked
 * in turn, and redirects followed. */
static int send_admin_to(char addrs[][64], uint32_t count, uint32_t shard, enum meta_admin_op op,
                         uint64_t target)
{
    char why[128] = "";
    char addr[64];

    struct meta_response_buf *out = malloc(sizeof(*out));
    if (out == NULL || count == 0) {
        free(out);
        return 1;
    }
    snprintf(addr, sizeof(addr), "%s", addrs[0]);
    int rc = -ETIMEDOUT;
    for (int i = 0; i < ADMIN_TRIES; i++) {
        struct meta_request req = {.id = (uint64_t)i + 1, .kind = META_REQ_ADMIN, .admin = op,
                                   .target = target, .shard = shard};
        rc = cmd_ask(addr, &req, NULL, out, why, sizeof(why));
        if (rc == -AR_ENOTLEADER && out->r.leader_addr[0] != '\0') {
            snprintf(addr, sizeof(addr), "%s", out->r.leader_addr);
            continue;
        }
        if (rc == 0 || rc == -EINVAL)
            break; /* done, or refused for good; anything else: another replica, later */
        snprintf(addr, sizeof(addr), "%s", addrs[(uint32_t)(i + 1) % count]);
        usleep(100000);
    }
    free(out);
    if (rc != 0) {
        fprintf(stderr, "arbor: shard %u: %s\n", shard, why[0] ? why : ar_strerror(rc));
        return 1;
    }
    return 0;
}

/* The change for every group the cluster runs: the map first. */
static int send_admin(const char *data_dir, enum meta_admin_op op, uint64_t target)
{
    static const uint32_t shards[] = {META_MAP_SHARD, META_ROOT_SHARD};
    struct meta_server_config cfg;
    char errmsg[AR_ERRMSG_MAX] = "";

    if (meta_cluster_load(data_dir, &cfg, errmsg) != 0) {
        fprintf(stderr, "arbor: %s\n", errmsg);
        return 1;
    }
    char addrs[META_SERVER_NODES_MAX][64];
    for (uint32_t i = 0; i < cfg.node_count; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "%s", cfg.nodes[i].client_addr);
    }
    for (size_t i = 0; i < AR_ARRAY_LEN(shards); i++) {
        if (send_admin_to(addrs, cfg.node_count, shards[i], op, target) != 0)
            return 1;
    }
    return 0;
}

int cmd_window(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"meta", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ar_client_options o = {.has_no_session = true};
    const char *meta = NULL;
    char errmsg[AR_ERRMSG_MAX] = "";
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': meta = optarg; break;
        case 'h':
            printf("usage: arbor window [set DURATION] [--meta ADDR,...]\n\n"
                   "Print the volume's recovery window (how far back arbor restore reaches,\n"
                   "and how long deleted data stays in the store), or set it: 14d, 36h, 90m.\n"
                   "A new window of an hour or more; shorter ones only at arbor format (a\n"
                   "mount keeps unused slice ids up to 10 minutes, which must stay well\n"
                   "inside the window). A longer window keeps what is still in the\n"
                   "archive; what expired before it is gone. Without --meta, the local\n"
                   "cluster arbor up runs.\n");
            return 0;
        default: return 2;
        }
    }
    uint64_t seconds = 0;
    bool is_set = optind + 2 == argc && strcmp(argv[optind], "set") == 0;
    if ((!is_set && optind != argc) || (is_set && !cmd_parse_duration(argv[optind + 1], &seconds))) {
        fprintf(stderr, "arbor window: wants no argument, or set DURATION (14d, 36h, 90m)\n");
        return 2;
    }
    if (is_set && seconds < 3600) {
        fprintf(stderr, "arbor window: a new window must be an hour or more\n");
        return 2;
    }
    if (!cmd_meta_options("window", meta, &o))
        return 1;
    if (is_set) {
        if (send_admin_to(o.addrs, o.addr_count, META_MAP_SHARD, META_ADMIN_SET_WINDOW, seconds))
            return 1;
        usleep(200000); /* applied at the leader; the map below may come from another */
    }
    struct ar_client *cl = NULL;
    if (ar_client_open(&o, &cl, errmsg) != 0) {
        fprintf(stderr, "arbor window: %s\n", errmsg);
        return 1;
    }
    struct meta_map map;
    ar_client_map(cl, &map);
    ar_client_close(cl);
    printf("recovery window: %u s (%.1f days)\n", map.window_s, map.window_s / 86400.0);
    if (is_set && map.window_s != seconds) {
        fprintf(stderr, "arbor window: the map still says %u s; run it again\n", map.window_s);
        return 1;
    }
    return 0;
}

int cmd_member(int argc, char **argv)
{
    static const struct {
        const char *verb;
        enum meta_admin_op op;
    } verbs[] = {{"add", META_ADMIN_ADD_LEARNER}, {"promote", META_ADMIN_PROMOTE},
                 {"remove", META_ADMIN_REMOVE}};

    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: arbor member add|promote|remove DATA_DIR NODE\n\n"
               "Change the members of the cluster DATA_DIR's replica belongs to, one at a\n"
               "time: add makes NODE (listed in the cluster file) a learner that catches up\n"
               "but does not vote; promote makes a learner a voter; remove takes a node\n"
               "out. The change is made at each group's leader (the map, then \"/\"), and\n"
               "the command returns 0 once it has committed in both: only then may a\n"
               "removed node's data be wiped (before, it may still count as a voter).\n"
               "A change already made counts as done, so the command can be run again\n"
               "after a timeout or a leader change.\n");
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "arbor member: wants add|promote|remove DATA_DIR NODE (try --help)\n");
        return 2;
    }
    uint64_t node = 0;
    if (!cmd_parse_u64(argv[3], 1, UINT64_MAX, &node)) {
        fprintf(stderr, "arbor member: NODE wants a member id from 1, not %s\n", argv[3]);
        return 2;
    }
    for (size_t i = 0; i < AR_ARRAY_LEN(verbs); i++) {
        if (strcmp(argv[1], verbs[i].verb) == 0 && node != 0) {
            int rc = send_admin(argv[2], verbs[i].op, node);
            if (rc == 0)
                printf("member %s of node %" PRIu64 ": committed\n", argv[1], node);
            return rc;
        }
    }
    fprintf(stderr, "arbor member: wants add|promote|remove DATA_DIR NODE (try --help)\n");
    return 2;
}

int cmd_leader(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: arbor leader transfer DATA_DIR NODE\n\n"
               "Hand the leadership of the cluster DATA_DIR's replica belongs to to the\n"
               "voter NODE, for every group: the leader brings it up to date, then it takes\n"
               "over. Writes\n"
               "pause (EAGAIN) for the moment it takes.\n");
        return 0;
    }
    uint64_t node = 0;
    if (argc != 4 || strcmp(argv[1], "transfer") != 0 ||
        !cmd_parse_u64(argv[3], 1, UINT64_MAX, &node)) {
        fprintf(stderr, "arbor leader: wants transfer DATA_DIR NODE (try --help)\n");
        return 2;
    }
    int rc = send_admin(argv[2], META_ADMIN_TRANSFER, node);
    if (rc == 0)
        printf("leadership transfer to node %" PRIu64 ": under way\n", node);
    return rc;
}
