#!/usr/bin/env bash
# The CUDA checks in one go, from the repository root of a machine with a GPU, torch, nvcc and ninja:
#
#   OUT=/tmp/gpu_check bash bench/gpu_check.sh
#
# Uses the installed splatrefine and gsplat (`pip install -e ".[gpu]"`). On a machine without
# network where they are not installed, first `pip download --no-deps gsplat==1.5.3 -d .whl` where
# pip reaches PyPI and bring .whl/ along: the script then installs splatrefine and that wheel into
# /tmp/site (no dependencies: the machine's own torch, numba, OpenCV... are used). It compiles
# gsplat's CUDA kernels for the GPU it finds (on first import), runs the gpu-marked tests (forward
# and gradient parity with the CPU backend, a dual-gs fit on CUDA against the same fit on the CPU,
# a resume on CUDA, BiSeNet on CUDA), `refine --demo --device cuda` (timed), bench/raster_cuda.py,
# and then as much of the fast test loop as the time limit leaves, with device "auto" now meaning
# CUDA. Everything goes to $OUT/log.txt; the demo's numbers to $OUT.
set -u
OUT=${OUT:-/tmp/gpu_check}
LIMIT=${LIMIT:-560}  # seconds this script may take in all
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE MAX_JOBS=${MAX_JOBS:-16}
step() { echo "== $(date +%T) [${SECONDS}s] $*"; }
{
  step machine
  nvidia-smi -L
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nvcc --version | tail -n 2
  cap=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  export TORCH_CUDA_ARCH_LIST=$cap

  if python3 -c "import splatrefine, gsplat" 2>/dev/null; then
    step "using the installed splatrefine and gsplat"
  else
    step "install splatrefine (and a carried .whl/gsplat-*.whl) into /tmp/site"
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site \
      $(ls .whl/gsplat-*.whl 2>/dev/null) . || exit 1
    export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
  fi

  step "compile gsplat for sm_$cap"
  timeout 420 python3 -c "
import time; t = time.time()
from gsplat.cuda._backend import _C
print('gsplat kernels', 'loaded' if _C is not None else 'MISSING', 'in %.0f s' % (time.time() - t))"

  step "gpu-marked tests"
  timeout 200 python3 -m pytest -p no:cacheprovider -q -rA -s -m gpu \
    tests/test_splat.py tests/test_dual_gs.py tests/test_parsers_bisenet.py 2>&1 | grep -v "^$"

  step "refine --demo --device cuda"
  t0=$SECONDS
  timeout 240 splatrefine refine --demo --device cuda -o /tmp/demo_cuda --quiet
  echo "demo exit $? wall $((SECONDS - t0)) s"
  python3 -c "import json; m = json.load(open('/tmp/demo_cuda/metrics.json')); print(json.dumps(m)[:1500])"
  tar -czf "$OUT/demo_cuda.tgz" -C /tmp/demo_cuda metrics.json run.json stages.json report 2>/dev/null

  step "rasterizer: gsplat against the CPU backend"
  timeout 120 python3 bench/raster_cuda.py --cases 20000x256x22 100000x512x22 --out "$OUT/raster_cuda.json"

  left=$((LIMIT - SECONDS - 15))
  step "fast test loop on CUDA (device auto), ${left}s at most"
  if [ "$left" -gt 30 ]; then
    timeout "$left" python3 -m pytest -p no:cacheprovider -q -m "not slow" --maxfail=20 --ignore=tests/test_packaging.py \
      2>&1 | tail -n 40
  fi
  step done
} 2>&1 | tee "$OUT/log.txt"
