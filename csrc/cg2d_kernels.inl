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
    // a - 0 is a for every a (also -0), so this folds to a plain broadcast ("0 + a" would need an add per call).
    static inline vec splat(T a) { return a - vec{}; }
};

constexpr int kRowBlock = CG2D_ROW_BLOCK;  // rows of C held in registers
constexpr int kVecPerRow = 2;              // vectors per row: 2*rows accumulators + 2 B vectors + 1 broadcast

// Columns of every tile are padded to one vector (16 floats, 8 doubles on AVX-512), so a tile of 9 positions
// costs one vector per row, not a full two-vector column block.
template <typename T>
inline int64_t pad_cols(int64_t n) {
    const int64_t w = Simd<T>::width;
    return (n + w - 1) / w * w;
}

// C[m][0:N] += sum_{k<K} A[m*a_rs + k*a_cs] * B[k*ldb + 0:N] for m < M, in register tiles of M x V vectors;
// N a multiple of V vectors.
template <typename T, int M, int V>
inline void micro_kernel(const T* A, int64_t a_rs, int64_t a_cs, const T* B, int64_t ldb, int64_t K, T* C,
                         int64_t ldc, int64_t N) {
    using S = Simd<T>;
    using Vec = typename S::vec;
    constexpr int W = S::width;
    for (int64_t n0 = 0; n0 < N; n0 += V * W) {
        Vec acc[M][V];
        for (int m = 0; m < M; ++m)
            for (int v = 0; v < V; ++v) acc[m][v] = S::load(C + m * ldc + n0 + v * W);
        const T* b = B + n0;
        for (int64_t k = 0; k < K; ++k, b += ldb) {
            Vec bv[V];
            for (int v = 0; v < V; ++v) bv[v] = S::load(b + v * W);
            for (int m = 0; m < M; ++m) {
                const Vec a = S::splat(A[m * a_rs + k * a_cs]);
                for (int v = 0; v < V; ++v) acc[m][v] += a * bv[v];
            }
        }
        for (int m = 0; m < M; ++m)
            for (int v = 0; v < V; ++v) S::store(C + m * ldc + n0 + v * W, acc[m][v]);
    }
}

// M rows of C over all N columns (N a multiple of the vector width): two-vector tiles, then one single-vector tile.
template <typename T, int M>
inline void row_panel(const T* A, int64_t a_rs, int64_t a_cs, const T* B, int64_t ldb, int64_t K, T* C,
                      int64_t ldc, int64_t N) {
    constexpr int W = Simd<T>::width;
    const int64_t wide = N / (kVecPerRow * W) * (kVecPerRow * W);
    if (wide > 0) micro_kernel<T, M, kVecPerRow>(A, a_rs, a_cs, B, ldb, K, C, ldc, wide);
    if (wide < N) micro_kernel<T, M, 1>(A, a_rs, a_cs, B + wide, ldb, K, C + wide, ldc, N - wide);
}

// The M % kRowBlock leftover rows: row_panel<T, rows> for rows = M, found by compile-time recursion.
template <typename T, int Rows>
inline void leftover_rows(int64_t M, const T* A, int64_t a_rs, int64_t a_cs, const T* B, int64_t ldb, int64_t K,
                          T* C, int64_t ldc, int64_t N) {
    if constexpr (Rows > 0) {
        if (M == Rows) return row_panel<T, Rows>(A, a_rs, a_cs, B, ldb, K, C, ldc, N);
        leftover_rows<T, Rows - 1>(M, A, a_rs, a_cs, B, ldb, K, C, ldc, N);
    }
}

// C[m][n] += sum_k A(m, k) B[k][n], A(m, k) = A[m*a_rs + k*a_cs]; N a multiple of the vector width. Every C
// element is summed over k in increasing order whatever the blocking.
template <typename T>
inline void gemm_acc(int64_t M, int64_t N, int64_t K, const T* A, int64_t a_rs, int64_t a_cs, const T* B,
                     int64_t ldb, T* C, int64_t ldc) {
    int64_t m = 0;
    for (; m + kRowBlock <= M; m += kRowBlock)
        row_panel<T, kRowBlock>(A + m * a_rs, a_rs, a_cs, B, ldb, K, C + m * ldc, ldc, N);
    leftover_rows<T, kRowBlock - 1>(M - m, A + m * a_rs, a_rs, a_cs, B, ldb, K, C + m * ldc, ldc, N);
}

