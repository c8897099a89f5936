/* Consumers: opening and closing, reading at a private group's cursor,
 * committing, waiting, and recovering claims whose producer died.  Groups that
 * track their deliveries read through pending.c instead. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmbus_atomic.h"
#include "shmbus_fault.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

static int take_member(shmbus_topic *t, int lock_fd, uint32_t pid, uint64_t start_time,
                       uint32_t *index, uint32_t *incarnation)
{
    for (uint32_t i = 0; i < SHMBUS_MAX_MEMBERS; i++) {
        int r = shmbus_lock_try(lock_fd, SHMBUS_LOCK_MEMBER(i));
        if (r < 0)
            return r;
        if (r == 0)
            continue;
        struct shmbus_member_record *m = &t->meta->members[i];
        int64_t now = shmbus_now_realtime();
        m->pid = pid;
        m->start_time = start_time;
        store_release(&m->group, UINT32_MAX);
        store_release(&m->last_active_ns, (uint64_t)now);
        /* attached_ns tells this member apart from the entry's earlier owners;
         * it must differ from theirs even within one clock tick */
        uint64_t prev = load_acquire(&m->attached_ns);
        store_release(&m->attached_ns, (uint64_t)now > prev ? (uint64_t)now : prev + 1);
        *incarnation = load_relaxed(&m->incarnation) + 1;
        store_release(&m->incarnation, *incarnation);
        *index = i;
        return SHMBUS_OK;
    }
    return SHMBUS_ENOSLOT;
}

static int options_ok(const struct shmbus_group_options *o)
{
    return o->start <= SHMBUS_START_COMMITTED && o->ack <= SHMBUS_ACK_MANUAL &&
           o->ordering <= SHMBUS_ORDERING_NONE && o->name_len <= SHMBUS_MAX_NAME &&
           (o->name_len == 0 || o->name) && o->max_deliveries <= SHMBUS_MAX_DELIVERIES &&
           o->ack_timeout_ns >= 0 && o->ack_timeout_ns <= SHMBUS_MAX_DELAY_S * 1000000000LL &&
           (o->flags & ~(uint32_t)SHMBUS_GROUP_TETHERED) == 0;
}

/* Disk topics that sync: a group's entry (metadata) and committed offsets
 * (partitions) go to disk when a member joins or leaves. */
static void sync_group(shmbus_topic *t)
{
    if (t->fsync == SHMBUS_FSYNC_NEVER || t->count == 0 || t->rings[0].fd < 0)
        return;
    fdatasync(t->meta_fd);
    for (uint32_t i = 0; i < t->count; i++)
        fdatasync(t->rings[i].fd);
}

shmbus_consumer *shmbus_consumer_open(shmbus_topic *t, int lock_fd, uint32_t pid,
                                      uint64_t start_time, const struct shmbus_group_options *o,
                                      int *err)
{
    if (!options_ok(o)) {
        *err = SHMBUS_EINVAL;
        return NULL;
    }
    shmbus_consumer *c = calloc(1, sizeof *c + t->count * sizeof(struct shmbus_consumer_partition));
    if (!c) {
        *err = SHMBUS_ESYS;
        return NULL;
    }
    shmbus_fault_load();
    c->topic = t;
    c->lock_fd = lock_fd;
    c->tracked = shmbus_tracks(o->name_len, o->ack);
    c->tethered = (o->flags & SHMBUS_GROUP_TETHERED) != 0;
    /* under retention=log a reader may go back below what the groups hold */
    c->may_lap = !c->tethered || t->on_full == SHMBUS_ON_FULL_DROP_OLDEST ||
                 t->retention == SHMBUS_RETENTION_LOG;
    c->passable = shmbus_passable(t, c->tethered);
    c->manual = o->ack == SHMBUS_ACK_MANUAL;
    c->by_partition = o->name_len > 0 && o->ordering == SHMBUS_ORDERING_PARTITION;
    c->max_deliveries = o->max_deliveries;
    c->ack_timeout_ns = o->ack_timeout_ns;
    *err = take_member(t, lock_fd, pid, start_time, &c->member, &c->incarnation);
    if (*err != SHMBUS_OK) {
        free(c);
        return NULL;
    }
    *err = shmbus_group_join(c, o);
    if (*err != SHMBUS_OK) {
        shmbus_lock_release(lock_fd, SHMBUS_LOCK_MEMBER(c->member));
        free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < t->count; i++) {
        c->parts[i].release = load_acquire(&t->rings[i].p->groups[c->group].cursor);
        c->parts[i].stuck_offset = UINT64_MAX;
        c->parts[i].owned = !c->by_partition;
    }
    c->sweep_now = 1;
    sync_group(t);
    return c;
}

