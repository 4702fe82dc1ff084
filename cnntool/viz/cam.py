"""Class activation maps: CAM (Zhou et al. 2016) and Grad-CAM (Selvaraju et al. 2017).

pytorch-grad-cam style: ``BaseCAM`` owns the model copy, the hooks, the target layer and the scaling;
each method overrides ``weights`` (one weight per feature-map channel and image):

* ``CAM``: the classifier's weights of the target class, for models that end in global average
  pooling followed by one linear layer (or by nothing, as Network in Network). The feature maps are
  the input of the last ``AdaptiveAvgPool2d(1)``; the method checks that the logits really are that
  linear function of the pooled maps and refuses otherwise.
* ``GradCAM``: the spatial mean of the gradient of the class score with respect to the feature maps,
  for any conv model; ReLU of the weighted sum.

The target layer of Grad-CAM is found automatically: the last leaf module (in forward order) whose
output is a 4-D map larger than 1×1 (``layer=`` names another). All work happens on a deep copy whose
ReLUs are made out-of-place, so the captured maps are never overwritten.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnntool.errors import ConfigError, ModelError


@dataclass
class CAMResult:
    heatmaps: torch.Tensor  # (N, H, W) in [0, 1] at the input size
    raw: torch.Tensor  # (N, h, w) before upsampling and scaling
    logits: torch.Tensor  # (N, num_classes)
    targets: torch.Tensor  # (N,) the class each map explains
    layer: str  # the feature layer used


def model_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode, with in-place activations made out-of-place."""
    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if hasattr(mod, "inplace") and isinstance(getattr(mod, "inplace"), bool):
            mod.inplace = False
    return m


def _spatial(out) -> tuple[int, int] | None:
    return tuple(out.shape[-2:]) if isinstance(out, torch.Tensor) and out.dim() == 4 else None


def find_target_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the last leaf module (forward order) whose output is a 4-D map larger than 1×1; else the last
    one with any 4-D output."""
    calls: list[tuple[str, tuple[int, int]]] = []
    handles = []
    for name, mod in model.named_modules():
        if name and not any(True for _ in mod.children()):
            def hook(m, i, o, name=name):
                s = _spatial(o)
                if s is not None:
                    calls.append((name, s))
            handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    if not calls:
        raise ModelError(f"{type(model).__name__} produces no 4-D feature maps; CAM methods need a conv model")
    big = [name for name, (h, w) in calls if h * w > 1]
    return big[-1] if big else calls[-1][0]


def _resolve(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]
        raise ConfigError(f"--layer {layer!r} is not a module of this model (e.g. {', '.join(names[-8:])})") from None


class BaseCAM:
    """Owns the model copy, the forward hook on the feature layer and the scaling; subclasses give weights."""

    needs_grad = True
    name = "base"

    def __init__(self, model: nn.Module, layer: str | None = None):
        self.model = model_copy(model)
        self.layer = layer

    # -- what a method overrides
    def weights(self, acts: torch.Tensor, grads: torch.Tensor | None, logits: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def combine(self, acts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nk,nkhw->nhw", weights, acts)

    # -- hooks and scaling
    def feature_layer(self, x: torch.Tensor) -> str:
        return self.layer if self.layer is not None else find_target_layer(self.model, x)

    def _capture(self, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        module = _resolve(self.model, layer)
        store: dict[str, torch.Tensor] = {}

        def hook(mod, inp, out):
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                raise ModelError(f"layer {layer!r} outputs {tuple(getattr(out, 'shape', ()))}, not a 4-D feature map")
            store["acts"] = out
            return out.clone()  # later in-place ops change the clone, not the captured maps

        handle = module.register_forward_hook(hook)
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if "acts" not in store:
            raise ModelError(f"layer {layer!r} is not used in the forward pass")
        return store["acts"], logits

    def scale(self, raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        up = F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        lo = up.amin(dim=(1, 2), keepdim=True)
        hi = up.amax(dim=(1, 2), keepdim=True)
        return torch.where(hi - lo > 1e-12, (up - lo) / (hi - lo).clamp(min=1e-12), torch.zeros_like(up))

    def __call__(self, x: torch.Tensor, targets: Sequence[int] | torch.Tensor | None = None) -> CAMResult:
        layer = self.feature_layer(x)
        with torch.set_grad_enabled(self.needs_grad):
            acts, logits = self._capture(x, layer)
            tgt = logits.argmax(1) if targets is None else torch.as_tensor(targets, dtype=torch.long)
            if tgt.shape != (len(x),):
                raise ConfigError(f"need one target class per image ({len(x)}), got {tuple(tgt.shape)}")
            grads = None
            if self.needs_grad:
                score = logits.gather(1, tgt[:, None]).sum()
                grads = torch.autograd.grad(score, acts)[0]
            w = self.weights(acts.detach(), grads, logits.detach(), tgt)
            raw = self.postprocess(self.combine(acts.detach(), w))
        return CAMResult(self.scale(raw, tuple(x.shape[-2:])), raw, logits.detach(), tgt, layer)

    def postprocess(self, raw: torch.Tensor) -> torch.Tensor:
        return raw


class GradCAM(BaseCAM):
    """Grad-CAM: channel weights = spatially averaged gradients of the class score; ReLU of the sum."""

    name = "gradcam"

    def weights(self, acts, grads, logits, targets):
        return grads.mean(dim=(2, 3))

    def postprocess(self, raw):
        return raw.clamp(min=0)


class CAM(BaseCAM):
    """CAM: the maps entering the final global average pooling, weighted by the classifier row of the class."""

    needs_grad = False
    name = "cam"

    def __init__(self, model: nn.Module, layer: str | None = None):
        super().__init__(model, None)
        if layer is not None:
            raise ConfigError("CAM's feature maps are fixed (the input of the global average pooling); "
                              "--layer applies to Grad-CAM")
        pools = [n for n, m in self.model.named_modules()
                 if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1))]
        if not pools:
            raise ModelError(f"{type(model).__name__} has no global average pooling (AdaptiveAvgPool2d(1)) "
                             f"module, so CAM does not apply; use Grad-CAM")
        self.pool = pools[-1]
        linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        self.fc = linears[-1] if linears else None

    def feature_layer(self, x):
        return self.pool

    def _capture(self, x, layer):
        module = _resolve(self.model, layer)
        store: dict[str, torch.Tensor] = {}

        def pre(mod, args):
            store["acts"] = args[0]

        handle = module.register_forward_pre_hook(pre)
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        return store["acts"], logits

    def classifier(self, k: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fc is not None and self.fc.in_features == k and self.fc.out_features == num_classes:
            b = self.fc.bias if self.fc.bias is not None else torch.zeros(num_classes)
            return self.fc.weight.detach(), b.detach()
        if k == num_classes:  # the pooled maps are the logits (Network in Network)
            return torch.eye(k), torch.zeros(k)
        raise ModelError(f"{type(self.model).__name__}: the {k} pooled maps do not feed one linear layer to the "
                         f"{num_classes} logits, so CAM does not apply; use Grad-CAM")

    def weights(self, acts, grads, logits, targets):
        W, b = self.classifier(acts.shape[1], logits.shape[1])
        expected = acts.mean(dim=(2, 3)) @ W.T + b
        tol = 1e-4 + 1e-3 * float(logits.abs().max())
        if not torch.allclose(expected, logits, atol=tol, rtol=1e-3):
            raise ModelError(f"{type(self.model).__name__} does not end in global average pooling followed by "
                             f"one linear layer (the logits are not a linear function of the pooled maps), so "
                             f"CAM does not apply; use Grad-CAM")
        return W[targets]


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018): positive gradients weighted per position by
    α = g² / (2 g² + Σ_ij A · g³), the closed form for an exponential score (as pytorch-grad-cam)."""

    name = "gradcampp"

    def weights(self, acts, grads, logits, targets):
        g2, g3 = grads ** 2, grads ** 3
        denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(grads != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)),
                            torch.zeros_like(grads))
        return (alpha * grads.clamp(min=0)).sum(dim=(2, 3))


