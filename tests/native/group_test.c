/* The C core's groups on their own: members sharing a named group, acks, nacks,
 * redelivery after a deadline, dead letters, giving back, the window, a hostile
 * cursor, deleting a group.  Built and run by tests/test_native.py, plain and
 * under ASan + UBSan. */
#include "fixture.h"

#define FIELD(d, k, f) ((d)[(k)*SHMBUS_DELIVERY_FIELDS + (f)])

struct member {
    int fd;
    shmbus_consumer *c;
};

static int join(struct fixture *f, struct member *m, const char *name, uint32_t ack,
                uint32_t max_deliveries, int64_t ack_timeout_ns)
{
    int err;
    struct shmbus_group_options o = {.name = name, .name_len = (uint32_t)strlen(name),
                                     .flags = SHMBUS_GROUP_TETHERED, .start = SHMBUS_START_EARLIEST,
                                     .ack = ack, .ordering = SHMBUS_ORDERING_NONE,
                                     .max_deliveries = max_deliveries,
                                     .ack_timeout_ns = ack_timeout_ns};
    m->fd = another_fd(f);
    m->c = shmbus_consumer_open(f->topic, m->fd, getpid(), 0, &o, &err);
    return m->c ? 0 : err;
}

static void leave(struct member *m)
{
    shmbus_consumer_close(m->c);
    close(m->fd);
}

static void send_n(struct fixture *f, int n)
{
    char buf[16] = {0};
    for (int i = 0; i < n; i++)
        shmbus_send_value(f->producer, 0, buf, sizeof buf);
}

static struct shmbus_group_stats stats_of(struct fixture *f, shmbus_consumer *c)
{
    struct shmbus_group_stats s;
    shmbus_group_stats(f->topic, shmbus_consumer_group(c), 0, &s);
    return s;
}

static void should_share_ack_and_redeliver_a_nacked_message(void)
{
    struct fixture f;
    struct member a, b;
    uint64_t d[16 * SHMBUS_DELIVERY_FIELDS];
    CHECK(setup(&f, 1 << 16, 256, 1000000000) == 0);
    CHECK(join(&f, &a, "work", SHMBUS_ACK_MANUAL, 0, 1000000000) == 0);
    CHECK(join(&f, &b, "work", SHMBUS_ACK_MANUAL, 0, 1000000000) == 0);
    CHECK(shmbus_consumer_group(a.c) == shmbus_consumer_group(b.c));
    send_n(&f, 10);
    CHECK(shmbus_poll_batch(a.c, d, 4) == 4);
    CHECK(FIELD(d, 0, SHMBUS_D_OFFSET) == 0 && FIELD(d, 3, SHMBUS_D_OFFSET) == 3);
    uint64_t pairs[8];
    for (int k = 0; k < 4; k++) {
        pairs[2 * k] = 0;
        pairs[2 * k + 1] = (uint64_t)k;
    }
    CHECK(shmbus_poll_batch(b.c, d, 16) == 6);
    CHECK(shmbus_ack(a.c, 0, 5) == 0); /* b's, not a's */
    CHECK(shmbus_ack_batch(a.c, pairs, 4) == 4);
    CHECK(shmbus_ack_batch(a.c, pairs, 4) == 0); /* twice: nothing */
    CHECK(stats_of(&f, a.c).committed_offset == 4);
    CHECK(shmbus_nack(b.c, 0, 4, 0) == 1);
    CHECK(shmbus_poll_batch(a.c, d, 16) == 1);
    CHECK(FIELD(d, 0, SHMBUS_D_OFFSET) == 4 && FIELD(d, 0, SHMBUS_D_DELIVERY_COUNT) == 2);
    CHECK(FIELD(d, 0, SHMBUS_D_FLAGS) == (SHMBUS_REASON_NACK << SHMBUS_DF_REASON_SHIFT));
    CHECK(shmbus_ack(a.c, 0, 4) == 1);
    for (uint64_t off = 5; off < 10; off++)
        CHECK(shmbus_ack(b.c, 0, off) == 1);
    struct shmbus_group_stats s = stats_of(&f, a.c);
    CHECK(s.committed_offset == 10 && s.acked == 10 && s.redelivered == 1 && s.pending == 0);
    CHECK(shmbus_lag(b.c) == 0);
    leave(&a);
    leave(&b);
    teardown(&f);
}

static void should_redeliver_after_the_ack_deadline_then_dead_letter(void)
{
    struct fixture f;
    struct member a;
    uint64_t d[4 * SHMBUS_DELIVERY_FIELDS];
    CHECK(setup(&f, 1 << 16, 256, 1000000000) == 0);
    CHECK(join(&f, &a, "slow", SHMBUS_ACK_MANUAL, 2, 1000000) == 0); /* 1 ms to ack */
    send_n(&f, 1);
    CHECK(shmbus_poll_batch(a.c, d, 4) == 1);
    struct timespec ms5 = {0, 5000000};
    nanosleep(&ms5, NULL);
    CHECK(shmbus_poll_wait(a.c, d, 4, 2000000000, 0) == 1);
    CHECK(FIELD(d, 0, SHMBUS_D_DELIVERY_COUNT) == 2);
    CHECK(FIELD(d, 0, SHMBUS_D_FLAGS) == (SHMBUS_REASON_ACK_TIMEOUT << SHMBUS_DF_REASON_SHIFT));
    CHECK(shmbus_nack(a.c, 0, 0, 0) == 1); /* the second delivery fails: a dead letter */
    CHECK(shmbus_poll_batch(a.c, d, 4) == 1);
    CHECK(FIELD(d, 0, SHMBUS_D_FLAGS) ==
          (SHMBUS_DF_DEAD_LETTER | (SHMBUS_REASON_NACK << SHMBUS_DF_REASON_SHIFT)));
    CHECK(FIELD(d, 0, SHMBUS_D_DELIVERY_COUNT) == 2);
    CHECK(shmbus_dead_lettered(a.c, 0, 0) == 1);
    struct shmbus_group_stats s = stats_of(&f, a.c);
    CHECK(s.dead_lettered == 1 && s.committed_offset == 1 && s.pending == 0);
    leave(&a);
    teardown(&f);
}

