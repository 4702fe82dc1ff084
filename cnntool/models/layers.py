"""Building blocks shared by the model families."""

from __future__ import annotations

from torch import nn

from cnntool.errors import ConfigError

ACTIVATIONS = {  # keyed by cnntool.config.ACTIVATIONS (a test checks they are the same names)
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "prelu": nn.PReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module (never shared between layers: hooks need one module per use)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"--activation {name!r} must be one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def conv_block(cin: int, cout: int, kernel: int | tuple[int, int], *, stride: int = 1, padding: int | str | None = None,
               bn: bool = False, bias: bool = True, act: str = "relu") -> list[nn.Module]:
    """conv [+ BN] + activation; "same"-style padding by default."""
    k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    pad = (k[0] // 2, k[1] // 2) if padding is None else padding
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(activation(act))
    return layers


def dense_block(fin: int, fout: int, *, bias: bool = True, act: str = "relu", dropout: float = 0.0,
                bn: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(fin, fout, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm1d(fout))
    layers.append(activation(act))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return layers


MAX_FILTERS = 65536
MAX_KERNEL = 63


def parse_filters(spec: str | None, n: int, default: str) -> list[int]:
    """A comma list of n ints, or a pattern: equalM, doublingM, halvingM."""
    spec = spec or default
    if "," in spec or spec.isdigit():
        values = [int(v) for v in spec.split(",") if v]
        if len(values) != n:
            raise ConfigError(f"--filters {spec!r} must list {n} values")
    else:
        for prefix, step in (("equal", lambda m, i: m), ("doubling", lambda m, i: m * 2 ** i),
                             ("halving", lambda m, i: max(1, m // 2 ** i))):
            if spec.startswith(prefix) and spec[len(prefix):].isdigit():
                m = int(spec[len(prefix):])
                values = [step(m, i) for i in range(n)]
                break
        else:
            raise ConfigError(f"--filters {spec!r} must be a comma list or equalM / doublingM / halvingM")
    if any(not 1 <= v <= MAX_FILTERS for v in values):
        raise ConfigError(f"--filters {spec!r} has a value outside 1..{MAX_FILTERS}")
    return values


def parse_kernels(spec: str | None, n: int, default: str) -> list[int]:
    """A comma list of n odd ints, or constantK, increasing (3..), decreasing (..3)."""
    spec = spec or default
    if "," in spec or spec.isdigit():
        values = [int(v) for v in spec.split(",") if v]
        if len(values) != n:
            raise ConfigError(f"--kernels {spec!r} must list {n} values")
    elif spec.startswith("constant") and spec[8:].isdigit():
        values = [int(spec[8:])] * n
    elif spec == "increasing":
        values = [3 + 2 * (i // 2) for i in range(n)]
    elif spec == "decreasing":
        values = [3 + 2 * ((n - 1 - i) // 2) for i in range(n)]
    else:
        raise ConfigError(f"--kernels {spec!r} must be a comma list or constantK / increasing / decreasing")
    if any(not 1 <= v <= MAX_KERNEL for v in values):
        raise ConfigError(f"--kernels {spec!r} has a value outside 1..{MAX_KERNEL}")
    return values
