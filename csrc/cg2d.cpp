// CG2d CPU kernels: instantiates the kernel bodies of cg2d_kernels.inl for the baseline instruction set and, on
// x86-64 with GCC, for AVX2+FMA (chosen at run time), so portable wheels still run at full speed.
#include "cg2d.h"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <vector>

#include "cpu_isa.h"
#include "parallel.h"

// The 32-byte vector helpers are inline; their ABI never crosses a call boundary of the baseline build.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace physkernels::cg2d {
namespace {

// The per-channel feature list of a patch: P values, then pairs (p <= q), then triples (p <= q <= s).
struct Features {
    int patch = 0, count = 0;
    std::vector<std::array<int, 2>> pairs;
    std::vector<std::array<int, 3>> triples;

    Features(int p, int order) : patch(p) {
        for (int a = 0; a < p; ++a)
            for (int b = a; b < p; ++b) pairs.push_back({a, b});
        if (order >= 3)
            for (int a = 0; a < p; ++a)
                for (int b = a; b < p; ++b)
                    for (int c = b; c < p; ++c) triples.push_back({a, b, c});
        count = p + static_cast<int>(pairs.size() + triples.size());
    }
};

#define CG2D_VECTOR_BYTES 32
#define CG2D_ROW_BLOCK 6
namespace baseline {
#include "cg2d_kernels.inl"
}  // namespace baseline

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PHYSKERNELS_CG2D_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "cg2d_kernels.inl"
}  // namespace avx2
#pragma GCC pop_options

#undef CG2D_VECTOR_BYTES
#undef CG2D_ROW_BLOCK
#define CG2D_VECTOR_BYTES 64
#define CG2D_ROW_BLOCK 12
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")
namespace avx512 {
#include "cg2d_kernels.inl"
}  // namespace avx512
#pragma GCC pop_options
#endif

// The widest instruction set this CPU runs; PHYSKERNELS_CG2D_ISA=baseline|avx2|avx512 caps it (read once, at the
// first call: the tests run every kernel variant that way).
Isa active_isa() {
    static const Isa isa = widest_isa_level("PHYSKERNELS_CG2D_ISA");
    return isa;
}

void check(const Geometry& g) {
    if (g.order != 2 && g.order != 3) throw std::invalid_argument("cg2d: order must be 2 or 3");
    if (g.groups < 1 || g.channels % g.groups || g.out_channels % g.groups)
        throw std::invalid_argument("cg2d: groups must divide the input and output channels");
    if (g.out_h() < 1 || g.out_w() < 1) throw std::invalid_argument("cg2d: empty output");
}

}  // namespace

const char* isa() {
    switch (active_isa()) {
        case Isa::avx512: return "avx512";
        case Isa::avx2: return "avx2+fma";
        default: return "baseline";
    }
}

template <typename T>
void forward(const T* x, const Weights<const T>& weight, const T* bias, T* y, const Geometry& g, int threads) {
    check(g);
    const Features f(g.patch(), g.order);
    threads = resolve_threads(threads);
#ifdef PHYSKERNELS_CG2D_X86
    if (active_isa() == Isa::avx512) return avx512::forward_impl(x, weight, bias, y, g, f, threads);
    if (active_isa() == Isa::avx2) return avx2::forward_impl(x, weight, bias, y, g, f, threads);
#endif
    baseline::forward_impl(x, weight, bias, y, g, f, threads);
}

template <typename T>
void backward(const T* grad_y, const T* x, const Weights<const T>& weight, T* grad_x, const Weights<T>& grad_weight,
              T* grad_bias, const Geometry& g, int threads) {
    check(g);
    const Features f(g.patch(), g.order);
    threads = resolve_threads(threads);
#ifdef PHYSKERNELS_CG2D_X86
    if (active_isa() == Isa::avx512)
        return avx512::backward_impl(grad_y, x, weight, grad_x, grad_weight, grad_bias, g, f, threads);
    if (active_isa() == Isa::avx2)
        return avx2::backward_impl(grad_y, x, weight, grad_x, grad_weight, grad_bias, g, f, threads);
#endif
    baseline::backward_impl(grad_y, x, weight, grad_x, grad_weight, grad_bias, g, f, threads);
}

#define PHYSKERNELS_CG2D_INSTANTIATE(T)                                                                          \
    template void forward<T>(const T*, const Weights<const T>&, const T*, T*, const Geometry&, int);           \
    template void backward<T>(const T*, const T*, const Weights<const T>&, T*, const Weights<T>&, T*,          \
                              const Geometry&, int);
PHYSKERNELS_CG2D_INSTANTIATE(float)
PHYSKERNELS_CG2D_INSTANTIATE(double)
#undef PHYSKERNELS_CG2D_INSTANTIATE

}  // namespace physkernels::cg2d
