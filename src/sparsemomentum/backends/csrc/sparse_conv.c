/* Direct sparse 2-D convolution for masked nn.Conv2d weights (see backends/sparse_conv.py).
 *
 * The weight stays the dense [out, in, kh, kw] array (groups = 1); a CSR pattern over
 * rows = output channels and columns = the flat (c, kh, kw) index says where its non-zeros
 * are, and the kernels read the values there in place, as the linear kernels do.
 *
 * The one idea that makes the loops fast: the "wide" plane. Each sample's input is copied
 * once into a zero-padded scratch (padding is then never a branch), split into
 * stride_h x stride_w phase planes (phase (a, b) holds padded rows a, a+sh, ... and columns
 * b, b+sw, ...) so that every stride becomes stride 1. In a phase plane of width Wq, the
 * output pixel (y, x) of one kernel tap (kh, kw) reads the element at
 *     (y + kh*dh/sh) * Wq + (x + kw*dw/sw)  =  y*Wq + x  +  q(kh, kw),
 * so if the output is also laid out with row stride Wq ("wide": Wq - out_w junk columns
 * per row, dropped at the end), one tap is ONE unit-stride loop over the whole plane:
 *     out_wide[i] += w * plane[q + i],   i = 0 .. out_h*Wq.
 * The forward and the input gradient are such gathers; their accumulators are held in
 * registers a chunk at a time while all of a row's non-zeros stream past (no load/store
 * of the output per non-zero). The weight gradient is a dot product of the wide output
 * gradient (junk columns zero) with the same shifted planes. Junk reads past a plane's
 * end land in zeroed slack and only ever feed junk outputs.
 *
 * Entry points: sm_conv2d_forward, and sm_conv2d_backward for the input gradient, the
 * weight gradient at the non-zeros, or both in one pass over the batch.
 *
 * Small planes (a 4x4 map is 24 wide positions: 1.5 vectors per tap, half of it junk) are
 * interleaved over a block of samples: plane position i of sample j sits at i * b + j, so a
 * tap's loop runs over the same positions of b = 16 samples at once. Every offset is scaled
 * by b and nothing else changes; b = 1 for planes long enough on their own.
 *
 * Threads split the batch into blocks of b samples (each block's scratch stays in that
 * core's cache; no atomics: each sample's output and input gradient belong to one thread,
 * and the weight gradient is summed from per-thread partial sums). A batch of fewer blocks
 * than `threads` leaves threads idle. `threads` is torch.get_num_threads(), from the caller.
 */
#pragma GCC diagnostic ignored "-Wpsabi"  /* static helpers only: no ABI crosses this file */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* geometry[] as passed from Python */
enum { G_N, G_C, G_H, G_W, G_O, G_KH, G_KW, G_SH, G_SW, G_PT, G_PL, G_DH, G_DW, G_OH, G_OW, G_COUNT };

/* Pixel counts (hq, wq, ...) count plane positions; the float offsets derived from them
 * (row, p, cs, lout, qmax, ...) count floats: positions x b, the samples interleaved. */
typedef struct {
    int64_t n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow;
    int64_t kk;       /* kh * kw */
    int64_t s2;       /* phases per channel: sh * sw */
    int64_t b;        /* samples interleaved in each plane */
    int64_t hq, wq;   /* phase plane height and width, in positions */
    int64_t row;      /* floats per plane row: wq * b */
    int64_t p;        /* phase plane size in floats: hq * wq * b */
    int64_t pr;       /* p rounded up to the chunk granule */
    int64_t cs;       /* channel stride in the input scratch: s2 * p */
    int64_t lout, loutr; /* wide output plane oh * wq * b, and rounded up */
    int64_t qmax;     /* largest in-plane tap offset, in floats */
    int64_t xlen;     /* input scratch length (with zeroed slack for the junk reads) */
    int64_t e;        /* per-channel stride of the output-gradient scratch: qmax + pr */
} geometry_t;

#define GRANULE 16  /* = VW below: planes are padded to whole vectors */
/* Wide output planes shorter than this many positions interleave SMALL_PLANE_BLOCK samples. */
#define SMALL_PLANE 64
#define SMALL_PLANE_BLOCK 16

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
/* ceil(a / b) for b > 0 and any a */
static int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

