// The CPU ensemble kernel body, compiled once per instruction set: nnqft.cpp (baseline x86-64 / any CPU),
// nnqft_avx2.cpp and nnqft_avx512.cpp (GCC target pragmas); nnqft.cpp picks one at run time. Include after
// defining NNQFT_ISA (the namespace) and after the standard headers; nnqft_rng.h functions have internal linkage
// on the host, so each copy is compiled for its own instruction set.
//
// Each network's parameters come from Philox inside the kernel (never an n_nets x width tensor); each task is a
// chunk of kNetsPerChunk networks of one bag whose partial sums are reduced in chunk order afterwards, so results
// do not depend on the thread count.
#include "nnqft_rng.h"

namespace physkernels::nnqft::NNQFT_ISA {
namespace {

constexpr int kNeuronBatch = 64;  // neurons drawn and evaluated together (vector-friendly SoA buffers)

// Evaluates networks of one ensemble; one instance per thread (it owns the neuron scratch buffers).
class NetworkEvaluator {
  public:
    explicit NetworkEvaluator(const EnsembleSpec& spec)
        : spec_(spec),
          d_(spec.d_in),
          p_(spec.n_points),
          w0_scale_(static_cast<float>(spec.sigma_w / std::sqrt(static_cast<double>(spec.d_in)))),
          w1_scale_(static_cast<float>(spec.sigma_w / std::sqrt(static_cast<double>(spec.width)))),
          b_scale_(static_cast<float>(spec.sigma_b)),
          key0_(static_cast<std::uint32_t>(spec.seed)),
          key1_(static_cast<std::uint32_t>(spec.seed >> 32)),
          x_(static_cast<size_t>(d_) * p_),
          shift_(p_, 0.0f),
          w1_(kNeuronBatch),
          b0_(kNeuronBatch),
          w0_(static_cast<size_t>(std::max(d_, 2)) * kNeuronBatch),
          pre_(kNeuronBatch) {
        for (int k = 0; k < p_; ++k) {
            double sq = 0.0;
            for (int i = 0; i < d_; ++i) {
                const double v = spec.points[static_cast<size_t>(k) * d_ + i];
                x_[static_cast<size_t>(i) * p_ + k] = static_cast<float>(v);
                sq += v * v;
            }
            // Gauss-net normaliser of Eq. 3.1: g = exp(W0 x + b0 - sigma_b^2 - sigma_w^2 |x|^2 / d_in).
            if (spec.activation == kGauss) {
                shift_[k] = static_cast<float>(spec.sigma_b * spec.sigma_b + spec.sigma_w * spec.sigma_w * sq / d_);
            }
        }
    }

    // f[k] = f_net(x_k) for every point.
    void evaluate(std::uint64_t net, double* f) {
        switch (spec_.activation) {
            case kGauss: return evaluate_with<kGauss>(net, f);
            case kErf: return evaluate_with<kErf>(net, f);
            default: return evaluate_with<kRelu>(net, f);
        }
    }

  private:
    template <int Act>
    void evaluate_with(std::uint64_t net, double* f) {
        std::fill(f, f + p_, 0.0);
        const std::uint32_t net_lo = static_cast<std::uint32_t>(net), net_hi = static_cast<std::uint32_t>(net >> 32);
        for (std::uint32_t j0 = 0; j0 < spec_.width; j0 += kNeuronBatch) {
            const int nb = static_cast<int>(std::min<std::uint32_t>(kNeuronBatch, spec_.width - j0));
            draw_neurons(j0, nb, net_lo, net_hi);
            for (int k = 0; k < p_; ++k) {
                const float shift = shift_[k];
#pragma omp simd
                for (int jj = 0; jj < nb; ++jj) pre_[jj] = b0_[jj] - shift;
                for (int i = 0; i < d_; ++i) {
                    const float xi = x_[static_cast<size_t>(i) * p_ + k];
                    const float* w0 = &w0_[static_cast<size_t>(i) * kNeuronBatch];
#pragma omp simd
                    for (int jj = 0; jj < nb; ++jj) pre_[jj] += w0[jj] * xi;
                }
#pragma omp simd
                for (int jj = 0; jj < nb; ++jj) pre_[jj] = w1_[jj] * activate<Act>(pre_[jj]);
                double s = 0.0;
#pragma omp simd reduction(+ : s)
                for (int jj = 0; jj < nb; ++jj) s += static_cast<double>(pre_[jj]);
                f[k] += s;
            }
        }
        const U4 r = philox4x32_10(U4{kBiasNeuron, 0u, net_lo, net_hi}, key0_, key1_);
        float z0, z1;
        box_muller(r.x, r.y, &z0, &z1);
        const double b1 = static_cast<double>(z0 * b_scale_);
        for (int k = 0; k < p_; ++k) f[k] += b1;
    }

