/* tests/meta/test_cluster_file.c - the cluster file: what arbor format
 * writes reads back the same; each kind of damage is refused, naming the
 * line; a seeded fuzz never crashes the reader nor lets a file through
 * whose meaning breaks the server's assumptions. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../objstore/harness.h"
#include "meta.h"

#define FUZZ_ROUNDS 3000

struct fixture {
    char dir[256];
    char node[300];     /* a formatted replica's data directory */
    char scratch[300];  /* a directory holding only a cluster file */
    char *good;         /* the formatted replica's cluster file */
    size_t good_len;
};

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void write_cluster_at(const char *path, const char *text)
{
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    assert_int_equal(fputs(text, out) >= 0, 1);
    fclose(out);
}

static void write_cluster(struct fixture *f, const char *text, size_t len)
{
    char path[400];

    snprintf(path, sizeof(path), "%s/cluster", f->scratch);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    assert_int_equal(fwrite(text, 1, len, out), len);
    fclose(out);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct meta_server_config cfg = {.id = 2, .node_count = 3, .created_ns = 1234567890123,
                                     .block_bytes = 1 << 20, .window_s = 86400};
    char errmsg[AR_ERRMSG_MAX] = "";
    char path[400];

    assert_non_null(f);
    harness_tmpdir(f->dir);
    snprintf(f->node, sizeof(f->node), "%s/node2", f->dir);
    snprintf(f->scratch, sizeof(f->scratch), "%s/scratch", f->dir);
    assert_int_equal(mkdir(f->scratch, 0755), 0);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", f->node);
    snprintf(cfg.volume, sizeof(cfg.volume), "cams");
    snprintf(cfg.store_url, sizeof(cfg.store_url), "file://%s/blocks", f->dir);
    for (uint32_t i = 0; i < 3; i++) {
        cfg.nodes[i].id = i + 1;
        snprintf(cfg.nodes[i].raft_addr, 64, "127.0.0.1:%u", 7001 + i);
        if (i == 2) /* an IPv6 literal, as the transports take it */
            snprintf(cfg.nodes[i].client_addr, 64, "::1:%u", 7101 + i);
        else
            snprintf(cfg.nodes[i].client_addr, 64, "127.0.0.1:%u", 7101 + i);
    }
    assert_int_equal(meta_server_format(&cfg, errmsg), 0);
    snprintf(path, sizeof(path), "%s/cluster", f->node);
    f->good = read_all(path, &f->good_len);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    harness_rm_rf(f->dir);
    free(f->good);
    free(f);
    return 0;
}

static void test_cluster_file_reads_back_what_format_wrote(void **state)
{
    struct fixture *f = *state;
    struct meta_server_config c;
    char errmsg[AR_ERRMSG_MAX] = "";

    assert_int_equal(meta_cluster_load(f->node, &c, errmsg), 0);
    assert_int_equal(c.id, 2);
    assert_string_equal(c.volume, "cams");
    assert_int_equal(c.created_ns, 1234567890123);
    assert_int_equal(c.block_bytes, 1 << 20);
    assert_int_equal(c.window_s, 86400);
    assert_non_null(strstr(c.store_url, "/blocks"));
    assert_int_equal(c.node_count, 3);
    assert_int_equal(c.nodes[0].id, 1);
    assert_string_equal(c.nodes[0].raft_addr, "127.0.0.1:7001");
    assert_string_equal(c.nodes[1].client_addr, "127.0.0.1:7102");
    assert_string_equal(c.nodes[2].client_addr, "::1:7103");
    assert_string_equal(c.data_dir, f->node);
    /* comments and blank lines are skipped */
    char text[2048];
    snprintf(text, sizeof(text), "# kept by hand\n\n%s\n# end\n", f->good);
    write_cluster(f, text, strlen(text));
    assert_int_equal(meta_cluster_load(f->scratch, &c, errmsg), 0);
    assert_int_equal(c.node_count, 3);
    /* a file edited elsewhere, with CRLF line ends */
    size_t n = 0;
    for (size_t i = 0; i < f->good_len && n + 2 < sizeof(text); i++) {
        if (f->good[i] == '\n')
            text[n++] = '\r';
        text[n++] = f->good[i];
    }
    write_cluster(f, text, n);
    assert_int_equal(meta_cluster_load(f->scratch, &c, errmsg), 0);
    assert_string_equal(c.nodes[2].client_addr, "::1:7103");
    /* format refuses a directory that holds something else, not a new disk's */
    struct meta_server_config other = c;
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/other", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(other.data_dir, sizeof(other.data_dir), "%s/lost+found", dir);
    assert_int_equal(mkdir(other.data_dir, 0700), 0);
    snprintf(other.data_dir, sizeof(other.data_dir), "%s/notes.txt", dir);
    write_cluster_at(other.data_dir, "mine\n");
    snprintf(other.data_dir, sizeof(other.data_dir), "%s", dir);
    assert_int_equal(meta_server_format(&other, errmsg), -ENOTEMPTY);
    assert_non_null(strstr(errmsg, "is not empty (it holds notes.txt)"));
    snprintf(text, sizeof(text), "%s/notes.txt", dir);
    assert_int_equal(unlink(text), 0);
    assert_int_equal(meta_server_format(&other, errmsg), 0);
    /* absent: the error of open(2), with a hint */
    assert_int_equal(meta_cluster_load(f->dir, &c, errmsg), -ENOENT);
    assert_non_null(strstr(errmsg, "arbor format"));
}

