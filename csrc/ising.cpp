// 2D Ising Monte Carlo kernels: multispin checkerboard Metropolis, Wolff, Swendsen-Wang.
//
// Every chain (or 64-chain word) owns its random stream (ising_rng.h) and is updated by one thread, so results
// are bitwise independent of the thread count.
#include "ising.h"

#include <cmath>
#include <cstdlib>
#include <vector>

#include "ising_rng.h"
#include "parallel.h"

namespace physkernels::ising {
namespace {

using u64 = std::uint64_t;

// Bit-sliced counters: plane p holds bit p of 64 independent counters.
struct SlicedCounter {
    std::vector<u64> planes;
    explicit SlicedCounter(int n_planes) : planes(n_planes, 0) {}
    void add(u64 carry) {
        for (auto& plane : planes) {
            if (!carry) return;
            const u64 next = plane & carry;
            plane ^= carry;
            carry = next;
        }
    }
    std::int32_t value(int bit) const {
        std::int32_t v = 0;
        for (std::size_t p = 0; p < planes.size(); ++p) v |= static_cast<std::int32_t>((planes[p] >> bit) & 1) << p;
        return v;
    }
};

int bits_for(std::int64_t n) {
    int b = 1;
    while ((std::int64_t(1) << b) <= n) ++b;
    return b;
}

void record_multispin(const u64* lattice, int L, std::int32_t* anti, std::int32_t* up, std::int64_t stride) {
    const int n_sites = L * L;
    SlicedCounter anti_count(bits_for(2 * n_sites)), up_count(bits_for(n_sites));
    for (int y = 0; y < L; ++y) {
        const u64* row = lattice + y * L;
        const u64* below = lattice + ((y + 1) % L) * L;
        for (int x = 0; x < L; ++x) {
            anti_count.add(row[x] ^ row[(x + 1) % L]);
            anti_count.add(row[x] ^ below[x]);
            up_count.add(row[x]);
        }
    }
    for (int b = 0; b < 64; ++b) {
        anti[b * stride] = anti_count.value(b);
        up[b * stride] = up_count.value(b);
    }
}

}  // namespace

void metropolis_multispin(u64* words, std::int64_t n_words, int L, double beta, std::int64_t n_sweeps, u64 seed,
                          std::int64_t step_offset, std::int32_t* anti_bonds, std::int32_t* up_spins, int threads) {
    const std::uint32_t p1 = probability_u32(std::exp(-4.0 * beta));  // one anti-aligned neighbour: dE = 4
    const std::uint32_t p0 = probability_u32(std::exp(-8.0 * beta));  // none: dE = 8
    const bool accept_all = beta == 0.0;
    const std::int64_t n_sites = std::int64_t(L) * L;
    std::vector<int> right(L), left(L);
    for (int i = 0; i < L; ++i) {
        right[i] = (i + 1) % L;
        left[i] = (i + L - 1) % L;
    }
#pragma omp parallel for schedule(static) num_threads(resolve_threads(threads))
    for (std::int64_t w = 0; w < n_words; ++w) {
        u64* lattice = words + w * n_sites;
        const u64 key = stream_key(seed, static_cast<u64>(w));
        for (std::int64_t t = 0; t < n_sweeps; ++t) {
            const u64 step_base = static_cast<u64>(step_offset + t) * static_cast<u64>(n_sites);
            for (int colour = 0; colour < 2; ++colour) {
                for (int y = 0; y < L; ++y) {
                    u64* row = lattice + y * L;
                    const u64* up = lattice + left[y] * L;
                    const u64* down = lattice + right[y] * L;
                    for (int x = (y + colour) & 1; x < L; x += 2) {
                        row[x] = metropolis_word(row[x], row[left[x]], row[right[x]], up[x], down[x], accept_all, key,
                                                 step_base + static_cast<u64>(y * L + x), p1, p0);
                    }
                }
            }
            if (anti_bonds != nullptr) {
                record_multispin(lattice, L, anti_bonds + w * 64 * n_sweeps + t, up_spins + w * 64 * n_sweeps + t,
                                 n_sweeps);
            }
        }
    }
}

void pack_spins(const std::int8_t* spins, std::int64_t n_chains, int L, u64* words, int threads) {
    const std::int64_t n_sites = std::int64_t(L) * L, n_words = (n_chains + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(resolve_threads(threads))
    for (std::int64_t w = 0; w < n_words; ++w) {
        for (std::int64_t i = 0; i < n_sites; ++i) {
            u64 word = 0;
            for (int b = 0; b < 64; ++b) {
                const std::int64_t c = w * 64 + b;
                const bool up = c >= n_chains || spins[c * n_sites + i] > 0;
                word |= static_cast<u64>(up) << b;
            }
            words[w * n_sites + i] = word;
        }
    }
}

void unpack_spins(const u64* words, std::int64_t n_chains, int L, std::int8_t* spins, int threads) {
    const std::int64_t n_sites = std::int64_t(L) * L;
#pragma omp parallel for schedule(static) num_threads(resolve_threads(threads))
    for (std::int64_t c = 0; c < n_chains; ++c) {
        const u64* lattice = words + (c / 64) * n_sites;
        const int b = static_cast<int>(c % 64);
        for (std::int64_t i = 0; i < n_sites; ++i) spins[c * n_sites + i] = ((lattice[i] >> b) & 1) ? 1 : -1;
    }
}

namespace {

// Energy (sum over bonds of -s_i s_j) and magnetisation of one int8 lattice.
void energy_and_magnetization(const std::int8_t* s, int L, std::int64_t& energy, std::int64_t& magnetization) {
    energy = 0;
    magnetization = 0;
    for (int y = 0; y < L; ++y) {
        for (int x = 0; x < L; ++x) {
            const int v = s[y * L + x];
            energy -= v * (s[y * L + (x + 1) % L] + s[((y + 1) % L) * L + x]);
            magnetization += v;
        }
    }
}

int uniform_site(u64 r, std::int64_t n_sites) {
    return static_cast<int>((static_cast<unsigned __int128>(r) * static_cast<u64>(n_sites)) >> 64);
}

}  // namespace

void wolff(std::int8_t* spins, std::int64_t n_chains, int L, const double* betas, std::int64_t n_steps,
           std::int64_t flips_per_step, u64 seed, std::int64_t flip_offset, double* energy_out, double* abs_m_out,
           std::int64_t* flipped_sites, int threads) {
    const std::int64_t n_sites = std::int64_t(L) * L;
    std::vector<int> neighbours(4 * n_sites);  // right, left, down, up of every site
    for (int y = 0; y < L; ++y) {
        for (int x = 0; x < L; ++x) {
            int* n = &neighbours[4 * (y * L + x)];
            n[0] = y * L + (x + 1) % L;
            n[1] = y * L + (x + L - 1) % L;
            n[2] = ((y + 1) % L) * L + x;
            n[3] = ((y + L - 1) % L) * L + x;
        }
    }
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        std::vector<int> cluster(n_sites + 1);  // + 1: the branch-free growth writes one candidate past the end
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t c = 0; c < n_chains; ++c) {
            std::int8_t* s = spins + c * n_sites;
            const u64 key = stream_key(seed, static_cast<u64>(c));
            const u64 add_threshold = probability_threshold(-std::expm1(-2.0 * betas[c]));
            for (std::int64_t t = 0; t < n_steps; ++t) {
                for (std::int64_t f = 0; f < flips_per_step; ++f) {
                    const u64 site = site_key(key, static_cast<u64>(flip_offset + t * flips_per_step + f));
                    u64 j = 0;
                    const int first = uniform_site(draw(site, j++), n_sites);
                    const std::int8_t spin = s[first];
                    // grow the cluster, flipping each member as it joins (so it is never added twice); branch-free:
                    // every neighbour check consumes a draw, and the candidate is written then kept or overwritten
                    std::int64_t size = 0, head = 0;
                    cluster[size++] = first;
                    s[first] = static_cast<std::int8_t>(-spin);
                    while (head < size) {
                        const int* nbr = &neighbours[4 * cluster[head++]];
                        for (int k = 0; k < 4; ++k) {
                            const int n = nbr[k];
                            const bool add = (s[n] == spin) & (draw(site, j++) < add_threshold);
                            cluster[size] = n;
                            size += add;
                            s[n] = add ? static_cast<std::int8_t>(-spin) : s[n];
                        }
                    }
                    if (flipped_sites != nullptr) flipped_sites[c] += size;
                }
                if (energy_out != nullptr) {
                    std::int64_t energy, magnetization;
                    energy_and_magnetization(s, L, energy, magnetization);
                    energy_out[c * n_steps + t] = static_cast<double>(energy) / n_sites;
                    abs_m_out[c * n_steps + t] = std::fabs(static_cast<double>(magnetization)) / n_sites;
                }
            }
        }
    }
}