/* Whether `off` is done for the group: for a private group, every offset below
 * the cursor it was given; for a tracked group, what its pending entry says. */
static int done_at(struct shmbus_ring *r, uint32_t group, uint64_t off, int tracked)
{
    if (!tracked)
        return 1;
    const struct shmbus_pending *e = &r->pending[(uint64_t)group * r->window + (off & (r->window - 1))];
    /* the word is read after the offset: an entry is reused for a later offset
     * only after this one is done, so a stale offset can only fail the test */
    if (load_acquire(&e->offset) != off)
        return 0;
    return SHMBUS_P_STATE(load_acquire(&e->word)) == SHMBUS_P_DONE && load_acquire(&e->offset) == off;
}

/* Whether the head may pass this group's committed offset. */
static int may_be_passed(shmbus_topic *t, uint32_t group)
{
    return t->on_full == SHMBUS_ON_FULL_DROP_OLDEST ||
           !(t->meta->groups[group].flags & SHMBUS_GROUP_TETHERED);
}

int shmbus_advance_committed(shmbus_topic *t, uint32_t partition, uint32_t group, uint64_t upto,
                             int tracked)
{
    struct shmbus_ring *r = &t->rings[partition];
    struct shmbus_group_line *gl = &r->p->groups[group];
    uint64_t start, off, pos;
    int padding;
    for (;;) {
        start = off = load_acquire(&gl->committed_offset);
        if (off >= upto)
            return 0;
        pos = load_acquire(&gl->committed_position);
        /* what the head passed while this group was behind it (drop_oldest, or
         * an untethered group) is gone for it, done or not; the bytes below the
         * head are free whatever this group says */
        /* (a tracked group under retention=log reads what the log kept there) */
        uint64_t head = may_be_passed(t, group) && !(tracked && t->retention == SHMBUS_RETENTION_LOG)
                            ? load_acquire(&r->p->head.offset)
                            : 0;
        if (off < head) {
            off = head < upto ? head : upto;
            uint64_t head_pos = load_acquire(&r->p->head.position);
            pos = head_pos > pos ? head_pos : pos;
        }
        padding = 0;
        for (; off < upto; off++) {
            const struct shmbus_slot *s = &r->slots[off & r->slot_mask];
            uint64_t seq = load_acquire(&s->seq);
            if (seq != off + 1 && seq != ((off + 1) | SHMBUS_SEQ_PADDING)) {
                /* retention=log: a tracked group replaying below the head finds
                 * slots a later lap took; its entry says when it is done there */
                if (tracked && t->retention == SHMBUS_RETENTION_LOG &&
                    (seq & ~SHMBUS_SEQ_PADDING) > off + 1 && done_at(r, group, off, tracked))
                    continue;
                break;
            }
            if (!done_at(r, group, off, tracked))
                break;
            if (seq == off + 1) {
                uint64_t end = s->position + slot_record_bytes(s);
                /* drop_oldest may reuse the slot while it is read: seq again */
                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                if (load_relaxed(&s->seq) != seq)
                    break;
                if (end > pos)
                    pos = end;
            } else {
                padding = 1;
            }
        }
        if (off == start)
            return 0;
        /* Slots at or above the committed offset are not reused (but by
         * drop_oldest, checked above), so what was read holds while it has not
         * moved.  Another member of the group may have moved it meanwhile (and a
         * producer reused a slot read here): then look again from where it is. */
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (load_relaxed(&gl->committed_offset) == start)
            break;
    }
    /* A recovered claim's extent is unknown; once every offset claimed so far is
     * done, so is every byte claimed so far (the tail point is read whole). */
    if (padding) {
        struct shmbus_point tail = point_load(&r->p->tail.tail);
        if (tail.offset == off && tail.position > pos)
            pos = tail.position;
    }
    /* Members of one group may advance it at once: both points only rise, and
     * each rises to a point below which everything is done. */
    store_max(&gl->committed_position, pos);
    /* seq_cst (store_max's CAS): the waiter counts below are read after this store */
    store_max(&gl->committed_offset, off);
    shmbus_wake_producers(r->p);
    /* a member may be waiting for room in a full window of pending deliveries */
    if (tracked && load_acquire(&gl->cursor) >= start + r->window &&
        load_relaxed(&t->meta->wake.waiters))
        shmbus_wake_consumers(t);
    return 1;
}

