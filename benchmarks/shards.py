"""Images per second from WebDataset shards against the folder reader, on the same CIFAR-10 JPEGs.

One pass (an epoch, no model) over the same images through three readers, each yielding
normalized batches as training gets them, with the same per-sample augmentation (pad-4
crop + flip) where it applies and the same DataLoader workers:

- ``shards``: `resnetkit shard` output streamed by ``ShardBatches`` (decode per sample in workers);
- ``folder files``: the class folder read file by file (``ImageFiles``/``LoaderBatches``, what the
  folder reader does for images too large to hold in memory);
- ``folder in memory``: the folder reader's default for small images (decoded once into one
  tensor, then augmented a batch at a time): its decode time is reported beside its epoch.

The passes alternate (shards, files, shards, files, ...) and the median of ``--repeats`` is
reported; the machine is shared, so only the ratio measured in one run means anything.

    python benchmarks/shards.py --data ../shared/data/cifar10/train --per-class 500
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from resnetkit.data import BatchOptions, DataRequest, resolve_data
from resnetkit.data.augment import augment_from
from resnetkit.data.images import load_folder
from resnetkit.data.shard_writer import write_shards
from resnetkit.models import create_model


def linked_subset(src: Path, dest: Path, per_class: int) -> None:
    """``dest/<class>/`` holding links to the first ``per_class`` images of each class (nothing copied)."""
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        (dest / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.jpg"))[:per_class]:
            os.symlink(path.resolve(), dest / folder.name / path.name)


def one_pass(source) -> tuple[int, float]:
    t0 = time.perf_counter()
    count = sum(x.shape[0] for x, _ in source.epoch(0))
    return count, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.join(os.environ.get("RESNETKIT_DATA", "../shared/data"), "cifar10/train"))
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder, shards = Path(tmp) / "images", Path(tmp) / "shards"
        linked_subset(Path(args.data), folder, args.per_class)
        t0 = time.perf_counter()
        summary = write_shards(folder, shards, shard_size=args.shard_size)
        write_s = time.perf_counter() - t0
        n = summary.counts["train"]
        model = create_model("resnet20", num_classes=len(summary.classes))
        augment = augment_from("cifar")  # pad-4 crop + flip, per sample in workers for both streamed readers
        options = BatchOptions(train=True, batch_size=args.batch_size, augment=augment, workers=args.workers)

        from_shards = resolve_data(DataRequest(data=str(shards))).train
        spec = from_shards.input_spec(model)
        files = load_folder(folder, in_memory=False)
        readers = {"shards": from_shards.batches(spec, options), "folder files": files.batches(spec, options)}
        rates: dict[str, list[float]] = {name: [] for name in readers}
        counts = {}
        for _ in range(args.repeats):
            for name, source in readers.items():
                count, seconds = one_pass(source)
                counts[name] = count
                rates[name].append(count / seconds)
        t0 = time.perf_counter()
        in_memory = load_folder(folder, in_memory=True)
        decode_s = time.perf_counter() - t0
        memory_rates = [one_pass(in_memory.batches(spec, options)) for _ in range(args.repeats)]

    result = {
        "images": n, "classes": len(summary.classes), "shards": summary.shards["train"], "shard_size": args.shard_size,
        "batch_size": args.batch_size, "workers": args.workers, "threads": torch.get_num_threads(),
        "write_shards_s": round(write_s, 2),
        "img_per_s": {name: round(statistics.median(r), 1) for name, r in rates.items()},
        "img_per_s_all": {name: [round(v, 1) for v in r] for name, r in rates.items()},
        "samples_per_pass": counts,
        "in_memory": {"decode_s": round(decode_s, 2),
                      "epoch_img_per_s": round(statistics.median(c / s for c, s in memory_rates), 1)},
    }
    result["ratio_shards_to_files"] = round(result["img_per_s"]["shards"] / result["img_per_s"]["folder files"], 2)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
