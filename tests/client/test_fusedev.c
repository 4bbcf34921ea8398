/* tests/client/test_fusedev.c - the FUSE device functions (client/fusedev.c)
 * over a socket pair standing in for /dev/fuse: an INIT reply gains the
 * parallel-lookups flag when the kernel offered it, and passthrough (in
 * flags2, with a stack depth) when also asked for; an open answered in
 * passthrough has the wire's layout; nothing else that passes through
 * changes by a byte. */
#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

#define OP_INIT       26u
#define OP_LOOKUP     1u
#define PARALLEL      (1u << 18)
#define ASYNC_READ    (1u << 0)
#define WRITEBACK     (1u << 16)
#define INIT_EXT      (1u << 30)
#define PASSTHROUGH2  (1u << 5)  /* FUSE_PASSTHROUGH (1 << 37) in flags2 */

struct pair {
    int kernel; /* the test's end: what the kernel writes and reads */
    int dev;    /* the end the functions read and write */
};

static int setup(void **state)
{
    static struct pair p;
    int fds[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds), 0);
    p = (struct pair){.kernel = fds[0], .dev = fds[1]};
    *state = &p;
    return 0;
}

static int teardown(void **state)
{
    struct pair *p = *state;

    close(p->kernel);
    close(p->dev);
    return 0;
}

/* The kernel sends a request: a 40-byte header, then 16 bytes of body
 * whose u32 at 12 is INIT's flags. */
static void kernel_sends(struct pair *p, uint32_t op, uint64_t unique, uint32_t flags)
{
    uint8_t req[56] = {0};
    uint32_t len = sizeof(req);
    uint8_t buf[256];

    memcpy(req, &len, 4);
    memcpy(req + 4, &op, 4);
    memcpy(req + 8, &unique, 8);
    memcpy(req + 40 + 12, &flags, 4);
    assert_int_equal(write(p->kernel, req, sizeof(req)), sizeof(req));
    assert_int_equal(fusedev_io()->read(p->dev, buf, sizeof(buf), NULL), sizeof(req));
    assert_memory_equal(buf, req, sizeof(req));
}

/* The file system answers unique with a 64-byte body whose u32 at 12 is
 * flags; returns the flags the kernel got, and checks every other byte. */
static uint32_t fs_answers(struct pair *p, uint64_t unique, int32_t error, uint32_t flags)
{
    uint8_t head[16] = {0};
    uint8_t body[64];
    uint32_t len = sizeof(head) + sizeof(body);
    uint8_t got[128];
    uint32_t got_flags;

    for (size_t i = 0; i < sizeof(body); i++) {
        body[i] = (uint8_t)(i * 7 + 1);
    }
    memcpy(body + 12, &flags, 4);
    memcpy(head, &len, 4);
    memcpy(head + 4, &error, 4);
    memcpy(head + 8, &unique, 8);
    struct iovec iov[2] = {{head, sizeof(head)}, {body, sizeof(body)}};
    assert_int_equal(fusedev_io()->writev(p->dev, iov, 2, NULL), len);
    assert_int_equal(read(p->kernel, got, sizeof(got)), len);
    assert_memory_equal(got, head, sizeof(head));
    memcpy(&got_flags, got + 16 + 12, 4);
    memcpy(got + 16 + 12, &flags, 4);
    assert_memory_equal(got + 16, body, sizeof(body)); /* the rest as written */
    return got_flags;
}

static void test_init_reply_gains_the_flag_the_kernel_offered(void **state)
{
    struct pair *p = *state;

    kernel_sends(p, OP_INIT, 2, PARALLEL | ASYNC_READ);
    assert_int_equal(fs_answers(p, 2, 0, ASYNC_READ), PARALLEL | ASYNC_READ);
    /* once: a later reply with the same unique is not an INIT's */
    assert_int_equal(fs_answers(p, 2, 0, ASYNC_READ), ASYNC_READ);
}