static void release_delivered(shmbus_consumer *c)
{
    shmbus_topic *t = c->topic;
    for (uint32_t i = 0; i < t->count; i++) {
        if (c->tethered) {
            shmbus_advance_committed(t, i, c->group, c->parts[i].release, 0);
        } else {
            /* no producer waits for an untethered group, and the slots below
             * its cursor may be a later lap's: its committed offset (for lag)
             * is just what it was handed */
            store_max(&t->rings[i].p->groups[c->group].committed_offset, c->parts[i].release);
        }
    }
}

void shmbus_consumer_close(shmbus_consumer *c)
{
    if (!c)
        return;
    if (c->tracked)
        shmbus_release_all(c);
    else
        release_delivered(c);
    shmbus_group_leave(c);
    sync_group(c->topic);
    shmbus_lock_release(c->lock_fd, SHMBUS_LOCK_MEMBER(c->member));
    free(c->unreleased);
    free(c);
}

uint32_t shmbus_consumer_group(shmbus_consumer *c) { return c->group; }

/* A claim that stays uncommitted past the liveness timeout, and whose claimer
 * no longer holds its lock byte, becomes padding.  A claimer that lives (even
 * stopped) keeps its claim: only the dead cannot write into it later. */
int shmbus_recover_claim(shmbus_topic *t, struct shmbus_ring *r, uint64_t offset)
{
    struct shmbus_partition *p = r->p;
    for (uint32_t i = 0; i < SHMBUS_MAX_PRODUCERS; i++) {
        uint64_t first = load_acquire(&p->producers[i].intent);
        uint64_t end = load_acquire(&p->producers[i].intent_end);
        if (first <= offset && offset < end && shmbus_lock_held(t->meta_fd, SHMBUS_LOCK_PRODUCER(i)))
            return 0;
    }
    struct shmbus_slot *s = &r->slots[offset & r->slot_mask];
    uint64_t seq = load_acquire(&s->seq);
    uint64_t padding = (offset + 1) | SHMBUS_SEQ_PADDING;
    if (seq == offset + 1 || seq == padding)
        return 1;
    if ((seq & ~SHMBUS_SEQ_PADDING) > offset + 1)
        return 0; /* a later lap's record: the offset asked about is not the ring's */
    if (!cas(&s->seq, &seq, padding))
        return 1; /* committed meanwhile (by nobody alive) or padded by another */
    fetch_add(&p->counters.recovered_claims, 1);
    return 2;
}

/* The tail line is not read until the cursor has been stuck for the liveness
 * timeout: producers CAS it on every send, and a reader polling it would pull
 * it away from them. */
