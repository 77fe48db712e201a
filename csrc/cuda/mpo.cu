// Fused MPO chain kernels (CUDA). See mpo.cuh; the math is csrc/mpo.h's.
#include "check.cuh"
#include "mpo.cuh"

namespace physkernels::cuda::mpo {
namespace {

constexpr int kThreads = 256;

struct StepInfo {
    long long count, m, k, rest, offset;
};

__device__ inline StepInfo read_step(const long long* table, int s) {
    return {table[5 * s], table[5 * s + 1], table[5 * s + 2], table[5 * s + 3], table[5 * s + 4]};
}

// dst[f * tile + t] = src[(b0 + t) * features + f], zero past the batch
template <typename T>
__device__ void load_tile(const T* src, T* dst, long long b0, long long batch, long long features, int tile) {
    for (long long idx = threadIdx.x; idx < features * tile; idx += blockDim.x) {
        const long long f = idx / tile, t = idx % tile;
        dst[idx] = (b0 + t < batch) ? src[(b0 + t) * features + f] : T(0);
    }
}

template <typename T>
__device__ void store_tile(const T* src, T* dst, long long b0, long long batch, long long features, int tile) {
    for (long long idx = threadIdx.x; idx < features * tile; idx += blockDim.x) {
        const long long t = idx / features, f = idx % features;
        if (b0 + t < batch) dst[(b0 + t) * features + f] = src[f * tile + t];
    }
}

// out[c] (m x n) = A (m x k) @ in[c] (k x n), one output element per thread iteration
template <typename T>
__device__ void apply_step(const T* a, const StepInfo& s, int tile, const T* in, T* out) {
    const long long n = s.rest * tile, per_block = s.m * n;
    for (long long idx = threadIdx.x; idx < s.count * per_block; idx += blockDim.x) {
        const long long c = idx / per_block, r = idx % per_block, i = r / n, j = r % n;
        const T* col = in + c * s.k * n + j;
        T acc = T(0);
        for (long long p = 0; p < s.k; ++p) acc += a[i * s.k + p] * col[p * n];
        out[idx] = acc;
    }
}

template <typename T>
__global__ void forward_kernel(const T* x, T* y, const T* mats, const long long* table, int n_steps,
                               long long batch, long long in_features, long long out_features, long long half,
                               int tile, T* scratch, bool use_shared) {
    extern __shared__ unsigned char shared_raw[];
    T* slot = use_shared ? reinterpret_cast<T*>(shared_raw) : scratch + blockIdx.x * 2 * half;
    const long long b0 = static_cast<long long>(blockIdx.x) * tile;
    load_tile(x, slot, b0, batch, in_features, tile);
    __syncthreads();
    for (int s = 0; s < n_steps; ++s) {
        const StepInfo st = read_step(table, s);
        apply_step(mats + st.offset, st, tile, slot + (s % 2) * half, slot + ((s + 1) % 2) * half);
        __syncthreads();
    }
    store_tile(slot + (n_steps % 2) * half, y, b0, batch, out_features, tile);
}

template <typename T>
__global__ void backward_kernel(const T* grad, const T* x, T* grad_x, const T* mats, const long long* table,
                                int n_steps, long long batch, long long in_features, long long out_features,
                                long long half, long long state_total, long long mat_total, int tile, T* scratch,
                                T* partials) {
    T* states = scratch + blockIdx.x * (state_total + 2 * half);
    T* ping = states + state_total;
    T* pong = ping + half;
    T* partial = partials + blockIdx.x * mat_total;
    const long long b0 = static_cast<long long>(blockIdx.x) * tile;
    // forward, keeping each step's input state (states are laid out step after step)
    load_tile(x, states, b0, batch, in_features, tile);
    __syncthreads();
    long long offset = 0;
    for (int s = 0; s + 1 < n_steps; ++s) {
        const StepInfo st = read_step(table, s);
        const long long size = st.count * st.k * st.rest * tile;
        apply_step(mats + st.offset, st, tile, states + offset, states + offset + size);
        offset += size;
        __syncthreads();
    }
    load_tile(grad, ping, b0, batch, out_features, tile);
    __syncthreads();
    long long mat_offset = mat_total;
    for (int s = n_steps - 1; s >= 0; --s) {
        const StepInfo st = read_step(table, s);
        const long long n = st.rest * tile;
        const T* in = states + offset;
        const T* a = mats + st.offset;
        mat_offset -= st.m * st.k;
        // partial dA = sum_c dOut[c] @ in[c]^T
        for (long long e = threadIdx.x; e < st.m * st.k; e += blockDim.x) {
            const long long i = e / st.k, p = e % st.k;
            T acc = T(0);
            for (long long c = 0; c < st.count; ++c)
                for (long long j = 0; j < n; ++j) acc += ping[(c * st.m + i) * n + j] * in[(c * st.k + p) * n + j];
            partial[mat_offset + e] = acc;
        }
        // dIn[c] = A^T @ dOut[c]
        for (long long idx = threadIdx.x; idx < st.count * st.k * n; idx += blockDim.x) {
            const long long c = idx / (st.k * n), r = idx % (st.k * n), p = r / n, j = r % n;
            T acc = T(0);
            for (long long i = 0; i < st.m; ++i) acc += a[i * st.k + p] * ping[(c * st.m + i) * n + j];
            pong[idx] = acc;
        }
        __syncthreads();
        T* tmp = ping;
        ping = pong;
        pong = tmp;
        if (s > 0) offset -= read_step(table, s - 1).count * read_step(table, s - 1).k * read_step(table, s - 1).rest * tile;
    }
    store_tile(ping, grad_x, b0, batch, in_features, tile);
}

// grad_mats[e] = sum over tiles (in tile order) of partials[t][e]
template <typename T>
__global__ void reduce_kernel(const T* partials, T* grad_mats, long long n_tiles, long long mat_total) {
    const long long e = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= mat_total) return;
    T acc = T(0);
    for (long long t = 0; t < n_tiles; ++t) acc += partials[t * mat_total + e];
    grad_mats[e] = acc;
}

}  // namespace

