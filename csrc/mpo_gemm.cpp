// MPO batch-last GEMM micro-kernels (see mpo_gemm.h): runtime instruction-set dispatch.
#include "mpo_gemm.h"

#include <cstdint>
#include <cstring>

#include "cpu_isa.h"

#define MPO_GEMM_ISA isa_baseline
#define MPO_VBYTES 16
#define MPO_NN_ROWS 6
#define MPO_NT_ROWS 3
#include "mpo_gemm_kernel.inl"
#undef MPO_GEMM_ISA
#undef MPO_VBYTES
#undef MPO_NN_ROWS
#undef MPO_NT_ROWS

namespace physkernels::mpo_gemm {

#define MPO_GEMM_DECLARE(ISA)                                                                                     \
    namespace ISA {                                                                                               \
    template <typename T>                                                                                         \
    void gemm_nn_impl(const T*, std::int64_t, std::int64_t, const T*, std::int64_t, T*, std::int64_t,             \
                      std::int64_t, std::int64_t, std::int64_t);                                                  \
    template <typename T>                                                                                         \
    void gemm_nt_acc_impl(const T*, std::int64_t, std::int64_t, const T*, std::int64_t, std::int64_t, T*,         \
                          std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t);                 \
    }
MPO_GEMM_DECLARE(isa_avx2)
MPO_GEMM_DECLARE(isa_avx512)
#undef MPO_GEMM_DECLARE

const char* selected_isa() {
    static const char* isa = widest_isa("PHYSKERNELS_MPO_ISA");
    return isa;
}

namespace {
Isa isa() {
    static const Isa chosen = widest_isa_level("PHYSKERNELS_MPO_ISA");
    return chosen;
}
}  // namespace

template <typename T>
void gemm_nn(const T* a, std::int64_t a_row, std::int64_t a_col, const T* b, std::int64_t ldb, T* c,
             std::int64_t ldc, std::int64_t m, std::int64_t k, std::int64_t n) {
    switch (isa()) {
        case Isa::avx512: return isa_avx512::gemm_nn_impl<T>(a, a_row, a_col, b, ldb, c, ldc, m, k, n);
        case Isa::avx2: return isa_avx2::gemm_nn_impl<T>(a, a_row, a_col, b, ldb, c, ldc, m, k, n);
        default: return isa_baseline::gemm_nn_impl<T>(a, a_row, a_col, b, ldb, c, ldc, m, k, n);
    }
}

template <typename T>
void gemm_nt_acc(const T* d, std::int64_t ldd, std::int64_t d_step, const T* s, std::int64_t lds,
                 std::int64_t s_step, T* c, std::int64_t ldc, std::int64_t m, std::int64_t k, std::int64_t n,
                 std::int64_t count) {
    switch (isa()) {
        case Isa::avx512:
            return isa_avx512::gemm_nt_acc_impl<T>(d, ldd, d_step, s, lds, s_step, c, ldc, m, k, n, count);
        case Isa::avx2:
            return isa_avx2::gemm_nt_acc_impl<T>(d, ldd, d_step, s, lds, s_step, c, ldc, m, k, n, count);
        default: return isa_baseline::gemm_nt_acc_impl<T>(d, ldd, d_step, s, lds, s_step, c, ldc, m, k, n, count);
    }
}

#define MPO_GEMM_INSTANTIATE(T)                                                                                   \
    template void gemm_nn<T>(const T*, std::int64_t, std::int64_t, const T*, std::int64_t, T*, std::int64_t,      \
                             std::int64_t, std::int64_t, std::int64_t);                                          \
    template void gemm_nt_acc<T>(const T*, std::int64_t, std::int64_t, const T*, std::int64_t, std::int64_t, T*,  \
                                 std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t);
MPO_GEMM_INSTANTIATE(float)
MPO_GEMM_INSTANTIATE(double)
#undef MPO_GEMM_INSTANTIATE

}  // namespace physkernels::mpo_gemm
