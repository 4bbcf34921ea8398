/* tools/mount.c - `arbor mount`: serve a volume through FUSE (client.h). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "client.h"
#include "cmd.h"


static void usage(FILE *to)
{
    fprintf(to,
            "usage: arbor mount HOST:PORT[,HOST:PORT...] MOUNTPOINT [options]\n\n"
            "Mount the volume whose metadata servers listen at the client addresses\n"
            "given (one is enough: the others come from the shard map) on MOUNTPOINT,\n"
            "a directory. Runs until unmounted (fusermount3 -u MOUNTPOINT) or stopped\n"
            "(SIGTERM to the pid it names as it detaches; Ctrl-C in the foreground).\n"
            "A mount left there by a process that died is cleared first.\n\n"
            "  --foreground         stay in the foreground; by default the mount detaches\n"
            "                       once it serves (errors before that reach the\n"
            "                       terminal, and the exit status says if it mounted)\n"
            "  --log FILE           once mounted, append the log to FILE (default: stderr\n"
            "                       in the foreground; detached, syslog as arbor-mount,\n"
            "                       or where no syslog listens (as in most containers)\n"
            "                       $XDG_STATE_HOME/arbor/mount-MOUNTPOINT.log, else\n"
            "                       ~/.local/state/arbor/mount-MOUNTPOINT.log, with\n"
            "                       MOUNTPOINT's slashes as dashes, its dashes as %%2d)\n"
            "  --threads N          threads for requests that may wait (reads, writes,\n"
            "                       changes; default 16); one more reads every request\n"
            "                       and answers lookups, stats and opens for reading\n"
            "  --single-threaded    serve every FUSE request on one thread\n"
            "  --entry-timeout S    the kernel caches names S seconds (default 1)\n"
            "  --attr-timeout S     and attributes (default 1); this mount answers the\n"
            "                       kernel from what the servers promised to tell it of\n"
            "                       (attribute leases) while it heard from them within\n"
            "                       the shorter of the two\n"
            "  --no-leases          ask the servers for every lookup and stat the kernel\n"
            "                       sends\n"
            "  --no-kernel-grants   with leases, let the kernel keep answers for the\n"
            "                       timeouts only; by default (timeouts of 1 s or more)\n"
            "                       it keeps them as long as the servers promised, and\n"
            "                       this mount takes them back when they change\n"
            "  --no-open-from-leases\n"
            "                       ask the servers for a file's map at every open;\n"
            "                       by default a leased file whose map this mount\n"
            "                       kept opens without asking (still close-to-open)\n"
            "  --store URL          the object store (default: the one the volume names)\n"
            "  --write-buffer MB    memory all open files' write buffers may hold:\n"
            "                       past it writes commit at once and idle buffers\n"
            "                       give their pages back (default 256)\n"
            "  --cache-dir DIR      keep blocks read or written on local disk there\n"
            "                       (default $XDG_CACHE_HOME/arbor or ~/.cache/arbor)\n"
            "  --cache-size SIZE    at most this much, least recently used out, and never\n"
            "                       past nine tenths of its disk (default 10G)\n"
            "  --no-cache           no disk cache\n"
            "  --no-passthrough     read every cached block through this mount; by\n"
            "                       default the kernel reads a file that is one cached\n"
            "                       block from the cache itself (Linux 6.9 or later,\n"
            "                       checked at each open)\n"
            "  --no-io-uring        take requests by reads of /dev/fuse; by default\n"
            "                       they come over io_uring, a queue a CPU, where the\n"
            "                       kernel offers it (Linux 6.14 or later, with\n"
            "                       /sys/module/fuse/parameters/enable_uring set to Y)\n"
            "  --read-ahead SIZE    the kernel reads up to SIZE ahead of a sequential\n"
            "                       reader (default 4M, a block; 0: the kernel's own\n"
            "                       128K; set as root only)\n"
            "  -o OPTS              more options for the kernel, e.g. allow_other (for\n"
            "                       other users; permissions are always checked)\n");
}

/* An option that takes a value (c, with optarg) into o, cache or
 * cache_bytes; false, said, if the value is wrong. */
