// Counter-based random words shared by the Ising kernels (C++, CUDA; mirrored in Triton).
//
// The SplitMix64 finaliser `mix64` (Steele, Lea & Flood 2014) is a bijective 64-bit mixer. Random words are a
// pure function of (seed, stream, counter, draw):
//   stream_key(seed, stream) = mix64(mix64(seed + A) + stream * GAMMA)          one per chain / per 64-chain word
//   site_key(stream_key, c)  = stream_key ^ mix64(c)                             c: e.g. step * L^2 + site
//   draw(site_key, j)        = mix64(site_key + (j + 1) * GAMMA)                 j = 0, 1, ... within the site
// so results do not depend on thread count, scheduling or device, and a run can be continued exactly by offsetting
// the step counter. Two different (stream, counter) pairs share draws only if their site keys differ by a small
// multiple of GAMMA: probability ~ 2^-57 per pair of sites.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PK_HD __host__ __device__ __forceinline__
#else
#define PK_HD inline
#endif

namespace physkernels::ising {

constexpr std::uint64_t GAMMA = 0x9e3779b97f4a7c15ULL;
constexpr std::uint64_t SEED_OFFSET = 0x2545f4914f6cdd1dULL;

PK_HD std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

PK_HD std::uint64_t stream_key(std::uint64_t seed, std::uint64_t stream) {
    return mix64(mix64(seed + SEED_OFFSET) + stream * GAMMA);
}

PK_HD std::uint64_t site_key(std::uint64_t stream, std::uint64_t counter) { return stream ^ mix64(counter); }

PK_HD std::uint64_t draw(std::uint64_t site, std::uint64_t j) { return mix64(site + (j + 1) * GAMMA); }

// Fixed-point probability: accept a uniform 64-bit word u when u < threshold (threshold = p * 2^64, p < 1).
inline std::uint64_t probability_threshold(double p) {
    if (p <= 0.0) return 0;
    if (p >= 1.0) return ~std::uint64_t(0);
    return static_cast<std::uint64_t>(p * 18446744073709551616.0);
}

// Multispin acceptance. For each bit b of `need1` (resp. `need0`) returns bit b set with probability
// P1 / 2^32 (resp. P0 / 2^32): the bits of a uniform u_b = 0.r_1 r_2 ... (r_i = bit b of draw i) are compared with
// the binary expansion of P most significant first; u_b < P is decided at the first differing bit. Draws stop as
// soon as every requested bit is decided (the result is the same as with all 32 draws); a tie over 32 bits rejects.
PK_HD std::uint64_t bernoulli_mask(std::uint64_t key, std::uint64_t need1, std::uint64_t need0, std::uint32_t p1,
                                   std::uint32_t p0) {
    std::uint64_t undecided = need1 | need0, accepted = 0;
    for (int i = 0; i < 32 && undecided; ++i) {
        const std::uint64_t r = draw(key, static_cast<std::uint64_t>(i));
        const std::uint64_t pbits = (((p1 >> (31 - i)) & 1u) ? need1 : 0) | (((p0 >> (31 - i)) & 1u) ? need0 : 0);
        const std::uint64_t differ = (r ^ pbits) & undecided;
        accepted |= differ & pbits;
        undecided &= ~differ;
    }
    return accepted;
}

// One checkerboard Metropolis update of 64 lattices at once (one bit each): s is the site's word, n1..n4 its four
// neighbours' words, (stream, counter) its random stream and counter (site_key, derived only when a draw is needed).
// A bit flips for sure when >= 2 of its neighbours
// are anti-aligned (dE <= 0), with probability p1 / 2^32 with exactly one (dE = 4), p0 / 2^32 with none (dE = 8);
// accept_all flips every bit (infinite temperature). Returns the updated word. Shared by the C++ and CUDA kernels.
PK_HD std::uint64_t metropolis_word(std::uint64_t s, std::uint64_t n1, std::uint64_t n2, std::uint64_t n3,
                                    std::uint64_t n4, bool accept_all, std::uint64_t stream,
                                    std::uint64_t counter, std::uint32_t p1, std::uint32_t p0) {
    if (accept_all) return ~s;
    const std::uint64_t a1 = s ^ n1, a2 = s ^ n2, a3 = s ^ n3, a4 = s ^ n4;
    const std::uint64_t ge2 = (a1 & a2) | (a3 & a4) | ((a1 | a2) & (a3 | a4));
    const std::uint64_t any = a1 | a2 | a3 | a4;
    std::uint64_t flip = ge2;
    if (~ge2) flip |= bernoulli_mask(site_key(stream, counter), any & ~ge2, ~any, p1, p0);
    return s ^ flip;
}

// 32-bit fixed point of a probability in [0, 1): floor(p * 2^32), saturated.
inline std::uint32_t probability_u32(double p) {
    if (p <= 0.0) return 0;
    if (p >= 1.0) return 0xffffffffu;
    return static_cast<std::uint32_t>(p * 4294967296.0);
}

}  // namespace physkernels::ising
