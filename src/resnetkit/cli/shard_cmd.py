"""``resnetkit shard``: a class folder or label file written as WebDataset tar shards (``--data`` reads them)."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="FOLDER_OR_LABEL_FILE",
                   help="class folders (PATH/<class>/<file>, or PATH/train + PATH/val), an FSDD folder, or a label "
                   "file (.csv, .tsv, .jsonl), images or audio")
    p.add_argument("--out", required=True, help="the folder the shards and shards.json are written to")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--val-split", type=float, default=None,
                   help="hold out this stratified fraction as val shards when the source has no split of its own "
                   "(default: the source's split: val/ folder, split column, FSDD's test indices; else none)")
    p.add_argument("--seed", type=int, default=0, help="the split and the order of the training samples")
    p.add_argument("--path-col", default="path", help="label file: its column of file paths")
    p.add_argument("--label-col", default="label", help="label file: its column of labels")
    p.add_argument("--fsdd-split", default="official", help="FSDD: official or speakers:NAME[,NAME]")
    p.add_argument("--on-corrupt", choices=["skip", "stop"], default="skip",
                   help="an unreadable file: left out and named (skip), or stop")
    p.add_argument("--overwrite", action="store_true", help="replace shards already in --out")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    from resnetkit.data.shard_writer import write_shards

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    summary = write_shards(args.data, args.out, shard_size=args.shard_size, val_split=args.val_split, seed=args.seed,
                           path_col=args.path_col, label_col=args.label_col, fsdd_split=args.fsdd_split,
                           on_corrupt=args.on_corrupt, overwrite=args.overwrite)
    if args.json:
        print(json.dumps({"out": str(summary.out), "kind": summary.kind, "classes": summary.classes,
                          "samples": summary.counts, "shards": summary.shards, "skipped": len(summary.skipped)}))
    else:
        print(f"done: {summary}")
    return 0
