"""Confusion matrix as a heat map with counts (or row-normalised rates) in the cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnntool.viz._plot import figure, save, short


def confusion_figsize(num_classes: int) -> tuple[float, float]:
    side = min(24.0, max(6.0, 0.5 * num_classes + 3.0))
    return side + 1.2, side  # room for the colour bar


def plot_confusion(cm: np.ndarray, class_names: list[str], path: str | Path, normalize: bool = False,
                   title: str | None = None) -> Path:
    """Rows are true classes, columns predicted; ``normalize`` divides each row by its sum (recall on the
    diagonal). Cell values are written when there are at most 30 classes."""
    from cnntool.metrics import row_normalise

    cm = np.asarray(cm)
    n = len(class_names)
    values = row_normalise(cm) if normalize else cm
    fig = figure(*confusion_figsize(n))
    ax = fig.add_subplot(1, 1, 1)
    vmax = 1.0 if normalize else max(1, int(values.max()) if values.size else 1)
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    cbar.set_label("fraction of the true class" if normalize else "images")
    show_ticks = n <= 60
    fontsize = 10 if n <= 12 else (8 if n <= 30 else 6)
    labels = [short(c, 16) for c in class_names]
    ax.set_xticks(range(n) if show_ticks else [])
    ax.set_yticks(range(n) if show_ticks else [])
    if show_ticks:
        rotate = n > 10 or max((len(c) for c in labels), default=0) > 3
        ax.set_xticklabels(labels, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                           fontsize=fontsize)
        ax.set_yticklabels(labels, fontsize=fontsize)
    ax.set_xlabel("predicted class" + ("" if show_ticks else f" (0 … {n - 1})"))
    ax.set_ylabel("true class" + ("" if show_ticks else f" (0 … {n - 1})"))
    if n <= 30:
        threshold = vmax / 2
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                if not normalize and v == 0:
                    continue
                text = f"{v:.2f}" if normalize else str(int(v))
                if normalize and v < 0.005:
                    continue
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize - 1,
                        color="white" if v > threshold else "black")
    kind = "row-normalised (recall on the diagonal)" if normalize else "counts"
    ax.set_title(f"{title}\nConfusion matrix, {kind}" if title else f"Confusion matrix, {kind}", fontsize=11)
    return save(fig, path)


def plot_run_confusion(target: str | Path, split: str = "test", data: str | None = None,
                       out_dir: str | Path | None = None, which: str = "best") -> list[Path]:
    """``confusion_<split>.png`` and ``confusion_<split>_normalized.png`` (in ``RUN/plots``) for a run's split."""
    from cnntool.metrics import confusion_matrix
    from cnntool.runs import check_split, load_run, load_run_data, run_logits

    check_split(split)
    run = load_run(target, which)
    bundle = load_run_data(run, data)
    logits, labels = run_logits(run, bundle.split(split))
    cm = confusion_matrix(labels.numpy(), logits.argmax(1).numpy(), run.spec.num_classes)
    n = int(cm.sum())
    acc = float(np.trace(cm) / n) if n else float("nan")
    out_dir = run.plots_dir(out_dir)
    variant = run.home.name if run.home.name != run.spec.arch else ""
    title = f"{variant + ': ' if variant else ''}{run.spec.arch} on {bundle.name} ({split}, n={n}, acc {acc:.2%})"
    return [plot_confusion(cm, run.spec.class_names, out_dir / f"confusion_{split}.png", False, title),
            plot_confusion(cm, run.spec.class_names, out_dir / f"confusion_{split}_normalized.png", True, title)]
