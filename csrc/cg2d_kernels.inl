// CG2d kernel bodies. Included by cg2d.cpp once per instruction set, inside a namespace (and a target pragma),
// so this file deliberately has no include guard and includes nothing.
//
// Everything is built on one register-blocked micro-GEMM, C[m][n] += sum_k A(m,k) B[k][n], vectorised along n:
//   forward        Y[o][r]  += W[o][k]  * F[k][r]      (F: features of a channel chunk for a tile of positions)
//   backward dW    dW[k][o] += F[k][r]  * gY^T[r][o]
//   backward dF    dF[k][r] += W[o][k]  * gY[o][r]     then dx_p = dF_p + sum_q dF_pq x_q (+ third order)
// Each C element is summed over k in increasing order, so results do not depend on blocking or threads.

template <typename T>
struct Simd {
    typedef T vec __attribute__((vector_size(32)));
    static constexpr int width = 32 / sizeof(T);
    static inline vec load(const T* p) {
        vec v;
        __builtin_memcpy(&v, p, sizeof(vec));
        return v;
    }
    static inline void store(T* p, vec v) { __builtin_memcpy(p, &v, sizeof(vec)); }
    static inline vec splat(T a) { return vec{} + a; }
};

constexpr int kRowBlock = 6;   // rows of C held in registers
constexpr int kVecPerRow = 2;  // vectors per row: 12 accumulators + 2 B vectors + 1 broadcast = 15 registers

template <typename T>
constexpr int col_block() { return kVecPerRow * Simd<T>::width; }

// Columns of every tile are padded to this multiple (16 floats, 8 doubles: one micro-kernel column block).
template <typename T>
inline int64_t pad_cols(int64_t n) {
    const int64_t b = col_block<T>();
    return (n + b - 1) / b * b;
}

// C[m][0:N] += sum_{k<K} A[m*a_rs + k*a_cs] * B[k*ldb + 0:N] for m < M; N a multiple of col_block<T>().
template <typename T, int M>
inline void micro_kernel(const T* A, int64_t a_rs, int64_t a_cs, const T* B, int64_t ldb, int64_t K, T* C,
                         int64_t ldc, int64_t N) {
    using S = Simd<T>;
    using V = typename S::vec;
    constexpr int W = S::width;
    for (int64_t n0 = 0; n0 < N; n0 += kVecPerRow * W) {
        V acc[M][kVecPerRow];
        for (int m = 0; m < M; ++m)
            for (int v = 0; v < kVecPerRow; ++v) acc[m][v] = S::load(C + m * ldc + n0 + v * W);
        const T* b = B + n0;
        for (int64_t k = 0; k < K; ++k, b += ldb) {
            V bv[kVecPerRow];
            for (int v = 0; v < kVecPerRow; ++v) bv[v] = S::load(b + v * W);
            for (int m = 0; m < M; ++m) {
                const V a = S::splat(A[m * a_rs + k * a_cs]);
                for (int v = 0; v < kVecPerRow; ++v) acc[m][v] += a * bv[v];
            }
        }
        for (int m = 0; m < M; ++m)
            for (int v = 0; v < kVecPerRow; ++v) S::store(C + m * ldc + n0 + v * W, acc[m][v]);
    }
}

template <typename T>
inline void gemm_acc(int64_t M, int64_t N, int64_t K, const T* A, int64_t a_rs, int64_t a_cs, const T* B,
                     int64_t ldb, T* C, int64_t ldc) {
    int64_t m = 0;
    for (; m + kRowBlock <= M; m += kRowBlock)
        micro_kernel<T, kRowBlock>(A + m * a_rs, a_rs, a_cs, B, ldb, K, C + m * ldc, ldc, N);
    const T* a = A + m * a_rs;
    T* c = C + m * ldc;
    switch (M - m) {
        case 5: micro_kernel<T, 5>(a, a_rs, a_cs, B, ldb, K, c, ldc, N); break;
        case 4: micro_kernel<T, 4>(a, a_rs, a_cs, B, ldb, K, c, ldc, N); break;
        case 3: micro_kernel<T, 3>(a, a_rs, a_cs, B, ldb, K, c, ldc, N); break;
        case 2: micro_kernel<T, 2>(a, a_rs, a_cs, B, ldb, K, c, ldc, N); break;
        case 1: micro_kernel<T, 1>(a, a_rs, a_cs, B, ldb, K, c, ldc, N); break;
        default: break;
    }
}

