"""cnntool predict: classify image files with an exported ONNX model (onnxruntime, no torch) or a run (torch)."""

from __future__ import annotations

import csv as _csv
import functools
import sys
import time
from typing import Annotated, Optional

import typer

from cnntool.errors import ExitStatus
from cnntool.cli.common import print_json, stderr_console

_OUT = "Output"
TABLE_ROWS = 50


def predict(
    model: Annotated[str, typer.Argument(help="An exported .onnx file (runs on onnxruntime, torch is not imported), "
                                         "or a run directory / checkpoint (runs on torch).", show_default=False)],
    inputs: Annotated[list[str], typer.Argument(help="Image files, directories (searched recursively), globs, "
                                                "or - to read paths from stdin (one per line).", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes to show per image.")] = 3,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per image on stdout.",
                                       rich_help_panel=_OUT)] = False,
    csv: Annotated[bool, typer.Option("--csv", help="CSV rows (with a header) on stdout.",
                                      rich_help_panel=_OUT)] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per inference call.")] = 32,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="CPU threads of the runtime, and image-decoding threads: 1 decodes in the "
                                 "main thread, N > 1 in a pool of N overlapping inference (default: all cores; "
                                 "decoding up to 4).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table on stderr (errors are still shown).",
                                        rich_help_panel=_OUT)] = False,
) -> None:
    """Predict the class of image files; preprocessing (size, channels, mean/std) comes from the model itself.

    A file that cannot be read is reported by name and skipped; the exit code is then 1.

    Example: [bold]cnntool predict model.onnx photos/ --top-k 3 --json[/bold]   or   [bold]find . -name '*.png' | cnntool predict model.onnx - --csv[/bold]
    """
    if json and csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--json/--csv")
    from cnntool.errors import DataError
    from cnntool.export.runtime import Failure, expand_inputs, open_classifier, predict_files

    console = functools.cache(stderr_console)  # rich is imported only when something is printed
    start = time.perf_counter()
    backend = open_classifier(model, threads)
    paths, failures = expand_inputs(inputs)
    for f in failures:
        _error(console(), f.error)
    if not paths:
        if not failures:
            raise DataError("no image files to predict")
        if not quiet:  # each bad input already has its one error line
            console().print(f"0 image(s) predicted, {len(failures)} failed")
        raise typer.Exit(ExitStatus.FAILURE)

    k = min(top_k, backend.spec.num_classes)
    writer = _csv.writer(sys.stdout, lineterminator="\n") if csv else None
    if writer:
        header = ["path", "label", "index", "prob"]
        for j in range(2, k + 1):
            header += [f"label_{j}", f"prob_{j}"]
        writer.writerow(header)
    progress = None if quiet else _progress(console(), len(paths), batch_size)

    def batch_done(done: int, total: int) -> None:  # lines reach a pipe a batch at a time, not one write each
        sys.stdout.flush()
        if progress:
            progress.update(done, total)

    shown, n_ok, n_bad = [], 0, len(failures)
    try:
        for item in predict_files(backend, paths, batch_size, k, on_progress=batch_done, threads=threads):
            if isinstance(item, Failure):
                n_bad += 1
                _error(console(), item.error)
                continue
            n_ok += 1
            if json:
                print_json(item.to_dict(), flush=False)
            elif writer:
                row = [item.path, item.label, item.index, f"{item.prob:.6f}"]
                for lab, _, p in item.top_k[1:]:
                    row += [lab, f"{p:.6f}"]
                writer.writerow(row)
            if len(shown) < TABLE_ROWS:
                shown.append(item)
    finally:
        sys.stdout.flush()
        if progress:
            progress.close()
    if not quiet:
        _table(console(), shown, n_ok, k)
        console().print(f"{n_ok} image(s) predicted, {n_bad} failed, with {backend.name} ({model}) in "
                      f"{time.perf_counter() - start:.2f} s")
    if n_bad:
        raise typer.Exit(ExitStatus.FAILURE)


def _error(console, message: str) -> None:
    from rich.markup import escape

    from cnntool.data.preprocess import clean_text

    console.print(f"[bold red]error:[/bold red] {escape(clean_text(message))}", soft_wrap=True)


def _table(console, shown, n_ok: int, k: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cnntool.data.preprocess import clean_text

    t = Table(show_edge=False)
    t.add_column("file", overflow="fold")
    t.add_column("label")
    t.add_column("prob", justify="right")
    if k > 1:
        t.add_column(f"next {k - 1}")
    for p in shown:
        row = [escape(clean_text(p.path)), escape(clean_text(p.label)), f"{p.prob:.3f}"]
        if k > 1:
            row.append(", ".join(f"{escape(lab)} {prob:.3f}" for lab, _, prob in p.top_k[1:]))
        t.add_row(*row)
    if n_ok > len(shown):
        t.caption = f"first {len(shown)} of {n_ok} (all of them with --json or --csv)"
    if shown:
        console.print(t)


class _Bar:
    def __init__(self, console, total: int):
        from rich.progress import Progress

        self.progress = Progress(console=console, transient=True)
        self.task = self.progress.add_task("predicting", total=total)
        self.progress.start()

    def update(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        self.progress.stop()


def _progress(console, n: int, batch_size: int):
    if not console.is_terminal or n <= batch_size:
        return None
    return _Bar(console, n)
