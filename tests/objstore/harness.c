/* tests/objstore/harness.c - see harness.h. Processes are started with
 * fork/exec, their stdout read through a pipe until the ready line (at most
 * HARNESS_READY_MS), and stopped by PID. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define HARNESS_READY_MS 30000 /* s3rver starts in about a second; CI may be slow */

void harness_tmpdir(char out[256])
{
    const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";

    snprintf(out, 256, "%s/arbor-test.XXXXXX", base);
    assert_non_null(mkdtemp(out));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path);
    return unlink(path);
}

void harness_rm_rf(const char *path)
{
    if (path[0] != '\0')
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *source_root(void)
{
    const char *root = getenv("ARBOR_SOURCE_ROOT");

    if (root == NULL) {
        fprintf(stderr, "ARBOR_SOURCE_ROOT is not set: run the tests with meson test\n");
        abort();
    }
    return root;
}

/* Read the child's stdout until a line starts with ready; return the number
 * after the last ':' or ' ' of that line. */
static int wait_ready(int fd, const char *ready, pid_t pid)
{
    char buf[4096];
    size_t len = 0;
    int waited_ms = 0;

    while (waited_ms < HARNESS_READY_MS) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int rc = poll(&pfd, 1, 100);
        waited_ms += 100;
        if (rc <= 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        char *line = strstr(buf, ready);
        if (line != NULL && strchr(line, '\n') != NULL) {
            char *end = strchr(line, '\n');
            *end = '\0';
            char *num = strrchr(line, ':');
            if (num == NULL)
                num = strrchr(line, ' ');
            return (int)strtol(num + 1, NULL, 10);
        }
    }
    fprintf(stderr, "harness: process %d never printed '%s'\n", (int)pid, ready);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("helper process did not start");
    return -1;
}

static pid_t spawn(char *const argv[], int *out_fd, const char *stderr_path)
{
    int pipefd[2];
    pid_t pid;

    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        if (stderr_path != NULL) {
            int fd = open(stderr_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0)
                dup2(fd, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pipefd[1]);
    *out_fd = pipefd[0];
    return pid;
}

void harness_s3rver_start(struct harness_proc *p)
{
    char script[1024];
    char data[300];
    int fd;

    memset(p, 0, sizeof(*p));
    harness_tmpdir(p->dir);
    snprintf(script, sizeof(script), "%s/.deps/node_modules/s3rver/bin/s3rver.js", source_root());
    if (access(script, R_OK) != 0) {
        fprintf(stderr, "harness: %s is missing: run tools/setup.sh\n", script);
        fail_msg("s3rver not installed");
    }
    snprintf(data, sizeof(data), "%s/data", p->dir);
    /* The legacy provider: s3rver encrypts list continuation tokens with DES,
     * which OpenSSL 3 refuses; without it every truncated listing is a 500. */
    char *const argv[] = {"node",  "--openssl-legacy-provider",
                          script,  "-d",
                          data,    "-a",
                          "127.0.0.1", "-p",
                          "0",     "-s",
                          "--configure-bucket", HARNESS_BUCKET,
                          NULL};
    p->pid = spawn(argv, &fd, NULL);
    p->port = wait_ready(fd, "S3rver listening on", p->pid);
    close(fd);
    assert_true(p->port > 0);
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
}

void harness_proxy_start(struct harness_proc *p, int upstream_port, const char *mode, int count,
                         const char *log_path)
{
    char script[1024];
    char up[16];
    char n[16];
    int fd;

    memset(p, 0, sizeof(*p));
    snprintf(script, sizeof(script), "%s/tests/objstore/flaky_proxy.py", source_root());
    snprintf(up, sizeof(up), "%d", upstream_port);
    snprintf(n, sizeof(n), "%d", count);
    char *const argv[] = {"python3", script, up, (char *)mode, n, NULL};
    p->pid = spawn(argv, &fd, log_path);
    p->port = wait_ready(fd, "PORT ", p->pid);
    close(fd);
    assert_true(p->port > 0);
}

void harness_proc_stop(struct harness_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
    harness_rm_rf(p->dir);
    p->dir[0] = '\0';
}

void harness_s3_url(char *out, size_t cap, int port, const char *prefix, const char *extra)
{
    snprintf(out, cap,
             "s3://" HARNESS_BUCKET "/%s?endpoint=http://127.0.0.1:%d&region=us-east-1"
             "&path_style=1%s%s",
             prefix, port, extra[0] != '\0' ? "&" : "", extra);
}

int harness_count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int n = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

int harness_closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}