static geometry_t make_geometry(const int64_t *g)
{
    geometry_t t;
    t.n = g[G_N]; t.c = g[G_C]; t.h = g[G_H]; t.w = g[G_W]; t.o = g[G_O];
    t.kh = g[G_KH]; t.kw = g[G_KW]; t.sh = g[G_SH]; t.sw = g[G_SW];
    t.pt = g[G_PT]; t.pl = g[G_PL]; t.dh = g[G_DH]; t.dw = g[G_DW]; t.oh = g[G_OH]; t.ow = g[G_OW];
    t.kk = t.kh * t.kw;
    t.s2 = t.sh * t.sw;
    /* padded extent: whatever a tap reads, and every input position (for the input gradient) */
    const int64_t hp = max64((t.oh - 1) * t.sh + (t.kh - 1) * t.dh + 1, t.h + t.pt);
    const int64_t wp = max64((t.ow - 1) * t.sw + (t.kw - 1) * t.dw + 1, t.w + t.pl);
    t.hq = ceil_div(hp, t.sh);
    t.wq = ceil_div(wp, t.sw);
    t.b = t.oh * t.wq < SMALL_PLANE ? SMALL_PLANE_BLOCK : 1;
    t.row = t.wq * t.b;
    t.p = t.hq * t.row;
    t.pr = round_up(t.p, GRANULE);
    t.cs = t.s2 * t.p;
    t.lout = t.oh * t.row;
    t.loutr = round_up(t.lout, GRANULE);
    t.qmax = (((t.kh - 1) * t.dh / t.sh) * t.wq + (t.kw - 1) * t.dw / t.sw) * t.b;
    t.xlen = t.c * t.cs + t.qmax + t.loutr + GRANULE;
    t.e = t.qmax + t.pr;
    return t;
}

/* phase index and in-plane offset of the kernel tap r = kh_i * kw + kw_i */
static int64_t tap_phase(const geometry_t *t, int64_t r)
{
    const int64_t i = r / t->kw, j = r % t->kw;
    return ((i * t->dh) % t->sh) * t->sw + (j * t->dw) % t->sw;
}

/* in floats */
static int64_t tap_offset(const geometry_t *t, int64_t r)
{
    const int64_t i = r / t->kw, j = r % t->kw;
    return (((i * t->dh) / t->sh) * t->wq + (j * t->dw) / t->sw) * t->b;
}

