"""Readers for the on-disk formats of the classic data sets (MNIST idx, CIFAR python batches).

CIFAR batches are pickles; they are read with an unpickler that accepts only the few numpy
constructors those files use, so a hostile file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np

from cnntool.errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an MNIST-style idx file (optionally .gz)."""
    p = Path(path)
    raw = gzip.open(p, "rb").read() if p.suffix == ".gz" else p.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{p}: not an idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{p}: truncated idx header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{p}: idx file holds {len(raw) - header} bytes of data, header says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an idx file (used by tests and by users converting their own data)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
    arr = np.ascontiguousarray(array)
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    Path(path).write_bytes(header + arr.tobytes())


class _NumpyOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_batch(path: str | Path) -> dict:
    """Read one CIFAR python batch/meta file with the restricted unpickler."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            obj = _NumpyOnlyUnpickler(io.BufferedReader(f), encoding="latin1").load()
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure means "not a CIFAR batch"
        raise DataError(f"{p}: not a CIFAR batch file ({e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{p}: not a CIFAR batch file (holds {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_images(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels of one CIFAR python batch file."""
    return cifar_images(read_cifar_batch(path), Path(path))


def cifar_images(batch: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(batch.get("data"))
    labels = batch.get("labels", batch.get("fine_labels"))
    if data.ndim != 2 or data.shape[1] != 3072 or labels is None or len(labels) != len(data):
        raise DataError(f"{path}: CIFAR batch has unexpected contents")
    return data.reshape(-1, 3, 32, 32).astype(np.uint8), np.asarray(labels, dtype=np.int64)
