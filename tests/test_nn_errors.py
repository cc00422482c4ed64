"""Bad input raises a ValueError naming the module, what it expected and what it got.

Never a bare RuntimeError from deep inside torch. Each regex checks the module's name and both
values. The property-based tests at the end throw many bad arguments and inputs at every block.
"""
import math
import operator
import re

import numpy
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scratchnn import (MSE, SGD, Adam, Conv2d, NearestUpsampling, ReLU, Sequential, Sigmoid,
                       Upsampling)

from helpers import small_network

pytestmark = pytest.mark.usefixtures("no_autograd")


def escaped(value):
    """``repr(value)`` as a regex that matches it: (3, 3) -> \\(3,\\ 3\\)."""
    return re.escape(repr(value))


# --------------------------------------------------------------------------------------------
# Forward: dimensions, channels, sizes, dtypes
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module, name", [
    (Conv2d(3, 2, 3), "Conv2d"),
    (NearestUpsampling(2), "NearestUpsampling"),
    (Upsampling(3, 2, 3), "Upsampling"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_wrong_number_of_dimensions(module, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected a 4-D input.*"
                                         rf"got 3-D input of shape \(3, 8, 8\)"):
        module.forward(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=rf"^{name}: expected a 4-D input.*got 5-D"):
        module.forward(torch.randn(1, 3, 8, 8, 1))


def test_wrong_channel_count_conv2d():
    with pytest.raises(ValueError, match=r"^Conv2d: expected 3 input channels, "
                                         r"got 2\b.*\(1, 2, 8, 8\)"):
        Conv2d(3, 2, 3).forward(torch.randn(1, 2, 8, 8))


def test_wrong_channel_count_upsampling():
    with pytest.raises(ValueError, match=r"^Upsampling: expected 4 input channels, got 3\b"):
        Upsampling(4, 2, 3).forward(torch.randn(1, 3, 8, 8))


def test_wrong_channel_count_inside_sequential():
    model = Sequential(Conv2d(3, 5, 1), ReLU(), Conv2d(4, 1, 1))
    with pytest.raises(ValueError, match=r"^Conv2d: expected 4 input channels, got 5\b"):
        model.forward(torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize("module, size, actual, extent", [
    (Conv2d(1, 1, 3), (2, 2), r"\(2, 2\)", 3),
    (Conv2d(1, 1, (2, 5)), (4, 4), r"\(4, 4\)", 5),
    (Conv2d(1, 1, 3, dilation=3), (6, 9), r"\(6, 9\)", 7),
    (Conv2d(1, 1, 5, padding=1), (2, 9), r"\(2, 9\)", 5),
], ids=["3x3 on 2x2", "2x5 on 4x4", "dilated", "padded"])
def test_input_smaller_than_the_kernel(module, size, actual, extent):
    with pytest.raises(ValueError, match=rf"^Conv2d: input of spatial size {actual}"
                                         rf".*smaller than.*extent {extent}"):
        module.forward(torch.randn(1, 1, *size))


def test_input_exactly_the_kernel_size_is_fine():
    assert Conv2d(1, 1, 3, padding=1).forward(torch.randn(1, 1, 1, 1)).shape == (1, 1, 1, 1)
    assert Conv2d(1, 1, 3).forward(torch.randn(1, 1, 3, 3)).shape == (1, 1, 1, 1)


@pytest.mark.parametrize("module", [Conv2d(3, 2, 1, padding=1), NearestUpsampling(2),
                                    Upsampling(3, 2, 3, padding=1), ReLU(), Sigmoid()],
                         ids=["Conv2d", "NearestUpsampling", "Upsampling", "ReLU", "Sigmoid"])
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (1, 3, 0, 4), (2, 3, 4, 0)], ids=str)
def test_empty_input(module, shape):
    name = type(module).__name__
    with pytest.raises(ValueError, match=rf"^{name}: expected a non-empty tensor, "
                                         rf"got shape {escaped(shape)}$"):
        module.forward(torch.zeros(shape))


def test_mse_shape_mismatch():
    with pytest.raises(ValueError, match=r"^MSE: expected .*same shape, "
                                         r"got \(2, 3\) and \(3, 2\)"):
        MSE().forward(torch.randn(2, 3), torch.randn(3, 2))
    with pytest.raises(ValueError, match=r"^MSE: .*got \(1, 3, 4, 4\) and \(1, 3, 4\)"):
        MSE().forward(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4))   # no silent broadcasting


