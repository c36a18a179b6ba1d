"""What a pickle would import, read from its opcodes without unpickling it.

``torch.load(weights_only=True)`` refuses a pickle that names anything but tensors and
plain containers, but its message differs between torch versions. Reading the opcode stream
tells the same thing without running it or parsing a message: which ``module.name`` globals
the stream imports, and whether it could call anything at all.
"""

from __future__ import annotations

import io
import pickletools
import zipfile

# Opcodes that import a name, call something, or hand data to the loader's hook: a pickle
# without any of them can only build numbers, strings and containers.
CODE_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD",
                          "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"})
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                      "SHORT_BINSTRING"})


def is_zip(data: bytes) -> bool:
    """A zip archive, as ``torch.save`` has written since 1.6 (the pickle is its ``data.pkl``)."""
    return data[:4] == b"PK\x03\x04"


def could_run_code(data: bytes) -> bool:
    """True when ``data`` read as a pickle reaches an opcode that imports or calls before it breaks off.

    Text and raw tensor bytes fail to parse within a few bytes. The scan ignores the stack,
    so it flags at least every such opcode the real unpickler would execute.
    """
    return any(name in CODE_OPCODES for name, _arg in _opcodes(data))


def pickle_imports(data: bytes) -> list[str]:
    """The ``module.name`` globals a pickle (or the ``data.pkl`` of a torch zip archive) imports, in order."""
    if is_zip(data):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                pickles = [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
        except (zipfile.BadZipFile, OSError, ValueError):
            return []
        return [name for p in pickles for name in pickle_imports(p)]
    imports: list[str] = []
    strings: list[str] = []  # string values pushed so far: STACK_GLOBAL takes module and name from them
    memo: dict[int, str] = {}
    memo_count = 0
    previous_string: str | None = None  # the string the previous opcode pushed, if it pushed one
    for name, arg in _opcodes(data):
        pushed: str | None = None
        if name in _STRINGS and isinstance(arg, (str, bytes)):
            pushed = arg if isinstance(arg, str) else arg.decode("latin-1")
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            pushed = memo.get(arg)
        elif name == "MEMOIZE":
            if previous_string is not None:
                memo[memo_count] = previous_string
            memo_count += 1
        elif name in ("BINPUT", "LONG_BINPUT", "PUT") and previous_string is not None:
            memo[arg] = previous_string
        elif name in ("GLOBAL", "INST") and isinstance(arg, str):
            imports.append(arg.replace(" ", "."))
        elif name == "STACK_GLOBAL" and len(strings) >= 2:
            imports.append(f"{strings[-2]}.{strings[-1]}")
        if pushed is not None:
            strings.append(pushed)
        if name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
            previous_string = pushed
    return imports


def _opcodes(data: bytes):
    """(name, argument) of each opcode up to STOP or the first byte that is not a pickle."""
    try:
        for opcode, arg, _pos in pickletools.genops(io.BytesIO(data)):
            yield opcode.name, arg
            if opcode.name == "STOP":
                return
    except Exception:  # not a pickle, or a broken one: the unpickler stops at the same byte
        return
