"""``--config FILE`` for train and finetune: YAML or JSON, keys = option names, command-line flags win.

A file is a flat mapping ``{option: value}`` (``lr: 1.0e-3``, ``batch-size: 32``), or a run's ``config.json``,
whose ``"options"`` hold every resolved option: ``cnntool train --config runs/train/config.json`` reproduces
that run. Keys may use ``-`` or ``_``. A key the command does not know is a one-line error naming the key and
the file; values are checked against the option's type here and against its range when the run starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Iterator

from cnntool.errors import ConfigError, first_line

# What a config file may set: the training options of the command (cnntool.config.COMMAND_GROUPS); where
# the run goes and how it is shown (--out, --name, --json, ...) stay on the command line.


def option_types(command: str) -> dict[str, tuple[Any, Any]]:
    """``{option: (annotation, default)}`` of the options a config file may set for ``command``."""
    from cnntool.config import COMMAND_GROUPS

    if command not in COMMAND_GROUPS:
        raise ConfigError(f"--config is not supported by {command}")
    return {f.name: (str(f.type), f.default) for cls in COMMAND_GROUPS[command] for f in dataclasses.fields(cls)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw ``{key: value}`` mapping of a YAML/JSON config file (a run's config.json: its "options")."""
    p = Path(path)
    if p.is_dir() and (p / "config.json").is_file():
        p = p / "config.json"  # a run directory stands for its config.json
    if not p.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--config {p}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"--config {p}: cannot read it ({e.strerror or e})") from None
    if "\x00" in text:
        raise ConfigError(f"--config {p}: not UTF-8 text (holds NUL bytes)")
    try:
        if p.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - yaml.YAMLError and json.JSONDecodeError
        first = first_line(e)
        raise ConfigError(f"--config {p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'} "
                          f"({first})") from None
    if doc is None:
        return {}
    if isinstance(doc, dict) and isinstance(doc.get("options"), dict) and "command" in doc:
        doc = doc["options"]  # a run's config.json
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {p}: expected a mapping of option names to values")
    return doc


def _coerce(name: str, value: Any, annotation: str, source: str) -> Any:
    flag = "--" + name.replace("_", "-")
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(f"{source}: {name}: {flag} cannot be empty")
    base = annotation.split("|")[0].strip()
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower() if isinstance(value, (str, int)) else None
            if text in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return text in ("true", "yes", "on", "1")
            raise ValueError
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)  # YAML reads 1e-4 as a string
        if base == "str":
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name}: {value!r} is not a valid {base} for {flag}") from None
    return value


def load_config_file(path: str | Path, command: str) -> dict[str, Any]:
    """The options of a config file for ``command``, keys normalised to ``_``, values type-checked."""
    types = option_types(command)
    out: dict[str, Any] = {}
    for key, value in read_config_file(path).items():
        name = str(key).replace("-", "_")
        if name not in types:
            raise ConfigError(f"--config {path}: unknown key {key!r} for cnntool {command} (a file holds "
                              f"training options; where the run goes and how it is shown stay on the command line)")
        out[name] = _coerce(name, value, types[name][0], f"--config {path}")
    return out


def merge_config(options: dict[str, Any], path: str | Path | None, command: str,
                 given: set[str] | None = None, taken: set[str] | None = None) -> dict[str, Any]:
    """``options`` (the command's values) with those not given on the command line taken from the file.

    ``given``: the names set on the command line (None: every value in ``options`` counts as a default, so the
    file wins). ``taken``, when given, receives the
    names whose value came from the file (for ``blame_config_file``).
    """
    if path is None:
        return dict(options)
    from_file = load_config_file(path, command)
    given = given or set()
    merged = dict(options)
    for name, value in from_file.items():
        if name not in given:
            merged[name] = value
            if taken is not None:
                taken.add(name)
    return merged


@contextlib.contextmanager
def blame_config_file(path: str | Path | None, taken: set[str]) -> Iterator[None]:
    """A ConfigError about an option whose value came from the config file gets the file as prefix."""
    try:
        yield
    except ConfigError as e:
        msg = str(e)
        if path is not None and not msg.startswith("--config "):
            for name in taken:
                flag = "--" + name.replace("_", "-")
                if re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", msg):
                    raise ConfigError(f"--config {path}: {msg}") from None
        raise


@contextlib.contextmanager
def resolve_options(options: dict[str, Any], path: str | Path | None, command: str,
                    given: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """The command's options merged with ``--config`` (command-line flags win); inside the block, a ConfigError
    about a value that came from the file names the file. Values from a file are validated at once."""
    from cnntool.config import COMMAND_GROUPS

    taken: set[str] = set()
    merged = merge_config(options, path, command, given, taken)
    with blame_config_file(path, taken):
        if taken:
            for cls in COMMAND_GROUPS[command]:
                names = {f.name for f in dataclasses.fields(cls)}
                cls(**{k: v for k, v in merged.items() if k in names}).validate()
        yield merged
