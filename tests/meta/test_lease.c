/* tests/meta/test_lease.c - the leader's table of attribute leases.
 * Goal: a promise is kept until taken or two rotations pass, and only then;
 * taking one inode leaves every other promise findable (the table shifts
 * entries back after a removal); a full table refuses instead of growing
 * past its bound.
 * Method: random grants, takes and rotations checked against a plain model
 * (two arrays of masks indexed by inode); inodes crowd a small key range so
 * that probe runs are long and wrap around the table. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"

#define INOS 5000u

static void test_lease_matches_a_model(void **state)
{
    static uint64_t model[2][INOS + 1]; /* [0] the newer generation */
    struct lease_table *t = lease_table_new(1u << 20);
    uint64_t rng = 12345;

    (void)state;
    assert_non_null(t);
    memset(model, 0, sizeof(model));
    for (int step = 0; step < 400000; step++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(rng >> 33);
        uint64_t ino = 1 + r % INOS;
        uint32_t holder = (r >> 16) % LEASE_HOLDERS_MAX;
        switch (r % 10) {
        case 0:
        case 1:
        case 2:
        case 3:
        case 4:
            assert_true(lease_grant(t, ino, holder));
            model[0][ino] |= 1ull << holder;
            break;
        case 5:
            /* a look leaves the promises */
            assert_int_equal(lease_holders(t, ino), model[0][ino] | model[1][ino]);
            break;
        case 6:
        case 7:
        case 8:
            assert_int_equal(lease_take(t, ino), model[0][ino] | model[1][ino]);
            model[0][ino] = model[1][ino] = 0;
            break;
        default:
            if (r % 997 == 0) { /* now and then */
                lease_rotate(t);
                memcpy(model[1], model[0], sizeof(model[0]));
                memset(model[0], 0, sizeof(model[0]));
            }
            break;
        }
    }
    bool is_empty = true;
    for (uint64_t ino = 1; ino <= INOS; ino++) {
        assert_int_equal(lease_take(t, ino), model[0][ino] | model[1][ino]);
        is_empty = is_empty && lease_take(t, ino) == 0;
    }
    assert_true(is_empty);
    assert_true(lease_is_empty(t));
    assert_int_equal(lease_take(t, 0), 0);
    assert_false(lease_grant(t, 0, 1));                 /* no inode is numbered 0 */
    assert_false(lease_grant(t, 7, LEASE_HOLDERS_MAX)); /* no such holder */
    lease_table_free(t);
}

static void test_lease_rotation_and_bound(void **state)
{
    struct lease_table *t = lease_table_new(1000);

    (void)state;
    assert_non_null(t);
    for (uint64_t ino = 1; ino <= 1000; ino++) {
        assert_true(lease_grant(t, ino, 3));
    }
    assert_false(lease_grant(t, 5000, 3)); /* full: refused */
    assert_true(lease_grant(t, 17, 4));    /* one already there takes another holder */
    lease_rotate(t);                       /* kept, one generation older */
    assert_true(lease_grant(t, 5000, 3));
    assert_int_equal(lease_take(t, 17), (1ull << 3) | (1ull << 4));
    lease_rotate(t); /* the first thousand are gone now */
    assert_int_equal(lease_take(t, 18), 0);
    assert_int_equal(lease_take(t, 5000), 1ull << 3);
    assert_true(lease_is_empty(t));
    assert_true(lease_grant(t, 9, 0));
    lease_clear(t);
    assert_true(lease_is_empty(t));
    assert_int_equal(lease_take(t, 9), 0);
    lease_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_matches_a_model),
        cmocka_unit_test(test_lease_rotation_and_bound),
    };
    return cmocka_run_group_tests_name("test_lease", tests, NULL, NULL);
}
