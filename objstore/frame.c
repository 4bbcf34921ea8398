/* objstore/frame.c - the header in front of every stored object (the table is
 * in internal.h): encode on put, decode and check on every read.
 * Invariant: a decoded frame has data_bytes <= OBJ_DATA_BYTES_MAX and zero CRC
 * slots past its last piece.
 * Thread: any; pure functions. */
#include <string.h>

#include "internal.h"

static const uint8_t frame_magic[4] = {'A', 'R', 'B', 'K'};
#define FRAME_VERSION    1u
#define FRAME_CRC_OFFSET (OBJ_FRAME_HEADER_BYTES - 4u)

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t pieces_of(uint32_t data_bytes)
{
    return (data_bytes + OBJ_FRAME_PIECE_BYTES - 1) / OBJ_FRAME_PIECE_BYTES;
}

void obj__frame_encode(uint8_t hdr[OBJ_FRAME_HEADER_BYTES], const void *data, size_t size)
{
    const uint8_t *p = data;
    uint32_t pieces = pieces_of((uint32_t)size);

    OBJ_ASSERT(size <= OBJ_DATA_BYTES_MAX);
    OBJ_ASSERT(data != NULL || size == 0);
    memset(hdr, 0, OBJ_FRAME_HEADER_BYTES);
    memcpy(hdr, frame_magic, sizeof(frame_magic));
    put_le16(hdr + 4, FRAME_VERSION);
    put_le16(hdr + 6, OBJ_FRAME_HEADER_BYTES);
    put_le32(hdr + 8, (uint32_t)size);
    put_le32(hdr + 12, OBJ_FRAME_PIECE_BYTES);
    for (uint32_t i = 0; i < pieces; i++) {
        size_t off = (size_t)i * OBJ_FRAME_PIECE_BYTES;
        size_t n = size - off < OBJ_FRAME_PIECE_BYTES ? size - off : OBJ_FRAME_PIECE_BYTES;
        put_le32(hdr + 16 + 4 * i, obj_crc32c(0, p + off, n));
    }
    put_le32(hdr + FRAME_CRC_OFFSET, obj_crc32c(0, hdr, FRAME_CRC_OFFSET));
}

int obj__frame_decode(const uint8_t hdr[OBJ_FRAME_HEADER_BYTES], struct obj__frame *out,
                      char *errmsg)
{
    uint32_t want = get_le32(hdr + FRAME_CRC_OFFSET);

    OBJ_ASSERT(out != NULL);
    if (memcmp(hdr, frame_magic, sizeof(frame_magic)) != 0)
        return obj__fail(errmsg, -EBADMSG, "not an arbor object (bad magic)");
    if (obj_crc32c(0, hdr, FRAME_CRC_OFFSET) != want)
        return obj__fail(errmsg, -EBADMSG, "object header checksum mismatch");
    if (get_le16(hdr + 4) != FRAME_VERSION)
        return obj__fail(errmsg, -EBADMSG, "unknown object format version %u", get_le16(hdr + 4));
    if (get_le16(hdr + 6) != OBJ_FRAME_HEADER_BYTES || get_le32(hdr + 12) != OBJ_FRAME_PIECE_BYTES)
        return obj__fail(errmsg, -EBADMSG, "object header has unexpected geometry");
    out->data_bytes = get_le32(hdr + 8);
    if (out->data_bytes > OBJ_DATA_BYTES_MAX)
        return obj__fail(errmsg, -EBADMSG, "object header claims %u data bytes", out->data_bytes);
    for (uint32_t i = 0; i < OBJ_FRAME_PIECES_MAX; i++) {
        out->piece_crc[i] = get_le32(hdr + 16 + 4 * i);
        if (i >= pieces_of(out->data_bytes) && out->piece_crc[i] != 0)
            return obj__fail(errmsg, -EBADMSG, "object header has a CRC past its data");
    }
    return 0;
}

size_t obj__iov_bytes(const struct iovec *iov, int iovcnt)
{
    size_t total = 0;

    for (int i = 0; i < iovcnt; i++) {
        total += iov[i].iov_len;
    }
    return total;
}

void obj__iov_advance(struct iovec **v, int *n, size_t bytes)
{
    while (*n > 0 && bytes >= (*v)->iov_len) {
        bytes -= (*v)->iov_len;
        (*v)++;
        (*n)--;
    }
    OBJ_ASSERT(*n > 0 || bytes == 0);
    if (*n > 0) {
        (*v)->iov_base = (char *)(*v)->iov_base + bytes;
        (*v)->iov_len -= bytes;
    }
}

int obj__frame_check(const struct obj__frame *f, uint32_t first, uint32_t count,
                     const struct iovec *iov, int iovcnt, char *errmsg)
{
    int v = 0;       /* current iovec */
    size_t at = 0;   /* offset inside it */

    OBJ_ASSERT(first + count <= pieces_of(f->data_bytes));
    for (uint32_t piece = first; piece < first + count; piece++) {
        size_t start = (size_t)piece * OBJ_FRAME_PIECE_BYTES;
        size_t need = f->data_bytes - start < OBJ_FRAME_PIECE_BYTES ? f->data_bytes - start
                                                                    : OBJ_FRAME_PIECE_BYTES;
        uint32_t crc = 0;

        while (need > 0) {
            size_t n;
            if (v >= iovcnt)
                return obj__fail(errmsg, -EBADMSG, "object shorter than its header says");
            n = iov[v].iov_len - at < need ? iov[v].iov_len - at : need;
            crc = obj_crc32c(crc, (const uint8_t *)iov[v].iov_base + at, n);
            need -= n;
            at += n;
            if (at == iov[v].iov_len) {
                v++;
                at = 0;
            }
        }
        if (crc != f->piece_crc[piece])
            return obj__fail(errmsg, -EBADMSG, "checksum mismatch in data bytes [%zu, %zu)", start,
                             start + OBJ_FRAME_PIECE_BYTES);
    }
    return 0;
}
