"""Bad options and bad files through the real commands: each must end with a clear message, never a traceback.

Every case runs `resnetkit ...` in a fresh process (files are made in a scratch folder from the
shared data, never in the repository) and records the exit code, whether a traceback was
printed, and the first line of the message.

Usage:
    python benchmarks/hostile_inputs.py --data ../shared/data --out runs/hostile
Writes <out>/hostile_inputs.json and prints a Markdown table (RELIABILITY.md has the results).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default="runs/hostile")
    args = p.parse_args()
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

    rows = []
    for label, argv in cases:
        shutil.rmtree(out / "t", ignore_errors=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "resnetkit", *argv], capture_output=True, text=True, timeout=900)
        text = (proc.stderr + proc.stdout).strip()
        lines = [l for l in text.splitlines() if l.strip() and not l.startswith("epoch ")]
        # The error line when there is one (an info line such as the recipe chosen may come first).
        message = next((l for l in lines if "error" in l.lower()),
                       next((l for l in lines if ": " in l), lines[-1] if lines else ""))
        rows.append({"case": label, "exit": proc.returncode, "traceback": "Traceback" in text,
                     "message": message[:300], "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{label:60s} exit {proc.returncode:3d} {'TRACEBACK ' if 'Traceback' in text else ''}{message[:150]}",
              flush=True)
    payload_ran = (scratch / "PAYLOAD-RAN").exists()
    (out / "hostile_inputs.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cases": rows,
                                                         "payload_ran": payload_ran}, indent=2))
    clean = sum(not r["traceback"] for r in rows)
    print(f"\n{clean} of {len(rows)} cases ended without a traceback; the pickle payload ran: {payload_ran}")


if __name__ == "__main__":
    main()
