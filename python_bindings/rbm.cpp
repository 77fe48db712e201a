// physkernels._C.rbm: fused block-Gibbs sampling of a Bernoulli RBM (raw pointers from tensor.data_ptr()).
#include "rbm.h"
#include "registry.h"

// Everything of this file lives in its own namespace, so the binding files also compile as one translation
// unit (setup.py's unity build).
namespace physkernels::bindings::rbm_binding {

template <typename T>
void gibbs(std::uintptr_t v0, std::uintptr_t W, std::uintptr_t b, std::uintptr_t c, std::uintptr_t v_out,
           std::uintptr_t h_out, std::int64_t batch, std::int64_t nv, std::int64_t nh, std::int64_t k,
           std::uint64_t seed, std::uint64_t step_offset, int threads) {
    using physkernels::bindings::ptr;
    pybind11::gil_scoped_release release;
    physkernels::rbm::gibbs<T>(ptr<const T>(v0), ptr<const T>(W), ptr<const T>(b), ptr<const T>(c), ptr<T>(v_out),
                               ptr<T>(h_out), batch, nv, nh, k, seed, step_offset, threads);
}


PHYSKERNELS_SUBMODULE(rbm, m) {
    const char* doc = "gibbs_<dtype>(v0, W, b, c, v_out, h_out, batch, nv, nh, k, seed, step_offset, threads): "
                      "k block-Gibbs steps per chain; contiguous row-major buffers";
    m.def("gibbs_f32", &gibbs<float>, doc);
    m.def("gibbs_f64", &gibbs<double>, doc);
}

}  // namespace physkernels::bindings::rbm_binding
