"""``resnetkit explain``: Grad-CAM PNGs (input, map over it, top-k classes) for image or audio files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from resnetkit.explain.gradcam import METHODS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run directory or a last.pt/best.pt file")
    p.add_argument("inputs", nargs="+", help="files or folders")
    p.add_argument("--out", required=True, help="folder for the PNGs (created)")
    p.add_argument("--target", help="class to explain, by name or index (default: each file's predicted class; "
                   "a multi-label run explains each label it predicts, one PNG per label)")
    p.add_argument("--method", choices=METHODS, default="gradcam")
    p.add_argument("--layer", help="module name to read the map from (default: the model's last stage)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object per input")


def run(args: argparse.Namespace) -> int:
    from resnetkit.engine.inference import expand_inputs, load_run
    from resnetkit.explain import explain_inputs

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    loaded = load_run(args.checkpoint, device=args.device)
    items = list(expand_inputs(args.inputs, loaded.input_spec))
    if not items:
        raise ValueError(f"nothing to explain: no {loaded.kind} files among the inputs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = explain_inputs(loaded, items, target=args.target, method=args.method, top_k=args.top_k,
                             layer=args.layer)
    used: set[str] = set()
    failed = 0
    # A multi-label run explains each label it predicts: one result (and PNG) per label, named by it.
    per_label = loaded.multilabel and args.target is None
    for result in results:
        record = {"source": result.source}
        if result.error:
            failed += 1
            record["error"] = result.error
            print(json.dumps(record) if args.json else f"{result.source}: error: {result.error}")
            continue
        stem = Path(result.source).stem if result.source not in ("upload", "tensor", "PIL image") else "input"
        path = result.save(out / _png_name(f"{stem}.{_safe(result.target)}" if per_label else stem, used))
        record.update(target=result.target, method=result.method, layer=result.layer, top_k=result.top_k,
                      png=str(path))
        if args.json:
            print(json.dumps(record))
        else:
            best = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result.top_k)
            print(f"{result.source}: {best}; {result.method} of {result.target} -> {path}")
    return 1 if failed == len(results) else 0


def _safe(name: str) -> str:
    """A label as part of a file name (labels come from users' tables)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))[:60] or "label"


def _png_name(stem: str, used: set[str]) -> str:
    """``stem.gradcam.png``, numbered when two inputs share a stem (cat/1.jpg and dog/1.jpg)."""
    name, n = f"{stem}.gradcam.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.gradcam.png"
    used.add(name)
    return name
