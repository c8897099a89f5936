/* The shared-memory layout of shmbus: the one place that declares it.
 *
 * A topic is one metadata segment (config, producer/group/member tables, the
 * topic's wake word) and one segment per partition (ring control, per-producer
 * and per-group lines, the record index, the data region).  Every field that a
 * process writes on the hot path sits on a cache line of its own.  Everything
 * is position independent: offsets, never pointers.  The layout version is
 * stored last at creation; 0 means "not ready yet".
 */
#ifndef SHMBUS_LAYOUT_H
#define SHMBUS_LAYOUT_H

#include <stdint.h>
#include <stddef.h>
#include "shmbus.h"

#define SHMBUS_CACHE_LINE 64
#define SHMBUS_ALIGNED __attribute__((aligned(SHMBUS_CACHE_LINE)))

#define SHMBUS_MAGIC_META 0x4154454d53554253ULL      /* "SBUSMETA" */
#define SHMBUS_MAGIC_PARTITION 0x5452415053554253ULL /* "SBUSPART" */
#define SHMBUS_MAGIC_BUS 0x5355425f53554253ULL       /* "SBUS_BUS" */

/* A slot's seq is offset + 1 once its record is committed; a recovered claim
 * (the producer died before committing) is offset + 1 with this bit set. */
#define SHMBUS_SEQ_PADDING (1ULL << 63)
#define SHMBUS_NO_INTENT UINT64_MAX

enum shmbus_segment_kind { SHMBUS_KIND_META = 1, SHMBUS_KIND_PARTITION = 2, SHMBUS_KIND_BUS = 3 };
enum shmbus_group_state { SHMBUS_GROUP_FREE = 0, SHMBUS_GROUP_JOINING = 1, SHMBUS_GROUP_ACTIVE = 2 };

/* Common to every segment; checked before anything else is read. */
struct shmbus_segment_header {
    uint64_t magic;
    uint32_t layout_version; /* written last, with release */
    uint32_t kind;
    uint64_t segment_size;
    uint64_t created_ns;
    uint32_t creator_pid;
    uint32_t reserved;
};

struct shmbus_topic_config {
    uint32_t partitions;
    uint32_t on_full;
    uint32_t retention;
    uint32_t fsync;
    uint64_t capacity;        /* data bytes per partition (power of two) */
    uint64_t slot_count;      /* records in the index per partition (power of two) */
    uint64_t max_message_size;
    uint64_t retention_bytes;
    uint64_t retention_ns;
    uint64_t dedup_window_ns;
    uint32_t mode;
    uint32_t flags; /* SHMBUS_TOPIC_* */
    uint64_t spill_bytes; /* on_full=spill: the most a partition's spill file holds */
    uint64_t max_messages;   /* records a partition holds at most (exact; <= slot_count) */
    uint64_t dedup_capacity; /* msg_ids a partition remembers (as asked; 0: none) */
};

/* The bus segment marks that a bus exists; its topics have segments of their own. */
struct shmbus_bus {
    struct shmbus_segment_header header;
} SHMBUS_ALIGNED;

/* One per producer handle; owned by whoever holds the lock byte of its index. */
struct shmbus_producer_record {
    uint32_t pid;
    uint32_t reserved;
    uint64_t start_time; /* process start, in the kernel's clock ticks; for display */
    uint64_t attached_ns;
} SHMBUS_ALIGNED;

struct shmbus_member_record {
    uint32_t pid;
    uint32_t group;       /* the group it is a member of, or UINT32_MAX */
    uint64_t start_time;
    uint64_t attached_ns;
    uint64_t last_active_ns;
    uint32_t incarnation; /* raised each time the entry is taken */
    uint32_t reserved;
} SHMBUS_ALIGNED;

struct shmbus_group_record {
    uint32_t state; /* enum shmbus_group_state */
    uint32_t flags; /* SHMBUS_GROUP_PRIVATE | SHMBUS_GROUP_TETHERED */
    uint32_t owner_member; /* private groups: the member whose death ends the group */
    uint32_t name_len;
    uint64_t owner_since;  /* the owner's attached_ns: tells a reused member entry apart */
    char name[SHMBUS_MAX_NAME + 4];
    uint64_t created_ns;
    uint32_t ack;
    uint32_t ordering;
    uint64_t ack_timeout_ns;
    uint32_t max_deliveries;
    uint32_t epoch; /* raised when a member joins or leaves, or a partition changes owner */
} SHMBUS_ALIGNED;

