/* raft/base.c - raft's own assert and allocator hook. raft is a
 * self-contained library (style §1): it never logs and links nothing of
 * arbor's. Thread: any; the allocator is set once before use. */
#include <stdio.h>
#include <stdlib.h>

#include "core.h"

static void *(*alloc_malloc)(size_t) = malloc;
static void *(*alloc_realloc)(void *, size_t) = realloc;
static void (*alloc_free)(void *) = free;

void raft_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                        void (*free_fn)(void *))
{
    bool is_default = malloc_fn == NULL || realloc_fn == NULL || free_fn == NULL;

    alloc_malloc = is_default ? malloc : malloc_fn;
    alloc_realloc = is_default ? realloc : realloc_fn;
    alloc_free = is_default ? free : free_fn;
}

void *raft_malloc(size_t size)
{
    return alloc_malloc(size > 0 ? size : 1);
}

void raft_free(void *p)
{
    if (p != NULL)
        alloc_free(p);
}

void *raft__realloc(void *p, size_t size)
{
    return alloc_realloc(p, size > 0 ? size : 1);
}

void *raft__calloc(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    void *p = raft_malloc(count * size);
    if (p != NULL)
        memset(p, 0, count * size);
    return p;
}

int raft__grow(void **v, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t next = *cap < 8 ? 8 : *cap;
    while (next < need) {
        if (next > UINT32_MAX / 2)
            return -ENOMEM;
        next *= 2;
    }
    void *p = raft__realloc(*v, (size_t)next * elem);
    if (p == NULL)
        return -ENOMEM;
    *v = p;
    *cap = next;
    return 0;
}

void raft__assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "%s:%d: raft assertion failed: %s\n", file, line, expr);
    abort();
}
