"""Atomic writes, strict JSON, and loading checkpoints with weights_only: messages name the file."""

from __future__ import annotations

import io
import json
import os

import pytest
import torch

from resnetkit.runtime.files import UntrustedFileError, atomic_write, save_json, to_json, torch_load_weights_only


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    save_json({"top1": 0.5}, target)

    def broken(tmp):
        open(tmp, "w").write('{"top1": 0.')
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"top1": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_json_is_strict():
    assert json.loads(to_json({"loss": float("nan"), "x": [float("inf"), 1.0]})) == {"loss": None, "x": [None, 1.0]}


def test_weights_only_loading_names_what_a_payload_imports(tmp_path):
    marker = tmp_path / "ran"
    good, evil = tmp_path / "good.pt", tmp_path / "evil.pt"
    torch.save({"w": torch.ones(3)}, good)
    torch.save({"w": torch.ones(3), "x": _Payload(marker)}, evil)
    assert torch.equal(torch_load_weights_only(good, "weights")["w"], torch.ones(3))
    with pytest.raises(UntrustedFileError, match=r"evil.pt was refused: it asks to run code when loaded "
                                                 r"\(it imports (posix|nt)\.system\)"):
        torch_load_weights_only(evil, "weights")
    # The same for bytes in memory (a member of an archive), named as the caller says.
    buffer = io.BytesIO()
    torch.save([_Payload(marker)], buffer)
    with pytest.raises(UntrustedFileError, match=r"x.pt2 \(its member a.pt\) was refused"):
        torch_load_weights_only("x.pt2 (its member a.pt)", "tensors", data=buffer.getvalue())
    assert not marker.exists()


@pytest.mark.parametrize("content,match", [
    (b"", "is empty"),
    (b"not a checkpoint at all", "not a PyTorch checkpoint"),
])
def test_a_file_that_is_no_checkpoint_is_a_value_error(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        torch_load_weights_only(path, "a checkpoint")
    assert not isinstance(info.value, UntrustedFileError) and str(path) in str(info.value)
