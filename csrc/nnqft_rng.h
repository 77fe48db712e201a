// Counter-based random numbers and float math shared by the CPU (nnqft.cpp) and CUDA (cuda/nnqft.cu) NN-QFT
// ensemble kernels, so both draw the SAME parameters for a (seed, network, neuron).
//
// * Philox4x32-10 (Salmon et al., SC'11): 128-bit counter, 64-bit key, ten rounds; written out here.
// * uniform: u = ((r >> 8) + 0.5) * 2^-24, a float in (0, 1), exactly representable (also in the torch reference).
// * Box-Muller: (z0, z1) = sqrt(-2 log u0) * (cos 2 pi u1, sin 2 pi u1).
// * exp / log / sincos(2 pi u) / erf: branch-free Cephes-style float polynomials (about 1-2 ulp; erf 2e-7 absolute),
//   so loops over neurons vectorise without -ffast-math and CPU and GPU share one definition.
//
// Counter layout (the contract the torch reference and the Triton kernel reproduce):
//   key     = (seed mod 2^32, seed >> 32)
//   counter = (neuron j, word block t, network mod 2^32, network >> 32)
//   block t = 0 gives (W1_j, b0_j, W0_j[0], W0_j[1]); block t >= 1 gives W0_j[4t-2 .. 4t+1];
//   the output bias b1 is the first normal of neuron j = 0xFFFFFFFF, block 0.
#pragma once

#include <cstdint>
#include <cmath>

#if defined(__CUDACC__)
#define NNQFT_HD __host__ __device__ __forceinline__
#define NNQFT_UNROLL _Pragma("unroll")
#else
#define NNQFT_HD static inline __attribute__((always_inline))
#define NNQFT_UNROLL _Pragma("GCC unroll 16")
#endif

namespace physkernels::nnqft {

constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr std::uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr std::uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr std::uint32_t kBiasNeuron = 0xFFFFFFFFu;

struct U4 {
    std::uint32_t x, y, z, w;
};

NNQFT_HD U4 philox4x32_10(U4 c, std::uint32_t k0, std::uint32_t k1) {
    NNQFT_UNROLL
    for (int round = 0; round < 10; ++round) {
        const std::uint64_t p0 = static_cast<std::uint64_t>(kPhiloxM0) * c.x;
        const std::uint64_t p1 = static_cast<std::uint64_t>(kPhiloxM1) * c.z;
        c = U4{static_cast<std::uint32_t>(p1 >> 32) ^ c.y ^ k0, static_cast<std::uint32_t>(p1),
               static_cast<std::uint32_t>(p0 >> 32) ^ c.w ^ k1, static_cast<std::uint32_t>(p0)};
        k0 += kPhiloxW0;
        k1 += kPhiloxW1;
    }
    return c;
}

NNQFT_HD float bits_to_float(std::uint32_t b) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(b);
#else
    return __builtin_bit_cast(float, b);
#endif
}

NNQFT_HD std::uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    return __builtin_bit_cast(std::uint32_t, f);
#endif
}

// Uniform in (0, 1): the top 24 bits, centred in their cell.
NNQFT_HD float uniform01(std::uint32_t r) { return (static_cast<float>(r >> 8) + 0.5f) * 5.9604644775390625e-8f; }

// exp(x) for x in [-87, 88] (clamped outside).
NNQFT_HD float fast_exp(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float fx = x * 1.44269504088896341f;
    const int n = static_cast<int>(fx + (fx >= 0.0f ? 0.5f : -0.5f));
    const float fn = static_cast<float>(n);
    const float r = (x - fn * 0.693359375f) + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * bits_to_float(static_cast<std::uint32_t>(n + 127) << 23);
}

// log(x) for normal positive x.
NNQFT_HD float fast_log(float x) {
    const std::uint32_t b = float_to_bits(x);
    int e = static_cast<int>((b >> 23) & 0xffu) - 126;
    float m = bits_to_float((b & 0x007fffffu) | 0x3f000000u);  // in [0.5, 1)
    const bool small = m < 0.707106781186547524f;
    e -= small ? 1 : 0;
    m = small ? (m + m - 1.0f) : (m - 1.0f);
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    const float fe = static_cast<float>(e);
    y += fe * -2.12194440e-4f;
    y += -0.5f * z;
    return m + y + fe * 0.693359375f;
}

// (sin, cos) of 2 pi v for v in [0, 1): quadrant from v, polynomial on [-pi/4, pi/4].
NNQFT_HD void sincos_turns(float v, float* s_out, float* c_out) {
    const int q = static_cast<int>(v * 4.0f + 0.5f);
    const float a = (v - static_cast<float>(q) * 0.25f) * 6.28318530717958648f;
    const float a2 = a * a;
    const float s = a + a * a2 * (-1.6666654611e-1f + a2 * (8.3321608736e-3f + a2 * -1.9515295891e-4f));
    const float c = 1.0f - 0.5f * a2 +
                    a2 * a2 * (4.166664568298827e-2f + a2 * (-1.388731625493765e-3f + a2 * 2.443315711809948e-5f));
    const bool swap = (q & 1) != 0;
    const float sv = swap ? c : s;
    const float cv = swap ? s : c;
    *s_out = (q & 2) ? -sv : sv;
    *c_out = ((q + 1) & 2) ? -cv : cv;
}

// Two standard normals from two uniforms (Box-Muller).
NNQFT_HD void box_muller(std::uint32_t r0, std::uint32_t r1, float* z0, float* z1) {
    const float rad = sqrtf(-2.0f * fast_log(uniform01(r0)));
    float s, c;
    sincos_turns(uniform01(r1), &s, &c);
    *z0 = rad * c;
    *z1 = rad * s;
}

// erf(x), Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7).
NNQFT_HD float fast_erf(float x) {
    const float ax = x < 0.0f ? -x : x;
    const float t = 1.0f / (1.0f + 0.3275911f * ax);
    const float poly =
        t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    const float y = 1.0f - poly * fast_exp(-ax * ax);
    return x < 0.0f ? -y : y;
}

enum Activation : int { kGauss = 0, kErf = 1, kRelu = 2 };

// g(pre) where, for the Gauss-net, pre already includes the per-point normaliser (Eq. 3.1).
template <int Act>
NNQFT_HD float activate(float pre) {
    if constexpr (Act == kGauss) {
        return fast_exp(pre);
    } else if constexpr (Act == kErf) {
        return fast_erf(pre);
    } else {
        return pre > 0.0f ? pre : 0.0f;
    }
}

}  // namespace physkernels::nnqft
