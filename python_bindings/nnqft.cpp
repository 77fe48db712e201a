// physkernels._C.nnqft: NN-QFT ensemble kernels (raw pointers from tensor.data_ptr(); float64 points and results).
#include <string>

#include "nnqft.h"
#include "registry.h"

// Everything of this file lives in its own namespace, so the binding files also compile as one translation
// unit (setup.py's unity build).
namespace physkernels::bindings::nnqft_binding {

using physkernels::bindings::ptr;
using physkernels::nnqft::EnsembleSpec;

EnsembleSpec make_spec(std::uintptr_t points, int n_points, int d_in, std::uint32_t width, double sigma_w,
                       double sigma_b, int activation, std::uint64_t seed) {
    return EnsembleSpec{ptr<const double>(points), n_points, d_in, width, sigma_w, sigma_b, activation, seed};
}


PHYSKERNELS_SUBMODULE(nnqft, m) {
    namespace py = pybind11;
    m.attr("nets_per_chunk") = physkernels::nnqft::kNetsPerChunk;
    m.def("isa", [] { return std::string(physkernels::nnqft::selected_isa()); },
          "instruction set of the ensemble kernel in use (avx512, avx2 or baseline)");
    m.def(
        "outputs",
        [](std::uintptr_t points, int n_points, int d_in, std::uint32_t width, double sigma_w, double sigma_b,
           int activation, std::uint64_t seed, std::uint64_t first_net, std::int64_t n_nets, std::uintptr_t out,
           int threads) {
            py::gil_scoped_release release;
            physkernels::nnqft::ensemble_outputs(
                make_spec(points, n_points, d_in, width, sigma_w, sigma_b, activation, seed), first_net, n_nets,
                ptr<double>(out), threads);
        },
        "f (n_nets, n_points) float64 of networks first_net .. first_net + n_nets - 1");
    m.def(
        "green",
        [](std::uintptr_t points, int n_points, int d_in, std::uint32_t width, double sigma_w, double sigma_b,
           int activation, std::uint64_t seed, std::int64_t first_bag, std::int64_t n_bags,
           std::int64_t nets_per_bag, std::uintptr_t parent, std::uintptr_t point, int n_combos,
           std::uintptr_t partial, std::uintptr_t out, int threads) {
            py::gil_scoped_release release;
            physkernels::nnqft::ensemble_green(
                make_spec(points, n_points, d_in, width, sigma_w, sigma_b, activation, seed), first_bag, n_bags,
                nets_per_bag, ptr<const std::int32_t>(parent), ptr<const std::int32_t>(point), n_combos,
                ptr<double>(partial), ptr<double>(out), threads);
        },
        "per-bag Green functions (n_bags, n_combos) float64; partial is float64 scratch");
    m.def("philox", [](std::uintptr_t counters, std::int64_t n, std::uint32_t key0, std::uint32_t key1,
                       std::uintptr_t out) {
        physkernels::nnqft::philox_blocks(ptr<const std::uint32_t>(counters), n, key0, key1, ptr<std::uint32_t>(out));
    });
    m.def("fast_math", [](int kind, std::uintptr_t x, std::int64_t n, std::uintptr_t out) {
        physkernels::nnqft::fast_math(kind, ptr<const float>(x), n, ptr<float>(out));
    });
}

}  // namespace physkernels::bindings::nnqft_binding
