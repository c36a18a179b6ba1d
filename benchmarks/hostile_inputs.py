"""Bad options and bad files through the real commands: each must end with a clear message, never a traceback.

Every case runs `resnetkit ...` in a fresh process (files are made in a scratch folder from the
shared data, never in the repository) and records the exit code, whether a traceback was
printed, the first line of the message, and for files carrying a payload whether it ran.
Tampered exported files (a pickle payload in every part of a .pt2 archive torch reads code
from, ONNX external data outside the file's folder, TorchScript pickles) are built from real
exports of the good run; for the .pt2 ones a plain ``torch.export.load`` (and a first call of
its module) is run too, to show which of them torch alone would have run.

Usage:
    python benchmarks/hostile_inputs.py --data ../shared/data --out runs/hostile
    python benchmarks/hostile_inputs.py --out runs/hostile --table   # RELIABILITY.md's table from the results
Writes <out>/hostile_inputs.json (RELIABILITY.md has the results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_files(data: Path, scratch: Path) -> dict[str, Path]:
    """The bad inputs, built from real files."""
    import soundfile as sf
    import torch
    from PIL import Image

    f: dict[str, Path] = {}
    cifar = data / "cifar10" / "train"
    good = scratch / "images"
    for cls in ("cat", "ship"):
        (good / cls).mkdir(parents=True, exist_ok=True)
        for p in sorted((cifar / cls).glob("*.jpg"))[:20]:
            shutil.copy(p, good / cls / p.name)
    f["images"] = good
    (scratch / "empty").mkdir(exist_ok=True)
    f["empty folder"] = scratch / "empty"
    (scratch / "noclasses").mkdir(exist_ok=True)
    shutil.copy(sorted((cifar / "cat").glob("*.jpg"))[0], scratch / "noclasses" / "a.jpg")
    f["folder without class folders"] = scratch / "noclasses"
    for name in ("a", "b"):
        (scratch / "emptyclass" / name).mkdir(parents=True, exist_ok=True)
    shutil.copy(sorted((cifar / "cat").glob("*.jpg"))[0], scratch / "emptyclass" / "a" / "x.jpg")
    f["class folder without images"] = scratch / "emptyclass"
    shutil.copytree(good / "cat", scratch / "oneclass" / "cat", dirs_exist_ok=True)
    f["one class"] = scratch / "oneclass"
    jpg = sorted((cifar / "dog").glob("*.jpg"))[0].read_bytes()
    (scratch / "corrupt.jpg").write_bytes(jpg[: len(jpg) // 3])
    f["truncated JPEG"] = scratch / "corrupt.jpg"
    (scratch / "zero.png").write_bytes(b"")
    f["0-byte PNG"] = scratch / "zero.png"
    (scratch / "text.jpg").write_text("this is not an image")
    f["text named .jpg"] = scratch / "text.jpg"
    Image.fromarray((np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)).save(scratch / "deep.png")
    f["16-bit PNG"] = scratch / "deep.png"
    Image.new("1", (1, 1)).save(scratch / "bomb.png")
    raw = bytearray((scratch / "bomb.png").read_bytes())
    raw[16:24] = struct.pack(">II", 14000, 14000)  # a 14000x14000 header on a tiny file
    (scratch / "bomb.png").write_bytes(bytes(raw))
    f["14000x14000 PNG header"] = scratch / "bomb.png"
    wav = sorted((data / "fsdd" / "recordings").glob("*.wav"))[0]
    (scratch / "zero.wav").write_bytes(b"")
    f["0-byte WAV"] = scratch / "zero.wav"
    b = bytearray(wav.read_bytes())
    b[24:28] = struct.pack("<I", 3)
    (scratch / "rate3.wav").write_bytes(bytes(b))
    f["WAV header: 3 Hz"] = scratch / "rate3.wav"
    b = bytearray(wav.read_bytes())
    b[40:44] = struct.pack("<I", 2**32 - 1)
    b[22:24] = struct.pack("<H", 65535)
    (scratch / "channels.wav").write_bytes(bytes(b))
    f["WAV header: 65535 channels, 4 GB"] = scratch / "channels.wav"
    sf.write(str(scratch / "long.wav"), np.random.default_rng(0).normal(0, 0.1, 8000 * 600).astype(np.float32), 8000)
    f["10-minute WAV"] = scratch / "long.wav"
    (scratch / "zero.pt").write_bytes(b"")
    f["0-byte checkpoint"] = scratch / "zero.pt"
    (scratch / "random.pt").write_bytes(np.random.default_rng(1).bytes(4096))
    f["random bytes .pt"] = scratch / "random.pt"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {scratch / 'PAYLOAD-RAN'}",))

    torch.save({"format": "resnetkit-checkpoint-1", "x": Payload()}, scratch / "payload.pt")
    # the marker of every payload: benchmarks check it after each case
    f["pickle payload .pt"] = scratch / "payload.pt"
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), scratch / "tv.pth")
    f["torchvision weights"] = scratch / "tv.pth"
    # Someone else's ONNX model: a graph, but no classes and no preprocessing.
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.randn(2, 4),), str(scratch / "foreign.onnx"), dynamo=True,
                      verbose=False)
    f["ONNX file without resnetkit metadata"] = scratch / "foreign.onnx"
    (scratch / "cut.onnx").write_bytes(b"\x08\x07" + np.random.default_rng(2).bytes(2000))
    f["truncated ONNX"] = scratch / "cut.onnx"
    return f


def make_data_folders(data: Path, scratch: Path) -> dict[str, Path]:
    """Data folders that hung or broke a run (issue 22), built from real CIFAR-10 images."""
    from PIL import Image

    cifar = data / "cifar10" / "train"

    def folder(name: str, classes: dict[str, str], size: int | None = None, count: int = 10) -> Path:
        root = scratch / name
        for folder_name, cls in classes.items():
            (root / folder_name).mkdir(parents=True, exist_ok=True)
            for p in sorted((cifar / cls).glob("*.jpg"))[:count]:
                target = root / folder_name / p.name
                Image.open(p).resize((size, size)).save(target) if size else shutil.copy(p, target)
        return root

    f = {"link to /": folder("linkroot", {"cat": "cat"})}
    os.symlink("/", f["link to /"] / "everything")
    f["non-UTF-8 class folder"] = folder("utf8", {"cat": "cat", os.fsdecode(b"\xff\xfeship"): "ship"})
    f["16 images of 128 px, batch 64"] = folder("fewer", {"cat": "cat", "ship": "ship"}, size=128)
    unreadable = scratch / "unreadable"
    folder("unreadable/train", {"cat": "cat", "ship": "ship"}, size=128)
    folder("unreadable/val", {"cat": "cat", "ship": "ship"}, size=128)
    for p in (unreadable / "train").rglob("*.jpg"):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    f["every training image truncated"] = unreadable
    # last: the explain case after it reads the run it trains
    f["$ in class names"] = folder("dollars", {"$x^$": "cat", "cost $\\undefinedmacro$": "ship"})
    return f


def make_exported_files(run: Path, scratch: Path, marker: Path) -> tuple[list[tuple[str, Path]], dict[str, bool]]:
    """Tampered exports of ``run``: (label, file) pairs, and for each .pt2 place whether torch alone runs it."""
    from resnetkit.testing.hostile_files import (PT2_PAYLOADS, onnx_with_external_data, tampered_pt2,
                                                 torchscript_with_payload)

    good = {}
    for fmt, ext in (("pt2", "pt2"), ("onnx", "onnx"), ("torchscript", "pt")):
        good[fmt] = scratch / f"good.{ext}"
        subprocess.run([sys.executable, "-m", "resnetkit", "export", "--checkpoint", str(run), "--format", fmt,
                        "--out", str(good[fmt])], check=True, capture_output=True)
    files: list[tuple[str, Path]] = []
    torch_alone: dict[str, bool] = {}
    for i, place in enumerate(PT2_PAYLOADS):
        evil = tampered_pt2(good["pt2"], place, scratch / f"evil-{i}.pt2", marker)
        files.append((f"pt2: payload in the {place}", evil))
        probe = scratch / f"torch-alone-{i}"
        control = tampered_pt2(good["pt2"], place, scratch / f"control-{i}.pt2", probe)
        # torch alone: load, build the module, call it on the sample inputs (guard code runs at the first call).
        subprocess.run([sys.executable, "-c", f"import torch; ep = torch.export.load({str(control)!r}); "
                        "ep.module()(*ep.example_inputs[0])"], capture_output=True, timeout=300)
        torch_alone[place] = probe.exists()
    folder = scratch / "onnx-external"
    folder.mkdir()
    files += [("ONNX: external data ../../etc/passwd", onnx_with_external_data(good["onnx"], folder / "up.onnx",
                                                                               "../../etc/passwd")),
              ("ONNX: external data /etc/passwd", onnx_with_external_data(good["onnx"], folder / "abs.onnx",
                                                                          "/etc/passwd")),
              ("ONNX: external data through a symlink to /etc/passwd",
               onnx_with_external_data(good["onnx"], folder / "link.onnx", "weights.bin", link_to="/etc/passwd")),
              ("TorchScript: payload in data.pkl", torchscript_with_payload(good["torchscript"], "data.pkl",
                                                                             scratch / "evil-data.pt", marker)),
              ("TorchScript: payload in constants.pkl",
               torchscript_with_payload(good["torchscript"], "constants.pkl", scratch / "evil-constants.pt", marker))]
    return files, torch_alone


def markdown_table(results: Path) -> str:
    """The cases of a finished run (its hostile_inputs.json) as RELIABILITY.md's table; scratch paths as ``...``."""
    record = json.loads(results.read_text())
    scratch = str(results.parent / "files")
    lines = ["| case | exit | traceback | payload ran | message |", "| --- | ---: | --- | --- | --- |"]
    for row in record["cases"]:
        message = row["message"].replace(scratch, "...").replace(str(results.parent), "...").replace("|", "\\|")
        message = message if len(message) <= 170 else message[:167] + "..."
        lines.append(f"| {row['case']} | {row['exit']} | {'YES' if row['traceback'] else 'no'} | "
                     f"{'YES' if row.get('payload_ran') else 'no'} | {message} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default="runs/hostile")
    p.add_argument("--table", action="store_true", help="print the Markdown table of the results in --out and stop")
    args = p.parse_args()
    if args.table:
        print(markdown_table(Path(args.out).resolve() / "hostile_inputs.json"))
        return
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    scratch = out / "files"
    scratch.mkdir(parents=True)
    f = make_files(Path(args.data), scratch)
    run = out / "run"
    quick = ["--epochs", "1", "--quiet", "--device", "cpu"]

    def train(*extra):
        return ["train", *quick, "--out", str(out / "t"), *extra]

    # A good run to point evaluate/predict at.
    subprocess.run([sys.executable, "-m", "resnetkit", "train", *quick, "--data", str(f["images"]), "--out", str(run)],
                   check=True, capture_output=True)
    cases = [
        # options
        ("--grad-clip -1", train("--grad-clip", "-1")),
        ("--lr nan", train("--lr", "nan")),
        ("--lr inf", train("--lr", "inf")),
        ("--lr 0", train("--lr", "0")),
        ("--label-smoothing nan", train("--label-smoothing", "nan")),
        ("--label-smoothing 1", train("--label-smoothing", "1")),
        ("--img-size 0", train("--img-size", "0")),
        ("--device tpu", train("--device", "tpu")),
        ("--device cuda (no GPU)", train("--device", "cuda")),
        ("--batch-size 0", train("--batch-size", "0")),
        ("--epochs -1", ["train", "--epochs", "-1", "--quiet"]),
        ("--momentum 2", train("--momentum", "2")),
        ("--weight-decay -1", train("--weight-decay", "-1")),
        ("--val-split 1.5", train("--val-split", "1.5")),
        ("--ema-decay 1", train("--ema-decay", "1")),
        ("--warmup-epochs -1", train("--warmup-epochs", "-1")),
        ("--schedule step without milestones", train("--schedule", "step")),
        ("--model resnet21", train("--model", "resnet21")),
        ("--model-arg width_mult=-1", train("--model-arg", "width_mult=-1")),
        ("--activation swishy", train("--activation", "swishy")),
        ("--augment fancy", train("--augment", "fancy")),
        ("--sample-rate 0 (audio)", train("--data", str(Path(args.data) / "fsdd" / "recordings"), "--sample-rate", "0")),
        ("--clip-seconds -1 (audio)", train("--data", str(Path(args.data) / "fsdd" / "recordings"), "--clip-seconds", "-1")),
        ("--fsdd-split speakers:bob", train("--data", str(Path(args.data) / "fsdd" / "recordings"), "--fsdd-split", "speakers:bob")),
        ("--recipe no_such", train("--recipe", "no_such")),
        ("--workers -1", train("--workers", "-1")),
        ("--max-steps 0", train("--max-steps", "0")),
        ("--time-budget-min 0", train("--time-budget-min", "0")),
        ("--resume and --auto-resume", train("--resume", str(run), "--auto-resume")),
        ("--top-k 0", ["predict", "--checkpoint", str(run), str(f["16-bit PNG"]), "--top-k", "0"]),
        # data
        ("--data missing folder", train("--data", str(scratch / "nowhere"))),
        ("--data empty folder", train("--data", str(f["empty folder"]))),
        ("--data folder without class folders", train("--data", str(f["folder without class folders"]))),
        ("--data class folder without images", train("--data", str(f["class folder without images"]))),
        ("--data one class", train("--data", str(f["one class"]))),
        ("--data of another model's classes (evaluate)", ["evaluate", "--checkpoint", str(run), "--data", str(f["one class"])]),
        # files to predict
        ("predict: truncated JPEG", ["predict", "--checkpoint", str(run), str(f["truncated JPEG"])]),
        ("predict: 0-byte PNG", ["predict", "--checkpoint", str(run), str(f["0-byte PNG"])]),
        ("predict: text named .jpg", ["predict", "--checkpoint", str(run), str(f["text named .jpg"])]),
        ("predict: 16-bit PNG", ["predict", "--checkpoint", str(run), str(f["16-bit PNG"])]),
        ("predict: 14000x14000 PNG header", ["predict", "--checkpoint", str(run), str(f["14000x14000 PNG header"])]),
        ("predict: missing file", ["predict", "--checkpoint", str(run), str(scratch / "nope.jpg")]),
        ("predict: folder without images", ["predict", "--checkpoint", str(run), str(f["empty folder"])]),
        # checkpoints
        ("evaluate: 0-byte checkpoint", ["evaluate", "--checkpoint", str(f["0-byte checkpoint"]), "--data", str(f["images"])]),
        ("evaluate: random bytes .pt", ["evaluate", "--checkpoint", str(f["random bytes .pt"]), "--data", str(f["images"])]),
        ("evaluate: pickle payload .pt", ["evaluate", "--checkpoint", str(f["pickle payload .pt"]), "--data", str(f["images"])]),
        ("--resume from torchvision weights", train("--resume", str(f["torchvision weights"]))),
        ("--resume a run directory without last.pt", train("--resume", str(f["empty folder"]))),
        ("--init of another architecture", train("--init", str(f["torchvision weights"]), "--model", "resnet50")),
        ("same --out as a finished run", train("--out", str(run))),
        # exported files
        ("export --format tflite", ["export", "--checkpoint", str(run), "--format", "tflite"]),
        ("export --int8 to pt2", ["export", "--checkpoint", str(run), "--format", "pt2", "--int8"]),
        ("export --out a folder", ["export", "--checkpoint", str(run), "--format", "onnx", "--out", str(scratch)]),
        ("evaluate: ONNX file without resnetkit metadata",
         ["evaluate", "--checkpoint", str(f["ONNX file without resnetkit metadata"]), "--data", str(f["images"])]),
        ("predict: truncated ONNX", ["predict", "--checkpoint", str(f["truncated ONNX"]), str(f["16-bit PNG"])]),
        ("evaluate --precision int8 --amp bf16",
         ["evaluate", "--checkpoint", str(run), "--data", str(f["images"]), "--precision", "int8", "--amp", "bf16"]),
    ]
    audio_folder = scratch / "audio"
    for name, key in (("a", "0-byte WAV"), ("b", "WAV header: 3 Hz"), ("c", "WAV header: 65535 channels, 4 GB"),
                      ("d", "10-minute WAV")):
        (audio_folder / name).mkdir(parents=True, exist_ok=True)
        for wav in sorted((Path(args.data) / "fsdd" / "recordings").glob(f"{'abcd'.index(name)}_*.wav"))[:8]:
            shutil.copy(wav, audio_folder / name / wav.name)
        shutil.copy(f[key], audio_folder / name / f[key].name)
    cases.append(("--data audio folder with 0-byte, 3 Hz, 65535-channel and 10-minute files",
                  train("--data", str(audio_folder), "--val-split", "0.25")))
    cases.append(("same, --on-corrupt stop", train("--data", str(audio_folder), "--on-corrupt", "stop", "--overwrite")))
    # data folders that hung or broke a run
    folders = make_data_folders(Path(args.data), scratch)
    cases += [(f"--data: {name}", train("--data", str(path), "--batch-size", "64", "--val-split", "0.2", "--overwrite"))
              for name, path in folders.items()]
    cases.append(("explain: $ in class names", ["explain", "--checkpoint", str(out / "t"), str(f["16-bit PNG"]),
                                                "--out", str(scratch / "explained")]))
    # tampered exported files, in every command that reads them
    marker = scratch / "PAYLOAD-RAN"
    exported, torch_alone = make_exported_files(run, scratch, marker)
    for label, path in exported:
        cases.append((f"evaluate: {label}", ["evaluate", "--checkpoint", str(path), "--data", str(f["images"])]))
        cases.append((f"predict: {label}", ["predict", "--checkpoint", str(path), str(f["16-bit PNG"])]))
        if label.startswith("pt2"):
            cases.append((f"serve: {label}", ["serve", "--checkpoint", str(path), "--port", "0"]))

    rows = []
    for label, argv in cases:
        if not label.startswith("explain"):  # explain reads the run the case before it trained
            shutil.rmtree(out / "t", ignore_errors=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "resnetkit", *argv], capture_output=True, text=True,
                                  timeout=120 if argv[0] == "serve" else 900)
        except subprocess.TimeoutExpired as err:  # a server that started: the file was accepted
            proc = subprocess.CompletedProcess(argv, -1, err.stdout or "", f"still running after {err.timeout} s")
        text = (proc.stderr + proc.stdout).strip()
        lines = [l for l in text.splitlines() if l.strip() and not l.startswith("epoch ")]
        # The error line when there is one (an info line such as the recipe chosen may come first).
        message = next((l for l in lines if l.startswith("resnetkit ") and ": error:" in l),
                       next((l for l in lines if "error" in l.lower()),
                            next((l for l in lines if ": " in l), lines[-1] if lines else "")))
        traceback = "Traceback" in text or "Logging error" in text
        ran = marker.exists()
        marker.unlink(missing_ok=True)
        rows.append({"case": label, "exit": proc.returncode, "traceback": traceback, "payload_ran": ran,
                     "message": message[:300], "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{label:60s} exit {proc.returncode:3d} {'TRACEBACK ' if traceback else ''}"
              f"{'PAYLOAD RAN ' if ran else ''}{message[:150]}", flush=True)
    (out / "hostile_inputs.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cases": rows,
                                                         "pt2_payload_runs_under_torch_alone": torch_alone},
                                                        indent=2))
    clean = sum(not r["traceback"] for r in rows)
    ran = [r["case"] for r in rows if r["payload_ran"]]
    print(f"\n{clean} of {len(rows)} cases ended without a traceback; a payload ran in {len(ran)} case(s) {ran}")
    print("pt2 places whose payload a plain torch.export.load (and a first call) runs: "
          f"{sum(torch_alone.values())} of {len(torch_alone)}: "
          + ", ".join(f"{place} {'yes' if alone else 'no'}" for place, alone in torch_alone.items()))


if __name__ == "__main__":
    main()
