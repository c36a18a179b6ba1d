"""The checkpoint format of a run: writing it atomically, reading it safely.

Checkpoints are read with ``torch.load(weights_only=True)``: a file that holds anything but
tensors and plain containers (a pickle payload) is refused before any of it runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ..models.weights import CheckpointError
from ..runtime.files import atomic_write, torch_load_weights_only

CHECKPOINT_FORMAT = "resnetkit-checkpoint-1"
EXPECTED = "a resnetkit run checkpoint (last.pt/best.pt written by `resnetkit train`)"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A run checkpoint as a dict; CheckpointError (naming the file and what was expected) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (expected {EXPECTED})")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); expected {EXPECTED}. The run that wrote it was "
                              "probably killed while writing it")
    try:
        state = torch_load_weights_only(path, EXPECTED)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not {EXPECTED}; for torchvision/timm weights use "
            "create_model(name, checkpoint_path=...) or `resnetkit train --init FILE`"
        )
    missing = [k for k in ("model_name", "model_args", "classes", "input", "model") if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; expected {EXPECTED}")
    return state


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file: whether two nodes hold the same checkpoint, without sending it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint serves with: the EMA of the weights when the run kept one, else the model's.

    ``AveragedModel`` stores the averaged model under ``module.`` next to its counter.
    """
    ema = state.get("ema")
    if ema is not None:
        return {k[len("module."):]: v for k, v in ema.items() if k.startswith("module.")}
    return state["model"]


def save_weights_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` and prove it can be written, before hours of training depend on it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"cannot write the run directory {folder}: {err.strerror or err}; choose another folder with --out"
        ) from None
    return folder


def find_checkpoint(path: str | Path, weights: str = "best") -> Path:
    """The checkpoint file of a run directory (``weights``.pt, else last.pt, else best.pt) or the file itself."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / f"{weights}.pt", path / "last.pt", path / "best.pt"]
        ckpt = next((c for c in candidates if c.is_file()), None)
        if ckpt is None:
            raise FileNotFoundError(f"{path} holds no checkpoint (expected best.pt or last.pt from `resnetkit train`)")
        return ckpt
    if path.is_file():
        return path
    raise FileNotFoundError(f"checkpoint {path} does not exist (expected a run directory or a .pt file)")
