/* The C core without Python: a shmbus topic in anonymous shared memory.
 *
 *   c_ring_floor two SIZE COUNT   the parent sends COUNT messages of SIZE bytes, a
 *                                 forked child polls, copies out and checks each one
 *   c_ring_floor one SIZE COUNT   one thread: send, then poll and copy out
 *
 * Prints "ns_per_message messages_per_s bytes_per_s bad".  Every message carries its
 * sequence number in its first and last 8 bytes.  Nothing is named, so nothing is
 * left behind: the segments are MAP_SHARED|MAP_ANONYMOUS, the lock files O_TMPFILE. */
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

#define SPIN_NS 50000
#define WAIT_NS 1000000000LL

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fail(const char *what, long code)
{
    fprintf(stderr, "c_ring_floor: %s (%ld)\n", what, code);
    exit(1);
}

static uint64_t pow2_at_least(uint64_t v)
{
    uint64_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static int lock_file(void)
{
    int fd = open("/dev/shm", O_TMPFILE | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, 4096) < 0)
        fail("O_TMPFILE in /dev/shm", fd);
    return fd;
}

/* Every producer and member locks its own open file description of the metadata file
 * (how the others see it alive): a new one of the same unnamed file. */
static int reopen(int fd)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int again = open(path, O_RDWR);
    if (again < 0)
        fail("reopen the metadata file", fd);
    return again;
}

static void *shared(size_t size)
{
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED)
        fail("mmap", 0);
    return m;
}

struct ring {
    shmbus_topic *topic;
    void *part;
    int meta_fd;
};

static struct ring make_ring(uint64_t size)
{
    uint64_t depth = 64ULL << 20;
    depth = depth / size < 1024 ? depth / size : 1024;
    uint64_t slots = pow2_at_least(depth);
    uint64_t cap = pow2_at_least(depth * size);
    if (cap < 65536)
        cap = 65536;
    size_t msize = shmbus_meta_size(), psize = shmbus_partition_size(cap, slots, 0);
    struct ring r = {.meta_fd = lock_file()};
    void *meta = shared(msize);
    r.part = shared(psize);
    struct shmbus_topic_info info = {.partitions = 1, .on_full = SHMBUS_ON_FULL_BLOCK,
                                     .capacity = cap, .slot_count = slots,
                                     .max_message_size = size};
    int err = shmbus_partition_init(r.part, psize, 0, cap, slots, 0);
    if (err < 0)
        fail("partition_init", err);
    if ((err = shmbus_meta_init(meta, msize, &info)) < 0)
        fail("meta_init", err);
    void *parts[1] = {r.part};
    uint64_t sizes[1] = {psize};
    r.topic = shmbus_topic_attach(meta, msize, r.meta_fd, parts, sizes, 1, 1000000000, &err);
    if (!r.topic)
        fail("topic_attach", err);
    return r;
}

static shmbus_consumer *consumer(struct ring *r)
{
    struct shmbus_group_options group = {.flags = SHMBUS_GROUP_TETHERED,
                                         .start = SHMBUS_START_EARLIEST};
    int err;
    shmbus_consumer *c = shmbus_consumer_open(r->topic, reopen(r->meta_fd), getpid(), 0, &group, &err);
    if (!c)
        fail("consumer_open", err);
    return c;
}

static shmbus_producer *producer(struct ring *r)
{
    int err;
    shmbus_producer *p = shmbus_producer_open(r->topic, reopen(r->meta_fd), getpid(), 0, &err);
    if (!p)
        fail("producer_open", err);
    return p;
}

static void stamp(char *msg, uint64_t size, uint64_t seq)
{
    memcpy(msg, &seq, 8);
    memcpy(msg + size - 8, &seq, 8);
}

static void send_one(shmbus_producer *p, const char *msg, uint64_t size)
{
    int64_t rc;
    while ((rc = shmbus_send_value(p, 0, msg, size)) == SHMBUS_FULL)
        shmbus_wait_space(p, 0, size, WAIT_NS, SPIN_NS);
    if (rc < 0)
        fail("send", rc);
}

/* Polls one message (waiting as the library does: spin, then futex), copies it out
 * and returns 1 if it is not the message `seq`. */
static int take(shmbus_consumer *c, struct ring *r, char *got, uint64_t size, uint64_t seq)
{
    uint64_t d[SHMBUS_DELIVERY_FIELDS];
    int rc, waits = 0;
    while ((rc = shmbus_poll(c, d)) == 0 || rc == SHMBUS_EMPTY)
        if (shmbus_wait(c, WAIT_NS, SPIN_NS) == SHMBUS_TIMEOUT && ++waits == 10)
            fail("no message for 10 s", (long)seq);
    if (rc < 0)
        fail("poll", rc);
    uint64_t len = d[SHMBUS_D_VALUE_LEN];
    memcpy(got, (char *)r->part + d[SHMBUS_D_VALUE_AT], len);
    uint64_t first, last;
    memcpy(&first, got, 8);
    memcpy(&last, got + size - 8, 8);
    return len != size || first != seq || last != seq;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        fail("usage: c_ring_floor two|one SIZE COUNT", argc);
    int two = !strcmp(argv[1], "two");
    uint64_t size = strtoull(argv[2], NULL, 10), n = strtoull(argv[3], NULL, 10);
    if (size < 16)
        fail("SIZE must be at least 16", (long)size);
    struct ring r = make_ring(size);
    char *msg = calloc(1, size), *got = calloc(1, size);
    uint64_t bad = 0;
    double elapsed;

    if (!two) {
        shmbus_consumer *c = consumer(&r);
        shmbus_producer *p = producer(&r);
        double t0 = now();
        for (uint64_t i = 0; i < n; i++) {
            stamp(msg, size, i);
            send_one(p, msg, size);
            bad += take(c, &r, got, size, i);
        }
        elapsed = now() - t0;
    } else {
        int ready[2], done[2];
        if (pipe(ready) < 0 || pipe(done) < 0)
            fail("pipe", 0);
        pid_t child = fork();
        if (child < 0)
            fail("fork", 0);
        if (child == 0) {
            close(ready[0]);
            close(done[0]);
            shmbus_consumer *c = consumer(&r);
            char one = 1;
            if (write(ready[1], &one, 1) != 1)
                _exit(1);
            for (uint64_t i = 0; i < n; i++)
                bad += take(c, &r, got, size, i);
            double report[2] = {now(), (double)bad};
            _exit(write(done[1], report, sizeof report) == sizeof report ? 0 : 1);
        }
        close(ready[1]);
        close(done[1]);
        char one;
        if (read(ready[0], &one, 1) != 1)
            fail("child never got ready", 0);
        shmbus_producer *p = producer(&r);
        double t0 = now();
        for (uint64_t i = 0; i < n; i++) {
            stamp(msg, size, i);
            send_one(p, msg, size);
        }
        double report[2];
        if (read(done[0], report, sizeof report) != sizeof report) {
            kill(child, SIGKILL);
            fail("child failed", 0);
        }
        int status;
        waitpid(child, &status, 0);
        elapsed = report[0] - t0;
        bad = (uint64_t)report[1];
    }
    printf("%.2f %.0f %.0f %llu\n", elapsed / n * 1e9, n / elapsed, n * (double)size / elapsed,
           (unsigned long long)bad);
    return bad != 0;
}
