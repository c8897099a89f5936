/* Segment sizes, initialisation, validation and attaching a topic. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmbus_atomic.h"
#include "shmbus_fault.h"
#include "shmbus_internal.h"
#include "shmbus_wait.h"

_Static_assert(sizeof(((struct shmbus_topic_info *)0)->spill_dir) == SHMBUS_MAX_PATH, "spill_dir");

static int is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

static uint64_t align_line(uint64_t v)
{
    return (v + SHMBUS_CACHE_LINE - 1) & ~(uint64_t)(SHMBUS_CACHE_LINE - 1);
}

uint64_t shmbus_meta_size(void) { return sizeof(struct shmbus_meta); }
uint64_t shmbus_bus_size(void) { return sizeof(struct shmbus_bus); }

static int geometry_ok(uint64_t capacity, uint64_t slot_count)
{
    return is_pow2(capacity) && is_pow2(slot_count) && capacity >= 64 &&
           capacity <= (1ULL << 40) && slot_count >= 2 && slot_count <= (1ULL << 32);
}

static uint64_t pending_window(uint64_t slot_count)
{
    return slot_count < SHMBUS_PENDING_WINDOW ? slot_count : SHMBUS_PENDING_WINDOW;
}

static uint64_t pending_bytes(uint64_t slot_count)
{
    return (uint64_t)SHMBUS_MAX_GROUPS * pending_window(slot_count) * sizeof(struct shmbus_pending);
}

/* Buckets enough for dedup_capacity ids, a power of two (0: no table). */
static uint64_t dedup_buckets(uint64_t dedup_capacity)
{
    uint64_t want = (dedup_capacity + SHMBUS_DEDUP_WAYS - 1) / SHMBUS_DEDUP_WAYS, n = 1;
    if (dedup_capacity == 0)
        return 0;
    while (n < want)
        n <<= 1;
    return n;
}

static int dedup_ok(uint64_t dedup_capacity) { return dedup_capacity <= SHMBUS_MAX_DEDUP_CAPACITY; }

uint64_t shmbus_partition_size(uint64_t capacity, uint64_t slot_count, uint64_t dedup_capacity)
{
    if (!geometry_ok(capacity, slot_count) || !dedup_ok(dedup_capacity))
        return 0;
    return align_line(sizeof(struct shmbus_partition)) + slot_count * sizeof(struct shmbus_slot) +
           pending_bytes(slot_count) + dedup_buckets(dedup_capacity) * sizeof(struct shmbus_dedup_bucket) +
           capacity;
}

static void header_init(struct shmbus_segment_header *h, uint64_t magic, uint32_t kind,
                        uint64_t size)
{
    h->magic = magic;
    h->kind = kind;
    h->segment_size = size;
    h->created_ns = (uint64_t)shmbus_now_realtime();
    h->creator_pid = (uint32_t)getpid();
}

/* The segment is fresh (zero-filled by the kernel); the version goes in last,
 * with release, so an opener that sees it also sees everything before it. */
int shmbus_meta_init(void *mem, uint64_t size, const struct shmbus_topic_info *c)
{
    struct shmbus_meta *m = mem;
    if (size < sizeof *m || c->partitions == 0 || c->partitions > SHMBUS_MAX_PARTITIONS ||
        !geometry_ok(c->capacity, c->slot_count) || c->max_message_size == 0 ||
        c->max_message_size > c->capacity || c->max_messages > c->slot_count ||
        !dedup_ok(c->dedup_capacity))
        return SHMBUS_EINVAL;
    header_init(&m->header, SHMBUS_MAGIC_META, SHMBUS_KIND_META, size);
    m->config.partitions = c->partitions;
    m->config.on_full = c->on_full;
    m->config.retention = c->retention;
    m->config.fsync = c->fsync;
    m->config.capacity = c->capacity;
    m->config.slot_count = c->slot_count;
    m->config.max_messages = c->max_messages ? c->max_messages : c->slot_count;
    m->config.max_message_size = c->max_message_size;
    m->config.retention_bytes = c->retention_bytes;
    m->config.retention_ns = c->retention_ns;
    m->config.dedup_window_ns = c->dedup_window_ns;
    m->config.dedup_capacity = c->dedup_capacity;
    m->config.mode = c->mode;
    m->config.flags = c->flags;
    m->config.spill_bytes = c->spill_bytes;
    memcpy(m->spill_dir, c->spill_dir, SHMBUS_MAX_PATH);
    m->spill_dir[SHMBUS_MAX_PATH - 1] = 0;
    shmbus_fault_load();
    FAULT_POINT(SHMBUS_FAULT_CREATE);
    store_release(&m->header.layout_version, (uint32_t)SHMBUS_LAYOUT_VERSION);
    return SHMBUS_OK;
}

