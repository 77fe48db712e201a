"""Build physkernels' compiled modules without torch.

* ``physkernels._C``: every ``csrc/*.cpp`` plus every ``python_bindings/*.cpp`` (one pybind11 module; each
  binding file registers its own submodule, see ``python_bindings/registry.h``). OpenMP when the compiler has it.
* ``physkernels._C_cuda``: every ``csrc/cuda/*.cu`` plus every ``python_bindings/cuda/*.cpp``. By default
  (``PHYSKERNELS_CUDA=auto``) it is built when nvcc is found *and* the machine has an NVIDIA GPU, for that GPU's
  architecture only (``nvidia-smi``'s compute capability), so a CPU-only machine gets the CPU module fast.
  ``PHYSKERNELS_CUDA=1`` always builds it (a missing nvcc is an error), for ``PHYSKERNELS_CUDA_ARCHS`` or, without
  a GPU, sm_80 and sm_90 (wheels for distribution; CI's compile check); ``PHYSKERNELS_CUDA=0`` skips it. The CUDA
  runtime is linked statically, so the module imports on machines without a GPU or a CUDA toolkit.

Environment knobs: ``PHYSKERNELS_NATIVE=1`` adds ``-march=native`` (off by default: wheels stay portable),
``PHYSKERNELS_BUILD_JOBS`` parallel compile jobs (C++ and nvcc), ``PHYSKERNELS_CUDA_ARCHS`` (e.g. ``80;90``),
``NVCC``.
"""

from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import os
import re
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
        depends=_rel("csrc/*.h") + _rel("csrc/*.inl") + _rel("python_bindings/*.h"),  # a header edit rebuilds
    )
]


def _find_nvcc() -> str | None:
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if nvcc is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
        nvcc = "/usr/local/cuda/bin/nvcc"
    return nvcc


def _local_gpu_archs() -> list[str]:
    """Compute capabilities of this machine's NVIDIA GPUs as nvcc arch numbers (``["90"]``); [] without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    archs = [line.strip().replace(".", "") for line in out.stdout.splitlines() if line.strip()]
    return sorted(set(a for a in archs if a.isdigit())) if out.returncode == 0 else []


def _cuda_wanted() -> tuple[bool, str | None, list[str]]:
    """(build _C_cuda?, nvcc, target archs) from PHYSKERNELS_CUDA (auto | 0 | 1) and the machine."""
    mode = os.environ.get("PHYSKERNELS_CUDA", "auto")
    if mode not in ("auto", "0", "1"):
        raise RuntimeError(f"PHYSKERNELS_CUDA must be auto, 0 or 1, got {mode!r}")
    nvcc = _find_nvcc()
    if mode == "0" or not _rel("csrc/cuda/*.cu"):
        return False, None, []
    if mode == "1" and nvcc is None:
        raise RuntimeError("PHYSKERNELS_CUDA=1 but nvcc was not found (set NVCC or put nvcc on PATH)")
    requested = [a for a in os.environ.get("PHYSKERNELS_CUDA_ARCHS", "").split(";") if a]
    local = _local_gpu_archs()
    if mode == "auto" and (nvcc is None or not local):
        if nvcc is not None:
            print("physkernels: nvcc found but no NVIDIA GPU: building the CPU module only "
                  "(PHYSKERNELS_CUDA=1 builds _C_cuda anyway)", flush=True)
        return False, nvcc, []
    return True, nvcc, requested or local or ["80", "90"]


def _cuda_home(nvcc: str) -> str:
    """The toolkit folder holding include/cuda_runtime.h (CUDA_HOME, CUDA_PATH, nvcc's parent, /usr/local/cuda)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "/usr/local/cuda"]
    for home in candidates:
        if home and os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    raise RuntimeError(f"found nvcc at {nvcc} but no CUDA toolkit headers; set CUDA_HOME")


BUILD_CUDA, NVCC, CUDA_ARCHS = _cuda_wanted()
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
            # the nvcc sources and every header: editing any of them rebuilds the module
            depends=_rel("csrc/cuda/*.cu") + _rel("csrc/cuda/*.cuh") + _rel("csrc/cuda/*.h") + _rel("csrc/*.h")
            + _rel("python_bindings/*.h"),
        )
    )


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
_INCLUDE_DIRS = ("csrc", "csrc/cuda", "python_bindings", "python_bindings/cuda")


