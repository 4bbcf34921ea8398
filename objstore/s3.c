/* objstore/s3.c - the s3://BUCKET[/PREFIX] backend, through libcurl.
 *
 *   s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=1
 *
 * Parameters: endpoint (default https://s3.REGION.amazonaws.com), region
 * (us-east-1), path_style (1 with an endpoint, else 0), profile and
 * credentials (a credentials file and its section), retries (5), backoff_ms
 * (100), backoff_max_ms (5000), timeout_ms (60000, one attempt),
 * connect_timeout_ms (5000).
 *
 * Signing is libcurl's CURLOPT_AWS_SIGV4 with an unsigned payload (our own
 * CRC32C guards the bytes). Keys hold only characters that need no escaping
 * in a path; everything else in a URL is escaped here by AWS's rules, and
 * query parameters are written already sorted, so the request line is its own
 * canonical form whatever libcurl's version does.
 *
 * Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)
 * from the environment, else the credentials file (credentials= parameter,
 * AWS_SHARED_CREDENTIALS_FILE, or ~/.aws/credentials) in section profile=
 * (AWS_PROFILE, or "default"). They are kept only in this struct and never
 * written to an errmsg.
 *
 * Retries: up to `retries` more attempts, with full-jitter exponential
 * back-off capped at backoff_max_ms, on connection failures, timeouts,
 * resets, 5xx, 429 and 503 SlowDown, and S3's 400 RequestTimeout. No other
 * 4xx is retried.
 *
 * Threads: any number. Each call borrows an easy handle from a bounded pool;
 * a handle keeps its connections across calls (curl_easy_reset keeps them),
 * so connections are reused. The handles share DNS and TLS sessions, but not
 * connections: libcurl does not support sharing those between threads.
 */
#include <curl/curl.h>
#include <expat.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define S3_HANDLES_MAX       OBJ_WORKERS_MAX /* idle easy handles kept for reuse */
#define S3_URL_BYTES_MAX     4096u
#define S3_ERROR_BODY_MAX    2048u           /* bytes of an error reply kept to explain it */
#define S3_CREDS_FILE_MAX    (64u << 10)
#define S3_SECRET_BYTES_MAX  512u
#define S3_LOW_SPEED_BYTES   1024L           /* below this many bytes/s ... */
#define S3_LOW_SPEED_SEC     10L             /* ... for this long, or half of timeout_ms
                                              * if longer, an attempt has stalled (a store
                                              * may wait that long before its first byte) */

struct s3_backend {
    struct obj__backend base;
    char endpoint[512];         /* scheme://host[:port], no trailing '/' */
    char bucket[256];
    char prefix[OBJ_KEY_BYTES_MAX + 1]; /* "" or ending in '/' */
    char sigv4[320];            /* "aws:amz:REGION:s3" */
    char userpwd[2 * S3_SECRET_BYTES_MAX + 2]; /* key:secret; secret */
    char token_header[S3_SECRET_BYTES_MAX + 32]; /* "x-amz-security-token: ..." or "" */
    bool is_path_style;
    uint32_t retries;
    uint32_t backoff_ms;
    uint32_t backoff_max_ms;
    uint32_t timeout_ms;
    uint32_t connect_timeout_ms;
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    pthread_mutex_t pool_lock;
    CURL *pool[S3_HANDLES_MAX]; /* idle handles; under pool_lock */
    unsigned pool_count;
};

static struct s3_backend *s3_of(struct obj__backend *b)
{
    return OBJ_CONTAINER_OF(b, struct s3_backend, base);
}

/* ---- one HTTP exchange ------------------------------------------------- */

struct s3_call {
    const char *method;
    char url[S3_URL_BYTES_MAX];
    /* upload: the request body */
    const struct iovec *up;
    int up_count;
    size_t up_bytes;
    struct iovec up_cursor[OBJ_IOV_MAX];
    struct iovec *up_v;
    int up_n;
    /* download: the response body of a 2xx reply */
    const struct iovec *down;
    int down_count;
    struct iovec down_cursor[OBJ_IOV_MAX];
    struct iovec *down_v;
    int down_n;
    size_t got;
    bool is_overflow;
    bool is_unranged; /* a Range request answered with the whole object */
    XML_Parser xml; /* when set, a 2xx body goes to the parser instead */
    bool is_xml_error;
    char range[64]; /* "a-b" or "" */
    /* results */
    long status;
    curl_off_t content_length;
    char error_body[S3_ERROR_BODY_MAX];
    size_t error_body_len;
};

static size_t s3_read_cb(char *dst, size_t size, size_t nmemb, void *arg)
{
    struct s3_call *c = arg;
    size_t cap = size * nmemb;
    size_t done = 0;

    while (done < cap && c->up_n > 0) {
        size_t n = c->up_v->iov_len < cap - done ? c->up_v->iov_len : cap - done;
        memcpy(dst + done, c->up_v->iov_base, n);
        done += n;
        obj__iov_advance(&c->up_v, &c->up_n, n);
    }
    return done;
}

