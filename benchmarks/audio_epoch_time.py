"""Where an epoch of audio training goes: decoding, augmentation and features, the model.

Decoding happens once per run (the clips are then held as one wave tensor on the device);
augmentation and features are computed for every batch, because every augmentation but
SpecAugment's masks changes the features; the model's forward and backward pass is the rest.
Each part is timed on its own over the same clips, after one warm-up batch.

Usage:
    python benchmarks/audio_epoch_time.py --data ../shared/data/fsdd/recordings [--clips 512] \
        [--augment speech,speech-strong] [--recipe audio_default]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from resnetkit import create_model
from resnetkit.data.audio_augment import audio_augment_from
from resnetkit.data.audio_batches import AudioBatches
from resnetkit.data.audio_data import decode_audio_files
from resnetkit.data.audio_features import FeatureConfig
from resnetkit.data.interface import BatchOptions
from resnetkit.data.specs import AudioInputSpec
from resnetkit.engine import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def _epoch_seconds(source: AudioBatches, step=None) -> float:
    batches = source.epoch(0)
    x, y = next(batches)  # warm-up
    if step is not None:
        step(x, y)
    start = time.perf_counter()
    for x, y in batches:
        if step is not None:
            step(x, y)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fsdd" / "recordings"))
    p.add_argument("--clips", type=int, default=512)
    p.add_argument("--recipe", default="audio_default")
    p.add_argument("--augment", default="speech,speech-strong")
    args = p.parse_args()
    recipe = load_recipe(args.recipe)
    features = FeatureConfig.from_dict({**recipe["audio"], "normalize": "cmvn"})
    batch_size = int(recipe.get("batch_size", 64))
    files = sorted(Path(args.data).glob("*.wav"))[: args.clips]
    start = time.perf_counter()
    data = decode_audio_files([(str(f), 0) for f in files], ["x"], features, source=args.data)
    decode = time.perf_counter() - start
    labels = torch.arange(len(data)) % 10
    spec = AudioInputSpec(features)
    model = create_model(recipe.get("model", "resnet20"), num_classes=10, in_chans=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def source(preset):
        augment = audio_augment_from(preset) if preset != "none" else None
        options = BatchOptions(train=augment is not None, batch_size=batch_size, augment=augment)
        return AudioBatches(data.waves, labels, [str(d) for d in range(10)], spec, options)

    n = len(data) - batch_size  # clips timed (the warm-up batch is left out)
    print(f"{len(data)} clips, batch {batch_size}, {torch.get_num_threads()} threads; seconds per 1,000 clips:")
    print("| part | s / 1000 clips |\n|---|---:|")
    print(f"| decode + resample (once per run) | {1000 * decode / len(data):.2f} |")
    for preset in ["none", *args.augment.split(",")]:
        print(f"| augmentation + features, {preset} | {1000 * _epoch_seconds(source(preset)) / n:.2f} |")
    model_s = _epoch_seconds(source("none"), step) - _epoch_seconds(source("none"))
    print(f"| model forward + backward + SGD step | {1000 * model_s / n:.2f} |")


if __name__ == "__main__":
    main()