namespace {

int find_root(std::vector<int>& parent, int i) {
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];  // path halving
        i = parent[i];
    }
    return i;
}

}  // namespace

void swendsen_wang(std::int8_t* spins, std::int64_t n_chains, int L, const double* betas, std::int64_t n_steps,
                   u64 seed, std::int64_t step_offset, double* energy_out, double* abs_m_out, int threads) {
    const std::int64_t n_sites = std::int64_t(L) * L;
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        std::vector<int> parent(n_sites);
        std::vector<std::uint32_t> bits(n_sites);  // per site: bit 0 right bond, bit 1 down bond, bit 2 flip
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t c = 0; c < n_chains; ++c) {
            std::int8_t* s = spins + c * n_sites;
            const u64 key = stream_key(seed, static_cast<u64>(c));
            // one 64-bit draw per site: bits 0-31 decide the right bond, bits 32-62 the down bond (31-bit
            // threshold), bit 63 the flip of the cluster this site is the root of
            const std::uint32_t right_threshold = probability_u32(-std::expm1(-2.0 * betas[c]));
            const std::uint32_t down_threshold = right_threshold >> 1;
            for (std::int64_t t = 0; t < n_steps; ++t) {
                const u64 step_base = static_cast<u64>(step_offset + t) * static_cast<u64>(n_sites);
                for (int i = 0; i < n_sites; ++i) {
                    parent[i] = i;
                    const u64 r = draw(site_key(key, step_base + static_cast<u64>(i)), 0);
                    bits[i] = (static_cast<std::uint32_t>(r) < right_threshold ? 1u : 0u) |
                              ((static_cast<std::uint32_t>(r >> 32) & 0x7fffffffu) < down_threshold ? 2u : 0u) |
                              static_cast<std::uint32_t>(r >> 63) << 2;
                }
                for (int y = 0; y < L; ++y) {
                    for (int x = 0; x < L; ++x) {
                        const int i = y * L + x;
                        const int nbr[2] = {y * L + (x + 1 == L ? 0 : x + 1), (y + 1 == L ? 0 : y + 1) * L + x};
                        for (int d = 0; d < 2; ++d) {
                            const int n = nbr[d];
                            if (((bits[i] >> d) & 1u) && s[n] == s[i]) {
                                const int a = find_root(parent, i), b = find_root(parent, n);
                                if (a != b) parent[a < b ? b : a] = a < b ? a : b;
                            }
                        }
                    }
                }
                // unions keep the smaller root, so a cluster's root is its smallest site and its flip bit is
                // read before any other member is visited
                for (int i = 0; i < n_sites; ++i) {
                    const int root = find_root(parent, i);
                    if ((bits[root] >> 2) & 1u) s[i] = static_cast<std::int8_t>(-s[i]);
                }
                if (energy_out != nullptr) {
                    std::int64_t energy, magnetization;
                    energy_and_magnetization(s, L, energy, magnetization);
                    energy_out[c * n_steps + t] = static_cast<double>(energy) / n_sites;
                    abs_m_out[c * n_steps + t] = std::fabs(static_cast<double>(magnetization)) / n_sites;
                }
            }
        }
    }
}

}  // namespace physkernels::ising
