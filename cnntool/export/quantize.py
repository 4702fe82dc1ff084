"""INT8 (static, QDQ, per-channel weights) and FP16 variants of an exported FP32 ONNX file, kept only when
their accuracy on the run's test split is within ``max_drop`` points of the FP32 file's.

onnxruntime, onnx and numpy only (no torch). The variant carries the FP32 file's metadata (spec, data
options) plus ``cnntool.precision`` and, for INT8, ``cnntool.calibration``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cnntool.errors import ConfigError, DataError, ModelError, first_line
from cnntool.export.choices import CALIB_METHODS, DEFAULT_CALIB, DEFAULT_CALIB_METHOD, DEFAULT_MAX_DROP, PRECISIONS  # noqa: F401
from cnntool.export.quiet import quiet
from cnntool.fileio import atomic_path
from cnntool.spec import ModelSpec

CALIB_BATCH = 32
CALIB_SEED = 0
Progress = Callable[[str], None]


@dataclass
class VariantResult:
    precision: str  # int8 | fp16
    path: str
    size_bytes: int
    n: int  # test images
    agreement: float  # top-1 agreement with the FP32 file
    fp32_acc: float
    acc: float
    drop: float  # fp32_acc - acc, in percentage points
    max_drop: float
    passed: bool
    calib_n: int | None = None
    calib_method: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class AccuracyGateError(ModelError):
    """The variant loses more than ``max_drop`` points; ``result`` holds the numbers, no file is written."""

    def __init__(self, message: str, result: VariantResult):
        super().__init__(message)
        self.result = result


def check_options(precisions: tuple[str, ...], calib: int, calib_method: str, max_drop: float) -> None:
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise ConfigError(f"precision {bad[0]!r} must be one of {', '.join(PRECISIONS)}")
    if calib < 1:
        raise ConfigError(f"--calib {calib} must be >= 1")
    if calib_method not in CALIB_METHODS:
        raise ConfigError(f"--calib-method {calib_method!r} must be one of {', '.join(CALIB_METHODS)}")
    if not np.isfinite(max_drop):
        raise ConfigError(f"--max-drop {max_drop} must be a finite number of percentage points")


def variant_path(fp32_path: str | Path, precision: str) -> Path:
    """``model-int8.onnx`` beside ``model.onnx``."""
    p = Path(fp32_path)
    return p.with_name(f"{p.stem}-{precision}{p.suffix or '.onnx'}")


def pick_calibration(part, n: int, seed: int = CALIB_SEED) -> np.ndarray:
    """``n`` images (uint8) drawn without replacement, seeded, from a ``SplitImages`` (the training split)."""
    if len(part) == 0:
        raise DataError(f"data set {part.name} has no {part.split} images to calibrate on")
    idx = np.sort(np.random.default_rng(seed).permutation(len(part))[:min(n, len(part))])
    return part.take(idx.tolist())


def load_calibration(path: str | Path, spec: ModelSpec) -> np.ndarray:
    """Calibration images from a ``.npy`` file: uint8 (N, C, H, W) at the model's input size."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"--calib-data {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise DataError(f"--calib-data {path}: not a .npy array file ({first_line(e, 200)})") from None
    check_calibration(arr, spec, str(path))
    return arr


def check_calibration(arr: np.ndarray, spec: ModelSpec, where: str = "calibration data") -> None:
    want = (spec.in_channels, *spec.input_size)
    shown = "×".join(map(str, arr.shape))
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(want) or len(arr) == 0:
        raise DataError(f"{where}: calibration images have shape {shown}; the model takes N×"
                        f"{'×'.join(map(str, want))} (N >= 1)")
    if arr.dtype != np.uint8:
        raise DataError(f"{where}: calibration images are {arr.dtype}; expected uint8 pixels (0-255)")


class _Reader:
    """onnxruntime CalibrationDataReader over normalised batches of the calibration images."""

    def __init__(self, images: np.ndarray, spec: ModelSpec, input_name: str, batch: int | None = None):
        from cnntool.data.preprocess import normalize

        b = batch or CALIB_BATCH  # a fixed-batch graph (--static-batch) takes exactly its batch size
        stop = len(images) - len(images) % b if batch else len(images)  # only whole batches for a fixed one
        self._batches = iter([{input_name: normalize(images[i:i + b], spec.mean, spec.std)}
                              for i in range(0, stop, b)])

    def get_next(self):
        return next(self._batches, None)


