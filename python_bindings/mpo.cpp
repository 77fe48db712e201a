// physkernels._C.mpo: the fused MPO chain (csrc/mpo.cpp). Pointers are tensor.data_ptr() integers; every tensor
// is contiguous. steps: (count, m, k, rest) per step; mats: the step matrices A_s (m x k), row-major. grad_x = 0
// skips dx (x needs no gradient).
#include <pybind11/stl.h>

#include <array>

#include "mpo.h"
#include "mpo_gemm.h"
#include "registry.h"

namespace {

namespace py = pybind11;
using physkernels::bindings::ptr;
using Steps = std::vector<std::array<std::int64_t, 4>>;

std::vector<physkernels::mpo::Step> to_steps(const Steps& raw) {
    if (raw.empty()) throw std::invalid_argument("mpo: the chain needs at least one step");
    std::vector<physkernels::mpo::Step> steps;
    for (const auto& s : raw) {
        if (s[0] < 1 || s[1] < 1 || s[2] < 1 || s[3] < 1) throw std::invalid_argument("mpo: step sizes must be >= 1");
        steps.push_back({s[0], s[1], s[2], s[3]});
    }
    return steps;
}

template <typename T>
std::vector<const T*> const_ptrs(const std::vector<std::uintptr_t>& raw) {
    std::vector<const T*> out;
    for (auto p : raw) out.push_back(ptr<const T>(p));
    return out;
}

template <typename T>
void forward(std::uintptr_t x, std::int64_t batch, std::int64_t in_features, std::int64_t out_features,
             const std::vector<std::uintptr_t>& mats, const Steps& steps, std::uintptr_t y, std::int64_t tile,
             int threads) {
    if (mats.size() != steps.size()) throw std::invalid_argument("mpo: one matrix per step");
    py::gil_scoped_release release;
    physkernels::mpo::chain_forward<T>(ptr<const T>(x), batch, in_features, out_features, const_ptrs<T>(mats),
                                       to_steps(steps), ptr<T>(y), tile, threads);
}

template <typename T>
void backward(std::uintptr_t grad, std::uintptr_t x, std::int64_t batch, std::int64_t in_features,
              std::int64_t out_features, const std::vector<std::uintptr_t>& mats, const Steps& steps,
              std::uintptr_t grad_x, const std::vector<std::uintptr_t>& grad_mats, std::uintptr_t scratch,
              std::int64_t tile, int threads) {
    if (mats.size() != steps.size() || grad_mats.size() != steps.size())
        throw std::invalid_argument("mpo: one matrix and one gradient per step");
    std::vector<T*> grads;
    for (auto p : grad_mats) grads.push_back(ptr<T>(p));
    py::gil_scoped_release release;
    physkernels::mpo::chain_backward<T>(ptr<const T>(grad), ptr<const T>(x), batch, in_features, out_features,
                                        const_ptrs<T>(mats), to_steps(steps), ptr<T>(grad_x), grads,
                                        ptr<T>(scratch), tile, threads);
}

}  // namespace

PHYSKERNELS_SUBMODULE(mpo, m) {
    m.doc() = "Fused MPO chain: per batch tile, the chain of step GEMMs with intermediates in cache";
    m.def("forward_f32", &forward<float>);
    m.def("forward_f64", &forward<double>);
    m.def("backward_f32", &backward<float>);
    m.def("backward_f64", &backward<double>);
    m.def("isa", &physkernels::mpo_gemm::selected_isa, "instruction set of the chain micro-kernels (PHYSKERNELS_MPO_ISA caps it)");
}
