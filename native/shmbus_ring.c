/* What producers and consumers share: the free point of a ring, waking, and
 * releasing the groups of dead consumers. */
#include "shmbus_atomic.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

/* Minimum committed point over the tethered groups: 1 found, 0 when there is
 * no tethered group, 2 when every one is a replay below the head (below).  On a
 * drop_oldest topic a group left behind the head counts at the head: what lies
 * below is gone for it anyway.  Under retention=log a group that tracks its
 * deliveries and is below the head is replaying what the log kept there: it
 * holds nothing (its readers check what they read), or a replay would stop the
 * topic.  Elsewhere a group's point below the head is one that joined as the
 * head moved, and must hold. */
static int slowest_group(shmbus_topic *t, struct shmbus_partition *p, struct shmbus_limit *out)
{
    uint64_t mask = load_acquire(&t->meta->masks.tethered);
    if (!mask)
        return 0;
    int clamp = t->on_full == SHMBUS_ON_FULL_DROP_OLDEST;
    int replays = !clamp && t->retention == SHMBUS_RETENTION_LOG;
    uint64_t head_pos = clamp || replays ? load_acquire(&p->head.position) : 0;
    uint64_t head_off = clamp || replays ? load_acquire(&p->head.offset) : 0;
    int found = 0;
    out->position = UINT64_MAX;
    out->offset = UINT64_MAX;
    while (mask) {
        int g = __builtin_ctzll(mask);
        mask &= mask - 1;
        uint64_t pos = load_acquire(&p->groups[g].committed_position);
        uint64_t off = load_acquire(&p->groups[g].committed_offset);
        const struct shmbus_group_record *rec = &t->meta->groups[g];
        if (replays && off < head_off && shmbus_tracks(rec->name_len, rec->ack))
            continue;
        if (clamp) {
            pos = pos > head_pos ? pos : head_pos;
            off = off > head_off ? off : head_off;
        }
        if (pos < out->position)
            out->position = pos;
        if (off < out->offset)
            out->offset = off;
        found = 1;
    }
    return found ? 1 : 2;
}

/* A group joins by publishing its committed point, then its mask bit, then
 * reading the head.  Scanning again after raising the head means a group that
 * joined meanwhile is either seen here or reads the raised head.  When every
 * tethered group is replaying below the head, nothing is held: the head goes
 * to the tail. */
struct shmbus_limit shmbus_ring_free_point(shmbus_topic *t, uint32_t partition)
{
    struct shmbus_partition *p = t->rings[partition].p;
    struct shmbus_limit lim, again;
    int found = slowest_group(t, p, &lim);
    if (!found) {
        lim.position = load_acquire(&p->head.position);
        lim.offset = load_acquire(&p->head.offset);
        return lim;
    }
    if (found == 2) {
        struct shmbus_point tail = point_load(&p->tail.tail);
        lim.position = tail.position;
        lim.offset = tail.offset;
    }
    store_max(&p->head.position, lim.position);
    store_max(&p->head.offset, lim.offset);
    if (slowest_group(t, p, &again) == 1) {
        if (again.position < lim.position)
            lim.position = again.position;
        if (again.offset < lim.offset)
            lim.offset = again.offset;
    }
    return lim;
}

/* Whether the record at `off` is still there and within the retention limits
 * (one being written counts as there: it is at the young end). */
static int retained(shmbus_topic *t, struct shmbus_ring *r, uint64_t off, struct shmbus_point tail,
                    int64_t now)
{
    const struct shmbus_slot *s = &r->slots[off & r->slot_mask];
    uint64_t seq = load_acquire(&s->seq);
    if ((seq & ~SHMBUS_SEQ_PADDING) > off + 1)
        return 0; /* a later lap's record took the slot */
    if ((seq & ~SHMBUS_SEQ_PADDING) < off + 1)
        return 1; /* still being written: the young end of the ring */
    uint64_t position = s->position;
    int64_t ts = s->timestamp_ns;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (load_relaxed(&s->seq) != seq)
        return 0;
    if (seq & SHMBUS_SEQ_PADDING)
        return 1; /* a recovered claim: skipped by readers, kept as a place */
    uint64_t limit = t->retention_bytes ? t->retention_bytes : r->capacity;
    if (limit > r->capacity)
        limit = r->capacity;
    if (tail.position - position > limit)
        return 0;
    return !t->retention_ns || now - ts <= t->retention_ns;
}

