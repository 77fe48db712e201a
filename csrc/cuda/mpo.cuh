// Fused MPO chain on CUDA: the structure of csrc/mpo.cpp with one thread block per batch tile.
//
// table: int64 (count, m, k, rest, offset of A_s in mats) per step; mats: the step matrices A_s (m x k),
// concatenated. Forward states live in shared memory when 2 * half elements fit (use_shared), else in the block's
// slot of `scratch` (2 * half elements per block). Backward: each block keeps its tile's forward states in its
// scratch slot (state_total + 2 * half elements per block), writes per-tile partial dA_s to `partials`
// (n_tiles x mat_total) and a second kernel reduces them in tile order (deterministic).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace physkernels::cuda::mpo {

template <typename T>
void chain_forward(const T* x, T* y, const T* mats, const long long* table, int n_steps, long long batch,
                   long long in_features, long long out_features, long long half, int tile, T* scratch,
                   bool use_shared, cudaStream_t stream);

template <typename T>
void chain_backward(const T* grad, const T* x, T* grad_x, const T* mats, T* grad_mats, const long long* table,
                    int n_steps, long long batch, long long in_features, long long out_features, long long half,
                    long long state_total, long long mat_total, int tile, T* scratch, T* partials,
                    cudaStream_t stream);

}  // namespace physkernels::cuda::mpo
