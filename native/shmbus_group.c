/* Groups: creating and joining them, leaving, who is a live member, and which
 * member owns which partition under ordering=partition. */
#include <string.h>

#include "shmbus_atomic.h"
#include "shmbus_fault.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

#define GROUP_LOCK_WAIT_NS 2000000000LL

int shmbus_member_alive(shmbus_topic *t, uint32_t member, uint32_t group, uint64_t incarnation,
                        uint64_t mask)
{
    if (member >= SHMBUS_MAX_MEMBERS)
        return 0;
    const struct shmbus_member_record *m = &t->meta->members[member];
    if ((load_acquire(&m->incarnation) & mask) != (incarnation & mask) ||
        load_acquire(&m->group) != group)
        return 0;
    return shmbus_lock_held(t->meta_fd, SHMBUS_LOCK_MEMBER(member));
}

static int lock_groups(int fd) { return shmbus_lock_wait(fd, SHMBUS_LOCK_GROUPS, GROUP_LOCK_WAIT_NS); }

/* Fills a group entry taken in state JOINING (under the group lock) and makes
 * it active, last: a process that dies before leaves an entry that the next
 * holder of the lock frees.  The committed point is published before the mask
 * bit, and the head is read after, as shmbus_ring_free_point expects. */
static void group_create(shmbus_consumer *c, uint32_t g, const struct shmbus_group_options *o)
{
    shmbus_topic *t = c->topic;
    struct shmbus_meta *m = t->meta;
    struct shmbus_group_record *rec = &m->groups[g];
    /* "earliest" is the oldest message some group still holds (or, with no
     * group, the oldest kept for the first to come): raise the head to it */
    for (uint32_t i = 0; i < t->count; i++)
        shmbus_ring_free_point(t, i);
    rec->flags = o->flags | (o->name_len ? 0 : SHMBUS_GROUP_PRIVATE);
    rec->owner_member = c->member;
    rec->owner_since = load_acquire(&m->members[c->member].attached_ns);
    memset(rec->name, 0, sizeof rec->name);
    if (o->name_len)
        memcpy(rec->name, o->name, o->name_len);
    rec->name_len = o->name_len;
    rec->created_ns = (uint64_t)shmbus_now_realtime();
    rec->ack = o->ack;
    rec->ordering = o->ordering;
    rec->ack_timeout_ns = (uint64_t)o->ack_timeout_ns;
    rec->max_deliveries = o->max_deliveries;
    if (c->tracked)
        shmbus_pending_reset(t, g);
    for (uint32_t i = 0; i < t->count; i++) {
        struct shmbus_partition *p = t->rings[i].p;
        struct shmbus_group_line *gl = &p->groups[g];
        memset(gl, 0, sizeof *gl);
        store_release(&gl->committed_position, load_acquire(&p->head.position));
        store_release(&gl->committed_offset, load_acquire(&p->head.offset));
    }
    __atomic_fetch_or(&m->masks.active, 1ULL << g, __ATOMIC_SEQ_CST);
    if (o->flags & SHMBUS_GROUP_TETHERED)
        __atomic_fetch_or(&m->masks.tethered, 1ULL << g, __ATOMIC_SEQ_CST);
    for (uint32_t i = 0; i < t->count; i++) {
        struct shmbus_partition *p = t->rings[i].p;
        struct shmbus_group_line *gl = &p->groups[g];
        store_max(&gl->committed_position, load_acquire(&p->head.position));
        uint64_t head = load_acquire(&p->head.offset);
        store_max(&gl->committed_offset, head);
        /* a new group has nothing committed: "committed" starts it at the end;
         * "earliest" is the oldest record retained (below the head under
         * retention=log, where a tracked group's window starts there too: the
         * head passes it, and what it reads there is checked) */
        uint64_t cursor = c->tracked ? head : shmbus_retained_start(t, i);
        if (c->tracked && t->retention == SHMBUS_RETENTION_LOG && o->start == SHMBUS_START_EARLIEST) {
            cursor = shmbus_retained_start(t, i);
            store_release(&gl->committed_offset, cursor);
        }
        if (o->start != SHMBUS_START_EARLIEST) {
            struct shmbus_point end = point_load(&p->tail.tail);
            cursor = end.offset;
            /* a tracked group's window starts at its committed offset */
            if (c->tracked) {
                store_max(&gl->committed_position, end.position);
                store_max(&gl->committed_offset, end.offset);
            }
        }
        store_release(&gl->cursor, cursor);
    }
    FAULT_POINT(SHMBUS_FAULT_GROUP_CREATE);
    store_release(&rec->state, (uint32_t)SHMBUS_GROUP_ACTIVE);
}

