/* tools/cmd.h - the subcommands of the `arbor` command. Each takes the
 * arguments after its own name (argv[0] is the subcommand) and returns the
 * process exit status: 0 success, 1 failure, 2 bad usage. */
#ifndef ARBOR_TOOLS_CMD_H
#define ARBOR_TOOLS_CMD_H

#include <stdbool.h>
#include <stdint.h>

int cmd_bench(int argc, char **argv);
int cmd_format(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_member(int argc, char **argv);
int cmd_leader(int argc, char **argv);
int cmd_mount(int argc, char **argv);
/* cmd_mount's options read and checked, nothing started: 0, or 2 with the
 * error said (the metadata addresses are not checked). */
int cmd_mount_check(int argc, char **argv);
/* dir is a directory to mount on, else false with why said as "arbor WHO:
 * …": not there, not a directory, or a live FUSE mount already on it. A
 * mount left there by a process that died is unmounted first. */
bool cmd_mount_point_ready(const char *who, const char *dir);
/* Not for people: what a mount starts as its guard (client.h, ar_mount_guard). */
int cmd_mount_guard(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_down(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_window(int argc, char **argv);

struct meta_request;
struct meta_response_buf;
struct meta_cmd;
/* One request (with cmd, or NULL) to the replica at addr ("host:port"),
 * waiting for its response; 0 or the response's rc, else a reason in why. */
int cmd_ask(const char *addr, const struct meta_request *req, const struct meta_cmd *cmd,
            struct meta_response_buf *out, char *why, size_t why_cap);

struct meta_map;
/* The shard map as the replica at addr holds it (a follower read), decoded
 * into m; out is scratch. 0, or an error. */
int cmd_fetch_map(const char *addr, struct meta_response_buf *out, struct meta_map *m);
/* bytes as "12.3 MiB" */
const char *cmd_human_bytes(uint64_t bytes, char out[32]);
/* Parse a size such as 4096, 64K, 4M, 1G or 1T into *out; false if malformed. */
bool cmd_parse_size(const char *s, uint64_t *out);
/* Parse a whole number in [min, max]; false if malformed or out of range. */
bool cmd_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out);
bool cmd_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parse a number of seconds, 0 or more (fractions allowed); false if malformed. */
bool cmd_parse_seconds(const char *s, double *out);
/* Parse a duration such as 90, 90s, 15m, 36h or 7d into seconds (1 and up,
 * at most 2^32 - 1); false if malformed. */
bool cmd_parse_duration(const char *s, uint64_t *seconds);

/* A TCP port on 127.0.0.1 free a moment ago (0 if none): for the benchmarks,
 * which start servers of their own. */
uint16_t cmd_free_port(void);

/* The client addresses of the local cluster `arbor up` runs, comma-separated,
 * and its pid (may be NULL); -ENOENT if none is up. */
#include <sys/types.h>
int cmd_local_meta(char *addrs, size_t cap, pid_t *pid);

/* A cluster of count replicas (at most 7) for a benchmark: formatted in
 * dir/node<i> and started as `arbor serve` processes (with serve_args,
 * NULL-terminated, or NULL), logs in dir/node<i>.log; their client ports
 * and pids out. -1 if a port or a format fails. */
int cmd_cluster_start(const char *dir, uint32_t count, const char *const *serve_args,
                      uint16_t *client_ports, pid_t *pids);
/* Wait (at most 10 s) until every port takes connections. */
bool cmd_cluster_listening(const uint16_t *client_ports, uint32_t count);
/* SIGTERM each pid > 0 and reap it. */
void cmd_cluster_stop(const pid_t *pids, uint32_t count);

/* The metadata servers' client addresses into o: from meta ("host:port,..."),
 * or with meta NULL the local cluster arbor up runs; false (said on stderr
 * as `arbor <who>: ...`) if there is none. */
struct ar_client_options;
bool cmd_meta_options(const char *who, const char *meta, struct ar_client_options *o);

/* Seconds on the monotonic clock. */
double cmd_now(void);

#endif /* ARBOR_TOOLS_CMD_H */
