"""cnntool report: the HTML parsed back (every <img> a PNG that Pillow decodes, every table holding the numbers of
summary.json / metrics.csv / sweep.json, nothing remote), Markdown + PNG files, comparisons, sweeps, recipes,
and bad input as one line with no file left behind."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.report.build import fmt
from cnntool.training.rundir import read_metrics


class Page(HTMLParser):
    """Tables (title = the <h3> before them, header, rows), <img> sources, every src/href, <pre> text."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.images, self.links, self.pre, self.scripts = [], [], [], [], 0
        self._h3, self._title, self._cell, self._row, self._in_pre = None, "", None, None, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "h3":
            self._h3 = ""
        if tag == "table":
            self.tables.append({"title": self._title, "header": [], "rows": []})
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = ""
        if tag == "pre":
            self._in_pre = True
            self.pre.append("")

    def handle_endtag(self, tag):
        if tag == "h3":
            self._title, self._h3 = self._h3, None
        if tag in ("td", "th") and self._row is not None:
            self._row.append((tag, self._cell.strip()))
            self._cell = None
        if tag == "tr" and self._row is not None:
            t = self.tables[-1]
            if all(kind == "th" for kind, _ in self._row):
                t["header"] = [c for _, c in self._row]
            else:
                t["rows"].append([c for _, c in self._row])
            self._row = None
        if tag == "pre":
            self._in_pre = False

    def handle_data(self, data):
        if self._h3 is not None:
            self._h3 += data
        if self._cell is not None:
            self._cell += data
        if self._in_pre:
            self.pre[-1] += data

    def table(self, title_start: str) -> dict:
        (t,) = [t for t in self.tables if t["title"].startswith(title_start)]
        return t

    def column(self, t: dict, name: str) -> list[str]:
        i = t["header"].index(name)
        return [r[i] for r in t["rows"]]


def check_self_contained(page: Page) -> None:
    assert page.images and page.scripts == 0
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG"
            im.verify()
    assert not [u for u in page.links if u.lower().startswith(("http:", "https:", "//"))]


@pytest.fixture(scope="module")
def single_report(digits_run, tmp_path_factory):
    from cnntool.report import build_report

    run_dir, _ = digits_run
    out = tmp_path_factory.mktemp("report") / "one.html"
    result = build_report([run_dir], out, explain=2)
    return Page(out.read_text()), result, run_dir


