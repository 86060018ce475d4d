/* The rational-quadratic spline of bayesflow_nets.bijectors.rqs_blocked written as one C loop:
 * a reference for how fast a compiled kernel runs the same function on this CPU
 * (benchmarks/rqs_native_floor.py). Not used by the package.
 *
 * Layout as rqs_blocked: x (n,), params (3K - 1, n), rows [widths (K), heights (K), interior
 * derivatives (K - 1)], unnormalised; bins of at least MIN_BIN of the interval, derivatives
 * MIN_DERIVATIVE + softplus, boundary derivatives 1, identity outside (lo, hi). Writes the outputs
 * and the elementwise log|dy/dx| (log|dx/dy| when inverse). Build with OpenMP and fast math so
 * that gcc vectorises the exponentials (see the script for the flags).
 */
#include <math.h>

#define K 8
#define MIN_BIN 1e-3f
#define MIN_DERIVATIVE 1e-3f

static inline float softplus(float u) { return fmaxf(u, 0.f) + log1pf(expf(-fabsf(u))); }

void rqs_spline_f32(int n, const float *restrict x, const float *restrict p, float lo, float hi,
                    int inverse, float *restrict y, float *restrict ld)
{
    const float step = (hi - lo) * MIN_BIN, span = (hi - lo) * (1 - MIN_BIN * K);
#pragma omp parallel for simd schedule(static)
    for (int i = 0; i < n; i++) {
        float ew[K], eh[K];
        float mw = p[i], mh = p[K * n + i];
        for (int j = 1; j < K; j++) {
            mw = fmaxf(mw, p[j * n + i]);
            mh = fmaxf(mh, p[(K + j) * n + i]);
        }
        float sw = 0.f, sh = 0.f;
        for (int j = 0; j < K; j++) {
            ew[j] = expf(p[j * n + i] - mw);
            sw += ew[j];
            eh[j] = expf(p[(K + j) * n + i] - mh);
            sh += eh[j];
        }
        const float cw = span / sw, ch = span / sh;
        const float xv = x[i], xc = fminf(fmaxf(xv, lo), hi);
        /* walk the knots once: the bin is the last one whose left knot is <= xc */
        float ax = lo, ay = lo, x0 = lo, x1 = lo, y0 = lo, y1 = lo;
        int idx = 0;
        for (int j = 0; j < K; j++) {
            const float bx = ax + step + cw * ew[j], by = ay + step + ch * eh[j];
            if (j == 0 || xc >= (inverse ? ay : ax)) {
                x0 = ax; x1 = bx; y0 = ay; y1 = by; idx = j;
            }
            ax = bx;
            ay = by;
        }
        const float u0 = idx > 0 ? p[(2 * K + idx - 1) * n + i] : 0.f;
        const float u1 = idx < K - 1 ? p[(2 * K + idx) * n + i] : 0.f;
        const float d0 = idx == 0 ? 1.f : MIN_DERIVATIVE + softplus(u0);
        const float d1 = idx == K - 1 ? 1.f : MIN_DERIVATIVE + softplus(u1);
        const float w = x1 - x0, h = y1 - y0, s = h / w;
        float xi;
        if (inverse) {
            const float dy = xc - y0, c2 = d1 + d0 - 2 * s;
            const float a = h * (s - d0) + dy * c2, b = h * d0 - dy * c2, c = -s * dy;
            xi = (2 * c) / (-b - sqrtf(fmaxf(b * b - 4 * a * c, 0.f)));
        } else {
            xi = (xc - x0) / w;
        }
        xi = fminf(fmaxf(xi, 0.f), 1.f);
        const float om = xi * (1 - xi), den = s + (d1 + d0 - 2 * s) * om;
        const float num = s * s * (d1 * xi * xi + 2 * s * om + d0 * (1 - xi) * (1 - xi));
        const float log_grad = logf(num) - 2 * logf(den);
        const int inside = (xv > lo) & (xv < hi);
        const float out = inverse ? x0 + xi * w : y0 + h * (s * xi * xi + d0 * om) / den;
        y[i] = inside ? out : xv;
        ld[i] = inside ? (inverse ? -log_grad : log_grad) : 0.f;
    }
}
