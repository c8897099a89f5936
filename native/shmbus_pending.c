/* Tracked deliveries: every offset a tracked group hands out has an entry in the
 * group's pending table (named groups, manual acks).  An entry is taken from the
 * cursor, acknowledged, failed (nack, ack deadline, its member gone) and taken
 * again, or passed to the dead letters; the committed offset moves over the
 * done ones.  Every change is one 16-byte compare-and-swap of the entry, so a
 * member that dies between two instructions leaves each entry in one state. */
#include <stdlib.h>
#include <string.h>

#include "shmbus_atomic.h"
#include "shmbus_fault.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

#define CLOCK_MASK ((1ULL << SHMBUS_P_CLOCK_BITS) - 1)
#define DONE_WORD SHMBUS_P_WORD(SHMBUS_P_DONE, 0, 0, 0, 0, 0, 0)

struct entry {
    uint64_t offset;
    uint64_t word;
};

static inline struct shmbus_pending *entry_at(struct shmbus_ring *r, uint32_t group, uint64_t off)
{
    return &r->pending[(uint64_t)group * r->window + (off & (r->window - 1))];
}

/* Offset, word, offset: the offset changes whenever the entry moves to another
 * offset, so equal offsets mean the word belongs to it. */
static inline struct entry entry_load(const struct shmbus_pending *e)
{
    struct entry v;
    for (;;) {
        v.offset = load_acquire(&e->offset);
        v.word = load_acquire(&e->word);
        if (load_acquire(&e->offset) == v.offset)
            return v;
        cpu_relax();
    }
}

static inline int entry_cas(struct shmbus_pending *e, struct entry expected, uint64_t offset,
                            uint64_t word)
{
    unsigned __int128 x = ((unsigned __int128)expected.word << 64) | expected.offset;
    unsigned __int128 d = ((unsigned __int128)word << 64) | offset;
    return __sync_bool_compare_and_swap((unsigned __int128 *)e, x, d);
}

static inline uint64_t now_ms(int64_t now_ns) { return ((uint64_t)now_ns / 1000000) & CLOCK_MASK; }

static inline uint64_t later_ms(uint64_t ms, int64_t delta_ns)
{
    return (ms + (uint64_t)((delta_ns + 999999) / 1000000)) & CLOCK_MASK;
}

/* Whether deadline has come, comparing modulo the clock's width. */
static inline int due(uint64_t deadline, uint64_t now)
{
    return ((now - deadline) & CLOCK_MASK) < (1ULL << (SHMBUS_P_CLOCK_BITS - 1));
}

/* Nanoseconds from now until the deadline (0 when due). */
static inline int64_t ns_until(uint64_t deadline, uint64_t now)
{
    return due(deadline, now) ? 0 : (int64_t)((deadline - now) & CLOCK_MASK) * 1000000;
}

static inline int is_mine(const shmbus_consumer *c, uint64_t w)
{
    return SHMBUS_P_STATE(w) == SHMBUS_P_DELIVERED && SHMBUS_P_MEMBER(w) == c->member &&
           SHMBUS_P_INCARNATION(w) == (c->incarnation & 15);
}

/* The offsets a group has handed out and not yet committed in a ring: never
 * more than the window, whatever shared memory says.  Both points only rise and
 * committed <= cursor at every instant, so the committed offset is read first:
 * the cursor read after it is not below it.  A span wider than the window then
 * means the committed offset moved on between the loads (this process was
 * preempted there): read again; only a span that stays wrong is corrupt.  When
 * the head may pass the group, what is below the head is over for it (and the
 * span ends at the cursor all the same: callers commit up to it). */
static int window_of(struct shmbus_ring *r, struct shmbus_group_line *gl, int passable,
                     uint64_t *from, uint64_t *end)
{
    for (int tries = 0; tries < 64; tries++) {
        uint64_t committed = load_acquire(&gl->committed_offset);
        *from = committed;
        FAULT_POINT(SHMBUS_FAULT_WINDOW_READ);
        *end = load_acquire(&gl->cursor);
        if (passable) {
            uint64_t head = load_acquire(&r->p->head.offset);
            if (head > *from)
                *from = head < *end ? head : *end;
        }
        if (*end >= *from && *end - *from <= r->window)
            return SHMBUS_OK;
        if (load_acquire(&gl->committed_offset) == committed)
            break;
    }
    *end = *from;
    return SHMBUS_ECORRUPT;
}

void shmbus_pending_reset(shmbus_topic *t, uint32_t group)
{
    for (uint32_t i = 0; i < t->count; i++) {
        struct shmbus_ring *r = &t->rings[i];
        memset(entry_at(r, group, 0), 0, r->window * sizeof(struct shmbus_pending));
    }
}

static void wake_takers(shmbus_topic *t)
{
    if (load_relaxed(&t->meta->wake.waiters))
        shmbus_wake_consumers(t);
}

