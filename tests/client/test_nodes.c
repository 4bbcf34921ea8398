/* tests/client/test_nodes.c - which node id the kernel gets a file under
 * (client/nodes.c): its inode number, unless it may keep a name of that
 * file from before the file's names changed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "internal.h"
#include "meta.h"

#define KEEP_MS 1000u

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct meta_attr file(uint64_t ino, int64_t ctime_ns)
{
    return (struct meta_attr){.ino = ino, .mode = S_IFREG | 0644, .nlink = 1, .ctime_ns = ctime_ns};
}

static uint64_t entry(struct nodes *n, uint64_t parent, const char *name, const struct meta_attr *a,
                      bool is_new)
{
    return nodes_entry(n, parent, name, strlen(name), a, KEEP_MS, is_new);
}

static void test_nodes_directories_and_old_files_keep_their_numbers(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    struct meta_attr dir = {.ino = 7, .mode = S_IFDIR | 0755, .nlink = 2, .ctime_ns = now_ns()};
    struct meta_attr old = file(8, now_ns() - 3600ll * 1000000000);

    assert_non_null(n);
    assert_int_equal(entry(n, 1, "d", &dir, false), 7);
    assert_int_equal(entry(n, 1, "renamed-d", &dir, false), 7);
    /* changed an hour ago: every name the kernel keeps came after */
    assert_int_equal(entry(n, 1, "a", &old, false), 8);
    assert_int_equal(entry(n, 1, "b", &old, false), 8);
    assert_int_equal(nodes_ino(n, 8), 8);
    nodes_free(n);
    /* without a table, inode numbers only */
    assert_int_equal(nodes_entry(NULL, 1, "a", 1, &old, KEEP_MS, false), 8);
    assert_int_equal(nodes_ino(NULL, 8), 8);
}

static void test_nodes_a_rename_elsewhere_gets_an_alias(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    int64_t t = now_ns();
    struct meta_attr made = file(20, t);
    struct meta_attr renamed = file(20, t + 1000);

    /* made here: the kernel can know no other name of it */
    assert_int_equal(entry(n, 1, "a", &made, true), 20);
    assert_int_equal(entry(n, 1, "a", &made, false), 20);
    /* renamed on another mount: the kernel may still keep "a" */
    uint64_t b = entry(n, 1, "b", &renamed, false);
    assert_true((b & NODE_ALIAS_BIT) != 0);
    assert_int_equal(nodes_ino(n, b), 20);
    /* b looked up again, and another link of it at that moment: b's node */
    assert_int_equal(entry(n, 1, "b", &renamed, false), b);
    assert_int_equal(entry(n, 2, "c", &renamed, false), b);
    /* a change after two names: whichever name, a new alias */
    struct meta_attr again = file(20, t + 2000);
    uint64_t b2 = entry(n, 1, "b", &again, false);
    assert_true((b2 & NODE_ALIAS_BIT) != 0);
    assert_int_not_equal(b2, b);
    assert_int_equal(nodes_ino(n, b2), 20);
    nodes_free(n);
}

static void test_nodes_one_name_changed_in_place_keeps_its_node(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    int64_t t = now_ns();
    struct meta_attr made = file(30, t);
    struct meta_attr written = file(30, t + 5000);

    assert_int_equal(entry(n, 1, "f", &made, true), 30);
    /* written (or chmod-ed) elsewhere: its one name is still the one */
    assert_int_equal(entry(n, 1, "f", &written, false), 30);
    /* the same name in another directory is another name */
    struct meta_attr moved = file(30, t + 9000);
    assert_true((entry(n, 2, "f", &moved, false) & NODE_ALIAS_BIT) != 0);
    nodes_free(n);
}

static void test_nodes_a_link_here_keeps_its_node_and_counts_two_names(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    int64_t t = now_ns();
    struct meta_attr made = file(40, t);
    struct meta_attr linked = file(40, t + 1000);

    assert_int_equal(entry(n, 1, "a", &made, true), 40);
    assert_int_equal(nodes_link_ctime(n, 40, 40), t);
    assert_int_equal(nodes_link(n, 40, &linked, KEEP_MS, t), 40);
    /* either name at the link's moment may stand beside a stale one now */
    assert_true((entry(n, 1, "a", &linked, false) & NODE_ALIAS_BIT) != 0);
    nodes_free(n);
}

