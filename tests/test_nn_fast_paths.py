"""The fast paths of ``scratchnn.nn`` against the plain path and against autograd (chapter 8).

``Upsampling`` with scale 2, a 3x3 kernel, padding 1, stride 1 and dilation 1 never builds the
upsampled map: it convolves the small map with four collapsed 2x2 "phase" kernels. Here it must
give the same output and the same three gradients as ``NearestUpsampling`` followed by ``Conv2d``
(the plain path, with the same weights) and as ``F.interpolate`` + ``F.conv2d`` under autograd, to
1e-9 in float64, for random channels, sizes and batches.

``Conv2d`` with stride 1 and at least 16 input channels runs on shifted rows
(``nn/fast/shifted_rows.py``): it must agree with its own unfold path and with autograd at the
network's shapes, and the layout of its buffer must hold every padding/kernel/dilation
combination.
"""
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchnn import (Conv2d, ConvTranspose2d, MaxPool2d, NearestUpsampling, Sequential,
                       Upsampling)
from scratchnn.book.gradcheck import max_error
from scratchnn.nn import fast
from scratchnn.nn.fast import shifted_rows as rows
from scratchnn.nn.fast.fused_upsampling import (collapse_kernel, expand_kernel_grad,
                                                interleave_phases, split_phases)
from scratchnn.nn.fast.shifted_rows import ROWS_FORMS, rows_layout, to_rows

FLOAT64_TOL = 1e-9


# Each shifted-rows convolution runs in one of three forms (``ROWS_FORMS``): one product per
# tap, the wide product for few output channels, the gathered taps for small maps. The tests
# force each in turn, with the ``force_form`` of the module (or the ``form`` of the function).
@pytest.fixture(params=ROWS_FORMS)
def rows_form(request):
    """The form that the shifted rows of the test run in."""
    return request.param


pytestmark = pytest.mark.usefixtures("no_autograd")


def fused_block(in_channels, out_channels, bias=True, dtype=torch.float64, seed=0, form=None):
    """A fused Upsampling block whose shifted rows run in ``form`` (None: chosen by shape)."""
    torch.manual_seed(seed)
    block = Upsampling(in_channels, out_channels, 3, scale_factor=2, padding=1, bias=bias)
    block.to(dtype=dtype)
    block.force_form = form
    assert fast.upsampling_form(block) == "fused"
    return block


def plain_twin(block):
    """NearestUpsampling(2) then Conv2d(3x3, padding 1), sharing only a copy of the weights."""
    conv = Conv2d(block.conv.in_channels, block.conv.out_channels, 3, padding=1,
                  bias=block.bias is not None).to(dtype=block.weight.dtype)
    conv.weight.copy_(block.weight)
    if block.bias is not None:
        conv.bias.copy_(block.bias)
    return Sequential(NearestUpsampling(2), conv), conv


def run_fused_and_references(in_channels, out_channels, batch, height, width, bias, seed,
                              form=None):
    """Max error of the fused block against the plain path and against autograd, everywhere."""
    block = fused_block(in_channels, out_channels, bias, seed=seed, form=form)
    plain, conv = plain_twin(block)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, height, width, generator=generator, dtype=torch.float64)
    out = block.forward(x)
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grad_in = block.backward(grad_out)
    _, rows_saved = block.saved.kept
    assert block.saved.form == "fused" and form in (None, rows_saved.form)

    plain_out = plain.forward(x)
    plain_grad_in = plain.backward(grad_out)

    with torch.enable_grad():
        x_ref = x.clone().requires_grad_(True)
        w_ref = block.weight.clone().requires_grad_(True)
        b_ref = block.bias.clone().requires_grad_(True) if bias else None
        upsampled = F.interpolate(x_ref, scale_factor=2, mode="nearest")
        out_ref = F.conv2d(upsampled, w_ref, b_ref, padding=1)
        out_ref.backward(grad_out)

    errors = {
        "forward vs plain": max_error(out, plain_out),
        "input grad vs plain": max_error(grad_in, plain_grad_in),
        "weight grad vs plain": max_error(block.conv.weight_grad, conv.weight_grad),
        "forward vs autograd": max_error(out, out_ref),
        "input grad vs autograd": max_error(grad_in, x_ref.grad),
        "weight grad vs autograd": max_error(block.conv.weight_grad, w_ref.grad),
    }
    if bias:
        errors["bias grad vs plain"] = max_error(block.conv.bias_grad, conv.bias_grad)
        errors["bias grad vs autograd"] = max_error(block.conv.bias_grad, b_ref.grad)
    return errors


