// Merging adjacent MPO cores and projecting gradients back onto them. See mpo_merge.h for the math.
#include "mpo_merge.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "mpo_gemm.h"

namespace physkernels::mpo {
namespace {

CoreShape merge_shape(const CoreShape& p, const CoreShape& c) {
    return {p.left, p.in * c.in, p.out * c.out, c.right};
}

// M = merge(P, c), every element written. P's block is transposed first so that the micro-kernel reads A with
// contiguous columns: its short-row path (J D_r below one vector, e.g. a last core with J = D_r = 1) then
// accumulates in registers.
template <typename T>
void merge_two(const T* p, const CoreShape& ps, const T* c, const CoreShape& cs, T* m) {
    const std::int64_t row = cs.out * cs.right;  // one (j, e) row of c[d, i] and of an M block
    std::vector<T> p_t(ps.right * ps.out);         // P[a, pi]^T (D x PJ)
    for (std::int64_t a = 0; a < ps.left; ++a)
        for (std::int64_t pi = 0; pi < ps.in; ++pi) {
            const T* p_block = p + (a * ps.in + pi) * ps.out * ps.right;  // (PJ x D)
            for (std::int64_t pj = 0; pj < ps.out; ++pj)
                for (std::int64_t d = 0; d < ps.right; ++d) p_t[d * ps.out + pj] = p_block[pj * ps.right + d];
            for (std::int64_t i = 0; i < cs.in; ++i) {
                T* m_block = m + ((a * ps.in + pi) * cs.in + i) * ps.out * row;  // (PJ x J D_r)
                mpo_gemm::gemm_nn(p_t.data(), std::int64_t(1), ps.out, c + i * row, cs.in * row, m_block, row,
                                  ps.out, ps.right, row);
            }
        }
}

// dP (every element written) and dc (accumulated) from dM.
template <typename T>
void merge_two_backward(const T* p, const CoreShape& ps, const T* c, const CoreShape& cs, const T* dm, T* dp,
                        T* dc, std::vector<T>& work) {
    const std::int64_t row = cs.out * cs.right;
    std::fill(dp, dp + ps.numel(), T(0));
    work.resize(ps.right * row);
    for (std::int64_t a = 0; a < ps.left; ++a)
        for (std::int64_t pi = 0; pi < ps.in; ++pi) {
            const T* p_block = p + (a * ps.in + pi) * ps.out * ps.right;
            const T* dm_blocks = dm + (a * ps.in + pi) * cs.in * ps.out * row;  // i-th block at i * PJ * row
            // dP[a, pi] (PJ x D) = sum_i dM_block(i) (PJ x row) @ c[:, i] (D x row)^T
            mpo_gemm::gemm_nt_acc(dm_blocks, row, ps.out * row, c, cs.in * row, row, dp + (p_block - p), ps.right,
                                  ps.out, ps.right, row, cs.in);
            // dc[:, i] (D x row) += P[a, pi]^T (D x PJ) @ dM_block(i)
            for (std::int64_t i = 0; i < cs.in; ++i) {
                mpo_gemm::gemm_nn(p_block, std::int64_t(1), ps.right, dm_blocks + i * ps.out * row, row, work.data(),
                                  row, ps.right, ps.out, row);
                for (std::int64_t d = 0; d < ps.right; ++d) {
                    T* dst = dc + (d * cs.in + i) * row;
                    const T* src = work.data() + d * row;
                    for (std::int64_t t = 0; t < row; ++t) dst[t] += src[t];
                }
            }
        }
}

void check(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("mpo: " + what);
}

}  // namespace

std::vector<Step> ltr_steps(const std::vector<CoreShape>& merged) {
    std::vector<Step> steps;
    std::int64_t count = 1;
    for (std::size_t g = 0; g < merged.size(); ++g) {
        std::int64_t rest = 1;
        for (std::size_t h = g + 1; h < merged.size(); ++h) rest *= merged[h].in;
        const CoreShape& s = merged[g];
        steps.push_back({count, s.out * s.right, s.left * s.in, rest});
        count *= s.out;
    }
    return steps;
}

template <typename T>
MergedChain<T>::MergedChain(const std::vector<const T*>& cores, const std::vector<CoreShape>& shapes,
                            const std::vector<Group>& groups)
    : cores_(cores), shapes_(shapes), groups_(groups) {
    check(!cores.empty() && cores.size() == shapes.size(), "one shape per core, at least one core");
    for (std::size_t k = 0; k < shapes.size(); ++k) {
        const CoreShape& s = shapes[k];
        check(s.left >= 1 && s.in >= 1 && s.out >= 1 && s.right >= 1, "core dimensions must be >= 1");
        check(k + 1 == shapes.size() || s.right == shapes[k + 1].left, "bond mismatch between adjacent cores");
    }
    check(shapes.front().left == 1 && shapes.back().right == 1, "the outer bonds must be 1");
    std::int64_t next = 0;
    for (const Group& g : groups) {
        check(g[0] == next && g[1] > g[0], "groups must be contiguous, non-empty core ranges covering every core");
        next = g[1];
    }
    check(next == static_cast<std::int64_t>(cores.size()), "groups must cover every core");

    partials_.resize(groups.size());
    grad_buffers_.resize(groups.size());
    for (std::size_t g = 0; g < groups.size(); ++g) {
        const std::int64_t first = groups[g][0];
        const T* current = cores[first];
        CoreShape shape = shapes[first];
        for (std::int64_t k = first + 1; k < groups[g][1]; ++k) {
            const CoreShape merged = merge_shape(shape, shapes[k]);
            std::vector<T> out(merged.numel());
            merge_two(current, shape, cores[k], shapes[k], out.data());
            partials_[g].push_back(std::move(out));
            current = partials_[g].back().data();
            shape = merged;
        }
        mats_.push_back(current);
        merged_shapes_.push_back(shape);
    }
}

template <typename T>
std::int64_t MergedChain<T>::in_features() const {
    std::int64_t total = 1;
    for (const CoreShape& s : shapes_) total *= s.in;
    return total;
}

template <typename T>
std::int64_t MergedChain<T>::out_features() const {
    std::int64_t total = 1;
    for (const CoreShape& s : shapes_) total *= s.out;
    return total;
}

template <typename T>
std::vector<T*> MergedChain<T>::merged_grads(const std::vector<T*>& grad_cores) {
    check(grad_cores.size() == cores_.size(), "one gradient per core");
    std::vector<T*> out;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
        if (partials_[g].empty()) {
            out.push_back(grad_cores[groups_[g][0]]);
        } else {
            grad_buffers_[g].assign(merged_shapes_[g].numel(), T(0));
            out.push_back(grad_buffers_[g].data());
        }
    }
    return out;
}

