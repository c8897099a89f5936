/* The C core on its own: claim, commit, wrap, batch, full, recovery, validation.
 * Built and run by tests/test_native.py, plain and under ASan + UBSan. */
#include "fixture.h"

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

static void should_publish_a_msg_id_once_and_again_when_its_record_is_padding(void)
{
    struct fixture f;
    CHECK(setup(&f, 4096, 64, 1000000) == 0);
    uint64_t first = 99, d[SHMBUS_DELIVERY_FIELDS];
    CHECK(shmbus_send_once(f.producer, 0, "a", 1, NULL, 0, NULL, 0, "id-1", 4, &first) == 0);
    CHECK(shmbus_send_once(f.producer, 0, "b", 1, NULL, 0, NULL, 0, "id-1", 4, &first) == SHMBUS_DUPLICATE);
    CHECK(first == 0);
    CHECK(shmbus_send_once(f.producer, 0, "c", 1, "k", 1, NULL, 0, "id-2", 4, &first) == 1);
    CHECK(shmbus_poll(f.consumer, d) == 1 && d[SHMBUS_D_OFFSET] == 0);
    CHECK(shmbus_poll(f.consumer, d) == 1 && d[SHMBUS_D_OFFSET] == 1);
    /* as if the producer of offset 1 had died before committing: its id is free */
    struct shmbus_partition *p = f.part;
    struct shmbus_slot *slots = (struct shmbus_slot *)((char *)f.part + p->slots_offset);
    slots[1].seq = 2 | SHMBUS_SEQ_PADDING;
    CHECK(shmbus_send_once(f.producer, 0, "d", 1, NULL, 0, NULL, 0, "id-2", 4, &first) == 2);
    struct shmbus_partition_stats st;
    CHECK(shmbus_partition_stats(f.topic, 0, &st) == SHMBUS_OK && st.duplicates == 1);
    /* bad sizes are refused before anything is looked up or entered */
    static char big[8192];
    CHECK(shmbus_send_once(f.producer, 0, big, sizeof big, NULL, 0, NULL, 0, "id-3", 4, &first) ==
          SHMBUS_ETOOLARGE);
    CHECK(shmbus_send_once(f.producer, 0, "e", 1, NULL, 0, NULL, 0, "id-3", 4, &first) == 3);
    teardown(&f);
}

static void should_forget_the_oldest_ids_of_a_full_table_and_count_them(void)
{
    struct fixture f;
    CHECK(setup(&f, 4096, 64, 1000000) == 0);
    uint64_t first, d[SHMBUS_DELIVERY_FIELDS];
    char id[16];
    for (int i = 0; i < 400; i++) { /* 400 ids into a table of 8 buckets of 10 */
        int n = snprintf(id, sizeof id, "id-%d", i);
        CHECK(shmbus_send_once(f.producer, 0, "v", 1, NULL, 0, NULL, 0, id, (uint32_t)n, &first) == i);
        CHECK(shmbus_poll(f.consumer, d) == 1);
    }
    struct shmbus_partition_stats st;
    CHECK(shmbus_partition_stats(f.topic, 0, &st) == SHMBUS_OK);
    CHECK(st.dedup_evicted >= 400 - 80 && st.dedup_evicted < 400);
    int n = snprintf(id, sizeof id, "id-%d", 399); /* the newest is kept */
    CHECK(shmbus_send_once(f.producer, 0, "v", 1, NULL, 0, NULL, 0, id, (uint32_t)n, &first) ==
          SHMBUS_DUPLICATE && first == 399);
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
    should_publish_a_msg_id_once_and_again_when_its_record_is_padding();
    should_forget_the_oldest_ids_of_a_full_table_and_count_them();
    printf("%s\n", failures ? "ring_test: FAILED" : "ring_test: ok");
    return failures ? 1 : 0;
}
