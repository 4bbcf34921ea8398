/* meta/cluster.c - a replica's cluster file and the addresses in it.
 *
 * The file is written once, by arbor format (meta_server_format()), and
 * read at every start. It is text, one "key value" a line:
 *
 *   arbor-cluster 1
 *   volume NAME
 *   created_ns NS
 *   self ID
 *   store URL
 *   block_bytes N
 *   window_s S
 *   node ID RAFT_HOST:PORT CLIENT_HOST:PORT     (one a member)
 *
 * Blank lines and lines starting with '#' are skipped. Anything else is
 * refused with the line's number, since a server started from a file it
 * half understood could join the wrong peers or put blocks in the wrong
 * place. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "meta.h"

#define LINE_MAX_BYTES 512
#define FILE_MAX_BYTES (64u << 10) /* 8 nodes take under 1 KiB */

int meta_addr_parse(const char *addr, char *host, size_t cap, uint16_t *port)
{
    const char *colon = strrchr(addr, ':');
    struct sockaddr_storage sa;

    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= cap || colon[1] == '\0' ||
        strlen(colon + 1) > 5 || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return -EINVAL;
    unsigned long p = strtoul(colon + 1, NULL, 10);
    if (p == 0 || p > 65535)
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)&sa) != 0)
        return -EINVAL; /* the transports take literal addresses only */
    *port = (uint16_t)p;
    return 0;
}

