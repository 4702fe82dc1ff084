"""The training loop: fit(), resume(), and the Trainer that both use (finetune uses it too).

Reproducibility: the model is initialised from ``--seed``; every epoch re-seeds the global RNG
(dropout) and the shuffle/augmentation generator from (seed, epoch). So an epoch's randomness
does not depend on what ran before it, and a resumed run replays exactly what an uninterrupted
run would have done.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnntool import __version__
from cnntool.config import RunConfig
from cnntool.data.bundle import DataBundle, load_data
from cnntool.data.pipeline import BatchPipeline
from cnntool.errors import CheckpointError, ConfigError, TrainingError, first_line
from cnntool.spec import ModelSpec
from cnntool.training import distributed
from cnntool.training.checkpoint import load_checkpoint, save_checkpoint
from cnntool.training.evaluate import autocast, check_amp
from cnntool.training.ema import WeightEMA
from cnntool.training.mixing import BatchMixer, balanced_order, class_weights
from cnntool.training.events import Reporter
from cnntool.training.optim import build_optimizer, build_scheduler
from cnntool.fileio import clean_stale_temp
from cnntool.training.rundir import MetricsWriter, allocate_run_dir, remove_run_dir, write_json


@dataclass
class Setup:
    """What a training run needs beyond its options: built by ``prepare_train`` or by finetune."""

    cfg: RunConfig
    model: nn.Module
    data: DataBundle
    spec: ModelSpec
    command: str = "train"
    param_groups: list[dict[str, Any]] | None = None  # default: one group with every parameter
    epoch_hook: Callable[[int, nn.Module], None] | None = None  # at each epoch start (unfreezing)
    train_mode: Callable[[nn.Module], None] | None = None  # after model.train() (keep frozen BN in eval)
    extra_options: dict[str, Any] = field(default_factory=dict)  # stored in config.json "options"
    info: dict[str, Any] = field(default_factory=dict)  # shown at start (parameter table, ...)


def set_threads(threads: int | None) -> int:
    n = threads or distributed.local_threads() or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return dev


def prepare_train(cfg: RunConfig, reporter: Reporter | None = None) -> Setup:
    """Data, model and spec for `cnntool train`; every check happens here, before a run directory exists."""
    from cnntool.models import check_input_size, check_memory, create_model, get_model_info, resolve_kwargs

    reporter = reporter or Reporter()
    cfg.validate()
    name = cfg.model.model
    info = get_model_info(name)
    kwargs = resolve_kwargs(name, cfg.model.builder_kwargs())
    data = load_data(cfg.data, info.min_size, info.default_size, progress=reporter.on_data)
    torch.manual_seed(cfg.train.seed)
    check_memory(name, data.num_classes, data.in_channels, data.input_size, cfg.train.batch_size, training=True,
                 **kwargs)
    model = create_model(name, data.num_classes, data.in_channels, input_size=data.input_size, **kwargs)
    check_input_size(model, name, data.in_channels, data.input_size)
    if cfg.model.conv_impl == "numba":
        from cnntool.conv import swap_convs

        swap_convs(model)
    spec = ModelSpec(arch=name, num_classes=data.num_classes, class_names=data.class_names,
                     in_channels=data.in_channels, input_size=data.input_size, mean=data.mean, std=data.std,
                     model_kwargs=kwargs)
    return Setup(cfg, model, data, spec)


def _whole(value: float | int | None) -> float | int | None:
    """An epoch count as an int when it is whole."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**63)