template <typename T>
void chain_forward(const T* x, T* y, const T* mats, const long long* table, int n_steps, long long batch,
                   long long in_features, long long out_features, long long half, int tile, T* scratch,
                   bool use_shared, cudaStream_t stream) {
    const long long n_tiles = (batch + tile - 1) / tile;
    const size_t shared = use_shared ? 2 * half * sizeof(T) : 0;
    forward_kernel<T><<<static_cast<unsigned>(n_tiles), kThreads, shared, stream>>>(
        x, y, mats, table, n_steps, batch, in_features, out_features, half, tile, scratch, use_shared);
    check(cudaGetLastError(), "mpo chain_forward launch");
}

template <typename T>
void chain_backward(const T* grad, const T* x, T* grad_x, const T* mats, T* grad_mats, const long long* table,
                    int n_steps, long long batch, long long in_features, long long out_features, long long half,
                    long long state_total, long long mat_total, int tile, T* scratch, T* partials,
                    cudaStream_t stream) {
    const long long n_tiles = (batch + tile - 1) / tile;
    backward_kernel<T><<<static_cast<unsigned>(n_tiles), kThreads, 0, stream>>>(
        grad, x, grad_x, mats, table, n_steps, batch, in_features, out_features, half, state_total, mat_total,
        tile, scratch, partials);
    check(cudaGetLastError(), "mpo chain_backward launch");
    reduce_kernel<T><<<ceil_div(mat_total, kThreads), kThreads, 0, stream>>>(partials, grad_mats, n_tiles,
                                                                              mat_total);
    check(cudaGetLastError(), "mpo gradient reduction launch");
}

template void chain_forward<float>(const float*, float*, const float*, const long long*, int, long long, long long,
                                   long long, long long, int, float*, bool, cudaStream_t);
template void chain_forward<double>(const double*, double*, const double*, const long long*, int, long long,
                                    long long, long long, long long, int, double*, bool, cudaStream_t);
template void chain_backward<float>(const float*, const float*, float*, const float*, float*, const long long*, int,
                                    long long, long long, long long, long long, long long, long long, int, float*,
                                    float*, cudaStream_t);
template void chain_backward<double>(const double*, const double*, double*, const double*, double*,
                                     const long long*, int, long long, long long, long long, long long, long long,
                                     long long, int, double*, double*, cudaStream_t);

}  // namespace physkernels::cuda::mpo
