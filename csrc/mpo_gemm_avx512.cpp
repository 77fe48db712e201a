// The MPO batch-last GEMM micro-kernels compiled for AVX-512 (selected at run time by mpo_gemm.cpp).
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma")
#endif
#define MPO_GEMM_ISA isa_avx512
#define MPO_VBYTES 64
#define MPO_NN_ROWS 12
#define MPO_NT_ROWS 4
#include "mpo_gemm_kernel.inl"