int shmbus_stuck_at(shmbus_consumer *c, uint32_t i, uint64_t cur)
{
    shmbus_topic *t = c->topic;
    struct shmbus_ring *r = &t->rings[i];
    struct shmbus_consumer_partition *cp = &c->parts[i];
    int64_t now = shmbus_now_monotonic();
    if (cp->stuck_offset != cur) {
        cp->stuck_offset = cur;
        cp->stuck_since = now;
    } else if (now - cp->stuck_since >= t->liveness_ns &&
               point_load(&r->p->tail.tail).offset > cur && shmbus_recover_claim(t, r, cur)) {
        /* the next offset may be the same dead claim (a batch): look at it at once */
        cp->stuck_offset = cur + 1;
        return 1;
    }
    return 0;
}

int shmbus_fill_delivery(struct shmbus_ring *r, uint32_t i, uint64_t cur, uint32_t count,
                         uint32_t flags, uint64_t *out)
{
    const struct shmbus_slot *s = &r->slots[cur & r->slot_mask];
    uint64_t position = s->position;
    uint64_t phys = position & (r->capacity - 1);
    uint64_t len = (uint64_t)s->value_len + s->key_len + s->headers_len;
    if (len > r->capacity - phys)
        return SHMBUS_ECORRUPT;
    out[SHMBUS_D_PARTITION] = i;
    out[SHMBUS_D_OFFSET] = cur;
    out[SHMBUS_D_VALUE_AT] = r->data_offset + phys;
    out[SHMBUS_D_VALUE_LEN] = s->value_len;
    out[SHMBUS_D_KEY_LEN] = s->key_len;
    out[SHMBUS_D_HEADERS_LEN] = s->headers_len;
    out[SHMBUS_D_TIMESTAMP] = (uint64_t)s->timestamp_ns;
    out[SHMBUS_D_POSITION] = position;
    out[SHMBUS_D_KEYED] = s->flags & SHMBUS_RECORD_KEYED;
    out[SHMBUS_D_DELIVERY_COUNT] = count;
    out[SHMBUS_D_FLAGS] = flags;
    out[SHMBUS_D_LOST] = 0;
    return SHMBUS_OK;
}

enum { READ_NONE = 0, READ_RECORD = 1, READ_SKIP = 2 };

/* Whether a record's bytes may already be reused: bytes lap before slots do.
 * Below the head they are free (under retention=log kept until a producer
 * writes over them, which the tail says). */
int shmbus_bytes_gone(shmbus_topic *t, struct shmbus_ring *r, uint64_t position)
{
    if (position >= load_acquire(&r->p->head.position))
        return 0;
    return t->retention != SHMBUS_RETENTION_LOG ||
           point_load(&r->p->tail.tail).position > position + r->capacity;
}

/* The cursor was lapped (untethered, or drop_oldest): the records from it up
 * to the head are gone.  It goes on at the head and tells the next delivery how many it lost. */
static int lapped(shmbus_consumer *c, uint32_t i, uint64_t cur)
{
    struct shmbus_ring *r = &c->topic->rings[i];
    struct shmbus_group_line *gl = &r->p->groups[c->group];
    /* a slot is reused only after the head has passed its offset; under
     * retention=log the oldest record still there may lie below the head */
    uint64_t head = shmbus_retained_start(c->topic, i);
    if (head <= cur)
        return READ_NONE;
    store_release(&gl->cursor, head);
    fetch_add(&gl->lost, head - cur);
    c->parts[i].lost += head - cur;
    c->parts[i].release = head;
    return READ_SKIP;
}

