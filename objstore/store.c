/* objstore/store.c - the public object-store API: checks keys, frames objects
 * on put and checks every byte returned on get, and runs asynchronous
 * requests on a worker pool. Backends below move raw bytes only.
 *
 * Invariants: no call returns data whose piece CRC was not checked; a worker
 * calls each accepted request's callback exactly once.
 * Thread: any. The pool's queue is under pool_lock; workers start on the first
 * obj_submit(), so a store used only synchronously has no threads. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct obj_store {
    struct obj__backend *backend;
    char url[4096];
    unsigned workers_wanted;
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;   /* signalled when the queue gains work or stops */
    pthread_t threads[OBJ_WORKERS_MAX];
    unsigned thread_count;      /* under pool_lock */
    unsigned idle_count;        /* workers waiting for work; under pool_lock */
    bool is_stopping;           /* under pool_lock */
    struct obj_req *queue_head; /* under pool_lock */
    struct obj_req *queue_tail;
    unsigned queue_count;       /* <= OBJ_QUEUE_MAX */
};

int obj__backend_open(const char *url, struct obj__backend **out, char *errmsg)
{
    struct obj__url *u = obj__calloc(1, sizeof(*u));
    int rc;

    if (u == NULL)
        return obj__fail(errmsg, -ENOMEM, "out of memory");
    rc = obj__url_parse(url, u, errmsg);
    if (rc == 0) {
        if (strcmp(u->scheme, "file") == 0)
            rc = obj__file_open(u, out, errmsg);
        else if (strcmp(u->scheme, "s3") == 0)
            rc = obj__s3_open(u, out, errmsg);
        else if (strcmp(u->scheme, "fault") == 0)
            rc = obj__fault_open(u, out, errmsg);
        else
            rc = obj__fail(errmsg, -EINVAL,
                           "unknown store scheme '%s://' (use file:///DIR or s3://BUCKET/PREFIX)",
                           u->scheme);
    }
    obj__free(u);
    return rc;
}

int obj_store_open(const char *url, const struct obj_options *opts, struct obj_store **out,
                   char *errmsg)
{
    struct obj_store *s;
    int rc;

    if (url == NULL || out == NULL)
        return obj__fail(errmsg, -EINVAL, "no store URL given");
    if (opts != NULL && opts->workers > OBJ_WORKERS_MAX)
        return obj__fail(errmsg, -EINVAL, "at most %u workers", OBJ_WORKERS_MAX);
    if (strlen(url) >= sizeof(s->url))
        return obj__fail(errmsg, -EINVAL, "store URL longer than %zu bytes", sizeof(s->url) - 1);
    s = obj__calloc(1, sizeof(*s));
    if (s == NULL)
        return obj__fail(errmsg, -ENOMEM, "out of memory");
    rc = obj__backend_open(url, &s->backend, errmsg);
    if (rc != 0) {
        obj__free(s);
        return rc;
    }
    memcpy(s->url, url, strlen(url) + 1);
    s->workers_wanted = opts != NULL && opts->workers > 0 ? opts->workers : 32;
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    *out = s;
    return 0;
}

void obj_store_close(struct obj_store *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 0; i < s->thread_count; i++) {
        /* a callback cannot close its own store: the worker would join itself */
        OBJ_ASSERT(!pthread_equal(pthread_self(), s->threads[i]));
    }
    pthread_mutex_lock(&s->pool_lock);
    s->is_stopping = true;
    pthread_cond_broadcast(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
    for (unsigned i = 0; i < s->thread_count; i++) {
        pthread_join(s->threads[i], NULL);
    }
    OBJ_ASSERT(s->queue_count == 0);
    pthread_cond_destroy(&s->pool_cond);
    pthread_mutex_destroy(&s->pool_lock);
    s->backend->ops->close(s->backend);
    obj__free(s);
}

const char *obj_store_url(const struct obj_store *s)
{
    return s->url;
}

/* ---- synchronous calls ----------------------------------------------------- */

