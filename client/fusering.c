/* client/fusering.c - FUSE requests over io_uring (Linux 6.14 and later).
 *
 * With the fuse module's enable_uring set, the kernel offers
 * FUSE_OVER_IO_URING in its INIT request. A daemon that takes it registers,
 * for every possible CPU, a queue of entries on /dev/fuse by io_uring
 * commands: each entry a 288-byte header and a payload buffer. From then on
 * a request is written into a free entry of the queue of the CPU its
 * caller runs on, which completes that entry's command; its reply goes into
 * the same entry, and one command (COMMIT_AND_FETCH) hands the reply over
 * and offers the entry for the next request. A request costs one system
 * call instead of a read and a write, and a thread on its caller's CPU
 * serves it instead of one reader woken across cores. Notifications,
 * FORGETs and INTERRUPTs still travel through /dev/fuse (fusedev.c reads
 * it as before), and so does every request until each queue has an entry
 * registered: a queue whose entries the kernel all refuses leaves the
 * mount on /dev/fuse, slower but whole.
 *
 * The wire (include/uapi/linux/fuse.h since 6.14, newer than Debian 12's
 * headers): an entry's header holds 128 bytes for the fuse_in_header of a
 * request and the fuse_out_header of its reply, 128 bytes for a request's
 * first argument (its per-operation header, possibly empty), then
 * fuse_uring_ent_in_out (flags, the commit id, the payload's length). The
 * rest of a request, and all of a reply's body, is in the payload. A
 * command's own 24 bytes (fuse_uring_cmd_req: flags, commit id, queue)
 * sit in the command area of a 128-byte SQE.
 *
 * libfuse 3.14 takes a request as one buffer (header, then arguments), so
 * each payload buffer has room before it: the request's header and first
 * argument are copied there, ending where the payload begins.
 *
 * Threads: one a queue, pinned to its CPU, and the only one to touch its
 * ring: a reply made on it is queued at once and submitted with its next
 * wait; a reply made elsewhere (the FUSE pool, the metadata client's
 * thread) goes on the queue's list under its mutex, and an eventfd that the
 * ring reads wakes the thread to submit it. At the session's end the
 * FUSE pool replies first, then the threads submit what is left and end;
 * a reply after that is dropped (fusering_release waits out replies in
 * progress). */
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"

#define QUEUE_DEPTH        32u   /* entries a CPU: requests in flight from it */
#define QUEUES_MAX         256u
#define IN_HEADER          40u   /* fuse_in_header */
#define OUT_HEADER         16u   /* fuse_out_header */
#define OP_IN_MAX          128u
#define SLACK              (IN_HEADER + OP_IN_MAX)
#define CMD_REGISTER       1u    /* FUSE_IO_URING_CMD_REGISTER */
#define CMD_COMMIT_FETCH   2u    /* FUSE_IO_URING_CMD_COMMIT_AND_FETCH */
#define WAKE_TAG           1u    /* user_data of the eventfd's read (entries are pointers) */

struct ring_header {             /* fuse_uring_req_header */
    uint8_t in_out[128];
    uint8_t op_in[OP_IN_MAX];
    uint64_t flags;              /* fuse_uring_ent_in_out */
    uint64_t commit_id;
    uint32_t payload_sz;
    uint32_t padding;
    uint64_t reserved;
};

struct ring_cmd {                /* fuse_uring_cmd_req */
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};

struct queue;

struct entry {
    struct queue *q;
    struct ring_header header;
    uint8_t *buf;                /* SLACK bytes, then the payload */
    struct iovec iov[2];         /* header, payload: what REGISTER names */
    uint64_t unique;             /* atomic: the request it holds (0: none) */
    uint64_t commit_id;          /* of the reply going back */
    uint32_t last_cmd;           /* what to send again after -EINTR */
    bool is_dead;                /* the kernel ended it (unmount) */
    fusering_call_fn call;       /* on q->commits: run this on the queue's thread (it
                                  * replies), else the reply is ready to go */
    void *call_arg;
    struct entry *next;          /* in q->commits */
};

struct queue {
    uint32_t qid;
    pthread_t thread;
    bool has_thread;
    bool has_ring;
    struct io_uring ring;
    int wake_fd;                 /* eventfd: replies wait in commits */
    uint32_t refused;            /* entries whose REGISTER the kernel refused */
    uint64_t wake_value;         /* what the ring's read of it fills */
    pthread_mutex_t mu;
    struct entry *commits;       /* under mu */
    struct entry entries[QUEUE_DEPTH];
};

