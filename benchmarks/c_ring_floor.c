/* What the C core does without Python: one process, send then poll, 64 B. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <time.h>
#include "shmbus.h"

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv)
{
    uint64_t cap = 1 << 24, slots = 1 << 16;
    size_t msize = shmbus_meta_size(), psize = shmbus_partition_size(cap, slots);
    int fd = open("/dev/shm", O_TMPFILE | O_RDWR, 0600);
    ftruncate(fd, 4096);
    void *meta = mmap(NULL, msize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    void *part = mmap(NULL, psize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct shmbus_topic_info info = {.partitions = 1, .capacity = cap, .slot_count = slots, .max_message_size = 65536};
    shmbus_partition_init(part, psize, 0, cap, slots);
    shmbus_meta_init(meta, msize, &info);
    int err;
    void *parts[1] = {part};
    uint64_t sizes[1] = {psize};
    shmbus_topic *t = shmbus_topic_attach(meta, msize, fd, parts, sizes, 1, 1000000000, &err);
    struct shmbus_group_options group = {.flags = SHMBUS_GROUP_TETHERED, .start = SHMBUS_START_LATEST};
    shmbus_consumer *c = shmbus_consumer_open(t, fd, getpid(), 0, &group, &err);
    int fd2 = open("/dev/shm", O_TMPFILE | O_RDWR, 0600);
    shmbus_producer *p = shmbus_producer_open(t, fd2, getpid(), 0, &err);
    char msg[64] = {0}, got[64];
    uint64_t d[SHMBUS_DELIVERY_FIELDS];
    long n = 10000000;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        memcpy(msg, &i, 8);
        if (shmbus_send(p, 0, msg, 64, NULL, 0, NULL, 0) < 0) { printf("send failed\n"); return 1; }
        if (shmbus_poll(c, d) != 1) { printf("poll failed\n"); return 1; }
        memcpy(got, (char *)part + d[SHMBUS_D_VALUE_AT], 64);
        if (memcmp(got, &i, 8)) { printf("bad\n"); return 1; }
    }
    double el = now() - t0;
    printf("send+poll 64 B, one thread: %.1f ns per message, %.2f M msgs/s\n", el / n * 1e9, n / el / 1e6);
    return 0;
}
