#!/usr/bin/env bash
# The device checks of a session that is lent a GPU, as one prepared command
# (docs/benchmarks.md, "When a GPU is lent"): the test suite with the CUDA tests, then the
# throughput benchmark on the 1B-shaped model in bfloat16. Run from the repository root
# on the GPU machine; whatever it prints also lands in $OUT (or ./gpu-check).
#
#   bash bench/gpu_check.sh [PROBLEMS]      # PROBLEMS for the benchmark, default 1000
#
# On the device machine nothing can be fetched: a newer transformers than its image's
# travels as a wheel in .whl/ (see docs/benchmarks.md), installed here first.
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
PROBLEMS=${1:-1000}
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}

# Carried wheels first (nothing can be fetched there), then the project from its source,
# without installing it: the image has its dependencies. A `thoughtscope` command on PATH
# stands in for the console script that the CLI tests start.
SITE=/tmp/thoughtscope-site
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 1
fi
export PYTHONPATH="$SITE:$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$SITE/bin"
printf '#!/bin/sh\nexec "%s" -m thoughtscope "$@"\n' "$(command -v "$PYTHON")" >"$SITE/bin/thoughtscope"
chmod +x "$SITE/bin/thoughtscope"
export PATH="$SITE/bin:$PATH"

{
  "$PYTHON" - <<'PY'
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"CUDA {torch.version.cuda}, device {torch.cuda.get_device_name(0)}")
PY
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} 2>&1 | tee "$OUT/versions.txt"

echo "== tests (CUDA tests included)"
# pytest-xdist spreads the CPU-bound tests over the machine's cores.
timeout 270 "$PYTHON" -m pytest -q -x -n 8 -p no:cacheprovider -rs 2>&1 | tee "$OUT/tests.txt"
tests=${PIPESTATUS[0]}

echo "== benchmark: 1B-shaped random model, bfloat16, baseline + 6 prefix conditions"
timeout 300 "$PYTHON" bench/throughput.py --model random-1b-size --device cuda \
  --dtype bfloat16 --problems "$PROBLEMS" --naive-problems 10 --threads 4 2>&1 |
  tee "$OUT/bench.txt"
bench=${PIPESTATUS[0]}

echo "tests exit $tests, benchmark exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
