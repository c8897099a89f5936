/* The C core's public interface.  cffi reads this file as its cdef (lines that
 * start with '#' are dropped for it), so it keeps to plain declarations.
 * Results are small negative codes; nothing crosses the boundary as an exception. */
#ifndef SHMBUS_H
#define SHMBUS_H
#include <stddef.h>
#include <stdint.h>

enum shmbus_result {
    SHMBUS_OK = 0,
    SHMBUS_EMPTY = -1,       /* nothing to read now */
    SHMBUS_FULL = -2,        /* no room for the record now */
    SHMBUS_TIMEOUT = -3,
    SHMBUS_INTERRUPTED = -4, /* a signal arrived during a wait */
    SHMBUS_ECORRUPT = -5,    /* a segment failed validation */
    SHMBUS_ETOOLARGE = -6,
    SHMBUS_EVERSION = -7,    /* another layout version */
    SHMBUS_ENOTREADY = -8,   /* creation not finished (version still 0) */
    SHMBUS_ENOSLOT = -9,     /* no free producer, member or group entry */
    SHMBUS_EINVAL = -10,
    SHMBUS_ESYS = -11,       /* a system call failed; errno says why */
    SHMBUS_ECONFIG = -12,    /* the group exists with another configuration */
    SHMBUS_EBUSY = -13,      /* the group table stayed locked past the wait */
    SHMBUS_EMEMBERS = -14,   /* the group has live members */
    SHMBUS_SPILLED = -15,    /* on_full=spill: the record went to the spill file */
    SHMBUS_ESYNC = -16,      /* published, but the sync the topic's fsync asks for failed
                              * (errno says why; shmbus_producer_unsynced what was published) */
    SHMBUS_DUPLICATE = -17   /* the msg_id was sent within the dedup window: not published */
};

enum shmbus_limits {
    SHMBUS_LAYOUT_VERSION = 5,
    SHMBUS_MAX_NAME = 100,
    SHMBUS_MAX_KEY_SIZE = 1024,
    SHMBUS_MAX_HEADERS_SIZE = 16384,
    SHMBUS_MAX_PARTITIONS = 1024,
    SHMBUS_MAX_PRODUCERS = 128,
    SHMBUS_MAX_MEMBERS = 128,
    SHMBUS_MAX_GROUPS = 64,
    SHMBUS_MAX_DELIVERIES = 4095, /* a delivery count has 12 bits */
    SHMBUS_MAX_DELAY_S = 31536000, /* ack timeouts and nack delays: a year at most */
    SHMBUS_MAX_PATH = 1024, /* bytes of a spill directory's path, its final 0 included */
    SHMBUS_MAX_DEDUP_CAPACITY = 16777216 /* msg_ids a partition remembers, at most */
};

enum shmbus_on_full {
    SHMBUS_ON_FULL_BLOCK = 0,
    SHMBUS_ON_FULL_DROP_NEWEST = 1,
    SHMBUS_ON_FULL_DROP_OLDEST = 2,
    SHMBUS_ON_FULL_SPILL = 3,
    SHMBUS_ON_FULL_ERROR = 4
};