/* A delivery failed: it goes again not before `not_before`, or, once it has
 * been delivered max_deliveries times, to the dead letters at once. */
static int fail_in(struct shmbus_group_line *gl, uint32_t max_deliveries, struct shmbus_pending *e,
                   struct entry v, uint32_t reason, uint64_t not_before, uint64_t now)
{
    uint32_t count = SHMBUS_P_COUNT(v.word);
    uint32_t dead = SHMBUS_P_DEAD(v.word) || (max_deliveries && count >= max_deliveries);
    uint64_t w = SHMBUS_P_WORD(SHMBUS_P_READY, dead, reason, 0, 0, count, dead ? now : not_before);
    if (!entry_cas(e, v, v.offset, w))
        return 0;
    fetch_add(&gl->ready, 1);
    return 1;
}

static int fail(shmbus_consumer *c, struct shmbus_ring *r, struct shmbus_pending *e,
                struct entry v, uint32_t reason, uint64_t not_before, uint64_t now)
{
    return fail_in(&r->p->groups[c->group], c->max_deliveries, e, v, reason, not_before, now);
}

/* Fills the delivery of an entry this member has just taken.  Under
 * drop_oldest the record may be overwritten meanwhile: the slot's seq is read
 * again after, as a sequence lock, and a record gone is done for the group and
 * counted lost (told with the next delivery).  1: delivered, 0: lost. */
static int deliver(shmbus_consumer *c, uint32_t i, struct shmbus_pending *e, uint64_t off,
                   uint64_t word, uint32_t count, uint32_t flags, uint64_t *out)
{
    struct shmbus_ring *r = &c->topic->rings[i];
    const struct shmbus_slot *s = &r->slots[off & r->slot_mask];
    int filled = load_acquire(&s->seq) == off + 1 ? shmbus_fill_delivery(r, i, off, count, flags, out)
                                                  : SHMBUS_ECORRUPT;
    if (c->may_lap) {
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (load_relaxed(&s->seq) != off + 1 ||
            (filled == SHMBUS_OK && shmbus_bytes_gone(c->topic, r, out[SHMBUS_D_POSITION]))) {
            struct entry v = {off, word};
            if (entry_cas(e, v, off, DONE_WORD))
                shmbus_advance_committed(c->topic, i, c->group,
                                         load_acquire(&r->p->groups[c->group].cursor), 1);
            if (count <= 1) { /* a redelivery was delivered once: not lost */
                fetch_add(&r->p->groups[c->group].lost, 1);
                c->parts[i].lost++;
            }
            return 0;
        }
        out[SHMBUS_D_LOST] = c->parts[i].lost;
        c->parts[i].lost = 0;
        out[SHMBUS_D_FLAGS] |= SHMBUS_DF_UNKEPT;
    }
    return filled == SHMBUS_OK ? 1 : SHMBUS_ECORRUPT;
}

/* Takes a ready entry for this member; fills its delivery.  0 if another took it. */
static int take_ready(shmbus_consumer *c, uint32_t i, struct shmbus_pending *e, struct entry v,
                      uint64_t now, uint64_t *out)
{
    struct shmbus_ring *r = &c->topic->rings[i];
    uint32_t dead = SHMBUS_P_DEAD(v.word);
    uint32_t reason = SHMBUS_P_REASON(v.word);
    uint32_t count = SHMBUS_P_COUNT(v.word);
    if (!dead && count < SHMBUS_MAX_DELIVERIES)
        count++;
    uint64_t deadline = c->manual ? later_ms(now, c->ack_timeout_ns) : 0;
    uint64_t w = SHMBUS_P_WORD(SHMBUS_P_DELIVERED, dead, reason, c->member, c->incarnation, count,
                               deadline);
    if (!entry_cas(e, v, v.offset, w))
        return 0;
    int k = deliver(c, i, e, v.offset, w, count, dead | (reason << SHMBUS_DF_REASON_SHIFT), out);
    if (k <= 0)
        return k;
    if (!dead && SHMBUS_P_COUNT(v.word) > 0) /* 0: given back, never seen */
        fetch_add(&r->p->groups[c->group].redelivered, 1);
    return 1;
}

static void sweep_again_within(shmbus_consumer *c, int64_t now_ns, int64_t ns)
{
    if (now_ns + ns < c->next_sweep)
        c->next_sweep = now_ns + ns;
}

/* Looks at every entry of the window [committed, cursor) of one partition:
 * deliveries past their deadline or held by a member that is gone fail, and
 * due ready ones are taken (when this member may read the partition).  Under
 * ordering=partition a ready or redelivered entry holds later offsets back. */
