"""The rich live view of a training run, on stderr: progress bar within the epoch, one row per epoch."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from cnntool.training.events import Reporter

_COLS = [("epoch", 7), ("train loss", 11), ("train acc", 10), ("val loss", 10), ("val acc", 9), ("lr", 10),
         ("sec", 7), ("", 6)]


class TrainView(Reporter):
    def __init__(self, console: Console, title: str = "train"):
        self.console = console
        self.title = title
        # Off a terminal rich draws no live bar; rows are still printed one line per epoch.
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                                 console=console, transient=True, disable=not console.is_terminal)
        self.task = None
        self.data_task = None
        self.last_time = 0.0

    def on_data(self, what: str, done: int, total: int) -> None:
        if not self.console.is_terminal:
            if done == total:
                self.console.print(f"{what}: {total} files")
            return
        self.progress.start()
        if self.data_task is None or self.progress.tasks[self.data_task].description != what:
            self.data_task = self.progress.add_task(what, total=total, loss=0.0)
        self.progress.update(self.data_task, completed=done)
        if done == total:
            self.progress.remove_task(self.data_task)
            self.data_task = None

    def on_start(self, info: dict[str, Any]) -> None:
        c = self.console
        sizes = ", ".join(f"{k} {v}" for k, v in info["split_sizes"].items())
        h, w = info["input_size"]
        c.print(f"[bold]{self.title}[/bold] → [cyan]{info['run_dir']}[/cyan]")
        trainable = info.get("trainable_params", info["params"])
        frozen = "" if trainable == info["params"] else f", {trainable:,} trainable"
        c.print(f"  model {info['arch']} ({info['params']:,} parameters{frozen}) · data {info['data']} "
                f"({sizes}) · input {info['in_channels']}×{h}×{w} · {info['num_classes']} classes")
        aug = ", ".join(f"{k}={v}" for k, v in info.get("augmentations", {}).items()) or "none"
        c.print(f"  {info['epochs']} epochs × {info['steps_per_epoch']} steps · device {info['device']} "
                f"({info['threads']} thread{'' if info['threads'] == 1 else 's'}) · augment {aug}")
        if info.get("start_epoch"):
            c.print(f"  resuming after epoch {info['start_epoch']}")
        if info.get("finetune_header") is not None:
            header = info["finetune_header"]
            c.print(Text("  " + header["line"], overflow="fold"))
            c.print(blocks_table(info["blocks"], header["title"], header["gradual"]))
        c.print("".join(f"{name:>{width}}" for name, width in _COLS), style="bold")
        self.last_time = 0.0

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(f"epoch {epoch}", total=steps, loss=0.0)

    def on_step(self, epoch: int, step_in_epoch: int, steps: int, loss: float) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=step_in_epoch, loss=loss)

    def on_eval(self, row: dict[str, Any], is_best: bool) -> None:
        secs = row["time"] - self.last_time
        self.last_time = row["time"]
        epoch = row["epoch"]
        cells = [f"{epoch:g}", f"{row['train_loss']:.4f}", f"{row['train_acc']:.4f}", f"{row['val_loss']:.4f}",
                 f"{row['val_acc']:.4f}", f"{row['lr']:.2e}", f"{secs:.1f}", "best" if is_best else ""]
        line = "".join(f"{v:>{w}}" for v, (_, w) in zip(cells, _COLS))
        self.progress.console.print(f"[green]{line}[/green]" if is_best else line)

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None

    def on_end(self, result: dict[str, Any]) -> None:
        self.progress.stop()
        t = Table(title=f"{self.title} finished: {result['run_dir']}", title_justify="left")
        for col in ("split", "loss", "accuracy"):
            t.add_column(col, justify="right" if col != "split" else "left")
        t.add_row(f"val (best, epoch {result['best_epoch']:g})", f"{result['val_loss']:.4f}", f"{result['val_acc']:.4f}")
        t.add_row(f"test ({result['test_n']} images)", f"{result['test_loss']:.4f}",
                  f"[bold]{result['test_acc']:.4f}[/bold]")
        self.console.print(t)
        note = " (stopped early)" if result.get("stopped_early") else ""
        self.console.print(f"  {result['epochs_run']:g} epochs in {result['seconds']:.1f} s{note}")

    def close(self) -> None:
        self.progress.stop()


@contextlib.contextmanager
def training_view(quiet: bool, title: str = "train", console: Console | None = None) -> Iterator[Reporter]:
    """The reporter of one training run: the live view, or a silent Reporter with ``quiet``; always closed."""
    if quiet:
        yield Reporter()
        return
    from cnntool.cli.common import stderr_console

    view = TrainView(console or stderr_console(), title=title)
    try:
        yield view
    finally:
        view.close()


@contextlib.contextmanager
def training_views(quiet: bool, console: Console) -> Iterator[Callable[[str], Reporter]]:
    """For commands that train several runs in turn (seeds, strategies, recipes): ``make(title)`` gives each
    run its view (silent with ``quiet``); the previous view is closed first (one live display at a time) and
    every view is closed at the end, also after an error."""
    views: list[TrainView] = []

    def make(title: str) -> Reporter:
        if quiet:
            return Reporter()
        for v in views:
            v.close()
        views.append(TrainView(console, title=title))
        return views[-1]

    try:
        yield make
    finally:
        for v in views:
            v.close()


def blocks_table(rows: list[dict[str, Any]], title: str, gradual: bool) -> Table:
    """Fine-tuning blocks (``Plan.counts()`` rows): parameters, trainable, frozen, when each unfreezes."""
    t = Table(title=title, title_justify="left")
    t.add_column("block")
    for col in ("params", "trainable", "frozen") + (("trains from epoch",) if gradual else ()):
        t.add_column(col, justify="right")
    for row in rows:
        cells = [row["block"] + (" (head)" if row["head"] else ""), f"{row['params']:,}",
                 f"{row['trainable']:,}", f"{row['frozen']:,}"]
        if gradual:
            cells.append(str(row["unfreezes_at_epoch"] or "never"))
        t.add_row(*cells, style="green" if row["trainable"] else "dim")
    total, trainable = sum(r["params"] for r in rows), sum(r["trainable"] for r in rows)
    cells = ["total", f"{total:,}", f"{trainable:,}", f"{total - trainable:,}"]
    t.add_row(*(cells + ([""] if gradual else [])), style="bold")
    return t
