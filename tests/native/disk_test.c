/* Checksums and the recovery of a disk topic's partition, in one process. */
#include "fixture.h"

#define CAP 4096
#define SLOTS 64

static struct shmbus_slot *slot(struct fixture *f, uint64_t offset)
{
    struct shmbus_partition *p = f->part;
    return (struct shmbus_slot *)((char *)p + p->slots_offset) + (offset & (SLOTS - 1));
}

static unsigned char *bytes_of(struct fixture *f, uint64_t offset)
{
    struct shmbus_partition *p = f->part;
    return (unsigned char *)p + p->data_offset + (slot(f, offset)->position & (CAP - 1));
}

static int setup_sent_with(struct fixture *f, int n, uint32_t fsync)
{
    if (setup_with(f, CAP, SLOTS, 1000000, SHMBUS_TOPIC_CHECKSUMS, fsync))
        return -1;
    char buf[40];
    for (int i = 0; i < n; i++) {
        fill(buf, sizeof buf, (uint64_t)i);
        if (shmbus_send(f->producer, 0, buf, sizeof buf, "k", 1, NULL, 0) != i)
            return -1;
    }
    return 0;
}

static int setup_sent(struct fixture *f, int n) { return setup_sent_with(f, n, SHMBUS_FSYNC_NEVER); }

static void should_compute_crc32c(void)
{
    CHECK(shmbus_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(shmbus_crc32c(shmbus_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
    CHECK(shmbus_crc32c(0, "", 0) == 0);
}

static void should_keep_every_good_record(void)
{
    struct fixture f;
    uint64_t bad;
    CHECK(setup_sent(&f, 10) == 0);
    CHECK(slot(&f, 3)->checksum != 0);
    CHECK(shmbus_recover(f.topic, 0, &bad) == 0);
    struct shmbus_partition *p = f.part;
    CHECK(p->tail.tail.offset == 10 && p->counters.discarded == 0);
    teardown(&f);
}

static void should_name_damage_that_good_records_follow(void)
{
    struct fixture f;
    uint64_t bad = 0;
    CHECK(setup_sent(&f, 10) == 0);
    bytes_of(&f, 5)[3] ^= 1;
    CHECK(shmbus_recover(f.topic, 0, &bad) == SHMBUS_ECORRUPT);
    CHECK(bad == 5);
    struct shmbus_partition *p = f.part;
    CHECK(p->tail.tail.offset == 10); /* nothing changed */
    teardown(&f);
}

static void should_drop_a_damaged_or_unfinished_tail(void)
{
    struct fixture f;
    uint64_t bad;
    CHECK(setup_sent(&f, 10) == 0);
    bytes_of(&f, 9)[0] ^= 1;       /* the last record damaged */
    slot(&f, 8)->seq = 8;          /* the one before never committed */
    uint64_t end8 = slot(&f, 8)->position;
    CHECK(shmbus_recover(f.topic, 0, &bad) == 2);
    struct shmbus_partition *p = f.part;
    CHECK(p->tail.tail.offset == 8 && p->tail.tail.position == end8);
    CHECK(p->counters.discarded == 2 && slot(&f, 9)->seq == 0);
    /* and the offsets are written again */
    CHECK(shmbus_send(f.producer, 0, "again", 5, NULL, 0, NULL, 0) == 8);
    teardown(&f);
}

static void should_pad_a_dead_claim_between_good_records(void)
{
    struct fixture f;
    uint64_t bad;
    CHECK(setup_sent(&f, 10) == 0);
    slot(&f, 3)->seq = 3; /* claimed, never committed */
    CHECK(shmbus_recover(f.topic, 0, &bad) == 0);
    struct shmbus_partition *p = f.part;
    CHECK(slot(&f, 3)->seq == (4 | SHMBUS_SEQ_PADDING));
    CHECK(p->counters.recovered_claims == 1 && p->tail.tail.offset == 10);
    teardown(&f);
}

/* fsync=always: damage past the durable point is a torn tail (a crash of the
 * machine writes pages back in any order); before it, corruption. */
static void should_cut_a_torn_tail_past_the_durable_point(void)
{
    struct fixture f;
    uint64_t bad;
    CHECK(setup_sent_with(&f, 10, SHMBUS_FSYNC_ALWAYS) == 0);
    struct shmbus_partition *p = f.part;
    p->counters.durable = 5;
    bytes_of(&f, 7)[0] ^= 1;
    CHECK(shmbus_recover(f.topic, 0, &bad) == 3);
    CHECK(p->tail.tail.offset == 7 && p->counters.discarded == 3);
    teardown(&f);
    CHECK(setup_sent_with(&f, 10, SHMBUS_FSYNC_ALWAYS) == 0);
    p = f.part;
    p->counters.durable = 5;
    bytes_of(&f, 3)[0] ^= 1;
    CHECK(shmbus_recover(f.topic, 0, &bad) == SHMBUS_ECORRUPT && bad == 3);
    teardown(&f);
}

int main(void)
{
    should_compute_crc32c();
    should_keep_every_good_record();
    should_name_damage_that_good_records_follow();
    should_drop_a_damaged_or_unfinished_tail();
    should_pad_a_dead_claim_between_good_records();
    should_cut_a_torn_tail_past_the_durable_point();
    printf("%s\n", failures ? "disk_test: FAILED" : "disk_test: ok");
    return failures ? 1 : 0;
}
