/* tests/jepsen/test_checker.c - the linearizability checker (jepsen/checker.c).
 * Goal: it accepts every history a real atomic register can produce and
 * finds planted anomalies: a stale read, a value never written, a lost
 * write, a cas that succeeded twice from one value, a read that goes back
 * in time, a directory listing that lost a name or shows an unlinked one,
 * a name created twice; indeterminate operations may take effect late or
 * never; keys are checked apart; reads allowed to be stale are decided
 * without trying every place of each; the history parser refuses malformed
 * lines.
 * Method: crafted histories, and random histories from a simulated atomic
 * register (each op takes effect at a random instant inside its interval),
 * then one result of them corrupted. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checker.h"

#define W(p, k, v, a, b) {.process = p, .fn = JK_WRITE, .key = k, .value = v, .kind = JK_OK, \
                          .invoke = a, .complete = b}
#define R(p, k, v, a, b) {.process = p, .fn = JK_READ, .key = k, .value = v, .kind = JK_OK, \
                          .invoke = a, .complete = b}

static bool linearizable(const struct jk_op *ops, size_t n, struct jk_result *r)
{
    assert_int_equal(jk_check(ops, n, r), 0);
    return r->is_linearizable;
}

static void test_checker_crafted_histories(void **state)
{
    (void)state;
    struct jk_result r;

    /* sequential: write 1, read 1 */
    const struct jk_op seq[] = {W(1, 1, 1, 0, 1), R(2, 1, 1, 2, 3)};
    assert_true(linearizable(seq, 2, &r));
    /* a stale read: 1 then 2 written, then 1 read */
    const struct jk_op stale[] = {W(1, 1, 1, 0, 1), W(1, 1, 2, 2, 3), R(2, 1, 1, 4, 5)};
    assert_false(linearizable(stale, 3, &r));
    assert_int_equal(r.op, 2);
    /* a read concurrent with a write may see either */
    const struct jk_op conc_old[] = {W(1, 1, 1, 0, 1), W(1, 1, 2, 2, 6), R(2, 1, 1, 3, 5)};
    const struct jk_op conc_new[] = {W(1, 1, 1, 0, 1), W(1, 1, 2, 2, 6), R(2, 1, 2, 3, 5)};
    assert_true(linearizable(conc_old, 3, &r));
    assert_true(linearizable(conc_new, 3, &r));
    /* ... but two reads cannot see new then old */
    const struct jk_op back[] = {W(1, 1, 1, 0, 1), W(1, 1, 2, 2, 9), R(2, 1, 2, 3, 4),
                                 R(3, 1, 1, 5, 6)};
    assert_false(linearizable(back, 4, &r));
    /* a value never written */
    const struct jk_op ghost[] = {W(1, 1, 1, 0, 1), R(2, 1, 7, 2, 3)};
    assert_false(linearizable(ghost, 2, &r));
    /* the initial value is 0 */
    const struct jk_op init[] = {R(2, 1, 0, 0, 1), W(1, 1, 5, 2, 3)};
    assert_true(linearizable(init, 2, &r));
    /* a lost acknowledged write: read after it sees the old value */
    const struct jk_op lost[] = {W(1, 1, 1, 0, 1), W(2, 1, 2, 2, 3), R(3, 1, 1, 10, 11)};
    assert_false(linearizable(lost, 3, &r));
    /* an indeterminate write may apply late ... */
    struct jk_op late[] = {W(1, 1, 1, 0, 1), W(2, 1, 2, 2, 0), R(3, 1, 1, 10, 11),
                           R(3, 1, 2, 12, 13)};
    late[1].kind = JK_INFO;
    assert_true(linearizable(late, 4, &r));
    /* ... or never */
    struct jk_op never[] = {W(1, 1, 1, 0, 1), W(2, 1, 2, 2, 0), R(3, 1, 1, 10, 11)};
    never[1].kind = JK_INFO;
    assert_true(linearizable(never, 3, &r));
    /* but not before it was invoked */
    struct jk_op early[] = {W(1, 1, 1, 0, 1), R(3, 1, 2, 2, 3), W(2, 1, 2, 5, 0)};
    early[2].kind = JK_INFO;
    assert_false(linearizable(early, 3, &r));
    /* a failed write never applied */
    struct jk_op failed[] = {W(1, 1, 1, 0, 1), W(2, 1, 2, 2, 3), R(3, 1, 2, 4, 5)};
    failed[1].kind = JK_FAIL;
    assert_false(linearizable(failed, 3, &r));
    /* keys apart: each fine alone is fine together; one bad key is found */
    const struct jk_op keys[] = {W(1, 1, 1, 0, 1), W(1, 2, 5, 0, 1), R(2, 2, 5, 2, 3),
                                 R(2, 1, 1, 2, 3), R(3, 3, 9, 4, 5)};
    assert_false(linearizable(keys, 5, &r));
    assert_int_equal(r.key, 3);
    assert_true(linearizable(keys, 4, &r));
}

