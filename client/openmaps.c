/* client/openmaps.c - what lets a reader's open of a one-block file skip
 * its READ_MAP round trip to the leader, and stay close-to-open.
 *
 * A reader's open asks the leader for chunk 0 of its file (READ_MAP), so
 * that a write closed on another mount shows at the next open here. For a
 * small file read from the disk cache in passthrough, that round trip was
 * the largest part of the mount's work for the whole file. Two parts stand
 * in for it (internal.h):
 * - Maps kept: a one-block file's chunk 0 at a version (size, mtime,
 *   ctime), as a READ_MAP found it. That stays true: blocks are immutable,
 *   and every data change sets ctime from the leader's clock, which only
 *   moves forward, so a version names one content. Sets of four ways; the
 *   entry kept longest ago makes room.
 * - Fences: the mount's leased attributes (leased.c) say the file is at
 *   that version, but a notice of a change acknowledged just before the
 *   open may still be on its way. So the open waits until the shard's
 *   leader has answered, with a lease, a request sent after the open began
 *   (ar_client_lease_fresh_since): the leader queued the notice of every
 *   change it had applied before that request reached it, on the same
 *   connection, ahead of the answer. Opens share these requests (a GETATTR
 *   a shard, one at a time): an open waits for the first sent after it
 *   began, and any other leased answer serves as well. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "internal.h"

#define WAYS          4u
#define FENCE_WAIT_MS 2000u /* past it the open asks for its map after all */

struct open_map {
    uint64_t ino;                   /* 0: empty */
    uint64_t kept;                  /* when, in the table's count */
    struct data_version version;
    struct meta_slice slice;
};

/* One shard's fences: at most one out at a time. */
struct fence {
    struct open_maps *om;
    uint32_t shard;
    bool is_out;
    uint64_t started;               /* fences sent, ever */
    uint64_t ended;                 /* of them, answered or failed */
    struct meta_cmd cmd;            /* the one out: valid until it ends */
    struct meta_response_buf *out;  /* made at the shard's first fence */
};

struct open_maps {
    struct ar_client *mc;
    pthread_mutex_t mu;             /* the maps */
    uint32_t sets;                  /* a power of two */
    uint64_t kept;
    struct open_map *maps;          /* sets * WAYS */
    pthread_mutex_t fence_mu;       /* a leaf lock: the client's thread takes it */
    pthread_cond_t fence_cond;      /* with fence_mu: a fence ended */
    struct fence fences[OPEN_MAPS_SHARDS];
    uint64_t fences_sent;           /* atomic */
};

struct open_maps *open_maps_new(struct ar_client *mc, uint32_t slots)
{
    struct open_maps *om = ar_calloc(1, sizeof(*om));

    AR_ASSERT(slots >= WAYS && (slots & (slots - 1)) == 0);
    if (om == NULL)
        return NULL;
    om->maps = ar_calloc(slots, sizeof(*om->maps));
    if (om->maps == NULL) {
        ar_free(om);
        return NULL;
    }
    om->mc = mc;
    om->sets = slots / WAYS;
    for (uint32_t s = 0; s < OPEN_MAPS_SHARDS; s++) {
        om->fences[s] = (struct fence){.om = om, .shard = s};
    }
    pthread_mutex_init(&om->mu, NULL);
    pthread_mutex_init(&om->fence_mu, NULL);
    pthread_cond_init(&om->fence_cond, NULL);
    return om;
}

void open_maps_free(struct open_maps *om)
{
    if (om == NULL)
        return;
    for (uint32_t s = 0; s < OPEN_MAPS_SHARDS; s++) {
        AR_ASSERT(!om->fences[s].is_out); /* the client, closed first, ended them */
        ar_free(om->fences[s].out);
    }
    pthread_cond_destroy(&om->fence_cond);
    pthread_mutex_destroy(&om->fence_mu);
    pthread_mutex_destroy(&om->mu);
    ar_free(om->maps);
    ar_free(om);
}

