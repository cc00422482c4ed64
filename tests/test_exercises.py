"""The exercise checkers accept the right solutions and reject typical wrong ones with a hint.

The right solutions below are the ones the book's hidden dropdowns show: plain tensor operations,
``unfold`` and ``fold``. Each wrong one is a mistake readers really make; the test asserts that
its checker fails and that the printed hint names that mistake.
"""
import pytest
import torch
from torch.nn.functional import fold, unfold

from scratchnn.book import exercises
from scratchnn.nn.conv import convolve, place_in_zeros

# --- right solutions ---------------------------------------------------------------------------


def relu_backward(x, grad_output):
    return grad_output * (x > 0)


def sigmoid_backward(output, grad_output):
    return grad_output * output * (1 - output)


def conv_forward(x, weight, bias, stride, padding, dilation):
    out, _ = convolve(x, weight, stride, padding, dilation)
    return out + bias.reshape(1, -1, 1, 1)


def conv_weight_grad(x, grad_output, weight_shape, stride, padding, dilation):
    columns = unfold(x, weight_shape[2:], dilation=dilation, padding=padding, stride=stride)
    grad = grad_output.reshape(grad_output.shape[0], grad_output.shape[1], -1)   # (N, O, L)
    return grad.matmul(columns.transpose(1, 2)).sum(0).reshape(weight_shape)


def conv_bias_grad(grad_output):
    return grad_output.sum((0, 2, 3))


def conv_input_grad_by_fold(grad_output, weight, input_shape, stride, padding, dilation):
    grad = grad_output.reshape(grad_output.shape[0], grad_output.shape[1], -1)   # (N, O, L)
    columns = weight.reshape(weight.shape[0], -1).t().matmul(grad)              # (N, CKK, L)
    return fold(columns, input_shape[2:], weight.shape[2:], dilation=dilation, padding=padding,
                stride=stride)


def conv_input_grad_by_flipped_kernel(grad_output, weight, input_shape, stride, padding,
                                      dilation):
    (height, width), (ph, pw) = input_shape[2:], padding
    reach_h, reach_w = dilation[0] * (weight.shape[2] - 1), dilation[1] * (weight.shape[3] - 1)
    spread = place_in_zeros(grad_output, height + 2 * ph + reach_h, width + 2 * pw + reach_w,
                            reach_h, reach_w, step=stride)
    flipped = weight.flip(2, 3).transpose(0, 1)                                 # (C, O, kh, kw)
    full, _ = convolve(spread, flipped, dilation=dilation)
    return full[:, :, ph:ph + height, pw:pw + width]


