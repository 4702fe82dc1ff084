"""cnntool.conv.Conv2d is a drop-in for nn.Conv2d; swap_convs keeps outputs and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import cnntool.conv as cc
from cnntool.errors import ModelError


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(2, 3), stride=2, padding=1, dilation=(1, 2), groups=2,
         bias=False),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding="same"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, padding_mode="reflect"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=2, padding_mode="circular"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=(1, 2), padding_mode="replicate"),
])
def test_state_dict_round_trip_and_same_outputs(kwargs):
    torch.manual_seed(0)
    ref = nn.Conv2d(**kwargs)
    mine = cc.Conv2d(**kwargs)
    assert isinstance(mine, nn.Conv2d)
    assert mine.state_dict().keys() == ref.state_dict().keys()
    assert [(n, p.shape) for n, p in mine.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, kwargs["in_channels"], 9, 10)
    torch.testing.assert_close(mine(x), ref(x), rtol=1e-5, atol=1e-5)
    back = nn.Conv2d(**kwargs)
    back.load_state_dict(mine.state_dict())  # and back again
    for k, v in ref.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def _small_net():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.ReLU(),
        nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=4), nn.ReLU(), nn.Conv2d(16, 16, 1)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def test_swap_convs_same_outputs_and_gradients():
    torch.manual_seed(0)
    ref = _small_net()
    model = copy.deepcopy(ref)
    ref_params = [p for p in model.parameters()]
    out = cc.swap_convs(model)
    assert out is model
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(isinstance(m, cc.Conv2d) for m in convs)
    # the very same Parameter objects, so an optimizer built before the swap still works
    assert [id(p) for p in model.parameters()] == [id(p) for p in ref_params]
    assert model.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(4, 1, 8, 8)
    y = torch.randint(0, 10, (4,))
    loss_ref = nn.functional.cross_entropy(ref(x), y)
    loss = nn.functional.cross_entropy(model(x), y)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    loss_ref.backward()
    loss.backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_swap_convs_trains_like_torch_for_a_few_steps():
    torch.manual_seed(1)
    ref = _small_net()
    model = cc.swap_convs(copy.deepcopy(ref))
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(16, 1, 8, 8)
    y = torch.randint(0, 10, (16,))
    for _ in range(3):
        for net, o in ((ref, opt_ref), (model, opt)):
            o.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            o.step()
        torch.testing.assert_close(nn.functional.cross_entropy(model(x), y),
                                   nn.functional.cross_entropy(ref(x), y), rtol=1e-4, atol=1e-5)


def test_swap_convs_on_a_bare_conv_and_twice():
    conv = nn.Conv2d(2, 3, 3)
    swapped = cc.swap_convs(conv)
    assert isinstance(swapped, cc.Conv2d) and swapped.weight is conv.weight
    assert cc.swap_convs(swapped) is swapped
    assert "numba" in repr(swapped)


def test_swap_convs_rejects_other_conv_subclasses():
    class MyConv(nn.Conv2d):
        pass

    with pytest.raises(ModelError, match="MyConv"):
        cc.swap_convs(nn.Sequential(MyConv(1, 1, 3)))