static int sweep(shmbus_consumer *c, uint32_t i, int64_t now_ns, int liveness, uint64_t *out,
                 uint32_t room)
{
    shmbus_topic *t = c->topic;
    struct shmbus_ring *r = &t->rings[i];
    struct shmbus_group_line *gl = &r->p->groups[c->group];
    struct shmbus_consumer_partition *cp = &c->parts[i];
    uint64_t now = now_ms(now_ns);
    uint8_t alive[SHMBUS_MAX_MEMBERS] = {0}; /* 0 not asked, 1 alive, 2 gone */
    int taking = cp->owned && !cp->leaving, held = 0, released = 0;
    uint32_t n = 0;
    cp->ready_seen = load_acquire(&gl->ready); /* before looking: a later change is seen next time */
    uint64_t from, end;
    if (window_of(r, gl, c->passable, &from, &end) != SHMBUS_OK)
        return SHMBUS_ECORRUPT;
    for (uint64_t off = from; off < end; off++) {
        struct shmbus_pending *e = entry_at(r, c->group, off);
        struct entry v = entry_load(e);
        if (v.offset != off)
            continue; /* being taken from the cursor right now */
        if (SHMBUS_P_STATE(v.word) == SHMBUS_P_DELIVERED) {
            uint32_t m = SHMBUS_P_MEMBER(v.word);
            int mine = is_mine(c, v.word);
            int gone = 0;
            if (liveness && !mine) {
                if (!alive[m])
                    alive[m] = shmbus_member_alive(t, m, c->group, SHMBUS_P_INCARNATION(v.word), 15)
                                   ? 1 : 2;
                gone = alive[m] == 2;
            }
            int expired = c->manual && due(SHMBUS_P_DEADLINE(v.word), now);
            if (!gone && !expired) {
                if (c->manual)
                    sweep_again_within(c, now_ns, ns_until(SHMBUS_P_DEADLINE(v.word), now));
                if (c->by_partition && !mine) {
                    /* a partition changes owner when its owner has nothing in
                     * flight, or has died: what another member holds here is
                     * the dead owner's, to go again before anything later */
                    held = 1;
                    c->next_liveness = 0;
                } else if (c->by_partition && (SHMBUS_P_COUNT(v.word) > 1 || SHMBUS_P_DEAD(v.word))) {
                    held = 1;
                }
                continue;
            }
            if (!c->manual) { /* at most once: what a member took is done */
                if (entry_cas(e, v, off, DONE_WORD))
                    released = 1;
                continue;
            }
            if (!fail(c, r, e, v, gone ? SHMBUS_REASON_MEMBER_LEFT : SHMBUS_REASON_ACK_TIMEOUT, now,
                      now))
                continue;
            v = entry_load(e);
            if (v.offset != off)
                continue;
        }
        if (SHMBUS_P_STATE(v.word) != SHMBUS_P_READY)
            continue;
        if (c->by_partition)
            held = 1;
        if (!taking)
            continue;
        if (n >= room) {
            c->sweep_now = 1; /* the rest at the next poll */
            continue;
        }
        if (!due(SHMBUS_P_DEADLINE(v.word), now)) {
            sweep_again_within(c, now_ns, ns_until(SHMBUS_P_DEADLINE(v.word), now));
            if (c->by_partition)
                taking = 0; /* in order: nothing after a message that must wait */
            continue;
        }
        int k = take_ready(c, i, e, v, now, out + (uint64_t)n * SHMBUS_DELIVERY_FIELDS);
        if (k < 0)
            return n ? (int)n : k;
        n += (uint32_t)k;
    }
    cp->held_back = (uint8_t)held;
    if (released)
        shmbus_advance_committed(t, i, c->group, end, 1);
    return (int)n;
}

/* The cursor moves from an offset whose entry is taken to the next; another
 * member may have moved it already. */
static inline void move_cursor(struct shmbus_group_line *gl, uint64_t taken)
{
    uint64_t expected = taken;
    cas(&gl->cursor, &expected, taken + 1);
}

/* Takes new offsets at the group's cursor.  The entry is taken first (that is
 * the claim), then the cursor moves; a member that finds an entry taken at the
 * cursor moves the cursor on for its taker, who may have died in between. */
