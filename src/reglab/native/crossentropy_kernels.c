/* reglab's native kernel: the gradient of the fused softmax + sparse crossentropy of a
 * training step with respect to the logits (engine/softmax_crossentropy.py), in one pass.
 *
 * torch forms it in seven operations over (P, B, K) and (P, B): inside = clipped == p,
 * coef = where(inside, grad_loss, 0), its unsqueeze, grad = probs * coef, -coef, and
 * grad.scatter_add_(-1, label, -coef). Here each sample's row is written once, with
 * torch's arithmetic in torch's order, so the bits are torch's:
 *   c          = clipped == p ? g : 0        (NaN compares unequal: 0, as where's)
 *   grad[k]    = probs[k] * c                 for every class k
 *   grad[y]    = grad[y] + (-c)               the labelled class, as scatter_add_ adds
 * in float32, built with -ffp-contract=off and without -ffast-math (no fused
 * multiply-add, no reordering: see penalty_kernels.c).
 *
 * probs, grad: (P, B, K) rows; p, clipped: (P, B) rows; label and g: (P, B) read at
 * m * member_stride + b * sample_stride (a batch's labels or the mean's gradient are often
 * one row expanded to every member). Every label is checked to lie in [0, K) first: -1,
 * nothing written, when one does not (0 when done).
 */
#include <stdint.h>

int reglab_crossentropy_backward_f32(const float *probs, const int64_t *label,
                                     int64_t label_member_stride, int64_t label_sample_stride,
                                     const float *p, const float *clipped, const float *g,
                                     int64_t g_member_stride, int64_t g_sample_stride,
                                     int64_t members, int64_t batch, int64_t classes,
                                     float *grad) {
    for (int64_t m = 0; m < members; m++)
        for (int64_t b = 0; b < batch; b++) {
            int64_t y = label[m * label_member_stride + b * label_sample_stride];
            if (y < 0 || y >= classes)
                return -1;
        }
    for (int64_t m = 0; m < members; m++)
        for (int64_t b = 0; b < batch; b++) {
            int64_t i = m * batch + b;
            float c = clipped[i] == p[i] ? g[m * g_member_stride + b * g_sample_stride] : 0.0f;
            const float *row = probs + i * classes;
            float *out = grad + i * classes;
            for (int64_t k = 0; k < classes; k++)
                out[k] = row[k] * c;
            int64_t y = label[m * label_member_stride + b * label_sample_stride];
            out[y] = out[y] + (-c);
        }
    return 0;
}
