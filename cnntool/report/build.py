"""Sections of tables and figures from runs, seeds, sweeps and recipes, reusing the existing figure code."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable

from cnntool.errors import CnnToolError, ConfigError
from cnntool.report.collect import Source, collect
from cnntool.report.render import write_html, write_markdown

MAX_METRIC_ROWS = 300  # metrics.csv rows shown in full up to this many; beyond it, the epoch ends only
MAX_EXPLAIN = 16
FINAL_KEYS = ("test_acc", "test_loss", "val_acc", "val_loss", "train_acc", "train_loss", "best_epoch", "epochs_run",
              "stopped_early", "params", "seconds")


def fmt(v: Any) -> str:
    """One cell: floats with 6 significant digits, NaN and None as '-'."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v)
    return str(v)


def table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> dict[str, Any]:
    return {"type": "table", "title": title, "columns": columns, "rows": [[fmt(c) for c in r] for r in rows],
            "note": note}


def figure(title: str, path: str | Path) -> dict[str, Any]:
    return {"type": "figure", "title": title, "path": str(path)}


def note(text: str) -> dict[str, Any]:
    return {"type": "note", "text": text}


def code(title: str, text: str) -> dict[str, Any]:
    return {"type": "code", "title": title, "text": text}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _try(blocks: list[dict[str, Any]], what: str, make: Callable[[], list[dict[str, Any]]]) -> None:
    """Blocks that need the model or the data: when they cannot be made, one note says why."""
    try:
        blocks.extend(make())
    except (CnnToolError, OSError, RuntimeError, ValueError) as e:
        blocks.append(note(f"{what}: skipped ({e})"))


# --------------------------------------------------------------------------- one run

def run_section(run: Path, tmp: Path, explain: int = 0, device: str = "cpu") -> dict[str, Any]:
    from cnntool.training.rundir import read_metrics

    config = _read_json(run / "config.json")
    summary = _read_json(run / "summary.json")
    rows = read_metrics(run / "metrics.csv")
    out = Path(tempfile.mkdtemp(prefix="run", dir=tmp))
    blocks: list[dict[str, Any]] = []
    if summary:
        blocks.append(table("Final metrics (summary.json)", ["metric", "value"],
                            [[k, summary[k]] for k in FINAL_KEYS if k in summary]))
    else:
        blocks.append(note("The run has not finished (no summary.json): curves and metrics so far."))
    options = config.get("options", {})
    if options:
        blocks.append(table(f"Options ({config.get('command', 'train')})", ["option", "value"],
                            [[k, v] for k, v in options.items()]))
    if config.get("resolved"):
        blocks.append(table("Resolved", ["what", "value"], [[k, v] for k, v in config["resolved"].items()]))
    has_model = (run / "best.pt").is_file()
    if has_model:
        _try(blocks, "model summary", lambda: _model_blocks(run))
    from cnntool.viz.curves import plot_curves

    blocks.append(figure("Curves", plot_curves([run], out, title=run.name, filename="curves.png")))
    epoch_ends = [r for r in rows if float(r["epoch"]).is_integer()] if len(rows) > MAX_METRIC_ROWS else rows
    cols = ["step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time"]
    blocks.append(table("Metrics per evaluation point (metrics.csv)", cols, [[r.get(c) for c in cols]
                                                                             for r in epoch_ends],
                        note="" if epoch_ends is rows else f"epoch ends only ({len(epoch_ends)} of {len(rows)})"))
    if has_model:
        _try(blocks, "evaluation", lambda: _eval_blocks(run, out, device))
        _try(blocks, "prediction grid", lambda: _prediction_blocks(run, out))
        if explain:
            _try(blocks, "explanations", lambda: _explain_blocks(run, out, explain))
    else:
        blocks.append(note("No best.pt: evaluation, predictions and explanations need the checkpoint."))
    title = f"Run {run.name}" + (f": {summary.get('arch', '')} on {summary.get('data', '')}" if summary else "")
    return {"title": title, "path": str(run), "blocks": blocks}


def _model_blocks(run: Path) -> list[dict[str, Any]]:
    from cnntool.viz.summary import summarise

    s = summarise(str(run))
    head = table("Model summary", ["arch", "input", "params", "trainable", "MACs", "FLOPs"],
                 [[s.arch, "×".join(map(str, s.input_shape)), s.total_params, s.trainable_params, s.macs, s.flops]],
                 note="MACs: multiply-accumulates of convolutions and matrix products for one image; FLOPs = 2 × MACs")
    layers = table("Layers", ["layer", "type", "output", "params", "MACs"],
                   [[r.name, r.type, "×".join(map(str, r.output_shape)) if r.output_shape else "-", r.params, r.macs]
                    for r in s.layers])
    return [head, layers]


