/* tools/serve.c - `arbor format` and `arbor serve`: make a replica's data
 * directory, and run the metadata server from it until SIGTERM or SIGINT
 * (then in-flight log writes finish before it exits). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cmd.h"
#include "meta.h"
#include "objstore.h"

/* "1=127.0.0.1:7001/127.0.0.1:7101,2=..." into cfg's nodes; else false,
 * with what is wrong said on stderr. */
static bool parse_nodes(const char *spec, struct meta_server_config *cfg)
{
    const char *p = spec;

    /* bounded: each turn takes one member and moves past its comma */
    while (*p != '\0') {
        struct meta_server_node *n = &cfg->nodes[cfg->node_count];
        char raft[64];
        char client[64];
        unsigned long long id;
        int used = 0;
        char host[64];
        uint16_t port;
        int len = (int)strcspn(p, ",");
        const char *wrong = NULL;
        char too_many[48];
        snprintf(too_many, sizeof(too_many), "one member too many (%u at most)",
                 META_SERVER_NODES_MAX);
        if (cfg->node_count == META_SERVER_NODES_MAX)
            wrong = too_many;
        else if (sscanf(p, "%llu=%63[^/,]/%63[^,]%n", &id, raft, client, &used) != 3 || id == 0)
            wrong = "not ID=RAFT/CLIENT with an ID from 1";
        else if (p[used] != ',' && p[used] != '\0')
            wrong = "an address is longer than 63 bytes";
        else if (meta_addr_parse(raft, host, sizeof(host), &port) != 0 ||
                 meta_addr_parse(client, host, sizeof(host), &port) != 0)
            wrong = "an address is not IP:PORT (an IP literal, a port from 1 to 65535)";
        for (uint32_t i = 0; wrong == NULL && i < cfg->node_count; i++) {
            if (cfg->nodes[i].id == id)
                wrong = "its id is taken by an earlier member";
        }
        if (wrong != NULL) {
            fprintf(stderr, "arbor format: --nodes: %.*s: %s\n", len, p, wrong);
            return false;
        }
        n->id = id;
        snprintf(n->raft_addr, sizeof(n->raft_addr), "%s", raft);
        snprintf(n->client_addr, sizeof(n->client_addr), "%s", client);
        cfg->node_count++;
        p += used;
        if (*p == ',')
            p++;
    }
    if (cfg->node_count == 0)
        fprintf(stderr, "arbor format: --nodes names no member\n");
    return cfg->node_count > 0;
}

static void format_usage(FILE *to)
{
    fprintf(to,
            "usage: arbor format DATA_DIR --id N --nodes ID=RAFT/CLIENT,... [--voters ID,...]\n"
            "                    [--volume NAME] [--store URL] [--block-size BYTES]\n"
            "                    [--window D]\n\n"
            "Make DATA_DIR a replica of a new cluster: ID=RAFT/CLIENT names each\n"
            "member by its id, the host:port its replicas talk Raft on and the\n"
            "host:port clients use, e.g.\n"
            "  --nodes 1=127.0.0.1:7001/127.0.0.1:7101,2=127.0.0.1:7002/127.0.0.1:7102\n"
            "Format every replica with the same --nodes; then run arbor serve DATA_DIR.\n"
            "--voters: the first members (default: all); the other nodes start empty\n"
            "and join with arbor member add, then arbor member promote.\n"
            "--volume: the volume's name, letters, digits, '.', '_' and '-', at most 63\n"
            "(default arbor).\n"
            "--store: where file blocks go, file://DIR or s3://BUCKET/PREFIX?endpoint=URL\n"
            "(default file://DATA_DIR/blocks); --block-size: the largest block, a power\n"
            "of two from 4K to 4M (default 4M); --window: how far back arbor restore\n"
            "reaches, e.g. 7d, 36h (default 7d). The first leader writes these into the\n"
            "shard map (arbor status shows it).\n");
}

