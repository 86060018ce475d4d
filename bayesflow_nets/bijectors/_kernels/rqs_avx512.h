/* The rational-quadratic spline of bayesflow_nets.bijectors.rqs_blocked (8 bins, identity
 * tails), 16 splines per AVX-512 vector: exp and log by range reduction and the polynomial
 * coefficients of Cephes' expf and logf (S. Moshier); the softmaxes, the knot walk and the bin's
 * values as masked blends, no gathers. Needs AVX-512F only. Used by rqs_ffi.cc (the package's
 * XLA FFI kernel) and by benchmarks/native/rqs_spline_avx512.c. */
#ifndef RQS_AVX512_H
#define RQS_AVX512_H
#include <immintrin.h>

#define K 8
#define MIN_BIN 1e-3f
#define MIN_DERIVATIVE 1e-3f

static inline __m512 vexp(__m512 x) { /* x <= 0 */
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - n ln2 (two constants) */
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 vlog(__m512 x) { /* x > 0, finite */
    __m512 e = _mm512_getexp_ps(x); /* floor(log2 x) */
    __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src); /* [0.75, 1.5) */
    e = _mm512_sub_ps(e, _mm512_getexp_ps(m)); /* x = m 2^e */
    __m512 f = _mm512_sub_ps(m, _mm512_set1_ps(1.0f)); /* [-0.25, 0.5) */
    /* log(1 + f) = f - f^2 / 2 + f^3 P(f) */
    __m512 p = _mm512_set1_ps(7.0376836292e-2f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-1.1514610310e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.1676998740e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-1.2420140846e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.4249322787e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-1.6668057665e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.0000714765e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-2.4999993993e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(3.3333331174e-1f));
    __m512 f2 = _mm512_mul_ps(f, f);
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, f2), f);
    y = _mm512_fnmadd_ps(f2, _mm512_set1_ps(0.5f), y);
    y = _mm512_add_ps(y, f);
    return _mm512_fmadd_ps(e, _mm512_set1_ps(0.69314718055994531f), y);
}

/* row j of the parameters, plus row j of the bias when there is one */
static inline __m512 rqs_param(const float *p, const float *b, long n, int j, __mmask16 lanes)
{
    const __m512 v = _mm512_maskz_loadu_ps(lanes, p + j * n);
    return b ? _mm512_add_ps(v, _mm512_maskz_loadu_ps(lanes, b + j * n)) : v;
}

static inline __m512 vsoftplus(__m512 u) {
    __m512 a = _mm512_abs_ps(u);
    __m512 e = vexp(_mm512_sub_ps(_mm512_setzero_ps(), a));
    return _mm512_add_ps(_mm512_max_ps(u, _mm512_setzero_ps()),
                         vlog(_mm512_add_ps(e, _mm512_set1_ps(1.0f))));
}

/* The splines of the lanes set in `lanes` at x[0..16): row j of their parameters at
 * p[j * n + 0..16), plus b[j * n + 0..16) when b is not null. Writes y and ld (log|dy/dx|, or
 * log|dx/dy| when inverse) for those lanes. */