def test_single_run_report_is_self_contained_and_holds_the_run_numbers(single_report):
    page, result, run_dir = single_report
    check_self_contained(page)
    summary = json.loads((run_dir / "summary.json").read_text())
    final = dict(page.table("Final metrics").get("rows"))
    for key in ("test_acc", "test_loss", "val_acc", "train_loss", "best_epoch", "params", "seconds"):
        assert final[key] == fmt(summary[key]), key
    rows = read_metrics(run_dir / "metrics.csv")
    t = page.table("Metrics per evaluation point")
    assert len(t["rows"]) == len(rows)
    for col in ("step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert page.column(t, col) == [fmt(r[col]) for r in rows], col
    options = dict(page.table("Options").get("rows"))
    config = json.loads((run_dir / "config.json").read_text())
    assert options["lr"] == fmt(config["options"]["lr"]) and options["model"] == "simplecnn"
    model = page.table("Model summary")
    assert page.column(model, "params") == [fmt(summary["params"])]
    assert int(page.column(model, "MACs")[0]) > 0
    ev = dict(page.table("Evaluation on test").get("rows"))
    assert ev["top-1 accuracy"] == fmt(summary["test_acc"])
    per_class = page.table("Per class")
    assert sum(int(s) for s in page.column(per_class, "support")) == summary["test_n"]
    assert page.column(per_class, "class") == json.loads((run_dir / "spec.json").read_text())["class_names"]
    assert page.table("Most confidently wrong")["rows"]
    titles = [t["title"] for t in page.tables]
    assert "Layers" in titles
    # curves, 2 confusion matrices, wrong examples, prediction grid, filters, feature maps, CAM, saliency
    assert len(page.images) == result["figures"] >= 9


def test_markdown_report_links_png_files(digits_run, tmp_path):
    run_dir, _ = digits_run
    out = tmp_path / "rep" / "report.md"
    res = CliRunner().invoke(app, ["report", str(run_dir), "--md", "-o", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    links = [line.split("](", 1)[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert links and all(link.startswith("report_files/") for link in links)
    for link in links:
        with Image.open(out.parent / link) as im:
            assert im.format == "PNG"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"| test_acc | {fmt(summary['test_acc'])} |" in text
    for r in read_metrics(run_dir / "metrics.csv"):
        assert f"| {r['step']} | {fmt(r['epoch'])} | {fmt(r['train_loss'])} |" in text
    assert "http://" not in text and "https://" not in text


def test_several_runs_and_a_sweep_folder(digits_run, tmp_path):
    from cnntool.config import RunConfig, TrainConfig
    from cnntool.experiments.space import parse_space
    from cnntool.experiments.sweep import run_sweep
    from cnntool.report import build_report
    from cnntool.runner import fit

    run_dir, first = digits_run
    other = fit(RunConfig(train=TrainConfig(epochs=1, lr=1e-2, threads=1), runs_root=str(tmp_path / "runs")))
    space = parse_space({"base": {"epochs": 1, "threads": 1}, "params": {"dropout": [0.0, 0.2]}, "pruner": "none"},
                        "grid")
    sweep = run_sweep(space, trials=2, sampler="grid", runs_root=tmp_path, study="tiny")
    out = tmp_path / "several.html"
    build_report([run_dir, other["run_dir"], Path(sweep["sweep_dir"])], out)
    page = Page(out.read_text())
    check_self_contained(page)
    cmp = page.table("2 runs")
    assert {"lr", "epochs"} <= set(cmp["header"])  # the options that differ
    assert page.column(cmp, "test_acc") == [fmt(first["test_acc"]), fmt(other["test_acc"])]
    trials = page.table("Trials")
    assert page.column(trials, "trial") == [str(t["number"]) for t in sweep["trials"]]
    assert page.column(trials, "val_acc") == [fmt(t["value"]) for t in sweep["trials"]]
    assert page.column(trials, "dropout") == [fmt(t["params"]["dropout"]) for t in sweep["trials"]]
    assert page.pre == [sweep["best"]["command"]]
    assert len(page.images) == 3  # overlaid curves, history, parallel coordinates


def test_recipe_folder_gets_report_html_beside_results_md(digits_run, tmp_path):
    from cnntool.recipes.report import write_results

    run_dir, summary = digits_run
    folder = tmp_path / "recipe"
    shutil.copytree(run_dir, folder / "runs" / "a")
    result = {"recipe": "demo", "title": "Demo recipe", "description": "One run.", "out": str(folder),
              "data": "digits", "seconds": 1.0, "threads": 1,
              "headline": "done", "tables": [{"title": "Runs", "columns": ["variant", "test_acc"],
                                             "rows": [{"variant": "a", "test_acc": summary["test_acc"]}]}],
              "plots": [], "runs": [str(folder / "runs" / "a")], "notes": []}
    write_results(result, folder)
    assert (folder / "results.md").is_file()
    page = Page((folder / "report.html").read_text())
    check_self_contained(page)
    assert page.table("Runs")["rows"] == [["a", fmt(summary["test_acc"])]]
    assert page.column(page.table("1 runs"), "test_acc") == [fmt(summary["test_acc"])]


@pytest.mark.parametrize("make, words", [
    (lambda p: p.mkdir(), "no runs in this folder"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "a run without metrics"),
    (lambda p: None, "no such run directory"),
])
def test_bad_input_is_one_line_and_leaves_no_file(tmp_path, make, words):
    target = tmp_path / "in"
    make(target)
    out = tmp_path / "report.html"
    out.write_text("the old report")
    res = CliRunner().invoke(app, ["report", str(target), "-o", str(out)])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]
    assert out.read_text() == "the old report"  # untouched: written only by a rename at the very end
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in", "report.html"] if target.exists()
                                                                 else ["report.html"])


def test_report_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys\nfrom cnntool.cli.main import app\ntry:\n    app(['report', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint('MODULES:' + ' '.join(m for m in sys.modules if '.' not in m))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.rsplit("MODULES:", 1)[1].split())
    assert not loaded & {"torch", "torchvision", "numba", "onnxruntime", "matplotlib", "jinja2"}


def test_seeds_table_takes_the_metrics_of_seeds_json_and_skips_its_settings(tmp_path):
    from cnntool.report.build import seeds_blocks
    from cnntool.report.collect import Source

    meta = {"seeds": [0, 1], "aggregate": {"test_acc": {"mean": 0.9, "std": 0.01, "min": 0.89, "max": 0.91, "n": 2},
                                           "threads_per_seed": None, "jobs": 1}}
    (block,) = seeds_blocks(Source("seeds", tmp_path, [], meta), tmp_path)
    assert [row[0] for row in block["rows"]] == ["test_acc"]  # settings such as jobs are not metrics
