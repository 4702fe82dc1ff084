"""Example sweep spaces ship as package data and are reachable by name from any folder; the grid one runs."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cnntool.cli.main import app


def test_example_spaces_by_name_and_grid_runs(tmp_path, monkeypatch):
    from cnntool.experiments.space import example_spaces, load_space

    assert {"small", "grid", "cnn5"} <= set(example_spaces())
    monkeypatch.chdir(tmp_path)  # not the repository root
    assert load_space("small").params
    r = CliRunner().invoke(app, ["sweep", "grid", "--trials", "1", "--sampler", "grid", "--runs-root",
                                 str(tmp_path / "runs"), "--no-plots", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["trials"]) == 1 and out["trials"][0]["state"] == "COMPLETE"
    bad = CliRunner().invoke(app, ["sweep", "nosuch", "--trials", "1"])
    assert bad.exit_code == 2 and "small" in bad.output
