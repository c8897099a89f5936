/* What the C core's tests share: CHECK, a one-partition topic in anonymous
 * shared memory with a producer and a consumer, and a filler of known bytes. */
#ifndef SHMBUS_TEST_FIXTURE_H
#define SHMBUS_TEST_FIXTURE_H
/* msg_ids each test partition remembers */
#define FIXTURE_DEDUP 64
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"
#include "shmbus_layout.h"

static int failures;
#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__,  \
                    __func__, #cond);                                             \
            failures++;                                                           \
            return;                                                               \
        }                                                                         \
    } while (0)

struct fixture {
    void *meta, *part;
    uint64_t meta_size, part_size;
    char path[64];
    int meta_fd, producer_fd, consumer_fd;
    shmbus_topic *topic;
    shmbus_producer *producer;
    shmbus_consumer *consumer;
};

static void *shared(uint64_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Lock bytes live in a small file opened once per handle, as the Python layer
 * opens the metadata segment once per handle: another_fd opens it again. */
static int another_fd(struct fixture *f)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", f->meta_fd);
    return open(path, O_RDWR);
}

/* flags: SHMBUS_TOPIC_* of the topic (checksums, as on disk); fsync: SHMBUS_FSYNC_*. */
static int setup_with(struct fixture *f, uint64_t capacity, uint64_t slots, int64_t liveness_ns,
                      uint32_t flags, uint32_t fsync)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "/dev/shm/shmbus-ring-test-%d", getpid());
    f->meta_fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    f->producer_fd = open(f->path, O_RDWR);
    f->consumer_fd = open(f->path, O_RDWR);
    unlink(f->path);
    f->meta_size = shmbus_meta_size();
    f->part_size = shmbus_partition_size(capacity, slots, FIXTURE_DEDUP);
    f->meta = shared(f->meta_size);
    f->part = shared(f->part_size);
    struct shmbus_topic_info info = {.partitions = 1, .capacity = capacity, .slot_count = slots,
                                     .max_message_size = capacity, .flags = flags,
                                     .fsync = fsync, .dedup_capacity = FIXTURE_DEDUP,
                                     .dedup_window_ns = 600000000000ULL};
    if (shmbus_partition_init(f->part, f->part_size, 0, capacity, slots, FIXTURE_DEDUP) ||
        shmbus_meta_init(f->meta, f->meta_size, &info))
        return -1;
    int err;
    void *parts[1] = {f->part};
    uint64_t sizes[1] = {f->part_size};
    f->topic = shmbus_topic_attach(f->meta, f->meta_size, f->meta_fd, parts, sizes, 1, liveness_ns, &err);
    if (!f->topic)
        return err;
    struct shmbus_group_options group = {.flags = SHMBUS_GROUP_TETHERED, .start = SHMBUS_START_LATEST};
    f->consumer = shmbus_consumer_open(f->topic, f->consumer_fd, getpid(), 0, &group, &err);
    f->producer = shmbus_producer_open(f->topic, f->producer_fd, getpid(), 0, &err);
    return f->consumer && f->producer ? 0 : -1;
}

static int setup(struct fixture *f, uint64_t capacity, uint64_t slots, int64_t liveness_ns)
{
    return setup_with(f, capacity, slots, liveness_ns, 0, SHMBUS_FSYNC_NEVER);
}

static void teardown(struct fixture *f)
{
    shmbus_producer_close(f->producer);
    shmbus_consumer_close(f->consumer);
    shmbus_topic_detach(f->topic);
    munmap(f->meta, f->meta_size);
    munmap(f->part, f->part_size);
    close(f->meta_fd);
    close(f->producer_fd);
    close(f->consumer_fd);
}

static void fill(char *buf, uint64_t n, uint64_t seed)
{
    for (uint64_t i = 0; i < n; i++)
        buf[i] = (char)(seed * 131 + i * 7);
}

#endif
