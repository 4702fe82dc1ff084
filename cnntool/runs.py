"""A trained run, rebuilt from its run directory or checkpoint alone, with its data.

eval, viz, export and report all start here: class indices, input size and normalisation always come from
the checkpoint's ModelSpec, never from the data folders at eval time.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from cnntool.config import DataConfig
from cnntool.errors import CheckpointError, ConfigError
from cnntool.spec import ModelSpec

SPLIT_NAMES = ("train", "val", "test")
PLOTS_DIR = "plots"  # RUN/plots for figures of one run; ./plots for figures of data sets or several runs
# Options of config.json "options" that describe the data (everything else is irrelevant to eval).
_DATA_KEYS = ("data", "data_dir", "val_fraction", "test_fraction", "split_seed", "workers")


@dataclass
class LoadedRun:
    """A model rebuilt from a run directory or checkpoint, with where it came from."""

    model: nn.Module
    spec: ModelSpec
    ckpt: dict[str, Any]
    checkpoint: Path
    run_dir: Path | None  # the folder holding config.json/spec.json, when there is one
    options: dict[str, Any] = field(default_factory=dict)  # the flat training options

    @property
    def home(self) -> Path:
        """Where derived files go by default: the run directory, else the checkpoint's folder."""
        return self.run_dir if self.run_dir is not None else self.checkpoint.parent

    def plots_dir(self, out_dir: str | Path | None = None) -> Path:
        """Where a figure of this run goes: ``out_dir`` when given, else ``RUN/plots``."""
        return Path(out_dir) if out_dir is not None else self.home / PLOTS_DIR


def load_run(target: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    from cnntool.training.checkpoint import load_model, resolve_checkpoint

    path = resolve_checkpoint(target, which)
    model, spec, ckpt = load_model(path, which, device)
    run_dir = path.parent if (path.parent / "config.json").is_file() else None
    options = dict(ckpt.get("options") or {})
    if run_dir is not None:
        try:
            options = {**options, **json.loads((run_dir / "config.json").read_text()).get("options", {})}
        except (OSError, json.JSONDecodeError):
            pass
    return LoadedRun(model, spec, ckpt, path, run_dir, options)


def data_config_for(options: dict[str, Any], data: str | None = None, data_dir: str | None = None) -> DataConfig:
    """The DataConfig that reproduces a run's splits (same data, fractions and split seed); ``data`` and
    ``data_dir`` override the run's own."""
    values = {k: options[k] for k in _DATA_KEYS if options.get(k) is not None}
    if data is not None:
        values["data"] = data
    if data_dir is not None:
        values["data_dir"] = data_dir
    if "data" not in values:
        raise ConfigError("the checkpoint does not record its data set; pass --data")
    return DataConfig(**values)


def load_run_data(run: LoadedRun, data: str | None = None, data_dir: str | None = None,
                  progress: Callable[[str, int, int], None] | None = None, whole: bool = False):
    """The run's data set rebuilt with the model's spec (input size, mean/std, class order); ``whole``: one
    unsplit ``"all"`` split of every image (a folder may then hold any subset of the model's classes)."""
    from cnntool.data.bundle import load_data

    spec = run.spec
    cfg = data_config_for(run.options, data, data_dir)
    return load_data(cfg, input_size=spec.input_size, mean=spec.mean, std=spec.std,
                     class_names=spec.class_names, crop_pct=spec.crop_pct, interpolation=spec.interpolation,
                     progress=progress, whole=whole, in_channels=spec.in_channels)


ALL_SPLIT = "all"  # every image, unsplit (cnntool.data.bundle.ALL_SPLIT)
EVAL_SPLIT_NAMES = (*SPLIT_NAMES, ALL_SPLIT)


def check_split(split: str, allow_all: bool = False) -> str:
    names = EVAL_SPLIT_NAMES if allow_all else SPLIT_NAMES
    if split not in names:
        raise ConfigError(f"--split {split!r} must be one of {', '.join(names)}")
    return split


def is_folder_data(data: str | None) -> bool:
    """``--data`` names a folder on disk (not a registered data set)."""
    from pathlib import Path as _P

    from cnntool.data.sources import DATASETS

    return data is not None and data not in DATASETS and _P(data).is_dir()


def default_eval_split(data: str | None) -> str:
    """``all`` for ``--data FOLDER`` (a folder given to eval is evaluated whole), else ``test``."""
    return ALL_SPLIT if is_folder_data(data) else "test"


def run_logits(run: LoadedRun, part, device: str | torch.device = "cpu",
               batch_size: int = 256, tta: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of the run's model on one split, preprocessed with the spec's mean/std
    (``tta``: one of cnntool.config.TTA_MODES, the mean softmax over flipped/cropped views)."""
    from cnntool.config import TTA_MODES
    from cnntool.errors import ConfigError

    if tta not in TTA_MODES:
        raise ConfigError(f"--tta {tta!r} must be one of {', '.join(TTA_MODES)}")
    from cnntool.data.pipeline import BatchPipeline
    from cnntool.training.evaluate import predict_logits

    pipeline = BatchPipeline(run.spec.mean, run.spec.std, device=device)
    logits, labels = predict_logits(run.model, part, pipeline, batch_size, tta=tta)
    if logits.numel() == 0:
        logits = torch.zeros(0, run.spec.num_classes)
    return logits, labels


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "metrics.csv").is_file()


def expand_runs(patterns: list[str]) -> tuple[list[Path], list[str]]:
    """Run directories from paths and glob patterns, in the order given, and the paths skipped.

    A folder that holds runs (a seeds, recipe or sweep folder) stands for the runs inside it (two levels down
    at most); files a shell glob brings in beside the runs (``seeds.json``, ``seeds.png``) are skipped and
    returned, so the caller can say so in one line. A path that does not exist is an error.
    """
    out: list[Path] = []
    skipped: list[str] = []
    for pat in patterns:
        matches = sorted(glob.glob(pat)) if glob.has_magic(pat) else [pat]
        if not matches:
            raise CheckpointError(f"{pat!r} matches no run directory")
        for m in matches:
            p = Path(m)
            if not p.exists():
                raise CheckpointError(f"{p}: no such run directory")
            found = [p] if is_run_dir(p) else _runs_inside(p)
            if not found:
                if p.is_dir() and not glob.has_magic(pat):
                    raise CheckpointError(f"{p}: not a run directory (no metrics.csv) and holds no runs")
                skipped.append(str(p))
            out += [r for r in found if r not in out]
    if not out:
        raise ConfigError(f"no run directory among {' '.join(patterns)}")
    return out, skipped


def _runs_inside(folder: Path, depth: int = 2) -> list[Path]:
    if depth == 0 or not folder.is_dir():
        return []
    runs: list[Path] = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        runs += [child] if is_run_dir(child) else _runs_inside(child, depth - 1)
    return runs
