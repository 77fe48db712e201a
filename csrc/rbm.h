// Fused block-Gibbs sampling of a Bernoulli RBM, E(v, h) = -b.v - c.h - v^T W h (Eq. 23 of the RBM source paper).
#pragma once

#include <cstdint>

namespace physkernels::rbm {

// k block-Gibbs steps for `batch` independent chains. Step t (1..k) draws h_t ~ p(h | v_{t-1}) then
// v_t ~ p(v | h_t), with p(h_j = 1 | v) = sigmoid(c_j + sum_i v_i W_ij), p(v_i = 1 | h) = sigmoid(b_i + sum_j W_ij h_j).
// v0: (batch, nv) of 0/1; W: (nv, nh) row-major; v_out: (batch, nv) <- v_k; h_out: (batch, nh) <- h_k.
// Uniforms come from the counter-based generator of ising_rng.h keyed by (seed, chain, step_offset + t, phase,
// unit), so the result does not depend on the thread count and a chain continues exactly with step_offset += k.
template <typename T>
void gibbs(const T* v0, const T* W, const T* b, const T* c, T* v_out, T* h_out, std::int64_t batch, std::int64_t nv,
           std::int64_t nh, std::int64_t k, std::uint64_t seed, std::uint64_t step_offset, int threads);

}  // namespace physkernels::rbm