static int take_new(shmbus_consumer *c, uint32_t i, uint64_t now, uint64_t *out, uint32_t room)
{
    struct shmbus_ring *r = &c->topic->rings[i];
    struct shmbus_group_line *gl = &r->p->groups[c->group];
    uint64_t deadline = c->manual ? later_ms(now, c->ack_timeout_ns) : 0;
    uint64_t word = SHMBUS_P_WORD(SHMBUS_P_DELIVERED, 0, 0, c->member, c->incarnation, 1, deadline);
    uint32_t n = 0;
    int err = SHMBUS_OK, passed = 0;
    while (n < room) {
        uint64_t committed = load_acquire(&gl->committed_offset);
        FAULT_POINT(SHMBUS_FAULT_WINDOW_READ);
        uint64_t cur = load_acquire(&gl->cursor); /* after: not below committed */
        uint64_t head = 0;
        if (c->passable) {
            /* drop_oldest moved the head past the cursor: those offsets are lost
             * to the group; past the committed offset: those are done */
            head = load_acquire(&r->p->head.offset);
            if (cur < head) {
                uint64_t expected = cur;
                if (cas(&gl->cursor, &expected, head)) {
                    fetch_add(&gl->lost, head - cur);
                    c->parts[i].lost += head - cur;
                }
                continue;
            }
            if (committed < head) {
                shmbus_advance_committed(c->topic, i, c->group, cur, 1);
                continue;
            }
        }
        if (cur - committed > r->window) {
            if (load_acquire(&gl->committed_offset) != committed)
                continue; /* it moved on between the loads */
            err = SHMBUS_ECORRUPT;
            break;
        }
        if (cur - committed == r->window) {
            /* full until the oldest delivery is done (offsets lost in a replay
             * are done at once, and nobody else moves the committed point over them) */
            if (c->may_lap && shmbus_advance_committed(c->topic, i, c->group, cur, 1))
                continue;
            break;
        }
        struct shmbus_pending *e = entry_at(r, c->group, cur);
        struct entry v = entry_load(e);
        if (v.offset > cur) { /* the cursor moved on meanwhile */
            if (load_acquire(&gl->cursor) == cur) {
                err = SHMBUS_ECORRUPT; /* or the entry is not this group's */
                break;
            }
            continue;
        }
        if (v.offset == cur && SHMBUS_P_STATE(v.word) != SHMBUS_P_EMPTY) {
            move_cursor(gl, cur);
            if (c->by_partition && !is_mine(c, v.word) && SHMBUS_P_STATE(v.word) != SHMBUS_P_DONE) {
                /* taken by the owner before us, which died before moving the
                 * cursor: it goes again before anything after it */
                c->parts[i].held_back = 1;
                c->sweep_now = 1;
                c->next_liveness = 0;
                break;
            }
            continue;
        }
        /* An entry a window back is done before the committed offset passes it,
         * and the cursor is inside the window: anything else is not ours to take. */
        if (v.offset < cur && v.offset >= head && SHMBUS_P_STATE(v.word) != SHMBUS_P_DONE &&
            SHMBUS_P_STATE(v.word) != SHMBUS_P_EMPTY) {
            err = SHMBUS_ECORRUPT; /* below the head (drop_oldest), any state is over */
            break;
        }
        uint64_t seq = load_acquire(&r->slots[cur & r->slot_mask].seq);
        int padding = seq == ((cur + 1) | SHMBUS_SEQ_PADDING);
        if (seq != cur + 1 && !padding) {
            if (c->may_lap && (seq & ~SHMBUS_SEQ_PADDING) > cur + 1) {
                /* retention=log, a replay below the head: a later lap's record
                 * took the slot, and the offset is lost to the group */
                if (!entry_cas(e, v, cur, DONE_WORD))
                    continue;
                move_cursor(gl, cur);
                fetch_add(&gl->lost, 1);
                c->parts[i].lost++;
                passed = 1;
                continue;
            }
            if (shmbus_stuck_at(c, i, cur))
                continue;
            break;
        }
        if (!entry_cas(e, v, cur, padding ? DONE_WORD : word))
            continue;
        FAULT_POINT(SHMBUS_FAULT_AFTER_TAKE);
        move_cursor(gl, cur);
        if (padding)
            continue;
        int k = deliver(c, i, e, cur, word, 1, 0, out + (uint64_t)n * SHMBUS_DELIVERY_FIELDS);
        if (k < 0) {
            err = k;
            break;
        }
        n += (uint32_t)k;
    }
    if (n)
        fetch_add(&gl->delivered, n);
    if (passed) /* offsets a later lap took are done: the committed point moves over them */
        shmbus_advance_committed(c->topic, i, c->group, load_acquire(&gl->cursor), 1);
    return n ? (int)n : err;
}

/* Auto acks: what the last poll handed out is done now. */
static void release_unreleased(shmbus_consumer *c)
{
    shmbus_topic *t = c->topic;
    uint32_t count = c->unreleased_count, k = 0;
    c->unreleased_count = 0;
    while (k < count) {
        uint32_t i = (uint32_t)c->unreleased[2 * k];
        struct shmbus_ring *r = &t->rings[i];
        uint64_t done = 0;
        for (; k < count && c->unreleased[2 * k] == i; k++) {
            uint64_t off = c->unreleased[2 * k + 1];
            struct shmbus_pending *e = entry_at(r, c->group, off);
            struct entry v = entry_load(e);
            if (v.offset == off && is_mine(c, v.word) && entry_cas(e, v, off, DONE_WORD))
                done++;
        }
        if (done)
            fetch_add(&r->p->groups[c->group].acked, done);
        shmbus_advance_committed(t, i, c->group, load_acquire(&r->p->groups[c->group].cursor), 1);
    }
}