int shmbus_partition_init(void *mem, uint64_t size, uint32_t index, uint64_t capacity,
                          uint64_t slot_count, uint64_t dedup_capacity)
{
    struct shmbus_partition *p = mem;
    uint64_t need = shmbus_partition_size(capacity, slot_count, dedup_capacity);
    if (need == 0 || size < need)
        return SHMBUS_EINVAL;
    header_init(&p->header, SHMBUS_MAGIC_PARTITION, SHMBUS_KIND_PARTITION, size);
    p->index = index;
    p->capacity = capacity;
    p->slot_count = slot_count;
    p->slots_offset = align_line(sizeof(struct shmbus_partition));
    p->pending_offset = p->slots_offset + slot_count * sizeof(struct shmbus_slot);
    p->pending_window = pending_window(slot_count);
    p->dedup_offset = p->pending_offset + pending_bytes(slot_count);
    p->dedup_buckets = dedup_buckets(dedup_capacity);
    p->data_offset = p->dedup_offset + p->dedup_buckets * sizeof(struct shmbus_dedup_bucket);
    for (uint32_t i = 0; i < SHMBUS_MAX_PRODUCERS; i++)
        p->producers[i].intent = SHMBUS_NO_INTENT;
    store_release(&p->header.layout_version, (uint32_t)SHMBUS_LAYOUT_VERSION);
    return SHMBUS_OK;
}

static int header_check(const struct shmbus_segment_header *h, uint64_t size, uint64_t magic,
                        uint32_t kind)
{
    uint32_t version = load_acquire(&h->layout_version);
    if (version == 0)
        return SHMBUS_ENOTREADY;
    if (h->magic != magic || h->kind != kind)
        return SHMBUS_ECORRUPT;
    if (version != SHMBUS_LAYOUT_VERSION)
        return SHMBUS_EVERSION;
    if (h->segment_size != size)
        return SHMBUS_ECORRUPT;
    return SHMBUS_OK;
}

int shmbus_bus_init(void *mem, uint64_t size)
{
    struct shmbus_bus *b = mem;
    if (size < sizeof *b)
        return SHMBUS_EINVAL;
    header_init(&b->header, SHMBUS_MAGIC_BUS, SHMBUS_KIND_BUS, size);
    store_release(&b->header.layout_version, (uint32_t)SHMBUS_LAYOUT_VERSION);
    return SHMBUS_OK;
}

int shmbus_bus_check(const void *mem, uint64_t size)
{
    if (size < sizeof(struct shmbus_bus))
        return SHMBUS_ECORRUPT;
    return header_check(mem, size, SHMBUS_MAGIC_BUS, SHMBUS_KIND_BUS);
}

uint32_t shmbus_segment_version(const void *mem, uint64_t size)
{
    const struct shmbus_segment_header *h = mem;
    if (size < sizeof *h)
        return 0;
    return load_acquire(&h->layout_version);
}

uint64_t shmbus_segment_created(const void *mem, uint64_t size)
{
    const struct shmbus_segment_header *h = mem;
    return size < sizeof *h ? 0 : h->created_ns;
}

uint64_t shmbus_segment_header_size(void) { return sizeof(struct shmbus_segment_header); }