def _eval_blocks(run: Path, out: Path, device: str) -> list[dict[str, Any]]:
    from cnntool.evaluation import evaluate_run

    r = evaluate_run(run, out=out / "eval", device=device)
    d = r.to_dict()
    blocks = [table(f"Evaluation on {r.split} (n={r.n})", ["metric", "value"],
                    [["loss", r.loss], ["top-1 accuracy", r.top1], ["top-5 accuracy", r.top5],
                     ["macro precision", r.avg["macro"]["precision"]], ["macro recall", r.avg["macro"]["recall"]],
                     ["macro F1", r.avg["macro"]["f1"]], ["weighted F1", r.avg["weighted"]["f1"]]]),
              table("Per class", ["class", "precision", "recall", "F1", "support"],
                    [[c["class"], c["precision"], c["recall"], c["f1"], c["support"]] for c in d["per_class"]])]
    for key, title in (("confusion_png", "Confusion matrix"), ("confusion_normalized_png", "Confusion matrix, "
                                                                                            "row-normalised")):
        if key in r.files:
            blocks.append(figure(title, r.files[key]))
    if r.confident_wrong:
        blocks.append(table("Most confidently wrong", ["index", "true", "predicted", "confidence", "p(true)"],
                            [[w["index"], w["true"], w["pred"], w["confidence"], w["true_prob"]]
                             for w in r.confident_wrong]))
        if "confident_wrong_png" in r.files:
            blocks.append(figure("Most confidently wrong", r.files["confident_wrong_png"]))
    return blocks


def _prediction_blocks(run: Path, out: Path) -> list[dict[str, Any]]:
    from cnntool.viz.predictions import plot_predictions

    return [figure("Predictions (10×3 test images)", plot_predictions(run, rows=10, cols=3, out_dir=out))]


def _explain_blocks(run: Path, out: Path, n: int) -> list[dict[str, Any]]:
    from cnntool.viz.cam import plot_cam
    from cnntool.viz.features import plot_feature_maps
    from cnntool.viz.filters import plot_filters
    from cnntool.viz.saliency import plot_saliency

    blocks = [figure("Filters of the first conv layer", plot_filters(run, out_dir=out))]
    for p in plot_feature_maps(run, from_split="test", n=1, out_dir=out):
        blocks.append(figure(f"Feature maps ({Path(p).stem})", p))
    blocks.append(figure(f"Class activation maps ({n} test images)", plot_cam(run, from_split="test", n=n,
                                                                               out_dir=out)))
    blocks.append(figure(f"Saliency, guided backprop ({n} test images)",
                         plot_saliency(run, from_split="test", n=n, out_dir=out)))
    return blocks


# --------------------------------------------------------------------------- several runs

def compare_section(title: str, runs: list[Path], tmp: Path) -> dict[str, Any]:
    from cnntool.experiments.compare import compare_runs

    out = Path(tempfile.mkdtemp(prefix="compare", dir=tmp))
    c = compare_runs([str(r) for r in runs], plot=out / "curves.png")
    differ = c["differing_options"]
    cols = ["run", *differ, "best_val_acc", "final_val_acc", "test_acc", "test_loss", "epochs", "seconds"]
    rows = [[Path(r["run"]).name, *(r["options"].get(k) for k in differ),
             *(r[k] for k in cols[1 + len(differ):])] for r in c["runs"]]
    blocks = [table(f"{len(runs)} runs" + (f" (options that differ: {', '.join(differ)})" if differ else ""), cols,
                    rows),
              figure("Curves (runs that differ only in seed: mean ± std band)", c["plot"])]
    return {"title": title, "path": "", "blocks": blocks}


def seeds_blocks(src: Source, tmp: Path) -> list[dict[str, Any]]:
    agg = src.meta.get("aggregate", {})
    blocks = []
    if agg:
        blocks.append(table(f"{len(src.meta.get('seeds', []))} seeds (seeds.json)", ["metric", "mean", "std", "min",
                                                                                   "max"],
                            [[m, a.get("mean"), a.get("std"), a.get("min"), a.get("max")] for m, a in agg.items()
                             if isinstance(a, dict)]))  # beside the metrics: threads_per_seed, jobs
    if src.runs:
        from cnntool.experiments.plots import band_figure, epoch_rows
        from cnntool.training.rundir import read_metrics

        out = Path(tempfile.mkdtemp(prefix="seeds", dir=tmp))
        blocks.append(figure("Seed band (mean ± std over seeds)", band_figure(
            [epoch_rows(read_metrics(r)) for r in src.runs], out / "band.png", title=src.path.name)))
    return blocks


