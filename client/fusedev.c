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
 * It also offers the kernel FUSE passthrough (Linux 6.9 and later), which
 * libfuse 3.14 does not know: an INIT reply then carries FUSE_PASSTHROUGH
 * in flags2 (byte 32 of fuse_init_out, read when flags has FUSE_INIT_EXT)
 * and a max_stack_depth of 1 (byte 36). An open answered in passthrough
 * names a backing file registered on the device (ioctl), and the kernel
 * reads that file itself: no READ reaches the mount.
 *
 * And a larger read-ahead: the kernel reads ahead of a sequential reader
 * what the mount's backing device allows, 128 KiB unless changed in
 * /sys/class/bdi/0:CONN/read_ahead_kb, and an INIT reply can only lower
 * it (the kernel sets it as the INIT reply is written, so any change must
 * come after). With 4 MiB, a reader of a big file has several reads of a
 * block in flight (1 MiB each) instead of one of 128 KiB at a time.
 *
 * Threads: any. An INIT is rare (once a session), so the INITs waiting for
 * their reply sit in a small table under a mutex, with an atomic count that
 * every other reply reads alone.
 *
 * And the session's loop (fusedev_loop): libfuse's multi-threaded loop
 * wakes a thread for every request, and a single thread waits out every
 * blocking one. Here one thread reads them all and runs those that never
 * block (the mount answers lookups, getattrs and readers' opens from its
 * metadata client's thread), reading the next without sleeping while the
 * kernel has more; a request that may block goes to a pool thread with
 * the buffer it arrived in, and the reader takes a new one. */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"

#define WIRE_IN_HEADER        40u
#define WIRE_OUT_HEADER       16u
#define WIRE_OP_INIT          26u
#define WIRE_PARALLEL_DIROPS  (1u << 18)
#define WIRE_WRITEBACK_CACHE  (1u << 16)
#define WIRE_INIT_EXT         (1u << 30)
#define WIRE_PASSTHROUGH2     (1u << 5)  /* FUSE_PASSTHROUGH (1 << 37), in flags2 */
#define WIRE_OVER_IO_URING2   (1u << 9)  /* FUSE_OVER_IO_URING (1 << 41), in flags2 */
#define WIRE_MAX_PAGES        (1u << 22)
#define WIRE_MIN_READ_BUFFER  8192u
#define WIRE_DEFAULT_PAGES    32u
#define WIRE_FOPEN_DIRECT_IO  (1u << 0)
#define WIRE_FOPEN_NOFLUSH    (1u << 5)
#define WIRE_FOPEN_PASSTHROUGH (1u << 7)
#define INITS_MAX             8u
#define INIT_OUT_MAX          256u       /* fuse_init_out is 64 bytes today */
#define POOL_MAX              64u
#define SPARE_BUFS_MAX        64u
/* A ring entry's payload: libfuse 3.14 caps max_write at its buffer of
 * 256 pages, and the kernel's max_pages is at most 256 unless raised */
#define RING_PAYLOAD          (256u * 4096u)

/* linux/fuse.h's, for FUSE_DEV_IOC_BACKING_OPEN and _CLOSE */
struct wire_backing_map {
    int32_t fd;
    uint32_t flags;
    uint64_t padding;
};
#define WIRE_IOC_BACKING_OPEN  _IOW(229, 1, struct wire_backing_map)
#define WIRE_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

static pthread_mutex_t inits_mu = PTHREAD_MUTEX_INITIALIZER;
/* What an INIT offered that this mount takes. */
struct offer {
    bool has_parallel;         /* FUSE_PARALLEL_DIROPS */
    bool has_passthrough;      /* passthrough, which is wanted */
    bool has_uring;            /* requests over io_uring, whose rings are ready */
};

static struct {
    int fd;
    uint64_t unique;
    struct offer offer;
} inits[INITS_MAX];
static uint32_t init_count; /* atomic for readers; changed under inits_mu */
static bool wants_passthrough; /* atomic: set before the session starts */
static bool wants_uring;       /* atomic: set before the session starts */
static int passthrough_fd = -1; /* atomic: the device whose INIT took passthrough */
static uint32_t ahead_conn;      /* atomic: set before the session starts */
static uint32_t ahead_kb_wanted; /* atomic: 0, none */
static __thread uint64_t unique_now; /* of the request this thread runs (fusedev_loop) */

static bool ring_ready(int fd, bool is_offered);

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
    if (op != WIRE_OP_INIT)
        return n;
    memcpy(&flags, p + WIRE_IN_HEADER + 12, 4);
    uint32_t flags2 = 0;
    if (n >= (ssize_t)(WIRE_IN_HEADER + 20) && (flags & WIRE_INIT_EXT) != 0)
        memcpy(&flags2, p + WIRE_IN_HEADER + 16, 4);
    struct offer offer = {
        .has_parallel = (flags & WIRE_PARALLEL_DIROPS) != 0,
        .has_passthrough = (flags2 & WIRE_PASSTHROUGH2) != 0 &&
                           __atomic_load_n(&wants_passthrough, __ATOMIC_ACQUIRE),
        .has_uring = ring_ready(fd, (flags2 & WIRE_OVER_IO_URING2) != 0),
    };
    if (!offer.has_parallel && !offer.has_passthrough && !offer.has_uring &&
        __atomic_load_n(&ahead_kb_wanted, __ATOMIC_ACQUIRE) == 0)
        return n;
    pthread_mutex_lock(&inits_mu);
    if (init_count < INITS_MAX) { /* else this session goes without */
        inits[init_count].fd = fd;
        inits[init_count].offer = offer;
        memcpy(&inits[init_count].unique, p + 8, 8);
        __atomic_store_n(&init_count, init_count + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&inits_mu);
    return n;
}

/* Whether (fd, unique) is an INIT waiting for its reply (and what the
 * kernel offered that it may take, in *offer); it no longer is. */
static bool init_answered(int fd, uint64_t unique, struct offer *offer)
{
    bool is_init = false;

    pthread_mutex_lock(&inits_mu);
    for (uint32_t i = 0; i < init_count && !is_init; i++) {
        if (inits[i].fd == fd && inits[i].unique == unique) {
            *offer = inits[i].offer;
            inits[i] = inits[init_count - 1];
            __atomic_store_n(&init_count, init_count - 1, __ATOMIC_RELEASE);
            is_init = true;
        }
    }
    pthread_mutex_unlock(&inits_mu);
    return is_init;
}

/* After the INIT reply: the read-ahead wanted, if any. Needs root. */
static void read_ahead_set(void)
{
    uint32_t kb = __atomic_load_n(&ahead_kb_wanted, __ATOMIC_ACQUIRE);
    char path[80];
    char value[16];

    if (kb == 0)
        return;
    snprintf(path, sizeof(path), "/sys/class/bdi/0:%" PRIu32 "/read_ahead_kb",
             __atomic_load_n(&ahead_conn, __ATOMIC_ACQUIRE));
    int len = snprintf(value, sizeof(value), "%" PRIu32 "\n", kb);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t wrote = fd >= 0 ? write(fd, value, (size_t)len) : -1;
    bool is_set = wrote == len;
    int err = wrote >= 0 ? EIO : errno; /* a short write: EIO */
    if (fd >= 0)
        close(fd);
    if (is_set)
        ar_log(AR_LOG_INFO, "the kernel reads up to %" PRIu32 " KiB ahead of a reader", kb);
    else
        ar_log(err == EACCES || err == EPERM ? AR_LOG_INFO : AR_LOG_WARN,
               "the kernel reads ahead its own 128 KiB, not %" PRIu32 " KiB: %s: %s", kb, path,
               strerror(err));
}

static ssize_t init_reply(int fd, const struct iovec *iov, const struct offer *offer,
                          bool *took_uring);

static ssize_t dev_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    uint64_t unique;
    int32_t error;

    (void)userdata;
    if (fusering_reply(iov, count)) {
        size_t len = 0;
        for (int i = 0; i < count; i++) {
            len += iov[i].iov_len;
        }
        return (ssize_t)len;
    }
    /* libfuse writes a reply as its header, then its body */
    if (__atomic_load_n(&init_count, __ATOMIC_ACQUIRE) == 0 || count != 2 ||
        iov[0].iov_len != WIRE_OUT_HEADER || iov[1].iov_len < 16 ||
        iov[1].iov_len > INIT_OUT_MAX)
        return writev(fd, iov, count);
    memcpy(&error, (const uint8_t *)iov[0].iov_base + 4, 4);
    memcpy(&unique, (const uint8_t *)iov[0].iov_base + 8, 8);
    struct offer offer;
    bool took_uring = false;
    if (!init_answered(fd, unique, &offer) || error != 0)
        return writev(fd, iov, count);
    ssize_t n = init_reply(fd, iov, &offer, &took_uring);
    if (n > 0)
        read_ahead_set();
    if (n > 0 && took_uring)
        fusering_start(); /* the kernel holds every request until its queues are registered */
    return n;
}

