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
 * (which autograd keeps anyway) rather than have the forward save it: a window of squares from cache and an
 * approximate d^-beta cost less than writing, page-faulting and reading back a tensor of the activation's size
 * (74 MB after conv1 at batch 64), and the saved memory is the activation's size too.
 *
 * Two layouts: NCHW (treated as (N, C, L), L every dim after the channels) and NHWC (channels_last, (N, L, C)).
 * Threads: OpenMP over tiles (images x spatial tiles for NCHW, runs of pixels for NHWC), as many threads as torch
 * uses (the caller passes the count). Linked with -fopenmp, the library's libgomp.so.1 resolves to the one torch
 * has already loaded (same soname; checked in /proc/self/maps), so there is one OpenMP thread pool, not two.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Bumped with every change of the functions' signatures or of what they return: native.py refuses a library that
 * answers otherwise. 2: alexnet_lrn checks its arguments and returns the LRN_* codes below. */
#define ALEXNET_LRN_ABI 2

/* alexnet_lrn's answers (native.py turns each non-zero one into a Python exception). */
#define LRN_OK 0
#define LRN_NO_MEMORY (-1)    /* a thread's scratch rows could not be allocated */
#define LRN_BAD_ARGUMENT (-2) /* a NULL pointer, a count or width below its minimum, a non-finite/negative constant */
#define LRN_TOO_LARGE (-3)    /* the tensor's or the scratch's size overflows the byte counts the kernel computes */

/* Spatial positions per NCHW tile: a window of rows of TILE floats (x, g, q, s) stays in L1 while the channel loop
 * walks down, yet rows are long enough for the prefetchers to stream them. */
#define TILE 512

int alexnet_lrn_abi(void) { return ALEXNET_LRN_ABI; }

/* s = d^-beta over n values and, if w is not NULL, w = d^-beta / d (the backward's factor).
 *
 * This is the kernel's arithmetic bottleneck: exact square roots and divisions share one slow unit (about 12 cycles
 * per 16 floats each on AVX-512), and the backward needs three of them per element. For the paper's beta = 0.75
 * (and 0.5, 1) GCC compiles this one function with fast-math, which turns 1/sqrtf and 1/x into the hardware's
 * approximate reciprocal (square root) plus a Newton step: a few ulp (measured at most 4e-7 relative against
 * float64), not the 0.5 ulp of an exact division, on numbers that feed a gradient. Only here: elsewhere fast-math
 * would reorder the window sums. Other compilers ignore the attribute and give exact results, more slowly. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fast-math")))
#endif
static void neg_pow_sqrt(float *restrict s, float *restrict w, const float *restrict d, int64_t n, float beta) {
    if (beta == 0.75f) {
        for (int64_t i = 0; i < n; i++) {
            float r = 1.0f / sqrtf(d[i]);
            s[i] = r * sqrtf(r);
        }
    } else if (beta == 0.5f) {
        for (int64_t i = 0; i < n; i++) s[i] = 1.0f / sqrtf(d[i]);
    } else {
        for (int64_t i = 0; i < n; i++) s[i] = 1.0f / d[i];
    }
    if (w)
        for (int64_t i = 0; i < n; i++) w[i] = s[i] / d[i];
}

/* Any other beta: exp(-beta log d). glibc's vector math library (libmvec, linked through -lm) has 16-wide expf and
 * logf; declaring them `simd` lets GCC call those instead of the scalar functions, as <math.h> itself does under
 * -ffast-math (which this file avoids, see above). Its functions are within a few ulp. */
#if defined(__GLIBC__) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((simd("notinbranch"))) float expf(float);
__attribute__((simd("notinbranch"))) float logf(float);
#endif

static void neg_pow(float *restrict s, float *restrict w, const float *restrict d, int64_t n, float beta) {
    if (beta == 0.75f || beta == 0.5f || beta == 1.0f) {
        neg_pow_sqrt(s, w, d, n, beta);
        return;
    }
    for (int64_t i = 0; i < n; i++) s[i] = expf(-beta * logf(d[i]));
    if (w)
        for (int64_t i = 0; i < n; i++) w[i] = s[i] / d[i];
}

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* acc[i] = sum over channels j in [lo, hi] of row_j[i] (squared if `square`), i < t; row_j = base + (j % mod) * stride.
 *
 * Rows are added GROUP at a time in one loop (a group short of rows is filled with `zeros`, a zero row at least t
 * long), so that the paper's window of 5 is one pass: GCC 12 vectorises neither a window loop inside the position
 * loop nor keeps a register-blocked sum out of memory, and one pass per row measured 9x slower than one pass. */
