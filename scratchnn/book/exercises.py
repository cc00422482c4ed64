"""Checkers for the book's "your turn" exercises: your code against PyTorch autograd, with hints.

In an exercise cell you fill in one block of the framework (a ReLU backward, a convolution's
input gradient, one SGD step...) and call its checker, e.g. ``check_conv_bias_grad(my_fn)``.
The checker calls your function on many random cases (shapes, strides, paddings, dilations), in
float64, and compares each answer with what PyTorch's autograd computes. It prints one line:

* ``conv bias gradient: 30 of 30 cases pass (largest error 8.9e-16)``, or
* the first failing case, its shapes, the largest error and a hint naming the usual mistake, or
* ``... not implemented yet`` while your function still raises ``NotImplementedError`` (or
  returns ``None``): the skeleton state never shows a traceback.

Why hints can be specific: for each case the checker also computes the answers of typical wrong
solutions (a kernel that was not flipped, a mean instead of a sum, channel axes swapped...). If
your answer equals one of them, the hint says which mistake it is. If your answer fails exactly
on the cases that share a feature (say stride > 1), the hint names that feature.

Every checker returns True or False, so a test can assert on it. Autograd is used freely here:
the no-autograd rule of the framework applies only to ``scratchnn/nn/``.
"""
import random
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

NOT_IMPLEMENTED = ("not implemented yet \u2014 fill in the function above, "
                   "then run this cell again.")


@dataclass
class Case:
    """One call of the reader's function: its arguments, the right answer, known wrong answers.

    ``wrong`` holds (hint, answer) pairs; ``features`` names what is special about the case
    (e.g. ``"stride"``), used when the answer fails on exactly the cases with one feature.
    """
    description: str
    args: tuple
    expected: object
    wrong: list = field(default_factory=list)
    features: frozenset = frozenset()


@dataclass
class Outcome:
    """What happened in one case: ``kind`` is "pass", "wrong", "shape", "raised" or "missing"."""
    kind: str
    error: float = 0.0
    message: str = ""
    answer: object = None


# ---------------------------------------------------------------------------------------------
# Comparing one answer with the expected one
# ---------------------------------------------------------------------------------------------

def as_parts(value, count):
    """The answer as a list of ``count`` items (a single tensor when count is 1)."""
    if count == 1:
        return [value]
    if isinstance(value, (tuple, list)) and len(value) == count:
        return list(value)
    return None


def tolerance(expected):
    """Absolute tolerance: float64 rounding, scaled by the size of the expected values."""
    scale = max(float(expected.abs().max()), 1.0) if expected.numel() else 1.0
    return 1e-9 * scale


def mismatch(answer, expected, names):
    """(problem message or None, largest error) of an answer against the expected tensor(s)."""
    expected_parts = as_parts(expected, len(names))
    parts = as_parts(answer, len(names))
    if parts is None:
        return f"expected a tuple ({', '.join(names)}), got {type(answer).__name__}", 0.0
    largest = 0.0
    for name, part, reference in zip(names, parts, expected_parts):
        label = f"{name}: " if len(names) > 1 else ""
        if not isinstance(part, torch.Tensor):
            return f"{label}expected a tensor, got {type(part).__name__}", 0.0
        if tuple(part.shape) != tuple(reference.shape):
            return (f"{label}expected shape {tuple(reference.shape)}, "
                    f"got {tuple(part.shape)}"), 0.0
        if reference.numel():
            difference = part.detach().to(torch.float64) - reference.to(torch.float64)
            largest = max(largest, float(difference.abs().max()))
    return None, largest


def is_close(answer, expected, names):
    """Whether the answer matches ``expected`` within float64 rounding."""
    problem, error = mismatch(answer, expected, names)
    parts = as_parts(expected, len(names))
    return problem is None and error <= max(tolerance(part) for part in parts)


