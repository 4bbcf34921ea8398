/* jepsen/check.c - `check HISTORY`: read a history (one operation a line,
 * jk_parse_line()'s format; blank lines and # comments skipped) and say
 * whether it is linearizable; if not, print the operation no order could
 * place amid the operations of its key just before and overlapping it:
 * the part of the history to read. Exit 0 linearizable, 1 not, 2 a
 * malformed history. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"

#define LINE_MAX_BYTES 512u
#define BEFORE_SHOWN 6u /* operations shown before the one no order places */

/* A value some operation may have put in a key: a write's, a cas's new one. */
struct put {
    uint64_t key;
    int64_t value;
    size_t op;
};

static int cmp_put(const void *a, const void *b)
{
    const struct put *x = a;
    const struct put *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->value > y->value) - (x->value < y->value);
}

/* The first put of key at or above value in puts[0..n), or n. */
static size_t lower_bound(const struct put *puts, size_t n, uint64_t key, int64_t value)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        bool is_below = puts[mid].key < key || (puts[mid].key == key && puts[mid].value < value);
        if (is_below)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool has_put(const struct put *puts, size_t n, uint64_t key, int64_t value)
{
    size_t at = lower_bound(puts, n, key, value);
    return at < n && puts[at].key == key && puts[at].value == value;
}

static const struct jk_op *sort_ops;

/* ok reads by key, the latest first */
static int cmp_read(const void *a, const void *b)
{
    const struct jk_op *x = &sort_ops[*(const size_t *)a];
    const struct jk_op *y = &sort_ops[*(const size_t *)b];
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->invoke < y->invoke) - (x->invoke > y->invoke);
}

/* Plainer verdicts than the search's, on the history's values: a read of a
 * value no operation wrote (or of a name no operation made), and an
 * acknowledged write the key's last read no longer shows although it began
 * after the write that read shows had finished. Linearizability implies
 * neither happens; these say so in words. Returns how many were printed. */
static size_t check_values(const struct jk_op *ops, char **lines, size_t count)
{
    struct put *puts = malloc((count + 1) * sizeof(*puts));
    size_t *reads = malloc((count + 1) * sizeof(*reads));
    size_t n = 0;
    size_t nreads = 0;
    size_t problems = 0;
    if (puts == NULL || reads == NULL) {
        free(puts);
        free(reads);
        return 0;
    }
    for (size_t i = 0; i < count; i++) {
        const struct jk_op *o = &ops[i];
        if (o->fn == JK_READ && o->kind == JK_OK)
            reads[nreads++] = i;
        if (o->kind == JK_FAIL || o->is_refused)
            continue;
        if (o->fn == JK_WRITE || o->fn == JK_CAS)
            puts[n++] = (struct put){o->key, o->fn == JK_WRITE ? o->value : o->value2, i};
        if (o->fn == JK_ADD || o->fn == JK_MOVE) /* a name's bit, negated apart from values */
            puts[n++] = (struct put){o->key, -1 - (o->fn == JK_ADD ? o->value : o->value2), i};
    }
    qsort(puts, n, sizeof(*puts), cmp_put);
    sort_ops = ops;
    qsort(reads, nreads, sizeof(*reads), cmp_read);
    for (size_t k = 0; k < nreads; k++) {
        size_t i = reads[k];
        const struct jk_op *r = &ops[i];
        size_t first = lower_bound(puts, n, r->key, INT64_MIN);
        bool is_set = first < n && puts[first].key == r->key && puts[first].value < 0;
        if (is_set) {
            for (int bit = 0; bit < 64; bit++) {
                if (((uint64_t)r->value >> bit & 1) && !has_put(puts, n, r->key, -1 - bit)) {
                    printf("a name never made: n%d in\n  %s\n", bit, lines[i]);
                    problems++;
                }
            }
            continue;
        }
        if (r->value != 0 && !has_put(puts, n, r->key, r->value)) {
            printf("a value never written:\n  %s\n", lines[i]);
            problems++;
            continue;
        }
        if (k > 0 && ops[reads[k - 1]].key == r->key)
            continue; /* not the key's last read */
        /* the key's last read, and the acknowledged writes it should show */
        size_t at = lower_bound(puts, n, r->key, r->value);
        const struct jk_op *shown = r->value == 0 ? NULL : &ops[puts[at].op];
        if (shown != NULL && (shown->kind != JK_OK || shown->fn != JK_WRITE))
            continue; /* it may have landed at any moment */
        uint64_t shown_done = shown == NULL ? 0 : shown->complete;
        for (size_t p = first; p < n && puts[p].key == r->key; p++) {
            const struct jk_op *w = &ops[puts[p].op];
            if (w->fn == JK_WRITE && w->kind == JK_OK && w->value != r->value &&
                w->invoke > shown_done && w->complete < r->invoke) {
                printf("an acknowledged write lost: the key's last read\n  %s\nshows an older "
                       "value than\n  %s\n", lines[i], lines[puts[p].op]);
                problems++;
                break;
            }
        }
    }
    free(reads);
    free(puts);
    return problems;
}