#define GROUP 5
static inline void sum_rows(float *restrict acc, const float *base, int64_t stride, int64_t mod, int64_t lo,
                            int64_t hi, int64_t t, int square, const float *zeros) {
    for (int64_t j0 = lo; j0 <= hi; j0 += GROUP) {
        const float *r[GROUP];
        for (int q = 0; q < GROUP; q++) r[q] = j0 + q <= hi ? base + ((j0 + q) % mod) * stride : zeros;
        const float *restrict r0 = r[0], *restrict r1 = r[1], *restrict r2 = r[2], *restrict r3 = r[3],
                              *restrict r4 = r[4];
        /* The first group writes acc (whatever it held, NaN included, is never read), later ones add to it. */
#define SQ(v) (square ? (v) * (v) : (v))
#define GROUP_SUM(i) (SQ(r0[i]) + SQ(r1[i]) + SQ(r2[i]) + SQ(r3[i]) + SQ(r4[i]))
        if (j0 == lo)
            for (int64_t i = 0; i < t; i++) acc[i] = GROUP_SUM(i);
        else
            for (int64_t i = 0; i < t; i++) acc[i] += GROUP_SUM(i);
#undef GROUP_SUM
#undef SQ
    }
}

/* ---- NCHW: per (image, tile of L), walk the channels; rows of one channel are contiguous ---------------------- */

/* d = k + scale * (sum of x_j^2 over the forward window of channel c), over one tile (x points at its start). */
static void denominator_nchw(float *restrict d, const float *restrict x, int64_t C, int64_t L, int64_t t, int64_t c,
                             int before, int after, float scale, float k, const float *zeros) {
    sum_rows(d, x, L, C, imax(0, c - before), imin(C - 1, c + after), t, 1, zeros);
    for (int64_t i = 0; i < t; i++) d[i] = k + scale * d[i];
}

static void forward_nchw_tile(const float *restrict x, float *restrict y, int64_t C, int64_t L, int64_t t, int before,
                              int after, float scale, float beta, float k, float *scratch, const float *zeros) {
    float *d = scratch, *s = scratch + TILE;
    for (int64_t c = 0; c < C; c++) {
        denominator_nchw(d, x, C, L, t, c, before, after, scale, k, zeros);
        neg_pow(s, NULL, d, t, beta);
        const float *xc = x + c * L;
        float *yc = y + c * L;
        for (int64_t i = 0; i < t; i++) yc[i] = xc[i] * s[i];
    }
}

/* s_i and q_i = g_i x_i s_i / d_i are computed `before` channels ahead of the output into rings of `width` rows,
 * so that each input row comes from memory once and is reused from cache. */
static void backward_nchw_tile(const float *restrict x, const float *restrict g, float *restrict dx, int64_t C,
                               int64_t L, int64_t t, int before, int after, float scale, float beta, float k,
                               float *scratch, const float *zeros) {
    int64_t width = (int64_t)before + after + 1;
    float *qring = scratch, *sring = scratch + width * TILE, *d = sring + width * TILE, *w = d + TILE;
    float coef = 2.0f * scale * beta;
    int64_t ready = 0; /* channels [0, ready) have q and s in the rings */
    for (int64_t c = 0; c < C; c++) {
        int64_t lo = imax(0, c - after), hi = imin(C - 1, c + before);
        for (; ready <= hi; ready++) {
            float *q = qring + (ready % width) * TILE, *s = sring + (ready % width) * TILE;
            const float *xr = x + ready * L, *gr = g + ready * L;
            denominator_nchw(d, x, C, L, t, ready, before, after, scale, k, zeros);
            neg_pow(s, w, d, t, beta);
            for (int64_t i = 0; i < t; i++) q[i] = gr[i] * xr[i] * w[i];
        }
        const float *s = sring + (c % width) * TILE, *xc = x + c * L, *gc = g + c * L;
        float *out = dx + c * L, *acc = d; /* d is free again */
        sum_rows(acc, qring, TILE, width, lo, hi, t, 0, zeros);
        for (int64_t i = 0; i < t; i++) out[i] = gc[i] * s[i] - coef * xc[i] * acc[i];
    }
}

