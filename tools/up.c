/* tools/up.c - `arbor up` and `arbor down`: the embedded default, a local
 * cluster (3 replicas, or 1), a file:// store and the mount in one command.
 *
 * DATA_DIR holds node1..nodeN (formatted on the first run, with free ports
 * on 127.0.0.1, then reused), their logs, and blocks/ (the store). While up,
 * the file local_path() says where the cluster listens (meta ADDR,...), the
 * data directory, the mount point and this process's pid: `arbor status`
 * and the other admin commands find the local cluster there, and
 * `arbor down` stops it. The servers die with this process
 * (PR_SET_PDEATHSIG), so nothing outlives it; a server that exits while up
 * is started again (keep_replicas()). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "cmd.h"

#define UP_NODES_MAX 3u
#define UP_PATH_MAX  1024 /* a data directory fits a cluster file's 512 bytes */
#define DOWN_WAIT_MS 30000
#define UP_ROOM_LOW  (512ull << 20) /* free below this: say that writes will soon stop */

/* Where the running local cluster is recorded: $XDG_RUNTIME_DIR/arbor/local,
 * else ~/.arbor/local. */
static int local_path(char *out, size_t cap, bool is_make_dir)
{
    const char *run = getenv("XDG_RUNTIME_DIR");
    const char *home = getenv("HOME");
    char dir[UP_PATH_MAX];

    if (run != NULL && run[0] != '\0')
        snprintf(dir, sizeof(dir), "%s/arbor", run);
    else if (home != NULL && home[0] != '\0')
        snprintf(dir, sizeof(dir), "%s/.arbor", home);
    else
        return -ENOENT;
    if (is_make_dir && mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -errno;
    snprintf(out, cap, "%s/local", dir);
    return 0;
}

int cmd_local_meta(char *addrs, size_t cap, pid_t *pid)
{
    char path[UP_PATH_MAX];
    char line[1024];
    FILE *f = local_path(path, sizeof(path), false) == 0 ? fopen(path, "r") : NULL;
    bool has_meta = false;

    if (f == NULL)
        return -ENOENT;
    /* bounded by the file's lines */
    while (fgets(line, sizeof(line), f) != NULL) {
        long long v;
        if (strncmp(line, "meta ", 5) == 0) {
            snprintf(addrs, cap, "%s", line + 5);
            addrs[strcspn(addrs, "\n")] = '\0';
            has_meta = true;
        } else if (pid != NULL && sscanf(line, "pid %lld", &v) == 1) {
            *pid = (pid_t)v;
        }
    }
    fclose(f);
    return has_meta ? 0 : -EINVAL;
}

static int format_nodes(const char *data, uint32_t count, char *errmsg)
{
    char nodes[600] = "";
    char store[UP_PATH_MAX + 16];
    char cmd[UP_PATH_MAX * 2 + 800];

    for (uint32_t i = 0; i < count; i++) {
        uint16_t raft = cmd_free_port();
        uint16_t client = cmd_free_port();
        if (raft == 0 || client == 0 || raft == client) {
            snprintf(errmsg, AR_ERRMSG_MAX, "no free ports on 127.0.0.1");
            return -EADDRINUSE;
        }
        snprintf(nodes + strlen(nodes), sizeof(nodes) - strlen(nodes),
                 "%s%u=127.0.0.1:%u/127.0.0.1:%u", i ? "," : "", i + 1, raft, client);
    }
    snprintf(store, sizeof(store), "%s/blocks", data);
    if (mkdir(store, 0755) != 0 && errno != EEXIST) {
        snprintf(errmsg, AR_ERRMSG_MAX, "cannot make %s: %s", store, strerror(errno));
        return -errno;
    }
    for (uint32_t i = 0; i < count; i++) {
        snprintf(cmd, sizeof(cmd),
                 "/proc/%d/exe format '%s/node%u' --id %u --nodes %s --store 'file://%s' "
                 "> /dev/null",
                 getpid(), data, i + 1, i + 1, nodes, store);
        if (system(cmd) != 0) {
            snprintf(errmsg, AR_ERRMSG_MAX, "cannot format %s/node%u", data, i + 1);
            return -EIO;
        }
    }
    return 0;
}

/* One `arbor up` a data directory: a second would find the replicas'
 * directories locked and restart its own replicas forever beside the
 * first's. Holds DATA/up.lock (flock) while up: its fd, or -1 with the
 * reason said. */
static int lock_data(const char *data, const char *mountpoint)
{
    char path[UP_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/up.lock", data);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "arbor up: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char held[UP_PATH_MAX + 64] = "";
        ssize_t n = pread(fd, held, sizeof(held) - 1, 0);
        held[n > 0 ? n : 0] = '\0';
        held[strcspn(held, "\n")] = '\0';
        fprintf(stderr, "arbor up: %s is already up%s%s%s; `arbor down` stops it\n", data,
                held[0] != '\0' ? " (" : "", held, held[0] != '\0' ? ")" : "");
        close(fd);
        return -1;
    }
    char mine[UP_PATH_MAX + 64];
    int len = snprintf(mine, sizeof(mine), "pid %d, mounted on %.*s\n", (int)getpid(),
                       UP_PATH_MAX, mountpoint);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, mine, (size_t)len, 0) != len)
        ar_log(AR_LOG_WARN, "cannot write %s: %s", path, strerror(errno));
    return fd;
}