def quantize_int8(fp32_path: str | Path, out: str | Path, spec: ModelSpec, calib_images: np.ndarray,
                  calib_method: str = DEFAULT_CALIB_METHOD) -> None:
    """Static INT8 quantization: QDQ format, per-channel int8 weights, uint8 activations."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from cnntool.export.runtime import OnnxClassifier

    check_calibration(calib_images, spec)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calib_method]
    fp32 = OnnxClassifier(fp32_path)
    if fp32.batch_dim and len(calib_images) < fp32.batch_dim:
        raise DataError(f"{len(calib_images)} calibration images; the graph's fixed batch is {fp32.batch_dim}")
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calib_images, spec, fp32.input_name,
                                                                  fp32.batch_dim)
    with tempfile.TemporaryDirectory(prefix="cnntool-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:  # shape inference + graph optimisation before quantization, as onnxruntime recommends
            with quiet():
                quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            source = pre
        except Exception:  # noqa: BLE001 - fall back to the exported graph as it is
            source = Path(fp32_path)
        try:
            with quiet():  # the quantizer prints progress; stdout carries only results
                quantize_static(str(source), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=method)
        except Exception as e:  # noqa: BLE001 - the quantizer raises many types
            raise ModelError(f"{fp32_path}: onnxruntime cannot quantize it ({first_line(e)})") from None


def convert_fp16(fp32_path: str | Path, out: str | Path) -> None:
    """float16 weights and activations (inputs/outputs stay float32), onnxruntime's own converter."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        with quiet():
            proto = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{fp32_path}: cannot convert it to float16 ({first_line(e)})") from None
    onnx.save(proto, str(out))


def carry_metadata(fp32_path: str | Path, path: str | Path, extra: dict[str, object]) -> None:
    """The FP32 file's metadata_props (spec, data options, ...) plus ``extra`` onto the variant."""
    import onnx

    src = onnx.load(str(fp32_path), load_external_data=False)
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in src.metadata_props}
    props.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = src.doc_string
    onnx.save(proto, str(path))


def make_variant(precision: str, fp32_path: str | Path, test, out: str | Path | None = None,
                 calib_images: np.ndarray | None = None, calib_method: str = DEFAULT_CALIB_METHOD,
                 max_drop: float = DEFAULT_MAX_DROP, batch_size: int = 256,
                 progress: Progress | None = None) -> VariantResult:
    """Write the ``precision`` variant of ``fp32_path`` (default ``NAME-int8.onnx`` beside it) if its test
    accuracy (``test``: a ``SplitImages``) is at most ``max_drop`` points below the FP32 file's; else raise
    AccuracyGateError and leave no file."""
    from cnntool.export.onnx_eval import predict_split
    from cnntool.export.runtime import OnnxClassifier

    say = progress or (lambda msg: None)
    start = time.perf_counter()
    fp32 = OnnxClassifier(fp32_path)
    spec = fp32.spec
    out = Path(out) if out is not None else variant_path(fp32_path, precision)
    if precision == "int8" and calib_images is None:
        raise DataError("INT8 quantization needs calibration images")
    with atomic_path(out) as tmp:  # renamed onto out only when the accuracy gate passes
        if precision == "int8":
            say(f"quantizing to INT8 ({calib_method} calibration on {len(calib_images)} images)")
            quantize_int8(fp32_path, tmp, spec, calib_images, calib_method)
            extra = {"cnntool.precision": "int8",
                     "cnntool.calibration": {"n": int(len(calib_images)), "method": calib_method}}
        else:
            say("converting to FP16")
            convert_fp16(fp32_path, tmp)
            extra = {"cnntool.precision": "fp16"}
        carry_metadata(fp32_path, tmp, extra)
        try:
            cand = OnnxClassifier(tmp)
        except ModelError as e:
            raise ModelError(f"{out}: onnxruntime's CPU provider cannot run the {precision} model "
                             f"({str(e).split('(', 1)[-1].rstrip(')')})") from None
        say(f"checking {precision} accuracy against FP32 on {len(test)} test images")
        ref = predict_split(fp32, test, batch_size).argmax(1)
        got = predict_split(cand, test, batch_size).argmax(1)
        n = len(test)
        fp32_acc = float((ref == test.labels).mean()) if n else float("nan")
        acc = float((got == test.labels).mean()) if n else float("nan")
        drop = (fp32_acc - acc) * 100.0
        result = VariantResult(precision, str(out), tmp.stat().st_size, n,
                               float((ref == got).mean()) if n else float("nan"), fp32_acc, acc, drop, max_drop,
                               passed=bool(n and drop <= max_drop),
                               calib_n=int(len(calib_images)) if precision == "int8" else None,
                               calib_method=calib_method if precision == "int8" else None,
                               seconds=round(time.perf_counter() - start, 3))
        if not result.passed:
            why = "no test images" if not n else (f"test accuracy {acc:.2%} vs FP32 {fp32_acc:.2%}: drop {drop:.2f} "
                                                  f"points > --max-drop {max_drop:g}")
            raise AccuracyGateError(f"{out}: {precision} model refused ({why}; top-1 agreement with FP32 "
                                    f"{result.agreement:.2%}); file not written", result)
    return result


