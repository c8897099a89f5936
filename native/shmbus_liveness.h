/* Whether a producer or member is alive: it holds an open-file-description lock on
 * one byte of the metadata segment for its whole life; the kernel drops the lock
 * when the process dies, whatever its pid becomes. */
#ifndef SHMBUS_LIVENESS_H
#define SHMBUS_LIVENESS_H
#include <stdint.h>

/* Lock bytes: producers first, then members. */
#define SHMBUS_LOCK_PRODUCER(i) ((uint64_t)(i))
#define SHMBUS_LOCK_MEMBER(i) ((uint64_t)SHMBUS_MAX_PRODUCERS + (i))
/* Held while a group entry is created, looked up by name, or released: a name is
 * one group, and an entry found half-made under the lock was left by the dead. */
#define SHMBUS_LOCK_GROUPS ((uint64_t)SHMBUS_MAX_PRODUCERS + SHMBUS_MAX_MEMBERS)
/* Disk topics: held shared by every process that has the topic mapped, and
 * exclusively by the first one while it recovers the partitions. */
#define SHMBUS_LOCK_OPEN (SHMBUS_LOCK_GROUPS + 1)
/* on_full=spill: held while a partition's spill file is appended or moved. */
#define SHMBUS_LOCK_SPILL(i) (SHMBUS_LOCK_OPEN + 1 + (uint64_t)(i))
/* Held by a topic's creator from making the metadata file until its version
 * is written. */
#define SHMBUS_LOCK_CREATE SHMBUS_LOCK_SPILL(SHMBUS_MAX_PARTITIONS)

/* 1 when taken, 0 when another open file description holds it, <0 on error. */
int shmbus_lock_try(int fd, uint64_t byte);
void shmbus_lock_release(int fd, uint64_t byte);
/* shmbus_lock_try until it is taken (SHMBUS_OK) or timeout_ns pass (SHMBUS_EBUSY). */
int shmbus_lock_wait(int fd, uint64_t byte, int64_t timeout_ns);
/* 1 when some other open file description holds the byte, 0 when nobody does. */
int shmbus_lock_held(int fd, uint64_t byte);
#endif
