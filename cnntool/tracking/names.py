"""The trackers `--log` can name, the package each needs, and the check made before a run starts.

The names themselves are ``cnntool.config.TRACKERS`` (with the option they belong to); this table says where
each one's code and library live. Imports nothing beyond the standard library.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from cnntool.config import TRACKERS as NAMES
from cnntool.config import parse_log
from cnntool.errors import ConfigError


@dataclass(frozen=True)
class TrackerInfo:
    name: str
    module: str  # the cnntool module holding the tracker class ``Tracker``
    package: str  # the import name of the library it writes through


# Each tracker NAME lives in cnntool/tracking/NAME.py and writes through the library of the same import name.
TRACKERS = {name: TrackerInfo(name, f"cnntool.tracking.{name}", name) for name in NAMES}


def pip_hint(name: str) -> str:
    return f"pip install 'cnntool[{name}]'"


def check_log(text: str | None) -> list[str]:
    """parse_log, and each named tracker's library installed (one line naming the pip command if not)."""
    names = parse_log(text)
    for name in names:
        if importlib.util.find_spec(TRACKERS[name].package) is None:
            raise ConfigError(f"--log {name}: the {TRACKERS[name].package} package is not installed "
                              f"({pip_hint(name)})")
    return names
