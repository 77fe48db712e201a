// physkernels._C.cg2d: the CG2d CPU kernels (raw pointers from tensor.data_ptr(), shapes, strides, threads).
#include "cg2d.h"
#include "registry.h"

namespace {

using physkernels::bindings::ptr;
using physkernels::cg2d::Geometry;

Geometry geometry(int64_t b, int64_t c, int64_t h, int64_t w, int64_t sb, int64_t sc, int64_t sh, int64_t sw,
                  int64_t c_out, int kh, int kw, int sy, int sx, int ph, int pw, int dh, int dw, int groups,
                  int order) {
    return Geometry{b, c, h, w, sb, sc, sh, sw, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups, order};
}

template <typename T>
void forward(std::uintptr_t x, std::uintptr_t weight, std::uintptr_t bias, std::uintptr_t y, int64_t b, int64_t c,
             int64_t h, int64_t w, int64_t sb, int64_t sc, int64_t sh, int64_t sw, int64_t c_out, int kh, int kw,
             int sy, int sx, int ph, int pw, int dh, int dw, int groups, int order, int threads) {
    const Geometry g = geometry(b, c, h, w, sb, sc, sh, sw, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups, order);
    pybind11::gil_scoped_release release;
    physkernels::cg2d::forward<T>(ptr<const T>(x), ptr<const T>(weight), ptr<const T>(bias), ptr<T>(y), g, threads);
}

template <typename T>
void backward(std::uintptr_t grad_y, std::uintptr_t grad_y_cl, std::uintptr_t x, std::uintptr_t weight, std::uintptr_t grad_x,
              std::uintptr_t grad_weight, std::uintptr_t grad_bias, int64_t b, int64_t c, int64_t h, int64_t w,
              int64_t sb, int64_t sc, int64_t sh, int64_t sw, int64_t c_out, int kh, int kw, int sy, int sx, int ph,
              int pw, int dh, int dw, int groups, int order, int threads) {
    const Geometry g = geometry(b, c, h, w, sb, sc, sh, sw, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups, order);
    pybind11::gil_scoped_release release;
    physkernels::cg2d::backward<T>(ptr<const T>(grad_y), ptr<const T>(grad_y_cl), ptr<const T>(x), ptr<const T>(weight), ptr<T>(grad_x),
                                   ptr<T>(grad_weight), ptr<T>(grad_bias), g, threads);
}

}  // namespace

PHYSKERNELS_SUBMODULE(cg2d, m) {
    m.doc() = "CG2d fused forward/backward. Pointer 0 means absent (bias, grad_x, grad_bias).";
    m.def("forward_f32", &forward<float>);
    m.def("forward_f64", &forward<double>);
    m.def("backward_f32", &backward<float>);
    m.def("backward_f64", &backward<double>);
    m.def("isa", &physkernels::cg2d::isa, "instruction set the kernels use on this CPU");
}
