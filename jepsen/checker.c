/* jepsen/checker.c - the linearizability checker (checker.h).
 *
 * Per key: the operations' invocations and completions form one list in
 * time order. The search walks it: at an invocation it tries to take the
 * operation now (the model must accept it, and the pair (operations taken,
 * state) must be new: Lowe's memoisation), lifting its two events out of
 * the list and starting over from the front; at a completion of an
 * operation not taken yet it backtracks, undoing the last one taken (the
 * events go back in the reverse order they left, dancing-links style).
 * Reaching the end with no completion left means every completed
 * operation found its place; running out of undo means none can be found,
 * and the operation reported is the one that stopped the deepest try; indeterminate ones never block (they have no
 * completion), so they may take effect late or never.
 *
 * An observation (a read, or a refusal: it changed nothing) is never tried
 * anywhere but where it was first taken. Taken there, it agreed with the
 * state, and every operation not taken yet completes after its invocation,
 * so any order that places it later can place it there instead. So when
 * the search undoes an observation it undoes the operation before it as
 * well. Without this rule a history with reads allowed to be stale
 * (jepsen/worker --stale-ms) and no order to find took more than 8 GiB
 * and minutes to say so. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"

struct event {
    uint64_t time;
    uint32_t op;        /* index into the key's ops */
    bool is_call;
    uint32_t prev, next;
};

struct frame {
    uint32_t op;
    int64_t state;
};

/* The memo: (taken set, state) pairs seen, open addressing on a hash. */
struct memo {
    uint64_t *hashes;   /* 0: empty */
    uint64_t **sets;
    int64_t *states;
    size_t cap;
    size_t count;
    size_t words;       /* of each set */
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    return x ^ (x >> 33);
}

static uint64_t set_hash(const uint64_t *set, size_t words, int64_t state)
{
    uint64_t h = mix((uint64_t)state ^ 0x9e3779b97f4a7c15ull);

    for (size_t i = 0; i < words; i++) {
        h = mix(h ^ set[i]);
    }
    return h | 1u; /* never 0 */
}

static void memo_free(struct memo *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->sets[i]);
    }
    free(m->hashes);
    free(m->sets);
    free(m->states);
}

/* true if (set, state) was new (and is now recorded); -ENOMEM in *rc. */
static bool memo_add(struct memo *m, const uint64_t *set, int64_t state, int *rc)
{
    if ((m->count + 1) * 2 > m->cap) {
        struct memo n = {.cap = m->cap == 0 ? 1024 : m->cap * 2, .words = m->words};
        n.hashes = calloc(n.cap, sizeof(*n.hashes));
        n.sets = calloc(n.cap, sizeof(*n.sets));
        n.states = calloc(n.cap, sizeof(*n.states));
        if (n.hashes == NULL || n.sets == NULL || n.states == NULL) {
            memo_free(&n);
            *rc = -ENOMEM;
            return false;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (m->hashes[i] == 0)
                continue;
            size_t k = m->hashes[i] & (n.cap - 1);
            while (n.hashes[k] != 0) {
                k = (k + 1) & (n.cap - 1);
            }
            n.hashes[k] = m->hashes[i];
            n.sets[k] = m->sets[i];
            n.states[k] = m->states[i];
            m->sets[i] = NULL;
        }
        n.count = m->count;
        memo_free(m);
        *m = n;
    }
    uint64_t h = set_hash(set, m->words, state);
    size_t k = h & (m->cap - 1);
    while (m->hashes[k] != 0) {
        if (m->hashes[k] == h && m->states[k] == state &&
            memcmp(m->sets[k], set, m->words * sizeof(*set)) == 0)
            return false;
        k = (k + 1) & (m->cap - 1);
    }
    m->sets[k] = malloc(m->words * sizeof(*set));
    if (m->sets[k] == NULL) {
        *rc = -ENOMEM;
        return false;
    }
    memcpy(m->sets[k], set, m->words * sizeof(*set));
    m->hashes[k] = h;
    m->states[k] = state;
    m->count++;
    return true;
}

/* Completed, and changed nothing: a read or a refusal (see the top). */
static bool is_observation(const struct jk_op *op)
{
    return op->kind == JK_OK && (op->fn == JK_READ || op->is_refused);
}

/* The register's answer to op in state: whether it agrees, and the state after. */
static bool step(const struct jk_op *op, int64_t state, int64_t *next)
{
    *next = state;
    switch (op->fn) {
    case JK_WRITE:
        *next = op->value;
        return true;
    case JK_READ:
        return op->kind == JK_INFO || state == op->value;
    case JK_CAS:
        if (op->kind == JK_OK && op->is_refused)
            return state != op->value;
        if (state != op->value)
            return false;
        *next = op->value2;
        return true;
    case JK_ADD:
    case JK_REMOVE: {
        uint64_t bit = 1ull << (op->value & 63);
        bool is_there = ((uint64_t)state & bit) != 0;
        if (op->kind == JK_OK && op->is_refused)
            return is_there == (op->fn == JK_ADD); /* EEXIST, or ENOENT */
        if (is_there == (op->fn == JK_ADD))
            return false;
        *next = (int64_t)((uint64_t)state ^ bit);
        return true;
    }
    case JK_MOVE: {
        uint64_t from = 1ull << (op->value & 63);
        bool is_there = ((uint64_t)state & from) != 0;
        if (op->kind == JK_OK && op->is_refused)
            return !is_there; /* ENOENT */
        if (!is_there)
            return false;
        *next = (int64_t)(((uint64_t)state & ~from) | (1ull << (op->value2 & 63)));
        return true;
    }
    }
    return false;
}

