/* objstore/crc32c.c - CRC32C (Castagnoli, reflected polynomial 0x82F63B78),
 * the checksum of every stored piece. x86-64 with SSE4.2 uses the crc32
 * instruction (about 8 bytes a cycle-and-a-bit); elsewhere a byte table.
 * Thread: any; the table is built once under pthread_once. */
#include <pthread.h>
#include <string.h>

#include "internal.h"

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void crc_table_build(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        }
        crc_table[i] = c;
    }
}

static uint32_t crc32c_soft(uint32_t crc, const uint8_t *p, size_t size)
{
    pthread_once(&crc_table_once, crc_table_build);
    for (size_t i = 0; i < size; i++) {
        crc = crc_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
                                                                size_t size)
{
    uint64_t c = crc;
    for (; size > 0 && ((uintptr_t)p & 7u) != 0; size--) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    }
    for (; size >= 8; size -= 8, p += 8) {
        uint64_t word;
        memcpy(&word, p, sizeof(word));
        c = __builtin_ia32_crc32di(c, word);
    }
    for (; size > 0; size--) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    }
    return (uint32_t)c;
}
#endif

uint32_t obj_crc32c(uint32_t crc, const void *data, size_t size)
{
    const uint8_t *p = data;

    OBJ_ASSERT(data != NULL || size == 0);
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) {
        return ~crc32c_sse42(crc, p, size);
    }
#endif
    return ~crc32c_soft(crc, p, size);
}
