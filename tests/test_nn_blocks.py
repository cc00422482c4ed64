"""The blocks of chapter 9 against PyTorch autograd in float64, and their ValueError contract.

MaxPool2d (overlapping windows and ties included), LeakyReLU, ConvTranspose2d (every stride,
padding and output_padding, the 2x2 stride-2 patch form too), and the containers Concat and
Residual, whose backward must *add* the two paths at the fork.
"""
import math
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchnn import (Concat, Conv2d, ConvTranspose2d, LeakyReLU, MaxPool2d, ReLU, Residual,
                       Sequential)
from scratchnn.book.gradcheck import check_module_numerically, max_error

from helpers import LARGEST_ERRORS

TOL = 1e-10

pytestmark = pytest.mark.usefixtures("no_autograd")


def record(error):
    LARGEST_ERRORS["float64"] = max(LARGEST_ERRORS["float64"], error)
    return error


def autograd(function, x, grad_out, *parameters):
    """Output and gradients (input first, then ``parameters``) of ``function`` under autograd."""
    with torch.enable_grad():
        leaves = [tensor.clone().requires_grad_(True) for tensor in (x, *parameters)]
        out = function(*leaves)
        out.backward(grad_out)
    return out.detach(), [leaf.grad for leaf in leaves]


# --------------------------------------------------------------------------------------------
# MaxPool2d
# --------------------------------------------------------------------------------------------

def random_pool_config(rng):
    kernel = (rng.randint(1, 4), rng.randint(1, 4))
    if rng.random() < 0.4:    # non-overlapping windows: the patch form
        stride, padding = kernel, (0, 0)
    else:
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        padding = (rng.randint(0, kernel[0] // 2), rng.randint(0, kernel[1] // 2))
    size = (rng.randint(kernel[0], 9), rng.randint(kernel[1], 9))
    return dict(kernel=kernel, stride=stride, padding=padding, size=size,
                batch=rng.randint(1, 3), channels=rng.randint(1, 4), ties=rng.random() < 0.4)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_maxpool_matches_autograd(seed):
    config = random_pool_config(random.Random(seed))
    pool = MaxPool2d(config["kernel"], config["stride"], config["padding"])
    generator = torch.Generator().manual_seed(seed % 1000)
    x = torch.randn(config["batch"], config["channels"], *config["size"], generator=generator,
                    dtype=torch.float64)
    if config["ties"]:
        x = x.round()          # many equal values: the gradient goes to the first maximum
    out = pool.forward(x)
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grad_in = pool.backward(grad_out)
    reference, (reference_grad,) = autograd(
        lambda t: F.max_pool2d(t, config["kernel"], config["stride"], config["padding"]),
        x, grad_out)
    assert record(max_error(out, reference)) == 0
    assert record(max_error(grad_in, reference_grad)) <= TOL, config


def test_maxpool_overlapping_windows_add_their_gradients():
    """3x3 windows, stride 1: the centre of a 3x3 input is the maximum of every window."""
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    x[0, 0, 1, 1] = 5
    pool = MaxPool2d(2, stride=1)
    pool.forward(x)
    grad_in = pool.backward(torch.ones(1, 1, 2, 2, dtype=torch.float64))
    assert grad_in[0, 0, 1, 1] == 4 and grad_in.sum() == 4


def test_maxpool_stride_defaults_to_the_kernel():
    assert MaxPool2d(3).stride == (3, 3)
    assert MaxPool2d(2).forward(torch.randn(2, 3, 8, 6)).shape == (2, 3, 4, 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_size=2, padding=2), r"^MaxPool2d: padding should be at most half"),
    (dict(kernel_size=0), r"^MaxPool2d: expected kernel_size to be an int >= 1"),
    (dict(kernel_size=2, stride=0), r"^MaxPool2d: expected stride to be an int >= 1"),
    (dict(kernel_size=True), r"^MaxPool2d: expected kernel_size"),
])
def test_maxpool_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MaxPool2d(**kwargs)


def test_maxpool_bad_inputs():
    with pytest.raises(ValueError, match=r"^MaxPool2d: expected a 4-D input"):
        MaxPool2d(2).forward(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"^MaxPool2d: input of spatial size \(2, 5\)"):
        MaxPool2d(3).forward(torch.randn(1, 1, 2, 5))
    with pytest.raises(ValueError, match=r"^MaxPool2d: expected a floating-point tensor"):
        MaxPool2d(2).forward(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="before forward"):
        MaxPool2d(2).backward(torch.ones(1, 1, 2, 2))


