// CG2d kernel bodies. Included by cg2d.cpp once per instruction set, inside a namespace (and a target pragma),
// so this file deliberately has no include guard and includes nothing. The includer defines CG2D_VECTOR_BYTES
// (32 for AVX2, 64 for AVX-512) and CG2D_ROW_BLOCK (rows of the micro-kernel: 2*rows + 3 <= vector registers).
//
// Everything is built on one register-blocked micro-GEMM, C[m][n] += sum_k A(m,k) B[k][n], vectorised along n:
//   forward        Y[o][r]  += W[o][k]  * F[k][r]      (F: features of a channel chunk for a tile of positions)
//   backward dW    dW[k][o] += F[k][r]  * gY^T[r][o]
//   backward dF    dF[k][r] += W[o][k]  * gY[o][r]     then dx_p = dF_p + sum_q dF_pq x_q (+ third order)
// Each C element is summed over k in increasing order, so results do not depend on blocking or threads.
//
// Feature rows of a chunk of nc channels are grouped by order (see Layout), so the A operands W1, W2, W3 are read
// in place from the parameters (no packed weight copy): row c*P + p holds x_p of channel c, row nc*P + c*P2 + k
// the k-th pair, row nc*(P+P2) + c*P3 + k the k-th triple.

template <typename T>
struct Simd {
    typedef T vec __attribute__((vector_size(CG2D_VECTOR_BYTES)));
    static constexpr int width = CG2D_VECTOR_BYTES / sizeof(T);
    static inline vec load(const T* p) {
        vec v;
        __builtin_memcpy(&v, p, sizeof(vec));
        return v;
    }
    static inline void store(T* p, vec v) { __builtin_memcpy(p, &v, sizeof(vec)); }
    static inline vec splat(T a) { return vec{} + a; }
};

constexpr int kRowBlock = CG2D_ROW_BLOCK;  // rows of C held in registers
constexpr int kVecPerRow = 2;              // vectors per row: 2*rows accumulators + 2 B vectors + 1 broadcast

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

// The M % kRowBlock leftover rows: micro_kernel<T, rows> for rows = M, found by compile-time recursion.
template <typename T, int Rows>
inline void leftover_rows(int64_t M, const T* A, int64_t a_rs, int64_t a_cs, const T* B, int64_t ldb, int64_t K,
                          T* C, int64_t ldc, int64_t N) {
    if constexpr (Rows > 0) {
        if (M == Rows) return micro_kernel<T, Rows>(A, a_rs, a_cs, B, ldb, K, C, ldc, N);
        leftover_rows<T, Rows - 1>(M, A, a_rs, a_cs, B, ldb, K, C, ldc, N);
    }
}

template <typename T>
inline void gemm_acc(int64_t M, int64_t N, int64_t K, const T* A, int64_t a_rs, int64_t a_cs, const T* B,
                     int64_t ldb, T* C, int64_t ldc) {
    int64_t m = 0;
    for (; m + kRowBlock <= M; m += kRowBlock)
        micro_kernel<T, kRowBlock>(A + m * a_rs, a_rs, a_cs, B, ldb, K, C + m * ldc, ldc, N);
    leftover_rows<T, kRowBlock - 1>(M - m, A + m * a_rs, a_rs, a_cs, B, ldb, K, C + m * ldc, ldc, N);
}

// A tile of output positions [n0, n0 + count) of the flattened (batch, Ho, Wo) index, padded to `cols` columns
// (tiles run across images, so small feature maps still fill the vectors). Per column: the image, the position
// inside it, and per patch position the offset b*stride_b + hi*stride_h + wi*stride_w into x and the offset
// b*C*H*W + hi*W + wi into a contiguous NCHW dx (add the channel's plane), -1 where the patch is in the padding.
struct Tile {
    int64_t n0 = 0, count = 0, cols = 0;
    std::vector<int64_t> image, position;  // [cols]
    std::vector<int64_t> grad_offset;      // [cols]: b*C_out*Ho*Wo + position, the column's place in y / grad_y
    std::vector<int64_t> offset;           // [P][cols]
    std::vector<int64_t> plane_offset;     // [P][cols]

