/* Consumers: joining a group, reading at the group's cursor, committing,
 * waiting, and recovering claims whose producer died. */
#include <stdlib.h>
#include <string.h>

#include "shmbus_atomic.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

static int take_member(shmbus_topic *t, int lock_fd, uint32_t pid, uint64_t start_time,
                       uint32_t *index)
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
        m->group = UINT32_MAX;
        store_release(&m->last_active_ns, (uint64_t)now);
        /* attached_ns tells this member apart from the entry's earlier owners;
         * it must differ from theirs even within one clock tick */
        uint64_t prev = load_acquire(&m->attached_ns);
        store_release(&m->attached_ns, (uint64_t)now > prev ? (uint64_t)now : prev + 1);
        *index = i;
        return SHMBUS_OK;
    }
    return SHMBUS_ENOSLOT;
}

/* A new private group: its committed point is published before its mask bit,
 * and the head is read after, as shmbus_ring_free_point expects. */
static int join_private_group(shmbus_topic *t, uint32_t member, uint32_t flags, uint32_t start,
                              uint32_t *index)
{
    struct shmbus_meta *m = t->meta;
    for (uint32_t g = 0; g < SHMBUS_MAX_GROUPS; g++) {
        struct shmbus_group_record *rec = &m->groups[g];
        uint32_t state = SHMBUS_GROUP_FREE;
        if (!cas(&rec->state, &state, (uint32_t)SHMBUS_GROUP_JOINING))
            continue;
        /* "earliest" is the oldest message some group still holds (or, with no
         * group, the oldest kept for the first to come): raise the head to it */
        for (uint32_t i = 0; i < t->count; i++)
            shmbus_ring_free_point(t, i);
        rec->flags = flags | SHMBUS_GROUP_PRIVATE;
        rec->owner_member = member;
        rec->owner_since = load_acquire(&m->members[member].attached_ns);
        rec->name_len = 0;
        memset(rec->name, 0, sizeof rec->name);
        rec->created_ns = (uint64_t)shmbus_now_realtime();
        for (uint32_t i = 0; i < t->count; i++) {
            struct shmbus_partition *p = t->rings[i].p;
            struct shmbus_group_line *gl = &p->groups[g];
            store_release(&gl->committed_position, load_acquire(&p->head.position));
            store_release(&gl->committed_offset, load_acquire(&p->head.offset));
            gl->delivered = 0;
            gl->lost = 0;
        }
        store_release(&rec->state, (uint32_t)SHMBUS_GROUP_ACTIVE);
        __atomic_fetch_or(&m->masks.active, 1ULL << g, __ATOMIC_SEQ_CST);
        if (flags & SHMBUS_GROUP_TETHERED)
            __atomic_fetch_or(&m->masks.tethered, 1ULL << g, __ATOMIC_SEQ_CST);
        for (uint32_t i = 0; i < t->count; i++) {
            struct shmbus_partition *p = t->rings[i].p;
            struct shmbus_group_line *gl = &p->groups[g];
            store_max(&gl->committed_position, load_acquire(&p->head.position));
            uint64_t head = load_acquire(&p->head.offset);
            store_max(&gl->committed_offset, head);
            /* a new group has nothing committed: "committed" starts it at the end */
            uint64_t cursor = start == SHMBUS_START_EARLIEST ? head : point_load(&p->tail.tail).offset;
            store_release(&gl->cursor, cursor);
        }
        m->members[member].group = g;
        *index = g;
        return SHMBUS_OK;
    }
    return SHMBUS_ENOSLOT;
}

shmbus_consumer *shmbus_consumer_open(shmbus_topic *t, int lock_fd, uint32_t pid,
                                      uint64_t start_time, uint32_t flags, uint32_t start,
                                      int *err)
{
    if (start > SHMBUS_START_COMMITTED) {
        *err = SHMBUS_EINVAL;
        return NULL;
    }
    shmbus_consumer *c = calloc(1, sizeof *c + t->count * sizeof(struct shmbus_consumer_partition));
    if (!c) {
        *err = SHMBUS_ESYS;
        return NULL;
    }
    c->topic = t;
    c->lock_fd = lock_fd;
    *err = take_member(t, lock_fd, pid, start_time, &c->member);
    if (*err != SHMBUS_OK) {
        free(c);
        return NULL;
    }
    *err = join_private_group(t, c->member, flags, start, &c->group);
    if (*err == SHMBUS_ENOSLOT && shmbus_reap_groups(t) > 0)
        *err = join_private_group(t, c->member, flags, start, &c->group);
    if (*err != SHMBUS_OK) {
        shmbus_lock_release(lock_fd, SHMBUS_LOCK_MEMBER(c->member));
        free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < t->count; i++) {
        c->parts[i].release = load_acquire(&t->rings[i].p->groups[c->group].cursor);
        c->parts[i].stuck_offset = UINT64_MAX;
    }
    return c;
}

/* Moves the group's committed point over every record below `upto` that is
 * committed or recovered; stops at one still being written. */