// A tile of output positions [r0, r0 + count) of one image, padded to `cols` columns, with the spatial offset
// (hi*stride_h + wi*stride_w) of every patch position, -1 where the patch falls into the padding or past the end,
// and the same position's offset hi*W + wi in a contiguous (H, W) plane (for dx).
struct Tile {
    int64_t r0 = 0, count = 0, cols = 0;
    std::vector<int64_t> offset;        // [P][cols]
    std::vector<int64_t> plane_offset;  // [P][cols]

    void locate(const Geometry& g, const Features& f, int64_t start, int64_t n, int64_t padded) {
        r0 = start, count = n, cols = padded;
        offset.assign(static_cast<size_t>(f.patch) * cols, -1);
        plane_offset.assign(static_cast<size_t>(f.patch) * cols, -1);
        const int64_t wo = g.out_w();
        for (int64_t r = 0; r < count; ++r) {
            const int64_t oh = (r0 + r) / wo, ow = (r0 + r) % wo;
            for (int p = 0; p < f.patch; ++p) {
                const int64_t hi = oh * g.stride_y - g.pad_h + (p / g.kernel_w) * g.dil_h;
                const int64_t wi = ow * g.stride_x - g.pad_w + (p % g.kernel_w) * g.dil_w;
                if (hi >= 0 && hi < g.height && wi >= 0 && wi < g.width) {
                    offset[p * cols + r] = hi * g.stride_h + wi * g.stride_w;
                    plane_offset[p * cols + r] = hi * g.width + wi;
                }
            }
        }
    }
};

// feat[f][0:cols] = feature f of channel plane `xc` at every position of the tile (0 in padded columns).
template <typename T>
inline void build_features(const T* xc, const Tile& t, const Features& f, T* feat) {
    const int64_t n = t.cols;
    for (int p = 0; p < f.patch; ++p) {
        const int64_t* off = t.offset.data() + p * n;
        T* row = feat + p * n;
        for (int64_t r = 0; r < n; ++r) row[r] = off[r] >= 0 ? xc[off[r]] : T(0);
    }
    T* out = feat + f.patch * n;
    for (const auto& pq : f.pairs) {
        const T* a = feat + pq[0] * n;
        const T* b = feat + pq[1] * n;
        for (int64_t r = 0; r < n; ++r) out[r] = a[r] * b[r];
        out += n;
    }
    for (const auto& pqs : f.triples) {
        const T* a = feat + pqs[0] * n;
        const T* b = feat + pqs[1] * n;
        const T* c = feat + pqs[2] * n;
        for (int64_t r = 0; r < n; ++r) out[r] = a[r] * b[r] * c[r];
        out += n;
    }
}