int obj_put(struct obj_store *s, const char *key, const void *data, size_t size, char *errmsg)
{
    uint8_t hdr[OBJ_FRAME_HEADER_BYTES];
    struct iovec iov[2];
    int rc = obj__key_check(key, false, errmsg);

    if (rc != 0)
        return rc;
    if (size > OBJ_DATA_BYTES_MAX)
        return obj__fail(errmsg, -EMSGSIZE, "object of %zu bytes is over the %u-byte limit", size,
                         OBJ_DATA_BYTES_MAX);
    if (data == NULL && size > 0)
        return obj__fail(errmsg, -EINVAL, "no data given");
    obj__frame_encode(hdr, data, size);
    iov[0] = (struct iovec){.iov_base = hdr, .iov_len = sizeof(hdr)};
    iov[1] = (struct iovec){.iov_base = (void *)(uintptr_t)data, .iov_len = size};
    return s->backend->ops->put(s->backend, key, iov, size > 0 ? 2 : 1, errmsg);
}

static uint32_t pieces_to(uint64_t data_end)
{
    return (uint32_t)((data_end + OBJ_FRAME_PIECE_BYTES - 1) / OBJ_FRAME_PIECE_BYTES);
}

int obj_get(struct obj_store *s, const char *key, void *buf, size_t cap, size_t *size_out,
            char *errmsg)
{
    uint8_t hdr[OBJ_FRAME_HEADER_BYTES];
    struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof(hdr)},
                           {.iov_base = buf, .iov_len = cap}};
    struct obj__frame f;
    size_t got = 0;
    int rc = obj__key_check(key, false, errmsg);

    if (rc != 0)
        return rc;
    if (buf == NULL && cap > 0)
        return obj__fail(errmsg, -EINVAL, "no buffer given");
    rc = s->backend->ops->get(s->backend, key, 0, OBJ_RAW_TO_END, iov, cap > 0 ? 2 : 1, &got,
                              errmsg);
    if (rc == -EMSGSIZE)
        return obj__fail(errmsg, -EMSGSIZE, "%.200s is larger than the %zu-byte buffer", key, cap);
    if (rc != 0)
        return rc;
    if (got < sizeof(hdr))
        return obj__fail(errmsg, -EBADMSG, "%.200s: %zu bytes, shorter than an object header",
                         key, got);
    rc = obj__frame_decode(hdr, &f, errmsg);
    if (rc == 0 && f.data_bytes != got - sizeof(hdr))
        rc = obj__fail(errmsg, -EBADMSG, "%.200s: header says %u data bytes, store has %zu", key,
                       f.data_bytes, got - sizeof(hdr));
    if (rc == 0)
        rc = obj__frame_check(&f, 0, pieces_to(f.data_bytes), &iov[1], 1, errmsg);
    if (rc == 0)
        *size_out = f.data_bytes;
    return rc;
}

/* Range reads. The pieces [p0, p1) that overlap [off, off+len) are read
 * whole, so their CRCs can be checked: the bytes before off and after the
 * range land in scratch, the range itself straight in the caller's buffer.
 * A range near the front is read with the header in one request; otherwise the
 * header is read first, which also tells where the data ends. */
struct range_plan {
    uint8_t hdr[OBJ_FRAME_HEADER_BYTES];
    struct iovec iov[4];
    int iovcnt;
    uint64_t raw_off; /* where the backend read starts */
    uint64_t raw_len;
    uint64_t data_from; /* data byte at which the read's data starts */
};

