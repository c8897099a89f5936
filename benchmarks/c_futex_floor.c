/* The floor under a blocking round trip: two processes ping-pong through a
 * shared futex word, each sleeping in the kernel until woken.  No Python, no ring. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void futex(uint32_t *w, int op, uint32_t v) { syscall(SYS_futex, w, op, v, NULL, NULL, 0); }

static int64_t now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* the word counts turns: odd is the pinger's message, even the ponger's reply */
static void await_turn(uint32_t *w, uint32_t want)
{
    uint32_t seen;
    while ((seen = __atomic_load_n(w, __ATOMIC_ACQUIRE)) != want)
        futex(w, FUTEX_WAIT, seen);
}

int main(void)
{
    uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int n = 20000;
    int64_t *lat = malloc(n * sizeof *lat);
    if (fork() == 0) {
        for (int i = 0; i < n; i++) {
            await_turn(w, 2 * i + 1);
            __atomic_store_n(w, 2 * i + 2, __ATOMIC_SEQ_CST);
            futex(w, FUTEX_WAKE, 1);
        }
        _exit(0);
    }
    for (int i = 0; i < n; i++) {
        int64_t t = now();
        __atomic_store_n(w, 2 * i + 1, __ATOMIC_SEQ_CST);
        futex(w, FUTEX_WAKE, 1);
        await_turn(w, 2 * i + 2);
        lat[i] = now() - t;
    }
    wait(NULL);
    qsort(lat, n, sizeof *lat, by_value);
    printf("futex ping-pong between two processes, round trip: p50 %.1f us, p99 %.1f us\n",
           lat[n / 2] / 1e3, lat[n * 99 / 100] / 1e3);
    return 0;
}