static float *scratch(int64_t count)
{
    /* 64-byte aligned and zeroed: padding, junk columns and margins are never written again */
    const size_t bytes = (size_t)round_up(count * (int64_t)sizeof(float), 64);
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* GCC/clang vector extensions: 16 floats (two halves on AVX2, four quarters on SSE),
 * with 4-byte alignment so that a dereference is an unaligned load. */
typedef float vf __attribute__((vector_size(64), aligned(4)));
typedef float vf8 __attribute__((vector_size(32), aligned(4)));
typedef float vf4 __attribute__((vector_size(16), aligned(4)));
#define VW 16
/* vectors per chunk: the accumulators (and, in dots, the output gradient) stay in registers,
 * 32 of them with AVX-512, 16 (of half the width) with AVX2 */
#ifdef __AVX512F__
#define MAX_NV 24
#else
#define MAX_NV 6
#endif

/* Short rows (a feature map's width) are copied inline, whole vectors first: a call to
 * memcpy, or a generic vectorised loop, per row cost as much as the arithmetic at 1 %. */
static inline void copy_row(float *restrict dst, const float *restrict src, int64_t count)
{
    if (count == VW) {  /* the common 16-wide map, without the loop */
        *(vf *)dst = *(const vf *)src;
        return;
    }
    int64_t i = 0;
    for (; i + VW <= count; i += VW) *(vf *)(dst + i) = *(const vf *)(src + i);
    if (i + 8 <= count) { *(vf8 *)(dst + i) = *(const vf8 *)(src + i); i += 8; }
    if (i + 4 <= count) { *(vf4 *)(dst + i) = *(const vf4 *)(src + i); i += 4; }
    for (; i < count; ++i) dst[i] = src[i];
}

/* dst = src + b */
static inline void add_row(float *restrict dst, const float *restrict src, float b, int64_t count)
{
    if (count == VW) {
        *(vf *)dst = *(const vf *)src + b;
        return;
    }
    int64_t i = 0;
    for (; i + VW <= count; i += VW) *(vf *)(dst + i) = *(const vf *)(src + i) + b;
    if (i + 8 <= count) { *(vf8 *)(dst + i) = *(const vf8 *)(src + i) + b; i += 8; }
    if (i + 4 <= count) { *(vf4 *)(dst + i) = *(const vf4 *)(src + i) + b; i += 4; }
    for (; i < count; ++i) dst[i] = src[i] + b;
}

/* Samples 0 .. count-1 of `in` ([count, c, h, w]) into the zero-padded phase planes of x
 * (length xlen), sample j in lane j of each position. Only positions inside the input are
 * written: padding was zeroed at allocation and no block ever writes it. A block of fewer
 * than b samples clears the scratch first, so the missing samples' lanes read zeros. */
static void prepare_input(const geometry_t *t, const float *in, int64_t count, float *x)
{
    if (count < t->b) memset(x, 0, (size_t)t->xlen * sizeof(float));
    for (int64_t a = 0; a < t->sh; ++a) {
        /* plane rows y whose input row y*sh + a - pt lies in [0, h) */
        const int64_t y_lo = min64(t->hq, max64(0, ceil_div(t->pt - a, t->sh)));
        const int64_t y_hi = max64(y_lo, min64(t->hq, ceil_div(t->pt + t->h - a, t->sh)));
        for (int64_t bp = 0; bp < t->sw; ++bp) {
            /* plane columns X whose input column X*sw + bp - pl lies in [0, w) */
            const int64_t lo = min64(t->wq, max64(0, ceil_div(t->pl - bp, t->sw)));
            const int64_t hi = max64(lo, min64(t->wq, ceil_div(t->pl + t->w - bp, t->sw)));
            const int64_t width = hi - lo, src_step = t->sh * t->w;
            if (width <= 0 || y_hi <= y_lo) continue;
            for (int64_t j = 0; j < count; ++j) {
                for (int64_t c = 0; c < t->c; ++c) {
                    float *row = x + c * t->cs + (a * t->sw + bp) * t->p + y_lo * t->row + lo * t->b + j;
                    const float *srow = in + (j * t->c + c) * t->h * t->w
                                        + (y_lo * t->sh + a - t->pt) * t->w + lo * t->sw + bp - t->pl;
                    for (int64_t y = y_lo; y < y_hi; ++y, row += t->row, srow += src_step) {
                        if (t->b == 1 && t->sw == 1) {
                            copy_row(row, srow, width);
                        } else {
                            for (int64_t xx = 0; xx < width; ++xx) row[xx * t->b] = srow[xx * t->sw];
                        }
                    }
                }
            }
        }
    }
}

/* Samples 0 .. count-1 of the output gradient ([count, o, oh, ow]) into the wide planes of
 * d (stride e per channel, data from offset qmax, lane j for sample j; junk columns and
 * margins zero: they were zeroed at allocation and are never written). */
static void prepare_output_gradient(const geometry_t *t, const float *dy, int64_t count, float *d)
{
    if (count < t->b) memset(d, 0, (size_t)((t->o + 1) * t->e + 2 * GRANULE) * sizeof(float));
    for (int64_t j = 0; j < count; ++j) {
        for (int64_t o = 0; o < t->o; ++o) {
            const float *src = dy + (j * t->o + o) * t->oh * t->ow;
            float *dst = d + o * t->e + t->qmax + j;
            for (int64_t y = 0; y < t->oh; ++y, dst += t->row, src += t->ow) {
                if (t->b == 1) {
                    copy_row(dst, src, t->ow);
                } else {
                    for (int64_t xx = 0; xx < t->ow; ++xx) dst[xx * t->b] = src[xx];
                }
            }
        }
    }
}

/* sums[0..3] += the horizontal sums of a0..a3: a transposing reduction (halves, then
 * pairs), so four sums cost about as much as one done lane by lane. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define SHUFFLE __builtin_shufflevector
static inline vf8 fold16(vf a)
{
    return SHUFFLE(a, a, 0, 1, 2, 3, 4, 5, 6, 7) + SHUFFLE(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
}

static inline void add_sums4(float *sums, vf a0, vf a1, vf a2, vf a3)
{
    const vf8 b0 = fold16(a0), b1 = fold16(a1), b2 = fold16(a2), b3 = fold16(a3);
    const vf8 c01 = SHUFFLE(b0, b1, 0, 1, 2, 3, 8, 9, 10, 11) + SHUFFLE(b0, b1, 4, 5, 6, 7, 12, 13, 14, 15);
    const vf8 c23 = SHUFFLE(b2, b3, 0, 1, 2, 3, 8, 9, 10, 11) + SHUFFLE(b2, b3, 4, 5, 6, 7, 12, 13, 14, 15);
    const vf8 g = SHUFFLE(c01, c23, 0, 1, 8, 9, 4, 5, 12, 13) + SHUFFLE(c01, c23, 2, 3, 10, 11, 6, 7, 14, 15);
    /* g = [a0 a0 a2 a2 a1 a1 a3 a3] (partial sums) */
    const vf4 h = SHUFFLE(g, g, 0, 4, 2, 6) + SHUFFLE(g, g, 1, 5, 3, 7);
    *(vf4 *)sums += h;
}