static pid_t serve(const char *data, uint32_t i)
{
    char dir[UP_PATH_MAX + 16];
    char log[UP_PATH_MAX + 16];
    pid_t parent = getpid();

    snprintf(dir, sizeof(dir), "%s/node%u", data, i + 1);
    snprintf(log, sizeof(log), "%s/node%u.log", data, i + 1);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* the server goes when `arbor up` goes, however it ends, and not
     * before: a terminal's Ctrl-C reaches only `arbor up`, whose mount
     * commits what its open files buffered before the replicas stop */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    setpgid(0, 0);
    sigset_t none; /* the keeper's thread blocks every signal; the server takes them */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    execl("/proc/self/exe", "arbor", "serve", dir, (char *)NULL);
    _exit(127);
}

/* The replicas while up: one that exits is started again, after 1 s, and
 * after twice as long each time it dies within a minute of its start (at
 * most 30 s), so that a replica that cannot start does not spin. */
#define KEEP_POLL_MS       200
#define KEEP_DELAY_MIN_MS  1000
#define KEEP_DELAY_MAX_MS  30000
#define KEEP_YOUNG_MS      60000

struct keeper {
    pthread_mutex_t mu;
    pthread_cond_t stop;
    bool is_stopping;
    const char *data;
    uint32_t count;
    pid_t pids[META_SERVER_NODES_MAX];       /* 0: waiting to start again */
    uint64_t started_ms[META_SERVER_NODES_MAX];
    uint64_t restart_ms[META_SERVER_NODES_MAX];
    uint32_t delay_ms[META_SERVER_NODES_MAX]; /* the next wait, should it die young */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void describe_exit(int status, char *out, size_t cap)
{
    if (WIFSIGNALED(status))
        snprintf(out, cap, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
}

/* One look at replica i, under k->mu: reap it if it exited, start it again
 * when its delay is over. */
static void keep_one(struct keeper *k, uint32_t i, uint64_t now)
{
    int status;

    if (k->pids[i] > 0 && waitpid(k->pids[i], &status, WNOHANG) == k->pids[i]) {
        char how[96];
        uint32_t delay = now - k->started_ms[i] < KEEP_YOUNG_MS ? k->delay_ms[i]
                                                                 : KEEP_DELAY_MIN_MS;
        k->delay_ms[i] = delay * 2 > KEEP_DELAY_MAX_MS ? KEEP_DELAY_MAX_MS : delay * 2;
        k->pids[i] = 0;
        k->restart_ms[i] = now + delay;
        describe_exit(status, how, sizeof(how));
        ar_log(AR_LOG_WARN, "replica %u %s; starting it again in %u s (its log: %s/node%u.log)",
               i + 1, how, delay / 1000, k->data, i + 1);
    }
    if (k->pids[i] == 0 && now >= k->restart_ms[i]) {
        k->pids[i] = serve(k->data, i);
        k->started_ms[i] = now;
        if (k->pids[i] > 0)
            ar_log(AR_LOG_INFO, "replica %u started again (pid %d)", i + 1, (int)k->pids[i]);
        else
            k->restart_ms[i] = now + KEEP_DELAY_MAX_MS; /* no fork: try again later */
    }
}

static void *keep_replicas(void *arg)
{
    struct keeper *k = arg;

    pthread_mutex_lock(&k->mu);
    /* bounded: ends when the mount ends */
    while (!k->is_stopping) {
        uint64_t now = mono_ms();
        for (uint32_t i = 0; i < k->count; i++)
            keep_one(k, i, now);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += KEEP_POLL_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&k->stop, &k->mu, &until);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/* A volume begins with its root owned by root (0:0, mode 0755): run by
 * another user, `arbor up` gives the root to that user, so that whoever
 * started it can write what it mounts. Only while the root is still
 * root's: a later chown stands. The servers trust the credentials a
 * client names, as NFS's AUTH_SYS does; this asks as root. */
static void root_to_caller(const char *addrs)
{
    struct ar_client_options o = {.has_no_session = true};
    struct ar_client *c = NULL;
    char errmsg[AR_ERRMSG_MAX] = "";

    if (getuid() == 0 || !cmd_meta_options("up", addrs, &o))
        return;
    struct meta_response_buf *out = ar_malloc(sizeof(*out));
    int rc = out == NULL ? -ENOMEM : ar_client_open(&o, &c, errmsg);
    struct meta_cmd get = {.op = META_OP_GETATTR, .ino = META_ROOT_INO};
    if (rc == 0)
        rc = ar_client_call(c, META_ROOT_SHARD, &get, META_READ_LINEARIZABLE, 0, out);
    if (rc == 0 && out->r.reply.attr.uid == 0 && out->r.reply.attr.gid == 0) {
        struct meta_cmd set = {.op = META_OP_SETATTR, .ino = META_ROOT_INO,
                               .set_mask = META_SET_UID | META_SET_GID,
                               .set = {.uid = getuid(), .gid = getgid()}};
        rc = ar_client_call(c, META_ROOT_SHARD, &set, META_READ_LINEARIZABLE, 0, out);
        if (rc == 0)
            printf("arbor up: the volume's root now belongs to uid %u, gid %u (you)\n",
                   (unsigned)getuid(), (unsigned)getgid());
        fflush(stdout);
    }
    if (rc != 0)
        fprintf(stderr, "arbor up: cannot give the volume's root to uid %u: %s\n",
                (unsigned)getuid(), errmsg[0] != '\0' ? errmsg : ar_strerror(rc));
    ar_client_close(c);
    ar_free(out);
}

static void up_usage(FILE *to)
{
    fprintf(to,
            "usage: arbor up DATA_DIR MOUNTPOINT [--replicas 1|3] [mount options]\n\n"
            "Run a whole local arbor in the foreground: a cluster of 3 metadata\n"
            "replicas (or 1) on 127.0.0.1 with their data in DATA_DIR, blocks in\n"
            "DATA_DIR/blocks (a file:// store), and the volume mounted on MOUNTPOINT.\n"
            "The first run formats DATA_DIR; later runs start what is there. Ctrl-C,\n"
            "SIGTERM or `arbor down` unmounts and stops everything. A replica that\n"
            "exits while up is started again (its log: DATA_DIR/nodeN.log). While up,\n"
            "`arbor status` (no arguments) shows the local cluster. Run by a user other\n"
            "than root, it gives the volume's root directory to that user (a volume\n"
            "begins with root's). Mount options as for `arbor mount` (--single-threaded,\n"
            "--attr-timeout S, ...).\n");
}

/* What `arbor up` was asked: its own options, and the mount's argv (every
 * other option goes to the mount). mount_argv points into the plan, which
 * stays put while up runs. */
struct up_plan {
    uint32_t count;   /* replicas, for a data directory formatted now */
    bool has_count;   /* --replicas given */
    char data[UP_PATH_MAX];          /* the data directory, absolute */
    char mnt[2 * UP_PATH_MAX];       /* the mount point, absolute, as down and status name it */
    char cache_dir[UP_PATH_MAX + 16];
    char *mount_argv[64];
    int mount_argc;
};

/* argv into p, the mount's options checked before anything is made or
 * started; 0, or the exit status (2, said; 0 after --help). -1: go on. */
static int up_parse(int argc, char **argv, struct up_plan *p)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            up_usage(stdout);
            return 0;
        }
    }
    if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-') {
        up_usage(stderr);
        return 2;
    }
    char *head[] = {"mount", "ADDRS", argv[2], "--foreground", "--cache-dir", p->cache_dir};
    p->count = UP_NODES_MAX;
    p->mount_argc = (int)AR_ARRAY_LEN(head);
    memcpy(p->mount_argv, head, sizeof(head));
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--replicas") == 0 && i + 1 < argc) {
            if (!cmd_parse_u32(argv[++i], 1, UP_NODES_MAX, &p->count))
                p->count = 0;
            p->has_count = true;
        } else if (p->mount_argc < (int)AR_ARRAY_LEN(p->mount_argv) - 2) {
            p->mount_argv[p->mount_argc++] = argv[i];
        } else {
            fprintf(stderr, "arbor up: too many options\n");
            return 2;
        }
    }
    if (p->count != 1 && p->count != UP_NODES_MAX) {
        fprintf(stderr, "arbor up: --replicas wants 1 or 3\n");
        return 2;
    }
    /* on a copy: getopt reorders what it parses */
    char *check_argv[AR_ARRAY_LEN(p->mount_argv)];
    memcpy(check_argv, p->mount_argv, sizeof(check_argv));
    return cmd_mount_check(p->mount_argc, check_argv) != 0 ? 2 : -1;
}

