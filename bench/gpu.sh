#!/usr/bin/env bash
# One call on a lent GPU machine: build with nvcc, run the GPU-relevant tests, time every suite on the GPU.
# Usage (from the repo root, on the GPU machine): bash bench/gpu.sh [OUT_DIR]
# Writes OUT_DIR/{build.log,tests.log,bench.log} and bench/results/full_cuda.{json,md} (copied to OUT_DIR).
set -uo pipefail
out="${1:-${OUT:-bench/results/gpu-run}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PHYSKERNELS_CUDA=1 PHYSKERNELS_BUILD_JOBS=16
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m pip install -q --no-build-isolation --no-deps -e . >"$out/build.log" 2>&1 \
  || python3 setup.py build_ext --inplace >>"$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
python3 -c "import physkernels, json; print(json.dumps(physkernels.info(), indent=1, default=str))" | tee "$out/info.json"
# Triton and CUDA paths run for real here (no interpreter).
env -u TRITON_INTERPRET PYTHONPATH=$PWD python3 -m pytest -q -x tests 2>&1 | tee "$out/tests.log" | tail -30
PYTHONPATH=$PWD python3 -m physkernels.cli bench --device cuda --stem full_cuda 2>&1 | tee "$out/bench.log" | tail -80
cp bench/results/full_cuda.* "$out/" 2>/dev/null || true