static int remember_unreleased(shmbus_consumer *c, const uint64_t *out, uint32_t n)
{
    if (c->unreleased_cap < n) {
        uint64_t *more = realloc(c->unreleased, 2 * sizeof(uint64_t) * n);
        if (!more)
            return SHMBUS_ESYS;
        c->unreleased = more;
        c->unreleased_cap = n;
    }
    for (uint32_t k = 0; k < n; k++) {
        c->unreleased[2 * k] = out[k * SHMBUS_DELIVERY_FIELDS + SHMBUS_D_PARTITION];
        c->unreleased[2 * k + 1] = out[k * SHMBUS_DELIVERY_FIELDS + SHMBUS_D_OFFSET];
    }
    c->unreleased_count = n;
    return SHMBUS_OK;
}

static int ready_changed(shmbus_consumer *c, uint32_t i)
{
    return load_acquire(&c->topic->rings[i].p->groups[c->group].ready) != c->parts[i].ready_seen;
}

/* Ownership (ordering=partition): look again when the group's epoch moved, and
 * at least every quarter of the liveness timeout.  Returns whether to check
 * liveness in this poll's sweep. */
static int maintain(shmbus_consumer *c, int64_t now)
{
    shmbus_topic *t = c->topic;
    int liveness = now >= c->next_liveness;
    if (c->by_partition) {
        uint32_t epoch = load_acquire(&t->meta->groups[c->group].epoch);
        int leaving = 0;
        for (uint32_t i = 0; i < t->count; i++)
            leaving |= c->parts[i].leaving;
        if (liveness || epoch != c->epoch_seen) {
            c->epoch_seen = epoch;
            if (shmbus_group_rebalance(c))
                liveness = 1; /* a partition taken over: its old owner's deliveries go again */
        } else if (leaving) {
            shmbus_group_handover(c);
        }
    }
    if (liveness)
        c->next_liveness = now + t->liveness_ns / 4;
    return liveness;
}

int shmbus_poll_tracked(shmbus_consumer *c, uint64_t *out, uint32_t max)
{
    shmbus_topic *t = c->topic;
    if (!c->manual)
        release_unreleased(c);
    int64_t now_ns = shmbus_now_monotonic();
    int liveness = maintain(c, now_ns);
    int all = liveness || c->sweep_now || now_ns >= c->next_sweep;
    if (all)
        c->next_sweep = now_ns + t->liveness_ns / 4;
    c->sweep_now = 0;
    if (c->by_partition) /* what another member took over since: no longer ours */
        for (uint32_t i = 0; i < t->count; i++)
            if (c->parts[i].owned &&
                load_acquire(&t->rings[i].p->groups[c->group].owner) != shmbus_owner_word(c))
                c->parts[i].owned = c->parts[i].leaving = 0;
    uint32_t n = 0;
    int err = SHMBUS_OK;
    for (uint32_t i = 0; i < t->count && n < max && err == SHMBUS_OK; i++) {
        if (!c->parts[i].owned || !(all || ready_changed(c, i)))
            continue;
        int k = sweep(c, i, now_ns, liveness, out + (uint64_t)n * SHMBUS_DELIVERY_FIELDS, max - n);
        if (k < 0)
            err = k;
        else
            n += (uint32_t)k;
    }
    uint64_t now = now_ms(now_ns);
    for (uint32_t k = 0; k < t->count && n < max && err == SHMBUS_OK; k++) {
        uint32_t i = (c->next + k) % t->count;
        struct shmbus_consumer_partition *cp = &c->parts[i];
        if (!cp->owned || cp->leaving || cp->held_back)
            continue;
        int got = take_new(c, i, now, out + (uint64_t)n * SHMBUS_DELIVERY_FIELDS, max - n);
        if (got < 0)
            err = got;
        else
            n += (uint32_t)got;
    }
    if (n)
        c->next = (c->next + 1) % t->count;
    if (!c->manual && n && remember_unreleased(c, out, n) != SHMBUS_OK)
        return SHMBUS_ESYS;
    return n ? (int)n : err;
}

/* For waiting: 1 when a poll may find something (a record at a readable
 * cursor inside the window, a ready entry, a change of ownership). */
int shmbus_tracked_available(shmbus_consumer *c)
{
    shmbus_topic *t = c->topic;
    if (c->sweep_now ||
        (c->by_partition && load_acquire(&t->meta->groups[c->group].epoch) != c->epoch_seen))
        return 1;
    for (uint32_t i = 0; i < t->count; i++) {
        struct shmbus_consumer_partition *cp = &c->parts[i];
        if (!cp->owned)
            continue;
        if (ready_changed(c, i))
            return 1;
        if (cp->leaving || cp->held_back)
            continue;
        struct shmbus_ring *r = &t->rings[i];
        struct shmbus_group_line *gl = &r->p->groups[c->group];
        uint64_t committed = load_acquire(&gl->committed_offset);
        uint64_t cur = load_acquire(&gl->cursor);
        if (c->passable && load_acquire(&r->p->head.offset) > committed)
            return 1; /* drop_oldest passed the group: it moves on at the next poll */
        if (cur >= committed + r->window)
            continue;
        uint64_t seq = load_acquire(&r->slots[cur & r->slot_mask].seq);
        if (seq == cur + 1 || seq == ((cur + 1) | SHMBUS_SEQ_PADDING))
            return 1;
        if (c->may_lap && (seq & ~SHMBUS_SEQ_PADDING) > cur + 1)
            return 1; /* lapped: it goes on at the head */
    }
    return 0;
}