/* A decimal number of at most max in s, all of it. */
static bool parse_number(const char *s, uint64_t max, uint64_t *out)
{
    char *end;

    if (s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

/* One line's fields, split at blanks (a CR of an edited file too); false if more
 * than cap. */
static bool split_fields(char *line, char **fields, int cap, int *count)
{
    char *save = NULL;

    *count = 0;
    for (char *tok = strtok_r(line, " \t\r", &save); tok != NULL;
         tok = strtok_r(NULL, " \t\r", &save)) {
        if (*count == cap)
            return false;
        fields[(*count)++] = tok;
    }
    return true;
}

/* A one-value key into out: 1 done, 0 a bad value (why says), -1 not
 * such a key. */
static int parse_setting(const char *key, const char *value, struct meta_server_config *out,
                         char *why, size_t why_cap)
{
    uint64_t v;
    bool is_ok = true;

    if (strcmp(key, "arbor-cluster") == 0) {
        if (!(is_ok = strcmp(value, "1") == 0))
            snprintf(why, why_cap, "version %s of the cluster file is not known here", value);
    } else if (strcmp(key, "volume") == 0) {
        if ((is_ok = strlen(value) < sizeof(out->volume)))
            snprintf(out->volume, sizeof(out->volume), "%s", value);
        else
            snprintf(why, why_cap, "a volume name of more than %zu bytes", sizeof(out->volume) - 1);
    } else if (strcmp(key, "created_ns") == 0) {
        if ((is_ok = parse_number(value, INT64_MAX, &v)))
            out->created_ns = (int64_t)v;
        else
            snprintf(why, why_cap, "created_ns wants nanoseconds, not %s", value);
    } else if (strcmp(key, "self") == 0) {
        if ((is_ok = parse_number(value, UINT64_MAX, &v) && v != 0))
            out->id = v;
        else
            snprintf(why, why_cap, "self wants a node id of 1 or more, not %s", value);
    } else if (strcmp(key, "store") == 0) {
        if ((is_ok = strlen(value) < sizeof(out->store_url) &&
                     (strncmp(value, "file://", 7) == 0 || strncmp(value, "s3://", 5) == 0)))
            snprintf(out->store_url, sizeof(out->store_url), "%s", value);
        else
            snprintf(why, why_cap, "store wants a file:// or s3:// URL under %zu bytes",
                     sizeof(out->store_url));
    } else if (strcmp(key, "block_bytes") == 0) {
        if ((is_ok = parse_number(value, META_BLOCK_BYTES, &v) && v >= 4096 && (v & (v - 1)) == 0))
            out->block_bytes = (uint32_t)v;
        else
            snprintf(why, why_cap, "block_bytes wants a power of two from 4096 to %u, not %s",
                     META_BLOCK_BYTES, value);
    } else if (strcmp(key, "window_s") == 0) {
        if ((is_ok = parse_number(value, UINT32_MAX, &v) && v != 0))
            out->window_s = (uint32_t)v;
        else
            snprintf(why, why_cap, "window_s wants seconds, 1 or more, not %s", value);
    } else {
        return -1;
    }
    return is_ok ? 1 : 0;
}

/* "node ID RAFT CLIENT" (f, n fields) into out's nodes. */
static bool parse_node(char **f, int n, struct meta_server_config *out, char *why, size_t why_cap)
{
    struct meta_server_node node = {0};
    char host[64];
    uint16_t port;
    uint64_t v;

    if (n != 4 || !parse_number(f[1], UINT64_MAX, &v) || v == 0) {
        snprintf(why, why_cap, "node wants ID RAFT_HOST:PORT CLIENT_HOST:PORT");
        return false;
    }
    node.id = v;
    for (int a = 2; a <= 3; a++) {
        if (strlen(f[a]) >= sizeof(node.raft_addr) ||
            meta_addr_parse(f[a], host, sizeof(host), &port) != 0) {
            snprintf(why, why_cap, "node %" PRIu64 ": %.64s is not IP:PORT", node.id, f[a]);
            return false;
        }
    }
    snprintf(node.raft_addr, sizeof(node.raft_addr), "%s", f[2]);
    snprintf(node.client_addr, sizeof(node.client_addr), "%s", f[3]);
    for (uint32_t i = 0; i < out->node_count; i++) {
        if (out->nodes[i].id == node.id) {
            snprintf(why, why_cap, "node %" PRIu64 " given twice", node.id);
            return false;
        }
    }
    if (out->node_count == META_SERVER_NODES_MAX) {
        snprintf(why, why_cap, "more than %u nodes", META_SERVER_NODES_MAX);
        return false;
    }
    out->nodes[out->node_count++] = node;
    return true;
}

/* Line's meaning into out; false with why. */
static bool parse_line(char *line, struct meta_server_config *out, uint32_t *seen, char *why,
                       size_t why_cap)
{
    enum { SEEN_MAGIC = 1, SEEN_VOLUME = 2, SEEN_CREATED = 4, SEEN_SELF = 8, SEEN_STORE = 16,
           SEEN_BLOCK = 32, SEEN_WINDOW = 64 };
    static const struct { const char *key; uint32_t bit; } once[] = {
        {"arbor-cluster", SEEN_MAGIC}, {"volume", SEEN_VOLUME}, {"created_ns", SEEN_CREATED},
        {"self", SEEN_SELF}, {"store", SEEN_STORE}, {"block_bytes", SEEN_BLOCK},
        {"window_s", SEEN_WINDOW},
    };
    char *f[5];
    int n;

    if (!split_fields(line, f, 5, &n) || n < 2) {
        snprintf(why, why_cap, "not \"key value\"");
        return false;
    }
    for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++) {
        if (strcmp(f[0], once[i].key) != 0)
            continue;
        if (*seen & once[i].bit) {
            snprintf(why, why_cap, "%s given twice", f[0]);
            return false;
        }
        if (n != 2) {
            snprintf(why, why_cap, "%s takes one value", f[0]);
            return false;
        }
        *seen |= once[i].bit;
    }
    int done = strcmp(f[0], "node") == 0 ? parse_node(f, n, out, why, why_cap)
                                         : parse_setting(f[0], f[1], out, why, why_cap);
    if (done < 0)
        snprintf(why, why_cap, "unknown key %.40s", f[0]);
    if (done <= 0)
        return false;
    if (!(*seen & SEEN_MAGIC)) {
        snprintf(why, why_cap, "the file does not begin with \"arbor-cluster 1\"");
        return false;
    }
    return true;
}

int meta_cluster_load(const char *data_dir, struct meta_server_config *out, char *errmsg)
{
    char path[600];
    char why[160] = "";
    uint32_t seen = 0;
    uint32_t line_no = 0;

    snprintf(path, sizeof(path), "%s/cluster", data_dir);
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int rc = -errno;
        snprintf(errmsg, AR_ERRMSG_MAX, "%s: %s (is it formatted? arbor format)", path,
                 strerror(-rc));
        return rc;
    }
    char *text = malloc(FILE_MAX_BYTES + 1);
    size_t len = text != NULL ? fread(text, 1, FILE_MAX_BYTES + 1, f) : 0;
    bool is_read_error = ferror(f) != 0;
    fclose(f);
    if (text == NULL)
        return ar_errorf(errmsg, -ENOMEM, "%s: no memory to read it", path);
    if (is_read_error || len > FILE_MAX_BYTES) {
        free(text);
        return ar_errorf(errmsg, is_read_error ? -EIO : -EINVAL, "%s: %s", path,
                         is_read_error ? "cannot read it" : "larger than a cluster file can be");
    }
    text[len] = '\0';
    bool is_ok = memchr(text, '\0', len) == NULL;
    if (!is_ok)
        snprintf(why, sizeof(why), "a NUL byte");
    /* bounded by the text: each turn takes one line */
    for (char *line = text; is_ok && line < text + len;) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        line_no++;
        if (strlen(line) > LINE_MAX_BYTES) {
            snprintf(why, sizeof(why), "a line longer than %d bytes", LINE_MAX_BYTES);
            is_ok = false;
        } else if (line[0] != '\0' && line[0] != '#') {
            is_ok = parse_line(line, out, &seen, why, sizeof(why));
        }
        line = end != NULL ? end + 1 : text + len;
    }
    free(text);
    if (!is_ok)
        return ar_errorf(errmsg, -EINVAL, "%s, line %u: %s", path, line_no, why);
    const char *missing = seen == 0                 ? "everything (the file is empty)"
                          : out->id == 0            ? "self"
                          : out->node_count == 0    ? "the nodes"
                          : out->store_url[0] == '\0' ? "store"
                                                      : NULL;
    if (missing != NULL)
        return ar_errorf(errmsg, -EINVAL, "%s: not a whole cluster file: %s is missing", path,
                         missing);
    bool is_member = false;
    for (uint32_t i = 0; i < out->node_count; i++)
        is_member |= out->nodes[i].id == out->id;
    if (!is_member)
        return ar_errorf(errmsg, -EINVAL, "%s: self %" PRIu64 " is not among its nodes", path,
                         out->id);
    snprintf(out->data_dir, sizeof(out->data_dir), "%s", data_dir);
    if (out->volume[0] == '\0')
        snprintf(out->volume, sizeof(out->volume), "arbor");
    if (out->block_bytes == 0)
        out->block_bytes = META_BLOCK_BYTES;
    if (out->window_s == 0)
        out->window_s = META_WINDOW_S_DEFAULT;
    return 0;
}
