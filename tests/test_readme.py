"""The README and the CLI cannot drift: every `cnntool …` example names a real command and real options (parsed
from the Typer app, nothing executed), and every command and option of the app appears in the README."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from cnntool.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"
ROOT = typer.main.get_command(app)


def _commands(group, path: tuple[str, ...] = ()) -> dict:
    out = {path: group}
    if hasattr(group, "commands"):  # a group (Typer vendors click: no isinstance against click's classes)
        for name, cmd in group.commands.items():
            out.update(_commands(cmd, path + (name,)))
    return out


COMMANDS = _commands(ROOT)


def _flags(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")} | {"--help", "-h"}


def example_lines() -> list[str]:
    """Every `cnntool …` invocation inside the README's code blocks (pipelines and `&&` chains split)."""
    blocks, current, inside = [], [], False
    for raw in README.read_text().splitlines():
        if raw.lstrip().startswith("```"):
            if inside:
                blocks.append("\n".join(current))
            current, inside = [], not inside
        elif inside:
            current.append(raw)
    lines = []
    for block in blocks:
        text = re.sub(r"\\\n", " ", block)
        for line in text.splitlines():
            line = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
            for part in re.split(r"\|\||&&|\||;", line):
                part = part.strip().removeprefix("$ ")
                if part.startswith("cnntool ") or part == "cnntool":
                    lines.append(part)
    return lines


def check_line(line: str) -> list[str]:
    """Problems with one example: an unknown command or an option the command does not have."""
    tokens = shlex.split(line)[1:]
    path: tuple[str, ...] = ()
    problems = []
    while tokens and tokens[0] in ("--debug",):
        tokens.pop(0)
    while tokens and hasattr(COMMANDS[path], "commands") and not tokens[0].startswith("-"):
        if path + (tokens[0],) not in COMMANDS:
            return [f"{line!r}: unknown command {' '.join(path + (tokens[0],))!r}"]
        path += (tokens.pop(0),)
    flags = _flags(COMMANDS[path]) | (_flags(ROOT) if not path else set())
    for tok in tokens:
        if tok.startswith("-") and tok != "-" and not re.fullmatch(r"-\d.*", tok):
            flag = tok.split("=")[0]
            if flag not in flags:
                problems.append(f"{line!r}: cnntool {' '.join(path)} has no option {flag}")
    return problems


def test_examples_are_found():
    lines = example_lines()
    assert len(lines) > 30 and any(line.startswith("cnntool train") for line in lines)


def test_checker_catches_a_bad_example():
    assert check_line("cnntool train --no-such-flag") and check_line("cnntool nosuchcommand")
    assert not check_line("cnntool train --bn --dropout 0.5")


def test_every_readme_example_names_real_commands_and_options():
    problems = [p for line in example_lines() for p in check_line(line)]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("path", [p for p in COMMANDS if p], ids=" ".join)
def test_every_command_and_option_is_in_the_readme(path):
    text = README.read_text()
    assert re.search(rf"cnntool {re.escape(' '.join(path))}\b", text), f"cnntool {' '.join(path)} is not in README"
    missing = sorted(f for f in _flags(COMMANDS[path]) - {"--help", "-h"}
                     if f.startswith("--") and not re.search(rf"{re.escape(f)}(?![\w-])", text))
    assert missing == [], f"cnntool {' '.join(path)}: options missing from README: {', '.join(missing)}"