/* Write INIT's reply (iov: as libfuse made it) with the flags libfuse
 * leaves out added. */
static ssize_t init_reply(int fd, const struct iovec *iov, const struct offer *offer,
                          bool *took_uring)
{
    uint8_t body[INIT_OUT_MAX];
    uint32_t flags;
    uint32_t flags2 = 0;

    memcpy(body, iov[1].iov_base, iov[1].iov_len);
    memcpy(&flags, body + 12, 4);
    if (iov[1].iov_len >= 40)
        memcpy(&flags2, body + 32, 4);
    if (offer->has_parallel) {
        flags |= WIRE_PARALLEL_DIROPS;
        ar_log(AR_LOG_INFO, "the kernel may send lookups of one directory in parallel");
    }
    /* the kernel refuses passthrough beside its writeback cache */
    if (offer->has_passthrough && iov[1].iov_len >= 40 && (flags & WIRE_WRITEBACK_CACHE) == 0) {
        uint32_t depth = 1; /* the backing files' file system stacks on nothing */
        flags |= WIRE_INIT_EXT;
        flags2 |= WIRE_PASSTHROUGH2;
        memcpy(body + 36, &depth, 4);
        __atomic_store_n(&passthrough_fd, fd, __ATOMIC_RELEASE);
        ar_log(AR_LOG_INFO, "the kernel reads cached whole-block files itself (passthrough)");
    }
    if (offer->has_uring && iov[1].iov_len >= 40) {
        /* the kernel's largest request or reply body: max_write (byte
         * 20) and max_pages (28) as libfuse answers them */
        uint32_t max_write;
        uint16_t max_pages = WIRE_DEFAULT_PAGES;
        memcpy(&max_write, body + 20, 4);
        if ((flags & WIRE_MAX_PAGES) != 0)
            memcpy(&max_pages, body + 28, 2);
        size_t needed = (size_t)(max_pages > 0 ? max_pages : 1) * 4096u;
        needed = needed > max_write ? needed : max_write;
        needed = needed > WIRE_MIN_READ_BUFFER ? needed : WIRE_MIN_READ_BUFFER;
        *took_uring = needed <= fusering_payload();
        if (*took_uring) {
            flags |= WIRE_INIT_EXT;
            flags2 |= WIRE_OVER_IO_URING2;
        } else {
            ar_log(AR_LOG_WARN, "requests come through /dev/fuse: a body of %zu bytes is past "
                   "the rings' %zu", needed, fusering_payload());
        }
    }
    memcpy(body + 12, &flags, 4);
    if (iov[1].iov_len >= 40)
        memcpy(body + 32, &flags2, 4);
    struct iovec fixed[2] = {iov[0], {.iov_base = body, .iov_len = iov[1].iov_len}};
    return writev(fd, fixed, 2);
}

