/* on_full=spill: a partition's overflow goes to a file and comes back into the
 * ring in order.  While the spill holds records every send of the partition goes
 * through it (shmbus_send refuses with SHMBUS_FULL and the caller comes here),
 * so the ring and the spill together keep one order.  Everything here happens
 * under the partition's spill lock (an OFD lock byte, dropped by the kernel when
 * its holder dies); the spill line's points are stored whole, and a record
 * being moved is named in `moving`, so that the next holder after a death finds
 * each record either in the spill or in the ring, never in both or neither. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shmbus_atomic.h"
#include "shmbus_checksum.h"
#include "shmbus_fault.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

#define PUNCH_EVERY (1ULL << 20) /* bytes moved between giving file space back */

int shmbus_topic_set_spill(shmbus_topic *t, const int *fds, uint32_t count)
{
    if (count != t->count)
        return SHMBUS_EINVAL;
    for (uint32_t i = 0; i < count; i++)
        t->rings[i].spill_fd = fds[i];
    return SHMBUS_OK;
}

uint64_t shmbus_spill_waiting(shmbus_topic *t, uint32_t partition)
{
    if (partition >= t->count)
        return 0;
    struct shmbus_partition *p = t->rings[partition].p;
    uint64_t moved = load_acquire(&p->spill.out.offset);
    return load_acquire(&p->spill.in.offset) - moved;
}

static inline uint64_t align8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

static uint32_t record_checksum(struct shmbus_spill_record h, const char *value, const char *key,
                                const char *headers)
{
    h.checksum = 0;
    uint32_t c = shmbus_crc32c(0, &h, sizeof h);
    c = shmbus_crc32c(c, value, h.value_len);
    c = shmbus_crc32c(c, key, h.key_len);
    return shmbus_crc32c(c, headers, h.headers_len);
}

static void store_point(struct shmbus_point *p, struct shmbus_point v)
{
    struct shmbus_point old = point_load(p);
    while (!point_cas(p, old, v))
        old = point_load(p);
}

/* The holder before us died moving record `moving`: if the ring holds it
 * (committed, stamped with its id), it is moved; otherwise its claim, if any, is
 * a dead one (readers make it padding) and the record is still to move.  While
 * the spill holds records nobody claims in the ring but the holder of the lock
 * and producers that looked just before the spill began (a batch each at most),
 * and nothing laps the ring before this look: the record is between the head
 * and the tail, if anywhere. */
static void settle(struct shmbus_ring *r)
{
    struct shmbus_partition *p = r->p;
    uint64_t id = load_acquire(&p->spill.moving);
    if (!id)
        return;
    struct shmbus_point out = point_load(&p->spill.out);
    uint64_t tail = point_load(&p->tail.tail).offset;
    uint64_t head = load_acquire(&p->head.offset);
    if (tail - head > r->slot_count)
        head = tail - r->slot_count;
    for (uint64_t off = tail; id == out.offset + 1 && off > head; off--) {
        const struct shmbus_slot *s = &r->slots[(off - 1) & r->slot_mask];
        struct shmbus_spill_record h;
        if (load_acquire(&s->seq) == off && s->reserved[0] == id) {
            if (pread(r->spill_fd, &h, sizeof h, (off_t)out.position) == (ssize_t)sizeof h &&
                h.id == id)
                store_point(&p->spill.out, (struct shmbus_point){out.position + h.bytes, id});
            break;
        }
    }
    store_release(&p->spill.moving, 0);
}

/* Reads the spill record at `position` (id `id`) into the producer's buffer. */
static int read_record(shmbus_producer *pr, struct shmbus_ring *r, uint64_t position,
                       uint64_t end, uint64_t id, struct shmbus_spill_record *h)
{
    uint64_t most = align8(sizeof *h + pr->topic->max_message_size + SHMBUS_MAX_KEY_SIZE +
                           SHMBUS_MAX_HEADERS_SIZE);
    if (!pr->spill_buf && !(pr->spill_buf = malloc(most)))
        return SHMBUS_ESYS;
    if (pread(r->spill_fd, h, sizeof *h, (off_t)position) != (ssize_t)sizeof *h)
        return SHMBUS_ECORRUPT;
    uint64_t len = (uint64_t)h->value_len + h->key_len + h->headers_len;
    if (h->id != id || h->bytes != align8(sizeof *h + len) || h->bytes > most ||
        position + h->bytes > end ||
        shmbus_check_sizes(pr, (uint32_t)(r - pr->topic->rings), h->value_len, h->key_len,
                           h->headers_len) != SHMBUS_OK)
        return SHMBUS_ECORRUPT;
    if (pread(r->spill_fd, pr->spill_buf, len, (off_t)(position + sizeof *h)) != (ssize_t)len)
        return SHMBUS_ECORRUPT;
    const char *b = (const char *)pr->spill_buf;
    if (record_checksum(*h, b, b + h->value_len, b + h->value_len + h->key_len) != h->checksum)
        return SHMBUS_ECORRUPT;
    return SHMBUS_OK;
}

