/* tests/integ/test_cluster.c - three `arbor serve` processes on 127.0.0.1,
 * driven through the client protocol.
 * Goal: creates, lookups and readdir through a real replicated shard; kill
 * -9 of the leader loses no acknowledged operation and a new leader serves
 * (the issue asks within 3 s); the old leader restarts and catches up; bad
 * input gets an error or a closed connection and the server keeps serving.
 * Method: a small blocking client here follows redirects and retries with a
 * bounded budget; every process is started here and ended by its PID. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../objstore/harness.h"
#include "cluster.h"
#include "limits.h"
#include "meta.h"
#include "objstore.h"

static int setup(void **state)
{
    return cluster_setup(state, NULL, 3, "1,2,3");
}

/* Servers that keep only 50 entries below a checkpoint in memory: a
 * follower a little behind needs a snapshot. */
static int setup_small_log(void **state)
{
    return cluster_setup(state, "50", 3, "1,2,3");
}

/* Four processes; node 4 starts empty, outside the group. */
static int setup_spare(void **state)
{
    return cluster_setup(state, "50", 4, "1,2,3");
}

/* Run cmd at shard's leader: follow redirects, retry on a lost connection
 * or a leader not ready, within CALL_BUDGET_MS. Returns the reply's rc;
 * -ETIMEDOUT if the budget ran out. */
static int call_shard(struct fixture *f, uint32_t shard, const struct meta_cmd *cmd,
                      enum meta_read_mode mode)
{
    double end = now_ms() + CALL_BUDGET_MS;
    int next = f->connected_to >= 0 ? f->connected_to : 0;
    struct meta_cmd numbered = *cmd;

    /* a change sent again after its answer was late is answered once, from
     * the retry table, as a client's is (not EEXIST from running twice) */
    if (!meta_op_is_query(cmd->op) && cmd->client_id == 0) {
        numbered.client_id = 0x7e57;
        numbered.seq = ++f->seq;
        numbered.ack_below = numbered.seq;
        cmd = &numbered;
    }

    /* bounded by the budget */
    while (now_ms() < end) {
        if (f->fd < 0 && !client_connect(f, next)) {
            next = (next + 1) % f->nodes;
            usleep(20000);
            continue;
        }
        struct meta_request req = {.id = ++f->next_id, .shard = shard, .epoch = 1,
                                   .kind = META_REQ_COMMAND, .read_mode = mode,
                                   .data_cap = META_MAP_BYTES_ENC_MAX};
        if (!exchange(f, &req, cmd)) {
            client_close(f);
            next = (next + 1) % f->nodes;
            continue;
        }
        int rc = f->resp->r.rc;
        if (rc == -AR_ENOTLEADER) {
            int port = 0;
            const char *colon = strrchr(f->resp->r.leader_addr, ':');
            if (colon != NULL)
                port = atoi(colon + 1);
            next = (next + 1) % f->nodes;
            for (int i = 0; i < f->nodes; i++) {
                if (f->client_port[i] == port)
                    next = i;
            }
            client_close(f);
            usleep(port == 0 ? 50000 : 0); /* no leader yet: an election runs */
            continue;
        }
        if (rc == -EAGAIN) {
            usleep(10000);
            continue;
        }
        return rc;
    }
    return -ETIMEDOUT;
}

static int call(struct fixture *f, const struct meta_cmd *cmd, enum meta_read_mode mode)
{
    return call_shard(f, META_ROOT_SHARD, cmd, mode);
}

/* The shard map, read at its leader, into *m; waits (bounded) while the
 * first leader has not seeded it yet (version 0). */
static void map_read(struct fixture *f, struct meta_map *m)
{
    struct meta_cmd get = {.op = META_OP_MAP_GET};

    for (int tries = 0; tries < 250; tries++) {
        assert_int_equal(call_shard(f, META_MAP_SHARD, &get, META_READ_LINEARIZABLE), 0);
        assert_int_equal(meta_map_decode(f->resp->r.reply.data, f->resp->r.reply.data_len, m),
                         0);
        if (m->version > 0)
            return;
        usleep(20000);
    }
}

static int mknod_at(struct fixture *f, uint64_t dir, const char *name, uint64_t *ino)
{
    struct meta_cmd c = {.op = META_OP_MKNOD, .ino = dir, .name = name,
                         .name_len = (uint32_t)strlen(name), .mode = S_IFREG | 0644};
    int rc = call(f, &c, META_READ_LINEARIZABLE);

    if (rc == 0 && ino != NULL)
        *ino = f->resp->r.reply.attr.ino;
    return rc;
}

static int lookup(struct fixture *f, uint64_t dir, const char *name, enum meta_read_mode mode)
{
    struct meta_cmd c = {.op = META_OP_LOOKUP, .ino = dir, .name = name,
                         .name_len = (uint32_t)strlen(name)};

    return call(f, &c, mode);
}

/* A new directory /dir_name holding count empty files prefix000, ...; its inode. */
static uint64_t dir_of_files(struct fixture *f, const char *dir_name, const char *prefix,
                             int count)
{
    struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = 1, .name = dir_name,
                          .name_len = (uint32_t)strlen(dir_name), .mode = 0755};
    char name[64];

    assert_int_equal(call(f, &mk, META_READ_LINEARIZABLE), 0);
    uint64_t dir = f->resp->r.reply.attr.ino;
    for (int i = 0; i < count; i++) {
        snprintf(name, sizeof(name), "%s%03d", prefix, i);
        assert_int_equal(mknod_at(f, dir, name, NULL), 0);
    }
    return dir;
}

static int leader_index(struct fixture *f)
{
    struct meta_cmd c = {.op = META_OP_STATFS};

    assert_int_equal(call(f, &c, META_READ_LINEARIZABLE), 0);
    return f->connected_to; /* a linearizable read is answered only by the leader */
}

/* Poll node i with follower reads until name in dir is there; bounded. */
static bool follower_sees(struct fixture *f, int i, uint64_t dir, const char *name)
{
    for (int tries = 0; tries < 500; tries++) {
        bool is_there = false;
        if (client_connect(f, i)) {
            struct meta_request req = {.id = ++f->next_id, .shard = 1, .epoch = 1,
                                       .kind = META_REQ_COMMAND,
                                       .read_mode = META_READ_FOLLOWER};
            struct meta_cmd lk = {.op = META_OP_LOOKUP, .ino = dir, .name = name,
                                  .name_len = (uint32_t)strlen(name)};
            is_there = exchange(f, &req, &lk) && f->resp->r.rc == 0;
        }
        client_close(f);
        if (is_there)
            return true;
        usleep(20000);
    }
    return false;
}

/* Poll the leader at node i until its checkpoint holds all it had
 * committed when first asked: the log kept in memory then starts past
 * that. Bounded. */