static int range_read(struct obj_store *s, const char *key, struct range_plan *p, uint8_t *scratch,
                      uint64_t off, size_t len, void *buf, uint64_t data_end, bool with_header,
                      size_t *got, char *errmsg)
{
    size_t head = (size_t)(off - p->data_from);
    size_t tail = (size_t)(data_end > off + len ? data_end - (off + len) : 0);

    p->iovcnt = 0;
    if (with_header)
        p->iov[p->iovcnt++] = (struct iovec){.iov_base = p->hdr, .iov_len = sizeof(p->hdr)};
    if (head > 0)
        p->iov[p->iovcnt++] = (struct iovec){.iov_base = scratch, .iov_len = head};
    p->iov[p->iovcnt++] = (struct iovec){.iov_base = buf, .iov_len = len};
    if (tail > 0)
        p->iov[p->iovcnt++] = (struct iovec){.iov_base = scratch + head, .iov_len = tail};
    p->raw_off = with_header ? 0 : OBJ_FRAME_HEADER_BYTES + p->data_from;
    p->raw_len = OBJ_FRAME_HEADER_BYTES + data_end - p->raw_off;
    return s->backend->ops->get(s->backend, key, p->raw_off, p->raw_len, p->iov, p->iovcnt, got,
                                errmsg);
}

static int get_range_once(struct obj_store *s, const char *key, uint64_t off, size_t len,
                          void *buf, size_t *got_out, uint8_t hdr_seen[OBJ_FRAME_HEADER_BYTES],
                          char *errmsg);

/* A range far from the front is read as header, then data: an overwrite in
 * between pairs new bytes with old CRCs. So a CRC mismatch there is read
 * again, up to RANGE_READS times; a mismatch that stays is real. (Comparing
 * the header before and after is not enough: overwrites that go A, B, A
 * leave the same header around new bytes.) */
#define RANGE_READS 3

int obj_get_range(struct obj_store *s, const char *key, uint64_t off, size_t len, void *buf,
                  size_t *got_out, char *errmsg)
{
    uint8_t first[OBJ_FRAME_HEADER_BYTES];
    bool is_two_reads = off / OBJ_FRAME_PIECE_BYTES * OBJ_FRAME_PIECE_BYTES >=
                        OBJ_RANGE_MERGE_BYTES;
    int rc = get_range_once(s, key, off, len, buf, got_out, first, errmsg);

    /* bounded: RANGE_READS reads at most */
    for (int n = 1; n < RANGE_READS && rc == -EBADMSG && is_two_reads; n++) {
        rc = get_range_once(s, key, off, len, buf, got_out, first, errmsg);
    }
    return rc;
}