static void test_checker_cas_counter(void **state)
{
    (void)state;
    struct jk_result r;
    struct jk_op ops[] = {
        {.process = 1, .fn = JK_CAS, .key = 1, .value = 0, .value2 = 1, .kind = JK_OK,
         .invoke = 0, .complete = 5},
        {.process = 2, .fn = JK_CAS, .key = 1, .value = 0, .value2 = 1, .kind = JK_OK,
         .is_refused = true, .invoke = 1, .complete = 6},
        {.process = 3, .fn = JK_CAS, .key = 1, .value = 1, .value2 = 2, .kind = JK_OK,
         .invoke = 7, .complete = 8},
        R(4, 1, 2, 9, 10),
    };
    /* two increments from 0, one lost the race: fine */
    assert_true(linearizable(ops, 4, &r));
    /* both succeeded from 0: the counter was incremented twice from one value */
    ops[1].is_refused = false;
    assert_false(linearizable(ops, 4, &r));
    /* a failed cas that must have seen 0 (nothing else was ever there) */
    ops[1].is_refused = true;
    ops[0].kind = JK_FAIL;
    ops[2].kind = JK_FAIL;
    ops[3].value = 0;
    assert_false(linearizable(ops, 4, &r));
}

/* A simulated atomic register: each op takes effect at a random instant in
 * its interval; results are what the register held then. */
static size_t random_history(struct jk_op *ops, size_t n, uint64_t seed, uint32_t procs)
{
    struct {
        uint64_t at;
        size_t op;
    } *fx = calloc(n, sizeof(*fx));
    uint64_t t = 0;

    assert_non_null(fx);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(seed >> 33);
        ops[i] = (struct jk_op){.process = r % procs, .key = 1 + (r >> 8) % 3,
                                .fn = (r >> 12) % 3 == 0 ? JK_WRITE
                                      : (r >> 12) % 3 == 1 ? JK_READ : JK_CAS,
                                .kind = JK_OK, .invoke = t, .value = (r >> 16) % 4,
                                .value2 = (r >> 20) % 4};
        if (ops[i].key == 3) /* a directory: names 0..3 made, removed, renamed, listed */
            ops[i].fn = (r >> 12) % 4 == 0 ? JK_ADD : (r >> 12) % 4 == 1 ? JK_READ
                        : (r >> 12) % 4 == 2 ? JK_REMOVE : JK_MOVE;
        t += 1 + (r >> 24) % 3;
        ops[i].complete = ops[i].invoke + 1 + (r >> 26) % (procs * 4);
        fx[i].at = ops[i].invoke + (r % (ops[i].complete - ops[i].invoke + 1));
        fx[i].op = i;
    }
    /* apply in effect order (stable by index for equal instants) */
    for (size_t i = 1; i < n; i++) {
        for (size_t k = i; k > 0 && (fx[k - 1].at > fx[k].at ||
                                     (fx[k - 1].at == fx[k].at && fx[k - 1].op > fx[k].op));
             k--) {
            __typeof__(fx[0]) tmp = fx[k];
            fx[k] = fx[k - 1];
            fx[k - 1] = tmp;
        }
    }
    int64_t reg[4] = {0};
    for (size_t i = 0; i < n; i++) {
        struct jk_op *o = &ops[fx[i].op];
        int64_t *v = &reg[o->key];
        if (o->fn == JK_ADD || o->fn == JK_REMOVE) {
            int64_t bit = (int64_t)1 << o->value;
            o->is_refused = ((*v & bit) != 0) == (o->fn == JK_ADD);
            if (!o->is_refused)
                *v ^= bit;
        } else if (o->fn == JK_MOVE) {
            o->is_refused = (*v & ((int64_t)1 << o->value)) == 0;
            if (!o->is_refused)
                *v = (*v & ~((int64_t)1 << o->value)) | ((int64_t)1 << o->value2);
        } else if (o->fn == JK_WRITE) {
            *v = o->value;
        } else if (o->fn == JK_READ) {
            o->value = *v;
        } else if (*v == o->value) {
            *v = o->value2;
        } else {
            o->is_refused = true;
        }
    }
    free(fx);
    return n;
}

