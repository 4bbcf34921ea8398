/* tests/sim/test_sim.c - the Raft library under random faults, seed by
 * seed: a 5-node cluster (3 voters, 2 outside until added) takes client
 * writes and reads (ReadIndex and lease) while a schedule drawn from the
 * seed drops, delays, duplicates and reorders messages, partitions the
 * network (clean splits, isolated leaders, one-way links, "bridge"
 * partitions where one node sees both sides), crashes and restarts nodes
 * (losing what they had not persisted), pauses them, jumps their clocks,
 * transfers leadership, changes membership and takes snapshots (sent in
 * chunks, sometimes failing to install). sim.c checks every property after
 * every event. Each seed ends healed: a leader must be elected and a last
 * write must reach every member, so a run that never makes progress fails.
 *
 * ARBOR_SIM_SEED=N replays one seed; ARBOR_SIM_SEEDS=N sets how many.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

#define SEEDS_DEFAULT 4000u
#define ROUNDS        60u   /* schedule rounds a seed */
#define ROUND_EVENTS  40u   /* events a round */

static void random_partition(struct sim *s)
{
    raft_id side[SIM_NODES_MAX];
    uint32_t count = 0;

    switch (sim_rand(s, 5)) {
    case 4:
    case 0: { /* the leader alone */
        raft_id l = sim_leader(s);
        if (l != 0)
            side[count++] = l;
        break;
    }
    case 1: /* a random split */
        for (raft_id id = 1; id <= s->node_count; id++) {
            if (sim_rand(s, 2))
                side[count++] = id;
        }
        break;
    case 2: { /* a bridge: two sides that only one node hears both of */
        raft_id bridge = 1 + sim_rand(s, s->node_count);
        for (raft_id a = 1; a <= s->node_count; a++) {
            for (raft_id b = 1; b <= s->node_count; b++) {
                bool is_cut = a != bridge && b != bridge && (a % 2) != (b % 2);
                sim_block(s, a, b, is_cut);
            }
        }
        return;
    }
    default: /* one way: a sends but does not hear */
        sim_block(s, 1 + sim_rand(s, s->node_count), 1 + sim_rand(s, s->node_count), true);
        return;
    }
    sim_partition(s, side, count);
}

/* One step of membership: add a learner, promote it, or remove a voter. */
static void random_change(struct sim *s)
{
    raft_id l = sim_leader(s);

    if (l == 0)
        return;
    struct raft_node *rn = sim_node(s, l)->raft;
    struct raft_config c = *raft_config_of(rn);
    raft_index index;
    raft_id id = 1 + sim_rand(s, s->node_count);
    if (!raft_config_has(&c, id)) {
        if (c.learner_count == RAFT_LEARNERS_MAX)
            return;
        c.learners[c.learner_count++] = id;
    } else if (!raft_config_is_voter(&c, id)) {
        for (uint32_t i = 0; i < c.learner_count; i++) {
            if (c.learners[i] == id)
                c.learners[i] = c.learners[--c.learner_count];
        }
        c.voters[c.voter_count++] = id;
    } else if (c.voter_count > 3) {
        for (uint32_t i = 0; i < c.voter_count; i++) {
            if (c.voters[i] == id)
                c.voters[i] = c.voters[--c.voter_count];
        }
    } else {
        return;
    }
    int rc = raft_change_config(rn, &c, &index);
    assert_true(rc == 0 || rc == -RAFT_EBUSY);
    sim_check(s, l);
}

static void random_fault(struct sim *s)
{
    raft_id id = 1 + sim_rand(s, s->node_count);

    switch (sim_rand(s, 12)) {
    case 0:
        sim_crash(s, id);
        break;
    case 1:
    case 2:
        sim_restart(s, id);
        break;
    case 3:
        random_partition(s);
        break;
    case 4:
        sim_heal(s);
        break;
    case 5:
        sim_pause(s, id);
        break;
    case 6:
        sim_resume(s, id);
        break;
    case 7: /* a clock jump of up to a second either way */
        sim_node(s, id)->clock_skew_ns += ((int64_t)sim_rand(s, 2000) - 1000) * 1000000;
        break;
    case 8: {
        raft_id l = sim_leader(s);
        if (l != 0)
            raft_transfer_leader(sim_node(s, l)->raft, id);
        break;
    }
    case 9:
        random_change(s);
        break;
    case 10:
        sim_snapshot(s, id, sim_rand(s, 4));
        break;
    default: /* the network's weather */
        s->drop_pc = sim_rand(s, 4) == 0 ? sim_rand(s, 30) : 0;
        s->dup_pc = sim_rand(s, 10);
        s->delay_max = 1 + sim_rand(s, 12);
        break;
    }
}