static bool checkpoint_catches_up(struct fixture *f, int i)
{
    uint64_t commit = 0;

    for (int tries = 0; tries < 500; tries++) {
        uint64_t checkpoint = 0;
        if (client_connect(f, i)) {
            struct meta_request st = {.id = ++f->next_id, .kind = META_REQ_STATUS};
            if (exchange(f, &st, NULL)) {
                commit = commit == 0 ? f->resp->r.groups[1].commit : commit;
                checkpoint = f->resp->r.groups[1].checkpoint;
            }
        }
        client_close(f);
        if (commit > 0 && checkpoint >= commit)
            return true;
        usleep(20000);
    }
    return false;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_cluster_creates_lookups_and_readdir(void **state)
{
    struct fixture *f = *state;
    struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = 1, .name = "train", .name_len = 5,
                          .mode = 0755};
    char name[32];

    assert_int_equal(call(f, &mk, META_READ_LINEARIZABLE), 0);
    uint64_t dir = f->resp->r.reply.attr.ino;
    assert_true(dir > 1);
    assert_int_equal(call(f, &mk, META_READ_LINEARIZABLE), -EEXIST);
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "frame_%04d.jpg", i);
        assert_int_equal(mknod_at(f, dir, name, NULL), 0);
    }
    assert_int_equal(lookup(f, dir, "frame_0123.jpg", META_READ_LINEARIZABLE), 0);
    assert_int_equal(lookup(f, dir, "frame_9999.jpg", META_READ_INDEX), -ENOENT);
    struct meta_cmd rd = {.op = META_OP_READDIR, .ino = dir, .entry_cap = 1024};
    assert_int_equal(call(f, &rd, META_READ_LINEARIZABLE), 0);
    assert_int_equal(f->resp->r.reply.entry_count, 200);
    assert_true(f->resp->r.reply.is_end);
    assert_string_equal(f->resp->r.reply.entries[0].name, "frame_0000.jpg");
    /* every replica answers a status request: one leader, the same term */
    uint64_t leaders = 0;
    for (int i = 0; i < f->nodes; i++) {
        assert_true(connect_wait(f, i));
        struct meta_request st = {.id = ++f->next_id, .kind = META_REQ_STATUS};
        assert_true(exchange(f, &st, NULL));
        assert_int_equal(f->resp->r.node, i + 1);
        assert_int_equal(f->resp->r.group_count, 2); /* the map and "/" */
        assert_int_equal(f->resp->r.groups[0].shard, META_MAP_SHARD);
        assert_int_equal(f->resp->r.groups[1].shard, META_ROOT_SHARD);
        assert_true(f->resp->r.groups[1].memory_bytes > 0);
        assert_true(f->resp->r.groups[1].log_bytes > 0); /* the segment holds entries */
        bool is_leader = f->resp->r.groups[1].role == 4; /* RAFT_LEADER */
        leaders += is_leader;
        if (is_leader) /* followers may apply a moment later */
            assert_true(f->resp->r.groups[1].files >= 202);
    }
    assert_int_equal(leaders, 1);
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "'%s' status '%s/node1' > /dev/null", f->arbor, f->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_cluster_leader_crash_loses_nothing_acknowledged(void **state)
{
    struct fixture *f = *state;
    char name[32];
    uint64_t dir;
    struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = 1, .name = "d", .name_len = 1,
                          .mode = 0755};

    assert_int_equal(call(f, &mk, META_READ_LINEARIZABLE), 0);
    dir = f->resp->r.reply.attr.ino;
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "before_%03d", i);
        assert_int_equal(mknod_at(f, dir, name, NULL), 0);
    }
    int old = leader_index(f);
    /* its checkpoint holds the state (else a start makes the first again) */
    assert_true(checkpoint_catches_up(f, old));
    client_close(f);
    node_kill(f, old, SIGKILL);
    double t0 = now_ms();
    assert_int_equal(mknod_at(f, dir, "after_000", NULL), 0);
    double took = now_ms() - t0;
    print_message("a new leader served %.0f ms after kill -9 of the old one\n", took);
    assert_true(took < 3000); /* the bound */
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "'%s' status '%s/node1' > /dev/null", f->arbor, f->dir);
    assert_int_not_equal(system(cmd), 0); /* one replica is down, and status says so */
    /* asked by address alone, status names the one down by its id */
    snprintf(cmd, sizeof(cmd), "'%s' status --meta 127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u",
             f->arbor, f->client_port[0], f->client_port[1], f->client_port[2]);
    FILE *out = popen(cmd, "r");
    assert_non_null(out);
    char line[512];
    char want[64];
    bool is_named = false;
    snprintf(want, sizeof(want), "127.0.0.1:%u", f->client_port[old]);
    while (fgets(line, sizeof(line), out) != NULL) { /* bounded by the output */
        unsigned id = 0;
        char addr[64];
        char what[32];
        if (sscanf(line, "%u %63s %31s", &id, addr, what) == 3 && strcmp(addr, want) == 0 &&
            strcmp(what, "unreachable:") == 0)
            is_named = id == (unsigned)old + 1;
    }
    assert_int_not_equal(pclose(out), 0);
    assert_true(is_named);
    for (int i = 1; i < 50; i++) {
        snprintf(name, sizeof(name), "after_%03d", i);
        assert_int_equal(mknod_at(f, dir, name, NULL), 0);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "before_%03d", i);
        assert_int_equal(lookup(f, dir, name, META_READ_LINEARIZABLE), 0);
    }
    /* the old leader comes back and catches up by the log, and its next
     * checkpoint takes what changed, not the whole state again (a whole
     * one holds the loop for seconds on a big shard) */
    char log[400];
    snprintf(log, sizeof(log), "%s/node%d.log", f->dir, old + 1);
    int wholes = harness_count_lines(log, "the checkpoint takes the whole state");
    assert_true(wholes > 0); /* the first start's */
    node_start(f, old);
    client_close(f);
    assert_true(follower_sees(f, old, dir, "after_049"));
    assert_true(checkpoint_catches_up(f, leader_index(f)));
    for (int i = 0; i < f->nodes; i++)
        assert_true(checkpoint_catches_up(f, i));
    assert_int_equal(harness_count_lines(log, "the checkpoint takes the whole state"), wholes);
}

/* Kill node i, put its directory as `cmd` says a stop left it, start it
 * again: it serves what it had (s_419) and what comes after (`name`). */
static void restart_as_if_stopped_mid_install(struct fixture *f, int i, const char *cmd,
                                              uint64_t dir, const char *name)
{
    node_kill(f, i, SIGKILL);
    assert_int_equal(system(cmd), 0);
    node_start(f, i);
    assert_int_equal(mknod_at(f, dir, name, NULL), 0);
    assert_true(follower_sees(f, i, dir, name));
    assert_true(follower_sees(f, i, dir, "s_419"));
}

/* A follower down while the log moves far past what the leader keeps in
 * memory comes back and catches up by a snapshot of the checkpoint. */
static void test_cluster_follower_catches_up_by_snapshot(void **state)
{
    struct fixture *f = *state;
    char name[32];
    struct meta_cmd mk = {.op = META_OP_MKDIR, .ino = 1, .name = "s", .name_len = 1,
                          .mode = 0755};

    assert_int_equal(call(f, &mk, META_READ_LINEARIZABLE), 0);
    uint64_t dir = f->resp->r.reply.attr.ino;
    int leader = leader_index(f);
    int down = (leader + 1) % f->nodes;
    /* started and serving (its checkpoint made) before it goes: two
     * replicas elect a leader while a slow third still starts */
    assert_true(follower_sees(f, down, 1, "s"));
    node_kill(f, down, SIGKILL);
    for (int i = 0; i < 400; i++) {
        snprintf(name, sizeof(name), "s_%03d", i);
        assert_int_equal(mknod_at(f, dir, name, NULL), 0);
    }
    /* wait (bounded) until the checkpoints of both live replicas hold all
     * that: the log each keeps in memory then starts past what the
     * follower has, whichever of them leads when it comes back */
    assert_true(checkpoint_catches_up(f, leader));
    for (int i = 0; i < f->nodes; i++) {
        if (i != leader && i != down)
            assert_true(checkpoint_catches_up(f, i));
    }
    for (int i = 400; i < 420; i++) {
        snprintf(name, sizeof(name), "s_%03d", i);
        assert_int_equal(mknod_at(f, dir, name, NULL), 0);
    }
    char shard[400];
    char cmd[1400];
    snprintf(shard, sizeof(shard), "%s/node%d/shard-1", f->dir, down + 1);
    snprintf(cmd, sizeof(cmd), "cp -r '%s/ckpt' '%s/before-install'", shard, f->dir);
    assert_int_equal(system(cmd), 0);
    node_start(f, down);
    client_close(f);
    assert_true(follower_sees(f, down, dir, "s_419"));
    /* a follower read with a staleness bound: answered here while the
     * leader's heartbeats come */
    assert_true(connect_wait(f, down));
    struct meta_request fresh = {.id = ++f->next_id, .shard = 1, .epoch = 1,
                                 .kind = META_REQ_COMMAND, .read_mode = META_READ_FOLLOWER,
                                 .stale_ms = 1000};
    struct meta_cmd gr = {.op = META_OP_GETATTR, .ino = 1};
    assert_true(exchange(f, &fresh, &gr));
    assert_int_equal(f->resp->r.rc, 0);
    client_close(f);
    char log[400];
    snprintf(log, sizeof(log), "%s/node%d.log", f->dir, down + 1);
    assert_true(harness_count_lines(log, "installed a snapshot") > 0);
    /* and it goes on by the log: a new file reaches it too */
    assert_int_equal(mknod_at(f, dir, "after", NULL), 0);
    assert_true(follower_sees(f, down, dir, "after"));

    /* Stopped between the log's reset to the snapshot and the swap of its
     * checkpoint: the old checkpoint in place, the installed one staged
     * (snap-in). The next start finishes the swap and serves. */
    snprintf(cmd, sizeof(cmd), "mv '%s/ckpt' '%s/snap-in' && cp -r '%s/before-install' '%s/ckpt'",
             shard, shard, f->dir, shard);
    restart_as_if_stopped_mid_install(f, down, cmd, dir, "after_swap");
    assert_int_equal(harness_count_lines(log, "finished installing the snapshot"), 1);
    /* stopped between the swap's two renames: no checkpoint in place */
    snprintf(cmd, sizeof(cmd), "mv '%s/ckpt' '%s/snap-in'", shard, shard);
    restart_as_if_stopped_mid_install(f, down, cmd, dir, "after_rename");
    assert_int_equal(harness_count_lines(log, "finished installing the snapshot"), 2);
}

