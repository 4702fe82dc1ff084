"""Option dataclasses: the one place each default is defined.

Field names equal the command-line option names (with ``_`` for ``-``), so a config file,
a sweep space and ``config.json`` all use the same keys.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cnntool.errors import ConfigError
from cnntool.spec import MAX_SIDE as MAX_IMG_SIZE  # one bound for flags and for specs read from files


# The names each choice-valued option accepts, defined once: validation, --help and tests read them here,
# and the implementing module (training/optim.py, models/layers.py, finetune/strategy.py) is keyed by them.
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "cosine", "step", "onecycle")
MONITORS = ("val_acc", "val_loss")
AMP_MODES = ("none", "bf16", "fp16")
SAMPLERS = ("none", "balanced")
TTA_MODES = ("none", "flip", "flip-crop")  # eval --tta: mean of the softmax over these views
# Automatic augmentation policies (torchvision.transforms.v2), applied per sample on uint8; --augment accepts them.
AUGMENT_POLICIES = ("trivialaugment", "randaugment", "autoaugment", "augmix")
EMA_DECAY_DEFAULT = 0.999
CONV_IMPLS = ("torch", "numba")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "gelu", "silu", "mish")
STRATEGIES = ("full", "linear", "bn", "last-k", "gradual")
NORMS = ("auto", "weights", "data")
HEADS = "linear, or mlp:W1[,W2...] (hidden widths, e.g. mlp:512,128)"
HEAD_DEFAULT = "linear"
HEAD_DROPOUT_DEFAULT = 0.0
TRACKERS = ("tensorboard", "wandb", "mlflow")  # --log names; cnntool/tracking/names.py maps each to its module
# Options that say where a run is tracked, not what it trains: comparisons and legends leave them out.
TRACKING_OPTIONS = ("log", "mlflow_uri", "log_group")

AUGMENT_PRESETS = {
    "none": {},
    "light": {"crop_pad": 2, "hflip": True},
    "standard": {"crop_pad": 4, "hflip": True, "color_jitter": 0.2, "cutout": 8},
    "strong": {"rrc": 0.35, "hflip": True, "rotate": 15.0, "color_jitter": 0.3, "cutout": 12, "blur": 0.5},
    "digits": {"crop_pad": 2, "rotate": 10.0},
    **{name: {"policy": name, "hflip": True} for name in AUGMENT_POLICIES},
}


@dataclass(frozen=True)
class DataConfig:
    data: str = "digits"
    data_dir: str | None = None
    download: bool = False
    img_size: int | None = None
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0  # fixed apart from --seed, so runs under several seeds share one test set
    workers: int = 2
    # augmentations (applied to whole training batches)
    augment: str | None = None
    crop_pad: int = 0
    hflip: bool = False
    rotate: float = 0.0
    color_jitter: float = 0.0
    rrc: float = 0.0
    cutout: int = 0
    blur: float = 0.0
    noise: float = 0.0
    random_erasing: float = 0.0

    def validate(self) -> None:
        _finite(self, "val_fraction", "test_fraction", "rotate", "color_jitter", "rrc", "blur", "noise")
        _check(0.0 < self.val_fraction < 1.0, "--val-fraction", self.val_fraction, "must be in (0, 1)")
        _check(0.0 < self.test_fraction < 1.0, "--test-fraction", self.test_fraction, "must be in (0, 1)")
        _check(self.img_size is None or 1 <= self.img_size <= MAX_IMG_SIZE, "--img-size", self.img_size,
               f"must be in 1..{MAX_IMG_SIZE}")
        _check(0 <= self.split_seed < 2**32, "--split-seed", self.split_seed, "must be in 0..2**32-1")
        _check(self.workers >= 0, "--workers", self.workers, "must be >= 0")
        _check(self.augment is None or self.augment in AUGMENT_PRESETS, "--augment", self.augment,
               f"must be one of {', '.join(AUGMENT_PRESETS)}")
        _check(0 <= self.crop_pad <= 256, "--crop-pad", self.crop_pad, "must be in 0..256 pixels")
        _check(0 <= self.rotate <= 180, "--rotate", self.rotate, "must be in 0..180 degrees")
        _check(0 <= self.color_jitter <= 1, "--color-jitter", self.color_jitter, "must be in [0, 1]")
        _check(0.0 <= self.rrc < 1.0, "--rrc", self.rrc, "is the smallest area fraction, in [0, 1)")
        _check(0 <= self.cutout <= MAX_IMG_SIZE, "--cutout", self.cutout, f"must be in 0..{MAX_IMG_SIZE} pixels")
        _check(0.0 <= self.blur <= 1.0, "--blur", self.blur, "is a probability, in [0, 1]")
        _check(0.0 <= self.noise < 1.0, "--noise", self.noise, "is a probability, in [0, 1)")
        _finite(self, "random_erasing")
        _check(0.0 <= self.random_erasing <= 1.0, "--random-erasing", self.random_erasing,
               "is a probability, in [0, 1]")

    def augmentations(self) -> dict[str, Any]:
        """The resolved augmentation options: the preset, overridden by explicit flags."""
        ops = dict(AUGMENT_PRESETS.get(self.augment or "none", {}))
        defaults = DataConfig()
        for key in ("crop_pad", "hflip", "rotate", "color_jitter", "rrc", "cutout", "blur", "noise", "random_erasing"):
            value = getattr(self, key)
            if value != getattr(defaults, key):
                ops[key] = value
        return {k: v for k, v in ops.items() if v}


@dataclass(frozen=True)
class ModelConfig:
    model: str = "simplecnn"
    # None means "not given": the builder's own default applies (alexnet's dropout 0.5, resnet18's BatchNorm).
    bn: bool | None = None
    dropout: float | None = None
    bias: bool | None = None
    activation: str | None = None
    filters: str | None = None
    kernels: str | None = None
    dense: int | None = None
    conv_impl: str = "torch"

    def validate(self) -> None:
        _finite(self, "dropout")
        _check(self.dropout is None or 0.0 <= self.dropout < 1.0, "--dropout", self.dropout, "must be in [0, 1)")
        _check(self.activation is None or self.activation in ACTIVATIONS, "--activation", self.activation,
               f"must be one of {', '.join(ACTIVATIONS)}")
        _check(self.dense is None or 1 <= self.dense <= 1_000_000, "--dense", self.dense, "must be in 1..1000000")
        _check(self.conv_impl in CONV_IMPLS, "--conv-impl", self.conv_impl, f"must be one of {', '.join(CONV_IMPLS)}")

    def builder_kwargs(self) -> dict[str, Any]:
        """Options handed to the model builder (everything but the name and the conv implementation)."""
        d = dataclasses.asdict(self)
        d.pop("model")
        d.pop("conv_impl")
        return d


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    scheduler: str = "onecycle"
    warmup_epochs: float = 0.0
    step_size: int = 0
    gamma: float = 0.1
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    seed: int = 0
    eval_every: int = 0
    monitor: str = "val_acc"
    patience: int = 0
    threads: int | None = None
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    # experiment tracking (cnntool.tracking): comma list of trackers, MLflow store, group (sweep study, recipe)
    log: str | None = None
    mlflow_uri: str | None = None
    log_group: str | None = None
    # the modern recipe (issue 16)
    ema: bool = False
    ema_decay: float = EMA_DECAY_DEFAULT
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    class_weights: str | None = None
    sampler: str = "none"
    accum_steps: int = 1
    time: float = 0.0

    def validate(self) -> None:
        _finite(self, "ema_decay", "mixup", "cutmix", "mix_prob", "time")
        _check(0.0 < self.ema_decay < 1.0, "--ema-decay", self.ema_decay, "must be in (0, 1)")
        _check(self.mixup >= 0, "--mixup", self.mixup, "is a Beta(alpha, alpha) parameter, must be >= 0 (0 = off)")
        _check(self.cutmix >= 0, "--cutmix", self.cutmix, "is a Beta(alpha, alpha) parameter, must be >= 0 (0 = off)")
        _check(0.0 <= self.mix_prob <= 1.0, "--mix-prob", self.mix_prob, "is a probability, in [0, 1]")
        _check(self.sampler in SAMPLERS, "--sampler", self.sampler, f"must be one of {', '.join(SAMPLERS)}")
        _check(1 <= self.accum_steps <= 4096, "--accum-steps", self.accum_steps, "must be in 1..4096")
        _check(self.time >= 0, "--time", self.time, "must be >= 0 minutes (0 = no limit)")
        _check(self.class_weights is None or bool(self.class_weights.strip()), "--class-weights",
               self.class_weights, "must be auto or a file")
        _finite(self, "lr", "weight_decay", "momentum", "warmup_epochs", "gamma", "label_smoothing", "grad_clip")
        _check(self.epochs >= 1, "--epochs", self.epochs, "must be >= 1")
        _check(self.batch_size >= 1, "--batch-size", self.batch_size, "must be >= 1")
        _check(self.optimizer in OPTIMIZERS, "--optimizer", self.optimizer, f"must be one of {', '.join(OPTIMIZERS)}")
        _check(self.lr > 0, "--lr", self.lr, "must be > 0")
        _check(self.weight_decay >= 0, "--weight-decay", self.weight_decay, "must be >= 0")
        _check(0 <= self.momentum < 1, "--momentum", self.momentum, "must be in [0, 1)")
        _check(self.scheduler in SCHEDULERS, "--scheduler", self.scheduler, f"must be one of {', '.join(SCHEDULERS)}")
        _check(0 <= self.warmup_epochs < self.epochs or self.warmup_epochs == 0, "--warmup-epochs",
               self.warmup_epochs, f"must be in [0, --epochs={self.epochs})")
        _check(self.step_size >= 0, "--step-size", self.step_size, "must be >= 0")
        _check(0 < self.gamma <= 1, "--gamma", self.gamma, "must be in (0, 1]")
        _check(0 <= self.label_smoothing < 1, "--label-smoothing", self.label_smoothing, "must be in [0, 1)")
        _check(self.grad_clip >= 0, "--grad-clip", self.grad_clip, "must be >= 0")
        _check(self.eval_every >= 0, "--eval-every", self.eval_every, "must be >= 0 steps")
        _check(self.monitor in MONITORS, "--monitor", self.monitor, f"must be one of {', '.join(MONITORS)}")
        _check(self.patience >= 0, "--patience", self.patience, "must be >= 0")
        _check(self.threads is None or 1 <= self.threads <= 1024, "--threads", self.threads, "must be in 1..1024")
        _check(0 <= self.seed < 2**32, "--seed", self.seed, "must be in 0..2**32-1")
        _check(self.amp in AMP_MODES, "--amp", self.amp, f"must be one of {', '.join(AMP_MODES)}")
        parse_log(self.log)  # known tracker names; whether each is installed is checked before a run


@dataclass(frozen=True)
class RunConfig:
    """Everything `cnntool train` needs: where the run goes plus the three option groups."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runs_root: str = "runs"
    name: str | None = None
    out: str | None = None
    resume: str | None = None

    def validate(self) -> None:
        check_run_name(self.name)
        self.data.validate()
        self.model.validate()
        self.train.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(
            data=_build(DataConfig, d.get("data", {})),
            model=_build(ModelConfig, d.get("model", {})),
            train=_build(TrainConfig, d.get("train", {})),
            **{k: d[k] for k in ("runs_root", "name", "out", "resume") if k in d},
        )

    @classmethod
    def from_flat(cls, options: dict[str, Any], **where: Any) -> RunConfig:
        """From a flat ``{option: value}`` mapping (config.json "options", a config file); unknown keys
        that belong to other commands (finetune) are ignored here."""
        names = {f.name for c in OPTION_GROUPS.values() for f in dataclasses.fields(c)}
        groups = split_flat({k: v for k, v in options.items() if k.replace("-", "_") in names})
        return cls(data=DataConfig(**groups["data"]), model=ModelConfig(**groups["model"]),
                   train=TrainConfig(**groups["train"]), **where)

    def flat(self) -> dict[str, Any]:
        """All options in one flat mapping of option name -> value (for tables and legends)."""
        out: dict[str, Any] = {}
        for group in (self.data, self.model, self.train):
            out.update(dataclasses.asdict(group))
        return out


