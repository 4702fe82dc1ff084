"""Every terminal table at 80 columns: each number is printed whole (never `0…` or `1.03e-…`), paths keep
their file name (cut from the left), an option that is also a column (epochs) is shown once."""

from __future__ import annotations

import re
from types import SimpleNamespace

from rich.console import Console

from cnntool.numfmt import cut_left, fmt_num, fmt_option


def _console():
    return Console(width=80, record=True, color_system=None, force_terminal=False)


def _text(console) -> str:
    text = console.export_text()
    for line in text.splitlines():  # no table wider than the console (rich would crop its right edge)
        line = line.rstrip()
        assert len(line) <= 80
        if line[:1] in "┃│┏┡└":
            assert line[-1] in "┃│┓┩┘", line
    return text


def _no_cut_numbers(text: str) -> None:
    assert not re.search(r"\d…|…\d|\d\.…", text), text


def test_fmt_num_rounds_and_never_cuts():
    assert fmt_num(0.003156737740174317) == "0.003157"
    assert fmt_num(1.03e-7) == "1.03e-7" and fmt_num(2.0) == "2" and fmt_num(None) == "-"
    assert fmt_num(0.98125) == "0.9812" and fmt_num(12345.6) == "12346"
    assert fmt_option("lr", 0.003156737740174317) == "lr=3.2e-3"
    assert fmt_option("dropout", 0.5) == "dropout=0.5"
    assert cut_left("/very/long/folder/of/photos/cat/img_0042.png", 20) == "…os/cat/img_0042.png"


def test_compare_table_at_80_columns():
    from cnntool.cli.compare import _render

    runs = []
    for i, lr in enumerate((0.003156737740174317, 0.000123456, 0.0101)):
        runs.append({"label": f"trial{i:03d}", "finished": True, "best_val_acc": 0.981234 - i / 100,
                     "best_val_loss": 0.0612345, "final_val_acc": 0.97654, "final_train_acc": 0.99912,
                     "test_acc": 0.9754321, "epochs": 12, "seconds": 123.456,
                     "options": {"lr": lr, "epochs": 12 + i, "filters": "increasing",
                                 "kernels": "decreasing-from-7"}})
    result = {"runs": runs, "differing_options": ["epochs", "filters", "kernels", "lr"], "sort": "val_acc",
              "plot": None, "skipped": []}
    con = _console()
    _render(con, result)
    text = _text(con)
    _no_cut_numbers(text)
    for r in runs:
        for k in ("best_val_acc", "best_val_loss", "final_val_acc", "final_train_acc", "test_acc", "seconds"):
            assert fmt_num(r[k]) in text
        assert fmt_option("lr", r["options"]["lr"], sig=4) in text
    assert "lr=3.157e-3" in text
    header = next(line for line in text.splitlines() if "val acc" in line)
    assert "epochs" not in text.split("options that differ")[1].split("\n", 2)[2], "epochs shown twice"
    assert header


def test_conv_test_tables_at_80_columns():
    from cnntool.cli.conv_test import _render
    from cnntool.conv.suite import Result, SuiteReport

    results = [Result("dilation-2 stride-3 groups", "8x16x33x33 * 32x8x5x5 s3,d2,g2", "grad_weight",
                      1.0312345e-05, 2.3456e-04, True),
               Result("a: 3x224x224 -> 64", "1x3x224x224 * 64x3x3x3", "forward", None, None, True,
                      12.34567, 10.1234, 1.2195, 123.456),
               Result("a: 3x224x224 -> 64", "1x3x224x224 * 64x3x3x3", "backward", 3.2e-6, 1e-4, True,
                      1234.5678, 987.65, 1.25, 8.9)]
    con = _console()
    _render(con, SuiteReport(results=results, threads=2, seconds=12.3, mode="full"))
    text = _text(con)
    _no_cut_numbers(text)
    for s in ("1.03e-05", "2.35e-04", "3.20e-06", "12.35", "10.12", "1.22", "123", "1234.57", "987.65"):
        assert s in text, s


def test_eval_tables_at_80_columns_keep_file_names(monkeypatch):
    import numpy as np

    from cnntool.cli import eval_cmd

    path = "/home/someone/photos/a/very/deep/folder/of/holiday/pictures/cat/IMG_20240101_123456.jpg"
    r = SimpleNamespace(data="photos", split="all", n=153, loss=0.4123, top1=0.9, top5=None, checkpoint="best.pt",
                        class_names=["cat", "dog"],
                        per_class={"precision": np.array([0.9123, 0.8]), "recall": np.array([0.85, 0.9]),
                                   "f1": np.array([0.88, 0.847]), "support": np.array([80, 73])},
                        avg={"macro": {"precision": 0.85, "recall": 0.87, "f1": 0.86, "support": 153},
                             "weighted": {"precision": 0.86, "recall": 0.87, "f1": 0.86, "support": 153}},
                        confident_wrong=[{"index": 3, "path": path, "true": "cat", "pred": "dog",
                                          "confidence": 0.9987}])
    con = _console()
    monkeypatch.setattr(eval_cmd, "stderr_console", lambda: con)
    eval_cmd._render(r)
    text = _text(con)
    _no_cut_numbers(text)
    assert "IMG_20240101_123456.jpg" in text and "99.9%" in text and "0.912" in text


def test_sweep_and_recipe_tables_at_80_columns():
    from cnntool.cli.recipe import rich_tables
    from cnntool.cli.sweep import _render_summary

    trials = [{"number": i, "state": "COMPLETE", "value": 0.98765 - i / 1000, "last_value": None,
               "test_acc": 0.97531, "epochs": 8, "params": {"lr": 0.003156737740174317 * (i + 1), "dropout": 0.25,
                                                            "filters": "increasing", "weight_decay": 1.234e-5}}
              for i in range(3)]
    best = {**trials[0], "run_dir": "runs/sweep-small/trial000", "command": "cnntool train --lr 0.003"}
    result = {"states": {"COMPLETE": 3}, "study": "small", "trials": trials, "monitor": "val_acc", "best": best,
              "importances": {}, "plots": {}}
    con = _console()
    _render_summary(con, result)
    recipe = {"tables": [{"title": "strategies", "columns": ["strategy", "val_acc", "test_acc", "seconds", "lr",
                                                             "params", "run_dir", "best_epoch"],
                          "rows": [{"strategy": "linear probe (frozen features)", "val_acc": 0.95612,
                                    "test_acc": 0.9498765, "seconds": 1234.567, "lr": 0.003156, "params": 1234567,
                                    "run_dir": "runs/recipes/finetune/linear-probe-long-name", "best_epoch": 7}]}]}
    for t in rich_tables(recipe):
        con.print(t)
    text = _text(con)
    _no_cut_numbers(text)
    assert "epoch" in text
    for s in ("0.9877", "0.9753", "lr=3.16e-3", "0.9561", "0.9499", "1234.57", "1,234,567", "0.00316",
              "linear probe"):
        assert s in text, s