static int get_range_once(struct obj_store *s, const char *key, uint64_t off, size_t len,
                          void *buf, size_t *got_out, uint8_t hdr_seen[OBJ_FRAME_HEADER_BYTES],
                          char *errmsg)
{
    struct range_plan p = {0};
    struct obj__frame f;
    uint64_t first = off / OBJ_FRAME_PIECE_BYTES * OBJ_FRAME_PIECE_BYTES;
    uint64_t want_end;
    uint64_t data_end;
    uint8_t *scratch;
    bool is_merged = first < OBJ_RANGE_MERGE_BYTES;
    size_t got = 0;
    int rc = obj__key_check(key, false, errmsg);

    if (rc != 0)
        return rc;
    if (buf == NULL && len > 0)
        return obj__fail(errmsg, -EINVAL, "no buffer given");
    /* Nothing past OBJ_DATA_BYTES_MAX exists: read the header only, to report
     * a missing or corrupt object the same way as any other read. */
    if (off >= OBJ_DATA_BYTES_MAX)
        len = 0;
    if (len > OBJ_DATA_BYTES_MAX - off)
        len = (size_t)(OBJ_DATA_BYTES_MAX - off);
    want_end = (uint64_t)pieces_to(off + len) * OBJ_FRAME_PIECE_BYTES;
    data_end = want_end;
    if (len == 0 || !is_merged) {
        struct iovec hv = {.iov_base = p.hdr, .iov_len = sizeof(p.hdr)};
        rc = s->backend->ops->get(s->backend, key, 0, sizeof(p.hdr), &hv, 1, &got, errmsg);
        if (rc == 0 && got < sizeof(p.hdr))
            rc = obj__fail(errmsg, -EBADMSG, "%.200s is shorter than an object header", key);
        if (rc == 0)
            rc = obj__frame_decode(p.hdr, &f, errmsg);
        if (rc != 0)
            return rc;
        if (len == 0 || off >= f.data_bytes) {
            *got_out = 0;
            return 0;
        }
        data_end = want_end < f.data_bytes ? want_end : f.data_bytes;
    }
    p.data_from = is_merged ? 0 : first;
    scratch = obj__malloc((size_t)(off - p.data_from) + OBJ_FRAME_PIECE_BYTES);
    if (scratch == NULL)
        return obj__fail(errmsg, -ENOMEM, "out of memory");
    /* data_end > off + len only within the last piece, which tail covers. */
    rc = range_read(s, key, &p, scratch, off, len, buf, data_end, is_merged, &got, errmsg);
    if (rc == 0 && is_merged) {
        if (got < sizeof(p.hdr))
            rc = obj__fail(errmsg, -EBADMSG, "%.200s is shorter than an object header", key);
        if (rc == 0)
            rc = obj__frame_decode(p.hdr, &f, errmsg);
        if (rc == 0)
            data_end = want_end < f.data_bytes ? want_end : f.data_bytes;
    }
    memcpy(hdr_seen, p.hdr, OBJ_FRAME_HEADER_BYTES);
    if (rc == 0 && got != OBJ_FRAME_HEADER_BYTES + data_end - p.raw_off)
        rc = obj__fail(errmsg, -EBADMSG, "%.200s: store returned %zu bytes, header implies %llu",
                       key, got, (unsigned long long)(OBJ_FRAME_HEADER_BYTES + data_end - p.raw_off));
    if (rc == 0 && off < data_end) {
        int skip = is_merged ? 1 : 0; /* the header vector */
        rc = obj__frame_check(&f, (uint32_t)(p.data_from / OBJ_FRAME_PIECE_BYTES),
                              pieces_to(data_end) - (uint32_t)(p.data_from / OBJ_FRAME_PIECE_BYTES),
                              p.iov + skip, p.iovcnt - skip, errmsg);
    }
    if (rc == 0)
        *got_out = off < data_end ? (size_t)((off + len < data_end ? off + len : data_end) - off)
                                  : 0;
    obj__free(scratch);
    return rc;
}

int obj_head(struct obj_store *s, const char *key, size_t *size_out, char *errmsg)
{
    uint64_t raw = 0;
    int rc = obj__key_check(key, false, errmsg);

    if (rc != 0)
        return rc;
    rc = s->backend->ops->head(s->backend, key, &raw, errmsg);
    if (rc != 0)
        return rc;
    if (raw < OBJ_FRAME_HEADER_BYTES || raw - OBJ_FRAME_HEADER_BYTES > OBJ_DATA_BYTES_MAX)
        return obj__fail(errmsg, -EBADMSG, "%.200s has %llu bytes, not a framed object", key,
                         (unsigned long long)raw);
    *size_out = (size_t)(raw - OBJ_FRAME_HEADER_BYTES);
    return 0;
}

int obj_delete(struct obj_store *s, const char *key, char *errmsg)
{
    int rc = obj__key_check(key, false, errmsg);

    return rc != 0 ? rc : s->backend->ops->del(s->backend, key, errmsg);
}

int obj_list(struct obj_store *s, const char *prefix, const char *start_after,
             struct obj_list_page *page, char *errmsg)
{
    int rc = obj__key_check(prefix != NULL ? prefix : "", true, errmsg);

