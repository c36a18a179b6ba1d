"""``LoadedRun.predict``: the caller's batch runs as one batch (a server's --max-batch stands)."""

from __future__ import annotations

import torch

from resnetkit import create_model
from resnetkit.data import ImageInputSpec
from resnetkit.engine.inference import LoadedRun


class _Counting(torch.nn.Module):
    """The model, recording the batch size of every call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return self.model(x)


class _CountedRun(LoadedRun):
    def inference_model(self, amp="auto"):
        if "counted" not in self._inference_models:
            self._inference_models["counted"] = _Counting(self.model)
        return self._inference_models["counted"]


def _run():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=3).eval()
    spec = ImageInputSpec(3, (32, 32), (0.5,) * 3, (0.25,) * 3)
    return _CountedRun(model, ["a", "b", "c"], spec, "resnet20", "run", torch.device("cpu"))


def test_the_callers_batch_is_one_batch():
    run = _run()
    images = torch.randint(0, 256, (130, 3, 32, 32), dtype=torch.uint8)
    results = run.predict(images, top_k=2)
    assert len(results) == 130 and run.inference_model().sizes == [130]  # was cut into 64 + 64 + 2


def test_batch_size_cuts_long_lists_and_results_do_not_depend_on_it():
    run = _run()
    images = torch.randint(0, 256, (130, 3, 32, 32), dtype=torch.uint8)
    whole = run.predict(images, top_k=3)
    cut = run.predict(images, top_k=3, batch_size=64)
    assert run.inference_model().sizes == [130, 64, 64, 2]
    assert [r["top_k"][0]["class"] for r in whole] == [r["top_k"][0]["class"] for r in cut]
    for a, b in zip(whole, cut):
        assert abs(a["top_k"][0]["probability"] - b["top_k"][0]["probability"]) < 1e-5
