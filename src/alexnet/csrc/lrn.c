/* Cross-channel Local Response Normalization, float32, forward and closed-form backward in one pass each.
 *
 * Compiled on first use by alexnet/native.py (plain C so that it builds in under a second; no torch headers) and
 * called through ctypes on the tensors' data pointers. The numbers are those of alexnet/lrn.py:
 *
 *     d_i = k + scale * sum_{j = i - before}^{i + after} x_j^2      (channels outside [0, C-1] add nothing)
 *     y_i = x_i * d_i^-beta
 *     dx_j = g_j d_j^-beta - 2 scale beta x_j sum_{i = j - after}^{j + before} g_i x_i d_i^-beta / d_i
 *
 * (the backward's window is the forward's mirrored). lrn.py passes before/after/scale for either alpha convention.
 * Forward reads x once and writes y; backward reads x and g once and writes dx. The backward recomputes d from x
 * (which autograd keeps anyway) rather than have the forward save it: memory, not arithmetic, bounds this kernel
 * (a window of squares from cache and two square roots cost less than writing, page-faulting and reading back a
 * tensor of the activation's size).
 *
 * Two layouts: NCHW (treated as (N, C, L), L every dim after the channels) and NHWC (channels_last, (N, L, C)).
 * Threads: OpenMP over images x spatial tiles, as many threads as torch uses (the caller passes the count); linked
 * with -fopenmp, this shares torch's own libgomp.so.1 (same soname, already loaded), so no second thread pool.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bumped with every change of the functions' signatures: native.py refuses a library that answers otherwise. */
#define ALEXNET_LRN_ABI 1

/* Spatial positions per NCHW tile: a window of rows of TILE floats (x, g, q, s) stays in L1 while the channel loop
 * walks down, yet rows are long enough for the prefetchers to stream them. */
#define TILE 512

int alexnet_lrn_abi(void) { return ALEXNET_LRN_ABI; }

/* s = d^-beta over n values. beta = 0.75 (the paper's) is rsqrt(d) * sqrt(rsqrt(d)): two square roots and a
 * division vectorise; powf does not without -ffast-math's vector math library. */
static void neg_pow(float *restrict s, const float *restrict d, int64_t n, float beta) {
    if (beta == 0.75f) {
        for (int64_t i = 0; i < n; i++) {
            float r = 1.0f / sqrtf(d[i]);
            s[i] = r * sqrtf(r);
        }
    } else if (beta == 0.5f) {
        for (int64_t i = 0; i < n; i++) s[i] = 1.0f / sqrtf(d[i]);
    } else if (beta == 1.0f) {
        for (int64_t i = 0; i < n; i++) s[i] = 1.0f / d[i];
    } else {
        for (int64_t i = 0; i < n; i++) s[i] = powf(d[i], -beta);
    }
}

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- NCHW: per (image, tile of L), walk the channels; rows of one channel are contiguous ---------------------- */

/* d = k + scale * (sum of x_j^2 over the forward window of channel c), over one tile. */
static void denominator_nchw(float *restrict d, const float *x, int64_t C, int64_t L, int64_t p0, int64_t t, int64_t c,
                             int before, int after, float scale, float k) {
    int64_t lo = imax(0, c - before), hi = imin(C - 1, c + after);
    for (int64_t i = 0; i < t; i++) d[i] = 0.0f;
    for (int64_t j = lo; j <= hi; j++) {
        const float *xj = x + j * L + p0;
        for (int64_t i = 0; i < t; i++) d[i] += xj[i] * xj[i];
    }
    for (int64_t i = 0; i < t; i++) d[i] = k + scale * d[i];
}

static void forward_nchw_tile(const float *x, float *y, int64_t C, int64_t L, int64_t p0, int64_t t, int before,
                              int after, float scale, float beta, float k, float *d, float *s) {
    for (int64_t c = 0; c < C; c++) {
        denominator_nchw(d, x, C, L, p0, t, c, before, after, scale, k);
        neg_pow(s, d, t, beta);
        const float *xc = x + c * L + p0;
        float *yc = y + c * L + p0;
        for (int64_t i = 0; i < t; i++) yc[i] = xc[i] * s[i];
    }
}

/* s_i and q_i = g_i x_i s_i / d_i are computed one window ahead of the output into rings of `width` rows, so that
 * each input row comes from memory once and is reused from cache. */
static void backward_nchw_tile(const float *x, const float *g, float *dx, int64_t C, int64_t L, int64_t p0, int64_t t,
                               int before, int after, float scale, float beta, float k, float *qring, float *sring,
                               float *d) {
    int64_t width = (int64_t)before + after + 1;
    float coef = 2.0f * scale * beta;
    int64_t ready = 0; /* channels [0, ready) have q and s in the rings */
    for (int64_t c = 0; c < C; c++) {
        int64_t lo = imax(0, c - after), hi = imin(C - 1, c + before);
        for (; ready <= hi; ready++) {
            float *q = qring + (ready % width) * TILE, *s = sring + (ready % width) * TILE;
            const float *xr = x + ready * L + p0, *gr = g + ready * L + p0;
            denominator_nchw(d, x, C, L, p0, t, ready, before, after, scale, k);
            neg_pow(s, d, t, beta);
            for (int64_t i = 0; i < t; i++) q[i] = gr[i] * xr[i] * s[i] / d[i];
        }
        float *acc = d; /* free again: d was only needed for q */
        for (int64_t i = 0; i < t; i++) acc[i] = 0.0f;
        for (int64_t j = lo; j <= hi; j++) {
            const float *q = qring + (j % width) * TILE;
            for (int64_t i = 0; i < t; i++) acc[i] += q[i];
        }
        const float *s = sring + (c % width) * TILE;
        const float *xc = x + c * L + p0, *gc = g + c * L + p0;
        float *out = dx + c * L + p0;
        for (int64_t i = 0; i < t; i++) out[i] = gc[i] * s[i] - coef * xc[i] * acc[i];
    }
}

