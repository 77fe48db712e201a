// CG2d CUDA kernels (order 2), host-side launchers. Same math, weight layouts and Geometry as csrc/cg2d.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cg2d.h"

namespace physkernels::cg2d::cuda {

// Largest patch (kh*kw) the CUDA kernels take; the Python side routes larger kernels elsewhere.
constexpr int kMaxPatch = 16;

// y = cg2d(x, w1, w2, bias) (bias may be nullptr). x strided per Geometry, y contiguous NCHW.
template <typename T>
void forward(const T* x, const T* w1, const T* w2, const T* bias, T* y, const Geometry& g, cudaStream_t stream);

// Number of position slabs the weight gradient is split into (partials of slabs x C_out x Cg x F values, reduced in
// a fixed order afterwards, so the result is deterministic).
int64_t weight_grad_slabs(const Geometry& g);

// Gradients; grad_x / grad_bias may be nullptr. `partial` holds weight_grad_slabs(g) * C_out * Cg * F values.
template <typename T>
void backward(const T* grad_y, const T* x, const T* w1, const T* w2, T* grad_x, T* grad_w1, T* grad_w2,
              T* grad_bias, T* partial, const Geometry& g, cudaStream_t stream);

}  // namespace physkernels::cg2d::cuda