static bool mount_value(int c, const char *arg, struct ar_mount_options *o, char cache[600],
                        uint64_t *cache_bytes)
{
    const char *wrong = NULL;
    uint64_t bytes = 0;
    char cwd[400];

    if (c == 't' && !cmd_parse_u32(arg, 1, 64, &o->threads))
        wrong = "--threads wants a number from 1 to 64";
    else if (c == 'e' && !cmd_parse_seconds(arg, &o->entry_timeout_s))
        wrong = "--entry-timeout wants seconds, 0 or more";
    else if (c == 'a' && !cmd_parse_seconds(arg, &o->attr_timeout_s))
        wrong = "--attr-timeout wants seconds, 0 or more";
    else if (c == 'w' && !cmd_parse_u32(arg, 1, 1u << 20, &o->write_buffer_mb))
        wrong = "--write-buffer wants megabytes, from 1 to 1048576";
    else if (c == 'C' && (!cmd_parse_size(arg, cache_bytes) || *cache_bytes < (8u << 20)))
        wrong = "--cache-size wants a size of 8M or more";
    else if (c == 'r' && (!cmd_parse_size(arg, &bytes) || bytes > (256u << 20) ||
                          (bytes != 0 && bytes < 4096)))
        wrong = "--read-ahead wants a size from 4K to 256M, or 0";
    else if (c == 'r')
        o->read_ahead_kb = (uint32_t)(bytes >> 10);
    else if (c == 'c' && arg[0] != '/' && arg[0] != '\0' && getcwd(cwd, sizeof(cwd)) == NULL)
        wrong = "--cache-dir: name it from /";
    else if (c == 'c' && arg[0] != '/' && arg[0] != '\0') /* absolute: a detached mount runs in / */
        snprintf(cache, 600, "%s/%s", cwd, arg);
    else if (c == 'c')
        snprintf(cache, 600, "%s", arg);
    if (wrong != NULL)
        fprintf(stderr, "arbor mount: %s\n", wrong);
    return wrong == NULL;
}

/* Read the options into o (cache: its directory, cache_bytes its bound):
 * -1 to go on, else the exit status (0 after --help, 2 with the error said). */
