// TaylorLinear fused CPU kernels (see taylor.h).
//
// Features are never stored for the whole batch. Terms are walked in tiles of consecutive term indices; inside a
// tile, each row of the row table contributes the features prefix(x) * x[j], where prefix(x) is a lower-degree
// monomial (a product of at most order-1 x's, formed once per row) and x[j] runs over a contiguous range. A tile
// of features (terms x 16 batch lanes) is built in a small per-thread buffer and immediately contracted:
//
//   forward   y[b,a]  += sum_t W[a,t] F[b,t]          register-blocked 4 outputs x 16 lanes, parallel over batch
//   dx        G[b,t]   = sum_a g[b,a] W[a,t];  with F[b,t] = p_r(b) x[b,j]:
//             dx[b,j] += G[b,t] p_r(b)          and  dp_r(b) = sum_{t in row r} G[b,t] x[b,j], spread onto the
//             prefix factors by the product of the others (leave-one-out products, so x = 0 is fine)
//   dW        dW[a,t]  = sum_b g[b,a] F[b,t]          register-blocked 4 outputs x 2 terms x 16 lanes, parallel
//                                                      over term tiles (each thread owns its dW columns)
//
// Accuracy: products are formed in the working precision; sums are blocked (a plain sum over one tile, <= 256
// terms or 256 samples) and the tile partials are added with Kahan compensation, so the error does not grow with
// n_terms (292,824 at n = 49, order 4) or the batch. Each output element has one owner, so results do not depend
// on the thread count. The per-chunk workers are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked
// at load time (GCC function multiversioning), so the module stays portable.
#include "taylor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "parallel.h"

#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define PHYSKERNELS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PHYSKERNELS_CLONES
#endif
#define PHYSKERNELS_INLINE inline __attribute__((always_inline))