static void test_nodes_a_link_checks_its_names_are_still_true(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    int64_t t = now_ns();
    struct meta_attr made = file(45, t);
    struct meta_attr renamed = file(45, t + 1000);
    struct meta_attr linked = file(45, t + 2000);

    /* not held (pushed out): looked up again first; no table: not checked */
    assert_int_equal(nodes_link_ctime(n, 45, 45), NODES_ASK_AGAIN);
    assert_int_equal(nodes_link_ctime(NULL, 45, 45), 0);
    assert_int_equal(entry(n, 1, "a", &made, true), 45);
    /* the servers refuse it unless the file is as it was when "a" was given */
    assert_int_equal(nodes_link_ctime(n, 45, 45), t);
    /* renamed elsewhere and seen here under its new name: an alias; a link
     * through the node of the old name is sent back to look it up again */
    uint64_t b = entry(n, 1, "b", &renamed, false);
    assert_true((b & NODE_ALIAS_BIT) != 0);
    assert_int_equal(nodes_link_ctime(n, 45, 45), NODES_ASK_AGAIN);
    assert_int_equal(nodes_link_ctime(n, b, 45), t + 1000);
    /* linked on the condition: every name is true as of the link */
    assert_int_equal(nodes_link(n, b, &linked, KEEP_MS, t + 1000), b);
    assert_int_equal(nodes_link_ctime(n, b, 45), t + 2000);
    /* linked without one (the table lost track): not known any more */
    assert_int_equal(nodes_link(n, b, &linked, KEEP_MS, 0), b);
    assert_int_equal(nodes_link_ctime(n, b, 45), NODES_ASK_AGAIN);
    nodes_forget(n, b, 3);
    nodes_free(n);
}

static void test_nodes_unknown_recent_files_get_aliases(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    int64_t t = now_ns();
    struct meta_attr made_there = file(50, t);

    /* made on another mount just now: the kernel may have kept a name of
     * it that this table does not know (given while its ctime was old) */
    uint64_t a = entry(n, 1, "a", &made_there, false);
    assert_true((a & NODE_ALIAS_BIT) != 0);
    assert_int_equal(entry(n, 1, "a", &made_there, false), a);
    nodes_free(n);
}

static void test_nodes_lapsed_entries_free_their_node(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    int64_t t = now_ns();
    struct meta_attr made = file(60, t);
    struct meta_attr renamed = file(60, t + 1000);

    assert_int_equal(nodes_entry(n, 1, "a", 1, &made, 1, true), 60);
    usleep(1050000); /* its 1 ms, and the second the kernel may start late */
    /* the kernel let "a" go (it asks again before it uses it): its node
     * serves the new name */
    assert_int_equal(nodes_entry(n, 1, "b", 1, &renamed, KEEP_MS, false), 60);
    nodes_free(n);
}

static void test_nodes_old_files_written_here_keep_their_node(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    struct meta_attr old = file(70, now_ns() - 3600ll * 1000000000);
    struct meta_attr written = file(70, now_ns());

    assert_int_equal(entry(n, 1, "f", &old, false), 70);
    /* written since: its one name, asked again, is still the one */
    assert_int_equal(entry(n, 1, "f", &written, false), 70);
    /* an answer from before the write, arriving late, is not taken for it */
    assert_true((entry(n, 1, "f", &old, false) & NODE_ALIAS_BIT) != 0);
    /* a file of two links first seen here: the kernel may keep the other
     * link's name under its number, so a change takes an alias even under
     * the name first seen */
    struct meta_attr linked = file(71, now_ns() - 3600ll * 1000000000);
    linked.nlink = 2;
    assert_int_equal(entry(n, 1, "p", &linked, false), 71);
    struct meta_attr changed = linked;
    changed.ctime_ns = now_ns();
    assert_true((entry(n, 1, "p", &changed, false) & NODE_ALIAS_BIT) != 0);
    nodes_free(n);
}

static void test_nodes_a_rename_here_moves_or_retires_the_node(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    int64_t t = now_ns();
    struct meta_attr made = file(80, t);
    struct meta_attr moved = file(80, t + 1000);

    assert_int_equal(entry(n, 1, "a", &made, true), 80);
    /* this kernel moved "a" to "b" itself; even an answer of the moment
     * before (a listing late to arrive) takes another node now */
    nodes_renamed(n, &moved, 1, "a", 1, 1, "b", 1);
    /* its one name moved: the node goes on under "b" */
    assert_int_equal(entry(n, 1, "b", &moved, false), 80);
    /* but an answer of the moment before (a listing late to arrive) takes
     * another node */
    assert_true((entry(n, 1, "a", &made, false) & NODE_ALIAS_BIT) != 0);
    /* a file of two names: a rename retires its node */
    struct meta_attr two = file(81, t);
    assert_int_equal(entry(n, 1, "c", &two, true), 81);
    assert_int_equal(entry(n, 1, "d", &two, false), 81);
    struct meta_attr two_moved = file(81, t + 1000);
    nodes_renamed(n, &two_moved, 1, "c", 1, 1, "e", 1);
    assert_true((entry(n, 1, "e", &two_moved, false) & NODE_ALIAS_BIT) != 0);
    struct meta_attr unknown = {.ino = 0};
    nodes_renamed(n, &unknown, 1, "x", 1, 1, "y", 1); /* no inode named: nothing */
    nodes_free(n);
}

