// Self-registering pybind11 submodules.
//
// Each binding file adds one submodule to the extension without touching a shared list:
//
//     #include "registry.h"
//     PHYSKERNELS_SUBMODULE(mpo, m) {            // m is physkernels._C.mpo
//         m.def("forward_f32", &...);
//     }
//
// The module file (module.cpp / cuda/module.cpp) walks the registry once at import. Bindings take raw pointers as
// integers (tensor.data_ptr()), shapes, strides, a thread count and, for CUDA, a stream handle: nothing here
// includes or links torch, so one wheel serves every torch version.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace physkernels::bindings {

namespace py = pybind11;
using SubmoduleFn = void (*)(py::module_&);

inline std::vector<std::pair<const char*, SubmoduleFn>>& registry() {
    static std::vector<std::pair<const char*, SubmoduleFn>> entries;
    return entries;
}

struct Registrar {
    Registrar(const char* name, SubmoduleFn fn) { registry().emplace_back(name, fn); }
};

inline void define_all(py::module_& m) {
    for (auto& [name, fn] : registry()) {
        py::module_ sub = m.def_submodule(name);
        fn(sub);
    }
}

// A pointer passed from Python as an integer (tensor.data_ptr()).
template <typename T>
inline T* ptr(std::uintptr_t address) {
    return reinterpret_cast<T*>(address);
}

}  // namespace physkernels::bindings

#define PHYSKERNELS_SUBMODULE(name, m)                                                                       \
    static void physkernels_define_##name(pybind11::module_& m);                                           \
    static ::physkernels::bindings::Registrar physkernels_registrar_##name(#name, physkernels_define_##name); \
    static void physkernels_define_##name(pybind11::module_& m)
