"""Shared CLI plumbing: consoles, JSON output, the one place errors become exit codes.

Imports nothing heavy: `cnntool --help` must stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
import typer.core
from rich.console import Console

DEBUG_ENV = "CNNTOOL_DEBUG"


def stderr_console() -> Console:
    """Human output goes to stderr; rich already honours NO_COLOR and disables redraw off a TTY."""
    return Console(stderr=True, highlight=False, soft_wrap=False)


def print_json(obj: Any) -> None:
    """One JSON document on stdout, for shell pipelines."""
    sys.stdout.write(json.dumps(obj, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "__fspath__"):
        return os.fspath(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_line(exc: BaseException) -> str:
    from cnntool.errors import CnnToolError

    if isinstance(exc, CnnToolError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"internal error ({type(exc).__name__}: {text}); run with --debug for the traceback"


class ErrorHandlingGroup(typer.core.TyperGroup):
    """Turn every exception into one red line on stderr and exit 1 (Typer keeps exit 2 for usage)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
            raise  # Typer's own: usage errors keep exit code 2
        except KeyboardInterrupt:
            stderr_console().print("[red]interrupted[/red]")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - this is the one place exceptions become exit codes
            if debug_enabled():
                raise
            from rich.markup import escape

            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"[bold red]error:[/bold red] {escape(error_line(exc))}")
            raise typer.Exit(1) from None


def not_implemented(command: str) -> None:
    stderr_console().print(f"[red]error:[/red] cnntool {command} is not implemented yet")
    raise typer.Exit(1)


def parse_int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint=option) from None
