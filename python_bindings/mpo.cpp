// physkernels._C.mpo: the fused MPO chain (csrc/mpo.cpp) over merged groups of cores (csrc/mpo_merge.cpp).
// Pointers are tensor.data_ptr() integers; every tensor is contiguous. cores: one pointer per core, shapes:
// (D_l, I, J, D_r) per core, groups: [first, stop) core ranges merged into one chain step each (the plan's
// grouping). grad_x = 0 skips dx (x needs no gradient).
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>

#include "mpo.h"
#include "mpo_gemm.h"
#include "mpo_merge.h"
#include "registry.h"

// Everything of this file lives in its own namespace, so the binding files also compile as one translation
// unit (setup.py's unity build).
namespace physkernels::bindings::mpo_binding {

namespace py = pybind11;
using physkernels::bindings::ptr;
using physkernels::mpo::CoreShape;
using physkernels::mpo::Group;
using Shapes = std::vector<std::array<std::int64_t, 4>>;

template <typename T>
physkernels::mpo::MergedChain<T> merged_chain(const std::vector<std::uintptr_t>& cores, const Shapes& shapes,
                                              const std::vector<Group>& groups) {
    if (cores.size() != shapes.size()) throw std::invalid_argument("mpo: one shape per core");
    std::vector<const T*> core_ptrs;
    std::vector<CoreShape> core_shapes;
    for (std::size_t k = 0; k < cores.size(); ++k) {
        core_ptrs.push_back(ptr<const T>(cores[k]));
        core_shapes.push_back({shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]});
    }
    return physkernels::mpo::MergedChain<T>(core_ptrs, core_shapes, groups);
}

void check_batch(std::int64_t batch, std::int64_t tile) {
    if (batch < 1 || tile < 1) throw std::invalid_argument("mpo: batch and tile must be >= 1");
}

template <typename T>
void forward(std::uintptr_t x, std::int64_t batch, const std::vector<std::uintptr_t>& cores, const Shapes& shapes,
             const std::vector<Group>& groups, std::uintptr_t y, std::int64_t tile, int threads) {
    check_batch(batch, tile);
    py::gil_scoped_release release;
    const auto chain = merged_chain<T>(cores, shapes, groups);
    physkernels::mpo::chain_forward<T>(ptr<const T>(x), batch, chain.in_features(), chain.out_features(),
                                       chain.mats(), physkernels::mpo::ltr_steps(chain.merged_shapes()), ptr<T>(y),
                                       tile, threads);
}

template <typename T>
void backward(std::uintptr_t grad, std::uintptr_t x, std::int64_t batch, const std::vector<std::uintptr_t>& cores,
              const Shapes& shapes, const std::vector<Group>& groups, std::uintptr_t grad_x,
              const std::vector<std::uintptr_t>& grad_cores, std::int64_t tile, int threads) {
    check_batch(batch, tile);
    if (grad_cores.size() != cores.size()) throw std::invalid_argument("mpo: one gradient per core");
    std::vector<T*> core_grads;
    for (auto p : grad_cores) core_grads.push_back(ptr<T>(p));
    py::gil_scoped_release release;
    auto chain = merged_chain<T>(cores, shapes, groups);
    physkernels::mpo::chain_backward<T>(ptr<const T>(grad), ptr<const T>(x), batch, chain.in_features(),
                                        chain.out_features(), chain.mats(),
                                        physkernels::mpo::ltr_steps(chain.merged_shapes()), ptr<T>(grad_x),
                                        chain.merged_grads(core_grads), tile, threads);
    chain.project(core_grads);
}


PHYSKERNELS_SUBMODULE(mpo, m) {
    m.doc() = "Fused MPO chain: merged groups of cores, then per batch tile the chain of step GEMMs in cache";
    m.def("forward_f32", &forward<float>);
    m.def("forward_f64", &forward<double>);
    m.def("backward_f32", &backward<float>);
    m.def("backward_f64", &backward<double>);
    m.def("isa", &physkernels::mpo_gemm::selected_isa, "instruction set of the chain micro-kernels (PHYSKERNELS_MPO_ISA caps it)");
}

}  // namespace physkernels::bindings::mpo_binding