/* The good file with its line starting with key replaced by with (NULL:
 * removed), or with added at the end when no line starts with key. */
static void edit(struct fixture *f, const char *key, const char *with, char *out, size_t cap)
{
    const char *p = f->good;
    bool is_done = false;

    out[0] = '\0';
    /* bounded by the good file's lines */
    while (*p != '\0') {
        size_t n = strcspn(p, "\n");
        if (!is_done && strncmp(p, key, strlen(key)) == 0) {
            if (with != NULL)
                snprintf(out + strlen(out), cap - strlen(out), "%s\n", with);
            is_done = true;
        } else {
            snprintf(out + strlen(out), cap - strlen(out), "%.*s\n", (int)n, p);
        }
        p += n + (p[n] == '\n');
    }
    if (!is_done && with != NULL)
        snprintf(out + strlen(out), cap - strlen(out), "%s\n", with);
}

static void test_cluster_file_refuses_each_damage_naming_it(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *key;
        const char *with;
        const char *says;
    } cases[] = {
        {"arbor-cluster", "arbor-cluster 2", "line 1: version 2"},
        {"arbor-cluster", NULL, "does not begin with \"arbor-cluster 1\""},
        {"self", "self 9", "self 9 is not among its nodes"},
        {"self", "self 0", "self wants a node id"},
        {"self", "self 2 3", "self takes one value"},
        {"self", NULL, "self is missing"},
        {"store", NULL, "store is missing"},
        {"store", "store ftp://host/x", "store wants a file:// or s3:// URL"},
        {"block_bytes", "block_bytes 0", "block_bytes wants a power of two"},
        {"block_bytes", "block_bytes 12288", "block_bytes wants a power of two"},
        {"block_bytes", "block_bytes 8388608", "block_bytes wants a power of two"},
        {"window_s", "window_s abc", "window_s wants seconds"},
        {"window_s", "window_s 4294967296", "window_s wants seconds"},
        {"created_ns", "created_ns -5", "created_ns wants nanoseconds"},
        {"volume", "volume a-name-longer-than-sixty-three-bytes-is-not-one-arbor-format-makes",
         "a volume name of more than 63 bytes"},
        {"node 2", "node 2 127.0.0.1:99999 127.0.0.1:7102", "127.0.0.1:99999 is not IP:PORT"},
        {"node 2", "node 2 127.0.0.1:7002 localhost:7102", "localhost:7102 is not IP:PORT"},
        {"node 2", "node 2 127.0.0.1:7002 127.0.0.1:71x2", "is not IP:PORT"},
        {"node 2", "node 2 127.0.0.1:7002", "node wants ID RAFT_HOST:PORT CLIENT_HOST:PORT"},
        {"node 2", "node 2 127.0.0.1:7002 127.0.0.1:7102 extra", "node wants ID"},
        {"node 3", "node 1 127.0.0.1:7003 127.0.0.1:7103", "node 1 given twice"},
        {"window_s", "window_s 60\nwindow_s 60", "window_s given twice"},
        {"volume", "colour blue", "unknown key colour"},
        {"volume", "volume", "not \"key value\""},
    };
    char text[4096];
    struct meta_server_config c;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char errmsg[AR_ERRMSG_MAX] = "";
        edit(f, cases[i].key, cases[i].with, text, sizeof(text));
        write_cluster(f, text, strlen(text));
        int rc = meta_cluster_load(f->scratch, &c, errmsg);
        if (rc != -EINVAL || strstr(errmsg, cases[i].says) == NULL)
            fail_msg("case %zu (%s): rc %d, \"%s\"; wanted \"%s\"", i,
                     cases[i].with != NULL ? cases[i].with : "removed", rc, errmsg,
                     cases[i].says);
        assert_non_null(strstr(errmsg, f->scratch)); /* the file is named */
    }
    /* a NUL byte, an empty file, a line past the bound */
    char errmsg[AR_ERRMSG_MAX] = "";
    memcpy(text, f->good, f->good_len);
    text[20] = '\0';
    write_cluster(f, text, f->good_len);
    assert_int_equal(meta_cluster_load(f->scratch, &c, errmsg), -EINVAL);
    assert_non_null(strstr(errmsg, "a NUL byte"));
    write_cluster(f, "", 0);
    assert_int_equal(meta_cluster_load(f->scratch, &c, errmsg), -EINVAL);
    assert_non_null(strstr(errmsg, "the file is empty"));
    snprintf(text, sizeof(text), "%s# %0600d\n", f->good, 0);
    write_cluster(f, text, strlen(text));
    assert_int_equal(meta_cluster_load(f->scratch, &c, errmsg), -EINVAL);
    assert_non_null(strstr(errmsg, "a line longer than"));
}

