"""The photo pipeline against timm's create_loader and torchvision's reference transforms.

Stand-ins for ImageNet-sized files: a few hundred of the shared CIFAR-10 JPEGs upsampled to
500x375 (bicubic; ``--photo`` for another size) and re-encoded at JPEG quality 90 into a temporary folder (``--synthetic``
draws smooth random pictures instead, for a machine without the data). Three loaders read
the same files into normalized float batches of RandomResizedCrop 224 + horizontal flip (no
colour jitter, no auto-augment), with the same workers and batch size:

- ours: ``ImageFiles(...).batches(...)`` (resnetkit.data.image_pipeline: uint8 crops, normalized
  where the batch lands; JPEGs decoded by simplejpeg when it is installed, through Pillow with
  ``--pillow-decode``),
- timm: ``create_loader(ImageDataset(root), is_training=True, ...)`` with its prefetcher (uint8
  batches normalized where they land, timm's own fast path),
- torchvision: ``ImageFolder`` with ``RandomResizedCrop``, ``RandomHorizontalFlip``,
  ``ToTensor``, ``Normalize`` through a DataLoader.

Two stages are timed: *handover*, the batches as the loader's workers give them to the main
process, ready to be copied to the device (ours and timm: uint8; torchvision: normalized float,
its workers' job), and *normalized*, float batches normalized on ``--device`` (for a GPU the
float work of ours and timm runs there; on a CPU it runs in the main process and counts).
Each is warmed up (workers started, files in the page cache), then all take turns, one epoch
each (``--images`` // ``--batch-size`` batches), ``--repeats`` times; the medians are reported.
Per core means images per CPU-second of the whole process tree (main process and its workers,
from /proc), which holds up on a machine other jobs share better than wall time does; wall
img/s is reported beside it. The ratios to timm are the numbers to read.

``--train-step`` (for a GPU): after the comparison, trains ``--model`` on our loader's batches
for ``--steps`` steps (AMP, channels-last) and splits each step's time into waiting for the
next batch and the step itself (synchronized), to say whether the GPU waits for data.

Usage:
    python benchmarks/image_pipeline.py [--data $RESNETKIT_DATA/cifar10/train] [--images 400]
        [--workers 1] [--batch-size 64] [--repeats 5] [--json out.json]
    python benchmarks/image_pipeline.py --device cuda --workers 16 --batch-size 256 --train-step \\
        --model resnet50 --steps 60 --json runs/gpu/image_pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PHOTO = (500, 375)  # width, height: an ImageNet-sized photo (its mean is about 400x350)


def make_photos(source: Path | None, count: int, out: Path, photo: tuple[int, int] = PHOTO,
                seed: int = 0) -> list[tuple[str, int]]:
    """``count`` JPEGs of ``photo`` (w, h) under out/<class>/, from ``source`` (a CIFAR-10 train folder) or drawn."""
    rng = np.random.default_rng(seed)
    samples = []
    if source is not None:
        classes = sorted(d.name for d in source.iterdir() if d.is_dir())
        per_class = max(1, count // len(classes))
        for c, name in enumerate(classes):
            (out / name).mkdir(parents=True, exist_ok=True)
            for f in sorted((source / name).glob("*.jpg"))[:per_class]:
                with Image.open(f) as img:
                    picture = img.convert("RGB").resize(photo, Image.BICUBIC)
                path = out / name / f.name
                picture.save(path, quality=90)
                samples.append((str(path), c))
        return samples
    for c in range(10):
        (out / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(max(1, count // 10)):
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # smooth once upsampled: photo-like JPEG sizes
            picture = Image.fromarray(small).resize(photo, Image.BICUBIC)
            path = out / f"class{c}" / f"{i:04d}.jpg"
            picture.save(path, quality=90)
            samples.append((str(path), c))
    return samples


def cpu_name() -> str:
    """The CPU model and its vector extensions, from /proc/cpuinfo (the speeds depend on them)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    lines = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    lines = {k.strip(): v.strip() for k, v in lines.items()}
    flags = set(lines.get("flags", "").split())
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{lines.get('model name', platform.machine())}, {simd}"