static void advance_committed(struct shmbus_ring *r, struct shmbus_group_line *gl, uint64_t upto)
{
    uint64_t off = load_relaxed(&gl->committed_offset);
    if (off >= upto)
        return;
    uint64_t pos = load_relaxed(&gl->committed_position);
    uint64_t start = off;
    int padding = 0;
    for (; off < upto; off++) {
        const struct shmbus_slot *s = &r->slots[off & r->slot_mask];
        uint64_t seq = load_acquire(&s->seq);
        if (seq == off + 1) {
            uint64_t end = s->position + slot_record_bytes(s);
            if (end > pos)
                pos = end;
        } else if (seq == ((off + 1) | SHMBUS_SEQ_PADDING)) {
            padding = 1;
        } else {
            break;
        }
    }
    if (off == start)
        return;
    /* A recovered claim's extent is unknown; once every offset claimed so far is
     * done, so is every byte claimed so far (the tail point is read whole). */
    if (padding) {
        struct shmbus_point tail = point_load(&r->p->tail.tail);
        if (tail.offset == off && tail.position > pos)
            pos = tail.position;
    }
    store_release(&gl->committed_position, pos);
    /* seq_cst: the waiter count below is read after this store is visible */
    store_seq_cst(&gl->committed_offset, off);
    shmbus_wake_producers(r->p);
}

static void release_delivered(shmbus_consumer *c)
{
    shmbus_topic *t = c->topic;
    for (uint32_t i = 0; i < t->count; i++) {
        struct shmbus_ring *r = &t->rings[i];
        advance_committed(r, &r->p->groups[c->group], c->parts[i].release);
    }
}

void shmbus_consumer_close(shmbus_consumer *c)
{
    if (!c)
        return;
    release_delivered(c);
    shmbus_group_release(c->topic, c->group);
    shmbus_lock_release(c->lock_fd, SHMBUS_LOCK_MEMBER(c->member));
    free(c);
}

/* A claim that stays uncommitted past the liveness timeout, and whose claimer
 * no longer holds its lock byte, becomes padding.  A claimer that lives (even
 * stopped) keeps its claim: only the dead cannot write into it later. */
static int recover_claim(shmbus_topic *t, struct shmbus_ring *r, uint64_t offset)
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
    if (cas(&s->seq, &seq, padding))
        fetch_add(&p->counters.recovered_claims, 1);
    return 1;
}

enum { READ_NONE = 0, READ_RECORD = 1, READ_SKIP = 2 };

/* Looks at the group's cursor in one partition. */
static int read_at_cursor(shmbus_consumer *c, uint32_t i, uint64_t *out)
{
    shmbus_topic *t = c->topic;
    struct shmbus_ring *r = &t->rings[i];
    struct shmbus_group_line *gl = &r->p->groups[c->group];
    uint64_t cur = load_relaxed(&gl->cursor);
    const struct shmbus_slot *s = &r->slots[cur & r->slot_mask];
    uint64_t seq = load_acquire(&s->seq);
    if (seq == cur + 1) {
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
    /* Nothing at the cursor.  The tail line is not read here: producers CAS it on
     * every send, and a reader polling it would pull it away from them. */
    struct shmbus_consumer_partition *cp = &c->parts[i];
    int64_t now = shmbus_now_monotonic();
    if (cp->stuck_offset != cur) {
        cp->stuck_offset = cur;
        cp->stuck_since = now;
    } else if (now - cp->stuck_since >= t->liveness_ns &&
               point_load(&r->p->tail.tail).offset > cur && recover_claim(t, r, cur)) {
        /* the next offset may be the same dead claim (a batch): look at it at once */
        cp->stuck_offset = cur + 1;
        return READ_SKIP;
    }
    return READ_NONE;
}

int shmbus_poll_batch(shmbus_consumer *c, uint64_t *out, uint32_t max)
{
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
    shmbus_topic *t = c->topic;
    int claimed = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        struct shmbus_ring *r = &t->rings[i];
        uint64_t cur = load_relaxed(&r->p->groups[c->group].cursor);
        uint64_t seq = load_acquire(&r->slots[cur & r->slot_mask].seq);
        if (seq == cur + 1 || seq == ((cur + 1) | SHMBUS_SEQ_PADDING))
            return 1;
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
    while (shmbus_now_monotonic() - start < spin_ns) {
        if (available(c, 0) > 0)
            return SHMBUS_OK;
        for (int i = 0; i < SPIN_PAUSES; i++)
            cpu_relax();
    }
    uint32_t seq = load_acquire(&w->seq);
    fetch_add(&w->waiters, 1);
    int r = SHMBUS_OK;
    int a = available(c, 1);
    if (a <= 0) {
        int64_t left = timeout_ns - (shmbus_now_monotonic() - start);
        /* a claim that stays open must be looked at again within the liveness timeout */
        if (a < 0 && left > t->liveness_ns / 8)
            left = t->liveness_ns / 8;
        r = shmbus_futex_wait(&w->seq, seq, left);
        if (a < 0 && r == SHMBUS_TIMEOUT)
            r = SHMBUS_OK; /* poll again: that is where open claims are recovered */
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