static void test_checker_random_atomic_histories(void **state)
{
    (void)state;
    enum { N = 2000 };
    struct jk_op *ops = calloc(N, sizeof(*ops));
    struct jk_result r;
    uint32_t caught = 0;
    uint32_t planted = 0;

    assert_non_null(ops);
    for (uint64_t seed = 1; seed <= 40; seed++) {
        random_history(ops, N, seed, 3 + (uint32_t)(seed % 4));
        assert_true(linearizable(ops, N, &r));
        /* plant: a read reports a value nobody wrote */
        for (size_t i = 0; i < N; i++) {
            if (ops[i].fn == JK_READ) {
                ops[i].value = 99;
                planted++;
                caught += !linearizable(ops, N, &r);
                break;
            }
        }
    }
    assert_int_equal(caught, planted);
    free(ops);
}

/* Reads allowed to be stale (jepsen/worker --stale-ms) are written down as
 * invoked earlier; here every read's window opens at 0, so each overlaps
 * every other operation. Such histories are still accepted, and a planted
 * read that completes before anyone could have put the value it saw is
 * found without trying every place of every read before it (a search that
 * did so ran out of memory on the histories of real runs). */
static void test_checker_stale_reads(void **state)
{
    (void)state;
    enum { N = 2000 };
    struct jk_op *ops = calloc(N, sizeof(*ops));
    struct jk_result r;

    assert_non_null(ops);
    for (uint64_t seed = 1; seed <= 10; seed++) {
        random_history(ops, N, seed, 3 + (uint32_t)(seed % 4));
        for (size_t i = 0; i < N; i++) {
            if (ops[i].fn == JK_READ)
                ops[i].invoke = 0;
        }
        assert_true(linearizable(ops, N, &r));
        /* plant: a read of register 1 completes before anyone could have put
         * the value it saw */
        uint64_t first_put[4] = {0, UINT64_MAX, UINT64_MAX, UINT64_MAX};
        for (size_t i = 0; i < N; i++) {
            bool puts = ops[i].fn == JK_WRITE || (ops[i].fn == JK_CAS && !ops[i].is_refused);
            int64_t v = ops[i].fn == JK_WRITE ? ops[i].value : ops[i].value2;
            if (ops[i].key == 1 && puts && ops[i].invoke < first_put[v])
                first_put[v] = ops[i].invoke;
        }
        size_t planted = N;
        for (size_t i = 0; i < N && planted == N; i++) {
            if (ops[i].key == 1 && ops[i].fn == JK_READ && ops[i].value != 0 &&
                first_put[ops[i].value] >= 1)
                planted = i;
        }
        assert_true(planted < N);
        ops[planted].complete = first_put[ops[planted].value] - 1;
        assert_false(linearizable(ops, N, &r));
        assert_int_equal(r.key, 1);
    }
    free(ops);
}

#define OP(p, f, k, v, a, b) {.process = p, .fn = f, .key = k, .value = v, .kind = JK_OK, \
                              .invoke = a, .complete = b}