def attempt(fn, case, names):
    """Run the reader's function on one case (on copies of the arguments) and judge it."""
    args = tuple(arg.clone() if isinstance(arg, torch.Tensor) else arg for arg in case.args)
    try:
        answer = fn(*args)
    except NotImplementedError:
        return Outcome("missing")
    except Exception as error:  # the reader's bug: report it, never a traceback
        first_line = (str(error).strip().splitlines() or [""])[0].rstrip(".")
        if len(first_line) > 160:
            first_line = first_line[:160] + " (...)"
        return Outcome("raised", message=f"your function raised {type(error).__name__}: "
                                         f"{first_line}")
    if answer is None or (isinstance(answer, tuple) and all(a is None for a in answer)):
        return Outcome("missing")
    problem, error = mismatch(answer, case.expected, names)
    if problem is not None:
        return Outcome("shape", message=problem, answer=answer)
    kind = "pass" if is_close(answer, case.expected, names) else "wrong"
    return Outcome(kind, error=error, answer=answer)


# ---------------------------------------------------------------------------------------------
# Running all cases and writing the one-line report
# ---------------------------------------------------------------------------------------------

def known_mistake(outcome, case, names):
    """The hint of the first known wrong answer that the reader's answer equals, if any."""
    if outcome.answer is None:
        return None
    for hint, wrong_answer in case.wrong:
        if is_close(outcome.answer, wrong_answer, names):
            return hint
    return None


def shared_feature(outcomes, cases, feature_hints):
    """The hint of a feature that every failing case has, when some cases pass."""
    failing = [case for outcome, case in zip(outcomes, cases) if outcome.kind != "pass"]
    if len(failing) == len(cases):
        return None
    for feature, hint in feature_hints.items():
        if all(feature in case.features for case in failing):
            return hint
    return None


# What PyTorch says when one operation gets float32 and float64 tensors, e.g. "expected m1 and
# m2 to have the same dtype", "self and mat2 must have the same dtype, but got Float and Double",
# "expected scalar type Double but found Float", "Input type (double) and bias type (float)".
# Only torch's names of dtypes: Python's "unsupported operand type(s) for *: 'float' and
# 'NoneType'" is another mistake.
DTYPE_ERROR = re.compile(r"dtype|scalar type|\b(Float|Double|Half)\b|\((float|double|half)\)")


def dtype_hint(outcome):
    """A hint when float32 and float64 meet: new tensors made with the default dtype.

    For an answer: when it is not float64. For an exception raised inside the reader's function:
    when its message is about dtypes (a float32 buffer met a float64 input and PyTorch refused).
    """
    if outcome.kind == "raised":
        if DTYPE_ERROR.search(outcome.message):
            return ("your function mixes dtypes: the inputs are float64, and a tensor you made "
                    "is not float64 (torch.zeros(...) gives float32): create new tensors with "
                    "x.new_zeros(...) or zeros_like, which keep the input's dtype.")
        return None
    parts = outcome.answer if isinstance(outcome.answer, (tuple, list)) else [outcome.answer]
    dtypes = {part.dtype for part in parts if isinstance(part, torch.Tensor)}
    if dtypes and dtypes != {torch.float64}:
        return ("your answer is not float64 (the inputs are): create new tensors with "
                "x.new_zeros(...) or zeros_like, which keep the input's dtype.")
    return None


def run_checker(name, fn, cases, feature_hints=None, general_hint="", names=("answer",)):
    """Check ``fn`` on every case, print one report line, return whether every case passed."""
    outcomes = [attempt(fn, case, names) for case in cases]
    total = len(cases)
    failures = [index for index, outcome in enumerate(outcomes) if outcome.kind != "pass"]
    if not failures:
        largest = max(outcome.error for outcome in outcomes)
        print(f"{name}: {total} of {total} cases pass (largest error {largest:.1e})")
        return True
    index = failures[0]
    outcome, case = outcomes[index], cases[index]
    if outcome.kind == "missing":
        where = "" if index == 0 else f" (for case {index + 1} of {total}: {case.description})"
        print(f"{name}: {NOT_IMPLEMENTED[:-1]}{where}." if where else f"{name}: {NOT_IMPLEMENTED}")
        return False
    if outcome.kind == "wrong":
        problem = f"largest error {outcome.error:.2g}"
    else:
        problem = outcome.message
    # An exception about dtypes names its cause, whatever the cases that raise it share.
    hint = (known_mistake(outcome, case, names)
            or (dtype_hint(outcome) if outcome.kind == "raised" else None)
            or shared_feature(outcomes, cases, feature_hints or {})
            or (dtype_hint(outcome) if outcome.kind == "wrong" else None)
            or general_hint)
    report = f"{name}: FAIL at case {index + 1} of {total}: {case.description}: {problem}."
    print(f"{report} Hint: {hint}" if hint else report)
    return False


