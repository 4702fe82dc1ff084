"""torch -> ONNX: a self-describing file (spec in ``metadata_props``), checked against torch before it is kept.

Exporter: torch's dynamo-based exporter (``torch.onnx.export(dynamo=True)``, torch.export + onnxscript)
by default. It exports every model of the registry (the TorchScript exporter fails on lenet's
``AdaptiveAvgPool2d(5)`` over a 6×6 map, an output size that does not divide the input), folds
BatchNorm into the convolutions and drops Dropout, and gives a symbolic batch axis from
``dynamic_shapes``. If it fails on some other model, ``auto`` falls back to the TorchScript exporter;
``ExportResult.exporter`` says which one wrote the file.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cnntool import __version__
from cnntool.errors import CheckpointError, CnnToolError, ConfigError, ModelError, first_line
from cnntool.export.quiet import quiet
from cnntool.fileio import atomic_path
from cnntool.export.metadata import spec_to_metadata
from cnntool.export.quantize import DEFAULT_CALIB, DEFAULT_CALIB_METHOD, DEFAULT_MAX_DROP
from cnntool.spec import MAX_SIDE, ModelSpec

DEFAULT_OPSET = 18
# onnx 1.23 writes IR version 11+ by default; onnxruntime >= 1.16 (and every release since) reads IR 10.
# Pinning it keeps the file loadable by the onnxruntime a user's app is likely to have.
MAX_IR_VERSION = 10
MIN_OPSET = 13
DYNAMO_MIN_OPSET = 18  # the dynamo exporter writes opset 18 or later
PARITY_BATCHES = (1, 7)
DEFAULT_ATOL = 1e-4
EXPORTERS = ("auto", "dynamo", "torchscript")
Progress = Callable[[str], None]


@dataclass
class ParityRow:
    source: str  # "data" (images from the run's data set) or "random"
    batch: int
    max_abs_diff: float
    top1_agree: int
    n: int
    passed: bool


@dataclass
class ExportResult:
    path: str
    arch: str
    exporter: str
    opset: int
    ir_version: int
    input_name: str
    input_shape: list[Any]  # "N" for the dynamic batch axis
    size_bytes: int
    atol: float
    parity: list[ParityRow]
    passed: bool
    real_inputs: bool
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    spec: dict[str, Any] = field(default_factory=dict)
    variants: list[Any] = field(default_factory=list)  # VariantResult per --int8 / --fp16 file written

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ParityError(ModelError):
    """onnxruntime and torch disagree beyond tolerance; ``result`` holds the parity table."""

    def __init__(self, message: str, result: ExportResult):
        super().__init__(message)
        self.result = result


def export_onnx(target: str | Path, out: str | Path | None = None, opset: int = DEFAULT_OPSET,
                static_batch: bool = False, img_size: int | None = None, atol: float = DEFAULT_ATOL,
                exporter: str = "auto", precisions: tuple[str, ...] = (), calib: int = DEFAULT_CALIB,
                calib_method: str = DEFAULT_CALIB_METHOD, calib_data: str | Path | None = None,
                max_drop: float = DEFAULT_MAX_DROP, progress: Progress | None = None) -> ExportResult:
    """Export a run directory or checkpoint to ONNX, checked against torch on images from the run's data.

    Raises ParityError (and leaves no file) when onnxruntime disagrees with torch beyond ``atol``.
    ``precisions`` ("int8", "fp16") also writes ``NAME-int8.onnx`` / ``NAME-fp16.onnx`` beside the FP32
    file, each only if its accuracy on the run's test split is within ``max_drop`` points of the FP32
    file's (else AccuracyGateError, and that file is not written; the FP32 file is kept). INT8 is
    calibrated on ``calib`` images of the run's training split, or on ``calib_data`` (a uint8 ``.npy``).
    """
    from cnntool.export.quantize import check_options
    from cnntool.training.checkpoint import load_model, resolve_checkpoint

    say = progress or (lambda msg: None)
    precisions = tuple(dict.fromkeys(precisions))
    check_options(precisions, calib, calib_method, max_drop)
    say("loading the model")
    model, spec, ckpt = load_model(target)
    if img_size is not None and [img_size, img_size] != list(spec.input_size):
        model, spec = _resize_model(spec, ckpt, img_size, resolve_checkpoint(target))
    out = Path(out) if out is not None else default_output(target)
    check_output_path(out)
    data_cfg = run_data_config(ckpt)
    test = calib_images = None
    if precisions:
        test, calib_images = _gate_data(data_cfg, spec, precisions, calib, calib_data, say)
        for p in precisions:
            check_output_path(_variant_path(out, p))
    say("reading sample images from the run's data set")
    images, note = sample_run_images(ckpt, spec)
    result = export_model(model, spec, out, opset=opset, static_batch=static_batch, atol=atol, exporter=exporter,
                          images=images, notes=[note] if note else [], progress=progress,
                          data_options=asdict(data_cfg) if data_cfg is not None else None)
    from cnntool.export.quantize import AccuracyGateError, make_variant

    for p in precisions:
        try:
            result.variants.append(make_variant(p, out, test, calib_images=calib_images if p == "int8" else None,
                                                calib_method=calib_method, max_drop=max_drop, progress=progress))
        except AccuracyGateError as e:
            result.variants.append(e.result)
            e.export = result
            raise
    return result


def _variant_path(out: Path, precision: str) -> Path:
    from cnntool.export.quantize import variant_path

    return variant_path(out, precision)


def run_data_config(ckpt: dict[str, Any]):
    """The DataConfig a checkpoint was trained with, or None when it does not record its data set."""
    from cnntool.config import RunConfig

    options = ckpt.get("options") or {}
    if "data" not in options:
        return None
    try:
        return RunConfig.from_flat(options).data
    except (CnnToolError, TypeError, ValueError):
        return None


def _gate_data(cfg, spec: ModelSpec, precisions, calib: int, calib_data, say):
    """(test split, calibration images) for the accuracy gate, read before anything is written."""
    from cnntool.export.onnx_eval import load_split
    from cnntool.export.quantize import load_calibration, pick_calibration

    if cfg is None:
        raise CheckpointError("the checkpoint does not record its data set, so the accuracy of "
                              f"--{precisions[0]} cannot be checked on its test split")
    say("reading the run's test split for the accuracy check")
    test = load_split(cfg, spec, "test")
    calib_images = None
    if "int8" in precisions:
        if calib_data is not None:
            calib_images = load_calibration(calib_data, spec)
        else:
            calib_images = pick_calibration(load_split(cfg, spec, "train"), calib)
    return test, calib_images


def default_output(target: str | Path) -> Path:
    """``RUN/model.onnx`` for a run directory, ``NAME.onnx`` beside a checkpoint ``NAME.pt``."""
    p = Path(target)
    return p / "model.onnx" if p.is_dir() else p.with_suffix(".onnx")


def check_output_path(out: Path) -> None:
    """The file ``-o`` names must be new, or an earlier ONNX export (``.onnx``): never overwrite other files."""
    if out.is_dir():
        raise ConfigError(f"-o {out} is a directory; give a file name such as {out / 'model.onnx'}")
    if not out.parent.is_dir():
        raise CheckpointError(f"-o {out}: folder {out.parent} does not exist")
    if (out.exists() or out.is_symlink()) and out.suffix.lower() != ".onnx":
        raise ConfigError(f"-o {out}: file exists and is not an .onnx export; not overwriting it "
                          f"(remove it or choose another name)")


def export_model(model: nn.Module, spec: ModelSpec, out: str | Path, opset: int = DEFAULT_OPSET,
                 static_batch: bool = False, atol: float = DEFAULT_ATOL, exporter: str = "auto",
                 images: np.ndarray | None = None, notes: list[str] | None = None,
                 progress: Progress | None = None, data_options: dict[str, Any] | None = None) -> ExportResult:
    """Export an in-memory model described by ``spec``; ``images`` (uint8 N×C×H×W) are the real parity inputs;
    ``data_options`` (a DataConfig as a dict) are recorded so `cnntool eval model.onnx` rebuilds the splits."""
    import onnx

    say = progress or (lambda msg: None)
    start = time.perf_counter()
    notes = list(notes or [])
    _check_options(opset, atol, exporter)
    out = Path(out)
    check_output_path(out)
    model = model.cpu().eval()
    say(f"exporting {spec.arch} to ONNX (opset {opset})")
    proto, used, note = to_onnx(model, spec, opset, static_batch, exporter)
    if note:
        notes.append(note)
    _describe(proto, spec, used, data_options)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # ValidationError, InferenceError
        raise ModelError(f"exported {spec.arch} fails onnx.checker ({first_line(e)})") from None

    with atomic_path(out) as tmp:  # renamed onto out only when the parity check passes
        tmp.write_bytes(proto.SerializeToString())
        say("checking onnxruntime against torch")
        rows = parity_check(model, spec, tmp, images, atol)
        inp = proto.graph.input[0]
        shape = [d.dim_value if d.HasField("dim_value") else "N" for d in inp.type.tensor_type.shape.dim]
        result = ExportResult(
            path=str(out), arch=spec.arch, exporter=used, opset=opset, ir_version=proto.ir_version,
            input_name=inp.name, input_shape=shape, size_bytes=tmp.stat().st_size, atol=atol, parity=rows,
            passed=all(r.passed for r in rows), real_inputs=images is not None, notes=notes,
            seconds=round(time.perf_counter() - start, 3), spec=spec.to_dict())
        if not result.passed:
            bad = max(rows, key=lambda r: (not r.passed, r.max_abs_diff))
            raise ParityError(
                f"{out}: onnxruntime disagrees with torch ({bad.source} inputs, batch {bad.batch}: max |Δ| "
                f"{bad.max_abs_diff:.3g} (tolerance {atol:g}), top-1 agreement {bad.top1_agree}/{bad.n}); "
                f"file not written", result)
    return result


def to_onnx(model: nn.Module, spec: ModelSpec, opset: int, static_batch: bool, exporter: str = "auto"):
    """Returns (ModelProto, exporter used, a note when ``auto`` fell back to TorchScript, else None)."""
    c, (h, w) = spec.in_channels, spec.input_size
    # Batch 2 for the example: torch.export specialises a dimension whose example size is 0 or 1.
    x = torch.randn(1 if static_batch else 2, c, h, w, generator=torch.Generator().manual_seed(0))
    reason = None
    if exporter == "auto" and opset < DYNAMO_MIN_OPSET:
        reason = f"it writes opset {DYNAMO_MIN_OPSET} or later"
    elif exporter in ("auto", "dynamo"):
        try:
            return _export_dynamo(model, x, opset, static_batch), "dynamo", None
        except Exception as e:  # noqa: BLE001 - torch.export / onnxscript raise many types
            if exporter == "dynamo":
                raise ModelError(f"dynamo exporter cannot export {spec.arch} ({first_line(e)})") from None
            reason = f"it failed: {first_line(e)}"
    try:
        proto = _export_torchscript(model, x, opset, static_batch)
    except Exception as e:  # noqa: BLE001
        extra = f"; dynamo exporter not used: {reason}" if reason else ""
        raise ModelError(f"cannot export {spec.arch} to ONNX (TorchScript exporter: {first_line(e)}{extra})") from None
    return proto, "torchscript", (f"used the TorchScript exporter, not the dynamo one ({reason})" if reason else None)


def _export_dynamo(model: nn.Module, x: torch.Tensor, opset: int, static_batch: bool):
    dynamic = None if static_batch else ({0: torch.export.Dim("batch", min=1)},)
    with quiet():
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, input_names=["input"],
                                    output_names=["logits"], dynamic_shapes=dynamic, optimize=True,
                                    verbose=False, report=False)
    proto = program.model_proto
    if proto.opset_import and _default_opset(proto) != opset:
        raise ModelError(f"dynamo exporter wrote opset {_default_opset(proto)}, not {opset}")
    return proto


def _export_torchscript(model: nn.Module, x: torch.Tensor, opset: int, static_batch: bool):
    import onnx

    buf = io.BytesIO()
    axes = None if static_batch else {"input": {0: "batch"}, "logits": {0: "batch"}}
    with quiet():
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes=axes, do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def _default_opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), -1)


def _describe(proto, spec: ModelSpec, exporter: str, data_options: dict[str, Any] | None = None) -> None:
    """Pin the IR version onnxruntime reads, and store the spec in metadata_props."""
    import onnx

    try:
        needed = onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    except Exception:  # noqa: BLE001 - an opset onnx does not know: keep what the exporter wrote
        needed = proto.ir_version
    proto.ir_version = max(needed, min(proto.ir_version, MAX_IR_VERSION))
    extra: dict[str, Any] = {"exporter": exporter, "torch_version": torch.__version__}
    if data_options is not None:
        extra["data"] = data_options  # -> DATA_KEY
    props = spec_to_metadata(spec, extra)
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in keep + list(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"cnntool {__version__} {spec.arch}: {spec.in_channels}×{spec.input_size[0]}×"
                        f"{spec.input_size[1]} input, {spec.num_classes} classes; spec in metadata_props "
                        f"'cnntool.spec'")
    proto.graph.doc_string = proto.doc_string


def parity_check(model: nn.Module, spec: ModelSpec, onnx_path: str | Path, images: np.ndarray | None,
                 atol: float = DEFAULT_ATOL, batches: tuple[int, ...] = PARITY_BATCHES) -> list[ParityRow]:
    """torch (eval mode) vs onnxruntime on real images (if any) and random ones, at each batch size.

    Top-1 agrees when the argmaxes match, or when torch's own logits for the two classes are within
    ``atol`` (a tie that no runtime can be expected to break the same way).
    """
    from cnntool.data.pipeline import normalize_uint8
    from cnntool.export.runtime import OnnxClassifier

    session = OnnxClassifier(onnx_path, threads=None)
    c, (h, w) = spec.in_channels, spec.input_size
    n = max(batches)
    sources = []
    if images is not None and len(images):
        reps = -(-n // len(images))
        sources.append(("data", np.concatenate([images] * reps)[:n]))
    rng = np.random.default_rng(0)
    sources.append(("random", rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)))
    rows = []
    model.eval()
    for name, imgs in sources:
        for b in batches:
            x = normalize_uint8(torch.from_numpy(np.ascontiguousarray(imgs[:b])), spec.mean, spec.std)
            with torch.no_grad():
                ref = model(x).float().numpy()
            got = session.run(x.numpy())
            if ref.shape != got.shape:
                raise ModelError(f"onnxruntime output has shape {got.shape}, torch {ref.shape}")
            diff = float(np.max(np.abs(ref - got))) if np.all(np.isfinite(got)) else float("inf")
            a, g = ref.argmax(1), got.argmax(1)
            rows_idx = np.arange(b)
            agree = int(np.sum((a == g) | (np.abs(ref[rows_idx, a] - ref[rows_idx, g]) <= atol)))
            rows.append(ParityRow(name, b, diff, agree, b, diff <= atol and agree == b))
    return rows


def sample_run_images(ckpt: dict[str, Any], spec: ModelSpec, n: int = 7) -> tuple[np.ndarray | None, str | None]:
    """Up to ``n`` images (uint8, at the model's input size) from the data set the checkpoint was trained on.

    Returns (None, why) when the data set cannot be read here (not downloaded, folder moved, ...).
    """
    from cnntool.config import RunConfig
    from cnntool.data.preprocess import load_for_model
    from cnntool.data.splits import resize_array
    from cnntool.data.sources import ArrayPart, load_raw

    options = ckpt.get("options") or {}
    try:
        cfg = RunConfig.from_flat(options).data
        raw = load_raw(cfg.data, cfg.data_dir, download=False)
    except (CnnToolError, TypeError, ValueError, OSError) as e:
        return None, f"data set not readable here ({first_line(e)}): random inputs only"
    part = next(p for p in (raw.test, raw.val, raw.train) if p is not None)
    total = len(part.labels)
    if total == 0:
        return None, f"data set {raw.name} is empty: random inputs only"
    idx = sorted(set(np.linspace(0, total - 1, min(n, total)).round().astype(int).tolist()))
    if isinstance(part, ArrayPart):
        if part.images.shape[1] != spec.in_channels:
            return None, f"data set {raw.name} has {part.images.shape[1]} channel(s), the model {spec.in_channels}: " \
                         f"random inputs only"
        # The same resize as training and eval (the spec's crop_pct and interpolation), not a second copy.
        return resize_array(part.images[idx], spec.input_size, spec.crop_pct, spec.interpolation), None
    try:
        arrs = [load_for_model(part.paths[i], spec.in_channels, spec.input_size, spec.crop_pct,
                               spec.interpolation) for i in idx]
    except CnnToolError as e:
        return None, f"{first_line(e)}: random inputs only"
    return np.stack(arrs), None


def _resize_model(spec: ModelSpec, ckpt: dict[str, Any], img_size: int, path: Path):
    """Rebuild the model for another input size (adaptive-pooling models); weights must still fit."""
    from cnntool.errors import CheckpointError
    from cnntool.models import check_input_size
    from cnntool.training.checkpoint import build_from_spec, load_state

    if not 1 <= img_size <= MAX_SIDE:
        raise ConfigError(f"--img-size {img_size} must be in 1..{MAX_SIDE}")
    new = spec.replace(input_size=[img_size, img_size])
    model = build_from_spec(new)
    try:
        load_state(model, ckpt["model"], path)
    except (CheckpointError, RuntimeError) as e:
        raise ModelError(f"--img-size {img_size}: {spec.arch} trained at {spec.input_size[0]}×{spec.input_size[1]} "
                         f"has layers sized for that input ({first_line(e)})") from None
    check_input_size(model, spec.arch, spec.in_channels, new.input_size)
    return model.eval(), new


def _check_options(opset: int, atol: float, exporter: str) -> None:
    import onnx

    latest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= latest:
        raise ConfigError(f"--opset {opset} must be in [{MIN_OPSET}, {latest}] (default {DEFAULT_OPSET})")
    if not atol > 0:
        raise ConfigError(f"--atol {atol} must be > 0")
    if exporter not in EXPORTERS:
        raise ConfigError(f"--exporter {exporter!r} must be one of {', '.join(EXPORTERS)}")


