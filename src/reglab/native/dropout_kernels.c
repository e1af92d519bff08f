/* reglab's native kernels: inverted dropout of a population's activations, forward and
 * backward, in one pass each.
 *
 * torch computes a member's dropout as x / keep * mask, with the mask (uniform < keep)
 * made from its seed group's draws expanded to every member, compared, converted to x's
 * dtype and multiplied: five passes over (P, B, units) forward, two backward, and under
 * bfloat16 a sixth casting the float32 result back. Here each output element reads its
 * input, its group's draw and its member's keep probability once, and does torch's
 * arithmetic in torch's order, so the bits are torch's:
 *   forward   y  = (x / keep) * (u < keep ? 1 : 0)
 *   backward  gx = (g * (u < keep ? 1 : 0)) / keep
 * in float32; for bfloat16 activations the same in float32 from the widened value, rounded
 * once to bfloat16 at the end (round to nearest even), as torch's promotion and cast do.
 * Built with -ffp-contract=off and without -ffast-math (see penalty_kernels.c).
 *
 * The mask is isless(u, keep) as a float (0 or 1): the same value as u < keep, but a quiet
 * comparison, which the compiler may evaluate for every element of a vector. With the
 * signalling `<` (it may raise an exception flag on NaN) and trapping math, the default,
 * gcc 12 keeps a branch per element and vectorizes none of these loops; with a random
 * mask that branch is mispredicted half the time (measured on a Zen 3 core, P = 45,
 * 128 x 64 activations: ~1 ms per pass before, ~0.09 ms after, the same bits).
 *
 * x, y, g, gx: (P, n) rows; u: (G, n) draws; group: (P,) row of u for each member, or NULL
 * when every member reads row 0; keep: (P,) float32. Each kernel first checks that every
 * member's row lies in [0, G) and returns -1 without writing anything when one does not
 * (0 when done): a wrong group never reads past the draws.
 */
#include <math.h>
#include <stdint.h>

#include "bfloat16.h"

static int rows_in_range(const int64_t *group, int64_t members, int64_t groups) {
    if (!group)
        return groups >= 1;
    for (int64_t m = 0; m < members; m++)
        if (group[m] < 0 || group[m] >= groups)
            return 0;
    return 1;
}

static inline const float *draws(const float *u, const int64_t *group, int64_t m, int64_t n) {
    return u + (group ? group[m] : 0) * n;
}

int reglab_dropout_f32(const float *x, const float *u, const int64_t *group,
                       int64_t groups, const float *keep, int64_t members, int64_t n,
                       float *y) {
    if (!rows_in_range(group, members, groups))
        return -1;
    for (int64_t m = 0; m < members; m++) {
        const float k = keep[m], *um = draws(u, group, m, n), *xm = x + m * n;
        float *ym = y + m * n;
        for (int64_t i = 0; i < n; i++)
            ym[i] = (xm[i] / k) * (float)isless(um[i], k);
    }
    return 0;
}

int reglab_dropout_backward_f32(const float *g, const float *u, const int64_t *group,
                                int64_t groups, const float *keep, int64_t members,
                                int64_t n, float *gx) {
    if (!rows_in_range(group, members, groups))
        return -1;
    for (int64_t m = 0; m < members; m++) {
        const float k = keep[m], *um = draws(u, group, m, n), *gm = g + m * n;
        float *out = gx + m * n;
        for (int64_t i = 0; i < n; i++)
            out[i] = (gm[i] * (float)isless(um[i], k)) / k;
    }
    return 0;
}

int reglab_dropout_bf16(const uint16_t *x, const float *u, const int64_t *group,
                        int64_t groups, const float *keep, int64_t members, int64_t n,
                        uint16_t *y) {
    if (!rows_in_range(group, members, groups))
        return -1;
    for (int64_t m = 0; m < members; m++) {
        const float k = keep[m], *um = draws(u, group, m, n);
        const uint16_t *xm = x + m * n;
        uint16_t *ym = y + m * n;
        for (int64_t i = 0; i < n; i++)
            ym[i] = narrow((widen(xm[i]) / k) * (float)isless(um[i], k));
    }
    return 0;
}

int reglab_dropout_backward_bf16(const uint16_t *g, const float *u, const int64_t *group,
                                 int64_t groups, const float *keep, int64_t members,
                                 int64_t n, uint16_t *gx) {
    if (!rows_in_range(group, members, groups))
        return -1;
    for (int64_t m = 0; m < members; m++) {
        const float k = keep[m], *um = draws(u, group, m, n);
        const uint16_t *gm = g + m * n;
        uint16_t *out = gx + m * n;
        for (int64_t i = 0; i < n; i++)
            out[i] = narrow((widen(gm[i]) * (float)isless(um[i], k)) / k);
    }
    return 0;
}
