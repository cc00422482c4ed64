"""Initialisation, dtype moves, state dicts (compatible with torch.nn), bias=False, misuse."""
import math

import pytest
import torch
from torch import nn

from scratchnn import (MSE, SGD, Adam, Conv2d, NearestUpsampling, ReLU, Sequential, Sigmoid,
                       Upsampling)
from scratchnn.reference import TorchLayers

from helpers import small_network


pytestmark = pytest.mark.usefixtures("no_autograd")


# --------------------------------------------------------------------------------------------
# Initialisation: U(-sqrt(k), sqrt(k)), k = 1 / (C kh kw), like torch.nn.Conv2d
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_channels, out_channels, kernel_size",
                         [(1, 1, 1), (3, 8, 3), (5, 2, (1, 4)), (2, 7, (3, 2))])
def test_initialisation_within_bounds(in_channels, out_channels, kernel_size):
    torch.manual_seed(0)
    conv = Conv2d(in_channels, out_channels, kernel_size)
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    bound = 1 / math.sqrt(in_channels * kh * kw)
    assert conv.weight.shape == (out_channels, in_channels, kh, kw)
    assert conv.bias.shape == (out_channels,)
    assert conv.weight.dtype == torch.get_default_dtype()
    for tensor in (conv.weight, conv.bias):
        assert tensor.abs().max() <= bound
    assert (conv.weight_grad == 0).all() and (conv.bias_grad == 0).all()


def test_initialisation_is_uniform_like_torch():
    torch.manual_seed(1)
    conv = Conv2d(64, 64, 3)
    bound = 1 / math.sqrt(64 * 9)
    weight = conv.weight.double()
    # U(-b, b): mean 0, standard deviation b / sqrt(3), a flat histogram reaching both ends.
    assert abs(weight.mean().item()) < 0.02 * bound
    assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert weight.min().item() < -0.99 * bound and weight.max().item() > 0.99 * bound
    counts = torch.histc(weight, bins=10, min=-bound, max=bound)
    expected = weight.numel() / 10
    assert ((counts - expected).abs() < 0.1 * expected).all(), counts
    # torch.nn.Conv2d draws from the same distribution.
    reference = nn.Conv2d(64, 64, 3).weight.detach().double()
    assert reference.std().item() == pytest.approx(weight.std().item(), rel=0.03)
    assert reference.abs().max().item() <= bound


def test_initialisation_follows_the_global_seed():
    torch.manual_seed(5)
    first = Conv2d(3, 4, 3)
    torch.manual_seed(5)
    second = Conv2d(3, 4, 3)
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)


# --------------------------------------------------------------------------------------------
# to(dtype=...)
# --------------------------------------------------------------------------------------------

def test_to_float64_converts_parameters_and_gradients_and_keeps_param_live():
    torch.manual_seed(2)
    model = small_network()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert model.to(dtype=torch.float64) is model
    for name, parameter, gradient in model.named_param():
        assert parameter.dtype == torch.float64 and gradient.dtype == torch.float64, name
        assert torch.equal(parameter, before[name].double()), name
    # param() hands out the module's current tensors, so an optimizer built now trains the module.
    assert model.param()[0][0] is model[0].weight and model.param()[0][1] is model[0].weight_grad
    assert model.param()[-1][0] is model[5].conv.bias
    optimizer = SGD(model.param(), lr=0.1)
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    out = model.forward(x)
    assert out.dtype == torch.float64 and out.shape == (1, 3, 8, 8)
    model.backward(torch.ones_like(out))
    weight = model[0].weight.clone()
    optimizer.step()
    assert not torch.equal(model[0].weight, weight)
    # ... and back.
    model.to(dtype=torch.float32)
    assert all(p.dtype == torch.float32 and g.dtype == torch.float32 for p, g in model.param())
    assert model.forward(x.float()).dtype == torch.float32


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.5, momentum=0.9), lambda p: Adam(p)],
                         ids=["SGD", "Adam"])
