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
from cnntool.runs import LoadedRun, check_split, load_run, load_run_data, run_logits


def compute_metrics(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                    top_wrong: int = 10, paths: list[str] | None = None) -> dict[str, Any]:
    """Every number `cnntool eval` reports, from logits and labels (computed by ``cnntool.metrics``)."""
    return _compute_metrics(logits.detach().cpu().double().numpy(), labels.cpu().numpy(), class_names,
                            top_wrong, paths)


def default_eval_dir(run: LoadedRun, split: str) -> Path:
    return run.home / ("eval" if split == "test" else f"eval_{split}")


def evaluate_run(target: str | Path, data: str | None = None, split: str = "test", out: str | Path | None = None,
                 data_dir: str | None = None, which: str = "best", device: str = "cpu", batch_size: int = 256,
                 top_wrong: int = 10, plots: bool = True, tta: str = "none",
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
    logits, labels = run_logits(run, part, device, batch_size, tta=tta)
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
