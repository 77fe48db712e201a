// Register-tiled serial GEMM micro-kernels for one instruction set; included by mpo_gemm*.cpp with
//   MPO_GEMM_ISA   the namespace (isa_baseline, isa_avx2, isa_avx512)
//   MPO_VBYTES     vector bytes (16, 32, 64)
//   MPO_NN_ROWS    rows of A per register tile of gemm_nn (accumulators: rows x 2 vectors)
//   MPO_NT_ROWS    rows of D and of S per register tile of gemm_nt_acc (accumulators: rows^2 vectors)
// GCC vector extensions: the compiler emits the ISA's FMAs and keeps the fully unrolled tiles in registers.
// The including file includes <cstdint> and <cstring> before its target pragma.
namespace physkernels::mpo_gemm::MPO_GEMM_ISA {

typedef float vfloat __attribute__((vector_size(MPO_VBYTES)));
typedef double vdouble __attribute__((vector_size(MPO_VBYTES)));
template <typename T> struct Vec;
template <> struct Vec<float> { using type = vfloat; };
template <> struct Vec<double> { using type = vdouble; };

template <typename V, typename T>
inline V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}

template <typename V, typename T>
inline void store(T* p, const V& v) {
    std::memcpy(p, &v, sizeof(V));
}

// C[0:R, 0:NV*W] = A[0:R, :] @ B[:, 0:NV*W]
template <typename T, int R, int NV>
inline void tile_nn(const T* a, std::int64_t a_row, std::int64_t a_col, const T* b, std::int64_t ldb, T* c,
                    std::int64_t ldc, std::int64_t k) {
    using V = typename Vec<T>::type;
    constexpr int W = sizeof(V) / sizeof(T);
    V acc[R][NV];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[r][j] = V{};
    for (std::int64_t p = 0; p < k; ++p) {
        V bv[NV];
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) bv[j] = load<V>(b + p * ldb + j * W);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            const T av = a[r * a_row + p * a_col];
#pragma GCC unroll 4
            for (int j = 0; j < NV; ++j) acc[r][j] += av * bv[j];
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) store(c + r * ldc + j * W, acc[r][j]);
}

// Rows [0, rows) of a column block, R rows at a time (remainder rows by the smaller tiles).
template <typename T, int NV>
void rows_nn(const T* a, std::int64_t a_row, std::int64_t a_col, const T* b, std::int64_t ldb, T* c,
             std::int64_t ldc, std::int64_t m, std::int64_t k) {
    constexpr int R = MPO_NN_ROWS;
    std::int64_t i = 0;
    for (; i + R <= m; i += R) tile_nn<T, R, NV>(a + i * a_row, a_row, a_col, b, ldb, c + i * ldc, ldc, k);
    const T* ai = a + i * a_row;
    T* ci = c + i * ldc;
    switch (m - i) {
#define MPO_ROWS_CASE(N) \
    case N: tile_nn<T, (N < R ? N : 1), NV>(ai, a_row, a_col, b, ldb, ci, ldc, k); break;
        MPO_ROWS_CASE(1) MPO_ROWS_CASE(2) MPO_ROWS_CASE(3) MPO_ROWS_CASE(4) MPO_ROWS_CASE(5) MPO_ROWS_CASE(6)
        MPO_ROWS_CASE(7) MPO_ROWS_CASE(8) MPO_ROWS_CASE(9) MPO_ROWS_CASE(10) MPO_ROWS_CASE(11)
#undef MPO_ROWS_CASE
        default: break;
    }
}

// C[0:m, q0:q0+QC] = A @ B[:, q0:q0+QC] for A with contiguous columns (a_row == 1): vectors run down the rows
// of A, so a few trailing columns (shorter than one vector) still run vectorised.
template <typename T, int QC>
void columns_nn(const T* a, std::int64_t a_col, const T* b, std::int64_t ldb, T* c, std::int64_t ldc,
                std::int64_t m, std::int64_t k) {
    using V = typename Vec<T>::type;
    constexpr std::int64_t W = sizeof(V) / sizeof(T);
    std::int64_t i = 0;
    for (; i + W <= m; i += W) {
        V acc[QC];
#pragma GCC unroll 8
        for (int q = 0; q < QC; ++q) acc[q] = V{};
        for (std::int64_t p = 0; p < k; ++p) {
            const V av = load<V>(a + p * a_col + i);
#pragma GCC unroll 8
            for (int q = 0; q < QC; ++q) acc[q] += av * b[p * ldb + q];
        }
        for (int q = 0; q < QC; ++q) {
            T lanes[W];
            store(lanes, acc[q]);
            for (std::int64_t l = 0; l < W; ++l) c[(i + l) * ldc + q] = lanes[l];
        }
    }
    for (; i < m; ++i)
        for (int q = 0; q < QC; ++q) {
            T total = T(0);
            for (std::int64_t p = 0; p < k; ++p) total += a[p * a_col + i] * b[p * ldb + q];
            c[i * ldc + q] = total;
        }
}

