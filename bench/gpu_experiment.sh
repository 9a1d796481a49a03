#!/usr/bin/env bash
# The extreme-pose experiment at cpu.yaml's scale on one CUDA machine, timed:
#
#   OUT=/tmp/gpu_experiment WORKERS=8 bash bench/gpu_experiment.sh
#   EXTRA="--set targets.0.variants=[refined,corrected]" bash bench/gpu_experiment.sh   # fewer stages
#
# Installs splatrefine and gsplat like bench/gpu_check.sh (a carried .whl/gsplat-*.whl, no
# dependencies: the machine's own torch, numba, OpenCV... are used), compiles gsplat's kernels for
# the GPU it finds, then runs `splatrefine experiment -c examples/extreme_pose/cpu.yaml --device
# cuda` with WORKERS stage processes sharing the GPU (cpu.yaml's `workers: auto` means one on CUDA).
# The U-Net target is skipped where segmentation-models-pytorch is not installed (the run says so).
# Everything goes to $OUT/log.txt; results.md / results.json / experiment.json to $OUT.
set -u
OUT=${OUT:-/tmp/gpu_experiment}
LIMIT=${LIMIT:-560}      # seconds this script may take in all
WORKERS=${WORKERS:-8}
EXTRA=${EXTRA:-}         # more experiment options, e.g. --set ...
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE MAX_JOBS=${MAX_JOBS:-16}
step() { echo "== $(date +%T) [${SECONDS}s] $*"; }
{
  step machine
  nvidia-smi -L
  echo "cpus $(nproc)"
  export TORCH_CUDA_ARCH_LIST=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  if ! python3 -c "import splatrefine, gsplat" 2>/dev/null; then
    step "install splatrefine (and a carried .whl/gsplat-*.whl) into /tmp/site"
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site \
      $(ls .whl/gsplat-*.whl 2>/dev/null) . || exit 1
    export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
  fi
  step "compile gsplat"
  timeout 300 python3 -c "from gsplat.cuda._backend import _C; print('gsplat kernels', _C is not None)"

  step "experiment (cpu.yaml, --device cuda, $WORKERS workers)"
  t0=$SECONDS
  timeout $((LIMIT - SECONDS - 20)) /usr/bin/time -v splatrefine experiment /tmp/gpu_exp \
    -c examples/extreme_pose/cpu.yaml --device cuda --set workers=$WORKERS $EXTRA 2>&1 \
    | grep -v "^\s*$" | tail -n 120
  echo "experiment wall $((SECONDS - t0)) s"
  cp /tmp/gpu_exp/results.md /tmp/gpu_exp/results.json /tmp/gpu_exp/experiment.json "$OUT/" 2>/dev/null
  step done
} 2>&1 | tee "$OUT/log.txt"
