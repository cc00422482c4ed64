"""Bad input raises a ValueError naming the module, what it expected and what it got.

Never a bare RuntimeError from deep inside torch. Each regex checks the module's name and both values.
"""
import pytest
import torch

from scratchnn import MSE, SGD, Adam, Conv2d, NearestUpsampling, ReLU, Sequential, Sigmoid, Upsampling


pytestmark = pytest.mark.usefixtures("no_autograd")


def run_forward(module, x):
    return module.forward(x)


# --------------------------------------------------------------------------------------------
# Forward: dimensions, channels, sizes, dtypes
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module, name", [
    (Conv2d(3, 2, 3), "Conv2d"),
    (NearestUpsampling(2), "NearestUpsampling"),
    (Upsampling(3, 2, 3), "Upsampling"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_wrong_number_of_dimensions(module, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected a 4-D input.*got 3-D input of shape \(3, 8, 8\)"):
        module.forward(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=rf"^{name}: expected a 4-D input.*got 5-D"):
        module.forward(torch.randn(1, 3, 8, 8, 1))


def test_wrong_channel_count_conv2d():
    with pytest.raises(ValueError, match=r"^Conv2d: expected 3 input channels, got 2\b.*\(1, 2, 8, 8\)"):
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
    with pytest.raises(ValueError, match=rf"^Conv2d: input of spatial size {actual}.*smaller than.*extent {extent}"):
        module.forward(torch.randn(1, 1, *size))


def test_input_exactly_the_kernel_size_is_fine():
    assert Conv2d(1, 1, 3, padding=1).forward(torch.randn(1, 1, 1, 1)).shape == (1, 1, 1, 1)
    assert Conv2d(1, 1, 3).forward(torch.randn(1, 1, 3, 3)).shape == (1, 1, 1, 1)


def test_mse_shape_mismatch():
    with pytest.raises(ValueError, match=r"^MSE: expected .*same shape, got \(2, 3\) and \(3, 2\)"):
        MSE().forward(torch.randn(2, 3), torch.randn(3, 2))
    with pytest.raises(ValueError, match=r"^MSE: .*got \(1, 3, 4, 4\) and \(1, 3, 4\)"):
        MSE().forward(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4))   # no silent broadcasting


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


@pytest.mark.parametrize("module", [Conv2d(3, 2, 3), Upsampling(3, 2, 3), Upsampling(3, 2, 3, padding=1)],
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
    with pytest.raises(ValueError, match=rf"^Conv2d: expected {what} to be an int >= 1.*got {got}$"):
        Conv2d(**arguments)


@pytest.mark.parametrize("padding, got", [(-1, "-1"), ((0, -2), r"\(0, -2\)")])
def test_conv2d_negative_padding(padding, got):
    with pytest.raises(ValueError, match=rf"^Conv2d: expected padding to be an int >= 0.*got {got}$"):
        Conv2d(3, 2, 3, padding=padding)


def test_conv2d_zero_padding_is_fine():
    assert Conv2d(3, 2, 3, padding=0).padding == (0, 0)


@pytest.mark.parametrize("scale, got", [(0, "0"), (-2, "-2"), ((2, 0), r"\(2, 0\)")])
def test_non_positive_scale(scale, got):
    with pytest.raises(ValueError, match=rf"^NearestUpsampling: expected scale_factor to be an int >= 1.*got {got}$"):
        NearestUpsampling(scale)
    with pytest.raises(ValueError, match=rf"Upsampling: expected scale_factor.*got {got}$"):
        Upsampling(3, 2, 3, scale_factor=scale)


@pytest.mark.parametrize("make", [lambda: NearestUpsampling(2.0), lambda: Conv2d(3, 2, 3.0),
                                  lambda: Conv2d(3, 2, 3, stride=1.5), lambda: Conv2d(3, 2, 3, padding=None)],
                         ids=["scale 2.0", "kernel 3.0", "stride 1.5", "padding None"])
def test_non_integer_hyper_parameters(make):
    with pytest.raises(ValueError, match=r"(Conv2d|NearestUpsampling): expected .* an int"):
        make()


def test_invalid_backward_form():
    with pytest.raises(ValueError, match=r"^Conv2d: expected backward_form 'fold' or 'convolution', got 'col2im'"):
        Conv2d(3, 2, 3, backward_form="col2im")


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------

def some_params():
    return Conv2d(2, 2, 1).param()


@pytest.mark.parametrize("optimizer", [SGD, Adam])
@pytest.mark.parametrize("lr", [-0.1, float("nan")])
def test_negative_learning_rate(optimizer, lr):
    with pytest.raises(ValueError, match=rf"^{optimizer.__name__}: expected a learning rate >= 0, got {lr}"):
        optimizer(some_params(), lr=lr)


@pytest.mark.parametrize("kwargs, what, got", [
    (dict(momentum=-0.5), "momentum", "-0.5"),
    (dict(weight_decay=-1e-4), "weight_decay", "-0.0001"),
])
def test_sgd_bad_hyper_parameters(kwargs, what, got):
    with pytest.raises(ValueError, match=rf"^SGD: expected {what} >= 0, got {got}"):
        SGD(some_params(), lr=0.1, **kwargs)


@pytest.mark.parametrize("betas, got", [((1.0, 0.999), r"\(1.0, 0.999\)"), ((0.9, -0.1), r"\(0.9, -0.1\)"),
                                        ((0.9, 1.5), r"\(0.9, 1.5\)")])
def test_adam_bad_betas(betas, got):
    with pytest.raises(ValueError, match=rf"^Adam: expected betas in \[0, 1\), got {got}"):
        Adam(some_params(), betas=betas)


def test_adam_betas_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"^Adam: expected betas .*got \(0.9,\)"):
        Adam(some_params(), betas=(0.9,))


@pytest.mark.parametrize("kwargs, what, got", [(dict(eps=-1e-8), "eps", "-1e-08"),
                                               (dict(weight_decay=-0.5), "weight_decay", "-0.5")])
def test_adam_bad_hyper_parameters(kwargs, what, got):
    with pytest.raises(ValueError, match=rf"^Adam: expected {what} >= 0, got {got}"):
        Adam(some_params(), **kwargs)


def test_optimizer_rejects_mismatched_pairs():
    with pytest.raises(ValueError, match=r"^SGD: expected \(parameter, gradient\) pairs of equal shape.*position 0"):
        SGD([(torch.zeros(3), torch.zeros(4))], lr=0.1)


# --------------------------------------------------------------------------------------------
# Backward: the gradient must have the shape of the last output
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, name", [
    (lambda: Conv2d(3, 2, 3), "Conv2d"),
    (lambda: Conv2d(3, 2, 3, backward_form="convolution"), "Conv2d"),
    (lambda: NearestUpsampling(2), "NearestUpsampling"),
    (ReLU, "ReLU"),
    (Sigmoid, "Sigmoid"),
    (lambda: Sequential(Conv2d(3, 2, 3), ReLU()), "ReLU"),
    (lambda: Upsampling(3, 2, 3), "Conv2d"),
    (lambda: Upsampling(3, 2, 3, padding=1), "(Upsampling|Conv2d)"),
], ids=["Conv2d-fold", "Conv2d-convolution", "NearestUpsampling", "ReLU", "Sigmoid", "Sequential", "Upsampling",
        "Upsampling-2x-3x3"])
