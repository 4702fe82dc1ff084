"""Where pretrained weights come from, and how they are put into the model being fine-tuned.

``--weights`` is one of

* ``imagenet`` (or a weights-enum name such as ``IMAGENET1K_V2``): torchvision's weights for a ``tv:``
  model, read from the torch hub cache (``$TORCH_HOME/hub/checkpoints/<file>``) and downloaded there when
  online. Offline (or with ``CNNTOOL_OFFLINE=1``) and no cached file: one line naming the file.
* ``imagenet`` for a ``timm:`` model: timm's default pretrained weights (its ``pretrained_cfg``), read from
  the Hugging Face hub cache (``model.safetensors`` of the cfg's ``hf_hub_id``); with no cached file, one
  line naming the repository and file to fetch and where they go. Its input size, mean/std, crop_pct and
  interpolation go into the ModelSpec.
* a cnntool run directory or checkpoint (``cnntool train`` / ``cnntool finetune``): its spec names the
  architecture and options, so ``--model`` is not needed.
* a torchvision-format ``state_dict`` file (``torch.save(model.state_dict(), ...)``), with ``--model``.
* ``none``: random initialisation (a from-scratch baseline with the same head and schedule).

Every file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnntool.errors import CheckpointError, ConfigError, ModelError, first_line
from cnntool.spec import INTERPOLATION_DEFAULT
from cnntool.models.timm import TIMM_PREFIX
from cnntool.models.tv import TV_PREFIX
from cnntool.models.heads import adapt_conv_weight
from cnntool.spec import ModelSpec

OFFLINE_ENV = "CNNTOOL_OFFLINE"
DEFAULT_MODEL = "tv:resnet18"


@dataclass
class Preprocessing:
    """Input size and normalisation that belong with the weights."""

    input_size: list[int]
    crop_pct: float
    mean: list[float] | None  # None: use the new data's own statistics
    std: list[float] | None
    interpolation: str = INTERPOLATION_DEFAULT
    source: str = ""  # where these values come from, for the start-up line


@dataclass
class Source:
    kind: str  # imagenet | run | state_dict | none
    label: str  # as the user wrote it (for messages)
    arch: str  # the base architecture (never "finetuned")
    base_kwargs: dict[str, Any] = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None
    preprocessing: Preprocessing | None = None
    spec: ModelSpec | None = None
    path: str | None = None  # resolved file, for config.json


def is_keyword(weights: str) -> bool:
    w = weights.strip().lower()
    return w in ("imagenet", "none", "default") or (weights.isupper() and not Path(weights).exists())


def resolve_source(weights: str, model: str | None) -> Source:
    """Read the weights named by ``--weights`` (checks everything before a run directory exists)."""
    w = weights.strip()
    if w.lower() == "none":
        arch = model or DEFAULT_MODEL
        return Source("none", w, *_unwrap(arch, {}))
    if is_keyword(w):
        return _imagenet(w, model or DEFAULT_MODEL)
    path = Path(w).expanduser()
    if not path.exists():
        raise CheckpointError(f"--weights {w}: no such run directory or file "
                              f"(use imagenet, none, a cnntool run/checkpoint or a state_dict .pt file)")
    from cnntool.training.checkpoint import FORMAT, load_checkpoint, resolve_checkpoint, spec_of

    file = resolve_checkpoint(path)
    obj = load_checkpoint(file)
    if obj.get("format") == FORMAT:
        spec = spec_of(obj, file)
        arch, kwargs = _unwrap(spec.arch, spec.model_kwargs)
        if model and model != arch:
            raise ConfigError(f"--model {model} does not match --weights {w}, which holds a {arch} "
                              f"(leave out --model)")
        state = obj.get("model")
        if not isinstance(state, dict):
            raise CheckpointError(f"{file}: checkpoint has no model weights")
        pre = Preprocessing(list(spec.input_size), spec.crop_pct, None, None, spec.interpolation,
                            f"input size of {file.parent.name if file.parent != Path('.') else file}")
        return Source("run", w, arch, kwargs, state, pre, spec, str(file.resolve()))
    state = _plain_state_dict(obj, file)
    arch = model or DEFAULT_MODEL
    arch, kwargs = _unwrap(arch, {})
    pre = _tv_default_preprocessing(arch)
    return Source("state_dict", w, arch, kwargs, state, pre, None, str(file.resolve()))


def _unwrap(arch: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The base architecture and its own options (without a previous fine-tuning's head options)."""
    from cnntool.models import get_model_info

    if arch == "finetuned":
        return _unwrap(kwargs.get("base", "simplecnn"), dict(kwargs.get("base_kwargs") or {}))
    get_model_info(arch)  # unknown names fail here, with the list of names
    return arch, {k: v for k, v in kwargs.items() if k not in ("head", "head_dropout")}


