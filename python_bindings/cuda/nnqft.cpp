// physkernels._C_cuda.nnqft: CUDA NN-QFT ensemble kernels (device pointers, a cudaStream_t handle).
#include "check.cuh"
#include "nnqft_cuda.h"
#include "registry.h"

namespace {

using physkernels::bindings::ptr;
using physkernels::nnqft::cuda::Spec;

Spec make_spec(std::uintptr_t points, int n_points, int d_in, std::uint32_t width, double sigma_w, double sigma_b,
               int activation, std::uint64_t seed) {
    return Spec{ptr<const double>(points), n_points, d_in, width, sigma_w, sigma_b, activation, seed};
}

}  // namespace

PHYSKERNELS_SUBMODULE(nnqft, m) {
    m.attr("nets_per_block") = physkernels::nnqft::cuda::kNetsPerBlock;
    m.attr("max_points") = physkernels::nnqft::cuda::kMaxPoints;
    m.def("outputs", [](std::uintptr_t points, int n_points, int d_in, std::uint32_t width, double sigma_w,
                        double sigma_b, int activation, std::uint64_t seed, std::uint64_t first_net,
                        long long n_nets, std::uintptr_t out, std::uintptr_t stream) {
        physkernels::nnqft::cuda::outputs(make_spec(points, n_points, d_in, width, sigma_w, sigma_b, activation, seed),
                                          first_net, n_nets, ptr<double>(out), physkernels::cuda::as_stream(stream));
    });
    m.def("green", [](std::uintptr_t points, int n_points, int d_in, std::uint32_t width, double sigma_w,
                      double sigma_b, int activation, std::uint64_t seed, long long first_bag, long long n_bags,
                      long long nets_per_bag, std::uintptr_t members, int max_order, int n_combos,
                      std::uintptr_t partial, std::uintptr_t out, std::uintptr_t stream) {
        physkernels::nnqft::cuda::green(make_spec(points, n_points, d_in, width, sigma_w, sigma_b, activation, seed),
                                        first_bag, n_bags, nets_per_bag, ptr<const int>(members), max_order, n_combos,
                                        ptr<double>(partial), ptr<double>(out), physkernels::cuda::as_stream(stream));
    });
}