/* The history at path into ops and lines (count of them); 0, or 2 (said)
 * for a file that cannot be read or a line that is not an operation. */
static int read_history(const char *path, struct jk_op **ops, char ***lines, size_t *count)
{
    FILE *f = fopen(path, "r");
    size_t cap = 0;
    size_t line_no = 0;
    char line[LINE_MAX_BYTES];
    int status = 0;

    if (f == NULL) {
        fprintf(stderr, "check: %s: %s\n", path, strerror(errno));
        return 2;
    }
    while (status == 0 && fgets(line, sizeof(line), f) != NULL) {
        line_no++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (*count == cap) {
            cap = cap == 0 ? 1024 : cap * 2;
            struct jk_op *o = realloc(*ops, cap * sizeof(**ops));
            char **l = realloc(*lines, cap * sizeof(**lines));
            if (o != NULL)
                *ops = o;
            if (l != NULL)
                *lines = l;
            if (o == NULL || l == NULL) {
                fprintf(stderr, "check: out of memory\n");
                status = 2;
                break;
            }
        }
        (*lines)[*count] = strdup(line);
        if ((*lines)[*count] == NULL || jk_parse_line(line, &(*ops)[*count]) != 0) {
            fprintf(stderr, "check: %s:%zu: not an operation: %s\n", path, line_no, line);
            free((*lines)[*count]);
            status = 2;
            break;
        }
        (*count)++;
    }
    fclose(f);
    return status;
}

/* Print the operation no order places (r->op) and the window to read:
 * the key's last operations completed before it began (they made the
 * state it found) and those overlapping it, in the order invoked. */
static void print_stuck(const struct jk_op *ops, char **lines, size_t count,
                        const struct jk_result *r)
{
    const struct jk_op *bad = &ops[r->op];
    uint64_t before[BEFORE_SHOWN] = {0};
    size_t found = 0;

    for (size_t i = 0; i < count; i++) {
        const struct jk_op *o = &ops[i];
        if (o->key != bad->key || o->kind == JK_INFO || o->complete >= bad->invoke)
            continue;
        /* keep the BEFORE_SHOWN latest completions; since = the oldest kept */
        found++;
        size_t k = 0;
        while (k < BEFORE_SHOWN && k < found - 1 && before[k] >= o->complete)
            k++;
        if (k < BEFORE_SHOWN) {
            memmove(&before[k + 1], &before[k], (BEFORE_SHOWN - 1 - k) * sizeof(before[0]));
            before[k] = o->complete;
        }
    }
    uint64_t since = found == 0 ? UINT64_MAX
                                : before[(found < BEFORE_SHOWN ? found : BEFORE_SHOWN) - 1];
    printf("NOT linearizable: key %" PRIu64 ": no order places\n  %s\n"
           "(the longest order found leaves the key at %" PRId64 " before it)\n"
           "the key's operations around it (the last %u completed before it, those "
           "overlapping it):\n", r->key, lines[r->op], r->state, BEFORE_SHOWN);
    for (size_t i = 0; i < count; i++) {
        const struct jk_op *o = &ops[i];
        bool is_over = o->kind == JK_INFO ? o->invoke <= bad->complete
                                          : o->invoke <= bad->complete &&
                                                o->complete >= bad->invoke;
        bool is_before = o->kind != JK_INFO && o->complete < bad->invoke &&
                         o->complete >= since;
        if (o->key == bad->key && (is_over || is_before || i == r->op))
            printf("%s %s\n", i == r->op ? ">" : " ", lines[i]);
    }
}

int main(int argc, char **argv)
{
    struct jk_op *ops = NULL;
    char **lines = NULL;
    size_t count = 0;
    struct jk_result r;

    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc == 2 ? stdout : stderr,
                "usage: check HISTORY\n\nEach line: INVOKE COMPLETE PROCESS KIND FN KEY VALUE "
                "[VALUE2]\n(kind ok|fail|info, COMPLETE - for info; fn read|write|cas|add|remove|"
                "move,\n! after it when the state refused it). Exit 0: linearizable, 1: not, "
                "2: bad input.\n");
        return argc == 2 ? 0 : 2;
    }
    int status = read_history(argv[1], &ops, &lines, &count);
    if (status == 0 && jk_check(ops, count, &r) != 0) {
        fprintf(stderr, "check: the history does not hold together (or memory ran out)\n");
        status = 2;
    }
    size_t value_problems = status == 0 ? check_values(ops, lines, count) : 0;
    if (value_problems > 0)
        status = 1;
    if (status != 2 && r.is_linearizable) {
        printf("linearizable: %zu operations, %" PRIu64 " configurations searched\n", count,
               r.states);
    } else if (status != 2) {
        print_stuck(ops, lines, count, &r);
        status = 1;
    }
    for (size_t i = 0; i < count; i++) {
        free(lines[i]);
    }
    free(lines);
    free(ops);
    return status;
}