/* The topic-wide wake word: consumers of any partition sleep on it. */
struct shmbus_wake_line {
    uint32_t seq;
    uint32_t waiters;
    uint64_t wakeups;
} SHMBUS_ALIGNED;

/* Which group entries are live, as bit masks, so producers scan only those. */
struct shmbus_group_masks {
    uint64_t active;
    uint64_t tethered;
} SHMBUS_ALIGNED;

/* What recovery sweeps found and did, topic-wide (per partition and group
 * figures are in the partition's lines). */
struct shmbus_sweep_counters {
    uint64_t sweeps;           /* sweeps run to their end */
    uint64_t recovered_groups; /* private groups whose owner died, ended */
} SHMBUS_ALIGNED;

struct shmbus_meta {
    struct shmbus_segment_header header;
    struct shmbus_topic_config config;
    struct shmbus_wake_line wake;
    struct shmbus_group_masks masks;
    struct shmbus_sweep_counters sweep;
    struct shmbus_producer_record producers[SHMBUS_MAX_PRODUCERS];
    struct shmbus_member_record members[SHMBUS_MAX_MEMBERS];
    struct shmbus_group_record groups[SHMBUS_MAX_GROUPS];
    char spill_dir[SHMBUS_MAX_PATH]; /* on_full=spill: where the spill files are */
};

/* A point in a ring: a byte position (monotonic, not masked) and an offset.
 * The tail is claimed with one 16-byte compare-and-swap so that an offset and
 * its bytes are reserved together. */
struct shmbus_point {
    uint64_t position;
    uint64_t offset;
} __attribute__((aligned(16)));

struct shmbus_tail_line {
    struct shmbus_point tail; /* next claim; written by producers only */
} SHMBUS_ALIGNED;

/* Everything below head is free space.  Producers advance it (monotonic max of
 * each field) to the slowest tethered group's committed point. */
struct shmbus_head_line {
    uint64_t position;
    uint64_t offset;
} SHMBUS_ALIGNED;

/* Producers blocked on a full ring sleep on this word. */
struct shmbus_space_line {
    uint32_t seq;
    uint32_t waiters;
} SHMBUS_ALIGNED;

/* Counters changed off the hot path (refusals, recoveries). */
struct shmbus_partition_counters {
    uint64_t dropped_full;      /* drop_newest refusals */
    uint64_t recovered_claims;  /* dead producers' claims turned into padding */
    uint64_t blocked_sends;     /* sends that had to wait for space */
    uint64_t dropped_oldest;    /* records overwritten by drop_oldest before every group read them */
    uint64_t discarded;         /* disk topics: records of an incomplete tail dropped at recovery */
    uint64_t durable;           /* disk topics (fsync batch, always): offsets below were committed
                                 * and synced; recovery calls damage below it corruption */
    uint64_t duplicates;        /* sends whose msg_id was seen within the dedup window */
    uint64_t dedup_evicted;     /* msg_ids forgotten within the window, for want of room */
} SHMBUS_ALIGNED;

/* Written by one producer only: what it is about to claim. */
struct shmbus_producer_line {
    uint64_t intent;     /* first offset this producer is claiming, or SHMBUS_NO_INTENT */
    uint64_t intent_end; /* one past the last offset of that claim */
} SHMBUS_ALIGNED;

/* Written by the members of one group, read by producers when they compute
 * space; the counters sit on a line of their own. */
struct shmbus_group_line {
    uint64_t cursor;             /* next offset to hand out */
    uint64_t committed_offset;   /* every offset below is done */
    uint64_t committed_position; /* every byte below is done */
    uint64_t owner;              /* ordering=partition: the owning member, SHMBUS_OWNER() or 0 */
    uint64_t ready;              /* raised whenever a delivery becomes ready to go again */
    uint64_t reserved[3];
    uint64_t delivered;          /* first deliveries */
    uint64_t acked;              /* acknowledged (auto: released) */
    uint64_t redelivered;
    uint64_t dead_lettered;
    uint64_t lost;
    uint64_t recovered_deliveries; /* held by a member that died: to go again, or done (auto) */
    uint64_t recovered_owners;     /* ordering=partition: ownerships of a member that died, released */
    uint64_t reserved2;
} SHMBUS_ALIGNED;

#define SHMBUS_OWNER(member, incarnation) ((uint64_t)(member) + 1 + ((uint64_t)(incarnation) << 8))

