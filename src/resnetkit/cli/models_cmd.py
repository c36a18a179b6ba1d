"""``resnetkit models [PATTERN]``: the registry as a table, or one model in detail."""

from __future__ import annotations

import argparse
import json

from resnetkit.models import create_model, get_model_entry, list_models, model_stats


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="a model name (details) or a pattern such as 'resnet*' or 'preact'")
    p.add_argument("--family", help="only this family (resnet, cifar-resnet, plain, vgg, ...)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
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