static void test_addresses(void **state)
{
    (void)state;
    char host[64];
    uint16_t port = 0;

    assert_int_equal(meta_addr_parse("127.0.0.1:7001", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7001);
    assert_int_equal(meta_addr_parse("::1:65535", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    static const char *const bad[] = {"", ":", "127.0.0.1", "127.0.0.1:", ":7001",
                                      "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:+80",
                                      "127.0.0.1:80 ", "127.0.0.1:0000080", "host:80",
                                      "[::1]:80", "1.2.3:80", "127.0.0.1:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (meta_addr_parse(bad[i], host, sizeof(host), &port) != -EINVAL)
            fail_msg("\"%s\" was taken", bad[i]);
    }
}

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* What a server assumes of a loaded file. */
static void expect_sound(const struct meta_server_config *c)
{
    char host[64];
    uint16_t port;
    bool is_member = false;

    assert_true(c->id != 0);
    assert_true(c->node_count >= 1 && c->node_count <= META_SERVER_NODES_MAX);
    for (uint32_t i = 0; i < c->node_count; i++) {
        is_member |= c->nodes[i].id == c->id;
        assert_true(c->nodes[i].id != 0);
        assert_int_equal(meta_addr_parse(c->nodes[i].raft_addr, host, sizeof(host), &port), 0);
        assert_int_equal(meta_addr_parse(c->nodes[i].client_addr, host, sizeof(host), &port),
                         0);
        for (uint32_t k = 0; k < i; k++)
            assert_true(c->nodes[k].id != c->nodes[i].id);
    }
    assert_true(is_member);
    assert_true(strncmp(c->store_url, "file://", 7) == 0 || strncmp(c->store_url, "s3://", 5) == 0);
    assert_true(c->block_bytes >= 4096 && c->block_bytes <= META_BLOCK_BYTES);
    assert_int_equal(c->block_bytes & (c->block_bytes - 1), 0);
    assert_true(c->window_s > 0);
    assert_true(c->volume[0] != '\0');
}

static void test_cluster_file_fuzz(void **state)
{
    struct fixture *f = *state;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    char *text = malloc(8192);
    uint32_t taken = 0;
    uint32_t refused = 0;
    struct meta_server_config c;

    assert_non_null(text);
    for (uint32_t round = 0; round < FUZZ_ROUNDS; round++) {
        size_t len = f->good_len;
        memcpy(text, f->good, len);
        uint32_t edits = 1 + (uint32_t)(next_random(&seed) % 4);
        for (uint32_t e = 0; e < edits && len > 0; e++) {
            size_t at = next_random(&seed) % len;
            switch (next_random(&seed) % 6) {
            case 0: /* a flipped bit */
                text[at] ^= (char)(1u << (next_random(&seed) % 8));
                break;
            case 1: /* a byte of anything, NUL and newline included */
                text[at] = (char)next_random(&seed);
                break;
            case 2: /* a run cut out */
            {
                size_t n = 1 + next_random(&seed) % 12;
                n = n > len - at ? len - at : n;
                memmove(text + at, text + at + n, len - at - n);
                len -= n;
                break;
            }
            case 3: /* cut short */
                len = at;
                break;
            case 4: /* a digit where one may be */
                text[at] = (char)('0' + next_random(&seed) % 10);
                break;
            default: /* a line again, elsewhere */
            {
                size_t from = next_random(&seed) % len;
                size_t n = 1 + next_random(&seed) % 48;
                n = n > len - from ? len - from : n;
                if (len + n < 8192) {
                    memmove(text + at + n, text + at, len - at);
                    memmove(text + at, text + (from < at ? from : from + n), n);
                    len += n;
                }
                break;
            }
            }
        }
        write_cluster(f, text, len);
        char errmsg[AR_ERRMSG_MAX] = "";
        int rc = meta_cluster_load(f->scratch, &c, errmsg);
        if (rc == 0) {
            expect_sound(&c);
            taken++;
        } else {
            assert_int_equal(rc, -EINVAL);
            assert_non_null(strstr(errmsg, f->scratch));
            refused++;
        }
    }
    print_message("%u damaged files: %u refused, %u taken (each sound)\n", FUZZ_ROUNDS, refused,
                  taken);
    assert_true(refused > FUZZ_ROUNDS / 2);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cluster_file_reads_back_what_format_wrote, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cluster_file_refuses_each_damage_naming_it, setup,
                                        teardown),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test_setup_teardown(test_cluster_file_fuzz, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