def test_backward_with_a_wrong_shaped_gradient(make, name):
    module = make()
    out = module.forward(torch.randn(2, 3, 8, 8))
    expected = str(tuple(out.shape)).replace("(", r"\(").replace(")", r"\)")
    wrong = torch.ones(out.shape[0], out.shape[1], out.shape[2], out.shape[3] + 1)
    got = str(tuple(wrong.shape)).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"^{name}.backward: expected a gradient of shape {expected}, got {got}"):
        module.backward(wrong)
    with pytest.raises(ValueError, match=rf"^{name}.backward: expected a gradient of shape {expected}, got float"):
        module.backward(1.0)


@pytest.mark.parametrize("backward_form", ["fold", "convolution"])
def test_backward_with_a_gradient_of_another_dtype(backward_form):
    conv = Conv2d(3, 2, 3, backward_form=backward_form).to(dtype=torch.float64)
    out = conv.forward(torch.randn(1, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^Conv2d.backward: expected .*torch.float64.*got .*torch.float32"):
        conv.backward(torch.ones(out.shape, dtype=torch.float32))


# --------------------------------------------------------------------------------------------
# load_state_dict
# --------------------------------------------------------------------------------------------

def small_model():
    return Sequential(Conv2d(3, 2, 3), ReLU(), Conv2d(2, 1, 1, bias=False))


def test_load_state_dict_missing_key():
    state = small_model().state_dict()
    del state["0.bias"]
    with pytest.raises(ValueError, match=r"^Sequential.load_state_dict: missing keys \['0.bias'\], "
                                         r"unexpected keys \[\]"):
        small_model().load_state_dict(state)


def test_load_state_dict_unexpected_key():
    state = small_model().state_dict()
    state["2.bias"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"^Sequential.load_state_dict: missing keys \[\], "
                                         r"unexpected keys \['2.bias'\]"):
        small_model().load_state_dict(state)


def test_load_state_dict_wrong_shape():
    state = small_model().state_dict()
    state["0.weight"] = torch.zeros(2, 3, 3, 2)
    with pytest.raises(ValueError, match=r"^Sequential.load_state_dict: '0.weight' expected shape \(2, 3, 3, 3\), "
                                         r"got \(2, 3, 3, 2\)"):
        small_model().load_state_dict(state)


def test_load_state_dict_failure_leaves_the_model_unchanged():
    model = small_model()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    state = {name: tensor + 1 for name, tensor in model.state_dict().items()}
    state["2.weight"] = torch.zeros(5)
    with pytest.raises(ValueError):
        model.load_state_dict(state)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} was changed by a load that failed"
