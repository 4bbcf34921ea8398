/* tools/bench.c - `arbor bench WHAT`: programs that print figures. Targets are
 * printed beside the figures, never asserted (style §9). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "cmd.h"
#include "meta.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} benches[] = {
    {"objstore", bench_objstore, "PUT/GET throughput and latency of an object store"},
    {"fsm", bench_fsm, "the shard state machine in memory: applies/s and bytes per file"},
    {"raft", bench_raft, "Raft replicas as processes on 127.0.0.1: commits/s and latency"},
    {"meta", bench_meta, "a 3-replica shard through the client protocol: ops/s, latency"},
    {"fs", bench_fs, "a mount against a local directory and in-memory FUSE: ops/s, MiB/s"},
};

static void bench_usage(FILE *to)
{
    fprintf(to, "usage: arbor bench WHAT [OPTIONS]\n\nbenchmarks:\n");
    for (size_t i = 0; i < AR_ARRAY_LEN(benches); i++) {
        fprintf(to, "  %-10s %s\n", benches[i].name, benches[i].summary);
    }
    fprintf(to, "\n  arbor bench WHAT --help   shows its options\n");
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        bench_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        bench_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < AR_ARRAY_LEN(benches); i++) {
        if (strcmp(argv[1], benches[i].name) == 0)
            return benches[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "arbor bench: unknown benchmark '%s'\n\n", argv[1]);
    bench_usage(stderr);
    return 2;
}

uint16_t cmd_free_port(void)
{
    /* below the ephemeral range (32768 up), from which other processes'
     * outgoing connections take their local ports meanwhile */
    static uint64_t rng;

    if (rng == 0)
        rng = ((uint64_t)getpid() << 32) ^ (uint64_t)(cmd_now() * 1e9) ^ 0x9e3779b97f4a7c15ull;
    for (int tries = 0; tries < 1000; tries++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)(10000u + rng % 22000u))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int rc = fd >= 0 ? bind(fd, (struct sockaddr *)&sa, sizeof(sa)) : -1;
        if (fd >= 0)
            close(fd);
        if (rc == 0)
            return ntohs(sa.sin_port);
    }
    return 0;
}