static inline float hsum(vf a)
{
    const vf8 b = fold16(a);
    const vf4 c = SHUFFLE(b, b, 0, 1, 2, 3) + SHUFFLE(b, b, 4, 5, 6, 7);
    return (c[0] + c[2]) + (c[1] + c[3]);
}
#else
static inline float hsum(vf a)
{
    float s = 0.0f;
    for (int i = 0; i < VW; ++i) s += a[i];
    return s;
}

static inline void add_sums4(float *sums, vf a0, vf a1, vf a2, vf a3)
{
    sums[0] += hsum(a0); sums[1] += hsum(a1); sums[2] += hsum(a2); sums[3] += hsum(a3);
}
#endif

/* fully unrolled vector loops keep their vectors in registers (GCC left 18 on the stack) */
#define UNROLL _Pragma("GCC unroll 32")

/* out[i] = sum_k w[k] * base[off[k] + i] for i < NV*VW: the NV accumulators stay in
 * registers while all count taps stream past, so the output is written once instead of
 * loaded and stored per non-zero. */
#define DEFINE_GATHER(NV)                                                                           \
    static void gather_##NV(float *restrict out, const float *restrict base,                        \
                            const int64_t *restrict off, const float *restrict w,                   \
                            int64_t count)                                                          \
    {                                                                                               \
        vf acc[NV];                                                                                 \
        UNROLL for (int v = 0; v < (NV); ++v) acc[v] = (vf){0};                                     \
        for (int64_t k = 0; k < count; ++k) {                                                       \
            const float wk = w[k];                                                                  \
            const vf *src = (const vf *)(base + off[k]);                                            \
            UNROLL for (int v = 0; v < (NV); ++v) acc[v] += wk * src[v];                            \
        }                                                                                           \
        vf *dst = (vf *)out;                                                                        \
        UNROLL for (int v = 0; v < (NV); ++v) dst[v] = acc[v];                                      \
    }

/* sums[k] += d[0 : NV*VW] . base[off[k] : + NV*VW]: the NV vectors of d stay in
 * registers, four taps at a time share them (one load per multiply-add). */
#define DEFINE_DOTS(NV)                                                                             \
    static void dots_##NV(float *restrict sums, const float *restrict d,                            \
                          const float *restrict base, const int64_t *restrict off,                  \
                          int64_t count)                                                            \
    {                                                                                               \
        vf dv[NV];                                                                                  \
        UNROLL for (int v = 0; v < (NV); ++v) dv[v] = ((const vf *)d)[v];                           \
        int64_t k = 0;                                                                              \
        for (; k + 4 <= count; k += 4) {                                                            \
            const vf *x0 = (const vf *)(base + off[k]), *x1 = (const vf *)(base + off[k + 1]);      \
            const vf *x2 = (const vf *)(base + off[k + 2]), *x3 = (const vf *)(base + off[k + 3]);  \
            vf a0 = dv[0] * x0[0], a1 = dv[0] * x1[0], a2 = dv[0] * x2[0], a3 = dv[0] * x3[0];      \
            UNROLL for (int v = 1; v < (NV); ++v) {                                                 \
                a0 += dv[v] * x0[v]; a1 += dv[v] * x1[v];                                           \
                a2 += dv[v] * x2[v]; a3 += dv[v] * x3[v];                                           \
            }                                                                                       \
            add_sums4(sums + k, a0, a1, a2, a3);                                                    \
        }                                                                                           \
        for (; k < count; ++k) {                                                                    \
            const vf *x0 = (const vf *)(base + off[k]);                                             \
            vf a0 = dv[0] * x0[0];                                                                  \
            UNROLL for (int v = 1; v < (NV); ++v) a0 += dv[v] * x0[v];                              \
            sums[k] += hsum(a0);                                                                    \
        }                                                                                           \
    }