static int mount_options(int argc, char **argv, struct ar_mount_options *o, char cache[600],
                         uint64_t *cache_bytes, const char **log_path, bool *is_foreground)
{
    static const struct option longopts[] = {
        {"foreground", no_argument, NULL, 'f'},
        {"log", required_argument, NULL, 'l'},
        {"single-threaded", no_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'},
        {"entry-timeout", required_argument, NULL, 'e'},
        {"attr-timeout", required_argument, NULL, 'a'},
        {"store", required_argument, NULL, 'S'},
        {"write-buffer", required_argument, NULL, 'w'},
        {"cache-dir", required_argument, NULL, 'c'},
        {"cache-size", required_argument, NULL, 'C'},
        {"no-cache", no_argument, NULL, 'n'},
        {"no-passthrough", no_argument, NULL, 'P'},
        {"no-io-uring", no_argument, NULL, 'U'},
        {"read-ahead", required_argument, NULL, 'r'},
        {"no-leases", no_argument, NULL, 'L'},
        {"no-kernel-grants", no_argument, NULL, 'G'},
        {"no-open-from-leases", no_argument, NULL, 'O'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int c;

    *o = (struct ar_mount_options){.entry_timeout_s = 1.0, .attr_timeout_s = 1.0,
                                   .read_ahead_kb = AR_READ_AHEAD_KB_DEFAULT};
    *cache_bytes = 10ull << 30;
    *log_path = NULL;
    *is_foreground = false;
    /* the disk cache by default: $XDG_CACHE_HOME/arbor, else ~/.cache/arbor */
    if (xdg != NULL && xdg[0] != '\0')
        snprintf(cache, 600, "%s/arbor", xdg);
    else if (home != NULL && home[0] != '\0')
        snprintf(cache, 600, "%s/.cache/arbor", home);
    else
        cache[0] = '\0';
    optind = 0; /* glibc: start over (cmd_mount_check may have parsed these before) */
    while ((c = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': *is_foreground = true; break;
        case 'l': *log_path = optarg; break;
        case 's': o->is_single_threaded = true; break;
        case 'S': o->store_url = optarg; break;
        case 'o': o->fuse_opts = optarg; break;
        case 'n': cache[0] = '\0'; break;
        case 'P': o->no_passthrough = true; break;
        case 'U': o->no_uring = true; break;
        case 'L': o->no_leases = true; break;
        case 'G': o->no_kernel_grants = true; break;
        case 'O': o->no_open_from_leases = true; break;
        case 'h': usage(stdout); return 0;
        case 't': case 'e': case 'a': case 'w': case 'c': case 'C': case 'r':
            if (!mount_value(c, optarg, o, cache, cache_bytes))
                return 2;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 2 != argc) {
        usage(stderr);
        return 2;
    }
    o->mountpoint = argv[optind + 1];
    o->cache_dir = cache;
    o->cache_mb = (uint32_t)(*cache_bytes >> 20);
    return -1;
}

int cmd_mount_check(int argc, char **argv)
{
    struct ar_mount_options o;
    char cache[600];
    uint64_t cache_bytes;
    const char *log_path;
    bool is_foreground;
    int rc = mount_options(argc, argv, &o, cache, &cache_bytes, &log_path, &is_foreground);

    return rc < 0 ? 0 : rc;
}

/* Where the mount's log goes once it serves, and, detached, how it tells
 * the command that started it that it does. */
struct handover {
    int log_fd;   /* -1: stderr in the foreground, syslog detached */
    const char *log_path;
    int ready_fd; /* detached: the pipe the starting command reads; else -1 */
};

static void syslog_sink(enum ar_log_level level, const char *line, void *data)
{
    static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    (void)data;
    syslog(priorities[level], "%s", line);
}

/* Mounted: the log moves to its place and, detached, the mount leaves the
 * terminal and lets the starting command exit 0. */
static void on_mounted(void *arg)
{
    struct handover *h = arg;

    if (h->ready_fd >= 0) {
        sigset_t pending;
        if (sigpending(&pending) == 0 && (sigismember(&pending, SIGINT) == 1 ||
                                          sigismember(&pending, SIGTERM) == 1 ||
                                          sigismember(&pending, SIGHUP) == 1)) {
            /* stopped while it started: it unmounts at once; stay attached,
             * and the starting command says it did not mount */
            close(h->ready_fd);
            h->ready_fd = -1;
            return;
        }
        setsid(); /* from now on no terminal's signal reaches it */
        ar_log(AR_LOG_INFO, "detached as pid %ld; the log goes to %s", (long)getpid(),
               h->log_fd >= 0 ? h->log_path : "syslog (arbor-mount)");
        int null = open("/dev/null", O_RDWR | O_CLOEXEC); /* above 2: see cmd_mount */
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            if (h->log_fd < 0)
                dup2(null, STDERR_FILENO);
            close(null);
        }
        if (h->log_fd < 0) {
            openlog("arbor-mount", LOG_PID, LOG_DAEMON);
            ar_log_set_sink(syslog_sink, NULL);
        }
        if (chdir("/") != 0)
            ar_log(AR_LOG_WARN, "cannot change to /: %s", strerror(errno));
    }
    if (h->log_fd >= 0) {
        dup2(h->log_fd, STDERR_FILENO);
        close(h->log_fd);
        h->log_fd = -1;
    }
    if (h->ready_fd >= 0) {
        ssize_t n;
        do {
            n = write(h->ready_fd, "m", 1);
        } while (n < 0 && errno == EINTR);
        close(h->ready_fd);
        h->ready_fd = -1;
    }
}

/* The child a detaching command waits for, and the stop signal it passed
 * on (0 none). */
static volatile pid_t detached_pid;
static volatile sig_atomic_t detached_stop;

static void pass_stop(int sig)
{
    detached_stop = sig;
    kill(detached_pid, sig);
}

/* Detached: fork before any thread starts (a fork keeps only the thread
 * that calls it), and wait here until the child serves or fails. A stop
 * signal meanwhile (Ctrl-C) is passed on and ends the wait: the child,
 * which takes stop signals once it serves, keeps it pending and ends then,
 * attached, whether or not it mounted. Returns -1 in the child, else the
 * exit status for this, the starting command. */
static int detach(struct handover *h)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        fprintf(stderr, "arbor mount: cannot detach: %s\n", strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "arbor mount: cannot detach: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        h->ready_fd = fds[1];
        return -1;
    }
    close(fds[1]);
    detached_pid = pid;
    struct sigaction sa = {.sa_handler = pass_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    char byte;
    ssize_t n;
    do {
        n = read(fds[0], &byte, 1);
    } while (n < 0 && errno == EINTR && detached_stop == 0);
    close(fds[0]);
    if (n == 1)
        return 0;
    if (detached_stop != 0)
        return 128 + detached_stop; /* the child ends on its own, mounted or not */
    /* it ended before it served: it said why on our stderr */
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        return WEXITSTATUS(status);
    fprintf(stderr, "arbor mount: the mount's process ended before it served\n");
    return 1;
}

/* Whether a syslog daemon listens on /dev/log. Without one, as in most
 * containers, syslog(3) drops every line without a word. */
static bool has_syslog(void)
{
    static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
    struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
    bool is_heard = false;

    for (size_t i = 0; i < AR_ARRAY_LEN(types) && !is_heard; i++) {
        int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
        is_heard = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0)
            close(fd);
    }
    return is_heard;
}

/* The log of a detached mount where no syslog listens: STATE/arbor/
 * mount-<the mount point's absolute path>.log, each '/' written as '-'
 * and each '-' or '%' of a name as %2d or %25, so that /a-b and /a/b
 * log apart; STATE is $XDG_STATE_HOME or ~/.local/state, its directories
 * made (0700). False, with a message, if there is no such place. */
static bool state_log_path(const char *mountpoint, char *out, size_t cap)
{
    char dir[512];
    const char *state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char *abs = realpath(mountpoint, NULL);
    struct stat st;
    int n;

    if (state != NULL && state[0] == '/')
        n = snprintf(dir, sizeof(dir), "%s/arbor", state);
    else if (home != NULL && home[0] == '/' && stat(home, &st) == 0 && S_ISDIR(st.st_mode))
        n = snprintf(dir, sizeof(dir), "%s/.local/state/arbor", home);
    else
        n = -1; /* a home that is not there is not made */
    bool is_named = abs != NULL && n > 0 && (size_t)n < sizeof(dir) && ar_mkdirs(dir, 0700) == 0;
    if (is_named) {
        size_t len = (size_t)snprintf(out, cap, "%s/mount", dir); /* "/": mount-.log */
        for (const char *p = abs; *p != '\0' && len < cap; p++) {
            if (*p == '/')
                len += (size_t)snprintf(out + len, cap - len, "-");
            else if (*p == '-' || *p == '%')
                len += (size_t)snprintf(out + len, cap - len, "%%%02x", (unsigned)*p);
            else
                len += (size_t)snprintf(out + len, cap - len, "%c", *p);
        }
        is_named = len < cap && (size_t)snprintf(out + len, cap - len, ".log") < cap - len;
    }
    if (!is_named)
        fprintf(stderr, "arbor mount: no syslog listens here (/dev/log), and no place for "
                        "the log in $XDG_STATE_HOME or ~/.local/state: name one with --log "
                        "FILE, or stay in the --foreground\n");
    free(abs);
    return is_named;
}

/* The file system type /proc/self/mountinfo lists for a mount on dir (an
 * absolute path) into type; false if nothing is mounted there. Read from
 * the kernel's table: nothing asks the mount's process, which may be
 * stopped or waiting on its servers. */
static bool mount_type_at(const char *dir, char *type, size_t cap)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    bool is_found = false;

    if (f == NULL)
        return false;
    /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE ...";
     * bounded by the table's lines; a later mount on the path wins */
    while (fgets(line, sizeof(line), f) != NULL) {
        char point[4096];
        const char *dash = strstr(line, " - ");
        if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 || dash == NULL)
            continue;
        /* mountinfo writes a space, tab, newline or backslash as \ooo */
        char *w = point;
        for (const char *r = point; *r != '\0'; w++) {
            unsigned v;
            if (r[0] == '\\' && sscanf(r + 1, "%3o", &v) == 1 && strlen(r) >= 4) {
                *w = (char)v;
                r += 4;
            } else {
                *w = *r++;
            }
        }
        *w = '\0';
        char fstype[64];
        if (strcmp(point, dir) == 0 && sscanf(dash + 3, "%63s", fstype) == 1) {
            snprintf(type, cap, "%s", fstype);
            is_found = true;
        }
    }
    fclose(f);
    return is_found;
}