static int cmp_event(const void *a, const void *b)
{
    const struct event *x = a;
    const struct event *y = b;

    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    /* at one instant calls come first: the two may overlap */
    if (x->is_call != y->is_call)
        return x->is_call ? -1 : 1;
    return (x->op > y->op) - (x->op < y->op);
}

/* Take event i out of the list, or put it back where it was. */
static void event_lift(struct event *ev, uint32_t i)
{
    ev[ev[i].prev].next = ev[i].next;
    ev[ev[i].next].prev = ev[i].prev;
}

static void event_restore(struct event *ev, uint32_t i)
{
    ev[ev[i].prev].next = i;
    ev[ev[i].next].prev = i;
}

/* The n ops' calls and returns (none for info), in time order, linked
 * between a head ev[0] and a tail ev[count + 1]; each op's call and
 * return indexes. Returns count. */
static uint32_t events_build(const struct jk_op *const *ops, uint32_t n, struct event *ev,
                             uint32_t *call_of, uint32_t *ret_of)
{
    uint32_t count = 0;

    for (uint32_t i = 0; i < n; i++) {
        ev[1 + count++] = (struct event){.time = ops[i]->invoke, .op = i, .is_call = true};
        if (ops[i]->kind != JK_INFO)
            ev[1 + count++] = (struct event){.time = ops[i]->complete, .op = i};
    }
    qsort(ev + 1, count, sizeof(*ev), cmp_event);
    uint32_t tail = count + 1;
    for (uint32_t i = 0; i <= count + 1; i++) {
        ev[i].prev = i == 0 ? 0 : i - 1;
        ev[i].next = i == tail ? tail : i + 1;
        if (i >= 1 && i <= count)
            *(ev[i].is_call ? &call_of[ev[i].op] : &ret_of[ev[i].op]) = i;
    }
    return count;
}

/* The op whose completion stopped the deepest search, the value then,
 * and that depth. */
struct stuck {
    uint32_t op;
    int64_t state;
    int64_t depth;
};

/* One key's operations: 1 linearizable, 0 not (*bad: the op that could not
 * be placed, *bad_state: the value in the longest order found then), or
 * -ENOMEM. */
static int check_key(const struct jk_op *const *ops, uint32_t n, uint32_t *bad,
                     int64_t *bad_state, uint64_t *states)
{
    struct event *ev = calloc((size_t)n * 2 + 2, sizeof(*ev)); /* [0] head, [last] tail */
    uint32_t *call_of = calloc(n, sizeof(*call_of));
    uint32_t *ret_of = calloc(n, sizeof(*ret_of));
    struct frame *stack = calloc(n + 1, sizeof(*stack));
    struct memo memo = {.words = (n + 63) / 64};
    uint64_t *set = calloc(memo.words + 1, sizeof(*set));
    int rc = ev && call_of && ret_of && stack && set ? 1 : -ENOMEM;

    uint32_t tail = rc == 1 ? events_build(ops, n, ev, call_of, ret_of) + 1 : 0;
    int64_t state = 0;
    uint32_t depth = 0;
    struct stuck stuck = {.depth = -1};
    uint32_t e = rc == 1 ? ev[0].next : tail;
    while (rc == 1 && e != tail) {
        const struct event *x = &ev[e];
        if (x->is_call) {
            int64_t next;
            uint32_t o = x->op;
            if (step(ops[o], state, &next)) {
                set[o / 64] |= 1ull << (o % 64);
                (*states)++;
                if (memo_add(&memo, set, next, &rc)) {
                    stack[depth++] = (struct frame){.op = o, .state = state};
                    state = next;
                    event_lift(ev, e); /* its events out */
                    if (ops[o]->kind != JK_INFO)
                        event_lift(ev, ret_of[o]);
                    e = ev[0].next;
                    continue;
                }
                set[o / 64] &= ~(1ull << (o % 64));
                if (rc < 0)
                    break;
            }
            e = ev[e].next;
            continue;
        }
        /* a completion of an operation not placed: undo the last one placed,
         * and past it while it is an observation */
        if ((int64_t)depth > stuck.depth)
            stuck = (struct stuck){.op = x->op, .state = state, .depth = depth};
        bool is_undoing = true;
        while (is_undoing && depth > 0) {
            struct frame f = stack[--depth];
            state = f.state;
            set[f.op / 64] &= ~(1ull << (f.op % 64));
            uint32_t c = call_of[f.op];
            if (ops[f.op]->kind != JK_INFO)
                event_restore(ev, ret_of[f.op]);
            event_restore(ev, c);
            e = ev[c].next;
            is_undoing = is_observation(ops[f.op]);
        }
        if (is_undoing) { /* nothing left to undo: no order exists */
            *bad = stuck.op;
            *bad_state = stuck.state;
            rc = 0;
            break;
        }
    }
    memo_free(&memo);
    free(ev);
    free(call_of);
    free(ret_of);
    free(stack);
    free(set);
    return rc;
}