static void s3_upload_rewind(struct s3_call *c)
{
    memcpy(c->up_cursor, c->up, sizeof(*c->up) * (size_t)c->up_count);
    c->up_v = c->up_cursor;
    c->up_n = c->up_count;
}

static int s3_seek_cb(void *arg, curl_off_t offset, int origin)
{
    struct s3_call *c = arg;

    if (origin != SEEK_SET || offset < 0 || (size_t)offset > c->up_bytes)
        return CURL_SEEKFUNC_CANTSEEK;
    s3_upload_rewind(c);
    obj__iov_advance(&c->up_v, &c->up_n, (size_t)offset);
    return CURL_SEEKFUNC_OK;
}

static size_t s3_write_cb(char *src, size_t size, size_t nmemb, void *arg)
{
    struct s3_call *c = arg;
    size_t n = size * nmemb;

    if (c->status < 200 || c->status > 299) {
        size_t room = sizeof(c->error_body) - 1 - c->error_body_len;
        size_t keep = n < room ? n : room;
        memcpy(c->error_body + c->error_body_len, src, keep);
        c->error_body_len += keep;
        c->error_body[c->error_body_len] = '\0';
        return n;
    }
    if (c->xml != NULL) {
        if (XML_Parse(c->xml, src, (int)n, 0) != XML_STATUS_OK) {
            c->is_xml_error = true;
            return 0;
        }
        return n;
    }
    if (c->down == NULL)
        return n; /* a 2xx body nobody asked for (PUT, DELETE): dropped */
    if (c->range[0] != '\0' && c->status != 206) {
        c->is_unranged = true; /* the store ignored Range: these are not our bytes */
        return 0;
    }
    size_t room = obj__iov_bytes(c->down_v, c->down_n);
    if (n > room) {
        c->is_overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    for (size_t done = 0; done < n;) {
        size_t k = c->down_v->iov_len < n - done ? c->down_v->iov_len : n - done;
        memcpy(c->down_v->iov_base, src + done, k);
        done += k;
        obj__iov_advance(&c->down_v, &c->down_n, k);
    }
    c->got += n;
    return n;
}

/* curl calls the write callback before we know the status; this header
 * callback records it from the status line, so a 4xx body is never mistaken
 * for data. */
static size_t s3_header_cb(char *line, size_t size, size_t nmemb, void *arg)
{
    struct s3_call *c = arg;
    size_t n = size * nmemb;
    long status;

    if (n > 9 && memcmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', n);
        if (sp != NULL && sscanf(sp + 1, "%3ld", &status) == 1) {
            c->status = status;
        }
    }
    return n;
}

static void s3_share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
    struct s3_backend *sb = arg;

    (void)h;
    (void)access;
    pthread_mutex_lock(&sb->share_locks[data]);
}

static void s3_share_unlock(CURL *h, curl_lock_data data, void *arg)
{
    struct s3_backend *sb = arg;

    (void)h;
    pthread_mutex_unlock(&sb->share_locks[data]);
}

static CURL *s3_handle_get(struct s3_backend *sb)
{
    CURL *h = NULL;

    pthread_mutex_lock(&sb->pool_lock);
    if (sb->pool_count > 0) {
        h = sb->pool[--sb->pool_count];
    }
    pthread_mutex_unlock(&sb->pool_lock);
    if (h != NULL) {
        curl_easy_reset(h); /* keeps the connection cache and the share */
        return h;
    }
    return curl_easy_init();
}

static void s3_handle_put(struct s3_backend *sb, CURL *h)
{
    pthread_mutex_lock(&sb->pool_lock);
    if (sb->pool_count < S3_HANDLES_MAX) {
        sb->pool[sb->pool_count++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&sb->pool_lock);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
}

/* A uniform random number in [0, bound], from a per-thread xorshift. */
static uint32_t s3_jitter(uint32_t bound)
{
    static _Thread_local uint64_t state;

    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = (uint64_t)ts.tv_nsec ^ ((uint64_t)pthread_self() << 1) ^ 0x9E3779B97F4A7C15ull;
    }
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return bound == 0 ? 0 : (uint32_t)(state % ((uint64_t)bound + 1));
}

static void s3_sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- XML: S3's error replies and list pages ------------------------------ */

struct s3_xml {
    char text[OBJ_KEY_BYTES_MAX + 1]; /* character data of the element being read */
    size_t text_len;
    bool is_text_overflow;
    /* error reply */
    char code[64];
    char message[160];
    /* list page */
    struct obj_list_page *page;
    size_t strip;           /* bytes of the store prefix to remove from keys */
    const char *prefix;     /* the store prefix itself */
    bool is_skipped;        /* the current Contents is not listed */
    char key[OBJ_KEY_BYTES_MAX + 1];
    unsigned long long size;
    bool is_truncated;
    bool is_bad;            /* a field did not parse */
};

