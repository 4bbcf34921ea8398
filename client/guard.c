/* client/guard.c - the mount's guard: a crashed mount must not hang its
 * callers forever (client.h).
 *
 * The kernel ends a FUSE connection, failing every request in it with
 * ENOTCONN, when the last open file of /dev/fuse closes. A mount process
 * killed while one of its threads waits inside a write to /dev/fuse (an
 * invalidation waiting for a directory's lock, held by a rename waiting
 * for an answer only this process could give) never closes it: that
 * thread cannot die until the lock is free, the lock is not freed until
 * the rename is answered, and every process using the mount waits,
 * unkillable. jepsen's mount-kill nemesis wedged this way at its first
 * kill. So the mount starts a guard, a process of its own (exec'd, so it
 * shares none of the mount's memory), which the kernel signals when the
 * mount's main thread ends (PR_SET_PDEATHSIG). If the mount still stands
 * then, the guard aborts its connection (fusectl's abort file): callers
 * get ENOTCONN and the mount point reads "Transport endpoint is not
 * connected" until it is unmounted, as after any FUSE server's crash. A
 * clean unmount ends the guard first (mount_guard_stop()). */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"

extern char **environ;

/* mountinfo writes space, tab, newline and backslash as \ooo. */
static void mountinfo_unescape(char *s)
{
    char *out = s;

    for (char *in = s; *in != '\0'; in++) {
        if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] >= '0' && in[2] <= '7' &&
            in[3] >= '0' && in[3] <= '7') {
            *out++ = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 + (in[3] - '0'));
            in += 3;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
}

bool mount_conn_find(const char *mountpoint, uint32_t conn, uint32_t *out)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL;
    size_t cap = 0;
    bool is_found = false;

    if (f == NULL)
        return false;
    /* bounded by the mount table */
    while (getline(&line, &cap, f) > 0) {
        unsigned major;
        unsigned minor;
        int path_at = 0;
        int path_end = 0;
        char *dash = strstr(line, " - ");
        if (dash == NULL || strncmp(dash + 3, "fuse", 4) != 0 ||
            sscanf(line, "%*u %*u %u:%u %*s %n%*s%n", &major, &minor, &path_at, &path_end) != 2 ||
            path_end == 0 || major != 0)
            continue;
        line[path_end] = '\0';
        mountinfo_unescape(line + path_at);
        /* by path: the last such line is the mount on top */
        if (mountpoint != NULL ? strcmp(line + path_at, mountpoint) == 0 : minor == conn) {
            *out = minor;
            is_found = true;
        }
    }
    free(line);
    fclose(f);
    return is_found;
}

/* Abort conn through the fusectl file system mounted at dir. */
static bool conn_abort_at(const char *dir, uint32_t conn)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/%" PRIu32 "/abort", dir, conn);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool is_done = write(fd, "1", 1) == 1;
    close(fd);
    return is_done;
}

bool mount_conn_abort(uint32_t conn)
{
    if (conn_abort_at("/sys/fs/fuse/connections", conn))
        return true;
    /* fusectl is not where systemd mounts it: mounted for the moment, in
     * a directory of our own (root only). Never `umount -f`: it would take
     * the mount away when nothing holds it, and writers would then write
     * to the directory beneath it. */
    char dir[] = "/tmp/arbor-fusectl.XXXXXX";
    if (mkdtemp(dir) == NULL)
        return false;
    bool is_done = mount("fusectl", dir, "fusectl", 0, NULL) == 0 && conn_abort_at(dir, conn);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
    return is_done;
}

pid_t mount_guard_start(const char *program, uint32_t conn, const char *mountpoint)
{
    char pid_text[24];
    char conn_text[24];
    snprintf(pid_text, sizeof(pid_text), "%ld", (long)getpid());
    snprintf(conn_text, sizeof(conn_text), "%" PRIu32, conn);
    char *argv[] = {"arbor", "mount-guard", pid_text, conn_text, (char *)mountpoint, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t blocked;
    pid_t pid = 0;

    /* the guard waits for its signal blocked, and a Ctrl-C or SIGTERM for
     * the mount's process group must not end it first */
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGHUP);
    posix_spawn_file_actions_init(&fa);
    /* above all /dev/fuse: a guard holding it would keep the connection */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &blocked);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    int rc = posix_spawn(&pid, program, &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        ar_log(AR_LOG_WARN, "no guard (%s: %s): if this mount is killed while the kernel "
                            "waits on it, `umount -f %s` frees what waits", program,
               strerror(rc), mountpoint);
        return 0;
    }
    return pid;
}

void mount_guard_stop(pid_t guard)
{
    if (guard > 0 && kill(guard, SIGKILL) == 0)
        waitpid(guard, NULL, 0);
}

int ar_mount_guard(pid_t mount_pid, uint32_t conn, const char *mountpoint)
{
    sigset_t wait_for;
    uint32_t found;

    sigemptyset(&wait_for);
    sigaddset(&wait_for, SIGUSR1);
    sigprocmask(SIG_BLOCK, &wait_for, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGUSR1) != 0)
        return 1;
    /* the mount ended before the line above: its signal never comes */
    if (getppid() == mount_pid) {
        /* bounded: PR_SET_PDEATHSIG delivers SIGUSR1 when the mount's main
         * thread ends; other signals are ignored */
        while (sigwaitinfo(&wait_for, NULL) != SIGUSR1) {
        }
    }
    /* an unmount (by the mount, or fusermount3 -u) took it away: done */
    if (!mount_conn_find(NULL, conn, &found))
        return 0;
    if (mount_conn_abort(conn))
        ar_log(AR_LOG_WARN, "the mount process %ld ended without unmounting %s: its FUSE "
                            "connection is aborted (fusermount3 -u %s clears the mount point)",
               (long)mount_pid, mountpoint, mountpoint);
    else
        ar_log(AR_LOG_ERROR, "the mount process %ld ended without unmounting %s, and its FUSE "
                             "connection could not be aborted (no fusectl): if anything "
                             "waits on it, umount -f %s frees it",
               (long)mount_pid, mountpoint, mountpoint);
    return 0;
}
