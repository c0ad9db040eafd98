#!/usr/bin/env bash
# GPU check (issues 6 and 12): the rule's tests and the optimizer-step benchmark on CUDA.
#
#   bash benchmarks/gpu_check.sh                              # on a machine with a GPU
#   BIOPLASTIC_TEST_DEVICE=cpu bash benchmarks/gpu_check.sh   # the same steps on the CPU
#
# 1. sets up the virtual environment if PYTHON_BIN (default .venv/bin/python) is not a command
#    (scripts/setup.sh); PYTHON_BIN=python3 uses a Python that already has torch;
# 2. prints the device (nvidia-smi -L, and what torch sees); asked for CUDA without a GPU, it
#    stops here with "gpu_check: ..." on stderr and exit status 1;
# 3. runs benchmarks/optimizer_step.py on the device (every anchor: Adam() / foreach / fused,
#    SGD, BioRule defaults / noise / consolidated / fused=True, on MLPs of 1e5-1e7 parameters and
#    the conv net) and prints the fused BioRule step's ratio to torch.optim.Adam(fused=True) for
#    each model, and counts the kernel launches and host synchronisations of one step
#    (--profile; tables and figure under $GPU_CHECK_OUT, default runs/gpu_check);
# 4. runs benchmarks/gpu_resnet.py (ResNet-18, SplitCIFAR-100-format stream; needs avalanche-lib,
#    else it says so and counts as failed);
# 5. runs tests/test_on_device.py, test_optim.py, test_distributed.py and test_fuzz.py with
#    BIOPLASTIC_TEST_DEVICE set: test_distributed trains `bioplastic train --device cuda` as one
#    process and as 2 torchrun ranks sharing the GPU (gloo reduces CUDA tensors) and checks that
#    the ranks stay bit-identical; test_fuzz steps BioRule (its fast path) on CUDA tensors;
#    test_on_device dalifies a model on the GPU and trains it with BioRule;
#    test_optim does not read the variable and runs on the CPU.
#
# The benchmarks come before the tests so that a short lease of a GPU yields the numbers first.
# Each stage has its own time limit (seconds: GPU_CHECK_STEP_S 300, GPU_CHECK_RESNET_S 300,
# GPU_CHECK_TESTS_S 240); a stage that fails or runs out of time does not stop the next one, and
# the script exits 1 at the end, naming the stages that failed.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${BIOPLASTIC_TEST_DEVICE:-cuda}
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
PY=${PYTHON_BIN:-.venv/bin/python}
case "$DEVICE" in
  cuda|cpu) ;;
  *) echo "gpu_check: BIOPLASTIC_TEST_DEVICE must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;;
esac
start=$(date +%s)
failed=()
# stage NAME LIMIT_S COMMAND...: runs the command under `timeout`, remembering a failure
stage() {
  local name=$1 limit=$2
  shift 2
  timeout "$limit" "$@"
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "gpu_check: $name failed (exit $rc$([ "$rc" -eq 124 ] && echo ", over ${limit} s"))" >&2
    failed+=("$name")
  fi
  return "$rc"
}

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "== setting up (scripts/setup.sh)"
  bash scripts/setup.sh
  PY=.venv/bin/python
fi

echo "== device"
if [ "$DEVICE" = cuda ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: CUDA was asked for but there is no nvidia-smi (no GPU driver);" \
      "run with BIOPLASTIC_TEST_DEVICE=cpu for the CPU version" >&2
    exit 1
  fi
  nvidia-smi -L
fi
"$PY" - "$DEVICE" <<'PYEOF' || exit 1
import sys

import torch

device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        print(f"  cuda:{i} {torch.cuda.get_device_name(i)}")
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_check: CUDA was asked for but torch sees no GPU")
PYEOF

echo "== optimizer step on $DEVICE (ratios: step time / torch.optim.Adam() step time)"
mkdir -p "$OUT"
stage "optimizer step" "${GPU_CHECK_STEP_S:-300}" "$PY" benchmarks/optimizer_step.py \
  --device "$DEVICE" --repeats 30 --profile \
  --out "$OUT/optimizer_step_$DEVICE" --figure "$OUT/optimizer_step_scaling_$DEVICE.png" &&
"$PY" - "$OUT/optimizer_step_$DEVICE.json" <<'PYEOF'
import json
import sys

with open(sys.argv[1]) as f:
    results = json.load(f)
print("fused BioRule step / torch.optim.Adam(fused=True) step (GPU target <= 1.0):")
for model, rows in results["models"].items():
    if "bio-fused" in rows and "adam-fused" in rows:
        bio, adam = rows["bio-fused"]["median_ms"], rows["adam-fused"]["median_ms"]
        print(f"  {model}: {bio:.3f} ms / {adam:.3f} ms = {bio / adam:.2f}x")
PYEOF

if ! "$PY" -c "import avalanche" >/dev/null 2>&1; then
  echo "== benchmarks/gpu_resnet.py: skipped, $PY cannot import avalanche (pip install -e '.[avalanche]')"
  failed+=("gpu_resnet (no avalanche)")
elif [ -f benchmarks/gpu_resnet.py ]; then
  echo "== benchmarks/gpu_resnet.py on $DEVICE"
  stage "gpu_resnet" "${GPU_CHECK_RESNET_S:-300}" "$PY" benchmarks/gpu_resnet.py --device "$DEVICE" \
    $([ "$DEVICE" = cpu ] && echo --quick) --out "$OUT/gpu_resnet"
fi

echo "== tests on $DEVICE"
BIOPLASTIC_TEST_DEVICE=$DEVICE OMP_NUM_THREADS=1 stage "tests" "${GPU_CHECK_TESTS_S:-240}" \
  "$PY" -m pytest tests/test_on_device.py tests/test_optim.py tests/test_distributed.py tests/test_fuzz.py -q \
  -p no:cacheprovider

echo "== gpu_check done on $DEVICE in $(( $(date +%s) - start )) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "gpu_check: failed: ${failed[*]}" >&2
  exit 1
fi
