/* torch.sign's values: 1, -1, and 0 for +-0 and NaN (shared by reglab's kernels). */
#ifndef REGLAB_SIGN_H
#define REGLAB_SIGN_H
static inline float sign_of(float x) { return (float)(x > 0.0f) - (float)(x < 0.0f); }
#endif
