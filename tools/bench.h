/* tools/bench.h - the benchmarks behind `arbor bench`. Same conventions as
 * cmd.h: argv[0] is the benchmark's name; the result is an exit status. */
#ifndef ARBOR_TOOLS_BENCH_H
#define ARBOR_TOOLS_BENCH_H

int bench_objstore(int argc, char **argv);
int bench_fsm(int argc, char **argv);
int bench_raft(int argc, char **argv);
int bench_meta(int argc, char **argv);
int bench_fs(int argc, char **argv);
int bench_restore(int argc, char **argv);

/* memfs.c: a trivial in-memory FUSE file system, the ceiling bench fs
 * measures against; served by its own threads until unmounted. */
struct memfs;
struct memfs *memfs_mount(const char *mountpoint, double timeout_s);
void memfs_unmount(struct memfs *fs);

#endif /* ARBOR_TOOLS_BENCH_H */
