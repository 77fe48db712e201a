// TaylorLinear fused CUDA kernels; mirrors csrc/taylor.cpp (see there for the row structure and the math).
//
//   forward          one thread per sample, 8 outputs per grid row; walks the rows of the row table (uniform
//                    across the warp, so W loads are broadcasts): prefix p = prod x[prefix], features p * x[j],
//                    j = j0..n-1, contracted at once; per-row partials added with Kahan compensation.
//   backward_input   one thread per sample: G_t = sum_a g[b,a] W[a,t]; dx[j] += G_t p, and the row's
//                    dp = sum_j G_t x[j] goes onto the prefix factors (leave-one-out products).
//   backward_weight  one thread per term (8 outputs per grid row): dW[a,t] = sum_b g[b,a] p_b x[b,j],
//                    blocks of 32 samples added with Kahan compensation. One owner per output: deterministic.
#include "check.cuh"
#include "taylor.cuh"

namespace physkernels::cuda::taylor {
namespace {

constexpr int kThreads = 128;
constexpr int kOutputs = 8;      // outputs per thread (grid.y covers the rest)
constexpr int kSampleBlock = 32; // dW: samples summed plainly before a compensated add

template <typename S>
__device__ __forceinline__ void kahan_add(S& sum, S& comp, S value) {
    // once the sum is +-inf or NaN the compensation is reset, so inf stays inf (IEEE semantics of a plain sum)
    const S y = value - comp;
    const S t = sum + y;
    comp = isfinite(t) ? (t - sum) - y : S(0);
    sum = t;
}

template <typename S>
__device__ __forceinline__ S prefix_product(const int32_t* row, const S* xb) {
    S p = S(1);
    for (int k = 0; k < row[2]; ++k) p *= xb[row[3 + k]];
    return p;
}

template <typename S>
__global__ void __launch_bounds__(kThreads) forward_kernel(const S* __restrict__ x, const S* __restrict__ W,
                                                           const S* __restrict__ bias, const int32_t* __restrict__ rows,
                                                           int64_t n_rows, int width, S* __restrict__ y, int64_t B,
                                                           int64_t n, int64_t O, int64_t T) {
    const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t a0 = static_cast<int64_t>(blockIdx.y) * kOutputs;
    const S* xb = x + (b < B ? b : 0) * n;
    S sum[kOutputs], comp[kOutputs];
#pragma unroll
    for (int i = 0; i < kOutputs; ++i) sum[i] = comp[i] = S(0);
    for (int64_t r = 0; r < n_rows; ++r) {
        const int32_t* row = rows + r * width;
        const int64_t offset = row[0], j0 = row[1];
        const S p = prefix_product(row, xb);
        S part[kOutputs];
#pragma unroll
        for (int i = 0; i < kOutputs; ++i) part[i] = S(0);
        const S* w = W + a0 * T + offset - j0;
        for (int64_t j = j0; j < n; ++j) {
            const S f = p * xb[j];
#pragma unroll
            for (int i = 0; i < kOutputs; ++i)
                if (a0 + i < O) part[i] += w[i * T + j] * f;
        }
#pragma unroll
        for (int i = 0; i < kOutputs; ++i) kahan_add(sum[i], comp[i], part[i]);
    }
    if (b >= B) return;
#pragma unroll
    for (int i = 0; i < kOutputs; ++i)
        if (a0 + i < O) y[b * O + a0 + i] = (sum[i] - comp[i]) + (bias != nullptr ? bias[a0 + i] : S(0));
}

template <typename S>
__global__ void __launch_bounds__(kThreads) backward_input_kernel(const S* __restrict__ g, const S* __restrict__ x,
                                                                  const S* __restrict__ W,
                                                                  const int32_t* __restrict__ rows, int64_t n_rows,
                                                                  int width, S* __restrict__ dx, S* __restrict__ comp,
                                                                  int64_t B, int64_t n, int64_t O, int64_t T) {
    const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const S* xb = x + b * n;
    const S* gb = g + b * O;
    S* dxb = dx + b * n;
    S* cb = comp + b * n;
    for (int64_t r = 0; r < n_rows; ++r) {
        const int32_t* row = rows + r * width;
        const int64_t offset = row[0], j0 = row[1];
        const int nprefix = row[2];
        const S p = prefix_product(row, xb);
        S dp = S(0);
        for (int64_t j = j0; j < n; ++j) {
            const int64_t t = offset + (j - j0);
            S grad_f = S(0);
            for (int64_t a = 0; a < O; ++a) grad_f += gb[a] * W[a * T + t];
            kahan_add(dxb[j], cb[j], grad_f * p);
            dp += grad_f * xb[j];
        }
        for (int k = 0; k < nprefix; ++k) {
            S others = S(1);
            for (int l = 0; l < nprefix; ++l)
                if (l != k) others *= xb[row[3 + l]];
            kahan_add(dxb[row[3 + k]], cb[row[3 + k]], dp * others);
        }
    }
}

template <typename S>
__global__ void __launch_bounds__(kThreads) backward_weight_kernel(const S* __restrict__ g, const S* __restrict__ x,
                                                                   const int32_t* __restrict__ rows, int width,
                                                                   const int32_t* __restrict__ term_rows,
                                                                   S* __restrict__ dW, int64_t B, int64_t n,
                                                                   int64_t O, int64_t T) {
    const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t a0 = static_cast<int64_t>(blockIdx.y) * kOutputs;
    if (t >= T) return;
    const int32_t* row = rows + static_cast<int64_t>(term_rows[t]) * width;
    const int64_t j = row[1] + (t - row[0]);
    S sum[kOutputs], comp[kOutputs];
#pragma unroll
    for (int i = 0; i < kOutputs; ++i) sum[i] = comp[i] = S(0);
    for (int64_t b0 = 0; b0 < B; b0 += kSampleBlock) {
        S part[kOutputs];
#pragma unroll
        for (int i = 0; i < kOutputs; ++i) part[i] = S(0);
        const int64_t b1 = b0 + kSampleBlock < B ? b0 + kSampleBlock : B;
        for (int64_t b = b0; b < b1; ++b) {
            const S* xb = x + b * n;
            const S f = prefix_product(row, xb) * xb[j];
#pragma unroll
            for (int i = 0; i < kOutputs; ++i)
                if (a0 + i < O) part[i] += g[b * O + a0 + i] * f;
        }
#pragma unroll
        for (int i = 0; i < kOutputs; ++i) kahan_add(sum[i], comp[i], part[i]);
    }
#pragma unroll
    for (int i = 0; i < kOutputs; ++i)
        if (a0 + i < O) dW[(a0 + i) * T + t] = sum[i] - comp[i];
}

}  // namespace

template <typename S>
void forward(const S* x, const S* weight, const S* bias, const int32_t* rows, int64_t n_rows, int width, S* y,
             int64_t batch, int64_t n, int64_t out, int64_t terms, cudaStream_t stream) {
    if (batch == 0 || out == 0) return;
    const dim3 grid(ceil_div(batch, kThreads), ceil_div(out, kOutputs));
    forward_kernel<S><<<grid, kThreads, 0, stream>>>(x, weight, bias, rows, n_rows, width, y, batch, n, out, terms);
    check(cudaGetLastError(), "taylor forward launch");
}

template <typename S>
void backward_input(const S* grad, const S* x, const S* weight, const int32_t* rows, int64_t n_rows, int width,
                    S* dx, S* comp, int64_t batch, int64_t n, int64_t out, int64_t terms, cudaStream_t stream) {
    if (batch == 0) return;
    backward_input_kernel<S><<<ceil_div(batch, kThreads), kThreads, 0, stream>>>(grad, x, weight, rows, n_rows, width,
                                                                                  dx, comp, batch, n, out, terms);
    check(cudaGetLastError(), "taylor backward_input launch");
}

template <typename S>
void backward_weight(const S* grad, const S* x, const int32_t* rows, int width, const int32_t* term_rows,
                     S* dweight, int64_t batch, int64_t n, int64_t out, int64_t terms, cudaStream_t stream) {
    if (terms == 0 || out == 0) return;
    const dim3 grid(ceil_div(terms, kThreads), ceil_div(out, kOutputs));
    backward_weight_kernel<S><<<grid, kThreads, 0, stream>>>(grad, x, rows, width, term_rows, dweight, batch, n, out,
                                                            terms);
    check(cudaGetLastError(), "taylor backward_weight launch");
}

#define PHYSKERNELS_INSTANTIATE(S)                                                                              \
    template void forward<S>(const S*, const S*, const S*, const int32_t*, int64_t, int, S*, int64_t, int64_t,    \
                             int64_t, int64_t, cudaStream_t);                                                   \
    template void backward_input<S>(const S*, const S*, const S*, const int32_t*, int64_t, int, S*, S*, int64_t,  \
                                    int64_t, int64_t, int64_t, cudaStream_t);                                   \
    template void backward_weight<S>(const S*, const S*, const int32_t*, int, const int32_t*, S*, int64_t,        \
                                     int64_t, int64_t, int64_t, cudaStream_t);
PHYSKERNELS_INSTANTIATE(float)
PHYSKERNELS_INSTANTIATE(double)
#undef PHYSKERNELS_INSTANTIATE

}  // namespace physkernels::cuda::taylor
