"""What each report input is: a run, a folder of runs, a seeds folder, a sweep folder or a recipe folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnntool.errors import DataError

KINDS = ("run", "runs", "seeds", "sweep", "recipe")
MARKERS = {"sweep": "sweep.json", "seeds": "seeds.json", "recipe": "results.json"}  # folder kind <- its file


@dataclass
class Source:
    kind: str  # one of KINDS
    path: Path
    runs: list[Path] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # sweep.json / seeds.json / results.json


def has_metrics(run: Path) -> bool:
    """A run directory whose metrics.csv holds at least one evaluation point."""
    try:
        with open(run / "metrics.csv") as f:
            return sum(1 for line in f if line.strip()) >= 2
    except OSError:
        return False


def _runs_under(folder: Path) -> list[Path]:
    found = sorted({p.parent for p in folder.rglob("metrics.csv") if not any(
        part.startswith(".") for part in p.relative_to(folder).parts)})
    return [r for r in found if has_metrics(r)]


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read it ({e})") from None


def collect(target: str | Path) -> Source:
    p = Path(target)
    if not p.exists():
        raise DataError(f"{p}: no such run directory or folder")
    if p.is_file():
        raise DataError(f"{p}: give a run directory or a folder of runs, not a file")
    if (p / "metrics.csv").is_file() or (p / "config.json").is_file():
        if not has_metrics(p):
            raise DataError(f"{p}: a run without metrics (metrics.csv is missing or empty)")
        return Source("run", p, [p])
    for kind, marker in MARKERS.items():
        if (p / marker).is_file():
            return Source(kind, p, _runs_under(p), _read(p / marker))
    runs = _runs_under(p)
    if not runs:
        raise DataError(f"{p}: no runs in this folder (no run directory with a metrics.csv)")
    return Source("runs", p, runs)