# (in_channels, out_channels, batch, height, width, bias): 1-pixel maps, odd and non-square
# sizes, more input than output channels and the reverse.
CASES = [
    (3, 2, 2, 5, 3, True),
    (1, 1, 1, 1, 1, True),
    (2, 5, 3, 1, 4, False),
    (9, 2, 2, 4, 4, True),
    (13, 1, 1, 3, 7, False),
    (16, 3, 2, 6, 5, True),      # the denoiser's last block, scaled down
    (8, 8, 2, 4, 4, True),       # the denoiser's hidden block, scaled down
]


def case_id(case):
    return "c{}o{}n{}h{}w{}{}".format(*case[:5], "b" if case[5] else "nb")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fused_upsampling_matches_plain_path_and_autograd(case, rows_form):
    errors = run_fused_and_references(*case, seed=1, form=rows_form)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= FLOAT64_TOL, f"{worst}: {errors[worst]:.3e}"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_fused_upsampling_random_configs(rows_form, seed):
    rng = random.Random(seed)
    case = (rng.randint(1, 12), rng.randint(1, 6), rng.randint(1, 3), rng.randint(1, 9),
            rng.randint(1, 9), rng.random() < 0.7)
    with torch.set_grad_enabled(False):
        errors = run_fused_and_references(*case, seed=seed % 1000, form=rows_form)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= FLOAT64_TOL, f"{case} {worst}: {errors[worst]:.3e}"


def test_fused_upsampling_float32_close_to_autograd():
    block = fused_block(10, 3, dtype=torch.float32, seed=3)
    x = torch.randn(2, 10, 6, 6)
    out = block.forward(x)
    grad_in = block.backward(torch.ones_like(out))
    with torch.enable_grad():
        x_ref, w_ref = x.clone().requires_grad_(True), block.weight.clone().requires_grad_(True)
        upsampled = F.interpolate(x_ref, scale_factor=2, mode="nearest")
        out_ref = F.conv2d(upsampled, w_ref, block.bias, padding=1)
        out_ref.sum().backward()
    torch.testing.assert_close(out, out_ref.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad_in, x_ref.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(block.conv.weight_grad, w_ref.grad, rtol=1e-4, atol=1e-3)


def test_fused_gradients_accumulate_until_zero_grad():
    block = fused_block(4, 3, seed=2)
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    grad_out = torch.randn(2, 3, 6, 10, dtype=torch.float64)
    block.forward(x)
    block.backward(grad_out)
    once = [gradient.clone() for _, gradient in block.param()]
    block.forward(x)
    block.backward(grad_out)
    for first, (_, twice) in zip(once, block.param()):
        assert max_error(twice, 2 * first) <= FLOAT64_TOL
    block.zero_grad()
    assert all(not gradient.any() for _, gradient in block.param())


def test_only_the_common_setting_is_fused():
    assert fast.upsampling_form(Upsampling(2, 2, 3, scale_factor=2, padding=1)) == "fused"
    assert fast.upsampling_form(Upsampling(2, 2, 3, scale_factor=(2, 2), padding=(1, 1)))
    for kwargs in (dict(scale_factor=3, padding=1), dict(scale_factor=2, padding=0),
                   dict(scale_factor=2, padding=1, stride=2),
                   dict(scale_factor=2, padding=2, dilation=2)):
        assert fast.upsampling_form(Upsampling(2, 2, 3, **kwargs)) is None, kwargs
    assert fast.upsampling_form(Upsampling(2, 2, 5, scale_factor=2, padding=1)) is None
    plain = Upsampling(2, 2, 3, scale_factor=2, padding=1)
    plain.fast = False
    assert fast.upsampling_form(plain) is None
    plain.forward(torch.randn(1, 2, 3, 3))
    assert plain.saved.form == "upsample, convolve"


def test_collapse_and_expand_are_transposes():
    """<collapse(w), K> = <w, expand(K)>: expand_kernel_grad is collapse_kernel's exact adjoint."""
    generator = torch.Generator().manual_seed(4)
    w = torch.randn(3, 5, 3, 3, generator=generator, dtype=torch.float64)
    k = torch.randn(12, 5, 2, 2, generator=generator, dtype=torch.float64)
    left = (collapse_kernel(w) * k).sum()
    right = (w * expand_kernel_grad(k, w.shape)).sum()
    assert abs(left - right).item() <= 1e-12


def test_split_phases_is_the_transpose_of_interleave_phases():
    generator = torch.Generator().manual_seed(5)
    phases = torch.randn(2, 4 * 3, 5, 4, generator=generator, dtype=torch.float64)   # H=4, W=3
    grad = torch.randn(2, 3, 8, 6, generator=generator, dtype=torch.float64)
    left = (interleave_phases(phases) * grad).sum()
    # The destination is a channels-last view full of NaN: every entry must be written.
    destination = phases.new_full((2, 5, 4, 12), float("nan")).permute(0, 3, 1, 2)
    split = split_phases(grad, destination)
    assert split is destination and not split.isnan().any()
    right = (phases * split).sum()
    assert abs(left - right).item() <= 1e-12


def test_fused_block_keeps_the_module_contract():
    block = fused_block(3, 2, dtype=torch.float32)
    assert [name for name, *_ in block.named_param()] == ["conv.weight", "conv.bias"]
    x = torch.randn(1, 3, 4, 4)
    out = block.forward(x)
    assert out.shape == (1, 2, 8, 8) and not out.requires_grad
    with pytest.raises(ValueError, match="Upsampling"):
        block.forward(x.double())                    # wrong dtype: named after the block
    with pytest.raises(ValueError, match="Upsampling"):
        block.forward(torch.randn(1, 4, 4, 4))       # wrong channels
    with pytest.raises(ValueError, match="Upsampling"):
        block.backward(torch.ones(1, 2, 4, 4))       # gradient of the wrong shape
    block.to(dtype=torch.float64)
    assert block.forward(x.double()).dtype == torch.float64


# --------------------------------------------------------------------------------------------
# Conv2d on shifted rows
# --------------------------------------------------------------------------------------------

def conv_pair(in_channels, out_channels, kernel, padding, dilation, bias, seed, form=None):
    """The same Conv2d twice: on shifted rows in ``form`` and forced onto unfold."""
    torch.manual_seed(seed)
    quick = Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation,
                   bias=bias).to(dtype=torch.float64)
    quick.force_form = form
    plain = Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation,
                   bias=bias).to(dtype=torch.float64)
    plain.load_state_dict(quick.state_dict())
    plain.fast = False
    return quick, plain