/* The data directory and the mount point made and checked, the data
 * locked (into *lock_fd), the replicas formatted on the first run, and
 * their configuration loaded into cfg. False, said, if any cannot be. */
static bool up_prepare(struct up_plan *p, const char *data_arg, const char *mnt_arg,
                       struct meta_server_config *cfg, int *lock_fd)
{
    char errmsg[AR_ERRMSG_MAX] = "";
    char cwd[UP_PATH_MAX];
    char path[UP_PATH_MAX + 32];

    if (mkdir(data_arg, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "arbor up: cannot make %s: %s\n", data_arg, strerror(errno));
        return false;
    }
    char *abs = realpath(data_arg, NULL);
    if (abs == NULL || strlen(abs) >= 400) {
        fprintf(stderr, "arbor up: %s: %s\n", data_arg,
                abs == NULL ? strerror(errno) : "a path too long for a data directory");
        free(abs);
        return false;
    }
    snprintf(p->data, sizeof(p->data), "%s", abs);
    free(abs);
    if (mnt_arg[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
        snprintf(p->mnt, sizeof(p->mnt), "%s", mnt_arg);
    else
        snprintf(p->mnt, sizeof(p->mnt), "%s/%s", cwd, mnt_arg);
    if ((*lock_fd = lock_data(p->data, p->mnt)) < 0)
        return false;
    if (mkdir(mnt_arg, 0755) != 0 && errno != EEXIST) { /* the mount point, if absent */
        fprintf(stderr, "arbor up: cannot make %s: %s\n", mnt_arg, strerror(errno));
        return false;
    }
    if (!cmd_mount_point_ready("up", mnt_arg)) /* before anything is formatted or started */
        return false;
    snprintf(p->cache_dir, sizeof(p->cache_dir), "%s/cache", p->data); /* unless the options say */
    snprintf(path, sizeof(path), "%s/node1/cluster", p->data);
    if (access(path, F_OK) != 0) {
        if (format_nodes(p->data, p->count, errmsg) != 0) {
            fprintf(stderr, "arbor up: %s\n", errmsg);
            return false;
        }
        printf("arbor up: formatted %u replica%s in %s\n", p->count, p->count > 1 ? "s" : "",
               p->data);
    }
    snprintf(path, sizeof(path), "%s/node1", p->data);
    if (meta_cluster_load(path, cfg, errmsg) != 0) {
        fprintf(stderr, "arbor up: %s\n", errmsg);
        return false;
    }
    if (p->has_count && cfg->node_count != p->count)
        printf("arbor up: %s holds %u replica%s already; --replicas counts only when it is "
               "made\n", p->data, cfg->node_count, cfg->node_count > 1 ? "s" : "");
    return true;
}

/* Start the replicas and the thread that starts again one that exits
 * (false, warned, if there is no thread: they then run unwatched). */
static bool keeper_start(struct keeper *k, pthread_t *thread)
{
    uint64_t now = mono_ms();
    sigset_t all;
    sigset_t mask;

    for (uint32_t i = 0; i < k->count; i++) {
        k->pids[i] = serve(k->data, i);
        k->started_ms[i] = now;
        k->delay_ms[i] = KEEP_DELAY_MIN_MS;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->stop, NULL);
    /* its thread takes no signal: the stop signals must reach the mount's loop */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &mask);
    bool is_kept = pthread_create(thread, NULL, keep_replicas, k) == 0;
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    if (!is_kept)
        ar_log(AR_LOG_WARN, "no thread to watch the replicas: one that exits stays down");
    return is_kept;
}

/* Stop the thread (if kept), then the replicas, and wait for them. */
static void keeper_stop(struct keeper *k, bool is_kept, pthread_t thread)
{
    if (is_kept) {
        pthread_mutex_lock(&k->mu);
        k->is_stopping = true;
        pthread_cond_signal(&k->stop);
        pthread_mutex_unlock(&k->mu);
        pthread_join(thread, NULL);
    }
    for (uint32_t i = 0; i < k->count; i++) {
        if (k->pids[i] > 0)
            kill(k->pids[i], SIGTERM);
    }
    for (uint32_t i = 0; i < k->count; i++) {
        if (k->pids[i] > 0)
            waitpid(k->pids[i], NULL, 0);
    }
    pthread_cond_destroy(&k->stop);
    pthread_mutex_destroy(&k->mu);
}

int cmd_up(int argc, char **argv)
{
    static struct up_plan p; /* large; one up a process */
    struct meta_server_config cfg;
    int lock_fd = -1;

    memset(&p, 0, sizeof(p));
    int rc = up_parse(argc, argv, &p);
    if (rc >= 0)
        return rc;
    if (!up_prepare(&p, argv[1], argv[2], &cfg, &lock_fd))
        return 1;
    char addrs[AR_CLIENT_ADDRS_MAX * 64] = "";
    for (uint32_t i = 0; i < cfg.node_count; i++) {
        snprintf(addrs + strlen(addrs), sizeof(addrs) - strlen(addrs), "%s%s", i ? "," : "",
                 cfg.nodes[i].client_addr);
    }
    struct keeper k = {.data = p.data, .count = cfg.node_count};
    pthread_t keeper;
    bool is_kept = keeper_start(&k, &keeper);
    char local[UP_PATH_MAX] = "";
    FILE *f = local_path(local, sizeof(local), true) == 0 ? fopen(local, "w") : NULL;
    if (f != NULL) {
        fprintf(f, "meta %s\ndata %s\nmount %s\npid %d\n", addrs, p.data, p.mnt, (int)getpid());
        fclose(f);
    } else {
        ar_log(AR_LOG_WARN, "cannot record where the cluster listens (%s): arbor status, "
               "down and the other commands need --meta %s", local, addrs);
    }
    struct statvfs disk;
    if (statvfs(p.data, &disk) == 0 && (uint64_t)disk.f_bavail * disk.f_frsize < UP_ROOM_LOW)
        printf("arbor up: the disk of %s has %llu MiB free; under 256 MiB the replicas refuse "
               "new files and writes (No space left on device) until there is room\n",
               p.data, (unsigned long long)((uint64_t)disk.f_bavail * disk.f_frsize >> 20));
    printf("arbor up: %u replica%s (logs in %s/node*.log), mounting on %s; Ctrl-C stops\n",
           cfg.node_count, cfg.node_count > 1 ? "s" : "", p.data, argv[2]);
    fflush(stdout);
    root_to_caller(addrs);
    p.mount_argv[1] = addrs;
    rc = cmd_mount(p.mount_argc, p.mount_argv);
    keeper_stop(&k, is_kept, keeper);
    if (f != NULL)
        unlink(local);
    printf("arbor up: stopped\n");
    close(lock_fd); /* the replicas are down: another up may start */
    return rc;
}

/* Running: alive and not a zombie (one its parent has not reaped yet). */
static bool is_running(pid_t pid)
{
    char path[64];
    char stat[256] = "";

    if (kill(pid, 0) != 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool is_read = fgets(stat, sizeof(stat), f) != NULL;
    fclose(f);
    const char *state = is_read ? strrchr(stat, ')') : NULL;
    return state == NULL || state[1] == '\0' || state[2] != 'Z';
}

int cmd_down(int argc, char **argv)
{
    char addrs[AR_CLIENT_ADDRS_MAX * 64];
    pid_t pid = 0;

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: arbor down\n\nStop the local arbor that `arbor up` runs: unmount, stop its "
               "replicas.\n");
        return 0;
    }
    if (cmd_local_meta(addrs, sizeof(addrs), &pid) != 0 || pid <= 0) {
        fprintf(stderr, "arbor down: no local arbor is up\n");
        return 1;
    }
    if (kill(pid, SIGTERM) != 0) {
        fprintf(stderr, "arbor down: process %d: %s\n", (int)pid, strerror(errno));
        return 1;
    }
    /* bounded: the mount and the replicas stop within their own waits */
    for (int waited = 0; waited < DOWN_WAIT_MS && is_running(pid); waited += 50) {
        usleep(50000);
    }
    if (is_running(pid)) {
        fprintf(stderr, "arbor down: process %d still runs\n", (int)pid);
        return 1;
    }
    printf("arbor down: stopped\n");
    return 0;
}