/* Whether the FUSE mount on dir answers ENOTCONN, as one whose process
 * died does (its guard aborted the connection): asked in a child, so that
 * a mount that is stopped or waiting on its servers cannot hold this
 * command; no answer within 2 s counts as alive. */
static bool fuse_mount_is_dead(const char *dir)
{
    pid_t pid = fork();

    if (pid == 0) {
        struct statfs fs;
        _exit(statfs(dir, &fs) != 0 && errno == ENOTCONN ? 1 : 0);
    }
    int status = 0;
    pid_t ended = 0;
    for (int tries = 0; pid > 0 && tries < 200 && ended == 0; tries++) { /* 2 s */
        ended = waitpid(pid, &status, WNOHANG);
        if (ended == 0)
            usleep(10000);
    }
    if (pid > 0 && ended == 0) {
        kill(pid, SIGKILL); /* a FUSE wait ends on a fatal signal */
        waitpid(pid, NULL, 0);
    }
    return ended == pid && WIFEXITED(status) && WEXITSTATUS(status) == 1;
}

/* 0 if dir is a directory to mount on, else an errno: EBUSY for a live
 * FUSE mount there (mounting on top would hide it, and what was written
 * to it, without a word), its type in type. A mount whose process died
 * (ENOTCONN, kept so that nothing writes beneath it unseen) is lazily
 * unmounted first, said as "arbor WHO: …": mounting there again is asked
 * for. */
