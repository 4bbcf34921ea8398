/* tests/integ/mount_proc.c - `arbor mount` processes for the integration
 * tests (mount_proc.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "mount_proc.h"

struct mount_proc mounts[MOUNTS_MAX];

bool is_mounted(const char *dir)
{
    struct stat a;
    struct stat b;
    char parent[500];

    snprintf(parent, sizeof(parent), "%s/..", dir);
    return stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

struct mount_proc *mount_start(struct fixture *f, const char *name, const char *attr_timeout)
{
    return mount_start_with(f, name, attr_timeout, NULL);
}

struct mount_proc *mount_start_with(struct fixture *f, const char *name, const char *attr_timeout,
                                    const char *const *extra)
{
    char addr[64];
    char log[500];
    struct mount_proc *mp = NULL;

    for (size_t i = 0; i < AR_ARRAY_LEN(mounts) && mp == NULL; i++) {
        if (mounts[i].pid <= 0)
            mp = &mounts[i];
    }
    assert_non_null(mp);

    snprintf(mp->dir, sizeof(mp->dir), "%s/%s", f->dir, name);
    mkdir(mp->dir, 0755);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", f->client_port[0]);
    snprintf(log, sizeof(log), "%s/%s.log", f->dir, name);
    snprintf(mp->log, sizeof(mp->log), "%s", log);
    pid_t parent = getpid();
    mp->pid = fork();
    assert_true(mp->pid >= 0);
    if (mp->pid == 0) {
        /* a test killed (by a timeout) takes its servers with it */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        /* allow_other: other users reach the mount, and the server's
         * permission checks (not FUSE's owner-only rule) decide */
        char cache[500];
        snprintf(cache, sizeof(cache), "%s/cache", f->dir);
        const char *argv[32] = {"arbor", "mount", addr, mp->dir, "--foreground",
                                "--attr-timeout", attr_timeout, "--entry-timeout", attr_timeout,
                                "-o", "allow_other", "--cache-dir", cache, "--cache-size", "8M"};
        size_t n = 15;
        for (size_t i = 0; extra != NULL && extra[i] != NULL && n + 1 < AR_ARRAY_LEN(argv); i++) {
            argv[n++] = extra[i]; /* later options win */
        }
        argv[n] = NULL;
        execv(f->arbor, (char *const *)argv);
        _exit(127);
    }
    /* A cluster the fixture has just started may still be electing, and
     * slowly on a loaded machine under the sanitizers: wait as long as the
     * mount's own start-up may (its client's 30 s budget, and some), but
     * no longer than the mount process lives. */
    int status = 0;
    pid_t ended = 0;
    for (int tries = 0; tries < 2250 && ended == 0 && !is_mounted(mp->dir); tries++) {
        ended = waitpid(mp->pid, &status, WNOHANG);
        if (ended == 0)
            usleep(20000);
    }
    if (ended != 0 || !is_mounted(mp->dir)) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "cat '%s' >&2", log);
        if (system(cmd) != 0)
            print_message("(no log)\n");
        if (ended == mp->pid)
            mp->pid = 0;
        fail_msg("%s did not mount (%s, status %#x)", mp->dir,
                 ended != 0 ? "its process ended" : "in 45 s", (unsigned)status);
    }
    return mp;
}

void mount_stop(struct mount_proc *mp)
{
    char cmd[600];

    if (mp->pid <= 0)
        return;
    snprintf(cmd, sizeof(cmd), "fusermount3 -u '%s' 2>/dev/null", mp->dir);
    if (system(cmd) != 0)
        kill(mp->pid, SIGTERM);
    int status = 0;
    waitpid(mp->pid, &status, 0);
    mp->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        /* why: the mount's log (a sanitizer's report goes there too) */
        snprintf(cmd, sizeof(cmd), "tail -n 60 '%s' >&2", mp->log);
        if (system(cmd) != 0)
            print_message("(no log)\n");
        fail_msg("the mount of %s ended with status %#x, not a clean exit", mp->dir, status);
    }
}

/* A failed test leaves its mounts: unmount them (lazily), end their processes. */
void mounts_end(void)
{
    for (size_t i = 0; i < AR_ARRAY_LEN(mounts); i++) {
        struct mount_proc *mp = &mounts[i];
        if (mp->pid <= 0)
            continue;
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "fusermount3 -u -z '%s' 2>/dev/null; echo '-- %s:' >&2; "
                                   "tail -30 '%s' >&2", mp->dir, mp->log, mp->log);
        if (system(cmd) != 0)
            print_message("could not unmount %s\n", mp->dir);
        kill(mp->pid, SIGKILL);
        waitpid(mp->pid, NULL, 0);
        mp->pid = 0;
    }
}