def _plain_state_dict(obj: dict[str, Any], file: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{file}: holds no tensors (expected a state_dict or a cnntool checkpoint)")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


# ---------------------------------------------------------------------------- torchvision weights


def _weights_enum(arch: str, which: str):
    import torchvision.models as tvm

    if not arch.startswith(TV_PREFIX):
        raise ConfigError(f"--weights {which} needs a torchvision model (--model tv:NAME); {arch} has no "
                          f"ImageNet weights (use a cnntool run or a state_dict file)")
    name = arch[len(TV_PREFIX):]
    try:
        enum = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        raise ModelError(f"torchvision model {name!r} has no pretrained weights") from None
    key = "DEFAULT" if which.lower() in ("imagenet", "default") else which
    if key not in enum.__members__:
        raise ConfigError(f"--weights {which}: {name} weights are {', '.join(enum.__members__)} (or imagenet)")
    return enum[key]


def hub_file(weights) -> Path:
    """Where torch keeps the downloaded file of a torchvision weights enum."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _imagenet(which: str, arch: str) -> Source:
    arch, kwargs = _unwrap(arch, {})
    if arch.startswith(TIMM_PREFIX):
        return _timm_imagenet(which, arch, kwargs)
    weights = _weights_enum(arch, which)
    file = hub_file(weights)
    if not file.is_file():
        _download(weights.url, file, which)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = first_line(e, 160)
        raise CheckpointError(f"{file}: not a readable weights file ({first}); delete it to download again") \
            from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: not a state_dict")
    return Source("imagenet", which, arch, kwargs, _plain_state_dict(state, file), _preprocessing(weights),
                  None, str(file))


def timm_preprocessing(cfg: dict[str, Any]) -> Preprocessing:
    """A timm pretrained_cfg -> input size, crop_pct, mean/std, interpolation."""
    size = [int(v) for v in (cfg.get("input_size") or (3, 224, 224))[-2:]]
    interp = str(cfg.get("interpolation") or INTERPOLATION_DEFAULT)
    return Preprocessing(size, float(cfg.get("crop_pct") or 1.0), [float(v) for v in cfg["mean"]],
                         [float(v) for v in cfg["std"]], interp if interp in ("bilinear", "bicubic", "nearest")
                         else "bilinear", f"timm pretrained_cfg {cfg.get('architecture', '')}.{cfg.get('tag', '')}")


def _timm_imagenet(which: str, arch: str, kwargs: dict[str, Any]) -> Source:
    """timm's weights from the Hugging Face cache (safetensors: no pickle at all)."""
    from cnntool.models.timm import pretrained_cfg

    name = arch[len(TIMM_PREFIX):]
    if which.lower() not in ("imagenet", "default"):
        raise ConfigError(f"--weights {which}: timm models take --weights imagenet (timm's default pretrained tag)")
    cfg = pretrained_cfg(name)
    repo = cfg.get("hf_hub_id")
    if not repo:
        raise ConfigError(f"--weights imagenet: timm:{name} has no Hugging Face weights in timm's pretrained_cfg")
    file = _hf_cached(repo, "model.safetensors")
    if file is None:
        home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
        raise CheckpointError(f"--weights imagenet: timm:{name} weights are not cached; fetch model.safetensors "
                              f"of https://huggingface.co/{repo} (e.g. `huggingface-cli download {repo} "
                              f"model.safetensors`) into the hub cache under {home}/hub")
    from safetensors.torch import load_file

    try:
        state = load_file(str(file))
    except Exception as e:  # noqa: BLE001 - any decoding failure means an unusable file
        raise CheckpointError(f"{file}: not a readable safetensors file ({first_line(e, 160)})") from None
    return Source("imagenet", which, arch, kwargs, state, timm_preprocessing(cfg), None, str(file))


def _hf_cached(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo, filename)
    if isinstance(found, str) and Path(found).is_file():
        return Path(found)
    if os.environ.get(OFFLINE_ENV, "") in ("", "0"):
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo, filename))
        except Exception:  # noqa: BLE001 - offline, or the hub refused: the caller names what to fetch
            return None
    return None