static int cmp_index(const void *a, const void *b, void *ops)
{
    const struct jk_op *x = &((const struct jk_op *)ops)[*(const size_t *)a];
    const struct jk_op *y = &((const struct jk_op *)ops)[*(const size_t *)b];

    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->invoke > y->invoke) - (x->invoke < y->invoke);
}

int jk_check(const struct jk_op *ops, size_t count, struct jk_result *out)
{
    memset(out, 0, sizeof(*out));
    out->is_linearizable = true;
    for (size_t i = 0; i < count; i++) {
        const struct jk_op *o = &ops[i];
        bool is_name = o->fn == JK_ADD || o->fn == JK_REMOVE || o->fn == JK_MOVE;
        if (o->fn < JK_READ || o->fn > JK_MOVE || o->kind < JK_OK || o->kind > JK_INFO ||
            (o->kind != JK_INFO && o->complete < o->invoke) ||
            (is_name && (o->value < 0 || o->value > 63)) ||
            (o->fn == JK_MOVE && (o->value2 < 0 || o->value2 > 63)))
            return -EINVAL;
    }
    /* what took no effect or says nothing goes: failed ops, unknown reads */
    size_t *idx = malloc((count + 1) * sizeof(*idx));
    const struct jk_op **group = malloc((count + 1) * sizeof(*group));
    if (idx == NULL || group == NULL) {
        free(idx);
        free(group);
        return -ENOMEM;
    }
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (ops[i].kind != JK_FAIL && !(ops[i].kind == JK_INFO && ops[i].fn == JK_READ))
            idx[kept++] = i;
    }
    qsort_r(idx, kept, sizeof(*idx), cmp_index, (void *)(uintptr_t)ops);
    int rc = 0;
    for (size_t first = 0; rc == 0 && first < kept && out->is_linearizable;) {
        size_t end = first;
        while (end < kept && ops[idx[end]].key == ops[idx[first]].key) {
            group[end - first] = &ops[idx[end]];
            end++;
        }
        uint32_t bad = 0;
        int64_t bad_state = 0;
        int r = check_key(group, (uint32_t)(end - first), &bad, &bad_state, &out->states);
        if (r < 0)
            rc = r;
        else if (r == 0)
            *out = (struct jk_result){.is_linearizable = false, .key = ops[idx[first]].key,
                                      .op = idx[first + bad], .state = bad_state,
                                      .states = out->states};
        first = end;
    }
    free(idx);
    free(group);
    return rc;
}

int jk_parse_line(const char *line, struct jk_op *op)
{
    char kind[8];
    char fn[8];
    char complete[24];
    unsigned long long invoke;
    unsigned process;
    unsigned long long key;
    long long v1;
    long long v2 = 0;
    int n = sscanf(line, "%llu %23s %u %7s %7s %llu %lld %lld", &invoke, complete, &process, kind,
                   fn, &key, &v1, &v2);

    if (n < 7)
        return -EINVAL;
    *op = (struct jk_op){.process = process, .key = key, .value = v1, .value2 = v2,
                         .invoke = invoke};
    op->kind = strcmp(kind, "ok") == 0 ? JK_OK : strcmp(kind, "fail") == 0 ? JK_FAIL
               : strcmp(kind, "info") == 0 ? JK_INFO : 0;
    static const struct {
        const char *name;
        enum jk_fn fn;
    } fns[] = {{"read", JK_READ}, {"write", JK_WRITE}, {"cas", JK_CAS}, {"add", JK_ADD},
               {"remove", JK_REMOVE}, {"move", JK_MOVE}};
    size_t len = strlen(fn);
    bool is_refused = len > 0 && fn[len - 1] == '!';
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        if (strlen(fns[i].name) == len - is_refused && strncmp(fn, fns[i].name, len - is_refused) == 0)
            op->fn = fns[i].fn;
    }
    op->is_refused = is_refused;
    if (is_refused && (op->fn == JK_READ || op->fn == JK_WRITE))
        op->fn = 0;
    char *end = NULL;
    if (op->kind != JK_INFO)
        op->complete = strtoull(complete, &end, 10);
    bool is_complete_ok = op->kind == JK_INFO ? strcmp(complete, "-") == 0
                                              : end != complete && *end == '\0';
    if (op->kind == 0 || op->fn == 0 || !is_complete_ok || (op->fn == JK_CAS || op->fn == JK_MOVE) != (n == 8) ||
        (op->kind != JK_INFO && op->complete < op->invoke))
        return -EINVAL;
    return 0;
}
