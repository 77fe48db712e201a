#!/usr/bin/env bash
# Everything GPU-side on a lent GPU machine: build with nvcc, test the GPU backends for real, time every suite on
# the GPU. Usage (repo root, on the GPU machine): bash bench/gpu.sh [STAGES] [OUT_DIR]
#   STAGES (comma-separated, default gpu,sanitizer,models,bench,suite):
#     gpu        pytest -m gpu: the CUDA cases of the op tests' device axis and the GPU-only tests (CUDA and Triton
#                kernels on CUDA tensors against the references)
#     sanitizer  the small-size GPU tests of every op kernel once under compute-sanitizer memcheck, and the CUDA
#                kernels that use shared memory under racecheck
#     models     bench/model_steps.py --device cuda: a training step of every MPO-Net / TaylorNet against its
#                dense twin, kernels per step, CUDA-graph capture -> bench/results/models_cuda.{json,md}
#     planner    bench/mpo_plans.py --autotuned --device cuda: the measured MPO plan pick against the fastest of its
#                candidates -> bench/results/mpo_autotune_cuda.{json,md}
#     bench      `physkernels bench --device cuda`, one suite at a time (GPU_SH_SUITES picks them)
#                -> bench/results/full_cuda_<suite>.{json,md}
#     suite      the rest of the test suite (8 processes with pytest-xdist)
# Logs land in OUT_DIR (default $OUT, else bench/results/gpu-run), the results also as OUT_DIR/results.tgz.
# Each stage has a time limit and all together end within GPU_SH_SECONDS (570) of the start. Wheels in .whl/
# (e.g. tensorly-torch for the peer column) are installed into /tmp/site first.
set -uo pipefail
stages=",${1:-gpu,sanitizer,models,planner,bench,suite},"
out="${2:-${OUT:-bench/results/gpu-run}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PHYSKERNELS_CUDA=1 PHYSKERNELS_BUILD_JOBS=16
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
start=$(date +%s)
deadline=$(( start + ${GPU_SH_SECONDS:-570} ))  # the whole call; each stage gets at most what is left
left() { local l=$(( deadline - $(date +%s) )); (( l > $1 )) && echo $1 || echo $(( l > 1 ? l : 1 )); }
python3 setup.py build_ext --inplace >"$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
python3 -c "import physkernels, json; print(json.dumps(physkernels.info(), indent=1, default=str))" | tee "$out/info.json"
status=0
unset TRITON_INTERPRET  # Triton and CUDA run for real here
if [[ "$stages" == *,gpu,* ]]; then
  timeout $(left 240) python3 -m pytest -q -rs -m gpu tests 2>&1 | tee "$out/gpu_tests.log" | tail -40 || status=1
fi
if [[ "$stages" == *,sanitizer,* ]]; then
  small="kernels_span_several_blocks_on_every_device or (matches_reference_on_every_device and cuda)"
  for tool in memcheck racecheck; do
    files="tests/test_cg2d.py tests/test_taylor.py tests/test_mpo_op.py"
    [[ $tool == racecheck ]] && files="tests/test_mpo_op.py tests/test_cg2d.py"  # the shared-memory kernels
    timeout $(left 90) compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest -q -x -m gpu \
        -p no:cacheprovider $files -k "$small" 2>&1 | tee "$out/sanitizer_$tool.log" | tail -15 || status=1
  done
fi
if [[ "$stages" == *,models,* ]]; then
  timeout $(left 200) python3 bench/model_steps.py --device cuda --out bench/results 2>&1 \
    | tee "$out/models.log" | tail -30 || status=1
fi
if [[ "$stages" == *,planner,* ]]; then
  timeout $(left 90) python3 bench/mpo_plans.py --autotuned --device cuda --batches 1,32,256,4096 --top 12 \
      --out bench/results 2>&1 | tee "$out/planner.log" | tail -40 || status=1
fi
if [[ "$stages" == *,bench,* ]]; then
  for suite in ${GPU_SH_SUITES:-mpo cg2d taylor nnqft ising rbm}; do
    timeout $(left 240) python3 -m physkernels.cli bench --device cuda --suite $suite --out bench/results \
        --stem full_cuda_$suite 2>&1 \
      | tee -a "$out/bench.log" | tail -40 || status=1
  done
fi
if [[ "$stages" == *,suite,* ]]; then
  parallel=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8")  # pytest-xdist when the machine has it
  timeout $(left 200) python3 -m pytest -q $parallel -p no:cacheprovider tests -m "not gpu" 2>&1 \
    | tee "$out/tests.log" | tail -25 || status=1
fi
tar czf "$out/results.tgz" bench/results/full_cuda_* bench/results/models_cuda.* bench/results/mpo_autotune_cuda.* \
  2>/dev/null
exit $status
