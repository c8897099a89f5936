#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"
#include "shmbus_atomic.h"
#include "shmbus_wait.h"

int64_t shmbus_now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t shmbus_now_realtime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t shmbus_now_coarse(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Shared (not FUTEX_PRIVATE) futexes: the word lives in a mapping that other
 * processes map at other addresses; the kernel keys it by the backing page. */
int shmbus_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    if (timeout_ns < 0)
        timeout_ns = 0;
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000LL, .tv_nsec = timeout_ns % 1000000000LL};
    long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0);
    if (r == 0)
        return SHMBUS_OK;
    if (errno == ETIMEDOUT)
        return SHMBUS_TIMEOUT;
    if (errno == EINTR)
        return SHMBUS_INTERRUPTED;
    return SHMBUS_OK; /* EAGAIN: the word already changed */
}

void shmbus_futex_wake_all(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Past this, a spinning waiter yields: the other side's next step takes far
 * longer than this only when it is not running at all. */
#define SPIN_YIELD_AFTER_NS 20000

void shmbus_spin_step(int64_t spun_ns)
{
    if (spun_ns < SPIN_YIELD_AFTER_NS) {
        for (int i = 0; i < SPIN_PAUSES; i++)
            cpu_relax();
    } else {
        sched_yield();
    }
}
