/* meta/lease.h - attribute leases: which connections a shard's leader
 * promised to tell when an inode changes (meta/server.c).
 *
 * A mount that asks for a lease with a read or a mutation may answer later
 * lookups and getattrs of the reply's inode from its own memory; the leader
 * records the promise here, and when an applied command changes the inode
 * it sends each holder a change notice before any later response: a
 * change that keeps names leaves the promise standing (lease_holders), one
 * that may move names ends it (lease_take), and the holder asks again. A promise lasts at least META_LEASE_MS after
 * it was made: promises live in two generations, and lease_rotate(), called
 * every META_LEASE_MS, forgets the older one. The table is bounded: when
 * full, lease_grant() refuses and the reply goes without a lease.
 * Holders are small numbers (< LEASE_HOLDERS_MAX) the server gives the
 * connections that ask. Not thread-safe: the server's loop owns it. */
#ifndef ARBOR_META_LEASE_H
#define ARBOR_META_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#define LEASE_HOLDERS_MAX 64u

struct lease_table;

/* A table of at most max_inos inodes in each generation; NULL without memory. */
struct lease_table *lease_table_new(uint32_t max_inos);
void lease_table_free(struct lease_table *t);

/* Promise holder news of ino's next change. False when the newer
 * generation is full (no promise made). */
bool lease_grant(struct lease_table *t, uint64_t ino, uint32_t holder);
/* The holders promised news of ino (a mask of holder numbers). */
uint64_t lease_holders(const struct lease_table *t, uint64_t ino);
/* The same, forgotten. */
uint64_t lease_take(struct lease_table *t, uint64_t ino);
/* The older generation forgotten, the newer one becomes the older. */
void lease_rotate(struct lease_table *t);
/* Every promise forgotten. */
void lease_clear(struct lease_table *t);
bool lease_is_empty(const struct lease_table *t);

#endif