# ---------------------------------------------------------------------------------------------
# Random inputs and autograd references
# ---------------------------------------------------------------------------------------------

def random_tensor(generator, *shape):
    """Standard-normal float64 values, reproducible from ``generator``."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def autograd(function, inputs, grad_output):
    """Gradients of ``function(*inputs)`` with respect to each input, for ``grad_output``."""
    with torch.enable_grad():
        leaves = [tensor.detach().clone().requires_grad_(True) for tensor in inputs]
        output = function(*leaves)
        grads = torch.autograd.grad(output, leaves, grad_output, allow_unused=True)
    return [torch.zeros_like(leaf) if grad is None else grad.detach()
            for leaf, grad in zip(leaves, grads)]


def with_zeros(generator, x):
    """``x`` with about one element in four set to exactly 0 (and the first one always)."""
    mask = torch.rand(x.shape, generator=generator) < 0.25
    mask.view(-1)[0] = True
    return x.masked_fill(mask, 0.0)


def random_shape(rng):
    """A small shape of 1 to 4 dimensions."""
    return tuple(rng.randint(1, 5) for _ in range(rng.randint(1, 4)))


# ---------------------------------------------------------------------------------------------
# 1-2. Activations
# ---------------------------------------------------------------------------------------------

def check_relu_backward(fn, cases=20, seed=0):
    """Check ``fn(x, grad_output) -> grad_input`` for ReLU = max(0, x).

    ``x`` is the module's input and ``grad_output`` the gradient of the loss with respect to its
    output, both of the same (any) shape. Every case contains inputs that are exactly 0.
    """
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    made = []
    for _ in range(cases):
        shape = random_shape(rng)
        x = with_zeros(generator, random_tensor(generator, *shape))
        grad = random_tensor(generator, *shape)
        [expected] = autograd(torch.relu, [x], grad)
        wrong = [("PyTorch's derivative of ReLU at exactly x = 0 is 0: use x > 0, not x >= 0.",
                  grad * (x >= 0)),
                 ("chain rule: multiply the derivative (x > 0) by grad_output.",
                  (x > 0).to(x.dtype)),
                 ("the mask comes from the input x, not from grad_output.", grad * (grad > 0)),
                 ("the gradient is grad_output where x > 0 and 0 elsewhere: not x itself.",
                  torch.relu(x) * grad)]
        made.append(Case(f"x {shape} with exact zeros", (x, grad), expected, wrong))
    return run_checker("ReLU backward", fn, made,
                       general_hint="grad_input = grad_output where x > 0, else 0.")


def check_sigmoid_backward(fn, cases=20, seed=0):
    """Check ``fn(output, grad_output) -> grad_input`` for the sigmoid.

    ``output`` = sigma(x) is what the forward pass returned (it is stored, not x), and
    sigma'(x) = sigma(x) (1 - sigma(x)).
    """
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    made = []
    for _ in range(cases):
        shape = random_shape(rng)
        x = 3 * random_tensor(generator, *shape)
        grad = random_tensor(generator, *shape)
        [expected] = autograd(torch.sigmoid, [x], grad)
        out = torch.sigmoid(x)
        again = torch.sigmoid(out)
        wrong = [("output already is sigma(x): use output * (1 - output), do not apply the "
                  "sigmoid again.", grad * again * (1 - again)),
                 ("chain rule: multiply sigma' = output * (1 - output) by grad_output.",
                  out * (1 - out)),
                 ("sigma' = sigma (1 - sigma): a factor is missing.", grad * out),
                 ("sigma' = sigma (1 - sigma): a factor is missing.", grad * (1 - out))]
        made.append(Case(f"output {shape}", (out, grad), expected, wrong))
    return run_checker("sigmoid backward", fn, made,
                       general_hint="grad_input = grad_output * output * (1 - output).")


# ---------------------------------------------------------------------------------------------
# 3-6. Convolution
# ---------------------------------------------------------------------------------------------

@dataclass
class ConvConfig:
    """The shapes and hyper-parameters of one convolution case (pairs are (height, width))."""
    x_shape: tuple
    weight_shape: tuple
    stride: tuple
    padding: tuple
    dilation: tuple

    def describe(self):
        return (f"x {self.x_shape}, weight {self.weight_shape}, stride {self.stride}, "
                f"padding {self.padding}, dilation {self.dilation}")

    def reach(self, axis):
        """The extent of the dilated kernel along axis 0 (height) or 1 (width)."""
        return self.dilation[axis] * (self.weight_shape[2 + axis] - 1) + 1

    def fits(self):
        return all(self.x_shape[2 + axis] + 2 * self.padding[axis] >= self.reach(axis)
                   for axis in (0, 1))

    def features(self):
        """What is special about this case, for the hints on shared failures."""
        unreached = any((self.x_shape[2 + a] + 2 * self.padding[a] - self.reach(a))
                        % self.stride[a] for a in (0, 1))
        found = {"unreached": unreached, "stride": max(self.stride) > 1,
                 "dilation": max(self.dilation) > 1, "padding": max(self.padding) > 0,
                 "nonsquare": self.weight_shape[2] != self.weight_shape[3],
                 "batch": self.x_shape[0] > 1}
        return frozenset(name for name, present in found.items() if present)


def conv_configs(count, seed):
    """``count`` random valid configurations; the first fifth has stride 1, no padding/dilation."""
    rng, configs = random.Random(seed), []
    while len(configs) < count:
        n, c, o = rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 4)
        kernel = (rng.randint(1, 4), rng.randint(1, 4))
        size = (rng.randint(1, 9), rng.randint(1, 9))
        if len(configs) < count // 5:
            stride, padding, dilation = (1, 1), (0, 0), (1, 1)
        else:
            stride = (rng.randint(1, 3), rng.randint(1, 3))
            padding = (rng.randint(0, 2), rng.randint(0, 2))
            dilation = (rng.randint(1, 2), rng.randint(1, 2))
        config = ConvConfig((n, c, *size), (o, c, *kernel), stride, padding, dilation)
        if config.fits():
            configs.append(config)
    return configs


def conv_with(config):
    """conv2d with the configuration's stride, padding and dilation."""
    def conv(x, weight, bias=None):
        return F.conv2d(x, weight, bias, config.stride, config.padding, config.dilation)
    return conv


