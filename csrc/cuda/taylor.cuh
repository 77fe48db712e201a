// TaylorLinear CUDA launchers (csrc/cuda/taylor.cu). Same contract as the CPU kernels in csrc/taylor.h: device
// pointers, row-major contiguous x (B, n), W (O, T), y/grad (B, O); `rows` is the int32 row table
// (n_rows, width) and `term_rows` (T) the row of each term, both from physkernels.taylor, on the device.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace physkernels::cuda::taylor {

template <typename S>
void forward(const S* x, const S* weight, const S* bias, const int32_t* rows, int64_t n_rows, int width, S* y,
             int64_t batch, int64_t n, int64_t out, int64_t terms, cudaStream_t stream);

// dx (B, n) must be zeroed by the caller; comp (B, n) is zeroed scratch for the compensated sums.
template <typename S>
void backward_input(const S* grad, const S* x, const S* weight, const int32_t* rows, int64_t n_rows, int width,
                    S* dx, S* comp, int64_t batch, int64_t n, int64_t out, int64_t terms, cudaStream_t stream);

template <typename S>
void backward_weight(const S* grad, const S* x, const int32_t* rows, int width, const int32_t* term_rows,
                     S* dweight, int64_t batch, int64_t n, int64_t out, int64_t terms, cudaStream_t stream);

}  // namespace physkernels::cuda::taylor