    void locate(const Geometry& g, const Features& f, int64_t start, int64_t n, int64_t padded) {
        n0 = start, count = n, cols = padded;
        const int64_t wo = g.out_w(), R = g.out_h() * wo, image_size = g.channels * g.height * g.width;
        image.assign(cols, 0);
        position.assign(cols, 0);
        grad_offset.assign(cols, 0);
        offset.assign(static_cast<size_t>(f.patch) * cols, -1);
        plane_offset.assign(static_cast<size_t>(f.patch) * cols, -1);
        for (int64_t r = 0; r < count; ++r) {
            const int64_t b = (n0 + r) / R, pos = (n0 + r) % R, oh = pos / wo, ow = pos % wo;
            image[r] = b, position[r] = pos, grad_offset[r] = b * g.out_channels * R + pos;
            for (int p = 0; p < f.patch; ++p) {
                const int64_t hi = oh * g.stride_y - g.pad_h + (p / g.kernel_w) * g.dil_h;
                const int64_t wi = ow * g.stride_x - g.pad_w + (p % g.kernel_w) * g.dil_w;
                if (hi >= 0 && hi < g.height && wi >= 0 && wi < g.width) {
                    offset[p * cols + r] = b * g.stride_b + hi * g.stride_h + wi * g.stride_w;
                    plane_offset[p * cols + r] = b * image_size + hi * g.width + wi;
                }
            }
        }
    }
};

// Where each order's feature rows of a chunk of `channels` channels start, and how many per channel.
struct Layout {
    int64_t channels;
    int64_t per_channel[3];  // P, P(P+1)/2, P(P+1)(P+2)/6 (0 below order 3)
    int64_t start(int order) const {
        int64_t s = 0;
        for (int d = 0; d < order; ++d) s += channels * per_channel[d];
        return s;
    }
    int64_t rows() const { return start(3); }
    int64_t row(int order, int64_t c) const { return start(order) + c * per_channel[order]; }
};

inline Layout layout(const Features& f, int64_t channels) {
    return Layout{channels, {f.patch, static_cast<int64_t>(f.pairs.size()), static_cast<int64_t>(f.triples.size())}};
}

// The features of channel c (plane `xc`) at every position of the tile, into its rows of `feat` (0 in padding).
template <typename T>
inline void build_features(const T* xc, const Tile& t, const Features& f, const Layout& l, int64_t c, T* feat) {
    const int64_t n = t.cols;
    T* values = feat + l.row(0, c) * n;
    for (int p = 0; p < f.patch; ++p) {
        const int64_t* off = t.offset.data() + p * n;
        T* row = values + p * n;
        for (int64_t r = 0; r < n; ++r) row[r] = off[r] >= 0 ? xc[off[r]] : T(0);
    }
    T* out = feat + l.row(1, c) * n;
    for (const auto& pq : f.pairs) {
        const T* a = values + pq[0] * n;
        const T* b = values + pq[1] * n;
        for (int64_t r = 0; r < n; ++r) out[r] = a[r] * b[r];
        out += n;
    }
    out = feat + l.row(2, c) * n;
    for (const auto& pqs : f.triples) {
        const T* a = values + pqs[0] * n;
        const T* b = values + pqs[1] * n;
        const T* c3 = values + pqs[2] * n;
        for (int64_t r = 0; r < n; ++r) out[r] = a[r] * b[r] * c3[r];
        out += n;
    }
}

