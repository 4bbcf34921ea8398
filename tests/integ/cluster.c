/* tests/integ/cluster.c - a cluster of `arbor serve` processes on
 * 127.0.0.1 for the integration tests (cluster.h): formatted in a scratch
 * directory, started and stopped by PID, with a small blocking client.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../objstore/harness.h"
#include "cluster.h"
bool file_has(const char *path, const char *part)
{
    static char text[1 << 20];
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(text, 1, sizeof(text) - 1, f) : 0;

    if (f != NULL)
        fclose(f);
    text[n] = '\0';
    return strstr(text, part) != NULL;
}

double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A port free now, below the kernel's ephemeral range (32768 up): a port
 * the kernel hands out (bind to 0) may meanwhile become the local end of
 * some other process's outgoing connection, and the server then cannot
 * listen on it. Each test process walks its own stretch of the range. */
static uint16_t free_port(void)
{
    static unsigned next;

    if (next == 0)
        next = 10000u + ((unsigned)getpid() * 37u) % 20000u;
    for (int tries = 0; tries < 1000; tries++) {
        uint16_t port = (uint16_t)(10000u + (next++ - 10000u) % 22000u);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        bool is_free = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0)
            close(fd);
        if (is_free)
            return port;
    }
    fail_msg("no free port on 127.0.0.1 below 32000");
    return 0;
}

void node_start(struct fixture *f, int i)
{
    char data[400];
    char log[400];

    snprintf(data, sizeof(data), "%s/node%d", f->dir, i + 1);
    snprintf(log, sizeof(log), "%s/node%d.log", f->dir, i + 1);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* a test killed (by a timeout) takes its servers with it */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        dup2(fd, 1);
        const char *argv[16] = {"arbor", "serve", data, "--session-timeout-ms", "1000"};
        int argc = 5;
        if (f->log_keep != NULL) {
            argv[argc++] = "--log-keep";
            argv[argc++] = f->log_keep;
        }
        for (int k = 0; k < 8 && f->serve_args[k] != NULL; k++) {
            argv[argc++] = f->serve_args[k];
        }
        execv(f->arbor, (char *const *)argv);
        _exit(127);
    }
    f->pid[i] = pid;
}

void node_kill(struct fixture *f, int i, int sig)
{
    if (f->pid[i] <= 0)
        return;
    kill(f->pid[i], SIGCONT); /* a stopped process would never take sig */
    kill(f->pid[i], sig);
    waitpid(f->pid[i], NULL, 0);
    f->pid[i] = 0;
}

int cluster_setup(void **state, const char *log_keep, int count, const char *voters)
{
    return cluster_setup_with(state, log_keep, count, voters, NULL, NULL);
}

int cluster_setup_with(void **state, const char *log_keep, int count, const char *voters,
                       const char *format_args, const char *const *serve_args)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char nodes[600] = "";
    char cmd[2000];

    assert_non_null(f);
    /* a write to a node the test killed fails (EPIPE) as in arbor itself,
     * rather than end the test without a word */
    signal(SIGPIPE, SIG_IGN);
    f->log_keep = log_keep;
    f->nodes = count;
    for (int k = 0; k < 8 && serve_args != NULL && serve_args[k] != NULL; k++) {
        f->serve_args[k] = serve_args[k];
    }
    harness_tmpdir(f->dir);
    snprintf(f->arbor, sizeof(f->arbor), "%s/tools/arbor", getenv("ARBOR_BUILD_ROOT"));
    for (int i = 0; i < f->nodes; i++) {
        f->raft_port[i] = free_port();
        f->client_port[i] = free_port();
        snprintf(nodes + strlen(nodes), sizeof(nodes) - strlen(nodes),
                 "%s%d=127.0.0.1:%u/127.0.0.1:%u", i ? "," : "", i + 1, f->raft_port[i],
                 f->client_port[i]);
    }
    for (int i = 0; i < f->nodes; i++) {
        snprintf(cmd, sizeof(cmd),
                 "'%s' format '%s/node%d' --id %d --nodes %s --voters %s %s > /dev/null",
                 f->arbor, f->dir, i + 1, i + 1, nodes, voters,
                 format_args != NULL ? format_args : "");
        assert_int_equal(system(cmd), 0);
        node_start(f, i);
    }
    f->fd = -1;
    f->connected_to = -1;
    f->buf = malloc(META_FRAME_BYTES_MAX + 8);
    f->resp = malloc(sizeof(*f->resp));
    assert_non_null(f->buf);
    assert_non_null(f->resp);
    *state = f;
    return 0;
}