/* Poll node i's status until pred holds; bounded. */
static bool status_until(struct fixture *f, int i, bool (*pred)(const struct meta_response *r))
{
    for (int tries = 0; tries < 500; tries++) {
        bool is_ok = false;
        if (client_connect(f, i)) {
            struct meta_request st = {.id = ++f->next_id, .kind = META_REQ_STATUS};
            is_ok = exchange(f, &st, NULL) && pred(&f->resp->r);
        }
        client_close(f);
        if (is_ok)
            return true;
        usleep(20000);
    }
    return false;
}

static bool four_voters(const struct meta_response *r)
{
    return r->groups[0].voter_count == 4 && r->groups[1].voter_count == 4;
}

static bool node4_leads(const struct meta_response *r)
{
    return r->groups[0].leader == 4 && r->groups[1].leader == 4;
}

/* A fourth replica from empty: added as a learner it catches up by a
 * snapshot, is promoted, takes over the leadership and serves. */
static void test_cluster_fourth_replica_joins_and_serves(void **state)
{
    struct fixture *f = *state;
    char cmd[1000];
    uint64_t dir = dir_of_files(f, "j", "j_", 200);
    int leader = leader_index(f);
    client_close(f);
    /* the leader's checkpoint holds it all; then one more write, over a
     * second after the last compaction (one a second at most), so that its
     * checkpoint also compacts the log: the kept log starts past 1 */
    assert_true(checkpoint_catches_up(f, leader));
    usleep(1100000);
    assert_int_equal(mknod_at(f, dir, "j_200", NULL), 0);
    client_close(f);
    assert_true(checkpoint_catches_up(f, leader));
    snprintf(cmd, sizeof(cmd), "'%s' member add '%s/node1' 4 > /dev/null", f->arbor, f->dir);
    assert_int_equal(system(cmd), 0);
    assert_true(follower_sees(f, 3, dir, "j_199"));
    char log[400];
    snprintf(log, sizeof(log), "%s/node4.log", f->dir);
    assert_true(harness_count_lines(log, "installed a snapshot") > 0);
    snprintf(cmd, sizeof(cmd), "'%s' member promote '%s/node1' 4 > /dev/null", f->arbor, f->dir);
    assert_int_equal(system(cmd), 0);
    assert_true(status_until(f, 3, four_voters));
    snprintf(cmd, sizeof(cmd), "'%s' leader transfer '%s/node1' 4 > /dev/null", f->arbor,
             f->dir);
    assert_int_equal(system(cmd), 0);
    assert_true(status_until(f, 3, node4_leads));
    assert_int_equal(mknod_at(f, dir, "j_new", NULL), 0);
    assert_int_equal(f->connected_to, 3); /* answered by the new leader */
    /* the map leader put node 4's addresses into the map */
    struct meta_map m;
    map_read(f, &m);
    for (int tries = 0; tries < 250 && m.member_count != 4; tries++) {
        usleep(20000);
        map_read(f, &m);
    }
    assert_int_equal(m.member_count, 4);
    assert_int_equal(m.members[3].id, 4);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", f->client_port[3]);
    assert_string_equal(m.members[3].client_addr, addr);
}

static bool two_voters(const struct meta_response *r)
{
    return r->groups[0].voter_count == 2 && r->groups[1].voter_count == 2;
}

/* arbor member remove returns 0 only once the change has committed: a
 * caller then wipes the node, and while the change is uncommitted the
 * node may still count as a voter elsewhere (an empty voter grants any
 * vote, and a stale replica could lead and lose acknowledged writes:
 * jepsen seed 148). With the other two replicas stopped the leader cannot
 * commit, so the command must not succeed; run again once they resume,
 * it succeeds whether its first attempt committed or was lost. */
static void test_cluster_member_remove_returns_once_committed(void **state)
{
    struct fixture *f = *state;
    char cmd[1200];
    const int leader = 0;
    const int gone = 1;
    const int other = 2;

    /* node 1 leads both groups (the command asks the replicas in order, so
     * it reaches that leader first): a stopped leader would else hold the
     * change whatever the answer rule */
    snprintf(cmd, sizeof(cmd), "'%s' leader transfer '%s/node1' 1 > /dev/null", f->arbor,
             f->dir);
    assert_int_equal(system(cmd), 0);
    /* ... which has committed an entry of its term in both (a linearizable
     * read of each answered there), so it may propose the change at once */
    struct meta_map m;
    for (int tries = 0; tries < 250; tries++) {
        map_read(f, &m);
        if (f->connected_to == leader)
            break;
        usleep(20000);
    }
    assert_int_equal(f->connected_to, leader);
    for (int tries = 0; tries < 250 && leader_index(f) != leader; tries++) {
        usleep(20000);
    }
    assert_int_equal(leader_index(f), leader);
    client_close(f);
    kill(f->pid[gone], SIGSTOP);
    kill(f->pid[other], SIGSTOP);
    snprintf(cmd, sizeof(cmd), "timeout 6 '%s' member remove '%s/node1' %d > /dev/null 2>&1",
             f->arbor, f->dir, gone + 1);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc));
    assert_int_not_equal(WEXITSTATUS(rc), 0); /* not committed: not done */
    kill(f->pid[gone], SIGCONT);
    kill(f->pid[other], SIGCONT);
    snprintf(cmd, sizeof(cmd), "timeout 60 '%s' member remove '%s/node1' %d > /dev/null",
             f->arbor, f->dir, gone + 1);
    assert_int_equal(system(cmd), 0);
    /* done already: the same answer */
    assert_int_equal(system(cmd), 0);
    assert_true(status_until(f, leader, two_voters));
    node_kill(f, gone, SIGTERM);
}

/* Send a request of kind (no command) to the leader; returns its rc. */
static int call_kind(struct fixture *f, enum meta_req_kind kind, uint64_t session)
{
    for (int tries = 0; tries < 200; tries++) {
        int i = f->connected_to >= 0 ? f->connected_to : 0;
        if (f->fd < 0 && !client_connect(f, i)) {
            f->connected_to = (i + 1) % f->nodes; /* down (a stale hint named it) */
            usleep(20000);
            continue;
        }
        struct meta_request req = {.id = ++f->next_id, .kind = kind, .session = session,
                                   .shard = META_ROOT_SHARD};
        if (!exchange(f, &req, NULL)) {
            client_close(f);
            continue;
        }
        if (f->resp->r.rc == -EAGAIN) { /* a new leader catches up */
            usleep(10000);
            continue;
        }
        if (f->resp->r.rc != -AR_ENOTLEADER)
            return f->resp->r.rc;
        int port = atoi(strrchr(f->resp->r.leader_addr, ':') ? strrchr(f->resp->r.leader_addr,
                                                                         ':') + 1 : "0");
        client_close(f);
        for (int k = 0; k < f->nodes; k++) {
            if (f->client_port[k] == port)
                f->connected_to = k;
        }
        usleep(20000);
    }
    return -ETIMEDOUT;
}

