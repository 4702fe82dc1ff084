"""cnntool conv-test end to end, the suite library, the generated kernels file and the lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from cnntool.cli.conv_test import conv_test
from cnntool.cli.main import app
from cnntool.conv import _codegen
from cnntool.conv.suite import Case, run_suite, tolerance
from cnntool.errors import ConfigError

TINY = [
    Case("tiny 3x3", (1, 4, 9, 9), (6, 4, 3, 3), padding=1, grad=True),
    Case("tiny s2 d2 g2", (2, 4, 11, 10), (4, 2, 3, 2), stride=2, dilation=2, groups=2, grad=True),
    Case("tiny blur", (1, 3, 8, 8), (3, 1, 3, 3), padding="same", groups=3, blur=3, bias="none", grad=True),
    Case("tiny float64", (1, 2, 6, 6), (3, 2, 2, 2), dtype="float64", grad=True),
]


def test_run_suite_on_tiny_cases_passes():
    report = run_suite(cases=TINY, bench=False)
    assert report.passed, [r for r in report.results if not r.passed]
    parts = {(r.case, r.part) for r in report.results}
    assert ("tiny 3x3", "grad_weight") in parts and ("tiny 3x3", "grad_bias") in parts
    assert ("tiny blur", "grad_input") in parts
    assert all(r.max_abs_error <= r.tolerance for r in report.results)
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["passed"] is True and len(doc["results"]) == len(report.results)


def test_quick_cases_cover_the_coursework_list():
    from cnntool.conv.suite import conformance_cases

    groups = {c.group for c in conformance_cases()}
    assert {"kernel size", "kernel shape", "channels", "stride", "dilation", "groups", "bias", "blur", "padding",
            "backward", "float64"} <= groups
    names = {c.name for c in conformance_cases()}
    assert {f"square k={k}" for k in range(1, 8)} <= names
    assert {f"blur {k}x{k}" for k in range(1, 7)} <= names
    assert "channels growing 128->243" in names


def test_tolerance_scales_with_magnitude_and_terms():
    ref = torch.full((3,), 10.0, dtype=torch.float64)
    t1 = tolerance(ref, 9, torch.float32)
    assert tolerance(ref * 2, 9, torch.float32) == 2 * t1
    assert tolerance(ref, 900, torch.float32) > t1
    assert tolerance(ref, 9, torch.float64) < t1 * 1e-8


def test_cli_json_quick_check_only():
    result = CliRunner().invoke(app, ["conv-test", "--quick", "--check-only", "--json", "--threads", "2"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["passed"] and doc["failures"] == 0 and doc["threads"] == 2
    assert {r["part"] for r in doc["results"]} >= {"forward", "grad_input", "grad_weight", "grad_bias"}


def test_cli_rejects_both_modes():
    with pytest.raises(ConfigError, match="--bench-only"):
        conv_test(bench_only=True, check_only=True)
    assert CliRunner().invoke(app, ["conv-test", "--bench-only", "--check-only"]).exit_code == 2


def test_conv_test_help_does_not_import_heavy_modules():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom cnntool.cli.main import app\n"
            "r = CliRunner().invoke(app, ['conv-test', '--help'])\n"
            "assert '--bench-only' in r.output and 'Example' in r.output, r.output\n"
            "print(sorted(m for m in ('torch', 'numba', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_generated_kernels_are_up_to_date():
    assert _codegen.target_path().read_text() == _codegen.generate(), \
        "cnntool/conv/_kernels.py is stale: run python cnntool/conv/_codegen.py"


def test_model_bench_library_on_a_tiny_model():
    from cnntool.conv.modelbench import MODEL_GOALS, bench_model

    r = bench_model("simplecnn", img_size=12, batch=2, threads=1, reps=1)
    assert r.goal == MODEL_GOALS["simplecnn"] and r.torch_ms > 0 and r.numba_ms > 0 and r.ratio > 0
    assert r.torch_cl_ms > 0 and r.ratio_cl > 0  # torch in its other layout, timed in the same rounds
    # both models start from the same weights: the first training step's loss agrees
    assert r.loss_numba == pytest.approx(r.loss_torch, rel=1e-4)
    assert r.layers and sum(lt.count for lt in r.layers) >= 2
    assert all(" * " in lt.shape and lt.numba_ms > 0 and lt.torch_ms > 0 for lt in r.layers)
    doc = json.loads(json.dumps(r.to_dict()))
    assert doc["model"] == "simplecnn" and len(doc["layers"]) == len(r.layers)


def test_model_bench_first_losses_agree_with_dropout(monkeypatch):
    # each model's first step draws the same dropout masks, so the losses compare the convolutions alone
    from cnntool.conv.modelbench import bench_model
    from cnntool.models import registry

    real = registry.create_model
    monkeypatch.setattr(registry, "create_model", lambda name, *a, **kw: real(name, *a, dropout=0.5, **kw))
    r = bench_model("simplecnn", img_size=12, batch=4, threads=1, reps=1, layers=False)
    assert r.loss_numba == pytest.approx(r.loss_torch, rel=1e-4)


def test_conv_shapes_groups_identical_layers():
    from torch import nn

    from cnntool.conv.modelbench import _shape_text, conv_shapes

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False))
    shapes = conv_shapes(net, torch.randn(2, 3, 10, 10))
    assert list(shapes.values()) == [1, 2, 1]
    texts = [_shape_text(k) for k in shapes]
    assert texts[0] == "2x3x10x10 * 8x3x3x3 p1" and texts[2] == "2x8x10x10 * 8x1x3x3 s2,p1,dw"


def test_cli_model_json_and_conflicting_flags():
    result = CliRunner().invoke(app, ["conv-test", "--model", "simplecnn", "--img-size", "12", "--batch", "2",
                                      "--reps", "1", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"] == "simplecnn" and doc["batch"] == 2 and doc["layers"]
    bad = CliRunner().invoke(app, ["conv-test", "--model", "simplecnn", "--check-only"])
    assert bad.exit_code == 2
    unknown = CliRunner().invoke(app, ["conv-test", "--model", "no-such-model", "--img-size", "12"])
    assert unknown.exit_code == 2 and "no-such-model" in unknown.output  # a bad option value
