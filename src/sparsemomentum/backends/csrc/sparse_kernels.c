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
#include <stdint.h>

/* out[r, :] = bias[r] + sum over the pattern's (r, c) of W(r, c) * x[c, :]
 *
 * W(r, c) is read from the dense weight at r * row_stride + c * column_stride, or, when
 * `value_index` is given, from values[value_index[k]] for the pattern's k-th entry. The
 * forward product records the values it read in `values_out` (CSR order), and the input
 * gradient's product through W^T then reads them there: reading W^T from the dense
 * weight goes down its columns, one page of a 4096x4096 weight per non-zero. */
void sm_spmm(int64_t rows, int64_t batch, const int64_t *offsets, const int32_t *columns,
             const float *weight, int64_t row_stride, int64_t column_stride,
             const float *values, const int32_t *value_index, float *values_out,
             const float *x, int64_t x_stride, const float *bias,
             float *out, int64_t out_stride, int threads)
{
    #pragma omp parallel for schedule(dynamic, 8) num_threads(threads)
    for (int64_t r = 0; r < rows; ++r) {
        float *o = out + r * out_stride;
        const float b = bias ? bias[r] : 0.0f;
        #pragma omp simd
        for (int64_t j = 0; j < batch; ++j) o[j] = b;
        const float *w_row = weight + r * row_stride;
        int64_t k = offsets[r];
        const int64_t end = offsets[r + 1];
#define SM_VALUE(k, c) (value_index ? values[value_index[k]] : w_row[(c) * column_stride])
        /* four non-zeros per pass: one load and store of the output row for four products */
        for (; k + 4 <= end; k += 4) {
            const int64_t c0 = columns[k], c1 = columns[k + 1], c2 = columns[k + 2], c3 = columns[k + 3];
            const float w0 = SM_VALUE(k, c0), w1 = SM_VALUE(k + 1, c1), w2 = SM_VALUE(k + 2, c2), w3 = SM_VALUE(k + 3, c3);
            if (values_out) {
                values_out[k] = w0; values_out[k + 1] = w1; values_out[k + 2] = w2; values_out[k + 3] = w3;
            }
            const float *x0 = x + c0 * x_stride, *x1 = x + c1 * x_stride;
            const float *x2 = x + c2 * x_stride, *x3 = x + c3 * x_stride;
            #pragma omp simd
            for (int64_t j = 0; j < batch; ++j) o[j] += w0 * x0[j] + w1 * x1[j] + w2 * x2[j] + w3 * x3[j];
        }
        for (; k < end; ++k) {
            const int64_t c = columns[k];
            const float w = SM_VALUE(k, c);
            if (values_out) values_out[k] = w;
            const float *xc = x + c * x_stride;
            #pragma omp simd
            for (int64_t j = 0; j < batch; ++j) o[j] += w * xc[j];
        }
#undef SM_VALUE
    }
}

/* grad(r, c) = dy[r, :] . x[c, :] at the pattern's (r, c) only (an SDDMM), written into the
 * dense gradient array; positions outside the pattern are left as they are. */
void sm_sddmm(int64_t rows, int64_t batch, const int64_t *offsets, const int32_t *columns,
              const float *dy, int64_t dy_stride, const float *x, int64_t x_stride,
              float *grad, int64_t row_stride, int64_t column_stride, int threads)
{
    #pragma omp parallel for schedule(dynamic, 8) num_threads(threads)
    for (int64_t r = 0; r < rows; ++r) {
        const float *d = dy + r * dy_stride;
        float *g_row = grad + r * row_stride;
        for (int64_t k = offsets[r]; k < offsets[r + 1]; ++k) {
            const int64_t c = columns[k];
            const float *xc = x + c * x_stride;
            float sum = 0.0f;
            #pragma omp simd reduction(+:sum)
            for (int64_t j = 0; j < batch; ++j) sum += d[j] * xc[j];
            g_row[c * column_stride] = sum;
        }
    }
}

/* torch.optim.SGD's update at the pattern's positions of a row-major [rows, row_stride]
 * weight, in the same order of operations:
 *   d = g + weight_decay * w;  buf = first ? d : momentum * buf + (1 - dampening) * d;
 *   d = nesterov ? d + momentum * buf : buf;  w -= lr * d.
 * momentum == 0 leaves buf untouched (it may be NULL). With `missing_momentum`, the
 * momentum of every position outside the pattern is updated too, from a dense gradient
 * (there w is 0, so d = g): the momentum window's step, in one pass over the buffer. The
 * weight outside the pattern is not touched (it is 0 and stays 0). */
static inline void missing_run(float *buf, const float *grad, int64_t from, int64_t to,
                               float momentum, float dampening, int first_step)
{
    if (first_step) {
        #pragma omp simd
        for (int64_t i = from; i < to; ++i) buf[i] = grad[i];
    } else {
        #pragma omp simd
        for (int64_t i = from; i < to; ++i) buf[i] = momentum * buf[i] + (1.0f - dampening) * grad[i];
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
            float d = grad[i];
            if (weight_decay != 0.0f) d = d + weight_decay * weight[i];
            if (momentum != 0.0f) {
                const float b = first_step ? d : momentum * buf[i] + (1.0f - dampening) * d;
                buf[i] = b;
                d = nesterov ? d + momentum * b : b;
            }
            weight[i] = weight[i] - lr * d;
        }
        if (dense) missing_run(buf, grad, previous, (r + 1) * row_stride, momentum, dampening, first_step);
    }
}
