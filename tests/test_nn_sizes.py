"""Every branch of ``scratchnn.nn`` that switches on a size, on both sides of its threshold, and
the layers at the sizes they train at (chapters 7-9), against autograd in float64.

Small tests never reach some branches: ``long_sum_product`` splits its sum only from 4096 rows
on, which every weight gradient of a training step has, and no test of a few pixels does. A
mistake there (returning a quarter of the sum times 4, say) passed every small test. Here each
threshold is tested directly at the sizes around it, and each layer of the networks at its
training size.
"""
import pytest
import torch
import torch.nn.functional as F

from scratchnn import Conv2d, ConvTranspose2d, MaxPool2d, Upsampling
from scratchnn.book.gradcheck import max_error
from scratchnn.nn import fast
from scratchnn.nn.fast import long_sums, shifted_rows
from scratchnn.nn.fast.long_sums import LONG_SUM_MIN_ROWS, long_sum_product
from scratchnn.nn.fast.shifted_rows import (GATHER_MAX_ENTRIES, WIDE_MAX_OUT_CHANNELS, rows_form,
                                            rows_layout)

FLOAT64_TOL = 1e-9

pytestmark = pytest.mark.usefixtures("no_autograd")


def random(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_module(module, x, reference, *parameters):
    """``module``'s output and all its gradients against ``reference(x, *parameters)`` under
    autograd, in float64; returns the largest error of each."""
    out = module.forward(x)
    grad = random(*out.shape, seed=1)
    input_grad = module.backward(grad)
    with torch.enable_grad():
        leaves = [tensor.clone().requires_grad_(True) for tensor in (x, *parameters)]
        out_ref = reference(*leaves)
        out_ref.backward(grad)
    errors = {"forward": max_error(out, out_ref), "input grad": max_error(input_grad,
                                                                          leaves[0].grad)}
    for (name, _, gradient), leaf in zip(module.named_param(), leaves[1:]):
        errors[f"{name} grad"] = max_error(gradient, leaf.grad)
    return errors


def assert_small(errors):
    worst = max(errors, key=errors.get)
    assert errors[worst] <= FLOAT64_TOL, f"{worst}: {errors[worst]:.3e}"


# --------------------------------------------------------------------------------------------
# long_sum_product: one product below LONG_SUM_MIN_ROWS rows, gcd(m, 4) pieces from there on
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, pieces", [(LONG_SUM_MIN_ROWS - 1, 1), (LONG_SUM_MIN_ROWS, 4),
                                          (LONG_SUM_MIN_ROWS + 2, 2), (LONG_SUM_MIN_ROWS + 1, 1),
                                          (4 * LONG_SUM_MIN_ROWS, 4)])
def test_long_sum_product_on_both_sides_of_its_threshold(rows, pieces, monkeypatch):
    assert LONG_SUM_MIN_ROWS == 4096          # the sizes of the issue: 4095, 4096, 4098, 16384
    left, right = random(rows, 7, seed=rows), random(rows, 5, seed=rows + 1)
    batched = []
    original_bmm = torch.Tensor.bmm
    monkeypatch.setattr(torch.Tensor, "bmm",
                        lambda a, b: batched.append(a.shape[0]) or original_bmm(a, b))
    result = long_sum_product(left, right)
    assert batched == ([pieces] if pieces > 1 else [])    # the branch we meant to test ran
    assert max_error(result, left.t() @ right) <= 1e-11


def test_long_sum_product_keeps_the_shape_of_every_weight_gradient():
    left, right = random(3 * LONG_SUM_MIN_ROWS, 9 * 48, seed=2), random(3 * LONG_SUM_MIN_ROWS, 3)
    assert long_sum_product(left, right).shape == (9 * 48, 3)


# --------------------------------------------------------------------------------------------
# rows_form: wide up to WIDE_MAX_OUT_CHANNELS outputs, gathered up to GATHER_MAX_ENTRIES entries
# --------------------------------------------------------------------------------------------

def test_rows_form_thresholds_on_both_sides():
    layout = rows_layout((2, 16, 8, 8), (3, 3), (1, 1), (1, 1))
    assert rows_form(16, WIDE_MAX_OUT_CHANNELS, layout) == "wide"
    assert rows_form(16, WIDE_MAX_OUT_CHANNELS + 1, layout) == "gathered"
    # (8, 64, 15, 15), 2x2 kernel, padding 1: 8 * 16 * 16 pixels * 4 taps * 64 channels = 2**19.
    at_limit = rows_layout((8, 64, 15, 15), (2, 2), (1, 1), (1, 1))
    above = rows_layout((8, 64, 16, 16), (2, 2), (1, 1), (1, 1))
    assert 8 * 16 * 16 * 4 * 64 == GATHER_MAX_ENTRIES
    assert rows_form(64, 16, at_limit) == "gathered" and rows_form(64, 16, above) == "per tap"


