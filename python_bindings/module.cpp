// physkernels._C: the CPU kernels. Submodules are registered by the other files in this folder.
#include "registry.h"
#include "parallel.h"

#ifndef PHYSKERNELS_COMPILE_FLAGS
#define PHYSKERNELS_COMPILE_FLAGS ""
#endif

PYBIND11_MODULE(_C, m) {
    m.doc() = "physkernels CPU kernels (C++/OpenMP); functions take raw data pointers, shapes and strides";
    m.def("build_info", [] {
        pybind11::dict info;
        info["compile_flags"] = PHYSKERNELS_COMPILE_FLAGS;
        info["openmp"] = physkernels::has_openmp();
        info["max_threads"] = physkernels::max_threads();
#if defined(__clang__)
        info["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
        info["compiler"] = "gcc " __VERSION__;
#else
        info["compiler"] = "unknown";
#endif
        return info;
    });
    m.def("get_num_threads", &physkernels::max_threads);
    physkernels::bindings::define_all(m);
}
