"""Sweep spaces: which command, which fixed options, which dimensions to search.

```yaml
command: train            # or finetune
monitor: val_acc          # val_acc (maximised) or val_loss (minimised); also sets --monitor of each trial
base:                     # fixed options of every trial: any train/finetune option, names as on the CLI
  data: digits            # (with _ or -)
  epochs: 2
  threads: 1
params:                   # the dimensions
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
  dense: {type: int, low: 32, high: 256, log: true}
  bn: {type: categorical, choices: [true, false]}
  activation: [relu, gelu, silu]          # a plain list is a categorical dimension
pruner: {startup_trials: 3, warmup_epochs: 0}   # median pruning per epoch; "pruner: none" turns it off
```

The grid sampler needs a finite set per dimension: categorical choices, int ranges, or float ranges
with ``step`` (or an explicit ``grid: [...]`` list on any dimension).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnntool.config import COMMAND_GROUPS, MONITORS
from cnntool.errors import ConfigError, first_line

RUN_KEYS = {"runs_root", "name", "out", "resume"}
TYPES = ("categorical", "int", "float")


@dataclass(frozen=True)
class Dimension:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] | None = None

    def suggest(self, trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        if self.grid is not None:
            return list(self.grid)
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ConfigError(f"sweep space: float dimension {self.name!r} needs 'step' (or 'grid: [...]') "
                              f"for --sampler grid")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def axis(self) -> dict[str, Any]:
        """What a plot needs to draw this dimension's axis: its type, range and scale, or its choices."""
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        return {"type": self.type, "low": self.low, "high": self.high, "log": self.log}

    def describe(self) -> str:
        if self.type == "categorical":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        extra = (" log" if self.log else "") + (f" step {self.step:g}" if self.step else "")
        return f"{self.type} [{self.low:g}, {self.high:g}]{extra}"


