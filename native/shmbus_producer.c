/* Producers: multi-producer claim and commit of variable-size records. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmbus_atomic.h"
#include "shmbus_checksum.h"
#include "shmbus_copy.h"
#include "shmbus_fault.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

shmbus_producer *shmbus_producer_open(shmbus_topic *t, int lock_fd, uint32_t pid,
                                      uint64_t start_time, int *err)
{
    shmbus_fault_load();
    shmbus_producer *pr = calloc(1, sizeof *pr + t->count * sizeof(struct shmbus_producer_partition));
    if (!pr) {
        *err = SHMBUS_ESYS;
        return NULL;
    }
    for (uint32_t i = 0; i < SHMBUS_MAX_PRODUCERS; i++) {
        int r = shmbus_lock_try(lock_fd, SHMBUS_LOCK_PRODUCER(i));
        if (r < 0) {
            free(pr);
            *err = r;
            return NULL;
        }
        if (r == 0)
            continue;
        /* The entry is ours; a dead predecessor's intents go, and what it had
         * claimed and never committed becomes padding (no intent covers it now). */
        struct shmbus_producer_record *rec = &t->meta->producers[i];
        rec->pid = pid;
        rec->start_time = start_time;
        store_release(&rec->attached_ns, (uint64_t)shmbus_now_realtime());
        for (uint32_t p = 0; p < t->count; p++) {
            struct shmbus_producer_line *line = &t->rings[p].p->producers[i];
            uint64_t first = load_acquire(&line->intent), end = load_acquire(&line->intent_end);
            store_release(&line->intent, SHMBUS_NO_INTENT);
            shmbus_recover_claims(t, p, first, end);
            pr->parts[p].limit = shmbus_ring_free_point(t, p);
            pr->parts[p].synced_ns = shmbus_now_monotonic();
        }
        pr->topic = t;
        pr->lock_fd = lock_fd;
        pr->index = i;
        *err = SHMBUS_OK;
        return pr;
    }
    free(pr);
    *err = SHMBUS_ENOSLOT;
    return NULL;
}

void shmbus_producer_close(shmbus_producer *pr)
{
    if (!pr)
        return;
    if (pr->topic->fsync != SHMBUS_FSYNC_NEVER)
        shmbus_producer_sync(pr); /* best effort: close() cannot report; flush() can */
    shmbus_lock_release(pr->lock_fd, SHMBUS_LOCK_PRODUCER(pr->index));
    free(pr->spill_buf);
    free(pr);
}

/* A record never straddles the end of the data region: it moves to the start of
 * the next lap, and the bytes it skips are freed with it. */
static inline uint64_t claim_position(const struct shmbus_ring *r, uint64_t position, uint64_t bytes)
{
    uint64_t phys = position & (r->capacity - 1);
    return phys + bytes > r->capacity ? position + (r->capacity - phys) : position;
}

/* A claim of [from .. end) (skipped bytes included) may overwrite what lies a lap
 * behind it only where that is free: below lim, or at or after `from`, which
 * nobody has claimed.  So an empty ring takes any record up to its capacity,
 * wherever the tail stands in the lap. */
static inline int claim_fits(const struct shmbus_ring *r, uint64_t from, uint64_t end,
                             uint64_t offsets_end, const struct shmbus_limit *lim)
{
    return (end - lim->position <= r->capacity || lim->position >= from) &&
           offsets_end - lim->offset <= r->slot_count;
}

