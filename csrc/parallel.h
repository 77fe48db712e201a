// Thread control shared by the CPU kernels (OpenMP when available, serial otherwise).
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cstdint>

namespace physkernels {

inline bool has_openmp() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

inline int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Threads to use for a call: `requested` <= 0 means the library default.
inline int resolve_threads(int requested) { return requested > 0 ? requested : max_threads(); }

}  // namespace physkernels