/* Under the group lock. */
static int take_free_group(shmbus_consumer *c, const struct shmbus_group_options *o)
{
    for (uint32_t g = 0; g < SHMBUS_MAX_GROUPS; g++) {
        uint32_t state = SHMBUS_GROUP_FREE;
        if (!cas(&c->topic->meta->groups[g].state, &state, (uint32_t)SHMBUS_GROUP_JOINING))
            continue;
        group_create(c, g, o);
        c->group = g;
        return SHMBUS_OK;
    }
    return SHMBUS_ENOSLOT;
}

static int same_config(const struct shmbus_group_record *rec, const struct shmbus_group_options *o)
{
    return rec->ack == o->ack && rec->ordering == o->ordering &&
           rec->max_deliveries == o->max_deliveries &&
           (rec->flags & SHMBUS_GROUP_TETHERED) == (o->flags & SHMBUS_GROUP_TETHERED);
}

/* Under the group lock: the entry of the named group, or -1. */
static int find_named(shmbus_topic *t, const char *name, uint32_t name_len)
{
    for (uint32_t g = 0; g < SHMBUS_MAX_GROUPS; g++) {
        struct shmbus_group_record *rec = &t->meta->groups[g];
        if (load_acquire(&rec->state) == SHMBUS_GROUP_ACTIVE && !(rec->flags & SHMBUS_GROUP_PRIVATE) &&
            rec->name_len == name_len && memcmp(rec->name, name, name_len) == 0)
            return (int)g;
    }
    return -1;
}

/* Whether a group entry's configuration is one a member could have given: an
 * entry that is not is damaged, not another configuration. */
static int record_ok(const struct shmbus_group_record *rec)
{
    return rec->ack <= SHMBUS_ACK_MANUAL && rec->ordering <= SHMBUS_ORDERING_NONE &&
           rec->max_deliveries <= SHMBUS_MAX_DELIVERIES &&
           (rec->flags & ~(uint32_t)(SHMBUS_GROUP_PRIVATE | SHMBUS_GROUP_TETHERED)) == 0;
}

static int join_named(shmbus_consumer *c, const struct shmbus_group_options *o)
{
    int g = find_named(c->topic, o->name, o->name_len);
    if (g < 0)
        return SHMBUS_ENOSLOT;
    if (!record_ok(&c->topic->meta->groups[g]))
        return SHMBUS_ECORRUPT;
    if (!same_config(&c->topic->meta->groups[g], o))
        return SHMBUS_ECONFIG;
    c->group = (uint32_t)g;
    return SHMBUS_OK;
}

static uint32_t live_members(shmbus_topic *t, uint32_t g)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < SHMBUS_MAX_MEMBERS; k++)
        if (load_acquire(&t->meta->members[k].group) == g &&
            shmbus_lock_held(t->meta_fd, SHMBUS_LOCK_MEMBER(k)))
            n++;
    return n;
}

int shmbus_group_delete(shmbus_topic *t, int lock_fd, const char *name, uint32_t name_len)
{
    if (name_len == 0 || name_len > SHMBUS_MAX_NAME)
        return SHMBUS_EINVAL;
    int r = lock_groups(lock_fd);
    if (r != SHMBUS_OK)
        return r;
    int g = find_named(t, name, name_len);
    if (g < 0)
        r = SHMBUS_EMPTY;
    else if (live_members(t, (uint32_t)g))
        r = SHMBUS_EMEMBERS;
    else
        shmbus_group_release(t, (uint32_t)g);
    shmbus_lock_release(lock_fd, SHMBUS_LOCK_GROUPS);
    return r;
}

int shmbus_group_join(shmbus_consumer *c, const struct shmbus_group_options *o)
{
    shmbus_topic *t = c->topic;
    int r = lock_groups(c->lock_fd);
    if (r != SHMBUS_OK)
        return r;
    shmbus_reap_locked(t);
    r = o->name_len ? join_named(c, o) : SHMBUS_ENOSLOT;
    if (r == SHMBUS_ENOSLOT)
        r = take_free_group(c, o);
    if (r == SHMBUS_OK)
        store_release(&t->meta->members[c->member].group, c->group);
    shmbus_lock_release(c->lock_fd, SHMBUS_LOCK_GROUPS);
    if (r != SHMBUS_OK)
        return r;
    /* A dead member of this entry and incarnation (modulo 16) may have left
     * deliveries that now look like ours: they go again, or are done. */
    if (c->tracked)
        shmbus_release_all(c);
    c->epoch_seen = fetch_add(&t->meta->groups[c->group].epoch, 1) + 1;
    /* the owners of partitions look at the new member at their next poll */
    if (c->by_partition)
        shmbus_wake_consumers(t);
    return SHMBUS_OK;
}