// A run: a maximal piece of one output row of one image inside a tile. Within a run the patch value x_p moves
// along an input row with a fixed step, so every gather and scatter below is a strided loop over a run instead of
// per-element indirection.
struct Run {
    int64_t col, length;    // columns [col, col + length) of the tile
    int64_t image, oh, ow;  // the first column's image and output position
};

// Where patch position (i, j) of a run falls in the input: the row (or -1 outside the image), the column of the
// run's first element (may lie in the padding) and the run's elements [lo, hi) that fall inside the image.
struct PatchSpan {
    int64_t row, col, lo, hi;
};

inline PatchSpan patch_span(const Geometry& g, const Run& run, int i, int j) {
    const int64_t row = run.oh * g.stride_y - g.pad_h + i * g.dil_h;
    const int64_t col = run.ow * g.stride_x - g.pad_w + j * g.dil_w, step = g.stride_x;
    if (row < 0 || row >= g.height) return PatchSpan{-1, col, 0, 0};
    const int64_t lo = col >= 0 ? 0 : (-col + step - 1) / step;
    const int64_t hi = col <= g.width - 1 ? std::min(run.length, (g.width - 1 - col) / step + 1) : 0;
    return PatchSpan{row, col, std::min(lo, hi), hi};
}

// A tile of output positions [n0, n0 + count) of the flattened (batch, Ho, Wo) index, padded to `cols` columns
// (tiles run across images, so small feature maps still fill the vectors): its runs and, per patch position and
// run, the span (computed once per tile, shared by every channel).
struct Tile {
    int64_t n0 = 0, count = 0, cols = 0;
    std::vector<Run> runs;
    std::vector<PatchSpan> spans;  // [P][runs]