def test_optimizer_built_before_to_keeps_updating_the_network(make):
    """Module.to moves the tensors in place (torch.nn.Module.to keeps the same Parameter
    objects too), so an optimizer made before it updates the network's parameters, exactly as
    one made after it does."""
    torch.manual_seed(3)
    before, after = small_network(), small_network()
    after.load_state_dict(before.state_dict())
    early = make(before.param())
    pairs = [(id(parameter), id(gradient)) for parameter, gradient in before.param()]
    before.to(dtype=torch.float64)
    late = make(after.to(dtype=torch.float64).param())
    assert [(id(parameter), id(gradient)) for parameter, gradient in before.param()] == pairs
    assert all(p.dtype == g.dtype == torch.float64 for p, g in early.params)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    initial = {name: tensor.clone() for name, tensor in before.state_dict().items()}
    for model, optimizer in ((before, early), (after, late)):
        for _ in range(2):
            optimizer.zero_grad()
            out = model.forward(x)
            model.backward(torch.ones_like(out))
            optimizer.step()
    for name, tensor in before.state_dict().items():
        assert tensor.dtype == torch.float64 and not torch.equal(tensor, initial[name]), name
        assert torch.equal(tensor, after.state_dict()[name]), name


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.5, momentum=0.9), lambda p: Adam(p)],
                         ids=["SGD", "Adam"])
def test_optimizer_buffers_follow_a_move_after_steps(make):
    """Momentum buffers and running averages made in float32 follow the parameters to float64
    at the next step: the optimizer keeps working whenever the module is moved."""
    conv = Conv2d(2, 3, 1)
    optimizer = make(conv.param())
    for dtype in (torch.float32, torch.float64):
        conv.to(dtype=dtype)
        out = conv.forward(torch.ones(1, 2, 2, 2, dtype=dtype))
        conv.backward(torch.ones_like(out))
        weight = conv.weight.clone()
        optimizer.step()
        assert not torch.equal(conv.weight, weight)
    state = optimizer.state_dict()
    buffers = [value for value in state.values() if isinstance(value, list)]
    assert all(buffer.dtype == torch.float64 for values in buffers for buffer in values
               if isinstance(buffer, torch.Tensor))


def test_to_that_changes_nothing_keeps_the_optimizer_working():
    conv = Conv2d(1, 1, 1)
    optimizer = SGD(conv.param(), lr=0.5)
    conv.to(dtype=torch.float32)   # already float32: the same tensors stay
    conv.weight_grad.fill_(1.0)
    weight = conv.weight.clone()
    optimizer.step()
    assert torch.equal(conv.weight, weight - 0.5)


def test_to_with_no_arguments_changes_nothing():
    conv = Conv2d(1, 1, 1)
    weight = conv.weight
    conv.to()
    assert conv.weight.dtype == torch.float32 and torch.equal(conv.weight, weight)


# --------------------------------------------------------------------------------------------
# state_dict / load_state_dict
# --------------------------------------------------------------------------------------------

def test_state_dict_keys_match_torch_nn_sequential():
    ours, theirs = small_network(), small_network(TorchLayers)
    assert isinstance(theirs, nn.Sequential)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert list(ours.state_dict()) == ["0.weight", "0.bias", "2.weight", "5.conv.weight",
                                       "5.conv.bias"]
    for name, tensor in theirs.state_dict().items():
        assert ours.state_dict()[name].shape == tensor.shape, name


def test_weights_move_between_scratchnn_and_torch_nn():
    torch.manual_seed(3)
    ours, theirs = small_network(), small_network(TorchLayers)
    theirs.load_state_dict(ours.state_dict())                 # ours -> torch.nn
    x = torch.rand(2, 3, 8, 6)
    torch.testing.assert_close(ours.forward(x), theirs(x))
    fresh = small_network()
    assert not torch.equal(fresh.forward(x), theirs(x))       # other random weights
    fresh.load_state_dict(theirs.state_dict())                # torch.nn -> ours
    torch.testing.assert_close(fresh.forward(x), theirs(x))


