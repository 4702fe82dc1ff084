"""Evaluation of a trained model: metrics from a confusion matrix, and ``evaluate_run`` behind `cnntool eval`.

Also the shared loaders that eval and viz use to rebuild a run's model and data from the run
directory (or checkpoint) alone: class indices, input size and normalisation always come from
the checkpoint's ModelSpec, never from the data folders at eval time.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnntool.config import DataConfig
from cnntool.errors import ConfigError
from cnntool.spec import ModelSpec

SPLIT_NAMES = ("train", "val", "test")
# Options of config.json "options" that describe the data (everything else is irrelevant to eval).
_DATA_KEYS = ("data", "data_dir", "val_fraction", "test_fraction", "split_seed", "workers")


# --------------------------------------------------------------------------- metrics (pure numpy)

def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[t, p]`` = number of examples of true class t predicted as p (int64, num_classes²)."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    idx = labels * num_classes + preds
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined, as sklearn's
    ``zero_division=0``)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def averages(per_class: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Macro (unweighted mean over classes) and weighted (by support) averages of precision, recall, F1."""
    support = per_class["support"].astype(np.float64)
    total = support.sum()
    out: dict[str, dict[str, float]] = {"macro": {}, "weighted": {}}
    for key in ("precision", "recall", "f1"):
        values = per_class[key]
        out["macro"][key] = float(values.mean()) if len(values) else float("nan")
        out["weighted"][key] = float((values * support).sum() / total) if total else float("nan")
    out["macro"]["support"] = out["weighted"]["support"] = int(total)
    return out


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the recall of each true class on the diagonal); empty rows stay 0."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).double().mean())


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

@dataclass
class EvalResult:
    run: str
    checkpoint: str
    data: str
    split: str
    n: int
    class_names: list[str]
    loss: float
    top1: float
    top5: float | None
    confusion: np.ndarray
    per_class: dict[str, np.ndarray]
    avg: dict[str, dict[str, float]]
    confident_wrong: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        per_class = [{"class": name, "index": i, "precision": float(self.per_class["precision"][i]),
                      "recall": float(self.per_class["recall"][i]), "f1": float(self.per_class["f1"][i]),
                      "support": int(self.per_class["support"][i])}
                     for i, name in enumerate(self.class_names)]
        return {"run": self.run, "checkpoint": self.checkpoint, "data": self.data, "split": self.split,
                "n": self.n, "loss": self.loss, "acc": self.top1, "top1": self.top1, "top5": self.top5,
                "per_class": per_class, "macro_avg": self.avg["macro"], "weighted_avg": self.avg["weighted"],
                "class_names": self.class_names, "confusion_matrix": self.confusion.tolist(),
                "most_confident_wrong": self.confident_wrong, "files": self.files}


def compute_metrics(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                    top_wrong: int = 10, paths: list[str] | None = None) -> dict[str, Any]:
    """Every number `cnntool eval` reports, from logits and labels."""
    n_cls = len(class_names)
    labels = labels.long()
    n = len(labels)
    preds = logits.argmax(1) if n else torch.zeros(0, dtype=torch.long)
    cm = confusion_matrix(labels.numpy(), preds.numpy(), n_cls)
    per = per_class_metrics(cm)
    probs = logits.double().softmax(1) if n else torch.zeros(0, n_cls, dtype=torch.float64)
    wrong = (preds != labels).nonzero().flatten()
    conf = probs[wrong, preds[wrong]] if len(wrong) else torch.zeros(0, dtype=torch.float64)
    order = conf.argsort(descending=True)[:top_wrong]
    confident_wrong = []
    for j in order.tolist():
        i = int(wrong[j])
        item = {"index": i, "true": class_names[int(labels[i])], "pred": class_names[int(preds[i])],
                "confidence": float(conf[j]), "true_prob": float(probs[i, labels[i]])}
        if paths is not None:
            item["path"] = paths[i]
        confident_wrong.append(item)
    return {
        "n": n,
        "loss": float(F.cross_entropy(logits, labels).item()) if n else float("nan"),
        "top1": float((preds == labels).double().mean()) if n else float("nan"),
        "top5": topk_accuracy(logits, labels, 5) if n_cls > 5 else None,
        "confusion": cm, "per_class": per, "avg": averages(per), "confident_wrong": confident_wrong,
    }


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


def _write_matrix(path: Path, matrix: np.ndarray, class_names: list[str]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\pred", *class_names])
        for name, row in zip(class_names, matrix):
            w.writerow([name, *[(f"{v:.6g}" if isinstance(v, float) else int(v)) for v in row.tolist()]])
    return path


def _write_per_class(path: Path, r: EvalResult) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "precision", "recall", "f1", "support"])
        for i, name in enumerate(r.class_names):
            w.writerow([name, *(f"{float(r.per_class[k][i]):.6g}" for k in ("precision", "recall", "f1")),
                        int(r.per_class["support"][i])])
        for label, avg in (("macro avg", r.avg["macro"]), ("weighted avg", r.avg["weighted"])):
            w.writerow([label, *(f"{avg[k]:.6g}" for k in ("precision", "recall", "f1")), avg["support"]])
    return path