/* A session that stops its heartbeats is closed: the unlinked file it held
 * open goes, and its later requests get -ESTALE. A live one keeps its file. */
static void test_cluster_silent_session_is_closed_and_releases(void **state)
{
    struct fixture *f = *state;
    uint64_t ino_dead;
    uint64_t ino_live;

    assert_int_equal(call_kind(f, META_REQ_SESSION_OPEN, 0), 0);
    uint64_t dead = f->resp->r.session;
    assert_int_equal(call_kind(f, META_REQ_SESSION_OPEN, 0), 0);
    uint64_t live = f->resp->r.session;
    assert_true(dead != 0 && live != 0 && dead != live);
    assert_int_equal(mknod_at(f, 1, "held_dead", &ino_dead), 0);
    assert_int_equal(mknod_at(f, 1, "held_live", &ino_live), 0);
    struct meta_cmd op = {.op = META_OP_OPEN, .ino = ino_dead, .session = dead};
    assert_int_equal(call(f, &op, META_READ_LINEARIZABLE), 0);
    op = (struct meta_cmd){.op = META_OP_OPEN, .ino = ino_live, .session = live};
    assert_int_equal(call(f, &op, META_READ_LINEARIZABLE), 0);
    struct meta_cmd un = {.op = META_OP_UNLINK, .ino = 1, .name = "held_dead", .name_len = 9};
    assert_int_equal(call(f, &un, META_READ_LINEARIZABLE), 0);
    un = (struct meta_cmd){.op = META_OP_UNLINK, .ino = 1, .name = "held_live", .name_len = 9};
    assert_int_equal(call(f, &un, META_READ_LINEARIZABLE), 0);
    struct meta_cmd ga = {.op = META_OP_GETATTR, .ino = ino_dead};
    assert_int_equal(call(f, &ga, META_READ_LINEARIZABLE), 0); /* unlinked, still open */
    /* only the live session beats; bounded polling until the dead one's file goes */
    int rc = 0;
    for (int tries = 0; tries < 300 && rc == 0; tries++) {
        assert_int_equal(call_kind(f, META_REQ_HEARTBEAT, live), 0);
        rc = call(f, &ga, META_READ_LINEARIZABLE);
        if (rc == 0)
            usleep(20000);
    }
    assert_int_equal(rc, -ENOENT);
    assert_int_equal(call_kind(f, META_REQ_HEARTBEAT, dead), -ESTALE);
    op = (struct meta_cmd){.op = META_OP_RELEASE, .ino = ino_dead, .session = dead};
    assert_int_equal(call(f, &op, META_READ_LINEARIZABLE), -ESTALE);
    ga.ino = ino_live;
    assert_int_equal(call(f, &ga, META_READ_LINEARIZABLE), 0); /* the live one's stays */
    /* a create naming the closed session is made all the same, held by
     * none (refused, a resend of it could answer EEXIST for its own file):
     * unlinked, it goes at once */
    uint64_t ino_made;
    struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = "made_dead", .name_len = 9,
                          .mode = S_IFREG | 0644, .session = dead};
    assert_int_equal(call(f, &mk, META_READ_LINEARIZABLE), 0);
    ino_made = f->resp->r.reply.attr.ino;
    un = (struct meta_cmd){.op = META_OP_UNLINK, .ino = 1, .name = "made_dead", .name_len = 9};
    assert_int_equal(call(f, &un, META_READ_LINEARIZABLE), 0);
    ga.ino = ino_made;
    assert_int_equal(call(f, &ga, META_READ_LINEARIZABLE), -ENOENT);
}

/* Bytes the server's end of the loopback connection from client_port to
 * server_port holds unread (/proc/net/tcp's rx_queue); -1: not found. */
static long server_unread(uint16_t server_port, uint16_t client_port)
{
    FILE *in = fopen("/proc/net/tcp", "r");
    char line[256];
    long unread = -1;

    assert_non_null(in);
    while (fgets(line, sizeof(line), in) != NULL) { /* bounded by the table */
        unsigned local;
        unsigned remote;
        unsigned long tx;
        unsigned long rx;
        if (sscanf(line, " %*d: %*x:%x %*x:%x %*x %lx:%lx", &local, &remote, &tx, &rx) == 4 &&
            local == server_port && remote == client_port)
            unread = (long)rx;
    }
    fclose(in);
    return unread;
}

/* Count the whole response frames at the start of in[0, *have), each a
 * READDIR of `entries` names answered; moves what is left to the front. */
static uint32_t take_readdir_responses(struct fixture *f, uint8_t *in, size_t *have,
                                       uint32_t entries)
{
    uint32_t got = 0;
    size_t at = 0;
    uint32_t len;

    while (*have - at >= 4 && (memcpy(&len, in + at, 4), *have - at - 4 >= len)) {
        assert_int_equal(meta_response_decode(in + at + 4, len, f->resp), 0);
        assert_int_equal(f->resp->r.rc, 0);
        assert_int_equal(f->resp->r.reply.entry_count, entries);
        got++;
        at += 4 + (size_t)len;
    }
    memmove(in, in + at, *have - at);
    *have -= at;
    return got;
}

/* A client that pipelines requests and reads no responses is held back
 * (its requests wait unread in the socket) instead of growing the
 * server's memory without bound: its sends stall long before it has sent
 * requests whose responses would take 1.7 GB. The server serves others
 * meanwhile, and once the client reads, the responses come again. */
static void test_cluster_unread_responses_hold_the_client_back(void **state)
{
    struct fixture *f = *state;
    uint64_t dir = dir_of_files(f, "wide", "a_file_with_a_longer_name_", 60);
    /* follower reads: whichever replica it is (and whoever leads), it answers */
    int node = leader_index(f);
    client_close(f);
    assert_true(client_connect(f, node));
    int fd = f->fd;
    f->fd = -1; /* the calls below connect anew */
    struct sockaddr_in me;
    socklen_t me_len = sizeof(me);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &me_len), 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    struct meta_request req = {.id = 7, .shard = 1, .epoch = 1, .kind = META_REQ_COMMAND,
                               .read_mode = META_READ_FOLLOWER};
    struct meta_cmd rd = {.op = META_OP_READDIR, .ino = dir, .entry_cap = 1024,
                          .flags = META_READDIR_ATTRS};
    enum { BATCH = 2048, FRAMES = 400 * 1000 };
    uint8_t frame[256];
    size_t frame_len;
    assert_int_equal(meta_request_encode(&req, &rd, frame, sizeof(frame), &frame_len), 0);
    uint8_t *batch = malloc(BATCH * frame_len);
    assert_non_null(batch);
    for (uint32_t i = 0; i < BATCH; i++)
        memcpy(batch + i * frame_len, frame, frame_len);
    uint64_t sent_bytes = 0;
    double end = now_ms() + 30000;
    double idle_since = now_ms();
    /* bounded: FRAMES, 30 s, and a second without progress */
    while (sent_bytes < (uint64_t)FRAMES * frame_len && now_ms() < end &&
           now_ms() - idle_since < 1000) {
        size_t in_batch = (size_t)(sent_bytes % (BATCH * frame_len));
        ssize_t n = send(fd, batch + in_batch, BATCH * frame_len - in_batch, MSG_NOSIGNAL);
        if (n <= 0) {
            usleep(1000);
            continue;
        }
        sent_bytes += (uint64_t)n;
        idle_since = now_ms();
    }
    uint32_t sent = (uint32_t)(sent_bytes / frame_len);
    long unread = server_unread(f->client_port[node], ntohs(me.sin_port));
    print_message("%u requests sent before the client was held back; %ld bytes of them "
                  "unread in the server's socket\n", sent, unread);
    assert_true(sent < FRAMES);
    assert_int_equal(lookup(f, dir, "a_file_with_a_longer_name_000", META_READ_LINEARIZABLE), 0);
    client_close(f);
    /* reading, the client gets responses again, past the point where the
     * server paused (about 4,000 of these) */
    uint32_t want = 20000;
    uint32_t got = 0;
    size_t have = 0;
    size_t cap = (size_t)META_FRAME_BYTES_MAX + 4;
    uint8_t *in = malloc(cap);
    assert_non_null(in);
    end = now_ms() + 60000;
    while (got < want && now_ms() < end) { /* bounded: 60 s */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, in + have, cap - have);
        assert_true(n > 0 || (n < 0 && errno == EAGAIN)); /* 0: the server closed it */
        have += n > 0 ? (size_t)n : 0;
        got += take_readdir_responses(f, in, &have, 60);
    }
    print_message("%u responses read\n", got);
    free(in);
    free(batch);
    close(fd);
    assert_true(got >= want);
}