def test_mse_dtype_mismatch():
    with pytest.raises(ValueError, match=r"^MSE: expected prediction and target of the same dtype "
                                         r"and device, got torch.float32 on cpu and "
                                         r"torch.float64 on cpu$"):
        MSE().forward(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
@pytest.mark.parametrize("make, inputs, name", [
    (lambda: Conv2d(3, 2, 3), 1, "Conv2d"),
    (lambda: Upsampling(3, 2, 3), 1, "Upsampling"),
    (lambda: NearestUpsampling(2), 1, "NearestUpsampling"),
    (ReLU, 1, "ReLU"),
    (Sigmoid, 1, "Sigmoid"),
    (MSE, 2, "MSE"),
], ids=["Conv2d", "Upsampling", "NearestUpsampling", "ReLU", "Sigmoid", "MSE"])
def test_non_floating_dtype(make, inputs, name, dtype):
    x = torch.zeros(1, 3, 8, 8, dtype=dtype)
    pattern = rf"^{name}: expected a floating-point tensor, got dtype {dtype}"
    with pytest.raises(ValueError, match=pattern):
        make().forward(*[x] * inputs)
    if inputs == 2:   # either argument of MSE
        with pytest.raises(ValueError, match=pattern):
            make().forward(torch.zeros(1, 3, 8, 8), x)


@pytest.mark.parametrize("module", [Conv2d(3, 2, 3), ReLU(), MSE()], ids=["Conv2d", "ReLU", "MSE"])
def test_not_a_tensor(module):
    name = type(module).__name__
    with pytest.raises(ValueError, match=rf"^{name}: expected a torch.Tensor, got list"):
        module.forward(*[[[1.0]]] * (2 if name == "MSE" else 1))


@pytest.mark.parametrize("module", [Conv2d(3, 2, 3), Upsampling(3, 2, 3),
                                    Upsampling(3, 2, 3, padding=1)],
                         ids=["Conv2d", "Upsampling", "Upsampling-2x-3x3"])
def test_dtype_mismatch_between_input_and_weights(module):
    pattern = r"^(Conv2d|Upsampling): expected input of dtype torch.float{}.*got torch.float{}"
    with pytest.raises(ValueError, match=pattern.format(32, 64)):
        module.forward(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    module.to(dtype=torch.float64)
    with pytest.raises(ValueError, match=pattern.format(64, 32)):
        module.forward(torch.randn(1, 3, 8, 8))


# --------------------------------------------------------------------------------------------
# Constructors: hyper-parameters
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("what, kwargs, got", [
    ("kernel_size", dict(kernel_size=0), "0"),
    ("kernel_size", dict(kernel_size=(3, -1)), r"\(3, -1\)"),
    ("kernel_size", dict(kernel_size=(3, 3, 3)), r"\(3, 3, 3\)"),
    ("stride", dict(kernel_size=3, stride=0), "0"),
    ("stride", dict(kernel_size=3, stride=(1, -2)), r"\(1, -2\)"),
    ("dilation", dict(kernel_size=3, dilation=0), "0"),
    ("in_channels", dict(kernel_size=3, in_channels=0), "0"),
    ("out_channels", dict(kernel_size=3, out_channels=-4), "-4"),
])
def test_conv2d_non_positive_hyper_parameters(what, kwargs, got):
    arguments = dict(in_channels=3, out_channels=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=rf"^Conv2d: expected {what} to be an int >= 1"
                                         rf".*got {got}$"):
        Conv2d(**arguments)


@pytest.mark.parametrize("padding, got", [(-1, "-1"), ((0, -2), r"\(0, -2\)")])
def test_conv2d_negative_padding(padding, got):
    with pytest.raises(ValueError, match=rf"^Conv2d: expected padding to be an int >= 0"
                                         rf".*got {got}$"):
        Conv2d(3, 2, 3, padding=padding)


def test_conv2d_zero_padding_is_fine():
    assert Conv2d(3, 2, 3, padding=0).padding == (0, 0)


@pytest.mark.parametrize("scale, got", [(0, "0"), (-2, "-2"), ((2, 0), r"\(2, 0\)")])
def test_non_positive_scale(scale, got):
    with pytest.raises(ValueError, match=rf"^NearestUpsampling: expected scale_factor to be an "
                                         rf"int >= 1.*got {got}$"):
        NearestUpsampling(scale)
    with pytest.raises(ValueError, match=rf"^Upsampling: NearestUpsampling: expected scale_factor"
                                         rf".*got {got}$"):
        Upsampling(3, 2, 3, scale_factor=scale)


@pytest.mark.parametrize("make", [lambda: NearestUpsampling(2.0), lambda: Conv2d(3, 2, 3.0),
                                  lambda: Conv2d(3, 2, 3, stride=1.5),
                                  lambda: Conv2d(3, 2, 3, padding=None)],
                         ids=["scale 2.0", "kernel 3.0", "stride 1.5", "padding None"])
def test_non_integer_hyper_parameters(make):
    with pytest.raises(ValueError, match=r"(Conv2d|NearestUpsampling): expected .* an int"):
        make()


@pytest.mark.parametrize("kwargs, what, got", [
    (dict(kernel_size=True), "kernel_size", "True"),
    (dict(kernel_size=(3, False)), "kernel_size", r"\(3, False\)"),
    (dict(stride=False), "stride", "False"),
    (dict(padding=True), "padding", "True"),
    (dict(dilation=(True, 1)), "dilation", r"\(True, 1\)"),
    (dict(in_channels=True), "in_channels", "True"),
    (dict(out_channels=False), "out_channels", "False"),
], ids=lambda value: str(value) if isinstance(value, dict) else "")
def test_conv2d_refuses_bools_where_ints_are_meant(kwargs, what, got):
    """Python counts True as the int 1, but ``kernel_size=True`` is a mistake."""
    arguments = dict(in_channels=3, out_channels=2, kernel_size=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=rf"^Conv2d: expected {what} to be an int >= \d.*"
                                         rf"got {got}$"):
        Conv2d(**arguments)


def test_nearest_upsampling_refuses_bools():
    with pytest.raises(ValueError, match=r"^NearestUpsampling: expected scale_factor .*got True$"):
        NearestUpsampling(True)
    with pytest.raises(ValueError, match=r"^Upsampling: NearestUpsampling: .*got \(2, True\)$"):
        Upsampling(3, 2, 3, scale_factor=(2, True))


@pytest.mark.parametrize("what, value", [("in_channels", (3, 3)), ("out_channels", [2, 2]),
                                         ("in_channels", (3,))])
def test_conv2d_refuses_a_pair_of_channels(what, value):
    arguments = dict(in_channels=3, out_channels=2, kernel_size=3)
    arguments[what] = value
    with pytest.raises(ValueError, match=rf"^Conv2d: expected {what} to be an int >= 1, "
                                         rf"got {escaped(value)}$"):
        Conv2d(**arguments)


@pytest.mark.parametrize("bias", [0, 1, "yes", None, 1.0])
def test_bias_must_be_true_or_false(bias):
    with pytest.raises(ValueError, match=rf"^Conv2d: expected bias to be True or False, "
                                         rf"got {escaped(bias)}$"):
        Conv2d(3, 2, 3, bias=bias)
    with pytest.raises(ValueError, match=r"^Upsampling: Conv2d: expected bias to be True "
                                         r"or False"):
        Upsampling(3, 2, 3, bias=bias)


def test_bias_true_and_false_are_fine():
    assert Conv2d(3, 2, 3, bias=True).bias is not None
    assert Conv2d(3, 2, 3, bias=False).bias is None


def test_numpy_integers_are_ints():
    """numpy integers work wherever an int is meant, and are stored as plain Python ints."""
    three, two, one = numpy.int64(3), numpy.int32(2), numpy.uint8(1)
    conv = Conv2d(three, two, three, stride=(one, two), padding=one, dilation=numpy.int16(1))
    assert (conv.in_channels, conv.out_channels) == (3, 2)
    assert (conv.kernel_size, conv.stride, conv.padding, conv.dilation) == ((3, 3), (1, 2),
                                                                             (1, 1), (1, 1))
    values = [conv.in_channels, conv.out_channels, *conv.kernel_size, *conv.stride,
              *conv.padding, *conv.dilation]
    assert all(type(value) is int for value in values)
    assert conv.weight.shape == (2, 3, 3, 3)
    assert NearestUpsampling(numpy.int64(2)).scale_factor == (2, 2)
    block = Upsampling(three, two, three, scale_factor=two, padding=one)
    assert block.forward(torch.randn(1, 3, 4, 4)).shape == (1, 2, 8, 8)
    assert block.saved.form == "fused"


def test_invalid_backward_form():
    with pytest.raises(ValueError, match=r"^Conv2d: expected backward_form 'fold' or "
                                         r"'convolution', got 'col2im'"):
        Conv2d(3, 2, 3, backward_form="col2im")


@pytest.mark.parametrize("make, form", [
    (lambda: Conv2d(1, 1, 2, stride=2), "patches"),           # the landing page's stride change
    (lambda: Conv2d(16, 4, 3, padding=1), "shifted rows"),
], ids=["patches", "shifted-rows"])
def test_backward_by_fold_after_a_fast_forward_says_why(make, form):
    """Chapter 4 calls the two backward methods directly; after a fast forward (chapter 8) the
    unfold columns do not exist, and the error says so instead of an AttributeError/IndexError."""
    conv = make()
    out = conv.forward(torch.randn(1, conv.in_channels, 4, 4))
    with pytest.raises(RuntimeError, match=rf"^Conv2d.backward_by_fold needs the unfold "
                                           rf"columns, .*fast form '{form}'.*conv.fast = False"):
        conv.backward_by_fold(torch.ones(out.shape))
    # The convolution form needs only the input, which every form keeps: it still works.
    by_convolution = conv.backward_by_convolution(torch.ones(out.shape))
    conv.fast = False
    conv.forward(conv.saved.input)
    torch.testing.assert_close(by_convolution, conv.backward_by_fold(torch.ones(out.shape)))


@pytest.mark.parametrize("method", ["backward_by_fold", "backward_by_convolution"])
def test_backward_methods_before_forward(method):
    with pytest.raises(RuntimeError, match=r"^Conv2d.backward called before forward"):
        getattr(Conv2d(1, 1, 2, stride=2), method)(torch.ones(1, 1, 2, 2))


# --------------------------------------------------------------------------------------------
# Sequential: one module object used twice
# --------------------------------------------------------------------------------------------

def test_sequential_refuses_a_module_used_twice():
    """The second forward would overwrite what the first stored for backward."""
    relu = ReLU()
    with pytest.raises(ValueError, match=r"^Sequential: the same ReLU object is used at positions "
                                         r"1 and 3; make a new one for each use$"):
        Sequential(Conv2d(3, 4, 1), relu, Conv2d(4, 4, 1), relu)


def test_sequential_refuses_a_module_used_twice_at_any_depth():
    conv = Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match=r"^Sequential: the same Conv2d object is used at "
                                         r"positions 0 and 2"):
        Sequential(conv, ReLU(), Sequential(Sigmoid(), conv))
    inner = Sequential(Conv2d(3, 3, 1), ReLU())
    with pytest.raises(ValueError, match=r"^Sequential: the same Sequential object is used at "
                                         r"positions 0 and 1"):
        Sequential(inner, inner)
    with pytest.raises(ValueError, match=r"^Sequential: the same Conv2d object is used at "
                                         r"positions 0 and 1"):
        Sequential(inner[0], inner)


def test_sequential_accepts_distinct_modules_of_the_same_kind():
    model = Sequential(Conv2d(3, 4, 1), ReLU(), Conv2d(4, 4, 1), ReLU())
    assert len(model) == 4 and model[1] is not model[3]


def test_sequential_refuses_what_is_not_a_module():
    with pytest.raises(ValueError, match=r"^Sequential: expected Module arguments, got type "
                                         r"at position 1$"):
        Sequential(ReLU(), ReLU)   # the class, not a ReLU


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------

def some_params():
    return Conv2d(2, 2, 1).param()


@pytest.mark.parametrize("optimizer", [SGD, Adam])
@pytest.mark.parametrize("lr", [-0.1, float("nan"), float("inf"), True, "0.1", None])
def test_bad_learning_rate(optimizer, lr):
    with pytest.raises(ValueError, match=rf"^{optimizer.__name__}: expected lr to be a finite "
                                         rf"number >= 0, got {escaped(lr)}$"):
        optimizer(some_params(), lr=lr)


def test_numpy_numbers_are_numbers():
    optimizer = SGD(some_params(), lr=numpy.float32(0.5), momentum=numpy.int64(0))
    assert type(optimizer.lr) is float and optimizer.lr == 0.5
    adam = Adam(some_params(), betas=(numpy.float32(0.5), numpy.float64(0.9)))
    assert adam.betas == (0.5, 0.9) and type(adam.betas[0]) is float


@pytest.mark.parametrize("kwargs, what, got", [
    (dict(momentum=-0.5), "momentum", "-0.5"),
    (dict(weight_decay=-1e-4), "weight_decay", "-0.0001"),
    (dict(momentum=True), "momentum", "True"),
    (dict(momentum=None), "momentum", "None"),
])
def test_sgd_bad_hyper_parameters(kwargs, what, got):
    with pytest.raises(ValueError, match=rf"^SGD: expected {what} to be a finite number >= 0, "
                                         rf"got {got}$"):
        SGD(some_params(), lr=0.1, **kwargs)


@pytest.mark.parametrize("betas, got", [((1.0, 0.999), r"\(1.0, 0.999\)"),
                                        ((0.9, -0.1), r"\(0.9, -0.1\)"),
                                        ((0.9, 1.5), r"\(0.9, 1.5\)"),
                                        ((0.9, "x"), r"\(0.9, 'x'\)"),
                                        (0.9, "0.9")])
def test_adam_bad_betas(betas, got):
    with pytest.raises(ValueError, match=rf"^Adam: expected betas to be two numbers in \[0, 1\), "
                                         rf"got {got}$"):
        Adam(some_params(), betas=betas)


def test_adam_betas_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"^Adam: expected betas .*got \(0.9,\)"):
        Adam(some_params(), betas=(0.9,))