# --------------------------------------------------------------------------------------------
# LeakyReLU
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("slope", [0.01, 0.1, 0.0, 1.0, -0.5, 2.5])
def test_leaky_relu_matches_autograd(slope):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64)
    x[0, 0, :2] = 0            # the kink: torch's derivative there is the slope
    block = LeakyReLU(slope)
    out = block.forward(x)
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grad_in = block.backward(grad_out)
    reference, (reference_grad,) = autograd(lambda t: F.leaky_relu(t, slope), x, grad_out)
    assert record(max_error(out, reference)) == 0
    assert record(max_error(grad_in, reference_grad)) == 0


def test_leaky_relu_default_is_torchs():
    assert LeakyReLU().negative_slope == torch.nn.LeakyReLU().negative_slope == 0.01


@pytest.mark.parametrize("slope", ["0.1", None, True, float("nan")])
def test_leaky_relu_bad_slope(slope):
    with pytest.raises(ValueError, match=r"^LeakyReLU: expected negative_slope to be a number"):
        LeakyReLU(slope)


def test_leaky_relu_bad_gradient():
    block = LeakyReLU()
    block.forward(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"^LeakyReLU.backward: expected a gradient of shape"):
        block.backward(torch.randn(3, 2))


# --------------------------------------------------------------------------------------------
# ConvTranspose2d
# --------------------------------------------------------------------------------------------

def random_transposed_config(rng):
    kernel = (rng.randint(1, 4), rng.randint(1, 4))
    if rng.random() < 0.3:    # kernel = stride, no padding: the patch form
        stride, padding, output_padding = kernel, (0, 0), (0, 0)
    else:
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        padding = (rng.randint(0, 2), rng.randint(0, 2))
        output_padding = (rng.randint(0, stride[0] - 1), rng.randint(0, stride[1] - 1))
    return dict(in_channels=rng.randint(1, 4), out_channels=rng.randint(1, 4), kernel=kernel,
                stride=stride, padding=padding, output_padding=output_padding,
                size=(rng.randint(1, 6), rng.randint(1, 6)), batch=rng.randint(1, 3),
                bias=rng.random() < 0.7)


def output_is_empty(config):
    return any((size - 1) * s - 2 * p + k + extra < 1 for size, s, p, k, extra in zip(
        config["size"], config["stride"], config["padding"], config["kernel"],
        config["output_padding"]))


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_conv_transpose_matches_autograd(seed):
    config = random_transposed_config(random.Random(seed))
    if output_is_empty(config):
        return
    torch.manual_seed(seed % 1000)
    block = ConvTranspose2d(config["in_channels"], config["out_channels"], config["kernel"],
                            config["stride"], config["padding"], config["output_padding"],
                            config["bias"]).to(dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed % 997)
    x = torch.randn(config["batch"], config["in_channels"], *config["size"], generator=generator,
                    dtype=torch.float64)
    out = block.forward(x)
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grad_in = block.backward(grad_out)
    parameters = [block.weight] + ([block.bias] if config["bias"] else [])
    reference, grads = autograd(
        lambda t, w, *b: F.conv_transpose2d(t, w, b[0] if b else None, config["stride"],
                                            config["padding"], config["output_padding"]),
        x, grad_out, *parameters)
    assert record(max_error(out, reference)) <= TOL, config
    assert record(max_error(grad_in, grads[0])) <= TOL, config
    assert record(max_error(block.weight_grad, grads[1])) <= TOL, config
    if config["bias"]:
        assert record(max_error(block.bias_grad, grads[2])) <= TOL, config


def test_conv_transpose_layout_and_initialisation_follow_torch():
    ours, theirs = ConvTranspose2d(6, 4, (3, 2)), torch.nn.ConvTranspose2d(6, 4, (3, 2))
    assert ours.weight.shape == theirs.weight.shape == (6, 4, 3, 2)
    bound = 1 / math.sqrt(4 * 3 * 2)     # fan-in of a transposed convolution: out * kh * kw
    assert ours.weight.abs().max() <= bound and ours.weight.abs().max() > 0.8 * bound
    assert ours.bias.abs().max() <= bound
    assert theirs.weight.abs().max().item() <= bound


def test_conv_transpose_gradients_accumulate():
    block = ConvTranspose2d(2, 3, 2, stride=2).to(dtype=torch.float64)
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    grad = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    block.forward(x)
    block.backward(grad)
    once = block.weight_grad.clone()
    block.forward(x)
    block.backward(grad)
    assert max_error(block.weight_grad, 2 * once) <= TOL


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=2, output_padding=2), r"^ConvTranspose2d: output_padding must be smaller"),
    (dict(padding=-1), r"^ConvTranspose2d: expected padding to be an int >= 0"),
    (dict(bias=1), r"^ConvTranspose2d: expected bias to be True or False"),
])
def test_conv_transpose_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvTranspose2d(2, 3, 3, **kwargs)


