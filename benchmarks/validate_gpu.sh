#!/usr/bin/env bash
# `specsim validate` on the accelerator JAX finds (one GPU or TPU chip): real bf16 flax
# networks are timed, the local spec is calibrated on half of the step times and predicts
# the other half and real speculative decoding; published rows are predicted too.
#
# Usage:  benchmarks/validate_gpu.sh [OUTPUT_DIR]
#   OUTPUT_DIR  where the tables go (default: $SPECSIM_RESULTS_DIR, else benchmarks/results);
#               files: validate_gpu.{md,json,steps.csv,sd.csv,published.csv,hardware.toml}
#   SPECSIM_VALIDATE_SIZE  quick (default; ~3 minutes on one H100) or full (~6 minutes)
#
# Needs jax with its CUDA (or TPU) plugin, flax, optax, numpy, pandas and tqdm; run from
# anywhere: the repository root is put on PYTHONPATH, nothing is installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-${SPECSIM_RESULTS_DIR:-$ROOT/benchmarks/results}}"
SIZE="${SPECSIM_VALIDATE_SIZE:-quick}"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

mkdir -p "$OUT"
cd "$ROOT"
"$PYTHON" - <<'PY'
import jax
devices = jax.devices()
print("jax", jax.__version__, "devices:", devices)
if devices[0].platform == "cpu":
    raise SystemExit("validate_gpu.sh: JAX sees no accelerator (use `specsim validate` on CPUs)")
PY
start=$(date +%s)
"$PYTHON" -m specsim.cli validate --size "$SIZE" --output-dir "$OUT" --prefix validate_gpu \
    --no-progress
echo "validate_gpu.sh: done in $(( $(date +%s) - start )) s; tables in $OUT" >&2
