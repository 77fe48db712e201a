// Fused MPO chain kernels (CPU, OpenMP over batch tiles). See mpo.h for the math and the layout.
#include "mpo.h"

#include <algorithm>
#include <cstring>

#include "mpo_gemm.h"
#include "parallel.h"

namespace physkernels::mpo {
namespace {

// C (m x n) = A (m x k) @ B (k x n); A[i][p] = a[i * a_row + p * a_col]; B, C row-major with n columns.
template <typename T>
void gemm(const T* a, std::int64_t a_row, std::int64_t a_col, const T* b, T* c, std::int64_t m, std::int64_t k,
          std::int64_t n) {
    mpo_gemm::gemm_nn(a, a_row, a_col, b, n, c, n, m, k, n);
}


// Elements of each step's input state per sample; the last entry is the output (prod J).
std::vector<std::int64_t> state_sizes(const std::vector<Step>& steps) {
    std::vector<std::int64_t> sizes;
    for (const Step& s : steps) sizes.push_back(s.count * s.k * s.rest);
    sizes.push_back(steps.back().count * steps.back().m * steps.back().rest);
    return sizes;
}

// Transposing tile loads/stores: state (features x tile) <-> rows [b0, b0 + valid) of a (batch x features) matrix.
template <typename T>
void load_tile(const T* src, std::int64_t features, std::int64_t b0, std::int64_t valid, std::int64_t tile, T* dst) {
    for (std::int64_t f = 0; f < features; ++f) {
        T* row = dst + f * tile;
        for (std::int64_t t = 0; t < valid; ++t) row[t] = src[(b0 + t) * features + f];
        for (std::int64_t t = valid; t < tile; ++t) row[t] = T(0);
    }
}

template <typename T>
void store_tile(const T* src, std::int64_t features, std::int64_t b0, std::int64_t valid, std::int64_t tile, T* dst) {
    for (std::int64_t t = 0; t < valid; ++t) {
        T* row = dst + (b0 + t) * features;
        for (std::int64_t f = 0; f < features; ++f) row[f] = src[f * tile + t];
    }
}

// A_s (m x k, row-major) of every step from C_s = A_s^T: the backward's dIn = A_s^T dOut reads A_s with its
// columns contiguous, so the micro-kernel also vectorises the short rows of small batch tiles (see mpo_gemm.h).
template <typename T>
std::vector<std::vector<T>> transposed(const std::vector<const T*>& mats, const std::vector<Step>& steps) {
    std::vector<std::vector<T>> out;
    for (std::size_t s = 0; s < steps.size(); ++s) {
        const std::int64_t m = steps[s].m, k = steps[s].k;
        std::vector<T> t(m * k);
        for (std::int64_t p = 0; p < k; ++p)
            for (std::int64_t i = 0; i < m; ++i) t[i * k + p] = mats[s][p * m + i];
        out.push_back(std::move(t));
    }
    return out;
}

// out (count blocks of m x rest*tile) = A @ in (count blocks of k x rest*tile); a_t = C = A^T (k x m)
template <typename T>
void apply_step(const T* a_t, const Step& s, std::int64_t tile, const T* in, T* out) {
    const std::int64_t n = s.rest * tile;
    for (std::int64_t c = 0; c < s.count; ++c) gemm(a_t, 1, s.m, in + c * s.k * n, out + c * s.m * n, s.m, s.k, n);
}

}  // namespace

template <typename T>
void chain_forward(const T* x, std::int64_t batch, std::int64_t in_features, std::int64_t out_features,
                   const std::vector<const T*>& mats, const std::vector<Step>& steps, T* y, std::int64_t tile,
                   int threads) {
    const std::vector<std::int64_t> sizes = state_sizes(steps);
    const std::int64_t largest = *std::max_element(sizes.begin(), sizes.end());
    const std::int64_t n_tiles = (batch + tile - 1) / tile;
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        std::vector<T> ping(largest * tile), pong(largest * tile);
#pragma omp for schedule(static)
        for (std::int64_t t = 0; t < n_tiles; ++t) {
            const std::int64_t b0 = t * tile, valid = std::min(tile, batch - b0);
            load_tile(x, in_features, b0, valid, tile, ping.data());
            for (std::size_t s = 0; s < steps.size(); ++s) {
                apply_step(mats[s], steps[s], tile, ping.data(), pong.data());
                std::swap(ping, pong);
            }
            store_tile(ping.data(), out_features, b0, valid, tile, y);
        }
    }
}