OPTION_GROUPS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
# Fine-tuning starts from good weights: fewer epochs and a smaller peak learning rate than `train`.
FINETUNE_TRAIN_DEFAULTS = {"epochs": 10, "lr": 1e-3}


def parse_log(text: str | None) -> list[str]:
    """``"tensorboard,mlflow"`` -> ``["tensorboard", "mlflow"]``; None or "" -> []; unknown names are an error."""
    if not text:
        return []
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"--log {text!r}: unknown tracker {unknown[0]!r} (choose from {', '.join(TRACKERS)})")
    return list(dict.fromkeys(names))


def parse_head(spec: str) -> list[int]:
    """``linear`` -> [], ``mlp:512,128`` -> [512, 128] (hidden layer widths)."""
    text = (spec or "").strip().lower()
    if text == "linear":
        return []
    kind, _, rest = text.partition(":")
    if kind == "mlp":
        try:
            hidden = [int(v) for v in rest.replace(" ", "").split(",") if v]
        except ValueError:
            hidden = []
        if hidden and all(1 <= h <= MAX_HEAD_WIDTH for h in hidden):
            return hidden
    raise ConfigError(f"--head {spec!r} must be {HEADS}, widths in 1..{MAX_HEAD_WIDTH}")


MAX_HEAD_WIDTH = 65536


