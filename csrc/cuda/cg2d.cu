// CG2d CUDA kernels (order 2). Mirrors the C++ kernels: the features of a tile of output positions are formed on
// the fly in shared memory (no im2col, no product tensor) and contracted with the weights read in place.
//
//   forward     block (64 positions x 64 outputs of a group): acc[o][r] += W[o][k] feat[k][r] over k = (c, f) in
//               chunks of 16 feature rows staged in shared memory; 4x4 outputs per thread.
//   dW          block (64 outputs x 32 feature rows, one slab of positions): partial[s][o][k] = sum_r gy[o][r]
//               feat[k][r]; a second kernel sums the slabs in order (deterministic) into W1 / W2.
//   dx          gather form, one thread per input element: for each kernel offset p the element is x_p of at most
//               one output position r_p, and dx += sum_o gy[o][r_p] (W1[o,c,p] + sum_q W2[o,c,(p,q)] dq), with
//               dq = x_q (q != p) or 2 x_p (q == p). No atomics: deterministic.
//   dbias       one block per output channel, fixed-order tree reduction.
#include <algorithm>

#include "cg2d.cuh"
#include "check.cuh"

namespace physkernels::cg2d::cuda {
namespace {

using ::physkernels::cuda::ceil_div;
using ::physkernels::cuda::check;

// Shape values the kernels need, computed on the host (Geometry's member functions are host-only).
struct Dims {
    int64_t N, R, Ho, Wo, cg, og, F, K;  // K = cg * F feature rows per group
    int P, P2;
};

Dims dims(const Geometry& g) {
    Dims d{};
    d.Ho = g.out_h();
    d.Wo = g.out_w();
    d.R = d.Ho * d.Wo;
    d.N = g.batch * d.R;
    d.cg = g.group_in();
    d.og = g.group_out();
    d.P = g.patch();
    d.P2 = d.P * (d.P + 1) / 2;
    d.F = d.P + d.P2;
    d.K = d.cg * d.F;
    return d;
}

// (p, q), p <= q, of the k-th pair in torch.triu_indices order.
__device__ inline void pair_of(int k, int P, int& p, int& q) {
    p = 0;
    while (k >= P - p) {
        k -= P - p;
        ++p;
    }
    q = p + k;
}

__device__ inline int pair_index(int a, int b, int P) { return a * P - a * (a - 1) / 2 + (b - a); }

// x_p of channel c at output (b, oh, ow); 0 in the padding.
template <typename T>
__device__ inline T patch_value(const T* x, const Geometry& g, int64_t b, int64_t c, int64_t oh, int64_t ow, int p) {
    const int64_t hi = oh * g.stride_y - g.pad_h + (p / g.kernel_w) * g.dil_h;
    const int64_t wi = ow * g.stride_x - g.pad_w + (p % g.kernel_w) * g.dil_w;
    if (hi < 0 || hi >= g.height || wi < 0 || wi >= g.width) return T(0);
    return x[b * g.stride_b + c * g.stride_c + hi * g.stride_h + wi * g.stride_w];
}

// Feature row k = c*F + f of the group starting at channel c_base, at flattened output position n.
template <typename T>
__device__ inline T feature(const T* x, const Geometry& g, const Dims& d, int64_t c_base, int64_t k, int64_t n) {
    const int64_t c = c_base + k / d.F;
    const int f = static_cast<int>(k % d.F);
    const int64_t b = n / d.R, pos = n % d.R, oh = pos / d.Wo, ow = pos % d.Wo;
    if (f < d.P) return patch_value(x, g, b, c, oh, ow, f);
    int p, q;
    pair_of(f - d.P, d.P, p, q);
    return patch_value(x, g, b, c, oh, ow, p) * patch_value(x, g, b, c, oh, ow, q);
}

// Weight of feature row k = c*F + f for output row o (global output index).
template <typename T>
__device__ inline T weight(const T* w1, const T* w2, const Dims& d, int64_t o, int64_t k) {
    const int64_t c = k / d.F, f = k % d.F;
    return f < d.P ? w1[(o * d.cg + c) * d.P + f] : w2[(o * d.cg + c) * d.P2 + (f - d.P)];
}

constexpr int kThreads = 256;
constexpr int kTileR = 64, kTileO = 64, kChunk = 16;

template <typename T>
__global__ void __launch_bounds__(kThreads) forward_kernel(const T* __restrict__ x, const T* __restrict__ w1,
                                                           const T* __restrict__ w2, const T* __restrict__ bias,
                                                           T* __restrict__ y, Geometry g, Dims d) {
    __shared__ T feat_s[kChunk][kTileR];
    __shared__ T w_s[kChunk][kTileO];
    const int tid = threadIdx.x, tr = tid % 16, to = tid / 16;
    const int64_t o_blocks = (d.og + kTileO - 1) / kTileO;
    const int64_t grp = blockIdx.y / o_blocks, o0 = (blockIdx.y % o_blocks) * kTileO;
    const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTileR;
    T acc[4][4] = {};
    for (int64_t k0 = 0; k0 < d.K; k0 += kChunk) {
        for (int i = tid; i < kChunk * kTileR; i += kThreads) {
            const int kk = i / kTileR, r = i % kTileR;
            const int64_t k = k0 + kk, n = n0 + r;
            feat_s[kk][r] = (k < d.K && n < d.N) ? feature(x, g, d, grp * d.cg, k, n) : T(0);
        }
        for (int i = tid; i < kChunk * kTileO; i += kThreads) {
            const int kk = i % kChunk, oo = i / kChunk;
            const int64_t k = k0 + kk, o = o0 + oo;
            w_s[kk][oo] = (k < d.K && o < d.og) ? weight(w1, w2, d, grp * d.og + o, k) : T(0);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kChunk; ++kk) {
            T a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = w_s[kk][to * 4 + i], b[i] = feat_s[kk][tr * 4 + i];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        const int64_t o = o0 + to * 4 + i;
        if (o >= d.og) continue;
        const int64_t out = grp * d.og + o;
        for (int j = 0; j < 4; ++j) {
            const int64_t n = n0 + tr * 4 + j;
            if (n >= d.N) continue;
            const int64_t b = n / d.R, pos = n % d.R;
            y[(b * g.out_channels + out) * d.R + pos] = acc[i][j] + (bias ? bias[out] : T(0));
        }
    }
}

constexpr int kTileK = 32, kTileP = 32;

// partial[slab][out][k] = sum over the slab's positions of gy[out][n] * feat[k][n].
template <typename T>
__global__ void __launch_bounds__(kThreads) weight_grad_kernel(const T* __restrict__ grad_y, const T* __restrict__ x,
                                                               T* __restrict__ partial, Geometry g, Dims d,
                                                               int64_t slab_len) {
    __shared__ T gy_s[kTileO][kTileP + 1];
    __shared__ T feat_s[kTileK][kTileP + 1];
    const int tid = threadIdx.x, tk = tid % 8, to = tid / 8;  // 4 feature rows x 2 outputs per thread
    const int64_t o_blocks = (d.og + kTileO - 1) / kTileO;
    const int64_t grp = blockIdx.y / o_blocks, o0 = (blockIdx.y % o_blocks) * kTileO;
    const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kTileK;
    const int64_t n_begin = blockIdx.z * slab_len, n_end = n_begin + slab_len < d.N ? n_begin + slab_len : d.N;
    T acc[2][4] = {};
    for (int64_t n0 = n_begin; n0 < n_end; n0 += kTileP) {
        for (int i = tid; i < kTileO * kTileP; i += kThreads) {
            const int oo = i / kTileP, r = i % kTileP;
            const int64_t o = o0 + oo, n = n0 + r;
            T v = T(0);
            if (o < d.og && n < n_end) v = grad_y[((n / d.R) * g.out_channels + grp * d.og + o) * d.R + n % d.R];
            gy_s[oo][r] = v;
        }
        for (int i = tid; i < kTileK * kTileP; i += kThreads) {
            const int kk = i / kTileP, r = i % kTileP;
            const int64_t k = k0 + kk, n = n0 + r;
            feat_s[kk][r] = (k < d.K && n < n_end) ? feature(x, g, d, grp * d.cg, k, n) : T(0);
        }
        __syncthreads();
        for (int r = 0; r < kTileP; ++r)
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += gy_s[to * 2 + i][r] * feat_s[tk * 4 + j][r];
        __syncthreads();
    }
    for (int i = 0; i < 2; ++i) {
        const int64_t o = o0 + to * 2 + i;
        if (o >= d.og) continue;
        for (int j = 0; j < 4; ++j) {
            const int64_t k = k0 + tk * 4 + j;
            if (k < d.K) partial[(blockIdx.z * g.out_channels + grp * d.og + o) * d.K + k] = acc[i][j];
        }
    }
}

// grad_w1 / grad_w2 = sum over slabs (in order) of partial, split back into the two weight layouts.
template <typename T>
__global__ void reduce_weight_grad_kernel(const T* __restrict__ partial, T* __restrict__ grad_w1,
                                          T* __restrict__ grad_w2, int64_t slabs, int64_t c_out, Dims d) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= c_out * d.K) return;
    T sum = T(0);
    for (int64_t s = 0; s < slabs; ++s) sum += partial[s * c_out * d.K + i];
    const int64_t o = i / d.K, k = i % d.K, c = k / d.F, f = k % d.F;
    if (f < d.P)
        grad_w1[(o * d.cg + c) * d.P + f] = sum;
    else
        grad_w2[(o * d.cg + c) * d.P2 + (f - d.P)] = sum;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) bias_grad_kernel(const T* __restrict__ grad_y, T* __restrict__ grad_bias,
                                                             Geometry g, Dims d) {
    __shared__ T part[kThreads];
    const int64_t o = blockIdx.x;
    T sum = T(0);
    for (int64_t n = threadIdx.x; n < d.N; n += kThreads)
        sum += grad_y[((n / d.R) * g.out_channels + o) * d.R + n % d.R];
    part[threadIdx.x] = sum;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) grad_bias[o] = part[0];
}