static void test_checker_directory_as_a_set(void **state)
{
    (void)state;
    struct jk_result r;
    /* create a, create a again (EEXIST), list {a}, unlink a, unlink again (ENOENT), list {} */
    struct jk_op seq[] = {OP(1, JK_ADD, 9, 0, 0, 1), OP(2, JK_ADD, 9, 0, 2, 3),
                          OP(1, JK_READ, 9, 1, 4, 5), OP(1, JK_REMOVE, 9, 0, 6, 7),
                          OP(2, JK_REMOVE, 9, 0, 8, 9), OP(3, JK_READ, 9, 0, 10, 11)};
    seq[1].is_refused = true;
    seq[4].is_refused = true;
    assert_true(linearizable(seq, 6, &r));
    /* two creates of one name both succeed */
    struct jk_op twice[] = {OP(1, JK_ADD, 9, 2, 0, 5), OP(2, JK_ADD, 9, 2, 1, 6)};
    assert_false(linearizable(twice, 2, &r));
    twice[1].is_refused = true; /* one of them found it: fine */
    assert_true(linearizable(twice, 2, &r));
    /* a listing that lost a name created before it */
    const struct jk_op lost[] = {OP(1, JK_ADD, 9, 0, 0, 1), OP(2, JK_ADD, 9, 1, 2, 3),
                                 OP(3, JK_READ, 9, 2, 4, 5)};
    assert_false(linearizable(lost, 3, &r));
    /* a name back after its unlink completed */
    const struct jk_op back[] = {OP(1, JK_ADD, 9, 0, 0, 1), OP(1, JK_REMOVE, 9, 0, 2, 3),
                                 OP(3, JK_READ, 9, 1, 4, 5)};
    assert_false(linearizable(back, 3, &r));
    /* rename a over b: a gone, b there (it was already); rename of a gone name refused */
    struct jk_op mv[] = {OP(1, JK_ADD, 9, 0, 0, 1), OP(1, JK_ADD, 9, 1, 2, 3),
                         OP(2, JK_MOVE, 9, 0, 4, 5), OP(3, JK_READ, 9, 2, 6, 7),
                         OP(2, JK_MOVE, 9, 0, 8, 9)};
    mv[2].value2 = 1;
    mv[4].value2 = 3;
    mv[4].is_refused = true;
    assert_true(linearizable(mv, 5, &r));
    mv[3].value = 3; /* a listing that still shows the old name beside the new */
    assert_false(linearizable(mv, 5, &r));
    mv[3].value = 2;
    mv[4].is_refused = false; /* a rename of a name no longer there succeeds */
    assert_false(linearizable(mv, 5, &r));
    /* a name out of the model's 64 is refused whole */
    const struct jk_op wide[] = {OP(1, JK_ADD, 9, 64, 0, 1)};
    assert_int_equal(jk_check(wide, 1, &r), -EINVAL);
}

static void test_checker_parses_lines(void **state)
{
    (void)state;
    struct jk_op op;

    assert_int_equal(jk_parse_line("17 21 3 ok cas 7 1 2", &op), 0);
    assert_int_equal(op.fn, JK_CAS);
    assert_int_equal(op.value2, 2);
    assert_int_equal(op.complete, 21);
    assert_int_equal(jk_parse_line("5 9 1 ok cas! 7 1 2", &op), 0);
    assert_true(op.is_refused);
    assert_int_equal(jk_parse_line("5 - 1 info write 7 4", &op), 0);
    assert_int_equal(op.kind, JK_INFO);
    assert_int_equal(jk_parse_line("5 9 1 fail read 7 0", &op), 0);
    assert_int_equal(jk_parse_line("5 9 1 ok remove! 7 3", &op), 0);
    assert_int_equal(op.fn, JK_REMOVE);
    assert_true(op.is_refused);
    assert_int_equal(jk_parse_line("5 9 1 ok move 7 3 4", &op), 0);
    assert_int_equal(op.fn, JK_MOVE);
    assert_int_equal(op.value2, 4);
    static const char *const bad[] = {
        "", "5", "5 9 1 ok", "5 9 1 ok read", "5 9 1 ok read 7", "5 9 1 maybe read 7 0",
        "5 9 1 ok frob 7 0", "5 - 1 ok read 7 0", "9 5 1 ok read 7 0", "5 9 1 ok cas 7 1",
        "5 9x 1 ok read 7 0", "5 9 1 info read 7 0", "5 9 1 ok read! 7 0", "5 9 1 ok add!! 7 0",
        "5 9 1 ok move 7 3",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(jk_parse_line(bad[i], &op), -EINVAL);
    }
    /* bad ops are refused whole */
    struct jk_op backwards = R(1, 1, 0, 5, 2);
    struct jk_result r;
    assert_int_equal(jk_check(&backwards, 1, &r), -EINVAL);
}