template <typename T>
void gemm_nn_impl(const T* a, std::int64_t a_row, std::int64_t a_col, const T* b, std::int64_t ldb, T* c,
                  std::int64_t ldc, std::int64_t m, std::int64_t k, std::int64_t n) {
    using V = typename Vec<T>::type;
    constexpr std::int64_t W = sizeof(V) / sizeof(T);
    std::int64_t j = 0;
    for (; j + 2 * W <= n; j += 2 * W) rows_nn<T, 2>(a, a_row, a_col, b + j, ldb, c + j, ldc, m, k);
    for (; j + W <= n; j += W) rows_nn<T, 1>(a, a_row, a_col, b + j, ldb, c + j, ldc, m, k);
    if (a_row == 1) {  // the last n % W columns, four at a time, vectorised down the rows
        for (; j + 4 <= n; j += 4) columns_nn<T, 4>(a, a_col, b + j, ldb, c + j, ldc, m, k);
        switch (n - j) {
            case 3: return columns_nn<T, 3>(a, a_col, b + j, ldb, c + j, ldc, m, k);
            case 2: return columns_nn<T, 2>(a, a_col, b + j, ldb, c + j, ldc, m, k);
            case 1: return columns_nn<T, 1>(a, a_col, b + j, ldb, c + j, ldc, m, k);
            default: return;
        }
    }
    for (std::int64_t i = 0; i < m; ++i) {  // the last n % W columns, scalar
        T* cr = c + i * ldc;
        for (std::int64_t q = j; q < n; ++q) cr[q] = T(0);
        for (std::int64_t p = 0; p < k; ++p) {
            const T av = a[i * a_row + p * a_col];
            const T* br = b + p * ldb;
            for (std::int64_t q = j; q < n; ++q) cr[q] += av * br[q];
        }
    }
}

// C[0:R, 0:Q] += sum_{g < count} D_g[0:R, 0:n] @ S_g[0:Q, 0:n]^T with D_g = d + g d_step, S_g = s + g s_step.
// The vector accumulators run over every block before their one horizontal sum, so short rows (n = a few
// vectors, as in the last steps of a fused chain) cost little more than long ones.
template <typename T, int R, int Q>
inline void tile_nt(const T* d, std::int64_t ldd, std::int64_t d_step, const T* s, std::int64_t lds,
                    std::int64_t s_step, T* c, std::int64_t ldc, std::int64_t n, std::int64_t count) {
    using V = typename Vec<T>::type;
    constexpr int W = sizeof(V) / sizeof(T);
    V acc[R][Q];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int q = 0; q < Q; ++q) acc[r][q] = V{};
    T tail[R][Q] = {};
    const std::int64_t full = n - n % W;
    for (std::int64_t g = 0; g < count; ++g) {
        const T* dg = d + g * d_step;
        const T* sg = s + g * s_step;
        for (std::int64_t j = 0; j < full; j += W) {
            V dv[R], sv[Q];
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) dv[r] = load<V>(dg + r * ldd + j);
#pragma GCC unroll 8
            for (int q = 0; q < Q; ++q) sv[q] = load<V>(sg + q * lds + j);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
                for (int q = 0; q < Q; ++q) acc[r][q] += dv[r] * sv[q];
        }
        for (std::int64_t j = full; j < n; ++j)
            for (int r = 0; r < R; ++r)
                for (int q = 0; q < Q; ++q) tail[r][q] += dg[r * ldd + j] * sg[q * lds + j];
    }
    for (int r = 0; r < R; ++r)
        for (int q = 0; q < Q; ++q) {
            T lanes[W];
            store(lanes, acc[r][q]);
            T total = T(0);
            for (int l = 0; l < W; ++l) total += lanes[l];
            c[r * ldc + q] += total + tail[r][q];
        }
}

template <typename T, int R>
void cols_nt(const T* d, std::int64_t ldd, std::int64_t d_step, const T* s, std::int64_t lds, std::int64_t s_step,
             T* c, std::int64_t ldc, std::int64_t k, std::int64_t n, std::int64_t count) {
    constexpr int Q = MPO_NT_ROWS;
    std::int64_t q = 0;
    for (; q + Q <= k; q += Q) tile_nt<T, R, Q>(d, ldd, d_step, s + q * lds, lds, s_step, c + q, ldc, n, count);
    for (; q < k; ++q) tile_nt<T, R, 1>(d, ldd, d_step, s + q * lds, lds, s_step, c + q, ldc, n, count);
}

template <typename T>
void gemm_nt_acc_impl(const T* d, std::int64_t ldd, std::int64_t d_step, const T* s, std::int64_t lds,
                      std::int64_t s_step, T* c, std::int64_t ldc, std::int64_t m, std::int64_t k, std::int64_t n,
                      std::int64_t count) {
    constexpr int R = MPO_NT_ROWS;
    std::int64_t i = 0;
    for (; i + R <= m; i += R) cols_nt<T, R>(d + i * ldd, ldd, d_step, s, lds, s_step, c + i * ldc, ldc, k, n, count);
    for (; i < m; ++i) cols_nt<T, 1>(d + i * ldd, ldd, d_step, s, lds, s_step, c + i * ldc, ldc, k, n, count);
}

#define MPO_GEMM_INSTANTIATE(T)                                                                                   \
    template void gemm_nn_impl<T>(const T*, std::int64_t, std::int64_t, const T*, std::int64_t, T*, std::int64_t, \
                                  std::int64_t, std::int64_t, std::int64_t);                                     \
    template void gemm_nt_acc_impl<T>(const T*, std::int64_t, std::int64_t, const T*, std::int64_t, std::int64_t, \
                                      T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t);
MPO_GEMM_INSTANTIATE(float)
MPO_GEMM_INSTANTIATE(double)
#undef MPO_GEMM_INSTANTIATE

}  // namespace physkernels::mpo_gemm::MPO_GEMM_ISA
