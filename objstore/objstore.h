/* objstore/objstore.h - arbor's object store: immutable, checksummed objects
 * behind one interface, with backends chosen by URL.
 *
 *   file:///abs/dir                  the embedded default; objects are files under dir
 *   s3://bucket[/prefix]?endpoint=http://host:port&region=us-east-1&path_style=1
 *                                    any S3-compatible store, through libcurl
 *   fault://?inner=URL&...           a wrapper for tests that injects failures
 *
 * Every object is framed: a fixed 288-byte header carries the data length and
 * a CRC32C for each 64 KiB of data (the table is in objstore/internal.h). Every
 * read checks the CRCs of what it returns; a mismatch is -EBADMSG, never wrong
 * bytes. Sizes seen through this API are data sizes, without the header.
 *
 * Keys: 1..OBJ_KEY_BYTES_MAX bytes of [A-Za-z0-9] and "!-_.*'()/", split by '/'
 * into segments of 1..255 bytes that do not begin with '.'. So no key can
 * climb out of its directory ("..") or its S3 prefix, and no key needs
 * escaping in a URL or a SigV4 canonical request. Anything else is -EINVAL
 * (-ENAMETOOLONG for length). On file:// a key cannot also be the directory
 * of another ("a" and "a/b"): such a put fails with -EISDIR or -ENOTDIR.
 * arbor's own keys never do this (all blocks sit at the same depth).
 *
 * Errors: every call returns 0 or a negative errno. When errmsg is not NULL it
 * receives a one-line reason of at most OBJ_ERRMSG_MAX bytes; it never holds
 * credentials or a signed URL. Codes:
 *   -EINVAL        bad key, bad URL or bad argument
 *   -ENAMETOOLONG  key longer than OBJ_KEY_BYTES_MAX or a segment over 255
 *   -EMSGSIZE      data longer than OBJ_DATA_BYTES_MAX, or the object does
 *                  not fit the caller's buffer
 *   -ENOENT        no such object (or no such bucket)
 *   -EACCES        the store refused our credentials
 *   -EBADMSG       the object is corrupt: bad header, short, or CRC mismatch
 *   -ETIMEDOUT, -ECONNREFUSED, -EAGAIN (throttled), -EIO  the store failed,
 *                  after the backend's bounded retries
 *   -ENOMEM, -ENOSPC, and the errno of a failed file operation
 *
 * Threads: a struct obj_store may be used from any number of threads at once.
 * Synchronous calls block the calling thread; obj_submit() runs a request on
 * the store's own worker pool and calls back on a worker thread.
 */
#ifndef ARBOR_OBJSTORE_H
#define ARBOR_OBJSTORE_H

#include <errno.h> /* every call returns 0 or a negative errno */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OBJ_API __attribute__((visibility("default")))

#define OBJ_KEY_BYTES_MAX  1024u      /* S3's limit on a whole key, prefix included */
#define OBJ_DATA_BYTES_MAX (4u << 20) /* one block (design §2); larger data is split */
#define OBJ_ERRMSG_MAX     256u       /* a reason line, with room for a key */
/* file:// refuses (-ENOSPC) a put that would leave its disk less free than
 * this: when it shares the disk with metadata servers, their log keeps the
 * last of it (a server's own reserve is larger, so it refuses writes first). */
#define OBJ_FILE_RESERVE_BYTES (128ull << 20)
#define OBJ_LIST_PAGE_MAX  1000u      /* S3's largest page */
#define OBJ_WORKERS_MAX    256u       /* threads in a store's pool */
#define OBJ_QUEUE_MAX      4096u      /* requests waiting for a worker */

struct obj_store;

struct obj_options {
    unsigned workers; /* threads for obj_submit(); 0 means 32 */
};

/* Open the store that url names. On 0, *out is a store the caller must
 * obj_store_close(). -EINVAL for a malformed URL or option, -ENOENT for a
 * missing file:// directory, -EACCES when S3 credentials are missing or
 * unreadable, -ENOMEM. opts may be NULL. errmsg may be NULL. */
OBJ_API int obj_store_open(const char *url, const struct obj_options *opts, struct obj_store **out,
                           char *errmsg);

/* Stop the workers (queued requests complete with -ECANCELED) and free the
 * store. No call may be running or start on it, and a request's callback
 * may not close its own store. obj_store_close(NULL) is a no-op. */
OBJ_API void obj_store_close(struct obj_store *s);

/* The URL the store was opened with (URLs hold no secrets: credentials come
 * from the environment or a file). Borrowed until close. */
OBJ_API const char *obj_store_url(const struct obj_store *s);