// dxp[p][r] = d(sum_f dfeat[f][r] feat_f)/dx_p for channel c: the chain rule through the products.
template <typename T>
inline void patch_gradient(const T* feat, const T* dfeat, const Features& f, const Layout& l, int64_t c, int64_t n,
                           T* dxp) {
    const T* values = feat + l.row(0, c) * n;
    const T* d = dfeat + l.row(0, c) * n;
    for (int64_t i = 0; i < f.patch * n; ++i) dxp[i] = d[i];
    d = dfeat + l.row(1, c) * n;
    for (const auto& pq : f.pairs) {
        const T* a = values + pq[0] * n;
        const T* b = values + pq[1] * n;
        T* da = dxp + pq[0] * n;
        T* db = dxp + pq[1] * n;
        for (int64_t r = 0; r < n; ++r) da[r] += d[r] * b[r];
        for (int64_t r = 0; r < n; ++r) db[r] += d[r] * a[r];
        d += n;
    }
    d = dfeat + l.row(2, c) * n;
    for (const auto& pqs : f.triples) {
        const T* a = values + pqs[0] * n;
        const T* b = values + pqs[1] * n;
        const T* c3 = values + pqs[2] * n;
        T* da = dxp + pqs[0] * n;
        T* db = dxp + pqs[1] * n;
        T* dc = dxp + pqs[2] * n;
        for (int64_t r = 0; r < n; ++r) da[r] += d[r] * b[r] * c3[r];
        for (int64_t r = 0; r < n; ++r) db[r] += d[r] * a[r] * c3[r];
        for (int64_t r = 0; r < n; ++r) dc[r] += d[r] * a[r] * b[r];
        d += n;
    }
}

// Positions per tile (of the flattened batch x Ho x Wo index).
constexpr int64_t kTilePositions = 128;

template <typename T>
void forward_impl(const T* x, const Weights<const T>& w, const T* bias, T* y, const Geometry& g, const Features& f,
                  int threads) {
    const int64_t R = g.out_h() * g.out_w(), N = g.batch * R, cg = g.group_in(), og = g.group_out(), F = f.count;
    const int64_t rt = std::min(kTilePositions, N), tiles = (N + rt - 1) / rt, cols = pad_cols<T>(rt);
    // Channels per feature chunk: keep the chunk's features (chunk * F * cols values) around 32 KiB.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(cg, (32768 / sizeof(T)) / (F * cols)));
    // A task owns (group, tile, block of outputs). Few tiles (small batch x map): split the outputs so every
    // thread gets work; each task then forms the tile's features itself.
    const int64_t want = std::max<int64_t>(1, (2 * threads + g.groups * tiles - 1) / (g.groups * tiles));
    const int64_t splits = std::max<int64_t>(1, std::min<int64_t>(want, og / (2 * kRowBlock)));
    const int64_t ob = (og + splits - 1) / splits, tasks = g.groups * tiles * splits;
#pragma omp parallel num_threads(threads)
    {
        Tile tile;
        std::vector<T> feat(static_cast<size_t>(chunk * F * cols)), acc(static_cast<size_t>(ob * cols));
#pragma omp for schedule(dynamic)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t grp = task / (tiles * splits), t = task / splits % tiles;
            const int64_t o0 = task % splits * ob, no = std::min(ob, og - o0);
            if (no <= 0) continue;
            tile.locate(g, f, t * rt, std::min(rt, N - t * rt), cols);
            for (int64_t o = 0; o < no; ++o)
                std::fill_n(acc.data() + o * cols, cols, bias ? bias[grp * og + o0 + o] : T(0));
            for (int64_t c0 = 0; c0 < cg; c0 += chunk) {
                const Layout l = layout(f, std::min(chunk, cg - c0));
                for (int64_t c = 0; c < l.channels; ++c)
                    build_features(x + (grp * cg + c0 + c) * g.stride_c, tile, f, l, c, feat.data());
                for (int d = 0; d < 3; ++d) {
                    const int64_t per = l.per_channel[d];
                    if (per == 0) continue;
                    gemm_acc<T>(no, cols, l.channels * per, w.w[d] + ((grp * og + o0) * cg + c0) * per, cg * per, 1,
                                feat.data() + l.start(d) * cols, cols, acc.data(), cols);
                }
            }
            for (int64_t r = 0; r < tile.count; ++r) {
                T* y_r = y + (tile.image[r] * g.out_channels + grp * og + o0) * R + tile.position[r];
                for (int64_t o = 0; o < no; ++o) y_r[o * R] = acc[o * cols + r];
            }
        }
    }
}

