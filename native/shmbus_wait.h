/* Clocks and futex waits on 32-bit words in shared memory. */
#ifndef SHMBUS_WAIT_H
#define SHMBUS_WAIT_H
#include <stdint.h>

int64_t shmbus_now_monotonic(void);
int64_t shmbus_now_realtime(void);
/* CLOCK_REALTIME at the kernel tick's resolution: a few nanoseconds, no syscall. */
int64_t shmbus_now_coarse(void);
/* Sleeps while *word == expected, at most timeout_ns: SHMBUS_OK (woken or the word
 * changed), SHMBUS_TIMEOUT or SHMBUS_INTERRUPTED. */
int shmbus_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns);
void shmbus_futex_wake_all(uint32_t *word);
/* One step of a waiter's spinning phase, ``spun_ns`` into it: a few pauses at
 * first, then a yield of the core, so that on a machine with more busy processes
 * than cores the process being waited for gets to run. */
void shmbus_spin_step(int64_t spun_ns);
#endif
