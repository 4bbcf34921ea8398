/* client/nodes.c - the node ids the kernel knows files by (internal.h).
 *
 * Linux answers rename(a, b) itself, with success and no change, when a
 * and b lead to one kernel inode, as POSIX asks of two links of a file.
 * The names it keeps come from answers of different moments, though: a
 * name kept from before another mount renamed the file, and the file's
 * new name looked up after, lead to one inode that never had both names,
 * and a rename between them would succeed where the servers refuse it.
 * So a file is handed to the kernel under a fresh node id (an alias) when
 * the kernel may still keep a name of it given before its names last
 * changed: the two names then lead to two kernel inodes, and the rename
 * reaches the servers, which judge it on what stands.
 *
 * A file's names change only with its ctime (a rename, link or unlink
 * sets it). For each non-directory inode given to the kernel, a table
 * remembers the node its entries went under, the ctime then, whether
 * they named it once or more, and until when the kernel may keep them:
 * - while it may, an entry at that ctime goes under that node, as does
 *   the one name it was given at a later ctime (a write, a chmod); an
 *   entry at another ctime under another name takes a new alias;
 * - once it may not, the node serves again (Linux asks before it uses a
 *   name past its time);
 * - a name the kernel made or moved itself (a link, a rename on this
 *   mount) retires the node, the next entry taking an alias; but a
 *   rename of the one name the node had moves the node to the new name;
 * - a link goes through a node, found by a name the kernel keeps: it is
 *   made only if the inode's ctime is still the one at which every name
 *   under that node was known true (nodes_link_ctime()); a link through
 *   an inode the table does not hold is sent back to look its name up.
 * An inode the table does not hold (it had no room) goes under its own
 * number if its ctime is older than any entry the kernel may keep (every
 * name it keeps came after the change), else under an alias. Directories
 * are never aliased: Linux keeps one name per directory and moves it to
 * the name a lookup finds.
 *
 * An alias stands for its inode until the kernel forgets every lookup of
 * it (FORGET), so aliases are counted. Thread-safe: the table under
 * striped mutexes, the aliases under one (taken after a stripe). */
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "client.h"
#include "internal.h"
#include "meta.h"

#define WAYS    4u
#define STRIPES 64u
/* ctimes come from the leaders' clocks: a change this close to the oldest
 * entry the kernel may keep counts as after it (a mount whose clock runs
 * further ahead of theirs may take a recent change for an old one) */
#define CLOCK_MARGIN_MS 10000u
/* the kernel starts an entry's time when it takes the reply, after the
 * table noted it, and keeps it through the last jiffy */
#define KEEP_SLACK_MS 1000u

struct named {
    uint64_t ino;        /* 0: empty */
    uint64_t node;       /* what its entries went under lately */
    uint64_t name_hash;  /* the name they gave, if one */
    int64_t ctime_ns;    /* the inode's ctime when they were given */
    uint64_t until_ms;   /* the kernel may keep one of them until then (monotonic) */
    int64_t names_ns;    /* every name the kernel keeps under node was true at this
                          * ctime (0: not known, after a name it made or moved) */
    bool has_names;      /* more than one name was given under node */
};

struct alias {
    struct alias *next;
    uint64_t node;
    uint64_t ino;
    uint64_t lookups;    /* the kernel's: counted per entry, less its FORGETs */
};

struct nodes {
    uint32_t sets;       /* a power of two */
    struct named *named; /* sets * WAYS */
    pthread_mutex_t stripes[STRIPES];
    uint64_t keep_max_ms; /* atomic: the longest entry ever given */
    pthread_mutex_t alias_mu;
    struct alias **buckets; /* bucket_count of them, a power of two */
    uint32_t bucket_count;
    uint64_t alias_count;
    uint64_t alias_next;
    uint64_t aliases_made; /* atomic */
};

static int64_t real_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* FNV-1a over the name, seeded with the parent. */
static uint64_t name_hash(uint64_t parent, const char *name, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ client_mix(parent);

    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)name[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

struct nodes *nodes_new(uint32_t sets)
{
    struct nodes *n = ar_calloc(1, sizeof(*n));

    if (n == NULL)
        return NULL;
    n->sets = sets;
    n->named = ar_calloc((size_t)sets * WAYS, sizeof(*n->named));
    n->bucket_count = 1024;
    n->buckets = ar_calloc(n->bucket_count, sizeof(*n->buckets));
    if (n->named == NULL || n->buckets == NULL) {
        ar_free(n->named);
        ar_free(n->buckets);
        ar_free(n);
        return NULL;
    }
    for (uint32_t i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&n->stripes[i], NULL);
    }
    pthread_mutex_init(&n->alias_mu, NULL);
    return n;
}

