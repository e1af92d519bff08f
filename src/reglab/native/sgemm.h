/* The BLAS sgemm's signature (Fortran: every argument by reference). The routine itself is
 * the one in torch's own library, found by the Python caller and passed in as a pointer, so
 * that a product made here is the one torch makes (native/member_products.py). */
#ifndef REGLAB_SGEMM_H
#define REGLAB_SGEMM_H

typedef void (*reglab_sgemm)(const char *transa, const char *transb, const int *m,
                             const int *n, const int *k, const float *alpha, const float *a,
                             const int *lda, const float *b, const int *ldb,
                             const float *beta, float *c, const int *ldc);

#endif