static void s3_xml_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
    struct s3_xml *x = arg;

    (void)name;
    (void)attrs;
    x->text_len = 0;
    x->text[0] = '\0';
    x->is_text_overflow = false;
}

static void s3_xml_text(void *arg, const XML_Char *s, int len)
{
    struct s3_xml *x = arg;

    if (x->text_len + (size_t)len >= sizeof(x->text)) {
        x->is_text_overflow = true;
        return;
    }
    memcpy(x->text + x->text_len, s, (size_t)len);
    x->text_len += (size_t)len;
    x->text[x->text_len] = '\0';
}

static void copy_truncated(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void s3_xml_end(void *arg, const XML_Char *name)
{
    struct s3_xml *x = arg;
    char *end = NULL;

    if (strcmp(name, "Code") == 0) {
        copy_truncated(x->code, sizeof(x->code), x->text);
    } else if (strcmp(name, "Message") == 0) {
        copy_truncated(x->message, sizeof(x->message), x->text);
    } else if (x->page == NULL) {
        return;
    } else if (strcmp(name, "Key") == 0) {
        if (x->is_text_overflow) {
            x->is_bad = true;
            return;
        }
        /* the last key the store listed, valid or not, is where the next page starts */
        memcpy(x->page->last_key, x->text + (x->text_len >= x->strip ? x->strip : x->text_len),
               x->text_len - (x->text_len >= x->strip ? x->strip : x->text_len) + 1);
        x->is_skipped = x->text_len <= x->strip || strncmp(x->text, x->prefix, x->strip) != 0 ||
                        obj__key_check(x->text + x->strip, false, NULL) != 0;
        if (!x->is_skipped)
            memcpy(x->key, x->text + x->strip, x->text_len - x->strip + 1);
    } else if (strcmp(name, "Size") == 0) {
        errno = 0;
        x->size = strtoull(x->text, &end, 10);
        if (errno != 0 || end == x->text || *end != '\0')
            x->is_bad = true;
    } else if (strcmp(name, "IsTruncated") == 0) {
        x->is_truncated = strcmp(x->text, "true") == 0;
    } else if (strcmp(name, "Contents") == 0) {
        if (x->is_skipped)
            return; /* not an arbor key: a folder marker, another tool's object */
        if (x->page->entry_count == x->page->entry_cap) {
            x->is_bad = true; /* the server sent more than max-keys */
            return;
        }
        struct obj_list_entry *e = &x->page->entries[x->page->entry_count++];
        memcpy(e->key, x->key, strlen(x->key) + 1);
        e->size = (size_t)x->size;
    }
}

static XML_Parser s3_xml_new(struct s3_xml *x)
{
    XML_Parser p = XML_ParserCreate("UTF-8");

    if (p != NULL) {
        XML_SetUserData(p, x);
        XML_SetElementHandler(p, s3_xml_start, s3_xml_end);
        XML_SetCharacterDataHandler(p, s3_xml_text);
    }
    return p;
}

/* Pick Code and Message out of an error reply, best effort. */
static void s3_error_explain(const struct s3_call *c, struct s3_xml *x)
{
    XML_Parser p;

    memset(x, 0, sizeof(*x));
    if (c->error_body_len == 0)
        return;
    p = s3_xml_new(x);
    if (p == NULL)
        return;
    XML_Parse(p, c->error_body, (int)c->error_body_len, 1);
    XML_ParserFree(p);
}

/* ---- errors and retries -------------------------------------------------- */

static bool s3_curl_is_transient(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static int s3_err_from_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

static bool s3_http_is_transient(long status, const char *code)
{
    return status >= 500 || status == 429 ||
           (status == 400 && strcmp(code, "RequestTimeout") == 0);
}

/* HTTP status (and S3 error code) to an errno: style §3, once at the edge. */
static int obj__err_from_http(long status, const char *code)
{
    if (status == 404)
        return -ENOENT;
    if (status == 403 || status == 401)
        return -EACCES;
    if (status == 429 || (status == 503 && strcmp(code, "SlowDown") == 0))
        return -EAGAIN;
    if (status == 400 && strcmp(code, "RequestTimeout") == 0)
        return -ETIMEDOUT;
    if (status >= 400 && status < 500)
        return -EINVAL;
    return -EIO;
}

static void s3_setopts(struct s3_backend *sb, CURL *h, struct s3_call *c, struct curl_slist *hdrs)
{
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_SHARE, sb->share);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sb->sigv4);
    curl_easy_setopt(h, CURLOPT_USERPWD, sb->userpwd);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)sb->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)sb->timeout_ms);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, S3_LOW_SPEED_BYTES);
    long stall_s = (long)(sb->timeout_ms / 2000u);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, stall_s > S3_LOW_SPEED_SEC ? stall_s
                                                                           : S3_LOW_SPEED_SEC);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s3_header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s3_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    if (c->range[0] != '\0') {
        curl_easy_setopt(h, CURLOPT_RANGE, c->range);
    }
    if (strcmp(c->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->up_bytes);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, s3_read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, c);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, s3_seek_cb);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, c);
    } else if (strcmp(c->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(c->method, "DELETE") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
}

/* The headers of every request, or NULL without memory. An unsigned payload
 * (our CRCs guard the bytes); no "Expect:", which would make curl wait for
 * 100-continue on large PUTs; the session token if there is one. */
static struct curl_slist *s3_headers(const struct s3_backend *sb)
{
    struct curl_slist *hdrs = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    struct curl_slist *more = hdrs != NULL ? curl_slist_append(hdrs, "Expect:") : NULL;

    if (more != NULL && sb->token_header[0] != '\0')
        more = curl_slist_append(hdrs, sb->token_header);
    if (more == NULL) {
        curl_slist_free_all(hdrs);
        return NULL;
    }
    return hdrs;
}

/* Clear what one attempt left in c (and xml) before the next. */
static int s3_attempt_reset(struct s3_call *c, struct s3_xml *xml, char *errmsg)
{
    c->status = 0;
    c->got = 0;
    c->is_overflow = false;
    c->is_unranged = false;
    c->is_xml_error = false;
    c->error_body_len = 0;
    c->error_body[0] = '\0';
    if (c->up != NULL)
        s3_upload_rewind(c);
    if (c->down != NULL) {
        memcpy(c->down_cursor, c->down, sizeof(*c->down) * (size_t)c->down_count);
        c->down_v = c->down_cursor;
        c->down_n = c->down_count;
    }
    if (xml == NULL)
        return 0;
    struct obj_list_page *page = xml->page;
    size_t strip = xml->strip;
    const char *prefix = xml->prefix;
    if (c->xml != NULL)
        XML_ParserFree(c->xml);
    memset(xml, 0, sizeof(*xml));
    xml->page = page;
    xml->strip = strip;
    xml->prefix = prefix;
    page->entry_count = 0;
    page->last_key[0] = '\0';
    c->xml = s3_xml_new(xml);
    return c->xml != NULL ? 0 : obj__fail(errmsg, -ENOMEM, "out of memory for the XML parser");
}

/* Run c with retries. On 0, c->status is 2xx or ok_status (a caller that
 * accepts 404 or 416 says so). When xml is given, each attempt parses the
 * reply body into it afresh. */
static int s3_perform(struct s3_backend *sb, struct s3_call *c, long ok_status,
                      struct s3_xml *xml, char *errmsg)
{
    struct curl_slist *hdrs;
    CURL *h = s3_handle_get(sb);
    int rc = -EIO;

    if (h == NULL)
        return obj__fail(errmsg, -ENOMEM, "curl_easy_init failed");
    hdrs = s3_headers(sb);
    if (hdrs == NULL) {
        s3_handle_put(sb, h);
        return obj__fail(errmsg, -ENOMEM, "out of memory");
    }
    for (uint32_t attempt = 0; attempt <= sb->retries; attempt++) {
        struct s3_xml why;
        CURLcode cc;

        if (attempt > 0) {
            uint64_t cap = (uint64_t)sb->backoff_ms << (attempt - 1 < 20 ? attempt - 1 : 20);
            s3_sleep_ms(s3_jitter(cap < sb->backoff_max_ms ? (uint32_t)cap : sb->backoff_max_ms));
        }
        rc = s3_attempt_reset(c, xml, errmsg);
        if (rc != 0)
            break;
        curl_easy_reset(h);
        s3_setopts(sb, h, c, hdrs);
        cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
        curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &c->content_length);
        if (c->is_overflow) {
            rc = obj__fail(errmsg, -EMSGSIZE, "object is larger than the buffer");
            break;
        }
        if (c->is_unranged) {
            rc = obj__fail(errmsg, -EPROTO, "%s answered a range request with HTTP %ld",
                           sb->endpoint, c->status);
            break;
        }
        if (c->is_xml_error) {
            rc = obj__fail(errmsg, -EPROTO, "malformed XML from %s", sb->endpoint);
            break;
        }
        if (cc != CURLE_OK) {
            rc = obj__fail(errmsg, s3_err_from_curl(cc), "%s %s: %s (after %u attempts)",
                           c->method, sb->endpoint, curl_easy_strerror(cc), attempt + 1);
            if (s3_curl_is_transient(cc))
                continue;
            break;
        }
        if ((c->status >= 200 && c->status <= 299) || c->status == ok_status) {
            rc = 0;
            if (xml != NULL && XML_Parse(c->xml, "", 0, 1) != XML_STATUS_OK)
                rc = obj__fail(errmsg, -EPROTO, "malformed XML from %s", sb->endpoint);
            break;
        }
        s3_error_explain(c, &why);
        rc = obj__fail(errmsg, obj__err_from_http(c->status, why.code),
                       "%s s3://%s: HTTP %ld %s%s%s (after %u attempts)", c->method, sb->bucket,
                       c->status, why.code, why.message[0] != '\0' ? ": " : "", why.message,
                       attempt + 1);
        if (!s3_http_is_transient(c->status, why.code))
            break;
    }
    if (c->xml != NULL) {
        XML_ParserFree(c->xml);
        c->xml = NULL;
    }
    curl_slist_free_all(hdrs);
    s3_handle_put(sb, h);
    return rc;
}

