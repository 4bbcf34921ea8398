/* tests/integ/posix_ops.h - random POSIX call sequences, run the same on two
 * directory trees (a mount and a local directory) and compared call by call:
 * return values, errno, and what was read (hashed). */
#ifndef ARBOR_TESTS_INTEG_POSIX_OPS_H
#define ARBOR_TESTS_INTEG_POSIX_OPS_H

#include <stddef.h>
#include <stdint.h>

#define POSIX_STEPS_MAX 4000

struct posix_result {
    long ret;        /* -1, or what the call returned (an opened fd counts as 0) */
    int err;         /* errno when ret is -1 */
    uint64_t value;  /* a hash of what a read, stat or list saw */
};

/* Run `steps` calls chosen by seed under root (which must be empty), into
 * out[0..steps). The same seed makes the same calls. */
void posix_run(const char *root, uint64_t seed, unsigned steps, struct posix_result *out);

/* A description of call i of seed's sequence, for a failure message. */
void posix_describe(uint64_t seed, unsigned i, char *buf, size_t cap);

#endif
