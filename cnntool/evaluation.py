"""Evaluation of a trained model: metrics from a confusion matrix, and ``evaluate_run`` behind `cnntool eval`.

Also the shared loaders that eval and viz use to rebuild a run's model and data from the run
directory (or checkpoint) alone: class indices, input size and normalisation always come from
the checkpoint's ModelSpec, never from the data folders at eval time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from cnntool.config import DataConfig
from cnntool.errors import ConfigError
# Metric arithmetic, the result record and its CSV writers live in cnntool.metrics (numpy, no torch);
# re-exported here for existing callers.
from cnntool.metrics import (  # noqa: F401
    EvalResult,
    averages,
    confusion_matrix,
    per_class_metrics,
    row_normalise,
    topk_accuracy,
)
from cnntool.metrics import compute_metrics as _compute_metrics
from cnntool.metrics import write_matrix as _write_matrix
from cnntool.metrics import write_per_class as _write_per_class
from cnntool.spec import ModelSpec

SPLIT_NAMES = ("train", "val", "test")
# Options of config.json "options" that describe the data (everything else is irrelevant to eval).
_DATA_KEYS = ("data", "data_dir", "val_fraction", "test_fraction", "split_seed", "workers")


# --------------------------------------------------------------------------- loading a run and its data

@dataclass
class LoadedRun:
    """A model rebuilt from a run directory or checkpoint, with where it came from."""

    model: nn.Module
    spec: ModelSpec
    ckpt: dict[str, Any]
    checkpoint: Path
    run_dir: Path | None  # the folder holding config.json/spec.json, when there is one
    options: dict[str, Any] = field(default_factory=dict)  # the flat training options

    @property
    def home(self) -> Path:
        """Where derived files go by default: the run directory, else the checkpoint's folder."""
        return self.run_dir if self.run_dir is not None else self.checkpoint.parent


