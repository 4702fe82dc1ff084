"""cnntool summary: MACs from torch.utils.flop_counter against the closed-form count."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.viz.summary import model_summary

runner = CliRunner()


@settings(max_examples=25, deadline=None)
@given(cin_g=st.integers(1, 4), cout_g=st.integers(1, 4), groups=st.sampled_from([1, 2]),
       k=st.sampled_from([1, 3, 5]), stride=st.integers(1, 2), pad=st.integers(0, 2), size=st.integers(5, 12))
def test_single_conv_macs(cin_g, cout_g, groups, k, stride, pad, size):
    cin, cout = cin_g * groups, cout_g * groups
    conv = nn.Conv2d(cin, cout, (k, k), stride=stride, padding=pad, groups=groups)
    s = model_summary(nn.Sequential(conv), [size, size], cin)
    hout = (size + 2 * pad - k) // stride + 1
    expected = cout * hout * hout * (cin // groups) * k * k
    (row,) = s.layers
    assert row.output_shape == [1, cout, hout, hout]
    assert row.macs == s.macs == expected
    assert s.flops == 2 * expected
    assert row.params == s.total_params == cout * (cin // groups) * k * k + cout


def test_rows_for_a_small_cnn():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10))
    s = model_summary(model, [8, 8], 3)
    assert [r.type for r in s.layers] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert s.layers[0].macs == 8 * 8 * 8 * 3 * 9
    assert s.layers[4].macs == 128 * 10
    assert s.macs == 8 * 8 * 8 * 3 * 9 + 1280
    assert s.layers[2].output_shape == [1, 8, 4, 4]


def test_reused_module_counts_every_call():
    lin = nn.Linear(4, 4)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(self.lin(x.flatten(1)))

    s = model_summary(Twice(), [2, 2], 1)
    assert s.layers[0].calls == 2 and s.layers[0].macs == 2 * 16


def test_summary_cli_model_name_and_run(tmp_path):
    r = runner.invoke(app, ["summary", "simplecnn", "--img-size", "8", "--in-channels", "1", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["input_shape"] == [1, 1, 8, 8]
    conv1 = d["layers"][0]
    assert conv1["macs"] == 64 * 4 * 4 * 1 * 9 and d["flops"] == 2 * d["macs"]
    assert d["total_params"] == sum(p.numel() for p in __import__("cnntool.models", fromlist=["x"]).create_model(
        "simplecnn", 10, 1).parameters())
    r = runner.invoke(app, ["summary", "simplecnn", "--img-size", "8"])
    assert r.exit_code == 0 and "MACs" in r.output and "FLOPs (= 2 × MACs)" in r.output
    r = runner.invoke(app, ["summary", "nosuchnet"])
    assert r.exit_code == 2 and "nosuchnet" in r.output


def test_summary_of_a_checkpoint(tmp_path):
    from cnntool.spec import ModelSpec
    from cnntool.training.checkpoint import build_from_spec, save_checkpoint

    spec = ModelSpec(arch="lenet", num_classes=3, class_names=["a", "b", "c"], in_channels=1,
                     input_size=[16, 16], mean=[0.5], std=[0.25])
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", {"spec": spec.to_dict(), "model": build_from_spec(spec).state_dict()})
    r = runner.invoke(app, ["summary", str(tmp_path / "m.pt"), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["input_shape"] == [1, 1, 16, 16] and d["num_classes"] == 3
    assert d["layers"][0]["macs"] == 6 * 16 * 16 * 25


@pytest.mark.parametrize("size", [32])
def test_resnet18_total_matches_counter(size):
    from torch.utils.flop_counter import FlopCounterMode

    from cnntool.models import create_model

    m = create_model("resnet18", 10, 3).eval()
    s = model_summary(m, [size, size], 3)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.zeros(1, 3, size, size))
    assert s.flops == fc.get_total_flops()
    assert sum(r.macs for r in s.layers) == s.macs


@pytest.mark.parametrize("args, flag", [
    (["--in-channels", "0"], "--in-channels"),
    (["--in-channels", "-1"], "--in-channels"),
    (["--img-size", "0"], "--img-size"),
    (["--num-classes", "0"], "--num-classes"),
])
def test_summary_counts_must_be_positive(args, flag):
    r = runner.invoke(app, ["summary", "simplecnn", *args])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and flag in errors[0] and "Traceback" not in r.output


def test_summarise_never_turns_zero_channels_into_three():
    from cnntool.errors import ConfigError
    from cnntool.viz.summary import summarise

    with pytest.raises(ConfigError, match="--in-channels 0 must be in 1..64"):
        summarise("simplecnn", 8, in_channels=0)
    assert summarise("simplecnn", 8, in_channels=2).input_shape == [1, 2, 8, 8]