@pytest.mark.parametrize("kwargs, what, got", [(dict(eps=-1e-8), "eps", "-1e-08"),
                                               (dict(weight_decay=-0.5), "weight_decay", "-0.5")])
def test_adam_bad_hyper_parameters(kwargs, what, got):
    with pytest.raises(ValueError, match=rf"^Adam: expected {what} to be a finite number >= 0, "
                                         rf"got {got}$"):
        Adam(some_params(), **kwargs)


@pytest.mark.parametrize("pairs", [
    [(torch.zeros(3), torch.zeros(4))],
    [(torch.zeros(3), torch.zeros(3, dtype=torch.float64))],
    [(torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))],
    [(torch.zeros(3),)],
    [torch.zeros(3)],
    [(torch.zeros(3), [0.0, 0.0, 0.0])],
], ids=["shape", "dtype", "integer", "one tensor", "no pair", "a list"])
def test_optimizer_rejects_mismatched_pairs(pairs):
    with pytest.raises(ValueError, match=r"^SGD: expected \(parameter, gradient\) pairs of equal "
                                         r"shape.*position 0$"):
        SGD(pairs, lr=0.1)


def test_optimizer_rejects_what_is_not_a_list_of_pairs():
    with pytest.raises(ValueError, match=r"^Adam: expected the \(parameter, gradient\) pairs of "
                                         r"module.param\(\), got Conv2d$"):
        Adam(Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match=r"^SGD: expected at least one \(parameter, gradient\) "
                                         r"pair, got none$"):
        SGD(ReLU().param(), lr=0.1)


