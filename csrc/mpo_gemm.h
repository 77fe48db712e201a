// Batch-last GEMM kernels of the MPO chain (CPU). Every chain step (see physkernels/mpo/planner.py) is
//
//     out[g] (m x n) = A (m x k) @ S[g] (k x n),   g < count,
//
// with A a small core matrix and n = (remaining features) x batch the long, contiguous dimension; its backward is
//
//     dS[g] = A^T @ dOut[g]                    (the same kernel with A read transposed)
//     dA    = sum_g dOut[g] (m x n) @ S[g]^T   (dot products over n)
//
// The fused chain (mpo.cpp) runs these per batch tile, on states that stay in cache. BLAS would pack S for every
// call, which costs as much as the arithmetic when m or k is small; these serial kernels stream S once, with
// register tiles of A-rows x vector columns (gemm_nn) or of D-rows x S-rows (gemm_nt_acc, one horizontal sum per
// tile after all blocks), compiled for baseline x86-64, AVX2+FMA and AVX-512; the widest one the CPU runs is used
// (runtime dispatch). Each output element has one fixed summation order for a given instruction set.
#pragma once

#include <cstdint>

namespace physkernels::mpo_gemm {

// C (m x n, row stride ldc) = A @ B, A[i][p] = a[i * a_row + p * a_col], B (k x n, row stride ldb). Serial.
// With a_row == 1 (A's columns contiguous) the last n % (vector width) columns run vectorised down the rows of A,
// so short rows (a batch tile of 1-8 samples) stay fast; otherwise they run scalar.
template <typename T>
void gemm_nn(const T* a, std::int64_t a_row, std::int64_t a_col, const T* b, std::int64_t ldb, T* c,
             std::int64_t ldc, std::int64_t m, std::int64_t k, std::int64_t n);

// C (m x k, row stride ldc) += sum_{g < count} D_g (m x n, row stride ldd) @ S_g (k x n, row stride lds)^T with
// D_g = d + g d_step, S_g = s + g s_step. Serial.
template <typename T>
void gemm_nt_acc(const T* d, std::int64_t ldd, std::int64_t d_step, const T* s, std::int64_t lds,
                 std::int64_t s_step, T* c, std::int64_t ldc, std::int64_t m, std::int64_t k, std::int64_t n,
                 std::int64_t count);

// The instruction set in use: "avx512", "avx2" or "baseline" (PHYSKERNELS_MPO_ISA caps it).
const char* selected_isa();

}  // namespace physkernels::mpo_gemm
