/* Sparse kernels for sparsemomentum's CPU backend (see backends/compiled.py).
 *
 * A masked [out, in] weight stays a dense array; a CSR *pattern* (row offsets, column
 * indices) says where its non-zeros are, and every kernel reads or writes the dense array
 * at row * row_stride + column * column_stride. The same pattern code thus serves W
 * (strides in, 1) and W^T (strides 1, in), and nothing has to gather the values into a CSR
 * copy before a product or scatter them back after it: torch's CSR path spent about half
 * of a training step in those gathers and scatters.
 *
 * Activations are feature-major ([features, batch], batch contiguous), so each non-zero
 * touches one contiguous row of the batch: the inner loops are unit-stride and vectorise.
 * Rows are split over `threads` OpenMP threads (torch.get_num_threads(), passed by the
 * caller); torch's own libgomp is the one loaded, so both share one thread pool.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* values[k] = W(r, c) for the pattern's k-th entry (r, c), from the dense weight at
 * r * row_stride + c * column_stride; a work-sharing loop, called inside a parallel region.
 * A pass of its own: interleaved with the products, each of these reads (a cache miss:
 * the non-zeros of a 4096-wide row at 1 % lie 400 bytes apart) stalled the arithmetic
 * behind it, and a 4096x4096 product at 1 %, batch 128, one thread, took 5.5 ms instead of
 * 2.7. */
static void gather_values(int64_t rows, const int64_t *offsets, const int32_t *columns,
                          const float *weight, int64_t row_stride, int64_t column_stride,
                          float *values)
{
    #pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float *w_row = weight + r * row_stride;
        for (int64_t k = offsets[r]; k < offsets[r + 1]; ++k)
            values[k] = w_row[columns[k] * column_stride];
    }
}

/* o[:batch] = b + sum over row r's entries k of values[index(k)] * x[columns[k], :batch] */
static void spmm_row(int64_t r, int64_t batch, const int64_t *offsets, const int32_t *columns,
                     const float *values, const int32_t *value_index, const float *x,
                     int64_t x_stride, float b, float *o)
{
#define SM_VALUE(k) values[value_index ? value_index[k] : (k)]
    #pragma omp simd
    for (int64_t j = 0; j < batch; ++j) o[j] = b;
    int64_t k = offsets[r];
    const int64_t end = offsets[r + 1];
    /* four non-zeros per pass: one load and store of the output row for four products */
    for (; k + 4 <= end; k += 4) {
        const float w0 = SM_VALUE(k), w1 = SM_VALUE(k + 1), w2 = SM_VALUE(k + 2), w3 = SM_VALUE(k + 3);
        const float *x0 = x + columns[k] * x_stride, *x1 = x + columns[k + 1] * x_stride;
        const float *x2 = x + columns[k + 2] * x_stride, *x3 = x + columns[k + 3] * x_stride;
        #pragma omp simd
        for (int64_t j = 0; j < batch; ++j) o[j] += w0 * x0[j] + w1 * x1[j] + w2 * x2[j] + w3 * x3[j];
    }
    for (; k < end; ++k) {
        const float w = SM_VALUE(k);
        const float *xc = x + columns[k] * x_stride;
        #pragma omp simd
        for (int64_t j = 0; j < batch; ++j) o[j] += w * xc[j];
    }
#undef SM_VALUE
}

/* out[r, :] = bias[r] + sum over the pattern's (r, c) of W(r, c) * x[c, :]
 *
 * With `values_out`, W's values are first gathered from the dense weight (strides as in
 * gather_values) into it, in pattern order, and read from there; without, W(r, c) is
 * values[value_index[k]] for the pattern's k-th entry. The forward product records the
 * values that way, and the input gradient's product through W^T then reads them there:
 * reading W^T from the dense weight goes down its columns, one page of a 4096x4096 weight
 * per non-zero. */
void sm_spmm(int64_t rows, int64_t batch, const int64_t *offsets, const int32_t *columns,
             const float *weight, int64_t row_stride, int64_t column_stride,
             const float *values, const int32_t *value_index, float *values_out,
             const float *x, int64_t x_stride, const float *bias,
             float *out, int64_t out_stride, int threads)
{
    const float *read = values_out ? values_out : values;
    const int32_t *index = values_out ? NULL : value_index;
    #pragma omp parallel num_threads(threads)
    {
        if (values_out)
            gather_values(rows, offsets, columns, weight, row_stride, column_stride, values_out);
        #pragma omp for schedule(dynamic, 8)
        for (int64_t r = 0; r < rows; ++r)
            spmm_row(r, batch, offsets, columns, read, index, x, x_stride,
                     bias ? bias[r] : 0.0f, out + r * out_stride);
    }
}

/* sums[k] = d . x[columns[k], :batch] for row r's entries k; four entries per pass share
 * each load of d, and their four reductions finish together (one entry at a time, a
 * reduction per 100-float dot product made the SDDMM half as fast as the forward product) */
