/* Process-local handles (never in shared memory) and helpers shared by the C files. */
#ifndef SHMBUS_INTERNAL_H
#define SHMBUS_INTERNAL_H

#include "shmbus.h"
#include "shmbus_layout.h"

struct shmbus_ring {
    struct shmbus_partition *p;
    struct shmbus_slot *slots;
    unsigned char *data;
    uint64_t capacity; /* power of two */
    uint64_t slot_mask;  /* slots in the index - 1 */
    uint64_t slot_count; /* records the ring holds at most: the topic's max_messages */
    uint64_t data_offset;
    struct shmbus_pending *pending; /* SHMBUS_MAX_GROUPS tables of `window` entries */
    uint64_t window;
    struct shmbus_dedup_bucket *dedup; /* msg_ids, when the topic keeps them */
    uint64_t dedup_mask;               /* buckets - 1 */
    int fd;       /* disk topics: the partition's file, for syncs; -1 otherwise */
    int spill_fd; /* on_full=spill: the partition's spill file; -1 otherwise */
};

struct shmbus_topic {
    struct shmbus_meta *meta;
    int meta_fd; /* for liveness queries; holds no lock itself */
    int64_t liveness_ns;
    uint32_t count;
    uint64_t max_message_size;
    uint32_t on_full;
    uint32_t retention;
    uint64_t retention_bytes; /* retention=log: 0 means the whole ring */
    int64_t retention_ns;     /* retention=log: 0 means no age limit */
    uint32_t fsync;           /* SHMBUS_FSYNC_* (disk topics) */
    int checksums;            /* records carry checksums (disk topics) */
    uint64_t spill_bytes;     /* on_full=spill: the most a spill file holds */
    int64_t dedup_window_ns;  /* how long a msg_id is remembered */
    int dedup;                /* the partitions have dedup tables */
    struct shmbus_ring rings[];
};

struct shmbus_limit {
    uint64_t position; /* bytes below are free */
    uint64_t offset;   /* offsets below are free */
};

struct shmbus_producer_partition {
    struct shmbus_limit limit; /* cached free point */
    int64_t synced_ns;         /* disk topics: monotonic ns of this producer's last sync */
    int dirty;                 /* disk topics: written since that sync */
};

struct shmbus_producer {
    shmbus_topic *topic;
    int lock_fd;
    uint32_t index;
    int64_t last_reap; /* monotonic ns of the last look for dead consumers' groups */
    int64_t last_recover; /* drop_oldest: of the last look at a claim stuck at the head */
    unsigned char *spill_buf; /* on_full=spill: one record read back from a spill file */
    int64_t unsynced;         /* what the last send that failed its sync had published */
    struct shmbus_producer_partition parts[];
};

struct shmbus_consumer_partition {
    uint64_t release;     /* private groups: delivered offsets below this are committed at the next poll */
    uint64_t stuck_offset;
    int64_t stuck_since;
    uint64_t ready_seen;  /* tracked groups: the group line's ready count at the last sweep */
    uint8_t owned;        /* ordering=partition: this member owns the partition */
    uint8_t leaving;      /* owned, but to be handed over once nothing is in flight */
    uint8_t held_back;    /* ordering=partition: a redelivery holds later offsets back */
    uint64_t lost;        /* untethered: lost since the last delivery, told with the next */
};

/* A consumer of a tracked group (named, or acking by hand) records every delivery
 * in the group's pending table; a private auto-ack group needs only its cursor. */
struct shmbus_consumer {
    shmbus_topic *topic;
    int lock_fd;
    uint32_t member;
    uint32_t group;
    uint32_t next; /* partition to look at first */
    uint32_t incarnation;
    int tracked;
    int tethered;
    int may_lap; /* a producer may overwrite what it has not read: untethered, drop_oldest, or
                  * retention=log (a replay below the head) */
    int passable; /* shmbus_passable */
    int manual;
    int by_partition;
    uint32_t max_deliveries; /* 0: no limit */
    int64_t ack_timeout_ns;
    int64_t next_sweep;      /* monotonic ns: look at the pending tables again */
    int64_t next_liveness;   /* monotonic ns: look at who is alive again */
    int64_t last_sweep;      /* monotonic ns of the last recovery sweep after a wait timed out */
    uint32_t epoch_seen;
    uint32_t sweep_now;
    uint64_t *unreleased;    /* auto acks: (partition, offset) delivered by the last poll */
    uint32_t unreleased_count;
    uint32_t unreleased_cap;
    struct shmbus_consumer_partition parts[];
};

