"""Writing files so that a crash, a kill or a full disk never leaves half a file, and says which file failed.

Every file cnntool writes (checkpoints, JSON, CSV, PNG, ONNX, reports) goes through ``atomic_path``: the
content is written to a hidden temporary file in the same folder, flushed, then renamed onto the target in one
step. A failure removes the temporary file, leaves any previous target untouched and becomes one
``OutputError`` naming the target and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from cnntool.errors import OutputError, first_line

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return "no space left on device"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "permission denied"
        return exc.strerror or first_line(exc)
    text = str(exc).lower()
    if "inline_container" in text or "failed writing" in text or "file write failed" in text:
        return "the file could not be written (disk full?)"
    return first_line(exc)


def is_write_failure(exc: BaseException) -> bool:
    """OS errors, and the serialisers' own way of saying the OS refused a write (torch.save's RuntimeError)."""
    return isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and _cause(exc) != first_line(exc))


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path`` in one rename.

    The temporary name starts with ``.NAME.`` and ends in ``.tmp`` (``clean_stale_temp`` finds leftovers of a
    killed process). ``fsync`` flushes the data to disk before the rename (checkpoints)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_cause(e)}") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp files are private; ours are ordinary files
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and is_write_failure(e):
            raise OutputError(f"{_cause(e)} while writing {path}") from None
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def clean_stale_temp(folder: str | Path) -> list[Path]:
    """Remove temporary files a killed process left in ``folder`` (``.NAME.*.tmp``); returns what was removed.
    Call it only where no other process writes at the same moment (the start of a run or a resume)."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(f".*{TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def next_free_path(path: str | Path, force: bool = False) -> Path:
    """``path`` when it does not exist yet (or ``force``), else the first free ``stem-2.ext``, ``stem-3.ext``, …:
    a default output name never replaces an earlier output silently."""
    path = Path(path)
    if force or not path.exists():
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
        n += 1
