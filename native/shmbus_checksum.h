/* Record checksums (CRC-32C) for topics on disk: computed by the producer as it
 * writes a record, checked when a disk topic is recovered. */
#ifndef SHMBUS_CHECKSUM_H
#define SHMBUS_CHECKSUM_H
#include <stddef.h>
#include <stdint.h>

#include "shmbus_layout.h"

/* CRC-32C of n bytes, continuing from crc (0 to start). */
uint32_t shmbus_crc32c(uint32_t crc, const void *data, size_t n);

/* A record's checksum starts from its slot's fields (not seq, position or the
 * checksum itself), then runs over value, key and headers as they lie in the ring. */
static inline uint32_t shmbus_checksum_fields(const struct shmbus_slot *s)
{
    struct {
        int64_t timestamp_ns;
        uint32_t value_len, headers_len;
        uint16_t key_len, flags;
        uint32_t zero; /* no padding bytes of unknown value */
    } f = {s->timestamp_ns, s->value_len, s->headers_len, s->key_len, s->flags, 0};
    _Static_assert(sizeof f == 24, "checksummed fields are packed");
    return shmbus_crc32c(0, &f, sizeof f);
}
#endif