/* ---- URLs ---------------------------------------------------------------- */

/* Append s to out escaped by AWS's rules (RFC 3986 unreserved kept; '/' kept
 * when keep_slash). -ENAMETOOLONG if it does not fit. */
static int s3_escape(char *out, size_t cap, size_t *len, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
                    ch == '~' || (keep_slash && ch == '/');
        if (*len + 4 > cap)
            return -ENAMETOOLONG;
        if (keep) {
            out[(*len)++] = (char)ch;
        } else {
            out[(*len)++] = '%';
            out[(*len)++] = hex[ch >> 4];
            out[(*len)++] = hex[ch & 15];
        }
    }
    out[*len] = '\0';
    return 0;
}

/* The URL of the bucket root ("http://h:p/bucket" or "http://bucket.h:p"). */
static int s3_url_bucket(const struct s3_backend *sb, char *out, size_t cap, size_t *len)
{
    const char *host = strstr(sb->endpoint, "://") + 3;
    int n;

    if (sb->is_path_style) {
        n = snprintf(out, cap, "%s/%s", sb->endpoint, sb->bucket);
    } else {
        n = snprintf(out, cap, "%.*s%s.%s", (int)(host - sb->endpoint), sb->endpoint, sb->bucket,
                     host);
    }
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    *len = (size_t)n;
    return 0;
}