static void test_cluster_bad_input_gets_an_error_and_service_goes_on(void **state)
{
    struct fixture *f = *state;
    char long_name[300];

    memset(long_name, 'x', sizeof(long_name));
    long_name[299] = '\0';
    /* an oversize name is refused while decoding */
    struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = long_name, .name_len = 299,
                          .mode = S_IFREG | 0644};
    size_t len;
    struct meta_request req = {.id = 1, .shard = 1, .kind = META_REQ_COMMAND};
    assert_int_equal(meta_request_encode(&req, &mk, f->buf, META_FRAME_BYTES_MAX, &len),
                     -ENAMETOOLONG); /* our encoder refuses it too: send raw bytes instead */
    assert_true(connect_wait(f, 0));
    /* Request{id 77, kind 1, shard 1, command: Command{op 6 (mknod), ino 1,
     * name: 300 x}}: refused to its call, so the client hears it at once */
    uint8_t frame[400];
    size_t at = 4;
    frame[at++] = 0x08; frame[at++] = 77;             /* id 77 */
    frame[at++] = 0x10; frame[at++] = 1;              /* shard 1 */
    frame[at++] = 0x20; frame[at++] = 1;              /* kind command */
    frame[at++] = 0x2a; frame[at++] = 0xb4; frame[at++] = 0x02; /* command, 308 bytes */
    frame[at++] = 0x08; frame[at++] = META_OP_MKNOD;
    frame[at++] = 0x28; frame[at++] = 1;              /* ino 1 */
    frame[at++] = 0x32; frame[at++] = 0xad; frame[at++] = 0x02; /* name, 301 bytes */
    memset(frame + at, 'x', 301);
    at += 301;
    uint32_t n = (uint32_t)(at - 4);
    memcpy(frame, &n, 4);
    assert_int_equal(write(f->fd, frame, at), (ssize_t)at);
    uint32_t rn;
    assert_true(read_full(f->fd, (uint8_t *)&rn, 4, 2000));
    assert_true(read_full(f->fd, f->buf, rn, 2000));
    assert_int_equal(meta_response_decode(f->buf, rn, f->resp), 0);
    assert_int_equal(f->resp->r.rc, -ENAMETOOLONG);
    assert_int_equal(f->resp->r.id, 77);
    /* garbage in a frame: an error answer */
    uint8_t junk[] = {3, 0, 0, 0, 0xff, 0xff, 0xff};
    assert_int_equal(write(f->fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    assert_true(read_full(f->fd, (uint8_t *)&rn, 4, 2000));
    assert_true(read_full(f->fd, f->buf, rn, 2000));
    assert_int_equal(meta_response_decode(f->buf, rn, f->resp), 0);
    assert_int_equal(f->resp->r.rc, -EPROTO);
    /* an unknown shard: refused, never served */
    struct meta_request other = {.id = 7, .shard = 99, .kind = META_REQ_COMMAND};
    struct meta_cmd ga = {.op = META_OP_GETATTR, .ino = 1};
    assert_true(exchange(f, &other, &ga));
    assert_int_equal(f->resp->r.rc, -AR_EREDIRECT);
    /* an oversize frame: the connection closes */
    uint32_t huge = META_FRAME_BYTES_MAX + 1;
    assert_int_equal(write(f->fd, &huge, 4), 4);
    char c;
    assert_int_equal(read(f->fd, &c, 1), 0);
    client_close(f);
    /* and the cluster still serves */
    assert_int_equal(call(f, &ga, META_READ_LINEARIZABLE), 0);
    assert_int_equal(f->resp->r.reply.attr.ino, 1);
}

/* A follower cut off from every other replica (they are stopped) refuses
 * a read bounded by staleness once the bound has passed, and still answers
 * an unbounded one; the cluster serves again when they resume. */
static void test_cluster_stale_follower_refuses_bounded_reads(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(mknod_at(f, 1, "seen", NULL), 0);
    int leader = leader_index(f);
    int alone = (leader + 1) % f->nodes;
    int other = (leader + 2) % f->nodes;
    client_close(f);
    assert_true(follower_sees(f, alone, 1, "seen"));
    kill(f->pid[leader], SIGSTOP);
    kill(f->pid[other], SIGSTOP);
    usleep(400000); /* well past the 100 ms bound below */
    assert_true(connect_wait(f, alone));
    struct meta_cmd lk = {.op = META_OP_LOOKUP, .ino = 1, .name = "seen", .name_len = 4};
    struct meta_request bounded = {.id = ++f->next_id, .shard = META_ROOT_SHARD, .epoch = 1,
                                   .kind = META_REQ_COMMAND, .read_mode = META_READ_FOLLOWER,
                                   .stale_ms = 100};
    assert_true(exchange(f, &bounded, &lk));
    assert_int_equal(f->resp->r.rc, -AR_ENOTLEADER); /* not served: sent to a leader */
    struct meta_request any = bounded;
    any.id = ++f->next_id;
    any.stale_ms = 0;
    assert_true(exchange(f, &any, &lk));
    assert_int_equal(f->resp->r.rc, 0);
    client_close(f);
    kill(f->pid[leader], SIGCONT);
    kill(f->pid[other], SIGCONT);
    /* the cluster serves again; a resend after a slow first answer (this
     * harness resends without a client id) finds its own file */
    int rc = mknod_at(f, 1, "after", NULL);
    assert_true(rc == 0 || rc == -EEXIST);
    assert_int_equal(lookup(f, 1, "after", META_READ_LINEARIZABLE), 0);
}

/* A leader stopped (SIGSTOP) past its lease finds, when it runs again, a
 * read that waited in its socket all along: it must not answer it from
 * the lease, for the others elected a leader and took a change meanwhile.
 * Its tick timer fires once after the stop, so a lease counted in its
 * ticks alone still looked valid, and the read saw the old mode (2 of 3
 * runs before the fix; jepsen seed 143 found it). */
static void test_cluster_paused_leader_serves_no_stale_read(void **state)
{
    struct fixture *f = *state;
    uint64_t ino = 0;
    size_t len;
    uint32_t n;

    assert_int_equal(mknod_at(f, 1, "p", &ino), 0);
    int leader = leader_index(f);
    int paused_fd = f->fd; /* the read goes on this connection, to the leader */
    f->fd = -1;
    f->connected_to = (leader + 1) % f->nodes;
    kill(f->pid[leader], SIGSTOP);
    struct meta_cmd get = {.op = META_OP_GETATTR, .ino = ino};
    struct meta_request read = {.id = ++f->next_id, .shard = META_ROOT_SHARD, .epoch = 1,
                                .kind = META_REQ_COMMAND, .read_mode = META_READ_LINEARIZABLE};
    assert_int_equal(meta_request_encode(&read, &get, f->buf, META_FRAME_BYTES_MAX, &len), 0);
    assert_int_equal(write(paused_fd, f->buf, len), (ssize_t)len);
    struct meta_cmd chmod = {.op = META_OP_SETATTR, .ino = ino, .set_mask = META_SET_MODE,
                             .set.mode = 0600};
    assert_int_equal(call(f, &chmod, META_READ_LINEARIZABLE), 0);
    kill(f->pid[leader], SIGCONT);
    assert_true(read_full(paused_fd, (uint8_t *)&n, 4, 5000));
    assert_true(n <= META_FRAME_BYTES_MAX && read_full(paused_fd, f->buf, n, 5000));
    close(paused_fd);
    assert_int_equal(meta_response_decode(f->buf, n, f->resp), 0);
    assert_int_equal(f->resp->r.id, read.id);
    if (f->resp->r.rc == 0)
        assert_int_equal(f->resp->r.reply.attr.mode & 07777, 0600);
    else
        assert_int_equal(f->resp->r.rc, -AR_ENOTLEADER);
}

/* The root got its times from the first leader, the same on every
 * replica (each read there, waiting while it has none yet). */
static void root_times_agree(struct fixture *f)
{
    int64_t mtime = 0;

    for (int i = 0; i < f->nodes; i++) {
        struct meta_request rd = {.id = ++f->next_id, .shard = META_ROOT_SHARD, .epoch = 1,
                                  .kind = META_REQ_COMMAND, .read_mode = META_READ_FOLLOWER};
        struct meta_cmd ga = {.op = META_OP_GETATTR, .ino = 1};
        int64_t seen = 0;
        for (int tries = 0; tries < 200 && seen == 0; tries++) {
            assert_true(connect_wait(f, i));
            assert_true(exchange(f, &rd, &ga));
            seen = f->resp->r.rc == 0 ? f->resp->r.reply.attr.mtime_ns : 0;
            rd.id = ++f->next_id;
            if (seen == 0)
                usleep(20000);
        }
        assert_true(seen > 0);
        mtime = mtime == 0 ? seen : mtime;
        assert_true(seen == mtime);
    }
    client_close(f);
}

/* The map: written by the first leader from the cluster file; read by
 * anyone, changed by no client. Requests name a shard and its epoch. */
static void test_cluster_shard_map_and_epochs(void **state)
{
    struct fixture *f = *state;
    struct meta_map m;

    map_read(f, &m);
    assert_int_equal(m.version, 1);
    assert_string_equal(m.volume, "arbor");
    assert_int_equal(m.block_bytes, META_BLOCK_BYTES);
    assert_int_equal(m.window_s, META_WINDOW_S_DEFAULT);
    assert_true(strncmp(m.store_url, "file://", 7) == 0);
    assert_int_equal(m.member_count, 3);
    for (uint32_t i = 0; i < 3; i++) {
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", f->client_port[i]);
        assert_int_equal(m.members[i].id, i + 1);
        assert_string_equal(m.members[i].client_addr, addr);
    }
    assert_int_equal(m.shard_count, 2);
    assert_int_equal(m.shards[1].id, META_ROOT_SHARD);
    assert_int_equal(m.shards[1].root_ino, 1);
    assert_int_equal(m.shards[1].epoch, 1);
    /* inode numbers come from shard 1's lease */
    uint64_t ino;
    assert_int_equal(mknod_at(f, 1, "leased", &ino), 0);
    assert_true(ino >= m.shards[1].ino_lo && ino < m.shards[1].ino_hi);
    /* slice ids too, each range once */
    struct meta_cmd al = {.op = META_OP_ALLOC_SLICES, .length = 100};
    assert_int_equal(call(f, &al, META_READ_LINEARIZABLE), 0);
    uint64_t first = f->resp->r.reply.attr.ino;
    assert_int_equal(f->resp->r.reply.attr.size, 100);
    assert_int_equal(call(f, &al, META_READ_LINEARIZABLE), 0);
    assert_true(f->resp->r.reply.attr.ino >= first + 100);
    assert_true(first >= m.shards[1].slice_lo && first < m.shards[1].slice_hi);
    /* a stale epoch is refused with the current one, and nothing happens */
    assert_true(connect_wait(f, 0));
    struct meta_request old = {.id = ++f->next_id, .shard = META_ROOT_SHARD, .epoch = 7,
                               .kind = META_REQ_COMMAND};
    struct meta_cmd mk = {.op = META_OP_MKNOD, .ino = 1, .name = "never", .name_len = 5,
                          .mode = S_IFREG | 0644};
    assert_true(exchange(f, &old, &mk));
    assert_int_equal(f->resp->r.rc, -AR_ESTALEEPOCH);
    assert_int_equal(f->resp->r.epoch, 1);
    assert_int_equal(lookup(f, 1, "never", META_READ_LINEARIZABLE), -ENOENT);
    /* no client writes the map; the map shard holds no files */
    static uint8_t bytes[META_MAP_BYTES_ENC_MAX];
    size_t len;
    m.version++;
    assert_int_equal(meta_map_encode(&m, bytes, sizeof(bytes), &len), 0);
    struct meta_cmd set = {.op = META_OP_MAP_SET, .cookie = m.version - 1, .value = bytes,
                           .value_len = (uint32_t)len};
    assert_int_equal(call_shard(f, META_MAP_SHARD, &set, META_READ_LINEARIZABLE), -EPERM);
    assert_int_equal(call_shard(f, META_MAP_SHARD, &mk, META_READ_LINEARIZABLE), -AR_EREDIRECT);
    root_times_agree(f);
}

/* ---- a full disk ---------------------------------------------------------------------- */

/* arbor status, its output in out: the exit status. */
static int status_run(struct fixture *f, const char *out)
{
    char cmd[900];
    snprintf(cmd, sizeof(cmd), "'%s' status --meta 127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u > '%s'",
             f->arbor, f->client_port[0], f->client_port[1], f->client_port[2], out);
    int said = system(cmd);
    return WIFEXITED(said) ? WEXITSTATUS(said) : -1;
}


/* Three servers on a 320 MiB tmpfs, keeping 192 MiB free for themselves. */
static int setup_small_disk(void **state)
{
    static const char *const args[] = {"--disk-reserve", "192M", NULL};

    return cluster_setup_small_disk(state, "320m", args);
}

static uint64_t leader_free;
static uint64_t leader_reserve;

static bool room_known(const struct meta_response *r)
{
    leader_free = r->disk_free_bytes;
    leader_reserve = r->disk_reserve_bytes;
    return r->disk_reserve_bytes > 0 && r->memory_available_bytes > 0;
}

/* mknod name in dir, tried again while the cluster answers ENOSPC (the
 * replicas read their disks every 100 ms, and a leader hears of a
 * follower's within a heartbeat); bounded at 20 s. */
static int mknod_once_room(struct fixture *f, uint64_t dir, const char *name, uint64_t *ino)
{
    int rc = -ENOSPC;

    for (int tries = 0; tries < 200 && rc == -ENOSPC; tries++) {
        rc = mknod_at(f, dir, name, ino);
        if (rc == -ENOSPC)
            usleep(100000);
    }
    return rc;
}

/* The file:// store keeps 128 MiB: a put past it is refused, not made. */
static void store_keeps_its_floor(struct fixture *f)
{
    char url[400];
    char errmsg[AR_ERRMSG_MAX] = "";
    struct obj_store *st = NULL;
    static uint8_t block[1u << 20];

    snprintf(url, sizeof(url), "file://%s/store", f->dir);
    assert_int_equal(mkdir(url + 7, 0755), 0);
    assert_int_equal(obj_store_open(url, NULL, &st, errmsg), 0);
    assert_int_equal(obj_put(st, "a", block, sizeof(block), errmsg), 0);
    small_disk_fill(f, 100u << 20);
    assert_int_equal(obj_put(st, "b", block, sizeof(block), errmsg), -ENOSPC);
    assert_non_null(strstr(errmsg, "MiB free, under the 128 MiB it keeps"));
    small_disk_fill(f, 0);
    assert_int_equal(obj_put(st, "b", block, sizeof(block), errmsg), 0);
    obj_store_close(st);
}

/* Under the reserve a leader refuses growth with ENOSPC, serves reads and
 * removals, and every replica stays up; with room again, writes go on. */
static void test_cluster_full_disk_refuses_growth_and_keeps_serving(void **state)
{
    struct fixture *f = *state;
    char name[32];
    uint64_t ino;
    uint64_t dir = dir_of_files(f, "d", "before_", 20);
    int leader = leader_index(f);
    assert_true(status_until(f, leader, room_known));
    assert_int_equal(leader_reserve, 192u << 20);
    assert_true(leader_free > leader_reserve); /* room at first */
    /* a client's numbered command, applied now; its retry comes later */
    struct meta_cmd once = {.op = META_OP_MKNOD, .ino = dir, .name = "once", .name_len = 4,
                            .mode = S_IFREG | 0644, .client_id = 4242, .seq = 1};
    assert_int_equal(call(f, &once, META_READ_LINEARIZABLE), 0);
    uint64_t once_ino = f->resp->r.reply.attr.ino;

    /* about 100 MiB free: under the servers' reserve */
    small_disk_fill(f, 100u << 20);
    int rc = 0;
    for (int tries = 0; tries < 100 && rc != -ENOSPC; tries++) { /* checked each second */
        snprintf(name, sizeof(name), "try_%03d", tries);
        rc = mknod_at(f, dir, name, NULL);
        if (rc != -ENOSPC)
            usleep(50000);
    }
    assert_int_equal(rc, -ENOSPC);
    struct meta_cmd md = {.op = META_OP_MKDIR, .ino = dir, .name = "sub", .name_len = 3,
                          .mode = 0755};
    assert_int_equal(call(f, &md, META_READ_LINEARIZABLE), -ENOSPC);
    /* a retry gets its first answer, not ENOSPC; the client's next command is refused */
    assert_int_equal(call(f, &once, META_READ_LINEARIZABLE), 0);
    assert_int_equal(f->resp->r.reply.attr.ino, once_ino);
    struct meta_cmd next = once;
    next.name = "next";
    next.seq = 2;
    assert_int_equal(call(f, &next, META_READ_LINEARIZABLE), -ENOSPC);
    /* reads and removals are served */
    assert_int_equal(lookup(f, dir, "before_000", META_READ_LINEARIZABLE), 0);
    struct meta_cmd rm = {.op = META_OP_UNLINK, .ino = dir, .name = "before_001", .name_len = 10};
    assert_int_equal(call(f, &rm, META_READ_LINEARIZABLE), 0);
    assert_int_equal(lookup(f, dir, "before_001", META_READ_LINEARIZABLE), -ENOENT);
    leader = leader_index(f);
    assert_true(status_until(f, leader, room_known));
    assert_true(leader_free < leader_reserve);
    char log[400];
    snprintf(log, sizeof(log), "%s/node%d.log", f->dir, leader + 1);
    assert_true(harness_count_lines(log, "under the reserve of 192 MiB") > 0);
    /* arbor status says so, and exits 1 for a monitor */
    char out[400];
    snprintf(out, sizeof(out), "%s/status.out", f->dir);
    assert_int_equal(status_run(f, out), 1);
    assert_true(harness_count_lines(out, "under its reserve: its leader refuses new files") > 0);

    /* room again: creates go on, and no replica stopped meanwhile */
    small_disk_fill(f, 0);
    assert_int_equal(mknod_once_room(f, dir, "after", &ino), 0);
    assert_true(harness_count_lines(log, "has room again") > 0);
    /* 0 once the archive, whose puts the store refused too, stores again */
    int said = 1;
    for (int tries = 0; tries < 100 && said != 0; tries++) {
        said = status_run(f, out);
        if (said != 0)
            usleep(100000); /* 10 s in all */
    }
    assert_int_equal(said, 0);
    for (int i = 0; i < f->nodes; i++)
        assert_int_equal(waitpid(f->pid[i], NULL, WNOHANG), 0);
    store_keeps_its_floor(f);
}

/* The archive cannot store what shard 1 commits (its log's directory in
 * the store replaced by a file): arbor status names the replica and the
 * store's error and exits 1; once the store takes it again, 0. Before,
 * status said nothing, and a restore found out. */
static void test_cluster_status_says_the_archive_fails(void **state)
{
    struct fixture *f = *state;
    char out[400];
    char line[1200];
    char store[700] = "";
    uint64_t ino;

    snprintf(out, sizeof(out), "%s/status.out", f->dir);
    assert_int_equal(mknod_at(f, 1, "first", &ino), 0);
    /* the store, from the map's line: "... blocks of N KiB in file://DIR, ..." */
    int rc = 1;
    for (int tries = 0; tries < 100 && (rc != 0 || store[0] == '\0'); tries++) { /* 10 s */
        rc = status_run(f, out);
        FILE *o = fopen(out, "r");
        assert_non_null(o);
        while (fgets(line, sizeof(line), o) != NULL) { /* bounded by the file */
            const char *at = strstr(line, " in file://");
            if (strncmp(line, "shard map", 9) == 0 && at != NULL)
                snprintf(store, sizeof(store), "%.*s", (int)strcspn(at + 11, ","), at + 11);
        }
        fclose(o);
        if (rc != 0 || store[0] == '\0')
            usleep(100000);
    }
    assert_int_equal(rc, 0);
    assert_true(store[0] == '/');

    char log_dir[800];
    char away[820];
    snprintf(log_dir, sizeof(log_dir), "%s/pitr/s1/log", store);
    snprintf(away, sizeof(away), "%s.away", log_dir);
    for (int tries = 0; tries < 100 && access(log_dir, F_OK) != 0; tries++) /* archived yet */
        usleep(100000);
    assert_int_equal(rename(log_dir, away), 0);
    int fd = open(log_dir, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    close(fd);
    rc = 0;
    for (int i = 0; i < 300 && rc == 0; i++) { /* 30 s: commits for the archive to store */
        char name[32];
        snprintf(name, sizeof(name), "during_%03d", i);
        assert_int_equal(mknod_at(f, 1, name, &ino), 0);
        rc = status_run(f, out);
        if (rc == 0)
            usleep(100000);
    }
    assert_int_equal(rc, 1);
    assert_true(harness_count_lines(out, "its archive fails, so a restore cannot reach past") ==
                1);
    assert_true(harness_count_lines(out, "shard 1: archive log failed") == 1);

    assert_int_equal(unlink(log_dir), 0);
    assert_int_equal(rename(away, log_dir), 0);
    for (int i = 0; i < 300 && rc != 0; i++) { /* 30 s: its pause after a failure */
        char name[32];
        snprintf(name, sizeof(name), "after_%03d", i);
        assert_int_equal(mknod_at(f, 1, name, &ino), 0);
        rc = status_run(f, out);
        if (rc != 0)
            usleep(100000);
    }
    assert_int_equal(rc, 0);
}

/* A follower whose disk is under its reserve says so in its raft
 * messages, and its leader refuses growth (ENOSPC) as for its own disk:
 * the follower would fail its next write and stop. Reads and removals go
 * on; once the follower has room, so do creates. */
static void test_cluster_follower_full_disk_stops_growth(void **state)
{
    struct fixture *f = *state;
    struct statvfs vfs;
    char out[400];
    char log[400];
    uint64_t ino;
    uint64_t dir = dir_of_files(f, "d", "before_", 4);
    int leader = leader_index(f);
    int low = (leader + 1) % 3;

    assert_int_equal(statvfs(f->dir, &vfs), 0);
    if ((uint64_t)vfs.f_bavail * vfs.f_frsize >= (1ull << 40))
        skip(); /* a reserve of 1 TiB, the most allowed, would not be under */
    node_kill(f, low, SIGKILL);
    f->serve_args[0] = "--disk-reserve";
    f->serve_args[1] = "1T"; /* the most allowed */
    node_start(f, low);
    f->serve_args[0] = NULL;
    f->serve_args[1] = NULL;
    int rc = 0;
    for (int tries = 0; tries < 200 && rc != -ENOSPC; tries++) { /* 20 s: a restart, then news */
        char name[32];
        snprintf(name, sizeof(name), "try_%03d", tries);
        rc = mknod_at(f, dir, name, NULL);
        if (rc != -ENOSPC)
            usleep(100000);
    }
    assert_int_equal(rc, -ENOSPC);
    leader = leader_index(f);
    snprintf(log, sizeof(log), "%s/node%d.log", f->dir, leader + 1);
    if (leader != low) { /* the low one may have been elected meanwhile: its own disk refuses */
        char said[80];
        snprintf(said, sizeof(said), "replica %d says its disk is under its reserve", low + 1);
        assert_true(harness_count_lines(log, said) > 0);
    }
    assert_int_equal(lookup(f, dir, "before_000", META_READ_LINEARIZABLE), 0);
    struct meta_cmd rm = {.op = META_OP_UNLINK, .ino = dir, .name = "before_001", .name_len = 10};
    assert_int_equal(call(f, &rm, META_READ_LINEARIZABLE), 0);
    snprintf(out, sizeof(out), "%s/status.out", f->dir);
    assert_int_equal(status_run(f, out), 1);
    char named[80];
    snprintf(named, sizeof(named), "replica %d (127.0.0.1:%u): its disk has", low + 1,
             f->client_port[low]);
    assert_true(harness_count_lines(out, named) == 1);

    node_kill(f, low, SIGKILL);
    node_start(f, low);
    assert_int_equal(mknod_once_room(f, dir, "after", &ino), 0);
    assert_int_equal(lookup(f, dir, "before_001", META_READ_LINEARIZABLE), -ENOENT);
}

/* The commands that take --meta (and arbor mount) resolve a host name
 * given there; one that does not resolve, or a port out of range, is said
 * before anything is tried. */
static void test_cluster_commands_take_host_names(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *meta;
        int status;
        const char *said;
    } cases[] = {
        {"localhost:", 0, "recovery window: 604800 s"},
        {"no-such-host.invalid:", 1, "cannot resolve no-such-host.invalid:"},
        {"127.0.0.1:0", 1, "127.0.0.1:0 is not HOST:PORT (a port from 1 to 65535)"},
    };
    char meta[100];
    char out[400];
    char cmd[1000];

    snprintf(out, sizeof(out), "%s/window.out", f->dir);
    for (size_t i = 0; i < AR_ARRAY_LEN(cases); i++) {
        /* HOST: takes the fixture's port */
        size_t len = strlen(cases[i].meta);
        if (cases[i].meta[len - 1] == ':')
            snprintf(meta, sizeof(meta), "%s%u", cases[i].meta, f->client_port[0]);
        else
            snprintf(meta, sizeof(meta), "%s", cases[i].meta);
        snprintf(cmd, sizeof(cmd), "timeout 60 '%s' window --meta %s > '%s' 2>&1", f->arbor, meta,
                 out);
        int status = system(cmd);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != cases[i].status ||
            !file_has(out, cases[i].said)) {
            snprintf(cmd, sizeof(cmd), "cat '%s' >&2", out);
            assert_int_equal(system(cmd), 0);
            fail_msg("window --meta %s: status %#x, wanted %d and \"%s\"", meta, status,
                     cases[i].status, cases[i].said);
        }
    }
}