const struct fuse_custom_io *fusedev_io(void)
{
    static const struct fuse_custom_io io = {.read = dev_read, .writev = dev_writev};

    return &io;
}

int ar_fuse_session_io(struct fuse_session *se, const char *mountpoint, uint32_t read_ahead_kb)
{
    uint32_t conn;

    if (read_ahead_kb != 0 && mount_conn_find(mountpoint, 0, &conn)) {
        __atomic_store_n(&ahead_conn, conn, __ATOMIC_RELEASE);
        __atomic_store_n(&ahead_kb_wanted, read_ahead_kb, __ATOMIC_RELEASE);
    }
    return fuse_session_custom_io(se, fusedev_io(), fuse_session_fd(se));
}

/* ---- passthrough ------------------------------------------------------------------------------- */

void fusedev_want_passthrough(bool is_wanted)
{
    __atomic_store_n(&wants_passthrough, is_wanted, __ATOMIC_RELEASE);
}

bool fusedev_passthrough(void)
{
    return __atomic_load_n(&passthrough_fd, __ATOMIC_ACQUIRE) >= 0;
}

uint64_t fusedev_unique(void)
{
    return unique_now;
}

int fusedev_backing_open(int fd)
{
    struct wire_backing_map map = {.fd = fd};
    int dev = __atomic_load_n(&passthrough_fd, __ATOMIC_ACQUIRE);
    int id = dev >= 0 ? ioctl(dev, WIRE_IOC_BACKING_OPEN, &map) : -1;

    if (dev < 0)
        return -ESHUTDOWN; /* the loop ended: not a refusal of this kind of file */
    return id > 0 ? id : -errno;
}