enum shmbus_retention { SHMBUS_RETENTION_CONSUMED = 0, SHMBUS_RETENTION_LOG = 1 };
enum shmbus_fsync { SHMBUS_FSYNC_NEVER = 0, SHMBUS_FSYNC_BATCH = 1, SHMBUS_FSYNC_ALWAYS = 2 };
/* Topic flags: records carry checksums (topics of disk buses). */
enum shmbus_topic_flags { SHMBUS_TOPIC_CHECKSUMS = 1 };
/* fsync=batch: a send syncs its partition when the last sync is older than this. */
enum shmbus_sync { SHMBUS_SYNC_INTERVAL_MS = 100 };
enum shmbus_start { SHMBUS_START_EARLIEST = 0, SHMBUS_START_LATEST = 1, SHMBUS_START_COMMITTED = 2 };
enum shmbus_group_flags { SHMBUS_GROUP_PRIVATE = 1, SHMBUS_GROUP_TETHERED = 2 };
enum shmbus_ack { SHMBUS_ACK_AUTO = 0, SHMBUS_ACK_MANUAL = 1 };
enum shmbus_ordering { SHMBUS_ORDERING_PARTITION = 0, SHMBUS_ORDERING_NONE = 1 };
/* Why a delivery failed, last: named in a dead letter's headers. */
enum shmbus_reason {
    SHMBUS_REASON_NONE = 0,
    SHMBUS_REASON_NACK = 1,
    SHMBUS_REASON_ACK_TIMEOUT = 2,
    SHMBUS_REASON_MEMBER_LEFT = 3 /* its member closed or died holding it */
};
/* SHMBUS_D_FLAGS: the delivery is a dead letter to pass on (then call
 * shmbus_dead_lettered); the reason of its last failure; and whether the ring
 * may overwrite the record before it is released (untethered, drop_oldest, a
 * replay below what the group holds): its bytes must be checked after a copy. */
enum shmbus_delivery_flags {
    SHMBUS_DF_DEAD_LETTER = 1,
    SHMBUS_DF_REASON_SHIFT = 1,
    SHMBUS_DF_UNKEPT = 8
};

/* How a consumer joins: name_len 0 means a private group. */
struct shmbus_group_options {
    const char *name;
    uint32_t name_len;
    uint32_t flags;          /* SHMBUS_GROUP_TETHERED */
    uint32_t start;          /* a new group starts here */
    uint32_t ack;
    uint32_t ordering;
    uint32_t max_deliveries; /* 0: no limit */
    int64_t ack_timeout_ns;
};

/* What poll hands back per message: SHMBUS_DELIVERY_FIELDS words each. */
enum shmbus_delivery_field {
    SHMBUS_D_PARTITION = 0,
    SHMBUS_D_OFFSET = 1,
    SHMBUS_D_VALUE_AT = 2,    /* byte offset of the value within the partition segment */
    SHMBUS_D_VALUE_LEN = 3,
    SHMBUS_D_KEY_LEN = 4,     /* key follows the value, then the headers */
    SHMBUS_D_HEADERS_LEN = 5,
    SHMBUS_D_TIMESTAMP = 6,
    SHMBUS_D_POSITION = 7,    /* ring position of the record, to check it is still there */
    SHMBUS_D_KEYED = 8,       /* 1 when the record has a key (perhaps empty) */
    SHMBUS_D_DELIVERY_COUNT = 9,
    SHMBUS_D_FLAGS = 10,      /* enum shmbus_delivery_flags */
    SHMBUS_D_LOST = 11,       /* messages the group lost just before this one */
    SHMBUS_DELIVERY_FIELDS = 12
};

/* A copy of a topic's configuration, for callers. */
struct shmbus_topic_info {
    uint32_t partitions;
    uint32_t on_full;
    uint32_t retention;
    uint32_t fsync;
    uint64_t capacity;
    uint64_t slot_count;
    uint64_t max_messages; /* records a partition holds at most (<= slot_count) */
    uint64_t max_message_size;
    uint64_t retention_bytes;
    uint64_t retention_ns;
    uint64_t dedup_window_ns;
    uint64_t dedup_capacity; /* msg_ids a partition remembers; 0: msg_ids are refused */
    uint32_t mode;
    uint32_t layout_version;
    uint64_t created_ns;
    uint32_t flags;
    uint64_t spill_bytes;
    char spill_dir[1024]; /* SHMBUS_MAX_PATH */
};

/* Per-partition figures, read without locks. */
struct shmbus_partition_stats {
    uint64_t head_offset;
    uint64_t tail_offset;
    uint64_t head_position;
    uint64_t tail_position;
    uint64_t dropped_full;
    uint64_t recovered_claims;
    uint64_t blocked_sends;
    uint64_t dropped_oldest;
    uint64_t discarded;
    uint64_t spilled;       /* records that went through the spill file */
    uint64_t spill_waiting; /* records in the spill file, not yet back in the ring */
    uint64_t spill_bytes;   /* bytes of those */
    uint64_t spill_lost;    /* records the spill file no longer held intact, dropped */
    uint64_t duplicates;    /* sends whose msg_id was seen within the dedup window */
    uint64_t dedup_evicted; /* msg_ids forgotten within the window, for want of room */
};