    // Fills w1_, b0_, w0_ for neurons j0 .. j0 + nb - 1 of network (net_hi, net_lo).
    void draw_neurons(std::uint32_t j0, int nb, std::uint32_t net_lo, std::uint32_t net_hi) {
        float* w0_first = w0_.data();
        float* w0_second = w0_.data() + kNeuronBatch;  // a spare row when d_in = 1
#pragma omp simd
        for (int jj = 0; jj < nb; ++jj) {
            const U4 r = philox4x32_10(U4{j0 + jj, 0u, net_lo, net_hi}, key0_, key1_);
            float z0, z1, z2, z3;
            box_muller(r.x, r.y, &z0, &z1);
            box_muller(r.z, r.w, &z2, &z3);
            w1_[jj] = z0 * w1_scale_;
            b0_[jj] = z1 * b_scale_;
            w0_first[jj] = z2 * w0_scale_;
            w0_second[jj] = z3 * w0_scale_;
        }
        for (std::uint32_t t = 1; 4 * t - 2 < static_cast<std::uint32_t>(d_); ++t) {
            const int first = static_cast<int>(4 * t - 2);
            const int count = std::min(4, d_ - first);
            for (int jj = 0; jj < nb; ++jj) {
                const U4 r = philox4x32_10(U4{j0 + jj, t, net_lo, net_hi}, key0_, key1_);
                float z[4];
                box_muller(r.x, r.y, &z[0], &z[1]);
                box_muller(r.z, r.w, &z[2], &z[3]);
                for (int m = 0; m < count; ++m) w0_[static_cast<size_t>(first + m) * kNeuronBatch + jj] = z[m] * w0_scale_;
            }
        }
    }

    const EnsembleSpec& spec_;
    const int d_, p_;
    const float w0_scale_, w1_scale_, b_scale_;
    const std::uint32_t key0_, key1_;
    std::vector<float> x_, shift_;  // points stored [dim][point]
    std::vector<float> w1_, b0_, w0_, pre_;
};

void check_spec(const EnsembleSpec& spec) {
    if (spec.n_points < 1 || spec.d_in < 1 || spec.width < 1) {
        throw std::invalid_argument("nnqft: need n_points >= 1, d_in >= 1 and width >= 1");
    }
    if (spec.activation < kGauss || spec.activation > kRelu) throw std::invalid_argument("nnqft: unknown activation");
}

}  // namespace

void outputs_impl(const EnsembleSpec& spec, std::uint64_t first_net, std::int64_t n_nets, double* out,
                      int threads) {
    check_spec(spec);
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        NetworkEvaluator evaluator(spec);
#pragma omp for schedule(static)
        for (std::int64_t a = 0; a < n_nets; ++a) {
            evaluator.evaluate(first_net + static_cast<std::uint64_t>(a), out + a * spec.n_points);
        }
    }
}

void green_impl(const EnsembleSpec& spec, std::int64_t first_bag, std::int64_t n_bags, std::int64_t nets_per_bag,
                    const std::int32_t* parent, const std::int32_t* point, int n_combos, double* partial, double* out,
                    int threads) {
    check_spec(spec);
    for (int c = 0; c < n_combos; ++c) {
        if (parent[c] >= c || point[c] < 0 || point[c] >= spec.n_points) {
            throw std::invalid_argument("nnqft: combo table must list parents first and valid point indices");
        }
    }
    const std::int64_t n_chunks = (nets_per_bag + kNetsPerChunk - 1) / kNetsPerChunk;
    const std::int64_t n_tasks = n_bags * n_chunks;
    const int n_threads = resolve_threads(threads);
#pragma omp parallel num_threads(n_threads)
    {
        NetworkEvaluator evaluator(spec);
        std::vector<double> f(spec.n_points), prod(n_combos);
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t task = 0; task < n_tasks; ++task) {
            const std::int64_t bag = task / n_chunks, chunk = task % n_chunks;
            const std::int64_t begin = chunk * kNetsPerChunk, end = std::min(nets_per_bag, begin + kNetsPerChunk);
            double* acc = partial + task * n_combos;
            std::fill(acc, acc + n_combos, 0.0);
            const std::uint64_t base = static_cast<std::uint64_t>(first_bag + bag) * nets_per_bag;
            for (std::int64_t a = begin; a < end; ++a) {
                evaluator.evaluate(base + static_cast<std::uint64_t>(a), f.data());
                for (int c = 0; c < n_combos; ++c) {
                    const double v = f[point[c]] * (parent[c] < 0 ? 1.0 : prod[parent[c]]);
                    prod[c] = v;
                    acc[c] += v;
                }
            }
        }
    }
    // Fixed-order reduction over chunks: the result is the same for any thread count.
    const double inv = 1.0 / static_cast<double>(nets_per_bag);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (std::int64_t bc = 0; bc < n_bags * n_combos; ++bc) {
        const std::int64_t bag = bc / n_combos, c = bc % n_combos;
        double s = 0.0;
        for (std::int64_t chunk = 0; chunk < n_chunks; ++chunk) s += partial[(bag * n_chunks + chunk) * n_combos + c];
        out[bc] = s * inv;
    }
}

}  // namespace physkernels::nnqft::NNQFT_ISA