/* Looks at a private group's cursor in one partition. */
static int read_at_cursor(shmbus_consumer *c, uint32_t i, uint64_t *out)
{
    struct shmbus_ring *r = &c->topic->rings[i];
    struct shmbus_group_line *gl = &r->p->groups[c->group];
    uint64_t cur = load_relaxed(&gl->cursor);
    const struct shmbus_slot *s = &r->slots[cur & r->slot_mask];
    uint64_t seq = load_acquire(&s->seq);
    if (seq == cur + 1) {
        int filled = shmbus_fill_delivery(r, i, cur, 1, 0, out);
        if (c->may_lap) {
            /* the slot may have been reused while it was read: seq again, as a
             * sequence lock; the bytes are checked after they are copied */
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (load_relaxed(&s->seq) != seq || shmbus_bytes_gone(c->topic, r, out[SHMBUS_D_POSITION]))
                return lapped(c, i, cur);
            out[SHMBUS_D_LOST] = c->parts[i].lost;
            c->parts[i].lost = 0;
            /* what this group holds stays until it releases it, unless
             * drop_oldest or nothing (untethered) holds it */
            if (!c->tethered || c->topic->on_full == SHMBUS_ON_FULL_DROP_OLDEST ||
                cur < load_relaxed(&gl->committed_offset))
                out[SHMBUS_D_FLAGS] |= SHMBUS_DF_UNKEPT;
        }
        if (filled != SHMBUS_OK)
            return SHMBUS_ECORRUPT;
        store_release(&gl->cursor, cur + 1);
        store_relaxed(&gl->delivered, load_relaxed(&gl->delivered) + 1);
        c->parts[i].release = cur + 1;
        return READ_RECORD;
    }
    if (seq == ((cur + 1) | SHMBUS_SEQ_PADDING)) {
        store_release(&gl->cursor, cur + 1);
        c->parts[i].release = cur + 1;
        return READ_SKIP;
    }
    if (c->may_lap && (seq & ~SHMBUS_SEQ_PADDING) > cur + 1)
        return lapped(c, i, cur);
    return shmbus_stuck_at(c, i, cur) ? READ_SKIP : READ_NONE;
}

int shmbus_poll_batch(shmbus_consumer *c, uint64_t *out, uint32_t max)
{
    /* for monitors: a member that stops polling shows as stalled */
    store_relaxed(&c->topic->meta->members[c->member].last_active_ns, (uint64_t)shmbus_now_coarse());
    if (c->tracked)
        return shmbus_poll_tracked(c, out, max);
    release_delivered(c);
    shmbus_topic *t = c->topic;
    uint32_t n = 0;
    for (uint32_t k = 0; k < t->count && n < max; k++) {
        uint32_t i = (c->next + k) % t->count;
        while (n < max) {
            int r = read_at_cursor(c, i, out + (uint64_t)n * SHMBUS_DELIVERY_FIELDS);
            if (r < 0)
                return n ? (int)n : r;
            if (r == READ_NONE)
                break;
            if (r == READ_RECORD)
                n++;
        }
    }
    if (n)
        c->next = (c->next + 1) % t->count;
    return (int)n;
}

int shmbus_poll(shmbus_consumer *c, uint64_t *out) { return shmbus_poll_batch(c, out, 1); }

/* 1: a record (or padding) waits at some cursor; 0: nothing; -1 (only when
 * look_at_claims): claims still being written, which a dead producer may never
 * finish.  Spinning does not look at claims, to leave the tail line alone. */
static int available(shmbus_consumer *c, int look_at_claims)
{
    if (c->tracked)
        return shmbus_tracked_available(c);
    shmbus_topic *t = c->topic;
    int claimed = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        struct shmbus_ring *r = &t->rings[i];
        uint64_t cur = load_relaxed(&r->p->groups[c->group].cursor);
        uint64_t seq = load_acquire(&r->slots[cur & r->slot_mask].seq);
        if (seq == cur + 1 || seq == ((cur + 1) | SHMBUS_SEQ_PADDING))
            return 1;
        if (c->may_lap && (seq & ~SHMBUS_SEQ_PADDING) > cur + 1)
            return 1; /* lapped: it goes on at the head */
        if (look_at_claims && point_load(&r->p->tail.tail).offset > cur)
            claimed = 1;
    }
    return claimed ? -1 : 0;
}