#if MAX_NV == 24
#define FOR_EACH_NV(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12)               \
    M(13) M(14) M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24)
#else
#define FOR_EACH_NV(M) M(1) M(2) M(3) M(4) M(5) M(6)
#endif
FOR_EACH_NV(DEFINE_GATHER)
FOR_EACH_NV(DEFINE_DOTS)
#define CASE_GATHER(NV) case NV: gather_##NV(out + i0, base + i0, off, w, count); break;
#define CASE_DOTS(NV) case NV: dots_##NV(sums, d + i0, base + i0, off, count); break;

/* The chunks a plane of len floats (a multiple of VW) is cut into: as few as hold at most
 * MAX_NV vectors, as equal as possible (30 vectors: 15 + 15, not 24 + 6). */
static int chunk_vectors(int64_t len)
{
    const int64_t vectors = len / VW, passes = (vectors + MAX_NV - 1) / MAX_NV;
    return (int)((vectors + passes - 1) / passes);
}

/* out[i] = sum_k w[k] * base[off[k] + i] for i < len (a multiple of VW) */
static void gather(float *restrict out, int64_t len, const float *restrict base,
                   const int64_t *restrict off, const float *restrict w, int64_t count)
{
    if (len <= 0) return;
    if (count == 0) {
        memset(out, 0, (size_t)len * sizeof(float));
        return;
    }
    const int nv = chunk_vectors(len);
    for (int64_t i0 = 0; i0 < len; i0 += (int64_t)nv * VW) {
        switch ((int)min64(nv, (len - i0) / VW)) { FOR_EACH_NV(CASE_GATHER) }
    }
}

/* sums[k] += d[0:len] . base[off[k] : off[k] + len] for the count taps (len a multiple of VW) */
static void dots(float *restrict sums, int64_t len, const float *restrict d, const float *restrict base,
                 const int64_t *restrict off, int64_t count)
{
    if (count == 0 || len <= 0) return;
    const int nv = chunk_vectors(len);
    for (int64_t i0 = 0; i0 < len; i0 += (int64_t)nv * VW) {
        switch ((int)min64(nv, (len - i0) / VW)) { FOR_EACH_NV(CASE_DOTS) }
    }
}

/* The values and the input-scratch offsets of the pattern's non-zeros, in pattern order. */
static void forward_taps(const geometry_t *t, const int64_t *offsets, const int32_t *columns,
                         const float *weight, float *values, int64_t *taps)
{
    for (int64_t o = 0; o < t->o; ++o) {
        for (int64_t k = offsets[o]; k < offsets[o + 1]; ++k) {
            const int64_t col = columns[k], c = col / t->kk, r = col % t->kk;
            if (values) values[k] = weight[o * t->c * t->kk + col];
            taps[k] = c * t->cs + tap_phase(t, r) * t->p + tap_offset(t, r);
        }
    }
}

/* sample j's output plane [oh, ow] (contiguous) from lane j of the wide plane, plus bias */
static void write_output(const geometry_t *t, float *dst, const float *wide, int64_t j, float bias)
{
    for (int64_t y = 0; y < t->oh; ++y, dst += t->ow, wide += t->row) {
        if (t->b == 1) {
            add_row(dst, wide, bias, t->ow);
        } else {
            for (int64_t xx = 0; xx < t->ow; ++xx) dst[xx] = wide[xx * t->b + j] + bias;
        }
    }
}

/* output[n, o, y, x] = bias[o] + sum over row o of the pattern of
 *   weight[o, c, i, j] * input[n, c, y*sh + i*dh - pt, x*sw + j*dw - pl]  (zero outside) */
