/* tests/meta/test_table.c - the shard's hash structures (meta/table.c):
 * the index and the side-table map keep every key findable, and no
 * removed one, whatever order the keys come in. Keys made in runs (node
 * indexes, inode numbers) are placed next to each other, and runs that
 * reach the end of a table wrap to its start; random keys are mixed in,
 * tables grow under them, and removals leave tombstones behind. The end
 * state is checked against a plain array, and the map's after each of its
 * first 64 steps, while its table is small. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shard.h"

#define KEYS 60000u

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The keys of the test: runs of consecutive numbers at random starts,
 * and lone random numbers, none twice. */
static void keys_make(uint64_t *keys, uint32_t n, uint64_t limit, uint64_t seed)
{
    uint8_t *is_used = calloc(limit / 8, 1);
    uint32_t made = 0;

    assert_non_null(is_used);
    while (made < n) {
        uint64_t start = xorshift(&seed) % limit;
        uint32_t run = xorshift(&seed) % 3 == 0 ? 1 : (uint32_t)(xorshift(&seed) % 700);
        for (uint64_t k = start; k < start + run && k < limit && made < n; k++) {
            if (!(is_used[k / 8] & (1u << (k % 8)))) {
                is_used[k / 8] |= (uint8_t)(1u << (k % 8));
                keys[made++] = k;
            }
        }
    }
    free(is_used);
}

struct ino_ctx {
    struct meta_shard shard; /* only its seed: meta__ino_hash() */
    uint64_t *inos;          /* by value */
};

static uint64_t ino_rehash(const void *ctx, uint32_t v)
{
    const struct ino_ctx *c = ctx;

    return meta__ino_hash(&c->shard, c->inos[v]);
}

static bool ino_match(const void *ctx, uint32_t v, const void *key)
{
    const struct ino_ctx *c = ctx;

    return c->inos[v] == *(const uint64_t *)key;
}

static uint32_t ino_find(const struct meta__index *ix, const struct ino_ctx *c, uint64_t ino)
{
    return meta__index_find(ix, meta__ino_hash(&c->shard, ino), &ino, ino_match, c);
}

static void test_index_of_inode_numbers_in_runs(void **state)
{
    (void)state;
    struct ino_ctx *c = calloc(1, sizeof(*c));
    bool *is_in = calloc(KEYS, sizeof(*is_in));
    struct meta__index ix;

    assert_non_null(c);
    assert_non_null(is_in);
    c->inos = malloc(KEYS * sizeof(*c->inos));
    assert_non_null(c->inos);
    c->shard.seed = 0x5eed;
    keys_make(c->inos, KEYS, 1u << 20, 7);
    meta__index_init(&ix);
    struct meta__index_owner o = {.rehash = ino_rehash, .ctx = c};
    uint64_t rng = 99;
    for (uint32_t v = 0; v < KEYS; v++) {
        assert_int_equal(meta__index_insert(&ix, ino_rehash(c, v), v, &o), 0);
        is_in[v] = true;
        /* now and then take out an earlier one: tombstones in the runs */
        uint32_t gone = (uint32_t)(xorshift(&rng) % (v + 1));
        if (xorshift(&rng) % 4 == 0 && is_in[gone]) {
            meta__index_remove(&ix, ino_rehash(c, gone), gone);
            is_in[gone] = false;
        }
    }
    uint64_t count = 0;
    for (uint32_t v = 0; v < KEYS; v++) {
        assert_int_equal(ino_find(&ix, c, c->inos[v]), is_in[v] ? v : META_NIL);
        count += is_in[v];
    }
    assert_int_equal(ix.count, count);
    /* a number never given is not found, next to runs or far from them */
    assert_int_equal(ino_find(&ix, c, 1u << 21), META_NIL);
    assert_int_equal(ino_find(&ix, c, (1u << 20) + 3), META_NIL);
    meta__index_fini(&ix);
    free(c->inos);
    free(c);
    free(is_in);
}

static void test_map_of_node_indexes_in_runs(void **state)
{
    (void)state;
    uint64_t *keys = malloc(KEYS * sizeof(*keys));
    bool *is_in = calloc(KEYS, sizeof(*is_in));
    struct meta__map m;
    uint64_t rng = 5;
    uint64_t v;

    assert_non_null(keys);
    assert_non_null(is_in);
    keys_make(keys, KEYS, 1u << 18, 11);
    meta__map_init(&m);
    for (uint32_t i = 0; i < KEYS; i++) {
        assert_int_equal(meta__map_put(&m, (uint32_t)keys[i], keys[i] * 3), 0);
        is_in[i] = true;
        uint32_t gone = (uint32_t)(xorshift(&rng) % (i + 1));
        if (xorshift(&rng) % 4 == 0 && is_in[gone]) {
            meta__map_del(&m, (uint32_t)keys[gone]);
            is_in[gone] = false;
        }
        /* every slot of a small table: runs wrap from its end to its start */
        if (i < 64) {
            for (uint32_t j = 0; j <= i; j++) {
                assert_int_equal(meta__map_get(&m, (uint32_t)keys[j], &v), is_in[j]);
            }
        }
    }
    uint64_t count = 0;
    for (uint32_t i = 0; i < KEYS; i++) {
        assert_int_equal(meta__map_get(&m, (uint32_t)keys[i], &v), is_in[i]);
        if (is_in[i])
            assert_int_equal(v, keys[i] * 3);
        count += is_in[i];
    }
    assert_int_equal(m.count, count);
    assert_false(meta__map_get(&m, 1u << 19, &v));
    meta__map_fini(&m);
    free(keys);
    free(is_in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_of_inode_numbers_in_runs),
        cmocka_unit_test(test_map_of_node_indexes_in_runs),
    };
    return cmocka_run_group_tests_name("test_table", tests, NULL, NULL);
}
