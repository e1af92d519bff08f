/* reglab's native kernels: the shared first layer's per-member float32 products, one call
 * for a seed group instead of one torch call per member.
 *
 * In float32 each member of a group multiplies the group's batch x (rows, in) by its own
 * kernel (in, units): y_m = bias_m + x @ W_m forward, and x^T @ dY_m for the kernel's
 * gradient. torch's addmm and mm do each with one BLAS sgemm after copying the bias rows
 * into the output (beta 1) or with beta 0; the loops below make the same sgemm calls, with
 * the same arguments, so each member's numbers are torch's bit for bit (checked against
 * torch when the module first uses them). What is saved is torch's dispatch per member
 * (some 4 us each, 90 a step at P = 45). The sgemm is the one torch itself calls, found
 * in torch's library by the caller and passed in.
 *
 * Row-major (rows, units) = (rows, in) @ (in, units) is column-major
 * (units, rows) = (units, in) @ (in, rows): sgemm("N", "N", units, rows, in, ...).
 * The gradient (in, units) = x^T @ dY is column-major (units, in) = dY^T' @ x':
 * sgemm("N", "T", units, in, rows, ...).
 */
#include <stdint.h>
#include <string.h>

#include "sgemm.h"

/* torch's relu in place: 0 where v < 0, else v itself (NaN, -0 and +inf kept, bit for bit). */
static void relu_in_place(float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        v[i] = v[i] < 0.0f ? 0.0f : v[i];
}

/* y[m] = bias[m] + x @ kernel[m] (bias may be NULL: x @ kernel[m]) for members m < count,
 * then relu(y[m]) where `relu` is nonzero, on each member's block while it is in cache;
 * kernel: count blocks of (in, units), `kernel_stride` floats apart; bias: rows of units,
 * `bias_stride` apart; y: count blocks of (rows, units), contiguous. */
void reglab_members_addmm_f32(void *sgemm, int64_t count, int rows, int in, int units,
                              const float *x, const float *kernel, int64_t kernel_stride,
                              const float *bias, int64_t bias_stride, int relu, float *y) {
    reglab_sgemm gemm = (reglab_sgemm)sgemm;
    const float one = 1.0f, zero = 0.0f;
    for (int64_t m = 0; m < count; m++) {
        float *out = y + m * (int64_t)rows * units;
        if (bias != NULL)
            for (int r = 0; r < rows; r++)
                memcpy(out + (int64_t)r * units, bias + m * bias_stride,
                       (size_t)units * sizeof(float));
        gemm("N", "N", &units, &rows, &in, &one, kernel + m * kernel_stride, &units, x, &in,
             bias != NULL ? &one : &zero, out, &units);
        if (relu)
            relu_in_place(out, (int64_t)rows * units);
    }
}

/* grad[m] = x^T @ dy[m] for members m < count; dy: count blocks of (rows, units),
 * contiguous; grad: count blocks of (in, units), contiguous. */
void reglab_members_kernel_grad_f32(void *sgemm, int64_t count, int rows, int in, int units,
                                    const float *x, const float *dy, float *grad) {
    reglab_sgemm gemm = (reglab_sgemm)sgemm;
    const float one = 1.0f, zero = 0.0f;
    for (int64_t m = 0; m < count; m++)
        gemm("N", "T", &units, &in, &rows, &one, dy + m * (int64_t)rows * units, &units, x,
             &in, &zero, grad + m * (int64_t)in * units, &units);
}
