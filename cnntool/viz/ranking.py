"""ROC and precision-recall curves per class (one vs rest) and the reliability diagram with its ECE.

The arithmetic is ``cnntool.metrics`` (numpy only); these functions only draw it."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cnntool.viz._plot import figure, save, short

MAX_CURVES = 20  # classes drawn one curve each; beyond that the 20 with the most images
SIZE = (7.5, 6.0)


def _classes(labels: np.ndarray, n_cls: int) -> list[int]:
    counts = np.bincount(labels, minlength=n_cls)
    present = [k for k in range(n_cls) if counts[k] > 0]
    return sorted(present, key=lambda k: -counts[k])[:MAX_CURVES]


def _legend(fig, ax, n: int) -> None:
    if n > 10:  # many classes: outside, beside the axes, so no curve is covered
        fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=7)
    else:
        ax.legend(fontsize=8, loc="lower right" if ax.get_xlabel().startswith("false") else "lower left")


def _colours(n: int):
    from cnntool.viz._plot import run_colors

    return run_colors(n)


def plot_roc(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: str | Path,
             title: str | None = None) -> Path:
    """One-vs-rest ROC curve of each class with images (AUC in the legend), chance diagonal."""
    from cnntool.metrics import roc_curve

    labels = np.asarray(labels)
    ks = _classes(labels, len(class_names))
    fig = figure(*SIZE)
    ax = fig.add_subplot(1, 1, 1)
    for k, (colour, _) in zip(ks, _colours(len(ks))):
        fpr, tpr, auc = roc_curve(probs[:, k], labels == k)
        ax.plot(fpr, tpr, color=colour, label=f"{short(class_names[k], 16)} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="0.5", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    _legend(fig, ax, len(ks))
    ax.set_title((title + "\n" if title else "") + "ROC, one class vs the rest", fontsize=10)
    return save(fig, path)


def plot_pr(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: str | Path,
            title: str | None = None) -> Path:
    """One-vs-rest precision-recall curve of each class with images (average precision in the legend)."""
    from cnntool.metrics import precision_recall_curve

    labels = np.asarray(labels)
    ks = _classes(labels, len(class_names))
    fig = figure(*SIZE)
    ax = fig.add_subplot(1, 1, 1)
    for k, (colour, _) in zip(ks, _colours(len(ks))):
        rec, prec, ap = precision_recall_curve(probs[:, k], labels == k)
        ax.step(rec, prec, where="post", color=colour, label=f"{short(class_names[k], 16)} (AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    _legend(fig, ax, len(ks))
    ax.set_title((title + "\n" if title else "") + "Precision-recall, one class vs the rest", fontsize=10)
    return save(fig, path)


def plot_reliability(probs: np.ndarray, labels: np.ndarray, path: str | Path, title: str | None = None) -> Path:
    """Accuracy per confidence bin against the diagonal of perfect calibration, bin counts below; ECE in
    the title."""
    from cnntool.metrics import reliability

    r = reliability(probs, labels)
    edges = r["edges"]
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    fig = figure(*SIZE)
    ax = fig.add_subplot(4, 1, (1, 3))
    has = r["count"] > 0
    ax.bar(centres[has], r["accuracy"][has], width=width * 0.95, color="C0", edgecolor="black", linewidth=0.5,
           label="accuracy in the bin")
    ax.plot(centres[has], r["confidence"][has], "o", color="C3", markersize=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], ":", color="0.4", label="perfect calibration")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title((title + "\n" if title else "") + f"Reliability of the top-1 confidence: ECE {r['ece']:.3f} "
                 f"({len(centres)} bins)", fontsize=10)
    low = fig.add_subplot(4, 1, 4, sharex=ax)
    low.bar(centres, r["count"], width=width * 0.95, color="0.6")
    low.set(xlabel="confidence of the predicted class", ylabel="images")
    return save(fig, path)


def plot_ranking(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], out_dir: str | Path,
                 title: str | None = None) -> dict[str, str]:
    """``roc.png``, ``pr.png`` and ``reliability.png`` in ``out_dir``, keyed as in ``EvalResult.files``."""
    out_dir = Path(out_dir)
    return {"roc_png": str(plot_roc(probs, labels, class_names, out_dir / "roc.png", title)),
            "pr_png": str(plot_pr(probs, labels, class_names, out_dir / "pr.png", title)),
            "reliability_png": str(plot_reliability(probs, labels, out_dir / "reliability.png", title))}
