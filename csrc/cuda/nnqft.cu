// CUDA NN-QFT ensemble kernels: the structure of csrc/nnqft.cpp on the GPU, drawing the SAME Philox stream
// (nnqft_rng.h is shared), so both backends evaluate the same networks for a seed.
//
// outputs_kernel: one thread per network. green_kernel: a block of kThreads networks of one bag; each thread
// evaluates its network at every point, then for each combo the block sums the products in a fixed tree order and
// writes one partial per (bag, block, combo); reduce_kernel adds the partials of a bag in block order. No atomics:
// results are deterministic.
#include <cstdint>

#include "check.cuh"
#include "nnqft_cuda.h"
#include "nnqft_rng.h"

namespace physkernels::nnqft::cuda {
namespace {

constexpr int kThreads = kNetsPerBlock;

struct Law {
    const double* points;  // (n_points, d_in)
    int n_points, d_in;
    std::uint32_t width;
    float w0_scale, w1_scale, b_scale, sigma_b2, sigma_w2_over_d;
    std::uint32_t key0, key1;
};

template <int Act>
__device__ void evaluate(const Law& law, std::uint64_t net, double* f) {
    const std::uint32_t lo = static_cast<std::uint32_t>(net), hi = static_cast<std::uint32_t>(net >> 32);
    for (int k = 0; k < law.n_points; ++k) f[k] = 0.0;
    for (std::uint32_t j = 0; j < law.width; ++j) {
        const U4 r = philox4x32_10(U4{j, 0u, lo, hi}, law.key0, law.key1);
        float w1, b0, w0a, w0b;
        box_muller(r.x, r.y, &w1, &b0);
        box_muller(r.z, r.w, &w0a, &w0b);
        w1 *= law.w1_scale;
        b0 *= law.b_scale;
        for (int k = 0; k < law.n_points; ++k) {
            const double* x = law.points + static_cast<long long>(k) * law.d_in;
            float pre = b0 + w0a * law.w0_scale * static_cast<float>(x[0]);
            float sq = static_cast<float>(x[0] * x[0]);
            if (law.d_in > 1) {
                pre += w0b * law.w0_scale * static_cast<float>(x[1]);
                sq += static_cast<float>(x[1] * x[1]);
            }
            for (std::uint32_t t = 1; 4 * t - 2 < static_cast<std::uint32_t>(law.d_in); ++t) {
                const U4 q = philox4x32_10(U4{j, t, lo, hi}, law.key0, law.key1);
                float z[4];
                box_muller(q.x, q.y, &z[0], &z[1]);
                box_muller(q.z, q.w, &z[2], &z[3]);
                for (int m = 0; m < 4 && static_cast<int>(4 * t - 2) + m < law.d_in; ++m) {
                    const double xi = x[4 * t - 2 + m];
                    pre += z[m] * law.w0_scale * static_cast<float>(xi);
                    sq += static_cast<float>(xi * xi);
                }
            }
            if (Act == kGauss) pre -= law.sigma_b2 + law.sigma_w2_over_d * sq;
            f[k] += static_cast<double>(w1 * activate<Act>(pre));
        }
    }
    const U4 r = philox4x32_10(U4{kBiasNeuron, 0u, lo, hi}, law.key0, law.key1);
    float b1, unused;
    box_muller(r.x, r.y, &b1, &unused);
    for (int k = 0; k < law.n_points; ++k) f[k] += static_cast<double>(b1 * law.b_scale);
}

template <int Act>
__global__ void outputs_kernel(Law law, std::uint64_t first_net, long long n_nets, double* out) {
    const long long a = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
    if (a >= n_nets) return;
    double f[kMaxPoints];
    evaluate<Act>(law, first_net + static_cast<std::uint64_t>(a), f);
    for (int k = 0; k < law.n_points; ++k) out[a * law.n_points + k] = f[k];
}

template <int Act>
__global__ void green_kernel(Law law, long long first_bag, long long nets_per_bag, long long n_chunks,
                             const int* members, int max_order, int n_combos, double* partial) {
    __shared__ double warp_sums[kThreads / 32];
    const long long task = blockIdx.x;
    const long long bag = task / n_chunks, chunk = task % n_chunks;
    const long long a = chunk * kThreads + threadIdx.x;
    const bool valid = a < nets_per_bag;
    double f[kMaxPoints];
    if (valid) evaluate<Act>(law, static_cast<std::uint64_t>(first_bag + bag) * nets_per_bag + a, f);
    for (int c = 0; c < n_combos; ++c) {
        double prod = valid ? 1.0 : 0.0;
        for (int s = 0; s < max_order; ++s) {
            const int idx = members[c * max_order + s];
            if (idx >= 0 && valid) prod *= f[idx];
        }
        for (int offset = 16; offset > 0; offset >>= 1) prod += __shfl_down_sync(0xffffffffu, prod, offset);
        if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = prod;
        __syncthreads();
        if (threadIdx.x == 0) {
            double s = 0.0;
            for (int w = 0; w < kThreads / 32; ++w) s += warp_sums[w];
            partial[task * n_combos + c] = s;
        }
        __syncthreads();
    }
}

__global__ void reduce_kernel(const double* partial, long long n_bags, long long n_chunks, int n_combos,
                              double inv_nets, double* out) {
    const long long bc = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
    if (bc >= n_bags * n_combos) return;
    const long long bag = bc / n_combos, c = bc % n_combos;
    double s = 0.0;
    for (long long chunk = 0; chunk < n_chunks; ++chunk) s += partial[(bag * n_chunks + chunk) * n_combos + c];
    out[bc] = s * inv_nets;
}

Law make_law(const Spec& spec) {
    if (spec.n_points < 1 || spec.n_points > kMaxPoints) {
        throw std::invalid_argument("nnqft (cuda): n_points must be in [1, " + std::to_string(kMaxPoints) + "]");
    }
    const double d = spec.d_in;
    return Law{spec.points, spec.n_points, spec.d_in, spec.width,
               static_cast<float>(spec.sigma_w / std::sqrt(d)),
               static_cast<float>(spec.sigma_w / std::sqrt(static_cast<double>(spec.width))),
               static_cast<float>(spec.sigma_b), static_cast<float>(spec.sigma_b * spec.sigma_b),
               static_cast<float>(spec.sigma_w * spec.sigma_w / d), static_cast<std::uint32_t>(spec.seed),
               static_cast<std::uint32_t>(spec.seed >> 32)};
}

}  // namespace

void outputs(const Spec& spec, std::uint64_t first_net, long long n_nets, double* out, cudaStream_t stream) {
    const Law law = make_law(spec);
    const unsigned grid = physkernels::cuda::ceil_div(n_nets, kThreads);
    if (grid == 0) return;
    switch (spec.activation) {
        case kGauss: outputs_kernel<kGauss><<<grid, kThreads, 0, stream>>>(law, first_net, n_nets, out); break;
        case kErf: outputs_kernel<kErf><<<grid, kThreads, 0, stream>>>(law, first_net, n_nets, out); break;
        default: outputs_kernel<kRelu><<<grid, kThreads, 0, stream>>>(law, first_net, n_nets, out); break;
    }
    physkernels::cuda::check(cudaGetLastError(), "nnqft outputs_kernel");
}

void green(const Spec& spec, long long first_bag, long long n_bags, long long nets_per_bag, const int* members,
           int max_order, int n_combos, double* partial, double* out, cudaStream_t stream) {
    const Law law = make_law(spec);
    const long long n_chunks = (nets_per_bag + kThreads - 1) / kThreads;
    const unsigned grid = static_cast<unsigned>(n_bags * n_chunks);
    if (grid == 0) return;
    switch (spec.activation) {
        case kGauss:
            green_kernel<kGauss><<<grid, kThreads, 0, stream>>>(law, first_bag, nets_per_bag, n_chunks, members,
                                                               max_order, n_combos, partial);
            break;
        case kErf:
            green_kernel<kErf><<<grid, kThreads, 0, stream>>>(law, first_bag, nets_per_bag, n_chunks, members,
                                                             max_order, n_combos, partial);
            break;
        default:
            green_kernel<kRelu><<<grid, kThreads, 0, stream>>>(law, first_bag, nets_per_bag, n_chunks, members,
                                                              max_order, n_combos, partial);
            break;
    }
    physkernels::cuda::check(cudaGetLastError(), "nnqft green_kernel");
    const unsigned reduce_grid = physkernels::cuda::ceil_div(n_bags * n_combos, 256);
    reduce_kernel<<<reduce_grid, 256, 0, stream>>>(partial, n_bags, n_chunks, n_combos,
                                                   1.0 / static_cast<double>(nets_per_bag), out);
    physkernels::cuda::check(cudaGetLastError(), "nnqft reduce_kernel");
}

}  // namespace physkernels::nnqft::cuda