/* arbor format names what is wrong in its input, and makes nothing: a
 * member list it cannot read, an id not in it, a store URL the servers
 * could not open. Store credentials missing here only draw a note (the
 * servers may have them). */
static void test_cluster_format_says_what_is_wrong_and_makes_nothing(void **state)
{
    static const struct {
        const char *args;
        int status;
        const char *said;
    } cases[] = {
        {"--nodes 1=127.0.0.1:70000/127.0.0.1:7001", 2,
         "--nodes: 1=127.0.0.1:70000/127.0.0.1:7001: an address is not IP:PORT"},
        {"--nodes 1=127.0.0.1:7000/127.0.0.1:7001,1=127.0.0.1:7002/127.0.0.1:7003", 2,
         "--nodes: 1=127.0.0.1:7002/127.0.0.1:7003: its id is taken by an earlier member"},
        {"--nodes 1=127.0.0.1:7000", 2, "--nodes: 1=127.0.0.1:7000: not ID=RAFT/CLIENT"},
        {"--nodes 2=127.0.0.1:7000/127.0.0.1:7001", 1, "--id 1 is not among the --nodes"},
        {"--nodes 1=127.0.0.1:7000/127.0.0.1:7001 --store s3://", 2,
         "--store s3://: s3:// URL needs a bucket name"},
        {"--nodes 1=127.0.0.1:7000/127.0.0.1:7001 --store ftp://x", 2,
         "unknown store scheme 'ftp://'"},
        {"--nodes 1=127.0.0.1:7000/127.0.0.1:7001 --store 's3://b/p?region=x&bogus=1'", 2,
         "unknown s3:// URL parameter 'bogus'"},
        {"--nodes 1=127.0.0.1:7000/127.0.0.1:7001 --store file:///no/such/arbor/dir", 1,
         "store directory /no/such/arbor/dir: No such file or directory"},
        /* a name the cluster file could not hold whole (it is one line of it) */
        {"--nodes 1=127.0.0.1:7000/127.0.0.1:7001 --volume 'a\nself 2'", 2,
         "--volume wants 1 to 63 letters, digits"},
        {"--nodes 1=127.0.0.1:7000/127.0.0.1:7001 --voters 1,x", 2,
         "--voters wants member ids from 1"},
        {"--nodes 1=127.0.0.1:7000/127.0.0.1:7001 --voters 1,1", 1, "voter 1 is named twice"},
    };
    char dir[256];
    char arbor[512];
    char cmd[1600];
    char out[400];
    char data[400];

    (void)state;
    harness_tmpdir(dir);
    snprintf(arbor, sizeof(arbor), "%s/tools/arbor", getenv("ARBOR_BUILD_ROOT"));
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(data, sizeof(data), "%s/node", dir);
    for (size_t i = 0; i < AR_ARRAY_LEN(cases); i++) {
        snprintf(cmd, sizeof(cmd), "env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "
                 "'%s' format '%s' --id 1 %s > '%s' 2>&1", arbor, data, cases[i].args, out);
        int status = system(cmd);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != cases[i].status ||
            !file_has(out, cases[i].said)) {
            snprintf(cmd, sizeof(cmd), "cat '%s' >&2", out);
            assert_int_equal(system(cmd), 0);
            fail_msg("format %s: status %#x, wanted %d and \"%s\"", cases[i].args, status,
                     cases[i].status, cases[i].said);
        }
        assert_int_equal(access(data, F_OK), -1); /* nothing made */
    }
    /* no credentials here: a note, and the replica is made */
    snprintf(cmd, sizeof(cmd), "env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "
             "AWS_SHARED_CREDENTIALS_FILE=/nonexistent '%s' format '%s' --id 1 --nodes "
             "1=127.0.0.1:7000/127.0.0.1:7001 --store 's3://b/p?region=x' > '%s' 2>&1",
             arbor, data, out);
    assert_int_equal(system(cmd), 0);
    assert_true(file_has(out, "the servers will need them"));
    snprintf(cmd, sizeof(cmd), "%s/cluster", data);
    assert_int_equal(access(cmd, F_OK), 0);
    harness_rm_rf(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, cluster_teardown)
    const struct CMUnitTest tests[] = {
        T(test_cluster_creates_lookups_and_readdir),
        T(test_cluster_leader_crash_loses_nothing_acknowledged),
        T(test_cluster_unread_responses_hold_the_client_back),
        T(test_cluster_bad_input_gets_an_error_and_service_goes_on),
        T(test_cluster_silent_session_is_closed_and_releases),
        T(test_cluster_shard_map_and_epochs),
        T(test_cluster_stale_follower_refuses_bounded_reads),
        T(test_cluster_paused_leader_serves_no_stale_read),
        T(test_cluster_member_remove_returns_once_committed),
        T(test_cluster_status_says_the_archive_fails),
        T(test_cluster_follower_full_disk_stops_growth),
        T(test_cluster_commands_take_host_names),
        cmocka_unit_test(test_cluster_format_says_what_is_wrong_and_makes_nothing),
        cmocka_unit_test_setup_teardown(test_cluster_follower_catches_up_by_snapshot,
                                        setup_small_log, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_fourth_replica_joins_and_serves,
                                        setup_spare, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_full_disk_refuses_growth_and_keeps_serving,
                                        setup_small_disk, cluster_teardown),
    };
#undef T
    /* ARBOR_TEST_ONLY=PATTERN runs the tests whose names match (cmocka's filter) */
    if (getenv("ARBOR_TEST_ONLY") != NULL)
        cmocka_set_test_filter(getenv("ARBOR_TEST_ONLY"));
    return cmocka_run_group_tests_name("test_cluster", tests, NULL, NULL);
}
