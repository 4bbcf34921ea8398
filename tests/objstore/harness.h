/* tests/objstore/harness.h - helpers for the object-store tests: scratch
 * directories and real helper processes (s3rver, the flaky proxy) on
 * 127.0.0.1, each started here and stopped by its PID. */
#ifndef ARBOR_TESTS_OBJSTORE_HARNESS_H
#define ARBOR_TESTS_OBJSTORE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HARNESS_BUCKET "arbor-test"

struct harness_proc {
    pid_t pid;
    int port;
    char dir[256]; /* the process's scratch directory, "" if none */
};

/* mkdtemp under $TMPDIR (or /tmp); aborts the test on failure. */
void harness_tmpdir(char out[256]);

/* rm -rf path, without following symlinks. */
void harness_rm_rf(const char *path);

/* Start s3rver with bucket HARNESS_BUCKET on a free port; wait (bounded) for
 * its "listening" line. Sets AWS_ACCESS_KEY_ID/SECRET to its fixed pair. */
void harness_s3rver_start(struct harness_proc *p);

/* Start tests/objstore/flaky_proxy.py in front of upstream_port. The proxy
 * logs requests to the file log_path. */
void harness_proxy_start(struct harness_proc *p, int upstream_port, const char *mode, int count,
                         const char *log_path);

/* SIGTERM, wait, remove the scratch directory. */
void harness_proc_stop(struct harness_proc *p);

/* The s3:// URL of a store on the server at port, with extra query (may be ""). */
void harness_s3_url(char *out, size_t cap, int port, const char *prefix, const char *extra);

/* Lines in a file that contain needle. */
int harness_count_lines(const char *path, const char *needle);

/* A port on 127.0.0.1 that nothing listens on (bound, then closed). */
int harness_closed_port(void);

#endif