static struct {
    int dev_fd;
    fusering_run_fn run;
    void *ctx;
    size_t payload;
    uint32_t queue_count;
    struct queue *queues;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool is_started;             /* under mu: the INIT reply took the ring */
    bool is_stopping;            /* atomic, and under mu */
    bool is_open;                /* atomic: replies may go to the rings */
    uint32_t repliers;           /* atomic: replies in progress */
} R = {.dev_fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* The kernel's queues: one for each CPU number up to the highest
 * possible one (nr_cpu_ids), holes included. /sys lists the possible
 * CPUs in ascending ranges ("0-3", "0,2-3,8-11"), so the last number is
 * the highest. 0 if unknown. */
static uint32_t possible_cpus(void)
{
    FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
    char line[256] = "";
    bool is_read = f != NULL && fgets(line, sizeof(line), f) != NULL;

    if (f != NULL)
        fclose(f);
    size_t n = strcspn(line, "\n");
    if (!is_read || n == 0 || n == sizeof(line) - 1 || line[0] != '0')
        return 0;
    size_t start = n;
    while (start > 0 && line[start - 1] >= '0' && line[start - 1] <= '9') {
        start--;
    }
    if (start == n || n - start > 6)
        return 0;
    unsigned last = (unsigned)strtoul(line + start, NULL, 10);
    return last < QUEUES_MAX ? last + 1 : 0;
}

static struct io_uring_sqe *sqe_for(struct queue *q, struct entry *e, uint32_t cmd_op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

    /* the ring has a slot for every entry and the eventfd's read, and each
     * has one command out at a time: a full ring is a bug here */
    if (sqe == NULL) {
        ar_log(AR_LOG_ERROR, "FUSE ring %" PRIu32 ": no free slot", q->qid);
        abort();
    }
    memset(sqe, 0, 2 * sizeof(*sqe));
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = R.dev_fd;
    sqe->cmd_op = cmd_op;
    sqe->user_data = (uint64_t)(uintptr_t)e;
    e->last_cmd = cmd_op;
    return sqe;
}

static void send_register(struct queue *q, struct entry *e)
{
    struct io_uring_sqe *sqe = sqe_for(q, e, CMD_REGISTER);
    struct ring_cmd cmd = {.qid = (uint16_t)q->qid};

    sqe->addr = (uint64_t)(uintptr_t)e->iov;
    sqe->len = 2;
    memcpy(sqe->cmd, &cmd, sizeof(cmd));
}

static void send_commit(struct queue *q, struct entry *e)
{
    struct io_uring_sqe *sqe = sqe_for(q, e, CMD_COMMIT_FETCH);
    struct ring_cmd cmd = {.commit_id = e->commit_id, .qid = (uint16_t)q->qid};

    memcpy(sqe->cmd, &cmd, sizeof(cmd));
}

static void arm_wake(struct queue *q)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

    if (sqe == NULL) {
        ar_log(AR_LOG_ERROR, "FUSE ring %" PRIu32 ": no free slot", q->qid);
        abort();
    }
    io_uring_prep_read(sqe, q->wake_fd, &q->wake_value, sizeof(q->wake_value), 0);
    sqe->user_data = WAKE_TAG;
}

/* What other threads left for q: replies to send, calls to run (which
 * reply); on q's thread, or on the stopping one once it has ended. */
static void take_commits(struct queue *q, bool is_own)
{
    pthread_mutex_lock(&q->mu);
    struct entry *e = q->commits;
    q->commits = NULL;
    pthread_mutex_unlock(&q->mu);
    /* bounded: each entry is on the list at most once */
    while (e != NULL) {
        struct entry *next = e->next;
        fusering_call_fn call = e->call;
        e->call = NULL;
        if (call != NULL)
            call(e->call_arg);
        else if (is_own)
            send_commit(q, e);
        e = next;
    }
}

/* Answer a request the mount never sees with -error. */
static void refuse(struct queue *q, struct entry *e, uint64_t unique, int error)
{
    uint32_t len = OUT_HEADER;
    int32_t err = -error;

    memcpy(e->header.in_out, &len, 4);
    memcpy(e->header.in_out + 4, &err, 4);
    memcpy(e->header.in_out + 8, &unique, 8);
    e->header.payload_sz = 0;
    e->commit_id = unique;
    send_commit(q, e);
}

