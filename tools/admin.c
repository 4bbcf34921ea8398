/* tools/admin.c - `arbor member add|promote|remove` and `arbor leader
 * transfer`: a change of a cluster's members or leader, sent to its
 * leader (found by asking the replicas in the cluster file and following
 * redirects). Members change one at a time: a node joins as a learner,
 * catches up (by the log or a snapshot), then is promoted to vote. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "meta.h"

#define ADMIN_TRIES 50 /* bounded: an election may be under way */

/* The change for one group, at its leader. */
static int send_admin_to(const struct meta_server_config *cfg, uint32_t shard,
                         enum meta_admin_op op, uint64_t target)
{
    char why[128] = "";
    char addr[64];

    struct meta_response_buf *out = malloc(sizeof(*out));
    if (out == NULL)
        return 1;
    snprintf(addr, sizeof(addr), "%s", cfg->nodes[0].client_addr);
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
        snprintf(addr, sizeof(addr), "%s",
                 cfg->nodes[(uint32_t)(i + 1) % cfg->node_count].client_addr);
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
    for (size_t i = 0; i < AR_ARRAY_LEN(shards); i++) {
        if (send_admin_to(&cfg, shards[i], op, target) != 0)
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
               "out. The change is proposed at each group's leader (the map, then \"/\");\n"
               "arbor status shows it applied.\n");
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "arbor member: wants add|promote|remove DATA_DIR NODE (try --help)\n");
        return 2;
    }
    uint64_t node = strtoull(argv[3], NULL, 10);
    for (size_t i = 0; i < AR_ARRAY_LEN(verbs); i++) {
        if (strcmp(argv[1], verbs[i].verb) == 0 && node != 0) {
            int rc = send_admin(argv[2], verbs[i].op, node);
            if (rc == 0)
                printf("member %s of node %" PRIu64 ": proposed\n", argv[1], node);
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
    uint64_t node = argc == 4 ? strtoull(argv[3], NULL, 10) : 0;
    if (argc != 4 || strcmp(argv[1], "transfer") != 0 || node == 0) {
        fprintf(stderr, "arbor leader: wants transfer DATA_DIR NODE (try --help)\n");
        return 2;
    }
    int rc = send_admin(argv[2], META_ADMIN_TRANSFER, node);
    if (rc == 0)
        printf("leadership transfer to node %" PRIu64 ": under way\n", node);
    return rc;
}