/* This consumer as a partition's owner (the group line's owner field). */
static inline uint64_t shmbus_owner_word(const struct shmbus_consumer *c)
{
    return SHMBUS_OWNER(c->member, c->incarnation);
}

/* A group records every delivery in its pending table when it is named or acks by hand. */
static inline int shmbus_tracks(uint32_t name_len, uint32_t ack)
{
    return name_len > 0 || ack == SHMBUS_ACK_MANUAL;
}

/* The head may pass a group, and what lies below the head is then over for it:
 * an untethered group, or any under drop_oldest; not under retention=log, where
 * it is there to read until a later lap takes it. */
static inline int shmbus_passable(const struct shmbus_topic *t, int tethered)
{
    return (!tethered || t->on_full == SHMBUS_ON_FULL_DROP_OLDEST) &&
           t->retention != SHMBUS_RETENTION_LOG;
}

static inline uint64_t record_bytes(uint64_t payload)
{
    uint64_t n = payload < SHMBUS_RECORD_ALIGN ? SHMBUS_RECORD_ALIGN : payload;
    return (n + SHMBUS_RECORD_ALIGN - 1) & ~(uint64_t)(SHMBUS_RECORD_ALIGN - 1);
}

static inline uint64_t slot_record_bytes(const struct shmbus_slot *s)
{
    return record_bytes((uint64_t)s->value_len + s->key_len + s->headers_len);
}

/* The free point of a ring: the slowest tethered group's committed point, or
 * the head when there is none.  Advances the head.  ring.c */
struct shmbus_limit shmbus_ring_free_point(shmbus_topic *t, uint32_t partition);
/* The oldest offset a reader may still read: the head (retention=consumed),
 * or (retention=log) the oldest record not yet overwritten and within the
 * retention limits.  ring.c */
uint64_t shmbus_retained_start(shmbus_topic *t, uint32_t partition);
/* Ends an active group (close, or its owner died); 1 if this call ended it.
 * The caller holds the group lock.  ring.c */
int shmbus_group_release(shmbus_topic *t, uint32_t group);
/* Releases private groups whose owner died, and frees entries a dead process
 * left half-made; returns how many.  reap_locked: the caller holds the group
 * lock; reap_groups takes it if it is free, and otherwise does nothing.  ring.c */
int shmbus_reap_locked(shmbus_topic *t);
int shmbus_reap_groups(shmbus_topic *t, int lock_fd);
void shmbus_wake_producers(struct shmbus_partition *p);

/* Moves a group's committed point over the done offsets below `upto`: for a
 * private group every offset handed out is done; a tracked group's pending
 * table says which are.  Returns 1 if it moved.  consumer.c */
int shmbus_advance_committed(shmbus_topic *t, uint32_t partition, uint32_t group, uint64_t upto,
                             int tracked);
/* A claim at `offset` whose producer is gone becomes padding: 2 when this call
 * made it padding, 1 when it is committed or padding already, 0 when a live
 * producer still holds it.  consumer.c */
int shmbus_recover_claim(shmbus_topic *t, struct shmbus_ring *r, uint64_t offset);
/* What the cursor finds when no record is there: 1 when a dead producer's claim
 * at `offset` has been turned into padding.  consumer.c */
int shmbus_stuck_at(shmbus_consumer *c, uint32_t partition, uint64_t offset);
/* Whether the bytes of a record at `position` may already be reused.  consumer.c */
int shmbus_bytes_gone(shmbus_topic *t, struct shmbus_ring *r, uint64_t position);
/* Fills one delivery record from the slot of `offset`.  consumer.c */
int shmbus_fill_delivery(struct shmbus_ring *r, uint32_t partition, uint64_t offset,
                         uint32_t count, uint32_t flags, uint64_t *out);

