// The MPO batch-last GEMM micro-kernels compiled for AVX2+FMA (selected at run time by mpo_gemm.cpp).
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif
#define MPO_GEMM_ISA isa_avx2
#define MPO_VBYTES 32
#define MPO_NN_ROWS 6
#define MPO_NT_ROWS 3
#include "mpo_gemm_kernel.inl"