def sweep_blocks(src: Source, tmp: Path) -> list[dict[str, Any]]:
    from cnntool.experiments.plots import history_figure, parallel_figure

    s = src.meta
    trials = s.get("trials", [])
    params = s.get("params", [])
    maximize = s.get("direction", "maximize") == "maximize"
    monitor = s.get("monitor", "val_acc")
    states = ", ".join(f"{n} {k.lower()}" for k, n in s.get("states", {}).items())
    blocks = [table("Study", ["what", "value"], [["study", s.get("study")], ["command", s.get("command")],
                                                 ["monitor", f"{monitor} ({s.get('direction')})"],
                                                 ["trials", f"{len(trials)} ({states})"],
                                                 ["storage", s.get("storage")]])]
    blocks.append(table("Trials", ["trial", "state", monitor, "test_acc", "epochs", "seconds", *params],
                        [[t["number"], t["state"].lower(), t["value"] if t["value"] is not None else t["last_value"],
                          t.get("test_acc"), t.get("epochs"), t.get("seconds"),
                          *(t["params"].get(p) for p in params)] for t in trials]))
    best = s.get("best")
    if best:
        out = Path(tempfile.mkdtemp(prefix="sweep", dir=tmp))
        blocks.append(figure("History", history_figure(trials, monitor, maximize, out / "history.png")))
        blocks.append(figure("Parallel coordinates", parallel_figure(trials, params, monitor, maximize,
                                                                     out / "parallel.png", s.get("axes"))))
        blocks.append(code(f"Best: trial {best['number']}, {monitor} {fmt(best['value'])}; reproduce with",
                           best["command"]))
    else:
        blocks.append(note("No trial has completed yet."))
    if s.get("importances"):
        blocks.append(table("Importances (Optuna)", ["parameter", "importance"],
                            [[k, v] for k, v in s["importances"].items()]))
    return blocks


def recipe_blocks(src: Source) -> list[dict[str, Any]]:
    r = src.meta
    blocks: list[dict[str, Any]] = []
    if r.get("description"):
        blocks.append(note(r["description"]))
    if r.get("headline"):
        blocks.append(note(str(r["headline"])))
    for t in r.get("tables", []):
        blocks.append(table(t["title"], t["columns"], [[row.get(c) for c in t["columns"]] for row in t["rows"]]))
    for p in r.get("plots", []):
        path = Path(p) if Path(p).is_absolute() else src.path / p
        if path.suffix == ".png" and path.is_file():
            blocks.append(figure(path.stem, path))
    for n in r.get("notes", []):
        blocks.append(note(str(n)))
    return blocks


# --------------------------------------------------------------------------- the report

def build_sections(targets: list[str | Path], tmp: Path, explain: int = 0, device: str = "cpu"
                   ) -> list[dict[str, Any]]:
    sources = [collect(t) for t in targets]  # every input checked before any figure is drawn
    singles = [s.path for s in sources if s.kind == "run"]
    sections: list[dict[str, Any]] = []
    if len(singles) == 1 and len(sources) == 1:
        sections.append(run_section(singles[0], tmp, explain, device))
    elif singles:
        sections.append(compare_section(f"{len(singles)} runs", singles, tmp))
    for src in sources:
        if src.kind == "run":
            continue
        label = {"runs": "Runs in", "seeds": "Seeds", "sweep": "Sweep", "recipe": "Recipe"}[src.kind]
        blocks: list[dict[str, Any]] = []
        if src.kind == "sweep":
            blocks += sweep_blocks(src, tmp)
        elif src.kind == "recipe":
            blocks += recipe_blocks(src)
        elif src.kind == "seeds":
            blocks += seeds_blocks(src, tmp)
        if src.runs and src.kind != "sweep":
            blocks += compare_section("", src.runs, tmp)["blocks"]
        title = src.meta.get("title") if src.kind == "recipe" and src.meta.get("title") else src.path.name
        sections.append({"title": f"{label} {title}", "path": str(src.path), "blocks": blocks})
    return sections


def build_report(targets: list[str | Path], out: str | Path = "report.html", markdown: bool = False,
                 explain: int = 0, title: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Write one self-contained HTML report (PNG figures inlined, no network, no JavaScript) or, with
    ``markdown``, ``OUT.md`` plus its PNG files in ``OUT_files/``. Nothing is written when an input is bad.

    Returns ``{"out", "sections": [titles], "figures": N, "tables": N, "files": [...]}``.
    """
    if not targets:
        raise ConfigError("give at least one run directory or folder")
    if not 0 <= explain <= MAX_EXPLAIN:
        raise ConfigError(f"--explain {explain} must be in 0..{MAX_EXPLAIN} images")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name such as {out / 'report.html'}")
    with tempfile.TemporaryDirectory(prefix="cnntool-report-") as tmp:
        sections = build_sections(list(targets), Path(tmp), explain, device)
        heading = title or "cnntool report: " + ", ".join(Path(t).name or str(t) for t in targets)
        files = write_markdown(sections, heading, out) if markdown else write_html(sections, heading, out)
    blocks = [b for s in sections for b in s["blocks"]]
    return {"out": str(files[0]), "sections": [s["title"] for s in sections], "files": [str(f) for f in files],
            "figures": sum(b["type"] == "figure" for b in blocks), "tables": sum(b["type"] == "table" for b in blocks)}
