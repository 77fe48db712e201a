// physkernels._C_cuda: the CUDA kernels. Imports on machines without a GPU; the runtime is linked statically.
#include <cuda_runtime_api.h>

#include "registry.h"

PYBIND11_MODULE(_C_cuda, m) {
    m.doc() = "physkernels CUDA kernels; functions take device pointers, shapes, strides and a cudaStream_t handle";
    m.def("device_count", [] {
        int n = 0;
        return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
    });
    m.def("runtime_version", [] {
        int v = 0;
        cudaRuntimeGetVersion(&v);
        return v;
    });
    physkernels::bindings::define_all(m);
}