# (in, out, kernel, padding, dilation, batch, height, width, bias): the U-Net's 3x3 "same"
# convolutions, a 1x1 output layer, padding larger than the kernel needs, no padding, dilation.
ROWS_CASES = [
    (16, 16, 3, 1, 1, 2, 8, 8, True),
    (32, 16, 3, 1, 1, 3, 5, 7, False),
    (16, 3, 1, 0, 1, 2, 6, 6, True),
    (16, 4, 1, 2, 1, 2, 3, 5, True),
    (20, 5, 3, 0, 1, 1, 4, 9, True),
    (17, 6, (3, 2), (2, 0), (1, 2), 2, 6, 5, True),
    (16, 8, 5, 2, 2, 1, 9, 8, False),
]


@pytest.mark.parametrize("case", ROWS_CASES, ids=str)
def test_shifted_rows_conv_matches_unfold_path_and_autograd(case, rows_form):
    *arguments, batch, height, width, bias = case
    quick, plain = conv_pair(*arguments, bias, seed=7, form=rows_form)
    assert fast.conv2d_form(quick) == "shifted rows" and fast.conv2d_form(plain) is None
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(batch, arguments[0], height, width, generator=generator, dtype=torch.float64)
    out = quick.forward(x)
    assert quick.saved.form == "shifted rows" and quick.saved.kept.form == rows_form
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grad_in = quick.backward(grad_out)
    with torch.enable_grad():
        x_ref = x.clone().requires_grad_(True)
        w_ref = quick.weight.clone().requires_grad_(True)
        out_ref = F.conv2d(x_ref, w_ref, quick.bias, padding=quick.padding,
                           dilation=quick.dilation)
        out_ref.backward(grad_out)
    assert max_error(out, plain.forward(x)) <= FLOAT64_TOL
    assert max_error(grad_in, plain.backward(grad_out)) <= FLOAT64_TOL
    assert max_error(quick.weight_grad, plain.weight_grad) <= FLOAT64_TOL
    assert max_error(out, out_ref) <= FLOAT64_TOL
    assert max_error(grad_in, x_ref.grad) <= FLOAT64_TOL
    assert max_error(quick.weight_grad, w_ref.grad) <= FLOAT64_TOL
    if bias:
        assert max_error(quick.bias_grad, plain.bias_grad) <= FLOAT64_TOL


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(channels=st.integers(1, 6), out_channels=st.integers(1, 6), kernel=st.tuples(
       st.integers(1, 4), st.integers(1, 4)), padding=st.tuples(st.integers(0, 3),
       st.integers(0, 3)), dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       batch=st.integers(1, 3), height=st.integers(1, 8), width=st.integers(1, 8),
       bias=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_convolve_rows_matches_autograd_for_random_shapes(rows_form, channels, out_channels,
                                                          kernel, padding, dilation, batch,
                                                          height, width, bias, seed):
    """``convolve_rows`` and its backward, in each form, against autograd in float64: any
    kernel, padding and dilation (stride 1), including padding wider than the kernel reaches."""
    reach = [d * (k - 1) for d, k in zip(dilation, kernel)]
    if height + 2 * padding[0] <= reach[0] or width + 2 * padding[1] <= reach[1]:
        return
    generator = torch.Generator().manual_seed(seed)
    options = dict(generator=generator, dtype=torch.float64)
    x = torch.randn(batch, channels, height, width, **options)
    weight = torch.randn(out_channels, channels, *kernel, **options)
    b = torch.randn(out_channels, **options) if bias else None
    out, saved = rows.convolve_rows(x, weight, b, padding, dilation, rows_form)
    assert saved.form == rows_form and saved.layout == rows_layout(x.shape, kernel, padding,
                                                                   dilation)
    grad = torch.randn(out.shape, **options)
    input_grad, weight_grad = rows.convolve_rows_backward(
        rows.spread_gradient(grad, saved.layout), saved, weight)
    with torch.enable_grad():
        x_ref, w_ref = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        out_ref = F.conv2d(x_ref, w_ref, b, padding=padding, dilation=dilation)
        out_ref.backward(grad)
    assert max_error(out, out_ref) <= FLOAT64_TOL
    assert max_error(input_grad, x_ref.grad) <= FLOAT64_TOL
    assert max_error(weight_grad, w_ref.grad) <= FLOAT64_TOL


@pytest.mark.parametrize("piece_rows", [1, 7, 50])
def test_products_in_pieces_give_the_same_convolution(monkeypatch, piece_rows):
    """A large image's products run piece by piece (``PIECE_ROWS`` positions at a time); with
    pieces forced small, uneven and of one row, the per-tap form still matches autograd."""
    monkeypatch.setattr(rows, "PIECE_ROWS", piece_rows)
    monkeypatch.setattr(rows, "PIECES_FROM_ROWS", 1)
    assert len(rows.pieces(120)) == -(-120 // piece_rows)
    generator = torch.Generator().manual_seed(piece_rows)
    options = dict(generator=generator, dtype=torch.float64)
    x = torch.randn(2, 5, 7, 6, **options)
    weight = torch.randn(4, 5, 3, 2, **options)
    b = torch.randn(4, **options)
    out, saved = rows.convolve_rows(x, weight, b, (1, 1), (2, 1), "per tap")
    grad = torch.randn(out.shape, **options)
    input_grad, weight_grad = rows.convolve_rows_backward(
        rows.spread_gradient(grad, saved.layout), saved, weight)
    with torch.enable_grad():
        x_ref, w_ref = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        F.conv2d(x_ref, w_ref, b, padding=1, dilation=(2, 1)).backward(grad)
        out_ref = F.conv2d(x, weight, b, padding=1, dilation=(2, 1))
    assert max_error(out, out_ref) <= FLOAT64_TOL
    assert max_error(input_grad, x_ref.grad) <= FLOAT64_TOL
    assert max_error(weight_grad, w_ref.grad) <= FLOAT64_TOL


def test_fast_forms_only_where_they_are_fast_and_valid():
    minimum = fast.SHIFTED_ROWS_MIN_CHANNELS
    assert fast.conv2d_form(Conv2d(minimum, 8, 3, padding=1)) == "shifted rows"
    assert fast.conv2d_form(Conv2d(minimum - 1, 8, 3, padding=1)) is None
    assert fast.conv2d_form(Conv2d(32, 8, 3, stride=2, padding=1)) is None
    assert fast.conv2d_form(Conv2d(32, 8, 3, padding=1, backward_form="convolution")) is None
    assert fast.conv2d_form(Conv2d(3, 8, 2, stride=2)) == "patches"
    assert fast.conv2d_form(Conv2d(3, 8, 2, stride=2, padding=1)) is None
    assert fast.conv2d_form(Conv2d(3, 8, 2, stride=2, dilation=2)) is None


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(height=st.integers(1, 9), width=st.integers(1, 9), kernel=st.integers(1, 4),
       padding=st.integers(0, 3), dilation=st.integers(1, 3), batch=st.integers(1, 3))
def test_rows_layout_reaches_every_tap_and_no_other_pixel(height, width, kernel, padding,
                                                          dilation, batch):
    """Every output pixel's tap lands on the input pixel it should, or on a zero of the padding;
    and every output pixel lies among the computed positions."""
    reach = dilation * (kernel - 1)
    if height + 2 * padding <= reach or width + 2 * padding <= reach:
        return
    layout = rows_layout((batch, 1, height, width), (kernel, kernel), (padding, padding),
                         (dilation, dilation))
    # Number every stored pixel: input pixel (n, y, x) gets 1 + its flat index, padding 0.
    x = torch.arange(1, batch * height * width + 1, dtype=torch.float64)
    x = x.reshape(batch, 1, height, width)
    rows = to_rows(x, layout)[:, 0]
    # The buffer starts empty: every row that is not a pixel must have been set to zero.
    assert rows.shape == (layout.total,) and (rows != 0).sum() == x.numel()
    for n in range(batch):
        for y in range(layout.out_height):
            for x_out in range(layout.out_width):
                base = n * layout.image_size + y * layout.row_width + x_out
                assert base < layout.positions
                for t, offset in enumerate(layout.offsets):
                    i, j = divmod(t, kernel)
                    row, col = y - padding + i * dilation, x_out - padding + j * dilation
                    inside = 0 <= row < height and 0 <= col < width
                    expected = 1 + (n * height + row) * width + col if inside else 0
                    assert rows[base + offset].item() == expected


# --------------------------------------------------------------------------------------------
# What forward saves for backward: one record, the form included; no setting read in backward
# --------------------------------------------------------------------------------------------

def conv_against_autograd(conv, x, grad_out, out, grad_in):
    """Max error of a Conv2d's output and gradients (one forward, one backward) vs autograd."""
    with torch.enable_grad():
        x_ref, w_ref = x.clone().requires_grad_(True), conv.weight.clone().requires_grad_(True)
        out_ref = F.conv2d(x_ref, w_ref, conv.bias, conv.stride, conv.padding, conv.dilation)
        out_ref.backward(grad_out)
    return max(max_error(out, out_ref), max_error(grad_in, x_ref.grad),
               max_error(conv.weight_grad, w_ref.grad))


@pytest.mark.parametrize("form", ROWS_FORMS)
def test_backward_runs_the_form_that_forward_ran(form):
    """Issue 20's crash: a forward pass forced into the gathered form, then the backward pass
    outside it, failed (``shape '[4, 2048, -1]' is invalid``): backward chose its form again
    from module globals. Now it reads the form from ``conv.saved``."""
    torch.manual_seed(11)
    conv = Conv2d(32, 32, 3, padding=1).to(dtype=torch.float64)
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(4, 32, 16, 16, generator=generator, dtype=torch.float64)
    conv.force_form = form
    out = conv.forward(x)
    assert conv.saved.form == "shifted rows" and conv.saved.kept.form == form
    conv.force_form = next(other for other in ROWS_FORMS if other != form)   # changed since
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grad_in = conv.backward(grad_out)
    assert conv_against_autograd(conv, x, grad_out, out, grad_in) <= FLOAT64_TOL


@pytest.mark.parametrize("form", ["per tap", "wide"])
def test_reused_buffers_give_the_same_gradients_batch_after_batch(form):
    """A layer reuses its padded buffers (``conv.spares``) while the shapes stay the same, and
    makes new ones when they change: every step, even one back at the first shape after another,
    still matches autograd (the padding of a reused buffer is still zero), and the same memory
    serves the steps of one shape."""
    torch.manual_seed(14)
    conv = Conv2d(16, 8, 3, padding=1).to(dtype=torch.float64)
    conv.force_form = form
    generator = torch.Generator().manual_seed(15)
    pointers = []
    for batch, size in [(2, 6), (2, 6), (3, 5), (2, 6)]:
        conv.zero_grad()
        x = torch.randn(batch, 16, size, size, generator=generator, dtype=torch.float64) * 10
        out = conv.forward(x)
        grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
        grad_in = conv.backward(grad_out)
        assert conv_against_autograd(conv, x, grad_out, out, grad_in) <= FLOAT64_TOL
        assert set(conv.spares.kept) == {"input rows", "gradient rows"}
        pointers.append({role: (kept[1].data_ptr(), tuple(kept[1].shape))
                         for role, kept in conv.spares.kept.items()})
    assert pointers[1] == pointers[0]          # the same shape again: the same buffers
    # A new shape: new buffers of the new length (the old ones are let go first, so the memory
    # may well be the same).
    assert all(pointers[2][role][1] != pointers[1][role][1] for role in pointers[2])


def test_switching_fast_off_between_forward_and_backward_changes_nothing():
    torch.manual_seed(13)
    conv = Conv2d(16, 8, 2, stride=2).to(dtype=torch.float64)     # patches
    x = torch.randn(2, 16, 6, 6, dtype=torch.float64)
    out = conv.forward(x)
    conv.fast = False
    grad_out = torch.randn(out.shape, dtype=torch.float64)
    grad_in = conv.backward(grad_out)
    assert conv.saved.form == "patches"
    assert conv_against_autograd(conv, x, grad_out, out, grad_in) <= FLOAT64_TOL
    block = fused_block(4, 3, form="gathered")
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    out = block.forward(x)
    block.fast, block.force_form = False, None
    grad_in = block.backward(torch.ones_like(out))
    plain, _ = plain_twin(block)
    plain.forward(x)
    assert max_error(grad_in, plain.backward(torch.ones_like(out))) <= FLOAT64_TOL


def test_forcing_a_form_that_cannot_compute_the_layer_is_refused():
    x = torch.randn(1, 3, 6, 6)
    strided = Conv2d(3, 4, 3, stride=2, padding=1)
    strided.force_form = "wide"
    with pytest.raises(ValueError, match=r"^Conv2d: cannot force the form 'wide'"):
        strided.forward(x)
    padded = Conv2d(3, 4, 3, padding=1)
    padded.force_form = "patches"
    with pytest.raises(ValueError, match=r"^Conv2d: cannot force the form 'patches'"):
        padded.forward(x)
    padded.force_form = "unknown"
    with pytest.raises(ValueError, match=r"^Conv2d: cannot force the form 'unknown'"):
        padded.forward(x)
    block = Upsampling(3, 2, 3, padding=1)
    block.force_form = "patches"
    with pytest.raises(ValueError, match=r"^Upsampling: cannot force the form 'patches'"):
        block.forward(x)


@pytest.mark.parametrize("make, shape", [
    (lambda: MaxPool2d(2), (2, 3, 7, 6)),
    (lambda: ConvTranspose2d(3, 4, 2, stride=2), (2, 3, 5, 4)),
], ids=["MaxPool2d", "ConvTranspose2d"])
def test_patches_and_the_teachable_path_agree(make, shape):
    """MaxPool2d and ConvTranspose2d with kernel = stride run on patches; with ``fast`` off the
    same module runs the unfold/fold path of chapter 9, to the same numbers."""
    torch.manual_seed(14)
    quick = make().to(dtype=torch.float64)
    plain = make().to(dtype=torch.float64)
    plain.load_state_dict(quick.state_dict())
    plain.fast = False
    x = torch.randn(*shape, dtype=torch.float64)
    out = quick.forward(x)
    assert max_error(out, plain.forward(x)) <= FLOAT64_TOL
    assert (quick.saved.form, plain.saved.form) in (("patches", "unfold"), ("patches", "fold"))
    grad_out = torch.randn(out.shape, dtype=torch.float64)
    assert max_error(quick.backward(grad_out), plain.backward(grad_out)) <= FLOAT64_TOL
    for (_, _, ours), (_, _, theirs) in zip(quick.named_param(), plain.named_param()):
        assert max_error(ours, theirs) <= FLOAT64_TOL
