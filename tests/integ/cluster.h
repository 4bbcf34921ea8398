/* tests/integ/cluster.h - a cluster of `arbor serve` processes on
 * 127.0.0.1 for the integration tests: each test formats its own in a
 * scratch directory, starts the processes, and ends them by PID; the
 * servers' logs are checked for sanitizer reports at teardown. */
#ifndef ARBOR_TESTS_INTEG_CLUSTER_H
#define ARBOR_TESTS_INTEG_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "meta.h"

#define NODES_MAX      4
#define CALL_BUDGET_MS 10000

struct fixture {
    char dir[256];
    char arbor[512];
    uint16_t raft_port[NODES_MAX];
    uint16_t client_port[NODES_MAX];
    pid_t pid[NODES_MAX];
    int nodes;               /* processes in this test */
    const char *log_keep;    /* arbor serve --log-keep, NULL: its default */
    const char *serve_args[9]; /* more arguments of arbor serve, NULL after the last */
    int fd;                  /* the client's connection */
    int connected_to;        /* its node index, -1 if none */
    uint64_t next_id;
    uint64_t seq;            /* the numbers of the test's own changes (call_shard()) */
    uint8_t *buf;
    struct meta_response_buf *resp;
    char small_disk[256];    /* a tmpfs holding dir, mounted for the test; "" if none */
};

double now_ms(void);
/* Whether the text file at path holds part (in its first 1 MiB). */
bool file_has(const char *path, const char *part);
/* Format count nodes (voters: "1,2,3") and start them; *state is the fixture. */
int cluster_setup(void **state, const char *log_keep, int count, const char *voters);
/* The same, with more arguments for arbor format (one string, "" or NULL
 * for none) and arbor serve (NULL-terminated, at most 8; NULL for none). */
int cluster_setup_with(void **state, const char *log_keep, int count, const char *voters,
                       const char *format_args, const char *const *serve_args);
/* The same on a tmpfs of size ("320m") that the fixture mounts (and the
 * teardown unmounts), for tests of a full disk. */
int cluster_setup_small_disk(void **state, const char *size, const char *const *serve_args);
/* Fill the small disk until about want_free bytes are free (a filler file
 * on it); with 0, remove the filler. */
void small_disk_fill(struct fixture *f, uint64_t want_free);
/* Stop every node still running (SIGTERM), check their logs, clean up. */
int cluster_teardown(void **state);
void node_start(struct fixture *f, int i);
/* Send sig (after SIGCONT) to node i and reap it. */
void node_kill(struct fixture *f, int i, int sig);
/* The fixture's own blocking connection, to one node at a time. */
void client_close(struct fixture *f);
bool client_connect(struct fixture *f, int i);
bool connect_wait(struct fixture *f, int i); /* waits (bounded) while node i starts */
bool read_full(int fd, uint8_t *p, size_t len, int timeout_ms);
/* Send a request on the connection and wait for its response into f->resp. */
bool exchange(struct fixture *f, const struct meta_request *req, const struct meta_cmd *cmd);
/* The node index (0-based) leading shard 1, waiting (bounded) for one; -1 if none. */
int leader_node(struct fixture *f);

#endif /* ARBOR_TESTS_INTEG_CLUSTER_H */
