#!/usr/bin/env bash
# The GPU checks of issue 5, as one script for a machine with a CUDA card (about 10 minutes).
#   1. ResNet-50 training and inference at 224x224 with AMP and channels-last, in images per
#      second (NVIDIA's published single-A100 figure for ResNet-50 v1.5 training with AMP is
#      about 2,470 img/s), against torchvision in the same process.
#   2. A short CIFAR-10 run (ResNet-20, fast recipe cut to 10 epochs) when the data is there.
#   3. The photo pipeline at 224x224 (issue 21): CIFAR-10 JPEGs re-encoded at 500x375 (drawn
#      pictures when the data is not there), our loader beside timm's create_loader and
#      torchvision's transforms, then ResNet-50 (bf16, channels-last) trained on our batches:
#      the time each step waits for its batch against the step itself, and whether the GPU
#      waits for data (OUT/image_pipeline.json).
# Usage: bash benchmarks/gpu.sh [OUT_DIR] [CIFAR10_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu}"
CIFAR="${2:-../shared/data/cifar10}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

resnetkit benchmark --models resnet50 --input-sizes 224 --batch-sizes 256 --modes train \
    --precisions fp32,bf16,fp16 --channels-last on,off --against torchvision --optimized none \
    --repeats 5 --device cuda --json "$OUT/resnet50_train.json"
resnetkit benchmark --models resnet50 --input-sizes 224 --batch-sizes 256 --modes infer,latency \
    --precisions fp32,fp16 --channels-last on --against torchvision --optimized auto,fp32 \
    --repeats 5 --device cuda --json "$OUT/resnet50_infer.json"

if [ -d "$CIFAR" ]; then
    resnetkit train --data "$CIFAR" --recipe recipes/cifar10_resnet20_fast.yaml --epochs 10 \
        --device cuda --out "$OUT/cifar10-resnet20" --quiet --json > "$OUT/cifar10-resnet20.json"
else
    echo "no CIFAR-10 folder at $CIFAR: the short training run is skipped"
fi

# One core is left to the process that drives the GPU; the rest decode.
WORKERS=$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))
if [ -d "$CIFAR/train" ]; then PHOTOS=(--data "$CIFAR/train"); else PHOTOS=(--synthetic); fi
PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" python benchmarks/image_pipeline.py "${PHOTOS[@]}" --images 8192 \
    --batch-size 256 --workers "$WORKERS" --repeats 3 --device cuda --train-step --model resnet50 --steps 100 \
    --json "$OUT/image_pipeline.json" | tee "$OUT/image_pipeline.md"