# --------------------------------------------------------------------------------------------
# Backward: the gradient must have the shape and dtype of the last output
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, name", [
    (lambda: Conv2d(3, 2, 3), "Conv2d"),
    (lambda: Conv2d(3, 2, 3, backward_form="convolution"), "Conv2d"),
    (lambda: NearestUpsampling(2), "NearestUpsampling"),
    (ReLU, "ReLU"),
    (Sigmoid, "Sigmoid"),
    (lambda: Sequential(Conv2d(3, 2, 3), ReLU()), "ReLU"),
    (lambda: Upsampling(3, 2, 3), "Upsampling"),
    (lambda: Upsampling(3, 2, 3, padding=1), "Upsampling"),
], ids=["Conv2d-fold", "Conv2d-convolution", "NearestUpsampling", "ReLU", "Sigmoid", "Sequential",
        "Upsampling", "Upsampling-2x-3x3"])
def test_backward_with_a_wrong_shaped_gradient(make, name):
    module = make()
    out = module.forward(torch.randn(2, 3, 8, 8))
    expected = escaped(tuple(out.shape))
    wrong = torch.ones(out.shape[0], out.shape[1], out.shape[2], out.shape[3] + 1)
    got = escaped(tuple(wrong.shape))
    with pytest.raises(ValueError, match=rf"^{name}.backward: expected a gradient of shape "
                                         rf"{expected}, got {got}"):
        module.backward(wrong)
    with pytest.raises(ValueError, match=rf"^{name}.backward: expected a gradient of shape "
                                         rf"{expected}, got float"):
        module.backward(1.0)