/* Store data[0..size) under key, atomically: a reader sees the whole object or
 * none. Overwriting an existing key replaces it whole. size may be 0. */
OBJ_API int obj_put(struct obj_store *s, const char *key, const void *data, size_t size,
                    char *errmsg);

/* Read a whole object into buf[0..cap). On 0, *size_out is its data size.
 * -EMSGSIZE if it is larger than cap (nothing useful is in buf then). */
OBJ_API int obj_get(struct obj_store *s, const char *key, void *buf, size_t cap, size_t *size_out,
                    char *errmsg);

/* Read data bytes [off, off+len) of an object into buf. On 0, *got_out is the
 * byte count, less than len only when the object ends first (0 when off is at
 * or past the end). Only the 64 KiB pieces that overlap the range are read and
 * checked. */
OBJ_API int obj_get_range(struct obj_store *s, const char *key, uint64_t off, size_t len,
                          void *buf, size_t *got_out, char *errmsg);

/* The data size of an object, without reading it. */
OBJ_API int obj_head(struct obj_store *s, const char *key, size_t *size_out, char *errmsg);

/* Remove an object. Removing a key that does not exist succeeds, as on S3. */
OBJ_API int obj_delete(struct obj_store *s, const char *key, char *errmsg);

struct obj_list_entry {
    char key[OBJ_KEY_BYTES_MAX + 1]; /* NUL-terminated, without the store's prefix */
    size_t size;                     /* data bytes */
};

struct obj_list_page {
    struct obj_list_entry *entries; /* caller's array of entry_cap elements */
    unsigned entry_cap;             /* 1..OBJ_LIST_PAGE_MAX */
    unsigned entry_count;           /* out: entries filled, in ascending byte order of key */
    bool is_truncated;              /* out: more keys follow */
    char last_key[OBJ_KEY_BYTES_MAX + 1]; /* out: where the next page starts */
};

/* List keys that begin with prefix ("" for all) and sort after start_after
 * (NULL or "" to start from the first), in ascending byte order. Objects
 * whose keys break the key rules (another tool's, a "folder" marker) are
 * skipped. To page, call again with start_after = page->last_key while
 * is_truncated: a page may hold fewer entries than entry_cap, even none,
 * when it skipped keys. start_after may be any string of at most
 * OBJ_KEY_BYTES_MAX bytes. */
OBJ_API int obj_list(struct obj_store *s, const char *prefix, const char *start_after,
                     struct obj_list_page *page, char *errmsg);

/* ---- Asynchronous requests on the store's worker pool -------------------- */

enum obj_op { OBJ_OP_PUT, OBJ_OP_GET, OBJ_OP_GET_RANGE, OBJ_OP_HEAD, OBJ_OP_DELETE };

struct obj_req;
typedef void (*obj_req_cb)(struct obj_req *req);

/* A request the caller owns and keeps alive until its callback. The fields up
 * to `data` are the call's arguments: key and buf are borrowed until the
 * callback. rc, size and errmsg are the results. */
struct obj_req {
    enum obj_op op;
    const char *key;
    void *buf;     /* PUT: the data; GET, GET_RANGE: where to read to */
    size_t size;   /* PUT: data bytes; GET: buffer capacity; GET_RANGE: len */
    uint64_t off;  /* GET_RANGE only */
    void *data;    /* the caller's, untouched */
    int rc;        /* out: as the synchronous call returns */
    size_t result; /* out: GET size, GET_RANGE bytes read, HEAD size */
    char errmsg[OBJ_ERRMSG_MAX];
    obj_req_cb cb;
    struct obj_req *next; /* the store's queue link */
};

/* Queue req on the store's workers. On 0, cb(req) runs exactly once on a
 * worker thread, with req->rc = -ECANCELED if the store closes first.
 * Returns -EAGAIN when OBJ_QUEUE_MAX requests are already queued (the caller
 * waits for a callback and submits again); the callback is then never called. */
OBJ_API int obj_submit(struct obj_store *s, struct obj_req *req, obj_req_cb cb);

/* CRC32C (Castagnoli) of data, continuing from crc (0 to start). Hardware
 * accelerated where the CPU has it. */
OBJ_API uint32_t obj_crc32c(uint32_t crc, const void *data, size_t size);

/* Replace the allocator objstore uses (tests fail the Nth call). Any NULL
 * restores libc's. Call before opening any store. */
OBJ_API void obj_set_allocator(void *(*malloc_fn)(size_t), void *(*calloc_fn)(size_t, size_t),
                               void (*free_fn)(void *));

#endif /* ARBOR_OBJSTORE_H */