int shmbus_meta_read(const void *mem, uint64_t size, struct shmbus_topic_info *out)
{
    const struct shmbus_meta *m = mem;
    if (size < sizeof *m)
        return SHMBUS_ECORRUPT;
    int r = header_check(&m->header, size, SHMBUS_MAGIC_META, SHMBUS_KIND_META);
    if (r != SHMBUS_OK)
        return r;
    const struct shmbus_topic_config *c = &m->config;
    if (c->partitions == 0 || c->partitions > SHMBUS_MAX_PARTITIONS ||
        !geometry_ok(c->capacity, c->slot_count) || c->max_message_size == 0 ||
        c->max_message_size > c->capacity || c->max_messages == 0 ||
        c->max_messages > c->slot_count || !dedup_ok(c->dedup_capacity) ||
        c->on_full > SHMBUS_ON_FULL_ERROR ||
        c->retention > SHMBUS_RETENTION_LOG || c->fsync > SHMBUS_FSYNC_ALWAYS ||
        (c->flags & ~(uint32_t)SHMBUS_TOPIC_CHECKSUMS))
        return SHMBUS_ECORRUPT;
    /* a spill topic's files go where its metadata says: an absolute path, ended */
    if (c->on_full == SHMBUS_ON_FULL_SPILL &&
        (m->spill_dir[0] != '/' || !memchr(m->spill_dir, 0, SHMBUS_MAX_PATH)))
        return SHMBUS_ECORRUPT;
    out->partitions = c->partitions;
    out->on_full = c->on_full;
    out->retention = c->retention;
    out->fsync = c->fsync;
    out->capacity = c->capacity;
    out->slot_count = c->slot_count;
    out->max_messages = c->max_messages;
    out->max_message_size = c->max_message_size;
    out->retention_bytes = c->retention_bytes;
    out->retention_ns = c->retention_ns;
    out->dedup_window_ns = c->dedup_window_ns;
    out->dedup_capacity = c->dedup_capacity;
    out->mode = c->mode;
    out->flags = c->flags;
    out->spill_bytes = c->spill_bytes;
    memcpy(out->spill_dir, m->spill_dir, SHMBUS_MAX_PATH);
    out->spill_dir[SHMBUS_MAX_PATH - 1] = 0;
    out->layout_version = m->header.layout_version;
    out->created_ns = m->header.created_ns;
    return SHMBUS_OK;
}

static int partition_check(struct shmbus_partition *p, uint64_t size, uint32_t index,
                           const struct shmbus_topic_config *c)
{
    if (size < sizeof *p)
        return SHMBUS_ECORRUPT;
    int r = header_check(&p->header, size, SHMBUS_MAGIC_PARTITION, SHMBUS_KIND_PARTITION);
    if (r != SHMBUS_OK)
        return r;
    if (p->index != index || p->capacity != c->capacity || p->slot_count != c->slot_count ||
        size != shmbus_partition_size(c->capacity, c->slot_count, c->dedup_capacity) ||
        p->slots_offset != align_line(sizeof *p) ||
        p->pending_offset != p->slots_offset + p->slot_count * sizeof(struct shmbus_slot) ||
        p->pending_window != pending_window(p->slot_count) ||
        p->dedup_offset != p->pending_offset + pending_bytes(p->slot_count) ||
        p->dedup_buckets != dedup_buckets(c->dedup_capacity) ||
        p->data_offset != p->dedup_offset + p->dedup_buckets * sizeof(struct shmbus_dedup_bucket))
        return SHMBUS_ECORRUPT;
    return SHMBUS_OK;
}

