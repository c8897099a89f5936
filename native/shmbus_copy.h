/* Copying a value into the ring.  Large values go with non-temporal stores: the
 * ring's lines are not in this core's cache anyway (the consumer read them last),
 * and a normal store would first read each line from memory to own it. */
#ifndef SHMBUS_COPY_H
#define SHMBUS_COPY_H
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define SHMBUS_STREAM_MIN (32 * 1024)

/* Returns 1 when it used non-temporal stores: the caller must fence before
 * publishing (a release store does not order them). */
static inline int copy_in(unsigned char *dst, const char *src, uint64_t n)
{
#if defined(__SSE2__)
    if (n >= SHMBUS_STREAM_MIN) {
        uint64_t head = (16 - ((uintptr_t)dst & 15)) & 15;
        memcpy(dst, src, head);
        dst += head;
        src += head;
        n -= head;
        for (; n >= 64; n -= 64, dst += 64, src += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)src);
            __m128i b = _mm_loadu_si128((const __m128i *)(src + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(src + 32));
            __m128i d = _mm_loadu_si128((const __m128i *)(src + 48));
            _mm_stream_si128((__m128i *)dst, a);
            _mm_stream_si128((__m128i *)(dst + 16), b);
            _mm_stream_si128((__m128i *)(dst + 32), c);
            _mm_stream_si128((__m128i *)(dst + 48), d);
        }
        memcpy(dst, src, n);
        return 1;
    }
#endif
    memcpy(dst, src, n);
    return 0;
}

static inline void copy_fence(int streamed)
{
#if defined(__SSE2__)
    if (streamed)
        _mm_sfence();
#else
    (void)streamed;
#endif
}
#endif