def _local_headers(src: str, seen: set[str] | None = None) -> set[str]:
    """Every project header ``src`` includes, directly or through other project headers (``#include "..."``)."""
    seen = set() if seen is None else seen
    with open(src, encoding="utf-8", errors="replace") as f:
        names = _INCLUDE.findall(f.read())
    for name in names:
        for folder in (os.path.dirname(src), *(os.path.join(ROOT, d) for d in _INCLUDE_DIRS)):
            path = os.path.normpath(os.path.join(folder, name))
            if os.path.exists(path):
                if path not in seen:
                    seen.add(path)
                    _local_headers(path, seen)
                break
    return seen


def _needs_recompile(obj: str, src: str) -> bool:
    """Header-aware incremental builds: recompile when the object is missing or older than its source, any project
    header it includes, or setup.py (flags and macros live there)."""
    if not os.path.exists(obj):
        return True
    built = os.path.getmtime(obj)
    src = src if os.path.isabs(src) else os.path.join(ROOT, src)
    deps = {src, os.path.join(ROOT, "setup.py")} | _local_headers(src)
    return any(os.path.getmtime(d) > built for d in deps)


# Objects live in a persistent folder per interpreter and flag set, so editable reinstalls (README command 2)
# recompile only the sources whose inputs changed.
_FLAGS_KEY = hashlib.sha1(" ".join(CFLAGS + LFLAGS + CUDA_ARCHS + [str(BUILD_CUDA)]).encode()).hexdigest()[:10]
BUILD_TEMP = os.path.join(ROOT, "build", f"temp-{sys.implementation.cache_tag}-{_FLAGS_KEY}")


class BuildExt(build_ext):
    """pybind11's build_ext plus an nvcc step that turns ``csrc/cuda/*.cu`` into objects linked into _C_cuda;
    objects are kept in ``BUILD_TEMP`` and rebuilt only when out of date (:func:`_needs_recompile`)."""

    def finalize_options(self):
        super().finalize_options()
        self.build_temp = BUILD_TEMP

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
        """nvcc on every ``csrc/cuda/*.cu``, ``PHYSKERNELS_BUILD_JOBS`` at a time; returns the objects."""
        gencode = []
        for arch in CUDA_ARCHS:
            gencode += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
        gencode += ["-gencode", f"arch=compute_{CUDA_ARCHS[-1]},code=compute_{CUDA_ARCHS[-1]}"]
        out_dir = os.path.join(self.build_temp, "cuda")
        os.makedirs(out_dir, exist_ok=True)
        jobs = int(os.environ.get("PHYSKERNELS_BUILD_JOBS", "0")) or os.cpu_count() or 2

        def compile_one(src: str) -> str:
            obj = os.path.join(out_dir, os.path.basename(src) + ".o")
            if not _needs_recompile(obj, src):
                return obj
            cmd = [NVCC, "-c", src, "-o", obj, "-O3", "-std=c++17", "-Xcompiler", "-fPIC",
                   "-Icsrc", "-Icsrc/cuda", "--expt-relaxed-constexpr", *gencode]
            print(" ".join(cmd), flush=True)
            subprocess.check_call(cmd, cwd=ROOT)
            return obj

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(compile_one, _rel("csrc/cuda/*.cu")))


ParallelCompile("PHYSKERNELS_BUILD_JOBS", default=0, needs_recompile=_needs_recompile).install()  # 0: a job per CPU

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
