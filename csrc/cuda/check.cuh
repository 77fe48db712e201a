// Error handling shared by the CUDA kernels: a failed launch becomes a C++ exception (a Python RuntimeError).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <cstdint>
#include <string>

namespace physkernels::cuda {

inline void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) {
        throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
    }
}

inline cudaStream_t as_stream(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

inline unsigned ceil_div(long long a, long long b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace physkernels::cuda