static void should_give_back_and_stop_at_a_full_window(void)
{
    struct fixture f;
    struct member a, b;
    uint64_t d[128 * SHMBUS_DELIVERY_FIELDS];
    CHECK(setup(&f, 1 << 16, 64, 1000000000) == 0); /* 64 slots: a window of 64 */
    CHECK(join(&f, &a, "w", SHMBUS_ACK_AUTO, 0, 0) == 0);
    CHECK(join(&f, &b, "w", SHMBUS_ACK_AUTO, 0, 0) == 0);
    send_n(&f, 5);
    CHECK(shmbus_poll_batch(a.c, d, 5) == 5);
    uint64_t back[6] = {0, 2, 0, 3, 0, 4};
    CHECK(shmbus_give_back(a.c, back, 3) == 3);
    CHECK(shmbus_poll_batch(b.c, d, 8) == 3);
    CHECK(FIELD(d, 0, SHMBUS_D_OFFSET) == 2 && FIELD(d, 0, SHMBUS_D_DELIVERY_COUNT) == 1);
    CHECK(stats_of(&f, a.c).redelivered == 0);
    CHECK(shmbus_poll_batch(a.c, d, 8) == 0); /* releases a's two */
    CHECK(shmbus_poll_batch(b.c, d, 8) == 0); /* releases b's three */
    CHECK(stats_of(&f, a.c).committed_offset == 5);
    leave(&b);
    leave(&a);
    teardown(&f);

    /* more index slots than the window: the window is what stops the group */
    CHECK(setup(&f, 1 << 20, 2 * SHMBUS_PENDING_WINDOW, 1000000000) == 0);
    CHECK(join(&f, &a, "w", SHMBUS_ACK_MANUAL, 0, 1000000000) == 0);
    send_n(&f, SHMBUS_PENDING_WINDOW + 10);
    uint64_t *many = malloc(sizeof(uint64_t) * 1024 * SHMBUS_DELIVERY_FIELDS);
    int total = 0, n;
    while ((n = shmbus_poll_batch(a.c, many, 1024)) > 0)
        total += n;
    CHECK(total == SHMBUS_PENDING_WINDOW);
    CHECK(shmbus_ack(a.c, 0, 1) == 1); /* not the oldest: still full */
    CHECK(shmbus_poll_batch(a.c, many, 1024) == 0);
    CHECK(shmbus_ack(a.c, 0, 0) == 1);
    CHECK(shmbus_poll_batch(a.c, many, 1024) == 2);
    free(many);
    leave(&a);
    teardown(&f);
}

static void should_refuse_a_cursor_past_the_window(void)
{
    struct fixture f;
    struct member a;
    uint64_t d[4 * SHMBUS_DELIVERY_FIELDS];
    CHECK(setup(&f, 1 << 16, 256, 1000000000) == 0);
    CHECK(join(&f, &a, "bad", SHMBUS_ACK_MANUAL, 0, 1000000000) == 0);
    send_n(&f, 3);
    struct shmbus_partition *p = f.part;
    struct shmbus_group_line *gl = &p->groups[shmbus_consumer_group(a.c)];
    gl->cursor = gl->committed_offset + (1ULL << 40);
    CHECK(shmbus_poll_batch(a.c, d, 4) == SHMBUS_ECORRUPT);
    gl->cursor = gl->committed_offset - 1;
    CHECK(shmbus_poll_batch(a.c, d, 4) == SHMBUS_ECORRUPT);
    gl->cursor = gl->committed_offset;
    CHECK(shmbus_poll_batch(a.c, d, 4) == 3);
    leave(&a);
    teardown(&f);
}

static void should_delete_a_group_only_without_members(void)
{
    struct fixture f;
    struct member a;
    CHECK(setup(&f, 1 << 16, 256, 1000000000) == 0);
    CHECK(join(&f, &a, "gone", SHMBUS_ACK_AUTO, 0, 0) == 0);
    int fd = another_fd(&f);
    CHECK(shmbus_group_delete(f.topic, fd, "gone", 4) == SHMBUS_EMEMBERS);
    leave(&a);
    CHECK(shmbus_group_delete(f.topic, fd, "gone", 4) == SHMBUS_OK);
    CHECK(shmbus_group_delete(f.topic, fd, "gone", 4) == SHMBUS_EMPTY);
    struct member b;
    CHECK(join(&f, &b, "gone", SHMBUS_ACK_MANUAL, 0, 1000000000) == 0); /* a new group */
    leave(&b);
    close(fd);
    teardown(&f);
}

int main(void)
{
    should_share_ack_and_redeliver_a_nacked_message();
    should_redeliver_after_the_ack_deadline_then_dead_letter();
    should_give_back_and_stop_at_a_full_window();
    should_refuse_a_cursor_past_the_window();
    should_delete_a_group_only_without_members();
    printf("%s\n", failures ? "group_test: FAILED" : "group_test: ok");
    return failures ? 1 : 0;
}
