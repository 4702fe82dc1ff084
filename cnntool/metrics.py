"""Metric arithmetic on numpy arrays (no torch): confusion matrix, per-class P/R/F1, averages, top-k,
cross-entropy, the summary `cnntool eval` reports, and the CSV files it writes.

``cnntool eval RUN`` (torch) and ``cnntool eval model.onnx`` (onnxruntime) both compute and write their
numbers here, so the two report the same thing the same way.
"""

from __future__ import annotations

import contextlib
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnntool.fileio import atomic_path, write_json  # noqa: F401 - write_json re-exported for eval writers


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


def averages(per_class: dict[str, np.ndarray], classes: list[int] | None = None) -> dict[str, dict[str, float]]:
    """Macro (unweighted mean over classes) and weighted (by support) averages of precision, recall, F1;
    ``classes`` (indices) restricts both to the classes a data set holds (a folder with some of the classes)."""
    if classes is not None:
        per_class = {k: np.asarray(v)[classes] for k, v in per_class.items()}
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


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits (numpy arrays or CPU tensors); ties
    go to the lower class index, as ``argmax`` breaks them."""
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the softmax of ``logits`` against integer ``labels`` (float64; nan when empty)."""
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return float("nan")
    m = z.max(axis=1, keepdims=True)
    logsum = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(logsum - z[np.arange(len(labels)), labels]))