def load_run(target: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    from cnntool.training.checkpoint import load_model, resolve_checkpoint

    path = resolve_checkpoint(target, which)
    model, spec, ckpt = load_model(path, which, device)
    run_dir = path.parent if (path.parent / "config.json").is_file() else None
    options = dict(ckpt.get("options") or {})
    if run_dir is not None:
        try:
            options = {**options, **json.loads((run_dir / "config.json").read_text()).get("options", {})}
        except (OSError, json.JSONDecodeError):
            pass
    return LoadedRun(model, spec, ckpt, path, run_dir, options)


def data_config_for(options: dict[str, Any], data: str | None = None, data_dir: str | None = None) -> DataConfig:
    """The DataConfig that reproduces a run's splits (same data, fractions and split seed); ``data`` and
    ``data_dir`` override the run's own."""
    values = {k: options[k] for k in _DATA_KEYS if options.get(k) is not None}
    if data is not None:
        values["data"] = data
    if data_dir is not None:
        values["data_dir"] = data_dir
    if "data" not in values:
        raise ConfigError("the checkpoint does not record its data set; pass --data")
    return DataConfig(**values)


def load_run_data(run: LoadedRun, data: str | None = None, data_dir: str | None = None,
                  progress: Callable[[str, int, int], None] | None = None):
    """The run's data set rebuilt with the model's spec (input size, mean/std, class order)."""
    from cnntool.data.bundle import load_data

    spec = run.spec
    cfg = data_config_for(run.options, data, data_dir)
    return load_data(cfg, input_size=spec.input_size, mean=spec.mean, std=spec.std,
                     class_names=spec.class_names, crop_pct=spec.crop_pct, interpolation=spec.interpolation,
                     progress=progress)


def check_split(split: str) -> str:
    if split not in SPLIT_NAMES:
        raise ConfigError(f"--split {split!r} must be one of {', '.join(SPLIT_NAMES)}")
    return split


# --------------------------------------------------------------------------- evaluate_run

def compute_metrics(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                    top_wrong: int = 10, paths: list[str] | None = None) -> dict[str, Any]:
    """Every number `cnntool eval` reports, from logits and labels (computed by ``cnntool.metrics``)."""
    return _compute_metrics(logits.detach().cpu().double().numpy(), labels.cpu().numpy(), class_names,
                            top_wrong, paths)


def default_eval_dir(run: LoadedRun, split: str) -> Path:
    return run.home / ("eval" if split == "test" else f"eval_{split}")


def evaluate_run(target: str | Path, data: str | None = None, split: str = "test", out: str | Path | None = None,
                 data_dir: str | None = None, which: str = "best", device: str = "cpu", batch_size: int = 256,
                 top_wrong: int = 10, plots: bool = True,
                 progress: Callable[[str, int, int], None] | None = None) -> EvalResult:
    """Evaluate a run directory or checkpoint on a split of its data and write the results.

    Writes into ``out`` (default ``RUN/eval``; ``RUN/eval_val`` for ``split='val'``): ``metrics.json``,
    ``per_class.csv``, ``confusion.csv``, ``confusion_normalized.csv`` and, with ``plots``,
    ``confusion.png``, ``confusion_normalized.png`` and ``confident_wrong.png``.
    """
    from cnntool.data.pipeline import BatchPipeline
    from cnntool.training.evaluate import predict_logits

    check_split(split)
    if batch_size < 1:
        from cnntool.errors import ConfigError

        raise ConfigError(f"--batch-size {batch_size} must be >= 1")
    run = load_run(target, which, device)
    bundle = load_run_data(run, data, data_dir, progress)
    part = bundle.split(split)
    pipeline = BatchPipeline(run.spec.mean, run.spec.std, device=device)
    logits, labels = predict_logits(run.model, part, pipeline, batch_size)
    if logits.numel() == 0:
        logits = torch.zeros(0, run.spec.num_classes)
    paths = getattr(part, "paths", None)
    m = compute_metrics(logits, labels, run.spec.class_names, top_wrong, paths)
    out_dir = Path(out) if out is not None else default_eval_dir(run, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = EvalResult(run=str(run.home), checkpoint=str(run.checkpoint), data=bundle.name, split=split,
                        n=m["n"], class_names=list(run.spec.class_names), loss=m["loss"], top1=m["top1"],
                        top5=m["top5"], confusion=m["confusion"], per_class=m["per_class"], avg=m["avg"],
                        confident_wrong=m["confident_wrong"])
    files = result.files
    files["per_class_csv"] = str(_write_per_class(out_dir / "per_class.csv", result))
    files["confusion_csv"] = str(_write_matrix(out_dir / "confusion.csv", result.confusion, result.class_names))
    files["confusion_normalized_csv"] = str(_write_matrix(out_dir / "confusion_normalized.csv",
                                                          row_normalise(result.confusion), result.class_names))
    if plots:
        from cnntool.viz.confusion import plot_confusion
        from cnntool.viz.predictions import plot_examples

        title = f"{run.spec.arch} on {bundle.name} ({split}, n={result.n}, acc {result.top1:.2%})"
        files["confusion_png"] = str(plot_confusion(result.confusion, result.class_names,
                                                    out_dir / "confusion.png", normalize=False, title=title))
        files["confusion_normalized_png"] = str(plot_confusion(
            result.confusion, result.class_names, out_dir / "confusion_normalized.png", normalize=True, title=title))
        if result.confident_wrong:
            items = result.confident_wrong
            images = torch.stack([part.get(it["index"])[0] for it in items])
            titles = [f"true {it['true']}\npred {it['pred']} ({it['confidence']:.0%})" for it in items]
            files["confident_wrong_png"] = str(plot_examples(
                images, titles, [True] * len(items), out_dir / "confident_wrong.png",
                cols=min(5, len(items)), title=f"Most confidently wrong ({split})"))
    files["metrics_json"] = str(out_dir / "metrics.json")
    (out_dir / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
