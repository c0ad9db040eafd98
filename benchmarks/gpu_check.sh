#!/usr/bin/env bash
# GPU check (issue 6): the rule's tests and the optimizer-step benchmark on CUDA, in < 5 min.
#
#   bash benchmarks/gpu_check.sh                              # on a machine with a GPU
#   BIOPLASTIC_TEST_DEVICE=cpu bash benchmarks/gpu_check.sh   # the same steps on the CPU
#
# 1. sets up the virtual environment if there is none (scripts/setup.sh);
# 2. prints the device (nvidia-smi -L, and what torch sees);
# 3. runs tests/test_optim.py, tests/test_distributed.py and tests/test_fuzz.py with
#    BIOPLASTIC_TEST_DEVICE set: test_distributed trains `bioplastic train --device cuda` as one
#    process and as 2 torchrun ranks sharing the GPU (gloo reduces CUDA tensors) and checks that
#    the ranks stay bit-identical; test_fuzz steps BioRule (its foreach path) on CUDA tensors;
#    test_optim does not read the variable and runs on the CPU;
# 4. runs benchmarks/optimizer_step.py on the device and prints BioRule's step time with its
#    ratios to torch.optim.Adam and SGD (tables under $GPU_CHECK_OUT, default runs/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${BIOPLASTIC_TEST_DEVICE:-cuda}
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
PY=${PYTHON_BIN:-.venv/bin/python}
case "$DEVICE" in
  cuda|cpu) ;;
  *) echo "gpu_check: BIOPLASTIC_TEST_DEVICE must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;;
esac
start=$(date +%s)

if [ ! -x "$PY" ]; then
  echo "== setting up (scripts/setup.sh)"
  bash scripts/setup.sh
  PY=.venv/bin/python
fi

echo "== device"
if [ "$DEVICE" = cuda ]; then
  nvidia-smi -L
fi
"$PY" - "$DEVICE" <<'EOF'
import sys

import torch

device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        print(f"  cuda:{i} {torch.cuda.get_device_name(i)}")
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_check: CUDA was asked for but torch sees no GPU")
EOF

echo "== tests on $DEVICE"
BIOPLASTIC_TEST_DEVICE=$DEVICE OMP_NUM_THREADS=1 timeout 240 "$PY" -m pytest \
  tests/test_optim.py tests/test_distributed.py tests/test_fuzz.py -q -p no:cacheprovider

echo "== optimizer step on $DEVICE (ratios: BioRule time / Adam time, / SGD time)"
mkdir -p "$OUT"
timeout 150 "$PY" benchmarks/optimizer_step.py --device "$DEVICE" --repeats 50 \
  --out "$OUT/optimizer_step_$DEVICE"

echo "== gpu_check done on $DEVICE in $(( $(date +%s) - start )) s"
