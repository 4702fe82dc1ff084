"""Metric arithmetic on labels and predictions (numpy only: the ONNX eval path imports no torch)."""

from __future__ import annotations

import numpy as np


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
