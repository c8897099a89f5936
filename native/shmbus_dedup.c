/* Sends with a msg_id, and the dedup table that remembers them (shmbus_layout.h
 * says how a table is laid out).  A send looks its id up in the id's bucket
 * and, when the id is new there, claims its record and enters the id, all under
 * the bucket's lock; it copies and commits after letting the lock go.  A second
 * send of the id finds the entry, and the record it names tells whether the
 * first made it: committed, being written (waited for), or padding (its
 * producer died before committing: the id goes again). */
#include <string.h>

#include "shmbus_atomic.h"
#include "shmbus_fault.h"
#include "shmbus_internal.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

/* How long a sender waits on a bucket's holder, or on a record being written,
 * between two looks at whether the process it waits for lives. */
#define LOOK_NS 1000000

/* A lock word: the holder's producer entry + 1 in the low byte, above it the
 * entry's attach time, which tells the holder apart from a later occupant of
 * the same entry. */
#define LOCK_TAG(attached_ns) ((uint64_t)(attached_ns) << 8)
#define LOCK_ENTRY(word) ((uint32_t)((word)&0xff) - 1)
_Static_assert(SHMBUS_MAX_PRODUCERS < 256, "a lock word has 8 bits of producer entry");

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A 64-bit hash of the id; two ids are taken for the same when their hashes are. */
static uint64_t id_hash(const char *id, uint32_t len)
{
    uint64_t h = mix(0x9e3779b97f4a7c15ULL ^ len);
    uint32_t at = 0;
    for (; at + 8 <= len; at += 8) {
        uint64_t k;
        memcpy(&k, id + at, 8);
        h = mix(h ^ k);
    }
    if (at < len) {
        uint64_t k = 0;
        memcpy(&k, id + at, len - at);
        h = mix(h ^ k ^ 0xff);
    }
    return h ? h : 1;
}

static uint64_t lock_word(const shmbus_producer *pr)
{
    uint64_t attached = load_relaxed(&pr->topic->meta->producers[pr->index].attached_ns);
    return LOCK_TAG(attached) | (pr->index + 1);
}

/* Whether the holder a lock word names is gone: its entry has another occupant
 * now, or none holds the entry's lock byte. */
static int holder_gone(const shmbus_producer *pr, uint64_t word)
{
    uint32_t i = LOCK_ENTRY(word);
    if (i >= SHMBUS_MAX_PRODUCERS)
        return 1;
    uint64_t attached = load_acquire(&pr->topic->meta->producers[i].attached_ns);
    if (LOCK_TAG(attached) != (word & ~(uint64_t)0xff))
        return 1; /* the entry was taken again since (perhaps by this very handle) */
    if (i == pr->index) /* this handle, used by two threads at once: never steal */
        return 0;
    return !shmbus_lock_held(pr->lock_fd, SHMBUS_LOCK_PRODUCER(i));
}

/* The holder's stores into the bucket are each complete (see enter), so a
 * bucket whose holder died is as good as one let go: its lock is taken over. */
static void bucket_lock(shmbus_producer *pr, struct shmbus_dedup_bucket *b)
{
    uint64_t mine = lock_word(pr);
    int64_t start = 0, looked = 0;
    for (;;) {
        uint64_t seen = 0;
        if (cas(&b->lock, &seen, mine))
            return;
        int64_t now = shmbus_now_monotonic();
        if (!start)
            start = looked = now;
        if (now - looked >= LOOK_NS) {
            looked = now;
            if (holder_gone(pr, seen) && cas(&b->lock, &seen, mine))
                return;
        }
        shmbus_spin_step(now - start);
    }
}

static void bucket_unlock(struct shmbus_dedup_bucket *b) { store_release(&b->lock, 0); }

enum entry_state { E_FREE, E_WRITING, E_LIVE };

/* Whether an entry can be had without reading its record: empty, or out of the
 * window. */
static int entry_spent(const shmbus_topic *t, const struct shmbus_dedup_entry *e, int64_t now)
{
    return !load_relaxed(&e->offset) || now - e->sent_ns >= t->dedup_window_ns;
}

/* An entry within the window, by its record: padding (its producer died) frees
 * it; a record lapped by the ring was committed once (or was padding that
 * nobody read since: then the id is kept for nothing until the window ends). */
static enum entry_state entry_state(const struct shmbus_ring *r, const struct shmbus_dedup_entry *e)
{
    uint64_t off1 = load_relaxed(&e->offset);
    uint64_t seq = load_acquire(&r->slots[(off1 - 1) & r->slot_mask].seq);
    if (seq == (off1 | SHMBUS_SEQ_PADDING))
        return E_FREE;
    return (seq & ~SHMBUS_SEQ_PADDING) < off1 ? E_WRITING : E_LIVE;
}

/* The offset stays 0 (an empty entry) until the id and time are in, so an entry
 * is whole at every step, whenever its writer dies. */
