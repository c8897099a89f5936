/* Named atomic accesses to shared words.  Every shared field goes through one of
 * these, so each ordering edge is visible at the call site. */
#ifndef SHMBUS_ATOMIC_H
#define SHMBUS_ATOMIC_H

#include <stdint.h>
#include "shmbus_layout.h"

#define load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define store_seq_cst(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define fetch_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define cas(p, expected, desired) \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)
#define fence_seq_cst() __atomic_thread_fence(__ATOMIC_SEQ_CST)

/* Pauses between two looks while spinning: a look reads one line that stays
 * shared until its writer changes it, so looking often costs the writer nothing,
 * and a PAUSE can take 60+ cycles. */
#define SPIN_PAUSES 4

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Raise *p to at least v. */
static inline void store_max(uint64_t *p, uint64_t v)
{
    uint64_t cur = load_relaxed(p);
    while (cur < v && !cas(p, &cur, v)) {
    }
}

/* The tail point is read as offset, position, offset: both only grow, and every
 * claim changes the offset, so equal offsets mean the position belongs to them. */
static inline struct shmbus_point point_load(const struct shmbus_point *p)
{
    struct shmbus_point r;
    for (;;) {
        uint64_t before = load_acquire(&p->offset);
        r.position = load_acquire(&p->position);
        r.offset = load_acquire(&p->offset);
        if (r.offset == before)
            return r;
        cpu_relax();
    }
}

/* One 16-byte compare-and-swap of a point (cmpxchg16b on x86-64). */
static inline int point_cas(struct shmbus_point *p, struct shmbus_point expected,
                            struct shmbus_point desired)
{
    unsigned __int128 e = ((unsigned __int128)expected.offset << 64) | expected.position;
    unsigned __int128 d = ((unsigned __int128)desired.offset << 64) | desired.position;
    return __sync_bool_compare_and_swap((unsigned __int128 *)p, e, d);
}

#endif