/* A group as its record says, for callers. */
struct shmbus_group_info {
    uint32_t state;
    uint32_t flags;
    uint32_t ack;
    uint32_t ordering;
    uint32_t max_deliveries;
    uint32_t members; /* live members now */
    uint64_t ack_timeout_ns;
    uint64_t created_ns;
    uint32_t name_len;
    char name[104];
    uint32_t entry; /* the group's entry in the topic's table */
};

/* One group in one partition, read without locks. */
struct shmbus_group_stats {
    uint64_t cursor;
    uint64_t committed_offset;
    uint64_t delivered;
    uint64_t acked;
    uint64_t redelivered;
    uint64_t dead_lettered;
    uint64_t lost;
    uint64_t recovered_deliveries;
    uint64_t recovered_owners;
    uint64_t pending; /* handed out or waiting to go again, not yet done */
    int64_t owner;    /* ordering=partition: the owning member entry, or -1 */
};

typedef struct shmbus_topic shmbus_topic;
typedef struct shmbus_producer shmbus_producer;
typedef struct shmbus_consumer shmbus_consumer;

/* Segments */
uint64_t shmbus_bus_size(void);
int shmbus_bus_init(void *mem, uint64_t size);
int shmbus_bus_check(const void *mem, uint64_t size);
uint64_t shmbus_meta_size(void);
uint64_t shmbus_partition_size(uint64_t capacity, uint64_t slot_count, uint64_t dedup_capacity);
int shmbus_meta_init(void *mem, uint64_t size, const struct shmbus_topic_info *config);
int shmbus_partition_init(void *mem, uint64_t size, uint32_t index, uint64_t capacity,
                          uint64_t slot_count, uint64_t dedup_capacity);
int shmbus_meta_read(const void *mem, uint64_t size, struct shmbus_topic_info *out);
/* Creating a topic: its creator holds a lock byte of the metadata segment from
 * making the file (create_begin, 1 when taken) until the version is written
 * (create_end).  An opener that finds no version asks creator_gone: 1 when
 * nobody holds the byte (the creator died; the byte is now the caller's, until
 * create_end or closing the file), 0 while the creator lives. */
int shmbus_create_begin(int meta_fd);
void shmbus_create_end(int meta_fd);
int shmbus_creator_gone(int meta_fd);
uint32_t shmbus_segment_version(const void *mem, uint64_t size);
/* When the segment was made (CLOCK_REALTIME ns; 0 if the header is short). */
uint64_t shmbus_segment_created(const void *mem, uint64_t size);
uint64_t shmbus_segment_header_size(void);

/* Topics: attach validates every segment; partitions[i] has sizes[i] bytes. */
shmbus_topic *shmbus_topic_attach(void *meta, uint64_t meta_size, int meta_fd,
                                  void **partitions, const uint64_t *sizes,
                                  uint32_t count, int64_t liveness_ns, int *err);
void shmbus_topic_detach(shmbus_topic *topic);

/* What one recovery sweep did. */
struct shmbus_sweep_result {
    uint64_t claims;     /* dead producers' claims turned into padding */
    uint64_t deliveries; /* dead members' deliveries released (to go again, or done) */
    uint64_t owners;     /* dead members' partition ownerships released */
    uint64_t groups;     /* private groups of dead consumers, and half-made groups, ended */
    uint64_t sweeps;     /* sweeps of this topic run to their end, this one included */
};
/* The recovery sweep: finds what dead processes left in the topic and puts it
 * right, counting each recovery in the shared counters.  Every step is one
 * compare-and-swap that only a dead process's state allows, so sweeps may run
 * at once (each recovery happens, and is counted, once) and a sweep that dies
 * midway leaves nothing half done.  lock_fd: an open file description of the
 * metadata segment that this call may lock (the group table's byte). */
