// The NN-QFT CPU ensemble kernel compiled for AVX2 (selected at run time by nnqft.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "nnqft.h"
#include "parallel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif
#define NNQFT_ISA isa_avx2
#include "nnqft_kernel.inl"