void nodes_free(struct nodes *n)
{
    if (n == NULL)
        return;
    for (uint32_t b = 0; b < n->bucket_count; b++) {
        /* bounded by the aliases */
        for (struct alias *a = n->buckets[b], *next; a != NULL; a = next) {
            next = a->next;
            ar_free(a);
        }
    }
    for (uint32_t i = 0; i < STRIPES; i++) {
        pthread_mutex_destroy(&n->stripes[i]);
    }
    pthread_mutex_destroy(&n->alias_mu);
    ar_free(n->buckets);
    ar_free(n->named);
    ar_free(n);
}

static struct alias **alias_slot(struct nodes *n, uint64_t node)
{
    struct alias **p = &n->buckets[client_mix(node) & (n->bucket_count - 1)];

    /* bounded: the table doubles when it holds more aliases than buckets */
    while (*p != NULL && (*p)->node != node) {
        p = &(*p)->next;
    }
    return p;
}

/* Double the buckets (under alias_mu); left as they are without memory. */
static void aliases_grow(struct nodes *n)
{
    uint32_t count = n->bucket_count * 2;
    struct alias **buckets = count > n->bucket_count ? ar_calloc(count, sizeof(*buckets)) : NULL;

    if (buckets == NULL)
        return;
    for (uint32_t b = 0; b < n->bucket_count; b++) {
        /* bounded by the aliases */
        for (struct alias *a = n->buckets[b], *next; a != NULL; a = next) {
            next = a->next;
            struct alias **to = &buckets[client_mix(a->node) & (count - 1)];
            a->next = *to;
            *to = a;
        }
    }
    ar_free(n->buckets);
    n->buckets = buckets;
    n->bucket_count = count;
}

/* One more lookup of alias node (of ino), made if new; false without memory. */
static bool alias_count(struct nodes *n, uint64_t node, uint64_t ino)
{
    pthread_mutex_lock(&n->alias_mu);
    struct alias **p = alias_slot(n, node);
    if (*p == NULL) {
        struct alias *a = ar_calloc(1, sizeof(*a));
        if (a == NULL) {
            pthread_mutex_unlock(&n->alias_mu);
            return false;
        }
        a->node = node;
        a->ino = ino;
        *p = a;
        if (++n->alias_count > n->bucket_count)
            aliases_grow(n);
        p = alias_slot(n, node);
    }
    (*p)->lookups++;
    pthread_mutex_unlock(&n->alias_mu);
    return true;
}

static uint64_t alias_new(struct nodes *n)
{
    __atomic_add_fetch(&n->aliases_made, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&n->alias_mu);
    uint64_t node = NODE_ALIAS_BIT | ++n->alias_next;
    pthread_mutex_unlock(&n->alias_mu);
    return node;
}

enum named_state {
    NAMED_NONE,   /* not remembered */
    NAMED_LAPSED, /* remembered, but the kernel keeps none of its entries now */
    NAMED_LIVE,
};

/* The room for ino in its set: its entry, else the one the kernel lets go
 * of first (an empty one first of all). */
static struct named *named_slot(struct named *set, uint64_t ino, uint64_t now,
                                enum named_state *state)
{
    struct named *victim = &set[0];

    *state = NAMED_NONE;
    for (uint32_t w = 0; w < WAYS; w++) {
        if (set[w].ino == ino) {
            *state = set[w].until_ms > now ? NAMED_LIVE : NAMED_LAPSED;
            return &set[w];
        }
        if (set[w].until_ms < victim->until_ms)
            victim = &set[w];
    }
    return victim;
}