int shmbus_wait(shmbus_consumer *c, int64_t timeout_ns, int64_t spin_ns)
{
    shmbus_topic *t = c->topic;
    struct shmbus_wake_line *w = &t->meta->wake;
    int64_t start = shmbus_now_monotonic();
    store_relaxed(&t->meta->members[c->member].last_active_ns, (uint64_t)shmbus_now_realtime());
    if (spin_ns > timeout_ns)
        spin_ns = timeout_ns;
    for (int64_t spun = 0; spun < spin_ns; spun = shmbus_now_monotonic() - start) {
        if (available(c, 0) > 0)
            return SHMBUS_OK;
        shmbus_spin_step(spun);
    }
    uint32_t seq = load_acquire(&w->seq);
    fetch_add(&w->waiters, 1);
    int r = SHMBUS_OK;
    int a = available(c, 1);
    if (a <= 0) {
        int64_t now = shmbus_now_monotonic();
        int64_t left = timeout_ns - (now - start);
        /* a claim that stays open must be looked at again within the liveness
         * timeout; a tracked group has deadlines of its own */
        int64_t due = a < 0 ? t->liveness_ns / 8 : left;
        if (c->tracked && c->next_sweep - now < due)
            due = c->next_sweep - now;
        if (due < left)
            left = due > 0 ? due : 0;
        r = shmbus_futex_wait(&w->seq, seq, left);
        if (r == SHMBUS_TIMEOUT) {
            now = shmbus_now_monotonic();
            /* what a dead process left may be what this wait waited for */
            if (now - c->last_sweep >= t->liveness_ns / 4) {
                c->last_sweep = now;
                shmbus_topic_sweep(t, c->lock_fd, NULL);
            }
            if (now - start < timeout_ns)
                r = SHMBUS_OK; /* poll again: that is where claims and deadlines are looked at */
        }
    }
    __atomic_fetch_sub(&w->waiters, 1, __ATOMIC_SEQ_CST);
    return r;
}

int shmbus_poll_wait(shmbus_consumer *c, uint64_t *out, uint32_t max, int64_t timeout_ns,
                     int64_t spin_ns)
{
    int n = shmbus_poll_batch(c, out, max);
    if (n != 0 || timeout_ns <= 0)
        return n;
    int64_t deadline = shmbus_now_monotonic() + timeout_ns;
    for (;;) {
        int r = shmbus_wait(c, deadline - shmbus_now_monotonic(), spin_ns);
        n = shmbus_poll_batch(c, out, max);
        if (n != 0)
            return n;
        if (r == SHMBUS_INTERRUPTED)
            return r;
        if (shmbus_now_monotonic() >= deadline)
            return 0;
    }
}

/* The bytes are copied before the ack: until then the group holds them. */
int shmbus_take_copy(shmbus_consumer *c, uint64_t *d, uint32_t max, char *buf, uint64_t cap,
                     int64_t timeout_ns, int64_t spin_ns, uint32_t *copied)
{
    *copied = 0;
    if (!c->manual || max == 0)
        return SHMBUS_EINVAL;
    int n = shmbus_poll_wait(c, d, max, timeout_ns, spin_ns);
    if (n <= 0)
        return n;
    uint64_t at = 0, pairs[2 * 64];
    uint32_t k = 0, batched = 0;
    for (; k < (uint32_t)n; k++) {
        const uint64_t *e = d + (uint64_t)k * SHMBUS_DELIVERY_FIELDS;
        uint64_t len = e[SHMBUS_D_VALUE_LEN] + e[SHMBUS_D_KEY_LEN];
        if (len > cap - at || (e[SHMBUS_D_FLAGS] & (SHMBUS_DF_DEAD_LETTER | SHMBUS_DF_UNKEPT)))
            break;
        const struct shmbus_ring *r = &c->topic->rings[e[SHMBUS_D_PARTITION]];
        memcpy(buf + at, (const unsigned char *)r->p + e[SHMBUS_D_VALUE_AT], len);
        at += len;
        pairs[2 * batched] = e[SHMBUS_D_PARTITION];
        pairs[2 * batched + 1] = e[SHMBUS_D_OFFSET];
        if (++batched == 64) {
            int a = shmbus_ack_batch(c, pairs, batched);
            if (a < 0)
                return a;
            batched = 0;
        }
    }
    if (batched) {
        int a = shmbus_ack_batch(c, pairs, batched);
        if (a < 0)
            return a;
    }
    *copied = k;
    return n;
}

