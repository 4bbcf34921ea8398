/* jepsen/check.c - `check HISTORY`: read a history (one operation a line,
 * jk_parse_line()'s format; blank lines and # comments skipped) and say
 * whether it is linearizable; if not, print the operation no order could
 * place and the operations of its key that overlap it: the part of the
 * history to read. Exit 0 linearizable, 1 not, 2 a malformed history. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"

#define LINE_MAX_BYTES 512u

int main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc == 2 ? stdout : stderr,
                "usage: check HISTORY\n\nEach line: INVOKE COMPLETE PROCESS KIND FN KEY VALUE "
                "[VALUE2]\n(kind ok|fail|info, COMPLETE - for info; fn read|write|cas|add|remove,"
                "\n! after it when the state refused it). Exit 0: linearizable, 1: not, 2: bad "
                "input.\n");
        return argc == 2 ? 0 : 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (f == NULL) {
        fprintf(stderr, "check: %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    struct jk_op *ops = NULL;
    char **lines = NULL;
    size_t count = 0;
    size_t cap = 0;
    size_t line_no = 0;
    char line[LINE_MAX_BYTES];
    int status = 0;
    while (status == 0 && fgets(line, sizeof(line), f) != NULL) {
        line_no++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (count == cap) {
            cap = cap == 0 ? 1024 : cap * 2;
            struct jk_op *o = realloc(ops, cap * sizeof(*ops));
            char **l = realloc(lines, cap * sizeof(*lines));
            if (o != NULL)
                ops = o;
            if (l != NULL)
                lines = l;
            if (o == NULL || l == NULL) {
                fprintf(stderr, "check: out of memory\n");
                status = 2;
                break;
            }
        }
        lines[count] = strdup(line);
        if (lines[count] == NULL || jk_parse_line(line, &ops[count]) != 0) {
            fprintf(stderr, "check: %s:%zu: not an operation: %s\n", argv[1], line_no, line);
            free(lines[count]);
            status = 2;
            break;
        }
        count++;
    }
    fclose(f);
    struct jk_result r;
    if (status == 0 && jk_check(ops, count, &r) != 0) {
        fprintf(stderr, "check: the history does not hold together (or memory ran out)\n");
        status = 2;
    }
    if (status == 0 && r.is_linearizable) {
        printf("linearizable: %zu operations, %" PRIu64 " configurations searched\n", count,
               r.states);
    } else if (status == 0) {
        const struct jk_op *bad = &ops[r.op];
        printf("NOT linearizable: key %" PRIu64 ": no order places\n  %s\n"
               "operations of the key that overlap it:\n", r.key, lines[r.op]);
        for (size_t i = 0; i < count; i++) {
            const struct jk_op *o = &ops[i];
            bool is_over = o->kind == JK_INFO ? o->invoke <= bad->complete
                                              : o->invoke <= bad->complete &&
                                                    o->complete >= bad->invoke;
            if (o->key == bad->key && i != r.op && is_over)
                printf("  %s\n", lines[i]);
        }
        status = 1;
    }
    for (size_t i = 0; i < count; i++) {
        free(lines[i]);
    }
    free(lines);
    free(ops);
    return status;
}