// dx_patch[p][r] = d(sum_f dfeat[f][r] feat_f)/dx_p: the chain rule through the products, x_p = feat rows 0..P-1.
template <typename T>
inline void patch_gradient(const T* feat, const T* dfeat, const Features& f, int64_t n, T* dxp) {
    for (int p = 0; p < f.patch; ++p)
        for (int64_t r = 0; r < n; ++r) dxp[p * n + r] = dfeat[p * n + r];
    const T* d = dfeat + f.patch * n;
    for (const auto& pq : f.pairs) {
        const T* a = feat + pq[0] * n;
        const T* b = feat + pq[1] * n;
        T* da = dxp + pq[0] * n;
        T* db = dxp + pq[1] * n;
        for (int64_t r = 0; r < n; ++r) da[r] += d[r] * b[r];
        for (int64_t r = 0; r < n; ++r) db[r] += d[r] * a[r];
        d += n;
    }
    for (const auto& pqs : f.triples) {
        const T* a = feat + pqs[0] * n;
        const T* b = feat + pqs[1] * n;
        const T* c = feat + pqs[2] * n;
        T* da = dxp + pqs[0] * n;
        T* db = dxp + pqs[1] * n;
        T* dc = dxp + pqs[2] * n;
        for (int64_t r = 0; r < n; ++r) da[r] += d[r] * b[r] * c[r];
        for (int64_t r = 0; r < n; ++r) db[r] += d[r] * a[r] * c[r];
        for (int64_t r = 0; r < n; ++r) dc[r] += d[r] * a[r] * b[r];
        d += n;
    }
}

// Positions per tile: up to 64, at least one micro-kernel column block.
inline int64_t tile_positions(int64_t positions) { return std::min<int64_t>(positions, 64); }

template <typename T>
void forward_impl(const T* x, const T* weight, const T* bias, T* y, const Geometry& g, const Features& f,
                  int threads) {
    const int64_t R = g.out_h() * g.out_w(), cg = g.group_in(), og = g.group_out(), F = f.count;
    const int64_t rt = tile_positions(R), tiles = (R + rt - 1) / rt, cols = pad_cols<T>(rt);
    // Channels per feature chunk: keep the chunk's features (chunk * F * cols values) around 32 KiB.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(cg, (32768 / sizeof(T)) / (F * cols)));
    const int64_t tasks = g.batch * g.groups * tiles;
#pragma omp parallel num_threads(threads)
    {
        Tile tile;
        std::vector<T> feat(static_cast<size_t>(chunk * F * cols)), acc(static_cast<size_t>(og * cols));
#pragma omp for schedule(dynamic)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t b = task / (g.groups * tiles), grp = task / tiles % g.groups, t = task % tiles;
            tile.locate(g, f, t * rt, std::min(rt, R - t * rt), cols);
            for (int64_t o = 0; o < og; ++o)
                std::fill_n(acc.data() + o * cols, cols, bias ? bias[grp * og + o] : T(0));
            const T* w_group = weight + grp * og * cg * F;
            for (int64_t c0 = 0; c0 < cg; c0 += chunk) {
                const int64_t nc = std::min(chunk, cg - c0);
                for (int64_t c = 0; c < nc; ++c)
                    build_features(x + b * g.stride_b + (grp * cg + c0 + c) * g.stride_c, tile, f,
                                   feat.data() + c * F * cols);
                gemm_acc<T>(og, cols, nc * F, w_group + c0 * F, cg * F, 1, feat.data(), cols, acc.data(), cols);
            }
            T* y_tile = y + (b * g.out_channels + grp * og) * R + tile.r0;
            for (int64_t o = 0; o < og; ++o) std::copy_n(acc.data() + o * cols, tile.count, y_tile + o * R);
        }
    }
}

template <typename T>
void backward_impl(const T* grad_y, const T* x, const T* weight, T* grad_x, T* grad_weight, T* grad_bias,
                   const Geometry& g, const Features& f, int threads) {
    const int64_t R = g.out_h() * g.out_w(), cg = g.group_in(), og = g.group_out(), F = f.count;
    const int64_t rt = tile_positions(R), tiles = (R + rt - 1) / rt, cols = pad_cols<T>(rt);
    const int64_t og_cols = pad_cols<T>(og);
    // A task owns (group, block of input channels): its dW entries and its dx planes, so no two tasks write the
    // same element. Aim for >= 4 tasks per thread with at most 8 channels per block (block size does not change
    // any result: every sum runs over positions or outputs in the same order whatever the block).
    const int64_t per_group = std::max<int64_t>(1, (4 * threads + g.groups - 1) / g.groups);
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(8, cg / per_group));
    const int64_t blocks = (cg + block - 1) / block, tasks = g.groups * blocks;
