"""Gradient saliency: vanilla gradients (Simonyan et al. 2014) and guided backpropagation
(Springenberg et al. 2015).

Guided backpropagation changes only the backward pass of ReLU: a gradient passes where the ReLU's
input was positive (as usual) *and* the incoming gradient is positive. It is implemented as a custom
autograd Function, ``GuidedReLU``, substituted for every ReLU call while the forward pass runs under a
``TorchFunctionMode``. Intercepting the calls rather than swapping modules means it is right for

* ``nn.ReLU(inplace=True)`` (the replacement is always out-of-place; the caller uses its return value),
* one ReLU module reused several times in a forward (each call gets its own saved input),
* functional ``F.relu`` / ``torch.relu`` / ``Tensor.relu`` (and their in-place ``_`` variants) in forward code.

Limits: a rectifier written another way (``x.clamp(min=0)``, ``torch.maximum(x, 0)``, ``x * (x > 0)``) is
a plain op to autograd and passes gradients as usual; so do other activations (GELU, SiLU, LeakyReLU,
ReLU6, ...), which guided backpropagation does not define. Code that calls ``x.relu_()`` and ignores the
result would see an unrectified tensor: no cnntool or torchvision model does this.
The model itself is never modified: the work happens on a deep copy in eval mode.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cnntool.errors import ConfigError


class GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype)


_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class GuidedReLUMode(TorchFunctionMode):
    """While active, every ReLU call computes ``GuidedReLU``; ``calls`` counts them."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS:
            self.calls += 1
            return GuidedReLU.apply(args[0])
        return func(*args, **kwargs)


