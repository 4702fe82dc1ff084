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

from typing import Any

import torch

from cnntool.config import FinetuneOptions, RunConfig
from cnntool.data.bundle import load_data
from cnntool.errors import ConfigError
from cnntool.finetune.strategy import Plan
from cnntool.finetune.weights import Source, channel_stats, resolve_source, transfer
from cnntool.spec import CROP_PCT_DEFAULT, INTERPOLATION_DEFAULT, ModelSpec
from cnntool.training.engine import Setup, config_replace
from cnntool.training.events import Reporter


def build_model(arch: str, base_kwargs: dict[str, Any], num_classes: int, in_channels: int,
                input_size: list[int], head: str, head_dropout: float,
                batch_size: int = 1) -> tuple[torch.nn.Module, str, dict[str, Any]]:
    """The model to fine-tune with a fresh head; returns (model, spec arch, spec model_kwargs)."""
    from cnntool.models import check_memory, create_model
    from cnntool.models.tv import TV_PREFIX

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
    check_memory(spec_arch, num_classes, in_channels, input_size, batch_size, training=True, **kwargs)
    model = create_model(spec_arch, num_classes, in_channels, input_size=input_size, **kwargs)
    return model, spec_arch, kwargs


def prepare_finetune(cfg: RunConfig, ft: FinetuneOptions, reporter: Reporter | None = None) -> Setup:
    """Weights, data, model, freezing plan and spec; every check happens here, before a run directory exists."""
    from cnntool.models import check_input_size, get_model_info
    from cnntool.models.heads import head_name

    reporter = reporter or Reporter()
    cfg.validate()
    ft.validate()
    source = resolve_source(ft.weights, ft.model)
    info = get_model_info(source.arch)
    pre = source.preprocessing
    size, crop_pct, interp = None, CROP_PCT_DEFAULT, INTERPOLATION_DEFAULT
    if pre is not None:
        size, crop_pct, interp = list(pre.input_size), pre.crop_pct, pre.interpolation
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
                                           data.input_size, ft.head, ft.head_dropout, cfg.train.batch_size)
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
        "finetune_header": _header(ft, source, report, norm_from, plan),
        "blocks": plan.counts(),
        "weights": {"kind": source.kind, "path": source.path, "loaded": report and report["loaded"],
                    "adapted": report and report["adapted"], "norm_from": norm_from},
    }
    setup = Setup(cfg, model, data, spec, command="finetune",
                  param_groups=plan.param_groups(cfg.train.lr, ft.backbone_lr_mult),
                  epoch_hook=plan.apply, train_mode=plan.train_mode, extra_options=extra, info=info_out)
    setup.plan = plan  # type: ignore[attr-defined] - for library callers and tests
    return setup


def _header(ft: FinetuneOptions, source: Source, report: dict[str, Any] | None, norm_from: str,
            plan: Plan) -> dict[str, Any]:
    """What the start-up lines above the epoch rows say: where the weights came from, and the blocks
    table's title (the rows are ``info["blocks"]``)."""
    where = source.path if source.kind != "none" else "random initialisation"
    line = f"weights {source.kind}: {where}"
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
    return {"line": line, "title": title, "gradual": ft.strategy == "gradual"}


def _weights_norm(source: Source) -> tuple[list[float] | None, list[float] | None]:
    pre = source.preprocessing
    if pre is not None and pre.mean is not None:
        return pre.mean, pre.std
    if source.spec is not None:
        return list(source.spec.mean), list(source.spec.std)
    return None, None
