/* tests/meta/test_map.c - the shard map, a shard's identity and its leases.
 * Goal: a map survives encoding, checkpoint and reload bit for bit; every
 * broken map is refused (bad bytes, overlapping leases, numbers going
 * backwards, an epoch that drops, a stale version); a shard refuses a
 * command of another epoch and numbers outside its lease; slice ids are
 * handed out once, also to a retry.
 * Method: maps built by hand and changed one rule at a time; a mutation
 * fuzz of the decoder (seeded, bounded); a checkpoint in a temporary
 * directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../objstore/harness.h"
#include "meta.h"
#include "shard.h"

#define FUZZ_ROUNDS 20000u

static void sample_map(struct meta_map *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->volume, sizeof(m->volume), "frames");
    snprintf(m->store_url, sizeof(m->store_url), "file:///srv/arbor/blocks");
    m->block_bytes = 4u << 20;
    m->window_s = 7 * 86400;
    m->member_count = 3;
    for (uint32_t i = 0; i < 3; i++) {
        m->members[i].id = i + 1;
        snprintf(m->members[i].raft_addr, 64, "127.0.0.1:%u", 7000 + i);
        snprintf(m->members[i].client_addr, 64, "127.0.0.1:%u", 8000 + i);
    }
    meta_map_seed(m);
}

static struct meta_shard *new_shard(uint32_t id)
{
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0755};
    struct meta_shard *s = NULL;

    meta_shard_info_first(id, &cfg.self);
    assert_int_equal(meta_shard_new(&cfg, &s), 0);
    return s;
}

static int set_map(struct meta_shard *s, const struct meta_map *m, uint64_t replaces)
{
    static uint8_t buf[META_MAP_BYTES_ENC_MAX];
    struct meta_reply r = {0};
    size_t len = 0;
    int rc = meta_map_encode(m, buf, sizeof(buf), &len);

    if (rc != 0)
        return rc;
    struct meta_cmd cmd = {.op = META_OP_MAP_SET, .cookie = replaces, .value = buf,
                           .value_len = (uint32_t)len, .now_ns = 1};
    return meta_shard_apply(s, &cmd, &r);
}

/* The seed's leases: shard 1 holds [1, 2^40) of both; nothing above is leased. */
static void test_seed_round_trip(void **state)
{
    (void)state;
    struct meta_map m;
    struct meta_map back;
    uint8_t buf[META_MAP_BYTES_ENC_MAX];
    size_t len = 0;

    sample_map(&m);
    assert_int_equal(m.version, 1);
    assert_int_equal(m.shard_count, 2);
    assert_int_equal(m.shards[1].id, META_ROOT_SHARD);
    assert_int_equal(m.shards[1].ino_hi, META_ID_LEASE);
    assert_int_equal(meta_map_encode(&m, buf, sizeof(buf), &len), 0);
    assert_int_equal(meta_map_decode(buf, len, &back), 0);
    assert_memory_equal(&back.shards, &m.shards, sizeof(m.shards[0]) * 2);
    assert_string_equal(back.store_url, m.store_url);
    assert_string_equal(back.members[2].client_addr, "127.0.0.1:8002");
    assert_int_equal(back.window_s, m.window_s);
    /* the largest map fits the bound the server's buffers use */
    m.shard_count = META_MAP_SHARDS_MAX;
    m.member_count = META_MAP_MEMBERS_MAX;
    memset(m.store_url, 'x', sizeof(m.store_url) - 1);
    for (uint32_t i = 0; i < META_MAP_MEMBERS_MAX; i++) {
        m.members[i].id = i + 1;
        memset(m.members[i].raft_addr, 'r', 63);
        memset(m.members[i].client_addr, 'c', 63);
    }
    for (uint32_t i = 2; i < META_MAP_SHARDS_MAX; i++) {
        m.shards[i] = (struct meta_shard_info){.id = i, .epoch = 1};
    }
    assert_int_equal(meta_map_encode(&m, buf, sizeof(buf), &len), 0);
    assert_int_equal(meta_map_decode(buf, len, &back), 0);
    /* and a buffer one byte short is refused, not overrun */
    assert_int_equal(meta_map_encode(&m, buf, len - 1, &len), -EMSGSIZE);
}