def test_state_dict_round_trip_through_a_file(tmp_path):
    torch.manual_seed(4)
    model = small_network()
    x = torch.rand(2, 3, 5, 7)
    expected = model.forward(x)
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    torch.manual_seed(99)
    restored = small_network()
    assert not torch.equal(restored.forward(x), expected)
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(restored.forward(x), expected)
    for name, tensor in restored.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
        assert not tensor.requires_grad


def test_load_state_dict_copies_into_the_live_parameters():
    model = small_network()
    weight, gradient = model.param()[0]
    state = {name: torch.full_like(tensor, 0.5) for name, tensor in model.state_dict().items()}
    model.load_state_dict(state)
    assert model.param()[0][0] is weight and model.param()[0][1] is gradient
    assert (weight == 0.5).all()
    state["0.weight"].fill_(0.25)   # the model keeps its own copy
    assert (weight == 0.5).all()


def test_load_state_dict_converts_dtype():
    model = small_network().to(dtype=torch.float64)
    state = {name: tensor.float() for name, tensor in small_network().state_dict().items()}
    model.load_state_dict(state)
    assert all(parameter.dtype == torch.float64 for parameter, _ in model.param())


# --------------------------------------------------------------------------------------------
# bias=False
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backward_form", ["fold", "convolution"])
def test_conv2d_without_bias(backward_form):
    torch.manual_seed(6)
    conv = Conv2d(2, 3, 3, padding=1, bias=False, backward_form=backward_form)
    conv.to(dtype=torch.float64)
    assert conv.bias is None and conv.bias_grad is None
    assert len(conv.param()) == 1 and list(conv.state_dict()) == ["weight"]
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    out = conv.forward(x)
    reference = nn.functional.conv2d(x, conv.weight, None, padding=1)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    grad = conv.backward(torch.ones_like(out))
    assert grad.shape == x.shape
    conv.zero_grad()
    SGD(conv.param(), lr=0.1, momentum=0.9, weight_decay=0.1).step()
    assert "bias=False" in repr(conv)


def test_upsampling_without_bias():
    module = Upsampling(2, 3, 3, padding=1, bias=False)
    assert module.bias is None and list(module.state_dict()) == ["conv.weight"]
    out = module.forward(torch.randn(1, 2, 3, 3))
    assert out.shape == (1, 3, 6, 6)
    assert module.backward(torch.ones_like(out)).shape == (1, 2, 3, 3)


# --------------------------------------------------------------------------------------------
# Misuse: backward before forward
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: Conv2d(1, 1, 1),
                                  lambda: Conv2d(1, 1, 1, backward_form="convolution"),
                                  lambda: NearestUpsampling(2),
                                  lambda: Upsampling(1, 1, 3, padding=1),
                                  lambda: Upsampling(1, 1, 1), ReLU, Sigmoid,
                                  lambda: Sequential(Conv2d(1, 1, 1), ReLU())],
                         ids=["Conv2d-fold", "Conv2d-convolution", "NearestUpsampling",
                              "Upsampling-2x-3x3", "Upsampling", "ReLU", "Sigmoid", "Sequential"])
def test_backward_before_forward_raises(make):
    with pytest.raises(RuntimeError, match=r"backward called before forward"):
        make().backward(torch.ones(1, 1, 2, 2))


def test_mse_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match=r"^MSE.backward called before forward"):
        MSE().backward()


def test_modules_without_parameters():
    for module in (ReLU(), Sigmoid(), NearestUpsampling(2), MSE()):
        assert module.param() == [] and module.state_dict() == {}
        module.zero_grad()
        module.load_state_dict({})


def test_repr_describes_the_network():
    text = repr(small_network())
    assert text.startswith("Sequential(") and "(0): Conv2d(3, 4, kernel_size=(2, 2)" in text
    assert "NearestUpsampling(scale_factor=(2, 2))" in text and "Sigmoid()" in text