/* A request arrived in e: make it one buffer and run it. */
static void arrived(struct queue *q, struct entry *e)
{
    const struct ring_header *h = &e->header;
    uint32_t len;
    uint64_t unique;

    memcpy(&len, h->in_out, 4);
    memcpy(&unique, h->in_out + 8, 8);
    size_t payload = h->payload_sz;
    size_t op_len = len >= IN_HEADER + payload ? len - IN_HEADER - payload : SIZE_MAX;
    if (payload > R.payload || op_len > OP_IN_MAX || unique == 0) {
        ar_log(AR_LOG_ERROR, "FUSE ring: a request of %" PRIu32 " bytes with a payload of %zu: "
               "refused", len, payload);
        refuse(q, e, unique != 0 ? unique : h->commit_id, EIO);
        return;
    }
    uint8_t *start = e->buf + SLACK - op_len - IN_HEADER;
    memcpy(start, h->in_out, IN_HEADER);
    memcpy(start + IN_HEADER, h->op_in, op_len);
    e->commit_id = unique;
    __atomic_store_n(&e->unique, unique, __ATOMIC_RELEASE);
    R.run(R.ctx, start, IN_HEADER + op_len + payload);
}

static void completed(struct queue *q, uint64_t tag, int res, uint32_t *dead)
{
    if (tag == WAKE_TAG) {
        if (!__atomic_load_n(&R.is_stopping, __ATOMIC_ACQUIRE))
            arm_wake(q);
        take_commits(q, true);
        return;
    }
    struct entry *e = (struct entry *)(uintptr_t)tag;
    if (res == 0) {
        arrived(q, e);
    } else if (res == -EINTR || res == -EAGAIN) {
        if (e->last_cmd == CMD_REGISTER)
            send_register(q, e);
        else
            send_commit(q, e);
    } else if (res == -ENOENT && e->last_cmd == CMD_COMMIT_FETCH) {
        /* its request had ended (interrupted); the kernel keeps the
         * entry aside, so it is offered again as a new one */
        send_register(q, e);
    } else if (!e->is_dead) {
        /* -ENOTCONN: unmounted; else a refusal, said once a queue */
        bool is_refusal = res != -ENOTCONN && res != -ECONNABORTED;
        if (is_refusal && *dead == 0)
            ar_log(AR_LOG_ERROR, "FUSE ring %" PRIu32 ": the kernel %s an entry: %s", q->qid,
                   e->last_cmd == CMD_REGISTER ? "refused" : "ended", strerror(-res));
        q->refused += is_refusal && e->last_cmd == CMD_REGISTER;
        e->is_dead = true;
        (*dead)++;
    }
}

static void *queue_main(void *arg)
{
    struct queue *q = arg;
    cpu_set_t cpu;
    uint32_t dead = 0;

    pthread_mutex_lock(&R.mu);
    /* bounded: woken by the INIT reply or the end */
    while (!R.is_started && !R.is_stopping) {
        pthread_cond_wait(&R.cond, &R.mu);
    }
    bool is_started = R.is_started && !R.is_stopping;
    pthread_mutex_unlock(&R.mu);
    if (!is_started)
        return NULL;
    CPU_ZERO(&cpu);
    CPU_SET(q->qid, &cpu);
    if (sched_setaffinity(0, sizeof(cpu), &cpu) != 0 && q->qid == 0)
        ar_log(AR_LOG_INFO, "FUSE ring threads float between CPUs: %s", strerror(errno));
    for (uint32_t i = 0; i < QUEUE_DEPTH; i++) {
        send_register(q, &q->entries[i]);
    }
    arm_wake(q);
    /* bounded: until the kernel ends every entry (unmount) or the loop stops */
    while (dead < QUEUE_DEPTH && !__atomic_load_n(&R.is_stopping, __ATOMIC_ACQUIRE)) {
        int rc = io_uring_submit_and_wait(&q->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            ar_log(AR_LOG_ERROR, "FUSE ring %" PRIu32 ": %s", q->qid, strerror(-rc));
            break;
        }
        struct io_uring_cqe *cqe;
        unsigned head;
        unsigned seen = 0;
        io_uring_for_each_cqe(&q->ring, head, cqe) {
            completed(q, cqe->user_data, cqe->res, &dead);
            seen++;
        }
        io_uring_cq_advance(&q->ring, seen);
    }
    /* Until every queue has an entry, the kernel sends all requests
     * through /dev/fuse (seen with entries it refused as too short) */
    if (q->refused == QUEUE_DEPTH)
        ar_log(AR_LOG_WARN, "FUSE ring %" PRIu32 ": the kernel took none of its entries; "
               "requests keep coming through /dev/fuse", q->qid);
    /* replies queued since the last wake go back before the thread ends */
    take_commits(q, true);
    (void)io_uring_submit(&q->ring);
    return NULL;
}