/* Moves records from the spill into the ring while they fit; how many. */
static int move_back(shmbus_producer *pr, uint32_t i)
{
    struct shmbus_ring *r = &pr->topic->rings[i];
    struct shmbus_partition *p = r->p;
    int moved = 0;
    settle(r);
    for (;;) {
        struct shmbus_point out = point_load(&p->spill.out);
        struct shmbus_point in = point_load(&p->spill.in);
        if (out.offset == in.offset)
            break;
        struct shmbus_spill_record h;
        int err = read_record(pr, r, out.position, in.position, out.offset + 1, &h);
        if (err == SHMBUS_ECORRUPT) {
            /* the file lost or damaged what it held (removed by a cleaner of
             * the temporary directory, a crash of the machine before it was
             * written back): past a bad record nothing can be found, so the
             * rest is dropped and counted rather than block the partition */
            store_point(&p->spill.out, in);
            fetch_add(&p->spill.lost, in.offset - out.offset);
            break;
        }
        if (err != SHMBUS_OK)
            return err;
        const char *b = (const char *)pr->spill_buf;
        store_release(&p->spill.moving, h.id);
        int64_t off = shmbus_send_record(pr, i, h.timestamp_ns, b, h.value_len,
                                         (h.flags & SHMBUS_RECORD_KEYED) ? b + h.value_len : NULL,
                                         h.key_len, b + h.value_len + h.key_len, h.headers_len,
                                         h.id);
        if (off < 0) {
            store_release(&p->spill.moving, 0);
            break; /* the ring is full again */
        }
        FAULT_POINT(SHMBUS_FAULT_SPILL_MOVE);
        store_point(&p->spill.out, (struct shmbus_point){out.position + h.bytes, h.id});
        store_release(&p->spill.moving, 0);
        moved++;
    }
    /* give the file system back what was moved (the file keeps its size, so
     * positions never go back and a record id never names two records) */
    uint64_t done = load_acquire(&p->spill.out.position), punched = load_acquire(&p->spill.punched);
    if (done - punched >= PUNCH_EVERY &&
        fallocate(r->spill_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)punched,
                  (off_t)(done - punched)) == 0)
        store_release(&p->spill.punched, done);
    return moved;
}

/* Appends one record to the spill: written first, then counted (one 16-byte
 * store), so a holder that dies in between leaves bytes nobody counts. */
static int64_t append(shmbus_topic *t, uint32_t i, int64_t now, const char *value,
                      uint64_t value_len, const char *key, uint32_t key_len, const char *headers,
                      uint32_t headers_len)
{
    struct shmbus_ring *r = &t->rings[i];
    struct shmbus_partition *p = r->p;
    struct shmbus_point in = point_load(&p->spill.in);
    struct shmbus_point out = point_load(&p->spill.out);
    uint64_t len = value_len + key_len + headers_len;
    struct shmbus_spill_record h = {
        .bytes = (uint32_t)align8(sizeof h + len),
        .value_len = (uint32_t)value_len,
        .headers_len = headers_len,
        .key_len = (uint16_t)key_len,
        .flags = key ? SHMBUS_RECORD_KEYED : 0,
        .timestamp_ns = now,
        .id = in.offset + 1,
    };
    if (in.position - out.position + h.bytes > t->spill_bytes)
        return SHMBUS_FULL;
    h.checksum = record_checksum(h, value, key, headers);
    static const char zeros[8];
    struct iovec iov[5] = {{&h, sizeof h},
                           {(void *)value, value_len},
                           {(void *)key, key_len},
                           {(void *)headers, headers_len},
                           {(void *)zeros, h.bytes - sizeof h - len}};
    ssize_t n = pwritev(r->spill_fd, iov, 5, (off_t)in.position);
    if (n != (ssize_t)h.bytes) {
        if (n >= 0)
            errno = EIO;
        return SHMBUS_ESYS;
    }
    FAULT_POINT(SHMBUS_FAULT_SPILL_WRITE);
    store_point(&p->spill.in, (struct shmbus_point){in.position + h.bytes, h.id});
    return SHMBUS_SPILLED;
}

int64_t shmbus_spill_send(shmbus_producer *pr, uint32_t partition, const char *value,
                          uint64_t value_len, const char *key, uint32_t key_len,
                          const char *headers, uint32_t headers_len, int64_t lock_timeout_ns)
{
    int64_t bad = shmbus_check_sizes(pr, partition, value_len, key_len, headers_len);
    if (bad)
        return bad;
    shmbus_topic *t = pr->topic;
    struct shmbus_ring *r = &t->rings[partition];
    if (t->on_full != SHMBUS_ON_FULL_SPILL || r->spill_fd < 0)
        return SHMBUS_EINVAL;
    int64_t now = shmbus_now_realtime(); /* the send's time, kept through the spill */
    int err = shmbus_lock_wait(pr->lock_fd, SHMBUS_LOCK_SPILL(partition), lock_timeout_ns);
    if (err != SHMBUS_OK)
        return err;
    int64_t res = move_back(pr, partition);
    int moved = res > 0;
    if (res >= 0) {
        res = SHMBUS_FULL;
        if (shmbus_spill_waiting(t, partition) == 0)
            res = shmbus_send_record(pr, partition, now, value, value_len, key, key_len, headers,
                                     headers_len, 0);
        if (res == SHMBUS_FULL)
            res = append(t, partition, now, value, value_len, key, key_len, headers, headers_len);
    }
    shmbus_lock_release(pr->lock_fd, SHMBUS_LOCK_SPILL(partition));
    if (r->fd >= 0 && (moved || res >= 0))
        return shmbus_synced(pr, partition, res);
    return res;
}

int shmbus_spill_drain(shmbus_producer *pr, uint32_t partition)
{
    shmbus_topic *t = pr->topic;
    if (partition >= t->count || t->rings[partition].spill_fd < 0)
        return SHMBUS_EINVAL;
    int got = shmbus_lock_try(pr->lock_fd, SHMBUS_LOCK_SPILL(partition));
    if (got <= 0)
        return got; /* another process moves them */
    int moved = move_back(pr, partition);
    shmbus_lock_release(pr->lock_fd, SHMBUS_LOCK_SPILL(partition));
    if (moved > 0 && t->rings[partition].fd >= 0)
        return (int)shmbus_synced(pr, partition, moved);
    return moved;
}
