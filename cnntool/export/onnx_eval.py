"""`cnntool eval model.onnx`: the accuracy of an exported file, with onnxruntime + numpy only (no torch).

The split is rebuilt exactly as ``cnntool eval RUN`` rebuilds it (same data options, read from the
file's ``cnntool.data`` metadata, and the same torch-free split code, ``cnntool.data.splits``); images are
decoded and normalised by the same functions predict uses (``cnntool.export.runtime``); the metrics and
the CSV/JSON files come from ``cnntool.metrics``, as for ``eval RUN``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from cnntool.config import DataConfig
from cnntool.data.preprocess import load_for_model
from cnntool.data.sources import ArrayPart, load_raw
from cnntool.data.splits import remap_classes, resize_array, split_parts
from cnntool.errors import ConfigError, DataError, ModelError
from cnntool.export.metadata import DATA_KEY, SPEC_KEY
from cnntool.metrics import EvalResult, compute_metrics, row_normalise, write_json, write_matrix, write_per_class
from cnntool.spec import ModelSpec

SPLITS = ("train", "val", "test")
Progress = Callable[[str, int, int], None]


@dataclass
class SplitImages:
    """One split of a data set at a model's input size, as uint8 arrays (decoded lazily for file sets)."""

    name: str  # data set name
    split: str
    labels: np.ndarray
    spec: ModelSpec
    images: np.ndarray | None = None  # (N, C, H, W) uint8 for in-memory sets
    paths: list[str] | None = None  # for folder sets

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: Sequence[int]) -> np.ndarray:
        """uint8 (len(idx), C, H, W)."""
        if self.images is not None:
            return self.images[np.asarray(idx, dtype=np.int64)]
        s = self.spec
        threads = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(threads) as pool:
            arrs = list(pool.map(lambda i: load_for_model(self.paths[i], s.in_channels, s.input_size, s.crop_pct,
                                                          s.interpolation), idx))
        return np.stack(arrs) if arrs else np.zeros((0, s.in_channels, *s.input_size), np.uint8)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, len(self), batch_size):
            idx = list(range(i, min(i + batch_size, len(self))))
            yield self.take(idx), self.labels[idx]


def data_config(props: dict[str, str] | None, data: str | None = None, data_dir: str | None = None,
                where: str = "model") -> DataConfig:
    """The data options an export recorded (``cnntool.data``), with ``data``/``data_dir`` overriding them."""
    values: dict[str, Any] = {}
    text = (props or {}).get(DATA_KEY)
    if text:
        try:
            stored = json.loads(text)
        except json.JSONDecodeError:
            raise ModelError(f"{where}: bad {DATA_KEY!r} metadata (not JSON)") from None
        names = {f.name for f in dataclasses.fields(DataConfig)}
        values = {k: v for k, v in stored.items() if k in names} if isinstance(stored, dict) else {}
        if data is not None and data != values.get("data"):
            values.pop("data_dir", None)  # the recorded folder belongs to the recorded data set
    elif data is None:
        raise ConfigError(f"{where} does not record the data set it was trained on; pass --data")
    if data is not None:
        values["data"] = data
    if data_dir is not None:
        values["data_dir"] = data_dir
    try:
        cfg = DataConfig(**values)
        cfg.validate()
    except TypeError as e:
        raise ModelError(f"{where}: bad {DATA_KEY!r} metadata ({e})") from None
    return cfg


def load_split(cfg: DataConfig, spec: ModelSpec, split: str = "test") -> SplitImages:
    """The ``split`` of ``cfg``'s data set, relabelled with the model's class order, at its input size."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r} must be one of {', '.join(SPLITS)}")
    raw = load_raw(cfg.data, cfg.data_dir, download=False)
    raw = remap_classes(raw, list(spec.class_names))
    part = split_parts(raw, cfg)[split]
    labels = np.asarray(part.labels, dtype=np.int64)
    if isinstance(part, ArrayPart):
        if part.images.shape[1] != spec.in_channels:
            raise DataError(f"data set {raw.name} has {part.images.shape[1]}-channel images; the model takes "
                            f"{spec.in_channels} channel(s)")
        images = resize_array(part.images, list(spec.input_size), spec.crop_pct, spec.interpolation)
        return SplitImages(raw.name, split, labels, spec, images=images)
    return SplitImages(raw.name, split, labels, spec, paths=list(part.paths))


def spec_from_options(input_shape: Sequence, where: str, classes: str | None = None, img_size: int | None = None,
                      mean: str | None = None, std: str | None = None) -> ModelSpec:
    """A spec for an ONNX file without cnntool metadata, from ``--classes/--img-size/--mean/--std``.

    The channel count and a fixed input size come from the graph's input; what cannot be found is named."""
    missing = [flag for flag, v in (("--classes", classes), ("--mean", mean), ("--std", std)) if not v]
    fixed = [d for d in list(input_shape)[2:] if isinstance(d, int) and d > 0]
    if img_size is None and len(fixed) != 2:
        missing.append("--img-size (the input size is not fixed in the graph)")
    if missing:
        raise ConfigError(f"{where} has no cnntool metadata ({SPEC_KEY!r}); pass {', '.join(missing)}")
    names = [c.strip() for c in classes.split(",") if c.strip()]
    m, s = _floats(mean, "--mean"), _floats(std, "--std")
    channels = input_shape[1] if len(input_shape) > 1 and isinstance(input_shape[1], int) else len(m)
    size = [img_size, img_size] if img_size is not None else fixed
    try:
        return ModelSpec(arch="onnx", num_classes=len(names), class_names=names, in_channels=channels,
                         input_size=size, mean=m, std=s)
    except Exception as e:  # CheckpointError from ModelSpec's validation names the bad field
        raise ConfigError(f"{where}: {e}") from None


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} {text!r} must be comma-separated numbers, e.g. 0.5,0.5,0.5") from None