int shmbus_topic_sweep(shmbus_topic *topic, int lock_fd, struct shmbus_sweep_result *out);
/* The topic-wide sweep counters (claims and deliveries are counted per
 * partition and group): sweeps and groups only. */
void shmbus_sweep_counters(shmbus_topic *topic, struct shmbus_sweep_result *out);
int shmbus_partition_stats(shmbus_topic *topic, uint32_t partition,
                           struct shmbus_partition_stats *out);
void shmbus_wake_consumers(shmbus_topic *topic);

/* Disk topics.  set_files gives the partitions' file descriptors, for syncs.
 * The first process to map a disk topic holds its open lock exclusively
 * (open_exclusive: 1 taken, 0 another process has the topic open) and recovers
 * every partition while nobody else can attach, then holds it shared
 * (open_recovered); everyone else holds it shared (open_shared: SHMBUS_EBUSY if
 * a recovery outlasts timeout_ns; 1 if the one recovering died or gave up, and
 * the exclusive lock is now the caller's, to recover).  recover
 * returns how many records of an incomplete tail it dropped, or SHMBUS_ECORRUPT
 * with *bad_offset the first damaged record that later good records follow. */
int shmbus_topic_set_files(shmbus_topic *topic, const int *fds, uint32_t count);
int shmbus_open_exclusive(int meta_fd);
int shmbus_open_shared(int meta_fd, int64_t timeout_ns);
int shmbus_open_recovered(int meta_fd);
/* 1 when some process holds the segment's open lock (has the bus or topic
 * open), 0 when none does; changes nothing. */
int shmbus_open_held(int fd);
int64_t shmbus_recover(shmbus_topic *topic, uint32_t partition, uint64_t *bad_offset);
/* CRC-32C, as records' checksums use it (continuing from crc; 0 to start). */
uint32_t shmbus_crc32c(uint32_t crc, const void *data, size_t n);

/* Producers */
shmbus_producer *shmbus_producer_open(shmbus_topic *topic, int lock_fd, uint32_t pid,
                                      uint64_t start_time, int *err);
void shmbus_producer_close(shmbus_producer *producer);
int64_t shmbus_send(shmbus_producer *producer, uint32_t partition,
                    const char *value, uint64_t value_len,
                    const char *key, uint32_t key_len,
                    const char *headers, uint32_t headers_len);
/* shmbus_send without key or headers: fewer arguments to convert per call */
int64_t shmbus_send_value(shmbus_producer *producer, uint32_t partition,
                          const char *value, uint64_t value_len);
int64_t shmbus_send_batch(shmbus_producer *producer, uint32_t partition,
                          const char *values, const uint64_t *lengths, uint32_t count,
                          const char *key, uint32_t key_len, uint32_t *accepted);
/* A send with a msg_id (id_len bytes, hashed): the new record's offset; or
 * SHMBUS_DUPLICATE when the id was sent to this partition within the topic's
 * dedup window, *first then the offset of the record that carried it (counted,
 * nothing published); SHMBUS_FULL, SHMBUS_EINVAL (the topic keeps no msg_ids,
 * or spills) and the rest as shmbus_send. */
int64_t shmbus_send_once(shmbus_producer *producer, uint32_t partition,
                         const char *value, uint64_t value_len,
                         const char *key, uint32_t key_len,
                         const char *headers, uint32_t headers_len,
                         const char *id, uint32_t id_len, uint64_t *first);
int shmbus_wait_space(shmbus_producer *producer, uint32_t partition, uint64_t record_bytes,
                      int64_t timeout_ns, int64_t spin_ns);