def conv_tensors(config, generator):
    """Random x, weight, bias and output gradient for one configuration."""
    x = random_tensor(generator, *config.x_shape)
    weight = random_tensor(generator, *config.weight_shape)
    bias = random_tensor(generator, config.weight_shape[0])
    grad = random_tensor(generator, *conv_with(config)(x, weight).shape)
    return x, weight, bias, grad


def geometry_hints(stride_hint, unreached_hint):
    """Hints for failures shared by all cases with one feature (most specific first)."""
    return {
        "unreached": unreached_hint,
        "stride": stride_hint,
        "dilation": "the failing cases have dilation > 1: the kernel's taps are dilation "
                    "pixels apart (pass dilation to unfold/fold).",
        "padding": "the failing cases have padding > 0: pad the input with zeros on every side "
                   "(pass padding to unfold/fold) and crop it away again where needed.",
        "nonsquare": "the failing cases have a non-square kernel: check that you did not swap "
                     "kh and kw, or height and width.",
        "batch": "the failing cases have N > 1: keep every image of the batch (and sum over "
                 "it where the parameter is shared).",
    }


FORWARD_STRIDE = ("the failing cases have stride > 1: the kernel moves stride pixels between "
                  "outputs (pass stride to unfold) and Ho = (H + 2p - d(k - 1) - 1) // s + 1.")
