"""`cnntool benchmark RUN`: one model on every runtime — torch eager, torch channels-last, ONNX FP32 and
ONNX INT8 on onnxruntime (and OpenVINO when the ``openvino`` package is installed) — latency at batch 1,
throughput at batch 32 and 64, file size and top-1 on the run's test split.

Fair by construction: every runtime gets the same normalised input, the same thread count (torch's
intra-op threads = onnxruntime's ``intra_op_num_threads``, one inter-op thread), and the repeats are
interleaved (repeat r times every runtime and batch before repeat r+1), so a slow patch of a shared
machine hits all of them; each number is the median over repeats.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cnntool.errors import ConfigError, CnnToolError
from cnntool.export.choices import DEFAULT_REPEATS, RUNTIMES

BATCHES = (1, 32, 64)
MIN_REPEAT_SECONDS = 0.2  # one timed repeat runs the call this long at least (several calls for small models)
CALIB_RANDOM = 64  # random calibration images when the run's data cannot be read
COLUMNS = ("runtime", "latency_ms_b1", "images_per_s_b32", "images_per_s_b64", "size_bytes", "top1",
           "agreement", "speedup_b32")
Progress = Callable[[str], None]


@dataclass
class BenchRow:
    runtime: str
    latency_ms_b1: float | None
    images_per_s_b32: float | None
    images_per_s_b64: float | None
    size_bytes: int | None
    top1: float | None  # on the run's test split (None when its data cannot be read)
    agreement: float | None  # top-1 agreement with torch eager on the test split
    speedup_b32: float | None  # images/s at batch 32 relative to ONNX FP32


@dataclass
class BenchResult:
    model: str
    arch: str
    input: str
    threads: int
    repeats: int
    test_images: int
    rows: list[BenchRow]
    notes: list[str] = field(default_factory=list)
    columns: tuple[str, ...] = COLUMNS

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["columns"] = list(COLUMNS)
        return d


def benchmark(target: str | Path, threads: int | None = None, repeats: int = DEFAULT_REPEATS,
              runtimes: tuple[str, ...] | None = None, calib: int = 256, test_limit: int | None = None,
              progress: Progress | None = None) -> BenchResult:
    """Benchmark a run directory or checkpoint on every runtime in ``runtimes`` (default: all available)."""
    import torch

    from cnntool.data.pipeline import normalize_uint8
    from cnntool.export.onnx_eval import load_split, predict_split
    from cnntool.export.onnx_export import export_model, run_data_config
    from cnntool.export.quantize import carry_metadata, pick_calibration, quantize_int8
    from cnntool.export.runtime import OnnxClassifier
    from cnntool.training.checkpoint import load_model, resolve_checkpoint

    say = progress or (lambda msg: None)
    threads = threads or (os.cpu_count() or 1)
    if threads < 1:
        raise ConfigError(f"--threads {threads} must be >= 1")
    if repeats < 1:
        raise ConfigError(f"--repeats {repeats} must be >= 1")
    wanted = tuple(runtimes) if runtimes else RUNTIMES
    bad = [r for r in wanted if r not in RUNTIMES]
    if bad:
        raise ConfigError(f"--runtime {bad[0]!r} must be one of {', '.join(RUNTIMES)}")
    notes: list[str] = []
    if "openvino" in wanted and importlib.util.find_spec("openvino") is None:
        if runtimes:
            raise ConfigError("--runtime openvino needs the openvino package (pip install 'cnntool[openvino]')")
        wanted = tuple(r for r in wanted if r != "openvino")
        notes.append("openvino not installed: skipped (install the openvino extra)")

    torch.set_num_threads(threads)
    say("loading the model")
    model, spec, ckpt = load_model(target)
    model.eval()
    ckpt_path = resolve_checkpoint(target)
    cfg = run_data_config(ckpt)
    test = None
    if cfg is not None:
        try:
            test = load_split(cfg, spec, "test")
        except CnnToolError as e:
            notes.append(f"test split not readable ({e}): no top-1")
    else:
        notes.append("the checkpoint records no data set: no top-1, random calibration images")
    if test is not None and test_limit is not None and len(test) > test_limit:
        test = _head(test, test_limit)

    rng = np.random.default_rng(0)
    c, (h, w) = spec.in_channels, spec.input_size
    pixels = rng.integers(0, 256, size=(max(BATCHES), c, h, w), dtype=np.uint8)
    x = normalize_uint8(torch.from_numpy(pixels), spec.mean, spec.std)
    xn = x.numpy()

    backends: dict[str, Callable[[int], Callable[[], Any]]] = {}
    predict: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    sizes: dict[str, int | None] = {}
    tmp = tempfile.TemporaryDirectory(prefix="cnntool-bench-")
    try:
        folder = Path(tmp.name)
        if "torch" in wanted:
            backends["torch"] = lambda b: _torch_call(model, x[:b])
            predict["torch"] = lambda u8: _torch_logits(model, u8, spec)
            sizes["torch"] = ckpt_path.stat().st_size
        if "torch-channels-last" in wanted:
            cl = _channels_last_copy(model)
            xcl = x.contiguous(memory_format=torch.channels_last)
            backends["torch-channels-last"] = lambda b: _torch_call(cl, xcl[:b])
            predict["torch-channels-last"] = lambda u8: _torch_logits(cl, u8, spec, channels_last=True)
            sizes["torch-channels-last"] = ckpt_path.stat().st_size
        onnx_files: dict[str, Path] = {}
        if any(r.startswith("onnx") or r == "openvino" for r in wanted):
            say("exporting to ONNX (FP32)")
            fp32 = folder / "model.onnx"
            export_model(model, spec, fp32, data_options=None)
            onnx_files["onnx-fp32"] = fp32
        if "onnx-int8" in wanted:
            say("quantizing to INT8")
            if test is not None:
                calib_images = pick_calibration(load_split(cfg, spec, "train"), calib)
            else:
                calib_images = rng.integers(0, 256, size=(CALIB_RANDOM, c, h, w), dtype=np.uint8)
            int8 = folder / "model-int8.onnx"
            quantize_int8(onnx_files["onnx-fp32"], int8, spec, calib_images)
            carry_metadata(onnx_files["onnx-fp32"], int8, {"cnntool.precision": "int8"})
            onnx_files["onnx-int8"] = int8
        for name, path in onnx_files.items():
            if name not in wanted:
                continue
            clf = OnnxClassifier(path, threads=threads)
            _pin_ort(clf, path, threads)
            backends[name] = _ort_calls(clf, xn)
            predict[name] = clf.logits
            sizes[name] = path.stat().st_size
        if "openvino" in wanted:
            run_ov, logits_ov = _openvino(onnx_files["onnx-fp32"], spec, threads)
            backends["openvino"] = lambda b: (lambda: run_ov(xn[:b]))
            predict["openvino"] = logits_ov
            sizes["openvino"] = onnx_files["onnx-fp32"].stat().st_size

        times = _time_interleaved(backends, repeats, say)
        top1: dict[str, float | None] = {}
        agree: dict[str, float | None] = {}
        preds: dict[str, np.ndarray] = {}
        if test is not None:
            say(f"top-1 on {len(test)} test images")
            for name, fn in predict.items():
                logits = predict_split(_Logits(fn, spec), test, batch_size=64)
                preds[name] = logits.argmax(1)
                top1[name] = float((preds[name] == test.labels).mean()) if len(test) else None
            ref = preds.get("torch")
            for name, p in preds.items():
                agree[name] = float((p == ref).mean()) if ref is not None and len(p) else None
    finally:
        tmp.cleanup()

    base = times.get("onnx-fp32", {}).get(32)
    rows = []
    for name in backends:
        t = times[name]
        rows.append(BenchRow(
            runtime=name, latency_ms_b1=t[1] * 1e3, images_per_s_b32=32 / t[32], images_per_s_b64=64 / t[64],
            size_bytes=sizes.get(name), top1=top1.get(name), agreement=agree.get(name),
            speedup_b32=(base / t[32]) if base else None))
    return BenchResult(model=str(target), arch=spec.arch, input=f"{c}×{h}×{w}", threads=threads, repeats=repeats,
                       test_images=len(test) if test is not None else 0, rows=rows, notes=notes)


class _Logits:
    """Adapter so ``predict_split`` drives any runtime's uint8 -> logits function."""

    def __init__(self, fn, spec):
        self.logits, self.spec = fn, spec


