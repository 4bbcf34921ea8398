/* tools/bench.c - `arbor bench WHAT`: programs that print figures. Targets are
 * printed beside the figures, never asserted (style §9). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
    {"restore", bench_restore, "a directory of many small files restored: files/s, live ops/s"},
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
        if (strcmp(argv[1], benches[i].name) == 0) {
            char name[64]; /* for getopt's messages, as in main() */
            snprintf(name, sizeof(name), "arbor bench %s", benches[i].name);
            argv[1] = name;
            return benches[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "arbor bench: unknown benchmark '%s'\n\n", argv[1]);
    bench_usage(stderr);
    return 2;
}

bool cmd_parse_duration(const char *s, uint64_t *seconds)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long unit = *end == 'd' ? 86400 : *end == 'h' ? 3600 : *end == 'm' ? 60 : 1;

    if (end == s || (*end != '\0' && (strchr("dhms", *end) == NULL || end[1] != '\0')) ||
        v == 0 || v > UINT32_MAX / unit)
        return false;
    *seconds = v * unit;
    return true;
}

uint16_t cmd_free_port(void)
{
    /* below the ephemeral range (32768 up), from which other processes'
     * outgoing connections take their local ports meanwhile; never one this
     * process handed out before (a cluster's ports are all free until its
     * servers start, so a draw could repeat) */
    static uint64_t rng;
    static uint16_t given[256];
    static uint32_t given_count;

    if (rng == 0)
        rng = ((uint64_t)getpid() << 32) ^ (uint64_t)(cmd_now() * 1e9) ^ 0x9e3779b97f4a7c15ull;
    for (int tries = 0; tries < 1000; tries++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        uint16_t port = (uint16_t)(10000u + rng % 22000u);
        bool is_given = false;
        for (uint32_t i = 0; i < given_count && i < AR_ARRAY_LEN(given) && !is_given; i++) {
            is_given = given[i] == port;
        }
        if (is_given)
            continue;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int rc = fd >= 0 ? bind(fd, (struct sockaddr *)&sa, sizeof(sa)) : -1;
        if (fd >= 0)
            close(fd);
        if (rc == 0) {
            given[given_count++ % AR_ARRAY_LEN(given)] = port;
            return port;
        }
    }
    return 0;
}

int cmd_cluster_start(const char *dir, uint32_t count, const char *const *serve_args,
                      uint16_t *client_ports, pid_t *pids)
{
    char nodes[800] = "";
    char cmd[1800];

    if (count == 0 || count > 7)
        return -1;
    for (uint32_t i = 0; i < count; i++) {
        client_ports[i] = cmd_free_port();
        uint16_t raft = cmd_free_port();
        if (client_ports[i] == 0 || raft == 0)
            return -1;
        snprintf(nodes + strlen(nodes), sizeof(nodes) - strlen(nodes),
                 "%s%u=127.0.0.1:%u/127.0.0.1:%u", i ? "," : "", i + 1, raft, client_ports[i]);
    }
    for (uint32_t i = 0; i < count; i++) {
        snprintf(cmd, sizeof(cmd),
                 "/proc/%d/exe format '%s/node%u' --id %u --nodes %s > /dev/null", getpid(),
                 dir, i + 1, i + 1, nodes);
        if (system(cmd) != 0)
            return -1;
    }
    for (uint32_t i = 0; i < count; i++) {
        char data[600];
        char log[600];
        snprintf(data, sizeof(data), "%s/node%u", dir, i + 1);
        snprintf(log, sizeof(log), "%s/node%u.log", dir, i + 1);
        pids[i] = fork();
        if (pids[i] == 0) {
            const char *argv[16] = {"arbor", "serve", data};
            int argc = 3;
            for (int k = 0; serve_args != NULL && serve_args[k] != NULL && argc < 15; k++) {
                argv[argc++] = serve_args[k];
            }
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
            execv("/proc/self/exe", (char *const *)argv);
            _exit(127);
        }
    }
    return 0;
}

bool cmd_cluster_listening(const uint16_t *client_ports, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        bool is_up = false;
        for (int tries = 0; tries < 200 && !is_up; tries++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(client_ports[i])};
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            is_up = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
            if (fd >= 0)
                close(fd);
            if (!is_up)
                usleep(50000);
        }
        if (!is_up)
            return false;
    }
    return true;
}

void cmd_cluster_stop(const pid_t *pids, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
        }
    }
}