static void queues_free(void)
{
    for (uint32_t i = 0; i < R.queue_count; i++) {
        struct queue *q = &R.queues[i];
        if (q->has_ring)
            io_uring_queue_exit(&q->ring);
        if (q->wake_fd >= 0)
            close(q->wake_fd);
        for (uint32_t k = 0; k < QUEUE_DEPTH; k++) {
            free(q->entries[k].buf);
        }
        pthread_mutex_destroy(&q->mu);
    }
    free(R.queues);
    R.queues = NULL;
    R.queue_count = 0;
}

static int queue_init(struct queue *q, uint32_t qid)
{
    struct io_uring_params params = {.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE,
                                     .cq_entries = 2 * (QUEUE_DEPTH + 1)};

    q->qid = qid;
    q->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (q->wake_fd < 0)
        return -errno;
    int rc = io_uring_queue_init_params(QUEUE_DEPTH + 1, &q->ring, &params);
    if (rc != 0)
        return rc;
    q->has_ring = true;
    for (uint32_t i = 0; i < QUEUE_DEPTH; i++) {
        struct entry *e = &q->entries[i];
        e->q = q;
        /* untouched pages cost nothing until a request fills them */
        e->buf = malloc(SLACK + R.payload);
        if (e->buf == NULL)
            return -ENOMEM;
        e->iov[0] = (struct iovec){.iov_base = &e->header, .iov_len = sizeof(e->header)};
        e->iov[1] = (struct iovec){.iov_base = e->buf + SLACK, .iov_len = R.payload};
    }
    return 0;
}

int fusering_prepare(int dev_fd, size_t payload, fusering_run_fn run, void *ctx)
{
    uint32_t count = possible_cpus();
    sigset_t all;
    sigset_t mine;
    int rc = 0;

    if (count == 0)
        return -ENOTSUP;
    R.dev_fd = dev_fd;
    R.run = run;
    R.ctx = ctx;
    R.payload = payload;
    R.is_started = false;
    R.is_stopping = false;
    R.queues = calloc(count, sizeof(*R.queues));
    if (R.queues == NULL)
        return -ENOMEM;
    R.queue_count = count;
    for (uint32_t i = 0; i < count; i++) {
        R.queues[i].wake_fd = -1;
        pthread_mutex_init(&R.queues[i].mu, NULL);
    }
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        rc = queue_init(&R.queues[i], i);
    }
    /* the threads block every signal: SIGTERM ends the /dev/fuse reader */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &mine);
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        rc = -pthread_create(&R.queues[i].thread, NULL, queue_main, &R.queues[i]);
        R.queues[i].has_thread = rc == 0;
    }
    pthread_sigmask(SIG_SETMASK, &mine, NULL);
    if (rc != 0) {
        fusering_stop();
        fusering_release();
    }
    return rc;
}

bool fusering_prepared(void)
{
    return R.queue_count > 0;
}

size_t fusering_payload(void)
{
    return R.payload;
}

void fusering_start(void)
{
    __atomic_store_n(&R.is_open, true, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&R.mu);
    R.is_started = true;
    pthread_cond_broadcast(&R.cond);
    pthread_mutex_unlock(&R.mu);
    ar_log(AR_LOG_INFO, "requests come over io_uring: %" PRIu32 " queues of %u", R.queue_count,
           QUEUE_DEPTH);
}

static struct entry *entry_of(uint64_t unique)
{
    for (uint32_t i = 0; i < R.queue_count; i++) {
        struct queue *q = &R.queues[i];
        for (uint32_t k = 0; k < QUEUE_DEPTH; k++) {
            if (__atomic_load_n(&q->entries[k].unique, __ATOMIC_ACQUIRE) == unique)
                return &q->entries[k];
        }
    }
    return NULL;
}

/* From another thread: leave e on q's list and wake q's thread; a call
 * only while the queues run (fusering_stop runs what is left then). */
