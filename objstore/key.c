/* objstore/key.c - the rules for object keys and the parser of store URLs.
 * Both take outside input (keys from callers, URLs from the command line and
 * config), so both reject with a reason rather than assert, and both are
 * fuzzed (tests/objstore/test_key.c).
 * Thread: any; pure functions. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool key_char_ok(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!-_.*'()/", c) != NULL;
}

int obj__key_check(const char *key, bool is_prefix, char *errmsg)
{
    size_t len;
    size_t seg_len = 0;
    unsigned seg_count = 1;

    if (key == NULL)
        return obj__fail(errmsg, -EINVAL, "no key given");
    len = strnlen(key, OBJ_KEY_BYTES_MAX + 1);
    if (len > OBJ_KEY_BYTES_MAX)
        return obj__fail(errmsg, -ENAMETOOLONG, "key longer than %u bytes", OBJ_KEY_BYTES_MAX);
    if (len == 0 && !is_prefix)
        return obj__fail(errmsg, -EINVAL, "empty key");
    if (key[0] == '/')
        return obj__fail(errmsg, -EINVAL, "key '%.64s' begins with '/'", key);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (!key_char_ok(c))
            return obj__fail(errmsg, -EINVAL, "key has a character outside [A-Za-z0-9!-_.*'()/]"
                                              " at byte %zu",
                             i);
        if (c == '/') {
            if (seg_len == 0)
                return obj__fail(errmsg, -EINVAL, "key '%.64s' has an empty segment", key);
            seg_len = 0;
            if (++seg_count > OBJ_KEY_SEGMENTS_MAX)
                return obj__fail(errmsg, -EINVAL, "key has more than %u segments",
                                 OBJ_KEY_SEGMENTS_MAX);
            continue;
        }
        if (seg_len == 0 && c == '.')
            return obj__fail(errmsg, -EINVAL, "key '%.64s' has a segment beginning with '.'", key);
        if (++seg_len > OBJ_SEGMENT_BYTES_MAX)
            return obj__fail(errmsg, -ENAMETOOLONG, "key has a segment over %u bytes",
                             OBJ_SEGMENT_BYTES_MAX);
    }
    if (len > 0 && key[len - 1] == '/' && !is_prefix)
        return obj__fail(errmsg, -EINVAL, "key '%.64s' ends with '/'", key);
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copy src[0..n) into dst[0..cap) decoding %XX; -EINVAL if it does not fit,
 * has a bad escape or decodes to a NUL. */
static int url_decode(const char *src, size_t n, char *dst, size_t cap, const char *what,
                      char *errmsg)
{
    size_t out = 0;

    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_value(src[i + 1]) : -1;
            int lo = i + 2 < n ? hex_value(src[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return obj__fail(errmsg, -EINVAL, "bad %%-escape in URL %s", what);
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (out + 1 >= cap)
            return obj__fail(errmsg, -EINVAL, "URL %s is too long", what);
        dst[out++] = c;
    }
    dst[out] = '\0';
    return 0;
}

static int url_parse_params(const char *q, struct obj__url *out, char *errmsg)
{
    while (*q != '\0') {
        const char *amp = strchr(q, '&');
        size_t n = amp != NULL ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        size_t name_len = eq != NULL ? (size_t)(eq - q) : n;
        int rc;

        if (out->param_count == OBJ_URL_PARAMS_MAX)
            return obj__fail(errmsg, -EINVAL, "URL has more than %u parameters",
                             OBJ_URL_PARAMS_MAX);
        if (name_len == 0 || eq == NULL)
            return obj__fail(errmsg, -EINVAL, "URL parameter '%.*s' is not name=value",
                             (int)(n < 64 ? n : 64), q);
        rc = url_decode(q, name_len, out->params[out->param_count].name,
                        sizeof(out->params[0].name), "parameter name", errmsg);
        if (rc != 0)
            return rc;
        rc = url_decode(eq + 1, n - name_len - 1, out->params[out->param_count].value,
                        sizeof(out->params[0].value), "parameter value", errmsg);
        if (rc != 0)
            return rc;
        if (obj__url_param(out, out->params[out->param_count].name) != NULL)
            return obj__fail(errmsg, -EINVAL, "URL parameter '%s' given twice",
                             out->params[out->param_count].name);
        out->param_count++;
        q += n + (amp != NULL ? 1 : 0);
        if (amp != NULL && *q == '\0')
            return obj__fail(errmsg, -EINVAL, "URL ends with '&'");
    }
    return 0;
}

int obj__url_parse(const char *url, struct obj__url *out, char *errmsg)
{
    const char *sep;
    const char *host;
    const char *path;
    const char *query;
    size_t host_len;
    size_t path_len;
    int rc;

    memset(out, 0, sizeof(*out));
    if (url == NULL || strnlen(url, 4096) == 4096)
        return obj__fail(errmsg, -EINVAL, "store URL missing or longer than 4095 bytes");
    sep = strstr(url, "://");
    if (sep == NULL || sep == url || (size_t)(sep - url) >= sizeof(out->scheme))
        return obj__fail(errmsg, -EINVAL, "store URL '%.64s' has no scheme:// part", url);
    for (const char *p = url; p < sep; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return obj__fail(errmsg, -EINVAL, "store URL scheme must be lowercase letters");
    }
    memcpy(out->scheme, url, (size_t)(sep - url));
    host = sep + 3;
    query = strchr(host, '?');
    path = strchr(host, '/');
    if (path != NULL && query != NULL && path > query)
        path = NULL;
    host_len = (size_t)((path != NULL ? path : query != NULL ? query : host + strlen(host)) - host);
    rc = url_decode(host, host_len, out->host, sizeof(out->host), "host", errmsg);
    if (rc != 0)
        return rc;
    if (path != NULL) {
        path++; /* the path is kept without its leading '/' */
        path_len = (size_t)((query != NULL ? query : path + strlen(path)) - path);
        rc = url_decode(path, path_len, out->path, sizeof(out->path), "path", errmsg);
        if (rc != 0)
            return rc;
    }
    return query != NULL ? url_parse_params(query + 1, out, errmsg) : 0;
}

const char *obj__url_param(const struct obj__url *u, const char *name)
{
    for (unsigned i = 0; i < u->param_count; i++) {
        if (strcmp(u->params[i].name, name) == 0)
            return u->params[i].value;
    }
    return NULL;
}

int obj__url_param_u32(const struct obj__url *u, const char *name, uint32_t min, uint32_t max,
                       uint32_t *out, char *errmsg)
{
    const char *v = obj__url_param(u, name);
    char *end = NULL;
    unsigned long long n;

    if (v == NULL)
        return 0;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || n < min || n > max)
        return obj__fail(errmsg, -EINVAL, "URL parameter %s=%.32s is not a number in [%u, %u]",
                         name, v, min, max);
    *out = (uint32_t)n;
    return 0;
}

int obj__url_check_params(const struct obj__url *u, const char *const *names, unsigned count,
                          char *errmsg)
{
    for (unsigned i = 0; i < u->param_count; i++) {
        bool is_known = false;
        for (unsigned k = 0; k < count && !is_known; k++) {
            is_known = strcmp(u->params[i].name, names[k]) == 0;
        }
        if (!is_known)
            return obj__fail(errmsg, -EINVAL, "unknown %s:// URL parameter '%s'", u->scheme,
                             u->params[i].name);
    }
    return 0;
}
