// physkernels._C_cuda.cg2d: the CG2d CUDA kernels (device pointers from tensor.data_ptr(), shapes, strides and a
// cudaStream_t handle). Pointer 0 means absent (bias, grad_x, grad_bias).
#include "cg2d.cuh"
#include "check.cuh"
#include "registry.h"

namespace {

using physkernels::bindings::ptr;
using physkernels::cg2d::Geometry;
namespace kernels = physkernels::cg2d::cuda;

Geometry geometry(int64_t b, int64_t c, int64_t h, int64_t w, int64_t sb, int64_t sc, int64_t sh, int64_t sw,
                  int64_t c_out, int kh, int kw, int sy, int sx, int ph, int pw, int dh, int dw, int groups) {
    return Geometry{b, c, h, w, sb, sc, sh, sw, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups, 2};
}

template <typename T>
void forward(std::uintptr_t x, std::uintptr_t w1, std::uintptr_t w2, std::uintptr_t bias, std::uintptr_t y,
             int64_t b, int64_t c, int64_t h, int64_t w, int64_t sb, int64_t sc, int64_t sh, int64_t sw,
             int64_t c_out, int kh, int kw, int sy, int sx, int ph, int pw, int dh, int dw, int groups,
             std::uintptr_t stream) {
    const Geometry g = geometry(b, c, h, w, sb, sc, sh, sw, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups);
    kernels::forward<T>(ptr<const T>(x), ptr<const T>(w1), ptr<const T>(w2), ptr<const T>(bias), ptr<T>(y), g,
                        physkernels::cuda::as_stream(stream));
}

template <typename T>
void backward(std::uintptr_t grad_y, std::uintptr_t x, std::uintptr_t w1, std::uintptr_t w2, std::uintptr_t grad_x,
              std::uintptr_t grad_w1, std::uintptr_t grad_w2, std::uintptr_t grad_bias, std::uintptr_t partial,
              int64_t b, int64_t c, int64_t h, int64_t w, int64_t sb, int64_t sc, int64_t sh, int64_t sw,
              int64_t c_out, int kh, int kw, int sy, int sx, int ph, int pw, int dh, int dw, int groups,
              std::uintptr_t stream) {
    const Geometry g = geometry(b, c, h, w, sb, sc, sh, sw, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups);
    kernels::backward<T>(ptr<const T>(grad_y), ptr<const T>(x), ptr<const T>(w1), ptr<const T>(w2), ptr<T>(grad_x),
                         ptr<T>(grad_w1), ptr<T>(grad_w2), ptr<T>(grad_bias), ptr<T>(partial), g,
                         physkernels::cuda::as_stream(stream));
}

int64_t slabs(int64_t b, int64_t c, int64_t h, int64_t w, int64_t c_out, int kh, int kw, int sy, int sx, int ph,
              int pw, int dh, int dw, int groups) {
    return kernels::weight_grad_slabs(geometry(b, c, h, w, 0, 0, 0, 0, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups));
}

}  // namespace

PHYSKERNELS_SUBMODULE(cg2d, m) {
    m.doc() = "CG2d (order 2) CUDA kernels. Pointer 0 means absent (bias, grad_x, grad_bias).";
    m.def("forward_f32", &forward<float>);
    m.def("forward_f64", &forward<double>);
    m.def("backward_f32", &backward<float>);
    m.def("backward_f64", &backward<double>);
    m.def("weight_grad_slabs", &slabs, "slabs of the weight-gradient partial buffer (b, c, h, w, c_out, kh, kw, ...)");
    m.attr("max_patch") = kernels::kMaxPatch;
}