/* Each rule broken alone is refused, by encode and by decode. */
static void test_invalid_maps(void **state)
{
    (void)state;
    struct meta_map m;
    struct meta_map back;
    uint8_t buf[META_MAP_BYTES_ENC_MAX];
    size_t len = 0;

    for (int rule = 0; rule < 7; rule++) {
        sample_map(&m);
        switch (rule) {
        case 0: m.shards[1].ino_hi = m.ino_next + 1; break;           /* lease above next */
        case 1: m.shards[0].ino_lo = 5; m.shards[0].ino_hi = 6; break; /* leases overlap */
        case 2: m.shards[1].id = 0; break;                            /* ids not ascending */
        case 3: m.shards[1].epoch = 0; break;
        case 4: m.members[1].id = 1; break;                           /* a member twice */
        case 5: m.members[0].id = 0; break;
        default: m.block_bytes = META_BLOCK_BYTES + 1; break;
        }
        assert_int_equal(meta_map_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    }
    /* decode: wrong magic, truncated anywhere, trailing bytes */
    sample_map(&m);
    assert_int_equal(meta_map_encode(&m, buf, sizeof(buf), &len), 0);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = meta_map_decode(buf, cut, &back);
        assert_true(rc == -EPROTO || rc == -EINVAL);
    }
    assert_int_equal(meta_map_decode(buf, len + 1, &back), -EPROTO);
    buf[0] ^= 1;
    assert_int_equal(meta_map_decode(buf, len, &back), -EPROTO);
}

/* Flipped bytes never crash the decoder; what it takes is a valid map
 * that encodes back to the same bytes. */
static void test_decode_fuzz(void **state)
{
    (void)state;
    struct meta_map m;
    struct meta_map back;
    uint8_t good[META_MAP_BYTES_ENC_MAX];
    uint8_t buf[META_MAP_BYTES_ENC_MAX];
    uint8_t again[META_MAP_BYTES_ENC_MAX];
    size_t len = 0;
    uint32_t taken = 0;

    srand(7);
    sample_map(&m);
    assert_int_equal(meta_map_encode(&m, good, sizeof(good), &len), 0);
    for (uint32_t round = 0; round < FUZZ_ROUNDS; round++) {
        memcpy(buf, good, len);
        int flips = 1 + rand() % 4;
        for (int k = 0; k < flips; k++) {
            buf[(size_t)rand() % len] ^= (uint8_t)(1u << (rand() % 8));
        }
        size_t n = rand() % 8 == 0 ? (size_t)rand() % len : len;
        if (meta_map_decode(buf, n, &back) != 0)
            continue;
        size_t n2 = 0;
        assert_int_equal(meta_map_encode(&back, again, sizeof(again), &n2), 0);
        assert_int_equal(n2, n);
        assert_memory_equal(again, buf, n);
        taken++;
    }
    assert_true(taken > 0); /* flips of plain numbers (a window, an address digit) pass */
}

/* MAP_SET is a compare-and-set on the version and never goes backwards. */
static void test_map_set_rules(void **state)
{
    (void)state;
    struct meta_shard *s = new_shard(META_MAP_SHARD);
    struct meta_shard *root = new_shard(META_ROOT_SHARD);
    struct meta_map m;

    assert_non_null(meta_shard_map(s));
    assert_null(meta_shard_map(root));
    assert_int_equal(meta_shard_map(s)->version, 0);
    sample_map(&m);
    assert_int_equal(set_map(root, &m, 0), -EINVAL); /* only the map shard holds one */
    assert_int_equal(set_map(s, &m, 1), -ESTALE);    /* not the version in place */
    m.version = 2;
    assert_int_equal(set_map(s, &m, 0), -EINVAL);    /* must be the next version */
    m.version = 1;
    assert_int_equal(set_map(s, &m, 0), 0);
    assert_int_equal(meta_shard_map(s)->version, 1);
    uint64_t before = meta_shard_hash(s);
    struct meta_map next = m;
    next.version = 2;
    next.ino_next = m.ino_next - 1;                  /* leased numbers stay leased */
    next.shards[1].ino_hi = next.ino_next;
    assert_int_equal(set_map(s, &next, 1), -EINVAL);
    next = m;
    next.version = 2;
    next.shards[1].epoch = 5;
    assert_int_equal(set_map(s, &next, 1), 0);
    next.version = 3;
    next.shards[1].epoch = 4;                        /* an epoch never drops */
    assert_int_equal(set_map(s, &next, 2), -EINVAL);
    assert_int_not_equal(meta_shard_hash(s), before);
    /* MAP_GET answers the bytes; a short buffer is -ERANGE, cap 0 the size */
    uint8_t data[META_MAP_BYTES_ENC_MAX];
    struct meta_cmd get = {.op = META_OP_MAP_GET};
    struct meta_reply r = {.data = data, .data_cap = 0};
    assert_int_equal(meta_shard_read(s, &get, &r), 0);
    uint32_t size = r.data_len;
    r.data_cap = size - 1;
    assert_int_equal(meta_shard_read(s, &get, &r), -ERANGE);
    r.data_cap = sizeof(data);
    assert_int_equal(meta_shard_read(s, &get, &r), 0);
    assert_int_equal(r.data_len, size);
    struct meta_map back;
    assert_int_equal(meta_map_decode(data, r.data_len, &back), 0);
    assert_int_equal(back.version, 2);
    assert_int_equal(back.shards[1].epoch, 5);
    assert_int_equal(meta_shard_read(root, &get, &r), -EINVAL);
    meta_shard_free(s);
    meta_shard_free(root);
}

