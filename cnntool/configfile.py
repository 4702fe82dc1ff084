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

from cnntool.errors import ConfigError

# Options a config file may not set: where the run goes and how it is shown stay on the command line.
NOT_IN_FILES = ("runs_root", "name", "out", "resume", "json", "quiet", "config", "list_models", "seeds", "jobs",
                "compare")


def option_types(command: str) -> dict[str, tuple[Any, Any]]:
    """``{option: (annotation, default)}`` of the options a config file may set for ``command``."""
    from cnntool.config import OPTION_GROUPS

    fields = [f for cls in OPTION_GROUPS.values() for f in dataclasses.fields(cls)]
    if command == "finetune":
        from cnntool.finetune.core import FinetuneOptions

        fields += list(dataclasses.fields(FinetuneOptions))
    elif command != "train":
        raise ConfigError(f"--config is not supported by {command}")
    return {f.name: (str(f.type), f.default) for f in fields}


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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
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
            hint = " (set it on the command line)" if name in NOT_IN_FILES else ""
            raise ConfigError(f"--config {path}: unknown key {key!r} for cnntool {command}{hint}")
        out[name] = _coerce(name, value, types[name][0], f"--config {path}")
    return out


def given_on_command_line() -> set[str] | None:
    """Names of the parameters of the running Typer/click command that came from the command line
    (None outside a command-line invocation, e.g. when the command function is called from Python)."""
    try:
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:  # typer releases that use click itself
        from click.core import ParameterSource
        from click.globals import get_current_context
    ctx = get_current_context(silent=True)
    if ctx is None:
        return None
    return {name for name in ctx.params
            if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}


def merge_config(options: dict[str, Any], path: str | Path | None, command: str,
                 given: set[str] | None = None, taken: set[str] | None = None) -> dict[str, Any]:
    """``options`` (the command's values) with those not given on the command line taken from the file.

    ``given``: the names set on the command line (default: asked from the running click context; outside one
    every value in ``options`` counts as a default, so the file wins). ``taken``, when given, receives the
    names whose value came from the file (for ``blame_config_file``).
    """
    if path is None:
        return dict(options)
    from_file = load_config_file(path, command)
    given = given_on_command_line() if given is None else given
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