static inline void write_record(struct shmbus_ring *r, int checksums, uint64_t offset,
                                uint64_t position, int64_t now, const char *value,
                                uint64_t value_len, const char *key, uint32_t key_len,
                                const char *headers, uint32_t headers_len, uint64_t spill_id)
{
    struct shmbus_slot *s = &r->slots[offset & r->slot_mask];
    unsigned char *d = r->data + (position & (r->capacity - 1));
    /* The writer's half of the slot's sequence lock: seq = offset (no longer
     * the last lap's offset + 1, not yet this one's) before any field changes,
     * so that a reader who may be lapped and reads seq, the fields, then seq
     * again never takes a half-written slot for the old record. */
    store_relaxed(&s->seq, offset);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    s->position = position;
    s->timestamp_ns = now;
    s->value_len = (uint32_t)value_len;
    s->key_len = (uint16_t)key_len;
    s->headers_len = headers_len;
    s->flags = key ? SHMBUS_RECORD_KEYED : 0;
    s->reserved[0] = spill_id;
    s->checksum = 0;
    int streamed = copy_in(d, value, value_len / 2);
    FAULT_POINT(SHMBUS_FAULT_DURING_COPY);
    streamed |= copy_in(d + value_len / 2, value + value_len / 2, value_len - value_len / 2);
    if (key_len)
        memcpy(d + value_len, key, key_len);
    if (headers_len)
        memcpy(d + value_len + key_len, headers, headers_len);
    copy_fence(streamed);
    /* of the copy, not of the caller's buffer, which another thread may be changing */
    if (checksums)
        s->checksum = shmbus_crc32c(shmbus_checksum_fields(s), d, value_len + key_len + headers_len);
}

/* The commit of the last record is seq_cst so that the load of the waiter count
 * after it cannot pass it: a consumer that announced itself before our commit
 * is seen, one that announces itself after sees the commit. */
static inline void wake_if_waiting(shmbus_topic *t)
{
    if (load_relaxed(&t->meta->wake.waiters))
        shmbus_wake_consumers(t);
}

/* Published before the claim (the CAS is a full barrier): a reader that finds
 * an offset claimed but not committed asks whether its claimer lives. */
static inline void announce(struct shmbus_producer_line *line, uint64_t first, uint64_t end)
{
    store_relaxed(&line->intent_end, end);
    store_release(&line->intent, first);
}

/* A full ring may be held by a dead consumer's group.  Looking costs system
 * calls, so a producer that keeps finding the ring full (drop_newest, error)
 * looks at most a few times per liveness timeout; 1 when it released a group. */
static int reap_now(shmbus_producer *pr)
{
    int64_t now = shmbus_now_monotonic();
    if (now - pr->last_reap < pr->topic->liveness_ns / 4)
        return 0;
    pr->last_reap = now;
    return shmbus_reap_groups(pr->topic, pr->lock_fd) > 0;
}

/* on_full=drop_oldest: the head moves over the oldest records, whatever the
 * groups have read, until the claim [from .. end) of offsets up to offsets_end
 * fits; a group left behind finds its next record overwritten and goes on at
 * the head, counting what it lost.  The walk stops at a record still being
 * written: its producer finishes it (or dies and it is recovered) first.  Slots
 * at or above the head are not reused, so what is read here holds. */
static int drop_oldest(shmbus_producer *pr, uint32_t partition, uint64_t from, uint64_t end,
                       uint64_t offsets_end)
{
    struct shmbus_ring *r = &pr->topic->rings[partition];
    struct shmbus_partition *p = r->p;
    uint64_t first = load_acquire(&p->head.offset);
    uint64_t off = first, pos = load_acquire(&p->head.position);
    uint64_t want_pos = end > r->capacity ? end - r->capacity : 0;
    uint64_t want_off = offsets_end > r->slot_count ? offsets_end - r->slot_count : 0;
    struct shmbus_point tail = point_load(&p->tail.tail);
    while (off < tail.offset && ((pos < want_pos && pos < from) || off < want_off)) {
        const struct shmbus_slot *s = &r->slots[off & r->slot_mask];
        uint64_t seq = load_acquire(&s->seq);
        if (seq == off + 1) {
            uint64_t e = s->position + slot_record_bytes(s);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (load_relaxed(&s->seq) != seq || e > tail.position)
                break; /* another producer dropped it and reused the slot, or a bad slot */
            pos = e > pos ? e : pos;
        } else if (seq != ((off + 1) | SHMBUS_SEQ_PADDING)) {
            /* still being written; if its producer died, it becomes padding (as
             * a reader would make it), looked at a few times per liveness timeout */
            int64_t now = shmbus_now_monotonic();
            if (now - pr->last_recover < pr->topic->liveness_ns / 8)
                break;
            pr->last_recover = now;
            if (!shmbus_recover_claim(pr->topic, r, off) ||
                load_acquire(&s->seq) != ((off + 1) | SHMBUS_SEQ_PADDING))
                break;
        }
        off++;
    }
    /* a recovered claim's extent is unknown: the next record starts after it */
    if (off == tail.offset)
        pos = tail.position > pos ? tail.position : pos;
    else if (load_acquire(&r->slots[off & r->slot_mask].seq) == off + 1)
        pos = r->slots[off & r->slot_mask].position > pos ? r->slots[off & r->slot_mask].position : pos;
    if (off == first)
        return 0;
    /* the offset first: bytes are not free before their records are gone */
    uint64_t cur = first;
    while (cur < off && !cas(&p->head.offset, &cur, off)) {
    }
    if (cur < off) /* this producer moved it from cur: those records it dropped */
        fetch_add(&p->counters.dropped_oldest, off - cur);
    store_max(&p->head.position, pos);
    return 1;
}

