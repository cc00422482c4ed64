"""The fast paths of ``scratchnn.nn`` against the plain path and against autograd (chapter 8).

``Upsampling`` with scale 2, a 3x3 kernel, padding 1, stride 1 and dilation 1 never builds the
upsampled map: it convolves the small map with four collapsed 2x2 "phase" kernels. Here it must
give the same output and the same three gradients as ``NearestUpsampling`` followed by ``Conv2d``
(the plain path, with the same weights) and as ``F.interpolate`` + ``F.conv2d`` under autograd, to
1e-9 in float64, for random channels, sizes and batches. Both ways of computing its input gradient
(``fold``, and the convolution form used when the block has few output channels) are exercised.
"""
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchnn import Conv2d, NearestUpsampling, Sequential, Upsampling
from scratchnn.gradcheck import max_error
from scratchnn.nn.conv import collapse_kernel, expand_kernel_grad, interleave_phases, split_phases

FLOAT64_TOL = 1e-9


pytestmark = pytest.mark.usefixtures("no_autograd")


def fused_block(in_channels, out_channels, bias=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    block = Upsampling(in_channels, out_channels, 3, scale_factor=2, padding=1, bias=bias)
    block.to(dtype=dtype)
    assert block.fused
    return block


def plain_twin(block):
    """NearestUpsampling(2) then Conv2d(3x3, padding 1), sharing only a copy of the weights."""
    conv = Conv2d(block.conv.in_channels, block.conv.out_channels, 3, padding=1,
                  bias=block.bias is not None).to(dtype=block.weight.dtype)
    conv.weight.copy_(block.weight)
    if block.bias is not None:
        conv.bias.copy_(block.bias)
    return Sequential(NearestUpsampling(2), conv), conv


def run_fused_and_references(in_channels, out_channels, batch, height, width, bias, seed):
    """Max error of the fused block against the plain path and against autograd, everywhere."""
    block = fused_block(in_channels, out_channels, bias, seed=seed)
    plain, conv = plain_twin(block)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, height, width, generator=generator, dtype=torch.float64)
    out = block.forward(x)
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grad_in = block.backward(grad_out)

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


# (in_channels, out_channels, batch, height, width, bias): both input-gradient forms (fold when
# 4*out >= in, the convolution form when 4*out < in), 1-pixel maps, odd and non-square sizes.
CASES = [
    (3, 2, 2, 5, 3, True),
    (1, 1, 1, 1, 1, True),
    (2, 5, 3, 1, 4, False),
    (9, 2, 2, 4, 4, True),       # 4*2 < 9: convolution form
    (13, 1, 1, 3, 7, False),     # convolution form, no bias
    (16, 3, 2, 6, 5, True),      # the denoiser's last block, scaled down
    (8, 8, 2, 4, 4, True),       # the denoiser's hidden block, scaled down
]


def case_id(case):
    return "c{}o{}n{}h{}w{}{}".format(*case[:5], "b" if case[5] else "nb")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fused_upsampling_matches_plain_path_and_autograd(case):
    errors = run_fused_and_references(*case, seed=1)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= FLOAT64_TOL, f"{worst}: {errors[worst]:.3e}"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_fused_upsampling_random_configs(seed):
    rng = random.Random(seed)
    case = (rng.randint(1, 12), rng.randint(1, 6), rng.randint(1, 3), rng.randint(1, 9),
            rng.randint(1, 9), rng.random() < 0.7)
    with torch.set_grad_enabled(False):
        errors = run_fused_and_references(*case, seed=seed % 1000)
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
    assert Upsampling(2, 2, 3, scale_factor=2, padding=1).fused
    assert Upsampling(2, 2, 3, scale_factor=(2, 2), padding=(1, 1)).fused
    for kwargs in (dict(scale_factor=3, padding=1), dict(scale_factor=2, padding=0),
                   dict(scale_factor=2, padding=1, stride=2),
                   dict(scale_factor=2, padding=2, dilation=2)):
        assert not Upsampling(2, 2, 3, **kwargs).fused, kwargs
    assert not Upsampling(2, 2, 5, scale_factor=2, padding=1).fused


def test_collapse_and_expand_are_transposes():
    """<collapse(w), K> = <w, expand(K)>: expand_kernel_grad is collapse_kernel's exact adjoint."""
    generator = torch.Generator().manual_seed(4)
    w = torch.randn(3, 5, 3, 3, generator=generator, dtype=torch.float64)
    k = torch.randn(12, 20, generator=generator, dtype=torch.float64)
    left = (collapse_kernel(w) * k).sum()
    right = (w * expand_kernel_grad(k, w.shape)).sum()
    assert abs(left - right).item() <= 1e-12


def test_split_phases_is_the_transpose_of_interleave_phases():
    generator = torch.Generator().manual_seed(5)
    phases = torch.randn(2, 4 * 3, 5 * 4, generator=generator, dtype=torch.float64)   # H=4, W=3
    grad = torch.randn(2, 3, 8, 6, generator=generator, dtype=torch.float64)
    left = (interleave_phases(phases, 4, 3) * grad).sum()
    right = (phases * split_phases(grad)).sum()
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
