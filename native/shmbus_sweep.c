/* The recovery sweep: what dead processes left in a topic, found and put right
 * without waiting for a reader to get stuck on it. */
#include "shmbus_atomic.h"
#include "shmbus_fault.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

uint64_t shmbus_recover_claims(shmbus_topic *t, uint32_t i, uint64_t first, uint64_t end)
{
    struct shmbus_ring *r = &t->rings[i];
    uint64_t tail = point_load(&r->p->tail.tail).offset, n = 0;
    if (first == SHMBUS_NO_INTENT || first >= tail)
        return 0;
    if (end > tail)
        end = tail;
    if (end - first > r->slot_count) /* not an intent a producer wrote */
        return 0;
    for (uint64_t off = first; off < end; off++)
        n += shmbus_recover_claim(t, r, off) == 2;
    return n;
}

/* Claims of producers whose lock byte nobody holds: they died (a producer that
 * closed committed everything it claimed, and then its claims are no-ops). */
static uint64_t sweep_claims(shmbus_topic *t, uint32_t i)
{
    uint64_t n = 0;
    for (uint32_t k = 0; k < SHMBUS_MAX_PRODUCERS; k++) {
        struct shmbus_producer_line *line = &t->rings[i].p->producers[k];
        uint64_t first = load_acquire(&line->intent), end = load_acquire(&line->intent_end);
        if (first == SHMBUS_NO_INTENT || shmbus_lock_held(t->meta_fd, SHMBUS_LOCK_PRODUCER(k)))
            continue;
        n += shmbus_recover_claims(t, i, first, end);
    }
    return n;
}

/* A partition owned by a member that is gone goes back to the group (owner 0),
 * after that member's deliveries there were released: the next owner takes it
 * at its next rebalance. */
static uint64_t sweep_owner(shmbus_topic *t, uint32_t i, uint32_t g)
{
    struct shmbus_group_line *gl = &t->rings[i].p->groups[g];
    uint64_t owner = load_acquire(&gl->owner);
    if (owner == 0 || shmbus_member_alive(t, (uint32_t)(owner & 0xff) - 1, g, owner >> 8, UINT64_MAX))
        return 0;
    if (!cas(&gl->owner, &owner, 0))
        return 0;
    fetch_add(&gl->recovered_owners, 1);
    fetch_add(&t->meta->groups[g].epoch, 1);
    return 1;
}

int shmbus_topic_sweep(shmbus_topic *t, int lock_fd, struct shmbus_sweep_result *out)
{
    shmbus_fault_load();
    struct shmbus_sweep_result got = {0};
    got.groups = (uint64_t)shmbus_reap_groups(t, lock_fd); /* skipped while the table is busy */
    if (got.groups)
        fetch_add(&t->meta->sweep.recovered_groups, got.groups);
    for (uint32_t i = 0; i < t->count; i++) {
        uint64_t claims = sweep_claims(t, i);
        got.claims += claims;
        if (claims)
            FAULT_POINT(SHMBUS_FAULT_SWEEP);
        uint64_t active = load_acquire(&t->meta->masks.active);
        for (uint32_t g = 0; g < SHMBUS_MAX_GROUPS; g++) {
            if (!(active >> g & 1) || load_acquire(&t->meta->groups[g].state) != SHMBUS_GROUP_ACTIVE)
                continue;
            const struct shmbus_group_record *rec = &t->meta->groups[g];
            if (shmbus_tracks(rec->name_len, rec->ack)) {
                got.deliveries += shmbus_pending_recover(t, i, g);
                /* a member that died acking left its committed point behind */
                shmbus_advance_committed(t, i, g, load_acquire(&t->rings[i].p->groups[g].cursor), 1);
            }
            if (rec->ordering == SHMBUS_ORDERING_PARTITION && rec->name_len)
                got.owners += sweep_owner(t, i, g);
        }
        if (claims) /* readers stuck at a claim go on; producers may find room */
            shmbus_wake_producers(t->rings[i].p);
    }
    if (got.claims || got.deliveries || got.owners)
        shmbus_wake_consumers(t);
    got.sweeps = fetch_add(&t->meta->sweep.sweeps, 1) + 1;
    if (out) {
        out->claims += got.claims;
        out->deliveries += got.deliveries;
        out->owners += got.owners;
        out->groups += got.groups;
        out->sweeps = got.sweeps;
    }
    return SHMBUS_OK;
}

void shmbus_sweep_counters(shmbus_topic *t, struct shmbus_sweep_result *out)
{
    out->claims = out->deliveries = out->owners = 0;
    out->groups = load_relaxed(&t->meta->sweep.recovered_groups);
    out->sweeps = load_relaxed(&t->meta->sweep.sweeps);
}