    void locate(const Geometry& g, int64_t start, int64_t n, int64_t padded) {
        n0 = start, count = n, cols = padded;
        runs.clear();
        const int64_t wo = g.out_w(), R = g.out_h() * wo;
        for (int64_t r = 0; r < count;) {
            const int64_t b = (n0 + r) / R, pos = (n0 + r) % R, oh = pos / wo, ow = pos % wo;
            const int64_t length = std::min(wo - ow, count - r);
            runs.push_back(Run{r, length, b, oh, ow});
            r += length;
        }
        spans.clear();
        for (int p = 0; p < g.patch(); ++p)
            for (const Run& run : runs) spans.push_back(patch_span(g, run, p / g.kernel_w, p % g.kernel_w));
    }
    const PatchSpan* spans_of(int p) const { return spans.data() + p * runs.size(); }
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

// Non-overlapping two-wide windows along rows (kernel width 2 = stride 2, no dilation, contiguous input rows:
// TaylorNet's CG(2,2,c,2,2)): both kernel columns of a row read one contiguous input segment.
inline bool column_pairs(const Geometry& g) {
    return g.kernel_w == 2 && g.stride_x == 2 && g.dil_w == 1 && g.stride_w == 1;
}

// The features of channel c (plane `xc` of image 0) at every position of the tile, into its rows of `feat` (0 in
// the padding and in the tile's padded columns).
template <typename T>
inline void build_features(const T* xc, const Geometry& g, const Tile& t, const Features& f, const Layout& l,
                           int64_t c, T* feat) {
    const int64_t n = t.cols, step = g.stride_x * g.stride_w;
    T* values = feat + l.row(0, c) * n;
    const bool two_columns = column_pairs(g);
    for (int i = 0; i < g.kernel_h; ++i) {
        for (size_t k = 0; k < t.runs.size(); ++k) {
            const Run& run = t.runs[k];
            const PatchSpan* s = t.spans_of(i * g.kernel_w) + k;  // s[j * runs]: column j of kernel row i
            const PatchSpan& s1 = s[two_columns ? t.runs.size() : 0];
            if (two_columns && s->row >= 0 && s->lo == 0 && s1.lo == 0 && s->hi == run.length && s1.hi == run.length) {
                // both columns from one contiguous input segment: de-interleave it in one vectorisable pass
                const T* src = xc + run.image * g.stride_b + s->row * g.stride_h + s->col;
                T* out0 = values + i * 2 * n + run.col;
                T* out1 = out0 + n;
                for (int64_t e = 0; e < run.length; ++e) {
                    out0[e] = src[2 * e];
                    out1[e] = src[2 * e + 1];
                }
                continue;
            }
            for (int j = 0; j < g.kernel_w; ++j, s += t.runs.size()) {
                T* out = values + (i * g.kernel_w + j) * n + run.col;
                std::fill(out, out + s->lo, T(0));
                if (s->hi > s->lo) {  // src: element lo's input value
                    const T* src = xc + run.image * g.stride_b + s->row * g.stride_h +
                                   (s->col + s->lo * g.stride_x) * g.stride_w;
                    if (step == 1)
                        std::copy(src, src + (s->hi - s->lo), out + s->lo);
                    else
                        for (int64_t e = 0; e < s->hi - s->lo; ++e) out[s->lo + e] = src[e * step];
                }
                std::fill(out + s->hi, out + run.length, T(0));
            }
        }
    }
    for (int p = 0; p < f.patch; ++p) std::fill(values + p * n + t.count, values + (p + 1) * n, T(0));
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

// dx_c[patch position p of column r] += dxp[p][r] over the tile: the adjoint of the gather in build_features
// (dx_c: channel c's plane of image 0 in the contiguous NCHW grad_x). Each dx element receives its terms in order
// of kernel row, then kernel column, then tile (whichever loop form runs), so the result does not depend on the
// thread count.
template <typename T>
inline void scatter_patch_gradient(const T* dxp, const Geometry& g, const Tile& t, T* dx_c) {
    const int64_t image_size = g.channels * g.height * g.width, step = g.stride_x, n = t.cols;
    const bool two_columns = column_pairs(g);
    for (int i = 0; i < g.kernel_h; ++i) {
        for (size_t k = 0; k < t.runs.size(); ++k) {
            const Run& run = t.runs[k];
            const PatchSpan* s = t.spans_of(i * g.kernel_w) + k;
            const PatchSpan& s1 = s[two_columns ? t.runs.size() : 0];
            if (two_columns && s->row >= 0 && s->lo == 0 && s1.lo == 0 && s->hi == run.length && s1.hi == run.length) {
                T* dst = dx_c + run.image * image_size + s->row * g.width + s->col;
                const T* in0 = dxp + i * 2 * n + run.col;
                const T* in1 = in0 + n;
                for (int64_t e = 0; e < run.length; ++e) {
                    dst[2 * e] += in0[e];
                    dst[2 * e + 1] += in1[e];
                }
                continue;
            }
            for (int j = 0; j < g.kernel_w; ++j, s += t.runs.size()) {
                if (s->hi <= s->lo) continue;
                T* dst = dx_c + run.image * image_size + s->row * g.width + s->col + s->lo * step;  // element lo
                const T* in = dxp + (i * g.kernel_w + j) * n + run.col + s->lo;
                if (step == 1)
                    for (int64_t e = 0; e < s->hi - s->lo; ++e) dst[e] += in[e];
                else
                    for (int64_t e = 0; e < s->hi - s->lo; ++e) dst[e * step] += in[e];
            }
        }
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
    // Channels per feature chunk: the chunk's features (chunk * F * cols values) around 128 KiB, in L2, so each
    // micro-kernel call runs over a long k range (its accumulators are loaded and stored once per call).
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(cg, (131072 / sizeof(T)) / (F * cols)));
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
            tile.locate(g, t * rt, std::min(rt, N - t * rt), cols);
            for (int64_t o = 0; o < no; ++o)
                std::fill_n(acc.data() + o * cols, cols, bias ? bias[grp * og + o0 + o] : T(0));
            for (int64_t c0 = 0; c0 < cg; c0 += chunk) {
                const Layout l = layout(f, std::min(chunk, cg - c0));
                for (int64_t c = 0; c < l.channels; ++c)
                    build_features(x + (grp * cg + c0 + c) * g.stride_c, g, tile, f, l, c, feat.data());
                for (int d = 0; d < 3; ++d) {
                    const int64_t per = l.per_channel[d];
                    if (per == 0) continue;
                    gemm_acc<T>(no, cols, l.channels * per, w.w[d] + ((grp * og + o0) * cg + c0) * per, cg * per, 1,
                                feat.data() + l.start(d) * cols, cols, acc.data(), cols);
                }
            }
            for (const Run& run : tile.runs) {
                T* y_run = y + (run.image * g.out_channels + grp * og + o0) * R + run.oh * g.out_w() + run.ow;
                for (int64_t o = 0; o < no; ++o)
                    std::copy_n(acc.data() + o * cols + run.col, run.length, y_run + o * R);
            }
        }
    }
}

