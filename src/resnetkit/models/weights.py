"""Load weights from files: resnetkit runs, torchvision and timm checkpoints.

Reading never unpickles arbitrary objects: ``.pth``/``.pt`` go through
``torch.load(weights_only=True)`` and ``.safetensors`` through safetensors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..runtime.files import torch_load_weights_only

log = logging.getLogger(__name__)

# Keys under which training scripts commonly nest the state dict.
_NESTED_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "state_dict_ema", "model_ema")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` dict from .pth/.pt/.bin or .safetensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    expected = "a .pth/.pt state dict saved with torch.save, or a .safetensors file"
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        except Exception as err:  # a truncated or foreign file
            first = str(err).splitlines()[0] if str(err) else ""
            raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {first} (expected {expected})") from None
    else:
        try:
            obj = torch_load_weights_only(path, expected)
        except ValueError as err:  # a pickle payload is refused unread; a corrupt file is named
            raise CheckpointError(str(err)) from None
    for key in _NESTED_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors (found {type(obj).__name__})")
    return {_strip_prefix(k): v for k, v in obj.items()}


def _strip_prefix(key: str) -> str:
    # DataParallel/DDP add "module.", torch.compile adds "_orig_mod.".
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt RGB conv1 filters to ``in_chans`` inputs, as timm does.

    One channel sums the RGB filters (a gray image is R=G=B, so responses are unchanged);
    more channels repeat the RGB filters cyclically and rescale by 3/in_chans so the
    activation scale stays that of the pretrained net.
    """
    src = weight.shape[1]
    if src == in_chans:
        return weight
    w = weight.float()
    if in_chans == 1:
        out = w.sum(dim=1, keepdim=True)
    else:
        reps = -(-in_chans // src)
        out = w.repeat(1, reps, 1, 1)[:, :in_chans] * (src / in_chans)
    return out.to(weight.dtype)


def _first_conv_key(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    return None


def _classifier_keys(model: nn.Module) -> set[str]:
    get = getattr(model, "get_classifier", None)
    head = get() if get else None
    if head is None:
        return set()
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)] for p in head.parameters() if id(p) in names}


def load_checkpoint(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load weights from ``path`` into ``model`` (in place; returns the model).

    conv1 is adapted when the file's input channels differ from the model's, and the
    classifier is left at its fresh initialization when its shape differs (a checkpoint
    for 1000 classes into a 10-class model). Any other mismatch raises
    :class:`CheckpointError` listing the missing, unexpected and mis-shaped keys.
    """
    path = Path(path)
    load_weights(model, read_state_dict(path), path, strict)
    return model


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, strict: bool = True,
                 keep_head: bool = True) -> list[str]:
    """:func:`load_checkpoint` for weights already in memory (``path`` names their file in messages).

    ``keep_head=False`` leaves the classifier freshly initialized even when its shape fits
    (the same number of classes, but other ones). Returns what was adapted, for the log.
    """
    path = Path(path)
    state = {_strip_prefix(k): v for k, v in state.items()}
    report: list[str] = []
    own = model.state_dict()
    for prefix in getattr(model, "checkpoint_ignore_prefixes", ()):
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}

    conv_key = _first_conv_key(model)
    if conv_key and conv_key in state and conv_key in own:
        src, dst = state[conv_key], own[conv_key]
        if src.ndim == 4 and src.shape[1] != dst.shape[1] and src.shape[0] == dst.shape[0]:
            report.append(f"{conv_key} adapted from {src.shape[1]} to {dst.shape[1]} input channels")
            state[conv_key] = adapt_input_conv(src, dst.shape[1])

    head_keys = _classifier_keys(model)
    head_in_file = {k for k in state if k in head_keys}
    if head_in_file and (not keep_head or any(state[k].shape != own[k].shape for k in head_in_file)):
        for k in head_in_file:
            state.pop(k)
        head_in_file = set()
        report.append("classifier left freshly initialized (" +
                      ("other classes" if not keep_head else "its shape differs from the model's") + ")")

    missing = [k for k in own if k not in state]
    if not head_in_file:
        # A headless file (or one for another class count) still gives the whole backbone.
        missing = [k for k in missing if k not in head_keys]
    # BatchNorm's step counter is bookkeeping, not a weight; torchvision files from before 0.4 lack it.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    if shape or (strict and (missing or unexpected)):
        name = getattr(model, "model_name", type(model).__name__)
        raise CheckpointError(_mismatch_message(path, name, missing, unexpected, shape))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    report.insert(0, f"{sum(k in own for k in state)} of {len(own)} tensors loaded from {path.name}")
    for line in report:
        log.info("%s", line)
    return report


def _mismatch_message(path: Path, name: str, missing: list[str], unexpected: list[str], shape: list[str]) -> str:
    def listing(title: str, keys: list[str]) -> str:
        shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
        return f"\n  {title} ({len(keys)}): {shown}" if keys else ""

    return (
        f"checkpoint {path} does not fit model {name}: is it a checkpoint of another architecture?"
        + listing("missing in the file", missing)
        + listing("unexpected in the file", unexpected)
        + listing("shape mismatch", shape)
    )