ECE_BINS = 15  # equal-width confidence bins of the reliability diagram and the ECE


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """One-vs-rest ROC of one class: (false positive rates, true positive rates, area under the curve).
    Thresholds at every distinct score, ties kept together (the curve scikit-learn draws without dropping
    collinear points); AUC by the trapezoidal rule. NaN AUC when a side is empty."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.zeros(0, dtype=int)
    tp = np.cumsum(y)[last] if len(s) else np.zeros(0)
    fp = (last + 1) - tp
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    tpr = np.r_[0.0, tp / n_pos] if n_pos else np.r_[0.0, np.full(len(tp), np.nan)]
    fpr = np.r_[0.0, fp / n_neg] if n_neg else np.r_[0.0, np.full(len(fp), np.nan)]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) if n_pos and n_neg else float("nan")
    return fpr, tpr, auc


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """One-vs-rest precision-recall of one class: (recall, precision, average precision); AP = Σ (R_n − R_{n−1})
    P_n over the distinct thresholds (scikit-learn's ``average_precision_score``). NaN AP without positives."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order]
    n_pos = int(y.sum())
    if not len(s) or not n_pos:
        return np.zeros(1), np.ones(1), float("nan")
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return np.r_[0.0, recall], np.r_[1.0, precision], ap


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Reliability diagram of the top-1 confidence: per equal-width bin the mean confidence, the accuracy and
    the count; ECE = Σ_b (n_b / N) |acc_b − conf_b| (Guo et al. 2017)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    conf = probs.max(1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(1) == labels) if len(probs) else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=conf, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    n = len(conf)
    ece = float(np.nansum(count / n * np.abs(acc - mean_conf))) if n else float("nan")
    return {"edges": edges, "confidence": mean_conf, "accuracy": acc, "count": count, "ece": ece}


def ranking_metrics(logits: np.ndarray, labels: np.ndarray, classes: list[int] | None = None) -> dict[str, Any]:
    """Per-class one-vs-rest ROC AUC and average precision (NaN where the data holds no image of the class),
    their macro means over ``classes`` (default: every class with images), and the ECE."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    probs = softmax(logits) if len(labels) else np.zeros((0, logits.shape[1] if logits.ndim == 2 else 0))
    n_cls = probs.shape[1]
    auc, ap = np.full(n_cls, np.nan), np.full(n_cls, np.nan)
    for k in range(n_cls):
        pos = labels == k
        if pos.any():
            auc[k] = roc_curve(probs[:, k], pos)[2]
            ap[k] = precision_recall_curve(probs[:, k], pos)[2]
    keep = classes if classes is not None else [k for k in range(n_cls) if np.isfinite(ap[k])]
    mean = lambda v: float(np.nanmean(v[keep])) if len(keep) and np.isfinite(v[keep]).any() else float("nan")  # noqa: E731
    return {"roc_auc": auc, "average_precision": ap, "macro_roc_auc": mean(auc), "macro_ap": mean(ap),
            "ece": reliability(probs, labels)["ece"]}


def compute_metrics(logits: np.ndarray, labels: np.ndarray, class_names: list[str],
                    top_wrong: int = 10, paths: list[str] | None = None,
                    classes: list[int] | None = None) -> dict[str, Any]:
    """Every number `cnntool eval` reports, from logits (N, classes) and labels (N,) as array-likes.
    ``classes``: indices of the classes the data holds (averages over those; default all)."""
    n_cls = len(class_names)
    logits = np.asarray(logits, dtype=np.float64).reshape(-1, n_cls)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    preds = logits.argmax(1) if n else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(labels, preds, n_cls)
    per = per_class_metrics(cm)
    probs = softmax(logits) if n else np.zeros((0, n_cls))
    wrong = np.flatnonzero(preds != labels)
    conf = probs[wrong, preds[wrong]]
    order = np.argsort(-conf, kind="stable")[:top_wrong]
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
        "loss": cross_entropy(logits, labels),
        "top1": float((preds == labels).mean()) if n else float("nan"),
        "top5": topk_accuracy(logits, labels, 5) if n_cls > 5 else None,
        "confusion": cm, "per_class": per, "avg": averages(per, classes), "confident_wrong": confident_wrong,
        "ranking": ranking_metrics(logits, labels, classes) if n else None,
        "preds": preds,
    }


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
    evaluated_classes: list[str] | None = None  # the classes the data holds, when a subset of the model's
    ranking: dict[str, Any] | None = None  # ranking_metrics: per-class ROC AUC / AP, macro means, ECE

    def to_dict(self) -> dict[str, Any]:
        per_class = [{"class": name, "index": i, "precision": float(self.per_class["precision"][i]),
                      "recall": float(self.per_class["recall"][i]), "f1": float(self.per_class["f1"][i]),
                      "support": int(self.per_class["support"][i])}
                     for i, name in enumerate(self.class_names)]
        return {"run": self.run, "checkpoint": self.checkpoint, "data": self.data, "split": self.split,
                "n": self.n, "loss": self.loss, "acc": self.top1, "top1": self.top1, "top5": self.top5,
                "per_class": per_class, "macro_avg": self.avg["macro"], "weighted_avg": self.avg["weighted"],
                "class_names": self.class_names, "confusion_matrix": self.confusion.tolist(),
                "most_confident_wrong": self.confident_wrong, "files": self.files,
                "evaluated_classes": self.evaluated_classes or list(self.class_names),
                **({"roc_auc": _nan_list(self.ranking["roc_auc"]),
                    "average_precision": _nan_list(self.ranking["average_precision"]),
                    "macro_roc_auc": self.ranking["macro_roc_auc"], "macro_ap": self.ranking["macro_ap"],
                    "ece": self.ranking["ece"]} if self.ranking else {})}


def _nan_list(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


@contextlib.contextmanager
def _atomic(path: Path):
    """A text file written beside ``path`` and renamed over it when complete (cnntool.fileio)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        yield f


def write_matrix(path: Path, matrix: np.ndarray, class_names: list[str]) -> Path:
    with _atomic(path) as f:
        w = csv.writer(f)
        w.writerow(["true\\pred", *class_names])
        for name, row in zip(class_names, matrix):
            w.writerow([name, *[(f"{v:.6g}" if isinstance(v, float) else int(v)) for v in row.tolist()]])
    return path


def write_per_class(path: Path, r: EvalResult) -> Path:
    with _atomic(path) as f:
        w = csv.writer(f)
        w.writerow(["class", "precision", "recall", "f1", "support"])
        for i, name in enumerate(r.class_names):
            w.writerow([name, *(f"{float(r.per_class[k][i]):.6g}" for k in ("precision", "recall", "f1")),
                        int(r.per_class["support"][i])])
        for label, avg in (("macro avg", r.avg["macro"]), ("weighted avg", r.avg["weighted"])):
            w.writerow([label, *(f"{avg[k]:.6g}" for k in ("precision", "recall", "f1")), avg["support"]])
    return path