/* ---- NHWC: tiles of pixels whose C channels are contiguous; a window is a sum of shifted loads ----------------
 *
 * A tile of P pixels is copied (squared) into zero-padded rows of R = C + width - 1 floats laid end to end, so that
 * one flat pass computes every pixel's window sums: position p * R + c sums the `width` floats from there, which are
 * channels c - before .. c + after of pixel p. The width - 1 positions between pixels compute sums nobody reads
 * (4% extra work at C = 96): the price of running each loop over thousands of floats instead of 96. */

/* Pixels per tile: about NHWC_FLOATS padded floats, so that a tile's buffers stay in L1/L2 (1024 to 4096 measured
 * within noise of each other). */
#define NHWC_FLOATS 2048
static int64_t nhwc_pixels(int64_t C, int64_t width) { return imax(1, NHWC_FLOATS / (C + width - 1)); }

/* Scratch per thread: two padded buffers (P * R + width floats, zero between the pixels), then d, s, w and a row
 * of zeros for sum_rows (P * R each). */
static size_t nhwc_scratch(int64_t C, int64_t width) {
    int64_t R = C + width - 1, P = nhwc_pixels(C, width);
    return (size_t)(2 * (P * R + width) + 4 * P * R);
}

/* d = k + scale * window sums of squares, s = d^-beta (and w = s / d if w) for pixels x[0 .. P) of one tile. */
static void denominator_nhwc(float *restrict pad, float *restrict d, float *restrict s, float *restrict w,
                             const float *restrict x, int64_t P, int64_t C, int before, int64_t width, float scale,
                             float beta, float k, const float *zeros) {
    int64_t R = C + width - 1, n = P * R;
    for (int64_t p = 0; p < P; p++)
        for (int64_t c = 0; c < C; c++) pad[p * R + before + c] = x[p * C + c] * x[p * C + c];
    sum_rows(d, pad, 1, n + width, 0, width - 1, n, 0, zeros); /* row o is the buffer shifted by o */
    for (int64_t i = 0; i < n; i++) d[i] = k + scale * d[i];
    neg_pow(s, w, d, n, beta);
}

static void forward_nhwc_tile(const float *restrict x, float *restrict y, int64_t P, int64_t C, int before,
                              int64_t width, float scale, float beta, float k, float *scratch) {
    int64_t R = C + width - 1, cap = nhwc_pixels(C, width) * R;
    float *pad = scratch, *d = scratch + 2 * (cap + width), *s = d + cap, *zeros = d + 3 * cap;
    denominator_nhwc(pad, d, s, NULL, x, P, C, before, width, scale, beta, k, zeros);
    for (int64_t p = 0; p < P; p++)
        for (int64_t c = 0; c < C; c++) y[p * C + c] = x[p * C + c] * s[p * R + c];
}

static void backward_nhwc_tile(const float *restrict x, const float *restrict g, float *restrict dx, int64_t P,
                               int64_t C, int before, int after, int64_t width, float scale, float beta, float k,
                               float *scratch) {
    int64_t R = C + width - 1, n = P * R, cap = nhwc_pixels(C, width) * R;
    /* The buffers' places follow the full tile, not this one's P: the last, shorter tile must find the pads' gaps
     * where earlier tiles left them, zero. */
    float *pad = scratch, *qpad = scratch + cap + width, *d = qpad + cap + width, *s = d + cap, *w = s + cap;
    const float *zeros = w + cap;
    denominator_nhwc(pad, d, s, w, x, P, C, before, width, scale, beta, k, zeros);
    /* qpad[p * R + after + i] = q_i: the sum from p * R + j covers channels j - after .. j + before (mirrored) */
    for (int64_t p = 0; p < P; p++)
        for (int64_t c = 0; c < C; c++) qpad[p * R + after + c] = g[p * C + c] * x[p * C + c] * w[p * R + c];
    float *acc = d; /* d is free again */
    sum_rows(acc, qpad, 1, n + width, 0, width - 1, n, 0, zeros);
    float coef = 2.0f * scale * beta;
    for (int64_t p = 0; p < P; p++)
        for (int64_t c = 0; c < C; c++)
            dx[p * C + c] = g[p * C + c] * s[p * R + c] - coef * x[p * C + c] * acc[p * R + c];
}

