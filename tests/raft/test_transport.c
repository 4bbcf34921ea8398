/* tests/raft/test_transport.c - the libuv transport between real sockets on
 * 127.0.0.1: messages of every kind arrive whole and in order across
 * groups, a peer that starts late is reached after back-off, and a
 * malformed or oversize frame closes only its own connection (reported
 * through the event callback) while the transport keeps serving.
 * Every loop below is bounded; each test ends with uv_loop_close() == 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "core.h"
#include "wire.h"

#define GOT_MAX 512u

struct end {
    struct raft_transport *t;
    struct raft_msg got[GOT_MAX];
    uint64_t groups[GOT_MAX];
    uint8_t data[GOT_MAX][64]; /* first entry's bytes */
    uint32_t got_count;
    uint32_t events;
    char last_reason[128];
};

static void on_recv(void *ctx, uint64_t group, const struct raft_msg *m)
{
    struct end *e = ctx;

    assert_true(e->got_count < GOT_MAX);
    e->got[e->got_count] = *m;
    e->got[e->got_count].entries = NULL;
    e->got[e->got_count].chunk = NULL;
    if (m->entry_count > 0 && m->entries[0].size <= 64)
        memcpy(e->data[e->got_count], m->entries[0].data, m->entries[0].size);
    e->groups[e->got_count++] = group;
}

static void on_event(void *ctx, raft_id peer, int status, const char *reason)
{
    struct end *e = ctx;

    (void)peer;
    (void)status;
    e->events++;
    snprintf(e->last_reason, sizeof(e->last_reason), "%s", reason);
}

static void start(uv_loop_t *loop, struct end *e, raft_id id, uint16_t port)
{
    struct raft_transport_options o = {.id = id, .host = "127.0.0.1", .port = port,
                                       .recv = on_recv, .event = on_event, .ctx = e};
    char errmsg[RAFT_ERRMSG_MAX] = "";

    if (raft_transport_start(loop, &o, &e->t, errmsg) != 0)
        fail_msg("start: %s", errmsg);
}

