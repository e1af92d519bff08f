/* float32 <-> bfloat16 as torch's CPU casts do (shared by reglab's kernels): widening is
 * exact (the 16 bits moved up); narrowing rounds to nearest even and writes NaN as torch's
 * vectorized cast writes it (0xFFFF; its scalar tail writes 0x7FC0, which no kernel here
 * needs: they work on rows whose widths torch vectorizes whole, or round every element as
 * its vector loop does). */
#ifndef REGLAB_BFLOAT16_H
#define REGLAB_BFLOAT16_H
#include <stdint.h>
#include <string.h>

static inline float widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t narrow(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    return f != f ? (uint16_t)0xFFFFu : (uint16_t)rounded;  /* NaN as torch's vector cast */
}
#endif