static int s3_url_key(const struct s3_backend *sb, const char *key, struct s3_call *c,
                      char *errmsg)
{
    size_t len;
    int rc = s3_url_bucket(sb, c->url, sizeof(c->url), &len);

    if (rc == 0 && strlen(sb->prefix) + strlen(key) > OBJ_KEY_BYTES_MAX)
        rc = -ENAMETOOLONG;
    if (rc == 0 && len + 1 < sizeof(c->url)) {
        c->url[len++] = '/';
        c->url[len] = '\0';
        rc = s3_escape(c->url, sizeof(c->url), &len, sb->prefix, true);
    }
    if (rc == 0)
        rc = s3_escape(c->url, sizeof(c->url), &len, key, true);
    if (rc != 0)
        return obj__fail(errmsg, -ENAMETOOLONG, "key %.64s... is too long with the store prefix",
                         key);
    return 0;
}

/* ---- the operations -------------------------------------------------------- */

/* A new call of method on key's URL; the caller obj__free()s *out. */
static int s3_call_new(struct s3_backend *sb, const char *method, const char *key,
                       struct s3_call **out, char *errmsg)
{
    struct s3_call *c = obj__calloc(1, sizeof(*c));
    int rc;

    if (c == NULL)
        return obj__fail(errmsg, -ENOMEM, "out of memory");
    c->method = method;
    rc = s3_url_key(sb, key, c, errmsg);
    if (rc != 0) {
        obj__free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int s3_put(struct obj__backend *b, const char *key, const struct iovec *iov, int iovcnt,
                  char *errmsg)
{
    struct s3_backend *sb = s3_of(b);
    struct s3_call *c = NULL;
    int rc = s3_call_new(sb, "PUT", key, &c, errmsg);

    OBJ_ASSERT(iovcnt > 0 && iovcnt <= (int)OBJ_IOV_MAX);
    if (rc != 0)
        return rc;
    c->up = iov;
    c->up_count = iovcnt;
    c->up_bytes = obj__iov_bytes(iov, iovcnt);
    rc = s3_perform(sb, c, 0, NULL, errmsg);
    obj__free(c);
    return rc;
}

static int s3_get(struct obj__backend *b, const char *key, uint64_t off, uint64_t len,
                  const struct iovec *iov, int iovcnt, size_t *got, char *errmsg)
{
    struct s3_backend *sb = s3_of(b);
    struct s3_call *c = NULL;
    int rc = s3_call_new(sb, "GET", key, &c, errmsg);

    OBJ_ASSERT(iovcnt > 0 && iovcnt <= (int)OBJ_IOV_MAX);
    OBJ_ASSERT(len > 0);
    if (rc != 0)
        return rc;
    c->down = iov;
    c->down_count = iovcnt;
    if (len != OBJ_RAW_TO_END) {
        snprintf(c->range, sizeof(c->range), "%llu-%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1));
    } else if (off > 0) {
        snprintf(c->range, sizeof(c->range), "%llu-", (unsigned long long)off);
    }
    rc = s3_perform(sb, c, 416, NULL, errmsg);
    if (rc == 0 && c->status == 416) {
        *got = 0; /* the range starts past the end */
    } else if (rc == 0) {
        *got = c->got;
    } else if (rc == -ENOENT) {
        obj__fail(errmsg, -ENOENT, "no object %.200s", key);
    }
    obj__free(c);
    return rc;
}

static int s3_head(struct obj__backend *b, const char *key, uint64_t *raw_size, char *errmsg)
{
    struct s3_backend *sb = s3_of(b);
    struct s3_call *c = NULL;
    int rc = s3_call_new(sb, "HEAD", key, &c, errmsg);

    if (rc != 0)
        return rc;
    rc = s3_perform(sb, c, 0, NULL, errmsg);
    if (rc == 0 && c->content_length < 0)
        rc = obj__fail(errmsg, -EPROTO, "HEAD %.200s: no Content-Length", key);
    if (rc == 0)
        *raw_size = (uint64_t)c->content_length;
    if (rc == -ENOENT)
        obj__fail(errmsg, -ENOENT, "no object %.200s", key);
    obj__free(c);
    return rc;
}

static int s3_del(struct obj__backend *b, const char *key, char *errmsg)
{
    struct s3_backend *sb = s3_of(b);
    struct s3_call *c = NULL;
    int rc = s3_call_new(sb, "DELETE", key, &c, errmsg);

    if (rc != 0)
        return rc;
    rc = s3_perform(sb, c, 404, NULL, errmsg); /* gone already: fine */
    obj__free(c);
    return rc;
}

static int s3_list(struct obj__backend *b, const char *prefix, const char *start_after,
                   struct obj_list_page *page, char *errmsg)
{
    struct s3_backend *sb = s3_of(b);
    struct s3_call *c = obj__calloc(1, sizeof(*c));
    struct s3_xml *xml = obj__calloc(1, sizeof(*xml));
    char full[2 * OBJ_KEY_BYTES_MAX + 2];
    size_t len = 0;
    int rc;

    if (c == NULL || xml == NULL) {
        obj__free(c);
        obj__free(xml);
        return obj__fail(errmsg, -ENOMEM, "out of memory");
    }
    c->method = "GET";
    /* Parameters in sorted order: the query is then its own canonical form. */
    rc = s3_url_bucket(sb, c->url, sizeof(c->url), &len);
    if (rc == 0) {
        int n = snprintf(c->url + len, sizeof(c->url) - len, "?list-type=2&max-keys=%u&prefix=",
                         page->entry_cap);
        len += (size_t)n;
        snprintf(full, sizeof(full), "%s%s", sb->prefix, prefix);
        rc = s3_escape(c->url, sizeof(c->url), &len, full, false);
    }
    if (rc == 0 && start_after != NULL && start_after[0] != '\0') {
        int n = snprintf(c->url + len, sizeof(c->url) - len, "&start-after=");
        len += (size_t)n;
        snprintf(full, sizeof(full), "%s%s", sb->prefix, start_after);
        rc = s3_escape(c->url, sizeof(c->url), &len, full, false);
    }
    if (rc != 0) {
        rc = obj__fail(errmsg, -ENAMETOOLONG, "list URL too long");
    } else {
        xml->page = page;
        xml->strip = strlen(sb->prefix);
        xml->prefix = sb->prefix;
        rc = s3_perform(sb, c, 0, xml, errmsg);
    }
    if (rc == 0 && xml->is_bad)
        rc = obj__fail(errmsg, -EPROTO, "unexpected list reply from %s", sb->endpoint);
    if (rc == 0)
        page->is_truncated = xml->is_truncated;
    obj__free(c);
    obj__free(xml);
    return rc;
}

static void s3_close(struct obj__backend *b)
{
    struct s3_backend *sb = s3_of(b);

    for (unsigned i = 0; i < sb->pool_count; i++) {
        curl_easy_cleanup(sb->pool[i]);
    }
    curl_share_cleanup(sb->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) {
        pthread_mutex_destroy(&sb->share_locks[i]);
    }
    pthread_mutex_destroy(&sb->pool_lock);
    memset(sb->userpwd, 0, sizeof(sb->userpwd));
    memset(sb->token_header, 0, sizeof(sb->token_header));
    obj__free(sb);
}

static const struct obj__backend_ops s3_ops = {
    .put = s3_put,
    .get = s3_get,
    .head = s3_head,
    .del = s3_del,
    .list = s3_list,
    .close = s3_close,
};

/* ---- credentials ------------------------------------------------------------ */

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

/* Read key id, secret and token of [profile] from an AWS credentials file.
 * -ENOENT if the file or the section is missing, -EINVAL if malformed. */
static int s3_creds_from_file(const char *path, const char *profile, char *id, char *secret,
                              char *token, char *errmsg)
{
    FILE *f = fopen(path, "re");
    char line[1024];
    bool is_in = false;
    bool has_section = false;
    unsigned line_no = 0;
    long size;

    if (f == NULL)
        return obj__fail(errmsg, -ENOENT, "credentials file %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || size > (long)S3_CREDS_FILE_MAX ||
        fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return obj__fail(errmsg, -EINVAL, "credentials file %s is unreadable or over %u bytes",
                         path, S3_CREDS_FILE_MAX);
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *l = trim(line);
        char *eq;
        line_no++;
        if (l[0] == '\0' || l[0] == '#' || l[0] == ';')
            continue;
        if (l[0] == '[') {
            char *close = strchr(l, ']');
            if (close == NULL) {
                fclose(f);
                return obj__fail(errmsg, -EINVAL, "credentials file %s line %u: bad section",
                                 path, line_no);
            }
            *close = '\0';
            is_in = strcmp(trim(l + 1), profile) == 0;
            has_section |= is_in;
            continue;
        }
        eq = strchr(l, '=');
        if (eq == NULL) {
            fclose(f);
            return obj__fail(errmsg, -EINVAL, "credentials file %s line %u: not name = value",
                             path, line_no);
        }
        if (!is_in)
            continue;
        *eq = '\0';
        char *name = trim(l);
        char *value = trim(eq + 1);
        if (strlen(value) >= S3_SECRET_BYTES_MAX) {
            fclose(f);
            return obj__fail(errmsg, -EINVAL, "credentials file %s line %u: value too long", path,
                             line_no);
        }
        if (strcmp(name, "aws_access_key_id") == 0)
            memcpy(id, value, strlen(value) + 1);
        else if (strcmp(name, "aws_secret_access_key") == 0)
            memcpy(secret, value, strlen(value) + 1);
        else if (strcmp(name, "aws_session_token") == 0)
            memcpy(token, value, strlen(value) + 1);
    }
    fclose(f);
    memset(line, 0, sizeof(line));
    if (!has_section)
        return obj__fail(errmsg, -ENOENT, "credentials file %s has no [%s] section", path, profile);
    return 0;
}

static int s3_creds(struct s3_backend *sb, const struct obj__url *u, char *errmsg)
{
    char id[S3_SECRET_BYTES_MAX] = "";
    char secret[S3_SECRET_BYTES_MAX] = "";
    char token[S3_SECRET_BYTES_MAX] = "";
    char path[1024];
    const char *env_id = getenv("AWS_ACCESS_KEY_ID");
    const char *env_secret = getenv("AWS_SECRET_ACCESS_KEY");
    const char *profile = obj__url_param(u, "profile");
    const char *file = obj__url_param(u, "credentials");
    int rc = 0;

    if (profile == NULL)
        profile = getenv("AWS_PROFILE") != NULL ? getenv("AWS_PROFILE") : "default";
    if (env_id != NULL && env_secret != NULL && file == NULL) {
        const char *env_token = getenv("AWS_SESSION_TOKEN");
        snprintf(id, sizeof(id), "%s", env_id);
        snprintf(secret, sizeof(secret), "%s", env_secret);
        snprintf(token, sizeof(token), "%s", env_token != NULL ? env_token : "");
    } else {
        if (file == NULL)
            file = getenv("AWS_SHARED_CREDENTIALS_FILE");
        if (file == NULL && getenv("HOME") != NULL) {
            snprintf(path, sizeof(path), "%s/.aws/credentials", getenv("HOME"));
            file = path;
        }
        rc = file != NULL ? s3_creds_from_file(file, profile, id, secret, token, errmsg)
                          : obj__fail(errmsg, -ENOENT, "no HOME for a credentials file");
    }
    if (rc == 0 && (id[0] == '\0' || secret[0] == '\0'))
        rc = -ENOENT;
    if (rc == -ENOENT)
        rc = obj__fail(errmsg, -EACCES,
                       "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                       "give a credentials file with a [%s] section",
                       profile);
    if (rc == 0 && strchr(id, ':') != NULL)
        rc = obj__fail(errmsg, -EINVAL, "S3 access key id may not contain ':'");
    if (rc == 0 && strpbrk(token, "\r\n") != NULL)
        rc = obj__fail(errmsg, -EINVAL, "S3 session token may not contain a line break");
    if (rc == 0) {
        snprintf(sb->userpwd, sizeof(sb->userpwd), "%s:%s", id, secret);
        if (token[0] != '\0')
            snprintf(sb->token_header, sizeof(sb->token_header), "x-amz-security-token: %s",
                     token);
    }
    memset(secret, 0, sizeof(secret));
    memset(token, 0, sizeof(token));
    return rc;
}

/* ---- open ------------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void s3_curl_global_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int s3_config(struct s3_backend *sb, const struct obj__url *u, char *errmsg)
{
    static const char *const known[] = {
        "endpoint", "region",     "path_style",     "profile",    "credentials",
        "retries",  "backoff_ms", "backoff_max_ms", "timeout_ms", "connect_timeout_ms",
    };
    const char *endpoint = obj__url_param(u, "endpoint");
    const char *region = obj__url_param(u, "region");
    uint32_t path_style = endpoint != NULL;
    int rc = obj__url_check_params(u, known, sizeof(known) / sizeof(known[0]), errmsg);

    if (rc != 0)
        return rc;
    if (u->host[0] == '\0' || strlen(u->host) > 63)
        return obj__fail(errmsg, -EINVAL, "s3:// URL needs a bucket name of 1..63 bytes");
    for (const char *p = u->host; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return obj__fail(errmsg, -EINVAL, "bucket name '%s' is not a valid S3 bucket name",
                             u->host);
    }
    snprintf(sb->bucket, sizeof(sb->bucket), "%s", u->host);
    if (u->path[0] != '\0') {
        size_t n = strlen(u->path);
        if (obj__key_check(u->path, true, errmsg) != 0)
            return obj__fail(errmsg, -EINVAL, "s3:// prefix '%.64s' is not a valid key prefix",
                             u->path);
        snprintf(sb->prefix, sizeof(sb->prefix), "%s%s", u->path, u->path[n - 1] == '/' ? "" : "/");
    }
    if (region == NULL)
        region = "us-east-1";
    for (const char *p = region; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-') ||
            p - region > 64)
            return obj__fail(errmsg, -EINVAL, "region '%.64s' is not a region name", region);
    }
    snprintf(sb->sigv4, sizeof(sb->sigv4), "aws:amz:%s:s3", region);
    if (endpoint == NULL) {
        snprintf(sb->endpoint, sizeof(sb->endpoint), "https://s3.%s.amazonaws.com", region);
    } else {
        size_t n = strlen(endpoint);
        if ((strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0) ||
            n >= sizeof(sb->endpoint) || strchr(strstr(endpoint, "://") + 3, '/') != NULL ||
            strchr(endpoint, '?') != NULL || strchr(endpoint, '@') != NULL)
            return obj__fail(errmsg, -EINVAL,
                             "endpoint must be http[s]://HOST[:PORT] with no path or user");
        memcpy(sb->endpoint, endpoint, n + 1);
    }
    sb->retries = 5;
    sb->backoff_ms = 100;
    sb->backoff_max_ms = 5000;
    sb->timeout_ms = 60000;
    sb->connect_timeout_ms = 5000;
    rc = obj__url_param_u32(u, "path_style", 0, 1, &path_style, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "retries", 0, 20, &sb->retries, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "backoff_ms", 1, 60000, &sb->backoff_ms, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "backoff_max_ms", 1, 600000, &sb->backoff_max_ms, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "timeout_ms", 100, 3600000, &sb->timeout_ms, errmsg);
    if (rc == 0)
        rc = obj__url_param_u32(u, "connect_timeout_ms", 10, 600000, &sb->connect_timeout_ms,
                                errmsg);
    sb->is_path_style = path_style != 0;
    return rc;
}

int obj__s3_open(const struct obj__url *u, struct obj__backend **out, char *errmsg)
{
    struct s3_backend *sb;
    int rc;

    pthread_once(&curl_once, s3_curl_global_init);
    if (curl_init_rc != CURLE_OK)
        return obj__fail(errmsg, -EIO, "curl_global_init: %s", curl_easy_strerror(curl_init_rc));
    sb = obj__calloc(1, sizeof(*sb));
    if (sb == NULL)
        return obj__fail(errmsg, -ENOMEM, "out of memory");
    rc = s3_config(sb, u, errmsg);
    if (rc == 0)
        rc = s3_creds(sb, u, errmsg);
    if (rc != 0) {
        memset(sb, 0, sizeof(*sb));
        obj__free(sb);
        return rc;
    }
    sb->base.ops = &s3_ops;
    pthread_mutex_init(&sb->pool_lock, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) {
        pthread_mutex_init(&sb->share_locks[i], NULL);
    }
    sb->share = curl_share_init();
    if (sb->share == NULL) {
        s3_close(&sb->base);
        return obj__fail(errmsg, -ENOMEM, "curl_share_init failed");
    }
    curl_share_setopt(sb->share, CURLSHOPT_LOCKFUNC, s3_share_lock);
    curl_share_setopt(sb->share, CURLSHOPT_UNLOCKFUNC, s3_share_unlock);
    curl_share_setopt(sb->share, CURLSHOPT_USERDATA, sb);
    curl_share_setopt(sb->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(sb->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    *out = &sb->base;
    return 0;
}
