/* objstore/internal.h - what the files of objstore/ share: the backend
 * interface, the object frame, key and URL checks, the assert macro and the
 * allocator hook. Included only from objstore/ and tests/objstore/.
 *
 * Layering: store.c owns the public API. It checks keys, frames and checks
 * objects, and calls a backend that moves raw bytes (header + data) and knows
 * nothing of frames. Backends: file.c, s3.c, fault.c (wraps another).
 */
#ifndef ARBOR_OBJSTORE_INTERNAL_H
#define ARBOR_OBJSTORE_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "objstore.h"

/* ---- assertions and memory ---------------------------------------------- */

void obj__assert_fail(const char *file, int line, const char *expr) __attribute__((noreturn));
#define OBJ_ASSERT(x) ((x) ? (void)0 : obj__assert_fail(__FILE__, __LINE__, #x))
#define OBJ_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

void *obj__malloc(size_t size);
void *obj__calloc(size_t count, size_t size);
void obj__free(void *p);
char *obj__strdup(const char *s);

/* Fill errmsg (may be NULL) with a formatted reason; returns rc so a caller
 * can write `return obj__fail(errmsg, -EINVAL, "...")`. */
int obj__fail(char *errmsg, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- limits --------------------------------------------------------------- */

#define OBJ_SEGMENT_BYTES_MAX 255u /* NAME_MAX: a key segment is a file name on file:// */
#define OBJ_KEY_SEGMENTS_MAX  64u  /* bounds the directory walks of file:// */
#define OBJ_RANGE_MERGE_BYTES (256u << 10) /* a range starting this near the front is read with
                                            * its header in one request, not two */

/* ---- the object frame (frame.c) ----------------------------------------- */
/* Every stored object is a fixed header followed by the data:
 *
 *   offset  size  field
 *   ------  ----  -----------------------------------------------------------
 *        0     4  magic "ARBK"
 *        4     2  format version, 1 (little-endian, as every field)
 *        6     2  header bytes, 288
 *        8     4  data bytes, <= OBJ_DATA_BYTES_MAX
 *       12     4  piece bytes, 65536
 *       16   256  CRC32C of each 64 KiB piece of data, 64 slots; unused are 0
 *      272    12  reserved, 0
 *      284     4  CRC32C of header bytes [0, 284)
 *
 * The header has a fixed size so that the data of any range sits at a known
 * offset, and a listing's raw size gives the data size without a read. */
#define OBJ_FRAME_HEADER_BYTES 288u
#define OBJ_FRAME_PIECE_BYTES  65536u
#define OBJ_FRAME_PIECES_MAX   (OBJ_DATA_BYTES_MAX / OBJ_FRAME_PIECE_BYTES)
_Static_assert(OBJ_FRAME_PIECES_MAX == 64, "the header has 64 CRC slots");
_Static_assert(16 + 4 * OBJ_FRAME_PIECES_MAX + 12 + 4 == OBJ_FRAME_HEADER_BYTES, "header table");

struct obj__frame {
    uint32_t data_bytes;
    uint32_t piece_crc[OBJ_FRAME_PIECES_MAX];
};

/* Build the header of data[0..size) into hdr. size <= OBJ_DATA_BYTES_MAX. */
void obj__frame_encode(uint8_t hdr[OBJ_FRAME_HEADER_BYTES], const void *data, size_t size);

/* Check and decode a stored header. -EBADMSG (with a reason) if it is not a
 * valid version-1 header. */
int obj__frame_decode(const uint8_t hdr[OBJ_FRAME_HEADER_BYTES], struct obj__frame *out,
                      char *errmsg);

/* Check the CRCs of pieces [first, first + count) whose bytes lie in order
 * across iov[0..iovcnt), starting at the first piece's first byte. The last
 * piece may be short where the data ends. -EBADMSG on a mismatch. */
int obj__frame_check(const struct obj__frame *f, uint32_t first, uint32_t count,
                     const struct iovec *iov, int iovcnt, char *errmsg);

/* ---- keys and URLs (key.c) ------------------------------------------------ */

/* 0 if key obeys the rules in objstore.h; else -EINVAL or -ENAMETOOLONG with
 * a reason. A prefix for obj_list() is checked with is_prefix: it may be
 * empty and may end in '/'. */
int obj__key_check(const char *key, bool is_prefix, char *errmsg);

#define OBJ_URL_PARAMS_MAX 16u

struct obj__url {
    char scheme[16];
    char host[256];   /* the bucket, for s3:// */
    char path[1024];  /* after the authority, without the leading '/', percent-decoded */
    unsigned param_count;
    struct {
        char name[32];
        char value[1024]; /* percent-decoded */
    } params[OBJ_URL_PARAMS_MAX];
};

/* Parse scheme://host/path?a=b&c=d. -EINVAL with a reason for anything
 * malformed or over a field's size; a parameter named twice is an error. */
int obj__url_parse(const char *url, struct obj__url *out, char *errmsg);

/* The value of a parameter, or NULL. */
const char *obj__url_param(const struct obj__url *u, const char *name);

/* Parse an unsigned decimal parameter in [min, max]; absent keeps *out.
 * -EINVAL with a reason otherwise. */
int obj__url_param_u32(const struct obj__url *u, const char *name, uint32_t min, uint32_t max,
                       uint32_t *out, char *errmsg);

/* 0 if every parameter of u is in names[0..count); else -EINVAL naming it. */
int obj__url_check_params(const struct obj__url *u, const char *const *names, unsigned count,
                          char *errmsg);

/* ---- backends ------------------------------------------------------------- */

#define OBJ_RAW_TO_END UINT64_MAX

struct obj__backend;

/* Every backend call is thread-safe and returns 0 or a negative errno. Sizes
 * here are raw: header + data. */
struct obj__backend_ops {
    /* Store the bytes of iov[0..iovcnt) under key, atomically. */
    int (*put)(struct obj__backend *b, const char *key, const struct iovec *iov, int iovcnt,
               char *errmsg);
    /* Read raw bytes [off, off + len) (len may be OBJ_RAW_TO_END) into
     * iov[0..iovcnt) in order; *got is the count read, short only at the
     * object's end. With OBJ_RAW_TO_END, -EMSGSIZE if the rest of the object
     * does not fit the iovecs. */
    int (*get)(struct obj__backend *b, const char *key, uint64_t off, uint64_t len,
               const struct iovec *iov, int iovcnt, size_t *got, char *errmsg);
    int (*head)(struct obj__backend *b, const char *key, uint64_t *raw_size, char *errmsg);
    int (*del)(struct obj__backend *b, const char *key, char *errmsg);
    /* As obj_list(), with raw sizes. */
    int (*list)(struct obj__backend *b, const char *prefix, const char *start_after,
                struct obj_list_page *page, char *errmsg);
    void (*close)(struct obj__backend *b);
};

struct obj__backend {
    const struct obj__backend_ops *ops;
};

int obj__file_open(const struct obj__url *u, struct obj__backend **out, char *errmsg);
int obj__s3_open(const struct obj__url *u, struct obj__backend **out, char *errmsg);
/* fault:// opens its inner URL through obj__backend_open. */
int obj__fault_open(const struct obj__url *u, struct obj__backend **out, char *errmsg);
int obj__backend_open(const char *url, struct obj__backend **out, char *errmsg);

#define OBJ_IOV_MAX 8u /* vectors in one backend call: header, head slack, data, tail slack */

/* Total bytes of iov[0..iovcnt). */
size_t obj__iov_bytes(const struct iovec *iov, int iovcnt);

/* Consume bytes from the front of the vectors *v[0..*n), as after a short
 * readv or writev: whole vectors are dropped, a partial one is trimmed. */
void obj__iov_advance(struct iovec **v, int *n, size_t bytes);

#endif /* ARBOR_OBJSTORE_INTERNAL_H */