class ScoreCAM(BaseCAM):
    """Score-CAM (Wang et al. 2020): no gradients; each channel, upsampled and scaled to [0, 1], masks the
    input and the softmax probability of the class on the masked input is the channel's weight."""

    needs_grad = False
    name = "scorecam"
    batch = 64  # masked images per forward pass

    def __call__(self, x, targets=None):
        self._x = x
        return super().__call__(x, targets)

    def weights(self, acts, grads, logits, targets):
        x = self._x
        up = F.interpolate(acts, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        lo = up.amin(dim=(2, 3), keepdim=True)
        hi = up.amax(dim=(2, 3), keepdim=True)
        masks = torch.where(hi - lo > 1e-12, (up - lo) / (hi - lo).clamp(min=1e-12), torch.zeros_like(up))
        n, k = acts.shape[:2]
        out = torch.zeros(n, k)
        with torch.no_grad():
            for i in range(n):
                for s in range(0, k, self.batch):
                    m = masks[i, s:s + self.batch, None]  # (b, 1, H, W)
                    probs = self.model(x[i:i + 1] * m).softmax(1)
                    out[i, s:s + len(m)] = probs[:, int(targets[i])]
        return out

    def postprocess(self, raw):
        return raw.clamp(min=0)


METHODS: dict[str, type[BaseCAM]] = {"cam": CAM, "gradcam": GradCAM, "gradcampp": GradCAMPlusPlus,
                                     "scorecam": ScoreCAM}
TITLES = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "scorecam": "Score-CAM"}


def cam_applies(model: nn.Module, x: torch.Tensor) -> bool:
    try:
        CAM(model)(x[:1])
        return True
    except ModelError:
        return False


# --------------------------------------------------------------------------- figure

CELL = (2.3, 2.6)


SHADE = 0.2  # the darkest an image pixel gets under the heat map (0: black image pixels stay black)


