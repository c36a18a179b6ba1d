"""``resnetkit models [PATTERN]``: the registry as a table, or one model in detail."""

from __future__ import annotations

import argparse
import json

import torch

from resnetkit.models import (
    count_parameters,
    create_model,
    get_model_entry,
    list_models,
    list_pretrained,
    model_stats,
    pretrained_models,
)
from resnetkit.models.pretrained import TIMM_MODELS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="a model name (details) or a pattern such as 'resnet*' or 'preact'")
    p.add_argument("--family", help="only this family (resnet, cifar-resnet, plain, vgg, ...)")
    p.add_argument("--pretrained", action="store_true",
                   help="the models with published weights: tags, published ImageNet accuracy, parameters, file size")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        return _run_pretrained(args)
    if args.pattern and args.pattern in list_models():
        info = describe_model(args.pattern)
        print(json.dumps(info, indent=2) if args.json else format_details(info))
        return 0
    names = list_models(args.pattern, family=args.family)
    if not names:
        get_model_entry(args.pattern or "")  # raises with the closest names
        raise ValueError(f"no model matches {args.pattern!r} in family {args.family!r}")
    rows = []
    for name in names:
        stats = model_stats(name)
        rows.append(
            {
                "name": name,
                "family": get_model_entry(name).family,
                "params": stats["params"],
                "macs": stats["macs"],
                "input_size": list(stats["input_size"]),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0


def _run_pretrained(args: argparse.Namespace) -> int:
    have = pretrained_models()
    names = [n for n in list_models(args.pattern, family=args.family) if n in have]
    if not names:
        raise ValueError(f"no model matching {args.pattern or '*'!r}{f' in family {args.family!r}' if args.family else ''} "
                         f"has published weights; models with weights: {', '.join(have)}")
    rows = []
    for name in names:
        params = None
        for w in list_pretrained(name):
            if w.num_params is None and params is None:
                # timm does not state the count; its model's is the zoo model's (the same parameters).
                with torch.device("meta"):
                    params = count_parameters(create_model(name))
            rows.append(pretrained_row(w, params))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_pretrained_table(rows, timm_missing=not any(n in TIMM_MODELS for n in have)))
    return 0


def pretrained_row(w, params: int | None = None) -> dict:
    """One row of ``models --pretrained``; ``params`` stands in where the publisher states no count."""
    dc = w.data_config
    return {"model": w.model, "tag": w.tag, "default": w.default, "source": w.source, "acc1": w.acc1, "acc5": w.acc5,
            "params": w.num_params if w.num_params is not None else params, "file_mb": w.file_size_mb, "resize": w.resize_size, "crop": dc.input_size[-1],
            "interpolation": dc.interpolation, "url": w.url, "cache_path": str(w.cache_path)}


def format_pretrained_table(rows: list[dict], timm_missing: bool = False) -> str:
    header = (f"{'model':<18} {'tag':<16} {'source':<12} {'acc@1':>6} {'acc@5':>6} {'params':>8} {'file':>9}  "
              "resize/crop")
    lines = [header, "-" * len(header)]
    for r in rows:
        tag = r["tag"] + (" *" if r["default"] else "")
        acc1 = f"{r['acc1']:.2f}" if r["acc1"] is not None else "-"
        acc5 = f"{r['acc5']:.2f}" if r["acc5"] is not None else "-"
        params = _human(r["params"]) if r["params"] else "-"
        size = f"{r['file_mb']:.1f} MB" if r["file_mb"] else "-"
        lines.append(f"{r['model']:<18} {tag:<16} {r['source']:<12} {acc1:>6} {acc5:>6} {params:>8} {size:>9}  "
                     f"{r['resize']}/{r['crop']} {r['interpolation']}")
    lines += ["",
              "* the default (--pretrained without a tag). acc@1/acc@5: ImageNet-1K validation (%) as published with",
              "  the weights, at their preprocessing; timm states its accuracies in its results tables, not with the",
              "  weights. Files go to torch.hub's cache ($TORCH_HOME/hub/checkpoints) and are checked against the",
              "  sha256 prefix in their names. resnetkit resizes bilinearly: weights evaluated bicubic may differ slightly."]
    if timm_missing:
        lines.append(f"  With timm installed also {', '.join(TIMM_MODELS)} (pip install timm).")
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    header = f"{'model':<22} {'family':<14} {'params':>10} {'MACs':>10}  input"
    lines = [header, "-" * len(header)]
    for r in rows:
        size = "x".join(str(s) for s in r["input_size"])
        lines.append(f"{r['name']:<22} {r['family']:<14} {_human(r['params']):>10} {_human(r['macs']):>10}  {size}")
    return "\n".join(lines)


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def describe_model(name: str) -> dict:
    """Structure of one model: stages with their blocks, widths, feature_info, data config."""
    import torch
    from torch import nn

    entry = get_model_entry(name)
    with torch.device("meta"):
        model = create_model(name)
    stats = model_stats(name)
    levels = []
    for info, group in zip(model.feature_info, model.stages()):
        blocks = sum(len(m) for m in group if isinstance(m, nn.Sequential) and _is_block_list(m))
        levels.append(
            {"module": info.module, "blocks": blocks, "channels": info.num_chs, "reduction": info.reduction}
        )
    return {
        "name": name,
        "family": entry.family,
        "description": entry.description,
        "class": type(model).__name__,
        "params": stats["params"],
        "macs": stats["macs"],
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "stages": levels,
        "data_config": model.data_config.to_dict(),
    }


def _is_block_list(seq) -> bool:
    # A stage is a Sequential of residual/conv blocks; a VGG 'features' slice is a list of layers.
    return all(len(list(m.children())) > 0 for m in seq)


def format_details(info: dict) -> str:
    dc = info["data_config"]
    lines = [
        f"{info['name']}  ({info['family']}, {info['class']})",
        f"  {info['description']}",
        f"  parameters: {info['params']:,}   MACs: {info['macs']:,} at {'x'.join(map(str, dc['input_size']))}",
        f"  classes: {info['num_classes']}   features into the classifier: {info['num_features']}",
        "  stages (feature_info):",
        f"    {'level':<6}{'module':<12}{'blocks':>7}{'channels':>10}{'reduction':>11}",
    ]
    for i, s in enumerate(info["stages"]):
        blocks = s["blocks"] if s["blocks"] else "-"
        lines.append(f"    {i:<6}{s['module']:<12}{blocks:>7}{s['channels']:>10}{s['reduction']:>11}")
    lines.append(
        f"  input: {'x'.join(map(str, dc['input_size']))}, mean {tuple(round(m, 4) for m in dc['mean'])}, "
        f"std {tuple(round(s, 4) for s in dc['std'])}, interpolation {dc['interpolation']}, crop_pct {dc['crop_pct']}"
    )
    return "\n".join(lines)