BACKWARD_STRIDE = ("the failing cases have stride > 1: dilate the output gradient by the stride "
                   "(insert stride - 1 zeros between its values), or pass stride to fold/unfold.")

# The cases with "unreached" rows or columns: the stride skips the last ones of the padded input
# (H + 2p - d(k - 1) - 1 is not a multiple of s). Each answer has its own shape, so its own hint.
UNREACHED = ("in the failing cases the stride skips the last rows or columns of the padded "
             "input: ")
FORWARD_UNREACHED = UNREACHED + ("they give no output. Round down: Ho = (H + 2p - d(k - 1) - 1) "
                                 "// s + 1.")
WEIGHT_UNREACHED = UNREACHED + ("no output reads them, so they are not in the weight gradient. "
                                "Crop the padded input to d(k - 1) + s(Ho - 1) + 1 rows (and "
                                "likewise columns) before correlating it with the output "
                                "gradient: the answer has the kernel's shape (O, C, kh, kw).")
INPUT_UNREACHED = UNREACHED + ("nothing reads them (their gradient is 0), and the answer must "
                               "still have the input's full shape.")


def check_conv_forward(fn, cases=40, seed=0):
    """Check ``fn(x, weight, bias, stride, padding, dilation) -> output`` against F.conv2d.

    x is (N, C, H, W), weight (O, C, kh, kw), bias (O,); stride, padding and dilation are pairs
    (height, width). The output is (N, O, Ho, Wo), a cross-correlation as in PyTorch.
    """
    generator, made = torch.Generator().manual_seed(seed), []
    for config in conv_configs(cases, seed):
        x, weight, bias, _ = conv_tensors(config, generator)
        conv = conv_with(config)
        wrong = [("did you add the bias (one value per output channel, on every pixel)?",
                  conv(x, weight)),
                 ("PyTorch's conv2d is a cross-correlation: do not flip the kernel.",
                  conv(x, weight.flip(2, 3), bias))]
        arguments = (x, weight, bias, config.stride, config.padding, config.dilation)
        made.append(Case(config.describe(), arguments, conv(x, weight, bias), wrong,
                         config.features()))
    return run_checker("conv forward", fn, made,
                       geometry_hints(FORWARD_STRIDE, FORWARD_UNREACHED),
                       "unfold x into columns (N, C*kh*kw, L), multiply by the weight "
                       "reshaped to (O, C*kh*kw), reshape to (N, O, Ho, Wo), add the bias.")


def check_conv_weight_grad(fn, cases=40, seed=0):
    """Check ``fn(x, grad_output, weight_shape, stride, padding, dilation) -> grad_weight``.

    x is the layer's input (N, C, H, W), grad_output (N, O, Ho, Wo) the loss gradient with
    respect to its output; the answer has weight_shape (O, C, kh, kw). Pairs are (height, width).
    """
    generator, made = torch.Generator().manual_seed(seed), []
    for config in conv_configs(cases, seed):
        x, weight, _, grad = conv_tensors(config, generator)
        _, expected = autograd(conv_with(config), [x, weight], grad)
        wrong = [("the weight gradient has shape (O, C, kh, kw): check the order of the channel "
                  "axes (grad_output's channels are O, the input's are C).",
                  expected.transpose(0, 1)),
                 ("the weight gradient is a correlation of x with grad_output: no kernel flip.",
                  expected.flip(2, 3)),
                 ("the weight is shared by every image: sum over the batch, do not average.",
                  expected / config.x_shape[0])]
        arguments = (x, grad, config.weight_shape, config.stride, config.padding,
                     config.dilation)
        made.append(Case(config.describe(), arguments, expected, wrong, config.features()))
    return run_checker("conv weight gradient", fn, made,
                       geometry_hints(BACKWARD_STRIDE, WEIGHT_UNREACHED),
                       "grad_weight = grad_output (N, O, L) times the unfolded input's columns "
                       "transposed (N, L, C*kh*kw), summed over N, reshaped to (O, C, kh, kw).")