shmbus_topic *shmbus_topic_attach(void *meta, uint64_t meta_size, int meta_fd,
                                  void **partitions, const uint64_t *sizes, uint32_t count,
                                  int64_t liveness_ns, int *err)
{
    struct shmbus_topic_info info;
    *err = shmbus_meta_read(meta, meta_size, &info);
    if (*err != SHMBUS_OK)
        return NULL;
    if (count != info.partitions) {
        *err = SHMBUS_ECORRUPT;
        return NULL;
    }
    struct shmbus_meta *m = meta;
    for (uint32_t i = 0; i < count; i++) {
        *err = partition_check(partitions[i], sizes[i], i, &m->config);
        if (*err != SHMBUS_OK)
            return NULL;
    }
    shmbus_topic *t = calloc(1, sizeof *t + count * sizeof(struct shmbus_ring));
    if (!t) {
        *err = SHMBUS_ESYS;
        return NULL;
    }
    t->meta = m;
    t->meta_fd = meta_fd;
    t->liveness_ns = liveness_ns;
    t->count = count;
    t->max_message_size = info.max_message_size;
    t->on_full = info.on_full;
    t->retention = info.retention;
    t->retention_bytes = info.retention_bytes;
    t->retention_ns = (int64_t)info.retention_ns;
    t->fsync = info.fsync;
    t->checksums = (info.flags & SHMBUS_TOPIC_CHECKSUMS) != 0;
    t->spill_bytes = info.spill_bytes;
    t->dedup_window_ns = (int64_t)info.dedup_window_ns;
    t->dedup = info.dedup_capacity > 0;
    for (uint32_t i = 0; i < count; i++) {
        struct shmbus_partition *p = partitions[i];
        struct shmbus_ring *r = &t->rings[i];
        r->p = p;
        r->slots = (struct shmbus_slot *)((unsigned char *)p + p->slots_offset);
        r->data = (unsigned char *)p + p->data_offset;
        r->capacity = p->capacity;
        /* every limit on records counts max_messages; slots are indexed by the mask */
        r->slot_count = info.max_messages;
        r->slot_mask = p->slot_count - 1;
        r->data_offset = p->data_offset;
        r->pending = (struct shmbus_pending *)((unsigned char *)p + p->pending_offset);
        r->window = p->pending_window;
        r->dedup = (struct shmbus_dedup_bucket *)((unsigned char *)p + p->dedup_offset);
        r->dedup_mask = p->dedup_buckets - 1; /* unused when there are none */
        r->fd = -1;
        r->spill_fd = -1;
    }
    *err = SHMBUS_OK;
    return t;
}

void shmbus_topic_detach(shmbus_topic *topic) { free(topic); }

int shmbus_partition_stats(shmbus_topic *t, uint32_t partition, struct shmbus_partition_stats *out)
{
    if (partition >= t->count)
        return SHMBUS_EINVAL;
    struct shmbus_partition *p = t->rings[partition].p;
    struct shmbus_limit held = shmbus_ring_free_point(t, partition);
    struct shmbus_point tail = point_load(&p->tail.tail);
    out->head_offset = held.offset;
    out->head_position = held.position;
    out->tail_offset = tail.offset;
    out->tail_position = tail.position;
    out->dropped_full = load_relaxed(&p->counters.dropped_full);
    out->recovered_claims = load_relaxed(&p->counters.recovered_claims);
    out->blocked_sends = load_relaxed(&p->counters.blocked_sends);
    out->dropped_oldest = load_relaxed(&p->counters.dropped_oldest);
    out->discarded = load_relaxed(&p->counters.discarded);
    struct shmbus_point out_ = point_load(&p->spill.out), in = point_load(&p->spill.in);
    out->spilled = in.offset;
    out->spill_waiting = in.offset - out_.offset;
    out->spill_bytes = in.position - out_.position;
    out->spill_lost = load_relaxed(&p->spill.lost);
    out->duplicates = load_relaxed(&p->counters.duplicates);
    out->dedup_evicted = load_relaxed(&p->counters.dedup_evicted);
    return SHMBUS_OK;
}

int shmbus_topic_set_files(shmbus_topic *t, const int *fds, uint32_t count)
{
    if (count != t->count)
        return SHMBUS_EINVAL;
    for (uint32_t i = 0; i < count; i++)
        t->rings[i].fd = fds[i];
    return SHMBUS_OK;
}
