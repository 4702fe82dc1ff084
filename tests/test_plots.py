"""Figures a person can read: legends by the differing options (short, rounded, no paths), outside the axes
and inside the figure, distinct colours past 10 runs, log-scale loss over orders of magnitude, integer
epoch ticks, train dashed / val solid, and default output names that never replace an earlier file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import matplotlib  # noqa: E402,F401 - a dependency: missing fails, never skips

from cnntool.viz.curves import RunCurves, curves_figure, group_runs  # noqa: E402


def _rows(n_epochs=4, first_loss=0.5, acc=0.9):
    rows = []
    for e in range(1, n_epochs + 1):
        loss = first_loss if e == 1 else 0.3 / e
        rows.append({"epoch": e, "step": e * 10, "train_loss": loss * 1.1, "val_loss": loss,
                     "train_acc": acc, "val_acc": acc - 0.01})
    return rows


def _run(name, **options):
    opts = {"command": "train", "weights_kind": "none", "data_dir": f"/tmp/data/{name}", "lr": 1e-3, **options}
    return RunCurves(Path("/tmp/runs") / name, opts, _rows(first_loss=options.pop("_first", 0.5)))


def _render(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_legend_labels_short_rounded_without_paths_or_bookkeeping():
    runs = [_run("a", lr=0.003156737740174317, init="/home/me/weights/a.pt"),
            _run("b", lr=0.0001234, init="/home/me/weights/b.pt")]
    labels = [label for label, _ in group_runs(runs)]
    assert labels == ["lr=3.2e-3", "lr=1.2e-4"]
    assert all("/" not in lab and "weights_kind" not in lab and "command" not in lab for lab in labels)


def test_legend_outside_axes_inside_figure():
    import matplotlib.pyplot as plt

    runs = [_run(f"r{i}", lr=10 ** -(i / 4 + 2), dropout=i / 10) for i in range(12)]
    fig = curves_figure(runs)
    renderer = _render(fig)
    legends = fig.legends
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    fig_box = fig.bbox
    assert box.x0 >= fig_box.x0 - 1 and box.x1 <= fig_box.x1 + 1 and box.y0 >= fig_box.y0 - 1
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), "legend covers an axes"
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert all(len(t) <= 50 for t in labels)
    # one entry per run, then the line styles: a run's val and train lines are never split across columns
    assert labels == [lab for lab, _ in group_runs(runs)] + ["validation", "training"]
    assert [h.get_linestyle() for h in legends[0].legend_handles[-2:]] == ["-", "--"]
    plt.close(fig)


def test_distinct_colours_past_ten_runs_and_styles():
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    runs = [_run(f"r{i}", lr=10 ** -(i / 4 + 2)) for i in range(14)]
    fig = curves_figure(runs)
    loss_ax = fig.axes[0]
    val = [ln for ln in loss_ax.get_lines() if ln.get_label().endswith("val")]
    train = [ln for ln in loss_ax.get_lines() if ln.get_label().endswith("train")]
    assert len(val) == 14 and {ln.get_linestyle() for ln in val} == {"-"}
    assert {ln.get_linestyle() for ln in train} == {"--"}
    looks = {(mcolors.to_hex(ln.get_color()), ln.get_marker()) for ln in val}
    assert len(looks) == 14
    plt.close(fig)


def test_log_scale_loss_and_integer_epoch_ticks():
    import matplotlib.pyplot as plt

    flat = curves_figure([_run("a")])
    assert flat.axes[0].get_yscale() == "linear"
    plt.close(flat)
    run = _run("resnet")
    run.rows[0]["val_loss"] = 63.0  # ResNet's first-epoch val loss
    fig = curves_figure([run])
    _render(fig)
    assert fig.axes[0].get_yscale() == "log"
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


def test_seed_band_train_dashed_val_solid(tmp_path):
    import matplotlib.pyplot as plt

    from cnntool.experiments import plots

    captured = {}
    orig = plots._save

    def keep(fig, path):
        captured["styles"] = {ln.get_label(): ln.get_linestyle() for ax in fig.axes for ln in ax.get_lines()
                              if not ln.get_label().startswith("_")}
        return orig(fig, path)

    plots._save = keep
    try:
        plots.band_figure([_rows(), _rows(acc=0.8)], tmp_path / "b.png")
    finally:
        plots._save = orig
    assert captured["styles"] == {"val mean ± std": "-", "train mean ± std": "--"}
    plt.close("all")


def test_default_names_never_replace(tmp_path, monkeypatch):
    from cnntool.fileio import next_free_path

    p = tmp_path / "curves.png"
    assert next_free_path(p) == p
    p.write_bytes(b"x")
    assert next_free_path(p) == tmp_path / "curves-2.png"
    assert next_free_path(p, force=True) == p
    (tmp_path / "curves-2.png").write_bytes(b"x")
    assert next_free_path(p) == tmp_path / "curves-3.png"
    assert math.isfinite(1.0)


def test_cam_overlay_keeps_the_digit_visible_and_names_layers_by_path():
    import numpy as np
    import torch
    from torch import nn

    from cnntool.viz.cam import blend, cam_filename, cam_title, describe_layer

    digit = torch.zeros(1, 8, 8)
    digit[0, 2:6, 3:5] = 1.0  # a bright stroke on black
    stroke = digit[0].numpy() > 0.5
    for heat in (np.zeros((8, 8)), np.ones((8, 8)), np.linspace(0, 1, 64).reshape(8, 8)):
        rgb = blend(digit, heat)
        lum = rgb @ np.array([0.299, 0.587, 0.114])
        # every stroke pixel brighter than every background pixel next to it, under any heat
        assert lum[stroke].min() > lum[~stroke][(heat[~stroke] >= heat[stroke].min() - 1e-9)].max() \
            if heat.std() == 0 else (lum[stroke] / lum[~stroke].mean()).min() > 1.2
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()))
    assert describe_layer(net, "2.1") == "2.1 (ReLU)"
    assert cam_filename(["cam", "gradcam"]) == "cam-gradcam.png" and "cam_cam" not in cam_filename(["cam"])
    from cnntool.viz.saliency import magnitude_title

    assert magnitude_title("Guided backprop", 1) == "|guided backprop|"
    assert magnitude_title("Guided backprop", 3) == "|guided backprop|, max over\nchannels"
    assert cam_title("resnet18", ["gradcam"], False) == "resnet18: Grad-CAM of the predicted class"
    assert cam_title("nin", ["cam", "gradcam"], True) == \
        "nin: CAM and Grad-CAM of the predicted class\n(red title: wrong prediction)"


def test_two_column_grid_title_fits_its_figure():
    import matplotlib.pyplot as plt
    import torch

    from cnntool.viz.predictions import examples_figsize, plot_examples

    title = "resnet18_finetuned: misclassified test images — 0 right, 4 wrong (red)"
    captured = {}
    from cnntool.viz import grid

    orig = grid.save

    def keep(fig, path):
        fig.canvas.draw()
        captured["box"] = fig._suptitle.get_window_extent(fig.canvas.get_renderer())
        captured["fig"] = fig.bbox
        return orig(fig, path)

    grid.save = keep
    try:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            plot_examples(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ["a", "b"], [True, False], f"{d}/p.png",
                          cols=2, title=title)
    finally:
        grid.save = orig
    box, fig_box = captured["box"], captured["fig"]
    assert box.x0 >= fig_box.x0 and box.x1 <= fig_box.x1 and box.y1 <= fig_box.y1
    assert examples_figsize(1, 2)[0] == 4.0
    plt.close("all")


def _trials():
    import random

    rng = random.Random(0)
    out = []
    for n in range(12):
        params = {"lr": 10 ** rng.uniform(-4, -2), "bn": rng.choice([True, False]),
                  "activation": rng.choice(["relu", "gelu", "silu"]), "dropout": rng.choice([0.0, 0.1, 0.3, 0.5])}
        out.append({"number": n, "state": "PRUNED" if n == 3 else "COMPLETE", "value": rng.uniform(0.5, 0.98),
                    "params": params})
    return out


@pytest.mark.parametrize("with_axes", [True, False])
def test_parallel_coordinates_colour_bar_decade_ticks_categories_inside_figure(tmp_path, with_axes):
    import matplotlib.pyplot as plt
    import numpy as np

    from cnntool.experiments.plots import parallel_axes, parallel_figure

    trials = _trials()
    params = ["lr", "bn", "activation", "dropout"]
    axes = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "bn": {"type": "categorical", "choices": [True, False]},
            "activation": {"type": "categorical", "choices": ["relu", "gelu", "silu"]},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "log": False}} if with_axes else None
    if not with_axes:  # from the values alone: lr spans 1e-4 … 1e-2 exactly
        trials[0]["params"]["lr"], trials[1]["params"]["lr"] = 1e-4, 1e-2
    fig = parallel_axes(trials, params, "val_acc", True, axes)
    renderer = _render(fig)
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "val_acc" and ax.collections]
    assert len(bars) == 1, "one colour bar, labelled with the metric"
    done = [t["value"] for t in trials if t["state"] == "COMPLETE"]
    assert bars[0].get_ylim() == pytest.approx((min(done), max(done)))
    dims = [ax for ax in fig.axes if ax.get_yticklabels() and ax not in bars and ax.spines["left"].get_visible()]
    by_x = sorted(dims, key=lambda a: a.spines["left"].get_window_extent(renderer).x0)
    assert len(by_x) == len(params) + 1  # one axis per parameter, then the metric
    lr, bn, act, drop, metric = by_x
    assert lr.get_yscale() == "log"
    assert [t.get_text() for t in lr.get_yticklabels()] == ["1e-4", "1e-3", "1e-2"]
    assert list(lr.get_yticks()) == pytest.approx([1e-4, 1e-3, 1e-2])
    bn_labels = [t.get_text() for t in bn.get_yticklabels()]
    assert sorted(bn_labels) == ["False", "True"]
    act_labels = [t.get_text() for t in act.get_yticklabels()]
    assert sorted(act_labels) == ["gelu", "relu", "silu"]
    if with_axes:
        assert act_labels == ["relu", "gelu", "silu"]  # the space's order
    assert [t.get_text() for t in drop.get_yticklabels()] == ["0", "0.1", "0.2", "0.3", "0.4", "0.5"]
    assert all(len(t.get_text()) <= 6 for t in metric.get_yticklabels())
    # every line meets the lr axis at its trial's lr, read back through that axis's own (log) scale
    host = fig.axes[0]
    drawn = sorted(lr.transData.inverted().transform(host.transData.transform((0, line.get_ydata()[0])))[1]
                   for line in host.get_lines())
    assert drawn == pytest.approx(sorted(t["params"]["lr"] for t in trials if t["state"] == "COMPLETE"), rel=1e-6)
    # everything drawn (titles, tick labels, the colour bar's label) inside the figure, no two labels of one
    # axis on top of each other
    tight, page = fig.get_tightbbox(renderer), fig.bbox_inches
    assert page.x0 - 0.01 <= tight.x0 and tight.x1 <= page.x1 + 0.01
    assert page.y0 - 0.01 <= tight.y0 and tight.y1 <= page.y1 + 0.01
    for ax in by_x:
        boxes = [t.get_window_extent(renderer) for t in ax.get_yticklabels()]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)
    png = Path(parallel_figure(trials, params, "val_acc", True, tmp_path / "p.png", axes))
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert (np.abs(img - 255).sum(-1) > 60).mean() > 0.02  # lines drawn, not an empty canvas


def test_parallel_coordinates_numbers_as_choices_ascend_and_read_like_ticks():
    import matplotlib.pyplot as plt

    from cnntool.experiments.plots import parallel_axes

    rng_lr, rng_drop = [1e-2, 1e-3, 5e-4, 1e-4], [0.0, 0.2, 0.3, 0.4]
    trials = [{"number": i, "state": "COMPLETE", "value": 0.5 + i / 20,
               "params": {"lr": rng_lr[i % 4], "dropout": rng_drop[(i + 1) % 4]}} for i in range(8)]
    axes = {"lr": {"type": "categorical", "choices": rng_lr}, "dropout": {"type": "categorical", "choices": rng_drop}}
    fig = parallel_axes(trials, ["lr", "dropout"], "val_acc", True, axes)
    renderer = _render(fig)
    dims = sorted([ax for ax in fig.axes[1:] if ax.spines["left"].get_visible() and ax.get_yticklabels()],
                  key=lambda a: a.spines["left"].get_window_extent(renderer).x0)
    assert [t.get_text() for t in dims[0].get_yticklabels()] == ["1e-4", "5e-4", "1e-3", "1e-2"]
    assert [t.get_text() for t in dims[1].get_yticklabels()] == ["0", "0.2", "0.3", "0.4"]
    assert list(dims[0].get_yticks()) == sorted(dims[0].get_yticks())  # ascending from the bottom
    plt.close(fig)


def test_long_labels_fold_the_legend_into_fewer_columns_inside_the_figure():
    import matplotlib.pyplot as plt

    runs = [_run(f"r{i}", lr=10 ** -(i / 4 + 2)) for i in range(8)]
    labels = [f"backbone_lr_mult=1, epochs=5, freeze_first=0, head=linear, head_dropout=0 ({name})"
              for name in "abcdefgh"]
    fig = curves_figure(runs, labels=labels)
    renderer = _render(fig)
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert fig.bbox.x0 - 1 <= box.x0 and box.x1 <= fig.bbox.x1 + 1
    assert [t.get_text() for t in legend.get_texts()][:8] == labels  # the given names, one line per run
    assert legend._ncols < 3  # folded: three columns of these would not fit
    plt.close(fig)