/* Clients go to every node that believes it leads: a deposed leader that
 * has not heard yet must refuse, or answer what is still true. */
static void random_clients(struct sim *s)
{
    for (raft_id id = 1; id <= s->node_count; id++) {
        struct sim_node *n = sim_node(s, id);
        if (!n->is_up || raft_role(n->raft) != RAFT_LEADER)
            continue;
        for (uint32_t k = sim_rand(s, 4); k > 0; k--) {
            if (sim_rand(s, 3) == 0)
                sim_read(s, id, sim_rand(s, 2) == 0);
            else
                sim_write(s, id);
        }
    }
}

/* Heal everything and demand progress: a leader, and one more write
 * applied by every voter. */
static void finish(struct sim *s)
{
    sim_heal(s);
    s->drop_pc = 0;
    s->dup_pc = 0;
    s->delay_max = 3;
    for (raft_id id = 1; id <= s->node_count; id++) {
        sim_restart(s, id);
        sim_resume(s, id);
    }
    raft_id l = 0;
    uint32_t op = 0;
    bool is_written = false;
    /* bounded: 400 rounds of 40 events is far past any election */
    for (uint32_t round = 0; round < 400; round++) {
        sim_run(s, 40);
        l = sim_leader(s);
        if (l != 0 && !is_written) {
            op = s->op_count;
            is_written = sim_write(s, l);
        }
        if (is_written && s->ops[op].state == 1) {
            const struct raft_config *c = raft_config_of(sim_node(s, s->ops[op].node)->raft);
            bool is_everywhere = true;
            for (uint32_t i = 0; i < c->voter_count; i++) {
                is_everywhere &= sim_node(s, c->voters[i])->sm.applied >= s->ops[op].index;
            }
            if (is_everywhere)
                return;
        }
        if (is_written && s->ops[op].state == 0 && round % 50 == 49)
            is_written = false; /* proposed to a leader that lost its term: again */
    }
    sim_dump(s);
    fail_msg("seed %llu: no progress after healing (leader %llu) (replay: ARBOR_SIM_SEED=%llu)",
             (unsigned long long)s->seed, (unsigned long long)l, (unsigned long long)s->seed);
}

/* A library assertion aborts: say which seed to replay first. */
static volatile uint64_t seed_now;

static void on_abort(int sig)
{
    char line[96];
    int len = snprintf(line, sizeof(line), "aborted in seed %llu (replay: ARBOR_SIM_SEED=%llu)\n",
                       (unsigned long long)seed_now, (unsigned long long)seed_now);
    (void)sig;
    if (write(2, line, (size_t)len) < 0)
        _exit(134);
}

static void run_seed(uint64_t seed, uint64_t *writes, uint64_t *reads, uint64_t *elections)
{
    static struct sim s;

    seed_now = seed;
    sim_init(&s, seed, 5, 3);
    for (uint32_t round = 0; round < ROUNDS; round++) {
        if (sim_rand(&s, 3) == 0)
            random_fault(&s);
        random_clients(&s);
        sim_run(&s, ROUND_EVENTS);
    }
    finish(&s);
    *writes += s.writes_ok;
    *reads += s.reads_ok;
    *elections += s.elections;
    sim_fini(&s);
}

static void test_sim_random_faults_keep_every_property(void **state)
{
    const char *one = getenv("ARBOR_SIM_SEED");
    const char *many = getenv("ARBOR_SIM_SEEDS");
    uint64_t first = one != NULL ? strtoull(one, NULL, 10) : 1;
    uint64_t count = one != NULL ? 1 : (many != NULL ? strtoull(many, NULL, 10) : SEEDS_DEFAULT);
    uint64_t writes = 0;
    uint64_t reads = 0;
    uint64_t elections = 0;

    (void)state;
    signal(SIGABRT, on_abort);
    for (uint64_t seed = first; seed < first + count; seed++) {
        run_seed(seed, &writes, &reads, &elections);
    }
    print_message("%llu seeds: %llu writes and %llu reads acknowledged, %llu elections\n",
                  (unsigned long long)count, (unsigned long long)writes,
                  (unsigned long long)reads, (unsigned long long)elections);
    /* the schedule must exercise the cluster, not idle it */
    assert_true(writes >= count * 10);
    assert_true(reads >= count);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sim_random_faults_keep_every_property),
    };
    return cmocka_run_group_tests_name("test_sim", tests, NULL, NULL);
}