/* --voters' "ID,..." into cfg; false, said, if malformed. */
static bool parse_voters(const char *list, struct meta_server_config *cfg)
{
    /* bounded: each turn takes one id and its comma */
    for (const char *p = list; *p != '\0';) {
        char id[24];
        size_t n = strcspn(p, ",");
        snprintf(id, sizeof(id), "%.*s", (int)(n < sizeof(id) ? n : sizeof(id) - 1), p);
        if (n >= sizeof(id) || cfg->voter_count == META_SERVER_NODES_MAX ||
            !cmd_parse_u64(id, 1, UINT64_MAX, &cfg->voters[cfg->voter_count])) {
            fprintf(stderr, "arbor format: --voters wants member ids from 1, comma-separated, "
                            "at most %u: %s\n", META_SERVER_NODES_MAX, list);
            return false;
        }
        cfg->voter_count++;
        p += n + (p[n] == ',');
    }
    return true;
}

static bool is_volume_name(const char *name)
{
    size_t len = strlen(name);

    return len > 0 && len < sizeof(((struct meta_server_config *)0)->volume) &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
               len;
}

/* The options into cfg (nodes: --nodes' text). -1: go on; else the exit
 * status, said. */
static int format_opts(int argc, char **argv, struct meta_server_config *cfg, const char **nodes)
{
    static const struct option longopts[] = {
        {"id", required_argument, NULL, 'i'},     {"nodes", required_argument, NULL, 'n'},
        {"volume", required_argument, NULL, 'v'}, {"voters", required_argument, NULL, 'V'},
        {"store", required_argument, NULL, 's'},  {"block-size", required_argument, NULL, 'b'},
        {"window", required_argument, NULL, 'w'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'i' && !cmd_parse_u64(optarg, 1, UINT64_MAX, &cfg->id)) {
            fprintf(stderr, "arbor format: --id wants a member id from 1\n");
            return 2;
        } else if (c == 'n') {
            *nodes = optarg;
        } else if (c == 'v' && !is_volume_name(optarg)) {
            fprintf(stderr, "arbor format: --volume wants 1 to 63 letters, digits, '.', '_' "
                            "or '-'\n");
            return 2;
        } else if (c == 'v') {
            snprintf(cfg->volume, sizeof(cfg->volume), "%s", optarg);
        } else if (c == 's' && strlen(optarg) >= sizeof(cfg->store_url)) {
            fprintf(stderr, "arbor format: --store: a URL of %zu bytes at most\n",
                    sizeof(cfg->store_url) - 1);
            return 2;
        } else if (c == 's') {
            snprintf(cfg->store_url, sizeof(cfg->store_url), "%s", optarg);
        } else if (c == 'b') {
            if (!cmd_parse_size(optarg, &v) || v < 4096 || v > META_BLOCK_BYTES || (v & (v - 1))) {
                fprintf(stderr, "arbor format: --block-size wants a power of two from 4K to 4M\n");
                return 2;
            }
            cfg->block_bytes = (uint32_t)v;
        } else if (c == 'w') {
            if (!cmd_parse_duration(optarg, &v)) {
                fprintf(stderr, "arbor format: --window wants a duration like 7d, 36h, 90m\n");
                return 2;
            }
            cfg->window_s = (uint32_t)v;
        } else if (c == 'V' && !parse_voters(optarg, cfg)) {
            return 2;
        } else if (c == 'h' || c == '?') {
            format_usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind + 1 != argc || *nodes == NULL || cfg->id == 0) {
        fprintf(stderr, "arbor format: wants DATA_DIR, --id N and --nodes ID=RAFT/CLIENT,... "
                        "with distinct ids and IP:PORT addresses (try --help)\n");
        return 2;
    }
    return parse_nodes(*nodes, cfg) ? -1 : 2;
}

int cmd_format(int argc, char **argv)
{
    struct meta_server_config cfg = {.id = 0};
    char errmsg[AR_ERRMSG_MAX] = "";
    const char *nodes = NULL;
    int rc = format_opts(argc, argv, &cfg, &nodes);

    if (rc >= 0)
        return rc;
    /* the store's URL, checked before anything is made: the servers and
     * mounts would each fail on it later, far from here */
    if (cfg.store_url[0] != '\0') {
        struct obj_store *st = NULL;
        rc = obj_store_open(cfg.store_url, &(struct obj_options){.workers = 1}, &st, errmsg);
        obj_store_close(st);
        if (rc == -EACCES && strncmp(cfg.store_url, "s3://", 5) == 0) {
            printf("arbor format: %s; the servers will need them\n", errmsg);
        } else if (rc != 0) {
            fprintf(stderr, "arbor format: --store %s: %s\n", cfg.store_url, errmsg);
            return rc == -EINVAL ? 2 : 1;
        }
    }
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", argv[optind]);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cfg.created_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    if (meta_server_format(&cfg, errmsg) != 0) {
        fprintf(stderr, "arbor format: %s\n", errmsg);
        return 1;
    }
    printf("formatted %s as node %" PRIu64 " of %u\n", cfg.data_dir, cfg.id, cfg.node_count);
    return 0;
}

