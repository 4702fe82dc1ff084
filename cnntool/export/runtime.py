"""Prediction from image files with onnxruntime, numpy and Pillow only: this module never imports torch.

The preprocessing comes from the model's own metadata (``cnntool.spec``) and the decode/resize code
shared with training (``cnntool.data.preprocess``), so a file gives the numbers ``cnntool eval`` sees.
A backend is anything with ``spec``, ``name`` and ``logits(uint8 NCHW batch) -> float32 logits``:
``OnnxClassifier`` here, ``cnntool.export.torch_runtime.TorchClassifier`` for run directories.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence, TextIO

import numpy as np

from cnntool.data.preprocess import is_image_file, load_for_model, normalize
from cnntool.errors import DataError, ModelError, first_line
from cnntool.export.metadata import SPEC_KEY, spec_from_metadata
from cnntool.spec import ModelSpec

GLOB_CHARS = "*?["


class Backend(Protocol):
    spec: ModelSpec
    name: str

    def logits(self, batch_uint8: np.ndarray) -> np.ndarray: ...


@dataclass
class Prediction:
    path: str
    index: int
    label: str
    prob: float
    top_k: list[tuple[str, int, float]]  # (label, class index, probability), best first
    logits: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "index": self.index, "prob": round(self.prob, 6),
                "top_k": [{"label": lab, "index": i, "prob": round(p, 6)} for lab, i, p in self.top_k]}


@dataclass
class Failure:
    path: str
    error: str  # one line that names the file

    def to_dict(self) -> dict:
        return {"path": self.path, "error": self.error}


class OnnxClassifier:
    """An exported cnntool model on onnxruntime; its spec (classes, size, mean/std) comes from the file."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None,
                 spec_for: Callable[[dict, list], ModelSpec] | None = None):
        """``spec_for(metadata, input_shape)`` supplies the spec of a file without cnntool metadata."""
        import onnxruntime as ort

        self.path = str(path)
        if not Path(path).is_file():
            raise ModelError(f"{path}: no such model file")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(self.path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise ModelError(f"{path}: onnxruntime cannot load it ({first_line(e)})") from None
        self.props = dict(self.session.get_modelmeta().custom_metadata_map)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one input, the model has {len(inputs)}")
        if spec_for is not None and SPEC_KEY not in self.props:
            self.spec = spec_for(self.props, list(inputs[0].shape))
        else:
            self.spec = spec_from_metadata(self.props, self.path)
        self.input_name = inputs[0].name
        self.batch_dim = check_input_shape(inputs[0].shape, self.spec, self.path)
        classes = self.session.get_outputs()[0].shape
        if len(classes) != 2 or (isinstance(classes[1], int) and classes[1] != self.spec.num_classes):
            raise ModelError(f"{path}: the network outputs shape {classes}, but its metadata names "
                             f"{self.spec.num_classes} classes")

    def logits(self, batch_uint8: np.ndarray) -> np.ndarray:
        x = normalize(batch_uint8, self.spec.mean, self.spec.std)
        return self.run(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 (N, C, H, W) -> logits (N, classes); a fixed-batch model is fed in chunks."""
        if self.batch_dim is None:
            return self._run(x)
        b, n = self.batch_dim, len(x)
        out = []
        for i in range(0, n, b):
            chunk = x[i:i + b]
            if len(chunk) < b:
                chunk = np.concatenate([chunk, np.zeros((b - len(chunk),) + x.shape[1:], x.dtype)])
            out.append(self._run(chunk)[:min(b, n - i)])
        return np.concatenate(out) if out else np.zeros((0, self.spec.num_classes), np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        except Exception as e:
            raise ModelError(f"{self.path}: onnxruntime rejected input of shape {tuple(x.shape)} "
                             f"({first_line(e)})") from None
        return np.asarray(out, dtype=np.float32)


def check_input_shape(shape: Sequence, spec: ModelSpec, where: str) -> int | None:
    """The graph's input must be (N, C, H, W) with C, H, W as the spec says; returns a fixed N, or None."""
    want = [spec.in_channels, *spec.input_size]
    shown = "×".join(str(d) if isinstance(d, int) else "N" for d in shape)
    if len(shape) != 4:
        raise ModelError(f"{where}: the network input has shape {shown}, not N×C×H×W")
    for got, exp in zip(shape[1:], want):
        if isinstance(got, int) and got != exp:
            raise ModelError(f"{where}: the network takes {shown} input but its metadata says "
                             f"{'×'.join(map(str, want))} (in_channels × input_size); re-export the model")
    return shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None


def expand_inputs(inputs: Iterable[str], stdin: TextIO | None = None) -> tuple[list[str], list[Failure]]:
    """Image files, directories (recursively), globs, or ``-`` (one path per line on stdin) -> file list.

    Files named explicitly are always tried (a bad one fails by name later); directories and globs
    contribute only files with an image extension. Paths that match nothing become failures.
    """
    paths: list[str] = []
    failures: list[Failure] = []

    def add(item: str) -> None:
        p = Path(item)
        if p.is_dir():
            found = _images_under(p)
            if not found:
                failures.append(Failure(item, f"{item}: directory holds no image files"))
            paths.extend(found)
        elif p.exists():
            paths.append(item)
        elif any(c in item for c in GLOB_CHARS):
            matches = sorted(glob.glob(item, recursive=True))
            files: list[str] = []
            for m in matches:
                if Path(m).is_dir():
                    files.extend(_images_under(Path(m)))
                elif is_image_file(m):
                    files.append(m)
            if not files:
                failures.append(Failure(item, f"{item}: no image files match"))
            paths.extend(files)
        else:
            failures.append(Failure(item, f"{item}: no such file or directory"))

    for item in inputs:
        if item == "-":
            import sys

            for line in (stdin or sys.stdin):
                line = line.rstrip("\r\n")
                if line.strip():
                    add(line)
        else:
            add(item)
    seen: set[str] = set()
    unique = [p for p in paths if not (p in seen or seen.add(p))]
    return unique, failures


def _images_under(folder: Path) -> list[str]:
    """Image files below ``folder``, skipping hidden ones (``.x``, macOS ``._x.png``) and hidden folders.

    One ``os.scandir`` per folder and the extension checked before any ``stat`` (a folder of thousands of
    files lists in milliseconds); like ``Path.rglob``, symlinked folders are not entered, symlinked files count.
    """
    found: list[str] = []
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif is_image_file(e.name) and e.is_file():
                    found.append(e.path)
            except OSError:
                continue
    return sorted(found)


def load_image(path: str, spec: ModelSpec) -> np.ndarray | Failure:
    """Decode and resize one file as the spec says (training's own decoding): uint8 (C, H, W), or a Failure."""
    try:
        return load_for_model(path, spec.in_channels, spec.input_size, spec.crop_pct, spec.interpolation)
    except DataError as e:
        return Failure(path, str(e))
    except OSError as e:  # a directory, permission denied, ... that open_image does not translate
        return Failure(path, f"{path}: {e.strerror or e}")


def load_images(paths: Sequence[str], spec: ModelSpec, threads: int | None = None
                ) -> list[np.ndarray | Failure]:
    """``load_image`` for each file, in order; on ``threads`` > 1 threads (default: this thread only)."""
    if len(paths) <= 1 or not threads or threads <= 1:
        return [load_image(p, spec) for p in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda p: load_image(p, spec), paths))


def decode_workers(threads: int | None) -> int:
    """Decoding threads for ``threads`` (``--threads``; None: up to 4, one per core)."""
    return max(1, int(threads)) if threads else min(4, os.cpu_count() or 1)


def decoded_batches(paths: Sequence[str], spec: ModelSpec, batch_size: int, threads: int | None = None
                    ) -> Iterator[tuple[Sequence[str], list[np.ndarray | Failure]]]:
    """(files, decoded images) a batch at a time, in input order, decoded ahead of the consumer.

    One pool of ``decode_workers(threads)`` threads lives for the whole call; each worker decodes a whole
    batch (little locking per file), and up to workers + 1 batches are decoded ahead, so decoding overlaps
    the consumer's inference (onnxruntime and torch release the GIL). With one thread, or a single batch,
    everything is decoded right here: no pool, since a second thread only contends for the GIL with this one
    (measured slower for small images). Stopping the iteration early cancels the batches not yet started.
    """
    batches = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    workers = decode_workers(threads)
    if len(batches) <= 1 or workers <= 1:
        for chunk in batches:
            yield chunk, _decode_batch(chunk, spec)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="cnntool-decode")
    pending: deque = deque()
    todo = iter(batches)
    try:
        for chunk in itertools.islice(todo, workers + 1):
            pending.append((chunk, pool.submit(_decode_batch, chunk, spec)))
        while pending:
            chunk, future = pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_decode_batch, nxt, spec)))
            yield chunk, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decode_batch(chunk: Sequence[str], spec: ModelSpec) -> list[np.ndarray | Failure]:
    return [load_image(p, spec) for p in chunk]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predictions_from_logits(paths: Sequence[str], logits: np.ndarray, class_names: Sequence[str],
                            top_k: int = 3) -> list[Prediction]:
    probs = softmax(logits)
    k = max(1, min(top_k, probs.shape[1]))
    # stable sort on -prob: ties keep the lower class index first, as argmax does
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    out = []
    for path, row, idx, lg in zip(paths, probs, order, logits):
        top = [(class_names[int(i)], int(i), float(row[i])) for i in idx]
        out.append(Prediction(path, top[0][1], top[0][0], top[0][2], top, lg))
    return out