/* The cached free point was not enough: compute it again, and if the claim
 * still does not fit, drop the oldest (on_full=drop_oldest), or release dead
 * consumers' groups, and try once more. */
static int refresh_limit(shmbus_producer *pr, uint32_t partition, uint64_t from, uint64_t end,
                         uint64_t offsets_end)
{
    struct shmbus_ring *r = &pr->topic->rings[partition];
    struct shmbus_limit *lim = &pr->parts[partition].limit;
    *lim = shmbus_ring_free_point(pr->topic, partition);
    if (claim_fits(r, from, end, offsets_end, lim))
        return 1;
    if (pr->topic->on_full == SHMBUS_ON_FULL_DROP_OLDEST &&
        drop_oldest(pr, partition, from, end, offsets_end)) {
        *lim = shmbus_ring_free_point(pr->topic, partition);
        if (claim_fits(r, from, end, offsets_end, lim))
            return 1;
    }
    if (!reap_now(pr))
        return 0;
    *lim = shmbus_ring_free_point(pr->topic, partition);
    return claim_fits(r, from, end, offsets_end, lim);
}

int64_t shmbus_check_sizes(shmbus_producer *pr, uint32_t partition, uint64_t value_len,
                           uint32_t key_len, uint32_t headers_len)
{
    if (partition >= pr->topic->count)
        return SHMBUS_EINVAL;
    if (value_len > pr->topic->max_message_size || key_len > SHMBUS_MAX_KEY_SIZE ||
        headers_len > SHMBUS_MAX_HEADERS_SIZE ||
        record_bytes(value_len + key_len + headers_len) > pr->topic->rings[partition].capacity)
        return SHMBUS_ETOOLARGE;
    return SHMBUS_OK;
}

/* How far the records are committed without a gap (padding counts), from the
 * last durable point: what a sync started now puts on disk whole. */
static uint64_t committed_prefix(struct shmbus_ring *r)
{
    struct shmbus_partition *p = r->p;
    uint64_t off = load_acquire(&p->counters.durable);
    uint64_t head = load_acquire(&p->head.offset);
    uint64_t tail = point_load(&p->tail.tail).offset;
    if (off < head || off > tail)
        off = head;
    for (; off < tail; off++) {
        uint64_t seq = load_acquire(&r->slots[off & r->slot_mask].seq);
        if (seq != off + 1 && seq != ((off + 1) | SHMBUS_SEQ_PADDING))
            break;
    }
    return off;
}

/* The durable point is stored after the sync (and reaches the disk with the
 * next one), so that on disk it never claims more than was synced. */
static int sync_partition(shmbus_producer *pr, uint32_t i, int64_t now)
{
    struct shmbus_ring *r = &pr->topic->rings[i];
    uint64_t upto = committed_prefix(r);
    if (fdatasync(r->fd) != 0)
        return SHMBUS_ESYS;
    store_max(&r->p->counters.durable, upto);
    pr->parts[i].dirty = 0;
    pr->parts[i].synced_ns = now;
    return SHMBUS_OK;
}

