#!/usr/bin/env bash
# Profile real workloads on this machine's NVIDIA GPU with `berth profile`: torchvision's
# ResNet-50 and a BERT-base built from a transformers config (random weights, synthetic data:
# nothing is downloaded), three batch sizes each, one GPU, fp32; then ResNet-50 with mixed
# precision. Every run appends a profile record (samples/s from the workload's own progress,
# W per device from NVML) to $OUT/records.csv and keeps NVML's samples in $OUT/samples.jsonl.
# About 8 minutes: 7 runs of SECONDS (default 45) plus start-up.
#
#   scripts/gpu-profile.sh [OUT]        (OUT: default profiles-<hostname>)
#
# Needs: torch (CUDA), torchvision, transformers, nvidia-ml-py, and berth importable (the
# checkout's src layout is put on PYTHONPATH when berth is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-profiles-$(hostname)}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-45}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"

if ! "$PYTHON" -c "import berth" 2>/dev/null; then
    # Without installing: the package root and the folders the layout maps into it.
    export PYTHONPATH="$PWD/build/__editable__.berth-0.1.0-py3-none-any:${PYTHONPATH:-}"
    "$PYTHON" -c "import berth" 2>/dev/null || {
        echo "error: berth is not importable: pip install -e . (or run from a built checkout)" >&2
        exit 2
    }
fi
"$PYTHON" - <<'PY'
import sys
import pynvml
import torch
import torchvision  # noqa: F401
import transformers  # noqa: F401
try:
    pynvml.nvmlInit()
except pynvml.NVMLError as exc:
    sys.exit(f"error: no NVIDIA driver here ({exc}): run this on a machine with an NVIDIA GPU")
print(f"GPU: {pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))}, "
      f"driver {pynvml.nvmlSystemGetDriverVersion()}, torch {torch.__version__}, "
      f"cuda {torch.version.cuda}", file=sys.stderr)
PY

run() {  # family batch precision [extra workload args]
    local family=$1 batch=$2 precision=$3
    shift 3
    echo "== $family batch $batch $precision" >&2
    "$PYTHON" -m berth profile --family "$family" --batch-size "$batch" --precision "$precision" \
        --out "$OUT/records.csv" --samples "$OUT/samples.jsonl" -- \
        "$PYTHON" examples/profile/train_step.py --model "$family" --batch-size "$batch" \
        --seconds "$SECONDS_PER_RUN" "$@"
}

for batch in 32 64 128; do run resnet50 "$batch" fp32; done
for batch in 16 32 64; do run bert "$batch" fp32; done
run resnet50 128 fp16 --amp
echo "records: $OUT/records.csv" >&2
