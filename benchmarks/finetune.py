"""Does starting from pretrained weights help? Pretrain on 8 CIFAR-10 classes, fine-tune on the other 2.

No ImageNet weights can be downloaded on our machines, so the "pretrained" model is a
ResNet-20 trained here on 8 of the 10 CIFAR-10 classes (all their images but a held-out
fifth). The target task is the other 2 classes (cat, dog: the hardest pair) with only
100 training images per class; both sides are validated on 500 images per class that
neither saw. Fine-tuning (`--init RUN`, a head-only epoch, then everything at a tenth of
the head's rate for the backbone) is compared with training the same net from scratch on
the same 200 images, over several seeds.

Usage:
    python benchmarks/finetune.py --data ../shared/data/cifar10 --out runs/bench-finetune [--seeds 0,1,2]
        [--pretrain-epochs 15] [--pretrain-per-class N]
Writes <out>/finetune.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from resnetkit.engine import build_config, train

ROOT = Path(__file__).resolve().parents[1]
TARGET = ("cat", "dog")
PER_CLASS_TRAIN, PER_CLASS_VAL = 100, 500


def _link_subset(src: Path, dst: Path, classes, files) -> None:
    """Symbolic links, so the data is never copied (only read from where it lies)."""
    for cls in classes:
        (dst / cls).mkdir(parents=True, exist_ok=True)
        for f in files(sorted((src / cls).glob("*.jpg"))):
            target = dst / cls / f.name
            if not target.exists():
                os.symlink(f.resolve(), target)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--out", default="runs/bench-finetune")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--pretrain-epochs", type=int, default=15)
    p.add_argument("--pretrain-per-class", type=int, default=None,
                   help="training images per source class for pretraining (default: all but a held-out fifth)")
    p.add_argument("--epochs", type=int, default=30, help="epochs on the 200 target images (both arms)")
    args = p.parse_args()
    src = Path(args.data) / "train" if (Path(args.data) / "train").is_dir() else Path(args.data)
    out = Path(args.out)
    classes = sorted(d.name for d in src.iterdir() if d.is_dir())
    source = [c for c in classes if c not in TARGET]

    pre_data = out / "data-8"
    per_class = args.pretrain_per_class
    _link_subset(src, pre_data / "train", source, lambda fs: fs[: min(per_class or len(fs), int(0.8 * len(fs)))])
    _link_subset(src, pre_data / "val", source, lambda fs: fs[int(0.8 * len(fs)):])
    target = out / "data-2"
    _link_subset(src, target / "train", TARGET, lambda fs: fs[:PER_CLASS_TRAIN])
    _link_subset(src, target / "val", TARGET, lambda fs: fs[-PER_CLASS_VAL:])

    results_path = out / "finetune.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    pre_dir = out / "pretrain"
    if "pretrain" not in results:
        t0 = time.perf_counter()
        s = train(build_config("cifar10_resnet20_fast", {"data": str(pre_data), "epochs": args.pretrain_epochs,
                                                          "out": str(pre_dir), "quiet": True, "val_split": None}),
                  resume="auto")
        results["pretrain"] = {"best_val_acc": s.best_val_acc, "epochs": args.pretrain_epochs,
                               "train_images_per_class": per_class or "80%",
                               "classes": source, "seconds": time.perf_counter() - t0}
        results_path.write_text(json.dumps(results, indent=2))

    common = {"data": str(target), "epochs": args.epochs, "batch_size": 32, "lr": 0.05, "warmup_epochs": 1,
              "quiet": True, "val_split": None, "eval_every": args.epochs}
    arms = {
        "scratch": {},
        "fine-tuned": {"init": str(pre_dir), "head_only_epochs": 1, "backbone_lr_mult": 0.1},
    }
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm, extra in arms.items():
            key = f"{arm}/seed{seed}"
            if key in results:
                continue
            s = train(build_config("cifar10_resnet20_fast", {**common, **extra, "seed": seed,
                                                              "out": str(out / arm / f"seed{seed}")}), resume="auto")
            results[key] = {"val_acc": s.history[-1]["val_acc"], "seconds": s.seconds}
            results_path.write_text(json.dumps(results, indent=2))
            print(f"{key}: {s.history[-1]['val_acc']:.2%}", flush=True)

    print(f"pretrained on {', '.join(source)}: {results['pretrain']['best_val_acc']:.2%} "
          f"({results['pretrain']['epochs']} epochs)")
    print("| arm | " + " | ".join(f"seed {s}" for s in args.seeds.split(",")) + " | mean |")
    print("|---|" + "---:|" * (len(args.seeds.split(",")) + 1))
    for arm in arms:
        accs = [results[f"{arm}/seed{s}"]["val_acc"] for s in args.seeds.split(",")]
        print(f"| {arm} | " + " | ".join(f"{a:.2%}" for a in accs) + f" | {statistics.mean(accs):.2%} |")


if __name__ == "__main__":
    main()
