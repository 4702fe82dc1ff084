"""Evaluation of a trained model: metrics from a confusion matrix, and ``evaluate_run`` behind `cnntool eval`."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cnntool.errors import ConfigError
from cnntool.fileio import atomic_path, write_json
from cnntool.metrics import averages, confusion_matrix, per_class_metrics, row_normalise
from cnntool.training.evaluate import metrics_from_logits
from cnntool.runs import LoadedRun, check_split, load_run, load_run_data, run_logits


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).double().mean())


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
        "loss": metrics_from_logits(logits, labels)["loss"],
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
    check_split(split)
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be >= 1")
    run = load_run(target, which, device)
    bundle = load_run_data(run, data, data_dir, progress)
    part = bundle.split(split)
    logits, labels = run_logits(run, part, device, batch_size)
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
    write_json(out_dir / "metrics.json", result.to_dict())
    return result


def _write_matrix(path: Path, matrix: np.ndarray, class_names: list[str]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\pred", *class_names])
        for name, row in zip(class_names, matrix):
            w.writerow([name, *[(f"{v:.6g}" if isinstance(v, float) else int(v)) for v in row.tolist()]])
    return path


def _write_per_class(path: Path, r: EvalResult) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "precision", "recall", "f1", "support"])
        for i, name in enumerate(r.class_names):
            w.writerow([name, *(f"{float(r.per_class[k][i]):.6g}" for k in ("precision", "recall", "f1")),
                        int(r.per_class["support"][i])])
        for label, avg in (("macro avg", r.avg["macro"]), ("weighted avg", r.avg["weighted"])):
            w.writerow([label, *(f"{avg[k]:.6g}" for k in ("precision", "recall", "f1")), avg["support"]])
    return path