def _head(part, n: int):
    from cnntool.export.onnx_eval import SplitImages

    return SplitImages(part.name, part.split, part.labels[:n], part.spec,
                       images=None if part.images is None else part.images[:n],
                       paths=None if part.paths is None else part.paths[:n])


def _ort_calls(clf, xn: np.ndarray):
    """batch -> a no-argument call running the first ``batch`` inputs through the onnxruntime session."""
    return lambda b: (lambda: clf.run(xn[:b]))


def _torch_call(model, xb):
    import torch

    def call():
        with torch.inference_mode():
            return model(xb)
    return call


def _torch_logits(model, u8: np.ndarray, spec, channels_last: bool = False) -> np.ndarray:
    import torch

    from cnntool.data.pipeline import normalize_uint8

    xb = normalize_uint8(torch.from_numpy(np.ascontiguousarray(u8)), spec.mean, spec.std)
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return model(xb).float().numpy()


def _channels_last_copy(model):
    import copy

    import torch

    return copy.deepcopy(model).to(memory_format=torch.channels_last).eval()


def _pin_ort(clf, path: Path, threads: int) -> None:
    """One inter-op thread, ``threads`` intra-op threads, no spinning between calls of other runtimes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    clf.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _openvino(path: Path, spec, threads: int):
    import openvino as ov

    from cnntool.data.preprocess import normalize

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(compiled(x)[0], dtype=np.float32)

    return run, lambda u8: run(normalize(u8, spec.mean, spec.std))


def _time_interleaved(backends: dict[str, Callable[[int], Callable[[], Any]]], repeats: int,
                      say: Progress) -> dict[str, dict[int, float]]:
    """Median seconds per call for every (runtime, batch); repeat r of every pair runs before repeat r+1."""
    calls = {(name, b): make(b) for name, make in backends.items() for b in BATCHES}
    iters = {}
    say("warming up")
    for key, fn in calls.items():
        fn()  # first call: allocation, kernel selection
        t = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t, 1e-6)
        iters[key] = max(1, int(MIN_REPEAT_SECONDS / one))
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
    for r in range(repeats):
        say(f"timing, repeat {r + 1}/{repeats}")
        for key, fn in calls.items():
            n = iters[key]
            t = time.perf_counter()
            for _ in range(n):
                fn()
            samples[key].append((time.perf_counter() - t) / n)
    out: dict[str, dict[int, float]] = {name: {} for name in backends}
    for (name, b), values in samples.items():
        out[name][b] = statistics.median(values)
    return out