static int mount_point_check(const char *who, const char *dir, char *type, size_t cap)
{
    char abs[2048];
    char name[1024];
    struct stat st;

    AR_ASSERT(who != NULL && dir != NULL && type != NULL);
    /* as mountinfo names it: the parent's real path (symbolic links
     * followed) and the last name; not realpath(dir) itself, which would
     * ask the mount's process */
    snprintf(name, sizeof(name), "%s", dir);
    for (size_t n = strlen(name); n > 1 && name[n - 1] == '/'; n--)
        name[n - 1] = '\0';
    char *slash = strrchr(name, '/');
    const char *last = slash != NULL ? slash + 1 : name;
    const char *up = slash == NULL ? "." : slash == name ? "/" : name;
    if (slash != NULL && slash != name)
        slash[0] = '\0'; /* name is the parent now; last still points past it */
    char *parent = realpath(up, NULL);
    if (parent == NULL)
        snprintf(abs, sizeof(abs), "%s", dir); /* no parent: stat() below says so */
    else
        snprintf(abs, sizeof(abs), "%s/%s", strcmp(parent, "/") == 0 ? "" : parent, last);
    free(parent);
    bool is_fuse = mount_type_at(abs, type, cap) && strncmp(type, "fuse", 4) == 0;
    if (is_fuse && fuse_mount_is_dead(dir)) {
        char *argv[] = {"fusermount3", "-u", "-z", (char *)dir, NULL};
        pid_t pid;
        int status = 0;
        if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) == 0 &&
            waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            fprintf(stderr, "arbor %s: %s held a mount whose process had ended; unmounted "
                            "it\n", who, dir);
        is_fuse = mount_type_at(abs, type, cap) && strncmp(type, "fuse", 4) == 0;
    }
    if (is_fuse)
        return EBUSY;
    if (stat(dir, &st) != 0)
        return errno;
    return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}