@dataclass(frozen=True)
class FinetuneOptions:
    model: str | None = None  # default: the --weights run's architecture, else tv:resnet18
    weights: str = "imagenet"
    strategy: str = "full"
    k: int = 1
    unfreeze_every: int = 1
    freeze_first: int = 0
    head: str = HEAD_DEFAULT
    head_dropout: float = HEAD_DROPOUT_DEFAULT
    backbone_lr_mult: float = 1.0
    norm: str = "auto"

    def validate(self) -> None:
        _finite(self, "head_dropout", "backbone_lr_mult")
        _check(self.strategy in STRATEGIES, "--strategy", self.strategy, f"must be one of {', '.join(STRATEGIES)}")
        _check(1 <= self.k <= 10_000, "--k", self.k, "must be in 1..10000")
        _check(1 <= self.unfreeze_every <= 10_000, "--unfreeze-every", self.unfreeze_every, "must be in 1..10000 epochs")
        _check(0 <= self.freeze_first <= 10_000, "--freeze-first", self.freeze_first, "must be in 0..10000")
        parse_head(self.head)
        _check(0.0 <= self.head_dropout < 1.0, "--head-dropout", self.head_dropout, "must be in [0, 1)")
        _check(self.backbone_lr_mult > 0, "--backbone-lr-mult", self.backbone_lr_mult,
               "must be > 0 (freeze with --strategy instead)")
        _check(self.norm in NORMS, "--norm", self.norm, f"must be one of {', '.join(NORMS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_flat(cls, options: dict[str, Any]) -> FinetuneOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k.replace("-", "_"): v for k, v in options.items() if k.replace("-", "_") in names})


# Which option groups each training command reads (config files and sweeps accept exactly these keys).
COMMAND_GROUPS: dict[str, tuple[type, ...]] = {
    "train": (DataConfig, ModelConfig, TrainConfig),
    "finetune": (DataConfig, FinetuneOptions, TrainConfig),
}


def split_flat(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Sort a flat ``{option: value}`` mapping into the three groups; unknown names are an error."""
    groups: dict[str, dict[str, Any]] = {k: {} for k in OPTION_GROUPS}
    names = {f.name: g for g, cls in OPTION_GROUPS.items() for f in dataclasses.fields(cls)}
    for key, value in options.items():
        norm = key.replace("-", "_")
        if norm not in names:
            raise ConfigError(f"unknown option {key!r}")
        groups[names[norm]][norm] = value
    return groups


def check_run_name(name: str | None) -> None:
    """--name is one plain folder name: no separator, not . or .., nothing a terminal would interpret."""
    if name is not None and ("/" in name or "\\" in name or name.strip() in ("", ".", "..")
                             or not name.isprintable() or len(name) > 200):
        raise ConfigError(f"--name {name!r} must be a plain folder name")


def _build(cls, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s): {', '.join(sorted(unknown))}")
    return cls(**values)


def _finite(group: Any, *names: str) -> None:
    """NaN and infinity are never meaningful option values."""
    for name in names:
        value = getattr(group, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{name.replace('_', '-')} {value!r} must be a finite number")


def _check(ok: bool, option: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{option} {value!r} {why}")