void sm_conv2d_forward(const int64_t *geometry, const int64_t *offsets, const int32_t *columns,
                       const float *weight, const float *input, const float *bias, float *output, int threads)
{
    const geometry_t g = make_geometry(geometry);
    const geometry_t *t = &g;
    const int64_t nnz = offsets[t->o], blocks = (t->n + t->b - 1) / t->b;
    const int64_t in_size = t->c * t->h * t->w, out_size = t->o * t->oh * t->ow;
    float *values = malloc((size_t)(nnz + 1) * sizeof(float));
    int64_t *taps = malloc((size_t)(nnz + 1) * sizeof(int64_t));
    forward_taps(t, offsets, columns, weight, values, taps);
    #pragma omp parallel num_threads((int)min64(threads, blocks))
    {
        float *x = scratch(t->xlen);
        float *wide = scratch(t->loutr);
        #pragma omp for schedule(dynamic, 1)
        for (int64_t block = 0; block < blocks; ++block) {
            const int64_t n0 = block * t->b, count = min64(t->b, t->n - n0);
            prepare_input(t, input + n0 * in_size, count, x);
            for (int64_t o = 0; o < t->o; ++o) {
                const int64_t start = offsets[o];
                gather(wide, t->loutr, x, taps + start, values + start, offsets[o + 1] - start);
                const float b = bias ? bias[o] : 0.0f;
                for (int64_t j = 0; j < count; ++j)
                    write_output(t, output + (n0 + j) * out_size + o * t->oh * t->ow, wide, j, b);
            }
        }
        free(x);
        free(wide);
    }
    free(values);
    free(taps);
}

/* sample j's input gradient of channel c ([h, w], contiguous) from lane j of the phase planes */
static void write_input_gradient(const geometry_t *t, float *dst, const float *din, int64_t pstride, int64_t j)
{
    for (int64_t iy = 0; iy < t->h; ++iy) {
        const int64_t py = iy + t->pt, a = py % t->sh, yy = py / t->sh;
        float *drow = dst + iy * t->w;
        if (t->b == 1 && t->sw == 1) {
            copy_row(drow, din + a * pstride + yy * t->row + t->pl, t->w);
            continue;
        }
        for (int64_t ix = 0; ix < t->w; ++ix) {
            const int64_t px = ix + t->pl;
            drow[ix] = din[(a * t->sw + px % t->sw) * pstride + yy * t->row + (px / t->sw) * t->b + j];
        }
    }
}

/* One block's input gradient: per input channel and phase, a gather over the block's
 * output-gradient planes d through the transposed pattern (values and t_taps). */
static void block_input_gradient(const geometry_t *t, const int64_t *t_offsets, const int64_t *t_taps,
                                 const float *values, const float *d, float *din, int64_t pstride,
                                 float *grad_input, int64_t count)
{
    for (int64_t c = 0; c < t->c; ++c) {
        for (int64_t a = 0; a < t->sh; ++a) {
            /* only the plane rows that hold input rows (not the padding) */
            const int64_t y_lo = min64(t->hq, max64(0, ceil_div(t->pt - a, t->sh)));
            const int64_t y_hi = max64(y_lo, min64(t->hq, ceil_div(t->pt + t->h - a, t->sh)));
            const int64_t len = round_up((y_hi - y_lo) * t->row, GRANULE);
            for (int64_t bp = 0; bp < t->sw; ++bp) {
                const int64_t ph = a * t->sw + bp, row = c * t->s2 + ph, start = t_offsets[row];
                gather(din + ph * pstride + y_lo * t->row, len, d + y_lo * t->row, t_taps + start,
                       values + start, t_offsets[row + 1] - start);
            }
        }
        for (int64_t j = 0; j < count; ++j)
            write_input_gradient(t, grad_input + (j * t->c + c) * t->h * t->w, din, pstride, j);
    }
}

