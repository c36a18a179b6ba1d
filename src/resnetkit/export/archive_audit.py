"""Reading a ``.pt2`` archive's bytes before torch does, so that loading it can never run code.

``torch.export.load`` is not safe on an untrusted file, whatever its version: it unpickles
parts of the archive with ``weights_only=False`` (weights and constants marked
``use_pickle``, legacy weight files, Python objects, and since 2.6 the sample inputs after
the safe load fails), ``exec``-s the program's ``guards_code`` strings when the module is
built, and hands every symbolic shape expression to ``sympy.sympify``, which evaluates it.
All three take text an attacker writes.

The audit does not depend on which of these a given torch version does. It reads the
archive's members as bytes and refuses the file unless every one is plain data:

- a member a payload config declares as raw tensor bytes (never unpickled) is skipped;
- any other member that is a PyTorch archive, or whose bytes are a pickle that imports or
  calls anything, must load with ``torch.load(weights_only=True)`` (tensors and plain
  containers only: loading the same bytes without the restriction then builds the same
  objects and calls nothing else);
- Python and TorchScript objects among the constants are refused outright (resnetkit never
  writes them);
- in the program's JSON, every guard must be a comparison of input sizes with integers and
  every symbolic expression a formula over shape symbols: nothing that names a function.

The caller loads the very bytes it audited (no second read of the file).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ..runtime.files import UntrustedFileError, torch_load_weights_only
from ..runtime.pickles import could_run_code, is_zip

# Constants stored as pickled Python objects or TorchScript objects (torch's file name prefixes).
_OBJECT_PREFIXES = ("custom_obj", "opaque_obj")

# A guard torch writes for an input's shape, e.g. "L['x'].size()[0] <= 1048576": input sizes,
# strides and integers compared and combined; no names, so nothing to call.
_GUARD_TOKEN = re.compile(r"""\s+|L\['[A-Za-z_][A-Za-z0-9_]*'\](?:\[\d+\])*|\.size\(\)|\.stride\(\)|\.storage_offset\(\)
                              |\[\d+\]|\d+|==|!=|<=|>=|<|>|//|\*\*|[-+*%()]|\band\b|\bor\b|\bnot\b""", re.VERBOSE)
# A symbolic shape expression as torch writes it, "s77", "2*s0 + 1" or
# "Symbol('s77', positive=True, integer=True)": numbers, operators, quoted shape symbols,
# keyword arguments and names; every name must be a sympy class or a shape symbol.
_EXPR_TOKEN = re.compile(r"""\s+|\d+\.\d+(?:e[-+]?\d+)?|\d+|'[a-z]+\d+'|[A-Za-z_][A-Za-z0-9_]*
                             |\*\*|==|!=|<=|>=|[-+*/%()<>,=~&|]""", re.VERBOSE)
_SHAPE_SYMBOL = re.compile(r"[a-z]+\d+")  # s0, s77, u3: the names torch gives shape symbols