static void test_nodes_an_exchange_not_told_of_its_other_file_retires_it(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(64);
    int64_t t = now_ns();
    struct meta_attr mine = file(90, t);
    struct meta_attr other = file(91, t);
    struct meta_attr bystander = file(92, t);

    assert_int_equal(entry(n, 1, "a", &mine, true), 90);
    assert_int_equal(entry(n, 1, "b", &other, true), 91);
    assert_int_equal(entry(n, 1, "c", &bystander, true), 92);
    /* "a" and "b" exchanged here, the answer naming only "a"'s file: the
     * kernel now keeps "a" for 91's node, a name the table cannot know */
    struct meta_attr mine_after = file(90, t + 1000);
    nodes_name_moved(n, 1, "b", 1);
    nodes_renamed(n, &mine_after, 1, "a", 1, 1, "b", 1);
    /* 91 renamed back to "b" elsewhere: its node would carry the stale "a"
     * and the true "b" at once */
    struct meta_attr other_back = file(91, t + 2000);
    assert_true((entry(n, 1, "b", &other_back, false) & NODE_ALIAS_BIT) != 0);
    /* the moved file keeps its node under its new name; others are untouched */
    assert_int_equal(entry(n, 1, "b", &mine_after, false), 90);
    struct meta_attr bystander_after = file(92, t + 2000);
    assert_int_equal(entry(n, 1, "c", &bystander_after, false), 92);
    nodes_name_moved(NULL, 1, "b", 1); /* no table: nothing */
    nodes_free(n);
}

static void test_nodes_a_full_table_errs_toward_aliases(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(1); /* one set of four */
    int64_t t = now_ns();

    for (uint64_t ino = 100; ino < 105; ino++) {
        struct meta_attr a = file(ino, t);
        assert_int_equal(entry(n, 1, "x", &a, true), ino);
    }
    /* one of the five was pushed out: a link through it is sent back to
     * look its name up, as its names are not known true */
    int unknown = 0;
    for (uint64_t ino = 100; ino < 105; ino++) {
        unknown += nodes_link_ctime(n, ino, ino) == NODES_ASK_AGAIN;
    }
    assert_int_equal(unknown, 1);
    /* asked again at its moment, it gets an alias, never a node another of
     * its names may share */
    int aliased = 0;
    for (uint64_t ino = 100; ino < 105; ino++) {
        struct meta_attr a = file(ino, t);
        uint64_t node = entry(n, 1, "x", &a, false);
        assert_int_equal(nodes_ino(n, node), ino);
        aliased += (node & NODE_ALIAS_BIT) != 0;
    }
    assert_true(aliased >= 1);
    nodes_free(n);
}

static void test_nodes_aliases_last_until_forgotten(void **state)
{
    (void)state;
    struct nodes *n = nodes_new(1024);
    int64_t t = now_ns();
    enum { COUNT = 5000 };
    static uint64_t alias[COUNT];
    uint64_t made;
    uint64_t live;

    for (uint64_t i = 0; i < COUNT; i++) {
        struct meta_attr a = file(1000 + i, t);
        alias[i] = entry(n, 1, "y", &a, false);
        assert_true((alias[i] & NODE_ALIAS_BIT) != 0);
        assert_int_equal(entry(n, 1, "y", &a, false), alias[i]); /* two lookups */
    }
    nodes_counts(n, &made, &live);
    assert_int_equal(made, COUNT);
    assert_int_equal(live, COUNT);
    for (uint64_t i = 0; i < COUNT; i++) {
        assert_int_equal(nodes_ino(n, alias[i]), 1000 + i);
        nodes_forget(n, alias[i], 1);
        assert_int_equal(nodes_ino(n, alias[i]), 1000 + i); /* one lookup left */
    }
    nodes_forget(n, 1000, 5); /* not an alias: nothing to forget */
    for (uint64_t i = 0; i < COUNT; i++) {
        nodes_forget(n, alias[i], 1);
        assert_int_equal(nodes_ino(n, alias[i]), 0);
    }
    nodes_counts(n, &made, &live);
    assert_int_equal(live, 0);
    /* an entry under a forgotten alias counts it afresh (the last file
     * made is still remembered) */
    struct meta_attr a = file(1000 + COUNT - 1, t);
    assert_int_equal(entry(n, 1, "y", &a, false), alias[COUNT - 1]);
    assert_int_equal(nodes_ino(n, alias[COUNT - 1]), 1000 + COUNT - 1);
    nodes_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nodes_directories_and_old_files_keep_their_numbers),
        cmocka_unit_test(test_nodes_a_rename_elsewhere_gets_an_alias),
        cmocka_unit_test(test_nodes_one_name_changed_in_place_keeps_its_node),
        cmocka_unit_test(test_nodes_a_link_here_keeps_its_node_and_counts_two_names),
        cmocka_unit_test(test_nodes_a_link_checks_its_names_are_still_true),
        cmocka_unit_test(test_nodes_unknown_recent_files_get_aliases),
        cmocka_unit_test(test_nodes_lapsed_entries_free_their_node),
        cmocka_unit_test(test_nodes_old_files_written_here_keep_their_node),
        cmocka_unit_test(test_nodes_a_rename_here_moves_or_retires_the_node),
        cmocka_unit_test(test_nodes_an_exchange_not_told_of_its_other_file_retires_it),
        cmocka_unit_test(test_nodes_a_full_table_errs_toward_aliases),
        cmocka_unit_test(test_nodes_aliases_last_until_forgotten),
    };
    return cmocka_run_group_tests_name("test_nodes", tests, NULL, NULL);
}
