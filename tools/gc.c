/* tools/gc.c - arbor gc: delete the blocks nothing inside the recovery
 * window names (meta/gc.c), or with --dry-run say which it would. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "cmd.h"
#include "meta.h"
#include "objstore.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: arbor gc [--dry-run] [--meta ADDR,...] [--store URL]\n\n"
            "Delete the blocks of the volume's store that no file names now and no\n"
            "state inside the recovery window named (so every restore inside the\n"
            "window still finds its blocks). It reads the point-in-time archive, not\n"
            "the servers; if the archive lags more than a minute, or any listing or\n"
            "read fails, it stops before deleting anything more. The metadata leader\n"
            "also runs this pass hourly (arbor serve --gc-every-s).\n\n"
            "  --dry-run        report what would be deleted; delete nothing\n"
            "  --meta ADDR,...  the cluster (default: the local one arbor up runs)\n"
            "  --store URL      the store (default: the volume's)\n");
}

static void print_progress(void *ctx, const char *stage, uint64_t done, uint64_t total)
{
    (void)ctx;
    (void)total;
    fprintf(stderr, "arbor gc: %s: %" PRIu64 "\n", stage, done);
}

int cmd_gc(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dry-run", no_argument, NULL, 'n'},
        {"meta", required_argument, NULL, 'm'},
        {"store", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ar_client_options mo = {.has_no_session = true};
    struct meta_gc_options go = {.progress = print_progress};
    const char *meta = NULL;
    const char *store_url = NULL;
    char errmsg[AR_ERRMSG_MAX] = "";
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': go.is_dry_run = true; break;
        case 'm': meta = optarg; break;
        case 's': store_url = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!cmd_meta_options("gc", meta, &mo))
        return 1;
    struct ar_client *cl = NULL;
    struct obj_store *st = NULL;
    struct meta_map map;
    struct meta_gc_report rep = {0};
    char dir[512];
    const char *tmp = getenv("TMPDIR");
    int rc = ar_client_open(&mo, &cl, errmsg);
    if (rc == 0) {
        ar_client_map(cl, &map);
        go.shard = ar_client_shard_of(cl, 1);
        rc = obj_store_open(store_url != NULL ? store_url : map.store_url, NULL, &st, errmsg);
    }
    snprintf(dir, sizeof(dir), "%s/arbor-gc-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (rc == 0 && mkdtemp(dir) == NULL)
        rc = -errno;
    bool has_run = rc == 0; /* what it found and did is reported, even if it stopped */
    if (rc == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        go.now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
        go.scratch_dir = dir;
        rc = meta_gc_run(st, &go, &rep, errmsg);
        rmdir(dir);
    }
    if (has_run) {
        printf("blocks: %" PRIu64 " (%" PRIu64 " bytes); slices named in the window: %" PRIu64
               "; slices from id %" PRIu64 " up kept (taken inside the window, maybe not "
               "named yet)\n", rep.blocks, rep.bytes, rep.named,
               rep.keep_from);
        printf("garbage: %" PRIu64 " blocks (%" PRIu64 " bytes); deleted: %" PRIu64
               " blocks (%" PRIu64 " bytes)%s\n", rep.garbage_blocks, rep.garbage_bytes,
               rep.deleted_blocks, rep.deleted_bytes, go.is_dry_run ? " (dry run)" : "");
    }
    if (rc != 0)
        fprintf(stderr, "arbor gc: %s\n", errmsg[0] ? errmsg : ar_strerror(rc));
    obj_store_close(st);
    if (cl != NULL)
        ar_client_close(cl);
    return rc == 0 ? 0 : 1;
}
