// physkernels._C_cuda.taylor: fused TaylorLinear CUDA kernels (csrc/cuda/taylor.cu). Pointers are device
// tensor.data_ptr() values (bias may be 0), `stream` is torch.cuda.current_stream().cuda_stream.
#include "registry.h"
#include "taylor.cuh"

namespace {

namespace py = pybind11;
using physkernels::bindings::ptr;
namespace k = physkernels::cuda::taylor;

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

template <typename S>
void define(py::module_& m, const std::string& sfx) {
    m.def(("forward" + sfx).c_str(),
          [](std::uintptr_t x, std::uintptr_t w, std::uintptr_t bias, std::uintptr_t rows, int64_t n_rows, int width,
             std::uintptr_t y, int64_t batch, int64_t n, int64_t out, int64_t terms, std::uintptr_t stream) {
              k::forward<S>(ptr<const S>(x), ptr<const S>(w), ptr<const S>(bias), ptr<const int32_t>(rows), n_rows,
                            width, ptr<S>(y), batch, n, out, terms, as_stream(stream));
          },
          py::call_guard<py::gil_scoped_release>());
    m.def(("backward_input" + sfx).c_str(),
          [](std::uintptr_t grad, std::uintptr_t x, std::uintptr_t w, std::uintptr_t rows, int64_t n_rows, int width,
             std::uintptr_t dx, std::uintptr_t comp, int64_t batch, int64_t n, int64_t out, int64_t terms,
             std::uintptr_t stream) {
              k::backward_input<S>(ptr<const S>(grad), ptr<const S>(x), ptr<const S>(w), ptr<const int32_t>(rows),
                                   n_rows, width, ptr<S>(dx), ptr<S>(comp), batch, n, out, terms, as_stream(stream));
          },
          py::call_guard<py::gil_scoped_release>());
    m.def(("backward_weight" + sfx).c_str(),
          [](std::uintptr_t grad, std::uintptr_t x, std::uintptr_t rows, int width, std::uintptr_t term_rows,
             std::uintptr_t dweight, int64_t batch, int64_t n, int64_t out, int64_t terms, std::uintptr_t stream) {
              k::backward_weight<S>(ptr<const S>(grad), ptr<const S>(x), ptr<const int32_t>(rows), width,
                                    ptr<const int32_t>(term_rows), ptr<S>(dweight), batch, n, out, terms,
                                    as_stream(stream));
          },
          py::call_guard<py::gil_scoped_release>());
}

}  // namespace

PHYSKERNELS_SUBMODULE(taylor, m) {
    define<float>(m, "_f32");
    define<double>(m, "_f64");
}