def test_conv_transpose_bad_inputs():
    block = ConvTranspose2d(2, 3, 3, padding=2)
    with pytest.raises(ValueError, match=r"^ConvTranspose2d: expected 2 input channels, got 4"):
        block.forward(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"^ConvTranspose2d: expected input of dtype"):
        block.forward(torch.randn(1, 2, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^ConvTranspose2d: input of spatial size \(1, 1\) "
                                         r"gives an empty output"):
        block.forward(torch.randn(1, 2, 1, 1))


def test_nearest_upsampling_then_3x3_conv_is_a_4x4_transposed_conv():
    """Chapter 9's identity: the kernel is the flipped 3x3 kernel convolved with a 2x2 block of
    ones (``scratchnn.reference.transposed_kernel``)."""
    from scratchnn.reference import transposed_kernel
    generator = torch.Generator().manual_seed(5)
    w = torch.randn(4, 3, 3, 3, generator=generator, dtype=torch.float64)
    x = torch.randn(2, 3, 5, 6, generator=generator, dtype=torch.float64)
    upsampled = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)
    block = ConvTranspose2d(3, 4, 4, stride=2, padding=1, bias=False).to(dtype=torch.float64)
    block.weight.copy_(transposed_kernel(w))
    assert max_error(block.forward(x), upsampled) <= TOL


# --------------------------------------------------------------------------------------------
# Concat and Residual
# --------------------------------------------------------------------------------------------

def inner_block(seed=0):
    torch.manual_seed(seed)
    return Sequential(Conv2d(3, 4, 3, padding=1), ReLU(), Conv2d(4, 2, 1)).to(dtype=torch.float64)


def reference_forward(block, x, weights):
    """The same Sequential in torch.nn.functional, with ``weights`` = [w0, b0, w2, b2]."""
    hidden = F.relu(F.conv2d(x, weights[0], weights[1], padding=1))
    return F.conv2d(hidden, weights[2], weights[3])


@pytest.mark.parametrize("container", ["concat", "residual"])
def test_containers_add_the_paths_at_the_fork(container):
    inner = inner_block()
    if container == "residual":
        inner.modules[-1] = Conv2d(4, 3, 1).to(dtype=torch.float64)
    block = Concat(inner) if container == "concat" else Residual(inner)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 6, generator=generator, dtype=torch.float64)
    out = block.forward(x)
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grad_in = block.backward(grad_out)
    weights = [parameter for parameter, _ in inner.param()]

    def function(t, *w):
        inside = reference_forward(inner, t, w)
        return torch.cat([t, inside], 1) if container == "concat" else t + inside
    reference, grads = autograd(function, x, grad_out, *weights)
    assert record(max_error(out, reference)) <= TOL
    assert record(max_error(grad_in, grads[0])) <= TOL
    for (_, gradient), expected in zip(inner.param(), grads[1:]):
        assert record(max_error(gradient, expected)) <= TOL
    # Without the direct path the input gradient would be only the inner one: it is not.
    inner_only = inner.backward(grad_out[:, 3:] if container == "concat" else grad_out)
    assert max_error(grad_in, inner_only) > 1e-3


def test_container_parameter_names_and_numerical_gradient():
    block = Concat(inner_block())
    assert [name for name, *_ in block.named_param()] == [
        "module.0.weight", "module.0.bias", "module.2.weight", "module.2.bias"]
    errors = check_module_numerically(block, torch.randn(1, 3, 4, 4, dtype=torch.float64))
    assert max(errors.values()) < 1e-6


def test_containers_refuse_bad_modules_and_shapes():
    with pytest.raises(ValueError, match=r"^Concat: expected a Module, got int"):
        Concat(3)
    with pytest.raises(ValueError, match=r"^Residual: expected a Module, got function"):
        Residual(lambda x: x)
    with pytest.raises(ValueError, match=r"^Concat: the inner module must keep N, H and W"):
        Concat(MaxPool2d(2)).forward(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"^Residual: the inner module must keep the shape"):
        Residual(Conv2d(3, 2, 1)).forward(torch.randn(1, 3, 4, 4))
    with pytest.raises(RuntimeError, match="before forward"):
        Concat(ReLU()).backward(torch.ones(1, 6, 2, 2))
