#!/usr/bin/env bash
# One prepared GPU check (at most ~8 minutes on one H100/H200): the SPML step vs a plain
# cross-entropy step at 16 x 512^2 (ResNet-101, random weights), the chunked SegSort+ loss vs the
# naive dense form at N = 262,144 and P = 10,000, segment sets at 16 x 128^2, pseudo-label
# throughput (random walk + dense CRF) at 512^2, each loss term alone at the step's shape
# (loss_terms.py), and the CUDA tests (loss, random walk, CRF against their references). Needs only
# torch, numpy, pillow, pyarrow and pytest on the device machine.
# Usage (from the repository root):
#   bash benchmarks/gpu_check.sh            # writes $OUT/gpu_check.json, segsets.json, loss_terms.json,
#                                           # gpu_tests.txt when $OUT is set
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" benchmarks/segsets.py --repeats 20 | tee /tmp/segsets.txt
"$PY" benchmarks/gpu_check.py "$@" | tee /tmp/gpu_check.txt
# each SegSort+ term alone at the step's shape (O: every pixel against every segment), seconds
"$PY" benchmarks/loss_terms.py --repeats 5 | tee /tmp/loss_terms.txt
# the fused Triton kernels of the loss (opt-in in training, SPML_FUSED=1), timed the same way side by
# side (GPU_CHECK_FUSED=0 skips them); a failure there (no Triton, a compile error) keeps the rest
if [ "${GPU_CHECK_FUSED:-1}" = 1 ]; then
  { SPML_FUSED=1 "$PY" benchmarks/loss_terms.py --repeats 5 | tee /tmp/loss_terms_fused.txt
    SPML_FUSED=1 "$PY" benchmarks/gpu_check.py "$@" | tee /tmp/gpu_check_fused.txt
    if [ -n "${OUT:-}" ]; then
      tail -n 1 /tmp/gpu_check_fused.txt > "$OUT/gpu_check_fused.json"
      tail -n 1 /tmp/loss_terms_fused.txt > "$OUT/loss_terms_fused.json"
    fi; } || echo "fused kernels: the run failed (see above); the torch path's figures stand"
  # one TF32 product instead of three (SPML_FUSED_PRECISION=tf32): what exactness costs
  { SPML_FUSED=1 SPML_FUSED_PRECISION=tf32 "$PY" benchmarks/loss_terms.py --repeats 5 | tee /tmp/loss_terms_tf32.txt
    if [ -n "${OUT:-}" ]; then tail -n 1 /tmp/loss_terms_tf32.txt > "$OUT/loss_terms_fused_tf32.json"; fi; } \
    || echo "fused kernels with SPML_FUSED_PRECISION=tf32: the run failed (see above)"
fi
if [ -n "${OUT:-}" ]; then
  tail -n 1 /tmp/gpu_check.txt > "$OUT/gpu_check.json"
  tail -n 1 /tmp/segsets.txt > "$OUT/segsets.json"
  tail -n 1 /tmp/loss_terms.txt > "$OUT/loss_terms.json"
fi
# the CUDA tests (only these files: the others need Hydra / datasets, absent on the device machine)
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/spml_train/test_loss.py \
  tests/spml_train/pseudo/test_random_walk.py tests/spml_train/pseudo/test_crf.py 2>&1 | tee /tmp/gpu_tests.txt
if [ -n "${OUT:-}" ]; then cp /tmp/gpu_tests.txt "$OUT/gpu_tests.txt"; fi
