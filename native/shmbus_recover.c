/* Recovery of a disk topic's partition, by the first process to map it after
 * every process that had it open is gone (all killed, or the machine
 * restarted).  Nobody else is attached (the caller holds the open lock
 * exclusively), so plain stores suffice.
 *
 * From the head on, each offset is a good record (committed, fields sane,
 * checksum right), padding, a dead producer's claim (never committed), or
 * damage (committed, checksum wrong).  Good records and padding from the head
 * stay; a dead claim followed by a good record or padding becomes padding, as
 * a reader would make it; whatever follows is an incomplete tail and goes
 * (counted as discarded); damage followed by a good record is corruption in
 * the middle: reported with its offset, never skipped, unless it lies past the
 * last durable point of a topic that syncs (then the tail goes from there). */
#include <string.h>

#include "shmbus_atomic.h"
#include "shmbus_checksum.h"
#include "shmbus_fault.h"
#include "shmbus_internal.h"

/* Whether the committed record at `off` lies within [lo, hi) and its bytes
 * match its checksum. */
static int record_good(const shmbus_topic *t, const struct shmbus_ring *r, uint64_t off, uint64_t lo,
                       uint64_t hi)
{
    const struct shmbus_slot *s = &r->slots[off & r->slot_mask];
    if (s->value_len > t->max_message_size || s->key_len > SHMBUS_MAX_KEY_SIZE ||
        s->headers_len > SHMBUS_MAX_HEADERS_SIZE)
        return 0;
    uint64_t len = (uint64_t)s->value_len + s->key_len + s->headers_len;
    uint64_t bytes = record_bytes(len);
    uint64_t phys = s->position & (r->capacity - 1);
    if (s->position < lo || s->position + bytes > hi || phys + bytes > r->capacity)
        return 0;
    if (!t->checksums)
        return 1;
    return shmbus_crc32c(shmbus_checksum_fields(s), r->data + phys, len) == s->checksum;
}

/* The tail went back to `end`: groups that had read past it go back with it,
 * and pending entries of the offsets gone are emptied. */
static void groups_back_to(struct shmbus_ring *r, uint64_t end, uint64_t end_pos)
{
    for (uint32_t g = 0; g < SHMBUS_MAX_GROUPS; g++) {
        struct shmbus_group_line *gl = &r->p->groups[g];
        if (gl->cursor > end)
            gl->cursor = end;
        if (gl->committed_offset > end) {
            gl->committed_offset = end;
            gl->committed_position = end_pos;
        }
        struct shmbus_pending *table = &r->pending[(uint64_t)g * r->window];
        for (uint64_t k = 0; k < r->window; k++)
            if (table[k].offset >= end)
                memset(&table[k], 0, sizeof table[k]);
    }
}

int64_t shmbus_recover(shmbus_topic *t, uint32_t partition, uint64_t *bad_offset)
{
    if (partition >= t->count)
        return SHMBUS_EINVAL;
    shmbus_fault_load();
    FAULT_POINT(SHMBUS_FAULT_RECOVER);
    struct shmbus_ring *r = &t->rings[partition];
    struct shmbus_partition *p = r->p;
    struct shmbus_point tail = p->tail.tail;
    uint64_t head = p->head.offset, head_pos = p->head.position;
    *bad_offset = head;
    if (tail.offset < head || tail.offset - head > r->slot_count || tail.position < head_pos ||
        tail.position - head_pos > r->capacity)
        return SHMBUS_ECORRUPT;

    uint64_t good_end = head, good_pos = head_pos, damaged = UINT64_MAX;
    for (uint64_t off = head; off < tail.offset; off++) {
        const struct shmbus_slot *s = &r->slots[off & r->slot_mask];
        if (s->seq == ((off + 1) | SHMBUS_SEQ_PADDING)) {
            if (damaged == UINT64_MAX)
                good_end = off + 1; /* kept, with no bytes of its own */
            continue;
        }
        if (s->seq == off + 1 && record_good(t, r, off, good_pos, tail.position)) {
            if (damaged < off) {
                /* after a crash of the machine, pages written since the last
                 * sync reach the disk in any order: past the durable point a
                 * bad record is a torn tail like any other (never under
                 * fsync=never, which promises nothing of the kind) */
                if (t->fsync == SHMBUS_FSYNC_NEVER || damaged < p->counters.durable) {
                    *bad_offset = damaged;
                    return SHMBUS_ECORRUPT;
                }
                break;
            }
            good_end = off + 1;
            good_pos = s->position + slot_record_bytes(s);
        } else if (s->seq == off + 1 && damaged == UINT64_MAX) {
            damaged = off;
        }
    }

    for (uint64_t off = head; off < good_end; off++) {
        struct shmbus_slot *s = &r->slots[off & r->slot_mask];
        if (s->seq != off + 1 && s->seq != ((off + 1) | SHMBUS_SEQ_PADDING)) {
            s->seq = (off + 1) | SHMBUS_SEQ_PADDING;
            p->counters.recovered_claims++;
        }
    }
    uint64_t discarded = tail.offset - good_end;
    if (p->counters.durable > good_end)
        p->counters.durable = good_end; /* a file cut short */
    if (discarded) {
        for (uint64_t off = good_end; off < tail.offset; off++)
            r->slots[off & r->slot_mask].seq = 0; /* not this offset's record: unwritten */
        groups_back_to(r, good_end, good_pos);
        shmbus_dedup_forget(r, good_end);
        p->counters.discarded += discarded;
    }
    /* only the tail's bytes go back: those of padding before it were never a record */
    p->tail.tail.offset = good_end;
    p->tail.tail.position = discarded ? good_pos : tail.position;
    for (uint32_t k = 0; k < SHMBUS_MAX_PRODUCERS; k++)
        p->producers[k].intent = SHMBUS_NO_INTENT;
    p->space.waiters = 0;
    t->meta->wake.waiters = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return (int64_t)discarded;
}
