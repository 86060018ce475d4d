/* A plain C loop over rqs_block (rqs_avx512.h) on both cores. n must be a multiple of 16. */
#include "../../bayesflow_nets/bijectors/_kernels/rqs_avx512.h"

void rqs_spline_f32(int n, const float *restrict x, const float *restrict p, float lo, float hi,
                    int inverse, float *restrict y, float *restrict ld)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i += 16)
        rqs_block(n, x + i, p + i, 0, lo, hi, inverse, y + i, ld + i, (__mmask16)0xFFFF);
}