namespace physkernels::taylor {
namespace {

constexpr int kLanes = 16;                // batch samples per vector
constexpr int kSubtiles = 4;              // forward/dx: vectors of samples per work item (share each W tile)
constexpr int64_t kTermTile = 256;        // forward/dx: terms per tile
constexpr int64_t kWeightTile = 64;       // dW: terms per work item (its dW columns)
constexpr int kGroupSubtiles = 32;        // dW: vectors of samples contracted in registers per pass
constexpr int kGradBlock = 8;             // dx: terms whose dL/dF is accumulated in registers at once

template <typename S> struct VecOf;
template <> struct VecOf<float> {
    typedef float type __attribute__((vector_size(kLanes * sizeof(float))));
    typedef int32_t index __attribute__((vector_size(kLanes * sizeof(int32_t))));
};
template <> struct VecOf<double> {
    typedef double type __attribute__((vector_size(kLanes * sizeof(double))));
    typedef int64_t index __attribute__((vector_size(kLanes * sizeof(int64_t))));
};

// A zero-filled heap array on a 128-byte boundary. (alignof of a 64-byte vector type is only 16 where the baseline
// target lacks such vectors, but the AVX-512 clone assumes 64: std::vector would hand it misaligned memory.)
template <typename T>
class Buffer {
   public:
    explicit Buffer(int64_t size, bool zero = true)
        : data_(static_cast<T*>(std::aligned_alloc(kAlign, bytes(size)))) {
        if (data_ == nullptr) throw std::bad_alloc();
        if (zero) std::memset(static_cast<void*>(data_), 0, bytes(size));
    }
    ~Buffer() { std::free(data_); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    T& operator[](int64_t i) { return data_[i]; }
    T* data() { return data_; }

   private:
    static constexpr size_t kAlign = 128;
    static size_t bytes(int64_t size) { return (std::max<int64_t>(size, 1) * sizeof(T) + kAlign - 1) / kAlign * kAlign; }
    T* data_;
};

// Compensated sum += value. Once the sum is +-inf or NaN the compensation (inf - inf = NaN) is meaningless and is
// reset to 0, so the sum keeps IEEE semantics: inf stays inf, NaN only where a plain sum would give NaN.
// (t - t == 0 is false exactly for non-finite t; the build does not use -ffinite-math-only.)
template <typename T>
PHYSKERNELS_INLINE void kahan_add(T& sum, T& comp, T value) {
    const T y = value - comp;
    const T t = sum + y;
    const T c = (t - sum) - y;
    comp = (t - t == 0) ? c : T{};
    sum = t;
}

struct Row {
    int64_t offset, j0;
    int nprefix;
    const int32_t* prefix;
};

PHYSKERNELS_INLINE Row row_at(const RowTable& rows, int64_t r) {
    const int32_t* p = rows.data + r * rows.width;
    return {p[0], p[1], p[2], p + 3};
}

// The row holding term t: the last row whose offset is <= t.
inline int64_t row_of_term(const RowTable& rows, int64_t t) {
    int64_t lo = 0, hi = rows.count;
    while (hi - lo > 1) {
        const int64_t mid = (lo + hi) / 2;
        if (rows.data[mid * rows.width] <= t) lo = mid; else hi = mid;
    }
    return lo;
}

template <typename V>
PHYSKERNELS_INLINE V prefix_product(const Row& row, const V* xt) {
    V p = V{} + 1;
    for (int k = 0; k < row.nprefix; ++k) p *= xt[row.prefix[k]];
    return p;
}

// dst[c][l] = src[(b0 + l) * ld + c] for l < nb, 0 for the padding lanes.
template <typename S, typename V>
PHYSKERNELS_INLINE void load_lanes(const S* src, int64_t ld, int64_t b0, int64_t nb, int64_t cols, V* dst) {
    std::fill(dst, dst + cols, V{});
    for (int64_t l = 0; l < nb; ++l)
        for (int64_t c = 0; c < cols; ++c) dst[c][l] = src[(b0 + l) * ld + c];
}

// Features of terms t0..t1-1 for 16 lanes: F[t - t0] = prefix_r(x) * x[j0_r + t - offset_r]; r0 holds term t0.
template <typename V>
PHYSKERNELS_INLINE void generate(const RowTable& rows, int64_t r0, int64_t t0, int64_t t1, int64_t n, const V* xt,
                                 V* F) {
    int64_t t = t0;
    for (int64_t r = r0; t < t1; ++r) {
        const Row row = row_at(rows, r);
        const V p = prefix_product(row, xt);
        const int64_t end = std::min(row.offset + n - row.j0, t1);
        for (; t < end; ++t) F[t - t0] = p * xt[row.j0 + (t - row.offset)];
    }
}

// sum[a..a+A) (+Kahan) += sum_k W[a+i, t0+k] F[k]
template <int A, typename S, typename V>
PHYSKERNELS_INLINE void contract_outputs(const S* W, int64_t T, int64_t a, int64_t t0, int64_t len, const V* F,
                                         V* sum, V* comp) {
    V part[A] = {};
    const S* w = W + a * T + t0;
    for (int64_t k = 0; k < len; ++k) {
        const V f = F[k];
        for (int i = 0; i < A; ++i) part[i] += w[i * T + k] * f;
    }
    for (int i = 0; i < A; ++i) kahan_add(sum[a + i], comp[a + i], part[i]);
}

template <typename S>
PHYSKERNELS_INLINE void forward_chunk(const S* x, const S* W, const S* bias, RowTable rows, S* y, int64_t b0,
                                      int64_t nb, int64_t n, int64_t O, int64_t T) {
    using V = typename VecOf<S>::type;
    const int64_t nsub = (nb + kLanes - 1) / kLanes;
    Buffer<V> xt(nsub * n), F(kTermTile), sum(nsub * O), comp(nsub * O);
    for (int64_t s = 0; s < nsub; ++s)
        load_lanes(x, n, b0 + s * kLanes, std::min<int64_t>(kLanes, nb - s * kLanes), n, &xt[s * n]);
    for (int64_t t0 = 0; t0 < T; t0 += kTermTile) {
        const int64_t t1 = std::min(T, t0 + kTermTile), r0 = row_of_term(rows, t0);
        for (int64_t s = 0; s < nsub; ++s) {
            generate(rows, r0, t0, t1, n, &xt[s * n], F.data());
            int64_t a = 0;
            for (; a + 4 <= O; a += 4) contract_outputs<4>(W, T, a, t0, t1 - t0, F.data(), &sum[s * O], &comp[s * O]);
            switch (O - a) {  // the last 1-3 outputs in one block: one pass over the feature tile
                case 3: contract_outputs<3>(W, T, a, t0, t1 - t0, F.data(), &sum[s * O], &comp[s * O]); break;
                case 2: contract_outputs<2>(W, T, a, t0, t1 - t0, F.data(), &sum[s * O], &comp[s * O]); break;
                case 1: contract_outputs<1>(W, T, a, t0, t1 - t0, F.data(), &sum[s * O], &comp[s * O]); break;
                default: break;
            }
        }
    }
    for (int64_t s = 0; s < nsub; ++s)
        for (int64_t l = 0; l < std::min<int64_t>(kLanes, nb - s * kLanes); ++l)
            for (int64_t a = 0; a < O; ++a)
                y[(b0 + s * kLanes + l) * O + a] =
                    (sum[s * O + a][l] - comp[s * O + a][l]) + (bias ? bias[a] : S(0));
}

// G[k] = sum_a W[a, t + k] g[a] for k < K, accumulated in registers.
template <int K, typename S, typename V>
PHYSKERNELS_INLINE void feature_grad_block(const S* W, int64_t T, int64_t O, int64_t t, const V* g, V* G) {
    V acc[K] = {};
    for (int64_t a = 0; a < O; ++a) {
        const V ga = g[a];
        const S* w = W + a * T + t;
        for (int k = 0; k < K; ++k) acc[k] += w[k] * ga;
    }
    for (int k = 0; k < K; ++k) G[k] = acc[k];
}

template <typename S>
PHYSKERNELS_INLINE void backward_input_chunk(const S* g, const S* x, const S* W, RowTable rows, S* dx, int64_t b0,
                                             int64_t nb, int64_t n, int64_t O, int64_t T) {
    using V = typename VecOf<S>::type;
    const int64_t nsub = (nb + kLanes - 1) / kLanes;
    Buffer<V> xt(nsub * n), gt(nsub * O), G(kTermTile), part(n), sum(nsub * n), comp(nsub * n);
    for (int64_t s = 0; s < nsub; ++s) {
        const int64_t lanes = std::min<int64_t>(kLanes, nb - s * kLanes);
        load_lanes(x, n, b0 + s * kLanes, lanes, n, &xt[s * n]);
        load_lanes(g, O, b0 + s * kLanes, lanes, O, &gt[s * O]);
    }
    for (int64_t t0 = 0; t0 < T; t0 += kTermTile) {
        const int64_t t1 = std::min(T, t0 + kTermTile), len = t1 - t0, r0 = row_of_term(rows, t0);
        for (int64_t s = 0; s < nsub; ++s) {
            const V* xs = &xt[s * n];
            const V* gs = &gt[s * O];
            // G[k] = sum_a W[a, t0 + k] g[a]: the gradient of the loss with respect to the tile's features.
            for (int64_t k0 = 0; k0 < len; k0 += kGradBlock) {
                if (k0 + kGradBlock <= len) feature_grad_block<kGradBlock>(W, T, O, t0 + k0, gs, &G[k0]);
                else for (int64_t k = k0; k < len; ++k) feature_grad_block<1>(W, T, O, t0 + k, gs, &G[k]);
            }
            // Through F = p_r x_j: dx_j += G p_r, and dp_r = sum_j G x_j onto the prefix factors.
            std::fill(part.data(), part.data() + n, V{});
            int64_t t = t0;
            for (int64_t r = r0; t < t1; ++r) {
                const Row row = row_at(rows, r);
                const V p = prefix_product(row, xs);
                const int64_t end = std::min(row.offset + n - row.j0, t1);
                V dp{};
                for (; t < end; ++t) {
                    const int64_t j = row.j0 + (t - row.offset);
                    const V gk = G[t - t0];
                    part[j] += gk * p;
                    dp += gk * xs[j];
                }
                for (int k = 0; k < row.nprefix; ++k) {
                    V others = V{} + 1;
                    for (int l = 0; l < row.nprefix; ++l)
                        if (l != k) others *= xs[row.prefix[l]];
                    part[row.prefix[k]] += dp * others;
                }
            }
            for (int64_t j = 0; j < n; ++j) kahan_add(sum[s * n + j], comp[s * n + j], part[j]);
        }
    }
    for (int64_t s = 0; s < nsub; ++s)
        for (int64_t l = 0; l < std::min<int64_t>(kLanes, nb - s * kLanes); ++l)
            for (int64_t j = 0; j < n; ++j) dx[(b0 + s * kLanes + l) * n + j] = sum[s * n + j][l] - comp[s * n + j][l];
}

// Sum of the 16 lanes by a shuffle tree (4 shuffles + 4 adds instead of 15 dependent scalar adds).
template <typename S>
PHYSKERNELS_INLINE S lane_sum(typename VecOf<S>::type v) {
    using M = typename VecOf<S>::index;
    v += __builtin_shuffle(v, M{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
    v += __builtin_shuffle(v, M{4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3});
    v += __builtin_shuffle(v, M{2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1});
    v += __builtin_shuffle(v, M{1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0});
    return v[0];
}

// acc[(a+i) * kWeightTile + k + m] (+Kahan) += sum over the group's samples of g[b, a+i] F[b, k+m], i < A, m < 2:
// 16-lane partials in registers over the group's sub-tiles, then one lane sum each.
template <int A, typename S, typename V>
PHYSKERNELS_INLINE void contract_weight_block(const V* gt, int64_t O, const V* F, int64_t nsub, int64_t a, int64_t k,
                                              S* acc, S* comp) {
    V c[A][2] = {};
    for (int64_t s = 0; s < nsub; ++s) {
        const V f0 = F[s * kWeightTile + k], f1 = F[s * kWeightTile + k + 1];
        for (int i = 0; i < A; ++i) {
            const V ga = gt[s * O + a + i];
            c[i][0] += ga * f0;
            c[i][1] += ga * f1;
        }
    }
    for (int i = 0; i < A; ++i)
        for (int m = 0; m < 2; ++m) {
            const int64_t at = (a + i) * kWeightTile + k + m;
            kahan_add(acc[at], comp[at], lane_sum<S>(c[i][m]));
        }
}

// dW[:, t0 : t0 + kWeightTile) from lane-major copies of x (nsub_total x n vectors) and g (nsub_total x O).
template <typename S>
PHYSKERNELS_INLINE void backward_weight_tile(const typename VecOf<S>::type* xt, const typename VecOf<S>::type* gt,
                                             int64_t nsub_total, RowTable rows, S* dW, int64_t t0, int64_t n,
                                             int64_t O, int64_t T) {
    using V = typename VecOf<S>::type;
    const int64_t t1 = std::min(T, t0 + kWeightTile), len = t1 - t0, r0 = row_of_term(rows, t0);
    Buffer<V> F(kGroupSubtiles * kWeightTile, /*zero=*/false);
    Buffer<S> acc(O * kWeightTile), comp(O * kWeightTile);
    for (int64_t s0 = 0; s0 < nsub_total; s0 += kGroupSubtiles) {
        const int64_t nsub = std::min<int64_t>(kGroupSubtiles, nsub_total - s0);
        for (int64_t s = 0; s < nsub; ++s) {
            V* Fs = &F[s * kWeightTile];
            generate(rows, r0, t0, t1, n, &xt[(s0 + s) * n], Fs);
            std::fill(Fs + len, Fs + kWeightTile, V{});
        }
        const V* gs = &gt[s0 * O];
        for (int64_t k = 0; k < len; k += 2) {
            int64_t a = 0;
            for (; a + 4 <= O; a += 4) contract_weight_block<4>(gs, O, F.data(), nsub, a, k, acc.data(), comp.data());
            switch (O - a) {
                case 3: contract_weight_block<3>(gs, O, F.data(), nsub, a, k, acc.data(), comp.data()); break;
                case 2: contract_weight_block<2>(gs, O, F.data(), nsub, a, k, acc.data(), comp.data()); break;
                case 1: contract_weight_block<1>(gs, O, F.data(), nsub, a, k, acc.data(), comp.data()); break;
                default: break;
            }
        }
    }
    for (int64_t a = 0; a < O; ++a)
        for (int64_t k = 0; k < len; ++k) dW[a * T + t0 + k] = acc[a * kWeightTile + k] - comp[a * kWeightTile + k];
}

#define PHYSKERNELS_WORKERS(S, suffix)                                                                         \
    PHYSKERNELS_CLONES void forward_chunk_##suffix(const S* x, const S* W, const S* bias, RowTable rows, S* y,   \
                                                   int64_t b0, int64_t nb, int64_t n, int64_t O, int64_t T) {   \
        forward_chunk<S>(x, W, bias, rows, y, b0, nb, n, O, T);                                                \
    }                                                                                                          \
    PHYSKERNELS_CLONES void backward_input_chunk_##suffix(const S* g, const S* x, const S* W, RowTable rows,     \
                                                          S* dx, int64_t b0, int64_t nb, int64_t n, int64_t O,   \
                                                          int64_t T) {                                         \
        backward_input_chunk<S>(g, x, W, rows, dx, b0, nb, n, O, T);                                           \
    }                                                                                                          \
    PHYSKERNELS_CLONES void backward_weight_tile_##suffix(const VecOf<S>::type* xt, const VecOf<S>::type* gt,    \
                                                          int64_t nsub, RowTable rows, S* dW, int64_t t0,        \
                                                          int64_t n, int64_t O, int64_t T) {                     \
        backward_weight_tile<S>(xt, gt, nsub, rows, dW, t0, n, O, T);                                          \
    }                                                                                                          \
    PHYSKERNELS_INLINE void forward_chunk_any(const S* x, const S* W, const S* bias, RowTable rows, S* y,       \
                                              int64_t b0, int64_t nb, int64_t n, int64_t O, int64_t T) {         \
        forward_chunk_##suffix(x, W, bias, rows, y, b0, nb, n, O, T);                                          \
    }                                                                                                          \
    PHYSKERNELS_INLINE void backward_input_chunk_any(const S* g, const S* x, const S* W, RowTable rows, S* dx,  \
                                                     int64_t b0, int64_t nb, int64_t n, int64_t O, int64_t T) {  \
        backward_input_chunk_##suffix(g, x, W, rows, dx, b0, nb, n, O, T);                                     \
    }                                                                                                          \
    PHYSKERNELS_INLINE void backward_weight_tile_any(const VecOf<S>::type* xt, const VecOf<S>::type* gt,         \
                                                     int64_t nsub, RowTable rows, S* dW, int64_t t0, int64_t n,  \
                                                     int64_t O, int64_t T) {                                     \
        backward_weight_tile_##suffix(xt, gt, nsub, rows, dW, t0, n, O, T);                                    \
    }

PHYSKERNELS_WORKERS(float, f32)
PHYSKERNELS_WORKERS(double, f64)
#undef PHYSKERNELS_WORKERS

// Samples per forward/dx work item: up to kSubtiles 16-lane sub-tiles (they share each W tile), fewer when that
// would leave threads idle. Every sample's arithmetic is the same whatever its chunk, so results do not change.
inline int64_t chunk_size(int64_t batch, int threads) {
    const int64_t subtiles = (batch + kLanes - 1) / kLanes;
    const int64_t per_thread = (subtiles + resolve_threads(threads) - 1) / resolve_threads(threads);
    return kLanes * std::max<int64_t>(1, std::min<int64_t>(kSubtiles, per_thread));
}

// Threads for a loop of `items` work items: no more threads than items (idle threads only cost wake-ups).
inline int threads_for(int requested, int64_t items) {
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(requested), items)));
}

}  // namespace