template <typename T>
void MergedChain<T>::project(const std::vector<T*>& grad_cores) {
    std::vector<T> work, grad_partial;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
        if (partials_[g].empty()) continue;
        const std::int64_t first = groups_[g][0], last = groups_[g][1] - 1;
        std::vector<T> grad = std::move(grad_buffers_[g]);  // dL/dP_{m-1}, walked down to dL/dP_0 = dL/dcore_first
        for (std::int64_t k = last; k > first; --k) {
            const std::size_t j = static_cast<std::size_t>(k - first);  // P_j = merge(P_{j-1}, core_k)
            const T* left = j == 1 ? cores_[first] : partials_[g][j - 2].data();
            CoreShape left_shape = shapes_[first];
            for (std::int64_t q = first + 1; q < k; ++q) left_shape = merge_shape(left_shape, shapes_[q]);
            T* grad_core = grad_cores[k];
            std::fill(grad_core, grad_core + shapes_[k].numel(), T(0));
            T* grad_left = grad_cores[first];
            if (k - 1 != first) {
                grad_partial.resize(left_shape.numel());
                grad_left = grad_partial.data();
            }
            merge_two_backward(left, left_shape, cores_[k], shapes_[k], grad.data(), grad_left, grad_core, work);
            if (k - 1 != first) grad.swap(grad_partial);
        }
    }
}

template class MergedChain<float>;
template class MergedChain<double>;

}  // namespace physkernels::mpo