/* Ends one delivery this member holds: done (ack, dead-lettered) or failed (nack). */
static int finish(shmbus_consumer *c, uint32_t i, uint64_t off, int64_t nack_delay_ns)
{
    struct shmbus_ring *r = &c->topic->rings[i];
    struct shmbus_pending *e = entry_at(r, c->group, off);
    struct entry v = entry_load(e);
    if (v.offset != off || !is_mine(c, v.word))
        return 0;
    if (nack_delay_ns >= 0) {
        uint64_t now = now_ms(shmbus_now_monotonic());
        if (!fail(c, r, e, v, SHMBUS_REASON_NACK, later_ms(now, nack_delay_ns), now))
            return 0;
        if (c->by_partition)
            c->parts[i].held_back = 1;
        c->sweep_now = 1;
        return 1;
    }
    return entry_cas(e, v, off, DONE_WORD);
}

/* After deliveries of partition i are done: the committed point moves (waking
 * a member that waits for room in the window). */
static void after_done(shmbus_consumer *c, uint32_t i)
{
    struct shmbus_group_line *gl = &c->topic->rings[i].p->groups[c->group];
    shmbus_advance_committed(c->topic, i, c->group, load_acquire(&gl->cursor), 1);
    if (c->parts[i].held_back)
        c->sweep_now = 1; /* a redelivery done may let later offsets go */
}

static int finish_batch(shmbus_consumer *c, const uint64_t *pairs, uint32_t count, int dead)
{
    if (!c->tracked)
        return 0;
    shmbus_topic *t = c->topic;
    int total = 0;
    uint32_t k = 0;
    while (k < count) {
        uint32_t i = (uint32_t)pairs[2 * k];
        if (i >= t->count)
            return SHMBUS_EINVAL;
        uint64_t done = 0;
        for (; k < count && pairs[2 * k] == i; k++)
            done += (uint64_t)finish(c, i, pairs[2 * k + 1], -1);
        if (done) {
            FAULT_POINT(SHMBUS_FAULT_INSIDE_ACK);
            struct shmbus_group_line *gl = &t->rings[i].p->groups[c->group];
            fetch_add(dead ? &gl->dead_lettered : &gl->acked, done);
            after_done(c, i);
        }
        total += (int)done;
    }
    return total;
}

int shmbus_ack_batch(shmbus_consumer *c, const uint64_t *pairs, uint32_t count)
{
    return finish_batch(c, pairs, count, 0);
}

int shmbus_ack(shmbus_consumer *c, uint32_t partition, uint64_t offset)
{
    uint64_t pair[2] = {partition, offset};
    return finish_batch(c, pair, 1, 0);
}

int shmbus_dead_lettered(shmbus_consumer *c, uint32_t partition, uint64_t offset)
{
    uint64_t pair[2] = {partition, offset};
    return finish_batch(c, pair, 1, 1);
}

int shmbus_nack(shmbus_consumer *c, uint32_t partition, uint64_t offset, int64_t delay_ns)
{
    if (!c->tracked || !c->manual)
        return 0;
    if (partition >= c->topic->count || delay_ns < 0 || delay_ns > SHMBUS_MAX_DELAY_S * 1000000000LL)
        return SHMBUS_EINVAL;
    int r = finish(c, partition, offset, delay_ns);
    if (r > 0 && delay_ns == 0)
        wake_takers(c->topic);
    return r;
}

/* Deliveries fetched but never handed to the application (a consumer closing
 * with prefetched messages) go back as if never delivered. */
int shmbus_give_back(shmbus_consumer *c, const uint64_t *pairs, uint32_t count)
{
    if (!c->tracked)
        return 0;
    shmbus_topic *t = c->topic;
    uint64_t now = now_ms(shmbus_now_monotonic());
    int given = 0;
    for (uint32_t k = 0; k < count; k++) {
        uint32_t i = (uint32_t)pairs[2 * k];
        uint64_t off = pairs[2 * k + 1];
        if (i >= t->count)
            return SHMBUS_EINVAL;
        struct shmbus_ring *r = &t->rings[i];
        struct shmbus_pending *e = entry_at(r, c->group, off);
        struct entry v = entry_load(e);
        if (v.offset != off || !is_mine(c, v.word))
            continue;
        uint32_t n = SHMBUS_P_COUNT(v.word);
        uint64_t w = SHMBUS_P_WORD(SHMBUS_P_READY, SHMBUS_P_DEAD(v.word), SHMBUS_P_REASON(v.word), 0,
                                   0, n > 0 ? n - 1 : 0, now);
        if (entry_cas(e, v, off, w)) {
            fetch_add(&r->p->groups[c->group].ready, 1);
            given++;
        }
    }
    if (given)
        wake_takers(t);
    return given;
}