@pytest.mark.parametrize("make, name", [
    (lambda: Conv2d(3, 2, 3), "Conv2d"),
    (lambda: Conv2d(3, 2, 3, backward_form="convolution"), "Conv2d"),
    (lambda: NearestUpsampling(2), "NearestUpsampling"),
    (lambda: Upsampling(3, 2, 3, padding=1), "Upsampling"),
    (lambda: Upsampling(3, 2, 3), "Upsampling"),
    (ReLU, "ReLU"),
    (Sigmoid, "Sigmoid"),
], ids=["Conv2d-fold", "Conv2d-convolution", "NearestUpsampling", "Upsampling-2x-3x3",
        "Upsampling", "ReLU", "Sigmoid"])
def test_backward_with_a_gradient_of_another_dtype(make, name):
    module = make().to(dtype=torch.float64)
    out = module.forward(torch.randn(1, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"^{name}.backward: expected a gradient of dtype "
                                         rf"torch.float64, got torch.float32$"):
        module.backward(torch.ones(out.shape, dtype=torch.float32))


def test_mse_backward_takes_a_number_or_a_0d_tensor():
    loss = MSE()
    prediction = torch.randn(2, 3, dtype=torch.float64)
    loss.forward(prediction, torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(loss.backward(2), 2 * loss.backward())
    torch.testing.assert_close(loss.backward(torch.tensor(2.0, dtype=torch.float64)),
                               2 * loss.backward())
    for grad, got in [("2", "'2'"), (True, "True"), (None, "None")]:
        with pytest.raises(ValueError, match=rf"^MSE.backward: expected a number or a 0-d tensor, "
                                             rf"got {got}$"):
            loss.backward(grad)
    with pytest.raises(ValueError, match=r"^MSE.backward: expected a gradient of shape \(\), "
                                         r"got \(1,\)$"):
        loss.backward(torch.ones(1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^MSE.backward: expected a gradient of dtype "
                                         r"torch.float64, got torch.float32$"):
        loss.backward(torch.tensor(1.0))


# --------------------------------------------------------------------------------------------
# load_state_dict
# --------------------------------------------------------------------------------------------

def test_load_state_dict_missing_key():
    state = small_network().state_dict()
    del state["0.bias"]
    with pytest.raises(ValueError, match=r"^Sequential.load_state_dict: missing keys "
                                         r"\['0.bias'\], unexpected keys \[\]"):
        small_network().load_state_dict(state)


def test_load_state_dict_unexpected_key():
    state = small_network().state_dict()
    state["2.bias"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"^Sequential.load_state_dict: missing keys \[\], "
                                         r"unexpected keys \['2.bias'\]"):
        small_network().load_state_dict(state)


def test_load_state_dict_wrong_shape():
    state = small_network().state_dict()
    state["0.weight"] = torch.zeros(4, 3, 2, 3)
    with pytest.raises(ValueError, match=r"^Sequential.load_state_dict: '0.weight' expected shape "
                                         r"\(4, 3, 2, 2\), got \(4, 3, 2, 3\)"):
        small_network().load_state_dict(state)


def test_load_state_dict_failure_leaves_the_model_unchanged():
    model = small_network()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    state = {name: tensor + 1 for name, tensor in model.state_dict().items()}
    state["2.weight"] = torch.zeros(5)
    with pytest.raises(ValueError):
        model.load_state_dict(state)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} was changed by a load that failed"


# --------------------------------------------------------------------------------------------
# Property-based: any bad argument or input gives a ValueError, never a TypeError/RuntimeError
# --------------------------------------------------------------------------------------------

FAST = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# Anything at all, mostly wrong: for arguments, inputs and gradients alike.
NOT_TENSORS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(),
                        st.text(max_size=3), st.lists(st.integers(-1, 3), max_size=3),
                        st.tuples(st.integers(-1, 3), st.booleans()),
                        st.just(numpy.float64(2.0)), st.just(numpy.int64(-1)), st.just(object()))
TENSORS = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
                    st.lists(st.integers(0, 3), max_size=5).map(tuple),
                    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8,
                                     torch.bool]))
