// Fused MPO chain kernels (CPU): y = x W^T with W an MPO, applied core by core per batch tile.
//
// The chain is given as its steps (see physkernels/mpo/planner.py, left-to-right order): step s multiplies
// `count` blocks of the state by one matrix A_s (m x k):
//
//     out[c] (m x rest*T) = A_s (m x k) @ in[c] (k x rest*T),   c < count,
//
// A_s is passed as its transpose C_s = A_s^T (k x m, row-major), which is the step's (merged) core
// (D_l, I, J, D_r) itself, read as a (D_l I) x (J D_r) matrix: no permuted copy of the core is needed.
// where T is the batch tile and the tile's samples are the fastest index ("batch last"). The input state of step 0
// is the tile of x transposed (prod I x T), the output of the last step the tile of y transposed (prod J x T).
// A tile's intermediates live in two per-thread buffers sized to stay in cache. OpenMP runs over batch tiles.
//
// Backward: per tile, the forward states are recomputed and kept, then for the steps in reverse
//     dA_s += dOut @ in^T      (partial per tile, reduced over tiles in tile order: thread-count independent)
//     dIn   = A_s^T @ dOut
// and the last dIn is the tile of dx transposed; the gradient is returned as dC_s = dA_s^T (the core's layout).
#pragma once

#include <cstdint>
#include <vector>

namespace physkernels::mpo {

struct Step {
    std::int64_t count, m, k, rest;  // rest: columns per sample of the step's input/output blocks
};

template <typename T>
void chain_forward(const T* x, std::int64_t batch, std::int64_t in_features, std::int64_t out_features,
                   const std::vector<const T*>& mats, const std::vector<Step>& steps, T* y, std::int64_t tile,
                   int threads);

// grad_mats[s] receives dL/dC_s (k x m); grad_x may be nullptr (x needs no gradient: the first step's dIn is
// skipped).
template <typename T>
void chain_backward(const T* grad, const T* x, std::int64_t batch, std::int64_t in_features,
                    std::int64_t out_features, const std::vector<const T*>& mats, const std::vector<Step>& steps,
                    T* grad_x, const std::vector<T*>& grad_mats, std::int64_t tile, int threads);

}  // namespace physkernels::mpo
