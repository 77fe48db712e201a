// Fused block-Gibbs kernel of the Bernoulli RBM (see rbm.h). OpenMP over chains; each chain owns its rows of
// v_out / h_out and a small activation buffer, so results are independent of the thread count.
#include "rbm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ising_rng.h"
#include "parallel.h"

namespace physkernels::rbm {

namespace {

// Uniform double in [0, 1) from the top 53 bits of a counter-based random word.
inline double uniform(std::uint64_t key, std::uint64_t counter) {
    return static_cast<double>(ising::draw(ising::site_key(key, counter), 0) >> 11) * 0x1.0p-53;
}

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

template <typename T>
void gibbs(const T* v0, const T* W, const T* b, const T* c, T* v_out, T* h_out, std::int64_t batch, std::int64_t nv,
           std::int64_t nh, std::int64_t k, std::uint64_t seed, std::uint64_t step_offset, int threads) {
    const std::int64_t units = std::max(nv, nh);
    // W^T (nh x nv), so both half-steps accumulate whole rows into the activations (vectorised, branch-free; each
    // activation still sums its terms in increasing input order, so the numbers are those of a plain dot product).
    std::vector<T> w_t(static_cast<std::size_t>(nv * nh));
    for (std::int64_t i = 0; i < nv; ++i)
        for (std::int64_t j = 0; j < nh; ++j) w_t[j * nv + i] = W[i * nh + j];
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        std::vector<double> act(static_cast<std::size_t>(units));
#pragma omp for schedule(static)
        for (std::int64_t chain = 0; chain < batch; ++chain) {
            T* v = v_out + chain * nv;
            T* h = h_out + chain * nh;
            std::copy(v0 + chain * nv, v0 + (chain + 1) * nv, v);
            std::fill(h, h + nh, T(0));
            const std::uint64_t key = ising::stream_key(seed, static_cast<std::uint64_t>(chain));
            for (std::int64_t t = 0; t < k; ++t) {
                const std::uint64_t step = step_offset + static_cast<std::uint64_t>(t);
                // Hidden layer: act_j = c_j + sum_i v_i W_ij (v_i in {0, 1}: the products are exact).
                for (std::int64_t j = 0; j < nh; ++j) act[j] = c[j];
                for (std::int64_t i = 0; i < nv; ++i) {
                    const double vi = v[i];
                    const T* row = W + i * nh;
                    for (std::int64_t j = 0; j < nh; ++j) act[j] += vi * row[j];
                }
                const std::uint64_t base_h = (2 * step) * static_cast<std::uint64_t>(units);
                for (std::int64_t j = 0; j < nh; ++j)
                    h[j] = uniform(key, base_h + j) < sigmoid(act[j]) ? T(1) : T(0);
                // Visible layer: act_i = b_i + sum_j h_j W_ij.
                for (std::int64_t i = 0; i < nv; ++i) act[i] = b[i];
                for (std::int64_t j = 0; j < nh; ++j) {
                    const double hj = h[j];
                    const T* col = w_t.data() + j * nv;
                    for (std::int64_t i = 0; i < nv; ++i) act[i] += hj * col[i];
                }
                const std::uint64_t base_v = (2 * step + 1) * static_cast<std::uint64_t>(units);
                for (std::int64_t i = 0; i < nv; ++i)
                    v[i] = uniform(key, base_v + i) < sigmoid(act[i]) ? T(1) : T(0);
            }
        }
    }
}

template void gibbs<float>(const float*, const float*, const float*, const float*, float*, float*, std::int64_t,
                           std::int64_t, std::int64_t, std::int64_t, std::uint64_t, std::uint64_t, int);
template void gibbs<double>(const double*, const double*, const double*, const double*, double*, double*,
                            std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::uint64_t, std::uint64_t, int);

}  // namespace physkernels::rbm
