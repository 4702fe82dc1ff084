"""The trackers `--log` can name, the package each needs, and the check made before a run starts.

Imports nothing beyond the standard library: `cnntool.config` validates ``--log`` with it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from cnntool.errors import ConfigError


@dataclass(frozen=True)
class TrackerInfo:
    name: str
    module: str  # the cnntool module holding the tracker class ``Tracker``
    package: str  # the import name of the library it writes through


TRACKERS = {t.name: t for t in (
    TrackerInfo("tensorboard", "cnntool.tracking.tensorboard", "tensorboard"),
    TrackerInfo("wandb", "cnntool.tracking.wandb", "wandb"),
    TrackerInfo("mlflow", "cnntool.tracking.mlflow", "mlflow"),
)}


def pip_hint(name: str) -> str:
    return f"pip install 'cnntool[{name}]'"


def parse_log(text: str | None) -> list[str]:
    """``"tensorboard,mlflow"`` -> ``["tensorboard", "mlflow"]``; None or "" -> []; unknown names are an error."""
    if not text:
        return []
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"--log {text!r}: unknown tracker {unknown[0]!r} (choose from {', '.join(TRACKERS)})")
    return list(dict.fromkeys(names))


def check_log(text: str | None) -> list[str]:
    """parse_log, and each named tracker's library installed (one line naming the pip command if not)."""
    names = parse_log(text)
    for name in names:
        if importlib.util.find_spec(TRACKERS[name].package) is None:
            raise ConfigError(f"--log {name}: the {TRACKERS[name].package} package is not installed "
                              f"({pip_hint(name)})")
    return names
