"""cnntool recipe: the cheapest recipes end to end (flops, conv, seeds), tables consistent with their runs,
the closed-form parameter/MAC counts of cnn5, output folders that are never overwritten."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.training.rundir import read_metrics

runner = CliRunner()
NAMES = {"ablation", "cifar-progression", "architectures", "sweep", "seeds", "finetune", "resnet18",
         "augment-dropout", "flops", "conv"}


def _run(*args) -> dict:
    result = runner.invoke(app, ["recipe", "run", *args, "--quiet", "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _md_table(md: str, title: str) -> list[dict[str, str]]:
    """The rows of the markdown table under '## title' as {column: cell text}."""
    lines = md.splitlines()
    start = lines.index(f"## {title}") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def test_list_names_every_recipe():
    result = runner.invoke(app, ["recipe", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert {r["name"] for r in json.loads(result.stdout)} == NAMES


def test_unknown_recipe_is_one_line():
    result = runner.invoke(app, ["recipe", "run", "nope"])
    assert result.exit_code == 2 and "unknown recipe 'nope'" in result.output


@pytest.mark.parametrize("m,k,n,c,h,w,o", [(8, 3, 20, 3, 64, 64, 10), (16, 5, 64, 1, 32, 32, 10),
                                           (4, 7, 33, 3, 96, 64, 7), (32, 3, 128, 3, 32, 32, 100),
                                           (12, 5, 50, 2, 128, 160, 3)])
def test_flops_counted_equals_closed_form(m, k, n, c, h, w, o):
    from cnntool.recipes.flops import closed_form, compare

    row = compare([(m, k, n)], c, h, w, o)[0]
    assert row["equal"], row
    hw = (h // 32) * (w // 32)
    assert row["params_counted"] == m * (c * k * k + 1) + 4 * m * (m * k * k + 1) + n * m * hw + n + n * o + o
    assert row["macs_counted"] == closed_form(m, k, n, c, h, w, o)["macs"]


def test_flops_recipe_writes_table_and_plot(tmp_path):
    out = _run("flops", "--quick", "--out", str(tmp_path / "flops"))
    rows = out["tables"][0]["rows"]
    assert len(rows) >= 4 and all(r["equal"] for r in rows) and out["passed"]
    assert len({(r["m"], r["k"], r["n"]) for r in rows}) == len(rows)
    md = (tmp_path / "flops" / "results.md").read_text()
    table = _md_table(md, out["tables"][0]["title"])
    assert [t["params_counted"] for t in table] == [f"{r['params_counted']:,}" for r in rows]
    assert all(t["equal"] == "yes" for t in table)
    assert (tmp_path / "flops" / "flops.png").stat().st_size > 0
    assert json.loads((tmp_path / "flops" / "results.json").read_text())["tables"] == out["tables"]


def test_output_folder_is_never_overwritten(tmp_path):
    first = _run("flops", "--quick", "--runs-root", str(tmp_path))
    second = _run("flops", "--quick", "--runs-root", str(tmp_path))
    assert Path(first["out"]) == tmp_path / "recipes" / "flops"
    assert Path(second["out"]) == tmp_path / "recipes" / "flops2"
    result = runner.invoke(app, ["recipe", "run", "flops", "--quick", "--out", first["out"]])
    assert result.exit_code == 1 and "not empty" in result.output


def test_conv_recipe_quick(tmp_path):
    out = _run("conv", "--quick", "--out", str(tmp_path / "conv"))
    rows = out["tables"][0]["rows"]
    assert out["passed"] and rows and all(r["passed"] for r in rows)
    assert len({r["part"] for r in rows}) > 1  # forward and the backward parts
    md_rows = _md_table((tmp_path / "conv" / "results.md").read_text(), "conv-test")
    assert len(md_rows) == len(rows)


def test_seeds_recipe_table_matches_its_runs(tmp_path):
    folder = tmp_path / "seeds"
    out = _run("seeds", "--quick", "--out", str(folder))
    table = out["tables"][0]
    per_seed = [r for r in table["rows"] if r["seed"].isdigit()]
    assert len(per_seed) >= 3
    md = _md_table((folder / "results.md").read_text(), table["title"])
    for row, md_row in zip(per_seed, md):
        run_dir = folder / row["run_dir"]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert row["test_acc"] == summary["test_acc"] and row["test_loss"] == summary["test_loss"]
        assert md_row["seed"] == row["seed"] and md_row["test_acc"] == f"{summary['test_acc']:.4f}"
        metrics = read_metrics(run_dir)
        best = next(m for m in metrics if m["epoch"] == summary["best_epoch"])
        assert row["val_acc"] == pytest.approx(best["val_acc"])
    mean = next(r for r in table["rows"] if r["seed"] == "mean")
    std = next(r for r in table["rows"] if r["seed"] == "std")
    accs = [r["test_acc"] for r in per_seed]
    assert mean["test_acc"] == pytest.approx(statistics.fmean(accs))
    assert std["test_acc"] == pytest.approx(statistics.stdev(accs))
    assert f"{statistics.fmean(accs):.4f}" in out["headline"]
    assert out["title"] == f"Seed variance: one model under {len(per_seed)} seeds"  # --quick runs 5, says 5
    assert (folder / "results.md").read_text().startswith(f"# Seed variance: one model under {len(per_seed)} seeds")
    assert all(Path(p).is_file() for p in out["plots"]) and out["plots"]


def test_failing_recipe_leaves_nothing(tmp_path, monkeypatch):
    """A recipe that fails half-way (offline download, a bad option) removes the folder it made."""
    from cnntool import recipes
    from cnntool.errors import DataError

    recipes._load_all()
    info = recipes.RECIPES["flops"]

    def boom(ctx):
        (ctx.out / "ablation-part.txt").write_text("half")
        raise DataError("cifar10 not found; pass --download")

    monkeypatch.setitem(recipes.RECIPES, "flops", info.__class__(**{**info.__dict__, "fn": boom}))
    result = runner.invoke(app, ["recipe", "run", "flops", "--runs-root", str(tmp_path)])
    assert result.exit_code == 1 and "--download" in result.output
    assert not (tmp_path / "recipes" / "flops").exists()


def test_finetune_convergence_from_the_loss_curve_and_lenet_in_architectures():
    from cnntool.recipes.architectures import NETS
    from cnntool.recipes.finetune import converged

    falling = [{"epoch": e, "train_loss": 2.0 / e} for e in range(1, 6)]
    flat = falling + [{"epoch": 6, "train_loss": 0.399}]
    assert converged(falling) is False and converged(flat) is True and converged(falling[:1]) is None
    assert "lenet" in NETS and "nin" in NETS


def test_conv_plot_takes_exactly_the_benchmark_cases():
    from cnntool.recipes.conv import bench_rows

    rows = [{"case": name, "ratio": 1.0, "part": "forward"} for name in ("a", "b", "blur 3x3", "bias only",
                                                                          "dilation 2", "c", "d", "e")]
    rows.append({"case": "e", "ratio": None, "part": "grad_input"})
    assert [r["case"] for r in bench_rows(rows)] == ["a", "b", "c", "d", "e"]
