"""The Typer app. Each command lives in its own small module, imported only when that command runs (or when a
completion listing needs them all): `cnntool predict` pays for its own module, not for fourteen, and `cnntool
--help` reads each command's one line of help from its module's source without importing it."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
import typer.core
import typer.main

from cnntool import __version__
from cnntool.cli.common import DEBUG_ENV, ErrorHandlingGroup, route_library_warnings

#: command name -> (module under cnntool.cli, attribute): a command function, or a Typer app for a group.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train"),
    "conv-test": ("conv_test", "conv_test"),
    "finetune": ("finetune", "finetune"),
    "lr-find": ("lr_find", "lr_find"),
    "eval": ("eval_cmd", "eval_command"),
    "export": ("export_cmd", "export"),
    "predict": ("predict", "predict"),
    "summary": ("summary", "summary"),
    "sweep": ("sweep", "sweep"),
    "compare": ("compare", "compare"),
    "benchmark": ("benchmark", "benchmark"),
    "report": ("report", "report"),
    "viz": ("viz", "app"),
    "recipe": ("recipe", "app"),
}
RICH_MARKUP = "rich"


def load_command(name: str) -> Any:
    """The click command (or group) of one entry of COMMANDS, built by Typer exactly as if registered on the app."""
    module, attr = COMMANDS[name]
    target = getattr(importlib.import_module(f"cnntool.cli.{module}"), attr)
    holder = typer.Typer(rich_markup_mode=RICH_MARKUP)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


def _help_text(node: ast.AST, attr: str) -> str | None:
    """The help of ``attr`` if ``node`` defines it: a command function's docstring, or the ``help=`` string of a
    ``typer.Typer(...)`` assigned to it (a group)."""
    if isinstance(node, ast.FunctionDef) and node.name == attr:
        return ast.get_docstring(node)
    if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            and any(isinstance(t, ast.Name) and t.id == attr for t in node.targets)):
        for kw in node.value.keywords:
            if kw.arg == "help" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                return kw.value.value
    return None


def summary(name: str) -> str | None:
    """The first paragraph of one command's help, as one line, read from its module's source (no import, no
    Typer introspection: building all fourteen commands for the listing took 0.17 s of `cnntool --help`'s 0.5);
    None where it cannot be read that way, so the caller builds the command instead."""
    module, attr = COMMANDS[name]
    try:
        spec = importlib.util.find_spec(f"cnntool.cli.{module}")
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, TypeError, ValueError, AttributeError):
        return None
    for node in tree.body:
        text = _help_text(node, attr)
        if text:
            return " ".join(text.split("\n\n")[0].split())
    return None


class _LazyCommands(MutableMapping):
    """The group's name -> command mapping; a command is built on first lookup."""

    def __init__(self, given: MutableMapping) -> None:
        self._built = dict(given)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = load_command(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(COMMANDS), **self._built})

    def __len__(self) -> int:
        return len({**dict.fromkeys(COMMANDS), **self._built})


class LazyGroup(ErrorHandlingGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _LazyCommands(self.commands)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: building every command is for listings that show more

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """While the group's own help is drawn, a command not built yet is listed by its one line of help alone."""
        if self._listing and cmd_name in COMMANDS and cmd_name not in self.commands._built:
            text = summary(cmd_name)
            if text:
                return typer.core.TyperCommand(cmd_name, help=text, short_help=text)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="cnntool",
    cls=LazyGroup,
    help="Train, fine-tune, evaluate, visualise, export and run image-classification CNNs.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=RICH_MARKUP,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cnntool {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """cnntool: image-classification CNNs from the shell."""
    route_library_warnings()
    if debug:
        os.environ[DEBUG_ENV] = "1"


def run() -> None:
    app()