static void test_other_traffic_passes_unchanged(void **state)
{
    struct pair *p = *state;

    /* not offered by the kernel: not added */
    kernel_sends(p, OP_INIT, 4, ASYNC_READ);
    assert_int_equal(fs_answers(p, 4, 0, ASYNC_READ), ASYNC_READ);
    /* another request's reply, while an INIT waits for its own */
    kernel_sends(p, OP_INIT, 6, PARALLEL);
    kernel_sends(p, OP_LOOKUP, 8, PARALLEL);
    assert_int_equal(fs_answers(p, 8, 0, ASYNC_READ), ASYNC_READ);
    /* an INIT refused keeps its reply as it was */
    assert_int_equal(fs_answers(p, 6, -71, 0), 0);
    /* short requests and single-buffer replies go through as they are */
    uint8_t small[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t buf[64];
    assert_int_equal(write(p->kernel, small, sizeof(small)), sizeof(small));
    assert_int_equal(fusedev_io()->read(p->dev, buf, sizeof(buf), NULL), sizeof(small));
    struct iovec one = {small, sizeof(small)};
    assert_int_equal(fusedev_io()->writev(p->dev, &one, 1, NULL), sizeof(small));
    assert_int_equal(read(p->kernel, buf, sizeof(buf)), sizeof(small));
    assert_memory_equal(buf, small, sizeof(small));
}

/* INIT as a kernel of 7.40 sends it: a 64-byte fuse_init_in, flags at 12
 * and flags2 at 16. */
static void kernel_sends_init(struct pair *p, uint64_t unique, uint32_t flags, uint32_t flags2)
{
    uint8_t req[104] = {0};
    uint32_t len = sizeof(req);
    uint32_t op = OP_INIT;
    uint8_t buf[256];

    memcpy(req, &len, 4);
    memcpy(req + 4, &op, 4);
    memcpy(req + 8, &unique, 8);
    memcpy(req + 40 + 12, &flags, 4);
    memcpy(req + 40 + 16, &flags2, 4);
    assert_int_equal(write(p->kernel, req, sizeof(req)), sizeof(req));
    assert_int_equal(fusedev_io()->read(p->dev, buf, sizeof(buf), NULL), sizeof(req));
}

/* The file system answers an INIT (a zeroed 64-byte fuse_init_out but for
 * flags): the flags, flags2 and max_stack_depth the kernel got. */
static void fs_answers_init(struct pair *p, uint64_t unique, uint32_t flags, uint32_t got[3])
{
    uint8_t head[16] = {0};
    uint8_t body[64] = {0};
    uint32_t len = sizeof(head) + sizeof(body);
    uint8_t out[128];

    memcpy(body + 12, &flags, 4);
    memcpy(head, &len, 4);
    memcpy(head + 8, &unique, 8);
    struct iovec iov[2] = {{head, sizeof(head)}, {body, sizeof(body)}};
    assert_int_equal(fusedev_io()->writev(p->dev, iov, 2, NULL), len);
    assert_int_equal(read(p->kernel, out, sizeof(out)), len);
    memcpy(&got[0], out + 16 + 12, 4);
    memcpy(&got[1], out + 16 + 32, 4);
    memcpy(&got[2], out + 16 + 36, 4);
}

static void test_passthrough_offered_asked_for_and_answered(void **state)
{
    struct pair *p = *state;
    uint32_t got[3];

    /* offered, not asked for: flags2 untouched */
    fusedev_want_passthrough(false);
    kernel_sends_init(p, 10, INIT_EXT | PARALLEL, PASSTHROUGH2);
    fs_answers_init(p, 10, ASYNC_READ, got);
    assert_int_equal(got[0], ASYNC_READ | PARALLEL);
    assert_int_equal(got[1], 0);
    assert_false(fusedev_passthrough());
    /* asked for, but the reply keeps the kernel's writeback cache, which
     * passthrough cannot sit beside */
    fusedev_want_passthrough(true);
    kernel_sends_init(p, 12, INIT_EXT | PARALLEL, PASSTHROUGH2);
    fs_answers_init(p, 12, WRITEBACK, got);
    assert_int_equal(got[1], 0);
    assert_false(fusedev_passthrough());
    /* asked for and offered: flags2 and a stack depth of 1, which the
     * kernel reads only beside INIT_EXT */
    kernel_sends_init(p, 14, INIT_EXT | PARALLEL, PASSTHROUGH2);
    fs_answers_init(p, 14, ASYNC_READ, got);
    assert_int_equal(got[0], ASYNC_READ | PARALLEL | INIT_EXT);
    assert_int_equal(got[1], PASSTHROUGH2);
    assert_int_equal(got[2], 1);
    assert_true(fusedev_passthrough());
    /* passthrough offered without parallel lookups: only what was offered */
    kernel_sends_init(p, 15, INIT_EXT, PASSTHROUGH2);
    fs_answers_init(p, 15, ASYNC_READ, got);
    assert_int_equal(got[0], ASYNC_READ | INIT_EXT);
    assert_int_equal(got[1], PASSTHROUGH2);
    /* an open in passthrough: fuse_out_header then fuse_open_out (fh,
     * open_flags: PASSTHROUGH | NOFLUSH [| DIRECT_IO], backing_id) */
    uint8_t out[64];
    uint64_t unique = 0;
    uint64_t fh = 0;
    uint32_t u32 = 0;
    int32_t id = 0;
    for (int direct = 0; direct < 2; direct++) {
        assert_int_equal(fusedev_reply_passthrough(16, 0x1122334455667788ull, 7, direct == 1), 0);
        assert_int_equal(read(p->kernel, out, sizeof(out)), 32);
        memcpy(&u32, out, 4);
        assert_int_equal(u32, 32);
        memcpy(&id, out + 4, 4);
        assert_int_equal(id, 0);
        memcpy(&unique, out + 8, 8);
        assert_int_equal(unique, 16);
        memcpy(&fh, out + 16, 8);
        assert_int_equal(fh, 0x1122334455667788ull);
        memcpy(&u32, out + 24, 4);
        assert_int_equal(u32, (1u << 7) | (1u << 5) | (direct == 1 ? 1u : 0u));
        memcpy(&id, out + 28, 4);
        assert_int_equal(id, 7);
    }
    /* not a device: registering a backing file is refused, and said so */
    assert_true(fusedev_backing_open(p->kernel) < 0);
    fusedev_want_passthrough(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_reply_gains_the_flag_the_kernel_offered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_other_traffic_passes_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passthrough_offered_asked_for_and_answered, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