/* The pending table: one entry per offset of a group's window (offset modulo the
 * window), for groups that track deliveries (named groups, manual acks).  Both
 * words change together, with one 16-byte compare-and-swap; the offset word says
 * which offset the entry is about, so an entry is never confused with the one a
 * window earlier. */
struct shmbus_pending {
    uint64_t offset;
    uint64_t word; /* the SHMBUS_P_* fields below */
} __attribute__((aligned(16)));

enum shmbus_pending_state {
    SHMBUS_P_EMPTY = 0,     /* not handed out since the table was reset */
    SHMBUS_P_DELIVERED = 1, /* held by a member until its deadline */
    SHMBUS_P_READY = 2,     /* to be delivered again, not before its deadline */
    SHMBUS_P_DONE = 3       /* acknowledged, released or dead-lettered */
};

/* word: state 2 bits, dead-letter 1, reason 2, member 7, incarnation 4, delivery
 * count 12, deadline 36 (milliseconds of CLOCK_MONOTONIC, compared modulo 2^36,
 * so a deadline is right while it is within a year of now). */
#define SHMBUS_P_STATE(w) ((uint32_t)((w)&3))
#define SHMBUS_P_DEAD(w) ((uint32_t)(((w) >> 2) & 1))
#define SHMBUS_P_REASON(w) ((uint32_t)(((w) >> 3) & 3))
#define SHMBUS_P_MEMBER(w) ((uint32_t)(((w) >> 5) & 127))
#define SHMBUS_P_INCARNATION(w) ((uint32_t)(((w) >> 12) & 15))
#define SHMBUS_P_COUNT(w) ((uint32_t)(((w) >> 16) & 4095))
#define SHMBUS_P_DEADLINE(w) ((w) >> 28)
#define SHMBUS_P_WORD(state, dead, reason, member, incarnation, count, deadline)               \
    ((uint64_t)(state) | ((uint64_t)(dead) << 2) | ((uint64_t)(reason) << 3) |                \
     ((uint64_t)(member) << 5) | ((uint64_t)((incarnation)&15) << 12) |                       \
     ((uint64_t)(count) << 16) | ((uint64_t)(deadline) << 28))
#define SHMBUS_P_CLOCK_BITS 36
#define SHMBUS_PENDING_WINDOW 4096 /* entries per group and partition, at most slot_count */

/* One entry of the record index; the record's bytes are value, key, headers,
 * contiguous from position in the data region. */
struct shmbus_slot {
    uint64_t seq;
    uint64_t position;
    int64_t timestamp_ns;
    uint32_t value_len;
    uint32_t headers_len;
    uint16_t key_len;
    uint16_t flags;
    uint32_t checksum;
    uint64_t reserved[3];
};

/* on_full=spill: a partition's overflow file, appended and moved back into the
 * ring in order under the partition's spill lock.  Each point is stored whole
 * (16 bytes), so a holder that dies leaves each consistent: `in` is {bytes
 * written, records appended}, `out` {bytes moved, records moved}; a record's id
 * is its number + 1, and a slot it was moved into keeps the id (slot.reserved[0]).
 * `moving` is the id of the record being moved: a holder that finds it set knows
 * the last one died moving it, and looks whether it reached the ring. */
struct shmbus_spill_line {
    struct shmbus_point in;
    struct shmbus_point out;
    uint64_t moving;
    uint64_t punched; /* file bytes below this were given back to the file system */
    uint64_t lost;    /* records dropped because the file did not hold them intact */
} SHMBUS_ALIGNED;

/* A record in a spill file: this header, then value, key, headers, padded to 8. */
struct shmbus_spill_record {
    uint32_t bytes;    /* the whole record, header included */
    uint32_t checksum; /* CRC-32C of the header (this field as 0) and the payload */
    uint32_t value_len;
    uint32_t headers_len;
    uint16_t key_len;
    uint16_t flags; /* SHMBUS_RECORD_KEYED */
    uint32_t reserved;
    int64_t timestamp_ns;
    uint64_t id;
};

/* The dedup table: the msg_ids sent to a partition within the topic's dedup
 * window, as 64-bit hashes, each with the offset of the record that carried it.
 * An id lives in the bucket its hash picks; a bucket is changed only under its
 * lock word (the holder's producer entry + 1), which is held for a look and an
 * insert, never for a copy, so a holder that dies there is found by its lock
 * byte and the word is taken over.  Whether an entry's record made it is read
 * from its slot: committed, padding (its producer died: the id is free again),
 * or still being written. */