def environment() -> dict[str, Any]:
    import numpy

    return {"cnntool": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(), "threads": torch.get_num_threads(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}


class Trainer:
    def __init__(self, setup: Setup, reporter: Reporter | None = None):
        self.setup = setup
        self.cfg = setup.cfg
        self.tcfg = setup.cfg.train
        self.reporter = reporter or Reporter()

    # ------------------------------------------------------------------ public

    def run(self, run_dir: Path | None = None, resume_from: dict[str, Any] | None = None) -> dict[str, Any]:
        setup, tcfg = self.setup, self.tcfg
        self.dist = distributed.init_distributed(tcfg.device)  # torchrun: DDP; else a no-op
        self.device = self.dist.device(resolve_device(tcfg.device))
        check_amp(self.device, tcfg.amp)
        if tcfg.ema and setup.spec.weights != "ema":
            setup.spec = setup.spec.replace(weights="ema")
        self.rank_batch = self.dist.check_batch(tcfg.batch_size)
        if not self.dist.is_main:
            self.reporter = Reporter()  # only rank 0 reports
        model = setup.model.to(self.device)
        if tcfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model  # unwrapped: checkpoints have no "module." prefix
        self._wrap_model()
        self.pipeline = BatchPipeline(setup.spec.mean, setup.spec.std, self.cfg.data.augmentations(), self.device,
                                      tcfg.channels_last)
        self.train_split = setup.data.split("train")
        self.val_split = setup.data.split("val")
        if len(self.train_split) == 0:
            raise ConfigError("the training split is empty")
        batches = self.train_split.num_batches(tcfg.batch_size, drop_last=True)
        if batches < tcfg.accum_steps:
            raise ConfigError(f"--accum-steps {tcfg.accum_steps} is more than the {batches} batches of an epoch")
        self.steps_per_epoch = batches // tcfg.accum_steps  # optimizer steps; leftover batches are dropped
        k = setup.spec.num_classes
        self.mixer = BatchMixer(k, tcfg.mixup, tcfg.cutmix, tcfg.mix_prob)
        self.loss_weight = class_weights(tcfg.class_weights, self.train_split.labels, setup.spec.class_names
                                         ).to(self.device) if tcfg.class_weights else None
        self.ema = WeightEMA(model, tcfg.ema_decay) if tcfg.ema else None
        params = setup.param_groups or [{"params": list(model.parameters())}]
        self.optimizer = build_optimizer(params, tcfg)
        self.scheduler = build_scheduler(self.optimizer, tcfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=tcfg.amp == "fp16")

        fresh = run_dir is None
        if fresh:
            made = allocate_run_dir(self.cfg.runs_root, setup.command, self.cfg.name, self.cfg.out) \
                if self.dist.is_main else None
            self.run_dir = Path(self.dist.broadcast_object(str(made) if made else None))
        else:
            self.run_dir = Path(run_dir)
            if self.dist.is_main:
                clean_stale_temp(self.run_dir)  # a save the killed process did not finish
        self.wrote_checkpoint = not fresh
        try:
            return self._run(resume_from)
        except BaseException as e:
            self.reporter.on_abort(e)
            if fresh and not self.wrote_checkpoint and self.dist.is_main:
                remove_run_dir(self.run_dir)  # nothing worth keeping: no half-made run left behind
            raise

    # ------------------------------------------------------------------ internals

    def _wrap_model(self) -> None:
        """forward_model: the model as trained (DDP under torchrun, then torch.compile if asked)."""
        wrapped = self.dist.wrap(self.model, self.device)
        self.forward_model = torch.compile(wrapped) if self.tcfg.compile else wrapped
        self._trainable = [p.requires_grad for p in self.model.parameters()]

    def _options(self) -> dict[str, Any]:
        return {**self.cfg.flat(), **self.setup.extra_options}

    def _write_config(self) -> None:
        if not self.dist.is_main:
            return
        spec, data = self.setup.spec, self.setup.data
        write_json(self.run_dir / "config.json", {
            "command": self.setup.command,
            "options": self._options(),
            "resolved": {"input_size": spec.input_size, "num_classes": spec.num_classes,
                         "augmentations": self.cfg.data.augmentations(), "device": str(self.device),
                         "steps_per_epoch": self.steps_per_epoch, "split_sizes": data.sizes(),
                         "seed": self.tcfg.seed, "threads": torch.get_num_threads(),
                         "world_size": self.dist.world_size},
            "environment": environment(),
            "argv": sys.argv,
        })
        spec.save(self.run_dir / "spec.json")

    def _run(self, resume_from: dict[str, Any] | None) -> dict[str, Any]:
        tcfg, setup = self.tcfg, self.setup
        start_epoch, self.global_step = 0, 0
        self.best_value: float | None = None
        self.best_epoch, self.bad_epochs = 0, 0
        self.elapsed = 0.0
        if resume_from is not None:
            self._restore(resume_from)
            start_epoch = int(resume_from["epoch"])
        else:
            self._write_config()
        self.metrics = MetricsWriter(self.run_dir / "metrics.csv",
                                     keep_until_step=self.global_step if resume_from is not None else None) \
            if self.dist.is_main else None
        n_params = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.reporter.on_start({
            "run_dir": str(self.run_dir), "arch": setup.spec.arch, "data": setup.data.name,
            "input_size": setup.spec.input_size, "in_channels": setup.spec.in_channels,
            "num_classes": setup.spec.num_classes, "split_sizes": setup.data.sizes(), "params": n_params,
            "trainable_params": n_train, "epochs": tcfg.epochs, "start_epoch": start_epoch,
            "steps_per_epoch": self.steps_per_epoch, "device": str(self.device), "threads": torch.get_num_threads(),
            "augmentations": self.cfg.data.augmentations(), "world_size": self.dist.world_size, **setup.info})
        stopped_early = False
        self.out_of_time = False
        for epoch in range(start_epoch, tcfg.epochs):
            self._train_epoch(epoch)
            self._save_last(epoch + 1)
            if tcfg.patience and self.bad_epochs >= tcfg.patience:
                stopped_early = True
                break
            if self.out_of_time:
                break
        return self._finish(stopped_early)

    def _train_epoch(self, epoch: int) -> None:
        tcfg = self.tcfg
        seed = _epoch_seed(tcfg.seed, epoch)
        torch.manual_seed(self.dist.rank_seed(seed))
        gen = torch.Generator().manual_seed(seed + 1)
        if self.setup.epoch_hook:
            self.setup.epoch_hook(epoch, self.model)
            if self.dist.enabled and self._trainable != [p.requires_grad for p in self.model.parameters()]:
                self._wrap_model()  # DDP only syncs the parameters trainable when it was built
        self.model.train()
        if self.setup.train_mode:
            self.setup.train_mode(self.model)
        self.reporter.on_epoch_start(epoch + 1, self.steps_per_epoch)
        t0 = time.perf_counter()
        self._reset_running()
        order = balanced_order(self.train_split.labels, self.setup.spec.num_classes, gen) \
            if tcfg.sampler == "balanced" else None
        if self.dist.enabled:  # same permutation on every rank, each takes its slice of each global batch
            if order is None:
                order = torch.randperm(len(self.train_split), generator=gen)
            order = self.dist.shard_order(order, tcfg.batch_size)
            batches = self.train_split.batches(self.rank_batch, indices=order)
            gen = torch.Generator().manual_seed(self.dist.rank_seed(seed + 1))  # per-rank augmentation
        else:
            batches = self.train_split.batches(tcfg.batch_size, shuffle=True, generator=gen, drop_last=True,
                                               indices=order)
        accum, budget = tcfg.accum_steps, tcfg.time * 60.0
        for j, (x, y) in enumerate(batches):
            if j >= self.steps_per_epoch * accum:
                break
            x = self.pipeline(x, train=True, generator=gen)
            y = y.to(self.device)
            target = None
            if self.mixer.enabled:
                x, target = self.mixer(x, y, gen)
            loss = self._train_step(x, y, target, first=j % accum == 0, last=(j + 1) % accum == 0)
            if (j + 1) % accum:
                continue
            i = j // accum
            self.reporter.on_step(epoch + 1, i + 1, self.steps_per_epoch, loss)
            last_in_epoch = i + 1 == self.steps_per_epoch
            if budget and not self.dist.all_true(self.elapsed + time.perf_counter() - t0 < budget):
                self.out_of_time = True  # the epoch ends here: final evaluation and checkpoints as usual
                break
            if tcfg.eval_every and self.global_step % tcfg.eval_every == 0 and not last_in_epoch:
                self.elapsed += time.perf_counter() - t0
                t0 = time.perf_counter()
                self._eval_point(epoch_end=False)
                self.model.train()
                if self.setup.train_mode:
                    self.setup.train_mode(self.model)
        self.elapsed += time.perf_counter() - t0
        row = self._eval_point(epoch_end=True)
        self.reporter.on_epoch_end(epoch + 1, row)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None,
                    first: bool = True, last: bool = True) -> float:
        """One batch: forward, backward; with ``last`` also the optimizer step (--accum-steps batches each).
        ``target``: soft targets (mixup/cutmix); accuracy then counts the dominant label."""
        tcfg = self.tcfg
        with autocast(self.device, tcfg.amp):
            out = self.forward_model(x)
            loss = loss_fn(out, y if target is None else target, tcfg.label_smoothing, self.loss_weight)
        step = self.global_step + 1
        if not self.dist.all_true(bool(torch.isfinite(loss))):  # all ranks stop together
            kept = "the last good checkpoint is kept" if self.wrote_checkpoint else "no checkpoint was written"
            raise TrainingError(f"non-finite loss at step {step}; {kept} "
                                f"(try a lower --lr, or check the augmentation options)")
        if first:
            self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss / tcfg.accum_steps if tcfg.accum_steps > 1 else loss).backward()
        if last:
            self.global_step = step
            if tcfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), tcfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
        value = loss.item()
        n = len(y)
        self.run_loss += value * n
        labels = y if target is None else target.argmax(1)
        self.run_correct += int((out.argmax(1) == labels).sum())
        self.run_n += n
        return value

    def _reset_running(self) -> None:
        self.run_loss, self.run_correct, self.run_n = 0.0, 0, 0

    def _eval_point(self, epoch_end: bool) -> dict[str, Any]:
        self.dist.broadcast_state(self.model, buffers_only=True)  # evaluate rank 0's BatchNorm statistics
        val = self.dist.evaluate(self.eval_model, self.val_split, self.pipeline, amp=self.tcfg.amp)
        run_loss, run_correct, run_n = self.dist.sum(self.run_loss, self.run_correct, self.run_n)
        row = {
            "step": self.global_step,
            "epoch": round(self.global_step / self.steps_per_epoch, 4),
            "train_loss": run_loss / max(1, run_n),
            "train_acc": run_correct / max(1, run_n),
            "val_loss": val["loss"], "val_acc": val["acc"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "time": round(self.elapsed, 3),
        }
        self._reset_running()
        if self.metrics is not None:
            self.metrics.write(row)
        value = row[self.tcfg.monitor]
        better = self.best_value is None or (
            value > self.best_value if self.tcfg.monitor == "val_acc" else value < self.best_value)
        if better:
            self.best_value = value
            self.best_epoch = row["epoch"]
            self._save("best.pt", row)
            if epoch_end:
                self.bad_epochs = 0
        elif epoch_end:
            self.bad_epochs += 1
        self.reporter.on_eval(row, better)
        return row

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated, picks best.pt and is deployed: the EMA weights with --ema, else the weights."""
        return self.ema.module if self.ema is not None else self.model

    def _payload(self, row: dict[str, Any]) -> dict[str, Any]:
        payload = {"spec": self.setup.spec.to_dict(), "command": self.setup.command, "options": self._options(),
                   "model": self.eval_model.state_dict(), "step": self.global_step, "metrics": row}
        if self.ema is not None:  # "model" holds the EMA weights (spec.weights == "ema"); the raw ones beside
            payload["raw_model"] = self.model.state_dict()
            payload["ema_updates"] = int(self.ema.averaged.n_averaged)
        return payload

    def _save(self, name: str, row: dict[str, Any]) -> None:
        if self.dist.is_main:
            save_checkpoint(self.run_dir / name, self._payload(row))
        self.wrote_checkpoint = True

    def _save_last(self, epochs_done: int) -> None:
        if not self.dist.is_main:
            return
        payload = self._payload({})
        payload.update({
            "epoch": epochs_done,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "trainer": {"best_value": self.best_value, "best_epoch": self.best_epoch,
                        "bad_epochs": self.bad_epochs, "elapsed": self.elapsed},
        })
        save_checkpoint(self.run_dir / "last.pt", payload)
        self.wrote_checkpoint = True

    def _restore(self, ckpt: dict[str, Any]) -> None:
        """Load last.pt's state; every field is checked first, so a broken file is one line naming the field."""
        where = self.run_dir / "last.pt"

        def bad(field: str, why: str) -> CheckpointError:
            return CheckpointError(f"{where}: field {field} {why}; the run cannot be resumed")

        for key in ("model", "optimizer", "scheduler", "rng", "trainer", "epoch", "step"):
            if key not in ckpt:
                raise bad(key, "is missing")
        epoch, step = ckpt["epoch"], ckpt["step"]
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= self.tcfg.epochs:
            raise bad("epoch", f"{epoch!r} must be an integer in 0..{self.tcfg.epochs} (the run's --epochs)")
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= (epoch + 1) * self.steps_per_epoch:
            raise bad("step", f"{step!r} does not fit epoch {epoch} of {self.steps_per_epoch} steps")
        rng, state = ckpt["rng"], ckpt["trainer"]
        if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor) \
                or rng["torch"].dtype != torch.uint8:
            raise bad("rng", "must hold the torch RNG state (a uint8 tensor)")
        if not isinstance(state, dict) or not {"best_value", "best_epoch", "bad_epochs", "elapsed"} <= set(state):
            raise bad("trainer", "must hold best_value, best_epoch, bad_epochs and elapsed")
        for key in ("best_value", "best_epoch", "bad_epochs", "elapsed"):
            value = state[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise bad(f"trainer.{key}", f"{value!r} must be a number")
        if self.ema is not None and ("raw_model" not in ckpt or not isinstance(ckpt.get("ema_updates"), int)):
            raise bad("raw_model", "is missing (the run was trained without --ema)")
        try:
            if self.ema is not None:
                self.model.load_state_dict(ckpt["raw_model"])
                self.ema.load_state_dict({"model": ckpt["model"], "n_averaged": ckpt["ema_updates"]})
            else:
                self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            torch.set_rng_state(rng["torch"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(f"{where} does not match this run ({first_line(e, 200)})") from None
        self.global_step = step
        self.best_value = state["best_value"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
        self.elapsed = float(state["elapsed"])

    def _finish(self, stopped_early: bool) -> dict[str, Any]:
        in_sync = self.dist.in_sync(self.model)
        best = load_checkpoint(self.run_dir / "best.pt") if self.dist.is_main else {"model": None, "metrics": None}
        if self.dist.is_main:
            self.model.load_state_dict(best["model"])
        self.dist.broadcast_state(self.model)
        test = self.dist.evaluate(self.model, self.setup.data.split("test"), self.pipeline, amp=self.tcfg.amp)
        last_row = self.dist.broadcast_object(best["metrics"])
        result = {
            "run_dir": str(self.run_dir),
            "arch": self.setup.spec.arch,
            "data": self.setup.data.name,
            "monitor": self.tcfg.monitor,
            "best_epoch": _whole(self.best_epoch),  # 2, not 2.0 (1.5 with --eval-every)
            "epochs_run": _whole(round(self.global_step / self.steps_per_epoch, 4)),
            "stopped_early": stopped_early,
            "stopped_by_time": self.out_of_time,
            "weights": "ema" if self.ema is not None else "raw",
            "val_loss": last_row["val_loss"], "val_acc": last_row["val_acc"],
            "train_loss": last_row["train_loss"], "train_acc": last_row["train_acc"],
            "test_loss": test["loss"], "test_acc": test["acc"], "test_n": test["n"],
            "params": sum(p.numel() for p in self.model.parameters()),
            "seconds": round(self.elapsed, 3),
        }
        if self.dist.enabled:
            result["distributed"] = {"world_size": self.dist.world_size, "backend": self.dist.backend,
                                     "ranks_in_sync": in_sync}
        if self.dist.is_main:
            write_json(self.run_dir / "summary.json", result)
        self.dist.barrier()
        self.reporter.on_end(result)
        return result


def loss_fn(out: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against class indices or soft targets (mixup/cutmix), with optional class weights.

    Soft targets with weights: mean over the batch of -sum_c w_c t_c log p_c (torch's rule for
    probability targets); hard targets with weights: torch's weighted mean (divided by the sum of the
    weights of the batch's labels)."""
    return F.cross_entropy(out.float(), target, weight=weight, label_smoothing=label_smoothing)


def config_replace(cfg: RunConfig, **groups: dict[str, Any]) -> RunConfig:
    """Return cfg with some options of some groups changed: ``config_replace(cfg, train={"epochs": 2})``."""
    changes = {g: dataclasses.replace(getattr(cfg, g), **v) for g, v in groups.items()}
    return dataclasses.replace(cfg, **changes)
