"""``evaluate_run`` behind `cnntool eval`: a run's model on a split of its data, metrics, files and figures.

The run and its data are rebuilt by ``cnntool.runs``; the arithmetic is ``cnntool.metrics``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

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
from cnntool.fileio import write_json
from cnntool.runs import ALL_SPLIT, LoadedRun, check_split, default_eval_split, load_run, load_run_data, run_logits


def compute_metrics(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                    top_wrong: int = 10, paths: list[str] | None = None,
                    classes: list[int] | None = None) -> dict[str, Any]:
    """Every number `cnntool eval` reports, from logits and labels (computed by ``cnntool.metrics``)."""
    return _compute_metrics(logits.detach().cpu().double().numpy(), labels.cpu().numpy(), class_names,
                            top_wrong, paths, classes)


def default_eval_dir(run: LoadedRun, split: str, data_name: str | None = None) -> Path:
    """``RUN/eval`` (test), ``RUN/eval_val``; a whole folder: ``RUN/eval_FOLDERNAME``."""
    if data_name is not None:
        from cnntool.viz._plot import safe_name

        return run.home / f"eval_{safe_name(data_name)}"
    return run.home / ("eval" if split == "test" else f"eval_{split}")


def evaluate_run(target: str | Path, data: str | None = None, split: str | None = "test",
                 out: str | Path | None = None,
                 data_dir: str | None = None, which: str = "best", device: str = "cpu", batch_size: int = 256,
                 top_wrong: int = 10, plots: bool = True, tta: str = "none",
                 progress: Callable[[str, int, int], None] | None = None) -> EvalResult:
    """Evaluate a run directory or checkpoint on a split of its data and write the results.

    Writes into ``out`` (default ``RUN/eval``; ``RUN/eval_val`` for ``split='val'``): ``metrics.json``,
    ``per_class.csv``, ``confusion.csv``, ``confusion_normalized.csv`` and, with ``plots``,
    ``confusion.png``, ``confusion_normalized.png`` and ``confident_wrong.png``.

    ``split=None``: ``all`` when ``data`` is a folder (the whole folder is scored, ``RUN/eval_FOLDER``),
    else ``test``. With ``all`` the folder may hold any subset of the model's classes (even one): the
    averages are over the classes it holds (``evaluated_classes``).
    """
    split = default_eval_split(data) if split is None else split
    check_split(split, allow_all=True)
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be >= 1")
    run = load_run(target, which, device)
    whole = split == ALL_SPLIT
    bundle = load_run_data(run, data, data_dir, progress, whole=whole)
    part = bundle.split(split)
    logits, labels = run_logits(run, part, device, batch_size, tta=tta)
    paths = getattr(part, "paths", None)
    names = list(run.spec.class_names)
    present = [c for c in (bundle.present_classes or names) if c in names]
    subset = [names.index(c) for c in present] if len(present) < len(names) else None
    m = compute_metrics(logits, labels, names, top_wrong, paths, subset)
    out_dir = Path(out) if out is not None else default_eval_dir(run, split, bundle.name if whole else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = EvalResult(run=str(run.home), checkpoint=str(run.checkpoint), data=bundle.name, split=split,
                        n=m["n"], class_names=list(run.spec.class_names), loss=m["loss"], top1=m["top1"],
                        top5=m["top5"], confusion=m["confusion"], per_class=m["per_class"], avg=m["avg"],
                        confident_wrong=m["confident_wrong"], evaluated_classes=present if subset else None,
                        ranking=m.get("ranking"))
    files = result.files
    files["per_class_csv"] = str(_write_per_class(out_dir / "per_class.csv", result))
    files["confusion_csv"] = str(_write_matrix(out_dir / "confusion.csv", result.confusion, result.class_names))
    files["confusion_normalized_csv"] = str(_write_matrix(out_dir / "confusion_normalized.csv",
                                                          row_normalise(result.confusion), result.class_names))
    if plots:
        from cnntool.viz.confusion import plot_confusion
        from cnntool.viz.grid import plot_confident_wrong

        title = f"{run.spec.arch} on {bundle.name} ({split}, n={result.n}, acc {result.top1:.2%})"
        if subset:
            title += f"; {len(present)} of {len(names)} classes in the data"
        files["confusion_png"] = str(plot_confusion(result.confusion, result.class_names,
                                                    out_dir / "confusion.png", normalize=False, title=title))
        files["confusion_normalized_png"] = str(plot_confusion(
            result.confusion, result.class_names, out_dir / "confusion_normalized.png", normalize=True, title=title))
        if result.n:
            from cnntool.metrics import softmax
            from cnntool.viz.ranking import plot_ranking

            files.update(plot_ranking(softmax(logits.detach().cpu().double().numpy()), labels.cpu().numpy(),
                                      result.class_names, out_dir, title))
        if result.confident_wrong:
            items = result.confident_wrong
            images = torch.stack([part.get(it["index"])[0] for it in items])
            where = "whole folder" if whole else f"{split} split"
            files["confident_wrong_png"] = str(plot_confident_wrong(
                items, images, out_dir / "confident_wrong.png", f"Most confidently wrong: {bundle.name}, {where}"))
    files["metrics_json"] = str(out_dir / "metrics.json")
    write_json(out_dir / "metrics.json", result.to_dict())
    return result