void open_maps_keep(struct open_maps *om, uint64_t ino, const struct data_version *v,
                    const struct meta_slice *slice)
{
    if (om == NULL || ino == 0)
        return;
    pthread_mutex_lock(&om->mu);
    struct open_map *set = &om->maps[((uint32_t)client_mix(ino) & (om->sets - 1)) * WAYS];
    struct open_map *e = &set[0];
    for (uint32_t w = 0; w < WAYS; w++) {
        if (set[w].ino == ino) {
            e = &set[w];
            break;
        }
        if (set[w].kept < e->kept)
            e = &set[w];
    }
    *e = (struct open_map){.ino = ino, .kept = ++om->kept, .version = *v, .slice = *slice};
    pthread_mutex_unlock(&om->mu);
}

bool open_maps_find(struct open_maps *om, uint64_t ino, struct data_version *v,
                    struct meta_slice *slice)
{
    bool is_found = false;

    if (om == NULL || ino == 0)
        return false;
    pthread_mutex_lock(&om->mu);
    struct open_map *set = &om->maps[((uint32_t)client_mix(ino) & (om->sets - 1)) * WAYS];
    for (uint32_t w = 0; w < WAYS && !is_found; w++) {
        if (set[w].ino == ino) {
            *v = set[w].version;
            *slice = set[w].slice;
            set[w].kept = ++om->kept;
            is_found = true;
        }
    }
    pthread_mutex_unlock(&om->mu);
    return is_found;
}

/* On the client's thread: the fence's answer came (and, if it carried a
 * lease, the client counted the shard fresh before calling this). */
static void fence_done(void *arg, int rc)
{
    struct fence *fe = arg;
    struct open_maps *om = fe->om;

    (void)rc; /* a failure leaves the shard as fresh as it was: the opens see that */
    pthread_mutex_lock(&om->fence_mu);
    fe->is_out = false;
    fe->ended++;
    pthread_cond_broadcast(&om->fence_cond);
    pthread_mutex_unlock(&om->fence_mu);
}

/* Under fence_mu, which it lets go of while it asks: send a fence for
 * shard, asking for ino. false if it could not be sent. */
static bool fence_send(struct open_maps *om, struct fence *fe, uint64_t ino)
{
    if (fe->out == NULL && (fe->out = ar_malloc(sizeof(*fe->out))) == NULL)
        return false;
    fe->is_out = true;
    fe->started++;
    fe->cmd = (struct meta_cmd){.op = META_OP_GETATTR, .ino = ino};
    __atomic_add_fetch(&om->fences_sent, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&om->fence_mu);
    /* a GETATTR asks for a lease (its answer counts only with one) */
    int rc = ar_client_start(om->mc, fe->shard, &fe->cmd, META_READ_LINEARIZABLE, 0, fe->out,
                             fence_done, fe);
    pthread_mutex_lock(&om->fence_mu);
    if (rc != 0) {
        fe->is_out = false;
        fe->ended++;
        pthread_cond_broadcast(&om->fence_cond);
    }
    return rc == 0;
}

bool open_maps_fence(struct open_maps *om, uint32_t shard, uint64_t gen, uint64_t sent_seq,
                     uint64_t ino)
{
    struct timespec until;
    bool is_fresh;

    if (om == NULL || shard >= OPEN_MAPS_SHARDS)
        return false;
    clock_gettime(CLOCK_REALTIME, &until); /* the condition's clock */
    until.tv_sec += FENCE_WAIT_MS / 1000u;
    struct fence *fe = &om->fences[shard];
    pthread_mutex_lock(&om->fence_mu);
    /* fences started after this are sent after sent_seq was read */
    uint64_t mark = fe->started;
    while (!(is_fresh = ar_client_lease_fresh_since(om->mc, shard, gen, sent_seq))) {
        if (fe->ended > mark)
            break; /* one sent after the open began came back without a lease */
        if (!fe->is_out) {
            if (!fence_send(om, fe, ino))
                break;
            continue; /* it may have ended already */
        }
        if (pthread_cond_timedwait(&om->fence_cond, &om->fence_mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&om->fence_mu);
    return is_fresh;
}

uint64_t open_maps_fences(struct open_maps *om)
{
    return om != NULL ? __atomic_load_n(&om->fences_sent, __ATOMIC_RELAXED) : 0;
}