ANYTHING = st.one_of(NOT_TENSORS, TENSORS)


def is_int(value, minimum):
    """The framework's rule: what ``operator.index`` takes (ints, numpy's, one-element integer
    tensors), but not a bool."""
    if isinstance(value, bool):
        return False
    try:
        return operator.index(value) >= minimum
    except TypeError:
        return False


def is_pair_of_ints(value, minimum):
    if isinstance(value, (tuple, list)):
        return len(value) == 2 and all(is_int(v, minimum) for v in value)
    return is_int(value, minimum)


# What each constructor argument accepts, to skip the drawn values that happen to be good.
GOOD_ARGUMENT = {
    "in_channels": lambda value: is_int(value, 1),
    "out_channels": lambda value: is_int(value, 1),
    "kernel_size": lambda value: is_pair_of_ints(value, 1),
    "stride": lambda value: is_pair_of_ints(value, 1),
    "padding": lambda value: is_pair_of_ints(value, 0),
    "dilation": lambda value: is_pair_of_ints(value, 1),
    "scale_factor": lambda value: is_pair_of_ints(value, 1),
    "bias": lambda value: isinstance(value, bool),
    "backward_form": lambda value: value in ("fold", "convolution"),
}


@FAST
@given(what=st.sampled_from(["in_channels", "out_channels", "kernel_size", "stride", "padding",
                             "dilation", "bias", "backward_form"]),
       value=ANYTHING)
