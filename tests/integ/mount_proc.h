/* tests/integ/mount_proc.h - `arbor mount --foreground` processes on a
 * test cluster's directory, started here and stopped by fusermount3 -u
 * and their PID. Needs root and /dev/fuse. */
#ifndef ARBOR_TESTS_INTEG_MOUNT_PROC_H
#define ARBOR_TESTS_INTEG_MOUNT_PROC_H

#include <stdbool.h>
#include <sys/types.h>

struct fixture;

#define MOUNTS_MAX 4

struct mount_proc {
    pid_t pid;
    char dir[400];
    char log[500];
};

/* The running test's mounts, here (not on its stack) so that a teardown
 * finds them after a failed assertion left the test. */
extern struct mount_proc mounts[MOUNTS_MAX];

bool is_mounted(const char *dir);
/* Mount the fixture's cluster on f->dir/name; waits (bounded) for it. */
struct mount_proc *mount_start(struct fixture *f, const char *name, const char *attr_timeout);
/* The same with more `arbor mount` arguments (NULL-terminated; NULL for none). */
struct mount_proc *mount_start_with(struct fixture *f, const char *name, const char *attr_timeout,
                                    const char *const *extra);
/* Unmount and reap; asserts a clean exit. */
void mount_stop(struct mount_proc *mp);
/* For teardowns: unmount (lazily) and end every mount still running. */
void mounts_end(void);

#endif /* ARBOR_TESTS_INTEG_MOUNT_PROC_H */