def check_conv_bias_grad(fn, cases=30, seed=0):
    """Check ``fn(grad_output) -> grad_bias``: grad_output is (N, O, Ho, Wo), the answer (O,)."""
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    made = []
    for _ in range(cases):
        shape = (rng.randint(1, 4), rng.randint(1, 5), rng.randint(1, 6), rng.randint(1, 6))
        grad = random_tensor(generator, *shape)
        expected = grad.sum((0, 2, 3))
        wrong = [("sum over N, H and W, not the mean.", grad.mean((0, 2, 3))),
                 ("sum over the batch axis N too: the bias is shared by every image.",
                  grad.sum((2, 3))),
                 ("sum over the pixels H and W too: the bias is added at every pixel.",
                  grad.sum(0)),
                 ("keep the channel axis 1 and sum over the others (0, 2, 3).",
                  grad.sum((1, 2, 3)))]
        made.append(Case(f"grad_output {shape}", (grad,), expected, wrong))
    return run_checker("conv bias gradient", fn, made,
                       general_hint="each bias is added to every output of its channel: "
                                    "grad_bias = grad_output summed over N, H and W.")


def check_conv_input_grad(fn, cases=40, seed=0):
    """Check ``fn(grad_output, weight, input_shape, stride, padding, dilation) -> grad_input``.

    grad_output is (N, O, Ho, Wo), weight (O, C, kh, kw); the answer has input_shape
    (N, C, H, W). Pairs are (height, width). Both the full convolution with the 180-degree
    flipped kernel and the ``fold`` (col2im) form are right answers.
    """
    generator, made = torch.Generator().manual_seed(seed), []
    for config in conv_configs(cases, seed):
        x, weight, _, grad = conv_tensors(config, generator)
        conv = conv_with(config)

        def input_grad(kernel):
            return autograd(lambda x_: conv(x_, kernel), [x], grad)[0]

        wrong = [("did you flip the kernel by 180 degrees (both spatial axes)?",
                  input_grad(weight.flip(2, 3))),
                 ("flip the kernel along both spatial axes (180 degrees), not only one.",
                  input_grad(weight.flip(2))),
                 ("flip the kernel along both spatial axes (180 degrees), not only one.",
                  input_grad(weight.flip(3)))]
        arguments = (grad, weight, config.x_shape, config.stride, config.padding,
                     config.dilation)
        made.append(Case(config.describe(), arguments, input_grad(weight), wrong,
                         config.features()))
    return run_checker("conv input gradient", fn, made,
                       geometry_hints(BACKWARD_STRIDE, INPUT_UNREACHED),
                       "grad_columns = weight.reshape(O, -1).t() @ grad_output (N, O, L), then "
                       "fold them back to (N, C, H, W); or a full convolution of the padded, "
                       "stride-dilated grad_output with the flipped kernel, channels swapped.")


# ---------------------------------------------------------------------------------------------
# 7. Nearest upsampling
# ---------------------------------------------------------------------------------------------

def check_nearest_upsampling_backward(fn, cases=20, seed=0):
    """Check ``fn(grad_output, scale) -> grad_input`` for nearest upsampling by an int ``scale``.

    The forward pass repeated every pixel of x (N, C, H, W) scale times along both axes, so
    grad_output is (N, C, scale*H, scale*W) and the answer is (N, C, H, W).
    """
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    made = []
    for _ in range(cases):
        n, c, h, w, s = (rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 5),
                         rng.randint(1, 5), rng.randint(2, 4))
        x = random_tensor(generator, n, c, h, w)
        grad = random_tensor(generator, n, c, s * h, s * w)
        [expected] = autograd(lambda x_, s=s: F.interpolate(x_, scale_factor=s), [x], grad)
        wrong = [("each input pixel was copied s*s times: sum the block, do not average it.",
                  expected / (s * s)),
                 ("every one of the s*s copies gets a gradient: sum the whole block, not one "
                  "pixel of it.", grad[:, :, ::s, ::s]),
                 ("pixel (i, j) was copied to rows i*s ... i*s+s-1: reshape to "
                  "(N, C, H, s, W, s) and sum axes 3 and 5.",
                  grad.reshape(n, c, s, h, s, w).sum((2, 4)))]
        made.append(Case(f"grad_output {tuple(grad.shape)}, scale {s}", (grad, s), expected,
                         wrong))
    return run_checker("nearest upsampling backward", fn, made,
                       general_hint="grad_input[i, j] = sum of grad_output over the s x s "
                                    "block that pixel (i, j) was copied to (sum-pooling).")


