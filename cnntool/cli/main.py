"""The Typer app. Each command lives in its own small module, imported only when that command runs (or when a
help or completion listing needs them all): `cnntool predict` pays for its own module, not for fourteen."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
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

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: building every command is for help listings that show them


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