/* Closing: what this member holds goes again (manual) or is done (auto). */
void shmbus_release_all(shmbus_consumer *c)
{
    shmbus_topic *t = c->topic;
    uint64_t now = now_ms(shmbus_now_monotonic());
    int failed = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        struct shmbus_ring *r = &t->rings[i];
        struct shmbus_group_line *gl = &r->p->groups[c->group];
        uint64_t from, end;
        window_of(r, gl, c->passable, &from, &end);
        int changed = 0;
        for (uint64_t off = from; off < end; off++) {
            struct shmbus_pending *e = entry_at(r, c->group, off);
            struct entry v = entry_load(e);
            if (v.offset != off || !is_mine(c, v.word))
                continue;
            int k = c->manual ? fail(c, r, e, v, SHMBUS_REASON_MEMBER_LEFT, now, now)
                              : entry_cas(e, v, off, DONE_WORD);
            failed |= c->manual && k;
            changed |= k;
        }
        /* only where this member held something: elsewhere the partition's
         * reader moves it, and may be seeking it right now */
        if (changed)
            shmbus_advance_committed(t, i, c->group, end, 1);
    }
    c->unreleased_count = 0;
    if (failed)
        wake_takers(t);
}

int shmbus_owns_nothing_in_flight(shmbus_consumer *c, uint32_t i)
{
    struct shmbus_ring *r = &c->topic->rings[i];
    uint64_t from, end;
    window_of(r, &r->p->groups[c->group], c->passable, &from, &end);
    for (uint64_t off = from; off < end; off++) {
        struct entry v = entry_load(entry_at(r, c->group, off));
        if (v.offset == off && is_mine(c, v.word))
            return 0;
    }
    return 1;
}

uint64_t shmbus_pending_count(shmbus_topic *t, uint32_t g, uint32_t partition, uint64_t committed,
                              uint64_t cursor, uint32_t *held)
{
    struct shmbus_ring *r = &t->rings[partition];
    const struct shmbus_group_record *rec = &t->meta->groups[g];
    uint64_t end = cursor - committed > r->window ? committed + r->window : cursor;
    if (!shmbus_tracks(rec->name_len, rec->ack))
        return end - committed;
    uint64_t pending = 0;
    for (uint64_t off = committed; off < end; off++) {
        struct entry v = entry_load(entry_at(r, g, off));
        uint32_t st = SHMBUS_P_STATE(v.word);
        if (v.offset != off || (st != SHMBUS_P_DELIVERED && st != SHMBUS_P_READY))
            continue;
        pending++;
        uint32_t m = SHMBUS_P_MEMBER(v.word);
        if (held && st == SHMBUS_P_DELIVERED && m < SHMBUS_MAX_MEMBERS &&
            (load_relaxed(&t->meta->members[m].incarnation) & 15) == SHMBUS_P_INCARNATION(v.word))
            held[m]++;
    }
    return pending;
}

int shmbus_group_stats(shmbus_topic *t, uint32_t g, uint32_t partition, struct shmbus_group_stats *out)
{
    return shmbus_group_read(t, g, partition, out, NULL);
}

int shmbus_group_read(shmbus_topic *t, uint32_t g, uint32_t partition, struct shmbus_group_stats *out,
                      uint32_t *held)
{
    if (g >= SHMBUS_MAX_GROUPS || partition >= t->count)
        return SHMBUS_EINVAL;
    struct shmbus_ring *r = &t->rings[partition];
    struct shmbus_group_line *gl = &r->p->groups[g];
    memset(out, 0, sizeof *out);
    out->committed_offset = load_acquire(&gl->committed_offset);
    out->cursor = load_acquire(&gl->cursor); /* after: not below committed */
    out->delivered = load_relaxed(&gl->delivered);
    out->acked = load_relaxed(&gl->acked);
    out->redelivered = load_relaxed(&gl->redelivered);
    out->dead_lettered = load_relaxed(&gl->dead_lettered);
    out->lost = load_relaxed(&gl->lost);
    out->recovered_deliveries = load_relaxed(&gl->recovered_deliveries);
    out->recovered_owners = load_relaxed(&gl->recovered_owners);
    uint64_t owner = load_acquire(&gl->owner);
    out->owner = owner ? (int64_t)(owner & 0xff) - 1 : -1;
    out->pending = shmbus_pending_count(t, g, partition, out->committed_offset, out->cursor, held);
    return SHMBUS_OK;
}

/* The byte position where the record at `offset` starts, for a committed point
 * there: the slot's while it holds the record, the tail's at the end, and the
 * head's below it (where the position counts for nothing: the head passes). */
