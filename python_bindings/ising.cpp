// physkernels._C.ising: 2D Ising Monte Carlo kernels (csrc/ising.cpp). Arguments are data pointers as integers;
// Python (physkernels/physics/ising/engines.py) checks dtypes, shapes and contiguity.
#include "ising.h"
#include "registry.h"

// Everything of this file lives in its own namespace, so the binding files also compile as one translation
// unit (setup.py's unity build).
namespace physkernels::bindings::ising_binding {
namespace ising = physkernels::ising;
using physkernels::bindings::ptr;
using Address = std::uintptr_t;

template <typename T>
T* nullable(Address address) {
    return address == 0 ? nullptr : ptr<T>(address);
}

PHYSKERNELS_SUBMODULE(ising, m) {
    namespace py = pybind11;
    m.def("metropolis_multispin",
          [](Address words, std::int64_t n_words, int L, double beta, std::int64_t n_sweeps, std::uint64_t seed,
             std::int64_t step_offset, Address anti_bonds, Address up_spins, int threads) {
              py::gil_scoped_release release;
              ising::metropolis_multispin(ptr<std::uint64_t>(words), n_words, L, beta, n_sweeps, seed, step_offset,
                                          nullable<std::int32_t>(anti_bonds), nullable<std::int32_t>(up_spins),
                                          threads);
          },
          "Multispin checkerboard Metropolis on uint64 words (n_words, L, L); record pointers may be 0");
    m.def("pack_spins", [](Address spins, std::int64_t n_chains, int L, Address words, int threads) {
        py::gil_scoped_release release;
        ising::pack_spins(ptr<const std::int8_t>(spins), n_chains, L, ptr<std::uint64_t>(words), threads);
    });
    m.def("unpack_spins", [](Address words, std::int64_t n_chains, int L, Address spins, int threads) {
        py::gil_scoped_release release;
        ising::unpack_spins(ptr<const std::uint64_t>(words), n_chains, L, ptr<std::int8_t>(spins), threads);
    });
    m.def("wolff",
          [](Address spins, std::int64_t n_chains, int L, Address betas, std::int64_t n_steps,
             std::int64_t flips_per_step, std::uint64_t seed, std::int64_t flip_offset, Address energy,
             Address abs_m, Address flipped_sites, int threads) {
              py::gil_scoped_release release;
              ising::wolff(ptr<std::int8_t>(spins), n_chains, L, ptr<const double>(betas), n_steps, flips_per_step, seed, flip_offset,
                           nullable<double>(energy), nullable<double>(abs_m), nullable<std::int64_t>(flipped_sites),
                           threads);
          },
          "Wolff cluster flips on int8 chains (n_chains, L, L) at float64 betas (n_chains); record pointers may be 0");
    m.def("swendsen_wang",
          [](Address spins, std::int64_t n_chains, int L, Address betas, std::int64_t n_steps, std::uint64_t seed,
             std::int64_t step_offset, Address energy, Address abs_m, int threads) {
              py::gil_scoped_release release;
              ising::swendsen_wang(ptr<std::int8_t>(spins), n_chains, L, ptr<const double>(betas), n_steps, seed, step_offset,
                                   nullable<double>(energy), nullable<double>(abs_m), threads);
          },
          "Swendsen-Wang sweeps on int8 chains (n_chains, L, L) at float64 betas (n_chains); record pointers may be 0");
}

}  // namespace physkernels::bindings::ising_binding