# ---------------------------------------------------------------------------------------------
# 8. SGD with momentum and weight decay
# ---------------------------------------------------------------------------------------------

SGD_CONFIGS = ((0.1, 0.0, 0.0), (0.1, 0.9, 0.0), (0.05, 0.0, 0.1), (0.05, 0.9, 0.1))
SGD_STEPS = 4


def sgd_variant(decay_after=False, first_times_momentum=False, dampen=False, no_velocity=False,
                average_from_zero=False):
    """One SGD step written with a typical mistake (all False: the right rule, for reference).

    ``average_from_zero``: the "averaging" form b = mu b + (1 - mu) g started from b = 0, so that
    the first velocity is (1 - mu) g (with ``dampen`` it starts from g, as torch's dampening).
    """
    def step(parameter, gradient, velocity, lr, momentum, weight_decay, first_step):
        direction = gradient if decay_after else gradient + weight_decay * parameter
        if first_step and average_from_zero:
            velocity = (1 - momentum) * direction
        elif first_step:
            velocity = momentum * direction if first_times_momentum else direction
        else:
            velocity = momentum * velocity + (1 - momentum if dampen else 1) * direction
        update = velocity + weight_decay * parameter if decay_after else velocity
        return parameter - lr * (direction if no_velocity else update), velocity
    return step


SGD_MISTAKES = (
    ("at the first step the velocity is the gradient itself (torch.optim.SGD: buf = g): no "
     "momentum factor yet.", sgd_variant(first_times_momentum=True)),
    ("add weight_decay * parameter to the gradient before the momentum update, not after.",
     sgd_variant(decay_after=True)),
    ("torch's velocity is momentum * velocity + gradient, without a (1 - momentum) factor.",
     sgd_variant(dampen=True)),
    ("torch's velocity is momentum * velocity + gradient, without a (1 - momentum) factor, and "
     "it starts as the gradient itself, not from zero: the averaging form started from zero "
     "makes the first step 1 - momentum times too small.",
     sgd_variant(dampen=True, average_from_zero=True)),
    ("step along the velocity: parameter - lr * new_velocity.", sgd_variant(no_velocity=True)),
)


def torch_sgd_run(parameter, gradients, lr, momentum, weight_decay):
    """(parameter, velocity) after each torch.optim.SGD step on the given gradients."""
    leaf = parameter.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([leaf], lr=lr, momentum=momentum, weight_decay=weight_decay)
    states = []
    for gradient in gradients:
        before = leaf.detach().clone()
        leaf.grad = gradient.clone()
        optimizer.step()
        velocity = optimizer.state[leaf].get("momentum_buffer")
        if velocity is None:  # no buffer with momentum 0: the velocity is the direction
            velocity = gradient + weight_decay * before
        states.append((leaf.detach().clone(), velocity.detach().clone()))
    return states


def sgd_cases(cases, seed):
    """Steps of several torch.optim.SGD runs; each step starts from torch's previous state."""
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    made = []
    while len(made) < cases:
        configs = list(SGD_CONFIGS) if not made else [
            (rng.choice((0.01, 0.1, 0.5)), rng.choice((0.0, 0.5, 0.9)),
             rng.choice((0.0, 0.01, 0.1)))]
        for lr, momentum, weight_decay in configs:
            shape = random_shape(rng)
            parameter = random_tensor(generator, *shape)
            gradients = [random_tensor(generator, *shape) for _ in range(SGD_STEPS)]
            states = torch_sgd_run(parameter, gradients, lr, momentum, weight_decay)
            previous = (parameter, None)
            for step, (gradient, state) in enumerate(zip(gradients, states)):
                arguments = (previous[0], gradient, previous[1], lr, momentum, weight_decay,
                             step == 0)
                wrong = [(hint, variant(*arguments)) for hint, variant in SGD_MISTAKES]
                features = {"first_step"} if step == 0 else set()
                features |= {"momentum"} if momentum else set()
                features |= {"weight_decay"} if weight_decay else set()
                made.append(Case(f"step {step + 1} of {SGD_STEPS} on a {shape} parameter, "
                                 f"lr {lr}, momentum {momentum}, weight_decay {weight_decay}",
                                 arguments, state, wrong, frozenset(features)))
                previous = state
    return made[:cases]