/* Disk topics, after a commit: fsync=always syncs before the send returns;
 * batch when this producer's last sync of the partition is older than the
 * interval; never leaves it to flush(), close() and the kernel.  One
 * fdatasync covers every page of the file written before it, whoever wrote it. */
int64_t shmbus_synced(shmbus_producer *pr, uint32_t i, int64_t result)
{
    shmbus_topic *t = pr->topic;
    pr->parts[i].dirty = 1;
    if (t->fsync == SHMBUS_FSYNC_NEVER)
        return result;
    int64_t now = shmbus_now_monotonic();
    if (t->fsync == SHMBUS_FSYNC_BATCH &&
        now - pr->parts[i].synced_ns < (int64_t)SHMBUS_SYNC_INTERVAL_MS * 1000000)
        return result;
    if (sync_partition(pr, i, now) == SHMBUS_OK)
        return result;
    pr->unsynced = result; /* published all the same: the caller must not send it again */
    return SHMBUS_ESYNC;
}

int64_t shmbus_producer_unsynced(shmbus_producer *pr) { return pr->unsynced; }

int shmbus_producer_sync(shmbus_producer *pr)
{
    int64_t now = shmbus_now_monotonic();
    for (uint32_t i = 0; i < pr->topic->count; i++)
        if (pr->parts[i].dirty && pr->topic->rings[i].fd >= 0 && sync_partition(pr, i, now) != SHMBUS_OK)
            return SHMBUS_ESYS;
    return SHMBUS_OK;
}

int64_t shmbus_claim(shmbus_producer *pr, uint32_t partition, uint64_t bytes, uint64_t *position)
{
    shmbus_topic *t = pr->topic;
    struct shmbus_ring *r = &t->rings[partition];
    struct shmbus_partition *p = r->p;
    struct shmbus_limit *lim = &pr->parts[partition].limit;
    struct shmbus_point tail, next;
    for (;;) {
        tail = point_load(&p->tail.tail);
        *position = claim_position(r, tail.position, bytes);
        next.position = *position + bytes;
        next.offset = tail.offset + 1;
        if (!claim_fits(r, tail.position, next.position, next.offset, lim) &&
            !refresh_limit(pr, partition, tail.position, next.position, next.offset))
            return SHMBUS_FULL;
        /* Published before the claim (the CAS is a full barrier): a reader that
         * finds this offset claimed but not committed asks whether we live. */
        announce(&p->producers[pr->index], tail.offset, next.offset);
        if (point_cas(&p->tail.tail, tail, next))
            break;
        cpu_relax();
    }
    FAULT_POINT(SHMBUS_FAULT_AFTER_CLAIM);
    return (int64_t)tail.offset;
}

void shmbus_commit(shmbus_producer *pr, uint32_t partition, uint64_t offset, uint64_t position,
                   int64_t timestamp_ns, const char *value, uint64_t value_len, const char *key,
                   uint32_t key_len, const char *headers, uint32_t headers_len, uint64_t spill_id)
{
    shmbus_topic *t = pr->topic;
    struct shmbus_ring *r = &t->rings[partition];
    write_record(r, t->checksums, offset, position, timestamp_ns, value, value_len, key, key_len,
                 headers, headers_len, spill_id);
    FAULT_POINT(SHMBUS_FAULT_BEFORE_COMMIT);
    store_seq_cst(&r->slots[offset & r->slot_mask].seq, offset + 1);
    FAULT_POINT(SHMBUS_FAULT_AFTER_COMMIT);
    wake_if_waiting(t);
}

int64_t shmbus_send_record(shmbus_producer *pr, uint32_t partition, int64_t timestamp_ns,
                           const char *value, uint64_t value_len, const char *key,
                           uint32_t key_len, const char *headers, uint32_t headers_len,
                           uint64_t spill_id)
{
    uint64_t position;
    int64_t off = shmbus_claim(pr, partition, record_bytes(value_len + key_len + headers_len), &position);
    if (off >= 0)
        shmbus_commit(pr, partition, (uint64_t)off, position, timestamp_ns, value, value_len, key,
                      key_len, headers, headers_len, spill_id);
    return off;
}