int shmbus_still_there(shmbus_consumer *c, uint32_t partition, uint64_t position, uint64_t length)
{
    if (partition >= c->topic->count)
        return 0;
    struct shmbus_ring *r = &c->topic->rings[partition];
    /* called after the copy: the copy's loads happen before this one */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    (void)length; /* a claim overwrites the record once the tail passes its start by a lap */
    return point_load(&r->p->tail.tail).position <= position + r->capacity;
}

uint64_t shmbus_lag(shmbus_consumer *c)
{
    uint64_t lag = 0;
    for (uint32_t i = 0; i < c->topic->count; i++) {
        struct shmbus_partition *p = c->topic->rings[i].p;
        uint64_t tail = point_load(&p->tail.tail).offset;
        uint64_t committed = load_acquire(&p->groups[c->group].committed_offset);
        lag += tail > committed ? tail - committed : 0;
    }
    return lag;
}

int64_t shmbus_seek(shmbus_consumer *c, uint32_t partition, uint64_t offset)
{
    shmbus_topic *t = c->topic;
    if (partition >= t->count)
        return SHMBUS_EINVAL;
    struct shmbus_ring *r = &t->rings[partition];
    if (offset > point_load(&r->p->tail.tail).offset)
        return SHMBUS_EINVAL;
    if (c->tracked)
        return shmbus_seek_tracked(c, partition, offset);
    /* a reader that may be lapped reads anything retained, checked; one whose
     * ring keeps what it has not released goes back no further than that */
    uint64_t oldest = c->may_lap ? shmbus_retained_start(t, partition)
                                 : load_acquire(&r->p->groups[c->group].committed_offset);
    if (offset < oldest)
        offset = oldest;
    struct shmbus_consumer_partition *cp = &c->parts[partition];
    store_release(&r->p->groups[c->group].cursor, offset);
    /* forward: what is skipped is done at the next poll; backward: the group
     * keeps what it committed, and reads what lies below it as it may */
    if (offset > cp->release)
        cp->release = offset;
    cp->stuck_offset = UINT64_MAX;
    cp->lost = 0;
    return (int64_t)offset;
}

int64_t shmbus_offset_for_time(shmbus_topic *t, uint32_t partition, int64_t ns)
{
    if (partition >= t->count)
        return SHMBUS_EINVAL;
    struct shmbus_ring *r = &t->rings[partition];
    uint64_t lo = shmbus_retained_start(t, partition);
    uint64_t hi = point_load(&r->p->tail.tail).offset;
    while (lo < hi) { /* stamps grow with offsets (per producer; nearly across them) */
        uint64_t mid = lo + (hi - lo) / 2;
        const struct shmbus_slot *s = &r->slots[mid & r->slot_mask];
        uint64_t seq = load_acquire(&s->seq);
        int64_t ts = s->timestamp_ns;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        int before = seq == mid + 1 && load_relaxed(&s->seq) == seq && ts < ns;
        if (before || seq == ((mid + 1) | SHMBUS_SEQ_PADDING))
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int64_t)lo;
}

int64_t shmbus_end_offset(shmbus_topic *t, uint32_t partition)
{
    if (partition >= t->count)
        return SHMBUS_EINVAL;
    return (int64_t)point_load(&t->rings[partition].p->tail.tail).offset;
}
