// physkernels._C.taylor: fused TaylorLinear CPU kernels (csrc/taylor.cpp). Pointers are tensor.data_ptr() values;
// `bias`/`dbias` may be 0 (no bias). Shapes: x (B, n), weight (O, T), rows (n_rows, width) int32, y/grad (B, O).
#include "registry.h"
#include "taylor.h"

// Everything of this file lives in its own namespace, so the binding files also compile as one translation
// unit (setup.py's unity build).
namespace physkernels::bindings::taylor_binding {

namespace py = pybind11;
using physkernels::bindings::ptr;
using physkernels::taylor::RowTable;

RowTable table(std::uintptr_t rows, int64_t n_rows, int width) { return {ptr<const int32_t>(rows), n_rows, width}; }

template <typename S>
void define(py::module_& m, const char* suffix) {
    const std::string sfx(suffix);
    m.def(("forward" + sfx).c_str(),
          [](std::uintptr_t x, std::uintptr_t w, std::uintptr_t bias, std::uintptr_t rows, int64_t n_rows, int width,
             std::uintptr_t y, int64_t batch, int64_t n, int64_t out, int64_t terms, int threads) {
              physkernels::taylor::forward<S>(ptr<const S>(x), ptr<const S>(w), ptr<const S>(bias),
                                              table(rows, n_rows, width), ptr<S>(y), batch, n, out, terms, threads);
          },
          py::call_guard<py::gil_scoped_release>(), "y = bias + W . monomials(x), fused");
    m.def(("backward_input" + sfx).c_str(),
          [](std::uintptr_t grad, std::uintptr_t x, std::uintptr_t w, std::uintptr_t rows, int64_t n_rows, int width,
             std::uintptr_t dx, int64_t batch, int64_t n, int64_t out, int64_t terms, int threads) {
              physkernels::taylor::backward_input<S>(ptr<const S>(grad), ptr<const S>(x), ptr<const S>(w),
                                                     table(rows, n_rows, width), ptr<S>(dx), batch, n, out, terms,
                                                     threads);
          },
          py::call_guard<py::gil_scoped_release>(), "dx for a cotangent grad (B, O)");
    m.def(("backward_weight" + sfx).c_str(),
          [](std::uintptr_t grad, std::uintptr_t x, std::uintptr_t rows, int64_t n_rows, int width,
             std::uintptr_t dweight, std::uintptr_t dbias, int64_t batch, int64_t n, int64_t out, int64_t terms,
             int threads) {
              physkernels::taylor::backward_weight<S>(ptr<const S>(grad), ptr<const S>(x), table(rows, n_rows, width),
                                                      ptr<S>(dweight), ptr<S>(dbias), batch, n, out, terms, threads);
          },
          py::call_guard<py::gil_scoped_release>(), "dW = grad^T . monomials(x) and dbias = grad.sum(0)");
}


PHYSKERNELS_SUBMODULE(taylor, m) {
    define<float>(m, "_f32");
    define<double>(m, "_f64");
}

}  // namespace physkernels::bindings::taylor_binding