/* The input and weight gradients of the forward above, in one pass over the batch (each
 * block's output gradient is read and laid out once for both); either may be NULL.
 *
 * grad_input[n] is the adjoint of the forward: through the transposed pattern, whose rows
 * are (c, phase) = c * s2 + phase and whose entries are o * kk + tap, each (block, input
 * channel, phase) is a gather over the block's output-gradient planes, so each thread
 * writes only the channels of its own samples (no atomics).
 *
 * grad_weight[o, c, i, j] = sum over n, y, x of grad_output[n, o, y, x] *
 * input[n, c, y*sh + i*dh - pt, x*sw + j*dw - pl], at the pattern's positions of the dense
 * [o, c, kh, kw] array only (others untouched): a dot product per non-zero (over the block's
 * lanes too), summed per thread and then over threads. */
void sm_conv2d_backward(const int64_t *geometry, const int64_t *offsets, const int32_t *columns,
                        const int64_t *t_offsets, const int32_t *t_entries, const float *weight,
                        const float *input, const float *grad_output, float *grad_input, float *grad_weight,
                        int threads)
{
    const geometry_t g = make_geometry(geometry);
    const geometry_t *t = &g;
    const int64_t nnz = offsets[t->o], blocks = (t->n + t->b - 1) / t->b;
    const int64_t rows = t->c * t->s2;
    const int64_t in_size = t->c * t->h * t->w, out_size = t->o * t->oh * t->ow;
    const int64_t pstride = t->pr + 2 * GRANULE; /* per-phase input-gradient scratch, with slack */
    float *values = NULL, *partial = NULL;
    int64_t *t_taps = NULL, *taps = NULL;
    if (grad_input) {
        values = malloc((size_t)(nnz + 1) * sizeof(float));
        t_taps = malloc((size_t)(nnz + 1) * sizeof(int64_t));
        for (int64_t row = 0; row < rows; ++row) {
            const int64_t c = row / t->s2;
            for (int64_t k = t_offsets[row]; k < t_offsets[row + 1]; ++k) {
                const int64_t entry = t_entries[k], o = entry / t->kk, r = entry % t->kk;
                values[k] = weight[(o * t->c + c) * t->kk + r];
                /* din_phase[j] += w * dy_wide[o][j - q]; dy_wide[o][i] sits at o*e + qmax + i */
                t_taps[k] = o * t->e + t->qmax - tap_offset(t, r);
            }
        }
    }
    const int teams = (int)max64(1, min64(threads, blocks));
    if (grad_weight) {
        taps = malloc((size_t)(nnz + 1) * sizeof(int64_t));
        forward_taps(t, offsets, columns, NULL, NULL, taps);
        partial = scratch((int64_t)teams * (nnz + 1));
    }
    #pragma omp parallel num_threads(teams)
    {
        float *d = scratch((t->o + 1) * t->e + 2 * GRANULE);
        float *din = grad_input ? scratch(t->s2 * pstride) : NULL;
        float *x = grad_weight ? scratch(t->xlen) : NULL;
        float *mine = grad_weight ? partial + (int64_t)omp_get_thread_num() * (nnz + 1) : NULL;
        /* static: each thread sums the same blocks every call, so the weight gradient (and a
         * seeded run) is the same to the bit from run to run; a dynamic schedule summed the
         * blocks in whatever order the threads took them */
        #pragma omp for schedule(static)
        for (int64_t block = 0; block < blocks; ++block) {
            const int64_t n0 = block * t->b, count = min64(t->b, t->n - n0);
            prepare_output_gradient(t, grad_output + n0 * out_size, count, d);
            if (grad_input)
                block_input_gradient(t, t_offsets, t_taps, values, d, din, pstride,
                                     grad_input + n0 * in_size, count);
            if (grad_weight) {
                prepare_input(t, input + n0 * in_size, count, x);
                for (int64_t o = 0; o < t->o; ++o)
                    dots(mine + offsets[o], t->loutr, d + o * t->e + t->qmax, x, taps + offsets[o],
                         offsets[o + 1] - offsets[o]);
            }
        }
        free(d);
        free(din);
        free(x);
    }
    if (grad_weight) {
        #pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t o = 0; o < t->o; ++o) {
            for (int64_t k = offsets[o]; k < offsets[o + 1]; ++k) {
                float sum = 0.0f;
                for (int team = 0; team < teams; ++team) sum += partial[(int64_t)team * (nnz + 1) + k];
                grad_weight[o * t->c * t->kk + columns[k]] = sum;
            }
        }
    }
    free(values);
    free(t_taps);
    free(taps);
    free(partial);
}