    if (rc != 0)
        return rc;
    /* start_after is only compared with keys: any string will do, as long as
     * it fits (it may be a skipped key that breaks the rules) */
    if (start_after != NULL && strnlen(start_after, OBJ_KEY_BYTES_MAX + 1) > OBJ_KEY_BYTES_MAX)
        return obj__fail(errmsg, -ENAMETOOLONG, "start_after is over %u bytes", OBJ_KEY_BYTES_MAX);
    if (page == NULL || page->entries == NULL || page->entry_cap == 0 ||
        page->entry_cap > OBJ_LIST_PAGE_MAX)
        return obj__fail(errmsg, -EINVAL, "a list page holds 1..%u entries", OBJ_LIST_PAGE_MAX);
    rc = s->backend->ops->list(s->backend, prefix != NULL ? prefix : "",
                               start_after != NULL ? start_after : "", page, errmsg);
    if (rc != 0)
        return rc;
    for (unsigned i = 0; i < page->entry_count; i++) {
        size_t raw = page->entries[i].size;
        page->entries[i].size = raw >= OBJ_FRAME_HEADER_BYTES ? raw - OBJ_FRAME_HEADER_BYTES : 0;
    }
    return 0;
}

/* ---- the worker pool --------------------------------------------------------- */

static void req_run(struct obj_store *s, struct obj_req *r)
{
    r->errmsg[0] = '\0';
    r->result = 0;
    switch (r->op) {
    case OBJ_OP_PUT:
        r->rc = obj_put(s, r->key, r->buf, r->size, r->errmsg);
        break;
    case OBJ_OP_GET:
        r->rc = obj_get(s, r->key, r->buf, r->size, &r->result, r->errmsg);
        break;
    case OBJ_OP_GET_RANGE:
        r->rc = obj_get_range(s, r->key, r->off, r->size, r->buf, &r->result, r->errmsg);
        break;
    case OBJ_OP_HEAD:
        r->rc = obj_head(s, r->key, &r->result, r->errmsg);
        break;
    case OBJ_OP_DELETE:
        r->rc = obj_delete(s, r->key, r->errmsg);
        break;
    }
}

static void *worker_main(void *arg)
{
    struct obj_store *s = arg;

    pthread_mutex_lock(&s->pool_lock);
    /* Runs until close; each turn takes one request. */
    for (;;) {
        s->idle_count++;
        while (s->queue_head == NULL && !s->is_stopping) {
            pthread_cond_wait(&s->pool_cond, &s->pool_lock);
        }
        s->idle_count--;
        struct obj_req *r = s->queue_head;
        if (r == NULL)
            break; /* stopping and drained */
        s->queue_head = r->next;
        if (s->queue_head == NULL)
            s->queue_tail = NULL;
        s->queue_count--;
        bool is_cancelled = s->is_stopping;
        pthread_mutex_unlock(&s->pool_lock);
        if (is_cancelled) {
            r->rc = -ECANCELED;
            snprintf(r->errmsg, sizeof(r->errmsg), "store closed");
        } else {
            req_run(s, r);
        }
        r->cb(r); /* last: the caller may free or reuse r */
        pthread_mutex_lock(&s->pool_lock);
    }
    pthread_mutex_unlock(&s->pool_lock);
    return NULL;
}

int obj_submit(struct obj_store *s, struct obj_req *req, obj_req_cb cb)
{
    int rc = 0;

    if (req == NULL || cb == NULL || req->op > OBJ_OP_DELETE)
        return -EINVAL;
    req->cb = cb;
    req->next = NULL;
    pthread_mutex_lock(&s->pool_lock);
    if (s->is_stopping) {
        rc = -ECANCELED;
    } else if (s->queue_count == OBJ_QUEUE_MAX) {
        rc = -EAGAIN;
    } else {
        /* Start a worker when none is idle for this request. */
        if (s->thread_count < s->workers_wanted && s->idle_count <= s->queue_count) {
            if (pthread_create(&s->threads[s->thread_count], NULL, worker_main, s) == 0)
                s->thread_count++;
            else if (s->thread_count == 0)
                rc = -EAGAIN;
        }
        if (rc == 0) {
            if (s->queue_tail != NULL)
                s->queue_tail->next = req;
            else
                s->queue_head = req;
            s->queue_tail = req;
            s->queue_count++;
            pthread_cond_signal(&s->pool_cond);
        }
    }
    pthread_mutex_unlock(&s->pool_lock);
    return rc;
}