/* on_full=spill: while the spill holds records, a send goes through it (the
 * caller's spill path), or it would pass them. */
static inline int spill_holds(const shmbus_topic *t, const struct shmbus_partition *p)
{
    if (t->on_full != SHMBUS_ON_FULL_SPILL)
        return 0;
    uint64_t moved = load_acquire(&p->spill.out.offset);
    return load_acquire(&p->spill.in.offset) != moved;
}

int64_t shmbus_send(shmbus_producer *pr, uint32_t partition, const char *value, uint64_t value_len,
                    const char *key, uint32_t key_len, const char *headers, uint32_t headers_len)
{
    int64_t bad = shmbus_check_sizes(pr, partition, value_len, key_len, headers_len);
    if (bad)
        return bad;
    struct shmbus_ring *r = &pr->topic->rings[partition];
    if (spill_holds(pr->topic, r->p))
        return SHMBUS_FULL;
    FAULT_POINT(SHMBUS_FAULT_SEND_CHECKED);
    int64_t off = shmbus_send_record(pr, partition, shmbus_now_realtime(), value, value_len, key,
                                     key_len, headers, headers_len, 0);
    return r->fd < 0 || off < 0 ? off : shmbus_synced(pr, partition, off);
}

int64_t shmbus_send_value(shmbus_producer *pr, uint32_t partition, const char *value,
                          uint64_t value_len)
{
    return shmbus_send(pr, partition, value, value_len, NULL, 0, NULL, 0);
}

int64_t shmbus_send_batch(shmbus_producer *pr, uint32_t partition, const char *values,
                          const uint64_t *lengths, uint32_t count, const char *key,
                          uint32_t key_len, uint32_t *accepted)
{
    *accepted = 0;
    if (count == 0)
        return 0;
    for (uint32_t i = 0; i < count; i++) {
        int64_t bad = shmbus_check_sizes(pr, partition, lengths[i], key_len, 0);
        if (bad)
            return bad;
    }
    shmbus_topic *t = pr->topic;
    struct shmbus_ring *r = &t->rings[partition];
    struct shmbus_partition *p = r->p;
    struct shmbus_limit *lim = &pr->parts[partition].limit;
    struct shmbus_point tail, next;
    uint32_t n;
    if (spill_holds(t, p))
        return SHMBUS_FULL;
    for (;;) {
        tail = point_load(&p->tail.tail);
        int refreshed = 0;
        uint64_t end = tail.position;
        for (n = 0; n < count; n++) {
            uint64_t bytes = record_bytes(lengths[n] + key_len);
            uint64_t e = claim_position(r, end, bytes) + bytes;
            if (!claim_fits(r, end, e, tail.offset + n + 1, lim)) {
                if (refreshed || !refresh_limit(pr, partition, end, e, tail.offset + n + 1))
                    break;
                refreshed = 1;
            }
            end = e;
        }
        if (n == 0)
            return SHMBUS_FULL;
        next.position = end;
        next.offset = tail.offset + n;
        announce(&p->producers[pr->index], tail.offset, next.offset);
        if (point_cas(&p->tail.tail, tail, next))
            break;
        cpu_relax();
    }
    FAULT_POINT(SHMBUS_FAULT_AFTER_CLAIM);
    int64_t now = shmbus_now_realtime();
    uint64_t position = tail.position;
    const char *v = values;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t bytes = record_bytes(lengths[i] + key_len);
        position = claim_position(r, position, bytes);
        write_record(r, t->checksums, tail.offset + i, position, now, v, lengths[i], key, key_len,
                     NULL, 0, 0);
        store_release(&r->slots[(tail.offset + i) & r->slot_mask].seq, tail.offset + i + 1);
        position += bytes;
        v += lengths[i];
    }
    fence_seq_cst();
    wake_if_waiting(t);
    *accepted = n;
    return r->fd < 0 ? (int64_t)tail.offset : shmbus_synced(pr, partition, (int64_t)tail.offset);
}

