// physkernels._C.cg2d: the CG2d CPU kernels (raw pointers from tensor.data_ptr(), shapes, strides, threads).
// Pointer 0 means absent: weight3 / grad_weight3 below order 3, bias / grad_bias, grad_x when not needed.
#include "cg2d.h"
#include "registry.h"

// Everything of this file lives in its own namespace, so the binding files also compile as one translation
// unit (setup.py's unity build).
namespace physkernels::bindings::cg2d_binding {

using physkernels::bindings::ptr;
using physkernels::cg2d::Geometry;
using physkernels::cg2d::Weights;

Geometry geometry(int64_t b, int64_t c, int64_t h, int64_t w, int64_t sb, int64_t sc, int64_t sh, int64_t sw,
                  int64_t c_out, int kh, int kw, int sy, int sx, int ph, int pw, int dh, int dw, int groups,
                  int order) {
    return Geometry{b, c, h, w, sb, sc, sh, sw, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups, order};
}

template <typename T>
void forward(std::uintptr_t x, std::uintptr_t w1, std::uintptr_t w2, std::uintptr_t w3, std::uintptr_t bias,
             std::uintptr_t y, int64_t b, int64_t c, int64_t h, int64_t w, int64_t sb, int64_t sc, int64_t sh,
             int64_t sw, int64_t c_out, int kh, int kw, int sy, int sx, int ph, int pw, int dh, int dw, int groups,
             int order, int threads) {
    const Geometry g = geometry(b, c, h, w, sb, sc, sh, sw, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups, order);
    const Weights<const T> weights{{ptr<const T>(w1), ptr<const T>(w2), ptr<const T>(w3)}};
    pybind11::gil_scoped_release release;
    physkernels::cg2d::forward<T>(ptr<const T>(x), weights, ptr<const T>(bias), ptr<T>(y), g, threads);
}

template <typename T>
void backward(std::uintptr_t grad_y, std::uintptr_t x, std::uintptr_t w1, std::uintptr_t w2, std::uintptr_t w3,
              std::uintptr_t grad_x, std::uintptr_t grad_w1, std::uintptr_t grad_w2, std::uintptr_t grad_w3,
              std::uintptr_t grad_bias, int64_t b, int64_t c, int64_t h, int64_t w, int64_t sb, int64_t sc,
              int64_t sh, int64_t sw, int64_t c_out, int kh, int kw, int sy, int sx, int ph, int pw, int dh, int dw,
              int groups, int order, int threads) {
    const Geometry g = geometry(b, c, h, w, sb, sc, sh, sw, c_out, kh, kw, sy, sx, ph, pw, dh, dw, groups, order);
    const Weights<const T> weights{{ptr<const T>(w1), ptr<const T>(w2), ptr<const T>(w3)}};
    const Weights<T> grads{{ptr<T>(grad_w1), ptr<T>(grad_w2), ptr<T>(grad_w3)}};
    pybind11::gil_scoped_release release;
    physkernels::cg2d::backward<T>(ptr<const T>(grad_y), ptr<const T>(x), weights, ptr<T>(grad_x), grads,
                                   ptr<T>(grad_bias), g, threads);
}


PHYSKERNELS_SUBMODULE(cg2d, m) {
    m.doc() = "CG2d fused forward/backward on CPU. Pointer 0 means absent (weight3, bias, grad_x, grad_bias).";
    m.def("forward_f32", &forward<float>);
    m.def("forward_f64", &forward<double>);
    m.def("backward_f32", &backward<float>);
    m.def("backward_f64", &backward<double>);
    m.def("isa", &physkernels::cg2d::isa, "instruction set the kernels use on this CPU");
}

}  // namespace physkernels::bindings::cg2d_binding
