"""cnntool eval."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnntool.cli.common import print_json, stderr_console

_ONNX = "ONNX files"


def eval_command(
    target: Annotated[str, typer.Argument(help="Run directory, checkpoint file, or exported .onnx file "
                                          "(evaluated with onnxruntime, torch-free).", show_default=False)],
    data: Annotated[Optional[str], typer.Option("--data", help="Data set name or folder "
                                                "(default: the run's own).")] = None,
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="Where named data sets live "
                                                    "(default: the run's own).")] = None,
    split: Annotated[Optional[str], typer.Option(
        "--split", help="test, val, train or all (every image, unsplit). Default: all with --data FOLDER "
                        "(the whole folder, any subset of the model's classes), else test.",
        show_default=False)] = None,
    which: Annotated[str, typer.Option("--which", help="Checkpoint of a run directory: best or last.")] = "best",
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Folder for the result files "
                                               "(default: RUN/eval, RUN/eval_val for --split val).")] = None,
    top_wrong: Annotated[int, typer.Option("--top-wrong", min=0, help="How many most confidently wrong examples.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Batch size.")] = 256,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")] = "cpu",
    tta: Annotated[str, typer.Option("--tta", help="Test-time augmentation: none, flip (mean softmax of image + "
                                     "mirror) or flip-crop (those two and their 4 corner shifts).")] = "none",
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write the CSV/JSON files only.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print every result as one JSON object on stdout.")] = False,
    classes: Annotated[Optional[str], typer.Option("--classes", help="ONNX file without cnntool metadata: "
                                                   "class names in output order, comma-separated.",
                                                   rich_help_panel=_ONNX)] = None,
    img_size: Annotated[Optional[int], typer.Option("--img-size", min=1, help="ONNX file without cnntool "
                                                    "metadata: square input size (when the graph's is not "
                                                    "fixed).", rich_help_panel=_ONNX)] = None,
    mean: Annotated[Optional[str], typer.Option("--mean", help="ONNX file without cnntool metadata: per-channel "
                                                "mean, comma-separated (e.g. 0.485,0.456,0.406).",
                                                rich_help_panel=_ONNX)] = None,
    std: Annotated[Optional[str], typer.Option("--std", help="ONNX file without cnntool metadata: per-channel "
                                               "std, comma-separated.", rich_help_panel=_ONNX)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="onnxruntime threads (ONNX files; "
                                                   "default: all cores).", rich_help_panel=_ONNX)] = None,
) -> None:
    """Evaluate a trained model: loss, top-1/top-5, per-class table, confusion matrix, confident mistakes.

    Class indices, input size and normalisation come from the checkpoint; the data split is rebuilt with
    the run's split seed, so `cnntool eval RUN` reproduces the test accuracy `train` reported.

    An exported .onnx file is evaluated by onnxruntime alone (torch is never imported), on the data set and
    splits recorded in the file (or --data): the accuracy of the file you ship.

    Example: [bold]cnntool eval runs/train --json[/bold]   [bold]cnntool eval runs/train/model-int8.onnx[/bold]
    """
    from cnntool.errors import ConfigError

    if top_wrong < 0:
        raise ConfigError(f"--top-wrong {top_wrong} must be >= 0")
    from cnntool.export.runtime import is_onnx_path

    if is_onnx_path(target):
        from cnntool.export.onnx_eval import evaluate_onnx

        if which != "best" or device != "cpu" or tta != "none":
            flag = "--which" if which != "best" else "--device" if device != "cpu" else "--tta"
            raise ConfigError(f"{flag} applies to runs and checkpoints; {target} runs on onnxruntime's CPU provider")
        result = evaluate_onnx(target, data=data, split=split or "test", out=out, data_dir=data_dir, batch_size=batch_size,
                               top_wrong=top_wrong, plots=not no_plots, threads=threads, classes=classes,
                               img_size=img_size, mean=mean, std=std)
    else:
        given = [f for f, v in (("--classes", classes), ("--img-size", img_size), ("--mean", mean),
                                ("--std", std), ("--threads", threads)) if v is not None]
        if given:
            raise ConfigError(f"{given[0]} applies to ONNX files only; {target} is a run or checkpoint")
        from cnntool.evaluation import evaluate_run
        from cnntool.training.engine import resolve_device

        dev = str(resolve_device(device))
        result = evaluate_run(target, data=data, split=split, out=out, data_dir=data_dir, which=which, device=dev,
                              batch_size=batch_size, top_wrong=top_wrong, plots=not no_plots, tta=tta)
    if json:
        print_json(result.to_dict())
        return
    _render(result)
    for path in result.files.values():
        typer.echo(path)


def _render(r) -> None:
    from cnntool.cli.tables import build_table

    console = stderr_console()
    head = f"[bold]{r.data}[/bold] {r.split} split, n={r.n}: loss {r.loss:.4f}, top-1 {r.top1:.2%}"
    if r.top5 is not None:
        head += f", top-5 {r.top5:.2%}"
    console.print(head)
    rank = getattr(r, "ranking", None)
    if rank:
        console.print(f"  macro ROC AUC {rank['macro_roc_auc']:.4f}, macro average precision {rank['macro_ap']:.4f}, "
                      f"ECE {rank['ece']:.4f} (calibration error of the top-1 confidence)")
    rows = [[name, *(f"{float(r.per_class[k][i]):.3f}" for k in ("precision", "recall", "f1")),
             int(r.per_class["support"][i])] for i, name in enumerate(r.class_names)
            if not getattr(r, "evaluated_classes", None) or name in r.evaluated_classes]
    rows += [[label, *(f"{avg[k]:.3f}" for k in ("precision", "recall", "f1")), int(avg["support"])]
             for label, avg in (("macro avg", r.avg["macro"]), ("weighted avg", r.avg["weighted"]))]
    console.print(build_table(f"per class ({r.checkpoint})", [("class", "key"), ("precision", "num"),
                                                              ("recall", "num"), ("F1", "num"), ("support", "num")],
                              rows, sections=(len(rows) - 2,)))
    if getattr(r, "evaluated_classes", None):
        console.print(f"  the data holds {len(r.evaluated_classes)} of the model's {len(r.class_names)} classes; "
                      "averages are over those")
    if r.confident_wrong:
        rows = [[str(it.get("path", it["index"])), it["true"], it["pred"], f"{it['confidence']:.1%}"]
                for it in r.confident_wrong]
        console.print(build_table("most confidently wrong", [("file" if "path" in r.confident_wrong[0] else "index",
                                                              "path"), ("true", "key"), ("predicted", "key"),
                                                             ("confidence", "num")], rows))
