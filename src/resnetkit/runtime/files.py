"""Writing files so that a crash, a kill or a full disk never leaves half of one.

Every output of a run (checkpoints, metrics, plots, configuration) goes through
:func:`atomic_write`: the content is written to a temporary file beside the target, flushed
to disk, and renamed over it. A reader sees the old file or the new one, never a mixture.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


class DiskFullError(OSError):
    """No space left where a file was being written; the message says where and what is intact."""


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file over ``path``.

    The file gets the permissions of a normally created file (0666 less the user's umask),
    not mkstemp's private 0600. ENOSPC becomes :class:`DiskFullError`, which says that the
    previous version of ``path`` is intact.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _is_disk_full(err):
            kept = f"the previous {path.name} is intact" if path.exists() else f"no earlier {path.name} existed"
            raise DiskFullError(errno.ENOSPC, f"disk full while writing {path} ({kept}); free space in {path.parent} "
                                "and run again") from None
        raise
    return path


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save reports a failed write as RuntimeError("... unexpected pos ..."), losing the errno.
    text = str(err)
    return isinstance(err, RuntimeError) and ("unexpected pos" in text or "No space left" in text)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files a killed writer left in ``folder``; returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None: JSON has no NaN, and ``null`` is what readers expect."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (no NaN): non-finite numbers become ``null``."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def save_json(obj: Any, path: str | Path) -> Path:
    text = to_json(obj, indent=2) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


class UntrustedFileError(ValueError):
    """A file that would run code when loaded (a pickle payload); it was refused unread."""


def torch_load_weights_only(path: str | Path, expected: str, *, data: bytes | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` with messages that name the file and what was expected.

    A pickle that asks for anything but tensors and plain containers (``os.system``, a class
    of some package) is refused before any of it runs: :class:`UntrustedFileError`. A file
    that is not a torch checkpoint at all (truncated, empty, another format) is a ValueError.
    ``data``: the content, when it is already in memory (a member of an archive); ``path``
    then only names it in messages.
    """
    import io
    import pickle

    import torch

    from .pickles import could_run_code, is_zip, pickle_imports

    if data is None:
        path = Path(path)
        size = path.stat().st_size
    else:
        size = len(data)
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes); expected {expected}")
    try:
        return torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        content = Path(path).read_bytes() if data is None else data
        imports = pickle_imports(content)
        if imports or (not is_zip(content) and could_run_code(content)):
            # What the pickle imports, read from its opcodes (torch's wording differs between versions).
            shown = [name for name in imports if not _is_tensor_global(name)] or imports
            what = f"it imports {', '.join(dict.fromkeys(shown[:3]))}" if shown else "it calls code"
            raise UntrustedFileError(
                f"{path} was refused: it asks to run code when loaded ({what}); "
                f"expected {expected}, which holds only tensors. Nothing in it was run"
            ) from None
        raise ValueError(f"cannot read {path}: not a PyTorch checkpoint (corrupt, truncated or another format); "
                         f"expected {expected}") from None
    except Exception as err:  # a truncated zip archive, a file of another format, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"cannot read {path}: {type(err).__name__}: {first}; expected {expected}") from None


def _is_tensor_global(name: str) -> bool:
    """A global every checkpoint of tensors names: the message shows the ones beside them."""
    return name.startswith(("torch._utils._rebuild_", "collections.OrderedDict")) or (
        name.startswith("torch.") and name.endswith("Storage"))
