/* meta/limits.h - every limit of the shard state machine, with its reason
 * (SQLite's sqliteLimit.h is the model). Tests hit each at limit and limit + 1. */
#ifndef ARBOR_META_LIMITS_H
#define ARBOR_META_LIMITS_H

#define META_NAME_BYTES_MAX     255u         /* POSIX NAME_MAX; the kernel sends no more */
#define META_SYMLINK_BYTES_MAX  4095u        /* PATH_MAX less its NUL */
#define META_GROUPS_MAX         32u          /* supplementary groups carried by a request */
#define META_XATTR_NAME_MAX     255u         /* XATTR_NAME_MAX */
#define META_XATTR_VALUE_MAX    65536u       /* XATTR_SIZE_MAX */
#define META_XATTR_BYTES_MAX    (256u << 10) /* all names and values of one inode: ENOSPC past */
#define META_NLINK_MAX          65000u       /* ext4's EXT4_LINK_MAX; EMLINK past it */
#define META_READDIR_MAX        1024u        /* entries in one readdir reply */
#define META_NODES_MAX          ((1u << 27) - 2) /* 134M files a shard (~12 GiB); split
                                                  * before. Indexes tag the bits above. */
#define META_FILE_BYTES_MAX     (1ull << 50) /* 1 PiB: sizes fit in 51 bits, offsets never wrap */
#define META_MSG_BYTES_MAX      (4u << 20)   /* any encoded command or reply */
#define META_FILE_SLICES_MAX    (32u << 20)  /* slices of one file: twice the chunks of the
                                                  * largest file, so compacting always makes
                                                  * room; a write past it is told to compact
                                                  * its chunk, or EFBIG */
#define META_MAP_BYTES_MAX      (1u << 30)   /* a file's data map as one checkpoint record */
#define META_CLIENTS_MAX        4096u        /* clients whose replies the shard keeps */
#define META_HOLDS_MAX          (1u << 20)   /* (session, inode) open holds of a shard: ENFILE */
#define META_HOLD_COUNT_MAX     (1u << 20)   /* opens of one inode by one session: EMFILE */
#define META_CLIENT_REPLIES_MAX 32u          /* unacknowledged commands of one client */
#define META_CLIENT_IDLE_NS     (15ll * 60 * 1000000000) /* a client silent this long (by
                                                  * command time) may be forgotten */

_Static_assert(META_NAME_BYTES_MAX < 256, "a name's length fits the arena's one-byte prefix");

#endif /* ARBOR_META_LIMITS_H */
