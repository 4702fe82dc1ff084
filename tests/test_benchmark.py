"""cnntool benchmark: every runtime's row, with every column; accuracy columns checked against eval."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnntool.cli.main import app


def test_benchmark_json_has_every_column_and_the_eval_accuracy(digits_run):
    from cnntool.export.benchmark import COLUMNS, RUNTIMES

    run_dir, summary = digits_run
    res = CliRunner().invoke(app, ["benchmark", str(run_dir), "--threads", "1", "--repeats", "1", "--calib", "64",
                                   "--json"])
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["threads"] == 1 and d["repeats"] == 1 and d["arch"] == "simplecnn" and d["columns"] == list(COLUMNS)
    rows = {r["runtime"]: r for r in d["rows"]}
    expected = [r for r in RUNTIMES if r != "openvino"]
    assert list(rows)[:4] == expected
    for r in rows.values():
        assert set(r) == set(COLUMNS)
        assert all(r[c] is not None for c in COLUMNS), r
        assert r["latency_ms_b1"] > 0 and r["images_per_s_b32"] > 0 and r["images_per_s_b64"] > 0
    # the test split is the run's: torch's top-1 is the one training reported; FP32 ONNX agrees with torch
    assert d["test_images"] > 0
    assert rows["torch"]["top1"] == pytest.approx(summary["test_acc"], abs=1e-6)
    assert rows["onnx-fp32"]["top1"] == rows["torch"]["top1"] == rows["torch-channels-last"]["top1"]
    assert rows["onnx-fp32"]["agreement"] == 1.0 and rows["onnx-fp32"]["speedup_b32"] == 1.0
    assert rows["onnx-int8"]["size_bytes"] < 0.5 * rows["onnx-fp32"]["size_bytes"]


def test_benchmark_bad_options(digits_run):
    run_dir, _ = digits_run
    res = CliRunner().invoke(app, ["benchmark", str(run_dir), "--runtime", "tensorrt"])
    assert res.exit_code == 2 and "--runtime 'tensorrt' must be one of" in res.stderr
    res = CliRunner().invoke(app, ["benchmark", str(run_dir), "--repeats", "0"])
    assert res.exit_code == 2


def test_openvino_row_when_installed(digits_run):
    import openvino  # noqa: F401 - [dev] installs it: missing fails, never skips
    run_dir, _ = digits_run
    res = CliRunner().invoke(app, ["benchmark", str(run_dir), "--threads", "1", "--repeats", "1", "--json",
                                   "--runtime", "onnx-fp32", "--runtime", "openvino"])
    assert res.exit_code == 0, res.stderr
    rows = {r["runtime"]: r for r in json.loads(res.stdout)["rows"]}
    assert set(rows) == {"onnx-fp32", "openvino"}
    assert rows["openvino"]["top1"] == rows["onnx-fp32"]["top1"] and rows["openvino"]["images_per_s_b32"] > 0
