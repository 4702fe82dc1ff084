"""Model registry: every registered model builds, runs and honours the shared options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnntool.errors import ConfigError, ModelError
from cnntool.models import check_input_size, create_model, get_model_info, list_models, resolve_kwargs
from cnntool.models.layers import parse_filters, parse_kernels


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_runs_at_its_minimum_size(name, channels):
    info = get_model_info(name)
    size = [info.min_size, info.min_size]
    model = create_model(name, 7, channels, input_size=size)
    check_input_size(model, name, channels, size)
    model.train()
    out = model(torch.randn(2, channels, *size))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", list_models())
def test_shared_options(name):
    info = get_model_info(name)
    size = [max(info.min_size, 32)] * 2
    opts = info.options
    if "bn" in opts:
        with_bn = create_model(name, 3, 3, input_size=size, bn=True)
        assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
        no_bn = create_model(name, 3, 3, input_size=size, bn=False)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in no_bn.modules())
    if "dropout" in opts:
        m = create_model(name, 3, 3, input_size=size, dropout=0.4)
        assert any(isinstance(x, nn.Dropout) and x.p == 0.4 for x in m.modules())
    if "bias" in opts:
        m = create_model(name, 3, 3, input_size=size, bias=False)
        assert all(x.bias is None for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear)))


def test_cnn5_patterns_and_closed_form_parameter_count():
    m, k, n, c = 8, 3, 20, 3
    model = create_model("cnn5", 10, c, input_size=[64, 64], filters=f"equal{m}", kernels=f"constant{k}", dense=n)
    convs = [x for x in model.modules() if isinstance(x, nn.Conv2d)]
    assert [x.out_channels for x in convs] == [m] * 5 and all(x.kernel_size == (k, k) for x in convs)
    expected = m * (c * k * k + 1) + 4 * m * (m * k * k + 1) + n * m * 2 * 2 + n + 10 * n + 10
    assert sum(p.numel() for p in model.parameters()) == expected
    assert parse_filters("doubling16", 5, "x") == [16, 32, 64, 128, 256]
    assert parse_filters("halving256", 5, "x") == [256, 128, 64, 32, 16]
    assert parse_kernels("increasing", 5, "x") == [3, 3, 5, 5, 7]
    assert parse_kernels("decreasing", 5, "x") == [7, 5, 5, 3, 3]
    assert parse_kernels("5,5,3,3,3", 5, "x") == [5, 5, 3, 3, 3]
    with pytest.raises(ConfigError, match="5 values"):
        parse_kernels("3,3", 5, "x")


@pytest.mark.parametrize("act,cls", [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("prelu", nn.PReLU),
                                     ("gelu", nn.GELU), ("silu", nn.SiLU), ("mish", nn.Mish)])
def test_activation_choice(act, cls):
    model = create_model("cnn5", 3, 1, input_size=[32, 32], activation=act)
    acts = [m for m in model.modules() if isinstance(m, cls)]
    assert len(acts) == 6 and len({id(a) for a in acts}) == 6  # one module per use, never shared


def test_too_small_input_suggests_img_size():
    with pytest.raises(ModelError, match="--img-size 32"):
        create_model("cnn5", 10, 1, input_size=[8, 8])
    model = create_model("vgg11", 10, 1, input_size=[8, 8])
    with pytest.raises(ModelError, match="--img-size"):
        check_input_size(model, "vgg11", 1, [8, 8])


def test_options_that_do_not_apply_are_errors():
    assert resolve_kwargs("simplecnn", {"bn": True, "filters": None, "dropout": 0.0}) == {"bn": True,
                                                                                          "dropout": 0.0}
    with pytest.raises(ConfigError, match="--filters does not apply to model simplecnn"):
        resolve_kwargs("simplecnn", {"filters": "equal8"})
    with pytest.raises(ConfigError, match="'resnet1000' is not a model"):  # a bad option value: exit 2
        get_model_info("resnet1000")


def test_torchvision_models_adapt_classes_and_channels():
    model = create_model("tv:resnet18", 5, 1)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 5
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 5)
    eff = create_model("tv:mobilenet_v3_small", 4, 3)
    assert eff(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert "tv:efficientnet_v2_s" in list_models(include_namespaces=True)


class _Fails(nn.Module):
    def __init__(self, error: Exception):
        super().__init__()
        self.error = error

    def forward(self, x):
        raise self.error


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                 "you tried to allocate 1099511627776 bytes."),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
])
def test_out_of_memory_does_not_suggest_a_larger_input(error):
    with pytest.raises(ModelError) as err:
        check_input_size(_Fails(error), "simplecnn", 3, [100000, 100000])
    msg = str(err.value)
    assert "out of memory" in msg and "smaller --img-size" in msg
    assert "try --img-size" not in msg and "\n" not in msg


def test_other_errors_at_a_large_size_suggest_no_size():
    with pytest.raises(ModelError) as err:
        check_input_size(_Fails(RuntimeError("something odd")), "simplecnn", 3, [512, 512])
    assert "try --img-size" not in str(err.value) and "something odd" in str(err.value)
    with pytest.raises(ModelError, match="too small, try --img-size 64"):
        check_input_size(_Fails(RuntimeError("something odd")), "simplecnn", 3, [32, 32])


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "nin"])
def test_unset_model_options_reach_the_builder_as_its_own_defaults(name):
    """train without --dropout must build the model with the builder's dropout (0.5), as summary does."""
    from torch import nn

    from cnntool.config import ModelConfig

    kwargs = resolve_kwargs(name, ModelConfig(model=name).builder_kwargs())
    assert "dropout" not in kwargs and "bias" not in kwargs and "activation" not in kwargs
    model = create_model(name, 10, 3, input_size=[32, 32], **kwargs)
    rates = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    assert rates == {get_model_info(name).options["dropout"]} == {0.5}
    given = resolve_kwargs(name, ModelConfig(model=name, dropout=0.2, bias=False).builder_kwargs())
    model = create_model(name, 10, 3, input_size=[32, 32], **given)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.2}
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_activation_names_are_the_config_names():
    from cnntool import config
    from cnntool.models import layers

    assert tuple(layers.ACTIVATIONS) == config.ACTIVATIONS
