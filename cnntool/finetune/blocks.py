"""Blocks of a network: the units that finetune freezes, unfreezes and reports.

``blocks(model)`` returns ``[(name, module), ...]`` in forward order, the classifier head last. The rules,
the same for every model:

1. Start from the model's top-level children that hold parameters.
2. A unit that holds the head *and* other parameters is split into its children, until the head stands
   alone (cnn5's ``classifier`` becomes ``classifier.1`` (dense) + ``classifier.4`` (head)).
3. While the backbone has fewer than 4 units, the largest unit that can be split is split into its
   children (EfficientNet's ``features`` becomes ``features.0`` … ``features.7``; VGG's ``features``
   becomes its convolutions), so a single wrapper never hides the stages.
4. A normalisation layer joins the unit before it (torchvision ResNet: ``conv1+bn1``; a BatchNorm'd
   simplecnn: ``0+1``, ``3+4``, …).
5. Parameters a container owns directly (ViT's class token) form a unit of their own.

Results: torchvision ResNets → conv1+bn1, layer1 … layer4, fc; EfficientNet → features.0 … features.N,
classifier; cnntool resnet18 → stem, layer1 … layer4, fc; simplecnn → each conv (+BN), the dense layer,
the output layer.
"""

from __future__ import annotations

from torch import nn

from cnntool.models.heads import head_name

MIN_BACKBONE_BLOCKS = 4
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


class OwnParams(nn.Module):
    """Parameters a container owns directly, gathered in a module (the same Parameter objects)."""

    def __init__(self, params: list[tuple[str, nn.Parameter]]):
        super().__init__()
        for name, p in params:
            self.register_parameter(name.replace(".", "_"), p)


class Group(nn.ModuleList):
    """Several sibling layers shown and frozen as one block (a conv and its BatchNorm)."""


def _has_params(m: nn.Module) -> bool:
    return next(m.parameters(), None) is not None


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _split(name: str, m: nn.Module) -> list[tuple[str, nn.Module]]:
    prefix = f"{name}." if name else ""
    out: list[tuple[str, nn.Module]] = []
    own = list(m.named_parameters(recurse=False))
    if own:
        out.append((f"{name or 'model'} (own)", OwnParams(own)))
    out += [(prefix + n, c) for n, c in m.named_children() if _has_params(c)]
    return out


def _splittable(m: nn.Module) -> bool:
    return not isinstance(m, (OwnParams, Group)) and len(_split("x", m)) >= 2


def blocks(model: nn.Module, head: str | None = None) -> list[tuple[str, nn.Module]]:
    """The model's blocks in forward order, head last (see the module docstring for the rules)."""
    head = head or head_name(model)
    head_module = model.get_submodule(head)
    head_ids = {id(p) for p in head_module.parameters()}
    units = _split("", model)

    # 2. isolate the head
    while True:
        for i, (name, m) in enumerate(units):
            holds_head = name == head or head.startswith(name + ".")
            if holds_head and any(id(p) not in head_ids for p in m.parameters()):
                units[i:i + 1] = _split(name, m)
                break
        else:
            break
    head_units = [(n, m) for n, m in units if n == head or head.startswith(n + ".")]
    backbone = [(n, m) for n, m in units if not (n == head or head.startswith(n + "."))]

    # 3. split the largest splittable unit while the backbone has too few blocks
    while len(backbone) < MIN_BACKBONE_BLOCKS:
        candidates = [(i, _n_params(m)) for i, (_, m) in enumerate(backbone) if _splittable(m)]
        if not candidates:
            break
        i = max(candidates, key=lambda t: t[1])[0]
        backbone[i:i + 1] = _split(*backbone[i])

    # 4. a normalisation layer joins the block before it
    merged: list[tuple[str, nn.Module]] = []
    for name, m in backbone:
        if merged and isinstance(m, NORM_TYPES):
            prev_name, prev = merged[-1]
            group = prev if isinstance(prev, Group) else Group([prev])
            group.append(m)
            first = prev_name.split("+")[0]
            short = name.rpartition(".")[2] if name.rpartition(".")[0] == first.rpartition(".")[0] else name
            merged[-1] = (f"{prev_name}+{short}", group)
        else:
            merged.append((name, m))
    head_block = head_units[0] if len(head_units) == 1 else ("head", Group([m for _, m in head_units]))
    return merged + [head_block]


def block_params(model: nn.Module, head: str | None = None) -> list[tuple[str, list[nn.Parameter]]]:
    """Each block's parameters; every parameter of the model lands in exactly one block."""
    out, seen = [], set()
    for name, m in blocks(model, head):
        ps = [p for p in m.parameters() if id(p) not in seen]
        seen.update(id(p) for p in ps)
        out.append((name, ps))
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:  # not reached by the rules above; kept with the first block so nothing is ever lost
        out[0] = (out[0][0], rest + out[0][1])
    return out
