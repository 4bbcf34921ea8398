/* meta/base.c - the base of meta/, client/ and tools/: error strings, the
 * always-on assertion, the allocator with fault injection, and the log.
 * Thread: any. Log level and sink are atomics set at start-up; the injection
 * countdown is atomic so a multi-threaded test can use it. */
#include <execinfo.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "meta.h"

#define AR_LOG_LINE_BYTES 1024u
#define AR_BACKTRACE_MAX  32

int ar_errorf(char *errmsg, int rc, const char *fmt, ...)
{
    if (errmsg != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, AR_ERRMSG_MAX, fmt, ap);
        va_end(ap);
    }
    return rc;
}

const char *ar_format_time(uint64_t ns, char *out, size_t cap)
{
    time_t t = (time_t)(ns / 1000000000ull);
    struct tm tm;
    char base[32];

    gmtime_r(&t, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03uZ", base, (unsigned)(ns % 1000000000ull / 1000000u));
    return out;
}

const char *ar_strerror(int rc)
{
    switch (-rc) {
    case AR_ENOTLEADER:
        return "not the shard's leader";
    case AR_EREDIRECT:
        return "another shard owns this";
    case AR_ESTALEEPOCH:
        return "stale shard epoch";
    case AR_ECORRUPT:
        return "stored data is corrupt";
    case AR_ECHUNKFULL:
        return "the chunk holds too many slices";
    default:
        return rc < 0 && -rc < AR_EBASE ? strerror(-rc) : "unknown error";
    }
}

int ar_mkdirs(const char *path, unsigned mode)
{
    char dir[4096];
    struct stat st;
    int n = snprintf(dir, sizeof(dir), "%s", path);

    if (n <= 0)
        return -ENOENT;
    if ((size_t)n >= sizeof(dir))
        return -ENAMETOOLONG;
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/' || p[-1] == '/')
            continue;
        *p = '\0';
        int rc = mkdir(dir, (mode_t)mode) == 0 || errno == EEXIST ? 0 : -errno;
        *p = '/';
        if (rc != 0)
            return rc;
    }
    if (mkdir(dir, (mode_t)mode) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

void ar_assert_fail(const char *file, int line, const char *expr)
{
    void *frames[AR_BACKTRACE_MAX];
    int n = backtrace(frames, AR_BACKTRACE_MAX);

    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    abort();
}

/* ---- memory ---------------------------------------------------------------- */

static atomic_uint mem_skip;  /* allocations that still succeed */
static atomic_uint mem_fails; /* then this many fail */

static bool mem_should_fail(void)
{
    unsigned skip;

    if (atomic_load_explicit(&mem_fails, memory_order_relaxed) == 0)
        return false;
    skip = atomic_load(&mem_skip);
    while (skip > 0) {
        if (atomic_compare_exchange_weak(&mem_skip, &skip, skip - 1))
            return false;
    }
    unsigned fails = atomic_load(&mem_fails);
    while (fails > 0) {
        if (atomic_compare_exchange_weak(&mem_fails, &fails, fails - 1))
            return true;
    }
    return false;
}

void ar_mem_fail_after(unsigned skip, unsigned count)
{
    atomic_store(&mem_fails, 0);
    atomic_store(&mem_skip, skip);
    atomic_store(&mem_fails, count);
}

void *ar_malloc(size_t size)
{
    return mem_should_fail() ? NULL : malloc(size);
}

void *ar_calloc(size_t count, size_t size)
{
    return mem_should_fail() ? NULL : calloc(count, size);
}

void *ar_realloc(void *p, size_t size)
{
    return mem_should_fail() ? NULL : realloc(p, size);
}

void ar_free(void *p)
{
    free(p);
}

/* ---- logging ---------------------------------------------------------------- */

static atomic_int log_level = AR_LOG_INFO;
static _Atomic(ar_log_sink) log_sink;
static void *_Atomic log_sink_data;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void ar_log_set_level(enum ar_log_level level)
{
    atomic_store(&log_level, (int)level);
}

bool ar_log_is_enabled(enum ar_log_level level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void ar_log_set_sink(ar_log_sink sink, void *data)
{
    atomic_store(&log_sink_data, data);
    atomic_store(&log_sink, sink);
}

void ar_log(enum ar_log_level level, const char *fmt, ...)
{
    char line[AR_LOG_LINE_BYTES];
    ar_log_sink sink;
    va_list ap;

    AR_ASSERT(level <= AR_LOG_DEBUG);
    if (!ar_log_is_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    sink = atomic_load(&log_sink);
    if (sink != NULL) {
        sink(level, line, atomic_load(&log_sink_data));
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            level_names[level], line);
}
