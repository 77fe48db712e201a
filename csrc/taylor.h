// TaylorLinear fused CPU kernels: y = bias + W . monomials(x) without ever forming the (batch, n_terms) features.
//
// Shapes (row-major, contiguous): x (B, n), W (O, T), bias (O), y (B, O), g = dL/dy (B, O), T = n_terms.
// `rows` is the int32 row table of physkernels.taylor.row_table (n_rows, width): each row is a lower-degree
// prefix monomial times x[j] for j = j0 .. n-1 (see csrc/taylor.cpp). All three entry points are deterministic
// and independent of the thread count.
#pragma once

#include <cstdint>

namespace physkernels::taylor {

struct RowTable {
    const int32_t* data;
    int64_t count;
    int width;
};

template <typename S>
void forward(const S* x, const S* weight, const S* bias, RowTable rows, S* y, int64_t batch, int64_t n,
             int64_t out, int64_t terms, int threads);

// dx (B, n) = d/dx of sum_{b,a} g[b,a] y[b,a]
template <typename S>
void backward_input(const S* grad, const S* x, const S* weight, RowTable rows, S* dx, int64_t batch, int64_t n,
                    int64_t out, int64_t terms, int threads);

// dW (O, T) = g^T . features(x); dbias (O) = sum_b g (skipped when dbias is null)
template <typename S>
void backward_weight(const S* grad, const S* x, RowTable rows, S* dweight, S* dbias, int64_t batch, int64_t n,
                     int64_t out, int64_t terms, int threads);

}  // namespace physkernels::taylor