static void on_signal(uv_signal_t *h, int sig)
{
    struct meta_server *s = h->data;

    ar_log(AR_LOG_INFO, "signal %d: stopping (in-flight writes finish first)", sig);
    meta_server_stop(s);
    uv_close((uv_handle_t *)h, NULL);
}

static void serve_usage(void)
{
    printf("usage: arbor serve DATA_DIR [--log-keep N] [--session-timeout-ms MS]\n"
           "                   [--archive-ms MS] [--archive-checkpoint-s S]\n"
           "                   [--gc-every-s S] [--segment-bytes SIZE]\n"
           "                   [--log-retain-s S] [--disk-reserve SIZE]\n\n"
           "Run the metadata server of the replica in DATA_DIR (made by arbor format)\n"
           "in the foreground, logging to stderr. SIGTERM or SIGINT stop it cleanly.\n"
           "--log-keep: entries kept in memory below the latest checkpoint for\n"
           "followers that lag (default 10000); further behind, a follower gets a\n"
           "snapshot of the checkpoint instead.\n"
           "--session-timeout-ms: a client session silent this long is closed and\n"
           "what it held open is released (default 30000).\n"
           "--archive-ms: a leader puts its newly committed entries in the store's\n"
           "point-in-time archive this often (default 2000): a restore reaches\n"
           "moments up to about this long ago.\n"
           "--archive-checkpoint-s: and its checkpoint this often (default 3600):\n"
           "a restore replays at most this much log.\n"
           "--gc-every-s: the leader of a shard deletes blocks nothing inside the\n"
           "recovery window names this often (default 3600; 0: never; see arbor gc).\n"
           "--segment-bytes: seal a log segment at this size (default 64M).\n"
           "--log-retain-s: keep sealed segments below the checkpoint this long\n"
           "(default: the recovery window; a restore reads the store's archive, not\n"
           "these).\n"
           "--disk-reserve: when the disk of DATA_DIR has less free than this\n"
           "(default 256M), the leaders answer ENOSPC to new files, writes and other\n"
           "changes that grow their logs (this replica tells its leaders so), but\n"
           "still to removals, so that the replicas keep serving instead of failing\n"
           "a write of their own.\n");
}

