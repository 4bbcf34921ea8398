/* tools/arbor.c - the `arbor` command: one binary, one subcommand per verb.
 * Exit status: 0 success, 1 failure, 2 bad usage (as getopt tools do). */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "meta.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"format", cmd_format, "make a data directory a replica of a new cluster"},
    {"serve", cmd_serve, "run the metadata server of a replica"},
    {"status", cmd_status, "what each replica of a cluster sees: roles, terms, indexes, lag"},
    {"member", cmd_member, "add, promote or remove a replica, one at a time"},
    {"leader", cmd_leader, "hand the leadership to another replica"},
    {"mount", cmd_mount, "serve a volume on a mount point through FUSE"},
    {"up", cmd_up, "run a local cluster, a file:// store and the mount, in one command"},
    {"down", cmd_down, "stop what arbor up runs"},
    {"restore", cmd_restore, "put a path back as it was at an earlier moment"},
    {"window", cmd_window, "print or change the recovery window"},
    {"gc", cmd_gc, "delete blocks nothing inside the recovery window names"},
    {"bench", cmd_bench, "measure a part of arbor and print figures (arbor bench --help)"},
    {"mount-guard", cmd_mount_guard, NULL}, /* started by a mount, not listed */
};

static void usage(FILE *to)
{
    fprintf(to, "usage: arbor COMMAND [ARGS...]\n\n"
                "arbor is a distributed POSIX file system for machine-learning training data.\n\n"
                "commands:\n");
    for (size_t i = 0; i < AR_ARRAY_LEN(commands); i++) {
        if (commands[i].summary != NULL)
            fprintf(to, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(to, "\n  arbor COMMAND --help   shows a command's options\n"
                "  arbor --version        prints the version\n");
}

bool cmd_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    unsigned long long n;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    n = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max)
        return false;
    *out = n;
    return true;
}

bool cmd_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t n;

    if (!cmd_parse_u64(s, min, max, &n))
        return false;
    *out = (uint32_t)n;
    return true;
}

bool cmd_parse_seconds(const char *s, double *out)
{
    char *end = NULL;

    if (s == NULL || ((s[0] < '0' || s[0] > '9') && s[0] != '.'))
        return false;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= 0 && v <= 86400.0 * 365))
        return false;
    *out = v;
    return true;
}

bool cmd_parse_size(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long n;
    uint64_t unit = 1;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    n = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    if (*end == 'K' || *end == 'k')
        unit = 1ull << 10;
    else if (*end == 'M' || *end == 'm')
        unit = 1ull << 20;
    else if (*end == 'G' || *end == 'g')
        unit = 1ull << 30;
    else if (*end == 'T' || *end == 't')
        unit = 1ull << 40;
    else if (*end != '\0')
        return false;
    if (*end != '\0' && end[1] != '\0')
        return false;
    if (n > UINT64_MAX / unit)
        return false;
    *out = n * unit;
    return true;
}

double cmd_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    /* A peer that closes its end (a server killed, a reader gone) must fail
     * that one write with EPIPE, not end the process: libuv's socket writes
     * do not ask the kernel to spare the signal. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("arbor %s\n", ARBOR_VERSION);
        return 0;
    }
    for (size_t i = 0; i < AR_ARRAY_LEN(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            /* getopt names argv[0] in its messages: "arbor gc: unrecognized
             * option", not "gc: …" */
            char name[64];
            snprintf(name, sizeof(name), "arbor %s", commands[i].name);
            argv[1] = name;
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "arbor: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
