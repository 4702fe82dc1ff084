"""What every recipe shares: the output folder, the data options, --quick, and training one run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# Data sets with small grayscale images of digits/clothes: horizontal flips would change the class.
GRAYSCALE_DATA = ("digits", "mnist", "fashion-mnist")

# The coursework's optimiser unless a recipe says otherwise: Adam, constant learning rate.
ADAM = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "scheduler": "none"}


def default_threads() -> int:
    """Threads per run when --threads is not given: half the cores. On a busy machine torch's worker threads
    spin while waiting for each other; a ResNet-18 epoch on digits measured 10x slower with 2 threads than with
    1 on two shared cores."""
    return max(1, (os.cpu_count() or 1) // 2)


@dataclass
class Context:
    name: str
    out: Path
    data: str = "digits"
    data_dir: str | None = None
    download: bool = False
    quick: bool = False
    threads: int | None = None
    reporter: Callable[[str], Any] | None = None
    log: Callable[[str], None] = lambda text: None
    runs: list[str] = field(default_factory=list)
    track: str | None = None  # --log: trackers for every run of the recipe, grouped under the recipe's name
    mlflow_uri: str | None = None

    @property
    def offline(self) -> bool:
        """True on the embedded data set (digits), where no download is ever needed."""
        return self.data == "digits"

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    def thread_count(self) -> int:
        return self.threads or default_threads()

    def augment_preset(self) -> str:
        """Augmentation for 'augmentation on': flips and colour for photos, small shifts/rotations for digits."""
        return "digits" if self.data in GRAYSCALE_DATA else "standard"

    def data_options(self) -> dict[str, Any]:
        return {"data": self.data, "data_dir": self.data_dir, "download": self.download}

    def options(self, **opts: Any) -> dict[str, Any]:
        """Flat run options: the recipe's data and threads, then ``opts``."""
        tracking = {"log": self.track, "mlflow_uri": self.mlflow_uri, "log_group": self.name} if self.track else {}
        return {**self.data_options(), "threads": self.thread_count(), **tracking, **opts}

    def config(self, label: str, folder: str | Path | None = None, **opts: Any):
        from cnntool.config import RunConfig

        where = Path(folder) if folder is not None else self.out / "runs" / label
        return RunConfig.from_flat(self.options(**opts), out=str(where))

    def reporter_for(self, label: str):
        return self.reporter(label) if self.reporter else None

    def train(self, label: str, folder: str | Path | None = None, **opts: Any) -> dict[str, Any]:
        """One ordinary training run into ``OUT/runs/<label>``; returns fit()'s result plus ``label``."""
        from cnntool.runner import fit

        self.log(f"[{self.name}] train {label}")
        result = fit(self.config(label, folder, **opts), self.reporter_for(label))
        self.runs.append(result["run_dir"])
        return {"label": label, **result}

    def rel(self, path: str | Path) -> str:
        """A path relative to the output folder (for results.md links)."""
        try:
            return str(Path(path).resolve().relative_to(self.out.resolve()))
        except ValueError:
            return str(path)


def run_row(result: dict[str, Any], ctx: Context, **first: Any) -> dict[str, Any]:
    """The usual table row of one run: final metrics of summary.json, plus leading columns."""
    return {**first, "train_loss": result["train_loss"], "train_acc": result["train_acc"],
            "val_acc": result["val_acc"], "test_loss": result["test_loss"], "test_acc": result["test_acc"],
            "params": result["params"], "seconds": result["seconds"], "run_dir": ctx.rel(result["run_dir"])}


RUN_COLUMNS = ["train_loss", "train_acc", "val_acc", "test_loss", "test_acc", "params", "seconds", "run_dir"]


def table(title: str, columns: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows}


def curves(ctx: Context, run_dirs: list[str], name: str = "curves.png", title: str | None = None,
           labels: list[str] | None = None) -> str:
    """Overlaid loss/accuracy curves of several runs (cnntool.viz.curves) as ``OUT/<name>``; ``labels`` (one per
    run) names them in the legend, else the options that differ do."""
    from cnntool.viz.curves import plot_curves

    return str(plot_curves(run_dirs, ctx.out, title=title, filename=name, labels=labels))


def confusion(ctx: Context, run_dir: str, label: str) -> list[str]:
    """Test-split confusion matrices of one run into ``OUT/confusion/<label>/``."""
    from cnntool.viz.confusion import plot_run_confusion

    return [str(p) for p in plot_run_confusion(run_dir, "test", out_dir=ctx.out / "confusion" / label)]