#pragma omp parallel num_threads(threads)
    {
        Tile tile;
        const int64_t K = block * F;
        std::vector<T> feat(static_cast<size_t>(K * cols)), dfeat(static_cast<size_t>(K * cols));
        std::vector<T> gy(static_cast<size_t>(og * cols)), gyt(static_cast<size_t>(cols * og_cols));
        std::vector<T> dw(static_cast<size_t>(K * og_cols)), dxp(static_cast<size_t>(f.patch * cols));
#pragma omp for schedule(dynamic)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t grp = task / blocks, c0 = task % blocks * block, nc = std::min(block, cg - c0);
            const int64_t kc = nc * F;
            const T* w_block = weight + grp * og * cg * F + c0 * F;  // W[o][k] = w_block[o*cg*F + k]
            std::fill(dw.begin(), dw.end(), T(0));
            for (int64_t b = 0; b < g.batch; ++b) {
                for (int64_t t = 0; t < tiles; ++t) {
                    tile.locate(g, f, t * rt, std::min(rt, R - t * rt), cols);
                    const T* x_b = x + b * g.stride_b + (grp * cg + c0) * g.stride_c;
                    for (int64_t c = 0; c < nc; ++c)
                        build_features(x_b + c * g.stride_c, tile, f, feat.data() + c * F * cols);
                    const T* gy_tile = grad_y + (b * g.out_channels + grp * og) * R + tile.r0;
                    std::fill(gy.begin(), gy.end(), T(0));
                    std::fill(gyt.begin(), gyt.end(), T(0));
                    for (int64_t o = 0; o < og; ++o)
                        for (int64_t r = 0; r < tile.count; ++r) {
                            gy[o * cols + r] = gy_tile[o * R + r];
                            gyt[r * og_cols + o] = gy_tile[o * R + r];
                        }
                    // dW[k][o] += sum_r F[k][r] gY[o][r]
                    gemm_acc<T>(kc, og_cols, tile.count, feat.data(), cols, 1, gyt.data(), og_cols, dw.data(),
                                og_cols);
                    if (!grad_x) continue;
                    // dF[k][r] = sum_o W[o][k] gY[o][r]
                    std::fill(dfeat.begin(), dfeat.begin() + kc * cols, T(0));
                    gemm_acc<T>(kc, cols, og, w_block, 1, cg * F, gy.data(), cols, dfeat.data(), cols);
                    for (int64_t c = 0; c < nc; ++c) {
                        patch_gradient(feat.data() + c * F * cols, dfeat.data() + c * F * cols, f, cols, dxp.data());
                        T* dx_c = grad_x + (b * g.channels + grp * cg + c0 + c) * g.height * g.width;
                        for (int64_t r = 0; r < tile.count; ++r)
                            for (int p = 0; p < f.patch; ++p) {
                                const int64_t off = tile.plane_offset[p * cols + r];
                                if (off >= 0) dx_c[off] += dxp[p * cols + r];
                            }
                    }
                }
            }
            for (int64_t c = 0; c < nc; ++c)
                for (int64_t o = 0; o < og; ++o)
                    for (int64_t k = 0; k < F; ++k)
                        grad_weight[((grp * og + o) * cg + c0 + c) * F + k] = dw[(c * F + k) * og_cols + o];
        }
        if (grad_bias) {
#pragma omp for schedule(static)
            for (int64_t o = 0; o < g.out_channels; ++o) {
                T sum = 0;
                for (int64_t b = 0; b < g.batch; ++b) {
                    const T* row = grad_y + (b * g.out_channels + o) * R;
                    for (int64_t r = 0; r < R; ++r) sum += row[r];
                }
                grad_bias[o] = sum;
            }
        }
    }
}