def tree_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process and all its live descendants (Linux /proc)."""
    pid = pid or os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # a process that ended between the listing and the read
    return total


def ours(root: Path, samples, args, device: torch.device):
    from resnetkit.data import BatchOptions
    from resnetkit.data.augment import get_preset
    from resnetkit.data.images import ImageFiles
    from resnetkit.data.specs import ImageInputSpec

    classes = sorted({Path(p).parent.name for p, _ in samples})
    data = ImageFiles(samples, classes, source=str(root))
    spec = ImageInputSpec(3, (args.size, args.size), MEAN, STD, crop_pct=0.875)
    source = data.batches(spec, BatchOptions(train=True, batch_size=args.batch_size, device=device,
                                             augment=get_preset("imagenet"), workers=args.workers, seed=0))
    epoch = iter(range(10**9))
    return {"handover": lambda: source.host_batches(next(epoch)), "normalized": lambda: source.epoch(next(epoch))}


def timm_loader(root: Path, args, device: torch.device):
    from timm.data import ImageDataset, create_loader

    loader = create_loader(
        ImageDataset(str(root)), input_size=(3, args.size, args.size), batch_size=args.batch_size,
        is_training=True, no_aug=False, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, vflip=0.0,
        color_jitter=None, auto_augment=None, re_prob=0.0, interpolation="bilinear", mean=MEAN, std=STD,
        num_workers=args.workers, device=device, use_prefetcher=True, pin_memory=device.type == "cuda",
        persistent_workers=True,
    )
    print("timm train transform:", loader.dataset.transform, file=sys.stderr)
    # Its prefetcher normalizes where the batch lands; the DataLoader under it hands over uint8.
    return {"handover": lambda: iter(loader.loader), "normalized": lambda: iter(loader)}


def torchvision_loader(root: Path, args, device: torch.device):
    from torchvision import datasets, transforms as T

    transform = T.Compose([T.RandomResizedCrop(args.size), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root), transform=transform), batch_size=args.batch_size, shuffle=True,
        drop_last=True, num_workers=args.workers, pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)

    def batches():
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    # Its workers hand over normalized float batches: both stages are the same pass.
    return {"handover": batches, "normalized": batches}


def one_pass(batches, device: torch.device) -> tuple[int, float, float]:
    """(images, wall seconds, CPU seconds of the process tree) for one epoch.

    A whole epoch: a pass cut short would leave batches in flight in the persistent workers,
    and their decoding would be counted in the next pass."""
    cpu0, t0, images = tree_cpu_seconds(), time.perf_counter(), 0
    for x, _ in batches():
        images += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images, time.perf_counter() - t0, tree_cpu_seconds() - cpu0


def compare(loaders: dict, args, device: torch.device) -> dict:
    """Interleaved passes of every loader at both stages; medians and ratios to timm."""
    passes = {}
    for name, stages in loaders.items():
        for stage, batches in stages.items():
            if not any(b is batches for b in passes.values()):
                passes[(name, stage)] = batches
    for batches in passes.values():  # warm-up: workers, page cache, first-call costs
        one_pass(batches, device)
    runs: dict = {key: [] for key in passes}
    for _ in range(args.repeats):
        for key, batches in passes.items():
            runs[key].append(one_pass(batches, device))
    results: dict = {}
    for name, stages in loaders.items():
        results[name] = {}
        for stage, batches in stages.items():
            rows = runs[next(key for key, b in passes.items() if b is batches)]
            results[name][stage] = {
                "img_per_s": statistics.median(n / wall for n, wall, _ in rows),
                "img_per_cpu_s": statistics.median(n / cpu for n, _, cpu in rows),
                "passes": [{"images": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)} for n, wall, cpu in rows],
            }
    for stage in ("handover", "normalized"):
        base = results["timm"][stage]
        for r in results.values():
            r[stage]["per_core_vs_timm"] = r[stage]["img_per_cpu_s"] / base["img_per_cpu_s"]
            r[stage]["wall_vs_timm"] = r[stage]["img_per_s"] / base["img_per_s"]
    return results


def draft_difference(samples, size: int, count: int = 100) -> dict:
    """How far our crops decoded at reduced size are from the same crops decoded whole (same seeds)."""
    import random

    from resnetkit.data.image_pipeline import TrainCrop, reduction_for

    reduced, whole = TrainCrop((size, size)), TrainCrop((size, size), draft=False)
    diffs, reductions = [], []
    for i, (path, _) in enumerate(samples[:count]):
        with Image.open(path) as img:
            box = reduced.box(*img.size, random.Random(i))
        reductions.append(reduction_for(box.width, box.height, (size, size)))
        a = reduced(path, 3, random.Random(i)).float()
        b = whole(path, 3, random.Random(i)).float()
        diffs.append((a - b).abs().mean().item())
    drafted = [d for d, r in zip(diffs, reductions) if r > 1]
    return {"crops": len(diffs), "reduced": len(drafted),
            "mean_abs_diff_reduced": statistics.mean(drafted) if drafted else None,
            "max_abs_diff_reduced": max(drafted) if drafted else None,
            "reductions": {str(r): reductions.count(r) for r in sorted(set(reductions))}}


def train_step_wait(batches, args, device: torch.device) -> dict:
    """Train on our batches and split each step into waiting for data and computing."""
    from resnetkit.models import create_model

    model = create_model(args.model, num_classes=10).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step(x, y):
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # The model alone, on one batch held on the device: what the GPU can take.
    it = batches()
    x, y = next(it)
    for _ in range(3):
        step(x, y)
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps // 3 or 1):
        step(x, y)
    sync()
    model_only = (args.steps // 3 or 1) * x.shape[0] / (time.perf_counter() - t0)

    waits, steps, images = [], [], 0
    done = 0
    while done < args.steps:
        it = it if it is not None else batches()
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            it = None
            continue
        sync()  # the copy and the normalization belong to the wait
        t1 = time.perf_counter()
        step(x, y)
        sync()
        t2 = time.perf_counter()
        if done >= 3:  # the first steps after a pass starts fill the workers' queues
            waits.append(t1 - t0)
            steps.append(t2 - t1)
            images += x.shape[0]
        done += 1
    wait, compute = sum(waits), sum(steps)
    return {
        "model": args.model, "batch_size": args.batch_size, "steps": len(steps),
        "wait_s_per_step": wait / len(steps), "step_s_per_step": compute / len(steps),
        "wait_fraction": wait / (wait + compute), "img_per_s_training": images / (wait + compute),
        "img_per_s_model_only": model_only,
        "gpu_waits_for_data": wait / (wait + compute) > 0.05,  # the device, whichever it is
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data_root = Path(os.environ.get("RESNETKIT_DATA", ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", default=str(data_root / "cifar10" / "train"),
                        help="a CIFAR-10 train folder (default $RESNETKIT_DATA/cifar10/train, else ../shared/data/...)")
    parser.add_argument("--synthetic", action="store_true", help="draw the photos instead of re-encoding CIFAR-10")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--photo", default="500x375", help="WxH of the re-encoded photos")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-step", action="store_true", help="also train on our batches: does the GPU wait?")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pillow-decode", action="store_true",
                        help="ours decodes through Pillow even with simplejpeg installed (the pipeline before it)")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device(args.device)
    try:
        photo = tuple(int(v) for v in args.photo.lower().split("x"))
        if len(photo) != 2 or min(photo) < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--photo {args.photo!r}: expected WIDTHxHEIGHT, e.g. 500x375")
    if args.batch_size > args.images:
        parser.error(f"--batch-size {args.batch_size} is more than --images {args.images}: no full batch")
    source = None if args.synthetic else Path(args.data)
    if source is not None and not source.is_dir():
        parser.error(f"--data {source}: no such folder (give --synthetic to draw the photos)")

    from resnetkit.data import image_pipeline

    if args.pillow_decode:
        image_pipeline.simplejpeg = None  # before any worker starts: they inherit it
    decoder = "simplejpeg" if image_pipeline.simplejpeg is not None else "pillow"
    with tempfile.TemporaryDirectory(prefix="photos-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        samples = make_photos(source, args.images, root, photo)
        print(f"{len(samples)} photos of {photo[0]}x{photo[1]} written in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        loaders = {"ours": ours(root, samples, args, device), "timm": timm_loader(root, args, device),
                   "torchvision": torchvision_loader(root, args, device)}
        results = compare(loaders, args, device)
        draft = draft_difference(samples, args.size)
        report = {
            "machine": cpu_name(), "cpus": os.cpu_count(),
            "device": str(device), "workers": args.workers, "batch_size": args.batch_size, "size": args.size,
            "images": len(samples), "photo": list(photo), "batches_per_pass": len(samples) // args.batch_size,
            "repeats": args.repeats, "source": "synthetic" if source is None else str(source),
            "torch": torch.__version__, "pillow": Image.__version__, "ours_jpeg_decoder": decoder, "results": results, "draft": draft,
        }
        print(f"ours decodes JPEGs with {decoder}")
        print(f"| loader | stage | img/s per core (CPU-s) | vs timm | img/s wall ({args.workers} worker(s)) | vs timm |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for stage in ("handover", "normalized"):
            for name, r in results.items():
                r = r[stage]
                print(f"| {name} | {stage} | {r['img_per_cpu_s']:.0f} | {r['per_core_vs_timm']:.2f}x | "
                      f"{r['img_per_s']:.0f} | {r['wall_vs_timm']:.2f}x |")
        share = draft["reduced"] / draft["crops"]
        print(f"\nDecoded reduced: {100 * share:.0f}% of {draft['crops']} crops {draft['reductions']}"
              + (f"; against the same crops decoded whole: {draft['mean_abs_diff_reduced']:.2f} grey levels mean, "
                 f"{draft['max_abs_diff_reduced']:.2f} for the worst crop (mean absolute difference)" if share else ""))
        if args.train_step:
            waiting = train_step_wait(loaders["ours"]["normalized"], args, device)
            report["train_step"] = waiting
            print(f"\n{args.model} on {device}, batch {args.batch_size}, {args.workers} workers: waits "
                  f"{1e3 * waiting['wait_s_per_step']:.1f} ms for data per {1e3 * waiting['step_s_per_step']:.1f} ms "
                  f"step ({100 * waiting['wait_fraction']:.0f}% of the time); {waiting['img_per_s_training']:.0f} img/s "
                  f"training, {waiting['img_per_s_model_only']:.0f} img/s for the model alone: "
                  + (f"the {device.type} waits for data" if waiting["gpu_waits_for_data"]
                     else f"the {device.type} does not wait for data (under 5% of the time)"))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