/* Run jepsen/check on text; its exit status, its output in out. */
static int run_check(const char *text, char *out, size_t cap)
{
    char dir[] = "/tmp/arbor-check.XXXXXX";
    char path[64];
    char cmd[512];

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/history", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "'%s/jepsen/check' '%s' 2>&1", getenv("ARBOR_BUILD_ROOT"), path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(path);
    rmdir(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_checker_command(void **state)
{
    (void)state;
    char out[4096];

    assert_int_equal(run_check("# a register\n0 1 1 ok write 1 5\n\n2 3 2 ok read 1 5\n", out,
                               sizeof(out)), 0);
    assert_non_null(strstr(out, "linearizable: 2 operations"));
    assert_int_equal(run_check("0 1 1 ok write 1 5\n2 9 1 ok write 1 6\n3 4 2 ok read 1 6\n"
                               "5 6 3 ok read 1 5\n7 8 9 ok write 2 1\n", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "NOT linearizable: key 1"));
    assert_non_null(strstr(out, "  5 6 3 ok read 1 5\n")); /* the read that went back */
    assert_non_null(strstr(out, "> 5 6 3 ok read 1 5\n"));  /* ... marked in its window */
    assert_non_null(strstr(out, "leaves the key at 6 before it")); /* why it cannot be placed */
    assert_non_null(strstr(out, "  2 9 1 ok write 1 6\n")); /* what overlaps it */
    assert_non_null(strstr(out, "  0 1 1 ok write 1 5\n")); /* what came before it */
    assert_null(strstr(out, "7 8 9")); /* another key's */
    /* said in words: a value nobody wrote, a name nobody made, a write the last read lost */
    assert_int_equal(run_check("0 1 1 ok write 1 5\n2 3 2 ok read 1 7\n", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "a value never written:\n  2 3 2 ok read 1 7\n"));
    assert_int_equal(run_check("0 1 1 ok add 4 2\n2 3 2 ok read 4 12\n", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "a name never made: n3 in\n"));
    assert_int_equal(run_check("0 1 1 ok write 1 5\n2 3 1 ok write 1 6\n4 5 2 ok read 1 6\n"
                               "6 7 2 ok read 1 5\n", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "an acknowledged write lost: the key's last read\n"
                                "  6 7 2 ok read 1 5\nshows an older value than\n"
                                "  2 3 1 ok write 1 6\n"));
    /* a write still open (info) may land late: not lost, and its value is no invention */
    assert_int_equal(run_check("0 1 1 ok write 1 5\n2 - 1 info write 1 6\n4 5 2 ok read 1 6\n"
                               "6 7 2 ok read 1 6\n", out, sizeof(out)), 0);
    assert_int_equal(run_check("0 1 1 ok frob 1 5\n", out, sizeof(out)), 2);
    assert_non_null(strstr(out, ":1: not an operation"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_crafted_histories),
        cmocka_unit_test(test_checker_cas_counter),
        cmocka_unit_test(test_checker_random_atomic_histories),
        cmocka_unit_test(test_checker_stale_reads),
        cmocka_unit_test(test_checker_directory_as_a_set),
        cmocka_unit_test(test_checker_command),
        cmocka_unit_test(test_checker_parses_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