static void enter(struct shmbus_dedup_entry *e, uint64_t id, uint64_t offset, int64_t now)
{
    store_relaxed(&e->offset, 0);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    store_relaxed(&e->id, id);
    store_relaxed(&e->sent_ns, now);
    store_release(&e->offset, offset + 1);
}

/* Whether the record at `offset`, being written, gets committed: 1 when it is,
 * 0 when its producer died and it became padding.  A producer alive past the
 * liveness timeout (stopped, say) is trusted to finish it. */
static int first_made_it(shmbus_producer *pr, struct shmbus_ring *r, uint64_t offset)
{
    const struct shmbus_slot *s = &r->slots[offset & r->slot_mask];
    int64_t start = shmbus_now_monotonic(), looked = start;
    for (;;) {
        uint64_t seq = load_acquire(&s->seq);
        if (seq == ((offset + 1) | SHMBUS_SEQ_PADDING))
            return 0;
        if ((seq & ~SHMBUS_SEQ_PADDING) >= offset + 1)
            return 1;
        int64_t now = shmbus_now_monotonic();
        if (now - looked >= LOOK_NS) {
            looked = now;
            if (shmbus_recover_claim(pr->topic, r, offset) == 0 && now - start >= pr->topic->liveness_ns)
                return 1;
        }
        shmbus_spin_step(now - start);
    }
}

int64_t shmbus_send_once(shmbus_producer *pr, uint32_t partition, const char *value,
                         uint64_t value_len, const char *key, uint32_t key_len, const char *headers,
                         uint32_t headers_len, const char *id, uint32_t id_len, uint64_t *first)
{
    int64_t bad = shmbus_check_sizes(pr, partition, value_len, key_len, headers_len);
    if (bad)
        return bad;
    shmbus_topic *t = pr->topic;
    if (!t->dedup || t->on_full == SHMBUS_ON_FULL_SPILL)
        return SHMBUS_EINVAL;
    struct shmbus_ring *r = &t->rings[partition];
    uint64_t h = id_hash(id, id_len);
    struct shmbus_dedup_bucket *b = &r->dedup[h & r->dedup_mask];
    uint64_t bytes = record_bytes(value_len + key_len + headers_len);
    for (uint32_t line = 1; line < sizeof *b / SHMBUS_CACHE_LINE; line++)
        __builtin_prefetch((const char *)b + line * SHMBUS_CACHE_LINE); /* the lock takes line 0 */
    for (;;) {
        bucket_lock(pr, b);
        FAULT_POINT(SHMBUS_FAULT_DEDUP_LOCKED);
        int64_t now = shmbus_now_realtime();
        /* Only the entry of this id, and a victim pushed out, have their record
         * read: a look at a bucket touches no other line of the ring. */
        struct shmbus_dedup_entry *found = NULL, *free_ = NULL, *oldest = NULL;
        enum entry_state found_state = E_FREE;
        for (uint32_t w = 0; w < SHMBUS_DEDUP_WAYS; w++) {
            struct shmbus_dedup_entry *e = &b->entries[w];
            if (entry_spent(t, e, now)) {
                free_ = free_ ? free_ : e;
            } else if (e->id == h) {
                found_state = entry_state(r, e);
                if (found_state != E_FREE) {
                    found = e;
                    break;
                }
                free_ = e;
            } else if (!oldest || e->sent_ns < oldest->sent_ns) {
                oldest = e;
            }
        }
        if (found) {
            uint64_t off = found->offset - 1;
            bucket_unlock(b);
            if (found_state == E_WRITING && !first_made_it(pr, r, off))
                continue; /* the first never made it: this one goes */
            fetch_add(&r->p->counters.duplicates, 1);
            *first = off;
            return SHMBUS_DUPLICATE;
        }
        uint64_t position;
        int64_t off = shmbus_claim(pr, partition, bytes, &position);
        if (off < 0) {
            bucket_unlock(b);
            return off;
        }
        if (!free_ && entry_state(r, oldest) != E_FREE)
            fetch_add(&r->p->counters.dedup_evicted, 1);
        enter(free_ ? free_ : oldest, h, (uint64_t)off, now);
        bucket_unlock(b);
        shmbus_commit(pr, partition, (uint64_t)off, position, now, value, value_len, key, key_len,
                      headers, headers_len, 0);
        return r->fd < 0 ? off : shmbus_synced(pr, partition, off);
    }
}

void shmbus_dedup_forget(struct shmbus_ring *r, uint64_t end)
{
    for (uint64_t i = 0; i < r->p->dedup_buckets; i++) {
        struct shmbus_dedup_bucket *b = &r->dedup[i];
        b->lock = 0;
        for (uint32_t w = 0; w < SHMBUS_DEDUP_WAYS; w++)
            if (b->entries[w].offset > end)
                b->entries[w].offset = 0;
    }
}
