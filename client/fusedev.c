/* client/fusedev.c - the FUSE device, read and written by arbor's own
 * functions so that the kernel is told what libfuse 3.14 leaves out.
 *
 * libfuse 3.14 (Debian 12's) puts FUSE_CAP_PARALLEL_DIROPS in conn->want
 * by default but never sends it to the kernel (libfuse pull request 861,
 * released in 3.16), so the kernel lets one LOOKUP or READDIR of a
 * directory reach the file system at a time: 16 readers opening files of
 * one directory wait for each other's round trip. With these functions in
 * place (fuse_session_custom_io()), an INIT reply also carries the flag
 * when the kernel's INIT request offered it.
 *
 * The wire is linux/fuse.h's, whose macros clash with libfuse's headers:
 * a request's 40-byte header has the opcode at byte 4 and unique at 8, and
 * INIT's body (fuse_init_in) its flags at byte 12; a reply's 16-byte header
 * has the error at 4 and unique at 8, and INIT's body (fuse_init_out) its
 * flags at 12.
 *
 * Threads: any. An INIT is rare (once a session), so the INITs waiting for
 * their reply sit in a small table under a mutex, with an atomic count that
 * every other reply reads alone. */
#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"

#define WIRE_IN_HEADER        40u
#define WIRE_OUT_HEADER       16u
#define WIRE_OP_INIT          26u
#define WIRE_PARALLEL_DIROPS  (1u << 18)
#define INITS_MAX             8u

static pthread_mutex_t inits_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int fd;
    uint64_t unique;
} inits[INITS_MAX];
static uint32_t init_count; /* atomic for readers; changed under inits_mu */

static ssize_t dev_read(int fd, void *buf, size_t len, void *userdata)
{
    const uint8_t *p = buf;
    ssize_t n = read(fd, buf, len);
    uint32_t op;
    uint32_t flags;

    (void)userdata;
    if (n < (ssize_t)(WIRE_IN_HEADER + 16))
        return n;
    memcpy(&op, p + 4, 4);
    memcpy(&flags, p + WIRE_IN_HEADER + 12, 4);
    if (op != WIRE_OP_INIT || (flags & WIRE_PARALLEL_DIROPS) == 0)
        return n;
    pthread_mutex_lock(&inits_mu);
    if (init_count < INITS_MAX) { /* else this session goes without */
        inits[init_count].fd = fd;
        memcpy(&inits[init_count].unique, p + 8, 8);
        __atomic_store_n(&init_count, init_count + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&inits_mu);
    return n;
}

/* Whether (fd, unique) is an INIT waiting for its reply; it no longer is. */
static bool init_answered(int fd, uint64_t unique)
{
    bool is_init = false;

    pthread_mutex_lock(&inits_mu);
    for (uint32_t i = 0; i < init_count && !is_init; i++) {
        if (inits[i].fd == fd && inits[i].unique == unique) {
            inits[i] = inits[init_count - 1];
            __atomic_store_n(&init_count, init_count - 1, __ATOMIC_RELEASE);
            is_init = true;
        }
    }
    pthread_mutex_unlock(&inits_mu);
    return is_init;
}

static ssize_t dev_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    uint8_t body[256];
    uint64_t unique;
    int32_t error;

    (void)userdata;
    /* libfuse writes a reply as its header, then its body */
    if (__atomic_load_n(&init_count, __ATOMIC_ACQUIRE) == 0 || count != 2 ||
        iov[0].iov_len != WIRE_OUT_HEADER || iov[1].iov_len < 16 || iov[1].iov_len > sizeof(body))
        return writev(fd, iov, count);
    memcpy(&error, (const uint8_t *)iov[0].iov_base + 4, 4);
    memcpy(&unique, (const uint8_t *)iov[0].iov_base + 8, 8);
    if (!init_answered(fd, unique) || error != 0)
        return writev(fd, iov, count);
    uint32_t flags;
    memcpy(body, iov[1].iov_base, iov[1].iov_len);
    memcpy(&flags, body + 12, 4);
    flags |= WIRE_PARALLEL_DIROPS;
    memcpy(body + 12, &flags, 4);
    ar_log(AR_LOG_INFO, "the kernel may send lookups of one directory in parallel");
    struct iovec fixed[2] = {iov[0], {.iov_base = body, .iov_len = iov[1].iov_len}};
    return writev(fd, fixed, 2);
}

const struct fuse_custom_io *fusedev_io(void)
{
    static const struct fuse_custom_io io = {.read = dev_read, .writev = dev_writev};

    return &io;
}

int ar_fuse_parallel_dirops(struct fuse_session *se)
{
    return fuse_session_custom_io(se, fusedev_io(), fuse_session_fd(se));
}
