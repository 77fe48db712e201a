// CG2d (TaylorNet's coarse-graining convolution), CPU kernels: fused forward and fused backward.
//
//   y[b,o,r] = bias[o] + sum_{c in o's group} sum_f W[o,c,f] * feat_f(x[b,c,patch(r)])
//
// with the per-channel features of a P = kh*kw patch in this order: the P values x_p, the P(P+1)/2 products
// x_p x_q (p <= q, lexicographic = torch.triu_indices order) and, for order 3, the P(P+1)(P+2)/6 products
// x_p x_q x_s (p <= q <= s, lexicographic); W1, W2, W3 hold the coefficients of each order.
//
// Features are formed per tile of output positions in small per-thread buffers; no im2col or product tensor is
// ever materialised. Results do not depend on the thread count: every output element has one owner and every
// reduction runs in a fixed order.
#pragma once

#include <cstdint>

namespace physkernels::cg2d {

struct Geometry {
    int64_t batch, channels, height, width;      // x: (B, C_in, H, W)
    int64_t stride_b, stride_c, stride_h, stride_w;  // element strides of x (NCHW or channels_last)
    int64_t out_channels;
    int kernel_h, kernel_w, stride_y, stride_x, pad_h, pad_w, dil_h, dil_w, groups, order;

    int64_t out_h() const { return (height + 2 * pad_h - dil_h * (kernel_h - 1) - 1) / stride_y + 1; }
    int64_t out_w() const { return (width + 2 * pad_w - dil_w * (kernel_w - 1) - 1) / stride_x + 1; }
    int patch() const { return kernel_h * kernel_w; }
    int features() const {
        const int p = patch();
        return p + p * (p + 1) / 2 + (order >= 3 ? p * (p + 1) * (p + 2) / 6 : 0);
    }
    int64_t group_in() const { return channels / groups; }
    int64_t group_out() const { return out_channels / groups; }
};

// The weights of each order, contiguous: w[0] = W1 (C_out, Cg, P), w[1] = W2 (C_out, Cg, P(P+1)/2),
// w[2] = W3 (C_out, Cg, P(P+1)(P+2)/6) or nullptr below order 3.
template <typename T>
struct Weights {
    T* w[3];
};

// x: strided per Geometry; bias: (C_out) or nullptr; y: (B, C_out, Ho, Wo) contiguous.
template <typename T>
void forward(const T* x, const Weights<const T>& weight, const T* bias, T* y, const Geometry& g, int threads);

// grad_y: (B, C_out, Ho, Wo) contiguous. grad_x: x's shape, contiguous NCHW, or nullptr (not computed);
// grad_weight: like weight; grad_bias: (C_out) or nullptr. Every output is overwritten.
template <typename T>
void backward(const T* grad_y, const T* x, const Weights<const T>& weight, T* grad_x, const Weights<T>& grad_weight,
              T* grad_bias, const Geometry& g, int threads);

// Which instruction set the kernels run with on this CPU ("avx512", "avx2+fma" or "baseline").
const char* isa();

}  // namespace physkernels::cg2d
