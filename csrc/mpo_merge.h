// Merging groups of adjacent MPO cores into one core each, and carrying a merged core's gradient back to its
// members (CPU, serial: the cores are small next to the chain the fused kernel then runs over the batch).
//
// A core (D_l, I, J, D_r) is row-major. Merging P (D_l, PI, PJ, D) with the next core c (D, I, J, D_r) gives
//
//     M[a, pi*I + i, pj*J + j, e] = sum_d P[a, pi, pj, d] c[d, i, j, e]
//
// (row-major merged indices, the left core's index most significant): per (a, pi, i) the (PJ x J D_r) block of M
// is P[a, pi] (PJ x D) @ c[:, i] (D x J D_r). Its backward:
//
//     dP[a, pi] = sum_i dM_block(a, pi, i) @ c[:, i]^T,      dc[:, i] += P[a, pi]^T @ dM_block(a, pi, i).
//
// A group of cores c_0..c_{m-1} merges left to right through the partial products P_1 .. P_{m-1} (= the merged
// core), which are kept for the backward.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "mpo.h"

namespace physkernels::mpo {

struct CoreShape {
    std::int64_t left, in, out, right;
    std::int64_t numel() const { return left * in * out * right; }
};

using Group = std::array<std::int64_t, 2>;  // cores [first, stop)

// The ltr chain steps (see mpo.h) over merged cores: count = prod J of the earlier groups, m = J D_r, k = D_l I,
// rest = prod I of the later groups.
std::vector<Step> ltr_steps(const std::vector<CoreShape>& merged);

template <typename T>
class MergedChain {
public:
    // Validates the shapes (bonds chain up, outer bonds 1) and the groups (contiguous, covering every core);
    // throws std::invalid_argument otherwise.
    MergedChain(const std::vector<const T*>& cores, const std::vector<CoreShape>& shapes,
                const std::vector<Group>& groups);

    // One merged core per group, row-major (D_l, I_g, J_g, D_r) = the (D_l I_g) x (J_g D_r) matrix A_g^T of its
    // chain step; a one-core group is the core itself.
    const std::vector<const T*>& mats() const { return mats_; }
    const std::vector<CoreShape>& merged_shapes() const { return merged_shapes_; }
    std::int64_t in_features() const;
    std::int64_t out_features() const;

    // Where the chain writes dL/d(merged core g): the core's own gradient for a one-core group, a buffer of this
    // object otherwise (project() then carries it to the members).
    std::vector<T*> merged_grads(const std::vector<T*>& grad_cores);
    // dL/dcore for every member of every merged group, from the buffers merged_grads() handed out.
    void project(const std::vector<T*>& grad_cores);

private:
    std::vector<const T*> cores_;
    std::vector<CoreShape> shapes_;
    std::vector<Group> groups_;
    std::vector<std::vector<std::vector<T>>> partials_;  // per group: P_1 .. P_{m-1}
    std::vector<std::vector<T>> grad_buffers_;          // per group: dL/d(merged core), empty for one-core groups
    std::vector<const T*> mats_;
    std::vector<CoreShape> merged_shapes_;
};

}  // namespace physkernels::mpo