// gy[o][r] = grad_y[image r][o][position r] (0 in padded columns) and its transpose gyt[r][o] (row length og_cols;
// columns >= og stay 0 from allocation), transposed in cache-sized blocks.
template <typename T>
inline void gather_grad(const T* grad_y, int64_t R, int64_t og, const Tile& t, T* gy, T* gyt, int64_t og_cols) {
    for (int64_t o = 0; o < og; ++o) {
        const T* src = grad_y + o * R;
        T* row = gy + o * t.cols;
        for (int64_t r = 0; r < t.count; ++r) row[r] = src[t.grad_offset[r]];
        std::fill(row + t.count, row + t.cols, T(0));
    }
    constexpr int64_t kBlock = 16;
    for (int64_t o0 = 0; o0 < og; o0 += kBlock) {
        const int64_t o1 = std::min(o0 + kBlock, og);
        for (int64_t r = 0; r < t.count; ++r) {
            T* dst = gyt + r * og_cols;
            for (int64_t o = o0; o < o1; ++o) dst[o] = gy[o * t.cols + r];
        }
    }
}

template <typename T>
void backward_impl(const T* grad_y, const T* x, const Weights<const T>& w, T* grad_x, const Weights<T>& grad_w,
                   T* grad_bias, const Geometry& g, const Features& f, int threads) {
    const int64_t R = g.out_h() * g.out_w(), N = g.batch * R, cg = g.group_in(), og = g.group_out(), F = f.count;
    const int64_t rt = std::min(kTilePositions, N), tiles = (N + rt - 1) / rt, cols = pad_cols<T>(rt);
    const int64_t og_cols = pad_cols<T>(og);
    // A task owns (group, block of input channels): its dW entries and its dx planes, so no two tasks write the
    // same element. About two tasks per thread, at most 32 channels each: every task re-gathers the tile's
    // grad_y, so blocks are kept large. (The block size changes no result: every sum runs over positions or
    // outputs in the same order whatever the block.)
    const int64_t per_group = std::max<int64_t>(1, (2 * threads + g.groups - 1) / g.groups);
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(32, (cg + per_group - 1) / per_group));
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
            const int64_t grp = task / blocks, c0 = task % blocks * block;
            const Layout l = layout(f, std::min(block, cg - c0));
            const int64_t kc = l.rows();
            std::fill(dw.begin(), dw.end(), T(0));
            for (int64_t t = 0; t < tiles; ++t) {
                tile.locate(g, f, t * rt, std::min(rt, N - t * rt), cols);
                for (int64_t c = 0; c < l.channels; ++c)
                    build_features(x + (grp * cg + c0 + c) * g.stride_c, tile, f, l, c, feat.data());
                gather_grad(grad_y + grp * og * R, R, og, tile, gy.data(), gyt.data(), og_cols);
                // dW[k][o] += sum_r F[k][r] gY^T[r][o]
                gemm_acc<T>(kc, og_cols, tile.count, feat.data(), cols, 1, gyt.data(), og_cols, dw.data(), og_cols);
                if (!grad_x) continue;
                // dF[k][r] = sum_o W[o][k] gY[o][r], one GEMM per order (A read in place from W1, W2, W3)
                std::fill(dfeat.begin(), dfeat.begin() + kc * cols, T(0));
                for (int d = 0; d < 3; ++d) {
                    const int64_t per = l.per_channel[d];
                    if (per == 0) continue;
                    gemm_acc<T>(l.channels * per, cols, og, w.w[d] + (grp * og * cg + c0) * per, 1, cg * per,
                                gy.data(), cols, dfeat.data() + l.start(d) * cols, cols);
                }
                for (int64_t c = 0; c < l.channels; ++c) {
                    patch_gradient(feat.data(), dfeat.data(), f, l, c, cols, dxp.data());
                    T* dx_c = grad_x + (grp * cg + c0 + c) * g.height * g.width;
                    for (int64_t r = 0; r < tile.count; ++r)
                        for (int p = 0; p < f.patch; ++p) {
                            const int64_t off = tile.plane_offset[p * cols + r];
                            if (off >= 0) dx_c[off] += dxp[p * cols + r];
                        }
                }
            }
            for (int d = 0; d < 3; ++d) {
                const int64_t per = l.per_channel[d];
                for (int64_t c = 0; c < l.channels && per > 0; ++c)
                    for (int64_t o = 0; o < og; ++o)
                        for (int64_t k = 0; k < per; ++k)
                            grad_w.w[d][((grp * og + o) * cg + c0 + c) * per + k] = dw[(l.row(d, c) + k) * og_cols + o];
            }
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