/* HOST:PORT into o's addresses as IP:PORT, one for each address HOST
 * has ("localhost" may be ::1 and 127.0.0.1; the client tries them all):
 * the metadata client connects to IP literals only (the cluster file holds
 * no others), so a name given on the command line is resolved here, once.
 * Addresses past the client's AR_CLIENT_ADDRS_MAX are left, said once
 * (*is_full_said). False, with why said as "arbor WHO: …", if HOST:PORT
 * cannot be resolved. */
static bool addr_resolve(const char *who, const char *addr, struct ar_client_options *o,
                         bool *is_full_said)
{
    const char *colon = strrchr(addr, ':');
    char host[256];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    uint32_t port = 0;
    int rc;

    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(host) ||
        !cmd_parse_u32(colon + 1, 1, 65535, &port)) {
        fprintf(stderr, "arbor %s: %s is not HOST:PORT (a port from 1 to 65535)\n", who, addr);
        return false;
    }
    size_t len = (size_t)(colon - addr);
    bool is_bracketed = len >= 2 && addr[0] == '[' && addr[len - 1] == ']'; /* [::1]:7101 */
    memcpy(host, addr + is_bracketed, len - 2 * is_bracketed);
    host[len - 2 * is_bracketed] = '\0';
    if ((rc = getaddrinfo(host, colon + 1, &hints, &ai)) != 0) {
        fprintf(stderr, "arbor %s: cannot resolve %s: %s\n", who, addr, gai_strerror(rc));
        return false;
    }
    for (const struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        const void *bytes = a->ai_family == AF_INET6
                                ? (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr
                                : (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr;
        char out[sizeof(o->addrs[0])];
        if (inet_ntop(a->ai_family, bytes, ip, sizeof(ip)) == NULL)
            continue;
        snprintf(out, sizeof(out), "%s:%u", ip, port);
        bool is_new = true;
        for (uint32_t i = 0; i < o->addr_count && is_new; i++)
            is_new = strcmp(o->addrs[i], out) != 0;
        if (is_new && o->addr_count == AR_CLIENT_ADDRS_MAX) {
            if (!*is_full_said)
                fprintf(stderr, "arbor %s: more than %u addresses: the first %u are tried, "
                                "%s (of %s) and any after it left\n",
                        who, AR_CLIENT_ADDRS_MAX, AR_CLIENT_ADDRS_MAX, out, addr);
            *is_full_said = true;
        } else if (is_new) {
            snprintf(o->addrs[o->addr_count++], sizeof(o->addrs[0]), "%s", out);
        }
    }
    freeaddrinfo(ai);
    return true;
}

bool cmd_meta_options(const char *who, const char *meta, struct ar_client_options *o)
{
    char local[512];

    if (meta == NULL) {
        if (cmd_local_meta(local, sizeof(local), NULL) != 0) {
            fprintf(stderr, "arbor %s: no local cluster is up; give --meta ADDR,...\n", who);
            return false;
        }
        meta = local;
    }
    bool is_full_said = false;
    o->addr_count = 0;
    /* bounded: each turn takes one address and its comma */
    for (const char *p = meta; *p != '\0';) {
        size_t n = strcspn(p, ",");
        char addr[300];
        snprintf(addr, sizeof(addr), "%.*s", (int)n, p);
        if (!addr_resolve(who, addr, o, &is_full_said))
            return false;
        p += n + (p[n] == ',');
    }
    if (o->addr_count == 0)
        fprintf(stderr, "arbor %s: no address given (HOST:PORT,...)\n", who);
    return o->addr_count > 0;
}