def test_property_conv2d_bad_arguments(what, value):
    assume(not GOOD_ARGUMENT[what](value))
    arguments = {"in_channels": 2, "out_channels": 2, "kernel_size": 1, what: value}
    with pytest.raises(ValueError, match=rf"^Conv2d: expected {what} "):
        Conv2d(**arguments)


@FAST
@given(what=st.sampled_from(["in_channels", "out_channels", "kernel_size", "scale_factor",
                             "stride", "padding", "dilation", "bias"]),
       value=ANYTHING)
def test_property_upsampling_bad_arguments(what, value):
    assume(not GOOD_ARGUMENT[what](value))
    arguments = {"in_channels": 2, "out_channels": 2, "kernel_size": 1, what: value}
    with pytest.raises(ValueError, match=rf"^Upsampling: .*expected {what} "):
        Upsampling(**arguments)


@FAST
@given(value=ANYTHING)
def test_property_nearest_upsampling_bad_arguments(value):
    assume(not GOOD_ARGUMENT["scale_factor"](value))
    with pytest.raises(ValueError, match=r"^NearestUpsampling: expected scale_factor "):
        NearestUpsampling(value)


def is_good_4d_input(x, channels, dtype=torch.float32, smallest=1):
    return (isinstance(x, torch.Tensor) and x.dtype == dtype and x.dim() == 4
            and x.shape[0] >= 1 and x.shape[1] == channels and min(x.shape[2:]) >= smallest)


def is_good_any_input(x):
    return isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel() > 0


# Each block, and which inputs it accepts (float32 weights; Conv2d's 2x2 kernel needs 2x2).
BLOCKS = {
    "Conv2d": (lambda: Conv2d(2, 3, 2), lambda x: is_good_4d_input(x, 2, smallest=2)),
    "Conv2d-convolution": (lambda: Conv2d(2, 3, 2, backward_form="convolution"),
                           lambda x: is_good_4d_input(x, 2, smallest=2)),
    "NearestUpsampling": (lambda: NearestUpsampling(2),
                          lambda x: is_good_any_input(x) and x.dim() == 4),
    "Upsampling": (lambda: Upsampling(2, 3, 1), lambda x: is_good_4d_input(x, 2)),
    "Upsampling-2x-3x3": (lambda: Upsampling(2, 3, 3, padding=1),
                          lambda x: is_good_4d_input(x, 2)),
    "ReLU": (ReLU, is_good_any_input),
    "Sigmoid": (Sigmoid, is_good_any_input),
    "Sequential": (lambda: Sequential(Conv2d(2, 3, 2), ReLU()),
                   lambda x: is_good_4d_input(x, 2, smallest=2)),
}


