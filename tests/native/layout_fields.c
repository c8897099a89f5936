/* Prints where the fields of the shared-memory layout are, as JSON, for the
 * fuzz test (tests/test_fuzz.py) to aim its damage: {"struct.field": [offset,
 * size], ..., "struct": [0, sizeof]}.  Everything comes from shmbus_layout.h as
 * the compiler lays it out; nothing here declares the layout a second time. */
#include <stdio.h>

#include "shmbus_layout.h"

static int first = 1;

static void put(const char *name, size_t offset, size_t size)
{
    printf("%s\"%s\": [%zu, %zu]", first ? "{\n" : ",\n", name, offset, size);
    first = 0;
}

#define F(s, f) put(#s "." #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))
#define S(s) put(#s, 0, sizeof(struct s))

int main(void)
{
    S(shmbus_segment_header);
    F(shmbus_segment_header, magic);
    F(shmbus_segment_header, layout_version);
    F(shmbus_segment_header, kind);
    F(shmbus_segment_header, segment_size);
    F(shmbus_segment_header, created_ns);
    F(shmbus_segment_header, creator_pid);

    S(shmbus_topic_config);
    F(shmbus_topic_config, partitions);
    F(shmbus_topic_config, on_full);
    F(shmbus_topic_config, retention);
    F(shmbus_topic_config, fsync);
    F(shmbus_topic_config, capacity);
    F(shmbus_topic_config, slot_count);
    F(shmbus_topic_config, max_message_size);
    F(shmbus_topic_config, retention_bytes);
    F(shmbus_topic_config, retention_ns);
    F(shmbus_topic_config, dedup_window_ns);
    F(shmbus_topic_config, mode);
    F(shmbus_topic_config, flags);
    F(shmbus_topic_config, spill_bytes);
    F(shmbus_topic_config, max_messages);
    F(shmbus_topic_config, dedup_capacity);

    S(shmbus_meta);
    F(shmbus_meta, header);
    F(shmbus_meta, config);
    F(shmbus_meta, wake);
    F(shmbus_meta, masks);
    F(shmbus_meta, producers);
    F(shmbus_meta, members);
    F(shmbus_meta, groups);
    F(shmbus_meta, spill_dir);
    F(shmbus_wake_line, seq);
    F(shmbus_wake_line, waiters);
    F(shmbus_wake_line, wakeups);
    F(shmbus_group_masks, active);
    F(shmbus_group_masks, tethered);

    S(shmbus_producer_record);
    F(shmbus_producer_record, pid);
    F(shmbus_producer_record, start_time);
    F(shmbus_producer_record, attached_ns);

    S(shmbus_member_record);
    F(shmbus_member_record, pid);
    F(shmbus_member_record, group);
    F(shmbus_member_record, start_time);
    F(shmbus_member_record, attached_ns);
    F(shmbus_member_record, last_active_ns);
    F(shmbus_member_record, incarnation);

    S(shmbus_group_record);
    F(shmbus_group_record, state);
    F(shmbus_group_record, flags);
    F(shmbus_group_record, owner_member);
    F(shmbus_group_record, name_len);
    F(shmbus_group_record, owner_since);
    F(shmbus_group_record, name);
    F(shmbus_group_record, created_ns);
    F(shmbus_group_record, ack);
    F(shmbus_group_record, ordering);
    F(shmbus_group_record, ack_timeout_ns);
    F(shmbus_group_record, max_deliveries);
    F(shmbus_group_record, epoch);

    S(shmbus_partition);
    F(shmbus_partition, header);
    F(shmbus_partition, index);
    F(shmbus_partition, capacity);
    F(shmbus_partition, slot_count);
    F(shmbus_partition, slots_offset);
    F(shmbus_partition, pending_offset);
    F(shmbus_partition, pending_window);
    F(shmbus_partition, data_offset);
    F(shmbus_partition, dedup_offset);
    F(shmbus_partition, dedup_buckets);
    F(shmbus_partition, tail);
    F(shmbus_partition, head);
    F(shmbus_partition, space);
    F(shmbus_partition, counters);
    F(shmbus_partition, spill);
    F(shmbus_partition, producers);
    F(shmbus_partition, groups);
    F(shmbus_point, position);
    F(shmbus_point, offset);
    F(shmbus_head_line, position);
    F(shmbus_head_line, offset);
    F(shmbus_space_line, seq);
    F(shmbus_space_line, waiters);
    F(shmbus_partition_counters, dropped_full);
    F(shmbus_partition_counters, recovered_claims);
    F(shmbus_partition_counters, durable);
    F(shmbus_partition_counters, duplicates);
    F(shmbus_partition_counters, dedup_evicted);
    F(shmbus_spill_line, in);
    F(shmbus_spill_line, out);
    F(shmbus_spill_line, moving);

    S(shmbus_dedup_bucket);
    F(shmbus_dedup_bucket, lock);
    F(shmbus_dedup_bucket, entries);
    S(shmbus_dedup_entry);
    F(shmbus_dedup_entry, id);
    F(shmbus_dedup_entry, offset);
    F(shmbus_dedup_entry, sent_ns);

    S(shmbus_producer_line);
    F(shmbus_producer_line, intent);
    F(shmbus_producer_line, intent_end);

    S(shmbus_group_line);
    F(shmbus_group_line, cursor);
    F(shmbus_group_line, committed_offset);
    F(shmbus_group_line, committed_position);
    F(shmbus_group_line, owner);
    F(shmbus_group_line, ready);
    F(shmbus_group_line, delivered);
    F(shmbus_group_line, acked);
    F(shmbus_group_line, lost);

    S(shmbus_slot);
    F(shmbus_slot, seq);
    F(shmbus_slot, position);
    F(shmbus_slot, timestamp_ns);
    F(shmbus_slot, value_len);
    F(shmbus_slot, headers_len);
    F(shmbus_slot, key_len);
    F(shmbus_slot, flags);
    F(shmbus_slot, checksum);
    F(shmbus_slot, reserved);

    S(shmbus_pending);
    F(shmbus_pending, offset);
    F(shmbus_pending, word);

    S(shmbus_bus);
    printf("\n}\n");
    return 0;
}
