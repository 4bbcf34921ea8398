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

/* Parse a size such as 4096, 64K, 4M or 1G into *out; false if malformed. */
bool cmd_parse_size(const char *s, uint64_t *out);

/* Seconds on the monotonic clock. */
double cmd_now(void);

#endif /* ARBOR_TOOLS_CMD_H */