def _download(url: str, file: Path, which: str) -> None:
    hint = (f"--weights {which}: no cached weights file {file} and no network; download {url} elsewhere and "
            f"place it there (or point TORCH_HOME at a folder holding hub/checkpoints/{file.name})")
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise CheckpointError(hint)
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(file), progress=False)
    except Exception:  # noqa: BLE001 - any network failure means the same thing to the user
        Path(str(file) + ".partial").unlink(missing_ok=True)
        raise CheckpointError(hint) from None


def _preprocessing(weights) -> Preprocessing:
    t = weights.transforms()
    crop = int(t.crop_size[0])
    resize = int(t.resize_size[0]) if getattr(t, "resize_size", None) else crop
    interp = getattr(t.interpolation, "value", str(t.interpolation)).lower()
    return Preprocessing([crop, crop], round(crop / resize, 6), [float(v) for v in t.mean],
                         [float(v) for v in t.std], interp if interp in ("bilinear", "bicubic", "nearest")
                         else "bilinear", f"{weights} transforms")


def _tv_default_preprocessing(arch: str) -> Preprocessing | None:
    """A plain state_dict for a tv: model: assume the preprocessing of its default (ImageNet) weights."""
    if not arch.startswith(TV_PREFIX):
        return None
    try:
        return _preprocessing(_weights_enum(arch, "imagenet"))
    except (ConfigError, ModelError):
        return None


# ---------------------------------------------------------------------------- loading into the model


def transfer(model: nn.Module, state: dict[str, torch.Tensor], head: str, label: str) -> dict[str, Any]:
    """Load every backbone tensor of ``state`` into ``model`` (the head stays fresh).

    A first conv with a different number of input channels is adapted (filters summed for 1 channel,
    cycled otherwise). Missing, unexpected or mis-shaped keys are an error naming them.
    """
    target = model.state_dict()
    prefix = head + "."
    src = {k: v for k, v in state.items() if not (k == head or k.startswith(prefix))}
    dropped_head = sorted(set(state) - set(src))
    adapted = []
    first = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    key = f"{first}.weight" if first is not None else None
    if key in src and key in target and src[key].ndim == 4 and src[key].shape[1] != target[key].shape[1]:
        src[key] = adapt_conv_weight(src[key], target[key].shape[1])
        adapted.append(key)
    own = [k for k in target if not (k == head or k.startswith(prefix))]
    missing = [k for k in own if k not in src and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in src if k not in target]
    shapes = [f"{k} {tuple(src[k].shape)} vs {tuple(target[k].shape)}" for k in src
              if k in target and src[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
                parts.append(f"{what} {len(keys)}: {', '.join(keys[:4])}{more}")
        raise CheckpointError(f"--weights {label} does not fit the model ({'; '.join(parts)})")
    merged = dict(target)
    for k, v in src.items():
        merged[k] = v.to(dtype=target[k].dtype)
    model.load_state_dict(merged, strict=True)
    return {"loaded": len(src), "adapted": adapted, "head_dropped": dropped_head,
            "head_fresh": [k for k in target if k == head or k.startswith(prefix)]}


def channel_stats(values: list[float], in_channels: int) -> list[float]:
    """Weights' mean/std adapted to the data's channels (averaged for 1 channel, cycled otherwise)."""
    if len(values) == in_channels:
        return list(values)
    if in_channels == 1:
        return [sum(values) / len(values)]
    return [values[i % len(values)] for i in range(in_channels)]
