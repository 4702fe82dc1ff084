"""Checkpoints: tensors and JSON-able values only, written atomically, read with ``weights_only=True``."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnntool.errors import CheckpointError, ConfigError, ModelError, first_line
from cnntool.fileio import atomic_path
from cnntool.spec import ModelSpec

FORMAT = "cnntool-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    with atomic_path(path, fsync=True) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        match = re.search(r"GLOBAL ([\w.]+)", str(e))
        if match:
            raise CheckpointError(f"refusing to load {path}: it needs arbitrary unpickling "
                                  f"(it references {match.group(1)})") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (not a torch.save file)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = first_line(e, 160)
        raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a cnntool checkpoint (holds a {type(obj).__name__})")
    return obj


CHECKPOINT_NAMES = ("best", "last")  # RUN/best.pt, RUN/last.pt


def resolve_checkpoint(target: str | Path, which: str = "best") -> Path:
    """A run directory (its ``which``.pt, else best.pt, else last.pt) or a checkpoint file."""
    if which not in CHECKPOINT_NAMES:
        raise ConfigError(f"--which {which!r} must be one of {', '.join(CHECKPOINT_NAMES)}")
    p = Path(target)
    if p.is_dir():
        for name in (f"{which}.pt", "best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: run directory has no best.pt or last.pt")
    if p.is_file():
        return p
    raise CheckpointError(f"{p}: no such run directory or checkpoint")


def spec_of(ckpt: dict[str, Any], path: Path | str = "checkpoint") -> ModelSpec:
    version = ckpt.get("format_version", FORMAT_VERSION)
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} was written by a newer cnntool "
                              f"(this one reads format {FORMAT_VERSION}); upgrade cnntool")
    if ckpt.get("format") != FORMAT or "spec" not in ckpt:
        raise CheckpointError(f"{path}: not a cnntool checkpoint (no model spec); "
                              f"a plain state_dict can be used with `cnntool finetune --weights`")
    if not isinstance(ckpt["spec"], dict):
        raise CheckpointError(f"{path}: model spec is a {type(ckpt['spec']).__name__}, not a mapping")
    try:
        return ModelSpec.from_dict(ckpt["spec"])
    except (CheckpointError, ModelError, ConfigError) as e:
        raise _named(e, path) from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model spec ({first_line(e, 200)})") from None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _named(e: Exception, path: Path | str) -> Exception:
    """The same error with the checkpoint's path in front (once)."""
    msg = str(e)
    return e if msg.startswith(f"{path}:") else type(e)(f"{path}: {msg}")


def build_from_spec(spec: ModelSpec) -> nn.Module:
    """The spec's model with fresh weights; its memory is estimated first (a spec may come from a hostile file)."""
    from cnntool.models import check_memory, create_model

    args = (spec.arch, spec.num_classes, spec.in_channels, spec.input_size)
    check_memory(*args, **spec.model_kwargs)
    return create_model(*args[:3], input_size=spec.input_size, **spec.model_kwargs)


def shape_mismatches(model: nn.Module, state: dict[str, Any]) -> list[str]:
    """``key: checkpoint [..] vs model [..]`` for each tensor whose shape differs from the model's."""
    own = model.state_dict()
    return [f"{key}: checkpoint {list(value.shape)} vs model {list(own[key].shape)}"
            for key, value in state.items()
            if key in own and hasattr(value, "shape") and tuple(value.shape) != tuple(own[key].shape)]


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path | str) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: weights are a {type(state).__name__}, not a state_dict")
    bad = shape_mismatches(model, state)
    if bad:
        more = f"; {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(f"{path}: weights do not fit the model ({'; '.join(bad[:3])}{more})")
    result = model.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:5])}")
    if result.unexpected_keys:
        problems.append(f"unexpected {', '.join(result.unexpected_keys[:5])}")
    if problems:
        raise CheckpointError(f"{path}: weights do not fit the model ({'; '.join(problems)})")


def load_model(target: str | Path, which: str = "best", device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """Rebuild a model from a run directory or checkpoint alone; returns (model in eval mode, spec, checkpoint)."""
    path = resolve_checkpoint(target, which)
    ckpt = load_checkpoint(path)
    spec = spec_of(ckpt, path)
    try:
        model = build_from_spec(spec)
    except (CheckpointError, ModelError, ConfigError) as e:
        # A bad value inside a file is a problem with the file (exit 1), never a mistyped flag (exit 2).
        raise CheckpointError(f"{path}: model spec ({spec.arch}, model_kwargs {_short(spec.model_kwargs)}) "
                              f"cannot be built: {e}") from None
    if "model" not in ckpt:
        raise CheckpointError(f"{path}: checkpoint has no 'model' weights")
    try:
        load_state(model, ckpt["model"], path)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model ({first_line(e, 200)})") from None
    return model.to(device).eval(), spec, ckpt