template <typename S>
void forward(const S* x, const S* weight, const S* bias, RowTable rows, S* y, int64_t batch, int64_t n,
             int64_t out, int64_t terms, int threads) {
    const int64_t chunk = chunk_size(batch, threads), chunks = (batch + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_for(threads, chunks)) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c)
        forward_chunk_any(x, weight, bias, rows, y, c * chunk, std::min(chunk, batch - c * chunk), n, out, terms);
}

template <typename S>
void backward_input(const S* grad, const S* x, const S* weight, RowTable rows, S* dx, int64_t batch, int64_t n,
                    int64_t out, int64_t terms, int threads) {
    const int64_t chunk = chunk_size(batch, threads), chunks = (batch + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_for(threads, chunks)) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c)
        backward_input_chunk_any(grad, x, weight, rows, dx, c * chunk, std::min(chunk, batch - c * chunk), n, out,
                                 terms);
}

template <typename S>
void backward_weight(const S* grad, const S* x, RowTable rows, S* dweight, S* dbias, int64_t batch, int64_t n,
                     int64_t out, int64_t terms, int threads) {
    using V = typename VecOf<S>::type;
    if (terms > 0) {
        // Lane-major copies of x and g (the size of the inputs), made once instead of once per term tile.
        const int64_t nsub = (batch + kLanes - 1) / kLanes, tiles = (terms + kWeightTile - 1) / kWeightTile;
        Buffer<V> xt(nsub * n), gt(nsub * out);
#pragma omp parallel for schedule(static) num_threads(threads_for(threads, nsub / 64 + 1)) if (nsub >= 128)
        for (int64_t s = 0; s < nsub; ++s) {
            const int64_t lanes = std::min<int64_t>(kLanes, batch - s * kLanes);
            load_lanes(x, n, s * kLanes, lanes, n, &xt[s * n]);
            load_lanes(grad, out, s * kLanes, lanes, out, &gt[s * out]);
        }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_for(threads, tiles)) if (tiles > 1)
        for (int64_t i = 0; i < tiles; ++i)
            backward_weight_tile_any(xt.data(), gt.data(), nsub, rows, dweight, i * kWeightTile, n, out, terms);
    }
    if (dbias != nullptr) {
        for (int64_t a = 0; a < out; ++a) {
            S sum = 0, comp = 0;
            for (int64_t b = 0; b < batch; ++b) kahan_add(sum, comp, grad[b * out + a]);
            dbias[a] = sum - comp;
        }
    }
}

#define PHYSKERNELS_INSTANTIATE(S)                                                                             \
    template void forward<S>(const S*, const S*, const S*, RowTable, S*, int64_t, int64_t, int64_t, int64_t, int); \
    template void backward_input<S>(const S*, const S*, const S*, RowTable, S*, int64_t, int64_t, int64_t, int64_t, \
                                    int);                                                                      \
    template void backward_weight<S>(const S*, const S*, RowTable, S*, S*, int64_t, int64_t, int64_t, int64_t, int);
PHYSKERNELS_INSTANTIATE(float)
PHYSKERNELS_INSTANTIATE(double)
#undef PHYSKERNELS_INSTANTIATE

}  // namespace physkernels::taylor