static bool hand_over(struct queue *q, struct entry *e, fusering_call_fn call, void *arg)
{
    uint64_t one = 1;

    pthread_mutex_lock(&q->mu);
    bool is_taken = call == NULL || !__atomic_load_n(&R.is_stopping, __ATOMIC_ACQUIRE);
    bool was_empty = q->commits == NULL;
    if (is_taken) {
        e->call = call;
        e->call_arg = arg;
        e->next = q->commits;
        q->commits = e;
    }
    pthread_mutex_unlock(&q->mu);
    if (is_taken && was_empty && write(q->wake_fd, &one, sizeof(one)) != sizeof(one))
        ar_log(AR_LOG_ERROR, "FUSE ring %" PRIu32 ": cannot wake: %s", q->qid, strerror(errno));
    return is_taken;
}

bool fusering_call(uint64_t unique, fusering_call_fn call, void *arg)
{
    bool is_queued = false;

    if (!__atomic_load_n(&R.is_open, __ATOMIC_ACQUIRE) || unique == 0)
        return false;
    __atomic_add_fetch(&R.repliers, 1, __ATOMIC_SEQ_CST);
    struct entry *e = __atomic_load_n(&R.is_open, __ATOMIC_SEQ_CST) ? entry_of(unique) : NULL;
    if (e != NULL)
        is_queued = hand_over(e->q, e, call, arg);
    __atomic_sub_fetch(&R.repliers, 1, __ATOMIC_SEQ_CST);
    return is_queued;
}

bool fusering_reply(const struct iovec *iov, int count)
{
    uint64_t unique;
    bool is_ring = false;

    if (!__atomic_load_n(&R.is_open, __ATOMIC_ACQUIRE) || count < 1 ||
        iov[0].iov_len < OUT_HEADER)
        return false;
    memcpy(&unique, (const uint8_t *)iov[0].iov_base + 8, 8);
    __atomic_add_fetch(&R.repliers, 1, __ATOMIC_SEQ_CST);
    struct entry *e = __atomic_load_n(&R.is_open, __ATOMIC_SEQ_CST) && unique != 0
                          ? entry_of(unique)
                          : NULL;
    if (e != NULL) {
        struct queue *q = e->q;
        size_t len = 0;
        bool fits = true;
        for (int i = 1; i < count && fits; i++) {
            fits = len + iov[i].iov_len <= R.payload;
            if (fits)
                memcpy(e->buf + SLACK + len, iov[i].iov_base, iov[i].iov_len);
            len += iov[i].iov_len;
        }
        memcpy(e->header.in_out, iov[0].iov_base, OUT_HEADER);
        e->header.payload_sz = fits ? (uint32_t)len : 0;
        if (!fits) {
            int32_t err = -EIO;
            memcpy(e->header.in_out + 4, &err, 4);
            ar_log(AR_LOG_ERROR, "FUSE ring: a reply of %zu bytes is past the payload", len);
        }
        __atomic_store_n(&e->unique, 0, __ATOMIC_RELEASE);
        if (pthread_equal(pthread_self(), q->thread))
            send_commit(q, e);
        else
            hand_over(q, e, NULL, NULL);
        is_ring = true;
    }
    __atomic_sub_fetch(&R.repliers, 1, __ATOMIC_SEQ_CST);
    return is_ring;
}

void fusering_stop(void)
{
    uint64_t one = 1;

    pthread_mutex_lock(&R.mu);
    __atomic_store_n(&R.is_stopping, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&R.cond);
    pthread_mutex_unlock(&R.mu);
    for (uint32_t i = 0; i < R.queue_count; i++) {
        struct queue *q = &R.queues[i];
        if (!q->has_thread)
            continue;
        if (write(q->wake_fd, &one, sizeof(one)) != sizeof(one))
            ar_log(AR_LOG_ERROR, "FUSE ring %" PRIu32 ": cannot stop: %s", i, strerror(errno));
        pthread_join(q->thread, NULL);
        q->has_thread = false;
        take_commits(q, false); /* the calls still run: each ends its request */
    }
}

void fusering_release(void)
{
    __atomic_store_n(&R.is_open, false, __ATOMIC_SEQ_CST);
    /* bounded: a reply in progress copies and queues, then leaves */
    while (__atomic_load_n(&R.repliers, __ATOMIC_SEQ_CST) != 0) {
        sched_yield();
    }
    queues_free();
}
