// CUDA NN-QFT ensemble kernels (see nnqft.cu); host launchers callable from the torch-free bindings.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace physkernels::nnqft::cuda {

constexpr int kNetsPerBlock = 256;  // networks per partial sum (one CUDA block)
constexpr int kMaxPoints = 64;      // points per call (per-thread register/local array)

struct Spec {
    const double* points;  // device (n_points, d_in) float64
    int n_points, d_in;
    std::uint32_t width;
    double sigma_w, sigma_b;
    int activation;
    std::uint64_t seed;
};

void outputs(const Spec& spec, std::uint64_t first_net, long long n_nets, double* out, cudaStream_t stream);

// members: device int32 (n_combos, max_order) point indices padded with -1; partial: device scratch of
// n_bags * ceil(nets_per_bag / kNetsPerBlock) * n_combos doubles; out: device (n_bags, n_combos).
void green(const Spec& spec, long long first_bag, long long n_bags, long long nets_per_bag, const int* members,
           int max_order, int n_combos, double* partial, double* out, cudaStream_t stream);

}  // namespace physkernels::nnqft::cuda