def blend(image, heat) -> "numpy.ndarray":  # noqa: F821 - numpy is imported inside
    """The heat map's colours (jet) shaded by the image's brightness: ``rgb = jet(heat) · (SHADE + (1 - SHADE) ·
    luminance)``. Unlike a half-transparent overlay this keeps the image's own contrast (a digit stays
    visible under a hot spot) at every heat level. Returns (H, W, 3) floats in [0, 1]."""
    import matplotlib
    import numpy as np

    from cnntool.viz._plot import to_display

    arr, _ = to_display(image)
    arr = arr.astype(np.float64) / (255.0 if arr.dtype == np.uint8 else 1.0)
    lum = arr if arr.ndim == 2 else arr[..., :3] @ np.array([0.299, 0.587, 0.114])
    heat = heat.detach().cpu().numpy() if hasattr(heat, "detach") else np.asarray(heat)
    colours = matplotlib.colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    return colours * (SHADE + (1 - SHADE) * np.clip(lum, 0, 1))[..., None]


def overlay(ax, image: torch.Tensor, heat: torch.Tensor, title: str | None = None, color: str | None = None,
            alpha: float = 0.5) -> None:
    """``alpha`` is kept for callers of the earlier half-transparent overlay; the image now shades the colours."""
    ax.imshow(blend(image, heat), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8, color=color or "black")


def cam_figsize(rows: int, cols: int) -> tuple[float, float]:
    return max(6.5, cols * CELL[0] + 0.8), rows * CELL[1] + 0.8


def plot_cam(target: str | Path, images: Sequence[str] | None = None, method: str = "auto",
             layer: str | None = None, from_split: str | None = None, n: int = 8, wrong: bool | None = None,
             out_dir: str | Path | None = None, which: str = "best", data: str | None = None) -> Path:
    """One row per image: the image with its true and predicted class, then the heat map of each method
    over it (explaining the predicted class). ``method``: auto (CAM where the model allows it, and
    Grad-CAM), cam, gradcam, or both."""
    from cnntool.runs import load_run
    from cnntool.viz._plot import WRONG_COLOR, figure, save, short, show_image
    from cnntool.viz.inputs import normalise, pick

    if method not in ("auto", "both", *METHODS):
        raise ConfigError(f"--method {method!r} must be auto, both, or one of {', '.join(METHODS)}")
    run = load_run(target, which)
    ex = pick(run, images, from_split, n, wrong, data)
    x = normalise(ex.images, run.spec)
    if method == "auto":
        names = (["cam"] if cam_applies(run.model, x) else []) + ["gradcam"]
    else:
        names = ["cam", "gradcam"] if method == "both" else [method]
    results = {m: METHODS[m](run.model, layer if m != "cam" else None)(x) for m in names}
    first = results[names[0]]
    probs = first.logits.softmax(1)
    classes = run.spec.class_names
    rows, cols = len(ex.names), 1 + len(names)
    fig = figure(*cam_figsize(rows, cols))
    titles = TITLES
    for i in range(rows):
        p = int(first.targets[i])
        y = ex.labels[i]
        wrong_i = y is not None and y != p
        truth = f"true: {short(classes[y])}" if y is not None else ex.names[i]
        ax = fig.add_subplot(rows, cols, i * cols + 1)
        show_image(ax, ex.images[i], f"{truth}\npred: {short(classes[p])} ({float(probs[i, p]):.0%})",
                   WRONG_COLOR if wrong_i else None, fontsize=8)
        for j, m in enumerate(names):
            ax = fig.add_subplot(rows, cols, i * cols + 2 + j)
            res = results[m]
            where = describe_layer(run.model, res.layer, cam=m == "cam")
            overlay(ax, ex.images[i], res.heatmaps[i],
                    f"{titles[m]} for '{short(classes[p])}'" + (f"\n({where})" if i == 0 else ""))
    import matplotlib.cm as mcm
    from matplotlib.colors import Normalize

    sm = mcm.ScalarMappable(norm=Normalize(0, 1), cmap="jet")
    fig.colorbar(sm, ax=fig.axes, fraction=0.02, pad=0.01, label="relevance (scaled per image)")
    any_wrong = any(y is not None and y != int(t) for y, t in zip(ex.labels, first.targets))
    fig.suptitle(cam_title(run.spec.arch, names, any_wrong), fontsize=11)
    return save(fig, run.plots_dir(out_dir) / cam_filename(names))


def cam_title(arch: str, methods: Sequence[str], any_wrong: bool) -> str:
    """``resnet18: Grad-CAM of the predicted class``; the red-title key only when a prediction is wrong."""
    title = f"{arch}: {' and '.join(TITLES[m] for m in methods)} of the predicted class"
    return title + ("\n(red title: wrong prediction)" if any_wrong else "")


def cam_filename(methods: Sequence[str]) -> str:
    """``cam.png``, ``gradcam.png``, ``cam-gradcam.png``: the methods the figure shows, each named once."""
    return "-".join(methods) + ".png"


def describe_layer(model: nn.Module, name: str, cam: bool = False) -> str:
    """A feature layer by its module path and type: ``layer4.1.relu (ReLU)``, ``features.30 (ReLU)``; for CAM the
    input of the global pooling."""
    try:
        kind = type(model.get_submodule(name)).__name__
    except AttributeError:
        kind = "?"
    return f"input of {name} ({kind})" if cam else f"{name} ({kind})"