def predict_files(backend: Backend, paths: Sequence[str], batch_size: int = 32, top_k: int = 3,
                  on_progress: Callable[[int, int], None] | None = None, threads: int | None = None
                  ) -> Iterator[Prediction | Failure]:
    """Predictions (or Failures, one per bad file) in input order, a batch at a time; the next batches are
    decoded by ``decoded_batches``' pool (``threads`` workers) while this one is classified."""
    if batch_size < 1:
        raise DataError(f"--batch-size {batch_size} must be >= 1")
    spec = backend.spec
    done = 0
    for chunk, images in decoded_batches(paths, spec, batch_size, threads):
        good = [i for i, im in enumerate(images) if not isinstance(im, Failure)]
        preds: dict[int, Prediction] = {}
        if good:
            logits = backend.logits(np.stack([images[i] for i in good]))
            found = predictions_from_logits([chunk[i] for i in good], logits, spec.class_names, top_k)
            preds = dict(zip(good, found))
        for i, im in enumerate(images):
            yield im if isinstance(im, Failure) else preds[i]
        done += len(chunk)
        if on_progress:
            on_progress(done, len(paths))


TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")


def is_onnx_path(target: str | Path) -> bool:
    """``.onnx`` files go to onnxruntime; run directories and ``.pt``/``.pth``/``.ckpt`` files to torch
    (whose loader names an unreadable checkpoint as such). Only a file with another extension is sniffed:
    a zip (as torch checkpoints are) goes to torch, anything else to onnxruntime."""
    import zipfile

    p = Path(target)
    if p.is_dir():
        return False
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return True
    if suffix in TORCH_SUFFIXES:
        return False
    return p.is_file() and not zipfile.is_zipfile(p)




def open_classifier(model: str | Path, threads: int | None = None) -> Backend:
    """The backend for ``model``: an ONNX file on onnxruntime (torch is never imported), a run directory or
    checkpoint on torch; ``threads`` limits the runtime's threads (None: its default)."""
    if is_onnx_path(model):
        return OnnxClassifier(model, threads=threads)
    from cnntool.export.torch_runtime import TorchClassifier

    return TorchClassifier(model, threads=threads)