def audit_pt2_archive(data: bytes, path: str | Path) -> None:
    """Refuse (UntrustedFileError) a ``.pt2`` archive that would run code when torch loads it.

    A file that is not a zip archive at all is a ValueError. Both messages name ``path``.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError(f"{path} is not a .pt2 archive (not a zip file)") from None
    with archive:
        members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        raw = _raw_tensor_members(archive, members, path)
        for name in members:
            if name in raw:
                continue
            content = archive.read(name)
            _audit_member(content, name, path)
            if name.endswith(".json"):
                _audit_program_json(content, name, path)


def _raw_tensor_members(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], path: str | Path) -> set[str]:
    """Members that a payload config declares as raw tensor bytes and no config declares as pickled."""
    raw: set[str] = set()
    pickled: set[str] = set()
    for name in members:
        if not name.endswith("_config.json"):
            continue
        try:
            config = json.loads(archive.read(name)).get("config", {})
        except (ValueError, AttributeError):
            continue  # not a payload config; audited as any other JSON member
        folder = PurePosixPath(name).parent
        for fqn, entry in config.items() if isinstance(config, dict) else ():
            file_name = entry.get("path_name") if isinstance(entry, dict) else None
            if not isinstance(file_name, str):
                continue
            if file_name.startswith(_OBJECT_PREFIXES):
                raise UntrustedFileError(
                    f"{path} was refused: its constant {fqn!r} is a pickled Python or TorchScript object "
                    f"({folder / file_name}), which runs code when loaded; files of `resnetkit export` hold only "
                    "tensors. Nothing in it was run")
            member = str(folder / file_name)
            (pickled if entry.get("use_pickle") else raw).add(member)
    return raw - pickled


def _audit_member(content: bytes, name: str, path: str | Path) -> None:
    if is_zip(content) or could_run_code(content):
        # torch may unpickle this member: it must hold only tensors and plain containers.
        torch_load_weights_only(f"{path} (its member {name})", "a .pt2 archive of tensors", data=content)


def _audit_program_json(content: bytes, name: str, path: str | Path) -> None:
    try:
        tree = json.loads(content)
    except ValueError:
        return  # not JSON after all: torch fails on it before evaluating anything
    for key, value in _walk(tree):
        if key == "guards_code" and isinstance(value, list):
            for guard in value:
                if not (isinstance(guard, str) and _only_tokens(guard, _GUARD_TOKEN)):
                    _refuse_code(path, name, "a guard that is not a comparison of input sizes", guard)
        elif key == "expr_str" and isinstance(value, str):
            if not _is_shape_expression(value):
                _refuse_code(path, name, "a symbolic shape expression that names more than shape symbols", value)
        elif key == "range_constraints" and isinstance(value, dict):
            for symbol in value:
                if not _is_shape_expression(symbol):
                    _refuse_code(path, name, "a range constraint on something that is not a shape symbol", symbol)


def _walk(tree: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON tree, depth first, without recursion (files may nest deeply)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                yield key, value
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _only_tokens(text: str, token: re.Pattern[str]) -> bool:
    pos = 0
    while pos < len(text):
        match = token.match(text, pos)
        if not match:
            return False
        pos = match.end()
    return True


def _is_shape_expression(text: str) -> bool:
    if not _only_tokens(text, _EXPR_TOKEN):
        return False
    names = re.findall(r"(?<!['\w.])[A-Za-z_][A-Za-z0-9_]*", re.sub(r"'[^']*'", "''", text))
    return all(_SHAPE_SYMBOL.fullmatch(n) or n in _sympy_names() for n in names)


_SYMPY_NAMES: frozenset[str] | None = None
# sympy's assumption keywords, as in Symbol('s0', positive=True, integer=True).
_ASSUMPTIONS = frozenset(
    "algebraic antihermitian commutative complex composite even extended_negative extended_nonnegative "
    "extended_nonpositive extended_nonzero extended_positive extended_real finite hermitian imaginary infinite "
    "integer irrational negative noninteger nonnegative nonpositive nonzero odd polar positive prime rational "
    "real transcendental zero".split())


def _sympy_names() -> frozenset[str]:
    """Names an expression may use: sympy's and torch's expression classes and assumption keywords.

    Classes only, never functions (``sympify``, ``lambdify``, ``parse_expr`` evaluate text), and
    no name of Python's builtins.
    """
    global _SYMPY_NAMES
    if _SYMPY_NAMES is None:
        import builtins

        import sympy
        import torch.utils._sympy.functions as torch_functions

        names = {n for module in (sympy, torch_functions) for n, v in vars(module).items()
                 if isinstance(v, type) and issubclass(v, sympy.Basic) and not n.startswith("_")}
        names |= {"oo", "zoo", "nan", "true", "false", "True", "False", "None", "int_oo"}
        names |= _ASSUMPTIONS
        _SYMPY_NAMES = frozenset(names - (set(dir(builtins)) - {"True", "False", "None"}))
    return _SYMPY_NAMES


def _refuse_code(path: str | Path, member: str, what: str, text: str) -> None:
    shown = text if len(text) <= 120 else text[:117] + "..."
    raise UntrustedFileError(f"{path} was refused: its member {member} holds {what} ({shown!r}), which torch would "
                             "evaluate as Python code when loading it. Nothing in it was run")