#define SHMBUS_DEDUP_WAYS 10
struct shmbus_dedup_entry {
    uint64_t id;     /* hash of the msg_id, never 0 */
    uint64_t offset; /* of its record, + 1; 0: an empty entry */
    int64_t sent_ns; /* CLOCK_REALTIME of the send, for the window */
};

struct shmbus_dedup_bucket {
    uint64_t lock;
    uint64_t reserved;
    struct shmbus_dedup_entry entries[SHMBUS_DEDUP_WAYS];
} SHMBUS_ALIGNED;

struct shmbus_partition {
    struct shmbus_segment_header header;
    uint32_t index;
    uint32_t reserved;
    uint64_t capacity;
    uint64_t slot_count;
    uint64_t slots_offset;
    uint64_t pending_offset; /* SHMBUS_MAX_GROUPS tables of pending_window entries */
    uint64_t pending_window;
    uint64_t data_offset;
    uint64_t dedup_offset;  /* dedup_buckets buckets of msg_ids */
    uint64_t dedup_buckets; /* a power of two, or 0: the topic keeps no msg_ids */
    struct shmbus_tail_line tail;
    struct shmbus_head_line head;
    struct shmbus_space_line space;
    struct shmbus_partition_counters counters;
    struct shmbus_spill_line spill;
    struct shmbus_producer_line producers[SHMBUS_MAX_PRODUCERS];
    struct shmbus_group_line groups[SHMBUS_MAX_GROUPS];
    /* slots at slots_offset, data at data_offset (both cache-line aligned) */
};

#define SHMBUS_RECORD_ALIGN 8
#define SHMBUS_RECORD_KEYED 1 /* slot flag: the record has a key, perhaps empty */

_Static_assert(sizeof(struct shmbus_slot) == SHMBUS_CACHE_LINE, "a slot is one cache line");
_Static_assert(sizeof(struct shmbus_spill_record) == 40, "spill record header");
_Static_assert(offsetof(struct shmbus_partition, spill) % SHMBUS_CACHE_LINE == 0, "spill alone");
_Static_assert(sizeof(struct shmbus_group_line) == 2 * SHMBUS_CACHE_LINE, "group lines");
_Static_assert(offsetof(struct shmbus_group_line, delivered) == SHMBUS_CACHE_LINE, "counters alone");
_Static_assert(sizeof(struct shmbus_pending) == 16, "a pending entry is one 16-byte CAS");
_Static_assert(SHMBUS_MAX_MEMBERS <= 128, "a pending entry has 7 bits of member");
_Static_assert(SHMBUS_MAX_DELIVERIES == 4095, "a pending entry has 12 bits of count");
_Static_assert((SHMBUS_PENDING_WINDOW & (SHMBUS_PENDING_WINDOW - 1)) == 0, "window is a power of two");
_Static_assert(sizeof(struct shmbus_producer_line) == SHMBUS_CACHE_LINE, "producer line");
_Static_assert(sizeof(struct shmbus_tail_line) == SHMBUS_CACHE_LINE, "tail line");
_Static_assert(offsetof(struct shmbus_partition, tail) % SHMBUS_CACHE_LINE == 0, "tail alone");
_Static_assert(offsetof(struct shmbus_partition, head) % SHMBUS_CACHE_LINE == 0, "head alone");
_Static_assert(offsetof(struct shmbus_partition, groups) % SHMBUS_CACHE_LINE == 0, "groups aligned");
_Static_assert(offsetof(struct shmbus_meta, wake) % SHMBUS_CACHE_LINE == 0, "wake alone");
_Static_assert(sizeof(struct shmbus_dedup_bucket) == 4 * SHMBUS_CACHE_LINE, "a bucket fills its lines");
_Static_assert(offsetof(struct shmbus_partition, tail) == 2 * SHMBUS_CACHE_LINE, "header before tail");
_Static_assert(sizeof(struct shmbus_partition) % SHMBUS_CACHE_LINE == 0, "partition header size");
_Static_assert(sizeof(struct shmbus_meta) % SHMBUS_CACHE_LINE == 0, "meta size");
_Static_assert(SHMBUS_MAX_GROUPS <= 64, "group masks are 64 bits");
_Static_assert(SHMBUS_MAX_KEY_SIZE < 65536, "key_len is 16 bits");

#endif