int cluster_setup_small_disk(void **state, const char *size, const char *const *serve_args)
{
    char disk[256];
    char options[64];
    char *tmpdir = getenv("TMPDIR") != NULL ? strdup(getenv("TMPDIR")) : NULL;

    harness_tmpdir(disk);
    snprintf(options, sizeof(options), "size=%s,mode=0755", size);
    if (mount("tmpfs", disk, "tmpfs", 0, options) != 0)
        fail_msg("cannot mount a tmpfs on %s: %s", disk, strerror(errno));
    setenv("TMPDIR", disk, 1);
    int rc = cluster_setup_with(state, NULL, 3, "1,2,3", NULL, serve_args);
    if (tmpdir != NULL)
        setenv("TMPDIR", tmpdir, 1);
    else
        unsetenv("TMPDIR");
    free(tmpdir);
    struct fixture *f = *state;
    snprintf(f->small_disk, sizeof(f->small_disk), "%s", disk);
    return rc;
}

void small_disk_fill(struct fixture *f, uint64_t want_free)
{
    char filler[300];
    struct statvfs v;
    struct stat st;

    snprintf(filler, sizeof(filler), "%s/filler", f->small_disk);
    if (want_free == 0) {
        assert_int_equal(unlink(filler), 0);
        return;
    }
    assert_int_equal(statvfs(f->small_disk, &v), 0);
    uint64_t free_now = (uint64_t)v.f_bavail * v.f_frsize;
    uint64_t size = stat(filler, &st) == 0 ? (uint64_t)st.st_size : 0;
    assert_true(size + free_now > want_free);
    int fd = open(filler, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(posix_fallocate(fd, 0, (off_t)(size + free_now - want_free)), 0);
    close(fd);
}

int cluster_teardown(void **state)
{
    struct fixture *f = *state;

    if (f->fd >= 0)
        close(f->fd);
    for (int i = 0; i < f->nodes; i++) {
        node_kill(f, i, SIGTERM);
    }
    /* the servers' own logs: no sanitizer report, no assertion */
    for (int i = 0; i < f->nodes; i++) {
        char log[400];
        snprintf(log, sizeof(log), "%s/node%d.log", f->dir, i + 1);
        if (harness_count_lines(log, "Sanitizer") + harness_count_lines(log, "runtime error") +
                harness_count_lines(log, "assertion") > 0) {
            char cmd[500];
            snprintf(cmd, sizeof(cmd), "cat '%s' >&2", log);
            if (system(cmd) != 0)
                break;
            fail_msg("node %d logged a sanitizer report or an assertion", i + 1);
        }
    }
    harness_rm_rf(f->dir);
    if (f->small_disk[0] != '\0' && (umount2(f->small_disk, MNT_DETACH) != 0 ||
                                      rmdir(f->small_disk) != 0))
        print_message("could not remove the tmpfs %s: %s\n", f->small_disk, strerror(errno));
    free(f->buf);
    free(f->resp);
    free(f);
    return 0;
}

/* ---- a blocking client ------------------------------------------------------------- */

void client_close(struct fixture *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->connected_to = -1;
}

bool client_connect(struct fixture *f, int i)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->client_port[i])};

    client_close(f);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    f->fd = fd;
    f->connected_to = i;
    return true;
}

/* Connect to node i, waiting (bounded) while it starts up. */
bool connect_wait(struct fixture *f, int i)
{
    for (int tries = 0; tries < 250; tries++) {
        if (client_connect(f, i))
            return true;
        usleep(20000);
    }
    return false;
}

bool read_full(int fd, uint8_t *p, size_t len, int timeout_ms)
{
    size_t done = 0;

    while (done < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            return false;
        ssize_t n = read(fd, p + done, len - done);
        if (n <= 0)
            return false;
        done += (size_t)n;
    }
    return true;
}

/* Send a request on the current connection and wait for its response. */
bool exchange(struct fixture *f, const struct meta_request *req, const struct meta_cmd *cmd)
{
    size_t len;

    assert_int_equal(meta_request_encode(req, cmd, f->buf, META_FRAME_BYTES_MAX, &len), 0);
    if (write(f->fd, f->buf, len) != (ssize_t)len)
        return false;
    uint32_t n;
    if (!read_full(f->fd, (uint8_t *)&n, 4, 2000) || n > META_FRAME_BYTES_MAX ||
        !read_full(f->fd, f->buf, n, 2000))
        return false;
    return meta_response_decode(f->buf, n, f->resp) == 0 && f->resp->r.id == req->id;
}

int leader_node(struct fixture *f)
{
    for (int tries = 0; tries < 250; tries++) {
        for (int i = 0; i < f->nodes; i++) {
            struct meta_request st = {.id = ++f->next_id, .kind = META_REQ_STATUS};
            if (f->pid[i] > 0 && client_connect(f, i) && exchange(f, &st, NULL) &&
                f->resp->r.groups[1].leader != 0) {
                client_close(f);
                return (int)f->resp->r.groups[1].leader - 1;
            }
            client_close(f);
        }
        usleep(20000);
    }
    return -1;
}