void shmbus_count_drop(shmbus_producer *producer, uint32_t partition, uint64_t count);
/* on_full=spill.  set_spill gives the partitions' spill files.  spill_send is
 * what a send does when the ring is full or the spill holds records: under the
 * partition's spill lock (waited for up to lock_timeout_ns, then SHMBUS_EBUSY)
 * it moves what fits from the spill into the ring, then writes the record to
 * the ring if nothing waits and it fits (its offset), or appends it to the
 * spill (SHMBUS_SPILLED; SHMBUS_FULL past the topic's spill_bytes).  drain
 * moves what fits, if the lock is free (how many); spill_waiting counts the
 * records a partition's spill holds. */
int shmbus_topic_set_spill(shmbus_topic *topic, const int *fds, uint32_t count);
int64_t shmbus_spill_send(shmbus_producer *producer, uint32_t partition,
                          const char *value, uint64_t value_len,
                          const char *key, uint32_t key_len,
                          const char *headers, uint32_t headers_len, int64_t lock_timeout_ns);
int shmbus_spill_drain(shmbus_producer *producer, uint32_t partition);
uint64_t shmbus_spill_waiting(shmbus_topic *topic, uint32_t partition);
/* Disk topics: every partition this producer wrote since its last sync goes to
 * disk (fdatasync) now; SHMBUS_ESYS if the system refused. */
int shmbus_producer_sync(shmbus_producer *producer);
int64_t shmbus_producer_unsynced(shmbus_producer *producer);
uint32_t shmbus_partition_for_key(const char *key, uint32_t key_len, uint32_t partitions);

/* Consumers */
shmbus_consumer *shmbus_consumer_open(shmbus_topic *topic, int lock_fd, uint32_t pid,
                                      uint64_t start_time,
                                      const struct shmbus_group_options *options, int *err);
void shmbus_consumer_close(shmbus_consumer *consumer);
int shmbus_poll(shmbus_consumer *consumer, uint64_t *delivery);
int shmbus_poll_batch(shmbus_consumer *consumer, uint64_t *deliveries, uint32_t max);
int shmbus_wait(shmbus_consumer *consumer, int64_t timeout_ns, int64_t spin_ns);
/* poll_batch, and when nothing is there, wait (spin, then sleep) up to timeout_ns
 * and poll again: one call for the whole of a waiting poll. */
int shmbus_poll_wait(shmbus_consumer *consumer, uint64_t *deliveries, uint32_t max,
                     int64_t timeout_ns, int64_t spin_ns);
/* Manual acks, a queue's get in one call: poll_wait for up to max deliveries
 * (fields in delivery), copy the values and keys of the first ones into buf,
 * back to back (each value then its key), while they fit in cap bytes, and
 * acknowledge those.  Returns how many were taken (0 or <0 as poll_wait), and
 * *copied how many of them were copied and acknowledged; the rest (a record
 * that did not fit, a dead letter to pass on, one the ring may overwrite:
 * SHMBUS_DF_UNKEPT, and those after it) are taken and not acknowledged. */
int shmbus_take_copy(shmbus_consumer *consumer, uint64_t *delivery, uint32_t max, char *buf,
                     uint64_t cap, int64_t timeout_ns, int64_t spin_ns, uint32_t *copied);
int shmbus_still_there(shmbus_consumer *consumer, uint32_t partition, uint64_t position,
                       uint64_t length);
uint64_t shmbus_lag(shmbus_consumer *consumer);
/* Replay: the cursor of one partition goes to `offset`, or to the oldest offset
 * the consumer may read if that is later; returns the offset set, or
 * SHMBUS_EINVAL past the published end.  A group that tracks deliveries
 * abandons what it had in flight there and starts its window at the offset;
 * only the member that reads the partition alone may (SHMBUS_EBUSY otherwise).
 * offset_for_time: the first offset stamped at or after ns (the end if none). */
int64_t shmbus_seek(shmbus_consumer *consumer, uint32_t partition, uint64_t offset);
int64_t shmbus_offset_for_time(shmbus_topic *topic, uint32_t partition, int64_t ns);
int64_t shmbus_end_offset(shmbus_topic *topic, uint32_t partition);

/* The group entry this consumer belongs to. */
uint32_t shmbus_consumer_group(shmbus_consumer *consumer);

