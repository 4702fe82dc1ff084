"""Multi-process training: torchrun with two CPU processes (gloo) against a single-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cnntool.errors import ConfigError
from cnntool.training.distributed import Dist


def test_shards_cover_each_global_batch_once():
    order = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    shards = [Dist(rank=r, world_size=2).shard_order(order, 16) for r in range(2)]
    assert all(len(s) == 6 * 8 for s in shards)  # 6 full global batches of 16, 8 per rank
    for step in range(6):
        got = torch.cat([s[step * 8:(step + 1) * 8] for s in shards])
        assert torch.equal(got.sort().values, order[step * 16:(step + 1) * 16].sort().values)
    with pytest.raises(ConfigError, match="divisible"):
        Dist(rank=0, world_size=2).check_batch(33)
    assert Dist().check_batch(33) == 33 and not Dist().enabled


def test_torchrun_two_processes_match_single_process(tmp_path):
    from cnntool.config import RunConfig
    from cnntool.data.bundle import load_data
    from cnntool.data.pipeline import BatchPipeline
    from cnntool.training import load_model
    from cnntool.runner import fit
    from cnntool.training.evaluate import evaluate

    options = ["--epochs", "2", "--threads", "1", "--batch-size", "64"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "cnntool", "train", *options, "--runs-root", str(tmp_path / "ddp"), "--json"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # only rank 0 prints
    ddp = json.loads(lines[0])
    assert ddp["distributed"] == {"world_size": 2, "backend": "gloo", "ranks_in_sync": True}
    assert ddp["test_n"] == 360  # sharded evaluation counts each test image once
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["train"]  # one run dir, from rank 0
    run = tmp_path / "ddp" / "train"
    assert json.loads((run / "config.json").read_text())["resolved"]["world_size"] == 2
    assert json.loads((run / "summary.json").read_text())["test_acc"] == ddp["test_acc"]

    # The checkpoint loads in a single process (no "module." prefix) and scores what the run reported.
    model, spec, ckpt = load_model(run)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    data = load_data(RunConfig().data, input_size=spec.input_size, mean=spec.mean, std=spec.std)
    acc = evaluate(model, data.split("test"), BatchPipeline(spec.mean, spec.std))["acc"]
    assert acc == pytest.approx(ddp["test_acc"], abs=1e-6)

    from typer.testing import CliRunner

    from cnntool.cli.main import app

    evaluated = CliRunner().invoke(app, ["eval", str(run), "--json", "--no-plots", "--out", str(tmp_path / "ev")])
    assert evaluated.exit_code == 0, evaluated.output
    ev = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert ev["n"] == 360 and ev["acc"] == pytest.approx(ddp["test_acc"], abs=1e-6)

    single = fit(RunConfig.from_flat({"epochs": 2, "threads": 1, "batch_size": 64}, runs_root=str(tmp_path / "one")))
    assert abs(single["test_acc"] - ddp["test_acc"]) <= 0.02