static inline void rqs_block(long n, const float *x, const float *p, const float *b, float lo,
                             float hi, int inverse, float *y, float *ld, __mmask16 lanes)
{
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m512 step = _mm512_set1_ps((hi - lo) * MIN_BIN);
    const __m512 span = _mm512_set1_ps((hi - lo) * (1 - MIN_BIN * K));
    __m512 ew[K], eh[K];
    __m512 mw = rqs_param(p, b, n, 0, lanes);
    __m512 mh = rqs_param(p, b, n, K, lanes);
    for (int j = 1; j < K; j++) {
        mw = _mm512_max_ps(mw, rqs_param(p, b, n, j, lanes));
        mh = _mm512_max_ps(mh, rqs_param(p, b, n, K + j, lanes));
    }
    __m512 sw = _mm512_setzero_ps(), sh = _mm512_setzero_ps();
    for (int j = 0; j < K; j++) {
        ew[j] = vexp(_mm512_sub_ps(rqs_param(p, b, n, j, lanes), mw));
        eh[j] = vexp(_mm512_sub_ps(rqs_param(p, b, n, K + j, lanes), mh));
        sw = _mm512_add_ps(sw, ew[j]);
        sh = _mm512_add_ps(sh, eh[j]);
    }
    const __m512 cw = _mm512_div_ps(span, sw), ch = _mm512_div_ps(span, sh);
    const __m512 xv = _mm512_maskz_loadu_ps(lanes, x);
    const __m512 xc = _mm512_min_ps(_mm512_max_ps(xv, vlo), vhi);
    __m512 ax = vlo, ay = vlo, x0 = vlo, x1 = vlo, y0 = vlo, y1 = vlo;
    __m512 u0 = _mm512_setzero_ps(), u1 = rqs_param(p, b, n, 2 * K, lanes);
    __mmask16 first = 0xFFFF, last = 0;
    for (int j = 0; j < K; j++) {
        const __m512 bx = _mm512_fmadd_ps(cw, ew[j], _mm512_add_ps(ax, step));
        const __m512 by = _mm512_fmadd_ps(ch, eh[j], _mm512_add_ps(ay, step));
        __mmask16 m = j == 0 ? 0xFFFF : _mm512_cmp_ps_mask(xc, inverse ? ay : ax, _CMP_GE_OQ);
        x0 = _mm512_mask_blend_ps(m, x0, ax);
        x1 = _mm512_mask_blend_ps(m, x1, bx);
        y0 = _mm512_mask_blend_ps(m, y0, ay);
        y1 = _mm512_mask_blend_ps(m, y1, by);
        if (j > 0) {
            first &= ~m;
            u0 = _mm512_mask_blend_ps(m, u0, rqs_param(p, b, n, 2 * K + j - 1, lanes));
            if (j < K - 1)
                u1 = _mm512_mask_blend_ps(m, u1, rqs_param(p, b, n, 2 * K + j, lanes));
        }
        if (j == K - 1) last = m;
        ax = bx;
        ay = by;
    }
    const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
    const __m512 mind = _mm512_set1_ps(MIN_DERIVATIVE);
    __m512 d0 = _mm512_mask_blend_ps(first, _mm512_add_ps(mind, vsoftplus(u0)), one);
    __m512 d1 = _mm512_mask_blend_ps(last, _mm512_add_ps(mind, vsoftplus(u1)), one);
    const __m512 w = _mm512_sub_ps(x1, x0), h = _mm512_sub_ps(y1, y0), s = _mm512_div_ps(h, w);
    const __m512 c2 = _mm512_fnmadd_ps(two, s, _mm512_add_ps(d1, d0));
    __m512 xi;
    if (inverse) {
        const __m512 dy = _mm512_sub_ps(xc, y0);
        const __m512 qa = _mm512_fmadd_ps(dy, c2, _mm512_mul_ps(h, _mm512_sub_ps(s, d0)));
        const __m512 qb = _mm512_fnmadd_ps(dy, c2, _mm512_mul_ps(h, d0));
        const __m512 qc = _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), s), dy);
        __m512 disc = _mm512_fnmadd_ps(_mm512_set1_ps(4.0f), _mm512_mul_ps(qa, qc),
                                       _mm512_mul_ps(qb, qb));
        disc = _mm512_sqrt_ps(_mm512_max_ps(disc, _mm512_setzero_ps()));
        xi = _mm512_div_ps(_mm512_mul_ps(two, qc),
                           _mm512_sub_ps(_mm512_sub_ps(_mm512_setzero_ps(), qb), disc));
    } else {
        xi = _mm512_div_ps(_mm512_sub_ps(xc, x0), w);
    }
    xi = _mm512_min_ps(_mm512_max_ps(xi, _mm512_setzero_ps()), one);
    const __m512 omx = _mm512_sub_ps(one, xi);
    const __m512 om = _mm512_mul_ps(xi, omx);
    const __m512 den = _mm512_fmadd_ps(c2, om, s);
    __m512 num = _mm512_mul_ps(d1, _mm512_mul_ps(xi, xi));
    num = _mm512_fmadd_ps(_mm512_mul_ps(two, s), om, num);
    num = _mm512_fmadd_ps(d0, _mm512_mul_ps(omx, omx), num);
    num = _mm512_mul_ps(_mm512_mul_ps(s, s), num);
    const __m512 lg = _mm512_sub_ps(vlog(num), _mm512_mul_ps(two, vlog(den)));
    const __mmask16 inside = _mm512_cmp_ps_mask(xv, vlo, _CMP_GT_OQ) & _mm512_cmp_ps_mask(xv, vhi, _CMP_LT_OQ);
    __m512 out;
    if (inverse) out = _mm512_fmadd_ps(xi, w, x0);
    else out = _mm512_fmadd_ps(h, _mm512_div_ps(_mm512_fmadd_ps(d0, om, _mm512_mul_ps(s, _mm512_mul_ps(xi, xi))), den), y0);
    _mm512_mask_storeu_ps(y, lanes, _mm512_mask_blend_ps(inside, xv, out));
    const __m512 l = inverse ? _mm512_sub_ps(_mm512_setzero_ps(), lg) : lg;
    _mm512_mask_storeu_ps(ld, lanes, _mm512_maskz_mov_ps(inside, l));
}

#endif