/* ---- NHWC: per pixel, the C channels are contiguous; a window is a sum of shifted loads of a zero-padded row ---- */

/* Scratch per thread for one pixel: two padded rows (C + width - 1 floats each, zero ends) and two rows of C. */
static size_t nhwc_scratch(int64_t C, int64_t width) { return (size_t)(2 * (C + width) + 2 * C); }

/* d_c = k + scale * sum_{o < width} pad[c + o], with pad[before + j] = x_j^2: channels c - before .. c + after. */
static void denominator_nhwc(float *restrict d, float *restrict pad, const float *x, int64_t C, int before,
                             int64_t width, float scale, float k) {
    for (int64_t c = 0; c < C; c++) pad[before + c] = x[c] * x[c];
    for (int64_t c = 0; c < C; c++) d[c] = 0.0f;
    for (int64_t o = 0; o < width; o++) {
        const float *p = pad + o;
        for (int64_t c = 0; c < C; c++) d[c] += p[c];
    }
    for (int64_t c = 0; c < C; c++) d[c] = k + scale * d[c];
}

static void forward_nhwc_pixel(const float *x, float *y, int64_t C, int before, int64_t width, float scale, float beta,
                               float k, float *scratch) {
    float *pad = scratch, *d = scratch + 2 * (C + width), *s = d + C;
    denominator_nhwc(d, pad, x, C, before, width, scale, k);
    neg_pow(s, d, C, beta);
    for (int64_t c = 0; c < C; c++) y[c] = x[c] * s[c];
}

static void backward_nhwc_pixel(const float *x, const float *g, float *dx, int64_t C, int before, int after,
                                int64_t width, float scale, float beta, float k, float *scratch) {
    float *pad = scratch, *qpad = scratch + C + width, *d = scratch + 2 * (C + width), *s = d + C;
    denominator_nhwc(d, pad, x, C, before, width, scale, k);
    neg_pow(s, d, C, beta);
    /* qpad[after + i] = q_i: sum_o qpad[j + o] covers channels j - after .. j + before (the mirrored window) */
    for (int64_t c = 0; c < C; c++) qpad[after + c] = g[c] * x[c] * s[c] / d[c];
    float *acc = d, coef = 2.0f * scale * beta;
    for (int64_t c = 0; c < C; c++) acc[c] = 0.0f;
    for (int64_t o = 0; o < width; o++) {
        const float *p = qpad + o;
        for (int64_t c = 0; c < C; c++) acc[c] += p[c];
    }
    for (int64_t c = 0; c < C; c++) dx[c] = g[c] * s[c] - coef * x[c] * acc[c];
}

/* ---- entry points --------------------------------------------------------------------------------------------- */

/* One call runs either direction: y = LRN(x) when g is NULL, else y = dL/dx given g = dL/dLRN(x). channels_last: 0
 * for NCHW, 1 for NHWC. Returns 0, or -1 when a thread's scratch memory could not be allocated. */
int alexnet_lrn(const float *x, const float *g, float *y, int64_t N, int64_t C, int64_t L, int channels_last,
                int before, int after, float scale, float beta, float k, int threads) {
    int failed = 0;
    int64_t width = (int64_t)before + after + 1;
    if (!channels_last) {
        int64_t tiles = (L + TILE - 1) / TILE;
#pragma omp parallel num_threads(threads) reduction(| : failed)
        {
            float *scratch = malloc((size_t)(2 * width + 2) * TILE * sizeof(float)); /* q ring, s ring, d, s */
            if (!scratch) failed = 1;
#pragma omp for schedule(static)
            for (int64_t w = 0; w < N * tiles; w++) {
                if (!scratch) continue;
                int64_t off = (w / tiles) * C * L, p0 = (w % tiles) * TILE, t = imin(TILE, L - p0);
                if (g)
                    backward_nchw_tile(x + off, g + off, y + off, C, L, p0, t, before, after, scale, beta, k, scratch,
                                       scratch + width * TILE, scratch + 2 * width * TILE);
                else
                    forward_nchw_tile(x + off, y + off, C, L, p0, t, before, after, scale, beta, k, scratch,
                                      scratch + TILE);
            }
            free(scratch);
        }
    } else {
#pragma omp parallel num_threads(threads) reduction(| : failed)
        {
            float *scratch = calloc(nhwc_scratch(C, width), sizeof(float)); /* calloc: the pads' ends stay zero */
            if (!scratch) failed = 1;
#pragma omp for schedule(static)
            for (int64_t p = 0; p < N * L; p++) {
                if (!scratch) continue;
                if (g)
                    backward_nhwc_pixel(x + p * C, g + p * C, y + p * C, C, before, after, width, scale, beta, k,
                                        scratch);
                else
                    forward_nhwc_pixel(x + p * C, y + p * C, C, before, width, scale, beta, k, scratch);
            }
            free(scratch);
        }
    }
    return failed ? -1 : 0;
}