void fusedev_backing_close(int id)
{
    uint32_t wire_id = (uint32_t)id;
    int dev = __atomic_load_n(&passthrough_fd, __ATOMIC_ACQUIRE);

    if (dev >= 0 && ioctl(dev, WIRE_IOC_BACKING_CLOSE, &wire_id) != 0)
        ar_log(AR_LOG_ERROR, "cannot let go of passthrough file %d: %s", id, strerror(errno));
}

int fusedev_reply_passthrough(uint64_t unique, uint64_t fh, int backing_id, bool is_direct)
{
    uint8_t out[32] = {0};
    uint32_t len = sizeof(out);
    uint32_t open_flags = WIRE_FOPEN_PASSTHROUGH | WIRE_FOPEN_NOFLUSH |
                          (is_direct ? WIRE_FOPEN_DIRECT_IO : 0);
    int dev = __atomic_load_n(&passthrough_fd, __ATOMIC_ACQUIRE);

    /* fuse_out_header (len, error, unique), then fuse_open_out (fh,
     * open_flags, backing_id) */
    memcpy(out, &len, 4);
    memcpy(out + 8, &unique, 8);
    memcpy(out + 16, &fh, 8);
    memcpy(out + 24, &open_flags, 4);
    memcpy(out + 28, &backing_id, 4);
    if (dev < 0)
        return -EOPNOTSUPP;
    struct iovec iov[2] = {{.iov_base = out, .iov_len = WIRE_OUT_HEADER},
                           {.iov_base = out + WIRE_OUT_HEADER, .iov_len = 16}};
    if (fusering_reply(iov, 2))
        return 0;
    return write(dev, out, sizeof(out)) == (ssize_t)sizeof(out) ? 0 : -errno;
}

/* Run a request, its unique id known to fusedev_unique() meanwhile. */
static void process(struct fuse_session *se, const struct fuse_buf *buf)
{
    unique_now = 0;
    if (buf->size >= WIRE_IN_HEADER)
        memcpy(&unique_now, (const uint8_t *)buf->mem + 8, 8);
    fuse_session_process_buf(se, buf);
    unique_now = 0;
}

/* ---- the loop ---------------------------------------------------------------------------------- */

struct job {
    struct job *next;
    struct fuse_buf buf;       /* its mem malloc()ed by libfuse, of the session's size, or
                                * lent by a ring entry until the reply */
    bool is_lent;
};

struct pool {
    struct fuse_session *se;
    fuse_quick_fn is_quick;
    void *quick_arg;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct job *head;          /* under mu */
    struct job *tail;
    bool is_done;              /* under mu: run what is queued, then stop */
    void *spares[SPARE_BUFS_MAX]; /* under mu: buffers the jobs are done with */
    uint32_t spare_count;
};

static void *pool_main(void *arg)
{
    struct pool *p = arg;

    for (;;) {
        pthread_mutex_lock(&p->mu);
        /* bounded: woken by each job and by the end */
        while (p->head == NULL && !p->is_done) {
            pthread_cond_wait(&p->cond, &p->mu);
        }
        struct job *j = p->head;
        if (j != NULL) {
            p->head = j->next;
            if (p->head == NULL)
                p->tail = NULL;
        }
        pthread_mutex_unlock(&p->mu);
        if (j == NULL)
            return NULL;
        process(p->se, &j->buf);
        bool is_kept = false;
        if (!j->is_lent) {
            pthread_mutex_lock(&p->mu);
            is_kept = p->spare_count < SPARE_BUFS_MAX;
            if (is_kept)
                p->spares[p->spare_count++] = j->buf.mem;
            pthread_mutex_unlock(&p->mu);
        }
        if (!j->is_lent && !is_kept)
            free(j->buf.mem);
        ar_free(j);
    }
}

/* Queue j for the pool, under p->mu. */
static void pool_push_locked(struct pool *p, struct job *j)
{
    j->next = NULL;
    if (p->tail != NULL)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->cond);
}

/* Whether a request (header and body as read) may run on the reading thread. */
static bool runs_here(const struct fuse_buf *buf, fuse_quick_fn is_quick, void *arg)
{
    const uint8_t *p = buf->mem;
    uint32_t opcode;

    if (buf->size < WIRE_IN_HEADER)
        return true; /* libfuse answers what it cannot parse */
    memcpy(&opcode, p + 4, 4);
    return is_quick(arg, opcode, p + WIRE_IN_HEADER, buf->size - WIRE_IN_HEADER);
}

/* A request from a ring (fusering.c), on its queue's thread: run as one
 * read from /dev/fuse would be. */