template <typename T>
__global__ void __launch_bounds__(kThreads) input_grad_kernel(const T* __restrict__ grad_y, const T* __restrict__ x,
                                                              const T* __restrict__ w1, const T* __restrict__ w2,
                                                              T* __restrict__ grad_x, Geometry g, Dims d) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int64_t plane = g.height * g.width;
    if (i >= g.batch * g.channels * plane) return;
    const int64_t b = i / (g.channels * plane), c = i / plane % g.channels, hi = i % plane / g.width,
                  wi = i % g.width;
    const int64_t grp = c / d.cg, cl = c % d.cg;
    T total = T(0);
    T xq[kMaxPatch];
    for (int p = 0; p < d.P; ++p) {
        const int64_t th = hi + g.pad_h - (p / g.kernel_w) * g.dil_h;
        const int64_t tw = wi + g.pad_w - (p % g.kernel_w) * g.dil_w;
        if (th < 0 || tw < 0 || th % g.stride_y || tw % g.stride_x) continue;
        const int64_t oh = th / g.stride_y, ow = tw / g.stride_x;
        if (oh >= d.Ho || ow >= d.Wo) continue;
        for (int q = 0; q < d.P; ++q) xq[q] = patch_value(x, g, b, c, oh, ow, q);
        const T* gy = grad_y + (b * g.out_channels + grp * d.og) * d.R + oh * d.Wo + ow;
        for (int64_t o = 0; o < d.og; ++o) {
            const int64_t row = (grp * d.og + o) * d.cg + cl;
            T coef = w1[row * d.P + p];
            const T* w2o = w2 + row * d.P2;
            for (int q = 0; q < d.P; ++q)
                coef += q < p ? w2o[pair_index(q, p, d.P)] * xq[q]
                              : w2o[pair_index(p, q, d.P)] * (q == p ? T(2) * xq[p] : xq[q]);
            total += gy[o * d.R] * coef;
        }
    }
    grad_x[i] = total;
}