def _score_grad(model: nn.Module, x: torch.Tensor, targets, guided: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
    m = copy.deepcopy(model).eval()
    x = x.detach().clone().requires_grad_(True)
    if guided:
        with GuidedReLUMode():
            logits = m(x)
    else:
        logits = m(x)
    tgt = logits.argmax(1) if targets is None else torch.as_tensor(targets, dtype=torch.long)
    if tgt.shape != (len(x),):
        raise ConfigError(f"need one target class per image ({len(x)}), got {tuple(tgt.shape)}")
    (grad,) = torch.autograd.grad(logits.gather(1, tgt[:, None]).sum(), x)
    return grad.detach(), logits.detach(), tgt


def vanilla_gradient(model: nn.Module, x: torch.Tensor, targets: Sequence[int] | torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d(class score)/d(input) for each image: (gradients like x, logits, targets; default target = predicted)."""
    return _score_grad(model, x, targets, guided=False)


def guided_backprop(model: nn.Module, x: torch.Tensor, targets: Sequence[int] | torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Guided-backpropagation gradients of the class score with respect to the input (see the module doc)."""
    return _score_grad(model, x, targets, guided=True)


SMOOTHGRAD_SAMPLES = 25  # noisy copies per image (Smilkov et al. 2017 use 50; 25 is indistinguishable here)
SMOOTHGRAD_NOISE = 0.15  # noise std as a fraction of the input's range
IG_STEPS = 32  # Riemann steps of integrated gradients from a black image


class CaptumMethod:
    """One attribution method from Captum (the reference implementation), on a deep copy in eval mode.
    ``__call__(model, x, targets)`` returns (attribution, logits, targets) like ``vanilla_gradient``."""

    name = "captum"

    def attribute(self, model: nn.Module, x: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, targets=None):
        import copy

        try:
            import captum  # noqa: F401
        except ImportError:
            from cnntool.errors import ConfigError as _CE

            raise _CE(f"--method {self.name} needs Captum: pip install 'cnntool[explain]' (or pip install captum)") \
                from None
        m = copy.deepcopy(model).eval()
        for mod in m.modules():
            if hasattr(mod, "inplace") and isinstance(getattr(mod, "inplace"), bool):
                mod.inplace = False
        with torch.no_grad():
            logits = m(x)
        tgt = logits.argmax(1) if targets is None else torch.as_tensor(targets, dtype=torch.long)
        return self.attribute(m, x.detach().clone().requires_grad_(True), tgt).detach(), logits, tgt


class SmoothGrad(CaptumMethod):
    """SmoothGrad: the gradient averaged over noisy copies of the image (Captum NoiseTunnel over Saliency)."""

    name = "smoothgrad"

    def __init__(self, samples: int = SMOOTHGRAD_SAMPLES, noise: float = SMOOTHGRAD_NOISE):
        self.samples, self.noise = samples, noise

    def attribute(self, model, x, tgt):
        from captum.attr import NoiseTunnel, Saliency

        std = float(self.noise * (x.detach().max() - x.detach().min()))
        return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=self.samples,
                                                      nt_samples_batch_size=self.samples, stdevs=std,
                                                      target=tgt, abs=False)


class IntegratedGradients(CaptumMethod):
    """Integrated gradients from a black image (zeros after normalisation: the mean image) to the image
    (Captum ``IntegratedGradients``, Riemann trapezoid over IG_STEPS)."""

    name = "integrated"

    def __init__(self, steps: int = IG_STEPS):
        self.steps = steps

    def attribute(self, model, x, tgt):
        from captum.attr import IntegratedGradients as _IG

        return _IG(model).attribute(x, baselines=torch.zeros_like(x), target=tgt, n_steps=self.steps)


def smoothgrad(model, x, targets=None):
    return SmoothGrad()(model, x, targets)


def integrated_gradients(model, x, targets=None):
    return IntegratedGradients()(model, x, targets)


METHODS = {"guided": (guided_backprop, "Guided backprop"), "gradient": (vanilla_gradient, "Gradient"),
           "smoothgrad": (smoothgrad, "SmoothGrad"), "integrated": (integrated_gradients, "Integrated gradients")}


def magnitude(grad: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W): max |gradient| over channels, scaled to [0, 1] per image."""
    m = grad.abs().amax(dim=1)
    hi = m.amax(dim=(1, 2), keepdim=True)
    return torch.where(hi > 0, m / hi.clamp(min=1e-20), torch.zeros_like(m))


def as_image(grad: torch.Tensor) -> torch.Tensor:
    """A gradient as a displayable image in [0, 1]: zero at mid-grey, ±3 std at black/white."""
    g = grad - grad.mean(dim=(1, 2, 3), keepdim=True)
    g = g / (3 * g.std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-20))
    return (g * 0.5 + 0.5).clamp(0, 1)


CELL = (2.3, 2.6)


def saliency_figsize(rows: int) -> tuple[float, float]:
    return 3 * CELL[0] + 0.8, rows * CELL[1] + 0.6


def magnitude_title(label: str, channels: int) -> str:
    """The heat map column's title: the max over channels is only worth saying for colour input."""
    return f"|{label.lower()}|" + (", max over\nchannels" if channels > 1 else "")


def plot_saliency(target: str | Path, images: Sequence[str] | None = None, method: str = "guided",
                  from_split: str | None = None, n: int = 8, wrong: bool | None = None,
                  out_dir: str | Path | None = None, which: str = "best", data: str | None = None) -> Path:
    """One row per image: the image (true and predicted class), the gradient as an image (grey = 0) and its
    magnitude (max over channels) as a heat map, for the predicted class."""
    from cnntool.runs import load_run
    from cnntool.viz._plot import WRONG_COLOR, figure, save, short, show_image
    from cnntool.viz.inputs import normalise, pick

    if method not in METHODS:
        raise ConfigError(f"--method {method!r} must be one of {', '.join(METHODS)}")
    run = load_run(target, which)
    ex = pick(run, images, from_split, n, wrong, data)
    fn, label = METHODS[method]
    grad, logits, tgt = fn(run.model, normalise(ex.images, run.spec))
    probs = logits.softmax(1)
    classes = run.spec.class_names
    rows = len(ex.names)
    fig = figure(*saliency_figsize(rows))
    img, mag = as_image(grad), magnitude(grad)
    hm = None
    for i in range(rows):
        p = int(tgt[i])
        y = ex.labels[i]
        truth = f"true: {short(classes[y])}" if y is not None else ex.names[i]
        ax = fig.add_subplot(rows, 3, i * 3 + 1)
        show_image(ax, ex.images[i], f"{truth}\npred: {short(classes[p])} ({float(probs[i, p]):.0%})",
                   WRONG_COLOR if y is not None and y != p else None, fontsize=8)
        ax = fig.add_subplot(rows, 3, i * 3 + 2)
        show_image(ax, img[i], f"{label}\n(grey = 0)" if i == 0 else None, fontsize=8)
        ax = fig.add_subplot(rows, 3, i * 3 + 3)
        hm = ax.imshow(mag[i].numpy(), cmap="hot", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.set_title(magnitude_title(label, grad.shape[1]), fontsize=8)
    fig.colorbar(hm, ax=fig.axes, fraction=0.02, pad=0.01, label="saliency (scaled per image)")
    fig.suptitle(f"{run.spec.arch}: {label.lower()} saliency of the predicted class", fontsize=11)
    return save(fig, run.plots_dir(out_dir) / f"saliency_{method}.png")
