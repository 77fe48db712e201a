// physkernels._C_cuda.mpo: the fused MPO chain on CUDA (csrc/cuda/mpo.cu). Device pointers as integers, a
// cudaStream_t handle as an integer; see csrc/cuda/mpo.cuh for the buffers.
#include "mpo.cuh"
#include "check.cuh"
#include "registry.h"

namespace {

using physkernels::bindings::ptr;
namespace kernels = physkernels::cuda::mpo;

template <typename T>
void forward(std::uintptr_t x, std::uintptr_t y, std::uintptr_t mats, std::uintptr_t table, int n_steps,
             long long batch, long long in_features, long long out_features, long long half, int tile,
             std::uintptr_t scratch, bool use_shared, std::uintptr_t stream) {
    pybind11::gil_scoped_release release;
    kernels::chain_forward<T>(ptr<const T>(x), ptr<T>(y), ptr<const T>(mats), ptr<const long long>(table), n_steps,
                              batch, in_features, out_features, half, tile, ptr<T>(scratch), use_shared,
                              physkernels::cuda::as_stream(stream));
}

template <typename T>
void backward(std::uintptr_t grad, std::uintptr_t x, std::uintptr_t grad_x, std::uintptr_t mats,
              std::uintptr_t grad_mats, std::uintptr_t table, int n_steps, long long batch, long long in_features,
              long long out_features, long long half, long long state_total, long long mat_total, int tile,
              std::uintptr_t scratch, std::uintptr_t partials, std::uintptr_t stream) {
    pybind11::gil_scoped_release release;
    kernels::chain_backward<T>(ptr<const T>(grad), ptr<const T>(x), ptr<T>(grad_x), ptr<const T>(mats),
                               ptr<T>(grad_mats), ptr<const long long>(table), n_steps, batch, in_features,
                               out_features, half, state_total, mat_total, tile, ptr<T>(scratch), ptr<T>(partials),
                               physkernels::cuda::as_stream(stream));
}

}  // namespace

PHYSKERNELS_SUBMODULE(mpo, m) {
    m.doc() = "Fused MPO chain on CUDA: one thread block per batch tile";
    m.def("forward_f32", &forward<float>);
    m.def("forward_f64", &forward<double>);
    m.def("backward_f32", &backward<float>);
    m.def("backward_f64", &backward<double>);
}
