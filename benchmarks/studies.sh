#!/usr/bin/env bash
# The studies of docs/comparisons.md, one `resnetkit compare` each.
# Every command is resumable: rerunning this script keeps finished runs and continues the
# interrupted one. About 3 hours on a 2-core CPU, most of it the CIFAR-10 studies.
#
# Usage: bash benchmarks/studies.sh [DATA_ROOT] [OUT_ROOT]
#   DATA_ROOT holds cifar10/train/... and fsdd/recordings (default ../shared/data)
#   OUT_ROOT receives study-degradation/, study-baselines/, study-fsdd/ and study-fsdd-seeds/ (default runs)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
OUT="${2:-runs}"

# 1. The degradation problem (He et al. 2015, Figure 6): plain nets against ResNets at 20 and
#    56 layers, one recipe, 10 epochs each (the paper trains 182).
resnetkit compare --models plain20,plain56,resnet20,resnet56 \
    --data "$DATA/cifar10" --recipe recipes/cifar10_resnet20_fast.yaml --epochs 10 \
    --out "$OUT/study-degradation" --quiet

# 2. ResNet v1 against pre-activation v2 at 56 layers, and VGG-11-BN and a small GoogLeNet
#    of similar cost (125M, 153M and 96M MACs), same recipe and epochs. The ResNet-56 run of
#    study 1 is shared rather than trained twice.
mkdir -p "$OUT/study-baselines"
ln -sfn "$(cd "$OUT/study-degradation/resnet56" && pwd)" "$OUT/study-baselines/resnet56"
resnetkit compare --models resnet56,preact_resnet56,vgg11_bn_cifar,googlenet_small_cifar \
    --data "$DATA/cifar10" --recipe recipes/cifar10_resnet20_fast.yaml --epochs 10 \
    --out "$OUT/study-baselines" --quiet

# 3. Spoken digits (FSDD, official split): the keyword-spotting res15, ResNet-20 and its
#    plain twin on one-channel log-mel spectrograms, each given the same 3 minutes of wall
#    clock (the full res15 fits far fewer epochs in it on a CPU). res15_narrow is in the
#    FSDD benchmark (benchmarks/fsdd.py).
resnetkit compare --models res15,resnet20,plain20 \
    --data "$DATA/fsdd/recordings" --recipe recipes/fsdd_resnet20.yaml --time-budget-min 3 \
    --out "$OUT/study-fsdd" --quiet

# 3b. Study 3's ResNet-20 against plain20 again, three seeds each on one validation split:
#     mean ± std, a bootstrap interval and seed-matched McNemar tests. A fixed 4 epochs, not a
#     time budget (a budget measured beside another job gives each run other epochs); 32
#     minutes on a 2-core AVX2 CPU shared with another job, where one thread (OMP_NUM_THREADS=1)
#     was 2.6x faster than two fighting the other job for the cores.
OMP_NUM_THREADS=1 resnetkit compare --models resnet20,plain20 \
    --data "$DATA/fsdd/recordings" --recipe recipes/fsdd_resnet20.yaml --epochs 4 --seeds 3 \
    --out "$OUT/study-fsdd-seeds" --quiet
