"""What a pickle imports, read from its opcodes: every protocol, torch's zip archives, text and raw bytes."""

from __future__ import annotations

import io
import json
import os
import pickle

import pytest
import torch

from resnetkit.runtime.pickles import could_run_code, is_zip, pickle_imports


class _Payload:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_a_payload_is_seen_in_every_protocol(protocol):
    data = pickle.dumps({"weights": [1, 2], "evil": _Payload()}, protocol=protocol)
    assert could_run_code(data)
    assert pickle_imports(data) == [f"{os.system.__module__}.system"]


def test_memoized_names_are_followed():
    # Protocol 4 memoizes the module's name: getcwd's STACK_GLOBAL takes it from the memo (and the
    # second payload reuses the memoized function itself, so system is imported once).
    data = pickle.dumps([_Payload(), _Payload(), os.getcwd], protocol=4)
    assert pickle_imports(data) == [f"{os.system.__module__}.system", f"{os.getcwd.__module__}.getcwd"]


def test_a_torch_archive_names_its_tensor_rebuilders():
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer)
    data = buffer.getvalue()
    assert is_zip(data) and "torch._utils._rebuild_tensor_v2" in pickle_imports(data)


@pytest.mark.parametrize("data", [
    json.dumps({"config": {"weight_0": {"use_pickle": False}}}).encode(),  # the payload configs of a .pt2
    b"little", b"6\n", b"pt2", b"0",  # its small text members
    torch.randn(64).numpy().tobytes(), bytes(256),  # raw tensor bytes
    pickle.dumps({"a": [1, 2.5, "text"], "b": None}, protocol=2),  # plain data
])
def test_data_that_cannot_call_anything(data):
    assert not could_run_code(data) and pickle_imports(data) == []
