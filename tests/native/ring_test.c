/* The C core on its own: claim, commit, wrap, batch, full, recovery, validation.
 * Built and run by tests/test_native.py, plain and under ASan + UBSan. */
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
 * opens the metadata segment once per handle. */
static int setup(struct fixture *f, uint64_t capacity, uint64_t slots, int64_t liveness_ns)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "/dev/shm/shmbus-ring-test-%d", getpid());
    f->meta_fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    f->producer_fd = open(f->path, O_RDWR);
    f->consumer_fd = open(f->path, O_RDWR);
    unlink(f->path);
    f->meta_size = shmbus_meta_size();
    f->part_size = shmbus_partition_size(capacity, slots);
    f->meta = shared(f->meta_size);
    f->part = shared(f->part_size);
    struct shmbus_topic_info info = {.partitions = 1, .capacity = capacity, .slot_count = slots,
                                     .max_message_size = capacity};
    if (shmbus_partition_init(f->part, f->part_size, 0, capacity, slots) ||
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

/* Polls one message and checks it is `len` bytes made by fill(seed). */
static int poll_is(struct fixture *f, uint64_t offset, uint64_t len, uint64_t seed)
{
    uint64_t d[SHMBUS_DELIVERY_FIELDS];
    if (shmbus_poll(f->consumer, d) != 1 || d[SHMBUS_D_OFFSET] != offset || d[SHMBUS_D_VALUE_LEN] != len)
        return 0;
    if (d[SHMBUS_D_VALUE_AT] + len > f->part_size)
        return 0;
    char *want = malloc(len ? len : 1);
    fill(want, len, seed);
    int same = memcmp((char *)f->part + d[SHMBUS_D_VALUE_AT], want, len) == 0;
    free(want);
    return same;
}

static void should_deliver_records_in_order_across_many_wraps(void)
{
    struct fixture f;
    CHECK(setup(&f, 4096, 64, 1000000) == 0);
    /* the record last polled stays held until the next poll: two records and a
     * skipped end of ring must fit in 4096 bytes */
    char buf[1000];
    for (uint64_t i = 0; i < 2000; i++) {
        uint64_t len = (i * 37) % sizeof buf;
        fill(buf, len, i);
        CHECK(shmbus_send_value(f.producer, 0, buf, len) == (int64_t)i);
        CHECK(poll_is(&f, i, len, i));
    }
    teardown(&f);
}

static void should_never_let_a_record_straddle_the_end_of_the_ring(void)
{
    struct fixture f;
    CHECK(setup(&f, 4096, 64, 1000000) == 0);
    struct shmbus_partition *p = f.part;
    char buf[1000];
    for (uint64_t i = 0; i < 100; i++) {
        fill(buf, sizeof buf, i);
        CHECK(shmbus_send_value(f.producer, 0, buf, sizeof buf) >= 0);
        uint64_t d[SHMBUS_DELIVERY_FIELDS];
        CHECK(shmbus_poll(f.consumer, d) == 1);
        CHECK(d[SHMBUS_D_VALUE_AT] >= p->data_offset);
        CHECK(d[SHMBUS_D_VALUE_AT] + sizeof buf <= p->data_offset + p->capacity);
    }
    teardown(&f);
}

static void should_take_a_record_of_the_whole_capacity_into_a_drained_ring(void)
{
    struct fixture f;
    CHECK(setup(&f, 4096, 64, 1000000) == 0);
    static char big[4096];
    fill(big, 1500, 1);
    CHECK(shmbus_send_value(f.producer, 0, big, 1500) == 0);
    CHECK(poll_is(&f, 0, 1500, 1));
    uint64_t d[SHMBUS_DELIVERY_FIELDS];
    CHECK(shmbus_poll(f.consumer, d) == 0); /* releases offset 0 */
    fill(big, sizeof big, 2);
    CHECK(shmbus_send_value(f.producer, 0, big, sizeof big) == 1);
    CHECK(poll_is(&f, 1, sizeof big, 2));
    teardown(&f);
}

static void should_report_full_and_keep_every_unread_record(void)
{
    struct fixture f;
    CHECK(setup(&f, 4096, 16, 1000000) == 0);
    char buf[100];
    uint64_t sent = 0;
    for (;;) {
        fill(buf, sizeof buf, sent);
        int64_t r = shmbus_send_value(f.producer, 0, buf, sizeof buf);
        if (r == SHMBUS_FULL)
            break;
        CHECK(r == (int64_t)sent);
        sent++;
    }
    CHECK(sent == 16); /* the index holds 16 records */
    for (uint64_t i = 0; i < sent; i++)
        CHECK(poll_is(&f, i, sizeof buf, i));
    teardown(&f);
}

static void should_send_and_read_a_batch_in_one_call(void)
{
    struct fixture f;
    CHECK(setup(&f, 1 << 16, 1024, 1000000) == 0);
    char values[10 * 300];
    uint64_t lengths[10], at = 0;
    for (uint64_t i = 0; i < 10; i++) {
        lengths[i] = 30 * i;
        fill(values + at, lengths[i], i);
        at += lengths[i];
    }
    uint32_t accepted = 0;
    CHECK(shmbus_send_batch(f.producer, 0, values, lengths, 10, "key", 3, &accepted) == 0);
    CHECK(accepted == 10);
    uint64_t d[10 * SHMBUS_DELIVERY_FIELDS];
    CHECK(shmbus_poll_batch(f.consumer, d, 10) == 10);
    for (uint64_t i = 0; i < 10; i++) {
        uint64_t *m = d + i * SHMBUS_DELIVERY_FIELDS;
        char want[300];
        fill(want, lengths[i], i);
        CHECK(m[SHMBUS_D_OFFSET] == i && m[SHMBUS_D_VALUE_LEN] == lengths[i] && m[SHMBUS_D_KEY_LEN] == 3);
        CHECK(memcmp((char *)f.part + m[SHMBUS_D_VALUE_AT], want, lengths[i]) == 0);
        CHECK(memcmp((char *)f.part + m[SHMBUS_D_VALUE_AT] + lengths[i], "key", 3) == 0);
    }
    teardown(&f);
}

static void should_turn_a_dead_producers_claim_into_padding(void)
{
    struct fixture f;
    CHECK(setup(&f, 4096, 64, 20 * 1000000) == 0); /* liveness 20 ms */
    pid_t child = fork();
    if (child == 0) {
        /* a producer of its own, on a new open file description of the lock file */
        setenv("SHMBUS_FAULT", "after_claim:kill", 1);
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", f.meta_fd);
        int err;
        shmbus_producer *p = shmbus_producer_open(f.topic, open(path, O_RDWR), getpid(), 0, &err);
        if (p)
            shmbus_send_value(p, 0, "doomed", 6);
        _exit(3); /* not reached when the fault point fires */
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    char buf[10];
    fill(buf, sizeof buf, 9);
    CHECK(shmbus_send_value(f.producer, 0, buf, sizeof buf) == 1);
    uint64_t d[SHMBUS_DELIVERY_FIELDS];
    CHECK(shmbus_poll(f.consumer, d) == 0); /* offset 0 is claimed, not committed */
    struct timespec ts = {0, 30 * 1000000};
    nanosleep(&ts, NULL);
    CHECK(poll_is(&f, 1, sizeof buf, 9)); /* offset 0 became padding */
    struct shmbus_partition_stats st;
    CHECK(shmbus_partition_stats(f.topic, 0, &st) == 0 && st.recovered_claims == 1);
    teardown(&f);
}

static void should_refuse_segments_that_fail_validation(void)
{
    struct fixture f;
    CHECK(setup(&f, 4096, 64, 1000000) == 0);
    struct shmbus_topic_info info;
    CHECK(shmbus_meta_read(f.meta, f.meta_size, &info) == SHMBUS_OK && info.capacity == 4096);
    CHECK(shmbus_meta_read(f.meta, f.meta_size - 64, &info) == SHMBUS_ECORRUPT);
    struct shmbus_meta *m = f.meta;
    m->header.layout_version = 0;
    CHECK(shmbus_meta_read(f.meta, f.meta_size, &info) == SHMBUS_ENOTREADY);
    m->header.layout_version = SHMBUS_LAYOUT_VERSION + 1;
    CHECK(shmbus_meta_read(f.meta, f.meta_size, &info) == SHMBUS_EVERSION);
    m->header.layout_version = SHMBUS_LAYOUT_VERSION;
    m->config.capacity = 4095;
    CHECK(shmbus_meta_read(f.meta, f.meta_size, &info) == SHMBUS_ECORRUPT);
    m->config.capacity = 4096;
    struct shmbus_partition *p = f.part;
    p->data_offset += 64;
    int err;
    void *parts[1] = {f.part};
    uint64_t sizes[1] = {f.part_size};
    CHECK(shmbus_topic_attach(f.meta, f.meta_size, f.meta_fd, parts, sizes, 1, 1000000, &err) == NULL);
    CHECK(err == SHMBUS_ECORRUPT);
    p->data_offset -= 64;
    teardown(&f);
}

static void should_refuse_a_slot_whose_lengths_run_past_the_ring(void)
{
    struct fixture f;
    CHECK(setup(&f, 4096, 64, 1000000) == 0);
    CHECK(shmbus_send_value(f.producer, 0, "abc", 3) == 0);
    struct shmbus_partition *p = f.part;
    struct shmbus_slot *slots = (struct shmbus_slot *)((char *)f.part + p->slots_offset);
    slots[0].value_len = 1u << 30;
    uint64_t d[SHMBUS_DELIVERY_FIELDS];
    CHECK(shmbus_poll(f.consumer, d) == SHMBUS_ECORRUPT);
    teardown(&f);
}

int main(void)
{
    should_deliver_records_in_order_across_many_wraps();
    should_never_let_a_record_straddle_the_end_of_the_ring();
    should_take_a_record_of_the_whole_capacity_into_a_drained_ring();
    should_report_full_and_keep_every_unread_record();
    should_send_and_read_a_batch_in_one_call();
    should_turn_a_dead_producers_claim_into_padding();
    should_refuse_segments_that_fail_validation();
    should_refuse_a_slot_whose_lengths_run_past_the_ring();
    printf("%s\n", failures ? "ring_test: FAILED" : "ring_test: ok");
    return failures ? 1 : 0;
}