/* ---- entry points --------------------------------------------------------------------------------------------- */

/* Whether a * b <= limit, for a, b >= 1, computed without overflowing. */
static int product_fits(int64_t a, int64_t b, int64_t limit) { return a <= limit / b; }

/* The largest element count any buffer may have: its byte count must fit in a ptrdiff_t (pointer arithmetic on
 * it is defined) and leave room for the few extra rows each scratch layout adds. */
#define MAX_FLOATS ((int64_t)(PTRDIFF_MAX / sizeof(float) / 16))

/* One call runs either direction: y = LRN(x) when g is NULL, else y = dL/dx given g = dL/dLRN(x). channels_last: 0
 * for NCHW, 1 for NHWC. Returns LRN_OK or one of the LRN_* errors above, having touched nothing.
 *
 * The arguments are checked here as well as in native.py because this is the function that indexes memory: a
 * negative width or count would index before the buffers, an overflowing product would wrap to a small scratch
 * that the loops then run past. Both are refused, never computed with. */
int alexnet_lrn(const float *x, const float *g, float *y, int64_t N, int64_t C, int64_t L, int channels_last,
                int before, int after, float scale, float beta, float k, int threads) {
    if (!x || !y || N < 1 || C < 1 || L < 1 || before < 0 || after < 0 || threads < 1 ||
        (channels_last != 0 && channels_last != 1))
        return LRN_BAD_ARGUMENT;
    if (!isfinite(scale) || !isfinite(beta) || !isfinite(k) || scale < 0 || beta < 0 || k < 0)
        return LRN_BAD_ARGUMENT;
    if (!product_fits(N, C, MAX_FLOATS) || !product_fits(N * C, L, MAX_FLOATS) || C > MAX_FLOATS / (4 * TILE))
        return LRN_TOO_LARGE;
    /* A channel further than C - 1 away is outside [0, C - 1] for every channel, so it adds nothing to any window:
     * clamping gives the same numbers and bounds the scratch (2 * width + 3 rows) by the channel count. */
    if (before > C - 1) before = (int)(C - 1);
    if (after > C - 1) after = (int)(C - 1);
    int failed = 0;
    int64_t width = (int64_t)before + after + 1;
    if (!channels_last) {
        int64_t tiles = (L + TILE - 1) / TILE;
#pragma omp parallel num_threads(threads) reduction(| : failed)
        {
            /* q and s rings, d, w, and a row of zeros for sum_rows */
            float *scratch = calloc((size_t)(2 * width + 3) * TILE, sizeof(float));
            if (!scratch) failed = 1;
#pragma omp for schedule(static)
            for (int64_t w = 0; w < N * tiles; w++) {
                if (!scratch) continue;
                const float *zeros = scratch + (2 * width + 2) * TILE;
                int64_t p0 = (w % tiles) * TILE, off = (w / tiles) * C * L + p0, t = imin(TILE, L - p0);
                if (g)
                    backward_nchw_tile(x + off, g + off, y + off, C, L, t, before, after, scale, beta, k, scratch,
                                       zeros);
                else
                    forward_nchw_tile(x + off, y + off, C, L, t, before, after, scale, beta, k, scratch, zeros);
            }
            free(scratch);
        }
    } else {
#pragma omp parallel num_threads(threads) reduction(| : failed)
        {
            float *scratch = calloc(nhwc_scratch(C, width), sizeof(float)); /* calloc: the pads' gaps stay zero */
            if (!scratch) failed = 1;
            int64_t P = nhwc_pixels(C, width), tiles = (N * L + P - 1) / P;
#pragma omp for schedule(static)
            for (int64_t w = 0; w < tiles; w++) {
                if (!scratch) continue;
                int64_t p0 = w * P, np = imin(P, N * L - p0), off = p0 * C;
                if (g)
                    backward_nhwc_tile(x + off, g + off, y + off, np, C, before, after, width, scale, beta, k,
                                       scratch);
                else
                    forward_nhwc_tile(x + off, y + off, np, C, before, width, scale, beta, k, scratch);
            }
            free(scratch);
        }
    }
    return failed ? LRN_NO_MEMORY : LRN_OK;
}