static void sddmm_row(int64_t r, int64_t batch, const int64_t *offsets, const int32_t *columns,
                      const float *d, const float *x, int64_t x_stride, float *sums)
{
    int64_t k = offsets[r];
    const int64_t end = offsets[r + 1];
    for (; k + 4 <= end; k += 4) {
        const float *x0 = x + columns[k] * x_stride, *x1 = x + columns[k + 1] * x_stride;
        const float *x2 = x + columns[k + 2] * x_stride, *x3 = x + columns[k + 3] * x_stride;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        #pragma omp simd reduction(+:s0, s1, s2, s3)
        for (int64_t j = 0; j < batch; ++j) {
            s0 += d[j] * x0[j];
            s1 += d[j] * x1[j];
            s2 += d[j] * x2[j];
            s3 += d[j] * x3[j];
        }
        sums[k] = s0;
        sums[k + 1] = s1;
        sums[k + 2] = s2;
        sums[k + 3] = s3;
    }
    for (; k < end; ++k) {
        const float *xc = x + columns[k] * x_stride;
        float sum = 0.0f;
        #pragma omp simd reduction(+:sum)
        for (int64_t j = 0; j < batch; ++j) sum += d[j] * xc[j];
        sums[k] = sum;
    }
}

/* grad(r, c) = dy[r, :] . x[c, :] at the pattern's (r, c) only (an SDDMM), written into the
 * dense gradient array; positions outside the pattern are left as they are. The products
 * go to `sums` (one float per non-zero, pattern order) and are scattered into the gradient
 * in a pass of their own, for the reason gather_values gives. */
void sm_sddmm(int64_t rows, int64_t batch, const int64_t *offsets, const int32_t *columns,
              const float *dy, int64_t dy_stride, const float *x, int64_t x_stride,
              float *sums, float *grad, int64_t row_stride, int64_t column_stride, int threads)
{
    #pragma omp parallel num_threads(threads)
    {
        #pragma omp for schedule(dynamic, 8)
        for (int64_t r = 0; r < rows; ++r)
            sddmm_row(r, batch, offsets, columns, dy + r * dy_stride, x, x_stride, sums);
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            float *g_row = grad + r * row_stride;
            for (int64_t k = offsets[r]; k < offsets[r + 1]; ++k)
                g_row[columns[k] * column_stride] = sums[k];
        }
    }
}

/* torch.optim.SGD's update at the pattern's positions of a row-major [rows, row_stride]
 * weight, in the same order of operations and roundings (torch's `add(..., alpha)` is a fused
 * multiply-add on this CPU; written out with fmaf, the results are equal to the bit, where
 * plain C let the compiler fuse other pairs):
 *   d = g + weight_decay * w;  buf = first ? d : momentum * buf + (1 - dampening) * d;
 *   d = nesterov ? d + momentum * buf : buf;  w -= lr * d.
 * momentum == 0 leaves buf untouched (it may be NULL). With `missing_momentum`, the
 * momentum of every position outside the pattern is updated too, from a dense gradient
 * (there w is 0, so d = g): the momentum window's step, in one pass over the buffer. The
 * weight outside the pattern is not touched (it is 0 and stays 0). */
static inline void sgd_element(float *weight, const float *grad, float *buf, int64_t i,
                               float lr, float weight_decay, float momentum, float dampening,
                               int nesterov, int first_step)
{
    float d = grad[i];
    if (weight_decay != 0.0f) d = fmaf(weight[i], weight_decay, d);
    if (momentum != 0.0f) {
        const float decayed = buf[i] * momentum;
        const float b = first_step ? d : fmaf(d, 1.0f - dampening, decayed);
        buf[i] = b;
        d = nesterov ? fmaf(b, momentum, d) : b;
    }
    weight[i] = fmaf(d, -lr, weight[i]);
}

static inline void missing_run(float *buf, const float *grad, int64_t from, int64_t to,
                               float momentum, float dampening, int first_step)
{
    if (first_step) {
        #pragma omp simd
        for (int64_t i = from; i < to; ++i) buf[i] = grad[i];
    } else {
        #pragma omp simd
        for (int64_t i = from; i < to; ++i) buf[i] = fmaf(grad[i], 1.0f - dampening, buf[i] * momentum);
    }
}

void sm_sgd(int64_t rows, const int64_t *offsets, const int32_t *columns, int64_t row_stride,
            float *weight, const float *grad, float *buf, float lr, float weight_decay,
            float momentum, float dampening, int nesterov, int first_step, int missing_momentum, int threads)
{
    const int dense = missing_momentum && momentum != 0.0f;
    #pragma omp parallel for schedule(dynamic, 16) num_threads(threads)
    for (int64_t r = 0; r < rows; ++r) {
        int64_t previous = r * row_stride;  /* first position not yet visited in this row */
        for (int64_t k = offsets[r]; k < offsets[r + 1]; ++k) {
            const int64_t i = r * row_stride + columns[k];
            if (dense) missing_run(buf, grad, previous, i, momentum, dampening, first_step);
            previous = i + 1;
            sgd_element(weight, grad, buf, i, lr, weight_decay, momentum, dampening, nesterov,
                        first_step);
        }
        if (dense) missing_run(buf, grad, previous, (r + 1) * row_stride, momentum, dampening, first_step);
    }
}

/* The same update of every element of a contiguous tensor (biases, layers left dense): one
 * pass over weight, gradient and momentum where torch's single-tensor SGD makes four, and
 * one call where it dispatches four operations a tensor (a tenth of a millisecond a step
 * on LeNet-300-100's four dense tensors). Threads only where the tensor is large enough to
 * pay for them. */
void sm_sgd_dense(int64_t n, float *weight, const float *grad, float *buf, float lr,
                  float weight_decay, float momentum, float dampening, int nesterov,
                  int first_step, int threads)
{
    #pragma omp parallel for simd schedule(static) num_threads(threads) if (n >= 65536)
    for (int64_t i = 0; i < n; ++i)
        sgd_element(weight, grad, buf, i, lr, weight_decay, momentum, dampening, nesterov,
                    first_step);
}
