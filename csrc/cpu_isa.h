// Runtime instruction-set selection for the kernels compiled several times (baseline x86-64, AVX2+FMA, AVX-512):
// portable wheels without -march=native, the widest code path the running CPU supports.
#pragma once

#include <cstdlib>
#include <string>

namespace physkernels {

// "avx512", "avx2" or "baseline": the widest instruction set this CPU runs, capped by the environment variable
// `cap_env` when it is set (baseline|avx2|avx512; e.g. to reproduce bits across machines: float rounding differs
// between instruction sets, never between thread counts).
inline const char* widest_isa(const char* cap_env) {
    const char* cap = std::getenv(cap_env);
    const std::string limit = cap ? cap : "avx512";
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (limit == "avx512" && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return "avx512";
    if ((limit == "avx512" || limit == "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "avx2";
#endif
    return "baseline";
}

enum class Isa { baseline, avx2, avx512 };

// widest_isa as an enum, for switch-based dispatch.
inline Isa widest_isa_level(const char* cap_env) {
    const std::string name = widest_isa(cap_env);
    return name == "avx512" ? Isa::avx512 : name == "avx2" ? Isa::avx2 : Isa::baseline;
}

}  // namespace physkernels