/* Acknowledgement (tracked groups).  ack: 1 when it completed a delivery this
 * consumer held, 0 when there was none (acked already, or redelivered to another
 * after its deadline).  ack_batch takes (partition, offset) pairs and returns
 * how many it completed.  nack: the delivery goes again after delay_ns (or to
 * the dead letters after max_deliveries); 1 or 0 as for ack. */
int shmbus_ack(shmbus_consumer *consumer, uint32_t partition, uint64_t offset);
int shmbus_ack_batch(shmbus_consumer *consumer, const uint64_t *pairs, uint32_t count);
int shmbus_nack(shmbus_consumer *consumer, uint32_t partition, uint64_t offset, int64_t delay_ns);
/* Fetched deliveries the application never saw go back, undelivered (on close). */
int shmbus_give_back(shmbus_consumer *consumer, const uint64_t *pairs, uint32_t count);
/* A dead letter handed out with SHMBUS_DF_DEAD_LETTER has been passed on (or dropped). */
int shmbus_dead_lettered(shmbus_consumer *consumer, uint32_t partition, uint64_t offset);

/* Removes a named group that has no live member (SHMBUS_EMPTY: no such group);
 * lock_fd is an open file description of the metadata segment, for the group lock. */
int shmbus_group_delete(shmbus_topic *topic, int lock_fd, const char *name, uint32_t name_len);

/* A member entry, as a snapshot sees it. */
struct shmbus_member_stats {
    uint32_t entry;
    uint32_t pid;
    uint64_t start_time;     /* process start, in the kernel's clock ticks */
    uint64_t attached_ns;
    uint64_t last_active_ns; /* its last poll or wait (CLOCK_REALTIME, coarse) */
    uint32_t group;          /* its group's entry, or UINT32_MAX */
    uint32_t alive;
    uint32_t owned;          /* partitions it owns (ordering=partition) */
    uint32_t pending;        /* deliveries it holds now (groups that track them) */
};

/* A producer entry, as a snapshot sees it. */
struct shmbus_producer_stats {
    uint32_t entry;
    uint32_t pid;
    uint64_t start_time;
    uint64_t attached_ns;
};

/* A whole topic at one moment, for monitors.  The caller points the arrays at
 * room for the sizes given; shmbus_topic_snapshot fills them and the counts.
 * Figures are read without locks and never disturb the topic.  They agree with
 * each other: for each partition a group's committed offset and cursor are read
 * before the tail and after the head, so oldest <= committed <= cursor <=
 * published and no lag is negative; counters only grow. */
struct shmbus_snapshot {
    struct shmbus_partition_stats *partitions; /* [the topic's partitions] */
    struct shmbus_group_info *groups;          /* [SHMBUS_MAX_GROUPS] */
    struct shmbus_group_stats *group_partitions; /* [SHMBUS_MAX_GROUPS * partitions]:
                                                  * groups[k] in partition p at k * partitions + p */
    struct shmbus_member_stats *members;       /* [SHMBUS_MAX_MEMBERS]: the live, and the dead
                                                * that left their group without leaving it */
    struct shmbus_producer_stats *producers;   /* [SHMBUS_MAX_PRODUCERS]: the live */
    int64_t taken_ns;  /* CLOCK_REALTIME */
    int64_t monotonic_ns;
    uint32_t partition_count;
    uint32_t group_count;
    uint32_t member_count;
    uint32_t producer_count;
    uint64_t wakeups;  /* futex wakes of sleeping consumers */
    uint64_t sweeps;
    uint64_t recovered_groups;
};
int shmbus_topic_snapshot(shmbus_topic *topic, struct shmbus_snapshot *out);

/* Groups, for monitoring: group_info gives SHMBUS_EMPTY for an entry that is no group. */
int shmbus_group_info(shmbus_topic *topic, uint32_t group, struct shmbus_group_info *out);
int shmbus_group_stats(shmbus_topic *topic, uint32_t group, uint32_t partition,
                       struct shmbus_group_stats *out);

#endif
