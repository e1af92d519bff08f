/* reglab's native Adam step: every member's row of one weight in one call, each row with
 * its own hyperparameters, in one pass over the weight, its gradient and both moments.
 *
 * The arithmetic is that of the vectorized loop of torch's fused CPU kernel
 * (torch._fused_adam_, which the engine calls otherwise), operation for operation, after
 * the L1 penalty's gradient as reglab's penalty kernel adds it:
 *   g  = fma(sign(w), l1, g)                   (the sign part, when non-zero)
 *   g' = fma(w, decay, g)                      (torch's coupled weight_decay, when non-zero)
 *   m' = lerp(m, g', 1 - beta_1)               (fma, in torch's two branches of lerp)
 *   v' = fma(g', g' * (1 - beta_2), v * beta_2)
 *   w' = w - step_size * m' / (sqrt(v') / sqrt(1 - beta_2**t) + eps)
 * with every coefficient rounded to float32 as torch rounds them. A row of a length that is
 * a multiple of torch's vector width gets torch's bits; torch's scalar tail (the last
 * elements of other lengths) rounds otherwise, so the kernel uses the vector formula on
 * every element of every row: a member's result never depends on its row's length or
 * position, nor on its neighbours. Built with -ffp-contract=off: only the fma written here.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "sgemm.h"
#include "sign.h"

enum { BETA_1, LERP_WEIGHT, BETA_2, ONE_MINUS_BETA_2, BIAS_CORRECTION_2_SQRT, EPSILON,
       STEP_SIZE, COEFFICIENTS };

/* One row of n elements. The three flags are constants at each call below, so that the
 * compiler writes one loop per case with no test inside it (the loop with the tests in it
 * was 1.7x slower on a Zen 3, whose compiler computed both sides of each and blended);
 * each case does the arithmetic above, operation for operation. */
static inline __attribute__((always_inline)) void adam_row(
        float *pw, const float *pg, float *pm, float *pv, int64_t n, const float *c,
        float l1, float wd, const int use_sign, const int use_decay, const int low) {
    const float beta_2 = c[BETA_2], one_minus_beta_2 = c[ONE_MINUS_BETA_2];
    const float weight = c[LERP_WEIGHT], rest = 1.0f - weight;
    const float correction = c[BIAS_CORRECTION_2_SQRT], eps = c[EPSILON];
    const float step_size = c[STEP_SIZE];
    for (int64_t i = 0; i < n; i++) {
        float x = pw[i];
        float grad = use_sign ? fmaf(sign_of(x), l1, pg[i]) : pg[i];
        if (use_decay) grad = fmaf(x, wd, grad);
        float diff = grad - pm[i];
        float mean = low ? fmaf(weight, diff, pm[i]) : fmaf(-diff, rest, grad);
        float var = fmaf(grad, grad * one_minus_beta_2, pv[i] * beta_2);
        pm[i] = mean;
        pv[i] = var;
        pw[i] = x - step_size * mean / (sqrtf(var) / correction + eps);
    }
}

/* rows of n elements; coef: COEFFICIENTS floats per row (the enum above); sign, decay: one
 * per row, or NULL for none. */
static void adam_rows(float *w, const float *g, float *m, float *v, int64_t rows, int64_t n,
                      const float *coef, const float *sign, const float *decay) {
    for (int64_t r = 0; r < rows; r++) {
        const float *c = coef + COEFFICIENTS * r;
        const float wd = decay ? decay[r] : 0.0f;
        const float l1 = sign ? sign[r] : 0.0f;
        const int low = c[LERP_WEIGHT] < 0.5f;
        float *pw = w + r * n, *pm = m + r * n, *pv = v + r * n;
        const float *pg = g + r * n;
        const int use_sign = l1 != 0.0f, use_decay = wd != 0.0f;
        if (!use_sign && !use_decay) {
            if (low) adam_row(pw, pg, pm, pv, n, c, l1, wd, 0, 0, 1);
            else adam_row(pw, pg, pm, pv, n, c, l1, wd, 0, 0, 0);
        } else if (!use_decay) {
            if (low) adam_row(pw, pg, pm, pv, n, c, l1, wd, 1, 0, 1);
            else adam_row(pw, pg, pm, pv, n, c, l1, wd, 1, 0, 0);
        } else if (!use_sign) {
            if (low) adam_row(pw, pg, pm, pv, n, c, l1, wd, 0, 1, 1);
            else adam_row(pw, pg, pm, pv, n, c, l1, wd, 0, 1, 0);
        } else {
            if (low) adam_row(pw, pg, pm, pv, n, c, l1, wd, 1, 1, 1);
            else adam_row(pw, pg, pm, pv, n, c, l1, wd, 1, 1, 0);
        }
    }
}

/* One step of `count` weights (each rows x n[k] elements; the same rows and coefficients
 * for all), in one call: the pointer arrays hold each weight's tensors. */
void reglab_adam_step(int64_t count, float *const *w, const float *const *g, float *const *m,
                      float *const *v, const int64_t *n, int64_t rows, const float *coef,
                      const float *const *sign, const float *const *decay) {
    for (int64_t k = 0; k < count; k++)
        if (n[k] > 0) adam_rows(w[k], g[k], m[k], v[k], rows, n[k], coef, sign[k], decay[k]);
}

/* One step of a first-layer kernel whose gradient is made here, member by member: for each
 * of the `count` members of a seed group, its gradient x^T @ dy[j] by the sgemm call that
 * reglab_members_kernel_grad_f32 makes (the same arguments, so the same numbers), into
 * `scratch` (one member's gradient, in*units floats, aligned as a block of the stacked
 * gradient would be), then Adam's step on that member's row of w, m and v with it, while
 * the gradient is still in cache: the stacked gradient is never written to memory and read
 * back. x: (rows, in); dy: count blocks of (rows, units); w, m, v: count rows of in*units
 * (the group's first member's first); coef, sign, decay: as reglab_adam_step's, from the
 * group's first member. */
void reglab_adam_step_member_products_f32(
        void *sgemm, int64_t count, int rows, int in, int units, const float *x,
        const float *dy, float *scratch, float *w, float *m, float *v, const float *coef,
        const float *sign, const float *decay) {
    reglab_sgemm gemm = (reglab_sgemm)sgemm;
    const float one = 1.0f, zero = 0.0f;
    const int64_t n = (int64_t)in * units;
    for (int64_t j = 0; j < count; j++) {
        gemm("N", "T", &units, &in, &rows, &one, dy + j * (int64_t)rows * units, &units, x,
             &in, &zero, scratch, &units);
        adam_rows(w + j * n, scratch, m + j * n, v + j * n, 1, n, coef + COEFFICIENTS * j,
                  sign ? sign + j : NULL, decay ? decay + j : NULL);
    }
}