/* The options of arbor serve into cfg; 0, or the exit status (-1: --help). */
static int serve_opts(int argc, char **argv, struct meta_server_config *cfg)
{
    static const struct option longopts[] = {
        {"log-keep", required_argument, NULL, 'k'},
        {"session-timeout-ms", required_argument, NULL, 't'},
        {"archive-ms", required_argument, NULL, 'a'},
        {"archive-checkpoint-s", required_argument, NULL, 'c'},
        {"gc-every-s", required_argument, NULL, 'g'},
        {"segment-bytes", required_argument, NULL, 'S'},
        {"log-retain-s", required_argument, NULL, 'R'},
        {"disk-reserve", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v[8] = {10000, 30000, 2000, 3600, 3600, 0, 0, 256ull << 20}; /* the defaults */
    const struct { int flag; uint64_t min; uint64_t max; const char *wants; } nums[8] = {
        {'k', 0, 1u << 30, "--log-keep wants a count of entries"},
        {'t', 100, 3600000, "--session-timeout-ms wants 100..3600000"},
        {'a', 10, 600000, "--archive-ms wants 10..600000"},
        {'c', 1, 7 * 86400, "--archive-checkpoint-s wants 1..604800"},
        {'g', 0, 30 * 86400, "--gc-every-s wants 0..2592000"},
        {'S', 4096, 1ull << 30, "--segment-bytes wants 4K..1G"},
        {'R', 0, 400ull * 86400, "--log-retain-s wants 0..34560000"},
        {'D', 1u << 20, 1ull << 40, "--disk-reserve wants a size from 1M to 1T"},
    };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            serve_usage();
            return -1;
        }
        size_t k = 0;
        while (k < AR_ARRAY_LEN(nums) && nums[k].flag != c)
            k++;
        if (k == AR_ARRAY_LEN(nums))
            return 2; /* getopt said what it did not know */
        if (!cmd_parse_size(optarg, &v[k]) || v[k] < nums[k].min || v[k] > nums[k].max) {
            fprintf(stderr, "arbor serve: %s, not %s\n", nums[k].wants, optarg);
            return 2;
        }
        cfg->has_log_retain |= c == 'R';
    }
    cfg->log_keep = (uint32_t)v[0];
    cfg->session_timeout_ms = (uint32_t)v[1];
    cfg->archive_ms = (uint32_t)v[2];
    cfg->archive_ckpt_s = (uint32_t)v[3];
    cfg->gc_every_s = (uint32_t)v[4];
    cfg->log_segment_bytes = v[5];
    cfg->log_retain_s = (uint32_t)v[6];
    cfg->disk_reserve_bytes = v[7];
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    struct meta_server_config opts = {.id = 0};
    struct meta_server_config cfg;
    struct meta_server *s = NULL;
    char errmsg[AR_ERRMSG_MAX] = "";
    uv_loop_t loop;
    uv_signal_t term;
    uv_signal_t intr;

    int orc = serve_opts(argc, argv, &opts);
    if (orc != 0)
        return orc < 0 ? 0 : orc;
    if (optind + 1 != argc) {
        fprintf(stderr, "arbor serve: wants DATA_DIR (try --help)\n");
        return 2;
    }
    if (meta_cluster_load(argv[optind], &cfg, errmsg) != 0 || uv_loop_init(&loop) != 0) {
        fprintf(stderr, "arbor serve: %s\n", errmsg);
        return 1;
    }
    cfg.log_keep = opts.log_keep;
    cfg.session_timeout_ms = opts.session_timeout_ms;
    cfg.archive_ms = opts.archive_ms;
    cfg.archive_ckpt_s = opts.archive_ckpt_s;
    cfg.gc_every_s = opts.gc_every_s;
    cfg.log_segment_bytes = opts.log_segment_bytes;
    cfg.has_log_retain = opts.has_log_retain;
    cfg.log_retain_s = opts.log_retain_s;
    cfg.disk_reserve_bytes = opts.disk_reserve_bytes;
    if (meta_server_start(&loop, &cfg, &s, errmsg) != 0) {
        fprintf(stderr, "arbor serve: %s\n", errmsg);
        uv_loop_close(&loop);
        return 1;
    }
    uv_signal_init(&loop, &term);
    uv_signal_init(&loop, &intr);
    term.data = s;
    intr.data = s;
    uv_signal_start(&term, on_signal, SIGTERM);
    uv_signal_start(&intr, on_signal, SIGINT);
    uv_unref((uv_handle_t *)&term);
    uv_unref((uv_handle_t *)&intr);
    uv_run(&loop, UV_RUN_DEFAULT); /* the one unbounded loop: until stopped */
    if (!uv_is_closing((uv_handle_t *)&term))
        uv_close((uv_handle_t *)&term, NULL);
    if (!uv_is_closing((uv_handle_t *)&intr))
        uv_close((uv_handle_t *)&intr, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    meta_server_free(s);
    uv_loop_close(&loop);
    return 0;
}