static void keep_max_raise(struct nodes *n, uint64_t keep_ms)
{
    uint64_t keep_max = __atomic_load_n(&n->keep_max_ms, __ATOMIC_RELAXED);

    while (keep_ms > keep_max &&
           !__atomic_compare_exchange_n(&n->keep_max_ms, &keep_max, keep_ms, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

uint64_t nodes_entry(struct nodes *n, uint64_t parent, const char *name, size_t len,
                     const struct meta_attr *a, uint64_t keep_ms, bool is_new)
{
    if (n == NULL || S_ISDIR(a->mode) || (a->ino & NODE_ALIAS_BIT) != 0)
        return a->ino;
    keep_max_raise(n, keep_ms);
    uint64_t now = client_mono_ms();
    uint64_t hash = name_hash(parent, name, len);
    uint32_t set = (uint32_t)(client_mix(a->ino) & (n->sets - 1));
    pthread_mutex_t *mu = &n->stripes[set % STRIPES];
    enum named_state state;
    uint64_t node;
    bool has_names = false;

    keep_ms += KEEP_SLACK_MS;
    pthread_mutex_lock(mu);
    struct named *e = named_slot(&n->named[(size_t)set * WAYS], a->ino, now, &state);
    if (state == NAMED_LIVE && e->ctime_ns == a->ctime_ns) {
        node = e->node; /* no change since: one more name of it, or the same */
        e->has_names = e->has_names || e->name_hash != hash;
    } else if (state == NAMED_LIVE && !e->has_names && e->name_hash == hash &&
               a->ctime_ns > e->ctime_ns) {
        node = e->node; /* the one name it was given, given afresh */
        e->ctime_ns = a->ctime_ns;
        e->names_ns = a->ctime_ns;
    } else if (state == NAMED_LIVE) {
        node = alias_new(n); /* the kernel may keep a name from before a change */
    } else if (state == NAMED_LAPSED) {
        node = e->node; /* every name it was given is asked again before use */
        e->until_ms = 0;
    } else {
        /* changed after the oldest moment an entry the kernel keeps was
         * given: a name from before may be kept, given when the table had
         * no room or the change was long past */
        uint64_t keep_max = __atomic_load_n(&n->keep_max_ms, __ATOMIC_RELAXED);
        bool is_recent =
            a->ctime_ns > real_ns() - (int64_t)(keep_max + CLOCK_MARGIN_MS) * 1000000;
        node = is_recent && !is_new ? alias_new(n) : a->ino;
        /* its own number may carry its other links' names, not known */
        has_names = node == a->ino && !is_new && a->nlink > 1;
        e->ino = a->ino;
        e->until_ms = 0;
    }
    if (state != NAMED_LIVE || e->node != node) {
        e->node = node;
        e->name_hash = hash;
        e->ctime_ns = a->ctime_ns;
        e->names_ns = a->ctime_ns;
        e->has_names = has_names;
    }
    /* an alias's entry also covers the stale entries of the node before */
    if (e->until_ms < now + keep_ms)
        e->until_ms = now + keep_ms;
    pthread_mutex_unlock(mu);
    if ((node & NODE_ALIAS_BIT) != 0 && !alias_count(n, node, a->ino))
        return 0;
    return node;
}

/* Entry e goes under no new name; the kernel may keep what it was given
 * until until_ms. Under its set's lock. */
static void entry_retire(struct named *e, int64_t names_ns, uint64_t until_ms)
{
    e->ctime_ns = INT64_MIN; /* matches no answer */
    e->names_ns = names_ns;
    e->has_names = true;
    if (e->until_ms < until_ms)
        e->until_ms = until_ms;
}

/* The kernel gave the node of a's inode a name itself (a link) or moved
 * one (a rename): the table no longer knows its names, nor whether those
 * it gave are of the last change, so that node goes under no new name
 * (every later entry takes an alias). keep_ms: how long the kernel keeps
 * a name it gave (0: none); names_ns: the ctime at which all its names are
 * known true now (0: not known). */
static void named_retire(struct nodes *n, uint64_t node, const struct meta_attr *a,
                         uint64_t keep_ms, int64_t names_ns)
{
    uint64_t now = client_mono_ms();

    keep_ms += KEEP_SLACK_MS;
    uint32_t set = (uint32_t)(client_mix(a->ino) & (n->sets - 1));
    pthread_mutex_t *mu = &n->stripes[set % STRIPES];
    enum named_state state;

    pthread_mutex_lock(mu);
    struct named *e = named_slot(&n->named[(size_t)set * WAYS], a->ino, now, &state);
    if (state != NAMED_NONE && (node == 0 || e->node == node))
        entry_retire(e, names_ns, now + keep_ms);
    pthread_mutex_unlock(mu);
}

int64_t nodes_link_ctime(struct nodes *n, uint64_t node, uint64_t ino)
{
    if (n == NULL)
        return 0;
    uint32_t set = (uint32_t)(client_mix(ino) & (n->sets - 1));
    pthread_mutex_t *mu = &n->stripes[set % STRIPES];
    enum named_state state;
    int64_t ctime_ns = 0;

    pthread_mutex_lock(mu);
    struct named *e = named_slot(&n->named[(size_t)set * WAYS], ino, client_mono_ms(), &state);
    /* a node the table moved on from was given before a change; one it
     * pushed out may have been (while an entry of it lasts, the kernel does
     * not ask again, so a lookup now is what makes the check possible) */
    if (state == NAMED_LIVE)
        ctime_ns = e->node == node && e->names_ns != 0 ? e->names_ns : NODES_ASK_AGAIN;
    else if (state == NAMED_NONE)
        ctime_ns = NODES_ASK_AGAIN;
    pthread_mutex_unlock(mu);
    return ctime_ns;
}

uint64_t nodes_link(struct nodes *n, uint64_t node, const struct meta_attr *a, uint64_t keep_ms,
                    int64_t if_ctime_ns)
{
    if (n == NULL)
        return node;
    if ((node & NODE_ALIAS_BIT) != 0 && !alias_count(n, node, a->ino))
        return 0;
    keep_max_raise(n, keep_ms);
    /* made only if nothing changed since its names were true: they and the
     * new one are true as of the link */
    named_retire(n, node, a, keep_ms, if_ctime_ns != 0 ? a->ctime_ns : 0);
    return node;
}

void nodes_renamed(struct nodes *n, const struct meta_attr *a, uint64_t parent, const char *name,
                   size_t len, uint64_t new_parent, const char *new_name, size_t new_len)
{
    if (n == NULL || a->ino == 0)
        return;
    uint64_t now = client_mono_ms();
    uint32_t set = (uint32_t)(client_mix(a->ino) & (n->sets - 1));
    pthread_mutex_t *mu = &n->stripes[set % STRIPES];
    enum named_state state;
    bool is_moved = false;

    pthread_mutex_lock(mu);
    struct named *e = named_slot(&n->named[(size_t)set * WAYS], a->ino, now, &state);
    /* its one name, moved: the kernel's entry of that name is the node's,
     * and its only one; the node goes on under the new name, as of the
     * rename (an answer from before it takes another node) */
    if (state == NAMED_LIVE && name != NULL && !e->has_names &&
        e->name_hash == name_hash(parent, name, len) && a->ctime_ns > e->ctime_ns) {
        e->name_hash = name_hash(new_parent, new_name, new_len);
        e->ctime_ns = a->ctime_ns;
        e->names_ns = a->ctime_ns;
        is_moved = true;
    }
    pthread_mutex_unlock(mu);
    if (!is_moved)
        named_retire(n, 0, a, 0, 0);
}

void nodes_name_moved(struct nodes *n, uint64_t parent, const char *name, size_t len)
{
    if (n == NULL)
        return;
    uint64_t hash = name_hash(parent, name, len);
    uint64_t until_ms = client_mono_ms() + KEEP_SLACK_MS; /* as named_retire() */

    /* the table is not kept by name: a scan of it (0.6 ms), for a rare event */
    for (uint32_t set = 0; set < n->sets; set++) {
        pthread_mutex_t *mu = &n->stripes[set % STRIPES];
        pthread_mutex_lock(mu);
        for (uint32_t w = 0; w < WAYS; w++) {
            struct named *e = &n->named[(size_t)set * WAYS + w];
            /* a node of several names never goes on past a change anyway */
            if (e->ino != 0 && !e->has_names && e->name_hash == hash)
                entry_retire(e, 0, until_ms);
        }
        pthread_mutex_unlock(mu);
    }
}

void nodes_forget(struct nodes *n, uint64_t node, uint64_t count)
{
    if (n == NULL || (node & NODE_ALIAS_BIT) == 0)
        return;
    pthread_mutex_lock(&n->alias_mu);
    struct alias **p = alias_slot(n, node);
    struct alias *a = *p;
    if (a != NULL)
        a->lookups = count < a->lookups ? a->lookups - count : 0;
    if (a != NULL && a->lookups == 0) {
        *p = a->next;
        n->alias_count--;
        ar_free(a);
    }
    pthread_mutex_unlock(&n->alias_mu);
}

uint64_t nodes_ino(struct nodes *n, uint64_t node)
{
    if ((node & NODE_ALIAS_BIT) == 0)
        return node;
    if (n == NULL)
        return 0;
    pthread_mutex_lock(&n->alias_mu);
    struct alias *a = *alias_slot(n, node);
    uint64_t ino = a != NULL ? a->ino : 0;
    pthread_mutex_unlock(&n->alias_mu);
    return ino;
}

void nodes_counts(struct nodes *n, uint64_t *made, uint64_t *live)
{
    *made = 0;
    *live = 0;
    if (n == NULL)
        return;
    *made = __atomic_load_n(&n->aliases_made, __ATOMIC_RELAXED);
    pthread_mutex_lock(&n->alias_mu);
    *live = n->alias_count;
    pthread_mutex_unlock(&n->alias_mu);
}