void shmbus_group_leave(shmbus_consumer *c)
{
    shmbus_topic *t = c->topic;
    struct shmbus_group_record *rec = &t->meta->groups[c->group];
    store_release(&t->meta->members[c->member].group, UINT32_MAX);
    if (rec->flags & SHMBUS_GROUP_PRIVATE) {
        /* if the lock stays busy, the group is reaped later: its owner is gone */
        if (lock_groups(c->lock_fd) == SHMBUS_OK) {
            shmbus_group_release(t, c->group);
            shmbus_lock_release(c->lock_fd, SHMBUS_LOCK_GROUPS);
        }
        return;
    }
    uint64_t mine = shmbus_owner_word(c);
    for (uint32_t i = 0; i < t->count; i++) {
        uint64_t owner = mine;
        cas(&t->rings[i].p->groups[c->group].owner, &owner, 0);
    }
    fetch_add(&rec->epoch, 1);
    shmbus_wake_consumers(t);
}

/* A partition this member is to give up goes once none of its deliveries
 * there is in flight; the next owner redelivers what it released. */
static int hand_over(shmbus_consumer *c, uint32_t i)
{
    struct shmbus_consumer_partition *cp = &c->parts[i];
    if (!shmbus_owns_nothing_in_flight(c, i))
        return 0;
    uint64_t owner = shmbus_owner_word(c);
    cas(&c->topic->rings[i].p->groups[c->group].owner, &owner, 0);
    cp->owned = 0;
    cp->leaving = 0;
    return 1;
}

void shmbus_group_handover(shmbus_consumer *c)
{
    int moved = 0;
    for (uint32_t i = 0; i < c->topic->count; i++)
        if (c->parts[i].leaving)
            moved |= hand_over(c, i);
    if (moved) {
        fetch_add(&c->topic->meta->groups[c->group].epoch, 1);
        shmbus_wake_consumers(c->topic);
    }
}

/* Partition i belongs to the (i mod n)-th live member in entry order.  Every
 * member computes the same assignment from the member table; a partition moves
 * only through owner 0 (given up) or from a member that is gone. */
int shmbus_group_rebalance(shmbus_consumer *c)
{
    shmbus_topic *t = c->topic;
    struct shmbus_meta *m = t->meta;
    uint32_t live[SHMBUS_MAX_MEMBERS], n = 0;
    for (uint32_t k = 0; k < SHMBUS_MAX_MEMBERS; k++) {
        if (load_acquire(&m->members[k].group) != c->group)
            continue;
        if (k == c->member || shmbus_lock_held(t->meta_fd, SHMBUS_LOCK_MEMBER(k)))
            live[n++] = k;
    }
    if (n == 0) /* only when this member's own entry was overwritten */
        return 0;
    uint64_t mine = shmbus_owner_word(c);
    int took = 0, moved = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        struct shmbus_consumer_partition *cp = &c->parts[i];
        struct shmbus_group_line *gl = &t->rings[i].p->groups[c->group];
        uint32_t desired = live[i % n];
        uint64_t owner = load_acquire(&gl->owner);
        if (owner == mine) {
            cp->owned = 1;
            cp->leaving = desired != c->member;
            if (cp->leaving)
                moved |= hand_over(c, i);
            continue;
        }
        cp->owned = 0;
        cp->leaving = 0;
        if (desired != c->member)
            continue;
        /* an owner that lives (looked at now, not in the list made above: it may
         * have joined since) hands the partition over when its deliveries are done */
        if (owner != 0 && shmbus_member_alive(t, (uint32_t)(owner & 0xff) - 1, c->group, owner >> 8,
                                              UINT64_MAX))
            continue;
        if (cas(&gl->owner, &owner, mine)) {
            FAULT_POINT(SHMBUS_FAULT_REBALANCE);
            cp->owned = 1;
            took = moved = 1;
        }
    }
    if (moved) {
        fetch_add(&m->groups[c->group].epoch, 1);
        shmbus_wake_consumers(t);
    }
    return took;
}

int shmbus_group_info(shmbus_topic *t, uint32_t g, struct shmbus_group_info *out)
{
    if (g >= SHMBUS_MAX_GROUPS)
        return SHMBUS_EINVAL;
    memset(out, 0, sizeof *out);
    const struct shmbus_group_record *rec = &t->meta->groups[g];
    out->state = load_acquire(&rec->state);
    if (out->state != SHMBUS_GROUP_ACTIVE)
        return SHMBUS_EMPTY;
    out->flags = rec->flags;
    out->ack = rec->ack;
    out->ordering = rec->ordering;
    out->max_deliveries = rec->max_deliveries;
    out->ack_timeout_ns = rec->ack_timeout_ns;
    out->created_ns = rec->created_ns;
    out->name_len = rec->name_len <= SHMBUS_MAX_NAME ? rec->name_len : 0;
    memcpy(out->name, rec->name, out->name_len);
    out->members = live_members(t, g);
    out->entry = g;
    return SHMBUS_OK;
}