template <typename T>
void chain_backward(const T* grad, const T* x, std::int64_t batch, std::int64_t in_features,
                    std::int64_t out_features, const std::vector<const T*>& mats, const std::vector<Step>& steps,
                    T* grad_x, const std::vector<T*>& grad_mats, std::int64_t tile, int threads) {
    const std::vector<std::int64_t> sizes = state_sizes(steps);
    const std::int64_t largest = *std::max_element(sizes.begin(), sizes.end());
    std::int64_t stored = 0, mat_total = 0;
    std::vector<std::int64_t> state_offset, mat_offset;
    for (std::size_t s = 0; s < steps.size(); ++s) {
        state_offset.push_back(stored);
        stored += sizes[s] * tile;
        mat_offset.push_back(mat_total);
        mat_total += steps[s].m * steps[s].k;
    }
    const std::int64_t n_tiles = (batch + tile - 1) / tile;
    const int n_threads = resolve_threads(threads);
    const std::vector<std::vector<T>> mats_a = transposed(mats, steps);
    std::vector<T> partials(n_tiles * mat_total);  // per-tile dA_s (m x k) of every step
#pragma omp parallel num_threads(n_threads)
    {
        std::vector<T> states(stored), ping(largest * tile), pong(largest * tile);
#pragma omp for schedule(static)
        for (std::int64_t t = 0; t < n_tiles; ++t) {
            const std::int64_t b0 = t * tile, valid = std::min(tile, batch - b0);
            T* partial = partials.data() + t * mat_total;
            std::fill(partial, partial + mat_total, T(0));
            // forward, keeping every step's input state
            load_tile(x, in_features, b0, valid, tile, states.data());
            for (std::size_t s = 0; s + 1 < steps.size(); ++s)
                apply_step(mats[s], steps[s], tile, states.data() + state_offset[s],
                           states.data() + state_offset[s + 1]);
            // backward through the steps
            load_tile(grad, out_features, b0, valid, tile, ping.data());
            for (std::size_t s = steps.size(); s-- > 0;) {
                const Step& st = steps[s];
                const std::int64_t n = st.rest * tile;
                const T* in = states.data() + state_offset[s];
                // dA_s += sum_c dOut[c] @ in[c]^T, then dIn[c] = A_s^T @ dOut[c]
                mpo_gemm::gemm_nt_acc(ping.data(), n, st.m * n, in, n, st.k * n, partial + mat_offset[s], st.k, st.m,
                                      st.k, n, st.count);
                if (s == 0 && !grad_x) break;  // the first step's dIn is dx: skipped when x needs no gradient
                for (std::int64_t c = 0; c < st.count; ++c)
                    gemm(mats_a[s].data(), 1, st.k, ping.data() + c * st.m * n, pong.data() + c * st.k * n, st.k, st.m,
                         n);
                std::swap(ping, pong);
            }
            if (grad_x) store_tile(ping.data(), in_features, b0, valid, tile, grad_x);
        }
        // reduce the per-tile partials in tile order (the result does not depend on the thread count), stored
        // transposed: dC_s = dA_s^T
#pragma omp for schedule(static)
        for (std::int64_t e = 0; e < mat_total; ++e) {
            T total = T(0);
            for (std::int64_t t = 0; t < n_tiles; ++t) total += partials[t * mat_total + e];
            std::size_t s = std::upper_bound(mat_offset.begin(), mat_offset.end(), e) - mat_offset.begin() - 1;
            const std::int64_t row = (e - mat_offset[s]) / steps[s].k, col = (e - mat_offset[s]) % steps[s].k;
            grad_mats[s][col * steps[s].m + row] = total;
        }
    }
}

#define PHYSKERNELS_INSTANTIATE(T)                                                                               \
    template void chain_forward<T>(const T*, std::int64_t, std::int64_t, std::int64_t,                          \
                                   const std::vector<const T*>&, const std::vector<Step>&, T*, std::int64_t, int); \
    template void chain_backward<T>(const T*, const T*, std::int64_t, std::int64_t, std::int64_t,               \
                                    const std::vector<const T*>&, const std::vector<Step>&, T*,                  \
                                    const std::vector<T*>&, std::int64_t, int);
PHYSKERNELS_INSTANTIATE(float)
PHYSKERNELS_INSTANTIATE(double)
#undef PHYSKERNELS_INSTANTIATE

}  // namespace physkernels::mpo