/* A command of another epoch changes nothing; numbers stay in the lease. */
static void test_epoch_and_lease(void **state)
{
    (void)state;
    struct meta_shard_config cfg = {.root_ino = 1, .root_mode = 0777};
    struct meta_shard *s = NULL;
    struct meta_reply r = {0};

    meta_shard_info_first(META_ROOT_SHARD, &cfg.self);
    cfg.self.epoch = 3;
    cfg.self.ino_hi = 100;
    cfg.self.slice_lo = 10;
    cfg.self.slice_hi = 20;
    assert_int_equal(meta_shard_new(&cfg, &s), 0);
    struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = 1, .name = "a", .name_len = 1,
                          .mode = 0755, .new_ino = 2, .now_ns = 5, .epoch = 2};
    uint64_t before = meta_shard_hash(s);
    assert_int_equal(meta_shard_apply(s, &mk, &r), -AR_ESTALEEPOCH);
    assert_int_equal(meta_shard_hash(s), before);
    mk.epoch = 3;
    mk.new_ino = 100; /* the lease ends below it */
    assert_int_equal(meta_shard_apply(s, &mk, &r), -EINVAL);
    mk.new_ino = 99;
    assert_int_equal(meta_shard_apply(s, &mk, &r), 0);
    /* slice ids: handed out in order, once; a retry gets its first answer */
    struct meta_cmd al = {.op = META_OP_ALLOC_SLICES, .length = 4, .now_ns = 6,
                          .client_id = 9, .seq = 1};
    assert_int_equal(meta_shard_apply(s, &al, &r), 0);
    assert_int_equal(r.attr.ino, 10);
    assert_int_equal(r.attr.size, 4);
    memset(&r, 0, sizeof(r));
    assert_int_equal(meta_shard_apply(s, &al, &r), 0);
    assert_int_equal(r.attr.ino, 10);
    assert_int_equal(meta_shard_slice_next(s), 14);
    al.seq = 2;
    al.length = 7; /* 14 + 7 > 20 */
    assert_int_equal(meta_shard_apply(s, &al, &r), -ENOSPC);
    al.seq = 3;
    al.length = 6;
    assert_int_equal(meta_shard_apply(s, &al, &r), 0);
    assert_int_equal(r.attr.ino, 14);
    al.seq = 4;
    al.length = 0;
    assert_int_equal(meta_shard_apply(s, &al, &r), -EINVAL);
    al.length = META_SLICES_ALLOC_MAX + 1;
    assert_int_equal(meta_shard_apply(s, &al, &r), -EINVAL);
    meta_shard_free(s);
}

/* The identity, slice ids and the map come back from a checkpoint. */
static void test_checkpoint_round_trip(void **state)
{
    (void)state;
    char dir[256];
    char path[300];
    char errmsg[AR_ERRMSG_MAX];
    struct meta_map m;
    struct meta_reply r = {0};

    harness_tmpdir(dir);
    for (uint32_t id = 0; id < 2; id++) {
        struct meta_shard *s = new_shard(id);
        struct meta_checkpoint *ck = NULL;
        struct meta_ckpt_batch *b = NULL;
        struct meta_shard *back = NULL;
        uint64_t applied = 0;
        assert_int_equal(meta_shard_track(s), 0);
        if (id == META_MAP_SHARD) {
            sample_map(&m);
            assert_int_equal(set_map(s, &m, 0), 0);
        } else {
            struct meta_cmd al = {.op = META_OP_ALLOC_SLICES, .length = 1000, .now_ns = 1};
            assert_int_equal(meta_shard_apply(s, &al, &r), 0);
        }
        snprintf(path, sizeof(path), "%s/ck%u", dir, id);
        assert_int_equal(meta_checkpoint_open(path, &ck, errmsg), 0);
        assert_int_equal(meta_shard_collect(s, 7, &b), 0);
        assert_int_equal(meta_checkpoint_commit(ck, b, errmsg), 0);
        meta_ckpt_batch_free(b);
        assert_int_equal(meta_checkpoint_load(ck, &back, &applied, errmsg), 0);
        assert_int_equal(meta_shard_hash(back), meta_shard_hash(s));
        assert_int_equal(meta_shard_self(back)->id, id);
        if (id == META_MAP_SHARD) {
            assert_int_equal(meta_shard_map(back)->version, 1);
            assert_string_equal(meta_shard_map(back)->volume, "frames");
        } else {
            assert_null(meta_shard_map(back));
            assert_int_equal(meta_shard_slice_next(back), 1001);
        }
        meta_shard_free(back);
        meta_checkpoint_close(ck);
        meta_shard_free(s);
    }
    harness_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_round_trip),
        cmocka_unit_test(test_invalid_maps),
        cmocka_unit_test(test_decode_fuzz),
        cmocka_unit_test(test_map_set_rules),
        cmocka_unit_test(test_epoch_and_lease),
        cmocka_unit_test(test_checkpoint_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