@pytest.mark.parametrize("shape, kernel, out_channels, form", [
    ((2, 16, 6, 5), 3, WIDE_MAX_OUT_CHANNELS, "wide"),
    ((2, 16, 6, 5), 3, WIDE_MAX_OUT_CHANNELS + 1, "gathered"),
    ((8, 64, 15, 15), 2, 16, "gathered"),
    ((8, 64, 16, 16), 2, 16, "per tap"),
], ids=["wide-at-limit", "gathered-above-wide", "gathered-at-limit", "per-tap-above"])
def test_conv2d_on_both_sides_of_the_rows_thresholds(shape, kernel, out_channels, form):
    torch.manual_seed(0)
    conv = Conv2d(shape[1], out_channels, kernel, padding=1).to(dtype=torch.float64)
    errors = check_module(conv, random(*shape), lambda x, w, b: F.conv2d(x, w, b, padding=1),
                          conv.weight, conv.bias)
    assert conv.saved.form == "shifted rows" and conv.saved.kept.form == form
    assert_small(errors)


def test_shifted_rows_from_their_minimum_number_of_channels():
    minimum = fast.SHIFTED_ROWS_MIN_CHANNELS
    for channels, form in ((minimum - 1, "unfold"), (minimum, "shifted rows")):
        torch.manual_seed(1)
        conv = Conv2d(channels, 20, 3, padding=1).to(dtype=torch.float64)
        errors = check_module(conv, random(2, channels, 5, 6),
                              lambda x, w, b: F.conv2d(x, w, b, padding=1), conv.weight, conv.bias)
        assert conv.saved.form == form
        assert_small(errors)


# --------------------------------------------------------------------------------------------
# At training size: the blocks of the seed network (100 channels) and of the U-Net (48)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("out_channels, form", [(48, "per tap"), (3, "wide")])
def test_conv2d_3x3_at_unet_training_size(out_channels, form):
    """3x3, padding 1, batch 32 of 32x32 crops, 48 channels: the U-Net's convolutions."""
    torch.manual_seed(2)
    conv = Conv2d(48, out_channels, 3, padding=1).to(dtype=torch.float64)
    errors = check_module(conv, random(32, 48, 32, 32, seed=3),
                          lambda x, w, b: F.conv2d(x, w, b, padding=1), conv.weight, conv.bias)
    assert conv.saved.form == "shifted rows" and conv.saved.kept.form == form
    assert conv.saved.kept.layout.positions >= LONG_SUM_MIN_ROWS
    assert_small(errors)


def test_conv2d_2x2_stride_2_at_seed_training_size():
    """2x2, stride 2, 100 channels, batch 32 of 32x32: the seed network's second convolution
    (its weight gradient sums over 32 * 16 * 16 = 8192 patches)."""
    torch.manual_seed(4)
    conv = Conv2d(100, 100, 2, stride=2).to(dtype=torch.float64)
    errors = check_module(conv, random(32, 100, 32, 32, seed=5),
                          lambda x, w, b: F.conv2d(x, w, b, stride=2), conv.weight, conv.bias)
    assert conv.saved.form == "patches"
    assert_small(errors)


@pytest.mark.parametrize("out_channels", [100, 3])
def test_fused_upsampling_at_seed_training_size(out_channels):
    """Nearest x2 then 3x3, 100 channels, batch 16 of 16x16 maps: the seed network's blocks."""
    torch.manual_seed(6)
    block = Upsampling(100, out_channels, 3, scale_factor=2, padding=1).to(dtype=torch.float64)

    def reference(x, w, b):
        return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)

    errors = check_module(block, random(16, 100, 16, 16, seed=7), reference, block.weight,
                          block.bias)
    assert block.saved.form == "fused"
    assert block.saved.kept[1].layout.positions >= LONG_SUM_MIN_ROWS
    assert_small(errors)


def test_transposed_convolution_and_pooling_on_patches_at_unet_size():
    """The U-Net's 2x2 stride-2 transposed convolution (48 channels, 16x16 -> 32x32, batch 32:
    8192 rows in its weight gradient) and its 2x2 max-pooling."""
    torch.manual_seed(8)
    up = ConvTranspose2d(48, 48, 2, stride=2).to(dtype=torch.float64)
    errors = check_module(up, random(32, 48, 16, 16, seed=9),
                          lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2), up.weight,
                          up.bias)
    assert up.saved.form == "patches"
    assert_small(errors)
    pool = MaxPool2d(2)
    errors = check_module(pool, random(32, 48, 32, 32, seed=10),
                          lambda x: F.max_pool2d(x, 2))
    assert pool.saved.form == "patches"
    assert_small(errors)


def test_every_threshold_is_a_constant_of_the_fast_folder():
    """What chooses a form is a constant (never changed at run time); forcing a form is an
    attribute of a module. No module global is left that a test or a benchmark would set."""
    assert (shifted_rows.WIDE_MAX_OUT_CHANNELS, shifted_rows.GATHER_MAX_ENTRIES,
            long_sums.LONG_SUM_MIN_ROWS, fast.SHIFTED_ROWS_MIN_CHANNELS) == (12, 2 ** 19, 4096, 16)
    assert not hasattr(shifted_rows, "forced_form") and not hasattr(shifted_rows, "FORCING")