/* Claims one record of `bytes` without waiting: its offset (*position: where
 * its bytes start), or SHMBUS_FULL.  Commit writes and commits it.  producer.c */
int64_t shmbus_claim(shmbus_producer *pr, uint32_t partition, uint64_t bytes, uint64_t *position);
void shmbus_commit(shmbus_producer *pr, uint32_t partition, uint64_t offset, uint64_t position,
                   int64_t timestamp_ns, const char *value, uint64_t value_len, const char *key,
                   uint32_t key_len, const char *headers, uint32_t headers_len, uint64_t spill_id);
/* Claims, writes and commits one record (timestamp given; spill_id: the spill
 * record it comes from, 0 if none) without waiting and without syncing:
 * its offset, or SHMBUS_FULL.  producer.c */
int64_t shmbus_send_record(shmbus_producer *pr, uint32_t partition, int64_t timestamp_ns,
                           const char *value, uint64_t value_len, const char *key,
                           uint32_t key_len, const char *headers, uint32_t headers_len,
                           uint64_t spill_id);
/* Disk topics, after records were committed: syncs as the topic's fsync says;
 * returns result, or SHMBUS_ESYNC (result kept for shmbus_producer_unsynced).
 * producer.c */
int64_t shmbus_synced(shmbus_producer *pr, uint32_t partition, int64_t result);
/* Sizes a producer may write, or SHMBUS_EINVAL / SHMBUS_ETOOLARGE.  producer.c */
int64_t shmbus_check_sizes(shmbus_producer *pr, uint32_t partition, uint64_t value_len,
                           uint32_t key_len, uint32_t headers_len);

/* Groups: joining, leaving, membership and partition ownership.  group.c */
int shmbus_group_join(shmbus_consumer *c, const struct shmbus_group_options *o);
void shmbus_group_leave(shmbus_consumer *c);
/* Ownership under ordering=partition: rebalance takes what falls to this member
 * (1 if it took any) and gives up what does not; handover finishes giving up. */
int shmbus_group_rebalance(shmbus_consumer *c);
void shmbus_group_handover(shmbus_consumer *c);
/* Whether the member entry holds its lock, is in the group and its incarnation
 * matches (in mask). */
int shmbus_member_alive(shmbus_topic *t, uint32_t member, uint32_t group, uint64_t incarnation,
                        uint64_t mask);

/* Tracked deliveries: the pending table.  pending.c */
int shmbus_poll_tracked(shmbus_consumer *c, uint64_t *out, uint32_t max);
int shmbus_tracked_available(shmbus_consumer *c);
void shmbus_release_all(shmbus_consumer *c);
int shmbus_owns_nothing_in_flight(shmbus_consumer *c, uint32_t partition);
void shmbus_pending_reset(shmbus_topic *t, uint32_t group);
int64_t shmbus_seek_tracked(shmbus_consumer *c, uint32_t partition, uint64_t offset);
/* The recovery sweep's part in group g's window of partition i.  pending.c */
uint64_t shmbus_pending_recover(shmbus_topic *t, uint32_t partition, uint32_t group);
/* The deliveries of group g in a partition not yet done, between its committed
 * offset and cursor; held (when not NULL) gains, per member entry, those that
 * member holds now. */
uint64_t shmbus_pending_count(shmbus_topic *t, uint32_t g, uint32_t partition, uint64_t committed,
                              uint64_t cursor, uint32_t *held);
/* shmbus_group_stats, adding to held as shmbus_pending_count does. */
int shmbus_group_read(shmbus_topic *t, uint32_t g, uint32_t partition, struct shmbus_group_stats *out,
                      uint32_t *held);

/* Disk recovery, the tail gone back to `end`: the msg_ids of records at or
 * past it are forgotten, and bucket locks let go (nobody else is attached).
 * dedup.c */
void shmbus_dedup_forget(struct shmbus_ring *r, uint64_t end);

/* Dead producers' claims in [first, end) below the tail become padding; how
 * many this call turned.  sweep.c */
uint64_t shmbus_recover_claims(shmbus_topic *t, uint32_t partition, uint64_t first, uint64_t end);

#endif