bool cmd_mount_point_ready(const char *who, const char *dir)
{
    char type[64] = "";
    int err = mount_point_check(who, dir, type, sizeof(type));

    if (err == EBUSY)
        fprintf(stderr, "arbor %s: %s: a FUSE file system (%s) is mounted there already, "
                        "another arbor mount most likely: unmount it first (fusermount3 -u)\n",
                who, dir, type);
    else if (err != 0)
        fprintf(stderr, "arbor %s: %s: %s\n", who, dir,
                err == ENOENT     ? "no such directory (make it first)"
                : err == ENOTCONN ? "a mount whose process ended (fusermount3 -u -z it)"
                                  : strerror(err));
    return err == 0;
}

int cmd_mount(int argc, char **argv)
{
    struct ar_mount_options o;
    char errmsg[AR_ERRMSG_MAX] = "";
    char cache[600];
    uint64_t cache_bytes;
    const char *log_path;
    bool is_foreground;
    int rc = mount_options(argc, argv, &o, cache, &cache_bytes, &log_path, &is_foreground);

    if (rc >= 0)
        return rc;
    if (!cmd_meta_options("mount", argv[optind], &o.meta))
        return 2;
    /* fds 0..2 open, so that what is opened below (the log, the pipe) is
     * not among those a detached mount points elsewhere */
    int fd;
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= STDERR_FILENO) {
    }
    if (fd > STDERR_FILENO)
        close(fd);
    /* the mount point, before waiting on servers for it */
    if (!cmd_mount_point_ready("mount", o.mountpoint))
        return 1;
    char state_log[700];
    if (!is_foreground && log_path == NULL && !has_syslog()) {
        if (!state_log_path(o.mountpoint, state_log, sizeof(state_log)))
            return 1;
        log_path = state_log;
    }
    struct handover h = {.log_fd = -1, .log_path = log_path, .ready_fd = -1};
    if (log_path != NULL) {
        h.log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (h.log_fd < 0) {
            fprintf(stderr, "arbor mount: cannot open the log %s: %s\n", log_path,
                    strerror(errno));
            return 1;
        }
    }
    if (!is_foreground && (rc = detach(&h)) >= 0)
        return rc;
    o.guard_program = "/proc/self/exe";
    o.on_mounted = on_mounted;
    o.on_mounted_arg = &h;
    if (ar_mount_run(&o, errmsg) != 0) {
        fprintf(stderr, "arbor mount: %s\n", errmsg[0] ? errmsg : "the mount failed");
        return 1;
    }
    return 0;
}

int cmd_mount_guard(int argc, char **argv)
{
    uint32_t pid;
    uint32_t conn;

    if (argc != 4 || !cmd_parse_u32(argv[1], 2, INT32_MAX, &pid) ||
        !cmd_parse_u32(argv[2], 1, UINT32_MAX, &conn) || argv[3][0] != '/') {
        fprintf(stderr, "usage: arbor mount-guard PID CONN MOUNTPOINT (started by arbor mount)\n");
        return 2;
    }
    return ar_mount_guard((pid_t)pid, conn, argv[3]);
}
