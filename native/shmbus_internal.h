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
    uint64_t slot_mask;
    uint64_t slot_count;
    uint64_t data_offset;
};

struct shmbus_topic {
    struct shmbus_meta *meta;
    int meta_fd; /* for liveness queries; holds no lock itself */
    int64_t liveness_ns;
    uint32_t count;
    uint64_t max_message_size;
    struct shmbus_ring rings[];
};

struct shmbus_limit {
    uint64_t position; /* bytes below are free */
    uint64_t offset;   /* offsets below are free */
};

struct shmbus_producer {
    shmbus_topic *topic;
    int lock_fd;
    uint32_t index;
    int64_t last_reap; /* monotonic ns of the last look for dead consumers' groups */
    struct shmbus_limit limits[]; /* cached free points, per partition */
};

struct shmbus_consumer_partition {
    uint64_t release;     /* delivered offsets below this are committed at the next poll */
    uint64_t stuck_offset;
    int64_t stuck_since;
};

struct shmbus_consumer {
    shmbus_topic *topic;
    int lock_fd;
    uint32_t member;
    uint32_t group;
    uint32_t next; /* partition to look at first */
    struct shmbus_consumer_partition parts[];
};

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
/* Ends an active group (close, or its owner died); 1 if this call ended it.  ring.c */
int shmbus_group_release(shmbus_topic *t, uint32_t group);
/* Releases private groups whose owner died; returns how many.  ring.c */
int shmbus_reap_groups(shmbus_topic *t);
void shmbus_wake_producers(struct shmbus_partition *p);

#endif
