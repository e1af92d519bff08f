/* reglab's native kernels: a seed group's kernels laid side by side for one bfloat16 GEMM,
 * and the GEMM's gradient taken back into each member's float32 block.
 *
 * Under mixed precision the shared first layer multiplies a group's batch by its k
 * members' kernels at once: x @ [W_1 ... W_k]. The members' float32 kernels are k blocks of
 * (rows, width); the GEMM reads a bfloat16 (rows, k * width) matrix, member m's block in
 * columns [m * width, (m + 1) * width). torch's copy_ of the permuted view does the cast
 * and the transposition element by element through its strided iterator; here each
 * member's row of `width` values is one contiguous run on both sides, converted in one
 * vectorizable loop. The bits are torch's casts' (bfloat16.h): rounding to nearest even
 * one way, exact the other.
 *
 * members: k blocks of (rows, width) float32, `stride` floats apart (a member's block
 * size when they are adjacent); side: (rows, k, width) bfloat16, contiguous.
 */
#include <stdint.h>
#include <string.h>

#include "bfloat16.h"

void reglab_lay_side_by_side_bf16(const float *members, int64_t k, int64_t stride,
                                  int64_t rows, int64_t width, uint16_t *side) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t m = 0; m < k; m++) {
            const float *from = members + m * stride + r * width;
            uint16_t *to = side + (r * k + m) * width;
            for (int64_t i = 0; i < width; i++)
                to[i] = narrow(from[i]);
        }
}

void reglab_take_side_by_side_bf16(const uint16_t *side, int64_t k, int64_t stride,
                                   int64_t rows, int64_t width, float *members) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t m = 0; m < k; m++) {
            const uint16_t *from = side + (r * k + m) * width;
            float *to = members + m * stride + r * width;
            for (int64_t i = 0; i < width; i++)
                to[i] = widen(from[i]);
        }
}

/* The same layouts for two-byte elements of one dtype (bfloat16 or float16 activations and
 * their gradients: a group's output taken from its GEMM's side-by-side matrix into each
 * member's block, a member's output gradient laid side by side for the GEMM of the
 * weight's gradient): copies, each member's row one contiguous run. */
void reglab_lay_side_by_side_u16(const uint16_t *members, int64_t k, int64_t stride,
                                 int64_t rows, int64_t width, uint16_t *side) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t m = 0; m < k; m++)
            memcpy(side + (r * k + m) * width, members + m * stride + r * width,
                   (size_t)width * sizeof *side);
}

void reglab_take_side_by_side_u16(const uint16_t *side, int64_t k, int64_t stride,
                                  int64_t rows, int64_t width, uint16_t *members) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t m = 0; m < k; m++)
            memcpy(members + m * stride + r * width, side + (r * k + m) * width,
                   (size_t)width * sizeof *members);
}
