/* objstore/crc32c.c - CRC32C (Castagnoli, reflected polynomial 0x82F63B78),
 * the checksum of every stored piece, so on the path of every read.
 *
 * x86-64 with SSE4.2 uses the crc32 instruction. It has a latency of three
 * cycles but can start one a cycle, so long inputs are cut into blocks of
 * three lanes of CRC_LANE_BYTES that run as three independent chains, and the
 * lanes are joined after: the CRC register is linear over GF(2), so
 *   R(s, A||B) = Z(R(s, A)) ^ R(0, B)
 * where Z advances a register over CRC_LANE_BYTES zero bytes. Z is linear
 * too, so it is four table look-ups (lane_shift). Elsewhere: a byte table.
 * Thread: any; the tables are built once under pthread_once. */
#include <pthread.h>
#include <string.h>

#include "internal.h"

#define CRC32C_POLY    0x82F63B78u
#define CRC_LANE_BYTES 4096u

static uint32_t crc_table[256];
static uint32_t lane_shift[4][256]; /* Z(v << 8k) for each byte value v of byte k */
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void crc_table_build(void)
{
    uint32_t basis[32];

    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        }
        crc_table[i] = c;
    }
    /* Z of each single-bit register, by feeding it CRC_LANE_BYTES zeros */
    for (int bit = 0; bit < 32; bit++) {
        uint32_t c = 1u << bit;
        for (uint32_t n = 0; n < CRC_LANE_BYTES; n++) {
            c = crc_table[c & 0xffu] ^ (c >> 8);
        }
        basis[bit] = c;
    }
    for (int k = 0; k < 4; k++) {
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t z = 0;
            for (int b = 0; b < 8; b++) {
                z ^= (v >> b & 1u) ? basis[8 * k + b] : 0;
            }
            lane_shift[k][v] = z;
        }
    }
}

static uint32_t lane_advance(uint32_t c)
{
    return lane_shift[0][c & 0xffu] ^ lane_shift[1][(c >> 8) & 0xffu] ^
           lane_shift[2][(c >> 16) & 0xffu] ^ lane_shift[3][c >> 24];
}

static uint32_t crc32c_soft(uint32_t crc, const uint8_t *p, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        crc = crc_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint64_t crc32c_words(uint64_t c, const uint8_t *p,
                                                                size_t words)
{
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, sizeof(w));
        c = __builtin_ia32_crc32di(c, w);
    }
    return c;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
                                                                size_t size)
{
    uint64_t c = crc;

    for (; size > 0 && ((uintptr_t)p & 7u) != 0; size--) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    }
    /* three lanes at once; see the file comment */
    for (; size >= 3 * CRC_LANE_BYTES; size -= 3 * CRC_LANE_BYTES, p += 3 * CRC_LANE_BYTES) {
        uint64_t c1 = 0;
        uint64_t c2 = 0;
        for (size_t i = 0; i < CRC_LANE_BYTES; i += 8) {
            uint64_t w0;
            uint64_t w1;
            uint64_t w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + CRC_LANE_BYTES + i, 8);
            memcpy(&w2, p + 2 * CRC_LANE_BYTES + i, 8);
            c = __builtin_ia32_crc32di(c, w0);
            c1 = __builtin_ia32_crc32di(c1, w1);
            c2 = __builtin_ia32_crc32di(c2, w2);
        }
        c = lane_advance((uint32_t)c) ^ (uint32_t)c1;
        c = lane_advance((uint32_t)c) ^ (uint32_t)c2;
    }
    c = crc32c_words(c, p, size / 8);
    p += size / 8 * 8;
    for (size %= 8; size > 0; size--) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    }
    return (uint32_t)c;
}
#endif

uint32_t obj_crc32c(uint32_t crc, const void *data, size_t size)
{
    const uint8_t *p = data;

    OBJ_ASSERT(data != NULL || size == 0);
    pthread_once(&crc_table_once, crc_table_build);
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) {
        return ~crc32c_sse42(crc, p, size);
    }
#endif
    return ~crc32c_soft(crc, p, size);
}