@dataclass(frozen=True)
class SweepSpace:
    command: str = "train"
    monitor: str = "val_acc"
    base: dict[str, Any] = field(default_factory=dict)
    params: tuple[Dimension, ...] = ()
    pruner: dict[str, int] | None = field(default_factory=lambda: {"startup_trials": 3, "warmup_epochs": 0})
    source: str | None = None

    @property
    def maximize(self) -> bool:
        return self.monitor.endswith("acc")

    def trial_options(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Every option of a trial: base, then the sampled values, then the monitored metric."""
        return {**self.base, **sampled, "monitor": self.monitor}


def _field_types(command: str = "train") -> dict[str, tuple[str, Any]]:
    return {f.name: (str(f.type), f.default) for cls in COMMAND_GROUPS.get(command, COMMAND_GROUPS["train"])
            for f in dataclasses.fields(cls)}


def coerce(name: str, value: Any) -> Any:
    """YAML reads ``1e-4`` as a string (it wants ``1.0e-4``): turn numbers in strings into numbers
    for options that are numbers."""
    types = _field_types()
    if name not in types or not isinstance(value, str):
        return value
    t = types[name][0]
    try:
        if t.startswith("float"):
            return float(value)
        if t.startswith("int"):
            return int(value)
    except ValueError:
        raise ConfigError(f"sweep space: option {name!r} needs a number, got {value!r}") from None
    return value


def known_options(command: str) -> set[str] | None:
    """Option names a training command accepts (None: not a training command; the trial then fails)."""
    return set(_field_types(command)) if command in COMMAND_GROUPS else None


def parse_space(doc: Any, source: str | None = None) -> SweepSpace:
    where = f"sweep space {source}" if source else "sweep space"
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping with 'base' and 'params'")
    unknown = set(doc) - {"command", "monitor", "base", "params", "pruner"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                          f"(expected command, monitor, base, params, pruner)")
    command = str(doc.get("command", "train"))
    monitor = str(doc.get("monitor", "val_acc"))
    if monitor not in MONITORS:
        raise ConfigError(f"{where}: monitor {monitor!r} must be one of {', '.join(MONITORS)}")
    base_raw = doc.get("base") or {}
    params_raw = doc.get("params") or {}
    if not isinstance(base_raw, dict) or not isinstance(params_raw, dict):
        raise ConfigError(f"{where}: 'base' and 'params' must be mappings of option: value")
    if not params_raw:
        raise ConfigError(f"{where}: 'params' names no dimension to search")
    base = {str(k).replace("-", "_"): coerce(str(k).replace("-", "_"), v) for k, v in base_raw.items()}
    dims = tuple(_dimension(str(k).replace("-", "_"), v, where) for k, v in params_raw.items())
    known = known_options(command)
    for name in [*base, *(d.name for d in dims)]:
        if name in RUN_KEYS or name == "seeds":
            raise ConfigError(f"{where}: {name!r} is chosen by the sweep itself (trial run directories)")
        if name == "monitor" and (name in base and base[name] != monitor or any(d.name == name for d in dims)):
            raise ConfigError(f"{where}: set the monitored metric with the top-level 'monitor' key")
        if known is not None and name not in known:
            raise ConfigError(f"{where}: {name!r} is not a '{command}' option")
    overlap = set(base) & {d.name for d in dims}
    if overlap:
        raise ConfigError(f"{where}: {', '.join(sorted(overlap))} both fixed in 'base' and searched in 'params'")
    pruner = doc.get("pruner", {"startup_trials": 3, "warmup_epochs": 0})
    if pruner in (None, False, "none"):
        pruner = None
    elif isinstance(pruner, dict) and set(pruner) <= {"startup_trials", "warmup_epochs"}:
        pruner = {"startup_trials": int(pruner.get("startup_trials", 3)),
                  "warmup_epochs": int(pruner.get("warmup_epochs", 0))}
    else:
        raise ConfigError(f"{where}: pruner must be 'none' or {{startup_trials: N, warmup_epochs: N}}")
    return SweepSpace(command, monitor, base, dims, pruner, source)


def _dimension(name: str, spec: Any, where: str) -> Dimension:
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: dimension {name!r} must be a list of choices or a mapping with 'type'")
    t = spec.get("type")
    if t not in TYPES:
        raise ConfigError(f"{where}: dimension {name!r} type {t!r} must be one of {', '.join(TYPES)}")
    allowed = {"type", "grid"} | ({"choices"} if t == "categorical" else {"low", "high", "log", "step"})
    extra = set(spec) - allowed
    if extra:
        raise ConfigError(f"{where}: dimension {name!r} ({t}) does not take {', '.join(sorted(extra))}")
    grid = tuple(coerce(name, v) for v in spec["grid"]) if spec.get("grid") is not None else None
    if t == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: dimension {name!r} needs a non-empty 'choices' list")
        if not all(c is None or isinstance(c, (str, int, float, bool)) for c in choices):
            raise ConfigError(f"{where}: dimension {name!r}: choices must be strings, numbers, booleans or null")
        return Dimension(name, t, choices=tuple(coerce(name, c) for c in choices), grid=grid)
    try:
        low, high = float(spec["low"]), float(spec["high"])
        step = float(spec["step"]) if spec.get("step") is not None else None
    except KeyError as e:
        raise ConfigError(f"{where}: dimension {name!r} needs {e.args[0]!r}") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: dimension {name!r}: low, high and step must be numbers") from None
    log = bool(spec.get("log", False))
    if not low < high:
        raise ConfigError(f"{where}: dimension {name!r}: low {low:g} must be below high {high:g}")
    if log and low <= 0:
        raise ConfigError(f"{where}: dimension {name!r}: a log dimension needs low > 0")
    if log and step is not None:
        raise ConfigError(f"{where}: dimension {name!r}: 'log' and 'step' cannot be combined")
    if t == "int" and (low != int(low) or high != int(high) or (step is not None and step != int(step))):
        raise ConfigError(f"{where}: dimension {name!r} (int): low, high and step must be integers")
    return Dimension(name, t, low, high, log, step, grid=grid)


def example_spaces() -> dict[str, Path]:
    """The example spaces shipped with cnntool (package data ``cnntool/recipes/sweep_NAME.yaml``) by NAME."""
    folder = Path(__file__).resolve().parent.parent / "recipes"
    return {p.stem[len("sweep_"):]: p for p in sorted(folder.glob("sweep_*.yaml"))}


def load_space(path: str | Path) -> SweepSpace:
    """A space file, or the name of an example space shipped with cnntool (``small``, ``cnn5``, ``grid``)."""
    import yaml

    p = Path(path)
    if not p.is_file() and str(path) in example_spaces():
        p = example_spaces()[str(path)]
    if not p.is_file():
        names = ", ".join(example_spaces())
        raise ConfigError(f"sweep space {p}: no such file (or give an example space by name: {names})")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"sweep space {p}: not valid YAML ({first_line(e)})") from None
    return parse_space(doc, str(p))