static int space_for(shmbus_producer *pr, uint32_t partition, uint64_t bytes)
{
    struct shmbus_ring *r = &pr->topic->rings[partition];
    struct shmbus_point tail = point_load(&r->p->tail.tail);
    uint64_t end = claim_position(r, tail.position, bytes) + bytes;
    pr->parts[partition].limit = shmbus_ring_free_point(pr->topic, partition);
    if (claim_fits(r, tail.position, end, tail.offset + 1, &pr->parts[partition].limit))
        return 1;
    /* drop_oldest waits only for a claim at the head: look again as it ends */
    return pr->topic->on_full == SHMBUS_ON_FULL_DROP_OLDEST &&
           refresh_limit(pr, partition, tail.position, end, tail.offset + 1);
}

int shmbus_wait_space(shmbus_producer *pr, uint32_t partition, uint64_t record_len,
                      int64_t timeout_ns, int64_t spin_ns)
{
    if (partition >= pr->topic->count)
        return SHMBUS_EINVAL;
    shmbus_topic *t = pr->topic;
    struct shmbus_partition *p = t->rings[partition].p;
    uint64_t bytes = record_bytes(record_len);
    int64_t start = shmbus_now_monotonic();
    int64_t deadline = timeout_ns < 0 ? INT64_MAX : start + timeout_ns;
    fetch_add(&p->counters.blocked_sends, 1);
    if (timeout_ns >= 0 && spin_ns > timeout_ns)
        spin_ns = timeout_ns;
    for (int64_t spun = 0; spun < spin_ns; spun = shmbus_now_monotonic() - start) {
        if (space_for(pr, partition, bytes))
            return SHMBUS_OK;
        shmbus_spin_step(spun);
    }
    int64_t slice = t->liveness_ns / 4 > 0 ? t->liveness_ns / 4 : 1000000;
    for (;;) {
        uint32_t seq = load_acquire(&p->space.seq);
        fetch_add(&p->space.waiters, 1);
        int fits = space_for(pr, partition, bytes);
        int r = SHMBUS_OK;
        if (!fits) {
            int64_t now = shmbus_now_monotonic();
            if (now >= deadline) {
                __atomic_fetch_sub(&p->space.waiters, 1, __ATOMIC_SEQ_CST);
                return SHMBUS_TIMEOUT;
            }
            int64_t left = deadline - now;
            r = shmbus_futex_wait(&p->space.seq, seq, left < slice ? left : slice);
        }
        __atomic_fetch_sub(&p->space.waiters, 1, __ATOMIC_SEQ_CST);
        if (fits || space_for(pr, partition, bytes))
            return SHMBUS_OK;
        if (r == SHMBUS_INTERRUPTED)
            return r;
        if (r == SHMBUS_TIMEOUT) /* the room may be held by what a dead process left */
            shmbus_topic_sweep(t, pr->lock_fd, NULL);
    }
}

void shmbus_count_drop(shmbus_producer *pr, uint32_t partition, uint64_t count)
{
    if (partition < pr->topic->count)
        fetch_add(&pr->topic->rings[partition].p->counters.dropped_full, count);
}

/* Kafka's murmur2 partitioner, so that a key lands where Kafka clients put it. */
uint32_t shmbus_partition_for_key(const char *key, uint32_t len, uint32_t partitions)
{
    const uint32_t m = 0x5bd1e995;
    const unsigned char *d = (const unsigned char *)key;
    uint32_t h = 0x9747b28c ^ len;
    uint32_t n4 = len / 4;
    for (uint32_t i = 0; i < n4; i++) {
        uint32_t k = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 |
                     (uint32_t)d[4 * i + 2] << 16 | (uint32_t)d[4 * i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    uint32_t rest = len & ~3u;
    switch (len % 4) {
    case 3:
        h ^= (uint32_t)d[rest + 2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)d[rest + 1] << 8;
        /* fall through */
    case 1:
        h ^= d[rest];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return partitions ? (h & 0x7fffffff) % partitions : 0;
}