@FAST
@given(block=st.sampled_from(sorted(BLOCKS)), x=ANYTHING)
def test_property_bad_inputs(block, x):
    make, is_good = BLOCKS[block]
    assume(not is_good(x))
    module = make()
    name = "Conv2d" if block == "Sequential" else type(module).__name__
    with pytest.raises(ValueError, match=rf"^{name}: "):
        module.forward(x)


@FAST
@given(block=st.sampled_from(sorted(BLOCKS)), grad=ANYTHING)
def test_property_bad_gradients(block, grad):
    module = BLOCKS[block][0]()
    out = module.forward(torch.randn(1, 2, 3, 3))
    assume(not (isinstance(grad, torch.Tensor) and grad.shape == out.shape
                and grad.dtype == out.dtype))
    with pytest.raises(ValueError, match=r"^\w+\.backward: expected a gradient of "):
        module.backward(grad)


@FAST
@given(prediction=ANYTHING, target=ANYTHING)
def test_property_mse_bad_inputs(prediction, target):
    assume(not (is_good_any_input(prediction) and is_good_any_input(target)
                and prediction.shape == target.shape and prediction.dtype == target.dtype))
    with pytest.raises(ValueError, match=r"^MSE: expected "):
        MSE().forward(prediction, target)


@FAST
@given(grad=ANYTHING)
def test_property_mse_bad_gradients(grad):
    loss = MSE()
    loss.forward(torch.randn(2, 2), torch.randn(2, 2))
    assume(not (isinstance(grad, torch.Tensor) and grad.shape == ()
                and grad.dtype == torch.float32))
    assume(not (isinstance(grad, (int, float)) and not isinstance(grad, bool)))
    with pytest.raises(ValueError, match=r"^MSE.backward: expected "):
        loss.backward(grad)


@FAST
@given(modules=st.lists(st.one_of(ANYTHING, st.just(ReLU), st.just(torch.relu)), min_size=1,
                        max_size=3),
       position=st.integers(0, 3))
def test_property_sequential_bad_arguments(modules, position):
    """Things that are not modules, or one module object twice."""
    good = [ReLU(), Conv2d(2, 2, 1)]
    arguments = good[:position] + modules + good[position:]
    with pytest.raises(ValueError, match=r"^Sequential: expected Module arguments, got "):
        Sequential(*arguments)
    with pytest.raises(ValueError, match=r"^Sequential: the same \w+ object is used at "):
        Sequential(*good, good[min(position, 1)])


def is_good_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 <= value < math.inf)


@FAST
@given(what=st.sampled_from(["lr", "momentum", "weight_decay"]), value=ANYTHING)
def test_property_sgd_bad_hyper_parameters(what, value):
    assume(not is_good_number(value))
    arguments = {"lr": 0.1, what: value}
    with pytest.raises(ValueError, match=rf"^SGD: expected {what} to be a finite number >= 0, "):
        SGD(some_params(), **arguments)


@FAST
@given(what=st.sampled_from(["lr", "betas", "eps", "weight_decay"]), value=ANYTHING)
def test_property_adam_bad_hyper_parameters(what, value):
    if what == "betas":
        assume(not (isinstance(value, (tuple, list)) and len(value) == 2
                    and all(is_good_number(beta) and beta < 1 for beta in value)))
    else:
        assume(not is_good_number(value))
    with pytest.raises(ValueError, match=rf"^Adam: expected {what} to be "):
        Adam(some_params(), **{what: value})


def is_good_pair(entry):
    return (isinstance(entry, tuple) and len(entry) == 2
            and all(isinstance(tensor, torch.Tensor) for tensor in entry)
            and entry[0].is_floating_point() and entry[0].shape == entry[1].shape
            and entry[0].dtype == entry[1].dtype)


@FAST
@given(kind=st.sampled_from([SGD, Adam]),
       params=st.one_of(NOT_TENSORS, TENSORS, st.lists(ANYTHING, max_size=2),
                        st.lists(st.tuples(TENSORS, TENSORS), min_size=1, max_size=2)))
def test_property_optimizer_bad_pairs(kind, params):
    assume(not (isinstance(params, list) and params and all(map(is_good_pair, params))))
    with pytest.raises(ValueError, match=rf"^{kind.__name__}: expected "):
        kind(params, lr=0.1)
