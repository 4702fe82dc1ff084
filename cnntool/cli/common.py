"""Shared CLI plumbing: consoles, JSON output, the one place errors become exit codes.

Imports nothing heavy, rich included (imported when something is printed): `cnntool --help` and a quiet
`cnntool predict --json` must start fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import math

import typer
import typer.core

if TYPE_CHECKING:
    from rich.console import Console

try:  # Typer >= 0.20 vendors click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer on real click
    from click.exceptions import UsageError

DEBUG_ENV = "CNNTOOL_DEBUG"


def stderr_console(soft_wrap: bool = False) -> Console:
    """Human output goes to stderr; no live redraw off a TTY (rich), no styling at all under NO_COLOR."""
    from rich.console import Console

    plain = os.environ.get("NO_COLOR", "") != ""
    return Console(stderr=True, highlight=False, soft_wrap=soft_wrap, color_system=None if plain else "auto")


def print_json(obj: Any, flush: bool = True) -> None:
    """One JSON document on stdout, for shell pipelines: strict JSON (NaN and infinity become null).

    ``flush=False`` leaves flushing to the caller (predict flushes once per batch, not per line)."""
    try:  # the common case has no NaN/inf: one pass, no copy
        text = _ENCODER.encode(obj)
    except ValueError:
        text = _ENCODER.encode(_finite_json(obj))
    sys.stdout.write(text + "\n")
    if flush:
        sys.stdout.flush()


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "__fspath__"):
        return os.fspath(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# one encoder for every line (json.dumps with options builds a new one per call: predict prints thousands)
_ENCODER = json.JSONEncoder(allow_nan=False, default=_json_default)


def _finite_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _finite_json(obj.tolist())
    return obj


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_line(exc: BaseException) -> str:
    from cnntool.errors import CnnToolError, first_line

    if isinstance(exc, CnnToolError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return f"internal error ({type(exc).__name__}: {first_line(exc)}); run with --debug for the traceback"


class _WarningLine(logging.Handler):
    """The library's warnings (``logging.getLogger("cnntool")``) as one ``warning:`` line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        text = record.getMessage().removeprefix("warning: ")
        stderr_console(soft_wrap=True).print(f"[yellow]warning:[/yellow] {escape(text)}")


def route_library_warnings() -> None:
    logger = logging.getLogger("cnntool")
    if not any(isinstance(h, _WarningLine) for h in logger.handlers):
        logger.addHandler(_WarningLine(logging.WARNING))  # the root logger has no handler: printed once


def print_error(message: str) -> None:
    """One ``error:`` line; control characters of file names in it are shown escaped, never sent raw."""
    from rich.markup import escape

    from cnntool.data.preprocess import clean_text

    stderr_console(soft_wrap=True).print(f"[bold red]error:[/bold red] {escape(clean_text(message))}")


class ErrorHandlingGroup(typer.core.TyperGroup):
    """The one place exceptions become exit codes: one red line on stderr, exit 2 for bad usage (unknown
    or malformed options, out-of-range values), 1 for everything else; a traceback only with --debug."""

    def invoke(self, ctx: Any) -> Any:
        from cnntool.errors import ConfigError, ExitStatus

        try:
            return super().invoke(ctx)
        except UsageError as exc:
            if debug_enabled():
                raise
            where = exc.ctx.command_path if exc.ctx is not None else "cnntool"
            print_error(f"{exc.format_message()} (see '{where} --help')")
            raise typer.Exit(ExitStatus.BAD_OPTION) from None
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
            raise
        except KeyboardInterrupt:
            stderr_console().print("[red]interrupted[/red]")
            raise typer.Exit(ExitStatus.INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - this is the one place exceptions become exit codes
            if debug_enabled():
                raise
            print_error(error_line(exc))
            raise typer.Exit(ExitStatus.BAD_OPTION if isinstance(exc, ConfigError) else ExitStatus.FAILURE) from None


def given_on_command_line() -> set[str] | None:
    """Names of the parameters of the running Typer/click command that came from the command line
    (None outside a command-line invocation, e.g. when the command function is called from Python)."""
    try:  # Typer >= 0.20 vendors click
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - typer releases that use click itself
        from click.core import ParameterSource
        from click.globals import get_current_context
    ctx = get_current_context(silent=True)
    if ctx is None:
        return None
    return {name for name in ctx.params
            if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}
