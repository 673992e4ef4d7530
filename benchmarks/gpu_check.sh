#!/usr/bin/env bash
# One prepared GPU check (at most ~8 minutes on one H100/H200): the SPML step vs a plain
# cross-entropy step at 16 x 512^2 (ResNet-101, random weights), the chunked SegSort+ loss vs the
# naive dense form at N = 262,144 and P = 10,000, and segment sets at 16 x 128^2.
# Needs only torch on the device machine. Usage (from the repository root):
#   bash benchmarks/gpu_check.sh            # writes $OUT/gpu_check.json when $OUT is set
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python benchmarks/segsets.py --repeats 20 | tee /tmp/segsets.txt
python benchmarks/gpu_check.py "$@" | tee /tmp/gpu_check.txt
if [ -n "${OUT:-}" ]; then
  tail -n 1 /tmp/gpu_check.txt > "$OUT/gpu_check.json"
  tail -n 1 /tmp/segsets.txt > "$OUT/segsets.json"
fi