static uint64_t position_of(struct shmbus_ring *r, uint64_t offset)
{
    struct shmbus_point tail = point_load(&r->p->tail.tail);
    if (offset >= tail.offset)
        return tail.position;
    const struct shmbus_slot *s = &r->slots[offset & r->slot_mask];
    uint64_t position = s->position;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (load_relaxed(&s->seq) == offset + 1)
        return position;
    return load_acquire(&r->p->head.position);
}

/* Replay or skip for a tracked group.  Only the member that reads the partition
 * alone moves it: its owner under ordering=partition, or the one member of a
 * private group (SHMBUS_EBUSY otherwise).  What the group had in flight there
 * is abandoned (acks of it do nothing) and its window starts again at offset:
 * no further back than what is retained (retention=log, drop_oldest) or than
 * the committed offset (a ring that keeps what the group has not released). */
int64_t shmbus_seek_tracked(shmbus_consumer *c, uint32_t i, uint64_t offset)
{
    shmbus_topic *t = c->topic;
    struct shmbus_ring *r = &t->rings[i];
    struct shmbus_group_line *gl = &r->p->groups[c->group];
    int alone = (t->meta->groups[c->group].flags & SHMBUS_GROUP_PRIVATE) ||
                (c->by_partition && load_acquire(&gl->owner) == shmbus_owner_word(c) &&
                 !c->parts[i].leaving);
    if (!alone)
        return SHMBUS_EBUSY;
    /* the head as the groups have it now, before this one goes back: a seek to
     * what lies below it holds nothing (the head is otherwise raised lazily) */
    shmbus_ring_free_point(t, i);
    uint64_t oldest = c->may_lap ? shmbus_retained_start(t, i) : load_acquire(&gl->committed_offset);
    if (offset < oldest)
        offset = oldest;
    struct shmbus_pending *table = entry_at(r, c->group, 0);
    for (uint64_t k = 0; k < r->window; k++) {
        struct entry v = entry_load(&table[k]);
        while ((v.offset || v.word) && !entry_cas(&table[k], v, 0, 0))
            v = entry_load(&table[k]);
    }
    uint64_t pos = position_of(r, offset);
    /* committed <= cursor at every moment, going either way */
    if (offset < load_acquire(&gl->cursor)) {
        store_release(&gl->committed_offset, offset);
        store_release(&gl->committed_position, pos);
        store_release(&gl->cursor, offset);
    } else {
        store_release(&gl->cursor, offset);
        store_release(&gl->committed_position, pos);
        store_release(&gl->committed_offset, offset);
    }
    struct shmbus_consumer_partition *cp = &c->parts[i];
    cp->held_back = 0;
    cp->stuck_offset = UINT64_MAX;
    cp->lost = 0;
    c->sweep_now = 1;
    shmbus_wake_producers(r->p); /* a seek forward frees what it skipped */
    return (int64_t)offset;
}

/* The recovery sweep's part in a tracked group's window of partition i (no
 * member of the group need be in this process): deliveries held by a member
 * that is gone go again now (manual acks; to the dead letters past
 * max_deliveries) or are done (auto acks).  How many it released. */
uint64_t shmbus_pending_recover(shmbus_topic *t, uint32_t i, uint32_t g)
{
    const struct shmbus_group_record *rec = &t->meta->groups[g];
    struct shmbus_ring *r = &t->rings[i];
    struct shmbus_group_line *gl = &r->p->groups[g];
    int manual = rec->ack == SHMBUS_ACK_MANUAL;
    uint64_t from, end;
    if (window_of(r, gl, shmbus_passable(t, rec->flags & SHMBUS_GROUP_TETHERED), &from, &end) != SHMBUS_OK)
        return 0;
    uint8_t alive[SHMBUS_MAX_MEMBERS] = {0}; /* 0 not asked, 1 alive, 2 gone */
    uint64_t now = now_ms(shmbus_now_monotonic()), n = 0;
    int done = 0;
    for (uint64_t off = from; off < end; off++) {
        struct shmbus_pending *e = entry_at(r, g, off);
        struct entry v = entry_load(e);
        if (v.offset != off || SHMBUS_P_STATE(v.word) != SHMBUS_P_DELIVERED)
            continue;
        uint32_t m = SHMBUS_P_MEMBER(v.word);
        if (!alive[m])
            alive[m] = shmbus_member_alive(t, m, g, SHMBUS_P_INCARNATION(v.word), 15) ? 1 : 2;
        if (alive[m] == 1)
            continue;
        if (!manual) {
            if (entry_cas(e, v, off, DONE_WORD)) {
                done = 1;
                n++;
            }
        } else {
            n += (uint64_t)fail_in(gl, rec->max_deliveries, e, v, SHMBUS_REASON_MEMBER_LEFT, now, now);
        }
    }
    if (!n)
        return 0;
    fetch_add(&gl->recovered_deliveries, n);
    if (done)
        shmbus_advance_committed(t, i, g, end, 1);
    wake_takers(t);
    return n;
}
