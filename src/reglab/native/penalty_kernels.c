/* reglab's native kernels: the L1/L2 weight penalty of each member's row, and its
 * gradient, in one pass over the weights each (torch needs two to five: abs, sum, vecdot,
 * sign, addcmul, with (P, n) temporaries).
 *
 * Rows are members: a row's arithmetic depends only on its own elements and strengths, in
 * an order fixed from the row's start, so a member's result is the same whatever rows lie
 * around it and wherever its row starts in memory. Built without -ffast-math and with
 * -ffp-contract=off: no reassociation beyond the fixed lanes below, no fused multiply-adds
 * (a vectorized body and a scalar tail round alike).
 */
#include <math.h>
#include <stdint.h>

#include "sign.h"

#define LANES 32   /* independent partial sums per row: enough to hide the adds' latency */
#define BLOCK 4096 /* elements summed in float lanes before the block joins a double total */


static inline float strength(const float *per_row, float scalar, int64_t r) {
    return per_row ? per_row[r] : scalar;
}

/* Sum |x| and x*x over one row, in blocks of BLOCK elements, each block in LANES float
 * lanes (lane j takes the elements j, j + LANES, ... of the block), its lanes added in
 * order into double totals. */
static void row_sums(const float *x, int64_t n, int want_abs, int want_square,
                     double *abs_total, double *square_total) {
    double t1 = 0.0, t2 = 0.0;
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t len = n - start < BLOCK ? n - start : BLOCK;
        const float *p = x + start;
        float a1[LANES] = {0}, a2[LANES] = {0};
        int64_t i = 0;
        if (want_abs && want_square) {
            for (; i + LANES <= len; i += LANES)
                for (int j = 0; j < LANES; j++) {
                    float v = p[i + j];
                    a1[j] += v < 0.0f ? -v : v;
                    a2[j] += v * v;
                }
        } else if (want_abs) {
            for (; i + LANES <= len; i += LANES)
                for (int j = 0; j < LANES; j++) {
                    float v = p[i + j];
                    a1[j] += v < 0.0f ? -v : v;
                }
        } else {
            for (; i + LANES <= len; i += LANES)
                for (int j = 0; j < LANES; j++) {
                    float v = p[i + j];
                    a2[j] += v * v;
                }
        }
        for (int j = 0; i + j < len; j++) {
            float v = p[i + j];
            a1[j] += v < 0.0f ? -v : v;
            a2[j] += v * v;
        }
        for (int j = 0; j < LANES; j++) {
            t1 += a1[j];
            t2 += a2[j];
        }
    }
    *abs_total = t1;
    *square_total = t2;
}

/* out[r] = l1_r * sum|w_r| + l2_r * sum w_r**2 for rows r of n elements (a term only when
 * its use_ flag is set), rounded as torch's ``0 + l1 * sum + l2 * sum`` in float32. A
 * strength is per_row[r], or the scalar when per_row is NULL. A row whose strengths are
 * all zero is 0 without being read (whatever its weights hold), so that a call on every
 * row gives each member what a call on its own row would. */
void reglab_weight_penalty(const float *w, int64_t rows, int64_t n,
                           const float *l1, float l1_scalar, int use_l1,
                           const float *l2, float l2_scalar, int use_l2, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        float c1 = use_l1 ? strength(l1, l1_scalar, r) : 0.0f;
        float c2 = use_l2 ? strength(l2, l2_scalar, r) : 0.0f;
        if (c1 == 0.0f && c2 == 0.0f) { /* a member without the penalty: not read */
            out[r] = 0.0f;
            continue;
        }
        double s1, s2;
        row_sums(w + r * n, n, use_l1, use_l2, &s1, &s2);
        float total = 0.0f;
        if (use_l1) total = total + c1 * (float)s1;
        if (use_l2) total = total + c2 * (float)s2;
        out[r] = total;
    }
}

/* g += l1_r * sign(w), then g += (2 * l2_r) * w, row by row: torch's two addcmul_ passes'
 * roundings (its kernel fuses the multiply-add: fmaf here, explicitly), in one pass. A row
 * whose strengths are all zero is left as it is. */
void reglab_add_penalty_gradient(float *g, const float *w, int64_t rows, int64_t n,
                                 const float *l1, float l1_scalar, int use_l1,
                                 const float *l2, float l2_scalar, int use_l2) {
    for (int64_t r = 0; r < rows; r++) {
        float *q = g + r * n;
        const float *p = w + r * n;
        float c1 = use_l1 ? strength(l1, l1_scalar, r) : 0.0f;
        float c2 = use_l2 ? strength(l2, l2_scalar, r) * 2.0f : 0.0f;
        if (c1 == 0.0f && c2 == 0.0f) continue; /* a member without the penalty */
        if (use_l1 && use_l2) {
            for (int64_t i = 0; i < n; i++) {
                float v = p[i];
                q[i] = fmaf(v, c2, fmaf(sign_of(v), c1, q[i]));
            }
        } else if (use_l1) {
            for (int64_t i = 0; i < n; i++) q[i] = fmaf(sign_of(p[i]), c1, q[i]);
        } else if (use_l2) {
            for (int64_t i = 0; i < n; i++) q[i] = fmaf(p[i], c2, q[i]);
        }
    }
}
