/* A topic's figures at one moment, for monitors (shmbus stat, top, export):
 * read-only, lock-free, one call. */
#include <string.h>

#include "shmbus_atomic.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

static void snapshot_members(shmbus_topic *t, struct shmbus_snapshot *out, const uint32_t *held,
                             const uint32_t *owned)
{
    out->member_count = 0;
    for (uint32_t i = 0; i < SHMBUS_MAX_MEMBERS; i++) {
        const struct shmbus_member_record *m = &t->meta->members[i];
        uint64_t attached = load_acquire(&m->attached_ns);
        if (!attached)
            continue; /* never used */
        uint32_t group = load_acquire(&m->group);
        int alive = shmbus_lock_held(t->meta_fd, SHMBUS_LOCK_MEMBER(i));
        if (!alive && group == UINT32_MAX)
            continue; /* left its group, or never joined: nothing to show */
        struct shmbus_member_stats *s = &out->members[out->member_count++];
        s->entry = i;
        s->pid = load_relaxed(&m->pid);
        s->start_time = load_relaxed(&m->start_time);
        s->attached_ns = attached;
        s->last_active_ns = load_relaxed(&m->last_active_ns);
        s->group = group;
        s->alive = (uint32_t)alive;
        s->owned = owned[i];
        s->pending = held[i];
    }
}

static void snapshot_producers(shmbus_topic *t, struct shmbus_snapshot *out)
{
    out->producer_count = 0;
    for (uint32_t i = 0; i < SHMBUS_MAX_PRODUCERS; i++) {
        const struct shmbus_producer_record *p = &t->meta->producers[i];
        uint64_t attached = load_acquire(&p->attached_ns);
        if (!attached || !shmbus_lock_held(t->meta_fd, SHMBUS_LOCK_PRODUCER(i)))
            continue;
        struct shmbus_producer_stats *s = &out->producers[out->producer_count++];
        s->entry = i;
        s->pid = load_relaxed(&p->pid);
        s->start_time = load_relaxed(&p->start_time);
        s->attached_ns = attached;
    }
}

int shmbus_topic_snapshot(shmbus_topic *t, struct shmbus_snapshot *out)
{
    uint32_t held[SHMBUS_MAX_MEMBERS] = {0}, owned[SHMBUS_MAX_MEMBERS] = {0};
    uint32_t n = t->count;
    out->taken_ns = shmbus_now_realtime();
    out->monotonic_ns = shmbus_now_monotonic();
    out->partition_count = n;
    out->group_count = 0;
    /* heads first: a group's committed point read later is not below them */
    for (uint32_t p = 0; p < n; p++) {
        struct shmbus_limit held_from = shmbus_ring_free_point(t, p);
        out->partitions[p].head_offset = held_from.offset;
        out->partitions[p].head_position = held_from.position;
    }
    for (uint32_t g = 0; g < SHMBUS_MAX_GROUPS; g++) {
        struct shmbus_group_info *gi = &out->groups[out->group_count];
        int r = shmbus_group_info(t, g, gi);
        if (r == SHMBUS_EMPTY)
            continue;
        if (r != SHMBUS_OK)
            return r;
        struct shmbus_group_stats *gs = &out->group_partitions[(uint64_t)out->group_count * n];
        for (uint32_t p = 0; p < n; p++) {
            shmbus_group_read(t, g, p, &gs[p], held);
            uint64_t owner = load_acquire(&t->rings[p].p->groups[g].owner);
            uint32_t m = (uint32_t)(owner & 0xff) - 1;
            if (owner && m < SHMBUS_MAX_MEMBERS &&
                (uint32_t)(owner >> 8) == load_relaxed(&t->meta->members[m].incarnation))
                owned[m]++;
        }
        out->group_count++;
    }
    /* tails last: published is not below any group's cursor read above */
    for (uint32_t p = 0; p < n; p++) {
        struct shmbus_partition_stats *ps = &out->partitions[p];
        uint64_t ho = ps->head_offset, hp = ps->head_position;
        shmbus_partition_stats(t, p, ps);
        ps->head_offset = ho;
        ps->head_position = hp;
    }
    snapshot_members(t, out, held, owned);
    snapshot_producers(t, out);
    out->wakeups = load_relaxed(&t->meta->wake.wakeups);
    out->sweeps = load_relaxed(&t->meta->sweep.sweeps);
    out->recovered_groups = load_relaxed(&t->meta->sweep.recovered_groups);
    return SHMBUS_OK;
}