def upsampling_backward(grad_output, scale):
    n, c, height, width = grad_output.shape
    return grad_output.reshape(n, c, height // scale, scale, width // scale, scale).sum((3, 5))


def sgd_step(parameter, gradient, velocity, lr, momentum, weight_decay, first_step):
    direction = gradient + weight_decay * parameter
    velocity = direction.clone() if first_step else momentum * velocity + direction
    return parameter - lr * velocity, velocity


def concat_backward(grad_output, channels_of_x, module_backward):
    own, through_module = grad_output[:, :channels_of_x], grad_output[:, channels_of_x:]
    return own + module_backward(through_module)


RIGHT = [
    (exercises.check_relu_backward, relu_backward),
    (exercises.check_sigmoid_backward, sigmoid_backward),
    (exercises.check_conv_forward, conv_forward),
    (exercises.check_conv_weight_grad, conv_weight_grad),
    (exercises.check_conv_bias_grad, conv_bias_grad),
    (exercises.check_conv_input_grad, conv_input_grad_by_fold),
    (exercises.check_conv_input_grad, conv_input_grad_by_flipped_kernel),
    (exercises.check_nearest_upsampling_backward, upsampling_backward),
    (exercises.check_sgd_momentum_step, sgd_step),
    (exercises.check_concat_backward, concat_backward),
]
CHECKERS = sorted({checker for checker, _ in RIGHT}, key=lambda checker: checker.__name__)

# --- wrong solutions: (checker, wrong function, a phrase the hint must contain) ----------------


def ignoring(solution, **fixed):
    """``solution`` with stride, padding or dilation replaced by (1, 1) / (0, 0): a forgotten
    hyper-parameter."""
    positions = {"stride": -3, "padding": -2, "dilation": -1}

    def wrong(*args):
        args = list(args)
        for name, value in fixed.items():
            args[positions[name]] = value
        return solution(*args)
    return wrong


def input_grad_sized_from_output(grad_output, weight, input_shape, stride, padding, dilation):
    """Sizes the answer from grad_output: misses the input rows that the stride skipped."""
    sizes = [(grad_output.shape[2 + a] - 1) * stride[a] + dilation[a] * (weight.shape[2 + a] - 1)
             + 1 - 2 * padding[a] for a in (0, 1)]
    return conv_input_grad_by_fold(grad_output, weight, (*input_shape[:2], *sizes), stride,
                                   padding, dilation)


def sgd_velocity_zero_at_first_step(parameter, gradient, velocity, lr, momentum, weight_decay,
                                    first_step):
    if first_step:
        return parameter.clone(), torch.zeros_like(parameter)
    return sgd_step(parameter, gradient, velocity, lr, momentum, weight_decay, first_step)


def sgd_momentum_at_first_step(parameter, gradient, velocity, lr, momentum, weight_decay,
                               first_step):
    direction = gradient + weight_decay * parameter
    velocity = momentum * direction if first_step else momentum * velocity + direction
    return parameter - lr * velocity, velocity


def sgd_decay_after_momentum(parameter, gradient, velocity, lr, momentum, weight_decay,
                             first_step):
    velocity = gradient.clone() if first_step else momentum * velocity + gradient
    return parameter - lr * (velocity + weight_decay * parameter), velocity


def sgd_dampened(parameter, gradient, velocity, lr, momentum, weight_decay, first_step):
    direction = gradient + weight_decay * parameter
    velocity = direction if first_step else momentum * velocity + (1 - momentum) * direction
    return parameter - lr * velocity, velocity


def sgd_no_weight_decay(parameter, gradient, velocity, lr, momentum, weight_decay, first_step):
    return sgd_step(parameter, gradient, velocity, lr, momentum, 0.0, first_step)


def weight_grad_uncropped(x, grad_output, weight_shape, stride, padding, dilation):
    """The correlation of the padded input with the stride-dilated output gradient, without
    cropping the rows and columns that the stride skips: a kernel too large in those cases."""
    padded = torch.nn.functional.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    return torch.nn.functional.conv2d(padded.transpose(0, 1), grad_output.transpose(0, 1),
                                      dilation=stride, stride=dilation).transpose(0, 1)


def weight_grad_float32_buffer(x, grad_output, weight_shape, stride, padding, dilation):
    """Accumulates into torch.zeros (float32): PyTorch refuses to add float64 products to it."""
    columns = unfold(x, weight_shape[2:], dilation=dilation, padding=padding, stride=stride)
    grad = grad_output.reshape(grad_output.shape[0], grad_output.shape[1], -1)
    total = torch.zeros(weight_shape[0], columns.shape[1])
    for n in range(len(x)):
        total.addmm_(grad[n], columns[n].t())
    return total.reshape(weight_shape)


def sgd_average_from_zero(parameter, gradient, velocity, lr, momentum, weight_decay, first_step):
    """The averaging form b = mu b + (1 - mu) g, started from b = 0."""
    direction = gradient + weight_decay * parameter
    previous = torch.zeros_like(parameter) if first_step else velocity
    velocity = momentum * previous + (1 - momentum) * direction
    return parameter - lr * velocity, velocity


def sgd_momentum_times_none(parameter, gradient, velocity, lr, momentum, weight_decay,
                            first_step):
    """Forgets the first step: momentum * None raises a TypeError that names 'float'."""
    velocity = momentum * velocity + gradient + weight_decay * parameter
    return parameter - lr * velocity, velocity


def unflipped(grad_output, weight, *rest):
    return conv_input_grad_by_flipped_kernel(grad_output, weight.flip(2, 3), *rest)


def upsampling_wrong_blocks(grad_output, scale):
    n, c, height, width = grad_output.shape
    return grad_output.reshape(n, c, scale, height // scale, scale, width // scale).sum((2, 4))


WRONG = [
    (exercises.check_relu_backward, lambda x, g: g * (x >= 0), "not x >= 0"),
    (exercises.check_relu_backward, lambda x, g: (x > 0).double(), "chain rule"),
    (exercises.check_relu_backward, lambda x, g: g * (g > 0), "from the input x"),
    (exercises.check_relu_backward, lambda x, g: (g * (x > 0)).float(), "not float64"),
    (exercises.check_sigmoid_backward, lambda o, g: g * o.sigmoid() * (1 - o.sigmoid()),
     "do not apply the sigmoid again"),
    (exercises.check_sigmoid_backward, lambda o, g: o * (1 - o), "chain rule"),
    (exercises.check_conv_forward, lambda x, w, b, *rest: convolve(x, w, *rest)[0],
     "did you add the bias"),
    (exercises.check_conv_forward, lambda x, w, b, *rest: conv_forward(x, w.flip(2, 3), b, *rest),
     "cross-correlation"),
    (exercises.check_conv_forward, ignoring(conv_forward, stride=(1, 1)), "stride > 1"),
    (exercises.check_conv_forward, ignoring(conv_forward, dilation=(1, 1)), "dilation > 1"),
    (exercises.check_conv_forward, ignoring(conv_forward, padding=(0, 0)), "padding > 0"),
    (exercises.check_conv_weight_grad, lambda *args: conv_weight_grad(*args).transpose(0, 1),
     "order of the channel axes"),
    (exercises.check_conv_weight_grad, lambda x, *rest: conv_weight_grad(x, *rest) / len(x),
     "do not average"),
    (exercises.check_conv_weight_grad, ignoring(conv_weight_grad, stride=(1, 1)),
     "dilate the output gradient by the stride"),
    (exercises.check_conv_weight_grad, weight_grad_uncropped,
     "Crop the padded input to d(k - 1) + s(Ho - 1) + 1 rows"),
    (exercises.check_conv_weight_grad, weight_grad_float32_buffer, "mixes dtypes"),
    (exercises.check_conv_bias_grad, lambda g: g.mean((0, 2, 3)), "not the mean"),
    (exercises.check_conv_bias_grad, lambda g: g.sum((2, 3)), "batch axis N too"),
    (exercises.check_conv_bias_grad, lambda g: g.sum((1, 2, 3)), "keep the channel axis"),
    (exercises.check_conv_input_grad, unflipped, "did you flip the kernel by 180 degrees"),
    (exercises.check_conv_input_grad, ignoring(conv_input_grad_by_fold, stride=(1, 1)),
     "dilate the output gradient by the stride"),
    (exercises.check_conv_input_grad, input_grad_sized_from_output, "the stride skips"),
    (exercises.check_nearest_upsampling_backward,
     lambda g, s: upsampling_backward(g, s) / s ** 2, "do not average"),
    (exercises.check_nearest_upsampling_backward, lambda g, s: g[:, :, ::s, ::s],
     "not one pixel"),
    (exercises.check_nearest_upsampling_backward, upsampling_wrong_blocks,
     "(N, C, H, s, W, s)"),
    (exercises.check_sgd_momentum_step, sgd_momentum_at_first_step,
     "velocity is the gradient itself"),
    (exercises.check_sgd_momentum_step, sgd_velocity_zero_at_first_step,
     "first step"),
    (exercises.check_sgd_momentum_step, sgd_decay_after_momentum, "before the momentum update"),
    (exercises.check_sgd_momentum_step, sgd_dampened, "(1 - momentum) factor"),
    (exercises.check_sgd_momentum_step, sgd_no_weight_decay, "weight_decay > 0"),
    (exercises.check_sgd_momentum_step, sgd_average_from_zero, "(1 - momentum) factor"),
    (exercises.check_concat_backward, lambda g, c, backward: g[:, :c], "ADD at the fork"),
    (exercises.check_concat_backward, lambda g, c, backward: g[:, :c] + backward(g[:, :c]),
     "cat puts x first"),
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("checker, solution", RIGHT,
                         ids=[f"{c.__name__}-{s.__name__}" for c, s in RIGHT])
def test_the_right_solution_passes(checker, solution, capsys):
    assert checker(solution) is True
    report = capsys.readouterr().out
    assert report.count("\n") == 1 and "cases pass (largest error" in report, report


@pytest.mark.parametrize("checker, wrong, phrase", WRONG,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_a_typical_mistake_fails_with_its_hint(checker, wrong, phrase, capsys):
    assert checker(wrong) is False
    report = capsys.readouterr().out
    assert report.count("\n") == 1 and ": FAIL at case " in report, report
    assert "Hint: " in report and phrase in report.split("Hint: ")[1], report


def not_implemented(*args):
    raise NotImplementedError


@pytest.mark.parametrize("checker", CHECKERS, ids=[c.__name__ for c in CHECKERS])
@pytest.mark.parametrize("skeleton", [not_implemented, lambda *args: None,
                                      lambda *args: (None, None)],
                         ids=["raises", "returns-none", "returns-nones"])
def test_the_skeleton_says_not_implemented_without_a_traceback(checker, skeleton, capsys):
    assert checker(skeleton) is False
    captured = capsys.readouterr()
    assert captured.out.endswith("not implemented yet \u2014 fill in the function above, then "
                                 "run this cell again.\n"), captured.out
    assert captured.err == "" and "Traceback" not in captured.out


def test_a_crash_is_reported_in_one_line_with_the_case(capsys):
    assert exercises.check_conv_bias_grad(lambda g: g.sum(7)) is False
    report = capsys.readouterr().out
    assert "FAIL at case 1 of 30: grad_output (" in report
    assert "your function raised IndexError" in report and "Traceback" not in report


def test_a_wrong_shape_names_the_expected_and_the_actual_shape(capsys):
    assert exercises.check_conv_bias_grad(lambda g: g.sum((0, 2))) is False
    report = capsys.readouterr().out
    assert "expected shape (4,), got (4, 3)" in report, report


def test_the_failing_case_describes_shapes_and_hyper_parameters(capsys):
    exercises.check_conv_input_grad(unflipped)
    report = capsys.readouterr().out
    assert report.startswith("conv input gradient: FAIL at case 1 of 40: x (")
    for word in ("weight (", "stride (", "padding (", "dilation (", "largest error"):
        assert word in report, report


def test_the_cases_are_reproducible_and_cover_the_geometry():
    configs = exercises.conv_configs(40, seed=0)
    assert configs == exercises.conv_configs(40, seed=0)
    features = set().union(*(config.features() for config in configs))
    assert features == {"unreached", "stride", "dilation", "padding", "nonsquare", "batch"}
    assert all(config.fits() for config in configs)


def test_every_relu_case_has_an_exact_zero_input():
    seen = []
    exercises.check_relu_backward(lambda x, g: seen.append(bool((x == 0).any())) or g * (x > 0))
    assert seen and all(seen)


def test_the_reader_cannot_corrupt_the_reference_by_writing_in_place(capsys):
    def in_place(parameter, gradient, velocity, lr, momentum, weight_decay, first_step):
        gradient.add_(parameter, alpha=weight_decay)
        velocity = gradient if first_step else velocity.mul_(momentum).add_(gradient)
        return parameter.sub_(velocity, alpha=lr), velocity
    assert exercises.check_sgd_momentum_step(in_place) is True


def test_an_exception_about_dtypes_gets_the_dtype_hint_even_on_the_first_case(capsys):
    assert exercises.check_conv_weight_grad(weight_grad_float32_buffer) is False
    report = capsys.readouterr().out
    assert "FAIL at case 1 of 40" in report and "your function raised RuntimeError" in report
    assert "x.new_zeros(...)" in report.split("Hint: ")[1], report


def test_an_exception_that_only_names_a_python_float_gets_no_dtype_hint(capsys):
    assert exercises.check_sgd_momentum_step(sgd_momentum_times_none) is False
    report = capsys.readouterr().out
    assert "your function raised TypeError" in report and "'float'" in report, report
    assert "dtype" not in report.split("Hint: ")[1], report


def test_the_unreached_hint_of_each_conv_checker_fits_its_answer():
    # The weight gradient has the kernel's shape: its hint is to crop, not the input's full shape.
    weight_hints = exercises.geometry_hints(exercises.BACKWARD_STRIDE, exercises.WEIGHT_UNREACHED)
    input_hints = exercises.geometry_hints(exercises.BACKWARD_STRIDE, exercises.INPUT_UNREACHED)
    assert "crop the padded input" in weight_hints["unreached"].lower()
    assert "full shape" in input_hints["unreached"] and "full shape" not in weight_hints[
        "unreached"]
