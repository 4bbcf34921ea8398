/* objstore/base.c - objstore's own assert, allocator hook and error lines.
 * objstore is a self-contained library (style §1): it never logs, so a reason
 * travels back to the caller in errmsg.
 * Thread: any; the allocator is set once before use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void *(*alloc_malloc)(size_t) = malloc;
static void *(*alloc_calloc)(size_t, size_t) = calloc;
static void (*alloc_free)(void *) = free;

void obj_set_allocator(void *(*malloc_fn)(size_t), void *(*calloc_fn)(size_t, size_t),
                       void (*free_fn)(void *))
{
    bool is_default = malloc_fn == NULL || calloc_fn == NULL || free_fn == NULL;

    alloc_malloc = is_default ? malloc : malloc_fn;
    alloc_calloc = is_default ? calloc : calloc_fn;
    alloc_free = is_default ? free : free_fn;
}

void *obj__malloc(size_t size)
{
    return alloc_malloc(size);
}

void *obj__calloc(size_t count, size_t size)
{
    return alloc_calloc(count, size);
}

void obj__free(void *p)
{
    if (p != NULL) {
        alloc_free(p);
    }
}

char *obj__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = obj__malloc(n);

    if (copy != NULL) {
        memcpy(copy, s, n);
    }
    return copy;
}

void obj__assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "%s:%d: objstore assertion failed: %s\n", file, line, expr);
    abort();
}

int obj__fail(char *errmsg, int rc, const char *fmt, ...)
{
    OBJ_ASSERT(rc < 0);
    if (errmsg != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, OBJ_ERRMSG_MAX, fmt, ap);
        va_end(ap);
    }
    return rc;
}
