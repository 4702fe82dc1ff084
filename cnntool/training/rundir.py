"""Run directories: runs/train, runs/train2, ... or a chosen name; an existing run is never overwritten."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from cnntool import fileio
from cnntool.config import check_run_name
from cnntool.errors import CheckpointError, first_line

METRIC_COLUMNS = ["step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time"]


def allocate_run_dir(runs_root: str | Path = "runs", base: str = "train", name: str | None = None,
                     out: str | Path | None = None) -> Path:
    """Create and return a fresh run directory (``mkdir`` is atomic, so parallel runs never share one)."""
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise CheckpointError(f"--out {path} already exists and is not empty; choose another folder")
        path.mkdir(parents=True, exist_ok=True)
        return path
    check_run_name(name)
    root = Path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    if name is not None:
        path = root / name
        try:
            path.mkdir()
        except FileExistsError:
            raise CheckpointError(f"run {path} already exists; choose another --name or --resume {path}") from None
        return path
    for i in range(1, 100000):
        path = root / (base if i == 1 else f"{base}{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise CheckpointError(f"no free run name under {root}")


def remove_run_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def write_json(path: Path, obj: Any) -> None:
    fileio.write_json(path, obj)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


class MetricsWriter:
    """metrics.csv, one row per evaluation point, flushed as it goes."""

    def __init__(self, path: Path, keep_until_step: int | None = None):
        self.path = path
        rows = read_metrics(path) if keep_until_step is not None and path.exists() else []
        rows = [r for r in rows if keep_until_step is not None and r["step"] <= keep_until_step]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, "") for k in METRIC_COLUMNS})

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=METRIC_COLUMNS).writerow(
                {k: _fmt(row.get(k)) for k in METRIC_COLUMNS})


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # shortest string that round-trips exactly
    return v


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """metrics.csv as a list of dicts with numbers parsed (empty cells become None)."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.csv"
    if not p.is_file():
        raise CheckpointError(f"{p}: no metrics file")
    out = []
    try:
        with open(p, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                parsed: dict[str, Any] = {}
                for k, v in row.items():
                    if k is None or v in ("", None):
                        parsed[k] = None  # a short row, or an empty cell
                        continue
                    try:
                        parsed[k] = int(v) if k == "step" else float(v)
                    except ValueError:
                        if k in METRIC_COLUMNS:
                            raise CheckpointError(f"{p}: line {line}: {k} {v[:40]!r} is not a number") from None
                        parsed[k] = v
                out.append(parsed)
    except (UnicodeDecodeError, csv.Error) as e:
        raise CheckpointError(f"{p}: not a metrics CSV ({first_line(e)})") from None
    return out
