"""The CLI shell: start-up cost, error handling, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from cnntool.cli.main import app

HEAVY = ("torch", "torchvision", "numba", "onnxruntime", "matplotlib")


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from cnntool.cli.main import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
        "print('MODULES:' + ' '.join(sorted(m for m in sys.modules if '.' not in m)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("MODULES:")][-1]
    return set(line[len("MODULES:"):].split())


COMMANDS = ["train", "conv-test", "finetune", "eval", "summary", "viz", "viz cam", "export", "predict", "sweep",
            "compare", "recipe", "recipe run"]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_imports_no_heavy_module(command):
    args = [*command.split(), "--help"]
    loaded = _modules_after(args)
    assert not (loaded & set(HEAVY)), f"{args} imported {loaded & set(HEAVY)}"


def test_every_command_has_help():
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in COMMANDS:
        assert cmd.split()[0] in result.output
        assert runner.invoke(app, [*cmd.split(), "--help"]).exit_code == 0, cmd


def test_commands_are_built_when_used_and_all_listed():
    from cnntool.cli.main import COMMANDS as TABLE

    root = typer.main.get_command(app)
    assert list(root.list_commands(None)) == list(TABLE)  # the help listing keeps the table's order
    result = CliRunner().invoke(app, ["--help"])
    found = [re.search(rf"^\W*{re.escape(name)}\s", result.output, re.M) for name in TABLE]
    assert None not in found, result.output
    assert [m.start() for m in found] == sorted(m.start() for m in found), result.output
    typo = CliRunner().invoke(app, ["predcit"])  # a mistyped command still gets its suggestion
    assert typo.exit_code == 2 and "predict" in typo.output


def test_help_listing_reads_each_line_from_source_and_builds_no_command():
    from cnntool.cli import main

    for name in main.COMMANDS:  # the line read from the source is the built command's first paragraph
        built = main.load_command(name)
        assert main.summary(name) == " ".join(built.help.split("\n\n")[0].split()), name
    code = ("import sys\nfrom cnntool.cli.main import app, COMMANDS\ntry:\n    app(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('LOADED:' + ' '.join(m for m in sys.modules if m.startswith('cnntool.cli.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.rsplit("LOADED:", 1)[1].split())
    assert not loaded & {f"cnntool.cli.{module}" for module, _ in main.COMMANDS.values()}, loaded
    assert "conv-test" in out and "Check the Numba conv2d" in out


def test_help_listing_falls_back_to_the_built_command(monkeypatch):
    from cnntool.cli import main

    monkeypatch.setattr(main, "summary", lambda name: None)  # e.g. a module shipped without its source
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "Train a CNN" in result.output


def test_help_is_rendered_without_pydantic():
    # typer 0.29 validates every parameter through pydantic (0.1 s more per call): pyproject keeps it out
    assert "pydantic" not in _modules_after(["--help"]) | _modules_after(["train", "--help"])


def test_usage_error_exits_2():
    result = CliRunner().invoke(app, ["train", "--epochs", "many"])
    assert result.exit_code == 2


def test_python_m_cnntool_runs():
    out = subprocess.run([sys.executable, "-m", "cnntool", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("cnntool ")


def test_json_output_is_strict(capsys):
    from cnntool.cli.common import print_json

    print_json({"loss": float("nan"), "acc": [1.0, float("inf")], "n": 3})
    assert json.loads(capsys.readouterr().out) == {"loss": None, "acc": [1.0, None], "n": 3}


def test_no_color_means_no_escape_codes(monkeypatch):
    from cnntool.cli.common import stderr_console

    monkeypatch.setenv("NO_COLOR", "1")
    console = stderr_console()
    with console.capture() as cap:
        console.print("[bold red]error:[/bold red] plain")
    assert "\x1b" not in cap.get() and "error: plain" in cap.get()
