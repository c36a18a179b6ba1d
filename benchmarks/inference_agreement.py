"""Top-1 agreement of resnetkit's default inference path with the fp32 model, on real images.

Loads a trained run, evaluates its validation images (the run's own CIFAR-10 split) with the
plain fp32 model and with ``optimize_for_inference`` (Conv+BN folding, channels-last, bf16
where the CPU has it, torch.compile), and reports how often their top-1 predictions agree,
and each one's accuracy. Images can be upsampled to test the path at another input size.

Usage:
    python benchmarks/inference_agreement.py RUN_DIR --data ../shared/data/cifar10 [--sizes 32,224] [--limit N]
"""

from __future__ import annotations

import argparse

import torch
from torch.nn import functional as F

from resnetkit.data.augment import Normalize
from resnetkit.data.images import resolve_image_data
from resnetkit.engine import load_run
from resnetkit.export import optimize_for_inference


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="the image folder the run was trained on")
    p.add_argument("--sizes", default="32", help="comma-separated input sizes (images are resized bilinearly)")
    p.add_argument("--limit", type=int, help="only the first N validation images")
    args = p.parse_args()

    run = load_run(args.run_dir, device="cpu")
    config = torch.load(run.path, map_location="cpu", weights_only=True)["config"]
    val = resolve_image_data(args.data, val_split=config["val_split"], seed=config["seed"]).val
    spec = run.input_spec
    normalize = Normalize(spec.mean, spec.std)
    reference = run.model.eval()
    fast = optimize_for_inference(reference)
    count = min(args.limit or len(val), len(val))
    for size in (int(s) for s in args.sizes.split(",")):
        agree = correct_ref = correct_fast = 0
        with torch.inference_mode():
            for i in range(0, count, 250):
                x = normalize(val.images[i : min(i + 250, count)])
                if size != x.shape[-1]:
                    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                y = val.labels[i : min(i + 250, count)]
                a, b = reference(x).argmax(1), fast(x).argmax(1)
                agree += (a == b).sum().item()
                correct_ref += (a == y).sum().item()
                correct_fast += (b == y).sum().item()
        print(f"{run.model_name} at {size}x{size}: {count} images, top-1 agreement {agree / count:.2%}; "
              f"accuracy fp32 {correct_ref / count:.2%}, optimized {correct_fast / count:.2%} ({fast.description})")


if __name__ == "__main__":
    main()