/* Run the loop until *count reaches want; bounded by rounds of 1 ms. */
static void run_until(uv_loop_t *loop, const uint32_t *count, uint32_t want)
{
    for (int i = 0; i < 5000 && *count < want; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_true(*count >= want);
}

static void finish(uv_loop_t *loop, struct end *a, struct end *b)
{
    raft_transport_stop(a->t);
    if (b != NULL)
        raft_transport_stop(b->t);
    for (int i = 0; i < 100; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_transport_messages_arrive_whole_and_in_order(void **state)
{
    uv_loop_t loop;
    static struct end a;
    static struct end b;
    uint8_t bytes[40];

    (void)state;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(uv_loop_init(&loop), 0);
    start(&loop, &a, 1, 0);
    start(&loop, &b, 2, 0);
    assert_int_equal(raft_transport_add_peer(a.t, 2, "127.0.0.1", raft_transport_port(b.t)), 0);
    assert_int_equal(raft_transport_add_peer(a.t, 2, "127.0.0.1", 1), -EEXIST);
    assert_int_equal(raft_transport_add_peer(a.t, 1, "127.0.0.1", 1), -EINVAL); /* itself */
    for (uint32_t k = 0; k < sizeof(bytes); k++) {
        bytes[k] = (uint8_t)(k * 3);
    }
    struct raft_entry ents[2] = {
        {.term = 3, .index = 8, .hlc_ns = 77, .type = RAFT_ENTRY_NORMAL, .size = 40, .data = bytes},
        {.term = 3, .index = 9, .hlc_ns = 78, .type = RAFT_ENTRY_CONFIG, .size = 0}};
    /* 300 messages over three groups in one turn, then more in the next */
    for (uint32_t i = 0; i < 300; i++) {
        struct raft_msg m = {.type = (uint8_t)(RAFT_MSG_PREVOTE + i % RAFT_MSG_TYPE_LAST),
                             .from = 1, .to = 2, .term = i, .index = 7, .log_term = 2,
                             .commit = 5, .read_seq = i * 2, .is_reject = i % 2 == 0,
                             .host_flags = i % 5};
        if (m.type == RAFT_MSG_APPEND) {
            m.entry_count = 2;
            m.entries = ents;
        }
        if (m.type == RAFT_MSG_SNAPSHOT) {
            m.chunk = bytes;
            m.chunk_size = 40;
            m.config = (struct raft_config){.voter_count = 2, .voters = {1, 2},
                                            .learner_count = 1, .learners = {9}};
            m.hlc_ns = 123;
        }
        assert_int_equal(raft_transport_send(a.t, i % 3, &m), 0);
        if (i == 150)
            raft_transport_flush(a.t);
    }
    raft_transport_flush(a.t);
    struct raft_msg nobody = {.type = RAFT_MSG_VOTE, .from = 1, .to = 5};
    assert_int_equal(raft_transport_send(a.t, 0, &nobody), -ENOENT);
    run_until(&loop, &b.got_count, 300);
    for (uint32_t i = 0; i < 300; i++) {
        const struct raft_msg *m = &b.got[i];
        assert_int_equal(m->term, i); /* in order */
        assert_int_equal(b.groups[i], i % 3);
        assert_int_equal(m->read_seq, i * 2);
        assert_int_equal(m->is_reject, i % 2 == 0);
        assert_int_equal(m->host_flags, i % 5); /* the host's, carried as sent */
        if (m->type == RAFT_MSG_APPEND) {
            assert_int_equal(m->entry_count, 2);
            assert_memory_equal(b.data[i], bytes, 40);
        }
        if (m->type == RAFT_MSG_SNAPSHOT) {
            assert_int_equal(m->chunk_size, 40);
            assert_int_equal(m->config.voter_count, 2);
            assert_int_equal(m->config.learners[0], 9);
            assert_int_equal(m->hlc_ns, 123);
        }
    }
    finish(&loop, &a, &b);
}

static void test_transport_reaches_a_peer_that_starts_late(void **state)
{
    uv_loop_t loop;
    static struct end a;
    static struct end b;

    (void)state;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(uv_loop_init(&loop), 0);
    /* find a free port, then leave it empty for a while */
    start(&loop, &b, 2, 0);
    uint16_t port = raft_transport_port(b.t);
    raft_transport_stop(b.t);
    for (int i = 0; i < 50; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    start(&loop, &a, 1, 0);
    assert_int_equal(raft_transport_add_peer(a.t, 2, "127.0.0.1", port), 0);
    run_until(&loop, &a.events, 2); /* refused, retried, refused */
    memset(&b, 0, sizeof(b));
    start(&loop, &b, 2, port);
    /* Raft sends again and again; so does this test, until one arrives */
    for (int i = 0; i < 3000 && b.got_count == 0; i++) {
        struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 1};
        raft_transport_send(a.t, 0, &m);
        raft_transport_flush(a.t);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_true(b.got_count > 0);
    finish(&loop, &a, &b);
}

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* A frame from a raw socket, and whether the transport closes it. */
static void bad_frame_closes_only_its_connection(const uint8_t *frame, size_t len,
                                                 const char *reason)
{
    uv_loop_t loop;
    static struct end a;
    static struct end b;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(uv_loop_init(&loop), 0);
    start(&loop, &a, 1, 0);
    start(&loop, &b, 2, 0);
    assert_int_equal(raft_transport_add_peer(a.t, 2, "127.0.0.1", raft_transport_port(b.t)), 0);
    int fd = raw_connect(raft_transport_port(b.t));
    assert_int_equal(write(fd, frame, len), (ssize_t)len);
    run_until(&loop, &b.events, 1);
    assert_non_null(strstr(b.last_reason, reason));
    char c;
    assert_int_equal(read(fd, &c, 1), 0); /* closed by the transport */
    close(fd);
    /* and it still serves its real peer */
    struct raft_msg m = {.type = RAFT_MSG_VOTE, .from = 1, .to = 2, .term = 4};
    assert_int_equal(raft_transport_send(a.t, 0, &m), 0);
    raft_transport_flush(a.t);
    run_until(&loop, &b.got_count, 1);
    assert_int_equal(b.got[0].term, 4);
    finish(&loop, &a, &b);
}

static void test_transport_malformed_frame_closes_its_connection(void **state)
{
    uint8_t junk[14] = {10, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

    (void)state;
    bad_frame_closes_only_its_connection(junk, sizeof(junk), "malformed");
}

static void test_transport_unknown_message_type_is_malformed(void **state)
{
    /* Batch{messages: [Message{type: 99, from: 1, to: 2}]} */
    uint8_t frame[] = {8, 0, 0, 0, 0x0a, 6, 0x10, 99, 0x18, 1, 0x20, 2};

    (void)state;
    bad_frame_closes_only_its_connection(frame, sizeof(frame), "malformed");
}

static void test_transport_oversize_frame_closes_its_connection(void **state)
{
    uint32_t len = RAFT_FRAME_BYTES_MAX + 1;
    uint8_t frame[4];

    (void)state;
    memcpy(frame, &len, 4);
    bad_frame_closes_only_its_connection(frame, sizeof(frame), "size bound");
}

static void count_msg(uint64_t group, const struct raft_msg *m, void *ctx)
{
    (void)group;
    /* what the decoder hands over stays within the limits */
    assert_true(m->entry_count <= RAFT_APPEND_ENTRIES_MAX);
    assert_true(m->chunk_size <= RAFT_CHUNK_BYTES_MAX);
    assert_true(m->config.voter_count <= RAFT_VOTERS_MAX);
    for (uint32_t i = 0; i < m->entry_count; i++) {
        assert_true(m->entries[i].size <= RAFT_ENTRY_BYTES_MAX);
    }
    (*(uint32_t *)ctx)++;
}

/* Random damage to a valid frame never crashes the decoder or hands over
 * a message past a limit (run under ASan and UBSan in CI). */
static void test_wire_decode_survives_mutated_frames(void **state)
{
    struct raft__frame f = {.buf = NULL};
    uint8_t bytes[300];
    struct raft_entry ents[3];
    uint64_t rng = 0x5eed;
    uint32_t decoded = 0;
    uint32_t refused = 0;

    (void)state;
    memset(bytes, 0xab, sizeof(bytes));
    for (int i = 0; i < 3; i++) {
        ents[i] = (struct raft_entry){.term = 2, .index = 10 + (raft_index)i, .hlc_ns = 5,
                                      .type = RAFT_ENTRY_NORMAL, .size = 100, .data = bytes};
    }
    struct raft_msg ap = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 2, .index = 9,
                          .entry_count = 3, .entries = ents};
    struct raft_msg sn = {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 2,
                          .chunk = bytes, .chunk_size = 200,
                          .config = {.voter_count = 3, .voters = {1, 2, 3}}};
    assert_int_equal(raft__wire_append(&f, 7, &ap), 0);
    assert_int_equal(raft__wire_append(&f, 8, &sn), 0);
    raft__wire_seal(&f);
    uint8_t *work = malloc(f.used);
    assert_non_null(work);
    for (uint32_t round = 0; round < 20000; round++) {
        size_t len = f.used - 4;
        memcpy(work, f.buf + 4, len);
        for (int k = 0; k < 1 + (int)(round % 4); k++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            work[rng % len] ^= (uint8_t)(rng >> 32);
        }
        if (round % 5 == 0)
            len = (size_t)(rng >> 40) % len; /* cut short too */
        int rc = raft__wire_decode(work, len, count_msg, &decoded);
        refused += rc != 0;
        assert_true(rc == 0 || rc == -EPROTO);
    }
    assert_true(refused > 1000);
    assert_true(decoded > 1000);
    free(work);
    raft_free(f.buf);
}

static void never_called(uint64_t group, const struct raft_msg *m, void *ctx)
{
    (void)group;
    (void)m;
    (void)ctx;
    fail_msg("a message of a frame past a count bound was handed over");
}

/* Counts are bounded before anything is unpacked: a frame of empty
 * messages, or a message of empty entries, is refused at its size (2 bytes
 * each), not after a hundred times that in allocations. */
static void test_wire_counts_are_bounded_before_unpacking(void **state)
{
    size_t n = RAFT_FRAME_MSGS_MAX + 1;
    uint8_t *frame = malloc(2 * n + 16);

    (void)state;
    assert_non_null(frame);
    for (size_t i = 0; i < n; i++) {
        frame[2 * i] = 0x0a; /* Message, 0 bytes */
        frame[2 * i + 1] = 0;
    }
    assert_int_equal(raft__wire_decode(frame, 2 * n, never_called, NULL), -EPROTO);
    /* one Message holding RAFT_APPEND_ENTRIES_MAX + 1 empty entries (field 15) */
    size_t e = RAFT_APPEND_ENTRIES_MAX + 1;
    size_t body = 2 * e;
    uint8_t *msg = malloc(body + 16);
    assert_non_null(msg);
    size_t at = 0;
    msg[at++] = 0x0a;
    for (uint64_t v = body; ; v >>= 7) { /* varint length */
        msg[at++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    for (size_t i = 0; i < e; i++) {
        msg[at++] = 0x7a; /* field 15, length-delimited */
        msg[at++] = 0;
    }
    assert_int_equal(raft__wire_decode(msg, at, never_called, NULL), -EPROTO);
    free(msg);
    free(frame);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transport_messages_arrive_whole_and_in_order),
        cmocka_unit_test(test_transport_reaches_a_peer_that_starts_late),
        cmocka_unit_test(test_transport_malformed_frame_closes_its_connection),
        cmocka_unit_test(test_transport_unknown_message_type_is_malformed),
        cmocka_unit_test(test_transport_oversize_frame_closes_its_connection),
        cmocka_unit_test(test_wire_decode_survives_mutated_frames),
        cmocka_unit_test(test_wire_counts_are_bounded_before_unpacking),
    };
    return cmocka_run_group_tests_name("test_transport", tests, NULL, NULL);
}
