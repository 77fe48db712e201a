// CPU ensemble kernel for NN-QFT: draws each network's parameters from Philox inside the kernel (never an
// n_nets x width tensor), evaluates it at every point, and accumulates the Green-function products per bag.
// Float traps are never enabled here; telling GCC so lets it if-convert the branch-free math and vectorise the
// neuron loops (the results are unchanged).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "nnqft.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_isa.h"
#include "parallel.h"

#define NNQFT_ISA isa_baseline
#include "nnqft_kernel.inl"
#undef NNQFT_ISA

namespace physkernels::nnqft {

namespace isa_avx2 {
void outputs_impl(const EnsembleSpec&, std::uint64_t, std::int64_t, double*, int);
void green_impl(const EnsembleSpec&, std::int64_t, std::int64_t, std::int64_t, const std::int32_t*,
                const std::int32_t*, int, double*, double*, int);
}  // namespace isa_avx2
namespace isa_avx512 {
void outputs_impl(const EnsembleSpec&, std::uint64_t, std::int64_t, double*, int);
void green_impl(const EnsembleSpec&, std::int64_t, std::int64_t, std::int64_t, const std::int32_t*,
                const std::int32_t*, int, double*, double*, int);
}  // namespace isa_avx512

// The widest instruction set this CPU runs; PHYSKERNELS_NNQFT_ISA=baseline|avx2|avx512 caps it.
const char* selected_isa() {
    static const char* isa = widest_isa("PHYSKERNELS_NNQFT_ISA");
    return isa;
}

// Threads for a call: small calls run on one thread (an OpenMP barrier on an oversubscribed machine can cost a
// scheduler time slice, far more than the work). Results never depend on it.
int threads_for(double work, int threads) { return work < 2e6 ? 1 : threads; }

void ensemble_outputs(const EnsembleSpec& spec, std::uint64_t first_net, std::int64_t n_nets, double* out,
                      int threads) {
    threads = threads_for(static_cast<double>(n_nets) * spec.width * spec.n_points, threads);
    const std::string isa = selected_isa();
    if (isa == "avx512") return isa_avx512::outputs_impl(spec, first_net, n_nets, out, threads);
    if (isa == "avx2") return isa_avx2::outputs_impl(spec, first_net, n_nets, out, threads);
    isa_baseline::outputs_impl(spec, first_net, n_nets, out, threads);
}

void ensemble_green(const EnsembleSpec& spec, std::int64_t first_bag, std::int64_t n_bags, std::int64_t nets_per_bag,
                    const std::int32_t* parent, const std::int32_t* point, int n_combos, double* partial, double* out,
                    int threads) {
    threads = threads_for(static_cast<double>(n_bags) * nets_per_bag *
                              (static_cast<double>(spec.width) * spec.n_points + n_combos), threads);
    const std::string isa = selected_isa();
    if (isa == "avx512") {
        return isa_avx512::green_impl(spec, first_bag, n_bags, nets_per_bag, parent, point, n_combos, partial, out,
                                      threads);
    }
    if (isa == "avx2") {
        return isa_avx2::green_impl(spec, first_bag, n_bags, nets_per_bag, parent, point, n_combos, partial, out,
                                    threads);
    }
    isa_baseline::green_impl(spec, first_bag, n_bags, nets_per_bag, parent, point, n_combos, partial, out, threads);
}

void philox_blocks(const std::uint32_t* counters, std::int64_t n, std::uint32_t key0, std::uint32_t key1,
                   std::uint32_t* out) {
    for (std::int64_t i = 0; i < n; ++i) {
        const std::uint32_t* c = counters + 4 * i;
        const U4 r = philox4x32_10(U4{c[0], c[1], c[2], c[3]}, key0, key1);
        out[4 * i] = r.x;
        out[4 * i + 1] = r.y;
        out[4 * i + 2] = r.z;
        out[4 * i + 3] = r.w;
    }
}

void fast_math(int kind, const float* x, std::int64_t n, float* out) {
    for (std::int64_t i = 0; i < n; ++i) {
        float s, c;
        switch (kind) {
            case 0: out[i] = fast_exp(x[i]); break;
            case 1: out[i] = fast_log(x[i]); break;
            case 2: sincos_turns(x[i], &s, &c); out[i] = s; break;
            case 3: sincos_turns(x[i], &s, &c); out[i] = c; break;
            case 4: out[i] = fast_erf(x[i]); break;
            default: throw std::invalid_argument("nnqft.fast_math: kind must be 0..4");
        }
    }
}

}  // namespace physkernels::nnqft
