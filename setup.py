"""Build physkernels' compiled modules without torch.

* ``physkernels._C``: every ``csrc/*.cpp`` plus every ``python_bindings/*.cpp`` (one pybind11 module; each
  binding file registers its own submodule, see ``python_bindings/registry.h``). OpenMP when the compiler has it.
* ``physkernels._C_cuda``: every ``csrc/cuda/*.cu`` (compiled by nvcc for sm_80 and sm_90) plus every
  ``python_bindings/cuda/*.cpp``; built when nvcc is found, or when ``PHYSKERNELS_CUDA=1`` (then a missing nvcc
  is an error); ``PHYSKERNELS_CUDA=0`` skips it. The CUDA runtime is linked statically, so the module imports on
  machines without a GPU or a CUDA toolkit.

Environment knobs: ``PHYSKERNELS_NATIVE=1`` adds ``-march=native`` (off by default: wheels stay portable),
``PHYSKERNELS_BUILD_JOBS`` parallel compile jobs, ``PHYSKERNELS_CUDA_ARCHS`` (default ``80;90``), ``NVCC``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _rel(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _compiler_accepts(flag: str) -> bool:
    """True when the C++ compiler accepts ``flag`` (used to probe OpenMP)."""
    cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cpp")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        cmd = cxx.split() + [flag, src, "-o", os.path.join(tmp, "probe")]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def _host_flags() -> tuple[list[str], list[str], list[str]]:
    """Compile flags, link flags and the human-readable list recorded in ``physkernels.info()``."""
    cflags = ["-O3", "-ffp-contract=fast", "-fno-math-errno", "-Wall", "-Wno-unknown-pragmas"]
    lflags: list[str] = []
    if os.environ.get("PHYSKERNELS_NATIVE", "0") == "1":
        cflags.append("-march=native")
    if sys.platform != "darwin" and _compiler_accepts("-fopenmp"):
        cflags.append("-fopenmp")
        lflags.append("-fopenmp")
    return cflags, lflags, list(cflags)


CFLAGS, LFLAGS, RECORDED_FLAGS = _host_flags()
FLAGS_MACRO = ("PHYSKERNELS_COMPILE_FLAGS", '"' + " ".join(RECORDED_FLAGS) + '"')

ext_modules = [
    Pybind11Extension(
        "physkernels._C",
        sources=_rel("csrc/*.cpp") + _rel("python_bindings/*.cpp"),
        include_dirs=["csrc", "python_bindings"],
        cxx_std=17,
        extra_compile_args=CFLAGS,
        extra_link_args=LFLAGS,
        define_macros=[FLAGS_MACRO],
    )
]


def _find_nvcc() -> str | None:
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if nvcc is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
        nvcc = "/usr/local/cuda/bin/nvcc"
    return nvcc


def _cuda_wanted() -> tuple[bool, str | None]:
    mode = os.environ.get("PHYSKERNELS_CUDA", "auto")
    nvcc = _find_nvcc()
    if mode == "0":
        return False, None
    if mode == "1" and nvcc is None:
        raise RuntimeError("PHYSKERNELS_CUDA=1 but nvcc was not found (set NVCC or put nvcc on PATH)")
    return nvcc is not None and bool(_rel("csrc/cuda/*.cu")), nvcc


def _cuda_home(nvcc: str) -> str:
    """The toolkit folder holding include/cuda_runtime.h (CUDA_HOME, CUDA_PATH, nvcc's parent, /usr/local/cuda)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "/usr/local/cuda"]
    for home in candidates:
        if home and os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    raise RuntimeError(f"found nvcc at {nvcc} but no CUDA toolkit headers; set CUDA_HOME")


BUILD_CUDA, NVCC = _cuda_wanted()
if BUILD_CUDA:
    CUDA_HOME = _cuda_home(NVCC)
    ext_modules.append(
        Pybind11Extension(
            "physkernels._C_cuda",
            sources=_rel("python_bindings/cuda/*.cpp"),
            include_dirs=["csrc", "csrc/cuda", "python_bindings", os.path.join(CUDA_HOME, "include")],
            cxx_std=17,
            extra_compile_args=[c for c in CFLAGS if c != "-fopenmp"],
            define_macros=[("PHYSKERNELS_COMPILE_FLAGS", '"nvcc"')],
        )
    )


class BuildExt(build_ext):
    """pybind11's build_ext plus an nvcc step that turns ``csrc/cuda/*.cu`` into objects linked into _C_cuda."""

    def build_extension(self, ext):
        if ext.name.endswith("_C_cuda"):
            ext.extra_objects = self._compile_cuda()
            lib_dir = os.path.join(CUDA_HOME, "lib64")
            if not os.path.isdir(lib_dir):
                lib_dir = os.path.join(CUDA_HOME, "lib")
            ext.library_dirs = [lib_dir]
            ext.libraries = ["cudart_static", "rt", "dl", "pthread"]
        super().build_extension(ext)

    def _compile_cuda(self) -> list[str]:
        archs = os.environ.get("PHYSKERNELS_CUDA_ARCHS", "80;90").split(";")
        gencode = []
        for arch in archs:
            gencode += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
        gencode += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
        out_dir = os.path.join(self.build_temp, "cuda")
        os.makedirs(out_dir, exist_ok=True)
        objects = []
        for src in _rel("csrc/cuda/*.cu"):
            obj = os.path.join(out_dir, os.path.basename(src) + ".o")
            cmd = [NVCC, "-c", src, "-o", obj, "-O3", "-std=c++17", "-Xcompiler", "-fPIC",
                   "-Icsrc", "-Icsrc/cuda", "--expt-relaxed-constexpr", *gencode]
            print(" ".join(cmd), flush=True)
            subprocess.check_call(cmd, cwd=ROOT)
            objects.append(obj)
        return objects


ParallelCompile("PHYSKERNELS_BUILD_JOBS", default=2).install()

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
