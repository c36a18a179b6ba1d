"""The README's spelling ``resnetkit.optimize_for_inference(model)`` works as written."""

from __future__ import annotations

from pathlib import Path

import torch

import resnetkit
from resnetkit.export import InferenceModule

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_spelling_is_importable_and_runs():
    assert "resnetkit.optimize_for_inference(model)" in README.read_text()
    model = resnetkit.create_model("resnet20").eval()
    fast = resnetkit.optimize_for_inference(model)  # as the README writes it (compiles on its first call)
    assert isinstance(fast, InferenceModule) and "torch.compile" in fast.description
    eager = resnetkit.optimize_for_inference(model, compile=False)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref, out = model(x), eager(x)
    assert out.shape == (4, 10) and (out - ref).abs().max() <= 5e-2 * ref.abs().max()