// gy[o][r] = grad_y[image r][o][position r] (0 in padded columns) and its transpose gyt[r][o] (row length og_cols;
// columns >= og stay 0 from allocation), transposed in cache-sized blocks. grad_y points at the group's first
// output channel.
template <typename T>
inline void gather_grad(const T* grad_y, const Geometry& g, int64_t og, const Tile& t, T* gy, T* gyt,
                        int64_t og_cols) {
    const int64_t wo = g.out_w(), R = g.out_h() * wo;
    for (int64_t o = 0; o < og; ++o) {
        T* row = gy + o * t.cols;
        for (const Run& run : t.runs)
            std::copy_n(grad_y + (run.image * g.out_channels + o) * R + run.oh * wo + run.ow, run.length,
                        row + run.col);
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

// grad_w of order d for the task's channels: dW_d[grp*og + o][c0 + c][k] = dw[row(d, c) + k][o]. Both sides
// are contiguous along j = c*per + k (rows of dw, runs of grad_w), so the copy walks 16 outputs at a time:
// one cache line of dw per j, 16 sequential write streams.
template <typename T>
inline void store_weight_grad(const T* dw, int64_t og_cols, const Layout& l, int d, T* grad_wd, int64_t grp,
                              int64_t og, int64_t cg, int64_t c0) {
    const int64_t per = l.per_channel[d], n = l.channels * per, row_stride = cg * per;
    const T* src = dw + l.start(d) * og_cols;
    T* dst = grad_wd + (grp * og * cg + c0) * per;
    constexpr int64_t kBlock = 16;
    for (int64_t o0 = 0; o0 < og; o0 += kBlock) {
        const int64_t o1 = std::min(o0 + kBlock, og);
        for (int64_t j = 0; j < n; ++j)
            for (int64_t o = o0; o < o1; ++o) dst[o * row_stride + j] = src[j * og_cols + o];
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
            if (grad_x)  // the task's dx planes, every image
                for (int64_t b = 0; b < g.batch; ++b)
                    std::fill_n(grad_x + (b * g.channels + grp * cg + c0) * g.height * g.width,
                                l.channels * g.height * g.width, T(0));
            for (int64_t t = 0; t < tiles; ++t) {
                tile.locate(g, t * rt, std::min(rt, N - t * rt), cols);
                for (int64_t c = 0; c < l.channels; ++c)
                    build_features(x + (grp * cg + c0 + c) * g.stride_c, g, tile, f, l, c, feat.data());
                gather_grad(grad_y + grp * og * R, g, og, tile, gy.data(), gyt.data(), og_cols);
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
                    scatter_patch_gradient(dxp.data(), g, tile, grad_x + (grp * cg + c0 + c) * g.height * g.width);
                }
            }
            for (int d = 0; d < 3; ++d)
                if (l.per_channel[d] > 0) store_weight_grad(dw.data(), og_cols, l, d, grad_w.w[d], grp, og, cg, c0);
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
