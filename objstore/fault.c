/* objstore/fault.c - fault://?inner=URL&...: wraps another store and injects
 * failures, so every error path above it can be driven in a test.
 *
 *   inner=URL        the store wrapped (percent-encode its '&' and '?')
 *   fail_every=N     every Nth call (counting all operations) fails ...
 *   errno=E          ... with -E (default EIO)
 *   fail_ops=MASK    which calls count: 1 put, 2 get, 4 head, 8 delete, 16 list
 *   flip_reads=1     flip one bit in every 2nd byte range read: the CRCs must catch it
 *   torn_puts=1      a failing put leaves the first half of the object stored, as a
 *                    store without atomic puts would: readers must call it corrupt
 *   get_delay_ms=N   every get waits N ms first: a slow store (at most 60000)
 *   put_delay_ms=N   every put waits N ms first (at most 60000)
 *
 * Thread: any; the call counter is atomic. */
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "internal.h"

enum { FAULT_PUT = 1, FAULT_GET = 2, FAULT_HEAD = 4, FAULT_DEL = 8, FAULT_LIST = 16 };

struct fault_backend {
    struct obj__backend base;
    struct obj__backend *inner;
    uint32_t fail_every;
    uint32_t err;
    uint32_t ops_mask;
    uint32_t flip_reads;
    uint32_t torn_puts;
    uint32_t get_delay_ms;
    uint32_t put_delay_ms;
    atomic_uint calls;
    atomic_uint reads;
};

static struct fault_backend *fault_of(struct obj__backend *b)
{
    return OBJ_CONTAINER_OF(b, struct fault_backend, base);
}

static int fault_hit(struct fault_backend *fb, uint32_t op, char *errmsg)
{
    unsigned n;

    if ((fb->ops_mask & op) == 0 || fb->fail_every == 0)
        return 0;
    n = atomic_fetch_add(&fb->calls, 1) + 1;
    if (n % fb->fail_every != 0)
        return 0;
    return obj__fail(errmsg, -(int)fb->err, "injected fault (call %u)", n);
}

static void delay_ms(uint32_t ms)
{
    struct timespec wait = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    /* bounded: a signal only ends the wait early */
    nanosleep(&wait, NULL);
}

static int fault_put(struct obj__backend *b, const char *key, const struct iovec *iov, int iovcnt,
                     char *errmsg)
{
    struct fault_backend *fb = fault_of(b);
    int rc = fault_hit(fb, FAULT_PUT, errmsg);

    if (fb->put_delay_ms > 0)
        delay_ms(fb->put_delay_ms);

    if (rc == 0)
        return fb->inner->ops->put(fb->inner, key, iov, iovcnt, errmsg);
    if (fb->torn_puts) {
        /* Leave the first half stored, as a store without atomic puts might. */
        struct iovec half[OBJ_IOV_MAX];
        size_t budget = obj__iov_bytes(iov, iovcnt) / 2;
        int n = 0;
        for (; n < iovcnt && budget > 0; n++) {
            half[n] = iov[n];
            half[n].iov_len = half[n].iov_len < budget ? half[n].iov_len : budget;
            budget -= half[n].iov_len;
        }
        if (n > 0)
            fb->inner->ops->put(fb->inner, key, half, n, NULL);
    }
    return rc;
}

static int fault_get(struct obj__backend *b, const char *key, uint64_t off, uint64_t len,
                     const struct iovec *iov, int iovcnt, size_t *got, char *errmsg)
{
    struct fault_backend *fb = fault_of(b);
    int rc = fault_hit(fb, FAULT_GET, errmsg);

    if (rc != 0)
        return rc;
    if (fb->get_delay_ms > 0)
        delay_ms(fb->get_delay_ms);
    rc = fb->inner->ops->get(fb->inner, key, off, len, iov, iovcnt, got, errmsg);
    if (rc == 0 && fb->flip_reads && *got > 0 && atomic_fetch_add(&fb->reads, 1) % 2 == 1) {
        /* flip a bit in the last byte read */
        size_t at = *got - 1;
        for (int i = 0; i < iovcnt; i++) {
            if (at < iov[i].iov_len) {
                ((uint8_t *)iov[i].iov_base)[at] ^= 0x10;
                break;
            }
            at -= iov[i].iov_len;
        }
    }
    return rc;
}

static int fault_head(struct obj__backend *b, const char *key, uint64_t *raw_size, char *errmsg)
{
    struct fault_backend *fb = fault_of(b);
    int rc = fault_hit(fb, FAULT_HEAD, errmsg);

    return rc != 0 ? rc : fb->inner->ops->head(fb->inner, key, raw_size, errmsg);
}

static int fault_del(struct obj__backend *b, const char *key, char *errmsg)
{
    struct fault_backend *fb = fault_of(b);
    int rc = fault_hit(fb, FAULT_DEL, errmsg);

    return rc != 0 ? rc : fb->inner->ops->del(fb->inner, key, errmsg);
}

static int fault_list(struct obj__backend *b, const char *prefix, const char *start_after,
                      struct obj_list_page *page, char *errmsg)
{
    struct fault_backend *fb = fault_of(b);
    int rc = fault_hit(fb, FAULT_LIST, errmsg);

    return rc != 0 ? rc : fb->inner->ops->list(fb->inner, prefix, start_after, page, errmsg);
}

static void fault_close(struct obj__backend *b)
{
    struct fault_backend *fb = fault_of(b);

    fb->inner->ops->close(fb->inner);
    obj__free(fb);
}

static const struct obj__backend_ops fault_ops = {
    .put = fault_put,
    .get = fault_get,
    .head = fault_head,
    .del = fault_del,
    .list = fault_list,
    .close = fault_close,
};

int obj__fault_open(const struct obj__url *u, struct obj__backend **out, char *errmsg)
{
    static const char *const known[] = {"inner",      "fail_every", "errno",       "fail_ops",
                                        "flip_reads", "torn_puts",  "get_delay_ms",
                                        "put_delay_ms"};
    const char *inner = obj__url_param(u, "inner");
    struct fault_backend *fb;
    int rc = obj__url_check_params(u, known, sizeof(known) / sizeof(known[0]), errmsg);

    if (rc != 0)
        return rc;
    if (inner == NULL || strncmp(inner, "fault://", 8) == 0)
        return obj__fail(errmsg, -EINVAL, "fault:// needs inner=URL of another kind of store");
    fb = obj__calloc(1, sizeof(*fb));
    if (fb == NULL)
        return obj__fail(errmsg, -ENOMEM, "out of memory");
    fb->err = EIO;
    fb->ops_mask = 31;
    rc = obj__url_param_u32(u, "fail_every", 0, 1u << 30, &fb->fail_every, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "errno", 1, 4095, &fb->err, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "fail_ops", 1, 31, &fb->ops_mask, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "flip_reads", 0, 1, &fb->flip_reads, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "torn_puts", 0, 1, &fb->torn_puts, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "get_delay_ms", 0, 60000, &fb->get_delay_ms, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "put_delay_ms", 0, 60000, &fb->put_delay_ms, errmsg);
    if (rc == 0)
        rc = obj__backend_open(inner, &fb->inner, errmsg);
    if (rc != 0) {
        obj__free(fb);
        return rc;
    }
    fb->base.ops = &fault_ops;
    *out = &fb->base;
    return 0;
}
