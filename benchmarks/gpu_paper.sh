#!/usr/bin/env bash
# He et al. 2015, Table 6 and Figure 6 on a GPU: the paper's CIFAR-10 schedule (64k iterations,
# batch 128, lr 0.1 divided by 10 at 32k and 48k, 45k/5k split) for ResNet-20, 56, 110 and the
# plain 20 and 56, in chunks of at most MINUTES of training. Each call trains until its time is
# up (every run stops with a checkpoint and resumes at the next call), so it fits time-limited
# GPU sessions: call it again until it prints "all runs finished", then read OUT/compare.md
# (errors beside the paper's 8.75 / 6.97 / 6.43%) and OUT/compare_curves.png (Figure 6).
#
# Usage: bash benchmarks/gpu_paper.sh [OUT] [CIFAR10] [MINUTES] [MAX_STEPS]
#   MAX_STEPS (optional) cuts every run short: the CPU test of this script uses it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/paper}"
DATA="${2:-../shared/data/cifar10}"
MINUTES="${3:-9}"
MAX_STEPS="${4:-}"
MODELS="${MODELS:-resnet20 plain20 resnet56 plain56 resnet110}"  # the CPU test sets fewer
end=$(python3 -c "import time; print(time.time() + 60 * float('$MINUTES'))")

for model in $MODELS; do
    if [ -f "$OUT/$model/metrics.json" ]; then
        continue
    fi
    left=$(python3 -c "import time; print(max(0.0, ($end - time.time()) / 60))")
    if python3 -c "import sys; sys.exit(0 if $left > 0.05 else 1)"; then :; else
        echo "time is up: call this script again to continue ($model next)"
        exit 0
    fi
    echo "== $model: training for at most $left min"
    resnetkit train --recipe cifar10_resnet20_paper --model "$model" --data "$DATA" --out "$OUT/$model" \
        --auto-resume --stop-after-min "$left" --quiet ${MAX_STEPS:+--max-steps "$MAX_STEPS"}
    code=$?
    if [ "$code" -eq 130 ]; then
        echo "time is up: call this script again to continue ($model is resumable)"
        exit 0
    elif [ "$code" -ne 0 ]; then
        echo "resnetkit train failed for $model (exit $code)"
        exit "$code"
    fi
done
echo "all runs finished"
resnetkit compare --models "${MODELS// /,}" --out "$OUT" --report --no-latency
