"""Where an epoch of audio training goes: decoding, augmentation and features, the model.

Decoding happens once per run (the clips are then held as one wave tensor on the device);
augmentation and features are computed for every batch, because every augmentation but
SpecAugment's masks changes the features; the model's forward and backward pass is the rest.
Each part is timed on its own over the same clips, after one warm-up batch.

``--batch-sizes 32,64,128`` adds a second table: the model's training step alone (forward,
backward, SGD) on feature batches of the recipe's shape, per batch size and memory layout
(channels-last, which the engine uses by default, and contiguous NCHW), in turns, the median
of ``--repeats`` passes over the same clips.

Usage:
    python benchmarks/audio_epoch_time.py --data ../shared/data/fsdd/recordings [--clips 512] \
        [--augment speech,speech-strong] [--recipe audio_default] [--batch-sizes 32,64,128 --repeats 3]
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
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
    p.add_argument("--batch-sizes", help="also time the model step alone at these batch sizes, both layouts")
    p.add_argument("--repeats", type=int, default=3)
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
    step = _sgd_step(model)

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
    if args.batch_sizes:
        features_of_clips = torch.cat([x for x, _ in source("none").epoch(0)])
        layouts = {"channels-last": torch.channels_last, "NCHW": torch.contiguous_format}
        print(f"\nModel step alone on {tuple(features_of_clips.shape[1:])} features, {len(features_of_clips)} clips, "
              f"median of {args.repeats}; seconds per 1,000 clips:")
        print("| batch | " + " | ".join(layouts) + " |\n|---:|" + "---:|" * len(layouts))
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            times: dict[str, list[float]] = {name: [] for name in layouts}
            for _ in range(args.repeats):
                for name, layout in layouts.items():  # in turns, so that drift hits both
                    times[name].append(_model_seconds(recipe, features_of_clips, batch, layout))
            cells = [f"{1000 * statistics.median(t) / len(features_of_clips):.2f}" for t in times.values()]
            print(f"| {batch} | " + " | ".join(cells) + " |")


def _sgd_step(model: torch.nn.Module):
    """One training step of ``model`` (forward, cross-entropy, backward, SGD with momentum) as a function of a batch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def _model_seconds(recipe: dict, clips: torch.Tensor, batch: int, layout: torch.memory_format) -> float:
    """Seconds for one pass of training steps over ``clips`` at ``batch``, after one warm-up step."""
    step = _sgd_step(create_model(recipe.get("model", "resnet20"), num_classes=10, in_chans=1).to(memory_format=layout))
    labels = torch.arange(len(clips)) % 10
    chunks = [(clips[i : i + batch].contiguous(memory_format=layout), labels[i : i + batch])
              for i in range(0, len(clips) - batch + 1, batch)]
    step(*chunks[0])
    start = time.perf_counter()
    for x, y in chunks:
        step(x, y)
    return (time.perf_counter() - start) * len(clips) / (len(chunks) * batch)


if __name__ == "__main__":
    main()