static void ring_run(void *ctx, void *request, size_t len)
{
    struct pool *p = ctx;
    struct fuse_buf buf = {.mem = request, .size = len};
    struct job *j = runs_here(&buf, p->is_quick, p->quick_arg) ? NULL : ar_malloc(sizeof(*j));

    if (j == NULL) {
        process(p->se, &buf);
        return;
    }
    j->buf = buf;
    j->is_lent = true;
    pthread_mutex_lock(&p->mu);
    bool is_done = p->is_done;
    if (!is_done)
        pool_push_locked(p, j);
    pthread_mutex_unlock(&p->mu);
    if (is_done) { /* the pool is ending: what arrives now runs here */
        ar_free(j);
        process(p->se, &buf);
    }
}

static struct pool *ring_pool; /* the loop's, while it runs */

/* At an INIT on fd: whether rings are ready for its session (made now if
 * the kernel offers them and they are wanted). */
static bool ring_ready(int fd, bool is_offered)
{
    struct pool *p = __atomic_load_n(&ring_pool, __ATOMIC_ACQUIRE);

    if (!__atomic_load_n(&wants_uring, __ATOMIC_ACQUIRE) || p == NULL)
        return false;
    if (!is_offered) {
        ar_log(AR_LOG_INFO, "requests come through /dev/fuse: the kernel does not offer "
               "io_uring (Linux 6.14 or later, with /sys/module/fuse/parameters/enable_uring "
               "set to Y)");
        return false;
    }
    if (fusering_prepared())
        return false; /* one session a process */
    int rc = fusering_prepare(fd, RING_PAYLOAD, ring_run, p);
    if (rc != 0)
        ar_log(AR_LOG_INFO, "requests come through /dev/fuse: no io_uring here (%s)",
               strerror(-rc));
    return rc == 0;
}

void fusedev_want_uring(bool is_wanted)
{
    __atomic_store_n(&wants_uring, is_wanted, __ATOMIC_RELEASE);
}

int fusedev_loop(struct fuse_session *se, uint32_t threads, fuse_quick_fn is_quick, void *arg)
{
    struct pool p = {.se = se, .is_quick = is_quick, .quick_arg = arg};
    pthread_t t[POOL_MAX];
    uint32_t started = 0;
    sigset_t all;
    sigset_t mine;
    int rc = 0;

    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cond, NULL);
    /* the pool's threads inherit a mask that blocks every signal */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &mine);
    for (uint32_t i = 0; i < threads && i < POOL_MAX; i++) {
        if (pthread_create(&t[started], NULL, pool_main, &p) == 0)
            started++;
    }
    pthread_sigmask(SIG_SETMASK, &mine, NULL);
    if (started == 0)
        rc = -EAGAIN;
    __atomic_store_n(&ring_pool, &p, __ATOMIC_RELEASE);
    struct fuse_buf buf = {.mem = NULL};
    /* bounded by the session: it ends on unmount, a signal or an error */
    while (rc == 0 && !fuse_session_exited(se)) {
        int got = fuse_session_receive_buf(se, &buf);
        if (got == -EINTR)
            continue;
        if (got <= 0) {
            rc = got == -ENODEV ? 0 : got; /* ENODEV: unmounted */
            break;
        }
        struct job *j = runs_here(&buf, is_quick, arg) ? NULL : ar_malloc(sizeof(*j));
        if (j == NULL) {
            process(se, &buf);
            continue;
        }
        j->buf = buf;
        j->is_lent = false;
        pthread_mutex_lock(&p.mu);
        pool_push_locked(&p, j);
        /* the job owns the buffer; the next read takes a spare (all are of
         * the session's size, as libfuse allocated them) or a new one */
        buf.mem = p.spare_count > 0 ? p.spares[--p.spare_count] : NULL;
        pthread_mutex_unlock(&p.mu);
    }
    free(buf.mem);
    /* The pool ends what it holds while the rings' threads still carry
     * its replies back to the kernel (and run what arrives meanwhile
     * themselves); then the rings stop. In-flight requests are answered
     * as they would be through /dev/fuse. */
    pthread_mutex_lock(&p.mu);
    p.is_done = true;
    pthread_cond_broadcast(&p.cond);
    pthread_mutex_unlock(&p.mu);
    for (uint32_t i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
    }
    if (fusering_prepared()) {
        fusering_stop();
        fusering_release();
    }
    __atomic_store_n(&ring_pool, NULL, __ATOMIC_RELEASE);
    __atomic_store_n(&passthrough_fd, -1, __ATOMIC_RELEASE);
    for (uint32_t i = 0; i < p.spare_count; i++) {
        free(p.spares[i]);
    }
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.mu);
    fuse_session_reset(se);
    return rc;
}