uint64_t shmbus_retained_start(shmbus_topic *t, uint32_t partition)
{
    struct shmbus_ring *r = &t->rings[partition];
    uint64_t head = load_acquire(&r->p->head.offset);
    if (t->retention != SHMBUS_RETENTION_LOG)
        return head;
    struct shmbus_point tail = point_load(&r->p->tail.tail);
    int64_t now = shmbus_now_realtime();
    /* records age and are overwritten oldest first: the first retained one is
     * found by halving [lo, tail); what is below the head may go at any time */
    uint64_t lo = tail.offset > r->slot_count ? tail.offset - r->slot_count : 0;
    uint64_t hi = tail.offset;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (retained(t, r, mid, tail, now))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void shmbus_wake_producers(struct shmbus_partition *p)
{
    if (load_relaxed(&p->space.waiters)) {
        fetch_add(&p->space.seq, 1);
        shmbus_futex_wake_all(&p->space.seq);
    }
}

void shmbus_wake_consumers(shmbus_topic *t)
{
    fetch_add(&t->meta->wake.seq, 1);
    fetch_add(&t->meta->wake.wakeups, 1);
    shmbus_futex_wake_all(&t->meta->wake.seq);
}

static int owner_alive(shmbus_topic *t, const struct shmbus_group_record *g)
{
    uint32_t m = g->owner_member;
    if (m >= SHMBUS_MAX_MEMBERS)
        return 0;
    if (load_acquire(&t->meta->members[m].attached_ns) != g->owner_since)
        return 0;
    return shmbus_lock_held(t->meta_fd, SHMBUS_LOCK_MEMBER(m));
}

static void clear_masks(shmbus_topic *t, uint32_t g)
{
    __atomic_fetch_and(&t->meta->masks.tethered, ~(1ULL << g), __ATOMIC_SEQ_CST);
    __atomic_fetch_and(&t->meta->masks.active, ~(1ULL << g), __ATOMIC_SEQ_CST);
}

/* Caller holds the group lock.  The entry stays busy (JOINING) until its mask
 * bits are gone, so a new group cannot take it and then lose its bits.  The head
 * first moves to what every group (this one included) has consumed: that is
 * gone for good, and a group that joins later at "earliest" never sees it again. */
int shmbus_group_release(shmbus_topic *t, uint32_t g)
{
    struct shmbus_group_record *rec = &t->meta->groups[g];
    uint32_t state = SHMBUS_GROUP_ACTIVE;
    if (!cas(&rec->state, &state, (uint32_t)SHMBUS_GROUP_JOINING))
        return 0;
    for (uint32_t i = 0; i < t->count; i++)
        shmbus_ring_free_point(t, i);
    clear_masks(t, g);
    store_release(&rec->state, (uint32_t)SHMBUS_GROUP_FREE);
    for (uint32_t i = 0; i < t->count; i++)
        shmbus_wake_producers(t->rings[i].p); /* the group may have held them back */
    return 1;
}

int shmbus_reap_locked(shmbus_topic *t)
{
    int reaped = 0;
    for (uint32_t g = 0; g < SHMBUS_MAX_GROUPS; g++) {
        struct shmbus_group_record *rec = &t->meta->groups[g];
        uint32_t state = load_acquire(&rec->state);
        if (state == SHMBUS_GROUP_JOINING) {
            /* made or released under the lock, which we hold: its maker died */
            clear_masks(t, g);
            store_release(&rec->state, (uint32_t)SHMBUS_GROUP_FREE);
            for (uint32_t i = 0; i < t->count; i++)
                shmbus_wake_producers(t->rings[i].p);
            reaped++;
        } else if (state == SHMBUS_GROUP_ACTIVE && (rec->flags & SHMBUS_GROUP_PRIVATE) &&
                   !owner_alive(t, rec)) {
            reaped += shmbus_group_release(t, g);
        }
    }
    return reaped;
}

int shmbus_reap_groups(shmbus_topic *t, int lock_fd)
{
    if (shmbus_lock_try(lock_fd, SHMBUS_LOCK_GROUPS) != 1)
        return 0; /* someone is at the table now: look another time */
    int reaped = shmbus_reap_locked(t);
    shmbus_lock_release(lock_fd, SHMBUS_LOCK_GROUPS);
    return reaped;
}