unsigned blocks_for(int64_t n) { return ceil_div(n, kThreads); }

}  // namespace

int64_t weight_grad_slabs(const Geometry& g) {
    const int64_t n = g.batch * g.out_h() * g.out_w();
    return std::max<int64_t>(1, std::min<int64_t>(64, n / 2048));
}

template <typename T>
void forward(const T* x, const T* w1, const T* w2, const T* bias, T* y, const Geometry& g, cudaStream_t stream) {
    const Dims d = dims(g);
    const dim3 grid(ceil_div(d.N, kTileR), static_cast<unsigned>(g.groups * ((d.og + kTileO - 1) / kTileO)));
    forward_kernel<T><<<grid, kThreads, 0, stream>>>(x, w1, w2, bias, y, g, d);
    check(cudaGetLastError(), "cg2d forward kernel");
}

template <typename T>
void backward(const T* grad_y, const T* x, const T* w1, const T* w2, T* grad_x, T* grad_w1, T* grad_w2,
              T* grad_bias, T* partial, const Geometry& g, cudaStream_t stream) {
    const Dims d = dims(g);
    const int64_t slabs = weight_grad_slabs(g), slab_len = (d.N + slabs - 1) / slabs;
    const dim3 grid(ceil_div(d.K, kTileK), static_cast<unsigned>(g.groups * ((d.og + kTileO - 1) / kTileO)),
                    static_cast<unsigned>(slabs));
    weight_grad_kernel<T><<<grid, kThreads, 0, stream>>>(grad_y, x, partial, g, d, slab_len);
    check(cudaGetLastError(), "cg2d weight-gradient kernel");
    reduce_weight_grad_kernel<T><<<blocks_for(g.out_channels * d.K), kThreads, 0, stream>>>(
        partial, grad_w1, grad_w2, slabs, g.out_channels, d);
    check(cudaGetLastError(), "cg2d weight-gradient reduction");
    if (grad_bias) {
        bias_grad_kernel<T><<<static_cast<unsigned>(g.out_channels), kThreads, 0, stream>>>(grad_y, grad_bias, g, d);
        check(cudaGetLastError(), "cg2d bias-gradient kernel");
    }
    if (grad_x) {
        input_grad_kernel<T><<<blocks_for(g.batch * g.channels * g.height * g.width), kThreads, 0, stream>>>(
            grad_y, x, w1, w2, grad_x, g, d);
        check(cudaGetLastError(), "cg2d input-gradient kernel");
    }
}

template void forward<float>(const float*, const float*, const float*, const float*, float*, const Geometry&,
                             cudaStream_t);
template void forward<double>(const double*, const double*, const double*, const double*, double*, const Geometry&,
                              cudaStream_t);
template void backward<float>(const float*, const float*, const float*, const float*, float*, float*, float*, float*,
                              float*, const Geometry&, cudaStream_t);
template void backward<double>(const double*, const double*, const double*, const double*, double*, double*,
                               double*, double*, double*, const Geometry&, cudaStream_t);

}  // namespace physkernels::cg2d::cuda