def open_classifier(path: str | Path, threads: int | None = None, classes: str | None = None,
                    img_size: int | None = None, mean: str | None = None, std: str | None = None):
    """An ``OnnxClassifier``; a file without cnntool metadata needs the spec options (they are refused for a
    file that has its own)."""
    from cnntool.export.runtime import OnnxClassifier

    given = [f for f, v in (("--classes", classes), ("--img-size", img_size), ("--mean", mean), ("--std", std))
             if v is not None]
    clf = OnnxClassifier(path, threads=threads,
                         spec_for=lambda props, shape: spec_from_options(shape, str(path), classes, img_size,
                                                                         mean, std))
    if SPEC_KEY in clf.props and given:
        raise ConfigError(f"{path} carries its own spec (classes, input size, mean/std); drop {given[0]}")
    return clf, clf.props


def predict_split(classifier, part: SplitImages, batch_size: int = 256,
                  progress: Progress | None = None) -> np.ndarray:
    """Logits (N, classes) of the classifier on every image of the split, in order."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be >= 1")
    out = []
    done = 0
    for images, _ in part.batches(batch_size):
        out.append(classifier.logits(images))
        done += len(images)
        if progress:
            progress("evaluating", done, len(part))
    return np.concatenate(out) if out else np.zeros((0, classifier.spec.num_classes), np.float32)


def default_eval_dir(path: str | Path, split: str) -> Path:
    """``model-eval/`` beside ``model.onnx`` (``model-eval_val/`` for the val split)."""
    p = Path(path)
    return p.parent / (f"{p.stem}-eval" if split == "test" else f"{p.stem}-eval_{split}")


def evaluate_onnx(path: str | Path, data: str | None = None, split: str = "test", out: str | Path | None = None,
                  data_dir: str | None = None, batch_size: int = 256, top_wrong: int = 10, plots: bool = True,
                  threads: int | None = None, classes: str | None = None, img_size: int | None = None,
                  mean: str | None = None, std: str | None = None,
                  progress: Progress | None = None) -> EvalResult:
    """Evaluate an ONNX file on a split of a data set and write the files ``evaluate_run`` writes:
    ``metrics.json``, ``per_class.csv``, ``confusion.csv``, ``confusion_normalized.csv`` and, with ``plots``,
    ``confusion.png``, ``confusion_normalized.png``, ``roc.png``, ``pr.png``, ``reliability.png`` and
    ``confident_wrong.png``."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r} must be one of {', '.join(SPLITS)}")
    if top_wrong < 0:
        raise ConfigError(f"--top-wrong {top_wrong} must be >= 0")
    clf, props = open_classifier(path, threads, classes, img_size, mean, std)
    spec = clf.spec
    cfg = data_config(props, data, data_dir, where=str(path))
    part = load_split(cfg, spec, split)
    logits = predict_split(clf, part, batch_size, progress)
    m = compute_metrics(logits, part.labels, list(spec.class_names), top_wrong, part.paths)
    out_dir = Path(out) if out is not None else default_eval_dir(path, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = EvalResult(run=str(path), checkpoint=str(path), data=part.name, split=split, n=m["n"],
                        class_names=list(spec.class_names), loss=m["loss"], top1=m["top1"], top5=m["top5"],
                        confusion=m["confusion"], per_class=m["per_class"], avg=m["avg"],
                        confident_wrong=m["confident_wrong"], ranking=m.get("ranking"))
    files = result.files
    files["per_class_csv"] = str(write_per_class(out_dir / "per_class.csv", result))
    files["confusion_csv"] = str(write_matrix(out_dir / "confusion.csv", result.confusion, result.class_names))
    files["confusion_normalized_csv"] = str(write_matrix(out_dir / "confusion_normalized.csv",
                                                         row_normalise(result.confusion), result.class_names))
    if plots:
        from cnntool.viz.confusion import plot_confusion

        title = f"{Path(path).name} on {part.name} ({split}, n={result.n}, acc {result.top1:.2%})"
        files["confusion_png"] = str(plot_confusion(result.confusion, result.class_names,
                                                    out_dir / "confusion.png", normalize=False, title=title))
        files["confusion_normalized_png"] = str(plot_confusion(
            result.confusion, result.class_names, out_dir / "confusion_normalized.png", normalize=True, title=title))
        if result.n:  # the same figures as evaluate_run, drawn from numpy arrays (no torch)
            from cnntool.metrics import softmax
            from cnntool.viz.grid import plot_confident_wrong
            from cnntool.viz.ranking import plot_ranking

            files.update(plot_ranking(softmax(np.asarray(logits, dtype=np.float64)), np.asarray(part.labels),
                                      result.class_names, out_dir, title))
            if result.confident_wrong:
                items = result.confident_wrong
                files["confident_wrong_png"] = str(plot_confident_wrong(
                    items, part.take([it["index"] for it in items]), out_dir / "confident_wrong.png",
                    f"Most confidently wrong: {part.name}, {split} split"))
    files["metrics_json"] = str(out_dir / "metrics.json")
    write_json(out_dir / "metrics.json", result.to_dict())
    return result
