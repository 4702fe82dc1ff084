"""prepare_finetune(): the Setup of a fine-tuning run, trained by the same Trainer as `cnntool train`.

The run directory has the same contract as a train run (config.json, spec.json, metrics.csv, best.pt,
last.pt): the spec rebuilds the exact fine-tuned model through ``create_model(spec.arch, ...,
**spec.model_kwargs)`` — ``tv:NAME`` with ``head``/``head_dropout`` options, the base cnntool model
itself when its head is a plain Linear, else the registered ``finetuned`` wrapper.

Input size and normalisation:

* ImageNet weights (and plain torchvision state_dicts): the weights' own transforms — crop size as
  input size, crop_pct = crop/resize (224/256), ImageNet mean/std.
* a cnntool run: the source run's input size (the scale its filters learnt), and the *new* data's
  own mean/std — the source network saw inputs standardised to zero mean and unit variance per
  channel, and standardising the new data by its own statistics reproduces that (the source's
  statistics may not even have the right number of channels).
* ``--img-size`` overrides the size (crop_pct kept); ``--norm data|weights`` overrides the choice of
  statistics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from cnntool.config import RunConfig
from cnntool.data.bundle import load_data
from cnntool.errors import ConfigError
from cnntool.finetune.strategy import STRATEGIES, Plan
from cnntool.finetune.weights import Source, channel_stats, resolve_source, transfer
from cnntool.spec import ModelSpec
from cnntool.training.engine import PREPARERS, Setup, Trainer, config_replace, resume, set_threads
from cnntool.training.events import Reporter

NORMS = ("auto", "weights", "data")


@dataclass(frozen=True)
class FinetuneOptions:
    model: str | None = None  # default: the --weights run's architecture, else tv:resnet18
    weights: str = "imagenet"
    strategy: str = "full"
    k: int = 1
    unfreeze_every: int = 1
    freeze_first: int = 0
    head: str = "linear"
    head_dropout: float = 0.0
    backbone_lr_mult: float = 1.0
    norm: str = "auto"

    def validate(self) -> None:
        from cnntool.models.tv import parse_head

        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy {self.strategy!r} must be one of {', '.join(STRATEGIES)}")
        if self.k < 1:
            raise ConfigError(f"--k {self.k} must be >= 1")
        if self.unfreeze_every < 1:
            raise ConfigError(f"--unfreeze-every {self.unfreeze_every} must be >= 1 epoch")
        if self.freeze_first < 0:
            raise ConfigError(f"--freeze-first {self.freeze_first} must be >= 0")
        parse_head(self.head)
        if not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"--head-dropout {self.head_dropout!r} must be in [0, 1)")
        if not self.backbone_lr_mult > 0:
            raise ConfigError(f"--backbone-lr-mult {self.backbone_lr_mult!r} must be > 0 "
                              f"(freeze with --strategy instead)")
        if self.norm not in NORMS:
            raise ConfigError(f"--norm {self.norm!r} must be one of {', '.join(NORMS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_flat(cls, options: dict[str, Any]) -> FinetuneOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k.replace("-", "_"): v for k, v in options.items() if k.replace("-", "_") in names})


def build_model(arch: str, base_kwargs: dict[str, Any], num_classes: int, in_channels: int,
                input_size: list[int], head: str, head_dropout: float) -> tuple[torch.nn.Module, str, dict[str, Any]]:
    """The model to fine-tune with a fresh head; returns (model, spec arch, spec model_kwargs)."""
    from cnntool.models import create_model
    from cnntool.models.registry import TV_PREFIX

    custom = head.strip().lower() != "linear" or bool(head_dropout)
    if arch.startswith(TV_PREFIX):
        kwargs = dict(base_kwargs)
        if custom:
            kwargs.update(head=head, head_dropout=head_dropout)
        spec_arch = arch
    elif custom:
        kwargs = {"base": arch, "base_kwargs": dict(base_kwargs), "head": head, "head_dropout": head_dropout}
        spec_arch = "finetuned"
    else:
        kwargs, spec_arch = dict(base_kwargs), arch
    model = create_model(spec_arch, num_classes, in_channels, input_size=input_size, **kwargs)
    return model, spec_arch, kwargs


def prepare_finetune(cfg: RunConfig, ft: FinetuneOptions, reporter: Reporter | None = None) -> Setup:
    """Weights, data, model, freezing plan and spec; every check happens here, before a run directory exists."""
    from cnntool.models import check_input_size, get_model_info
    from cnntool.models.tv import head_name

    reporter = reporter or Reporter()
    cfg.validate()
    ft.validate()
    source = resolve_source(ft.weights, ft.model)
    info = get_model_info(source.arch)
    pre = source.preprocessing
    size, crop_pct, interp = None, 1.0, "bilinear"
    if pre is not None:
        size, crop_pct, interp = list(pre.input_size), pre.crop_pct, pre.interpolation
    if cfg.data.img_size:
        size = [cfg.data.img_size, cfg.data.img_size]
    data = load_data(cfg.data, info.min_size, info.default_size, progress=reporter.on_data, input_size=size,
                     crop_pct=crop_pct, interpolation=interp)
    norm_from = "data"
    use_weights_norm = ft.norm == "weights" or (ft.norm == "auto" and pre is not None and pre.mean is not None)
    if use_weights_norm:
        mean, std = _weights_norm(source)
        if mean is None:
            raise ConfigError(f"--norm weights: --weights {ft.weights} carries no normalisation statistics")
        data.mean, data.std = channel_stats(mean, data.in_channels), channel_stats(std, data.in_channels)
        norm_from = "weights"

    torch.manual_seed(cfg.train.seed)
    model, spec_arch, kwargs = build_model(source.arch, source.base_kwargs, data.num_classes, data.in_channels,
                                           data.input_size, ft.head, ft.head_dropout)
    head = head_name(model)
    report = transfer(model, source.state, head, ft.weights) if source.state is not None else None
    check_input_size(model, source.arch, data.in_channels, data.input_size)
    plan = Plan(model, head, ft.strategy, ft.k, ft.unfreeze_every, ft.freeze_first)
    plan.apply(0)
    spec = ModelSpec(arch=spec_arch, num_classes=data.num_classes, class_names=data.class_names,
                     in_channels=data.in_channels, input_size=data.input_size, mean=data.mean, std=data.std,
                     model_kwargs=kwargs, crop_pct=crop_pct, interpolation=interp)
    cfg = config_replace(cfg, model={"model": source.arch})
    extra = {**ft.to_dict(), "model": source.arch, "weights_kind": source.kind,
             "weights": source.path if source.kind in ("run", "state_dict") else ft.weights}
    info_out: dict[str, Any] = {
        "blocks_table": _header(ft, source, report, norm_from, plan),
        "blocks": plan.counts(),
        "weights": {"kind": source.kind, "path": source.path, "loaded": report and report["loaded"],
                    "adapted": report and report["adapted"], "norm_from": norm_from},
    }
    setup = Setup(cfg, model, data, spec, command="finetune",
                  param_groups=plan.param_groups(cfg.train.lr, ft.backbone_lr_mult),
                  epoch_hook=plan.apply, train_mode=plan.train_mode, extra_options=extra, info=info_out)
    setup.plan = plan  # type: ignore[attr-defined] - for library callers and tests
    return setup


def _header(ft: FinetuneOptions, source: Source, report: dict[str, Any] | None, norm_from: str, plan: Plan):
    """The start-up lines shown above the epoch rows: where the weights came from, then the blocks table."""
    from rich.console import Group
    from rich.text import Text

    where = source.path if source.kind != "none" else "random initialisation"
    line = f"  weights {source.kind}: {where}"
    if report:
        line += f" · {report['loaded']} tensors loaded, head {plan.blocks[-1].name} new"
        if report["adapted"]:
            line += f", first conv adapted ({', '.join(report['adapted'])})"
    line += f" · normalisation from the {norm_from}"
    extra = []
    if ft.strategy == "gradual":
        extra.append(f"one more block every {ft.unfreeze_every} epoch(s)")
    if ft.freeze_first:
        extra.append(f"first {ft.freeze_first} block(s) frozen")
    if ft.backbone_lr_mult != 1.0:
        extra.append(f"backbone lr × {ft.backbone_lr_mult:g}")
    title = f"blocks · strategy {ft.strategy}" + (f" ({'; '.join(extra)})" if extra else "")
    return Group(Text(line, overflow="fold"), plan.table(title))


def _weights_norm(source: Source) -> tuple[list[float] | None, list[float] | None]:
    pre = source.preprocessing
    if pre is not None and pre.mean is not None:
        return pre.mean, pre.std
    if source.spec is not None:
        return list(source.spec.mean), list(source.spec.std)
    return None, None


def _prepare_from_options(options: dict[str, Any], reporter: Reporter) -> Setup:
    return prepare_finetune(RunConfig.from_flat(options), FinetuneOptions.from_flat(options), reporter)


PREPARERS["finetune"] = _prepare_from_options


def finetune(cfg: RunConfig, ft: FinetuneOptions | None = None, reporter: Reporter | None = None) -> dict[str, Any]:
    """Fine-tune as `cnntool finetune` does and return the final metrics (plus ``run_dir``)."""
    if cfg.resume:
        return resume(cfg.resume, reporter)
    set_threads(cfg.train.threads)
    setup = prepare_finetune(cfg, ft or FinetuneOptions(), reporter)
    plan: Plan = setup.plan  # type: ignore[attr-defined]
    start = plan.trainable()
    result = Trainer(setup, reporter).run()
    result.update(strategy=plan.strategy, trainable_start=start, trainable_params=plan.trainable())
    return result
