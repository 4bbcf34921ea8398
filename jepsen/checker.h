/* jepsen/checker.h - arbor's linearizability checker, public header.
 *
 * A history is what the clients of a fault-injection run saw: each
 * operation invoked and then completed ok, failed (certainly not applied)
 * or left indeterminate ("info": a timeout, a crash; it may apply at any
 * later moment, or never). The checker decides whether some order of the
 * operations, each taking effect at one instant between its invocation
 * and its completion, explains every result: Wing and Gong's search with
 * Lowe's memoisation of (linearized set, state), run per key
 * (P-compositionality: a history is linearizable iff each key's is).
 *
 * The model is a register per key holding a 64-bit value (0: never
 * written): write v; read -> v; cas(from, to) -> ok if the value was from
 * (the rename-over pattern a training job's checkpoints use). The same
 * register holds a set of up to 64 names (a directory's, bit i for name
 * i): add i (create), remove i (unlink), move(i, j) (rename i over j:
 * i goes, j is there after, whether or not it was before), and read -> the
 * whole set. An operation that completed but was refused by the state (a
 * cas that found another value, a create that found the name, an unlink
 * or rename that did not)
 * has is_refused set; a failed operation of the "fail" kind never took
 * effect and is dropped.
 */
#ifndef ARBOR_JEPSEN_CHECKER_H
#define ARBOR_JEPSEN_CHECKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jk_kind { JK_OK = 1, JK_FAIL, JK_INFO };
enum jk_fn { JK_READ = 1, JK_WRITE, JK_CAS, JK_ADD, JK_REMOVE, JK_MOVE };

struct jk_op {
    uint32_t process;
    enum jk_fn fn;
    uint64_t key;
    int64_t value;          /* write: the value; read: the value seen; cas: from;
                             * add, remove, move: the name's number, 0..63 */
    int64_t value2;         /* cas: to; move: the new name's number */
    bool is_refused;        /* completed, but the state said no (see above) */
    enum jk_kind kind;      /* how it completed */
    uint64_t invoke;        /* when invoked and completed, on one clock (any unit) */
    uint64_t complete;      /* ignored for JK_INFO */
};

struct jk_result {
    bool is_linearizable;
    uint64_t key;           /* not linearizable: the first key that is not */
    size_t op;              /* ... and the operation (index into ops) no order could place */
    int64_t state;          /* ... the key's value (a set's names) in the longest order of
                             * its operations found before that one could not be placed */
    uint64_t states;        /* configurations searched, all keys */
};

/* Check ops[0..count). 0, or -ENOMEM / -EINVAL (an op with complete <
 * invoke, or an unknown fn or kind). */
int jk_check(const struct jk_op *ops, size_t count, struct jk_result *out);

/* Parse one history line into op:
 *   INVOKE COMPLETE PROCESS KIND FN KEY VALUE [VALUE2]
 * with kind ok|fail|info (COMPLETE "-" for info), fn read|write|cas|add|remove|move
 * (VALUE2 for cas and move only), a ! after it for a refused one (cas!, add!,
 * remove!, move!), e.g.
 * "17 21 3 ok cas 7 1 2".
 * 0, or -EINVAL for a line that is not one (nothing past its end is read). */
int jk_parse_line(const char *line, struct jk_op *op);

#endif /* ARBOR_JEPSEN_CHECKER_H */
