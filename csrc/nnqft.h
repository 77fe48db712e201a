// NN-QFT network ensembles on the CPU (OpenMP): the fused ensemble kernel of physkernels.physics.nnqft.
//
// Network (Eq. 2.1-2.2 of Erbin-Lahoche-Samary): f(x) = b1 + sum_j W1_j g(W0_j . x + b0_j), j < N, with
// W0 ~ N(0, sigma_w^2 / d_in), W1 ~ N(0, sigma_w^2 / N), b0, b1 ~ N(0, sigma_b^2), every parameter drawn from
// Philox keyed by (seed, network index) inside the kernel (see nnqft_rng.h for the counter layout).
#pragma once

#include <cstdint>

namespace physkernels::nnqft {

struct EnsembleSpec {
    const double* points;  // (n_points, d_in), row-major
    int n_points;
    int d_in;
    std::uint32_t width;
    double sigma_w;
    double sigma_b;
    int activation;  // Activation in nnqft_rng.h
    std::uint64_t seed;
};

// Networks are evaluated in chunks of this many; per-chunk partial sums are reduced in chunk order, so a bag's
// Green functions do not depend on the thread count.
constexpr std::int64_t kNetsPerChunk = 256;

// out[a, k] = f_{first_net + a}(x_k) for a < n_nets.
void ensemble_outputs(const EnsembleSpec& spec, std::uint64_t first_net, std::int64_t n_nets, double* out,
                      int threads);

// For bags b in [first_bag, first_bag + n_bags) (network a of bag b has index b * nets_per_bag + a):
//   out[b - first_bag, c] = (1 / nets_per_bag) sum_a prod_{i in combo c} f_a(x_i)
// where combo c is combo parent[c] (or the empty product when parent[c] < 0) times point[c]; parents precede
// children. `partial` is scratch of n_bags * ceil(nets_per_bag / kNetsPerChunk) * n_combos doubles.
void ensemble_green(const EnsembleSpec& spec, std::int64_t first_bag, std::int64_t n_bags, std::int64_t nets_per_bag,
                    const std::int32_t* parent, const std::int32_t* point, int n_combos, double* partial, double* out,
                    int threads);

// Instruction set of the kernel copy in use: "avx512", "avx2" or "baseline" (capped by PHYSKERNELS_NNQFT_ISA).
const char* selected_isa();

// Raw Philox4x32-10 blocks for tests: out[i] = philox(counters[i], key) for n blocks of four words.
void philox_blocks(const std::uint32_t* counters, std::int64_t n, std::uint32_t key0, std::uint32_t key1,
                   std::uint32_t* out);

// The kernel's float math on an array, for accuracy tests: kind 0 exp, 1 log, 2 sin(2 pi x), 3 cos(2 pi x), 4 erf.
void fast_math(int kind, const float* x, std::int64_t n, float* out);

}  // namespace physkernels::nnqft