def check_sgd_momentum_step(fn, cases=24, seed=0):
    """Check one step of SGD, ``fn(parameter, gradient, velocity, lr, momentum, weight_decay,
    first_step) -> (new_parameter, new_velocity)``, against torch.optim.SGD over several steps.

    ``velocity`` is the new_velocity your function returned at the previous step, and None at
    the first step (``first_step`` is True). With momentum 0, return as velocity the direction
    of the step, gradient + weight_decay * parameter.
    """
    hints = {"first_step": "only first steps fail: there the velocity is the direction itself, "
                           "gradient + weight_decay * parameter (torch.optim.SGD: buf = g).",
             "weight_decay": "the failing cases have weight_decay > 0: the direction is "
                             "gradient + weight_decay * parameter (before the momentum update).",
             "momentum": "the failing cases have momentum > 0: velocity = momentum * velocity "
                         "+ direction, except at the first step where it is the direction."}
    return run_checker("SGD step", fn, sgd_cases(cases, seed), hints,
                       "direction = gradient + weight_decay * parameter; velocity = direction "
                       "at the first step, else momentum * velocity + direction; "
                       "parameter - lr * velocity.", names=("new_parameter", "new_velocity"))


# ---------------------------------------------------------------------------------------------
# 9. Skip connection: Concat(module) = cat([x, module(x)], 1)
# ---------------------------------------------------------------------------------------------

def module_backward_of(weight, x):
    """The input gradient of a 3x3, padding-1 convolution at ``x``, with a clear shape check."""
    expected_shape = (x.shape[0], weight.shape[0], *x.shape[2:])

    def module_backward(grad):
        if tuple(grad.shape) != expected_shape:
            raise ValueError(f"module_backward: expected a gradient of shape {expected_shape} "
                             f"(the module's output), got {tuple(grad.shape)}")
        return autograd(lambda x_: F.conv2d(x_, weight, padding=1), [x], grad)[0]
    return module_backward


def check_concat_backward(fn, cases=20, seed=0):
    """Check ``fn(grad_output, channels_of_x, module_backward) -> grad_input`` for Concat.

    ``Concat(module)`` returns cat([x, module(x)], 1): its first channels_of_x channels are x
    itself. ``module_backward(g)`` returns the module's input gradient for a gradient g of the
    module's output. x reaches the output along two paths, so their gradients add at the fork.
    """
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    made = []
    for _ in range(cases):
        n, c, d, h, w = (rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 4),
                         rng.randint(1, 5), rng.randint(1, 5))
        x = random_tensor(generator, n, c, h, w)
        weight = random_tensor(generator, d, c, 3, 3)
        grad = random_tensor(generator, n, c + d, h, w)
        [expected] = autograd(lambda x_: torch.cat([x_, F.conv2d(x_, weight, padding=1)], 1),
                              [x], grad)
        backward = module_backward_of(weight, x)
        add = "the two paths ADD at the fork: grad_output[:, :C] + module_backward(" \
              "grad_output[:, C:])."
        wrong = [(add, grad[:, :c]), (add, backward(grad[:, c:]))]
        made.append(Case(f"x {(n, c, h, w)}, module output {(n, d, h, w)}", (grad, c, backward),
                         expected, wrong))
    return run_checker("concat backward", fn, made, general_hint=(
        "cat puts x first: grad_output[:, :C] is x's own gradient, grad_output[:, C:] goes "
        "through module_backward, and the two are added."))
