/* meta/meta.h - arbor's metadata module, public header.
 *
 * For now it holds the base that meta/, client/ and tools/ share (style §1):
 * error codes, assertions, the allocator with fault injection, and logging.
 * The shard state machine (issue 3) and the server (issue 5) join it here.
 */
#ifndef ARBOR_META_H
#define ARBOR_META_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ------------------------------------------------------------------
 * Every function returns 0 or a negative code: an errno (arbor is a POSIX file
 * system, and libuv speaks -errno too) or one of arbor's own, above errno's
 * range. */
enum {
    AR_EBASE = 10000,
    AR_ENOTLEADER,  /* this replica does not lead the shard; retry at the hint */
    AR_EREDIRECT,   /* another shard owns the path; retry there */
    AR_ESTALEEPOCH, /* the request named an old shard epoch */
    AR_ECORRUPT,    /* stored bytes failed a check; FUSE sees EIO */
    AR_ELAST
};
_Static_assert(AR_EBASE > 4095, "arbor codes sit above every errno");

#define AR_ERRMSG_MAX 256u /* a one-line reason filled by start-up, config and store paths */

/* A static description of rc (negative errno or -AR_E*). Never NULL. */
const char *ar_strerror(int rc);

/* ---- assertions ----------------------------------------------------------------
 * AR_ASSERT is always on, whatever NDEBUG says (style §5): it logs file:line,
 * the expression and a backtrace, then aborts. AR_DASSERT holds O(n) checks and
 * is compiled only with -Darbor_debug=true. Never assert on outside input. */
void ar_assert_fail(const char *file, int line, const char *expr) __attribute__((noreturn));
#define AR_ASSERT(x) ((x) ? (void)0 : ar_assert_fail(__FILE__, __LINE__, #x))
#if defined(AR_DEBUG)
#define AR_DASSERT(x) AR_ASSERT(x)
#else
#define AR_DASSERT(x) ((void)0)
#endif
#define AR_UNREACHABLE() ar_assert_fail(__FILE__, __LINE__, "unreachable")
#define AR_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define AR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- memory ----------------------------------------------------------------------
 * Every allocation of meta/, client/ and tools/ goes through these, so a test
 * can make the Nth call fail. ar_free(NULL) is a no-op. */
void *ar_malloc(size_t size);
void *ar_calloc(size_t count, size_t size);
void *ar_realloc(void *p, size_t size);
void ar_free(void *p);

/* Make allocations fail: after `skip` more succeed, the next `count` fail
 * (count 0 turns injection off). For tests; thread-safe. */
void ar_mem_fail_after(unsigned skip, unsigned count);

/* ---- logging -------------------------------------------------------------------- */
enum ar_log_level { AR_LOG_ERROR, AR_LOG_WARN, AR_LOG_INFO, AR_LOG_DEBUG };

typedef void (*ar_log_sink)(enum ar_log_level level, const char *line, void *data);

/* Log one line at level, if level is enabled (the check comes before any
 * formatting). Lines are cut at 1 KiB. Thread-safe. */
void ar_log(enum ar_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Messages above level are dropped. Default AR_LOG_INFO. */
void ar_log_set_level(enum ar_log_level level);
bool ar_log_is_enabled(enum ar_log_level level);

/* Send lines to sink (NULL: back to stderr with a timestamp). For tests and
 * daemons. data is passed back to every call. */
void ar_log_set_sink(ar_log_sink sink, void *data);

#endif /* ARBOR_META_H */
